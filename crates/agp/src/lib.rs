//! LLM reranking of backbone candidate lists: Base, LLM-Dir, LLM-CoT and AGP
//! (auto-guided prompt refinement, arXiv 2504.03965), plus direct rerank-prompt optimization
//! and pointwise variants.
//!
//! - One call runs a configured method: [`run_method`] with a [`MethodConfig`] (serde, tag
//!   `kind`) and [`RunOptions`], returning a serialisable [`MethodRun`].
//! - The zero-shot rankers of the retrieval literature run on the same lists:
//!   [`methods::rankers`] has RankGPT, PRP (all pairs and heapsort), Setwise and FIRST;
//!   [`MethodConfig::calls_per_user`] gives each method's LLM requests per user.
//! - Generic prompt optimizers learn AGP's `p_gen` on AGP's training loop as baselines:
//!   [`methods::optimizers`] has OPRO and ProTeGi. Their training calls per epoch are
//!   [`opro_train_calls`] and [`protegi_train_calls`]. Random search
//!   ([`methods::random_search`]) is their control: blind edits at the same budget. Every
//!   learned method takes a [`Budget`] in calls or tokens (`max_training_calls` is its alias in
//!   calls), shuffles its training users per seed on request, and can report the epoch with the
//!   best lower confidence bound on validation ([`Selection::ValidLcb`]).
//! - A new method implements [`Reranker`] and runs under the same protocol with
//!   [`run_reranker`].
//! - [`run_method_in_order`] shows a method its candidates reversed or in seeded shuffles
//!   (aggregated by Borda count) instead of the backbone's order: [`order`] has the wrapper,
//!   [`CandidateOrder`], and the first-shown statistic [`FirstShown`].
//! - The paper's equations are functions in [`methods::agp`]: [`methods::agp::generate_profile`]
//!   (Eq. 2), [`methods::agp::rerank_by_profile`] (Eq. 3), [`methods::agp::position_feedback`]
//!   (Eq. 4), [`methods::agp::summarize_feedback`] (Eq. 5), [`methods::agp::edit_prompt`]
//!   (Eq. 6) and [`llm::eq7_api_calls`] (Eq. 7).
//! - Every prompt is in [`prompts`]; the answer parser is [`parse::parse_rerank`]; metrics are
//!   in [`metrics`].
//! - Where the parser or a prompt departs from the reference code, the reference behaviour is
//!   a named, non-default option: [`DuplicatePolicy`], [`UnmarkedAnswers`] (parser),
//!   [`OutputConstraint`] (LLM-Dir's prompt) and [`EditExtraction`] (Eq. 6). Each type's docs
//!   argue its default, which is the behaviour the committed recordings and reports were made
//!   with; [`AgpConfig::reference_code`] and [`ListwiseConfig::reference_code`] turn the
//!   known reference behaviours on.
//! - A failed LLM call ends the run or becomes an outcome for one user or training step, as
//!   [`RunOptions::on_failure`] says; [`run`]'s module docs give the rules and what a resumed
//!   run does with the failures in its checkpoint.

//!
//! # Running a configured method
//!
//! ```no_run
//! # async fn demo(
//! #     ds: &agp_datasets::Dataset,
//! #     cands: &agp_datasets::candidates::CandidateFile,
//! #     llm: std::sync::Arc<dyn agp_llm::ChatModel>,
//! # ) -> Result<(), agp::AgpError> {
//! let cfg: agp::MethodConfig = toml::from_str("kind = \"agp\"\nbatch_size = 10").unwrap();
//! let run = agp::run_method(&cfg, ds, cands, llm, &agp::RunOptions::default()).await?;
//! println!("{}: NDCG@10 {:.3} (best-test epoch {})", run.label, run.best_test.test.ndcg10,
//!     run.best_test.epoch);
//! # Ok(()) }
//! ```
//!
//! # Adding a method
//!
//! ```no_run
//! use agp::{AgpError, Env, ParseOutcome, Ranking, RerankInput, Reranker};
//!
//! /// Puts candidates whose text shares a word with the last history item first.
//! struct LastItemOverlap;
//!
//! #[async_trait::async_trait]
//! impl Reranker for LastItemOverlap {
//!     async fn rerank(&self, input: &RerankInput, _env: &Env) -> Result<Ranking, AgpError> {
//!         let last = input.history.last().map(String::as_str).unwrap_or("");
//!         let shares = |c: &str| c.split_whitespace().any(|w| last.contains(w));
//!         let mut order: Vec<usize> = (0..input.candidates.len()).collect();
//!         order.sort_by_key(|&i| !shares(&input.candidates[i]));
//!         Ok(Ranking { order, outcome: ParseOutcome::Pointwise })
//!     }
//! }
//! # async fn demo(
//! #     ds: &agp_datasets::Dataset,
//! #     cands: &agp_datasets::candidates::CandidateFile,
//! #     llm: std::sync::Arc<dyn agp_llm::ChatModel>,
//! # ) -> Result<(), agp::AgpError> {
//! let run = agp::run_reranker(&mut LastItemOverlap, "Overlap", serde_json::Value::Null, ds,
//!     cands, llm, &agp::RunOptions::default()).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod budget;
pub mod config;
pub mod error;
pub mod llm;
pub mod log;
pub mod methods;
pub mod metrics;
pub mod order;
pub mod parse;
pub mod prompts;
pub mod reranker;
pub mod run;
pub mod stage;

pub use budget::{Budget, training_tokens};
pub use config::{
    AgpConfig, BaseConfig, CallsPerUser, Decoding, EditExtraction, FeedbackListOrder,
    FeedbackPromptSource, FirstConfig, ListwiseConfig, LoopSettings, MethodConfig, OproConfig,
    PointwiseConfig, ProtegiConfig, PrpConfig, PrpTies, RandomSearchConfig, RankGptConfig,
    SetwiseConfig,
};
pub use error::AgpError;
pub use llm::{
    FailurePolicy, Llm, RunCalls, StageTally, TRAINING_STAGES, eq7_api_calls, opro_train_calls,
    protegi_train_calls, training_calls,
};
pub use metrics::{
    AnswerScoring, MeanMetrics, RuleScore, UnparseableRule, UserResult, ndcg_at_10,
    random_order_ndcg, score_failed_call,
};
pub use order::{CandidateOrder, FirstShown, Ordered};
pub use parse::{
    DuplicatePolicy, MissingPolicy, ParseOptions, ParseOutcome, ParsedRanking, UnmarkedAnswers,
    parse_choice, parse_rankgpt, parse_rerank,
};
pub use prompts::OutputConstraint;
pub use reranker::{BatchOutcome, Env, Ranking, RerankInput, Reranker, TrainStep, UserCase};
pub use run::{
    EpochMetrics, MethodRun, RunOptions, SelectedEpoch, Selection, build_reranker, check_inputs,
    lower_confidence_bound, run_method, run_method_in_order, run_reranker,
};
pub use stage::Stage;
