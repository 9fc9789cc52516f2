//! LightGCN on the bundled MovieLens latest-small: a short run must learn something real (beat
//! popularity on the test items) and the candidate export must hold up on real data.

use agp_recommenders::export::{ExportOptions, Provenance, export_candidates};
use agp_recommenders::lightgcn::{self, LightGcnConfig};

#[test]
fn short_training_beats_popularity_and_exports() {
    let dataset = agp_datasets::bundled_default(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    )
    .expect("the bundled dataset is committed");
    let config = LightGcnConfig {
        epochs: 30,
        eval_every: 10,
        ..LightGcnConfig::default()
    };
    let (model, report) = lightgcn::train(&dataset, &config, |_| {}).unwrap();
    assert_eq!(report.epochs_run(), 30);
    let m = lightgcn::test_summary(&dataset, &model).unwrap();
    assert!(
        m["ndcg@20"] > 1.2 * m["popularity_ndcg@20"],
        "LightGCN ndcg@20 {} vs popularity {}",
        m["ndcg@20"],
        m["popularity_ndcg@20"]
    );

    // ml-latest-small has far fewer hits than the paper's 300 + 100 users: a clear error by
    // default, a recorded proportional split when asked.
    let provenance = Provenance::new("lightgcn", config.seed).with_hyperparameters(&config);
    let err = export_candidates(
        &model,
        &dataset,
        provenance.clone(),
        &ExportOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("of 671 users have their test item"),
        "{err}"
    );
    let options = ExportOptions {
        take_available: true,
        ..ExportOptions::default()
    };
    let file = export_candidates(&model, &dataset, provenance, &options).unwrap();
    file.check_against(&dataset).unwrap();
    assert!(file.sampling.took_available);
    assert_eq!(
        file.test_users.len() + file.train_users.len(),
        file.sampling.eligible
    );
    assert_eq!(file.hyperparameters["epochs"], 30);
}
