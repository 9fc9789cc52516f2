//! Native backbones (LightGCN, SASRec) and the machinery both share: full-ranking evaluation
//! and the paper's candidate export.

/// A trained model that scores every item for a user; evaluation and candidate export are
/// written once against this trait.
pub trait Scorer: Sync {
    fn n_items(&self) -> usize;
    /// Fill `out` (length `n_items`) with scores for `user`; higher is better. `history` is what
    /// the model may condition on (train, or train + valid at test time).
    fn score_user(&self, user: u32, history: &[u32], out: &mut [f32]);
}
