//! Blocked (GEMM) evaluation against the per-user reference on adversarial score tables: mass
//! exact ties, near-ties whose last bits depend on the summation order, wide dynamic range,
//! masked targets, empty histories, non-finite and huge vectors. Ranks, top-K lists (scores
//! compared bit for bit), errors and the thread-count independence must all match.

use agp_datasets::Dataset;
use agp_recommenders::eval::{self, Split, reference};
use agp_recommenders::export;
use agp_recommenders::sasrec::kernels;
use agp_recommenders::{DotScorer, Scorer};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a table's scores are summed, mirroring the two backbones.
#[derive(Debug, Clone, Copy)]
enum Sum {
    /// LightGCN: one sequential accumulator.
    Sequential,
    /// SASRec: `kernels::dot`, eight interleaved accumulators.
    Interleaved,
}

/// A dot-product scorer over explicit user and item vectors.
struct Table {
    d: usize,
    users: Vec<f32>,
    items: Vec<f32>,
    sum: Sum,
    /// Like SASRec: an empty history has no vector and scores every item 0.
    empty_history_scores_zero: bool,
}

impl Table {
    fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.sum {
            Sum::Sequential => a.iter().zip(b).map(|(x, y)| x * y).sum(),
            Sum::Interleaved => kernels::dot(a, b),
        }
    }
}

impl Scorer for Table {
    fn n_items(&self) -> usize {
        self.items.len() / self.d
    }

    fn score_user(&self, user: u32, history: &[u32], out: &mut [f32]) {
        if self.empty_history_scores_zero && history.is_empty() {
            out.fill(0.0);
            return;
        }
        let u = &self.users[user as usize * self.d..(user as usize + 1) * self.d];
        for (o, e) in out.iter_mut().zip(self.items.chunks_exact(self.d)) {
            *o = self.dot(u, e);
        }
    }

    fn as_dot(&self) -> Option<&dyn DotScorer> {
        Some(self)
    }
}

impl DotScorer for Table {
    fn dim(&self) -> usize {
        self.d
    }
    fn item_vectors(&self) -> &[f32] {
        &self.items
    }
    fn has_user_vector(&self, history: &[u32]) -> bool {
        !(self.empty_history_scores_zero && history.is_empty())
    }
    fn user_vectors(&self, users: &[u32], _histories: &[&[u32]], out: &mut [f32]) {
        for (&u, row) in users.iter().zip(out.chunks_exact_mut(self.d)) {
            row.copy_from_slice(&self.users[u as usize * self.d..(u as usize + 1) * self.d]);
        }
    }
    fn score(&self, user_vector: &[f32], item_vector: &[f32]) -> f32 {
        self.dot(user_vector, item_vector)
    }
}

/// How the vectors are drawn.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// Components from {−1, −½, 0, ½, 1, 2}: sums are exact, so ties are everywhere.
    Palette,
    /// Every item a permutation of one base vector and users constant: equal in real
    /// arithmetic, different in the last bits depending on the summation order.
    Permutations,
    /// Items copied from a pool of five random vectors: exact ties between identical items.
    Pool,
    /// Random mantissas times 2^[−20, 20]: wide dynamic range.
    Wide,
}

fn vectors(rng: &mut ChaCha8Rng, n: usize, d: usize, values: Values, is_user: bool) -> Vec<f32> {
    const PALETTE: [f32; 6] = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0];
    match values {
        Values::Palette => (0..n * d)
            .map(|_| PALETTE[rng.random_range(0..6)])
            .collect(),
        Values::Permutations if is_user => (0..n)
            .flat_map(|_| {
                let c: f32 = rng.random_range(0.1..3.0);
                std::iter::repeat_n(c, d)
            })
            .collect(),
        Values::Permutations => {
            let base: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut out = Vec::with_capacity(n * d);
            for _ in 0..n {
                let mut v = base.clone();
                v.shuffle(rng);
                out.extend(v);
            }
            out
        }
        Values::Pool if !is_user => {
            let pool: Vec<f32> = (0..5 * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            (0..n)
                .flat_map(|_| {
                    let p = rng.random_range(0..5);
                    pool[p * d..(p + 1) * d].to_vec()
                })
                .collect()
        }
        Values::Pool => (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect(),
        Values::Wide => (0..n * d)
            .map(|_| rng.random_range(-1.0f32..1.0) * 2f32.powi(rng.random_range(-20..=20)))
            .collect(),
    }
}

fn dataset(rng: &mut ChaCha8Rng, n_users: usize, n_items: usize, max_hist: usize) -> Dataset {
    let mut train = Vec::with_capacity(n_users);
    for _ in 0..n_users {
        let len = rng.random_range(0..=max_hist);
        // Duplicates allowed: histories are sequences, repeats included.
        train.push(
            (0..len)
                .map(|_| rng.random_range(0..n_items as u32))
                .collect(),
        );
    }
    let mut held_out = || -> Vec<u32> {
        (0..n_users)
            .map(|_| rng.random_range(0..n_items as u32))
            .collect()
    };
    let (valid, test) = (held_out(), held_out());
    Dataset {
        name: "ties".into(),
        checksum: "ties".into(),
        user_ids: (0..n_users).map(|u| format!("u{u}")).collect(),
        item_ids: (0..n_items).map(|i| format!("i{i}")).collect(),
        item_text: (0..n_items).map(|i| format!("item {i}")).collect(),
        train,
        valid,
        test,
    }
}

/// Lists compared with scores as bits, so −0/+0 or a last-bit difference shows.
fn list_bits(lists: &[agp_datasets::candidates::RankedList]) -> Vec<(u32, Vec<u32>, Vec<u32>)> {
    lists
        .iter()
        .map(|l| {
            (
                l.user,
                l.items.clone(),
                l.scores.iter().map(|s| s.to_bits()).collect(),
            )
        })
        .collect()
}

fn assert_same(table: &Table, ds: &Dataset, k: usize) {
    for split in [Split::Valid, Split::Test] {
        let fast = eval::rank_targets(table, ds, split).unwrap();
        let slow = reference::rank_targets(table, ds, split).unwrap();
        assert_eq!(fast, slow, "{split:?} ranks");
    }
    let fast = export::top_k_lists(table, ds, k).unwrap();
    let slow = reference::top_k_lists(table, ds, k).unwrap();
    assert_eq!(list_bits(&fast), list_bits(&slow), "top-{k} lists");
}

fn values_strategy() -> impl Strategy<Value = Values> {
    prop_oneof![
        Just(Values::Palette),
        Just(Values::Permutations),
        Just(Values::Pool),
        Just(Values::Wide),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Several blocks (256 users) and tiles (1024 items) are crossed by the larger cases.
    #[test]
    fn blocked_equals_per_user(
        seed in any::<u64>(),
        n_users in 1usize..600,
        n_items in 1usize..2600,
        d in prop_oneof![1usize..=9, Just(16usize), Just(64usize)],
        values in values_strategy(),
        interleaved in any::<bool>(),
        empty_zero in any::<bool>(),
        k in 0usize..14,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ds = dataset(&mut rng, n_users, n_items, 30.min(n_items));
        let table = Table {
            d,
            users: vectors(&mut rng, n_users, d, values, true),
            items: vectors(&mut rng, n_items, d, values, false),
            sum: if interleaved { Sum::Interleaved } else { Sum::Sequential },
            empty_history_scores_zero: empty_zero,
        };
        assert_same(&table, &ds, k);
    }
}

/// The near-tie construction really does produce scores whose last bits depend on the
/// summation order (so the rescoring is exercised, not skipped by luck), and the GEMM itself
/// disagrees with the per-user dot products on some of them.
#[test]
fn permuted_items_tie_in_reals_but_not_in_floats() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (d, n) = (64, 2000);
    let users = vectors(&mut rng, 4, d, Values::Permutations, true);
    let items = vectors(&mut rng, n, d, Values::Permutations, false);
    let table = Table {
        d,
        users: users.clone(),
        items: items.clone(),
        sum: Sum::Sequential,
        empty_history_scores_zero: false,
    };
    let mut gemm = vec![0f32; 4 * n];
    kernels::gemm(4, d, n, &users, false, &items, true, 0.0, &mut gemm);
    let mut distinct = std::collections::BTreeSet::new();
    let mut disagree = 0;
    for u in 0..4 {
        let uv = &users[u * d..(u + 1) * d];
        for i in 0..n {
            let s = table.dot(uv, &items[i * d..(i + 1) * d]);
            distinct.insert(s.to_bits());
            disagree += usize::from(s != gemm[u * n + i]);
        }
    }
    assert!(distinct.len() > 8, "{} distinct scores", distinct.len());
    assert!(disagree > 0, "GEMM agreed with every dot product");

    let ds = dataset(&mut rng, 4, n, 20);
    assert_same(&table, &ds, 10);
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (n_users, n_items, d) = (700, 1500, 24);
    let ds = dataset(&mut rng, n_users, n_items, 25);
    let table = Table {
        d,
        users: vectors(&mut rng, n_users, d, Values::Wide, true),
        items: vectors(&mut rng, n_items, d, Values::Pool, false),
        sum: Sum::Interleaved,
        empty_history_scores_zero: false,
    };
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                eval::rank_targets(&table, &ds, Split::Test).unwrap(),
                list_bits(&export::top_k_lists(&table, &ds, 10).unwrap()),
            )
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(5));
}

/// Users the bound cannot cover take the per-user path and get its answer, errors included.
#[test]
fn huge_and_non_finite_vectors_fall_back_to_the_per_user_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n_users, n_items, d) = (300, 400, 8);
    let ds = dataset(&mut rng, n_users, n_items, 10);
    let mut table = Table {
        d,
        users: vectors(&mut rng, n_users, d, Values::Palette, true),
        items: vectors(&mut rng, n_items, d, Values::Palette, false),
        sum: Sum::Sequential,
        empty_history_scores_zero: false,
    };
    // Large but finite: ‖u‖·‖e‖ beyond the overflow guard, scores still finite.
    for x in &mut table.users[7 * d..8 * d] {
        *x *= 1e18;
    }
    for x in &mut table.items[3 * d..4 * d] {
        *x *= 1e13;
    }
    assert_same(&table, &ds, 10);

    // One user with an infinite component: both paths report the same NonFinite error.
    table.users[261 * d] = f32::INFINITY;
    let fast = eval::rank_targets(&table, &ds, Split::Test).unwrap_err();
    let slow = reference::rank_targets(&table, &ds, Split::Test).unwrap_err();
    assert_eq!(fast.to_string(), slow.to_string());
    assert!(
        matches!(fast, eval::EvalError::NonFinite { user: 261, .. }),
        "{fast}"
    );
    let fast = export::top_k_lists(&table, &ds, 5).unwrap_err();
    let slow = reference::top_k_lists(&table, &ds, 5).unwrap_err();
    assert_eq!(fast.to_string(), slow.to_string());

    // An out-of-range history item is the same error too.
    table.users[261 * d] = 0.0;
    let mut bad = ds.clone();
    bad.train[42].push(n_items as u32 + 3);
    let fast = eval::rank_targets(&table, &bad, Split::Valid).unwrap_err();
    let slow = reference::rank_targets(&table, &bad, Split::Valid).unwrap_err();
    assert_eq!(fast, slow);
    // And an out-of-range target.
    let mut bad = ds.clone();
    bad.valid[299] = n_items as u32;
    let fast = eval::rank_targets(&table, &bad, Split::Valid).unwrap_err();
    let slow = reference::rank_targets(&table, &bad, Split::Valid).unwrap_err();
    assert_eq!(fast, slow);
}
