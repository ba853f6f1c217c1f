//! Reconnection policy: backoff with jitter, a retry limit, and a budget of new connections.
//!
//! This module owns the arithmetic of "when may this connection try again": [`Backoff`] is one
//! connection's retry state under a [`BackoffPolicy`], [`Budget`] is a token bucket that caps how
//! many connections a worker opens per period (exchanges limit connections per IP, e.g. Binance's
//! 300 per 5 minutes), and [`parse_budget`] reads the command-line form. It must not read a clock
//! or sleep: the caller passes `now` and the random source, and schedules the returned delays on
//! its own timers, which keeps every result reproducible in tests.
//!
//! The jitter formulas are from Marc Brooker, "Exponential Backoff And Jitter" (AWS Architecture
//! Blog, 2015). Jitter matters here for the same reason it matters there: when a server drops
//! thousands of benchmark connections at once, un-jittered backoff reconnects them in lockstep
//! waves and measures the thundering herd instead of the server.

use std::time::{Duration, Instant};

use rand::RngExt;

pub use crate::plan::{BackoffPolicy, Jitter};

/// One connection's backoff state.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    /// Delays handed out since the last reset.
    attempts: u32,
    /// The previous delay, for decorrelated jitter (`None`: start from `base`).
    prev: Option<Duration>,
}

impl Backoff {
    /// Delay before the next attempt, or `None` when `max_retries` attempts have been used since
    /// the last reset.
    pub fn next<R: rand::Rng + ?Sized>(
        &mut self,
        policy: &BackoffPolicy,
        rng: &mut R,
    ) -> Option<Duration> {
        if policy.max_retries.is_some_and(|max| self.attempts >= max) {
            return None;
        }
        let cap = nanos(policy.cap);
        let base = nanos(policy.base);
        let delay = match policy.jitter {
            Jitter::Full => rng.random_range(0..=full_window(base, cap, self.attempts)),
            Jitter::Decorrelated => {
                let prev = self.prev.map_or(base, nanos);
                // `max` keeps the range non-empty if the caller lowered `prev` below a new base.
                let high = prev.saturating_mul(3).max(base);
                rng.random_range(base..=high).min(cap)
            }
        };
        let delay = Duration::from_nanos(delay);
        self.prev = Some(delay);
        self.attempts = self.attempts.saturating_add(1);
        Some(delay)
    }

    /// A connection succeeded (upgraded and received a message): start over.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// Delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// `min(cap, base·2^attempt)` in nanoseconds, saturating instead of overflowing.
fn full_window(base: u64, cap: u64, attempt: u32) -> u64 {
    let factor = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
    base.saturating_mul(factor).min(cap)
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Longest period a [`Budget`] accepts; longer ones are clamped so that `now + wait` can never
/// overflow an `Instant`.
pub const MAX_PERIOD: Duration = Duration::from_secs(100 * 366 * 86_400);

/// Token bucket: at most `capacity` new connections per `per` (e.g. Binance's 300 per 5 min per
/// IP), refilled continuously at one token every `per / capacity`. Used per worker with the
/// worker's share of the capacity.
///
/// The level is kept in exact integer units (one token = `per` in nanoseconds; each elapsed
/// nanosecond adds `capacity` units), so refills never drift however the period divides: 3 per
/// second yields tokens at exactly ⌈k·10⁹/3⌉ ns.
#[derive(Clone, Debug)]
pub struct Budget {
    capacity: u32,
    /// One token, in level units: the period in nanoseconds.
    per_ns: u128,
    /// Tokens available at `at`, in level units (at most `capacity · per_ns`).
    level: u128,
    /// The instant `level` was computed for; never moves backwards.
    at: Instant,
}

impl Budget {
    /// A full bucket. `per` is clamped to [`MAX_PERIOD`]; a zero `per` means no limit and a zero
    /// `capacity` means no token ever (see [`Budget::next_available`]).
    pub fn new(capacity: u32, per: Duration, now: Instant) -> Budget {
        let per_ns = per.min(MAX_PERIOD).as_nanos();
        Budget {
            capacity,
            per_ns,
            level: u128::from(capacity) * per_ns,
            at: now,
        }
    }

    /// The capacity this bucket was made with.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The level at `now` (never before `at`: a stale `now` sees the bucket as of `at`).
    fn level_at(&self, now: Instant) -> u128 {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        let full = u128::from(self.capacity) * self.per_ns;
        self.level
            .saturating_add(elapsed.saturating_mul(u128::from(self.capacity)))
            .min(full)
    }

    /// Take one token if available.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.level = self.level_at(now);
        self.at = self.at.max(now);
        if self.capacity > 0 && self.level >= self.per_ns {
            self.level -= self.per_ns;
            true
        } else {
            false
        }
    }

    /// When the next token will be available (`now` if one is). The answer is exact to the
    /// nanosecond: `try_take` fails one nanosecond earlier and succeeds at that instant. With a
    /// zero capacity no token ever comes; the answer is then `now + per`, a bounded wait after
    /// which the caller asks again, rather than an instant that cannot be represented.
    pub fn next_available(&self, now: Instant) -> Instant {
        let from = self.at.max(now);
        if self.capacity == 0 {
            return from + duration_from_nanos(self.per_ns);
        }
        let level = self.level_at(now);
        if level >= self.per_ns {
            return now;
        }
        let deficit = self.per_ns - level;
        let wait = deficit.div_ceil(u128::from(self.capacity));
        // Cannot overflow: the wait is at most MAX_PERIOD.
        from + duration_from_nanos(wait)
    }
}

fn duration_from_nanos(ns: u128) -> Duration {
    const NS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(ns / NS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (ns % NS_PER_SEC) as u32)
}

/// Parse a connection budget: "300/5m", "3/1s", "500/300s", "10/s" → (capacity, period).
/// The period is a whole number with `ms`, `s`, `m` or `h` (a bare number is seconds, a bare
/// unit is one of it). Errors are one line with an example.
pub fn parse_budget(s: &str) -> Result<(u32, Duration), String> {
    let s = s.trim();
    let Some((count, period)) = s.split_once('/') else {
        return Err(format!(
            "invalid budget {s:?}: expected COUNT/PERIOD, e.g. 300/5m or 3/1s"
        ));
    };
    let capacity: u32 = match count.trim().parse() {
        Ok(n) if n > 0 => n,
        _ => {
            return Err(format!(
                "invalid budget {s:?}: the count must be a whole number from 1 to {}, e.g. 300/5m",
                u32::MAX
            ))
        }
    };
    let period = period.trim();
    let split = period
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(period.len());
    let (number, unit) = period.split_at(split);
    let unit_ns: u64 = match unit {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "invalid budget {s:?}: the period must be a whole number with ms, s, m or h, e.g. 300/5m"
            ))
        }
    };
    let amount: u64 = if number.is_empty() && !unit.is_empty() {
        1
    } else {
        number.parse().map_err(|_| {
            format!("invalid budget {s:?}: the period must be a whole number with ms, s, m or h, e.g. 300/5m")
        })?
    };
    let period = amount
        .checked_mul(unit_ns)
        .map(Duration::from_nanos)
        .filter(|p| *p <= MAX_PERIOD)
        .ok_or_else(|| {
            format!("invalid budget {s:?}: the period is longer than 100 years, e.g. 300/5m")
        })?;
    if period.is_zero() {
        return Err(format!(
            "invalid budget {s:?}: the period must be longer than zero, e.g. 300/5m"
        ));
    }
    Ok((capacity, period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const MS: Duration = Duration::from_millis(1);

    fn policy(jitter: Jitter) -> BackoffPolicy {
        BackoffPolicy {
            jitter,
            ..BackoffPolicy::default()
        }
    }

    /// `n` draws of the delay at attempt `attempt` (a fresh state each time).
    fn draws_at(policy: &BackoffPolicy, attempt: u32, n: usize, rng: &mut StdRng) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let mut b = Backoff {
                    attempts: attempt,
                    prev: None,
                };
                b.next(policy, rng).expect("no retry limit")
            })
            .collect()
    }

    fn mean_ms(ds: &[Duration]) -> f64 {
        ds.iter().map(|d| d.as_secs_f64() * 1e3).sum::<f64>() / ds.len() as f64
    }

    #[test]
    fn default_policy() {
        let p = BackoffPolicy::default();
        assert_eq!(p.jitter, Jitter::Full);
        assert_eq!(p.base, 100 * MS);
        assert_eq!(p.cap, Duration::from_secs(10));
        assert_eq!(p.max_retries, None);
    }

    #[test]
    fn jitter_names_round_trip() {
        for j in [Jitter::Full, Jitter::Decorrelated] {
            assert_eq!(Jitter::parse(j.name()), Some(j));
        }
        assert_eq!(Jitter::parse("none"), None);
    }

    #[test]
    fn full_jitter_stays_in_its_window() {
        let p = policy(Jitter::Full);
        let mut rng = StdRng::seed_from_u64(1);
        for attempt in [0u32, 1, 2, 5, 6, 7, 8, 30, 63, 64, 65, 1000, u32::MAX] {
            let window = (p
                .base
                .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX)))
            .min(p.cap);
            let ds = draws_at(&p, attempt, 2000, &mut rng);
            assert!(ds.iter().all(|d| *d <= window), "attempt {attempt}");
            // The window is used, not just its bottom.
            assert!(
                ds.iter().any(|d| *d > window.mul_f64(0.9)),
                "attempt {attempt}"
            );
            assert!(
                ds.iter().any(|d| *d < window.mul_f64(0.1)),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn full_jitter_mean_grows_then_plateaus_at_half_the_cap() {
        let p = policy(Jitter::Full);
        let mut rng = StdRng::seed_from_u64(2);
        let mut previous = 0.0;
        for attempt in 0..7 {
            let ds = draws_at(&p, attempt, 4000, &mut rng);
            let mean = mean_ms(&ds);
            let expected = 100.0 * f64::from(1u32 << attempt) / 2.0;
            // The standard error is ~0.5 % of the window here; 10 % is a generous margin.
            assert!(
                (mean - expected).abs() < expected * 0.1,
                "attempt {attempt}: {mean}"
            );
            assert!(
                mean > previous * 1.5,
                "attempt {attempt}: mean must keep growing"
            );
            previous = mean;
        }
        for attempt in [7, 8, 20, 100, u32::MAX] {
            let mean = mean_ms(&draws_at(&p, attempt, 4000, &mut rng));
            assert!((mean - 5000.0).abs() < 500.0, "attempt {attempt}: {mean}");
        }
    }

    #[test]
    fn decorrelated_stays_between_base_and_cap_and_follows_prev() {
        let p = policy(Jitter::Decorrelated);
        let mut rng = StdRng::seed_from_u64(3);
        let mut hit_cap = 0;
        for _ in 0..200 {
            let mut b = Backoff::default();
            let mut prev = p.base;
            for _ in 0..30 {
                let d = b.next(&p, &mut rng).expect("no retry limit");
                assert!(d >= p.base && d <= p.cap, "{d:?}");
                assert!(d <= prev * 3, "{d:?} after {prev:?}");
                hit_cap += usize::from(d == p.cap);
                prev = d;
            }
        }
        assert!(hit_cap > 0, "long runs reach the cap");
    }

    #[test]
    fn decorrelated_depends_on_the_previous_delay() {
        let p = policy(Jitter::Decorrelated);
        let mut rng = StdRng::seed_from_u64(4);
        let sample = |prev: Option<Duration>, rng: &mut StdRng| -> f64 {
            let ds: Vec<Duration> = (0..4000)
                .map(|_| {
                    let mut b = Backoff { attempts: 0, prev };
                    b.next(&p, rng).expect("no retry limit")
                })
                .collect();
            mean_ms(&ds)
        };
        // From base (100 ms): uniform over [100, 300] ms, mean 200.
        let fresh = sample(None, &mut rng);
        assert!((fresh - 200.0).abs() < 20.0, "{fresh}");
        // After 1 s: uniform over [100, 3000] ms, mean 1550.
        let after_1s = sample(Some(Duration::from_secs(1)), &mut rng);
        assert!((after_1s - 1550.0).abs() < 155.0, "{after_1s}");
    }

    #[test]
    fn max_retries_gives_exactly_n_delays() {
        let mut rng = StdRng::seed_from_u64(5);
        for jitter in [Jitter::Full, Jitter::Decorrelated] {
            let p = BackoffPolicy {
                max_retries: Some(3),
                ..policy(jitter)
            };
            let mut b = Backoff::default();
            for i in 0..3 {
                assert_eq!(b.attempts(), i);
                assert!(b.next(&p, &mut rng).is_some());
            }
            assert_eq!(b.attempts(), 3);
            assert_eq!(b.next(&p, &mut rng), None);
            assert_eq!(b.next(&p, &mut rng), None);
            assert_eq!(b.attempts(), 3, "refusals are not attempts");
            b.reset();
            assert_eq!(b.attempts(), 0);
            assert!(
                b.next(&p, &mut rng).is_some(),
                "reset gives the retries back"
            );
        }
        let none = BackoffPolicy {
            max_retries: Some(0),
            ..BackoffPolicy::default()
        };
        assert_eq!(Backoff::default().next(&none, &mut rng), None);
    }

    #[test]
    fn reset_restarts_the_window() {
        let mut rng = StdRng::seed_from_u64(6);
        let full = policy(Jitter::Full);
        let mut b = Backoff::default();
        for _ in 0..20 {
            b.next(&full, &mut rng);
        }
        b.reset();
        for _ in 0..200 {
            let mut probe = b.clone();
            assert!(probe.next(&full, &mut rng).expect("unlimited") <= full.base);
        }
        let dec = policy(Jitter::Decorrelated);
        let mut b = Backoff::default();
        for _ in 0..20 {
            b.next(&dec, &mut rng);
        }
        b.reset();
        for _ in 0..200 {
            let mut probe = b.clone();
            assert!(probe.next(&dec, &mut rng).expect("unlimited") <= dec.base * 3);
        }
    }

    #[test]
    fn degenerate_policies_do_not_panic() {
        let mut rng = StdRng::seed_from_u64(7);
        let zero = BackoffPolicy {
            base: Duration::ZERO,
            ..BackoffPolicy::default()
        };
        let inverted = BackoffPolicy {
            base: Duration::from_secs(60),
            ..BackoffPolicy::default()
        };
        let huge = BackoffPolicy {
            base: Duration::MAX,
            cap: Duration::MAX,
            ..BackoffPolicy::default()
        };
        for jitter in [Jitter::Full, Jitter::Decorrelated] {
            let mut b = Backoff::default();
            for _ in 0..100 {
                let p = BackoffPolicy { jitter, ..zero };
                assert_eq!(b.next(&p, &mut rng), Some(Duration::ZERO));
            }
            let mut b = Backoff::default();
            for _ in 0..100 {
                let p = BackoffPolicy { jitter, ..inverted };
                assert!(b.next(&p, &mut rng).expect("unlimited") <= p.cap);
            }
            let mut b = Backoff::default();
            for _ in 0..100 {
                let p = BackoffPolicy { jitter, ..huge };
                b.next(&p, &mut rng).expect("unlimited");
            }
        }
        let p = BackoffPolicy {
            jitter: Jitter::Decorrelated,
            ..inverted
        };
        assert_eq!(Backoff::default().next(&p, &mut rng), Some(p.cap));
    }

    #[test]
    fn seeded_rng_gives_the_same_delays() {
        let p = policy(Jitter::Decorrelated);
        let run = || {
            let mut rng = StdRng::seed_from_u64(8);
            let mut b = Backoff::default();
            (0..10).map(|_| b.next(&p, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    // ---- Budget ----

    #[test]
    fn budget_gives_capacity_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = Budget::new(300, Duration::from_secs(300), t0);
        assert_eq!(b.capacity(), 300);
        for i in 0..300 {
            assert_eq!(b.next_available(t0), t0);
            assert!(b.try_take(t0), "token {i}");
        }
        assert!(!b.try_take(t0));
        // 300 per 5 min: one per second.
        let sec = Duration::from_secs(1);
        assert_eq!(b.next_available(t0), t0 + sec);
        for k in 1..=10u32 {
            let due = t0 + sec * k;
            assert_eq!(b.next_available(due - Duration::from_nanos(1)), due);
            assert!(!b.try_take(due - Duration::from_nanos(1)), "early {k}");
            assert_eq!(b.next_available(due), due);
            assert!(b.try_take(due), "due {k}");
            assert!(!b.try_take(due));
        }
    }

    #[test]
    fn budget_refill_is_exact_when_the_period_does_not_divide() {
        let t0 = Instant::now();
        let mut b = Budget::new(3, Duration::from_secs(1), t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        // Token k arrives at exactly ceil(k * 1e9 / 3) ns: no drift from rounding per token.
        for k in 1..=30u64 {
            let due = t0 + Duration::from_nanos((k * 1_000_000_000).div_ceil(3));
            let now = b.next_available(t0);
            assert_eq!(now, due, "token {k}");
            assert!(!b.try_take(due - Duration::from_nanos(1)));
            assert!(b.try_take(due));
        }
    }

    #[test]
    fn budget_caps_at_capacity_after_idling() {
        let t0 = Instant::now();
        let mut b = Budget::new(2, Duration::from_secs(10), t0);
        let later = t0 + Duration::from_secs(3600);
        assert!(b.try_take(later) && b.try_take(later));
        assert!(
            !b.try_take(later),
            "an idle hour does not bank more than capacity"
        );
        assert_eq!(b.next_available(later), later + Duration::from_secs(5));
    }

    #[test]
    fn budget_tolerates_a_stale_now() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut b = Budget::new(1, Duration::from_secs(1), t0);
        assert!(b.try_take(t1));
        // An earlier `now` neither refills nor rewinds the bucket.
        assert!(!b.try_take(t0));
        assert_eq!(b.next_available(t0), t1 + Duration::from_secs(1));
        assert!(!b.try_take(t1 + Duration::from_millis(999)));
        assert!(b.try_take(t1 + Duration::from_secs(1)));
    }

    #[test]
    fn budget_edge_capacities() {
        let t0 = Instant::now();
        let mut empty = Budget::new(0, Duration::from_secs(5), t0);
        assert!(!empty.try_take(t0));
        assert_eq!(empty.next_available(t0), t0 + Duration::from_secs(5));
        let later = t0 + Duration::from_secs(1000);
        assert!(!empty.try_take(later));
        assert_eq!(empty.next_available(later), later + Duration::from_secs(5));
        let mut unlimited = Budget::new(1, Duration::ZERO, t0);
        for _ in 0..1000 {
            assert!(unlimited.try_take(t0));
        }
        assert_eq!(unlimited.next_available(t0), t0);
        let mut clamped = Budget::new(u32::MAX, Duration::MAX, t0);
        assert!(clamped.try_take(t0));
        assert_eq!(clamped.next_available(t0), t0);
    }

    #[test]
    fn parse_budget_forms() {
        let cases: &[(&str, u32, Duration)] = &[
            ("300/5m", 300, Duration::from_secs(300)),
            ("3/1s", 3, Duration::from_secs(1)),
            ("500/300s", 500, Duration::from_secs(300)),
            ("10/s", 10, Duration::from_secs(1)),
            ("5/250ms", 5, Duration::from_millis(250)),
            ("1000/1h", 1000, Duration::from_secs(3600)),
            ("20/60", 20, Duration::from_secs(60)),
            (" 300 / 5m ", 300, Duration::from_secs(300)),
        ];
        for &(s, n, d) in cases {
            assert_eq!(parse_budget(s), Ok((n, d)), "{s}");
        }
    }

    #[test]
    fn parse_budget_errors_are_one_line_with_an_example() {
        for (s, needle) in [
            ("300", "COUNT/PERIOD"),
            ("", "COUNT/PERIOD"),
            ("0/5m", "count"),
            ("-1/5m", "count"),
            ("x/5m", "count"),
            ("99999999999/5m", "count"),
            ("300/5x", "period"),
            ("300/1.5m", "period"),
            ("300/-5m", "period"),
            ("300/m5", "period"),
            ("300/", "period"),
            ("300/0s", "longer than zero"),
            ("300/99999999999h", "100 years"),
            ("300/5m/2", "period"),
        ] {
            let e = parse_budget(s).expect_err(s);
            assert!(e.contains(needle), "{s}: {e}");
            assert!(e.contains("e.g. 300/5m"), "{s}: {e}");
            assert!(!e.contains('\n'), "{s}: {e}");
        }
    }
}
