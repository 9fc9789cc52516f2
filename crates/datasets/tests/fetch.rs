//! `fetch` against a local mock server: full download, resume, checksum pinning and
//! recording, HTTP errors, and the MovieLens zip layout end to end.

use agp_datasets::fetch::{Quiet, RemoteFile, fetch_files, manifest, with_mirror};
use agp_datasets::{DataError, DatasetSource, PrepareOptions, SourceKind, prepare};
use sha2::{Digest, Sha256};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn body() -> Vec<u8> {
    (0..100_000u32)
        .flat_map(|i| format!("A{i},B{},5.0,{i}\n", i % 97).into_bytes())
        .collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn remote(server: &MockServer, sha256: Option<String>) -> RemoteFile {
    RemoteFile {
        url: format!("{}/files/ratings_Movies_and_TV.csv", server.uri()),
        file: "ratings_Movies_and_TV.csv".into(),
        sha256,
        extract: vec![],
    }
}

#[tokio::test]
async fn downloads_and_checks_a_pinned_sha256() {
    let server = MockServer::start().await;
    let b = body();
    Mock::given(method("GET"))
        .and(path("/files/ratings_Movies_and_TV.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let got = fetch_files(&[remote(&server, Some(sha(&b)))], dir.path(), &mut Quiet)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&got[0]).unwrap(), b);
    let sums = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{}  ratings_Movies_and_TV.csv\n", sha(&b)));
    // Already there and valid: no second request (`expect(1)` is checked on drop).
    fetch_files(&[remote(&server, Some(sha(&b)))], dir.path(), &mut Quiet)
        .await
        .unwrap();
}

#[tokio::test]
async fn resumes_a_partial_download_with_a_range_request() {
    let server = MockServer::start().await;
    let b = body();
    let cut = 123_457;
    Mock::given(method("GET"))
        .and(header("range", format!("bytes={cut}-").as_str()))
        .respond_with(ResponseTemplate::new(206).set_body_bytes(b[cut..].to_vec()))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ratings_Movies_and_TV.csv.part"), &b[..cut]).unwrap();
    let got = fetch_files(&[remote(&server, Some(sha(&b)))], dir.path(), &mut Quiet)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&got[0]).unwrap(), b);
    assert!(!dir.path().join("ratings_Movies_and_TV.csv.part").exists());
}

#[tokio::test]
async fn restarts_when_the_server_ignores_range() {
    let server = MockServer::start().await;
    let b = body();
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b.clone()))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ratings_Movies_and_TV.csv.part"),
        b"garbage from an old attempt",
    )
    .unwrap();
    let got = fetch_files(&[remote(&server, Some(sha(&b)))], dir.path(), &mut Quiet)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&got[0]).unwrap(), b);
}

#[tokio::test]
async fn checksum_mismatch_is_an_error_and_keeps_the_file_aside() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"not what was promised".to_vec()))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let e = fetch_files(
        &[remote(&server, Some(sha(&body())))],
        dir.path(),
        &mut Quiet,
    )
    .await
    .unwrap_err();
    match &e {
        DataError::ChecksumMismatch { path, expected, .. } => {
            assert_eq!(expected, &sha(&body()));
            assert!(path.exists(), "{}", path.display());
        }
        other => panic!("{other}"),
    }
    assert!(!dir.path().join("ratings_Movies_and_TV.csv").exists());
}

#[tokio::test]
async fn first_download_hash_is_recorded_and_enforced_later() {
    let server = MockServer::start().await;
    let b = body();
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b.clone()))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let got = fetch_files(&[remote(&server, None)], dir.path(), &mut Quiet)
        .await
        .unwrap();
    // The file changes on disk after the first fetch: the recorded hash catches it.
    std::fs::write(&got[0], b"tampered").unwrap();
    let e = fetch_files(&[remote(&server, None)], dir.path(), &mut Quiet)
        .await
        .unwrap_err();
    assert!(matches!(e, DataError::ChecksumMismatch { .. }), "{e}");
}

#[tokio::test]
async fn http_errors_name_url_and_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let e = fetch_files(&[remote(&server, None)], dir.path(), &mut Quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Http { status: 404, url } if url.ends_with("/files/ratings_Movies_and_TV.csv")),
        "{e}"
    );
}

#[tokio::test]
async fn movielens_zip_from_a_mirror_then_prepare() {
    let server = MockServer::start().await;
    let zip = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/datasets/ml-zip/ml-latest-small.zip"),
    )
    .unwrap();
    Mock::given(method("GET"))
        .and(path("/datasets/movielens/ml-latest-small.zip"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(zip))
        .mount(&server)
        .await;
    let files = manifest(&SourceKind::MlLatestSmall, None).unwrap();
    assert_eq!(
        files[0].url,
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
    );
    let files = with_mirror(files, &server.uri());
    let dir = tempfile::tempdir().unwrap();
    let got = fetch_files(&files, dir.path(), &mut Quiet).await.unwrap();
    assert_eq!(
        got,
        [
            dir.path().join("ratings.csv"),
            dir.path().join("movies.csv")
        ]
    );
    let src = DatasetSource::parse("ml-latest-small", Some(dir.path().to_owned())).unwrap();
    let ds = prepare(
        &src,
        &PrepareOptions {
            k_core: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.n_users(), 2);
    assert_eq!(
        ds.item_text,
        [
            "Toy Story (1995)",
            "Heat (1995)",
            "American President, The (1995)"
        ]
    );
}

#[test]
fn manifests_name_the_official_files() {
    let amz = manifest(&SourceKind::AmazonMoviesTv, None).unwrap();
    assert!(
        amz[0]
            .url
            .ends_with("/amazon_v2/categoryFiles/Movies_and_TV.json.gz")
    );
    let gr = manifest(&SourceKind::Goodreads, Some("poetry")).unwrap();
    assert!(
        gr[0]
            .url
            .ends_with("/byGenre/goodreads_interactions_poetry.json.gz")
    );
    assert!(matches!(
        manifest(&SourceKind::AmazonMoviesTv, Some("1999")),
        Err(DataError::InvalidOption { .. })
    ));
    let yelp = manifest(&SourceKind::Yelp, None).unwrap_err().to_string();
    assert!(yelp.contains("--raw"), "{yelp}");
}
