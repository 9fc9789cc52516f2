//! Prepared splits cached on disk, so a second `prepare` of the same files and options is instant.
//!
//! A cache entry is named by the dataset's checksum (raw bytes + options + preprocessing version),
//! so it can never be stale. To avoid re-hashing gigabytes of raw data on every call, file hashes
//! are memoised by (path, size, modification time).

use crate::source::{
    DatasetSource, PrepareOptions, build, checksum, file_sha256, load_raw, raw_files,
};
use crate::{DataError, Dataset, DatasetStats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

const MAGIC: &[u8; 8] = b"AGPDS\x00\x00\x01";

/// Where prepared splits live: `<workspace>/.cache/datasets` unless told otherwise.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, name: &str, checksum: &str) -> PathBuf {
        self.dir.join(format!("{name}-{}.bin", &checksum[..16]))
    }

    fn memo_path(&self) -> PathBuf {
        self.dir.join("file-hashes.json")
    }
}

/// Known sha256 of raw files, keyed by path and valid while size and mtime are unchanged.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HashMemo {
    files: BTreeMap<String, MemoEntry>,
    #[serde(skip)]
    dirty: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemoEntry {
    len: u64,
    mtime_ns: u128,
    sha256: String,
}

impl HashMemo {
    fn load(path: &Path) -> Self {
        // A missing or unreadable memo only costs a re-hash, so it is not an error.
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn sha256(&mut self, path: &Path) -> Result<[u8; 32], DataError> {
        let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let key = key.to_string_lossy().into_owned();
        if let Some(e) = self.files.get(&key)
            && e.len == meta.len()
            && e.mtime_ns == mtime_ns
            && mtime_ns != 0
            && let Ok(bytes) = hex::decode(&e.sha256)
            && let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(arr);
        }
        let digest = file_sha256(path)?;
        self.files.insert(
            key,
            MemoEntry {
                len: meta.len(),
                mtime_ns,
                sha256: hex::encode(digest),
            },
        );
        self.dirty = true;
        Ok(digest)
    }
}

/// Whether [`prepare_cached`] found the split in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
}

/// [`crate::prepare_with_stats`] through the cache: loads the stored split when the raw files and
/// options are unchanged, otherwise prepares and stores it. A write failure is reported, never
/// ignored, because a read-only cache directory would otherwise make every call slow unnoticed.
pub fn prepare_cached(
    source: &DatasetSource,
    opts: &PrepareOptions,
    cache: &Cache,
) -> Result<(Dataset, DatasetStats, CacheOutcome), DataError> {
    opts.validate()?;
    let files = raw_files(source)?;
    std::fs::create_dir_all(&cache.dir).map_err(|e| DataError::io(&cache.dir, e))?;
    let mut memo = HashMemo::load(&cache.memo_path());
    let sum = checksum(source, &files, opts, Some(&mut memo))?;
    if memo.dirty {
        write_atomic(
            &cache.memo_path(),
            &serde_json::to_vec_pretty(&memo).expect("memo serialises"),
        )?;
    }
    let entry = cache.entry(&source.name, &sum);
    if entry.is_file() {
        let (ds, stats) = read_entry(&entry)?;
        if ds.checksum == sum {
            return Ok((ds, stats, CacheOutcome::Hit));
        }
    }
    let mut raw = load_raw(source, &files, opts)?;
    let (ds, stats) = build(source, opts, &mut raw, sum)?;
    write_entry(&entry, &ds, &stats)?;
    Ok((ds, stats, CacheOutcome::Miss))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    // Write-then-rename so concurrent readers (parallel tests, two terminals) never see half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

/// Layout: magic, u64 stats-JSON length + JSON, then the dataset: name, checksum, user ids,
/// item ids, item texts (u32 count + length-prefixed UTF-8 each), train lists, valid, test
/// (u32 little-endian).
pub fn write_entry(path: &Path, ds: &Dataset, stats: &DatasetStats) -> Result<(), DataError> {
    let mut buf = Vec::with_capacity(64 + ds.n_interactions() * 4);
    buf.extend_from_slice(MAGIC);
    let json = serde_json::to_vec(stats).expect("stats serialise");
    buf.extend_from_slice(&(json.len() as u64).to_le_bytes());
    buf.extend_from_slice(&json);
    put_strs(&mut buf, &[ds.name.clone(), ds.checksum.clone()]);
    put_strs(&mut buf, &ds.user_ids);
    put_strs(&mut buf, &ds.item_ids);
    put_strs(&mut buf, &ds.item_text);
    put_u32(&mut buf, ds.train.len() as u32);
    for t in &ds.train {
        put_u32s(&mut buf, t);
    }
    put_u32s(&mut buf, &ds.valid);
    put_u32s(&mut buf, &ds.test);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let f = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut w = BufWriter::new(f);
        w.write_all(&buf).map_err(|e| DataError::io(&tmp, e))?;
        w.flush().map_err(|e| DataError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

pub fn read_entry(path: &Path) -> Result<(Dataset, DatasetStats), DataError> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::new();
    BufReader::new(f)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    let corrupt = |msg: &str| DataError::CorruptCache {
        path: path.to_owned(),
        msg: msg.to_owned(),
    };
    let mut r = Reader { b: &bytes, pos: 0 };
    if r.take(MAGIC.len()).ok_or_else(|| corrupt("short"))? != MAGIC {
        return Err(corrupt("wrong magic or version"));
    }
    let n = u64::from_le_bytes(
        r.take(8)
            .ok_or_else(|| corrupt("short"))?
            .try_into()
            .unwrap(),
    );
    let json = r.take(n as usize).ok_or_else(|| corrupt("short stats"))?;
    let stats: DatasetStats =
        serde_json::from_slice(json).map_err(|e| corrupt(&crate::error::json_error_text(&e)))?;
    let err = || corrupt("truncated or malformed body");
    let head = r.strs().ok_or_else(err)?;
    let [name, checksum]: [String; 2] = head.try_into().map_err(|_| err())?;
    let user_ids = r.strs().ok_or_else(err)?;
    let item_ids = r.strs().ok_or_else(err)?;
    let item_text = r.strs().ok_or_else(err)?;
    let n_train = r.u32().ok_or_else(err)? as usize;
    let mut train = Vec::with_capacity(n_train.min(bytes.len()));
    for _ in 0..n_train {
        train.push(r.u32s().ok_or_else(err)?);
    }
    let valid = r.u32s().ok_or_else(err)?;
    let test = r.u32s().ok_or_else(err)?;
    if r.pos != bytes.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok((
        Dataset {
            name,
            checksum,
            user_ids,
            item_ids,
            item_text,
            train,
            valid,
            test,
        },
        stats,
    ))
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u32s(buf: &mut Vec<u8>, v: &[u32]) {
    put_u32(buf, v.len() as u32);
    for &x in v {
        put_u32(buf, x);
    }
}

fn put_strs(buf: &mut Vec<u8>, v: &[String]) {
    put_u32(buf, v.len() as u32);
    for s in v {
        put_u32(buf, s.len() as u32);
        buf.extend_from_slice(s.as_bytes());
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u32s(&mut self) -> Option<Vec<u32>> {
        let n = self.u32()? as usize;
        let raw = self.take(n.checked_mul(4)?)?;
        Some(
            raw.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }

    fn strs(&mut self) -> Option<Vec<String>> {
        let n = self.u32()? as usize;
        let mut out = Vec::with_capacity(n.min(self.b.len()));
        for _ in 0..n {
            let len = self.u32()? as usize;
            out.push(std::str::from_utf8(self.take(len)?).ok()?.to_owned());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_prepare_hits_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let src = DatasetSource::bundled(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
        );
        let opts = PrepareOptions::default();
        let (a, sa, o1) = prepare_cached(&src, &opts, &cache).unwrap();
        let (b, sb, o2) = prepare_cached(&src, &opts, &cache).unwrap();
        assert_eq!((o1, o2), (CacheOutcome::Miss, CacheOutcome::Hit));
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_eq!(
            a,
            crate::bundled_default(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
            )
            .unwrap()
        );
        // Different options → a different entry, not the cached one.
        let other = PrepareOptions { k_core: 10, ..opts };
        let (c, _, o3) = prepare_cached(&src, &other, &cache).unwrap();
        assert_eq!(o3, CacheOutcome::Miss);
        assert_ne!(c.checksum, a.checksum);
    }

    #[test]
    fn a_changed_raw_file_is_prepared_again() {
        let raw = tempfile::tempdir().unwrap();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/datasets/amazon-2018");
        for f in ["Movies_and_TV.json", "meta_Movies_and_TV.json.gz"] {
            std::fs::copy(fixtures.join(f), raw.path().join(f)).unwrap();
        }
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(cache_dir.path());
        let src = DatasetSource::parse("amazon-movies-tv", Some(raw.path().to_owned())).unwrap();
        let opts = PrepareOptions {
            k_core: 1,
            ..Default::default()
        };
        let (a, _, _) = prepare_cached(&src, &opts, &cache).unwrap();
        // Same length, different bytes: swap two ratings digits in place.
        let p = raw.path().join("Movies_and_TV.json");
        let text = std::fs::read_to_string(&p).unwrap().replacen(
            "\"overall\": 5.0",
            "\"overall\": 4.0",
            1,
        );
        std::fs::write(&p, text).unwrap();
        let (b, _, outcome) = prepare_cached(&src, &opts, &cache).unwrap();
        assert_eq!(outcome, CacheOutcome::Miss);
        assert_ne!(a.checksum, b.checksum);
    }

    #[test]
    fn corrupt_entry_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let src = DatasetSource::bundled(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
        );
        let (ds, _, _) = prepare_cached(&src, &PrepareOptions::default(), &cache).unwrap();
        let entry = cache.entry(&ds.name, &ds.checksum);
        let bytes = std::fs::read(&entry).unwrap();
        std::fs::write(&entry, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_entry(&entry).unwrap_err();
        assert!(matches!(err, DataError::CorruptCache { .. }), "{err}");
        assert!(err.to_string().contains(".bin"));
    }
}
