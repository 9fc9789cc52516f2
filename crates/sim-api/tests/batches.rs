//! The Files and Batches API: upload, create, retrieve, cancel, output and error files, delay,
//! expiry, per-line errors, and cached-token counts from the prefix cache.

mod common;

use std::time::Duration;

use agp_sim_api::{BatchConfig, PrefixCacheConfig, SimConfig, SimServer};
use common::*;
use serde_json::{Value, json};

async fn upload(c: &reqwest::Client, s: &SimServer, jsonl: &str) -> String {
    let boundary = "XbOuNdArYx";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{jsonl}\r\n--{boundary}--\r\n"
    );
    let r = c
        .post(format!("{}/files", s.base_url()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["purpose"], "batch");
    v["id"].as_str().unwrap().to_string()
}

async fn create(c: &reqwest::Client, s: &SimServer, file: &str) -> Value {
    let r = c
        .post(format!("{}/batches", s.base_url()))
        .json(
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                      "completion_window": "24h"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Vec<u8>) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

async fn batch(c: &reqwest::Client, s: &SimServer, id: &str) -> Value {
    let (st, b) = get(c, format!("{}/batches/{id}", s.base_url())).await;
    assert_eq!(st, 200);
    serde_json::from_slice(&b).unwrap()
}

async fn lines_of(c: &reqwest::Client, s: &SimServer, file: &Value) -> Vec<Value> {
    let Some(id) = file.as_str() else {
        return Vec::new();
    };
    let (st, b) = get(c, format!("{}/files/{id}/content", s.base_url())).await;
    assert_eq!(st, 200);
    String::from_utf8(b)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn jsonl(bodies: &[Value]) -> String {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"custom_id": format!("k{i}"), "method": "POST",
                   "url": "/v1/chat/completions", "body": b})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything but the ids and timestamps, which differ between any two answers.
fn comparable(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("id");
    v.as_object_mut().unwrap().remove("created");
    v
}

#[tokio::test]
async fn a_batch_answers_each_line_as_the_sync_endpoint_does() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let bodies: Vec<Value> = (0..5)
        .map(|i| chat_body(MODEL, &format!("Say something about item {i}.")))
        .chain([score_body(
            MODEL,
            "Would this user choose this item next? Answer Yes or No.",
        )])
        .collect();
    let file = upload(&c, &s, &jsonl(&bodies)).await;
    let b = create(&c, &s, &file).await;
    assert_eq!(b["status"], "validating");
    let id = b["id"].as_str().unwrap().to_string();
    let done = batch(&c, &s, &id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["request_counts"]["completed"], 6);
    assert!(done["error_file_id"].is_null());
    let out = lines_of(&c, &s, &done["output_file_id"]).await;
    assert_eq!(out.len(), 6);
    let st = s.stats();
    assert_eq!((st.batch_lines, st.attempts, st.answered), (6, 0, 6));
    assert_eq!((st.files_uploaded, st.batches_created), (1, 1));
    // Retrieving again answers nothing again.
    batch(&c, &s, &id).await;
    assert_eq!(s.stats().batch_lines, 6);
    s.reset();
    for (i, line) in out.iter().enumerate() {
        assert_eq!(line["custom_id"], format!("k{i}"));
        assert_eq!(line["response"]["status_code"], 200);
        let (status, _, sync) = post_json(&c, &s, &bodies[i]).await;
        assert_eq!(status, 200);
        assert_eq!(
            comparable(line["response"]["body"].clone()),
            comparable(sync)
        );
    }
}

#[tokio::test]
async fn delay_then_completion_and_cancel() {
    let cfg = SimConfig {
        batch: BatchConfig {
            delay: Duration::from_millis(400),
            ..BatchConfig::default()
        },
        ..SimConfig::default()
    };
    let s = SimServer::start(cfg).await.unwrap();
    let c = client();
    let file = upload(&c, &s, &jsonl(&[chat_body(MODEL, "one")])).await;
    let a = create(&c, &s, &file).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = create(&c, &s, &file).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(batch(&c, &s, &a).await["status"], "validating");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(batch(&c, &s, &a).await["status"], "in_progress");
    let r = c
        .post(format!("{}/batches/{b}/cancel", s.base_url()))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "cancelling");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(batch(&c, &s, &a).await["status"], "completed");
    let cancelled = batch(&c, &s, &b).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["output_file_id"].is_null());
    // Only the completed batch answered.
    assert_eq!(s.stats().batch_lines, 1);
}

#[tokio::test]
async fn expiry_and_line_errors_go_to_the_error_file() {
    let cfg = SimConfig {
        batch: BatchConfig {
            expire_fraction: 0.3,
            line_error_rate: 0.3,
            ..BatchConfig::default()
        },
        ..SimConfig::default()
    };
    let s = SimServer::start(cfg).await.unwrap();
    let c = client();
    let bodies: Vec<Value> = (0..40)
        .map(|i| chat_body(MODEL, &format!("prompt {i}")))
        .collect();
    let file = upload(&c, &s, &jsonl(&bodies)).await;
    let id = create(&c, &s, &file).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = batch(&c, &s, &id).await;
    assert_eq!(b["status"], "expired");
    let out = lines_of(&c, &s, &b["output_file_id"]).await;
    let err = lines_of(&c, &s, &b["error_file_id"]).await;
    assert_eq!(out.len() + err.len(), 40);
    let expired = err
        .iter()
        .filter(|l| l["error"]["code"] == "batch_expired")
        .count();
    let five = err
        .iter()
        .filter(|l| {
            l["response"]["status_code"]
                .as_u64()
                .is_some_and(|s| s >= 500)
        })
        .count();
    assert!(expired > 3 && five > 3, "{expired} expired, {five} 5xx");
    assert_eq!(expired + five, err.len());
    assert_eq!(b["request_counts"]["failed"], err.len());
    assert_eq!(s.stats().batch_lines as usize, 40 - expired);
}

#[tokio::test]
async fn bad_input_fails_the_batch_and_unknown_ids_are_404() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let dup = format!(
        "{}\n{}",
        json!({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
               "body": chat_body(MODEL, "x")}),
        json!({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
               "body": chat_body(MODEL, "y")})
    );
    let file = upload(&c, &s, &dup).await;
    let b = create(&c, &s, &file).await;
    assert_eq!(b["status"], "failed");
    assert_eq!(b["errors"]["data"][0]["code"], "duplicate_custom_id");
    assert_eq!(b["errors"]["data"][0]["line"], 2);
    assert_eq!(
        get(&c, format!("{}/batches/nope", s.base_url())).await.0,
        404
    );
    assert_eq!(
        get(&c, format!("{}/files/nope/content", s.base_url()))
            .await
            .0,
        404
    );
    assert_eq!(s.stats().batch_lines, 0);
}

#[tokio::test]
async fn a_shared_prompt_front_is_reported_cached_in_sync_and_batch() {
    let cfg = SimConfig {
        prefix_cache: Some(PrefixCacheConfig {
            min_tokens: 64,
            step_tokens: 16,
        }),
        ..SimConfig::default()
    };
    let s = SimServer::start(cfg).await.unwrap();
    let c = client();
    let front = "The user's history, shared by every candidate. ".repeat(10);
    let body = |cand: &str| chat_body(MODEL, &format!("{front}Candidate: {cand}"));
    let (_, _, first) = post_json(&c, &s, &body("A")).await;
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let (_, _, second) = post_json(&c, &s, &body("B")).await;
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(cached >= 64 && cached < prompt, "{cached} of {prompt}");
    // A batch line shares the cache.
    let file = upload(&c, &s, &jsonl(&[body("C")])).await;
    let id = create(&c, &s, &file).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = batch(&c, &s, &id).await;
    let out = lines_of(&c, &s, &b["output_file_id"]).await;
    assert_eq!(
        out[0]["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"],
        cached
    );
}
