//! `cargo xtask model ...`

#[derive(clap::Subcommand)]
pub enum ModelCmd {}

pub fn run(cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {}
}
