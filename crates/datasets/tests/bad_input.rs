//! Hostile and broken raw files, written into a temporary directory per test: every reader must
//! refuse them with an error naming the file, the line and the field (or the column counts),
//! and no error may quote an unbounded amount of input.

use agp_datasets::{DataError, DatasetSource, ItemTextStyle, PrepareOptions, QUOTE_LIMIT, prepare};

fn opts() -> PrepareOptions {
    PrepareOptions {
        k_core: 1,
        item_text: ItemTextStyle::Title,
        min_rating: None,
    }
}

/// Writes `files` (name, contents) into a fresh directory and prepares `spec` from it; for
/// `recbole` the directory is named `toy` as RecBole expects.
fn load_err(spec: &str, files: &[(&str, &str)]) -> (DataError, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = if spec == "recbole" {
        tmp.path().join("toy")
    } else {
        tmp.path().to_owned()
    };
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let src = if spec == "recbole" {
        DatasetSource::parse(&format!("recbole:{}", dir.display()), None).unwrap()
    } else {
        DatasetSource::parse(spec, Some(dir)).unwrap()
    };
    let e = prepare(&src, &opts()).expect_err("bad input must be rejected");
    (e, tmp)
}

/// The message names the file, the 1-based line and every one of `parts` (field names,
/// column counts).
fn assert_names(e: &DataError, file: &str, line: u64, parts: &[&str]) {
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("/{file}: line {line}: ")),
        "no file/line `{file}: line {line}` in: {msg}"
    );
    for p in parts {
        assert!(msg.contains(p), "no `{p}` in: {msg}");
    }
}

fn assert_columns(e: &DataError, file: &str, line: u64, expected: usize, found: usize) {
    assert!(
        matches!(e, DataError::ColumnCount { line: l, expected: x, found: f, .. }
            if *l == line && *x == expected && *f == found),
        "{e}"
    );
    assert_names(
        e,
        file,
        line,
        &[
            &format!("expected {expected} columns"),
            &format!("found {found}"),
        ],
    );
}

const ML_MOVIES: &str = "movieId,title,genres\n1,Toy Story (1995),Comedy\n2,Heat (1995),Drama\n";
const ML_RATINGS_HEAD: &str = "userId,movieId,rating,timestamp\n1,1,4.0,100\n";

fn ml_latest(ratings_rows: &str) -> (DataError, tempfile::TempDir) {
    let ratings = format!("{ML_RATINGS_HEAD}{ratings_rows}");
    load_err(
        "ml-latest-small",
        &[("ratings.csv", &ratings), ("movies.csv", ML_MOVIES)],
    )
}

// ---- 1. extra columns ------------------------------------------------------------------------

#[test]
fn movielens_latest_extra_columns() {
    let (e, _t) = ml_latest("1,2,3.5,200,oops\n");
    assert_columns(&e, "ratings.csv", 3, 4, 5);
    assert_names(&e, "ratings.csv", 3, &["userId,movieId,rating,timestamp"]);

    // An unquoted comma in a title shifts the genres: refused, with the quoting hint.
    let movies =
        "movieId,title,genres\n1,Toy Story (1995),Comedy\n2,American President, The (1995),Drama\n";
    let (e, _t) = load_err(
        "ml-latest-small",
        &[
            ("ratings.csv", &format!("{ML_RATINGS_HEAD}1,2,3.5,200\n")),
            ("movies.csv", movies),
        ],
    );
    assert_columns(&e, "movies.csv", 3, 3, 4);
    assert!(e.to_string().contains("double quotes"), "{e}");
}

#[test]
fn amazon_ratings_csv_extra_columns_plain_and_quoted() {
    for (row, found) in [("A2,B1,5.0,1300,x", 5), ("\"A2\",B1,5.0,1300,,", 6)] {
        let text = format!("A1,B1,4.0,1200\n{row}\n");
        let (e, _t) = load_err("amazon-movies-tv", &[("ratings_Movies_and_TV.csv", &text)]);
        assert_columns(&e, "ratings_Movies_and_TV.csv", 2, 4, found);
    }
}

#[test]
fn movielens_100k_and_1m_extra_columns() {
    let item = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n";
    let (e, _t) = load_err(
        "ml-100k",
        &[
            ("u.data", "1\t1\t4\t100\n1\t1\t4\t100\t9\n"),
            ("u.item", item),
        ],
    );
    assert_columns(&e, "u.data", 2, 4, 5);

    let long_item = item.replace("\n", "|0\n");
    let (e, _t) = load_err(
        "ml-100k",
        &[("u.data", "1\t1\t4\t100\n"), ("u.item", &long_item)],
    );
    assert_columns(&e, "u.item", 1, 24, 25);

    let (e, _t) = load_err(
        "ml-1m",
        &[
            ("ratings.dat", "1::1::4::100::7\n"),
            ("movies.dat", "1::Toy Story (1995)::Comedy\n"),
        ],
    );
    assert_columns(&e, "ratings.dat", 1, 4, 5);
    assert_names(
        &e,
        "ratings.dat",
        1,
        &["UserID::MovieID::Rating::Timestamp"],
    );

    let (e, _t) = load_err(
        "ml-1m",
        &[
            ("ratings.dat", "1::1::4::100\n"),
            ("movies.dat", "1::Toy Story (1995)::Comedy::Extra\n"),
        ],
    );
    assert_columns(&e, "movies.dat", 1, 3, 4);
}

const GR_BOOKS: &str = "{\"book_id\": \"B1\", \"title\": \"Emma\"}\n";

/// The Goodreads CSV layout: interactions, books, and the two id maps.
fn goodreads_csv<'a>(inter: &'a str, users: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("goodreads_interactions.csv", inter),
        ("goodreads_books.json", GR_BOOKS),
        ("user_id_map.csv", users),
        ("book_id_map.csv", "book_id_csv,book_id\n0,B1\n"),
    ]
}

const GR_HEADER: &str = "user_id,book_id,is_read,rating,is_reviewed\n";
const GR_USERS: &str = "user_id_csv,user_id\n0,U1\n";

#[test]
fn goodreads_csv_and_id_maps_extra_columns() {
    let inter = format!("{GR_HEADER}0,0,1,5,0,9\n");
    let (e, _t) = load_err("goodreads", &goodreads_csv(&inter, GR_USERS));
    assert_columns(&e, "goodreads_interactions.csv", 2, 5, 6);

    let ok = format!("{GR_HEADER}0,0,1,5,0\n");
    let (e, _t) = load_err(
        "goodreads",
        &goodreads_csv(&ok, "user_id_csv,user_id\n0,U1,U2\n"),
    );
    assert_columns(&e, "user_id_map.csv", 2, 2, 3);
}

#[test]
fn recbole_rows_longer_than_the_header() {
    let head = "user_id:token\titem_id:token\ttimestamp:float\n";
    let inter = format!("{head}u1\ti1\t100.0\nu1\ti2\t200.0\tstray\n");
    let (e, _t) = load_err("recbole", &[("toy.inter", &inter)]);
    assert_columns(&e, "toy.inter", 3, 3, 4);

    // Short rows stay allowed in .item (missing optional columns), long ones are not.
    let item = "item_id:token\ttitle:token_seq\ni1\nx\ti2\tExtra\n";
    let inter = format!("{head}u1\ti1\t100.0\n");
    let (e, _t) = load_err("recbole", &[("toy.inter", &inter), ("toy.item", item)]);
    assert_columns(&e, "toy.item", 3, 2, 3);
}

// ---- 2. non-finite and unparsable ratings ----------------------------------------------------

#[test]
fn non_finite_ratings_name_file_line_and_field() {
    for bad in ["NaN", "nan", "inf", "-infinity"] {
        let (e, _t) = ml_latest(&format!("1,2,{bad},200\n"));
        assert!(matches!(e, DataError::Parse { line: 3, .. }), "{e}");
        assert_names(
            &e,
            "ratings.csv",
            3,
            &["`rating`", bad, "not a finite number"],
        );
    }
    let (e, _t) = ml_latest("1,2,1e39,200\n");
    assert_names(&e, "ratings.csv", 3, &["`rating`", "1e39", "too large"]);
    let (e, _t) = ml_latest("1,2,four,200\n");
    assert_names(&e, "ratings.csv", 3, &["`rating`", "four", "not a number"]);

    let (e, _t) = load_err(
        "amazon-movies-tv",
        &[(
            "ratings_Movies_and_TV.csv",
            "A1,B1,4.0,1200\nA2,B1,NaN,1300\n",
        )],
    );
    assert_names(&e, "ratings_Movies_and_TV.csv", 2, &["`rating`", "NaN"]);

    let item = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n";
    let (e, _t) = load_err(
        "ml-100k",
        &[("u.data", "1\t1\tNaN\t100\n"), ("u.item", item)],
    );
    assert_names(&e, "u.data", 1, &["`rating`", "NaN"]);

    let (e, _t) = load_err(
        "ml-1m",
        &[
            ("ratings.dat", "1::1::inf::100\n"),
            ("movies.dat", "1::T::G\n"),
        ],
    );
    assert_names(&e, "ratings.dat", 1, &["`Rating`", "inf"]);

    let inter = "user_id:token\titem_id:token\trating:float\nu1\ti1\tNaN\n";
    let (e, _t) = load_err("recbole", &[("toy.inter", inter)]);
    assert_names(&e, "toy.inter", 2, &["`rating`", "NaN"]);

    let inter = format!("{GR_HEADER}0,0,1,nan,0\n");
    let (e, _t) = load_err("goodreads", &goodreads_csv(&inter, GR_USERS));
    assert_names(&e, "goodreads_interactions.csv", 2, &["`rating`", "nan"]);
}

#[test]
fn json_ratings_out_of_f32_range_or_mistyped_name_the_field() {
    // serde would cast 1e300 to an f32 infinity; it must be an error instead.
    let line =
        "{\"reviewerID\": \"A1\", \"asin\": \"B1\", \"overall\": 1e300, \"unixReviewTime\": 5}\n";
    let (e, _t) = load_err("amazon-movies-tv", &[("reviews_Movies_and_TV.json", line)]);
    assert_names(
        &e,
        "reviews_Movies_and_TV.json",
        1,
        &["`overall`", "too large"],
    );

    let line =
        "{\"user_id\": \"A1\", \"parent_asin\": \"B1\", \"rating\": \"five\", \"timestamp\": 5}\n";
    let (e, _t) = load_err("amazon-movies-tv", &[("Movies_and_TV.jsonl", line)]);
    assert_names(
        &e,
        "Movies_and_TV.jsonl",
        1,
        &["`rating`", "string \"five\"", "not a number"],
    );

    let review =
        "{\"user_id\": \"u\", \"business_id\": \"b\", \"stars\": 1e39, \"date\": \"2018-01-01\"}\n";
    let (e, _t) = load_err("yelp", &[("review.json", review), ("business.json", "")]);
    assert_names(&e, "review.json", 1, &["`stars`", "too large"]);

    let inter =
        "{\"user_id\": \"U1\", \"book_id\": \"B1\", \"rating\": null, \"date_added\": \"x\"}\n";
    let (e, _t) = load_err(
        "goodreads",
        &[
            ("goodreads_interactions_dedup.json", inter),
            ("goodreads_books.json", GR_BOOKS),
        ],
    );
    assert!(
        matches!(&e, DataError::MissingField { line: 1, field, .. } if field == "rating"),
        "{e}"
    );
}

// ---- 3. timestamps ---------------------------------------------------------------------------

#[test]
fn recbole_float_timestamps_must_be_finite_and_in_range() {
    let head = "user_id:token\titem_id:token\ttimestamp:float\n";
    for (bad, why) in [
        ("NaN", "not a finite number"),
        ("inf", "not a finite number"),
        ("-1e300", "does not fit a 64-bit timestamp"),
        ("9.3e18", "does not fit a 64-bit timestamp"),
    ] {
        let inter = format!("{head}u1\ti1\t100.0\nu1\ti2\t{bad}\n");
        let (e, _t) = load_err("recbole", &[("toy.inter", &inter)]);
        assert!(matches!(e, DataError::Parse { line: 3, .. }), "{bad}: {e}");
        assert_names(&e, "toy.inter", 3, &["`timestamp`", bad, why]);
    }
}

#[test]
fn recbole_float_timestamps_in_range_still_truncate() {
    // The documented behaviour for valid input is unchanged: sub-second parts are dropped and
    // equal seconds keep file order; the largest representable value is accepted.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("toy");
    std::fs::create_dir_all(&dir).unwrap();
    let inter = "user_id:token\titem_id:token\ttimestamp:float\n\
                 u1\ti3\t-9.2e18\nu1\ti1\t100.9\nu1\ti2\t100.1\n";
    std::fs::write(dir.join("toy.inter"), inter).unwrap();
    let src = DatasetSource::parse(&format!("recbole:{}", dir.display()), None).unwrap();
    let ds = prepare(&src, &opts()).unwrap();
    let order: Vec<&str> = ds.train[0]
        .iter()
        .chain([&ds.valid[0], &ds.test[0]])
        .map(|&i| ds.item_ids[i as usize].as_str())
        .collect();
    assert_eq!(order, ["i3", "i1", "i2"]);
}

#[test]
fn integer_timestamps_reject_fractions_and_overflow() {
    let (e, _t) = ml_latest("1,2,3.0,1.5\n");
    assert_names(
        &e,
        "ratings.csv",
        3,
        &["`timestamp`", "1.5", "not an integer"],
    );
    let (e, _t) = ml_latest("1,2,3.0,99999999999999999999\n");
    assert_names(
        &e,
        "ratings.csv",
        3,
        &["`timestamp`", "does not fit a 64-bit timestamp"],
    );
    let (e, _t) = ml_latest("1,2,3.0,NaN\n");
    assert_names(
        &e,
        "ratings.csv",
        3,
        &["`timestamp`", "NaN", "not an integer"],
    );

    let line = "{\"reviewerID\": \"A1\", \"asin\": \"B1\", \"overall\": 5.0, \"unixReviewTime\": 18446744073709551615}\n";
    let (e, _t) = load_err("amazon-movies-tv", &[("reviews_Movies_and_TV.json", line)]);
    assert_names(
        &e,
        "reviews_Movies_and_TV.json",
        1,
        &[
            "`unixReviewTime`",
            "18446744073709551615",
            "does not fit a 64-bit timestamp",
        ],
    );
    let line =
        "{\"user_id\": \"A1\", \"parent_asin\": \"B1\", \"rating\": 5.0, \"timestamp\": 1.5e12}\n";
    let (e, _t) = load_err("amazon-movies-tv", &[("Movies_and_TV.jsonl", line)]);
    assert_names(
        &e,
        "Movies_and_TV.jsonl",
        1,
        &["`timestamp`", "not an integer"],
    );
}

#[test]
fn movielens_negative_timestamps_name_file_line_and_field() {
    let (e, _t) = ml_latest("1,2,3.0,-5\n");
    assert_names(
        &e,
        "ratings.csv",
        3,
        &["`timestamp`", "-5", "negative Unix timestamp"],
    );
    let item = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n";
    let (e, _t) = load_err(
        "ml-100k",
        &[("u.data", "1\t1\t4\t100\n2\t1\t4\t-1\n"), ("u.item", item)],
    );
    assert_names(&e, "u.data", 2, &["`timestamp`", "-1", "negative"]);
    let (e, _t) = load_err(
        "ml-1m",
        &[
            ("ratings.dat", "1::1::4::-978300760\n"),
            ("movies.dat", "1::Toy Story (1995)::Comedy\n"),
        ],
    );
    assert_names(
        &e,
        "ratings.dat",
        1,
        &["`Timestamp`", "-978300760", "negative"],
    );
}

#[test]
fn amazon_negative_timestamps_name_file_line_and_field() {
    let (e, _t) = load_err(
        "amazon-movies-tv",
        &[(
            "ratings_Movies_and_TV.csv",
            "A1,B1,4.0,1200\nA2,B1,5.0,-1\n",
        )],
    );
    assert_names(
        &e,
        "ratings_Movies_and_TV.csv",
        2,
        &["`timestamp`", "-1", "negative Unix timestamp"],
    );
    let line = "{\"reviewerID\": \"A1\", \"asin\": \"B1\", \"overall\": 5.0, \"unixReviewTime\": -86400}\n";
    let (e, _t) = load_err("amazon-movies-tv", &[("reviews_Movies_and_TV.json", line)]);
    assert_names(
        &e,
        "reviews_Movies_and_TV.json",
        1,
        &["`unixReviewTime`", "-86400", "negative"],
    );
    let line =
        "{\"user_id\": \"A1\", \"parent_asin\": \"B1\", \"rating\": 5.0, \"timestamp\": -1000}\n";
    let (e, _t) = load_err("amazon-movies-tv", &[("Movies_and_TV.jsonl", line)]);
    assert_names(
        &e,
        "Movies_and_TV.jsonl",
        1,
        &["`timestamp`", "-1000", "negative"],
    );
}

#[test]
fn goodreads_dates_before_1970_name_file_line_and_field() {
    let inter = "{\"user_id\": \"U1\", \"book_id\": \"B1\", \"rating\": 5, \
                 \"date_added\": \"Mon Aug 01 13:41:57 -0700 2016\"}\n\
                 {\"user_id\": \"U1\", \"book_id\": \"B1\", \"rating\": 5, \
                 \"date_added\": \"Mon Aug 01 13:41:57 -0700 1969\"}\n";
    let (e, _t) = load_err(
        "goodreads",
        &[
            ("goodreads_interactions_dedup.json", inter),
            ("goodreads_books.json", GR_BOOKS),
        ],
    );
    assert_names(
        &e,
        "goodreads_interactions_dedup.json",
        2,
        &["`date_added`", "1969", "negative Unix timestamp"],
    );
}

#[test]
fn absurd_years_in_dates_are_errors_not_overflows() {
    let review = "{\"user_id\": \"u\", \"business_id\": \"b\", \"stars\": 5, \"date\": \"9223372036854775807-01-01\"}\n";
    let (e, _t) = load_err("yelp", &[("review.json", review), ("business.json", "")]);
    assert_names(&e, "review.json", 1, &["`date`"]);

    let inter = "{\"user_id\": \"U1\", \"book_id\": \"B1\", \"rating\": 5, \
                 \"date_added\": \"Mon Aug 01 13:41:57 -0700 9223372036854775807\"}\n";
    let (e, _t) = load_err(
        "goodreads",
        &[
            ("goodreads_interactions_dedup.json", inter),
            ("goodreads_books.json", GR_BOOKS),
        ],
    );
    assert_names(
        &e,
        "goodreads_interactions_dedup.json",
        1,
        &["`date_added`"],
    );
}

// ---- 4. bounded quotes -----------------------------------------------------------------------

/// At most the excerpt plus the fixed wording: far below the size of the field.
fn assert_bounded(e: &DataError, field_bytes: usize) {
    let msg = e.to_string();
    assert!(
        msg.len() < 1500,
        "{} byte message: {}",
        msg.len(),
        &msg[..300]
    );
    assert!(
        msg.contains(&format!("… ({field_bytes} bytes)")),
        "no length note in: {msg}"
    );
}

#[test]
fn a_50_mb_field_is_quoted_as_a_short_prefix() {
    let big = "7".repeat(50 << 20);
    let (e, _t) = ml_latest(&format!("1,2,{big}x,200\n"));
    assert_names(&e, "ratings.csv", 3, &["`rating`", "is not a number"]);
    assert_bounded(&e, big.len() + 1);
    // The quote is exactly the first QUOTE_LIMIT characters.
    assert!(
        e.to_string()
            .contains(&format!("`{}…", &big[..QUOTE_LIMIT]))
    );
}

#[test]
fn long_multibyte_fields_are_cut_on_char_boundaries() {
    // 3-byte characters: a byte-based cut at 120 would land inside one and panic.
    let big = "€".repeat(100_000);
    let (e, _t) = ml_latest(&format!("1,2,3.0,{big}\n"));
    let msg = e.to_string();
    assert_bounded(&e, big.len());
    assert!(
        msg.contains(&format!("`{}…", "€".repeat(QUOTE_LIMIT))),
        "{msg}"
    );
}

#[test]
fn every_quoting_error_is_bounded() {
    let big = "q".repeat(1 << 20);
    let n = big.len();

    // Header of ratings.csv.
    let (e, _t) = load_err(
        "ml-latest-small",
        &[
            ("ratings.csv", &format!("{big}\n")),
            ("movies.csv", ML_MOVIES),
        ],
    );
    assert_names(&e, "ratings.csv", 1, &["expected header"]);
    assert_bounded(&e, n);

    // A string where a number belongs, in JSON.
    let line = format!(
        "{{\"reviewerID\": \"A1\", \"asin\": \"B1\", \"overall\": 5.0, \"unixReviewTime\": \"{big}\"}}\n"
    );
    let (e, _t) = load_err("amazon-movies-tv", &[("reviews_Movies_and_TV.json", &line)]);
    assert_names(&e, "reviews_Movies_and_TV.json", 1, &["`unixReviewTime`"]);
    assert_bounded(&e, n);

    // serde_json's own message quotes the offending string in full.
    let books = format!("{{\"book_id\": \"B1\", \"popular_shelves\": \"{big}\"}}\n");
    let inter = "{\"user_id\": \"U1\", \"book_id\": \"B1\", \"rating\": 5, \
                 \"date_added\": \"Mon Aug 01 13:41:57 -0700 2016\"}\n";
    let (e, _t) = load_err(
        "goodreads",
        &[
            ("goodreads_interactions_dedup.json", inter),
            ("goodreads_books.json", &books),
        ],
    );
    assert_names(
        &e,
        "goodreads_books.json",
        1,
        &["broken JSON", "at line 1 column"],
    );
    assert!(e.to_string().len() < 1500, "{}", e.to_string().len());

    // Dates.
    let review = format!(
        "{{\"user_id\": \"u\", \"business_id\": \"b\", \"stars\": 5, \"date\": \"{big}\"}}\n"
    );
    let (e, _t) = load_err("yelp", &[("review.json", &review), ("business.json", "")]);
    assert_names(&e, "review.json", 1, &["`date`"]);
    assert_bounded(&e, n);

    // Python-literal metadata (2014): a bare word as long as the line.
    let meta = format!("{{'asin': 'B1', 'title': {big}}}\n");
    let (e, _t) = load_err(
        "amazon-movies-tv",
        &[
            ("ratings_Movies_and_TV.csv", "A1,B1,4.0,1200\n"),
            ("meta_Movies_and_TV.json", &meta),
        ],
    );
    assert_names(&e, "meta_Movies_and_TV.json", 1, &["Python dict"]);
    assert!(e.to_string().len() < 1500, "{}", e.to_string().len());

    // Duplicate key.
    let ratings = format!("{ML_RATINGS_HEAD}1,{big},3.0,200\n");
    let movies = format!("movieId,title,genres\n{big},A,G\n{big},B,G\n");
    let (e, _t) = load_err(
        "ml-latest-small",
        &[("ratings.csv", &ratings), ("movies.csv", &movies)],
    );
    assert!(matches!(e, DataError::DuplicateRow { line: 3, .. }), "{e}");
    assert_bounded(&e, n);

    // The dataset name itself.
    let e = DatasetSource::parse(&big, None).unwrap_err();
    assert_bounded(&e, n);
}
