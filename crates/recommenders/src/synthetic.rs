//! Small synthetic datasets for tests and benchmarks (here and in downstream crates): no files,
//! fully determined by their arguments.

use agp_datasets::Dataset;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 5 users, 7 items, hand-written: small enough to check by eye.
pub fn tiny() -> Dataset {
    let train: Vec<Vec<u32>> = vec![
        vec![0, 1, 2],
        vec![1, 2],
        vec![3, 4, 0],
        vec![5, 6],
        vec![0, 2, 4, 6],
    ];
    build("tiny", train, vec![3, 0, 5, 4, 1], vec![4, 3, 6, 0, 5])
}

/// `n_users` users in `n_clusters` taste groups; each user interacts with `per_user` distinct
/// items, 80% of them from their group's share of the catalogue. A model that learns anything
/// beats popularity on it, which makes it a real (if easy) training target.
pub fn clustered(
    n_users: usize,
    n_items: usize,
    n_clusters: usize,
    per_user: usize,
    seed: u64,
) -> Dataset {
    assert!(
        n_clusters >= 1 && per_user + 2 <= n_items / n_clusters,
        "catalogue too small"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let block = n_items / n_clusters;
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..n_users {
        let c = u % n_clusters;
        let mut seq: Vec<u32> = Vec::with_capacity(per_user + 2);
        while seq.len() < per_user + 2 {
            let i = if rng.random_bool(0.8) {
                (c * block + rng.random_range(0..block)) as u32
            } else {
                rng.random_range(0..n_items) as u32
            };
            if !seq.contains(&i) {
                seq.push(i);
            }
        }
        test.push(seq.pop().expect("len >= 2"));
        valid.push(seq.pop().expect("len >= 1"));
        train.push(seq);
    }
    let mut ds = build("synthetic-clustered", train, valid, test);
    // Items nobody drew still belong to the catalogue.
    ds.item_ids = (0..n_items).map(|i| format!("i{i}")).collect();
    ds.item_text = ds.item_ids.iter().map(|i| format!("item {i}")).collect();
    ds.checksum = format!("synthetic-{n_users}-{n_items}-{n_clusters}-{per_user}-{seed}");
    ds
}

fn build(name: &str, train: Vec<Vec<u32>>, valid: Vec<u32>, test: Vec<u32>) -> Dataset {
    let n_items = train
        .iter()
        .flatten()
        .chain(&valid)
        .chain(&test)
        .max()
        .map_or(0, |&m| m + 1);
    Dataset {
        name: name.to_owned(),
        checksum: format!("{name}-checksum"),
        user_ids: (0..train.len()).map(|u| format!("u{u}")).collect(),
        item_ids: (0..n_items).map(|i| format!("i{i}")).collect(),
        item_text: (0..n_items).map(|i| format!("item {i}")).collect(),
        train,
        valid,
        test,
    }
}
