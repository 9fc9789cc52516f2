//! The SVG figures.

use super::*;
pub(super) fn slug(s: &str) -> String {
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

pub(super) fn figures(exp: &Experiment, cells: &[Cell]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let rnd = ("random order".to_string(), agp::random_order_ndcg(K));
    // Per-epoch curves for every trained cell: the figure a researcher checks first.
    for c in cells.iter().filter(|c| c.trained()) {
        let pts = |f: &dyn Fn(&agp::EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
            c.run
                .epochs
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
                    points: pts(&|e| e.train.as_ref().map(|m| m.ndcg10)),
                    dashed: true,
                },
                Series {
                    name: "valid".into(),
                    points: pts(&|e| e.valid.as_ref().map(|m| m.ndcg10)),
                    dashed: true,
                },
                Series {
                    name: "test".into(),
                    points: pts(&|e| Some(e.test.ndcg10)),
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
        | Layout::ReferenceCode
        | Layout::Methods
        | Layout::OpenQuestions => {
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
        Layout::Fig2Grid => {}
    }
    if exp.layout == Layout::OpenQuestions {
        for (d, b) in &groups {
            out.extend(masking_sweep(cells, d, b));
        }
    }
    if exp.layout == Layout::Fig2Grid {
        for (d, b) in &groups {
            let cell = |batch: usize, hist: usize| {
                cells
                    .iter()
                    .find(|c| {
                        c.dataset == *d
                            && c.backbone == *b
                            && c.builtin()
                                .and_then(|m| m.loop_settings())
                                .is_some_and(|l| (l.batch_size, l.history_length) == (batch, hist))
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
    out
}

/// NDCG@10 against the share of history titles masked, one line per method kind (rows that set
/// `hist_mask`); Base as a reference line. `None` when the group has no such rows.
fn masking_sweep(cells: &[Cell], d: &str, b: &str) -> Option<(String, String)> {
    let g: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.dataset == d && c.backbone == b)
        .collect();
    let mut kinds: Vec<&str> = g
        .iter()
        .filter(|c| c.settings.contains_key("hist_mask"))
        .map(|c| c.kind.as_str())
        .collect();
    kinds.dedup();
    if kinds.is_empty() {
        return None;
    }
    let series = kinds
        .iter()
        .map(|k| {
            let mut points: Vec<(f64, f64)> = g
                .iter()
                .filter(|c| c.kind == *k)
                .filter_map(|c| {
                    let m = c.builtin()?.hist_mask()?;
                    Some((m, summarize(c, Selection::BestValid).ndcg))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: (*k).to_string(),
                points,
                dashed: false,
            }
        })
        .collect();
    let mut references = vec![("random order".to_string(), agp::random_order_ndcg(K))];
    if let Some(base) = g.iter().find(|c| c.is_base()) {
        references.push((
            "Base".to_string(),
            summarize(base, Selection::BestValid).ndcg,
        ));
    }
    let chart = LineChart {
        title: format!("{d} / {b}: NDCG@10 as history titles are masked"),
        x_label: "share of history titles masked".into(),
        y_label: "NDCG@10".into(),
        series,
        references,
    };
    Some((
        format!("masking-{}.svg", slug(&format!("{d}-{b}"))),
        chart.render(),
    ))
}
