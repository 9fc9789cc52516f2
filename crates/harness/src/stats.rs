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
    let observed = mean(&d);
    let ci = bootstrap_ci(&d, seed);
    let mut rng = SplitMix64(seed ^ 0xA5A5_A5A5_A5A5_A5A5);
    let mut extreme = 0usize;
    for _ in 0..PERMUTATIONS {
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
    Paired {
        mean_diff: observed,
        ci,
        p_value: (extreme + 1) as f64 / (PERMUTATIONS + 1) as f64,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn seed_interval_uses_student_t() {
        let (m, h) = across_seeds(&[0.5, 0.6, 0.7]);
        assert!((m - 0.6).abs() < 1e-12);
        assert!((h - 4.303 * 0.1 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(across_seeds(&[0.4]), (0.4, 0.0));
    }
}
