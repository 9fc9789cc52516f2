//! The paper's candidate export: every user's top-K over items not in train+valid, and the
//! seeded draw of test / train / validation users whose held-out item is inside that list.
//!
//! All three user sets come from the same pool of eligible ("hit") users and are disjoint: the
//! pool is shuffled once with the seed and cut into test, then train, then validation users.
//! Because test users are taken first, asking for 100 or 700 training users leaves the test
//! users unchanged (the scaling study compares like with like).

use crate::Scorer;
use crate::eval::{self, EvalError};
use agp_datasets::Dataset;
use agp_datasets::candidates::{CandidateFile, FORMAT_VERSION, RankedList, UserSampling};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// How many users of each kind to draw, and from which lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportOptions {
    /// List length K (10 in the paper).
    pub k: usize,
    /// Test users (300 in the paper).
    pub n_test: usize,
    /// Training users for the prompt (100 in the paper, 700 for the scaling study).
    pub n_train: usize,
    /// Validation users (none in the paper).
    pub n_valid: usize,
    /// Seed of the user draw.
    pub seed: u64,
    /// When fewer eligible users exist than requested, take what exists (split in proportion
    /// to the request and recorded in the file) instead of failing.
    pub take_available: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            k: 10,
            n_test: 300,
            n_train: 100,
            n_valid: 0,
            seed: 2020,
            take_available: false,
        }
    }
}

/// What the file records about the model that produced the lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub model: String,
    /// Training seed of the model.
    pub seed: u64,
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
}

impl Provenance {
    pub fn new(model: impl Into<String>, seed: u64) -> Self {
        Self {
            model: model.into(),
            seed,
            hyperparameters: BTreeMap::new(),
        }
    }

    /// Takes the hyper-parameters from any serialisable config struct (its top-level fields).
    pub fn with_hyperparameters(mut self, config: &impl serde::Serialize) -> Self {
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(config) {
            self.hyperparameters = map.into_iter().collect();
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("list length k must be at least 1")]
    ZeroK,
    #[error(
        "only {eligible} of {total_users} users have their test item in their top-{k} list, but \
         {requested} were requested (test {n_test} + train {n_train} + valid {n_valid}); ask for \
         fewer users, or set take_available (CLI: --take-available) to split the {eligible} that exist"
    )]
    TooFewEligible {
        eligible: usize,
        total_users: usize,
        k: usize,
        requested: usize,
        n_test: usize,
        n_train: usize,
        n_valid: usize,
    },
}

/// Every user's top-`k` over items not in their train+valid history, with scores, best first.
/// Identical to [`eval::reference::top_k_lists`]; dot-product backbones get there by blocked
/// GEMM scoring (see [`eval`]).
pub fn top_k_lists<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    k: usize,
) -> Result<Vec<RankedList>, EvalError> {
    Ok(eval::top_k_per_user(scorer, dataset, k)?
        .into_iter()
        .enumerate()
        .map(|(u, top)| {
            let (items, scores) = top.into_iter().unzip();
            RankedList {
                user: u as u32,
                items,
                scores,
            }
        })
        .collect())
}

/// Builds the candidate file: lists for every user, then the seeded user draw. Same scorer,
/// dataset and options give a byte-identical [`CandidateFile::to_json`].
pub fn export_candidates<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    provenance: Provenance,
    options: &ExportOptions,
) -> Result<CandidateFile, ExportError> {
    if options.k == 0 {
        return Err(ExportError::ZeroK);
    }
    let lists = top_k_lists(scorer, dataset, options.k)?;
    candidates_from_lists(lists, dataset, provenance, options)
}

/// The candidate file for precomputed `lists` (one per user, in user order, each of length
/// `options.k` at most): the seeded user draw and the provenance around them.
/// [`export_candidates`] is this on [`top_k_lists`].
pub fn candidates_from_lists(
    lists: Vec<RankedList>,
    dataset: &Dataset,
    provenance: Provenance,
    options: &ExportOptions,
) -> Result<CandidateFile, ExportError> {
    if options.k == 0 {
        return Err(ExportError::ZeroK);
    }
    let eligible: Vec<u32> = lists
        .iter()
        .filter(|l| l.items.contains(&dataset.test[l.user as usize]))
        .map(|l| l.user)
        .collect();
    let (n_test, n_train, n_valid) = set_sizes(eligible.len(), dataset.n_users(), options)?;
    let drawn = draw(eligible.clone(), options.seed);
    let (test_users, rest) = drawn.split_at(n_test);
    let (train_users, rest) = rest.split_at(n_train);
    let valid_users = &rest[..n_valid];
    Ok(CandidateFile {
        format_version: FORMAT_VERSION,
        dataset: dataset.name.clone(),
        dataset_checksum: dataset.checksum.clone(),
        model: provenance.model,
        seed: provenance.seed,
        hyperparameters: provenance.hyperparameters,
        k: options.k,
        sampling: UserSampling {
            seed: options.seed,
            requested_test: options.n_test,
            requested_train: options.n_train,
            requested_valid: options.n_valid,
            eligible: eligible.len(),
            total_users: dataset.n_users(),
            took_available: n_test + n_train + n_valid
                < options.n_test + options.n_train + options.n_valid,
        },
        lists,
        test_users: test_users.to_vec(),
        train_users: train_users.to_vec(),
        valid_users: valid_users.to_vec(),
    })
}

/// Set sizes to take from `eligible` users: the request when it fits, otherwise (only with
/// `take_available`) the request scaled down proportionally, leftovers going to test, then
/// train, then valid.
fn set_sizes(
    eligible: usize,
    total_users: usize,
    o: &ExportOptions,
) -> Result<(usize, usize, usize), ExportError> {
    let requested = o.n_test + o.n_train + o.n_valid;
    if eligible >= requested {
        return Ok((o.n_test, o.n_train, o.n_valid));
    }
    if !o.take_available {
        return Err(ExportError::TooFewEligible {
            eligible,
            total_users,
            k: o.k,
            requested,
            n_test: o.n_test,
            n_train: o.n_train,
            n_valid: o.n_valid,
        });
    }
    let mut sizes = [o.n_test, o.n_train, o.n_valid].map(|n| n * eligible / requested);
    let mut left = eligible - sizes.iter().sum::<usize>();
    for (size, want) in sizes.iter_mut().zip([o.n_test, o.n_train, o.n_valid]) {
        let add = left.min(want - *size);
        *size += add;
        left -= add;
    }
    Ok((sizes[0], sizes[1], sizes[2]))
}

/// Fisher–Yates shuffle of the (ascending) eligible users with a ChaCha8 stream seeded by `seed`.
fn draw(mut users: Vec<u32>, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..users.len()).rev() {
        let j = rng.random_range(0..=i);
        users.swap(i, j);
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Popularity;
    use crate::synthetic;
    use std::collections::HashSet;

    fn opts(n_test: usize, n_train: usize, n_valid: usize) -> ExportOptions {
        ExportOptions {
            n_test,
            n_train,
            n_valid,
            ..ExportOptions::default()
        }
    }

    #[test]
    fn lists_exclude_history_and_sets_are_disjoint_hits() {
        let ds = synthetic::clustered(200, 60, 3, 8, 1);
        let pop = Popularity::fit(&ds);
        let file = export_candidates(&pop, &ds, Provenance::new("popularity", 0), &opts(10, 5, 3))
            .unwrap();
        file.check_against(&ds).unwrap();
        for l in &file.lists {
            let h = ds.history_before_test(l.user);
            assert_eq!(l.items.len(), 10);
            assert!(l.items.iter().all(|i| !h.contains(i)), "user {}", l.user);
            assert!(l.scores.windows(2).all(|w| w[0] >= w[1]));
        }
        let all: HashSet<u32> = file
            .test_users
            .iter()
            .chain(&file.train_users)
            .chain(&file.valid_users)
            .copied()
            .collect();
        assert_eq!(all.len(), 18);
        assert_eq!(
            file.sampling.eligible,
            (0..200u32)
                .filter(|&u| file.target_position(u, ds.test[u as usize]).is_some())
                .count()
        );
        assert!(!file.sampling.took_available);
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_users() {
        let ds = synthetic::clustered(300, 60, 3, 8, 2);
        let pop = Popularity::fit(&ds);
        let make = |seed| {
            let o = ExportOptions {
                seed,
                ..opts(10, 5, 0)
            };
            export_candidates(&pop, &ds, Provenance::new("popularity", 0), &o).unwrap()
        };
        assert_eq!(make(7).to_json(), make(7).to_json());
        assert_ne!(make(7).test_users, make(8).test_users);
        // Test users do not depend on how many training users are asked for.
        let more = export_candidates(
            &pop,
            &ds,
            Provenance::new("popularity", 0),
            &ExportOptions {
                seed: 7,
                ..opts(10, 20, 0)
            },
        )
        .unwrap();
        assert_eq!(more.test_users, make(7).test_users);
        assert_eq!(more.train_users[..5], make(7).train_users[..]);
    }

    #[test]
    fn shortfall_fails_with_numbers_unless_take_available() {
        let ds = synthetic::clustered(100, 60, 3, 8, 3);
        let pop = Popularity::fit(&ds);
        let err =
            export_candidates(&pop, &ds, Provenance::new("p", 0), &opts(300, 100, 0)).unwrap_err();
        let ExportError::TooFewEligible {
            eligible,
            requested,
            total_users,
            ..
        } = err.clone()
        else {
            panic!("{err}")
        };
        assert_eq!((requested, total_users), (400, 100));
        assert!(
            err.to_string()
                .contains(&format!("only {eligible} of 100 users")),
            "{err}"
        );

        let o = ExportOptions {
            take_available: true,
            ..opts(300, 100, 0)
        };
        let file = export_candidates(&pop, &ds, Provenance::new("p", 0), &o).unwrap();
        assert!(file.sampling.took_available);
        assert_eq!(file.test_users.len() + file.train_users.len(), eligible);
        assert_eq!(
            file.test_users.len(),
            (300 * eligible).div_ceil(400).max(300 * eligible / 400)
        );
        file.check_against(&ds).unwrap();
    }

    #[test]
    fn set_sizes_split_in_proportion() {
        let o = ExportOptions {
            take_available: true,
            ..opts(300, 100, 0)
        };
        assert_eq!(set_sizes(40, 671, &o).unwrap(), (30, 10, 0));
        assert_eq!(set_sizes(41, 671, &o).unwrap(), (31, 10, 0));
        assert_eq!(set_sizes(400, 671, &o).unwrap(), (300, 100, 0));
        let o = ExportOptions {
            take_available: true,
            ..opts(3, 1, 1)
        };
        assert_eq!(set_sizes(2, 9, &o).unwrap(), (2, 0, 0));
    }

    #[test]
    fn reference_layouts_use_raw_ids() {
        let ds = synthetic::clustered(60, 60, 3, 8, 4);
        let pop = Popularity::fit(&ds);
        let o = ExportOptions {
            take_available: true,
            ..opts(4, 2, 0)
        };
        let file = export_candidates(&pop, &ds, Provenance::new("p", 0), &o).unwrap();
        let ranking: BTreeMap<String, Vec<String>> =
            serde_json::from_str(&file.reference_ranking_json(&ds)).unwrap();
        assert_eq!(ranking.len(), 60);
        let u0 = &ranking["u0"];
        assert_eq!(u0[0], ds.item_ids[file.lists[0].items[0] as usize]);
        let tsv = file.reference_inter_tsv(&ds);
        let rows: Vec<&str> = tsv.lines().collect();
        assert_eq!(rows[0], "user_id:token\titem_id_list:token_seq");
        assert_eq!(
            rows.len(),
            1 + file.train_users.len() + file.test_users.len()
        );
        let first = file.train_users[0] as usize;
        let last_item = rows[1]
            .split('\t')
            .nth(1)
            .unwrap()
            .split(' ')
            .next_back()
            .unwrap();
        assert_eq!(last_item, ds.item_ids[ds.test[first] as usize]);
    }
}
