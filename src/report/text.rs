//! The human summary printed after a run: what ran, one aligned row per phase (count, min, the
//! `--percentiles` columns — p50/p90/p95/p99/p99.9 by default —, max, mean), then throughput,
//! connection reuse, status classes, error classes, TLS facts, the client's own cost, and the
//! PASS/FAIL lines of `--threshold` and `--targets` — the lines a wrk or k6 user looks for.
//!
//! Durations are auto-scaled (ns/µs/ms/s, 3 significant digits); byte rates use decimal units
//! (MB/s), memory binary units (MiB). Every user-supplied string goes through [`redact`] first.
//! This module only formats: it must not compute anything the JSON report would disagree with,
//! print, or read the host.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::percentiles::Percentiles;
use super::{redact, threshold, RunMeta, RunResult};
use crate::metrics::{Counters, ErrorClass, Phase, Reasons, StatusClass};
use crate::plan::{TlsPlan, WsMode, WsSession};

/// Width of the phase-name column.
const NAME_W: usize = 8;
/// Width of the count column and of every statistic column.
const COL_W: usize = 10;
/// Width of the label column of the summary lines ("throughput", "reuse", …).
const LABEL_W: usize = 12;

/// Render the text summary of a run. Ends with a newline.
pub fn render(meta: &RunMeta, run: &RunResult) -> String {
    let c = &run.recorder.counters;
    let mut out = String::new();
    header(&mut out, meta, run);
    out.push('\n');
    phase_table(&mut out, meta, run);
    out.push('\n');
    match &meta.ws {
        Some(ws) => websocket(&mut out, meta, ws, run),
        None => {
            throughput(&mut out, c, run.elapsed);
            if let Some((asked, arrival)) = &meta.rate {
                rate_line(&mut out, meta, *asked, arrival.name(), run);
            }
            if let Some(asked) = meta.conn_rate {
                conn_rate_line(&mut out, meta, asked, run);
            }
            reuse(&mut out, c);
            responses(&mut out, c);
            time_wait(&mut out, meta, run);
        }
    }
    errors(&mut out, c);
    reasons(&mut out, &run.recorder.reasons);
    if !run.stages.is_empty() {
        stages(&mut out, meta, run);
    }
    if let Some(t) = &meta.tls {
        tls(&mut out, t, run);
    }
    client(&mut out, run);
    let outcomes = threshold::evaluate(&threshold::Source::Run(meta, run));
    out.push_str(&threshold::render_text(meta, &outcomes));
    if meta.insecure() {
        // Repeated at the end: the part people paste into tickets must carry the caveat too.
        out.push_str(INSECURE_WARNING);
        out.push('\n');
    }
    out
}

/// What `--busy-poll` did: the workers spun, and whether SO_BUSY_POLL took.
pub fn busy_poll_line(bp: &crate::plan::BusyPoll) -> String {
    let so = match &bp.so_busy_poll {
        Ok(us) => format!("SO_BUSY_POLL {us} µs on every socket"),
        Err(why) => format!("SO_BUSY_POLL refused by the kernel ({why})"),
    };
    format!("busy-poll: workers spin in epoll_wait(…, 0) instead of sleeping; {so}")
}

/// Printed whenever `--insecure` was given.
pub const INSECURE_WARNING: &str = "WARNING: --insecure: certificates were not verified";
/// Starts the line saying why a run measured nothing (`report::threshold` rule 5).
pub const NOTHING_MEASURED: &str = "NOTHING MEASURED";
/// Printed when Ctrl-C ended the run early.
pub const INTERRUPTED_NOTE: &str = "interrupted (Ctrl-C): partial results";

fn header(out: &mut String, meta: &RunMeta, run: &RunResult) {
    let _ = write!(
        out,
        "connbench {}  {}  {}",
        env!("CARGO_PKG_VERSION"),
        meta.mode,
        redact::url(&meta.url)
    );
    if meta.builtin_target {
        out.push_str("  (built-in target)");
    }
    out.push('\n');

    let mut workers = format!(
        "{} on {}",
        plural(meta.connections as u64, "connection"),
        plural(meta.threads as u64, "worker")
    );
    if meta.worker_cpus.is_empty() {
        workers.push_str(" (not pinned)");
    } else {
        let _ = write!(workers, " ({})", cpus(&meta.worker_cpus));
    }
    if !meta.target_cpus.is_empty() {
        let _ = write!(workers, ", target on {}", cpus(&meta.target_cpus));
    }
    match &meta.ws {
        Some(ws) => {
            let _ = writeln!(
                out,
                "  {}, {} mode, {} (warm-up {})",
                workers,
                ws.mode.name(),
                bound(meta),
                secs_short(meta.warmup)
            );
            for sub in &ws.subscriptions {
                let _ = writeln!(out, "  subscribe {}", redact::message(sub));
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  {}, pipeline {}, {} (warm-up {})",
                workers,
                meta.pipeline,
                bound(meta),
                secs_short(meta.warmup)
            );
            if let Some(line) = connection_shape(meta) {
                let _ = writeln!(out, "  {line}");
            }
        }
    }

    if let Some(bp) = &meta.busy_poll {
        let _ = writeln!(out, "  {}", busy_poll_line(bp));
    }
    if meta.method != "GET" || meta.body_len > 0 || !meta.headers.is_empty() && meta.ws.is_none() {
        let _ = write!(out, "  {}", meta.method);
        if meta.body_len > 0 {
            let _ = write!(out, ", body {} B", meta.body_len);
        }
        if !meta.headers.is_empty() {
            let hs: Vec<String> = meta
                .headers
                .iter()
                .map(|(n, v)| redact::header(n, v))
                .collect();
            let _ = write!(out, ", headers: {}", hs.join("; "));
        }
        out.push('\n');
    }
    if meta.insecure() {
        out.push_str(INSECURE_WARNING);
        out.push('\n');
    }
    if run.interrupted {
        out.push_str(INTERRUPTED_NOTE);
        out.push('\n');
    }
    for p in &run.worker_panics {
        let _ = writeln!(out, "ERROR: {}", p.describe());
    }
    if let Some(why) = threshold::nothing_measured(meta, run) {
        let _ = writeln!(out, "{NOTHING_MEASURED}: {why}");
    }
}

/// New connections as a workload: how many requests a connection carries, the rate they open
/// at, how connbench closes them. None for keep-alive runs.
fn connection_shape(meta: &RunMeta) -> Option<String> {
    let n = meta.requests_per_conn?;
    let mut line = match meta.conn_rate {
        Some(r) => format!(
            "new connections at {} conn/s (at most {} open), {} each",
            rate(r),
            meta.connections,
            plural(n, "request")
        ),
        None => format!("{} per connection", plural(n, "request")),
    };
    if let Some(close) = meta.close {
        let _ = write!(line, ", then closed by connbench ({})", close.name());
    }
    Some(line)
}

/// What bounded the run: `-n`, `-d`, both, or neither.
fn bound(meta: &RunMeta) -> String {
    match (meta.requests, meta.duration) {
        (Some(n), Some(d)) => format!("{n} requests or {}, whichever first", secs2(d)),
        (Some(n), None) => format!("{n} requests"),
        (None, Some(d)) => secs2(d),
        (None, None) => "until interrupted".to_string(),
    }
}

/// The rows of the phase table: the run's phases, without the TLS handshake kinds when the
/// run was plain TCP (the JSON report still lists them, empty).
fn table_phases(meta: &RunMeta) -> Vec<Phase> {
    let mut phases = meta.phases();
    if meta.tls.is_none() {
        phases.retain(|p| !matches!(p, Phase::TlsFull | Phase::TlsResumed));
    }
    phases
}

fn phase_table(out: &mut String, meta: &RunMeta, run: &RunResult) {
    let phases = table_phases(meta);
    // The name column fits the longest phase name of the mode ("first_message" in ws).
    let name_w = phases
        .iter()
        .map(|p| p.name().len() + 1)
        .max()
        .unwrap_or(NAME_W)
        .max(NAME_W);
    let _ = write!(
        out,
        "{:<name_w$}{:>COL_W$}{:>COL_W$}",
        "phase", "count", "min"
    );
    for p in meta.percentiles.columns() {
        let _ = write!(out, "{:>COL_W$}", p.label());
    }
    let _ = writeln!(out, "{:>COL_W$}{:>COL_W$}", "max", "mean");
    for &phase in &phases {
        let h = run.recorder.histogram(phase);
        let _ = write!(out, "{:<name_w$}", phase.name());
        if h.is_empty() {
            let _ = writeln!(out, "{:>COL_W$}", "-");
            continue;
        }
        let _ = write!(out, "{:>COL_W$}", h.len());
        for v in stats(h, &meta.percentiles) {
            let _ = write!(out, "{:>COL_W$}", dur_compact(v));
        }
        out.push('\n');
    }
}

/// min, the chosen percentiles (below 100), max and mean of a non-empty histogram, in ns.
fn stats(h: &Histogram<u64>, percentiles: &Percentiles) -> Vec<f64> {
    let mut v = vec![h.min() as f64];
    v.extend(percentiles.columns().map(|p| p.of(h) as f64));
    v.extend([h.max() as f64, super::json::mean(h)]);
    v
}

fn throughput(out: &mut String, c: &Counters, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    label(out, "throughput");
    if secs > 0.0 {
        let _ = write!(
            out,
            "{} req/s   {} in   {} out",
            rate(c.responses as f64 / secs),
            bytes_rate(c.bytes_in as f64 / secs),
            bytes_rate(c.bytes_out as f64 / secs)
        );
    } else {
        out.push_str("- req/s");
    }
    let _ = writeln!(
        out,
        "   ({} in {})",
        plural(c.responses, "response"),
        secs2(elapsed)
    );
}

/// Staged runs: one row per ramp or hold window (the lines above are the whole run).
fn stages(out: &mut String, meta: &RunMeta, run: &RunResult) {
    let _ = writeln!(
        out,
        "\nstage  window  connections    opened  open at end    requests      req/s  total p50  total p95  total p99     errors"
    );
    let timed = if meta.rate.is_some() {
        Phase::Corrected
    } else {
        Phase::Total
    };
    for s in &run.stages {
        let c = &s.recorder.counters;
        let h = s.recorder.histogram(timed);
        let q = |x: f64| {
            if h.is_empty() {
                "-".to_string()
            } else {
                dur_compact(h.value_at_quantile(x) as f64)
            }
        };
        let secs = s.window.length.as_secs_f64();
        let _ = writeln!(
            out,
            "{:<6} {:<6} {:>12} {:>9} {:>12} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}",
            s.window.stage,
            s.window.kind,
            format!("{}→{}", s.window.from, s.window.to),
            c.connections_opened,
            s.open_at_end,
            c.requests,
            if secs > 0.0 {
                rate(c.responses as f64 / secs)
            } else {
                "-".into()
            },
            q(0.5),
            q(0.95),
            q(0.99),
            c.total_errors()
        );
    }
}

/// Rate mode: asked vs achieved, and a warning saying who fell behind.
fn rate_line(out: &mut String, meta: &RunMeta, asked: f64, arrival: &str, run: &RunResult) {
    let c = &run.recorder.counters;
    let secs = run.elapsed.as_secs_f64();
    let sent = if secs > 0.0 {
        c.requests as f64 / secs
    } else {
        0.0
    };
    label(out, "rate");
    let _ = writeln!(
        out,
        "asked {} req/s ({arrival})   sent {} req/s   unsent {}",
        rate(asked),
        rate(sent),
        c.unsent
    );
    behind_warning(out, meta, asked, run);
}

/// The rate-mode verdict (`report::behind`), when the schedule slipped: who, why, and the
/// numbers behind it, on one line.
fn behind_warning(out: &mut String, meta: &RunMeta, asked: f64, run: &RunResult) {
    use super::behind::{self, Cause};
    let Some(b) = behind::verdict(meta, run) else {
        return;
    };
    let c = &run.recorder.counters;
    let echo = meta.ws.is_some();
    let (what, unit, uncorrected) = if echo {
        ("messages", "msg/s", "round trip")
    } else {
        ("requests", "req/s", "uncorrected")
    };
    let d = |ns: u64| dur_spaced(ns as f64);
    let why = match b.cause {
        Cause::SendLag => {
            let stall = run
                .workers
                .iter()
                .map(|w| w.max_stall_ns)
                .max()
                .unwrap_or(0);
            format!(
                "its own loop released {what} late (send lag p99 {}, worst loop stall {}): \
                 give it more CPU or threads, or ask for less",
                d(b.send_lag_p99),
                d(stall)
            )
        }
        Cause::Connections => {
            let needed = behind::connections_needed(meta, run).unwrap_or(0);
            let carry = if b.uncorrected_p50 > 0 {
                meta.connections as f64 * 1e9 / b.uncorrected_p50 as f64
            } else {
                0.0
            };
            format!(
                "{} with one request in flight can carry about {} req/s at the server's \
                 median response time of {}; -R {} needs at least {needed} (raise -c)",
                plural(meta.connections as u64, "connection"),
                rate(carry),
                d(b.uncorrected_p50),
                rate(asked)
            )
        }
        Cause::LateResponses => format!(
            "the client released {what} on time (send lag p99 {}) but they waited for \
             connections still awaiting late responses (corrected p99 {} vs {uncorrected} p99 {})",
            d(b.send_lag_p99),
            d(b.corrected_p99),
            d(b.uncorrected_p99)
        ),
        Cause::Outages => format!(
            "it dropped connections, and the {} messages due meanwhile went out late or not at \
             all (corrected p99 {} vs {uncorrected} p99 {}; send lag p99 {})",
            c.ws.buffered_sent + c.ws.buffer_dropped,
            d(b.corrected_p99),
            d(b.uncorrected_p99),
            d(b.send_lag_p99)
        ),
    };
    let _ = writeln!(
        out,
        "WARNING: fell behind {} {unit}: the {} could not keep up: {why}; {} {what} due were \
         never sent (latency is still measured from the intended send times)",
        rate(asked),
        b.who.name(),
        c.unsent
    );
}

/// Connection-rate mode: asked vs opened, how late the opener was, and a warning when due
/// connections never opened.
fn conn_rate_line(out: &mut String, meta: &RunMeta, asked: f64, run: &RunResult) {
    let c = &run.recorder.counters;
    let secs = run.elapsed.as_secs_f64();
    let opened = if secs > 0.0 {
        c.connections_opened as f64 / secs
    } else {
        0.0
    };
    label(out, "conn rate");
    let _ = write!(
        out,
        "asked {} conn/s   opened {} conn/s   unopened {}",
        rate(asked),
        rate(opened),
        c.unopened
    );
    let lag = run.recorder.histogram(Phase::OpenLag);
    if !lag.is_empty() {
        let _ = write!(
            out,
            "   open lag p50 {} p99 {} max {}",
            dur_spaced(lag.value_at_quantile(0.5) as f64),
            dur_spaced(lag.value_at_quantile(0.99) as f64),
            dur_spaced(lag.max() as f64)
        );
    }
    out.push('\n');
    if c.unopened > 0 {
        let _ = writeln!(
            out,
            "WARNING: fell behind {} conn/s: {} connections were due and never opened because \
             all {} slots held a connection (raise -c, or ask for fewer requests per connection)",
            rate(asked),
            c.unopened,
            meta.connections
        );
    }
}

/// This host's TIME_WAIT sockets towards the target: shown when connbench closed connections
/// itself, or when any were there.
fn time_wait(out: &mut String, meta: &RunMeta, run: &RunResult) {
    let Some(tw) = run.time_wait else {
        return;
    };
    if meta.requests_per_conn.is_none() && tw.at_end == 0 && tw.at_start == 0 {
        return;
    }
    label(out, "time_wait");
    let _ = writeln!(
        out,
        "{} local ports towards the target at the end ({} at the start): each blocks its \
         4-tuple for 60 s",
        tw.at_end, tw.at_start
    );
}

fn reuse(out: &mut String, c: &Counters) {
    label(out, "reuse");
    if c.requests == 0 {
        out.push_str("- %");
    } else {
        let _ = write!(out, "{:.3} %", c.reuse_rate() * 100.0);
    }
    let _ = writeln!(
        out,
        "   ({} opened, {} of {} reused a connection, {})",
        plural(c.connections_opened, "connection"),
        c.reused_requests,
        plural(c.requests, "request"),
        plural(c.server_closes, "server close")
    );
}

fn responses(out: &mut String, c: &Counters) {
    label(out, "responses");
    let mut parts = Vec::new();
    for class in StatusClass::ALL {
        let n = c.status[class.index()];
        // 1xx and out-of-range codes are rare; shown only when they happened.
        let always = !matches!(class, StatusClass::Informational | StatusClass::Other);
        if always || n > 0 {
            parts.push(format!("{} {}", class.name(), n));
        }
    }
    let _ = writeln!(out, "{}", parts.join("   "));
}

fn errors(out: &mut String, c: &Counters) {
    label(out, "errors");
    let hit: Vec<ErrorClass> = ErrorClass::ALL
        .into_iter()
        .filter(|e| c.errors[e.index()] > 0)
        .collect();
    if hit.is_empty() {
        out.push_str("none\n");
        return;
    }
    let parts: Vec<String> = hit
        .iter()
        .map(|e| format!("{} {}", e.name(), c.errors[e.index()]))
        .collect();
    out.push_str(&parts.join("   "));
    if hit.iter().any(|e| e.is_local()) {
        out.push_str("   (local_*: limits of this client, not the server)");
    }
    out.push('\n');
}

/// One line per reason under the errors line: `protocol: 1200 (response head has …)`.
fn reasons(out: &mut String, reasons: &Reasons) {
    for line in reason_lines(reasons) {
        let _ = writeln!(out, "{:LABEL_W$}{line}", "");
    }
}

/// Why failures happened, one line per reason, most frequent first within a class:
/// `protocol: 1200 (response head has more than 1024 header fields)`. Also what connbench
/// prints on stderr after a run.
pub fn reason_lines(reasons: &Reasons) -> Vec<String> {
    let mut lines = Vec::new();
    for class in ErrorClass::ALL {
        let (list, other) = reasons.of(class);
        for (reason, n) in list {
            lines.push(format!("{}: {n} ({reason})", class.name()));
        }
        if other > 0 {
            lines.push(format!(
                "{}: {other} {}",
                class.name(),
                super::json::OTHER_REASONS
            ));
        }
    }
    lines
}

fn tls(out: &mut String, meta: &TlsPlan, run: &RunResult) {
    let f = &run.recorder.tls;
    let c = &run.recorder.counters;
    label(out, "tls");
    if f.is_known() {
        let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".to_string());
        let _ = write!(
            out,
            "{}  {}  {}  alpn {}",
            dash(&f.version),
            dash(&f.cipher_suite),
            dash(&f.kx_group),
            dash(&f.alpn)
        );
    } else {
        out.push_str("no handshake completed");
    }
    let _ = write!(
        out,
        "  · handshakes {} full, {} resumed",
        c.handshakes_full, c.handshakes_resumed
    );
    if !meta.resume {
        out.push_str(" (resumption off)");
    }
    if let Some(sni) = &meta.sni {
        let _ = write!(out, "  · sni {sni}");
    }
    if let Some(ca) = &meta.ca_file {
        let _ = write!(out, "  · ca {}", ca.display());
    }
    out.push('\n');
}

fn client(out: &mut String, run: &RunResult) {
    let user: u64 = run.workers.iter().map(|w| w.cpu_user_ns).sum();
    let sys: u64 = run.workers.iter().map(|w| w.cpu_sys_ns).sum();
    let stall = run
        .workers
        .iter()
        .map(|w| w.max_stall_ns)
        .max()
        .unwrap_or(0);
    // Per request for HTTP, per received message for WebSocket.
    let (units, unit) = match run.recorder.counters.responses {
        0 if run.recorder.counters.ws.messages_in > 0 => {
            (run.recorder.counters.ws.messages_in, "message")
        }
        n => (n, "request"),
    };
    label(out, "client");
    if units > 0 {
        let per = (user as f64 + sys as f64) / units as f64;
        let _ = write!(out, "{} CPU/{unit}", dur_spaced(per));
    } else {
        let _ = write!(out, "- CPU/{unit}");
    }
    let _ = write!(
        out,
        " (user {:.2} s, sys {:.2} s)  ·  peak RSS ",
        user as f64 / 1e9,
        sys as f64 / 1e9
    );
    if run.peak_rss_bytes > 0 {
        out.push_str(&mebibytes(run.peak_rss_bytes));
        if run.peak_open >= 1000 {
            // Only meaningful when connections dominate the fixed costs (histograms, binary).
            let _ = write!(
                out,
                " ({:.1} KiB per open connection)",
                run.peak_rss_bytes as f64 / 1024.0 / run.peak_open as f64
            );
        }
    } else {
        out.push('-');
    }
    let _ = writeln!(out, "  ·  worst loop stall {}", dur_spaced(stall as f64));
}

/// The WebSocket lines: messages, connections, reconnects, close codes, sequence, latency
/// caveat, pings.
fn websocket(out: &mut String, run_meta: &RunMeta, meta: &WsSession, run: &RunResult) {
    let c = &run.recorder.counters;
    let w = &c.ws;
    let secs = run.elapsed.as_secs_f64();
    label(out, "messages");
    let per_s = |n: u64| {
        if secs > 0.0 {
            rate(n as f64 / secs)
        } else {
            "-".into()
        }
    };
    let _ = writeln!(
        out,
        "{} in ({}/s)   {} out ({}/s)   {} in   {} out",
        w.messages_in,
        per_s(w.messages_in),
        w.messages_out,
        per_s(w.messages_out),
        bytes_rate(if secs > 0.0 {
            c.bytes_in as f64 / secs
        } else {
            0.0
        }),
        bytes_rate(if secs > 0.0 {
            c.bytes_out as f64 / secs
        } else {
            0.0
        }),
    );
    if meta.mode == WsMode::Echo {
        let asked = meta.send_rate * run_meta.connections as f64;
        label(out, "echo rate");
        let _ = writeln!(
            out,
            "asked {} msg/s   sent {} msg/s   unsent {}   (open loop: corrected latency from \
             each message's intended send time)",
            rate(asked),
            per_s(c.requests),
            c.unsent
        );
        behind_warning(out, run_meta, asked, run);
    }
    label(out, "connections");
    let attempted = c.connections_opened;
    let success = if attempted > 0 {
        format!("{:.1} %", w.upgraded as f64 * 100.0 / attempted as f64)
    } else {
        "-".into()
    };
    let _ = writeln!(
        out,
        "{} attempted   {} upgraded   {} failed   ({} success)   peak {} open",
        attempted,
        w.upgraded,
        attempted.saturating_sub(w.upgraded),
        success,
        run.peak_open
    );
    if c.status.iter().any(|&n| n > 0) {
        // Upgrades answered with something other than 101, by status class.
        label(out, "rejected");
        let parts: Vec<String> = StatusClass::ALL
            .iter()
            .filter(|s| c.status[s.index()] > 0)
            .map(|s| format!("{} {}", s.name(), c.status[s.index()]))
            .collect();
        let _ = writeln!(
            out,
            "{}   (upgrade answered without 101)",
            parts.join("   ")
        );
    }
    label(out, "reconnects");
    if w.total_reconnects() == 0 {
        out.push_str("none");
    } else {
        let parts: Vec<String> = crate::metrics::ReconnectCause::ALL
            .iter()
            .filter(|r| w.reconnects[r.index()] > 0)
            .map(|r| format!("{} {}", r.name(), w.reconnects[r.index()]))
            .collect();
        out.push_str(&parts.join("   "));
    }
    let _ = writeln!(
        out,
        "   ·  resubscribed {}   retries exhausted {}   buffered {} sent, {} dropped",
        w.resubscribed, w.retries_exhausted, w.buffered_sent, w.buffer_dropped
    );
    let mut codes: Vec<String> = w
        .close_codes
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| format!("{} ×{n}", crate::metrics::CLOSE_CODE_FIRST + i as u16))
        .collect();
    if w.close_codes_other > 0 {
        codes.push(format!("other ×{}", w.close_codes_other));
    }
    label(out, "close codes");
    let _ = writeln!(
        out,
        "{}",
        if codes.is_empty() {
            "none from the server".to_string()
        } else {
            codes.join("   ")
        }
    );
    if let Some(f) = &meta.seq_field {
        label(out, "sequence");
        let _ = writeln!(
            out,
            "{} gaps, {} missing, {} restarts   (field {f:?} per {:?})",
            w.seq_gaps, w.seq_missing, w.seq_backwards, meta.stream_field
        );
    }
    if let Some(f) = &meta.ts_field {
        label(out, "latency");
        let unit = run.recorder.ts_unit.unwrap_or("?");
        let how = if meta.ts_unit.is_some() {
            "given"
        } else {
            "inferred"
        };
        let _ = writeln!(
            out,
            "one-way from {f:?} ({unit}, {how}); assumes client and server clocks are \
             synchronized   ({} without it, {} in the future)",
            w.ts_missing, w.ts_future
        );
    }
    label(out, "pings");
    let _ = writeln!(
        out,
        "{} server pings answered   {} sent, {} pongs",
        w.pings_answered, w.pings_sent, w.pongs_received
    );
}

fn label(out: &mut String, l: &str) {
    let _ = write!(out, "{l:<LABEL_W$}");
}

/// `n thing` / `n things`.
fn plural(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("{n} {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// "cpu 3" or "cpus 0-3,6".
fn cpus(list: &[usize]) -> String {
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && end.checked_add(1) == Some(sorted[i + 1]) {
            i += 1;
            end = sorted[i];
        }
        ranges.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    let word = if sorted.len() == 1 { "cpu" } else { "cpus" };
    format!("{word} {}", ranges.join(","))
}

/// 3 significant digits for 0 ≤ v < 999.5 (values that round up to 1000 belong to the next
/// unit, which the callers pick before calling).
fn sig3(v: f64) -> String {
    if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Split nanoseconds into a 3-significant-digit number and its unit (ns, µs, ms, s).
fn dur_parts(ns: f64) -> (String, &'static str) {
    if !ns.is_finite() || ns < 0.0 {
        return ("-".to_string(), "");
    }
    // Whole nanoseconds: sub-ns digits would be noise from the mean.
    if ns < 999.5 {
        return (format!("{ns:.0}"), "ns");
    }
    for (scale, unit) in [(1e3, "µs"), (1e6, "ms")] {
        let v = ns / scale;
        if v < 999.5 {
            return (sig3(v), unit);
        }
    }
    let s = ns / 1e9;
    (
        if s < 999.5 {
            sig3(s)
        } else {
            format!("{s:.0}")
        },
        "s",
    )
}

/// "38.1µs": for table cells.
pub fn dur_compact(ns: f64) -> String {
    let (n, u) = dur_parts(ns);
    format!("{n}{u}")
}

/// "38.1 µs": for prose.
pub fn dur_spaced(ns: f64) -> String {
    let (n, u) = dur_parts(ns);
    if u.is_empty() {
        n
    } else {
        format!("{n} {u}")
    }
}

/// Scale with `base` through `units` (first unit = no scaling), 3 significant digits; the last
/// unit takes whatever is left. Shared by the byte formatters.
fn scaled(v: f64, base: f64, units: &[&str]) -> String {
    let mut v = v.max(0.0);
    for (i, unit) in units.iter().enumerate() {
        if v < 999.5 || i + 1 == units.len() {
            // The base unit counts whole bytes; larger units get 3 significant digits.
            let n = if i == 0 || v >= 999.5 {
                format!("{v:.0}")
            } else {
                sig3(v)
            };
            return format!("{n} {unit}");
        }
        v /= base;
    }
    format!("{v:.0}")
}

/// "12.3 MB/s" (decimal units, as network rates are quoted).
fn bytes_rate(per_s: f64) -> String {
    scaled(per_s, 1000.0, &["B/s", "kB/s", "MB/s", "GB/s", "TB/s"])
}

/// "12.3 MiB" (binary units, as memory is quoted).
fn mebibytes(bytes: u64) -> String {
    scaled(bytes as f64, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"])
}

/// Requests per second: whole numbers once they are large enough to be.
fn rate(v: f64) -> String {
    if v >= 99.95 {
        format!("{v:.0}")
    } else {
        sig3(v)
    }
}

/// "10.00 s".
fn secs2(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// "0 s", "2 s", "1.5 s".
fn secs_short(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        return format!("{} s", d.as_secs());
    }
    let s = format!("{:.3}", d.as_secs_f64());
    format!("{} s", s.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::metrics::{Recorder, TlsFacts};
    use crate::plan::Mode;
    use crate::report::WorkerStats;

    fn meta() -> RunMeta {
        RunMeta {
            mode: Mode::Http,
            url: "http://127.0.0.1:41234/".into(),
            builtin_target: true,
            command_line: vec!["connbench".into(), "http".into()],
            method: "GET".into(),
            connections: 10,
            threads: 1,
            worker_cpus: vec![1],
            pipeline: 1,
            duration: Some(Duration::from_secs(10)),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            fd_limit: 1024,
            ..RunMeta::new(Mode::Http, "")
        }
    }

    fn run() -> RunResult {
        let mut r = Recorder::new();
        for i in 0..10u64 {
            r.record(Phase::Connect, 38_100 + i * 1_000);
        }
        for i in 0..1_000u64 {
            r.record(Phase::Ttfb, 40_000 + i * 10);
            r.record(Phase::Total, 52_300 + i * 10);
            r.response(if i == 0 { 404 } else { 200 });
        }
        r.counters.requests = 1_000;
        r.counters.reused_requests = 990;
        r.counters.connections_opened = 10;
        r.counters.connections_established = 10;
        r.counters.bytes_in = 12_300_000;
        r.counters.bytes_out = 4_100_000;
        RunResult {
            recorder: r,
            workers: vec![WorkerStats {
                cpu: Some(1),
                connections: 10,
                cpu_user_ns: 510_000_000,
                cpu_sys_ns: 700_000_000,
                max_stall_ns: 120_000,
            }],
            started_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(10),
            interrupted: false,
            peak_rss_bytes: 12_900_000,
            peak_open: 10,
            intervals: vec![],
            stages: vec![],
            worker_panics: Vec::new(),
            time_wait: None,
        }
    }

    #[test]
    fn every_phase_has_a_row_and_empty_ones_show_dash() {
        let t = render(&meta(), &run());
        let rows: Vec<&str> = t.lines().collect();
        for p in table_phases(&meta()) {
            let row = rows
                .iter()
                .find(|l| l.starts_with(&format!("{:<NAME_W$}", p.name())))
                .unwrap_or_else(|| panic!("no row for {}: {t}", p.name()));
            if p == Phase::Tls {
                assert_eq!(row.trim_end(), format!("{:<NAME_W$}{:>COL_W$}", "tls", "-"));
            } else {
                assert!(!row.contains(" - "), "{row}");
            }
        }
        let connect = rows.iter().find(|l| l.starts_with("connect")).expect("row");
        assert!(connect.contains("38.1µs"), "{connect}");
        assert!(
            t.contains("  10 connections on 1 worker (cpu 1), pipeline 1, 10.00 s (warm-up 0 s)")
        );
        assert!(t.contains("(built-in target)"));
    }

    #[test]
    fn tls_runs_show_full_and_resumed_handshakes_apart_and_plain_runs_do_not() {
        let mut r = run();
        for i in 0..10u64 {
            r.recorder.record(Phase::Tls, 900_000 + i);
            let kind = if i < 2 {
                Phase::TlsFull
            } else {
                Phase::TlsResumed
            };
            r.recorder.record(kind, 900_000 + i);
        }
        let mut m = meta();
        m.tls = Some(TlsPlan::default());
        let t = render(&m, &r);
        let row = |name: &str| {
            t.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no {name} row: {t}"))
                .split_whitespace()
                .nth(1)
                .map(str::to_string)
        };
        assert_eq!(row("tls").as_deref(), Some("10"));
        assert_eq!(row("tls_full").as_deref(), Some("2"));
        assert_eq!(row("tls_resumed").as_deref(), Some("8"));
        let plain = render(&meta(), &r);
        assert!(
            !plain.contains("tls_full") && !plain.contains("tls_resumed"),
            "{plain}"
        );
    }

    #[test]
    fn new_connection_runs_say_their_shape_rate_lag_and_time_wait() {
        let mut m = meta();
        m.requests_per_conn = Some(1);
        m.conn_rate = Some(200.0);
        m.close = Some(crate::plan::CloseMode::Rst);
        let mut r = run();
        r.recorder.counters.connections_opened = 1_997;
        r.recorder.counters.unopened = 3;
        for _ in 0..1_997 {
            r.recorder.record(Phase::OpenLag, 20_000);
        }
        r.time_wait = Some(crate::metrics::run::TimeWait {
            at_start: 4,
            at_end: 7,
        });
        let t = render(&m, &r);
        assert!(
            t.contains(
                "  new connections at 200 conn/s (at most 10 open), 1 request each, then closed \
                 by connbench (rst)\n"
            ),
            "{t}"
        );
        assert!(t.contains("\nopen_lag "), "the open lag has a row: {t}");
        assert!(
            t.contains("conn rate   asked 200 conn/s   opened 200 conn/s   unopened 3   open lag"),
            "{t}"
        );
        assert!(
            t.contains("WARNING: fell behind 200 conn/s: 3 connections were due and never opened"),
            "{t}"
        );
        assert!(
            t.contains("time_wait   7 local ports towards the target at the end (4 at the start)"),
            "{t}"
        );
        // Without a quota: one line for the shape, no conn rate line, no warning.
        m.conn_rate = None;
        m.requests_per_conn = Some(5);
        m.close = Some(crate::plan::CloseMode::Fin);
        r.recorder.counters.unopened = 0;
        let t = render(&m, &r);
        assert!(
            t.contains("  5 requests per connection, then closed by connbench (fin)\n"),
            "{t}"
        );
        assert!(!t.contains("conn rate") && !t.contains("WARNING"), "{t}");
        // Keep-alive with nothing in TIME_WAIT says nothing about it.
        let mut r = run();
        r.time_wait = Some(crate::metrics::run::TimeWait::default());
        assert!(!render(&meta(), &r).contains("time_wait"));
    }

    #[test]
    fn table_columns_line_up() {
        let t = render(&meta(), &run());
        let lines: Vec<&str> = t.lines().collect();
        let head = lines
            .iter()
            .position(|l| l.starts_with("phase"))
            .expect("header");
        let width = |l: &str| l.chars().count();
        let w = width(lines[head]);
        // count, min, p50, p90, p95, p99, p99.9, max, mean
        assert_eq!(w, NAME_W + 9 * COL_W);
        assert!(
            lines[head].ends_with(
                "min       p50       p90       p95       p99     p99.9       max      mean"
            ),
            "{}",
            lines[head]
        );
        for l in &lines[head + 1..head + 1 + table_phases(&meta()).len()] {
            if !l.trim_end().ends_with('-') {
                assert_eq!(width(l), w, "misaligned: {l:?}");
            }
        }
    }

    #[test]
    fn percentiles_choose_the_columns() {
        let mut m = meta();
        m.percentiles = Percentiles::parse("99.99,50,100").unwrap();
        let r = run();
        let t = render(&m, &r);
        let head = t.lines().find(|l| l.starts_with("phase")).expect("header");
        assert_eq!(
            head,
            format!(
                "{:<NAME_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}",
                "phase", "count", "min", "p50", "p99.99", "max", "mean"
            )
        );
        // The row carries the histogram's values in that order.
        let h = r.recorder.histogram(Phase::Total);
        let row = t.lines().find(|l| l.starts_with("total")).expect("row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "total".to_string(),
                h.len().to_string(),
                dur_compact(h.min() as f64),
                dur_compact(h.value_at_quantile(0.5) as f64),
                dur_compact(h.value_at_quantile(0.9999) as f64),
                dur_compact(h.max() as f64),
                dur_compact(crate::report::json::mean(h)),
            ]
        );
    }

    #[test]
    fn stage_rows_carry_p95() {
        use crate::plan::StageWindow;
        let mut r = run();
        let mut rec = Recorder::new();
        for i in 1..=100u64 {
            rec.record(Phase::Total, i * 1_000_000);
        }
        r.stages = vec![crate::report::StageResult {
            window: StageWindow {
                stage: 1,
                kind: "hold",
                start: Duration::ZERO,
                length: Duration::from_secs(1),
                from: 2,
                to: 2,
            },
            recorder: rec,
            open_at_end: 2,
        }];
        let t = render(&meta(), &r);
        assert!(t.contains("total p50  total p95  total p99"), "{t}");
        let row = t
            .lines()
            .find(|l| l.starts_with("1      hold"))
            .expect("stage row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[7..10], ["50.0ms", "95.0ms", "99.0ms"], "{row}");
    }

    #[test]
    fn thresholds_and_nothing_measured_are_in_the_summary() {
        use crate::report::threshold::{Checks, Command, Context, Threshold};
        let mut m = meta();
        m.checks = Checks {
            thresholds: vec![
                Threshold::parse("total.p99<1s", &Context::new(Command::Http)).unwrap(),
                Threshold::parse("status.4xx==0", &Context::new(Command::Http)).unwrap(),
            ],
            ..Checks::default()
        };
        let t = render(&m, &run());
        assert!(t.contains("thresholds  1 passed, 1 failed\n"), "{t}");
        assert!(t.contains("  PASS  total.p99<1s   measured "), "{t}");
        assert!(t.contains("  FAIL  status.4xx==0  measured 1\n"), "{t}");
        assert!(!t.contains(NOTHING_MEASURED), "{t}");
        let mut r = run();
        r.recorder = Recorder::new();
        r.recorder.error(ErrorClass::ConnectRefused);
        let t = render(&meta(), &r);
        assert!(
            t.contains("NOTHING MEASURED: no response: all 1 connections or requests failed (connect_refused 1)\n"),
            "{t}"
        );
    }

    #[test]
    fn summary_lines() {
        let t = render(&meta(), &run());
        assert!(
            t.contains(
                "throughput  100 req/s   1.23 MB/s in   410 kB/s out   (1000 responses in 10.00 s)"
            ),
            "{t}"
        );
        assert!(t.contains("reuse       99.000 %   (10 connections opened, 990 of 1000 requests reused a connection, 0 server closes)"), "{t}");
        assert!(
            t.contains("responses   2xx 999   3xx 0   4xx 1   429 0   5xx 0\n"),
            "{t}"
        );
        assert!(!t.contains("1xx") && !t.contains("other"));
        assert!(t.contains("errors      none\n"));
        assert!(t.contains("client      1.21 ms CPU/request (user 0.51 s, sys 0.70 s)  ·  peak RSS 12.3 MiB  ·  worst loop stall 120 µs"), "{t}");
        assert!(!t.contains("handshakes"), "no TLS line for plain http");
        assert!(!t.contains("WARNING") && !t.contains("interrupted"));
    }

    #[test]
    fn error_reasons_follow_the_errors_line() {
        let mut r = run();
        for _ in 0..2 {
            r.recorder.error(ErrorClass::Protocol);
            r.recorder.reason(
                ErrorClass::Protocol,
                &"response head has more than 1024 header fields",
            );
        }
        r.recorder.error(ErrorClass::Protocol);
        r.recorder
            .reason(ErrorClass::Protocol, &"malformed response head: x");
        let t = render(&meta(), &r);
        assert!(
            t.contains(
                "errors      protocol 3\n            protocol: 2 (response head has more than 1024 header fields)\n            protocol: 1 (malformed response head: x)\n"
            ),
            "{t}"
        );
        assert_eq!(
            reason_lines(&r.recorder.reasons),
            [
                "protocol: 2 (response head has more than 1024 header fields)",
                "protocol: 1 (malformed response head: x)"
            ]
        );
    }

    #[test]
    fn errors_tls_and_warnings() {
        let mut m = meta();
        m.tls = Some(TlsPlan {
            insecure: true,
            resume: false,
            ..TlsPlan::default()
        });
        m.requests = Some(5_000);
        m.duration = None;
        m.worker_cpus = vec![0, 1, 2, 3, 6];
        m.threads = 5;
        let mut r = run();
        r.interrupted = true;
        r.recorder.error(ErrorClass::ConnectRefused);
        r.recorder.error(ErrorClass::ConnectRefused);
        r.recorder.error(ErrorClass::FdLimit);
        r.recorder.response(101);
        r.recorder.counters.handshakes_full = 10;
        r.recorder.tls = TlsFacts {
            version: Some("TLSv1_3".into()),
            cipher_suite: Some("TLS13_AES_256_GCM_SHA384".into()),
            kx_group: Some("X25519".into()),
            alpn: None,
        };
        let t = render(&m, &r);
        assert!(
            t.contains("errors      connect_refused 2   local_fd_limit 1   (local_*"),
            "{t}"
        );
        assert!(
            !t.contains("connect_refused: "),
            "no reason, no reason line: {t}"
        );
        assert!(t.contains("tls         TLSv1_3  TLS13_AES_256_GCM_SHA384  X25519  alpn -  · handshakes 10 full, 0 resumed (resumption off)"), "{t}");
        assert!(t.contains("1xx 1   2xx"), "{t}");
        assert_eq!(t.matches(INSECURE_WARNING).count(), 2, "{t}");
        assert!(t.contains(INTERRUPTED_NOTE));
        assert!(
            t.contains("on 5 workers (cpus 0-3,6), pipeline 1, 5000 requests (warm-up 0 s)"),
            "{t}"
        );
    }

    #[test]
    fn no_secret_reaches_the_summary() {
        let mut m = meta();
        m.url = "https://alice:HUNTER2@api.example.com/v1/trades?symbol=BTC&api_key=K3Y".into();
        m.headers = vec![
            ("Authorization".into(), "Bearer S3CRET".into()),
            ("X-Note".into(), "token bucket".into()),
        ];
        m.method = "POST".into();
        m.body_len = 12;
        let t = render(&m, &run());
        for s in ["HUNTER2", "K3Y", "S3CRET", "alice"] {
            assert!(!t.contains(s), "{s} leaked:\n{t}");
        }
        assert!(t.contains("symbol=BTC"));
        assert!(
            t.contains("POST, body 12 B, headers: Authorization: [redacted]; X-Note: token bucket"),
            "{t}"
        );
    }

    #[test]
    fn zero_responses_and_zero_elapsed() {
        let mut r = run();
        r.recorder = Recorder::new();
        r.elapsed = Duration::ZERO;
        r.peak_rss_bytes = 0;
        let t = render(&meta(), &r);
        assert!(
            t.contains("throughput  - req/s   (0 responses in 0.00 s)"),
            "{t}"
        );
        assert!(t.contains("reuse       - %"), "{t}");
        assert!(t.contains("client      - CPU/request"), "{t}");
        assert!(t.contains("peak RSS -"), "{t}");
        for p in table_phases(&meta()) {
            assert!(t.contains(&format!("{:<NAME_W$}{:>COL_W$}\n", p.name(), "-")));
        }
    }

    #[test]
    fn units_scale_at_three_significant_digits() {
        assert_eq!(dur_compact(1.0), "1ns");
        assert_eq!(dur_compact(512.0), "512ns");
        assert_eq!(dur_compact(999.4), "999ns");
        assert_eq!(dur_compact(999.6), "1.00µs");
        assert_eq!(dur_compact(38_149.0), "38.1µs");
        assert_eq!(dur_compact(99_960.0), "100µs");
        assert_eq!(dur_compact(999_600.0), "1.00ms");
        assert_eq!(dur_compact(12_345_678.0), "12.3ms");
        assert_eq!(dur_compact(1_234_000_000.0), "1.23s");
        assert_eq!(dur_compact(60_000_000_000.0), "60.0s");
        assert_eq!(dur_compact(2e12), "2000s");
        assert_eq!(dur_spaced(120_000.0), "120 µs");
        assert_eq!(dur_spaced(f64::NAN), "-");
        assert_eq!(bytes_rate(12_345_678.0), "12.3 MB/s");
        assert_eq!(bytes_rate(999.0), "999 B/s");
        assert_eq!(mebibytes(12_900_000), "12.3 MiB");
        assert_eq!(mebibytes(512), "512 B");
        assert_eq!(secs_short(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(secs_short(Duration::from_secs(2)), "2 s");
        assert_eq!(rate(51_234.4), "51234");
        assert_eq!(rate(3.5), "3.50");
        assert_eq!(cpus(&[3]), "cpu 3");
        assert_eq!(
            cpus(&[usize::MAX, 0, usize::MAX - 1]),
            format!("cpus 0,{}-{}", usize::MAX - 1, usize::MAX)
        );
    }
}
