//! `cargo xtask data ...`: prepare, describe and fetch datasets.

use agp_datasets::synth::SynthSpec;
use agp_datasets::{
    Cache, CacheOutcome, DatasetSource, ItemTextStyle, PrepareOptions, prepare_cached,
};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum DataCmd {
    /// Read the raw files, preprocess (k-core, leave-one-out) and cache the split.
    Prepare {
        #[command(flatten)]
        src: SourceArgs,
        /// Also write the split here: dataset.json, stats.json and RecBole atomic files under
        /// recbole/<name>/ (pre-split .train/.valid/.test.inter for RecBole's benchmark_filename).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Raw and processed statistics (users, items, interactions, density, ...).
    Stats {
        #[command(flatten)]
        src: SourceArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download the official raw files (resumable, sha256-checked) into .cache/raw/<dataset>.
    Fetch {
        /// ml-latest-small, ml-100k, ml-1m, amazon-movies-tv, goodreads (yelp needs a browser).
        dataset: String,
        /// Amazon release (2014, 2014-ratings, 2018, 2018-5core, 2023) or Goodreads genre.
        #[arg(long)]
        variant: Option<String>,
        /// Destination directory [default: .cache/raw/<dataset>].
        #[arg(long)]
        dest: Option<PathBuf>,
        /// Replace the scheme and host of every URL (a mirror; keeps the paths).
        #[arg(long)]
        mirror: Option<String>,
        /// Pin a file's sha256: FILE=HEX (repeatable).
        #[arg(long, value_parser = parse_pin)]
        sha256: Vec<(String, String)>,
    },
    /// Write a synthetic dataset sized like the paper's (after 5-core) as RecBole atomic files
    /// DIR/<name>/<name>.inter and .item, for rehearsing the harness without the real data.
    Synth {
        /// amz (95K users × 43K items), yelp (65K × 33K), gr (13K × 25K) or tiny (2K × 1.5K).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(SynthSpec::PRESETS))]
        preset: String,
        /// Override the preset's user count.
        #[arg(long)]
        users: Option<usize>,
        /// Override the preset's item count.
        #[arg(long)]
        items: Option<usize>,
        /// Interactions to write [default: the preset's, scaled with --users so the mean
        /// history length stays the preset's].
        #[arg(long)]
        interactions: Option<usize>,
        /// Zipf exponent of item popularity.
        #[arg(long)]
        popularity_exponent: Option<f64>,
        /// Zipf–Mandelbrot offset of item popularity (flattens the head).
        #[arg(long)]
        popularity_offset: Option<f64>,
        /// Power-law exponent of history lengths (> 1).
        #[arg(long)]
        activity_exponent: Option<f64>,
        /// Random seed [default: the preset's].
        #[arg(long)]
        seed: Option<u64>,
        /// Parent directory; the files go to DIR/<name>/, the layout `recbole:DIR/<name>` reads.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_pin(s: &str) -> Result<(String, String), String> {
    let (f, h) = s.split_once('=').ok_or("expected FILE=HEX")?;
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{h}` is not a 64-digit hex sha256"));
    }
    Ok((f.to_owned(), h.to_ascii_lowercase()))
}

#[derive(clap::Args)]
pub struct SourceArgs {
    /// ml-latest-small (bundled), ml-100k, ml-1m, amazon-movies-tv, yelp, goodreads, recbole:<dir>
    #[arg(default_value = "ml-latest-small")]
    dataset: String,
    /// Directory with the raw files as downloaded [default: the bundled fixture for
    /// ml-latest-small, .cache/raw/<dataset> otherwise].
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Iterative k-core threshold (users need max(k, 3) interactions).
    #[arg(long, default_value_t = 5)]
    k_core: u32,
    /// Item text shown to the LLM.
    #[arg(long, value_enum, default_value_t = TextStyle::Title)]
    item_text: TextStyle,
    /// Keep only ratings >= this value (default: every rating is an interaction).
    #[arg(long)]
    min_rating: Option<f32>,
    /// Cache directory for prepared splits.
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TextStyle {
    Title,
    Rich,
}

impl SourceArgs {
    fn resolve(&self) -> anyhow::Result<(DatasetSource, PrepareOptions, Cache)> {
        let ws = agp_harness::Workspace::discover();
        let source = match &self.raw {
            Some(dir) => DatasetSource::parse(&self.dataset, Some(dir.clone()))?,
            None => ws.dataset_source(&self.dataset)?,
        };
        let opts = PrepareOptions {
            k_core: self.k_core,
            item_text: match self.item_text {
                TextStyle::Title => ItemTextStyle::Title,
                TextStyle::Rich => ItemTextStyle::Rich,
            },
            min_rating: self.min_rating,
        };
        let cache = self
            .cache
            .clone()
            .map_or_else(|| ws.datasets_cache(), Cache::new);
        Ok((source, opts, cache))
    }
}

pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::Prepare { src, out } => {
            let (source, opts, cache) = src.resolve()?;
            let t = std::time::Instant::now();
            let (ds, stats, outcome) = prepare_cached(&source, &opts, &cache)?;
            let how = match outcome {
                CacheOutcome::Hit => "from cache",
                CacheOutcome::Miss => "prepared",
            };
            eprintln!(
                "{}: {} users, {} items, {} interactions ({how} in {:.2}s, checksum {})",
                ds.name,
                ds.n_users(),
                ds.n_items(),
                ds.n_interactions(),
                t.elapsed().as_secs_f64(),
                &ds.checksum[..16]
            );
            if let Some(out) = out {
                agp_datasets::formats::recbole::write_split(&ds, &stats, &out)?;
                eprintln!("wrote {}", out.display());
            }
            Ok(())
        }
        DataCmd::Fetch {
            dataset,
            variant,
            dest,
            mirror,
            sha256,
        } => {
            use agp_datasets::fetch::{Bar, fetch_files_blocking, manifest, with_mirror};
            let ws = agp_harness::Workspace::discover();
            let source = ws.dataset_source(&dataset)?;
            let mut files = manifest(&source.kind, variant.as_deref())?;
            if let Some(m) = mirror {
                files = with_mirror(files, &m);
            }
            for (file, hash) in sha256 {
                let f = files
                    .iter_mut()
                    .find(|f| f.file == file)
                    .with_context(|| format!("--sha256 {file}: not one of this dataset's files"))?;
                f.sha256 = Some(hash);
            }
            // Never the bundled fixture directory, even for ml-latest-small: the committed copy
            // is a specific release and must not be overwritten by whatever GroupLens serves now.
            let dest = dest.unwrap_or_else(|| ws.raw_cache().join(&source.name));
            let got = fetch_files_blocking(&files, &dest, &mut Bar::default())?;
            for p in got {
                eprintln!("ok {}", p.display());
            }
            Ok(())
        }
        DataCmd::Synth {
            preset,
            users,
            items,
            interactions,
            popularity_exponent,
            popularity_offset,
            activity_exponent,
            seed,
            out,
        } => {
            let base = SynthSpec::preset_with(&preset, users, items, interactions)?;
            let spec = SynthSpec {
                popularity_exponent: popularity_exponent.unwrap_or(base.popularity_exponent),
                popularity_offset: popularity_offset.unwrap_or(base.popularity_offset),
                activity_exponent: activity_exponent.unwrap_or(base.activity_exponent),
                seed: seed.unwrap_or(base.seed),
                ..base
            };
            let dir = out.join(&spec.name);
            let t = std::time::Instant::now();
            let s = agp_datasets::synth::write_recbole(&spec, &dir)?;
            println!("{}", spec.summary(&s));
            eprintln!("written in {:.2}s", t.elapsed().as_secs_f64());
            let source = format!("recbole:{}", dir.display());
            println!("dataset: {source}");
            println!("  cargo xtask data stats {source}");
            Ok(())
        }
        DataCmd::Stats { src, json } => {
            let (source, opts, cache) = src.resolve()?;
            let (_, stats, _) = prepare_cached(&source, &opts, &cache)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!("{stats}");
            }
            Ok(())
        }
    }
}
