//! Generated tokens/s of the in-process backend with several calls decoded together, against
//! one at a time: the part of a run that batching can speed up (see bench/README.md).
//!
//! ```text
//! cargo run --release -p agp-llm --features local --example local_slots -- \
//!     [--model smollm2-135m | --model-path FILE.gguf] [--threads 2] [--calls 8] [-n 128]
//! ```
//!
//! `--calls` distinct short prompts, each answered with `max_tokens` `-n`, all sent at once to
//! a model with 1 slot and then to one with 2 and 4 slots. Reports generated tokens/s over
//! the wall time of each round (one warm-up call first).

use std::path::PathBuf;
use std::time::Instant;

use agp_llm::fetch;
use agp_llm::local::{LocalConfig, LocalModel};
use agp_llm::{ChatModel, ChatRequest, Message};

fn main() {
    let mut model = "smollm2-135m".to_string();
    let mut path = None;
    let mut threads = 2;
    let mut calls = 8;
    let mut n_gen = 128;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = v(),
            "--model-path" => path = Some(PathBuf::from(v())),
            "--threads" | "-t" => threads = v().parse().expect("--threads N"),
            "--calls" => calls = v().parse().expect("--calls N"),
            "-n" => n_gen = v().parse().expect("-n N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let models_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.models");
    let path =
        path.unwrap_or_else(|| fetch::model_path(fetch::pinned(&model).unwrap(), &models_dir));
    let reqs: Vec<ChatRequest> = (0..calls)
        .map(|i| {
            let mut r = ChatRequest::new(vec![Message::user(format!(
                "Write a long story about a robot called Unit {i} who learns to paint."
            ))]);
            r.sampling.max_tokens = Some(n_gen);
            r
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| slots | calls | generated | wall s | generated tok/s |\n|---:|---:|---:|---:|---:|"
    );
    for slots in [1, 2, 4] {
        let m = LocalModel::load(LocalConfig {
            threads,
            slots,
            ..LocalConfig::new(&path)
        })
        .unwrap();
        rt.block_on(m.chat(&reqs[0])).unwrap();
        let t0 = Instant::now();
        let answers = rt.block_on(futures::future::join_all(reqs.iter().map(|r| m.chat(r))));
        let secs = t0.elapsed().as_secs_f64();
        let generated: u64 = answers
            .iter()
            .map(|a| a.as_ref().unwrap().usage.completion_tokens)
            .sum();
        println!(
            "| {slots} | {calls} | {generated} | {secs:.1} | {:.1} |",
            generated as f64 / secs
        );
    }
}
