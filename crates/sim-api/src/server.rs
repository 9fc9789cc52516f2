//! Routing, the per-attempt decision (outage, limiter, random fault, answer) and accounting.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::answer::{self, PromptKind, Signal, prompt_hash};
use crate::cache::PrefixCache;
use crate::faults::RandomFault;
use crate::http::{Conn, ReadError, Response};
use crate::limiter::Window;
use crate::{SYSTEM_FINGERPRINT, SimConfig, SimError, SimStats, fingerprint_bytes};

const REFUSAL: &str = "I'm sorry, but I can't help with that request.";

pub(crate) struct Shared {
    pub(crate) cfg: SimConfig,
    started: Instant,
    next_id: AtomicU64,
    pub(crate) state: Mutex<State>,
    log: Option<Mutex<std::fs::File>>,
    /// Uploaded files and batches (see [`crate::batch`]).
    pub(crate) batches: Mutex<crate::batch::Store>,
    pub(crate) cache: Option<Mutex<PrefixCache>>,
}

#[derive(Default)]
pub(crate) struct State {
    attempts: u64,
    pub(crate) files_uploaded: u64,
    pub(crate) batches_created: u64,
    pub(crate) batch_lines_submitted: u64,
    batch_lines: u64,
    batch_by_status: BTreeMap<u16, u64>,
    by_status: BTreeMap<u16, u64>,
    faults: BTreeMap<&'static str, u64>,
    answered: u64,
    answered_by_kind: BTreeMap<&'static str, u64>,
    signal_used: u64,
    undeclared_decoding: u64,
    /// Draws of a sampling answer so far (see [`SimConfig::sample_when_unset`]).
    draws: u64,
    /// Body fingerprint → times answered.
    answered_bodies: HashMap<[u8; 32], u64>,
    /// Body fingerprint → attempts seen, the counter random faults are drawn from.
    seen: HashMap<[u8; 32], u64>,
    /// The limiter is not part of the stats: a reset must not hand out a fresh minute.
    window: Window,
}

/// What to do with the connection after handling a request.
enum Action {
    Send(Response),
    /// Close without a response.
    Drop,
    /// Send the head and half the body, then close.
    Cut(Response),
}

/// The parts of a chat request the simulator uses.
struct ChatReq {
    model: String,
    /// The last user message: the only text an answer depends on.
    prompt: String,
    prompt_tokens: u64,
    max_tokens: Option<u64>,
    logprobs: bool,
    top_logprobs: u8,
    /// The content of a final assistant message: the start of the answer to continue.
    prefill: Option<String>,
    /// Every message as `role\ncontent\n`, in order: what a provider's prefix cache matches.
    transcript: String,
    temperature: Option<f64>,
    seed: Option<u64>,
}

impl ChatReq {
    /// Whether the provider's default, not the request, decides how this is decoded.
    fn undeclared(&self) -> bool {
        self.seed.is_none() || (self.temperature.is_none() && !is_o_series(&self.model))
    }

    /// Whether a real server would sample this answer: no temperature (a default above 0), or
    /// one above 0 with no seed to fix the draw.
    fn samples(&self) -> bool {
        match self.temperature {
            None => true,
            Some(t) => t > 0.0 && self.seed.is_none(),
        }
    }
}

/// The outcome of one attempt, for the stats and the log.
struct Record {
    /// A line of a batch rather than an attempt at the synchronous endpoint.
    batch: bool,
    status: Option<u16>,
    fault: Option<&'static str>,
    answered: Option<(PromptKind, bool)>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// About four characters per token, rounded up.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn is_o_series(model: &str) -> bool {
    let b = model.as_bytes();
    b.len() >= 2 && b[0] == b'o' && b[1].is_ascii_digit()
}

fn kind_name(k: PromptKind) -> &'static str {
    match k {
        PromptKind::Profile => "profile",
        PromptKind::Rerank => "rerank",
        PromptKind::RerankCot => "rerank_cot",
        PromptKind::ProfileFeedback => "profile_feedback",
        PromptKind::RerankFeedback => "rerank_feedback",
        PromptKind::Summarize => "summarize",
        PromptKind::Edit => "edit",
        PromptKind::Pointwise => "pointwise",
        PromptKind::Labels => "labels",
        PromptKind::Generic => "generic",
    }
}

/// A 429 that says when to come back, as OpenAI does: in the message, in whole seconds
/// (`Retry-After`) and exactly (`retry-after-ms`).
fn too_many_requests(why: &str, wait: Duration) -> Response {
    error_body(
        429,
        &format!("{why} Please try again in {:.3}s.", wait.as_secs_f64()),
        "requests",
        Some("rate_limit_exceeded"),
    )
    .header(
        "retry-after",
        wait.as_secs_f64().ceil().max(1.0).to_string(),
    )
    .header("retry-after-ms", wait.as_millis().to_string())
}

pub(crate) fn error_body(status: u16, message: &str, kind: &str, code: Option<&str>) -> Response {
    Response::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn message_text(content: &Value) -> Result<String, String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        // Content parts: only text parts carry anything a reranking prompt uses.
        Value::Array(parts) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("")),
        _ => Err("messages[].content must be a string or an array of parts".to_string()),
    }
}

/// Validates the request as OpenAI would, including the o-series restrictions, so a
/// rehearsal catches a request the real API would reject.
fn parse_chat(body: &[u8]) -> Result<ChatReq, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or("you must provide a model parameter")?
        .to_string();
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("'messages' must be a non-empty array")?;
    let mut prompt = None;
    let mut chars = 0u64;
    let mut prefill = None;
    let mut transcript = String::new();
    for m in messages {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or("messages[].role is required")?;
        let text = message_text(m.get("content").unwrap_or(&Value::Null))?;
        chars += text.chars().count() as u64;
        transcript.push_str(role);
        transcript.push('\n');
        transcript.push_str(&text);
        transcript.push('\n');
        prefill = (role == "assistant").then(|| text.clone());
        if role == "user" {
            prompt = Some(text);
        }
    }
    let prompt = match prompt {
        Some(p) => p,
        None => message_text(
            messages
                .last()
                .and_then(|m| m.get("content"))
                .unwrap_or(&Value::Null),
        )?,
    };
    let int = |key: &str| -> Result<Option<u64>, String> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .filter(|&n| n >= 1)
                .map(Some)
                .ok_or(format!("'{key}' must be a positive integer")),
        }
    };
    let max_completion = int("max_completion_tokens")?;
    let max_plain = int("max_tokens")?;
    let logprobs = match v.get("logprobs") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("'logprobs' must be a boolean".to_string()),
    };
    let top_logprobs = match v.get("top_logprobs") {
        None | Some(Value::Null) => 0,
        Some(x) => x
            .as_u64()
            .filter(|&n| n <= 20)
            .ok_or("'top_logprobs' must be an integer from 0 to 20")? as u8,
    };
    if is_o_series(&model) {
        if max_plain.is_some() {
            return Err(
                "Unsupported parameter: 'max_tokens' is not supported with this model. \
                        Use 'max_completion_tokens' instead."
                    .to_string(),
            );
        }
        if let Some(t) = v.get("temperature").and_then(Value::as_f64)
            && t != 1.0
        {
            return Err(format!(
                "Unsupported value: 'temperature' does not support {t} with this model. \
                 Only the default (1) value is supported."
            ));
        }
        if logprobs {
            return Err("logprobs is not supported with this model.".to_string());
        }
    }
    let temperature = v.get("temperature").and_then(Value::as_f64);
    let seed = v.get("seed").and_then(Value::as_u64);
    Ok(ChatReq {
        temperature,
        seed,
        model,
        prompt,
        prompt_tokens: chars.div_ceil(4),
        max_tokens: max_completion.or(max_plain),
        logprobs,
        top_logprobs,
        prefill,
        transcript,
    })
}

impl Shared {
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        cfg.validate()?;
        let cfg_cache = cfg.prefix_cache;
        let log = match &cfg.log {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        Ok(Self {
            cfg,
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            log,
            batches: Mutex::new(crate::batch::Store::default()),
            cache: cfg_cache.map(|c| Mutex::new(PrefixCache::new(c))),
        })
    }

    fn request_id(&self) -> String {
        format!(
            "req_sim_{:08}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn stats(&self) -> SimStats {
        let st = lock(&self.state);
        let mut twice: Vec<String> = st
            .answered_bodies
            .iter()
            .filter(|&(_, &n)| n > 1)
            .map(|(f, _)| hex::encode(f))
            .collect();
        twice.sort();
        SimStats {
            files_uploaded: st.files_uploaded,
            batches_created: st.batches_created,
            batch_lines_submitted: st.batch_lines_submitted,
            batch_lines: st.batch_lines,
            batch_by_status: st.batch_by_status.clone(),
            attempts: st.attempts,
            by_status: st.by_status.clone(),
            faults: st
                .faults
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            answered: st.answered,
            answered_by_kind: st
                .answered_by_kind
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            signal_used: st.signal_used,
            distinct_answered: st.answered_bodies.len() as u64,
            answered_twice: twice.len() as u64,
            answered_twice_fingerprints: twice,
            most_answered: st.answered_bodies.values().copied().max().unwrap_or(0),
            undeclared_decoding: st.undeclared_decoding,
        }
    }

    pub fn reset(&self) {
        let mut st = lock(&self.state);
        let window = std::mem::take(&mut st.window);
        *st = State {
            window,
            ..State::default()
        };
    }

    fn record(&self, fp: &[u8; 32], n: u64, request_id: &str, r: &Record) {
        {
            let mut st = lock(&self.state);
            if r.batch {
                st.batch_lines += 1;
                if let Some(s) = r.status {
                    *st.batch_by_status.entry(s).or_default() += 1;
                }
            } else if let Some(s) = r.status {
                *st.by_status.entry(s).or_default() += 1;
            }
            if let Some(f) = r.fault {
                *st.faults.entry(f).or_default() += 1;
            }
            if let Some((kind, used_signal)) = r.answered {
                st.answered += 1;
                *st.answered_by_kind.entry(kind_name(kind)).or_default() += 1;
                st.signal_used += u64::from(used_signal);
                *st.answered_bodies.entry(*fp).or_default() += 1;
            }
        }
        if let Some(log) = &self.log {
            let unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let line = json!({
                "unix_ms": unix_ms,
                "t_ms": self.started.elapsed().as_millis() as u64,
                "request_id": request_id,
                "fingerprint": hex::encode(fp),
                "attempt_of_body": n,
                "status": r.status,
                "batch": r.batch,
                "fault": r.fault,
                "kind": r.answered.map(|(k, _)| kind_name(k)),
            });
            // One write per line, so a killed server leaves only whole lines behind.
            let _ = lock(log).write_all(format!("{line}\n").as_bytes());
        }
    }

    /// One chat-completion attempt.
    async fn chat(&self, body: &[u8]) -> Action {
        let request_id = self.request_id();
        if !self.cfg.latency.is_zero() {
            tokio::time::sleep(self.cfg.latency).await;
        }
        let fp = fingerprint_bytes(body);
        let parsed = parse_chat(body);
        let now = Instant::now();
        let cfg = &self.cfg;
        let outage = now.duration_since(self.started) < cfg.down_for;
        let (n, rate, wait) = {
            let mut st = lock(&self.state);
            st.attempts += 1;
            let seen = st.seen.entry(fp).or_default();
            let n = *seen;
            *seen += 1;
            if parsed.as_ref().is_ok_and(ChatReq::undeclared) {
                st.undeclared_decoding += 1;
            }
            match &parsed {
                Ok(req) if !outage => {
                    let cost = req.prompt_tokens + req.max_tokens.unwrap_or(0);
                    let (rate, wait) = st.window.admit(now, cfg.rpm, cfg.tpm, cost);
                    (n, rate, wait)
                }
                _ => (n, st.window.peek(now, cfg.rpm, cfg.tpm), None),
            }
        };
        let with_headers = |resp: Response| -> Response {
            let mut resp = resp
                .header("x-request-id", request_id.clone())
                .header("x-agp-sim", "1");
            resp.headers.extend(rate.headers());
            resp
        };
        let finish = |resp: Response, fault: Option<&'static str>| -> Action {
            self.record(
                &fp,
                n,
                &request_id,
                &Record {
                    batch: false,
                    status: Some(resp.status),
                    fault,
                    answered: None,
                },
            );
            Action::Send(with_headers(resp))
        };
        let req = match parsed {
            Ok(r) => r,
            Err(msg) => {
                return finish(
                    error_body(400, &msg, "invalid_request_error", None),
                    Some("bad_request"),
                );
            }
        };
        if outage {
            return finish(
                error_body(
                    503,
                    "The server is temporarily unavailable (simulated outage).",
                    "server_error",
                    None,
                ),
                Some("outage"),
            );
        }
        if let Some(wait) = wait {
            let why = format!(
                "Rate limit reached for {} (simulated): limit {} requests/min{}.",
                req.model,
                cfg.rpm.map_or("unlimited".to_string(), |r| r.to_string()),
                cfg.tpm
                    .map_or(String::new(), |t| format!(", {t} tokens/min"))
            );
            return finish(too_many_requests(&why, wait), Some("over_limit"));
        }
        let random = cfg.faults.draw(cfg.seed, &fp, n);
        // A dropped connection answers nothing: it is counted as an attempt with no status.
        let record_dropped = || {
            self.record(
                &fp,
                n,
                &request_id,
                &Record {
                    batch: false,
                    status: None,
                    fault: Some("dropped"),
                    answered: None,
                },
            )
        };
        match random {
            Some(RandomFault::RateLimited) => {
                let wait = if cfg.storm_retry_after.is_zero() {
                    Duration::from_secs(1)
                } else {
                    cfg.storm_retry_after
                };
                let resp = too_many_requests("Rate limit reached (simulated storm).", wait);
                return finish(resp, Some("rate_limited"));
            }
            Some(RandomFault::ServerError(status)) => {
                let resp = error_body(
                    status,
                    "The server had an error while processing your request (simulated).",
                    "server_error",
                    None,
                );
                return finish(resp, Some("server_error"));
            }
            Some(RandomFault::Dropped { mid_body: false }) => {
                record_dropped();
                return Action::Drop;
            }
            _ => {}
        }
        let (completion, answer_fault, kind, used_signal) = self.completion(&req, &request_id);
        let body = completion.to_string();
        match random {
            Some(RandomFault::Malformed) => {
                let mut cut = body.len() / 2;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                let resp = Response {
                    status: 200,
                    headers: Vec::new(),
                    body: body.as_bytes()[..cut].to_vec(),
                };
                finish(resp, Some("malformed"))
            }
            Some(RandomFault::Dropped { mid_body: true }) => {
                record_dropped();
                Action::Cut(with_headers(Response {
                    status: 200,
                    headers: Vec::new(),
                    body: body.into_bytes(),
                }))
            }
            _ => {
                self.record(
                    &fp,
                    n,
                    &request_id,
                    &Record {
                        batch: false,
                        status: Some(200),
                        fault: answer_fault,
                        answered: Some((kind, used_signal)),
                    },
                );
                Action::Send(with_headers(Response {
                    status: 200,
                    headers: Vec::new(),
                    body: body.into_bytes(),
                }))
            }
        }
    }

    /// One line of a batch, answered as the synchronous endpoint answers the same body (no
    /// latency, limiter or outage: a batch has its own queue). Returns the status, the request
    /// id and the response body.
    pub(crate) fn answer_line(&self, body: &[u8]) -> (u16, String, Value) {
        let request_id = self.request_id();
        let fp = fingerprint_bytes(body);
        let n = {
            let mut st = lock(&self.state);
            let seen = st.seen.entry(fp).or_default();
            *seen += 1;
            *seen - 1
        };
        let record = |status: u16, fault: Option<&'static str>, answered| {
            self.record(
                &fp,
                n,
                &request_id,
                &Record {
                    batch: true,
                    status: Some(status),
                    fault,
                    answered,
                },
            );
        };
        let req = match parse_chat(body) {
            Ok(r) => r,
            Err(msg) => {
                record(400, Some("bad_request"), None);
                let e = json!({"error": {"message": msg, "type": "invalid_request_error",
                                         "param": null, "code": null}});
                return (400, request_id, e);
            }
        };
        let line_faults = crate::FaultRates {
            server_error: self.cfg.batch.line_error_rate,
            ..crate::FaultRates::NONE
        };
        if let Some(RandomFault::ServerError(status)) =
            line_faults.draw(self.cfg.seed ^ 0xba7c, &fp, n)
        {
            record(status, Some("server_error"), None);
            let e = json!({"error": {"message": "The server had an error while processing your \
                request (simulated).", "type": "server_error", "param": null, "code": null}});
            return (status, request_id, e);
        }
        let (completion, fault, kind, used_signal) = self.completion(&req, &request_id);
        record(200, fault, Some((kind, used_signal)));
        (200, request_id, completion)
    }

    /// The completion body, and the answer-level fault (refusal, filter, cut) if any.
    fn completion(
        &self,
        req: &ChatReq,
        request_id: &str,
    ) -> (Value, Option<&'static str>, PromptKind, bool) {
        let cfg = &self.cfg;
        let signal = Signal {
            p: cfg.signal,
            truth: &cfg.truth,
            held_out_texts: &cfg.held_out_texts,
        };
        // A sampled answer is the answer to the same prompt under another draw: the model name
        // salted with a counter keeps its format and changes its content.
        let drawn;
        let model = if cfg.sample_when_unset && req.samples() {
            let n = {
                let mut st = lock(&self.state);
                st.draws += 1;
                st.draws
            };
            drawn = format!("{}\u{0}draw {n}", req.model);
            drawn.as_str()
        } else {
            req.model.as_str()
        };
        let top = cfg
            .max_top_logprobs
            .map_or(req.top_logprobs, |m| req.top_logprobs.min(m));
        let a = match &req.prefill {
            Some(prefill) if req.logprobs => {
                answer::answer_labels(model, &req.prompt, prefill, top, &signal)
            }
            _ => answer::answer(model, &req.prompt, req.logprobs, top, &signal),
        };
        let hash = prompt_hash(&req.model, &req.prompt);
        let mut reasoning = if is_o_series(&req.model) {
            32 + u64::from(hash[31])
        } else {
            0
        };
        let mut content = Some(a.content);
        let mut refusal = None;
        let mut finish_reason = "stop";
        let mut fault = None;
        let hit = |needles: &[String]| needles.iter().any(|t| req.prompt.contains(t.as_str()));
        if hit(&cfg.refuse_containing) {
            content = None;
            refusal = Some(REFUSAL.to_string());
            fault = Some("refusal");
        } else if hit(&cfg.content_filter_containing) {
            content = None;
            finish_reason = "content_filter";
            fault = Some("content_filter");
        } else if hit(&cfg.empty_containing) {
            content = Some(String::new());
            fault = Some("empty");
        } else if cfg.length_cut
            && let Some(max) = req.max_tokens
            && let Some(text) = content.as_mut()
        {
            // Reasoning tokens spend the budget first, as on the real o-series.
            if reasoning >= max {
                reasoning = max;
                text.clear();
                finish_reason = "length";
            } else if tokens(text) > max - reasoning {
                let keep = ((max - reasoning) * 4) as usize;
                *text = text.chars().take(keep).collect();
                finish_reason = "length";
            }
            if finish_reason == "length" {
                fault = Some("length_cut");
            }
        }
        let visible = content.as_deref().or(refusal.as_deref()).unwrap_or("");
        let completion_tokens = reasoning + tokens(visible);
        let cached = self
            .cache
            .as_ref()
            .map(|c| lock(c).lookup_and_insert(&req.model, &req.transcript, req.prompt_tokens));
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = json!({
            "id": format!("chatcmpl-{request_id}"),
            "object": "chat.completion",
            "created": created,
            "model": cfg.served_model.as_deref().unwrap_or(&req.model),
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": a.logprobs,
                "finish_reason": finish_reason,
            }],
            "usage": {
                "prompt_tokens": req.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": req.prompt_tokens + completion_tokens,
                "completion_tokens_details": {"reasoning_tokens": reasoning},
            },
        });
        let mut body = body;
        if let Some(cached) = cached {
            body["usage"]["prompt_tokens_details"] = json!({"cached_tokens": cached});
        }
        (body, fault, a.kind, a.used_signal)
    }

    fn control(&self, resp: Response) -> Response {
        resp.header("x-request-id", self.request_id())
            .header("x-agp-sim", "1")
    }
}

async fn handle_conn(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    loop {
        let req = match conn.read_request().await {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reject(status, msg)) => {
                let resp = shared.control(error_body(status, msg, "invalid_request_error", None));
                let _ = conn.send(&resp, false).await;
                return;
            }
        };
        let path = req.path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').collect();
        // The Files and Batches API first; then the fixed routes.
        let batch_api = match (req.method.as_str(), segs.as_slice()) {
            ("POST", ["", "v1", "files"]) => Some(shared.upload_file(&req)),
            ("GET", ["", "v1", "files", id, "content"]) => Some(shared.file_content(id)),
            ("POST", ["", "v1", "batches"]) => Some(shared.create_batch(&req.body)),
            ("GET", ["", "v1", "batches"]) => Some(shared.list_batches()),
            ("GET", ["", "v1", "batches", id]) => Some(shared.get_batch(id)),
            ("POST", ["", "v1", "batches", id, "cancel"]) => Some(shared.cancel_batch(id)),
            _ => None,
        };
        let action = match batch_api {
            Some(resp) => Action::Send(shared.control(resp)),
            None => match (req.method.as_str(), path) {
                ("POST", "/v1/chat/completions") => shared.chat(&req.body).await,
                ("GET", "/v1/models") => {
                    Action::Send(shared.control(match &shared.cfg.served_model {
                        Some(m) => Response::json(
                            200,
                            &json!({"object": "list", "data": [{"id": m, "object": "model"}]}),
                        ),
                        None => error_body(404, "no model list", "invalid_request_error", None),
                    }))
                }
                ("GET", "/sim/stats") => Action::Send(shared.control(Response::json(
                    200,
                    &serde_json::to_value(shared.stats()).unwrap_or(Value::Null),
                ))),
                ("POST", "/sim/reset") => {
                    shared.reset();
                    Action::Send(shared.control(Response::json(200, &json!({"reset": true}))))
                }
                (_, "/v1/chat/completions" | "/sim/stats" | "/sim/reset") => {
                    Action::Send(shared.control(error_body(
                        405,
                        &format!("method {} not allowed on {path}", req.method),
                        "invalid_request_error",
                        None,
                    )))
                }
                _ => Action::Send(shared.control(error_body(
                    404,
                    &format!("no route {} {path}", req.method),
                    "invalid_request_error",
                    Some("unknown_url"),
                ))),
            },
        };
        match action {
            Action::Send(resp) => {
                if conn.send(&resp, req.keep_alive).await.is_err() || !req.keep_alive {
                    return;
                }
            }
            Action::Drop => return,
            Action::Cut(resp) => {
                let _ = conn.send_cut(&resp).await;
                return;
            }
        }
    }
}

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                conns.spawn(handle_conn(shared.clone(), stream));
            }
            Err(e) => {
                // Usually out of file descriptors: wait for connections to close.
                eprintln!("sim-api: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        while conns.try_join_next().is_some() {}
    }
}
