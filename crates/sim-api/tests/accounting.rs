//! Stats, the truth-map signal, the attempt log and the HTTP plumbing.

mod common;

use agp::parse::{MissingPolicy, parse_rerank};
use agp::prompts;
use agp_sim_api::{SimConfig, SimServer, SimStats, body_fingerprint};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn answered_twice_counts_bodies_paid_for_twice() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let a = json!({"model": MODEL, "messages": [{"role": "user", "content": "A"}], "seed": 1});
    // Same request, keys in another order: the same fingerprint.
    let a_reordered =
        json!({"seed": 1, "messages": [{"content": "A", "role": "user"}], "model": MODEL});
    let b = json!({"model": MODEL, "messages": [{"role": "user", "content": "B"}]});
    for body in [&a, &b, &a_reordered] {
        assert_eq!(post(&c, &s, body).await.status(), 200);
    }
    let st = s.stats();
    assert_eq!(st.attempts, 3);
    assert_eq!(st.answered, 3);
    assert_eq!(st.distinct_answered, 2);
    assert_eq!(st.answered_twice, 1);
    assert_eq!(
        st.answered_twice_fingerprints,
        vec![body_fingerprint(a.to_string().as_bytes())]
    );

    // The HTTP view is the same accounting.
    let over_http: SimStats = c
        .get(format!("http://{}/sim/stats", s.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, st);

    let r = c
        .post(format!("http://{}/sim/reset", s.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.stats(), SimStats::default());
}

/// Candidate lists as the prompts show them (item text neutralised), with a held-out index.
fn truth_lists(n: usize) -> Vec<(Vec<String>, usize)> {
    (0..n)
        .map(|i| {
            let shown = candidates(100 + i)
                .iter()
                .map(|c| prompts::neutralise_item_text(c).into_owned())
                .collect();
            (shown, (i * 7 + 3) % 10)
        })
        .collect()
}

#[tokio::test]
async fn full_signal_puts_the_held_out_item_first() {
    let lists = truth_lists(30);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truth.json");
    let file: Vec<_> = lists
        .iter()
        .map(|(c, gt)| json!({"candidates": c, "gt": gt}))
        .collect();
    std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
    let mut cfg = SimConfig {
        signal: 1.0,
        ..SimConfig::default()
    };
    assert_eq!(cfg.load_truth(&path).unwrap(), 30);
    let s = SimServer::start(cfg).await.unwrap();
    let c = client();
    for (cands, gt) in &lists {
        let list = prompts::candidate_list(cands);
        for p in [
            prompts::rerank_by_profile("likes films", &list, 10),
            prompts::rerank_cot(&history(), &list, 10),
        ] {
            let text = content(&post_json(&c, &s, &chat_body(MODEL, &p)).await.2);
            let order = parse_rerank(&text, 10, MissingPolicy::Reference).order;
            assert_eq!(order[0], *gt, "{text}");
            assert_eq!(order.len(), 10);
        }
        // Pointwise: the held-out item scores above every other candidate.
        let prefix = prompts::pointwise_prefix_profile("likes films");
        let mut scores = Vec::new();
        for cand in cands {
            let p = format!("{prefix}{}", prompts::pointwise_suffix(cand));
            let v = post_json(&c, &s, &score_body(MODEL, &p)).await.2;
            let top = v["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
                .as_array()
                .unwrap()
                .clone();
            let lp = |w: &str| {
                top.iter().find(|t| t["token"] == w).unwrap()["logprob"]
                    .as_f64()
                    .unwrap()
            };
            scores.push(lp("Yes") - lp("No"));
        }
        let best = (0..10)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        assert_eq!(best, *gt, "{scores:?}");
    }
    assert_eq!(s.stats().signal_used, 30 * 3);
}

#[tokio::test]
async fn zero_signal_never_uses_the_truth() {
    let lists = truth_lists(30);
    let mut with_truth = SimConfig::default();
    for (cands, gt) in &lists {
        with_truth.add_truth(cands, *gt);
    }
    let s = SimServer::start(with_truth).await.unwrap();
    let blind = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let mut first_is_gt = 0;
    for (cands, gt) in &lists {
        let p = prompts::rerank_direct(&history(), &prompts::candidate_list(cands), 10);
        let text = content(&post_json(&c, &s, &chat_body(MODEL, &p)).await.2);
        let blind_text = content(&post_json(&c, &blind, &chat_body(MODEL, &p)).await.2);
        assert_eq!(text, blind_text);
        first_is_gt +=
            usize::from(parse_rerank(&text, 10, MissingPolicy::Reference).order[0] == *gt);
    }
    assert!(first_is_gt < 15, "{first_is_gt} of 30 by chance alone");
    assert_eq!(s.stats().signal_used, 0);
}

#[tokio::test]
async fn a_bad_truth_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truth.json");
    std::fs::write(&path, r#"[{"candidates": ["a", "b"], "gt": 2}]"#).unwrap();
    assert!(SimConfig::default().load_truth(&path).is_err());
    std::fs::write(&path, "not json").unwrap();
    assert!(SimConfig::default().load_truth(&path).is_err());
}

#[tokio::test]
async fn the_log_gets_one_line_per_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sim.jsonl");
    let s = SimServer::start(SimConfig {
        log: Some(log.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    for p in ["a", "b", "a"] {
        post(&c, &s, &chat_body(MODEL, p)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["fingerprint"], lines[2]["fingerprint"]);
    assert_eq!(lines[2]["attempt_of_body"], 1);
    assert!(lines.iter().all(|l| l["status"] == 200));
}

#[tokio::test]
async fn keep_alive_serves_pipelined_requests_on_one_connection() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let body = chat_body(MODEL, "hi").to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let last = "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    sock.write_all(format!("{req}{req}{last}").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).await.unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert_eq!(out.matches("HTTP/1.1 404 Not Found").count(), 1, "{out}");
    assert_eq!(s.stats().answered_twice, 1);
}

#[tokio::test]
async fn malformed_requests_get_openai_shaped_errors() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let r = c
        .post(format!("{}/chat/completions", s.base_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().contains_key("x-request-id"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    let (status, _, _) = post_json(&c, &s, &json!({"model": MODEL, "messages": []})).await;
    assert_eq!(status, 400);
    let r = c
        .get(format!("{}/chat/completions", s.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(s.stats().faults["bad_request"], 2);
}

#[tokio::test]
async fn dropping_the_server_closes_it() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let addr = s.addr;
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
