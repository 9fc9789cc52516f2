//! The candidate-order controls: NDCG@10 and the first-shown rate of each method under each
//! order its rows ran in (`candidate_order` in the experiment file).

use super::*;
use crate::experiment::CANDIDATE_ORDER_KEY;

/// The order a cell ran under and its method's label without it; `None` for a cell run without
/// an order control.
fn ordered(c: &Cell) -> Option<(&str, &str)> {
    let order = c.settings.get(CANDIDATE_ORDER_KEY)?;
    let method = c
        .label
        .strip_suffix(&format!(" [{order}]"))
        .unwrap_or(&c.label);
    Some((order.as_str(), method))
}

/// Over every answered show of the selected epoch's users: the share whose top item was the
/// one shown first, with the shows it is over.
fn first_shown(c: &Cell, s: Selection) -> (Option<f64>, u64, u64) {
    let (mut top, mut answered, mut shows) = (0u64, 0u64, 0u64);
    for f in c.selected(s).users.iter().filter_map(|u| u.first_shown) {
        top += u64::from(f.top_first);
        answered += u64::from(f.answered);
        shows += u64::from(f.shows);
    }
    let rate = (answered > 0).then(|| top as f64 / answered as f64);
    (rate, answered, shows)
}

/// Distinct values of `f` over `cells`, in first-seen order.
fn distinct<'a>(cells: &[&'a Cell], f: impl Fn(&'a Cell) -> Option<&'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in cells.iter().filter_map(|c| f(c)) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The Markdown section: one table per (dataset, backbone, LLM), a row per method, a column of
/// NDCG@10 (valid) per order, then a column of first-shown rate per order. Empty when no cell
/// ran under an order control.
pub(super) fn order_section(cells: &[Cell]) -> String {
    let ordered_cells: Vec<&Cell> = cells.iter().filter(|c| ordered(c).is_some()).collect();
    if ordered_cells.is_empty() {
        return String::new();
    }
    let orders = distinct(&ordered_cells, |c| ordered(c).map(|o| o.0));
    let mut md = String::from("## Candidate order\n\n");
    let _ = writeln!(
        md,
        "Each method row ran with its candidates shown in each order: `backbone` (as every \
         other report), `reversed`, or `shuffled:<n>` (n seeded permutations per user, answers \
         aggregated by Borda count, n times the calls). NDCG@10 is on the validation-chosen \
         epoch. *First shown* is how often an answer's top item is the item shown first, over \
         every answered show of the test users (an answer that placed no item has no top item); \
         a method that copies its input scores 1. Base keeps the backbone's order by \
         definition: its NDCG@10 is the reference in every column, and its top item is the \
         first shown only under `backbone`.\n"
    );
    let mut groups: Vec<(String, String, String)> = Vec::new();
    for c in &ordered_cells {
        let g = (c.dataset.clone(), c.backbone.clone(), c.llm.clone());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    for (dataset, backbone, llm) in &groups {
        let group: Vec<&Cell> = ordered_cells
            .iter()
            .copied()
            .filter(|c| c.dataset == *dataset && c.backbone == *backbone && c.llm == *llm)
            .collect();
        let _ = writeln!(md, "### {dataset} / {backbone} / {llm}\n");
        let ndcg_heads: Vec<String> = orders.iter().map(|o| format!("NDCG@10 {o}")).collect();
        let first_heads: Vec<String> = orders.iter().map(|o| format!("first shown {o}")).collect();
        let _ = writeln!(
            md,
            "| Method | {} | {} |",
            ndcg_heads.join(" | "),
            first_heads.join(" | ")
        );
        let _ = writeln!(md, "|---{}|", "|---".repeat(2 * orders.len()));
        if let Some(base) = cells
            .iter()
            .find(|c| c.is_base() && c.dataset == *dataset && c.backbone == *backbone)
        {
            let ndcg = f4(summarize(base, Selection::BestValid).ndcg);
            let first: Vec<&str> = orders
                .iter()
                .map(|o| if *o == "backbone" { "1.000" } else { "–" })
                .collect();
            let _ = writeln!(
                md,
                "| {} (reference) | {} | {} |",
                base.label,
                vec![ndcg; orders.len()].join(" | "),
                first.join(" | ")
            );
        }
        for method in distinct(&group, |c| ordered(c).map(|o| o.1)) {
            let cell = |order: &str| {
                group
                    .iter()
                    .find(|c| ordered(c) == Some((order, method)))
                    .copied()
            };
            let ndcg: Vec<String> = orders
                .iter()
                .map(|o| {
                    cell(o).map_or("–".into(), |c| f4(summarize(c, Selection::BestValid).ndcg))
                })
                .collect();
            let first: Vec<String> = orders
                .iter()
                .map(|o| {
                    cell(o)
                        .and_then(|c| first_shown(c, Selection::BestValid).0)
                        .map_or("–".into(), f3)
                })
                .collect();
            let _ = writeln!(
                md,
                "| {method} | {} | {} |",
                ndcg.join(" | "),
                first.join(" | ")
            );
        }
        let _ = writeln!(md);
    }
    md
}

/// `orders.csv`: per cell run under an order control, its NDCG@10 and first-shown counts at
/// every selection. `None` when no cell ran under one.
pub(super) fn orders_csv(cells: &[Cell]) -> Option<String> {
    let rows: Vec<(&Cell, &str, &str)> = cells
        .iter()
        .filter_map(|c| ordered(c).map(|(o, m)| (c, o, m)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut out = String::from(
        "seed,dataset,backbone,llm,method,candidate_order,selection,epoch,n_users,ndcg10,first_shown_rate,answered_shows,shows\n",
    );
    for (c, order, method) in rows {
        for s in Selection::ALL {
            let (rate, answered, shows) = first_shown(c, s);
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{answered},{shows}",
                c.seed,
                csv_field(&c.dataset),
                csv_field(&c.backbone),
                csv_field(&c.llm),
                csv_field(method),
                csv_field(order),
                s.name(),
                c.selected(s).epoch,
                c.selected(s).users.len(),
                f4(summarize(c, s).ndcg),
                rate.map(f4).unwrap_or_default(),
            );
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp::FirstShown;

    /// A cell of `method` run under `order`, whose users' answers put the first-shown item on
    /// top `top_first` times of `answered`.
    fn ordered_cell(method: &str, order: &str, ranks: &[usize], top_first: &[u32]) -> Cell {
        let ndcgs: Vec<f64> = ranks.iter().map(|&r| agp::ndcg_at_10(r)).collect();
        let label = if order == "backbone" {
            method.to_string()
        } else {
            format!("{method} [{order}]")
        };
        let mut c = test_cell(&label, "llm-dir", ranks, &ndcgs);
        c.settings
            .insert(CANDIDATE_ORDER_KEY.into(), order.to_string());
        let shows = if order.starts_with("shuffled") { 3 } else { 1 };
        for e in [&mut c.run.last, &mut c.run.best_test] {
            for (u, &t) in e.users.iter_mut().zip(top_first) {
                u.first_shown = Some(FirstShown {
                    shows,
                    answered: shows,
                    top_first: t,
                });
            }
        }
        c.run.best_valid = Some(SelectedEpoch {
            selection: Selection::BestValid,
            ..c.run.last.clone()
        });
        c
    }

    #[test]
    fn the_order_table_has_a_column_per_order_and_base_as_reference() {
        let plain = vec![test_cell("Base", "base", &[1, 3], &[1.0, 0.5])];
        assert_eq!(order_section(&plain), "");
        assert!(orders_csv(&plain).is_none());
        let cells = vec![
            test_cell("Base", "base", &[1, 3], &[1.0, 0.5]),
            ordered_cell("LLM-Dir", "backbone", &[1, 3], &[1, 1]),
            ordered_cell("LLM-Dir", "reversed", &[10, 8], &[1, 0]),
            ordered_cell("LLM-Dir", "shuffled:3", &[2, 2], &[3, 0]),
        ];
        let md = order_section(&cells);
        assert!(
            md.contains("### ml-latest-small / lightgcn / replay"),
            "{md}"
        );
        assert!(
            md.contains(
                "| Method | NDCG@10 backbone | NDCG@10 reversed | NDCG@10 shuffled:3 | first \
                 shown backbone | first shown reversed | first shown shuffled:3 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| Base (reference) | 0.7500 | 0.7500 | 0.7500 | 1.000 | – | – |"),
            "{md}"
        );
        // NDCG of ranks (1, 3) = 0.75, (10, 8) = (0.2891 + 0.3155) / 2, (2, 2) = 0.6309;
        // first shown: 2 of 2, 1 of 2, 3 of 6.
        assert!(
            md.contains("| LLM-Dir | 0.7500 | 0.3023 | 0.6309 | 1.000 | 0.500 | 0.500 |"),
            "{md}"
        );
        let csv = orders_csv(&cells).unwrap();
        assert_eq!(csv.lines().count(), 1 + 3 * 3);
        assert!(
            csv.contains(
                "1,ml-latest-small,lightgcn,replay,LLM-Dir,shuffled:3,best-valid,1,2,0.6309,0.5000,6,6"
            ),
            "{csv}"
        );
    }
}
