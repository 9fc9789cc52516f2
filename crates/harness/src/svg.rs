//! Minimal, dependency-free SVG charts (line and grouped bar) with deterministic output, so a
//! committed figure changes only when its numbers do.

use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

pub struct Series {
    pub name: String,
    /// (x, y) points; y may be NaN for a missing value (skipped).
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Horizontal reference lines, e.g. the random-order NDCG.
    pub references: Vec<(String, f64)>,
}

pub struct BarChart {
    pub title: String,
    pub y_label: String,
    /// Group labels along the x axis.
    pub groups: Vec<String>,
    /// One bar per (series, group); NaN means no bar.
    pub series: Vec<(String, Vec<f64>)>,
    /// Per series, an interval per group drawn as a whisker; empty draws none.
    pub whiskers: Vec<Vec<(f64, f64)>>,
    pub references: Vec<(String, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" axis range covering `lo..hi` with about five ticks.
fn nice_range(lo: f64, hi: f64) -> (f64, f64, f64) {
    let (lo, hi) = if (hi - lo).abs() < 1e-9 {
        (lo - 0.05, hi + 0.05)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

fn header(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        esc(title)
    );
}

struct Frame {
    y0: f64,
    y1: f64,
}

impl Frame {
    fn y(&self, v: f64) -> f64 {
        TOP + (H - TOP - BOTTOM) * (1.0 - (v - self.y0) / (self.y1 - self.y0))
    }
}

fn y_axis(out: &mut String, lo: f64, hi: f64, label: &str) -> Frame {
    let (y0, y1, step) = nice_range(lo, hi);
    let f = Frame { y0, y1 };
    let mut v = y0;
    while v <= y1 + step * 1e-6 {
        let y = f.y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(v, step)
        );
        v += step;
    }
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0,
        esc(label)
    );
    f
}

fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize + 1
    };
    format!("{v:.decimals$}")
}

fn legend(out: &mut String, i: usize, name: &str, dashed: bool) {
    let y = TOP + 10.0 + 18.0 * i as f64;
    let x = W - RIGHT + 12.0;
    let dash = if dashed {
        r#" stroke-dasharray="5 3""#
    } else {
        ""
    };
    let _ = writeln!(
        out,
        r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
        x + 22.0,
        PALETTE[i % PALETTE.len()],
        x + 28.0,
        y + 4.0,
        esc(name)
    );
}

fn references(out: &mut String, f: &Frame, refs: &[(String, f64)]) {
    for (name, v) in refs {
        let y = f.y(*v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" fill="#555" font-size="10">{}</text>"##,
            W - RIGHT,
            LEFT + 4.0,
            y - 4.0,
            esc(&format!("{name} {v:.4}"))
        );
    }
}

fn finite_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

impl LineChart {
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(&mut out, &self.title);
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        let (lo, hi) = finite_range(ys.chain(self.references.iter().map(|r| r.1)));
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let f = y_axis(&mut out, lo, hi, &self.y_label);
        let (x0, x1) = finite_range(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let (x0, x1) = if x0.is_finite() && x1 > x0 {
            (x0, x1)
        } else {
            (0.0, 1.0)
        };
        let px = |x: f64| LEFT + (W - RIGHT - LEFT) * (x - x0) / (x1 - x0);
        // Integer ticks: the x axis is epochs.
        let mut x = x0.ceil();
        while x <= x1 {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x}</text>"#,
                px(x),
                H - BOTTOM + 16.0
            );
            x += ((x1 - x0) / 10.0).ceil().max(1.0);
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            H - 14.0,
            esc(&self.x_label)
        );
        references(&mut out, &f, &self.references);
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<String> = s
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), f.y(y)))
                .collect();
            let dash = if s.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                pts.join(" ")
            );
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(out, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"/>"#);
            }
            legend(&mut out, i, &s.name, s.dashed);
        }
        out.push_str("</svg>\n");
        out
    }
}

impl BarChart {
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(&mut out, &self.title);
        let ys = self.series.iter().flat_map(|s| s.1.iter().copied());
        let ws = self.whiskers.iter().flatten().flat_map(|&(a, b)| [a, b]);
        let (lo, hi) = finite_range(ys.chain(ws).chain(self.references.iter().map(|r| r.1)));
        let (lo, hi) = if lo.is_finite() {
            (lo.min(0.0), hi)
        } else {
            (0.0, 1.0)
        };
        let f = y_axis(&mut out, lo, hi, &self.y_label);
        let groups = self.groups.len().max(1) as f64;
        let gw = (W - RIGHT - LEFT) / groups;
        let bw = gw * 0.8 / self.series.len().max(1) as f64;
        for (g, name) in self.groups.iter().enumerate() {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + gw * (g as f64 + 0.5),
                H - BOTTOM + 16.0,
                esc(name)
            );
        }
        for (i, (name, values)) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            for (g, v) in values.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let x = LEFT + gw * g as f64 + gw * 0.1 + bw * i as f64;
                let cx = x + bw * 0.475;
                let (ya, yb) = (f.y(*v), f.y(f.y0.max(0.0)));
                let _ = writeln!(
                    out,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
                    ya.min(yb),
                    bw * 0.95,
                    (yb - ya).abs(),
                );
                let mut label_y = ya.min(yb);
                if let Some(&(lo, hi)) = self.whiskers.get(i).and_then(|w| w.get(g))
                    && lo.is_finite()
                    && hi.is_finite()
                {
                    let (y_lo, y_hi, cap) = (f.y(lo), f.y(hi), bw * 0.15);
                    let _ = writeln!(
                        out,
                        r##"<path d="M{cx:.1},{y_lo:.1}V{y_hi:.1}M{:.1},{y_lo:.1}H{:.1}M{:.1},{y_hi:.1}H{:.1}" stroke="#222" fill="none"/>"##,
                        cx - cap,
                        cx + cap,
                        cx - cap,
                        cx + cap
                    );
                    label_y = label_y.min(y_hi);
                }
                let _ = writeln!(
                    out,
                    r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v:.3}</text>"#,
                    label_y - 3.0
                );
            }
            legend(&mut out, i, name, false);
        }
        references(&mut out, &f, &self.references);
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_range_covers_data() {
        let (lo, hi, step) = nice_range(0.43, 0.71);
        assert!(lo <= 0.43 && hi >= 0.71 && step > 0.0);
        assert!((hi - lo) / step <= 10.0);
    }

    #[test]
    fn charts_render_every_series_and_escape_text() {
        let line = LineChart {
            title: "a <b>".into(),
            x_label: "epoch".into(),
            y_label: "NDCG@10".into(),
            series: vec![
                Series {
                    name: "test".into(),
                    points: vec![(1.0, 0.5), (2.0, 0.6)],
                    dashed: false,
                },
                Series {
                    name: "train".into(),
                    points: vec![(1.0, f64::NAN)],
                    dashed: true,
                },
            ],
            references: vec![("random".into(), 0.4544)],
        }
        .render();
        assert!(line.starts_with("<svg") && line.ends_with("</svg>\n"));
        assert!(line.contains("a &lt;b&gt;"));
        assert_eq!(line.matches("<polyline").count(), 2);
        assert_eq!(line.matches("<circle").count(), 2, "NaN points are skipped");
        let bars = BarChart {
            title: "bars".into(),
            y_label: "NDCG@10".into(),
            groups: vec!["x".into(), "y".into()],
            series: vec![("s".into(), vec![0.5, f64::NAN])],
            whiskers: vec![vec![(0.4, 0.6), (f64::NAN, f64::NAN)]],
            references: vec![],
        }
        .render();
        assert_eq!(bars.matches("<rect").count(), 2, "background + one bar");
        assert_eq!(
            bars.matches("<path").count(),
            1,
            "one whisker for the one bar"
        );
    }
}
