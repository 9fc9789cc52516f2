//! A run killed mid-way resumes from its checkpoint, re-pays no finished batch, and ends with
//! the same result as an uninterrupted run; the JSONL log holds no duplicates.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use agp::{AgpConfig, FailurePolicy, MethodConfig, RunOptions, run_method};
use common::{FakeModel, fixture};

fn cfg() -> MethodConfig {
    MethodConfig::Agp(AgpConfig {
        epochs: 2,
        batch_size: 5,
        n_train_users: Some(20),
        ..AgpConfig::default()
    })
}

fn events(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn killed_run_resumes_without_repaying_calls() {
    let (ds, cands) = fixture();
    let plain = run_method(
        &cfg(),
        &ds,
        &cands,
        Arc::new(FakeModel::default()),
        &RunOptions::default(),
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    // `stop` makes the fake's outage end the run, as a kill would.
    let opts = RunOptions {
        log_dir: Some(dir.path().to_path_buf()),
        on_failure: FailurePolicy::Stop,
        ..RunOptions::default()
    };
    // Dies in the middle of epoch 1 (a batch costs 10 forward + feedback + 2 + 10 verify calls).
    let dying = Arc::new(FakeModel::failing_after(70));
    assert!(run_method(&cfg(), &ds, &cands, dying, &opts).await.is_err());
    assert!(dir.path().join("checkpoint.json").exists());

    let second = Arc::new(FakeModel::default());
    let resumed = run_method(&cfg(), &ds, &cands, second.clone(), &opts)
        .await
        .unwrap();
    let repaid = second.calls.load(Ordering::SeqCst) as u64;
    assert!(
        repaid < plain.total_calls,
        "finished batches were not re-run"
    );
    assert_eq!(
        serde_json::to_value(&resumed).unwrap(),
        serde_json::to_value(&plain).unwrap(),
        "same result, same call ledger as the uninterrupted run"
    );

    // One accepted/discarded line per edit, no duplicates from the interrupted batch.
    let ev = events(dir.path());
    let prompts = ev.iter().filter(|e| e["event"] == "prompt").count();
    let edits: usize = plain
        .epochs
        .iter()
        .map(|e| e.accepted_edits + e.discarded_edits)
        .sum();
    assert_eq!(prompts, edits);
    let accepted = ev.iter().filter(|e| e["status"] == "accepted").count();
    assert_eq!(accepted, 1);
    assert!(
        ev.iter()
            .any(|e| e["event"] == "profile" && e["phase"] == "begin")
    );
    assert!(
        ev.iter()
            .any(|e| e["event"] == "profile" && e["phase"] == "end")
    );

    // A finished run in the same directory costs nothing and reports the same.
    let third = Arc::new(FakeModel::default());
    let again = run_method(&cfg(), &ds, &cands, third.clone(), &opts)
        .await
        .unwrap();
    assert_eq!(third.calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&plain).unwrap()
    );
}

#[tokio::test]
async fn checkpoint_of_another_config_is_refused() {
    let (ds, cands) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        log_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    run_method(&cfg(), &ds, &cands, Arc::new(FakeModel::default()), &opts)
        .await
        .unwrap();
    let other = MethodConfig::Agp(AgpConfig {
        epochs: 1,
        batch_size: 5,
        n_train_users: Some(20),
        ..AgpConfig::default()
    });
    let e = run_method(&other, &ds, &cands, Arc::new(FakeModel::default()), &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checkpoint.json") && e.contains("different method config"),
        "{e}"
    );
    let reseeded = RunOptions {
        seed: 1,
        ..opts.clone()
    };
    let e = run_method(
        &cfg(),
        &ds,
        &cands,
        Arc::new(FakeModel::default()),
        &reseeded,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("different model, sampling, seed or candidate file"),
        "{e}"
    );
}
