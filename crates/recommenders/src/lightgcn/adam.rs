//! Adam with PyTorch's update rule (`torch.optim.Adam`, no weight decay, no amsgrad), fused into
//! one pass over the parameters.

use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    step: u32,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    /// β = (0.9, 0.999), ε = 1e-8: PyTorch's defaults, which the official LightGCN uses.
    pub fn new(n_params: usize, lr: f32) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: vec![0.0; n_params],
            v: vec![0.0; n_params],
        }
    }

    pub fn steps_taken(&self) -> u32 {
        self.step
    }

    /// One dense step over every parameter, as torch does for a non-sparse `nn.Embedding`
    /// (rows without gradient still move while their moments decay):
    /// m ← m + (1−β₁)(g − m); v ← β₂v + (1−β₂)g²;
    /// p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).
    /// Element-wise only, so any split over threads gives the same bits.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        assert_eq!(
            params.len(),
            self.m.len(),
            "Adam was built for another parameter count"
        );
        assert_eq!(
            grad.len(),
            params.len(),
            "gradient and parameters differ in length"
        );
        self.step += 1;
        let t = self.step as i32;
        // Bias corrections in f64, as torch computes them in Python floats.
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2 = 1.0 - (self.beta2 as f64).powi(t);
        let step_size = (self.lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        params
            .par_chunks_mut(CHUNK)
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for k in 0..p.len() {
                    let gk = g[k];
                    m[k] += (1.0 - b1) * (gk - m[k]);
                    v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
                    let denom = v[k].sqrt() / bc2_sqrt + eps;
                    p[k] -= step_size * m[k] / denom;
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_torch_steps() {
        // Two steps on one parameter with gradients 0.5 then -1, lr 0.1.
        let mut adam = Adam::new(1, 0.1);
        let mut p = [1.0f32];
        adam.step(&mut p, &[0.5]);
        // Step 1: m̂ = g, v̂ = g², so the update is lr · g/|g| (up to ε).
        assert!((p[0] - 0.9).abs() < 1e-6, "{}", p[0]);
        adam.step(&mut p, &[-1.0]);
        let g2 = -1.0f64;
        let (m, v) = (0.9 * 0.05 + 0.1 * g2, 0.999 * 0.00025 + 0.001 * g2 * g2);
        let expected =
            0.9 - 0.1 / (1.0 - 0.81) * m / (v.sqrt() / (1.0 - 0.998001f64).sqrt() + 1e-8);
        assert!(
            (p[0] as f64 - expected).abs() < 1e-5,
            "{} vs {expected}",
            p[0]
        );
        assert_eq!(adam.steps_taken(), 2);
    }
}
