//! Helpers shared by the simulator's tests: a loopback client and request bodies.

#![allow(dead_code)]

use std::time::Duration;

use agp_sim_api::SimServer;
use serde_json::{Value, json};

pub const MODEL: &str = "gpt-4o-mini";
pub const SYSTEM: &str = agp::prompts::SYSTEM;

pub fn client() -> reqwest::Client {
    // reqwest is built without a bundled TLS provider; the client needs one even for http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

pub fn chat_body(model: &str, prompt: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0.0,
    })
}

pub fn score_body(model: &str, prompt: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0.0,
        "max_tokens": 1,
        "logprobs": true,
        "top_logprobs": 20,
    })
}

pub async fn post(c: &reqwest::Client, s: &SimServer, body: &Value) -> reqwest::Response {
    c.post(format!("{}/chat/completions", s.base_url()))
        .json(body)
        .send()
        .await
        .expect("response")
}

/// Status, headers and parsed body of a request that must succeed at the HTTP level.
pub async fn post_json(
    c: &reqwest::Client,
    s: &SimServer,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = post(c, s, body).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("json {e}: {text}"));
    (status, headers, v)
}

pub fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
        .to_string()
}

/// Ten candidate texts with the characters a title may hold: commas, colons, brackets.
pub fn candidates(tag: usize) -> Vec<String> {
    (0..10)
        .map(|i| match i % 4 {
            0 => format!("Film {tag}-{i} (1999), Drama|Romance"),
            1 => format!("Heat {tag}-{i}: a <director's cut>, 1995"),
            2 => format!("[Series] {tag}-{i} > part 2"),
            _ => format!("Plain title {tag}-{i}"),
        })
        .collect()
}

pub fn history() -> String {
    agp::prompts::history_lines(&["Alien (1979)", "Heat (1995)", "Amélie (2001)", "Up (2009)"])
}
