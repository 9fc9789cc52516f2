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
pub mod method;
pub mod paper;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod run;
pub mod stats;
pub mod svg;
pub mod train;

pub use experiment::{Experiment, Scale};
pub use method::{Method, MethodKind, Methods};
pub use run::{ReproduceOptions, run_experiments};

use std::path::{Path, PathBuf};

/// An agp-bench checkout: where experiments, fixtures, caches and reports live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The checkout the tools work in: `AGP_BENCH_ROOT` when set, else the nearest ancestor of
    /// the current directory that is a checkout (it holds `experiments/scales.toml` and a
    /// `Cargo.toml`), else the current directory. Found at run time only, so a binary built in
    /// one checkout and run in another (say, with a shared `CARGO_TARGET_DIR`) reads and writes
    /// the one it runs in. The only place anything looks for a checkout: the crates below take
    /// their directories from here.
    pub fn discover() -> Self {
        if let Some(root) = std::env::var_os("AGP_BENCH_ROOT").filter(|r| !r.is_empty()) {
            return Self::at(root);
        }
        let is_checkout = |d: &Path| {
            d.join("experiments/scales.toml").is_file() && d.join("Cargo.toml").is_file()
        };
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        match cwd.ancestors().find(|d| is_checkout(d)) {
            Some(found) => Self::at(found),
            None => Self::at(cwd),
        }
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

    /// Raw dataset dumps, one directory per dataset (where `data fetch` puts them).
    pub fn raw_cache(&self) -> PathBuf {
        self.cache().join("raw")
    }

    /// A dataset spec with its raw files where this checkout keeps them.
    pub fn dataset_source(
        &self,
        spec: &str,
    ) -> Result<agp_datasets::DatasetSource, agp_datasets::DataError> {
        agp_datasets::DatasetSource::parse_in(spec, &self.fixtures(), &self.raw_cache())
    }

    /// Pinned local models: `AGP_MODELS_DIR` when set, else `.models/` in the checkout.
    pub fn models_dir(&self) -> PathBuf {
        match std::env::var_os("AGP_MODELS_DIR").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => self.root.join(".models"),
        }
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
