//! Every prompt the harness sends gets a deterministic answer in the format its parser wants.

mod common;

use std::collections::HashSet;

use agp::parse::{MissingPolicy, ParseOutcome, between_markers, parse_rerank};
use agp::prompts::{self, Position};
use agp_sim_api::{PromptKind, SimConfig, SimServer, classify, parse_candidates};
use common::*;
use serde_json::json;

fn listwise_prompts(cands: &[String]) -> Vec<(&'static str, String)> {
    let list = prompts::candidate_list(cands);
    let k = cands.len();
    vec![
        (
            "by_profile",
            prompts::rerank_by_profile("Likes dramas from the 90s.", &list, k),
        ),
        ("direct", prompts::rerank_direct(&history(), &list, k)),
        (
            "learned",
            prompts::rerank_learned(prompts::INITIAL_RERANK_PROMPT, &history(), &list, k),
        ),
        ("cot", prompts::rerank_cot(&history(), &list, k)),
    ]
}

#[test]
fn markers_match_the_harness_parser() {
    assert_eq!(agp_sim_api::BOS, agp::parse::BOS);
    assert_eq!(agp_sim_api::EOS, agp::parse::EOS);
}

#[test]
fn every_harness_prompt_is_classified() {
    let cands = candidates(0);
    let list = prompts::candidate_list(&cands);
    for (name, p) in listwise_prompts(&cands) {
        let want = if name == "cot" {
            PromptKind::RerankCot
        } else {
            PromptKind::Rerank
        };
        assert_eq!(classify(&p, false), want, "{name}");
        // The texts as the prompt shows them: hostile characters neutralised.
        let shown: Vec<String> = cands
            .iter()
            .map(|c| prompts::neutralise_item_text(c).into_owned())
            .collect();
        assert_eq!(parse_candidates(&p), shown, "{name}");
    }
    let cases = [
        (
            prompts::profile(prompts::INITIAL_PROFILE_PROMPT, &history()),
            PromptKind::Profile,
        ),
        (
            prompts::profile_feedback(
                &cands[3],
                &list,
                "a profile",
                "p_gen",
                Some(Position {
                    actual: 4,
                    target: 1,
                }),
            ),
            PromptKind::ProfileFeedback,
        ),
        (
            prompts::rerank_feedback(&[1, 0, 2], 2, &cands[2], &list, &history()),
            PromptKind::RerankFeedback,
        ),
        (
            prompts::summarize(&[(0, "fix genres".into()), (3, "fix years".into())]),
            PromptKind::Summarize,
        ),
        (
            prompts::edit("old prompt", 3, 8, Some(3.5), "do better"),
            PromptKind::Edit,
        ),
        (
            format!(
                "{}{}",
                prompts::pointwise_prefix_profile("likes drama"),
                prompts::pointwise_suffix(&cands[0])
            ),
            PromptKind::Pointwise,
        ),
        ("Hello there".to_string(), PromptKind::Generic),
    ];
    for (p, want) in cases {
        assert_eq!(classify(&p, false), want, "{p}");
    }
}

#[tokio::test]
async fn answers_are_deterministic_and_parse_exactly() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let cands = candidates(1);
    let mut ids = HashSet::new();
    for (name, p) in listwise_prompts(&cands) {
        let (status, headers, v) = post_json(&c, &s, &chat_body(MODEL, &p)).await;
        assert_eq!(status, 200);
        assert!(ids.insert(headers["x-request-id"].to_str().unwrap().to_string()));
        for h in [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ] {
            assert!(headers.contains_key(h), "{h}");
        }
        let text = content(&v);
        let parsed = parse_rerank(&text, 10, MissingPolicy::Reference);
        assert_eq!(parsed.outcome, ParseOutcome::Exact, "{name}: {text}");
        let mut sorted = parsed.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        if name == "cot" {
            assert!(!text.starts_with(agp::parse::BOS), "{text}");
        } else {
            assert!(text.starts_with(agp::parse::BOS), "{text}");
        }
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], MODEL);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let u = &v["usage"];
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
        assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 0);

        // Same prompt, other sampling fields, another attempt: same answer.
        let mut again = chat_body(MODEL, &p);
        again["seed"] = json!(99);
        let (_, headers2, v2) = post_json(&c, &s, &again).await;
        assert_eq!(content(&v2), text, "{name}");
        assert!(ids.insert(headers2["x-request-id"].to_str().unwrap().to_string()));
        // Another model is another deterministic source.
        let (_, _, v3) = post_json(&c, &s, &chat_body("other-model", &p)).await;
        let p3 = parse_rerank(&content(&v3), 10, MissingPolicy::Reference);
        assert_eq!(p3.outcome, ParseOutcome::Exact);
    }

    let list = prompts::candidate_list(&cands);
    let profile = content(
        &post_json(
            &c,
            &s,
            &chat_body(MODEL, &prompts::profile("Be brief.", &history())),
        )
        .await
        .2,
    );
    assert!(profile.len() > 20 && profile.len() < 600, "{profile}");
    for p in [
        prompts::profile_feedback(&cands[3], &list, &profile, "Be brief.", None),
        prompts::rerank_feedback(&[1, 0, 2], 2, &cands[2], &list, &history()),
        prompts::summarize(&[(0, "fix genres".into())]),
        "What is the capital of France?".to_string(),
    ] {
        let text = content(&post_json(&c, &s, &chat_body(MODEL, &p)).await.2);
        assert!(!text.trim().is_empty());
    }
    let edit = content(
        &post_json(
            &c,
            &s,
            &chat_body(MODEL, &prompts::edit("old", 2, 4, None, "do better")),
        )
        .await
        .2,
    );
    let new_prompt = between_markers(&edit).expect("edit answer has markers");
    assert!(!new_prompt.trim().is_empty());

    let stats = s.stats();
    assert_eq!(stats.answered, stats.attempts);
    assert_eq!(stats.answered_by_kind["rerank"], 9);
    assert_eq!(stats.answered_by_kind["rerank_cot"], 3);
    assert_eq!(stats.answered_by_kind["edit"], 1);
}

#[tokio::test]
async fn pointwise_scores_come_as_yes_no_logprobs() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let cands = candidates(2);
    let prefix = prompts::pointwise_prefix_history(&history());
    let mut answers = HashSet::new();
    for cand in &cands {
        let p = format!("{prefix}{}", prompts::pointwise_suffix(cand));
        let (status, _, v) = post_json(&c, &s, &score_body(MODEL, &p)).await;
        assert_eq!(status, 200);
        let text = content(&v);
        assert!(text == "Yes" || text == "No", "{text}");
        answers.insert(text.clone());
        let first = &v["choices"][0]["logprobs"]["content"][0];
        assert_eq!(first["token"], text.as_str());
        let top = first["top_logprobs"].as_array().unwrap();
        let lp = |w: &str| {
            top.iter().find(|t| t["token"] == w).unwrap()["logprob"]
                .as_f64()
                .unwrap()
        };
        assert!(top.len() > 2);
        assert_eq!(lp("Yes") > lp("No"), text == "Yes");
        let (_, _, again) = post_json(&c, &s, &score_body(MODEL, &p)).await;
        assert_eq!(again["choices"][0]["logprobs"], v["choices"][0]["logprobs"]);
    }
    assert_eq!(answers.len(), 2, "ten candidates should get both answers");
}

#[tokio::test]
async fn a_prefilled_listwise_prompt_answers_a_candidate_id_first() {
    // FIRST as rank_llm sends it: the bracketed listwise prompt, then `[` as the start of the
    // assistant's answer, asking for the first token's logprobs.
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let cands = candidates(3);
    let p = prompts::first_listwise_bracketed(&history(), &prompts::candidate_list(&cands), 10);
    let mut body = score_body(MODEL, &p);
    body["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": "["}));
    let (status, _, v) = post_json(&c, &s, &body).await;
    assert_eq!(status, 200);
    let first = &v["choices"][0]["logprobs"]["content"][0];
    let top = first["top_logprobs"].as_array().unwrap();
    let ids: HashSet<usize> = top
        .iter()
        .map(|t| t["token"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (0..10).collect::<HashSet<usize>>());
    assert_eq!(first["token"], top[0]["token"]);
    assert_eq!(content(&v), top[0]["token"].as_str().unwrap());
    let lps: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
    assert!(lps.is_sorted_by(|a, b| a > b), "{lps:?}");
    let (_, _, again) = post_json(&c, &s, &body).await;
    assert_eq!(again["choices"][0]["logprobs"], v["choices"][0]["logprobs"]);
    // Without the prefill the same prompt is a yes/no question, as any logprobs request is.
    let (_, _, plain) = post_json(&c, &s, &score_body(MODEL, &p)).await;
    let text = content(&plain);
    assert!(text == "Yes" || text == "No", "{text}");
    assert_eq!(s.stats().answered_by_kind["labels"], 2);
}

#[tokio::test]
async fn o_series_reports_reasoning_tokens_and_rejects_what_openai_rejects() {
    let s = SimServer::start(SimConfig::default()).await.unwrap();
    let c = client();
    let p = prompts::rerank_direct(&history(), &prompts::candidate_list(&candidates(3)), 10);
    let mut body = chat_body("o3-mini", &p);
    body.as_object_mut().unwrap().remove("temperature");
    body["max_completion_tokens"] = json!(4000);
    let (status, _, v) = post_json(&c, &s, &body).await;
    assert_eq!(status, 200);
    let u = &v["usage"];
    let reasoning = u["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(reasoning > 0);
    assert!(u["completion_tokens"].as_u64().unwrap() > reasoning);

    let mut bad = chat_body("o1", &p);
    bad["max_tokens"] = json!(100);
    let (status, headers, v) = post_json(&c, &s, &bad).await;
    assert_eq!(status, 400);
    assert!(headers.contains_key("x-request-id"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    let (status, _, _) = post_json(&c, &s, &score_body("o3-mini", "x")).await;
    assert_eq!(status, 400);
    assert_eq!(s.stats().faults["bad_request"], 2);
}

#[tokio::test]
async fn a_sampling_server_draws_anew_only_where_decoding_is_left_to_it() {
    let s = SimServer::start(SimConfig {
        sample_when_unset: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let prompt = prompts::rerank_direct(&history(), &prompts::candidate_list(&candidates(3)), 10);
    let answers = |body: serde_json::Value| {
        let (c, s) = (&c, &s);
        async move {
            let mut seen = HashSet::new();
            for _ in 0..6 {
                seen.insert(content(&post_json(c, s, &body).await.2));
            }
            seen.len()
        }
    };
    let declared = chat_body("gpt-4o-mini", &prompt);
    let mut seeded = declared.clone();
    seeded["seed"] = json!(0);
    assert_eq!(
        answers(seeded.clone()).await,
        1,
        "temperature 0 and a seed: one answer"
    );
    let mut unset = seeded.clone();
    unset.as_object_mut().unwrap().remove("temperature");
    assert!(answers(unset).await > 1, "no temperature: a server samples");
    let mut warm = seeded.clone();
    warm["temperature"] = json!(0.8);
    warm.as_object_mut().unwrap().remove("seed");
    assert!(
        answers(warm).await > 1,
        "a temperature with no seed: sampled"
    );
    // 6 + 6 + 6 requests, of which the 12 without a seed left the decoding to the server.
    assert_eq!(s.stats().undeclared_decoding, 12);
}
