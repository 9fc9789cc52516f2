//! The OpenAI-compatible client against a loopback mock server: each fault is retried to
//! success or reported with request id and status; injected transient faults do not change a
//! run's results; the API key leaks nowhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_llm::http::{ApiKey, HttpConfig, OpenAiClient};
use agp_llm::{
    CallKind, CallOutcome, CallUsage, ChatModel, ChatRequest, LabelRequest, LlmError, Message,
    PriceTable, RecordMode, Recorder, ScoreRequest, Store,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk-test-DO-NOT-LEAK-4f9c2a";

fn completion(content: &str, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    })
}

/// The server's deterministic answer to a request: derived from its last message, so two runs
/// can be compared without a real model.
fn echo_answer(body: &Value) -> String {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    format!("echo:{}", last.chars().rev().collect::<String>())
}

struct Echo;
impl Respond for Echo {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        ResponseTemplate::new(200)
            .insert_header("x-request-id", "req_echo")
            .set_body_json(completion(&echo_answer(&body), "stop"))
    }
}

/// Fails the first `fails` attempts of every distinct request body, each with a fault picked
/// from `faults` by attempt number, then answers like [`Echo`].
struct Faulty {
    fails: usize,
    faults: Vec<ResponseTemplate>,
    seen: Mutex<HashMap<Vec<u8>, usize>>,
}
impl Respond for Faulty {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(req.body.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        if n < self.fails {
            let h = req.body.iter().map(|&b| b as usize).sum::<usize>();
            self.faults[(h + n) % self.faults.len()].clone()
        } else {
            Echo.respond(req)
        }
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

fn client(base: &str, model: &str) -> (OpenAiClient, Lines) {
    let mut cfg = HttpConfig::generic(&format!("{base}/v1"), model);
    cfg.api_key = Some(ApiKey::new(KEY));
    // Generous next to normal answers (milliseconds) even on a loaded machine, short next to
    // the 10 s the timeout fault holds its answer back.
    cfg.timeout = Duration::from_millis(1500);
    cfg.max_retries = 4;
    cfg.backoff_base = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(40);
    cfg.jobs = 8;
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let c = OpenAiClient::new(cfg)
        .unwrap()
        .with_log(Arc::new(move |l: &str| {
            sink.lock().unwrap().push(l.to_string())
        }));
    (c, lines)
}

fn req(text: &str) -> ChatRequest {
    ChatRequest::new(vec![
        Message::system("You rank movies."),
        Message::user(text),
    ])
}

async fn server_with(resp: impl Respond + 'static) -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(resp)
        .mount(&s)
        .await;
    s
}

async fn one_fault_then_echo(fault: ResponseTemplate) -> (MockServer, OpenAiClient, Lines) {
    let s = server_with(Faulty {
        fails: 1,
        faults: vec![fault],
        seen: Mutex::default(),
    })
    .await;
    let (c, l) = client(&s.uri(), "gpt-4o-mini");
    (s, c, l)
}

#[tokio::test]
async fn each_transient_fault_is_retried_to_success() {
    let truncated = serde_json::to_string(&completion("cut", "stop")).unwrap();
    let cases: Vec<(&str, ResponseTemplate)> = vec![
        (
            "429",
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(json!({"error": {"message": "rate limited"}})),
        ),
        ("500", ResponseTemplate::new(500)),
        (
            "502",
            ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"),
        ),
        ("503", ResponseTemplate::new(503)),
        (
            "timeout",
            ResponseTemplate::new(200)
                .set_body_json(completion("late", "stop"))
                .set_delay(Duration::from_secs(10)),
        ),
        (
            "malformed JSON",
            ResponseTemplate::new(200).set_body_string("{\"choices\": [oops"),
        ),
        (
            "empty content",
            ResponseTemplate::new(200).set_body_json(completion("", "stop")),
        ),
        ("empty body", ResponseTemplate::new(200).set_body_string("")),
        (
            "truncated body",
            ResponseTemplate::new(200).set_body_string(&truncated[..truncated.len() / 2]),
        ),
    ];
    for (name, fault) in cases {
        let (_s, c, lines) = one_fault_then_echo(fault).await;
        let r = c
            .chat(&req("Alien (1979)"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.content, "echo:)9791( neilA", "{name}");
        assert_eq!(r.usage.retries, 1, "{name}");
        let log = lines.lock().unwrap().join("\n");
        // A 429 that says when to return pauses the pool and spends no retry.
        let said = if name == "429" {
            "pausing all requests"
        } else {
            "retry 1/4"
        };
        assert!(log.contains(said), "{name}: {log}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (_s, c, lines) =
        one_fault_then_echo(ResponseTemplate::new(429).insert_header("retry-after", "1")).await;
    c.chat(&req("x")).await.unwrap();
    let log = lines.lock().unwrap().join("\n");
    assert!(
        log.contains("HTTP 429") && log.contains("pausing all requests 1.00s"),
        "{log}"
    );
}

/// Accepts connections; drops the first `resets` right after reading the request, then
/// answers every later one with a fixed completion.
async fn resetting_server(resets: usize) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut sock, _) = l.accept().await.unwrap();
            n += 1;
            let reset = n <= resets;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                loop {
                    let k = sock.read(&mut buf).await.unwrap_or(0);
                    if k == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..k]);
                    if let Some(h) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..h]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= h + 4 + len {
                            break;
                        }
                    }
                }
                if reset {
                    drop(sock);
                    return;
                }
                let body = serde_json::to_string(&completion("after reset", "stop")).unwrap();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn connection_reset_is_retried() {
    let base = resetting_server(2).await;
    let (c, lines) = client(&base, "gpt-4o-mini");
    let r = c.chat(&req("x")).await.unwrap();
    assert_eq!(r.content, "after reset");
    assert_eq!(r.usage.retries, 2);
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .all(|l| l.contains("no response"))
    );
}

fn http_err(e: LlmError) -> (String, u16, String) {
    match e {
        LlmError::Http {
            request_id,
            status,
            message,
            ..
        } => (request_id, status, message),
        other => panic!("expected an HTTP error, got {other}"),
    }
}

#[tokio::test]
async fn permanent_failures_are_reported_with_request_id_and_status() {
    // A refusal: not retried.
    let refusal = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
        "refusal": "I can't help with that."}, "finish_reason": "stop"}]});
    let s = server_with(
        ResponseTemplate::new(200)
            .insert_header("x-request-id", "req_refuse")
            .set_body_json(refusal),
    )
    .await;
    let (c, _) = client(&s.uri(), "gpt-4o");
    let (id, status, msg) = http_err(c.chat(&req("x")).await.unwrap_err());
    assert_eq!((id.as_str(), status), ("req_refuse", 200));
    assert!(msg.contains("refused"), "{msg}");
    assert_eq!(s.received_requests().await.unwrap().len(), 1);

    // Content cut at max_tokens: reported, never silently accepted.
    let s = server_with(
        ResponseTemplate::new(200)
            .insert_header("x-request-id", "req_len")
            .set_body_json(completion("1. Alien\n2. Al", "length")),
    )
    .await;
    let (c, _) = client(&s.uri(), "gpt-4o");
    let mut r = req("x");
    r.sampling.max_tokens = Some(8);
    // A cut answer is an answer: kept as it is, as the reference code keeps it, for the parser
    // to judge; it says it was cut.
    let cut = c.chat(&r).await.unwrap();
    assert_eq!(cut.content, "1. Alien\n2. Al");
    assert_eq!(cut.finish_reason.as_deref(), Some("length"));
    assert_eq!(s.received_requests().await.unwrap().len(), 1);

    // A 400 is the caller's bug: one attempt.
    let s = server_with(
        ResponseTemplate::new(400)
            .insert_header("x-request-id", "req_bad")
            .set_body_json(json!({"error": {"message": "bad field"}})),
    )
    .await;
    let (c, _) = client(&s.uri(), "gpt-4o");
    let (id, status, msg) = http_err(c.chat(&req("x")).await.unwrap_err());
    assert_eq!(
        (id.as_str(), status, msg.as_str()),
        ("req_bad", 400, "bad field")
    );
    assert_eq!(s.received_requests().await.unwrap().len(), 1);

    // A 503 that never clears: reported after the retry budget.
    let s = server_with(ResponseTemplate::new(503).insert_header("x-request-id", "req_down")).await;
    let (c, _) = client(&s.uri(), "gpt-4o");
    let (id, status, msg) = http_err(c.chat(&req("x")).await.unwrap_err());
    assert_eq!((id.as_str(), status), ("req_down", 503));
    assert!(msg.contains("gave up after 5 attempts"), "{msg}");
    assert_eq!(s.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn injected_transient_faults_do_not_change_results() {
    let prompts: Vec<String> = (0..24)
        .map(|i| format!("user {i} watched Heat (1995)"))
        .collect();
    let run = |c: Arc<OpenAiClient>| {
        let prompts = prompts.clone();
        async move {
            let calls = prompts.iter().map(|p| {
                let c = c.clone();
                let p = p.clone();
                async move { c.chat(&req(&p)).await.map(|r| r.content) }
            });
            futures::future::join_all(calls)
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        }
    };
    let clean = server_with(Echo).await;
    let (c, _) = client(&clean.uri(), "deepseek-chat");
    let want = run(Arc::new(c)).await;

    let faults = vec![
        ResponseTemplate::new(429).insert_header("retry-after", "0"),
        ResponseTemplate::new(500),
        ResponseTemplate::new(502),
        ResponseTemplate::new(503),
        ResponseTemplate::new(200).set_body_string("{broken"),
        ResponseTemplate::new(200).set_body_json(completion("", "stop")),
        ResponseTemplate::new(200)
            .set_body_json(completion("slow", "stop"))
            .set_delay(Duration::from_secs(10)),
    ];
    let noisy = server_with(Faulty {
        fails: 2,
        faults,
        seen: Mutex::default(),
    })
    .await;
    let (c, lines) = client(&noisy.uri(), "deepseek-chat");
    let got = run(Arc::new(c)).await;
    assert_eq!(got, want);
    // Every request failed its first two attempts: 48 failures, many in a row, which the
    // client may also read as an outage (one line, then pauses) rather than 48 retry lines.
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("retry") || l.contains("looks down")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn o_series_send_max_completion_tokens_and_no_temperature() {
    let s = server_with(Echo).await;
    let mut r = req("x");
    r.sampling.temperature = Some(0.0);
    r.sampling.max_tokens = Some(64);
    let (o3, _) = client(&s.uri(), "o3-mini");
    o3.chat(&r).await.unwrap();
    let (g4, _) = client(&s.uri(), "gpt-4o");
    g4.chat(&r).await.unwrap();
    let bodies: Vec<Value> = s
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|q| serde_json::from_slice(&q.body).unwrap())
        .collect();
    assert_eq!(bodies[0]["max_completion_tokens"], 64);
    assert!(bodies[0].get("temperature").is_none() && bodies[0].get("max_tokens").is_none());
    assert_eq!(bodies[1]["max_tokens"], 64);
    assert_eq!(bodies[1]["temperature"], 0.0);
}

struct Logprobs;
impl Respond for Logprobs {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["logprobs"], true);
        assert_eq!(body["max_tokens"], 1);
        let last = body["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string();
        // "Yes" gets likelier the longer the title: a known order to check against.
        let p_yes = (last.len() as f64 / 100.0).min(0.9);
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes"}, "finish_reason": "length",
                "logprobs": {"content": [{"token": "Yes", "logprob": p_yes.ln(), "top_logprobs": [
                    {"token": "Yes", "logprob": p_yes.ln()}, {"token": "No", "logprob": (1.0 - p_yes).ln()}]}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 1}
        }))
    }
}

#[tokio::test]
async fn score_uses_first_token_logprobs() {
    let s = server_with(Logprobs).await;
    let (c, _) = client(&s.uri(), "gpt-4o-mini");
    let sr = ScoreRequest {
        messages: vec![Message::system("Answer Yes or No.")],
        prefix: "Would the user enjoy ".into(),
        suffixes: vec![
            "Up".into(),
            "The Lord of the Rings: The Fellowship of the Ring".into(),
            "Heat".into(),
        ],
        account: None,
        priority: 0,
    };
    let r = c.score(&sr).await.unwrap();
    assert_eq!(r.scores.len(), 3);
    assert!(
        r.scores[1] > r.scores[2] && r.scores[2] > r.scores[0],
        "{:?}",
        r.scores
    );
    let p: f64 = ("Would the user enjoy Up".len() as f64) / 100.0;
    assert!((r.scores[0] as f64 - (p.ln() - (1.0 - p).ln())).abs() < 1e-5);
    assert_eq!(r.usage.prompt_tokens, 60);
}

/// A first token whose top list holds label 2 twice (with and without a leading space), label
/// 0 once and label 1 not at all.
struct TopLabels;
impl Respond for TopLabels {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "2"}, "finish_reason": "length",
                "logprobs": {"content": [{"token": "2", "logprob": -0.2, "top_logprobs": [
                    {"token": "2", "logprob": -0.2}, {"token": "0", "logprob": -1.9},
                    {"token": " 2", "logprob": -3.0}, {"token": "Item", "logprob": -4.0}]}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 1}
        }))
    }
}

#[tokio::test]
async fn label_logprobs_read_the_first_tokens_top_list() {
    let s = server_with(TopLabels).await;
    let (c, _) = client(&s.uri(), "gpt-4o-mini");
    let req = LabelRequest {
        messages: vec![Message::user("Which item? Answer with its id.")],
        labels: ["0", "1", "2"].map(String::from).to_vec(),
        prefill: String::new(),
        account: None,
        priority: 0,
    };
    let r = c.label_logprobs(&req).await.unwrap();
    let two = (-0.2f64).exp() + (-3.0f64).exp();
    assert_eq!(r.logprobs[0], -1.9);
    assert_eq!(r.logprobs[1], f32::NEG_INFINITY, "not in the top list");
    assert!((f64::from(r.logprobs[2]) - two.ln()).abs() < 1e-6);
    assert_eq!(r.usage.prompt_tokens, 30);
    let sent: Value =
        serde_json::from_slice(&s.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        (
            &sent["max_tokens"],
            &sent["logprobs"],
            &sent["top_logprobs"]
        ),
        (&json!(1), &json!(true), &json!(20))
    );
    // Without a prefill the user's message is the last one sent.
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    // A prefill goes as a final assistant message for the server to continue.
    let prefilled = LabelRequest {
        prefill: "[".into(),
        ..req.clone()
    };
    c.label_logprobs(&prefilled).await.unwrap();
    let sent: Value =
        serde_json::from_slice(&s.received_requests().await.unwrap()[1].body).unwrap();
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "Which item? Answer with its id."},
            {"role": "assistant", "content": "["}
        ])
    );

    // Recorded (−∞ as null) and replayed as it was.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    let rec = Recorder::new(
        Arc::new(c),
        Some(Arc::new(Store::open(&path).unwrap())),
        RecordMode::Auto,
    )
    .unwrap();
    let recorded = rec.label_logprobs(&req).await.unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"logprobs\":[-1.9,null,")
    );
    let replay = Recorder::replay_only(rec.info(), Arc::new(Store::open(&path).unwrap()));
    let replayed = replay.label_logprobs(&req).await.unwrap();
    assert_eq!(replayed.logprobs, recorded.logprobs);
    assert_eq!(replayed.usage, recorded.usage.replayed(1));
    assert_eq!(s.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_api_key_appears_in_no_recording_log_or_error() {
    // A 401 whose body echoes the key, as some providers do, then transient faults, then success.
    let unauthorized = ResponseTemplate::new(401)
        .insert_header("x-request-id", "req_auth")
        .set_body_json(json!({"error": {"message": format!("Incorrect API key provided: {KEY}")}}));
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(wiremock::matchers::body_string_contains("unauthorised"))
        .respond_with(unauthorized)
        .mount(&s)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Faulty {
            fails: 1,
            faults: vec![
                ResponseTemplate::new(500).set_body_string(format!("upstream saw key {KEY}")),
            ],
            seen: Mutex::default(),
        })
        .mount(&s)
        .await;
    let (c, lines) = client(&s.uri(), "gpt-4o-mini");
    let debug = format!("{c:?}");
    let dir = tempfile::tempdir().unwrap();
    let rec_path = dir.path().join("rec.jsonl");
    let rec = Recorder::new(
        Arc::new(c),
        Some(Arc::new(Store::open(&rec_path).unwrap())),
        RecordMode::Auto,
    )
    .unwrap();
    let fine = rec.chat(&req("fine")).await.unwrap();
    let err = rec.chat(&req("unauthorised")).await.unwrap_err();
    let ledger = agp_llm::UsageLedger::default();
    for (outcome, usage) in [
        (CallOutcome::Answered { truncated: false }, fine.usage),
        (CallOutcome::Failed(err.reason()), Default::default()),
    ] {
        ledger.book(CallUsage {
            account: "test",
            model: "gpt-4o-mini".into(),
            kind: CallKind::Chat,
            requests: 1,
            outcome,
            usage,
        });
    }
    let LlmError::Http {
        request_id, status, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((request_id.as_str(), *status), ("req_auth", 401));

    let report = format!(
        "{:?}\n{}",
        ledger.calls(),
        ledger.markdown(&PriceTable::builtin())
    );
    let mut texts = vec![
        std::fs::read_to_string(&rec_path).unwrap(),
        err.to_string(),
        format!("{err:?}"),
        debug,
        report,
    ];
    texts.extend(lines.lock().unwrap().iter().cloned());
    assert!(texts[0].contains("fine"), "the recording was written");
    assert!(
        texts.iter().any(|t| t.contains("[redacted]")),
        "the echoed key was seen and redacted"
    );
    for t in &texts {
        assert!(
            !t.contains(KEY) && !t.contains("DO-NOT-LEAK"),
            "key leaked into: {t}"
        );
    }
}

/// Answers 429 with `Retry-After` to the first `n` attempts overall, then echoes; records when
/// each attempt arrived.
struct RateLimitedFirst {
    n: usize,
    retry_after_ms: u64,
    seen: Arc<Mutex<Vec<std::time::Instant>>>,
}
impl Respond for RateLimitedFirst {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let k = {
            let mut s = self.seen.lock().unwrap();
            s.push(std::time::Instant::now());
            s.len() - 1
        };
        if k < self.n {
            ResponseTemplate::new(429)
                .insert_header("retry-after-ms", self.retry_after_ms.to_string().as_str())
                .set_body_json(json!({"error": {"message": "slow down"}}))
        } else {
            Echo.respond(req)
        }
    }
}

#[tokio::test]
async fn a_429_that_says_when_to_return_never_spends_the_retry_budget() {
    // Twelve 429s in a row, three times the retry budget: the request still succeeds because
    // the server keeps saying when to come back.
    let s = server_with(RateLimitedFirst {
        n: 12,
        retry_after_ms: 20,
        seen: Arc::default(),
    })
    .await;
    let (c, lines) = client(&s.uri(), "gpt-4o");
    let r = c.chat(&req("patience")).await.unwrap();
    assert_eq!(
        r.content,
        echo_answer(&json!({"messages": [{"content": "patience"}]}))
    );
    assert_eq!(s.received_requests().await.unwrap().len(), 13);
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("pausing all requests"))
    );
}

#[tokio::test]
async fn a_429_pauses_the_whole_pool_not_just_the_refused_request() {
    let seen: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let resp = RateLimitedFirst {
        n: 1,
        retry_after_ms: 300,
        seen: seen.clone(),
    };
    let s = server_with(resp).await;
    let (c, _) = client(&s.uri(), "gpt-4o");
    let c = Arc::new(c);
    let first = {
        let c = c.clone();
        tokio::spawn(async move { c.chat(&req("first")).await })
    };
    // Let the first request meet its 429, then send eight more: none may reach the server
    // before the pause the server asked for is over.
    while s.received_requests().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Time for the client to read the 429 (milliseconds on loopback).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let others: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.chat(&req(&format!("other {i}"))).await })
        })
        .collect();
    first.await.unwrap().unwrap();
    for o in others {
        o.await.unwrap().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10);
    for t in &seen[1..] {
        assert!(
            t.duration_since(seen[0]) >= Duration::from_millis(300),
            "an attempt came {:?} after the 429",
            t.duration_since(seen[0])
        );
    }
}

/// Refuses connections' requests with 503 for the first `down_for`, then echoes.
struct DownFor {
    until: std::time::Instant,
}
impl Respond for DownFor {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if std::time::Instant::now() < self.until {
            ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "maintenance"}}))
        } else {
            Echo.respond(req)
        }
    }
}

#[tokio::test]
async fn an_outage_pauses_and_probes_instead_of_burning_the_retries() {
    let s = server_with(DownFor {
        until: std::time::Instant::now() + Duration::from_millis(1500),
    })
    .await;
    let (c, lines) = client(&s.uri(), "gpt-4o");
    // Four retries with at most 40 ms backoff would give up within ~0.2 s of a 1.5 s outage.
    let c = Arc::new(c);
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.chat(&req(&format!("during outage {i}"))).await })
        })
        .collect();
    for t in calls {
        t.await.unwrap().unwrap();
    }
    let lines = lines.lock().unwrap();
    assert!(lines.iter().any(|l| l.contains("looks down")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("answering again")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_refusal_is_recorded_and_not_asked_again() {
    let s = server_with(ResponseTemplate::new(200).set_body_json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "refusal": "I can't help with that."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1}
    })))
    .await;
    let (c, _) = client(&s.uri(), "gpt-4o");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("r.jsonl")).unwrap());
    let rec = Recorder::new(Arc::new(c), Some(store.clone()), RecordMode::Auto).unwrap();
    let e = rec.chat(&req("forbidden")).await.unwrap_err();
    assert_eq!(e.reason(), agp_llm::FailureReason::Refusal);
    // A second run (a fresh store over the same file) gets the same answer for free.
    let store = Arc::new(Store::open(dir.path().join("r.jsonl")).unwrap());
    let (c, _) = client(&s.uri(), "gpt-4o");
    let rec = Recorder::new(Arc::new(c), Some(store), RecordMode::Auto).unwrap();
    let e = rec.chat(&req("forbidden")).await.unwrap_err();
    assert_eq!(e.reason(), agp_llm::FailureReason::Refusal);
    assert_eq!(s.received_requests().await.unwrap().len(), 1);
}

/// Counts the requests it sees per distinct body and answers every one with a 200 whose
/// content is empty (cut at the token limit when `length` is set).
#[derive(Clone, Default)]
struct EmptyAnswers {
    seen: Arc<Mutex<HashMap<Vec<u8>, usize>>>,
    length: bool,
}
impl Respond for EmptyAnswers {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        *self
            .seen
            .lock()
            .unwrap()
            .entry(req.body.clone())
            .or_insert(0) += 1;
        let finish = if self.length { "length" } else { "stop" };
        ResponseTemplate::new(200)
            .insert_header("x-request-id", "req_empty")
            .set_body_json(completion("", finish))
    }
}

#[tokio::test]
async fn an_empty_answer_is_asked_at_most_twice_then_recorded_and_not_asked_again() {
    let server = EmptyAnswers::default();
    let s = server_with(server.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let recorder = || {
        let (c, _) = client(&s.uri(), "gpt-4o");
        let store = Arc::new(Store::open(&path).unwrap());
        Recorder::new(Arc::new(c), Some(store), RecordMode::Auto).unwrap()
    };
    let asks = ["Alien (1979)", "Heat (1995)", "Up (2009)"];
    let rec = recorder();
    let reqs: Vec<ChatRequest> = asks.iter().map(|a| req(a)).collect();
    let errors = futures::future::join_all(reqs.iter().map(|r| rec.chat(r))).await;
    for e in errors {
        let e = e.unwrap_err();
        assert_eq!(e.reason(), agp_llm::FailureReason::Empty, "{e}");
        assert!(!e.reason().is_transient(), "{e}");
        let (id, status, msg) = http_err(e);
        assert_eq!((id.as_str(), status), ("req_empty", 200));
        assert!(msg.contains("empty content"), "{msg}");
    }
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.len(), asks.len());
        assert!(seen.values().all(|&n| n == 2), "{seen:?}");
    }
    // Each is a recorded failure, in place of an answer.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.len(), asks.len());
    let info = agp_llm::ModelInfo {
        backend: "http".into(),
        model: "gpt-4o".into(),
        file_sha256: None,
    };
    for a in asks {
        let r = store.get(&agp_llm::chat_key(&info, &req(a))).unwrap();
        assert!(r.chat.is_none());
        assert_eq!(
            r.failure.unwrap().reason,
            agp_llm::FailureReason::Empty,
            "{a}"
        );
    }
    // A second run over the same recordings sends nothing and gets the same failures.
    let before = s.received_requests().await.unwrap().len();
    let rec = recorder();
    for a in asks {
        let e = rec.chat(&req(a)).await.unwrap_err();
        assert_eq!(e.reason(), agp_llm::FailureReason::Empty, "{e}");
    }
    assert_eq!(s.received_requests().await.unwrap().len(), before);

    // Empty because the answer was cut at max_tokens before any text: the same cap cuts it
    // again, so it is final at once.
    let server = EmptyAnswers {
        length: true,
        ..EmptyAnswers::default()
    };
    let s = server_with(server.clone()).await;
    let (c, _) = client(&s.uri(), "gpt-4o");
    let mut r = req("x");
    r.sampling.max_tokens = Some(4);
    let (_, _, msg) = http_err(c.chat(&r).await.unwrap_err());
    assert!(msg.contains("max_tokens=4"), "{msg}");
    assert_eq!(s.received_requests().await.unwrap().len(), 1);
}

/// Scores by logprobs; fails (400, permanent) every request whose last message contains
/// `poison`.
struct Scorer {
    poison: &'static str,
}
impl Respond for Scorer {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let last = body["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string();
        if last.contains(self.poison) {
            return ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "busy"}}));
        }
        let yes = -(last.len() as f64) / 100.0;
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes"},
                "finish_reason": "stop", "logprobs": {"content": [{"token": "Yes", "logprob": yes,
                "top_logprobs": [{"token": "Yes", "logprob": yes}, {"token": "No", "logprob": -1.0}]}]}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1}
        }))
    }
}

#[tokio::test]
async fn each_scored_candidate_is_paid_once_even_when_a_sibling_fails() {
    let s = server_with(Scorer { poison: "Cursed" }).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let score_req = |cands: &[&str]| ScoreRequest {
        messages: vec![Message::system("sys")],
        prefix: "History: Heat\nCandidate: ".into(),
        suffixes: cands.iter().map(|c| c.to_string()).collect(),
        account: None,
        priority: 0,
    };
    let recorder = |s: &MockServer| {
        let (c, _) = client(&s.uri(), "gpt-4o");
        let store = Arc::new(Store::open(&path).unwrap());
        Recorder::new(Arc::new(c), Some(store), RecordMode::Auto).unwrap()
    };
    // One candidate keeps failing: the request fails, but its three answered siblings are kept.
    let rec = recorder(&s);
    let e = rec
        .score(&score_req(&["Alien", "Cursed", "Brazil", "Up"]))
        .await
        .unwrap_err();
    assert!(e.reason().is_transient(), "{e}");
    let failed_attempts = 5; // one attempt and four retries
    assert_eq!(
        s.received_requests().await.unwrap().len(),
        3 + failed_attempts
    );
    // Later, with overlapping candidates: only the new ones are sent.
    let s2 = server_with(Scorer { poison: "nothing" }).await;
    let rec = recorder(&s2);
    let r = rec
        .score(&score_req(&["Alien", "Cursed", "Brazil", "Up", "Heat"]))
        .await
        .unwrap();
    assert_eq!(r.scores.len(), 5);
    assert_eq!(s2.received_requests().await.unwrap().len(), 2);
    let r2 = rec.score(&score_req(&["Up", "Alien"])).await.unwrap();
    assert_eq!(r2.scores, vec![r.scores[3], r.scores[0]]);
    assert_eq!(s2.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_unwritable_recordings_file_is_an_error_before_any_call() {
    let s = server_with(Echo).await;
    let (c, _) = client(&s.uri(), "gpt-4o");
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: no process, root or not, can append to it.
    let path = dir.path().join("taken");
    std::fs::create_dir(&path).unwrap();
    let store = Arc::new(Store::open(dir.path().join("missing-dir-is-fine/r.jsonl")).unwrap());
    assert!(Recorder::new(Arc::new(c), Some(store), RecordMode::Auto).is_ok());
    let (c, _) = client(&s.uri(), "gpt-4o");
    let store = Store::open(&path);
    let err = match store {
        Err(e) => e.to_string(),
        Ok(st) => Recorder::new(Arc::new(c), Some(Arc::new(st)), RecordMode::Auto)
            .err()
            .expect("a directory cannot be appended to")
            .to_string(),
    };
    assert!(err.contains("taken"), "{err}");
    assert!(s.received_requests().await.unwrap().is_empty());
}
