//! A whole experiment: plan, backbones, every cell at once over shared LLMs, then the reports
//! (or a comparison with the committed ones). What `cargo xtask reproduce` runs.
//!
//! The bundled default is the fixture scale on ml-latest-small, both backbones trained natively
//! and deterministically, LLM calls replayed from the recordings under `fixtures/llm/`.

use crate::experiment::{Experiment, ItemText, Scale};
use crate::{Workspace, pipeline, plan, report};
use agp::FailurePolicy;
use agp_llm::factory::{LlmOptions, LlmSpec, build_model};
use agp_llm::store::RecordMode;
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The experiments `all` runs, in this order.
pub const ALL: [&str; 11] = [
    "table1",
    "fig2-summarization",
    "fig2-grid",
    "fig3-pbf",
    "scaling",
    "reference-code",
    "external",
    "baselines",
    "open-questions",
    "learned-budget",
    "order-controls",
];

/// How to run an experiment; the defaults are the bundled default's.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    pub scale: Scale,
    /// One LLM spec for every cell instead of the experiment's LLMs for the scale.
    pub llm: Option<String>,
    /// Record into the bundled recordings and the committed candidate files.
    pub record: bool,
    /// Repeat the whole pipeline (backbone seed and user draw) with seeds 1..=seeds; `None` runs
    /// the experiment's own `seeds` for the scale (1 where it sets none).
    pub seeds: Option<u64>,
    /// LLM calls in flight at once.
    pub jobs: usize,
    /// Threads of an in-process model.
    pub threads: Option<usize>,
    /// Compare with the committed reports instead of writing them.
    pub check: bool,
    /// Allow a run that calls a paid API.
    pub yes: bool,
    /// Where reports go [default: the workspace's `reports/`].
    pub out: Option<PathBuf>,
    pub recordings: Option<PathBuf>,
    pub on_failure: FailurePolicy,
    /// Datasets instead of the experiment's.
    pub datasets: Vec<String>,
    /// Only these method rows (kind or label); empty for all of them.
    pub methods: Vec<String>,
    /// Checkpoints and event logs [default: the workspace's `.cache/runs`].
    pub runs: Option<PathBuf>,
    /// Progress bars (on a terminal) or progress lines (without one).
    pub progress: bool,
    /// Method kinds a program registered besides the built-in ones ([`crate::method`]).
    pub kinds: crate::method::Methods,
    /// Run each cell's bulk requests (test-stage evaluation) through the provider's Batch API
    /// in rounds (see [`agp_llm::batch`]); training calls stay synchronous.
    pub batch: Option<agp_llm::batch::BatchOptions>,
    /// Print each experiment's plan (requests, cost and wall time, synchronous and with
    /// `--batch`) and run nothing.
    pub dry_run: bool,
}

impl Default for ReproduceOptions {
    fn default() -> Self {
        Self {
            scale: Scale::Fixture,
            llm: None,
            record: false,
            seeds: None,
            jobs: agp_llm::DEFAULT_JOBS,
            threads: None,
            check: false,
            yes: false,
            out: None,
            recordings: None,
            on_failure: FailurePolicy::Continue,
            datasets: Vec::new(),
            methods: Vec::new(),
            runs: None,
            progress: true,
            kinds: Default::default(),
            batch: None,
            dry_run: false,
        }
    }
}

/// The finished run of one experiment: its report cells and what made them.
pub struct ExperimentRun {
    pub experiment: Experiment,
    pub facts: report::RunFacts,
    pub cells: Vec<report::Cell>,
    pub rendered: report::Report,
    /// Where the reports were written (or compared).
    pub dir: PathBuf,
}

/// Runs experiments by name (`all` for every one in [`ALL`]). With `check`, every experiment
/// runs and the differences from the committed reports are listed together at the end.
pub fn run_experiments(
    ws: &Workspace,
    names: &[String],
    opts: &ReproduceOptions,
) -> Result<Vec<ExperimentRun>> {
    let names: Vec<String> = if names.iter().any(|n| n == "all") {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        names.to_vec()
    };
    if opts.batch.is_some() && opts.on_failure == FailurePolicy::Stop {
        bail!(
            "--batch runs the bulk stages in rounds whose deferred calls count as failures until \
             their batch answers; it needs --on-failure continue"
        );
    }
    // Every experiment file is read and every method row checked before anything trains.
    let mut exps = Vec::new();
    for name in &names {
        let mut exp = Experiment::load_with(&ws.experiment_path(name), opts.scale, &opts.kinds)?;
        if !opts.datasets.is_empty() {
            exp.settings.datasets = opts.datasets.clone();
        }
        exps.push(exp);
    }
    if !opts.methods.is_empty() {
        // Named before filtering, for the error below.
        let rows: BTreeSet<String> = exps
            .iter()
            .flat_map(|e| &e.methods)
            .flat_map(|r| [r.kind.clone(), r.label.clone()])
            .collect();
        let mut matched = BTreeSet::new();
        for exp in &mut exps {
            let missed = exp.retain_methods(&opts.methods);
            matched.extend(opts.methods.iter().filter(|m| !missed.contains(m)).cloned());
        }
        if let Some(m) = opts.methods.iter().find(|m| !matched.contains(*m)) {
            bail!(
                "--method {m:?}: no row of {} at scale {} has that kind or label (they have: {})",
                names.join(", "),
                opts.scale.name(),
                rows.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        // An experiment none of whose rows was asked for has nothing to run or report.
        exps.retain(|e| !e.methods.is_empty());
    }
    if opts.dry_run {
        // The plan of each experiment, synchronous and --batch side by side; nothing runs.
        for exp in &exps {
            let llms: Vec<String> = match &opts.llm {
                Some(l) => vec![l.clone()],
                None => exp.settings.llms.clone(),
            };
            let plan = plan::plan_for(exp, &llms, seeds_of(exp, opts), opts.jobs)?;
            println!("{}\n", plan.render());
        }
        return Ok(Vec::new());
    }
    let mut failures = Vec::new();
    let mut done = Vec::new();
    for exp in exps {
        match run_one(ws, exp, opts) {
            Ok(r) => done.push(r),
            Err(e) if opts.check => {
                eprintln!("{e:#}");
                failures.push(e.to_string().lines().next().unwrap_or("").to_string());
            }
            Err(e) => return Err(e),
        }
    }
    if !failures.is_empty() {
        bail!(
            "reports differ from the committed ones ({} of {} experiments)",
            failures.len(),
            names.len()
        );
    }
    Ok(done)
}

/// One LLM spec, built once and shared by every cell: identical requests from different cells
/// are sent once, and one slot pool keeps `--jobs` requests in flight across all of them.
struct LlmUse {
    text: String,
    handle: agp_llm::LlmHandle,
    recordings: PathBuf,
    /// Answers come from a model (and are stored), not only from the recordings.
    live: bool,
    /// What the cells' checkpoints are keyed on besides the spec text (see [`llm_identity`]).
    identity: String,
}

/// Everything a model's answers depend on that the `--llm` text does not say, so a checkpoint
/// is only resumed by a run that would have asked the same model the same way.
///
/// Replay: the recordings' sha256 (their answers are the run's inputs). Live: the recordings
/// grow during the run, so their content cannot key it (a resume must find its checkpoints);
/// their path does, canonicalised, so a run with a new `--recordings` file asks its model
/// afresh instead of showing another file's answers. With it go the model's identity (a local
/// GGUF's sha256: a replaced file under the same name), the in-process backend's settings (its
/// resolved thread count, context and token caps change greedy answers), the experiment's
/// max-tokens setting, and the model the server says it serves, where it says (another GGUF
/// behind the same alias must not resume this one's cells).
pub fn llm_identity(
    live: bool,
    recordings: &std::path::Path,
    model: &agp_llm::ModelInfo,
    backend_settings: &serde_json::Value,
    max_tokens: Option<u32>,
    served: Option<&str>,
) -> Result<String> {
    if !live {
        let bytes = std::fs::read(recordings)
            .with_context(|| format!("reading {}", recordings.display()))?;
        return Ok(format!(
            "recordings sha256 {}",
            pipeline::sha256_hex_bytes(&bytes)
        ));
    }
    let path = canonical_path(recordings)
        .with_context(|| format!("resolving the recordings path {}", recordings.display()))?;
    // Only the in-process backend's settings shape its answers; an API client's (its URL,
    // timeout, retries) do not, and a server on another port must still find the checkpoints.
    let local = if model.backend == "local" {
        backend_settings.clone()
    } else {
        serde_json::Value::Null
    };
    let mut identity = serde_json::json!({
        "recordings": path,
        "model": model,
        "local settings": local,
        "max_tokens": max_tokens,
    });
    // Only where a server keeps a list, so the identity of every other run stays as it was.
    if let Some(s) = served {
        identity["served model"] = serde_json::Value::from(s);
    }
    Ok(identity.to_string())
}

/// `p` made absolute with its links resolved; a file not made yet is named through its
/// directory, the file name as given.
fn canonical_path(p: &std::path::Path) -> std::io::Result<PathBuf> {
    match std::fs::canonicalize(p) {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match p.parent().filter(|d| !d.as_os_str().is_empty()) {
                Some(d) => std::fs::canonicalize(d)?,
                None => std::env::current_dir()?,
            };
            Ok(dir.join(p.file_name().unwrap_or(p.as_os_str())))
        }
        Err(e) => Err(e),
    }
}

fn build_llms(
    ws: &Workspace,
    specs: &[String],
    args: &ReproduceOptions,
    max_tokens: Option<u32>,
    rt: &tokio::runtime::Runtime,
) -> Result<Vec<LlmUse>> {
    specs
        .iter()
        .map(|text| {
            let spec: LlmSpec = text.parse()?;
            let live = spec != LlmSpec::Replay;
            let recordings = match (&args.recordings, live && !args.record) {
                (Some(p), _) => p.clone(),
                (None, true) => ws.live_recordings(&spec.to_string()),
                (None, false) => ws.recordings(),
            };
            let mode = if live {
                RecordMode::Auto
            } else {
                RecordMode::Replay
            };
            let opts = LlmOptions {
                mode,
                recordings: Some(recordings.clone()),
                threads: args.threads,
                models_dir: Some(ws.models_dir()),
                // A recording an in-process model makes must not depend on the schedule, which
                // batched decoding lets it do (agp_llm::local::slots::CAVEAT).
                jobs: Some(match spec {
                    LlmSpec::Local(_) if args.record => 1,
                    _ => args.jobs,
                }),
                batch: if live { args.batch } else { None },
                ..LlmOptions::default()
            };
            let handle = build_model(&spec, &opts)
                .with_context(|| format!("LLM {text} (recordings {})", recordings.display()))?;
            let served = if live {
                eprintln!("{text}: answers are stored in {}", recordings.display());
                let st = handle.model.settings();
                if let (Some(read), Some(generate)) =
                    (st["threads"].as_u64(), st["generation_threads"].as_u64())
                {
                    match st["slots"].as_u64() {
                        Some(slots) => eprintln!(
                            "{text}: in process on {read} threads, decoding up to {slots} calls \
                             together, so an answer can depend on what shared its batch \
                             (--jobs 1 answers each call alone)"
                        ),
                        None => eprintln!(
                            "{text}: in process, reading prompts on {read} threads and \
                             generating on {generate}, one call at a time"
                        ),
                    }
                }
                served_model(
                    text,
                    &handle.model.info().model,
                    rt.block_on(handle.model.served_models()),
                )
            } else {
                None
            };
            let identity = llm_identity(
                live,
                &recordings,
                &handle.model.info(),
                &handle.model.settings(),
                max_tokens,
                served.as_deref(),
            )?;
            Ok(LlmUse {
                text: text.clone(),
                handle,
                recordings,
                live,
                identity,
            })
        })
        .collect()
}

/// The model a live server says it serves, checked against the one the spec names before the
/// first paid call: a warning when none of its models is that one (the report would name a
/// model that did not answer). `None` where the server keeps no list.
fn served_model(spec: &str, asked: &str, listed: Option<Vec<String>>) -> Option<String> {
    let listed = listed?;
    if let Some(m) = listed
        .iter()
        .find(|m| agp_llm::http::serves_model(asked, m))
    {
        return Some(m.clone());
    }
    eprintln!(
        "warning: {spec}: the server lists {listed:?} and not {asked:?}; the report and the \
         recordings name {asked:?} (each answer also records the model the server says served it)"
    );
    Some(listed.join(","))
}

/// Seeds a run repeats the experiment with: `--seeds`, else the experiment's own, else 1.
fn seeds_of(exp: &Experiment, args: &ReproduceOptions) -> u64 {
    args.seeds.or(exp.settings.seeds).unwrap_or(1)
}

fn run_one(ws: &Workspace, exp: Experiment, args: &ReproduceOptions) -> Result<ExperimentRun> {
    let exp = &exp;
    let n_seeds = seeds_of(exp, args);
    if n_seeds == 0 {
        bail!("{}: seeds must be 1 or more", exp.name);
    }
    let t0 = Instant::now();
    let progress = args.progress;
    let llm_specs: Vec<String> = match &args.llm {
        Some(l) => vec![l.clone()],
        None => exp.settings.llms.clone(),
    };
    // Every name the run will use is resolved before the first byte of data is read: a typo
    // in an LLM spec, a backbone or a dataset costs nothing (method settings were checked as
    // the experiment loaded).
    let specs = llm_specs
        .iter()
        .map(|s| {
            s.parse::<LlmSpec>().with_context(|| match &args.llm {
                Some(_) => "--llm".to_string(),
                None => format!("{}: llms at scale {}", exp.name, exp.scale.name()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for b in &exp.settings.backbones {
        b.parse::<crate::train::BackboneKind>()
            .with_context(|| format!("{}: backbones at scale {}", exp.name, exp.scale.name()))?;
    }
    for d in &exp.settings.datasets {
        ws.dataset_source(d)
            .with_context(|| format!("{}: datasets at scale {}", exp.name, exp.scale.name()))?;
    }
    let paid = specs.iter().any(LlmSpec::is_paid);
    let live = specs.iter().any(|s| *s != LlmSpec::Replay);
    let plan = if live {
        let plan = plan::plan_for(exp, &llm_specs, n_seeds, args.jobs)?;
        eprintln!("{}", plan.render());
        Some(plan)
    } else {
        None
    };
    if paid && !args.yes {
        bail!(
            "{} at scale {} calls a paid API; the plan above is what it would ask. Re-run with \
             --yes to start (an interrupted run resumes, and answered calls are never paid twice)",
            exp.name,
            exp.scale.name()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let mut timings: Vec<(String, f64)> = Vec::new();
    // Data and backbones first: they use every core, and every LLM cell needs them.
    let mut prepared = Vec::new();
    let mut backbone_facts = Vec::new();
    let mut data_s = 0.0;
    let mut backbone_s = 0.0;
    for seed in 1..=n_seeds {
        for dataset in &exp.settings.datasets {
            let t = Instant::now();
            let ds = pipeline::load_dataset(ws, dataset)?;
            data_s += t.elapsed().as_secs_f64();
            if progress {
                eprintln!(
                    "{}: {} ready ({} users, {} items) in {:.1} s",
                    exp.name,
                    ds.name,
                    ds.n_users(),
                    ds.n_items(),
                    t.elapsed().as_secs_f64()
                );
            }
            timings.push((
                format!("data {dataset} seed {seed}"),
                t.elapsed().as_secs_f64(),
            ));
            let mut backbones = Vec::new();
            for backbone in &exp.settings.backbones {
                let t = Instant::now();
                let b = pipeline::backbone(ws, exp, &ds, backbone, seed, args.record, progress)?;
                backbone_s += t.elapsed().as_secs_f64();
                if progress {
                    eprintln!(
                        "{}: {backbone} on {} (seed {seed}): {} epochs, {} test users, in {:.1} s",
                        exp.name,
                        ds.name,
                        b.facts.epochs,
                        b.facts.test_users,
                        t.elapsed().as_secs_f64()
                    );
                }
                timings.push((
                    format!("backbone {dataset}/{backbone} seed {seed}"),
                    t.elapsed().as_secs_f64(),
                ));
                if seed == 1 {
                    backbone_facts.push(b.facts.clone());
                }
                backbones.push(b);
            }
            let mut rich = None;
            for row in &exp.methods {
                if row.item_text == ItemText::Rich && rich.is_none() {
                    rich = Some(pipeline::with_rich_text(ws, dataset, &ds)?);
                }
            }
            prepared.push((seed, ds, rich, backbones));
        }
    }

    let llms = build_llms(ws, &llm_specs, args, exp.settings.max_tokens, &rt)?;
    let runs = args.runs.clone().unwrap_or_else(|| ws.runs());
    // Every (seed, dataset, backbone, LLM, method) cell, in report order.
    let mut jobs = Vec::new();
    for (seed, ds, rich, backbones) in &prepared {
        for b in backbones {
            // Methods that need no LLM run once, not once per LLM.
            let mut ran_llm_free = std::collections::BTreeSet::new();
            for l in &llms {
                for row in &exp.methods {
                    if row.is_llm_free() && !ran_llm_free.insert(row.label.clone()) {
                        continue;
                    }
                    let ds = match rich {
                        Some(r) if row.item_text == ItemText::Rich => r,
                        _ => ds,
                    };
                    jobs.push(pipeline::MethodJob {
                        exp,
                        ds,
                        backbone: b,
                        row,
                        llm_spec: &l.text,
                        llm_identity: &l.identity,
                        live_recordings: l.live.then_some(l.recordings.as_path()),
                        llm: l.handle.model.clone(),
                        batcher: l.handle.batcher.clone(),
                        ledger: l.handle.ledger.clone(),
                        seed: *seed,
                        jobs: args.jobs,
                        on_failure: args.on_failure,
                        runs: &runs,
                        cwd: ws.root(),
                    });
                }
            }
        }
    }
    // Every config is resolved and checked before the first call; each cell then runs with it.
    let configs = jobs
        .iter()
        .map(pipeline::job_config)
        .collect::<Result<Vec<_>>>()?;
    let t_llm = Instant::now();
    let n_cells = jobs.len();
    let bar = cells_bar(progress, n_cells);
    let done = Arc::new(AtomicUsize::new(0));
    let ticker = (progress && bar.is_hidden()).then(|| {
        Ticker::start(
            format!("{}: LLM cells", exp.name),
            n_cells,
            done.clone(),
            llms.iter().map(|l| l.handle.ledger.clone()).collect(),
        )
    });
    if progress {
        eprintln!(
            "{}: {n_cells} cells over {} LLM(s), {} in flight at most",
            exp.name,
            llms.len(),
            args.jobs
        );
    }
    // All cells at once: the shared slot pool of each LLM keeps `--jobs` requests in flight
    // across cells, and a cell's results depend only on its own answers, so the report is the
    // same at any `--jobs` and in any completion order.
    // The first error ends the run at once (answered calls are already stored and every cell
    // checkpoints, so nothing is lost); the others would only add to a run that fails.
    let results = rt.block_on(futures::future::try_join_all(
        jobs.into_iter().zip(configs).map(|(job, cfg)| {
            let bar = bar.clone();
            let done = done.clone();
            async move {
                let what = format!(
                    "{}/{}/{} {}",
                    job.ds.name, job.backbone.facts.backbone, job.llm_spec, job.row.label
                );
                let t = Instant::now();
                let cell = pipeline::run_method(job, cfg).await;
                let secs = t.elapsed().as_secs_f64();
                bar.inc(1);
                done.fetch_add(1, Ordering::Relaxed);
                match &cell {
                    Ok(_) => bar.suspend(|| eprintln!("  done {what} in {secs:.1} s")),
                    Err(e) => bar.suspend(|| eprintln!("  FAILED {what} after {secs:.1} s: {e:#}")),
                }
                cell.map(|c| (c, secs))
            }
        }),
    ));
    bar.finish_and_clear();
    drop(ticker);
    let results = results?;
    let llm_s = t_llm.elapsed().as_secs_f64();
    let mut cells = Vec::with_capacity(n_cells);
    for (cell, secs) in results {
        timings.push((format!("{} seed {}", cell.label, cell.seed), secs));
        cells.push(cell);
    }
    eprintln!(
        "{}: wall time {:.1} s = data {data_s:.1} s + backbones {backbone_s:.1} s + LLM cells \
         {llm_s:.1} s",
        exp.name,
        t0.elapsed().as_secs_f64()
    );
    let mut provenance = BTreeMap::new();
    for l in &llms {
        let spent = plan::Spent::of(&l.handle.ledger);
        // "Recorded from" only when this run asked the model something; a live spec whose
        // every answer came from the recordings replayed them.
        provenance.insert(
            l.text.clone(),
            describe_model(&l.handle.model.info(), spent.live > 0),
        );
        eprintln!(
            "  {}: {} requests ({} answered live, {} from {}), {:.1} live requests/s over \
             the LLM stage, spent ~${:.2}",
            l.text,
            spent.requests,
            spent.live,
            spent.requests - spent.live,
            l.recordings.display(),
            spent.live as f64 / llm_s.max(1e-9),
            spent.usd + 0.0
        );
        if spent.live > 0 {
            eprintln!(
                "  {}: live tokens: {} prompt ({} of them cached, {:.0}%), {} generated; {:.1} \
                 prompt and {:.1} generated tokens/s",
                l.text,
                spent.live_prompt_tokens,
                spent.live_cached_tokens,
                100.0 * spent.live_cached_tokens as f64 / spent.live_prompt_tokens.max(1) as f64,
                spent.live_completion_tokens,
                spent.live_prompt_tokens as f64 / llm_s.max(1e-9),
                spent.live_completion_tokens as f64 / llm_s.max(1e-9),
            );
        }
        if let Some(p) = &plan {
            eprintln!("{}", p.compare(&l.text, &spent));
        }
    }
    let facts = report::RunFacts {
        experiment: exp.name.clone(),
        scale: exp.scale.name().to_string(),
        llm_provenance: provenance,
        backbones: backbone_facts,
        seeds: (1..=n_seeds).collect(),
        flags: rerun_flags(ws, exp, args),
        recordings: llms
            .iter()
            .filter_map(|l| Some((l.text.clone(), l.handle.store.as_ref()?.summary())))
            .collect(),
    };
    let rendered = report::render(exp, &facts, &cells);
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| ws.reports())
        .join(&exp.name);
    write_run_log(&runs, exp, &timings, t0.elapsed().as_secs_f64())?;
    if args.check {
        check_report(&dir, &rendered.files).with_context(|| exp.name.clone())?;
    } else {
        write_report(&dir, &rendered.files)?;
        eprintln!(
            "{}: wrote {} files to {} in {:.0} s",
            exp.name,
            rendered.files.len(),
            dir.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(ExperimentRun {
        experiment: exp.clone(),
        facts,
        cells,
        rendered,
        dir,
    })
}

fn write_report(dir: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Stale files (e.g. a figure of a removed cell) would survive a plain overwrite.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !files.contains_key(&name) && entry.path().is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// Without a terminal the bar is hidden, so a run of hours would print nothing between its
/// stage lines: this prints one line every `AGP_PROGRESS_SECS` (default 30) seconds instead.
struct Ticker {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(
        what: String,
        total: usize,
        done: Arc<AtomicUsize>,
        ledgers: Vec<agp_llm::UsageLedger>,
    ) -> Self {
        let every = std::env::var("AGP_PROGRESS_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .unwrap_or(30.0);
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || {
            let (lock, cvar) = &*flag;
            let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (g, timeout) = cvar
                    .wait_timeout(stopped, std::time::Duration::from_secs_f64(every))
                    .unwrap_or_else(|e| e.into_inner());
                stopped = g;
                if *stopped {
                    return;
                }
                if timeout.timed_out() {
                    let spent: Vec<plan::Spent> = ledgers.iter().map(plan::Spent::of).collect();
                    eprintln!(
                        "{what}: {}/{total} done, {} requests ({} live, ~${:.2}), {:.0} s",
                        done.load(Ordering::Relaxed),
                        spent.iter().map(|s| s.requests).sum::<u64>(),
                        spent.iter().map(|s| s.live).sum::<u64>(),
                        spent.iter().map(|s| s.usd).sum::<f64>(),
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn cells_bar(show: bool, n: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "cells [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})",
    ) {
        pb.set_style(style);
    }
    pb
}

fn describe_model(info: &agp_llm::ModelInfo, answered_live: bool) -> String {
    let how = if answered_live {
        "recorded from"
    } else {
        "replayed from recordings made by"
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

/// The flags beyond experiment and scale that regenerate this report, for its README. Flags
/// that restate a default add nothing, so a `--check` spelling them out still matches.
fn rerun_flags(ws: &Workspace, exp: &Experiment, args: &ReproduceOptions) -> String {
    let mut f = Vec::new();
    if let Some(l) = &args.llm
        && exp.settings.llms != [l.clone()]
    {
        f.push(format!("--llm {}", shell_word(l)));
    }
    // Relative to the workspace, so a committed README carries no machine's paths; a path
    // outside it means nothing to a reader (and would make two runs' reports differ by where
    // they were written), so it shows as a placeholder.
    let root = std::fs::canonicalize(ws.root()).unwrap_or_else(|_| ws.root().into());
    let resolve = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.into())
    };
    let shown = |p: &Path, outside: &str| match resolve(p).strip_prefix(&root) {
        Ok(rel) => shell_word(&rel.display().to_string()),
        Err(_) => outside.to_string(),
    };
    let moved = |given: &Option<PathBuf>, default: PathBuf, outside: &str| {
        given
            .as_deref()
            .filter(|g| resolve(g) != resolve(&default))
            .map(|g| shown(g, outside))
    };
    if let Some(r) = moved(&args.recordings, ws.recordings(), "FILE") {
        f.push(format!("--recordings {r}"));
    }
    if let Some(o) = moved(&args.out, ws.reports(), "DIR") {
        f.push(format!("--out {o}"));
    }
    for d in &args.datasets {
        match d.strip_prefix("recbole:") {
            Some(dir) => f.push(format!(
                "--dataset recbole:{}",
                shown(Path::new(dir), "DIR")
            )),
            None => f.push(format!("--dataset {}", shell_word(d))),
        }
    }
    for m in &args.methods {
        f.push(format!("--method {}", shell_word(m)));
    }
    // Only a count other than the experiment's own is a flag to repeat.
    let n_seeds = seeds_of(exp, args);
    if n_seeds != exp.settings.seeds.unwrap_or(1) {
        f.push(format!("--seeds {n_seeds}"));
    }
    f.join(" ")
}

/// `s` as one word a POSIX shell reads back unchanged: as it is when it holds nothing the shell
/// treats specially, single-quoted otherwise.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Timings stay out of the compared report files.
fn write_run_log(
    runs: &Path,
    exp: &Experiment,
    timings: &[(String, f64)],
    total: f64,
) -> Result<()> {
    let dir = runs.join(&exp.name).join(exp.scale.name());
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
    fn a_live_identity_names_the_recordings_model_threads_and_max_tokens() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.jsonl");
        let b = tmp.path().join("b.jsonl");
        std::fs::write(&a, "").unwrap();
        let http = agp_llm::ModelInfo {
            backend: "http".into(),
            model: "m".into(),
            file_sha256: None,
        };
        let local = |sha: &str| agp_llm::ModelInfo {
            backend: "local".into(),
            model: "m.gguf".into(),
            file_sha256: Some(sha.into()),
        };
        let threads = |n: u32| serde_json::json!({"threads": n, "n_ctx": 4096});
        let id = |rec: &Path, m: &agp_llm::ModelInfo, s: &serde_json::Value, mt| {
            llm_identity(true, rec, m, s, mt, None).unwrap()
        };
        let base = id(&a, &http, &serde_json::Value::Null, Some(300));
        // The same file however it is spelled, made yet or not.
        let dotted = tmp.path().join("sub/../a.jsonl");
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        assert_eq!(
            id(&dotted, &http, &serde_json::Value::Null, Some(300)),
            base
        );
        assert_eq!(
            id(&b, &http, &serde_json::Value::Null, Some(300)),
            id(
                &tmp.path().join("sub/../b.jsonl"),
                &http,
                &serde_json::Value::Null,
                Some(300)
            )
        );
        // Each input on its own changes it.
        for other in [
            id(&b, &http, &serde_json::Value::Null, Some(300)),
            id(&a, &http, &serde_json::Value::Null, Some(301)),
            id(&a, &local("x"), &threads(1), Some(300)),
        ] {
            assert_ne!(other, base);
        }
        assert_ne!(
            id(&a, &local("x"), &threads(1), Some(300)),
            id(&a, &local("x"), &threads(2), Some(300))
        );
        assert_ne!(
            id(&a, &local("x"), &threads(1), Some(300)),
            id(&a, &local("y"), &threads(1), Some(300))
        );
        // Nor does another model behind the same alias.
        assert_ne!(
            llm_identity(
                true,
                &a,
                &http,
                &serde_json::Value::Null,
                Some(300),
                Some("x.gguf")
            )
            .unwrap(),
            base
        );
        // An API client's settings (its URL: a server on another port) do not.
        assert_eq!(
            id(
                &a,
                &http,
                &serde_json::json!({"base_url": "http://h:1/v1"}),
                Some(300)
            ),
            base
        );
        // Replay keeps the identity committed reports were made under.
        std::fs::write(&a, "{}\n").unwrap();
        assert_eq!(
            llm_identity(false, &a, &http, &serde_json::Value::Null, Some(300), None).unwrap(),
            format!("recordings sha256 {}", pipeline::sha256_hex_bytes(b"{}\n"))
        );
    }

    #[test]
    fn the_scaling_rows_differ_in_training_users_only() {
        for (scale, fewer, more) in [
            (Scale::Fixture, 10, 20),
            (Scale::Small, 10, 20),
            (Scale::Paper, 100, 700),
        ] {
            let exp =
                Experiment::load(&Workspace::discover().experiment_path("scaling"), scale).unwrap();
            let row = |label: &str| {
                let mut t = exp
                    .methods
                    .iter()
                    .find(|m| m.label == label)
                    .unwrap()
                    .table
                    .clone();
                let n = t.remove("n_train_users").and_then(|v| v.as_integer());
                t.remove("label");
                (n, t)
            };
            let (n_fewer, rest_fewer) = row("AGP (fewer users)");
            let (n_more, rest_more) = row("AGP (more users)");
            assert_eq!((n_fewer, n_more), (Some(fewer), Some(more)), "{scale:?}");
            assert_eq!(
                rest_fewer, rest_more,
                "{scale:?}: only n_train_users may differ"
            );
            assert!(
                more as usize <= exp.settings.train_users,
                "{scale:?}: the candidate file holds the users"
            );
        }
    }

    #[test]
    fn every_experiment_file_loads_at_every_scale() {
        for name in ALL {
            for scale in [Scale::Fixture, Scale::Small, Scale::Paper] {
                let exp = Experiment::load(&Workspace::discover().experiment_path(name), scale)
                    .unwrap_or_else(|e| panic!("{name} at {scale:?}: {e:#}"));
                assert!(!exp.methods.is_empty(), "{name} at {scale:?}");
            }
        }
    }

    #[test]
    fn an_experiment_sets_its_seeds_and_only_another_count_is_a_flag() {
        let ws = Workspace::discover();
        let exp = Experiment::load(&ws.experiment_path("learned-budget"), Scale::Fixture).unwrap();
        let with = |seeds| ReproduceOptions {
            seeds,
            out: Some(ws.reports()),
            recordings: Some(ws.recordings()),
            ..ReproduceOptions::default()
        };
        assert_eq!(exp.settings.seeds, Some(2));
        assert_eq!(seeds_of(&exp, &with(None)), 2);
        assert_eq!(rerun_flags(&ws, &exp, &with(None)), "");
        assert_eq!(rerun_flags(&ws, &exp, &with(Some(2))), "");
        assert_eq!(seeds_of(&exp, &with(Some(1))), 1);
        assert_eq!(rerun_flags(&ws, &exp, &with(Some(1))), "--seeds 1");
        let table1 = Experiment::load(&ws.experiment_path("table1"), Scale::Fixture).unwrap();
        assert_eq!(seeds_of(&table1, &with(None)), 1);
        assert_eq!(rerun_flags(&ws, &table1, &with(Some(3))), "--seeds 3");
        // Other scales of the experiment run one seed unless asked.
        let small = Experiment::load(&ws.experiment_path("learned-budget"), Scale::Small).unwrap();
        assert_eq!(seeds_of(&small, &with(None)), 1);
    }

    #[test]
    fn rerun_flags_name_paths_in_the_workspace_relatively_and_others_by_a_placeholder() {
        let ws = Workspace::discover();
        let exp = Experiment::load(&ws.experiment_path("table1"), Scale::Fixture).unwrap();
        let defaults = ReproduceOptions {
            out: Some(ws.reports()),
            recordings: Some(ws.recordings()),
            ..ReproduceOptions::default()
        };
        assert_eq!(rerun_flags(&ws, &exp, &defaults), "");
        let moved = ReproduceOptions {
            out: Some(ws.root().join("reports/elsewhere")),
            recordings: Some(std::env::temp_dir().join("answers.jsonl")),
            methods: vec!["base".into(), "LLM-Dir (pointwise)".into()],
            ..ReproduceOptions::default()
        };
        assert_eq!(
            rerun_flags(&ws, &exp, &moved),
            "--recordings FILE --out reports/elsewhere --method base --method 'LLM-Dir (pointwise)'"
        );
        let data = ReproduceOptions {
            datasets: vec![
                format!("recbole:{}", ws.root().join("data/synth-amz").display()),
                format!(
                    "recbole:{}",
                    std::env::temp_dir().join("synth-yelp").display()
                ),
                "ml-1m".into(),
            ],
            methods: vec!["it's".into()],
            ..ReproduceOptions::default()
        };
        assert_eq!(
            rerun_flags(&ws, &exp, &data),
            "--dataset recbole:data/synth-amz --dataset recbole:DIR --dataset ml-1m \
             --method 'it'\\''s'"
        );
    }
}
