//! Candidate-order controls: show a method its candidates in another order than the backbone's.
//!
//! LLMs favour items by where they stand in the prompt. Every method sees the backbone's order,
//! which is also the order Base is scored in, so a method that copies its input scores Base. A
//! [`CandidateOrder`] other than `backbone` separates the two: [`Ordered`] wraps any
//! [`Reranker`], shows it the candidates permuted, and maps its answer back to backbone indices.
//!
//! - `reversed`: one call per user on the reversed list.
//! - `shuffled:<n>`: n calls per user, each on a seeded permutation (from the run seed, the user
//!   and the show's index only, so neither call order nor concurrency changes it, and the
//!   ground truth never enters it). The answers are aggregated by Borda count as LLMRank's
//!   bootstrapping does: in an answer over K candidates the item at 0-based position p gets
//!   K − p points, an item the answer did not place gets none from it, and ties go to backbone
//!   order. Items no answer placed stay out of the aggregate, as they would of a single answer
//!   under the `reference` missing-id policy.
//!
//! Learned methods train on each training user under its first permutation (the ground truth's
//! index moved with it) and are evaluated under the full rule.
//!
//! [`Ordered`] also counts, per user, how often an answer's top item is simply the item shown
//! first ([`FirstShown`], kept in [`UserResult::first_shown`](crate::UserResult::first_shown)).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::config::CallsPerUser;
use crate::error::AgpError;
use crate::llm::FailurePolicy;
use crate::methods::rankers::combine;
use crate::metrics::UnparseableRule;
use crate::parse::ParseOutcome;
use crate::reranker::{BatchOutcome, Env, Ranking, RerankInput, Reranker, TrainStep, UserCase};

/// The order a method is shown each user's candidates in. Written `backbone`, `reversed` or
/// `shuffled:<n>` (n ≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum CandidateOrder {
    /// The backbone's order: the requests of a run without any order control.
    #[default]
    Backbone,
    /// The backbone's order reversed, one show per user.
    Reversed,
    /// This many seeded permutations per user, aggregated by Borda count.
    Shuffled(u32),
}

const ALLOWED: &str = "backbone, reversed or shuffled:<n> with n ≥ 1";

impl CandidateOrder {
    /// Shows (inner reranks) per evaluated user.
    pub fn shows(self) -> u64 {
        match self {
            CandidateOrder::Backbone | CandidateOrder::Reversed => 1,
            CandidateOrder::Shuffled(n) => u64::from(n),
        }
    }

    /// A method's calls per evaluated user under this order: its own, once per show.
    pub fn calls_per_user(self, per_show: CallsPerUser) -> CallsPerUser {
        CallsPerUser {
            min: per_show.min * self.shows(),
            max: per_show.max * self.shows(),
        }
    }

    /// The label of a row run under this order: `backbone` keeps the method's own label,
    /// the others append the order (`LLM-Dir [reversed]`).
    pub fn label(self, method_label: &str) -> String {
        match self {
            CandidateOrder::Backbone => method_label.to_string(),
            _ => format!("{method_label} [{self}]"),
        }
    }

    /// The permutation of show `show` (0-based) of `user`'s `k` candidates: entry i is the
    /// backbone index of the candidate shown at position i. It depends on nothing but its
    /// arguments.
    pub fn permutation(self, seed: u64, user: u32, show: u64, k: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..k).collect();
        match self {
            CandidateOrder::Backbone => {}
            CandidateOrder::Reversed => p.reverse(),
            CandidateOrder::Shuffled(_) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(show_seed(seed, user, show));
                p.shuffle(&mut rng);
            }
        }
        p
    }
}

/// One stream per (run seed, user, show); the constant keeps it apart from the history mask's.
fn show_seed(seed: u64, user: u32, show: u64) -> u64 {
    let mut h = seed ^ 0x6361_6e64_6f72_6465;
    for x in [u64::from(user), show] {
        h = splitmix64(h ^ x);
    }
    h
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl fmt::Display for CandidateOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CandidateOrder::Backbone => f.write_str("backbone"),
            CandidateOrder::Reversed => f.write_str("reversed"),
            CandidateOrder::Shuffled(n) => write!(f, "shuffled:{n}"),
        }
    }
}

impl FromStr for CandidateOrder {
    type Err = AgpError;

    fn from_str(s: &str) -> Result<Self, AgpError> {
        let bad = || AgpError::config("candidate_order", ALLOWED, format!("{s:?}"));
        match s {
            "backbone" => Ok(CandidateOrder::Backbone),
            "reversed" => Ok(CandidateOrder::Reversed),
            _ => {
                let n = s.strip_prefix("shuffled:").ok_or_else(bad)?;
                match n.parse::<u32>() {
                    Ok(n) if n >= 1 => Ok(CandidateOrder::Shuffled(n)),
                    _ => Err(bad()),
                }
            }
        }
    }
}

impl Serialize for CandidateOrder {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CandidateOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How often one user's answers put the item shown first on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirstShown {
    /// Times the user's list was shown (calls of the inner method's rerank).
    pub shows: u32,
    /// Shows whose answer placed at least one item (only these have a top item).
    pub answered: u32,
    /// Answered shows whose top item was the one shown first.
    pub top_first: u32,
}

impl FirstShown {
    /// `top_first / answered`, `None` when no show was answered.
    pub fn rate(&self) -> Option<f64> {
        (self.answered > 0).then(|| f64::from(self.top_first) / f64::from(self.answered))
    }
}

/// Borda count over answers already mapped to backbone indices (LLMRank's bootstrapping): the
/// item at 0-based position p of an answer over `k` candidates gets k − p points (a repeated
/// id counts at its first place only), items an answer left out get none from it. Items with
/// points come best first, ties in backbone order; items no answer placed are left out.
pub fn borda(answers: &[Vec<usize>], k: usize) -> Vec<usize> {
    let mut points = vec![0u64; k];
    for answer in answers {
        let mut seen = vec![false; k];
        let mut p = 0;
        for &i in answer {
            if i < k && !seen[i] {
                seen[i] = true;
                points[i] += (k - p) as u64;
                p += 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..k).filter(|&i| points[i] > 0).collect();
    order.sort_by(|&a, &b| points[b].cmp(&points[a]).then(a.cmp(&b)));
    order
}

/// The outcome of a user's shows: the shared one when all agree; otherwise unparseable only
/// when no show was read, partial when some were not, as [`combine`] rules (a failed call
/// counts as an unread show; scores and the backbone's order as read ones).
pub fn combine_shows(outcomes: &[ParseOutcome]) -> ParseOutcome {
    use ParseOutcome::*;
    match outcomes {
        [] => Backbone,
        [first, rest @ ..] if rest.iter().all(|o| o == first) => *first,
        _ => {
            let read: Vec<ParseOutcome> = outcomes
                .iter()
                .map(|&o| match o {
                    CallFailed => Unparseable,
                    Pointwise | Backbone => Exact,
                    o => o,
                })
                .collect();
            combine(&read)
        }
    }
}

/// A [`Reranker`] shown its candidates in a [`CandidateOrder`]; its answers come back in
/// backbone indices.
pub struct Ordered<'a> {
    inner: Box<dyn Reranker + 'a>,
    order: CandidateOrder,
}

impl<'a> Ordered<'a> {
    pub fn new(inner: Box<dyn Reranker + 'a>, order: CandidateOrder) -> Self {
        Self { inner, order }
    }

    pub fn order(&self) -> CandidateOrder {
        self.order
    }

    /// `input` with its candidates in the order `perm` shows them.
    fn shown(input: &RerankInput, perm: &[usize]) -> RerankInput {
        RerankInput {
            candidates: perm.iter().map(|&i| input.candidates[i].clone()).collect(),
            ..input.clone()
        }
    }

    /// `case` under the first show of its user: the input permuted, the ground truth's index
    /// moved with it. The permutation is drawn before and without the ground truth.
    pub fn shown_case(&self, case: &UserCase, seed: u64) -> UserCase {
        let k = case.input.candidates.len();
        let perm = self.order.permutation(seed, case.input.user, 0, k);
        UserCase {
            input: Self::shown(&case.input, &perm),
            gt_index: perm
                .iter()
                .position(|&i| i == case.gt_index)
                .unwrap_or(case.gt_index),
        }
    }
}

#[async_trait]
impl Reranker for Ordered<'_> {
    fn epochs(&self) -> usize {
        self.inner.epochs()
    }

    fn batch_size(&self) -> usize {
        self.inner.batch_size()
    }

    fn n_train_users(&self) -> usize {
        self.inner.n_train_users()
    }

    fn unparseable_rule(&self) -> UnparseableRule {
        self.inner.unparseable_rule()
    }

    async fn train_batch(
        &mut self,
        step: TrainStep,
        batch: &[UserCase],
        env: &Env,
    ) -> Result<BatchOutcome, AgpError> {
        let shown: Vec<UserCase> = batch.iter().map(|c| self.shown_case(c, env.seed)).collect();
        self.inner.train_batch(step, &shown, env).await
    }

    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        Ok(self.rerank_shown(input, env).await?.0)
    }

    async fn rerank_shown(
        &self,
        input: &RerankInput,
        env: &Env,
    ) -> Result<(Ranking, Option<FirstShown>), AgpError> {
        let k = input.candidates.len();
        let mut stat = FirstShown::default();
        let mut outcomes = Vec::new();
        // Each answer in backbone indices.
        let mut answers = Vec::new();
        let mut last_failure = None;
        for show in 0..self.order.shows() {
            let perm = self.order.permutation(env.seed, input.user, show, k);
            stat.shows += 1;
            match self.inner.rerank(&Self::shown(input, &perm), env).await {
                Ok(r) => {
                    if let Some(&top) = r.order.first() {
                        stat.answered += 1;
                        stat.top_first += u32::from(top == 0);
                    }
                    outcomes.push(r.outcome);
                    answers.push(r.order.iter().map(|&i| perm[i]).collect::<Vec<_>>());
                }
                // A failed show the run may go on after counts as an unread answer; the user
                // is a failed call only when every show failed.
                Err(e)
                    if env.llm.on_failure == FailurePolicy::Continue
                        && e.failure_reason().is_some_and(|r| !r.is_fatal()) =>
                {
                    outcomes.push(ParseOutcome::CallFailed);
                    last_failure = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if answers.is_empty()
            && let Some(e) = last_failure
        {
            return Err(e);
        }
        let order = match self.order {
            // One answer keeps its exact order (repeats included, under `keep-as-reference`).
            CandidateOrder::Backbone | CandidateOrder::Reversed => {
                answers.pop().unwrap_or_default()
            }
            CandidateOrder::Shuffled(_) => borda(&answers, k),
        };
        Ok((
            Ranking {
                order,
                outcome: combine_shows(&outcomes),
            },
            Some(stat),
        ))
    }

    fn state(&self) -> serde_json::Value {
        self.inner.state()
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), AgpError> {
        self.inner.restore(state)
    }

    fn learned_prompt(&self) -> Option<String> {
        self.inner.learned_prompt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parse_print_and_name_the_key_when_bad() {
        for (s, o) in [
            ("backbone", CandidateOrder::Backbone),
            ("reversed", CandidateOrder::Reversed),
            ("shuffled:3", CandidateOrder::Shuffled(3)),
        ] {
            assert_eq!(s.parse::<CandidateOrder>().unwrap(), o);
            assert_eq!(o.to_string(), s);
        }
        for bad in [
            "shuffled:0",
            "shuffled",
            "shuffled:-1",
            "shuffled:x",
            "random",
            "",
        ] {
            let e = bad.parse::<CandidateOrder>().unwrap_err().to_string();
            assert!(
                e.contains("candidate_order") && e.contains("shuffled:<n> with n ≥ 1"),
                "{e}"
            );
        }
        assert_eq!(
            CandidateOrder::Reversed.label("LLM-Dir"),
            "LLM-Dir [reversed]"
        );
        assert_eq!(CandidateOrder::Backbone.label("LLM-Dir"), "LLM-Dir");
    }

    #[test]
    fn shuffles_are_seeded_permutations_independent_of_call_order() {
        let o = CandidateOrder::Shuffled(3);
        let forward: Vec<Vec<usize>> = (0..3).map(|s| o.permutation(7, 4, s, 10)).collect();
        let backward: Vec<Vec<usize>> = (0..3).rev().map(|s| o.permutation(7, 4, s, 10)).collect();
        assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
        for p in &forward {
            let mut sorted = p.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(forward[0], forward[1], "shows differ");
        assert_ne!(
            o.permutation(7, 4, 0, 10),
            o.permutation(7, 5, 0, 10),
            "users differ"
        );
        assert_ne!(
            o.permutation(7, 4, 0, 10),
            o.permutation(8, 4, 0, 10),
            "seeds differ"
        );
        assert_eq!(
            CandidateOrder::Reversed.permutation(7, 4, 0, 4),
            vec![3, 2, 1, 0]
        );
    }

    #[test]
    fn borda_counts_places_and_breaks_ties_by_backbone_order() {
        // K = 4: [2,0,1,3] gives 2:4 0:3 1:2 3:1; [0,2] gives 0:4 2:3; [] gives nothing.
        // Totals 0:7, 2:7, 1:2, 3:1: 0 and 2 tie, backbone order puts 0 first.
        assert_eq!(
            borda(&[vec![2, 0, 1, 3], vec![0, 2], vec![]], 4),
            vec![0, 2, 1, 3]
        );
        // A repeat counts once, at its first place; no answer placed 3, so it is left out.
        assert_eq!(borda(&[vec![1, 1, 0], vec![2]], 4), vec![1, 2, 0]);
        assert!(borda(&[vec![], vec![]], 4).is_empty());
    }

    #[test]
    fn shows_combine_like_the_rankers() {
        use ParseOutcome::*;
        assert_eq!(combine_shows(&[Exact, Exact, Exact]), Exact);
        assert_eq!(combine_shows(&[Pointwise, Pointwise]), Pointwise);
        assert_eq!(combine_shows(&[Unparseable, Unparseable]), Unparseable);
        assert_eq!(combine_shows(&[Unparseable, CallFailed]), Unparseable);
        assert_eq!(combine_shows(&[Exact, Unparseable, Exact]), Partial);
        assert_eq!(combine_shows(&[Pointwise, CallFailed]), Partial);
        assert_eq!(combine_shows(&[Exact, NoMarkers]), NoMarkers);
    }
}
