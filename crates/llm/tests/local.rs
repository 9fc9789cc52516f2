//! SmolLM2-135M through llama.cpp: structure and determinism, not quality. Without the model
//! file these tests fail under `CI=true` and are skipped (with the reason printed) otherwise.
#![cfg(feature = "local")]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use agp_llm::fetch;
use agp_llm::local::{LocalConfig, LocalModel};
use agp_llm::{
    ChatModel, ChatRequest, LabelRequest, Message, RecordMode, Recorder, ScoreRequest, Store,
};

fn model_path() -> Option<PathBuf> {
    // Where `cargo xtask model fetch` puts it in the checkout these tests belong to.
    let dir = std::env::var_os("AGP_MODELS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.models"),
            PathBuf::from,
        );
    let p = fetch::model_path(fetch::pinned("smollm2-135m").unwrap(), &dir);
    if p.is_file() {
        return Some(p);
    }
    let why = format!(
        "{} is absent; run `cargo xtask model fetch smollm2-135m`",
        p.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true requires the local model: {why}");
    }
    eprintln!("skipping local-model test: {why}");
    None
}

fn config(path: PathBuf) -> LocalConfig {
    let mut c = LocalConfig::new(path);
    c.name = "smollm2-135m".into();
    c.file_sha256 = Some(fetch::pinned("smollm2-135m").unwrap().sha256.into());
    c.threads = 1;
    c.n_ctx = 2048;
    c
}

/// One loaded model shared by the tests of this file (loading is the slow part).
fn model() -> Option<Arc<LocalModel>> {
    static M: OnceLock<Option<Arc<LocalModel>>> = OnceLock::new();
    M.get_or_init(|| model_path().map(|p| Arc::new(LocalModel::load(config(p)).unwrap())))
        .clone()
}

fn chat_req(max_tokens: u32) -> ChatRequest {
    let mut r = ChatRequest::new(vec![
        Message::system("You are a helpful movie expert."),
        Message::user("List three science-fiction movies, one per line."),
    ]);
    r.sampling.max_tokens = Some(max_tokens);
    r
}

fn score_req() -> ScoreRequest {
    ScoreRequest {
        messages: vec![Message::system(
            "You are a movie recommender. You answer only Yes or No.",
        )],
        prefix: "The user loved Alien (1979), Aliens (1986) and The Terminator (1984). \
                 Would this user enjoy watching the movie \""
            .into(),
        suffixes: [
            "Predator (1987)",
            "Notting Hill (1999)",
            "Blade Runner (1982)",
            "Grease (1978)",
            "Heat (1995)",
        ]
        .map(|s| format!("{s}\"? Answer Yes or No."))
        .to_vec(),
        account: None,
        priority: 0,
    }
}

#[tokio::test]
async fn chat_is_deterministic_and_respects_max_tokens() {
    let Some(m) = model() else { return };
    let a = m.chat(&chat_req(24)).await.unwrap();
    let b = m.chat(&chat_req(24)).await.unwrap();
    assert_eq!(a.content, b.content, "greedy decoding repeats itself");
    assert!(!a.content.trim().is_empty());
    assert!(
        a.usage.completion_tokens >= 1 && a.usage.completion_tokens <= 24,
        "{:?}",
        a.usage
    );
    assert!(a.usage.prompt_tokens > 10);
    let short = m.chat(&chat_req(3)).await.unwrap();
    assert!(short.usage.completion_tokens <= 3);
    assert!(
        a.content.starts_with(&short.content),
        "{:?} vs {:?}",
        a.content,
        short.content
    );
}

#[tokio::test]
async fn score_gives_one_finite_score_per_candidate_independent_of_order() {
    let Some(m) = model() else { return };
    let req = score_req();
    let s = m.score(&req).await.unwrap();
    assert_eq!(s.scores.len(), req.suffixes.len());
    assert!(s.scores.iter().all(|x| x.is_finite()));
    assert_eq!(m.score(&req).await.unwrap().scores, s.scores, "repeatable");

    let mut rev = req.clone();
    rev.suffixes.reverse();
    let mut r = m.score(&rev).await.unwrap().scores;
    r.reverse();
    for (a, b) in s.scores.iter().zip(&r) {
        assert!(
            (a - b).abs() < 1e-3,
            "order changed a score: {:?} vs {r:?}",
            s.scores
        );
    }
}

#[tokio::test]
async fn shared_prefix_cache_agrees_with_scoring_from_scratch() {
    let Some(p) = model_path() else { return };
    let Some(cached) = model() else { return };
    let mut c = config(p);
    c.reuse_prefix = false;
    let fresh = LocalModel::load(c).unwrap();
    let req = score_req();
    let a = cached.score(&req).await.unwrap();
    let b = fresh.score(&req).await.unwrap();
    eprintln!("cached {:?}\nfresh  {:?}", a.scores, b.scores);
    for (x, y) in a.scores.iter().zip(&b.scores) {
        // llama.cpp picks other CPU kernels for large batches, so a prompt read in one big batch
        // differs from one read in small pieces by up to ~0.15 logits here (with n_batch=16 the
        // from-scratch scores equal the cached ones exactly). A wrong cache position would be off
        // by whole logits.
        assert!(
            (x - y).abs() < 0.25,
            "cached {:?} vs fresh {:?}",
            a.scores,
            b.scores
        );
    }
    assert!(
        a.usage.prompt_tokens < b.usage.prompt_tokens,
        "the prefix was evaluated once"
    );
}

#[tokio::test]
async fn recorded_local_calls_replay_identically() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local.jsonl");
    let rec = Recorder::new(
        m.clone(),
        Some(Arc::new(Store::open(&path).unwrap())),
        RecordMode::Auto,
    )
    .unwrap();
    let c = rec.chat(&chat_req(16)).await.unwrap();
    let s = rec.score(&score_req()).await.unwrap();
    // Answered by the model now (in one pass, then stored): live, not replayed.
    assert_eq!(c.usage.replayed.requests, 0);
    assert_eq!(s.usage.replayed.requests, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(fetch::pinned("smollm2-135m").unwrap().sha256)
            && text.contains("\"threads\":1")
    );
    let replay = Recorder::replay_only(m.info(), Arc::new(Store::open(&path).unwrap()));
    // A replayed answer is the recorded one, marked as replayed (so it is never billed).
    let mut again = replay.chat(&chat_req(16)).await.unwrap();
    assert_eq!(again.usage.replayed.requests, 1);
    again.usage.replayed = Default::default();
    assert_eq!(again, c);
    let mut again = replay.score(&score_req()).await.unwrap();
    assert_eq!(again.usage.replayed.requests, again.scores.len() as u64);
    again.usage.replayed = Default::default();
    assert_eq!(again, s);
}

fn label_req() -> LabelRequest {
    LabelRequest {
        messages: vec![
            Message::system("You are a movie recommender."),
            Message::user(
                "The user loved Alien (1979) and Aliens (1986). Which movie should they watch \
                 next?\n0: Notting Hill (1999)\n1: Predator (1987)\n2: Grease (1978)\n\
                 Answer with the number only.",
            ),
        ],
        labels: ["0", "1", "2"].map(String::from).to_vec(),
        prefill: String::new(),
        account: None,
        priority: 0,
    }
}

#[tokio::test]
async fn label_logprobs_are_a_repeatable_next_token_distribution() {
    let Some(m) = model() else { return };
    let req = label_req();
    let r = m.label_logprobs(&req).await.unwrap();
    eprintln!("label logprobs {:?}", r.logprobs);
    assert_eq!(r.logprobs.len(), 3);
    assert!(r.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
    assert!(r.logprobs.iter().map(|l| l.exp()).sum::<f32>() <= 1.0 + 1e-4);
    assert_eq!(m.label_logprobs(&req).await.unwrap().logprobs, r.logprobs);
    // Labels that this tokenizer starts with one token cannot be told apart: an error, not a tie.
    let mut same = req.clone();
    same.labels = vec!["yes".into(), "yes please".into()];
    let e = m.label_logprobs(&same).await.unwrap_err().to_string();
    assert!(e.contains("start with the same token"), "{e}");
    // Greedy decoding's first token, when it is a label, is the most likely label.
    let mut chat = ChatRequest::new(req.messages.clone());
    chat.sampling.max_tokens = Some(1);
    let first = m.chat(&chat).await.unwrap().content;
    if let Some(i) = req.labels.iter().position(|l| *l == first.trim()) {
        let best = r.logprobs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(r.logprobs[i], best, "{first:?} vs {:?}", r.logprobs);
    }
    // Recorded, then replayed without the model.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    let rec = Recorder::new(
        m.clone(),
        Some(Arc::new(Store::open(&path).unwrap())),
        RecordMode::Auto,
    )
    .unwrap();
    let recorded = rec.label_logprobs(&req).await.unwrap();
    assert_eq!(recorded.logprobs, r.logprobs);
    assert_eq!(recorded.usage.replayed.requests, 0);
    let replay = Recorder::replay_only(m.info(), Arc::new(Store::open(&path).unwrap()));
    let mut again = replay.label_logprobs(&req).await.unwrap();
    assert_eq!(again.usage.replayed.requests, 1);
    again.usage.replayed = Default::default();
    assert_eq!(again, recorded);
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let Some(p) = model_path() else { return };
    let mut c = config(p);
    c.n_ctx = 128;
    c.n_batch = 128;
    let m = LocalModel::load(c).unwrap();
    let long = ChatRequest::new(vec![Message::user("movie ".repeat(400))]);
    let e = m.chat(&long).await.unwrap_err().to_string();
    assert!(e.contains("n_ctx=128"), "{e}");
}

#[test]
fn bad_settings_name_the_field_and_range() {
    let mut c = LocalConfig::new("x.gguf");
    c.threads = 0;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("threads: 0 not in 1..=256")
    );
    let e = LocalModel::load(LocalConfig::new("/nonexistent/model.gguf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such GGUF file"), "{e}");
}

/// The first `n` recorded chat requests of the bundled recordings: the prompts a run sends.
fn recorded_chats(n: usize) -> Vec<ChatRequest> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/llm/recordings.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "chat" && r["request"]["sampling"]["temperature"].is_null())
        .take(n)
        .map(|r| {
            let mut c =
                ChatRequest::new(serde_json::from_value(r["request"]["messages"].clone()).unwrap());
            c.sampling = serde_json::from_value(r["request"]["sampling"].clone()).unwrap();
            c
        })
        .collect()
}

#[tokio::test]
async fn greedy_answers_do_not_depend_on_the_thread_count() {
    let Some(one) = model() else { return };
    let two = LocalModel::load(LocalConfig {
        threads: 2,
        ..config(model_path().unwrap())
    })
    .unwrap();
    let mut differ = Vec::new();
    for (i, req) in recorded_chats(8).iter().enumerate() {
        let (a, b) = (one.chat(req).await.unwrap(), two.chat(req).await.unwrap());
        if a.content != b.content {
            differ.push(format!("#{i}: {:?} vs {:?}", a.content, b.content));
        }
    }
    let s = score_req();
    let (a, b) = (one.score(&s).await.unwrap(), two.score(&s).await.unwrap());
    if a.scores != b.scores {
        differ.push(format!("scores {:?} vs {:?}", a.scores, b.scores));
    }
    assert!(differ.is_empty(), "1 vs 2 threads:\n{}", differ.join("\n"));
}

fn slotted(slots: usize) -> LocalModel {
    LocalModel::load(LocalConfig {
        slots,
        ..config(model_path().unwrap())
    })
    .unwrap()
}

#[tokio::test]
async fn a_call_alone_in_an_empty_slot_is_answered_as_one_sequence_answers_it() {
    let Some(one) = model() else { return };
    // Each call on a model of its own, so that it finds nothing cached: a prompt read on top of
    // another call's cached turn is read in pieces of other shapes, which can move its logits
    // (0.06 for these labels) and change a greedy answer.
    let s = score_req();
    let serial = one.score(&s).await.unwrap();
    let four = slotted(4);
    let fresh = four.score(&s).await.unwrap();
    assert_eq!(fresh.scores, serial.scores, "fresh slot");
    assert_eq!(fresh.usage.prompt_tokens, serial.usage.prompt_tokens);
    // The same scoring again finds its prompt cached and reads its candidates in the pieces
    // the one-sequence worker reads them in.
    let again = four.score(&s).await.unwrap();
    assert_eq!(again.scores, serial.scores, "cached prefix");
    assert!(again.usage.cached_tokens > 0, "{:?}", again.usage);
    let l = label_req();
    assert_eq!(
        slotted(4).label_logprobs(&l).await.unwrap().logprobs,
        one.label_logprobs(&l).await.unwrap().logprobs
    );
    for (i, req) in recorded_chats(3).iter().enumerate() {
        let (a, b) = (
            one.chat(req).await.unwrap(),
            slotted(4).chat(req).await.unwrap(),
        );
        assert_eq!(a.content, b.content, "chat #{i}");
        assert_eq!(a.usage.prompt_tokens, b.usage.prompt_tokens);
        assert_eq!(a.usage.completion_tokens, b.usage.completion_tokens);
    }
    assert!(
        four.settings()["batching"].is_string(),
        "the caveat is on record"
    );
    assert!(one.settings().get("batching").is_none());
}

#[tokio::test]
async fn a_second_call_with_a_shared_prefix_reads_only_its_new_tokens() {
    let Some(one) = model() else { return };
    let four = slotted(4);
    let reqs = recorded_chats(3);
    let first = four.chat(&reqs[0]).await.unwrap();
    assert_eq!(first.usage.cached_tokens, 0);
    // Recorded prompts share the instruction that opens them.
    let second = four.chat(&reqs[1]).await.unwrap();
    assert!(
        second.usage.cached_tokens > 0 && second.usage.cached_tokens < second.usage.prompt_tokens,
        "{:?}",
        second.usage
    );
    assert_eq!(second.content, one.chat(&reqs[1]).await.unwrap().content);
    // The very same prompt again reads one token: every other one is cached.
    let repeat = four.chat(&reqs[1]).await.unwrap();
    assert_eq!(repeat.usage.cached_tokens, repeat.usage.prompt_tokens - 1);
    assert_eq!(repeat.content, second.content);
}

#[tokio::test]
async fn concurrent_calls_share_batches_and_each_gets_a_whole_answer() {
    let Some(one) = model() else { return };
    let four = slotted(4);
    let mut reqs = recorded_chats(8);
    // One answer cut at its budget, to check a slot's own stop condition among the others.
    reqs[3].sampling.max_tokens = Some(3);
    let s = score_req();
    let l = label_req();
    // A call that cannot be served fails alone, with its reason; the others go on.
    let long = ChatRequest::new(vec![Message::user("movie ".repeat(3000))]);
    let (chats, score, labels, too_long) = tokio::join!(
        futures::future::join_all(reqs.iter().map(|r| four.chat(r))),
        four.score(&s),
        four.label_logprobs(&l),
        four.chat(&long),
    );
    let e = too_long.unwrap_err().to_string();
    assert!(e.contains("n_ctx=2048"), "{e}");
    let mut differ = 0;
    for (i, (req, got)) in reqs.iter().zip(chats).enumerate() {
        let got = got.unwrap();
        let alone = one.chat(req).await.unwrap();
        assert_eq!(got.usage.prompt_tokens, alone.usage.prompt_tokens, "#{i}");
        assert!(got.usage.completion_tokens > 0, "#{i}");
        differ += usize::from(got.content != alone.content);
    }
    assert_eq!(
        four.chat(&reqs[3]).await.unwrap().usage.completion_tokens,
        3
    );
    let score = score.unwrap();
    assert_eq!(score.scores.len(), s.suffixes.len());
    assert!(score.scores.iter().all(|x| x.is_finite()));
    let labels = labels.unwrap();
    assert!(labels.logprobs.iter().all(|x| x.is_finite() && *x <= 0.0));
    // Not asserted: llama.cpp rounds differently with the batch's shape, so some greedy answers
    // change when decoded beside others (2 of these 8 when measured); see `slots::CAVEAT`.
    eprintln!("{differ} of 8 answers differ from their one-sequence answer when batched");
}

#[test]
fn slots_out_of_range_name_the_field() {
    for slots in [0, 65] {
        let e = LocalModel::load(LocalConfig {
            slots,
            ..LocalConfig::new("x.gguf")
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("slots") && e.contains("1..="), "{e}");
    }
}
