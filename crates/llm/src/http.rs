//! OpenAI-compatible `/v1/chat/completions` client: OpenAI, DeepSeek, and any server that
//! speaks the protocol (vLLM, Ollama, llama.cpp server).
//!
//! Every call is bounded (a semaphore for concurrency, a sliding one-minute window for
//! requests and tokens per minute) and retried with exponential backoff and jitter on 429,
//! 5xx, timeouts, connection errors and unparsable bodies, honouring `Retry-After`. An empty
//! answer is asked once more at most (a provider bills every one, and at temperature 0 it is
//! as permanent as a refusal). Errors that retrying cannot fix (4xx, refusals, an empty answer
//! cut at `max_tokens`) are reported at once with the request id and HTTP status. The API key is sent only in the
//! `Authorization` header: it is redacted from every error and log line, and never reaches a
//! recording because [`ChatModel::settings`] leaves it out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::batch::{BatchAnswer, BatchBackend, BatchCall, BatchInfo};
use crate::pool::{Pool, PoolLimits, Slots, Verdict, parse_reset};

use crate::{
    CallMode, ChatModel, ChatRequest, ChatResponse, FailureReason, LabelRequest, LabelResponse,
    LlmError, Message, ModelInfo, Sampling, ScoreRequest, ScoreResponse, Served, Usage,
};

/// Which service the client talks to; decides the env variables, defaults and quirks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    DeepSeek,
    /// Any other `/v1/chat/completions` server.
    Generic,
}

impl Provider {
    pub fn backend(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::DeepSeek => "deepseek",
            Provider::Generic => "http",
        }
    }
}

/// A secret that prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Receives one line per retry or notable event; defaults to stderr.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub provider: Provider,
    /// Up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<ApiKey>,
    /// Limit on one attempt, connection to last byte.
    pub timeout: Duration,
    pub jobs: usize,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// Attempts after the first.
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// `top_logprobs` asked for when scoring (OpenAI allows up to 20).
    pub top_logprobs: u8,
    /// How long the whole pool waits out rate limits and outages.
    pub pool: PoolLimits,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl HttpConfig {
    fn with(provider: Provider, base_url: String, model: &str, api_key: Option<ApiKey>) -> Self {
        Self {
            provider,
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
            timeout: Duration::from_secs(120),
            jobs: crate::DEFAULT_JOBS,
            requests_per_minute: None,
            tokens_per_minute: None,
            max_retries: 6,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            top_logprobs: 20,
            pool: PoolLimits::default(),
        }
    }

    /// OpenAI: `OPENAI_API_KEY` (required), `OPENAI_BASE_URL` (optional).
    pub fn openai(model: &str) -> Result<Self, LlmError> {
        let key = env_nonempty("OPENAI_API_KEY")
            .ok_or_else(|| LlmError::Other("openai backend needs OPENAI_API_KEY".to_string()))?;
        let base = env_nonempty("OPENAI_BASE_URL")
            .unwrap_or_else(|| "https://api.openai.com/v1".to_string());
        Ok(Self::with(
            Provider::OpenAi,
            base,
            model,
            Some(ApiKey::new(key)),
        ))
    }

    /// DeepSeek: `DEEPSEEK_API_KEY` (required), `DEEPSEEK_BASE_URL` (optional).
    pub fn deepseek(model: &str) -> Result<Self, LlmError> {
        let key = env_nonempty("DEEPSEEK_API_KEY").ok_or_else(|| {
            LlmError::Other("deepseek backend needs DEEPSEEK_API_KEY".to_string())
        })?;
        let base = env_nonempty("DEEPSEEK_BASE_URL")
            .unwrap_or_else(|| "https://api.deepseek.com/v1".to_string());
        Ok(Self::with(
            Provider::DeepSeek,
            base,
            model,
            Some(ApiKey::new(key)),
        ))
    }

    /// Any server at `base_url`; sends `OPENAI_API_KEY` when set (local servers ignore it).
    pub fn generic(base_url: &str, model: &str) -> Self {
        let key = env_nonempty("OPENAI_API_KEY").map(ApiKey::new);
        Self::with(Provider::Generic, base_url.to_string(), model, key)
    }

    /// o1/o3/o4 reasoning models take `max_completion_tokens` and reject `temperature`.
    fn is_o_series(&self) -> bool {
        let m = self.model.as_bytes();
        m.len() >= 2 && m[0] == b'o' && m[1].is_ascii_digit()
    }
}

/// Sliding one-minute window over requests and (estimated) tokens. Uses tokio's clock so
/// tests can run it on paused time.
struct RateLimiter {
    rpm: Option<u32>,
    tpm: Option<u32>,
    window: Mutex<VecDeque<(tokio::time::Instant, u64)>>,
}

impl RateLimiter {
    async fn acquire(&self, tokens: u64) {
        if self.rpm.is_none() && self.tpm.is_none() {
            return;
        }
        let minute = Duration::from_secs(60);
        loop {
            let mut w = self.window.lock().await;
            let now = tokio::time::Instant::now();
            while w
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) >= minute)
            {
                w.pop_front();
            }
            let used: u64 = w.iter().map(|(_, n)| n).sum();
            let rpm_ok = self.rpm.is_none_or(|r| (w.len() as u64) < u64::from(r));
            // An empty window always admits, so one request above the TPM limit still runs.
            let tpm_ok = self
                .tpm
                .is_none_or(|t| w.is_empty() || used + tokens <= u64::from(t));
            if rpm_ok && tpm_ok {
                w.push_back((now, tokens));
                return;
            }
            let wait = w
                .front()
                .map(|(t, _)| minute.saturating_sub(now.duration_since(*t)));
            drop(w);
            tokio::time::sleep(
                wait.unwrap_or(Duration::from_millis(10))
                    .max(Duration::from_millis(1)),
            )
            .await;
        }
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<ApiUsage>,
    /// The model that served the request, as the server names it.
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<ApiMessage>,
    finish_reason: Option<String>,
    logprobs: Option<Logprobs>,
}

#[derive(Deserialize)]
struct ApiMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct Logprobs {
    content: Option<Vec<TokenLogprob>>,
}

#[derive(Deserialize)]
struct TokenLogprob {
    token: String,
    logprob: f64,
    #[serde(default)]
    top_logprobs: Vec<TopLogprob>,
}

#[derive(Deserialize)]
struct TopLogprob {
    token: String,
    logprob: f64,
}

#[derive(Deserialize, Default)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    /// OpenAI: `cached_tokens` of the prompt.
    #[serde(default)]
    prompt_tokens_details: Option<TokenDetails>,
    /// OpenAI: `reasoning_tokens` of the completion.
    #[serde(default)]
    completion_tokens_details: Option<TokenDetails>,
    /// DeepSeek: prompt tokens read from its context cache.
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct TokenDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl ApiUsage {
    /// Prompt tokens the provider read from its cache, in either provider's field.
    fn cached(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(self.prompt_cache_hit_tokens)
            .unwrap_or(0)
    }

    fn reasoning(&self) -> u64 {
        self.completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }
}

/// Why an attempt failed, and whether another attempt may help.
struct Failure {
    retryable: bool,
    reason: FailureReason,
    status: u16,
    request_id: String,
    message: String,
    retry_after: Option<Duration>,
}

/// One successful exchange.
struct Reply {
    completion: Completion,
    request_id: String,
    /// The server said the quota is spent until then (`x-ratelimit-remaining-*: 0`).
    quota_reset: Option<Duration>,
}

/// Whether a server's name for the model it ran is the model a spec asked for: the same id, a
/// dated snapshot of it (`gpt-4o` served as `gpt-4o-2024-08-06`), or a GGUF file of that name
/// (llama-server names its model by path).
pub fn serves_model(asked: &str, served: &str) -> bool {
    let file = served
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(served)
        .trim_end_matches(".gguf");
    served == asked
        || file.eq_ignore_ascii_case(asked)
        || served.strip_prefix(asked).is_some_and(|rest| {
            rest.starts_with('-') && rest[1..].starts_with(|c: char| c.is_ascii_digit())
        })
}

pub struct OpenAiClient {
    cfg: HttpConfig,
    /// Set once a response named another model than the one asked for (warned once).
    warned_served: std::sync::atomic::AtomicBool,
    http: reqwest::Client,
    slots: Arc<Slots>,
    pool: Pool,
    limiter: RateLimiter,
    log: LogSink,
    next_id: AtomicU64,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("cfg", &self.cfg)
            .finish()
    }
}

fn install_crypto_provider() {
    // reqwest is built without a bundled provider (ring keeps the build small); installing
    // twice is harmless, so the result is ignored.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl OpenAiClient {
    pub fn new(cfg: HttpConfig) -> Result<Self, LlmError> {
        install_crypto_provider();
        if cfg.jobs == 0 {
            return Err(LlmError::Other("jobs: must be at least 1".to_string()));
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(cfg.jobs)
            .build()
            .map_err(|e| LlmError::backend("building the HTTP client", e))?;
        Ok(Self {
            slots: Slots::new(cfg.jobs),
            pool: Pool::default(),
            limiter: RateLimiter {
                rpm: cfg.requests_per_minute,
                tpm: cfg.tokens_per_minute,
                window: Mutex::new(VecDeque::new()),
            },
            log: Arc::new(|l: &str| eprintln!("{l}")),
            next_id: AtomicU64::new(1),
            warned_served: Default::default(),
            http,
            cfg,
        })
    }

    /// Sends retry and error lines to `sink` instead of stderr.
    pub fn with_log(mut self, sink: LogSink) -> Self {
        self.log = sink;
        self
    }

    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    fn redact(&self, s: &str) -> String {
        match &self.cfg.api_key {
            Some(ApiKey(k)) if !k.is_empty() => s.replace(k.as_str(), "[redacted]"),
            _ => s.to_string(),
        }
    }

    fn log(&self, line: &str) {
        (self.log)(&self.redact(line));
    }

    fn body(&self, messages: &[Message], sampling: &Sampling, logprobs: bool) -> serde_json::Value {
        let msgs: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut b = serde_json::json!({ "model": self.cfg.model, "messages": msgs });
        let o = b.as_object_mut().expect("object");
        let o_series = self.cfg.is_o_series();
        if let Some(t) = sampling.temperature
            && !o_series
        {
            o.insert("temperature".into(), serde_json::json!(t));
        }
        if let Some(n) = sampling.max_tokens {
            let field = if o_series {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            o.insert(field.into(), serde_json::json!(n));
        }
        if let Some(s) = sampling.seed {
            o.insert("seed".into(), serde_json::json!(s));
        }
        if let Some(p) = sampling.top_p
            && !o_series
        {
            o.insert("top_p".into(), serde_json::json!(p));
        }
        if logprobs {
            o.insert("logprobs".into(), serde_json::json!(true));
            o.insert(
                "top_logprobs".into(),
                serde_json::json!(self.cfg.top_logprobs),
            );
        }
        b
    }

    fn estimate_tokens(messages: &[Message], sampling: &Sampling) -> u64 {
        // About four characters per token for English; only used to pace TPM.
        let chars: usize = messages.iter().map(|m| m.content.len() + 8).sum();
        (chars as u64).div_ceil(4) + u64::from(sampling.max_tokens.unwrap_or(0))
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(Duration::from_secs(600));
        }
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16));
        let d = exp.min(self.cfg.backoff_max);
        // "Equal jitter": half fixed, half random, so retries spread but still back off.
        let half = d / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    /// One attempt: request, status check, JSON parse, content checks.
    async fn attempt(
        &self,
        body: &serde_json::Value,
        want_content: bool,
        max_tokens: Option<u32>,
    ) -> Result<Reply, Failure> {
        let local_id = format!("local-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let url = format!("{}/chat/completions", self.cfg.base_url);
        let mut rb = self.http.post(&url).timeout(self.cfg.timeout).json(body);
        if let Some(ApiKey(k)) = &self.cfg.api_key {
            rb = rb.bearer_auth(k);
        }
        let transport = |id: &str, what: &str, e: reqwest::Error| Failure {
            retryable: true,
            reason: if e.is_timeout() {
                FailureReason::Timeout
            } else {
                FailureReason::Transport
            },
            status: 0,
            request_id: id.to_string(),
            message: format!("{what}: {e}"),
            retry_after: None,
        };
        let resp = rb.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "transport error"
            };
            transport(&local_id, what, e)
        })?;
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or(local_id);
        let retry_after = parse_retry_after(resp.headers());
        let quota_reset = parse_quota_reset(resp.headers());
        let text = resp.text().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timeout reading body"
            } else {
                "body cut off"
            };
            transport(&request_id, what, e)
        })?;
        let mut completion = check_reply(
            status,
            &request_id,
            &text,
            want_content,
            max_tokens,
            retry_after,
        );
        if let Err(f) = &mut completion
            && status == 429
        {
            f.retry_after = f.retry_after.or(quota_reset);
        }
        Ok(Reply {
            completion: completion?,
            request_id,
            quota_reset,
        })
    }

    /// Runs attempts until success, a failure that retrying cannot fix, or the retry budget
    /// is spent. 429s that say when to come back and outages pause the whole pool and do not
    /// spend the request's retries; they are bounded by [`PoolLimits`] instead.
    /// Warns (once per client) when a response names a model other than the one asked for:
    /// the report would otherwise name a model that did not answer.
    fn check_served(&self, reply: &Reply) {
        let Some(served) = reply.completion.model.as_deref() else {
            return;
        };
        if !serves_model(&self.cfg.model, served)
            && !self.warned_served.swap(true, Ordering::Relaxed)
        {
            self.log(&format!(
                "warning: asked for model {:?}, the server says {:?} answered (request {}); \
                 the recordings keep both, the report names {:?}",
                self.cfg.model, served, reply.request_id, self.cfg.model
            ));
        }
    }

    async fn call(
        &self,
        messages: &[Message],
        sampling: &Sampling,
        logprobs: bool,
        priority: u8,
    ) -> Result<(Reply, u32), LlmError> {
        let body = self.body(messages, sampling, logprobs);
        let est = Self::estimate_tokens(messages, sampling);
        let limits = self.cfg.pool;
        let mut spent = 0u32;
        let mut attempts = 0u32;
        // Failures by reason, for the reasons with a retry limit of their own.
        let mut failed: std::collections::HashMap<FailureReason, u32> = Default::default();
        let mut rate_waited = Duration::ZERO;
        loop {
            self.pool.ready().await;
            self.limiter.acquire(est).await;
            let permit = self.slots.acquire(priority).await;
            // A pause may have begun while this request waited for its slot.
            if self.pool.paused() {
                drop(permit);
                continue;
            }
            let r = self.attempt(&body, !logprobs, sampling.max_tokens).await;
            drop(permit);
            attempts += 1;
            let f = match r {
                Ok(reply) => {
                    if let Some(down) = self.pool.success() {
                        self.log(&format!(
                            "model {}: server answering again after {:.0} s down",
                            self.cfg.model,
                            down.as_secs_f64()
                        ));
                    }
                    if let Some(reset) = reply.quota_reset {
                        self.pool.pause_for(reset);
                    }
                    return Ok((reply, attempts - 1));
                }
                Err(f) => f,
            };
            let give_up = |f: Failure, why: String| {
                let e = LlmError::Http {
                    request_id: f.request_id,
                    status: f.status,
                    reason: f.reason,
                    message: self.redact(&format!("{}{why}", f.message)),
                };
                self.log(&format!("error (model {}): {e}", self.cfg.model));
                Err(e)
            };
            if !f.retryable {
                return give_up(f, String::new());
            }
            let n = failed.entry(f.reason).or_default();
            *n += 1;
            if let Some(limit) = f.reason.immediate_retries()
                && *n > limit
            {
                let why = format!(" ({n} attempts answered so; final, not asked again)");
                return give_up(f, why);
            }
            if f.reason == FailureReason::RateLimited
                && let Some(told) = f.retry_after
            {
                let wait = told.min(Duration::from_secs(600));
                rate_waited += wait;
                if rate_waited > limits.max_rate_limit_wait {
                    let why = format!(
                        " (rate-limited for {:.0} s in total, over the {:.0} s allowed)",
                        rate_waited.as_secs_f64(),
                        limits.max_rate_limit_wait.as_secs_f64()
                    );
                    return give_up(f, why);
                }
                if self.pool.pause_for(wait) {
                    self.log(&format!(
                        "request {} (model {}): HTTP 429: {}; pausing all requests {:.2}s as told",
                        f.request_id,
                        self.cfg.model,
                        f.message,
                        wait.as_secs_f64()
                    ));
                }
                continue;
            }
            let outage = matches!(
                f.reason,
                FailureReason::ServerError | FailureReason::Transport | FailureReason::Timeout
            );
            if outage && let (Verdict::Outage { down_for }, newly) = self.pool.failure(&limits) {
                if down_for > limits.max_outage {
                    let why = format!(
                        " (server down for {:.0} s, over the {:.0} s allowed)",
                        down_for.as_secs_f64(),
                        limits.max_outage.as_secs_f64()
                    );
                    return give_up(f, why);
                }
                if newly {
                    self.log(&format!(
                        "model {}: {} failures in a row ({}: {}); the server looks down, pausing \
                         all requests and probing until it answers (at most {:.0} s)",
                        self.cfg.model,
                        limits.outage_after,
                        status_text(f.status),
                        f.message,
                        limits.max_outage.as_secs_f64()
                    ));
                }
                continue;
            }
            if spent >= self.cfg.max_retries {
                let why = format!(" (gave up after {attempts} attempts)");
                return give_up(f, why);
            }
            let wait = self.backoff(spent, f.retry_after);
            if f.reason == FailureReason::RateLimited {
                self.pool.pause_for(wait);
            }
            self.log(&format!(
                "request {} (model {}): {}: {}; retry {}/{} in {:.2}s",
                f.request_id,
                self.cfg.model,
                status_text(f.status),
                f.message,
                spent + 1,
                self.cfg.max_retries,
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
            spent += 1;
        }
    }
}

/// What a response (status and body text) is worth, by the same rules for a synchronous call
/// and a batch line: an error status, a body that is not a completion, a refusal, a filter, an
/// empty answer (where content is wanted) are failures; anything else is the completion.
fn check_reply(
    status: u16,
    request_id: &str,
    text: &str,
    want_content: bool,
    max_tokens: Option<u32>,
    retry_after: Option<Duration>,
) -> Result<Completion, Failure> {
    let fail = |reason: FailureReason, message: String| Failure {
        retryable: reason.immediate_retries() != Some(0),
        reason,
        status,
        request_id: request_id.to_string(),
        message,
        retry_after,
    };
    if !(200..300).contains(&status) {
        let reason = match status {
            429 => FailureReason::RateLimited,
            408 | 409 | 425 => FailureReason::ServerError,
            s if s >= 500 => FailureReason::ServerError,
            _ => FailureReason::ClientError,
        };
        return Err(fail(reason, error_message(text)));
    }
    let completion: Completion = serde_json::from_str(text).map_err(|e| {
        fail(
            FailureReason::Malformed,
            format!("malformed JSON body ({e}); body starts {:?}", head(text)),
        )
    })?;
    let Some(choice) = completion.choices.first() else {
        return Err(fail(
            FailureReason::Malformed,
            "no choices in response".to_string(),
        ));
    };
    if let Some(r) = choice.message.as_ref().and_then(|m| m.refusal.as_deref())
        && !r.is_empty()
    {
        return Err(fail(
            FailureReason::Refusal,
            format!("model refused: {}", head(r)),
        ));
    }
    if choice.finish_reason.as_deref() == Some("content_filter") {
        return Err(fail(
            FailureReason::ContentFilter,
            "model refused: finish_reason=content_filter".to_string(),
        ));
    }
    if want_content {
        let content = choice
            .message
            .as_ref()
            .and_then(|m| m.content.as_deref())
            .unwrap_or("");
        // A cut answer that still has text is kept, as the reference code keeps it: the
        // parser decides whether it holds a ranking. With no text at all it is an empty
        // answer: one retry may get past a server hiccup, but one cut at max_tokens before
        // any text (a reasoning model thinking past the cap) would be cut again.
        if content.trim().is_empty() {
            if choice.finish_reason.as_deref() == Some("length") {
                let cap = max_tokens.map_or("the provider's limit".to_string(), |n| {
                    format!("max_tokens={n}")
                });
                let mut f = fail(
                    FailureReason::Empty,
                    format!("empty content, cut at {cap} (finish_reason=length)"),
                );
                f.retryable = false;
                return Err(f);
            }
            return Err(fail(FailureReason::Empty, "empty content".to_string()));
        }
    }
    Ok(completion)
}

/// The sampling of a log-probability read (a pointwise score or a first-token label): one
/// token at temperature 0.
fn logprob_sampling() -> Sampling {
    // Declared like every other call: nothing is left to the provider's default.
    Sampling {
        temperature: Some(0.0),
        max_tokens: Some(1),
        seed: Some(0),
        top_p: Some(1.0),
    }
}

/// A chat answer from a checked completion.
fn chat_response(completion: Completion, latency_ms: u64, retries: u32) -> ChatResponse {
    let served = Served {
        model: completion.model.clone(),
        system_fingerprint: completion.system_fingerprint.clone(),
    };
    let u = completion.usage.unwrap_or_default();
    let choice = completion.choices.into_iter().next();
    let finish_reason = choice
        .as_ref()
        .and_then(|c| c.finish_reason.clone())
        .filter(|r| r != "stop");
    let content = choice
        .and_then(|c| c.message)
        .and_then(|m| m.content)
        .unwrap_or_default();
    ChatResponse {
        served,
        content,
        usage: Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            latency_ms,
            retries,
            cached_tokens: u.cached(),
            reasoning_tokens: u.reasoning(),
            ..Usage::default()
        },
        finish_reason,
    }
}

/// Prompt tokens of a reply read from the provider's cache.
fn cached_of(reply: &Reply) -> u64 {
    reply.completion.usage.as_ref().map_or(0, ApiUsage::cached)
}

/// A pointwise score (and whether "yes" or "no" was missing from the top list) and the prompt
/// and completion tokens of one candidate's reply.
fn yes_no_of(reply: &Reply) -> Result<((f32, bool), u64, u64), LlmError> {
    let first = first_logprob(reply, "scoring")?;
    let u = reply.completion.usage.as_ref();
    Ok((
        yes_no_score(first),
        u.map_or(0, |u| u.prompt_tokens),
        u.map_or(0, |u| u.completion_tokens),
    ))
}

impl OpenAiClient {
    /// A deferred call's body as the synchronous path sends it, whether it wants content, and
    /// its `max_tokens`.
    fn batch_body(&self, call: &BatchCall) -> (serde_json::Value, bool, Option<u32>) {
        match call {
            BatchCall::Chat(r) => (
                self.body(&r.messages, &r.sampling, false),
                true,
                r.sampling.max_tokens,
            ),
            BatchCall::ScorePart(r) => {
                let s = logprob_sampling();
                (self.body(&r.messages_for(0), &s, true), false, s.max_tokens)
            }
            BatchCall::Labels(r) => {
                let s = logprob_sampling();
                (
                    self.body(&r.messages_with_prefill(), &s, true),
                    false,
                    s.max_tokens,
                )
            }
        }
    }

    /// One request to the Files or Batches API, retried like a chat call on 429, 5xx and
    /// transport failures; the response body.
    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>, LlmError> {
        let url = format!("{}{path}", self.cfg.base_url);
        let mut spent = 0u32;
        loop {
            let local_id = format!("local-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
            // Files can be large: at least ten minutes for one.
            let timeout = self.cfg.timeout.max(Duration::from_secs(600));
            let mut rb = self.http.request(method.clone(), &url).timeout(timeout);
            if let Some(ApiKey(k)) = &self.cfg.api_key {
                rb = rb.bearer_auth(k);
            }
            if let Some((ctype, bytes)) = &body {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, ctype.as_str())
                    .body(bytes.clone());
            }
            let (err, retry_after) = match rb.send().await {
                Err(e) => {
                    let reason = if e.is_timeout() {
                        FailureReason::Timeout
                    } else {
                        FailureReason::Transport
                    };
                    let e = LlmError::Http {
                        request_id: local_id,
                        status: 0,
                        reason,
                        message: self.redact(&format!("{method} {path}: {e}")),
                    };
                    (e, None)
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let request_id = resp
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map_or(local_id, str::to_string);
                    let retry_after = parse_retry_after(resp.headers());
                    match resp.bytes().await {
                        Ok(b) if (200..300).contains(&status) => return Ok(b.to_vec()),
                        Ok(b) => {
                            let reason = match status {
                                429 => FailureReason::RateLimited,
                                408 | 409 | 425 => FailureReason::ServerError,
                                s if s >= 500 => FailureReason::ServerError,
                                _ => FailureReason::ClientError,
                            };
                            let text = String::from_utf8_lossy(&b);
                            let message =
                                self.redact(&format!("{method} {path}: {}", error_message(&text)));
                            let e = LlmError::Http {
                                request_id,
                                status,
                                reason,
                                message,
                            };
                            (e, retry_after)
                        }
                        Err(e) => {
                            let e = LlmError::Http {
                                request_id,
                                status,
                                reason: FailureReason::Transport,
                                message: self
                                    .redact(&format!("{method} {path}: body cut off: {e}")),
                            };
                            (e, None)
                        }
                    }
                }
            };
            if !err.reason().is_transient() || spent >= self.cfg.max_retries {
                self.log(&format!("error (model {}): {err}", self.cfg.model));
                return Err(err);
            }
            let wait = self.backoff(spent, retry_after);
            self.log(&format!(
                "{err}; retry {}/{} in {:.2}s",
                spent + 1,
                self.cfg.max_retries,
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
            spent += 1;
        }
    }

    async fn control_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<serde_json::Value, LlmError> {
        let bytes = self.control(method.clone(), path, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| LlmError::Json {
            what: format!("{method} {path}: the response"),
            source,
        })
    }
}

#[async_trait]
impl BatchBackend for OpenAiClient {
    fn line_body(&self, call: &BatchCall) -> serde_json::Value {
        self.batch_body(call).0
    }

    fn line_answer(
        &self,
        call: &BatchCall,
        status: u16,
        request_id: &str,
        body: &str,
    ) -> Result<BatchAnswer, LlmError> {
        let (_, want_content, max_tokens) = self.batch_body(call);
        let completion = check_reply(status, request_id, body, want_content, max_tokens, None)
            .map_err(|f| LlmError::Http {
                request_id: f.request_id,
                status: f.status,
                reason: f.reason,
                message: self.redact(&f.message),
            })?;
        let reply = Reply {
            completion,
            request_id: request_id.to_string(),
            quota_reset: None,
        };
        Ok(match call {
            BatchCall::Chat(_) => {
                let mut c = chat_response(reply.completion, 0, 0);
                c.usage.mode = CallMode::Batch;
                BatchAnswer::Chat(c)
            }
            BatchCall::ScorePart(_) => {
                let ((score, missing), prompt_tokens, completion_tokens) = yes_no_of(&reply)?;
                BatchAnswer::Score(ScoreResponse {
                    scores: vec![score],
                    usage: Usage {
                        prompt_tokens,
                        completion_tokens,
                        labels_missing: u64::from(missing),
                        cached_tokens: cached_of(&reply),
                        mode: CallMode::Batch,
                        ..Usage::default()
                    },
                })
            }
            BatchCall::Labels(r) => {
                let (top, (prompt_tokens, completion_tokens)) =
                    first_token(&reply, "label scoring")?;
                BatchAnswer::Labels(LabelResponse {
                    logprobs: label_logprobs(&top, &r.labels),
                    usage: Usage {
                        prompt_tokens,
                        completion_tokens,
                        cached_tokens: cached_of(&reply),
                        mode: CallMode::Batch,
                        ..Usage::default()
                    },
                })
            }
        })
    }

    async fn upload(&self, filename: &str, jsonl: Vec<u8>) -> Result<String, LlmError> {
        let boundary = loop {
            let b = format!("agp-batch-{:016x}", rand::rng().random::<u64>());
            if !jsonl.windows(b.len()).any(|w| w == b.as_bytes()) {
                break b;
            }
        };
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/jsonl\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ctype = format!("multipart/form-data; boundary={boundary}");
        let v = self
            .control_json(reqwest::Method::POST, "/files", Some((ctype, body)))
            .await?;
        v.get("id")
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| LlmError::Other(format!("POST /files: no file id in {v}")))
    }

    async fn create(&self, input_file_id: &str) -> Result<BatchInfo, LlmError> {
        let body = serde_json::json!({
            "input_file_id": input_file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        });
        let v = self
            .control_json(
                reqwest::Method::POST,
                "/batches",
                Some((
                    "application/json".to_string(),
                    body.to_string().into_bytes(),
                )),
            )
            .await?;
        Ok(BatchInfo::from_json(&v))
    }

    async fn retrieve(&self, batch_id: &str) -> Result<BatchInfo, LlmError> {
        let v = self
            .control_json(reqwest::Method::GET, &format!("/batches/{batch_id}"), None)
            .await?;
        Ok(BatchInfo::from_json(&v))
    }

    async fn find_by_input(&self, input_file_id: &str) -> Result<Option<BatchInfo>, LlmError> {
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/batches?limit=100&after={a}"),
                None => "/batches?limit=100".to_string(),
            };
            let v = self.control_json(reqwest::Method::GET, &path, None).await?;
            let data = v
                .get("data")
                .and_then(|d| d.as_array())
                .cloned()
                .unwrap_or_default();
            if let Some(b) = data
                .iter()
                .map(BatchInfo::from_json)
                .find(|b| b.input_file_id.as_deref() == Some(input_file_id))
            {
                return Ok(Some(b));
            }
            let more = v.get("has_more").and_then(|m| m.as_bool()) == Some(true);
            match data
                .last()
                .and_then(|b| b.get("id"))
                .and_then(|i| i.as_str())
            {
                Some(last) if more => after = Some(last.to_string()),
                _ => return Ok(None),
            }
        }
    }

    async fn content(&self, file_id: &str) -> Result<Vec<u8>, LlmError> {
        self.control(
            reqwest::Method::GET,
            &format!("/files/{file_id}/content"),
            None,
        )
        .await
    }
}

fn status_text(status: u16) -> String {
    if status == 0 {
        "no response".to_string()
    } else {
        format!("HTTP {status}")
    }
}

fn head(s: &str) -> String {
    s.chars().take(120).collect()
}

fn error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct E {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        message: String,
    }
    match serde_json::from_str::<E>(body) {
        Ok(e) => e.error.message,
        Err(_) if body.trim().is_empty() => "empty body".to_string(),
        Err(_) => head(body),
    }
}

/// When the quota the server reports is spent (`x-ratelimit-remaining-* = 0`), how long until
/// its reset; the longer of requests and tokens.
fn parse_quota_reset(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    ["requests", "tokens"]
        .iter()
        .filter(|k| {
            get(&format!("x-ratelimit-remaining-{k}"))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .is_some_and(|n| n <= 0.0)
        })
        .filter_map(|k| get(&format!("x-ratelimit-reset-{k}")).and_then(parse_reset))
        .max()
}

fn parse_retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    // Only the delta-seconds form; an HTTP date falls back to our own backoff.
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// logsumexp over the top-logprob entries whose token, trimmed, equals `word` ignoring case.
fn word_logprob(top: &[TopLogprob], word: &str) -> Option<f64> {
    let hits: Vec<f64> = top
        .iter()
        .filter(|t| t.token.trim().eq_ignore_ascii_case(word))
        .map(|t| t.logprob)
        .collect();
    let m = hits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if hits.is_empty() {
        return None;
    }
    Some(m + hits.iter().map(|l| (l - m).exp()).sum::<f64>().ln())
}

/// The first answer token's log-probability entry, or a `Malformed` failure saying that the
/// server does not support `what`.
fn first_logprob<'a>(reply: &'a Reply, what: &str) -> Result<&'a TokenLogprob, LlmError> {
    reply
        .completion
        .choices
        .first()
        .and_then(|c| c.logprobs.as_ref())
        .and_then(|l| l.content.as_ref())
        .and_then(|c| c.first())
        .ok_or_else(|| LlmError::Http {
            request_id: reply.request_id.clone(),
            status: 200,
            reason: FailureReason::Malformed,
            message: format!("no logprobs in response; the server does not support {what}"),
        })
}

/// The first answer token's logprobs, or a `Malformed` failure naming what is missing.
fn first_token(reply: &Reply, what: &str) -> Result<(Vec<TopLogprob>, (u64, u64)), LlmError> {
    let first = first_logprob(reply, what)?;
    let mut top: Vec<TopLogprob> = first
        .top_logprobs
        .iter()
        .map(|t| TopLogprob {
            token: t.token.clone(),
            logprob: t.logprob,
        })
        .collect();
    // A server that returns no alternatives still says which token it chose.
    if top.is_empty() {
        top.push(TopLogprob {
            token: first.token.clone(),
            logprob: first.logprob,
        });
    }
    let u = reply.completion.usage.as_ref();
    Ok((
        top,
        (
            u.map_or(0, |u| u.prompt_tokens),
            u.map_or(0, |u| u.completion_tokens),
        ),
    ))
}

/// Each label's first-token logprob from the `top_logprobs` list (tokens compared trimmed and
/// ignoring case, variants merged by logsumexp); −∞ for a label not in the list. Unlike
/// [`yes_no_score`] there is no floor: FIRST ranks by these values, and a floor would tie every
/// unlisted label with the least likely listed one.
fn label_logprobs(top: &[TopLogprob], labels: &[String]) -> Vec<f32> {
    labels
        .iter()
        .map(|l| word_logprob(top, l.trim()).map_or(f32::NEG_INFINITY, |x| x as f32))
        .collect()
}

/// The pointwise score from the first token's `top_logprobs`: log p(Yes) − log p(No), equal to
/// logit(Yes) − logit(No) because both share the softmax normaliser. A word absent from the
/// top list is given the smallest listed logprob, an upper bound on its true value, and the
/// second value says so (counted as a missing label).
fn yes_no_score(first: &TokenLogprob) -> (f32, bool) {
    let mut top: Vec<TopLogprob> = first
        .top_logprobs
        .iter()
        .map(|t| TopLogprob {
            token: t.token.clone(),
            logprob: t.logprob,
        })
        .collect();
    if top.is_empty() {
        top.push(TopLogprob {
            token: first.token.clone(),
            logprob: first.logprob,
        });
    }
    let floor = top.iter().map(|t| t.logprob).fold(f64::INFINITY, f64::min);
    let (yes, no) = (word_logprob(&top, "yes"), word_logprob(&top, "no"));
    let missing = yes.is_none() || no.is_none();
    ((yes.unwrap_or(floor) - no.unwrap_or(floor)) as f32, missing)
}

#[async_trait]
impl ChatModel for OpenAiClient {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: self.cfg.provider.backend().to_string(),
            model: self.cfg.model.clone(),
            file_sha256: None,
        }
    }

    async fn served_models(&self) -> Option<Vec<String>> {
        #[derive(Deserialize)]
        struct Listed {
            id: String,
        }
        #[derive(Deserialize)]
        struct Models {
            data: Vec<Listed>,
        }
        let url = format!("{}/models", self.cfg.base_url);
        let mut rb = self.http.get(&url).timeout(self.cfg.timeout);
        if let Some(ApiKey(k)) = &self.cfg.api_key {
            rb = rb.bearer_auth(k);
        }
        // A server without the endpoint (or a refusal) only means nothing can be checked.
        let resp = rb.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let models: Models = resp.json().await.ok()?;
        Some(models.data.into_iter().map(|m| m.id).collect())
    }

    fn settings(&self) -> serde_json::Value {
        // No key here: settings are written into recordings.
        serde_json::json!({
            "base_url": self.cfg.base_url,
            "timeout_s": self.cfg.timeout.as_secs_f64(),
            "max_retries": self.cfg.max_retries,
            "top_logprobs": self.cfg.top_logprobs,
        })
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let t0 = Instant::now();
        let (reply, retries) = self
            .call(&req.messages, &req.sampling, false, req.priority)
            .await?;
        self.check_served(&reply);
        Ok(chat_response(
            reply.completion,
            t0.elapsed().as_millis() as u64,
            retries,
        ))
    }

    /// One request with `max_tokens = 1`, `temperature = 0`, `logprobs` and `top_logprobs`
    /// (20 by default, OpenAI's maximum), read from `choices[0].logprobs.content[0]`.
    async fn label_logprobs(&self, req: &LabelRequest) -> Result<LabelResponse, LlmError> {
        let t0 = Instant::now();
        let sampling = logprob_sampling();
        let (reply, retries) = self
            .call(&req.messages_with_prefill(), &sampling, true, req.priority)
            .await?;
        self.check_served(&reply);
        let (top, (prompt_tokens, completion_tokens)) = first_token(&reply, "label scoring")?;
        Ok(LabelResponse {
            logprobs: label_logprobs(&top, &req.labels),
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                latency_ms: t0.elapsed().as_millis() as u64,
                retries,
                cached_tokens: cached_of(&reply),
                ..Usage::default()
            },
        })
    }

    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        let t0 = Instant::now();
        let sampling = logprob_sampling();
        let calls = (0..req.suffixes.len()).map(|i| {
            let messages = req.messages_for(i);
            let sampling = &sampling;
            async move {
                let (reply, retries) = self.call(&messages, sampling, true, req.priority).await?;
                self.check_served(&reply);
                let (score, p, c) = yes_no_of(&reply)?;
                Ok((score, p, c, retries, cached_of(&reply)))
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut usage = Usage::default();
        let mut scores = Vec::with_capacity(results.len());
        for r in results {
            let ((s, missing), p, c, retries, cached) = r?;
            scores.push(s);
            usage.cached_tokens += cached;
            usage.labels_missing += u64::from(missing);
            usage.prompt_tokens += p;
            usage.completion_tokens += c;
            usage.retries += retries;
        }
        usage.latency_ms = t0.elapsed().as_millis() as u64;
        Ok(ScoreResponse { scores, usage })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_holds_requests_and_tokens_to_the_minute_window() {
        let l = RateLimiter {
            rpm: Some(2),
            tpm: Some(1000),
            window: Mutex::new(VecDeque::new()),
        };
        let t0 = tokio::time::Instant::now();
        l.acquire(100).await;
        l.acquire(100).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);
        l.acquire(100).await; // third request in a minute: waits for the first to age out
        assert!(t0.elapsed() >= Duration::from_secs(60));
        let l = RateLimiter {
            rpm: None,
            tpm: Some(1000),
            window: Mutex::new(VecDeque::new()),
        };
        let t1 = tokio::time::Instant::now();
        l.acquire(600).await;
        l.acquire(600).await; // 1200 tokens > 1000 per minute
        assert!(t1.elapsed() >= Duration::from_secs(60));
        l.acquire(5000).await; // alone in its window, an oversized request still runs
    }

    #[test]
    fn a_served_model_is_the_asked_one_as_itself_a_dated_snapshot_or_its_gguf() {
        for (asked, served, same) in [
            ("gpt-4o", "gpt-4o", true),
            ("gpt-4o", "gpt-4o-2024-08-06", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("gpt-4o", "gpt-4o-mini-2024-07-18", false),
            ("smollm2", "/models/smollm2.gguf", true),
            ("m", "/models/SmolLM2-135M-Instruct-Q8_0.gguf", false),
        ] {
            assert_eq!(serves_model(asked, served), same, "{asked} / {served}");
        }
    }

    #[test]
    fn o_series_detection() {
        for (m, o) in [
            ("o3-mini", true),
            ("o1", true),
            ("gpt-4o", false),
            ("omni", false),
        ] {
            assert_eq!(
                HttpConfig::generic("http://x/v1", m).is_o_series(),
                o,
                "{m}"
            );
        }
    }

    #[test]
    fn yes_no_score_merges_case_and_space_variants() {
        let first = TokenLogprob {
            token: "Yes".into(),
            logprob: -0.5,
            top_logprobs: vec![
                TopLogprob {
                    token: "Yes".into(),
                    logprob: (0.3f64).ln(),
                },
                TopLogprob {
                    token: " yes".into(),
                    logprob: (0.1f64).ln(),
                },
                TopLogprob {
                    token: "No".into(),
                    logprob: (0.2f64).ln(),
                },
                TopLogprob {
                    token: "Maybe".into(),
                    logprob: (0.05f64).ln(),
                },
            ],
        };
        let (s, missing) = yes_no_score(&first);
        assert!(!missing);
        assert!((s - (2.0f32).ln()).abs() < 1e-6, "{s}");
        let only_yes = TokenLogprob {
            token: "Yes".into(),
            logprob: 0.0,
            top_logprobs: vec![
                TopLogprob {
                    token: "Yes".into(),
                    logprob: -0.1,
                },
                TopLogprob {
                    token: "Sure".into(),
                    logprob: -3.0,
                },
            ],
        };
        let (s, missing) = yes_no_score(&only_yes);
        assert!((s - 2.9).abs() < 1e-6);
        assert!(missing, "\"No\" is outside the top list");
    }
}
