//! The bundled MovieLens latest-small default: loads, satisfies the split invariants, and is
//! reproducible.

use agp_datasets::{DatasetSource, ItemTextStyle, PrepareOptions, bundled_default, prepare};
use std::collections::HashSet;

#[test]
fn bundled_default_satisfies_split_invariants() {
    let ds =
        bundled_default(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"))
            .unwrap();
    assert_eq!(ds.name, "ml-latest-small");
    assert_eq!(ds.checksum.len(), 64);
    let (nu, ni) = (ds.n_users(), ds.n_items());
    assert!(nu > 600 && nu <= 671, "users {nu}");
    assert!(ni > 1000 && ni < 9066, "items {ni}");
    assert_eq!(ds.item_text.len(), ni);
    assert_eq!(ds.train.len(), nu);
    assert_eq!(ds.valid.len(), nu);
    assert_eq!(ds.test.len(), nu);
    // 5-core holds on the processed data.
    let mut item_deg = vec![0usize; ni];
    for u in 0..nu {
        let mut seen = HashSet::new();
        let all: Vec<u32> = ds
            .history_before_test(u as u32)
            .into_iter()
            .chain([ds.test[u]])
            .collect();
        assert!(all.len() >= 5, "user {u} has {} interactions", all.len());
        for &i in &all {
            assert!((i as usize) < ni);
            assert!(seen.insert(i), "user {u} repeats item {i}");
            item_deg[i as usize] += 1;
        }
    }
    assert!(item_deg.iter().all(|&d| d >= 5));
    assert!(ds.n_interactions() > 80_000);
    // Raw ids round-trip and titles are the GroupLens ones.
    let toy = ds.item_ids.iter().position(|id| id == "1").unwrap();
    assert_eq!(ds.item_text[toy], "Toy Story (1995)");
    assert_eq!(ds.user_ids[0], "1");
}

#[test]
fn test_item_is_the_latest_rating() {
    // User 2's ratings sorted by (timestamp, file order) in the raw file.
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/ml-latest-small/ratings.csv"),
    )
    .unwrap();
    let mut rows: Vec<(i64, usize, String)> = text
        .lines()
        .skip(1)
        .enumerate()
        .filter_map(|(n, l)| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0] == "2").then(|| (f[3].parse().unwrap(), n, f[1].to_owned()))
        })
        .collect();
    rows.sort();
    let ds =
        bundled_default(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"))
            .unwrap();
    let u = ds.user_ids.iter().position(|id| id == "2").unwrap();
    let latest = &rows.last().unwrap().2;
    assert_eq!(&ds.item_ids[ds.test[u] as usize], latest);
}

#[test]
fn same_input_same_dataset_and_options_change_checksum() {
    let a =
        bundled_default(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"))
            .unwrap();
    let b =
        bundled_default(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"))
            .unwrap();
    assert_eq!(a, b);
    let rich = prepare(
        &DatasetSource::bundled(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
        ),
        &PrepareOptions {
            item_text: ItemTextStyle::Rich,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(rich.checksum, a.checksum);
    assert_eq!(rich.train, a.train);
    let toy = rich.item_ids.iter().position(|id| id == "1").unwrap();
    assert_eq!(
        rich.item_text[toy],
        "Toy Story (1995); Adventure, Animation, Children, Comedy, Fantasy"
    );
}
