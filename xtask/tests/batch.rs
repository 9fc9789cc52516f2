//! `reproduce --batch` against the simulated Batch API: the same reports as the synchronous
//! run, every request answered once, and a run killed while a batch is pending resumes by
//! polling that batch instead of submitting it again.

mod common;
use common::{report_files, run_to_end};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agp_sim_api::{BatchConfig, SimConfig, SimServer, SimStats};

fn reproduce(llm: &str, dir: &Path, name: &str, batch: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["reproduce", "rehearsal", "--scale", "fixture", "--quiet"])
        .args(["--jobs", "8", "--llm", llm])
        .arg("--out")
        .arg(dir.join(format!("{name}-out")))
        .arg("--runs")
        .arg(dir.join(format!("{name}-runs")))
        .arg("--recordings")
        .arg(dir.join(format!("{name}.jsonl")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if batch {
        c.args(["--batch", "--batch-poll-s", "0.02"]);
    }
    c
}

fn assert_same_reports(want: &Path, got: &Path) {
    let want = report_files(want);
    let got = report_files(got);
    assert_eq!(want.len(), got.len());
    for ((wn, wt), (gn, gt)) in want.iter().zip(&got) {
        assert_eq!(wn, gn);
        let first = wt
            .lines()
            .zip(gt.lines())
            .find(|(w, g)| w != g)
            .map(|(w, g)| format!("sync:  {w}\nbatch: {g}"))
            .unwrap_or_default();
        assert!(wt == gt, "{} differs\n{first}", wn.display());
    }
}

/// A server on `addr` (the LLM spec, port included, is part of the report), once the last
/// one has let go of it.
fn start_on(rt: &tokio::runtime::Runtime, cfg: SimConfig, addr: std::net::SocketAddr) -> SimServer {
    let t = Instant::now();
    loop {
        match rt.block_on(SimServer::start_on(cfg.clone(), addr)) {
            Ok(s) => break s,
            Err(e) if t.elapsed() < Duration::from_secs(10) => {
                eprintln!("port {addr} not free yet: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("port {addr} stayed taken: {e}"),
        }
    }
}

/// `in_flight`: synchronous (training) requests in flight at a kill, which may be paid twice.
fn assert_each_answered_once(s: &SimStats, sync: &SimStats, in_flight: u64) {
    assert!(s.answered_twice <= in_flight, "{s:?}");
    assert_eq!(
        s.distinct_answered, sync.distinct_answered,
        "the batch run asks what the sync run asks"
    );
    assert_eq!(
        s.batch_lines_submitted, s.batch_lines,
        "every submitted line answered, none submitted twice: {s:?}"
    );
    assert!(s.batch_lines > 0, "{s:?}");
}

#[test]
fn a_batch_run_writes_the_sync_runs_reports_and_survives_a_kill_while_pending() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let sync = rt.block_on(SimServer::start(SimConfig::default())).unwrap();
    let addr = sync.addr;
    let llm = format!("http:{}#sim", sync.base_url());
    run_to_end(reproduce(&llm, dir, "sync", false));
    let sync_stats = sync.stats();
    drop(sync);
    assert_eq!(sync_stats.batch_lines, 0);

    let batch = start_on(&rt, SimConfig::default(), addr);
    let log = run_to_end(reproduce(&llm, dir, "batch", true));
    let s = batch.stats();
    drop(batch);
    eprintln!(
        "sync: {} answered; batch: {} batches, {} lines, {} sync attempts",
        sync_stats.answered, s.batches_created, s.batch_lines, s.attempts
    );
    assert_each_answered_once(&s, &sync_stats, 0);
    assert!(log.contains("submitted"), "{log}");
    assert_same_reports(&dir.join("sync-out"), &dir.join("batch-out"));

    // Killed while its first batch is pending, then resumed against the same server; a tenth
    // of the batch lines fail with a 5xx and are asked synchronously.
    let slow = SimConfig {
        batch: BatchConfig {
            delay: Duration::from_millis(300),
            line_error_rate: 0.1,
            ..BatchConfig::default()
        },
        ..SimConfig::default()
    };
    let server = start_on(&rt, slow, addr);
    let mut child = reproduce(&llm, dir, "killed", true).spawn().unwrap();
    let state = dir.join("killed.jsonl.batches");
    let t = Instant::now();
    // Kill once a batch is created (its state file is written before that).
    let stored = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
    };
    while !(server.stats().batches_created >= 1 && stored(&state)) {
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        assert!(t.elapsed() < Duration::from_secs(300), "no batch submitted");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = server.stats();
    assert!(at_kill.batches_created >= 1);
    let log = run_to_end(reproduce(&llm, dir, "killed", true));
    let s = server.stats();
    assert!(log.contains("left pending by an earlier run"), "{log}");
    assert!(s.batch_by_status.keys().any(|&c| c >= 500), "{s:?}");
    assert!(s.attempts > 0, "failed lines asked synchronously: {s:?}");
    assert_each_answered_once(&s, &sync_stats, 8);
    assert_same_reports(&dir.join("sync-out"), &dir.join("killed-out"));
}
