//! Candidate-order controls: the `Ordered` wrapper's index mapping, Borda aggregation over
//! seeded shuffles, the first-shown statistic, and the calls they cost.

mod common;

use std::sync::{Arc, Mutex};

use agp::{
    AgpError, BatchOutcome, CandidateOrder, Env, FirstConfig, FirstShown, ListwiseConfig, Llm,
    MethodConfig, Ordered, ParseOutcome, Ranking, RerankInput, Reranker, RunOptions, Stage,
    TrainStep, UserCase, run_method, run_method_in_order,
};
use agp_llm::{FailureReason, Sampling};
use async_trait::async_trait;
use common::{FailRule, FakeModel, K, RankerAnswers, fixture};

const SEED: u64 = 11;

fn env(model: FakeModel) -> Env {
    Env {
        llm: Llm::new(Arc::new(model), Sampling::default()),
        jobs: 1,
        seed: SEED,
        log: None,
    }
}

/// The fixture's item number in a candidate text (`Movie 57 (Drama)` → 57): a score only the
/// test knows, independent of where the candidate is shown.
fn hidden_score(text: &str) -> u32 {
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

fn input(user: u32) -> RerankInput {
    RerankInput {
        user,
        history: vec!["Movie 1 (Drama)".into()],
        candidates: (0..K)
            .map(|i| format!("Movie {} (Drama)", 40 + i * 3))
            .collect(),
    }
}

/// Answers the candidates in the order shown: pure position bias.
struct Copies;

#[async_trait]
impl Reranker for Copies {
    async fn rerank(&self, input: &RerankInput, _env: &Env) -> Result<Ranking, AgpError> {
        Ok(Ranking {
            order: (0..input.candidates.len()).collect(),
            outcome: ParseOutcome::Exact,
        })
    }
}

/// Sorts by the hidden score, highest first, whatever the order shown.
struct ByHiddenScore;

#[async_trait]
impl Reranker for ByHiddenScore {
    async fn rerank(&self, input: &RerankInput, _env: &Env) -> Result<Ranking, AgpError> {
        let mut order: Vec<usize> = (0..input.candidates.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(hidden_score(&input.candidates[i])));
        Ok(Ranking {
            order,
            outcome: ParseOutcome::Pointwise,
        })
    }
}

#[tokio::test]
async fn a_method_that_copies_the_shown_order_ranks_reversed_as_backbone_reversed() {
    let env = env(FakeModel::default());
    let w = Ordered::new(Box::new(Copies), CandidateOrder::Reversed);
    let (ranking, shown) = w.rerank_shown(&input(3), &env).await.unwrap();
    assert_eq!(ranking.order, (0..K).rev().collect::<Vec<_>>());
    assert_eq!(ranking.outcome, ParseOutcome::Exact);
    assert_eq!(
        shown,
        Some(FirstShown {
            shows: 1,
            answered: 1,
            top_first: 1
        })
    );
    let plain = Ordered::new(Box::new(Copies), CandidateOrder::Backbone);
    assert_eq!(
        plain.rerank(&input(3), &env).await.unwrap().order,
        (0..K).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_method_that_reads_the_items_ranks_the_same_under_every_order() {
    let env = env(FakeModel::default());
    let truth = ByHiddenScore.rerank(&input(5), &env).await.unwrap().order;
    for order in [
        CandidateOrder::Backbone,
        CandidateOrder::Reversed,
        CandidateOrder::Shuffled(1),
        CandidateOrder::Shuffled(3),
        CandidateOrder::Shuffled(8),
    ] {
        let w = Ordered::new(Box::new(ByHiddenScore), order);
        let (ranking, shown) = w.rerank_shown(&input(5), &env).await.unwrap();
        assert_eq!(ranking.order, truth, "{order}");
        assert_eq!(ranking.outcome, ParseOutcome::Pointwise, "{order}");
        let shown = shown.unwrap();
        assert_eq!(u64::from(shown.shows), order.shows(), "{order}");
        assert_eq!(shown.answered, shown.shows);
        // Its top item is the highest score, shown first exactly when a permutation put it
        // there.
        let top = truth[0];
        let expected = (0..order.shows())
            .filter(|&s| order.permutation(SEED, 5, s, K)[0] == top)
            .count() as u32;
        assert_eq!(shown.top_first, expected, "{order}");
    }
}

#[tokio::test]
async fn shuffled_copies_are_aggregated_by_borda_count() {
    let env = env(FakeModel::default());
    let order = CandidateOrder::Shuffled(3);
    let w = Ordered::new(Box::new(Copies), order);
    let (ranking, shown) = w.rerank_shown(&input(2), &env).await.unwrap();
    let answers: Vec<Vec<usize>> = (0..3).map(|s| order.permutation(SEED, 2, s, K)).collect();
    assert_eq!(ranking.order, agp::order::borda(&answers, K));
    let mut sorted = ranking.order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..K).collect::<Vec<_>>());
    assert_eq!(shown.unwrap().rate(), Some(1.0));
    // Again: the shuffles depend on seed, user and show only.
    assert_eq!(w.rerank(&input(2), &env).await.unwrap(), ranking);
}

/// Answers nothing on every show whose first candidate has an even hidden score, and the
/// shown order otherwise.
struct SometimesUnreadable;

#[async_trait]
impl Reranker for SometimesUnreadable {
    async fn rerank(&self, input: &RerankInput, _env: &Env) -> Result<Ranking, AgpError> {
        if hidden_score(&input.candidates[0]).is_multiple_of(2) {
            return Ok(Ranking {
                order: vec![],
                outcome: ParseOutcome::Unparseable,
            });
        }
        Ok(Ranking {
            order: vec![0, 1],
            outcome: ParseOutcome::Partial,
        })
    }
}

#[tokio::test]
async fn unread_shows_place_nothing_and_make_the_user_partial() {
    let env = env(FakeModel::default());
    let order = CandidateOrder::Shuffled(6);
    let candidates = input(0).candidates;
    // A user whose six shows open with both parities.
    let user = (0..100u32)
        .find(|&u| {
            let odd = (0..6)
                .filter(|&s| {
                    hidden_score(&candidates[order.permutation(SEED, u, s, K)[0]]) % 2 == 1
                })
                .count();
            (1..6).contains(&odd)
        })
        .expect("such a user");
    let w = Ordered::new(Box::new(SometimesUnreadable), order);
    let (ranking, shown) = w.rerank_shown(&input(user), &env).await.unwrap();
    let shown = shown.unwrap();
    assert_eq!(ranking.outcome, ParseOutcome::Partial);
    assert!(shown.answered > 0 && shown.answered < 6);
    assert_eq!(shown.top_first, shown.answered);
    let answers: Vec<Vec<usize>> = (0..6)
        .map(|s| order.permutation(SEED, user, s, K))
        .filter(|p| hidden_score(&candidates[p[0]]) % 2 == 1)
        .map(|p| vec![p[0], p[1]])
        .collect();
    assert_eq!(ranking.order, agp::order::borda(&answers, K));
    assert!(ranking.order.len() < K, "items no answer placed stay out");
    // A user all of whose shows open with an even score is unparseable.
    let all_even = Ordered::new(Box::new(SometimesUnreadable), CandidateOrder::Backbone);
    let (r, s) = all_even.rerank_shown(&input(user), &env).await.unwrap();
    assert_eq!((r.order.len(), r.outcome), (0, ParseOutcome::Unparseable));
    assert_eq!(s.unwrap().rate(), None);
}

/// Records the training cases it was given.
#[derive(Default)]
struct Learner {
    seen: Arc<Mutex<Vec<UserCase>>>,
}

#[async_trait]
impl Reranker for Learner {
    fn epochs(&self) -> usize {
        1
    }

    fn n_train_users(&self) -> usize {
        6
    }

    async fn train_batch(
        &mut self,
        _step: TrainStep,
        batch: &[UserCase],
        _env: &Env,
    ) -> Result<BatchOutcome, AgpError> {
        self.seen.lock().unwrap().extend_from_slice(batch);
        Ok(BatchOutcome::default())
    }

    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        Copies.rerank(input, env).await
    }
}

#[tokio::test]
async fn training_users_are_shown_under_their_first_permutation_with_the_ground_truth_moved() {
    let (ds, cands) = fixture();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut w = Ordered::new(
        Box::new(Learner { seen: seen.clone() }),
        CandidateOrder::Shuffled(2),
    );
    let opts = RunOptions {
        seed: SEED,
        ..RunOptions::default()
    };
    let run = agp::run_reranker(
        &mut w,
        "learner",
        serde_json::Value::Null,
        &ds,
        &cands,
        Arc::new(FakeModel::default()),
        &opts,
    )
    .await
    .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    for case in seen.iter() {
        let u = case.input.user;
        let gt_text = &ds.item_text[ds.test[u as usize] as usize];
        assert_eq!(&case.input.candidates[case.gt_index], gt_text);
        let perm = CandidateOrder::Shuffled(2).permutation(SEED, u, 0, K);
        let list = &cands.lists[u as usize].items;
        let shown: Vec<&String> = perm
            .iter()
            .map(|&i| &ds.item_text[list[i] as usize])
            .collect();
        assert_eq!(case.input.candidates.iter().collect::<Vec<_>>(), shown);
    }
    // Test users were evaluated under both shows.
    assert!(
        run.last
            .users
            .iter()
            .all(|u| u.first_shown.is_some_and(|f| f.shows == 2))
    );
}

#[tokio::test]
async fn shuffled_runs_cost_n_times_the_calls_and_record_the_first_shown_rate() {
    let (ds, cands) = fixture();
    let n_test = cands.test_users.len() as u64;
    let first = MethodConfig::First(FirstConfig::default());
    let opts = RunOptions {
        seed: SEED,
        ..RunOptions::default()
    };
    let order = CandidateOrder::Shuffled(3);
    assert_eq!(
        order.calls_per_user(first.calls_per_user(K)).exact(),
        Some(3)
    );
    let plain = run_method(
        &first,
        &ds,
        &cands,
        Arc::new(FakeModel::answering(RankerAnswers::PreferHigherIds)),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(plain.calls[&Stage::Test].calls, n_test);
    assert!(plain.last.users.iter().all(|u| u.first_shown.is_none()));
    for (answers, order) in [
        (RankerAnswers::PreferHigherIds, CandidateOrder::Shuffled(3)),
        (RankerAnswers::PreferHigherIds, CandidateOrder::Reversed),
        (RankerAnswers::FirstShown, CandidateOrder::Shuffled(3)),
    ] {
        let run = run_method_in_order(
            &first,
            order,
            &ds,
            &cands,
            Arc::new(FakeModel::answering(answers)),
            &opts,
        )
        .await
        .unwrap();
        assert_eq!(run.label, format!("FIRST [{order}]"));
        assert_eq!(run.config["candidate_order"], order.to_string());
        assert_eq!(run.calls[&Stage::Test].calls, n_test * order.shows());
        let rates: Vec<f64> = run
            .last
            .users
            .iter()
            .map(|u| u.first_shown.and_then(|f| f.rate()).unwrap())
            .collect();
        if answers == RankerAnswers::PreferHigherIds {
            // Reading the items, the model ranks every user as without the control.
            assert_eq!(run.last.users.len(), plain.last.users.len());
            for (a, b) in run.last.users.iter().zip(&plain.last.users) {
                assert_eq!((a.user, a.rank), (b.user, b.rank), "{order}");
            }
            // The fixture's lists ascend, so the highest id is last in backbone order: shown
            // first under `reversed` every time, and only sometimes under shuffles.
            if order == CandidateOrder::Reversed {
                assert!(rates.iter().all(|&r| r == 1.0), "{rates:?}");
            } else {
                assert!(rates.iter().any(|&r| r < 1.0), "{order}: {rates:?}");
            }
        } else {
            assert!(rates.iter().all(|&r| r == 1.0), "{rates:?}");
        }
    }
}

#[tokio::test]
async fn the_backbone_order_sends_exactly_the_requests_of_a_plain_run() {
    let (ds, cands) = fixture();
    let cfg = MethodConfig::LlmDir(ListwiseConfig::default());
    let plain_model = Arc::new(FakeModel::default());
    let plain = run_method(
        &cfg,
        &ds,
        &cands,
        plain_model.clone(),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let ordered_model = Arc::new(FakeModel::default());
    let ordered = run_method_in_order(
        &cfg,
        CandidateOrder::Backbone,
        &ds,
        &cands,
        ordered_model.clone(),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let sorted = |m: &FakeModel| {
        let mut p = m.prompts.lock().unwrap().clone();
        p.sort_by(|a, b| a.1.cmp(&b.1));
        p
    };
    assert_eq!(sorted(&plain_model), sorted(&ordered_model));
    assert_eq!(ordered.label, plain.label);
    for (a, b) in ordered.last.users.iter().zip(&plain.last.users) {
        assert_eq!((a.user, a.rank, a.parse), (b.user, b.rank, b.parse));
        assert_eq!(a.first_shown.map(|f| f.shows), Some(1));
    }
}

#[tokio::test]
async fn a_failed_show_counts_as_unread_and_a_user_fails_only_when_every_show_did() {
    let (ds, cands) = fixture();
    let first = MethodConfig::First(FirstConfig::default());
    // Fail the first call of the run: one show of one user.
    let model = FakeModel::failing(vec![FailRule::nth_call(0, FailureReason::Refusal)]);
    let run = run_method_in_order(
        &first,
        CandidateOrder::Shuffled(2),
        &ds,
        &cands,
        Arc::new(model),
        &RunOptions {
            jobs: 1,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(run.failures.get(&FailureReason::Refusal), Some(&1));
    let hit: Vec<_> = run
        .last
        .users
        .iter()
        .filter(|u| u.parse == ParseOutcome::Partial)
        .collect();
    assert_eq!(hit.len(), 1);
    assert_eq!(
        hit[0].first_shown.map(|f| (f.shows, f.answered)),
        Some((2, 1))
    );
    // Both shows of the first user fail: it scores as a failed call.
    let model = FakeModel::failing(vec![
        FailRule::nth_call(0, FailureReason::Refusal),
        FailRule::nth_call(1, FailureReason::Refusal),
    ]);
    let run = run_method_in_order(
        &first,
        CandidateOrder::Shuffled(2),
        &ds,
        &cands,
        Arc::new(model),
        &RunOptions {
            jobs: 1,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    let failed = &run.last.users[0];
    assert_eq!(failed.parse, ParseOutcome::CallFailed);
    assert_eq!(failed.failure, Some(FailureReason::Refusal));
    assert_eq!(failed.first_shown, None);
}
