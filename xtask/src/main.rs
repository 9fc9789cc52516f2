//! `cargo xtask`: the project's front door. Run `cargo xtask --help`.

mod ci;
mod data;
mod model;
mod reproduce;
mod sim;
mod train;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "agp-bench tasks: data, train, model, reproduce, ci"
)]
enum Cmd {
    /// Fetch, prepare and describe datasets.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Train a backbone and export its top-K candidate lists.
    #[command(subcommand)]
    Train(train::TrainCmd),
    /// Fetch and inspect local GGUF models.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Reproduce the paper's tables and figures.
    Reproduce(reproduce::ReproduceArgs),
    /// The README's test command: set-up, lints, tests, and a check of every committed report.
    Ci(ci::CiArgs),
    /// A simulated OpenAI-compatible API on loopback with deterministic answers and injected
    /// faults, for rehearsing paid runs offline (never a source of committed results).
    SimApi(sim::SimArgs),
}

fn main() -> anyhow::Result<()> {
    match Cmd::parse() {
        Cmd::Data(c) => data::run(c),
        Cmd::Train(c) => train::run(c),
        Cmd::Model(c) => model::run(c),
        Cmd::Reproduce(a) => reproduce::run(a),
        Cmd::Ci(a) => ci::run(a),
        Cmd::SimApi(a) => sim::run(a),
    }
}
