//! The agp-bench harness as a library: what `cargo xtask reproduce` runs, callable from Rust.
//!
//! - [`experiment`]: an experiment file (`experiments/*.toml`) merged with its scale's settings,
//!   every method row checked into a typed [`agp::MethodConfig`] when it loads.
//! - [`pipeline`]: dataset → backbone (trained or reloaded) → candidate file → every method
//!   under every LLM, as report cells.
//! - [`run`]: the whole experiment (plan, backbones, all cells at once over shared LLMs,
//!   reports or `--check`).
//! - [`train`]: one cached training path for both backbones.
//! - [`report`], [`stats`], [`svg`], [`paper`]: what a run writes and compares against.
//! - [`compare`]: two runs' methods paired on the users they share, and the users an effect
//!   needs (`cargo xtask compare`, `cargo xtask power`).
//!
//! Every path comes from a [`Workspace`] found at run time, never from where the code was built.

#![forbid(unsafe_code)]

pub mod compare;
pub mod experiment;
pub mod external;
pub mod inputs;
pub mod paper;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod run;
pub mod stats;
pub mod svg;
pub mod train;

pub use experiment::{Experiment, Scale};
pub use run::{ReproduceOptions, run_experiments};

use std::path::{Path, PathBuf};

/// An agp-bench checkout: where experiments, fixtures, caches and reports live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The checkout around the current directory (see [`agp_datasets::workspace_root`]):
    /// `AGP_BENCH_ROOT` when set, else the nearest ancestor holding `experiments/scales.toml`.
    pub fn discover() -> Self {
        Self::at(agp_datasets::workspace_root())
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `experiments/<name>.toml`, or `name` itself when it is a path to a `.toml` file.
    pub fn experiment_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.extension().is_some_and(|e| e == "toml") {
            return p.to_path_buf();
        }
        self.root.join("experiments").join(format!("{name}.toml"))
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join(".cache")
    }

    /// Trained backbones, one store for `train` and `reproduce`.
    pub fn models(&self) -> PathBuf {
        self.cache().join("models")
    }

    pub fn datasets_cache(&self) -> agp_datasets::Cache {
        agp_datasets::Cache::new(self.cache().join("datasets"))
    }

    /// Checkpoints and event logs of each method run.
    pub fn runs(&self) -> PathBuf {
        self.cache().join("runs")
    }

    pub fn reports(&self) -> PathBuf {
        self.root.join("reports")
    }

    pub fn fixtures(&self) -> PathBuf {
        self.root.join("fixtures")
    }

    /// The bundled recordings the default replays.
    pub fn recordings(&self) -> PathBuf {
        self.fixtures().join("llm/recordings.jsonl")
    }

    /// Where a live model's answers are kept when no recordings file is given: every paid
    /// answer is stored before it is used, so an interrupted or repeated run never pays again.
    pub fn live_recordings(&self, spec: &str) -> PathBuf {
        let slug: String = spec
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        self.cache().join(format!("llm/{slug}.jsonl"))
    }
}
