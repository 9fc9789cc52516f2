//! MovieLens (GroupLens): latest-small (`ratings.csv` + `movies.csv`), 100K (`u.data` + `u.item`)
//! and 1M (`ratings.dat` + `movies.dat`). Rich item text: "Title (year); genre, genre".

use super::{
    Sep, exact_columns, expect_files, find_file, parse_int_ts, parse_rating, require_nonempty,
};
use crate::error::excerpt;
use crate::io::{Encoding, LineReader, split_csv};
use crate::raw::{ItemMeta, MetaOutcome, RawData};
use crate::{DataError, PrepareOptions};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The columns of `u.item`: five fields, then one 0/1 flag per genre in the order of `u.genre`.
const U_ITEM_COLUMNS: [&str; 24] = [
    "movie id",
    "movie title",
    "release date",
    "video release date",
    "IMDb URL",
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

fn genres(pipe_separated: &str) -> String {
    pipe_separated
        .split('|')
        .filter(|g| !g.is_empty() && *g != "(no genres listed)")
        .collect::<Vec<_>>()
        .join(", ")
}

fn add_meta(
    raw: &mut RawData,
    item: &str,
    meta: ItemMeta,
    path: &Path,
    line: u64,
) -> Result<(), DataError> {
    match raw.set_meta(item, meta) {
        MetaOutcome::Set => Ok(()),
        MetaOutcome::Unused => {
            raw.skip("metadata_without_interactions");
            Ok(())
        }
        // A movie listed twice has two competing titles: ambiguous, so refuse rather than guess.
        MetaOutcome::Duplicate => Err(DataError::duplicate(path, line, item)),
    }
}

/// `ratings.csv` (`userId,movieId,rating,timestamp`) and `movies.csv` (`movieId,title,genres`).
pub fn files_latest(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(vec![
        find_file(dir, &["ratings.csv"], "ml-latest-small")?,
        find_file(dir, &["movies.csv"], "ml-latest-small")?,
    ])
}

pub fn load_latest(files: &[PathBuf], opts: &PrepareOptions) -> Result<RawData, DataError> {
    let [ratings, movies] = expect_files(files)?;
    let mut raw = RawData::default();

    let mut r = LineReader::open(ratings)?;
    expect_header(&mut r, "userId,movieId,rating,timestamp")?;
    while let Some((ln, line)) = r.next_line()? {
        if line.is_empty() {
            continue;
        }
        let mut fields: Vec<Cow<str>> = Vec::with_capacity(4);
        split_csv(line, b',', &mut fields).map_err(|m| DataError::parse(ratings, ln, m))?;
        const NAMES: [&str; 4] = ["userId", "movieId", "rating", "timestamp"];
        exact_columns(fields.len(), &NAMES, Sep::Comma, ratings, ln)?;
        let [user, item, rating, ts] = [&fields[0], &fields[1], &fields[2], &fields[3]];
        let rating = parse_rating(rating, ratings, ln, "rating")?;
        let ts = parse_int_ts(ts, ratings, ln, "timestamp")?;
        if opts.keeps(rating) {
            raw.push(user, item, ts);
        } else {
            raw.skip("below_min_rating");
        }
    }
    require_nonempty(&raw, ratings)?;

    let mut m = LineReader::open(movies)?;
    expect_header(&mut m, "movieId,title,genres")?;
    while let Some((ln, line)) = m.next_line()? {
        if line.is_empty() {
            continue;
        }
        let mut fields: Vec<Cow<str>> = Vec::with_capacity(4);
        split_csv(line, b',', &mut fields).map_err(|e| DataError::parse(movies, ln, e))?;
        exact_columns(
            fields.len(),
            &["movieId", "title", "genres"],
            Sep::Comma,
            movies,
            ln,
        )?;
        let meta = ItemMeta {
            title: fields[1].trim().to_owned(),
            lead: String::new(),
            category: genres(&fields[2]),
        };
        let item = fields[0].clone().into_owned();
        add_meta(&mut raw, &item, meta, movies, ln)?;
    }
    Ok(raw)
}

/// `u.data` (tab-separated `user item rating timestamp`, no header) and `u.item` (Latin-1,
/// `id|title|release date|video release date|IMDb URL|19 genre flags`).
pub fn files_100k(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let dir = subdir_if_present(dir, "ml-100k");
    Ok(vec![
        find_file(&dir, &["u.data"], "ml-100k")?,
        find_file(&dir, &["u.item"], "ml-100k")?,
    ])
}

pub fn load_100k(files: &[PathBuf], opts: &PrepareOptions) -> Result<RawData, DataError> {
    let [data, items] = expect_files(files)?;
    let mut raw = RawData::default();
    let mut r = LineReader::open(data)?;
    while let Some((ln, line)) = r.next_line()? {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        exact_columns(
            f.len(),
            &["user", "item", "rating", "timestamp"],
            Sep::Tab,
            data,
            ln,
        )?;
        let (user, item) = (f[0], f[1]);
        let rating = parse_rating(f[2], data, ln, "rating")?;
        let ts = parse_int_ts(f[3], data, ln, "timestamp")?;
        if opts.keeps(rating) {
            raw.push(user, item, ts);
        } else {
            raw.skip("below_min_rating");
        }
    }
    require_nonempty(&raw, data)?;

    let mut m = LineReader::open_with(items, Encoding::Latin1)?;
    while let Some((ln, line)) = m.next_line()? {
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('|').collect();
        exact_columns(cols.len(), &U_ITEM_COLUMNS, Sep::Pipe, items, ln)?;
        let category = U_ITEM_COLUMNS[5..]
            .iter()
            .zip(&cols[5..])
            .filter(|(g, flag)| **flag == "1" && **g != "unknown")
            .map(|(g, _)| *g)
            .collect::<Vec<_>>()
            .join(", ");
        let title = if cols[1] == "unknown" {
            String::new()
        } else {
            cols[1].trim().to_owned()
        };
        let item = cols[0].to_owned();
        add_meta(
            &mut raw,
            &item,
            ItemMeta {
                title,
                lead: String::new(),
                category,
            },
            items,
            ln,
        )?;
    }
    Ok(raw)
}

/// `ratings.dat` (`UserID::MovieID::Rating::Timestamp`) and `movies.dat`
/// (`MovieID::Title::Genres`, Latin-1).
pub fn files_1m(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let dir = subdir_if_present(dir, "ml-1m");
    Ok(vec![
        find_file(&dir, &["ratings.dat"], "ml-1m")?,
        find_file(&dir, &["movies.dat"], "ml-1m")?,
    ])
}

pub fn load_1m(files: &[PathBuf], opts: &PrepareOptions) -> Result<RawData, DataError> {
    let [ratings, movies] = expect_files(files)?;
    let mut raw = RawData::default();
    let mut r = LineReader::open(ratings)?;
    while let Some((ln, line)) = r.next_line()? {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split("::").collect();
        exact_columns(
            f.len(),
            &["UserID", "MovieID", "Rating", "Timestamp"],
            Sep::DoubleColon,
            ratings,
            ln,
        )?;
        let (user, item) = (f[0], f[1]);
        let rating = parse_rating(f[2], ratings, ln, "Rating")?;
        let ts = parse_int_ts(f[3], ratings, ln, "Timestamp")?;
        if opts.keeps(rating) {
            raw.push(user, item, ts);
        } else {
            raw.skip("below_min_rating");
        }
    }
    require_nonempty(&raw, ratings)?;

    let mut m = LineReader::open_with(movies, Encoding::Latin1)?;
    while let Some((ln, line)) = m.next_line()? {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split("::").collect();
        exact_columns(
            f.len(),
            &["MovieID", "Title", "Genres"],
            Sep::DoubleColon,
            movies,
            ln,
        )?;
        let (item, title, g) = (f[0], f[1], f[2]);
        let meta = ItemMeta {
            title: title.trim().to_owned(),
            lead: String::new(),
            category: genres(g),
        };
        let item = item.to_owned();
        add_meta(&mut raw, &item, meta, movies, ln)?;
    }
    Ok(raw)
}

fn subdir_if_present(dir: &Path, name: &str) -> PathBuf {
    let sub = dir.join(name);
    if sub.is_dir() { sub } else { dir.to_owned() }
}

fn expect_header(r: &mut LineReader, expected: &str) -> Result<(), DataError> {
    let path = r.path().to_owned();
    match r.next_line()? {
        None => Err(DataError::Empty { path }),
        Some((_, h)) if h.trim_start_matches('\u{feff}') == expected => Ok(()),
        Some((_, h)) => Err(DataError::parse(
            path,
            1,
            format!("expected header `{expected}`, found `{}`", excerpt(h)),
        )),
    }
}
