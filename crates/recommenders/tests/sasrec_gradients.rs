//! The hand-written SASRec backward against central finite differences, for every parameter
//! tensor, with and without dropout.

use agp_recommenders::sasrec::model::{self, Batch, PassConfig, Tape};
use agp_recommenders::sasrec::params::Layout;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N_ITEMS: usize = 9;
const MAXLEN: usize = 5;
const D: usize = 4;

fn tiny_model(seed: u64) -> (Layout, Vec<f32>) {
    let layout = Layout::new(N_ITEMS, MAXLEN, D, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = layout.init(&mut rng);
    // Move γ, β and biases away from 1 / 0 so their gradients are not special cases, and
    // enlarge the embeddings so attention is far from uniform.
    for x in p.iter_mut() {
        *x += rng.random_range(-0.3..0.3);
    }
    for x in &mut p[layout.item_emb.range()] {
        *x *= 2.0;
    }
    (layout, p)
}

/// Sequences of length 5, 3, 1 (full window, padded, single item) with targets and negatives.
fn tiny_batch() -> Batch {
    Batch {
        lens: vec![5, 3, 1],
        items: vec![0, 1, 2, 3, 4, 5, 6, 7, 8],
        pos: vec![1, 2, 3, 4, 5, 6, 7, 8, 0],
        neg: vec![7, 8, 6, 0, 1, 2, 3, 4, 5],
    }
}

fn loss_at(layout: &Layout, p: &[f32], cfg: PassConfig, seed: Option<u64>) -> f64 {
    let mut tape = Tape::default();
    model::forward(p, layout, cfg, &tiny_batch(), &mut tape, seed).expect("batch has targets")
}

fn check(cfg: PassConfig, seed: Option<u64>) {
    let (layout, p) = tiny_model(7);
    let batch = tiny_batch();
    let mut tape = Tape::default();
    let mut grads = vec![0.0f32; layout.total];
    model::forward(&p, &layout, cfg, &batch, &mut tape, seed);
    model::backward(&p, &layout, &batch, &mut tape, &mut grads);

    let eps = 1e-2f32;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, span) in layout.named() {
        let mut tensor_max = 0.0f32;
        for i in span.range() {
            let mut q = p.clone();
            q[i] = p[i] + eps;
            let up = loss_at(&layout, &q, cfg, seed);
            q[i] = p[i] - eps;
            let down = loss_at(&layout, &q, cfg, seed);
            let fd = ((up - down) / (2.0 * eps as f64)) as f32;
            let an = grads[i];
            tensor_max = tensor_max.max(an.abs());
            let tol = 2e-3 + 3e-2 * fd.abs().max(an.abs());
            if (fd - an).abs() > tol {
                failures.push(format!(
                    "{name}[{}]: analytic {an:.6} vs numeric {fd:.6}",
                    i - span.off
                ));
            }
            checked += 1;
        }
        // Every tensor takes part in this batch (all items appear), so each must get gradient.
        assert!(tensor_max > 0.0, "{name} received no gradient");
    }
    assert!(checked == layout.total);
    assert!(
        failures.is_empty(),
        "{} of {checked} entries disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn backward_matches_finite_differences_without_dropout() {
    check(
        PassConfig {
            dropout: 0.0,
            ln_eps: 1e-8,
        },
        None,
    );
}

/// With a fixed seed the dropout masks are a fixed function of the parameters' surroundings,
/// so the loss is still differentiable and the backward must apply the very same masks.
#[test]
fn backward_matches_finite_differences_with_dropout_masks() {
    check(
        PassConfig {
            dropout: 0.3,
            ln_eps: 1e-8,
        },
        Some(42),
    );
}

#[test]
fn dropout_changes_the_loss_and_is_reproducible() {
    let (layout, p) = tiny_model(3);
    let cfg = PassConfig {
        dropout: 0.5,
        ln_eps: 1e-8,
    };
    let a = loss_at(&layout, &p, cfg, Some(1));
    let b = loss_at(&layout, &p, cfg, Some(1));
    let c = loss_at(&layout, &p, cfg, Some(2));
    let off = loss_at(&layout, &p, cfg, None);
    assert_eq!(a.to_bits(), b.to_bits());
    assert_ne!(a, c);
    assert_ne!(a, off);
}
