//! Synthetic datasets at the paper's scale, written as RecBole atomic files.
//!
//! The paper's AMZ/YELP/GR splits were never released, so the harness (loading, backbones,
//! candidate export, reranking) is rehearsed on data of the same size and shape instead:
//! power-law user activity, Zipf item popularity, plausible distinct titles with a brand/city/
//! author field and categories, strictly increasing timestamps per user.
//!
//! Every user has at least `min_history` distinct items and every item at least
//! `min_item_users` distinct users *by construction*, so preprocessing with the same k-core
//! keeps every row: the processed counts equal the generated ones and a preset's figures are
//! the post-filter figures.
//!
//! The same spec (seed included) writes the same bytes on any machine: all randomness comes
//! from ChaCha8 streams through the helpers below rather than `rand`'s distributions, whose
//! outputs may change between releases.

use crate::DataError;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What the items look like: picks the title pattern and the item-file fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    /// `title`, `brand` (studio), `categories` ("Movies & TV > Drama"), like Amazon Movies & TV.
    Movies,
    /// `name`, `city`, `categories` ("Restaurants, Mexican"), like Yelp.
    Businesses,
    /// `title`, `author`, `genres` ("fantasy, young-adult"), like Goodreads.
    Books,
}

/// Size and shape of a synthetic dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSpec {
    /// Dataset name: the file prefix, and the directory name `recbole:<dir>` expects.
    pub name: String,
    pub domain: Domain,
    pub users: usize,
    pub items: usize,
    /// Interactions written; since nothing is filtered, also the count after k-core.
    pub interactions: usize,
    /// Zipf exponent α over items: the item of popularity rank r is drawn ∝ (r + 1 + q)^-α.
    pub popularity_exponent: f64,
    /// Zipf–Mandelbrot offset q ≥ 0. Pure Zipf (q = 0) steep enough for a realistic long tail
    /// hands the top item a third of all users; an offset flattens only the head.
    pub popularity_offset: f64,
    /// Power-law exponent β (> 1) of history lengths, P(L) ∝ L^-β above `min_history`; the
    /// samples are then scaled to hit `interactions` exactly, which keeps the tail's shape.
    pub activity_exponent: f64,
    /// Shortest history (distinct items per user).
    pub min_history: usize,
    /// Longest history; `None` is a quarter of the items. Caps the power-law tail, which
    /// otherwise hands a few users most of the catalogue.
    pub max_history: Option<usize>,
    /// Fewest distinct users per item (the k of the k-core the data must survive).
    pub min_item_users: usize,
    pub seed: u64,
}

/// What [`write_recbole`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthStats {
    pub name: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub min_history: usize,
    pub mean_history: f64,
    pub max_history: usize,
    pub min_item_users: usize,
    pub max_item_users: usize,
    /// Share of interactions held by the most popular 1% of items (at least one item).
    pub top1_share: f64,
    /// Gini coefficient of item popularity (0 = uniform, → 1 = one item has everything).
    pub gini: f64,
    /// Interactions moved from popular items to items short of `min_item_users`.
    pub top_up_swaps: usize,
    /// `<name>.inter` and `<name>.item`.
    pub files: Vec<PathBuf>,
}

impl SynthSpec {
    /// A preset with the given overrides. Scaling the users alone scales the interactions with
    /// them, so the mean history length stays the preset's.
    pub fn preset_with(
        name: &str,
        users: Option<usize>,
        items: Option<usize>,
        interactions: Option<usize>,
    ) -> Result<Self, DataError> {
        let base = SynthSpec::preset(name)?;
        let scaled = users
            .map(|u| (base.interactions as f64 * u as f64 / base.users as f64).round() as usize);
        Ok(SynthSpec {
            users: users.unwrap_or(base.users),
            items: items.unwrap_or(base.items),
            interactions: interactions.or(scaled).unwrap_or(base.interactions),
            ..base
        })
    }

    /// What was written and its shape, as `cargo xtask data synth` prints it.
    pub fn summary(&self, s: &SynthStats) -> String {
        let mut out = format!(
            "{}: {} users, {} items, {} interactions (seed {})\n\
             history length min {} / mean {:.1} / max {}; users per item min {} / max {}\n\
             popularity: top 1% of items hold {:.1}% of interactions, Gini {:.3} (Zipf α {} \
             offset {}, {} interactions moved to reach {} users per item)",
            s.name,
            s.users,
            s.items,
            s.interactions,
            self.seed,
            s.min_history,
            s.mean_history,
            s.max_history,
            s.min_item_users,
            s.max_item_users,
            100.0 * s.top1_share,
            s.gini,
            self.popularity_exponent,
            self.popularity_offset,
            s.top_up_swaps,
            self.min_item_users
        );
        for f in &s.files {
            out.push_str(&format!("\nwrote {}", f.display()));
        }
        out
    }
}

impl SynthSpec {
    pub const PRESETS: [&'static str; 4] = ["amz", "yelp", "gr", "tiny"];

    /// The paper's datasets after 5-core (users and items from its §3.1 table: 95K × 43K,
    /// 65K × 33K, 13K × 25K; it gives no interaction counts, so those are estimates of about a
    /// million each), and `tiny` (2,000 × 1,500) for tests.
    pub fn preset(name: &str) -> Result<Self, DataError> {
        let base = |name: &str, domain, users, items, interactions, q, beta| SynthSpec {
            name: format!("synth-{name}"),
            domain,
            users,
            items,
            interactions,
            popularity_exponent: 1.0,
            popularity_offset: q,
            activity_exponent: beta,
            min_history: 5,
            max_history: None,
            min_item_users: 5,
            seed: 42,
        };
        // α = 1 with q ≈ 0.1% of the catalogue gives a Gini near 0.7 and a top item held by a
        // few percent of users (a quarter for the denser GR). β is chosen so an unscaled Pareto
        // with minimum 5 already has about the target mean history length (5(β-1)/(β-2)), so
        // scaling to the exact total bends it little.
        use Domain::{Books, Businesses, Movies};
        Ok(match name {
            "amz" => base(name, Movies, 95_000, 43_000, 1_080_000, 50.0, 2.8),
            "yelp" => base(name, Businesses, 65_000, 33_000, 1_000_000, 50.0, 2.5),
            "gr" => base(name, Books, 13_000, 25_000, 1_100_000, 50.0, 2.06),
            "tiny" => base(name, Movies, 2_000, 1_500, 24_000, 2.0, 2.8),
            _ => {
                return Err(DataError::InvalidOption {
                    field: "preset",
                    value: name.to_owned(),
                    allowed: "amz, yelp, gr, tiny",
                });
            }
        })
    }

    /// The history-length cap actually used.
    pub fn history_cap(&self) -> usize {
        self.max_history
            .unwrap_or(self.items / 4)
            .max(self.min_history)
            .min(self.items)
    }

    /// Rejects specs that cannot be generated, naming the offending field.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, value: String, allowed| {
            Err(DataError::InvalidOption {
                field,
                value,
                allowed,
            })
        };
        let name_ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !self.name.starts_with('.');
        if !name_ok {
            return bad(
                "name",
                self.name.clone(),
                "ASCII letters, digits, '-', '_', '.' (it names files)",
            );
        }
        let max_id = u32::MAX as usize - 1;
        if self.users == 0 || self.users > max_id {
            return bad("users", self.users.to_string(), "1..2^32-1");
        }
        if self.items == 0 || self.items > max_id {
            return bad("items", self.items.to_string(), "1..2^32-1");
        }
        if !(self.popularity_exponent.is_finite() && self.popularity_exponent >= 0.0) {
            return bad(
                "popularity_exponent",
                self.popularity_exponent.to_string(),
                "a finite number >= 0",
            );
        }
        if !(self.popularity_offset.is_finite() && self.popularity_offset >= 0.0) {
            return bad(
                "popularity_offset",
                self.popularity_offset.to_string(),
                "a finite number >= 0",
            );
        }
        if !(self.activity_exponent.is_finite() && self.activity_exponent > 1.0) {
            return bad(
                "activity_exponent",
                self.activity_exponent.to_string(),
                "a finite number > 1",
            );
        }
        if self.min_history < 3 || self.min_history > self.items {
            return bad(
                "min_history",
                format!("{} (items {})", self.min_history, self.items),
                "3..=items (a train, a validation and a test item per user)",
            );
        }
        if self.min_item_users == 0 || self.min_item_users > self.users {
            return bad(
                "min_item_users",
                format!("{} (users {})", self.min_item_users, self.users),
                "1..=users",
            );
        }
        let cap = self.history_cap();
        let lo = (self.min_history * self.users).max(self.min_item_users * self.items);
        let hi = cap.saturating_mul(self.users);
        if self.interactions < lo || self.interactions > hi || self.interactions > u32::MAX as usize
        {
            return bad(
                "interactions",
                format!(
                    "{} (needs {lo}..={hi} for {} users × {} items, history {}..={cap}, \
                     {} users per item)",
                    self.interactions,
                    self.users,
                    self.items,
                    self.min_history,
                    self.min_item_users
                ),
                "at least min_history × users and min_item_users × items, \
                 at most max_history × users",
            );
        }
        Ok(())
    }
}

/// Generates `spec` and writes `<dir>/<name>.inter` and `<dir>/<name>.item` (creating `dir`).
/// Read it back with `DatasetSource::parse("recbole:<dir>")` when `dir` is named `<name>`.
pub fn write_recbole(spec: &SynthSpec, dir: &Path) -> Result<SynthStats, DataError> {
    spec.validate()?;
    let g = generate(spec)?;
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let inter = dir.join(format!("{}.inter", spec.name));
    let item = dir.join(format!("{}.item", spec.name));
    write_file(&inter, |w| write_inter(spec, &g, w))?;
    write_file(&item, |w| write_items(spec, w))?;
    Ok(stats(spec, &g, vec![inter, item]))
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), DataError> {
    let f = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    body(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| DataError::io(path, e))
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// Independent streams per phase, so a change to one phase leaves the others' draws alone.
#[derive(Clone, Copy)]
enum Stream {
    Lengths = 1,
    Ranks,
    Sample,
    TopUp,
    Order,
    Text,
}

fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream as u64);
    r
}

/// Uniform in [0, 1).
fn unit(r: &mut ChaCha8Rng) -> f64 {
    (r.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in 0..n (n > 0), exact (Lemire's multiply-and-reject).
fn below(r: &mut ChaCha8Rng, n: usize) -> usize {
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(r.next_u64()) * u128::from(n);
        if m as u64 >= threshold {
            return (m >> 64) as usize;
        }
    }
}

fn shuffle<T>(r: &mut ChaCha8Rng, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        xs.swap(i, below(r, i + 1));
    }
}

/// Vose's alias table: O(1) draws from a fixed discrete distribution.
struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut p: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let (mut small, mut large): (Vec<u32>, Vec<u32>) =
            (0..n as u32).partition(|&i| p[i as usize] < 1.0);
        let mut prob = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s as usize] = p[s as usize];
            alias[s as usize] = l;
            p[l as usize] -= 1.0 - p[s as usize];
            if p[l as usize] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers are 1 up to rounding error: they keep `prob = 1`.
        Self { prob, alias }
    }

    fn sample(&self, r: &mut ChaCha8Rng) -> u32 {
        let i = below(r, self.prob.len());
        if unit(r) < self.prob[i] {
            i as u32
        } else {
            self.alias[i]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generation

/// Users' item sets in popularity-rank space (rank 0 = most popular), as CSR rows.
struct Generated {
    offsets: Vec<usize>,
    ranks: Vec<u32>,
    /// Distinct users per rank.
    degree: Vec<u32>,
    /// Item id of each rank: popularity is scattered over the ids, as in real catalogues.
    item_of_rank: Vec<u32>,
    swaps: usize,
}

impl Generated {
    fn row(&self, u: usize) -> &[u32] {
        &self.ranks[self.offsets[u]..self.offsets[u + 1]]
    }
}

fn generate(spec: &SynthSpec) -> Result<Generated, DataError> {
    let lengths = history_lengths(spec);
    let mut offsets = Vec::with_capacity(spec.users + 1);
    offsets.push(0);
    for &l in &lengths {
        offsets.push(offsets[offsets.len() - 1] + l);
    }

    let weights: Vec<f64> = (0..spec.items)
        .map(|r| (r as f64 + 1.0 + spec.popularity_offset).powf(-spec.popularity_exponent))
        .collect();
    let alias = Alias::new(&weights);
    let mut r = rng(spec.seed, Stream::Sample);
    let mut ranks = vec![0u32; spec.interactions];
    // `owner[rank] == u` marks ranks user u already holds: O(1) duplicate checks, no hashing.
    let mut owner = vec![u32::MAX; spec.items];
    for u in 0..spec.users {
        let row = &mut ranks[offsets[u]..offsets[u + 1]];
        let mut got = 0;
        // Rejection sampling stalls once a user holds most of the popularity mass (long
        // histories, steep α); those users draw the rest without replacement directly.
        if row.len() * 8 <= spec.items {
            let mut misses = 0;
            while got < row.len() && misses < 64 {
                let rank = alias.sample(&mut r);
                if owner[rank as usize] == u as u32 {
                    misses += 1;
                } else {
                    owner[rank as usize] = u as u32;
                    row[got] = rank;
                    got += 1;
                    misses = 0;
                }
            }
        }
        if got < row.len() {
            let rest = weighted_without_replacement(&mut r, &weights, row.len() - got, |rank| {
                owner[rank] == u as u32
            });
            for rank in rest {
                owner[rank as usize] = u as u32;
                row[got] = rank;
                got += 1;
            }
        }
    }
    drop(owner);

    let mut degree = vec![0u32; spec.items];
    for &rank in &ranks {
        degree[rank as usize] += 1;
    }
    let mut g = Generated {
        offsets,
        ranks,
        degree,
        item_of_rank: (0..spec.items as u32).collect(),
        swaps: 0,
    };
    top_up(spec, &mut g)?;
    shuffle(&mut rng(spec.seed, Stream::Ranks), &mut g.item_of_rank);
    Ok(g)
}

/// `k` ranks drawn without replacement ∝ `weights`, skipping `taken` ones (Efraimidis–Spirakis:
/// the k largest keys u^(1/w)). Returned sorted, so the result is a set that does not depend on
/// how the selection algorithm orders it.
fn weighted_without_replacement(
    r: &mut ChaCha8Rng,
    weights: &[f64],
    k: usize,
    taken: impl Fn(usize) -> bool,
) -> Vec<u32> {
    let mut keys: Vec<(f64, u32)> = (0..weights.len())
        .filter(|&i| !taken(i))
        .map(|i| ((1.0 - unit(r)).ln() / weights[i], i as u32))
        .collect();
    let desc = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k < keys.len() {
        keys.select_nth_unstable_by(k, desc);
        keys.truncate(k);
    }
    let mut out: Vec<u32> = keys.into_iter().map(|(_, i)| i).collect();
    out.sort_unstable();
    out
}

/// Per-user history lengths: `min_history` plus a power-law extra, scaled so the total is
/// exactly `interactions` and no user exceeds the cap.
fn history_lengths(spec: &SynthSpec) -> Vec<usize> {
    let (m, cap, n) = (spec.min_history, spec.history_cap(), spec.users);
    let target = spec.interactions - m * n;
    let room = cap - m;
    let (extra, room_f) = (target as f64, room as f64);
    let mut r = rng(spec.seed, Stream::Lengths);
    // Pareto(1, β-1) minus its minimum: many users at or near the floor, a heavy tail. The tiny
    // offset keeps every weight positive so water-filling below can always reach the total.
    let inv = -1.0 / (spec.activity_exponent - 1.0);
    let w: Vec<f64> = (0..n)
        .map(|_| (1.0 - unit(&mut r)).powf(inv) - 1.0 + 1e-9)
        .collect();
    // Water-filling: the scale s with Σ min(room, s·w) = extra, by bisection (monotone in s).
    let fill = |s: f64| w.iter().map(|&x| (s * x).min(room_f)).sum::<f64>();
    let min_w = w.iter().copied().fold(f64::INFINITY, f64::min);
    let (mut lo, mut hi) = (0.0, room_f / min_w);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if fill(mid) < extra {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let vals: Vec<f64> = w.iter().map(|&x| (hi * x).min(room_f)).collect();
    let mut e: Vec<usize> = vals.iter().map(|&v| v as usize).collect();
    // Largest remainders first; the floors miss the total by less than one per user, and by
    // rounding error the other way, so a few passes over this order settle it.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| (vals[b] - vals[b].floor()).total_cmp(&(vals[a] - vals[a].floor())));
    let mut total: usize = e.iter().sum();
    while total < target {
        for &u in &order {
            if total == target {
                break;
            }
            if e[u] < room {
                e[u] += 1;
                total += 1;
            }
        }
    }
    while total > target {
        for &u in order.iter().rev() {
            if total == target {
                break;
            }
            if e[u] > 0 {
                e[u] -= 1;
                total -= 1;
            }
        }
    }
    e.into_iter().map(|x| x + m).collect()
}

/// Brings every item up to `min_item_users` by moving interactions to it from items with more
/// than enough. A random slot of a random user is taken, so items lose interactions roughly in
/// proportion to their popularity and the head keeps its shape; history lengths are unchanged.
fn top_up(spec: &SynthSpec, g: &mut Generated) -> Result<(), DataError> {
    let k = spec.min_item_users as u32;
    let deficit: u64 = g
        .degree
        .iter()
        .map(|&d| u64::from(k.saturating_sub(d)))
        .sum();
    // Each try succeeds with a fair probability whenever the spec validated; the bound only
    // turns a pathological spec into an error instead of an endless loop.
    let mut budget = deficit.saturating_mul(10_000).max(1_000_000);
    let mut r = rng(spec.seed, Stream::TopUp);
    for j in 0..spec.items {
        while g.degree[j] < k {
            if budget == 0 {
                return Err(DataError::InvalidOption {
                    field: "interactions",
                    value: format!(
                        "{} (could not give every item {k} users)",
                        spec.interactions
                    ),
                    allowed: "more interactions per item, or a smaller popularity_exponent",
                });
            }
            budget -= 1;
            let u = below(&mut r, spec.users);
            let (start, end) = (g.offsets[u], g.offsets[u + 1]);
            let slot = start + below(&mut r, end - start);
            let donor = g.ranks[slot] as usize;
            if g.degree[donor] <= k || g.ranks[start..end].contains(&(j as u32)) {
                continue;
            }
            g.degree[donor] -= 1;
            g.degree[j] += 1;
            g.ranks[slot] = j as u32;
            g.swaps += 1;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Output

/// Amazon-like rating mix, cumulative over 1..=5 stars (most reviews are 5 stars).
const RATING_CDF: [f64; 5] = [0.06, 0.12, 0.23, 0.45, 1.0];
/// 2005-01-01 and a 13-year window for the first interaction, up to 4 years of activity.
const START: i64 = 1_104_537_600;
const START_WINDOW: usize = 13 * 365 * 86_400;
const DAY: usize = 86_400;

fn write_inter(spec: &SynthSpec, g: &Generated, w: &mut impl Write) -> std::io::Result<()> {
    let mut r = rng(spec.seed, Stream::Order);
    w.write_all(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n")?;
    let mut row = Vec::new();
    for u in 0..spec.users {
        row.clear();
        row.extend_from_slice(g.row(u));
        shuffle(&mut r, &mut row);
        let mut ts = START + below(&mut r, START_WINDOW) as i64;
        let span = 30 * DAY + below(&mut r, 4 * 365 * DAY);
        // Gaps of at least one second: strictly increasing, so leave-one-out never meets a tie.
        let max_gap = (2 * span / row.len()).max(1);
        for &rank in &row {
            ts += 1 + below(&mut r, max_gap) as i64;
            let x = unit(&mut r);
            let stars = RATING_CDF.iter().position(|&c| x < c).unwrap_or(4) + 1;
            let item = g.item_of_rank[rank as usize];
            writeln!(w, "u{u}\ti{item}\t{stars}\t{ts}")?;
        }
    }
    Ok(())
}

fn write_items(spec: &SynthSpec, w: &mut impl Write) -> std::io::Result<()> {
    let mut r = rng(spec.seed, Stream::Text);
    let header: &[u8] = match spec.domain {
        Domain::Movies => {
            b"item_id:token\ttitle:token_seq\tbrand:token_seq\tcategories:token_seq\n"
        }
        Domain::Businesses => {
            b"item_id:token\tname:token_seq\tcity:token_seq\tcategories:token_seq\n"
        }
        Domain::Books => b"item_id:token\ttitle:token_seq\tauthor:token_seq\tgenres:token_seq\n",
    };
    w.write_all(header)?;
    let titles = Titles::new(spec.domain, &mut r);
    let pick = |r: &mut ChaCha8Rng, xs: &'static [&'static str]| xs[below(r, xs.len())];
    for i in 0..spec.items {
        let title = titles.get(i);
        let (lead, category) = match spec.domain {
            Domain::Movies => (
                pick(&mut r, words::STUDIOS).to_owned(),
                format!("Movies & TV > {}", pick(&mut r, words::MOVIE_GENRES)),
            ),
            Domain::Businesses => {
                let city = pick(&mut r, words::CITIES).to_owned();
                let (_, cat) = words::KINDS[titles.kind_of(i)];
                (city, cat.to_owned())
            }
            Domain::Books => {
                let author = format!(
                    "{} {}",
                    pick(&mut r, words::FIRST_NAMES),
                    pick(&mut r, words::SURNAMES)
                );
                let a = below(&mut r, words::BOOK_GENRES.len());
                let b = (a + 1 + below(&mut r, words::BOOK_GENRES.len() - 1))
                    % words::BOOK_GENRES.len();
                let genres = format!("{}, {}", words::BOOK_GENRES[a], words::BOOK_GENRES[b]);
                (author, genres)
            }
        };
        writeln!(w, "i{i}\t{title}\t{lead}\t{category}")?;
    }
    Ok(())
}

/// Distinct titles: item i gets combination `(a·i + b) mod N` of three word slots, a bijection
/// on 0..N because gcd(a, N) = 1, so titles repeat only past N (then they get a volume number).
struct Titles {
    domain: Domain,
    a: u64,
    b: u64,
    radix: [usize; 3],
}

impl Titles {
    fn new(domain: Domain, r: &mut ChaCha8Rng) -> Self {
        let radix = match domain {
            Domain::Movies => [words::ADJECTIVES.len(), words::NOUNS.len(), YEARS],
            Domain::Businesses => [
                words::FIRST_NAMES.len(),
                words::KINDS.len(),
                words::STREETS.len(),
            ],
            Domain::Books => [
                words::ADJECTIVES.len(),
                words::NOUNS.len(),
                words::PLACES.len(),
            ],
        };
        let n = radix.iter().product::<usize>() as u64;
        let mut a = 1 + below(r, n as usize - 1) as u64;
        while gcd(a, n) != 1 {
            a = a % (n - 1) + 1;
        }
        let b = below(r, n as usize) as u64;
        Self {
            domain,
            a,
            b,
            radix,
        }
    }

    fn size(&self) -> usize {
        self.radix.iter().product()
    }

    fn digits(&self, i: usize) -> [usize; 3] {
        let n = self.size() as u64;
        let mut j = ((u128::from(self.a) * u128::from(i as u64 % n) + u128::from(self.b))
            % u128::from(n)) as usize;
        let mut d = [0; 3];
        for (slot, &base) in d.iter_mut().zip(&self.radix) {
            *slot = j % base;
            j /= base;
        }
        d
    }

    fn kind_of(&self, i: usize) -> usize {
        self.digits(i)[1]
    }

    fn get(&self, i: usize) -> String {
        let [x, y, z] = self.digits(i);
        let mut t = match self.domain {
            Domain::Movies => format!(
                "The {} {} ({})",
                words::ADJECTIVES[x],
                words::NOUNS[y],
                FIRST_YEAR + z
            ),
            Domain::Businesses => format!(
                "{}'s {} on {}",
                words::FIRST_NAMES[x],
                words::KINDS[y].0,
                words::STREETS[z]
            ),
            Domain::Books => format!(
                "The {} {} of {}",
                words::ADJECTIVES[x],
                words::NOUNS[y],
                words::PLACES[z]
            ),
        };
        let volume = i / self.size();
        if volume > 0 {
            t.push_str(&format!(", Vol. {}", volume + 1));
        }
        t
    }
}

const FIRST_YEAR: usize = 1950;
const YEARS: usize = 72;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn stats(spec: &SynthSpec, g: &Generated, files: Vec<PathBuf>) -> SynthStats {
    let lens = g.offsets.windows(2).map(|w| w[1] - w[0]);
    let mut deg: Vec<u64> = g.degree.iter().map(|&d| u64::from(d)).collect();
    deg.sort_unstable();
    let total: u64 = deg.iter().sum();
    let top = spec.items.div_ceil(100);
    let top_sum: u64 = deg[spec.items - top..].iter().sum();
    // Gini over ascending degrees: (2 Σ i·x_i) / (n Σ x) − (n + 1) / n, i from 1.
    let n = deg.len() as f64;
    let weighted: f64 = deg
        .iter()
        .enumerate()
        .map(|(i, &x)| (i + 1) as f64 * x as f64)
        .sum();
    SynthStats {
        name: spec.name.clone(),
        users: spec.users,
        items: spec.items,
        interactions: g.ranks.len(),
        min_history: lens.clone().min().unwrap_or(0),
        mean_history: g.ranks.len() as f64 / spec.users as f64,
        max_history: lens.max().unwrap_or(0),
        min_item_users: deg[0] as usize,
        max_item_users: deg[deg.len() - 1] as usize,
        top1_share: top_sum as f64 / total as f64,
        gini: 2.0 * weighted / (n * total as f64) - (n + 1.0) / n,
        top_up_swaps: g.swaps,
        files,
    }
}

/// Word lists for titles and metadata. Entries within a list must be distinct: titles are
/// distinct only because each combination of list positions is used once.
#[rustfmt::skip]
mod words {
    pub const ADJECTIVES: &[&str] = &[
        "Silent", "Hidden", "Crimson", "Golden", "Broken", "Distant", "Forgotten", "Burning",
        "Frozen", "Wild", "Lonely", "Secret", "Scarlet", "Hollow", "Endless", "Shattered", "Velvet",
        "Iron", "Silver", "Quiet", "Restless", "Bitter", "Savage", "Gentle", "Wicked", "Lost",
        "Final", "Electric", "Painted", "Dark", "Bright", "Stolen", "Sleeping", "Wandering",
        "Fallen", "Sacred", "Haunted", "Emerald", "Copper", "Northern", "Southern", "Little",
        "Last", "Eternal", "Invisible", "Radiant", "Perfect", "Dangerous", "Blue", "Black", "White",
        "Red", "Ancient", "Glass", "Paper", "Midnight", "Morning", "Winter", "Summer", "Hungry",
        "Violent", "Tender", "Crooked", "Reckless",
    ];
    pub const NOUNS: &[&str] = &[
        "Harbor", "River", "Garden", "Empire", "Kingdom", "Shadow", "Mirror", "Storm", "Horizon",
        "Valley", "Island", "Frontier", "Promise", "Journey", "Legacy", "Witness", "Stranger",
        "Soldier", "Daughter", "Highway", "Letter", "Lantern", "Voyage", "Orchard", "Mountain",
        "Tide", "Desert", "Forest", "City", "Station", "Bridge", "Castle", "Ocean", "Covenant",
        "Signal", "Circle", "Crown", "Code", "Game", "Heart", "Hunter", "Machine", "Moon", "Night",
        "Road", "Season", "Sky", "Song", "Star", "Town", "Truth", "Village", "Wave", "Window",
        "Wolf", "Dream", "Flame", "Key", "Lake", "Border", "Archive", "Compass", "Feather",
        "Engine",
    ];
    pub const PLACES: &[&str] = &[
        "Ashford", "Blackwater", "Brightwood", "Cedar Hollow", "Dunmore", "Eastwick", "Fairhaven",
        "Glenrock", "Harrowgate", "Ironvale", "Kingsbridge", "Larkspur", "Millbrook", "Northcliff",
        "Oakridge", "Pinecrest", "Ravenholm", "Saltmarsh", "Thornbury", "Umberlee", "Valemont",
        "Westmere", "Wolfden", "Yarrow", "Amberfield", "Briarwood", "Coldwater", "Deepdale",
        "Elmstead", "Foxhollow", "Greystone", "Highgarden", "Ivybridge", "Juniper Bay",
        "Kestrel Point", "Lindenfeld", "Moorcastle", "Nettlebed", "Oldcastle", "Pemberly",
        "Queensport", "Rosewood", "Stormhaven", "Tidewater", "Underhill", "Vireo Falls", "Whitby",
        "Ardmore", "Bellhaven", "Crowhurst", "Dovecote", "Everdeen", "Falkirk", "Gallowmere",
        "Hawthorne", "Inverness", "Jarrow", "Kilkenny", "Lochmere", "Marrowby", "Northwind",
        "Otterburn", "Penrith", "Redwater",
    ];
    pub const FIRST_NAMES: &[&str] = &[
        "Luna", "Rosa", "Marco", "Elena", "Sam", "Nina", "Theo", "Maya", "Omar", "Iris", "Leo",
        "Ava", "Hugo", "Ines", "Kai", "Lola", "Milo", "Nora", "Oscar", "Pia", "Rafael", "Sofia",
        "Tariq", "Uma", "Victor", "Wren", "Yusuf", "Zoe", "Anton", "Bea", "Carlos", "Dara", "Emil",
        "Frida", "Gus", "Hana", "Ivan", "June", "Kofi", "Lena", "Mateo", "Noor", "Otto", "Priya",
        "Quinn", "Ruth", "Sven", "Tess", "Ugo", "Vera", "Wade", "Xena", "Yara", "Zane", "Abe",
        "Bianca", "Cyrus", "Delia", "Eli", "Fern", "Gio", "Hazel", "Ike", "Jada",
    ];
    pub const SURNAMES: &[&str] = &[
        "Abbott", "Barrow", "Castellano", "Delacroix", "Ellison", "Fairbanks", "Galloway",
        "Hargrove", "Ibarra", "Jennings", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor",
        "Pembroke", "Quintero", "Rasmussen", "Sorensen", "Thackeray", "Underwood", "Valdez",
        "Whitaker", "Xu", "Yamamoto", "Zielinski", "Ashworth", "Blackwood", "Carver", "Donnelly",
        "Everett", "Fitzgerald",
    ];
    pub const STREETS: &[&str] = &[
        "Maple Street", "Oak Avenue", "Main Street", "Elm Street", "Pine Road", "Cedar Lane",
        "Market Street", "Broadway", "Church Street", "Park Avenue", "Lake Drive", "Hill Road",
        "River Road", "Mill Street", "Union Street", "Spring Street", "Walnut Street",
        "Chestnut Street", "High Street", "Bridge Street", "Water Street", "Front Street",
        "Grand Avenue", "Washington Street", "Lincoln Avenue", "Jefferson Street",
        "Franklin Street", "Madison Avenue", "Sunset Boulevard", "Ocean Drive", "Canal Street",
        "Court Street", "Harbor Road", "Garden Street", "Vine Street", "Magnolia Avenue",
        "Willow Lane", "Birch Street", "Poplar Avenue", "Railroad Avenue", "College Avenue",
        "School Street", "Center Street", "Prospect Avenue", "Highland Avenue", "Forest Avenue",
        "Meadow Lane", "Orchard Road", "Valley Road", "Summit Avenue", "Liberty Street",
        "Commerce Street", "King Street", "Queen Street", "Dock Street", "Ferry Street",
        "Pearl Street", "Cherry Street", "Locust Street", "Laurel Avenue", "Bay Street",
        "Fulton Street", "Hudson Street", "Elmwood Avenue",
    ];
    /// (kind in the name, Yelp-style categories).
    pub const KINDS: &[(&str, &str)] = &[
        ("Taqueria", "Restaurants, Mexican"),
        ("Bistro", "Restaurants, French"),
        ("Pizzeria", "Restaurants, Pizza"),
        ("Bakery", "Food, Bakeries"),
        ("Coffee House", "Food, Coffee & Tea"),
        ("Noodle Bar", "Restaurants, Noodles"),
        ("Sushi Bar", "Restaurants, Japanese, Sushi Bars"),
        ("Auto Repair", "Automotive, Auto Repair"),
        ("Barbershop", "Beauty & Spas, Barbers"),
        ("Nail Salon", "Beauty & Spas, Nail Salons"),
        ("Dental Care", "Health & Medical, Dentists"),
        ("Pet Grooming", "Pets, Pet Groomers"),
        ("Brewery", "Food, Breweries"),
        ("Wine Bar", "Nightlife, Bars, Wine Bars"),
        ("Steakhouse", "Restaurants, Steakhouses"),
        ("Diner", "Restaurants, Diners"),
        ("Grill", "Restaurants, American (New)"),
        ("Deli", "Restaurants, Delis, Sandwiches"),
        ("Thai Kitchen", "Restaurants, Thai"),
        ("Curry House", "Restaurants, Indian"),
        ("Ramen Shop", "Restaurants, Japanese, Ramen"),
        ("Taproom", "Nightlife, Bars, Beer Bar"),
        ("Yoga Studio", "Active Life, Fitness & Instruction, Yoga"),
        ("Gym", "Active Life, Gyms"),
        ("Florist", "Shopping, Florists"),
        ("Bookshop", "Shopping, Bookstores"),
        ("Hardware", "Shopping, Hardware Stores"),
        ("Dry Cleaning", "Local Services, Dry Cleaning"),
        ("Bagel Shop", "Food, Bagels"),
        ("Donut Shop", "Food, Donuts"),
        ("Ice Cream", "Food, Ice Cream & Frozen Yogurt"),
        ("Juice Bar", "Food, Juice Bars & Smoothies"),
        ("Smokehouse", "Restaurants, Barbeque"),
        ("Oyster Bar", "Restaurants, Seafood"),
        ("Tapas Bar", "Restaurants, Tapas Bars, Spanish"),
        ("Dim Sum", "Restaurants, Chinese, Dim Sum"),
        ("Pho House", "Restaurants, Vietnamese"),
        ("Cantina", "Restaurants, Mexican, Bars"),
        ("Trattoria", "Restaurants, Italian"),
        ("Creperie", "Restaurants, Creperies, French"),
        ("Gastropub", "Restaurants, Gastropubs"),
        ("Tea Room", "Food, Tea Rooms"),
        ("Food Truck", "Food, Food Trucks"),
        ("Boutique", "Shopping, Fashion, Women's Clothing"),
        ("Vintage", "Shopping, Used, Vintage & Consignment"),
        ("Tattoo", "Beauty & Spas, Tattoo"),
        ("Day Spa", "Beauty & Spas, Day Spas"),
        ("Vet Clinic", "Pets, Veterinarians"),
        ("Car Wash", "Automotive, Car Wash"),
        ("Tire Center", "Automotive, Tires"),
        ("Bike Shop", "Active Life, Bikes"),
        ("Music Hall", "Arts & Entertainment, Music Venues"),
        ("Cinema", "Arts & Entertainment, Cinema"),
        ("Bowling Lanes", "Active Life, Bowling"),
        ("Hotel", "Hotels & Travel, Hotels"),
        ("Inn", "Hotels & Travel, Bed & Breakfast"),
        ("Laundromat", "Local Services, Laundromat"),
        ("Pharmacy", "Health & Medical, Pharmacy"),
        ("Eye Care", "Health & Medical, Optometrists"),
        ("Plumbing", "Home Services, Plumbing"),
        ("Locksmith", "Home Services, Keys & Locksmiths"),
        ("Movers", "Home Services, Movers"),
        ("Sandwich Shop", "Restaurants, Sandwiches"),
        ("Poke Bar", "Restaurants, Poke, Hawaiian"),
    ];
    pub const CITIES: &[&str] = &[
        "Philadelphia", "Tampa", "Indianapolis", "Nashville", "Tucson", "New Orleans", "Reno",
        "Saint Louis", "Edmonton", "Santa Barbara", "Boise", "Clearwater", "Saint Petersburg",
        "Metairie", "Sparks", "Wilmington",
    ];
    pub const STUDIOS: &[&str] = &[
        "Silverline Pictures", "Northlight Films", "Harbor Gate Studios", "Bluefield Entertainment",
        "Crescent Moon Media", "Red Barn Productions", "Meridian Home Video", "Lantern House",
        "Oakleaf Studios", "Starfall Pictures", "Granite Peak Films", "Velvet Rope Entertainment",
        "Paper Crane Pictures", "Ironwood Home Entertainment", "Sunbeam Films", "Atlas Reel",
    ];
    pub const MOVIE_GENRES: &[&str] = &[
        "Drama", "Comedy", "Action & Adventure", "Science Fiction", "Horror", "Thriller", "Romance",
        "Documentary", "Animation", "Kids & Family", "Mystery", "Westerns", "Musicals", "TV Series",
        "Fantasy", "War",
    ];
    pub const BOOK_GENRES: &[&str] = &[
        "fiction", "fantasy", "romance", "mystery", "thriller", "young-adult", "historical",
        "science-fiction", "classics", "horror", "non-fiction", "biography", "poetry",
        "contemporary", "paranormal", "adventure",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn word_lists_are_distinct_and_cover_the_presets() {
        fn distinct(xs: &[&str]) -> bool {
            xs.iter().collect::<HashSet<_>>().len() == xs.len()
        }
        for xs in [
            words::ADJECTIVES,
            words::NOUNS,
            words::PLACES,
            words::FIRST_NAMES,
            words::SURNAMES,
            words::STREETS,
            words::CITIES,
            words::STUDIOS,
            words::MOVIE_GENRES,
            words::BOOK_GENRES,
        ] {
            assert!(distinct(xs), "{xs:?}");
        }
        let kinds: Vec<&str> = words::KINDS.iter().map(|k| k.0).collect();
        assert!(distinct(&kinds));
        for p in SynthSpec::PRESETS {
            let spec = SynthSpec::preset(p).unwrap();
            let titles = Titles::new(spec.domain, &mut rng(spec.seed, Stream::Text));
            assert!(titles.size() >= spec.items, "{p}: {} titles", titles.size());
        }
    }

    #[test]
    fn titles_are_distinct_even_past_the_combination_space() {
        for domain in [Domain::Movies, Domain::Businesses, Domain::Books] {
            let t = Titles::new(domain, &mut rng(7, Stream::Text));
            let n = t.size() + 1000;
            let all: HashSet<String> = (0..n).map(|i| t.get(i)).collect();
            assert_eq!(all.len(), n, "{domain:?}");
        }
    }

    #[test]
    fn lengths_hit_the_total_within_bounds() {
        let mut spec = SynthSpec::preset("tiny").unwrap();
        spec.max_history = Some(40);
        let l = history_lengths(&spec);
        assert_eq!(l.iter().sum::<usize>(), spec.interactions);
        assert!(l.iter().all(|&x| (5..=40).contains(&x)));
        assert!(l.contains(&5) && l.contains(&40));
    }

    #[test]
    fn below_and_unit_stay_in_range() {
        let mut r = rng(1, Stream::Sample);
        for n in [1, 2, 3, 7, 1000] {
            assert!((0..10_000).all(|_| below(&mut r, n) < n));
        }
        assert!(
            (0..10_000)
                .map(|_| unit(&mut r))
                .all(|x| (0.0..1.0).contains(&x))
        );
    }
}
