//! `cargo xtask reproduce <experiment>`: every table and figure of the paper from one command.
//! The work is [`agp_harness::run_experiments`]; this is its command line and its summary.

use agp_harness::{ReproduceOptions, Scale, Workspace};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// table1 | fig2-summarization | fig2-grid | fig3-pbf | scaling | reference-code |
    /// order-controls | all, or the name of any file under experiments/ (without `.toml`), or a
    /// path to an experiment file.
    #[arg(default_value = "table1")]
    pub experiment: String,
    /// fixture: the bundled default (minutes, recorded LLM); small: more users on the same data;
    /// paper: the paper's protocol (needs an API key, asks for --yes).
    #[arg(long, default_value = "fixture", value_parser = ["fixture", "small", "paper"])]
    pub scale: String,
    /// replay | local:<model> | openai:<model> | deepseek:<model> | http:<url>[#model]
    /// [default: the experiment's LLMs for this scale].
    #[arg(long)]
    pub llm: Option<String>,
    /// Record into the bundled recordings (fixtures/llm/recordings.jsonl) and the committed
    /// candidate files: how the bundled default is made. Live models always store their answers.
    #[arg(long)]
    pub record: bool,
    /// Repeat the whole pipeline (backbone seed and user draw) with this many seeds
    /// [default: the experiment's `seeds` for the scale, else 1].
    #[arg(long)]
    pub seeds: Option<u64>,
    /// LLM calls in flight at once. An in-process model decodes this many together (one with
    /// `--record`, where an answer must not depend on what shared its batch).
    #[arg(long, default_value_t = agp_llm::DEFAULT_JOBS)]
    pub jobs: usize,
    /// Threads an in-process model reads prompts on [default: every core]; it generates on one
    /// whatever this is, so its answers do not depend on it.
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
    /// Recordings file [default: fixtures/llm/recordings.jsonl when replaying or with
    /// --record; .cache/llm/<spec>.jsonl for a live model].
    #[arg(long)]
    pub recordings: Option<PathBuf>,
    /// What a call that fails for good (refused, filtered, still failing after its retries)
    /// does: `continue` scores that user as an unusable answer (rank K, NDCG 0) and counts it
    /// in the report; `stop` ends the run (resume it later from its checkpoints).
    #[arg(long, default_value = "continue", value_parser = ["continue", "stop"])]
    pub on_failure: String,
    /// Run on these datasets instead of the experiment's (repeatable): a name such as
    /// `amazon-movies-tv`, or `recbole:<dir>` for atomic files, e.g. from `data synth`.
    #[arg(long = "dataset")]
    pub datasets: Vec<String>,
    /// Run only these rows of the experiment (repeatable): a method kind such as `agp`, or a
    /// row's label such as `"LLM-Dir (pointwise)"`; case does not matter.
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Where each method's checkpoints and event log go [default: .cache/runs]. A run with the
    /// same settings resumes from them.
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// No progress bars or progress lines, and no result table.
    #[arg(long)]
    pub quiet: bool,
    /// Send the bulk stages (every test-stage evaluation; learned methods train synchronously)
    /// through the provider's Batch API at half price, in rounds: each round's new requests go
    /// in one batch, polled until answered, and the cell runs again on the stored answers. A
    /// run killed while a batch is pending resumes by polling it. OpenAI and OpenAI-compatible
    /// servers with /v1/batches only.
    #[arg(long)]
    pub batch: bool,
    /// Print the plan (requests, cost at list prices, expected wall time and cached share per
    /// LLM and stage, synchronous and with --batch side by side) and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds between two polls of a pending batch.
    #[arg(long, default_value_t = 30.0, requires = "batch")]
    pub batch_poll_s: f64,
}

pub fn run(a: ReproduceArgs) -> anyhow::Result<()> {
    let opts = ReproduceOptions {
        scale: a.scale.parse::<Scale>()?,
        llm: a.llm,
        record: a.record,
        seeds: a.seeds,
        jobs: a.jobs,
        threads: a.threads,
        check: a.check,
        yes: a.yes,
        out: a.out,
        recordings: a.recordings,
        on_failure: match a.on_failure.as_str() {
            "stop" => agp::FailurePolicy::Stop,
            _ => agp::FailurePolicy::Continue,
        },
        datasets: a.datasets,
        methods: a.methods,
        runs: a.runs,
        progress: !a.quiet,
        kinds: Default::default(),
        dry_run: a.dry_run,
        batch: a.batch.then(|| agp_llm::batch::BatchOptions {
            poll_every: std::time::Duration::from_secs_f64(a.batch_poll_s.max(0.0)),
            ..agp_llm::batch::BatchOptions::default()
        }),
    };
    let runs = agp_harness::run_experiments(&Workspace::discover(), &[a.experiment], &opts)?;
    if !a.quiet {
        for r in &runs {
            let title = format!(
                "{} ({} scale) · full report: {}",
                r.experiment.title,
                r.experiment.scale.name(),
                r.dir.join("README.md").display()
            );
            let table = agp_harness::report::terminal::headline(
                &title,
                &r.cells,
                std::io::stdout().is_terminal(),
            );
            println!("{table}\n");
        }
    }
    Ok(())
}
