//! What a cell's checkpoint was made from, kept beside it as `inputs.json`, so that a run never
//! takes another run's answers without saying so.
//!
//! A cell's checkpoint directory is named by a hash of its inputs (candidates, method config,
//! LLM spec and identity, sampling, item text, scoring rule), so a run whose inputs differ
//! never resumes it: it starts the cell afresh (every answer already in its recordings file
//! replays for nothing). What the hash cannot say is *which* input changed; `inputs.json` can,
//! and a cell that finds checkpoints of itself made from other inputs names the inputs that
//! differ. A live run's recordings file is named by path in the hash; `inputs.json` also keeps
//! how long the file was and a hash of that much of it when the cell finished, so a checkpoint
//! whose answers are no longer in the file (the file was replaced or cut) is set aside instead
//! of resumed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

const FILE: &str = "inputs.json";

/// A value longer than this is kept as its hash: the names of what differ are what matter.
const SHOWN_CHARS: usize = 160;

/// The start of a recordings file that a checkpoint's answers were in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingsPrefix {
    pub len: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellInputs {
    /// Input name → its value (or `sha256 …` of a long one).
    pub parts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recordings: Option<RecordingsPrefix>,
}

fn shown(v: &str) -> String {
    if v.chars().count() <= SHOWN_CHARS {
        v.to_string()
    } else {
        format!("sha256 {}", &crate::pipeline::sha256_hex(&[v])[..16])
    }
}

impl CellInputs {
    /// `parts` by name; a JSON object's fields become `name.field` so that, say, the
    /// recordings path of an LLM identity is named on its own.
    pub fn new<'a>(parts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut out = BTreeMap::new();
        for (name, value) in parts {
            match serde_json::from_str::<serde_json::Value>(value) {
                Ok(serde_json::Value::Object(fields)) => {
                    for (k, v) in fields {
                        let v = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        out.insert(format!("{name}.{k}"), shown(&v));
                    }
                }
                _ => {
                    out.insert(name.to_string(), shown(value));
                }
            }
        }
        Self {
            parts: out,
            recordings: None,
        }
    }

    /// The inputs that differ from `other`'s, each as `name (was A, now B)`.
    pub fn differences(&self, other: &CellInputs) -> Vec<String> {
        let names: std::collections::BTreeSet<&String> =
            self.parts.keys().chain(other.parts.keys()).collect();
        names
            .into_iter()
            .filter_map(|n| {
                let (now, was) = (self.parts.get(n), other.parts.get(n));
                (now != was).then(|| {
                    format!(
                        "{n} (was {}, now {})",
                        was.map_or("unset", String::as_str),
                        now.map_or("unset", String::as_str)
                    )
                })
            })
            .collect()
    }
}

fn load(dir: &Path) -> Option<CellInputs> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn save(dir: &Path, inputs: &CellInputs) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(inputs)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(FILE))
        .with_context(|| format!("writing {FILE} in {}", dir.display()))
}

/// sha256 of the first `len` bytes of `path`, read from the start, or `None` when it is
/// shorter or unreadable: what a resumed checkpoint is checked against.
fn prefix_sha256(path: &Path, len: u64) -> Option<String> {
    hash_on(path, len, 0, sha2::Sha256::default()).map(|(_, h)| hex::encode(h))
}

/// As [`prefix_sha256`] for the file this run appends to, as each cell finishes: the hash
/// state of the longest prefix read so far is kept per file, so each byte is read once per run
/// rather than once per cell. Only this process appends meanwhile; a file rewritten under it
/// gives a stale hash here, which the next resume's [`prefix_sha256`] (always from the start)
/// catches by setting the checkpoint aside.
fn grown_prefix_sha256(path: &Path, len: u64) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static READ: OnceLock<Mutex<HashMap<PathBuf, (u64, sha2::Sha256)>>> = OnceLock::new();
    let mut read = READ
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (at, h) = match read.get(path) {
        Some((at, h)) if *at <= len => (*at, h.clone()),
        _ => (0, sha2::Sha256::default()),
    };
    let (h, digest) = hash_on(path, len, at, h)?;
    read.insert(path.to_path_buf(), (len, h));
    Some(hex::encode(digest))
}

/// Feeds bytes `at..len` of `path` into `h`: the state and its digest, or `None` when the file
/// is shorter or unreadable.
fn hash_on(
    path: &Path,
    len: u64,
    at: u64,
    mut h: sha2::Sha256,
) -> Option<(sha2::Sha256, sha2::digest::Output<sha2::Sha256>)> {
    use sha2::Digest;
    use std::io::Seek;
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(std::io::SeekFrom::Start(at)).ok()?;
    let n = std::io::copy(&mut f.take(len - at), &mut h).ok()?;
    (at + n == len).then(|| (h.clone(), h.finalize()))
}

/// Before a cell runs in `dir`: set aside a checkpoint whose answers are no longer in the
/// recordings file, and name what differs when only checkpoints of this cell made from other
/// inputs exist beside `dir`. Then record this run's inputs.
pub fn before_cell(
    dir: &Path,
    key: &str,
    inputs: &CellInputs,
    recordings: Option<&Path>,
) -> Result<()> {
    let checkpoint = dir.join("checkpoint.json");
    // What of the recordings file a checkpoint still here was made from, if it still is.
    let mut verified = None;
    if checkpoint.exists() {
        let made_from = load(dir).and_then(|o| o.recordings);
        match (made_from, recordings) {
            (Some(p), Some(path)) if prefix_sha256(path, p.len).as_ref() != Some(&p.sha256) => {
                let aside = dir.join("checkpoint.set-aside.json");
                std::fs::rename(&checkpoint, &aside)
                    .with_context(|| format!("setting aside {}", checkpoint.display()))?;
                eprintln!(
                    "{key}: the recordings file {} no longer starts with the {} bytes this \
                     cell's checkpoint was made from (replaced or cut); not resuming it (kept \
                     as {})",
                    path.display(),
                    p.len,
                    aside.display()
                );
            }
            (made_from, _) => verified = made_from,
        }
    } else if let Some((other, old)) = newest_sibling(dir) {
        let diff = inputs.differences(&old);
        if !diff.is_empty() {
            eprintln!(
                "{key}: not resuming the checkpoint in {}, made from other inputs: {}",
                other.display(),
                diff.join("; ")
            );
        }
    }
    // A resumed cell keeps what its checkpoint was checked against until it finishes.
    let keep = CellInputs {
        recordings: verified,
        ..inputs.clone()
    };
    save(dir, &keep)
}

/// After a cell finished in `dir`: what of the recordings file its answers are in.
pub fn after_cell(dir: &Path, inputs: &CellInputs, recordings: Option<&Path>) -> Result<()> {
    let mut keep = inputs.clone();
    if let Some(path) = recordings {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        keep.recordings =
            grown_prefix_sha256(path, len).map(|sha256| RecordingsPrefix { len, sha256 });
    }
    save(dir, &keep)
}

/// The most recently written `inputs.json` of another directory of the same cell (the same
/// name before the fingerprint) that holds a checkpoint.
fn newest_sibling(dir: &Path) -> Option<(PathBuf, CellInputs)> {
    let name = dir.file_name()?.to_str()?;
    let stem = &name[..name.rfind('-')? + 1];
    std::fs::read_dir(dir.parent()?)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p != dir
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(stem) && n.len() == name.len())
                && p.join("checkpoint.json").exists()
        })
        .filter_map(|p| {
            let t = std::fs::metadata(p.join(FILE)).ok()?.modified().ok()?;
            Some((t, p))
        })
        .max()
        .and_then(|(_, p)| load(&p).map(|i| (p, i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_field_of_an_identity_that_changed() {
        let a = CellInputs::new([
            ("method config", "{\"kind\":\"llm-dir\"}"),
            (
                "llm",
                "{\"recordings\":\"/r/a.jsonl\",\"max_tokens\":96,\"served model\":\"m.gguf\"}",
            ),
        ]);
        let b = CellInputs::new([
            ("method config", "{\"kind\":\"llm-dir\"}"),
            (
                "llm",
                "{\"recordings\":\"/r/b.jsonl\",\"max_tokens\":96,\"served model\":\"m.gguf\"}",
            ),
        ]);
        assert_eq!(
            b.differences(&a),
            vec!["llm.recordings (was /r/a.jsonl, now /r/b.jsonl)".to_string()]
        );
        assert!(a.differences(&a).is_empty());
    }

    #[test]
    fn a_growing_files_prefix_hash_read_in_steps_is_the_hash_read_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = tmp.path().join("rec.jsonl");
        let mut text = String::new();
        for line in ["one\n", "two\n", "three\n"] {
            text.push_str(line);
            std::fs::write(&rec, &text).unwrap();
            let len = text.len() as u64;
            assert_eq!(grown_prefix_sha256(&rec, len), prefix_sha256(&rec, len));
        }
        // A shorter prefix, and one longer than the file.
        assert_eq!(grown_prefix_sha256(&rec, 4), prefix_sha256(&rec, 4));
        assert_eq!(grown_prefix_sha256(&rec, 100), None);
    }

    #[test]
    fn a_checkpoint_whose_answers_left_the_recordings_file_is_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = tmp.path().join("rec.jsonl");
        std::fs::write(&rec, "one\n").unwrap();
        let dir = tmp.path().join("cell-abc");
        let inputs = CellInputs::new([("llm", "x")]);
        before_cell(&dir, "cell", &inputs, Some(&rec)).unwrap();
        std::fs::write(dir.join("checkpoint.json"), "{}").unwrap();
        after_cell(&dir, &inputs, Some(&rec)).unwrap();
        // Appended to: the checkpoint's answers are still there.
        std::fs::write(&rec, "one\ntwo\n").unwrap();
        before_cell(&dir, "cell", &inputs, Some(&rec)).unwrap();
        assert!(dir.join("checkpoint.json").exists());
        // Replaced: they are not.
        std::fs::write(&rec, "other\n").unwrap();
        before_cell(&dir, "cell", &inputs, Some(&rec)).unwrap();
        assert!(!dir.join("checkpoint.json").exists());
        assert!(dir.join("checkpoint.set-aside.json").exists());
    }
}
