//! Statistics for report cells: bootstrap intervals over users, the random-order reference and a
//! paired comparison between two methods on the same users.
//!
//! Everything here is seeded and single-threaded so a re-run writes byte-identical reports.

/// Resamples used for every bootstrap interval. 2000 keeps the third decimal of a 95% interval
/// stable while costing milliseconds for hundreds of users.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// SplitMix64: tiny, fast, and fully specified, so intervals do not move when a dependency's
/// generator changes between versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        // Multiply-shift maps 64 random bits onto 0..n with negligible bias for n << 2^32.
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Percentile-bootstrap 95% interval of the mean over users.
pub fn bootstrap_ci(xs: &[f64], seed: u64) -> (f64, f64) {
    if xs.len() < 2 {
        let m = mean(xs);
        return (m, m);
    }
    let mut rng = SplitMix64(seed);
    let n = xs.len();
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| xs[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    (
        quantile_sorted(&means, 0.025),
        quantile_sorted(&means, 0.975),
    )
}

fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let w = pos - lo as f64;
    sorted[lo] * (1.0 - w) + sorted[hi] * w
}

/// Expected 1-based rank of the relevant item in a random order of `k` candidates.
pub fn random_order_rank(k: usize) -> f64 {
    (k as f64 + 1.0) / 2.0
}

/// Paired comparison of two methods on the same users (`a[i]` and `b[i]` belong to one user).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// mean(a − b)
    pub mean_diff: f64,
    /// Bootstrap 95% interval of the mean difference.
    pub ci: (f64, f64),
    /// Two-sided sign-flip permutation p-value of the mean difference.
    pub p_value: f64,
}

/// Sign-flip permutations for the paired test: enough for p-values down to ~1e-3.
const PERMUTATIONS: usize = 5000;

pub fn paired(a: &[f64], b: &[f64], seed: u64) -> Paired {
    assert_eq!(
        a.len(),
        b.len(),
        "paired comparison needs the same users on both sides"
    );
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let ci = bootstrap_ci(&d, seed);
    let mut rng = SplitMix64(seed ^ 0xA5A5_A5A5_A5A5_A5A5);
    Paired {
        mean_diff: mean(&d),
        ci,
        p_value: sign_flip_p(&d, PERMUTATIONS, &mut rng),
    }
}

/// Two-sided sign-flip permutation p-value of mean(d) against zero.
fn sign_flip_p(d: &[f64], permutations: usize, rng: &mut SplitMix64) -> f64 {
    let observed = mean(d);
    let mut extreme = 0usize;
    for _ in 0..permutations {
        let s: f64 = d
            .iter()
            .map(|x| if rng.next_u64() & 1 == 1 { *x } else { -*x })
            .sum::<f64>()
            / d.len().max(1) as f64;
        // The tolerance keeps ties (e.g. all differences zero) counted as extreme.
        if s.abs() >= observed.abs() - 1e-12 {
            extreme += 1;
        }
    }
    (extreme + 1) as f64 / (permutations + 1) as f64
}

/// Holm's step-down adjustment of p-values for testing several cells at once: it keeps the
/// chance of any false rejection at the nominal level without assuming the tests independent
/// (cells of one run share users and backbones). Returned in the input's order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![f64::NAN; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        // The running maximum keeps the adjusted values in the same order as the raw ones.
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Two-sided level of every power statement in the reports.
pub const ALPHA: f64 = 0.05;
/// Power of every minimum detectable difference and sample size in the reports.
pub const POWER: f64 = 0.8;

/// Sample standard deviation (n − 1 in the denominator).
pub fn sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// (t_{1−α/2, n−1} + t_{power, n−1}): the paired test's multiplier of the standard error.
///
/// The textbook normal version uses z_{0.975} + z_{0.8} = 2.80 whatever n is. Our test sets
/// have tens of users, where that promises power the test does not have (at n = 18 the t
/// multiplier is 2.97), so we use Student t quantiles, which tend to the normal ones as n
/// grows. It is still an approximation (the exact answer needs the noncentral t), good to a
/// user or two.
fn power_multiplier(n: usize) -> f64 {
    let df = (n - 1) as f64;
    t_quantile(1.0 - ALPHA / 2.0, df) + t_quantile(POWER, df)
}

/// Minimum detectable difference of a paired comparison with per-user differences `d`: the
/// smallest true mean difference a two-sided test at [`ALPHA`] finds with [`POWER`] on this
/// many users, (t_{0.975, n−1} + t_{0.8, n−1}) · sd(d) / √n. NaN below two users.
pub fn mdd(d: &[f64]) -> f64 {
    if d.len() < 2 {
        return f64::NAN;
    }
    power_multiplier(d.len()) * sd(d) / (d.len() as f64).sqrt()
}

/// Users a paired test needs to find a true mean difference `delta` with [`POWER`] at
/// [`ALPHA`] when per-user differences have standard deviation `sd`: the smallest n with
/// [`mdd`] ≤ |delta|. `None` when that is undefined (no spread, no delta) or past a billion.
pub fn users_needed(sd: f64, delta: f64) -> Option<usize> {
    if !(sd.is_finite() && delta.is_finite()) || sd <= 0.0 || delta == 0.0 {
        return None;
    }
    // The normal answer is a lower bound (t quantiles exceed z ones), so step up from it.
    const Z: f64 = 1.959_963_984_540_054 + 0.841_621_233_572_914_3;
    let normal = (Z * sd / delta.abs()).powi(2).ceil();
    if normal > 1e9 {
        return None;
    }
    let mut n = (normal as usize).max(2);
    while power_multiplier(n) * sd / (n as f64).sqrt() > delta.abs() {
        n += 1;
    }
    Some(n)
}

/// Which paired test [`simulated_power`] runs on each simulated sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerTest {
    /// One-sample t test of the differences: cheap enough for thousands of users.
    T,
    /// The reports' sign-flip permutation test, with this many permutations.
    SignFlip { permutations: usize },
}

/// Share of `sims` simulated studies that reject "no difference" at [`ALPHA`]: each draws
/// `n` users with replacement from `d` shifted to mean `delta`, so the shape of the per-user
/// differences is the observed one and only the true effect is set. A check of
/// [`users_needed`], which should land near [`POWER`].
///
/// The deviations from the mean are scaled by √(m / (m − 1)) for m observed users: drawing
/// from m values has their spread with divisor m, smaller than the sample sd (divisor m − 1)
/// that [`users_needed`] assumes of new users, and unscaled it would report power the formula
/// never promised (0.82 rather than 0.80 at m = 18).
pub fn simulated_power(
    d: &[f64],
    delta: f64,
    n: usize,
    sims: usize,
    test: PowerTest,
    seed: u64,
) -> f64 {
    if d.is_empty() || n < 2 || sims == 0 {
        return f64::NAN;
    }
    let m = mean(d);
    let scale = if d.len() > 1 {
        (d.len() as f64 / (d.len() - 1) as f64).sqrt()
    } else {
        1.0
    };
    let shifted: Vec<f64> = d.iter().map(|x| delta + (x - m) * scale).collect();
    let critical = t_quantile(1.0 - ALPHA / 2.0, (n - 1) as f64);
    let mut rng = SplitMix64(seed);
    let mut sample = vec![0.0; n];
    let mut rejected = 0usize;
    for _ in 0..sims {
        for x in sample.iter_mut() {
            *x = shifted[rng.below(shifted.len())];
        }
        let reject = match test {
            PowerTest::T => {
                let (m, s) = (mean(&sample), sd(&sample));
                if s > 0.0 {
                    (m / (s / (n as f64).sqrt())).abs() > critical
                } else {
                    m != 0.0
                }
            }
            PowerTest::SignFlip { permutations } => {
                sign_flip_p(&sample, permutations, &mut rng) <= ALPHA
            }
        };
        rejected += reject as usize;
    }
    rejected as f64 / sims as f64
}

/// Quantile of Student's t with `df` degrees of freedom, by bisection on [`t_cdf`].
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p.is_nan() || p <= 0.0 || p >= 1.0 || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let mut hi = 1.0;
    while t_cdf(hi, df) < p {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Distribution function of Student's t: P(T ≤ t) = 1 − I_x(df/2, 1/2) / 2 for t ≥ 0, with
/// x = df / (df + t²).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// Regularised incomplete beta I_x(a, b) by Lentz's continued fraction (Numerical Recipes,
/// §6.4), using the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges slowly.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    // Convergence takes O(√max(a, b)) steps: a generous cap covers millions of users.
    for m in 1..100_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms; relative error ~1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let mut sum = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        sum += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Mean and 95% t-interval half width across seeds (normal quantile past 30 seeds).
pub fn across_seeds(xs: &[f64]) -> (f64, f64) {
    let m = mean(xs);
    if xs.len() < 2 {
        return (m, 0.0);
    }
    let n = xs.len() as f64;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    // Two-sided 97.5% Student-t quantiles for 1..=30 degrees of freedom.
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    let df = xs.len() - 1;
    let t = if df <= 30 { T[df - 1] } else { 1.96 };
    (m, t * (var / n).sqrt())
}

/// How a result spreads over repeated runs (seeds): count, mean, sample standard deviation (0
/// for one run), minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

/// The [`Spread`] of `xs`; `None` for no values.
pub fn spread(xs: &[f64]) -> Option<Spread> {
    if xs.is_empty() {
        return None;
    }
    let m = mean(xs);
    let sd = if xs.len() < 2 {
        0.0
    } else {
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
    };
    Some(Spread {
        n: xs.len(),
        mean: m,
        sd,
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_over_seeds() {
        let s = spread(&[0.2, 0.4, 0.6]).unwrap();
        assert_eq!((s.n, s.min, s.max), (3, 0.2, 0.6));
        assert!((s.mean - 0.4).abs() < 1e-12);
        assert!((s.sd - 0.2).abs() < 1e-12);
        let one = spread(&[0.3]).unwrap();
        assert_eq!((one.mean, one.sd, one.min, one.max), (0.3, 0.0, 0.3, 0.3));
        assert!(spread(&[]).is_none());
    }

    #[test]
    fn random_reference_rank_and_ndcg() {
        assert_eq!(random_order_rank(10), 5.5);
        // The NDCG reference comes from the agp crate's metric; pin the value reports print.
        assert!((agp::random_order_ndcg(10) - 0.4544).abs() < 5e-5);
    }

    #[test]
    fn bootstrap_interval_contains_mean_and_is_deterministic() {
        let xs: Vec<f64> = (0..50).map(|i| ((i * 37) % 11) as f64 / 10.0).collect();
        let (lo, hi) = bootstrap_ci(&xs, 7);
        let m = mean(&xs);
        assert!(lo < m && m < hi, "{lo} {m} {hi}");
        assert_eq!(bootstrap_ci(&xs, 7), (lo, hi));
        // A constant sample has a degenerate interval.
        assert_eq!(bootstrap_ci(&[0.5; 20], 1), (0.5, 0.5));
    }

    #[test]
    fn paired_test_separates_shift_from_noise() {
        let a: Vec<f64> = (0..60).map(|i| (i % 7) as f64 / 7.0).collect();
        let shifted: Vec<f64> = a.iter().map(|x| x + 0.2).collect();
        let p = paired(&shifted, &a, 3);
        assert!((p.mean_diff - 0.2).abs() < 1e-12);
        assert!(p.p_value < 0.01, "{p:?}");
        let same = paired(&a, &a, 3);
        assert_eq!(same.mean_diff, 0.0);
        assert!(same.p_value > 0.99, "{same:?}");
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 97.5% and one-sided 80% points from standard tables.
        for (df, q975, q80) in [
            (1.0, 12.706, 1.376),
            (5.0, 2.571, 0.920),
            (17.0, 2.110, 0.863),
            (30.0, 2.042, 0.854),
            (120.0, 1.980, 0.845),
        ] {
            assert!((t_quantile(0.975, df) - q975).abs() < 1e-3, "df {df}");
            assert!((t_quantile(0.8, df) - q80).abs() < 1e-3, "df {df}");
        }
        // Large samples reach the normal quantiles.
        assert!((t_quantile(0.975, 1e6) - 1.959_964).abs() < 1e-4);
        assert!((t_quantile(0.8, 1e6) - 0.841_621).abs() < 1e-4);
        assert!((t_quantile(0.025, 10.0) + 2.228).abs() < 1e-3);
        assert!((t_cdf(0.0, 3.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn holm_steps_down_and_keeps_order() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        // Sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1, then the running maximum.
        let want = [0.04, 0.09, 0.09, 0.5];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[0.6, 0.7]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn mdd_and_users_needed_agree() {
        let d: Vec<f64> = (0..40)
            .map(|i| ((i * 13) % 9) as f64 / 10.0 - 0.4)
            .collect();
        let m = mdd(&d);
        // The normal approximation is the large-sample floor of the t version.
        let z = (1.959_964 + 0.841_621) * sd(&d) / (40f64).sqrt();
        assert!(m > z && m < z * 1.05, "{m} {z}");
        // The users needed to detect this very MDD are the users we have.
        assert_eq!(users_needed(sd(&d), m * 1.000_001), Some(40));
        assert_eq!(users_needed(0.0, 0.1), None);
        assert_eq!(users_needed(0.3, 0.0), None);
        assert!(mdd(&[0.1]).is_nan());
    }

    #[test]
    fn seed_interval_uses_student_t() {
        let (m, h) = across_seeds(&[0.5, 0.6, 0.7]);
        assert!((m - 0.6).abs() < 1e-12);
        assert!((h - 4.303 * 0.1 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(across_seeds(&[0.4]), (0.4, 0.0));
    }
}
