//! What a worker shares with the coordinator while it runs (the live counters of the progress
//! line, the interval histograms of `--hlog`) and what it hands back when it ends.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use crate::metrics::run::WorkerStats;
use crate::metrics::{Phase, Recorder};

/// State shared between one worker and the coordinator: written by the worker with relaxed
/// stores once per loop iteration, read by the progress line. Cache-line aligned so workers
/// never share a line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Live {
    /// Responses fully framed in the measured window.
    pub responses: AtomicU64,
    /// Failures in the measured window.
    pub errors: AtomicU64,
    /// Connections currently open.
    pub open: AtomicU64,
    /// The worker has sent its whole `-n` share and seen every answer.
    pub done: AtomicBool,
    /// The run's start, the same instant for every worker: set by the coordinator before it
    /// releases the workers. Schedules (`-R`, `--conn-rate`, stages) and the window count from
    /// it, so a worker whose thread got the CPU late shows that as send or open lag instead of
    /// owing fewer requests. Unset (a worker run on its own), the loop starts when it starts.
    pub start: std::sync::OnceLock<Instant>,
    /// One-second interval histograms (`--hlog`), pushed by the worker once a second and read
    /// by the coordinator after the join; None when interval logging is off.
    pub intervals: Option<std::sync::Mutex<Vec<IntervalPart>>>,
}

/// One worker's share of interval `index` (seconds since the measured window began).
pub type IntervalPart = (u32, Vec<(Phase, hdrhistogram::Histogram<u64>)>);

/// Cuts the worker's interval histograms once a second (only when `--hlog` asked for them).
#[derive(Debug)]
pub struct IntervalClock {
    next: Option<Instant>,
    index: u32,
}

impl IntervalClock {
    /// Off unless the live cell collects intervals; else the first cut is a second after `from`.
    pub fn new(live: &Live, rec: &mut Recorder, from: Instant) -> IntervalClock {
        let next = live.intervals.as_ref().map(|_| {
            rec.enable_intervals();
            from + Duration::from_secs(1)
        });
        IntervalClock { next, index: 0 }
    }

    /// When the next cut is due, if interval logging is on.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Restart the intervals (the warm-up ended at `from`).
    pub fn restart(&mut self, from: Instant) {
        if self.next.is_some() {
            self.next = Some(from + Duration::from_secs(1));
            self.index = 0;
        }
    }

    /// Cut an interval if one is due (or, with `last`, whatever is left).
    pub fn tick(&mut self, now: Instant, last: bool, rec: &mut Recorder, live: &Live) {
        let (Some(next), Some(store)) = (self.next, &live.intervals) else {
            return;
        };
        if now < next && !last {
            return;
        }
        let part = rec.cut_interval();
        if !part.is_empty() {
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.index, part));
        }
        self.index += 1;
        self.next = Some(next + Duration::from_secs(1));
    }
}

/// What a worker hands back when it ends.
pub struct Output {
    /// Measurements of the measured window.
    pub recorder: Recorder,
    /// Staged runs: this worker's measurements per stage window (ramp, hold, …) and the
    /// connections it had open at the end of each.
    pub windows: Vec<(Recorder, u64)>,
    /// Cost and health.
    pub stats: WorkerStats,
    /// When the worker's last request was answered (or the worker stopped).
    pub finished_at: Instant,
}
