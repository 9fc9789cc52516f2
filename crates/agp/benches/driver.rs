//! Overhead of the driver around the model: LLM-Dir and one AGP epoch on the bundled
//! ml-latest-small with popularity lists, against a model that answers instantly (a fixed
//! permutation, written here), so what is timed is prompt building, parsing, metrics and
//! bookkeeping.

use std::sync::Arc;

use agp::{AgpConfig, ListwiseConfig, MethodConfig, RunOptions, run_method};
use agp_llm::{
    ChatModel, ChatRequest, ChatResponse, LlmError, ModelInfo, ScoreRequest, ScoreResponse, Usage,
};
use agp_recommenders::Popularity;
use agp_recommenders::export::{ExportOptions, Provenance, export_candidates};
use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};

struct Instant;

#[async_trait]
impl ChatModel for Instant {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: "bench".into(),
            model: "instant".into(),
            file_sha256: None,
        }
    }
    async fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            served: Default::default(),
            content: "|beginoftext|9, 8, 7, 6, 5, 4, 3, 2, 1, 0|endoftext|".into(),
            usage: Usage::default(),
            finish_reason: None,
        })
    }
    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        Ok(ScoreResponse {
            scores: vec![0.0; req.suffixes.len()],
            usage: Usage::default(),
        })
    }
}

fn bench(c: &mut Criterion) {
    let ds = agp_datasets::bundled_default(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    )
    .expect("bundled ml-latest-small");
    let options = ExportOptions {
        n_test: 300,
        n_train: 100,
        n_valid: 100,
        take_available: true,
        ..ExportOptions::default()
    };
    let cands = export_candidates(
        &Popularity::fit(&ds),
        &ds,
        Provenance::new("popularity", 0),
        &options,
    )
    .expect("candidate export");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let model: Arc<dyn ChatModel> = Arc::new(Instant);
    let mut g = c.benchmark_group(format!(
        "driver ({} test + {} valid + {} train users)",
        cands.test_users.len(),
        cands.valid_users.len(),
        cands.train_users.len()
    ));
    g.sample_size(10);
    let dir = MethodConfig::LlmDir(ListwiseConfig::default());
    g.bench_function("llm-dir", |b| {
        b.iter(|| {
            rt.block_on(run_method(
                &dir,
                &ds,
                &cands,
                model.clone(),
                &RunOptions::default(),
            ))
            .unwrap()
        })
    });
    let agp = MethodConfig::Agp(AgpConfig {
        epochs: 1,
        batch_size: cands.train_users.len().clamp(1, 10),
        ..AgpConfig::default()
    });
    g.bench_function("agp, 1 epoch", |b| {
        b.iter(|| {
            rt.block_on(run_method(
                &agp,
                &ds,
                &cands,
                model.clone(),
                &RunOptions::default(),
            ))
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
