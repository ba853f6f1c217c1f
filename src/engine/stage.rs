//! A staged run's clock (`--stages`, `--scenario`), shared by the HTTP and WebSocket sessions:
//! which window (a stage's ramp or hold) the run is in, how many connections this worker should
//! hold now, and each window's measurements.
//!
//! Rules:
//! 1. Checked every [`CHECK_EVERY`] (the seed steps its ramps 10 times a second; this does
//!    100): the session calls [`Stager::check`] on every loop turn and wakes the loop for the
//!    next check ([`Stager::next_check`]).
//! 2. A window ends at the first check at or after its end: the worker's recorder is taken as
//!    that window's measurements, with the connections open then, and starts afresh. Windows
//!    never overlap, and the run's numbers are their sum ([`Stager::finish`]).
//! 3. A worker holds its share ([`crate::plan::share`]) of the stage target
//!    ([`crate::plan::stage_target`]): linear over a ramp, flat over a hold.
//!
//! Nothing here reads a clock: `now` comes in as an argument.

use std::time::{Duration, Instant};

use crate::metrics::Recorder;
use crate::plan::{Stage, StageWindow};

/// How often the stage target is recomputed (rule 1).
pub const CHECK_EVERY: Duration = Duration::from_millis(10);

/// Where a worker is in its staged run.
pub struct Stager {
    /// The run's windows, in time order.
    pub(crate) windows: Vec<StageWindow>,
    /// The window the run is in.
    pub(crate) window: usize,
    /// When the run started.
    pub(crate) start: Instant,
    /// When the next check is due.
    pub(crate) next_check: Instant,
    /// The measurements of the windows that ended, and the connections open at their end.
    pub(crate) done: Vec<(Recorder, u64)>,
}

impl Stager {
    /// The clock of a run of these stages, started at `start` (its first check is due then).
    pub fn new(stages: &[Stage], start: Instant) -> Stager {
        Stager {
            windows: crate::plan::stage_windows(stages),
            window: 0,
            start,
            next_check: start,
            done: Vec::new(),
        }
    }

    /// When the next check is due (the loop wakes for it).
    pub fn next_check(&self) -> Instant {
        self.next_check
    }

    /// Rules 1 and 2: None until a check is due; then cut every window that ended (taking its
    /// measurements from `rec`, with `open` connections open) and return the time into the
    /// run.
    pub fn check(&mut self, now: Instant, rec: &mut Recorder, open: u64) -> Option<Duration> {
        if now < self.next_check {
            return None;
        }
        self.next_check = now + CHECK_EVERY;
        let t = now.saturating_duration_since(self.start);
        while self.window + 1 < self.windows.len() && t >= self.windows[self.window + 1].start {
            self.done.push((rec.take_window(), open));
            self.window += 1;
        }
        Some(t)
    }

    /// The run is over: the last window takes what `rec` holds, then `rec` becomes the sum of
    /// every window again (the whole run); returns the windows' measurements in order.
    pub fn finish(mut self, rec: &mut Recorder, open: u64) -> Vec<(Recorder, u64)> {
        self.done.push((rec.take_window(), open));
        for (w, _) in &self.done {
            rec.merge(w);
        }
        self.done
    }
}

/// Rule 3: the connections worker `id` of `workers` should hold `t` into a run of `stages`, at
/// most its `slots`.
pub fn wanted(stages: &[Stage], t: Duration, id: usize, workers: usize, slots: usize) -> usize {
    let total = crate::plan::stage_target(stages, t);
    (crate::plan::share(total as u64, workers, id) as usize).min(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Phase;

    fn stage(connections: usize, ramp_ms: u64, hold_ms: u64) -> Stage {
        Stage {
            connections,
            ramp: Duration::from_millis(ramp_ms),
            hold: Duration::from_millis(hold_ms),
            rate: None,
        }
    }

    #[test]
    fn a_stage_cut_keeps_interval_logging_and_the_live_samples_on() {
        // The cut swapped the recorder for an empty one, without interval histograms: a
        // 2-stage 4 s run with --hlog wrote intervals for its first 2 s only.
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut st = Stager::new(&[stage(4, 0, 100), stage(8, 0, 100)], t0);
        let mut rec = Recorder::new();
        rec.enable_intervals();
        rec.enable_recent(Phase::Total);
        st.check(t0, &mut rec, 0);
        rec.record(Phase::Total, 1_000);
        st.check(ms(101), &mut rec, 4);
        assert_eq!(st.done.len(), 1, "the first window was cut");
        rec.record(Phase::Total, 2_000);
        // Both samples are in the interval (cut by time, not by stage), and in the live line's.
        let cut = rec.cut_interval();
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].1.len(), 2);
        assert_eq!(rec.recent().expect("still on").len(), 2);
        // The windows themselves split as before.
        assert_eq!(st.done[0].0.histogram(Phase::Total).len(), 1);
        assert_eq!(rec.histogram(Phase::Total).len(), 1);
    }

    #[test]
    fn windows_are_cut_at_the_first_check_after_their_end_and_add_up_to_the_run() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let stages = [stage(4, 100, 200), stage(8, 0, 100)];
        let mut st = Stager::new(&stages, t0);
        let mut rec = Recorder::new();
        assert_eq!(st.check(t0, &mut rec, 0), Some(Duration::ZERO));
        // Not due again before CHECK_EVERY.
        assert_eq!(st.check(ms(5), &mut rec, 0), None);
        assert_eq!(st.next_check(), ms(10));
        rec.record(Phase::Total, 1_000);
        // 1 ms into the hold: the ramp window ends with what was recorded so far.
        assert_eq!(
            st.check(ms(101), &mut rec, 4),
            Some(Duration::from_millis(101))
        );
        assert_eq!(st.done.len(), 1);
        assert_eq!(st.done[0].0.histogram(Phase::Total).len(), 1);
        assert_eq!(st.done[0].1, 4);
        assert_eq!(rec.histogram(Phase::Total).len(), 0);
        rec.record(Phase::Total, 2_000);
        rec.record(Phase::Total, 3_000);
        // A late check (a stalled loop) cuts every window that ended meanwhile.
        st.check(ms(5_000), &mut rec, 8);
        assert_eq!(st.window, 2);
        assert_eq!(st.done.len(), 2);
        rec.record(Phase::Total, 4_000);
        let windows = st.finish(&mut rec, 0);
        let counts: Vec<u64> = windows
            .iter()
            .map(|(r, _)| r.histogram(Phase::Total).len())
            .collect();
        assert_eq!(windows.len(), 3, "ramp, hold, hold");
        assert_eq!(counts, [1, 2, 1]);
        assert_eq!(rec.histogram(Phase::Total).len(), 4, "the run is the sum");
    }

    #[test]
    fn each_worker_holds_its_share_of_the_target() {
        let stages = [stage(10, 1000, 1000)];
        let at = |ms: u64, id: usize| wanted(&stages, Duration::from_millis(ms), id, 3, 100);
        // 10 over 3 workers at the hold: 4, 3, 3.
        assert_eq!((0..3).map(|id| at(1500, id)).collect::<Vec<_>>(), [4, 3, 3]);
        // Half-way up the ramp: 5 in total.
        assert_eq!((0..3).map(|id| at(500, id)).sum::<usize>(), 5);
        // Never more than the worker's slots.
        assert_eq!(wanted(&stages, Duration::from_secs(1), 0, 1, 6), 6);
    }
}
