//! What every backbone shares beyond scoring: one training report, one training loop (epochs,
//! validation, early stopping, keeping the best parameters), one progress observer, and one
//! cached path through a [`ModelStore`] that gives back the same [`TrainReport`] whether the
//! model was trained now or loaded.
//!
//! Two object-safe traits split the work: a [`BackboneConfig`] (hyper-parameters) trains and
//! loads, a [`Backbone`] (a trained model) evaluates, exports and saves. Callers hold
//! `Box<dyn …>` of either and never match on which model it is.
//!
//! ```no_run
//! # fn demo(ds: &agp_datasets::Dataset) -> Result<(), agp_recommenders::BackboneError> {
//! use agp_recommenders::{BackboneConfig, ModelStore, Split, lightgcn::LightGcnConfig};
//! let config: Box<dyn BackboneConfig> = Box::new(LightGcnConfig::default());
//! let store = ModelStore::new(".cache/models");
//! let t = store.train_or_load(&*config, ds, false, &mut |e| eprintln!("epoch {}", e.epoch))?;
//! println!("{} epochs, test NDCG@20 {:.4}", t.report.epochs_run(),
//!     t.model.evaluate(ds, Split::Test)?.ndcg(20));
//! # Ok(()) }
//! ```

use crate::early_stopping::{EarlyStopping, Verdict};
use crate::eval::{self, EvalError, Ranks, Split};
use crate::export::{self, ExportError, ExportOptions, Provenance};
use crate::model_file::{self, ModelFileError};
use crate::{Scorer, lightgcn, sasrec};
use agp_datasets::Dataset;
use agp_datasets::candidates::CandidateFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Cut-offs of the metrics recorded at every validation.
pub const REPORT_KS: [usize; 2] = [10, 20];

/// What happened in one epoch.
///
/// Its numbers serialise as decimal strings: serde_json's default number parser (without its
/// `float_roundtrip` feature) may read them one ulp off, and a reloaded report must equal the
/// one the training run returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// Mean minibatch training loss.
    #[serde(with = "exact")]
    pub loss: f64,
    /// Wall time of the training part, evaluation excluded.
    #[serde(with = "exact")]
    pub seconds: f64,
    /// Full-ranking validation metrics when this epoch was validated (`recall@K`, `ndcg@K`,
    /// `hr@K` for K in [`REPORT_KS`], and `mrr`).
    #[serde(with = "exact::metrics")]
    pub valid: Option<BTreeMap<String, f64>>,
}

/// f64 as the shortest decimal string that parses back to the same bits (Rust's `Display`
/// and `FromStr` are exact both ways).
mod exact {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(x)
    }

    fn parse<E: Error>(text: &str) -> Result<f64, E> {
        text.parse()
            .map_err(|_| E::custom(format!("{text:?} is not a number")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        parse(&String::deserialize(d)?)
    }

    pub mod metrics {
        use super::*;

        pub fn serialize<S: Serializer>(
            m: &Option<BTreeMap<String, f64>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let text: Option<BTreeMap<&str, String>> = m
                .as_ref()
                .map(|m| m.iter().map(|(k, v)| (k.as_str(), v.to_string())).collect());
            serde::Serialize::serialize(&text, s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<BTreeMap<String, f64>>, D::Error> {
            Option::<BTreeMap<String, String>>::deserialize(d)?
                .map(|m| m.into_iter().map(|(k, v)| Ok((k, parse(&v)?))).collect())
                .transpose()
        }
    }
}

/// The whole training run; model files store it, so a reload reports what the run reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub epochs: Vec<EpochLog>,
    /// Epoch whose parameters were kept (best validation), if any validation counted.
    pub best_epoch: Option<usize>,
    /// Early stopping ended training before the epoch budget.
    pub stopped_early: bool,
    /// The validation metric that early stopping and model selection use (`ndcg@20` for
    /// LightGCN as in its official code, `ndcg@10` for SASRec).
    pub select_metric: String,
}

impl TrainReport {
    pub fn epochs_run(&self) -> usize {
        self.epochs.len()
    }

    /// Mean training time per epoch, evaluation excluded.
    pub fn seconds_per_epoch(&self) -> f64 {
        if self.epochs.is_empty() {
            return 0.0;
        }
        self.epochs.iter().map(|e| e.seconds).sum::<f64>() / self.epochs.len() as f64
    }

    /// Mean training loss of each epoch run.
    pub fn losses(&self) -> Vec<f64> {
        self.epochs.iter().map(|e| e.loss).collect()
    }

    /// `(epoch, select metric)` at every validation.
    pub fn valid_curve(&self) -> Vec<(usize, f64)> {
        self.epochs
            .iter()
            .filter_map(|e| Some((e.epoch, *e.valid.as_ref()?.get(&self.select_metric)?)))
            .collect()
    }

    /// Validation metrics of the kept epoch.
    pub fn best_valid(&self) -> Option<&BTreeMap<String, f64>> {
        let best = self.best_epoch?;
        self.epochs.iter().find(|e| e.epoch == best)?.valid.as_ref()
    }
}

/// Sees every epoch as it finishes (a progress bar, a log line).
pub type Observer<'a> = &'a mut dyn FnMut(&EpochLog);

/// When to validate and stop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub max_epochs: usize,
    /// Validate every this many epochs, and after the last one.
    pub eval_every: usize,
    /// Validations without improvement before stopping (0: never).
    pub patience: usize,
    pub select_metric: &'static str,
}

/// A model under training, as the shared loop drives it.
pub(crate) trait Fit {
    /// One epoch; the mean training loss.
    fn epoch(&mut self) -> f64;
    /// Full-ranking validation of the current parameters.
    fn validate(&mut self) -> Result<Ranks, EvalError>;
    /// The current parameters are the best so far: keep them.
    fn keep_best(&mut self);
}

pub(crate) enum FitError {
    Diverged { epoch: usize, loss: f64 },
    Eval(EvalError),
}

/// The one training loop: epochs, validation on schedule, early stopping on the select metric.
/// Only the model decides what an epoch is and which parameters it ends with.
pub(crate) fn fit(
    model: &mut impl Fit,
    schedule: &Schedule,
    observer: Observer<'_>,
) -> Result<TrainReport, FitError> {
    let mut stopper = EarlyStopping::new(schedule.patience);
    let mut epochs = Vec::new();
    let mut stopped_early = false;
    for epoch in 1..=schedule.max_epochs {
        let t0 = Instant::now();
        let loss = model.epoch();
        let seconds = t0.elapsed().as_secs_f64();
        if !loss.is_finite() {
            return Err(FitError::Diverged { epoch, loss });
        }
        let mut log = EpochLog {
            epoch,
            loss,
            seconds,
            valid: None,
        };
        let mut stop = false;
        if epoch % schedule.eval_every == 0 || epoch == schedule.max_epochs {
            let valid = model
                .validate()
                .map_err(FitError::Eval)?
                .summary(&REPORT_KS);
            let value = valid
                .get(schedule.select_metric)
                .copied()
                .unwrap_or(f64::NAN);
            match stopper.observe(epoch, value) {
                Verdict::Improved => model.keep_best(),
                Verdict::Continue => {}
                Verdict::Stop => stop = true,
            }
            log.valid = Some(valid);
        }
        observer(&log);
        epochs.push(log);
        if stop {
            stopped_early = epoch < schedule.max_epochs;
            break;
        }
    }
    Ok(TrainReport {
        epochs,
        best_epoch: stopper.best().map(|(e, _)| e),
        stopped_early,
        select_metric: schedule.select_metric.to_string(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error(transparent)]
    LightGcn(#[from] lightgcn::LightGcnError),
    #[error(transparent)]
    SasRec(#[from] sasrec::SasRecError),
    #[error(transparent)]
    File(#[from] ModelFileError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// A trained backbone: scores (for [`eval`] and [`export`]), and saves itself with the report
/// of the run that trained it.
pub trait Backbone: Scorer + Send {
    /// The model file's backbone name, the store's file prefix and the candidate file's model.
    fn name(&self) -> &'static str;
    /// The hyper-parameters it was trained with, by config field name.
    fn hyperparameters(&self) -> serde_json::Value;
    fn seed(&self) -> u64;
    /// Writes the model file (atomically) with `report` in its header.
    fn save(
        &self,
        path: &Path,
        dataset: &Dataset,
        report: &TrainReport,
    ) -> Result<(), ModelFileError>;

    /// How candidate files say the model was made.
    fn provenance(&self) -> Provenance {
        Provenance::new(self.name(), self.seed()).with_hyperparameters(&self.hyperparameters())
    }

    /// Full-ranking ranks of `split`'s held-out items, history masked.
    fn evaluate(&self, dataset: &Dataset, split: Split) -> Result<Ranks, EvalError> {
        eval::rank_targets(self, dataset, split)
    }

    /// The paper's candidate file.
    fn export(
        &self,
        dataset: &Dataset,
        options: &ExportOptions,
    ) -> Result<CandidateFile, ExportError> {
        export::export_candidates(self, dataset, self.provenance(), options)
    }
}

/// A model and the report of the run that trained it.
pub type WithReport = (Box<dyn Backbone>, TrainReport);

/// A backbone's hyper-parameters: what trains a model, and what a stored one must match.
pub trait BackboneConfig: Send + Sync {
    /// The same name the trained [`Backbone`] gives.
    fn name(&self) -> &'static str;
    /// Every field, by name: the store's key and the report's record.
    fn hyperparameters(&self) -> serde_json::Value;
    /// The epoch budget (early stopping may end sooner).
    fn max_epochs(&self) -> usize;
    /// The validation metric early stopping and model selection use.
    fn select_metric(&self) -> &'static str;
    /// Trains on `dataset.train`, validating on `dataset.valid`; `observer` sees every epoch.
    fn train(&self, dataset: &Dataset, observer: Observer<'_>)
    -> Result<WithReport, BackboneError>;
    /// The model at `path` with the report of the run that trained it; `Ok(None)` when there
    /// is no file, an error naming the file when it holds another dataset, config or shape.
    fn load(&self, path: &Path, dataset: &Dataset) -> Result<Option<WithReport>, ModelFileError>;
}

/// A trained (or reloaded) backbone.
pub struct Trained {
    pub model: Box<dyn Backbone>,
    /// The report of the run that trained it, whether that was now or before.
    pub report: TrainReport,
    /// Loaded from the store rather than trained now.
    pub cached: bool,
}

/// A directory of trained models (`<workspace>/.cache/models` for the harness), keyed by
/// backbone, dataset checksum, every hyper-parameter (seed included) and the model-file format
/// version, so nothing is retrained when nothing changed and a file of an older format is
/// never read.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<name>-<dataset>-<key>.bin`, the key a hash of everything that changes the file.
    pub fn path_for(&self, config: &dyn BackboneConfig, dataset: &Dataset) -> PathBuf {
        let mut h = Sha256::new();
        h.update(model_file::MAGIC);
        h.update(model_file::FORMAT_VERSION.to_le_bytes());
        h.update(config.name().as_bytes());
        h.update(b"\0");
        h.update(dataset.checksum.as_bytes());
        h.update(b"\0");
        h.update(config.hyperparameters().to_string().as_bytes());
        let key = hex::encode(h.finalize());
        self.dir.join(format!(
            "{}-{}-{}.bin",
            config.name(),
            dataset.name,
            &key[..16]
        ))
    }

    /// Loads the model these settings trained before, or trains and stores it (always trains
    /// when `retrain`). A file that exists but cannot be used is an error naming it, never
    /// silently retrained over.
    pub fn train_or_load(
        &self,
        config: &dyn BackboneConfig,
        dataset: &Dataset,
        retrain: bool,
        observer: Observer<'_>,
    ) -> Result<Trained, BackboneError> {
        let path = self.path_for(config, dataset);
        if !retrain && let Some((model, report)) = config.load(&path, dataset)? {
            return Ok(Trained {
                model,
                report,
                cached: true,
            });
        }
        let (model, report) = config.train(dataset, observer)?;
        model.save(&path, dataset, &report)?;
        Ok(Trained {
            model,
            report,
            cached: false,
        })
    }
}

/// An unusable model file's error, naming the file.
pub(crate) fn unusable(path: &Path, reason: impl Into<String>) -> ModelFileError {
    ModelFileError::Format {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// A stored model must come from this version of the dataset.
pub(crate) fn check_dataset(
    path: &Path,
    stored_name: &str,
    stored_checksum: &str,
    dataset: &Dataset,
) -> Result<(), ModelFileError> {
    if stored_checksum != dataset.checksum {
        return Err(unusable(
            path,
            format!(
                "trained on {stored_name} (checksum {stored_checksum}), not on {} (checksum {})",
                dataset.name, dataset.checksum
            ),
        ));
    }
    Ok(())
}

/// A stored model must have been trained with the config that asks for it (the file name's
/// key says so; a header that disagrees is a damaged or hand-moved file).
pub(crate) fn check_config<C: PartialEq>(
    path: &Path,
    stored: &C,
    wanted: &C,
) -> Result<(), ModelFileError> {
    if stored != wanted {
        return Err(unusable(
            path,
            "its header's hyper-parameters do not match the file name's key",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_survive_json_bit_for_bit() {
        // Without serde_json's `float_roundtrip` feature (which only some builds of this crate
        // get, through feature unification) this reads back one ulp off as a JSON number.
        let awkward = 0.17138042703088147f64;
        let report = TrainReport {
            epochs: vec![EpochLog {
                epoch: 1,
                loss: 1.0 / 3.0,
                seconds: awkward,
                valid: Some(BTreeMap::from([("ndcg@20".to_string(), awkward)])),
            }],
            best_epoch: Some(1),
            stopped_early: false,
            select_metric: "ndcg@20".into(),
        };
        let json = serde_json::to_string(&report).unwrap();
        let back: TrainReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report, "{json}");
        assert_eq!(back.valid_curve(), vec![(1, awkward)]);
        let bad = json.replace("\"0.3333333333333333\"", "\"one\"");
        let err = serde_json::from_str::<TrainReport>(&bad).unwrap_err();
        assert!(err.to_string().contains("\"one\" is not a number"), "{err}");
    }
}
