//! Reports of a finished (or interrupted) run: the human summary, the versioned JSON document,
//! lossless histogram encoding and secret redaction.
//!
//! Reports only format what the engine measured; they never touch sockets or clocks (the host
//! facts are read once, outside the run). Every string that came from the user — URL, headers,
//! command line — passes through [`redact`] before it is printed or written.

use std::time::{Duration, SystemTime};

use crate::plan::{Arrival, Mode, TlsPlan, WsSession};

pub mod behind;
pub mod compare;
pub mod floor;
pub mod hdr;
pub mod hlog;
pub mod host;
pub mod html;
pub mod json;
pub mod merge;
pub mod merge_hlog;
pub mod merge_probe;
pub mod percentiles;
pub mod plot;
pub mod probe;

pub mod schema;
pub mod series;
pub mod text;
pub mod threshold;

pub use crate::metrics::run::{RunResult, StageResult, WorkerPanic, WorkerStats};
/// Redaction lives below `report` so that `-v` output from the engine is redacted the same way.
pub use crate::redact;

/// The run's configuration as the reports show it: the run's own facts (command line, CPUs,
/// limits) and the plan's settings as the plan's types ([`TlsPlan`], [`Arrival`],
/// [`WsSession`]), never string copies. Strings are raw; reports redact them.
#[derive(Clone, Debug)]
pub struct RunMeta {
    /// The command that made the run.
    pub mode: Mode,
    /// Target URL as given (or the built-in target's URL).
    pub url: String,
    /// True when the run used the in-process built-in target.
    pub builtin_target: bool,
    /// The process's command line.
    pub command_line: Vec<String>,
    /// Request method.
    pub method: String,
    /// Extra request headers as given with `-H`.
    pub headers: Vec<(String, String)>,
    /// Request body length in bytes.
    pub body_len: usize,
    /// Concurrent connections asked for.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// CPUs the workers were pinned to (empty when not pinned).
    pub worker_cpus: Vec<usize>,
    /// CPUs the in-process target was pinned to (empty when none or not pinned).
    pub target_cpus: Vec<usize>,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// `-d`, when the run was bounded by time.
    pub duration: Option<Duration>,
    /// `-n`, when the run was bounded by a request count.
    pub requests: Option<u64>,
    /// Warm-up excluded from the results.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// The TLS settings of an https/wss run; `None` for plain TCP.
    pub tls: Option<TlsPlan>,
    /// Soft RLIMIT_NOFILE in force for the run.
    pub fd_limit: u64,
    /// What each WebSocket connection did (`ws` runs only).
    pub ws: Option<WsSession>,
    /// `--source` addresses, in round-robin order (empty: the kernel picked).
    pub sources: Vec<std::net::IpAddr>,
    /// Constant-rate mode: the asked total rate and the arrival process.
    pub rate: Option<(f64, Arrival)>,
    /// HTTP: requests each connection carries before connbench closes it (None: keep-alive).
    pub requests_per_conn: Option<u64>,
    /// HTTP connection-rate mode: new connections per second asked for, across all workers.
    pub conn_rate: Option<f64>,
    /// HTTP: how connbench closes the connections it is done with (None: WebSocket).
    pub close: Option<crate::plan::CloseMode>,
    /// `--busy-poll`, with what the kernel allowed of SO_BUSY_POLL.
    pub busy_poll: Option<crate::plan::BusyPoll>,
    /// `--percentiles`: the percentile columns and JSON summaries.
    pub percentiles: percentiles::Percentiles,
    /// `--threshold`, `--targets`, `--allow-nothing-measured`: what decides pass or fail.
    pub checks: threshold::Checks,
    /// `--start-at`: the instant the run was asked to start (the workers' release; the
    /// measured window begins a warm-up later).
    pub start_at: Option<SystemTime>,
}

impl RunMeta {
    /// A run of `mode` against `url` with everything else at its neutral value (no TLS, no
    /// rate, one connection); callers set what their run had.
    pub fn new(mode: Mode, url: &str) -> RunMeta {
        RunMeta {
            mode,
            url: url.to_string(),
            builtin_target: false,
            command_line: Vec::new(),
            method: "GET".to_string(),
            headers: Vec::new(),
            body_len: 0,
            connections: 1,
            threads: 1,
            worker_cpus: Vec::new(),
            target_cpus: Vec::new(),
            pipeline: 1,
            duration: None,
            requests: None,
            warmup: Duration::ZERO,
            timeout: Duration::ZERO,
            connect_timeout: Duration::ZERO,
            tls: None,
            fd_limit: 0,
            ws: None,
            sources: Vec::new(),
            rate: None,
            requests_per_conn: None,
            conn_rate: None,
            close: None,
            busy_poll: None,
            percentiles: Default::default(),
            checks: Default::default(),
            start_at: None,
        }
    }

    /// The phases this run reports, in order.
    pub fn phases(&self) -> Vec<crate::metrics::Phase> {
        use crate::metrics::Phase;
        let mut v = Phase::for_mode(self.mode.name()).to_vec();
        if self.rate.is_some() {
            v.extend([Phase::Corrected, Phase::SendLag]);
        }
        if self.conn_rate.is_some() {
            v.push(Phase::OpenLag);
        }
        v
    }

    /// `--start-at`'s skew: when the workers were actually released minus when they were
    /// asked to be, seconds (`started_at` is the measured window's start, a warm-up later).
    /// `None` without `--start-at`.
    pub fn start_skew_s(&self, started_at: SystemTime) -> Option<f64> {
        let asked = self.start_at?;
        let began = started_at.checked_sub(self.warmup).unwrap_or(started_at);
        Some(match began.duration_since(asked) {
            Ok(late) => late.as_secs_f64(),
            Err(early) => -early.duration().as_secs_f64(),
        })
    }

    /// `--insecure` was given: certificate chain and name were not checked.
    pub fn insecure(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.insecure)
    }
}

/// The total rate a stage window asked for: its stage's (`--stages …@RATE`), or the run's
/// `-R`; None in closed loop.
pub fn stage_asked_rate(meta: &RunMeta, w: &crate::plan::StageWindow) -> Option<f64> {
    w.rate.or(meta.rate.map(|(r, _)| r))
}
