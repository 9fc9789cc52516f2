//! A sliding one-minute window over admitted requests and their token cost, the model of
//! OpenAI's per-minute limits, and the `x-ratelimit-*` headers that describe it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);
/// Reported when no `--rpm` is set: large enough never to bind, so clients that pace by the
/// headers are not slowed by a limit that is not enforced.
const NOMINAL_RPM: u64 = 10_000;
/// Reported when no `--tpm` is set.
const NOMINAL_TPM: u64 = 30_000_000;

#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Admission time and token cost, oldest first.
    events: VecDeque<(Instant, u64)>,
    tokens: u64,
}

/// What the headers say after an admission decision.
#[derive(Debug, Clone)]
pub(crate) struct RateState {
    limit_requests: u64,
    remaining_requests: u64,
    reset_requests: Duration,
    limit_tokens: u64,
    remaining_tokens: u64,
    reset_tokens: Duration,
}

impl RateState {
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            (
                "x-ratelimit-limit-requests".into(),
                self.limit_requests.to_string(),
            ),
            (
                "x-ratelimit-remaining-requests".into(),
                self.remaining_requests.to_string(),
            ),
            (
                "x-ratelimit-reset-requests".into(),
                openai_duration(self.reset_requests),
            ),
            (
                "x-ratelimit-limit-tokens".into(),
                self.limit_tokens.to_string(),
            ),
            (
                "x-ratelimit-remaining-tokens".into(),
                self.remaining_tokens.to_string(),
            ),
            (
                "x-ratelimit-reset-tokens".into(),
                openai_duration(self.reset_tokens),
            ),
        ]
    }
}

impl Window {
    fn evict(&mut self, now: Instant) {
        while let Some(&(t, c)) = self.events.front() {
            if now.duration_since(t) >= WINDOW {
                self.events.pop_front();
                self.tokens -= c;
            } else {
                break;
            }
        }
    }

    fn state(&self, now: Instant, rpm: Option<u32>, tpm: Option<u64>) -> RateState {
        let limit_requests = rpm.map_or(NOMINAL_RPM, u64::from);
        let limit_tokens = tpm.unwrap_or(NOMINAL_TPM);
        // "Reset" as OpenAI defines it: until the window is back to its initial state, which
        // is when the newest admitted request leaves it.
        let reset = self
            .events
            .back()
            .map_or(Duration::ZERO, |&(t, _)| (t + WINDOW).duration_since(now));
        RateState {
            limit_requests,
            remaining_requests: limit_requests.saturating_sub(self.events.len() as u64),
            reset_requests: reset,
            limit_tokens,
            remaining_tokens: limit_tokens.saturating_sub(self.tokens),
            reset_tokens: reset,
        }
    }

    /// The headers without admitting anything (for requests rejected before the limiter).
    pub fn peek(&mut self, now: Instant, rpm: Option<u32>, tpm: Option<u64>) -> RateState {
        self.evict(now);
        self.state(now, rpm, tpm)
    }

    /// Admits a request costing `cost` tokens, or says how long until it would fit.
    /// Rejected requests are not counted, so a client retrying on time is not locked out.
    pub fn admit(
        &mut self,
        now: Instant,
        rpm: Option<u32>,
        tpm: Option<u64>,
        cost: u64,
    ) -> (RateState, Option<Duration>) {
        self.evict(now);
        let mut wait = Duration::ZERO;
        if let Some(rpm) = rpm {
            let rpm = rpm as usize;
            if self.events.len() >= rpm {
                // Enough of the oldest requests must leave for one slot to free.
                let (t, _) = self.events[self.events.len() - rpm];
                wait = wait.max((t + WINDOW).duration_since(now));
            }
        }
        if let Some(tpm) = tpm
            && self.tokens + cost > tpm
        {
            if cost > tpm {
                // Never fits; a client should not spin on it faster than the window.
                wait = wait.max(WINDOW);
            } else {
                let mut used = self.tokens;
                for &(t, c) in &self.events {
                    used -= c;
                    if used + cost <= tpm {
                        wait = wait.max((t + WINDOW).duration_since(now));
                        break;
                    }
                }
            }
        }
        if wait > Duration::ZERO {
            return (self.state(now, rpm, tpm), Some(wait));
        }
        self.events.push_back((now, cost));
        self.tokens += cost;
        (self.state(now, rpm, tpm), None)
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `250ms`, `1s`, `6.5s`, `1m30s`.
pub(crate) fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let rest_ms = ms % 60_000;
    let secs = if rest_ms.is_multiple_of(1000) {
        format!("{}s", rest_ms / 1000)
    } else {
        let s = format!("{:.3}", rest_ms as f64 / 1000.0);
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    };
    if minutes > 0 {
        format!("{minutes}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_openai_format() {
        assert_eq!(openai_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(openai_duration(Duration::from_secs(1)), "1s");
        assert_eq!(openai_duration(Duration::from_millis(6500)), "6.5s");
        assert_eq!(openai_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(openai_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn rpm_admits_then_rejects_until_the_oldest_leaves() {
        let mut w = Window::default();
        let t0 = Instant::now();
        for i in 0..3u64 {
            let (s, wait) = w.admit(t0 + Duration::from_secs(i), Some(3), None, 10);
            assert!(wait.is_none());
            assert_eq!(s.remaining_requests, 2 - i);
        }
        let (s, wait) = w.admit(t0 + Duration::from_secs(10), Some(3), None, 10);
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert_eq!(s.remaining_requests, 0);
        assert_eq!(s.limit_requests, 3);
        let (_, wait) = w.admit(t0 + Duration::from_secs(60), Some(3), None, 10);
        assert!(wait.is_none());
    }

    #[test]
    fn tpm_waits_for_enough_tokens_to_free() {
        let mut w = Window::default();
        let t0 = Instant::now();
        assert!(w.admit(t0, None, Some(100), 60).1.is_none());
        assert!(
            w.admit(t0 + Duration::from_secs(5), None, Some(100), 30)
                .1
                .is_none()
        );
        let (s, wait) = w.admit(t0 + Duration::from_secs(10), None, Some(100), 50);
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert_eq!(s.remaining_tokens, 10);
        assert_eq!(
            w.admit(t0, None, Some(100), 500).1,
            Some(Duration::from_secs(60))
        );
    }
}
