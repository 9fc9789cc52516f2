//! Model files: `SASREC01`, a little-endian u32 header length, a JSON header (config, dataset
//! checksum, tensor names and shapes), then every parameter as little-endian f32.

use super::params::Layout;
use super::{SasRec, SasRecConfig, SasRecError};
use agp_datasets::Dataset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SASREC01";

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
    h.update(dataset.checksum.as_bytes());
    h.update(serde_json::to_vec(config).expect("config serialises"));
    let key = hex::encode(&h.finalize()[..8]);
    cache_dir
        .join("models")
        .join(format!("sasrec-{}-{key}.bin", dataset.name))
}

impl SasRec {
    /// Writes the model (atomically: temporary file, then rename), recording `dataset`'s checksum.
    pub fn save(&self, path: &Path, dataset: &Dataset) -> Result<(), SasRecError> {
        let io = |source| SasRecError::Io {
            path: path.to_owned(),
            source,
        };
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
        let json = serde_json::to_vec(&header).expect("header serialises");
        let mut bytes = Vec::with_capacity(12 + json.len() + 4 * self.params.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&json);
        for p in &self.params {
            bytes.extend_from_slice(&p.to_le_bytes());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("bin.tmp");
        std::fs::write(&tmp, &bytes).map_err(|source| SasRecError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a model written by [`SasRec::save`], rejecting a file trained on another version
    /// of `dataset` or whose tensors do not match its config.
    pub fn load(path: &Path, dataset: &Dataset) -> Result<Self, SasRecError> {
        let bytes = std::fs::read(path).map_err(|source| SasRecError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| SasRecError::Format {
            path: path.to_owned(),
            reason,
        };
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(bad("missing SASREC01 magic".into()));
        }
        let hlen = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let body = bytes
            .get(12..12 + hlen)
            .ok_or_else(|| bad("truncated header".into()))?;
        let header: Header =
            serde_json::from_slice(body).map_err(|e| bad(format!("header: {e}")))?;
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
        let data = &bytes[12 + hlen..];
        if data.len() != 4 * layout.total {
            return Err(bad(format!(
                "{} parameter bytes, expected {}",
                data.len(),
                4 * layout.total
            )));
        }
        let params: Vec<f32> = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if let Some(i) = params.iter().position(|p| !p.is_finite()) {
            return Err(bad(format!("parameter {i} is not finite")));
        }
        Ok(SasRec {
            config: header.config,
            layout,
            params,
        })
    }
}
