//! Injected faults: the storm preset's mix, the per-minute limiter, outages, latency,
//! refusals, content filtering and length cuts.

mod common;

use std::time::{Duration, Instant};

use agp::prompts;
use agp_sim_api::{FaultRates, SimConfig, SimServer, SimStats};
use common::*;
use serde_json::{Value, json};

#[derive(Debug, Default, PartialEq)]
struct Seen {
    ok: u64,
    rate_limited: u64,
    server_error: u64,
    malformed: u64,
    dropped: u64,
}

/// `n` sequential attempts with distinct prompts, classified as a client sees them.
async fn storm_run(seed: u64, n: usize) -> (Seen, SimStats) {
    let s = SimServer::start(SimConfig {
        seed,
        faults: FaultRates::STORM,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let mut seen = Seen::default();
    for i in 0..n {
        let body = chat_body(MODEL, &format!("question {i}"));
        let resp = match c
            .post(format!("{}/chat/completions", s.base_url()))
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                seen.dropped += 1;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            resp.headers()
                .contains_key("x-ratelimit-remaining-requests")
        );
        let Ok(text) = resp.text().await else {
            seen.dropped += 1;
            continue;
        };
        match status {
            200 => match serde_json::from_str::<Value>(&text) {
                Ok(v) => {
                    assert!(v["choices"][0]["message"]["content"].is_string());
                    seen.ok += 1;
                }
                Err(_) => seen.malformed += 1,
            },
            429 => {
                assert_eq!(retry_after.as_deref(), Some("1"));
                seen.rate_limited += 1;
            }
            500 | 502 | 503 => seen.server_error += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (seen, s.stats())
}

#[tokio::test]
async fn storm_mixes_every_fault_kind_in_proportion() {
    let n = 400;
    let (seen, stats) = storm_run(7, n).await;
    let share = |k: u64| k as f64 / n as f64;
    assert!((0.22..0.38).contains(&share(seen.rate_limited)), "{seen:?}");
    assert!((0.05..0.16).contains(&share(seen.server_error)), "{seen:?}");
    assert!((0.015..0.10).contains(&share(seen.malformed)), "{seen:?}");
    assert!((0.015..0.10).contains(&share(seen.dropped)), "{seen:?}");
    assert!((0.40..0.60).contains(&share(seen.ok)), "{seen:?}");

    // The server's accounting agrees with what the client saw.
    assert_eq!(stats.attempts, n as u64);
    assert_eq!(stats.faults["rate_limited"], seen.rate_limited);
    assert_eq!(stats.faults["server_error"], seen.server_error);
    assert_eq!(stats.faults["malformed"], seen.malformed);
    assert_eq!(stats.faults["dropped"], seen.dropped);
    assert_eq!(stats.answered, seen.ok);
    let by_status: u64 = stats.by_status.values().sum();
    assert_eq!(by_status + seen.dropped, n as u64);
    assert_eq!(stats.by_status[&429], seen.rate_limited);

    // Faults follow the seed, not the clock.
    let (again, _) = storm_run(7, 60).await;
    let (same, _) = storm_run(7, 60).await;
    assert_eq!(again, same);
}

#[tokio::test]
async fn a_retried_request_meets_a_fresh_draw() {
    let s = SimServer::start(SimConfig {
        faults: "5xx=0.5".parse().unwrap(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let body = chat_body(MODEL, "retry me");
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(post(&c, &s, &body).await.status().as_u16());
    }
    assert!(statuses.contains(&200) && statuses.iter().any(|&s| s >= 500));
    let st = s.stats();
    assert_eq!(st.distinct_answered, 1);
    assert_eq!(st.answered_twice, u64::from(st.answered > 1));
}

#[tokio::test]
async fn rpm_limiter_is_real_and_its_headers_tell_the_truth() {
    let s = SimServer::start(SimConfig {
        rpm: Some(3),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    for want_remaining in ["2", "1", "0"] {
        let r = post(&c, &s, &chat_body(MODEL, "hello")).await;
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h["x-ratelimit-limit-requests"], "3");
        assert_eq!(h["x-ratelimit-remaining-requests"], want_remaining);
        let reset = h["x-ratelimit-reset-requests"].to_str().unwrap();
        assert!(reset.ends_with('s'), "{reset}");
    }
    let r = post(&c, &s, &chat_body(MODEL, "hello")).await;
    assert_eq!(r.status(), 429);
    let h = r.headers();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert!(h.contains_key("x-request-id"));
    let st = s.stats();
    assert_eq!(st.faults["over_limit"], 1);
    assert_eq!(st.answered, 3);
}

#[tokio::test]
async fn outage_then_recovery() {
    let s = SimServer::start(SimConfig {
        down_for: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    assert_eq!(post(&c, &s, &chat_body(MODEL, "x")).await.status(), 503);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(post(&c, &s, &chat_body(MODEL, "x")).await.status(), 200);
    assert_eq!(s.stats().faults["outage"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_overlaps_across_concurrent_requests() {
    let s = SimServer::start(SimConfig {
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let t0 = Instant::now();
    let calls = (0..50).map(|i| {
        let c = c.clone();
        let url = format!("{}/chat/completions", s.base_url());
        async move {
            let t = Instant::now();
            let r = c
                .post(url)
                .json(&chat_body(MODEL, &format!("q{i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            t.elapsed()
        }
    });
    let each = futures_join_all(calls).await;
    assert!(each.iter().all(|d| *d >= Duration::from_millis(290)));
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
}

/// A tiny join_all so the tests need no extra dependency.
async fn futures_join_all<
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
>(
    futs: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn refusals_filters_and_length_cuts() {
    let s = SimServer::start(SimConfig {
        refuse_containing: vec!["FORBIDDEN".into()],
        content_filter_containing: vec!["FILTERME".into()],
        length_cut: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let (status, _, v) = post_json(&c, &s, &chat_body(MODEL, "please FORBIDDEN thing")).await;
    assert_eq!(status, 200);
    let m = &v["choices"][0]["message"];
    assert!(m["content"].is_null());
    assert!(m["refusal"].as_str().unwrap().len() > 5);

    let (_, _, v) = post_json(&c, &s, &chat_body(MODEL, "FILTERME")).await;
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");

    let p = prompts::rerank_direct(&history(), &prompts::candidate_list(&candidates(4)), 10);
    let mut body = chat_body(MODEL, &p);
    body["max_tokens"] = json!(3);
    let (_, _, v) = post_json(&c, &s, &body).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let text = content(&v);
    assert!(!text.is_empty() && text.chars().count() <= 12, "{text}");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    body["max_tokens"] = json!(1000);
    let (_, _, v) = post_json(&c, &s, &body).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Reasoning spends the budget first: a tight cap leaves no visible answer.
    let mut o = chat_body("o3-mini", &p);
    o.as_object_mut().unwrap().remove("temperature");
    o["max_completion_tokens"] = json!(8);
    let (_, _, v) = post_json(&c, &s, &o).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(content(&v), "");
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        8
    );

    let st = s.stats();
    assert_eq!(st.faults["refusal"], 1);
    assert_eq!(st.faults["content_filter"], 1);
    assert_eq!(st.faults["length_cut"], 2);
}
