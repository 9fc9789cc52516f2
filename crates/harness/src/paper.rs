//! The paper's published numbers (WSDM'26 camera-ready), printed beside ours in every report.
//! Figures 2–3 were read from the PDF's bar labels (exact) or plot pixels (±0.003).

/// Paper datasets, in table order.
pub const DATASETS: [&str; 3] = ["amazon-movies-tv", "yelp", "goodreads"];
/// Paper LLMs, in table order, with the API model id we use for each.
pub const LLMS: [(&str, &str); 4] = [
    ("4o", "gpt-4o"),
    ("4o-Mini", "gpt-4o-mini"),
    ("o3-Mini", "o3-mini"),
    ("DeepSeek", "deepseek-chat"),
];

/// The methods of the paper's Table 1, matched to our typed methods (never by a kind string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperMethod {
    Base,
    LlmDir,
    LlmCot,
    Agp,
}

impl PaperMethod {
    /// The paper's row for a method of ours, if it has one.
    pub fn of(cfg: &agp::MethodConfig) -> Option<Self> {
        use agp::MethodConfig as M;
        match cfg {
            M::Base(_) => Some(Self::Base),
            M::LlmDir(_) => Some(Self::LlmDir),
            M::LlmCot(_) => Some(Self::LlmCot),
            M::Agp(_) => Some(Self::Agp),
            _ => None,
        }
    }

    /// How the reports print it (the kinds' names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::LlmDir => "llm-dir",
            Self::LlmCot => "llm-cot",
            Self::Agp => "agp",
        }
    }
}

use PaperMethod::{Agp, Base, LlmCot, LlmDir};

/// Table 1, NDCG@10: (backbone, method, paper LLM label or "" for Base, [AMZ, YELP, GR]).
pub const TABLE1: &[(&str, PaperMethod, &str, [f64; 3])] = &[
    ("lightgcn", Base, "", [0.513, 0.501, 0.474]),
    ("lightgcn", LlmDir, "4o", [0.547, 0.491, 0.555]),
    ("lightgcn", LlmCot, "4o", [0.551, 0.491, 0.560]),
    ("lightgcn", Agp, "4o", [0.553, 0.502, 0.572]),
    ("lightgcn", LlmDir, "4o-Mini", [0.553, 0.484, 0.548]),
    ("lightgcn", LlmCot, "4o-Mini", [0.553, 0.481, 0.547]),
    ("lightgcn", Agp, "4o-Mini", [0.561, 0.493, 0.553]),
    ("lightgcn", LlmDir, "o3-Mini", [0.542, 0.538, 0.540]),
    ("lightgcn", LlmCot, "o3-Mini", [0.543, 0.531, 0.542]),
    ("lightgcn", Agp, "o3-Mini", [0.558, 0.541, 0.548]),
    ("lightgcn", LlmDir, "DeepSeek", [0.546, 0.496, 0.533]),
    ("lightgcn", LlmCot, "DeepSeek", [0.547, 0.498, 0.544]),
    ("lightgcn", Agp, "DeepSeek", [0.551, 0.504, 0.564]),
    ("sasrec", Base, "", [0.659, 0.528, 0.599]),
    ("sasrec", LlmDir, "4o", [0.671, 0.510, 0.624]),
    ("sasrec", LlmCot, "4o", [0.664, 0.521, 0.610]),
    ("sasrec", Agp, "4o", [0.696, 0.530, 0.636]),
    ("sasrec", LlmDir, "4o-Mini", [0.654, 0.502, 0.631]),
    ("sasrec", LlmCot, "4o-Mini", [0.656, 0.507, 0.615]),
    ("sasrec", Agp, "4o-Mini", [0.658, 0.517, 0.627]),
    ("sasrec", LlmDir, "o3-Mini", [0.658, 0.527, 0.587]),
    ("sasrec", LlmCot, "o3-Mini", [0.663, 0.528, 0.585]),
    ("sasrec", Agp, "o3-Mini", [0.683, 0.541, 0.595]),
    ("sasrec", LlmDir, "DeepSeek", [0.648, 0.512, 0.622]),
    ("sasrec", LlmCot, "DeepSeek", [0.655, 0.519, 0.610]),
    ("sasrec", Agp, "DeepSeek", [0.687, 0.523, 0.636]),
];

/// Fig. 2 (left), AMZ / GPT-4o / SASRec (inferred): NDCG@10 per epoch 1..=10.
pub const FIG2_TRAIN_NO_SUM: [f64; 10] = [
    0.868, 0.861, 0.875, 0.877, 0.878, 0.881, 0.889, 0.891, 0.875, 0.878,
];
pub const FIG2_TEST_NO_SUM: [f64; 10] = [
    0.608, 0.61, 0.621, 0.626, 0.647, 0.617, 0.612, 0.579, 0.588, 0.560,
];
pub const FIG2_TRAIN_SUM: [f64; 10] = [
    0.610, 0.611, 0.625, 0.637, 0.638, 0.641, 0.659, 0.651, 0.655, 0.668,
];
pub const FIG2_TEST_SUM: [f64; 10] = [
    0.613, 0.622, 0.623, 0.636, 0.659, 0.685, 0.696, 0.691, 0.688, 0.675,
];

/// Fig. 2 (right): NDCG@10 by history length (rows 5, 10, 20) × batch size (columns 5, 10, 20).
pub const FIG2_GRID_HISTORY: [usize; 3] = [5, 10, 20];
pub const FIG2_GRID_BATCH: [usize; 3] = [5, 10, 20];
pub const FIG2_GRID: [[f64; 3]; 3] = [
    [0.663, 0.696, 0.675],
    [0.665, 0.670, 0.690],
    [0.680, 0.675, 0.688],
];

/// Fig. 3: per dataset (AMZ, YELP, GR): (NDCG w/o PBF, NDCG w/ PBF, rank w/o PBF, rank w/ PBF).
pub const FIG3_PBF: [(f64, f64, f64, f64); 3] = [
    (0.684, 0.696, 3.2, 3.1),
    (0.518, 0.530, 4.9, 4.6),
    (0.628, 0.636, 3.5, 3.4),
];

/// §3.4: AMZ / GPT-4o, NDCG@10 with 100 vs 700 training users.
pub const SCALING: (f64, f64) = (0.696, 0.705);

/// Paper value of a Table 1 cell, if the dataset is one of the paper's.
pub fn table1(backbone: &str, method: PaperMethod, llm_label: &str, dataset: &str) -> Option<f64> {
    let col = DATASETS.iter().position(|d| *d == dataset)?;
    TABLE1
        .iter()
        .find(|(b, m, l, _)| *b == backbone && *m == method && (method == Base || *l == llm_label))
        .map(|row| row.3[col])
}

/// Paper label ("4o", ...) of an API model id, if it is one of the paper's LLMs.
pub fn llm_label(model_id: &str) -> Option<&'static str> {
    // Longest id first: "gpt-4o-mini-…" also starts with "gpt-4o".
    LLMS.iter()
        .filter(|(_, id)| model_id.starts_with(id))
        .max_by_key(|(_, id)| id.len())
        .map(|(label, _)| *label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_gains_match_the_abstract() {
        // The abstract's per-cell gains are best AGP over Base; a typo in the table shows here.
        let gain = |b: &str, col: usize| {
            let base = TABLE1.iter().find(|r| r.0 == b && r.1 == Base).unwrap().3[col];
            let best = TABLE1
                .iter()
                .filter(|r| r.0 == b && r.1 == Agp)
                .map(|r| r.3[col])
                .fold(0.0, f64::max);
            (100.0 * (best / base - 1.0) * 100.0).round() / 100.0
        };
        assert_eq!(
            [
                gain("lightgcn", 0),
                gain("lightgcn", 1),
                gain("lightgcn", 2)
            ],
            [9.36, 7.98, 20.68]
        );
        assert_eq!(
            [gain("sasrec", 0), gain("sasrec", 1), gain("sasrec", 2)],
            [5.61, 2.46, 6.18]
        );
    }

    #[test]
    fn lookups() {
        assert_eq!(table1("sasrec", Agp, "4o", "amazon-movies-tv"), Some(0.696));
        assert_eq!(table1("lightgcn", Base, "", "goodreads"), Some(0.474));
        assert_eq!(table1("lightgcn", Agp, "4o", "ml-latest-small"), None);
        assert_eq!(llm_label("gpt-4o-mini-2024-07-18"), Some("4o-Mini"));
        assert_eq!(llm_label("gpt-4o-2024-08-06"), Some("4o"));
        assert_eq!(llm_label("smollm2-135m"), None);
    }
}
