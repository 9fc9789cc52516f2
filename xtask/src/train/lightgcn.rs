//! `cargo xtask train lightgcn`: train (or load) LightGCN, report validation per epoch and test
//! metrics beside popularity, and optionally export the paper's top-K candidate file.

use agp_datasets::{Cache, DatasetSource, PrepareOptions, prepare_cached};
use agp_recommenders::eval::{self, Split};
use agp_recommenders::export::{self, ExportOptions, Provenance};
use agp_recommenders::lightgcn::{self, LightGcnConfig, ModelStore};
use agp_recommenders::progress;
use anyhow::Context;
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Dataset name (ml-latest-small is bundled; see `cargo xtask data --help` for the others).
    #[arg(long, default_value = "ml-latest-small")]
    dataset: String,
    /// Directory with the dataset's raw files [default: the dataset's usual place].
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Maximum epochs (early stopping on validation NDCG@20 may stop sooner).
    #[arg(long, default_value_t = LightGcnConfig::default().epochs)]
    epochs: usize,
    /// Seed of initialisation and sampling (the official code's default is 2020).
    #[arg(long, default_value_t = LightGcnConfig::default().seed)]
    seed: u64,
    #[arg(long, default_value_t = LightGcnConfig::default().dim)]
    dim: usize,
    #[arg(long, default_value_t = LightGcnConfig::default().layers)]
    layers: usize,
    #[arg(long, default_value_t = LightGcnConfig::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = LightGcnConfig::default().decay)]
    decay: f64,
    #[arg(long, default_value_t = LightGcnConfig::default().batch_size)]
    batch_size: usize,
    /// Validate every this many epochs.
    #[arg(long, default_value_t = LightGcnConfig::default().eval_every)]
    eval_every: usize,
    /// Stop after this many validations without improvement (0: never).
    #[arg(long, default_value_t = LightGcnConfig::default().patience)]
    patience: usize,
    /// Print only the final JSON on stdout (no per-epoch lines).
    #[arg(long)]
    json: bool,
    /// Retrain even if a model with the same dataset, hyper-parameters and seed is stored.
    #[arg(long)]
    no_cache: bool,
    /// Where trained models are stored [default: .cache/models in the workspace].
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Write the candidate file (every user's top-K and the sampled user sets) here.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Also write the reference code's `{model}_Ranking.json` layout here (raw ids).
    #[arg(long)]
    ranking_json: Option<PathBuf>,
    /// Also write the reference code's per-backbone interaction file here (train users, then
    /// test users; history followed by the test item).
    #[arg(long)]
    inter_tsv: Option<PathBuf>,
    /// Write the split in the official LightGCN text format to this directory (for the
    /// PyTorch peer under bench/).
    #[arg(long)]
    write_split: Option<PathBuf>,
    /// Candidate list length K.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Test users to draw (their test item must be in their top-K).
    #[arg(long, default_value_t = 300)]
    n_test: usize,
    /// Training users to draw (100 in the paper, 700 for the scaling study).
    #[arg(long, default_value_t = 100)]
    n_train: usize,
    /// Validation users to draw.
    #[arg(long, default_value_t = 0)]
    n_valid: usize,
    /// Seed of the user draw [default: --seed].
    #[arg(long)]
    sample_seed: Option<u64>,
    /// When fewer eligible users exist than requested, split those that exist instead of failing.
    #[arg(long)]
    take_available: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let source = DatasetSource::parse(&a.dataset, a.raw.clone())?;
    let (dataset, _, _) = prepare_cached(&source, &PrepareOptions::default(), &Cache::workspace())
        .with_context(|| format!("preparing dataset {}", a.dataset))?;
    let config = LightGcnConfig {
        dim: a.dim,
        layers: a.layers,
        lr: a.lr,
        decay: a.decay,
        batch_size: a.batch_size,
        epochs: a.epochs,
        eval_every: a.eval_every,
        patience: a.patience,
        seed: a.seed,
        ..LightGcnConfig::default()
    };
    config.validate()?;
    let export_options = ExportOptions {
        k: a.k,
        n_test: a.n_test,
        n_train: a.n_train,
        n_valid: a.n_valid,
        seed: a.sample_seed.unwrap_or(a.seed),
        take_available: a.take_available,
    };
    if let Some(dir) = &a.write_split {
        lightgcn::write_official_split(&dataset, dir)
            .with_context(|| format!("writing the split to {}", dir.display()))?;
    }
    let store = ModelStore::new(
        a.models_dir
            .clone()
            .unwrap_or_else(|| ModelStore::workspace().dir().to_owned()),
    );
    if !a.json {
        eprintln!(
            "{}: {} users, {} items, {} interactions; LightGCN d={} K={} lr={} decay={} batch={} seed={}",
            dataset.name,
            dataset.n_users(),
            dataset.n_items(),
            dataset.n_interactions(),
            config.dim,
            config.layers,
            config.lr,
            config.decay,
            config.batch_size,
            config.seed
        );
    }
    let bar = progress::epoch_bar(config.epochs, !a.json);
    bar.set_prefix("lightgcn");
    let on_epoch = |e: &lightgcn::EpochLog| {
        bar.set_position(e.epoch as u64);
        bar.set_message(format!("loss {:.4}", e.loss));
        if let (Some(v), false) = (&e.valid, a.json) {
            let line = format!(
                "epoch {:>4}  loss {:.5}  {:.2}s  valid recall@20 {:.4}  ndcg@20 {:.4}  hr@10 {:.4}",
                e.epoch, e.loss, e.seconds, v["recall@20"], v["ndcg@20"], v["hr@10"]
            );
            // A hidden bar (stderr not a terminal) swallows println; logs must still show.
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    };
    let (model, report, cached) = if a.no_cache {
        let (m, r) = lightgcn::train(&dataset, &config, on_epoch)?;
        store.save(&dataset, &m, &r)?;
        (m, r, false)
    } else {
        lightgcn::train_cached(&dataset, &config, &store, on_epoch)?
    };
    bar.finish_and_clear();

    let test = lightgcn::test_summary(&dataset, &model)?;
    let hits = eval::rank_targets(&model, &dataset, Split::Test)?.hits(a.k);
    let mut out = json!({
        "dataset": dataset.name,
        "dataset_checksum": dataset.checksum,
        "model": "lightgcn",
        "config": config,
        "from_cache": cached,
        "epochs": report.epochs_run(),
        "best_epoch": report.best_epoch,
        "stopped_early": report.stopped_early,
        "seconds_per_epoch": report.seconds_per_epoch(),
        "final_loss": report.epochs.last().map(|e| e.loss),
        format!("test_hits@{}", a.k): hits,
        "best_valid": report.best_valid(),
    });
    for (k, v) in &test {
        out[k] = json!(v);
    }

    if let Some(path) = &a.export {
        let provenance = Provenance::new("lightgcn", config.seed).with_hyperparameters(&config);
        let file = export::export_candidates(&model, &dataset, provenance, &export_options)?;
        file.write(path)?;
        if let Some(p) = &a.ranking_json {
            std::fs::write(p, file.reference_ranking_json(&dataset))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(p) = &a.inter_tsv {
            std::fs::write(p, file.reference_inter_tsv(&dataset))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        out["export"] = json!({
            "path": path,
            "eligible": file.sampling.eligible,
            "test_users": file.test_users.len(),
            "train_users": file.train_users.len(),
            "valid_users": file.valid_users.len(),
            "took_available": file.sampling.took_available,
        });
    } else if a.ranking_json.is_some() || a.inter_tsv.is_some() {
        anyhow::bail!("--ranking-json and --inter-tsv need --export (they are views of that file)");
    }

    if !a.json {
        eprintln!(
            "{} epochs (best {}), {:.3} s/epoch{}; test recall@20 {:.4} ndcg@20 {:.4} hr@10 {:.4} ndcg@10 {:.4} (popularity ndcg@20 {:.4}); {} users with the test item in their top-{}",
            report.epochs_run(),
            report.best_epoch,
            report.seconds_per_epoch(),
            if cached { " (loaded from cache)" } else { "" },
            test["recall@20"],
            test["ndcg@20"],
            test["hr@10"],
            test["ndcg@10"],
            test["popularity_ndcg@20"],
            hits,
            a.k
        );
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
