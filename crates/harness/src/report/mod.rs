//! Reports under `reports/<experiment>/`: Markdown beside the paper's numbers, CSV and JSON of
//! every cell with per-user results, a LaTeX table, SVG figures and a run summary.
//!
//! Every file here is a pure function of the cells, so a re-run is byte-identical and a diff
//! against the committed report is a regression. Wall-clock times never enter these files.

use crate::experiment::{Experiment, Layout, MethodSpec};
use crate::paper;
use crate::stats::{self, Paired};
use crate::svg::{BarChart, LineChart, Series};
use agp::MethodRun;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

mod card;
mod csv;
mod figures;
mod latex;
mod markdown;
mod order;
pub mod terminal;

pub(crate) use csv::csv_field;
use csv::{cells_csv, per_user_csv};
use figures::figures;
use latex::latex;
use markdown::{across_seeds, learned_spread, markdown};
use order::{order_section, orders_csv};

/// Candidate-list length in every experiment (the paper's K).
pub const K: usize = 10;

pub use agp::{SelectedEpoch, Selection};
pub use markdown::MISSING_LABELS_FLAG;

/// One (dataset, backbone, LLM, method) result: the method's own [`MethodRun`] with where it
/// ran and what the harness adds (predicted calls and cost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The keys the experiment row set, as written (what a reader of the file sees); the typed
    /// values are in `method`.
    pub settings: BTreeMap<String, String>,
    /// The method as configured for this scale.
    pub method: MethodSpec,
    pub run: MethodRun,
    /// Eq. 7 prediction of training-stage calls for this run (AGP-style methods only).
    pub eq7_training_calls: Option<f64>,
    /// For methods that do not learn: the calls their formula predicts
    /// (`MethodConfig::calls_per_user` × evaluated users), as (min, max); equal when exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula_calls: Option<(u64, u64)>,
    pub estimated_cost_usd: Option<f64>,
}

impl Cell {
    /// The epoch `s` chose; a method evaluated without validation users falls back to its last
    /// epoch for `best-valid`.
    pub fn selected(&self, s: Selection) -> &SelectedEpoch {
        self.run.selected(s).unwrap_or(&self.run.last)
    }

    fn ndcgs(&self, s: Selection) -> Vec<f64> {
        self.selected(s).users.iter().map(|u| u.ndcg).collect()
    }

    /// Per-user NDCG@10 under the experiment's other rule for unusable answers (a user scored
    /// under one rule only, such as Base's, is the same under both).
    fn ndcgs_other_rule(&self, s: Selection) -> Vec<f64> {
        self.selected(s)
            .users
            .iter()
            .map(|u| u.other_rule.map_or(u.ndcg, |o| o.ndcg))
            .collect()
    }

    fn ranks(&self, s: Selection) -> Vec<f64> {
        self.selected(s)
            .users
            .iter()
            .map(|u| u.rank as f64)
            .collect()
    }

    fn hr(&self, s: Selection, at: usize) -> f64 {
        let users = &self.selected(s).users;
        users.iter().filter(|u| u.rank <= at).count() as f64 / users.len().max(1) as f64
    }

    fn trained(&self) -> bool {
        self.run.epochs.len() > 1 || self.run.epochs.iter().any(|e| e.train.is_some())
    }

    /// Answered requests by stage name (`profile`, `rerank`, ..., `test`).
    pub fn calls_by_stage(&self) -> BTreeMap<String, u64> {
        self.run
            .calls
            .iter()
            .map(|(stage, t)| (stage.as_str().to_string(), t.calls))
            .collect()
    }

    /// Labels its log-probability calls asked for, and those the provider did not return.
    pub fn labels_missing(&self) -> (u64, u64) {
        self.run.calls.values().fold((0, 0), |(a, m), t| {
            (a + t.labels_asked, m + t.labels_missing)
        })
    }

    fn parse_outcomes(&self) -> BTreeMap<String, u64> {
        self.run
            .parse_counts
            .iter()
            .map(|(o, n)| (format!("{o:?}").to_lowercase(), *n))
            .collect()
    }

    fn failed_calls(&self) -> BTreeMap<String, u64> {
        self.run
            .failures
            .iter()
            .map(|(r, n)| (r.to_string(), *n))
            .collect()
    }

    /// Base, the backbone's own order: what every other row of its group is measured against.
    /// Read from the typed method, so a renamed kind cannot silently drop the reference row.
    pub fn is_base(&self) -> bool {
        matches!(self.method, MethodSpec::Builtin(agp::MethodConfig::Base(_)))
    }

    /// The row's typed settings, when it is one of the built-in methods.
    pub fn builtin(&self) -> Option<&agp::MethodConfig> {
        match &self.method {
            MethodSpec::Builtin(c) => Some(c),
            MethodSpec::External(_) | MethodSpec::Registered(_) => None,
        }
    }

    /// `dataset/backbone/llm/method`: how reports and `cargo xtask power --cell` name a cell.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.dataset, self.backbone, self.llm, self.label
        )
    }
}

/// Facts about the run that the report states (none of them timings).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFacts {
    pub experiment: String,
    pub scale: String,
    /// For each LLM spec: which model made the responses (from the recordings in replay mode).
    pub llm_provenance: BTreeMap<String, String>,
    /// Per (dataset, backbone): users asked for and taken, candidate-file checksum, backbone metrics.
    pub backbones: Vec<BackboneFacts>,
    pub seeds: Vec<u64>,
    /// The `reproduce` flags beyond experiment and scale that made the report (an LLM, a
    /// recordings file, datasets, a subset of methods), so its README names the command that
    /// regenerates it. Empty, and not written, for the experiment's defaults.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    /// Per LLM spec, the recordings this run answered from or wrote (models, runtime settings,
    /// request sampling, dates): the reproducibility card's source. Not written to
    /// `cells.json`: its exact times and counts depend on whether a run was resumed, and the
    /// card shows only what does not.
    #[serde(skip)]
    pub recordings: BTreeMap<String, agp_llm::store::RecordsSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackboneFacts {
    pub dataset: String,
    pub backbone: String,
    /// Epochs run (early stopping may end before the maximum).
    pub epochs: usize,
    /// The epoch whose parameters were kept, if validation ran.
    pub best_epoch: Option<usize>,
    pub stopped_early: bool,
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

pub(crate) fn f4(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "–".into()
    }
}

pub(crate) fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".into()
    }
}

pub(crate) fn signed(x: f64) -> String {
    if x.is_finite() {
        format!("{x:+.4}")
    } else {
        "–".into()
    }
}

/// Seed for a cell's bootstrap: derived from its key so adding a cell moves no other interval.
pub(crate) fn cell_seed(key: &str) -> u64 {
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

/// As [`paired_ndcgs`], under the other rule for unusable answers.
fn paired_ndcgs_other_rule(c: &Cell, s: Selection, base: &Cell) -> Option<(Vec<f64>, Vec<f64>)> {
    paired_ndcgs(c, s, base)?;
    Some((
        c.ndcgs_other_rule(s),
        base.ndcgs_other_rule(Selection::Last),
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
    md.push_str(&card::card(exp, facts, cells));
    if facts.seeds.len() > 1 {
        md.push_str(&across_seeds(all_cells));
    }
    // With one seed the section still carries the `valid-lcb` choice of the rows that ask for
    // it; a one-seed report of rows that do not is left as it was.
    if facts.seeds.len() > 1 || all_cells.iter().any(|c| c.run.valid_lcb.is_some()) {
        md.push_str(&learned_spread(all_cells));
    }
    files.insert("README.md".to_string(), md);
    files.insert("cells.csv".to_string(), cells_csv(all_cells));
    files.insert("per_user.csv".to_string(), per_user_csv(all_cells));
    if let Some(csv) = orders_csv(all_cells) {
        files.insert("orders.csv".to_string(), csv);
    }
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

/// A cell of one epoch whose users have these ranks and NDCGs, for tests of what is computed
/// from cells.
#[cfg(test)]
pub(crate) fn test_cell(label: &str, kind: &str, ranks: &[usize], ndcgs: &[f64]) -> Cell {
    use agp::{MeanMetrics, ParseOutcome, UserResult};
    let users: Vec<UserResult> = ranks
        .iter()
        .zip(ndcgs)
        .enumerate()
        .map(|(i, (&rank, &ndcg))| UserResult {
            user: i as u32,
            rank,
            ndcg,
            parse: ParseOutcome::Exact,
            failure: None,
            other_rule: None,
            first_shown: None,
        })
        .collect();
    let test = MeanMetrics::of(&users);
    let epoch = |selection| SelectedEpoch {
        selection,
        epoch: 1,
        test: test.clone(),
        valid: None,
        users: users.clone(),
    };
    let config = serde_json::json!({ "kind": kind });
    let method: agp::MethodConfig = serde_json::from_value(config.clone()).expect("a kind");
    let base = matches!(method, agp::MethodConfig::Base(_));
    let calls = if base {
        BTreeMap::new()
    } else {
        BTreeMap::from([(
            agp::Stage::Test,
            agp::StageTally {
                calls: users.len() as u64,
                ..Default::default()
            },
        )])
    };
    Cell {
        seed: 1,
        dataset: "ml-latest-small".into(),
        backbone: "lightgcn".into(),
        llm: if base { "" } else { "replay" }.into(),
        llm_paper_label: None,
        label: label.into(),
        kind: kind.into(),
        settings: BTreeMap::new(),
        method: MethodSpec::Builtin(method),
        run: MethodRun {
            label: label.into(),
            config,
            model: agp_llm::ModelInfo {
                backend: "replay".into(),
                model: "test".into(),
                file_sha256: None,
            },
            k: K,
            n_train_users: 0,
            n_test_users: users.len(),
            n_valid_users: 0,
            epochs: vec![agp::EpochMetrics {
                epoch: 1,
                train: None,
                test: test.clone(),
                valid: None,
                accepted_edits: 0,
                discarded_edits: 0,
            }],
            last: epoch(Selection::Last),
            best_test: epoch(Selection::BestTest),
            best_valid: Some(epoch(Selection::BestValid)),
            valid_lcb: None,
            calls,
            total_calls: if base { 0 } else { users.len() as u64 },
            prompt_tokens: 0,
            completion_tokens: 0,
            eq7_calls_per_epoch: None,
            counted_calls_per_epoch: None,
            backbone: test,
            random_order_ndcg: agp::random_order_ndcg(K),
            parse_counts: BTreeMap::new(),
            failures: BTreeMap::new(),
            final_prompt: None,
            scoring: agp::AnswerScoring::RankK,
        },
        eq7_training_calls: None,
        formula_calls: None,
        estimated_cost_usd: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{Scale, ScaleSettings};

    fn cell(label: &str, kind: &str, ranks: &[usize]) -> Cell {
        let ndcgs: Vec<f64> = ranks
            .iter()
            .map(|&r| 1.0 / ((r + 1) as f64).log2())
            .collect();
        test_cell(label, kind, ranks, &ndcgs)
    }

    fn experiment() -> Experiment {
        Experiment {
            name: "table1".into(),
            title: "T".into(),
            description: String::new(),
            layout: Layout::Table1,
            scale: Scale::Fixture,
            scoring: agp::AnswerScoring::RankK,
            settings: ScaleSettings {
                datasets: vec![],
                backbones: vec![],
                llms: vec![],
                test_users: 0,
                train_users: 0,
                valid_users: 0,
                take_available_users: false,
                backbone_epochs: BTreeMap::new(),
                backbone_settings: BTreeMap::new(),
                method_overrides: BTreeMap::new(),
                all_methods: toml::Table::new(),
                max_tokens: None,
                decoding: agp::Decoding::default(),
                seeds: None,
            },
            methods: vec![],
            left_out: vec![],
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
            flags: String::new(),
            recordings: BTreeMap::new(),
        };
        let a = render(&experiment(), &facts, &cells);
        let b = render(&experiment(), &facts, &cells);
        assert_eq!(a.files, b.files);
        let md = &a.files["README.md"];
        assert!(
            md.contains("`cargo xtask reproduce table1 --scale fixture`."),
            "{md}"
        );
        assert!(
            !a.files["cells.json"].contains("\"flags\""),
            "defaults add no key"
        );
        let flagged = RunFacts {
            flags: "--llm replay --method base".into(),
            recordings: BTreeMap::new(),
            ..facts.clone()
        };
        let f = render(&experiment(), &flagged, &cells);
        assert!(f.files["README.md"].contains(
            "`cargo xtask reproduce table1 --scale fixture --llm replay --method base`."
        ),);
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
        // No learned row, no section on learned methods.
        assert!(!md2.contains("## Learned methods across seeds"), "{md2}");
    }

    #[test]
    fn learned_methods_show_their_spread_over_seeds() {
        // One AGP cell per seed, its users' NDCG means 0.2, 0.4 and 0.6; the third seed also
        // chose an epoch on the lower bound.
        let cells: Vec<Cell> = [(1, 0.2), (2, 0.4), (3, 0.6)]
            .into_iter()
            .map(|(seed, x)| {
                let mut c = test_cell("AGP", "agp", &[1, 2], &[x, x]);
                c.seed = seed;
                c.run.final_prompt = Some(format!("p{seed}"));
                c.run.calls.insert(
                    agp::Stage::Edit,
                    agp::StageTally {
                        calls: 10 * seed,
                        prompt_tokens: 100,
                        completion_tokens: 20,
                        ..Default::default()
                    },
                );
                c
            })
            .chain([test_cell("Base", "base", &[1, 2], &[0.5, 0.5])])
            .collect();
        let md = markdown::learned_spread(&cells);
        assert!(md.starts_with("## Learned methods across seeds"), "{md}");
        assert!(
            md.contains(
                "| ml-latest-small/lightgcn/replay/AGP | best-valid | 3 | 0.4000 | 0.2000 | \
                 0.2000 | 0.6000 | 20 | 120 |"
            ),
            "{md}"
        );
        // valid-lcb only where every seed reported it; Base learns nothing.
        assert!(!md.contains("valid-lcb"), "{md}");
        assert!(!md.contains("/Base"), "{md}");
        assert_eq!(markdown::learned_spread(&cells[3..]), "");
        // Every seed chose on the lower bound too: a second row for that rule.
        let mut lcb = cells.clone();
        for c in &mut lcb[..3] {
            let mut e = c.run.last.clone();
            e.selection = Selection::ValidLcb;
            c.run.valid_lcb = Some(e);
        }
        let md = markdown::learned_spread(&lcb);
        assert!(
            md.contains("| ml-latest-small/lightgcn/replay/AGP | valid-lcb | 3 | 0.4000 |"),
            "{md}"
        );
    }
}
