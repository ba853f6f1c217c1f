//! `connbench merge`: one exact report from the JSON reports of runs made by several processes
//! or machines at the same time.
//!
//! This module owns the merge rules; it reads each report document into the declared schema
//! ([`schema::Report`], the types the writer fills), folds the typed fields and builds a
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
//!    (`rate.asked_per_s`, like `rate.unsent`; `conn_rate.asked_per_s`, like
//!    `conn_rate.unopened`) are summed, CPU lists united;
//!    every other setting is the first report's. Reports must share `mode`, constant-rate or
//!    not and connection-rate or not (their phases differ); a different URL, method, body
//!    length, pipeline depth, TLS setting, arrival process, requests per connection, close
//!    mode or WebSocket mode is refused unless [`MergeOptions::allow_mixed`]. `time_wait` is
//!    one host's reading: the merged report has none (each source report keeps its own).
//! 5. `host` is the first report's; each report's own host, URL, window and size is kept under
//!    `sources`, the file names under `merged_from`, the window figures under `merge_window`.
//!
//! Any unreadable, non-JSON, wrong-schema or damaged input is a [`MergeError::Input`] naming the
//! file and the problem on one line; nothing here panics on input. Impossible numbers are
//! refused, never wrapped or saturated into a plausible-looking report:
//!
//! 6. Every sum (counters, status and error classes, WebSocket counters, CPU times, peak RSS,
//!    the summed settings) is checked: a sum past `u64::MAX` names the file that pushed it over
//!    and the field. So are the sums inside one report that the output shows (`errors.total`,
//!    `ws.reconnects_total`, the workers' CPU time); a report's own `errors.total` must equal
//!    its classes, and an error class this build does not know is refused rather than dropped.
//! 7. A phase holds at most [`MAX_PHASE_SAMPLES`] (2^53) samples, in one report and merged, so
//!    the percentile and mean arithmetic (f64) is exact; the histogram's own total (which the
//!    decoder saturates at `u64::MAX`, above the limit) must equal `count`. A histogram with
//!    samples in its zero bucket is refused: connbench records at least 1 ns, and those would
//!    merge into a p50 of 0 ns.
//! 8. A counter, error class, status class or phase that a report lacks counts as zero: a
//!    report written by an older connbench (before a class or counter existed) still merges.
//!    A field that is present must have the right type: the schema types refuse it, and the
//!    message names its path (`client.workers[0].cpu`). Which fields may be missing is the
//!    schema's `#[serde(default)]`.
//!
//! 9. Per-stage windows (`--stages`) are kept: the reports must have the same windows (stage,
//!    ramp or hold, start, length), and each merged window is the sum of the reports' windows
//!    of that position — counters and connection counts summed, phase histograms added, the
//!    reuse rate recomputed from the summed counts. Different windows are refused
//!    (`--allow-mixed`: the merged report then has no stages).
//!
//! Reports are folded one at a time ([`Merger`]): the merge holds the running sums, the first
//! report's settings (without its histograms) and a few facts per source, never every report.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::host::HostFacts;
use super::json::{self, SCHEMA};
use super::percentiles::Percentiles;
use super::{hdr, schema, text, RunMeta, RunResult, WorkerStats};
use crate::metrics::{
    new_histogram, Counters, ErrorClass, Phase, ReconnectCause, Recorder, StatusClass, TlsFacts,
    CLOSE_CODES, CLOSE_CODE_FIRST,
};
use crate::plan::{Arrival, BackoffPolicy, Heartbeat, Jitter, Mode, TlsPlan, WsMode, WsSession};
use crate::proto::jsonfield::{FieldPath, TsUnit};

/// Most samples one phase may hold, in one report and merged (rule 7): 2^53, the largest
/// count for which the f64 arithmetic of percentiles and means is exact. At 10 million samples
/// a second that is 28 years of sampling.
pub const MAX_PHASE_SAMPLES: u64 = 1 << 53;

/// What to do about a report whose numbers cannot be true (the end of those messages).
const DAMAGED: &str = "the report is damaged: regenerate it or leave it out of the merge";

/// Largest report file [`load`] reads (64 MiB). A real report is a few KiB to a few hundred KiB.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

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
    let file = std::fs::File::open(path).map_err(|e| MergeError::Input {
        file: path.to_string(),
        problem: format!("cannot read: {e}"),
    })?;
    read_report(path, file)
}

/// Read and parse one report from `reader` (at most [`MAX_REPORT_BYTES`]), checking it is a
/// connbench report of a known schema; `file` names it in errors.
pub fn read_report(file: &str, reader: impl Read) -> Result<Value, MergeError> {
    let bad = |problem: String| MergeError::Input {
        file: file.to_string(),
        problem,
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_REPORT_BYTES + 1)
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
    /// The per-stage windows, summed over the reports (empty unless `--stages`).
    pub stages: Vec<schema::Stage>,
}

/// Merge loaded reports (`(file name, document)`, in command-line order). `command_line` is the
/// merge process's own, recorded (redacted) as the merged report's `command_line`.
pub fn merge(
    reports: &[(String, Value)],
    opts: &MergeOptions,
    command_line: Vec<String>,
) -> Result<Merged, MergeError> {
    let mut m = Merger::new(*opts);
    for (file, doc) in reports {
        m.add(file, doc)?;
    }
    m.finish(command_line)
}

/// Merge reports read one at a time from `inputs` (`(file name, reader)`, in command-line
/// order): each is read ([`read_report`]), folded into the running merge and dropped before
/// the next reader is taken. The pure core of `connbench merge`, also what the fuzz target
/// drives.
pub fn merge_reports<R: Read>(
    inputs: impl IntoIterator<Item = (String, R)>,
    opts: &MergeOptions,
    command_line: Vec<String>,
) -> Result<Merged, MergeError> {
    Ok(read_reports(inputs, opts)?.render(command_line))
}

/// [`merge_reports`] without the rendering: the reports read, summed and checked.
pub fn read_reports<R: Read>(
    inputs: impl IntoIterator<Item = (String, R)>,
    opts: &MergeOptions,
) -> Result<Combined, MergeError> {
    let mut m = Merger::new(*opts);
    for (file, reader) in inputs {
        let doc = read_report(&file, reader)?;
        m.add(&file, &doc)?;
    }
    m.combine()
}

/// The running merge: everything folded from the reports added so far, and nothing else (the
/// first report's settings without its histograms, a few facts per source, the sums).
///
/// [`Merger::add`] checks one report and folds it in; the first error poisons the merge, so
/// [`Merger::add`] and [`Merger::finish`] then return that error again.
#[derive(Debug)]
pub struct Merger {
    opts: MergeOptions,
    first: Option<First>,
    sources: Vec<SourceInfo>,
    /// `sources[i]` of the merged document: each report's own URL, load and host.
    source_docs: Vec<Value>,
    counters: Counters,
    hists: Vec<(Phase, Histogram<u64>)>,
    workers: Vec<WorkerStats>,
    /// Sums of the workers' user and system CPU time, ns (what the output shows).
    cpu_ns: (u64, u64),
    tls: TlsFacts,
    peak_rss: u64,
    peak_open: u64,
    interrupted: bool,
    /// Why failures happened, summed over the inputs (`errors.reasons`).
    reasons: crate::metrics::Reasons,
    /// Every input's worker panics, named by file: a merge never hides one.
    worker_panics: Vec<crate::metrics::run::WorkerPanic>,
    load: Load,
    /// Per-stage windows, summed window by window (`stages`).
    stages: Vec<StageSum>,
    failed: Option<MergeError>,
}

/// One window of a staged run, summed over the reports (rule 9).
#[derive(Debug)]
struct StageSum {
    stage: u64,
    window: String,
    start_s: f64,
    duration_s: f64,
    connections_from: u64,
    connections_to: u64,
    open_at_end: u64,
    counters: Counters,
    errors: u64,
    hists: Vec<(Phase, Histogram<u64>)>,
    /// The first report's asked rate of the window, times the reports (rates add up).
    asked_per_s: Option<f64>,
    /// WebSocket windows: their counters summed.
    ws: Option<schema::StageWs>,
}

/// What the first report decides for the whole merge.
#[derive(Debug)]
struct First {
    file: String,
    kind: String,
    /// The command that made the reports.
    mode: Mode,
    /// The WebSocket settings of a `ws` merge, read back into the plan's type.
    ws: Option<WsSession>,
    /// The report without `phases` and `stages` (the bulky parts): settings and strings the
    /// merged report copies.
    report: schema::Report,
}

/// The summed and united settings (rule 4).
#[derive(Debug, Default)]
struct Load {
    connections: u64,
    threads: u64,
    /// `None` once a report has no `config.requests` (a time-bounded run).
    requests: Option<u64>,
    asked_per_s: f64,
    /// The arrival process of a rate merge (the first report's; the others agree unless
    /// `--allow-mixed`). `None`: not a rate run.
    arrival: Option<Arrival>,
    /// `conn_rate.asked_per_s`, summed.
    conn_asked_per_s: f64,
    worker_cpus: BTreeSet<u64>,
    target_cpus: BTreeSet<u64>,
    addresses: BTreeSet<std::net::IpAddr>,
    builtin: bool,
    insecure: bool,
    /// Every input's `start_at` (null included), once each: one value means they agree.
    start_ats: BTreeSet<Option<String>>,
    /// The inputs' `start_skew_s` largest by magnitude.
    worst_skew: Option<f64>,
}

impl Merger {
    /// An empty merge.
    pub fn new(opts: MergeOptions) -> Merger {
        Merger {
            opts,
            first: None,
            sources: Vec::new(),
            source_docs: Vec::new(),
            counters: Counters::default(),
            hists: Vec::new(),
            workers: Vec::new(),
            cpu_ns: (0, 0),
            tls: TlsFacts::default(),
            peak_rss: 0,
            peak_open: 0,
            interrupted: false,
            reasons: Default::default(),
            worker_panics: Vec::new(),
            load: Load {
                requests: Some(0),
                ..Load::default()
            },
            stages: Vec::new(),
            failed: None,
        }
    }

    /// Check one report (`file` names it in errors) and fold it into the merge: the document
    /// is read into the declared schema ([`schema::Report`]) first, so a present field of the
    /// wrong type is refused naming its path, and a field added after older reports defaults.
    pub fn add(&mut self, file: &str, doc: &Value) -> Result<(), MergeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = typed(file, doc).and_then(|report| self.fold(file, report));
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn fold(&mut self, file: &str, mut r: schema::Report) -> Result<(), MergeError> {
        let f = In(file);
        let k = kind(&r);
        let mut settings = None;
        match &self.first {
            None => {
                let mode = Mode::parse(&r.mode)
                    .filter(|m| *m != Mode::Probe)
                    .ok_or_else(|| {
                        f.bad(format!(
                            "mode {:?} is not a run merge can combine (http or ws; probe reports \
                         merge on their own: report::merge_probe)",
                            r.mode
                        ))
                    })?;
                let ws = match (mode, &r.ws) {
                    (Mode::Ws, Some(w)) => Some(ws_session(f, w)?),
                    (Mode::Ws, None) => {
                        return Err(f.bad(format!(
                            "a ws report without its \"ws\" settings; {DAMAGED}"
                        )))
                    }
                    _ => None,
                };
                settings = Some((mode, ws));
                let mut phases = Phase::for_mode(&r.mode).to_vec();
                if r.rate.is_some() {
                    phases.extend([Phase::Corrected, Phase::SendLag]);
                }
                if r.conn_rate.is_some() {
                    phases.push(Phase::OpenLag);
                }
                self.hists = phases.into_iter().map(|p| (p, new_histogram())).collect();
            }
            Some(first) => {
                if k != first.kind {
                    return Err(MergeError::Mode {
                        first: (first.file.clone(), first.kind.clone()),
                        other: (file.to_string(), k),
                    });
                }
                if !self.opts.allow_mixed {
                    check_identity(first, file, &r)?;
                }
            }
        }

        let start = r.started_at_unix_ms;
        let duration_s = r.duration_s;
        if !(duration_s >= 0.0 && duration_s.is_finite()) {
            return Err(f.bad("duration_s is not a non-negative number of seconds"));
        }
        // Same kind as the first report, so the same mode.
        self.counters = sum_counters(f, &r, &self.counters)?;
        for (phase, sum) in &mut self.hists {
            add_phase(f, *phase, r.phases.get(phase.name()), sum)?;
        }
        let phases: Vec<Phase> = self.hists.iter().map(|(p, _)| *p).collect();
        fold_stages(
            f,
            &r.stages,
            &phases,
            self.first.as_ref().map(|first| first.file.as_str()),
            self.opts.allow_mixed,
            &mut self.stages,
        )?;
        let workers = read_workers(f, &r.client.workers)?;
        for w in &workers {
            let add = |sum: u64, ns: u64| {
                sum.checked_add(ns).ok_or_else(|| {
                    f.bad(format!(
                        "client.workers: the workers' CPU times add up to more than {} s \
                         (584 years); {DAMAGED}",
                        u64::MAX / 1_000_000_000
                    ))
                })
            };
            self.cpu_ns = (
                add(self.cpu_ns.0, w.cpu_user_ns)?,
                add(self.cpu_ns.1, w.cpu_sys_ns)?,
            );
        }
        self.workers.extend(workers);
        if !self.tls.is_known() {
            self.tls = read_tls(r.tls.as_ref());
        }
        self.peak_rss = checked_sum(
            f,
            "client.peak_rss_bytes",
            r.client.peak_rss_bytes,
            self.peak_rss,
        )?;
        self.peak_open = checked_sum(
            f,
            "peak_open_connections",
            r.peak_open_connections,
            self.peak_open,
        )?;
        self.interrupted |= r.interrupted;
        // Reasons: `(other reasons)` stays a reason of its own (the inputs' kept reasons differ).
        // Reports written before `errors.reasons` existed have none.
        for (name, list) in &r.errors.reasons {
            let Some(class) = ErrorClass::ALL.iter().find(|e| e.name() == name) else {
                return Err(f.bad(format!(
                    "errors.reasons.{name} is an error class this connbench does not know"
                )));
            };
            for reason in list {
                self.reasons.add(*class, &reason.reason, reason.count);
            }
        }
        // Reports written before `worker_panics` existed have none.
        for p in &r.worker_panics {
            self.worker_panics.push(crate::metrics::run::WorkerPanic {
                worker: p.worker,
                message: format!("in {file}: {}", p.message),
                responses_lost: p.responses_lost,
            });
        }
        fold_load(f, &r, &mut self.load)?;

        let info = SourceInfo {
            file: file.to_string(),
            started_at_unix_ms: start,
            duration_s,
            responses: r.counters.responses,
        };
        self.source_docs.push(json!({
            "file": info.file,
            "started_at": json::rfc3339(start.div_euclid(1000)),
            "started_at_unix_ms": start,
            "duration_s": duration_s,
            "responses": info.responses,
            "url": r.target.url,
            "connections": r.config.connections,
            "threads": r.config.threads,
            "start_at": r.start_at,
            "start_skew_s": r.start_skew_s,
            "host": schema::to_value(&r.host),
        }));
        self.sources.push(info);
        if self.first.is_none() {
            // Everything but the histograms (the bulky parts): settings and strings the merged
            // report copies.
            r.phases.clear();
            r.stages.clear();
            let (mode, ws) = settings.expect("read with the first report");
            self.first = Some(First {
                file: file.to_string(),
                kind: k,
                mode,
                ws,
                report: r,
            });
        }
        Ok(())
    }

    /// Check the reports as a whole (their windows) and render the merged report;
    /// `command_line` is the merge process's own, recorded (redacted) as its `command_line`.
    pub fn finish(self, command_line: Vec<String>) -> Result<Merged, MergeError> {
        Ok(self.combine()?.render(command_line))
    }

    /// Everything the reports held, summed and checked as a whole (their windows), before
    /// anything is rendered: the reader's result. [`Combined::render`] makes the report.
    pub fn combine(self) -> Result<Combined, MergeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let first = self.first.ok_or(MergeError::NoInput)?;
        let window = windows(&self.sources);
        // Zero-length windows cannot overlap by a share of their length: they must at least lie
        // inside every other window.
        let enough = if window.shortest_s > 0.0 {
            window.overlap_s >= 0.5 * window.shortest_s
        } else {
            windows_touch(&self.sources)
        };
        if !self.opts.allow_disjoint && !enough {
            return Err(MergeError::Disjoint {
                overlap_s: window.overlap_s,
                shortest_s: window.shortest_s,
            });
        }

        Ok(Combined {
            counters: self.counters,
            hists: self.hists,
            sources: self.sources,
            window,
            first,
            load: self.load,
            reasons: self.reasons,
            tls: self.tls,
            workers: self.workers,
            interrupted: self.interrupted,
            peak_rss: self.peak_rss,
            peak_open: self.peak_open,
            worker_panics: self.worker_panics,
            source_docs: self.source_docs,
            stages: self.stages,
        })
    }
}

/// The merged measurements as read and checked ([`Merger::combine`]), not yet rendered.
#[derive(Debug)]
pub struct Combined {
    /// The summed counters.
    pub counters: Counters,
    /// The summed histogram of each phase the merged report shows.
    pub hists: Vec<(Phase, Histogram<u64>)>,
    /// The inputs, in command-line order.
    pub sources: Vec<SourceInfo>,
    /// The windows.
    pub window: WindowSummary,
    first: First,
    load: Load,
    reasons: crate::metrics::Reasons,
    tls: TlsFacts,
    workers: Vec<WorkerStats>,
    interrupted: bool,
    peak_rss: u64,
    peak_open: u64,
    worker_panics: Vec<crate::metrics::run::WorkerPanic>,
    source_docs: Vec<Value>,
    stages: Vec<StageSum>,
}

impl Combined {
    /// The merged report: its settings, its measurements and its JSON document.
    pub fn render(self, command_line: Vec<String>) -> Merged {
        let first = self.first;
        let window = self.window;
        let meta = merged_meta(&first, &self.load, command_line);
        let mut recorder = Recorder::new();
        for (phase, h) in &self.hists {
            replay(&mut recorder, *phase, h);
        }
        recorder.counters = self.counters;
        recorder.reasons = self.reasons;
        recorder.tls = self.tls;
        recorder.ts_unit = first
            .report
            .ws
            .as_ref()
            .and_then(|w| w.ts_unit.as_deref())
            .and_then(TsUnit::parse)
            .map(TsUnit::name);

        let run = RunResult {
            recorder,
            workers: self.workers,
            started_at: system_time(window.start_unix_ms),
            elapsed: Duration::try_from_secs_f64(window.union_s).unwrap_or(Duration::ZERO),
            interrupted: self.interrupted,
            peak_rss_bytes: self.peak_rss,
            peak_open: self.peak_open,
            intervals: Vec::new(),
            stages: Vec::new(),
            worker_panics: self.worker_panics,
            // One host's reading: each source's is in its own report.
            time_wait: None,
        };
        let mut json = merged_json(
            &schema::to_value(&first.report),
            &meta,
            &run,
            &self.sources,
            self.source_docs,
            &window,
        );
        // --start-at: the inputs' common instant (null when they differ or lack one), and the
        // worst skew any of them saw.
        let common = match self.load.start_ats.len() {
            1 => self.load.start_ats.iter().next().cloned().flatten(),
            _ => None,
        };
        json["start_at"] = json!(common);
        json["start_skew_s"] = json!(self.load.worst_skew);
        let stages: Vec<schema::Stage> = self.stages.iter().map(|st| st.render(&meta)).collect();
        json["stages"] = schema::to_value(&stages);
        Merged {
            meta,
            run,
            sources: self.sources,
            window,
            json,
            stages,
        }
    }
}

/// The reports must agree on the identity fields (rule 4) unless `--allow-mixed`.
fn check_identity(first: &First, file: &str, r: &schema::Report) -> Result<(), MergeError> {
    let a = &first.report;
    let arrival = |r: &schema::Report| r.rate.as_ref().map(|x| json!(x.arrival));
    let ws_mode = |r: &schema::Report| r.ws.as_ref().map(|x| json!(x.mode));
    let mut fields: Vec<(&str, Option<Value>, Option<Value>)> = vec![
        (
            "target.url",
            Some(json!(a.target.url)),
            Some(json!(r.target.url)),
        ),
        (
            "config.method",
            Some(json!(a.config.method)),
            Some(json!(r.config.method)),
        ),
        (
            "config.body_len",
            Some(json!(a.config.body_len)),
            Some(json!(r.config.body_len)),
        ),
        (
            "config.pipeline",
            Some(json!(a.config.pipeline)),
            Some(json!(r.config.pipeline)),
        ),
        (
            "config.tls",
            Some(json!(a.config.tls)),
            Some(json!(r.config.tls)),
        ),
        ("rate.arrival", arrival(a), arrival(r)),
        (
            "config.requests_per_conn",
            Some(json!(a.config.requests_per_conn)),
            Some(json!(r.config.requests_per_conn)),
        ),
    ];
    // `--close` only exists with a per-connection quota (older reports lack it: keep-alive).
    if a.config.requests_per_conn.is_some() || r.config.requests_per_conn.is_some() {
        fields.push((
            "config.close",
            Some(json!(a.config.close)),
            Some(json!(r.config.close)),
        ));
    }
    if a.mode == "ws" {
        fields.push(("ws.mode", ws_mode(a), ws_mode(r)));
    }
    for (field, want, got) in fields {
        if got != want {
            let show = |v: Option<Value>| v.map_or("(missing)".to_string(), |v| v.to_string());
            return Err(MergeError::Mixed {
                field: field.to_string(),
                first: (first.file.clone(), show(want)),
                other: (file.to_string(), show(got)),
            });
        }
    }
    Ok(())
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
    if !m.stages.is_empty() {
        let _ = writeln!(
            out,
            "\nstage  window  connections    opened  open at end    requests      req/s     errors   (summed over the reports)"
        );
        for st in &m.stages {
            let _ = writeln!(
                out,
                "{:<6} {:<6} {:>12} {:>9} {:>12} {:>11} {:>10.0} {:>10}",
                st.stage,
                st.window,
                format!("{}→{}", st.connections_from, st.connections_to),
                st.connections_opened,
                st.open_at_end,
                st.requests,
                st.responses_per_s,
                st.errors
            );
        }
    }
    out
}

/// The file being folded, to name it in errors.
#[derive(Clone, Copy)]
struct In<'a>(&'a str);

impl In<'_> {
    fn bad(self, problem: impl Into<String>) -> MergeError {
        MergeError::Input {
            file: self.0.to_string(),
            problem: problem.into(),
        }
    }
}

/// Read one report document into the declared schema. A missing field that the schema does
/// not default, or a present field of the wrong type, is refused on one line naming the field
/// by its path (`counters.responses`, `client.workers[0]`).
pub(crate) fn typed(file: &str, doc: &Value) -> Result<schema::Report, MergeError> {
    serde_path_to_error::deserialize::<_, schema::Report>(doc).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.inner().to_string();
        // The error classes are a flattened map, read as a whole: find the class at fault.
        if path == "errors" {
            if let Some((class, _)) = doc
                .pointer("/errors")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .find(|(k, v)| *k != "total" && *k != "reasons" && v.as_u64().is_none())
            {
                path = format!("errors.{class}");
            }
        }
        let problem = if path == "." || path.is_empty() {
            format!("not a connbench report: {inner}")
        } else if inner.starts_with("missing field") {
            format!("{path}: {inner}")
        } else {
            format!("{path} is not of the right type: {inner}")
        };
        In(file).bad(problem.replace('\n', " "))
    })
}

/// What decides a report's phases: its mode, and whether it ran at a constant rate (`-R` adds
/// the corrected and send-lag phases). Reports of different kinds cannot be merged.
fn kind(r: &schema::Report) -> String {
    let mut k = r.mode.clone();
    if r.rate.is_some() {
        k.push_str(" -R");
    }
    if r.conn_rate.is_some() {
        k.push_str(" --conn-rate");
    }
    k
}

/// `acc` plus the counters of one report (WebSocket counters only for `ws` reports): every
/// sum checked (rule 6), a missing counter or class counting as zero (rule 8).
fn sum_counters(f: In<'_>, r: &schema::Report, acc: &Counters) -> Result<Counters, MergeError> {
    let mut c = acc.clone();
    let add = |field: &str, n: u64, slot: &mut u64| -> Result<(), MergeError> {
        *slot = checked_sum(f, field, n, *slot)?;
        Ok(())
    };
    let rc = &r.counters;
    add("counters.requests", rc.requests, &mut c.requests)?;
    add("counters.responses", rc.responses, &mut c.responses)?;
    add("counters.bytes_in", rc.bytes_in, &mut c.bytes_in)?;
    add("counters.bytes_out", rc.bytes_out, &mut c.bytes_out)?;
    add(
        "counters.connections_opened",
        rc.connections_opened,
        &mut c.connections_opened,
    )?;
    add(
        "counters.connections_established",
        rc.connections_established,
        &mut c.connections_established,
    )?;
    add(
        "counters.reused_requests",
        rc.reused_requests,
        &mut c.reused_requests,
    )?;
    add(
        "counters.server_closes",
        rc.server_closes,
        &mut c.server_closes,
    )?;
    let of = |map: &std::collections::BTreeMap<String, u64>, key: &str| {
        map.get(key).copied().unwrap_or(0)
    };
    for s in StatusClass::ALL {
        add(
            &format!("responses.{}", s.name()),
            of(&r.responses, s.name()),
            &mut c.status[s.index()],
        )?;
    }
    // A class this build does not know would be dropped from the sums: refuse it.
    if let Some(key) = r
        .errors
        .classes
        .keys()
        .find(|k| !ErrorClass::ALL.iter().any(|e| e.name() == k.as_str()))
    {
        return Err(f.bad(format!(
            "errors.{key} is an error class this connbench does not know (the report comes \
             from a newer connbench: merge with that version)"
        )));
    }
    let mut own_errors: u128 = 0;
    for e in ErrorClass::ALL {
        let n = of(&r.errors.classes, e.name());
        own_errors += u128::from(n);
        add(&format!("errors.{}", e.name()), n, &mut c.errors[e.index()])?;
    }
    let total = r.errors.total;
    if u128::from(total) != own_errors {
        return Err(f.bad(format!(
            "errors.total says {total} but the error classes add up to {own_errors}; \
             {DAMAGED}"
        )));
    }
    if let Some(tls) = &r.tls {
        add(
            "tls.handshakes_full",
            tls.handshakes_full,
            &mut c.handshakes_full,
        )?;
        add(
            "tls.handshakes_resumed",
            tls.handshakes_resumed,
            &mut c.handshakes_resumed,
        )?;
    }
    if let Some(rate) = &r.rate {
        add("rate.unsent", rate.unsent, &mut c.unsent)?;
    }
    if let Some(cr) = &r.conn_rate {
        add("conn_rate.unopened", cr.unopened, &mut c.unopened)?;
    }
    if let (true, Some(rw)) = (r.mode == "ws", &r.ws) {
        let w = &mut c.ws;
        add("ws.messages_in", rw.messages_in, &mut w.messages_in)?;
        add("ws.messages_out", rw.messages_out, &mut w.messages_out)?;
        add(
            "ws.connections_upgraded",
            rw.connections_upgraded,
            &mut w.upgraded,
        )?;
        add(
            "ws.subscriptions_sent",
            rw.subscriptions_sent,
            &mut w.subscriptions_sent,
        )?;
        add("ws.resubscribed", rw.resubscribed, &mut w.resubscribed)?;
        for cause in ReconnectCause::ALL {
            add(
                &format!("ws.reconnects.{}", cause.name()),
                of(&rw.reconnects, cause.name()),
                &mut w.reconnects[cause.index()],
            )?;
        }
        add(
            "ws.retries_exhausted",
            rw.retries_exhausted,
            &mut w.retries_exhausted,
        )?;
        for (code, &n) in &rw.close_codes {
            let slot = match code.parse::<u16>() {
                Ok(c) if (CLOSE_CODE_FIRST..CLOSE_CODE_FIRST + CLOSE_CODES as u16).contains(&c) => {
                    &mut w.close_codes[usize::from(c - CLOSE_CODE_FIRST)]
                }
                _ if code == "other" => &mut w.close_codes_other,
                _ => return Err(f.bad(format!("ws.close_codes has an unknown key {code:?}"))),
            };
            add(&format!("ws.close_codes.{code}"), n, slot)?;
        }
        add(
            "ws.pings_answered",
            rw.pings_answered,
            &mut w.pings_answered,
        )?;
        add("ws.pings_sent", rw.pings_sent, &mut w.pings_sent)?;
        add(
            "ws.pongs_received",
            rw.pongs_received,
            &mut w.pongs_received,
        )?;
        add("ws.seq_gaps", rw.seq_gaps, &mut w.seq_gaps)?;
        add("ws.seq_missing", rw.seq_missing, &mut w.seq_missing)?;
        add("ws.seq_restarts", rw.seq_restarts, &mut w.seq_backwards)?;
        add("ws.ts_missing", rw.ts_missing, &mut w.ts_missing)?;
        add("ws.ts_future", rw.ts_future, &mut w.ts_future)?;
        add("ws.buffered_sent", rw.buffered_sent, &mut w.buffered_sent)?;
        add(
            "ws.buffer_dropped",
            rw.buffer_dropped,
            &mut w.buffer_dropped,
        )?;
    }
    // The totals the output shows must fit as well (rule 6).
    let fits = |xs: &[u64]| xs.iter().try_fold(0u64, |a, &n| a.checked_add(n)).is_some();
    if !fits(&c.errors) {
        return Err(f.bad(format!(
            "errors: the error classes of the reports so far add up to more than {}, so \
             errors.total cannot be written; {DAMAGED}",
            u64::MAX
        )));
    }
    if !fits(&c.ws.reconnects) {
        return Err(f.bad(format!(
            "ws.reconnects: the reconnects of the reports so far add up to more than {}; \
             {DAMAGED}",
            u64::MAX
        )));
    }
    Ok(c)
}

/// `acc` plus `n` (the report's `field`), or an error naming the field when the sum passes
/// `u64::MAX`.
fn checked_sum(f: In<'_>, field: &str, n: u64, acc: u64) -> Result<u64, MergeError> {
    acc.checked_add(n).ok_or_else(|| {
        f.bad(format!(
            "{field}: {n} here and {acc} in the reports before add up to more than {}; {DAMAGED}",
            u64::MAX
        ))
    })
}

/// Decode one report's histogram of `phase`, check it (rule 7) and add it to `sum`. A report
/// without the phase adds nothing (rule 8).
fn add_phase(
    f: In<'_>,
    phase: Phase,
    stats: Option<&schema::PhaseStats>,
    sum: &mut Histogram<u64>,
) -> Result<(), MergeError> {
    let name = phase.name();
    let Some(stats) = stats else {
        return Ok(());
    };
    let count = stats.count;
    let h = hdr::decode(&stats.hdr).map_err(|e| f.bad(format!("phases.{name}: {e}")))?;
    // The decoder sums the buckets saturating at u64::MAX, above the limit: a total that
    // saturated (more than u64::MAX samples) is refused here, never taken for exact.
    let held = h.len();
    if held > MAX_PHASE_SAMPLES {
        let held = if held == u64::MAX {
            format!("at least {held}")
        } else {
            held.to_string()
        };
        return Err(f.bad(format!(
            "phases.{name}: the histogram holds {held} samples, more than a phase can hold \
             ({MAX_PHASE_SAMPLES}, 2^53); {DAMAGED}"
        )));
    }
    if held != count {
        return Err(f.bad(format!(
            "phases.{name}: count says {count} but the histogram holds {held} samples (damaged report)"
        )));
    }
    let zeros = h.count_at(0);
    if count > 0 && zeros > 0 {
        return Err(f.bad(format!(
            "phases.{name}: the histogram holds {zeros} samples of 0 ns (connbench records at \
             least 1 ns); {DAMAGED}"
        )));
    }
    // Both are at most 2^53: the sum cannot overflow.
    if sum.len() + count > MAX_PHASE_SAMPLES {
        return Err(f.bad(format!(
            "phases.{name}: {count} samples here and {} in the reports before make more than \
             a phase can hold ({MAX_PHASE_SAMPLES}, 2^53); {DAMAGED}",
            sum.len()
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
fn read_workers(f: In<'_>, list: &[schema::Worker]) -> Result<Vec<WorkerStats>, MergeError> {
    let ns = |x: f64, key: &str, scale: f64| -> Result<u64, MergeError> {
        if !(x >= 0.0 && x.is_finite()) {
            return Err(f.bad(format!(
                "client.workers[].{key} is not a non-negative number"
            )));
        }
        let ns = (x * scale).round();
        // 2^64 ns is 584 years: refuse rather than let `as` saturate.
        if ns >= 18_446_744_073_709_551_616.0 {
            return Err(f.bad(format!(
                "client.workers[].{key} is {x}, more than 584 years; {DAMAGED}"
            )));
        }
        Ok(ns as u64)
    };
    list.iter()
        .map(|w| {
            Ok(WorkerStats {
                cpu: w.cpu.and_then(|c| usize::try_from(c).ok()),
                connections: usize::try_from(w.connections)
                    .map_err(|_| f.bad("client.workers[].connections is too large"))?,
                cpu_user_ns: ns(w.cpu_user_s, "cpu_user_s", 1e9)?,
                cpu_sys_ns: ns(w.cpu_sys_s, "cpu_sys_s", 1e9)?,
                max_stall_ns: ns(w.max_loop_stall_us, "max_loop_stall_us", 1e3)?,
            })
        })
        .collect()
}

/// The negotiated TLS facts of one report (all unknown for a plain run).
fn read_tls(tls: Option<&schema::Tls>) -> TlsFacts {
    TlsFacts {
        version: tls.and_then(|t| t.version.clone()),
        cipher_suite: tls.and_then(|t| t.cipher_suite.clone()),
        kx_group: tls.and_then(|t| t.kx_group.clone()),
        alpn: tls.and_then(|t| t.alpn.clone()),
    }
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

/// Fold one report's load into the summed and united settings (rule 4), every sum checked.
fn fold_load(f: In<'_>, r: &schema::Report, load: &mut Load) -> Result<(), MergeError> {
    let c = &r.config;
    load.connections = checked_sum(f, "config.connections", c.connections, load.connections)?;
    load.threads = checked_sum(f, "config.threads", c.threads, load.threads)?;
    load.requests = match (load.requests, c.requests) {
        (Some(acc), Some(n)) => Some(checked_sum(f, "config.requests", n, acc)?),
        _ => None,
    };
    if let Some(rate) = &r.rate {
        let arrival = Arrival::parse(&rate.arrival).ok_or_else(|| {
            f.bad(format!(
                "rate.arrival {:?} is not uniform or poisson; {DAMAGED}",
                rate.arrival
            ))
        })?;
        load.arrival.get_or_insert(arrival);
        let asked = rate.asked_per_s;
        if !(asked.is_finite() && asked >= 0.0) {
            return Err(f.bad("rate.asked_per_s is not a non-negative number"));
        }
        load.asked_per_s += asked;
        if !load.asked_per_s.is_finite() {
            return Err(f.bad(format!(
                "rate.asked_per_s: the rates asked add up to more than {:e}/s; {DAMAGED}",
                f64::MAX
            )));
        }
    }
    if let Some(cr) = &r.conn_rate {
        let asked = cr.asked_per_s;
        if !(asked.is_finite() && asked >= 0.0) {
            return Err(f.bad("conn_rate.asked_per_s is not a non-negative number"));
        }
        load.conn_asked_per_s += asked;
        if !load.conn_asked_per_s.is_finite() {
            return Err(f.bad(format!(
                "conn_rate.asked_per_s: the rates asked add up to more than {:e}/s; {DAMAGED}",
                f64::MAX
            )));
        }
    }
    load.worker_cpus.extend(c.worker_cpus.iter().copied());
    load.target_cpus.extend(c.target_cpus.iter().copied());
    load.addresses.extend(
        c.sources
            .iter()
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok()),
    );
    load.start_ats.insert(r.start_at.clone());
    if let Some(skew) = r.start_skew_s {
        if !skew.is_finite() {
            return Err(f.bad("start_skew_s is not a number of seconds"));
        }
        if load.worst_skew.is_none_or(|w| skew.abs() > w.abs()) {
            load.worst_skew = Some(skew);
        }
    }
    load.builtin |= r.target.builtin;
    // The caveat must survive the merge if any input carried it.
    load.insecure |= r.insecure;
    Ok(())
}

/// A report's `ws` settings read back into the plan's type; a value no connbench writes is
/// refused naming its field.
fn ws_session(f: In<'_>, w: &schema::Ws) -> Result<WsSession, MergeError> {
    let secs = |key: &str, x: f64| -> Result<Duration, MergeError> {
        Duration::try_from_secs_f64(x)
            .map_err(|_| f.bad(format!("ws.{key} is not a non-negative number of seconds")))
    };
    let opt_secs = |key: &str, x: Option<f64>| x.map(|x| secs(key, x)).transpose();
    let size = |key: &str, n: u64| {
        usize::try_from(n).map_err(|_| {
            f.bad(format!(
                "ws.{key} is {n}, more than this machine can address"
            ))
        })
    };
    let field =
        |key: &str, path: &str| FieldPath::parse(path).map_err(|e| f.bad(format!("ws.{key}: {e}")));
    let ts_unit = match (&w.ts_unit, w.ts_unit_inferred) {
        (Some(u), false) => Some(TsUnit::parse(u).ok_or_else(|| {
            f.bad(format!(
                "ws.ts_unit {u:?} is not s, ms, us or ns; {DAMAGED}"
            ))
        })?),
        _ => None,
    };
    let max_retries = w
        .max_retries
        .map(|n| {
            u32::try_from(n).map_err(|_| {
                f.bad(format!(
                    "ws.max_retries is {n}, more than 2^32 - 1; {DAMAGED}"
                ))
            })
        })
        .transpose()?;
    let reconnect_budget = match &w.reconnect_budget {
        None => None,
        Some(b) => Some((
            u32::try_from(b.count).map_err(|_| {
                f.bad(format!(
                    "ws.reconnect_budget.count is {}, more than 2^32 - 1; {DAMAGED}",
                    b.count
                ))
            })?,
            secs("reconnect_budget.period_s", b.period_s)?,
        )),
    };
    if !(w.send_rate >= 0.0 && w.send_rate.is_finite()) {
        return Err(f.bad("ws.send_rate is not a non-negative number of messages per second"));
    }
    Ok(WsSession {
        subscriptions: w.subscriptions.clone(),
        mode: WsMode::parse(&w.mode).ok_or_else(|| {
            f.bad(format!(
                "ws.mode {:?} is not stream, echo or ping; {DAMAGED}",
                w.mode
            ))
        })?,
        send_rate: w.send_rate,
        message_size: size("message_size", w.message_size)?,
        ping_interval: secs("ping_interval_s", w.ping_interval_s)?,
        ts_field: w
            .ts_field
            .as_deref()
            .map(|p| field("ts_field", p))
            .transpose()?,
        ts_unit,
        seq_field: w
            .seq_field
            .as_deref()
            .map(|p| field("seq_field", p))
            .transpose()?,
        stream_field: field("stream_field", &w.stream_field)?,
        utf8_check: w.utf8_check,
        max_message: size("max_message", w.max_message)?,
        backoff: BackoffPolicy {
            jitter: Jitter::parse(&w.backoff).ok_or_else(|| {
                f.bad(format!(
                    "ws.backoff {:?} is not full or decorrelated; {DAMAGED}",
                    w.backoff
                ))
            })?,
            base: secs("backoff_base_s", w.backoff_base_s)?,
            cap: secs("backoff_cap_s", w.backoff_cap_s)?,
            max_retries,
        },
        reconnect_budget,
        stale_after: opt_secs("stale_after_s", w.stale_after_s)?,
        heartbeat: Heartbeat::parse(&w.heartbeat).ok_or_else(|| {
            f.bad(format!(
                "ws.heartbeat {:?} is not off, ping or text:MESSAGE; {DAMAGED}",
                w.heartbeat
            ))
        })?,
        heartbeat_interval: secs("heartbeat_interval_s", w.heartbeat_interval_s)?,
        pong_timeout: opt_secs("pong_timeout_s", w.pong_timeout_s)?,
        send_buffer: size("send_buffer", w.send_buffer)?,
    })
}

/// Rule 9: fold one report's stage windows into `sums`, window by window. The reports must
/// have the same windows (stage, ramp or hold, start and length); with `--allow-mixed`,
/// reports whose windows differ leave the merge without stages rather than misaligned ones.
fn fold_stages(
    f: In<'_>,
    stages: &[schema::Stage],
    phases: &[Phase],
    first: Option<&str>,
    allow_mixed: bool,
    sums: &mut Vec<StageSum>,
) -> Result<(), MergeError> {
    let key = |s: &schema::Stage| {
        format!(
            "{} {} at {:.3} s for {:.3} s",
            s.stage, s.window, s.start_s, s.duration_s
        )
    };
    let show = |list: Vec<String>| {
        if list.is_empty() {
            "(no stages)".to_string()
        } else {
            list.join(", ")
        }
    };
    match first {
        None => {
            *sums = stages
                .iter()
                .map(|s| StageSum {
                    stage: s.stage,
                    window: s.window.clone(),
                    start_s: s.start_s,
                    duration_s: s.duration_s,
                    connections_from: 0,
                    connections_to: 0,
                    open_at_end: 0,
                    counters: Counters::default(),
                    errors: 0,
                    hists: phases.iter().map(|p| (*p, new_histogram())).collect(),
                    asked_per_s: None,
                    ws: None,
                })
                .collect();
        }
        Some(first) => {
            let same = sums.len() == stages.len()
                && sums.iter().zip(stages).all(|(a, b)| {
                    a.stage == b.stage
                        && a.window == b.window
                        && a.start_s == b.start_s
                        && a.duration_s == b.duration_s
                });
            if !same {
                if allow_mixed {
                    sums.clear();
                    return Ok(());
                }
                let have: Vec<String> = sums
                    .iter()
                    .map(|a| {
                        format!(
                            "{} {} at {:.3} s for {:.3} s",
                            a.stage, a.window, a.start_s, a.duration_s
                        )
                    })
                    .collect();
                return Err(MergeError::Mixed {
                    field: "stages".into(),
                    first: (first.to_string(), show(have)),
                    other: (f.0.to_string(), show(stages.iter().map(key).collect())),
                });
            }
        }
    }
    for (i, (sum, s)) in sums.iter_mut().zip(stages).enumerate() {
        let field = |name: &str| format!("stages[{i}].{name}");
        let add = |name: &str, n: u64, acc: &mut u64| -> Result<(), MergeError> {
            *acc = checked_sum(f, &field(name), n, *acc)?;
            Ok(())
        };
        add(
            "connections_from",
            s.connections_from,
            &mut sum.connections_from,
        )?;
        add("connections_to", s.connections_to, &mut sum.connections_to)?;
        add("open_at_end", s.open_at_end, &mut sum.open_at_end)?;
        add(
            "connections_opened",
            s.connections_opened,
            &mut sum.counters.connections_opened,
        )?;
        add("requests", s.requests, &mut sum.counters.requests)?;
        add("responses", s.responses, &mut sum.counters.responses)?;
        add("errors", s.errors, &mut sum.errors)?;
        for (name, n) in &s.responses_by_class {
            let Some(k) = StatusClass::ALL.iter().find(|k| k.name() == name) else {
                return Err(f.bad(format!(
                    "{} is a status class this connbench does not know",
                    field(&format!("responses_by_class.{name}"))
                )));
            };
            add(
                "responses_by_class",
                *n,
                &mut sum.counters.status[k.index()],
            )?;
        }
        for (name, n) in &s.errors_by_class {
            let Some(e) = ErrorClass::ALL.iter().find(|e| e.name() == name) else {
                return Err(f.bad(format!(
                    "{} is an error class this connbench does not know",
                    field(&format!("errors_by_class.{name}"))
                )));
            };
            add("errors_by_class", *n, &mut sum.counters.errors[e.index()])?;
        }
        if let Some(r) = s.asked_per_s {
            if !(r.is_finite() && r >= 0.0) {
                return Err(f.bad(format!("{} is not a rate", field("asked_per_s"))));
            }
            sum.asked_per_s = Some(sum.asked_per_s.unwrap_or(0.0) + r);
        }
        if let Some(w) = &s.ws {
            let acc = sum.ws.get_or_insert_with(|| schema::StageWs {
                connections_attempted: 0,
                connections_upgraded: 0,
                connections_failed: 0,
                messages_in: 0,
                messages_in_per_s: 0.0,
                reconnects: Default::default(),
                reconnects_total: 0,
            });
            add(
                "ws.connections_attempted",
                w.connections_attempted,
                &mut acc.connections_attempted,
            )?;
            add(
                "ws.connections_upgraded",
                w.connections_upgraded,
                &mut acc.connections_upgraded,
            )?;
            add(
                "ws.connections_failed",
                w.connections_failed,
                &mut acc.connections_failed,
            )?;
            add("ws.messages_in", w.messages_in, &mut acc.messages_in)?;
            add(
                "ws.reconnects_total",
                w.reconnects_total,
                &mut acc.reconnects_total,
            )?;
            for (cause, n) in &w.reconnects {
                let slot = acc.reconnects.entry(cause.clone()).or_insert(0);
                add("ws.reconnects", *n, slot)?;
            }
        }
        // The schema keeps the window's reuse rate, not its count: the count is the rate
        // times the requests, exact for any count below 2^52 (a rate is a ratio of integers).
        if !(0.0..=1.0).contains(&s.reuse_rate) {
            return Err(f.bad(format!(
                "{} is {}, not a rate between 0 and 1; {DAMAGED}",
                field("reuse_rate"),
                s.reuse_rate
            )));
        }
        let reused = (s.reuse_rate * s.requests as f64).round() as u64;
        add("reuse_rate", reused, &mut sum.counters.reused_requests)?;
        for (phase, h) in &mut sum.hists {
            add_phase(f, *phase, s.phases.get(phase.name()), h).map_err(|e| match e {
                MergeError::Input { file, problem } => MergeError::Input {
                    file,
                    problem: format!("stages[{i}].{problem}"),
                },
                other => other,
            })?;
        }
    }
    Ok(())
}

impl StageSum {
    /// The merged window as the report writes it: the sums, rates over the window's length,
    /// percentiles from the summed histograms.
    fn render(&self, meta: &RunMeta) -> schema::Stage {
        let mut rec = Recorder::new();
        for (phase, h) in &self.hists {
            replay(&mut rec, *phase, h);
        }
        let c = &self.counters;
        schema::Stage {
            stage: self.stage,
            window: self.window.clone(),
            start_s: self.start_s,
            duration_s: self.duration_s,
            connections_from: self.connections_from,
            connections_to: self.connections_to,
            open_at_end: self.open_at_end,
            connections_opened: c.connections_opened,
            requests: c.requests,
            responses: c.responses,
            responses_per_s: if self.duration_s > 0.0 {
                c.responses as f64 / self.duration_s
            } else {
                0.0
            },
            reuse_rate: c.reuse_rate(),
            errors: self.errors,
            responses_by_class: StatusClass::ALL
                .iter()
                .map(|k| (k.name().to_string(), c.status[k.index()]))
                .collect(),
            errors_by_class: ErrorClass::ALL
                .iter()
                .map(|e| (e.name().to_string(), c.errors[e.index()]))
                .collect(),
            error_rate: match &self.ws {
                Some(w) if w.connections_attempted > 0 => {
                    self.errors as f64 / w.connections_attempted as f64
                }
                Some(_) => 0.0,
                None => c.error_rate(),
            },
            requests_per_s: if self.duration_s > 0.0 {
                c.requests as f64 / self.duration_s
            } else {
                0.0
            },
            asked_per_s: self.asked_per_s,
            ws: self.ws.clone().map(|mut w| {
                w.messages_in_per_s = if self.duration_s > 0.0 {
                    w.messages_in as f64 / self.duration_s
                } else {
                    0.0
                };
                w
            }),
            phases: json::phases(&meta.phases(), &rec, &meta.percentiles),
        }
    }
}

/// The merged configuration: the first report's, with the load summed and CPU lists united.
/// Strings come from reports, so they are already redacted; the reports redact them again,
/// which leaves redacted text as it is.
fn merged_meta(first: &First, load: &Load, command_line: Vec<String>) -> RunMeta {
    let r = &first.report;
    let c = &r.config;
    let secs = |x: f64| Duration::try_from_secs_f64(x).ok();
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let cpus = |set: &BTreeSet<u64>| -> Vec<usize> {
        set.iter()
            .filter_map(|&c| usize::try_from(c).ok())
            .collect()
    };
    let headers = c
        .headers
        .iter()
        .map(|h| match h.split_once(':') {
            Some((n, v)) => (n.trim().to_string(), v.trim().to_string()),
            None => (h.to_string(), String::new()),
        })
        .collect();
    RunMeta {
        mode: first.mode,
        url: r.target.url.clone(),
        builtin_target: load.builtin,
        command_line,
        method: c.method.clone(),
        headers,
        body_len: usize::try_from(c.body_len).unwrap_or(0),
        connections: size(load.connections),
        threads: size(load.threads),
        worker_cpus: cpus(&load.worker_cpus),
        target_cpus: cpus(&load.target_cpus),
        pipeline: usize::try_from(c.pipeline).unwrap_or(1),
        duration: c.duration_s.and_then(secs),
        requests: load.requests,
        warmup: secs(c.warmup_s).unwrap_or_default(),
        timeout: secs(c.timeout_s).unwrap_or_default(),
        connect_timeout: secs(c.connect_timeout_s).unwrap_or_default(),
        tls: c.tls.then(|| TlsPlan {
            ca_file: c.ca_file.as_ref().map(PathBuf::from),
            extra_ca_pem: None,
            insecure: load.insecure,
            sni: c.sni.clone(),
            resume: c.resume,
        }),
        fd_limit: c.fd_limit,
        ws: first.ws.clone(),
        // The asked rates add up like the loads; the arrival process must agree (checked
        // with the identity fields).
        rate: load.arrival.map(|arrival| (load.asked_per_s, arrival)),
        // Every process's source addresses, once each.
        sources: load.addresses.iter().copied().collect(),
        requests_per_conn: c.requests_per_conn,
        conn_rate: r.conn_rate.as_ref().map(|_| load.conn_asked_per_s),
        close: c.close.as_deref().and_then(crate::plan::CloseMode::parse),
        // The first report's, as its other settings.
        busy_poll: c.busy_poll.then(|| crate::plan::BusyPoll {
            so_busy_poll: match (c.so_busy_poll_us, &c.so_busy_poll_error) {
                (Some(us), _) => Ok(u32::try_from(us).unwrap_or(u32::MAX)),
                (None, why) => Err(why.clone().unwrap_or_default()),
            },
        }),
        // The first report's columns (the default for reports written before the flag).
        percentiles: Percentiles::from_values(&c.percentiles).unwrap_or_default(),
        // Thresholds belong to a run; a merge checks none.
        checks: Default::default(),
        // The inputs' common --start-at is copied into the document (`merged_json`).
        start_at: None,
    }
}

/// The merged document: [`json::render`] of the merged run, then the first report's verbatim
/// strings and settings (no double redaction, no lossy round trip), plus the merge fields.
fn merged_json(
    first: &Value,
    meta: &RunMeta,
    run: &RunResult,
    sources: &[SourceInfo],
    source_docs: Vec<Value>,
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
            time_wait: None,
        };
        let meta = RunMeta {
            connections: 2,
            requests: Some(n),
            ..RunMeta::new(Mode::Http, "http://127.0.0.1:8080/")
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

    /// The settings keys of a report's `ws` object (the counters next to them are summed).
    const WS_SETTINGS: [&str; 23] = [
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
        "pong_timeout_s",
        "backoff",
        "backoff_base_s",
        "backoff_cap_s",
        "max_retries",
        "reconnect_budget",
        "send_buffer",
        "utf8_check",
        "max_message",
    ];

    /// A ws echo report written by commit 26c9108, with every optional setting made non-default.
    fn ws_report_with_every_setting() -> Value {
        let mut doc: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/old-26c9108-ws-echo.json"
        ))
        .expect("fixture");
        let ws = doc["ws"].as_object_mut().expect("ws");
        for (k, v) in [
            (
                "subscriptions",
                json!(["{\"op\":\"subscribe\",\"args\":[\"trades\"]}"]),
            ),
            ("ts_field", json!("data.ts")),
            ("ts_unit", json!("ms")),
            ("ts_unit_inferred", json!(false)),
            ("seq_field", json!("data.seq")),
            ("stream_field", json!("topic")),
            ("stale_after_s", json!(30.0)),
            ("heartbeat", json!("text:{\"op\":\"ping\"}")),
            ("heartbeat_interval_s", json!(15.0)),
            ("pong_timeout_s", json!(null)),
            ("backoff", json!("decorrelated")),
            ("backoff_base_s", json!(0.25)),
            ("backoff_cap_s", json!(30.0)),
            ("max_retries", json!(7)),
            ("reconnect_budget", json!({"count": 10, "period_s": 60.0})),
            ("send_buffer", json!(5)),
            ("utf8_check", json!(false)),
        ] {
            ws.insert(k.to_string(), v);
        }
        doc
    }

    #[test]
    fn merged_ws_settings_are_read_into_the_plan_type_and_rendered_back_unchanged() {
        let stream: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/old-26c9108-ws-stream.json"
        ))
        .expect("fixture");
        for doc in [ws_report_with_every_setting(), stream] {
            let m = merge(
                &named(vec![doc.clone(), doc.clone()]),
                &MergeOptions::default(),
                vec![],
            )
            .expect("merges");
            let session = m.meta.ws.as_ref().expect("a ws merge has its session");
            assert_eq!(session.mode.name(), doc["ws"]["mode"]);
            for key in WS_SETTINGS {
                let want = doc["ws"].get(key).cloned().unwrap_or(Value::Null);
                assert_eq!(m.json["ws"][key], want, "ws.{key}");
            }
        }
        let m = merge(
            &named(vec![ws_report_with_every_setting(); 2]),
            &MergeOptions::default(),
            vec![],
        )
        .expect("merges");
        let s = m.meta.ws.expect("session");
        assert_eq!(s.heartbeat, Heartbeat::Text(r#"{"op":"ping"}"#.into()));
        assert_eq!(s.backoff.jitter, Jitter::Decorrelated);
        assert_eq!(s.backoff.max_retries, Some(7));
        assert_eq!(s.reconnect_budget, Some((10, Duration::from_secs(60))));
        assert_eq!(s.ts_unit, Some(TsUnit::Millis));
        assert_eq!(s.stream_field.to_string(), "topic");
        // Echo: the summed connections times each one's rate.
        assert_eq!(m.meta.rate, Some((400.0, Arrival::Uniform)));
    }

    #[test]
    fn a_ws_setting_no_connbench_writes_is_refused_naming_its_field() {
        for (key, bad) in [
            ("mode", json!("chat")),
            ("heartbeat", json!("sometimes")),
            ("backoff", json!("linear")),
            ("ts_unit", json!("fortnights")),
            ("ts_field", json!("a..b")),
            ("stream_field", json!("")),
            ("backoff_base_s", json!(-1.0)),
            ("max_retries", json!(1u64 << 40)),
        ] {
            let mut doc = ws_report_with_every_setting();
            doc["ws"][key] = bad.clone();
            let e = merge(
                &named(vec![doc.clone(), doc]),
                &MergeOptions::default(),
                vec![],
            )
            .expect_err(key);
            assert!(
                e.to_string().contains(&format!("ws.{key}")),
                "{key}={bad}: {e}"
            );
        }
        let mut doc = ws_report_with_every_setting();
        doc["rate"]["arrival"] = json!("bursty");
        let e = merge(
            &named(vec![doc.clone(), doc]),
            &MergeOptions::default(),
            vec![],
        )
        .expect_err("arrival");
        assert!(e.to_string().contains("rate.arrival"), "{e}");
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
                Box::new(|v| v["counters"]["responses"] = json!("many")),
                "counters.responses is not",
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
                time_wait: None,
            };
            let meta = RunMeta {
                rate: Some((asked, Arrival::Poisson)),
                ..RunMeta::new(Mode::Http, "http://127.0.0.1:8080/")
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
    fn connection_rate_reports_sum_their_rates_and_keep_their_settings() {
        let t0 = 1_700_000_000_000;
        let opened = |asked: f64, per_conn: u64| {
            let mut r = Recorder::new();
            for i in 0..100u64 {
                r.record(Phase::Connect, 40_000 + i);
                r.record(Phase::OpenLag, 2_000 + i);
                r.record(Phase::Total, 50_000 + i);
                r.response(200);
            }
            r.counters.requests = 100;
            r.counters.connections_opened = 100;
            r.counters.unopened = 2;
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
                time_wait: Some(crate::metrics::run::TimeWait {
                    at_start: 0,
                    at_end: 100,
                }),
            };
            let meta = RunMeta {
                requests_per_conn: Some(per_conn),
                conn_rate: Some(asked),
                close: Some(crate::plan::CloseMode::Rst),
                ..RunMeta::new(Mode::Http, "http://127.0.0.1:8080/")
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
            &named(vec![opened(100.0, 1), opened(150.0, 1)]),
            &MergeOptions::default(),
            vec![],
        )
        .expect("merges");
        assert_eq!(m.json["conn_rate"]["asked_per_s"], 250.0);
        assert_eq!(m.json["conn_rate"]["unopened"], 4);
        assert_eq!(m.json["conn_rate"]["opened_per_s"], 200.0);
        assert_eq!(m.json["phases"]["open_lag"]["count"], 200);
        assert_eq!(m.json["config"]["requests_per_conn"], 1);
        assert_eq!(m.json["config"]["close"], "rst");
        assert_eq!(m.json["time_wait"], Value::Null, "one host's reading");
        // A keep-alive report has other phases: never merged with a connection-rate one.
        let plain = report(t0, 1.0, 10, 5_000);
        let opts = MergeOptions {
            allow_mixed: true,
            allow_disjoint: true,
        };
        let e = merge(&named(vec![opened(100.0, 1), plain]), &opts, vec![]).expect_err("kinds");
        assert!(e.to_string().contains("http --conn-rate report"), "{e}");
        // Other requests per connection, or another close, is a mixed merge.
        let e = merge(
            &named(vec![opened(100.0, 1), opened(100.0, 5)]),
            &MergeOptions::default(),
            vec![],
        )
        .expect_err("requests per connection");
        assert!(e.to_string().contains("config.requests_per_conn"), "{e}");
        let mut fin = opened(100.0, 1);
        fin["config"]["close"] = json!("fin");
        let e = merge(
            &named(vec![opened(100.0, 1), fin]),
            &MergeOptions::default(),
            vec![],
        )
        .expect_err("close");
        assert!(e.to_string().contains("config.close"), "{e}");
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
            time_wait: None,
        };
        let meta = RunMeta {
            ws: Some(WsSession {
                send_buffer: 77,
                ..WsSession::example(WsMode::Stream)
            }),
            ..RunMeta::new(Mode::Ws, "ws://127.0.0.1:1/ws")
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

    /// Two reports, `good.json` and `bad.json` (a copy of the first, changed by `damage`).
    fn good_and_bad(damage: impl FnOnce(&mut Value)) -> Vec<(String, Value)> {
        let good = report(1_700_000_000_000, 1.0, 10, 5_000);
        let mut bad = good.clone();
        damage(&mut bad);
        vec![
            ("good.json".to_string(), good),
            ("bad.json".to_string(), bad),
        ]
    }

    /// Replace a phase's histogram with `h`, its count with `count`.
    fn set_phase(doc: &mut Value, phase: &str, h: &Histogram<u64>, count: u64) {
        doc["phases"][phase]["hdr"] = json!(hdr::try_encode(h).expect("counts fit i64"));
        doc["phases"][phase]["count"] = json!(count);
    }

    /// The error is one line that starts with the file and names the field.
    fn assert_refused(r: Result<Merged, MergeError>, file: &str, needle: &str) {
        let msg = match r {
            Ok(m) => panic!(
                "merged instead of refusing ({file}, {needle}): p50 {} mean {} max {} requests {} errors {}",
                m.json["phases"]["total"]["p50"],
                m.json["phases"]["total"]["mean"],
                m.json["phases"]["total"]["max"],
                m.json["counters"]["requests"],
                m.json["errors"]["total"],
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.starts_with(&format!("{file}: ")) && msg.contains(needle),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    const I64_MAX: u64 = i64::MAX as u64;

    #[test]
    fn merge_refuses_histogram_counts_that_overflow() {
        // One report whose own histogram holds more than u64::MAX samples: the decoder's total
        // saturates at u64::MAX, which a count field of u64::MAX then "confirms".
        let docs = good_and_bad(|d| {
            let mut h = new_histogram();
            h.record_n(50_000, I64_MAX).expect("in range");
            h.record_n(60_000, I64_MAX).expect("in range");
            h.record_n(70_000, 5).expect("in range");
            assert_eq!(h.len(), u64::MAX, "the crate saturates the total");
            set_phase(d, "total", &h, u64::MAX);
        });
        assert_refused(
            merge(&docs, &MergeOptions::default(), vec![]),
            "bad.json",
            "phases.total",
        );
        // Three reports of i64::MAX samples each: each fits in a u64, their sum does not.
        let mut h = new_histogram();
        h.record_n(50_000, I64_MAX).expect("in range");
        let docs: Vec<(String, Value)> = (0..3)
            .map(|i| {
                let mut d = report(1_700_000_000_000, 1.0, 10, 5_000);
                set_phase(&mut d, "total", &h, I64_MAX);
                (format!("r{i}.json"), d)
            })
            .collect();
        let e = merge(&docs, &MergeOptions::default(), vec![]).expect_err("overflow");
        assert!(e.to_string().contains("phases.total"), "{e}");
        // Sums past 2^53 samples are refused too: the percentile and mean arithmetic is f64.
        let mut half = new_histogram();
        half.record_n(50_000, (1 << 52) + 1).expect("in range");
        let docs: Vec<(String, Value)> = (0..2)
            .map(|i| {
                let mut d = report(1_700_000_000_000, 1.0, 10, 5_000);
                set_phase(&mut d, "total", &half, (1 << 52) + 1);
                (format!("r{i}.json"), d)
            })
            .collect();
        assert_refused(
            merge(&docs, &MergeOptions::default(), vec![]),
            "r1.json",
            "phases.total",
        );
    }

    #[test]
    fn merged_percentiles_are_never_zero_for_a_nonempty_histogram() {
        // connbench records at least 1 ns; a blob with 0 ns samples would merge into p50 = 0.
        let docs = good_and_bad(|d| {
            let mut h = new_histogram();
            h.record_n(0, 1_000).expect("in range");
            h.record(70_000).expect("in range");
            set_phase(d, "total", &h, 1_001);
        });
        assert_refused(
            merge(&docs, &MergeOptions::default(), vec![]),
            "bad.json",
            "0 ns",
        );
        // Large but legal counts (2^53 samples in all) merge with exact, non-zero percentiles
        // and a mean inside [min, max].
        let mut h = new_histogram();
        h.record_n(40_000, 1 << 51).expect("in range");
        h.record_n(90_000, 1 << 51).expect("in range");
        let docs: Vec<(String, Value)> = (0..2)
            .map(|i| {
                let mut d = report(1_700_000_000_000, 1.0, 10, 5_000);
                set_phase(&mut d, "total", &h, 1 << 52);
                (format!("r{i}.json"), d)
            })
            .collect();
        let m = merge(&docs, &MergeOptions::default(), vec![]).expect("legal counts");
        let t = &m.json["phases"]["total"];
        assert_eq!(t["count"], 1u64 << 53);
        assert_eq!(t["p50"], h.highest_equivalent(40_000));
        assert_eq!(t["p90"], h.highest_equivalent(90_000));
        assert_eq!(t["max"], h.highest_equivalent(90_000));
        let mean = t["mean"].as_f64().expect("mean");
        assert!(mean <= t["max"].as_f64().expect("max"), "{t}");
        assert!(mean >= t["min"].as_f64().expect("min"), "{t}");
    }

    #[test]
    fn merge_refuses_counters_whose_sum_overflows() {
        let half = 1u64 << 63;
        type Damage = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Damage, &str)> = vec![
            (
                Box::new(move |d| d["counters"]["requests"] = json!(half)),
                "counters.requests",
            ),
            (
                Box::new(move |d| d["responses"]["2xx"] = json!(half)),
                "responses.2xx",
            ),
            (
                Box::new(move |d| {
                    d["errors"]["io"] = json!(half);
                    d["errors"]["total"] = json!(half + 1); // plus the one read_timeout
                }),
                "errors.io",
            ),
            (
                Box::new(move |d| d["client"]["peak_rss_bytes"] = json!(half)),
                "client.peak_rss_bytes",
            ),
            (
                Box::new(move |d| d["config"]["connections"] = json!(half)),
                "config.connections",
            ),
            (
                Box::new(move |d| d["config"]["requests"] = json!(half)),
                "config.requests",
            ),
            // 1e10 s of CPU is 1e19 ns: two of them pass u64::MAX ns.
            (
                Box::new(|d| d["client"]["workers"][0]["cpu_user_s"] = json!(1e10)),
                "client.workers",
            ),
        ];
        for (damage, field) in cases {
            let good = report(1_700_000_000_000, 1.0, 10, 5_000);
            let mut a = good.clone();
            damage(&mut a);
            let docs = vec![("a.json".to_string(), a.clone()), ("b.json".to_string(), a)];
            assert_refused(
                merge(&docs, &MergeOptions::default(), vec![]),
                "b.json",
                field,
            );
        }
        // Within one report: error classes whose total passes u64::MAX (today: errors.total 0).
        let docs = good_and_bad(|d| {
            d["errors"]["io"] = json!(half);
            d["errors"]["protocol"] = json!(half);
        });
        assert_refused(
            merge(&docs, &MergeOptions::default(), vec![]),
            "bad.json",
            "errors",
        );
    }

    #[test]
    fn merge_defaults_what_older_reports_lack_to_zero() {
        let t0 = 1_700_000_000_000;
        let new = report(t0, 1.0, 10, 5_000);
        let mut old = new.clone();
        // Written before these existed: an error class, a counter, a phase, a top-level count.
        for (ptr, key) in [
            ("/errors", "stale"),
            ("/counters", "server_closes"),
            ("/phases", "tls"),
            ("", "peak_open_connections"),
        ] {
            let obj = old.pointer_mut(ptr).and_then(Value::as_object_mut);
            assert!(obj.and_then(|m| m.remove(key)).is_some(), "{ptr}/{key}");
        }
        let m = merge(
            &named(vec![new.clone(), old]),
            &MergeOptions::default(),
            vec![],
        )
        .expect("an older report merges");
        assert_eq!(m.json["errors"]["stale"], 0);
        assert_eq!(m.json["errors"]["total"], 2);
        assert_eq!(m.json["counters"]["responses"], 20);
        assert_eq!(m.json["phases"]["tls"]["count"], 0);
        assert_eq!(m.json["phases"]["total"]["count"], 20);
        assert_eq!(
            m.json["peak_open_connections"],
            new["peak_open_connections"]
        );
        // A field that is there must still have the right type.
        let mut bad = new.clone();
        bad["errors"]["stale"] = json!("none");
        let e = merge(&named(vec![new, bad]), &MergeOptions::default(), vec![]).expect_err("typed");
        assert!(e.to_string().contains("errors.stale is not"), "{e}");
    }

    #[test]
    fn merge_refuses_error_classes_it_does_not_know_and_totals_that_disagree() {
        // A class from a newer connbench would be dropped from the sums and from errors.total.
        let docs = good_and_bad(|d| {
            d["errors"]["from_the_future"] = json!(5);
            d["errors"]["total"] = json!(6);
        });
        assert_refused(
            merge(&docs, &MergeOptions::default(), vec![]),
            "bad.json",
            "errors.from_the_future",
        );
        // errors.total must be the sum of the classes (here it lost one).
        let docs = good_and_bad(|d| d["errors"]["total"] = json!(0));
        assert_refused(
            merge(&docs, &MergeOptions::default(), vec![]),
            "bad.json",
            "errors.total says 0",
        );
    }

    #[test]
    fn merge_reads_each_report_after_dropping_the_previous() {
        use std::cell::Cell;
        use std::rc::Rc;

        /// A report's bytes that count how many readers are alive.
        struct Tracked {
            bytes: std::io::Cursor<Vec<u8>>,
            live: Rc<Cell<usize>>,
        }
        impl Read for Tracked {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.bytes.read(buf)
            }
        }
        impl Drop for Tracked {
            fn drop(&mut self) {
                self.live.set(self.live.get() - 1);
            }
        }

        let text = report(1_700_000_000_000, 1.0, 10, 5_000).to_string();
        let live = Rc::new(Cell::new(0usize));
        let most = Rc::new(Cell::new(0usize));
        let inputs = (0..5).map(|i| {
            live.set(live.get() + 1);
            most.set(most.get().max(live.get()));
            let r = Tracked {
                bytes: std::io::Cursor::new(text.clone().into_bytes()),
                live: Rc::clone(&live),
            };
            (format!("r{i}.json"), r)
        });
        let m = merge_reports(inputs, &MergeOptions::default(), vec![]).expect("merges");
        assert_eq!(most.get(), 1, "one report in memory at a time");
        assert_eq!(live.get(), 0);
        assert_eq!(m.json["counters"]["responses"], 50);
        assert_eq!(m.sources.len(), 5);
        // A reader that fails or holds no report names its input.
        let inputs = vec![
            ("ok.json".to_string(), text.as_bytes()),
            ("cut.json".to_string(), &text.as_bytes()[..text.len() / 2]),
        ];
        assert_refused(
            merge_reports(inputs, &MergeOptions::default(), vec![]),
            "cut.json",
            "not valid JSON",
        );
    }

    #[test]
    fn merged_mean_is_never_above_max_by_float_rounding() {
        // Found by fuzz/fuzz_targets/report_reader.rs: 31,885,857,534,754 samples at 819 ns
        // (legal: below 2^53) gave mean 819.0000000000001 > max 819, as the mean of
        // v × count / count rounds in f64.
        let docs = good_and_bad(|d| {
            let mut h = new_histogram();
            h.record_n(819, 31_885_857_534_754).expect("in range");
            set_phase(d, "tls", &h, h.len());
        });
        let m = merge(&docs, &MergeOptions::default(), vec![]).expect("legal counts");
        let tls = &m.json["phases"]["tls"];
        let (mean, max) = (tls["mean"].as_f64(), tls["max"].as_f64());
        assert_eq!((mean, max), (Some(819.0), Some(819.0)), "{tls}");
        let text = render_text(&m);
        let row = text
            .lines()
            .find(|l| l.starts_with("tls"))
            .expect("tls row");
        assert!(row.ends_with("819ns"), "{row}");
    }
    #[test]
    fn merge_refuses_wrong_types_it_used_to_read_as_zero_or_absent() {
        // The JSON-pointer reader took these as 0, false or "not there" and merged on: a lost
        // worker's responses as 0, a CPU or a built-in flag dropped. Read through the schema,
        // each is refused naming the file and the field's path.
        let panicked = |d: &mut Value| {
            d["worker_panics"] = json!([{"worker": 0, "message": "boom", "responses_lost": "7"}]);
        };
        type Damage = fn(&mut Value);
        let cases: [(Damage, &str); 5] = [
            (panicked, "worker_panics[0].responses_lost is not"),
            (
                |d| d["config"]["worker_cpus"] = json!([1, "2"]),
                "config.worker_cpus[1] is not",
            ),
            (
                |d| d["target"]["builtin"] = json!("yes"),
                "target.builtin is not",
            ),
            (
                |d| d["client"]["workers"][0]["cpu"] = json!("1"),
                "client.workers[0].cpu is not",
            ),
            (|d| d["errors"]["io"] = json!(1.5), "errors.io is not"),
        ];
        for (damage, needle) in cases {
            assert_refused(
                merge(&good_and_bad(damage), &MergeOptions::default(), vec![]),
                "bad.json",
                needle,
            );
        }
        // The same report with the field well typed merges, and the lost responses are kept.
        let docs = good_and_bad(|d| {
            d["worker_panics"] = json!([{"worker": 0, "message": "boom", "responses_lost": 7}]);
        });
        let m = merge(&docs, &MergeOptions::default(), vec![]).expect("well typed");
        assert_eq!(m.run.worker_panics.len(), 1);
        assert_eq!(m.run.worker_panics[0].responses_lost, 7);
        assert_eq!(m.run.worker_panics[0].message, "in bad.json: boom");
    }
}

#[cfg(test)]
mod stage_tests {
    use super::*;
    use crate::metrics::run::StageResult;
    use crate::plan::StageWindow;

    /// A staged report (a ramp 0→c and a hold at c, 1 s each) whose windows hold `n` and
    /// `2n` total samples around `base` ns.
    fn staged(c: usize, n: u64, base: u64, hold_start_s: u64) -> Value {
        let window = |stage, kind, start: u64, from, to| StageWindow {
            stage,
            kind,
            start: Duration::from_secs(start),
            length: Duration::from_secs(1),
            from,
            to,
            rate: None,
        };
        let mut stages = Vec::new();
        let mut whole = Recorder::new();
        for (k, w) in [
            window(1, crate::plan::WindowKind::Ramp, 0, 0, c),
            window(1, crate::plan::WindowKind::Hold, hold_start_s, c, c),
        ]
        .into_iter()
        .enumerate()
        {
            let mut rec = Recorder::new();
            let m = n * (k as u64 + 1);
            for i in 0..m {
                rec.record(Phase::Total, base + i * 17 + k as u64 * 1_000);
                rec.response(200);
            }
            rec.counters.requests = m;
            rec.counters.reused_requests = m - c as u64;
            rec.counters.connections_opened = if k == 0 { c as u64 } else { 0 };
            if k == 1 {
                rec.error(ErrorClass::ReadTimeout);
            }
            whole.merge(&rec);
            stages.push(StageResult {
                window: w,
                recorder: rec,
                open_at_end: c as u64,
            });
        }
        let run = RunResult {
            recorder: whole,
            workers: Vec::new(),
            started_at: UNIX_EPOCH + Duration::from_millis(1_790_000_000_000),
            elapsed: Duration::from_secs(2),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: c as u64,
            intervals: Vec::new(),
            stages,
            worker_panics: Vec::new(),
            time_wait: None,
        };
        let meta = RunMeta {
            connections: c,
            ..RunMeta::new(Mode::Http, "http://127.0.0.1:8080/")
        };
        json::render(&meta, &run, &HostFacts::collect())
    }

    fn hist(v: &Value) -> Histogram<u64> {
        hdr::decode(v["hdr"].as_str().expect("hdr")).expect("decodes")
    }

    #[test]
    fn stage_windows_are_summed_window_by_window() {
        let (a, b) = (staged(4, 100, 50_000, 1), staged(6, 30, 90_000, 1));
        let m = merge(
            &[("a.json".into(), a.clone()), ("b.json".into(), b.clone())],
            &MergeOptions::default(),
            vec![],
        )
        .expect("same windows");
        let st = m.json["stages"].as_array().expect("stages");
        assert_eq!(st.len(), 2);
        assert_eq!(m.stages.len(), 2);
        for (i, s) in st.iter().enumerate() {
            let (x, y) = (&a["stages"][i], &b["stages"][i]);
            for key in [
                "connections_from",
                "connections_to",
                "open_at_end",
                "connections_opened",
                "requests",
                "responses",
                "errors",
            ] {
                assert_eq!(
                    s[key].as_u64().unwrap(),
                    x[key].as_u64().unwrap() + y[key].as_u64().unwrap(),
                    "stages[{i}].{key}"
                );
            }
            assert_eq!(s["window"], x["window"]);
            assert_eq!(s["start_s"], x["start_s"]);
            // Reuse from the summed counts: (n-c) + (m-c) over n + m.
            let reused = |v: &Value| {
                (v["reuse_rate"].as_f64().unwrap() * v["requests"].as_f64().unwrap()).round()
            };
            let want = (reused(x) + reused(y)) / s["requests"].as_f64().unwrap();
            assert!((s["reuse_rate"].as_f64().unwrap() - want).abs() < 1e-12);
            let mut sum = hist(&x["phases"]["total"]);
            sum.add(hist(&y["phases"]["total"])).unwrap();
            let got = hist(&s["phases"]["total"]);
            assert_eq!(got, sum, "stages[{i}] total histogram");
            assert_eq!(s["phases"]["total"]["p99"], sum.value_at_quantile(0.99));
            assert_eq!(
                s["responses_per_s"].as_f64().unwrap(),
                s["responses"].as_f64().unwrap()
            );
        }
        let text = render_text(&m);
        assert!(text.contains("(summed over the reports)"), "{text}");
        assert!(text.contains("0→10"), "{text}");
    }

    #[test]
    fn different_stage_windows_are_refused_or_dropped_with_allow_mixed() {
        let a = staged(4, 10, 50_000, 1);
        let b = staged(4, 10, 50_000, 2);
        let docs = [("a.json".to_string(), a), ("b.json".to_string(), b)];
        let e = merge(&docs, &MergeOptions::default(), vec![]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("reports differ in stages:"), "{msg}");
        assert!(msg.contains("1 hold at 2.000 s"), "{msg}");
        assert!(msg.contains("--allow-mixed"), "{msg}");
        let m = merge(
            &docs,
            &MergeOptions {
                allow_mixed: true,
                allow_disjoint: false,
            },
            vec![],
        )
        .expect("mixed allowed");
        assert_eq!(m.json["stages"], json!([]));
        // A report without stages against one with them: refused too.
        let plain = {
            let mut v = docs[0].1.clone();
            v["stages"] = json!([]);
            v
        };
        let e = merge(
            &[
                ("a.json".into(), docs[0].1.clone()),
                ("p.json".into(), plain),
            ],
            &MergeOptions::default(),
            vec![],
        )
        .unwrap_err();
        assert!(e.to_string().contains("(no stages) in p.json"), "{e}");
    }
}
