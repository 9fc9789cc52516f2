//! `cargo xtask compare` and `cargo xtask power`: the command lines of
//! [`agp_harness::compare`].

use agp_harness::compare;
use agp_harness::report::Selection;
use anyhow::Context;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Report folders (holding cells.json) or cells.json files, lettered A, B, C… in this
    /// order; A's method is compared with each later one's.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// A method label (repeatable): none compares every method the reports share; one, that
    /// method in each; one per report, A's with B's (C's…); with a single report, two or more
    /// of its methods, the first against the others.
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Which epoch of a trained method to compare.
    #[arg(long, default_value = "best-valid", value_parser = ["best-valid", "best-test", "last"])]
    pub selection: String,
    /// Also write compare.md and compare.csv into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let runs = a
        .reports
        .iter()
        .map(|p| compare::load(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let c = compare::compare(&runs, &a.methods, a.selection.parse::<Selection>()?)?;
    print!("{}", c.terminal(std::io::stdout().is_terminal()));
    if let Some(dir) = a.out {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in [("compare.md", c.markdown()), ("compare.csv", c.csv())] {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!("wrote compare.md and compare.csv to {}", dir.display());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct PowerArgs {
    /// A report folder (holding cells.json) or a cells.json file.
    pub report: PathBuf,
    /// The NDCG@10 difference to Base to detect.
    #[arg(long, default_value_t = 0.02)]
    pub delta: f64,
    /// Only this cell: `dataset/backbone/llm/method` as in the report, or a method label.
    #[arg(long)]
    pub cell: Option<String>,
    /// Which epoch of a trained method to use.
    #[arg(long, default_value = "best-valid", value_parser = ["best-valid", "best-test", "last"])]
    pub selection: String,
    /// Check each estimate by simulating studies of that many users.
    #[arg(long)]
    pub simulate: bool,
}

pub fn power(a: PowerArgs) -> anyhow::Result<()> {
    let run = compare::load(&a.report)?;
    let rows = compare::power(
        &run,
        a.delta,
        a.cell.as_deref(),
        a.selection.parse::<Selection>()?,
        a.simulate,
    )?;
    print!(
        "{}",
        compare::power_table(&rows, a.delta, std::io::stdout().is_terminal())
    );
    Ok(())
}
