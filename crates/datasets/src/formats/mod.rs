//! One module per raw format; each turns files in a directory into a [`RawData`].

pub mod amazon;
pub mod goodreads;
pub mod movielens;
pub mod recbole;
pub mod yelp;

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
        hint: if dataset == "yelp" {
            "download the Yelp Open Dataset (its terms must be accepted in a browser), extract it \
             and pass --raw DIR"
                .to_owned()
        } else {
            format!("run `cargo xtask data fetch {dataset}` or pass --raw DIR")
        },
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
        if let Some((reason, &count)) = raw.skipped.iter().next() {
            return Err(DataError::AllSkipped {
                path: path.to_owned(),
                reason: reason.clone(),
                count,
            });
        }
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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn hms(s: &str) -> Option<i64> {
    let mut it = s.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (it.next()??, it.next()??, it.next().unwrap_or(Some(0))?);
    ((0..24).contains(&h) && (0..60).contains(&m) && (0..=60).contains(&sec))
        .then_some(h * 3600 + m * 60 + sec)
}

/// `2018-07-07 22:09:11` or `2018-07-07` (Yelp) as Unix seconds, taking the time as UTC.
pub(crate) fn parse_ymd_hms(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once(' ').unwrap_or((s.trim(), "00:00:00"));
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hms(time)?)
}

/// `Mon Aug 01 13:41:57 -0700 2016` (Goodreads, Ruby's default format) as Unix seconds.
pub(crate) fn parse_ruby_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let f: Vec<&str> = s.split_whitespace().collect();
    let [_, mon, day, time, tz, year] = f.as_slice() else {
        return None;
    };
    let m = MONTHS.iter().position(|x| x == mon)? as u32 + 1;
    let d: u32 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let tz_sign = match tz.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let tz: i64 = tz.get(1..)?.parse().ok()?;
    let offset = tz_sign * ((tz / 100) * 3600 + (tz % 100) * 60);
    if !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hms(time)? - offset)
}

/// Files in `dir` whose name starts with `prefix` and ends with one of `exts` (optionally
/// `.gz`), sorted so the choice does not depend on directory order.
pub(crate) fn files_with_prefix(dir: &Path, prefix: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            let name = name.strip_suffix(".gz").unwrap_or(name);
            name.starts_with(prefix) && exts.iter().any(|e| name.ends_with(e))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(parse_ymd_hms("2018-07-07 22:09:11"), Some(1_531_001_351));
        assert_eq!(parse_ymd_hms("2000-02-29"), Some(951_782_400));
        assert_eq!(
            parse_ruby_date("Mon Aug 01 13:41:57 -0700 2016"),
            Some(1_470_084_117)
        );
        assert_eq!(parse_ruby_date("garbage"), None);
        assert_eq!(parse_ymd_hms("2018-13-01 00:00:00"), None);
    }
}
