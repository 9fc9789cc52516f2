//! Prompt and generation tokens/s of the in-process GGUF backend, to set beside llama.cpp's
//! `llama-bench -p 512 -n 128` (see bench/README.md, "Local inference beside llama-bench").
//!
//! ```text
//! cargo run --release -p agp-llm --features local --example local_pp_tg -- \
//!     [--model qwen2.5-coder-1.5b | --model-path FILE.gguf] [--threads 2] [--reps 5]
//! ```
//!
//! Everything goes through `LocalModel::chat`, as a `local:` run does (chat template, greedy
//! sampling, detokenising), with the backend's default settings apart from the thread count.
//! pp512: a user message padded so that the rendered prompt is 512 tokens, `max_tokens` 1 (the
//! prompt pass plus one sampled token). tg128: a short prompt answered with `max_tokens` 129
//! and 1; the difference of the two times is 128 decode + sample steps. One warm-up call each,
//! then `--reps` repetitions; tokens/s is the mean over repetitions, as llama-bench reports.

use std::path::PathBuf;
use std::time::Instant;

use agp_llm::fetch;
use agp_llm::local::{LocalConfig, LocalModel};
use agp_llm::{ChatModel, ChatRequest, Message};

struct Args {
    path: PathBuf,
    threads: usize,
    reps: usize,
    n_prompt: u64,
    n_gen: u32,
}

fn parse() -> Args {
    let mut model = "qwen2.5-coder-1.5b".to_string();
    let mut path = None;
    let mut threads = 2;
    let mut reps = 5;
    let mut n_prompt = 512;
    let mut n_gen = 128;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = v(),
            "--model-path" => path = Some(PathBuf::from(v())),
            "--threads" | "-t" => threads = v().parse().expect("--threads N"),
            "--reps" | "-r" => reps = v().parse().expect("--reps N"),
            "-p" => n_prompt = v().parse().expect("-p N"),
            "-n" => n_gen = v().parse().expect("-n N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let models_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.models");
    let path =
        path.unwrap_or_else(|| fetch::model_path(fetch::pinned(&model).unwrap(), &models_dir));
    Args {
        path,
        threads,
        reps,
        n_prompt,
        n_gen,
    }
}

fn request(text: &str, max_tokens: u32) -> ChatRequest {
    let mut r = ChatRequest::new(vec![Message::user(text)]);
    r.sampling.max_tokens = Some(max_tokens);
    r
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len().max(2) - 1) as f64;
    (m, v.sqrt())
}

fn main() {
    let a = parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = LocalConfig::new(&a.path);
    cfg.threads = a.threads;
    let t0 = Instant::now();
    let m = LocalModel::load(cfg).expect("loading the GGUF");
    eprintln!(
        "loaded {} in {:.1} s",
        a.path.display(),
        t0.elapsed().as_secs_f64()
    );
    let time = |r: &ChatRequest| {
        let t = Instant::now();
        let resp = rt.block_on(m.chat(r)).expect("chat");
        (t.elapsed().as_secs_f64(), resp.usage)
    };

    // pp: pad the user message with " x" (one token each after the pre-tokeniser's split)
    // until the rendered prompt is n_prompt tokens.
    let base = "Summarise the following list in one word:";
    let mut pad = 0u64;
    let mut text = base.to_string();
    for _ in 0..4 {
        let got = time(&request(&text, 1)).1.prompt_tokens;
        if got == a.n_prompt {
            break;
        }
        pad = (pad as i64 + a.n_prompt as i64 - got as i64).max(0) as u64;
        text = format!("{base}{}", " x".repeat(pad as usize));
    }
    let pp_req = request(&text, 1);
    let (_, u) = time(&pp_req); // warm-up
    let n_pp = u.prompt_tokens;
    let pp: Vec<f64> = (0..a.reps).map(|_| n_pp as f64 / time(&pp_req).0).collect();

    // tg: the same prompt answered with 1 and with n_gen + 1 tokens.
    let tg_text = "Write the integers from 1 to 400 in order, separated by commas.";
    let short = request(tg_text, 1);
    let long = request(tg_text, a.n_gen + 1);
    let (_, u) = time(&long); // warm-up
    assert_eq!(
        u.completion_tokens,
        u64::from(a.n_gen) + 1,
        "the answer stopped early; pick a longer task"
    );
    let tg: Vec<f64> = (0..a.reps)
        .map(|_| {
            let (t1, _) = time(&short);
            let (tn, _) = time(&long);
            f64::from(a.n_gen) / (tn - t1)
        })
        .collect();

    let name = a.path.file_name().unwrap().to_string_lossy();
    let (pm, ps) = mean_sd(&pp);
    let (gm, gs) = mean_sd(&tg);
    println!("| model | threads | test | t/s |\n|---|---|---|---|");
    println!("| {name} | {} | pp{n_pp} | {pm:.2} ± {ps:.2} |", a.threads);
    println!(
        "| {name} | {} | tg{} | {gm:.2} ± {gs:.2} |",
        a.threads, a.n_gen
    );
}
