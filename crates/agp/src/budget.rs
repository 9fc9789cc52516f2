//! The training budget every learned method shares: `budget = { calls = N }` or
//! `budget = { tokens = T }` (and the older `max_training_calls = N`, the same as a budget of N
//! calls). It is measured on the run's ledger over every stage but `test`, so a resumed run
//! counts the calls of its checkpoint, and it is checked before each training batch: a batch
//! that starts under the budget runs to its end, so training passes it by at most one batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Stage;
use crate::error::AgpError;
use crate::llm::{StageTally, TRAINING_STAGES, training_calls};
use crate::reranker::{Env, TrainStep};

/// A training budget: exactly one of answered training requests (`calls`) or their prompt plus
/// completion tokens (`tokens`). Written `budget = { calls = 400 }` in an experiment row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

impl Budget {
    pub fn calls(n: u64) -> Self {
        Self {
            calls: Some(n),
            tokens: None,
        }
    }

    pub fn tokens(n: u64) -> Self {
        Self {
            calls: None,
            tokens: Some(n),
        }
    }

    /// The budget a config states: `budget`, or `max_training_calls` as a budget in calls.
    /// Both at once is refused by [`check_budget`].
    pub fn resolve(budget: Option<Budget>, max_training_calls: Option<u64>) -> Option<Budget> {
        budget.or(max_training_calls.map(Budget::calls))
    }

    /// What this budget has spent in `tallies`, and its limit.
    pub fn spent_of(&self, tallies: &BTreeMap<Stage, StageTally>) -> (u64, u64) {
        match (self.calls, self.tokens) {
            (Some(max), _) => (training_calls(tallies), max),
            (None, Some(max)) => (training_tokens(tallies), max),
            // Refused by validation; spends nothing and never runs out.
            (None, None) => (0, u64::MAX),
        }
    }
}

/// Prompt plus completion tokens of the answered training requests in `tallies` (the stages of
/// [`training_calls`]): what a `budget = { tokens = T }` is measured against.
pub fn training_tokens(tallies: &BTreeMap<Stage, StageTally>) -> u64 {
    TRAINING_STAGES
        .iter()
        .filter_map(|s| tallies.get(s))
        .map(|t| t.prompt_tokens + t.completion_tokens)
        .sum()
}

/// A budget of 0 would train nothing (a method that does not learn is another row), and two
/// ways of stating the same limit at once would leave a reader guessing which one held.
pub(crate) fn check_budget(
    budget: Option<Budget>,
    max_training_calls: Option<u64>,
) -> Result<(), AgpError> {
    if max_training_calls == Some(0) {
        return Err(AgpError::config("max_training_calls", "1..", 0));
    }
    let Some(b) = budget else { return Ok(()) };
    if max_training_calls.is_some() {
        return Err(AgpError::config(
            "budget",
            "either budget or max_training_calls (its alias in calls), not both",
            "both",
        ));
    }
    match (b.calls, b.tokens) {
        (Some(0), None) => Err(AgpError::config("budget.calls", "1..", 0)),
        (None, Some(0)) => Err(AgpError::config("budget.tokens", "1..", 0)),
        (Some(_), None) | (None, Some(_)) => Ok(()),
        (Some(c), Some(t)) => Err(AgpError::config(
            "budget",
            "exactly one of { calls = N } or { tokens = T }",
            format!("{{ calls = {c}, tokens = {t} }}"),
        )),
        (None, None) => Err(AgpError::config(
            "budget",
            "exactly one of { calls = N } or { tokens = T }",
            "{}",
        )),
    }
}

/// The log line of a skipped step under a budget in calls, as it always was.
#[derive(Serialize)]
struct CallsEvent {
    event: &'static str,
    status: &'static str,
    epoch: usize,
    batch: usize,
    training_calls: u64,
    max_training_calls: u64,
}

#[derive(Serialize)]
struct TokensEvent {
    event: &'static str,
    status: &'static str,
    epoch: usize,
    batch: usize,
    training_tokens: u64,
    max_training_tokens: u64,
}

/// Whether a learned method's budget is spent before `step`; a skipped step is logged. Every
/// trainer asks this before a batch, so one rule holds for all of them.
pub(crate) fn budget_spent(
    budget: Option<Budget>,
    step: TrainStep,
    env: &Env,
) -> Result<bool, AgpError> {
    let Some(b) = budget else { return Ok(false) };
    let (spent, max) = b.spent_of(&env.llm.calls.snapshot());
    if spent < max {
        return Ok(false);
    }
    if b.calls.is_some() {
        env.log_event(&CallsEvent {
            event: "train_step",
            status: "skipped: max_training_calls reached",
            epoch: step.epoch,
            batch: step.batch,
            training_calls: spent,
            max_training_calls: max,
        })?;
    } else {
        env.log_event(&TokensEvent {
            event: "train_step",
            status: "skipped: training token budget reached",
            epoch: step.epoch,
            batch: step.batch,
            training_tokens: spent,
            max_training_tokens: max,
        })?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_count_prompt_and_completion_of_training_stages_only() {
        let t = |calls, p, c| StageTally {
            calls,
            prompt_tokens: p,
            completion_tokens: c,
            ..StageTally::default()
        };
        let tallies = BTreeMap::from([
            (Stage::Profile, t(2, 100, 10)),
            (Stage::Edit, t(1, 40, 5)),
            (Stage::Test, t(9, 1000, 100)),
        ]);
        assert_eq!(training_tokens(&tallies), 155);
        assert_eq!(Budget::tokens(150).spent_of(&tallies), (155, 150));
        assert_eq!(Budget::calls(5).spent_of(&tallies), (3, 5));
    }

    #[test]
    fn the_alias_is_a_budget_in_calls() {
        assert_eq!(Budget::resolve(None, Some(7)), Some(Budget::calls(7)));
        assert_eq!(
            Budget::resolve(Some(Budget::tokens(9)), None),
            Some(Budget::tokens(9))
        );
        assert_eq!(Budget::resolve(None, None), None);
    }
}
