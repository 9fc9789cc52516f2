//! A replayed run's checkpoints belong to the recordings they replayed: `--check` against other
//! recordings must recompute (and here miss), whatever finished checkpoints `.cache` holds.

use std::process::Command;

#[test]
fn check_with_truncated_recordings_fails_even_on_a_warm_cache() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let xtask = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(["reproduce", "fig3-pbf", "--check", "--quiet", "--runs"])
            .arg(&runs)
            .current_dir(root);
        c
    };
    // Warm: the bundled recordings, which match the committed report.
    let full = xtask().output().unwrap();
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let all = std::fs::read_to_string(root.join("fixtures/llm/recordings.jsonl")).unwrap();
    let one = tmp.path().join("one.jsonl");
    std::fs::write(&one, all.lines().next().unwrap().to_string() + "\n").unwrap();
    let cut = xtask().arg("--recordings").arg(&one).output().unwrap();
    let err = String::from_utf8_lossy(&cut.stderr);
    assert!(
        !cut.status.success(),
        "a truncated recording passed --check"
    );
    assert!(err.contains("replay miss"), "{err}");
}
