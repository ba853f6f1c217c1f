//! Reports of a finished (or interrupted) run: the human summary, the versioned JSON document,
//! lossless histogram encoding and secret redaction.
//!
//! Reports only format what the engine measured; they never touch sockets or clocks (the host
//! facts are read once, outside the run). Every string that came from the user — URL, headers,
//! command line — passes through [`redact`] before it is printed or written.

use std::time::Duration;

pub mod behind;
pub mod compare;
pub mod hdr;
pub mod hlog;
pub mod host;
pub mod json;
pub mod merge;
pub mod probe;
pub mod redact;
pub mod schema;
pub mod text;

pub use crate::metrics::run::{RunResult, StageResult, WorkerPanic, WorkerStats};

/// The run's configuration as the reports show it. Strings are raw; reports redact them.
#[derive(Clone, Debug, Default)]
pub struct RunMeta {
    /// "http" for now; "ws" and "probe" later.
    pub mode: String,
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
    /// True for https.
    pub tls: bool,
    /// `--insecure` was given: certificate chain and name were not checked.
    pub insecure: bool,
    /// TLS session resumption enabled (no `--no-resume`).
    pub resume: bool,
    /// `--sni`, when given.
    pub sni: Option<String>,
    /// `--ca`, when given.
    pub ca_file: Option<String>,
    /// Soft RLIMIT_NOFILE in force for the run.
    pub fd_limit: u64,
    /// WebSocket settings (`ws` runs only).
    pub ws: Option<WsMeta>,
    /// `--source` addresses, in round-robin order (empty: the kernel picked).
    pub sources: Vec<std::net::IpAddr>,
    /// Constant-rate mode: the asked total rate and the arrival process ("uniform", "poisson").
    pub rate: Option<(f64, String)>,
}

impl RunMeta {
    /// The phases this run reports, in order.
    pub fn phases(&self) -> Vec<crate::metrics::Phase> {
        use crate::metrics::Phase;
        let mut v = Phase::for_mode(&self.mode).to_vec();
        if self.rate.is_some() {
            v.extend([Phase::Corrected, Phase::SendLag]);
        }
        v
    }
}

/// The WebSocket settings as the reports show them (strings raw; reports redact them).
#[derive(Clone, Debug, Default)]
pub struct WsMeta {
    /// "stream", "echo" or "ping".
    pub mode: String,
    /// Subscription messages (templates expanded, `{conn}` not yet filled).
    pub subscriptions: Vec<String>,
    /// Echo: messages per second per connection.
    pub send_rate: f64,
    /// Echo: bytes per message.
    pub message_size: usize,
    /// Ping mode: interval.
    pub ping_interval: Duration,
    /// `--ts-field`.
    pub ts_field: Option<String>,
    /// `--ts-unit` as given (None: inferred).
    pub ts_unit: Option<String>,
    /// `--seq-field`.
    pub seq_field: Option<String>,
    /// `--stream-field`.
    pub stream_field: String,
    /// `--stale-after`.
    pub stale_after: Option<Duration>,
    /// Heartbeat: "off", "ping" or "text:…".
    pub heartbeat: String,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// `--pong-timeout` in force (None: pings never time out).
    pub pong_timeout: Option<Duration>,
    /// "full" or "decorrelated".
    pub backoff: String,
    /// Backoff base.
    pub backoff_base: Duration,
    /// Backoff cap.
    pub backoff_cap: Duration,
    /// `--max-retries`.
    pub max_retries: Option<u32>,
    /// `--reconnect-budget` as (count, period).
    pub reconnect_budget: Option<(u32, Duration)>,
    /// `--send-buffer`.
    pub send_buffer: usize,
    /// UTF-8 validation of text messages.
    pub utf8_check: bool,
    /// `--max-message`.
    pub max_message: usize,
    /// Connections of the run (echo rate = send_rate × connections).
    pub connections: usize,
}
