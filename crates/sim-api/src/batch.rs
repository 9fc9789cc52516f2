//! OpenAI's Files and Batches API: `POST /v1/files` (multipart, `purpose=batch`),
//! `GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches` (one page),
//! `GET /v1/batches/{id}` and
//! `POST /v1/batches/{id}/cancel`.
//!
//! A batch is validated when it is created (a bad line fails the whole batch, as OpenAI
//! does), stays `validating` for the first quarter of [`BatchConfig::delay`] and
//! `in_progress` for the rest, and is answered on the first retrieval after that: every line
//! through the same code as the synchronous endpoint ([`Shared::answer_line`]), so a batch
//! answer is byte for byte the synchronous one (request ids and timestamps aside). Lines that
//! fail (a drawn 5xx, a bad body) go to the error file; with [`BatchConfig::expire_fraction`]
//! a share of the lines is never answered and the batch ends `expired`, those lines in the
//! error file with `code: batch_expired`. A batch cancelled before it is answered answers
//! nothing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::{Request, Response};
use crate::server::{Shared, error_body, lock};

/// How the simulated Batch API behaves. `Default` answers a batch at its first retrieval.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// From creation to completion (the first quarter `validating`, then `in_progress`).
    pub delay: Duration,
    /// Share (0..=1) of the lines left unanswered, chosen by request body: above 0 the batch
    /// ends `expired`, as one that outlived its 24 h window.
    pub expire_fraction: f64,
    /// Share (0..=1) of the answered lines that fail with a 5xx in the error file, drawn per
    /// body and attempt like the synchronous random faults.
    pub line_error_rate: f64,
    /// Lines a batch may hold (OpenAI: 50,000).
    pub max_lines: usize,
    /// Bytes an input file may hold (OpenAI: 200 MB).
    pub max_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            expire_fraction: 0.0,
            line_error_rate: 0.0,
            max_lines: 50_000,
            max_bytes: 200 * 1000 * 1000,
        }
    }
}

impl BatchConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("expire_fraction", self.expire_fraction),
            ("line_error_rate", self.line_error_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("batch {name} {p} is outside 0..=1"));
            }
        }
        if self.max_lines == 0 || self.max_bytes == 0 {
            return Err("batch max_lines and max_bytes must be at least 1".to_string());
        }
        Ok(())
    }
}

pub(crate) struct StoredFile {
    filename: String,
    purpose: String,
    bytes: Vec<u8>,
    created_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Failed,
    Pending,
    Cancelling,
    Cancelled,
    Completed,
    Expired,
}

pub(crate) struct SimBatch {
    id: String,
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    metadata: Value,
    created: Instant,
    created_at: u64,
    status: Status,
    /// `(custom_id, body)` of every line, in file order.
    lines: Vec<(String, Value)>,
    errors: Option<Value>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    completed: u64,
    failed: u64,
    finished_at: Option<u64>,
}

#[derive(Default)]
pub(crate) struct Store {
    files: HashMap<String, StoredFile>,
    batches: HashMap<String, SimBatch>,
    next: u64,
}

impl Store {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-sim{:06}", self.next)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn invalid(status: u16, message: &str) -> Response {
    error_body(status, message, "invalid_request_error", None)
}

/// One part of a `multipart/form-data` body: `(name, filename, bytes)`.
type Part = (String, Option<String>, Vec<u8>);

/// Why an input file fails its batch: `(code, message, line)`.
type LineError = (String, String, Option<usize>);

/// The parts of a `multipart/form-data` body.
fn multipart(req: &Request) -> Result<Vec<Part>, String> {
    let ctype = req
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !ctype.starts_with("multipart/form-data") {
        return Err("expected a multipart/form-data body".to_string());
    }
    let boundary = ctype
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or("multipart body without a boundary")?;
    let delim = format!("--{boundary}");
    let body = &req.body;
    let mut starts = Vec::new();
    let mut i = 0;
    while let Some(at) = find(&body[i..], delim.as_bytes()) {
        starts.push(i + at);
        i += at + delim.len();
    }
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let mut part = &body[w[0] + delim.len()..w[1]];
        part = part.strip_prefix(b"\r\n").unwrap_or(part);
        part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(h_end) = find(part, b"\r\n\r\n") else {
            return Err("multipart part without headers".to_string());
        };
        let head = String::from_utf8_lossy(&part[..h_end]).into_owned();
        let content = part[h_end + 4..].to_vec();
        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if !lower.starts_with("content-disposition:") {
                continue;
            }
            for p in line.split(';') {
                let p = p.trim();
                if let Some(v) = p.strip_prefix("name=") {
                    name = Some(v.trim_matches('"').to_string());
                } else if let Some(v) = p.strip_prefix("filename=") {
                    filename = Some(v.trim_matches('"').to_string());
                }
            }
        }
        let name = name.ok_or("multipart part without a name")?;
        parts.push((name, filename, content));
    }
    Ok(parts)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn file_json(id: &str, f: &StoredFile) -> Value {
    json!({
        "id": id,
        "object": "file",
        "bytes": f.bytes.len(),
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
    })
}

impl SimBatch {
    fn json(&self) -> Value {
        let status = match self.status {
            Status::Failed => "failed",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
            Status::Completed => "completed",
            Status::Expired => "expired",
            Status::Pending => "validating",
        };
        json!({
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": self.errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + 24 * 3600,
            "completed_at": (self.status == Status::Completed).then_some(self.finished_at).flatten(),
            "expired_at": (self.status == Status::Expired).then_some(self.finished_at).flatten(),
            "cancelled_at": (self.status == Status::Cancelled).then_some(self.finished_at).flatten(),
            "failed_at": (self.status == Status::Failed).then_some(self.finished_at).flatten(),
            "request_counts": {
                "total": self.lines.len(),
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
        })
    }
}

/// Checks an input file as OpenAI does; the lines, or why the batch fails.
fn validate_lines(
    bytes: &[u8],
    endpoint: &str,
    max_lines: usize,
    max_bytes: usize,
) -> Result<Vec<(String, Value)>, LineError> {
    if bytes.len() > max_bytes {
        return Err((
            "file_too_large".into(),
            format!(
                "the input file has {} bytes, over the {max_bytes} allowed",
                bytes.len()
            ),
            None,
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        (
            "invalid_json_line".to_string(),
            "not UTF-8".to_string(),
            None,
        )
    })?;
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    let mut model: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = Some(i + 1);
        let bad = |code: &str, msg: String| (code.to_string(), msg, n);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| bad("invalid_json_line", format!("line {}: {e}", i + 1)))?;
        let custom_id = v
            .get("custom_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("missing_required_parameter", "custom_id is required".into()))?
            .to_string();
        if !ids.insert(custom_id.clone()) {
            return Err(bad(
                "duplicate_custom_id",
                format!("the custom_id {custom_id} appears more than once"),
            ));
        }
        if v.get("method").and_then(Value::as_str) != Some("POST") {
            return Err(bad("invalid_method", "method must be POST".into()));
        }
        if v.get("url").and_then(Value::as_str) != Some(endpoint) {
            return Err(bad(
                "invalid_url",
                format!("url must be the batch's endpoint {endpoint}"),
            ));
        }
        let body = v
            .get("body")
            .filter(|b| b.is_object())
            .cloned()
            .ok_or_else(|| {
                bad(
                    "missing_required_parameter",
                    "body must be an object".into(),
                )
            })?;
        let m = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match &model {
            None => model = Some(m),
            Some(first) if *first != m => {
                return Err(bad(
                    "mismatched_model",
                    format!("every line must use one model ({first}, not {m})"),
                ));
            }
            _ => {}
        }
        out.push((custom_id, body));
        if out.len() > max_lines {
            return Err((
                "too_many_requests".into(),
                format!("a batch may hold at most {max_lines} requests"),
                None,
            ));
        }
    }
    if out.is_empty() {
        return Err((
            "empty_file".into(),
            "the input file has no requests".into(),
            None,
        ));
    }
    Ok(out)
}

impl Shared {
    pub(crate) fn upload_file(&self, req: &Request) -> Response {
        let parts = match multipart(req) {
            Ok(p) => p,
            Err(m) => return invalid(400, &m),
        };
        let purpose = parts
            .iter()
            .find(|(n, _, _)| n == "purpose")
            .map(|(_, _, b)| String::from_utf8_lossy(b).trim().to_string());
        let file = parts.into_iter().find(|(n, _, _)| n == "file");
        let (Some(purpose), Some((_, filename, bytes))) = (purpose, file) else {
            return invalid(400, "a file upload needs the fields purpose and file");
        };
        if purpose != "batch" {
            return invalid(
                400,
                &format!("purpose {purpose:?}: the simulator takes batch"),
            );
        }
        let mut st = lock(&self.batches);
        let id = st.id("file");
        let f = StoredFile {
            filename: filename.unwrap_or_else(|| "upload.jsonl".to_string()),
            purpose,
            bytes,
            created_at: unix_now(),
        };
        let body = file_json(&id, &f);
        st.files.insert(id, f);
        lock(&self.state).files_uploaded += 1;
        Response::json(200, &body)
    }

    pub(crate) fn file_content(&self, id: &str) -> Response {
        let st = lock(&self.batches);
        match st.files.get(id) {
            Some(f) => Response {
                status: 200,
                headers: Vec::new(),
                body: f.bytes.clone(),
            },
            None => error_body(
                404,
                &format!("No such File object: {id}"),
                "invalid_request_error",
                None,
            ),
        }
    }

    pub(crate) fn create_batch(&self, body: &[u8]) -> Response {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return invalid(400, &format!("request body is not valid JSON: {e}")),
        };
        let Some(input) = v.get("input_file_id").and_then(Value::as_str) else {
            return invalid(400, "input_file_id is required");
        };
        let endpoint = v.get("endpoint").and_then(Value::as_str).unwrap_or("");
        if endpoint != "/v1/chat/completions" {
            return invalid(
                400,
                &format!("endpoint {endpoint:?}: the simulator serves /v1/chat/completions"),
            );
        }
        let window = v
            .get("completion_window")
            .and_then(Value::as_str)
            .unwrap_or("");
        if window != "24h" {
            return invalid(400, "completion_window must be 24h");
        }
        let mut st = lock(&self.batches);
        let Some(file) = st.files.get(input) else {
            return error_body(
                404,
                &format!("No such File object: {input}"),
                "invalid_request_error",
                None,
            );
        };
        if file.purpose != "batch" {
            return invalid(400, "the input file's purpose must be batch");
        }
        let cfg = &self.cfg.batch;
        let checked = validate_lines(&file.bytes, endpoint, cfg.max_lines, cfg.max_bytes);
        let id = st.id("batch");
        let now = unix_now();
        let mut b = SimBatch {
            id: id.clone(),
            input_file_id: input.to_string(),
            endpoint: endpoint.to_string(),
            completion_window: window.to_string(),
            metadata: v.get("metadata").cloned().unwrap_or(Value::Null),
            created: Instant::now(),
            created_at: now,
            status: Status::Pending,
            lines: Vec::new(),
            errors: None,
            output_file_id: None,
            error_file_id: None,
            completed: 0,
            failed: 0,
            finished_at: None,
        };
        match checked {
            Ok(lines) => b.lines = lines,
            Err((code, message, line)) => {
                b.status = Status::Failed;
                b.finished_at = Some(now);
                b.errors = Some(json!({"object": "list", "data": [
                    {"code": code, "message": message, "param": null, "line": line}
                ]}));
            }
        }
        let body = b.json();
        let lines = b.lines.len() as u64;
        st.batches.insert(id, b);
        let mut stats = lock(&self.state);
        stats.batches_created += 1;
        stats.batch_lines_submitted += lines;
        Response::json(200, &body)
    }

    pub(crate) fn get_batch(&self, id: &str) -> Response {
        let mut st = lock(&self.batches);
        let Some(b) = st.batches.get_mut(id) else {
            return error_body(
                404,
                &format!("No such Batch object: {id}"),
                "invalid_request_error",
                None,
            );
        };
        let elapsed = b.created.elapsed();
        let delay = self.cfg.batch.delay;
        match b.status {
            Status::Cancelling => {
                b.status = Status::Cancelled;
                b.finished_at = Some(unix_now());
            }
            Status::Pending if elapsed >= delay => {
                let lines = std::mem::take(&mut b.lines);
                let (output, errors, done, failed, expired) = self.answer_lines(&lines);
                b.lines = lines;
                b.completed = done;
                b.failed = failed;
                b.finished_at = Some(unix_now());
                b.status = if expired {
                    Status::Expired
                } else {
                    Status::Completed
                };
                let batch_id = b.id.clone();
                let out_id = (!output.is_empty()).then(|| st.id("file"));
                let err_id = (!errors.is_empty()).then(|| st.id("file"));
                for (fid, bytes, what) in [(&out_id, output, "output"), (&err_id, errors, "error")]
                {
                    if let Some(fid) = fid {
                        st.files.insert(
                            fid.clone(),
                            StoredFile {
                                filename: format!("{batch_id}_{what}.jsonl"),
                                purpose: "batch_output".to_string(),
                                bytes,
                                created_at: unix_now(),
                            },
                        );
                    }
                }
                let b = st.batches.get_mut(id).expect("present");
                b.output_file_id = out_id;
                b.error_file_id = err_id;
            }
            _ => {}
        }
        let b = st.batches.get(id).expect("present");
        let mut body = b.json();
        if b.status == Status::Pending && elapsed >= delay / 4 {
            body["status"] = json!("in_progress");
        }
        Response::json(200, &body)
    }

    /// Every batch, newest first, in one page.
    pub(crate) fn list_batches(&self) -> Response {
        let st = lock(&self.batches);
        let mut all: Vec<&SimBatch> = st.batches.values().collect();
        all.sort_by(|a, b| b.id.cmp(&a.id));
        let data: Vec<Value> = all.iter().map(|b| b.json()).collect();
        Response::json(
            200,
            &json!({"object": "list", "data": data, "has_more": false,
                    "first_id": data.first().map(|b| b["id"].clone()),
                    "last_id": data.last().map(|b| b["id"].clone())}),
        )
    }

    pub(crate) fn cancel_batch(&self, id: &str) -> Response {
        let mut st = lock(&self.batches);
        let Some(b) = st.batches.get_mut(id) else {
            return error_body(
                404,
                &format!("No such Batch object: {id}"),
                "invalid_request_error",
                None,
            );
        };
        if b.status == Status::Pending {
            b.status = Status::Cancelling;
        }
        Response::json(200, &b.json())
    }

    /// Answers every line: the output file, the error file, counts, and whether some expired.
    fn answer_lines(&self, lines: &[(String, Value)]) -> (Vec<u8>, Vec<u8>, u64, u64, bool) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut done, mut failed, mut expired) = (0, 0, false);
        for (i, (custom_id, body)) in lines.iter().enumerate() {
            let line_id = format!("batch_req_sim{i:06}");
            let bytes = body.to_string();
            if self.expires(bytes.as_bytes()) {
                expired = true;
                failed += 1;
                let l = json!({"id": line_id, "custom_id": custom_id, "response": null,
                    "error": {"code": "batch_expired",
                              "message": "This request could not be executed before the completion window expired."}});
                err.extend_from_slice(format!("{l}\n").as_bytes());
                continue;
            }
            let (status, request_id, answer) = self.answer_line(bytes.as_bytes());
            let l = json!({"id": line_id, "custom_id": custom_id,
                "response": {"status_code": status, "request_id": request_id, "body": answer},
                "error": null});
            if status == 200 {
                done += 1;
                out.extend_from_slice(format!("{l}\n").as_bytes());
            } else {
                failed += 1;
                err.extend_from_slice(format!("{l}\n").as_bytes());
            }
        }
        (out, err, done, failed, expired)
    }

    fn expires(&self, body: &[u8]) -> bool {
        let f = self.cfg.batch.expire_fraction;
        if f <= 0.0 {
            return false;
        }
        let fp = crate::fingerprint_bytes(body);
        let u = u64::from_le_bytes(fp[8..16].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
        u < f
    }
}
