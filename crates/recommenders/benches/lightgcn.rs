//! One LightGCN training step (B = 2048) and one epoch on the bundled MovieLens latest-small,
//! with the official hyper-parameters. `RAYON_NUM_THREADS=1 cargo bench -p agp-recommenders
//! --bench lightgcn` for the single-core figure the PyTorch peer is compared with.

use agp_recommenders::lightgcn::{LightGcnConfig, NormAdj, Trainer, normal_init, sample_epoch};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn bench(c: &mut Criterion) {
    let dataset = agp_datasets::bundled_default(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    )
    .expect("the bundled dataset is committed");
    let config = LightGcnConfig::default();
    let adj = NormAdj::from_dataset(&dataset);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let ego = normal_init(&mut rng, adj.n_nodes() * config.dim, config.init_std);
    let mut trainer = Trainer::new(&adj, config.clone(), ego);
    let samples = sample_epoch(&adj, &mut rng);
    let batch = &samples[..config.batch_size.min(samples.len())];

    let mut g = c.benchmark_group(format!(
        "lightgcn/{} ({} nodes, {} nnz, d={}, K={})",
        dataset.name,
        adj.n_nodes(),
        adj.nnz(),
        config.dim,
        config.layers
    ));
    g.bench_function("step", |b| b.iter(|| trainer.step(batch)));
    g.sample_size(10);
    g.bench_function("epoch", |b| b.iter(|| trainer.epoch(&mut rng)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
