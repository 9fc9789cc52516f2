//! The run behind a report: dataset → backbone (trained or reloaded) → candidate file → every
//! method under every LLM, turned into report cells.

use crate::Workspace;
use crate::experiment::{Experiment, ItemText, MethodRow, MethodSpec, Scale};
use crate::external::ExternalReranker;
use crate::report::{BackboneFacts, Cell};
use crate::train::{self, BackboneKind, TrainSettings};
use agp::{MethodConfig, MethodRun, RunOptions};
use agp_datasets::candidates::CandidateFile;
use agp_datasets::{Dataset, PrepareOptions};
use agp_recommenders::eval::Split;
use agp_recommenders::export::ExportOptions;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Candidate lists K: the paper's top-10.
pub const K: usize = 10;

pub fn load_dataset(ws: &Workspace, name: &str) -> Result<Dataset> {
    load_dataset_with(ws, name, &PrepareOptions::default())
}

/// `ds` with the reference code's rich item text (title and categories, cast where the data has
/// it) in place of titles: the same split, users and items, so its candidate files still fit.
pub fn with_rich_text(ws: &Workspace, name: &str, ds: &Dataset) -> Result<Dataset> {
    let rich = load_dataset_with(
        ws,
        name,
        &PrepareOptions {
            item_text: agp_datasets::ItemTextStyle::Rich,
            ..PrepareOptions::default()
        },
    )?;
    if rich.item_text.len() != ds.item_text.len() || rich.test != ds.test {
        bail!("{name}: the rich-text preparation has a different split than the title one");
    }
    let mut out = ds.clone();
    out.item_text = rich.item_text;
    Ok(out)
}

fn load_dataset_with(ws: &Workspace, name: &str, opts: &PrepareOptions) -> Result<Dataset> {
    let source = ws.dataset_source(name)?;
    let (ds, _, _) = agp_datasets::prepare_cached(&source, opts, &ws.datasets_cache())
        .with_context(|| format!("preparing dataset {name}"))?;
    Ok(ds)
}

/// Where the bundled default's candidate files are committed: the recorded LLM responses are
/// keyed by prompts built from them, so a retrained backbone must reproduce them exactly.
fn committed_candidates(ws: &Workspace, dataset: &str, backbone: &str, seed: u64) -> PathBuf {
    ws.fixtures()
        .join(format!("candidates/{dataset}/{backbone}-seed{seed}.json"))
}

pub struct Backbone {
    pub candidates: CandidateFile,
    pub facts: BackboneFacts,
}

/// Train (or reload) a backbone and export the paper's candidate file.
pub fn backbone(
    ws: &Workspace,
    exp: &Experiment,
    ds: &Dataset,
    name: &str,
    seed: u64,
    record: bool,
    progress: bool,
) -> Result<Backbone> {
    let s = &exp.settings;
    let epochs = s.backbone_epochs.get(name).copied();
    let export = ExportOptions {
        k: K,
        n_test: s.test_users,
        n_train: s.train_users,
        n_valid: s.valid_users,
        seed,
        take_available: s.take_available_users,
    };
    let kind: BackboneKind = name.parse()?;
    let trained = train::train_or_load(
        ws,
        ds,
        kind,
        &TrainSettings {
            seed,
            epochs,
            set: s
                .backbone_settings
                .get(name)
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| Ok((k.clone(), serde_json::to_value(v)?)))
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?
                .unwrap_or_default(),
            progress,
            ..TrainSettings::default()
        },
    )?;
    let candidates = trained.model.export(ds, &export)?;
    let metrics = test_metrics(&*trained.model, ds)?;
    let epochs_run = trained.report.epochs_run();
    if exp.scale == Scale::Fixture {
        check_or_store_candidates(ws, &candidates, &ds.name, name, seed, record)?;
    }
    let eligible = candidates
        .lists
        .iter()
        .filter(|l| l.items.contains(&ds.test[l.user as usize]))
        .count();
    let facts = BackboneFacts {
        dataset: ds.name.clone(),
        backbone: name.to_string(),
        epochs: epochs_run,
        best_epoch: trained.report.best_epoch,
        stopped_early: trained.report.stopped_early,
        metrics,
        eligible_users: eligible,
        test_users: candidates.test_users.len(),
        train_users: candidates.train_users.len(),
        valid_users: candidates.valid_users.len(),
        requested: (s.test_users, s.train_users, s.valid_users),
    };
    Ok(Backbone { candidates, facts })
}

fn test_metrics(
    model: &dyn agp_recommenders::Backbone,
    ds: &Dataset,
) -> Result<BTreeMap<String, f64>> {
    let ranks = model.evaluate(ds, Split::Test)?;
    Ok(BTreeMap::from([
        ("test recall@20".to_string(), ranks.recall(20)),
        ("test ndcg@20".to_string(), ranks.ndcg(20)),
        ("test hr@10".to_string(), ranks.hr(10)),
    ]))
}

fn check_or_store_candidates(
    ws: &Workspace,
    c: &CandidateFile,
    dataset: &str,
    backbone: &str,
    seed: u64,
    record: bool,
) -> Result<()> {
    let path = committed_candidates(ws, dataset, backbone, seed);
    let fresh = serde_json::to_string(c)? + "\n";
    if record || !path.exists() {
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        std::fs::write(&path, &fresh)?;
        return Ok(());
    }
    let committed = std::fs::read_to_string(&path)?;
    if committed != fresh {
        bail!(
            "{backbone} on {dataset} (seed {seed}) produced candidate lists that differ from the \
             committed {}: the recorded LLM responses belong to those lists, so replay would miss. \
             A changed backbone or dataset needs new recordings (`cargo xtask-local reproduce \
             <experiment> --llm local:smollm2-135m --record`).",
            path.display()
        );
    }
    Ok(())
}

/// Everything about one method run that the cache directory is keyed on.
pub fn run_dir(
    runs: &std::path::Path,
    exp: &Experiment,
    seed: u64,
    key: &str,
    fingerprint: &str,
) -> PathBuf {
    let slug: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    runs.join(format!(
        "{}/{}/seed{seed}/{slug}-{}",
        exp.name,
        exp.scale.name(),
        &fingerprint[..12]
    ))
}

pub fn sha256_hex_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_hex(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

pub struct MethodJob<'a> {
    pub exp: &'a Experiment,
    pub ds: &'a Dataset,
    pub backbone: &'a Backbone,
    pub row: &'a MethodRow,
    pub llm_spec: &'a str,
    /// What else decides the answers: for replay, the recordings file's checksum, so a
    /// checkpoint made from other recordings is never taken for this run's.
    pub llm_identity: &'a str,
    /// A live LLM's recordings file, whose content a resumed checkpoint is checked against.
    pub live_recordings: Option<&'a std::path::Path>,
    pub llm: Arc<dyn agp_llm::ChatModel>,
    /// With `--batch`: where `llm` keeps the requests it deferred, flushed between rounds.
    pub batcher: Option<Arc<agp_llm::batch::Batcher>>,
    /// Where the cell books its calls to `llm` (in a scope of its own).
    pub ledger: agp_llm::UsageLedger,
    pub seed: u64,
    pub jobs: usize,
    pub on_failure: agp::FailurePolicy,
    /// Root of the per-method checkpoint directories.
    pub runs: &'a std::path::Path,
    /// Where external methods run (the workspace root: their commands name paths in it).
    pub cwd: &'a std::path::Path,
}

/// Scheduling priority of a cell's requests when more wait than there are slots. A method that
/// trains is a long chain of steps that each wait on their calls; single-epoch evaluation is
/// bulk work that can fill any free slot. Serving the chain first keeps it from becoming the
/// run's tail.
struct Prioritized {
    inner: Arc<dyn agp_llm::ChatModel>,
    training: u8,
    evaluation: u8,
}

impl Prioritized {
    fn priority(&self, account: Option<&str>) -> u8 {
        match account.and_then(agp::Stage::from_account) {
            Some(agp::Stage::Test) | None => self.evaluation,
            Some(_) => self.training,
        }
    }
}

#[async_trait::async_trait]
impl agp_llm::ChatModel for Prioritized {
    fn info(&self) -> agp_llm::ModelInfo {
        self.inner.info()
    }
    fn settings(&self) -> serde_json::Value {
        self.inner.settings()
    }
    fn scores_in_one_pass(&self) -> bool {
        self.inner.scores_in_one_pass()
    }
    async fn chat(
        &self,
        req: &agp_llm::ChatRequest,
    ) -> Result<agp_llm::ChatResponse, agp_llm::LlmError> {
        let mut req = req.clone();
        req.priority = self.priority(req.account);
        self.inner.chat(&req).await
    }
    async fn score(
        &self,
        req: &agp_llm::ScoreRequest,
    ) -> Result<agp_llm::ScoreResponse, agp_llm::LlmError> {
        let mut req = req.clone();
        req.priority = self.priority(req.account);
        self.inner.score(&req).await
    }
    async fn label_logprobs(
        &self,
        req: &agp_llm::LabelRequest,
    ) -> Result<agp_llm::LabelResponse, agp_llm::LlmError> {
        let mut req = req.clone();
        req.priority = self.priority(req.account);
        self.inner.label_logprobs(&req).await
    }
}

/// The config a job runs with, checked against its candidate file. Every job is resolved before
/// the first LLM call, so a bad row costs nothing. With `take_available_users`, a method asking
/// for more training users than the candidate file could give trains on those it has (the
/// report's backbone table says how many were taken).
pub fn job_config(job: &MethodJob<'_>) -> Result<MethodSpec> {
    let mut spec = job.row.config.clone();
    let available = job.backbone.candidates.train_users.len();
    let at = || {
        format!(
            "{}/{}: method {:?}",
            job.ds.name, job.backbone.facts.backbone, job.row.label
        )
    };
    match &mut spec {
        MethodSpec::Builtin(cfg) => {
            if job.exp.settings.take_available_users
                && let Some(n) = cfg.n_train_users_mut()
                && n.is_some_and(|n| n > available)
            {
                *n = Some(available);
            }
            cfg.validate(&job.backbone.candidates).with_context(at)?;
        }
        MethodSpec::Registered(r) => {
            r.method()?
                .check_data(&job.backbone.candidates)
                .with_context(at)?;
        }
        MethodSpec::External(c) => {
            if job.exp.settings.take_available_users
                && c.n_train_users.is_some_and(|n| n > available)
            {
                c.n_train_users = Some(available);
            }
            c.validate(&job.backbone.candidates)
                .map_err(anyhow::Error::msg)
                .with_context(at)?;
        }
    }
    Ok(spec)
}

/// Run one cell with the config [`job_config`] resolved for it.
pub async fn run_method(job: MethodJob<'_>, cfg: MethodSpec) -> Result<Cell> {
    let sampling = job.exp.settings.sampling();
    let cands_json = serde_json::to_string(&job.backbone.candidates)?;
    let key = format!(
        "{}/{}/{}/{}",
        job.ds.name, job.backbone.facts.backbone, job.llm_spec, job.row.label
    );
    let cfg_json = serde_json::to_string(&cfg)?;
    let sampling_json = serde_json::to_string(&sampling)?;
    let item_text = format!("item text rich: {}", job.row.item_text == ItemText::Rich);
    let order = job.row.order.map(|o| format!("candidate order: {o}"));
    let mut parts = vec![
        cands_json.as_str(),
        cfg_json.as_str(),
        job.llm_spec,
        job.llm_identity,
        sampling_json.as_str(),
        item_text.as_str(),
        job.exp.scoring.name(),
    ];
    // Only where an order is declared, so the runs made before order controls keep their
    // directories.
    parts.extend(order.as_deref());
    let fingerprint = sha256_hex(&parts);
    let log_dir = run_dir(job.runs, job.exp, job.seed, &key, &fingerprint);
    let names = [
        "candidates",
        "method config",
        "llm",
        "llm identity",
        "sampling",
        "item text",
        "scoring",
        "candidate order",
    ];
    let inputs = crate::inputs::CellInputs::new(names.into_iter().zip(parts.iter().copied()));
    crate::inputs::before_cell(&log_dir, &key, &inputs, job.live_recordings)?;
    let mut opts = RunOptions {
        sampling,
        log_dir: Some(log_dir.clone()),
        jobs: job.jobs,
        seed: job.seed,
        // Cells run side by side; the run shows one bar over all of them.
        progress: false,
        on_failure: job.on_failure,
        ledger: job.ledger.clone(),
        scoring: job.exp.scoring,
    };
    let trains = match &cfg {
        MethodSpec::Builtin(c) => c.training_epochs() > 1,
        MethodSpec::External(c) => c.epochs > 1,
        // A registered method is evaluated only: what it learns, it learns in its reranker.
        MethodSpec::Registered(_) => false,
    };
    let llm: Arc<dyn agp_llm::ChatModel> = Arc::new(Prioritized {
        inner: job.llm.clone(),
        training: if trains { 3 } else { 1 },
        evaluation: if trains { 2 } else { 1 },
    });
    // A call that still failed transiently after its retries (transport, 429, 5xx, timeout, a
    // malformed body: `FailureReason::is_transient`) is asked again in another round; a
    // refusal, a filter or an empty answer is the model's answer and is not. The cell
    // starts over (its checkpoint holds the failure, so it is not resumed), every answered call
    // replays from the recordings for nothing, and only the failed ones go out again, with a
    // fresh retry budget. A storm that beats one budget by bad luck (at 20% transient faults per
    // attempt, about 1 request in 7,000) then leaves the report a fault-free run writes.
    let mut round = 1;
    let mut batch_rounds = 0usize;
    loop {
        // With --batch a cell runs many rounds, each replaying the last one's answers: each
        // round books into a ledger of its own and only the last one counts (the Recorder
        // books what this process paid for as live in every round).
        let round_ledger = job.batcher.is_some().then(agp_llm::UsageLedger::default);
        if let Some(l) = &round_ledger {
            opts.ledger = l.clone();
        }
        let run = match &cfg {
            MethodSpec::Builtin(c) => match job.row.order {
                Some(order) => {
                    agp::run_method_in_order(
                        c,
                        order,
                        job.ds,
                        &job.backbone.candidates,
                        llm.clone(),
                        &opts,
                    )
                    .await
                }
                None => {
                    agp::run_method(c, job.ds, &job.backbone.candidates, llm.clone(), &opts).await
                }
            },
            MethodSpec::Registered(reg) => {
                let inner = reg.method()?.reranker();
                let mut r: Box<dyn agp::Reranker> = match job.row.order {
                    Some(order) => Box::new(agp::Ordered::new(inner, order)),
                    None => inner,
                };
                agp::run_reranker(
                    r.as_mut(),
                    &job.row.label,
                    reg.settings.clone(),
                    job.ds,
                    &job.backbone.candidates,
                    llm.clone(),
                    &opts,
                )
                .await
            }
            MethodSpec::External(c) => {
                let external = ExternalReranker::new(
                    c.clone(),
                    job.cwd.to_path_buf(),
                    job.ds,
                    &job.backbone.candidates,
                );
                let mut r: Box<dyn agp::Reranker> = match job.row.order {
                    Some(order) => Box::new(agp::Ordered::new(Box::new(external), order)),
                    None => Box::new(external),
                };
                agp::run_reranker(
                    r.as_mut(),
                    &job.row.label,
                    serde_json::to_value(c)?,
                    job.ds,
                    &job.backbone.candidates,
                    llm.clone(),
                    &opts,
                )
                .await
            }
        }
        .with_context(|| format!("running {key}"))?;
        let deferred = run
            .failures
            .get(&agp_llm::FailureReason::Deferred)
            .copied()
            .unwrap_or(0);
        if deferred > 0 {
            // With --batch a miss of the bulk stages is kept for a batch instead of asked: the
            // batch answers them into the recordings, and the cell runs again, replaying those
            // and deferring whatever depends on them, until nothing is deferred. A request a
            // batch could not answer goes through the synchronous path next time.
            let Some(batcher) = &job.batcher else {
                bail!("{key}: {deferred} call(s) deferred to a batch, but no batch is running");
            };
            batch_rounds += 1;
            if batch_rounds > MAX_BATCH_ROUNDS {
                bail!("{key}: still deferring calls after {MAX_BATCH_ROUNDS} batch rounds");
            }
            // Cells flush in turns; a cell whose requests another cell's batch took finds them
            // answered when its turn comes.
            batcher
                .flush()
                .await
                .with_context(|| format!("{key}: running a batch"))?;
            continue;
        }
        let transient: u64 = run
            .failures
            .iter()
            .filter(|(r, _)| r.is_transient())
            .map(|(_, n)| n)
            .sum();
        if transient == 0 || round >= FAILURE_ROUNDS {
            crate::inputs::after_cell(&log_dir, &inputs, job.live_recordings)?;
            for call in round_ledger.map(|l| l.calls()).unwrap_or_default() {
                job.ledger.book(call);
            }
            return Ok(cell_from_run(&job, &cfg, run));
        }
        eprintln!(
            "{key}: {transient} call(s) failed after every retry; round {} of {FAILURE_ROUNDS} \
             asks them again (answered calls replay)",
            round + 1
        );
        round += 1;
    }
}

/// Rounds a cell runs while calls fail transiently (with recordings, later rounds pay only
/// for the failed calls).
const FAILURE_ROUNDS: usize = 3;

/// Batch rounds a cell may take: one per step of its longest chain of dependent bulk calls
/// (PRP's sorting passes are the longest), with room to spare.
const MAX_BATCH_ROUNDS: usize = 1000;

fn cell_from_run(job: &MethodJob<'_>, cfg: &MethodSpec, run: MethodRun) -> Cell {
    let (asked, missing) = run.calls.values().fold((0, 0), |(a, m), t| {
        (a + t.labels_asked, m + t.labels_missing)
    });
    if missing as f64 > crate::report::MISSING_LABELS_FLAG * asked as f64 {
        eprintln!(
            "warning: {}/{}/{}/{}: {missing} of {asked} labels were missing from the provider's \
             top log-probabilities; the report flags the row",
            job.ds.name, job.backbone.facts.backbone, job.llm_spec, job.row.label
        );
    }
    let uses_llm = !matches!(cfg, MethodSpec::Builtin(MethodConfig::Base(_)));
    let settings: BTreeMap<String, String> = job
        .row
        .table
        .iter()
        .filter(|(k, _)| *k != "label" && *k != "kind")
        .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string()))
        .collect();
    let n_epochs = run.epochs.len() as f64;
    Cell {
        seed: job.seed,
        dataset: job.ds.name.clone(),
        backbone: job.backbone.facts.backbone.clone(),
        llm: if uses_llm {
            job.llm_spec.to_string()
        } else {
            String::new()
        },
        llm_paper_label: crate::paper::llm_label(&run.model.model).map(str::to_string),
        label: job.row.label.clone(),
        kind: job.row.kind.clone(),
        settings,
        method: cfg.clone(),
        eq7_training_calls: run.eq7_calls_per_epoch.map(|x| x * n_epochs),
        formula_calls: match cfg {
            MethodSpec::Builtin(c) if c.training_epochs() == 0 => {
                let per = match job.row.order {
                    Some(order) if uses_llm => order.calls_per_user(c.calls_per_user(K)),
                    _ => c.calls_per_user(K),
                };
                let users = run.last.users.len() as u64;
                Some((per.min * users, per.max * users))
            }
            MethodSpec::Registered(r) => r.method.as_ref().map(|m| {
                let per = match job.row.order {
                    Some(order) => order.calls_per_user(m.calls_per_user(K)),
                    None => m.calls_per_user(K),
                };
                let users = run.last.users.len() as u64;
                (per.min * users, per.max * users)
            }),
            _ => None,
        },
        estimated_cost_usd: agp_llm::usage::PriceTable::builtin().cost_usd(
            &run.model.model,
            &agp_llm::Usage {
                prompt_tokens: run.prompt_tokens,
                completion_tokens: run.completion_tokens,
                ..Default::default()
            },
        ),
        run,
    }
}
