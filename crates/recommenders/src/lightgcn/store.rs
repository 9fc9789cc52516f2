//! Trained models on disk, keyed by dataset checksum + hyper-parameters + seed, so nothing is
//! retrained when nothing changed.
//!
//! Layout (little-endian): 8-byte magic, u64 header length, JSON header (dataset, checksum,
//! sizes, config, training report), then the layer-0 embeddings as f32. Propagated embeddings
//! are recomputed on load (milliseconds) rather than stored.

use super::{LightGcn, LightGcnConfig, NormAdj, TrainReport};
use agp_datasets::Dataset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"AGPLGCN\x01";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
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
        h.update(MAGIC);
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
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| StoreError::Io { path: p, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let header = serde_json::to_vec(&Header {
            dataset: dataset.name.clone(),
            dataset_checksum: dataset.checksum.clone(),
            n_users: model.n_users,
            n_items: model.n_items,
            config: model.config.clone(),
            report: report.clone(),
        })
        .expect("headers serialise");
        let mut bytes = Vec::with_capacity(16 + header.len() + model.ego.len() * 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        for x in &model.ego {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }

    /// The stored model for this dataset and configuration, or `None` if it was never trained.
    pub fn load(
        &self,
        dataset: &Dataset,
        config: &LightGcnConfig,
    ) -> Result<Option<(LightGcn, TrainReport)>, StoreError> {
        let path = self.path_for(dataset, config);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(corrupt("wrong magic bytes".into()));
        }
        let hlen = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let body = bytes.get(16..).unwrap_or_default();
        if hlen > body.len() {
            return Err(corrupt(format!("header length {hlen} exceeds file")));
        }
        let header: Header =
            serde_json::from_slice(&body[..hlen]).map_err(|e| corrupt(format!("header: {e}")))?;
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
        let floats = &body[hlen..];
        let expected = (header.n_users + header.n_items) * config.dim;
        if floats.len() != expected * 4 {
            return Err(corrupt(format!(
                "{} embedding bytes, expected {}",
                floats.len(),
                expected * 4
            )));
        }
        let ego: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let adj = NormAdj::from_dataset(dataset);
        Ok(Some((
            LightGcn::from_ego(config.clone(), &adj, ego),
            header.report,
        )))
    }
}
