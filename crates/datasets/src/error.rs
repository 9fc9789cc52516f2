//! One error type for everything that reads, checks or writes dataset files.

use std::path::PathBuf;

/// What went wrong, always naming the file (and the 1-based line for parse errors) so a
/// researcher can open the exact spot in a multi-gigabyte dump.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: line {line}: gzip stream ends early (truncated download? re-run `cargo xtask data fetch`)"
    )]
    TruncatedGzip { path: PathBuf, line: u64 },
    #[error("{path}: line {line}: not valid UTF-8 (byte offset {offset} in the line)")]
    NotUtf8 {
        path: PathBuf,
        line: u64,
        offset: usize,
    },
    #[error("{path}: line {line}: {msg}")]
    Parse {
        path: PathBuf,
        line: u64,
        msg: String,
    },
    #[error("{path}: line {line}: missing field `{field}`")]
    MissingField {
        path: PathBuf,
        line: u64,
        field: String,
    },
    #[error("{path}: all {count} rows were skipped ({reason}); nothing left to prepare")]
    AllSkipped {
        path: PathBuf,
        reason: String,
        count: u64,
    },
    #[error("{path}: file is empty (no records)")]
    Empty { path: PathBuf },
    #[error(
        "{path}: line {line}: duplicate row for key `{key}` (an earlier line has the same key)"
    )]
    DuplicateRow {
        path: PathBuf,
        line: u64,
        key: String,
    },
    #[error("{dir}: none of the expected raw files found (looked for {expected}); {hint}")]
    MissingRawFiles {
        dir: PathBuf,
        expected: String,
        hint: String,
    },
    #[error(
        "unknown dataset `{0}`; expected one of ml-latest-small, ml-100k, ml-1m, amazon-movies-tv, yelp, goodreads, recbole:<dir>"
    )]
    UnknownDataset(String),
    #[error("invalid option `{field}` = {value}: allowed {allowed}")]
    InvalidOption {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error(
        "{name}: nothing left after {k}-core filtering ({users} users, {items} items before filtering)"
    )]
    EmptyAfterFilter {
        name: String,
        k: u32,
        users: usize,
        items: usize,
    },
    #[error("{path}: sha256 mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{url}: HTTP status {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {msg}")]
    Network { url: String, msg: String },
    #[error("{path}: corrupt cache file ({msg}); delete it and prepare again")]
    CorruptCache { path: PathBuf, msg: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, line: u64, msg: impl Into<String>) -> Self {
        DataError::Parse {
            path: path.into(),
            line,
            msg: msg.into(),
        }
    }

    pub(crate) fn missing(path: impl Into<PathBuf>, line: u64, field: &str) -> Self {
        DataError::MissingField {
            path: path.into(),
            line,
            field: field.to_owned(),
        }
    }
}
