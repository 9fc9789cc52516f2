//! The zero-shot LLM rankers of the retrieval literature, adapted to recommendation: RankGPT
//! (sliding-window listwise), PRP (pairwise: all pairs, or heapsort), Setwise (heapsort that
//! asks for the best of a set) and FIRST (listwise, read from the first answer token's
//! log-probabilities). Every prompt shows the user's history as LLM-Dir does and the
//! candidates it asks about as `<id: text>` lines, numbered 0.. within the prompt.
//!
//! A user's calls go out one after another, even where they do not depend on each other (PRP's
//! pairs): users already run `concurrency` at once, and parallel calls within a user would
//! multiply the run's in-flight limit.
//!
//! Every ranking is a full permutation. An answer that cannot be read changes nothing: a window
//! keeps its order, and a set is decided by backbone order. A pair is settled by
//! [`PrpTies`]: llm-rankers keeps the heap node (the default), which after the heap's swaps is
//! not the backbone's order; `ties = "backbone"` decides by backbone order, so that a model
//! that never answers leaves the backbone's list. The ranking's outcome sums up its answers ([`combine`]).
//! A failed call fails the user, which the driver scores as a failed call under
//! [`crate::FailurePolicy::Continue`], as for the one-call baselines.

use std::ops::Range;

use crate::Stage;
use async_trait::async_trait;

use crate::config::{FirstConfig, PrpConfig, PrpTies, RankGptConfig, SetwiseConfig};
use crate::error::AgpError;
use crate::parse::{ParseOutcome, parse_choice, parse_rankgpt};
use crate::prompts;
use crate::reranker::{Env, Ranking, RerankInput, Reranker};

use super::order_by_scores;

/// RankGPT: a window of `window` candidates is reranked listwise, then moves `step` places
/// towards the front, from the back of the list to the front.
#[derive(Debug, Clone)]
pub struct RankGpt {
    pub cfg: RankGptConfig,
}

/// PRP-allpair: every pair asked in both orders; a candidate scores 1 for each pair it wins in
/// both orders and 0.5 for each pair whose orders disagree (or could not be read), and the
/// ranking is by score with ties in backbone order.
#[derive(Debug, Clone)]
pub struct PrpAllpair {
    pub cfg: PrpConfig,
}

/// PRP-sort: heapsort over a binary heap (PRP's "PRP-Sorting"), each comparison asked in both
/// orders. It sorts the whole list, since NDCG@10 over K = 10 needs every position.
#[derive(Debug, Clone)]
pub struct PrpSort {
    pub cfg: PrpConfig,
}

/// Setwise: heapsort over a heap of `num_child` children per node; each step asks once which of
/// a node and its children the user prefers. It sorts the whole list (no top-k early exit).
#[derive(Debug, Clone)]
pub struct Setwise {
    pub cfg: SetwiseConfig,
}

/// FIRST: one listwise prompt over the whole list; the candidates are ranked by the
/// log-probability of their id as the answer's first token, ties (ids the backend did not
/// see) in backbone order. Its outcome is `Pointwise` (ranked by scores, nothing parsed), or
/// `Unparseable` when no id was seen and the backbone's order stands.
#[derive(Debug, Clone)]
pub struct First {
    pub cfg: FirstConfig,
}

/// The windows RankGPT ranks over `n` candidates, in call order: `window` wide, ending at the
/// back and moving `step` towards the front; the last starts at 0. That is 1 + ⌈(n − window) /
/// step⌉ windows for 2 ≤ window ≤ n, a single one for window ≥ n, none for n < 2.
///
/// RankGPT's own loop stops as soon as the next window would start before the front, so when
/// `step` does not divide `n − window` its first items are never ranked; here the last window
/// is moved to the front instead.
pub fn rankgpt_windows(n: usize, window: usize, step: usize) -> Vec<Range<usize>> {
    if n < 2 {
        return Vec::new();
    }
    let window = window.clamp(2, n);
    let step = step.max(1);
    let mut out = Vec::new();
    let mut end = n;
    loop {
        let start = end.saturating_sub(window);
        out.push(start..end);
        if start == 0 {
            return out;
        }
        // start > 0 means end > window, so this moves left and never past a full window at
        // the front, whatever the step.
        end = end.saturating_sub(step).max(window);
    }
}

/// Calls PRP-sort makes to judge a heap node with `children` children: each child is compared
/// with the best so far, and each comparison is asked in both orders.
pub fn prp_calls_per_node(children: usize) -> u64 {
    2 * children as u64
}

/// The fewest and the most calls the heapsort of [`PrpSort`] and [`Setwise`] makes over `n`
/// items with `arity` children per node, when judging a node with c children costs `cost(c)`
/// calls.
///
/// Every sift-down of a node with children judges at least that node (the minimum, reached
/// when every judged node keeps its place, e.g. a model that always picks the first shown); at
/// most it judges one node per level down the costliest path. The maximum adds those per-sift worst cases, so it
/// is an upper bound that answers may not reach.
pub fn heapsort_calls(n: usize, arity: usize, cost: impl Fn(usize) -> u64) -> (u64, u64) {
    let arity = arity.max(1);
    let children = |node: usize, len: usize| {
        let first = (arity * node + 1).min(len);
        first..(first + arity).min(len)
    };
    fn worst(
        node: usize,
        len: usize,
        children: &dyn Fn(usize, usize) -> Range<usize>,
        cost: &dyn Fn(usize) -> u64,
    ) -> u64 {
        let kids = children(node, len);
        if kids.is_empty() {
            return 0;
        }
        cost(kids.len())
            + kids
                .map(|c| worst(c, len, children, cost))
                .max()
                .unwrap_or(0)
    }
    let (mut lo, mut hi) = (0, 0);
    let mut sift = |node: usize, len: usize| {
        let kids = children(node, len).len();
        if kids > 0 {
            lo += cost(kids);
            hi += worst(node, len, &children, &cost);
        }
    };
    for node in 0..n {
        sift(node, n);
    }
    for len in (1..n).rev() {
        sift(0, len);
    }
    (lo, hi)
}

/// How one user's answers went: no call at all is the backbone; every answer read is `Exact`,
/// or `NoMarkers` if any came without markers; no answer read is `Unparseable`; anything in
/// between (or a window answer that had to be completed) is `Partial`.
pub fn combine(outcomes: &[ParseOutcome]) -> ParseOutcome {
    use ParseOutcome::*;
    if outcomes.is_empty() {
        Backbone
    } else if outcomes.iter().all(|&o| o == Unparseable) {
        Unparseable
    } else if outcomes.iter().any(|&o| matches!(o, Unparseable | Partial)) {
        Partial
    } else if outcomes.contains(&NoMarkers) {
        NoMarkers
    } else {
        Exact
    }
}

/// One user's calls: the shown history, and the outcome of every answer so far.
struct Session<'a> {
    input: &'a RerankInput,
    env: &'a Env,
    history: String,
    outcomes: Vec<ParseOutcome>,
}

impl<'a> Session<'a> {
    fn new(input: &'a RerankInput, env: &'a Env, history_length: usize, hist_mask: f64) -> Self {
        Self {
            input,
            env,
            history: input.history_text(history_length, hist_mask, env.seed),
            outcomes: Vec::new(),
        }
    }

    async fn ask(&self, prompt: String) -> Result<String, AgpError> {
        self.env
            .llm
            .chat(Stage::Test, Some(self.input.user), prompt)
            .await
    }

    /// The `<id: text>` lines of `items` (backbone indices), numbered in the order given.
    fn candidates(&self, items: &[usize]) -> String {
        let texts: Vec<&str> = items
            .iter()
            .map(|&i| self.input.candidates[i].as_str())
            .collect();
        prompts::candidate_list(&texts)
    }

    fn finish(self, order: Vec<usize>) -> Ranking {
        Ranking {
            order,
            outcome: combine(&self.outcomes),
        }
    }

    /// Ask a one-id question about `n` items: the position chosen, `None` if unreadable.
    async fn choose(&mut self, prompt: String, n: usize) -> Result<Option<usize>, AgpError> {
        let answer = self.ask(prompt).await?;
        let parsed = parse_choice(&answer, n);
        self.outcomes.push(parsed.outcome);
        Ok(parsed.order.first().copied())
    }

    /// PRP's comparison: `a` shown first, then `b` shown first.
    async fn compare(&mut self, a: usize, b: usize) -> Result<Verdict, AgpError> {
        let prompt = prompts::prp_pair(&self.history, &self.candidates(&[a, b]));
        let a_first = self.choose(prompt, 2).await?;
        let prompt = prompts::prp_pair(&self.history, &self.candidates(&[b, a]));
        let b_first = self.choose(prompt, 2).await?;
        Ok(match (a_first, b_first) {
            (Some(0), Some(1)) => Verdict::First,
            (Some(1), Some(0)) => Verdict::Second,
            _ => Verdict::Tie,
        })
    }
}

/// The outcome of a pair asked in both orders. An answer that only follows the position (the
/// same slot both times) or that cannot be read is no preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    First,
    Second,
    Tie,
}

/// Picks the best of a set of candidates (backbone indices); returns its position in `set`.
/// `set[0]` is a heap node and the rest its children, in heap order.
trait Judge {
    async fn best_of(&mut self, set: &[usize]) -> Result<usize, AgpError>;
}

/// Where the model gives no preference, backbone order decides: that keeps the sort's
/// comparisons consistent, and a model that never answers leaves the backbone's list.
/// (llm-rankers keeps the heap's current order instead, which after the first swaps is no
/// longer the backbone's.)
fn backbone_best(set: &[usize]) -> usize {
    (0..set.len()).min_by_key(|&p| set[p]).unwrap_or(0)
}

/// Setwise: one call per set.
struct SetwiseJudge<'s, 'a>(&'s mut Session<'a>);

impl Judge for SetwiseJudge<'_, '_> {
    async fn best_of(&mut self, set: &[usize]) -> Result<usize, AgpError> {
        let s = &mut *self.0;
        let prompt = prompts::setwise_choose(&s.history, &s.candidates(set), set.len());
        Ok(s.choose(prompt, set.len())
            .await?
            .unwrap_or_else(|| backbone_best(set)))
    }
}

/// PRP-sort: each child against the best so far, as llm-rankers' binary `heapify` does (left
/// child against the node, then right child against the winner), the child shown first. A pair
/// without a preference is settled by `ties`.
struct PairwiseJudge<'s, 'a> {
    session: &'s mut Session<'a>,
    ties: PrpTies,
}

impl Judge for PairwiseJudge<'_, '_> {
    async fn best_of(&mut self, set: &[usize]) -> Result<usize, AgpError> {
        let mut best = 0;
        for p in 1..set.len() {
            let child_wins = match self.session.compare(set[p], set[best]).await? {
                Verdict::First => true,
                Verdict::Second => false,
                Verdict::Tie => match self.ties {
                    PrpTies::Parent => false,
                    PrpTies::Backbone => set[p] < set[best],
                },
            };
            if child_wins {
                best = p;
            }
        }
        Ok(best)
    }
}

/// Heapsort of candidates `0..n` (llm-rankers' `heapSort` with `num_child` children, sorting all
/// of them): build a heap whose every node the judge prefers to its children, then move the
/// root to the back and sift down the rest, `n − 1` times. Returns the candidates best first.
async fn heapsort(n: usize, arity: usize, judge: &mut impl Judge) -> Result<Vec<usize>, AgpError> {
    let arity = arity.max(1);
    let mut heap: Vec<usize> = (0..n).collect();
    if n >= 2 {
        for node in (0..=(n - 2) / arity).rev() {
            sift_down(&mut heap, n, node, arity, judge).await?;
        }
        for len in (1..n).rev() {
            heap.swap(0, len);
            sift_down(&mut heap, len, 0, arity, judge).await?;
        }
    }
    heap.reverse();
    Ok(heap)
}

async fn sift_down(
    heap: &mut [usize],
    len: usize,
    mut node: usize,
    arity: usize,
    judge: &mut impl Judge,
) -> Result<(), AgpError> {
    loop {
        let first = arity * node + 1;
        if first >= len {
            return Ok(());
        }
        let slots: Vec<usize> = std::iter::once(node)
            .chain(first..len.min(first + arity))
            .collect();
        let set: Vec<usize> = slots.iter().map(|&s| heap[s]).collect();
        let best = judge.best_of(&set).await?;
        let best = slots.get(best).copied().unwrap_or(node);
        if best == node {
            return Ok(());
        }
        heap.swap(node, best);
        node = best;
    }
}

#[async_trait]
impl Reranker for RankGpt {
    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let mut s = Session::new(input, env, self.cfg.history_length, self.cfg.hist_mask);
        let mut order: Vec<usize> = (0..input.candidates.len()).collect();
        for range in rankgpt_windows(order.len(), self.cfg.window, self.cfg.step) {
            let items = order[range.clone()].to_vec();
            let prompt = prompts::rankgpt_window(&s.history, &s.candidates(&items), items.len());
            let answer = s.ask(prompt).await?;
            // RankGPT's own reading (`[2] > [0] > ...`); ids the answer leaves out follow in
            // the window's order, so an unreadable answer keeps it.
            let parsed = parse_rankgpt(&answer, items.len());
            s.outcomes.push(parsed.outcome);
            for (slot, j) in range.zip(parsed.order) {
                order[slot] = items[j];
            }
        }
        Ok(s.finish(order))
    }
}

#[async_trait]
impl Reranker for PrpAllpair {
    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let mut s = Session::new(input, env, self.cfg.history_length, self.cfg.hist_mask);
        let n = input.candidates.len();
        let mut wins = vec![0.0f32; n];
        for a in 0..n {
            for b in a + 1..n {
                match s.compare(a, b).await? {
                    Verdict::First => wins[a] += 1.0,
                    Verdict::Second => wins[b] += 1.0,
                    Verdict::Tie => {
                        wins[a] += 0.5;
                        wins[b] += 0.5;
                    }
                }
            }
        }
        Ok(s.finish(order_by_scores(&wins)))
    }
}

#[async_trait]
impl Reranker for PrpSort {
    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let mut s = Session::new(input, env, self.cfg.history_length, self.cfg.hist_mask);
        let mut judge = PairwiseJudge {
            session: &mut s,
            ties: self.cfg.ties,
        };
        let order = heapsort(input.candidates.len(), 2, &mut judge).await?;
        Ok(s.finish(order))
    }
}

#[async_trait]
impl Reranker for Setwise {
    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let mut s = Session::new(input, env, self.cfg.history_length, self.cfg.hist_mask);
        let order = heapsort(
            input.candidates.len(),
            self.cfg.num_child,
            &mut SetwiseJudge(&mut s),
        )
        .await?;
        Ok(s.finish(order))
    }
}

#[async_trait]
impl Reranker for First {
    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let s = Session::new(input, env, self.cfg.history_length, self.cfg.hist_mask);
        let n = input.candidates.len();
        let all: Vec<usize> = (0..n).collect();
        // With rank_llm's `[` the prompt asks for a bracketed list, so the prefill is the
        // answer's own start; without one it is the request this crate first sent.
        let prefill = self.cfg.prefill.as_str();
        let prompt = if prefill.is_empty() {
            prompts::first_listwise(&s.history, &s.candidates(&all), n)
        } else {
            prompts::first_listwise_bracketed(&s.history, &s.candidates(&all), n)
        };
        let labels = all.iter().map(ToString::to_string).collect();
        let logprobs = env
            .llm
            .label_logprobs(Stage::Test, Some(input.user), prompt, labels, prefill)
            .await?;
        let outcome = if logprobs.iter().any(|l| l.is_finite()) {
            ParseOutcome::Pointwise
        } else {
            ParseOutcome::Unparseable
        };
        Ok(Ranking {
            order: order_by_scores(&logprobs),
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A judge that prefers candidates by a fixed score and counts its calls as `cost` would.
    struct Oracle {
        score: Vec<i32>,
        calls: u64,
        pairwise: bool,
    }

    impl Judge for Oracle {
        async fn best_of(&mut self, set: &[usize]) -> Result<usize, AgpError> {
            self.calls += if self.pairwise {
                prp_calls_per_node(set.len() - 1)
            } else {
                1
            };
            Ok((0..set.len())
                .max_by_key(|&p| self.score[set[p]])
                .unwrap_or(0))
        }
    }

    fn sort_with(score: Vec<i32>, arity: usize, pairwise: bool) -> (Vec<usize>, u64) {
        let n = score.len();
        let mut o = Oracle {
            score,
            calls: 0,
            pairwise,
        };
        let order = futures::executor::block_on(heapsort(n, arity, &mut o)).unwrap();
        (order, o.calls)
    }

    #[test]
    fn windows_slide_from_the_back_and_end_at_the_front() {
        assert_eq!(rankgpt_windows(10, 4, 2), [6..10, 4..8, 2..6, 0..4]);
        assert_eq!(rankgpt_windows(10, 4, 3), [6..10, 3..7, 0..4]);
        // RankGPT's own loop would stop after 1..6 and never rank item 0.
        assert_eq!(rankgpt_windows(10, 5, 2), [5..10, 3..8, 1..6, 0..5]);
        assert_eq!(
            rankgpt_windows(10, 10, 5),
            vec![Range { start: 0, end: 10 }]
        );
        assert_eq!(rankgpt_windows(3, 10, 5), vec![Range { start: 0, end: 3 }]);
        assert_eq!(rankgpt_windows(10, 2, 1).len(), 9);
        assert!(rankgpt_windows(1, 4, 2).is_empty());
        // Steps that validation rejects still end, with the list covered.
        assert_eq!(rankgpt_windows(10, 4, 4), [6..10, 2..6, 0..4]);
        assert_eq!(rankgpt_windows(10, 4, 0).len(), 7);
        for (n, w, s) in [(10, 4, 2), (10, 4, 3), (10, 5, 2), (10, 3, 2), (20, 7, 3)] {
            assert_eq!(rankgpt_windows(n, w, s).len(), 1 + (n - w).div_ceil(s));
        }
    }

    #[test]
    fn heapsort_sorts_and_stays_within_its_call_bounds() {
        let scores: Vec<Vec<i32>> = vec![
            (0..10).collect(),
            (0..10).rev().collect(),
            vec![3, 9, 0, 4, 8, 1, 7, 2, 6, 5],
            vec![5, 5, 1, 5, 0, 2, 2, 9, 1, 5],
        ];
        for arity in 1..=9 {
            for pairwise in [false, true] {
                if pairwise && arity != 2 {
                    continue;
                }
                let cost = |c: usize| if pairwise { prp_calls_per_node(c) } else { 1 };
                let (lo, hi) = heapsort_calls(10, arity, cost);
                for score in &scores {
                    let (order, calls) = sort_with(score.clone(), arity, pairwise);
                    let ranked: Vec<i32> = order.iter().map(|&i| score[i]).collect();
                    assert!(ranked.is_sorted_by(|a, b| a >= b), "{arity}: {ranked:?}");
                    assert!(
                        (lo..=hi).contains(&calls),
                        "{arity}: {lo} <= {calls} <= {hi}"
                    );
                }
            }
        }
        // A judge that always keeps the node (llm-rankers' reading of an unreadable answer)
        // makes the fewest calls.
        struct KeepNode(u64);
        impl Judge for KeepNode {
            async fn best_of(&mut self, _: &[usize]) -> Result<usize, AgpError> {
                self.0 += 1;
                Ok(0)
            }
        }
        let mut keep = KeepNode(0);
        futures::executor::block_on(heapsort(10, 3, &mut keep)).unwrap();
        assert_eq!(keep.0, heapsort_calls(10, 3, |_| 1).0);
        assert_eq!(heapsort_calls(10, 3, |_| 1), (11, 17));
        assert_eq!(heapsort_calls(10, 2, prp_calls_per_node), (48, 88));
        assert_eq!(heapsort_calls(1, 3, |_| 1), (0, 0));
        assert_eq!(heapsort_calls(2, 2, prp_calls_per_node), (2, 2));
    }

    #[test]
    fn outcomes_combine() {
        use ParseOutcome::*;
        assert_eq!(combine(&[]), Backbone);
        assert_eq!(combine(&[Exact, Exact]), Exact);
        assert_eq!(combine(&[Exact, NoMarkers]), NoMarkers);
        assert_eq!(combine(&[Unparseable, Unparseable]), Unparseable);
        assert_eq!(combine(&[Exact, Unparseable]), Partial);
        assert_eq!(combine(&[NoMarkers, Partial]), Partial);
    }
}
