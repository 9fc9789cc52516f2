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
        let source = DatasetSource::parse(&self.dataset, self.raw.clone())?;
        let opts = PrepareOptions {
            k_core: self.k_core,
            item_text: match self.item_text {
                TextStyle::Title => ItemTextStyle::Title,
                TextStyle::Rich => ItemTextStyle::Rich,
            },
            min_rating: self.min_rating,
        };
        let cache = self.cache.clone().map_or_else(Cache::workspace, Cache::new);
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
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                let write = |name: &str, bytes: Vec<u8>| {
                    let p = out.join(name);
                    std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
                };
                write("dataset.json", serde_json::to_vec(&ds)?)?;
                write("stats.json", serde_json::to_vec_pretty(&stats)?)?;
                agp_datasets::formats::recbole::write_recbole(
                    &ds,
                    &out.join("recbole").join(&ds.name),
                )?;
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
            let source = DatasetSource::parse(&dataset, None)?;
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
            let dest = dest.unwrap_or_else(|| {
                agp_datasets::workspace_root()
                    .join(".cache/raw")
                    .join(&source.name)
            });
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
            let base = SynthSpec::preset(&preset)?;
            let scaled = users.map(|u| {
                (base.interactions as f64 * u as f64 / base.users as f64).round() as usize
            });
            let spec = SynthSpec {
                users: users.unwrap_or(base.users),
                items: items.unwrap_or(base.items),
                interactions: interactions.or(scaled).unwrap_or(base.interactions),
                popularity_exponent: popularity_exponent.unwrap_or(base.popularity_exponent),
                popularity_offset: popularity_offset.unwrap_or(base.popularity_offset),
                activity_exponent: activity_exponent.unwrap_or(base.activity_exponent),
                seed: seed.unwrap_or(base.seed),
                ..base
            };
            let dir = out.join(&spec.name);
            let t = std::time::Instant::now();
            let s = agp_datasets::synth::write_recbole(&spec, &dir)?;
            println!(
                "{}: {} users, {} items, {} interactions (seed {}, written in {:.2}s)",
                s.name,
                s.users,
                s.items,
                s.interactions,
                spec.seed,
                t.elapsed().as_secs_f64()
            );
            println!(
                "history length min {} / mean {:.1} / max {}; users per item min {} / max {}",
                s.min_history, s.mean_history, s.max_history, s.min_item_users, s.max_item_users
            );
            println!(
                "popularity: top 1% of items hold {:.1}% of interactions, Gini {:.3} \
                 (Zipf α {} offset {}, {} interactions moved to reach {} users per item)",
                100.0 * s.top1_share,
                s.gini,
                spec.popularity_exponent,
                spec.popularity_offset,
                s.top_up_swaps,
                spec.min_item_users
            );
            for f in &s.files {
                println!("wrote {}", f.display());
            }
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
                println!(
                    "{} (k-core {}, checksum {})",
                    stats.name,
                    stats.k_core,
                    &stats.checksum[..16]
                );
                println!(
                    "{:<10} {:>9} {:>9} {:>13} {:>7} {:>9} {:>9}",
                    "", "users", "items", "interactions", "titled", "mean len", "density"
                );
                for (label, c) in [("raw", &stats.raw), ("processed", &stats.processed)] {
                    println!(
                        "{:<10} {:>9} {:>9} {:>13} {:>6.1}% {:>9.1} {:>9.5}",
                        label,
                        c.users,
                        c.items,
                        c.interactions,
                        100.0 * c.titled_items_fraction,
                        c.mean_history_length,
                        c.density
                    );
                }
                println!(
                    "duplicates removed {}, k-core removed {} in {} passes",
                    stats.duplicates_removed, stats.kcore_removed, stats.kcore_passes
                );
                for (why, n) in &stats.skipped {
                    println!("skipped {why}: {n}");
                }
            }
            Ok(())
        }
    }
}
