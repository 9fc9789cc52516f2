//! A simulated OpenAI-compatible chat-completions API, for rehearsing long paid runs offline.
//!
//! Answers are deterministic functions of the model id and the prompt, written in the exact
//! formats the `agp` harness parses; faults (429s, 5xx, malformed bodies, dropped
//! connections, refusals, outages, a real per-minute limiter) are injected deterministically
//! from a seed. `GET /sim/stats` counts what was answered, so a test can check that a run
//! survived the faults without paying twice for any request.
//!
//! It is a rehearsal and test tool: nothing it answers may ever end up in a committed report.
//! Responses carry `system_fingerprint: "agp-sim-api"` and an `x-agp-sim: 1` header so a
//! harness can tell.
//!
//! It also serves OpenAI's Files and Batches API (see `batch`): every batch line is answered
//! by the synchronous endpoint's code, and both report cached prompt tokens from one
//! prompt-prefix cache when [`SimConfig::prefix_cache`] is set.

#![forbid(unsafe_code)]

mod answer;
mod batch;
mod cache;
mod faults;
pub mod http;
mod limiter;
mod server;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use answer::{
    Answer, BOS, EOS, PromptKind, Signal, answer, answer_labels, candidates_fingerprint, classify,
    parse_candidates, prompt_hash,
};
pub use batch::BatchConfig;
pub use cache::PrefixCacheConfig;
pub use faults::{FaultRates, RandomFault};

/// Marks every response as simulated (`system_fingerprint` in the body).
pub const SYSTEM_FINGERPRINT: &str = "agp-sim-api";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("sim-api: {0}")]
    Io(#[from] std::io::Error),
    #[error("sim-api: invalid config: {0}")]
    Config(String),
    #[error("sim-api: truth file {path}: {message}")]
    Truth { path: PathBuf, message: String },
}

/// How the simulator behaves. `Default` is a well-behaved, instant, fault-free API.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// Seeds the random fault draws (answers never depend on it).
    pub seed: u64,
    pub faults: FaultRates,
    /// Requests whose last user message contains any of these get a refusal.
    pub refuse_containing: Vec<String>,
    /// Requests whose last user message contains any of these end with `content_filter`.
    pub content_filter_containing: Vec<String>,
    /// Requests whose last user message contains any of these get a 200 with empty content
    /// (as some OpenAI-compatible servers answer); an empty string matches every request.
    pub empty_containing: Vec<String>,
    /// Cut answers longer than the request's `max_tokens` (≈ chars/4) with `finish_reason:
    /// "length"`, as real providers do; off keeps every answer whole.
    pub length_cut: bool,
    /// Slept (concurrently) before answering each chat request.
    pub latency: Duration,
    /// Requests per sliding minute; beyond it, 429 until the window frees.
    pub rpm: Option<u32>,
    /// Tokens (prompt estimate + `max_tokens`) per sliding minute.
    pub tpm: Option<u64>,
    /// Every chat request in this span after start gets a 503.
    pub down_for: Duration,
    /// The wait a storm's random 429 asks for (`Retry-After` rounded up to whole seconds,
    /// `retry-after-ms` exact); zero means 1 s, what providers commonly say.
    pub storm_retry_after: Duration,
    /// Probability (0..=1, decided per prompt) of favouring the held-out item.
    pub signal: f64,
    /// [`candidates_fingerprint`] of a candidate list → index of its held-out item. The texts
    /// are those the prompt shows, i.e. after `agp::prompts::neutralise_item_text`.
    pub truth: HashMap<String, usize>,
    /// The held-out items' texts: pointwise prompts show one candidate, not the list.
    pub held_out_texts: HashSet<String>,
    /// Append one JSON line per attempt here.
    pub log: Option<PathBuf>,
    /// Sample as a real server does when a request leaves the temperature unset (llama-server
    /// samples at 0.8, OpenAI at 1), or sets one above 0 without a seed: the answer is then
    /// drawn anew per attempt instead of read from the prompt's hash. Off, every answer is a
    /// function of the prompt.
    pub sample_when_unset: bool,
    /// The most top log-probabilities returned, whatever a request asks (`None`: OpenAI's 20).
    /// A smaller cap rehearses a server whose top list leaves labels out.
    pub max_top_logprobs: Option<u8>,
    /// The one model `GET /v1/models` lists and every completion names, whatever the request
    /// asked (as llama-server names its GGUF); `None` echoes the request's and lists nothing.
    pub served_model: Option<String>,
    /// Report `usage.prompt_tokens_details.cached_tokens` from a prompt-prefix cache (on the
    /// synchronous endpoint and in batches alike); `None` reports no cache.
    pub prefix_cache: Option<PrefixCacheConfig>,
    /// The Files and Batches API (`/v1/files`, `/v1/batches`).
    pub batch: BatchConfig,
}

/// One entry of a truth file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TruthEntry {
    pub candidates: Vec<String>,
    pub gt: usize,
}

impl SimConfig {
    /// Records that `candidates[gt]` is the held-out item of this list.
    pub fn add_truth(&mut self, candidates: &[impl AsRef<str>], gt: usize) {
        let refs: Vec<&str> = candidates.iter().map(AsRef::as_ref).collect();
        self.truth.insert(candidates_fingerprint(&refs), gt);
        if let Some(t) = refs.get(gt) {
            self.held_out_texts.insert((*t).to_string());
        }
    }

    /// Loads `[{"candidates": [...], "gt": i}, ...]`; returns the number of entries.
    pub fn load_truth(&mut self, path: &Path) -> Result<usize, SimError> {
        let err = |message: String| SimError::Truth {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let entries: Vec<TruthEntry> =
            serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        for (i, e) in entries.iter().enumerate() {
            if e.gt >= e.candidates.len() {
                return Err(err(format!(
                    "entry {i}: gt {} is outside its {} candidates",
                    e.gt,
                    e.candidates.len()
                )));
            }
            self.add_truth(&e.candidates, e.gt);
        }
        Ok(entries.len())
    }

    fn validate(&self) -> Result<(), SimError> {
        self.faults.validate().map_err(SimError::Config)?;
        self.batch.validate().map_err(SimError::Config)?;
        if !(0.0..=1.0).contains(&self.signal) {
            return Err(SimError::Config(format!(
                "signal {} is outside 0..=1",
                self.signal
            )));
        }
        if self.rpm == Some(0) || self.tpm == Some(0) {
            return Err(SimError::Config(
                "rpm and tpm must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

/// What `GET /sim/stats` returns. Every attempt is counted once: either under `by_status`
/// or, for a connection dropped before or during the response, under `faults.dropped`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Chat-completion attempts received (malformed requests included).
    pub attempts: u64,
    /// Attempts by HTTP status sent.
    pub by_status: BTreeMap<u16, u64>,
    /// Faults by kind: `rate_limited`, `server_error`, `malformed`, `dropped` (random);
    /// `outage`, `over_limit` (rpm/tpm), `bad_request`, `refusal`, `content_filter`,
    /// `length_cut`, `empty`.
    pub faults: BTreeMap<String, u64>,
    /// 200s with a well-formed completion (refusals and cut answers included: a provider
    /// bills them).
    pub answered: u64,
    /// Answered attempts by prompt kind.
    pub answered_by_kind: BTreeMap<String, u64>,
    /// Answers in which the held-out item was favoured.
    pub signal_used: u64,
    /// Distinct request bodies answered.
    pub distinct_answered: u64,
    /// Distinct request bodies answered more than once: paid for twice.
    pub answered_twice: u64,
    /// Fingerprints (sha256 of the canonical request JSON) of those bodies.
    pub answered_twice_fingerprints: Vec<String>,
    /// The most times any one request body was answered.
    #[serde(default)]
    pub most_answered: u64,
    /// Chat requests that left the temperature or the seed unset (the seed only, for the
    /// o-series, which take no temperature): answers the provider's default decided.
    #[serde(default)]
    pub undeclared_decoding: u64,
    /// Files uploaded to `/v1/files`.
    #[serde(default)]
    pub files_uploaded: u64,
    /// Batches created (failed validation included).
    #[serde(default)]
    pub batches_created: u64,
    /// Lines of the batches created that passed validation: with `batch_lines`, whether any
    /// request was submitted twice or never answered.
    #[serde(default)]
    pub batch_lines_submitted: u64,
    /// Batch lines answered, each once, when its batch completed (not in `attempts`; an
    /// answered line counts in `answered`, `distinct_answered` and `answered_twice` like a
    /// synchronous answer, so a body answered once in a batch and once synchronously shows as
    /// paid twice).
    #[serde(default)]
    pub batch_lines: u64,
    /// Batch lines by the status of their response (not in `by_status`).
    #[serde(default)]
    pub batch_by_status: BTreeMap<u16, u64>,
}

/// The running simulator. Dropping it stops the server and closes its connections.
pub struct SimServer {
    pub addr: SocketAddr,
    shared: Arc<server::Shared>,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Serves on `127.0.0.1` at a free port.
    pub async fn start(cfg: SimConfig) -> Result<Self, SimError> {
        Self::start_on(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Serves on `addr`. Callers choose loopback: the simulator has no authentication.
    pub async fn start_on(cfg: SimConfig, addr: SocketAddr) -> Result<Self, SimError> {
        let listener = TcpListener::bind(addr).await?;
        Self::with_listener(cfg, listener)
    }

    /// Serves on an already bound listener.
    pub fn with_listener(cfg: SimConfig, listener: TcpListener) -> Result<Self, SimError> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(server::Shared::new(cfg)?);
        let task = tokio::spawn(server::accept_loop(shared.clone(), listener));
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT/v1`: what an OpenAI client takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// As `POST /sim/reset`: zeroes the stats and the per-body attempt counters.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Serves for as long as this future is polled (forever, unless dropped); for
    /// foreground use, where Ctrl-C ends the process.
    pub async fn run(self) {
        std::future::pending::<()>().await;
        drop(self);
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its set of connection tasks, which aborts them too.
        self.task.abort();
    }
}

/// Serves on `listener` until the returned future is dropped.
pub async fn serve(cfg: SimConfig, listener: TcpListener) -> Result<(), SimError> {
    let shared = Arc::new(server::Shared::new(cfg)?);
    server::accept_loop(shared, listener).await;
    Ok(())
}

/// sha256 of the request JSON with object keys sorted (the raw bytes if it is not JSON), so
/// the same request counts as the same whatever the client's key order.
pub fn body_fingerprint(body: &[u8]) -> String {
    hex::encode(fingerprint_bytes(body))
}

/// [`body_fingerprint`] before hex encoding; the stats keep these (32 bytes a body, not 64
/// characters) because a long rehearsal sees a million bodies.
pub(crate) fn fingerprint_bytes(body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let mut s = String::new();
            canonical(&v, &mut s);
            Sha256::digest(s.as_bytes()).into()
        }
        Err(_) => Sha256::digest(body).into(),
    }
}

/// Written out rather than relying on `serde_json::Map` order, which a `preserve_order`
/// feature anywhere in the build would change.
fn canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace() {
        let a = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":1}"#;
        let b =
            br#"{ "seed": 1, "messages": [ {"content": "hi", "role": "user"} ], "model": "m" }"#;
        assert_eq!(body_fingerprint(a), body_fingerprint(b));
        let c = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":2}"#;
        assert_ne!(body_fingerprint(a), body_fingerprint(c));
    }

    #[test]
    fn config_validation() {
        let ok = SimConfig::default();
        assert!(ok.validate().is_ok());
        let bad = SimConfig {
            signal: 1.5,
            ..SimConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = SimConfig {
            rpm: Some(0),
            ..SimConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
