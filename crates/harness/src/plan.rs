//! The plan a live run prints before its first call, and what it actually spent afterwards:
//! HTTP requests per (LLM, method) — a pointwise scoring is K requests, one per candidate — and
//! their cost at list prices.

use crate::experiment::Experiment;
use crate::pipeline;
use agp::MethodConfig;
use agp_llm::usage::{PriceTable, UsageLedger};
use anyhow::Result;
use std::fmt::Write;

/// Prompt and completion tokens assumed per request for the up-front estimate: the reference
/// prompts with 5 history items and 10 candidates are ~600-800 tokens; answers are short.
const EST_PROMPT_TOKENS: f64 = 700.0;
const EST_COMPLETION_TOKENS: f64 = 200.0;

pub struct PlanRow {
    pub llm: String,
    pub label: String,
    /// Upper bound of HTTP requests over every dataset, backbone and seed.
    pub requests: f64,
    /// At list prices; `None` for a model without a price.
    pub usd: Option<f64>,
}

pub struct Plan {
    pub header: String,
    pub rows: Vec<PlanRow>,
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
        let model = llm.split_once(':').map(|(_, m)| m).unwrap_or(llm);
        let model = model.split_once('#').map(|(_, m)| m).unwrap_or(model);
        for row in &exp.methods {
            let requests = match &row.config {
                crate::experiment::MethodSpec::Builtin(cfg) => {
                    ordered_cell_requests(
                        cfg,
                        row.order,
                        s.test_users,
                        s.valid_users,
                        s.train_users,
                        pipeline::K,
                    ) * cells
                }
                // A registered method states its own cost per evaluated user.
                crate::experiment::MethodSpec::Registered(r) => {
                    let Some(m) = &r.method else { continue };
                    let per = m.calls_per_user(pipeline::K);
                    let per = row.order.map_or(per, |o| o.calls_per_user(per));
                    per.max as f64 * (s.test_users + s.valid_users) as f64 * cells
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
            rows.push(PlanRow {
                llm: llm.clone(),
                label: row.label.clone(),
                requests,
                usd,
            });
        }
    }
    Ok(Plan { header, rows })
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
        out
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
             of which {} answered live now (~${:.2})",
            spent.requests,
            100.0 * spent.requests as f64 / planned.max(1.0),
            spent.live,
            spent.usd
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
}

impl Spent {
    pub fn of(ledger: &UsageLedger) -> Self {
        let totals = ledger.totals_by_account(&PriceTable::builtin());
        Self {
            requests: totals.values().map(|t| t.calls).sum(),
            live: totals.values().map(|t| t.calls - t.replayed_calls).sum(),
            usd: totals.values().map(|t| t.spent_usd).sum(),
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
