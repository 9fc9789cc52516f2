//! The synthetic generator: deterministic bytes, loadable by the RecBole reader, and built to
//! survive the 5-core untouched with the configured skew and history lengths.

use agp_datasets::synth::{Domain, SynthSpec, SynthStats, write_recbole};
use agp_datasets::{DataError, Dataset, DatasetSource, ItemTextStyle, PrepareOptions};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Writes `spec` where `recbole:<dir>` finds it: a directory named after the dataset.
fn write(spec: &SynthSpec, parent: &Path) -> (PathBuf, SynthStats) {
    let dir = parent.join(&spec.name);
    let stats = write_recbole(spec, &dir).unwrap();
    (dir, stats)
}

fn prepare(dir: &Path, item_text: ItemTextStyle) -> (Dataset, agp_datasets::DatasetStats) {
    let src = DatasetSource::parse(&format!("recbole:{}", dir.display()), None).unwrap();
    let opts = PrepareOptions {
        item_text,
        ..PrepareOptions::default()
    };
    agp_datasets::prepare_with_stats(&src, &opts).unwrap()
}

fn tiny() -> SynthSpec {
    SynthSpec::preset("tiny").unwrap()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (da, sa) = write(&tiny(), a.path());
    let (db, sb) = write(&tiny(), b.path());
    let reseeded = SynthSpec { seed: 7, ..tiny() };
    let (dc, _) = write(&reseeded, c.path());
    assert_eq!(sa.files.len(), 2);
    for suffix in ["inter", "item"] {
        let file = format!("synth-tiny.{suffix}");
        let read = |d: &Path| std::fs::read(d.join(&file)).unwrap();
        assert_eq!(read(&da), read(&db), "{file}");
        assert_ne!(read(&da), read(&dc), "{file}");
    }
    let strip = |s: SynthStats| SynthStats { files: vec![], ..s };
    assert_eq!(strip(sa), strip(sb));
}

#[test]
fn tiny_loads_and_survives_5_core_untouched() {
    let spec = tiny();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, gen_stats) = write(&spec, tmp.path());
    assert_eq!(
        (gen_stats.users, gen_stats.items, gen_stats.interactions),
        (spec.users, spec.items, spec.interactions)
    );
    let (ds, stats) = prepare(&dir, ItemTextStyle::Title);
    assert_eq!(ds.name, "synth-tiny");
    for (side, c) in [("raw", &stats.raw), ("processed", &stats.processed)] {
        assert_eq!(
            (c.users, c.items, c.interactions),
            (spec.users, spec.items, spec.interactions),
            "{side}"
        );
        assert_eq!(c.titled_items_fraction, 1.0, "{side}");
    }
    assert_eq!(stats.duplicates_removed, 0);
    assert_eq!(stats.kcore_removed, 0);
    assert_eq!(stats.kcore_passes, 1);
    assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
    assert_eq!(ds.n_interactions(), spec.interactions);

    // Titles are distinct and shaped like the Movies pattern.
    assert_eq!(
        ds.item_text.iter().collect::<HashSet<_>>().len(),
        ds.n_items()
    );
    assert!(
        ds.item_text
            .iter()
            .all(|t| t.starts_with("The ") && t.ends_with(')')),
        "{:?}",
        &ds.item_text[..3]
    );
    // The rich text carries the brand and the category path.
    let (rich, _) = prepare(&dir, ItemTextStyle::Rich);
    assert!(
        rich.item_text
            .iter()
            .all(|t| t.split("; ").count() == 3 && t.contains("Movies & TV > ")),
        "{:?}",
        &rich.item_text[..3]
    );
}

#[test]
fn timestamps_strictly_increase_per_user() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = write(&tiny(), tmp.path());
    let text = std::fs::read_to_string(dir.join("synth-tiny.inter")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("user_id:token\titem_id:token\trating:float\ttimestamp:float")
    );
    let mut last: Option<(&str, i64)> = None;
    let mut seen_users = HashSet::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "{line}");
        let rating: u8 = f[2].parse().unwrap();
        assert!((1..=5).contains(&rating), "{line}");
        let ts: i64 = f[3].parse().unwrap();
        match last {
            Some((u, prev)) if u == f[0] => assert!(ts > prev, "{line}"),
            // Each user's rows are contiguous.
            _ => assert!(seen_users.insert(f[0].to_owned()), "{line}"),
        }
        last = Some((f[0], ts));
    }
    assert_eq!(seen_users.len(), tiny().users);
}

#[test]
fn popularity_is_skewed_and_histories_respect_the_bounds() {
    let spec = SynthSpec {
        max_history: Some(60),
        ..tiny()
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, gen_stats) = write(&spec, tmp.path());
    let (ds, _) = prepare(&dir, ItemTextStyle::Title);

    let mut deg = vec![0usize; ds.n_items()];
    let mut lens = Vec::new();
    for u in 0..ds.n_users() {
        let mut h = ds.history_before_test(u as u32);
        h.push(ds.test[u]);
        lens.push(h.len());
        for i in h {
            deg[i as usize] += 1;
        }
    }
    deg.sort_unstable_by(|a, b| b.cmp(a));
    let top = ds.n_items().div_ceil(100);
    let share = deg[..top].iter().sum::<usize>() as f64 / ds.n_interactions() as f64;
    // Uniform popularity would give the top 1% of items 1% of the interactions.
    assert!(share > 0.05, "top-1% share {share}");
    assert!((share - gen_stats.top1_share).abs() < 1e-12);
    assert!(gen_stats.gini > 0.3, "gini {}", gen_stats.gini);
    assert_eq!(*deg.last().unwrap(), spec.min_item_users);
    assert_eq!(gen_stats.min_item_users, spec.min_item_users);

    // The configured minimum is reached (a power law piles users up at its floor) and the cap
    // holds.
    assert_eq!(lens.iter().min(), Some(&spec.min_history));
    assert_eq!(gen_stats.min_history, spec.min_history);
    assert!(*lens.iter().max().unwrap() <= 60);
    let at_floor = lens.iter().filter(|&&l| l == spec.min_history).count();
    assert!(at_floor > spec.users / 10, "{at_floor} users at the floor");
}

#[test]
fn other_domains_fill_their_reader_fields() {
    let tmp = tempfile::tempdir().unwrap();
    for (domain, lead, category) in [
        (Domain::Businesses, "city", "Restaurants"),
        (Domain::Books, "author", "fiction"),
    ] {
        let spec = SynthSpec {
            name: format!("synth-{lead}"),
            domain,
            ..tiny()
        };
        let (dir, _) = write(&spec, tmp.path());
        let (ds, stats) = prepare(&dir, ItemTextStyle::Rich);
        assert_eq!(stats.processed.items, spec.items);
        assert_eq!(
            ds.item_text.iter().collect::<HashSet<_>>().len(),
            ds.n_items()
        );
        assert!(ds.item_text.iter().all(|t| t.split("; ").count() == 3));
        assert!(
            ds.item_text.iter().any(|t| t.contains(category)),
            "{domain:?}: {:?}",
            &ds.item_text[..3]
        );
    }
}

#[test]
fn presets_use_the_papers_sizes() {
    let sizes: Vec<(usize, usize)> = ["amz", "yelp", "gr"]
        .iter()
        .map(|p| {
            let s = SynthSpec::preset(p).unwrap();
            s.validate().unwrap();
            assert_eq!((s.min_history, s.min_item_users), (5, 5));
            assert!((1_000_000..=1_100_000).contains(&s.interactions), "{p}");
            (s.users, s.items)
        })
        .collect();
    assert_eq!(
        sizes,
        [(95_000, 43_000), (65_000, 33_000), (13_000, 25_000)]
    );
    let e = SynthSpec::preset("ml").unwrap_err();
    assert!(e.to_string().contains("amz, yelp, gr, tiny"), "{e}");
}

#[test]
fn impossible_specs_name_the_field() {
    let cases = [
        (
            SynthSpec {
                interactions: 1_000,
                ..tiny()
            },
            "interactions",
        ),
        (
            SynthSpec {
                min_history: 2,
                ..tiny()
            },
            "min_history",
        ),
        (
            SynthSpec {
                activity_exponent: 1.0,
                ..tiny()
            },
            "activity_exponent",
        ),
        (
            SynthSpec {
                popularity_exponent: f64::NAN,
                ..tiny()
            },
            "popularity_exponent",
        ),
        (
            SynthSpec {
                popularity_offset: -1.0,
                ..tiny()
            },
            "popularity_offset",
        ),
        (
            SynthSpec {
                name: "../x".into(),
                ..tiny()
            },
            "name",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (spec, field) in cases {
        let e = write_recbole(&spec, tmp.path()).unwrap_err();
        assert!(
            matches!(&e, DataError::InvalidOption { field: f, .. } if *f == field),
            "{field}: {e}"
        );
    }
    // Nothing was written for a rejected spec.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn io_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let e = write_recbole(&tiny(), &blocker.join("synth-tiny")).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
    assert!(e.to_string().contains("not-a-dir"), "{e}");
}
