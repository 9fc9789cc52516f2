//! Throughput of the rerank-answer parser on the answer shapes models produce.

use agp::{MissingPolicy, parse_rerank};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let marked = "Here is the ranking: |beginoftext|3, 1, 4, 0, 5, 9, 2, 6, 8, 7|endoftext|";
    let unmarked = format!(
        "{}Final answer: [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]",
        "Reasoning. ".repeat(80)
    );
    let garbage = "I am sorry, I cannot rank these movies without more information.".repeat(20);
    let mut g = c.benchmark_group("parse_rerank");
    for (name, text) in [
        ("marked", marked),
        ("unmarked_cot", unmarked.as_str()),
        ("garbage", garbage.as_str()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| parse_rerank(black_box(text), 10, MissingPolicy::CompleteWithBase))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
