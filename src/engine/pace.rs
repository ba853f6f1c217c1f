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
//! 1. t_k = start + k / rate, computed from k, never accumulated, so rounding cannot drift
//!    (uniform arrivals). With `--arrival poisson` the gaps are exponential with the same mean;
//!    their sum is kept as f64 nanoseconds since `start`, so Instant rounding cannot drift either.
//! 2. Precision: wrk2 paces with its event loop's millisecond timers (`usec_to_next_send`
//!    rounded to ms; its README says "accurate to +/- ~1 msec"), and mio's poll timeout is
//!    milliseconds rounded up (a 100 µs timeout sleeps ~1.06 ms, libs.md). The worker therefore
//!    arms a timerfd (CLOCK_MONOTONIC, the clock `Instant` reads) for the next due time and polls
//!    on it: microsecond wake-ups without spinning. The cost is one `timerfd_settime` per arming
//!    and one `read` per expiry, and at high rates one wake-up dispatches every request that is
//!    due, so the cost per request falls as the rate rises.
//! 3. Every request due is either sent or counted: due requests wait in a FIFO of intended times
//!    while no connection is free (bounded; past the bound they are counted as unsent at once),
//!    and whatever is still waiting when the run ends is counted as unsent.
//! 4. Catch-up: wrk2 doubles its rate while behind. Here a backlog drains as fast as connections
//!    free up — the open-loop definition without a tunable.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub use crate::plan::Arrival;

/// One worker's schedule of intended send times.
#[derive(Debug)]
pub struct Schedule {
    start: Instant,
    interval_ns: f64,
    k: u64,
    /// Offset of t_k from `start`, ns.
    next_ns: f64,
    poisson: Option<StdRng>,
}

impl Schedule {
    /// A schedule of `rate` requests per second from `start` (rate > 0).
    pub fn new(rate: f64, start: Instant, arrival: Arrival, seed: u64) -> Schedule {
        let interval_ns = 1e9 / rate;
        let mut s = Schedule {
            start,
            interval_ns,
            k: 0,
            next_ns: 0.0,
            poisson: match arrival {
                Arrival::Uniform => None,
                Arrival::Poisson => Some(StdRng::seed_from_u64(seed)),
            },
        };
        if s.poisson.is_some() {
            s.next_ns = s.gap();
        }
        s
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
            self.k as f64 * self.interval_ns
        };
        due
    }

    /// Requests scheduled so far.
    pub fn taken(&self) -> u64 {
        self.k
    }
}

/// A one-shot CLOCK_MONOTONIC timerfd, registered with mio as readable (rule 2).
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
    armed: bool,
}

impl Timer {
    /// A disarmed timer.
    pub fn new() -> io::Result<Timer> {
        // SAFETY: timerfd_create returns a new descriptor or -1.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Timer { fd, armed: false })
    }

    /// The descriptor, for registration.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Fire once, `after` from now (at least 1 µs: zero would disarm).
    pub fn arm(&mut self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid fd and a fully initialised itimerspec.
        let r = unsafe { libc::timerfd_settime(self.raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = true;
        Ok(())
    }

    /// After a readable event: consume the expiration so the next one raises a new edge.
    pub fn clear(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into a local buffer from our own non-blocking fd.
        unsafe { libc::read(self.raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        self.armed = false;
    }

    /// Armed and not yet expired (as far as this side knows).
    pub fn is_armed(&self) -> bool {
        self.armed
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

    #[test]
    fn timer_fires_after_microseconds_not_milliseconds() {
        let mut t = Timer::new().unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let fd = t.raw_fd();
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&fd),
                mio::Token(1),
                mio::Interest::READABLE,
            )
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut best = Duration::MAX;
        for _ in 0..20 {
            let start = Instant::now();
            t.arm(Duration::from_micros(200)).unwrap();
            poll.poll(&mut events, Some(Duration::from_secs(1)))
                .unwrap();
            let took = start.elapsed();
            assert!(events.iter().any(|e| e.token() == mio::Token(1)));
            t.clear();
            best = best.min(took);
        }
        // never before the deadline; at best well under mio's 1 ms granularity
        assert!(best >= Duration::from_micros(200));
        assert!(best < Duration::from_micros(900), "best wake-up {best:?}");
    }
}
