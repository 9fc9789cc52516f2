//! MovieLens (GroupLens): latest-small (`ratings.csv` + `movies.csv`), 100K (`u.data` + `u.item`)
//! and 1M (`ratings.dat` + `movies.dat`). Rich item text: "Title (year); genre, genre".

use super::{expect_files, find_file, parse_num, require_nonempty};
use crate::io::{Encoding, LineReader, split_csv};
use crate::raw::{ItemMeta, MetaOutcome, RawData};
use crate::{DataError, PrepareOptions};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Genre columns of `u.item`, in the order of `u.genre`.
const ML100K_GENRES: [&str; 19] = [
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
        MetaOutcome::Duplicate => Err(DataError::DuplicateRow {
            path: path.to_owned(),
            line,
            key: item.to_owned(),
        }),
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
        let [user, item, rating, ts] = take4(
            &fields,
            ratings,
            ln,
            ["userId", "movieId", "rating", "timestamp"],
        )?;
        let rating: f32 = parse_num(rating, ratings, ln, "rating")?;
        let ts: i64 = parse_num(ts, ratings, ln, "timestamp")?;
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
        if fields.len() < 3 {
            let names = ["movieId", "title", "genres"];
            return Err(DataError::missing(movies, ln, names[fields.len()]));
        }
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
        let mut it = line.split('\t');
        let mut next = |name: &str| it.next().ok_or_else(|| DataError::missing(data, ln, name));
        let (user, item, rating, ts) = (
            next("user")?,
            next("item")?,
            next("rating")?,
            next("timestamp")?,
        );
        let rating: f32 = parse_num(rating, data, ln, "rating")?;
        let ts: i64 = parse_num(ts, data, ln, "timestamp")?;
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
        if cols.len() < 5 + ML100K_GENRES.len() {
            return Err(DataError::parse(
                items,
                ln,
                format!(
                    "expected {} `|`-separated columns, found {}",
                    5 + ML100K_GENRES.len(),
                    cols.len()
                ),
            ));
        }
        let category = ML100K_GENRES
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
        let mut it = line.split("::");
        let mut next = |name: &str| {
            it.next()
                .ok_or_else(|| DataError::missing(ratings, ln, name))
        };
        let (user, item, rating, ts) = (
            next("UserID")?,
            next("MovieID")?,
            next("Rating")?,
            next("Timestamp")?,
        );
        let rating: f32 = parse_num(rating, ratings, ln, "Rating")?;
        let ts: i64 = parse_num(ts, ratings, ln, "Timestamp")?;
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
        let mut it = line.splitn(3, "::");
        let mut next = |name: &str| {
            it.next()
                .ok_or_else(|| DataError::missing(movies, ln, name))
        };
        let (item, title, g) = (next("MovieID")?, next("Title")?, next("Genres")?);
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
            format!("expected header `{expected}`, found `{h}`"),
        )),
    }
}

fn take4<'a>(
    fields: &'a [Cow<'a, str>],
    path: &Path,
    line: u64,
    names: [&str; 4],
) -> Result<[&'a str; 4], DataError> {
    if fields.len() < 4 {
        return Err(DataError::missing(path, line, names[fields.len()]));
    }
    Ok([&fields[0], &fields[1], &fields[2], &fields[3]])
}
