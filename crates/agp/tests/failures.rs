//! Failed LLM calls: under `continue` a non-fatal failure is an outcome for one user or one
//! training step and is counted; under `stop`, and for fatal reasons always, it ends the run.
//! A checkpoint holding a transient failure starts over, and with recordings pays only the
//! failed calls again.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use agp::Stage;
use agp::{
    AgpConfig, FailurePolicy, ListwiseConfig, MethodConfig, MethodRun, ParseOutcome,
    PointwiseConfig, RunOptions, UnparseableRule, run_method,
};
use agp_llm::{ChatModel, FailureReason, RecordMode, Recorder, Store};
use common::{FailRule, FakeModel, K, fixture};

/// The candidate block every rerank prompt of user `u` shows; no other user's is the same.
fn candidate_block(u: u32) -> String {
    let (ds, cands) = fixture();
    let block = |u: usize| {
        let texts: Vec<&str> = cands.lists[u]
            .items
            .iter()
            .map(|&i| ds.item_text[i as usize].as_str())
            .collect();
        agp::prompts::candidate_list(&texts)
    };
    let mine = block(u as usize);
    assert_eq!(
        (0..cands.lists.len()).filter(|&v| block(v) == mine).count(),
        1
    );
    mine
}

/// The 5-item history block every profile prompt of user `u` shows; unique to `u`.
fn history_block(u: u32) -> String {
    let (ds, cands) = fixture();
    let block = |u: u32| {
        let h = ds.history_before_test(u);
        let texts: Vec<&str> = h[h.len() - 5..]
            .iter()
            .map(|&i| ds.item_text[i as usize].as_str())
            .collect();
        agp::prompts::history_lines(&texts)
    };
    let mine = block(u);
    let n = cands.lists.len() as u32;
    assert_eq!((0..n).filter(|&v| block(v) == mine).count(), 1);
    mine
}

fn small_agp() -> MethodConfig {
    MethodConfig::Agp(AgpConfig {
        epochs: 2,
        batch_size: 5,
        n_train_users: Some(20),
        ..AgpConfig::default()
    })
}

fn opts(log_dir: Option<&Path>) -> RunOptions {
    RunOptions {
        jobs: 4,
        log_dir: log_dir.map(Path::to_path_buf),
        ..RunOptions::default()
    }
}

async fn run(
    cfg: &MethodConfig,
    model: Arc<dyn ChatModel>,
    opts: &RunOptions,
) -> Result<MethodRun, agp::AgpError> {
    let (ds, cands) = fixture();
    run_method(cfg, &ds, &cands, model, opts).await
}

fn json(r: &MethodRun) -> serde_json::Value {
    serde_json::to_value(r).unwrap()
}

fn calls(r: &MethodRun, s: Stage) -> (u64, u64) {
    r.calls.get(&s).map_or((0, 0), |t| (t.calls, t.failed))
}

fn prompt_events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "prompt")
        .collect()
}

const USER: u32 = 25;

fn refuse_user() -> FailRule {
    FailRule::containing(candidate_block(USER), FailureReason::Refusal)
}

#[tokio::test]
async fn refusal_for_one_test_user_scores_rank_k_and_the_run_finishes() {
    for unparseable in [UnparseableRule::Zero, UnparseableRule::Deepseek] {
        let cfg = MethodConfig::LlmDir(ListwiseConfig {
            unparseable,
            ..ListwiseConfig::default()
        });
        let model = Arc::new(FakeModel::failing(vec![refuse_user()]));
        let r = run(&cfg, model, &opts(None))
            .await
            .expect("the run goes on");
        for u in &r.last.users {
            if u.user == USER {
                // The reference code's unusable answer, never the `deepseek` credit.
                assert_eq!((u.rank, u.ndcg), (K, 0.0));
                assert_eq!(u.parse, ParseOutcome::CallFailed);
                assert_eq!(u.failure, Some(FailureReason::Refusal));
            } else {
                assert_eq!(u.rank, K - u.user as usize % K);
                assert_eq!((u.parse, u.failure), (ParseOutcome::Exact, None));
            }
        }
        assert_eq!(r.failures, BTreeMap::from([(FailureReason::Refusal, 1)]));
        assert_eq!(calls(&r, Stage::Test), (11, 1));
        assert_eq!(r.total_calls, 11);
        assert_eq!(r.parse_counts[&ParseOutcome::CallFailed], 1);
        let mean = r.last.users.iter().map(|u| u.ndcg).sum::<f64>() / 12.0;
        assert!((r.last.test.ndcg10 - mean).abs() < 1e-12);
    }
}

#[tokio::test]
async fn failures_serialise_and_runs_without_them_do_not_mention_them() {
    let cfg = MethodConfig::LlmDir(ListwiseConfig::default());
    let failed = run(
        &cfg,
        Arc::new(FakeModel::failing(vec![refuse_user()])),
        &opts(None),
    )
    .await
    .unwrap();
    let text = serde_json::to_string(&failed).unwrap();
    assert!(text.contains(r#""failures":{"refusal":1}"#), "{text}");
    assert!(text.contains(r#""failed":1"#), "{text}");
    assert!(text.contains(r#""parse":"call_failed","failure":"refusal""#));
    let back: MethodRun = serde_json::from_str(&text).unwrap();
    assert_eq!(back, failed);

    let clean = run(&cfg, Arc::new(FakeModel::default()), &opts(None))
        .await
        .unwrap();
    let text = serde_json::to_string(&clean).unwrap();
    for key in ["failures", "failed", "failure", "call_failed", "truncated"] {
        assert!(!text.contains(key), "{key} in {text}");
    }
}

#[tokio::test]
async fn stop_policy_returns_the_error() {
    let cfg = MethodConfig::LlmDir(ListwiseConfig::default());
    let stop = RunOptions {
        on_failure: FailurePolicy::Stop,
        ..opts(None)
    };
    let e = run(
        &cfg,
        Arc::new(FakeModel::failing(vec![refuse_user()])),
        &stop,
    )
    .await
    .unwrap_err();
    assert_eq!(e.failure_reason(), Some(FailureReason::Refusal));
    assert!(e.to_string().contains(&format!("for user {USER}")), "{e}");
}

#[tokio::test]
async fn fatal_reasons_end_the_run_under_continue() {
    let cfg = MethodConfig::LlmDir(ListwiseConfig::default());
    for reason in [FailureReason::ClientError, FailureReason::Setup] {
        let rule = FailRule::containing(candidate_block(USER), reason);
        let e = run(&cfg, Arc::new(FakeModel::failing(vec![rule])), &opts(None))
            .await
            .unwrap_err();
        assert_eq!(e.failure_reason(), Some(reason), "{e}");
    }
    // A replay miss is a setup failure too.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("empty.jsonl")).unwrap());
    let replay = Arc::new(Recorder::replay_only(FakeModel::default().info(), store));
    let e = run(&cfg, replay, &opts(None)).await.unwrap_err();
    assert_eq!(e.failure_reason(), Some(FailureReason::Setup), "{e}");
    // So is a fatal failure in training.
    let rule = FailRule::containing("[Generalized Instruction]", FailureReason::ClientError);
    let e = run(
        &small_agp(),
        Arc::new(FakeModel::failing(vec![rule])),
        &opts(None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.failure_reason(), Some(FailureReason::ClientError), "{e}");
}

#[tokio::test]
async fn pointwise_failure_counts_once_and_answered_requests_per_candidate() {
    let cfg = MethodConfig::LlmDirPointwise(PointwiseConfig::default());
    let rule = FailRule::containing(history_block(USER), FailureReason::Timeout);
    let r = run(&cfg, Arc::new(FakeModel::failing(vec![rule])), &opts(None))
        .await
        .unwrap();
    assert_eq!(calls(&r, Stage::Test), (11 * K as u64, 1));
    assert_eq!(r.calls[&Stage::Test].scored_items, 11 * K as u64);
    assert_eq!(r.failures[&FailureReason::Timeout], 1);
    let u = r.last.users.iter().find(|u| u.user == USER).unwrap();
    assert_eq!((u.rank, u.parse), (K, ParseOutcome::CallFailed));
}

/// Edits of the fixture run (see `run_method.rs`): batch 0 of epoch 1 is the only edit kept.
/// When batch 0's edit is lost instead, batch 2 (ranks 10..6 under the initial prompt) keeps
/// the same edit, so the learned prompt and the accept/discard counts come out the same.
async fn edit_lost_in_batch_0(rule: FailRule, stage: Stage) -> MethodRun {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        &small_agp(),
        Arc::new(FakeModel::failing(vec![rule])),
        &opts(Some(dir.path())),
    )
    .await
    .expect("training goes on");
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
    assert_eq!(r.failures.values().sum::<u64>(), 1);
    assert_eq!(calls(&r, stage).1, 1);
    let ev = prompt_events(dir.path());
    assert_eq!(ev.len(), 8, "one line per edit, kept or not");
    assert_eq!(ev[0]["status"], "discarded");
    assert_eq!(ev[0]["batch"], 0);
    assert_eq!(ev[0]["failed_stage"], serde_json::to_value(stage).unwrap());
    assert!(ev[1..].iter().all(|e| e.get("failed_stage").is_none()));
    assert_eq!(ev[2]["status"], "accepted");
    r
}

#[tokio::test]
async fn failing_summarize_discards_the_edit_and_training_goes_on() {
    let rule = FailRule::containing("[Generalized Instruction]", FailureReason::ServerError)
        .at_stage(Stage::Summarize)
        .nth(0);
    let r = edit_lost_in_batch_0(rule, Stage::Summarize).await;
    assert_eq!(calls(&r, Stage::Summarize), (7, 1));
    assert_eq!(calls(&r, Stage::Edit), (7, 0));
    assert_eq!(calls(&r, Stage::Verify), (70, 0));
    assert_eq!(r.failures[&FailureReason::ServerError], 1);
}

#[tokio::test]
async fn failing_edit_discards_the_edit_and_training_goes_on() {
    let rule = FailRule::nth_call(0, FailureReason::ContentFilter)
        .at_stage(Stage::Edit)
        .nth(0);
    let r = edit_lost_in_batch_0(rule, Stage::Edit).await;
    assert_eq!(calls(&r, Stage::Summarize), (8, 0));
    assert_eq!(calls(&r, Stage::Edit), (7, 1));
    assert_eq!(calls(&r, Stage::Verify), (70, 0));
}

#[tokio::test]
async fn failing_verify_call_discards_the_edit_and_training_goes_on() {
    let rule = FailRule::nth_call(0, FailureReason::Transport)
        .at_stage(Stage::Verify)
        .nth(0);
    let r = edit_lost_in_batch_0(rule, Stage::Verify).await;
    assert_eq!(calls(&r, Stage::Edit), (8, 0));
    assert_eq!(r.failures[&FailureReason::Transport], 1);
}

#[tokio::test]
async fn failed_profile_call_gives_the_failed_outcome_and_no_feedback() {
    // User 5 is in batch 1, whose edit is discarded either way, so its first-pass results are
    // the step's results.
    let rule = FailRule::containing(history_block(5), FailureReason::Refusal)
        .at_stage(Stage::Profile)
        .nth(0);
    let model = Arc::new(FakeModel::failing(vec![rule]));
    let r = run(&small_agp(), model.clone(), &opts(None)).await.unwrap();
    assert_eq!(calls(&r, Stage::Profile), (39, 1));
    assert_eq!(
        calls(&r, Stage::Rerank),
        (39, 0),
        "no rerank without a profile"
    );
    // 37 critiques without failures (see `run_method.rs`), less user 5's.
    assert_eq!(calls(&r, Stage::Feedback), (36, 0));
    assert_eq!(r.parse_counts[&ParseOutcome::CallFailed], 1);
    // User 5 ranks 6 in the clean run and K here: the epoch's mean rank moves by 4/20.
    let train = r.epochs[0].train.as_ref().unwrap();
    assert!((train.mean_rank - (5.5 + 4.0 / 20.0)).abs() < 1e-12);
    assert_eq!(
        r.final_prompt.as_deref(),
        Some("List the user's favourite genre first.")
    );
    let sent = model.prompts.lock().unwrap();
    let block = candidate_block(5);
    let critiques = sent
        .iter()
        .filter(|(s, p)| *s == Some(Stage::Feedback) && p.contains(&block))
        .count();
    assert_eq!(critiques, 1, "user 5's feedback in epoch 2 only");
}

#[tokio::test]
async fn failed_feedback_call_leaves_that_critique_out() {
    // The feedback prompt lists the candidates as reranked: reversed under the initial prompt.
    let block = candidate_block(1);
    let reversed: Vec<&str> = block.lines().rev().collect();
    let rule = FailRule::containing(reversed.join("\n"), FailureReason::RateLimited)
        .at_stage(Stage::Feedback)
        .nth(0);
    let model = Arc::new(FakeModel::failing(vec![rule]));
    let r = run(&small_agp(), model.clone(), &opts(None)).await.unwrap();
    assert_eq!(calls(&r, Stage::Feedback), (36, 1));
    assert_eq!(r.failures[&FailureReason::RateLimited], 1);
    let sent = model.prompts.lock().unwrap();
    let first_summary = sent
        .iter()
        .find(|(s, _)| *s == Some(Stage::Summarize))
        .map(|(_, p)| p.as_str())
        .unwrap();
    for i in [0, 2, 3, 4] {
        assert!(first_summary.contains(&format!("Instruction {i}:")));
    }
    assert!(!first_summary.contains("Instruction 1:"), "{first_summary}");
    // The edit is still made from the other four and kept.
    assert_eq!(r.epochs[0].accepted_edits, 1);
}

fn recorder(inner: Arc<FakeModel>, store: &Path) -> Arc<dyn ChatModel> {
    let store = Arc::new(Store::open(store).unwrap());
    Arc::new(Recorder::new(inner, Some(store), RecordMode::Auto).unwrap())
}

#[tokio::test]
async fn transient_failure_in_checkpoint_starts_over_and_pays_only_failed_calls() {
    let plain = run(&small_agp(), Arc::new(FakeModel::default()), &opts(None))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (store, logs) = (dir.path().join("calls.jsonl"), dir.path().join("logs"));
    // The test user's rerank (the same request in both epochs) fails every time it is asked.
    let rule = FailRule::containing(candidate_block(USER), FailureReason::ServerError)
        .at_stage(Stage::Test);
    let first = run(
        &small_agp(),
        recorder(Arc::new(FakeModel::failing(vec![rule])), &store),
        &opts(Some(&logs)),
    )
    .await
    .unwrap();
    assert_eq!(first.failures[&FailureReason::ServerError], 2);
    assert_eq!(first.epochs.len(), 2);

    let second = Arc::new(FakeModel::default());
    let again = run(
        &small_agp(),
        recorder(second.clone(), &store),
        &opts(Some(&logs)),
    )
    .await
    .unwrap();
    assert_eq!(
        second.calls.load(Ordering::SeqCst),
        1,
        "only the failed request is asked again; everything else replays"
    );
    assert_eq!(json(&again), json(&plain));
    // The fresh start rewrote the event log: one line per edit of the clean run.
    let edits: usize = plain
        .epochs
        .iter()
        .map(|e| e.accepted_edits + e.discarded_edits)
        .sum();
    assert_eq!(prompt_events(&logs).len(), edits);
}

#[tokio::test]
async fn permanent_failure_in_checkpoint_resumes_and_keeps_its_counts() {
    let cfg = MethodConfig::LlmDir(ListwiseConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let first = run(
        &cfg,
        Arc::new(FakeModel::failing(vec![refuse_user()])),
        &opts(Some(dir.path())),
    )
    .await
    .unwrap();
    let second = Arc::new(FakeModel::default());
    let again = run(&cfg, second.clone(), &opts(Some(dir.path())))
        .await
        .unwrap();
    assert_eq!(
        second.calls.load(Ordering::SeqCst),
        0,
        "a refusal is an answer"
    );
    assert_eq!(json(&again), json(&first));
    assert_eq!(again.failures[&FailureReason::Refusal], 1);
}

#[tokio::test]
async fn killed_run_resumes_with_its_failure_counts() {
    let refusal = || {
        FailRule::containing(history_block(5), FailureReason::Refusal)
            .at_stage(Stage::Profile)
            .nth(0)
    };
    let whole = run(
        &small_agp(),
        Arc::new(FakeModel::failing(vec![refusal()])),
        &opts(None),
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    // Batches 0 and 1 (with the refusal) take 52 calls; a setup failure in batch 2 ends it.
    let dying = FakeModel::failing(vec![
        refusal(),
        FailRule::nth_call(70, FailureReason::Setup),
    ]);
    let e = run(&small_agp(), Arc::new(dying), &opts(Some(dir.path())))
        .await
        .unwrap_err();
    assert_eq!(e.failure_reason(), Some(FailureReason::Setup));

    let resumed = run(
        &small_agp(),
        Arc::new(FakeModel::default()),
        &opts(Some(dir.path())),
    )
    .await
    .unwrap();
    assert_eq!(json(&resumed), json(&whole));
    assert_eq!(resumed.failures[&FailureReason::Refusal], 1);
}
