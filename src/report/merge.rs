//! `connbench merge`: one exact report from the JSON reports of runs made by several processes
//! or machines at the same time.
//!
//! This module owns the merge rules; it reads report documents ([`json`] schema) and builds a
//! merged [`RunMeta`] + [`RunResult`], so the text summary and the merged JSON come from the same
//! code as a single run's ([`text::render`], [`json::render`]). It must not average anything that
//! can be added:
//!
//! 1. Every phase histogram is decoded ([`hdr::decode`], which treats the file as untrusted),
//!    checked against the phase's `count`, and added; percentiles are recomputed from the sum.
//! 2. Counters, status classes, error classes, TLS handshake kinds and WebSocket counters are
//!    summed. Workers are listed one after another; peak RSS and peak open connections are
//!    summed (an upper bound: the processes' peaks need not coincide).
//! 3. The merged window is the union of the windows `[started_at_unix_ms, + duration_s]`; rates
//!    are the merged counts over it. The overlap (latest start to earliest end) must reach half
//!    of the shortest window unless [`MergeOptions::allow_disjoint`]: runs that did not load the
//!    target together do not describe one load.
//! 4. `config.connections`, `config.threads`, `config.requests` and the constant rate asked
//!    (`rate.asked_per_s`, like `rate.unsent`) are summed, CPU lists united;
//!    every other setting is the first report's. Reports must share `mode` and constant-rate
//!    or not (their phases differ); a different URL, method, body length, pipeline depth, TLS
//!    setting, arrival process or WebSocket mode is refused unless
//!    [`MergeOptions::allow_mixed`].
//! 5. `host` is the first report's; each report's own host, URL, window and size is kept under
//!    `sources`, the file names under `merged_from`, the window figures under `merge_window`.
//!
//! Any unreadable, non-JSON, wrong-schema or damaged input is a [`MergeError::Input`] naming the
//! file and the problem on one line; nothing here panics on input.

use std::fmt::{self, Write as _};
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use super::host::HostFacts;
use super::json::{self, SCHEMA};
use super::{hdr, text, RunMeta, RunResult, WorkerStats, WsMeta};
use crate::metrics::{
    new_histogram, Counters, ErrorClass, Phase, ReconnectCause, Recorder, StatusClass, TlsFacts,
    CLOSE_CODES, CLOSE_CODE_FIRST,
};
use crate::proto::jsonfield::TsUnit;

/// Largest report file [`load`] reads (64 MiB). A real report is a few KiB to a few hundred KiB.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

/// Fields that must agree between reports unless `--allow-mixed` (JSON pointers).
const IDENTITY_FIELDS: [&str; 6] = [
    "/target/url",
    "/config/method",
    "/config/body_len",
    "/config/pipeline",
    "/config/tls",
    "/rate/arrival",
];

/// Settings keys of the `ws` object, copied verbatim from the first report (the counters next
/// to them are recomputed).
const WS_SETTINGS: [&str; 22] = [
    "mode",
    "subscriptions",
    "send_rate",
    "message_size",
    "ping_interval_s",
    "ts_field",
    "ts_unit",
    "ts_unit_inferred",
    "latency_note",
    "seq_field",
    "stream_field",
    "stale_after_s",
    "heartbeat",
    "heartbeat_interval_s",
    "backoff",
    "backoff_base_s",
    "backoff_cap_s",
    "max_retries",
    "reconnect_budget",
    "send_buffer",
    "utf8_check",
    "max_message",
];

/// What the user allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct MergeOptions {
    /// Merge even when the windows overlap by less than half of the shortest (or not at all).
    pub allow_disjoint: bool,
    /// Merge even when the reports target different URLs or request shapes.
    pub allow_mixed: bool,
}

/// Why reports could not be merged. Every variant is the user's input: exit code 2.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeError {
    /// A report file is unreadable, not JSON, not a connbench report, or damaged.
    Input {
        /// The file as named on the command line.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// No report was given.
    NoInput,
    /// The reports come from different modes (http, ws): their phases differ.
    Mode {
        /// First report and its mode.
        first: (String, String),
        /// The first report of another mode, and that mode.
        other: (String, String),
    },
    /// The reports differ in a setting that makes them incomparable (`--allow-mixed`).
    Mixed {
        /// The JSON field, e.g. `target.url`.
        field: String,
        /// First report and its value.
        first: (String, String),
        /// The first report that differs, and its value.
        other: (String, String),
    },
    /// The measured windows do not overlap enough (`--allow-disjoint`).
    Disjoint {
        /// Overlap of all windows, seconds (0 when disjoint).
        overlap_s: f64,
        /// Length of the shortest window, seconds.
        shortest_s: f64,
    },
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::Input { file, problem } => write!(f, "{file}: {problem}"),
            MergeError::NoInput => write!(f, "merge: no report given (connbench merge A.json B.json …)"),
            MergeError::Mode { first, other } => write!(
                f,
                "cannot merge a {} report ({}) with a {} report ({}): their phases differ",
                first.1, first.0, other.1, other.0
            ),
            MergeError::Mixed { field, first, other } => write!(
                f,
                "reports differ in {field}: {} in {}, {} in {} (pass --allow-mixed to merge anyway)",
                first.1, first.0, other.1, other.0
            ),
            MergeError::Disjoint {
                overlap_s,
                shortest_s,
            } => {
                if *overlap_s <= 0.0 {
                    write!(
                        f,
                        "the reports' measured windows do not overlap: they did not load the \
                         target at the same time (pass --allow-disjoint to merge anyway)"
                    )
                } else {
                    write!(
                        f,
                        "the reports' measured windows overlap for {overlap_s:.3} s, less than \
                         half of the shortest ({shortest_s:.3} s) (pass --allow-disjoint to \
                         merge anyway)"
                    )
                }
            }
        }
    }
}

impl std::error::Error for MergeError {}

/// Read and parse one report file, checking it is a connbench report of a known schema.
pub fn load(path: &str) -> Result<Value, MergeError> {
    let bad = |problem: String| MergeError::Input {
        file: path.to_string(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_REPORT_BYTES {
        return Err(bad(format!(
            "larger than {} MiB: not a connbench report",
            MAX_REPORT_BYTES >> 20
        )));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    match v.get("schema").and_then(Value::as_str) {
        Some(SCHEMA) => Ok(v),
        Some(other) => Err(bad(format!(
            "schema {other:?} is not supported (this connbench reads {SCHEMA:?})"
        ))),
        None => Err(bad(format!(
            "not a connbench report (no \"schema\": {SCHEMA:?})"
        ))),
    }
}

/// One input report as it took part in the merge.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceInfo {
    /// The file as named on the command line.
    pub file: String,
    /// `started_at_unix_ms` of the report.
    pub started_at_unix_ms: i64,
    /// `duration_s` of the report.
    pub duration_s: f64,
    /// Responses fully framed (`counters.responses`).
    pub responses: u64,
}

/// How the reports' measured windows lie.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowSummary {
    /// Earliest start, ms since the Unix epoch.
    pub start_unix_ms: i64,
    /// Union of all windows (earliest start to latest end), seconds.
    pub union_s: f64,
    /// Time every window covers (latest start to earliest end), seconds; 0 when disjoint.
    pub overlap_s: f64,
    /// Length of the shortest window, seconds.
    pub shortest_s: f64,
}

/// The merged run.
#[derive(Clone, Debug)]
pub struct Merged {
    /// The merged configuration (what [`text::render`] shows).
    pub meta: RunMeta,
    /// The merged measurements.
    pub run: RunResult,
    /// The inputs, in command-line order.
    pub sources: Vec<SourceInfo>,
    /// The windows.
    pub window: WindowSummary,
    /// The merged report document (schema [`SCHEMA`] plus `merged_from`, `sources`,
    /// `merge_window`).
    pub json: Value,
}

/// Merge loaded reports (`(file name, document)`, in command-line order). `command_line` is the
/// merge process's own, recorded (redacted) as the merged report's `command_line`.
pub fn merge(
    reports: &[(String, Value)],
    opts: &MergeOptions,
    command_line: Vec<String>,
) -> Result<Merged, MergeError> {
    let (first_file, first) = reports.first().ok_or(MergeError::NoInput)?;
    let mode = Field::new(first_file, first).str("/mode")?.to_string();
    let first_kind = kind(&Field::new(first_file, first))?;
    for (file, doc) in reports {
        let k = kind(&Field::new(file, doc))?;
        if k != first_kind {
            return Err(MergeError::Mode {
                first: (first_file.clone(), first_kind),
                other: (file.clone(), k),
            });
        }
    }
    if !opts.allow_mixed {
        let mut fields: Vec<&str> = IDENTITY_FIELDS.to_vec();
        if mode == "ws" {
            fields.push("/ws/mode");
        }
        for ptr in fields {
            let want = first.pointer(ptr);
            if let Some((file, doc)) = reports.iter().find(|(_, d)| d.pointer(ptr) != want) {
                let show = |v: Option<&Value>| v.map_or("(missing)".to_string(), Value::to_string);
                return Err(MergeError::Mixed {
                    field: ptr.trim_start_matches('/').replace('/', "."),
                    first: (first_file.clone(), show(want)),
                    other: (file.clone(), show(doc.pointer(ptr))),
                });
            }
        }
    }

    let meta = merged_meta(reports, &mode, command_line);
    let phases = meta.phases();
    let mut sources = Vec::with_capacity(reports.len());
    let mut counters = Counters::default();
    let mut hists: Vec<Histogram<u64>> = phases.iter().map(|_| new_histogram()).collect();
    let mut workers = Vec::new();
    let mut tls = TlsFacts::default();
    let (mut peak_rss, mut peak_open) = (0u64, 0u64);
    let mut interrupted = false;
    for (file, doc) in reports {
        let f = Field::new(file, doc);
        let start = f.i64("/started_at_unix_ms")?;
        let duration_s = f.f64("/duration_s")?;
        if !(duration_s >= 0.0 && duration_s.is_finite()) {
            return Err(f.bad("duration_s is not a non-negative number of seconds"));
        }
        let c = read_counters(&f, &mode)?;
        sources.push(SourceInfo {
            file: file.clone(),
            started_at_unix_ms: start,
            duration_s,
            responses: c.responses,
        });
        counters.add(&c);
        for (&phase, sum) in phases.iter().zip(hists.iter_mut()) {
            add_phase(&f, phase, sum)?;
        }
        workers.extend(read_workers(&f)?);
        if !tls.is_known() {
            tls = read_tls(&f)?;
        }
        peak_rss = peak_rss.saturating_add(f.u64("/client/peak_rss_bytes")?);
        peak_open = peak_open.saturating_add(f.u64("/peak_open_connections")?);
        interrupted |= f.bool("/interrupted")?;
    }

    let window = windows(&sources);
    // Zero-length windows cannot overlap by a share of their length: they must at least lie
    // inside every other window.
    let enough = if window.shortest_s > 0.0 {
        window.overlap_s >= 0.5 * window.shortest_s
    } else {
        windows_touch(&sources)
    };
    if !opts.allow_disjoint && !enough {
        return Err(MergeError::Disjoint {
            overlap_s: window.overlap_s,
            shortest_s: window.shortest_s,
        });
    }

    let mut recorder = Recorder::new();
    for (&phase, h) in phases.iter().zip(hists.iter()) {
        replay(&mut recorder, phase, h);
    }
    recorder.counters = counters;
    recorder.tls = tls;
    recorder.ts_unit = first
        .pointer("/ws/ts_unit")
        .and_then(Value::as_str)
        .and_then(TsUnit::parse)
        .map(TsUnit::name);

    let started_at = system_time(window.start_unix_ms);
    let run = RunResult {
        recorder,
        workers,
        started_at,
        elapsed: Duration::try_from_secs_f64(window.union_s).unwrap_or(Duration::ZERO),
        interrupted,
        peak_rss_bytes: peak_rss,
        peak_open,
        intervals: Vec::new(),
        stages: Vec::new(),
        worker_panics: Vec::new(),
    };
    let json = merged_json(reports, &meta, &run, &sources, &window);
    Ok(Merged {
        meta,
        run,
        sources,
        window,
        json,
    })
}

/// The text output: which reports were merged and how their windows lie, then the usual
/// summary of the merged run. Ends with a newline.
pub fn render_text(m: &Merged) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "merged {} {} reports", m.sources.len(), m.meta.mode);
    let name_w = m.sources.iter().map(|s| s.file.len()).max().unwrap_or(0);
    for s in &m.sources {
        let offset = s.started_at_unix_ms.saturating_sub(m.window.start_unix_ms) as f64 / 1e3;
        let _ = writeln!(
            out,
            "  {:<name_w$}  {}  +{offset:.3} s  for {:.3} s  {} responses",
            s.file,
            json::rfc3339(s.started_at_unix_ms.div_euclid(1000)),
            s.duration_s,
            s.responses
        );
    }
    let share = if m.window.shortest_s > 0.0 {
        format!(
            "{:.0} % of the shortest",
            m.window.overlap_s * 100.0 / m.window.shortest_s
        )
    } else {
        "shortest window is empty".to_string()
    };
    let _ = writeln!(
        out,
        "  window {:.3} s (union), overlap {:.3} s ({share})",
        m.window.union_s, m.window.overlap_s
    );
    out.push('\n');
    out.push_str(&text::render(&m.meta, &m.run));
    out
}

/// Reads typed fields of one report, naming the file and the field when one is missing.
struct Field<'a> {
    file: &'a str,
    doc: &'a Value,
}

impl<'a> Field<'a> {
    fn new(file: &'a str, doc: &'a Value) -> Field<'a> {
        Field { file, doc }
    }

    fn bad(&self, problem: impl Into<String>) -> MergeError {
        MergeError::Input {
            file: self.file.to_string(),
            problem: problem.into(),
        }
    }

    fn get(&self, ptr: &str, what: &str) -> Result<&'a Value, MergeError> {
        self.doc
            .pointer(ptr)
            .ok_or_else(|| self.bad(format!("{} missing (expected {what})", dotted(ptr))))
    }

    fn typed<T>(
        &self,
        ptr: &str,
        what: &str,
        conv: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<T, MergeError> {
        let v = self.get(ptr, what)?;
        conv(v).ok_or_else(|| self.bad(format!("{} is not {what}", dotted(ptr))))
    }

    fn u64(&self, ptr: &str) -> Result<u64, MergeError> {
        self.typed(ptr, "a non-negative integer", Value::as_u64)
    }

    fn i64(&self, ptr: &str) -> Result<i64, MergeError> {
        self.typed(ptr, "an integer", Value::as_i64)
    }

    fn f64(&self, ptr: &str) -> Result<f64, MergeError> {
        self.typed(ptr, "a number", Value::as_f64)
    }

    fn bool(&self, ptr: &str) -> Result<bool, MergeError> {
        self.typed(ptr, "true or false", Value::as_bool)
    }

    fn str(&self, ptr: &str) -> Result<&'a str, MergeError> {
        self.typed(ptr, "a string", Value::as_str)
    }

    fn object(&self, ptr: &str) -> Result<&'a Map<String, Value>, MergeError> {
        self.typed(ptr, "an object", Value::as_object)
    }
}

/// `/counters/responses` → `counters.responses`.
fn dotted(ptr: &str) -> String {
    ptr.trim_start_matches('/').replace('/', ".")
}

/// What decides a report's phases: its mode, and whether it ran at a constant rate (`-R` adds
/// the corrected and send-lag phases). Reports of different kinds cannot be merged.
fn kind(f: &Field<'_>) -> Result<String, MergeError> {
    let mode = f.str("/mode")?;
    Ok(match f.doc.get("rate") {
        Some(r) if !r.is_null() => format!("{mode} -R"),
        _ => mode.to_string(),
    })
}

/// The counters of one report (WebSocket counters only for `ws` reports).
fn read_counters(f: &Field<'_>, mode: &str) -> Result<Counters, MergeError> {
    let mut c = Counters {
        requests: f.u64("/counters/requests")?,
        responses: f.u64("/counters/responses")?,
        bytes_in: f.u64("/counters/bytes_in")?,
        bytes_out: f.u64("/counters/bytes_out")?,
        connections_opened: f.u64("/counters/connections_opened")?,
        connections_established: f.u64("/counters/connections_established")?,
        reused_requests: f.u64("/counters/reused_requests")?,
        server_closes: f.u64("/counters/server_closes")?,
        ..Counters::default()
    };
    for s in StatusClass::ALL {
        c.status[s.index()] = f.u64(&format!("/responses/{}", s.name()))?;
    }
    for e in ErrorClass::ALL {
        // A class added after a report was written (e.g. `ws_reset`) is missing from it: 0.
        let ptr = format!("/errors/{}", e.name());
        if f.doc.pointer(&ptr).is_some() {
            c.errors[e.index()] = f.u64(&ptr)?;
        }
    }
    if !f.get("/tls", "an object or null")?.is_null() {
        c.handshakes_full = f.u64("/tls/handshakes_full")?;
        c.handshakes_resumed = f.u64("/tls/handshakes_resumed")?;
    }
    if !f.get("/rate", "an object or null")?.is_null() {
        c.unsent = f.u64("/rate/unsent")?;
    }
    if mode == "ws" {
        let w = &mut c.ws;
        w.messages_in = f.u64("/ws/messages_in")?;
        w.messages_out = f.u64("/ws/messages_out")?;
        w.upgraded = f.u64("/ws/connections_upgraded")?;
        w.subscriptions_sent = f.u64("/ws/subscriptions_sent")?;
        w.resubscribed = f.u64("/ws/resubscribed")?;
        for r in ReconnectCause::ALL {
            w.reconnects[r.index()] = f.u64(&format!("/ws/reconnects/{}", r.name()))?;
        }
        w.retries_exhausted = f.u64("/ws/retries_exhausted")?;
        for (code, n) in f.object("/ws/close_codes")? {
            let n = n
                .as_u64()
                .ok_or_else(|| f.bad(format!("ws.close_codes.{code} is not an integer")))?;
            match code.parse::<u16>() {
                Ok(c) if (CLOSE_CODE_FIRST..CLOSE_CODE_FIRST + CLOSE_CODES as u16).contains(&c) => {
                    let slot = &mut w.close_codes[usize::from(c - CLOSE_CODE_FIRST)];
                    *slot = slot.saturating_add(n);
                }
                _ if code == "other" => w.close_codes_other = w.close_codes_other.saturating_add(n),
                _ => return Err(f.bad(format!("ws.close_codes has an unknown key {code:?}"))),
            }
        }
        w.pings_answered = f.u64("/ws/pings_answered")?;
        w.pings_sent = f.u64("/ws/pings_sent")?;
        w.pongs_received = f.u64("/ws/pongs_received")?;
        w.seq_gaps = f.u64("/ws/seq_gaps")?;
        w.seq_missing = f.u64("/ws/seq_missing")?;
        w.seq_backwards = f.u64("/ws/seq_restarts")?;
        w.ts_missing = f.u64("/ws/ts_missing")?;
        w.ts_future = f.u64("/ws/ts_future")?;
        w.buffered_sent = f.u64("/ws/buffered_sent")?;
        w.buffer_dropped = f.u64("/ws/buffer_dropped")?;
    }
    Ok(c)
}

/// Decode one report's histogram of `phase`, check it against the stated count, add it.
fn add_phase(f: &Field<'_>, phase: Phase, sum: &mut Histogram<u64>) -> Result<(), MergeError> {
    let name = phase.name();
    let encoded = f.str(&format!("/phases/{name}/hdr"))?;
    let count = f.u64(&format!("/phases/{name}/count"))?;
    let h = hdr::decode(encoded).map_err(|e| f.bad(format!("phases.{name}: {e}")))?;
    if h.len() != count {
        return Err(f.bad(format!(
            "phases.{name}: count says {count} but the histogram holds {} samples (damaged report)",
            h.len()
        )));
    }
    sum.add(&h).map_err(|e| {
        f.bad(format!(
            "phases.{name}: histogram does not fit connbench's range (1 ns .. 60 s): {e:?}"
        ))
    })
}

/// Put a merged histogram into a recorder, so the text summary reads the exact sum. The
/// decoded histograms can carry other bounds than the recorder's (another build, another
/// tool); those are re-recorded sample by sample at their buckets' values, clamped as any
/// sample is.
fn replay(rec: &mut Recorder, phase: Phase, h: &Histogram<u64>) {
    if rec.add_histogram(phase, h).is_ok() {
        return;
    }
    for v in h.iter_recorded() {
        let value = v.value_iterated_to();
        for _ in 0..v.count_at_value() {
            rec.record(phase, value);
        }
    }
}

/// The workers of one report, as `client.workers` lists them.
fn read_workers(f: &Field<'_>) -> Result<Vec<WorkerStats>, MergeError> {
    let list = f.typed("/client/workers", "an array", Value::as_array)?;
    let ns = |v: &Value, key: &str, scale: f64| -> Result<u64, MergeError> {
        let x = v
            .get(key)
            .and_then(Value::as_f64)
            .filter(|x| *x >= 0.0 && x.is_finite())
            .ok_or_else(|| {
                f.bad(format!(
                    "client.workers[].{key} is not a non-negative number"
                ))
            })?;
        // `as` saturates; a real CPU time is far below u64::MAX ns.
        Ok((x * scale).round() as u64)
    };
    list.iter()
        .map(|w| {
            Ok(WorkerStats {
                cpu: w
                    .get("cpu")
                    .and_then(Value::as_u64)
                    .and_then(|c| usize::try_from(c).ok()),
                connections: w
                    .get("connections")
                    .and_then(Value::as_u64)
                    .and_then(|c| usize::try_from(c).ok())
                    .ok_or_else(|| f.bad("client.workers[].connections is not an integer"))?,
                cpu_user_ns: ns(w, "cpu_user_s", 1e9)?,
                cpu_sys_ns: ns(w, "cpu_sys_s", 1e9)?,
                max_stall_ns: ns(w, "max_loop_stall_us", 1e3)?,
            })
        })
        .collect()
}

/// The negotiated TLS facts of one report (all unknown for a plain run).
fn read_tls(f: &Field<'_>) -> Result<TlsFacts, MergeError> {
    let tls = f.get("/tls", "an object or null")?;
    let s = |k: &str| tls.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(TlsFacts {
        version: s("version"),
        cipher_suite: s("cipher_suite"),
        kx_group: s("kx_group"),
        alpn: s("alpn"),
    })
}

/// Union, overlap and shortest of the windows.
fn windows(sources: &[SourceInfo]) -> WindowSummary {
    let start = |s: &SourceInfo| s.started_at_unix_ms as f64;
    let end = |s: &SourceInfo| s.started_at_unix_ms as f64 + s.duration_s * 1e3;
    let min_start = sources
        .iter()
        .map(|s| s.started_at_unix_ms)
        .min()
        .unwrap_or(0);
    let max_start = sources.iter().map(start).fold(f64::MIN, f64::max);
    let min_end = sources.iter().map(end).fold(f64::MAX, f64::min);
    let max_end = sources.iter().map(end).fold(f64::MIN, f64::max);
    let shortest = sources
        .iter()
        .map(|s| s.duration_s)
        .fold(f64::MAX, f64::min);
    WindowSummary {
        start_unix_ms: min_start,
        union_s: ((max_end - min_start as f64) / 1e3).max(0.0),
        overlap_s: ((min_end - max_start) / 1e3).max(0.0),
        shortest_s: if sources.is_empty() { 0.0 } else { shortest },
    }
}

/// True when every window contains one common instant (zero-length windows included): only
/// then do zero-length windows count as overlapping.
fn windows_touch(sources: &[SourceInfo]) -> bool {
    let max_start = sources
        .iter()
        .map(|s| s.started_at_unix_ms as f64)
        .fold(f64::MIN, f64::max);
    let min_end = sources
        .iter()
        .map(|s| s.started_at_unix_ms as f64 + s.duration_s * 1e3)
        .fold(f64::MAX, f64::min);
    max_start <= min_end
}

/// A Unix time in ms as a `SystemTime` (before the epoch too).
fn system_time(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(d).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

/// The merged configuration: the first report's, with the load summed and CPU lists united.
/// Strings come from reports, so they are already redacted; the reports redact them again,
/// which leaves redacted text as it is.
fn merged_meta(reports: &[(String, Value)], mode: &str, command_line: Vec<String>) -> RunMeta {
    let first = reports.first().map(|(_, d)| d).unwrap_or(&Value::Null);
    let get = |ptr: &str| first.pointer(ptr);
    let s = |ptr: &str| get(ptr).and_then(Value::as_str).map(str::to_string);
    let secs = |ptr: &str| {
        get(ptr)
            .and_then(Value::as_f64)
            .and_then(|x| Duration::try_from_secs_f64(x).ok())
    };
    let sum = |ptr: &str| -> usize {
        reports
            .iter()
            .filter_map(|(_, d)| d.pointer(ptr).and_then(Value::as_u64))
            .fold(0usize, |a, n| {
                a.saturating_add(usize::try_from(n).unwrap_or(usize::MAX))
            })
    };
    let cpus = |ptr: &str| -> Vec<usize> {
        let mut all: Vec<usize> = reports
            .iter()
            .filter_map(|(_, d)| d.pointer(ptr).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_u64)
            .filter_map(|c| usize::try_from(c).ok())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let requests: Option<Vec<u64>> = reports
        .iter()
        .map(|(_, d)| d.pointer("/config/requests").and_then(Value::as_u64))
        .collect();
    let headers = get("/config/headers")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(Value::as_str)
                .map(|h| match h.split_once(':') {
                    Some((n, v)) => (n.trim().to_string(), v.trim().to_string()),
                    None => (h.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default();
    let ws = (mode == "ws").then(|| {
        let ws = |k: &str| first.pointer(&format!("/ws/{k}"));
        let ws_s = |k: &str| ws(k).and_then(Value::as_str).map(str::to_string);
        WsMeta {
            mode: ws_s("mode").unwrap_or_default(),
            subscriptions: ws("subscriptions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            ts_field: ws_s("ts_field"),
            ts_unit: match ws("ts_unit_inferred").and_then(Value::as_bool) {
                Some(false) => ws_s("ts_unit"),
                _ => None,
            },
            seq_field: ws_s("seq_field"),
            stream_field: ws_s("stream_field").unwrap_or_default(),
            // The rest are settings the text summary does not show; the merged JSON copies
            // them verbatim from the first report (see `merged_json`).
            ..WsMeta::default()
        }
    });
    RunMeta {
        mode: mode.to_string(),
        url: s("/target/url").unwrap_or_default(),
        builtin_target: reports
            .iter()
            .any(|(_, d)| d.pointer("/target/builtin") == Some(&Value::Bool(true))),
        command_line,
        method: s("/config/method").unwrap_or_default(),
        headers,
        body_len: get("/config/body_len")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0),
        connections: sum("/config/connections"),
        threads: sum("/config/threads"),
        worker_cpus: cpus("/config/worker_cpus"),
        target_cpus: cpus("/config/target_cpus"),
        pipeline: get("/config/pipeline")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1),
        duration: secs("/config/duration_s"),
        requests: requests.map(|r| r.iter().fold(0u64, |a, n| a.saturating_add(*n))),
        warmup: secs("/config/warmup_s").unwrap_or_default(),
        timeout: secs("/config/timeout_s").unwrap_or_default(),
        connect_timeout: secs("/config/connect_timeout_s").unwrap_or_default(),
        tls: get("/config/tls").and_then(Value::as_bool).unwrap_or(false),
        // The caveat must survive the merge if any input carried it.
        insecure: reports
            .iter()
            .any(|(_, d)| d.pointer("/insecure") == Some(&Value::Bool(true))),
        resume: get("/config/resume")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        sni: s("/config/sni"),
        ca_file: s("/config/ca_file"),
        fd_limit: get("/config/fd_limit").and_then(Value::as_u64).unwrap_or(0),
        ws,
        // The asked rates add up like the loads; the arrival process must agree (checked
        // with the identity fields).
        rate: first.get("rate").filter(|r| !r.is_null()).map(|r| {
            let asked = reports
                .iter()
                .filter_map(|(_, d)| d.pointer("/rate/asked_per_s").and_then(Value::as_f64))
                .sum();
            let arrival = r.get("arrival").and_then(Value::as_str).unwrap_or_default();
            (asked, arrival.to_string())
        }),
        // Every process's source addresses, once each.
        sources: {
            let mut all: Vec<std::net::IpAddr> = reports
                .iter()
                .filter_map(|(_, d)| d.pointer("/config/sources").and_then(Value::as_array))
                .flatten()
                .filter_map(|v| v.as_str()?.parse().ok())
                .collect();
            all.sort();
            all.dedup();
            all
        },
    }
}

/// The merged document: [`json::render`] of the merged run, then the first report's verbatim
/// strings and settings (no double redaction, no lossy round trip), plus the merge fields.
fn merged_json(
    reports: &[(String, Value)],
    meta: &RunMeta,
    run: &RunResult,
    sources: &[SourceInfo],
    window: &WindowSummary,
) -> Value {
    // The host object is replaced below; these facts are never written.
    let placeholder = HostFacts {
        cpus_online: 0,
        cpus_allowed: 0,
        clocksource: None,
        kernel: None,
        arch: "",
        os: "",
    };
    let mut v = json::render(meta, run, &placeholder);
    let first = reports.first().map(|(_, d)| d).unwrap_or(&Value::Null);
    let copy = |v: &mut Value, ptr: &str| {
        if let (Some(src), Some(dst)) = (first.pointer(ptr), v.pointer_mut(ptr)) {
            *dst = src.clone();
        }
    };
    for ptr in [
        "/host",
        "/target/url",
        "/config/headers",
        "/config/duration_s",
        "/config/warmup_s",
        "/config/timeout_s",
        "/config/connect_timeout_s",
    ] {
        copy(&mut v, ptr);
    }
    if meta.ws.is_some() {
        for key in WS_SETTINGS {
            copy(&mut v, &format!("/ws/{key}"));
        }
    }
    let source_docs: Vec<Value> = reports
        .iter()
        .zip(sources)
        .map(|((_, d), s)| {
            json!({
                "file": s.file,
                "started_at": json::rfc3339(s.started_at_unix_ms.div_euclid(1000)),
                "started_at_unix_ms": s.started_at_unix_ms,
                "duration_s": s.duration_s,
                "responses": s.responses,
                "url": d.pointer("/target/url"),
                "connections": d.pointer("/config/connections"),
                "threads": d.pointer("/config/threads"),
                "host": d.pointer("/host"),
            })
        })
        .collect();
    if let Value::Object(map) = &mut v {
        map.insert(
            "merged_from".into(),
            json!(sources.iter().map(|s| s.file.as_str()).collect::<Vec<_>>()),
        );
        map.insert("sources".into(), Value::Array(source_docs));
        map.insert(
            "merge_window".into(),
            json!({
                "start_unix_ms": window.start_unix_ms,
                "union_s": window.union_s,
                "overlap_s": window.overlap_s,
                "shortest_s": window.shortest_s,
            }),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    /// A single-run report rendered by `json::render`, started at `start_ms`, with `n` total
    /// samples around `base` ns.
    fn report(start_ms: u64, secs: f64, n: u64, base: u64) -> Value {
        let mut r = Recorder::new();
        for i in 0..n {
            r.record(Phase::Total, base + i * 13);
            r.record(Phase::Ttfb, base / 2 + i * 7);
            r.response(if i % 10 == 0 { 404 } else { 200 });
        }
        r.record(Phase::Connect, 40_000 + base);
        r.counters.requests = n;
        r.counters.bytes_in = n * 100;
        r.counters.connections_opened = 1;
        r.error(ErrorClass::ReadTimeout);
        let run = RunResult {
            recorder: r,
            workers: vec![WorkerStats {
                cpu: Some(1),
                connections: 2,
                cpu_user_ns: 100_000_000,
                cpu_sys_ns: 50_000_000,
                max_stall_ns: 9_000,
            }],
            started_at: UNIX_EPOCH + Duration::from_millis(start_ms),
            elapsed: Duration::from_secs_f64(secs),
            interrupted: false,
            peak_rss_bytes: 1_000,
            peak_open: 2,
            intervals: Vec::new(),
            stages: Vec::new(),
            worker_panics: Vec::new(),
        };
        let meta = RunMeta {
            mode: "http".into(),
            url: "http://127.0.0.1:8080/".into(),
            method: "GET".into(),
            connections: 2,
            threads: 1,
            pipeline: 1,
            requests: Some(n),
            ..RunMeta::default()
        };
        let host = HostFacts {
            cpus_online: 2,
            cpus_allowed: 2,
            clocksource: Some("tsc".into()),
            kernel: None,
            arch: "x86_64",
            os: "linux",
        };
        json::render(&meta, &run, &host)
    }

    fn named(docs: Vec<Value>) -> Vec<(String, Value)> {
        docs.into_iter()
            .enumerate()
            .map(|(i, d)| (format!("r{i}.json"), d))
            .collect()
    }

    fn decode(v: &Value, phase: &str) -> Histogram<u64> {
        hdr::decode(v["phases"][phase]["hdr"].as_str().expect("hdr")).expect("decodes")
    }

    #[test]
    fn sums_counters_and_adds_histograms_exactly() {
        let t0 = 1_700_000_000_000;
        let docs = vec![
            report(t0, 2.0, 500, 50_000),
            report(t0 + 100, 2.0, 700, 90_000),
            report(t0 + 300, 1.9, 300, 1_000_000),
        ];
        let m = merge(&named(docs.clone()), &MergeOptions::default(), vec![]).expect("merges");
        let j = &m.json;
        assert_eq!(j["schema"], SCHEMA);
        assert_eq!(j["counters"]["responses"], 1500);
        assert_eq!(j["responses"]["4xx"], 50 + 70 + 30);
        assert_eq!(j["errors"]["read_timeout"], 3);
        assert_eq!(j["errors"]["total"], 3);
        assert_eq!(j["config"]["connections"], 6);
        assert_eq!(j["config"]["threads"], 3);
        assert_eq!(j["config"]["requests"], 1500);
        assert_eq!(j["client"]["workers"].as_array().map(Vec::len), Some(3));
        assert_eq!(j["client"]["peak_rss_bytes"], 3_000);
        assert_eq!(j["merged_from"], json!(["r0.json", "r1.json", "r2.json"]));
        assert_eq!(j["sources"][1]["responses"], 700);
        assert_eq!(j["host"]["clocksource"], "tsc");
        // union: t0 .. t0+2.2 s; overlap t0+0.3 .. t0+2.0
        assert!((j["duration_s"].as_f64().unwrap() - 2.2).abs() < 1e-9);
        assert!((m.window.overlap_s - 1.7).abs() < 1e-9);
        let rps = j["throughput"]["responses_per_s"].as_f64().unwrap();
        assert!((rps - 1500.0 / 2.2).abs() < 1e-6, "{rps}");
        assert_eq!(j["started_at_unix_ms"], t0);
        for phase in ["connect", "ttfb", "total"] {
            let mut want = new_histogram();
            for d in &docs {
                want.add(decode(d, phase)).expect("same bounds");
            }
            let got = decode(j, phase);
            assert_eq!(got, want, "{phase}");
            assert_eq!(j["phases"][phase]["count"], want.len());
            assert_eq!(j["phases"][phase]["p50"], want.value_at_quantile(0.5));
            assert_eq!(j["phases"][phase]["p99"], want.value_at_quantile(0.99));
            assert_eq!(j["phases"][phase]["max"], want.max());
            // The recorder the text summary reads holds exactly the same histogram.
            let p = *Phase::HTTP
                .iter()
                .find(|p| p.name() == phase)
                .expect("phase");
            assert_eq!(m.run.recorder.histogram(p), &want);
            assert_eq!(m.run.recorder.histogram(p).max(), want.max());
            assert_eq!(m.run.recorder.histogram(p).min(), want.min());
        }
        let text = render_text(&m);
        assert!(text.contains("merged 3 http reports"), "{text}");
        assert!(text.contains("r2.json"), "{text}");
        assert!(text.contains("1500 responses"), "{text}");
        assert!(text.contains("6 connections on 3 workers"), "{text}");
    }

    #[test]
    fn disjoint_or_barely_overlapping_windows_are_refused() {
        let t0 = 1_700_000_000_000;
        let far = named(vec![
            report(t0, 1.0, 10, 5_000),
            report(t0 + 5_000, 1.0, 10, 5_000),
        ]);
        let e = merge(&far, &MergeOptions::default(), vec![]).expect_err("disjoint");
        assert!(matches!(e, MergeError::Disjoint { overlap_s, .. } if overlap_s == 0.0));
        assert!(e.to_string().contains("--allow-disjoint"), "{e}");
        // 0.4 s of overlap on 1 s windows: less than half.
        let thin = named(vec![
            report(t0, 1.0, 10, 5_000),
            report(t0 + 600, 1.0, 10, 5_000),
        ]);
        let e = merge(&thin, &MergeOptions::default(), vec![]).expect_err("thin");
        assert!(e.to_string().contains("0.400 s"), "{e}");
        // 0.6 s: enough.
        let ok = named(vec![
            report(t0, 1.0, 10, 5_000),
            report(t0 + 400, 1.0, 10, 5_000),
        ]);
        assert!(merge(&ok, &MergeOptions::default(), vec![]).is_ok());
        let opts = MergeOptions {
            allow_disjoint: true,
            ..MergeOptions::default()
        };
        let m = merge(&far, &opts, vec![]).expect("allowed");
        assert!((m.window.union_s - 6.0).abs() < 1e-9);
        assert_eq!(m.json["merge_window"]["overlap_s"], 0.0);
        // Absurd start times are merged (when allowed) without overflow or panic.
        let mut a = report(t0, 1.0, 10, 5_000);
        let mut b = a.clone();
        a["started_at_unix_ms"] = json!(i64::MIN);
        b["started_at_unix_ms"] = json!(i64::MAX);
        let m = merge(&named(vec![a, b]), &opts, vec![]).expect("allowed");
        assert!(render_text(&m).contains("merged 2 http reports"));
    }

    #[test]
    fn different_urls_and_modes_are_refused() {
        let t0 = 1_700_000_000_000;
        let a = report(t0, 1.0, 10, 5_000);
        let mut b = a.clone();
        b["target"]["url"] = json!("http://127.0.0.1:9999/other");
        let e = merge(
            &named(vec![a.clone(), b.clone()]),
            &MergeOptions::default(),
            vec![],
        )
        .expect_err("mixed");
        assert!(e.to_string().contains("target.url"), "{e}");
        assert!(e.to_string().contains("--allow-mixed"), "{e}");
        let opts = MergeOptions {
            allow_mixed: true,
            ..MergeOptions::default()
        };
        assert!(merge(&named(vec![a.clone(), b]), &opts, vec![]).is_ok());
        let mut ws = a.clone();
        ws["mode"] = json!("ws");
        let e = merge(&named(vec![a, ws]), &opts, vec![]).expect_err("mode");
        assert!(matches!(e, MergeError::Mode { .. }), "{e}");
    }

    #[test]
    fn damaged_reports_name_the_file_and_the_field() {
        let t0 = 1_700_000_000_000;
        let good = report(t0, 1.0, 10, 5_000);
        type Damage = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Damage, &str)> = vec![
            (
                Box::new(|v| v["phases"]["total"]["hdr"] = json!("HISTFAAA!!")),
                "phases.total",
            ),
            (
                Box::new(|v| v["phases"]["ttfb"]["count"] = json!(3)),
                "count says 3",
            ),
            (
                Box::new(|v| {
                    if let Some(m) = v["counters"].as_object_mut() {
                        m.remove("responses");
                    }
                }),
                "counters.responses missing",
            ),
            (
                Box::new(|v| v["errors"]["io"] = json!(-1)),
                "errors.io is not",
            ),
            (
                Box::new(|v| v["started_at_unix_ms"] = json!("x")),
                "started_at_unix_ms",
            ),
            (Box::new(|v| v["duration_s"] = json!(-1.0)), "duration_s"),
            (
                Box::new(|v| v["client"]["workers"] = json!([{}])),
                "client.workers",
            ),
        ];
        for (damage, needle) in cases {
            let mut bad = good.clone();
            damage(&mut bad);
            let docs = vec![
                ("good.json".to_string(), good.clone()),
                ("bad.json".to_string(), bad),
            ];
            let e = merge(&docs, &MergeOptions::default(), vec![]).expect_err(needle);
            let msg = e.to_string();
            assert!(
                msg.starts_with("bad.json: ") && msg.contains(needle),
                "{msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
        assert_eq!(
            merge(&[], &MergeOptions::default(), vec![]).expect_err("empty"),
            MergeError::NoInput
        );
    }

    #[test]
    fn load_rejects_missing_non_json_and_foreign_files() {
        let dir = std::env::temp_dir().join(format!("connbench-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
        std::fs::write(p("text.json"), "hello").expect("write");
        std::fs::write(p("other.json"), r#"{"schema":"something.else"}"#).expect("write");
        std::fs::write(p("plain.json"), r#"{"a":1}"#).expect("write");
        std::fs::write(p("ok.json"), report(0, 1.0, 3, 1_000).to_string()).expect("write");
        for (file, needle) in [
            ("missing.json", "cannot read"),
            ("text.json", "not valid JSON"),
            ("other.json", "not supported"),
            ("plain.json", "not a connbench report"),
        ] {
            let e = load(&p(file)).expect_err(file);
            let msg = e.to_string();
            assert!(msg.starts_with(&p(file)) && msg.contains(needle), "{msg}");
        }
        assert!(load(&p("ok.json")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn constant_rate_reports_sum_their_rates_and_extra_phases() {
        let t0 = 1_700_000_000_000;
        let rated = |asked: f64| {
            let mut r = Recorder::new();
            for i in 0..100u64 {
                r.record(Phase::Total, 50_000 + i);
                r.record(Phase::Corrected, 60_000 + i * 10);
                r.record(Phase::SendLag, 1_000 + i);
                r.response(200);
            }
            r.counters.requests = 100;
            r.counters.unsent = 3;
            let run = RunResult {
                recorder: r,
                workers: Vec::new(),
                started_at: UNIX_EPOCH + Duration::from_millis(t0),
                elapsed: Duration::from_secs(1),
                interrupted: false,
                peak_rss_bytes: 0,
                peak_open: 1,
                intervals: Vec::new(),
                stages: Vec::new(),
                worker_panics: Vec::new(),
            };
            let meta = RunMeta {
                mode: "http".into(),
                url: "http://127.0.0.1:8080/".into(),
                rate: Some((asked, "poisson".into())),
                ..RunMeta::default()
            };
            let host = HostFacts {
                cpus_online: 1,
                cpus_allowed: 1,
                clocksource: None,
                kernel: None,
                arch: "x86_64",
                os: "linux",
            };
            json::render(&meta, &run, &host)
        };
        let m = merge(
            &named(vec![rated(100.0), rated(150.0)]),
            &MergeOptions::default(),
            vec![],
        )
        .expect("merges");
        assert_eq!(m.json["rate"]["asked_per_s"], 250.0);
        assert_eq!(m.json["rate"]["arrival"], "poisson");
        assert_eq!(m.json["rate"]["unsent"], 6);
        assert_eq!(m.json["phases"]["corrected"]["count"], 200);
        assert_eq!(m.json["phases"]["send_lag"]["count"], 200);
        assert!(render_text(&m).contains("asked 250"), "{}", render_text(&m));
        // A closed-loop report has other phases: never merged with a constant-rate one.
        let plain = report(t0, 1.0, 10, 5_000);
        let opts = MergeOptions {
            allow_mixed: true,
            allow_disjoint: true,
        };
        let e = merge(&named(vec![rated(100.0), plain]), &opts, vec![]).expect_err("kinds");
        assert!(e.to_string().contains("http -R report"), "{e}");
        // Another arrival process is a mixed merge.
        let mut uniform = rated(100.0);
        uniform["rate"]["arrival"] = json!("uniform");
        let e = merge(
            &named(vec![rated(100.0), uniform]),
            &MergeOptions::default(),
            vec![],
        )
        .expect_err("arrival");
        assert!(e.to_string().contains("rate.arrival"), "{e}");
    }

    #[test]
    fn websocket_counters_are_summed() {
        let mut r = Recorder::new();
        r.record(Phase::Latency, 1_000);
        r.counters.ws.messages_in = 10;
        r.counters.ws.upgraded = 2;
        r.counters.ws.close_code(Some(1001));
        r.counters.ws.close_code(Some(4000));
        r.counters.ws.reconnects[ReconnectCause::Stale.index()] = 3;
        r.counters.connections_opened = 2;
        let run = RunResult {
            recorder: r,
            workers: Vec::new(),
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            elapsed: Duration::from_secs(1),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: 2,
            intervals: Vec::new(),
            stages: Vec::new(),
            worker_panics: Vec::new(),
        };
        let meta = RunMeta {
            mode: "ws".into(),
            url: "ws://127.0.0.1:1/ws".into(),
            ws: Some(WsMeta {
                mode: "stream".into(),
                send_buffer: 77,
                ..WsMeta::default()
            }),
            ..RunMeta::default()
        };
        let host = HostFacts {
            cpus_online: 1,
            cpus_allowed: 1,
            clocksource: None,
            kernel: None,
            arch: "x86_64",
            os: "linux",
        };
        let doc = json::render(&meta, &run, &host);
        let m = merge(
            &named(vec![doc.clone(), doc]),
            &MergeOptions::default(),
            vec![],
        )
        .expect("merges");
        let ws = &m.json["ws"];
        assert_eq!(ws["messages_in"], 20);
        assert_eq!(ws["connections_upgraded"], 4);
        assert_eq!(ws["close_codes"]["1001"], 2);
        assert_eq!(ws["close_codes"]["other"], 2);
        assert_eq!(ws["reconnects"]["stale"], 6);
        assert_eq!(
            ws["send_buffer"], 77,
            "settings copied from the first report"
        );
        assert_eq!(m.json["phases"]["latency"]["count"], 2);
        assert_eq!(m.json["peak_open_connections"], 4);
    }
}
