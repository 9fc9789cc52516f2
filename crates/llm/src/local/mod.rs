//! In-process GGUF inference through llama.cpp (`llama-cpp-2`), behind the `local` feature.
//!
//! A llama.cpp context is not thread-safe, so one worker thread owns the model and its
//! context; the async [`ChatModel`] methods hand it a job and await the answer. With one slot
//! it serves calls one at a time in arrival order, each from an empty cache, so an answer
//! depends on its request alone; with more ([`slots`]) it decodes concurrent calls together.
//! Decoding is greedy unless a temperature is given (then seeded).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Instant;

use async_trait::async_trait;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::oneshot;

pub mod slots;

use crate::{
    ChatModel, ChatRequest, ChatResponse, LabelRequest, LabelResponse, LlmError, Message,
    ModelInfo, ScoreRequest, ScoreResponse, Usage,
};

/// Threads that decode generated tokens, fixed so that an answer does not depend on
/// `--threads`. Measured with the vendored llama.cpp on SmolLM2-135M (`tests/local.rs`): with
/// generation on 2 threads, 4 of 12 recorded prompts got another greedy answer than on 1; with
/// generation on 1 and prompts read on 2, all 12 answers and every pointwise score were
/// identical to one thread throughout. One thread is also what a busy machine generates
/// fastest on (ggml's workers spin-wait for each other on every token), and generation is
/// memory-bound, so more threads buy little there.
pub const GENERATION_THREADS: i32 = 1;

/// How to load and run a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalConfig {
    pub path: PathBuf,
    /// Name recorded as the model (a pinned short name, or the file name).
    pub name: String,
    /// sha256 of the file; computed at load when `None`.
    pub file_sha256: Option<String>,
    /// CPU threads that read prompts. With one slot, generation runs on
    /// [`GENERATION_THREADS`] whatever this is, which keeps greedy answers independent of it
    /// (see there); with more, on these too ([`Self::generation_threads`]).
    pub threads: usize,
    /// Context window in tokens (prompt + answer).
    pub n_ctx: u32,
    /// Tokens per decode call while reading a prompt.
    pub n_batch: u32,
    /// Answer length when the request sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// Hard cap on any request's `max_tokens`.
    pub max_tokens_cap: u32,
    /// Score candidates on top of the shared prefix's KV cache (fast). `false` evaluates each
    /// candidate prompt from scratch in one pass: slower, a reference for checking the cache.
    /// A chat always starts from an empty cache: reading a prompt on top of the previous
    /// chat's cached prefix changed greedy answers (the first of 8 recorded prompts got
    /// another answer than from scratch), and a recording must not depend on call order.
    pub reuse_prefix: bool,
    /// Sequences decoded together ([`slots`]). 1 serves one call at a time, from an empty
    /// cache: an answer then depends on its request alone, which is what a recording needs.
    /// More admits concurrent calls into one batch as they arrive and keeps each slot's last
    /// prompt as a prefix cache; faster, but an answer can then depend on what shared its
    /// batch and its slot (see [`slots`]).
    pub slots: usize,
}

impl LocalConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        Self {
            path,
            name,
            file_sha256: None,
            // Prompts are read on every core; generation stays on one thread
            // (GENERATION_THREADS), where ggml's spin-waiting workers once cost a busy machine
            // 50x (0.8 tok/s on two threads against 40 on one).
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            n_ctx: 4096,
            n_batch: 512,
            default_max_tokens: 512,
            max_tokens_cap: 2048,
            reuse_prefix: true,
            slots: 1,
        }
    }

    /// Threads a decode of a single token runs on: [`GENERATION_THREADS`] with one slot, which
    /// keeps its greedy answers independent of `threads`; every thread with more, where
    /// answers depend on the schedule anyway ([`slots::CAVEAT`]).
    pub fn generation_threads(&self) -> i32 {
        if self.slots > 1 {
            i32::try_from(self.threads).unwrap_or(i32::MAX)
        } else {
            GENERATION_THREADS
        }
    }

    /// Checks every field against its allowed range.
    pub fn validate(&self) -> Result<(), LlmError> {
        let bad = |f: &str, r: &str| Err(LlmError::Other(format!("local model {f}: {r}")));
        if self.threads == 0 || self.threads > 256 {
            return bad("threads", &format!("{} not in 1..=256", self.threads));
        }
        if !(128..=131_072).contains(&self.n_ctx) {
            return bad("n_ctx", &format!("{} not in 128..=131072", self.n_ctx));
        }
        if self.n_batch == 0 || self.n_batch > self.n_ctx {
            return bad(
                "n_batch",
                &format!("{} not in 1..=n_ctx ({})", self.n_batch, self.n_ctx),
            );
        }
        if self.slots == 0
            || self.slots > crate::MAX_LOCAL_SLOTS
            || self.slots > self.n_batch as usize
        {
            return bad(
                "slots",
                &format!(
                    "{} not in 1..=min({}, n_batch ({}))",
                    self.slots,
                    crate::MAX_LOCAL_SLOTS,
                    self.n_batch
                ),
            );
        }
        if self.default_max_tokens == 0 || self.default_max_tokens > self.max_tokens_cap {
            return bad(
                "default_max_tokens",
                &format!(
                    "{} not in 1..=max_tokens_cap ({})",
                    self.default_max_tokens, self.max_tokens_cap
                ),
            );
        }
        Ok(())
    }
}

type Reply<T> = oneshot::Sender<Result<T, LlmError>>;

enum Job {
    Chat(ChatRequest, Reply<ChatResponse>),
    Score(ScoreRequest, Reply<ScoreResponse>),
    Labels(LabelRequest, Reply<LabelResponse>),
}

/// A GGUF model served by one worker thread.
pub struct LocalModel {
    tx: mpsc::Sender<Job>,
    info: ModelInfo,
    cfg: LocalConfig,
    /// Its chat template opens a reasoning block, which every answer starts closed
    /// ([`NO_THINKING`]).
    thinking_off: bool,
}

/// Written after the assistant's opening for a model whose chat template opens a reasoning
/// block (Qwen3-style `<think>`): the empty block such a template writes itself when thinking
/// is switched off (`enable_thinking=false`). Without it the first answer token is `<think>`,
/// so every yes/no score and every FIRST label would read a token that is neither, and a chat
/// answer would spend its tokens thinking.
pub const NO_THINKING: &str = "<think>\n\n</think>\n\n";

/// What to write after the assistant's opening for a model with this chat template.
pub fn thinking_prefill(template: &str) -> &'static str {
    if template.contains("<think>") {
        NO_THINKING
    } else {
        ""
    }
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("info", &self.info)
            .field("cfg", &self.cfg)
            .finish()
    }
}

fn backend() -> Result<&'static LlamaBackend, LlmError> {
    // llama.cpp's backend is process-global and may be initialised once.
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            b.void_logs();
            Ok(b)
        })
        .as_ref()
        .map_err(|e| LlmError::backend("starting the llama.cpp backend", e.to_string()))
}

fn err(path: &std::path::Path, what: &str, e: impl std::fmt::Display) -> LlmError {
    LlmError::Other(format!("{}: {what}: {e}", path.display()))
}

impl LocalModel {
    /// Loads the model on a new worker thread; returns once it is ready (or failed).
    pub fn load(mut cfg: LocalConfig) -> Result<Self, LlmError> {
        cfg.validate()?;
        if !cfg.path.is_file() {
            return Err(LlmError::Other(format!(
                "{}: no such GGUF file (fetch one with `cargo xtask model fetch smollm2-135m`)",
                cfg.path.display()
            )));
        }
        let sha = match &cfg.file_sha256 {
            Some(s) => s.clone(),
            None => crate::fetch::file_sha256(&cfg.path)?,
        };
        cfg.file_sha256 = Some(sha.clone());
        let info = ModelInfo {
            backend: "local".to_string(),
            model: cfg.name.clone(),
            file_sha256: Some(sha),
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<bool, LlmError>>(1);
        let wcfg = cfg.clone();
        std::thread::Builder::new()
            .name("agp-llm-local".to_string())
            .spawn(move || worker_main(wcfg, ready_tx, rx))
            .map_err(|e| LlmError::backend("spawning the model thread", e))?;
        let thinking_off = ready_rx
            .recv()
            .map_err(|_| LlmError::Other("model thread exited while loading".to_string()))??;
        Ok(Self {
            tx,
            info,
            cfg,
            thinking_off,
        })
    }

    pub fn config(&self) -> &LocalConfig {
        &self.cfg
    }

    async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, LlmError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| LlmError::Other("local model thread has stopped".to_string()))?;
        rx.await
            .map_err(|_| LlmError::Other("local model thread dropped the call".to_string()))?
    }
}

#[async_trait]
impl ChatModel for LocalModel {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn settings(&self) -> serde_json::Value {
        let mut s = serde_json::json!({
            "runtime": "llama.cpp (llama-cpp-2 0.1.160)",
            "threads": self.cfg.threads,
            "generation_threads": self.cfg.generation_threads(),
            "n_ctx": self.cfg.n_ctx,
            "n_batch": self.cfg.n_batch,
            "default_max_tokens": self.cfg.default_max_tokens,
            "max_tokens_cap": self.cfg.max_tokens_cap,
            "reuse_prefix": self.cfg.reuse_prefix,
            "decoding": "greedy unless temperature > 0 (then seeded)",
        });
        if self.cfg.slots > 1 {
            s["slots"] = serde_json::json!(self.cfg.slots);
            s["batching"] = serde_json::json!(slots::CAVEAT);
        }
        if self.thinking_off {
            s["thinking"] =
                serde_json::json!("off: every answer starts with an empty <think></think>");
        }
        s
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let req = req.clone();
        self.submit(|tx| Job::Chat(req, tx)).await
    }

    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        let req = req.clone();
        self.submit(|tx| Job::Score(req, tx)).await
    }

    async fn label_logprobs(&self, req: &LabelRequest) -> Result<LabelResponse, LlmError> {
        let req = req.clone();
        self.submit(|tx| Job::Labels(req, tx)).await
    }

    fn scores_in_one_pass(&self) -> bool {
        self.cfg.reuse_prefix
    }
}

fn worker_main(
    cfg: LocalConfig,
    ready: mpsc::SyncSender<Result<bool, LlmError>>,
    rx: mpsc::Receiver<Job>,
) {
    let setup = || -> Result<(&'static LlamaBackend, LlamaModel), LlmError> {
        let b = backend()?;
        let m = LlamaModel::load_from_file(b, &cfg.path, &LlamaModelParams::default())
            .map_err(|e| err(&cfg.path, "loading GGUF", e))?;
        Ok((b, m))
    };
    let (b, model) = match setup() {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = i32::try_from(cfg.threads).unwrap_or(i32::MAX);
    let mut params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cfg.n_ctx))
        .with_n_batch(cfg.n_batch)
        .with_n_ubatch(cfg.n_batch)
        .with_n_threads(cfg.generation_threads())
        .with_n_threads_batch(threads);
    if cfg.slots > 1 {
        // One KV stream per slot, each the whole window: a sequence attends only to its own
        // cache, and one long prompt cannot crowd out another's. (One stream for all measured
        // the same within noise: 113-136 against 123-130 generated tokens/s, 4 slots.)
        params = params
            .with_n_ctx(NonZeroU32::new(cfg.n_ctx * cfg.slots as u32))
            .with_n_seq_max(cfg.slots as u32)
            .with_kv_unified(false);
    }
    let ctx = match model.new_context(b, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(err(&cfg.path, "creating context", e)));
            return;
        }
    };
    let tmpl = match model.chat_template(None) {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(err(&cfg.path, "reading the chat template", e)));
            return;
        }
    };
    let vocab = model.vocab();
    let first = |w: &[u8]| vocab.tokenize(w, false, false).first().copied();
    let (Some(yes), Some(no)) = (first(b"Yes"), first(b"No")) else {
        let _ = ready.send(Err(err(&cfg.path, "tokenizer", "cannot tokenize Yes/No")));
        return;
    };
    let think = thinking_prefill(tmpl.to_str().unwrap_or(""));
    let p = Prompter {
        cfg: &cfg,
        model: &model,
        tmpl,
        yes,
        no,
        think,
    };
    let _ = ready.send(Ok(!think.is_empty()));
    if cfg.slots > 1 {
        slots::serve(&p, ctx, &rx);
        return;
    }
    let mut w = Worker { p: &p, ctx };
    while let Ok(job) = rx.recv() {
        // A Rust panic inside one call must not take the model down for every later call.
        match job {
            Job::Chat(req, tx) => {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.chat(&req)))
                    .unwrap_or_else(|_| Err(LlmError::Other("panic in local chat".to_string())));
                let _ = tx.send(r);
            }
            Job::Score(req, tx) => {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.score(&req)))
                    .unwrap_or_else(|_| Err(LlmError::Other("panic in local score".to_string())));
                let _ = tx.send(r);
            }
            Job::Labels(req, tx) => {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.labels(&req)))
                    .unwrap_or_else(|_| Err(LlmError::Other("panic in local labels".to_string())));
                let _ = tx.send(r);
            }
        }
    }
}

/// What turns a request into tokens and logits into answers: the same for one sequence at a
/// time ([`Worker`]) and for several ([`slots`]).
struct Prompter<'m> {
    cfg: &'m LocalConfig,
    model: &'m LlamaModel,
    tmpl: LlamaChatTemplate,
    yes: LlamaToken,
    no: LlamaToken,
    /// [`thinking_prefill`] of its template.
    think: &'static str,
}

/// A chat's prompt, its answer budget and its sampler.
struct ChatStart {
    prompt: Vec<LlamaToken>,
    max_new: usize,
    sampler: LlamaSampler,
}

/// A pointwise scoring's prompts (one per candidate) and the token prefix they all share,
/// which is read once.
struct ScoreStart {
    prompts: Vec<Vec<LlamaToken>>,
    shared: usize,
}

impl Prompter<'_> {
    fn e(&self, what: &str, e: impl std::fmt::Display) -> LlmError {
        err(&self.cfg.path, what, e)
    }

    /// The model's own chat template applied to `messages`, ending with the assistant's turn.
    fn render(&self, messages: &[Message]) -> Result<Vec<LlamaToken>, LlmError> {
        self.render_with_prefill(messages, "")
    }

    /// As [`Self::render`], with `prefill` written after the assistant's opening, so the next
    /// token continues the assistant's answer from there.
    fn render_with_prefill(
        &self,
        messages: &[Message],
        prefill: &str,
    ) -> Result<Vec<LlamaToken>, LlmError> {
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e("message", e))?;
        let mut text = self
            .model
            .apply_chat_template(&self.tmpl, &chat, true)
            .map_err(|e| self.e("applying the chat template", e))?;
        text.push_str(self.think);
        text.push_str(prefill);
        // add_special adds BOS only where the GGUF asks for it; parse_special turns
        // `<|im_start|>` into its control token.
        Ok(self.model.vocab().tokenize(text.as_bytes(), true, true))
    }

    fn check_fits(&self, n: usize) -> Result<(), LlmError> {
        if n >= self.cfg.n_ctx as usize {
            return Err(LlmError::Other(format!(
                "{}: prompt of {n} tokens does not fit the context window n_ctx={} (raise it)",
                self.cfg.path.display(),
                self.cfg.n_ctx
            )));
        }
        Ok(())
    }

    fn chat_start(&self, req: &ChatRequest) -> Result<ChatStart, LlmError> {
        let prompt = self.render(&req.messages)?;
        self.check_fits(prompt.len())?;
        let asked = req
            .sampling
            .max_tokens
            .unwrap_or(self.cfg.default_max_tokens);
        let room = self.cfg.n_ctx as usize - prompt.len();
        let max_new = (asked.min(self.cfg.max_tokens_cap) as usize).min(room);
        let seed = req.sampling.seed.unwrap_or(0) as u32;
        let sampler = match req.sampling.temperature {
            Some(t) if t > 0.0 => {
                let mut chain = Vec::with_capacity(3);
                if let Some(p) = req.sampling.top_p {
                    chain.push(LlamaSampler::top_p(p, 1));
                }
                chain.extend([LlamaSampler::temp(t), LlamaSampler::dist(seed)]);
                LlamaSampler::chain_simple(chain)
            }
            _ => LlamaSampler::greedy(),
        };
        Ok(ChatStart {
            prompt,
            max_new,
            sampler,
        })
    }

    fn score_start(&self, req: &ScoreRequest) -> Result<ScoreStart, LlmError> {
        let prompts = (0..req.suffixes.len())
            .map(|i| self.render(&req.messages_for(i)))
            .collect::<Result<Vec<_>, _>>()?;
        for p in &prompts {
            self.check_fits(p.len())?;
        }
        // Longest common token prefix, leaving at least one token per candidate so each has
        // its own logits to read.
        let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
        let mut shared = 0;
        while shared < shortest && prompts.iter().all(|p| p[shared] == prompts[0][shared]) {
            shared += 1;
        }
        shared = shared.min(shortest.saturating_sub(1));
        if !self.cfg.reuse_prefix {
            shared = 0;
        }
        Ok(ScoreStart { prompts, shared })
    }

    /// logit(Yes) − logit(No): a candidate's pointwise score.
    fn yes_minus_no(&self, logits: &[f32]) -> f32 {
        logits[self.yes.0 as usize] - logits[self.no.0 as usize]
    }

    /// A label request's prompt and the first token of each label.
    fn labels_start(
        &self,
        req: &LabelRequest,
    ) -> Result<(Vec<LlamaToken>, Vec<LlamaToken>), LlmError> {
        let prompt = self.render_with_prefill(&req.messages, &req.prefill)?;
        self.check_fits(prompt.len())?;
        let vocab = self.model.vocab();
        let tokens: Vec<Option<LlamaToken>> = req
            .labels
            .iter()
            .map(|l| vocab.tokenize(l.as_bytes(), false, false).first().copied())
            .collect();
        // Two labels read from one token would get one probability between them and tie for
        // good: a setup problem (labels this tokenizer does not tell apart), not an answer.
        let mut out = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let Some(t) = t else {
                return Err(LlmError::Other(format!(
                    "local model {}: label {:?} has no token",
                    self.cfg.name, req.labels[i]
                )));
            };
            if let Some(j) = tokens[..i].iter().position(|u| *u == Some(*t)) {
                return Err(LlmError::Other(format!(
                    "local model {}: labels {:?} and {:?} start with the same token ({}), so \
                     their log-probabilities cannot be told apart; use single-token labels",
                    self.cfg.name, req.labels[j], req.labels[i], t.0
                )));
            }
            out.push(*t);
        }
        Ok((prompt, out))
    }
}

/// Log-softmax of `logits` at each of `tokens`.
fn log_softmax_at(logits: &[f32], tokens: &[LlamaToken]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_z = f64::from(max)
        + logits
            .iter()
            .map(|&l| f64::from(l - max).exp())
            .sum::<f64>()
            .ln();
    tokens
        .iter()
        .map(|t| {
            logits
                .get(t.0 as usize)
                .map_or(f32::NEG_INFINITY, |&l| (f64::from(l) - log_z) as f32)
        })
        .collect()
}

fn usage(prompt_tokens: usize, completion_tokens: usize, t0: Instant) -> Usage {
    Usage {
        prompt_tokens: prompt_tokens as u64,
        completion_tokens: completion_tokens as u64,
        latency_ms: t0.elapsed().as_millis() as u64,
        retries: 0,
        ..Usage::default()
    }
}

/// One sequence at a time, each call from an empty cache.
struct Worker<'p, 'm> {
    p: &'p Prompter<'m>,
    ctx: LlamaContext<'m>,
}

impl Worker<'_, '_> {
    fn e(&self, what: &str, e: impl std::fmt::Display) -> LlmError {
        self.p.e(what, e)
    }

    /// Feeds `tokens` at positions `start..`, in `n_batch` chunks; returns the batch index of
    /// the last token's logits when `want_logits` (requested for the last token only).
    fn feed(
        &mut self,
        tokens: &[LlamaToken],
        start: usize,
        want_logits: bool,
    ) -> Result<i32, LlmError> {
        let n_batch = self.p.cfg.n_batch as usize;
        let mut batch = LlamaBatch::new(n_batch, 1);
        let mut last_idx = 0;
        for (c, chunk) in tokens.chunks(n_batch).enumerate() {
            batch.clear();
            for (i, t) in chunk.iter().enumerate() {
                let pos = start + c * n_batch + i;
                let last = want_logits && pos == start + tokens.len() - 1;
                batch
                    .add(*t, pos as i32, &[0], last)
                    .map_err(|e| self.e("batch", e))?;
                if last {
                    last_idx = i as i32;
                }
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| self.e("decode", e))?;
        }
        Ok(last_idx)
    }

    fn chat(&mut self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let t0 = Instant::now();
        let ChatStart {
            prompt,
            max_new,
            mut sampler,
        } = self.p.chat_start(req)?;
        self.ctx.clear_kv_cache();
        let mut idx = self.feed(&prompt, 0, true)?;
        let mut bytes = Vec::new();
        let mut generated = 0usize;
        let mut batch = LlamaBatch::new(1, 1);
        let vocab = self.p.model.vocab();
        while generated < max_new {
            // sample() also accepts the token; calling accept() again would advance it twice.
            let tok = sampler.sample(&self.ctx, idx);
            if vocab.is_eog(tok) {
                break;
            }
            bytes.extend(vocab.token_to_piece(tok, false, None));
            generated += 1;
            if generated == max_new {
                break;
            }
            batch.clear();
            batch
                .add(tok, (prompt.len() + generated - 1) as i32, &[0], true)
                .map_err(|e| self.e("batch", e))?;
            self.ctx
                .decode(&mut batch)
                .map_err(|e| self.e("decode", e))?;
            idx = 0;
        }
        Ok(ChatResponse {
            served: Default::default(),
            content: String::from_utf8_lossy(&bytes).into_owned(),
            usage: usage(prompt.len(), generated, t0),
            finish_reason: (generated == max_new).then(|| "length".to_string()),
        })
    }

    /// logit(Yes) − logit(No) of the first answer token, per suffix. The token prefix shared
    /// by all candidate prompts is evaluated once and kept in the KV cache; each candidate's
    /// remainder is evaluated on top of it and then rewound.
    fn score(&mut self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        let t0 = Instant::now();
        if req.suffixes.is_empty() {
            return Ok(ScoreResponse {
                scores: vec![],
                usage: Usage::default(),
            });
        }
        let ScoreStart { prompts, shared } = self.p.score_start(req)?;
        self.ctx.clear_kv_cache();
        if shared > 0 {
            self.feed(&prompts[0][..shared], 0, false)?;
        }
        let mut evaluated = shared;
        let mut scores = Vec::with_capacity(prompts.len());
        for p in &prompts {
            let rest = &p[shared..];
            let idx = self.feed(rest, shared, true)?;
            evaluated += rest.len();
            scores.push(self.p.yes_minus_no(self.ctx.get_logits_ith(idx)));
            self.ctx
                .clear_kv_cache_seq(Some(0), Some(shared as u32), None)
                .map_err(|e| self.e("rewinding the KV cache", e))?;
        }
        Ok(ScoreResponse {
            scores,
            usage: usage(evaluated, 0, t0),
        })
    }

    /// Log-softmax of the first answer token at each label's first token: the next-token
    /// distribution after the rendered prompt, so every label gets a finite value (unlike an
    /// API's top-20 list). A label is tokenized without special tokens, as Yes/No are.
    fn labels(&mut self, req: &LabelRequest) -> Result<LabelResponse, LlmError> {
        let t0 = Instant::now();
        let (prompt, tokens) = self.p.labels_start(req)?;
        self.ctx.clear_kv_cache();
        let idx = self.feed(&prompt, 0, true)?;
        Ok(LabelResponse {
            logprobs: log_softmax_at(self.ctx.get_logits_ith(idx), &tokens),
            usage: usage(prompt.len(), 0, t0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_that_opens_a_reasoning_block_gets_it_closed_before_the_answer() {
        // The tail of Qwen3's template, and the ChatML template SmolLM2 and Qwen2.5 ship.
        let qwen3 = "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}\
                     {%- if enable_thinking is defined and enable_thinking is false %}\
                     {{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}";
        let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' \
                      + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\
                      {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        assert_eq!(thinking_prefill(qwen3), NO_THINKING);
        assert_eq!(thinking_prefill(chatml), "");
    }
}
