//! One training path for both backbones: the same settings, the same store under
//! [`Workspace::models`], and the same facts whether a model was trained now or reloaded.
//!
//! `cargo xtask train <backbone>` and `reproduce` both come through [`train_or_load`], so a
//! warm cache reports what the cold run that filled it reported (epochs run, best epoch, early
//! stop): the report of the training run is stored beside the model.

use crate::Workspace;
use agp_datasets::Dataset;
use agp_recommenders::Scorer;
use agp_recommenders::export::Provenance;
use agp_recommenders::lightgcn::{self, LightGcnConfig, ModelStore};
use agp_recommenders::sasrec::{self, SasRec, SasRecConfig, TrainOptions};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The native backbones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// LightGCN (He et al., SIGIR'20), as in the official PyTorch code.
    LightGcn,
    /// SASRec (Kang & McAuley, ICDM'18), as in the original TF code and pmixer's port.
    SasRec,
}

impl BackboneKind {
    pub const ALL: [BackboneKind; 2] = [BackboneKind::LightGcn, BackboneKind::SasRec];

    pub fn name(self) -> &'static str {
        match self {
            Self::LightGcn => "lightgcn",
            Self::SasRec => "sasrec",
        }
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackboneKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "lightgcn" => Ok(Self::LightGcn),
            "sasrec" => Ok(Self::SasRec),
            other => bail!("unknown backbone {other:?} (known: lightgcn, sasrec)"),
        }
    }
}

/// What to train: the backbone's defaults for the dataset, then these settings.
#[derive(Debug, Clone, Default)]
pub struct TrainSettings {
    pub seed: u64,
    /// Maximum epochs (early stopping may end sooner).
    pub epochs: Option<usize>,
    /// Validate every this many epochs.
    pub eval_every: Option<usize>,
    /// Validations without improvement before stopping (0: never).
    pub patience: Option<usize>,
    /// Any other hyper-parameter by its config field name, e.g. `("dim", 128)`.
    pub set: Vec<(String, serde_json::Value)>,
    /// Train even when the store holds a model for these settings.
    pub retrain: bool,
    pub progress: bool,
}

/// What a training run did: the same whether the model was trained now or reloaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainFacts {
    pub backbone: BackboneKind,
    pub epochs_run: usize,
    /// The epoch whose parameters were kept (best validation), if any validation ran.
    pub best_epoch: Option<usize>,
    pub stopped_early: bool,
    /// Training time per epoch of the run that trained it, evaluation excluded.
    pub seconds_per_epoch: f64,
    /// Mean training loss of each epoch run.
    pub losses: Vec<f64>,
    /// `(epoch, validation NDCG)` at every validation (NDCG@20 for LightGCN as in its official
    /// code, NDCG@10 for SASRec).
    pub valid_ndcg: Vec<(usize, f64)>,
    pub hyperparameters: serde_json::Value,
}

/// A trained (or reloaded) backbone.
pub struct Trained {
    pub model: Box<dyn Scorer + Send>,
    pub facts: TrainFacts,
    /// Loaded from the store rather than trained now.
    pub cached: bool,
    /// How the candidate file says it was made.
    pub provenance: Provenance,
}

/// Applies `settings` to a config through its serialised form, so every field is settable by
/// name and a wrong name or type is an error naming it.
fn configure<C: Serialize + serde::de::DeserializeOwned>(
    base: C,
    kind: BackboneKind,
    fields: &[(&str, Option<serde_json::Value>)],
    set: &[(String, serde_json::Value)],
) -> Result<C> {
    let mut v = serde_json::to_value(base)?;
    let obj = v.as_object_mut().expect("configs serialise as objects");
    let mut apply = |k: &str, val: serde_json::Value| -> Result<()> {
        if !obj.contains_key(k) {
            let known: Vec<&str> = obj.keys().map(String::as_str).collect();
            bail!("{kind} has no setting {k:?} (known: {})", known.join(", "));
        }
        obj.insert(k.to_string(), val);
        Ok(())
    };
    for (k, val) in fields {
        if let Some(val) = val {
            apply(k, val.clone())?;
        }
    }
    for (k, val) in set {
        apply(k, val.clone())?;
    }
    serde_json::from_value(v).with_context(|| format!("{kind} settings"))
}

/// The LightGCN config `settings` describe.
pub fn lightgcn_config(s: &TrainSettings) -> Result<LightGcnConfig> {
    let cfg: LightGcnConfig = configure(
        LightGcnConfig::default(),
        BackboneKind::LightGcn,
        &[
            ("seed", Some(s.seed.into())),
            ("epochs", s.epochs.map(Into::into)),
            ("eval_every", s.eval_every.map(Into::into)),
            ("patience", s.patience.map(Into::into)),
        ],
        &s.set,
    )?;
    cfg.validate()?;
    Ok(cfg)
}

/// The SASRec config `settings` describe on `ds` (its window and dropout depend on the data).
pub fn sasrec_config(ds: &Dataset, s: &TrainSettings) -> Result<SasRecConfig> {
    let mut base = SasRecConfig::for_dataset(ds);
    if let Some(e) = s.epochs {
        // Short runs still evaluate (and keep) the final epoch.
        base.eval_every = base.eval_every.min(e.max(1));
    }
    let cfg: SasRecConfig = configure(
        base,
        BackboneKind::SasRec,
        &[
            ("seed", Some(s.seed.into())),
            ("num_epochs", s.epochs.map(Into::into)),
            ("eval_every", s.eval_every.map(Into::into)),
            ("patience", s.patience.map(Into::into)),
        ],
        &s.set,
    )?;
    cfg.validate()?;
    Ok(cfg)
}

/// Train `kind` on `ds`, or reload it with the facts of the run that trained it.
pub fn train_or_load(
    ws: &Workspace,
    ds: &Dataset,
    kind: BackboneKind,
    s: &TrainSettings,
) -> Result<Trained> {
    match kind {
        BackboneKind::LightGcn => {
            let config = lightgcn_config(s)?;
            let store = ModelStore::new(ws.models());
            let bar = agp_recommenders::progress::epoch_bar(config.epochs, s.progress);
            bar.set_prefix(format!("lightgcn {}", ds.name));
            let on_epoch = |e: &lightgcn::EpochLog| {
                bar.set_position(e.epoch as u64);
                bar.set_message(format!("loss {:.4}", e.loss));
            };
            let (model, report, cached) = if s.retrain {
                let (m, r) = lightgcn::train(ds, &config, on_epoch)?;
                store.save(ds, &m, &r)?;
                (m, r, false)
            } else {
                lightgcn::train_cached(ds, &config, &store, on_epoch)?
            };
            bar.finish_and_clear();
            let facts = TrainFacts {
                backbone: kind,
                epochs_run: report.epochs_run(),
                best_epoch: report
                    .epochs
                    .iter()
                    .any(|e| e.valid.is_some())
                    .then_some(report.best_epoch),
                stopped_early: report.stopped_early,
                seconds_per_epoch: report.seconds_per_epoch(),
                losses: report.epochs.iter().map(|e| e.loss).collect(),
                valid_ndcg: report
                    .epochs
                    .iter()
                    .filter_map(|e| Some((e.epoch, *e.valid.as_ref()?.get("ndcg@20")?)))
                    .collect(),
                hyperparameters: serde_json::to_value(&config)?,
            };
            Ok(Trained {
                model: Box::new(model),
                facts,
                cached,
                provenance: Provenance::new("lightgcn", config.seed).with_hyperparameters(&config),
            })
        }
        BackboneKind::SasRec => {
            let config = sasrec_config(ds, s)?;
            let path = sasrec::model_cache_path(&ws.cache(), ds, &config);
            let report_path = path.with_extension("report.json");
            let cached = !s.retrain && path.exists() && report_path.exists();
            let (model, report) = if cached {
                let model = SasRec::load(&path, ds)?;
                let bytes = std::fs::read(&report_path)
                    .with_context(|| format!("reading {}", report_path.display()))?;
                let report: sasrec::TrainReport = serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", report_path.display()))?;
                (model, report)
            } else {
                let (model, report) = SasRec::train(
                    ds,
                    &config,
                    &TrainOptions {
                        progress: s.progress,
                    },
                )?;
                model.save(&path, ds)?;
                std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", report_path.display()))?;
                (model, report)
            };
            let facts = TrainFacts {
                backbone: kind,
                epochs_run: report.epochs,
                best_epoch: report.best_epoch,
                stopped_early: report.epochs < config.num_epochs,
                seconds_per_epoch: report.seconds_per_epoch,
                losses: report.losses.clone(),
                valid_ndcg: report.valid_ndcg10.clone(),
                hyperparameters: serde_json::to_value(&config)?,
            };
            Ok(Trained {
                model: Box::new(model),
                facts,
                cached,
                provenance: Provenance::new("sasrec", config.seed).with_hyperparameters(&config),
            })
        }
    }
}
