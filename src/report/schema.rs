//! The report document `connbench.report.v1`, declared once as types: [`super::json`] fills a
//! [`Report`] and serializes it, [`super::probe`] fills a [`ProbeReport`] built from the same
//! pieces ([`Target`], [`Host`], [`Tls`], [`PhaseStats`]), and `merge` reads reports back into
//! these types.
//!
//! The fields and their meaning are documented in [`super::json`]'s module doc (run reports) and
//! [`super::probe`]'s (probe reports); a test checks that table against the keys a real run
//! writes. Rules for changing these types, so that every report written since `v1` still reads:
//! - a field added after `v1` carries `#[serde(default)]` (older reports lack it);
//! - no field is renamed, retyped or removed (that needs `…v2`);
//! - an `Option` field is written as `null`, never left out.
//!
//! The documents are written through [`serde_json::Value`], whose objects keep their keys in
//! alphabetical order, so the order of the fields here does not matter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A run report (`http` and `ws`; `merge` writes one too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`super::json::SCHEMA`].
    pub schema: String,
    /// Version of the binary that ran.
    pub connbench_version: String,
    /// `"http"` or `"ws"`.
    pub mode: String,
    /// Start of the measured window, RFC 3339 UTC, whole seconds.
    pub started_at: String,
    /// The same instant, ms since the Unix epoch.
    pub started_at_unix_ms: i64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
    /// Worker threads that panicked.
    #[serde(default)]
    pub worker_panics: Vec<WorkerPanic>,
    /// `--insecure`.
    pub insecure: bool,
    /// The process arguments, redacted.
    pub command_line: Vec<String>,
    /// What was loaded.
    pub target: Target,
    /// The settings of the run.
    pub config: Config,
    /// The machine that ran it.
    pub host: Host,
    /// Rates over the measured window.
    pub throughput: Throughput,
    /// Counters over the measured window.
    pub counters: Counters,
    /// Responses by status class (`1xx` … `other`).
    pub responses: BTreeMap<String, u64>,
    /// Failures by error class.
    pub errors: Errors,
    /// TLS facts; null when the run was not TLS.
    pub tls: Option<Tls>,
    /// Statistics and histogram per phase, by phase name.
    pub phases: BTreeMap<String, PhaseStats>,
    /// The client's own cost.
    pub client: Client,
    /// WebSocket settings and counters; null for HTTP runs.
    #[serde(default)]
    pub ws: Option<Ws>,
    /// Most connections open at once.
    #[serde(default)]
    pub peak_open_connections: u64,
    /// Peak RSS ÷ peak open connections; null with none open.
    #[serde(default)]
    pub rss_per_open_connection_bytes: Option<u64>,
    /// `--start-at`, RFC 3339; null without it.
    #[serde(default)]
    pub start_at: Option<String>,
    /// Actual − asked start, seconds; null without `--start-at`.
    #[serde(default)]
    pub start_skew_s: Option<f64>,
    /// The windows of a staged run (`--stages`); empty otherwise.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Rate mode only.
    #[serde(default)]
    pub rate: Option<Rate>,
}

/// One worker thread that panicked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerPanic {
    /// Worker index.
    pub worker: usize,
    /// The panic message.
    pub message: String,
    /// Responses that worker had counted and that are missing from the report.
    pub responses_lost: u64,
}

/// `target`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Target URL, redacted.
    pub url: String,
    /// The in-process built-in target was used.
    pub builtin: bool,
}

/// `config` of a run report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Request method.
    pub method: String,
    /// Extra request headers, `"Name: value"`, redacted.
    pub headers: Vec<String>,
    /// Request body bytes.
    pub body_len: u64,
    /// Concurrent connections asked for.
    pub connections: u64,
    /// Worker threads.
    pub threads: u64,
    /// CPUs the workers were pinned to.
    pub worker_cpus: Vec<u64>,
    /// CPUs the in-process target was pinned to.
    pub target_cpus: Vec<u64>,
    /// Requests in flight per connection.
    pub pipeline: u64,
    /// `-d`, seconds.
    pub duration_s: Option<f64>,
    /// `-n`.
    pub requests: Option<u64>,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Per-request timeout, seconds.
    pub timeout_s: f64,
    /// TCP connect timeout, seconds.
    pub connect_timeout_s: f64,
    /// https.
    pub tls: bool,
    /// TLS session resumption enabled.
    pub resume: bool,
    /// `--sni`.
    pub sni: Option<String>,
    /// `--ca`.
    pub ca_file: Option<String>,
    /// Soft RLIMIT_NOFILE.
    pub fd_limit: u64,
    /// `--source` addresses.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// `host`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Logical CPUs online.
    pub cpus_online: u64,
    /// CPUs in the affinity mask.
    pub cpus_allowed: u64,
    /// Linux clocksource.
    pub clocksource: Option<String>,
    /// `uname -r`.
    pub kernel: Option<String>,
    /// e.g. `x86_64`.
    pub arch: String,
    /// e.g. `linux`.
    pub os: String,
}

impl From<&super::host::HostFacts> for Host {
    fn from(h: &super::host::HostFacts) -> Host {
        Host {
            cpus_online: h.cpus_online as u64,
            cpus_allowed: h.cpus_allowed as u64,
            clocksource: h.clocksource.clone(),
            kernel: h.kernel.clone(),
            arch: h.arch.to_string(),
            os: h.os.to_string(),
        }
    }
}

/// `throughput`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Requests sent ÷ duration.
    pub requests_per_s: f64,
    /// Responses framed ÷ duration.
    pub responses_per_s: f64,
    /// Socket bytes read ÷ duration.
    pub bytes_in_per_s: f64,
    /// Socket bytes written ÷ duration.
    pub bytes_out_per_s: f64,
}

/// `counters`. A counter that a report lacks (written before it existed) reads as 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Requests whose first byte was written.
    pub requests: u64,
    /// Responses fully framed.
    pub responses: u64,
    /// Socket bytes read.
    pub bytes_in: u64,
    /// Socket bytes written.
    pub bytes_out: u64,
    /// `connect()` calls.
    pub connections_opened: u64,
    /// Connections that completed.
    pub connections_established: u64,
    /// Requests on a connection that already carried one.
    pub reused_requests: u64,
    /// `reused_requests ÷ requests`.
    pub reuse_rate: f64,
    /// Connections the server closed.
    pub server_closes: u64,
}

/// `errors`: one count per class (every class written), their total and the reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    /// Failures per error class, by class name.
    #[serde(flatten)]
    pub classes: BTreeMap<String, u64>,
    /// Sum of all classes.
    pub total: u64,
    /// Per class with any, why its failures happened, most frequent first.
    #[serde(default)]
    pub reasons: BTreeMap<String, Vec<Reason>>,
}

/// One entry of `errors.reasons.{class}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// What went wrong (or [`super::json::OTHER_REASONS`]).
    pub reason: String,
    /// Failures with that reason.
    pub count: u64,
}

/// `tls` (run and probe reports).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tls {
    /// Negotiated protocol version.
    pub version: Option<String>,
    /// Negotiated cipher suite.
    pub cipher_suite: Option<String>,
    /// Negotiated key-exchange group.
    pub kx_group: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// Full handshakes.
    pub handshakes_full: u64,
    /// Resumed handshakes.
    pub handshakes_resumed: u64,
}

/// One `phases.*` object (run, stage and probe reports).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    /// Always `"ns"`.
    pub unit: String,
    /// Samples.
    pub count: u64,
    /// Smallest sample; null when empty.
    pub min: Option<u64>,
    /// Median; null when empty.
    pub p50: Option<u64>,
    /// 90th percentile; null when empty.
    pub p90: Option<u64>,
    /// 99th percentile; null when empty.
    pub p99: Option<u64>,
    /// 99.9th percentile; null when empty.
    pub p999: Option<u64>,
    /// Largest sample; null when empty.
    pub max: Option<u64>,
    /// Mean; null when empty.
    pub mean: Option<f64>,
    /// Standard deviation; null when empty.
    pub stdev: Option<f64>,
    /// The full histogram, base64 HdrHistogram V2+deflate.
    pub hdr: String,
}

/// `client` of a run report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Client {
    /// User CPU time of the workers, seconds.
    pub cpu_user_s: f64,
    /// System CPU time of the workers, seconds.
    pub cpu_sys_s: f64,
    /// (user + sys) ÷ responses, µs; null with none.
    pub cpu_per_request_us: Option<f64>,
    /// Peak RSS of the process.
    pub peak_rss_bytes: u64,
    /// Worst gap between two polls, µs.
    pub max_loop_stall_us: f64,
    /// Per worker, in worker order.
    #[serde(default)]
    pub workers: Vec<Worker>,
}

/// One entry of `client.workers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    /// The CPU it was pinned to.
    pub cpu: Option<u64>,
    /// Connections it ran.
    pub connections: u64,
    /// User CPU time, seconds.
    pub cpu_user_s: f64,
    /// System CPU time, seconds.
    pub cpu_sys_s: f64,
    /// Worst gap between two polls, µs.
    pub max_loop_stall_us: f64,
}

/// `rate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// The total rate asked for, per second.
    pub asked_per_s: f64,
    /// `uniform` or `poisson`.
    pub arrival: String,
    /// Requests (echo messages) written ÷ duration.
    pub sent_per_s: f64,
    /// Due and never written.
    pub unsent: u64,
    /// `client`, `server` or null.
    #[serde(default)]
    pub behind: Option<String>,
    /// Why, when someone fell behind.
    #[serde(default)]
    pub behind_cause: Option<String>,
    /// HTTP: ⌈rate × median response time⌉.
    #[serde(default)]
    pub connections_needed: Option<u64>,
}

/// One entry of `stages`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// 1-based stage number.
    pub stage: u64,
    /// `ramp` or `hold`.
    pub window: String,
    /// Offset from the start of the run, seconds.
    pub start_s: f64,
    /// Length, seconds.
    pub duration_s: f64,
    /// Connections at the start of the window.
    pub connections_from: u64,
    /// Connections at its end (asked).
    pub connections_to: u64,
    /// Connections open at its end.
    pub open_at_end: u64,
    /// `connect()` calls in the window.
    pub connections_opened: u64,
    /// Requests in the window.
    pub requests: u64,
    /// Responses in the window.
    pub responses: u64,
    /// Responses ÷ window length.
    pub responses_per_s: f64,
    /// Reuse rate in the window.
    pub reuse_rate: f64,
    /// Failures in the window.
    pub errors: u64,
    /// The window's phases.
    pub phases: BTreeMap<String, PhaseStats>,
}

/// `ws`: the WebSocket settings (redacted) and counters of a `ws` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ws {
    /// `stream`, `echo` or `ping`.
    pub mode: String,
    /// Subscription messages, redacted.
    pub subscriptions: Vec<String>,
    /// Echo: messages per second per connection.
    pub send_rate: f64,
    /// Echo: bytes per message.
    pub message_size: u64,
    /// Ping mode: interval, seconds.
    pub ping_interval_s: f64,
    /// `--ts-field`.
    pub ts_field: Option<String>,
    /// Timestamp unit in force (given or inferred).
    pub ts_unit: Option<String>,
    /// The unit was inferred.
    pub ts_unit_inferred: bool,
    /// The clock caveat of one-way latency.
    pub latency_note: String,
    /// `--seq-field`.
    pub seq_field: Option<String>,
    /// `--stream-field`.
    pub stream_field: String,
    /// `--stale-after`, seconds.
    pub stale_after_s: Option<f64>,
    /// `off`, `ping` or `text:…`.
    pub heartbeat: String,
    /// Heartbeat interval, seconds.
    pub heartbeat_interval_s: f64,
    /// `--pong-timeout` in force, seconds.
    #[serde(default)]
    pub pong_timeout_s: Option<f64>,
    /// `full` or `decorrelated`.
    pub backoff: String,
    /// Backoff base, seconds.
    pub backoff_base_s: f64,
    /// Backoff cap, seconds.
    pub backoff_cap_s: f64,
    /// `--max-retries`.
    pub max_retries: Option<u64>,
    /// `--reconnect-budget`.
    pub reconnect_budget: Option<ReconnectBudget>,
    /// `--send-buffer`.
    pub send_buffer: u64,
    /// UTF-8 validation of text messages.
    pub utf8_check: bool,
    /// `--max-message`.
    pub max_message: u64,
    /// `connect()` calls.
    #[serde(default)]
    pub connections_attempted: u64,
    /// Connections upgraded (101).
    #[serde(default)]
    pub connections_upgraded: u64,
    /// Attempted − upgraded.
    #[serde(default)]
    pub connections_failed: u64,
    /// Upgraded ÷ attempted.
    #[serde(default)]
    pub success_rate: f64,
    /// Most connections open at once.
    #[serde(default)]
    pub peak_open: u64,
    /// Data messages received.
    #[serde(default)]
    pub messages_in: u64,
    /// Data messages sent.
    #[serde(default)]
    pub messages_out: u64,
    /// Messages received ÷ duration.
    #[serde(default)]
    pub messages_in_per_s: f64,
    /// Subscription messages sent.
    #[serde(default)]
    pub subscriptions_sent: u64,
    /// Reconnections that subscribed again.
    #[serde(default)]
    pub resubscribed: u64,
    /// Reconnects by cause.
    #[serde(default)]
    pub reconnects: BTreeMap<String, u64>,
    /// Their sum.
    #[serde(default)]
    pub reconnects_total: u64,
    /// Connections that gave up after `--max-retries`.
    #[serde(default)]
    pub retries_exhausted: u64,
    /// Close codes received, by code (and `other`).
    #[serde(default)]
    pub close_codes: BTreeMap<String, u64>,
    /// Server pings answered.
    #[serde(default)]
    pub pings_answered: u64,
    /// Pings sent.
    #[serde(default)]
    pub pings_sent: u64,
    /// Pongs received.
    #[serde(default)]
    pub pongs_received: u64,
    /// Sequence gaps.
    #[serde(default)]
    pub seq_gaps: u64,
    /// Messages missing in the gaps.
    #[serde(default)]
    pub seq_missing: u64,
    /// Sequence restarts (went backwards).
    #[serde(default)]
    pub seq_restarts: u64,
    /// Messages without a timestamp.
    #[serde(default)]
    pub ts_missing: u64,
    /// Timestamps in the future.
    #[serde(default)]
    pub ts_future: u64,
    /// Echo messages sent from the send buffer.
    #[serde(default)]
    pub buffered_sent: u64,
    /// Echo messages dropped for a full send buffer.
    #[serde(default)]
    pub buffer_dropped: u64,
}

/// `ws.reconnect_budget`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconnectBudget {
    /// Reconnects allowed per period.
    pub count: u64,
    /// The period, seconds.
    pub period_s: f64,
}

/// A probe report (`connbench probe --json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Always [`super::json::SCHEMA`].
    pub schema: String,
    /// Version of the binary that ran.
    pub connbench_version: String,
    /// Always `"probe"`.
    pub mode: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// The same instant, ms since the Unix epoch.
    pub started_at_unix_ms: i64,
    /// Length of the probe, seconds.
    pub duration_s: f64,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
    /// `--insecure`.
    pub insecure: bool,
    /// The process arguments, redacted.
    pub command_line: Vec<String>,
    /// What was probed.
    pub target: Target,
    /// The probe's settings.
    pub config: ProbeConfig,
    /// The machine that ran it.
    pub host: Host,
    /// The ramp's result.
    pub probe: Probe,
    /// `--confirm`'s passes; null without it.
    pub confirm: Option<Confirm>,
    /// TLS facts; null when not TLS.
    pub tls: Option<Tls>,
    /// Establishment phases.
    pub phases: BTreeMap<String, PhaseStats>,
    /// The client's own cost.
    pub client: ProbeClient,
    /// What may make the finding mislead (absent from reports written before it existed).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// `--start-at`, RFC 3339; null without it.
    #[serde(default)]
    pub start_at: Option<String>,
    /// Actual − asked start, seconds; null without `--start-at`.
    #[serde(default)]
    pub start_skew_s: Option<f64>,
}

/// `config` of a probe report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// What counts as established.
    pub establish: String,
    /// Connections opened per second.
    pub connect_rate: f64,
    /// Most connections to open.
    pub max: u64,
    /// `max` came from the fd limit.
    pub max_from_fd_limit: bool,
    /// Hold, seconds.
    pub hold_s: f64,
    /// Settle, seconds.
    pub settle_s: f64,
    /// Keep-alive interval, seconds.
    pub keepalive_s: Option<f64>,
    /// Pause between confirm passes, seconds.
    pub confirm_pause_s: Option<f64>,
    /// Extra headers, redacted.
    pub headers: Vec<String>,
    /// TCP connect timeout, seconds.
    pub connect_timeout_s: f64,
    /// https / wss.
    pub tls: bool,
    /// TLS session resumption enabled.
    pub resume: bool,
    /// `--sni`.
    pub sni: Option<String>,
    /// `--ca`.
    pub ca_file: Option<String>,
    /// Soft RLIMIT_NOFILE.
    pub fd_limit: u64,
}

/// `probe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Connections admitted when the ramp ended.
    pub limit: u64,
    /// Every one of `max` was established.
    pub reached_max: bool,
    /// The first establishment failure.
    pub first_failure: Option<FirstFailure>,
    /// Establishment failures by label.
    pub failures: BTreeMap<String, u64>,
    /// Their sum.
    pub failures_total: u64,
    /// Held connections lost later, by label.
    pub drops: BTreeMap<String, u64>,
    /// Their sum.
    pub drops_total: u64,
    /// `[t_s, open]` every 100 ms and at the end.
    pub series: Vec<(f64, u64)>,
    /// Survivors of the hold.
    pub survived: Survived,
    /// Connections tried.
    pub attempted: u64,
    /// Connections established.
    pub established: u64,
    /// Still in progress at the end.
    pub unresolved: u64,
    /// Most open at once.
    pub peak_open: u64,
}

/// `probe.survived`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Survived {
    /// Still open after the hold.
    pub survived: u64,
    /// Counted in the limit.
    pub of: u64,
}

/// `probe.first_failure` (and the confirm passes').
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FirstFailure {
    /// Label: an error class, `http_429`, `ws_close_1013`, …
    pub class: String,
    /// This machine's limit.
    pub local: bool,
    /// HTTP status, when the failure was one.
    pub status: Option<u64>,
    /// WebSocket close code, when the failure was one.
    pub close_code: Option<u64>,
    /// Seconds from the start.
    pub at_s: f64,
    /// 1-based connection number.
    pub connection: u64,
}

/// `confirm`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Confirm {
    /// The verdict.
    pub result: String,
    /// Why.
    pub reason: String,
    /// The pass just below the limit.
    pub below: Option<PassSummary>,
    /// The pass just above it.
    pub above: Option<PassSummary>,
}

/// `confirm.below` / `confirm.above`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassSummary {
    /// The pass's `max`.
    pub max: u64,
    /// Its limit.
    pub limit: u64,
    /// It reached `max`.
    pub reached_max: bool,
    /// Its first failure.
    pub first_failure: Option<FirstFailure>,
}

/// `client` of a probe report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeClient {
    /// User CPU time, seconds.
    pub cpu_user_s: f64,
    /// System CPU time, seconds.
    pub cpu_sys_s: f64,
    /// Peak RSS of the process.
    pub peak_rss_bytes: u64,
}

/// The document as a [`serde_json::Value`] (objects with alphabetically ordered keys).
pub fn to_value<T: Serialize>(doc: &T) -> serde_json::Value {
    // Every field is a string, number, bool, list or string-keyed map: this cannot fail.
    serde_json::to_value(doc).expect("report types serialize to JSON")
}
