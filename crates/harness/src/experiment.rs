//! Experiments are TOML files under `experiments/`: datasets × backbones × methods × LLMs, with
//! per-scale overrides, so a researcher adds a row or a method without touching code.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Which paper artefact a report is laid out against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Table1,
    Fig2Summarization,
    Fig2Grid,
    Fig3Pbf,
    Scaling,
    /// AGP as the paper describes it beside AGP as the reference code runs it.
    ReferenceCode,
    /// Rows compared side by side as bars (any set of methods, e.g. the baselines a reviewer
    /// asks for).
    Methods,
    /// The paper's open questions: direct rerank-prompt optimization against AGP, and NDCG@10
    /// as history titles are masked (`hist_mask`), one line per method kind.
    OpenQuestions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// Bundled default: ml-latest-small, a few dozen users, recorded LLM responses.
    Fixture,
    /// More users and epochs on the same data; needs a live (local or API) model.
    Small,
    /// The paper's protocol: 300 test users, 100 training users, 10 epochs, four API LLMs.
    Paper,
}

impl std::str::FromStr for Scale {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fixture" => Ok(Scale::Fixture),
            "small" => Ok(Scale::Small),
            "paper" => Ok(Scale::Paper),
            other => bail!("unknown scale {other:?} (known: fixture, small, paper)"),
        }
    }
}

impl Scale {
    pub const ALL: [Scale; 3] = [Scale::Fixture, Scale::Small, Scale::Paper];

    pub fn name(self) -> &'static str {
        match self {
            Scale::Fixture => "fixture",
            Scale::Small => "small",
            Scale::Paper => "paper",
        }
    }
}

/// One experiment file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    pub name: String,
    pub title: String,
    pub layout: Layout,
    /// What the experiment shows, printed at the top of the report.
    #[serde(default)]
    pub description: String,
    pub methods: Vec<toml::Table>,
    /// What an unusable or partial answer scores, for every row alike: `rank-k` (default, the
    /// reference code's rule) or `backbone` (completed in backbone order). Reports show the
    /// other rule's table too.
    #[serde(default)]
    pub unusable_answers: agp::AnswerScoring,
    /// The order every method row but Base is shown its candidates in (`backbone`,
    /// `reversed` or `shuffled:<n>`), or a list of them: each row then runs once per order, as
    /// a report cell of its own (see [`agp::order`]). Absent: the backbone's order, without
    /// the first-shown statistic.
    #[serde(default)]
    pub candidate_order: Option<toml::Value>,
    /// Per scale, keys merged over `scales.toml` beside the experiment file.
    #[serde(default)]
    pub scales: BTreeMap<String, toml::Table>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleSettings {
    pub datasets: Vec<String>,
    pub backbones: Vec<String>,
    /// LLM specs (`replay`, `local:<model>`, `openai:<model>`, ...); `--llm` overrides.
    pub llms: Vec<String>,
    pub test_users: usize,
    pub train_users: usize,
    pub valid_users: usize,
    /// Take fewer eligible users than asked when the data has too few (recorded in the report).
    #[serde(default)]
    pub take_available_users: bool,
    /// Backbone training epochs by backbone name.
    #[serde(default)]
    pub backbone_epochs: BTreeMap<String, usize>,
    /// Other backbone hyper-parameters by backbone name and config field, e.g.
    /// `backbone_settings.lightgcn = { eval_every = 1, patience = 2 }`.
    #[serde(default)]
    pub backbone_settings: BTreeMap<String, toml::Table>,
    /// Keys merged into every method table of the given `kind` (e.g. `agp = { epochs = 2 }`).
    #[serde(default)]
    pub method_overrides: BTreeMap<String, toml::Table>,
    /// Keys merged into every method table.
    #[serde(default)]
    pub all_methods: toml::Table,
    /// Cap on generated tokens per LLM call; [`DEFAULT_MAX_TOKENS`] where a scale sets none
    /// (the reference code sets none: the provider's default).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The decoding every call is sent with where its method's stage sets none, e.g.
    /// `decoding = { temperature = 0.0, top_p = 1.0, seed = 0 }`. A field left out is
    /// `agp_llm::Sampling::DECLARED`'s (greedy, top-p 1, seed 0): a field is never left to the
    /// provider's default.
    #[serde(default)]
    pub decoding: agp::Decoding,
    /// Seeds the experiment runs at this scale (1..=seeds, each a backbone seed and user draw,
    /// and the seed of every learned method); `--seeds` replaces it. `None` is one seed.
    #[serde(default)]
    pub seeds: Option<u64>,
}

/// `max_tokens` where a scale sets none: room for a chain of thought or a reasoning model's
/// hidden tokens, and a bound on what one answer can cost.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

impl ScaleSettings {
    /// What every chat call is sent with unless its stage sets a field: nothing left unset.
    pub fn sampling(&self) -> agp_llm::Sampling {
        let d = &self.decoding;
        agp_llm::Sampling {
            temperature: d.temperature,
            max_tokens: Some(self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
            seed: d.seed,
            top_p: d.top_p,
        }
        .resolved(&agp_llm::Sampling::DECLARED)
    }
}

/// An experiment resolved for one scale.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub title: String,
    pub description: String,
    pub layout: Layout,
    pub scale: Scale,
    /// The experiment's rule for unusable and partial answers (see [`agp::AnswerScoring`]).
    pub scoring: agp::AnswerScoring,
    pub settings: ScaleSettings,
    /// Method rows with the scale's overrides merged in, each checked into its typed config.
    pub methods: Vec<MethodRow>,
    /// Labels of the rows [`Experiment::retain_methods`] dropped, so a report of a subset
    /// says what it lacks.
    pub left_out: Vec<String>,
}

/// Which item text a method's prompts show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ItemText {
    /// Titles, as the paper.
    #[default]
    Title,
    /// The reference code's rich text (title; cast; category).
    Rich,
}

/// The row key that picks the item text a method sees; not a method setting.
pub const ITEM_TEXT_KEY: &str = "item_text";

/// What a row runs: a built-in method, a method in any language behind the external protocol
/// (`kind = "external"`), or a kind a program registered ([`crate::method`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum MethodSpec {
    // First: its `registered` field is what tells it apart when a report is read back.
    Registered(crate::method::Registered),
    Builtin(agp::MethodConfig),
    External(crate::external::ExternalConfig),
}

/// One method row of an experiment, resolved for a scale.
#[derive(Debug, Clone)]
pub struct MethodRow {
    pub label: String,
    pub kind: String,
    pub item_text: ItemText,
    /// The typed method, checked when the experiment loads (before anything trains).
    pub config: MethodSpec,
    /// The row as merged, every key it ran with (reports list them).
    pub table: toml::Table,
    /// The candidate order the row runs under, when the experiment declares one (the label
    /// then carries it, and `table` has it as `candidate_order`).
    pub order: Option<agp::CandidateOrder>,
}

/// The key under which a row's table records its candidate order.
pub const CANDIDATE_ORDER_KEY: &str = "candidate_order";

/// The experiment's `candidate_order`: one order or a non-empty list of distinct ones.
fn candidate_orders(value: &toml::Value, path: &Path) -> Result<Vec<agp::CandidateOrder>> {
    let bad = |got: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "{}: {CANDIDATE_ORDER_KEY} = {got}: expected \"backbone\", \"reversed\", \
             \"shuffled:<n>\" with n ≥ 1, or a non-empty list of distinct ones",
            path.display()
        )
    };
    let items = match value {
        toml::Value::Array(a) if !a.is_empty() => a.clone(),
        toml::Value::String(_) => vec![value.clone()],
        other => return Err(bad(other)),
    };
    let mut orders = Vec::new();
    for item in &items {
        let order: agp::CandidateOrder = item
            .as_str()
            .ok_or_else(|| bad(item))?
            .parse()
            .map_err(|_| bad(item))?;
        if orders.contains(&order) {
            return Err(bad(value));
        }
        orders.push(order);
    }
    Ok(orders)
}

impl MethodRow {
    fn parse(
        table: toml::Table,
        path: &Path,
        i: usize,
        kinds: &crate::method::Methods,
    ) -> Result<Self> {
        let label = table["label"].as_str().unwrap_or("?").to_string();
        let kind = table["kind"].as_str().unwrap_or("?").to_string();
        let at = || format!("{}: methods[{i}] {label:?} (kind {kind})", path.display());
        let item_text = match table.get(ITEM_TEXT_KEY) {
            None => ItemText::Title,
            Some(v) => match v.as_str() {
                Some("title") => ItemText::Title,
                Some("rich") => ItemText::Rich,
                _ => bail!(
                    "{}: {ITEM_TEXT_KEY} = {v}: expected \"title\" or \"rich\"",
                    at()
                ),
            },
        };
        let mut settings = table.clone();
        settings.remove(ITEM_TEXT_KEY);
        let config = if let Some(k) = kinds.get(&kind) {
            settings.remove("kind");
            settings.remove("label");
            let method = k.resolve(&settings).with_context(at)?;
            MethodSpec::Registered(crate::method::Registered {
                kind: kind.clone(),
                settings: method.settings(),
                method: Some(method),
            })
        } else if kind == "external" {
            settings.remove("kind");
            let c: crate::external::ExternalConfig =
                toml::Value::Table(settings).try_into().with_context(at)?;
            c.validate_settings()
                .map_err(anyhow::Error::msg)
                .with_context(at)?;
            MethodSpec::External(c)
        } else {
            let c: agp::MethodConfig = toml::Value::Table(settings).try_into().with_context(at)?;
            // Every range that needs no data is checked here, as the file loads: a bad value
            // is reported before any dataset is read or backbone trained.
            c.validate_settings()
                .map_err(anyhow::Error::msg)
                .with_context(at)?;
            MethodSpec::Builtin(c)
        };
        Ok(Self {
            label,
            kind,
            item_text,
            config,
            table,
            order: None,
        })
    }

    /// Calls no LLM: runs once per (dataset, backbone), not once per LLM.
    pub fn is_llm_free(&self) -> bool {
        match &self.config {
            MethodSpec::Builtin(c) => matches!(c, agp::MethodConfig::Base(_)),
            MethodSpec::Registered(r) => r.method.as_ref().is_some_and(|m| !m.uses_llm()),
            MethodSpec::External(_) => false,
        }
    }
}

impl Experiment {
    /// Reads `path` and the shared `scales.toml` in the same folder, resolved for `scale`.
    pub fn load(path: &Path, scale: Scale) -> Result<Self> {
        Self::load_with(path, scale, &crate::method::Methods::default())
    }

    /// As [`Experiment::load`], knowing the method kinds of `kinds` besides the built-in ones.
    pub fn load_with(path: &Path, scale: Scale, kinds: &crate::method::Methods) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading experiment file {}", path.display()))?;
        let file: ExperimentFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let shared_path = path.with_file_name("scales.toml");
        let mut shared: toml::Table = match std::fs::read_to_string(&shared_path) {
            Ok(t) => {
                toml::from_str(&t).with_context(|| format!("parsing {}", shared_path.display()))?
            }
            Err(_) => toml::Table::new(),
        };
        let mut table = match shared.remove(scale.name()) {
            Some(toml::Value::Table(t)) => t,
            Some(_) => bail!(
                "{}: [{}] is not a table",
                shared_path.display(),
                scale.name()
            ),
            None => toml::Table::new(),
        };
        let own = file.scales.get(scale.name());
        if table.is_empty() && own.is_none() {
            bail!(
                "{}: no settings for scale {} (neither [scales.{}] nor {})",
                path.display(),
                scale.name(),
                scale.name(),
                shared_path.display()
            );
        }
        if let Some(own) = own {
            merge(&mut table, own);
        }
        let settings: ScaleSettings = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("{}: settings of scale {}", path.display(), scale.name()))?;
        settings
            .decoding
            .validate(("decoding.temperature", "decoding.top_p"))
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{}: settings of scale {}", path.display(), scale.name()))?;
        let orders = file
            .candidate_order
            .as_ref()
            .map(|v| candidate_orders(v, path))
            .transpose()?;
        let mut methods = Vec::new();
        for (i, m) in file.methods.iter().enumerate() {
            let kind = m.get("kind").and_then(|v| v.as_str()).with_context(|| {
                format!("{}: methods[{i}] has no string `kind`", path.display())
            })?;
            if m.get("label").and_then(|v| v.as_str()).is_none() {
                bail!(
                    "{}: methods[{i}] (kind {kind}) has no string `label`",
                    path.display()
                );
            }
            let mut own = m.clone();
            // `only_at = ["paper"]`: a row too costly to record for the bundled default.
            if let Some(only) = own.remove("only_at") {
                let scales = only.as_array().with_context(|| {
                    format!(
                        "{}: methods[{i}].only_at is not a list of scale names",
                        path.display()
                    )
                })?;
                if !scales.iter().any(|v| v.as_str() == Some(scale.name())) {
                    continue;
                }
            }
            let at_scale = match own.remove("at_scale") {
                Some(toml::Value::Table(t)) => t,
                Some(_) => bail!("{}: methods[{i}].at_scale is not a table", path.display()),
                None => toml::Table::new(),
            };
            let mut merged = settings.all_methods.clone();
            if let Some(o) = settings.method_overrides.get(kind) {
                merge(&mut merged, o);
            }
            // The method's own keys win over scale-wide defaults, so a grid cell keeps its batch;
            // its `at_scale.<scale>` keys win over everything.
            merge(&mut merged, &own);
            match at_scale.get(scale.name()) {
                Some(toml::Value::Table(t)) => merge(&mut merged, t),
                Some(_) => bail!(
                    "{}: methods[{i}].at_scale.{} is not a table",
                    path.display(),
                    scale.name()
                ),
                None => {}
            }
            let row = MethodRow::parse(merged, path, i, kinds)?;
            match &orders {
                Some(orders) if !row.is_llm_free() => {
                    for &order in orders {
                        let mut r = row.clone();
                        r.label = order.label(&row.label);
                        r.order = Some(order);
                        r.table
                            .insert(CANDIDATE_ORDER_KEY.into(), order.to_string().into());
                        methods.push(r);
                    }
                }
                _ => methods.push(row),
            }
        }
        let labels: Vec<&str> = methods.iter().map(|m| m.label.as_str()).collect();
        for (i, l) in labels.iter().enumerate() {
            if labels[..i].contains(l) {
                bail!("{}: two methods are labelled {l:?}", path.display());
            }
        }
        Ok(Experiment {
            name: file.name,
            title: file.title,
            description: file.description,
            layout: file.layout,
            scale,
            scoring: file.unusable_answers,
            settings,
            methods,
            left_out: Vec::new(),
        })
    }

    /// Keeps the rows named in `names` (each a row's kind or label, case-insensitive), in the
    /// file's order, so one can re-run or record a subset of a table without editing it. Returns
    /// the names that matched no row; the caller decides whether that is an error, since with
    /// several experiments a name needs to match in only one of them.
    pub fn retain_methods(&mut self, names: &[String]) -> Vec<String> {
        let matches = |row: &MethodRow, n: &str| {
            row.kind.eq_ignore_ascii_case(n) || row.label.eq_ignore_ascii_case(n)
        };
        let unmatched = names
            .iter()
            .filter(|n| !self.methods.iter().any(|r| matches(r, n)))
            .cloned()
            .collect();
        let (kept, dropped): (Vec<MethodRow>, Vec<MethodRow>) = std::mem::take(&mut self.methods)
            .into_iter()
            .partition(|r| names.iter().any(|n| matches(r, n)));
        self.methods = kept;
        self.left_out.extend(dropped.into_iter().map(|r| r.label));
        unmatched
    }
}

/// Overlay `top` on `base`; nested tables merge key by key.
fn merge(base: &mut toml::Table, top: &toml::Table) {
    for (k, v) in top {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("e.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::write(dir.join("scales.toml"), SHARED).unwrap();
        p
    }

    const SHARED: &str = r#"
[fixture]
datasets = ["ml-latest-small"]
backbones = ["lightgcn", "sasrec"]
llms = ["replay"]
test_users = 20
train_users = 10
valid_users = 10
method_overrides.agp = { epochs = 3, batch_size = 10 }
"#;

    const BASE: &str = r#"
name = "t"
title = "T"
layout = "table1"
[[methods]]
label = "Base"
kind = "base"
[[methods]]
label = "AGP b5"
kind = "agp"
batch_size = 5
at_scale.paper = { batch_size = 20 }
[[methods]]
label = "AGP b20"
kind = "agp"
batch_size = 20
only_at = ["paper"]
[scales.fixture]
backbones = ["lightgcn"]
all_methods = { history_length = 5 }
method_overrides.agp = { epochs = 2 }
"#;

    #[test]
    fn retain_methods_keeps_rows_by_kind_or_label_in_file_order_and_names_the_misses() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), BASE);
        let labels = |e: &Experiment| {
            e.methods
                .iter()
                .map(|m| m.label.clone())
                .collect::<Vec<_>>()
        };
        let mut e = Experiment::load(&path, Scale::Fixture).unwrap();
        assert_eq!(labels(&e), ["Base", "AGP b5"]);
        let missed = e.retain_methods(&["agp B5".into(), "BASE".into(), "llm-cot".into()]);
        assert_eq!(labels(&e), ["Base", "AGP b5"]);
        assert_eq!(missed, ["llm-cot"]);
        let mut e = Experiment::load(&path, Scale::Fixture).unwrap();
        assert!(e.retain_methods(&["agp".into()]).is_empty());
        assert_eq!(labels(&e), ["AGP b5"]);
        assert_eq!(e.left_out, ["Base"]);
        let mut e = Experiment::load(&path, Scale::Fixture).unwrap();
        assert!(e.retain_methods(&["base".into()]).is_empty());
        assert_eq!(labels(&e), ["Base"]);
    }

    #[test]
    fn an_out_of_range_setting_fails_as_the_file_loads_naming_file_row_and_key() {
        // Loading reads no data and trains nothing: the error comes before either.
        let dir = tempfile::tempdir().unwrap();
        for (text, key) in [
            (
                BASE.replace("batch_size = 5\n", "batch_size = 5\nhist_mask = 1.5\n"),
                "hist_mask",
            ),
            (
                BASE.replace("batch_size = 5\n", "batch_size = 5\nepochs = 0\n"),
                "epochs",
            ),
            (
                BASE.replace("batch_size = 5\n", "batch_size = 5\nn_train_users = 3\n"),
                "batch_size",
            ),
        ] {
            let e = Experiment::load(&write(dir.path(), &text), Scale::Fixture).unwrap_err();
            let msg = format!("{e:#}");
            assert!(
                msg.contains("e.toml: methods[1] \"AGP b5\" (kind agp)") && msg.contains(key),
                "{msg}"
            );
        }
        let text = SHARED.replace(
            "llms = [\"replay\"]",
            "llms = [\"replay\"]\ndecoding = { temperature = 3.0 }",
        );
        std::fs::write(dir.path().join("e.toml"), BASE).unwrap();
        std::fs::write(dir.path().join("scales.toml"), text).unwrap();
        let msg = format!(
            "{:#}",
            Experiment::load(&dir.path().join("e.toml"), Scale::Fixture).unwrap_err()
        );
        assert!(msg.contains("decoding.temperature"), "{msg}");
    }

    #[test]
    fn a_bad_method_row_fails_when_the_file_loads_naming_row_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let typo = BASE.replace("batch_size = 5\n", "batch_sise = 5\n");
        let e = Experiment::load(&write(dir.path(), &typo), Scale::Fixture).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("e.toml: methods[1] \"AGP b5\" (kind agp)"),
            "{msg}"
        );
        assert!(msg.contains("batch_sise"), "{msg}");
        let bad_text = BASE.replace("kind = \"base\"", "kind = \"base\"\nitem_text = \"html\"");
        let msg = format!(
            "{:#}",
            Experiment::load(&write(dir.path(), &bad_text), Scale::Fixture).unwrap_err()
        );
        assert!(
            msg.contains("methods[0] \"Base\"") && msg.contains("\"rich\""),
            "{msg}"
        );
    }

    #[test]
    fn candidate_order_runs_every_row_but_base_once_per_order() {
        let dir = tempfile::tempdir().unwrap();
        let text = BASE.replace(
            "layout = \"table1\"",
            "layout = \"table1\"\ncandidate_order = [\"backbone\", \"reversed\", \"shuffled:3\"]",
        );
        let e = Experiment::load(&write(dir.path(), &text), Scale::Fixture).unwrap();
        let rows: Vec<(&str, Option<String>)> = e
            .methods
            .iter()
            .map(|m| (m.label.as_str(), m.order.map(|o| o.to_string())))
            .collect();
        assert_eq!(
            rows,
            [
                ("Base", None),
                ("AGP b5", Some("backbone".into())),
                ("AGP b5 [reversed]", Some("reversed".into())),
                ("AGP b5 [shuffled:3]", Some("shuffled:3".into())),
            ]
        );
        let shuffled = &e.methods[3];
        assert_eq!(
            shuffled.table[CANDIDATE_ORDER_KEY].as_str(),
            Some("shuffled:3")
        );
        assert_eq!(
            shuffled.config, e.methods[1].config,
            "the method's own settings are the same"
        );
        let one = BASE.replace(
            "layout = \"table1\"",
            "layout = \"table1\"\ncandidate_order = \"reversed\"",
        );
        let e = Experiment::load(&write(dir.path(), &one), Scale::Fixture).unwrap();
        let labels: Vec<&str> = e.methods.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["Base", "AGP b5 [reversed]"]);
        let plain = Experiment::load(&write(dir.path(), BASE), Scale::Fixture).unwrap();
        assert!(plain.methods.iter().all(|m| m.order.is_none()));
        assert!(
            !plain.methods[1].table.contains_key(CANDIDATE_ORDER_KEY),
            "no order declared, no key"
        );
    }

    #[test]
    fn a_bad_candidate_order_names_the_key_and_the_allowed_values() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "\"shuffled:0\"",
            "\"shuffled\"",
            "\"random\"",
            "3",
            "[]",
            "[\"reversed\", \"reversed\"]",
            "[\"backbone\", 2]",
        ] {
            let text = BASE.replace(
                "layout = \"table1\"",
                &format!("layout = \"table1\"\ncandidate_order = {bad}"),
            );
            let msg = format!(
                "{:#}",
                Experiment::load(&write(dir.path(), &text), Scale::Fixture).unwrap_err()
            );
            assert!(
                msg.contains("e.toml: candidate_order = ")
                    && msg.contains("\"shuffled:<n>\" with n ≥ 1"),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn overrides_merge_with_method_keys_winning() {
        let dir = tempfile::tempdir().unwrap();
        let e = Experiment::load(&write(dir.path(), BASE), Scale::Fixture).unwrap();
        assert_eq!(e.methods.len(), 2, "the paper-only row is skipped");
        let agp = &e.methods[1];
        assert_eq!(agp.table["epochs"].as_integer(), Some(2));
        assert_eq!(
            agp.table["batch_size"].as_integer(),
            Some(5),
            "the method's own key wins"
        );
        assert_eq!(agp.table["history_length"].as_integer(), Some(5));
        assert!(
            e.methods[0].table.get("epochs").is_none(),
            "agp overrides stay on agp"
        );
    }

    #[test]
    fn missing_scale_and_bad_methods_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Experiment::load(&write(dir.path(), BASE), Scale::Paper).unwrap_err();
        assert!(
            format!("{err:#}").contains("no settings for scale paper"),
            "{err:#}"
        );
        let dup = BASE.replace("label = \"AGP b5\"", "label = \"Base\"");
        let err = Experiment::load(&write(dir.path(), &dup), Scale::Fixture).unwrap_err();
        assert!(
            format!("{err:#}").contains("two methods are labelled \"Base\""),
            "{err:#}"
        );
        let unknown = BASE.replace("layout = \"table1\"", "layout = \"table1\"\nbogus = 1");
        let err = Experiment::load(&write(dir.path(), &unknown), Scale::Fixture).unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }
}
