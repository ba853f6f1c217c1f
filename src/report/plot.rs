//! Pictures of runs, drawn as SVG with plotters: what `connbench plot` writes and what the
//! `--html` pages embed.
//!
//! The charts ([`Chart`]):
//! 1. **percentiles** — each phase's HdrHistogram percentile distribution, one panel per phase,
//!    every source overlaid (one colour per source, named in the legend). x is the usual log
//!    "nines" axis: position `-log10(1 - q)`, labelled 0 %, 90 %, 99 %, 99.9 % …; a curve ends
//!    at `log10(count)`, where its largest sample sits. y is latency, linear, in the unit that
//!    suits the panel's largest value.
//! 2. **time** — from a source's interval data (an `--hlog` file, or the run's own intervals on
//!    an `--html` page): p50, p99 and max of a phase per interval, and that phase's samples per
//!    second, with the stage windows of a staged run marked.
//! 3. **stages** — a staged run's latency (p50, p99) and error rate against connections, one
//!    point per stage: its hold window, or its ramp when it has no hold.
//! 4. **ramp** — a probe's open connections over time, its limit and its first failure.
//!
//! Rules:
//! - Input is the declared report schema ([`schema::Report`], [`schema::ProbeReport`]) and
//!   histograms decoded by [`hdr::decode`]; every plotted percentile comes from one histogram,
//!   never from averaged percentiles.
//! - Nothing here touches a file or a clock: callers read the inputs and write the SVG.
//! - Untrusted input (a report or interval log from elsewhere) is an error naming the file,
//!   never a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::Histogram;
use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{hdr, schema};
use crate::metrics::Phase;

/// Width of every figure, px.
pub const WIDTH: u32 = 1200;
/// Height of one row of panels, px.
const ROW_H: u32 = 330;
/// Height of a chart's heading, px.
const HEADING_H: u32 = 34;
/// Largest interval log [`Timeline::read_hlog`] is handed (256 MiB; an hour-long run with
/// every phase logs a few tens of MiB).
pub const MAX_HLOG_BYTES: u64 = 256 << 20;

/// One colour per source, in order (then again): distinct on white and for common colour
/// blindness (Tableau 10).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
/// p50, p99 and max in the time chart.
const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(255, 127, 14);
const MAX: RGBColor = RGBColor(214, 39, 40);
const GRID: RGBColor = RGBColor(150, 150, 150);

/// A kind of chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chart {
    /// Latency by percentile, per phase.
    Percentiles,
    /// Latency and throughput over time (interval data).
    Time,
    /// Latency and error rate against connections (staged runs).
    Stages,
    /// Open connections over time (probes).
    Ramp,
}

impl Chart {
    /// Every chart, in the order a figure stacks them.
    pub const ALL: [Chart; 4] = [Chart::Percentiles, Chart::Time, Chart::Stages, Chart::Ramp];

    /// The name `--chart` takes.
    pub fn name(self) -> &'static str {
        match self {
            Chart::Percentiles => "percentiles",
            Chart::Time => "time",
            Chart::Stages => "stages",
            Chart::Ramp => "ramp",
        }
    }
}

/// Why a picture could not be drawn. `Input` and `Nothing` are the user's input (exit 2).
#[derive(Debug, Clone, PartialEq)]
pub enum PlotError {
    /// A report or interval log is unreadable or damaged.
    Input {
        /// The file as named on the command line.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The inputs lack what a chart or phase asked for needs.
    Nothing(String),
    /// plotters failed (a defect, not the input).
    Draw(String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Input { file, problem } => write!(f, "{file}: {problem}"),
            PlotError::Nothing(what) => f.write_str(what),
            PlotError::Draw(e) => write!(f, "cannot draw the plot: {e}"),
        }
    }
}

impl std::error::Error for PlotError {}

fn draw_err<E: std::error::Error>(e: E) -> PlotError {
    PlotError::Draw(e.to_string().replace('\n', " "))
}

/// A report read back through the schema.
#[derive(Clone, Debug)]
pub enum Doc {
    /// An `http` or `ws` run (or a merge of runs).
    Run(Box<schema::Report>),
    /// A `probe`.
    Probe(Box<schema::ProbeReport>),
}

impl Doc {
    /// Phase statistics and histograms by phase name.
    pub fn phases(&self) -> &BTreeMap<String, schema::PhaseStats> {
        match self {
            Doc::Run(r) => &r.phases,
            Doc::Probe(p) => &p.phases,
        }
    }

    /// `http`, `ws` or `probe`.
    pub fn mode(&self) -> &str {
        match self {
            Doc::Run(r) => &r.mode,
            Doc::Probe(p) => &p.mode,
        }
    }

    /// Start of the measured window, ms since the Unix epoch.
    pub fn started_at_unix_ms(&self) -> i64 {
        match self {
            Doc::Run(r) => r.started_at_unix_ms,
            Doc::Probe(p) => p.started_at_unix_ms,
        }
    }

    /// The windows of a staged run (empty otherwise).
    pub fn stages(&self) -> &[schema::Stage] {
        match self {
            Doc::Run(r) => &r.stages,
            Doc::Probe(_) => &[],
        }
    }

    /// The phase a one-phase chart shows by default: the latency a user of this run watches
    /// (corrected in rate mode, total for HTTP, message latency or round trip for WebSocket).
    pub fn headline(&self) -> Option<&str> {
        HEADLINE
            .iter()
            .copied()
            .find(|p| self.phases().get(*p).is_some_and(|s| s.count > 0))
    }
}

/// Phases in order of preference for [`Doc::headline`].
const HEADLINE: [&str; 7] = [
    "corrected",
    "total",
    "latency",
    "rtt",
    "first_message",
    "upgrade",
    "connect",
];

/// Read one report (JSON, at most [`super::merge::MAX_REPORT_BYTES`]) into the schema; `file`
/// names it in errors.
pub fn read_report(file: &str, reader: impl Read) -> Result<Doc, PlotError> {
    let v = super::merge::read_report(file, reader).map_err(|e| PlotError::Input {
        file: file.to_string(),
        problem: match e {
            super::merge::MergeError::Input { problem, .. } => problem,
            other => other.to_string(),
        },
    })?;
    let bad = |e: serde_path_to_error::Error<serde_json::Error>| PlotError::Input {
        file: file.to_string(),
        problem: format!(
            "{} is not of the right type: {}",
            e.path(),
            e.inner().to_string().replace('\n', " ")
        ),
    };
    if v.get("mode").and_then(serde_json::Value::as_str) == Some("probe") {
        let p: schema::ProbeReport = serde_path_to_error::deserialize(&v).map_err(bad)?;
        Ok(Doc::Probe(Box::new(p)))
    } else {
        let r: schema::Report = serde_path_to_error::deserialize(&v).map_err(bad)?;
        Ok(Doc::Run(Box::new(r)))
    }
}

/// One interval of one phase: what the time chart draws.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalStat {
    /// Offset of the interval from the start of the measured window, seconds.
    pub start_s: f64,
    /// Its length, seconds.
    pub length_s: f64,
    /// Samples in it.
    pub count: u64,
    /// Median, ns.
    pub p50: u64,
    /// 99th percentile, ns.
    pub p99: u64,
    /// Largest sample, ns.
    pub max: u64,
}

impl IntervalStat {
    fn of(start_s: f64, length_s: f64, h: &Histogram<u64>) -> IntervalStat {
        IntervalStat {
            start_s,
            length_s,
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// A run's interval data: per phase name, its intervals in time order (only the statistics
/// are kept, not the histograms, so an hour-long log stays small).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Intervals by phase (interval-log tag).
    pub phases: BTreeMap<String, Vec<IntervalStat>>,
}

impl Timeline {
    /// The intervals a run recorded in memory (what `--hlog` writes).
    pub fn from_intervals(intervals: &[crate::metrics::Interval]) -> Timeline {
        let mut t = Timeline::default();
        for i in intervals {
            for (phase, h) in &i.hists {
                if h.is_empty() {
                    continue;
                }
                t.phases
                    .entry(phase.name().to_string())
                    .or_default()
                    .push(IntervalStat::of(
                        i.start.as_secs_f64(),
                        i.length.as_secs_f64(),
                        h,
                    ));
            }
        }
        t.sort();
        t
    }

    /// Read an HdrHistogram interval log (connbench's `--hlog`, or any log format 1.x with
    /// tags). Timestamps become offsets from the log's `StartTime` (connbench writes the start
    /// of the measured window there). `window_start_ms`, the report's `started_at_unix_ms`,
    /// is checked against that `StartTime`: a log of another run is refused. Untagged lines
    /// are the phase `untagged`.
    pub fn read_hlog(
        file: &str,
        bytes: &[u8],
        window_start_ms: Option<i64>,
    ) -> Result<Timeline, PlotError> {
        let bad = |problem: String| PlotError::Input {
            file: file.to_string(),
            problem,
        };
        let mut start: Option<f64> = None;
        let mut base: Option<f64> = None;
        let mut t = Timeline::default();
        let mut lines = 0u64;
        for (n, entry) in IntervalLogIterator::new(bytes).enumerate() {
            let entry = entry.map_err(|e| {
                bad(format!(
                    "not an HdrHistogram interval log (entry {}: {e:?})",
                    n + 1
                ))
            })?;
            match entry {
                LogEntry::StartTime(d) => start = Some(d.as_secs_f64()),
                LogEntry::BaseTime(d) => base = Some(d.as_secs_f64()),
                LogEntry::Interval(i) => {
                    lines += 1;
                    let h = hdr::decode(i.encoded_histogram())
                        .map_err(|e| bad(format!("interval {lines}: {e}")))?;
                    let ts = i.start_timestamp().as_secs_f64();
                    // The log format: a line's time is BaseTime + its timestamp; the chart
                    // counts from StartTime (the start of the measured window).
                    let abs = base.unwrap_or(0.0) + ts;
                    let offset = match start {
                        Some(s) if abs >= s => abs - s,
                        _ => ts,
                    };
                    let tag = i.tag().map(|t| t.as_str().to_string());
                    if h.is_empty() {
                        continue;
                    }
                    t.phases
                        .entry(tag.unwrap_or_else(|| "untagged".to_string()))
                        .or_default()
                        .push(IntervalStat::of(offset, i.duration().as_secs_f64(), &h));
                }
            }
        }
        if lines == 0 {
            return Err(bad(
                "no intervals: not an HdrHistogram interval log, or the run recorded none \
                 (write one with `connbench http --hlog FILE`)"
                    .to_string(),
            ));
        }
        if let (Some(s), Some(ms)) = (start, window_start_ms) {
            let report_s = ms as f64 / 1000.0;
            if (s - report_s).abs() > 1.5 {
                return Err(bad(format!(
                    "starts {:.3} s away from its report's measured window: it is another \
                     run's log (give each report the --hlog its run wrote, in the same order)",
                    s - report_s
                )));
            }
        }
        t.sort();
        Ok(t)
    }

    fn sort(&mut self) {
        for v in self.phases.values_mut() {
            v.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        }
    }
}

/// One run to draw: its report, its interval data if any, and the name the legend gives it.
#[derive(Clone, Debug)]
pub struct Source {
    /// Legend entry (a file name or `--label`).
    pub label: String,
    /// The report.
    pub doc: Doc,
    /// Interval data (`--hlog`, or the run's own on an `--html` page).
    pub timeline: Option<Timeline>,
}

/// What to draw.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The charts, in figure order; empty: [`default_charts`].
    pub charts: Vec<Chart>,
    /// Phases by name; empty: every phase with samples (percentiles), the headline phase
    /// (time, stages).
    pub phases: Vec<String>,
}

/// The charts the sources support: percentiles when a phase has samples, time when a source
/// has interval data, stages for a staged run, ramp for a probe.
pub fn default_charts(sources: &[Source]) -> Vec<Chart> {
    Chart::ALL
        .into_iter()
        .filter(|c| check_chart(*c, sources).is_ok())
        .collect()
}

/// Whether `chart` has something to draw in `sources`; the error says what is missing.
fn check_chart(chart: Chart, sources: &[Source]) -> Result<(), PlotError> {
    let ok = match chart {
        Chart::Percentiles => sources
            .iter()
            .any(|s| s.doc.phases().values().any(|p| p.count > 0)),
        Chart::Time => sources
            .iter()
            .any(|s| s.timeline.as_ref().is_some_and(|t| !t.phases.is_empty())),
        Chart::Stages => sources.iter().any(|s| !s.doc.stages().is_empty()),
        Chart::Ramp => sources.iter().any(|s| matches!(s.doc, Doc::Probe(_))),
    };
    if ok {
        return Ok(());
    }
    Err(PlotError::Nothing(match chart {
        Chart::Percentiles => "nothing to draw: no phase of any report has samples".to_string(),
        Chart::Time => "--chart time needs interval data: give the run's interval log with \
                        --hlog FILE (written by `connbench http --hlog FILE`)"
            .to_string(),
        Chart::Stages => "--chart stages needs a staged run (`connbench http --stages …` or \
                          --scenario); none of the reports is one"
            .to_string(),
        Chart::Ramp => {
            "--chart ramp needs a probe report (`connbench probe --json FILE`)".to_string()
        }
    }))
}

/// Render the charts of `opts` (or the defaults) into one SVG document, stacked.
pub fn render(sources: &[Source], opts: &Options) -> Result<String, PlotError> {
    let sections = sections(sources, opts)?;
    let height: u32 = sections.iter().map(|s| s.height()).sum();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height.max(1))).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut rest = root;
        for s in &sections {
            let (top, bottom) = rest.split_vertically(s.height());
            s.draw(&top, sources)?;
            rest = bottom;
        }
        rest.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Render each chart of `opts` (or the defaults) as its own SVG document (for the HTML page).
pub fn render_each(sources: &[Source], opts: &Options) -> Result<Vec<(Chart, String)>, PlotError> {
    let mut out = Vec::new();
    for s in sections(sources, opts)? {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, s.height())).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            s.draw(&root, sources)?;
            root.present().map_err(draw_err)?;
        }
        out.push((s.chart, svg));
    }
    Ok(out)
}

/// One chart of a figure, with the phases it shows.
struct Section {
    chart: Chart,
    /// Phases by name (percentiles: one panel each; time and stages: one latency panel each).
    phases: Vec<String>,
    /// Rows of panels.
    rows: u32,
}

impl Section {
    fn height(&self) -> u32 {
        HEADING_H + self.rows * ROW_H
    }

    fn draw(&self, area: &Area, sources: &[Source]) -> Result<(), PlotError> {
        let (head, body) = area.split_vertically(HEADING_H);
        head.draw_text(
            &self.heading(sources),
            &("sans-serif", 20).into_font().color(&BLACK),
            (12, 8),
        )
        .map_err(draw_err)?;
        match self.chart {
            Chart::Percentiles => percentiles(&body, sources, &self.phases),
            Chart::Time => time(&body, sources, &self.phases),
            Chart::Stages => stages(&body, sources, &self.phases),
            Chart::Ramp => ramp(&body, sources),
        }
    }

    fn heading(&self, sources: &[Source]) -> String {
        match self.chart {
            Chart::Percentiles => "Latency by percentile (HdrHistogram), per phase".to_string(),
            Chart::Time => "Latency and throughput over time (per interval)".to_string(),
            Chart::Stages => format!(
                "Latency and errors against connections ({} phase; each stage's hold window)",
                self.phases.join(", ")
            ),
            Chart::Ramp => format!(
                "Open connections during the probe{}",
                if sources.len() > 1 { "s" } else { "" }
            ),
        }
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The sections to draw, checked: every chart asked for has data, every phase asked for has
/// samples somewhere.
fn sections(sources: &[Source], opts: &Options) -> Result<Vec<Section>, PlotError> {
    let charts = if opts.charts.is_empty() {
        let d = default_charts(sources);
        if d.is_empty() {
            return Err(PlotError::Nothing(
                "nothing to draw: no report has a phase with samples, interval data, stages \
                 or a probe ramp"
                    .to_string(),
            ));
        }
        d
    } else {
        opts.charts.clone()
    };
    let mut out = Vec::new();
    for chart in charts {
        check_chart(chart, sources)?;
        let phases = match chart {
            Chart::Percentiles => percentile_phases(sources, &opts.phases)?,
            Chart::Time => one_phase_each(sources, &opts.phases, |s| {
                s.timeline.as_ref().map(|t| {
                    t.phases
                        .iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, _)| k.clone())
                        .collect()
                })
            })?,
            Chart::Stages => one_phase_each(sources, &opts.phases, |s| {
                (!s.doc.stages().is_empty()).then(|| {
                    s.doc
                        .stages()
                        .iter()
                        .flat_map(|w| w.phases.iter())
                        .filter(|(_, p)| p.count > 0)
                        .map(|(k, _)| k.clone())
                        .collect()
                })
            })?,
            Chart::Ramp => Vec::new(),
        };
        let rows = match chart {
            Chart::Percentiles => (phases.len() as u32).div_ceil(2),
            // Per source with intervals: a latency panel per phase, then throughput.
            Chart::Time => sources
                .iter()
                .filter(|s| s.timeline.is_some())
                .map(|_| (phases.len() as u32 + 1).div_ceil(2))
                .sum(),
            Chart::Stages => (phases.len() as u32 + 1).div_ceil(2),
            Chart::Ramp => 1,
        };
        out.push(Section {
            chart,
            phases,
            rows,
        });
    }
    Ok(out)
}

/// Report order of phase names (names this build does not know go last, by name).
fn phase_rank(name: &str) -> (usize, String) {
    let at = Phase::ALL
        .iter()
        .position(|p| p.name() == name)
        .unwrap_or(Phase::COUNT);
    (at, name.to_string())
}

/// The percentile chart's phases: those asked for (each must have samples somewhere), or every
/// phase with samples, in report order.
fn percentile_phases(sources: &[Source], asked: &[String]) -> Result<Vec<String>, PlotError> {
    let mut with: Vec<String> = sources
        .iter()
        .flat_map(|s| s.doc.phases().iter())
        .filter(|(_, p)| p.count > 0)
        .map(|(k, _)| k.clone())
        .collect();
    with.sort_by_key(|n| phase_rank(n));
    with.dedup();
    if asked.is_empty() {
        return Ok(with);
    }
    for a in asked {
        if !with.contains(a) {
            return Err(PlotError::Nothing(format!(
                "--phase {a}: no report has samples of it (phases with samples: {})",
                with.join(", ")
            )));
        }
    }
    Ok(asked.to_vec())
}

/// The phases of a one-phase-per-panel chart: those asked for (each must be present where the
/// chart looks, per `available`), or the headline phase of the first source that has one.
fn one_phase_each(
    sources: &[Source],
    asked: &[String],
    available: impl Fn(&Source) -> Option<Vec<String>>,
) -> Result<Vec<String>, PlotError> {
    let mut all: Vec<String> = sources.iter().filter_map(&available).flatten().collect();
    all.sort_by_key(|n| phase_rank(n));
    all.dedup();
    if asked.is_empty() {
        let first = sources
            .iter()
            .filter(|s| available(s).is_some())
            .find_map(|s| {
                let have = available(s).unwrap_or_default();
                s.doc
                    .headline()
                    .filter(|h| have.iter().any(|x| x == h))
                    .map(str::to_string)
                    .or_else(|| {
                        HEADLINE
                            .iter()
                            .find(|h| have.iter().any(|x| x == *h))
                            .map(|h| h.to_string())
                    })
                    .or_else(|| have.first().cloned())
            });
        return first.map(|p| vec![p]).ok_or_else(|| {
            PlotError::Nothing(
                "nothing to draw: the interval data or stages hold no samples".into(),
            )
        });
    }
    for a in asked {
        if !all.contains(a) {
            return Err(PlotError::Nothing(format!(
                "--phase {a}: no interval data or stage has samples of it (these do: {})",
                all.join(", ")
            )));
        }
    }
    Ok(asked.to_vec())
}

/// What a phase measures, for panel captions.
fn phase_caption(name: &str) -> String {
    let what = match name {
        "connect" => "connect() → socket writable",
        "tls" => "TCP established → TLS handshake done",
        "tls_full" => "full TLS handshakes",
        "tls_resumed" => "resumed TLS handshakes",
        "ttfb" => "request written → first response byte",
        "total" => "request written → response complete",
        "upgrade" => "upgrade request → 101",
        "first_message" => "upgrade request → first message",
        "latency" => "one-way message latency",
        "rtt" => "message or ping → echo or pong",
        "outage" => "connection lost → replacement upgraded",
        "resubscribe" => "connection lost → subscriptions resent",
        "corrected" => "intended send time → response complete",
        "send_lag" => "actual − intended send time",
        "open_lag" => "connect() − intended open time",
        "untagged" => "untagged intervals",
        _ => "",
    };
    if what.is_empty() {
        name.to_string()
    } else {
        format!("{name}: {what}")
    }
}

/// The latency axis (log scale, ns) for values from `min_ns` to `max_ns`, with room above
/// and below (at least a factor of 4 in all), and ticks from [`log_ticks`].
fn latency_range(min_ns: u64, max_ns: u64) -> WithKeyPoints<LogCoord<f64>> {
    let lo = (min_ns.max(1) as f64 / 1.4).max(1.0);
    let hi = (max_ns.max(1) as f64 * 1.4).max(lo * 4.0);
    LogCoord::from((lo..hi).log_scale()).with_key_points(log_ticks(lo, hi))
}

/// Round ticks between `lo` and `hi` for a log axis: the densest of 1…9, 1-2-5, 1-3 or 1 per
/// decade that gives at most 8 ticks (every other decade past that).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let within = |mantissas: &[f64], every: i32| -> Vec<f64> {
        let mut out = Vec::new();
        let mut e = lo.log10().floor() as i32;
        while 10f64.powi(e) <= hi {
            if e.rem_euclid(every) == 0 {
                for m in mantissas {
                    let v = m * 10f64.powi(e);
                    if v >= lo && v <= hi {
                        out.push(v);
                    }
                }
            }
            e += 1;
        }
        out
    };
    let sets: [&[f64]; 4] = [
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 3.0],
        &[1.0],
    ];
    for m in sets {
        let t = within(m, 1);
        if t.len() <= 8 {
            return t;
        }
    }
    within(&[1.0], 2)
}

/// A latency tick label with its unit: "800ns", "50µs", "2.5ms", "1.2s".
pub fn dur_label(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{unit}")
}

/// An axis number with at most 3 decimals and no trailing zeros: "0", "2.5", "1200".
pub fn axis_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// The label of position `x` on the nines axis: 0 → "0%", 1 → "90%", 2 → "99%", 3 → "99.9%"
/// (a position between whole nines gets its percentile, e.g. 0.301 → "50%").
pub fn nines_label(x: f64) -> String {
    let k = x.round();
    if (x - k).abs() < 1e-6 {
        return match k as i64 {
            i64::MIN..=0 => "0%".to_string(),
            1 => "90%".to_string(),
            2 => "99%".to_string(),
            k => format!("99.{}%", "9".repeat((k - 2) as usize)),
        };
    }
    let pct = 100.0 * (1.0 - 10f64.powf(-x));
    let digits = (x.ceil() as usize).saturating_sub(1);
    format!("{pct:.digits$}%")
}

/// Position of quantile `q` on the nines axis, `-log10(1 - q)`, at most `cap`.
pub fn nines(q: f64, cap: f64) -> f64 {
    if q >= 1.0 {
        cap
    } else {
        (-(1.0 - q).log10()).clamp(0.0, cap)
    }
}

/// A histogram's percentile distribution as (nines position, value in ns) points, from the
/// lowest value at 0 to the largest at `log10(count)` (where one sample in `count` lies).
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let cap = (h.len() as f64).log10();
    let mut pts: Vec<(f64, u64)> = Vec::new();
    for v in h.iter_quantiles(10) {
        let x = nines(v.quantile_iterated_to(), cap);
        let y = h.highest_equivalent(v.value_iterated_to());
        match pts.last_mut() {
            // Points that land on one x (past the cap) keep the largest value.
            Some(last) if last.0 == x => last.1 = last.1.max(y),
            _ => pts.push((x, y)),
        }
    }
    pts
}

/// Split `area` into `n` panels, two per row.
fn panels<'a>(area: &Area<'a>, n: usize) -> Vec<Area<'a>> {
    let rows = n.div_ceil(2).max(1);
    let mut v = area.split_evenly((rows, 2));
    v.truncate(n);
    v
}

fn caption_font() -> TextStyle<'static> {
    ("sans-serif", 15).into_font().color(&BLACK)
}

/// The percentile chart: a panel per phase, every source overlaid.
fn percentiles(area: &Area, sources: &[Source], phases: &[String]) -> Result<(), PlotError> {
    for (panel, phase) in panels(area, phases.len()).iter().zip(phases) {
        // (source index, curve, count, p99) of each source that has this phase.
        let mut curves = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            let Some(stats) = s.doc.phases().get(phase).filter(|p| p.count > 0) else {
                continue;
            };
            let h = hdr::decode(&stats.hdr).map_err(|e| PlotError::Input {
                file: s.label.clone(),
                problem: format!("phases.{phase}.hdr: {e}"),
            })?;
            curves.push((i, percentile_curve(&h), h.len(), h.value_at_quantile(0.99)));
        }
        let values = || curves.iter().flat_map(|c| c.1.iter().map(|p| p.1));
        let y = latency_range(values().min().unwrap_or(1), values().max().unwrap_or(1));
        let x_max = curves
            .iter()
            .map(|c| (c.2 as f64).log10().ceil())
            .fold(1.0, f64::max)
            .min(12.0);
        let mut chart = ChartBuilder::on(panel)
            .caption(phase_caption(phase), caption_font())
            .margin(10)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, y)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (log scale)")
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| nines_label(*x))
            .y_label_formatter(&|y| dur_label(*y))
            .light_line_style(WHITE)
            .bold_line_style(GRID.mix(0.3))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(draw_err)?;
        for (i, curve, count, p99) in curves {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    curve.iter().map(|(x, v)| (*x, *v as f64)),
                    color.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(format!(
                    "{}  n={count}  p99 {}",
                    sources[i].label,
                    super::text::dur_spaced(p99 as f64)
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
    }
    Ok(())
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), PlotError>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(draw_err)
}

/// Vertical markers at the stage windows of `doc` (a ramp's start solid, a hold's dashed),
/// between `y0` and `y1`.
fn stage_marks<'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    doc: &Doc,
    y0: f64,
    y1: f64,
) -> Result<(), PlotError> {
    for w in doc.stages() {
        let x = w.start_s;
        if w.window == "hold" {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x, y0), (x, y1)],
                    4,
                    4,
                    GRID.stroke_width(1),
                ))
                .map_err(draw_err)?;
        } else {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, y0), (x, y1)],
                    GRID.stroke_width(1),
                )))
                .map_err(draw_err)?;
            if x <= 0.0 {
                // The run's start: its label would sit under the legend.
                continue;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("→{}", w.connections_to),
                    (x, y1),
                    ("sans-serif", 12).into_font().color(&GRID),
                )))
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

/// The time chart: per source with interval data, a latency panel per phase and a throughput
/// panel.
fn time(area: &Area, sources: &[Source], phases: &[String]) -> Result<(), PlotError> {
    let with: Vec<(usize, &Source, &Timeline)> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.timeline.as_ref().map(|t| (i, s, t)))
        .collect();
    let per_source = (phases.len() as u32 + 1).div_ceil(2);
    let breaks: Vec<i32> = (1..with.len() as u32)
        .map(|k| (k * per_source * ROW_H) as i32)
        .collect();
    let rows = area.split_by_breakpoints(Vec::<i32>::new(), breaks);
    for ((_, s, t), row) in with.iter().zip(rows) {
        let cells = panels(&row, phases.len() + 1);
        let end = t
            .phases
            .values()
            .flatten()
            .map(|i| i.start_s + i.length_s)
            .fold(1.0, f64::max);
        let end = s
            .doc
            .stages()
            .iter()
            .map(|w| w.start_s + w.duration_s)
            .fold(end, f64::max);
        for (cell, phase) in cells.iter().zip(phases) {
            let empty = Vec::new();
            let iv = t.phases.get(phase).unwrap_or(&empty);
            let (lo, hi) = (
                iv.iter().map(|i| i.p50).min().unwrap_or(1),
                iv.iter().map(|i| i.max).max().unwrap_or(1),
            );
            let y = latency_range(lo, hi);
            let (y0, y1) = (y.range().start, y.range().end);
            let mut chart = ChartBuilder::on(cell)
                .caption(
                    format!("{} — {}", s.label, phase_caption(phase)),
                    caption_font(),
                )
                .margin(10)
                .margin_right(24)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(0f64..end, y)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc("time since start (s)")
                .y_desc("latency (log scale)")
                .x_label_formatter(&|x| axis_number(*x))
                .y_label_formatter(&|y| dur_label(*y))
                .light_line_style(WHITE)
                .bold_line_style(GRID.mix(0.3))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(draw_err)?;
            stage_marks(&mut chart, &s.doc, y0, y1)?;
            // Each interval's value is drawn at its middle.
            let mid = |i: &IntervalStat| i.start_s + i.length_s / 2.0;
            for (name, color, width, pick) in [
                (
                    "max",
                    MAX,
                    1,
                    (|i: &IntervalStat| i.max) as fn(&IntervalStat) -> u64,
                ),
                ("p99", P99, 2, |i: &IntervalStat| i.p99),
                ("p50", P50, 2, |i: &IntervalStat| i.p50),
            ] {
                chart
                    .draw_series(LineSeries::new(
                        iv.iter().map(|i| (mid(i), pick(i) as f64)),
                        color.stroke_width(width),
                    ))
                    .map_err(draw_err)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            legend(&mut chart)?;
        }
        // Throughput of the first phase.
        let phase = &phases[0];
        let empty = Vec::new();
        let iv = t.phases.get(phase).unwrap_or(&empty);
        let rate = |i: &IntervalStat| i.count as f64 / i.length_s.max(1e-9);
        let top = iv.iter().map(rate).fold(1.0, f64::max) * 1.08;
        let what = match phase.as_str() {
            "total" | "corrected" => "responses/s".to_string(),
            other => format!("{other} samples/s"),
        };
        let Some(cell) = cells.last() else {
            continue;
        };
        let mut chart = ChartBuilder::on(cell)
            .caption(format!("{} — throughput ({what})", s.label), caption_font())
            .margin(10)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..end, 0f64..top)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc(what)
            .x_label_formatter(&|x| axis_number(*x))
            .y_label_formatter(&|y| axis_number(*y))
            .light_line_style(WHITE)
            .bold_line_style(GRID.mix(0.3))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(draw_err)?;
        stage_marks(&mut chart, &s.doc, 0.0, top)?;
        chart
            .draw_series(LineSeries::new(
                iv.iter().map(|i| (i.start_s + i.length_s / 2.0, rate(i))),
                PALETTE[2].stroke_width(2),
            ))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// One point per stage: its hold window, or its ramp when the hold has no responses (or
/// there is none).
fn stage_points(doc: &Doc) -> Vec<&schema::Stage> {
    let mut by_stage: BTreeMap<u64, &schema::Stage> = BTreeMap::new();
    let measured = |w: &schema::Stage| w.window == "hold" && w.responses > 0;
    for w in doc.stages() {
        let slot = by_stage.entry(w.stage).or_insert(w);
        if !measured(slot) && measured(w) {
            *slot = w;
        }
    }
    by_stage.into_values().collect()
}

/// Errors ÷ (responses + errors) of a window, percent.
fn error_rate(w: &schema::Stage) -> f64 {
    let all = w.responses + w.errors;
    if all == 0 {
        0.0
    } else {
        w.errors as f64 * 100.0 / all as f64
    }
}

/// The stages chart: latency (p50, p99) per phase and error rate, against connections.
fn stages(area: &Area, sources: &[Source], phases: &[String]) -> Result<(), PlotError> {
    let staged: Vec<(usize, &Source, Vec<&schema::Stage>)> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.doc.stages().is_empty())
        .map(|(i, s)| (i, s, stage_points(&s.doc)))
        .collect();
    let x_max = staged
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|w| w.connections_to))
        .max()
        .unwrap_or(1) as f64
        * 1.08;
    let cells = panels(area, phases.len() + 1);
    for (cell, phase) in cells.iter().zip(phases) {
        let value = |w: &schema::Stage, p99: bool| {
            w.phases
                .get(phase)
                .and_then(|s| if p99 { s.p99 } else { s.p50 })
        };
        let values = || {
            staged.iter().flat_map(|(_, _, pts)| {
                pts.iter()
                    .flat_map(|w| [value(w, false), value(w, true)])
                    .flatten()
            })
        };
        let y = latency_range(values().min().unwrap_or(1), values().max().unwrap_or(1));
        let mut chart = ChartBuilder::on(cell)
            .caption(phase_caption(phase), caption_font())
            .margin(10)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, y)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("connections")
            .y_desc("latency (log scale)")
            .x_label_formatter(&|x| axis_number(*x))
            .y_label_formatter(&|y| dur_label(*y))
            .light_line_style(WHITE)
            .bold_line_style(GRID.mix(0.3))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(draw_err)?;
        for (i, s, pts) in &staged {
            let color = PALETTE[i % PALETTE.len()];
            for (p99, name) in [(false, "p50"), (true, "p99")] {
                let xy: Vec<(f64, f64)> = pts
                    .iter()
                    .filter_map(|w| value(w, p99).map(|v| (w.connections_to as f64, v as f64)))
                    .collect();
                let style = color.stroke_width(if p99 { 1 } else { 2 });
                chart
                    .draw_series(LineSeries::new(xy.clone(), style))
                    .map_err(draw_err)?
                    .label(format!("{} {name}", s.label))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                chart
                    .draw_series(xy.iter().map(|&(x, y)| {
                        if p99 {
                            TriangleMarker::new((x, y), 5, color.filled()).into_dyn()
                        } else {
                            Circle::new((x, y), 4, color.filled()).into_dyn()
                        }
                    }))
                    .map_err(draw_err)?;
            }
        }
        legend(&mut chart)?;
    }
    // Error rate.
    let Some(cell) = cells.last() else {
        return Ok(());
    };
    let top = staged
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|w| error_rate(w)))
        .fold(1.0, f64::max)
        * 1.08;
    let mut chart = ChartBuilder::on(cell)
        .caption("errors ÷ (responses + errors)", caption_font())
        .margin(10)
        .margin_right(24)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("error rate (%)")
        .x_label_formatter(&|x| axis_number(*x))
        .y_label_formatter(&|y| axis_number(*y))
        .light_line_style(WHITE)
        .bold_line_style(GRID.mix(0.3))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(draw_err)?;
    for (i, s, pts) in &staged {
        let color = PALETTE[i % PALETTE.len()];
        let xy: Vec<(f64, f64)> = pts
            .iter()
            .map(|w| (w.connections_to as f64, error_rate(w)))
            .collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(xy.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(draw_err)?;
    }
    legend(&mut chart)
}

/// The ramp chart: each probe's open connections over time, its limit (dashed; none when every
/// connection up to `--max` was established) and its first failure (a vertical line).
fn ramp(area: &Area, sources: &[Source]) -> Result<(), PlotError> {
    let probes: Vec<(usize, &Source, &schema::ProbeReport)> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.doc {
            Doc::Probe(p) => Some((i, s, p.as_ref())),
            Doc::Run(_) => None,
        })
        .collect();
    let end = probes
        .iter()
        .flat_map(|(_, _, p)| p.probe.series.iter().map(|(t, _)| *t))
        .fold(p_duration(&probes), f64::max)
        .max(0.1);
    let top = probes
        .iter()
        .flat_map(|(_, _, p)| {
            p.probe
                .series
                .iter()
                .map(|(_, n)| *n)
                .chain([p.probe.limit, p.probe.peak_open])
        })
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(24)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..end, 0f64..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("open connections")
        .x_label_formatter(&|x| axis_number(*x))
        .y_label_formatter(&|y| axis_number(*y))
        .light_line_style(WHITE)
        .bold_line_style(GRID.mix(0.3))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(draw_err)?;
    for (i, s, p) in &probes {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                p.probe.series.iter().map(|(t, n)| (*t, *n as f64)),
                color.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label(if p.probe.reached_max {
                format!("{}  no limit up to {}", s.label, p.config.max)
            } else {
                format!("{}  limit {}", s.label, p.probe.limit)
            })
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        if !p.probe.reached_max {
            let limit = p.probe.limit as f64;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, limit), (end, limit)],
                    6,
                    4,
                    color.stroke_width(1),
                ))
                .map_err(draw_err)?;
        }
        if let Some(f) = &p.probe.first_failure {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(f.at_s, 0.0), (f.at_s, top)],
                    MAX.stroke_width(1),
                )))
                .map_err(draw_err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("first failure: {} (connection {})", f.class, f.connection),
                    (f.at_s, top * 0.97),
                    ("sans-serif", 13).into_font().color(&MAX),
                )))
                .map_err(draw_err)?;
        }
    }
    legend(&mut chart)
}

fn p_duration(probes: &[(usize, &Source, &schema::ProbeReport)]) -> f64 {
    probes
        .iter()
        .map(|(_, _, p)| p.duration_s)
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    #[test]
    fn nines_axis_positions_and_labels() {
        assert_eq!(nines(0.0, 6.0), 0.0);
        assert!((nines(0.9, 6.0) - 1.0).abs() < 1e-9);
        assert!((nines(0.99, 6.0) - 2.0).abs() < 1e-9);
        assert!((nines(0.999, 6.0) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0, 4.0), 4.0);
        assert_eq!(nines(0.999_999_9, 4.0), 4.0, "capped");
        let labels: Vec<String> = (0..6).map(|k| nines_label(k as f64)).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        assert_eq!(nines_label(2f64.log10()), "50%");
        assert_eq!(nines_label(1.5), "96.8%");
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(axis_number(0.0), "0");
        assert_eq!(axis_number(2.5), "2.5");
        assert_eq!(axis_number(1200.0), "1200");
        assert_eq!(axis_number(0.125), "0.125");
        assert_eq!(axis_number(-0.0001), "0");
    }

    #[test]
    fn log_ticks_are_round_and_few() {
        assert_eq!(
            log_ticks(70.0, 4_000.0),
            [100.0, 200.0, 500.0, 1_000.0, 2_000.0]
        );
        assert_eq!(
            log_ticks(210.0, 880.0),
            [300.0, 400.0, 500.0, 600.0, 700.0, 800.0]
        );
        assert_eq!(
            log_ticks(20.0, 90_000.0),
            [30.0, 100.0, 300.0, 1e3, 3e3, 1e4, 3e4]
        );
        let wide = log_ticks(1.0, 6e10);
        assert_eq!(wide, [1.0, 100.0, 1e4, 1e6, 1e8, 1e10]);
    }

    #[test]
    fn latency_labels_carry_their_unit() {
        let got: Vec<String> = [800.0, 1_000.0, 50_000.0, 2_500_000.0, 1.2e9, 12_345.0]
            .into_iter()
            .map(dur_label)
            .collect();
        assert_eq!(got, ["800ns", "1µs", "50µs", "2.5ms", "1.2s", "12.3µs"]);
    }

    /// 98 % of the samples at 100 µs and 2 % at 1 ms: the curve is 100 µs up to the 98th
    /// percentile and 1 ms from there to the end, which is at log10(count).
    #[test]
    fn curve_follows_the_histogram() {
        let mut h = new_histogram();
        h.record_n(100_000, 9_800).expect("in range");
        h.record_n(1_000_000, 200).expect("in range");
        let c = percentile_curve(&h);
        assert_eq!(c.first().map(|p| p.0), Some(0.0));
        let last = *c.last().expect("points");
        assert!(
            (last.0 - 4.0).abs() < 1e-9,
            "ends at log10(10000): {last:?}"
        );
        assert_eq!(last.1, h.highest_equivalent(1_000_000));
        let jump = -(1.0f64 - 0.98).log10();
        for (x, v) in &c {
            if *x < jump - 1e-9 {
                assert_eq!(*v, h.highest_equivalent(100_000), "at {x}");
            } else if *x > jump + 0.05 {
                assert_eq!(*v, h.highest_equivalent(1_000_000), "at {x}");
            }
        }
        assert!(
            c.windows(2).all(|w| w[0].0 < w[1].0),
            "x strictly increases"
        );
        assert!(percentile_curve(&new_histogram()).is_empty());
    }

    fn hlog_bytes(start: std::time::SystemTime, intervals: &[(u64, &str, u64)]) -> Vec<u8> {
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        use hdrhistogram::serialization::V2DeflateSerializer;
        let mut buf = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        let mut w = IntervalLogWriterBuilder::new()
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut buf, &mut ser)
            .expect("in memory");
        for &(sec, tag, value) in intervals {
            let mut h = new_histogram();
            h.record_n(value, 10).expect("in range");
            w.write_histogram(
                &h,
                std::time::Duration::from_secs(sec),
                std::time::Duration::from_secs(1),
                Tag::new(tag),
            )
            .expect("in memory");
        }
        buf
    }

    #[test]
    fn hlog_reads_into_per_phase_intervals_from_the_window_start() {
        let start = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_500);
        let bytes = hlog_bytes(
            start,
            &[
                (0, "total", 50_000),
                (1, "total", 70_000),
                (1, "connect", 9_000),
            ],
        );
        let t = Timeline::read_hlog("a.hlog", &bytes, Some(1_700_000_000_500)).expect("reads");
        let total = &t.phases["total"];
        assert_eq!(total.len(), 2);
        assert_eq!((total[0].start_s, total[0].count), (0.0, 10));
        assert_eq!(total[1].start_s, 1.0);
        assert!(total[1].p50 >= 70_000 && total[1].p50 < 70_100);
        assert_eq!(t.phases["connect"].len(), 1);
        // Another run's log.
        let e = Timeline::read_hlog("a.hlog", &bytes, Some(1_700_000_100_000)).unwrap_err();
        assert!(e.to_string().starts_with("a.hlog: starts"), "{e}");
        // Not a log, and a log without intervals.
        for junk in [&b"{\"schema\": 1}"[..], b"", b"#[StartTime: 1.000 (x)]\n"] {
            let e = Timeline::read_hlog("j.hlog", junk, None).unwrap_err();
            assert!(matches!(e, PlotError::Input { .. }), "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn damaged_hlog_histograms_are_errors_not_panics() {
        let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let good = hlog_bytes(start, &[(0, "total", 50_000)]);
        let text = String::from_utf8(good).expect("ascii");
        let damaged = text.replace("HISTF", "HISTX");
        let e = Timeline::read_hlog("d.hlog", damaged.as_bytes(), None).unwrap_err();
        assert!(e.to_string().contains("interval 1: histogram"), "{e}");
        // Every truncation either reads or errors; none panics.
        for cut in 0..text.len() {
            let _ = Timeline::read_hlog("t.hlog", &text.as_bytes()[..cut], None);
        }
    }

    // ----- Rendering: the SVG parses, and the curves are where the axes say -----------------

    use crate::metrics::{Interval, Recorder};
    use crate::plan::{Mode, StageWindow};
    use crate::report::{host::HostFacts, json, RunMeta, RunResult, StageResult};
    use std::time::{Duration, UNIX_EPOCH};

    fn run_of(rec: Recorder) -> RunResult {
        RunResult {
            recorder: rec,
            workers: Vec::new(),
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            elapsed: Duration::from_secs(4),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: 0,
            intervals: Vec::new(),
            stages: Vec::new(),
            worker_panics: Vec::new(),
            time_wait: None,
        }
    }

    fn report_of(run: &RunResult) -> schema::Report {
        json::report(
            &RunMeta::new(Mode::Http, "http://127.0.0.1:1/"),
            run,
            &HostFacts::collect(),
        )
    }

    fn source(label: &str, run: &RunResult) -> Source {
        Source {
            label: label.to_string(),
            doc: Doc::Run(Box::new(report_of(run))),
            timeline: Some(Timeline::from_intervals(&run.intervals)),
        }
    }

    /// `total`: 98 % at 100 µs, 1.9 % at 1 ms, 0.1 % at 10 ms, so p50 = 100 µs and p99 = 1 ms.
    fn known_run() -> RunResult {
        let mut rec = Recorder::new();
        for (ns, n) in [(100_000u64, 9_800), (1_000_000, 190), (10_000_000, 10)] {
            for _ in 0..n {
                rec.record(Phase::Total, ns);
            }
        }
        run_of(rec)
    }

    /// A tick label's value: "1ms" → 1e6 (ns); "99%" → None.
    fn parse_dur(s: &str) -> Option<f64> {
        for (unit, per) in [("ns", 1.0), ("µs", 1e3), ("ms", 1e6), ("s", 1e9)] {
            if let Some(v) = s.strip_suffix(unit) {
                if let Ok(v) = v.parse::<f64>() {
                    return Some(v * per);
                }
            }
        }
        None
    }

    /// (text, x, y) of every `<text>` of the SVG.
    fn texts(svg: &str) -> Vec<(String, f64, f64)> {
        let doc = roxmltree::Document::parse(svg).expect("the SVG parses as XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| {
                let num = |a: &str| n.attribute(a).and_then(|v| v.parse().ok()).unwrap_or(-1.0);
                (
                    n.text().unwrap_or("").trim().to_string(),
                    num("x"),
                    num("y"),
                )
            })
            .collect()
    }

    fn raster(svg: &str) -> resvg::tiny_skia::Pixmap {
        let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
            .expect("resvg reads the SVG");
        let size = tree.size().to_int_size();
        let mut pixmap =
            resvg::tiny_skia::Pixmap::new(size.width(), size.height()).expect("pixmap");
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::default(),
            &mut pixmap.as_mut(),
        );
        pixmap
    }

    /// Rows of column `x` whose pixel is (nearly) `color`.
    fn rows_with(p: &resvg::tiny_skia::Pixmap, x: u32, color: RGBColor) -> Vec<u32> {
        (0..p.height())
            .filter(|&y| {
                let c = p.pixel(x, y).expect("in the pixmap").demultiply();
                let d = |a: u8, b: u8| (a as i32 - b as i32).abs();
                d(c.red(), color.0) + d(c.green(), color.1) + d(c.blue(), color.2) < 60
            })
            .collect()
    }

    #[test]
    fn the_curve_is_drawn_at_p50_and_p99_where_the_axes_say() {
        let run = known_run();
        let opts = Options {
            charts: vec![Chart::Percentiles],
            phases: Vec::new(),
        };
        let svg = render(&[source("a", &run)], &opts).expect("renders");
        let t = texts(&svg);
        // The x axis, read off its labels: 0 %, 90 %, 99 % … are evenly spaced.
        let x_of = |label: &str| {
            t.iter()
                .find(|(s, _, _)| s == label)
                .map(|(_, x, _)| *x)
                .unwrap_or_else(|| panic!("no x label {label}: {t:?}"))
        };
        let (x0, x90, x99) = (x_of("0%"), x_of("90%"), x_of("99%"));
        assert!(
            ((x99 - x90) - (x90 - x0)).abs() <= 2.0,
            "nines evenly spaced"
        );
        let x_p50 = x0 + 2f64.log10() * (x90 - x0);
        // The y axis, read off its labels (log scale): fit y = a + b·log10(ns).
        let ys: Vec<(f64, f64)> = t
            .iter()
            .filter_map(|(s, _, y)| parse_dur(s).map(|v| (v.log10(), *y)))
            .collect();
        assert!(ys.len() >= 3, "latency labels with units: {t:?}");
        let (first, last) = (ys[0], ys[ys.len() - 1]);
        let b = (last.1 - first.1) / (last.0 - first.0);
        assert!(b < 0.0, "larger latency is higher up");
        let y_of = |ns: f64| first.1 + b * (ns.log10() - first.0);
        for (lv, y) in &ys {
            assert!(
                (y_of(10f64.powf(*lv)) - y).abs() <= 1.5,
                "labels on one log scale"
            );
        }

        let p = raster(&svg);
        let blue = PALETTE[0];
        let near = |rows: &[u32], y: f64| rows.iter().any(|&r| (r as f64 - y).abs() <= 4.0);
        // At p99 the curve is at 1 ms, not at the median's 100 µs; at p50 the reverse.
        let at_p99 = rows_with(&p, x99.round() as u32, blue);
        let at_p50 = rows_with(&p, x_p50.round() as u32, blue);
        let (y_1ms, y_100us) = (y_of(1e6), y_of(1e5));
        assert!(y_100us - y_1ms > 40.0, "the two levels are apart");
        assert!(
            near(&at_p99, y_1ms),
            "p99 column {x99}: rows {at_p99:?}, want ~{y_1ms}"
        );
        assert!(!near(&at_p99, y_100us), "p99 column: {at_p99:?}");
        assert!(
            near(&at_p50, y_100us),
            "p50 column {x_p50}: {at_p50:?}, want ~{y_100us}"
        );
        assert!(!near(&at_p50, y_1ms), "p50 column: {at_p50:?}");
    }

    #[test]
    fn overlaid_runs_get_their_own_colour_and_legend_entry() {
        let a = known_run();
        let mut rec = Recorder::new();
        for _ in 0..1_000 {
            rec.record(Phase::Total, 3_000_000);
        }
        let b = run_of(rec);
        let opts = Options {
            charts: vec![Chart::Percentiles],
            phases: vec!["total".to_string()],
        };
        let svg = render(&[source("fast", &a), source("slow", &b)], &opts).expect("renders");
        let t = texts(&svg);
        assert!(
            t.iter().any(|(s, _, _)| s.starts_with("fast  n=10000")),
            "{t:?}"
        );
        assert!(
            t.iter()
                .any(|(s, _, _)| s.starts_with("slow  n=1000  p99 3")),
            "{t:?}"
        );
        // The second run's curve (red) lies at 3 ms wherever it is drawn.
        let ys: Vec<(f64, f64)> = t
            .iter()
            .filter_map(|(s, _, y)| parse_dur(s).map(|v| (v.log10(), *y)))
            .collect();
        let (first, last) = (ys[0], ys[ys.len() - 1]);
        let b_ = (last.1 - first.1) / (last.0 - first.0);
        let y_3ms = first.1 + b_ * (3e6f64.log10() - first.0);
        let x90 = t.iter().find(|(s, _, _)| s == "90%").expect("90% label").1;
        let rows = rows_with(&raster(&svg), x90.round() as u32, PALETTE[1]);
        assert!(
            rows.iter().any(|&r| (r as f64 - y_3ms).abs() <= 4.0),
            "red at {rows:?}, want ~{y_3ms}"
        );
    }

    #[test]
    fn time_and_stage_charts_draw_from_intervals_and_windows() {
        let mut run = known_run();
        for k in 0..4u64 {
            let mut h = crate::metrics::new_histogram();
            h.record_n(100_000 * (k + 1), 100).expect("in range");
            run.intervals.push(Interval {
                start: Duration::from_secs(k),
                length: Duration::from_secs(1),
                hists: vec![(Phase::Total, h)],
            });
        }
        for (i, (kind, from, to)) in [
            (crate::plan::WindowKind::Ramp, 0, 10),
            (crate::plan::WindowKind::Hold, 10, 10),
            (crate::plan::WindowKind::Ramp, 10, 40),
            (crate::plan::WindowKind::Hold, 40, 40),
        ]
        .into_iter()
        .enumerate()
        {
            let mut rec = Recorder::new();
            rec.record(Phase::Total, 100_000 * (to as u64));
            rec.response(200);
            if to == 40 {
                rec.error(crate::metrics::ErrorClass::ReadTimeout);
            }
            run.stages.push(StageResult {
                window: StageWindow {
                    stage: i / 2 + 1,
                    kind,
                    start: Duration::from_secs(i as u64),
                    length: Duration::from_secs(1),
                    from,
                    to,
                    rate: None,
                },
                recorder: rec,
                open_at_end: to as u64,
            });
        }
        let src = source("st", &run);
        assert_eq!(
            default_charts(std::slice::from_ref(&src)),
            [Chart::Percentiles, Chart::Time, Chart::Stages]
        );
        let svg = render(std::slice::from_ref(&src), &Options::default()).expect("renders");
        let t = texts(&svg);
        for want in [
            "time since start (s)",
            "connections",
            "error rate (%)",
            "st — throughput (responses/s)",
            "st p99",
            "→40",
        ] {
            assert!(
                t.iter().any(|(s, _, _)| s == want),
                "{want:?} missing: {t:?}"
            );
        }
        // The stage points: hold windows at 10 and 40 connections.
        let pts = stage_points(&src.doc);
        assert_eq!(
            pts.iter()
                .map(|w| (w.stage, w.window.as_str(), w.connections_to))
                .collect::<Vec<_>>(),
            [(1, "hold", 10), (2, "hold", 40)]
        );
        assert_eq!(error_rate(pts[1]), 50.0);
        // Asking for what is not there is an error that says so.
        let none = Source {
            timeline: None,
            ..source("x", &known_run())
        };
        for chart in [Chart::Time, Chart::Stages, Chart::Ramp] {
            let e = render(
                std::slice::from_ref(&none),
                &Options {
                    charts: vec![chart],
                    phases: Vec::new(),
                },
            )
            .unwrap_err();
            assert!(matches!(e, PlotError::Nothing(_)), "{e}");
        }
        let e = render(
            std::slice::from_ref(&none),
            &Options {
                charts: Vec::new(),
                phases: vec!["ttfb".into()],
            },
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--phase ttfb: no report has samples"),
            "{e}"
        );
    }
}
