//! SASRec in the shared [`crate::model_file`] format: a JSON header (config, dataset checksum,
//! tensor names and shapes, training report), then every parameter as little-endian f32.

use super::params::Layout;
use super::{SELECT_METRIC, SasRec, SasRecConfig, TrainReport};
use crate::backbone::{self, Backbone, BackboneConfig, BackboneError, Observer, WithReport};
use crate::model_file::{self, ModelFileError};
use agp_datasets::Dataset;
use serde::{Deserialize, Serialize};
use std::path::Path;

const NAME: &str = "sasrec";

#[derive(Serialize, Deserialize)]
struct Header {
    config: SasRecConfig,
    n_items: usize,
    dataset: String,
    dataset_checksum: String,
    /// `(name, rows, cols)` in storage order.
    tensors: Vec<(String, usize, usize)>,
    report: TrainReport,
}

fn tensors(layout: &Layout) -> Vec<(String, usize, usize)> {
    layout
        .named()
        .into_iter()
        .map(|(n, s)| (n, s.rows, s.cols))
        .collect()
}

impl SasRec {
    /// Reads a model written by [`Backbone::save`] with the report of the run that trained it;
    /// `Ok(None)` when there is no file. Rejects a file trained on another version of
    /// `dataset` or whose tensors do not match its config.
    pub fn load(
        path: &Path,
        dataset: &Dataset,
    ) -> Result<Option<(Self, TrainReport)>, ModelFileError> {
        let Some((header, params)) = model_file::read::<Header>(path, NAME)? else {
            return Ok(None);
        };
        let bad = |reason: String| backbone::unusable(path, reason);
        header.config.validate().map_err(|e| bad(e.to_string()))?;
        backbone::check_dataset(path, &header.dataset, &header.dataset_checksum, dataset)?;
        if header.n_items != dataset.n_items() {
            return Err(bad(format!(
                "{} items, dataset has {}",
                header.n_items,
                dataset.n_items()
            )));
        }
        let c = &header.config;
        let layout = Layout::new(header.n_items, c.maxlen, c.hidden_units, c.num_blocks);
        if tensors(&layout) != header.tensors {
            return Err(bad("tensor list does not match the config".into()));
        }
        if params.len() != layout.total {
            return Err(bad(format!(
                "{} parameters, expected {}",
                params.len(),
                layout.total
            )));
        }
        let model = SasRec {
            config: header.config,
            layout,
            params,
        };
        Ok(Some((model, header.report)))
    }
}

impl Backbone for SasRec {
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
            config: self.config.clone(),
            n_items: self.layout.n_items,
            dataset: dataset.name.clone(),
            dataset_checksum: dataset.checksum.clone(),
            tensors: tensors(&self.layout),
            report: report.clone(),
        };
        model_file::write(path, NAME, &header, &self.params)
    }
}

impl BackboneConfig for SasRecConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn hyperparameters(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("configs serialise")
    }

    fn max_epochs(&self) -> usize {
        self.num_epochs
    }

    fn select_metric(&self) -> &'static str {
        SELECT_METRIC
    }

    fn train(
        &self,
        dataset: &Dataset,
        observer: Observer<'_>,
    ) -> Result<WithReport, BackboneError> {
        let (model, report) = SasRec::train(dataset, self, observer)?;
        Ok((Box::new(model), report))
    }

    fn load(&self, path: &Path, dataset: &Dataset) -> Result<Option<WithReport>, ModelFileError> {
        let Some((model, report)) = SasRec::load(path, dataset)? else {
            return Ok(None);
        };
        backbone::check_config(path, &model.config, self)?;
        Ok(Some((Box::new(model), report)))
    }
}
