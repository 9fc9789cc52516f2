//! `cargo xtask compare` and `cargo xtask power` on the committed reports: a paired table on
//! success, one error line and exit 1 on inputs that must not be compared.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(root)
        .output()
        .unwrap()
}

#[test]
fn compare_prints_a_paired_table_and_writes_markdown_and_csv() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = xtask(&[
        "compare",
        "reports/fig3-pbf",
        "reports/table1",
        "--method",
        "AGP w/ PBF",
        "--method",
        "AGP",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .find(|l| l.contains("A: AGP w/ PBF"))
        .expect("a row for the pair");
    assert!(row.contains("B: AGP") && row.contains(" 18 "), "{stdout}");
    let md = std::fs::read_to_string(out_dir.path().join("compare.md")).unwrap();
    assert!(md.contains("| p (Holm) |"), "{md}");
    let csv = std::fs::read_to_string(out_dir.path().join("compare.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");

    let out = xtask(&[
        "compare",
        "reports/table1",
        "--method",
        "AGP",
        "--method",
        "Base",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(
        stdout.lines().filter(|l| l.contains("A: AGP ")).count(),
        2,
        "{stdout}"
    );
}

#[test]
fn compare_refuses_other_candidate_lists_and_names_the_difference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join("reports/table1/cells.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["run"]["backbones"][1]["epochs"] = 7.into();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cells.json"), v.to_string()).unwrap();
    let out = xtask(&["compare", "reports/table1", dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing to compare")
            && err.contains("ml-latest-small/sasrec")
            && err.contains("epochs 60 vs 7"),
        "{err}"
    );
}

#[test]
fn power_gives_users_needed_per_cell() {
    let out = xtask(&[
        "power",
        "reports/table1",
        "--delta",
        "0.02",
        "--cell",
        "ml-latest-small/lightgcn/replay/AGP",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout.lines().find(|l| l.contains("/AGP")).unwrap();
    assert!(row.contains("1814") && row.contains("0.2129"), "{stdout}");
}
