//! `cargo xtask data ...`

#[derive(clap::Subcommand)]
pub enum DataCmd {}

pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {}
}
