//! `cargo xtask reproduce <experiment>`: every table and figure of the paper from one command.
//!
//! No flags means the bundled default: fixture scale on ml-latest-small, both backbones trained
//! natively and deterministically, LLM calls replayed from the recordings under `fixtures/llm/`.

mod experiment;
mod paper;
mod pipeline;
mod report;
mod stats;
mod svg;

use crate::ci::workspace_root;
use agp_llm::factory::{LlmOptions, LlmSpec, build_model};
use agp_llm::store::RecordMode;
use anyhow::{Context, Result, bail};
use experiment::{Experiment, Scale};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The experiments `all` runs, in this order.
const ALL: [&str; 5] = [
    "table1",
    "fig2-summarization",
    "fig2-grid",
    "fig3-pbf",
    "scaling",
];

#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// table1 | fig2-summarization | fig2-grid | fig3-pbf | scaling | all, or the name of any
    /// file under experiments/ (without `.toml`), or a path to an experiment file.
    #[arg(default_value = "table1")]
    pub experiment: String,
    /// fixture: the bundled default (minutes, recorded LLM); small: more users on the same data;
    /// paper: the paper's protocol (needs an API key, asks for --yes).
    #[arg(long, value_enum, default_value = "fixture")]
    pub scale: Scale,
    /// replay | local:<model> | openai:<model> | deepseek:<model> | http:<url>[#model]
    /// [default: the experiment's LLMs for this scale].
    #[arg(long)]
    pub llm: Option<String>,
    /// Call the model for requests without a recording and append them to the recordings.
    #[arg(long)]
    pub record: bool,
    /// Repeat the whole pipeline (backbone seed and user draw) with this many seeds.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// LLM calls in flight at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Threads of an in-process model.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Compare with the committed reports instead of writing them; fail on any difference.
    #[arg(long)]
    pub check: bool,
    /// Start a run that calls a paid API.
    #[arg(long)]
    pub yes: bool,
    /// Where reports go [default: reports/ in the workspace].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Recordings file [default: fixtures/llm/<dataset set>.jsonl].
    #[arg(long)]
    pub recordings: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

fn experiment_path(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.extension().is_some_and(|e| e == "toml") {
        return p.to_path_buf();
    }
    workspace_root()
        .join("experiments")
        .join(format!("{name}.toml"))
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let names: Vec<String> = if args.experiment == "all" {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        vec![args.experiment.clone()]
    };
    let mut failures = Vec::new();
    for name in &names {
        let exp = Experiment::load(&experiment_path(name), args.scale)?;
        match run_one(&exp, &args) {
            Ok(()) => {}
            Err(e) if args.check => {
                eprintln!("{name}: {e:#}");
                failures.push(name.clone());
            }
            Err(e) => return Err(e),
        }
    }
    if !failures.is_empty() {
        bail!(
            "reports differ from the committed ones: {}",
            failures.join(", ")
        );
    }
    Ok(())
}

fn default_recordings() -> PathBuf {
    workspace_root().join("fixtures/llm/recordings.jsonl")
}

fn run_one(exp: &Experiment, args: &ReproduceArgs) -> Result<()> {
    let t0 = Instant::now();
    let progress = !args.quiet;
    let llm_specs: Vec<String> = match &args.llm {
        Some(l) => vec![l.clone()],
        None => exp.settings.llms.clone(),
    };
    let paid = llm_specs
        .iter()
        .any(|s| s.starts_with("openai:") || s.starts_with("deepseek:"));
    if paid {
        let plan = plan_calls(exp, &llm_specs, args.seeds)?;
        eprintln!("{plan}");
        if !args.yes {
            bail!(
                "{} at scale {} calls a paid API; re-run with --yes to start (an interrupted run \
                 resumes, and recorded calls are never paid twice)",
                exp.name,
                exp.scale.name()
            );
        }
    }
    let mode = if args.record {
        RecordMode::Auto
    } else {
        RecordMode::Replay
    };
    let recordings = args.recordings.clone().unwrap_or_else(default_recordings);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let mut cells = Vec::new();
    let mut backbone_facts = Vec::new();
    let mut provenance = BTreeMap::new();
    let mut timings: Vec<(String, f64)> = Vec::new();
    for seed in 1..=args.seeds {
        for dataset in &exp.settings.datasets {
            let ds = pipeline::load_dataset(dataset)?;
            for backbone in &exp.settings.backbones {
                let t = Instant::now();
                let b = pipeline::backbone(exp, &ds, backbone, seed, args.record, progress)?;
                timings.push((
                    format!("backbone {dataset}/{backbone} seed {seed}"),
                    t.elapsed().as_secs_f64(),
                ));
                if seed == 1 {
                    backbone_facts.push(b.facts.clone());
                }
                // Methods that need no LLM run once, not once per LLM.
                let mut ran_llm_free = std::collections::BTreeSet::new();
                for spec_text in &llm_specs {
                    let spec: LlmSpec = spec_text.parse()?;
                    let opts = LlmOptions {
                        mode,
                        recordings: Some(recordings.clone()),
                        threads: args.threads,
                        max_concurrency: Some(args.jobs),
                        ..LlmOptions::default()
                    };
                    let handle = build_model(&spec, &opts).with_context(|| {
                        format!("LLM {spec_text} (recordings {})", recordings.display())
                    })?;
                    let info = handle.model.info();
                    provenance.insert(spec_text.clone(), describe_model(&info, mode));
                    for row in &exp.methods {
                        let is_base = experiment::kind(row) == "base";
                        if is_base && !ran_llm_free.insert(experiment::label(row).to_string()) {
                            continue;
                        }
                        let t = Instant::now();
                        let cell = rt.block_on(pipeline::run_method(pipeline::MethodJob {
                            exp,
                            ds: &ds,
                            backbone: &b,
                            row,
                            llm_spec: spec_text,
                            llm: handle.model.clone(),
                            seed,
                            jobs: args.jobs,
                            progress,
                        }))?;
                        timings.push((
                            format!("{} seed {seed}", cell.label),
                            t.elapsed().as_secs_f64(),
                        ));
                        cells.push(cell);
                    }
                }
            }
        }
    }
    let facts = report::RunFacts {
        experiment: exp.name.clone(),
        scale: exp.scale.name().to_string(),
        llm_provenance: provenance,
        backbones: backbone_facts,
        seeds: (1..=args.seeds).collect(),
    };
    let rendered = report::render(exp, &facts, &cells);
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("reports"))
        .join(&exp.name);
    write_run_log(exp, &timings, t0.elapsed().as_secs_f64())?;
    if args.check {
        return check_report(&dir, &rendered.files);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Stale files (e.g. a figure of a removed cell) would survive a plain overwrite.
    for entry in std::fs::read_dir(&dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !rendered.files.contains_key(&name) && entry.path().is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    for (name, text) in &rendered.files {
        std::fs::write(dir.join(name), text)?;
    }
    eprintln!(
        "{}: wrote {} files to {} in {:.0} s",
        exp.name,
        rendered.files.len(),
        dir.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Prompt and completion tokens assumed per call for the up-front estimate: the reference
/// prompts with 5 history items and 10 candidates are ~600-800 tokens; answers are short.
const EST_PROMPT_TOKENS: f64 = 700.0;
const EST_COMPLETION_TOKENS: f64 = 200.0;

/// Upper bound of LLM calls per (LLM, method), and the cost at list prices, before a paid run.
fn plan_calls(exp: &Experiment, llms: &[String], seeds: u64) -> Result<String> {
    use std::fmt::Write;
    let s = &exp.settings;
    let cells = (s.datasets.len() * s.backbones.len()) as f64 * seeds as f64;
    let eval_users = (s.test_users + s.valid_users) as f64;
    let prices = agp_llm::usage::PriceTable::builtin();
    let mut out = format!(
        "{} at scale {}: {} dataset(s) x {} backbone(s) x {seeds} seed(s); estimated calls \
         (upper bound: every user gets feedback, every verify re-evaluates) at ~{EST_PROMPT_TOKENS} \
         prompt + {EST_COMPLETION_TOKENS} completion tokens per call:\n",
        exp.name,
        exp.scale.name(),
        s.datasets.len(),
        s.backbones.len()
    );
    let mut total_cost = 0.0;
    for llm in llms {
        let model = llm.split_once(':').map(|(_, m)| m).unwrap_or(llm);
        for row in &exp.methods {
            let cfg = pipeline::method_config(row)?;
            let calls = match &cfg {
                agp::MethodConfig::Base(_) => 0.0,
                agp::MethodConfig::LlmDir(_)
                | agp::MethodConfig::LlmCot(_)
                | agp::MethodConfig::LlmDirPointwise(_) => s.test_users as f64,
                agp::MethodConfig::Agp(c)
                | agp::MethodConfig::AgpPointwise(c)
                | agp::MethodConfig::RerankOpt(c) => {
                    let n = c.n_train_users.unwrap_or(s.train_users) as f64;
                    let per_epoch = agp::eq7_api_calls(c.batch_size, n as usize)
                        + 2.0 * n * c.verify_steps as f64
                        + 2.0 * eval_users;
                    per_epoch * c.epochs as f64
                }
            } * cells;
            let cost = prices
                .get(model)
                .map(|p| {
                    calls
                        * (EST_PROMPT_TOKENS * p.input_per_mtok
                            + EST_COMPLETION_TOKENS * p.output_per_mtok)
                        / 1e6
                })
                .unwrap_or(f64::NAN);
            if cost.is_finite() {
                total_cost += cost;
            }
            let _ = writeln!(
                out,
                "  {llm:<28} {:<28} {calls:>9.0} calls  ~${cost:.2}",
                experiment::label(row)
            );
        }
    }
    let _ = write!(out, "  total ~${total_cost:.2} at list prices");
    Ok(out)
}

fn describe_model(info: &agp_llm::ModelInfo, mode: RecordMode) -> String {
    let how = match mode {
        RecordMode::Replay => "replayed from recordings made by",
        RecordMode::Auto | RecordMode::Record => "recorded from",
        RecordMode::Off => "live",
    };
    match &info.file_sha256 {
        Some(sha) => format!(
            "{how} {} `{}` (GGUF sha256 {}…)",
            info.backend,
            info.model,
            &sha[..16.min(sha.len())]
        ),
        None => format!("{how} {} `{}`", info.backend, info.model),
    }
}

/// Timings stay out of the compared report files.
fn write_run_log(exp: &Experiment, timings: &[(String, f64)], total: f64) -> Result<()> {
    let dir = workspace_root()
        .join(".cache/runs")
        .join(&exp.name)
        .join(exp.scale.name());
    std::fs::create_dir_all(&dir)?;
    let log = serde_json::json!({
        "experiment": exp.name,
        "scale": exp.scale.name(),
        "wall_seconds": total,
        "steps": timings.iter().map(|(k, v)| serde_json::json!({"step": k, "seconds": v})).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("run-log.json"),
        serde_json::to_string_pretty(&log)? + "\n",
    )?;
    Ok(())
}

fn check_report(dir: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    let mut problems = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == *text => {}
            Ok(committed) => {
                let first = committed
                    .lines()
                    .zip(text.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| committed.lines().count().min(text.lines().count()));
                problems.push(format!(
                    "{} differs from line {}:\n  committed: {}\n  now:       {}",
                    path.display(),
                    first + 1,
                    committed.lines().nth(first).unwrap_or("<end of file>"),
                    text.lines().nth(first).unwrap_or("<end of file>")
                ));
            }
            Err(_) => problems.push(format!("{} is missing", path.display())),
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if !files.contains_key(&n) {
                problems.push(format!(
                    "{} is committed but no longer generated",
                    e.path().display()
                ));
            }
        }
    }
    if problems.is_empty() {
        eprintln!("{}: matches the committed report", dir.display());
        Ok(())
    } else {
        bail!("{}", problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_scale_plan_counts_calls_and_prices_them() {
        let exp = Experiment::load(&experiment_path("table1"), Scale::Paper).unwrap();
        let plan = plan_calls(&exp, &["openai:gpt-4o-mini".to_string()], 1).unwrap();
        // LLM-Dir: one call per test user, for 3 datasets x 2 backbones.
        assert!(
            plan.contains("LLM-Dir") && plan.contains(" 1800 calls"),
            "{plan}"
        );
        // AGP at T100, batch 10, 10 epochs, verify 1, 300 test + 100 valid users:
        // (Eq. 7: 320 + verify 200 + eval 800) x 10 epochs x 6 = 79200.
        assert!(plan.contains(" 79200 calls"), "{plan}");
        assert!(plan.contains("total ~$"), "{plan}");
    }

    #[test]
    fn every_experiment_file_loads_at_every_scale() {
        for name in ALL {
            for scale in [Scale::Fixture, Scale::Small, Scale::Paper] {
                let exp = Experiment::load(&experiment_path(name), scale)
                    .unwrap_or_else(|e| panic!("{name} at {scale:?}: {e:#}"));
                for row in &exp.methods {
                    pipeline::method_config(row)
                        .unwrap_or_else(|e| panic!("{name} at {scale:?}: {e:#}"));
                }
            }
        }
    }
}
