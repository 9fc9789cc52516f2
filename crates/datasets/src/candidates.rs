//! The top-K candidate lists a backbone exports and every reranker consumes.
//!
//! One versioned JSON file per (dataset, backbone, seed). It records enough provenance (dataset
//! checksum, model, seed, hyper-parameters) that a stale or foreign file is rejected, and holds
//! the user sets of the paper's protocol: test users whose held-out item is inside their top-K,
//! and disjoint training (and validation) users drawn the same way.
//!
//! Lists are computed with the history a reranker sees at test time (train + valid items), and
//! those items are excluded from the list, so `lists[u]` contains `test[u]` exactly when the
//! backbone "hit" for user `u`.

use crate::Dataset;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// How the user sets below were drawn: what was asked for, how many users were eligible,
    /// and whether a shortfall was accepted.
    pub sampling: UserSampling,
    /// Every user's top-K over items not in train+valid, best first (index = dense user id).
    pub lists: Vec<RankedList>,
    /// Users evaluated (held-out item inside their top-K), in sampling order.
    pub test_users: Vec<u32>,
    /// Users the prompt is trained on, disjoint from the test users.
    pub train_users: Vec<u32>,
    /// Users for choosing an epoch without looking at the test users, disjoint from both.
    pub valid_users: Vec<u32>,
}

/// The record of how test/train/valid users were drawn from the eligible ("hit") users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSampling {
    /// Seed of the user draw (the same as [`CandidateFile::seed`] unless set apart).
    pub seed: u64,
    pub requested_test: usize,
    pub requested_train: usize,
    pub requested_valid: usize,
    /// Users whose test item is inside their top-K: the pool all three sets are drawn from.
    pub eligible: usize,
    /// All users with a list (the dataset's user count).
    pub total_users: usize,
    /// True when fewer eligible users existed than requested and the caller accepted taking
    /// what exists; the set sizes actually taken are the lengths of the user vectors.
    pub took_available: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedList {
    pub user: u32,
    /// Dense item ids, best first.
    pub items: Vec<u32>,
    /// Backbone scores, aligned with `items`.
    pub scores: Vec<f32>,
}

/// Why a candidate file could not be read or does not belong to the dataset at hand.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: not a candidate file: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{path}: format version {found}, this build reads version {FORMAT_VERSION}; re-export it"
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "candidate file is for dataset {file_dataset} ({file_checksum}), but the dataset is \
         {dataset} ({checksum}); it is stale or foreign, re-export it"
    )]
    Stale {
        file_dataset: String,
        file_checksum: String,
        dataset: String,
        checksum: String,
    },
    #[error("candidate file is inconsistent: {0}")]
    Inconsistent(String),
}

impl CandidateFile {
    /// 0-based position of the user's test item in their list, if present.
    pub fn target_position(&self, user: u32, target: u32) -> Option<usize> {
        self.lists[user as usize]
            .items
            .iter()
            .position(|&i| i == target)
    }

    /// The canonical serialisation: pretty JSON with a trailing newline. Same content gives the
    /// same bytes (maps are ordered, floats print in their shortest round-trip form).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("candidate files always serialise");
        s.push('\n');
        s
    }

    /// Writes [`Self::to_json`] to `path`, creating parent folders.
    pub fn write(&self, path: &Path) -> Result<(), CandidateError> {
        let io = |source| CandidateError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, self.to_json()).map_err(io)
    }

    /// Reads a candidate file, rejecting other format versions with a clear message.
    pub fn read(path: &Path) -> Result<Self, CandidateError> {
        let text = std::fs::read_to_string(path).map_err(|source| CandidateError::Io {
            path: path.to_owned(),
            source,
        })?;
        let parse_err = |e: serde_json::Error| CandidateError::Parse {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message: crate::error::json_error_text(&e),
        };
        // Check the version before the full layout so an old file says "old", not "missing field".
        #[derive(Deserialize)]
        struct Head {
            format_version: u32,
        }
        let head: Head = serde_json::from_str(&text).map_err(parse_err)?;
        if head.format_version != FORMAT_VERSION {
            return Err(CandidateError::Version {
                path: path.to_owned(),
                found: head.format_version,
            });
        }
        serde_json::from_str(&text).map_err(parse_err)
    }

    /// Checks that the file was made from `dataset` (same checksum) and that its ids, lists and
    /// user sets are consistent with it: what a reranker should call before trusting the file.
    pub fn check_against(&self, dataset: &Dataset) -> Result<(), CandidateError> {
        if self.dataset_checksum != dataset.checksum {
            return Err(CandidateError::Stale {
                file_dataset: self.dataset.clone(),
                file_checksum: self.dataset_checksum.clone(),
                dataset: dataset.name.clone(),
                checksum: dataset.checksum.clone(),
            });
        }
        let bad = |m: String| Err(CandidateError::Inconsistent(m));
        if self.lists.len() != dataset.n_users() {
            return bad(format!(
                "{} lists for {} users",
                self.lists.len(),
                dataset.n_users()
            ));
        }
        for (u, list) in self.lists.iter().enumerate() {
            if list.user as usize != u {
                return bad(format!("list {u} is labelled user {}", list.user));
            }
            if list.items.len() != list.scores.len() || list.items.len() > self.k {
                return bad(format!(
                    "user {u}: {} items, {} scores, k = {}",
                    list.items.len(),
                    list.scores.len(),
                    self.k
                ));
            }
            if let Some(&i) = list
                .items
                .iter()
                .find(|&&i| i as usize >= dataset.n_items())
            {
                return bad(format!(
                    "user {u}: item {i} out of range (n_items {})",
                    dataset.n_items()
                ));
            }
        }
        let mut seen = vec![false; dataset.n_users()];
        for (set, users) in [
            ("test", &self.test_users),
            ("train", &self.train_users),
            ("valid", &self.valid_users),
        ] {
            for &u in users {
                let Some(slot) = seen.get_mut(u as usize) else {
                    return bad(format!("{set} user {u} out of range"));
                };
                if std::mem::replace(slot, true) {
                    return bad(format!("{set} user {u} appears in more than one user set"));
                }
                if self.target_position(u, dataset.test[u as usize]).is_none() {
                    return bad(format!(
                        "{set} user {u}: test item not in the top-{} list",
                        self.k
                    ));
                }
            }
        }
        Ok(())
    }

    /// The reference code's `{model}_Ranking.json`: raw user id → raw item ids of the top-K list,
    /// best first, for every user. Keys are sorted so the bytes are stable.
    pub fn reference_ranking_json(&self, dataset: &Dataset) -> String {
        let map: BTreeMap<&str, Vec<&str>> = self
            .lists
            .iter()
            .map(|l| {
                let items = l
                    .items
                    .iter()
                    .map(|&i| dataset.item_ids[i as usize].as_str())
                    .collect();
                (dataset.user_ids[l.user as usize].as_str(), items)
            })
            .collect();
        let mut s = serde_json::to_string(&map).expect("string maps always serialise");
        s.push('\n');
        s
    }

    /// The reference code's per-backbone interaction file (`{task}_inter.csv_{K}_{Model}`): a
    /// RecBole atomic TSV with one row per selected user, training users first then test users
    /// (the reference trainer slices it that way), each row the user's history followed by the
    /// test item. Raw ids, space separated.
    pub fn reference_inter_tsv(&self, dataset: &Dataset) -> String {
        let mut s = String::from("user_id:token\titem_id_list:token_seq\n");
        for &u in self.train_users.iter().chain(&self.test_users) {
            let ui = u as usize;
            s.push_str(&dataset.user_ids[ui]);
            s.push('\t');
            let mut seq = dataset.history_before_test(u);
            seq.push(dataset.test[ui]);
            let ids: Vec<&str> = seq
                .iter()
                .map(|&i| dataset.item_ids[i as usize].as_str())
                .collect();
            s.push_str(&ids.join(" "));
            s.push('\n');
        }
        s
    }
}
