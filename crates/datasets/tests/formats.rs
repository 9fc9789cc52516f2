//! Every raw format against small hand-made files in its real schema (`fixtures/datasets`).

use agp_datasets::{
    DataError, Dataset, DatasetSource, ItemTextStyle, PrepareOptions, prepare, prepare_with_stats,
};
use std::path::PathBuf;

fn fixture(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/datasets")
        .join(dir)
}

fn opts(k: u32, item_text: ItemTextStyle) -> PrepareOptions {
    PrepareOptions {
        k_core: k,
        item_text,
        min_rating: None,
    }
}

fn load(name: &str, dir: &str, o: &PrepareOptions) -> Result<Dataset, DataError> {
    prepare(&DatasetSource::parse(name, Some(fixture(dir))).unwrap(), o)
}

fn item(ds: &Dataset, raw: &str) -> usize {
    ds.item_ids
        .iter()
        .position(|i| i == raw)
        .unwrap_or_else(|| panic!("no item {raw}"))
}

fn user_seq<'a>(ds: &'a Dataset, raw: &str) -> Vec<&'a str> {
    let u = ds.user_ids.iter().position(|i| i == raw).unwrap();
    let mut s = ds.history_before_test(u as u32);
    s.push(ds.test[u]);
    s.iter()
        .map(|&i| ds.item_ids[i as usize].as_str())
        .collect()
}

#[test]
fn all_amazon_releases_give_the_same_split() {
    let o = opts(1, ItemTextStyle::Rich);
    let releases = [
        "amazon-2014-ratings",
        "amazon-2014",
        "amazon-2018",
        "amazon-2023",
    ];
    let all: Vec<Dataset> = releases
        .iter()
        .map(|d| load("amazon-movies-tv", d, &o).unwrap())
        .collect();
    for (ds, rel) in all.iter().zip(releases) {
        assert_eq!(ds.user_ids, ["A1", "A2", "A3", "A4"], "{rel}");
        assert_eq!(
            ds.item_ids,
            ["B001", "B002", "B003", "B004", "B005"],
            "{rel}"
        );
        assert_eq!(
            (&ds.train, &ds.valid, &ds.test),
            (&all[0].train, &all[0].valid, &all[0].test),
            "{rel}"
        );
        // Repeat (A1, B003) keeps the earliest; B004 then sits at t=1300 as the test item.
        assert_eq!(
            user_seq(ds, "A1"),
            ["B001", "B002", "B003", "B004"],
            "{rel}"
        );
        // Equal timestamps (B004, B001 at t=2000) keep file order.
        assert_eq!(user_seq(ds, "A3"), ["B004", "B001", "B002"], "{rel}");
        assert_eq!(
            ds.item_text[item(ds, "B001")],
            "What Women Want; Mel Gibson; Movies & TV > Paramount Home Entertainment > Comedy",
            "{rel}"
        );
        assert_eq!(
            ds.item_text[item(ds, "B003")],
            "Giada's Italian, Vol. 1; Giada De Laurentiis; Movies & TV > Cooking"
        );
        assert_eq!(ds.item_text[item(ds, "B004")], "Heat; Movies & TV > Drama");
        assert!(
            ds.item_text[item(ds, "B005")].starts_with("Untitled item B005"),
            "{rel}"
        );
    }
    // Different files, different checksums; same split.
    assert_ne!(all[0].checksum, all[1].checksum);
}

#[test]
fn stats_count_duplicates_untitled_and_unused_metadata() {
    let src = DatasetSource::parse("amazon-movies-tv", Some(fixture("amazon-2018"))).unwrap();
    let (ds, st) = prepare_with_stats(&src, &opts(1, ItemTextStyle::Title)).unwrap();
    assert_eq!(st.raw.interactions, 16);
    assert_eq!(st.duplicates_removed, 1);
    assert_eq!(st.processed.interactions, 15);
    assert_eq!(st.processed.interactions, ds.n_interactions());
    assert_eq!(st.raw.users, 4);
    assert_eq!(st.raw.items, 5);
    assert!((st.processed.titled_items_fraction - 0.8).abs() < 1e-12);
    assert!((st.processed.density - 15.0 / 20.0).abs() < 1e-12);
    assert_eq!(st.skipped.get("metadata_without_interactions"), Some(&1));
    let json = serde_json::to_value(&st).unwrap();
    for side in ["raw", "processed"] {
        for f in [
            "users",
            "items",
            "interactions",
            "titled_items_fraction",
            "mean_history_length",
            "density",
        ] {
            assert!(json[side][f].is_number(), "{side}.{f}");
        }
    }
}

#[test]
fn k_core_and_min_rating_filter() {
    // k = 4: A3 (3 interactions) goes first, which leaves B001 with 2 users, which drops A1,
    // A2 and A4 below 4 in the next pass: nothing survives, and that is an error, not an empty set.
    let e = load(
        "amazon-movies-tv",
        "amazon-2014-ratings",
        &opts(4, ItemTextStyle::Title),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::EmptyAfterFilter {
                k: 4,
                users: 4,
                items: 5,
                ..
            }
        ),
        "{e}"
    );
    let src =
        DatasetSource::parse("amazon-movies-tv", Some(fixture("amazon-2014-ratings"))).unwrap();
    let o = PrepareOptions {
        min_rating: Some(4.0),
        ..opts(1, ItemTextStyle::Title)
    };
    let (_, st) = prepare_with_stats(&src, &o).unwrap();
    assert_eq!(st.skipped.get("below_min_rating"), Some(&6));
    assert_eq!(st.raw.interactions, 10);
}

fn err(dir: &str) -> DataError {
    let name = if dir == "duplicate-movie" {
        "ml-latest-small"
    } else {
        "amazon-movies-tv"
    };
    let e = load(
        name,
        &format!("errors/{dir}"),
        &opts(1, ItemTextStyle::Title),
    )
    .unwrap_err();
    // Every message names the file.
    assert!(e.to_string().contains(&format!("errors/{dir}/")), "{e}");
    e
}

#[test]
fn broken_json_line_names_file_and_line() {
    let e = err("broken-json");
    assert!(matches!(e, DataError::Parse { line: 4, .. }), "{e}");
}

#[test]
fn missing_field_names_the_field() {
    let e = err("missing-field");
    assert!(
        matches!(&e, DataError::MissingField { line: 6, field, .. } if field == "asin"),
        "{e}"
    );
}

#[test]
fn non_utf8_names_line() {
    let e = err("non-utf8");
    assert!(
        matches!(
            e,
            DataError::NotUtf8 {
                line: 3,
                offset: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn empty_file_is_an_error() {
    assert!(matches!(err("empty"), DataError::Empty { .. }));
}

#[test]
fn truncated_gzip_is_detected() {
    let e = err("truncated-gzip");
    assert!(matches!(e, DataError::TruncatedGzip { .. }), "{e}");
    assert!(e.to_string().contains("fetch"), "{e}");
}

#[test]
fn non_numeric_rating_names_the_field() {
    let e = err("bad-number");
    assert!(matches!(e, DataError::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("rating"), "{e}");
}

#[test]
fn duplicate_metadata_row_is_an_error() {
    let e = err("duplicate-movie");
    assert!(
        matches!(&e, DataError::DuplicateRow { line: 4, key, .. } if key == "1"),
        "{e}"
    );
}

#[test]
fn missing_raw_dir_suggests_fetch() {
    let e = load(
        "amazon-movies-tv",
        "does-not-exist",
        &opts(5, ItemTextStyle::Title),
    )
    .unwrap_err();
    assert!(matches!(e, DataError::MissingRawFiles { .. }));
    assert!(
        e.to_string()
            .contains("cargo xtask data fetch amazon-movies-tv"),
        "{e}"
    );
}

#[test]
fn bad_options_and_names_are_rejected() {
    let e = load(
        "amazon-movies-tv",
        "amazon-2018",
        &opts(5000, ItemTextStyle::Title),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("k_core") && e.to_string().contains("0..=1000"),
        "{e}"
    );
    assert!(matches!(
        DatasetSource::parse("netflix", None),
        Err(DataError::UnknownDataset(_))
    ));
}

/// Each user's full chronological sequence by raw ids, independent of dense-id order.
fn sequences(ds: &Dataset) -> std::collections::BTreeMap<String, Vec<String>> {
    ds.user_ids
        .iter()
        .map(|u| {
            (
                u.clone(),
                user_seq(ds, u).into_iter().map(str::to_owned).collect(),
            )
        })
        .collect()
}

fn expected(users: [&str; 4], items: [&str; 5]) -> std::collections::BTreeMap<String, Vec<String>> {
    let seq = |ix: &[usize]| ix.iter().map(|&i| items[i].to_owned()).collect();
    [
        (users[0].to_owned(), seq(&[0, 1, 2, 3])),
        (users[1].to_owned(), seq(&[1, 2, 0, 4])),
        (users[2].to_owned(), seq(&[3, 0, 1])),
        (users[3].to_owned(), seq(&[4, 3, 2, 1])),
    ]
    .into()
}

#[test]
fn every_format_gives_the_same_chronological_sequences() {
    let o = opts(1, ItemTextStyle::Title);
    let letters = expected(
        ["A1", "A2", "A3", "A4"],
        ["B001", "B002", "B003", "B004", "B005"],
    );
    let numbers = expected(["1", "2", "3", "4"], ["1", "2", "3", "4", "5"]);
    let recbole = format!("recbole:{}", fixture("recbole/toy").display());
    let cases: [(&str, &str, &_); 10] = [
        ("amazon-movies-tv", "amazon-2014-ratings", &letters),
        ("amazon-movies-tv", "amazon-2014", &letters),
        ("amazon-movies-tv", "amazon-2018", &letters),
        ("amazon-movies-tv", "amazon-2023", &letters),
        ("yelp", "yelp", &letters),
        ("goodreads", "goodreads", &letters),
        ("goodreads", "goodreads-csv", &letters),
        (&recbole, "recbole/toy", &letters),
        ("ml-100k", "ml-100k", &numbers),
        ("ml-1m", "ml-1m", &numbers),
    ];
    for (name, dir, want) in cases {
        let ds = load(name, dir, &o).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(&sequences(&ds), want, "{dir}");
    }
}

#[test]
fn rich_item_text_per_source() {
    let o = opts(1, ItemTextStyle::Rich);
    let recbole = format!("recbole:{}", fixture("recbole/toy").display());
    let cases = [
        (
            "yelp",
            "yelp",
            "B001",
            "Luna; Phoenix; Mexican, Restaurants",
        ),
        ("yelp", "yelp", "B003", "Dr. Smith, DDS; Toronto"),
        (
            "goodreads",
            "goodreads",
            "B001",
            "The Hobbit; Houghton Mifflin; fantasy, classics, fiction",
        ),
        ("goodreads", "goodreads-csv", "B003", "Emma"),
        (
            &recbole,
            "recbole/toy",
            "B001",
            "What Women Want; Comedy Romance",
        ),
        (
            "ml-100k",
            "ml-100k",
            "1",
            "Toy Story (1995); Animation, Children's, Comedy",
        ),
        (
            "ml-100k",
            "ml-100k",
            "3",
            "Cité des enfants perdus, La (1995); Drama, Sci-Fi",
        ),
        ("ml-100k", "ml-100k", "5", "Untitled item 5"),
        (
            "ml-1m",
            "ml-1m",
            "3",
            "Cité des enfants perdus, La (1995); Adventure, Sci-Fi",
        ),
    ];
    for (name, dir, raw, want) in cases {
        let ds = load(name, dir, &o).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(ds.item_text[item(&ds, raw)], want, "{dir} {raw}");
    }
}

#[test]
fn recbole_round_trip_of_the_bundled_default() {
    let ds = agp_datasets::bundled_default(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(&ds.name);
    let written = agp_datasets::formats::recbole::write_recbole(&ds, &dir).unwrap();
    assert_eq!(written.len(), 5);
    let src = DatasetSource::parse(&format!("recbole:{}", dir.display()), None).unwrap();
    // k = 0: the split is already 5-core; filtering again must not change it.
    let back = prepare(&src, &opts(0, ItemTextStyle::Title)).unwrap();
    let test_file = std::fs::read_to_string(dir.join("ml-latest-small.test.inter")).unwrap();
    assert_eq!(test_file.lines().count(), 1 + ds.n_users());
    assert_eq!(back.user_ids, ds.user_ids);
    assert_eq!(back.item_ids, ds.item_ids);
    assert_eq!(back.item_text, ds.item_text);
    assert_eq!(
        (back.train, back.valid, back.test),
        (ds.train, ds.valid, ds.test)
    );
}

#[test]
fn yelp_bad_date_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("review.json"),
        "{\"user_id\":\"u\",\"business_id\":\"b\",\"stars\":5.0,\"date\":\"yesterday\"}\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("business.json"), "").unwrap();
    let src = DatasetSource::parse("yelp", Some(tmp.path().to_owned())).unwrap();
    let e = prepare(&src, &opts(1, ItemTextStyle::Title)).unwrap_err();
    assert!(matches!(e, DataError::Parse { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("date"), "{e}");
}

#[test]
fn a_threshold_that_drops_everything_says_so() {
    let o = PrepareOptions {
        min_rating: Some(6.0),
        ..opts(1, ItemTextStyle::Title)
    };
    let e = load("amazon-movies-tv", "amazon-2018", &o).unwrap_err();
    assert!(
        matches!(&e, DataError::AllSkipped { count: 16, reason, .. } if reason == "below_min_rating"),
        "{e}"
    );
}
