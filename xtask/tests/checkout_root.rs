//! Paths come from the checkout a command runs in, not the one the binary was built in: two
//! checkouts sharing one `CARGO_TARGET_DIR` must not read or write each other's files.

use std::process::Command;

#[test]
fn a_binary_run_in_another_checkout_uses_that_checkout() {
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("experiments")).unwrap();
    std::fs::write(other.path().join("experiments/scales.toml"), "").unwrap();
    std::fs::write(other.path().join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::create_dir_all(other.path().join("sub/dir")).unwrap();
    // The bundled data is looked for in the other checkout (where it is missing), from any
    // directory inside it.
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["data", "stats", "ml-latest-small"])
        .current_dir(other.path().join("sub/dir"))
        .env_remove("AGP_BENCH_ROOT")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let root = other.path().canonicalize().unwrap();
    assert!(
        err.contains(&*root.to_string_lossy()) || err.contains(&*other.path().to_string_lossy()),
        "the error names the other checkout: {err}"
    );
    // AGP_BENCH_ROOT wins over the current directory.
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["data", "stats", "ml-latest-small"])
        .current_dir(other.path())
        .env(
            "AGP_BENCH_ROOT",
            env!("CARGO_MANIFEST_DIR").trim_end_matches("/xtask"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
