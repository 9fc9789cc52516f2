//! Goodreads (UCSD Book Graph), as downloaded:
//!
//! - interactions, JSON lines: `goodreads_interactions_dedup.json` or one genre subset
//!   `goodreads_interactions_<genre>.json` (`user_id, book_id, rating, date_added`), or the CSV
//!   `goodreads_interactions.csv` (`user_id,book_id,is_read,rating,is_reviewed` with integer ids,
//!   mapped back through `user_id_map.csv` and `book_id_map.csv`);
//! - books: `goodreads_books.json` or `goodreads_books_<genre>.json` (`book_id, title, publisher,
//!   popular_shelves, ...`).
//!
//! Every shelved book is an interaction (implicit feedback; `rating` 0 means "not rated").
//! The CSV has no dates, so there the order in the file stands in for time (documented, and the
//! reason to prefer the JSON). Rich item text: "title; publisher; top shelves".

use super::{
    Sep, exact_columns, files_with_prefix, find_file, json_rating, non_negative_ts, parse_num,
    parse_rating, parse_ruby_date, require_nonempty,
};
use crate::error::excerpt;
use crate::formats::amazon::json_line;
use crate::io::{LineReader, split_csv};
use crate::raw::{ItemMeta, MetaOutcome, RawData};
use crate::{DataError, PrepareOptions};
use serde::Deserialize;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

const DATASET: &str = "goodreads";

/// Shelves that say nothing about the book itself.
const GENERIC_SHELVES: [&str; 6] = [
    "to-read",
    "currently-reading",
    "favorites",
    "owned",
    "books-i-own",
    "default",
];

/// Interactions, books, and for the CSV layout the two id maps.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let books = find_file(dir, &["goodreads_books.json"], DATASET).or_else(|e| {
        single(files_with_prefix(dir, "goodreads_books_", &[".json"]), dir).ok_or(e)
    })?;
    if let Ok(inter) = find_file(dir, &["goodreads_interactions_dedup.json"], DATASET) {
        return Ok(vec![inter, books]);
    }
    let subsets = files_with_prefix(dir, "goodreads_interactions_", &[".json"]);
    if subsets.len() > 1 {
        return Err(DataError::MissingRawFiles {
            dir: dir.to_owned(),
            expected: "one goodreads_interactions_<genre>.json".into(),
            hint: format!("found {}; keep one genre per directory", subsets.len()),
        });
    }
    if let Some(inter) = subsets.into_iter().next() {
        return Ok(vec![inter, books]);
    }
    Ok(vec![
        find_file(dir, &["goodreads_interactions.csv"], DATASET)?,
        books,
        find_file(dir, &["user_id_map.csv"], DATASET)?,
        find_file(dir, &["book_id_map.csv"], DATASET)?,
    ])
}

fn single(mut v: Vec<PathBuf>, _dir: &Path) -> Option<PathBuf> {
    (v.len() == 1).then(|| v.remove(0))
}

#[derive(Deserialize)]
struct Interaction<'a> {
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    book_id: Option<Cow<'a, str>>,
    rating: Option<serde_json::Value>,
    #[serde(borrow)]
    date_added: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Shelf {
    name: String,
}

#[derive(Deserialize)]
struct Book {
    book_id: Option<String>,
    title: Option<String>,
    publisher: Option<String>,
    #[serde(default)]
    popular_shelves: Vec<Shelf>,
}

pub fn load(files: &[PathBuf], opts: &PrepareOptions) -> Result<RawData, DataError> {
    let mut raw = RawData::default();
    match files {
        [inter, books] => {
            load_json(inter, opts, &mut raw)?;
            load_books(books, &mut raw)?;
        }
        [inter, books, user_map, book_map] => {
            load_csv(inter, user_map, book_map, opts, &mut raw)?;
            load_books(books, &mut raw)?;
        }
        _ => {
            return Err(DataError::MissingRawFiles {
                dir: PathBuf::new(),
                expected: "interactions + books (+ two id maps for the CSV)".into(),
                hint: "list them with `raw_files`".into(),
            });
        }
    }
    Ok(raw)
}

fn load_json(path: &Path, opts: &PrepareOptions, raw: &mut RawData) -> Result<(), DataError> {
    let mut r = LineReader::open(path)?;
    while let Some((ln, line)) = r.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let x: Interaction = json_line(line, path, ln)?;
        let user = x
            .user_id
            .ok_or_else(|| DataError::missing(path, ln, "user_id"))?;
        let book = x
            .book_id
            .ok_or_else(|| DataError::missing(path, ln, "book_id"))?;
        let rating = json_rating(x.rating, path, ln, "rating")?;
        let date = x
            .date_added
            .ok_or_else(|| DataError::missing(path, ln, "date_added"))?;
        let ts = parse_ruby_date(&date).ok_or_else(|| {
            DataError::parse(
                path,
                ln,
                format!(
                    "field `date_added`: `{}` is not a Goodreads date",
                    excerpt(&date)
                ),
            )
        })?;
        let ts = non_negative_ts(ts, &format!("`{}`", excerpt(&date)), path, ln, "date_added")?;
        if opts.keeps(rating) {
            raw.push(&user, &book, ts);
        } else {
            raw.skip("below_min_rating");
        }
    }
    require_nonempty(raw, path)
}

/// `<name>_csv,<name>` rows: the CSV's integer id → the id used in the JSON files.
fn load_map(path: &Path, header: &str) -> Result<Vec<String>, DataError> {
    let mut r = LineReader::open(path)?;
    let mut out = Vec::new();
    let mut seen_header = false;
    let names: Vec<&str> = header.split(',').collect();
    while let Some((ln, line)) = r.next_line()? {
        if !seen_header {
            if line != header {
                return Err(DataError::parse(
                    path,
                    ln,
                    format!("expected header `{header}`"),
                ));
            }
            seen_header = true;
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        exact_columns(f.len(), &names, Sep::Comma, path, ln)?;
        let (csv_id, id) = (f[0], f[1]);
        let csv_id: usize = parse_num(csv_id, path, ln, names[0])?;
        if csv_id != out.len() {
            return Err(DataError::parse(
                path,
                ln,
                format!("ids must run 0,1,2,...; found {csv_id}"),
            ));
        }
        out.push(id.to_owned());
    }
    if out.is_empty() {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

fn load_csv(
    path: &Path,
    user_map: &Path,
    book_map: &Path,
    opts: &PrepareOptions,
    raw: &mut RawData,
) -> Result<(), DataError> {
    let users = load_map(user_map, "user_id_csv,user_id")?;
    let books = load_map(book_map, "book_id_csv,book_id")?;
    let mut r = LineReader::open(path)?;
    const HEADER: &str = "user_id,book_id,is_read,rating,is_reviewed";
    const NAMES: [&str; 5] = ["user_id", "book_id", "is_read", "rating", "is_reviewed"];
    match r.next_line()? {
        None => {
            return Err(DataError::Empty {
                path: path.to_owned(),
            });
        }
        Some((_, h)) if h == HEADER => {}
        Some((ln, h)) => {
            return Err(DataError::parse(
                path,
                ln,
                format!("expected header `{HEADER}`, found `{}`", excerpt(h)),
            ));
        }
    }
    let lookup = |map: &[String], s: &str, ln: u64, field: &str, map_path: &Path| {
        let i: usize = parse_num(s, path, ln, field)?;
        map.get(i).cloned().ok_or_else(|| {
            DataError::parse(
                path,
                ln,
                format!("`{field}` {i} is not in {}", map_path.display()),
            )
        })
    };
    while let Some((ln, line)) = r.next_line()? {
        if line.is_empty() {
            continue;
        }
        let mut f = Vec::with_capacity(5);
        split_csv(line, b',', &mut f).map_err(|m| DataError::parse(path, ln, m))?;
        exact_columns(f.len(), &NAMES, Sep::Comma, path, ln)?;
        let user = lookup(&users, &f[0], ln, "user_id", user_map)?;
        let book = lookup(&books, &f[1], ln, "book_id", book_map)?;
        let rating = parse_rating(&f[3], path, ln, "rating")?;
        if opts.keeps(rating) {
            // No dates in the CSV: equal timestamps make file order the chronology.
            raw.push(&user, &book, 0);
        } else {
            raw.skip("below_min_rating");
        }
    }
    require_nonempty(raw, path)
}

fn load_books(path: &Path, raw: &mut RawData) -> Result<(), DataError> {
    let mut r = LineReader::open(path)?;
    while let Some((ln, line)) = r.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let b: Book = json_line(line, path, ln)?;
        let id = b
            .book_id
            .ok_or_else(|| DataError::missing(path, ln, "book_id"))?;
        let shelves: Vec<&str> = b
            .popular_shelves
            .iter()
            .map(|s| s.name.as_str())
            .filter(|s| !GENERIC_SHELVES.contains(s))
            .take(3)
            .collect();
        let meta = ItemMeta {
            title: b.title.unwrap_or_default().trim().to_owned(),
            lead: b.publisher.unwrap_or_default().trim().to_owned(),
            category: shelves.join(", "),
        };
        match raw.set_meta(&id, meta) {
            MetaOutcome::Set => {}
            MetaOutcome::Unused => raw.skip("metadata_without_interactions"),
            MetaOutcome::Duplicate => return Err(DataError::duplicate(path, ln, &id)),
        }
    }
    Ok(())
}
