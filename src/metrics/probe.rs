//! What `connbench probe` found: the limit, the first failure and its cause, drops, survival,
//! the confirmation passes. `engine::probe` measures it; `report::probe` renders it.

use std::time::{Duration, SystemTime};

use super::{ErrorClass, Recorder};

/// Interval of the open-connections time series.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Why a connection failed or was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A socket, TLS or protocol failure, classified as in the workers (rule 5).
    Error(ErrorClass),
    /// The server answered the request (or the upgrade) with this status (≥ 400, or any
    /// non-101 status to an upgrade).
    Status(u16),
    /// The server sent a WebSocket close frame with this code (None: no code).
    WsClose(Option<u16>),
}

impl Cause {
    /// Stable label used in reports: the error class name (`connect_reset`,
    /// `local_fd_limit`, …), `http_429`, or `ws_close_1013` (`ws_close` without a code).
    pub fn label(self) -> String {
        match self {
            Cause::Error(c) => c.name().to_string(),
            Cause::Status(s) => format!("http_{s}"),
            Cause::WsClose(Some(code)) => format!("ws_close_{code}"),
            Cause::WsClose(None) => "ws_close".to_string(),
        }
    }

    /// True when this machine hit a limit (file descriptors, local ports), not the server.
    pub fn is_local(self) -> bool {
        matches!(self, Cause::Error(c) if c.is_local())
    }

    /// The HTTP status, for [`Cause::Status`].
    pub fn status(self) -> Option<u16> {
        match self {
            Cause::Status(s) => Some(s),
            _ => None,
        }
    }

    /// The WebSocket close code, for [`Cause::WsClose`].
    pub fn close_code(self) -> Option<u16> {
        match self {
            Cause::WsClose(c) => c,
            _ => None,
        }
    }
}

/// The first connection that could not be established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstFailure {
    /// Why.
    pub cause: Cause,
    /// When, from the start of the pass.
    pub at: Duration,
    /// Which connection, 1-based in the order they were opened.
    pub connection: u64,
}

/// One pass of the probe: a ramp, then a hold.
#[derive(Clone, Debug)]
pub struct PassResult {
    /// Connections this pass was allowed to attempt.
    pub max: usize,
    /// Connections the server admitted when the ramp ended (`engine::probe` rule 3): settled
    /// ones, not those that raced the first failure.
    pub limit: u64,
    /// Every one of `max` connections was established and settled without a failure.
    pub reached_max: bool,
    /// The first connection that could not be established.
    pub first_failure: Option<FirstFailure>,
    /// Establishment failures by cause, the first one included, in order of first occurrence.
    pub failures: Vec<(Cause, u64)>,
    /// Held (settled) connections lost, by cause.
    pub drops: Vec<(Cause, u64)>,
    /// `(seconds since the start, established connections open)`, every [`SAMPLE_EVERY`], and
    /// once more at the end.
    pub series: Vec<(f64, u64)>,
    /// Connections counted in the limit (the survivors' denominator).
    pub held: u64,
    /// Of `held`, still open at the end of the hold.
    pub survived: u64,
    /// Connections attempted (`connect()` called or tried).
    pub attempted: u64,
    /// Connections established (late ones after the first failure included).
    pub established: u64,
    /// Connections still connecting or handshaking when the pass ended.
    pub unresolved: u64,
    /// Most established connections open at once.
    pub peak_open: u64,
    /// Length of the pass.
    pub elapsed: Duration,
    /// Ctrl-C ended the pass early.
    pub interrupted: bool,
    /// Phase histograms (connect, tls, total for `--request`, upgrade for `--ws`) and counters.
    pub recorder: Recorder,
}

impl PassResult {
    /// Establishment failures of every cause.
    pub fn failures_total(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    /// Held connections lost, every cause.
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().map(|(_, n)| n).sum()
    }
}

/// The verdict of `--confirm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stability {
    /// Limit − 1 connections were all established, and limit + 1 failed the same way at the
    /// same limit.
    Stable,
    /// One of the re-tests disagreed (the reason says how).
    Unstable,
    /// Nothing to confirm (no failure up to `--max`, or interrupted).
    Skipped,
}

impl Stability {
    /// "stable", "unstable", "skipped".
    pub fn name(self) -> &'static str {
        match self {
            Stability::Stable => "stable",
            Stability::Unstable => "unstable",
            Stability::Skipped => "skipped",
        }
    }
}

/// The re-tests of `--confirm`.
#[derive(Clone, Debug)]
pub struct Confirm {
    /// The verdict.
    pub stability: Stability,
    /// One line: what was checked and what disagreed.
    pub reason: String,
    /// The pass up to limit − 1 (None when the limit is 0 or the confirm was skipped).
    pub below: Option<PassResult>,
    /// The pass up to limit + 1 (None when skipped).
    pub above: Option<PassResult>,
}

/// Everything a probe measured.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    /// The probe itself.
    pub pass: PassResult,
    /// `--confirm` re-tests.
    pub confirm: Option<Confirm>,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// From start to the end of the last pass (pauses included).
    pub elapsed: Duration,
    /// Ctrl-C ended the probe early.
    pub interrupted: bool,
    /// Peak resident set size of the process, bytes.
    pub peak_rss_bytes: u64,
    /// User CPU time of the probe thread, ns.
    pub cpu_user_ns: u64,
    /// System CPU time of the probe thread, ns.
    pub cpu_sys_ns: u64,
}
