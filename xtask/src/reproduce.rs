//! `cargo xtask reproduce <experiment>`

#[derive(clap::Args)]
pub struct ReproduceArgs {}

pub fn run(_args: ReproduceArgs) -> anyhow::Result<()> {
    anyhow::bail!("reproduce: not built yet")
}
