//! The one Adam both backbones train with: `torch.optim.Adam` without weight decay or amsgrad,
//! dense over every parameter (rows without gradient still move while their moments decay, as
//! for a non-sparse `nn.Embedding`), fused into one pass.
//!
//! The update is the same for every model:
//! m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
//! p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).
//! The two implementations this replaced rounded it differently in two places, and each
//! model's committed numbers depend on its roundings bit for bit, so those are options rather
//! than one choice:
//! how the first moment is written ([`FirstMoment`]) and in which precision the bias
//! corrections are computed ([`BiasCorrection`]).

use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
/// The update is element-wise, so any split gives the same bits.
const CHUNK: usize = 1 << 14;

/// How `m ← β₁m + (1−β₁)g` is evaluated in f32; the two forms round differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstMoment {
    /// `m += (1−β₁)(g − m)`: torch's `lerp_` form (LightGCN).
    Lerp,
    /// `m = β₁m + (1−β₁)g`: the textbook form (SASRec).
    Blend,
}

/// Precision of `1−β₁ᵗ` and `√(1−β₂ᵗ)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BiasCorrection {
    /// In f64 from the f32 betas, then rounded once to f32: torch computes them in Python
    /// floats.
    F64,
    /// Entirely in f32.
    F32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamOptions {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub first_moment: FirstMoment,
    pub bias_correction: BiasCorrection,
}

impl AdamOptions {
    /// PyTorch's defaults (β = (0.9, 0.999), ε = 1e-8) with torch's roundings.
    pub fn torch(lr: f32) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            first_moment: FirstMoment::Lerp,
            bias_correction: BiasCorrection::F64,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    pub options: AdamOptions,
    step: u32,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    pub fn new(n_params: usize, options: AdamOptions) -> Self {
        Self {
            options,
            step: 0,
            m: vec![0.0; n_params],
            v: vec![0.0; n_params],
        }
    }

    pub fn steps_taken(&self) -> u32 {
        self.step
    }

    /// One step over every parameter.
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
        let t = i32::try_from(self.step).unwrap_or(i32::MAX);
        let AdamOptions {
            lr,
            beta1: b1,
            beta2: b2,
            eps,
            first_moment,
            bias_correction,
        } = self.options;
        let (step_size, bc2_sqrt) = match bias_correction {
            BiasCorrection::F64 => {
                let bc1 = 1.0 - (b1 as f64).powi(t);
                let bc2 = 1.0 - (b2 as f64).powi(t);
                ((lr as f64 / bc1) as f32, bc2.sqrt() as f32)
            }
            BiasCorrection::F32 => (lr / (1.0 - b1.powi(t)), (1.0 - b2.powi(t)).sqrt()),
        };
        params
            .par_chunks_mut(CHUNK)
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                // The form is matched outside the element loop so each loop stays branch-free.
                match first_moment {
                    FirstMoment::Lerp => {
                        for k in 0..p.len() {
                            m[k] += (1.0 - b1) * (g[k] - m[k]);
                        }
                    }
                    FirstMoment::Blend => {
                        for k in 0..p.len() {
                            m[k] = b1 * m[k] + (1.0 - b1) * g[k];
                        }
                    }
                }
                for k in 0..p.len() {
                    let gk = g[k];
                    v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
                    p[k] -= step_size * m[k] / (v[k].sqrt() / bc2_sqrt + eps);
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
        let mut adam = Adam::new(1, AdamOptions::torch(0.1));
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

    /// The two implementations this one replaced, verbatim, so the options are proven to give
    /// each model its old bits.
    fn lightgcn_before(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], t: i32, lr: f32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let bc1 = 1.0 - (b1 as f64).powi(t);
        let bc2 = 1.0 - (b2 as f64).powi(t);
        let step_size = (lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        for k in 0..p.len() {
            let gk = g[k];
            m[k] += (1.0 - b1) * (gk - m[k]);
            v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
            let denom = v[k].sqrt() / bc2_sqrt + eps;
            p[k] -= step_size * m[k] / denom;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sasrec_before(
        p: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        t: i32,
        lr: f32,
        b1: f32,
        b2: f32,
    ) {
        let eps = 1e-8f32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let step = lr / bc1;
        for i in 0..p.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            p[i] -= step * m[i] / (v[i].sqrt() / bc2_sqrt + eps);
        }
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let x = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 20_011;
                x as f32 / 10_005.5 - 1.0
            })
            .collect()
    }

    #[test]
    fn options_reproduce_each_former_implementation_bit_for_bit() {
        let n = 3 * CHUNK + 17;
        let p0 = pseudo_random(n, 1);
        let (lr, b1, b2) = (1e-3f32, 0.9f32, 0.98f32);
        let cases = [
            (AdamOptions::torch(lr), true),
            (
                AdamOptions {
                    beta2: b2,
                    first_moment: FirstMoment::Blend,
                    bias_correction: BiasCorrection::F32,
                    ..AdamOptions::torch(lr)
                },
                false,
            ),
        ];
        for (options, lightgcn) in cases {
            let mut adam = Adam::new(n, options);
            let (mut p, mut q) = (p0.clone(), p0.clone());
            let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
            for t in 1..=40 {
                let g = pseudo_random(n, t as u32 + 7);
                adam.step(&mut p, &g);
                if lightgcn {
                    lightgcn_before(&mut q, &mut m, &mut v, &g, t, lr);
                } else {
                    sasrec_before(&mut q, &mut m, &mut v, &g, t, lr, b1, b2);
                }
            }
            assert!(
                p.iter().zip(&q).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{options:?} drifted from the implementation it replaced"
            );
        }
    }

    #[test]
    fn each_rounding_option_changes_the_bits() {
        let n = 4096;
        let run = |options: AdamOptions| {
            let mut adam = Adam::new(n, options);
            let mut p = pseudo_random(n, 1);
            for t in 1..=40 {
                adam.step(&mut p, &pseudo_random(n, t + 7));
            }
            p.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        let torch = AdamOptions::torch(1e-3);
        let base = run(torch);
        assert_ne!(
            base,
            run(AdamOptions {
                first_moment: FirstMoment::Blend,
                ..torch
            })
        );
        assert_ne!(
            base,
            run(AdamOptions {
                bias_correction: BiasCorrection::F32,
                ..torch
            })
        );
    }
}
