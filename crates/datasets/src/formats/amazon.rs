//! Amazon Movies & TV in every public release, read exactly as downloaded:
//!
//! | release | interactions | metadata |
//! |---|---|---|
//! | 2014 ratings-only | `ratings_Movies_and_TV.csv` (`user,item,rating,timestamp`, no header) | `meta_Movies_and_TV.json` (Python-dict lines) |
//! | 2014 reviews | `reviews_Movies_and_TV[_5].json` (`reviewerID, asin, overall, unixReviewTime`) | same |
//! | 2018 | `Movies_and_TV[_5].json` (same fields) | `meta_Movies_and_TV.json` (JSON: `asin, title, brand, category`) |
//! | 2023 | `Movies_and_TV.jsonl` (`user_id, parent_asin, rating, timestamp` in ms) | `meta_Movies_and_TV.jsonl` (`parent_asin, title, store, categories`) |
//!
//! Each may be gzipped. The metadata file is optional: without it items are untitled (visible in
//! `stats` as `titled_items_fraction`). Metadata lines that cannot be parsed are an error; metadata
//! for items nobody rated is counted in `skipped`.

use super::{
    Sep, exact_columns, find_file, json_int_ts, json_rating, parse_int_ts, parse_rating,
    require_nonempty,
};
use crate::error::{excerpt, json_error_text};
use crate::io::{LineReader, split_csv};
use crate::raw::{ItemMeta, MetaOutcome, RawData};
use crate::{DataError, PrepareOptions};
use serde::Deserialize;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

const DATASET: &str = "amazon-movies-tv";

/// Which release a raw file belongs to, from its name as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Ratings2014,
    Reviews2014,
    Reviews2018,
    Reviews2023,
}

/// Interaction file names in order of preference, with the metadata file each pairs with.
const LAYOUTS: [(Release, &[&str], &str); 4] = [
    (
        Release::Reviews2023,
        &["Movies_and_TV.jsonl"],
        "meta_Movies_and_TV.jsonl",
    ),
    (
        Release::Reviews2018,
        &["Movies_and_TV.json", "Movies_and_TV_5.json"],
        "meta_Movies_and_TV.json",
    ),
    (
        Release::Reviews2014,
        &["reviews_Movies_and_TV.json", "reviews_Movies_and_TV_5.json"],
        "meta_Movies_and_TV.json",
    ),
    (
        Release::Ratings2014,
        &["ratings_Movies_and_TV.csv"],
        "meta_Movies_and_TV.json",
    ),
];

pub fn release_of(path: &Path) -> Option<Release> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(".gz").unwrap_or(name);
    LAYOUTS
        .iter()
        .find(|(_, names, _)| names.contains(&name))
        .map(|(r, _, _)| *r)
}

/// The interaction file, followed by the metadata file when present.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    for (_, names, meta) in LAYOUTS {
        if let Ok(inter) = find_file(dir, names, DATASET) {
            let mut out = vec![inter];
            out.extend(find_file(dir, &[meta], DATASET).ok());
            return Ok(out);
        }
    }
    let all: Vec<&str> = LAYOUTS
        .iter()
        .flat_map(|(_, n, _)| n.iter().copied())
        .collect();
    find_file(dir, &all, DATASET).map(|p| vec![p])
}

pub fn load(files: &[PathBuf], opts: &PrepareOptions) -> Result<RawData, DataError> {
    let Some(inter) = files.first() else {
        return Err(DataError::MissingRawFiles {
            dir: PathBuf::new(),
            expected: "an Amazon interaction file".into(),
            hint: "list them with `raw_files`".into(),
        });
    };
    let release = release_of(inter).ok_or_else(|| {
        DataError::parse(
            inter,
            0,
            "file name matches no known Amazon release (see the module docs)",
        )
    })?;
    let mut raw = RawData::default();
    load_interactions(inter, release, opts, &mut raw)?;
    if let Some(meta) = files.get(1) {
        load_meta(meta, &mut raw)?;
    }
    Ok(raw)
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Review<'a> {
    #[serde(borrow)]
    reviewerID: Option<Cow<'a, str>>,
    #[serde(borrow)]
    asin: Option<Cow<'a, str>>,
    overall: Option<serde_json::Value>,
    unixReviewTime: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Review2023<'a> {
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    parent_asin: Option<Cow<'a, str>>,
    rating: Option<serde_json::Value>,
    timestamp: Option<serde_json::Value>,
}

/// Streams one interaction file into `raw`. Public for the benchmark.
pub fn load_interactions(
    path: &Path,
    release: Release,
    opts: &PrepareOptions,
    raw: &mut RawData,
) -> Result<(), DataError> {
    let mut r = LineReader::open(path)?;
    while let Some((ln, line)) = r.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let (user, item, rating, ts): (Cow<str>, Cow<str>, f32, i64) = match release {
            Release::Ratings2014 => {
                let (u, i, rt, t) = split4(line, path, ln)?;
                (
                    u,
                    i,
                    parse_rating(&rt, path, ln, "rating")?,
                    parse_int_ts(&t, path, ln, "timestamp")?,
                )
            }
            Release::Reviews2014 | Release::Reviews2018 => {
                let rv: Review = json_line(line, path, ln)?;
                (
                    rv.reviewerID
                        .ok_or_else(|| DataError::missing(path, ln, "reviewerID"))?,
                    rv.asin
                        .ok_or_else(|| DataError::missing(path, ln, "asin"))?,
                    json_rating(rv.overall, path, ln, "overall")?,
                    json_int_ts(rv.unixReviewTime, path, ln, "unixReviewTime")?,
                )
            }
            Release::Reviews2023 => {
                let rv: Review2023 = json_line(line, path, ln)?;
                (
                    rv.user_id
                        .ok_or_else(|| DataError::missing(path, ln, "user_id"))?,
                    rv.parent_asin
                        .ok_or_else(|| DataError::missing(path, ln, "parent_asin"))?,
                    json_rating(rv.rating, path, ln, "rating")?,
                    json_int_ts(rv.timestamp, path, ln, "timestamp")?,
                )
            }
        };
        if user.is_empty() || item.is_empty() {
            let field = if user.is_empty() { "user" } else { "item" };
            return Err(DataError::parse(path, ln, format!("empty `{field}` id")));
        }
        if opts.keeps(rating) {
            raw.push(&user, &item, ts);
        } else {
            raw.skip("below_min_rating");
        }
    }
    require_nonempty(raw, path)
}

type Fields4<'a> = (Cow<'a, str>, Cow<'a, str>, Cow<'a, str>, Cow<'a, str>);

/// `user,item,rating,timestamp`. Amazon ids never contain commas, so the common case is a plain
/// split; quoted fields still go through the RFC 4180 splitter.
fn split4<'a>(line: &'a str, path: &Path, ln: u64) -> Result<Fields4<'a>, DataError> {
    const NAMES: [&str; 4] = ["user", "item", "rating", "timestamp"];
    if !line.contains('"') {
        let mut it = line.split(',');
        let mut f: [&str; 4] = [""; 4];
        for (k, slot) in f.iter_mut().enumerate() {
            *slot = it
                .next()
                .ok_or_else(|| DataError::missing(path, ln, NAMES[k]))?;
        }
        let extra = it.count();
        if extra > 0 {
            exact_columns(4 + extra, &NAMES, Sep::Comma, path, ln)?;
        }
        return Ok(f.map(Cow::Borrowed).into());
    }
    let mut f = Vec::with_capacity(4);
    split_csv(line, b',', &mut f).map_err(|m| DataError::parse(path, ln, m))?;
    exact_columns(f.len(), &NAMES, Sep::Comma, path, ln)?;
    let mut it = f.into_iter();
    Ok((
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
    ))
}

pub(crate) fn json_line<'a, T: Deserialize<'a>>(
    line: &'a str,
    path: &Path,
    ln: u64,
) -> Result<T, DataError> {
    serde_json::from_str(line)
        .map_err(|e| DataError::parse(path, ln, format!("broken JSON: {}", json_error_text(&e))))
}

#[derive(Deserialize)]
struct Meta {
    asin: Option<String>,
    parent_asin: Option<String>,
    title: Option<String>,
    brand: Option<String>,
    store: Option<String>,
    /// 2018: a category path.
    category: Option<serde_json::Value>,
    /// 2014: a list of category paths; 2023: one path.
    categories: Option<serde_json::Value>,
    main_category: Option<String>,
}

fn load_meta(path: &Path, raw: &mut RawData) -> Result<(), DataError> {
    let mut r = LineReader::open(path)?;
    let mut any = false;
    while let Some((ln, line)) = r.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        any = true;
        let m: Meta = match serde_json::from_str(line) {
            Ok(m) => m,
            // The 2014 metadata is one Python dict literal per line (single quotes, True/None).
            Err(json_err) => {
                let converted = py_literal_to_json(line).map_err(|e| {
                    DataError::parse(
                        path,
                        ln,
                        format!(
                            "neither JSON ({}) nor a Python dict ({})",
                            json_error_text(&json_err),
                            excerpt(&e)
                        ),
                    )
                })?;
                serde_json::from_str(&converted).map_err(|e| {
                    DataError::parse(
                        path,
                        ln,
                        format!("broken metadata line: {}", json_error_text(&e)),
                    )
                })?
            }
        };
        let id = m
            .parent_asin
            .or(m.asin)
            .ok_or_else(|| DataError::missing(path, ln, "asin"))?;
        let mut path_parts = Vec::new();
        if let Some(c) = &m.main_category {
            path_parts.push(c.clone());
        }
        for v in [&m.category, &m.categories].into_iter().flatten() {
            collect_path(v, &mut path_parts);
        }
        path_parts.dedup();
        let meta = ItemMeta {
            title: clean(m.title.as_deref().unwrap_or("")),
            lead: clean(m.brand.or(m.store).as_deref().unwrap_or("")),
            category: path_parts
                .iter()
                .map(|s| clean(s))
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" > "),
        };
        match raw.set_meta(&id, meta) {
            MetaOutcome::Set => {}
            MetaOutcome::Unused => raw.skip("metadata_without_interactions"),
            // Repeated metadata rows exist in the 2018 dump; the first is kept and the rest counted.
            MetaOutcome::Duplicate => raw.skip("duplicate_metadata_rows"),
        }
    }
    if !any {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// The first category path: a list of strings, or (2014) a list of lists.
fn collect_path(v: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => match a.first() {
            Some(Value::Array(_)) => collect_path(&a[0], out),
            _ => out.extend(a.iter().filter_map(|x| x.as_str().map(str::to_owned))),
        },
        _ => {}
    }
}

/// Collapses whitespace and decodes the few HTML entities the dumps carry in titles.
fn clean(s: &str) -> String {
    let s = s
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Rewrites one Python literal (dicts, lists, strings in either quote, numbers, True/False/None)
/// as JSON. Enough for the 2014 Amazon metadata, which was written with Python's `repr`.
pub fn py_literal_to_json(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                let quote = c;
                out.push('"');
                loop {
                    let Some((_, c)) = chars.next() else {
                        return Err(format!(
                            "unterminated string starting at column {}",
                            pos + 1
                        ));
                    };
                    match c {
                        c if c == quote => break,
                        '\\' => {
                            let Some((_, e)) = chars.next() else {
                                return Err("dangling backslash".into());
                            };
                            match e {
                                '\'' => out.push('\''),
                                '"' => out.push_str("\\\""),
                                'x' => {
                                    let hex: String =
                                        (0..2).filter_map(|_| chars.next().map(|x| x.1)).collect();
                                    let v = u32::from_str_radix(&hex, 16)
                                        .map_err(|_| format!("bad \\x escape `{hex}`"))?;
                                    out.push_str(&format!("\\u{v:04x}"));
                                }
                                'n' | 't' | 'r' | 'b' | 'f' | '\\' | '/' | 'u' => {
                                    out.push('\\');
                                    out.push(e);
                                }
                                other => out.push(other),
                            }
                        }
                        '"' => out.push_str("\\\""),
                        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            c if c.is_ascii_alphabetic() => {
                let mut word = String::from(c);
                while let Some(&(_, n)) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(match word.as_str() {
                    "True" => "true",
                    "False" => "false",
                    "None" => "null",
                    other => return Err(format!("unexpected bare word `{}`", excerpt(other))),
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_dicts_become_json() {
        let py = r#"{'asin': '0000143561', 'title': "Giada's Italian", 'price': 12.99, 'x': True, 'y': None, 'c': [['Movies & TV', 'Movies']], 'd': 'it\'s \x41'}"#;
        let v: serde_json::Value = serde_json::from_str(&py_literal_to_json(py).unwrap()).unwrap();
        assert_eq!(v["title"], "Giada's Italian");
        assert_eq!(v["x"], true);
        assert!(v["y"].is_null());
        assert_eq!(v["c"][0][1], "Movies");
        assert_eq!(v["d"], "it's A");
        assert!(py_literal_to_json("{'a': 'open").is_err());
    }
}
