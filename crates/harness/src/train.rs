//! One training path for both backbones: the same settings, the same store under
//! [`Workspace::models`], and the same facts whether a model was trained now or reloaded.
//!
//! `cargo xtask train <backbone>` and `reproduce` both come through [`train_or_load`], so a
//! warm cache reports what the cold run that filled it reported (epochs run, best epoch, early
//! stop): the report of the training run is stored in the model file's header. Everything past
//! building the config goes through the `agp_recommenders` backbone traits.

use crate::Workspace;
use agp_datasets::Dataset;
pub use agp_recommenders::Trained;
use agp_recommenders::lightgcn::LightGcnConfig;
use agp_recommenders::sasrec::SasRecConfig;
use agp_recommenders::{BackboneConfig, EpochLog, ModelStore};
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

/// The config `settings` describe for `kind` on `ds`: the one place the backbones differ here.
pub fn backbone_config(
    ds: &Dataset,
    kind: BackboneKind,
    s: &TrainSettings,
) -> Result<Box<dyn BackboneConfig>> {
    Ok(match kind {
        BackboneKind::LightGcn => Box::new(lightgcn_config(s)?),
        BackboneKind::SasRec => Box::new(sasrec_config(ds, s)?),
    })
}

/// Train `kind` on `ds`, or reload it with the report of the run that trained it.
pub fn train_or_load(
    ws: &Workspace,
    ds: &Dataset,
    kind: BackboneKind,
    s: &TrainSettings,
) -> Result<Trained> {
    let config = backbone_config(ds, kind, s)?;
    let bar = agp_recommenders::progress::epoch_bar(config.max_epochs(), s.progress);
    bar.set_prefix(format!("{kind} {}", ds.name));
    let metric = config.select_metric();
    let mut observer = |e: &EpochLog| {
        bar.set_position(e.epoch as u64);
        match e.valid.as_ref().and_then(|v| v.get(metric)) {
            Some(v) => bar.set_message(format!("loss {:.4} valid {metric} {v:.4}", e.loss)),
            None => bar.set_message(format!("loss {:.4}", e.loss)),
        }
    };
    let trained = ModelStore::new(ws.models())
        .train_or_load(&*config, ds, s.retrain, &mut observer)
        .with_context(|| format!("training {kind} on {}", ds.name))?;
    bar.finish_and_clear();
    Ok(trained)
}

/// A trained backbone measured as `cargo xtask train` reports it: full-ranking metrics on the
/// test split, the same for popularity (the floor a backbone must clear), and the sampled
/// evaluation (100 negatives) SASRec's paper reports.
pub struct Measured {
    pub full: agp_recommenders::eval::Ranks,
    pub popularity: agp_recommenders::eval::Ranks,
    /// Flat keys, as the peer scripts under `bench/` read them: the run's facts, test
    /// recall/NDCG at 10 and 20 for both, hits in the top `k`, and the sampled HR/NDCG@10.
    pub summary: serde_json::Value,
}

/// Measures `t` on `ds`'s test split (see [`Measured`]); `seed` draws the sampled negatives.
pub fn measure(
    t: &Trained,
    kind: BackboneKind,
    ds: &Dataset,
    k: usize,
    seed: u64,
) -> Result<Measured> {
    use agp_recommenders::eval::{Split, rank_targets};
    let full = t.model.evaluate(ds, Split::Test)?;
    let popularity = rank_targets(&agp_recommenders::Popularity::fit(ds), ds, Split::Test)?;
    let sampled = agp_recommenders::sasrec::sampled_eval(&*t.model, ds, Split::Test, 100, seed)?;
    let mut summary = serde_json::json!({
        "model": kind.name(),
        "dataset": ds.name,
        "dataset_checksum": ds.checksum,
        "from_cache": t.cached,
        "epochs": t.report.epochs_run(),
        "best_epoch": t.report.best_epoch,
        "stopped_early": t.report.stopped_early,
        "seconds_per_epoch": t.report.seconds_per_epoch(),
        "final_loss": t.report.losses().last(),
        "valid_ndcg": t.report.valid_curve(),
        "hyperparameters": t.model.hyperparameters(),
        format!("test_hits@{k}"): full.hits(k),
        "sampled_hr@10": sampled.hr10,
        "sampled_ndcg@10": sampled.ndcg10,
    });
    for (key, v) in full.summary(&[10, 20]) {
        summary[key] = v.into();
    }
    for (key, v) in popularity.summary(&[10, 20]) {
        summary[format!("popularity_{key}")] = v.into();
    }
    Ok(Measured {
        full,
        popularity,
        summary,
    })
}
