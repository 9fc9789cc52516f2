//! Randomly injected faults: which attempt meets which fault.
//!
//! A draw depends on the seed, the request body's fingerprint and how many times that body
//! has been seen, never on wall time or on other requests, so a retried request meets the
//! same sequence of faults in every rehearsal whatever the concurrency.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Probabilities per attempt of each random fault; they must sum to at most 1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// 429 with `Retry-After: 1`.
    pub rate_limited: f64,
    /// 500, 502 or 503.
    pub server_error: f64,
    /// 200 whose JSON body is cut short.
    pub malformed: f64,
    /// The connection is closed with no response, or part-way through the body.
    pub dropped: f64,
}

impl FaultRates {
    /// No random faults.
    pub const NONE: Self = Self {
        rate_limited: 0.0,
        server_error: 0.0,
        malformed: 0.0,
        dropped: 0.0,
    };

    /// A bad day at a provider: half of all attempts fail.
    pub const STORM: Self = Self {
        rate_limited: 0.30,
        server_error: 0.10,
        malformed: 0.05,
        dropped: 0.05,
    };

    pub fn total(&self) -> f64 {
        self.rate_limited + self.server_error + self.malformed + self.dropped
    }

    pub fn validate(&self) -> Result<(), String> {
        let all = [
            self.rate_limited,
            self.server_error,
            self.malformed,
            self.dropped,
        ];
        if all.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(format!("fault rates must lie in 0..=1: {self}"));
        }
        if self.total() > 1.0 + 1e-9 {
            return Err(format!("fault rates sum to more than 1: {self}"));
        }
        Ok(())
    }

    /// The fault (if any) for the `n`-th attempt (0-based) of the body with this fingerprint.
    pub fn draw(&self, seed: u64, fingerprint: &[u8], n: u64) -> Option<RandomFault> {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(fingerprint);
        h.update(n.to_le_bytes());
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        let u = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
        let variant = d[8];
        let mut edge = self.rate_limited;
        if u < edge {
            return Some(RandomFault::RateLimited);
        }
        edge += self.server_error;
        if u < edge {
            return Some(RandomFault::ServerError(
                [500, 502, 503][usize::from(variant) % 3],
            ));
        }
        edge += self.malformed;
        if u < edge {
            return Some(RandomFault::Malformed);
        }
        edge += self.dropped;
        if u < edge {
            return Some(RandomFault::Dropped {
                mid_body: variant % 2 == 1,
            });
        }
        None
    }
}

impl fmt::Display for FaultRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "429={},5xx={},malformed={},drop={}",
            self.rate_limited, self.server_error, self.malformed, self.dropped
        )
    }
}

/// `none`, `storm`, or a custom mix such as `429=0.3,5xx=0.1,malformed=0.05,drop=0.05`
/// (kinds left out are 0).
impl FromStr for FaultRates {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let r = match s.trim() {
            "none" | "" => Self::NONE,
            "storm" => Self::STORM,
            custom => {
                let mut r = Self::NONE;
                for part in custom.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (k, v) = part
                        .split_once('=')
                        .ok_or_else(|| format!("fault {part:?}: expected KIND=P"))?;
                    let p: f64 = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("fault {part:?}: {v:?} is not a number"))?;
                    match k.trim() {
                        "429" => r.rate_limited = p,
                        "5xx" => r.server_error = p,
                        "malformed" => r.malformed = p,
                        "drop" => r.dropped = p,
                        other => {
                            return Err(format!(
                                "fault kind {other:?}: expected 429, 5xx, malformed or drop"
                            ));
                        }
                    }
                }
                r
            }
        };
        r.validate()?;
        Ok(r)
    }
}

/// A fault drawn from [`FaultRates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomFault {
    RateLimited,
    ServerError(u16),
    Malformed,
    Dropped { mid_body: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_custom_mixes_parse() {
        assert_eq!("none".parse::<FaultRates>().unwrap(), FaultRates::NONE);
        assert_eq!("storm".parse::<FaultRates>().unwrap(), FaultRates::STORM);
        let c: FaultRates = "429=0.5, drop=0.1".parse().unwrap();
        assert_eq!(c.rate_limited, 0.5);
        assert_eq!(c.dropped, 0.1);
        assert_eq!(c.server_error, 0.0);
        assert!("429=0.8,5xx=0.3".parse::<FaultRates>().is_err());
        assert!("teapot=0.1".parse::<FaultRates>().is_err());
        assert!("429=-1".parse::<FaultRates>().is_err());
        let round: FaultRates = FaultRates::STORM.to_string().parse().unwrap();
        assert_eq!(round, FaultRates::STORM);
    }

    #[test]
    fn draws_are_deterministic_and_roughly_proportional() {
        let r = FaultRates::STORM;
        assert_eq!(r.draw(7, b"f", 3), r.draw(7, b"f", 3));
        let n = 20_000;
        let mut counts = [0usize; 5];
        for i in 0..n {
            let k = match r.draw(1, format!("body{i}").as_bytes(), 0) {
                Some(RandomFault::RateLimited) => 0,
                Some(RandomFault::ServerError(_)) => 1,
                Some(RandomFault::Malformed) => 2,
                Some(RandomFault::Dropped { .. }) => 3,
                None => 4,
            };
            counts[k] += 1;
        }
        let share = |i: usize| counts[i] as f64 / n as f64;
        for (i, want) in [0.30, 0.10, 0.05, 0.05, 0.50].into_iter().enumerate() {
            assert!((share(i) - want).abs() < 0.02, "{counts:?}");
        }
    }
}
