//! Reports under `reports/<experiment>/`: Markdown beside the paper's numbers, CSV and JSON of
//! every cell with per-user results, a LaTeX table, SVG figures and a run summary.
//!
//! Every file here is a pure function of the cells, so a re-run is byte-identical and a diff
//! against the committed report is a regression. Wall-clock times never enter these files.

use super::experiment::{Experiment, Layout};
use super::paper;
use super::stats::{self, Paired};
use super::svg::{BarChart, LineChart, Series};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Candidate-list length in every experiment (the paper's K).
pub const K: usize = 10;

/// Which epoch a trained method's test numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The epoch with the best mean NDCG@10 on the separate validation users (what we recommend).
    BestValid,
    /// The epoch with the best test NDCG@10: the paper's apparent choice, optimistic by design.
    BestTest,
    /// The last epoch.
    Last,
}

impl Selection {
    pub const ALL: [Selection; 3] = [Selection::BestValid, Selection::BestTest, Selection::Last];

    pub fn name(self) -> &'static str {
        match self {
            Selection::BestValid => "best-valid",
            Selection::BestTest => "best-test",
            Selection::Last => "last",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserOutcome {
    pub user: u32,
    /// 1-based rank of the held-out item after reranking.
    pub rank: u32,
    pub ndcg: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochPoint {
    pub epoch: usize,
    pub train_ndcg: Option<f64>,
    pub valid_ndcg: Option<f64>,
    pub test_ndcg: f64,
    pub test_rank: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectedEpoch {
    pub selection: Selection,
    pub epoch: usize,
    pub users: Vec<UserOutcome>,
}

/// One (dataset, backbone, LLM, method) result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// Seed of the backbone and the user draw.
    pub seed: u64,
    pub dataset: String,
    pub backbone: String,
    /// LLM spec as run (e.g. `local:smollm2-135m`); empty for methods that call no LLM.
    pub llm: String,
    /// Paper label of the LLM ("4o", ...), when it is one of the paper's.
    pub llm_paper_label: Option<String>,
    pub label: String,
    pub kind: String,
    pub settings: BTreeMap<String, String>,
    pub epochs: Vec<EpochPoint>,
    pub selected: Vec<SelectedEpoch>,
    pub calls_by_stage: BTreeMap<String, u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub parse_outcomes: BTreeMap<String, u64>,
    /// Calls that failed for good, by reason (the users they were for are scored as unusable
    /// answers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed_calls: BTreeMap<String, u64>,
    /// Eq. 7 prediction of training-stage calls for this run (AGP-style methods only).
    pub eq7_training_calls: Option<f64>,
    pub estimated_cost_usd: Option<f64>,
    pub final_prompt: Option<String>,
}

impl Cell {
    pub fn selected(&self, s: Selection) -> &SelectedEpoch {
        self.selected
            .iter()
            .find(|e| e.selection == s)
            .or_else(|| self.selected.first())
            .expect("every cell has at least one selected epoch")
    }

    fn ndcgs(&self, s: Selection) -> Vec<f64> {
        self.selected(s).users.iter().map(|u| u.ndcg).collect()
    }

    fn ranks(&self, s: Selection) -> Vec<f64> {
        self.selected(s)
            .users
            .iter()
            .map(|u| u.rank as f64)
            .collect()
    }

    fn hr(&self, s: Selection, at: u32) -> f64 {
        let users = &self.selected(s).users;
        users.iter().filter(|u| u.rank <= at).count() as f64 / users.len().max(1) as f64
    }

    fn trained(&self) -> bool {
        self.epochs.len() > 1 || self.epochs.iter().any(|e| e.train_ndcg.is_some())
    }

    fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.dataset, self.backbone, self.llm, self.label
        )
    }
}

/// Facts about the run that the report states (none of them timings).
#[derive(Debug, Clone, Serialize)]
pub struct RunFacts {
    pub experiment: String,
    pub scale: String,
    /// For each LLM spec: which model made the responses (from the recordings in replay mode).
    pub llm_provenance: BTreeMap<String, String>,
    /// Per (dataset, backbone): users asked for and taken, candidate-file checksum, backbone metrics.
    pub backbones: Vec<BackboneFacts>,
    pub seeds: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackboneFacts {
    pub dataset: String,
    pub backbone: String,
    pub epochs: usize,
    pub metrics: BTreeMap<String, f64>,
    pub eligible_users: usize,
    pub test_users: usize,
    pub train_users: usize,
    pub valid_users: usize,
    pub requested: (usize, usize, usize),
}

pub struct Report {
    pub files: BTreeMap<String, String>,
}

fn f4(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "–".into()
    }
}

fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".into()
    }
}

fn signed(x: f64) -> String {
    if x.is_finite() {
        format!("{x:+.4}")
    } else {
        "–".into()
    }
}

/// Seed for a cell's bootstrap: derived from its key so adding a cell moves no other interval.
fn cell_seed(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

struct Summary {
    n: usize,
    ndcg: f64,
    ci: (f64, f64),
    rank: f64,
    hr1: f64,
    hr3: f64,
    hr5: f64,
}

fn summarize(c: &Cell, s: Selection) -> Summary {
    let nd = c.ndcgs(s);
    Summary {
        n: nd.len(),
        ndcg: stats::mean(&nd),
        ci: stats::bootstrap_ci(&nd, cell_seed(&c.key())),
        rank: stats::mean(&c.ranks(s)),
        hr1: c.hr(s, 1),
        hr3: c.hr(s, 3),
        hr5: c.hr(s, 5),
    }
}

/// Per-user NDCG of `c` (at `s`) and of `base` on the same users in the same order; `None`
/// when the user sets differ.
fn paired_ndcgs(c: &Cell, s: Selection, base: &Cell) -> Option<(Vec<f64>, Vec<f64>)> {
    let a = &c.selected(s).users;
    let b = &base.selected(Selection::Last).users;
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.user != y.user) || a.is_empty() {
        return None;
    }
    Some((
        a.iter().map(|u| u.ndcg).collect(),
        b.iter().map(|u| u.ndcg).collect(),
    ))
}

/// Paired difference of `c` against the Base cell of the same (dataset, backbone) on the same
/// users; `None` when the user sets differ.
fn versus_base(c: &Cell, base: Option<&Cell>, s: Selection) -> Option<Paired> {
    let (av, bv) = paired_ndcgs(c, s, base?)?;
    Some(stats::paired(&av, &bv, cell_seed(&c.key()) ^ 1))
}

fn group_key(c: &Cell) -> (String, String) {
    (c.dataset.clone(), c.backbone.clone())
}

pub fn render(exp: &Experiment, facts: &RunFacts, all_cells: &[Cell]) -> Report {
    let first_seed = all_cells.iter().map(|c| c.seed).min().unwrap_or(1);
    let cells: Vec<Cell> = all_cells
        .iter()
        .filter(|c| c.seed == first_seed)
        .cloned()
        .collect();
    let cells = &cells[..];
    let mut files = BTreeMap::new();
    let mut md = markdown(exp, facts, cells);
    if facts.seeds.len() > 1 {
        md.push_str(&across_seeds(all_cells));
    }
    files.insert("README.md".to_string(), md);
    files.insert("cells.csv".to_string(), cells_csv(all_cells));
    files.insert("per_user.csv".to_string(), per_user_csv(all_cells));
    files.insert(
        "cells.json".to_string(),
        serde_json::to_string_pretty(&serde_json::json!({ "run": facts, "cells": all_cells }))
            .expect("cells serialise")
            + "\n",
    );
    files.insert("table.tex".to_string(), latex(exp, cells));
    for (name, svg) in figures(exp, cells) {
        files.insert(name, svg);
    }
    Report { files }
}

fn markdown(exp: &Experiment, facts: &RunFacts, cells: &[Cell]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", exp.title);
    let _ = writeln!(
        md,
        "Generated by `cargo xtask reproduce {} --scale {}`. Do not edit: CI regenerates this \
         folder and fails on any difference.\n",
        exp.name,
        exp.scale.name()
    );
    if !exp.description.is_empty() {
        let _ = writeln!(md, "{}\n", exp.description.trim());
    }
    let small_local = facts.llm_provenance.values().any(|p| p.contains("local"));
    if small_local {
        let _ = writeln!(
            md,
            "**Read this first:** these responses come from a small local model whose list \
             answers are mostly unparseable or echo the input order, and whose yes/no scores \
             rank near chance, so this run proves the harness end to end, not the paper's \
             claim. Unparseable answers count as rank 10 (NDCG 0), as in the reference code; \
             the run summary counts them.\n"
        );
    }
    let _ = writeln!(md, "## Setup\n");
    let _ = writeln!(
        md,
        "- Scale: `{}`; seeds: {:?}.",
        exp.scale.name(),
        facts.seeds
    );
    for (spec, prov) in &facts.llm_provenance {
        let _ = writeln!(md, "- LLM `{spec}`: {prov}.");
    }
    for b in &facts.backbones {
        let metrics: Vec<String> = b
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {}", f4(*v)))
            .collect();
        let _ = writeln!(
            md,
            "- {} / {}: {} epochs; {}; {} users have the held-out item in their top-{K}; \
             test/train/valid users {}/{}/{} (asked {}/{}/{}).",
            b.dataset,
            b.backbone,
            b.epochs,
            metrics.join(", "),
            b.eligible_users,
            b.test_users,
            b.train_users,
            b.valid_users,
            b.requested.0,
            b.requested.1,
            b.requested.2
        );
    }
    let _ = writeln!(
        md,
        "- NDCG@10 with one relevant item; 95% intervals are percentile bootstraps over users \
         ({} resamples); Δ Base is the paired mean difference on the same users with its \
         bootstrap interval and a sign-flip permutation p-value.",
        stats::BOOTSTRAP_RESAMPLES
    );
    let _ = writeln!(
        md,
        "- Trained methods report three epochs: **valid** (chosen on separate validation users; \
         our headline), **best test** (the paper's apparent choice; optimistic) and **last**.\n"
    );

    let mut groups: Vec<(String, String)> = cells.iter().map(group_key).collect();
    groups.dedup();
    for (dataset, backbone) in &groups {
        let group: Vec<&Cell> = cells
            .iter()
            .filter(|c| c.dataset == *dataset && c.backbone == *backbone)
            .collect();
        let base = group.iter().copied().find(|c| c.kind == "base");
        let _ = writeln!(md, "## {dataset} / {backbone}\n");
        let _ = writeln!(
            md,
            "| Method | LLM | n | NDCG@10 (valid) [95% CI] | Δ Base [95% CI] (p) | NDCG@10 best test | NDCG@10 last | mean rank | HR@1 | HR@3 | HR@5 | paper |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        let rnd = agp::random_order_ndcg(K);
        let _ = writeln!(
            md,
            "| Random order (expected) | – | – | {} | – | – | – | {} | {} | {} | {} | – |",
            f4(rnd),
            f3(stats::random_order_rank(K)),
            f3(1.0 / K as f64),
            f3(3.0 / K as f64),
            f3(5.0 / K as f64)
        );
        for c in &group {
            let s = summarize(c, Selection::BestValid);
            let d = if c.kind == "base" {
                "–".to_string()
            } else {
                match versus_base(c, base, Selection::BestValid) {
                    Some(p) => format!(
                        "{} [{}, {}] ({:.3})",
                        signed(p.mean_diff),
                        signed(p.ci.0),
                        signed(p.ci.1),
                        p.p_value
                    ),
                    None => "–".into(),
                }
            };
            let (bt, last) = if c.trained() {
                let bt = summarize(c, Selection::BestTest);
                let last = summarize(c, Selection::Last);
                (
                    format!(
                        "{} (ep {})",
                        f4(bt.ndcg),
                        c.selected(Selection::BestTest).epoch
                    ),
                    format!(
                        "{} (ep {})",
                        f4(last.ndcg),
                        c.selected(Selection::Last).epoch
                    ),
                )
            } else {
                ("–".into(), "–".into())
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} [{}, {}] | {d} | {bt} | {last} | {} | {} | {} | {} | {} |",
                c.label,
                if c.llm.is_empty() { "–" } else { &c.llm },
                s.n,
                f4(s.ndcg),
                f4(s.ci.0),
                f4(s.ci.1),
                f3(s.rank),
                f3(s.hr1),
                f3(s.hr3),
                f3(s.hr5),
                paper_cell(exp, c)
            );
        }
        let _ = writeln!(md);
    }
    if exp.layout == Layout::Table1 {
        md.push_str(&paper_table1());
    }
    md.push_str(&figure_section(exp, cells));
    md.push_str(&run_summary(cells));
    md
}

/// The paper's number for this cell: same dataset if it is one of the paper's, otherwise the
/// paper's values on its three datasets for the same backbone and method (for orientation).
fn paper_cell(exp: &Experiment, c: &Cell) -> String {
    let method = match c.kind.as_str() {
        "base" => "base",
        "llm-dir" => "llm-dir",
        "llm-cot" => "llm-cot",
        "agp" => "agp",
        _ => return "–".into(),
    };
    let label = c.llm_paper_label.as_deref().unwrap_or("");
    if let Some(v) = paper::table1(&c.backbone, method, label, &c.dataset) {
        let ours = summarize(c, Selection::BestTest).ndcg;
        return format!("{} (Δ {})", f3(v), signed(ours - v));
    }
    if exp.layout != Layout::Table1 {
        return "–".into();
    }
    let label = if label.is_empty() && method != "base" {
        "4o"
    } else {
        label
    };
    let vals: Vec<String> = paper::DATASETS
        .iter()
        .filter_map(|d| paper::table1(&c.backbone, method, label, d))
        .map(f3)
        .collect();
    if vals.is_empty() {
        "–".into()
    } else if method == "base" {
        format!("{} (AMZ/YELP/GR)", vals.join("/"))
    } else {
        format!("{} ({label}, AMZ/YELP/GR)", vals.join("/"))
    }
}

fn paper_table1() -> String {
    let mut md = String::from(
        "## The paper's Table 1 (NDCG@10, 300 test users, GPT-4o / 4o-Mini / o3-Mini / DeepSeek-V3)\n\n\
         | Backbone | Method | LLM | AMZ | YELP | GR |\n|---|---|---|---|---|---|\n",
    );
    for (b, m, l, v) in paper::TABLE1 {
        let _ = writeln!(
            md,
            "| {b} | {m} | {} | {} | {} | {} |",
            if l.is_empty() { "–" } else { l },
            f3(v[0]),
            f3(v[1]),
            f3(v[2])
        );
    }
    md.push('\n');
    md
}

fn figure_section(exp: &Experiment, cells: &[Cell]) -> String {
    let mut md = String::new();
    for name in figures(exp, cells).keys() {
        let _ = writeln!(md, "![{name}]({name})\n");
    }
    match exp.layout {
        Layout::Fig2Summarization => {
            let _ = writeln!(
                md,
                "Paper, Fig. 2 left (AMZ, GPT-4o), test NDCG@10 by epoch:\n"
            );
            let _ = writeln!(
                md,
                "| epoch | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 |\n|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for (name, xs) in [
                ("test, with summarization", paper::FIG2_TEST_SUM),
                ("test, without summarization", paper::FIG2_TEST_NO_SUM),
                ("train, with summarization", paper::FIG2_TRAIN_SUM),
                ("train, without summarization", paper::FIG2_TRAIN_NO_SUM),
            ] {
                let row: Vec<String> = xs.iter().map(|x| f3(*x)).collect();
                let _ = writeln!(md, "| {name} | {} |", row.join(" | "));
            }
            md.push('\n');
        }
        Layout::Fig2Grid => {
            let _ = writeln!(md, "Paper, Fig. 2 right (AMZ, GPT-4o), NDCG@10:\n");
            let _ = writeln!(md, "| history \\ batch | 5 | 10 | 20 |\n|---|---|---|---|");
            for (h, row) in paper::FIG2_GRID_HISTORY.iter().zip(paper::FIG2_GRID) {
                let _ = writeln!(
                    md,
                    "| {h} | {} | {} | {} |",
                    f3(row[0]),
                    f3(row[1]),
                    f3(row[2])
                );
            }
            md.push('\n');
        }
        Layout::Fig3Pbf => {
            let _ = writeln!(
                md,
                "Paper, Fig. 3 (GPT-4o): NDCG@10 and mean GT rank without / with PBF:\n"
            );
            let _ = writeln!(
                md,
                "| dataset | NDCG w/o | NDCG w/ | rank w/o | rank w/ |\n|---|---|---|---|---|"
            );
            for (d, (a, b, c, e)) in ["AMZ", "YELP", "GR"].iter().zip(paper::FIG3_PBF) {
                let _ = writeln!(md, "| {d} | {} | {} | {c:.1} | {e:.1} |", f3(a), f3(b));
            }
            md.push('\n');
        }
        Layout::Scaling => {
            let _ = writeln!(
                md,
                "Paper, §3.4 (AMZ, GPT-4o): NDCG@10 {} with 100 training users, {} with 700 (+1.29%).\n",
                f3(paper::SCALING.0),
                f3(paper::SCALING.1)
            );
        }
        Layout::ReferenceCode => {
            let _ = writeln!(
                md,
                "The paper reports no such comparison. What each reference-code row switches on \
                 is said above; every setting a row ran with is in `cells.json`.\n"
            );
        }
        Layout::Table1 => {}
    }
    md
}

fn run_summary(cells: &[Cell]) -> String {
    let mut md = String::from(
        "## Run summary\n\nCalls by stage, tokens and parse outcomes per cell. A call is one HTTP \
         request: a pointwise scoring is one per candidate. Eq. 7 predicts \
         the training-stage calls as (3B + 2) · N / B per epoch; our count adds the verify \
         re-evaluations (2 per user per verify step) and skips feedback for users already \
         ranked first, as the reference code does. Failed calls are those that stayed failed \
         after every retry, or were refused; their users count as unusable answers \
         (rank K, NDCG 0).\n\n\
         | Cell | calls by stage | total | Eq. 7 (training) | prompt tok | completion tok | est. cost | parse outcomes | failed calls |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for c in cells {
        if c.calls_by_stage.is_empty() {
            continue;
        }
        let stages: Vec<String> = c
            .calls_by_stage
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let parse: Vec<String> = c
            .parse_outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let failed: Vec<String> = c
            .failed_calls
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.key(),
            stages.join(", "),
            c.calls_by_stage.values().sum::<u64>(),
            c.eq7_training_calls
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "–".into()),
            c.prompt_tokens,
            c.completion_tokens,
            c.estimated_cost_usd
                .map(|x| format!("${x:.2}"))
                .unwrap_or_else(|| "–".into()),
            if parse.is_empty() {
                "–".into()
            } else {
                parse.join(", ")
            },
            if failed.is_empty() {
                "–".into()
            } else {
                failed.join(", ")
            }
        );
    }
    let prompts: Vec<&Cell> = cells.iter().filter(|c| c.final_prompt.is_some()).collect();
    if !prompts.is_empty() {
        md.push_str("\n## Final learned prompts\n\n");
        for c in prompts {
            let p = c.final_prompt.as_deref().unwrap_or("");
            let shown = if p.trim().is_empty() {
                "(empty: no edit was accepted)"
            } else {
                p.trim()
            };
            let _ = writeln!(md, "**{}**\n\n```text\n{shown}\n```\n", c.key());
        }
    }
    md
}

/// Mean ± 95% t-interval of each cell's headline NDCG@10 over seeds, and the paired difference
/// to Base pooled over every (seed, user).
fn across_seeds(cells: &[Cell]) -> String {
    let mut md = String::from(
        "## Across seeds\n\n| Cell | seeds | NDCG@10 (valid) mean ± 95% CI | Δ Base pooled over users [95% CI] (p) |\n|---|---|---|---|\n",
    );
    let mut keys: Vec<String> = cells.iter().map(Cell::key).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let runs: Vec<&Cell> = cells.iter().filter(|c| c.key() == key).collect();
        let means: Vec<f64> = runs
            .iter()
            .map(|c| summarize(c, Selection::BestValid).ndcg)
            .collect();
        let (m, h) = stats::across_seeds(&means);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for c in runs.iter().filter(|c| c.kind != "base") {
            let base = cells
                .iter()
                .find(|x| x.kind == "base" && x.seed == c.seed && group_key(x) == group_key(c));
            if let Some((x, y)) = base.and_then(|b| paired_ndcgs(c, Selection::BestValid, b)) {
                a.extend(x);
                b.extend(y);
            }
        }
        let d = if a.is_empty() {
            "–".to_string()
        } else {
            let p = stats::paired(&a, &b, cell_seed(&key) ^ 2);
            format!(
                "{} [{}, {}] ({:.3})",
                signed(p.mean_diff),
                signed(p.ci.0),
                signed(p.ci.1),
                p.p_value
            )
        };
        let _ = writeln!(
            md,
            "| {key} | {} | {} ± {} | {d} |",
            runs.len(),
            f4(m),
            f4(h)
        );
    }
    md.push('\n');
    md
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into()
    }
}

fn cells_csv(cells: &[Cell]) -> String {
    let mut out = String::from(
        "seed,dataset,backbone,llm,method,kind,selection,epoch,n_users,ndcg10,ci_low,ci_high,mean_rank,hr1,hr3,hr5,delta_base,delta_ci_low,delta_ci_high,p_value\n",
    );
    for c in cells {
        let base = cells
            .iter()
            .find(|b| b.kind == "base" && group_key(b) == group_key(c));
        for s in Selection::ALL {
            let sum = summarize(c, s);
            let p = if c.kind == "base" {
                None
            } else {
                versus_base(c, base, s)
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&c.dataset),
                csv_field(&c.backbone),
                csv_field(&c.llm),
                csv_field(&c.label),
                csv_field(&c.kind),
                s.name(),
                c.selected(s).epoch,
                sum.n,
                f4(sum.ndcg),
                f4(sum.ci.0),
                f4(sum.ci.1),
                f4(sum.rank),
                f4(sum.hr1),
                f4(sum.hr3),
                f4(sum.hr5),
                p.map(|p| f4(p.mean_diff)).unwrap_or_default(),
                p.map(|p| f4(p.ci.0)).unwrap_or_default(),
                p.map(|p| f4(p.ci.1)).unwrap_or_default(),
                p.map(|p| f4(p.p_value)).unwrap_or_default(),
            );
        }
    }
    out
}

fn per_user_csv(cells: &[Cell]) -> String {
    let mut out =
        String::from("seed,dataset,backbone,llm,method,selection,epoch,user,rank,ndcg10\n");
    for c in cells {
        for s in Selection::ALL {
            let e = c.selected(s);
            for u in &e.users {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{:.6}",
                    c.seed,
                    csv_field(&c.dataset),
                    csv_field(&c.backbone),
                    csv_field(&c.llm),
                    csv_field(&c.label),
                    s.name(),
                    e.epoch,
                    u.user,
                    u.rank,
                    u.ndcg
                );
            }
        }
    }
    out
}

fn latex(exp: &Experiment, cells: &[Cell]) -> String {
    let esc = |s: &str| {
        s.replace('_', "\\_")
            .replace('&', "\\&")
            .replace('%', "\\%")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "% Generated by `cargo xtask reproduce {}`; do not edit.",
        exp.name
    );
    let _ = writeln!(out, "\\begin{{tabular}}{{lllrr}}\n\\toprule");
    let _ = writeln!(
        out,
        "Dataset & Backbone & Method (LLM) & NDCG@10 & 95\\% CI \\\\\n\\midrule"
    );
    for c in cells {
        let s = summarize(c, Selection::BestValid);
        let llm = if c.llm.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(&c.llm))
        };
        let _ = writeln!(
            out,
            "{} & {} & {}{} & {:.3} & [{:.3}, {:.3}] \\\\",
            esc(&c.dataset),
            esc(&c.backbone),
            esc(&c.label),
            llm,
            s.ndcg,
            s.ci.0,
            s.ci.1
        );
    }
    let _ = writeln!(out, "\\bottomrule\n\\end{{tabular}}");
    out
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn figures(exp: &Experiment, cells: &[Cell]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let rnd = ("random order".to_string(), agp::random_order_ndcg(K));
    // Per-epoch curves for every trained cell: the figure a researcher checks first.
    for c in cells.iter().filter(|c| c.trained()) {
        let pts = |f: &dyn Fn(&EpochPoint) -> Option<f64>| -> Vec<(f64, f64)> {
            c.epochs
                .iter()
                .map(|e| (e.epoch as f64, f(e).unwrap_or(f64::NAN)))
                .collect()
        };
        let chart = LineChart {
            title: format!("{} — NDCG@10 per epoch", c.key()),
            x_label: "epoch".into(),
            y_label: "NDCG@10".into(),
            series: vec![
                Series {
                    name: "train".into(),
                    points: pts(&|e| e.train_ndcg),
                    dashed: true,
                },
                Series {
                    name: "valid".into(),
                    points: pts(&|e| e.valid_ndcg),
                    dashed: true,
                },
                Series {
                    name: "test".into(),
                    points: pts(&|e| Some(e.test_ndcg)),
                    dashed: false,
                },
            ],
            references: vec![rnd.clone()],
        };
        out.insert(format!("epochs-{}.svg", slug(&c.key())), chart.render());
    }
    let mut groups: Vec<(String, String)> = cells.iter().map(group_key).collect();
    groups.dedup();
    match exp.layout {
        Layout::Table1
        | Layout::Fig3Pbf
        | Layout::Scaling
        | Layout::Fig2Summarization
        | Layout::ReferenceCode => {
            for (d, b) in &groups {
                let g: Vec<&Cell> = cells
                    .iter()
                    .filter(|c| c.dataset == *d && c.backbone == *b)
                    .collect();
                let chart = BarChart {
                    title: format!("{d} / {b}: NDCG@10 (valid-selected epoch)"),
                    y_label: "NDCG@10".into(),
                    groups: g.iter().map(|c| c.label.clone()).collect(),
                    series: vec![(
                        "ours (95% CI)".into(),
                        g.iter()
                            .map(|c| summarize(c, Selection::BestValid).ndcg)
                            .collect(),
                    )],
                    whiskers: vec![
                        g.iter()
                            .map(|c| summarize(c, Selection::BestValid).ci)
                            .collect(),
                    ],
                    references: vec![rnd.clone()],
                };
                out.insert(
                    format!("bars-{}.svg", slug(&format!("{d}-{b}"))),
                    chart.render(),
                );
            }
        }
        Layout::Fig2Grid => {
            for (d, b) in &groups {
                let cell = |batch: usize, hist: usize| {
                    cells
                        .iter()
                        .find(|c| {
                            c.dataset == *d
                                && c.backbone == *b
                                && c.settings.get("batch_size").map(String::as_str)
                                    == Some(&batch.to_string())
                                && c.settings.get("history_length").map(String::as_str)
                                    == Some(&hist.to_string())
                        })
                        .map(|c| summarize(c, Selection::BestValid).ndcg)
                        .unwrap_or(f64::NAN)
                };
                let chart = BarChart {
                    title: format!("{d} / {b}: NDCG@10 by batch size and history length"),
                    y_label: "NDCG@10".into(),
                    groups: paper::FIG2_GRID_BATCH
                        .iter()
                        .map(|x| format!("batch {x}"))
                        .collect(),
                    series: paper::FIG2_GRID_HISTORY
                        .iter()
                        .map(|h| {
                            (
                                format!("history {h}"),
                                paper::FIG2_GRID_BATCH
                                    .iter()
                                    .map(|bs| cell(*bs, *h))
                                    .collect(),
                            )
                        })
                        .collect(),
                    whiskers: vec![],
                    references: vec![rnd.clone()],
                };
                out.insert(
                    format!("grid-{}.svg", slug(&format!("{d}-{b}"))),
                    chart.render(),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::experiment::{Scale, ScaleSettings};

    fn cell(label: &str, kind: &str, ranks: &[u32]) -> Cell {
        let users: Vec<UserOutcome> = ranks
            .iter()
            .enumerate()
            .map(|(i, &r)| UserOutcome {
                user: i as u32,
                rank: r,
                ndcg: 1.0 / ((r + 1) as f64).log2(),
            })
            .collect();
        Cell {
            seed: 1,
            dataset: "ml-latest-small".into(),
            backbone: "lightgcn".into(),
            llm: if kind == "base" {
                String::new()
            } else {
                "replay".into()
            },
            llm_paper_label: None,
            label: label.into(),
            kind: kind.into(),
            settings: BTreeMap::new(),
            epochs: vec![EpochPoint {
                epoch: 1,
                train_ndcg: None,
                valid_ndcg: None,
                test_ndcg: 0.5,
                test_rank: 5.0,
            }],
            selected: Selection::ALL
                .iter()
                .map(|&s| SelectedEpoch {
                    selection: s,
                    epoch: 1,
                    users: users.clone(),
                })
                .collect(),
            calls_by_stage: BTreeMap::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            parse_outcomes: BTreeMap::new(),
            failed_calls: BTreeMap::new(),
            eq7_training_calls: None,
            estimated_cost_usd: None,
            final_prompt: None,
        }
    }

    fn experiment() -> Experiment {
        Experiment {
            name: "table1".into(),
            title: "T".into(),
            description: String::new(),
            layout: Layout::Table1,
            scale: Scale::Fixture,
            settings: ScaleSettings {
                datasets: vec![],
                backbones: vec![],
                llms: vec![],
                test_users: 0,
                train_users: 0,
                valid_users: 0,
                take_available_users: false,
                backbone_epochs: BTreeMap::new(),
                method_overrides: BTreeMap::new(),
                all_methods: toml::Table::new(),
                max_tokens: None,
            },
            methods: vec![],
        }
    }

    #[test]
    fn report_has_reference_row_paper_values_and_is_deterministic() {
        let cells = vec![
            cell("Base", "base", &[1, 5, 10, 3]),
            cell("LLM-Dir", "llm-dir", &[2, 5, 9, 3]),
        ];
        let facts = RunFacts {
            experiment: "table1".into(),
            scale: "fixture".into(),
            llm_provenance: BTreeMap::new(),
            backbones: vec![],
            seeds: vec![1],
        };
        let a = render(&experiment(), &facts, &cells);
        let b = render(&experiment(), &facts, &cells);
        assert_eq!(a.files, b.files);
        let md = &a.files["README.md"];
        assert!(
            md.contains("| Random order (expected) | – | – | 0.4544 |"),
            "{md}"
        );
        // Base on LightGCN: the paper's three datasets for orientation.
        assert!(md.contains("0.513/0.501/0.474 (AMZ/YELP/GR)"), "{md}");
        // Mean NDCG of ranks 1,5,10,3 = (1 + 0.3869 + 0.2891 + 0.5) / 4.
        assert!(md.contains("| Base | – | 4 | 0.5440 ["), "{md}");
        let csv = &a.files["per_user.csv"];
        assert_eq!(
            csv.lines().count(),
            1 + 2 * 3 * 4,
            "header + cells × selections × users"
        );
        assert!(a.files.contains_key("table.tex"));
        assert!(!md.contains("## Across seeds"));
        let mut second = cells.clone();
        for c in &mut second {
            c.seed = 2;
        }
        let both: Vec<Cell> = cells.iter().cloned().chain(second).collect();
        let facts2 = RunFacts {
            seeds: vec![1, 2],
            ..facts.clone()
        };
        let two = render(&experiment(), &facts2, &both);
        let md2 = &two.files["README.md"];
        assert!(md2.contains("## Across seeds"), "{md2}");
        assert!(
            md2.contains("| ml-latest-small/lightgcn/replay/LLM-Dir | 2 |"),
            "{md2}"
        );
        assert_eq!(two.files["per_user.csv"].lines().count(), 1 + 2 * 2 * 3 * 4);
        assert!(a.files.keys().any(|k| k.starts_with("bars-")));
    }
}
