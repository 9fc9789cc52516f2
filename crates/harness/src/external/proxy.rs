//! An OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 that forwards an external method's
//! calls to the run's model through the same client, record/replay store, slot pool and call
//! ledger as AGP's own calls: the method is recorded, replayed offline, costed and counted per
//! stage like any built-in method. It holds no key: the one the method sends is ignored.

use agp::{Llm, Stage};
use agp_llm::{ChatRequest, Message, Role, Sampling};
use agp_sim_api::http::{Conn, ReadError, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

pub struct Proxy {
    pub base_url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    llm: Llm,
    model: String,
    /// Calls outside a `train_batch`/`feedback` exchange are evaluation (`test`) calls.
    training: AtomicBool,
    requests: AtomicU64,
    /// The first failure that must end the run (a replay miss, a rejected request): the method
    /// sees an error answer, and the harness reports this instead of whatever the method does
    /// with it.
    fatal: Mutex<Option<String>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(llm: Llm) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let model = llm.model.info().model;
        let state = Arc::new(State {
            llm,
            model,
            training: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            fatal: Mutex::new(None),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut conn = Conn::new(stream);
                    loop {
                        let req = match conn.read_request().await {
                            Ok(r) => r,
                            Err(ReadError::Closed) => return,
                            Err(ReadError::Reject(status, why)) => {
                                let _ = conn.send(&error(status, why), false).await;
                                return;
                            }
                        };
                        let resp = handle(&s, &req).await;
                        if conn.send(&resp, req.keep_alive).await.is_err() || !req.keep_alive {
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self {
            base_url: format!("http://{addr}/v1"),
            state,
            task,
        })
    }

    pub fn model(&self) -> &str {
        &self.state.model
    }

    pub fn set_training(&self, on: bool) {
        self.state.training.store(on, Ordering::Relaxed);
    }

    /// The failure that must end the run, if one happened.
    pub fn fatal(&self) -> Option<String> {
        self.state
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn error(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"message": message, "type": "agp_harness", "code": status}}),
    )
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: String,
}

#[derive(Deserialize)]
struct InRequest {
    messages: Vec<InMessage>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    n: Option<u32>,
}

/// A stage by its serialised name (`profile`, `rerank`, …), in any case.
fn stage_named(name: &str) -> Option<Stage> {
    serde_json::from_value(serde_json::Value::from(name.to_ascii_lowercase())).ok()
}

async fn handle(s: &State, req: &agp_sim_api::http::Request) -> Response {
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("GET", "/v1/models") => {
            return Response::json(
                200,
                &json!({"object": "list", "data": [{"id": s.model, "object": "model"}]}),
            );
        }
        ("POST", "/v1/chat/completions") => {}
        (_, "/v1/chat/completions") => return error(405, "use POST"),
        _ => {
            return error(
                404,
                "this endpoint serves /v1/chat/completions and /v1/models",
            );
        }
    }
    let body: InRequest = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return error(400, &format!("request body: {e}")),
    };
    if body.stream {
        return error(
            400,
            "stream = true is not supported: ask for the whole answer",
        );
    }
    if body.n.is_some_and(|n| n != 1) {
        return error(400, "n must be 1");
    }
    let mut messages = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return error(
                    400,
                    &format!("messages[{i}].role {other:?} is not supported"),
                );
            }
        };
        messages.push(Message {
            role,
            content: m.content,
        });
    }
    let stage = match req.headers.iter().find(|(k, _)| k == "x-agp-stage") {
        Some((_, v)) => match stage_named(v) {
            Some(st) => st,
            None => {
                return error(
                    400,
                    &format!(
                        "x-agp-stage {v:?}: expected profile, rerank, feedback, summarize, \
                         edit, verify, test or other"
                    ),
                );
            }
        },
        None if s.training.load(Ordering::Relaxed) => Stage::Other,
        None => Stage::Test,
    };
    // What the method leaves unset goes out as the run's decoding (`Llm::chat_request`).
    let chat = ChatRequest {
        sampling: Sampling {
            temperature: body.temperature,
            max_tokens: body.max_completion_tokens.or(body.max_tokens),
            seed: body.seed,
            top_p: body.top_p,
        },
        ..ChatRequest::new(messages)
    };
    let n = s.requests.fetch_add(1, Ordering::Relaxed);
    match s.llm.chat_request(stage, None, chat).await {
        Ok(resp) => Response::json(
            200,
            &json!({
                "id": format!("agp-{n}"),
                "object": "chat.completion",
                "model": s.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": resp.content},
                    "finish_reason": resp.finish_reason.as_deref().unwrap_or("stop"),
                }],
                "usage": {
                    "prompt_tokens": resp.usage.prompt_tokens,
                    "completion_tokens": resp.usage.completion_tokens,
                    "total_tokens": resp.usage.prompt_tokens + resp.usage.completion_tokens,
                },
            }),
        ),
        Err(e) => {
            let fatal = e.failure_reason().is_none_or(|r| r.is_fatal());
            let msg = format!("{e:#}");
            if fatal {
                s.fatal
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(|| msg.clone());
            }
            // A failure the harness would tolerate (a refusal, an outage past the retries) is
            // a 502 naming its reason, which the method passes back as `failed` to have the
            // user scored as a failed call; a fatal one is a 500.
            if fatal {
                error(500, &msg)
            } else {
                let reason = e
                    .failure_reason()
                    .map(|r| r.as_str())
                    .unwrap_or("server-error");
                Response::json(
                    502,
                    &json!({"error": {"message": msg, "type": "agp_harness", "code": 502,
                                      "reason": reason}}),
                )
            }
        }
    }
}
