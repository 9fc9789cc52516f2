//! OPRO and ProTeGi on AGP's training loop, against the rule-based fake model of `common`: what
//! their prompts show, which prompt they keep, checkpoint resume, the call budget, and the
//! training calls their formulas give.
//!
//! The fake reranks a list as the identity when the profile (which echoes `p_gen`) mentions
//! "genre" and reversed otherwise, and user u's ground truth sits at position u % 10. So on
//! users 0–4 (and 10–14) a genre prompt ranks the ground truth 1st..5th and any other prompt
//! 10th..6th; on users 5–9 (and 15–19) it is the other way round. The fake's proposals alternate
//! between a genre prompt and one without.

mod common;

use std::path::Path;
use std::sync::Arc;

use agp::Stage;
use agp::{
    AgpConfig, FailurePolicy, MethodConfig, MethodRun, OproConfig, ProtegiConfig, RunOptions,
    ndcg_at_10, opro_train_calls, protegi_train_calls, run_method,
};
use agp_llm::FailureReason;
use common::{FailRule, FakeModel, K, fixture};

const BATCH: usize = 5;

fn opro(epochs: usize, n_train: usize) -> OproConfig {
    OproConfig {
        epochs,
        batch_size: BATCH,
        n_train_users: Some(n_train),
        ..OproConfig::one_proposal()
    }
}

fn protegi(epochs: usize, n_train: usize) -> ProtegiConfig {
    ProtegiConfig {
        epochs,
        batch_size: BATCH,
        n_train_users: Some(n_train),
        ..ProtegiConfig::beam_one()
    }
}

fn opts(dir: Option<&Path>) -> RunOptions {
    RunOptions {
        jobs: 4,
        log_dir: dir.map(Path::to_path_buf),
        ..RunOptions::default()
    }
}

async fn run(cfg: &MethodConfig, model: Arc<FakeModel>, dir: Option<&Path>) -> MethodRun {
    let (ds, cands) = fixture();
    cfg.validate(&cands).expect("a valid config");
    run_method(cfg, &ds, &cands, model, &opts(dir))
        .await
        .expect("run succeeds")
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn proposal_events(dir: &Path) -> Vec<serde_json::Value> {
    events(dir)
        .into_iter()
        .filter(|e| e["event"] == "prompt")
        .collect()
}

/// The learned state in a run's checkpoint.
fn state(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("checkpoint.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["reranker"].clone()
}

/// The chat prompts the model was sent at `stage`, in the order sent.
fn sent(model: &FakeModel, stage: Stage) -> Vec<String> {
    model
        .prompts
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s == Some(stage))
        .map(|(_, p)| p.clone())
        .collect()
}

/// The `(text, score)` pairs of an OPRO meta-prompt, in the order shown.
fn scored_history(meta: &str) -> Vec<(String, f64)> {
    meta.split("text:\n")
        .skip(1)
        .map(|t| {
            let (text, rest) = t.split_once("\nscore:\n").unwrap();
            let score = rest.lines().next().unwrap().parse().unwrap();
            (text.to_string(), score)
        })
        .collect()
}

/// Mean NDCG@10 of ground truths at these ranks, as the meta-prompt shows it (0..100).
fn shown_score(ranks: impl IntoIterator<Item = usize>) -> f64 {
    let ndcg: Vec<f64> = ranks.into_iter().map(ndcg_at_10).collect();
    let mean = ndcg.iter().sum::<f64>() / ndcg.len() as f64;
    (mean * 1000.0).round() / 10.0
}

/// The ground truth's text of training user `u`.
fn gt_text(u: u32) -> String {
    let (ds, _) = fixture();
    ds.item_text[ds.test[u as usize] as usize].clone()
}

#[tokio::test]
async fn opro_meta_prompt_shows_the_scored_history_ascending_and_keeps_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(FakeModel::default());
    let cfg = MethodConfig::Opro(opro(1, 20));
    let r = run(&cfg, model.clone(), Some(dir.path())).await;
    assert_eq!(r.label, "OPRO-T20");

    let metas = sent(&model, Stage::Edit);
    assert_eq!(metas.len(), 4, "one proposal per batch");
    for m in &metas {
        let scores: Vec<f64> = scored_history(m).iter().map(|(_, s)| *s).collect();
        assert!(scores.is_sorted(), "ascending: {scores:?}\n{m}");
        // OPRO sees scores and example users, never where a ground truth landed.
        assert!(!m.contains("position") && !m.contains("ranked at"), "{m}");
        assert_eq!(m.matches("Item the user interacted with next: ").count(), 3);
    }
    // Batch 1 (users 0–4): only the empty start, scored with the ground truths at 10..6.
    assert_eq!(
        scored_history(&metas[0]),
        [("(empty)".to_string(), shown_score(6..=10))]
    );
    // Its genre proposal ranked them 1..5 and was kept; scored again on users 5–9 (6..10) it
    // pools all ten users, above the empty start.
    let h1 = scored_history(&metas[1]);
    assert_eq!(h1.len(), 2);
    assert_eq!(h1[0], ("(empty)".to_string(), shown_score(6..=10)));
    assert!(h1[1].0.starts_with("List the user's favourite genre first"));
    assert_eq!(h1[1].1, shown_score(1..=10));
    // Every prompt scored is in the history; the best last: the prompt kept in batch 2, scored
    // on users 5–9 (1..5), 10–14 (10..6) and 15–19 (5..1).
    let h3 = scored_history(&metas[3]);
    assert_eq!(h3.len(), 4);
    let (best, score) = h3.last().unwrap();
    assert!(best.starts_with("Summarize the user's tastes (after 2 prompts"));
    assert_eq!(*score, shown_score((1..=10).chain(1..=5)));

    // Batch 2 (users 5–9) favours prompts without "genre": that proposal is kept; on batches 3
    // and 4 the next proposals only tie with it and are discarded.
    let ev = proposal_events(dir.path());
    let status: Vec<&str> = ev.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["accepted", "accepted", "discarded", "discarded"]);
    for e in &ev {
        let (before, after) = (e["score_before"].as_f64(), e["score_after"].as_f64());
        assert_eq!(
            e["status"] == "accepted",
            after > before,
            "kept exactly when strictly better: {e}"
        );
    }
    let kept = ev[1]["prompt"].as_str().unwrap();
    assert!(kept.starts_with("Summarize the user's tastes (after 2 prompts"));
    assert_eq!(r.final_prompt.as_deref(), Some(kept));
    assert_eq!(
        (r.epochs[0].accepted_edits, r.epochs[0].discarded_edits),
        (2, 2)
    );
    let st = state(dir.path());
    assert_eq!(st["prompt"], kept);
    assert_eq!(st["history"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn opro_shows_only_the_best_history_size_prompts() {
    let model = Arc::new(FakeModel::default());
    let cfg = MethodConfig::Opro(OproConfig {
        history_size: 2,
        n_exemplars: 0,
        ..opro(1, 20)
    });
    run(&cfg, model.clone(), None).await;
    let metas = sent(&model, Stage::Edit);
    let last = scored_history(&metas[3]);
    assert_eq!(last.len(), 2, "{}", metas[3]);
    // The two prompts kept so far; the empty start (users 0–4 at 10..6) is left out.
    assert!(
        last[0]
            .0
            .starts_with("List the user's favourite genre first")
    );
    assert!(last[1].0.starts_with("Summarize the user's tastes"));
    assert!(last[0].1 <= last[1].1);
    assert!(!metas[3].contains("(empty)"));
    assert!(!metas[3].contains("[Example Users]"));
}

#[tokio::test]
async fn protegi_gradient_shows_the_worst_failing_users_and_the_beam_keeps_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(FakeModel::default());
    let cfg = MethodConfig::Protegi(ProtegiConfig {
        beam_width: 2,
        n_edits: 2,
        errors_per_gradient: 3,
        ..protegi(1, 10)
    });
    let r = run(&cfg, model.clone(), Some(dir.path())).await;
    assert_eq!(r.label, "ProTeGi-T10");

    let shown_users = |p: &str| -> Vec<String> {
        p.split("Item the user interacted with next (not among them): ")
            .skip(1)
            .map(|t| t.lines().next().unwrap().to_string())
            .collect()
    };
    let gradients = sent(&model, Stage::Feedback);
    // Batch 1: the empty start ranks users 0–4 at 10..6, all misses; the worst three.
    assert_eq!(shown_users(&gradients[0]), [0, 1, 2].map(gt_text));
    // Batch 2: two genre prompts in the beam, each ranking users 5–9 at 6..10.
    assert_eq!(gradients.len(), 3);
    for g in &gradients[1..] {
        assert_eq!(shown_users(g), [9, 8, 7].map(gt_text));
        assert!(
            g.contains("genre first"),
            "a beam prompt's own gradient: {g}"
        );
    }
    // Hit or miss: the gradient shows the top 3, never the ground truth's rank.
    assert!(gradients[0].contains("Top 3 reranked items:"));
    assert!(!gradients[0].contains("position"));

    // Batch 1 keeps both genre proposals over the empty start; batch 2 keeps both of the
    // first beam prompt's proposals, the second beam prompt's are repeats.
    let ev = proposal_events(dir.path());
    let verdicts: Vec<&str> = ev.iter().map(|e| e["verdict"].as_str().unwrap()).collect();
    assert_eq!(
        verdicts,
        [
            "accepted", "accepted", "accepted", "accepted", "repeat", "repeat"
        ]
    );
    assert_eq!(
        state(dir.path())["beam"],
        serde_json::json!([
            "Summarize the user's tastes.",
            "Summarize the user's tastes (variant 2)."
        ])
    );
    assert_eq!(
        r.final_prompt.as_deref(),
        Some("Summarize the user's tastes.")
    );
}

#[tokio::test]
async fn protegi_beam_keeps_a_prompt_its_edits_do_not_beat() {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(FakeModel::default());
    // On users 0–4 a genre prompt is already the best the fake can do.
    let start = "Name the user's favourite genre.";
    let cfg = MethodConfig::Protegi(ProtegiConfig {
        initial_prompt: Some(start.into()),
        ..protegi(1, 5)
    });
    let r = run(&cfg, model.clone(), Some(dir.path())).await;
    // Users 3 and 4 (ranks 4 and 5) are the misses.
    let gradients = sent(&model, Stage::Feedback);
    assert_eq!(gradients.len(), 1);
    assert_eq!(gradients[0].matches("## User ").count(), 2);
    let ev = proposal_events(dir.path());
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["verdict"], "not_better");
    assert!(ev[0]["score_after"].as_f64() < ev[0]["score_before"].as_f64());
    assert_eq!(r.final_prompt.as_deref(), Some(start));
    let kept = (1..=5).map(ndcg_at_10).sum::<f64>() / 5.0;
    assert!((r.epochs[0].train.as_ref().unwrap().ndcg10 - kept).abs() < 1e-12);
}

/// A run killed mid-epoch and resumed ends as an uninterrupted one: same report, same learned
/// state (OPRO's history included).
async fn resumes_to_the_same_end(cfg: MethodConfig, die_after: usize) {
    let (ds, cands) = fixture();
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = run(&cfg, Arc::new(FakeModel::default()), Some(plain_dir.path())).await;

    let dir = tempfile::tempdir().unwrap();
    let stop = RunOptions {
        on_failure: FailurePolicy::Stop,
        ..opts(Some(dir.path()))
    };
    let dying = Arc::new(FakeModel::failing_after(die_after));
    assert!(run_method(&cfg, &ds, &cands, dying, &stop).await.is_err());
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(ck["epoch"], 1, "died in epoch 1");
    assert!(ck["batches_done"].as_u64().unwrap() >= 1, "after a batch");
    assert_ne!(ck["reranker"], serde_json::Value::Null);

    let second = Arc::new(FakeModel::default());
    let resumed = run_method(&cfg, &ds, &cands, second.clone(), &stop)
        .await
        .unwrap();
    assert!(
        (second.calls.load(std::sync::atomic::Ordering::SeqCst) as u64) < plain.total_calls,
        "finished batches were not re-run"
    );
    assert_eq!(
        serde_json::to_value(&resumed).unwrap(),
        serde_json::to_value(&plain).unwrap()
    );
    assert_eq!(state(dir.path()), state(plain_dir.path()));
    assert_eq!(
        proposal_events(dir.path()).len(),
        proposal_events(plain_dir.path()).len(),
        "no proposal logged twice"
    );
}

#[tokio::test]
async fn opro_resumes_from_a_checkpoint_to_the_same_end() {
    // A batch costs 21 calls: dies in the third batch.
    resumes_to_the_same_end(MethodConfig::Opro(opro(2, 20)), 50).await;
}

#[tokio::test]
async fn protegi_resumes_from_a_checkpoint_to_the_same_end() {
    let cfg = MethodConfig::Protegi(ProtegiConfig {
        beam_width: 2,
        ..protegi(2, 20)
    });
    resumes_to_the_same_end(cfg, 60).await;
}

#[tokio::test]
async fn the_call_budget_stops_training() {
    // OPRO: 21 calls a batch; the third batch starts at 42 ≥ 30 and is skipped, as is the rest.
    let dir = tempfile::tempdir().unwrap();
    let cfg = MethodConfig::Opro(OproConfig {
        max_training_calls: Some(30),
        ..opro(2, 20)
    });
    let r = run(&cfg, Arc::new(FakeModel::default()), Some(dir.path())).await;
    assert_eq!(r.training_calls(), 42);
    assert_eq!(proposal_events(dir.path()).len(), 2);
    let skipped = events(dir.path())
        .into_iter()
        .filter(|e| e["event"] == "train_step")
        .count();
    assert_eq!(skipped, 6);
    assert_eq!(r.epochs[1].accepted_edits + r.epochs[1].discarded_edits, 0);
    assert!(r.epochs[1].train.is_none(), "no batch trained in epoch 2");
    // Evaluation goes on: both epochs evaluated every test and validation user.
    assert_eq!(r.calls[&Stage::Test].calls, 2 * 2 * 20);

    // ProTeGi: 22 calls a batch.
    let cfg = MethodConfig::Protegi(ProtegiConfig {
        max_training_calls: Some(22),
        ..protegi(2, 20)
    });
    let r = run(&cfg, Arc::new(FakeModel::default()), None).await;
    assert_eq!(r.training_calls(), 22);

    // AGP: a budget of one call trains the first batch only.
    let agp = |max_training_calls| {
        MethodConfig::Agp(AgpConfig {
            epochs: 2,
            batch_size: BATCH,
            n_train_users: Some(20),
            max_training_calls,
            ..AgpConfig::default()
        })
    };
    let full = run(&agp(None), Arc::new(FakeModel::default()), None).await;
    let one = run(&agp(Some(1)), Arc::new(FakeModel::default()), None).await;
    let edits = |r: &MethodRun| -> usize {
        r.epochs
            .iter()
            .map(|e| e.accepted_edits + e.discarded_edits)
            .sum()
    };
    assert_eq!((edits(&full), edits(&one)), (8, 1));
    assert!(one.training_calls() > 0 && one.training_calls() < full.training_calls() / 4);
    // An unset budget leaves AGP's config echo as it was.
    assert!(full.config.get("max_training_calls").is_none());
}

#[tokio::test]
async fn measured_training_calls_equal_the_formulas() {
    for n_train in [20, 18] {
        let r = run(
            &MethodConfig::Opro(opro(2, n_train)),
            Arc::new(FakeModel::default()),
            None,
        )
        .await;
        assert_eq!(
            r.training_calls(),
            2 * opro_train_calls(BATCH, n_train, 1),
            "OPRO, {n_train} users"
        );
        assert_eq!(
            r.calls[&Stage::Edit].calls,
            2 * n_train.div_ceil(BATCH) as u64
        );
        let r = run(
            &MethodConfig::Protegi(protegi(2, n_train)),
            Arc::new(FakeModel::default()),
            None,
        )
        .await;
        assert_eq!(
            r.training_calls(),
            2 * protegi_train_calls(BATCH, n_train, 1, 1, 1, 0),
            "ProTeGi, {n_train} users"
        );
        assert_eq!(
            r.calls[&Stage::Feedback].calls,
            2 * n_train.div_ceil(BATCH) as u64
        );
    }
    assert_eq!(opro_train_calls(BATCH, 20, 1), 84);
    assert_eq!(protegi_train_calls(BATCH, 20, 1, 1, 1, 0), 88);

    // More proposals per batch: the formula less the scoring of each repeat (2 calls per user).
    let dir = tempfile::tempdir().unwrap();
    let cfg = MethodConfig::Opro(OproConfig {
        n_candidates: 3,
        ..opro(1, 20)
    });
    let r = run(&cfg, Arc::new(FakeModel::default()), Some(dir.path())).await;
    let repeats = proposal_events(dir.path())
        .iter()
        .filter(|e| e["verdict"] == "repeat")
        .count() as u64;
    assert_eq!(
        r.training_calls(),
        opro_train_calls(BATCH, 20, 3) - repeats * 2 * BATCH as u64
    );

    // Evaluation is AGP's: profile and rerank per user.
    for cfg in [
        MethodConfig::Opro(OproConfig::default()),
        MethodConfig::Protegi(ProtegiConfig::default()),
    ] {
        assert_eq!(cfg.calls_per_user(K).exact(), Some(2));
    }
}

#[tokio::test]
async fn a_failed_proposal_call_discards_that_proposal() {
    // Every OPRO meta-prompt refused: nothing is learned, the run goes on.
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(FakeModel::failing(vec![FailRule::containing(
        "Your task is to write the instructions",
        FailureReason::Refusal,
    )]));
    let r = run(&MethodConfig::Opro(opro(1, 10)), model, Some(dir.path())).await;
    assert_eq!(r.final_prompt.as_deref(), Some(""));
    let ev = proposal_events(dir.path());
    assert_eq!(ev.len(), 2);
    for e in &ev {
        assert_eq!(
            (&e["verdict"], &e["failed_stage"], &e["failure"]),
            (
                &serde_json::json!("call_failed"),
                &serde_json::json!("edit"),
                &serde_json::json!("refusal")
            )
        );
    }
    assert_eq!(r.calls[&Stage::Edit].failed, 2);

    // A proposal that loses a user while being scored cannot be compared: discarded.
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(FakeModel::failing(vec![
        FailRule::containing("favourite genre first", FailureReason::Timeout)
            .at_stage(Stage::Profile)
            .nth(0),
    ]));
    let r = run(&MethodConfig::Opro(opro(1, 5)), model, Some(dir.path())).await;
    let ev = proposal_events(dir.path());
    assert_eq!(ev[0]["verdict"], "call_failed");
    assert_eq!(ev[0]["failed_stage"], "profile");
    assert_eq!(r.final_prompt.as_deref(), Some(""));

    // ProTeGi: a refused gradient discards its edits.
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(FakeModel::failing(vec![
        FailRule::containing("I'm trying to write", FailureReason::Refusal)
            .at_stage(Stage::Feedback),
    ]));
    let r = run(
        &MethodConfig::Protegi(protegi(1, 10)),
        model.clone(),
        Some(dir.path()),
    )
    .await;
    assert!(sent(&model, Stage::Edit).is_empty());
    let ev = proposal_events(dir.path());
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e["failed_stage"] == "feedback"));
    assert_eq!(r.final_prompt.as_deref(), Some(""));
}
