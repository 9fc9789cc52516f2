//! Naming a dataset, the preprocessing options, and the `prepare` entry point.

use crate::raw::{ItemMeta, RawData};
use crate::stats::{Counts, DatasetStats};
use crate::{DataError, Dataset, formats, preprocess};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bumped whenever preprocessing changes its output for the same input: part of every checksum,
/// so caches and candidate files made by an older version are recognised as stale.
pub const PREPROCESS_VERSION: u32 = 2;

/// Which raw layout to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    MlLatestSmall,
    Ml100k,
    Ml1m,
    AmazonMoviesTv,
    Yelp,
    Goodreads,
    /// RecBole atomic files `<name>.inter` (+ optional `<name>.item`) in the raw directory.
    RecBole,
}

impl SourceKind {
    pub const NAMES: [&'static str; 6] = [
        "ml-latest-small",
        "ml-100k",
        "ml-1m",
        "amazon-movies-tv",
        "yelp",
        "goodreads",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::MlLatestSmall => "ml-latest-small",
            SourceKind::Ml100k => "ml-100k",
            SourceKind::Ml1m => "ml-1m",
            SourceKind::AmazonMoviesTv => "amazon-movies-tv",
            SourceKind::Yelp => "yelp",
            SourceKind::Goodreads => "goodreads",
            SourceKind::RecBole => "recbole",
        }
    }
}

/// A dataset name plus the directory holding its raw files (as downloaded, gzip or plain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSource {
    pub kind: SourceKind,
    /// Short name used in reports and cache keys (`ml-1m`, or the RecBole dataset name).
    pub name: String,
    pub raw_dir: PathBuf,
}

impl DatasetSource {
    /// Parses `ml-latest-small`, `ml-100k`, `ml-1m`, `amazon-movies-tv`, `yelp`, `goodreads` or
    /// `recbole:<dir>`, its raw files in `raw_dir`. A named dataset needs one (this crate does
    /// not know where a checkout keeps anything: see [`DatasetSource::parse_in`]); a RecBole
    /// spec names its own.
    pub fn parse(spec: &str, raw_dir: Option<PathBuf>) -> Result<Self, DataError> {
        if let Some(dir) = spec.strip_prefix("recbole:") {
            let dir = PathBuf::from(dir);
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| DataError::UnknownDataset(crate::excerpt(spec).into_owned()))?
                .to_owned();
            return Ok(Self {
                kind: SourceKind::RecBole,
                name,
                raw_dir: raw_dir.unwrap_or(dir),
            });
        }
        let kind = match spec {
            "ml-latest-small" => SourceKind::MlLatestSmall,
            "ml-100k" => SourceKind::Ml100k,
            "ml-1m" => SourceKind::Ml1m,
            "amazon-movies-tv" => SourceKind::AmazonMoviesTv,
            "yelp" => SourceKind::Yelp,
            "goodreads" => SourceKind::Goodreads,
            _ => return Err(DataError::UnknownDataset(crate::excerpt(spec).into_owned())),
        };
        let raw_dir = raw_dir.ok_or_else(|| DataError::NoRawDir(kind.name().to_owned()))?;
        Ok(Self {
            name: kind.name().to_owned(),
            kind,
            raw_dir,
        })
    }

    /// As [`DatasetSource::parse`], with the raw files where a checkout keeps them: the bundled
    /// default under `fixtures/ml-latest-small`, every other named dataset under
    /// `raw_cache/<name>` (where `fetch` puts it). The caller says where both are.
    pub fn parse_in(spec: &str, fixtures: &Path, raw_cache: &Path) -> Result<Self, DataError> {
        if spec.starts_with("recbole:") {
            return Self::parse(spec, None);
        }
        let dir = match spec {
            "ml-latest-small" => fixtures.join("ml-latest-small"),
            other => raw_cache.join(other),
        };
        Self::parse(spec, Some(dir))
    }

    /// The bundled MovieLens latest-small files, committed under `fixtures`.
    pub fn bundled(fixtures: &Path) -> Self {
        Self {
            kind: SourceKind::MlLatestSmall,
            name: "ml-latest-small".into(),
            raw_dir: fixtures.join("ml-latest-small"),
        }
    }
}

/// What the LLM sees for an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemTextStyle {
    /// The title alone, as in the paper ("H(u) is the item titles").
    #[default]
    Title,
    /// The reference code's profile "title; brand/lead; category path", using whichever of the
    /// three the source has (MovieLens: "Title (year); genres").
    Rich,
}

/// Preprocessing options. Part of [`Dataset::checksum`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareOptions {
    /// Iterative k-core threshold for items; users need `max(k_core, 3)` interactions so each has
    /// a train, a validation and a test item. `0` or `1` disables item filtering.
    pub k_core: u32,
    pub item_text: ItemTextStyle,
    /// Keep only ratings ≥ this value. `None` (the default, and the paper's implicit-feedback
    /// setting) keeps every rating.
    pub min_rating: Option<f32>,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            k_core: 5,
            item_text: ItemTextStyle::Title,
            min_rating: None,
        }
    }
}

impl PrepareOptions {
    /// Largest k accepted: beyond it almost every public dataset filters to nothing.
    pub const MAX_K_CORE: u32 = 1000;

    pub fn validate(&self) -> Result<(), DataError> {
        if self.k_core > Self::MAX_K_CORE {
            return Err(DataError::InvalidOption {
                field: "k_core",
                value: self.k_core.to_string(),
                allowed: "0..=1000",
            });
        }
        if let Some(r) = self.min_rating
            && !r.is_finite()
        {
            return Err(DataError::InvalidOption {
                field: "min_rating",
                value: r.to_string(),
                allowed: "a finite number",
            });
        }
        Ok(())
    }

    pub(crate) fn keeps(&self, rating: f32) -> bool {
        self.min_rating.is_none_or(|m| rating >= m)
    }
}

/// MovieLens latest-small from a checkout's `fixtures` directory, default options.
pub fn bundled_default(fixtures: &Path) -> Result<Dataset, DataError> {
    prepare(
        &DatasetSource::bundled(fixtures),
        &PrepareOptions::default(),
    )
}

/// Reads the raw files of `source` and preprocesses them (see the crate docs for the rules).
/// The same files and options give an identical [`Dataset`], checksum included, on any machine.
pub fn prepare(source: &DatasetSource, opts: &PrepareOptions) -> Result<Dataset, DataError> {
    prepare_with_stats(source, opts).map(|(ds, _)| ds)
}

/// [`prepare`], also returning the raw and processed statistics.
pub fn prepare_with_stats(
    source: &DatasetSource,
    opts: &PrepareOptions,
) -> Result<(Dataset, DatasetStats), DataError> {
    opts.validate()?;
    let files = raw_files(source)?;
    let checksum = checksum(source, &files, opts, None)?;
    let mut raw = load_raw(source, &files, opts)?;
    build(source, opts, &mut raw, checksum)
}

/// The raw files `source` will read, in reading order (their bytes make up the checksum).
pub fn raw_files(source: &DatasetSource) -> Result<Vec<PathBuf>, DataError> {
    use formats::*;
    let dir = &source.raw_dir;
    match source.kind {
        SourceKind::MlLatestSmall => movielens::files_latest(dir),
        SourceKind::Ml100k => movielens::files_100k(dir),
        SourceKind::Ml1m => movielens::files_1m(dir),
        SourceKind::AmazonMoviesTv => amazon::files(dir),
        SourceKind::Yelp => yelp::files(dir),
        SourceKind::Goodreads => goodreads::files(dir),
        SourceKind::RecBole => recbole::files(dir, &source.name),
    }
}

/// Reads `files` (as returned by [`raw_files`]) with the loader of `source.kind`.
pub fn load_raw(
    source: &DatasetSource,
    files: &[PathBuf],
    opts: &PrepareOptions,
) -> Result<RawData, DataError> {
    use formats::*;
    match source.kind {
        SourceKind::MlLatestSmall => movielens::load_latest(files, opts),
        SourceKind::Ml100k => movielens::load_100k(files, opts),
        SourceKind::Ml1m => movielens::load_1m(files, opts),
        SourceKind::AmazonMoviesTv => amazon::load(files, opts),
        SourceKind::Yelp => yelp::load(files, opts),
        SourceKind::Goodreads => goodreads::load(files, opts),
        SourceKind::RecBole => recbole::load(files, opts),
    }
}

pub(crate) fn build(
    source: &DatasetSource,
    opts: &PrepareOptions,
    raw: &mut RawData,
    checksum: String,
) -> Result<(Dataset, DatasetStats), DataError> {
    let (users_before, items_before) = (raw.users.len(), raw.items.len());
    let titled = |raw: &RawData, items: &mut dyn Iterator<Item = u32>| {
        items
            .filter(|&i| raw.meta(i).is_some_and(|m| !m.title.trim().is_empty()))
            .count()
    };
    let raw_counts = Counts::new(
        users_before,
        items_before,
        raw.interactions.len(),
        titled(raw, &mut (0..items_before as u32)),
    );
    let split = preprocess::run(raw, opts.k_core);
    if split.users.is_empty() {
        return Err(DataError::EmptyAfterFilter {
            name: source.name.clone(),
            k: opts.k_core,
            users: users_before,
            items: items_before,
        });
    }
    let user_ids = split
        .users
        .iter()
        .map(|&u| raw.users.name(u).to_owned())
        .collect();
    let item_ids: Vec<String> = split
        .items
        .iter()
        .map(|&i| raw.items.name(i).to_owned())
        .collect();
    let item_text = split
        .items
        .iter()
        .zip(&item_ids)
        .map(|(&i, id)| item_text(raw.meta(i), id, opts.item_text))
        .collect();
    let processed = Counts::new(
        split.users.len(),
        split.items.len(),
        split.train.iter().map(Vec::len).sum::<usize>() + 2 * split.users.len(),
        titled(raw, &mut split.items.iter().copied()),
    );
    let stats = DatasetStats {
        name: source.name.clone(),
        checksum: checksum.clone(),
        k_core: opts.k_core,
        raw: raw_counts,
        processed,
        duplicates_removed: split.duplicates_removed,
        kcore_removed: split.kcore_removed,
        kcore_passes: split.kcore_passes,
        skipped: std::mem::take(&mut raw.skipped),
    };
    let ds = Dataset {
        name: source.name.clone(),
        checksum,
        user_ids,
        item_ids,
        item_text,
        train: split.train,
        valid: split.valid,
        test: split.test,
    };
    Ok((ds, stats))
}

/// Text for one item. An item with no title in the source gets a visible placeholder naming its
/// raw id, so prompts never contain an empty line and the gap is counted in `stats`.
pub fn item_text(meta: Option<&ItemMeta>, raw_id: &str, style: ItemTextStyle) -> String {
    let title = meta.map(|m| m.title.trim()).filter(|t| !t.is_empty());
    let title = match title {
        Some(t) => t.to_owned(),
        None => format!("Untitled item {raw_id}"),
    };
    match (style, meta) {
        (ItemTextStyle::Title, _) | (ItemTextStyle::Rich, None) => title,
        (ItemTextStyle::Rich, Some(m)) => {
            let mut parts = vec![title];
            parts.extend(
                [m.lead.trim(), m.category.trim()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            parts.join("; ")
        }
    }
}

/// sha256 over the preprocessing version, the dataset name, every raw file (its name, length and
/// bytes: never its directory, so the value is machine-independent) and the options.
/// `memo` lets a cache skip re-hashing files whose size and modification time it already knows.
pub fn checksum(
    source: &DatasetSource,
    files: &[PathBuf],
    opts: &PrepareOptions,
    mut memo: Option<&mut crate::cache::HashMemo>,
) -> Result<String, DataError> {
    let mut h = Sha256::new();
    h.update(format!(
        "agp-datasets preprocess v{PREPROCESS_VERSION}\n{}\n",
        source.name
    ));
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let len = std::fs::metadata(path)
            .map_err(|e| DataError::io(path, e))?
            .len();
        h.update(format!("{name}\n{len}\n"));
        let digest = match memo.as_deref_mut() {
            Some(m) => m.sha256(path)?,
            None => file_sha256(path)?,
        };
        h.update(digest);
    }
    h.update(serde_json::to_vec(opts).expect("options serialise"));
    Ok(hex::encode(h.finalize()))
}

/// sha256 of one file's bytes, streamed.
pub fn file_sha256(path: &Path) -> Result<[u8; 32], DataError> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}
