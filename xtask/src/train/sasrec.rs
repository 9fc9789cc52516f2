//! `cargo xtask train sasrec`: train (or reload) SASRec, evaluate it both ways, export candidates.

use agp_datasets::{Cache, Dataset, DatasetSource, PrepareOptions, prepare_cached};
use agp_recommenders::Popularity;
use agp_recommenders::eval::{Split, rank_targets};
use agp_recommenders::export::{self, ExportOptions, Provenance};
use agp_recommenders::sasrec::{self, SasRec, SasRecConfig, TrainOptions, TrainReport};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// ml-latest-small (bundled), ml-100k, ml-1m, or recbole:<dir>
    #[arg(long, default_value = "ml-latest-small")]
    dataset: String,
    /// Maximum epochs [default: 200; early stopping on validation NDCG@10 may end sooner].
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 2020)]
    seed: u64,
    /// Window length [default: 200 for dense data like ML-1M, else 50].
    #[arg(long)]
    maxlen: Option<usize>,
    /// Dropout [default: 0.2 for dense data like ML-1M, else 0.5].
    #[arg(long)]
    dropout: Option<f64>,
    /// Evaluate on the validation items every N epochs.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Stop after this many evaluations without improvement (0 = never).
    #[arg(long)]
    patience: Option<usize>,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    json: bool,
    /// Write the top-10 candidate file here.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Test users in the candidate file.
    #[arg(long, default_value_t = 300)]
    n_test: usize,
    /// Prompt-training users in the candidate file (disjoint from the test users).
    #[arg(long, default_value_t = 100)]
    n_train: usize,
    /// If fewer users have their test item in their top 10 than requested, split those that do.
    #[arg(long)]
    take_available: bool,
    /// Retrain even if a model with the same dataset, hyper-parameters and seed is cached.
    #[arg(long)]
    retrain: bool,
}

fn load_dataset(name: &str) -> anyhow::Result<Dataset> {
    let source = DatasetSource::parse(name, None)?;
    let (ds, _, _) = prepare_cached(&source, &PrepareOptions::default(), &Cache::workspace())
        .with_context(|| format!("preparing dataset {name}"))?;
    Ok(ds)
}

pub fn config_for(ds: &Dataset, a: &Args) -> SasRecConfig {
    let mut cfg = SasRecConfig::for_dataset(ds);
    cfg.seed = a.seed;
    if let Some(e) = a.epochs {
        cfg.num_epochs = e;
        // Short runs still evaluate (and keep) the final epoch.
        cfg.eval_every = cfg.eval_every.min(e.max(1));
    }
    if let Some(m) = a.maxlen {
        cfg.maxlen = m;
    }
    if let Some(d) = a.dropout {
        cfg.dropout_rate = d;
    }
    if let Some(e) = a.eval_every {
        cfg.eval_every = e;
    }
    if let Some(p) = a.patience {
        cfg.patience = p;
    }
    cfg
}

/// Train SASRec, or reload it with the report of the run that trained it, from the one model
/// store `train` and `reproduce` share: a warm cache gives the same facts (epochs run, best
/// epoch) as a cold one.
pub fn train_or_load(
    ds: &Dataset,
    cfg: &SasRecConfig,
    retrain: bool,
    progress: bool,
) -> anyhow::Result<(SasRec, TrainReport, bool)> {
    let root = agp_datasets::workspace_root();
    let path = sasrec::model_cache_path(&root.join(".cache"), ds, cfg);
    let report_path = path.with_extension("report.json");
    let cached = !retrain && path.exists() && report_path.exists();
    if cached {
        let model = SasRec::load(&path, ds)?;
        let report = serde_json::from_slice(
            &std::fs::read(&report_path).with_context(|| report_path.display().to_string())?,
        )
        .with_context(|| format!("reading {}", report_path.display()))?;
        return Ok((model, report, true));
    }
    let (model, report) = SasRec::train(ds, cfg, &TrainOptions { progress })?;
    model.save(&path, ds)?;
    std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| report_path.display().to_string())?;
    Ok((model, report, false))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let ds = load_dataset(&a.dataset)?;
    let cfg = config_for(&ds, &a);
    cfg.validate()?;
    let root = agp_datasets::workspace_root();
    let path = sasrec::model_cache_path(&root.join(".cache"), &ds, &cfg);
    let report_path = path.with_extension("report.json");
    let cached = !a.retrain && path.exists() && report_path.exists();
    if !cached && !a.json {
        eprintln!(
            "sasrec on {}: {} users, {} items; d {}, maxlen {}, dropout {}, ≤{} epochs",
            ds.name,
            ds.n_users(),
            ds.n_items(),
            cfg.hidden_units,
            cfg.maxlen,
            cfg.dropout_rate,
            cfg.num_epochs
        );
    }
    let (model, report, cached) = train_or_load(&ds, &cfg, a.retrain, !a.json)?;

    let t = Instant::now();
    let full = rank_targets(&model, &ds, Split::Test)?;
    let pop = rank_targets(&Popularity::fit(&ds), &ds, Split::Test)?;
    let sampled = sasrec::sampled_eval(&model, &ds, Split::Test, 100, a.seed)?;
    let eval_secs = t.elapsed().as_secs_f64();

    let mut out: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut put = |k: &str, v: serde_json::Value| {
        out.insert(k.to_owned(), v);
    };
    put("model", "sasrec".into());
    put("dataset", ds.name.clone().into());
    put("dataset_checksum", ds.checksum.clone().into());
    put("seed", a.seed.into());
    put("recall@20", full.recall(20).into());
    put("ndcg@20", full.ndcg(20).into());
    put("hr@10", full.hr(10).into());
    put("ndcg@10", full.ndcg(10).into());
    put("hits@10", full.hits(10).into());
    put("popularity_ndcg@20", pop.ndcg(20).into());
    put("sampled_hr@10", sampled.hr10.into());
    put("sampled_ndcg@10", sampled.ndcg10.into());
    put("sampled_negatives", sampled.n_negatives.into());
    put("epochs", report.epochs.into());
    put("best_epoch", report.best_epoch.into());
    put("seconds_per_epoch", report.seconds_per_epoch.into());
    put("eval_seconds", eval_secs.into());
    put("cached_model", cached.into());
    put("hyperparameters", serde_json::to_value(&cfg)?);

    if let Some(export_path) = &a.export {
        let opts = ExportOptions {
            n_test: a.n_test,
            n_train: a.n_train,
            take_available: a.take_available,
            ..ExportOptions::default()
        };
        let prov = Provenance::new("sasrec", a.seed).with_hyperparameters(&cfg);
        let file = export::export_candidates(&model, &ds, prov, &opts)?;
        file.write(export_path)?;
        put("export", export_path.display().to_string().into());
        put("export_test_users", file.test_users.len().into());
        put("export_train_users", file.train_users.len().into());
    }

    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        eprintln!(
            "sasrec {} (seed {}): {} epochs (best {:?}), {:.3} s/epoch{}",
            ds.name,
            a.seed,
            report.epochs,
            report.best_epoch,
            report.seconds_per_epoch,
            if cached { ", reloaded from cache" } else { "" }
        );
        eprintln!(
            "  full ranking: Recall@20 {:.4}  NDCG@20 {:.4}  HR@10 {:.4}  NDCG@10 {:.4}  hits@10 {}/{}",
            full.recall(20),
            full.ndcg(20),
            full.hr(10),
            full.ndcg(10),
            full.hits(10),
            full.n_users()
        );
        eprintln!(
            "  100 sampled negatives: HR@10 {:.4}  NDCG@10 {:.4}   popularity NDCG@20 {:.4}",
            sampled.hr10,
            sampled.ndcg10,
            pop.ndcg(20)
        );
        if let Some(p) = &a.export {
            eprintln!("  candidates written to {}", p.display());
        }
    }
    Ok(())
}
