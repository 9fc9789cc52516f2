//! The headline table a run prints when it ends: the Markdown report stays the record, this is
//! what a person reads first.

use super::*;
use tabled::builder::Builder;
use tabled::settings::Style;
use tabled::settings::object::Columns;
use tabled::settings::{Alignment, Modify};

/// One row per (dataset, backbone, LLM, method) of the first seed: users, NDCG@10 with its 95%
/// interval at the recommended epoch (best validation), the paired difference to Base on the
/// same users, and the LLM calls it took. `rounded` draws box lines (for a terminal); without
/// it the table is plain ASCII, which survives CI logs and `| cat`.
pub fn headline(title: &str, cells: &[Cell], rounded: bool) -> String {
    let first_seed = cells.iter().map(|c| c.seed).min().unwrap_or(1);
    let cells: Vec<&Cell> = cells.iter().filter(|c| c.seed == first_seed).collect();
    let mut b = Builder::default();
    b.push_record([
        "dataset",
        "backbone",
        "LLM",
        "method",
        "n",
        "NDCG@10",
        "95% CI",
        "Δ vs Base",
        "p",
        "calls",
    ]);
    for c in &cells {
        let s = summarize(c, Selection::BestValid);
        let base = cells
            .iter()
            .find(|b| b.is_base() && group_key(b) == group_key(c))
            .copied();
        let vs = if c.is_base() {
            None
        } else {
            versus_base(c, base, Selection::BestValid)
        };
        let calls: u64 = c.calls_by_stage().values().sum();
        b.push_record([
            c.dataset.clone(),
            c.backbone.clone(),
            if c.llm.is_empty() {
                "–".into()
            } else {
                c.llm.clone()
            },
            c.label.clone(),
            s.n.to_string(),
            f4(s.ndcg),
            format!("[{}, {}]", f3(s.ci.0), f3(s.ci.1)),
            vs.as_ref()
                .map(|p| signed(p.mean_diff))
                .unwrap_or("–".into()),
            vs.as_ref()
                .map(|p| format!("{:.3}", p.p_value))
                .unwrap_or("–".into()),
            calls.to_string(),
        ]);
    }
    let mut t = b.build();
    if rounded {
        t.with(Style::rounded());
    } else {
        t.with(Style::psql());
    }
    t.with(Modify::new(Columns::new(4..)).with(Alignment::right()));
    format!("{title}\n{t}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(label: &str, kind: &str, ndcgs: &[f64]) -> Cell {
        crate::report::test_cell(label, kind, &vec![1; ndcgs.len()], ndcgs)
    }

    #[test]
    fn the_headline_pairs_each_method_with_base() {
        let cells = [
            cell("Base", "base", &[0.5, 0.5, 0.5, 0.5]),
            cell("AGP", "agp", &[1.0, 1.0, 0.5, 0.5]),
        ];
        let t = headline("table1", &cells, false);
        let agp = t.lines().find(|l| l.contains("AGP")).unwrap();
        assert!(agp.contains("0.7500"), "{t}");
        assert!(agp.contains("+0.2500"), "{t}");
        let base = t.lines().find(|l| l.contains("| Base ")).unwrap();
        assert!(base.contains("0.5000") && base.contains('–'), "{t}");
        assert_eq!(t.lines().count(), 5, "title, header, rule, two rows: {t}");
    }
}
