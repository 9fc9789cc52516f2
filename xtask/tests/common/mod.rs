//! What the end-to-end tests of `reproduce` share: running it to the end and reading a
//! report back.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `c`, which must succeed; returns what it wrote to stderr.
pub fn run_to_end(mut c: Command) -> String {
    let out = c.output().expect("starting xtask");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "reproduce failed:\n{err}");
    err
}

/// The files of the `rehearsal` report under `dir`, by name, sorted.
pub fn report_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v: Vec<(PathBuf, String)> = std::fs::read_dir(dir.join("rehearsal"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            (PathBuf::from(p.file_name().unwrap()), text)
        })
        .collect();
    v.sort();
    v
}
