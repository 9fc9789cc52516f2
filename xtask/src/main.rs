//! `cargo xtask`: the project's front door. Run `cargo xtask --help`.

#![forbid(unsafe_code)]

mod ci;
mod compare;
mod data;
mod model;
mod reproduce;
mod sim;
mod train;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "agp-bench tasks: data, train, model, reproduce, compare, power, ci"
)]
enum Cmd {
    /// Fetch, prepare and describe datasets.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Train a backbone (or reload it from the store) and export its top-K candidate lists.
    Train(train::Args),
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
    /// Pair methods of two or more reports cell by cell on their shared users (paired Δ, CIs, Holm).
    Compare(compare::CompareArgs),
    /// The users needed to detect an NDCG@10 difference to Base, from a report's per-user spread.
    Power(compare::PowerArgs),
}

/// A failed command prints one message, its causes on the same line, and exits 1. The
/// backtrace anyhow would capture under `RUST_BACKTRACE=1` is for bugs, so it is shown only with
/// `AGP_BACKTRACE=1`; refusing a paid run without `--yes` is not a bug.
fn main() -> std::process::ExitCode {
    let result = match Cmd::parse() {
        Cmd::Data(c) => data::run(c),
        Cmd::Train(a) => train::run(a),
        Cmd::Model(c) => model::run(c),
        Cmd::Reproduce(a) => reproduce::run(a),
        Cmd::Ci(a) => ci::run(a),
        Cmd::SimApi(a) => sim::run(a),
        Cmd::Compare(a) => compare::compare(a),
        Cmd::Power(a) => compare::power(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if std::env::var_os("AGP_BACKTRACE").is_some_and(|v| v == "1") {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
