//! Reading a generated Amazon-format file of 10 M lines: lines/s (criterion throughput), plus one
//! timed run each of parsing and of the whole `prepare`, printed with on-CPU time and peak resident
//! memory (VmHWM).
//!
//! Two formats: the 2014 ratings-only CSV and the 2018 review JSON lines (with a short review
//! text and the fields the real dump carries, which the parser must skip). The file is generated
//! at bench time in a temporary directory and deleted afterwards. `AGP_BENCH_LINES` overrides the
//! line count for a quick run.

use agp_datasets::formats::amazon::{Release, load_interactions};
use agp_datasets::raw::RawData;
use agp_datasets::{DatasetSource, PrepareOptions, prepare};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Amazon Movies & TV 2018 has 8.7 M reviews over 3.8 M users and 182 K items; keep roughly
/// that shape at any line count (3 M users and 200 K items at 10 M lines).
fn users(lines: u64) -> u64 {
    (lines * 3 / 10).max(10)
}

fn items(lines: u64) -> u64 {
    (lines / 50).max(10)
}

fn n_lines() -> u64 {
    std::env::var("AGP_BENCH_LINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000)
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Popularity is skewed (a few items and users are very frequent) like real review data, so
/// the k-core in the `prepare` bench does real work.
fn skewed(rng: &mut SplitMix, n: u64) -> u64 {
    let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    ((n as f64) * u.powi(3)) as u64
}

fn generate(dir: &Path, json: bool, lines: u64) -> std::path::PathBuf {
    let name = if json {
        "Movies_and_TV.json"
    } else {
        "ratings_Movies_and_TV.csv"
    };
    let path = dir.join(name);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let mut rng = SplitMix(42);
    for _ in 0..lines {
        let user = skewed(&mut rng, users(lines));
        let item = skewed(&mut rng, items(lines));
        let rating = 1 + rng.next() % 5;
        let ts = 900_000_000 + rng.next() % 600_000_000;
        if json {
            writeln!(
                w,
                r#"{{"overall": {rating}.0, "verified": true, "reviewTime": "03 1, 2015", "reviewerID": "A{user:013X}", "asin": "B{item:09}", "style": {{"Format:": " DVD"}}, "reviewerName": "J. Doe", "reviewText": "Great movie, the \"best\" of the year.", "summary": "Five Stars", "unixReviewTime": {ts}}}"#
            )
            .unwrap();
        } else {
            writeln!(w, "A{user:013X},B{item:09},{rating}.0,{ts}").unwrap();
        }
    }
    w.flush().unwrap();
    path
}

/// Peak resident set size of this process in MiB, then reset so the next group starts fresh.
fn peak_rss_mib_and_reset() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    Some(kb / 1024.0)
}

/// CPU time of the calling thread in seconds. The build machine is shared, so wall time alone
/// says more about the neighbours than about the parser; on-CPU time does not.
fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

/// One timed run outside criterion: wall, on-CPU time, peak RSS.
fn once<T>(label: &str, lines: u64, f: impl FnOnce() -> T) -> T {
    peak_rss_mib_and_reset();
    let (cpu0, t0) = (thread_cpu_s(), std::time::Instant::now());
    let out = f();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_s().zip(cpu0).map(|(b, a)| b - a);
    let rss = peak_rss_mib_and_reset().unwrap_or(f64::NAN);
    let per_cpu = cpu.map_or(String::from("n/a"), |c| {
        format!("{:.2} M lines/CPU-s", lines as f64 / c / 1e6)
    });
    println!(
        "{label}: {lines} lines, wall {wall:.2} s ({:.2} M lines/s), CPU {:.2} s ({per_cpu}), peak RSS {rss:.0} MiB",
        lines as f64 / wall / 1e6,
        cpu.unwrap_or(f64::NAN),
    );
    out
}

fn bench(c: &mut Criterion) {
    let lines = n_lines();
    let dir = tempfile::tempdir().unwrap();
    let opts = PrepareOptions::default();
    for (json, release, label) in [
        (false, Release::Ratings2014, "csv-2014"),
        (true, Release::Reviews2018, "json-2018"),
    ] {
        let path = generate(dir.path(), json, lines);
        let bytes = std::fs::metadata(&path).unwrap().len();
        let parse = || {
            let mut raw = RawData::default();
            load_interactions(&path, release, &opts, &mut raw).unwrap();
            assert_eq!(raw.interactions.len() as u64, lines);
            raw
        };
        once(&format!("amazon-{label}/parse"), lines, parse);
        let src = DatasetSource::parse("amazon-movies-tv", Some(dir.path().to_owned())).unwrap();
        let ds = once(
            &format!("amazon-{label}/prepare (parse, dedup, 5-core, split, sha256)"),
            lines,
            || prepare(&src, &opts).unwrap(),
        );
        println!(
            "amazon-{label}: {} MB; after 5-core {} users, {} items, {} interactions",
            bytes / 1_000_000,
            ds.n_users(),
            ds.n_items(),
            ds.n_interactions()
        );
        drop(ds);
        let mut g = c.benchmark_group(format!("amazon-{label}"));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .throughput(Throughput::Elements(lines));
        g.bench_function(format!("parse {lines} lines"), |b| b.iter(parse));
        g.finish();
        std::fs::remove_file(&path).unwrap();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
