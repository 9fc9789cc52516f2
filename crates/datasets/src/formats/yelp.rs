//! Yelp Open Dataset: `yelp_academic_dataset_review.json` (`user_id, business_id, stars, date`)
//! and `yelp_academic_dataset_business.json` (`business_id, name, city, categories`); the short
//! names `review.json` / `business.json` of older releases work too. Rich item text:
//! "name; city; categories".

use super::{find_file, json_rating, parse_ymd_hms, require_nonempty};
use crate::error::excerpt;
use crate::formats::amazon::json_line;
use crate::raw::{ItemMeta, MetaOutcome, RawData};
use crate::{DataError, PrepareOptions, io::LineReader};
use serde::Deserialize;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

pub fn files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(vec![
        find_file(
            dir,
            &["yelp_academic_dataset_review.json", "review.json"],
            "yelp",
        )?,
        find_file(
            dir,
            &["yelp_academic_dataset_business.json", "business.json"],
            "yelp",
        )?,
    ])
}

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    business_id: Option<Cow<'a, str>>,
    stars: Option<serde_json::Value>,
    #[serde(borrow)]
    date: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Business {
    business_id: Option<String>,
    name: Option<String>,
    city: Option<String>,
    categories: Option<String>,
}

pub fn load(files: &[PathBuf], opts: &PrepareOptions) -> Result<RawData, DataError> {
    let [reviews, business] = super::expect_files(files)?;
    let mut raw = RawData::default();
    let mut r = LineReader::open(reviews)?;
    while let Some((ln, line)) = r.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let rv: Review = json_line(line, reviews, ln)?;
        let user = rv
            .user_id
            .ok_or_else(|| DataError::missing(reviews, ln, "user_id"))?;
        let item = rv
            .business_id
            .ok_or_else(|| DataError::missing(reviews, ln, "business_id"))?;
        let stars = json_rating(rv.stars, reviews, ln, "stars")?;
        let date = rv
            .date
            .ok_or_else(|| DataError::missing(reviews, ln, "date"))?;
        let ts = parse_ymd_hms(&date).ok_or_else(|| {
            DataError::parse(
                reviews,
                ln,
                format!(
                    "field `date`: `{}` is not YYYY-MM-DD HH:MM:SS",
                    excerpt(&date)
                ),
            )
        })?;
        if opts.keeps(stars) {
            raw.push(&user, &item, ts);
        } else {
            raw.skip("below_min_rating");
        }
    }
    require_nonempty(&raw, reviews)?;

    let mut b = LineReader::open(business)?;
    while let Some((ln, line)) = b.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let m: Business = json_line(line, business, ln)?;
        let id = m
            .business_id
            .ok_or_else(|| DataError::missing(business, ln, "business_id"))?;
        let meta = ItemMeta {
            title: m.name.unwrap_or_default().trim().to_owned(),
            lead: m.city.unwrap_or_default().trim().to_owned(),
            category: m.categories.unwrap_or_default().trim().to_owned(),
        };
        match raw.set_meta(&id, meta) {
            MetaOutcome::Set => {}
            MetaOutcome::Unused => raw.skip("metadata_without_interactions"),
            MetaOutcome::Duplicate => return Err(DataError::duplicate(business, ln, &id)),
        }
    }
    Ok(raw)
}
