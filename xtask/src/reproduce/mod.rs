//! `cargo xtask reproduce <experiment>`: every table and figure of the paper from one command.
//!
//! No flags means the bundled default: fixture scale on ml-latest-small, both backbones trained
//! natively and deterministically, LLM calls replayed from the recordings under `fixtures/llm/`.

mod experiment;
mod paper;
mod report;
mod stats;
mod svg;

use experiment::Scale;

#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// table1 | fig2-summarization | fig2-grid | fig3-pbf | scaling | all (or any file name
    /// under experiments/ without `.toml`).
    pub experiment: String,
    #[arg(long, value_enum, default_value = "fixture")]
    pub scale: Scale,
}

pub fn run(_args: ReproduceArgs) -> anyhow::Result<()> {
    anyhow::bail!("reproduce: not built yet")
}
