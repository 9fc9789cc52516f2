//! SASRec on the bundled MovieLens latest-small, at the fixture scale `reproduce` uses.
//! Ignored by default (tens of seconds); run with `cargo test -p agp-recommenders --test
//! sasrec_movielens -- --ignored --nocapture`. `SASREC_EPOCHS` overrides the epoch count.

use agp_recommenders::Popularity;
use agp_recommenders::eval::{Split, rank_targets};
use agp_recommenders::sasrec::{SasRec, SasRecConfig, sampled_eval};

#[test]
#[ignore = "trains on ml-latest-small; tens of seconds"]
fn beats_popularity_on_ml_latest_small() {
    let ds = agp_datasets::bundled_default(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    )
    .expect("bundled dataset");
    let epochs = std::env::var("SASREC_EPOCHS")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(40);
    let cfg = SasRecConfig {
        num_epochs: epochs,
        eval_every: 10.min(epochs),
        patience: 0,
        ..SasRecConfig::for_dataset(&ds)
    };
    let t = std::time::Instant::now();
    let (model, report) = SasRec::train(&ds, &cfg, |_| {}).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let full = rank_targets(&model, &ds, Split::Test).unwrap();
    let pop = rank_targets(&Popularity::fit(&ds), &ds, Split::Test).unwrap();
    let sampled = sampled_eval(&model, &ds, Split::Test, 100, 2020).unwrap();
    eprintln!(
        "{} users {} items; maxlen {} dropout {}; {} epochs in {secs:.1}s ({:.3} s/epoch train), best {:?}",
        ds.n_users(),
        ds.n_items(),
        cfg.maxlen,
        cfg.dropout_rate,
        report.epochs_run(),
        report.seconds_per_epoch(),
        report.best_epoch
    );
    eprintln!(
        "loss {:?}",
        report
            .losses()
            .iter()
            .map(|l| format!("{l:.3}"))
            .collect::<Vec<_>>()
    );
    eprintln!("valid NDCG@10 {:?}", report.valid_curve());
    eprintln!(
        "full: NDCG@10 {:.4} HR@10 {:.4} NDCG@20 {:.4} hits@10 {}; popularity NDCG@10 {:.4} hits@10 {}; sampled HR@10 {:.4} NDCG@10 {:.4}",
        full.ndcg(10),
        full.hr(10),
        full.ndcg(20),
        full.hits(10),
        pop.ndcg(10),
        pop.hits(10),
        sampled.hr10,
        sampled.ndcg10
    );
    assert!(full.ndcg(10) > pop.ndcg(10), "SASRec must beat popularity");
}
