//! The worker loop of a measured run (HTTP and WebSocket): wait for the earliest of the
//! events, the deadlines, the warm-up's end and the next interval cut; handle them; publish the
//! live counters (and hand the live line its recent samples); stop when the coordinator says so
//! or the session is finished.
//!
//! Rules:
//! 1. The coordinator ends the run by setting `stop` and waking the worker's `Poll`; the loop
//!    also never sleeps longer than [`MAX_WAIT`], so a lost wake-up costs at most that.
//! 2. Warm-up: when it ends, the recorder is reset and the session told, so what completes
//!    later but was sent before is not recorded; interval logs restart at that instant.
//! 3. The worst loop stall (from poll's return to the end of the turn) is the client's own
//!    health figure, reported beside its CPU.
//! 4. The loop starts at the run's start ([`Live::start`], one instant for every worker), not
//!    when its thread got the CPU: schedules and the window count from it, so a late thread
//!    shows as lag in the measurements instead of shortening its own run.
//! 5. A time-bounded run ends at its deadline (start + warm-up + duration) in every worker,
//!    whenever the coordinator's stop flag reaches it: nothing is sent or opened after the
//!    window the report divides by.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::live::{IntervalClock, Live, RecentClock};
use super::{Driver, Session, Transport};

/// Longest single wait (rule 1).
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// What the coordinator hands a worker loop.
pub struct RunCtl {
    /// Set by the coordinator to end the run.
    pub stop: Arc<AtomicBool>,
    /// The worker's live counters.
    pub live: Arc<Live>,
    /// Measured window starts this long after the start.
    pub warmup: Duration,
    /// A time-bounded run's measured window lasts this long (rule 5); None for `-n` runs.
    pub run_for: Option<Duration>,
}

/// How the loop ended.
#[derive(Clone, Copy, Debug)]
pub struct RunEnd {
    /// When the loop started.
    pub started: Instant,
    /// When the session finished (or the loop was stopped).
    pub finished_at: Instant,
    /// The warm-up was over by the end (else nothing was measured).
    pub warm: bool,
    /// Worst time from poll's return to the end of a turn.
    pub max_stall: Duration,
}

impl<T: Transport, S: Session<T>> Driver<T, S> {
    /// Run until stopped or finished (rules 1–3).
    pub fn run(&mut self, ctl: &RunCtl) -> RunEnd {
        // Rule 4: the run's common start when the coordinator set one.
        let started = ctl.live.start.get().copied().unwrap_or_else(Instant::now);
        let warm_end = started + ctl.warmup;
        let deadline = ctl.run_for.map(|d| warm_end + d);
        let mut warm = ctl.warmup.is_zero();
        let mut intervals = IntervalClock::new(&ctl.live, &mut self.net.rec, warm_end);
        let mut recent = RecentClock::new(&ctl.live, &mut self.net.rec, started);
        let mut max_stall = Duration::ZERO;
        let mut finished_at = None;
        self.session.on_start(&mut self.net, started);
        // The end of the previous turn (its stall measurement's clock read) is this turn's
        // "now": nothing runs in between but publishing counters, so a third clock read per
        // turn would only cost time on the keep-alive hot path.
        let mut now = Instant::now();
        loop {
            let mut wake = now + MAX_WAIT;
            if let Some(t) = self.next_wake() {
                wake = wake.min(t);
            }
            if let Some(t) = intervals.next() {
                wake = wake.min(t);
            }
            if let Some(t) = recent.next() {
                wake = wake.min(t);
            }
            if !warm {
                wake = wake.min(warm_end);
            }
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            if self.poll_until(wake, now).is_err() {
                break;
            }
            // Core rule 1: the events' latest clock reading, else a fresh one.
            let polled = self.net.take_latest().unwrap_or_else(Instant::now);
            if ctl.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| polled >= d) {
                break;
            }
            if !warm && polled >= warm_end {
                warm = true;
                self.net.rec.reset();
                self.session.on_warm(polled);
                intervals.restart(polled);
            }
            self.turn(polled);
            if warm {
                intervals.tick(polled, false, &mut self.net.rec, &ctl.live);
            }
            recent.tick(polled, false, &mut self.net.rec, &ctl.live);
            publish(&ctl.live, &self.net, &self.session);
            if self.session.finished() {
                finished_at = Some(Instant::now());
                ctl.live.done.store(true, Ordering::Release);
                break;
            }
            now = Instant::now();
            max_stall = max_stall.max(now.saturating_duration_since(polled));
        }
        let finished_at = finished_at.unwrap_or_else(Instant::now);
        if warm {
            intervals.tick(finished_at, true, &mut self.net.rec, &ctl.live);
        }
        recent.tick(finished_at, true, &mut self.net.rec, &ctl.live);
        publish(&ctl.live, &self.net, &self.session);
        ctl.live.done.store(true, Ordering::Release);
        RunEnd {
            started,
            finished_at,
            warm,
            max_stall,
        }
    }
}

fn publish<T: Transport, S: Session<T>>(live: &Live, net: &super::Net<T>, session: &S) {
    let c = &net.rec.counters;
    live.responses
        .store(session.progress(&net.rec), Ordering::Relaxed);
    live.errors.store(c.total_errors(), Ordering::Relaxed);
    live.open.store(net.open_count(), Ordering::Relaxed);
    live.sent.store(c.ws.messages_out, Ordering::Relaxed);
    live.reconnects
        .store(c.ws.total_reconnects(), Ordering::Relaxed);
}
