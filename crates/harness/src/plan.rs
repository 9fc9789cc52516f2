//! The plan a live run prints before its first call, and what it actually spent afterwards:
//! HTTP requests per (LLM, method) — a pointwise scoring is K requests, one per candidate — and
//! their cost at list prices.

use crate::experiment::Experiment;
use crate::pipeline;
use agp::MethodConfig;
use agp_llm::CallMode;
use agp_llm::factory::LlmSpec;
use agp_llm::usage::{PRICE_TABLE_VERSION, Price, PriceTable, UsageLedger};
use anyhow::Result;
use std::fmt::Write;

/// Prompt and completion tokens assumed per request for the up-front estimate: the reference
/// prompts with 5 history items and 10 candidates are ~600-800 tokens; answers are short.
const EST_PROMPT_TOKENS: f64 = 700.0;
const EST_COMPLETION_TOKENS: f64 = 200.0;

/// Of a listwise prompt, the part every user's request starts with (system message and task
/// instruction, before the user's history and candidates): what a prefix cache can reuse.
const EST_SHARED_PROMPT_TOKENS: f64 = 150.0;
/// Of a pointwise candidate's prompt, the part its siblings share (all but the candidate).
const POINTWISE_SHARED: f64 = 0.9;
/// Seconds one synchronous request takes end to end, at ~200 completion tokens.
const EST_REQUEST_S: f64 = 3.0;
/// Hours one batch round takes from submission to its last answer: OpenAI promises 24 h and
/// usually answers a batch of this size within one.
const EST_BATCH_ROUND_H: f64 = 1.0;

/// How a provider caches prompt prefixes: the shortest prompt it caches, in tokens.
fn cache_minimum(llm: &LlmSpec) -> Option<f64> {
    match llm {
        LlmSpec::OpenAi(_) => Some(1024.0),
        LlmSpec::DeepSeek(_) => Some(64.0),
        _ => None,
    }
}

/// One stage of a plan row, priced synchronously and with `--batch`.
pub struct StagePlan {
    /// `training` (always synchronous) or `evaluation` (test and validation users; batched
    /// with `--batch`).
    pub stage: &'static str,
    pub requests: f64,
    /// Share of prompt tokens a prefix cache would serve.
    pub cached_share: f64,
    pub sync_usd: Option<f64>,
    pub sync_hours: f64,
    /// `None` without a price, or where the provider has no Batch API.
    pub batch_usd: Option<f64>,
    pub batch_hours: f64,
}

pub struct PlanRow {
    pub llm: String,
    pub label: String,
    /// Upper bound of HTTP requests over every dataset, backbone and seed.
    pub requests: f64,
    /// At list prices; `None` for a model without a price.
    pub usd: Option<f64>,
    /// Training and evaluation, side by side synchronously and with `--batch`.
    pub stages: Vec<StagePlan>,
}

pub struct Plan {
    pub header: String,
    pub rows: Vec<PlanRow>,
    /// Requests in flight at once, for the wall-time estimates.
    pub jobs: usize,
}

/// Rounds of dependent requests one user's evaluation takes: what `--batch` waits one batch
/// turnaround for each of (independent requests, such as a pointwise scoring's candidates or
/// PRP's pairs, share a round).
pub fn dependent_rounds(cfg: &MethodConfig, k: usize) -> f64 {
    match cfg {
        MethodConfig::Base(_) => 0.0,
        MethodConfig::LlmDir(_)
        | MethodConfig::LlmCot(_)
        | MethodConfig::RerankOpt(_)
        | MethodConfig::First(_)
        | MethodConfig::LlmDirPointwise(_)
        | MethodConfig::PrpAllpair(_) => 1.0,
        // A profile, then the rerank (or scoring) that reads it.
        MethodConfig::Agp(_)
        | MethodConfig::AgpPointwise(_)
        | MethodConfig::Opro(_)
        | MethodConfig::Protegi(_)
        | MethodConfig::RandomSearch(_) => 2.0,
        // Sliding windows and sorting passes: one call after another.
        _ => cfg.calls_per_user(k).max as f64,
    }
}

fn stage_usd(price: Option<Price>, mode: CallMode, requests: f64, cached: f64) -> Option<f64> {
    let p = price?;
    if mode == CallMode::Batch && !p.has_batch() {
        return None;
    }
    let (input, cached_input, output) = p.rates(mode);
    let per = EST_PROMPT_TOKENS * (1.0 - cached) * input
        + EST_PROMPT_TOKENS * cached * cached_input
        + EST_COMPLETION_TOKENS * output;
    Some(requests * per / 1e6)
}

/// Requests of one user's forward pass (for AGP: profile and rerank); the upper bound where a
/// sorting method's count depends on the answers.
fn forward_requests(cfg: &MethodConfig, k: usize) -> f64 {
    cfg.calls_per_user(k).max as f64
}

/// Upper bound of one cell's HTTP requests: every training user gets feedback and every batch
/// an edit and a verify pass; test users (and validation users, with several epochs to choose
/// from) are evaluated after every epoch.
pub fn cell_requests(cfg: &MethodConfig, test: usize, valid: usize, train: usize, k: usize) -> f64 {
    let fwd = forward_requests(cfg, k);
    // `epochs` of training at `per_epoch` requests; under a budget in calls a batch that starts
    // below it runs to its end, so training passes it by at most `per_batch`. A budget in tokens
    // bounds no count of requests, so it plans every epoch.
    let trained = |per_epoch: f64, per_batch: f64, epochs: usize, budget: Option<u64>| {
        let all = per_epoch * epochs.max(1) as f64;
        budget.map_or(all, |b| all.min(b as f64 + per_batch))
    };
    // Test users (and validation users, with several epochs to choose from) after every epoch.
    let evaluated = |epochs: usize| {
        let users = test + if epochs > 1 { valid } else { 0 };
        fwd * users as f64 * epochs.max(1) as f64
    };
    let budget = cfg
        .loop_settings()
        .and_then(|s| s.training_budget())
        .and_then(|b| b.calls);
    match cfg {
        MethodConfig::Agp(c) | MethodConfig::AgpPointwise(c) | MethodConfig::RerankOpt(c) => {
            let n = c.n_train_users.unwrap_or(train) as f64;
            let batches = (n / c.batch_size.max(1) as f64).ceil();
            let verify = c.verify_steps as f64;
            // forward, feedback, summarize + edit, verify forward.
            let train_step = fwd * n + n + 2.0 * batches + fwd * n;
            let b = (c.batch_size as f64).min(n);
            let per_batch = verify * (fwd * b + b + 2.0 + fwd * b);
            trained(verify * train_step, per_batch, c.epochs, budget) + evaluated(c.epochs)
        }
        MethodConfig::Opro(c) => {
            let n = c.n_train_users.unwrap_or(train);
            let b = c.batch_size.min(n);
            let per_epoch = agp::opro_train_calls(c.batch_size, n, c.n_candidates) as f64;
            let per_batch = agp::opro_train_calls(b, b, c.n_candidates) as f64;
            trained(per_epoch, per_batch, c.epochs, budget) + evaluated(c.epochs)
        }
        MethodConfig::Protegi(c) => {
            let n = c.n_train_users.unwrap_or(train);
            let b = c.batch_size.min(n);
            let calls = |batch_size, n_train| {
                agp::protegi_train_calls(
                    batch_size,
                    n_train,
                    c.beam_width,
                    c.n_gradients,
                    c.n_edits,
                    c.n_paraphrases,
                ) as f64
            };
            trained(calls(c.batch_size, n), calls(b, b), c.epochs, budget) + evaluated(c.epochs)
        }
        MethodConfig::RandomSearch(c) => {
            let n = c.n_train_users.unwrap_or(train);
            let b = c.batch_size.min(n);
            // Per batch of b users: score the prompt (2b), one edit call, verify (2b).
            let per_epoch = (4 * n + n.div_ceil(c.batch_size.max(1))) as f64;
            let per_batch = (4 * b + 1) as f64;
            trained(per_epoch, per_batch, c.epochs, budget) + evaluated(c.epochs)
        }
        // Methods that do not learn: one forward pass per test user.
        _ => fwd * test as f64,
    }
}

/// One cell's evaluation requests: test users (and validation users, with several epochs to
/// choose from) after every epoch. A candidate order shows each of them
/// [`agp::CandidateOrder::shows`] times; training is shown once.
pub fn evaluation_requests(cfg: &MethodConfig, test: usize, valid: usize, k: usize) -> f64 {
    let epochs = cfg.training_epochs();
    let users = test + if epochs > 1 { valid } else { 0 };
    forward_requests(cfg, k) * users as f64 * epochs.max(1) as f64
}

/// [`cell_requests`] of a row run under `order`: the evaluation requests once per show.
pub fn ordered_cell_requests(
    cfg: &MethodConfig,
    order: Option<agp::CandidateOrder>,
    test: usize,
    valid: usize,
    train: usize,
    k: usize,
) -> f64 {
    let extra_shows = order.map_or(0, |o| o.shows() - 1) as f64;
    cell_requests(cfg, test, valid, train, k)
        + extra_shows * evaluation_requests(cfg, test, valid, k)
}

pub fn plan(exp: &Experiment, llms: &[String], seeds: u64) -> Result<Plan> {
    plan_for(exp, llms, seeds, 4)
}

/// [`plan`] for a run with `jobs` requests in flight.
pub fn plan_for(exp: &Experiment, llms: &[String], seeds: u64, jobs: usize) -> Result<Plan> {
    let s = &exp.settings;
    let cells = (s.datasets.len() * s.backbones.len()) as f64 * seeds as f64;
    let prices = PriceTable::builtin();
    let header = format!(
        "{} at scale {}: {} dataset(s) x {} backbone(s) x {seeds} seed(s). Planned HTTP requests \
         (an upper bound: every user gets feedback, every batch an edit and a verify pass; a \
         pointwise scoring is one request per candidate) at ~{EST_PROMPT_TOKENS} prompt + \
         {EST_COMPLETION_TOKENS} completion tokens each:",
        exp.name,
        exp.scale.name(),
        s.datasets.len(),
        s.backbones.len()
    );
    let mut rows = Vec::new();
    for llm in llms {
        // The one parser of LLM specs; a spec that does not parse was refused before planning.
        let spec: LlmSpec = llm.parse()?;
        let model = spec.model().unwrap_or("replay");
        for row in &exp.methods {
            let shows = row.order.map_or(1, |o| o.shows()) as f64;
            // (all requests, evaluation requests, pointwise, batch rounds a user's chain needs)
            let (requests, evaluation, pointwise, rounds) = match &row.config {
                crate::experiment::MethodSpec::Builtin(cfg) => {
                    let requests = ordered_cell_requests(
                        cfg,
                        row.order,
                        s.test_users,
                        s.valid_users,
                        s.train_users,
                        pipeline::K,
                    ) * cells;
                    let evaluation =
                        evaluation_requests(cfg, s.test_users, s.valid_users, pipeline::K)
                            * shows
                            * cells;
                    let pointwise = matches!(
                        cfg,
                        MethodConfig::LlmDirPointwise(_) | MethodConfig::AgpPointwise(_)
                    );
                    (
                        requests,
                        evaluation.min(requests),
                        pointwise,
                        dependent_rounds(cfg, pipeline::K),
                    )
                }
                // A registered method states its own cost per evaluated user; all of it is
                // evaluation, and at worst each of a user's calls waits on the one before.
                crate::experiment::MethodSpec::Registered(r) => {
                    let Some(m) = &r.method else { continue };
                    let per = m.calls_per_user(pipeline::K);
                    let per = row.order.map_or(per, |o| o.calls_per_user(per));
                    let requests = per.max as f64 * (s.test_users + s.valid_users) as f64 * cells;
                    (requests, requests, false, per.max.max(1) as f64)
                }
                // An external method's calls are its own business: it is not planned.
                crate::experiment::MethodSpec::External(_) => continue,
            };
            let usd = prices.get(model).map(|p| {
                requests
                    * (EST_PROMPT_TOKENS * p.input_per_mtok
                        + EST_COMPLETION_TOKENS * p.output_per_mtok)
                    / 1e6
            });
            let shared = if pointwise {
                POINTWISE_SHARED
            } else {
                EST_SHARED_PROMPT_TOKENS / EST_PROMPT_TOKENS
            };
            let cached_share = match cache_minimum(&spec) {
                Some(min) if EST_PROMPT_TOKENS >= min => shared,
                _ => 0.0,
            };
            let price = prices.get(model);
            let sync_hours = |n: f64| n * EST_REQUEST_S / jobs.max(1) as f64 / 3600.0;
            let mut stages = Vec::new();
            let training = requests - evaluation;
            if training > 0.0 {
                let usd = stage_usd(price, CallMode::Sync, training, cached_share);
                stages.push(StagePlan {
                    stage: "training",
                    requests: training,
                    cached_share,
                    sync_usd: usd,
                    sync_hours: sync_hours(training),
                    batch_usd: usd,
                    batch_hours: sync_hours(training),
                });
            }
            if evaluation > 0.0 {
                let batch_usd = stage_usd(price, CallMode::Batch, evaluation, cached_share);
                // Without a Batch API (or a price to say it has one) --batch is refused: the
                // evaluation runs synchronously either way.
                let batch_hours = if batch_usd.is_some() {
                    rounds * EST_BATCH_ROUND_H
                } else {
                    sync_hours(evaluation)
                };
                stages.push(StagePlan {
                    stage: "evaluation",
                    requests: evaluation,
                    cached_share,
                    sync_usd: stage_usd(price, CallMode::Sync, evaluation, cached_share),
                    sync_hours: sync_hours(evaluation),
                    batch_usd,
                    batch_hours,
                });
            }
            rows.push(PlanRow {
                llm: llm.clone(),
                label: row.label.clone(),
                requests,
                usd,
                stages,
            });
        }
    }
    Ok(Plan { header, rows, jobs })
}

impl Plan {
    pub fn render(&self) -> String {
        let mut out = self.header.clone();
        let mut total = 0.0;
        for r in &self.rows {
            let cost = match r.usd {
                Some(c) => {
                    total += c;
                    format!("~${c:.2}")
                }
                None => "(no list price)".to_string(),
            };
            let _ = write!(
                out,
                "\n  {:<28} {:<28} {:>9.0} requests  {cost}",
                r.llm, r.label, r.requests
            );
        }
        let _ = write!(out, "\n  total ~${total:.2} at list prices");
        out.push('\n');
        out.push_str(&self.render_modes());
        out
    }

    /// Synchronous and `--batch` side by side, per LLM and stage: cost, expected wall time
    /// and the share of prompt tokens a prefix cache serves.
    pub fn render_modes(&self) -> String {
        let usd = |x: Option<f64>| x.map_or("n/a".to_string(), |c| format!("${c:.2}"));
        let mut out = format!(
            "Synchronous and --batch (prices {PRICE_TABLE_VERSION}, cached input at its price; \
             ~{EST_REQUEST_S} s a request with {} in flight; a batch round ~{EST_BATCH_ROUND_H} h, \
             24 h at worst; training stays synchronous):\n  {:<28} {:<28} {:<10} {:>9} {:>6} \
             {:>10} {:>8} {:>10} {:>8}",
            self.jobs,
            "LLM",
            "method",
            "stage",
            "requests",
            "cached",
            "sync",
            "hours",
            "batch",
            "hours"
        );
        let mut llms: Vec<&str> = self.rows.iter().map(|r| r.llm.as_str()).collect();
        llms.dedup();
        for llm in llms {
            let (mut sync, mut batch) = (0.0, 0.0);
            let (mut sync_h, mut train_h, mut batch_h) = (0.0f64, 0.0f64, 0.0f64);
            let mut priced = true;
            for r in self.rows.iter().filter(|r| r.llm == llm) {
                for st in &r.stages {
                    let _ = write!(
                        out,
                        "\n  {:<28} {:<28} {:<10} {:>9.0} {:>5.0}% {:>10} {:>8.1} {:>10} {:>8.1}",
                        r.llm,
                        r.label,
                        st.stage,
                        st.requests,
                        100.0 * st.cached_share,
                        usd(st.sync_usd),
                        st.sync_hours,
                        usd(st.batch_usd.or(st.sync_usd)),
                        st.batch_hours
                    );
                    priced &= st.sync_usd.is_some();
                    sync += st.sync_usd.unwrap_or(0.0);
                    batch += st.batch_usd.or(st.sync_usd).unwrap_or(0.0);
                    sync_h += st.sync_hours;
                    if st.stage == "training" || st.batch_usd.is_none() {
                        train_h += st.batch_hours;
                    } else {
                        // Every cell's round k goes in one batch: rounds overlap across cells.
                        batch_h = batch_h.max(st.batch_hours);
                    }
                }
            }
            let batched = self
                .rows
                .iter()
                .filter(|r| r.llm == llm)
                .flat_map(|r| &r.stages)
                .any(|s| s.stage == "evaluation" && s.batch_usd.is_some());
            let saving = if !batched && priced {
                " (no Batch API: --batch is refused)".to_string()
            } else if sync > 0.0 {
                format!(" ({:.0}% less with --batch)", 100.0 * (1.0 - batch / sync))
            } else {
                String::new()
            };
            let _ = write!(
                out,
                "\n  {:<28} {:<28} {:<10} {:>9} {:>6} {:>10} {:>8.1} {:>10} {:>8.1}{}{saving}",
                llm,
                "total",
                "",
                "",
                "",
                if priced {
                    format!("${sync:.2}")
                } else {
                    "n/a".into()
                },
                sync_h,
                if priced {
                    format!("${batch:.2}")
                } else {
                    "n/a".into()
                },
                train_h.max(0.0) + batch_h,
                if priced { "" } else { " (no list price)" }
            );
        }
        out
    }

    /// Per LLM: the synchronous and the `--batch` cost of the whole plan.
    pub fn mode_totals(&self, llm: &str) -> (f64, f64) {
        let rows = self.rows.iter().filter(|r| r.llm == llm);
        let stages: Vec<&StagePlan> = rows.flat_map(|r| &r.stages).collect();
        (
            stages.iter().filter_map(|s| s.sync_usd).sum(),
            stages
                .iter()
                .filter_map(|s| s.batch_usd.or(s.sync_usd))
                .sum(),
        )
    }

    /// The plan's figures for `llm` beside what the run asked and spent.
    pub fn compare(&self, llm: &str, spent: &Spent) -> String {
        let planned: f64 = self
            .rows
            .iter()
            .filter(|r| r.llm == llm)
            .map(|r| r.requests)
            .sum();
        let usd: f64 = self
            .rows
            .iter()
            .filter(|r| r.llm == llm)
            .filter_map(|r| r.usd)
            .fold(0.0, |a, b| a + b);
        format!(
            "  {llm}: planned {planned:.0} requests (~${usd:.2}); asked {} ({:.1}% of the plan), \
             of which {} answered live now (~${:.2}; ~${:.2} had every answer been bought now, \
             as billed: cached input and batch lines at their prices)",
            spent.requests,
            100.0 * spent.requests as f64 / planned.max(1.0),
            spent.live,
            spent.usd,
            spent.worth_usd
        )
    }
}

/// What one model's ledger says the run asked and paid for.
pub struct Spent {
    /// Requests the methods made (a scored candidate is one), answered live or replayed.
    pub requests: u64,
    /// Of those, answered by the model in this run.
    pub live: u64,
    pub usd: f64,
    /// What every answer of the run cost when it was bought (replayed ones included).
    pub worth_usd: f64,
    /// Tokens of the live answers: prompt tokens read, those of them a prompt cache served,
    /// and tokens generated.
    pub live_prompt_tokens: u64,
    pub live_cached_tokens: u64,
    pub live_completion_tokens: u64,
}

impl Spent {
    pub fn of(ledger: &UsageLedger) -> Self {
        let totals = ledger.totals_by_account(&PriceTable::builtin());
        Self {
            requests: totals.values().map(|t| t.calls).sum(),
            live: totals.values().map(|t| t.calls - t.replayed_calls).sum(),
            usd: totals.values().map(|t| t.spent_usd).sum(),
            worth_usd: totals.values().map(|t| t.est_cost_usd).sum(),
            live_prompt_tokens: totals.values().map(|t| t.live_prompt_tokens).sum(),
            live_cached_tokens: totals.values().map(|t| t.live_cached_tokens).sum(),
            live_completion_tokens: totals.values().map(|t| t.live_completion_tokens).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Scale;

    #[test]
    fn paper_scale_plan_counts_http_requests_and_prices_them() {
        let path = crate::Workspace::discover().experiment_path("table1");
        let exp = Experiment::load(&path, Scale::Paper).unwrap();
        let plan = plan(&exp, &["openai:gpt-4o-mini".to_string()], 1).unwrap();
        let requests = |label: &str| {
            plan.rows
                .iter()
                .find(|r| r.label == label)
                .unwrap_or_else(|| panic!("no row {label}: {}", plan.render()))
                .requests
        };
        // LLM-Dir: one request per test user, for 3 datasets x 2 backbones.
        assert_eq!(requests("LLM-Dir"), 1800.0);
        // AGP at T100, batch 10, 10 epochs, verify 1, 300 test + 100 valid users per epoch:
        // (forward 200 + feedback 100 + summarize/edit 20 + verify 200 + eval 800) x 10 x 6.
        assert_eq!(requests("AGP"), 79_200.0);
        let text = plan.render();
        assert!(text.contains("total ~$"), "{text}");
        // With --batch every evaluation is a batch line at half price; training is not, and at
        // the paper's scale AGP's training is a third of the requests.
        for st in plan.rows.iter().flat_map(|r| &r.stages) {
            let (sync, batch) = (st.sync_usd.unwrap(), st.batch_usd.unwrap());
            let want = if st.stage == "training" { 1.0 } else { 0.5 };
            assert!((batch - want * sync).abs() < 1e-9, "{}", st.stage);
        }
        let (sync, batch) = plan.mode_totals("openai:gpt-4o-mini");
        assert!(batch < 0.7 * sync, "{sync} vs {batch}\n{text}");
        assert!(text.contains(PRICE_TABLE_VERSION), "{text}");
        // DeepSeek has no Batch API: the same cost both ways, and caches its shared prefix.
        let ds = plan_for(&exp, &["deepseek:deepseek-chat".to_string()], 1, 16).unwrap();
        let (sync, batch) = ds.mode_totals("deepseek:deepseek-chat");
        assert!((sync - batch).abs() < 1e-9);
        assert!(
            ds.rows
                .iter()
                .all(|r| r.stages.iter().all(|s| s.cached_share > 0.0))
        );
    }

    #[test]
    fn random_search_and_budgets_in_calls_or_tokens_are_planned() {
        let cfg = |extra: &str| -> MethodConfig {
            toml::from_str(&format!(
                "kind = \"random-search\"\nepochs = 2\nbatch_size = 5\nn_train_users = 18\n{extra}"
            ))
            .unwrap()
        };
        // 2 epochs of 4·18 + 4 batches, and 20 test + 10 valid users × 2 calls after each.
        let eval = 2.0 * 30.0 * 2.0;
        assert_eq!(cell_requests(&cfg(""), 20, 10, 20, 10), 2.0 * 76.0 + eval);
        // A budget of 30 calls: at most 30 plus one batch of 4·5 + 1.
        let calls = cfg("budget = { calls = 30 }");
        assert_eq!(cell_requests(&calls, 20, 10, 20, 10), 30.0 + 21.0 + eval);
        let alias = cfg("max_training_calls = 30");
        assert_eq!(cell_requests(&alias, 20, 10, 20, 10), 30.0 + 21.0 + eval);
        // Tokens bound no count of requests: every epoch is planned.
        let tokens = cfg("budget = { tokens = 30 }");
        assert_eq!(cell_requests(&tokens, 20, 10, 20, 10), 2.0 * 76.0 + eval);
    }

    #[test]
    fn a_candidate_order_multiplies_the_evaluation_requests_by_its_shows() {
        let path = crate::Workspace::discover().experiment_path("order-controls");
        let exp = Experiment::load(&path, Scale::Fixture).unwrap();
        let plan = plan(&exp, &["replay".to_string()], 1).unwrap();
        let requests = |label: &str| {
            plan.rows
                .iter()
                .find(|r| r.label == label)
                .unwrap_or_else(|| panic!("no row {label}: {}", plan.render()))
                .requests
        };
        let test = exp.settings.test_users as f64;
        for (label, per_user) in [("LLM-Dir", 1.0), ("LLM-Dir (pointwise)", 10.0)] {
            assert_eq!(requests(label), per_user * test);
            assert_eq!(requests(&format!("{label} [reversed]")), per_user * test);
            assert_eq!(
                requests(&format!("{label} [shuffled:3]")),
                3.0 * per_user * test
            );
        }
        // A learned method trains once under the first show and is evaluated under all three.
        let agp: MethodConfig = toml::from_str("kind = \"agp\"\nepochs = 2").unwrap();
        let order = Some(agp::CandidateOrder::Shuffled(3));
        let once = cell_requests(&agp, 20, 10, 10, 10);
        let evaluated = evaluation_requests(&agp, 20, 10, 10);
        assert_eq!(evaluated, 2.0 * 30.0 * 2.0);
        assert_eq!(
            ordered_cell_requests(&agp, order, 20, 10, 10, 10),
            once + 2.0 * evaluated
        );
    }

    #[test]
    fn a_pointwise_scoring_is_one_request_per_candidate() {
        let cfg: MethodConfig = toml::from_str("kind = \"llm-dir-pointwise\"").unwrap();
        assert_eq!(cell_requests(&cfg, 300, 100, 100, 10), 3000.0);
        let listwise: MethodConfig = toml::from_str("kind = \"llm-dir\"").unwrap();
        assert_eq!(cell_requests(&listwise, 300, 100, 100, 10), 300.0);
    }
}
