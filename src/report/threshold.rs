//! Pass/fail of a run: `--threshold EXPR` (k6-style, repeatable), `--targets seed` (the seed
//! article's targets), and whether a run measured anything at all.
//!
//! A threshold is `METRIC OP VALUE`, e.g. `ttfb.p95<180ms`, `errors.rate<0.1%`, `reuse>95%`,
//! `status.5xx==0`, `msgs.rate>1000`, `connections>=500`:
//! - `OP` is one of `<` `<=` `>` `>=` `==` `!=` (spaces around it are allowed);
//! - a timed phase of the command (`connect`, `tls`, `ttfb`, `total`, `upgrade`, `latency`, …)
//!   or `setup` takes a statistic: `p50` `p90` `p95` `p99` `p99.9`, any `pN` or `p(N)` with
//!   0 < N ≤ 100 (`p100` is `max`), `min`, `max`, `mean` (`avg`), `med` (`p50`), `count`;
//!   its value is a duration with a unit: `ns`, `us`/`µs`, `ms`, `s` (`count` is a number);
//! - ratios (`errors.rate`, `reuse`, `connections.success`) take `95%` or a fraction `0.95`;
//!   counts and per-second rates take plain numbers (a rate may end in `/s`).
//!
//! Rules:
//! 1. Parsing is pure and runs before any I/O ([`Threshold::parse`], called by
//!    `cli::validate`). A metric the command does not measure (`latency` on `http`) is a usage
//!    error that names it and lists the valid ones; so is one the run's settings rule out
//!    (`tls` over plain TCP, `corrected` without `-R`), with the flag that would add it.
//! 2. A threshold passes only when the measurement satisfies it. A metric with no sample (a
//!    percentile of an empty phase, a rate over no request) fails: nothing shows it was met.
//! 3. `setup` is the seed's connection setup time, TCP connect plus TLS handshake per
//!    connection. Over plain TCP it is the `connect` phase, exactly. Over TLS the two phases are
//!    recorded apart, so it is known within bounds computed from both histograms (a lower
//!    bound from either phase plus the other's minimum; an upper bound from splitting the
//!    allowed exceedances between them, Boole's inequality), and a threshold passes only when
//!    every value within the bounds satisfies it.
//! 4. `errors.rate` counts what the seed counts as errors: for `http`, failed connections and
//!    requests (every error class) plus responses with status 4xx, 429, 5xx or outside
//!    100-599, over responses plus failures; for `ws`, failures over connections attempted.
//! 5. A run *measured nothing* when `http` got no response below 400 (every connection refused,
//!    every request failed or answered with an error), `ws` upgraded no connection or got no
//!    data message (stream), echo (echo) or pong (ping), or `probe` never established a
//!    connection ([`nothing_measured`], [`probe_nothing_measured`]). The reason is one line.

use std::fmt::{self, Write as _};

use hdrhistogram::Histogram;

use super::percentiles::Percentile;
use super::text::dur_compact;
use super::{RunMeta, RunResult};
use crate::metrics::probe::PassResult;
use crate::metrics::{Counters, ErrorClass, Phase, Recorder, StatusClass};
use crate::plan::{Establish, WsMode};

/// The command a threshold is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `connbench http`.
    Http,
    /// `connbench ws`.
    Ws,
    /// `connbench probe`.
    Probe,
}

impl Command {
    /// "http", "ws" or "probe": the command's name, and the `mode` of its report.
    pub fn name(self) -> &'static str {
        match self {
            Command::Http => "http",
            Command::Ws => "ws",
            Command::Probe => "probe",
        }
    }

    /// The command of a report's `mode` (merged reports are `http` or `ws`).
    pub fn of_mode(mode: crate::plan::Mode) -> Command {
        match mode {
            crate::plan::Mode::Ws => Command::Ws,
            crate::plan::Mode::Probe => Command::Probe,
            crate::plan::Mode::Http => Command::Http,
        }
    }
}

/// What a run will measure, known before it starts: which metrics a threshold may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The command.
    pub command: Command,
    /// Connections use TLS (https, wss, `--tls`).
    pub tls: bool,
    /// `http -R`: corrected latency and send lag are measured.
    pub rate: bool,
    /// `ws --mode`.
    pub ws_mode: Option<WsMode>,
    /// `ws` has a timestamp field (`--ts-field`, or the built-in `/ws` default): latency.
    pub ts_field: bool,
    /// `probe`: what counts as established.
    pub establish: Option<Establish>,
}

impl Context {
    /// A context for `command` with nothing optional measured: plain TCP, no `-R`, ws stream
    /// mode without a timestamp field, a connect-only probe.
    pub fn new(command: Command) -> Context {
        Context {
            command,
            tls: false,
            rate: false,
            ws_mode: (command == Command::Ws).then_some(WsMode::Stream),
            ts_field: false,
            establish: (command == Command::Probe).then_some(Establish::Connect),
        }
    }

    /// The timed phases this run records, in report order.
    fn phases(&self) -> Vec<Phase> {
        Phase::ALL
            .into_iter()
            .filter(|&p| self.lacks(p).is_none() && self.command_times(p))
            .collect()
    }

    /// True when the command times this phase in some configuration.
    fn command_times(&self, p: Phase) -> bool {
        match self.command {
            Command::Http => {
                Phase::HTTP.contains(&p) || matches!(p, Phase::Corrected | Phase::SendLag)
            }
            Command::Ws => Phase::WS.contains(&p) || matches!(p, Phase::Corrected | Phase::SendLag),
            Command::Probe => matches!(
                p,
                Phase::Connect | Phase::Tls | Phase::Total | Phase::Upgrade
            ),
        }
    }

    /// Why this run's settings leave a phase of its command without samples, and the fix.
    fn lacks(&self, p: Phase) -> Option<String> {
        let echo = self.ws_mode == Some(WsMode::Echo);
        match (self.command, p) {
            (_, Phase::Tls | Phase::TlsFull | Phase::TlsResumed) if !self.tls => Some(
                "this run is plain TCP, so no TLS handshake is timed: use an https:// or wss:// \
                 URL (or --tls with the built-in target)"
                    .into(),
            ),
            (Command::Http, Phase::Corrected | Phase::SendLag) if !self.rate => {
                Some("it is measured in rate mode only: add -R RATE".into())
            }
            (Command::Ws, Phase::Corrected | Phase::SendLag) if !echo => {
                Some("it is measured in --mode echo only".into())
            }
            (Command::Ws, Phase::Rtt)
                if !matches!(self.ws_mode, Some(WsMode::Echo | WsMode::Ping)) =>
            {
                Some("round trips are timed in --mode echo and --mode ping only".into())
            }
            (Command::Ws, Phase::Latency) if !self.ts_field => {
                Some("one-way latency needs the server's timestamp: add --ts-field PATH".into())
            }
            (Command::Probe, Phase::Total) if self.establish != Some(Establish::Request) => {
                Some("the probe times a request only with --request".into())
            }
            (Command::Probe, Phase::Upgrade) if self.establish != Some(Establish::WebSocket) => {
                Some("the probe times an upgrade only with --ws".into())
            }
            _ => None,
        }
    }

    /// Every metric name valid here, for error messages.
    fn catalog(&self) -> String {
        let mut timed: Vec<&str> = self.phases().iter().map(|p| p.name()).collect();
        timed.push("setup");
        let mut v = vec![format!(
            "{} (each .p50 .p90 .p95 .p99 .p99.9 .pN .min .max .mean .med .count)",
            timed.join(", ")
        )];
        let more: &[&str] = match self.command {
            Command::Http => &[
                "errors.rate",
                "errors.count",
                "errors.CLASS",
                "status.{1xx,2xx,3xx,4xx,429,5xx,other}",
                "reuse",
                "requests",
                "requests.rate",
                "responses",
                "responses.rate",
            ],
            Command::Ws => &[
                "errors.rate",
                "errors.count",
                "errors.CLASS",
                "status.{1xx,2xx,3xx,4xx,429,5xx,other}",
                "msgs",
                "msgs.rate",
                "msgs_sent",
                "msgs_sent.rate",
                "reconnects",
                "seq.gaps",
                "seq.missing",
                "connections.{attempted,upgraded,failed,success}",
            ],
            Command::Probe => &["connections", "failures", "drops"],
        };
        v.extend(more.iter().map(|s| s.to_string()));
        if self.command == Command::Http && self.rate {
            v.push("unsent".into());
        }
        v.join(", ")
    }
}

/// A statistic of a timed phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    /// The smallest sample.
    Min,
    /// The largest sample (`p100`).
    Max,
    /// The mean.
    Mean,
    /// The number of samples.
    Count,
    /// A percentile below 100.
    Percentile(Percentile),
}

impl Stat {
    /// `p95`, `p99.9`, `min`, `max`, `mean`, `count`.
    pub fn name(self) -> String {
        match self {
            Stat::Min => "min".into(),
            Stat::Max => "max".into(),
            Stat::Mean => "mean".into(),
            Stat::Count => "count".into(),
            Stat::Percentile(p) => p.label(),
        }
    }

    fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "min" => Stat::Min,
            "max" => Stat::Max,
            "mean" | "avg" => Stat::Mean,
            "count" => Stat::Count,
            "med" => Stat::Percentile(Percentile::new(50.0)?),
            _ => {
                let n = s.strip_prefix('p')?;
                let n = n
                    .strip_prefix('(')
                    .and_then(|n| n.strip_suffix(')'))
                    .unwrap_or(n);
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    return None;
                }
                let p = Percentile::new(n.parse().ok()?)?;
                if p.is_max() {
                    Stat::Max
                } else {
                    Stat::Percentile(p)
                }
            }
        })
    }
}

/// What a threshold measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// A statistic of a timed phase.
    Phase(Phase, Stat),
    /// A statistic of the connection setup time, TCP connect + TLS handshake (rule 3).
    Setup(Stat),
    /// Errors ÷ attempts (rule 4).
    ErrorRate,
    /// Errors (rule 4's numerator).
    Errors,
    /// Failures of one error class.
    ErrorClass(ErrorClass),
    /// Responses of one status class (ws: upgrades answered without 101).
    Status(StatusClass),
    /// Reused requests ÷ requests.
    Reuse,
    /// Requests sent.
    Requests,
    /// Requests sent per second.
    RequestRate,
    /// Responses framed.
    Responses,
    /// Responses framed per second.
    ResponseRate,
    /// Rate mode: requests due and never sent.
    Unsent,
    /// WebSocket messages received.
    Msgs,
    /// WebSocket messages received per second.
    MsgRate,
    /// WebSocket data messages sent.
    MsgsSent,
    /// WebSocket data messages sent per second.
    MsgSentRate,
    /// WebSocket reconnects, every cause.
    Reconnects,
    /// Sequence gaps.
    SeqGaps,
    /// Sequence numbers missing in the gaps.
    SeqMissing,
    /// WebSocket connections attempted.
    ConnAttempted,
    /// WebSocket connections upgraded.
    ConnUpgraded,
    /// WebSocket connections attempted and not upgraded.
    ConnFailed,
    /// Upgraded ÷ attempted.
    ConnSuccess,
    /// Probe: the connection limit found (connections admitted).
    Limit,
    /// Probe: establishment failures.
    Failures,
    /// Probe: held connections lost.
    Drops,
}

/// What kind of number a metric is, which decides the units its value takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Nanoseconds; written with a unit.
    Duration,
    /// 0..1; written as a percentage or a fraction.
    Ratio,
    /// A count; a plain number.
    Count,
    /// Per second; a plain number (optionally `/s`).
    PerSecond,
}

impl Kind {
    /// The unit of [`Kind`]'s values in the JSON report.
    pub fn unit(self) -> &'static str {
        match self {
            Kind::Duration => "ns",
            Kind::Ratio => "ratio",
            Kind::Count => "count",
            Kind::PerSecond => "per_s",
        }
    }

    /// A value of this kind for people: `61.2µs`, `0.123 %`, `1234`, `1234/s`.
    pub fn show(self, v: f64) -> String {
        match self {
            Kind::Duration => dur_compact(v),
            Kind::Ratio => format!("{:.3} %", v * 100.0),
            Kind::Count => format!("{v:.0}"),
            Kind::PerSecond if v >= 99.95 => format!("{v:.0}/s"),
            Kind::PerSecond if v >= 9.995 => format!("{v:.1}/s"),
            Kind::PerSecond => format!("{v:.2}/s"),
        }
    }
}

impl Metric {
    /// The name as a threshold writes it: `ttfb.p95`, `errors.rate`, `status.5xx`.
    pub fn name(self) -> String {
        match self {
            Metric::Phase(p, s) => format!("{}.{}", p.name(), s.name()),
            Metric::Setup(s) => format!("setup.{}", s.name()),
            Metric::ErrorRate => "errors.rate".into(),
            Metric::Errors => "errors.count".into(),
            Metric::ErrorClass(c) => format!("errors.{}", c.name()),
            Metric::Status(s) => format!("status.{}", s.name()),
            Metric::Reuse => "reuse".into(),
            Metric::Requests => "requests".into(),
            Metric::RequestRate => "requests.rate".into(),
            Metric::Responses => "responses".into(),
            Metric::ResponseRate => "responses.rate".into(),
            Metric::Unsent => "unsent".into(),
            Metric::Msgs => "msgs".into(),
            Metric::MsgRate => "msgs.rate".into(),
            Metric::MsgsSent => "msgs_sent".into(),
            Metric::MsgSentRate => "msgs_sent.rate".into(),
            Metric::Reconnects => "reconnects".into(),
            Metric::SeqGaps => "seq.gaps".into(),
            Metric::SeqMissing => "seq.missing".into(),
            Metric::ConnAttempted => "connections.attempted".into(),
            Metric::ConnUpgraded => "connections.upgraded".into(),
            Metric::ConnFailed => "connections.failed".into(),
            Metric::ConnSuccess => "connections.success".into(),
            Metric::Limit => "connections".into(),
            Metric::Failures => "failures".into(),
            Metric::Drops => "drops".into(),
        }
    }

    /// The kind of number it is.
    pub fn kind(self) -> Kind {
        match self {
            Metric::Phase(_, Stat::Count) | Metric::Setup(Stat::Count) => Kind::Count,
            Metric::Phase(..) | Metric::Setup(_) => Kind::Duration,
            Metric::ErrorRate | Metric::Reuse | Metric::ConnSuccess => Kind::Ratio,
            Metric::RequestRate | Metric::ResponseRate | Metric::MsgRate | Metric::MsgSentRate => {
                Kind::PerSecond
            }
            _ => Kind::Count,
        }
    }

    /// Parse a metric name for this context (rule 1).
    fn parse(text: &str, ctx: &Context) -> Result<Metric, String> {
        let (head, rest) = match text.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (text, None),
        };
        let cmd = ctx.command;
        let unknown = || {
            format!(
                "unknown metric {text:?} for connbench {} (valid: {})",
                cmd.name(),
                ctx.catalog()
            )
        };
        let not_here = |what: &str| {
            format!(
                "{what} is not measured by connbench {} (valid: {})",
                cmd.name(),
                ctx.catalog()
            )
        };
        let stat = |name: &str| -> Result<Stat, String> {
            match rest {
                None => Err(format!(
                    "{name} needs a statistic, e.g. {name}.p95 (p50, p90, p95, p99, p99.9, pN, \
                     min, max, mean, med, count)"
                )),
                Some(s) => Stat::parse(s).ok_or_else(|| {
                    format!(
                        "unknown statistic {s:?} in {text:?} (use p50, p90, p95, p99, p99.9, \
                         any pN with 0 < N <= 100, min, max, mean, avg, med or count)"
                    )
                }),
            }
        };
        // A name with an optional `.count` / `.rate` tail.
        let counted = |count: Metric, rate: Option<Metric>| match (rest, rate) {
            (None | Some("count"), _) => Ok(count),
            (Some("rate"), Some(r)) => Ok(r),
            _ => Err(unknown()),
        };
        if let Some(phase) = Phase::ALL.into_iter().find(|p| p.name() == head) {
            if !ctx.command_times(phase) {
                return Err(not_here(head));
            }
            if let Some(why) = ctx.lacks(phase) {
                return Err(format!("{text}: {why}, or drop the threshold"));
            }
            return Ok(Metric::Phase(phase, stat(head)?));
        }
        let http = cmd == Command::Http;
        let ws = cmd == Command::Ws;
        let load = http || ws;
        let m = match head {
            "setup" => Metric::Setup(stat(head)?),
            "errors" if load => match rest {
                None | Some("count") => Metric::Errors,
                Some("rate") => Metric::ErrorRate,
                Some(c) => Metric::ErrorClass(
                    ErrorClass::ALL
                        .into_iter()
                        .find(|e| e.name() == c)
                        .ok_or_else(|| {
                            format!(
                                "unknown error class {c:?} in {text:?} (use rate, count or a \
                                 class: {})",
                                ErrorClass::ALL.map(ErrorClass::name).join(", ")
                            )
                        })?,
                ),
            },
            "status" if load => {
                let s = rest.unwrap_or("");
                Metric::Status(
                    StatusClass::ALL
                        .into_iter()
                        .find(|c| c.name() == s)
                        .ok_or_else(|| {
                            format!(
                                "unknown status class {s:?} in {text:?} (use status.1xx, 2xx, \
                                 3xx, 4xx, 429, 5xx or other)"
                            )
                        })?,
                )
            }
            "reuse" if http => match rest {
                None | Some("rate") => Metric::Reuse,
                _ => return Err(unknown()),
            },
            "requests" if http => counted(Metric::Requests, Some(Metric::RequestRate))?,
            "responses" if http => counted(Metric::Responses, Some(Metric::ResponseRate))?,
            "unsent" if http && ctx.rate => counted(Metric::Unsent, None)?,
            "unsent" if http => {
                return Err(format!(
                    "{text}: requests go unsent in rate mode only: add -R RATE, or drop the \
                     threshold"
                ))
            }
            "msgs" if ws => counted(Metric::Msgs, Some(Metric::MsgRate))?,
            "msgs_sent" if ws => counted(Metric::MsgsSent, Some(Metric::MsgSentRate))?,
            "reconnects" if ws => counted(Metric::Reconnects, None)?,
            "seq" if ws => match rest {
                Some("gaps") => Metric::SeqGaps,
                Some("missing") => Metric::SeqMissing,
                _ => return Err(unknown()),
            },
            "connections" if ws => match rest {
                Some("attempted") => Metric::ConnAttempted,
                Some("upgraded") => Metric::ConnUpgraded,
                Some("failed") => Metric::ConnFailed,
                Some("success") => Metric::ConnSuccess,
                _ => return Err(unknown()),
            },
            "connections" if cmd == Command::Probe => counted(Metric::Limit, None)?,
            "failures" if cmd == Command::Probe => counted(Metric::Failures, None)?,
            "drops" if cmd == Command::Probe => counted(Metric::Drops, None)?,
            "errors" | "status" | "reuse" | "requests" | "responses" | "unsent" | "msgs"
            | "msgs_sent" | "reconnects" | "seq" | "connections" | "failures" | "drops" => {
                return Err(not_here(head))
            }
            _ => return Err(unknown()),
        };
        Ok(m)
    }

    /// What the run measured for this metric; `None` when it has no sample (rule 2).
    pub fn measure(self, src: &Source<'_>) -> Option<Measured> {
        let rec = src.recorder();
        let c = &rec.counters;
        let count = |n: u64| Some(Measured::exact(n as f64));
        let ratio = |n: u64, of: u64| (of > 0).then(|| Measured::exact(n as f64 / of as f64));
        let per_s = |n: u64| {
            let secs = src.elapsed_s();
            (secs > 0.0).then(|| Measured::exact(n as f64 / secs))
        };
        match self {
            Metric::Phase(p, s) => phase_stat(rec.histogram(p), s).map(Measured::exact),
            Metric::Setup(s) => {
                let connect = rec.histogram(Phase::Connect);
                if src.tls() {
                    setup_bounds(connect, rec.histogram(Phase::Tls), s)
                } else {
                    phase_stat(connect, s).map(Measured::exact)
                }
            }
            Metric::ErrorRate => match src {
                Source::Run(m, _) if m.ws.is_some() => {
                    ratio(c.total_errors(), c.connections_opened)
                }
                _ => {
                    let errors = http_errors(c);
                    ratio(errors, c.responses + c.total_errors())
                }
            },
            Metric::Errors => match src {
                Source::Run(m, _) if m.ws.is_some() => count(c.total_errors()),
                _ => count(http_errors(c)),
            },
            Metric::ErrorClass(e) => count(c.errors[e.index()]),
            Metric::Status(s) => count(c.status[s.index()]),
            Metric::Reuse => ratio(c.reused_requests, c.requests),
            Metric::Requests => count(c.requests),
            Metric::RequestRate => per_s(c.requests),
            Metric::Responses => count(c.responses),
            Metric::ResponseRate => per_s(c.responses),
            Metric::Unsent => count(c.unsent),
            Metric::Msgs => count(c.ws.messages_in),
            Metric::MsgRate => per_s(c.ws.messages_in),
            Metric::MsgsSent => count(c.ws.messages_out),
            Metric::MsgSentRate => per_s(c.ws.messages_out),
            Metric::Reconnects => count(c.ws.total_reconnects()),
            Metric::SeqGaps => count(c.ws.seq_gaps),
            Metric::SeqMissing => count(c.ws.seq_missing),
            Metric::ConnAttempted => count(c.connections_opened),
            Metric::ConnUpgraded => count(c.ws.upgraded),
            Metric::ConnFailed => count(c.connections_opened.saturating_sub(c.ws.upgraded)),
            Metric::ConnSuccess => ratio(c.ws.upgraded, c.connections_opened),
            Metric::Limit => src.pass().map(|p| Measured::exact(p.limit as f64)),
            Metric::Failures => src
                .pass()
                .map(|p| Measured::exact(p.failures_total() as f64)),
            Metric::Drops => src.pass().map(|p| Measured::exact(p.drops_total() as f64)),
        }
    }
}

/// HTTP errors as the seed counts them (rule 4): every failure plus every response with an
/// error status.
fn http_errors(c: &Counters) -> u64 {
    let bad = [
        StatusClass::ClientError,
        StatusClass::TooManyRequests,
        StatusClass::ServerError,
        StatusClass::Other,
    ];
    c.total_errors() + bad.iter().map(|s| c.status[s.index()]).sum::<u64>()
}

/// A statistic of one phase histogram; `None` when it is empty (`count` is then 0).
fn phase_stat(h: &Histogram<u64>, s: Stat) -> Option<f64> {
    if s == Stat::Count {
        return Some(h.len() as f64);
    }
    if h.is_empty() {
        return None;
    }
    Some(match s {
        Stat::Min => h.min() as f64,
        Stat::Max => h.max() as f64,
        Stat::Mean => super::json::mean(h),
        Stat::Percentile(p) => p.of(h) as f64,
        Stat::Count => unreachable!("handled above"),
    })
}

/// The value at 1-based rank `r` (1..=len) of a non-empty histogram, as
/// `Histogram::value_at_quantile` reports values (the highest equivalent of the bucket).
fn at_rank(h: &Histogram<u64>, r: u64) -> u64 {
    let mut seen = 0u64;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= r {
            return v.value_iterated_to();
        }
    }
    h.max()
}

/// Mean of the `m` smallest (or largest) samples of a histogram holding at least `m`.
fn mean_of_extreme(h: &Histogram<u64>, m: u64, largest: bool) -> f64 {
    let mut buckets: Vec<(u64, u64)> = h
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    if largest {
        buckets.reverse();
    }
    let (mut left, mut sum) = (m, 0f64);
    for (value, n) in buckets {
        let take = n.min(left);
        sum += value as f64 * take as f64;
        left -= take;
        if left == 0 {
            break;
        }
    }
    sum / m as f64
}

/// Rule 3: bounds on a statistic of connect + TLS per connection, from the two histograms.
/// Every connection with a TLS sample has a connect sample; the connect histogram may hold more
/// (connections whose handshake failed), which the bounds allow for.
fn setup_bounds(connect: &Histogram<u64>, tls: &Histogram<u64>, s: Stat) -> Option<Measured> {
    let (n, m) = (connect.len(), tls.len());
    if s == Stat::Count {
        return Some(Measured::exact(m as f64));
    }
    if m == 0 || n < m {
        return None;
    }
    if s == Stat::Mean {
        let t = super::json::mean(tls);
        if n == m {
            return Some(Measured::exact(super::json::mean(connect) + t));
        }
        return Some(Measured {
            lo: mean_of_extreme(connect, m, false) + t,
            hi: mean_of_extreme(connect, m, true) + t,
        });
    }
    // The rank of the statistic among the m connections that completed TLS.
    let k = match s {
        Stat::Min => 1,
        Stat::Max => m,
        Stat::Percentile(p) => ((p.quantile() * m as f64).ceil() as u64).clamp(1, m),
        Stat::Mean | Stat::Count => unreachable!("handled above"),
    };
    // Lower: setup ≥ tls + the smallest connect, and ≥ connect + the smallest tls, where the
    // k-th smallest connect of the m is at least the k-th smallest of all n.
    let lo = (at_rank(tls, k) + connect.min()).max(at_rank(connect, k) + tls.min());
    // Upper: at most m - k of the m may lie above the bound. Any split e_c + e_t = m - k gives
    // one: at most e_c connects lie above the connect value at rank n - e_c, at most e_t
    // handshakes above the tls value at rank m - e_t, and any other connection is below the
    // sum. Try a few splits and keep the lowest.
    let slack = m - k;
    let hi = (0..=8u64)
        .map(|i| slack * i / 8)
        .map(|e_c| at_rank(connect, n - e_c) + at_rank(tls, m - (slack - e_c)))
        .min()
        .expect("nine splits");
    Some(Measured {
        lo: lo as f64,
        hi: hi.max(lo) as f64,
    })
}

/// A measurement: exact (`lo == hi`) or known within bounds (`setup` over TLS, rule 3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    /// The lower bound (the value when exact).
    pub lo: f64,
    /// The upper bound (the value when exact).
    pub hi: f64,
}

impl Measured {
    /// An exactly known value.
    pub fn exact(v: f64) -> Measured {
        Measured { lo: v, hi: v }
    }

    /// True when the value is known exactly.
    pub fn is_exact(self) -> bool {
        self.lo == self.hi
    }
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// The operators, longest spellings first (as they are searched for).
    const ALL: [(Op, &'static str); 6] = [
        (Op::Le, "<="),
        (Op::Ge, ">="),
        (Op::Eq, "=="),
        (Op::Ne, "!="),
        (Op::Lt, "<"),
        (Op::Gt, ">"),
    ];

    /// `<`, `<=`, …
    pub fn symbol(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map(|(_, s)| *s)
            .expect("every operator has a symbol")
    }

    /// `v OP limit`.
    pub fn holds(self, v: f64, limit: f64) -> bool {
        match self {
            Op::Lt => v < limit,
            Op::Le => v <= limit,
            Op::Gt => v > limit,
            Op::Ge => v >= limit,
            Op::Eq => v == limit,
            Op::Ne => v != limit,
        }
    }

    /// True when every value within `m` satisfies `OP limit` (rule 3).
    pub fn holds_for(self, m: Measured, limit: f64) -> bool {
        match self {
            Op::Eq => m.lo == limit && m.hi == limit,
            Op::Ne => limit < m.lo || limit > m.hi,
            _ => self.holds(m.lo, limit) && self.holds(m.hi, limit),
        }
    }
}

/// The unit a threshold's value was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// `ns`
    Ns,
    /// `us`, `µs`
    Us,
    /// `ms`
    Ms,
    /// `s`
    S,
    /// `%`
    Percent,
    /// A plain number.
    Plain,
    /// `/s`
    PerSecond,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "µs",
            Unit::Ms => "ms",
            Unit::S => "s",
            Unit::Percent => "%",
            Unit::Plain => "",
            Unit::PerSecond => "/s",
        }
    }
}

/// A threshold's value as written: a number and its unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// The number as written.
    pub number: f64,
    /// Its unit.
    pub unit: Unit,
}

impl Limit {
    /// The value in the metric's base unit: ns, a 0..1 ratio, a count, per second. Scaled
    /// in decimal, rounded once: `0.1%` is the `f64` nearest to 0.001, the value a measured
    /// 1 in 1000 has, and `2.5ms` is 2500000 ns.
    pub fn base(self) -> f64 {
        let exponent = match self.unit {
            Unit::Ns | Unit::Plain | Unit::PerSecond => return self.number,
            Unit::Us => 3,
            Unit::Ms => 6,
            Unit::S => 9,
            Unit::Percent => -2,
        };
        // `{number}` is the shortest decimal that reads back as `number`.
        format!("{}e{exponent}", self.number)
            .parse()
            .unwrap_or(f64::NAN)
    }

    fn parse(text: &str, metric: Metric) -> Result<Limit, String> {
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (num, unit) = text.split_at(split);
        let name = metric.name();
        let number: f64 = num
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| {
                format!(
                    "{name}: {text:?} is not a number (thresholds compare with a value of 0 or \
                     more, e.g. {})",
                    example(metric.kind())
                )
            })?;
        let unit = unit.trim();
        let unit = match (metric.kind(), unit) {
            (Kind::Duration, "ns") => Unit::Ns,
            (Kind::Duration, "us" | "µs") => Unit::Us,
            (Kind::Duration, "ms") => Unit::Ms,
            (Kind::Duration, "s") => Unit::S,
            (Kind::Duration, "") => {
                return Err(format!(
                    "{name} is a duration: give a unit, e.g. {name}<{text}ms (ns, us, µs, ms, s)"
                ))
            }
            (Kind::Ratio, "%") => Unit::Percent,
            (Kind::Ratio, "") if number <= 1.0 => Unit::Plain,
            (Kind::Ratio, "") => {
                return Err(format!(
                    "{name} is a ratio: write {text}% or a fraction from 0 to 1 (e.g. 0.95)"
                ))
            }
            (Kind::Count, "") => Unit::Plain,
            (Kind::PerSecond, "") => Unit::Plain,
            (Kind::PerSecond, "/s") => Unit::PerSecond,
            (kind, _) => {
                return Err(format!(
                    "{name}: unit {unit:?} does not apply (it is {}: e.g. {})",
                    match kind {
                        Kind::Duration => "a duration",
                        Kind::Ratio => "a ratio",
                        Kind::Count => "a count",
                        Kind::PerSecond => "a rate per second",
                    },
                    example(kind)
                ))
            }
        };
        if unit == Unit::Percent && number > 100.0 {
            return Err(format!("{name}: {text} is more than 100 %"));
        }
        Ok(Limit { number, unit })
    }
}

fn example(kind: Kind) -> &'static str {
    match kind {
        Kind::Duration => "180ms",
        Kind::Ratio => "0.1% or 0.001",
        Kind::Count => "0 or 500",
        Kind::PerSecond => "1000 or 1000/s",
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.number, self.unit.suffix())
    }
}

/// One pass/fail criterion: `METRIC OP VALUE`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub metric: Metric,
    /// The comparison.
    pub op: Op,
    /// The value compared with.
    pub limit: Limit,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.metric.name(),
            self.op.symbol(),
            self.limit
        )
    }
}

impl Threshold {
    /// Parse `METRIC OP VALUE` for a run of this context (rule 1). The error says what is
    /// wrong and what is accepted; the caller names the expression.
    pub fn parse(expr: &str, ctx: &Context) -> Result<Threshold, String> {
        let found = Op::ALL
            .iter()
            .filter_map(|&(op, sym)| expr.find(sym).map(|at| (at, op, sym)))
            // The first operator in the text; at one position the longest spelling.
            .min_by_key(|&(at, _, sym)| (at, std::cmp::Reverse(sym.len())));
        let Some((at, op, sym)) = found else {
            return Err(
                "no comparison: write METRIC OP VALUE, e.g. ttfb.p95<180ms (operators \
                        < <= > >= == !=)"
                    .to_string(),
            );
        };
        let metric = expr[..at].trim();
        let value = expr[at + sym.len()..].trim();
        if metric.is_empty() {
            return Err("no metric: write METRIC OP VALUE, e.g. ttfb.p95<180ms".to_string());
        }
        if value.is_empty() || value.contains(['<', '>', '=', '!']) {
            return Err(format!(
                "one value must follow {sym}: write METRIC OP VALUE, e.g. ttfb.p95<180ms"
            ));
        }
        let metric = Metric::parse(metric, ctx)?;
        let limit = Limit::parse(value, metric)?;
        Ok(Threshold { metric, op, limit })
    }

    /// Check it against what a run measured.
    pub fn check(self, src: &Source<'_>, origin: Origin) -> Outcome {
        let measured = self.metric.measure(src);
        let pass = measured.is_some_and(|m| self.op.holds_for(m, self.limit.base()));
        Outcome {
            threshold: self,
            measured,
            pass,
            origin,
        }
    }
}

/// A named set of targets (`--targets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// The seed article's targets.
    Seed,
}

/// One of the seed article's targets ("Key Metrics You Must Measure").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedTarget {
    /// Connection setup time (TCP connect including the TLS handshake) under 50 ms. The
    /// article names no percentile; connbench checks P95, as for TTFB.
    Setup,
    /// Time to first byte under 180 ms at P95.
    Ttfb,
    /// Connection reuse above 95 %.
    Reuse,
    /// Errors under load (4xx and 5xx) below 0.1 %.
    ErrorRate,
    /// At least 500 concurrent connections per API key (`probe`).
    Connections,
}

impl SeedTarget {
    /// The targets, in the article's order.
    pub const ALL: [SeedTarget; 5] = [
        SeedTarget::Setup,
        SeedTarget::Ttfb,
        SeedTarget::Reuse,
        SeedTarget::ErrorRate,
        SeedTarget::Connections,
    ];

    /// The target in the article's words.
    pub fn describe(self) -> &'static str {
        match self {
            SeedTarget::Setup => "connection setup < 50 ms",
            SeedTarget::Ttfb => "TTFB P95 < 180 ms",
            SeedTarget::Reuse => "connection reuse > 95 %",
            SeedTarget::ErrorRate => "error rate < 0.1 %",
            SeedTarget::Connections => ">= 500 connections per key",
        }
    }

    /// The threshold that checks it.
    pub fn expr(self) -> &'static str {
        match self {
            SeedTarget::Setup => "setup.p95<50ms",
            SeedTarget::Ttfb => "ttfb.p95<180ms",
            SeedTarget::Reuse => "reuse>95%",
            SeedTarget::ErrorRate => "errors.rate<0.1%",
            SeedTarget::Connections => "connections>=500",
        }
    }

    /// The commands that measure it.
    pub fn commands(self) -> &'static [Command] {
        match self {
            SeedTarget::Setup => &[Command::Http, Command::Ws, Command::Probe],
            SeedTarget::Ttfb | SeedTarget::Reuse => &[Command::Http],
            SeedTarget::ErrorRate => &[Command::Http, Command::Ws],
            SeedTarget::Connections => &[Command::Probe],
        }
    }

    /// Its threshold for a run of this command, or `None` when the command does not measure
    /// it.
    pub fn threshold(self, command: Command) -> Option<Threshold> {
        if !self.commands().contains(&command) {
            return None;
        }
        // The seed's metrics need no optional phase: any context of the command parses them.
        Some(
            Threshold::parse(self.expr(), &Context::new(command))
                .expect("the seed's thresholds parse for the commands that measure them"),
        )
    }
}

/// What the pass/fail flags asked for: typed, as the reports render them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checks {
    /// `--threshold`, in order.
    pub thresholds: Vec<Threshold>,
    /// `--targets`.
    pub targets: Option<Targets>,
    /// `--allow-nothing-measured`: a run that measured nothing exits 0.
    pub allow_nothing_measured: bool,
}

/// Where a checked threshold came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--threshold`.
    Flag,
    /// `--targets seed`.
    Seed(SeedTarget),
}

/// A threshold checked against a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// The threshold.
    pub threshold: Threshold,
    /// What was measured; `None` when the metric has no sample (rule 2).
    pub measured: Option<Measured>,
    /// It held.
    pub pass: bool,
    /// Where it came from.
    pub origin: Origin,
}

impl Outcome {
    /// The measurement for people: `61.2µs`, `between 1.10ms and 1.52ms`, `no samples`.
    pub fn shown(&self) -> String {
        let kind = self.threshold.metric.kind();
        match self.measured {
            None => "no samples".to_string(),
            Some(m) if m.is_exact() => kind.show(m.lo),
            Some(m) => format!(
                "between {} and {} (connect + tls)",
                kind.show(m.lo),
                kind.show(m.hi)
            ),
        }
    }
}

/// What a threshold is checked against.
pub enum Source<'a> {
    /// A load run (`http`, `ws`, or a merge of them).
    Run(&'a RunMeta, &'a RunResult),
    /// A probe's pass.
    Probe(&'a RunMeta, &'a PassResult),
}

impl Source<'_> {
    fn recorder(&self) -> &Recorder {
        match self {
            Source::Run(_, r) => &r.recorder,
            Source::Probe(_, p) => &p.recorder,
        }
    }

    fn tls(&self) -> bool {
        match self {
            Source::Run(m, _) | Source::Probe(m, _) => m.tls.is_some(),
        }
    }

    fn elapsed_s(&self) -> f64 {
        match self {
            Source::Run(_, r) => r.elapsed.as_secs_f64(),
            Source::Probe(_, p) => p.elapsed.as_secs_f64(),
        }
    }

    fn pass(&self) -> Option<&PassResult> {
        match self {
            Source::Probe(_, p) => Some(p),
            Source::Run(..) => None,
        }
    }

    fn meta(&self) -> &RunMeta {
        match self {
            Source::Run(m, _) | Source::Probe(m, _) => m,
        }
    }
}

/// Check every threshold and target a run asked for: the `--threshold`s in order, then the
/// seed's targets that its command measures.
pub fn evaluate(src: &Source<'_>) -> Vec<Outcome> {
    let checks = &src.meta().checks;
    let command = Command::of_mode(src.meta().mode);
    let mut out: Vec<Outcome> = checks
        .thresholds
        .iter()
        .map(|t| t.check(src, Origin::Flag))
        .collect();
    if checks.targets == Some(Targets::Seed) {
        for target in SeedTarget::ALL {
            if let Some(t) = target.threshold(command) {
                out.push(t.check(src, Origin::Seed(target)));
            }
        }
    }
    out
}

/// The text lines of the outcomes: a PASS/FAIL line per `--threshold`, then the seed's table
/// (every target, `n/a` where the command does not measure it). Empty when none was asked.
pub fn render_text(meta: &RunMeta, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let flags: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.origin == Origin::Flag)
        .collect();
    if !flags.is_empty() {
        let failed = flags.iter().filter(|o| !o.pass).count();
        let _ = writeln!(
            out,
            "\nthresholds  {} passed, {failed} failed",
            flags.len() - failed
        );
        let w = flags
            .iter()
            .map(|o| o.threshold.to_string().chars().count())
            .max()
            .unwrap_or(0);
        for o in flags {
            let _ = writeln!(
                out,
                "  {}  {:<w$}  measured {}",
                verdict_word(o.pass),
                o.threshold.to_string(),
                o.shown()
            );
        }
    }
    if meta.checks.targets == Some(Targets::Seed) {
        let command = Command::of_mode(meta.mode);
        let _ = writeln!(
            out,
            "\nseed targets (--targets seed)\n  {:<28} {:<18} {:<24} verdict",
            "target", "threshold", "measured"
        );
        for target in SeedTarget::ALL {
            let row = outcomes.iter().find(|o| o.origin == Origin::Seed(target));
            let (threshold, measured, verdict) = match row {
                Some(o) => (
                    o.threshold.to_string(),
                    o.shown(),
                    verdict_word(o.pass).to_string(),
                ),
                None => (
                    target.expr().to_string(),
                    "-".to_string(),
                    format!(
                        "n/a (measured by connbench {}, not {})",
                        target
                            .commands()
                            .iter()
                            .map(|c| c.name())
                            .collect::<Vec<_>>()
                            .join(" and "),
                        command.name()
                    ),
                ),
            };
            let _ = writeln!(
                out,
                "  {:<28} {:<18} {:<24} {verdict}",
                target.describe(),
                threshold,
                measured
            );
        }
    }
    out
}

fn verdict_word(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

/// One line naming the failed thresholds and what was measured, for stderr; `None` when all
/// passed.
pub fn failure_line(outcomes: &[Outcome]) -> Option<String> {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.pass)
        .map(|o| format!("{} (measured {})", o.threshold, o.shown()))
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "{} of {} thresholds failed: {}",
            failed.len(),
            outcomes.len(),
            failed.join("; ")
        )
    })
}

/// The error classes that occurred, most frequent first: `connect_refused 10, read_timeout 2`.
fn classes(c: &Counters) -> String {
    let mut hit: Vec<(ErrorClass, u64)> = ErrorClass::ALL
        .into_iter()
        .map(|e| (e, c.errors[e.index()]))
        .filter(|&(_, n)| n > 0)
        .collect();
    hit.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    hit.iter()
        .map(|(e, n)| format!("{} {n}", e.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rule 5 for a load run: why it measured nothing, in one line, or `None` when it measured
/// something.
pub fn nothing_measured(meta: &RunMeta, run: &RunResult) -> Option<String> {
    let rec = &run.recorder;
    let c = &rec.counters;
    let secs = run.elapsed.as_secs_f64();
    let failed = c.total_errors();
    let Some(ws) = &meta.ws else {
        let good: u64 = [
            StatusClass::Informational,
            StatusClass::Success,
            StatusClass::Redirect,
        ]
        .iter()
        .map(|s| c.status[s.index()])
        .sum();
        return match (c.responses, good) {
            (0, _) if failed > 0 => Some(format!(
                "no response: all {failed} connections or requests failed ({})",
                classes(c)
            )),
            (0, _) => Some(format!(
                "no response and no failure in {secs:.2} s ({} requests sent, none answered)",
                c.requests
            )),
            (n, 0) => {
                let statuses: Vec<String> = StatusClass::ALL
                    .iter()
                    .filter(|s| c.status[s.index()] > 0)
                    .map(|s| format!("{} {}", s.name(), c.status[s.index()]))
                    .collect();
                Some(format!(
                    "every one of the {n} responses was an error ({}){}",
                    statuses.join(", "),
                    if failed > 0 {
                        format!(", and {failed} failed ({})", classes(c))
                    } else {
                        String::new()
                    }
                ))
            }
            _ => None,
        };
    };
    let w = &c.ws;
    if w.upgraded == 0 {
        return Some(format!(
            "no WebSocket connection was upgraded ({} attempted{})",
            c.connections_opened,
            if failed > 0 {
                format!(": {}", classes(c))
            } else {
                String::new()
            }
        ));
    }
    let upgraded = format!("{} connections upgraded", w.upgraded);
    match ws.mode {
        WsMode::Echo if rec.histogram(Phase::Rtt).is_empty() => Some(format!(
            "{upgraded} but no echo came back in {secs:.2} s ({} messages sent)",
            w.messages_out
        )),
        WsMode::Ping if rec.histogram(Phase::Rtt).is_empty() => Some(format!(
            "{upgraded} but no pong came back in {secs:.2} s ({} pings sent)",
            w.pings_sent
        )),
        WsMode::Stream => {
            // Replies to a text heartbeat are messages but not data (engine::ws rule 7).
            let data = if matches!(ws.heartbeat, crate::plan::Heartbeat::Text(_)) {
                w.messages_in.saturating_sub(w.pongs_received)
            } else {
                w.messages_in
            };
            (data == 0 && rec.histogram(Phase::FirstMessage).is_empty()).then(|| {
                format!(
                    "{upgraded} but no data message arrived in {secs:.2} s (does a --subscribe \
                     message match a stream of the server?)"
                )
            })
        }
        _ => None,
    }
}

/// Rule 5 for a probe: why it measured nothing (it never established a connection).
pub fn probe_nothing_measured(pass: &PassResult) -> Option<String> {
    if pass.established > 0 || pass.limit > 0 {
        return None;
    }
    Some(match &pass.first_failure {
        Some(f) => format!(
            "the probe never established a connection ({} attempted; first failure {} on \
             connection {})",
            pass.attempted,
            f.cause.label(),
            f.connection
        ),
        None => format!(
            "the probe never established a connection ({} attempted)",
            pass.attempted
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::plan::{Heartbeat, Mode, TlsPlan, WsSession};

    fn ctx(command: Command) -> Context {
        Context::new(command)
    }

    fn parse(expr: &str) -> Threshold {
        Threshold::parse(expr, &ctx(Command::Http)).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn refused(expr: &str, c: &Context) -> String {
        match Threshold::parse(expr, c) {
            Ok(t) => panic!("{expr} parsed as {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_operator_parses_with_or_without_spaces() {
        for (text, op) in [
            ("ttfb.p95<180ms", Op::Lt),
            ("ttfb.p95<=180ms", Op::Le),
            ("ttfb.p95>180ms", Op::Gt),
            ("ttfb.p95>=180ms", Op::Ge),
            ("ttfb.p95==180ms", Op::Eq),
            ("ttfb.p95!=180ms", Op::Ne),
            ("ttfb.p95 <= 180ms", Op::Le),
            ("  ttfb.p95 !=180ms ", Op::Ne),
        ] {
            let t = parse(text);
            assert_eq!(t.op, op, "{text}");
            assert_eq!(
                t.metric,
                Metric::Phase(
                    Phase::Ttfb,
                    Stat::Percentile(Percentile::new(95.0).unwrap())
                )
            );
            assert_eq!(t.limit.base(), 180e6, "{text}");
            assert_eq!(t.to_string(), format!("ttfb.p95{}180ms", op.symbol()));
        }
    }

    #[test]
    fn every_unit_scales_to_the_base_unit() {
        for (text, base) in [
            ("total.max<250ns", 250.0),
            ("total.max<250us", 250e3),
            ("total.max<250µs", 250e3),
            ("total.max<2.5ms", 2.5e6),
            ("total.max<1.5s", 1.5e9),
            ("total.max<0s", 0.0),
            ("errors.rate<0.1%", 0.001),
            ("errors.rate<0.001", 0.001),
            ("reuse>95%", 0.95),
            ("reuse>=1", 1.0),
            ("status.5xx==0", 0.0),
            ("requests>=1000", 1000.0),
            ("responses.rate>2000", 2000.0),
            ("responses.rate>2000/s", 2000.0),
            ("connect.count>=4", 4.0),
        ] {
            let t = parse(text);
            assert!(
                (t.limit.base() - base).abs() <= base * 1e-12,
                "{text}: {}",
                t.limit.base()
            );
        }
        // Scaled in decimal: a measured 1 in 1000 is exactly at 0.1%.
        assert_eq!(parse("errors.rate<=0.1%").limit.base(), 1.0 / 1000.0);
        assert_eq!(parse("errors.rate<=0.07%").limit.base(), 7.0 / 10000.0);
        assert_eq!(parse("ttfb.max<0.3ms").limit.base(), 300_000.0);
        // Shown as written (µs for either spelling).
        assert_eq!(parse("errors.rate < 0.1%").to_string(), "errors.rate<0.1%");
        assert_eq!(parse("total.p99<250us").to_string(), "total.p99<250µs");
        assert_eq!(
            parse("responses.rate>2000/s").to_string(),
            "responses.rate>2000/s"
        );
    }

    #[test]
    fn measurements_show_in_their_units() {
        assert_eq!(Kind::Duration.show(61_234.0), "61.2µs");
        assert_eq!(Kind::Ratio.show(5.0 / 1003.0), "0.499 %");
        assert_eq!(Kind::Ratio.show(1.0), "100.000 %");
        assert_eq!(Kind::Count.show(500.0), "500");
        assert_eq!(Kind::PerSecond.show(1234.4), "1234/s");
        assert_eq!(Kind::PerSecond.show(19.999), "20.0/s");
        assert_eq!(Kind::PerSecond.show(2.5), "2.50/s");
        assert_eq!(Kind::Duration.unit(), "ns");
        assert_eq!(Kind::PerSecond.unit(), "per_s");
    }

    #[test]
    fn statistics_and_their_k6_spellings() {
        let p = |x: f64| Stat::Percentile(Percentile::new(x).unwrap());
        for (text, stat) in [
            ("ttfb.p50<1s", p(50.0)),
            ("ttfb.med<1s", p(50.0)),
            ("ttfb.p(95)<1s", p(95.0)),
            ("ttfb.p99.9<1s", p(99.9)),
            ("ttfb.p99.99<1s", p(99.99)),
            ("ttfb.p100<1s", Stat::Max),
            ("ttfb.max<1s", Stat::Max),
            ("ttfb.min<1s", Stat::Min),
            ("ttfb.mean<1s", Stat::Mean),
            ("ttfb.avg<1s", Stat::Mean),
        ] {
            assert_eq!(
                parse(text).metric,
                Metric::Phase(Phase::Ttfb, stat),
                "{text}"
            );
        }
        assert_eq!(parse("ttfb.count>0").metric.kind(), Kind::Count);
        assert_eq!(parse("setup.p95<50ms").metric, Metric::Setup(p(95.0)));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let http = ctx(Command::Http);
        for (expr, needle) in [
            ("ttfb.p95", "no comparison: write METRIC OP VALUE"),
            ("ttfb.p95=180ms", "no comparison"),
            ("<180ms", "no metric"),
            ("ttfb.p95<", "one value must follow <"),
            ("ttfb.p95<180ms<2s", "one value must follow <"),
            ("ttfb<180ms", "ttfb needs a statistic, e.g. ttfb.p95"),
            ("ttfb.p999<180ms", "unknown statistic \"p999\""),
            ("ttfb.p0<180ms", "unknown statistic \"p0\""),
            ("ttfb.p95<180", "ttfb.p95 is a duration: give a unit"),
            ("ttfb.p95<180%", "unit \"%\" does not apply"),
            ("ttfb.p95<180min", "unit \"min\" does not apply"),
            ("ttfb.p95<-1ms", "is not a number"),
            ("ttfb.p95<fast", "is not a number"),
            ("errors.rate<5", "is a ratio: write 5% or a fraction"),
            ("errors.rate<101%", "more than 100 %"),
            ("errors.bogus>0", "unknown error class \"bogus\""),
            ("status.6xx==0", "unknown status class \"6xx\""),
            (
                "status.5xx==0ms",
                "unit \"ms\" does not apply (it is a count",
            ),
            ("reuse.p95>1", "unknown metric \"reuse.p95\""),
            ("bogus<1", "unknown metric \"bogus\" for connbench http"),
        ] {
            let e = refused(expr, &http);
            assert!(e.contains(needle), "{expr}: {e}");
        }
    }

    #[test]
    fn a_metric_the_command_lacks_is_refused_with_the_valid_ones() {
        let e = refused("latency.p99<20ms", &ctx(Command::Http));
        assert!(
            e.contains("latency is not measured by connbench http"),
            "{e}"
        );
        for valid in [
            "connect",
            "ttfb",
            "total",
            "setup",
            "errors.rate",
            "reuse",
            "status.",
        ] {
            assert!(e.contains(valid), "{valid} missing from {e}");
        }
        let e = refused("reuse>95%", &ctx(Command::Ws));
        assert!(e.contains("reuse is not measured by connbench ws"), "{e}");
        assert!(e.contains("msgs.rate"), "{e}");
        let e = refused("msgs.rate>1000", &ctx(Command::Http));
        assert!(e.contains("msgs is not measured by connbench http"), "{e}");
        let e = refused("errors.rate<1%", &ctx(Command::Probe));
        assert!(
            e.contains("errors is not measured by connbench probe"),
            "{e}"
        );
        assert!(e.contains("connections, failures, drops"), "{e}");
        let e = refused("ttfb.p95<1s", &ctx(Command::Probe));
        assert!(e.contains("ttfb is not measured by connbench probe"), "{e}");
    }

    #[test]
    fn a_metric_the_settings_rule_out_names_the_flag_that_adds_it() {
        let http = ctx(Command::Http);
        let e = refused("tls.p95<10ms", &http);
        assert!(e.contains("plain TCP") && e.contains("https://"), "{e}");
        let e = refused("corrected.p99<10ms", &http);
        assert!(e.contains("-R RATE"), "{e}");
        let e = refused("unsent==0", &http);
        assert!(e.contains("-R RATE"), "{e}");
        let rate = Context {
            rate: true,
            tls: true,
            ..http
        };
        for ok in [
            "tls.p95<10ms",
            "corrected.p99<10ms",
            "send_lag.max<1ms",
            "unsent==0",
        ] {
            Threshold::parse(ok, &rate).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let ws = ctx(Command::Ws);
        let e = refused("latency.p99<20ms", &ws);
        assert!(e.contains("--ts-field"), "{e}");
        let e = refused("rtt.p99<20ms", &ws);
        assert!(e.contains("--mode echo"), "{e}");
        let e = refused("corrected.p99<20ms", &ws);
        assert!(e.contains("--mode echo"), "{e}");
        let echo = Context {
            ws_mode: Some(WsMode::Echo),
            ts_field: true,
            ..ws
        };
        for ok in [
            "latency.p99<20ms",
            "rtt.p99<20ms",
            "corrected.p99<20ms",
            "msgs.rate>1000",
        ] {
            Threshold::parse(ok, &echo).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let probe = ctx(Command::Probe);
        assert!(refused("total.p99<1s", &probe).contains("--request"));
        assert!(refused("upgrade.p99<1s", &probe).contains("--ws"));
        let request = Context {
            establish: Some(Establish::Request),
            ..probe
        };
        Threshold::parse("total.p99<1s", &request).unwrap();
    }

    #[test]
    fn the_seeds_targets_parse_for_the_commands_that_measure_them() {
        for target in SeedTarget::ALL {
            for command in [Command::Http, Command::Ws, Command::Probe] {
                let t = target.threshold(command);
                assert_eq!(t.is_some(), target.commands().contains(&command));
                if let Some(t) = t {
                    assert_eq!(t.to_string(), target.expr());
                }
            }
        }
    }

    fn meta(mode: &str) -> RunMeta {
        let mode = Mode::parse(mode).expect("a mode");
        RunMeta {
            ws: (mode == Mode::Ws).then(|| WsSession::example(WsMode::Stream)),
            ..RunMeta::new(mode, "http://127.0.0.1:1/")
        }
    }

    fn run(rec: Recorder) -> RunResult {
        RunResult {
            recorder: rec,
            workers: vec![],
            started_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(2),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: 0,
            intervals: vec![],
            stages: vec![],
            worker_panics: vec![],
            time_wait: None,
        }
    }

    /// 1000 requests: TTFB 1..=1000 µs, 990 reused, 2 of them answered 503, 3 timed out.
    fn http_run() -> RunResult {
        let mut r = Recorder::new();
        for i in 1..=1000u64 {
            r.record(Phase::Ttfb, i * 1_000);
            r.response(if i <= 2 { 503 } else { 200 });
        }
        for _ in 0..3 {
            r.error(ErrorClass::ReadTimeout);
        }
        for i in 1..=10u64 {
            r.record(Phase::Connect, i * 100_000);
        }
        r.counters.requests = 1003;
        r.counters.reused_requests = 993;
        run(r)
    }

    fn check(expr: &str, m: &RunMeta, r: &RunResult) -> Outcome {
        let c = Context {
            tls: m.tls.is_some(),
            rate: m.rate.is_some(),
            ts_field: true,
            ..ctx(Command::of_mode(m.mode))
        };
        Threshold::parse(expr, &c)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .check(&Source::Run(m, r), Origin::Flag)
    }

    #[test]
    fn the_evaluator_compares_what_was_measured() {
        let (m, r) = (meta("http"), http_run());
        let value = |expr: &str| check(expr, &m, &r).measured.map(|x| x.lo);
        let h = r.recorder.histogram(Phase::Ttfb);
        assert_eq!(value("ttfb.p95<1s"), Some(h.value_at_quantile(0.95) as f64));
        assert_eq!(value("ttfb.max<1s"), Some(h.max() as f64));
        assert_eq!(value("ttfb.count>0"), Some(1000.0));
        assert_eq!(value("status.5xx==0"), Some(2.0));
        assert_eq!(value("errors.read_timeout==0"), Some(3.0));
        // Rule 4: 3 failures + 2 error responses over 1000 responses + 3 failures.
        assert_eq!(value("errors.count==0"), Some(5.0));
        assert_eq!(value("errors.rate<1%"), Some(5.0 / 1003.0));
        assert_eq!(value("reuse>95%"), Some(993.0 / 1003.0));
        assert_eq!(value("responses.rate>1"), Some(500.0));
        assert_eq!(value("requests>1"), Some(1003.0));
        // Plain TCP: setup is connect, exactly.
        let connect = r.recorder.histogram(Phase::Connect);
        assert_eq!(
            value("setup.p95<1s"),
            Some(connect.value_at_quantile(0.95) as f64)
        );
        // 1..=1000 µs: p95 is the 950th sample, 950 µs within the histogram's 3 digits.
        assert_eq!(h.value_at_quantile(0.95), h.highest_equivalent(950_000));
    }

    #[test]
    fn thresholds_pass_and_fail_on_known_values() {
        let (m, r) = (meta("http"), http_run());
        for (expr, pass) in [
            ("ttfb.p95<950ms", true),
            ("ttfb.p95<950us", false),
            ("ttfb.p95<=1ms", true),
            ("ttfb.p95>1ms", false),
            ("ttfb.p95>=900us", true),
            ("ttfb.count==1000", true),
            ("ttfb.count!=1000", false),
            ("status.5xx==0", false),
            ("status.5xx<=2", true),
            ("status.2xx==998", true),
            ("errors.rate<0.1%", false),
            ("errors.rate<1%", true),
            ("reuse>99.1%", false),
            ("reuse>95%", true),
            ("responses.rate>=500", true),
            ("responses.rate>500", false),
        ] {
            let o = check(expr, &m, &r);
            assert_eq!(o.pass, pass, "{expr}: measured {}", o.shown());
        }
    }

    #[test]
    fn a_metric_without_samples_fails_rather_than_passes() {
        let m = meta("http");
        let r = run(Recorder::new());
        for expr in ["ttfb.p95<1s", "errors.rate<1%", "reuse>0", "setup.max<1s"] {
            let o = check(expr, &m, &r);
            assert!(!o.pass, "{expr}");
            assert_eq!(o.measured, None, "{expr}");
            assert_eq!(o.shown(), "no samples");
        }
        // A count of nothing is a measurement: 0.
        let o = check("ttfb.count==0", &m, &r);
        assert!(o.pass && o.measured == Some(Measured::exact(0.0)));
        // A zero-length window has no rate.
        let mut z = http_run();
        z.elapsed = Duration::ZERO;
        assert_eq!(check("responses.rate>0", &m, &z).measured, None);
    }

    #[test]
    fn websocket_error_rate_is_per_connection_attempt() {
        let m = meta("ws");
        let mut rec = Recorder::new();
        rec.counters.connections_opened = 200;
        rec.counters.ws.upgraded = 199;
        rec.counters.ws.messages_in = 4000;
        rec.error(ErrorClass::UpgradeRejected);
        let r = run(rec);
        assert_eq!(
            check("errors.rate<1%", &m, &r).measured,
            Some(Measured::exact(0.005))
        );
        assert!(check("errors.rate<1%", &m, &r).pass);
        assert!(!check("errors.rate<0.1%", &m, &r).pass);
        assert_eq!(
            check("msgs.rate>1000", &m, &r).measured,
            Some(Measured::exact(2000.0))
        );
        assert_eq!(
            check("connections.success>99%", &m, &r).measured,
            Some(Measured::exact(0.995))
        );
        assert_eq!(
            check("connections.failed==1", &m, &r).measured,
            Some(Measured::exact(1.0))
        );
    }

    /// Every split of connect + tls into two histograms, per connection.
    fn tls_run(pairs: &[(u64, u64)], failed_handshakes: &[u64]) -> (RunMeta, RunResult, Vec<u64>) {
        let mut m = meta("http");
        m.tls = Some(TlsPlan::default());
        let mut rec = Recorder::new();
        for &(c, t) in pairs {
            rec.record(Phase::Connect, c);
            rec.record(Phase::Tls, t);
        }
        for &c in failed_handshakes {
            rec.record(Phase::Connect, c);
        }
        let mut setups: Vec<u64> = pairs.iter().map(|(c, t)| c + t).collect();
        setups.sort_unstable();
        (m, run(rec), setups)
    }

    #[test]
    fn setup_over_tls_is_bounded_and_the_bounds_hold_the_true_value() {
        // Connect and TLS anti-correlated, correlated and mixed, with and without connections
        // whose handshake failed (connect samples without a TLS sample).
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % 50_000_000 + 1_000
        };
        for case in 0..6 {
            let n = 200 + case * 37;
            let pairs: Vec<(u64, u64)> = (0..n)
                .map(|i| match case % 3 {
                    0 => (i * 100_000 + 1_000, (n - i) * 100_000 + 1_000),
                    1 => (i * 100_000 + 1_000, i * 50_000 + 1_000),
                    _ => (next(), next()),
                })
                .collect();
            let failed: Vec<u64> = if case >= 3 {
                (0..20).map(|_| next()).collect()
            } else {
                vec![]
            };
            let (m, r, setups) = tls_run(&pairs, &failed);
            for stat in ["min", "p50", "p90", "p95", "p99", "max", "mean"] {
                let o = check(&format!("setup.{stat}<1s"), &m, &r);
                let b = o.measured.expect("bounded");
                let truth = match stat {
                    "min" => setups[0] as f64,
                    "max" => setups[setups.len() - 1] as f64,
                    "mean" => setups.iter().sum::<u64>() as f64 / setups.len() as f64,
                    p => {
                        let q: f64 = p[1..].parse::<f64>().unwrap() / 100.0;
                        let k = ((q * setups.len() as f64).ceil() as usize).max(1);
                        setups[k - 1] as f64
                    }
                };
                // The histograms keep 3 significant digits: allow their resolution.
                let slack = truth * 2e-3;
                assert!(
                    b.lo <= truth + slack && truth <= b.hi + slack,
                    "case {case} setup.{stat}: {truth} outside [{}, {}]",
                    b.lo,
                    b.hi
                );
            }
            assert_eq!(
                check("setup.count>0", &m, &r).measured,
                Some(Measured::exact(n as f64))
            );
        }
    }

    #[test]
    fn a_bounded_setup_passes_only_when_the_whole_range_does() {
        // Every connection: connect 10 ms, TLS 30 ms → setup 40 ms; bounds hold it.
        let pairs = vec![(10_000_000, 30_000_000); 100];
        let (m, r, _) = tls_run(&pairs, &[]);
        let o = check("setup.p95<50ms", &m, &r);
        assert!(o.pass, "{}", o.shown());
        let o = check("setup.p95<35ms", &m, &r);
        assert!(!o.pass, "{}", o.shown());
        let b = check("setup.p95>0s", &m, &r).measured.unwrap();
        assert!(b.lo >= 39e6 && b.hi <= 41e6, "{b:?}");
        // Straddling bounds cannot pass, whichever way the comparison goes.
        let straddle = Measured { lo: 1.0, hi: 3.0 };
        for op in [Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Eq] {
            assert!(!op.holds_for(straddle, 2.0), "{op:?}");
        }
        assert!(!Op::Ne.holds_for(straddle, 2.0));
        assert!(Op::Ne.holds_for(straddle, 4.0));
        assert!(Op::Lt.holds_for(straddle, 3.5) && Op::Gt.holds_for(straddle, 0.5));
    }

    #[test]
    fn outcomes_render_pass_fail_lines_and_the_seed_table() {
        let mut m = meta("http");
        m.checks = Checks {
            thresholds: vec![parse("ttfb.p95<1s"), parse("errors.rate<0.1%")],
            targets: Some(Targets::Seed),
            allow_nothing_measured: false,
        };
        let r = http_run();
        let outcomes = evaluate(&Source::Run(&m, &r));
        assert_eq!(
            outcomes.len(),
            2 + 4,
            "two flags, four seed targets for http"
        );
        let t = render_text(&m, &outcomes);
        assert!(t.contains("thresholds  1 passed, 1 failed"), "{t}");
        assert!(
            t.contains(&format!("  PASS  {:<16}  measured 950µs\n", "ttfb.p95<1s")),
            "{t}"
        );
        assert!(
            t.contains("  FAIL  errors.rate<0.1%  measured 0.499 %\n"),
            "{t}"
        );
        assert!(t.contains("seed targets (--targets seed)"), "{t}");
        for target in SeedTarget::ALL {
            let row = t
                .lines()
                .find(|l| l.contains(target.describe()))
                .unwrap_or_else(|| panic!("no row for {target:?}: {t}"));
            assert!(row.contains(target.expr()), "{row}");
            match target {
                SeedTarget::Connections => assert!(
                    row.contains("n/a (measured by connbench probe, not http)"),
                    "{row}"
                ),
                SeedTarget::Reuse => assert!(row.ends_with("PASS"), "{row}"),
                SeedTarget::ErrorRate => assert!(row.ends_with("FAIL"), "{row}"),
                _ => {}
            }
        }
        let line = failure_line(&outcomes).expect("failures");
        assert!(
            line.starts_with("2 of 6 thresholds failed: errors.rate<0.1% (measured 0.499 %)"),
            "{line}"
        );
        m.checks = Checks::default();
        assert!(evaluate(&Source::Run(&m, &r)).is_empty());
        assert_eq!(render_text(&m, &[]), "");
        assert_eq!(failure_line(&[]), None);
    }

    #[test]
    fn nothing_measured_says_why_in_one_line() {
        let m = meta("http");
        let mut rec = Recorder::new();
        for _ in 0..10 {
            rec.error(ErrorClass::ConnectRefused);
        }
        let why = nothing_measured(&m, &run(rec)).expect("nothing");
        assert_eq!(
            why,
            "no response: all 10 connections or requests failed (connect_refused 10)"
        );
        let mut rec = Recorder::new();
        for _ in 0..5 {
            rec.response(503);
        }
        rec.response(429);
        let why = nothing_measured(&m, &run(rec)).expect("nothing");
        assert_eq!(
            why,
            "every one of the 6 responses was an error (429 1, 5xx 5)"
        );
        let mut rec = Recorder::new();
        rec.counters.requests = 4;
        let why = nothing_measured(&m, &run(rec)).expect("nothing");
        assert!(why.contains("4 requests sent, none answered"), "{why}");
        assert_eq!(nothing_measured(&m, &http_run()), None);

        // WebSocket: no upgrade; upgraded but silent; messages that are heartbeat replies.
        let mut w = meta("ws");
        let mut rec = Recorder::new();
        rec.counters.connections_opened = 3;
        rec.error(ErrorClass::ConnectRefused);
        let why = nothing_measured(&w, &run(rec)).expect("nothing");
        assert!(
            why.starts_with(
                "no WebSocket connection was upgraded (3 attempted: connect_refused 1)"
            ),
            "{why}"
        );
        let mut rec = Recorder::new();
        rec.counters.connections_opened = 2;
        rec.counters.ws.upgraded = 2;
        let why = nothing_measured(&w, &run(rec.clone())).expect("nothing");
        assert!(
            why.contains("2 connections upgraded but no data message"),
            "{why}"
        );
        rec.counters.ws.messages_in = 4;
        rec.counters.ws.pongs_received = 4;
        w.ws.as_mut().unwrap().heartbeat = Heartbeat::Text("ping".into());
        assert!(
            nothing_measured(&w, &run(rec.clone())).is_some(),
            "replies are not data"
        );
        rec.record(Phase::FirstMessage, 1_000);
        assert_eq!(nothing_measured(&w, &run(rec.clone())), None);
        w.ws.as_mut().unwrap().mode = WsMode::Echo;
        let why = nothing_measured(&w, &run(rec.clone())).expect("no echo");
        assert!(why.contains("no echo came back"), "{why}");
        rec.record(Phase::Rtt, 1_000);
        assert_eq!(nothing_measured(&w, &run(rec)), None);
    }
}
