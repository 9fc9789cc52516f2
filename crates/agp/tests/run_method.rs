//! `run_method` end to end against the rule-based fake model of `common`.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use agp::Stage;
use agp::{
    AgpConfig, FailurePolicy, ListwiseConfig, MethodConfig, MethodRun, ParseOutcome,
    PointwiseConfig, RunOptions, run_method,
};
use common::{FakeModel, K, fixture};

fn opts() -> RunOptions {
    RunOptions {
        jobs: 4,
        ..RunOptions::default()
    }
}

async fn run(cfg: &MethodConfig, model: Arc<FakeModel>, opts: &RunOptions) -> MethodRun {
    let (ds, cands) = fixture();
    run_method(cfg, &ds, &cands, model, opts)
        .await
        .expect("run succeeds")
}

/// Backbone position of each test user's ground truth (the fixture puts it at u % K).
fn gt_positions() -> Vec<(u32, usize)> {
    let (_, cands) = fixture();
    cands
        .test_users
        .iter()
        .map(|&u| (u, u as usize % K))
        .collect()
}

fn small_agp() -> AgpConfig {
    AgpConfig {
        epochs: 2,
        batch_size: 5,
        n_train_users: Some(20),
        ..AgpConfig::default()
    }
}

#[tokio::test]
async fn base_keeps_backbone_order() {
    let model = Arc::new(FakeModel::default());
    let r = run(
        &MethodConfig::Base(Default::default()),
        model.clone(),
        &opts(),
    )
    .await;
    assert_eq!(model.calls.load(Ordering::SeqCst), 0);
    assert_eq!(r.epochs.len(), 1);
    for (res, (u, p)) in r.last.users.iter().zip(gt_positions()) {
        assert_eq!((res.user, res.rank), (u, p + 1));
        assert_eq!(res.parse, ParseOutcome::Backbone);
    }
    let mean: f64 = gt_positions()
        .iter()
        .map(|&(_, p)| agp::ndcg_at_10(p + 1))
        .sum::<f64>()
        / 12.0;
    assert!((r.last.test.ndcg10 - mean).abs() < 1e-12);
    assert_eq!(r.best_valid.as_ref().map(|s| s.epoch), Some(1));
    assert_eq!(r.backbone, r.last.test);
    assert!((r.random_order_ndcg - 0.4544).abs() < 1e-4);
}

#[tokio::test]
async fn llm_dir_and_cot_follow_the_model_answer() {
    for cfg in [
        MethodConfig::LlmDir(ListwiseConfig::default()),
        MethodConfig::LlmCot(ListwiseConfig::default()),
    ] {
        let model = Arc::new(FakeModel::default());
        let r = run(&cfg, model.clone(), &opts()).await;
        // The fake reverses the list when the prompt never says "genre".
        for (res, (_, p)) in r.last.users.iter().zip(gt_positions()) {
            assert_eq!(res.rank, K - p, "{}", r.label);
            assert_eq!(res.parse, ParseOutcome::Exact);
        }
        // One call per test user; a single-epoch method pays nothing for validation users.
        assert_eq!(model.calls.load(Ordering::SeqCst), 12);
        assert_eq!(r.calls[&Stage::Test].calls, 12);
        assert_eq!(r.parse_counts[&ParseOutcome::Exact], 12);
        assert_eq!(r.n_valid_users, 0);
        assert_eq!(r.best_valid.as_ref().map(|s| s.epoch), Some(1));
        assert!(r.prompt_tokens > 0);
    }
}

#[tokio::test]
async fn agp_training_loop_counts_and_verify_rule() {
    let model = Arc::new(FakeModel::default());
    let r = run(&MethodConfig::Agp(small_agp()), model.clone(), &opts()).await;
    assert_eq!(r.label, "AGP-T20");
    assert_eq!(r.epochs.len(), 2);
    // Batch 0 (ranks 10..6 reversed) improves to 1..5 with the edited prompt: kept. Every
    // later edit yields the same prompt and the same ranks: not a strict improvement.
    assert_eq!(
        (r.epochs[0].accepted_edits, r.epochs[0].discarded_edits),
        (1, 3)
    );
    assert_eq!(
        (r.epochs[1].accepted_edits, r.epochs[1].discarded_edits),
        (0, 4)
    );
    assert_eq!(
        r.final_prompt.as_deref(),
        Some("List the user's favourite genre first.")
    );
    // With the learned prompt the fake keeps backbone order.
    for (res, (_, p)) in r.last.users.iter().zip(gt_positions()) {
        assert_eq!(res.rank, p + 1);
    }
    let c = |s: Stage| r.calls.get(&s).map_or(0, |t| t.calls);
    assert_eq!(c(Stage::Profile), 40);
    assert_eq!(c(Stage::Rerank), 40);
    // Users ranked first get no feedback: 19 of 20 users in epoch 1, 18 in epoch 2.
    assert_eq!(c(Stage::Feedback), 37);
    assert_eq!(c(Stage::Summarize), 8);
    assert_eq!(c(Stage::Edit), 8);
    assert_eq!(c(Stage::Verify), 80);
    assert_eq!(c(Stage::Test), 2 * 20 * 2);
    assert_eq!(r.total_calls, model.calls.load(Ordering::SeqCst) as u64);
    // Eq. 7 assumes feedback for every user and no verify step: (5·3+2)·20/5 = 68 per epoch.
    assert_eq!(r.eq7_calls_per_epoch, Some(68.0));
    let without_verify = c(Stage::Profile)
        + c(Stage::Rerank)
        + c(Stage::Feedback)
        + c(Stage::Summarize)
        + c(Stage::Edit);
    assert_eq!(without_verify, 2 * 68 - 3);
    assert_eq!(r.counted_calls_per_epoch, Some((2.0 * 68.0 - 3.0) / 2.0));
    // Train metrics: epoch 1 batch 0 post-edit ranks 1..5, then 6..10, 1..5, 6..10.
    let train = r.epochs[0].train.as_ref().expect("train metrics");
    assert_eq!(train.n_users, 20);
    assert!((train.mean_rank - 5.5).abs() < 1e-12);
    // Flat test curve: the first epoch wins the tie.
    assert_eq!(r.best_test.epoch, 1);
    assert_eq!(r.last.epoch, 2);
}

#[tokio::test]
async fn summarization_off_and_pbf_off_change_the_calls() {
    let cfg = AgpConfig {
        summarize: false,
        pbf: false,
        ..small_agp()
    };
    let model = Arc::new(FakeModel::default());
    let r = run(&MethodConfig::Agp(cfg), model, &opts()).await;
    assert!(!r.calls.contains_key(&Stage::Summarize));
    assert_eq!(r.calls[&Stage::Edit].calls, 8);
}

#[tokio::test]
async fn rerank_opt_learns_the_rerank_instruction() {
    let model = Arc::new(FakeModel::default());
    let r = run(&MethodConfig::RerankOpt(small_agp()), model, &opts()).await;
    // The initial rerank instruction already says "genres", so the fake keeps backbone order.
    assert!(!r.calls.contains_key(&Stage::Profile));
    for (res, (_, p)) in r.last.users.iter().zip(gt_positions()) {
        assert_eq!(res.rank, p + 1);
    }
    assert!(r.final_prompt.is_some());
}

/// Expected pointwise order under the fake: candidates of the first genre (in the fake's list
/// order) that appears in the prefix come first, ties in backbone order.
#[tokio::test]
async fn pointwise_variants_rank_by_scores() {
    let (ds, cands) = fixture();
    let model = Arc::new(FakeModel::default());
    let cfg = MethodConfig::LlmDirPointwise(PointwiseConfig::default());
    let r = run(&cfg, model.clone(), &opts()).await;
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        12,
        "one score request per test user"
    );
    // Each candidate is its own request: the ledger counts what is paid for.
    assert_eq!(r.calls[&Stage::Test].calls, 120);
    assert_eq!(r.calls[&Stage::Test].scored_items, 120);
    for res in &r.last.users {
        let u = res.user as usize;
        let hist: Vec<&str> = ds
            .history_before_test(res.user)
            .iter()
            .rev()
            .take(5)
            .map(|&i| ds.item_text[i as usize].as_str())
            .collect();
        let liked = ["Comedy", "Drama", "Horror", "Sci-Fi"]
            .into_iter()
            .find(|g| hist.iter().any(|h| h.contains(g)));
        let texts: Vec<&str> = cands.lists[u]
            .items
            .iter()
            .map(|&i| ds.item_text[i as usize].as_str())
            .collect();
        let mut order: Vec<usize> = (0..K)
            .filter(|&i| liked.is_some_and(|g| texts[i].contains(g)))
            .collect();
        let rest: Vec<usize> = (0..K).filter(|i| !order.contains(i)).collect();
        order.extend(rest);
        let gt = u % K;
        assert_eq!(res.rank, order.iter().position(|&i| i == gt).unwrap() + 1);
        assert_eq!(res.parse, ParseOutcome::Pointwise);
    }

    let model = Arc::new(FakeModel::default());
    let r = run(&MethodConfig::AgpPointwise(small_agp()), model, &opts()).await;
    assert_eq!(r.label, "AGP-T20 (pointwise)");
    assert!(r.calls[&Stage::Profile].calls > 0);
    assert_eq!(
        r.calls[&Stage::Rerank].calls,
        r.calls[&Stage::Profile].calls * K as u64
    );
    assert_eq!(
        r.calls[&Stage::Rerank].scored_items,
        r.calls[&Stage::Rerank].calls
    );
    assert!(
        r.last
            .users
            .iter()
            .all(|u| u.parse == ParseOutcome::Pointwise)
    );
}

#[tokio::test]
async fn results_do_not_depend_on_concurrency() {
    let cfg = MethodConfig::Agp(small_agp());
    let a = run(
        &cfg,
        Arc::new(FakeModel::default()),
        &RunOptions { jobs: 1, ..opts() },
    )
    .await;
    let b = run(
        &cfg,
        Arc::new(FakeModel::default()),
        &RunOptions { jobs: 16, ..opts() },
    )
    .await;
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
}

#[tokio::test]
async fn llm_failure_names_stage_user_and_status() {
    let (ds, cands) = fixture();
    let cfg = MethodConfig::LlmDir(ListwiseConfig::default());
    let err = run_method(
        &cfg,
        &ds,
        &cands,
        Arc::new(FakeModel::failing_after(0)),
        &RunOptions {
            on_failure: FailurePolicy::Stop,
            ..opts()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("stage Test"), "{err}");
    assert!(err.contains("for user 2"), "{err}");
    assert!(err.contains("HTTP 503"), "{err}");
    assert!(err.contains("request fake-"), "{err}");
}

#[tokio::test]
async fn stale_candidate_file_is_rejected() {
    let (ds, mut cands) = fixture();
    cands.dataset_checksum = "other".into();
    let err = run_method(
        &MethodConfig::Base(Default::default()),
        &ds,
        &cands,
        Arc::new(FakeModel::default()),
        &opts(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("(other)") && err.contains("stale"), "{err}");
}

#[tokio::test]
async fn runs_sharing_a_ledger_book_each_call_once_in_it() {
    let ledger = agp_llm::UsageLedger::default();
    let shared = RunOptions {
        ledger: ledger.clone(),
        ..opts()
    };
    let agp = run(
        &MethodConfig::Agp(small_agp()),
        Arc::new(FakeModel::default()),
        &shared,
    )
    .await;
    let pointwise = run(
        &MethodConfig::LlmDirPointwise(PointwiseConfig::default()),
        Arc::new(FakeModel::default()),
        &shared,
    )
    .await;
    let prices = agp_llm::PriceTable::default();
    let total = ledger.total(&prices);
    assert_eq!(total.calls, agp.total_calls + pointwise.total_calls);
    assert_eq!(
        total.prompt_tokens,
        agp.prompt_tokens + pointwise.prompt_tokens
    );
    assert_eq!(total.scored_items, 120);
    let by_account = ledger.totals_by_account(&prices);
    for (stage, t) in &agp.calls {
        let extra = pointwise.calls.get(stage).map_or(0, |p| p.calls);
        assert_eq!(
            by_account[stage.as_str()].calls,
            t.calls + extra,
            "{stage:?}"
        );
    }
}
