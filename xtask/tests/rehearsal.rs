//! The paid run, rehearsed small: `reproduce rehearsal` (table1's methods on the bundled data,
//! one backbone, ~750 requests) against the simulated API, first clean, then through a fault
//! storm with a kill -9 in the middle and a resume. The resumed run must write the clean run's
//! report, ask every distinct request, and pay twice only for what was in flight at the kill.

mod common;
use common::{report_files, run_to_end};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agp_sim_api::{FaultRates, SimConfig, SimServer};

const JOBS: u64 = 8;

fn reproduce(llm: &str, dir: &Path, name: &str) -> Command {
    reproduce_into(llm, dir, name, &format!("{name}.jsonl"))
}

/// As [`reproduce`], with the recordings file named apart from the run.
fn reproduce_into(llm: &str, dir: &Path, name: &str, recordings: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["reproduce", "rehearsal", "--scale", "fixture", "--quiet"])
        .args(["--jobs", &JOBS.to_string(), "--llm", llm])
        .arg("--out")
        .arg(dir.join(format!("{name}-out")))
        .arg("--runs")
        .arg(dir.join(format!("{name}-runs")))
        .arg("--recordings")
        .arg(dir.join(recordings))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn a_fault_storm_and_a_kill_leave_the_report_of_a_clean_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let latency = Duration::from_millis(5);

    let clean = rt
        .block_on(SimServer::start(SimConfig {
            latency,
            ..SimConfig::default()
        }))
        .unwrap();
    let addr = clean.addr;
    // One address for both servers: the LLM spec (with its port) is part of the report.
    let llm = format!("http:{}#sim", clean.base_url());
    run_to_end(reproduce(&llm, dir, "clean"));
    let clean_stats = clean.stats();
    drop(clean);
    assert!(clean_stats.answered > 300, "{clean_stats:?}");
    assert_eq!(clean_stats.answered_twice, 0, "a clean run asks once");

    let storm_cfg = SimConfig {
        latency,
        faults: FaultRates::STORM,
        storm_retry_after: Duration::from_millis(50),
        seed: 7,
        ..SimConfig::default()
    };
    // The clean server's listener closes on its runtime's time; wait for the port.
    let t = Instant::now();
    let storm = loop {
        match rt.block_on(SimServer::start_on(storm_cfg.clone(), addr)) {
            Ok(s) => break s,
            Err(e) if t.elapsed() < Duration::from_secs(10) => {
                eprintln!("port {addr} not free yet: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("port {addr} stayed taken: {e}"),
        }
    };
    let mut child = reproduce(&llm, dir, "storm").spawn().unwrap();
    let t = Instant::now();
    while storm.stats().answered < clean_stats.answered / 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        assert!(t.elapsed() < Duration::from_secs(600), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    let at_kill = storm.stats();
    let log = run_to_end(reproduce(&llm, dir, "storm"));
    let s = storm.stats();
    eprintln!(
        "clean: {} answered; storm: {} attempts, faults {:?}, {} answered ({} before the \
         kill), {} distinct, {} answered twice",
        clean_stats.answered,
        s.attempts,
        s.faults,
        s.answered,
        at_kill.answered,
        s.distinct_answered,
        s.answered_twice
    );
    for kind in ["rate_limited", "server_error", "malformed", "dropped"] {
        assert!(
            s.faults.get(kind).copied().unwrap_or(0) > 0,
            "{kind}: {s:?}"
        );
    }
    assert_eq!(
        s.distinct_answered, clean_stats.distinct_answered,
        "every distinct request asked, none more"
    );
    assert!(
        s.answered_twice <= JOBS,
        "only requests in flight at the kill may be paid twice: {} ({:?})\n{log}",
        s.answered_twice,
        s.answered_twice_fingerprints
    );
    let want = report_files(&dir.join("clean-out"));
    let got = report_files(&dir.join("storm-out"));
    assert_eq!(want.len(), got.len());
    for ((wn, wt), (gn, gt)) in want.iter().zip(&got) {
        assert_eq!(wn, gn);
        let first = wt
            .lines()
            .zip(gt.lines())
            .find(|(w, g)| w != g)
            .map(|(w, g)| format!("clean: {w}\nstorm: {g}"))
            .unwrap_or_default();
        assert!(
            wt == gt,
            "{} differs between the clean and the storm run\n{first}",
            wn.display()
        );
    }
}

#[test]
fn a_refused_prompt_is_counted_in_the_report_and_the_run_finishes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server = rt
        .block_on(SimServer::start(SimConfig {
            // A title that the bundled data shows in some users' prompts, not all.
            refuse_containing: vec!["Pulp Fiction".into()],
            ..SimConfig::default()
        }))
        .unwrap();
    let llm = format!("http:{}#sim", server.base_url());
    run_to_end(reproduce(&llm, tmp.path(), "refusing"));
    let cells = std::fs::read_to_string(tmp.path().join("refusing-out/rehearsal/cells.json"))
        .expect("a report was written");
    let cells: serde_json::Value = serde_json::from_str(&cells).unwrap();
    let refused: u64 = cells["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .filter_map(|c| c["run"]["failures"]["refusal"].as_u64())
        .sum();
    assert!(refused > 0, "refusals are counted in the report");
}

#[test]
fn a_server_answering_empty_content_is_asked_each_request_at_most_twice() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server = rt
        .block_on(SimServer::start(SimConfig {
            // Every chat request: a 200 with nothing in it.
            empty_containing: vec![String::new()],
            ..SimConfig::default()
        }))
        .unwrap();
    let llm = format!("http:{}#sim", server.base_url());
    run_to_end(reproduce(&llm, tmp.path(), "empty"));
    let stats = server.stats();
    assert!(
        stats.faults.get("empty").is_some_and(|&n| n > 0),
        "{stats:?}"
    );
    assert!(stats.most_answered <= 2, "{stats:?}");
    let cells = std::fs::read_to_string(tmp.path().join("empty-out/rehearsal/cells.json"))
        .expect("a report was written");
    let cells: serde_json::Value = serde_json::from_str(&cells).unwrap();
    let empty: u64 = cells["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .filter_map(|c| c["run"]["failures"]["empty"].as_u64())
        .sum();
    assert!(empty > 0, "empty answers are counted in the report");
    // A resumed run over the same recordings and checkpoints asks nothing again.
    let before = server.stats().attempts;
    run_to_end(reproduce(&llm, tmp.path(), "empty"));
    assert_eq!(server.stats().attempts, before);
}

#[test]
fn a_new_recordings_file_does_not_reuse_another_files_checkpoints() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = rt.block_on(SimServer::start(SimConfig::default())).unwrap();
    let llm = format!("http:{}#sim", server.base_url());
    // Two runs that share the checkpoint directory and differ only in the recordings file.
    let run = |recordings: &str| run_to_end(reproduce_into(&llm, dir, "shared", recordings));
    run("first.jsonl");
    let first = server.stats().answered;
    assert!(first > 0);
    let said = run("second.jsonl");
    assert!(
        said.contains("not resuming the checkpoint")
            && said.contains("llm identity.recordings (was ")
            && said.contains("second.jsonl)"),
        "the second run says which input kept it from the first run's checkpoints:\n{said}"
    );
    let second = server.stats().answered - first;
    assert_eq!(
        second, first,
        "the second recordings file was filled by asking the model again"
    );
    let lines = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(lines("second.jsonl"), lines("first.jsonl"));
}

#[test]
fn every_request_declares_its_decoding_so_a_sampling_server_gives_one_report() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A server that samples wherever a request leaves the decoding to it, as llama-server
    // (temperature 0.8) and OpenAI (temperature 1) do.
    let server = rt
        .block_on(SimServer::start(SimConfig {
            sample_when_unset: true,
            ..SimConfig::default()
        }))
        .unwrap();
    let llm = format!("http:{}#sim", server.base_url());
    // Fresh recordings and checkpoints each time: two live runs, not a run and its replay.
    run_to_end(reproduce(&llm, dir, "first"));
    run_to_end(reproduce(&llm, dir, "second"));
    let stats = server.stats();
    assert!(stats.answered > 300, "{stats:?}");
    assert_eq!(
        stats.undeclared_decoding, 0,
        "every request names its temperature and seed"
    );
    let (a, b) = (
        report_files(&dir.join("first-out")),
        report_files(&dir.join("second-out")),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{} differs between two live runs", name.display());
    }
    // Each answer records what the server says served it.
    let recorded = std::fs::read_to_string(dir.join("first.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(recorded.lines().next().unwrap()).unwrap();
    assert_eq!(first["request"]["sampling"]["temperature"], 0.0);
    assert_eq!(first["request"]["sampling"]["seed"], 0);
    let report = std::fs::read_to_string(dir.join("first-out/rehearsal/README.md")).unwrap();
    assert!(
        report.contains(
            "The server said these served its answers: sim (system_fingerprint agp-sim-api)"
        ),
        "the card names what the server said served it:\n{report}"
    );
}

#[test]
fn labels_outside_the_providers_top_logprobs_are_counted_and_flagged() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = rt
        .block_on(SimServer::start(SimConfig {
            // FIRST asks for the top 20 and reads 10 identifiers; this server lists 5.
            max_top_logprobs: Some(5),
            // And it serves another model than the spec names.
            served_model: Some("/srv/models/other-model-q8_0.gguf".into()),
            ..SimConfig::default()
        }))
        .unwrap();
    let llm = format!("http:{}#sim", server.base_url());
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["reproduce", "baselines", "--scale", "fixture", "--quiet"])
        .args(["--method", "FIRST", "--llm", &llm])
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--runs")
        .arg(dir.join("runs"))
        .arg("--recordings")
        .arg(dir.join("first.jsonl"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the server lists") && err.contains("other-model-q8_0.gguf"),
        "a served model other than the spec's is a warning before the first call:\n{err}"
    );
    assert!(err.contains("labels were missing"), "{err}");
    let cells: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/baselines/cells.json")).unwrap(),
    )
    .unwrap();
    let (mut asked, mut missing) = (0, 0);
    // The prefilled row: its ten identifiers are the labels (the other row reads its answer's
    // first token whatever it is).
    for c in cells["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["label"] == "FIRST")
    {
        for t in c["run"]["calls"].as_object().unwrap().values() {
            asked += t["labels_asked"].as_u64().unwrap_or(0);
            missing += t["labels_missing"].as_u64().unwrap_or(0);
        }
    }
    assert!(asked > 0);
    assert_eq!(missing * 2, asked, "5 of every 10 labels are missing");
    let report = std::fs::read_to_string(dir.join("out/baselines/README.md")).unwrap();
    assert!(report.contains("| 50.0% **flagged** |"), "{report}");
}
