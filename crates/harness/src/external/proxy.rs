//! An OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 that forwards an external method's
//! calls to the run's model through the same client, record/replay store, slot pool and call
//! ledger as AGP's own calls: the method is recorded, replayed offline, costed and counted per
//! stage like any built-in method. It holds no key: the one the method sends is ignored.
//!
//! HTTP/1.1 is hyper's (keep-alive, chunked request bodies, pipelining), so any client an
//! OpenAI SDK user has works. `stream: true` is served as server-sent events: the answer is
//! asked whole (a recording keeps whole answers), then sent as the chunks the SDK reads, with
//! a final usage chunk when `stream_options.include_usage` asks for one.

use agp::{Llm, Stage};
use agp_llm::{ChatRequest, Message, Role, Sampling};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// A request body larger than this is refused (413): a method's prompts are kilobytes.
const MAX_BODY: usize = 32 << 20;

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
                    let service = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(serve(&s, req).await) }
                    });
                    // A connection that breaks only ends that connection.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
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

type Body = BoxBody<Bytes, Infallible>;

/// What [`handle`] answers, before it is put on the wire.
enum Reply {
    Json(u16, Value),
    /// Server-sent events, one `data:` line each, ended by `data: [DONE]`.
    Events(Vec<Value>),
}

impl Reply {
    fn into_response(self) -> hyper::Response<Body> {
        let (status, content_type, body) = match self {
            Reply::Json(status, v) => (
                status,
                "application/json",
                Full::new(Bytes::from(v.to_string())).boxed(),
            ),
            Reply::Events(events) => {
                let frames = events
                    .iter()
                    .map(|e| format!("data: {e}\n\n"))
                    .chain(std::iter::once("data: [DONE]\n\n".to_string()))
                    .map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))))
                    .collect::<Vec<_>>();
                (
                    200,
                    "text/event-stream",
                    StreamBody::new(futures::stream::iter(frames)).boxed(),
                )
            }
        };
        let mut r = hyper::Response::new(body);
        *r.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        r
    }
}

fn error(status: u16, message: &str) -> Reply {
    Reply::Json(
        status,
        json!({"error": {"message": message, "type": "agp_harness", "code": status}}),
    )
}

/// One exchange: read the whole body (within [`MAX_BODY`]), answer it.
async fn serve(s: &State, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Body> {
    let (parts, body) = req.into_parts();
    let reply = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => handle(s, &parts, &b.to_bytes()).await,
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            error(413, &format!("request body over {} MiB", MAX_BODY >> 20))
        }
        Err(e) => error(400, &format!("reading the request body: {e}")),
    };
    reply.into_response()
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
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// A stage by its serialised name (`profile`, `rerank`, …), in any case.
fn stage_named(name: &str) -> Option<Stage> {
    serde_json::from_value(serde_json::Value::from(name.to_ascii_lowercase())).ok()
}

async fn handle(s: &State, req: &hyper::http::request::Parts, raw: &[u8]) -> Reply {
    match (req.method.as_str(), req.uri.path().trim_end_matches('/')) {
        ("GET", "/v1/models") => {
            return Reply::Json(
                200,
                json!({"object": "list", "data": [{"id": s.model, "object": "model"}]}),
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
    let body: InRequest = match serde_json::from_slice(raw) {
        Ok(b) => b,
        Err(e) => return error(400, &format!("request body: {e}")),
    };
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
    let stage = match req
        .headers
        .get("x-agp-stage")
        .map(|v| v.to_str().unwrap_or("(not text)"))
    {
        Some(v) => match stage_named(v) {
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
        Ok(resp) => {
            let id = format!("agp-{n}");
            let created = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let finish = resp.finish_reason.as_deref().unwrap_or("stop");
            let usage = json!({
                "prompt_tokens": resp.usage.prompt_tokens,
                "completion_tokens": resp.usage.completion_tokens,
                "total_tokens": resp.usage.prompt_tokens + resp.usage.completion_tokens,
            });
            if !body.stream {
                return Reply::Json(
                    200,
                    json!({
                        "id": id,
                        "object": "chat.completion",
                        "created": created,
                        "model": s.model,
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": resp.content},
                            "finish_reason": finish,
                        }],
                        "usage": usage,
                    }),
                );
            }
            let chunk = |choices: Value| {
                json!({"id": id, "object": "chat.completion.chunk", "created": created,
                       "model": s.model, "choices": choices})
            };
            let mut events = vec![
                chunk(
                    json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "finish_reason": null}]),
                ),
                chunk(json!([{"index": 0, "delta": {"content": resp.content},
                              "finish_reason": null}])),
                chunk(json!([{"index": 0, "delta": {}, "finish_reason": finish}])),
            ];
            if body.stream_options.is_some_and(|o| o.include_usage) {
                let mut last = chunk(json!([]));
                last["usage"] = usage;
                events.push(last);
            }
            Reply::Events(events)
        }
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
                Reply::Json(
                    502,
                    json!({"error": {"message": msg, "type": "agp_harness", "code": 502,
                                     "reason": reason}}),
                )
            }
        }
    }
}
