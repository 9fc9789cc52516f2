//! Native backbones (LightGCN, SASRec) and the machinery both share: full-ranking evaluation,
//! early stopping, a popularity baseline, and the paper's candidate export. Training, caching
//! and saving go through [`backbone`] ([`BackboneConfig`], [`Backbone`], [`ModelStore`]), so no
//! caller needs to know which model it holds.
//!
//! Evaluation and export are written once against [`Scorer`]; a backbone only has to score
//! every item for a user. Backbones whose scores are dot products (LightGCN, SASRec) also
//! implement [`DotScorer`], which lets evaluation score users in blocks with a GEMM and still
//! return exactly what the per-user path returns.
//!
//! ```no_run
//! # fn demo(dataset: &agp_datasets::Dataset, model: &impl agp_recommenders::Scorer)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use agp_recommenders::{eval::{self, Split}, export};
//! let ranks = eval::rank_targets(model, dataset, Split::Test)?;
//! println!("NDCG@20 {:.4}", ranks.ndcg(20));
//! let file = export::export_candidates(
//!     model,
//!     dataset,
//!     export::Provenance::new("lightgcn", 2020),
//!     &export::ExportOptions::default(),
//! )?;
//! file.write("candidates.json".as_ref())?;
//! # Ok(()) }
//! ```

pub mod adam;
pub mod backbone;
pub mod early_stopping;
pub mod eval;
pub mod export;
pub mod huge_pages;
pub mod lightgcn;
pub mod model_file;
pub mod popularity;
pub mod progress;
pub mod sasrec;
pub mod synthetic;

pub use backbone::{
    Backbone, BackboneConfig, BackboneError, EpochLog, ModelStore, TrainReport, Trained,
};
pub use early_stopping::EarlyStopping;
pub use eval::{Ranks, Split};
pub use popularity::Popularity;

/// A trained model that scores every item for a user; evaluation and candidate export are
/// written once against this trait.
///
/// Implementations must be deterministic (same inputs, same scores) and must not depend on the
/// thread they run on: evaluation scores users in parallel.
pub trait Scorer: Sync {
    fn n_items(&self) -> usize;
    /// Fill `out` (length `n_items`) with scores for `user`; higher is better. `history` is what
    /// the model may condition on (train, or train + valid at test time), oldest first. Items in
    /// `history` are masked by the caller, so their scores do not matter.
    fn score_user(&self, user: u32, history: &[u32], out: &mut [f32]);

    /// The same scores written as dot products of a user vector with fixed item vectors, when
    /// the model has that form. Evaluation and export then score users in blocks with a GEMM
    /// (see [`eval`]); `None` keeps them on [`Self::score_user`].
    fn as_dot(&self) -> Option<&dyn DotScorer> {
        None
    }
}

impl<S: Scorer + ?Sized> Scorer for &S {
    fn n_items(&self) -> usize {
        (**self).n_items()
    }
    fn score_user(&self, user: u32, history: &[u32], out: &mut [f32]) {
        (**self).score_user(user, history, out)
    }
    fn as_dot(&self) -> Option<&dyn DotScorer> {
        (**self).as_dot()
    }
}

/// A [`Scorer`] whose score of item `i` is `score(v_u, e_i)`: a dot product of a user vector
/// `v_u` with a fixed item vector `e_i`.
///
/// The contract that keeps blocked evaluation identical to [`Scorer::score_user`]: whenever
/// [`Self::has_user_vector`] holds, `score_user` writes exactly (bit for bit)
/// `score(v_u, e_i)` for every item, where `v_u` is what [`Self::user_vectors`] writes and
/// `score` is a plain dot product (any summation order, no fused tricks beyond FMA), so its
/// rounding error obeys the standard bound the evaluation relies on.
pub trait DotScorer: Sync {
    /// Length `d` of user and item vectors.
    fn dim(&self) -> usize;
    /// The item vectors, row-major `n_items × d`.
    fn item_vectors(&self) -> &[f32];
    /// Whether the scores for this history are dot products at all; when false, evaluation
    /// falls back to [`Scorer::score_user`] for this user.
    fn has_user_vector(&self, _history: &[u32]) -> bool {
        true
    }
    /// Writes `v_u` for every `(users[j], histories[j])` into row `j` of `out`
    /// (`users.len() × d`); only called for histories with [`Self::has_user_vector`].
    fn user_vectors(&self, users: &[u32], histories: &[&[u32]], out: &mut [f32]);
    /// One score, with exactly the arithmetic [`Scorer::score_user`] uses.
    fn score(&self, user_vector: &[f32], item_vector: &[f32]) -> f32;
}
