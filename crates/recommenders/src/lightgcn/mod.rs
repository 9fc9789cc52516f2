//! LightGCN (He et al., SIGIR'20) exactly as the official PyTorch code (gusye1234/LightGCN-PyTorch):
//! symmetric normalised adjacency without self-loops, K propagation layers, the mean of the layer
//! outputs, BPR softplus loss, L2 on the layer-0 rows of the batch divided by the batch size,
//! Adam, N(0, 0.1) initialisation, and per epoch one uniformly drawn user per training pair.
//!
//! Plain Rust with a hand-written gradient (checked against finite differences in the tests).
//! Every floating-point sum has a fixed order, so a seed gives the same model for any number
//! of threads.

mod config;
mod graph;
mod model;
mod sampler;
mod store;
mod train;

pub use config::*;
pub use graph::NormAdj;
pub use model::*;
pub use sampler::*;
pub use train::*;

use crate::adam::{Adam, AdamOptions};
pub use crate::backbone::{EpochLog, REPORT_KS, TrainReport};

use crate::backbone::{self, Fit, FitError, Schedule};
use crate::eval::{self, EvalError, Ranks, Split};
use crate::{DotScorer, Popularity, Scorer};
use agp_datasets::Dataset;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Writes the split in the official code's text format (`train.txt`: `uid i1 i2 …` with the
/// distinct training items; `valid.txt` and `test.txt`: `uid item`), so a PyTorch peer trains on
/// exactly this graph and evaluates on exactly these held-out items.
pub fn write_official_split(dataset: &Dataset, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let adj = NormAdj::from_dataset(dataset);
    let mut train = String::new();
    for u in 0..dataset.n_users() as u32 {
        train.push_str(&u.to_string());
        for i in adj.positives(u) {
            train.push(' ');
            train.push_str(&i.to_string());
        }
        train.push('\n');
    }
    let held_out = |items: &[u32]| -> String {
        items
            .iter()
            .enumerate()
            .map(|(u, i)| format!("{u} {i}\n"))
            .collect()
    };
    std::fs::write(dir.join("train.txt"), train)?;
    std::fs::write(dir.join("valid.txt"), held_out(&dataset.valid))?;
    std::fs::write(dir.join("test.txt"), held_out(&dataset.test))?;
    std::fs::write(dir.join("n_items.txt"), format!("{}\n", dataset.n_items()))
}

#[cfg(test)]
mod tests;
