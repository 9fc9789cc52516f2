//! Your own reranker under the harness's protocol: the same dataset, backbone, candidate lists,
//! users and metrics as the committed table1, then a paired comparison with Base.
//!
//! ```text
//! cargo run -p agp-harness --example custom_reranker
//! ```
//!
//! The method here calls no LLM (it ranks candidates by how many title words they share with
//! the user's recent history), so it runs offline in seconds; a method that calls the model
//! uses `env.llm` inside `rerank` and is recorded, replayed and counted like AGP.

use agp::{Env, ParseOutcome, Ranking, RerankInput, Reranker};
use agp_harness::{Experiment, Scale, Workspace, pipeline, stats};
use agp_llm::factory::{LlmOptions, LlmSpec, build_model};
use std::collections::HashSet;

/// Candidates ordered by the number of distinct title words they share with the last ten
/// history items; ties keep the backbone's order.
struct TitleOverlap;

fn words(s: &str) -> HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
        .collect()
}

#[async_trait::async_trait]
impl Reranker for TitleOverlap {
    async fn rerank(&self, input: &RerankInput, _env: &Env) -> Result<Ranking, agp::AgpError> {
        let recent = input.history.iter().rev().take(10);
        let seen: HashSet<String> = recent.flat_map(|t| words(t)).collect();
        let scores: Vec<f32> = input
            .candidates
            .iter()
            .map(|c| words(c).intersection(&seen).count() as f32)
            .collect();
        Ok(Ranking {
            order: agp::methods::order_by_scores(&scores),
            outcome: ParseOutcome::Pointwise,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let ws = Workspace::discover();
    let exp = Experiment::load(&ws.experiment_path("table1"), Scale::Fixture)?;
    let ds = pipeline::load_dataset(&ws, "ml-latest-small")?;
    // Trained once, then reloaded from the store `reproduce` uses.
    let backbone = pipeline::backbone(&ws, &exp, &ds, "lightgcn", 1, false, true)?;
    let model = build_model(
        &LlmSpec::Replay,
        &LlmOptions {
            recordings: Some(ws.recordings()),
            ..LlmOptions::default()
        },
    )?
    .model;
    let opts = agp::RunOptions::default();
    let cands = &backbone.candidates;
    let run = |r: &mut dyn Reranker, label: &str| {
        agp_llm::block_on(agp::run_reranker(
            r,
            label,
            serde_json::Value::Null,
            &ds,
            cands,
            model.clone(),
            &opts,
        ))
    };
    let base = run(&mut agp::methods::Base, "Base")?;
    let mine = run(&mut TitleOverlap, "Title overlap")?;
    let ndcg = |r: &agp::MethodRun| r.last.users.iter().map(|u| u.ndcg).collect::<Vec<f64>>();
    let (a, b) = (ndcg(&mine), ndcg(&base));
    let p = stats::paired(&a, &b, 1);
    println!(
        "{} test users: Base NDCG@10 {:.4}, Title overlap {:.4}; Δ {:+.4} [{:+.4}, {:+.4}], p = {:.3}",
        a.len(),
        stats::mean(&b),
        stats::mean(&a),
        p.mean_diff,
        p.ci.0,
        p.ci.1,
        p.p_value
    );
    Ok(())
}
