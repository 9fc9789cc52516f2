//! One SASRec training step and one epoch on the bundled MovieLens latest-small, with the
//! reference settings for it (maxlen 200, dropout 0.2) and the sparse-data ones (maxlen 50,
//! dropout 0.5). `RAYON_NUM_THREADS` picks the thread count.

use agp_recommenders::sasrec::{SasRec, SasRecConfig, Trainer};
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let ds = agp_datasets::bundled_default(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    )
    .expect("bundled dataset");
    let mut group = c.benchmark_group("sasrec_ml_latest_small");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for (maxlen, dropout) in [(200, 0.2), (50, 0.5)] {
        let cfg = SasRecConfig {
            maxlen,
            dropout_rate: dropout,
            ..SasRecConfig::default()
        };
        let mut model = SasRec::new(ds.n_items(), &cfg).expect("valid config");
        let mut trainer = Trainer::new(&model, &ds).expect("trainable dataset");
        group.bench_function(format!("step_maxlen{maxlen}"), |b| {
            b.iter(|| trainer.step(&mut model))
        });
        group.bench_function(format!("epoch_maxlen{maxlen}"), |b| {
            b.iter(|| trainer.epoch(&mut model))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
