//! SASRec learns, is reproducible across thread counts, and survives a save/reload.

use agp_datasets::Dataset;
use agp_recommenders::eval::{Split, rank_targets};
use agp_recommenders::model_file::ModelFileError;
use agp_recommenders::sasrec::{SasRec, SasRecConfig, SasRecError, Trainer, sampled_eval};
use agp_recommenders::{Backbone, ModelStore, Popularity, Scorer, synthetic};

/// Every user walks the catalogue in order from a random start: the next item is a function of
/// the last one, which a sequential model must learn and popularity cannot.
fn successor_data(n_users: usize, n_items: u32, len: usize) -> Dataset {
    let mut ds = synthetic::clustered(n_users, n_items as usize, 1, len, 5);
    for u in 0..n_users {
        let start = (u as u32 * 7) % n_items;
        let seq: Vec<u32> = (0..len as u32 + 2).map(|k| (start + k) % n_items).collect();
        ds.train[u] = seq[..len].to_vec();
        ds.valid[u] = seq[len];
        ds.test[u] = seq[len + 1];
    }
    ds.checksum = format!("successor-{n_users}-{n_items}-{len}");
    ds
}

fn small_config() -> SasRecConfig {
    SasRecConfig {
        hidden_units: 16,
        maxlen: 10,
        dropout_rate: 0.1,
        lr: 5e-3,
        batch_size: 32,
        num_epochs: 60,
        eval_every: 20,
        patience: 0,
        seed: 11,
        ..SasRecConfig::default()
    }
}

#[test]
fn overfits_a_deterministic_successor_pattern() {
    let ds = successor_data(120, 40, 12);
    let (model, report) = SasRec::train(&ds, &small_config(), |_| {}).unwrap();
    let first = report.losses()[0];
    let last = *report.losses().last().unwrap();
    assert!(last < 0.3 * first, "loss {first:.4} -> {last:.4}");
    let ranks = rank_targets(&model, &ds, Split::Test).unwrap();
    let pop = rank_targets(&Popularity::fit(&ds), &ds, Split::Test).unwrap();
    assert!(ranks.hr(1) > 0.9, "HR@1 {:.3}", ranks.hr(1));
    assert!(
        ranks.hr(1) > pop.hr(1) + 0.5,
        "popularity HR@1 {:.3}",
        pop.hr(1)
    );
    let sampled = sampled_eval(&model, &ds, Split::Test, 100, 1).unwrap();
    assert_eq!(sampled.users, 120);
    assert!(sampled.hr10 > 0.95, "sampled HR@10 {:.3}", sampled.hr10);
}

#[test]
fn one_and_two_threads_give_identical_parameters() {
    let ds = synthetic::clustered(70, 60, 3, 9, 2);
    let cfg = SasRecConfig {
        num_epochs: 3,
        dropout_rate: 0.5,
        ..small_config()
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut model = SasRec::new(ds.n_items(), &cfg).unwrap();
            let mut t = Trainer::new(&model, &ds).unwrap();
            let losses: Vec<f64> = (0..3).map(|_| t.epoch(&mut model)).collect();
            (model.params().to_vec(), losses)
        })
    };
    let (p1, l1) = run(1);
    let (p2, l2) = run(2);
    assert_eq!(l1, l2);
    assert!(
        p1.iter().zip(&p2).all(|(a, b)| a.to_bits() == b.to_bits()),
        "parameters differ"
    );
    let (p3, _) = run(1);
    assert_eq!(p1, p3, "same seed, same result");
}

#[test]
fn save_and_reload_scores_identically_and_rejects_other_data() {
    let ds = synthetic::clustered(50, 40, 2, 8, 3);
    let cfg = SasRecConfig {
        num_epochs: 2,
        ..small_config()
    };
    let (model, report) = SasRec::train(&ds, &cfg, |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let path = store.path_for(&cfg, &ds);
    assert!(path.starts_with(dir.path()));
    model.save(&path, &ds, &report).unwrap();
    let (back, back_report) = SasRec::load(&path, &ds).unwrap().unwrap();
    assert_eq!(back.params(), model.params());
    assert_eq!(back_report, report, "the report travels in the model file");
    let (mut a, mut b) = (vec![0.0; ds.n_items()], vec![0.0; ds.n_items()]);
    model.score_user(0, &ds.train[0], &mut a);
    back.score_user(0, &ds.train[0], &mut b);
    assert_eq!(a, b);

    let mut other = ds.clone();
    other.checksum = "something-else".into();
    let err = SasRec::load(&path, &other).unwrap_err();
    assert!(matches!(err, ModelFileError::Format { .. }), "{err}");
    assert!(err.to_string().contains("something-else"), "{err}");

    let other_cfg = SasRecConfig { seed: 12, ..cfg };
    assert_ne!(
        store.path_for(&other_cfg, &ds),
        path,
        "seed is part of the key"
    );

    std::fs::write(&path, b"SASREC01garbage").unwrap();
    let err = SasRec::load(&path, &ds).unwrap_err();
    assert!(matches!(err, ModelFileError::Format { .. }), "{err}");
}

/// The store gives back the run's report whether it trains now or loads, and a bad file is an
/// error naming it rather than a silent retrain.
#[test]
fn the_store_returns_the_same_report_cold_and_warm() {
    let ds = synthetic::clustered(50, 40, 2, 8, 3);
    let cfg = SasRecConfig {
        num_epochs: 4,
        eval_every: 1,
        patience: 1,
        ..small_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let mut seen = Vec::new();
    let cold = store
        .train_or_load(&cfg, &ds, false, &mut |e| seen.push(e.epoch))
        .unwrap();
    assert!(!cold.cached);
    assert_eq!(seen, (1..=cold.report.epochs_run()).collect::<Vec<_>>());
    assert_eq!(cold.report.valid_curve().len(), cold.report.epochs_run());
    let warm = store
        .train_or_load(&cfg, &ds, false, &mut |_| panic!("retrained"))
        .unwrap();
    assert!(warm.cached);
    assert_eq!(warm.report, cold.report);
    assert_eq!(warm.model.name(), "sasrec");
    let retrained = store.train_or_load(&cfg, &ds, true, &mut |_| {}).unwrap();
    assert!(!retrained.cached);
    assert_eq!(retrained.report.losses(), cold.report.losses());

    let path = store.path_for(&cfg, &ds);
    std::fs::write(&path, b"AGPMODEL").unwrap();
    let err = store
        .train_or_load(&cfg, &ds, false, &mut |_| panic!("retrained"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn bad_config_names_the_field_and_range() {
    let cfg = SasRecConfig {
        dropout_rate: 1.0,
        ..SasRecConfig::default()
    };
    let err = SasRec::new(10, &cfg).unwrap_err().to_string();
    assert!(
        err.contains("dropout_rate") && err.contains("[0, 1)"),
        "{err}"
    );
    let cfg = SasRecConfig {
        maxlen: 0,
        ..SasRecConfig::default()
    };
    assert!(
        SasRec::new(10, &cfg)
            .unwrap_err()
            .to_string()
            .contains("maxlen")
    );
}

#[test]
fn dense_data_gets_the_ml1m_settings() {
    let sparse = synthetic::clustered(30, 60, 2, 8, 1);
    assert_eq!(SasRecConfig::for_dataset(&sparse).maxlen, 50);
    let dense = successor_data(10, 300, 150);
    let cfg = SasRecConfig::for_dataset(&dense);
    assert_eq!((cfg.maxlen, cfg.dropout_rate), (200, 0.2));
}

#[test]
fn no_trainable_user_is_a_clear_error() {
    let ds = synthetic::tiny();
    let mut one = ds.clone();
    for t in &mut one.train {
        t.truncate(1);
    }
    let err = SasRec::train(&one, &small_config(), |_| {}).unwrap_err();
    assert!(matches!(err, SasRecError::NoTrainingUsers { .. }), "{err}");
}
