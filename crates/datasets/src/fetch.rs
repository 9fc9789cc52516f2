//! Downloading the official raw files (`cargo xtask data fetch`), resumable and checksummed.
//!
//! Each download goes to `<file>.part`; an interrupted one resumes with an HTTP `Range` request
//! (a server that ignores it just sends the whole file again). A finished file is checked
//! against its sha256 and only then renamed into place. The published sites give no sha256
//! (MovieLens publishes MD5, the UCSD and SNAP mirrors nothing), so where none is pinned here
//! the first download's hash is recorded in `SHA256SUMS` next to the files and every later
//! fetch or `--verify` is checked against it; pass `--sha256` to pin a known value.

use crate::source::{SourceKind, file_sha256};
use crate::{DataError, zip};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One file to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub url: String,
    /// Name under the destination directory.
    pub file: String,
    /// Expected sha256 (hex), when known.
    pub sha256: Option<String>,
    /// For zip archives: members to extract (path inside the archive → name on disk).
    pub extract: Vec<(String, String)>,
}

impl RemoteFile {
    fn plain(url: &str) -> Self {
        let file = url.rsplit('/').next().unwrap_or(url).to_owned();
        Self {
            url: url.to_owned(),
            file,
            sha256: None,
            extract: Vec::new(),
        }
    }

    fn zip(url: &str, members: &[(&str, &str)]) -> Self {
        Self {
            extract: members
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            ..Self::plain(url)
        }
    }
}

const GROUPLENS: &str = "https://files.grouplens.org/datasets/movielens";
const UCSD: &str = "https://datarepo.eng.ucsd.edu/mcauley_group";
const SNAP: &str = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles";

/// The official files of a dataset. `variant` picks the Amazon release (`2014`, `2014-ratings`,
/// `2018` (default), `2018-5core`, `2023`) or a Goodreads genre subset (e.g. `poetry`; default
/// the full dump).
pub fn manifest(kind: &SourceKind, variant: Option<&str>) -> Result<Vec<RemoteFile>, DataError> {
    let bad_variant = |allowed: &'static str| DataError::InvalidOption {
        field: "variant",
        value: variant.unwrap_or("").to_owned(),
        allowed,
    };
    Ok(match (kind, variant) {
        (SourceKind::MlLatestSmall, None) => vec![RemoteFile::zip(
            &format!("{GROUPLENS}/ml-latest-small.zip"),
            &[
                ("ml-latest-small/ratings.csv", "ratings.csv"),
                ("ml-latest-small/movies.csv", "movies.csv"),
            ],
        )],
        (SourceKind::Ml100k, None) => vec![RemoteFile::zip(
            &format!("{GROUPLENS}/ml-100k.zip"),
            &[("ml-100k/u.data", "u.data"), ("ml-100k/u.item", "u.item")],
        )],
        (SourceKind::Ml1m, None) => vec![RemoteFile::zip(
            &format!("{GROUPLENS}/ml-1m.zip"),
            &[
                ("ml-1m/ratings.dat", "ratings.dat"),
                ("ml-1m/movies.dat", "movies.dat"),
            ],
        )],
        (SourceKind::AmazonMoviesTv, v) => match v.unwrap_or("2018") {
            "2018" => vec![
                RemoteFile::plain(&format!(
                    "{UCSD}/data/amazon_v2/categoryFiles/Movies_and_TV.json.gz"
                )),
                RemoteFile::plain(&format!(
                    "{UCSD}/data/amazon_v2/metaFiles2/meta_Movies_and_TV.json.gz"
                )),
            ],
            "2018-5core" => vec![
                RemoteFile::plain(&format!(
                    "{UCSD}/data/amazon_v2/categoryFilesSmall/Movies_and_TV_5.json.gz"
                )),
                RemoteFile::plain(&format!(
                    "{UCSD}/data/amazon_v2/metaFiles2/meta_Movies_and_TV.json.gz"
                )),
            ],
            "2014" => vec![
                RemoteFile::plain(&format!("{SNAP}/reviews_Movies_and_TV_5.json.gz")),
                RemoteFile::plain(&format!("{SNAP}/meta_Movies_and_TV.json.gz")),
            ],
            "2014-ratings" => vec![
                RemoteFile::plain(&format!("{SNAP}/ratings_Movies_and_TV.csv")),
                RemoteFile::plain(&format!("{SNAP}/meta_Movies_and_TV.json.gz")),
            ],
            "2023" => vec![
                RemoteFile::plain(&format!(
                    "{UCSD}/data/amazon_2023/raw/review_categories/Movies_and_TV.jsonl.gz"
                )),
                RemoteFile::plain(&format!(
                    "{UCSD}/data/amazon_2023/raw/meta_categories/meta_Movies_and_TV.jsonl.gz"
                )),
            ],
            _ => return Err(bad_variant("2014, 2014-ratings, 2018, 2018-5core or 2023")),
        },
        (SourceKind::Goodreads, None) => vec![
            RemoteFile::plain(&format!(
                "{UCSD}/gdrive/goodreads/goodreads_interactions_dedup.json.gz"
            )),
            RemoteFile::plain(&format!("{UCSD}/gdrive/goodreads/goodreads_books.json.gz")),
        ],
        (SourceKind::Goodreads, Some(genre)) => {
            let ok = genre
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-');
            if !ok || genre.is_empty() {
                return Err(bad_variant(
                    "a genre name such as poetry, children, comics_graphic",
                ));
            }
            vec![
                RemoteFile::plain(&format!(
                    "{UCSD}/gdrive/goodreads/byGenre/goodreads_interactions_{genre}.json.gz"
                )),
                RemoteFile::plain(&format!(
                    "{UCSD}/gdrive/goodreads/byGenre/goodreads_books_{genre}.json.gz"
                )),
            ]
        }
        (SourceKind::Yelp, _) => {
            return Err(DataError::MissingRawFiles {
                dir: PathBuf::new(),
                expected: "yelp_academic_dataset_review.json and yelp_academic_dataset_business.json".into(),
                hint: "Yelp requires accepting its terms in a browser: download the JSON dataset from \
                       https://business.yelp.com/data/resources/open-dataset/, extract it, and pass \
                       the directory with --raw"
                    .into(),
            });
        }
        (SourceKind::RecBole, _) => {
            return Err(DataError::InvalidOption {
                field: "dataset",
                value: "recbole:<dir>".into(),
                allowed: "a named dataset (RecBole directories are local already)",
            });
        }
        (_, Some(_)) => return Err(bad_variant("no variant for this dataset")),
    })
}

/// Rewrites every URL's scheme and host to `mirror` (keeping the path), for mirrors and tests.
pub fn with_mirror(files: Vec<RemoteFile>, mirror: &str) -> Vec<RemoteFile> {
    let mirror = mirror.trim_end_matches('/');
    files
        .into_iter()
        .map(|mut f| {
            let path_start = f
                .url
                .find("://")
                .map(|i| i + 3)
                .and_then(|i| f.url[i..].find('/').map(|j| i + j));
            if let Some(p) = path_start {
                f.url = format!("{mirror}{}", &f.url[p..]);
            }
            f
        })
        .collect()
}

/// Where the download stands, for the progress display.
pub trait Progress {
    fn start(&mut self, file: &str, total: Option<u64>, already: u64);
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self);
}

/// No display (tests, scripts).
pub struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: &str, _: Option<u64>, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

const SUMS: &str = "SHA256SUMS";

fn read_sums(dest: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dest.join(SUMS))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once("  ")
                .map(|(h, f)| (f.trim().to_owned(), h.trim().to_owned()))
        })
        .collect()
}

fn write_sums(dest: &Path, sums: &BTreeMap<String, String>) -> Result<(), DataError> {
    let text: String = sums.iter().map(|(f, h)| format!("{h}  {f}\n")).collect();
    let p = dest.join(SUMS);
    std::fs::write(&p, text).map_err(|e| DataError::io(&p, e))
}

/// Downloads `files` into `dest` (resuming `.part` files), checks sha256 (pinned, or recorded
/// on first download), and extracts zip members. Returns the paths of the files on disk.
pub async fn fetch_files(
    files: &[RemoteFile],
    dest: &Path,
    progress: &mut dyn Progress,
) -> Result<Vec<PathBuf>, DataError> {
    std::fs::create_dir_all(dest).map_err(|e| DataError::io(dest, e))?;
    let client = client()?;
    let mut sums = read_sums(dest);
    let mut out = Vec::new();
    for f in files {
        let target = dest.join(&f.file);
        let expected = f.sha256.clone().or_else(|| sums.get(&f.file).cloned());
        if !target.is_file() {
            download(&client, f, &target, progress).await?;
        }
        let actual = hex::encode(file_sha256(&target)?);
        match expected {
            Some(e) if !e.eq_ignore_ascii_case(&actual) => {
                // Keep the bad file aside rather than deleting what may be hours of download.
                let bad = target.with_extension("corrupt");
                let _ = std::fs::rename(&target, &bad);
                return Err(DataError::ChecksumMismatch {
                    path: bad,
                    expected: e,
                    actual,
                });
            }
            _ => {
                sums.insert(f.file.clone(), actual);
                write_sums(dest, &sums)?;
            }
        }
        if f.extract.is_empty() {
            out.push(target);
        } else {
            for (member, name) in &f.extract {
                let to = dest.join(name);
                zip::extract(&target, member, &to)?;
                out.push(to);
            }
        }
    }
    Ok(out)
}

/// An error with its causes ("error sending request: dns error: ..."), since reqwest's own
/// message omits the part a user needs.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn client() -> Result<reqwest::Client, DataError> {
    // reqwest is built without a bundled TLS provider; ring is the workspace's choice.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("agp-bench-datasets/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| DataError::Network {
            url: String::new(),
            msg: e.to_string(),
        })
}

async fn download(
    client: &reqwest::Client,
    f: &RemoteFile,
    target: &Path,
    progress: &mut dyn Progress,
) -> Result<(), DataError> {
    let part = target.with_file_name(format!("{}.part", f.file));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let net = |e: reqwest::Error| DataError::Network {
        url: f.url.clone(),
        msg: chain(&e),
    };
    let mut req = client.get(&f.url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().await.map_err(net)?;
    let status = resp.status();
    let (append, total) = match status.as_u16() {
        206 => (true, resp.content_length().map(|n| n + have)),
        200 => (false, resp.content_length()),
        // The .part is already complete: nothing left to send.
        416 if have > 0 => {
            std::fs::rename(&part, target).map_err(|e| DataError::io(target, e))?;
            return Ok(());
        }
        s => {
            return Err(DataError::Http {
                url: f.url.clone(),
                status: s,
            });
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&part)
        .map_err(|e| DataError::io(&part, e))?;
    let mut written = if append { have } else { 0 };
    progress.start(&f.file, total, written);
    while let Some(chunk) = resp.chunk().await.map_err(net)? {
        file.write_all(&chunk)
            .map_err(|e| DataError::io(&part, e))?;
        written += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
    }
    file.flush().map_err(|e| DataError::io(&part, e))?;
    progress.finish();
    if let Some(t) = total
        && t != written
    {
        return Err(DataError::Network {
            url: f.url.clone(),
            msg: format!(
                "connection closed after {written} of {t} bytes; run fetch again to resume"
            ),
        });
    }
    std::fs::rename(&part, target).map_err(|e| DataError::io(target, e))
}

/// [`fetch_files`] on a private single-threaded runtime, for synchronous callers.
pub fn fetch_files_blocking(
    files: &[RemoteFile],
    dest: &Path,
    progress: &mut dyn Progress,
) -> Result<Vec<PathBuf>, DataError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DataError::io(dest, e))?;
    rt.block_on(fetch_files(files, dest, progress))
}

/// A terminal progress bar per file (bytes, rate, ETA).
#[derive(Default)]
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress for Bar {
    fn start(&mut self, file: &str, total: Option<u64>, already: u64) {
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(file.to_owned());
        bar.set_position(already);
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
