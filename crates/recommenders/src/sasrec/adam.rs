//! Adam as `torch.optim.Adam` (bias-corrected, ε added to the corrected √v), dense over every
//! parameter like torch's non-sparse `nn.Embedding`.

use super::SasRecConfig;
use rayon::prelude::*;

pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `θ ← θ − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`.
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], cfg: &SasRecConfig) {
        self.t += 1;
        let (b1, b2, eps) = (
            cfg.adam_beta1 as f32,
            cfg.adam_beta2 as f32,
            cfg.adam_eps as f32,
        );
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2_sqrt = (1.0 - b2.powi(self.t)).sqrt();
        let step = cfg.lr as f32 / bc1;
        const CHUNK: usize = 16 * 1024;
        params
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                    v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                    p[i] -= step * m[i] / (v[i].sqrt() / bc2_sqrt + eps);
                }
            });
    }
}
