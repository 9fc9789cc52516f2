//! One file format for every trained backbone, so a model on disk says what it is and which
//! version of the format wrote it.
//!
//! Layout (little-endian): the 8-byte magic `AGPMODEL`, a u32 format version
//! ([`FORMAT_VERSION`]), a u64 header length, the JSON header (`backbone` plus whatever the
//! model records: dataset checksum, sizes, config, training report, tensor shapes), then every
//! parameter as f32. Files are written to a temporary name, fsynced and renamed, so a crash
//! never leaves half a model under the real name.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"AGPMODEL";
/// Bumped when the framing or what a header must hold changes, so files of an older format
/// are retrained, never misread (store keys include it). 2: every header holds the
/// [`crate::TrainReport`] of the run that trained the model.
pub const FORMAT_VERSION: u32 = 2;
const PREFIX: usize = 8 + 4 + 8;

#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a usable model file ({reason}); delete it to retrain", path.display())]
    Format { path: PathBuf, reason: String },
}

#[derive(Serialize, serde::Deserialize)]
struct Framed<H> {
    backbone: String,
    #[serde(flatten)]
    header: H,
}

/// Writes `header` and `params` as a `backbone` model file at `path`.
pub fn write<H: Serialize>(
    path: &Path,
    backbone: &str,
    header: &H,
    params: &[f32],
) -> Result<(), ModelFileError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| ModelFileError::Io { path: p, source }
    };
    let json = serde_json::to_vec(&Framed {
        backbone: backbone.to_string(),
        header,
    })
    .expect("model headers serialise");
    let mut bytes = Vec::with_capacity(PREFIX + json.len() + 4 * params.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    for x in params {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Reads a `backbone` model file: its header and its parameters. `Ok(None)` when there is no
/// file; an error naming the file and what is wrong when there is one that cannot be used.
pub fn read<H: DeserializeOwned>(
    path: &Path,
    backbone: &str,
) -> Result<Option<(H, Vec<f32>)>, ModelFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ModelFileError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let bad = |reason: String| ModelFileError::Format {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() < PREFIX || &bytes[..8] != MAGIC {
        return Err(bad("missing AGPMODEL magic".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}; this build reads {FORMAT_VERSION}"
        )));
    }
    let hlen = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let body = &bytes[PREFIX..];
    let hlen = usize::try_from(hlen)
        .ok()
        .filter(|&h| h <= body.len())
        .ok_or_else(|| bad(format!("header length {hlen} exceeds the file")))?;
    let framed: Framed<H> =
        serde_json::from_slice(&body[..hlen]).map_err(|e| bad(format!("header: {e}")))?;
    if framed.backbone != backbone {
        return Err(bad(format!(
            "holds a {} model, not {backbone}",
            framed.backbone
        )));
    }
    let data = &body[hlen..];
    if data.len() % 4 != 0 {
        return Err(bad(format!(
            "{} parameter bytes is not a whole number of f32",
            data.len()
        )));
    }
    let params: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    if let Some(i) = params.iter().position(|p| !p.is_finite()) {
        return Err(bad(format!("parameter {i} is not finite")));
    }
    Ok(Some((framed.header, params)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct H {
        n: usize,
    }

    #[test]
    fn round_trips_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.bin");
        assert!(read::<H>(&p, "x").unwrap().is_none(), "no file is no model");
        write(&p, "lightgcn", &H { n: 2 }, &[1.0, -2.5]).unwrap();
        let (h, params) = read::<H>(&p, "lightgcn").unwrap().unwrap();
        assert_eq!((h, params), (H { n: 2 }, vec![1.0, -2.5]));
        let e = read::<H>(&p, "sasrec").unwrap_err().to_string();
        assert!(e.contains("holds a lightgcn model, not sasrec"), "{e}");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[8] = 9;
        std::fs::write(&p, &bytes).unwrap();
        let e = read::<H>(&p, "lightgcn").unwrap_err().to_string();
        assert!(e.contains("format version 9"), "{e}");
        std::fs::write(&p, b"SASREC01....").unwrap();
        let e = read::<H>(&p, "lightgcn").unwrap_err().to_string();
        assert!(
            e.contains("missing AGPMODEL magic") && e.contains("m.bin"),
            "{e}"
        );
    }
}
