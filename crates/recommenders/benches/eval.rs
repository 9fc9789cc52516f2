//! One full-ranking evaluation pass at the paper's Amazon size (the `amz` synthetic preset:
//! ≈94K users × 39K items after 5-core), blocked GEMM path (`new`) against the per-user
//! reference (`old`), for LightGCN (d = 64, random propagated embeddings) and an untrained
//! SASRec (the reference settings for this data). Scores do not need a trained model: the work
//! is the same.
//!
//! `new` runs over every user. The per-user path takes about a minute and a half per pass, so
//! `old` runs over `AGP_EVAL_BENCH_OLD_USERS` users spread over the set (default: a sixteenth); both
//! report users/s, and a full pass is `users / throughput`. `AGP_EVAL_BENCH_FULL_OLD=1` also
//! times one complete `old` pass per model with a plain clock before the samples.
//!
//! `cargo bench -p agp-recommenders --bench eval`

#[path = "common/amz.rs"]
mod amz;
use agp_datasets::Dataset;
use agp_recommenders::eval::{self, Split, reference};
use agp_recommenders::export;
use agp_recommenders::lightgcn::{LightGcn, LightGcnConfig, NormAdj, normal_init};
use agp_recommenders::sasrec::{SasRec, SasRecConfig};
use amz::amz;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

/// Every `ds.n_users() / n`-th user, renumbered from 0, so history lengths are those of the
/// whole set. LightGCN then scores subset user j with user j's vector: other scores, same work.
fn spread_users(ds: &Dataset, n: usize) -> Dataset {
    let step = (ds.n_users() / n).max(1);
    let pick = |v: &Vec<u32>| v.iter().step_by(step).take(n).copied().collect::<Vec<_>>();
    Dataset {
        user_ids: ds.user_ids.iter().step_by(step).take(n).cloned().collect(),
        train: ds.train.iter().step_by(step).take(n).cloned().collect(),
        valid: pick(&ds.valid),
        test: pick(&ds.test),
        ..ds.clone()
    }
}

fn bench(c: &mut Criterion) {
    let ds = amz();
    let n_users = ds.n_users();
    let old_users = std::env::var("AGP_EVAL_BENCH_OLD_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n_users / 16)
        .clamp(1, n_users);
    let subset = spread_users(&ds, old_users);

    let config = LightGcnConfig::default();
    let adj = NormAdj::from_dataset(&ds);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let ego = normal_init(&mut rng, adj.n_nodes() * config.dim, config.init_std);
    let lightgcn = LightGcn::from_ego(config.clone(), &adj, ego);
    let sasrec_config = SasRecConfig::for_dataset(&ds);
    let sasrec = SasRec::new(ds.n_items(), &sasrec_config).expect("valid config");

    if std::env::var_os("AGP_EVAL_BENCH_FULL_OLD").is_some() {
        for (name, new, old) in [
            (
                "lightgcn",
                time(|| eval::rank_targets(&lightgcn, &ds, Split::Test).unwrap()),
                time(|| reference::rank_targets(&lightgcn, &ds, Split::Test).unwrap()),
            ),
            (
                "sasrec",
                time(|| eval::rank_targets(&sasrec, &ds, Split::Test).unwrap()),
                time(|| reference::rank_targets(&sasrec, &ds, Split::Test).unwrap()),
            ),
        ] {
            eprintln!(
                "{name}: one full test pass, new {new:.2} s, old {old:.2} s, speed-up {:.1}x",
                old / new
            );
        }
    }

    let mut g = c.benchmark_group(format!(
        "eval/{} ({} users, {} items)",
        ds.name,
        n_users,
        ds.n_items()
    ));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30));
    let label = |model: &str, d: usize| format!("{model} d={d}");

    g.throughput(Throughput::Elements(n_users as u64));
    g.bench_function(
        BenchmarkId::new("rank/new", label("lightgcn", config.dim)),
        |b| b.iter(|| eval::rank_targets(&lightgcn, &ds, Split::Test).unwrap()),
    );
    g.bench_function(
        BenchmarkId::new("top10/new", label("lightgcn", config.dim)),
        |b| b.iter(|| export::top_k_lists(&lightgcn, &ds, 10).unwrap()),
    );
    g.bench_function(
        BenchmarkId::new("rank/new", label("sasrec", sasrec_config.hidden_units)),
        |b| b.iter(|| eval::rank_targets(&sasrec, &ds, Split::Test).unwrap()),
    );

    g.throughput(Throughput::Elements(old_users as u64));
    g.bench_function(
        BenchmarkId::new("rank/old", label("lightgcn", config.dim)),
        |b| b.iter(|| reference::rank_targets(&lightgcn, &subset, Split::Test).unwrap()),
    );
    g.bench_function(
        BenchmarkId::new("top10/old", label("lightgcn", config.dim)),
        |b| b.iter(|| reference::top_k_lists(&lightgcn, &subset, 10).unwrap()),
    );
    g.bench_function(
        BenchmarkId::new("rank/old", label("sasrec", sasrec_config.hidden_units)),
        |b| b.iter(|| reference::rank_targets(&sasrec, &subset, Split::Test).unwrap()),
    );
    g.finish();
}

fn time<T>(f: impl FnOnce() -> T) -> f64 {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed().as_secs_f64()
}

criterion_group!(benches, bench);
criterion_main!(benches);
