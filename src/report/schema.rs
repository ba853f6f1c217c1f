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
    /// Connection-rate mode (`--conn-rate`) only.
    #[serde(default)]
    pub conn_rate: Option<ConnRate>,
    /// This host's sockets in TIME_WAIT towards the target; null when unknown or merged.
    #[serde(default)]
    pub time_wait: Option<TimeWait>,
    /// `--threshold` and `--targets` checked against the run; empty when none was asked.
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    /// Why the run measured nothing (`report::threshold` rule 5); null when it measured
    /// something.
    #[serde(default)]
    pub nothing_measured: Option<String>,
}

/// One entry of `thresholds`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The threshold, e.g. `ttfb.p95<180ms`.
    pub threshold: String,
    /// Its metric, e.g. `ttfb.p95`.
    pub metric: String,
    /// `<`, `<=`, `>`, `>=`, `==` or `!=`.
    pub op: String,
    /// The value compared with, in `unit`.
    pub limit: f64,
    /// `ns`, `ratio` (0..1), `count` or `per_s`.
    pub unit: String,
    /// What was measured, in `unit`; null when the metric had no sample, or when only
    /// `bounds` are known.
    pub measured: Option<f64>,
    /// `[low, high]` when the value is known only within bounds (`setup` over TLS); else null.
    pub bounds: Option<(f64, f64)>,
    /// The threshold held.
    pub pass: bool,
    /// `threshold` (`--threshold`) or `seed` (`--targets seed`).
    pub origin: String,
    /// `--targets seed`: the target in the seed's words; else null.
    pub target: Option<String>,
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
    /// Requests per connection before connbench closes it; null: keep-alive.
    #[serde(default)]
    pub requests_per_conn: Option<u64>,
    /// How connbench closes connections (`fin`, `rst`); null for WebSocket runs.
    #[serde(default)]
    pub close: Option<String>,
    /// `--busy-poll`: the workers spun instead of sleeping.
    #[serde(default)]
    pub busy_poll: bool,
    /// SO_BUSY_POLL set on every socket, µs; null without `--busy-poll` or when refused.
    #[serde(default)]
    pub so_busy_poll_us: Option<u64>,
    /// Why the kernel refused SO_BUSY_POLL; null when it was set or not asked for.
    #[serde(default)]
    pub so_busy_poll_error: Option<String>,
    /// `--percentiles` (empty in reports written before it existed).
    #[serde(default)]
    pub percentiles: Vec<f64>,
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
    /// 95th percentile; null when empty (and in reports written before it existed).
    #[serde(default)]
    pub p95: Option<u64>,
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
    /// The `--percentiles` of the run, in increasing order.
    #[serde(default)]
    pub percentiles: Vec<PercentileValue>,
}

/// One entry of `phases.*.percentiles`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PercentileValue {
    /// The percentile, e.g. 99.9 (100: the maximum).
    pub percentile: f64,
    /// Its value, ns; null when the phase is empty.
    pub value: Option<u64>,
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

/// `conn_rate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnRate {
    /// New connections per second asked for.
    pub asked_per_s: f64,
    /// `connect()` calls ÷ duration.
    pub opened_per_s: f64,
    /// Due and never opened.
    pub unopened: u64,
}

/// `time_wait`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeWait {
    /// Before the run.
    pub at_start: u64,
    /// After the run.
    pub at_end: u64,
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
    /// Responses in the window by status class (`1xx` … `other`, every key).
    #[serde(default)]
    pub responses_by_class: BTreeMap<String, u64>,
    /// Failures in the window by error class (every class).
    #[serde(default)]
    pub errors_by_class: BTreeMap<String, u64>,
    /// The window's error rate (http: failures and non-2xx/3xx responses over responses and
    /// failures; ws: failures over connections attempted).
    #[serde(default)]
    pub error_rate: f64,
    /// Requests in the window ÷ its length.
    #[serde(default)]
    pub requests_per_s: f64,
    /// The total rate the window asked for (its stage's `@RATE`, or the run's `-R`); null in
    /// closed loop.
    #[serde(default)]
    pub asked_per_s: Option<f64>,
    /// WebSocket runs: the window's connections, messages and reconnects; null for HTTP.
    #[serde(default)]
    pub ws: Option<StageWs>,
    /// The window's phases.
    pub phases: BTreeMap<String, PhaseStats>,
}

/// `stages[].ws`: what a WebSocket stage window got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageWs {
    /// `connect()` calls in the window.
    pub connections_attempted: u64,
    /// Upgrades validated (101) in the window.
    pub connections_upgraded: u64,
    /// Attempted − upgraded (0 when more upgraded than were attempted in the window).
    pub connections_failed: u64,
    /// Messages received in the window.
    pub messages_in: u64,
    /// `messages_in` ÷ the window's length.
    pub messages_in_per_s: f64,
    /// Reconnects by cause (every cause).
    pub reconnects: BTreeMap<String, u64>,
    /// Their sum.
    pub reconnects_total: u64,
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
    /// `--threshold` and `--targets` checked against the probe; empty when none was asked.
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    /// Why the probe measured nothing; null when it established a connection.
    #[serde(default)]
    pub nothing_measured: Option<String>,
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
    /// `--percentiles`.
    #[serde(default)]
    pub percentiles: Vec<f64>,
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

/// The document `connbench compare --json` writes ([`super::compare::SCHEMA`]): B against A,
/// per phase and statistic. Its fields are documented in [`super::compare`]'s module doc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Always [`super::compare::SCHEMA`].
    pub schema: String,
    /// Version of the binary that compared.
    pub connbench_version: String,
    /// `"http"` or `"ws"`: the mode of both reports.
    pub mode: String,
    /// The baseline.
    pub a: CompareInput,
    /// The run compared with it.
    pub b: CompareInput,
    /// Settings of the two runs that differ.
    pub settings_differ: Vec<SettingDiff>,
    /// How noise was judged.
    pub method: CompareMethod,
    /// Per phase with samples in either report, by phase name.
    pub phases: BTreeMap<String, PhaseComparison>,
    /// Responses (http) or messages received (ws) per second; null when a window is empty.
    pub throughput: Option<CompareRow>,
    /// Failures ÷ attempts; null when a run made no attempt.
    pub error_rate: Option<CompareRow>,
    /// `--fail-on-regression`; null without it.
    pub regression: Option<RegressionCheck>,
}

/// `a` / `b` of a comparison: which report, of which run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareInput {
    /// The file as named on the command line.
    pub file: String,
    /// Target URL (already redacted in the report).
    pub url: String,
    /// Start of the measured window, RFC 3339.
    pub started_at: String,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
}

/// One setting in which the two runs differ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingDiff {
    /// The report field, e.g. `target.url`.
    pub field: String,
    /// A's value, as JSON text.
    pub a: String,
    /// B's value, as JSON text.
    pub b: String,
}

/// `method` of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareMethod {
    /// Always `"bootstrap"` (percentiles and mean; throughput and error rate use the
    /// intervals named in the module doc).
    pub statistic: String,
    /// Share of the replicates the interval covers (0.99).
    pub confidence: f64,
    /// Bootstrap replicates per row.
    pub resamples: u64,
    /// Smallest change that can be beyond noise, % of A (`--min-change`).
    pub min_change_pct: f64,
    /// Most samples of a run counted as independent (`--effective-samples`).
    pub effective_samples: u64,
    /// Seed of the generator.
    pub seed: u64,
}

/// Which report a phase has samples in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Both: compared.
    Both,
    /// Only A.
    A,
    /// Only B.
    B,
}

/// What a change means once noise is taken into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Latency up, or throughput down, beyond noise.
    Slower,
    /// Latency down, or throughput up, beyond noise.
    Faster,
    /// Within noise.
    NoChange,
    /// Error rate up beyond noise.
    MoreErrors,
    /// Error rate down beyond noise.
    FewerErrors,
    /// Too few samples to judge, or the max (one sample).
    NotJudged,
}

impl Verdict {
    /// The words the text output shows.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Slower => "slower",
            Verdict::Faster => "faster",
            Verdict::NoChange => "no change (within noise)",
            Verdict::MoreErrors => "more errors",
            Verdict::FewerErrors => "fewer errors",
            Verdict::NotJudged => "not judged",
        }
    }
}

/// `phases.{phase}` of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseComparison {
    /// Which report has samples.
    #[serde(rename = "in")]
    pub present_in: Presence,
    /// A's samples.
    pub count_a: u64,
    /// B's samples.
    pub count_b: u64,
    /// By statistic (`p50` … `p999`, `max`, `mean`); empty unless both have samples.
    pub stats: BTreeMap<String, CompareRow>,
}

/// One compared value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareRow {
    /// `ns` (latency), `per_s` (throughput) or `fraction` (error rate).
    pub unit: String,
    /// A's value.
    pub a: f64,
    /// B's value.
    pub b: f64,
    /// B − A.
    pub change: f64,
    /// (B − A) ÷ A × 100; null when A is 0.
    pub change_pct: Option<f64>,
    /// Lower end of the interval of B − A; null when not judged.
    pub low: Option<f64>,
    /// Upper end of the interval of B − A; null when not judged.
    pub high: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// `regression` of a comparison: the `--fail-on-regression` check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionCheck {
    /// `--fail-on-regression PCT`.
    pub threshold_pct: f64,
    /// The rows checked, `phase.stat` (`ttfb.p99`).
    pub checked: Vec<String>,
    /// Those slower by more than the threshold and beyond noise.
    pub failed: Vec<String>,
    /// No row failed.
    pub passed: bool,
}

/// A floor report (`connbench floor --json`), documented in [`super::floor`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloorReport {
    /// Always [`super::json::SCHEMA`].
    pub schema: String,
    /// Version of the binary that ran.
    pub connbench_version: String,
    /// Always `"floor"`.
    pub mode: String,
    /// When the first measurement started, RFC 3339 UTC.
    pub started_at: String,
    /// The same instant, ms since the Unix epoch.
    pub started_at_unix_ms: i64,
    /// How long all measurements took, seconds.
    pub duration_s: f64,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
    /// `--insecure`.
    pub insecure: bool,
    /// The process arguments, redacted.
    pub command_line: Vec<String>,
    /// What was measured against.
    pub target: Target,
    /// The floor's settings.
    pub config: FloorConfig,
    /// The machine that ran it.
    pub host: Host,
    /// Per layer, by layer name.
    pub layers: BTreeMap<String, FloorLayer>,
    /// What connbench adds over the raw round trip.
    pub verdict: FloorVerdict,
    /// The process's own cost.
    pub client: FloorClient,
}

/// `config` of a floor report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloorConfig {
    /// How long each measurement ran, seconds.
    pub measurement_s: f64,
    /// The verdict is for a busy-polling client (`--busy-poll`).
    pub busy_poll: bool,
    /// CPU of the pinned rows' client; null when nothing was pinned.
    pub client_cpu: Option<u64>,
    /// CPUs of the built-in target of the pinned rows.
    pub target_cpus: Vec<u64>,
    /// SO_BUSY_POLL set by the busy-poll rows, µs; null when the kernel refused it.
    pub so_busy_poll_us: Option<u64>,
    /// Why the kernel refused SO_BUSY_POLL; null when set.
    pub so_busy_poll_error: Option<String>,
    /// Bytes of each raw ping.
    pub ping_bytes: u64,
    /// WebSocket echo: messages per second, bytes each.
    pub ws_send_rate: f64,
    /// WebSocket echo: bytes per message.
    pub ws_message_bytes: u64,
    /// Timer measurement: how far ahead each wake-up is asked for, µs.
    pub timer_ahead_us: f64,
    /// Clock measurement: reads per sample.
    pub clock_batch: u64,
    /// `--echo` address used; null with the built-in target or without `--echo`.
    pub echo: Option<String>,
    /// `--ws` URL used, redacted; null with the built-in target or without `--ws`.
    pub ws_url: Option<String>,
}

/// One entry of `layers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloorLayer {
    /// What the text report calls it.
    pub title: String,
    /// What one operation is (CPU per operation divides by it).
    pub op: String,
    /// The layer was measured.
    pub available: bool,
    /// Why not; null when measured.
    pub reason: Option<String>,
    /// Per mode, by mode name; empty when not measured.
    pub variants: BTreeMap<String, FloorVariant>,
    /// The mode with the lowest median.
    pub lowest: Option<String>,
    /// Busy-poll minus sleeping median, ns.
    pub busy_poll_minus_sleep_p50_ns: Option<i64>,
    /// `busy_poll`, `sleep` or `equal`.
    pub lower_wait: Option<String>,
    /// Pinned minus not pinned median, ns.
    pub pinned_minus_unpinned_p50_ns: Option<i64>,
    /// `pinned`, `unpinned` or `equal`.
    pub lower_pinning: Option<String>,
}

/// One entry of `layers.*.variants`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloorVariant {
    /// Busy-polling.
    pub busy_poll: bool,
    /// Pinned.
    pub pinned: bool,
    /// Measured, with samples.
    pub available: bool,
    /// Why not; null when measured.
    pub reason: Option<String>,
    /// The samples; null when not measured.
    pub stats: Option<PhaseStats>,
    /// Operations.
    pub ops: u64,
    /// CPU per operation, µs.
    pub cpu_per_op_us: Option<f64>,
    /// Operations that failed.
    pub errors: u64,
    /// What went wrong, or what else is worth knowing.
    pub note: Option<String>,
}

/// `verdict` of a floor report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloorVerdict {
    /// The rows compared were busy-polling.
    pub busy_poll: bool,
    /// The rows compared were pinned.
    pub pinned: bool,
    /// Raw TCP round trip, p50 ns.
    pub raw_rtt_p50_ns: Option<u64>,
    /// HTTP keep-alive TTFB, p50 ns.
    pub http_ttfb_p50_ns: Option<u64>,
    /// HTTP minus raw, ns.
    pub adds_ns: Option<i64>,
    /// Client CPU per HTTP request, µs.
    pub cpu_per_request_us: Option<f64>,
    /// Why there is no comparison.
    pub missing: Option<String>,
}

/// `client` of a floor report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloorClient {
    /// Peak RSS of the process (the built-in target included).
    pub peak_rss_bytes: u64,
}

/// The document as a [`serde_json::Value`] (objects with alphabetically ordered keys).
pub fn to_value<T: Serialize>(doc: &T) -> serde_json::Value {
    // Every field is a string, number, bool, list or string-keyed map: this cannot fail.
    serde_json::to_value(doc).expect("report types serialize to JSON")
}
