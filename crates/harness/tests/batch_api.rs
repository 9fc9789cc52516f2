//! The Batch API client against the simulator, below the harness: deferral, splitting, lines
//! that fail or expire going back to the synchronous path, permanent failures kept, a crash
//! while a batch is pending, and providers without a Batch API.

use std::time::Duration;

use agp_llm::batch::BatchOptions;
use agp_llm::factory::{LlmOptions, LlmSpec, build_model};
use agp_llm::{
    CallMode, ChatRequest, FailureReason, LabelRequest, LlmError, LlmHandle, Message, RecordMode,
    ScoreRequest,
};
use agp_sim_api::{BatchConfig, SimConfig, SimServer};

fn handle(server: &SimServer, recordings: &std::path::Path, opts: BatchOptions) -> LlmHandle {
    let spec: LlmSpec = format!("http:{}#sim", server.base_url()).parse().unwrap();
    build_model(
        &spec,
        &LlmOptions {
            mode: RecordMode::Auto,
            recordings: Some(recordings.to_path_buf()),
            batch: Some(opts),
            ..LlmOptions::default()
        },
    )
    .unwrap()
}

fn fast() -> BatchOptions {
    BatchOptions {
        poll_every: Duration::from_millis(10),
        ..BatchOptions::default()
    }
}

fn chat(i: usize, priority: u8) -> ChatRequest {
    let mut r = ChatRequest::new(vec![Message::user(format!(
        "Write one sentence about item {i}."
    ))]);
    r.sampling.temperature = Some(0.0);
    r.sampling.max_tokens = Some(64);
    r.priority = priority;
    r
}

fn is_deferred<T: std::fmt::Debug>(r: &Result<T, LlmError>) -> bool {
    matches!(r, Err(e) if e.reason() == FailureReason::Deferred)
}

#[tokio::test]
async fn deferred_requests_come_back_as_sync_records_and_training_calls_at_once() {
    let server = SimServer::start(SimConfig {
        refuse_containing: vec!["item 3.".into()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let h = handle(&server, &tmp.path().join("rec.jsonl"), fast());
    let batcher = h.batcher.clone().expect("a batcher");
    // Training (priority 3) calls at once.
    let trained = h.model.chat(&chat(100, 3)).await.unwrap();
    assert!(!trained.content.is_empty());
    assert_eq!(server.stats().attempts, 1);
    // Bulk calls, a pointwise scoring and a label read are deferred, nothing is sent.
    for i in 0..6 {
        assert!(is_deferred(&h.model.chat(&chat(i, 1)).await));
    }
    let score = ScoreRequest {
        messages: vec![Message::system("Answer Yes or No.")],
        prefix: "Would this user choose this item next? ".into(),
        suffixes: vec!["A".into(), "B".into()],
        account: None,
        priority: 1,
    };
    assert!(is_deferred(&h.model.score(&score).await));
    let labels = LabelRequest {
        messages: vec![Message::user("<0: x>\n<1: y>")],
        labels: vec!["0".into(), "1".into()],
        prefill: "[".into(),
        account: None,
        priority: 1,
    };
    assert!(is_deferred(&h.model.label_logprobs(&labels).await));
    assert_eq!(batcher.pending(), 9);
    assert_eq!(server.stats().attempts, 1);

    let r = batcher.flush().await.unwrap();
    assert_eq!((r.submitted, r.stored, r.to_sync), (1, 9, 0), "{r:?}");
    let st = server.stats();
    assert_eq!(
        (st.batch_lines, st.batch_lines_submitted, st.attempts),
        (9, 9, 1)
    );
    // Every answer now replays; the refusal is kept as the sync path keeps it.
    for i in 0..6 {
        let r = h.model.chat(&chat(i, 1)).await;
        if i == 3 {
            assert!(
                matches!(&r, Err(e) if e.reason() == FailureReason::Refusal),
                "{r:?}"
            );
        } else {
            // Paid by this process's batch: live spend in every round that replays it.
            let u = r.unwrap().usage;
            assert_eq!((u.replayed.requests, u.mode), (0, CallMode::Batch));
        }
    }
    // Kept as the record a sync call makes, priced as a batch line.
    let store = h.store.clone().unwrap();
    let rec = store
        .get(&agp_llm::chat_key(&h.model.info(), &chat(0, 1)))
        .unwrap();
    assert_eq!(rec.chat.unwrap().usage.mode, CallMode::Batch);
    assert_eq!(h.model.score(&score).await.unwrap().scores.len(), 2);
    assert_eq!(
        h.model
            .label_logprobs(&labels)
            .await
            .unwrap()
            .logprobs
            .len(),
        2
    );
    let st = server.stats();
    assert_eq!((st.attempts, st.answered_twice), (1, 0));
}

#[tokio::test]
async fn failed_and_expired_lines_go_through_the_sync_path_once() {
    let server = SimServer::start(SimConfig {
        batch: BatchConfig {
            expire_fraction: 0.25,
            line_error_rate: 0.25,
            ..BatchConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = BatchOptions {
        max_lines: 7,
        ..fast()
    };
    let h = handle(&server, &tmp.path().join("rec.jsonl"), opts);
    let batcher = h.batcher.clone().unwrap();
    let n = 40;
    for i in 0..n {
        assert!(is_deferred(&h.model.chat(&chat(i, 1)).await));
    }
    let r = batcher.flush().await.unwrap();
    assert_eq!(r.submitted, 6, "40 lines at 7 a file: {r:?}");
    assert_eq!(r.stored + r.to_sync, n as u64);
    assert!(r.to_sync > 5, "{r:?}");
    // The rest are asked synchronously, not deferred again.
    for i in 0..n {
        h.model.chat(&chat(i, 1)).await.unwrap();
    }
    let st = server.stats();
    assert_eq!(st.attempts, r.to_sync, "{st:?}");
    assert_eq!(st.distinct_answered, n as u64);
    assert_eq!(st.answered_twice, 0, "{st:?}");
    assert_eq!(batcher.pending(), 0);
}

#[tokio::test]
async fn files_are_split_by_size_and_a_line_over_the_limit_is_asked_synchronously() {
    let server = SimServer::start(SimConfig::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = BatchOptions {
        max_bytes: 1000,
        ..fast()
    };
    let h = handle(&server, &tmp.path().join("rec.jsonl"), opts);
    let batcher = h.batcher.clone().unwrap();
    for i in 0..10 {
        assert!(is_deferred(&h.model.chat(&chat(i, 1)).await));
    }
    let mut big = ChatRequest::new(vec![Message::user("x".repeat(2000))]);
    big.priority = 1;
    assert!(is_deferred(&h.model.chat(&big).await));
    let r = batcher.flush().await.unwrap();
    // About 250 bytes a line: at most 3 to a 1,000-byte file.
    assert!(r.submitted >= 4, "{r:?}");
    assert_eq!((r.stored, r.to_sync), (10, 0), "{r:?}");
    let st = server.stats();
    assert_eq!((st.batch_lines, st.attempts), (10, 0));
    // The line too big for any file goes out synchronously, not deferred again.
    h.model.chat(&big).await.unwrap();
    assert_eq!(server.stats().attempts, 1);
}

#[tokio::test]
async fn a_crash_while_a_batch_is_pending_resumes_by_polling_it() {
    crash_while_pending(false).await;
}

#[tokio::test]
async fn a_crash_before_the_batch_id_was_stored_finds_it_in_the_providers_list() {
    crash_while_pending(true).await;
}

async fn crash_while_pending(forget_the_id: bool) {
    let server = SimServer::start(SimConfig {
        batch: BatchConfig {
            delay: Duration::from_millis(300),
            ..BatchConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec.jsonl");
    let state = agp_llm::batch::state_dir(&rec);
    {
        let h = handle(&server, &rec, fast());
        for i in 0..5 {
            assert!(is_deferred(&h.model.chat(&chat(i, 1)).await));
        }
        let batcher = h.batcher.clone().unwrap();
        let flushing = tokio::spawn(async move { batcher.flush().await });
        while server.stats().batches_created == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The process dies: nothing after the submission runs.
        flushing.abort();
        let _ = flushing.await;
    }
    if forget_the_id {
        // As if killed before the provider's answer to the create call was written down.
        for e in std::fs::read_dir(&state).unwrap().flatten() {
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            v["batch_id"] = serde_json::Value::Null;
            std::fs::write(e.path(), v.to_string()).unwrap();
        }
    }
    assert_eq!(server.stats().batches_created, 1);
    assert_eq!(server.stats().batch_lines, 0);
    let h = handle(&server, &rec, fast());
    for i in 0..5 {
        assert!(is_deferred(&h.model.chat(&chat(i, 1)).await));
    }
    let r = h.batcher.clone().unwrap().flush().await.unwrap();
    assert_eq!((r.resumed, r.submitted, r.stored), (1, 0, 5), "{r:?}");
    for i in 0..5 {
        h.model.chat(&chat(i, 1)).await.unwrap();
    }
    let st = server.stats();
    assert_eq!((st.batches_created, st.batch_lines, st.attempts), (1, 5, 0));
    assert!(!std::fs::read_dir(&state).unwrap().any(|_| true));
}

#[tokio::test]
async fn a_pending_batch_the_provider_does_not_know_is_asked_again() {
    let slow = SimConfig {
        batch: BatchConfig {
            delay: Duration::from_secs(60),
            ..BatchConfig::default()
        },
        ..SimConfig::default()
    };
    let first = SimServer::start(slow).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec.jsonl");
    {
        let h = handle(&first, &rec, fast());
        assert!(is_deferred(&h.model.chat(&chat(0, 1)).await));
        let batcher = h.batcher.clone().unwrap();
        let flushing = tokio::spawn(async move { batcher.flush().await });
        while first.stats().batches_created == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        flushing.abort();
        let _ = flushing.await;
    }
    // Another server: the stored batch id means nothing there.
    let second = SimServer::start(SimConfig::default()).await.unwrap();
    let h = handle(&second, &rec, fast());
    assert!(is_deferred(&h.model.chat(&chat(0, 1)).await));
    let r = h.batcher.clone().unwrap().flush().await.unwrap();
    assert_eq!((r.resumed, r.submitted, r.stored), (1, 1, 1), "{r:?}");
    h.model.chat(&chat(0, 1)).await.unwrap();
    assert_eq!(second.stats().batch_lines, 1);
}

#[tokio::test]
async fn cached_prompt_tokens_are_kept_per_record() {
    let server = SimServer::start(SimConfig {
        prefix_cache: Some(agp_sim_api::PrefixCacheConfig {
            min_tokens: 32,
            step_tokens: 8,
        }),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let h = handle(&server, &tmp.path().join("rec.jsonl"), fast());
    let front = "A long instruction and history that every request shares. ".repeat(4);
    let ask = |tail: &str| {
        let mut r = ChatRequest::new(vec![Message::user(format!("{front}{tail}"))]);
        r.priority = 3;
        r
    };
    let first = h.model.chat(&ask("one")).await.unwrap();
    let second = h.model.chat(&ask("two")).await.unwrap();
    assert_eq!(first.usage.cached_tokens, 0);
    assert!(second.usage.cached_tokens >= 32, "{:?}", second.usage);
    assert!(second.usage.cached_tokens < second.usage.prompt_tokens);
    assert_eq!(second.usage.mode, CallMode::Sync);
    let rec = h.store.clone().unwrap();
    let rec = rec
        .get(&agp_llm::chat_key(&h.model.info(), &ask("two")))
        .unwrap();
    assert_eq!(
        rec.chat.unwrap().usage.cached_tokens,
        second.usage.cached_tokens
    );
}

#[test]
fn providers_without_a_batch_api_say_so_before_any_call() {
    let tmp = tempfile::tempdir().unwrap();
    for spec in ["deepseek:deepseek-chat", "local:smollm2-135m"] {
        let spec: LlmSpec = spec.parse().unwrap();
        let e = build_model(
            &spec,
            &LlmOptions {
                mode: RecordMode::Auto,
                recordings: Some(tmp.path().join("r.jsonl")),
                batch: Some(BatchOptions::default()),
                ..LlmOptions::default()
            },
        )
        .err()
        .expect("an error");
        assert!(e.to_string().contains("no Batch API"), "{e}");
    }
}
