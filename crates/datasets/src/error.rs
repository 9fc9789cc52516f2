//! One error type for everything that reads, checks or writes dataset files.

use std::borrow::Cow;
use std::path::PathBuf;

/// Most characters of input an error message quotes: enough to recognise the value, and a
/// 50 MB field in a broken dump must not become a 50 MB message.
pub const QUOTE_LIMIT: usize = 120;

/// `s` unchanged when it has at most [`QUOTE_LIMIT`] characters, otherwise its first
/// [`QUOTE_LIMIT`] characters followed by `… (N bytes)` with the full length.
pub fn excerpt(s: &str) -> Cow<'_, str> {
    excerpt_n(s, QUOTE_LIMIT)
}

fn excerpt_n(s: &str, limit: usize) -> Cow<'_, str> {
    match s.char_indices().nth(limit) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} bytes)", &s[..cut], s.len())),
    }
}

/// A serde_json error as text, with whatever input it quotes bounded. serde_json quotes
/// offending strings in full (`invalid type: string "…"`), so the message body is cut like any
/// other quote while its position suffix, which locates the problem, is kept.
pub fn json_error_text(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(body) if e.line() != 0 => format!("{}{suffix}", excerpt(body)),
        _ => excerpt(&full).into_owned(),
    }
}

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
    #[error(
        "{path}: line {line}: expected {expected} columns ({layout}), found {found}{hint}",
        hint = if *found > *expected && layout.starts_with("comma") {
            " (a field containing a comma must be in double quotes)"
        } else {
            ""
        }
    )]
    ColumnCount {
        path: PathBuf,
        line: u64,
        expected: usize,
        found: usize,
        /// The separator and, where fixed, the column names: `comma-separated: a,b,c`.
        layout: String,
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
    #[error(
        "dataset `{0}`: no directory for its raw files was given (the harness's workspace names one: `fixtures/` for the bundled default, `.cache/raw/<name>` for the others)"
    )]
    NoRawDir(String),
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

    /// Callers quote input through [`excerpt`]; the cap here is a backstop for a message that
    /// embeds text from elsewhere (a library's error), so no path can print an unbounded message.
    pub(crate) fn parse(path: impl Into<PathBuf>, line: u64, msg: impl Into<String>) -> Self {
        let mut msg = msg.into();
        if let Cow::Owned(cut) = excerpt_n(&msg, 8 * QUOTE_LIMIT) {
            msg = cut;
        }
        DataError::Parse {
            path: path.into(),
            line,
            msg,
        }
    }

    /// `field` may come from a header line of the input (RecBole), hence the excerpt.
    pub(crate) fn missing(path: impl Into<PathBuf>, line: u64, field: &str) -> Self {
        DataError::MissingField {
            path: path.into(),
            line,
            field: excerpt(field).into_owned(),
        }
    }

    pub(crate) fn duplicate(path: impl Into<PathBuf>, line: u64, key: &str) -> Self {
        DataError::DuplicateRow {
            path: path.into(),
            line,
            key: excerpt(key).into_owned(),
        }
    }

    pub(crate) fn columns(
        path: impl Into<PathBuf>,
        line: u64,
        expected: usize,
        found: usize,
        layout: impl Into<String>,
    ) -> Self {
        DataError::ColumnCount {
            path: path.into(),
            line,
            expected,
            found,
            layout: layout.into(),
        }
    }
}
