//! What a finished run measured, as the engine hands it over: the merged recorder, per-worker
//! cost, stage windows, intervals and panics. The engine builds it; the reports read it.

use std::time::{Duration, SystemTime};

use super::Recorder;

/// Cost and health of one worker thread.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    /// CPU the worker was pinned to, if pinned.
    pub cpu: Option<usize>,
    /// Connections this worker drove.
    pub connections: usize,
    /// User CPU time of the worker thread, ns.
    pub cpu_user_ns: u64,
    /// System CPU time of the worker thread, ns.
    pub cpu_sys_ns: u64,
    /// Longest time the event loop spent between two polls, ns.
    pub max_stall_ns: u64,
}

/// What the engine hands to the reports after the workers join.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// All workers' recorders merged.
    pub recorder: Recorder,
    /// Per-worker cost, in worker order.
    pub workers: Vec<WorkerStats>,
    /// Wall-clock start of the measured window (after warm-up).
    pub started_at: SystemTime,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// True when Ctrl-C ended the run early.
    pub interrupted: bool,
    /// Peak resident set size of the process, bytes (includes an in-process target).
    pub peak_rss_bytes: u64,
    /// Most connections open at once (sampled by the coordinator every few ms).
    pub peak_open: u64,
    /// One-second intervals of the measured window (empty unless `--hlog`).
    pub intervals: Vec<crate::metrics::Interval>,
    /// Staged runs: each stage's ramp and hold windows (empty otherwise).
    pub stages: Vec<StageResult>,
    /// Workers that panicked: the run ended early, and what they measured is missing.
    pub worker_panics: Vec<WorkerPanic>,
    /// This host's sockets in TIME_WAIT towards the target, before and after the run (None when
    /// `/proc/net/tcp` could not be read, and in merged reports: it is one host's reading).
    pub time_wait: Option<TimeWait>,
}

/// Sockets in TIME_WAIT towards the target (`sys::time_wait_towards`): local ports this host
/// cannot reuse towards it for 60 s. Every process's sockets count, not only this run's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWait {
    /// Before the first connection of the run.
    pub at_start: u64,
    /// After the workers closed their last connections.
    pub at_end: u64,
}

/// A worker thread that panicked during the run. Its recorder died with it, so the report says
/// how much is missing (from the live counters it had published) and the run exits non-zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPanic {
    /// Which worker (0-based, as in the per-worker table).
    pub worker: usize,
    /// The panic message.
    pub message: String,
    /// Responses (or messages) it had completed in the measured window before it died: missing
    /// from every histogram and counter of the report.
    pub responses_lost: u64,
}

impl WorkerPanic {
    /// One line for stderr and the text report.
    pub fn describe(&self) -> String {
        format!(
            "worker {} panicked ({}): the run was stopped early and its {} measured responses are missing from this report",
            self.worker, self.message, self.responses_lost
        )
    }
}

/// The measurements of one window of a staged run.
#[derive(Clone, Debug)]
pub struct StageResult {
    /// Which window.
    pub window: crate::plan::StageWindow,
    /// All workers' measurements in it.
    pub recorder: Recorder,
    /// Connections open when it ended.
    pub open_at_end: u64,
}
