//! LLM reranking of backbone candidate lists: Base, LLM-Dir, LLM-CoT and AGP
//! (auto-guided prompt refinement, arXiv 2504.03965), plus direct rerank-prompt optimization
//! and pointwise variants.
//!
//! - One call runs a configured method: [`run_method`] with a [`MethodConfig`] (serde, tag
//!   `kind`) and [`RunOptions`], returning a serialisable [`MethodRun`].
//! - A new method implements [`Reranker`] and runs under the same protocol with
//!   [`run_reranker`].
//! - The paper's equations are functions in [`methods::agp`]: [`methods::agp::generate_profile`]
//!   (Eq. 2), [`methods::agp::rerank_by_profile`] (Eq. 3), [`methods::agp::position_feedback`]
//!   (Eq. 4), [`methods::agp::summarize_feedback`] (Eq. 5), [`methods::agp::edit_prompt`]
//!   (Eq. 6) and [`llm::eq7_api_calls`] (Eq. 7).
//! - Every prompt is in [`prompts`]; the answer parser is [`parse::parse_rerank`]; metrics are
//!   in [`metrics`].

pub mod config;
pub mod error;
pub mod llm;
pub mod log;
pub mod methods;
pub mod metrics;
pub mod parse;
pub mod prompts;
pub mod reranker;
pub mod run;

pub use config::{
    AgpConfig, BaseConfig, FeedbackListOrder, FeedbackPromptSource, ListwiseConfig, MethodConfig,
    PointwiseConfig,
};
pub use error::AgpError;
pub use llm::{CallLedger, Llm, StageTally, eq7_api_calls};
pub use metrics::{MeanMetrics, UnparseableRule, UserResult, ndcg_at_10, random_order_ndcg};
pub use parse::{MissingPolicy, ParseOutcome, ParsedRanking, parse_rerank};
pub use reranker::{BatchOutcome, Env, Ranking, RerankInput, Reranker, TrainStep, UserCase};
pub use run::{
    EpochMetrics, MethodRun, RunOptions, SelectedEpoch, Selection, build_reranker, check_inputs,
    run_method, run_reranker,
};
