//! The timing model of constant-rate mode (`-R`): an open-loop schedule of intended send times,
//! and a microsecond timer to meet it.
//!
//! Why open loop. A closed-loop client (wrk, most tools) sends the next request only when a
//! response came back. When the server stalls, the client stops asking, and the stall shows up
//! as a handful of slow requests instead of every request that users would have sent during it:
//! coordinated omission (Gil Tene; wrk2). Here the intended send time of request k is fixed in
//! advance, whatever the server does, and latency is measured from it ("corrected"). A request
//! that finds every connection busy waits in a backlog with its clock already running, exactly as
//! a real user's request would wait. The latency from the actual write ("uncorrected", wrk2's
//! `-U`) is kept beside it, and their difference at send time (the send lag) says whether the
//! client itself kept up.
//!
//! Rules:
//! 1. t_k = start + k / rate for k = 0, 1, 2, …: request 0 is due at the start, and t_k is
//!    computed from k ([`offset_ns`]), never accumulated, so rounding cannot drift (uniform
//!    arrivals). [`due_by`] is its exact inverse (how many are due at an instant), which is how
//!    WebSocket echo mode walks the same schedule. With `--arrival poisson` request 0 is also
//!    due at the start and the gaps after it are exponential with the same mean, so
//!    E[t_k] = k / rate as well; their sum is kept as f64 nanoseconds since `start`, so Instant
//!    rounding cannot drift either.
//! 2. Precision: wrk2 paces with its event loop's millisecond timers (`usec_to_next_send` rounded to
//!    ms; its README says "accurate to +/- ~1 msec"), and mio's poll timeout is milliseconds rounded
//!    up (a 100 µs timeout sleeps ~1.06 ms, libs.md). The session therefore gives the next due time
//!    as its `wake_at`, and the loop's alarm (a CLOCK_MONOTONIC timerfd, the clock `Instant`
//!    reads; core rule 7) wakes it then: microsecond wake-ups without spinning. The cost is one `timerfd_settime` per
//!    arming (the expiry itself is not read: timerfd rule 3), and at high rates one wake-up
//!    dispatches every request that is due, so the cost per request falls as the rate rises. With
//!    `--busy-poll` the loop never sleeps and checks the schedule on every turn, so no alarm is
//!    armed (core rule 6).
//! 3. Every request due is either sent or counted: due requests wait in a FIFO of intended times
//!    while no connection is free (bounded; past the bound they are counted as unsent at once),
//!    and whatever is still waiting when the run ends is counted as unsent.
//! 4. Catch-up: wrk2 doubles its rate while behind. Here a backlog drains as fast as connections
//!    free up — the open-loop definition without a tunable.
//! 5. The send lag is the client's own lateness: one sample per request the schedule releases,
//!    taken when the loop releases it (written at once, or queued because every connection is
//!    busy or, for WebSocket echo, down). A queued request's wait for a connection is not the
//!    client's: it shows in corrected latency (corrected − uncorrected = release lag + wait).
//!    Keeping the two apart is what lets the report say who fell behind
//!    (`report::behind`).
//! 6. Stage rates (`--stages 50@10s+30s@50/s,…`): each stage is a schedule of its own rate
//!    from the stage's start ([`Schedule::stepped`]), its request 0 due at that instant (rule
//!    1). A request of the previous stage not yet due when the next one starts is never due:
//!    the new rate takes over at once, whatever the old one's phase. Requests already due and
//!    still waiting for a connection keep their intended times across the change (rule 3).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub use crate::plan::Arrival;

/// Offset from the start of a uniform schedule at which request (or echo message) `k` is due,
/// in ns: k / rate (rule 1: from k, never accumulated).
#[inline]
pub fn offset_ns(k: u64, rate: f64) -> u64 {
    (k as f64 * 1e9 / rate) as u64
}

/// How many requests of a uniform schedule are due `elapsed_ns` after its start: those with
/// `offset_ns(k) <= elapsed_ns`, i.e. k = 0 ..= ⌊elapsed·rate⌋. Exact with respect to
/// [`offset_ns`] (float rounding of the estimate is corrected against it), so a timer armed for
/// `offset_ns(k)` finds request k due when it fires.
#[inline]
pub fn due_by(elapsed_ns: u64, rate: f64) -> u64 {
    let mut k = (elapsed_ns as f64 * rate / 1e9) as u64;
    while k > 0 && offset_ns(k, rate) > elapsed_ns {
        k -= 1;
    }
    while offset_ns(k + 1, rate) <= elapsed_ns {
        k += 1;
    }
    k + 1
}

/// One worker's schedule of intended send times.
#[derive(Debug)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    interval_ns: f64,
    k: u64,
    /// Offset of t_k from `start`, ns.
    next_ns: f64,
    poisson: Option<StdRng>,
    /// Rate changes still ahead (rule 6): from each instant, a schedule of its rate.
    steps: VecDeque<(Instant, f64)>,
    /// Requests scheduled by the steps already left behind.
    before: u64,
}

impl Schedule {
    /// A schedule of `rate` requests per second from `start` (rate > 0).
    pub fn new(rate: f64, start: Instant, arrival: Arrival, seed: u64) -> Schedule {
        // Request 0 is due at the start whatever the arrival process (rule 1).
        Schedule {
            start,
            rate,
            interval_ns: 1e9 / rate,
            k: 0,
            next_ns: 0.0,
            poisson: match arrival {
                Arrival::Uniform => None,
                Arrival::Poisson => Some(StdRng::seed_from_u64(seed)),
            },
            steps: VecDeque::new(),
            before: 0,
        }
    }

    /// A schedule whose rate changes (rule 6): `steps` are (offset from `start`, rate) in time
    /// order, the first at offset 0, every rate > 0; from each offset on, requests are due at
    /// that step's rate, the first at the offset itself.
    pub fn stepped(
        start: Instant,
        steps: &[(Duration, f64)],
        arrival: Arrival,
        seed: u64,
    ) -> Schedule {
        let (first, rest) = steps.split_first().expect("at least one step");
        let mut s = Schedule::new(first.1, start + first.0, arrival, seed);
        s.steps = rest.iter().map(|&(at, rate)| (start + at, rate)).collect();
        s.roll();
        s
    }

    /// Move on to every step whose start the next request is not due before (rule 6).
    fn roll(&mut self) {
        while let Some(&(at, rate)) = self.steps.front() {
            if self.next_due() < at {
                return;
            }
            self.steps.pop_front();
            self.before += self.k;
            self.start = at;
            self.rate = rate;
            self.interval_ns = 1e9 / rate;
            self.k = 0;
            self.next_ns = 0.0;
        }
    }

    fn gap(&mut self) -> f64 {
        match &mut self.poisson {
            // Inverse transform: -ln(U)·mean, U in (0, 1].
            Some(rng) => -(1.0 - rng.random::<f64>()).ln() * self.interval_ns,
            None => self.interval_ns,
        }
    }

    /// Intended send time of the next request.
    #[inline]
    pub fn next_due(&self) -> Instant {
        self.start + Duration::from_nanos(self.next_ns as u64)
    }

    /// Take the next intended send time and move on (rule 1).
    #[inline]
    pub fn advance(&mut self) -> Instant {
        let due = self.next_due();
        self.k += 1;
        self.next_ns = if self.poisson.is_some() {
            self.next_ns + self.gap()
        } else {
            offset_ns(self.k, self.rate) as f64
        };
        if !self.steps.is_empty() {
            self.roll();
        }
        due
    }

    /// Requests scheduled so far.
    pub fn taken(&self) -> u64 {
        self.before + self.k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_times_come_from_k_and_do_not_drift() {
        let start = Instant::now();
        let mut s = Schedule::new(3.0, start, Arrival::Uniform, 0);
        let mut last = start;
        for _ in 0..3_000_000 {
            last = s.advance();
        }
        // request 2,999,999 is due at 999,999.666… s: no accumulated rounding
        let expect = start + Duration::from_nanos((2_999_999f64 * 1e9 / 3.0) as u64);
        let diff = if last > expect {
            last - expect
        } else {
            expect - last
        };
        assert!(diff <= Duration::from_nanos(1), "{diff:?}");
        assert_eq!(s.taken(), 3_000_000);
    }

    #[test]
    fn request_k_is_due_at_k_over_rate_not_k_plus_1_over_rate() {
        // Issue 7 point 5: the echo schedule sent message k at (k+1)/rate, so its send lag and
        // corrected latency were one interval too high. due_by and offset_ns must agree: at the
        // instant request k is due, k + 1 requests (0..=k) are due.
        for rate in [1.0, 3.0, 7.0, 10.0, 400.0, 1000.0, 33_333.0, 1e6] {
            assert_eq!(
                due_by(0, rate),
                1,
                "request 0 is due at the start (rate {rate})"
            );
            for k in 0..2000u64 {
                let at = offset_ns(k, rate);
                assert_eq!(due_by(at, rate), k + 1, "rate {rate} k {k}");
                if k > 0 && offset_ns(k - 1, rate) < at {
                    assert_eq!(due_by(at - 1, rate), k, "rate {rate} k {k}: not yet");
                }
            }
        }
        // Far from the start (a week at 1000/s), still exact.
        let k = 604_800_000;
        assert_eq!(due_by(offset_ns(k, 1000.0), 1000.0), k + 1);
        assert_eq!(offset_ns(3, 3.0), 1_000_000_000);
    }

    #[test]
    fn poisson_request_0_is_due_at_the_start_like_uniform() {
        // With the first gap drawn before request 0, the Poisson schedule ran one mean gap
        // behind the uniform one: E[t_k] = (k+1)/rate instead of k/rate.
        let start = Instant::now();
        for seed in 0..50 {
            let mut s = Schedule::new(100.0, start, Arrival::Poisson, seed);
            assert_eq!(s.advance(), start, "seed {seed}");
        }
        // E[t_k] = k/rate: the mean of t_10 over many seeds is 10 gaps, not 11.
        let n = 4000;
        let mut sum = 0.0;
        for seed in 0..n {
            let mut s = Schedule::new(1000.0, start, Arrival::Poisson, seed);
            let mut t = start;
            for _ in 0..=10 {
                t = s.advance();
            }
            sum += (t - start).as_secs_f64();
        }
        let mean = sum / n as f64;
        // sd of one t_10 is sqrt(10) ms; of the mean of 4000, 0.05 ms.
        assert!((mean - 0.010).abs() < 0.0003, "mean t_10 {mean}");
    }

    #[test]
    fn a_stepped_schedule_takes_each_rate_from_its_step_on() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Schedule::stepped(
            start,
            &[(ms(0), 1000.0), (ms(1000), 100.0), (ms(1500), 400.0)],
            Arrival::Uniform,
            0,
        );
        let due_before = |s: &mut Schedule, t: Duration| {
            let mut n = 0;
            while s.next_due() < start + t {
                s.advance();
                n += 1;
            }
            n
        };
        // 1000/s over [0, 1 s): requests at 0, 1 ms, …, 999 ms.
        assert_eq!(due_before(&mut s, ms(1000)), 1000);
        // The next rate's first request is due at its start, not one old interval later.
        assert_eq!(s.next_due(), start + ms(1000));
        assert_eq!(due_before(&mut s, ms(1500)), 50);
        assert_eq!(s.next_due(), start + ms(1500));
        assert_eq!(due_before(&mut s, ms(2500)), 400);
        assert_eq!(s.taken(), 1450);
        // A step of no length (a stage of 0 s) is skipped; a rate change mid-interval does not
        // wait for the old interval to end: 1/s then 1000/s from 10 ms.
        let mut s = Schedule::stepped(
            start,
            &[(ms(0), 1.0), (ms(10), 50.0), (ms(10), 1000.0)],
            Arrival::Uniform,
            0,
        );
        assert_eq!(s.advance(), start);
        assert_eq!(s.advance(), start + ms(10));
        assert_eq!(s.advance(), start + ms(11));
        // Poisson steps keep the mean rate of each step.
        let mut s = Schedule::stepped(
            start,
            &[(ms(0), 2000.0), (ms(1000), 200.0)],
            Arrival::Poisson,
            3,
        );
        let first = due_before(&mut s, ms(1000)) as f64;
        let second = due_before(&mut s, ms(3000)) as f64;
        // sd of a Poisson count is sqrt(mean): 2000 ± 45, 400 ± 20
        assert!((first - 2000.0).abs() < 200.0, "{first}");
        assert!((second - 400.0).abs() < 100.0, "{second}");
    }

    #[test]
    fn poisson_gaps_have_the_asked_mean() {
        let start = Instant::now();
        let mut s = Schedule::new(1000.0, start, Arrival::Poisson, 7);
        let n = 200_000;
        let mut last = start;
        let mut gaps_below_mean = 0;
        for _ in 0..n {
            let t = s.advance();
            if t - last < Duration::from_millis(1) {
                gaps_below_mean += 1;
            }
            last = t;
        }
        let mean = (last - start).as_secs_f64() / n as f64;
        assert!((mean - 0.001).abs() < 0.00002, "mean gap {mean}");
        // exponential: P(gap < mean) = 1 - 1/e ≈ 0.632
        let frac = gaps_below_mean as f64 / n as f64;
        assert!((frac - 0.632).abs() < 0.01, "{frac}");
    }
}
