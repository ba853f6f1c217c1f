//! Several runs in one command (`--scenario all`, or `--stages` given more than once): the
//! summary table printed after the last run, and the JSON document holding every run.
//!
//! Each run is a whole run of its own (its report is the ordinary one, [`super::json`]); this
//! module only adds the one row per run that compares them: connections, throughput, the
//! latency percentiles and the error rate. Like the other reports it formats only what was
//! measured, and renders the text and the JSON from the same [`SeriesRow`].
//!
//! # Document `connbench.series.v1`
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | always `"connbench.series.v1"` ([`SCHEMA`]) |
//! | `connbench_version` | string | version of the binary that ran |
//! | `mode` | string | `"http"` or `"ws"` |
//! | `runs` | array of object | one per run, in the order they ran, with the fields below |
//! | `runs[].name` | string | the scenario's name, or the `--stages` list as given |
//! | `runs[].stages` | string | the stage list, `CONNS@RAMP+HOLD[@RATE],…` |
//! | `runs[].report` | object | the run's whole report (`connbench.report.v1`, [`super::json`]) |
//! | `summary` | array of object | one row per run, in the same order, with the fields below |
//! | `summary[].name`, `summary[].stages` | string | as in `runs` |
//! | `summary[].connections` | integer | the busiest stage's connections |
//! | `summary[].peak_open_connections` | integer | most connections open at once |
//! | `summary[].duration_s` | number | the measured window |
//! | `summary[].throughput_per_s` | number | http: responses per second; ws: messages received per second |
//! | `summary[].latency_phase` | string | the phase of the percentiles: `ttfb` (http), `latency` (ws), `rtt` (ws ping mode) |
//! | `summary[].p50`, `summary[].p95`, `summary[].p99` | integer \| null | ns of that phase; null without a sample |
//! | `summary[].error_rate` | number | 0..1, as the stage windows count it: http: failures plus responses that are not 2xx/3xx, over responses plus failures; ws: failures over connections attempted |
//! | `summary[].interrupted` | bool | Ctrl-C ended this run (and the series with it) |

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::host::HostFacts;
use super::{schema, RunMeta, RunResult};
use crate::metrics::Phase;

/// Identifies the document format; bumped only for incompatible changes.
pub const SCHEMA: &str = "connbench.series.v1";

/// One run of a series, as it ran.
pub struct Entry<'a> {
    /// The scenario's name, or the `--stages` list as given.
    pub name: &'a str,
    /// Its stages.
    pub stages: &'a [crate::plan::Stage],
    /// What ran.
    pub meta: &'a RunMeta,
    /// What it measured.
    pub run: &'a RunResult,
}

/// The document (see the module doc for every field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Version of the binary that ran.
    pub connbench_version: String,
    /// `"http"` or `"ws"`.
    pub mode: String,
    /// Every run, in order.
    pub runs: Vec<SeriesRun>,
    /// One row per run, in order.
    pub summary: Vec<SeriesRow>,
}

/// One entry of `runs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesRun {
    /// The scenario's name, or the `--stages` list.
    pub name: String,
    /// The stage list.
    pub stages: String,
    /// The run's whole report.
    pub report: schema::Report,
}

/// One row of `summary` (and of the text table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesRow {
    /// The scenario's name, or the `--stages` list.
    pub name: String,
    /// The stage list.
    pub stages: String,
    /// The busiest stage's connections.
    pub connections: u64,
    /// Most connections open at once.
    pub peak_open_connections: u64,
    /// The measured window, seconds.
    pub duration_s: f64,
    /// Responses (http) or messages received (ws) per second.
    pub throughput_per_s: f64,
    /// The phase `p50`…`p99` are of.
    pub latency_phase: String,
    /// Median, ns.
    pub p50: Option<u64>,
    /// 95th percentile, ns.
    pub p95: Option<u64>,
    /// 99th percentile, ns.
    pub p99: Option<u64>,
    /// The run's error rate.
    pub error_rate: f64,
    /// Ctrl-C ended this run.
    pub interrupted: bool,
}

/// The phase a run's summary row takes its percentiles from: TTFB for http, the message
/// latency (or round trip) for ws.
pub fn latency_phase(meta: &RunMeta) -> Phase {
    match &meta.ws {
        Some(ws) => super::text::message_phase(ws),
        None => Phase::Ttfb,
    }
}

/// The summary row of one run.
pub fn row(e: &Entry<'_>) -> SeriesRow {
    let c = &e.run.recorder.counters;
    let secs = e.run.elapsed.as_secs_f64();
    let ws = e.meta.ws.is_some();
    let done = if ws { c.ws.messages_in } else { c.responses };
    let phase = latency_phase(e.meta);
    let h = e.run.recorder.histogram(phase);
    let q = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q));
    SeriesRow {
        name: e.name.to_string(),
        stages: crate::plan::stages_spec(e.stages),
        connections: e.meta.connections as u64,
        peak_open_connections: e.run.peak_open,
        duration_s: secs,
        throughput_per_s: if secs > 0.0 { done as f64 / secs } else { 0.0 },
        latency_phase: phase.name().to_string(),
        p50: q(0.50),
        p95: q(0.95),
        p99: q(0.99),
        error_rate: if ws {
            c.ws_error_rate()
        } else {
            c.error_rate()
        },
        interrupted: e.run.interrupted,
    }
}

/// The summary table printed after the last run. Ends with a newline.
pub fn render_text(entries: &[Entry<'_>]) -> String {
    let Some(first) = entries.first() else {
        return String::new();
    };
    let phase = latency_phase(first.meta);
    let unit = if first.meta.ws.is_some() {
        "msg/s"
    } else {
        "req/s"
    };
    let name_w = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("summary".len())
        + 2;
    let cell_w = (phase.name().len() + 5).max(10) + 1;
    let mut out = format!(
        "\n{:<name_w$}{:>12}{:>11}{:>11}{:>16}",
        "summary", "connections", "peak open", "duration", "throughput"
    );
    for head in super::text::percentile_heads(phase) {
        let _ = write!(out, "{head:>cell_w$}");
    }
    out.push_str("  error rate\n");
    for e in entries {
        let r = row(e);
        let _ = write!(
            out,
            "{:<name_w$}{:>12}{:>11}{:>11}{:>16}",
            r.name,
            r.connections,
            r.peak_open_connections,
            format!("{:.2} s", r.duration_s),
            format!("{} {unit}", super::text::rate(r.throughput_per_s)),
        );
        for cell in super::text::percentile_cells(e.run.recorder.histogram(phase)) {
            let _ = write!(out, "{cell:>cell_w$}");
        }
        let _ = write!(out, "  {:>10}", super::text::percent(r.error_rate));
        if r.interrupted {
            out.push_str("  (interrupted)");
        }
        out.push('\n');
    }
    out
}

/// The document holding every run and the summary.
pub fn document(entries: &[Entry<'_>], host: &HostFacts) -> Series {
    Series {
        schema: SCHEMA.to_string(),
        connbench_version: env!("CARGO_PKG_VERSION").to_string(),
        mode: entries
            .first()
            .map_or("http", |e| e.meta.mode.name())
            .to_string(),
        runs: entries
            .iter()
            .map(|e| SeriesRun {
                name: e.name.to_string(),
                stages: crate::plan::stages_spec(e.stages),
                report: super::json::report(e.meta, e.run, host),
            })
            .collect(),
        summary: entries.iter().map(row).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::metrics::Recorder;
    use crate::plan::{Mode, Stage};

    fn result(ttfb_us: u64, responses: u64, errors: u64, secs: u64) -> RunResult {
        let mut r = Recorder::new();
        for i in 0..responses {
            r.record(Phase::Ttfb, ttfb_us * 1000 + i);
            r.response(if i < 10 { 503 } else { 200 });
        }
        for _ in 0..errors {
            r.error(crate::metrics::ErrorClass::ReadTimeout);
        }
        RunResult {
            recorder: r,
            workers: vec![],
            started_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(secs),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: 7,
            intervals: vec![],
            stages: vec![],
            worker_panics: vec![],
            time_wait: None,
        }
    }

    #[test]
    fn one_row_per_run_with_throughput_percentiles_and_error_rate() {
        let meta = RunMeta {
            connections: 50,
            ..RunMeta::new(Mode::Http, "http://127.0.0.1:1/")
        };
        let stages = [Stage {
            connections: 50,
            ramp: Duration::from_secs(10),
            hold: Duration::from_secs(30),
            rate: None,
        }];
        let (a, b) = (result(40, 1000, 0, 10), result(900, 90, 10, 5));
        let entries = [
            Entry {
                name: "light",
                stages: &stages,
                meta: &meta,
                run: &a,
            },
            Entry {
                name: "medium",
                stages: &stages,
                meta: &meta,
                run: &b,
            },
        ];
        let r = row(&entries[1]);
        assert_eq!(r.stages, "50@10s+30s");
        assert_eq!(r.throughput_per_s, 18.0);
        assert_eq!(r.latency_phase, "ttfb");
        // 10 × 503 and 10 failures over 90 answers and 10 failures
        assert!((r.error_rate - 0.2).abs() < 1e-12);
        assert!(r.p50.unwrap() >= 900_000 && r.p99.unwrap() < 901_000);
        let t = render_text(&entries);
        let lines: Vec<&str> = t.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("summary") && lines[0].ends_with("error rate"));
        assert!(lines[0].contains("ttfb p50") && lines[0].contains("ttfb p95"));
        assert!(lines[1].starts_with("light ") && lines[1].contains("100 req/s"));
        assert!(lines[2].contains("18.0 req/s") && lines[2].ends_with("20.0 %"));
        // Rows line up with the header up to the free-text end.
        assert_eq!(lines[1].chars().count(), lines[0].chars().count());
        let doc = document(&entries, &HostFacts::collect());
        assert_eq!(doc.runs.len(), 2);
        assert_eq!(doc.runs[0].report.counters.responses, 1000);
        assert_eq!(doc.summary[0].name, "light");
        assert_eq!(doc.mode, "http");
    }
}
