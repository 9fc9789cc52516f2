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

use crate::batch::{BatchCall, Batcher};
use crate::usage::CallKind;
use crate::{
    CallMode, ChatModel, ChatRequest, ChatResponse, FailureReason, LabelRequest, LabelResponse,
    LlmError, Message, ModelInfo, Sampling, ScoreRequest, ScoreResponse, Usage,
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
/// sampling. The account label and any credential are deliberately absent.
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

#[derive(Serialize)]
struct CanonicalScorePart<'a> {
    v: u32,
    kind: &'static str,
    model: CanonicalModel<'a>,
    messages: &'a [Message],
}

/// Cache key of one candidate of a pointwise scoring: the messages it sends (`messages` plus
/// `prefix + suffix`). Each candidate is its own paid request, so it is its own record: the
/// same history and candidate asked under two backbones, or the siblings of a candidate whose
/// request failed, are never paid again.
pub fn score_part_key(info: &ModelInfo, req: &ScoreRequest, i: usize) -> String {
    let messages = req.messages_for(i);
    let c = CanonicalScorePart {
        v: KEY_VERSION,
        kind: "score-part",
        model: canonical_model(info),
        messages: &messages,
    };
    sha256_hex(&serde_json::to_vec(&c).expect("canonical request serialises"))
}

#[derive(Serialize)]
struct CanonicalLabels<'a> {
    v: u32,
    kind: &'static str,
    model: CanonicalModel<'a>,
    messages: &'a [Message],
    labels: &'a [String],
    /// Absent while empty, so a request without one keeps the key it always had.
    #[serde(skip_serializing_if = "str::is_empty")]
    prefill: &'a str,
}

/// Cache key of a first-token label request: the messages, the labels read and the
/// assistant prefill they follow.
pub fn label_key(info: &ModelInfo, req: &LabelRequest) -> String {
    let c = CanonicalLabels {
        v: KEY_VERSION,
        kind: "labels",
        model: canonical_model(info),
        messages: &req.messages,
        labels: &req.labels,
        prefill: &req.prefill,
    };
    sha256_hex(&serde_json::to_vec(&c).expect("canonical request serialises"))
}

/// A call the provider answered without a usable result (a refusal, a content filter, an empty
/// completion): kept so a resumed run does not pay to be refused again. Transient failures are
/// never recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedFailure {
    pub reason: FailureReason,
    pub request_id: String,
    pub status: u16,
    pub message: String,
}

impl RecordedFailure {
    fn to_error(&self) -> LlmError {
        LlmError::Http {
            request_id: self.request_id.clone(),
            status: self.status,
            reason: self.reason,
            message: self.message.clone(),
        }
    }

    /// The failure to keep, if `e` is one a retry would only pay for again.
    pub(crate) fn of(e: &LlmError) -> Option<Self> {
        match e {
            LlmError::Http {
                request_id,
                status,
                reason,
                message,
            } if matches!(
                reason,
                FailureReason::Refusal | FailureReason::ContentFilter | FailureReason::Empty
            ) =>
            {
                Some(Self {
                    reason: *reason,
                    request_id: request_id.clone(),
                    status: *status,
                    message: message.clone(),
                })
            }
            _ => None,
        }
    }
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelResponse>,
    /// A permanent failure in place of an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RecordedFailure>,
    /// Seconds since the Unix epoch.
    pub recorded_at: u64,
}

struct StoreInner {
    index: HashMap<String, Record>,
    /// Length of the valid prefix of the file (everything up to the last newline).
    valid_len: u64,
    file: Option<File>,
}

/// See [`Store::summary`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordsSummary {
    pub records: usize,
    /// Seconds since the Unix epoch of the oldest and newest record.
    pub first_recorded: Option<u64>,
    pub last_recorded: Option<u64>,
    pub models: Vec<ModelInfo>,
    /// Distinct runtime settings (JSON) the records were made with.
    pub runtimes: std::collections::BTreeSet<String>,
    /// Distinct `kind: sampling` pairs of the requests (JSON).
    pub samplings: std::collections::BTreeSet<String>,
    /// Distinct models (and `system_fingerprint`s) an API said served its answers.
    #[serde(default)]
    pub served: std::collections::BTreeSet<String>,
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
                    .map_err(|e| LlmError::backend(format!("{}: not UTF-8", path.display()), e))?;
                for (lineno, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let rec: Record =
                        serde_json::from_str(line).map_err(|source| LlmError::Json {
                            what: format!("{}:{}: invalid recording", path.display(), lineno + 1),
                            source,
                        })?;
                    index.insert(rec.key.clone(), rec);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LlmError::io(path, e)),
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

    /// What the store's records have in common and where they differ: their models, runtime
    /// settings, request sampling and dates (every record, served in this run or not).
    pub fn summary(&self) -> RecordsSummary {
        let inner = self.lock();
        let mut sum = RecordsSummary::default();
        // Every record of the file, not only those this run asked for: a run resumed from its
        // checkpoints asks for less, and a report must not depend on whether it was resumed.
        for rec in inner.index.values() {
            sum.records += 1;
            sum.first_recorded = Some(
                sum.first_recorded
                    .map_or(rec.recorded_at, |t: u64| t.min(rec.recorded_at)),
            );
            sum.last_recorded = Some(
                sum.last_recorded
                    .map_or(rec.recorded_at, |t: u64| t.max(rec.recorded_at)),
            );
            if !sum.models.contains(&rec.model) {
                sum.models.push(rec.model.clone());
            }
            if !rec.settings.is_null() {
                // Where the server was says nothing about what answered, and differs between
                // two runs of the same model (another port), so it stays out of the summary.
                let mut settings = rec.settings.clone();
                if let Some(m) = settings.as_object_mut() {
                    m.remove("base_url");
                }
                sum.runtimes.insert(settings.to_string());
            }
            let mut sampling = rec.request.get("sampling").cloned().unwrap_or_default();
            // Seeds differ per request where a method draws several samples; that one was
            // sent is what a reader needs.
            // The declared seed (0) is the same everywhere and is shown as it is.
            if let Some(seed) = sampling
                .get_mut("seed")
                .filter(|v| !v.is_null() && v.as_u64() != Some(0))
            {
                *seed = serde_json::Value::from("one per request");
            }
            if let Some(c) = &rec.chat
                && !c.served.is_empty()
            {
                sum.served.insert(format!(
                    "{}{}",
                    c.served.model.as_deref().unwrap_or("(not named)"),
                    c.served
                        .system_fingerprint
                        .as_deref()
                        .map_or(String::new(), |f| format!(" (system_fingerprint {f})"))
                ));
            }
            sum.samplings
                .insert(format!("{:?}: {sampling}", rec.kind).to_lowercase());
        }
        sum.models.sort_by(|a, b| {
            (&a.backend, &a.model, &a.file_sha256).cmp(&(&b.backend, &b.model, &b.file_sha256))
        });
        sum
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

    /// Opens the file for appending now, so a recordings file that cannot be written is an
    /// error before the first paid call rather than after it.
    pub fn ensure_writable(&self) -> Result<(), LlmError> {
        let mut inner = self.lock();
        self.open_for_append(&mut inner)
    }

    fn open_for_append(&self, inner: &mut StoreInner) -> Result<(), LlmError> {
        let io = |e: std::io::Error| {
            LlmError::Other(format!(
                "recordings file {} cannot be written: {e}",
                self.path.display()
            ))
        };
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
        Ok(())
    }

    /// Appends one record durably (write + fsync) before making it visible.
    pub fn append(&self, rec: Record) -> Result<(), LlmError> {
        let mut line = serde_json::to_vec(&rec).map_err(|source| LlmError::Json {
            what: "serialising a recording".into(),
            source,
        })?;
        line.push(b'\n');
        let mut inner = self.lock();
        self.open_for_append(&mut inner)?;
        let io = |e: std::io::Error| LlmError::io(&self.path, e);
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
/// records an inner model. A replayed answer says so in its [`Usage::replayed`], for whoever
/// books the call in a [`crate::UsageLedger`].
pub struct Recorder {
    inner: Option<Arc<dyn ChatModel>>,
    info: ModelInfo,
    settings: serde_json::Value,
    store: Option<Arc<Store>>,
    mode: RecordMode,
    /// One async lock per key in flight, so concurrent identical requests pay once.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where misses that may wait go instead of the model (see [`crate::batch`]).
    batcher: Option<Arc<Batcher>>,
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
        if let (Some(store), RecordMode::Record | RecordMode::Auto) = (&store, mode) {
            store.ensure_writable()?;
        }
        Ok(Self {
            info: inner.info(),
            settings: inner.settings(),
            inner: Some(inner),
            store,
            mode,
            inflight: Mutex::new(HashMap::new()),
            batcher: None,
        })
    }

    /// Defers the misses `batcher` takes (in [`RecordMode::Auto`]) instead of calling.
    pub fn with_batcher(mut self, batcher: Arc<Batcher>) -> Self {
        self.batcher = Some(batcher);
        self
    }

    /// The usage of a recorded answer: replayed, unless this process paid for it (with a
    /// batcher, whose rounds replay what an earlier round paid for).
    fn replayed(&self, key: &str, usage: Usage) -> Usage {
        match &self.batcher {
            Some(b) if b.paid_now(key) => usage,
            _ => usage.replayed(1),
        }
    }

    /// The error to answer a miss with when it is deferred to a batch; `None` to call now.
    fn defer(
        &self,
        key: &str,
        kind: CallKind,
        request: &serde_json::Value,
        priority: u8,
        call: impl FnOnce() -> BatchCall,
    ) -> Option<LlmError> {
        match (&self.batcher, self.mode) {
            (Some(b), RecordMode::Auto) => b.defer(key, kind, request, priority, call),
            _ => None,
        }
    }

    /// Answers only from `store`, as model `info`; needs no model file, key or network.
    pub fn replay_only(info: ModelInfo, store: Arc<Store>) -> Self {
        Self {
            inner: None,
            info,
            settings: serde_json::Value::Null,
            store: Some(store),
            mode: RecordMode::Replay,
            inflight: Mutex::new(HashMap::new()),
            batcher: None,
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

    pub fn mode(&self) -> RecordMode {
        self.mode
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// The record of `req` (keyed `key`), or for the in-process backend the record of a
    /// request it answers identically ([`Sampling::local_equivalents`]): recordings made
    /// before every sampling field was sent left them unset, which that backend read as greedy
    /// with seed 0. An API samples where a field is unset, so its records are found only by
    /// their own key.
    fn recorded_chat(&self, store: &Store, key: &str, req: &ChatRequest) -> Option<Record> {
        if let Some(rec) = store.get(key) {
            return Some(rec);
        }
        if self.info.backend != "local" {
            return None;
        }
        req.sampling
            .local_equivalents()
            .into_iter()
            .find_map(|sampling| {
                let alt = ChatRequest {
                    sampling,
                    ..req.clone()
                };
                store.get(&chat_key(&self.info, &alt))
            })
    }

    /// The one path every recorded call takes, whatever its kind: under the key's lock, a
    /// recorded answer (or recorded permanent failure) is returned without a call; in replay
    /// mode a miss is an error naming the key; otherwise the model is called and its answer,
    /// or a failure that asking again would only pay for again, is appended and fsynced
    /// before anyone sees it, so a kill after the call's return cannot make it be paid twice.
    ///
    /// `found` looks the key up (a chat also tries the aliases of its sampling), `fits` says
    /// whether a recorded answer is one for this request (as many values as asked), `request`
    /// is what the record keeps of it, `messages` names it in a miss, and `batched` is its
    /// priority and the call a batch would make in its place.
    #[allow(clippy::too_many_arguments)]
    async fn through<T, F>(
        &self,
        key: &str,
        found: impl FnOnce(&Store) -> Option<Record>,
        fits: impl Fn(&T) -> bool,
        request: serde_json::Value,
        messages: &[Message],
        batched: (u8, impl FnOnce() -> BatchCall),
        call: impl FnOnce(Arc<dyn ChatModel>) -> F,
    ) -> Result<T, LlmError>
    where
        T: Kept,
        F: std::future::Future<Output = Result<T, LlmError>>,
    {
        let store = self.store.as_ref().expect("checked in new");
        let lock = self.key_lock(key);
        let _guard = lock.lock().await;
        if self.mode != RecordMode::Record
            && let Some(rec) = found(store)
        {
            if let Some(f) = &rec.failure {
                return Err(f.to_error());
            }
            if let Some(mut r) = T::from_record(rec).filter(&fits) {
                let usage = r.usage_mut();
                *usage = self.replayed(key, usage.clone());
                return Ok(r);
            }
        }
        if self.mode == RecordMode::Replay {
            return Err(self.miss(key, messages));
        }
        // With a batcher, a bulk request waits for the next batch instead of being asked now.
        let (priority, batch_call) = batched;
        if let Some(e) = self.defer(key, T::KIND, &request, priority, batch_call) {
            return Err(e);
        }
        match call(self.inner()?.clone()).await {
            Ok(r) => {
                self.record(key.to_string(), T::KIND, request, r.clone().into_answer())?;
                Ok(r)
            }
            Err(e) => {
                if let Some(f) = RecordedFailure::of(&e) {
                    self.record(key.to_string(), T::KIND, request, Answer::Failed(f))?;
                }
                Err(e)
            }
        }
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
        answer: Answer,
    ) -> Result<(), LlmError> {
        let store = self.store.as_ref().expect("checked in new");
        if let Some(b) = &self.batcher {
            b.note_paid(&key);
        }
        let (mut chat, mut score, mut labels, mut failure) = (None, None, None, None);
        match answer {
            Answer::Chat(c) => chat = Some(c),
            Answer::Score(s) => score = Some(s),
            Answer::Labels(l) => labels = Some(l),
            Answer::Failed(f) => failure = Some(f),
        }
        store.append(Record {
            key,
            kind,
            model: self.info.clone(),
            settings: self.settings.clone(),
            request,
            chat,
            score,
            labels,
            failure,
            recorded_at: now_unix(),
        })
    }

    /// One candidate of a pointwise scoring, from the store or from the model (and then stored
    /// before it is used). Returns the score and its usage.
    async fn score_part(
        &self,
        req: &ScoreRequest,
        i: usize,
        key: &str,
    ) -> Result<(f32, Usage), LlmError> {
        let one = ScoreRequest {
            messages: req.messages.clone(),
            prefix: req.prefix.clone(),
            suffixes: vec![req.suffixes[i].clone()],
            account: req.account,
            priority: req.priority,
        };
        let request = serde_json::to_value(&one).expect("a request serialises");
        let model = self.info.model.clone();
        let for_batch = one.clone();
        let r: ScoreResponse = self
            .through(
                key,
                |store| store.get(key),
                |r: &ScoreResponse| r.scores.len() == 1,
                request,
                &req.messages_for(i),
                (req.priority, move || BatchCall::ScorePart(for_batch)),
                |inner| async move {
                    let r = inner.score(&one).await?;
                    if r.scores.len() != 1 {
                        return Err(LlmError::Other(format!(
                            "model {model} returned {} scores for 1 candidate",
                            r.scores.len()
                        )));
                    }
                    Ok(r)
                },
            )
            .await?;
        Ok((r.scores[0], r.usage))
    }

    /// The candidates missing from the store, scored in one request (for a model that shares
    /// the prompt prefix between candidates) and stored one record per candidate.
    async fn score_missing_in_one_pass(
        &self,
        req: &ScoreRequest,
        keys: &[String],
        missing: &[usize],
    ) -> Result<(), LlmError> {
        let sub = ScoreRequest {
            messages: req.messages.clone(),
            prefix: req.prefix.clone(),
            suffixes: missing.iter().map(|&i| req.suffixes[i].clone()).collect(),
            account: req.account,
            priority: req.priority,
        };
        let r = self.inner()?.score(&sub).await?;
        if r.scores.len() != missing.len() {
            return Err(LlmError::Other(format!(
                "model {} returned {} scores for {} candidates",
                self.info.model,
                r.scores.len(),
                missing.len()
            )));
        }
        let n = missing.len() as u64;
        for (j, &i) in missing.iter().enumerate() {
            // One pass has one usage; each candidate's record carries an equal share.
            let usage = Usage {
                prompt_tokens: r.usage.prompt_tokens / n,
                completion_tokens: r.usage.completion_tokens / n,
                latency_ms: r.usage.latency_ms / n,
                retries: r.usage.retries,
                ..Usage::default()
            };
            let request = serde_json::json!({
                "messages": req.messages, "prefix": req.prefix, "suffixes": [req.suffixes[i]]
            });
            let part = ScoreResponse {
                scores: vec![r.scores[j]],
                usage,
            };
            self.record(
                keys[i].clone(),
                CallKind::Score,
                request,
                Answer::Score(part),
            )?;
        }
        Ok(())
    }
}

enum Answer {
    Chat(ChatResponse),
    Score(ScoreResponse),
    Labels(LabelResponse),
    Failed(RecordedFailure),
}

/// An answer the recorder keeps: which record kind holds it, how it is read back from a
/// record and written into one, and where its usage is (marked as replayed when read back).
trait Kept: Clone {
    const KIND: CallKind;
    fn from_record(rec: Record) -> Option<Self>;
    fn into_answer(self) -> Answer;
    fn usage_mut(&mut self) -> &mut Usage;
}

impl Kept for ChatResponse {
    const KIND: CallKind = CallKind::Chat;
    fn from_record(rec: Record) -> Option<Self> {
        rec.chat
    }
    fn into_answer(self) -> Answer {
        Answer::Chat(self)
    }
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }
}

impl Kept for LabelResponse {
    const KIND: CallKind = CallKind::Labels;
    fn from_record(rec: Record) -> Option<Self> {
        rec.labels
    }
    fn into_answer(self) -> Answer {
        Answer::Labels(self)
    }
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }
}

impl Kept for ScoreResponse {
    const KIND: CallKind = CallKind::Score;
    fn from_record(rec: Record) -> Option<Self> {
        rec.score
    }
    fn into_answer(self) -> Answer {
        Answer::Score(self)
    }
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
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

    async fn served_models(&self) -> Option<Vec<String>> {
        match self.mode {
            // Replay asks nothing of anyone.
            RecordMode::Replay => None,
            _ => self.inner().ok()?.served_models().await,
        }
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if self.mode == RecordMode::Off {
            return self.inner()?.chat(req).await;
        }
        let key = chat_key(&self.info, req);
        let request = serde_json::to_value(req).expect("a request serialises");
        self.through(
            &key,
            |store| self.recorded_chat(store, &key, req),
            |_: &ChatResponse| true,
            request,
            &req.messages,
            (req.priority, || BatchCall::Chat(req.clone())),
            |inner| async move { inner.chat(req).await },
        )
        .await
    }

    /// As [`Recorder::chat`]: one request, one record.
    async fn label_logprobs(&self, req: &LabelRequest) -> Result<LabelResponse, LlmError> {
        if self.mode == RecordMode::Off {
            return self.inner()?.label_logprobs(req).await;
        }
        let key = label_key(&self.info, req);
        let request = serde_json::to_value(req).expect("a request serialises");
        self.through(
            &key,
            |store| store.get(&key),
            |r: &LabelResponse| r.logprobs.len() == req.labels.len(),
            request,
            &req.messages,
            (req.priority, || BatchCall::Labels(req.clone())),
            |inner| async move { inner.label_logprobs(req).await },
        )
        .await
    }

    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        if self.mode == RecordMode::Off {
            return self.inner()?.score(req).await;
        }
        let store = self.store.as_ref().expect("checked in new");
        // Recordings made before candidates had records of their own keep replaying.
        if self.mode != RecordMode::Record
            && let Some(rec) = store.get(&score_key(&self.info, req))
            && let Some(mut r) = rec.score
            && r.scores.len() == req.suffixes.len()
        {
            r.usage = r.usage.replayed(req.suffixes.len() as u64);
            return Ok(r);
        }
        let keys: Vec<String> = (0..req.suffixes.len())
            .map(|i| score_part_key(&self.info, req, i))
            .collect();
        // Candidates answered live in one pass just now: the store then holds them, but they
        // were paid for by this call, not replayed.
        let mut live_now = vec![false; keys.len()];
        if self.mode == RecordMode::Auto
            && self.inner.as_ref().is_some_and(|m| m.scores_in_one_pass())
        {
            let unseen = |i: &usize| store.get(&keys[*i]).is_none();
            let missing: Vec<usize> = (0..keys.len()).filter(unseen).collect();
            if !missing.is_empty() {
                // Hold every missing candidate's key lock, taken in key order so that two
                // requests sharing candidates cannot wait on each other, then look again:
                // another request may have scored some of them meanwhile, and a candidate must
                // be paid for once, whichever request asks first.
                let mut held: Vec<&String> = missing.iter().map(|&i| &keys[i]).collect();
                held.sort();
                held.dedup();
                let locks: Vec<_> = held.iter().map(|k| self.key_lock(k)).collect();
                let mut guards = Vec::with_capacity(locks.len());
                for l in &locks {
                    guards.push(l.lock().await);
                }
                let mut first_of_key = std::collections::HashSet::new();
                let missing: Vec<usize> = missing
                    .into_iter()
                    .filter(|i| unseen(i) && first_of_key.insert(&keys[*i]))
                    .collect();
                if !missing.is_empty() {
                    self.score_missing_in_one_pass(req, &keys, &missing).await?;
                    for &i in &missing {
                        live_now[i] = true;
                    }
                }
                drop(guards);
            }
        }
        let parts =
            futures::future::join_all((0..keys.len()).map(|i| self.score_part(req, i, &keys[i])))
                .await;
        let mut scores = Vec::with_capacity(parts.len());
        let mut usage = Usage::default();
        let mut first_error = None;
        for (p, live) in parts.into_iter().zip(live_now) {
            match p {
                Ok((s, u)) => {
                    scores.push(s);
                    // Batch only when every candidate was: a mixed scoring prices at the
                    // higher, synchronous rate.
                    usage.mode = if scores.len() == 1 || usage.mode == CallMode::Batch {
                        u.mode
                    } else {
                        CallMode::Sync
                    };
                    usage.prompt_tokens += u.prompt_tokens;
                    usage.cached_tokens += u.cached_tokens;
                    usage.reasoning_tokens += u.reasoning_tokens;
                    usage.completion_tokens += u.completion_tokens;
                    usage.latency_ms = usage.latency_ms.max(u.latency_ms);
                    usage.retries += u.retries;
                    if !live {
                        usage.replayed.requests += u.replayed.requests;
                        usage.replayed.prompt_tokens += u.replayed.prompt_tokens;
                        usage.replayed.completion_tokens += u.replayed.completion_tokens;
                        usage.replayed.cached_tokens += u.replayed.cached_tokens;
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(ScoreResponse { scores, usage }),
        }
    }
}
