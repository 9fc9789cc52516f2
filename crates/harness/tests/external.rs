//! External methods end to end with small Python programs: rankings and training feedback over
//! the protocol, LLM calls through the loopback endpoint booked in the run's ledger, and every
//! way a method can break reported with where it broke and what it wrote to stderr.

use agp::RunOptions;
use agp::Stage;
use agp_datasets::Dataset;
use agp_datasets::candidates::CandidateFile;
use agp_harness::Workspace;
use agp_harness::external::{ExternalConfig, ExternalReranker};
use agp_llm::{
    ChatModel, ChatRequest, ChatResponse, LlmError, ModelInfo, ScoreRequest, ScoreResponse, Usage,
};
use std::path::Path;
use std::sync::Arc;

/// Answers every chat with the candidate numbers reversed ("9,8,…,0"), like a small model's
/// fixed pattern; never asked to score.
struct Reverse;

#[async_trait::async_trait]
impl ChatModel for Reverse {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: "test".into(),
            model: "reverse".into(),
            file_sha256: None,
        }
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        assert_eq!(
            req.sampling.max_tokens,
            Some(32),
            "the method's own max_tokens"
        );
        Ok(ChatResponse {
            served: Default::default(),
            content: "9,8,7,6,5,4,3,2,1,0".into(),
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                ..Usage::default()
            },
            finish_reason: None,
        })
    }
    async fn score(&self, _req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        Err(LlmError::Other("not used".into()))
    }
}

/// Refuses every chat, as a content policy might.
struct Refuses;

#[async_trait::async_trait]
impl ChatModel for Refuses {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: "test".into(),
            model: "refuses".into(),
            file_sha256: None,
        }
    }
    async fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        Err(LlmError::Http {
            request_id: "r1".into(),
            status: 200,
            reason: agp_llm::FailureReason::Refusal,
            message: "I can't help with that".into(),
        })
    }
    async fn score(&self, _req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        Err(LlmError::Other("not used".into()))
    }
}

fn inputs() -> (Dataset, CandidateFile) {
    let ws = Workspace::discover();
    let ds = agp_datasets::bundled_default(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    )
    .unwrap();
    let cands = CandidateFile::read(
        &ws.fixtures()
            .join("candidates/ml-latest-small/lightgcn-seed1.json"),
    )
    .unwrap();
    (ds, cands)
}

/// A method: `body` handles one parsed message `m` and returns the answer dict (or None).
fn method(dir: &Path, body: &str) -> Vec<String> {
    let script = format!(
        r#"
import json, os, sys, urllib.request, urllib.error
def llm(prompt):
    req = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions",
        data=json.dumps({{"model": "x", "max_tokens": 32,
                          "messages": [{{"role": "user", "content": prompt}}]}}).encode(),
        headers={{"content-type": "application/json"}})
    return json.load(urllib.request.urlopen(req))["choices"][0]["message"]["content"]
for line in sys.stdin:
    m = json.loads(line)
    if m["type"] == "hello":
        out = {{"type": "ready", "protocol": 1}}
    else:
{body}
    if out is not None:
        print(json.dumps(out), flush=True)
"#
    );
    let path = dir.join("method.py");
    std::fs::write(&path, script).unwrap();
    vec!["python3".into(), path.display().to_string()]
}

fn config(command: Vec<String>) -> ExternalConfig {
    ExternalConfig {
        label: "py".into(),
        command,
        epochs: 0,
        batch_size: 1,
        n_train_users: None,
        timeout_s: 20,
        env: Default::default(),
    }
}

async fn run(cfg: ExternalConfig) -> Result<agp::MethodRun, String> {
    run_with(cfg, Arc::new(Reverse)).await
}

async fn run_with(
    cfg: ExternalConfig,
    model: Arc<dyn ChatModel>,
) -> Result<agp::MethodRun, String> {
    run_scored(cfg, model, agp::AnswerScoring::default()).await
}

async fn run_scored(
    cfg: ExternalConfig,
    model: Arc<dyn ChatModel>,
    scoring: agp::AnswerScoring,
) -> Result<agp::MethodRun, String> {
    let (ds, cands) = inputs();
    let ws = Workspace::discover();
    let mut r = ExternalReranker::new(cfg.clone(), ws.root().to_path_buf(), &ds, &cands);
    agp::run_reranker(
        &mut r,
        &cfg.label,
        serde_json::Value::Null,
        &ds,
        &cands,
        model,
        &RunOptions {
            jobs: 4,
            scoring,
            ..RunOptions::default()
        },
    )
    .await
    .map_err(|e| format!("{e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_method_ranks_through_the_loopback_llm_and_learns_from_feedback() {
    let tmp = tempfile::tempdir().unwrap();
    // Ranks as the model says; in training, records where each ground truth landed and keeps
    // the count as its state.
    let body = r#"
        if m["type"] == "rank":
            ans = llm("rank " + m["user"] + " " + m["role"] + " " + m["candidates"][0]["text"])
            out = {"type": "ranking", "id": m["id"], "ranking": [int(x) for x in ans.split(",")]}
        elif m["type"] == "train_batch":
            out = {"type": "rankings", "id": m["id"], "rankings": [list(range(10)) for _ in m["users"]]}
        elif m["type"] == "feedback":
            seen = sum(1 for u in m["users"] if 1 <= u["rank"] <= 10 and u["ranking"][u["rank"] - 1] == u["ground_truth"])
            out = {"type": "ok", "id": m["id"], "state": {"feedback": seen}, "prompt": "learned %d" % seen}
        else:
            out = {"type": "error", "id": m.get("id"), "message": "unexpected " + m["type"]}"#;
    let mut cfg = config(method(tmp.path(), body));
    cfg.epochs = 1;
    cfg.batch_size = 4;
    cfg.n_train_users = Some(8);
    let run = run(cfg).await.unwrap();
    let (_, cands) = inputs();
    assert_eq!(run.last.users.len(), cands.test_users.len());
    // The model's reversed order, scored exactly: a user whose target the backbone had at
    // index i now has it at rank K - i.
    for u in &run.last.users {
        let i = cands
            .target_position(u.user, inputs().0.test[u.user as usize])
            .unwrap();
        assert_eq!(u.rank, 10 - i, "user {}", u.user);
    }
    let test_calls = run.calls.get(&Stage::Test).map(|t| t.calls).unwrap_or(0);
    assert_eq!(
        test_calls as usize,
        cands.test_users.len(),
        "one loopback call per test user, booked in the run's ledger"
    );
    assert_eq!(run.final_prompt.as_deref(), Some("learned 4"));
}

async fn failure(body: &str, timeout_s: u64) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(method(tmp.path(), body));
    cfg.timeout_s = timeout_s;
    run(cfg).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_reported_with_the_stderr_tail() {
    let e = failure(
        "        sys.stderr.write('Traceback: boom in my_method\\n'); sys.exit(3)",
        20,
    )
    .await;
    assert!(
        e.contains("closed its stdout") && e.contains("boom in my_method"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_a_message_names_its_line() {
    let e = failure(
        "        print('ranking: 1 2 3', flush=True); out = None",
        20,
    )
    .await;
    assert!(
        e.contains("stdout line 2") && e.contains("ranking: 1 2 3"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_method_times_out() {
    let e = failure("        out = None", 1).await;
    assert!(
        e.contains("no answer to request") && e.contains("within 1 s"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_out_of_range_is_refused() {
    let e = failure(
        r#"        out = {"type": "ranking", "id": m["id"], "ranking": [0, 12]}"#,
        20,
    )
    .await;
    assert!(e.contains("index 12") && e.contains("0..9"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_the_method_passes_back_scores_its_user_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"
        try:
            llm("rank " + m["user"])
            out = {"type": "ranking", "id": m["id"], "ranking": list(range(10))}
        except urllib.error.HTTPError as e:
            assert e.code == 502, e.code
            out = {"type": "ranking", "id": m["id"], "failed": json.loads(e.read())["error"]["reason"]}"#;
    let run = run_with(config(method(tmp.path(), body)), Arc::new(Refuses))
        .await
        .unwrap();
    let (_, cands) = inputs();
    assert_eq!(run.last.users.len(), cands.test_users.len());
    assert!(
        run.last
            .users
            .iter()
            .all(|u| u.parse == agp::ParseOutcome::CallFailed && u.ndcg == 0.0)
    );
    assert_eq!(
        run.failures.get(&agp_llm::FailureReason::Refusal).copied(),
        Some(cands.test_users.len() as u64),
        "each refusal booked once"
    );
}

/// The experiment's rule for unusable answers reaches an external method as it reaches the
/// built-in ones: a method that places nothing scores rank K under `rank-k` and the backbone's
/// order under `backbone`, and each user carries the other rule's score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_experiments_rule_for_unusable_answers_reaches_an_external_method() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"
        out = {"type": "ranking", "id": m["id"], "ranking": []}"#;
    let (ds, cands) = inputs();
    for scoring in agp::AnswerScoring::ALL {
        let run = run_scored(config(method(tmp.path(), body)), Arc::new(Reverse), scoring)
            .await
            .unwrap();
        assert_eq!(run.scoring, scoring);
        assert_eq!(run.last.users.len(), cands.test_users.len());
        for u in &run.last.users {
            let backbone = cands
                .target_position(u.user, ds.test[u.user as usize])
                .unwrap()
                + 1;
            let other = u.other_rule.unwrap();
            let (rank_k, completed) = match scoring {
                agp::AnswerScoring::RankK => (u.rank, other.rank),
                agp::AnswerScoring::Backbone => (other.rank, u.rank),
            };
            assert_eq!((rank_k, completed), (10, backbone), "user {}", u.user);
            assert_eq!(u.parse, agp::ParseOutcome::Unparseable);
        }
    }
}

/// Whether the official `openai` package imports (CI installs it; elsewhere the test says so
/// and skips).
fn have_openai_sdk() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let why = "the `openai` Python package is absent: python3 -m pip install openai==3.51.0";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true requires it: {why}");
        }
        eprintln!("skipping: {why}");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_sdk_client_streams_through_the_loopback_endpoint() {
    if !have_openai_sdk() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The SDK as a method author uses it: base URL and key from the environment, a streamed
    // answer with its usage, and a plain one on the same (kept-alive) client.
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI()
def streamed(prompt):
    text, usage = "", None
    for chunk in client.chat.completions.create(
            model="x", max_tokens=32, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": prompt}]):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
    assert usage is not None and usage.completion_tokens == 5, usage
    return text
def plain(prompt):
    r = client.chat.completions.create(model="x", max_tokens=32,
            messages=[{"role": "user", "content": prompt}])
    return r.choices[0].message.content
for line in sys.stdin:
    m = json.loads(line)
    if m["type"] == "hello":
        out = {"type": "ready", "protocol": 1}
    else:
        ask = streamed if int(m["user"]) % 2 == 0 else plain
        ans = ask("rank " + m["user"])
        out = {"type": "ranking", "id": m["id"], "ranking": [int(x) for x in ans.split(",")]}
    print(json.dumps(out), flush=True)
"#;
    let path = tmp.path().join("sdk_method.py");
    std::fs::write(&path, script).unwrap();
    let run = run(config(vec!["python3".into(), path.display().to_string()]))
        .await
        .unwrap();
    let (ds, cands) = inputs();
    assert_eq!(run.last.users.len(), cands.test_users.len());
    for u in &run.last.users {
        let i = cands
            .target_position(u.user, ds.test[u.user as usize])
            .unwrap();
        assert_eq!(
            u.rank,
            10 - i,
            "user {}: the streamed answer read whole",
            u.user
        );
    }
}
