//! Datasets: raw dumps in, chronological leave-one-out splits with item text out.
//!
//! Every downstream crate sees a [`Dataset`] (internal dense ids, per-user chronological
//! training sequence, one validation and one test item per user, a prompt text per item) and,
//! once a backbone has run, a [`candidates::CandidateFile`].
//!
//! ```no_run
//! let ds = agp_datasets::bundled_default(std::path::Path::new("fixtures"))?; // MovieLens latest-small, 5-core
//! println!("{} users, {} items", ds.n_users(), ds.n_items());
//! # Ok::<(), agp_datasets::DataError>(())
//! ```
//!
//! Preprocessing (see [`prepare`]): every rating is an implicit interaction; repeated
//! (user, item) pairs keep the earliest; iterative k-core; chronological leave-one-out where
//! equal timestamps keep their order in the raw file; dense user ids in order of first
//! appearance in the raw files, item ids in order of first appearance along the users' sequences.

#![forbid(unsafe_code)]

pub mod cache;
pub mod candidates;
mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod formats;
pub mod io;
pub mod preprocess;
pub mod raw;
mod source;
pub mod stats;
pub mod synth;
pub mod zip;

pub use cache::{Cache, CacheOutcome, prepare_cached};
pub use error::{DataError, QUOTE_LIMIT, excerpt};
pub use source::{
    DatasetSource, ItemTextStyle, PrepareOptions, SourceKind, bundled_default, checksum, item_text,
    load_raw, prepare, prepare_with_stats, raw_files,
};
pub use stats::{Counts, DatasetStats};

use serde::{Deserialize, Serialize};

/// A processed dataset split leave-one-out.
///
/// Ids are dense: users `0..n_users`, items `0..n_items`. For every user the last interaction
/// (by time) is `test[u]`, the second-to-last `valid[u]`, the rest is `train[u]` in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Short name, e.g. `ml-latest-small`.
    pub name: String,
    /// sha256 over the raw input files and the preprocessing options: the cache key, and what
    /// candidate files record so a stale file is detected.
    pub checksum: String,
    /// Raw user id for each dense user id.
    pub user_ids: Vec<String>,
    /// Raw item id for each dense item id.
    pub item_ids: Vec<String>,
    /// Text shown to the LLM for each item (title by default).
    pub item_text: Vec<String>,
    /// Chronological training items per user (everything but the last two).
    pub train: Vec<Vec<u32>>,
    /// Validation item per user (second-to-last interaction).
    pub valid: Vec<u32>,
    /// Test item per user (last interaction).
    pub test: Vec<u32>,
}

impl Dataset {
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// Number of interactions after preprocessing (train + valid + test).
    pub fn n_interactions(&self) -> usize {
        self.train.iter().map(Vec::len).sum::<usize>() + self.valid.len() + self.test.len()
    }

    /// The history a reranker may see for the test item: train followed by the valid item.
    pub fn history_before_test(&self, user: u32) -> Vec<u32> {
        let u = user as usize;
        let mut h = self.train[u].clone();
        h.push(self.valid[u]);
        h
    }
}
