//! The official sampler and initialisation, from one seeded stream.

use super::*;

/// One BPR training example: (user, positive item, negative item), dense ids.
pub type Triple = (u32, u32, u32);

/// One epoch of the official sampler (`UniformSample_original_python`): as many draws as there
/// are training pairs; each draws a user uniformly, a positive uniformly from the user's
/// training items and a negative uniformly from the items the user has not trained on.
/// (The official code then shuffles, which reorders i.i.d. draws and changes nothing.)
pub fn sample_epoch(adj: &NormAdj, rng: &mut ChaCha8Rng) -> Vec<Triple> {
    let mut out = Vec::with_capacity(adj.n_train_pairs());
    for _ in 0..adj.n_train_pairs() {
        let u = rng.random_range(0..adj.n_users as u32);
        let pos = adj.positives(u);
        // Users without training items, or who trained on every item, have no BPR pair.
        if pos.is_empty() || pos.len() == adj.n_items {
            continue;
        }
        let p = pos[rng.random_range(0..pos.len())];
        let n = loop {
            let n = rng.random_range(0..adj.n_items as u32);
            if pos.binary_search(&n).is_err() {
                break n;
            }
        };
        out.push((u, p, n));
    }
    out
}

/// Draws N(0, std²) with Box–Muller from the seeded stream (no extra crate, fixed algorithm).
pub fn normal_init(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = std::f64::consts::TAU * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(n);
    out
}
