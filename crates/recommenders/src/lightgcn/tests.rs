use super::*;
use crate::synthetic;

/// Dense f64 re-implementation of the official forward pass and loss, written independently of
/// the sparse code: Â from its definition, matrix powers, mean of layers, BPR + L2.
fn reference_loss(ds: &Dataset, cfg: &LightGcnConfig, ego: &[f64], batch: &[Triple]) -> f64 {
    let (nu, ni, d) = (ds.n_users(), ds.n_items(), cfg.dim);
    let n = nu + ni;
    let mut a = vec![vec![0f64; n]; n];
    for (u, items) in ds.train.iter().enumerate() {
        for &i in items {
            a[u][nu + i as usize] = 1.0;
            a[nu + i as usize][u] = 1.0;
        }
    }
    let deg: Vec<f64> = a.iter().map(|r| r.iter().sum()).collect();
    let inv = |x: f64| if x == 0.0 { 0.0 } else { 1.0 / x.sqrt() };
    let mut e = ego.to_vec();
    let mut sum = ego.to_vec();
    for _ in 0..cfg.layers {
        let mut next = vec![0f64; n * d];
        for r in 0..n {
            for c in 0..n {
                let w = a[r][c] * inv(deg[r]) * inv(deg[c]);
                for j in 0..d {
                    next[r * d + j] += w * e[c * d + j];
                }
            }
        }
        for (s, x) in sum.iter_mut().zip(&next) {
            *s += x;
        }
        e = next;
    }
    let f: Vec<f64> = sum.iter().map(|s| s / (cfg.layers as f64 + 1.0)).collect();
    let dotr = |x: usize, y: usize| (0..d).map(|j| f[x * d + j] * f[y * d + j]).sum::<f64>();
    let sq = |x: usize| (0..d).map(|j| ego[x * d + j].powi(2)).sum::<f64>();
    let b = batch.len() as f64;
    let mut bpr = 0.0;
    let mut reg = 0.0;
    for &(u, p, q) in batch {
        let (u, p, q) = (u as usize, nu + p as usize, nu + q as usize);
        let x = dotr(u, q) - dotr(u, p);
        bpr += x.exp().ln_1p();
        reg += sq(u) + sq(p) + sq(q);
    }
    bpr / b + cfg.decay * 0.5 * reg / b
}

fn small_config(layers: usize) -> LightGcnConfig {
    LightGcnConfig {
        dim: 4,
        layers,
        decay: 0.05,
        init_std: 0.5,
        ..LightGcnConfig::default()
    }
}

#[test]
fn gradient_matches_finite_differences() {
    let ds = synthetic::tiny();
    let adj = NormAdj::from_dataset(&ds);
    // A repeated user and a repeated item, so per-occurrence terms are exercised.
    let batch: Vec<Triple> = vec![(0, 1, 5), (2, 4, 1), (0, 2, 6), (4, 6, 3)];
    for layers in [0, 1, 3] {
        let cfg = small_config(layers);
        let mut rng = ChaCha8Rng::seed_from_u64(layers as u64);
        let ego = normal_init(&mut rng, adj.n_nodes() * cfg.dim, cfg.init_std);
        let mut tr = Trainer::new(&adj, cfg.clone(), ego.clone());
        // Run a different batch first: buffers reused across steps must not leak into this one.
        tr.loss_and_grad(&[(1, 2, 0), (3, 5, 2)]);
        let loss = tr.loss_and_grad(&batch);
        let ego64: Vec<f64> = ego.iter().map(|&x| x as f64).collect();
        let ref_loss = reference_loss(&ds, &cfg, &ego64, &batch);
        assert!(
            (loss - ref_loss).abs() < 1e-5,
            "K={layers}: loss {loss} vs {ref_loss}"
        );
        let h = 1e-6;
        for k in 0..ego64.len() {
            let mut plus = ego64.clone();
            plus[k] += h;
            let mut minus = ego64.clone();
            minus[k] -= h;
            let fd = (reference_loss(&ds, &cfg, &plus, &batch)
                - reference_loss(&ds, &cfg, &minus, &batch))
                / (2.0 * h);
            let g = tr.grad[k] as f64;
            assert!(
                (g - fd).abs() < 1e-5 + 1e-3 * fd.abs(),
                "K={layers} param {k}: analytic {g}, finite difference {fd}"
            );
        }
    }
}

fn clustered_config() -> LightGcnConfig {
    LightGcnConfig {
        dim: 16,
        lr: 1e-2,
        batch_size: 256,
        epochs: 30,
        eval_every: 5,
        patience: 0,
        ..LightGcnConfig::default()
    }
}

#[test]
fn identical_embeddings_with_one_and_two_threads() {
    let ds = synthetic::clustered(150, 120, 4, 10, 11);
    let cfg = LightGcnConfig {
        epochs: 4,
        eval_every: 2,
        ..clustered_config()
    };
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| train(&ds, &cfg, |_| {}).unwrap())
    };
    let (m1, r1) = run(1);
    let (m2, r2) = run(2);
    let bits = |m: &LightGcn| {
        m.ego_embeddings()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&m1), bits(&m2));
    let losses = |r: &TrainReport| {
        r.epochs
            .iter()
            .map(|e| e.loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&r1), losses(&r2));
    assert_eq!(r1.best_valid(), r2.best_valid());
}

#[test]
fn learns_the_clusters_and_beats_popularity() {
    let ds = synthetic::clustered(300, 200, 4, 12, 5);
    let (model, report) = train(&ds, &clustered_config(), |_| {}).unwrap();
    let first = report.epochs.first().unwrap().loss;
    let last = report.epochs.last().unwrap().loss;
    assert!(last < first * 0.8, "loss {first} -> {last}");
    let m = test_summary(&ds, &model).unwrap();
    assert!(
        m["ndcg@20"] > 1.5 * m["popularity_ndcg@20"],
        "LightGCN {} vs popularity {}",
        m["ndcg@20"],
        m["popularity_ndcg@20"]
    );
    assert!(report.best_epoch.is_some_and(|e| e > 0) && report.best_valid().is_some());
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    let ds = synthetic::clustered(100, 80, 4, 8, 6);
    // A learning rate this high overfits quickly; patience 1 stops at the first non-improvement.
    let cfg = LightGcnConfig {
        lr: 0.1,
        epochs: 200,
        eval_every: 1,
        patience: 1,
        ..clustered_config()
    };
    let (model, report) = train(&ds, &cfg, |_| {}).unwrap();
    assert!(report.stopped_early && report.epochs_run() < 200);
    let best = report.best_valid().unwrap()[SELECT_METRIC];
    let all_best = report
        .epochs
        .iter()
        .filter_map(|e| e.valid.as_ref().map(|v| v[SELECT_METRIC]))
        .fold(f64::MIN, f64::max);
    assert_eq!(best, all_best);
    // The returned model is the best epoch's, not the last one's.
    let again = eval::rank_targets(&model, &ds, Split::Valid)
        .unwrap()
        .ndcg(20);
    assert_eq!(again, best);
}

#[test]
fn sampler_draws_one_pair_per_training_interaction() {
    let ds = synthetic::clustered(50, 40, 2, 6, 3);
    let adj = NormAdj::from_dataset(&ds);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let s = sample_epoch(&adj, &mut rng);
    assert_eq!(s.len(), adj.n_train_pairs());
    for &(u, p, n) in &s {
        assert!(adj.positives(u).contains(&p));
        assert!(!adj.positives(u).contains(&n));
    }
}

#[test]
fn normal_init_has_the_requested_spread() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = normal_init(&mut rng, 20_001, 0.1);
    assert_eq!(x.len(), 20_001);
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
    assert!(
        mean.abs() < 0.005 && (var.sqrt() - 0.1).abs() < 0.005,
        "mean {mean} sd {}",
        var.sqrt()
    );
}

#[test]
fn store_round_trips_and_skips_retraining() {
    use crate::{BackboneConfig, ModelStore};
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let ds = synthetic::clustered(40, 30, 2, 5, 8);
    let cfg = LightGcnConfig {
        epochs: 2,
        eval_every: 1,
        ..clustered_config()
    };
    let mut seen = 0;
    let cold = store
        .train_or_load(&cfg, &ds, false, &mut |_| seen += 1)
        .unwrap();
    assert!(!cold.cached);
    assert_eq!(seen, 2);
    let warm = store
        .train_or_load(&cfg, &ds, false, &mut |_| panic!("retrained"))
        .unwrap();
    assert!(warm.cached);
    assert_eq!(
        cold.report, warm.report,
        "a reload reports the run that trained it"
    );
    let path = store.path_for(&cfg, &ds);
    let (m1, _) = train(&ds, &cfg, |_| {}).unwrap();
    let (m2, r2) = LightGcn::load(&path, &ds).unwrap().unwrap();
    assert_eq!((m1, &cold.report), (m2, &r2));
    // Another seed is another model.
    let other = LightGcnConfig {
        seed: 1,
        ..cfg.clone()
    };
    let other_path = store.path_for(&other, &ds);
    assert_ne!(other_path, path);
    assert!(other.load(&other_path, &ds).unwrap().is_none());
    // A file under another config's name is not trusted.
    std::fs::copy(&path, &other_path).unwrap();
    let err = other.load(&other_path, &ds).err().unwrap().to_string();
    assert!(err.contains("do not match the file name's key"), "{err}");
    // A damaged file is reported with its path, not silently retrained or trusted.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    let err = LightGcn::load(&path, &ds).unwrap_err().to_string();
    assert!(
        err.contains("embedding values") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let err = store
        .train_or_load(&cfg, &ds, false, &mut |_| panic!("retrained"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("embedding values"), "{err}");
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = LightGcn::load(&path, &ds).unwrap_err().to_string();
    assert!(
        err.contains("whole number of f32") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn config_errors_name_the_field_and_range() {
    let cfg = LightGcnConfig {
        lr: -1.0,
        ..LightGcnConfig::default()
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert_eq!(err, "lightgcn config: lr = -1, allowed a finite number > 0");
    let cfg = LightGcnConfig {
        batch_size: 0,
        ..LightGcnConfig::default()
    };
    assert!(matches!(
        train(&synthetic::tiny(), &cfg, |_| {}),
        Err(LightGcnError::Config(_))
    ));
}

#[test]
fn training_forward_equals_scoring_embeddings() {
    let ds = synthetic::clustered(40, 30, 2, 5, 4);
    let adj = NormAdj::from_dataset(&ds);
    let cfg = LightGcnConfig {
        dim: 16,
        ..LightGcnConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let ego = normal_init(&mut rng, adj.n_nodes() * cfg.dim, cfg.init_std);
    let mut tr = Trainer::new(&adj, cfg.clone(), ego.clone());
    tr.loss_and_grad(&[(0, 1, 2), (5, 7, 3)]);
    let model = LightGcn::from_ego(cfg, &adj, ego);
    for (slot, &r) in tr.batch_rows.iter().enumerate() {
        let r = r as usize;
        assert_eq!(
            tr.batch_final[slot * 16..(slot + 1) * 16],
            model.propagated_embeddings()[r * 16..(r + 1) * 16]
        );
    }
}

/// Restricting the last full layer and the first backward product to the batch's
/// neighbourhood, and skipping the backward's gathers from rows known to be zero, computes the
/// same bits as propagating every row (for each kernel width).
#[test]
fn restricted_propagation_gives_the_same_bits_as_full_propagation() {
    let ds = synthetic::clustered(60, 80, 4, 6, 3);
    let adj = NormAdj::from_dataset(&ds);
    for (layers, dim) in [(1, 16), (2, 16), (3, 16), (3, 64), (3, 5), (4, 32)] {
        let cfg = LightGcnConfig {
            dim,
            layers,
            batch_size: 4,
            ..LightGcnConfig::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let ego = normal_init(&mut rng, adj.n_nodes() * cfg.dim, cfg.init_std);
        let mut fast = Trainer::new(&adj, cfg.clone(), ego.clone());
        let mut full = Trainer::new(&adj, cfg.clone(), ego);
        full.full_propagation = true;
        let samples = sample_epoch(&adj, &mut rng);
        for batch in samples.chunks(cfg.batch_size) {
            let (a, b) = (fast.step(batch), full.step(batch));
            assert_eq!(a.to_bits(), b.to_bits(), "K={layers} d={dim}: loss");
        }
        assert!(
            fast.ego
                .iter()
                .zip(&full.ego)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "K={layers} d={dim}: parameters"
        );
    }
}
