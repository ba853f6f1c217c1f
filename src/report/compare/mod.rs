//! `connbench compare A.json B.json`: run B against run A, per phase and statistic, with the
//! change and whether it is beyond noise ([`stats`] owns the statistics and their method).
//!
//! This module reads two run reports through the declared schema ([`schema::Report`]), decodes
//! every phase's histogram ([`hdr::decode`], which treats the file as untrusted) and fills one
//! [`schema::CompareReport`]; the text table ([`render_text`]) and the JSON document both come
//! from that value. Rules:
//!
//! 1. Only run reports (`http`, `ws`) of the same mode are compared; a probe report, a file
//!    that is not a connbench report, a report without phase histograms, or a damaged
//!    histogram (its total not its `count`, more than 2^53 samples) is a [`CompareError`]
//!    naming the file and the problem on one line (exit 2).
//! 2. A phase with samples in only one report is listed as such (`in: "a"` / `"b"`), not an
//!    error; a phase with samples in neither is left out.
//! 3. Settings that differ (URL, connections, rate, …) are listed, never refused: comparing
//!    a relay with a direct endpoint is what the command is for.
//! 4. `--fail-on-regression PCT` checks p50, p95 and p99 of every compared phase that has
//!    the samples to judge them, or the rows `--metric` names (`p99`: of every such phase;
//!    `ttfb.p99`: that row, which must be judged); a row fails when it got slower by more than
//!    PCT % and beyond noise. A `--metric` naming a phase not compared, a row with too few
//!    samples, or the max, is an error: a check that checks nothing must not pass.
//!
//! # Schema `connbench.compare.v1`
//!
//! Latency values are nanoseconds; `change` is B − A and `low`/`high` its interval.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | always `"connbench.compare.v1"` ([`SCHEMA`]) |
//! | `connbench_version` | string | version of the binary that compared |
//! | `mode` | string | `"http"` or `"ws"`, the mode of both reports |
//! | `a`, `b` | object | the baseline A and the run B compared with it |
//! | `a.file`, `b.file` | string | the report file as named on the command line |
//! | `a.url`, `b.url` | string | the run's target URL (redacted, as in the report) |
//! | `a.started_at`, `b.started_at` | string | start of the run's measured window, RFC 3339 |
//! | `a.duration_s`, `b.duration_s` | number | length of the run's measured window |
//! | `settings_differ` | array of object | settings in which the runs differ: `field` (the report's field, e.g. `target.url`), `a`, `b` (their values as JSON text); empty when none |
//! | `method.statistic` | string | always `"bootstrap"` (see [`stats`]) |
//! | `method.confidence` | number | share of the bootstrap replicates the interval covers (0.99) |
//! | `method.resamples` | integer | bootstrap replicates per row |
//! | `method.min_change_pct` | number | `--min-change`: smaller changes are never beyond noise |
//! | `method.effective_samples` | integer | `--effective-samples`: each replicate draws at most this many samples per run |
//! | `method.seed` | integer | seed of the replicates' generator (fixed: same inputs, same output) |
//! | `phases.{phase}` | object | one per phase with samples in either report |
//! | `phases.*.in` | string | `both`, `a` or `b`: which report has samples |
//! | `phases.*.count_a`, `phases.*.count_b` | integer | samples in A, in B |
//! | `phases.*.stats.{p50,p90,p95,p99,p999,max,mean}` | object | a compared row (below); `stats` is empty unless `in` is `both` |
//! | `phases.*.stats.*.unit` | string | `ns` |
//! | `phases.*.stats.*.{a,b}` | number | A's and B's value |
//! | `phases.*.stats.*.change` | number | B − A |
//! | `phases.*.stats.*.change_pct` | number \| null | (B − A) ÷ A × 100; null when A is 0 |
//! | `phases.*.stats.*.{low,high}` | number \| null | the interval of B − A (`method.confidence`); null when not judged |
//! | `phases.*.stats.*.verdict` | string | `slower`, `faster`, `no_change` (within noise) or `not_judged` (too few samples for that statistic, and always for `max`: see [`stats`] rule 7) |
//! | `throughput` | object \| null | responses (http) or messages received (ws) per second, a row as above with `unit` `per_s` (lower is `slower`); null when a window is empty |
//! | `error_rate` | object \| null | failures ÷ attempts (attempts: responses (http) or upgraded connections (ws), plus failures), a row as above with `unit` `fraction` and verdict `more_errors`, `fewer_errors` or `no_change`; null when a run made no attempt |
//! | `regression` | object \| null | `--fail-on-regression` only |
//! | `regression.threshold_pct` | number | its PCT |
//! | `regression.checked` | array of string | the rows checked, `phase.stat` (`ttfb.p99`; rows not judged are never checked) |
//! | `regression.failed` | array of string | those slower by more than PCT % and beyond noise |
//! | `regression.passed` | bool | none failed (exit 0; else exit 1) |

pub mod stats;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::Read;

use hdrhistogram::Histogram;
use serde_json::Value;

use super::merge::{self, MergeError, MAX_PHASE_SAMPLES};
use super::schema::{
    self, CompareInput, CompareMethod, CompareReport, CompareRow, PhaseComparison, Presence,
    RegressionCheck, SettingDiff, Verdict,
};
use super::{hdr, text};
use crate::metrics::Phase;
use stats::{Change, Count, Failures, Noise, Stat};

/// The `schema` of a comparison document.
pub const SCHEMA: &str = "connbench.compare.v1";

/// The statistics `--fail-on-regression` checks when `--metric` is not given.
pub const DEFAULT_GATE: [Stat; 3] = [Stat::P50, Stat::P95, Stat::P99];

/// Why two reports could not be compared. Every variant is the user's input: exit code 2.
#[derive(Debug, Clone, PartialEq)]
pub enum CompareError {
    /// A report is unreadable, not a run report, or damaged.
    Input {
        /// The file as named on the command line.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The reports come from different modes (http, ws): their phases differ.
    Mode {
        /// A's file and mode.
        a: (String, String),
        /// B's file and mode.
        b: (String, String),
    },
    /// `--metric` names a phase that is not compared.
    Metric {
        /// The `--metric` entry.
        metric: String,
        /// Why it cannot be checked.
        problem: String,
    },
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompareError::Input { file, problem } => write!(f, "{file}: {problem}"),
            CompareError::Mode { a, b } => write!(
                f,
                "cannot compare a {} report ({}) with a {} report ({}): their phases differ \
                 (compare two http or two ws reports)",
                a.1, a.0, b.1, b.0
            ),
            CompareError::Metric { metric, problem } => {
                write!(f, "--metric {metric}: {problem}")
            }
        }
    }
}

impl std::error::Error for CompareError {}

impl From<MergeError> for CompareError {
    fn from(e: MergeError) -> CompareError {
        match e {
            MergeError::Input { file, problem } => CompareError::Input { file, problem },
            other => CompareError::Input {
                file: String::new(),
                problem: other.to_string(),
            },
        }
    }
}

/// One report, read and checked, with its phase histograms decoded.
#[derive(Clone, Debug)]
pub struct Input {
    /// The file as named on the command line.
    pub file: String,
    /// The report.
    pub report: schema::Report,
    /// Every phase's histogram (empty ones included), by phase name.
    pub histograms: BTreeMap<String, Histogram<u64>>,
}

impl Input {
    /// The histogram of `phase`, if the report has samples of it.
    pub fn samples(&self, phase: &str) -> Option<&Histogram<u64>> {
        self.histograms.get(phase).filter(|h| !h.is_empty())
    }
}

/// Read the report file at `path` (rule 1).
pub fn load(path: &str) -> Result<Input, CompareError> {
    let file = std::fs::File::open(path).map_err(|e| CompareError::Input {
        file: path.to_string(),
        problem: format!("cannot read: {e}"),
    })?;
    read(path, file)
}

/// Read one report from `reader` (rule 1); `file` names it in errors.
pub fn read(file: &str, reader: impl Read) -> Result<Input, CompareError> {
    let bad = |problem: String| CompareError::Input {
        file: file.to_string(),
        problem,
    };
    let doc = merge::read_report(file, reader)?;
    match doc.get("mode").and_then(Value::as_str) {
        Some("http" | "ws") => {}
        Some("probe") => {
            return Err(bad(
                "is a probe report: compare takes the reports of `connbench http --json` or \
                 `connbench ws --json`"
                    .to_string(),
            ))
        }
        Some(other) => {
            return Err(bad(format!(
                "mode {other:?} is not a run report (compare takes http or ws reports)"
            )))
        }
        None => return Err(bad("not a connbench run report (no \"mode\")".to_string())),
    }
    let report = merge::typed(file, &doc)?;
    if report.phases.is_empty() {
        return Err(bad(
            "has no phase histograms (\"phases\" is empty): compare reads the reports \
             connbench writes with --json"
                .to_string(),
        ));
    }
    let mut histograms = BTreeMap::new();
    for (name, stats) in &report.phases {
        if stats.count > 0 && stats.hdr.trim().is_empty() {
            return Err(bad(format!(
                "phases.{name} has {} samples but no histogram (\"hdr\" is empty): compare \
                 needs the full histograms connbench writes with --json",
                stats.count
            )));
        }
        let h = if stats.hdr.trim().is_empty() {
            crate::metrics::new_histogram()
        } else {
            hdr::decode(&stats.hdr).map_err(|e| bad(format!("phases.{name}: {e}")))?
        };
        let held = h.len();
        if held > MAX_PHASE_SAMPLES {
            return Err(bad(format!(
                "phases.{name}: the histogram holds more than {MAX_PHASE_SAMPLES} (2^53) \
                 samples: the report is damaged; regenerate it"
            )));
        }
        if held != stats.count {
            return Err(bad(format!(
                "phases.{name}: count says {} but the histogram holds {held} samples: the \
                 report is damaged; regenerate it",
                stats.count
            )));
        }
        histograms.insert(name.clone(), h);
    }
    Ok(Input {
        file: file.to_string(),
        report,
        histograms,
    })
}

/// One row `--fail-on-regression` checks: a statistic of one phase, or of every phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    /// The phase (`ttfb`), or `None` for every compared phase.
    pub phase: Option<String>,
    /// The statistic.
    pub stat: Stat,
}

impl Metric {
    /// Parse `p99`, `p99.9`, `mean` or `ttfb.p99` (pure; the phase must be one connbench
    /// reports).
    pub fn parse(s: &str) -> Result<Metric, String> {
        let stats = || {
            Stat::ALL
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let phases = || {
            Phase::ALL
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let judgeable = |stat: Stat| -> Result<Stat, String> {
            if stat == Stat::Max {
                Err("max is one sample and never judged beyond noise (check p99.9 instead)".into())
            } else {
                Ok(stat)
            }
        };
        if let Some(stat) = Stat::parse(s) {
            return Ok(Metric {
                phase: None,
                stat: judgeable(stat)?,
            });
        }
        let Some((phase, stat)) = s.split_once('.') else {
            return Err(format!(
                "{s:?} is not a statistic (expected one of {}, or PHASE.STAT like ttfb.p99)",
                stats()
            ));
        };
        if !Phase::ALL.iter().any(|p| p.name() == phase) {
            return Err(format!(
                "{phase:?} is not a phase (expected one of {})",
                phases()
            ));
        }
        let stat = Stat::parse(stat)
            .ok_or_else(|| format!("{stat:?} is not a statistic (expected one of {})", stats()))?;
        Ok(Metric {
            phase: Some(phase.to_string()),
            stat: judgeable(stat)?,
        })
    }

    /// `ttfb.p99` or `p99`.
    pub fn name(&self) -> String {
        match &self.phase {
            Some(p) => format!("{p}.{}", self.stat.name()),
            None => self.stat.name().to_string(),
        }
    }
}

/// `--fail-on-regression PCT` and the rows it checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    /// PCT: a row fails when it got slower by more than this, in % of A, beyond noise.
    pub threshold_pct: f64,
    /// The rows (rule 4); empty means [`DEFAULT_GATE`] of every compared phase.
    pub metrics: Vec<Metric>,
}

/// What the user asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// How noise is judged.
    pub noise: Noise,
    /// `--fail-on-regression`.
    pub gate: Option<Gate>,
}

/// Compare B against A.
pub fn compare(a: &Input, b: &Input, opts: &Options) -> Result<CompareReport, CompareError> {
    let (ra, rb) = (&a.report, &b.report);
    if ra.mode != rb.mode {
        return Err(CompareError::Mode {
            a: (a.file.clone(), ra.mode.clone()),
            b: (b.file.clone(), rb.mode.clone()),
        });
    }
    let noise = &opts.noise;
    let mut phases = BTreeMap::new();
    for name in phase_order(a, b) {
        let (ha, hb) = (a.samples(&name), b.samples(&name));
        let present_in = match (ha, hb) {
            (Some(_), Some(_)) => Presence::Both,
            (Some(_), None) => Presence::A,
            (None, Some(_)) => Presence::B,
            (None, None) => continue,
        };
        let mut rows = BTreeMap::new();
        if let (Some(ha), Some(hb)) = (ha, hb) {
            let key = stats::key_of(&name);
            for (stat, c) in stats::compare_histograms(ha, hb, &Stat::ALL, noise, key) {
                rows.insert(stat_key(stat).to_string(), row("ns", &c));
            }
        }
        phases.insert(
            name.clone(),
            PhaseComparison {
                present_in,
                count_a: ha.map_or(0, Histogram::len),
                count_b: hb.map_or(0, Histogram::len),
                stats: rows,
            },
        );
    }
    let throughput = stats::compare_rates(events(ra), events(rb), noise).map(|c| row("per_s", &c));
    let error_rate =
        stats::compare_error_rates(failures(ra), failures(rb), noise).map(|c| row("fraction", &c));
    let regression = match &opts.gate {
        Some(g) => Some(check(g, &phases, noise.confidence)?),
        None => None,
    };
    Ok(CompareReport {
        schema: SCHEMA.to_string(),
        connbench_version: env!("CARGO_PKG_VERSION").to_string(),
        mode: ra.mode.clone(),
        a: input(a),
        b: input(b),
        settings_differ: differ(ra, rb),
        method: CompareMethod {
            statistic: "bootstrap".to_string(),
            confidence: noise.confidence,
            resamples: u64::from(noise.resamples),
            min_change_pct: noise.min_change * 100.0,
            effective_samples: noise.effective_samples,
            seed: stats::SEED,
        },
        phases,
        throughput,
        error_rate,
        regression,
    })
}

/// The key a statistic has in the document (`p999`, as the run reports spell it).
pub fn stat_key(stat: Stat) -> &'static str {
    match stat {
        Stat::P999 => "p999",
        other => other.name(),
    }
}

/// The phase names of both reports: connbench's phases in report order, then any other
/// (from a newer connbench) alphabetically.
fn phase_order(a: &Input, b: &Input) -> Vec<String> {
    let mut names: Vec<String> = Phase::ALL.iter().map(|p| p.name().to_string()).collect();
    for n in a.histograms.keys().chain(b.histograms.keys()) {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn row(unit: &str, c: &Change) -> CompareRow {
    CompareRow {
        unit: unit.to_string(),
        a: c.a,
        b: c.b,
        change: c.delta,
        change_pct: c.delta_pct,
        low: c.interval.map(|i| i.0),
        high: c.interval.map(|i| i.1),
        verdict: c.verdict,
    }
}

fn input(i: &Input) -> CompareInput {
    CompareInput {
        file: i.file.clone(),
        url: i.report.target.url.clone(),
        started_at: i.report.started_at.clone(),
        duration_s: i.report.duration_s,
    }
}

/// What throughput counts: responses (http) or messages received (ws), over the window.
fn events(r: &schema::Report) -> Count {
    let events = match (&r.ws, r.mode.as_str()) {
        (Some(ws), "ws") => ws.messages_in,
        _ => r.counters.responses,
    };
    Count {
        events,
        seconds: r.duration_s,
    }
}

/// What the error rate divides: failures over failures plus successes (responses for http,
/// upgraded connections for ws).
fn failures(r: &schema::Report) -> Failures {
    let ok = match (&r.ws, r.mode.as_str()) {
        (Some(ws), "ws") => ws.connections_upgraded,
        _ => r.counters.responses,
    };
    Failures {
        failed: r.errors.total,
        attempts: ok.saturating_add(r.errors.total),
    }
}

/// The settings worth knowing about when two runs differ (rule 3).
fn differ(a: &schema::Report, b: &schema::Report) -> Vec<SettingDiff> {
    let rate = |r: &schema::Report| r.rate.as_ref().map(|x| x.asked_per_s);
    let ws_mode = |r: &schema::Report| r.ws.as_ref().map(|x| x.mode.clone());
    // The built-in target listens on a new port each run: only its path tells runs apart.
    let url = |r: &schema::Report| {
        if a.target.builtin && b.target.builtin {
            builtin_path(&r.target.url)
        } else {
            r.target.url.clone()
        }
    };
    let fields: Vec<(&str, String, String)> = vec![
        ("target.url", j(&url(a)), j(&url(b))),
        ("config.method", j(&a.config.method), j(&b.config.method)),
        (
            "config.body_len",
            j(&a.config.body_len),
            j(&b.config.body_len),
        ),
        (
            "config.connections",
            j(&a.config.connections),
            j(&b.config.connections),
        ),
        ("config.threads", j(&a.config.threads), j(&b.config.threads)),
        (
            "config.pipeline",
            j(&a.config.pipeline),
            j(&b.config.pipeline),
        ),
        ("config.tls", j(&a.config.tls), j(&b.config.tls)),
        ("config.resume", j(&a.config.resume), j(&b.config.resume)),
        (
            "config.worker_cpus",
            j(&a.config.worker_cpus),
            j(&b.config.worker_cpus),
        ),
        ("rate.asked_per_s", j(&rate(a)), j(&rate(b))),
        ("ws.mode", j(&ws_mode(a)), j(&ws_mode(b))),
        (
            "connbench_version",
            j(&a.connbench_version),
            j(&b.connbench_version),
        ),
        ("host.kernel", j(&a.host.kernel), j(&b.host.kernel)),
        (
            "host.cpus_online",
            j(&a.host.cpus_online),
            j(&b.host.cpus_online),
        ),
        (
            "host.clocksource",
            j(&a.host.clocksource),
            j(&b.host.clocksource),
        ),
    ];
    fields
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(field, a, b)| SettingDiff {
            field: field.to_string(),
            a,
            b,
        })
        .collect()
}

/// The path and query of a built-in target's URL (`http://127.0.0.1:40000/delay/2000` →
/// `/delay/2000`), or the URL itself if it has no authority.
fn builtin_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => "/".to_string(),
    }
}

/// A setting's value as JSON text (how `settings_differ` shows it).
fn j<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The `--fail-on-regression` check (rule 4).
fn check(
    gate: &Gate,
    phases: &BTreeMap<String, PhaseComparison>,
    confidence: f64,
) -> Result<RegressionCheck, CompareError> {
    let compared: Vec<&String> = phases
        .iter()
        .filter(|(_, p)| p.present_in == Presence::Both)
        .map(|(n, _)| n)
        .collect();
    let mut rows: Vec<(String, Stat)> = Vec::new();
    let mut add = |phase: &str, stat: Stat| {
        if !rows.iter().any(|(p, s)| p == phase && *s == stat) {
            rows.push((phase.to_string(), stat));
        }
    };
    let judged =
        |phase: &str, stat: Stat| phases[phase].stats[stat_key(stat)].verdict != Verdict::NotJudged;
    if gate.metrics.is_empty() {
        // The default rows that can be judged (a keep-alive run's 2 connects cannot).
        for p in &compared {
            for s in DEFAULT_GATE {
                if judged(p, s) {
                    add(p, s);
                }
            }
        }
    }
    for m in &gate.metrics {
        match &m.phase {
            Some(p) => {
                let problem = match phases.get(p).map(|x| x.present_in) {
                    Some(Presence::Both) => None,
                    Some(Presence::A) => Some(format!("the phase {p} has no samples in B")),
                    Some(Presence::B) => Some(format!("the phase {p} has no samples in A")),
                    None => Some(format!("the phase {p} has no samples in either report")),
                };
                if let Some(problem) = problem {
                    return Err(CompareError::Metric {
                        metric: m.name(),
                        problem: format!("{problem}, so it cannot be checked"),
                    });
                }
                if !judged(p, m.stat) {
                    let p = &phases[p.as_str()];
                    return Err(CompareError::Metric {
                        metric: m.name(),
                        problem: format!(
                            "{} and {} samples are too few to judge {} (it needs {} in each \
                             run), so it cannot be checked",
                            p.count_a,
                            p.count_b,
                            m.stat.name(),
                            stats::min_samples(m.stat, confidence).unwrap_or(u64::MAX)
                        ),
                    });
                }
                add(p, m.stat);
            }
            None => {
                for p in &compared {
                    if judged(p, m.stat) {
                        add(p, m.stat);
                    }
                }
            }
        }
    }
    if rows.is_empty() {
        return Err(CompareError::Metric {
            metric: gate
                .metrics
                .iter()
                .map(Metric::name)
                .collect::<Vec<_>>()
                .join(","),
            problem: "no phase has samples in both reports, so nothing can be checked".into(),
        });
    }
    let mut checked = Vec::new();
    let mut failed = Vec::new();
    for (phase, stat) in rows {
        let name = format!("{phase}.{}", stat.name());
        let r = &phases[&phase].stats[stat_key(stat)];
        let over = match r.change_pct {
            Some(p) => p > gate.threshold_pct,
            None => r.change > 0.0,
        };
        if r.verdict == Verdict::Slower && over {
            failed.push(name.clone());
        }
        checked.push(name);
    }
    Ok(RegressionCheck {
        threshold_pct: gate.threshold_pct,
        passed: failed.is_empty(),
        checked,
        failed,
    })
}

/// The text output: the two runs, the settings that differ, one aligned table of every
/// compared phase and statistic, throughput and error rate, the method, the regression check.
/// Ends with a newline.
pub fn render_text(c: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "compare  B against A  ({} reports)", c.mode);
    let file_w = c.a.file.len().max(c.b.file.len());
    for (tag, i) in [("A", &c.a), ("B", &c.b)] {
        let _ = writeln!(
            out,
            "  {tag}  {:<file_w$}  {}  {:.2} s  {}",
            i.file, i.started_at, i.duration_s, i.url
        );
    }
    for d in &c.settings_differ {
        let _ = writeln!(out, "  differ  {}: {} (A)  {} (B)", d.field, d.a, d.b);
    }
    out.push('\n');

    let pct_label = format!("{} % interval of B−A", fmt_num(c.method.confidence * 100.0));
    let mut table = Table::new([
        "phase",
        "stat",
        "A",
        "B",
        "change",
        "%",
        pct_label.as_str(),
        "verdict",
    ]);
    let mut only = Vec::new();
    for (name, p) in phase_rows(c) {
        match p.present_in {
            Presence::Both => {}
            Presence::A => {
                only.push(format!("{name} only in A ({} samples)", p.count_a));
                continue;
            }
            Presence::B => {
                only.push(format!("{name} only in B ({} samples)", p.count_b));
                continue;
            }
        }
        table.push([
            name.to_string(),
            "count".into(),
            p.count_a.to_string(),
            p.count_b.to_string(),
            signed_int(p.count_b as i128 - p.count_a as i128),
            String::new(),
            String::new(),
            String::new(),
        ]);
        // A phase with too few samples for any row (a keep-alive run's connects) shows its
        // median and mean only; the document has every row.
        let judged_any = p.stats.values().any(|r| r.verdict != Verdict::NotJudged);
        for stat in Stat::ALL {
            let Some(r) = p.stats.get(stat_key(stat)) else {
                continue;
            };
            if !judged_any && !matches!(stat, Stat::P50 | Stat::Mean) {
                continue;
            }
            table.push([
                String::new(),
                stat.name().into(),
                text::dur_compact(r.a),
                text::dur_compact(r.b),
                signed_dur(r.change),
                pct(r.change_pct),
                interval(r, signed_dur).unwrap_or_else(|| {
                    match stats::min_samples(stat, c.method.confidence) {
                        Some(n) => format!("needs {n} samples"),
                        None => "one sample".to_string(),
                    }
                }),
                r.verdict.describe().into(),
            ]);
        }
    }
    let unit = if c.mode == "ws" { "msg/s" } else { "resp/s" };
    if let Some(r) = &c.throughput {
        table.push([
            "throughput".into(),
            unit.into(),
            fmt_num(r.a),
            fmt_num(r.b),
            signed(r.change, fmt_num),
            pct(r.change_pct),
            interval(r, fmt_num_signed).unwrap_or_default(),
            r.verdict.describe().into(),
        ]);
    }
    if let Some(r) = &c.error_rate {
        let share = |x: f64| format!("{} %", fmt_num(x * 100.0));
        let points = |x: f64| signed(x * 100.0, fmt_num);
        table.push([
            "errors".into(),
            "rate".into(),
            share(r.a),
            share(r.b),
            format!("{} pt", points(r.change)),
            pct(r.change_pct),
            interval(r, points).map_or_else(String::new, |i| format!("{i} pt")),
            r.verdict.describe().into(),
        ]);
    }
    table.render(&mut out);
    for o in &only {
        let _ = writeln!(out, "{o}: not compared");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "method  bootstrap of B−A from the histograms: {} replicates of min(n, {}) samples \
         (--effective-samples); beyond noise = the {} % interval excludes 0 and the change is \
         at least {} % of A (--min-change)",
        c.method.resamples,
        c.method.effective_samples,
        fmt_num(c.method.confidence * 100.0),
        fmt_num(c.method.min_change_pct)
    );
    if let Some(g) = &c.regression {
        if g.passed {
            let _ = writeln!(
                out,
                "regression  PASS: none of {} rows got slower by more than {} % beyond noise",
                g.checked.len(),
                fmt_num(g.threshold_pct)
            );
        } else {
            let _ = writeln!(
                out,
                "regression  FAIL: {} slower by more than {} % beyond noise",
                g.failed.join(", "),
                fmt_num(g.threshold_pct)
            );
        }
    }
    out
}

/// The phases in report order (connbench's phase order, then the rest).
fn phase_rows(c: &CompareReport) -> Vec<(&str, &PhaseComparison)> {
    let known = |n: &str| Phase::ALL.iter().position(|p| p.name() == n);
    let mut v: Vec<(&str, &PhaseComparison)> =
        c.phases.iter().map(|(n, p)| (n.as_str(), p)).collect();
    v.sort_by_key(|(n, _)| (known(n).unwrap_or(usize::MAX), n.to_string()));
    v
}

/// An aligned text table: the first two columns left-aligned, the rest right-aligned except
/// the last (the verdict).
struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    fn new(head: [&str; N]) -> Table<N> {
        Table {
            rows: vec![head.map(str::to_string)],
        }
    }

    fn push(&mut self, row: [String; N]) {
        self.rows.push(row);
    }

    fn render(&self, out: &mut String) {
        let mut w = [0usize; N];
        for r in &self.rows {
            for (i, cell) in r.iter().enumerate() {
                w[i] = w[i].max(cell.chars().count());
            }
        }
        for r in &self.rows {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                let pad = w[i] - cell.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if i < 2 || i == N - 1 {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                } else {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

/// "low … high" of a judged row, each end formatted by `f`.
fn interval(r: &CompareRow, f: impl Fn(f64) -> String) -> Option<String> {
    Some(format!("{} … {}", f(r.low?), f(r.high?)))
}

fn fmt_num_signed(v: f64) -> String {
    signed(v, fmt_num)
}

/// "+2.21ms", "-3.0µs", "0ns".
fn signed_dur(ns: f64) -> String {
    signed(ns, text::dur_compact)
}

fn signed(v: f64, f: impl Fn(f64) -> String) -> String {
    if v > 0.0 {
        format!("+{}", f(v))
    } else if v < 0.0 {
        format!("-{}", f(-v))
    } else {
        f(0.0)
    }
}

fn signed_int(v: i128) -> String {
    if v > 0 {
        format!("+{v}")
    } else {
        v.to_string()
    }
}

/// "+7780 %", "-3.7 %", "" (A was 0).
fn pct(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("{} %", signed(p, fmt_num)),
        None => String::new(),
    }
}

/// A plain number: whole numbers as such (99, 20450), else 3 significant digits (0.0123,
/// 1.23, 12.3).
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let a = v.abs();
    if a >= 99.95 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 9.995 {
        format!("{v:.1}")
    } else if a >= 0.9995 {
        format!("{v:.2}")
    } else {
        let digits = (2 - a.log10().floor() as i32).clamp(2, 12) as usize;
        format!("{v:.digits$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;
    use serde_json::json;

    const HTTP: &str = include_str!("../../../tests/fixtures/old-26c9108-http.json");
    const WS: &str = include_str!("../../../tests/fixtures/old-26c9108-ws-echo.json");

    /// `n` samples around `median_ns` (log-normal, shape 0.3), from `seed`.
    fn hist(seed: u64, n: usize, median_ns: f64) -> Histogram<u64> {
        let mut rng = stats::SplitMix64::new(seed);
        let mut h = new_histogram();
        for _ in 0..n {
            let v = median_ns * (0.3 * rng.normal()).exp();
            h.record(v.round() as u64).unwrap();
        }
        h
    }

    /// The fixture HTTP report with its ttfb and total phases replaced by `h`.
    fn http_doc(h: &Histogram<u64>) -> Value {
        let mut v: Value = serde_json::from_str(HTTP).unwrap();
        for p in ["ttfb", "total"] {
            v["phases"][p]["count"] = json!(h.len());
            v["phases"][p]["hdr"] = json!(hdr::encode(h));
        }
        v["counters"]["responses"] = json!(h.len());
        v
    }

    fn input(name: &str, doc: &Value) -> Result<Input, CompareError> {
        read(name, serde_json::to_vec(doc).unwrap().as_slice())
    }

    fn problem(r: Result<Input, CompareError>) -> String {
        r.expect_err("refused").to_string()
    }

    #[test]
    fn same_runs_are_no_change_and_a_slower_one_fails_the_check() {
        let a = input("a.json", &http_doc(&hist(1, 20_000, 30_000.0))).unwrap();
        let same = input("same.json", &http_doc(&hist(2, 20_000, 30_000.0))).unwrap();
        let slow = input("slow.json", &http_doc(&hist(3, 20_000, 45_000.0))).unwrap();
        let opts = Options {
            gate: Some(Gate {
                threshold_pct: 10.0,
                metrics: vec![],
            }),
            ..Options::default()
        };
        let c = compare(&a, &same, &opts).unwrap();
        for (name, p) in &c.phases {
            assert_eq!(p.present_in, Presence::Both, "{name}");
            for (stat, r) in &p.stats {
                // The fixture's 2 connects, and every max, are not judged.
                let want = if name == "connect" || stat == "max" {
                    Verdict::NotJudged
                } else {
                    Verdict::NoChange
                };
                assert_eq!(r.verdict, want, "{name}.{stat}: {r:?}");
            }
        }
        assert_eq!(
            c.phases.keys().collect::<Vec<_>>(),
            ["connect", "total", "ttfb"]
        );
        assert_eq!(c.phases["ttfb"].stats.len(), 7);
        let g = c.regression.as_ref().unwrap();
        assert!(g.passed && g.failed.is_empty());
        assert_eq!(
            g.checked,
            [
                "total.p50",
                "total.p95",
                "total.p99",
                "ttfb.p50",
                "ttfb.p95",
                "ttfb.p99"
            ],
            "the default rows that can be judged"
        );
        assert_eq!(c.throughput.as_ref().unwrap().verdict, Verdict::NoChange);

        let c = compare(&a, &slow, &opts).unwrap();
        for p in ["ttfb", "total"] {
            for s in ["p50", "p90", "p95", "mean"] {
                let r = &c.phases[p].stats[s];
                assert_eq!(r.verdict, Verdict::Slower, "{p}.{s}: {r:?}");
                assert!((r.change_pct.unwrap() - 50.0).abs() < 10.0, "{r:?}");
            }
        }
        let g = c.regression.as_ref().unwrap();
        assert!(!g.passed);
        assert!(g.failed.contains(&"ttfb.p50".to_string()), "{g:?}");
        assert!(!g.failed.iter().any(|f| f.starts_with("connect")), "{g:?}");
        // Above the threshold, nothing fails: +50 % is not more than +60 %.
        let lenient = Options {
            gate: Some(Gate {
                threshold_pct: 60.0,
                metrics: vec![],
            }),
            ..Options::default()
        };
        assert!(
            compare(&a, &slow, &lenient)
                .unwrap()
                .regression
                .unwrap()
                .passed
        );
        // Faster is never a regression.
        let c = compare(&slow, &a, &opts).unwrap();
        assert_eq!(c.phases["ttfb"].stats["p50"].verdict, Verdict::Faster);
        assert!(c.regression.unwrap().passed);
    }

    #[test]
    fn metrics_choose_the_rows_and_must_exist() {
        let a = input("a.json", &http_doc(&hist(1, 5_000, 30_000.0))).unwrap();
        let b = input("b.json", &http_doc(&hist(2, 5_000, 60_000.0))).unwrap();
        let gate = |m: &[&str]| Options {
            gate: Some(Gate {
                threshold_pct: 10.0,
                metrics: m.iter().map(|s| Metric::parse(s).unwrap()).collect(),
            }),
            ..Options::default()
        };
        let g = compare(&a, &b, &gate(&["ttfb.p50"]))
            .unwrap()
            .regression
            .unwrap();
        assert_eq!(g.checked, ["ttfb.p50"]);
        assert_eq!(g.failed, ["ttfb.p50"]);
        let g = compare(&a, &b, &gate(&["p90", "ttfb.p90"]))
            .unwrap()
            .regression
            .unwrap();
        assert_eq!(
            g.checked,
            ["total.p90", "ttfb.p90"],
            "connect (2 samples) cannot be"
        );
        let e = compare(&a, &b, &gate(&["connect.p50"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--metric connect.p50: 2 and 2 samples are too few to judge p50 (it needs 8 in each \
             run), so it cannot be checked"
        );
        let e = compare(&a, &b, &gate(&["ttfb.p99.9"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("5000 and 5000 samples are too few"), "{e}");
        assert!(Metric::parse("max").unwrap_err().contains("never judged"));
        assert!(Metric::parse("ttfb.max")
            .unwrap_err()
            .contains("never judged"));
        // tls has no samples in either report: a check of it would check nothing.
        let e = compare(&a, &b, &gate(&["tls.p99"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--metric tls.p99: the phase tls has no samples"),
            "{e}"
        );
        assert!(Metric::parse("p98").is_err());
        assert!(Metric::parse("ttbf.p99")
            .unwrap_err()
            .contains("not a phase"));
        assert!(Metric::parse("ttfb.p98")
            .unwrap_err()
            .contains("not a statistic"));
        assert_eq!(Metric::parse("p99.9").unwrap().stat, Stat::P999);
        assert_eq!(Metric::parse("total.p99.9").unwrap().name(), "total.p99.9");
    }

    #[test]
    fn a_phase_in_one_report_only_is_listed_not_compared() {
        let mut with_tls = http_doc(&hist(1, 2_000, 30_000.0));
        let tls = hist(9, 2, 900_000.0);
        with_tls["phases"]["tls"]["count"] = json!(2);
        with_tls["phases"]["tls"]["hdr"] = json!(hdr::encode(&tls));
        let a = input("a.json", &with_tls).unwrap();
        let b = input("b.json", &http_doc(&hist(2, 2_000, 30_000.0))).unwrap();
        let c = compare(&a, &b, &Options::default()).unwrap();
        let p = &c.phases["tls"];
        assert_eq!((p.present_in, p.count_a, p.count_b), (Presence::A, 2, 0));
        assert!(p.stats.is_empty());
        let text = render_text(&c);
        assert!(
            text.contains("tls only in A (2 samples): not compared"),
            "{text}"
        );
        let c = compare(&b, &a, &Options::default()).unwrap();
        assert_eq!(c.phases["tls"].present_in, Presence::B);
    }

    #[test]
    fn bad_inputs_are_refused_on_one_line() {
        let good = http_doc(&hist(1, 1_000, 30_000.0));
        let one_line = |e: String| {
            assert!(!e.contains('\n'), "{e}");
            e
        };
        let e = one_line(problem(read("x.json", &b"not json"[..])));
        assert!(e.starts_with("x.json: not valid JSON"), "{e}");
        let e = one_line(problem(input("x.json", &json!({"hello": 1}))));
        assert!(e.contains("not a connbench report"), "{e}");
        let mut probe = good.clone();
        probe["mode"] = json!("probe");
        let e = one_line(problem(input("p.json", &probe)));
        assert!(e.contains("is a probe report"), "{e}");
        let mut no_hdr = good.clone();
        no_hdr["phases"]["ttfb"]["hdr"] = json!("");
        let e = one_line(problem(input("h.json", &no_hdr)));
        assert!(
            e.contains("phases.ttfb has 1000 samples but no histogram"),
            "{e}"
        );
        let mut missing = good.clone();
        missing["phases"]["ttfb"]
            .as_object_mut()
            .unwrap()
            .remove("hdr");
        let e = one_line(problem(input("m.json", &missing)));
        assert!(e.contains("phases.ttfb") && e.contains("hdr"), "{e}");
        let mut no_phases = good.clone();
        no_phases["phases"] = json!({});
        let e = one_line(problem(input("e.json", &no_phases)));
        assert!(e.contains("has no phase histograms"), "{e}");
        let mut wrong_count = good.clone();
        wrong_count["phases"]["total"]["count"] = json!(999);
        let e = one_line(problem(input("c.json", &wrong_count)));
        assert!(
            e.contains("count says 999 but the histogram holds 1000"),
            "{e}"
        );
        let mut garbage = good.clone();
        garbage["phases"]["total"]["hdr"] = json!("HISTFAAA!!!!");
        let e = one_line(problem(input("g.json", &garbage)));
        assert!(e.starts_with("g.json: phases.total: histogram:"), "{e}");

        let http = input("a.json", &good).unwrap();
        let ws = input("w.json", &serde_json::from_str(WS).unwrap()).unwrap();
        let e = compare(&http, &ws, &Options::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot compare a http report (a.json) with a ws report (w.json): their phases \
             differ (compare two http or two ws reports)"
        );
    }

    #[test]
    fn settings_that_differ_are_listed() {
        let a = http_doc(&hist(1, 1_000, 30_000.0));
        let mut b = a.clone();
        b["target"]["url"] = json!("http://127.0.0.1:40001/delay/2000");
        b["config"]["connections"] = json!(4);
        let (ia, ib) = (input("a.json", &a).unwrap(), input("b.json", &b).unwrap());
        let c = compare(&ia, &ib, &Options::default()).unwrap();
        let fields: Vec<&str> = c.settings_differ.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["target.url", "config.connections"]);
        // Built-in targets: the port is new each run, the path is what differs.
        assert_eq!(c.settings_differ[0].a, "\"/\"");
        assert_eq!(c.settings_differ[0].b, "\"/delay/2000\"");
        // Another port only: not a difference.
        b["target"]["url"] = json!("http://127.0.0.1:40001/");
        b["config"]["connections"] = a["config"]["connections"].clone();
        let c = compare(&ia, &input("b.json", &b).unwrap(), &Options::default()).unwrap();
        assert!(c.settings_differ.is_empty(), "{:?}", c.settings_differ);
        // Not built-in: the whole URL.
        b["target"]["builtin"] = json!(false);
        let c = compare(&ia, &input("b.json", &b).unwrap(), &Options::default()).unwrap();
        assert_eq!(c.settings_differ[0].b, "\"http://127.0.0.1:40001/\"");
    }

    #[test]
    fn ws_reports_compare_messages_and_upgrades() {
        let doc: Value = serde_json::from_str(WS).unwrap();
        let (a, b) = (
            input("a.json", &doc).unwrap(),
            input("b.json", &doc).unwrap(),
        );
        let c = compare(&a, &b, &Options::default()).unwrap();
        assert_eq!(c.mode, "ws");
        let t = c.throughput.unwrap();
        assert_eq!(
            t.a,
            doc["ws"]["messages_in"].as_f64().unwrap() / doc["duration_s"].as_f64().unwrap()
        );
        assert_eq!(t.verdict, Verdict::NoChange);
        assert!(c.phases.contains_key("rtt") && c.phases.contains_key("upgrade"));
        assert_eq!(c.phases["rtt"].stats["p50"].change, 0.0);
    }

    #[test]
    fn the_document_reads_back_and_the_text_is_aligned() {
        let a = input("a.json", &http_doc(&hist(1, 3_000, 30_000.0))).unwrap();
        let b = input("b.json", &http_doc(&hist(2, 3_000, 90_000.0))).unwrap();
        let opts = Options {
            gate: Some(Gate {
                threshold_pct: 10.0,
                metrics: vec![],
            }),
            ..Options::default()
        };
        let c = compare(&a, &b, &opts).unwrap();
        let v = schema::to_value(&c);
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["phases"]["ttfb"]["in"], "both");
        assert_eq!(v["phases"]["ttfb"]["stats"]["p999"]["unit"], "ns");
        assert_eq!(v["phases"]["ttfb"]["stats"]["p50"]["verdict"], "slower");
        let back: CompareReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        let text = render_text(&c);
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("phase"))
            .take_while(|l| !l.is_empty())
            .collect();
        assert!(table.len() > 10, "{text}");
        // Every row's verdict starts in the same column as the header's.
        let col = table[0].find("verdict").unwrap();
        for row in &table[1..] {
            if let Some(i) = ["slower", "faster", "no change"]
                .iter()
                .filter_map(|w| row.find(w))
                .min()
            {
                assert_eq!(
                    row[..i].chars().count(),
                    table[0][..col].chars().count(),
                    "{row}"
                );
            }
        }
        assert!(text.contains("regression  FAIL: "), "{text}");
        assert!(text.contains("ttfb.p50"), "{text}");
    }
}
