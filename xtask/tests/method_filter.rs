//! `--method` names rows by kind or label; a name that matches no row is refused before
//! anything trains, with the rows the experiment does have.

use std::process::Command;

#[test]
fn an_unknown_method_is_refused_naming_the_rows_there_are() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["reproduce", "table1", "--quiet", "--method", "LLM-DIR"])
        .args(["--method", "agp-typo", "--out"])
        .arg(tmp.path().join("out"))
        .arg("--runs")
        .arg(tmp.path().join("runs"))
        .current_dir(root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown --method ran: {err}");
    assert!(err.contains("--method \"agp-typo\""), "{err}");
    for row in ["agp", "LLM-Dir (pointwise)", "llm-dir", "Base"] {
        assert!(err.contains(row), "the error does not name {row:?}: {err}");
    }
    assert!(
        !tmp.path().join("out").exists() && !tmp.path().join("runs").exists(),
        "something was written before the refusal"
    );
}
