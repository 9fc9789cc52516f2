//! The bundled MovieLens latest-small with popularity candidate lists: the driver's input
//! checks, Base metrics against the lists themselves, and a short AGP run with the fake model.

mod common;

use std::sync::Arc;

use agp::{AgpConfig, MethodConfig, RunOptions, ndcg_at_10, run_method};
use agp_recommenders::Popularity;
use agp_recommenders::export::{ExportOptions, Provenance, export_candidates};
use common::FakeModel;

#[tokio::test]
async fn bundled_movielens_with_popularity_lists() {
    let ds = agp_datasets::bundled_default(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    )
    .expect("bundled ml-latest-small");
    let options = ExportOptions {
        n_test: 30,
        n_train: 10,
        n_valid: 10,
        seed: 7,
        take_available: true,
        ..ExportOptions::default()
    };
    let cands = export_candidates(
        &Popularity::fit(&ds),
        &ds,
        Provenance::new("popularity", 0),
        &options,
    )
    .expect("candidate export");

    let base = run_method(
        &MethodConfig::Base(Default::default()),
        &ds,
        &cands,
        Arc::new(FakeModel::default()),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let expected: f64 = cands
        .test_users
        .iter()
        .map(|&u| ndcg_at_10(cands.target_position(u, ds.test[u as usize]).unwrap() + 1))
        .sum::<f64>()
        / cands.test_users.len() as f64;
    assert_eq!(base.n_test_users, cands.test_users.len());
    assert!((base.last.test.ndcg10 - expected).abs() < 1e-12);

    let cfg = MethodConfig::Agp(AgpConfig {
        epochs: 1,
        batch_size: 5,
        ..AgpConfig::default()
    });
    let model = Arc::new(FakeModel::default());
    let agp = run_method(&cfg, &ds, &cands, model, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(agp.n_train_users, cands.train_users.len());
    assert_eq!(agp.epochs.len(), 1);
    assert_eq!(agp.last.users.len(), cands.test_users.len());
    // Every answer of the fake carries the markers and a full permutation.
    assert_eq!(
        agp.parse_counts
            .keys()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>(),
        ["Exact"]
    );
}
