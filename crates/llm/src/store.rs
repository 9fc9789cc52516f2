//! Record/replay: every call is keyed by the sha256 of its canonical request and kept in an
//! append-only JSONL file, so a paid API is never asked the same thing twice and CI runs with
//! no model at all.
//!
//! File format: one JSON object ([`Record`]) per line, each line written with a single
//! `write` followed by `fsync`. A crash can therefore only leave a *torn last line* (bytes
//! without the closing newline); [`Store::open`] drops it with a warning and the next append
//! truncates it away. Any other unparsable line is an error naming the file and line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::usage::{CallKind, UsageLedger};
use crate::{
    ChatModel, ChatRequest, ChatResponse, LlmError, Message, ModelInfo, Sampling, ScoreRequest,
    ScoreResponse,
};

/// Bumped when the canonical request layout changes, so old recordings miss loudly instead of
/// matching the wrong request.
const KEY_VERSION: u32 = 1;

/// How a [`Recorder`] uses its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    /// Pass every call to the model; the store is neither read nor written.
    Off,
    /// Call the model for every request and append the result, even when a recording exists
    /// (re-recording; the newest line for a key wins on load).
    Record,
    /// Answer only from recordings; a miss is [`LlmError::ReplayMiss`].
    #[default]
    Replay,
    /// Answer from recordings; call the model and append on a miss.
    Auto,
}

impl FromStr for RecordMode {
    type Err = LlmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "record" => Ok(Self::Record),
            "replay" => Ok(Self::Replay),
            "auto" => Ok(Self::Auto),
            _ => Err(LlmError::Other(format!(
                "record mode {s:?}: expected one of off, record, replay, auto"
            ))),
        }
    }
}

impl std::fmt::Display for RecordMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Record => "record",
            Self::Replay => "replay",
            Self::Auto => "auto",
        })
    }
}

#[derive(Serialize)]
struct CanonicalModel<'a> {
    backend: &'a str,
    model: &'a str,
    file_sha256: Option<&'a str>,
}

#[derive(Serialize)]
struct CanonicalChat<'a> {
    v: u32,
    kind: &'static str,
    model: CanonicalModel<'a>,
    messages: &'a [Message],
    sampling: &'a Sampling,
}

#[derive(Serialize)]
struct CanonicalScore<'a> {
    v: u32,
    kind: &'static str,
    model: CanonicalModel<'a>,
    messages: &'a [Message],
    prefix: &'a str,
    suffixes: &'a [String],
}

fn canonical_model(info: &ModelInfo) -> CanonicalModel<'_> {
    CanonicalModel {
        backend: &info.backend,
        model: &info.model,
        file_sha256: info.file_sha256.as_deref(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Cache key of a chat call: sha256 over backend, model (and GGUF sha256), messages and
/// sampling. The stage and any credential are deliberately absent.
pub fn chat_key(info: &ModelInfo, req: &ChatRequest) -> String {
    let c = CanonicalChat {
        v: KEY_VERSION,
        kind: "chat",
        model: canonical_model(info),
        messages: &req.messages,
        sampling: &req.sampling,
    };
    sha256_hex(&serde_json::to_vec(&c).expect("canonical request serialises"))
}

/// Cache key of a pointwise scoring call.
pub fn score_key(info: &ModelInfo, req: &ScoreRequest) -> String {
    let c = CanonicalScore {
        v: KEY_VERSION,
        kind: "score",
        model: canonical_model(info),
        messages: &req.messages,
        prefix: &req.prefix,
        suffixes: &req.suffixes,
    };
    sha256_hex(&serde_json::to_vec(&c).expect("canonical request serialises"))
}

/// One line of a recordings file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub kind: CallKind,
    /// Backend, model name, and GGUF sha256 or API model id.
    pub model: ModelInfo,
    /// Backend settings at recording time (threads, context, base URL, ...).
    #[serde(default)]
    pub settings: serde_json::Value,
    /// The request as sent, kept so a changed prompt can be diffed against the recording.
    pub request: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreResponse>,
    /// Seconds since the Unix epoch.
    pub recorded_at: u64,
}

struct StoreInner {
    index: HashMap<String, Record>,
    /// Length of the valid prefix of the file (everything up to the last newline).
    valid_len: u64,
    file: Option<File>,
}

/// Append-only JSONL recordings, shared by any number of [`Recorder`]s.
pub struct Store {
    path: PathBuf,
    torn_bytes: u64,
    inner: Mutex<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("len", &self.len())
            .finish()
    }
}

impl Store {
    /// Loads `path` if it exists (it is created on the first append otherwise).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LlmError> {
        let path = path.into();
        let mut index = HashMap::new();
        let mut valid_len = 0u64;
        let mut torn_bytes = 0u64;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let valid = match bytes.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => 0,
                };
                torn_bytes = (bytes.len() - valid) as u64;
                valid_len = valid as u64;
                if torn_bytes > 0 {
                    eprintln!(
                        "warning: {}: dropping a torn last line ({torn_bytes} bytes without a \
                         newline, left by an interrupted write)",
                        path.display()
                    );
                }
                let text = std::str::from_utf8(&bytes[..valid])
                    .map_err(|e| LlmError::Other(format!("{}: not UTF-8: {e}", path.display())))?;
                for (lineno, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let rec: Record = serde_json::from_str(line).map_err(|e| {
                        LlmError::Other(format!(
                            "{}:{}: invalid recording: {e}",
                            path.display(),
                            lineno + 1
                        ))
                    })?;
                    index.insert(rec.key.clone(), rec);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LlmError::Other(format!("{}: {e}", path.display()))),
        }
        Ok(Self {
            path,
            torn_bytes,
            inner: Mutex::new(StoreInner {
                index,
                valid_len,
                file: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of a torn last line dropped on load (0 when the file was intact).
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    pub fn len(&self) -> usize {
        self.lock().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<Record> {
        self.lock().index.get(key).cloned()
    }

    /// Every distinct model that produced a recording, sorted.
    pub fn models(&self) -> Vec<ModelInfo> {
        let mut v: Vec<ModelInfo> = self
            .lock()
            .index
            .values()
            .map(|r| r.model.clone())
            .collect();
        v.sort_by(|a, b| {
            (&a.backend, &a.model, &a.file_sha256).cmp(&(&b.backend, &b.model, &b.file_sha256))
        });
        v.dedup();
        v
    }

    /// Appends one record durably (write + fsync) before making it visible.
    pub fn append(&self, rec: Record) -> Result<(), LlmError> {
        let mut line = serde_json::to_vec(&rec)
            .map_err(|e| LlmError::Other(format!("serialising recording: {e}")))?;
        line.push(b'\n');
        let mut inner = self.lock();
        let io = |e: std::io::Error| LlmError::Other(format!("{}: {e}", self.path.display()));
        if inner.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.path)
                .map_err(io)?;
            // Cut a torn tail so the next line does not glue onto half a record.
            if f.metadata().map_err(io)?.len() > inner.valid_len {
                f.set_len(inner.valid_len).map_err(io)?;
            }
            f.seek(SeekFrom::Start(inner.valid_len)).map_err(io)?;
            inner.file = Some(f);
        }
        let f = inner.file.as_mut().expect("opened above");
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)?;
        inner.valid_len += line.len() as u64;
        inner.index.insert(rec.key.clone(), rec);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        // A panic while holding the lock cannot leave the index half-updated (insert is the
        // last step), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn start_of(messages: &[Message]) -> String {
    messages
        .last()
        .map(|m| m.content.chars().take(80).collect())
        .unwrap_or_default()
}

/// A [`ChatModel`] that answers from a [`Store`] and, depending on [`RecordMode`], calls and
/// records an inner model. Every call, live or replayed, is booked in its [`UsageLedger`].
pub struct Recorder {
    inner: Option<Arc<dyn ChatModel>>,
    info: ModelInfo,
    settings: serde_json::Value,
    store: Option<Arc<Store>>,
    mode: RecordMode,
    ledger: UsageLedger,
    /// One async lock per key in flight, so concurrent identical requests pay once.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A replay-only model: a [`Recorder`] with no inner model, in [`RecordMode::Replay`].
pub type ReplayModel = Recorder;

impl Recorder {
    /// Wraps `inner`. `store` may be `None` only with [`RecordMode::Off`].
    pub fn new(
        inner: Arc<dyn ChatModel>,
        store: Option<Arc<Store>>,
        mode: RecordMode,
    ) -> Result<Self, LlmError> {
        if store.is_none() && mode != RecordMode::Off {
            return Err(LlmError::Other(format!(
                "record mode {mode} needs a recordings file"
            )));
        }
        Ok(Self {
            info: inner.info(),
            settings: inner.settings(),
            inner: Some(inner),
            store,
            mode,
            ledger: UsageLedger::default(),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// Answers only from `store`, as model `info`; needs no model file, key or network.
    pub fn replay_only(info: ModelInfo, store: Arc<Store>) -> Self {
        Self {
            inner: None,
            info,
            settings: serde_json::Value::Null,
            store: Some(store),
            mode: RecordMode::Replay,
            ledger: UsageLedger::default(),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Replays `store` as whichever single model recorded it; an error when the file holds
    /// several models (name one with [`Recorder::replay_only`]) or none.
    pub fn replay_sole_model(store: Arc<Store>) -> Result<Self, LlmError> {
        let models = store.models();
        match models.as_slice() {
            [one] => Ok(Self::replay_only(one.clone(), store)),
            [] => Err(LlmError::Other(format!(
                "{}: no recordings to replay (record them with a real model first)",
                store.path().display()
            ))),
            many => Err(LlmError::Other(format!(
                "{}: recordings from {} models ({}); name the one to replay",
                store.path().display(),
                many.len(),
                many.iter()
                    .map(|m| format!("{}:{}", m.backend, m.model))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Books calls into `ledger` instead of a private one (share one ledger across models).
    pub fn with_ledger(mut self, ledger: UsageLedger) -> Self {
        self.ledger = ledger;
        self
    }

    pub fn ledger(&self) -> &UsageLedger {
        &self.ledger
    }

    pub fn mode(&self) -> RecordMode {
        self.mode
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key.to_string()).or_default().clone()
    }

    fn inner(&self) -> Result<&Arc<dyn ChatModel>, LlmError> {
        self.inner.as_ref().ok_or_else(|| {
            LlmError::Other("replay-only model cannot call a live model".to_string())
        })
    }

    fn miss(&self, key: &str, messages: &[Message]) -> LlmError {
        LlmError::ReplayMiss {
            key: key.to_string(),
            model: format!("{}:{}", self.info.backend, self.info.model),
            last_message_start: start_of(messages),
        }
    }

    fn record(
        &self,
        key: String,
        kind: CallKind,
        request: serde_json::Value,
        chat: Option<ChatResponse>,
        score: Option<ScoreResponse>,
    ) -> Result<(), LlmError> {
        let store = self.store.as_ref().expect("checked in new");
        store.append(Record {
            key,
            kind,
            model: self.info.clone(),
            settings: self.settings.clone(),
            request,
            chat,
            score,
            recorded_at: now_unix(),
        })
    }
}

#[async_trait]
impl ChatModel for Recorder {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn settings(&self) -> serde_json::Value {
        self.settings.clone()
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let model = &self.info.model;
        if self.mode == RecordMode::Off {
            let r = self.inner()?.chat(req).await?;
            self.ledger
                .book(req.stage, model, CallKind::Chat, false, &r.usage);
            return Ok(r);
        }
        let key = chat_key(&self.info, req);
        let store = self.store.as_ref().expect("checked in new");
        let lock = self.key_lock(&key);
        let _guard = lock.lock().await;
        if self.mode != RecordMode::Record
            && let Some(rec) = store.get(&key)
            && let Some(r) = rec.chat
        {
            self.ledger
                .book(req.stage, model, CallKind::Chat, true, &r.usage);
            return Ok(r);
        }
        if self.mode == RecordMode::Replay {
            return Err(self.miss(&key, &req.messages));
        }
        let r = self.inner()?.chat(req).await?;
        let request = serde_json::json!({ "messages": req.messages, "sampling": req.sampling });
        self.record(key, CallKind::Chat, request, Some(r.clone()), None)?;
        self.ledger
            .book(req.stage, model, CallKind::Chat, false, &r.usage);
        Ok(r)
    }

    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        let model = &self.info.model;
        if self.mode == RecordMode::Off {
            let r = self.inner()?.score(req).await?;
            self.ledger
                .book(req.stage, model, CallKind::Score, false, &r.usage);
            return Ok(r);
        }
        let key = score_key(&self.info, req);
        let store = self.store.as_ref().expect("checked in new");
        let lock = self.key_lock(&key);
        let _guard = lock.lock().await;
        if self.mode != RecordMode::Record
            && let Some(rec) = store.get(&key)
            && let Some(r) = rec.score
        {
            self.ledger
                .book(req.stage, model, CallKind::Score, true, &r.usage);
            return Ok(r);
        }
        if self.mode == RecordMode::Replay {
            let shown = if req.suffixes.is_empty() {
                req.messages.clone()
            } else {
                req.messages_for(0)
            };
            return Err(self.miss(&key, &shown));
        }
        let r = self.inner()?.score(req).await?;
        if r.scores.len() != req.suffixes.len() {
            return Err(LlmError::Other(format!(
                "model {model} returned {} scores for {} candidates",
                r.scores.len(),
                req.suffixes.len()
            )));
        }
        let request = serde_json::json!({
            "messages": req.messages, "prefix": req.prefix, "suffixes": req.suffixes
        });
        self.record(key, CallKind::Score, request, None, Some(r.clone()))?;
        self.ledger
            .book(req.stage, model, CallKind::Score, false, &r.usage);
        Ok(r)
    }
}
