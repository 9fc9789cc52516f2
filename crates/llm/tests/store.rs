//! Record/replay: keys, modes, the torn-line rule, and single-flight recording.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agp_llm::store::Record;
use agp_llm::{
    ChatModel, ChatRequest, ChatResponse, FailureReason, LabelRequest, LlmError, Message,
    ModelInfo, RecordMode, Recorder, ScoreRequest, ScoreResponse, Store, Usage, chat_key,
    label_key, score_key,
};
use async_trait::async_trait;

/// A deterministic model that counts its calls: answers are derived from the request so a
/// replayed answer can be checked against a fresh one. Not a fixture: nothing it says is
/// committed or presented as model output.
struct Counting {
    calls: AtomicUsize,
}

#[async_trait]
impl ChatModel for Counting {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: "test".into(),
            model: "counting".into(),
            file_sha256: None,
        }
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let last = &req.messages.last().unwrap().content;
        Ok(ChatResponse {
            served: Default::default(),
            content: format!("len={}", last.len()),
            usage: Usage {
                prompt_tokens: last.len() as u64,
                completion_tokens: 2,
                latency_ms: 20,
                retries: 0,
                ..Usage::default()
            },
            finish_reason: None,
        })
    }
    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(ScoreResponse {
            scores: req.suffixes.iter().map(|s| s.len() as f32 / 3.0).collect(),
            usage: Usage {
                prompt_tokens: 10,
                ..Default::default()
            },
        })
    }
    fn settings(&self) -> serde_json::Value {
        serde_json::json!({"threads": 1})
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        calls: AtomicUsize::new(0),
    })
}

fn req(text: &str) -> ChatRequest {
    ChatRequest::new(vec![Message::system("sys"), Message::user(text)])
}

#[test]
fn key_ignores_account_but_not_model_messages_or_sampling() {
    let info = ModelInfo {
        backend: "openai".into(),
        model: "gpt-4o".into(),
        file_sha256: None,
    };
    let a = req("hello");
    let k = chat_key(&info, &a);
    assert_eq!(k.len(), 64);
    assert_eq!(k, chat_key(&info, &a.clone().with_account("rerank")));
    let mut b = a.clone();
    b.sampling.temperature = Some(0.0);
    assert_ne!(k, chat_key(&info, &b));
    assert_ne!(k, chat_key(&info, &req("hello!")));
    let other = ModelInfo {
        model: "gpt-4o-mini".into(),
        ..info.clone()
    };
    assert_ne!(k, chat_key(&other, &a));
    let s = ScoreRequest {
        messages: a.messages.clone(),
        prefix: "p".into(),
        suffixes: vec!["x".into()],
        account: None,
        priority: 0,
    };
    assert_ne!(score_key(&info, &s), k);
}

#[tokio::test]
async fn auto_records_then_replay_answers_without_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let inner = counting();
    let store = Arc::new(Store::open(&path).unwrap());
    let rec = Recorder::new(inner.clone(), Some(store), RecordMode::Auto).unwrap();
    let live = rec.chat(&req("one").with_account("profile")).await.unwrap();
    let again = rec.chat(&req("one")).await.unwrap();
    assert_eq!(live.usage.replayed.requests, 0);
    assert_eq!(again.usage.replayed.requests, 1, "a replay says so");
    assert_eq!(
        (again.usage.replayed.prompt_tokens, &again.content),
        (live.usage.prompt_tokens, &live.content)
    );
    let scored = rec
        .score(&ScoreRequest {
            messages: vec![],
            prefix: "p ".into(),
            suffixes: vec!["a".into(), "bbb".into()],
            account: None,
            priority: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        3,
        "one chat, one request per scored candidate; the repeat came from the store"
    );

    assert_eq!(scored.usage.replayed.requests, 0);

    // A fresh process: replay-only, no inner model at all.
    let store = Arc::new(Store::open(&path).unwrap());
    assert_eq!(store.len(), 3, "a record per chat and per scored candidate");
    let rec = Recorder::replay_sole_model(store).unwrap();
    assert_eq!(rec.chat(&req("one")).await.unwrap().content, live.content);
    let s2 = rec
        .score(&ScoreRequest {
            messages: vec![],
            prefix: "p ".into(),
            suffixes: vec!["a".into(), "bbb".into()],
            account: None,
            priority: 0,
        })
        .await
        .unwrap();
    assert_eq!(s2.scores, scored.scores);
    assert_eq!(s2.usage.replayed.requests, 2, "one per candidate");

    let miss = rec
        .chat(&req("a prompt that was never recorded"))
        .await
        .unwrap_err();
    let msg = miss.to_string();
    assert!(matches!(miss, LlmError::ReplayMiss { .. }));
    assert!(
        msg.contains(&chat_key(
            &rec.info(),
            &req("a prompt that was never recorded")
        )),
        "{msg}"
    );
    assert!(
        msg.contains("test:counting") && msg.contains("a prompt that was never"),
        "{msg}"
    );
}

#[tokio::test]
async fn every_record_carries_model_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let store = Arc::new(Store::open(&path).unwrap());
    let rec = Recorder::new(counting(), Some(store), RecordMode::Record).unwrap();
    rec.chat(&req("x")).await.unwrap();
    let line = std::fs::read_to_string(&path).unwrap();
    let r: Record = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(r.model.model, "counting");
    assert_eq!(r.settings["threads"], 1);
    assert_eq!(r.request["messages"][1]["content"], "x");
}

#[tokio::test]
async fn torn_last_line_is_dropped_and_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    {
        let store = Arc::new(Store::open(&path).unwrap());
        let rec = Recorder::new(counting(), Some(store), RecordMode::Auto).unwrap();
        rec.chat(&req("kept")).await.unwrap();
    }
    let good = std::fs::read(&path).unwrap();
    // Simulate a crash in the middle of writing the second record.
    let torn = br#"{"key":"abc","kind":"chat","model":{"backend":"te"#;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(torn)
        .unwrap();

    let store = Arc::new(Store::open(&path).unwrap());
    assert_eq!(store.len(), 1);
    assert_eq!(store.torn_bytes(), torn.len() as u64);
    let inner = counting();
    let rec = Recorder::new(inner.clone(), Some(store), RecordMode::Auto).unwrap();
    rec.chat(&req("kept")).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
    rec.chat(&req("new")).await.unwrap();

    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(&good));
    assert!(bytes.ends_with(b"\n"));
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(text.lines().count(), 2, "the torn bytes are gone: {text}");
    assert_eq!(Store::open(&path).unwrap().len(), 2);
}

#[test]
fn a_corrupt_complete_line_is_an_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    std::fs::write(&path, "\n{not json}\n").unwrap();
    let e = Store::open(&path).unwrap_err().to_string();
    assert!(e.contains("rec.jsonl:2:"), "{e}");
}

#[tokio::test]
async fn concurrent_identical_requests_pay_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("r.jsonl")).unwrap());
    let inner = counting();
    let rec = Arc::new(Recorder::new(inner.clone(), Some(store), RecordMode::Auto).unwrap());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let rec = rec.clone();
            tokio::spawn(async move { rec.chat(&req("same")).await.unwrap() })
        })
        .collect();
    let outs: Vec<ChatResponse> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(outs.windows(2).all(|w| w[0].content == w[1].content));
    let replays = outs.iter().map(|o| o.usage.replayed.requests).sum::<u64>();
    assert_eq!(replays, 7, "the other seven are replays");
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn record_mode_calls_again_and_newest_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let inner = counting();
    let rec = Recorder::new(
        inner.clone(),
        Some(Arc::new(Store::open(&path).unwrap())),
        RecordMode::Record,
    )
    .unwrap();
    rec.chat(&req("x")).await.unwrap();
    rec.chat(&req("x")).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    assert_eq!(Store::open(&path).unwrap().len(), 1);
}

#[tokio::test]
async fn off_mode_touches_no_file_and_replays_nothing() {
    let inner = counting();
    let rec = Recorder::new(inner.clone(), None, RecordMode::Off).unwrap();
    rec.chat(&req("x").with_account("edit")).await.unwrap();
    let again = rec.chat(&req("x").with_account("edit")).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    assert_eq!(again.usage.replayed.requests, 0);
    assert!(Recorder::new(counting(), None, RecordMode::Replay).is_err());
}

#[test]
fn mode_parses_and_rejects_unknown_words() {
    assert_eq!("auto".parse::<RecordMode>().unwrap(), RecordMode::Auto);
    assert!(
        "replays"
            .parse::<RecordMode>()
            .unwrap_err()
            .to_string()
            .contains("off, record, replay, auto")
    );
}

#[tokio::test]
async fn a_recording_of_a_whole_score_request_still_replays() {
    // Recordings made when a score request was one record keep replaying after the switch to
    // one record per candidate.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let info = counting().info();
    let sr = ScoreRequest {
        messages: vec![Message::system("sys")],
        prefix: "p ".into(),
        suffixes: vec!["a".into(), "bbb".into()],
        account: None,
        priority: 0,
    };
    let old = Record {
        key: score_key(&info, &sr),
        kind: agp_llm::usage::CallKind::Score,
        model: info.clone(),
        settings: serde_json::Value::Null,
        request: serde_json::Value::Null,
        chat: None,
        score: Some(ScoreResponse {
            scores: vec![0.25, -1.5],
            usage: Usage::default(),
        }),
        labels: None,
        failure: None,
        recorded_at: 0,
    };
    std::fs::write(&path, serde_json::to_string(&old).unwrap() + "\n").unwrap();
    let rec = Recorder::replay_only(info, Arc::new(Store::open(&path).unwrap()));
    let r = rec.score(&sr).await.unwrap();
    assert_eq!(r.scores, vec![0.25, -1.5]);
    assert_eq!(r.usage.replayed.requests, 2, "one per candidate");
}

#[tokio::test]
async fn label_requests_need_a_backend_that_reads_them() {
    // A model without first-token label scoring is a setup error, through a recorder too, and
    // nothing is recorded for it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let rec = Recorder::new(
        counting(),
        Some(Arc::new(Store::open(&path).unwrap())),
        RecordMode::Auto,
    )
    .unwrap();
    let req = LabelRequest {
        messages: vec![Message::user("which?")],
        labels: vec!["0".into(), "1".into()],
        prefill: String::new(),
        account: None,
        priority: 0,
    };
    let e = rec.label_logprobs(&req).await.unwrap_err();
    assert_eq!(e.reason(), FailureReason::Setup);
    assert!(e.to_string().contains("backend test"), "{e}");
    assert!(Store::open(&path).unwrap().is_empty());
    // Its key depends on the labels as well as the messages.
    let info = counting().info();
    let other = LabelRequest {
        labels: vec!["1".into(), "0".into()],
        ..req.clone()
    };
    assert_ne!(label_key(&info, &req), label_key(&info, &other));
    // The prefill is part of the request, so of the key; an empty one is not written.
    let prefilled = LabelRequest {
        prefill: "[".into(),
        ..req.clone()
    };
    assert_ne!(label_key(&info, &req), label_key(&info, &prefilled));
    let json = serde_json::to_value(&req).unwrap();
    assert!(json.get("prefill").is_none(), "{json}");
}

/// A model that scores every candidate of a request in one pass, as the in-process backend
/// does, counting the candidates it scores.
struct OnePass {
    scored: AtomicUsize,
}

#[async_trait]
impl ChatModel for OnePass {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: "test".into(),
            model: "one-pass".into(),
            file_sha256: None,
        }
    }
    async fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        Err(LlmError::Other("not used".into()))
    }
    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        self.scored.fetch_add(req.suffixes.len(), Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok(ScoreResponse {
            scores: req.suffixes.iter().map(|s| s.len() as f32).collect(),
            usage: Usage::default(),
        })
    }
    fn scores_in_one_pass(&self) -> bool {
        true
    }
}

/// Two pointwise requests sharing candidates (the same list shown in two orders) arrive at
/// once: each shared candidate is scored, paid and recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scorings_sharing_candidates_pay_each_candidate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let model = Arc::new(OnePass {
        scored: AtomicUsize::new(0),
    });
    let store = Arc::new(Store::open(&path).unwrap());
    let rec = Arc::new(Recorder::new(model.clone(), Some(store), RecordMode::Auto).unwrap());
    let suffixes: Vec<String> = (0..10).map(|i| format!("candidate {i}")).collect();
    let mut reversed = suffixes.clone();
    reversed.reverse();
    let ask = |suffixes: Vec<String>| {
        let rec = rec.clone();
        tokio::spawn(async move {
            let req = ScoreRequest {
                messages: vec![Message::system("sys")],
                prefix: "history".into(),
                suffixes,
                account: None,
                priority: 0,
            };
            rec.score(&req).await.unwrap()
        })
    };
    let (a, b) = (ask(suffixes.clone()), ask(reversed));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let mut b_back = b.scores.clone();
    b_back.reverse();
    assert_eq!(
        a.scores, b_back,
        "the same candidate scores the same either way"
    );
    assert_eq!(
        model.scored.load(Ordering::SeqCst),
        10,
        "each candidate scored once"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let keys: std::collections::HashSet<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Record>(l).unwrap().key)
        .collect();
    assert_eq!(text.lines().count(), 10, "one record per candidate");
    assert_eq!(keys.len(), 10);
}

/// [`Counting`] under another backend's name: aliases of a request's sampling are a property of
/// the backend that made the recording.
struct Named {
    backend: &'static str,
    inner: Arc<Counting>,
}

#[async_trait]
impl ChatModel for Named {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: self.backend.into(),
            ..self.inner.info()
        }
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.inner.chat(req).await
    }
    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        self.inner.score(req).await
    }
}

#[tokio::test]
async fn an_in_process_recording_with_unset_sampling_replays_for_its_greedy_equivalent_only() {
    use agp_llm::Sampling;
    for (backend, replays) in [("local", true), ("openai", false)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let model = || -> Arc<dyn ChatModel> {
            Arc::new(Named {
                backend,
                inner: counting(),
            })
        };
        let store = Arc::new(Store::open(&path).unwrap());
        let mut old = req("made before every field was sent");
        old.sampling.max_tokens = Some(96);
        let rec = Recorder::new(model(), Some(store), RecordMode::Auto).unwrap();
        let made = rec.chat(&old).await.unwrap();

        let store = Arc::new(Store::open(&path).unwrap());
        let replay = Recorder::new(model(), Some(store), RecordMode::Replay).unwrap();
        let mut now = old.clone();
        now.sampling = old.sampling.resolved(&Sampling::DECLARED);
        assert_eq!(now.sampling.temperature, Some(0.0));
        assert_eq!(now.sampling.seed, Some(0));
        assert_ne!(
            chat_key(&rec.info(), &now),
            chat_key(&rec.info(), &old),
            "the declared request has a key of its own"
        );
        match replay.chat(&now).await {
            Ok(r) => {
                assert!(replays, "{backend}: an API sampled where a field was unset");
                assert_eq!(r.content, made.content);
            }
            Err(LlmError::ReplayMiss { .. }) => assert!(!replays, "{backend}: not replayed"),
            Err(e) => panic!("{e}"),
        }
        // Sampling at a temperature is never the same request as greedy, on any backend.
        let mut warm = now.clone();
        warm.sampling.temperature = Some(0.7);
        assert!(matches!(
            replay.chat(&warm).await,
            Err(LlmError::ReplayMiss { .. })
        ));
    }
}
