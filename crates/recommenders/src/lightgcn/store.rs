//! LightGCN in the shared [`crate::model_file`] format: a JSON header (dataset, checksum, sizes,
//! config, training report), then the layer-0 embeddings as f32. Propagated embeddings are
//! recomputed on load (milliseconds) rather than stored.

use super::{LightGcn, LightGcnConfig, NormAdj, SELECT_METRIC, TrainReport, train};
use crate::backbone::{self, Backbone, BackboneConfig, BackboneError, Observer, WithReport};
use crate::model_file::{self, ModelFileError};
use agp_datasets::Dataset;
use serde::{Deserialize, Serialize};
use std::path::Path;

const NAME: &str = "lightgcn";

#[derive(Serialize, Deserialize)]
struct Header {
    dataset: String,
    dataset_checksum: String,
    n_users: usize,
    n_items: usize,
    config: LightGcnConfig,
    report: TrainReport,
}

impl LightGcn {
    /// Reads a model written by [`Backbone::save`] with the report of the run that trained it;
    /// `Ok(None)` when there is no file. Rejects a file trained on another version of
    /// `dataset` or whose embedding table does not fit it.
    pub fn load(
        path: &Path,
        dataset: &Dataset,
    ) -> Result<Option<(Self, TrainReport)>, ModelFileError> {
        let Some((header, ego)) = model_file::read::<Header>(path, NAME)? else {
            return Ok(None);
        };
        backbone::check_dataset(path, &header.dataset, &header.dataset_checksum, dataset)?;
        let bad = |reason: String| backbone::unusable(path, reason);
        header.config.validate().map_err(|e| bad(e.to_string()))?;
        if header.n_users != dataset.n_users() || header.n_items != dataset.n_items() {
            return Err(bad(format!(
                "{} users × {} items, dataset has {} × {}",
                header.n_users,
                header.n_items,
                dataset.n_users(),
                dataset.n_items()
            )));
        }
        let expected = (header.n_users + header.n_items) * header.config.dim;
        if ego.len() != expected {
            return Err(bad(format!(
                "{} embedding values, expected {expected}",
                ego.len()
            )));
        }
        let adj = NormAdj::from_dataset(dataset);
        Ok(Some((
            LightGcn::from_ego(header.config, &adj, ego),
            header.report,
        )))
    }
}

impl Backbone for LightGcn {
    fn name(&self) -> &'static str {
        NAME
    }

    fn hyperparameters(&self) -> serde_json::Value {
        self.config.hyperparameters()
    }

    fn seed(&self) -> u64 {
        self.config.seed
    }

    fn save(
        &self,
        path: &Path,
        dataset: &Dataset,
        report: &TrainReport,
    ) -> Result<(), ModelFileError> {
        let header = Header {
            dataset: dataset.name.clone(),
            dataset_checksum: dataset.checksum.clone(),
            n_users: self.n_users,
            n_items: self.n_items,
            config: self.config.clone(),
            report: report.clone(),
        };
        model_file::write(path, NAME, &header, &self.ego)
    }
}

impl BackboneConfig for LightGcnConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn hyperparameters(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("configs serialise")
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn select_metric(&self) -> &'static str {
        SELECT_METRIC
    }

    fn train(
        &self,
        dataset: &Dataset,
        observer: Observer<'_>,
    ) -> Result<WithReport, BackboneError> {
        let (model, report) = train(dataset, self, observer)?;
        Ok((Box::new(model), report))
    }

    fn load(&self, path: &Path, dataset: &Dataset) -> Result<Option<WithReport>, ModelFileError> {
        let Some((model, report)) = LightGcn::load(path, dataset)? else {
            return Ok(None);
        };
        backbone::check_config(path, &model.config, self)?;
        Ok(Some((Box::new(model), report)))
    }
}
