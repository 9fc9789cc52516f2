//! The built-in methods.

/// The [`crate::Reranker`] settings every method on AGP's training loop reads from its config
/// (`cfg` with the loop's fields, `n_train` resolved against the candidate file): written once
/// for AGP, OPRO, ProTeGi and random search.
macro_rules! loop_reranker_settings {
    () => {
        fn epochs(&self) -> usize {
            self.cfg.epochs
        }

        fn batch_size(&self) -> usize {
            self.cfg.batch_size
        }

        fn n_train_users(&self) -> usize {
            self.n_train
        }

        fn unparseable_rule(&self) -> UnparseableRule {
            self.cfg.unparseable
        }

        fn shuffle_train_users(&self) -> bool {
            self.cfg.shuffle_train_users
        }

        fn selection(&self) -> $crate::Selection {
            self.cfg.select
        }
    };
}

pub mod agp;
pub mod baselines;
pub mod optimizers;
pub mod random_search;
pub mod rankers;

pub use agp::{PromptOptimizer, Route};
pub use baselines::{Base, ListwiseBaseline, PointwiseBaseline};
pub use optimizers::{Opro, Protegi};
pub use random_search::RandomSearch;
pub use rankers::{First, PrpAllpair, PrpSort, RankGpt, Setwise};

pub(crate) use crate::budget::budget_spent;

/// The checkpoint of a method whose only learned state is its prompt (AGP and its variants,
/// random search).
#[derive(serde::Serialize, serde::Deserialize)]
struct PromptState {
    prompt: String,
}

/// The `p_gen` a prompt optimizer starts from: its config's `initial_prompt`, else AGP's.
fn starting_prompt(initial: &Option<String>) -> String {
    initial
        .clone()
        .unwrap_or_else(|| crate::prompts::INITIAL_PROFILE_PROMPT.to_string())
}

fn prompt_state(prompt: &str) -> serde_json::Value {
    serde_json::to_value(PromptState {
        prompt: prompt.to_string(),
    })
    .unwrap_or(serde_json::Value::Null)
}

/// The prompt a [`prompt_state`] checkpoint holds; `method` names it in the error.
fn restored_prompt(
    state: serde_json::Value,
    method: &str,
) -> Result<String, crate::error::AgpError> {
    let s: PromptState = serde_json::from_value(state)
        .map_err(|e| crate::error::AgpError::Data(format!("checkpointed {method} state: {e}")))?;
    Ok(s.prompt)
}

/// Candidate indices sorted by descending score; ties (and NaN, treated as lowest) keep backbone
/// order, so the result never depends on anything but the scores.
pub fn order_by_scores(scores: &[f32]) -> Vec<usize> {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])));
    order
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_by_scores_is_stable_and_nan_last() {
        assert_eq!(
            super::order_by_scores(&[0.5, f32::NAN, 2.0, 0.5]),
            vec![2, 0, 3, 1]
        );
    }
}
