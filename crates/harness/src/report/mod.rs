//! Reports under `reports/<experiment>/`: Markdown beside the paper's numbers, CSV and JSON of
//! every cell with per-user results, a LaTeX table, SVG figures and a run summary.
//!
//! Every file here is a pure function of the cells, so a re-run is byte-identical and a diff
//! against the committed report is a regression. Wall-clock times never enter these files.

use crate::experiment::{Experiment, Layout};
use crate::paper;
use crate::stats::{self, Paired};
use crate::svg::{BarChart, LineChart, Series};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

mod csv;
mod figures;
mod latex;
mod markdown;
pub mod terminal;

pub(crate) use csv::csv_field;
use csv::{cells_csv, per_user_csv};
use figures::figures;
use latex::latex;
use markdown::{across_seeds, markdown};

/// Candidate-list length in every experiment (the paper's K).
pub const K: usize = 10;

/// Which epoch a trained method's test numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

impl std::str::FromStr for Selection {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Selection::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown selection `{s}` (best-valid, best-test, last)"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOutcome {
    pub user: u32,
    /// 1-based rank of the held-out item after reranking.
    pub rank: u32,
    pub ndcg: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    pub epoch: usize,
    pub train_ndcg: Option<f64>,
    pub valid_ndcg: Option<f64>,
    pub test_ndcg: f64,
    pub test_rank: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectedEpoch {
    pub selection: Selection,
    pub epoch: usize,
    pub users: Vec<UserOutcome>,
}

/// One (dataset, backbone, LLM, method) result.
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
    /// For methods that do not learn: the calls their formula predicts
    /// (`MethodConfig::calls_per_user` × evaluated users), as (min, max); equal when exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula_calls: Option<(u64, u64)>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{Scale, ScaleSettings};

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
            formula_calls: None,
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
                backbone_settings: BTreeMap::new(),
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
