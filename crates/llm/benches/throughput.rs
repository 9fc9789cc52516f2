//! Client throughput against a loopback mock with 200 ms latency at concurrency 32: the ideal
//! is 32 / 0.2 s = 160 calls/s. Criterion reports calls/s (elements/s); the goal is ≥ 90%.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agp_llm::http::{HttpConfig, OpenAiClient};
use agp_llm::{ChatModel, ChatRequest, Message};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONCURRENCY: usize = 32;
const LATENCY: Duration = Duration::from_millis(200);
/// Five full waves per iteration, so ramp-up and tail are a small share of the time.
const CALLS: usize = CONCURRENCY * 5;

async fn wave(c: &Arc<OpenAiClient>) {
    let calls = (0..CALLS).map(|i| {
        let c = c.clone();
        async move {
            let r = ChatRequest::new(vec![Message::user(format!("candidate list {i}"))]);
            c.chat(&r).await.expect("mock answers")
        }
    });
    futures::future::join_all(calls).await;
}

fn bench(cr: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "1. A\n2. B"},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 50, "completion_tokens": 5}});
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body).set_delay(LATENCY))
            .mount(&s)
            .await;
        s
    });
    let mut cfg = HttpConfig::generic(&format!("{}/v1", server.uri()), "mock");
    cfg.api_key = None;
    cfg.jobs = CONCURRENCY;
    let client = Arc::new(OpenAiClient::new(cfg).unwrap());
    rt.block_on(wave(&client)); // warm the connection pool

    let t0 = Instant::now();
    rt.block_on(wave(&client));
    let rate = CALLS as f64 / t0.elapsed().as_secs_f64();
    let ideal = CONCURRENCY as f64 / LATENCY.as_secs_f64();
    eprintln!(
        "throughput: {rate:.1} calls/s at concurrency {CONCURRENCY} = {:.1}% of the ideal {ideal:.0}/s",
        100.0 * rate / ideal
    );

    let mut g = cr.benchmark_group("http_client");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(12))
        .throughput(Throughput::Elements(CALLS as u64));
    g.bench_function("chat_c32_latency200ms", |b| {
        b.iter(|| rt.block_on(wave(&client)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
