//! One module per raw format; each turns files in a directory into a [`RawData`].

pub mod amazon;
pub mod goodreads;
pub mod movielens;
pub mod recbole;
pub mod yelp;

use crate::DataError;
use crate::error::excerpt;
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
            format!("field `{field}`: `{}` is not a number", excerpt(s)),
        )
    })
}

/// A rating as text. `f32::from_str` accepts `NaN`, `inf` and overflows such as `1e39` to
/// infinity; any of them would pass or fail `min_rating` arbitrarily, so they are errors.
pub(crate) fn parse_rating(s: &str, path: &Path, line: u64, field: &str) -> Result<f32, DataError> {
    let v: f32 = parse_num(s, path, line, field)?;
    if v.is_finite() {
        return Ok(v);
    }
    // Parsing succeeded, so the text is either a NaN/infinity literal or a finite number too
    // large for f32.
    let t = s.trim();
    let word = t.strip_prefix(['-', '+']).unwrap_or(t);
    let why = if ["nan", "inf", "infinity"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
    {
        "is not a finite number"
    } else {
        "is too large for a rating"
    };
    Err(DataError::parse(
        path,
        line,
        format!("field `{field}`: `{}` {why}", excerpt(s)),
    ))
}

/// A Unix timestamp must not be negative: these files are ratings collected since the 1990s,
/// so a date before 1970 is corruption (a sign flipped, a field shifted), and taken as given it
/// would silently move the interaction to the start of the user's history.
pub(crate) fn non_negative_ts(
    ts: i64,
    shown: &str,
    path: &Path,
    line: u64,
    field: &str,
) -> Result<i64, DataError> {
    if ts < 0 {
        return Err(DataError::parse(
            path,
            line,
            format!(
                "field `{field}`: {shown} is a negative Unix timestamp (before 1970); expected \
                 0 or more"
            ),
        ));
    }
    Ok(ts)
}

/// A Unix timestamp as text: anything but a whole number in `0..=i64::MAX` is an error.
pub(crate) fn parse_int_ts(s: &str, path: &Path, line: u64, field: &str) -> Result<i64, DataError> {
    let t = s.trim();
    let ts = t.parse().map_err(|_| {
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        let why = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            "does not fit a 64-bit timestamp"
        } else {
            "is not an integer"
        };
        DataError::parse(
            path,
            line,
            format!("field `{field}`: `{}` {why}", excerpt(s)),
        )
    })?;
    non_negative_ts(ts, &format!("`{}`", excerpt(s)), path, line, field)
}

/// A float timestamp (RecBole writes `timestamp:float`) truncated toward zero. A plain `as`
/// cast would turn `NaN` into 0 and `-1e300` into `i64::MIN`, silently reordering the user's
/// history, so non-finite and out-of-range values are errors.
pub(crate) fn parse_float_ts(
    s: &str,
    path: &Path,
    line: u64,
    field: &str,
) -> Result<i64, DataError> {
    let v: f64 = parse_num(s, path, line, field)?;
    // 2^63 is exactly representable; every finite f64 in [-2^63, 2^63) truncates into i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let why = if !v.is_finite() {
        "is not a finite number"
    } else if !(-LIMIT..LIMIT).contains(&v) {
        "does not fit a 64-bit timestamp"
    } else {
        return Ok(v as i64);
    };
    Err(DataError::parse(
        path,
        line,
        format!("field `{field}`: `{}` {why}", excerpt(s)),
    ))
}

/// The value of a JSON text for an error message, bounded.
fn json_shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("string \"{}\"", excerpt(s)),
        other => excerpt(&other.to_string()).into_owned(),
    }
}

/// A rating from a JSON line. Read as a [`serde_json::Value`] rather than `f32` so a wrong
/// type names the field, and because serde casts numbers beyond `f32` to infinity.
pub(crate) fn json_rating(
    v: Option<serde_json::Value>,
    path: &Path,
    line: u64,
    field: &str,
) -> Result<f32, DataError> {
    let v = v.ok_or_else(|| DataError::missing(path, line, field))?;
    match v.as_f64() {
        Some(x) if (x as f32).is_finite() => Ok(x as f32),
        Some(_) => Err(DataError::parse(
            path,
            line,
            format!(
                "field `{field}`: {} is too large for a rating",
                json_shown(&v)
            ),
        )),
        None => Err(DataError::parse(
            path,
            line,
            format!("field `{field}`: {} is not a number", json_shown(&v)),
        )),
    }
}

/// A Unix timestamp from a JSON line, with the field named when it is not an integer, does not
/// fit `i64` or is negative.
pub(crate) fn json_int_ts(
    v: Option<serde_json::Value>,
    path: &Path,
    line: u64,
    field: &str,
) -> Result<i64, DataError> {
    let v = v.ok_or_else(|| DataError::missing(path, line, field))?;
    if let Some(t) = v.as_i64() {
        return non_negative_ts(t, &json_shown(&v), path, line, field);
    }
    let why = if v.is_u64() {
        "does not fit a 64-bit timestamp"
    } else {
        "is not an integer"
    };
    Err(DataError::parse(
        path,
        line,
        format!("field `{field}`: {} {why}", json_shown(&v)),
    ))
}

/// A row of a fixed layout must have exactly `names.len()` columns: a short row names the first
/// missing field, and a long one is an error too, because an extra column means a separator
/// inside a field (an unquoted comma in a title) shifted what follows, or the file is not the
/// format it claims to be.
pub(crate) fn exact_columns(
    found: usize,
    names: &[&str],
    sep: Sep,
    path: &Path,
    line: u64,
) -> Result<(), DataError> {
    match found.cmp(&names.len()) {
        std::cmp::Ordering::Less => Err(DataError::missing(path, line, names[found])),
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(DataError::columns(
            path,
            line,
            names.len(),
            found,
            format!("{}-separated: {}", sep.name(), names.join(sep.text())),
        )),
    }
}

/// The separators of the line-based formats, for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sep {
    Comma,
    Tab,
    Pipe,
    DoubleColon,
}

impl Sep {
    fn name(self) -> &'static str {
        match self {
            Sep::Comma => "comma",
            Sep::Tab => "tab",
            Sep::Pipe => "`|`",
            Sep::DoubleColon => "`::`",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Sep::Comma => ",",
            Sep::Tab => ", ",
            Sep::Pipe => "|",
            Sep::DoubleColon => "::",
        }
    }
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
    seconds(y, m, d, hms(time)?, 0)
}

/// Unix seconds of a calendar date and time of day, or `None` when the year is so far out that
/// the seconds would not fit `i64` (a corrupt year must not wrap around or panic).
fn seconds(y: i64, m: u32, d: u32, time_of_day: i64, offset: i64) -> Option<i64> {
    // Beyond ±2^40 years `days_from_civil` itself would overflow; i64 seconds end near ±2.9e11.
    if y.unsigned_abs() > 1 << 40 {
        return None;
    }
    days_from_civil(y, m, d)
        .checked_mul(86_400)?
        .checked_add(time_of_day)?
        .checked_sub(offset)
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
    // `-0700`: exactly four digits, so the offset cannot overflow.
    let tz = tz.get(1..).filter(|t| t.len() == 4)?;
    let tz: i64 = tz.parse().ok()?;
    let offset = tz_sign * ((tz / 100) * 3600 + (tz % 100) * 60);
    if !(1..=31).contains(&d) {
        return None;
    }
    seconds(y, m, d, hms(time)?, offset)
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
        // Years whose seconds overflow i64 are rejected, not wrapped (or a debug-build panic).
        assert_eq!(parse_ymd_hms("9223372036854775807-01-01"), None);
        assert_eq!(parse_ymd_hms("300000000000-01-01"), None);
        assert_eq!(
            parse_ruby_date("Mon Aug 01 13:41:57 -0700 9223372036854775807"),
            None
        );
        assert_eq!(
            parse_ruby_date("Mon Aug 01 13:41:57 -9223372036854775807 2016"),
            None
        );
    }
}
