//! The top-K candidate lists a backbone exports and every reranker consumes.
//!
//! One versioned JSON file per (dataset, backbone, seed). It records enough provenance (dataset
//! checksum, model, seed, hyper-parameters) that a stale or foreign file is rejected, and holds
//! the user sets of the paper's protocol: test users whose held-out item is inside their top-K,
//! and disjoint training (and validation) users drawn the same way.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever the layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateFile {
    pub format_version: u32,
    /// Dataset name and [`crate::Dataset::checksum`] the model was trained on.
    pub dataset: String,
    pub dataset_checksum: String,
    /// Backbone name, e.g. `lightgcn` or `sasrec`.
    pub model: String,
    pub seed: u64,
    /// Backbone hyper-parameters, as given to the trainer.
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// List length K (10 in the paper).
    pub k: usize,
    /// Every user's top-K over items not in train+valid, best first (index = dense user id).
    pub lists: Vec<RankedList>,
    /// Users evaluated (held-out item inside their top-K), in sampling order.
    pub test_users: Vec<u32>,
    /// Users the prompt is trained on, disjoint from the test users.
    pub train_users: Vec<u32>,
    /// Users for choosing an epoch without looking at the test users, disjoint from both.
    pub valid_users: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedList {
    pub user: u32,
    /// Dense item ids, best first.
    pub items: Vec<u32>,
    /// Backbone scores, aligned with `items`.
    pub scores: Vec<f32>,
}

impl CandidateFile {
    /// 0-based position of the user's test item in their list, if present.
    pub fn target_position(&self, user: u32, target: u32) -> Option<usize> {
        self.lists[user as usize].items.iter().position(|&i| i == target)
    }
}
