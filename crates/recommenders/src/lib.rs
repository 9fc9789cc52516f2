//! Native backbones (LightGCN, SASRec) and the machinery both share: full-ranking evaluation,
//! early stopping, a popularity baseline, and the paper's candidate export.
//!
//! Evaluation and export are written once against [`Scorer`]; a backbone only has to score
//! every item for a user.
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

pub mod early_stopping;
pub mod eval;
pub mod export;
pub mod lightgcn;
pub mod popularity;
pub mod progress;
pub mod sasrec;
pub mod synthetic;

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
}

impl<S: Scorer + ?Sized> Scorer for &S {
    fn n_items(&self) -> usize {
        (**self).n_items()
    }
    fn score_user(&self, user: u32, history: &[u32], out: &mut [f32]) {
        (**self).score_user(user, history, out)
    }
}
