//! One module per raw format; each turns files in a directory into a [`RawData`].

pub mod amazon;
pub mod movielens;

use crate::DataError;
use crate::raw::RawData;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The first of `names` (each also tried with `.gz`) that exists in `dir`.
pub(crate) fn find_file(dir: &Path, names: &[&str], dataset: &str) -> Result<PathBuf, DataError> {
    for name in names {
        for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(DataError::MissingRawFiles {
        dir: dir.to_owned(),
        expected: names.join(" or "),
        hint: format!("run `cargo xtask data fetch {dataset}` or pass --raw DIR"),
    })
}

pub(crate) fn parse_num<T: FromStr>(
    s: &str,
    path: &Path,
    line: u64,
    field: &str,
) -> Result<T, DataError> {
    s.trim().parse().map_err(|_| {
        DataError::parse(
            path,
            line,
            format!("field `{field}`: `{s}` is not a number"),
        )
    })
}

/// A file that yields no interactions is an error, never an empty dataset.
pub(crate) fn require_nonempty(raw: &RawData, path: &Path) -> Result<(), DataError> {
    if raw.interactions.is_empty() {
        Err(DataError::Empty {
            path: path.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// The `N` files a loader needs, as listed by its `files_*` function.
pub(crate) fn expect_files<const N: usize>(files: &[PathBuf]) -> Result<[&Path; N], DataError> {
    if files.len() != N {
        return Err(DataError::MissingRawFiles {
            dir: files
                .first()
                .and_then(|p| p.parent())
                .map(Path::to_owned)
                .unwrap_or_default(),
            expected: format!("{N} files"),
            hint: format!("got {}; list them with `raw_files`", files.len()),
        });
    }
    Ok(std::array::from_fn(|i| files[i].as_path()))
}
