//! `--start-at`: wait, after everything is prepared, until a wall-clock instant, so that the
//! processes of a multi-machine run open their connections together.
//!
//! Rules:
//! 1. The instant is on CLOCK_REALTIME (the clock NTP keeps in step across machines), slept to
//!    with `clock_nanosleep(TIMER_ABSTIME)`: a step of the clock while waiting moves the wake-up
//!    with it, and no monotonic offset is computed once and trusted for minutes.
//! 2. Ctrl-C (SIGINT, SIGTERM) must still work while waiting: the sleep is cut into slices of
//!    at most [`SLICE`] and [`crate::sys::interrupted`] is checked between them (a signal also
//!    cuts a slice short with EINTR).
//! 3. Nothing here opens a connection: the callers wait between preparing (DNS, TLS contexts,
//!    worker threads and their polls) and releasing the workers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest single sleep while waiting (rule 2): how late Ctrl-C can be noticed.
pub const SLICE: Duration = Duration::from_millis(50);

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The instant came (or had passed already).
    Reached,
    /// Ctrl-C came first: nothing should start.
    Interrupted,
}

/// Sleep until the wall clock reads `at` (rule 1), unless `interrupted()` turns true first
/// (checked before every slice of at most [`SLICE`]).
pub fn wait_until(at: SystemTime, interrupted: impl Fn() -> bool) -> Waited {
    loop {
        if interrupted() {
            return Waited::Interrupted;
        }
        let now = SystemTime::now();
        let Ok(left) = at.duration_since(now) else {
            return Waited::Reached;
        };
        if left.is_zero() {
            return Waited::Reached;
        }
        let until = if left > SLICE { now + SLICE } else { at };
        sleep_until_realtime(until);
    }
}

/// One `clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME)` to `until`; returns early on a signal.
fn sleep_until_realtime(until: SystemTime) {
    let d = until.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a plain syscall on a fully initialised timespec; the remainder pointer may be
    // null with TIMER_ABSTIME. EINTR (a signal) and any error just end this slice: the caller
    // reads the clock again.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_REALTIME,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Instant;

    use super::*;

    #[test]
    fn waits_until_the_instant_and_not_before() {
        let at = SystemTime::now() + Duration::from_millis(300);
        assert_eq!(wait_until(at, || false), Waited::Reached);
        // Never early: the wall clock has passed the instant when it returns.
        assert!(SystemTime::now() >= at);
    }

    #[test]
    fn an_instant_in_the_past_returns_at_once() {
        let t = Instant::now();
        let at = SystemTime::now() - Duration::from_secs(5);
        assert_eq!(wait_until(at, || false), Waited::Reached);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn ctrl_c_while_waiting_ends_the_wait_within_slices() {
        // An hour away: only the interruption can end this wait.
        let at = SystemTime::now() + Duration::from_secs(3600);
        let calls = Cell::new(0u32);
        let t = Instant::now();
        let w = wait_until(at, || {
            calls.set(calls.get() + 1);
            calls.get() > 3
        });
        assert_eq!(w, Waited::Interrupted);
        // Three slices slept, then the check said stop: far less than the hour.
        assert_eq!(calls.get(), 4);
        assert!(t.elapsed() < Duration::from_secs(600), "{:?}", t.elapsed());
    }
}
