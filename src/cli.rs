//! Command-line definitions (clap derive) and their validation into plain values.
//!
//! Everything here is pure: parsing of durations, CPU lists, headers and URLs, with errors that
//! name the problem and the fix. Resolving hosts, reading files and starting the built-in target
//! happen in `app`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod validate;
pub use validate::{parse, parse_stages, try_parse_from, Given, Stages};

/// A bad command-line value: one line for the user, exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// connbench: per-phase HTTP/1.1 and TLS latency from pinned event-loop workers.
#[derive(Debug, Parser)]
#[command(name = "connbench", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,

    /// The flags the user typed (not defaults); filled in by [`parse`] / [`try_parse_from`].
    #[arg(skip)]
    pub given: Given,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load an HTTP/1.1 or HTTPS server with keep-alive connections and time every phase.
    Http(Box<HttpArgs>),
    /// Open WebSocket connections, subscribe, and time every phase and every message.
    Ws(Box<WsArgs>),
    /// Find how many concurrent connections a server accepts and how it refuses the next one.
    Probe(Box<ProbeArgs>),
    /// Run the built-in loopback target (HTTP/1.1 keep-alive, plain and TLS).
    Serve(Box<ServeArgs>),
    /// Run the Autobahn|Testsuite fuzzing server's cases against connbench's WebSocket client.
    Autobahn(AutobahnArgs),
    /// Merge the JSON reports of simultaneous runs (several processes or machines) exactly.
    Merge(MergeArgs),
    /// Compare two run reports: B against A, per phase and percentile, beyond noise or not.
    ///
    /// For each phase both reports have samples of: count, p50, p90, p95, p99, p99.9, max and
    /// mean of A and B, the change (absolute and %), its 99 % interval and a verdict: "slower",
    /// "faster", "no change (within noise)", or "not judged" (too few samples for that
    /// statistic: p50 needs 8 per run, p99 528; the max is one sample, never judged); then
    /// throughput (responses or messages per second) and error rate. A phase only one report
    /// has samples of is listed, not compared.
    ///
    /// Method: a bootstrap of B − A resampled from each run's recorded HdrHistogram (2,000
    /// replicates, fixed seed: the same reports always give the same output). Each replicate
    /// draws min(n, --effective-samples) samples per run (exactly, through the order statistic,
    /// so the work does not grow with n): samples of one run are not independent (a stall
    /// delays every request in flight, the machine's load drifts between runs), and a plain
    /// bootstrap calls the difference between two runs of one setup significant. A change is
    /// beyond noise when its 99 % interval excludes zero AND it is at least --min-change % of
    /// A. Throughput: Poisson counts (conditional binomial, Wilson interval). Error rate:
    /// Newcombe's interval of the difference of two proportions, no floor. compare cannot
    /// tell a busier machine from a slower target: run A and B on a quiet machine, or at the
    /// same time.
    ///
    /// Exit codes: 0 compared (and the --fail-on-regression check passed), 1 that check failed,
    /// 2 bad input (not a run report, different modes, missing or damaged histograms).
    Compare(CompareArgs),
    /// The client-side floor of this machine: raw TCP round trip, TCP connect, TLS handshakes,
    /// HTTP TTFB and WebSocket echo at one connection, clock and timer costs, each sleeping
    /// and busy-polling, pinned and not; and what connbench adds over the raw round trip.
    Floor(Box<FloorArgs>),
    /// Draw reports as SVG: percentile distributions, latency over time, stages, probe ramps.
    Plot(PlotArgs),
}

/// `connbench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline: a report written with --json by `connbench http` or `connbench ws`.
    #[arg(value_name = "A.json")]
    pub a: String,

    /// The run compared with the baseline (same mode).
    #[arg(value_name = "B.json")]
    pub b: String,

    /// Write the comparison as JSON here ("-" for stdout; the table then goes to stderr).
    #[arg(long = "json", value_name = "FILE")]
    pub json: Option<String>,

    /// Exit 1 when a checked row (see --metric) got slower by more than PCT % of A and beyond
    /// noise.
    #[arg(
        long = "fail-on-regression",
        value_name = "PCT",
        allow_negative_numbers = true
    )]
    pub fail_on_regression: Option<f64>,

    /// The rows --fail-on-regression checks, comma-separated: a statistic (p50, p90, p95, p99,
    /// p99.9, mean) of every compared phase that has enough samples to judge it, or PHASE.STAT
    /// (ttfb.p99), which must have them [default: p50,p95,p99]
    #[arg(long = "metric", value_name = "LIST", value_delimiter = ',')]
    pub metric: Vec<String>,

    /// A change smaller than PCT % of A is never beyond noise (the variation between runs of
    /// the same setup on one machine).
    #[arg(
        long = "min-change",
        value_name = "PCT",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub min_change: f64,

    /// Most samples of a run the bootstrap counts as independent; raise it on a quiet,
    /// dedicated machine to see smaller changes in the tails.
    #[arg(long = "effective-samples", value_name = "N", default_value_t = 300)]
    pub effective_samples: u64,
}

/// `connbench floor`.
#[derive(Debug, Args)]
pub struct FloorArgs {
    /// http:// or https:// URL whose host and port to measure against (HTTP TTFB asks for its
    /// path). Omitted, or a path: the built-in target, started in this process on loopback
    /// on a CPU apart from the client.
    pub url: Option<String>,

    /// How long each measurement (one layer in one mode) runs; floor makes 30 of them.
    #[arg(short = 'd', long = "duration", value_parser = parse_duration, default_value = "750ms")]
    pub duration: Duration,

    /// Give the verdict and the client CPU per request for a busy-polling client (what
    /// `http --busy-poll` sees) instead of a sleeping one. Every layer is measured both ways
    /// regardless.
    #[arg(long = "busy-poll")]
    pub busy_poll: bool,

    /// With a URL: HOST:PORT of a raw TCP echo service on that host (e.g. `connbench serve
    /// --echo 7007` there), for the raw round trip.
    #[arg(long = "echo", value_name = "HOST:PORT")]
    pub echo: Option<String>,

    /// With a URL: a WebSocket echo endpoint (ws:// or wss://, e.g. the built-in target's
    /// /echo), for the WebSocket round trip.
    #[arg(long = "ws", value_name = "URL")]
    pub ws: Option<String>,

    /// Trust the certificates in this PEM file too (https:// URL, wss:// --ws).
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Do not verify the certificate chain or name (signatures are still checked).
    #[arg(long = "insecure", short = 'k')]
    pub insecure: bool,

    /// TLS server name to send and verify instead of the URL host.
    #[arg(long = "sni", value_name = "NAME")]
    pub sni: Option<String>,

    /// Write the JSON report here ("-" for stdout; the text summary then goes to stderr).
    #[arg(long = "json", value_name = "FILE")]
    pub json: Option<String>,

    /// No start banner.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

/// `connbench plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Reports written with --json (http, ws, probe or merge); several are overlaid.
    #[arg(value_name = "REPORT.json", required = true)]
    pub reports: Vec<String>,

    /// Write the SVG here ("-" for stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE.svg", required = true)]
    pub output: String,

    /// Legend name of each report, in order (repeatable) [default: the file name].
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,

    /// The interval log (--hlog) of each report, in order (repeatable): latency and throughput
    /// over time.
    #[arg(long = "hlog", value_name = "FILE")]
    pub hlogs: Vec<String>,

    /// Charts, comma-separated [default: each the inputs have data for].
    #[arg(long = "chart", value_enum, value_name = "LIST", value_delimiter = ',')]
    pub charts: Vec<ChartArg>,

    /// Phases, comma-separated (e.g. ttfb,total) [default: percentiles every phase with
    /// samples; time and stages the headline phase: corrected, total, latency or rtt].
    #[arg(long = "phase", value_name = "LIST", value_delimiter = ',')]
    pub phases: Vec<String>,
}

/// `--chart` of `connbench plot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChartArg {
    /// Each phase's latency by percentile (HdrHistogram, log "nines" axis), reports overlaid.
    Percentiles,
    /// p50, p99, max and throughput per interval (needs --hlog), stage windows marked.
    Time,
    /// Latency and error rate against connections, one point per stage (staged runs).
    Stages,
    /// Open connections over time, limit and first failure (probe reports).
    Ramp,
}

/// `connbench merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Reports written with --json by runs of the same mode.
    #[arg(value_name = "REPORT.json", required = true)]
    pub reports: Vec<String>,

    /// Write the merged report here ("-" for stdout; the text summary then goes to stderr).
    #[arg(long = "json", value_name = "FILE")]
    pub json: Option<String>,

    /// Merge even if the measured windows overlap by less than half of the shortest one.
    #[arg(long = "allow-disjoint")]
    pub allow_disjoint: bool,

    /// Merge even if the runs used different URLs, methods, bodies, pipelines or TLS settings.
    #[arg(long = "allow-mixed")]
    pub allow_mixed: bool,

    /// Also merge the runs' interval logs into this one (needs --hlog-in): one-second windows
    /// on absolute time, each the exact sum of the inputs' intervals.
    #[arg(long = "hlog", value_name = "FILE")]
    pub hlog: Option<String>,

    /// The runs' --hlog files, one per report and in the reports' order (each is checked
    /// against its report).
    #[arg(long = "hlog-in", value_name = "FILE", num_args = 1..)]
    pub hlog_in: Vec<String>,

    /// Also write a self-contained HTML page here: the merged summary and its plots.
    #[arg(long = "html", value_name = "FILE")]
    pub html: Option<String>,
}

/// `connbench autobahn`.
#[derive(Debug, Args)]
pub struct AutobahnArgs {
    /// The fuzzing server (`wstest -m fuzzingserver`), ws://HOST:PORT.
    #[arg(long = "url", default_value = "ws://127.0.0.1:9001")]
    pub url: String,

    /// Agent name the reports are filed under.
    #[arg(long = "agent", default_value = "connbench")]
    pub agent: String,

    /// Cases to run, 1-based (e.g. 1-10,42) [default: all the server has].
    #[arg(long = "cases", value_name = "LIST", value_parser = crate::autobahn::parse_cases)]
    pub cases: Option<crate::autobahn::CaseList>,
}

/// `--arrival` of rate mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalArg {
    /// Exactly 1/rate apart.
    Uniform,
    /// Exponential gaps (a Poisson process) with mean 1/rate.
    Poisson,
}

/// `--mode` of `connbench ws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WsModeArg {
    /// Receive what the server pushes after the subscriptions.
    Stream,
    /// Send --send-rate messages per connection carrying a send timestamp; time the echoes.
    Echo,
    /// Send protocol pings every --ping-interval; time the pongs.
    Ping,
}

/// `--backoff` of `connbench ws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JitterArg {
    /// sleep = random(0, min(cap, base·2^attempt)).
    Full,
    /// sleep = min(cap, random(base, previous·3)).
    Decorrelated,
}

/// `connbench ws`.
#[derive(Debug, Args)]
pub struct WsArgs {
    /// ws:// or wss:// URL. Omitted, or a path (/ws, /echo): the built-in target is started in
    /// this process and used.
    pub url: Option<String>,

    /// Connections, workers, pinning, timing, output.
    #[command(flatten)]
    pub load: LoadArgs,

    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Run for this long (after --warmup).
    #[arg(short = 'd', long = "duration", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// Ramp profile CONNS@RAMP+HOLD,… (e.g. 25@0s+60s,100@10s+30s): connections opened
    /// gradually over each ramp, then held, closed normally when a ramp goes down; each window
    /// is reported apart. Stream and ping modes. Given more than once: one run per list, one
    /// after the other, then a summary table.
    #[arg(long = "stages", value_name = "SPEC", value_parser = parse_stages,
          conflicts_with_all = ["duration", "connections", "scenario"])]
    pub stages: Vec<Stages>,

    /// One of the seed's WebSocket scenarios, numbered as the seed numbers them: 1 (25
    /// connections for 60 s), 2 (100 for 90 s), 3 (250 for 60 s), all opened at once; all: the
    /// three one after the other, then a summary table.
    #[arg(long = "scenario", value_name = "N", value_parser = ["1", "2", "3", "all"],
          conflicts_with_all = ["duration", "connections"])]
    pub scenario: Option<String>,

    /// Message sent after the upgrade (repeatable). {exchange}, {channel} and {symbol} expand
    /// over --exchanges/--channels/--symbols; {conn} is the connection's index.
    #[arg(long = "subscribe", value_name = "TEMPLATE")]
    pub subscribe: Vec<String>,

    /// Values of {exchange}, comma-separated.
    #[arg(long = "exchanges", value_name = "LIST", value_delimiter = ',')]
    pub exchanges: Vec<String>,

    /// Values of {channel}, comma-separated.
    #[arg(long = "channels", value_name = "LIST", value_delimiter = ',')]
    pub channels: Vec<String>,

    /// Values of {symbol}, comma-separated.
    #[arg(long = "symbols", value_name = "LIST", value_delimiter = ',')]
    pub symbols: Vec<String>,

    /// What each connection does once upgraded.
    #[arg(long = "mode", value_enum, default_value = "stream")]
    pub mode: WsModeArg,

    /// Echo mode: messages per second per connection.
    #[arg(long = "send-rate", default_value_t = 10.0)]
    pub send_rate: f64,

    /// Echo mode at a constant total rate: this many messages per second across all
    /// connections (instead of --send-rate per connection).
    #[arg(short = 'R', long = "rate", conflicts_with = "send_rate")]
    pub rate: Option<f64>,

    /// Echo mode: bytes per message (at least the ~40-byte timestamp envelope).
    #[arg(long = "message-size", default_value_t = 64)]
    pub message_size: usize,

    /// Ping mode: interval between protocol pings.
    #[arg(long = "ping-interval", value_parser = parse_duration, default_value = "1s")]
    pub ping_interval: Duration,

    /// JSON path of the server's timestamp in each message (e.g. timestamp, E, data.ts): gives
    /// one-way message latency (assumes synchronized clocks).
    #[arg(long = "ts-field", value_name = "PATH")]
    pub ts_field: Option<String>,

    /// Unit of --ts-field: s, ms, us or ns [default: inferred from its magnitude].
    #[arg(long = "ts-unit", value_name = "UNIT")]
    pub ts_unit: Option<String>,

    /// JSON path of a per-stream sequence number: counts gaps and missing messages.
    #[arg(long = "seq-field", value_name = "PATH")]
    pub seq_field: Option<String>,

    /// JSON path of the stream name that sequence numbers belong to.
    #[arg(long = "stream-field", value_name = "PATH", default_value = "stream")]
    pub stream_field: String,

    /// Do not validate text messages as UTF-8 (raw speed).
    #[arg(long = "no-utf8-check")]
    pub no_utf8_check: bool,

    /// Largest message accepted, in bytes (bigger: protocol error, close 1009).
    #[arg(long = "max-message", default_value_t = 16 * 1024 * 1024)]
    pub max_message: usize,

    /// Reconnect backoff jitter.
    #[arg(long = "backoff", value_enum, default_value = "full")]
    pub backoff: JitterArg,

    /// Reconnect backoff base.
    #[arg(long = "backoff-base", value_parser = parse_duration, default_value = "100ms")]
    pub backoff_base: Duration,

    /// Reconnect backoff cap.
    #[arg(long = "backoff-cap", value_parser = parse_duration, default_value = "10s")]
    pub backoff_cap: Duration,

    /// Give a connection up after this many failed attempts in a row [default: never].
    #[arg(long = "max-retries", value_name = "N")]
    pub max_retries: Option<u32>,

    /// At most K reconnects per period, e.g. 300/5m (Binance's per-IP limit).
    #[arg(long = "reconnect-budget", value_name = "K/PERIOD")]
    pub reconnect_budget: Option<String>,

    /// No data message for this long: replace the connection.
    #[arg(long = "stale-after", value_parser = parse_duration)]
    pub stale_after: Option<Duration>,

    /// Client heartbeat: ping (protocol ping), or text:MESSAGE (e.g. text:ping, 'text:{"op":"ping"}').
    #[arg(long = "heartbeat", value_name = "KIND")]
    pub heartbeat: Option<String>,

    /// Interval of --heartbeat.
    #[arg(long = "heartbeat-interval", value_parser = parse_duration, default_value = "20s")]
    pub heartbeat_interval: Duration,

    /// Protocol pings (--heartbeat ping, --mode ping): a ping unanswered this long means the
    /// peer is gone; replace the connection [default with --heartbeat ping: the heartbeat
    /// interval; with --mode ping: never].
    #[arg(long = "pong-timeout", value_name = "DURATION", value_parser = parse_duration)]
    pub pong_timeout: Option<Duration>,

    /// Echo messages kept while a connection is down, sent after resubscribing.
    #[arg(long = "send-buffer", default_value_t = 1000)]
    pub send_buffer: usize,

    /// Pass/fail and percentiles.
    #[command(flatten)]
    pub verdict: VerdictArgs,
}

/// Expand subscription templates over the lists: each template is repeated for every
/// combination of the lists its placeholders use (exchange-major), `{conn}` is left for the
/// engine to fill per connection.
pub fn expand_subscriptions(
    templates: &[String],
    exchanges: &[String],
    channels: &[String],
    symbols: &[String],
) -> Result<Vec<String>, UsageError> {
    let mut out = Vec::new();
    for t in templates {
        let lists: [(&str, &str, &[String]); 3] = [
            ("{exchange}", "--exchanges", exchanges),
            ("{channel}", "--channels", channels),
            ("{symbol}", "--symbols", symbols),
        ];
        let mut variants = vec![t.clone()];
        for (ph, flag, values) in lists {
            if !t.contains(ph) {
                continue;
            }
            if values.is_empty() {
                return usage(format!(
                    "--subscribe template uses {ph} but {flag} is empty (e.g. {flag} a,b)"
                ));
            }
            variants = variants
                .iter()
                .flat_map(|v| values.iter().map(move |x| v.replace(ph, x)))
                .collect();
        }
        out.extend(variants);
    }
    Ok(out)
}

/// Flags every load command shares: connections, workers, pinning, timing, output.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Concurrent connections (across all workers).
    #[arg(short = 'c', long = "connections", default_value_t = 10)]
    pub connections: usize,

    /// Worker threads [default: the CPUs this process may use, at most one per connection].
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,

    /// Run this long before measuring; nothing from the warm-up is reported.
    #[arg(long = "warmup", value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// A TCP connect (or TLS handshake, or WebSocket upgrade) not done after this long fails.
    #[arg(long = "connect-timeout", value_parser = parse_duration, default_value = "5s")]
    pub connect_timeout: Duration,

    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Do not pin worker threads to CPUs.
    #[arg(long = "no-pin", conflicts_with = "cpus")]
    pub no_pin: bool,

    /// Pin workers to these CPUs, e.g. 2,3 or 0-3 (one worker per CPU by default).
    #[arg(long = "cpus", value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,

    /// Write the JSON report here ("-" for stdout; the text summary then goes to stderr).
    #[arg(long = "json", value_name = "FILE")]
    pub json: Option<String>,

    /// Write an HdrHistogram interval log here: one interval per second, one tag per phase.
    #[arg(long = "hlog", value_name = "FILE")]
    pub hlog: Option<String>,

    /// Also write a self-contained HTML page here (summary and plots, including latency over
    /// time; no scripts, nothing fetched).
    #[arg(long = "html", value_name = "FILE")]
    pub html: Option<String>,

    /// No live progress line and no start banner.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,

    /// The live progress line on stderr: auto (when stderr is a terminal), always (on a
    /// terminal redrawn in place, else one line a second), never [default: auto; never with
    /// --quiet].
    #[arg(long = "progress", value_name = "WHEN", value_parser = validate::parse_progress)]
    pub progress: Option<crate::plan::ProgressWhen>,

    /// Show on stderr what the first 3 connections receive (their first 2 reads or messages,
    /// redacted), every WebSocket reconnection (cause, attempt, delay) and each threshold
    /// evaluation; at most 200 lines.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Local source addresses, taken round-robin by connection: e.g. 127.0.0.1-127.0.0.16,
    /// 127.0.0.5,127.0.0.6 or ::1. Same address family as the target. Each address has its own
    /// ~28k ephemeral ports per destination.
    #[arg(long = "source", value_name = "LIST", value_parser = parse_source_list)]
    pub source: Option<SourceList>,

    /// Spin instead of sleeping: every worker polls with a zero timeout (one whole CPU each)
    /// and sets SO_BUSY_POLL on its sockets where the kernel allows it. The lowest latency at
    /// a few connections (see `connbench floor`).
    #[arg(long = "busy-poll")]
    pub busy_poll: bool,

    /// Prepare everything, then open the connections and begin measuring at this instant
    /// (wall clock): RFC 3339 (2026-11-30T15:40:00Z) or Unix seconds (1795966800.5). Give
    /// every machine of a multi-machine run the same value.
    #[arg(long = "start-at", value_name = "TIME", value_parser = validate::parse_start_at)]
    pub start_at: Option<validate::StartAt>,
}

/// TLS flags of the load commands.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Trust the certificates in this PEM file too (e.g. `connbench serve --cert-out`).
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Do not verify the certificate chain or name (signatures are still checked).
    #[arg(long = "insecure", short = 'k')]
    pub insecure: bool,

    /// TLS server name to send and verify instead of the URL host.
    #[arg(long = "sni", value_name = "NAME")]
    pub sni: Option<String>,

    /// Disable TLS session resumption: every connection does a full handshake.
    #[arg(long = "no-resume")]
    pub no_resume: bool,

    /// With the built-in target: use its TLS port instead of the plain one.
    #[arg(long = "tls")]
    pub builtin_tls: bool,
}

/// `--targets`: a named set of pass/fail targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetsArg {
    /// The seed article's: connection setup < 50 ms, TTFB P95 < 180 ms, reuse > 95 %, error
    /// rate < 0.1 %, >= 500 connections (probe).
    Seed,
}

/// Pass/fail and percentile flags of `http`, `ws` and `probe` (checked in
/// [`validate::check_verdict`]).
#[derive(Debug, Args)]
pub struct VerdictArgs {
    /// Pass/fail criterion METRIC OP VALUE, k6-style (repeatable), e.g. 'ttfb.p95<180ms',
    /// 'errors.rate<0.1%', 'reuse>95%', 'status.5xx==0': any failing makes the exit code 1.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,

    /// Check a named set of targets and print its verdict table.
    #[arg(long = "targets", value_name = "SET", value_enum)]
    pub targets: Option<TargetsArg>,

    /// Percentiles of the text tables and the JSON summaries, e.g. 50,90,95,99,99.9,99.99
    /// (above 0, at most 100 = the maximum) [default: 50,90,95,99,99.9].
    #[arg(long = "percentiles", value_name = "LIST")]
    pub percentiles: Option<String>,

    /// Exit 0 even when the run measured nothing (every connection refused, every response an
    /// error, no WebSocket data); the reason is still printed.
    #[arg(long = "allow-nothing-measured")]
    pub allow_nothing_measured: bool,
}

/// `connbench http`.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Target URL (http:// or https://). Omitted, or a path like /delay/1000: the built-in
    /// target is started in this process on loopback and loaded.
    pub url: Option<String>,

    /// Connections, workers, pinning, timing, output.
    #[command(flatten)]
    pub load: LoadArgs,

    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Run for this long (e.g. 10s, 500ms, 2m). Excludes --warmup.
    #[arg(short = 'd', long = "duration", value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// Send exactly this many requests, then stop.
    #[arg(short = 'n', long = "requests")]
    pub requests: Option<u64>,

    /// Constant rate: this many requests per second in total, on an open-loop schedule; latency
    /// is also measured from each request's intended send time ("corrected").
    #[arg(short = 'R', long = "rate", conflicts_with = "requests")]
    pub rate: Option<f64>,

    /// Ramp profile CONNS@RAMP+HOLD[@RATE],… (e.g. 50@10s+30s,200@20s+45s): connections
    /// opened gradually over each ramp, then held; each window is reported apart. @RATE (e.g.
    /// 50@10s+30s@50/s) paces that stage at RATE requests per second in total, as -R does.
    /// Given more than once: one run per list, one after the other, then a summary table.
    #[arg(long = "stages", value_name = "SPEC", value_parser = parse_stages,
          conflicts_with_all = ["requests", "duration", "connections", "scenario"])]
    pub stages: Vec<Stages>,

    /// One of the seed's scenarios: light (50@10s+30s), medium (200@20s+45s), heavy
    /// (500@30s+60s); all: the three one after the other, then a summary table.
    #[arg(long = "scenario", value_name = "NAME",
          value_parser = ["light", "medium", "heavy", "all"],
          conflicts_with_all = ["requests", "duration", "connections"])]
    pub scenario: Option<String>,

    /// Spacing of the requests in rate mode (-R or stage rates) [default: uniform].
    #[arg(long = "arrival", value_enum)]
    pub arrival: Option<ArrivalArg>,

    /// Request method.
    #[arg(short = 'm', long = "method", default_value = "GET")]
    pub method: String,

    /// Request body.
    #[arg(long = "body", conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Request body read from a file.
    #[arg(long = "body-file", value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// Requests in flight per connection (HTTP/1.1 pipelining).
    #[arg(long = "pipeline", default_value_t = 1)]
    pub pipeline: usize,

    /// A request without a complete response after this long fails as read_timeout.
    #[arg(long = "timeout", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,

    /// One request per connection: connbench closes each connection once its response is
    /// framed and opens a new one in its place (= --requests-per-conn 1).
    #[arg(long = "no-keepalive")]
    pub no_keepalive: bool,

    /// Close each connection after N responses and open a new one in its place.
    #[arg(long = "requests-per-conn", value_name = "N")]
    pub requests_per_conn: Option<u64>,

    /// Open R new connections per second (h2load -r), on an open-loop schedule; each carries
    /// --requests-per-conn requests (default 1), then closes. -c caps how many are open at once.
    #[arg(long = "conn-rate", value_name = "R")]
    pub conn_rate: Option<f64>,

    /// How connbench closes the connections it is done with: fin (orderly; this host keeps the
    /// port in TIME_WAIT for 60 s) or rst (SO_LINGER 0: a reset, no TIME_WAIT) [default: fin].
    #[arg(long = "close", value_enum, value_name = "fin|rst")]
    pub close: Option<CloseArg>,

    /// Pass/fail and percentiles.
    #[command(flatten)]
    pub verdict: VerdictArgs,
}

/// `--close` of `connbench http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloseArg {
    /// An orderly close (FIN).
    Fin,
    /// A reset (SO_LINGER 0), no TIME_WAIT.
    Rst,
}

/// `connbench probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// http://, https://, ws:// or wss:// URL (ws/wss imply --ws). Omitted, or a path: the
    /// built-in target is started in this process and probed.
    pub url: Option<String>,

    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// New connections per second.
    #[arg(long = "connect-rate", value_name = "R", default_value_t = 100.0)]
    pub connect_rate: f64,

    /// Most connections to open [default: the fd limit minus a reserve (half of that with the
    /// built-in target, which shares the process)]. May exceed the fd limit: running out of
    /// descriptors is then reported as a local limit (local_fd_limit).
    #[arg(long = "max", value_name = "N")]
    pub max: Option<usize>,

    /// After the first failure (or --max), keep everything open this long, then count the
    /// connections that survived.
    #[arg(long = "hold", value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub hold: Duration,

    /// A connection lost this soon after it was established counts as refused (a server that
    /// accepts, then resets or closes).
    #[arg(long = "settle", value_name = "DURATION", value_parser = parse_duration, default_value = "250ms")]
    pub settle: Duration,

    /// Send one GET per connection and count it established only on a complete response
    /// below 400 (429, 503, ... are failures with their status).
    #[arg(long = "request", conflicts_with = "ws")]
    pub request: bool,

    /// Upgrade each connection to WebSocket: a 101 is success; a non-101 answer or a close
    /// frame (1008, 1013, ...) right after it is a failure.
    #[arg(long = "ws")]
    pub ws: bool,

    /// Send a request (WebSocket: a ping) on every held connection this often; one still
    /// unanswered after this long (and at least --connect-timeout) counts the connection as
    /// silently dropped.
    #[arg(long = "keepalive", value_name = "DURATION", value_parser = parse_duration)]
    pub keepalive: Option<Duration>,

    /// Afterwards, close everything and re-test: up to limit-1 must all succeed, and limit+1
    /// must fail the same way at the same limit ("stable"), else "unstable".
    #[arg(long = "confirm")]
    pub confirm: bool,

    /// Pause between --confirm passes (lets the server release what it held).
    #[arg(long = "confirm-pause", value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub confirm_pause: Duration,

    /// Each step of establishing a connection (TCP connect, TLS handshake, the request or the
    /// upgrade) that takes longer than this fails the connection, classified by that step.
    #[arg(long = "connect-timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub connect_timeout: Duration,

    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Write the JSON report here ("-" for stdout; the text summary then goes to stderr).
    #[arg(long = "json", value_name = "FILE")]
    pub json: Option<String>,

    /// Also write a self-contained HTML page here: the summary and its plots.
    #[arg(long = "html", value_name = "FILE")]
    pub html: Option<String>,

    /// No start banner and no live progress line.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,

    /// The live progress line on stderr, as for `http` (auto, always or never) [default: auto;
    /// never with --quiet].
    #[arg(long = "progress", value_name = "WHEN", value_parser = validate::parse_progress)]
    pub progress: Option<crate::plan::ProgressWhen>,

    /// Pass/fail and percentiles.
    #[command(flatten)]
    pub verdict: VerdictArgs,

    /// Prepare everything, then open the first connection at this instant (wall clock):
    /// RFC 3339 or Unix seconds, as for `http`.
    #[arg(long = "start-at", value_name = "TIME", value_parser = validate::parse_start_at)]
    pub start_at: Option<validate::StartAt>,
}

/// Highest --connect-rate accepted: beyond it one thread spends its time in connect().
pub const MAX_CONNECT_RATE: f64 = 1_000_000.0;
/// Lowest --connect-rate accepted (one connection every 1000 s).
pub const MIN_CONNECT_RATE: f64 = 0.001;

/// Check the flags of `probe` that clap cannot.
pub fn validate_probe(a: &ProbeArgs) -> Result<(), UsageError> {
    if !(a.connect_rate.is_finite()
        && (MIN_CONNECT_RATE..=MAX_CONNECT_RATE).contains(&a.connect_rate))
    {
        return usage(format!(
            "--connect-rate must be between {MIN_CONNECT_RATE} and {MAX_CONNECT_RATE} connections per second"
        ));
    }
    if a.max == Some(0) {
        return usage("--max must be at least 1 (connections to open)");
    }
    if a.connect_timeout.is_zero() {
        return usage("--connect-timeout must be longer than 0");
    }
    if a.keepalive.is_some_and(|d| d.is_zero()) {
        return usage("--keepalive must be longer than 0 (e.g. --keepalive 5s)");
    }
    validate::check_html(a.html.as_deref())?;
    Ok(())
}

/// What the built-in target does with connections past `--max-conns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverLimitArg {
    /// Accept and reset at once.
    Refuse,
    /// Answer 429 Too Many Requests and close.
    #[value(name = "429")]
    TooMany,
    /// Accept and close at once with a clean FIN, before any byte.
    Close,
}

/// How the built-in target's `--ws-drop-every` ends the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WsDropModeArg {
    /// A clean FIN (the client sees an abnormal close, 1006).
    Fin,
    /// A TCP reset (SO_LINGER 0).
    Rst,
}

/// `connbench serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind (loopback unless you ask for another).
    #[arg(long = "bind", default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,

    /// Plain HTTP port (0 = any free port).
    #[arg(long = "http", value_name = "PORT", default_value_t = 8080)]
    pub http: u16,

    /// HTTPS port (0 = any free port).
    #[arg(long = "https", value_name = "PORT", default_value_t = 8443)]
    pub https: u16,

    /// Serve no plain HTTP port.
    #[arg(long = "no-http", conflicts_with = "no_https")]
    pub no_http: bool,

    /// Serve no HTTPS port.
    #[arg(long = "no-https")]
    pub no_https: bool,

    /// Also listen for raw TCP echo on this port (0 = any free port): every byte comes back,
    /// no HTTP. The raw round trip of `connbench floor --echo HOST:PORT`.
    #[arg(long = "echo", value_name = "PORT")]
    pub echo: Option<u16>,

    /// Event-loop threads.
    #[arg(long = "threads", default_value_t = 1)]
    pub threads: usize,

    /// Pin the event loops to these CPUs, e.g. 0 or 0-1.
    #[arg(long = "cpus", value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,

    /// Past this many concurrent connections, refuse or answer 429 (see --over-limit).
    #[arg(long = "max-conns", value_name = "N")]
    pub max_conns: Option<usize>,

    /// What to do past --max-conns.
    #[arg(long = "over-limit", value_enum, default_value = "refuse")]
    pub over_limit: OverLimitArg,

    /// Answer the N-th request of each connection with Connection: close, then close it.
    #[arg(long = "close-after", value_name = "N")]
    pub close_after: Option<u64>,

    /// Write the self-signed certificate (PEM) here, for clients' --ca.
    #[arg(long = "cert-out", value_name = "FILE")]
    pub cert_out: Option<PathBuf>,

    /// Stop after this long (default: until Ctrl-C).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub run_for: Option<Duration>,

    /// On exit, write the target's counters here as JSON (accepted and rejected connections,
    /// requests, WebSocket upgrades, …): what a multi-machine check compares with the clients'.
    #[arg(long = "stats", value_name = "FILE")]
    pub stats: Option<PathBuf>,

    /// WebSocket /ws: data messages per second per connection.
    #[arg(long = "ws-rate", default_value_t = 10.0)]
    pub ws_rate: f64,

    /// WebSocket fault: close each connection abnormally (no close frame) this long after its upgrade.
    #[arg(long = "ws-drop-every", value_name = "DURATION", value_parser = parse_duration)]
    pub ws_drop_every: Option<Duration>,

    /// How --ws-drop-every ends the TCP connection: fin (clean) or rst (reset) [default: fin].
    #[arg(long = "ws-drop-mode", value_enum, requires = "ws_drop_every")]
    pub ws_drop_mode: Option<WsDropModeArg>,

    /// WebSocket fault: skip one sequence number every N messages of a subscription.
    #[arg(long = "ws-gap-every", value_name = "N")]
    pub ws_gap_every: Option<u64>,

    /// WebSocket fault: stop sending data this long after the upgrade (the connection stays open).
    #[arg(long = "ws-stall-after", value_name = "DURATION", value_parser = parse_duration)]
    pub ws_stall_after: Option<Duration>,

    /// WebSocket: ping every client this often; clients that do not pong in time are dropped.
    #[arg(long = "ws-ping-every", value_name = "DURATION", value_parser = parse_duration)]
    pub ws_ping_every: Option<Duration>,

    /// WebSocket: how long a client has to answer a ping [default: until the next ping].
    #[arg(long = "ws-pong-timeout", value_name = "DURATION", value_parser = parse_duration)]
    pub ws_pong_timeout: Option<Duration>,

    /// HTTP fault: this long after the first HTTP request, stop answering HTTP requests for
    /// --stall-for (they are still read and queued, then all answered in order).
    #[arg(long = "stall-at", value_name = "DURATION", value_parser = parse_duration, requires = "stall_for")]
    pub stall_at: Option<Duration>,

    /// HTTP fault: how long the stall started by --stall-at lasts.
    #[arg(long = "stall-for", value_name = "DURATION", value_parser = parse_duration, requires = "stall_at")]
    pub stall_for: Option<Duration>,

    /// WebSocket: send this text message in the same write as the 101 (a server greeting).
    #[arg(long = "ws-greeting", value_name = "TEXT")]
    pub ws_greeting: Option<String>,

    /// WebSocket fault: never answer pings (data and the connection go on).
    #[arg(long = "ws-no-pong")]
    pub ws_no_pong: bool,

    /// Write fault: send every byte in a write of its own, DURATION apart, so clients see
    /// every response split at every byte.
    #[arg(long = "drip", value_name = "DURATION", value_parser = parse_duration)]
    pub drip: Option<Duration>,

    /// HTTP fault: answer the first N requests (over the whole target) as usual, then every
    /// request with --fail-status (keep-alive; upgrades too): a server that starts failing.
    #[arg(long = "fail-after", value_name = "N")]
    pub fail_after: Option<u64>,

    /// The status --fail-after answers with (200-599).
    #[arg(long = "fail-status", value_name = "CODE", default_value_t = 503)]
    pub fail_status: u16,
}

/// A parsed `--cpus` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// A parsed `--source` list: one address family, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceList(pub Vec<std::net::IpAddr>);

/// Most addresses one `--source` list may name (a typo in a range must not allocate gigabytes).
pub const MAX_SOURCES: usize = 65_536;

/// Parse "10s", "250ms", "100us", "2m", "1h", or a bare number of seconds ("1.5").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    // Duration flags accept a leading '-' (validate::command), so it is refused here, by name.
    if let Some(magnitude) = s.strip_prefix('-') {
        if parse_duration(magnitude).is_ok() {
            return Err(format!(
                "duration {s:?} is negative (give a length of time, e.g. {magnitude})"
            ));
        }
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 10s, 500ms, 2m)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {s:?} (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parse "0,2,4-7" into CPU ids (sorted, no duplicates).
pub fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid CPU list {s:?} (use e.g. 2,3 or 0-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty CPU list {s:?} (use e.g. 2,3 or 0-3)"));
    }
    out.sort_unstable();
    out.dedup();
    Ok(CpuList(out))
}

/// Parse "127.0.0.1-127.0.0.16", "127.0.0.5,127.0.0.6", "::1" or a mix of IPv4 singles and
/// ranges into source addresses, in order. Ranges are IPv4 only (IPv6 addresses are listed one
/// by one); every address must be of one family and usable as a source (not unspecified,
/// multicast or broadcast).
pub fn parse_source_list(s: &str) -> Result<SourceList, String> {
    use std::net::{IpAddr, Ipv4Addr};
    let hint = "use e.g. 127.0.0.1-127.0.0.16, 127.0.0.5,127.0.0.6 or ::1";
    let one = |part: &str| -> Result<IpAddr, String> {
        let ip: IpAddr = part
            .trim()
            .parse()
            .map_err(|_| format!("invalid --source address {:?} ({hint})", part.trim()))?;
        let unusable = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if unusable {
            return Err(format!("--source {ip} cannot be a source address"));
        }
        Ok(ip)
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (one(a)?, one(b)?);
                let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) else {
                    return Err(format!(
                        "--source range {part:?}: ranges are IPv4 only; list IPv6 addresses \
                         one by one"
                    ));
                };
                let (lo, hi) = (u32::from(a), u32::from(b));
                if lo > hi {
                    return Err(format!("--source range {part:?} ends before it starts"));
                }
                let n = (hi - lo) as usize + 1;
                if out.len() + n > MAX_SOURCES {
                    return Err(format!("--source names more than {MAX_SOURCES} addresses"));
                }
                for v in lo..=hi {
                    out.push(one(&Ipv4Addr::from(v).to_string())?);
                }
            }
            None => {
                if out.len() >= MAX_SOURCES {
                    return Err(format!("--source names more than {MAX_SOURCES} addresses"));
                }
                out.push(one(part)?);
            }
        }
    }
    let Some(first) = out.first() else {
        return Err(format!("empty --source list ({hint})"));
    };
    if out.iter().any(|ip| ip.is_ipv4() != first.is_ipv4()) {
        return Err(
            "--source mixes IPv4 and IPv6 addresses; give one family (the target's)".to_string(),
        );
    }
    Ok(SourceList(out))
}

/// Split "Name: value" into its parts.
pub fn parse_header(h: &str) -> Result<(String, String), UsageError> {
    match h.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        // The value is not echoed: it may be a secret.
        _ => {
            usage("invalid -H value: expected \"Name: value\" (e.g. -H 'Accept: application/json')")
        }
    }
}

/// Check the shared load flags that clap cannot.
pub fn validate_load(a: &LoadArgs) -> Result<(), UsageError> {
    if a.connections == 0 {
        return usage("-c must be at least 1 (concurrent connections)");
    }
    if a.threads == Some(0) {
        return usage("-t must be at least 1 (worker threads)");
    }
    if a.connect_timeout.is_zero() {
        return usage("--connect-timeout must be longer than 0");
    }
    validate::check_html(a.html.as_deref())?;
    Ok(())
}

/// Check the numeric flags of `http` that clap cannot.
pub fn validate_http(a: &HttpArgs) -> Result<(), UsageError> {
    validate_load(&a.load)?;
    if a.requests == Some(0) {
        return usage("-n must be at least 1 (requests to send)");
    }
    if a.duration == Some(Duration::ZERO) {
        return usage("-d must be longer than 0 (e.g. -d 10s)");
    }
    if a.pipeline == 0 {
        return usage("--pipeline must be at least 1");
    }
    if a.timeout.is_zero() {
        return usage("--timeout must be longer than 0");
    }
    if let Some(r) = a.rate {
        if !(r > 0.0 && r.is_finite() && r <= 10_000_000.0) {
            return usage("-R must be a rate between 0 and 10,000,000 requests per second");
        }
        if a.pipeline != 1 {
            return usage("-R paces one request per connection at a time: drop --pipeline");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10x").unwrap_err().contains("unit"));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("2,3").unwrap(), CpuList(vec![2, 3]));
        assert_eq!(parse_cpu_list("0-2,1").unwrap(), CpuList(vec![0, 1, 2]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list(",").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("Accept: text/plain").unwrap(),
            ("Accept".into(), "text/plain".into())
        );
        assert_eq!(
            parse_header("X-Empty:").unwrap(),
            ("X-Empty".into(), String::new())
        );
        let e = parse_header("Authorization secret-token").unwrap_err();
        assert!(!e.0.contains("secret-token"), "{e}");
        assert!(parse_header(": x").is_err());
    }

    #[test]
    fn zero_connections_is_a_usage_error() {
        let cli = Cli::try_parse_from(["connbench", "http", "-c", "0"]).unwrap();
        let Command::Http(a) = cli.command else {
            panic!("expected http")
        };
        assert!(validate_http(&a).unwrap_err().0.contains("-c"));
    }

    #[test]
    fn subscriptions_expand_over_the_lists() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let subs = expand_subscriptions(
            &v(&[
                r#"{"op":"subscribe","args":["{channel}.{symbol}"],"ex":"{exchange}","c":{conn}}"#,
            ]),
            &v(&["binance", "bybit"]),
            &v(&["trades", "orderbook"]),
            &v(&["BTCUSDT"]),
        )
        .unwrap();
        assert_eq!(subs.len(), 4);
        assert_eq!(
            subs[0],
            r#"{"op":"subscribe","args":["trades.BTCUSDT"],"ex":"binance","c":{conn}}"#
        );
        assert!(subs[3].contains("orderbook.BTCUSDT") && subs[3].contains("bybit"));
        // a template without placeholders is sent as is
        assert_eq!(
            expand_subscriptions(&v(&["hello"]), &[], &[], &[]).unwrap(),
            v(&["hello"])
        );
        let e = expand_subscriptions(&v(&["{symbol}"]), &[], &[], &[]).unwrap_err();
        assert!(e.0.contains("--symbols"), "{e}");
    }

    #[test]
    fn source_lists() {
        let ips = |l: SourceList| l.0.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        let range = parse_source_list("127.0.0.1-127.0.0.16").unwrap();
        assert_eq!(range.0.len(), 16);
        assert_eq!(ips(range)[15], "127.0.0.16");
        assert_eq!(
            ips(parse_source_list("127.0.0.5, 127.0.0.6,127.0.0.254-127.0.1.1").unwrap()),
            [
                "127.0.0.5",
                "127.0.0.6",
                "127.0.0.254",
                "127.0.0.255",
                "127.0.1.0",
                "127.0.1.1"
            ]
        );
        assert_eq!(ips(parse_source_list("::1").unwrap()), ["::1"]);
        assert_eq!(
            ips(parse_source_list("::1,fe80::1").unwrap()),
            ["::1", "fe80::1"]
        );
        for (bad, needle) in [
            ("", "empty"),
            (",", "empty"),
            ("127.0.0.300", "invalid"),
            ("localhost", "invalid"),
            ("127.0.0.9-127.0.0.1", "ends before"),
            ("::1-::5", "IPv4 only"),
            ("127.0.0.1,::1", "mixes"),
            ("0.0.0.0", "cannot be a source"),
            ("224.0.0.1", "cannot be a source"),
            ("255.255.255.255", "cannot be a source"),
            ("127.0.0.0-127.255.255.255", "more than"),
        ] {
            let e = parse_source_list(bad).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
        let cli =
            Cli::try_parse_from(["connbench", "http", "--source", "127.0.0.2,127.0.0.3"]).unwrap();
        let Command::Http(a) = cli.command else {
            panic!("expected http")
        };
        assert_eq!(a.load.source.unwrap().0.len(), 2);
    }

    #[test]
    fn duration_and_requests_conflict() {
        assert!(Cli::try_parse_from(["connbench", "http", "-d", "1s", "-n", "5"]).is_err());
    }
}
