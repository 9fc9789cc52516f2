//! Properties of preprocessing on random interaction logs, checked against a direct
//! re-implementation of the rules.

use agp_datasets::{DatasetSource, ItemTextStyle, PrepareOptions, prepare};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Rows of (user, item, timestamp), written as an Amazon 2014 ratings CSV.
fn write(rows: &[(u8, u8, u8)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text: String = rows
        .iter()
        .map(|(u, i, t)| format!("U{u},I{i},5.0,{t}\n"))
        .collect();
    std::fs::write(dir.path().join("ratings_Movies_and_TV.csv"), text).unwrap();
    dir
}

/// The rules spelled out naively: earliest (timestamp, file position) per pair, then k-core
/// (users ≥ max(k,3), items ≥ k) until stable, then each user's items in time order.
fn reference(rows: &[(u8, u8, u8)], k: usize) -> BTreeMap<String, Vec<String>> {
    let mut first: HashMap<(u8, u8), (u8, usize)> = HashMap::new();
    for (pos, &(u, i, t)) in rows.iter().enumerate() {
        let e = first.entry((u, i)).or_insert((t, pos));
        if (t, pos) < *e {
            *e = (t, pos);
        }
    }
    let mut alive: HashSet<(u8, u8)> = first.keys().copied().collect();
    loop {
        let mut du: HashMap<u8, usize> = HashMap::new();
        let mut di: HashMap<u8, usize> = HashMap::new();
        for &(u, i) in &alive {
            *du.entry(u).or_default() += 1;
            *di.entry(i).or_default() += 1;
        }
        let keep: HashSet<(u8, u8)> = alive
            .iter()
            .copied()
            .filter(|(u, i)| du[u] >= k.max(3) && di[i] >= k)
            .collect();
        if keep.len() == alive.len() {
            break;
        }
        alive = keep;
    }
    let mut out: BTreeMap<String, Vec<(u8, usize, u8)>> = BTreeMap::new();
    for &(u, i) in &alive {
        let (t, pos) = first[&(u, i)];
        out.entry(format!("U{u}")).or_default().push((t, pos, i));
    }
    out.into_iter()
        .map(|(u, mut v)| {
            v.sort();
            (u, v.into_iter().map(|(_, _, i)| format!("I{i}")).collect())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn split_matches_the_rules(
        rows in prop::collection::vec((0u8..12, 0u8..10, 0u8..20), 1..200),
        k in 0usize..5,
    ) {
        let dir = write(&rows);
        let src = DatasetSource::parse("amazon-movies-tv", Some(dir.path().to_owned())).unwrap();
        let opts = PrepareOptions { k_core: k as u32, item_text: ItemTextStyle::Title, min_rating: None };
        let want = reference(&rows, k);
        match prepare(&src, &opts) {
            Ok(ds) => {
                let got: BTreeMap<String, Vec<String>> = ds
                    .user_ids
                    .iter()
                    .enumerate()
                    .map(|(u, name)| {
                        let mut s = ds.history_before_test(u as u32);
                        s.push(ds.test[u]);
                        (name.clone(), s.iter().map(|&i| ds.item_ids[i as usize].clone()).collect())
                    })
                    .collect();
                prop_assert_eq!(got, want);
                // Deterministic: a second run gives the identical dataset.
                prop_assert_eq!(prepare(&src, &opts).unwrap(), ds);
            }
            Err(e) => {
                prop_assert!(want.is_empty(), "error {} but the rules keep {:?}", e, want);
            }
        }
    }
}
