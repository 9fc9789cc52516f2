//! Trained models on disk, keyed by dataset checksum + hyper-parameters + seed, so nothing is
//! retrained when nothing changed.
//!
//! The file is the shared [`crate::model_file`] format: a JSON header (dataset, checksum, sizes,
//! config, training report), then the layer-0 embeddings as f32. Propagated embeddings are
//! recomputed on load (milliseconds) rather than stored.

use super::{LightGcn, LightGcnConfig, NormAdj, TrainReport};
use crate::model_file::{self, ModelFileError};
use agp_datasets::Dataset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    File(#[from] ModelFileError),
    #[error("{path}: not a usable LightGCN model file ({reason}); delete it to retrain")]
    Corrupt { path: PathBuf, reason: String },
}

/// A directory of trained models (by default `<workspace>/.cache/models`).
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Header {
    dataset: String,
    dataset_checksum: String,
    n_users: usize,
    n_items: usize,
    config: LightGcnConfig,
    report: TrainReport,
}

impl ModelStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `.cache/models` under the workspace root (gitignored).
    pub fn workspace() -> Self {
        Self::new(agp_datasets::workspace_root().join(".cache/models"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File for this dataset and configuration; the name carries a hash of everything that
    /// changes the trained parameters.
    pub fn path_for(&self, dataset: &Dataset, config: &LightGcnConfig) -> PathBuf {
        let mut h = Sha256::new();
        h.update(model_file::MAGIC);
        h.update(model_file::FORMAT_VERSION.to_le_bytes());
        h.update(dataset.checksum.as_bytes());
        h.update(b"\0");
        h.update(serde_json::to_vec(config).expect("configs serialise"));
        let key = hex::encode(h.finalize());
        self.dir
            .join(format!("lightgcn-{}-{}.bin", dataset.name, &key[..16]))
    }

    /// Writes atomically (temporary file, then rename) so a crash never leaves half a model.
    pub fn save(
        &self,
        dataset: &Dataset,
        model: &LightGcn,
        report: &TrainReport,
    ) -> Result<PathBuf, StoreError> {
        let path = self.path_for(dataset, &model.config);
        let header = Header {
            dataset: dataset.name.clone(),
            dataset_checksum: dataset.checksum.clone(),
            n_users: model.n_users,
            n_items: model.n_items,
            config: model.config.clone(),
            report: report.clone(),
        };
        model_file::write(&path, "lightgcn", &header, &model.ego)?;
        Ok(path)
    }

    /// The stored model for this dataset and configuration, or `None` if it was never trained.
    pub fn load(
        &self,
        dataset: &Dataset,
        config: &LightGcnConfig,
    ) -> Result<Option<(LightGcn, TrainReport)>, StoreError> {
        let path = self.path_for(dataset, config);
        let Some((header, ego)) = model_file::read::<Header>(&path, "lightgcn")? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        if header.dataset_checksum != dataset.checksum || &header.config != config {
            return Err(corrupt(
                "its header does not match the file name's key".into(),
            ));
        }
        if header.n_users != dataset.n_users() || header.n_items != dataset.n_items() {
            return Err(corrupt(format!(
                "{} users × {} items, dataset has {} × {}",
                header.n_users,
                header.n_items,
                dataset.n_users(),
                dataset.n_items()
            )));
        }
        let expected = (header.n_users + header.n_items) * config.dim;
        if ego.len() != expected {
            return Err(corrupt(format!(
                "{} embedding values, expected {expected}",
                ego.len()
            )));
        }
        let adj = NormAdj::from_dataset(dataset);
        Ok(Some((
            LightGcn::from_ego(config.clone(), &adj, ego),
            header.report,
        )))
    }
}
