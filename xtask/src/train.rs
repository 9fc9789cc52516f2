//! `cargo xtask train <backbone>`: train (or reload) a backbone through the harness's one
//! training path, print its metrics beside popularity, and optionally export candidates.

use agp_datasets::{DatasetSource, PrepareOptions, prepare_cached};
use agp_harness::Workspace;
use agp_harness::train::{BackboneKind, TrainSettings, measure, train_or_load};
use agp_recommenders::export::ExportOptions;
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// lightgcn (He et al., SIGIR'20, as the official PyTorch code) or sasrec (Kang & McAuley,
    /// ICDM'18, as the original TF code and pmixer's port).
    #[arg(value_parser = ["lightgcn", "sasrec"])]
    backbone: String,
    /// ml-latest-small (bundled), ml-100k, ml-1m, amazon-movies-tv, yelp, goodreads, or
    /// recbole:<dir>.
    #[arg(long, default_value = "ml-latest-small")]
    dataset: String,
    /// Directory with the dataset's raw files [default: the dataset's usual place].
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Maximum epochs [default: the backbone's]; early stopping may end sooner.
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of initialisation and sampling (the official LightGCN code's default is 2020).
    #[arg(long, default_value_t = 2020)]
    seed: u64,
    /// Validate every this many epochs [default: the backbone's].
    #[arg(long)]
    eval_every: Option<usize>,
    /// Stop after this many validations without improvement (0: never).
    #[arg(long)]
    patience: Option<usize>,
    /// Any other hyper-parameter by its config name, as JSON: `--set dim=128 --set lr=0.002`.
    #[arg(long, value_parser = parse_set)]
    set: Vec<(String, serde_json::Value)>,
    /// Train even if the store holds a model for these settings.
    #[arg(long)]
    retrain: bool,
    /// Print only the final JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write the candidate file (every user's top-K and the sampled user sets) here.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Also write the reference code's `{model}_Ranking.json` layout here (raw ids).
    #[arg(long)]
    ranking_json: Option<PathBuf>,
    /// Also write the reference code's per-backbone interaction file here.
    #[arg(long)]
    inter_tsv: Option<PathBuf>,
    /// Write the split in the official LightGCN text format to this directory (for the
    /// PyTorch peers under bench/).
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
    /// When fewer eligible users exist than requested, split those that exist.
    #[arg(long)]
    take_available: bool,
}

fn parse_set(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
    Ok((k.to_string(), v))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let ws = Workspace::discover();
    let kind: BackboneKind = a.backbone.parse()?;
    let source = match &a.raw {
        Some(dir) => DatasetSource::parse(&a.dataset, Some(dir.clone()))?,
        None => ws.dataset_source(&a.dataset)?,
    };
    let (ds, _, _) = prepare_cached(&source, &PrepareOptions::default(), &ws.datasets_cache())
        .with_context(|| format!("preparing dataset {}", a.dataset))?;
    if let Some(dir) = &a.write_split {
        agp_recommenders::lightgcn::write_official_split(&ds, dir)
            .with_context(|| format!("writing the split to {}", dir.display()))?;
    }
    let settings = TrainSettings {
        seed: a.seed,
        epochs: a.epochs,
        eval_every: a.eval_every,
        patience: a.patience,
        set: a.set.clone(),
        retrain: a.retrain,
        progress: !a.json,
    };
    if !a.json {
        eprintln!(
            "{kind} on {}: {} users, {} items, {} interactions",
            ds.name,
            ds.n_users(),
            ds.n_items(),
            ds.n_interactions()
        );
    }
    let t = train_or_load(&ws, &ds, kind, &settings)?;
    let m = measure(&t, kind, &ds, a.k, a.seed)?;
    let (full, pop, mut out) = (m.full, m.popularity, m.summary);
    if let Some(path) = &a.export {
        let opts = ExportOptions {
            k: a.k,
            n_test: a.n_test,
            n_train: a.n_train,
            n_valid: a.n_valid,
            seed: a.seed,
            take_available: a.take_available,
        };
        let file = t.model.export(&ds, &opts)?;
        file.write(path)?;
        if let Some(p) = &a.ranking_json {
            std::fs::write(p, file.reference_ranking_json(&ds))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(p) = &a.inter_tsv {
            std::fs::write(p, file.reference_inter_tsv(&ds))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        out["export"] = serde_json::json!({
            "path": path,
            "eligible": file.sampling.eligible,
            "test_users": file.test_users.len(),
            "train_users": file.train_users.len(),
            "valid_users": file.valid_users.len(),
        });
    } else if a.ranking_json.is_some() || a.inter_tsv.is_some() {
        anyhow::bail!("--ranking-json and --inter-tsv need --export (they are views of that file)");
    }
    if !a.json {
        eprintln!(
            "{kind}: {} epochs (best {:?}{}), {:.3} s/epoch{}; test recall@20 {:.4} ndcg@20 {:.4} \
             hr@10 {:.4} ndcg@10 {:.4} (popularity ndcg@20 {:.4}); {} users with the test item \
             in their top-{}",
            t.report.epochs_run(),
            t.report.best_epoch,
            if t.report.stopped_early {
                ", stopped early"
            } else {
                ""
            },
            t.report.seconds_per_epoch(),
            if t.cached {
                " (loaded from the store)"
            } else {
                ""
            },
            full.recall(20),
            full.ndcg(20),
            full.hr(10),
            full.ndcg(10),
            pop.ndcg(20),
            full.hits(a.k),
            a.k
        );
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
