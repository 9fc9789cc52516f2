//! OpenAI's Batch API for bulk work: half the price of the synchronous endpoint, answered
//! within 24 hours.
//!
//! A [`Recorder`](crate::Recorder) given a [`Batcher`] answers a miss it may defer (a request
//! whose priority is at most [`BatchOptions::defer_max_priority`]: bulk evaluation, never a
//! training chain that waits on its answer) with [`LlmError::Deferred`] instead of calling,
//! and the Batcher keeps the request. Whoever drives the run (the harness's cell rounds) then
//! calls [`Batcher::flush`]: the kept requests are written as JSONL with `custom_id` equal to
//! their record key, uploaded, and submitted (split at 50,000 lines or 200 MB); one line per
//! poll shows the batch's counts; each answer is checked by the rules of a synchronous call
//! and stored (fsynced) as the record a synchronous call would have made, so the next round
//! replays it. A line that failed transiently (a 5xx, an expired or cancelled batch, a body
//! that is no completion) or was rejected (a 4xx) is not stored: the key is marked to go
//! through the synchronous path next time, under the usual retries and failure policy, which
//! also reports a rejected request with its id and status. A refusal, filter or empty answer
//! is stored as the permanent failure a synchronous call stores.
//!
//! The uploaded input file's id and its requests are written (atomically, fsynced) to a state
//! file beside the recordings before the batch is created, and again with the batch id once it
//! is; [`Batcher::flush`] first finishes every batch it finds there, so a run killed while
//! waiting resumes by polling the same batch and never submits it again. A run killed between
//! the create call and the second write finds its batch in the provider's list of batches by
//! input file.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Record, RecordedFailure, Store};
use crate::usage::CallKind;
use crate::{
    ChatRequest, ChatResponse, LabelRequest, LabelResponse, LlmError, ModelInfo, ScoreRequest,
    ScoreResponse,
};

/// OpenAI's limit on the requests of one batch.
pub const MAX_LINES: usize = 50_000;
/// OpenAI's limit on the size of one batch input file.
pub const MAX_BYTES: usize = 200 * 1000 * 1000;

/// One deferred request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum BatchCall {
    Chat(ChatRequest),
    /// One candidate of a pointwise scoring (`suffixes` holds exactly one).
    ScorePart(ScoreRequest),
    Labels(LabelRequest),
}

/// What a batch line is worth, read by the rules of a synchronous call.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchAnswer {
    Chat(ChatResponse),
    Score(ScoreResponse),
    Labels(LabelResponse),
}

/// A batch as the provider reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchInfo {
    pub id: String,
    pub input_file_id: Option<String>,
    /// `validating`, `in_progress`, `finalizing`, `completed`, `expired`, `cancelling`,
    /// `cancelled` or `failed`.
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    /// Why a batch failed validation (the provider's `errors`), as text.
    pub errors: Option<String>,
}

impl BatchInfo {
    /// From the provider's batch object.
    pub fn from_json(v: &Value) -> Self {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |k: &str| {
            v.get("request_counts")
                .and_then(|c| c.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let errors = v
            .get("errors")
            .and_then(|e| e.get("data"))
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .map(|e| {
                        format!(
                            "{} (line {}): {}",
                            e.get("code").and_then(Value::as_str).unwrap_or("error"),
                            e.get("line").map_or("-".to_string(), |l| l.to_string()),
                            e.get("message").and_then(Value::as_str).unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        Self {
            id: s("id").unwrap_or_default(),
            input_file_id: s("input_file_id"),
            status: s("status").unwrap_or_default(),
            output_file_id: s("output_file_id"),
            error_file_id: s("error_file_id"),
            total: n("total"),
            completed: n("completed"),
            failed: n("failed"),
            errors,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "expired" | "cancelled" | "failed"
        )
    }
}

/// A backend with a Batch API: how it writes a request as a batch line, reads a line's
/// answer, and talks to the Files and Batches endpoints.
#[async_trait]
pub trait BatchBackend: Send + Sync {
    /// The `/v1/chat/completions` body the synchronous call would send.
    fn line_body(&self, call: &BatchCall) -> Value;
    /// A line's response (`status_code`, `request_id`, `body` as text), checked as the
    /// synchronous call checks its response.
    fn line_answer(
        &self,
        call: &BatchCall,
        status: u16,
        request_id: &str,
        body: &str,
    ) -> Result<BatchAnswer, LlmError>;
    /// Uploads a JSONL input file (`purpose=batch`); its file id.
    async fn upload(&self, filename: &str, jsonl: Vec<u8>) -> Result<String, LlmError>;
    async fn create(&self, input_file_id: &str) -> Result<BatchInfo, LlmError>;
    async fn retrieve(&self, batch_id: &str) -> Result<BatchInfo, LlmError>;
    /// The batch created from this input file, if any (`GET /v1/batches`, every page).
    async fn find_by_input(&self, input_file_id: &str) -> Result<Option<BatchInfo>, LlmError>;
    async fn content(&self, file_id: &str) -> Result<Vec<u8>, LlmError>;
}

/// How a [`Batcher`] splits, waits and chooses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchOptions {
    /// Between two polls of a pending batch.
    pub poll_every: Duration,
    /// Lines per input file at most.
    pub max_lines: usize,
    /// Bytes per input file at most.
    pub max_bytes: usize,
    /// Requests with a priority up to this are deferred; higher ones (a training chain) call
    /// at once. The harness gives test-stage evaluation 1 or 2 and training 3.
    pub defer_max_priority: u8,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_secs(30),
            max_lines: MAX_LINES,
            max_bytes: MAX_BYTES,
            defer_max_priority: 2,
        }
    }
}

/// A deferred request: what its record will hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    kind: CallKind,
    /// The record's `request`, as the synchronous path writes it.
    request: Value,
    call: BatchCall,
}

/// The state file of a batch: written once its input file is uploaded, before the batch is
/// created, and again with the batch id.
#[derive(Debug, Serialize, Deserialize)]
struct Submitted {
    /// `None` until the provider has answered the create call.
    #[serde(default)]
    batch_id: Option<String>,
    input_file_id: String,
    /// Seconds since the Unix epoch.
    submitted_at: u64,
    /// Record key (the line's `custom_id`) → request.
    lines: BTreeMap<String, Line>,
}

/// What [`Batcher::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Batches submitted now.
    pub submitted: u64,
    /// Batches found pending from an earlier run and finished.
    pub resumed: u64,
    /// Lines stored as answers (or as permanent failures).
    pub stored: u64,
    /// Lines sent back to the synchronous path.
    pub to_sync: u64,
}

/// Receives one line per poll and per notable event.
pub type BatchLog = Arc<dyn Fn(&str) + Send + Sync>;

/// Collects deferred requests and runs them as batches; see the module docs.
pub struct Batcher {
    backend: Arc<dyn BatchBackend>,
    store: Arc<Store>,
    info: ModelInfo,
    settings: Value,
    dir: PathBuf,
    opts: BatchOptions,
    pending: Mutex<BTreeMap<String, Line>>,
    /// Keys a batch could not answer: they call synchronously from now on.
    sync_only: Mutex<HashSet<String>>,
    flushing: tokio::sync::Mutex<()>,
    log: BatchLog,
    /// Keys answered live in this process, by a batch or synchronously: their replays in a
    /// later round are this run's spend, not an earlier run's.
    paid_now: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("model", &self.info)
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the batches of a recordings file keep their state: `<recordings>.batches/`.
pub fn state_dir(recordings: &Path) -> PathBuf {
    let mut s = recordings.as_os_str().to_owned();
    s.push(".batches");
    PathBuf::from(s)
}

impl Batcher {
    /// `info` and `settings` are what the records name (the recorder's); state files go to
    /// [`state_dir`] of the store's path.
    pub fn new(
        backend: Arc<dyn BatchBackend>,
        store: Arc<Store>,
        info: ModelInfo,
        settings: Value,
        opts: BatchOptions,
    ) -> Self {
        Self {
            backend,
            dir: state_dir(store.path()),
            store,
            info,
            settings,
            opts,
            pending: Mutex::new(BTreeMap::new()),
            sync_only: Mutex::new(HashSet::new()),
            flushing: tokio::sync::Mutex::new(()),
            log: Arc::new(|l: &str| eprintln!("{l}")),
            paid_now: Mutex::new(HashSet::new()),
        }
    }

    /// Sends progress lines to `log` instead of stderr.
    pub fn with_log(mut self, log: BatchLog) -> Self {
        self.log = log;
        self
    }

    pub fn options(&self) -> BatchOptions {
        self.opts
    }

    /// Requests deferred and not yet submitted.
    pub fn pending(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Notes that `key` was answered live in this process.
    pub(crate) fn note_paid(&self, key: &str) {
        lock(&self.paid_now).insert(key.to_string());
    }

    /// Whether `key` was answered live in this process (see [`Batcher::note_paid`]): a round
    /// that replays it books it as paid now, so the last round's ledger holds the run's spend.
    pub(crate) fn paid_now(&self, key: &str) -> bool {
        lock(&self.paid_now).contains(key)
    }

    /// Defers the request, if it may be: the error its caller returns, or `None` to call it
    /// now (a training request, or one a batch could not answer).
    pub(crate) fn defer(
        &self,
        key: &str,
        kind: CallKind,
        request: &Value,
        priority: u8,
        call: impl FnOnce() -> BatchCall,
    ) -> Option<LlmError> {
        if priority > self.opts.defer_max_priority || lock(&self.sync_only).contains(key) {
            return None;
        }
        lock(&self.pending)
            .entry(key.to_string())
            .or_insert_with(|| Line {
                kind,
                request: request.clone(),
                call: call(),
            });
        Some(LlmError::Deferred {
            key: key.to_string(),
        })
    }

    /// Finishes every batch an earlier run left pending, then submits what was deferred since
    /// the last flush and waits for it; every answer is stored before this returns. Concurrent
    /// callers take turns, and a caller whose requests another's batch answered submits
    /// nothing.
    pub async fn flush(&self) -> Result<FlushReport, LlmError> {
        let _turn = self.flushing.lock().await;
        let mut report = FlushReport::default();
        for mut sub in self.stored()? {
            report.resumed += 1;
            if sub.batch_id.is_none() {
                // Killed between the upload and the provider's answer to the create call: the
                // provider's list says whether the batch exists.
                match self.backend.find_by_input(&sub.input_file_id).await? {
                    Some(info) => {
                        sub.batch_id = Some(info.id);
                        self.save(&sub)?;
                    }
                    None => match self.create(&mut sub).await {
                        Ok(_) => report.submitted += 1,
                        // Its input file is unknown too: nothing was created or billed.
                        Err(LlmError::Http { status: 404, .. }) => {
                            self.log(&format!(
                                "input file {} (model {}): unknown to the provider (HTTP 404); \
                                 its requests are asked again",
                                sub.input_file_id, self.info.model
                            ));
                            self.forget(&sub)?;
                            continue;
                        }
                        Err(e) => return Err(e),
                    },
                }
            }
            let id = sub.batch_id.clone().unwrap_or_default();
            self.log(&format!(
                "batch {id} (model {}): left pending by an earlier run; polling it, not \
                 submitting its {} requests again",
                self.info.model,
                sub.lines.len()
            ));
            match self.backend.retrieve(&id).await {
                // The provider does not know it (another account or server): nothing of it
                // was answered or billed, so its requests are deferred anew.
                Err(LlmError::Http { status: 404, .. }) => {
                    self.log(&format!(
                        "batch {id} (model {}): unknown to the provider (HTTP 404); its requests \
                         are asked again",
                        self.info.model
                    ));
                    self.forget(&sub)?;
                }
                _ => self.finish(sub, &mut report).await?,
            }
        }
        let lines: Vec<(String, Line)> = std::mem::take(&mut *lock(&self.pending))
            .into_iter()
            .filter(|(k, _)| self.store.get(k).is_none())
            .collect();
        let mut submitted = Vec::new();
        for chunk in self.split(lines)? {
            let (jsonl, lines) = chunk;
            let n = lines.len();
            let filename = format!("agp-batch-{}-{n}.jsonl", now_unix());
            let file = self.backend.upload(&filename, jsonl).await?;
            let mut sub = Submitted {
                batch_id: None,
                input_file_id: file,
                submitted_at: now_unix(),
                lines,
            };
            // Stored before the create call, so a kill at any point after it is resumed from
            // the provider's list instead of creating a second batch.
            self.save(&sub)?;
            let status = self.create(&mut sub).await?;
            report.submitted += 1;
            self.log(&format!(
                "batch {} (model {}): submitted {n} requests ({status})",
                sub.batch_id.as_deref().unwrap_or(""),
                self.info.model
            ));
            submitted.push(sub);
        }
        for sub in submitted {
            self.finish(sub, &mut report).await?;
        }
        Ok(report)
    }

    fn log(&self, line: &str) {
        (self.log)(line);
    }

    /// Creates the batch of an uploaded input file and stores its id; the batch's status.
    async fn create(&self, sub: &mut Submitted) -> Result<String, LlmError> {
        let info = self.backend.create(&sub.input_file_id).await?;
        sub.batch_id = Some(info.id);
        self.save(sub)?;
        Ok(info.status)
    }

    /// Input files of at most `max_lines` lines and `max_bytes` bytes.
    #[allow(clippy::type_complexity)]
    fn split(
        &self,
        lines: Vec<(String, Line)>,
    ) -> Result<Vec<(Vec<u8>, BTreeMap<String, Line>)>, LlmError> {
        let mut out: Vec<(Vec<u8>, BTreeMap<String, Line>)> = Vec::new();
        for (key, line) in lines {
            let json = serde_json::json!({
                "custom_id": key,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": self.backend.line_body(&line.call),
            });
            let mut bytes = serde_json::to_vec(&json).map_err(|source| LlmError::Json {
                what: "writing a batch line".into(),
                source,
            })?;
            bytes.push(b'\n');
            if bytes.len() > self.opts.max_bytes {
                // Too big for any batch: the synchronous path takes it.
                lock(&self.sync_only).insert(key);
                continue;
            }
            let full = out.last().is_none_or(|(b, l)| {
                l.len() >= self.opts.max_lines || b.len() + bytes.len() > self.opts.max_bytes
            });
            if full {
                out.push((Vec::new(), BTreeMap::new()));
            }
            let (b, l) = out.last_mut().expect("pushed above");
            b.extend_from_slice(&bytes);
            l.insert(key, line);
        }
        Ok(out)
    }

    /// A batch's state file, named by its input file (known before the batch is).
    fn state_path(&self, input_file_id: &str) -> PathBuf {
        let safe: String = input_file_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// Writes a batch's state file atomically and durably.
    fn save(&self, sub: &Submitted) -> Result<(), LlmError> {
        let io = |p: &Path, e| LlmError::io(p, e);
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let path = self.state_path(&sub.input_file_id);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(sub).map_err(|source| LlmError::Json {
            what: "writing a batch state file".into(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The state files of batches not yet finished, oldest first.
    fn stored(&self) -> Result<Vec<Submitted>, LlmError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LlmError::io(&self.dir, e)),
        };
        let mut subs = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| LlmError::io(&self.dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| LlmError::io(&path, e))?;
            let sub: Submitted =
                serde_json::from_slice(&bytes).map_err(|source| LlmError::Json {
                    what: format!("batch state file {}", path.display()),
                    source,
                })?;
            subs.push(sub);
        }
        subs.sort_by(|a, b| {
            (a.submitted_at, &a.input_file_id).cmp(&(b.submitted_at, &b.input_file_id))
        });
        Ok(subs)
    }

    /// Polls a batch until it ends, stores its answers and drops its state file.
    async fn finish(&self, sub: Submitted, report: &mut FlushReport) -> Result<(), LlmError> {
        let t0 = Instant::now();
        let info = loop {
            let info = self
                .backend
                .retrieve(sub.batch_id.as_deref().unwrap_or(""))
                .await?;
            self.log(&format!(
                "batch {} (model {}): {}; {} of {} done, {} failed; waited {:.0} s",
                info.id,
                self.info.model,
                info.status,
                info.completed,
                info.total.max(sub.lines.len() as u64),
                info.failed,
                t0.elapsed().as_secs_f64()
            ));
            if info.is_terminal() {
                break info;
            }
            tokio::time::sleep(self.opts.poll_every).await;
        };
        if let Some(errors) = &info.errors {
            self.log(&format!(
                "batch {} (model {}) {}: {errors}; its requests go through the synchronous path",
                info.id, self.info.model, info.status
            ));
        }
        let mut seen = HashSet::new();
        for file in [&info.output_file_id, &info.error_file_id]
            .into_iter()
            .flatten()
        {
            let bytes = self.backend.content(file).await?;
            let text = String::from_utf8_lossy(&bytes);
            for raw in text.lines().filter(|l| !l.trim().is_empty()) {
                let Ok(v) = serde_json::from_str::<Value>(raw) else {
                    continue;
                };
                let Some(key) = v.get("custom_id").and_then(Value::as_str) else {
                    continue;
                };
                let Some(line) = sub.lines.get(key) else {
                    continue;
                };
                if !seen.insert(key.to_string()) {
                    continue;
                }
                // Stored already by a run killed while it stored this batch's answers.
                if self.store.get(key).is_some() {
                    report.stored += 1;
                    continue;
                }
                if self.store_line(key, line, &v)? {
                    report.stored += 1;
                } else {
                    lock(&self.sync_only).insert(key.to_string());
                    report.to_sync += 1;
                }
            }
        }
        for key in sub.lines.keys().filter(|k| !seen.contains(*k)) {
            lock(&self.sync_only).insert(key.clone());
            report.to_sync += 1;
        }
        self.forget(&sub)
    }

    /// Removes a batch's state file once nothing more can come of it.
    fn forget(&self, sub: &Submitted) -> Result<(), LlmError> {
        let path = self.state_path(&sub.input_file_id);
        std::fs::remove_file(&path).map_err(|e| LlmError::io(&path, e))
    }

    /// Stores one output or error line as the record a synchronous call would make; false
    /// when it holds no answer to keep (the key then calls synchronously).
    fn store_line(&self, key: &str, line: &Line, v: &Value) -> Result<bool, LlmError> {
        let Some(resp) = v.get("response").filter(|r| r.is_object()) else {
            return Ok(false);
        };
        let status = resp.get("status_code").and_then(Value::as_u64).unwrap_or(0) as u16;
        let request_id = resp
            .get("request_id")
            .and_then(Value::as_str)
            .unwrap_or("batch-line");
        let body = resp.get("body").map(Value::to_string).unwrap_or_default();
        let mut rec = Record {
            key: key.to_string(),
            kind: line.kind,
            model: self.info.clone(),
            settings: self.settings.clone(),
            request: line.request.clone(),
            chat: None,
            score: None,
            labels: None,
            failure: None,
            recorded_at: now_unix(),
        };
        match self
            .backend
            .line_answer(&line.call, status, request_id, &body)
        {
            Ok(BatchAnswer::Chat(c)) => rec.chat = Some(c),
            Ok(BatchAnswer::Score(s)) => rec.score = Some(s),
            Ok(BatchAnswer::Labels(l)) => rec.labels = Some(l),
            Err(e) => match RecordedFailure::of(&e) {
                Some(f) => rec.failure = Some(f),
                None => return Ok(false),
            },
        }
        self.store.append(rec)?;
        self.note_paid(key);
        Ok(true)
    }
}
