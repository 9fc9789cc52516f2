//! RecBole atomic files, both ways.
//!
//! Reading: `<dir>/<name>.inter` with a typed header (`user_id:token`, `item_id:token`, optional
//! `timestamp:float`, anything else ignored) and optional `<name>.item` (`item_id:token` plus
//! any of `title`/`movie_title`/`name`, `brand`/`author`/`city`, `categories`/`genre`/...).
//! Without a timestamp column, file order is the chronology.
//!
//! Writing ([`write_recbole`]): our split as `<name>.inter` (all interactions) and RecBole's
//! pre-split benchmark files `<name>.train.inter` / `.valid.inter` / `.test.inter`, plus
//! `<name>.item`, so RecBole models can be trained on exactly our leave-one-out split
//! (`benchmark_filename: [train, valid, test]`).

use super::{parse_float_ts, parse_rating, require_nonempty};
use crate::io::LineReader;
use crate::raw::{ItemMeta, MetaOutcome, RawData};
use crate::{DataError, Dataset, PrepareOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn files(dir: &Path, name: &str) -> Result<Vec<PathBuf>, DataError> {
    let inter = dir.join(format!("{name}.inter"));
    if !inter.is_file() {
        return Err(DataError::MissingRawFiles {
            dir: dir.to_owned(),
            expected: format!("{name}.inter"),
            hint: "a RecBole dataset directory holds <name>.inter named after the directory".into(),
        });
    }
    let mut out = vec![inter];
    let item = dir.join(format!("{name}.item"));
    if item.is_file() {
        out.push(item);
    }
    Ok(out)
}

/// Field names (the part before `:`) of a typed header line.
fn header(line: &str) -> Vec<String> {
    line.split('\t')
        .map(|f| f.split(':').next().unwrap_or("").trim().to_owned())
        .collect()
}

fn col(cols: &[String], names: &[&str]) -> Option<usize> {
    names.iter().find_map(|n| cols.iter().position(|c| c == n))
}

/// A row may leave trailing optional columns out (RecBole reads them as missing, as pandas
/// does), but a row with more fields than the header has a tab inside a value or is misaligned,
/// and every column after the stray tab would be read as the wrong field.
fn at_most_header_columns(
    found: usize,
    header: usize,
    path: &Path,
    line: u64,
) -> Result<(), DataError> {
    if found > header {
        return Err(DataError::columns(
            path,
            line,
            header,
            found,
            "tab-separated, as many as the header names",
        ));
    }
    Ok(())
}

pub fn load(files: &[PathBuf], opts: &PrepareOptions) -> Result<RawData, DataError> {
    let Some(inter) = files.first() else {
        return Err(DataError::MissingRawFiles {
            dir: PathBuf::new(),
            expected: "<name>.inter".into(),
            hint: "list them with `raw_files`".into(),
        });
    };
    let mut raw = RawData::default();
    let mut r = LineReader::open(inter)?;
    let Some((_, h)) = r.next_line()? else {
        return Err(DataError::Empty {
            path: inter.clone(),
        });
    };
    let cols = header(h);
    let ui = col(&cols, &["user_id"]).ok_or_else(|| DataError::missing(inter, 1, "user_id"))?;
    let ii = col(&cols, &["item_id"]).ok_or_else(|| DataError::missing(inter, 1, "item_id"))?;
    let ti = col(&cols, &["timestamp"]);
    let ri = col(&cols, &["rating"]);
    while let Some((ln, line)) = r.next_line()? {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        at_most_header_columns(f.len(), cols.len(), inter, ln)?;
        let get = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| DataError::missing(inter, ln, &cols[i]))
        };
        let (user, item) = (get(ui)?, get(ii)?);
        // RecBole writes timestamps as floats; sub-second parts only matter for ties.
        let ts = match ti {
            Some(t) => parse_float_ts(get(t)?, inter, ln, "timestamp")?,
            None => 0,
        };
        let keep = match ri {
            Some(i) => opts.keeps(parse_rating(get(i)?, inter, ln, "rating")?),
            None => true,
        };
        if keep {
            raw.push(user, item, ts);
        } else {
            raw.skip("below_min_rating");
        }
    }
    require_nonempty(&raw, inter)?;

    if let Some(item_path) = files.get(1) {
        let mut r = LineReader::open(item_path)?;
        let Some((_, h)) = r.next_line()? else {
            return Err(DataError::Empty {
                path: item_path.clone(),
            });
        };
        let cols = header(h);
        let ii =
            col(&cols, &["item_id"]).ok_or_else(|| DataError::missing(item_path, 1, "item_id"))?;
        let title = col(&cols, &["title", "movie_title", "name", "book_title"]);
        let lead = col(&cols, &["brand", "author", "city", "publisher"]);
        let cat = col(&cols, &["categories", "category", "genre", "genres"]);
        while let Some((ln, line)) = r.next_line()? {
            if line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            at_most_header_columns(f.len(), cols.len(), item_path, ln)?;
            let id = f
                .get(ii)
                .ok_or_else(|| DataError::missing(item_path, ln, "item_id"))?;
            let pick = |c: Option<usize>| {
                c.and_then(|i| f.get(i))
                    .map_or(String::new(), |s| s.trim().to_owned())
            };
            let meta = ItemMeta {
                title: pick(title),
                lead: pick(lead),
                category: pick(cat),
            };
            match raw.set_meta(id, meta) {
                MetaOutcome::Set => {}
                MetaOutcome::Unused => raw.skip("metadata_without_interactions"),
                MetaOutcome::Duplicate => return Err(DataError::duplicate(item_path, ln, id)),
            }
        }
    }
    Ok(raw)
}

/// Tabs and newlines would break the atomic-file layout.
fn field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// Writes `ds` as RecBole atomic files named `<ds.name>.*` into `dir`; returns the paths.
/// Timestamps are each interaction's position in the user's sequence, which preserves the order
/// (all RecBole needs) without storing raw times in [`Dataset`].
pub fn write_recbole(ds: &Dataset, dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let name = &ds.name;
    let open = |suffix: &str| -> Result<(PathBuf, std::io::BufWriter<std::fs::File>), DataError> {
        let p = dir.join(format!("{name}.{suffix}"));
        let f = std::fs::File::create(&p).map_err(|e| DataError::io(&p, e))?;
        Ok((p, std::io::BufWriter::new(f)))
    };
    const HEADER: &str = "user_id:token\titem_id:token\ttimestamp:float\n";
    let mut outs = Vec::new();
    for suffix in ["inter", "train.inter", "valid.inter", "test.inter"] {
        let (p, mut w) = open(suffix)?;
        let mut write = || -> std::io::Result<()> {
            w.write_all(HEADER.as_bytes())?;
            for u in 0..ds.n_users() {
                let mut seq = ds.train[u].clone();
                seq.push(ds.valid[u]);
                seq.push(ds.test[u]);
                let n = seq.len();
                let range = match suffix {
                    "inter" => 0..n,
                    "train.inter" => 0..n - 2,
                    "valid.inter" => n - 2..n - 1,
                    _ => n - 1..n,
                };
                for t in range {
                    let item = &ds.item_ids[seq[t] as usize];
                    writeln!(w, "{}\t{}\t{t}", field(&ds.user_ids[u]), field(item))?;
                }
            }
            w.flush()
        };
        write().map_err(|e| DataError::io(&p, e))?;
        outs.push(p);
    }
    let (p, mut w) = open("item")?;
    let mut write = || -> std::io::Result<()> {
        w.write_all(b"item_id:token\ttitle:token_seq\n")?;
        for (id, text) in ds.item_ids.iter().zip(&ds.item_text) {
            writeln!(w, "{}\t{}", field(id), field(text))?;
        }
        w.flush()
    };
    write().map_err(|e| DataError::io(&p, e))?;
    outs.push(p);
    Ok(outs)
}

/// Writes a prepared split for other tools into `out`: `dataset.json`, `stats.json`, and RecBole
/// atomic files under `recbole/<name>/` (pre-split `.train/.valid/.test.inter` for RecBole's
/// `benchmark_filename`).
pub fn write_split(
    ds: &Dataset,
    stats: &crate::DatasetStats,
    out: &Path,
) -> Result<Vec<PathBuf>, DataError> {
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let mut written = Vec::new();
    for (name, bytes) in [
        ("dataset.json", serde_json::to_vec(ds)),
        ("stats.json", serde_json::to_vec_pretty(stats)),
    ] {
        let p = out.join(name);
        let bytes = bytes.map_err(|e| DataError::io(&p, std::io::Error::other(e)))?;
        std::fs::write(&p, bytes).map_err(|e| DataError::io(&p, e))?;
        written.push(p);
    }
    written.extend(write_recbole(ds, &out.join("recbole").join(&ds.name))?);
    Ok(written)
}
