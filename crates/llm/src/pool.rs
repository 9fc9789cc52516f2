//! What every request to one provider shares: the slots of requests in flight, handed out by
//! priority, and the pool-wide pause that a rate limit or an outage puts on all of them.
//!
//! A provider that answers 429 is saying something about the account, not about one request:
//! backing off only the request that was refused lets its siblings keep hitting the limit. So a
//! 429 pauses the pool until the time the server gave (`Retry-After`, `x-ratelimit-reset-*`), and
//! a run of transport and 5xx failures with no success in between marks the server as down and
//! pauses the pool with a growing probe interval instead of burning each request's retries.

use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Slots for requests in flight: higher priority first, first come first served within one.
pub struct Slots {
    state: Mutex<SlotState>,
}

struct SlotState {
    free: usize,
    seq: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    priority: u8,
    seq: u64,
    tx: oneshot::Sender<SlotPermit>,
}

impl PartialEq for Waiter {
    fn eq(&self, o: &Self) -> bool {
        (self.priority, self.seq) == (o.priority, o.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiter {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Max-heap: higher priority, then the earlier arrival.
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

/// One slot; given back when dropped (also when a waiter gave up before receiving it).
pub struct SlotPermit {
    slots: Option<Arc<Slots>>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(s) = self.slots.take() {
            s.release();
        }
    }
}

impl Slots {
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState {
                free: n,
                seq: 0,
                waiting: BinaryHeap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn acquire(self: &Arc<Self>, priority: u8) -> SlotPermit {
        let rx = {
            let mut st = self.lock();
            if st.free > 0 && st.waiting.is_empty() {
                st.free -= 1;
                return SlotPermit {
                    slots: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            st.seq += 1;
            let seq = st.seq;
            st.waiting.push(Waiter { priority, seq, tx });
            rx
        };
        // The sender lives in the heap until a slot is handed over; the heap lives as long as
        // `self`, which this future borrows.
        rx.await.expect("a waiting slot request is always answered")
    }

    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut st = self.lock();
                match st.waiting.pop() {
                    Some(w) => w,
                    None => {
                        st.free += 1;
                        return;
                    }
                }
            };
            let permit = SlotPermit {
                slots: Some(self.clone()),
            };
            match next.tx.send(permit) {
                Ok(()) => return,
                // That waiter is gone; disarm the returned permit and offer the slot again.
                Err(mut p) => {
                    p.slots.take();
                }
            }
        }
    }

    /// Requests waiting for a slot (for progress lines and tests).
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

/// How long a pool may wait out rate limits and outages before requests give up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolLimits {
    /// Failures of the transport or 5xx kind in a row, with no success between them, that mark
    /// the server as down.
    pub outage_after: u32,
    /// Longest single pause while the server is down (the probe interval doubles up to it).
    pub outage_probe_max: Duration,
    /// Total time one request waits for a server that is down before it gives up.
    pub max_outage: Duration,
    /// Total time one request waits out 429s that said when to come back before it gives up.
    pub max_rate_limit_wait: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            outage_after: 8,
            outage_probe_max: Duration::from_secs(60),
            max_outage: Duration::from_secs(3600),
            max_rate_limit_wait: Duration::from_secs(3600),
        }
    }
}

#[derive(Default)]
struct Health {
    pause_until: Option<Instant>,
    failures_in_a_row: u32,
    down_since: Option<Instant>,
    probe: Duration,
}

/// What the pool decided about one transient failure.
pub enum Verdict {
    /// The server is down: wait (the pool is paused) without spending the request's retries.
    Outage { down_for: Duration },
    /// An ordinary failure: the request spends one retry.
    Retry,
}

/// The state every request of one client shares.
#[derive(Default)]
pub struct Pool {
    health: Mutex<Health>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no pause is in force.
    pub async fn ready(&self) {
        loop {
            let until = self.lock().pause_until;
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    pub fn paused(&self) -> bool {
        self.lock().pause_until.is_some_and(|t| t > Instant::now())
    }

    /// Holds every request back for `d` from now (a later pause already in force wins). Returns
    /// whether this call extended the pause, so one line is logged per pause, not per request.
    pub fn pause_for(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut h = self.lock();
        if h.pause_until.is_none_or(|t| t < until) {
            let was_paused = h.pause_until.is_some_and(|t| t > Instant::now());
            h.pause_until = Some(until);
            return !was_paused;
        }
        false
    }

    /// A success: the server is up. Returns how long it had been down, if it was.
    pub fn success(&self) -> Option<Duration> {
        let mut h = self.lock();
        h.failures_in_a_row = 0;
        h.probe = Duration::ZERO;
        h.down_since.take().map(|t| t.elapsed())
    }

    /// A transport or 5xx failure. Past `outage_after` of them in a row the server counts as
    /// down until the next success; each further failure pauses the pool for a doubling probe
    /// interval.
    pub fn failure(&self, limits: &PoolLimits) -> (Verdict, bool) {
        let mut h = self.lock();
        h.failures_in_a_row = h.failures_in_a_row.saturating_add(1);
        if h.failures_in_a_row < limits.outage_after {
            return (Verdict::Retry, false);
        }
        let now = Instant::now();
        let newly_down = h.down_since.is_none();
        let since = *h.down_since.get_or_insert(now);
        // Requests that were already in flight when the pause began fail too; only a failed
        // probe after the pause (a new round) lengthens the next one.
        if h.pause_until.is_none_or(|t| t <= now) {
            h.probe = (h.probe * 2)
                .max(Duration::from_millis(500))
                .min(limits.outage_probe_max);
            h.pause_until = Some(now + h.probe);
        }
        (
            Verdict::Outage {
                down_for: now - since,
            },
            newly_down,
        )
    }
}

/// `x-ratelimit-reset-*` values: "1s", "6m0s", "250ms", "1h2m3.5s", or plain seconds.
pub fn parse_reset(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s));
    }
    let mut total = 0.0f64;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    (any && num.is_empty() && total.is_finite()).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_in_openai_form() {
        for (s, ms) in [
            ("1s", 1000),
            ("6m0s", 360_000),
            ("250ms", 250),
            ("1h2m3.5s", 3_723_500),
            ("2", 2000),
            ("0.5", 500),
        ] {
            assert_eq!(parse_reset(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "soon", "1x", "-1", "5m3"] {
            assert_eq!(parse_reset(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn slots_go_to_the_highest_priority_then_in_arrival_order() {
        let slots = Slots::new(1);
        let first = slots.acquire(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, prio) in [("low-a", 0u8), ("high", 2), ("low-b", 0), ("mid", 1)] {
            let (s, o) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = s.acquire(prio).await;
                o.lock().unwrap().push(name);
            }));
            // Queue them in a known order.
            while slots.waiting() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec!["high", "mid", "low-a", "low-b"]
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_lose_the_slot() {
        let slots = Slots::new(1);
        let held = slots.acquire(0).await;
        let s2 = slots.clone();
        let gone = tokio::spawn(async move {
            let _p = s2.acquire(5).await;
        });
        while slots.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop(held);
        // The slot came back to the pool although its first taker vanished.
        let again = tokio::time::timeout(Duration::from_secs(1), slots.acquire(0)).await;
        assert!(again.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_of_failures_marks_the_server_down_and_a_success_ends_it() {
        let pool = Pool::default();
        let limits = PoolLimits {
            outage_after: 3,
            ..PoolLimits::default()
        };
        assert!(matches!(pool.failure(&limits).0, Verdict::Retry));
        assert!(matches!(pool.failure(&limits).0, Verdict::Retry));
        let (v, newly) = pool.failure(&limits);
        assert!(matches!(v, Verdict::Outage { .. }) && newly);
        assert!(pool.paused());
        let t = Instant::now();
        pool.ready().await;
        assert!(t.elapsed() >= Duration::from_millis(500));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(pool.success().is_some());
        assert!(matches!(pool.failure(&limits).0, Verdict::Retry));
    }
}
