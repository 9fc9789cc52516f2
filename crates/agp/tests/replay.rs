//! With the LLM crate's record/replay store: a recorded run replays to the same result with no
//! model, and a killed run resumed in `auto` mode pays each distinct request once overall.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use agp::{AgpConfig, FailurePolicy, MethodConfig, MethodRun, RunOptions, run_method};
use agp_llm::{ChatModel, RecordMode, Recorder, Store};
use common::{FakeModel, fixture};

fn cfg() -> MethodConfig {
    MethodConfig::Agp(AgpConfig {
        epochs: 2,
        batch_size: 5,
        n_train_users: Some(20),
        ..AgpConfig::default()
    })
}

fn recorder(inner: Arc<FakeModel>, store: &Path) -> Arc<dyn ChatModel> {
    let store = Arc::new(Store::open(store).unwrap());
    Arc::new(Recorder::new(inner, Some(store), RecordMode::Auto).unwrap())
}

async fn run(
    model: Arc<dyn ChatModel>,
    log_dir: Option<&Path>,
) -> Result<MethodRun, agp::AgpError> {
    let (ds, cands) = fixture();
    // `stop` makes the fake's outage end the run, as a kill would.
    let opts = RunOptions {
        log_dir: log_dir.map(Path::to_path_buf),
        on_failure: FailurePolicy::Stop,
        ..RunOptions::default()
    };
    run_method(&cfg(), &ds, &cands, model, &opts).await
}

#[tokio::test]
async fn recorded_run_replays_and_resume_pays_each_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let full_store = dir.path().join("full.jsonl");
    let a = Arc::new(FakeModel::default());
    let plain = run(recorder(a.clone(), &full_store), None).await.unwrap();
    let distinct = Store::open(&full_store).unwrap().len();
    assert_eq!(
        a.calls.load(Ordering::SeqCst),
        distinct,
        "identical requests are paid once"
    );

    // Replay alone, no model behind it: the same run.
    let store = Arc::new(Store::open(&full_store).unwrap());
    let replay: Arc<dyn ChatModel> = Arc::new(Recorder::replay_only(a.info(), store));
    let replayed = run(replay, None).await.unwrap();
    assert_eq!(
        serde_json::to_value(&replayed).unwrap(),
        serde_json::to_value(&plain).unwrap()
    );

    // Killed mid-run, resumed from checkpoint + recordings.
    let killed_store = dir.path().join("killed.jsonl");
    let logs = dir.path().join("logs");
    let dying = Arc::new(FakeModel::failing_after(70));
    assert!(
        run(recorder(dying, &killed_store), Some(&logs))
            .await
            .is_err()
    );
    let recorded_before = Store::open(&killed_store).unwrap().len();
    let b = Arc::new(FakeModel::default());
    let resumed = run(recorder(b.clone(), &killed_store), Some(&logs))
        .await
        .unwrap();
    assert_eq!(b.calls.load(Ordering::SeqCst), distinct - recorded_before);
    assert_eq!(
        serde_json::to_value(&resumed).unwrap(),
        serde_json::to_value(&plain).unwrap()
    );
}
