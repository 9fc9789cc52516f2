//! From a command-line spec to a ready model: `--llm replay | local:<name-or-path> |
//! openai:<model> | deepseek:<model> | http:<url>[#<model>]`, always wrapped in a
//! [`Recorder`] so every run is accounted and, unless the mode is `off`, recorded or replayed.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::{BatchBackend, BatchOptions, Batcher};
use crate::fetch;
use crate::http::{HttpConfig, OpenAiClient};
use crate::store::{RecordMode, Recorder, Store};
use crate::usage::UsageLedger;
use crate::{ChatModel, LlmError, ModelInfo};

/// Which model a run talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmSpec {
    /// Recordings only; the model is whichever single one made them.
    Replay,
    /// A pinned short name (`smollm2-135m`, ...) or a path to any GGUF file.
    Local(String),
    OpenAi(String),
    DeepSeek(String),
    /// Base URL up to `/v1`; the model id follows `#` (default `default`).
    Http {
        base_url: String,
        model: String,
    },
}

impl FromStr for LlmSpec {
    type Err = LlmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            LlmError::Other(format!(
                "--llm {s:?}: expected replay, local:<model-or-gguf-path>, openai:<model>, \
                 deepseek:<model> or http:<url>[#<model>]"
            ))
        };
        if s == "replay" {
            return Ok(Self::Replay);
        }
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "local" => Ok(Self::Local(rest.to_string())),
            "openai" => Ok(Self::OpenAi(rest.to_string())),
            "deepseek" => Ok(Self::DeepSeek(rest.to_string())),
            "http" => {
                let (url, model) = rest.split_once('#').unwrap_or((rest, "default"));
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad());
                }
                Ok(Self::Http {
                    base_url: url.to_string(),
                    model: model.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }
}

impl LlmSpec {
    /// Calls an API that bills per token (a run asks for `--yes` first).
    pub fn is_paid(&self) -> bool {
        matches!(self, Self::OpenAi(_) | Self::DeepSeek(_))
    }

    /// The model it names (`None` for replay, whose model is whichever made the recordings).
    pub fn model(&self) -> Option<&str> {
        match self {
            Self::Replay => None,
            Self::Local(m) | Self::OpenAi(m) | Self::DeepSeek(m) => Some(m),
            Self::Http { model, .. } => Some(model),
        }
    }
}

impl std::fmt::Display for LlmSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Replay => f.write_str("replay"),
            Self::Local(m) => write!(f, "local:{m}"),
            Self::OpenAi(m) => write!(f, "openai:{m}"),
            Self::DeepSeek(m) => write!(f, "deepseek:{m}"),
            Self::Http { base_url, model } => write!(f, "http:{base_url}#{model}"),
        }
    }
}

/// Everything besides the spec that decides how a model is built.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    pub mode: RecordMode,
    /// JSONL recordings; required unless `mode` is `off`.
    pub recordings: Option<PathBuf>,
    /// Local model threads (`None`: the backend default).
    pub threads: Option<usize>,
    /// Where pinned local models are fetched to (`local:<pinned name>` needs it).
    pub models_dir: Option<PathBuf>,
    /// Local model context window.
    pub n_ctx: Option<u32>,
    /// HTTP: calls in flight at once. Local: sequences decoded together in one batch
    /// ([`crate::local::LocalConfig::slots`]; answers then depend on the schedule, so pass 1
    /// where they must depend on the request alone).
    pub jobs: Option<usize>,
    /// HTTP: limit on one attempt.
    pub timeout: Option<Duration>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// Defer bulk requests to the provider's Batch API (see [`crate::batch`]): only for a live
    /// model in `auto` mode whose provider has one (OpenAI, or an OpenAI-compatible server
    /// that serves `/v1/batches`); any other is an error before the first call.
    pub batch: Option<BatchOptions>,
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self {
            mode: RecordMode::Replay,
            recordings: None,
            threads: None,
            models_dir: None,
            n_ctx: None,
            jobs: None,
            timeout: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            batch: None,
        }
    }
}

/// A built model and what a report needs from it.
pub struct LlmHandle {
    pub model: Arc<dyn ChatModel>,
    /// Where the calls to `model` are booked: each method run books in a scope of it (see
    /// [`UsageLedger::scope`]), so it totals the model's use over a whole run.
    pub ledger: UsageLedger,
    pub store: Option<Arc<Store>>,
    pub mode: RecordMode,
    /// Where deferred requests wait for a batch, with `batch` options on a live model; the
    /// run flushes it (see [`Batcher::flush`]). `None` when every call is synchronous.
    pub batcher: Option<Arc<Batcher>>,
}

/// `(path, recorded name, sha256)` of a local spec, without loading it. A pinned name's path
/// is in `models_dir`, `None` when none is given (its identity needs no file).
fn local_identity(
    name_or_path: &str,
    models_dir: Option<&Path>,
) -> Result<(Option<PathBuf>, String, String), LlmError> {
    if let Ok(p) = fetch::pinned(name_or_path) {
        return Ok((
            models_dir.map(|d| fetch::model_path(p, d)),
            p.name.to_string(),
            p.sha256.to_string(),
        ));
    }
    let path = Path::new(name_or_path);
    if path.extension().is_some_and(|e| e == "gguf") || path.is_file() {
        if !path.is_file() {
            return Err(LlmError::Other(format!(
                "{}: no such GGUF file",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        return Ok((Some(path.to_path_buf()), name, fetch::file_sha256(path)?));
    }
    // Re-raise the pinned-name error: it lists the names that do exist.
    Err(fetch::pinned(name_or_path).expect_err("not a pinned name"))
}

/// The identity a spec records under, computed without loading a model or needing a key.
pub fn model_info(spec: &LlmSpec) -> Result<Option<ModelInfo>, LlmError> {
    Ok(match spec {
        LlmSpec::Replay => None,
        LlmSpec::Local(m) => {
            let (_, name, sha) = local_identity(m, None)?;
            Some(ModelInfo {
                backend: "local".into(),
                model: name,
                file_sha256: Some(sha),
            })
        }
        LlmSpec::OpenAi(m) => Some(ModelInfo {
            backend: "openai".into(),
            model: m.clone(),
            file_sha256: None,
        }),
        LlmSpec::DeepSeek(m) => Some(ModelInfo {
            backend: "deepseek".into(),
            model: m.clone(),
            file_sha256: None,
        }),
        LlmSpec::Http { model, .. } => Some(ModelInfo {
            backend: "http".into(),
            model: model.clone(),
            file_sha256: None,
        }),
    })
}

fn http_config(spec: &LlmSpec, o: &LlmOptions) -> Result<HttpConfig, LlmError> {
    let mut c = match spec {
        LlmSpec::OpenAi(m) => HttpConfig::openai(m)?,
        LlmSpec::DeepSeek(m) => HttpConfig::deepseek(m)?,
        LlmSpec::Http { base_url, model } => HttpConfig::generic(base_url, model),
        _ => unreachable!("only HTTP specs"),
    };
    if let Some(n) = o.jobs {
        c.jobs = n;
    }
    if let Some(t) = o.timeout {
        c.timeout = t;
    }
    c.requests_per_minute = o.requests_per_minute;
    c.tokens_per_minute = o.tokens_per_minute;
    Ok(c)
}

#[cfg(feature = "local")]
fn load_local(m: &str, o: &LlmOptions) -> Result<Arc<dyn ChatModel>, LlmError> {
    let (path, name, sha) = local_identity(m, o.models_dir.as_deref())?;
    let path = path.ok_or_else(|| {
        LlmError::Other(format!(
            "local:{m}: no models directory was given to find the pinned model in"
        ))
    })?;
    let mut c = crate::local::LocalConfig::new(path);
    c.name = name;
    c.file_sha256 = Some(sha);
    if let Some(t) = o.threads {
        c.threads = t;
    }
    if let Some(n) = o.n_ctx {
        c.n_ctx = n;
    }
    if let Some(n) = o.jobs {
        // More calls than slots simply wait for one.
        c.slots = n.clamp(1, crate::MAX_LOCAL_SLOTS.min(c.n_batch as usize));
    }
    Ok(Arc::new(crate::local::LocalModel::load(c)?))
}

#[cfg(not(feature = "local"))]
fn load_local(m: &str, _o: &LlmOptions) -> Result<Arc<dyn ChatModel>, LlmError> {
    Err(LlmError::Other(format!(
        "local:{m} needs the `local` feature (run `cargo xtask-local ...`); replaying its \
         recordings does not"
    )))
}

/// Builds the model for `spec`. In replay mode nothing is loaded and no key is needed: the
/// model's identity comes from the spec (or from the recordings for `--llm replay`).
pub fn build_model(spec: &LlmSpec, opts: &LlmOptions) -> Result<LlmHandle, LlmError> {
    let mode = if *spec == LlmSpec::Replay {
        RecordMode::Replay
    } else {
        opts.mode
    };
    let store = match (&opts.recordings, mode) {
        (Some(p), _) => Some(Arc::new(Store::open(p)?)),
        (None, RecordMode::Off) => None,
        (None, m) => {
            return Err(LlmError::Other(format!(
                "record mode {m} needs a recordings file"
            )));
        }
    };
    if let Some(b) = opts.batch
        && mode != RecordMode::Replay
    {
        check_batch(spec, mode)?;
        if b.max_lines == 0 || b.max_bytes == 0 {
            return Err(LlmError::Other(
                "batch: max_lines and max_bytes must be at least 1".to_string(),
            ));
        }
    }
    let mut batcher = None;
    let recorder = if mode == RecordMode::Replay {
        let store = store.clone().expect("checked above");
        match model_info(spec)? {
            Some(info) => Recorder::replay_only(info, store),
            None => Recorder::replay_sole_model(store)?,
        }
    } else {
        let inner: Arc<dyn ChatModel> = match spec {
            LlmSpec::Local(m) => load_local(m, opts)?,
            LlmSpec::Replay => unreachable!("replay handled above"),
            _ => {
                let client = Arc::new(OpenAiClient::new(http_config(spec, opts)?)?);
                if let (Some(b), Some(store)) = (opts.batch, &store) {
                    let backend: Arc<dyn BatchBackend> = client.clone();
                    batcher = Some(Arc::new(Batcher::new(
                        backend,
                        store.clone(),
                        client.info(),
                        client.settings(),
                        b,
                    )));
                }
                client
            }
        };
        let recorder = Recorder::new(inner, store.clone(), mode)?;
        match &batcher {
            Some(b) => recorder.with_batcher(b.clone()),
            None => recorder,
        }
    };
    Ok(LlmHandle {
        model: Arc::new(recorder),
        ledger: UsageLedger::default(),
        store,
        mode,
        batcher,
    })
}

/// Whether `spec` can run with the Batch API in `mode`: an error naming why not, before any
/// call is made.
fn check_batch(spec: &LlmSpec, mode: RecordMode) -> Result<(), LlmError> {
    match spec {
        LlmSpec::OpenAi(_) | LlmSpec::Http { .. } => {}
        LlmSpec::DeepSeek(m) => {
            return Err(LlmError::Other(format!(
                "deepseek:{m}: DeepSeek has no Batch API; run without --batch"
            )));
        }
        LlmSpec::Local(m) => {
            return Err(LlmError::Other(format!(
                "local:{m}: an in-process model has no Batch API; run without --batch"
            )));
        }
        LlmSpec::Replay => {}
    }
    if mode != RecordMode::Auto {
        return Err(LlmError::Other(format!(
            "--batch needs record mode auto (answers stored as they come back), not {mode}"
        )));
    }
    Ok(())
}

/// One chat and one yes/no scoring of two candidates, unrecorded: what `cargo xtask model try`
/// prints to show that a model loads and answers in both of the ways the methods use.
pub fn smoke_test(
    spec: &LlmSpec,
    models_dir: &Path,
    threads: usize,
    max_tokens: u32,
    prompt: &str,
) -> Result<String, LlmError> {
    use crate::{ChatRequest, Message, ScoreRequest};
    let opts = LlmOptions {
        mode: RecordMode::Off,
        threads: Some(threads),
        models_dir: Some(models_dir.to_path_buf()),
        ..Default::default()
    };
    let h = build_model(spec, &opts)?;
    let mut req = ChatRequest::new(vec![Message::user(prompt)]);
    req.sampling.max_tokens = Some(max_tokens);
    let chat = crate::block_on(h.model.chat(&req))?;
    let score = ScoreRequest {
        messages: vec![Message::system("You answer only Yes or No.")],
        prefix: "The user loves space adventures. Would the user enjoy watching ".to_string(),
        suffixes: vec![
            "\"Star Wars (1977)\"?".to_string(),
            "\"Notting Hill (1999)\"?".to_string(),
        ],
        account: None,
        priority: 0,
    };
    let s = crate::block_on(h.model.score(&score))?;
    Ok(format!(
        "model: {:?}\nchat ({} + {} tokens, {} ms):\n{}\nscores logit(Yes)-logit(No): {:?} ({} ms)",
        h.model.info(),
        chat.usage.prompt_tokens,
        chat.usage.completion_tokens,
        chat.usage.latency_ms,
        chat.content,
        s.scores,
        s.usage.latency_ms
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for s in [
            "replay",
            "local:smollm2-135m",
            "openai:gpt-4o-mini",
            "deepseek:deepseek-chat",
            "http:http://127.0.0.1:8080/v1#qwen",
        ] {
            assert_eq!(s.parse::<LlmSpec>().unwrap().to_string(), s);
        }
        assert_eq!(
            "http:http://h/v1".parse::<LlmSpec>().unwrap(),
            LlmSpec::Http {
                base_url: "http://h/v1".into(),
                model: "default".into()
            }
        );
        for bad in ["", "gpt-4o", "openai:", "ftp:x", "http:localhost:80"] {
            let e = bad.parse::<LlmSpec>().unwrap_err().to_string();
            assert!(e.contains("expected replay"), "{bad}: {e}");
        }
    }

    #[test]
    fn replay_of_a_pinned_local_model_needs_no_model_file() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LlmOptions {
            recordings: Some(dir.path().join("r.jsonl")),
            ..Default::default()
        };
        let h = build_model(&"local:smollm2-135m".parse().unwrap(), &opts).unwrap();
        let info = h.model.info();
        assert_eq!(info.model, "smollm2-135m");
        assert_eq!(
            info.file_sha256.as_deref(),
            Some(fetch::pinned("smollm2-135m").unwrap().sha256)
        );
    }

    #[test]
    fn a_live_mode_without_recordings_is_refused() {
        let opts = LlmOptions {
            mode: RecordMode::Auto,
            ..Default::default()
        };
        let e = build_model(&"http:http://127.0.0.1:9/v1".parse().unwrap(), &opts)
            .err()
            .unwrap();
        assert!(e.to_string().contains("needs a recordings file"));
    }
}
