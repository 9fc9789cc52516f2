//! The trained model: layer-0 embeddings, their propagation, and scoring.

use super::*;

/// A trained LightGCN: the layer-0 embeddings (the parameters) and the propagated embeddings
/// used for scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct LightGcn {
    pub config: LightGcnConfig,
    pub n_users: usize,
    pub n_items: usize,
    /// Layer-0 embeddings, users then items, row-major `(n_users + n_items) × dim`.
    pub(super) ego: Vec<f32>,
    /// Mean of layers 0..=K, same layout.
    propagated: Vec<f32>,
}

impl LightGcn {
    /// Rebuilds the scoring embeddings from layer-0 embeddings and the training graph.
    pub fn from_ego(config: LightGcnConfig, adj: &NormAdj, ego: Vec<f32>) -> Self {
        assert_eq!(
            ego.len(),
            adj.n_nodes() * config.dim,
            "embedding table size"
        );
        let propagated = propagate(adj, &ego, config.dim, config.layers);
        Self {
            n_users: adj.n_users,
            n_items: adj.n_items,
            config,
            ego,
            propagated,
        }
    }

    pub fn ego_embeddings(&self) -> &[f32] {
        &self.ego
    }

    /// E = (1/(K+1)) Σ_{k=0..K} Â^k E⁰: the final user and item embeddings.
    pub fn propagated_embeddings(&self) -> &[f32] {
        &self.propagated
    }
}

impl Scorer for LightGcn {
    fn n_items(&self) -> usize {
        self.n_items
    }

    /// ŷ_ui = e_u · e_i with the propagated embeddings (the history is already in the graph).
    fn score_user(&self, user: u32, _history: &[u32], out: &mut [f32]) {
        let d = self.config.dim;
        let u = &self.propagated[user as usize * d..(user as usize + 1) * d];
        let items = &self.propagated[self.n_users * d..];
        for (s, e) in out.iter_mut().zip(items.chunks_exact(d)) {
            *s = dot(u, e);
        }
    }

    fn as_dot(&self) -> Option<&dyn DotScorer> {
        Some(self)
    }
}

/// `score_user` is `dot(e_u, e_i)` on the propagated rows, so the user vector is the user's row.
impl DotScorer for LightGcn {
    fn dim(&self) -> usize {
        self.config.dim
    }

    fn item_vectors(&self) -> &[f32] {
        &self.propagated[self.n_users * self.config.dim..]
    }

    fn user_vectors(&self, users: &[u32], _histories: &[&[u32]], out: &mut [f32]) {
        let d = self.config.dim;
        for (&u, row) in users.iter().zip(out.chunks_exact_mut(d)) {
            row.copy_from_slice(&self.propagated[u as usize * d..(u as usize + 1) * d]);
        }
    }

    fn score(&self, user_vector: &[f32], item_vector: &[f32]) -> f32 {
        dot(user_vector, item_vector)
    }
}

/// Sequential dot product: the same order everywhere, so scores never depend on threads.
#[inline]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Final embeddings E = (1/(K+1)) Σ_{k=0..K} Â^k E⁰ (the paper's Eq. 4 with α_k = 1/(K+1)).
pub fn propagate(adj: &NormAdj, ego: &[f32], d: usize, layers: usize) -> Vec<f32> {
    let mut acc = ego.to_vec();
    let mut cur = ego.to_vec();
    let mut next = vec![0f32; ego.len()];
    for _ in 0..layers {
        adj.spmm(&cur, d, &mut next);
        acc.par_iter_mut().zip(&next).for_each(|(a, n)| *a += n);
        std::mem::swap(&mut cur, &mut next);
    }
    let scale = 1.0 / (layers as f32 + 1.0);
    acc.par_iter_mut().for_each(|a| *a *= scale);
    acc
}
