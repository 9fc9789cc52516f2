//! A second run on a warm cache (backbones reloaded from the store, method results from their
//! checkpoints) writes byte-identical reports to the cold run, with early stopping cutting the
//! backbones' training short: the store must give back the facts of the run that trained them.

use agp_harness::{ReproduceOptions, Scale, Workspace};
use std::collections::BTreeMap;
use std::path::Path;

const SCALES: &str = r#"
[small]
datasets = ["ml-latest-small"]
backbones = ["lightgcn", "sasrec"]
llms = ["replay"]
test_users = 10
train_users = 5
valid_users = 5
take_available_users = true
backbone_epochs = { lightgcn = 40, sasrec = 40 }
# Validate every epoch and stop at the first validation without improvement, so both stop
# well before the maximum.
backbone_settings.lightgcn = { eval_every = 1, patience = 1 }
backbone_settings.sasrec = { eval_every = 2, patience = 1 }
"#;

const EXPERIMENT: &str = r#"
name = "warm-cold"
title = "Warm equals cold"
layout = "table1"
[[methods]]
label = "Base"
kind = "base"
"#;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_warm_cache_writes_the_cold_runs_reports() {
    let tmp = tempfile::tempdir().unwrap();
    // A workspace of its own, so the cold run is cold: empty model store, dataset cache and
    // checkpoints, and a copy of the bundled raw data (a workspace reads only its own files).
    let ws = Workspace::at(tmp.path());
    let raw = Workspace::discover().fixtures().join("ml-latest-small");
    let copy = tmp.path().join("fixtures/ml-latest-small");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&raw).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(tmp.path().join("experiments")).unwrap();
    std::fs::write(tmp.path().join("experiments/scales.toml"), SCALES).unwrap();
    std::fs::write(tmp.path().join("experiments/warm-cold.toml"), EXPERIMENT).unwrap();
    std::fs::create_dir_all(tmp.path().join("fixtures/llm")).unwrap();
    // Base calls no model, but a replayed LLM needs its recordings to exist.
    std::fs::copy(Workspace::discover().recordings(), ws.recordings()).unwrap();
    // Both runs write to one folder (the report names the command that made it, `--out`
    // included); the cold run's files are moved aside before the warm run.
    let opts = ReproduceOptions {
        scale: Scale::Small,
        out: Some(tmp.path().join("out")),
        progress: false,
        ..ReproduceOptions::default()
    };

    let cold = agp_harness::run_experiments(&ws, &["warm-cold".into()], &opts).unwrap();
    std::fs::rename(tmp.path().join("out"), tmp.path().join("cold")).unwrap();
    for b in &cold[0].facts.backbones {
        assert!(
            b.stopped_early && b.epochs < 40,
            "{}: the test needs early stopping ({} epochs)",
            b.backbone,
            b.epochs
        );
    }
    assert!(
        std::fs::read_dir(ws.models()).unwrap().count() >= 2,
        "both backbones are in the one store"
    );
    let warm = agp_harness::run_experiments(&ws, &["warm-cold".into()], &opts).unwrap();
    assert_eq!(cold[0].facts.backbones.len(), warm[0].facts.backbones.len());
    let (c, w) = (
        files(&tmp.path().join("cold/warm-cold")),
        files(&tmp.path().join("out/warm-cold")),
    );
    assert_eq!(c.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>());
    for (name, bytes) in &c {
        assert!(
            bytes == &w[name],
            "{name} differs between the cold and the warm run:\n{}\n---\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&w[name])
        );
    }
}
