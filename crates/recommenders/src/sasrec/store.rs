//! Model files in the shared [`crate::model_file`] format: a JSON header (config, dataset
//! checksum, tensor names and shapes), then every parameter as little-endian f32.

use super::params::Layout;
use super::{SasRec, SasRecConfig, SasRecError};
use crate::model_file::{self, ModelFileError};
use agp_datasets::Dataset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct Header {
    config: SasRecConfig,
    n_items: usize,
    dataset: String,
    dataset_checksum: String,
    /// `(name, rows, cols)` in storage order.
    tensors: Vec<(String, usize, usize)>,
}

/// Where a model trained on `dataset` with `config` is cached under `cache_dir` (the
/// workspace's `.cache`): keyed by dataset checksum and every hyper-parameter, seed included.
pub fn model_cache_path(cache_dir: &Path, dataset: &Dataset, config: &SasRecConfig) -> PathBuf {
    let mut h = Sha256::new();
    h.update(model_file::MAGIC);
    h.update(model_file::FORMAT_VERSION.to_le_bytes());
    h.update(dataset.checksum.as_bytes());
    h.update(serde_json::to_vec(config).expect("config serialises"));
    let key = hex::encode(&h.finalize()[..8]);
    cache_dir
        .join("models")
        .join(format!("sasrec-{}-{key}.bin", dataset.name))
}

impl SasRec {
    /// Writes the model (atomically: temporary file, fsync, rename), recording `dataset`'s
    /// checksum.
    pub fn save(&self, path: &Path, dataset: &Dataset) -> Result<(), SasRecError> {
        let header = Header {
            config: self.config.clone(),
            n_items: self.layout.n_items,
            dataset: dataset.name.clone(),
            dataset_checksum: dataset.checksum.clone(),
            tensors: self
                .layout
                .named()
                .into_iter()
                .map(|(n, s)| (n, s.rows, s.cols))
                .collect(),
        };
        model_file::write(path, "sasrec", &header, &self.params).map_err(file_error)
    }

    /// Reads a model written by [`SasRec::save`], rejecting a file trained on another version
    /// of `dataset` or whose tensors do not match its config.
    pub fn load(path: &Path, dataset: &Dataset) -> Result<Self, SasRecError> {
        let bad = |reason: String| SasRecError::Format {
            path: path.to_owned(),
            reason,
        };
        let (header, params): (Header, Vec<f32>) = model_file::read(path, "sasrec")
            .map_err(file_error)?
            .ok_or_else(|| SasRecError::Io {
                path: path.to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
        header.config.validate()?;
        if header.dataset_checksum != dataset.checksum {
            return Err(bad(format!(
                "trained on {} (checksum {}), not on {} (checksum {})",
                header.dataset, header.dataset_checksum, dataset.name, dataset.checksum
            )));
        }
        if header.n_items != dataset.n_items() {
            return Err(bad(format!(
                "{} items, dataset has {}",
                header.n_items,
                dataset.n_items()
            )));
        }
        let c = &header.config;
        let layout = Layout::new(header.n_items, c.maxlen, c.hidden_units, c.num_blocks);
        let expected: Vec<(String, usize, usize)> = layout
            .named()
            .into_iter()
            .map(|(n, s)| (n, s.rows, s.cols))
            .collect();
        if expected != header.tensors {
            return Err(bad("tensor list does not match the config".into()));
        }
        if params.len() != layout.total {
            return Err(bad(format!(
                "{} parameters, expected {}",
                params.len(),
                layout.total
            )));
        }
        Ok(SasRec {
            config: header.config,
            layout,
            params,
        })
    }
}

fn file_error(e: ModelFileError) -> SasRecError {
    match e {
        ModelFileError::Io { path, source } => SasRecError::Io { path, source },
        ModelFileError::Format { path, reason } => SasRecError::Format { path, reason },
    }
}
