//! `cargo xtask sim-api`: a simulated OpenAI-compatible API on loopback, for rehearsing long
//! paid runs (retries, rate limits, outages, resume) offline. Never a source of results.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use agp_sim_api::{BatchConfig, FaultRates, PrefixCacheConfig, SimConfig, SimServer};
use anyhow::Context;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Port on 127.0.0.1 (0: any free port). The simulator never listens beyond loopback.
    #[arg(long, default_value_t = 8089)]
    pub port: u16,
    /// Random faults: none | storm (≈30% 429, 10% 5xx, 5% malformed JSON, 5% dropped
    /// connections) | a custom mix such as `429=0.2,5xx=0.05,malformed=0.01,drop=0.01`.
    #[arg(long, default_value = "none")]
    pub faults: FaultRates,
    /// Override the share of 429s (with `Retry-After: 1`) from --faults.
    #[arg(long)]
    pub fault_429: Option<f64>,
    /// Override the share of 500/502/503s from --faults.
    #[arg(long)]
    pub fault_5xx: Option<f64>,
    /// Override the share of 200s with a truncated JSON body from --faults.
    #[arg(long)]
    pub fault_malformed: Option<f64>,
    /// Override the share of connections closed before or during the response from --faults.
    #[arg(long)]
    pub fault_drop: Option<f64>,
    /// Seed of the fault draws (answers never depend on it).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sleep this long before answering each request (requests overlap).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Enforce this many requests per sliding minute (429 with a truthful Retry-After beyond).
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Enforce this many tokens (prompt ≈ chars/4, plus max_tokens) per sliding minute.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Answer every request with 503 for this long after start (an outage).
    #[arg(long, default_value_t = 0)]
    pub down_for_ms: u64,
    /// The wait a storm's random 429 asks for.
    #[arg(long, default_value_t = 1000)]
    pub storm_retry_after_ms: u64,
    /// Refuse (`message.refusal`, null content) every prompt containing this text; repeatable.
    #[arg(long)]
    pub refuse_containing: Vec<String>,
    /// End every prompt containing this text with finish_reason content_filter; repeatable.
    #[arg(long)]
    pub content_filter_containing: Vec<String>,
    /// Cut answers longer than the request's max_tokens (≈ chars/4), finish_reason length.
    #[arg(long)]
    pub length_cut: bool,
    /// Probability (0..=1) of putting the held-out item first, given --truth.
    #[arg(long, default_value_t = 0.0, requires = "truth")]
    pub signal: f64,
    /// Held-out items: JSON `[{"candidates": ["title", ...], "gt": 3}, ...]`.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Append one JSON line per attempt (time, body fingerprint, status, fault) here.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Sample a fresh answer per attempt when a request sends no temperature (or one above 0
    /// with no seed), as a real server does.
    #[arg(long)]
    pub sample_when_unset: bool,
    /// Return at most this many top log-probabilities (OpenAI returns up to 20).
    #[arg(long)]
    pub max_top_logprobs: Option<u8>,
    /// List this one model at `GET /v1/models` and name it in every completion, whatever was
    /// asked (as llama-server names its GGUF).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Batch API: how long a batch takes from creation to completion.
    #[arg(long, default_value_t = 0)]
    pub batch_delay_ms: u64,
    /// Batch API: share (0..=1) of each batch's lines left unanswered (the batch ends
    /// `expired`).
    #[arg(long, default_value_t = 0.0)]
    pub batch_expire: f64,
    /// Batch API: share (0..=1) of batch lines that fail with a 5xx in the error file.
    #[arg(long, default_value_t = 0.0)]
    pub batch_line_errors: f64,
    /// Prompt-prefix cache: report `cached_tokens` for prompts of at least this many tokens
    /// that start like an earlier one (OpenAI: 1024); 0 turns the cache off.
    #[arg(long, default_value_t = 0)]
    pub cache_min_tokens: u64,
    /// Prompt-prefix cache: cached prefixes grow in steps of this many tokens (OpenAI: 128).
    #[arg(long, default_value_t = 128)]
    pub cache_step_tokens: u64,
    /// Model id shown in the printed `--llm` spec (the simulator answers any model id).
    #[arg(long, default_value = "gpt-4o-mini")]
    pub model: String,
}

pub fn run(a: SimArgs) -> anyhow::Result<()> {
    let mut faults = a.faults;
    if let Some(p) = a.fault_429 {
        faults.rate_limited = p;
    }
    if let Some(p) = a.fault_5xx {
        faults.server_error = p;
    }
    if let Some(p) = a.fault_malformed {
        faults.malformed = p;
    }
    if let Some(p) = a.fault_drop {
        faults.dropped = p;
    }
    let mut cfg = SimConfig {
        seed: a.seed,
        faults,
        refuse_containing: a.refuse_containing,
        content_filter_containing: a.content_filter_containing,
        length_cut: a.length_cut,
        latency: Duration::from_millis(a.latency_ms),
        rpm: a.rpm,
        tpm: a.tpm,
        down_for: Duration::from_millis(a.down_for_ms),
        storm_retry_after: Duration::from_millis(a.storm_retry_after_ms),
        signal: a.signal,
        log: a.log,
        sample_when_unset: a.sample_when_unset,
        max_top_logprobs: a.max_top_logprobs,
        served_model: a.served_model,
        prefix_cache: (a.cache_min_tokens > 0).then_some(PrefixCacheConfig {
            min_tokens: a.cache_min_tokens,
            step_tokens: a.cache_step_tokens,
        }),
        batch: BatchConfig {
            delay: Duration::from_millis(a.batch_delay_ms),
            expire_fraction: a.batch_expire,
            line_error_rate: a.batch_line_errors,
            ..BatchConfig::default()
        },
        ..SimConfig::default()
    };
    let n_truth = match &a.truth {
        Some(p) => cfg.load_truth(p)?,
        None => 0,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(async move {
        let server = SimServer::start_on(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, a.port)))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", a.port))?;
        let url = server.base_url();
        println!(
            "sim-api (rehearsal only, never for committed reports) at {url}: run the harness with \
             --llm http:{url}#{} ; faults {faults}; {n_truth} truth lists; stats at \
             http://{}/sim/stats ; Ctrl-C to stop",
            a.model, server.addr
        );
        server.run().await;
        Ok(())
    })
}
