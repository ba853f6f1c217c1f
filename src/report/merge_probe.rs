//! `connbench merge` of probe reports: the connection limit of a server probed from several
//! machines at once (each with `connbench probe --start-at T`), found from what each probe
//! recorded — its start, its series of open connections and its first failure.
//!
//! Rules:
//! 1. The first failure is the earliest of the probes' first failures on absolute time (a
//!    probe's `started_at_unix_ms` plus its `first_failure.at_s`); the machine that saw it is
//!    named by its report file (and its position among the inputs). Ties (the same ms) go to
//!    the report given first.
//! 2. The aggregate limit is what all machines held when it came: the failing probe's own
//!    `limit` (its settled connections at its failure), plus, for every other probe, its open
//!    connections at that instant read from its series (sampled every 100 ms): the first
//!    sample at or after the instant, never more than that probe's own `limit` (a probe gains
//!    nothing once the server refuses everyone, and its limit counts what it held when it
//!    failed in turn). `limit_low` takes the last sample before the instant instead; the two
//!    differ by what the other machines opened within one sample, and are equal when the
//!    server was full.
//! 3. No probe failed: the aggregate limit is the sum of their limits, and `reached_max` says
//!    whether every probe reached its `--max`.
//! 4. Counts (attempted, established, failures and drops by label, survivors), the asked
//!    `max` and `connect_rate`, CPU and peak RSS are summed; phase histograms added; the
//!    series is summed on a 100 ms grid of absolute time (each probe's step function);
//!    `confirm` is not merged (null): each machine's confirmation passes are its own.
//! 5. The probes must share the URL and what counts as established (`--allow-mixed`), and
//!    their windows must overlap (`--allow-disjoint`): probes that did not run together did
//!    not share the server's limit. Damaged input is refused naming the file, as in
//!    [`super::merge`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::merge::{MergeError, MergeOptions, MAX_PHASE_SAMPLES};
use super::{hdr, schema};
use crate::metrics::new_histogram;

/// The series' sampling period (the probe's), ms.
const SAMPLE_MS: i64 = 100;

/// One probe as it took part in the merge.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSource {
    /// The file as named on the command line.
    pub file: String,
    /// `started_at_unix_ms`.
    pub start_ms: i64,
    /// `duration_s`.
    pub duration_s: f64,
    /// Its own `probe.limit`.
    pub limit: u64,
    /// Its first failure: label and absolute time (ms since the Unix epoch, fractional).
    pub first_failure: Option<(String, f64)>,
    /// Its first failure as it wrote it.
    pub first_failure_doc: Option<schema::FirstFailure>,
    /// `[t_s, open]` as it wrote them.
    pub series: Vec<(f64, u64)>,
    /// Connections it held when the aggregate's first failure came (rule 2), and the lower
    /// reading.
    pub held: Option<(u64, u64)>,
}

/// The aggregate finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    /// Connections held across all machines when the first failure came (rule 2), or the sum
    /// of the limits when none failed (rule 3).
    pub limit: u64,
    /// The same from the samples before the failure.
    pub limit_low: u64,
    /// Index of the probe that saw the first failure, its label and absolute time (ms).
    pub first_failure: Option<(usize, String, f64)>,
    /// Every probe reached its `--max` without a failure.
    pub reached_max: bool,
}

/// The merged probes.
#[derive(Clone, Debug)]
pub struct ProbeMerged {
    /// The inputs, in command-line order.
    pub sources: Vec<ProbeSource>,
    /// The finding.
    pub aggregate: Aggregate,
    /// The merged document.
    pub json: Value,
}

fn bad(file: &str, problem: impl Into<String>) -> MergeError {
    MergeError::Input {
        file: file.to_string(),
        problem: problem.into(),
    }
}

/// Read one probe report document into the schema type, naming a bad field by its path.
fn typed(file: &str, doc: &Value) -> Result<schema::ProbeReport, MergeError> {
    serde_path_to_error::deserialize::<_, schema::ProbeReport>(doc).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string().replace('\n', " ");
        bad(
            file,
            if path == "." || path.is_empty() {
                format!("not a connbench probe report: {inner}")
            } else {
                format!("{path}: {inner}")
            },
        )
    })
}

/// `a + b` or an error naming the field.
fn sum(file: &str, field: &str, a: u64, b: u64) -> Result<u64, MergeError> {
    a.checked_add(b).ok_or_else(|| {
        bad(
            file,
            format!("{field}: the sum passes 2^64 - 1; the report is damaged"),
        )
    })
}

/// The step value of `series` (seconds from `start_ms`) at the absolute instant `at_ms`:
/// the first sample at or after it (`after`), else the last sample before it.
fn open_at(series: &[(f64, u64)], start_ms: i64, at_ms: f64, after: bool) -> u64 {
    let t = (at_ms - start_ms as f64) / 1e3;
    if after {
        series
            .iter()
            .find(|(s, _)| *s >= t)
            .or(series.last())
            .map_or(0, |(_, n)| *n)
    } else {
        series
            .iter()
            .take_while(|(s, _)| *s < t)
            .last()
            .map_or(0, |(_, n)| *n)
    }
}

/// Merge probe reports (`(file, document)`, in command-line order).
pub fn merge(
    inputs: &[(String, Value)],
    opts: &MergeOptions,
    command_line: Vec<String>,
) -> Result<ProbeMerged, MergeError> {
    let (first_file, first_doc) = inputs.first().ok_or(MergeError::NoInput)?;
    let first = typed(first_file, first_doc)?;
    let mut sources = Vec::new();
    let mut phases: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    let mut totals = [0u64; 7]; // attempted, established, unresolved, peak_open, survived, of, max
    let (mut cpu_user, mut cpu_sys, mut rss, mut rate) = (0.0f64, 0.0f64, 0u64, 0.0f64);
    let mut reached_all = true;
    let mut interrupted = false;
    for (file, doc) in inputs {
        let r = typed(file, doc)?;
        if r.mode != "probe" {
            return Err(MergeError::Mode {
                first: (first_file.clone(), "probe".into()),
                other: (file.clone(), r.mode.clone()),
            });
        }
        if !opts.allow_mixed {
            for (field, a, b) in [
                ("target.url", &first.target.url, &r.target.url),
                (
                    "config.establish",
                    &first.config.establish,
                    &r.config.establish,
                ),
            ] {
                if a != b {
                    return Err(MergeError::Mixed {
                        field: field.into(),
                        first: (first_file.clone(), a.clone()),
                        other: (file.clone(), b.clone()),
                    });
                }
            }
        }
        if !(r.duration_s.is_finite() && r.duration_s >= 0.0) {
            return Err(bad(file, "duration_s is not a non-negative number"));
        }
        let p = &r.probe;
        if p.series.iter().any(|(t, _)| !t.is_finite()) {
            return Err(bad(file, "probe.series holds a time that is not a number"));
        }
        let first_failure = match &p.first_failure {
            Some(f) if !(f.at_s.is_finite() && f.at_s >= 0.0) => {
                return Err(bad(file, "probe.first_failure.at_s is not a time"))
            }
            Some(f) => Some((f.class.clone(), r.started_at_unix_ms as f64 + f.at_s * 1e3)),
            None => None,
        };
        for (into, from, field) in [
            (&mut failures, &p.failures, "probe.failures"),
            (&mut drops, &p.drops, "probe.drops"),
        ] {
            for (label, n) in from {
                let slot = into.entry(label.clone()).or_insert(0);
                *slot = sum(file, &format!("{field}.{label}"), *slot, *n)?;
            }
        }
        let own = [
            p.attempted,
            p.established,
            p.unresolved,
            p.peak_open,
            p.survived.survived,
            p.survived.of,
            r.config.max,
        ];
        let names = [
            "attempted",
            "established",
            "unresolved",
            "peak_open",
            "survived",
            "of",
            "max",
        ];
        for i in 0..totals.len() {
            totals[i] = sum(file, names[i], totals[i], own[i])?;
        }
        for (name, stats) in &r.phases {
            let h =
                hdr::decode(&stats.hdr).map_err(|e| bad(file, format!("phases.{name}: {e}")))?;
            if h.len() != stats.count || h.len() > MAX_PHASE_SAMPLES {
                return Err(bad(
                    file,
                    format!(
                        "phases.{name}: count says {} but the histogram holds {} samples \
                         (damaged report)",
                        stats.count,
                        h.len()
                    ),
                ));
            }
            let into = phases.entry(name.clone()).or_insert_with(new_histogram);
            if into.len() + h.len() > MAX_PHASE_SAMPLES {
                return Err(bad(file, format!("phases.{name}: too many samples merged")));
            }
            into.add(&h)
                .map_err(|e| bad(file, format!("phases.{name}: {e:?}")))?;
        }
        cpu_user += r.client.cpu_user_s;
        cpu_sys += r.client.cpu_sys_s;
        rss = sum(file, "client.peak_rss_bytes", rss, r.client.peak_rss_bytes)?;
        rate += r.config.connect_rate;
        reached_all &= p.reached_max;
        interrupted |= r.interrupted;
        sources.push(ProbeSource {
            file: file.clone(),
            start_ms: r.started_at_unix_ms,
            duration_s: r.duration_s,
            limit: p.limit,
            first_failure,
            first_failure_doc: p.first_failure.clone(),
            series: p.series.clone(),
            held: None,
        });
    }
    // Rule 5: the probes ran together.
    let start = sources.iter().map(|s| s.start_ms).min().unwrap_or(0);
    let end = |s: &ProbeSource| s.start_ms as f64 + s.duration_s * 1e3;
    let latest_start = sources.iter().map(|s| s.start_ms).max().unwrap_or(0) as f64;
    let earliest_end = sources.iter().map(end).fold(f64::MAX, f64::min);
    if !opts.allow_disjoint && latest_start > earliest_end {
        return Err(MergeError::Disjoint {
            overlap_s: 0.0,
            shortest_s: sources
                .iter()
                .map(|s| s.duration_s)
                .fold(f64::MAX, f64::min),
        });
    }

    // Rules 1-3.
    let first_failure = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.first_failure.as_ref().map(|(l, t)| (i, l.clone(), *t)))
        .fold(None::<(usize, String, f64)>, |best, x| match best {
            Some(b) if b.2 <= x.2 => Some(b),
            _ => Some(x),
        });
    let aggregate = match &first_failure {
        None => {
            let limit = sources
                .iter()
                .try_fold(0u64, |a, s| a.checked_add(s.limit))
                .ok_or_else(|| bad(first_file, "probe.limit: the sum passes 2^64 - 1"))?;
            Aggregate {
                limit,
                limit_low: limit,
                first_failure: None,
                reached_max: reached_all,
            }
        }
        Some((who, _, at)) => {
            let (mut limit, mut low) = (0u64, 0u64);
            for (i, s) in sources.iter_mut().enumerate() {
                let held = if i == *who {
                    (s.limit, s.limit)
                } else {
                    (
                        open_at(&s.series, s.start_ms, *at, true).min(s.limit),
                        open_at(&s.series, s.start_ms, *at, false).min(s.limit),
                    )
                };
                s.held = Some(held);
                limit = sum(&s.file, "probe.limit", limit, held.0)?;
                low = sum(&s.file, "probe.limit", low, held.1)?;
            }
            Aggregate {
                limit,
                limit_low: low,
                first_failure: first_failure.clone(),
                reached_max: false,
            }
        }
    };

    // The summed series on a 100 ms grid from the earliest start to the latest end.
    let last_ms = sources.iter().map(end).fold(start as f64, f64::max);
    let steps = ((last_ms - start as f64) / SAMPLE_MS as f64)
        .ceil()
        .max(0.0) as i64;
    let series: Vec<(f64, u64)> = (0..=steps)
        .map(|k| {
            let at = (start + k * SAMPLE_MS) as f64;
            let open = sources
                .iter()
                .filter(|s| at >= s.start_ms as f64 && at <= end(s) + SAMPLE_MS as f64)
                .map(|s| {
                    let t = (at - s.start_ms as f64) / 1e3;
                    s.series
                        .iter()
                        .take_while(|(x, _)| *x <= t + 1e-9)
                        .last()
                        .map_or(0, |(_, n)| *n)
                })
                .sum();
            (k as f64 * SAMPLE_MS as f64 / 1e3, open)
        })
        .collect();

    let json = document(
        first_doc,
        &sources,
        &aggregate,
        Summed {
            start,
            duration_s: (last_ms - start as f64) / 1e3,
            interrupted,
            failures,
            drops,
            totals,
            phases: &phases,
            cpu: (cpu_user, cpu_sys),
            rss,
            rate,
            series,
        },
        command_line,
    );
    Ok(ProbeMerged {
        sources,
        aggregate,
        json,
    })
}

/// What [`document`] writes besides the sources and the finding.
struct Summed<'a> {
    start: i64,
    duration_s: f64,
    interrupted: bool,
    failures: BTreeMap<String, u64>,
    drops: BTreeMap<String, u64>,
    totals: [u64; 7],
    phases: &'a BTreeMap<String, Histogram<u64>>,
    cpu: (f64, f64),
    rss: u64,
    rate: f64,
    series: Vec<(f64, u64)>,
}

/// The merged probe document: the first report's envelope and settings, the sums (rule 4),
/// the finding under `probe`, and `merged_from`, `sources`, `aggregate`.
fn document(
    first: &Value,
    sources: &[ProbeSource],
    a: &Aggregate,
    s: Summed<'_>,
    command_line: Vec<String>,
) -> Value {
    let mut v = first.clone();
    let rfc = |ms: i64| super::json::rfc3339(ms.div_euclid(1000));
    // The failing probe's own first failure, its time from the merged start.
    let ff = a.first_failure.as_ref().and_then(|(i, _, at)| {
        let mut f = sources.get(*i)?.first_failure_doc.clone()?;
        f.at_s = (at - s.start as f64) / 1e3;
        Some(schema::to_value(&f))
    });
    let phases: BTreeMap<String, schema::PhaseStats> = s
        .phases
        .iter()
        .map(|(name, h)| (name.clone(), super::json::phase(h, &Default::default())))
        .collect();
    v["started_at"] = json!(rfc(s.start));
    v["started_at_unix_ms"] = json!(s.start);
    v["duration_s"] = json!(s.duration_s);
    v["interrupted"] = json!(s.interrupted);
    v["command_line"] = json!(super::redact::command_line(&command_line));
    v["config"]["max"] = json!(s.totals[6]);
    v["config"]["connect_rate"] = json!(s.rate);
    v["probe"] = json!({
        "limit": a.limit,
        "reached_max": a.reached_max,
        "first_failure": ff,
        "failures_total": s.failures.values().sum::<u64>(),
        "failures": s.failures,
        "drops_total": s.drops.values().sum::<u64>(),
        "drops": s.drops,
        "series": s.series,
        "survived": {"survived": s.totals[4], "of": s.totals[5]},
        "attempted": s.totals[0],
        "established": s.totals[1],
        "unresolved": s.totals[2],
        "peak_open": s.totals[3],
    });
    v["confirm"] = Value::Null;
    v["phases"] = schema::to_value(&phases);
    v["client"] = json!({
        "cpu_user_s": s.cpu.0,
        "cpu_sys_s": s.cpu.1,
        "peak_rss_bytes": s.rss,
    });
    v["merged_from"] = json!(sources.iter().map(|x| &x.file).collect::<Vec<_>>());
    v["sources"] = json!(sources
        .iter()
        .map(|x| json!({
            "file": x.file,
            "started_at_unix_ms": x.start_ms,
            "duration_s": x.duration_s,
            "limit": x.limit,
            "first_failure_at_unix_ms": x.first_failure.as_ref().map(|f| f.1),
            "first_failure": x.first_failure.as_ref().map(|f| &f.0),
            "held_at_first_failure": x.held.map(|h| h.0),
        }))
        .collect::<Vec<_>>());
    v["aggregate"] = json!({
        "limit": a.limit,
        "limit_low": a.limit_low,
        "machines": sources.len(),
        "first_failure": a.first_failure.as_ref().map(|(i, label, at)| json!({
            "source": i,
            "file": sources[*i].file,
            "class": label,
            "at_unix_ms": at,
        })),
    });
    v
}

/// The text summary of merged probes. Ends with a newline.
pub fn render_text(m: &ProbeMerged) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "merged {} probe reports", m.sources.len());
    let start = m.sources.iter().map(|s| s.start_ms).min().unwrap_or(0);
    let w = m.sources.iter().map(|s| s.file.len()).max().unwrap_or(0);
    for s in &m.sources {
        let _ = writeln!(
            out,
            "  {:<w$}  +{:.3} s  limit {:>7}  {}{}",
            s.file,
            (s.start_ms - start) as f64 / 1e3,
            s.limit,
            match &s.first_failure {
                Some((label, at)) => format!(
                    "first failure {label} at +{:.3} s",
                    (at - start as f64) / 1e3
                ),
                None => "no failure".to_string(),
            },
            s.held
                .map(|(h, _)| format!("  held {h} at the first failure"))
                .unwrap_or_default()
        );
    }
    let a = &m.aggregate;
    match &a.first_failure {
        Some((i, label, at)) => {
            let _ = writeln!(
                out,
                "aggregate limit  {} connections held across {} machines when the first \
                 failure came ({} from the samples before it)",
                a.limit,
                m.sources.len(),
                a.limit_low
            );
            let _ = writeln!(
                out,
                "first failure    {label} at +{:.3} s, seen by {} (input {})",
                (at - start as f64) / 1e3,
                m.sources[*i].file,
                i + 1
            );
        }
        None if a.reached_max => {
            let _ = writeln!(
                out,
                "aggregate limit  not found: all {} connections were established (raise --max)",
                a.limit
            );
        }
        None => {
            let _ = writeln!(
                out,
                "aggregate limit  not found: {} connections open when the probes stopped",
                a.limit
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_790_000_000_000;

    /// A probe report started at `start_ms` that ramped one connection every 100 ms up to
    /// `limit` and failed at `fail_at_s` (or reached `max` without a failure).
    fn probe(start_ms: i64, limit: u64, fail_at_s: Option<f64>, max: u64) -> Value {
        let end_s = fail_at_s.unwrap_or(limit as f64 / 10.0) + 0.5;
        let mut series = Vec::new();
        let mut k = 0u64;
        while (k as f64) / 10.0 <= end_s {
            series.push(json!([k as f64 / 10.0, k.min(limit)]));
            k += 1;
        }
        let mut connect = new_histogram();
        for i in 0..limit {
            connect
                .record(50_000 + i * 100 + start_ms as u64 % 7)
                .unwrap();
        }
        let mut phases = serde_json::Map::new();
        for name in ["connect", "tls", "total", "upgrade"] {
            let h = if name == "connect" {
                connect.clone()
            } else {
                new_histogram()
            };
            phases.insert(
                name.into(),
                schema::to_value(&super::super::json::phase(&h, &Default::default())),
            );
        }
        json!({
            "schema": "connbench.report.v1",
            "connbench_version": "0.1.0",
            "mode": "probe",
            "started_at": super::super::json::rfc3339(start_ms / 1000),
            "started_at_unix_ms": start_ms,
            "duration_s": end_s,
            "interrupted": false,
            "insecure": false,
            "command_line": ["connbench", "probe"],
            "target": {"url": "http://198.18.0.1:8080/", "builtin": false},
            "config": {
                "establish": "connect", "connect_rate": 10.0, "max": max,
                "max_from_fd_limit": false, "hold_s": 0.5, "settle_s": 0.25,
                "keepalive_s": null, "confirm_pause_s": null, "headers": [],
                "connect_timeout_s": 5.0, "tls": false, "resume": true, "sni": null,
                "ca_file": null, "fd_limit": 1024
            },
            "host": {"cpus_online": 2, "cpus_allowed": 2, "clocksource": "tsc",
                     "kernel": null, "arch": "x86_64", "os": "linux"},
            "probe": {
                "limit": limit,
                "reached_max": fail_at_s.is_none(),
                "first_failure": fail_at_s.map(|at| json!({
                    "class": "connect_reset", "local": false, "status": null,
                    "close_code": null, "at_s": at, "connection": limit + 1
                })),
                "failures": if fail_at_s.is_some() { json!({"connect_reset": 1}) } else { json!({}) },
                "failures_total": u64::from(fail_at_s.is_some()),
                "drops": {}, "drops_total": 0,
                "series": series,
                "survived": {"survived": limit, "of": limit},
                "attempted": limit + u64::from(fail_at_s.is_some()),
                "established": limit, "unresolved": 0, "peak_open": limit
            },
            "confirm": null,
            "tls": null,
            "phases": phases,
            "client": {"cpu_user_s": 0.01, "cpu_sys_s": 0.02, "peak_rss_bytes": 1000},
            "warnings": []
        })
    }

    fn named(docs: Vec<Value>) -> Vec<(String, Value)> {
        docs.into_iter()
            .enumerate()
            .map(|(i, d)| (format!("p{i}.json"), d))
            .collect()
    }

    #[test]
    fn the_aggregate_limit_is_what_all_machines_held_when_the_first_failure_came() {
        // A full server: p1 fails first (at T + 1.25 s); p0 and p2 gain nothing after it and
        // fail in turn with what they held then.
        let docs = named(vec![
            probe(T + 50, 10, Some(1.30), 100),
            probe(T, 12, Some(1.25), 100),
            probe(T + 20, 8, Some(1.40), 100),
        ]);
        let m = merge(&docs, &MergeOptions::default(), vec!["connbench".into()]).expect("merges");
        let a = &m.aggregate;
        assert_eq!(a.limit, 12 + 10 + 8);
        let (who, label, at) = a.first_failure.clone().expect("a failure");
        assert_eq!((who, label.as_str()), (1, "connect_reset"));
        assert_eq!(at, (T + 1_250) as f64);
        // The samples before the failure: p0 at 1.1 s of its own clock held 10 (its ramp
        // had reached its limit), p2 at 1.2 s held 8.
        assert_eq!(a.limit_low, 12 + 10 + 8);
        assert_eq!(m.sources[0].held, Some((10, 10)));
        assert_eq!(m.json["probe"]["limit"], 30);
        assert_eq!(m.json["aggregate"]["first_failure"]["file"], "p1.json");
        assert_eq!(m.json["aggregate"]["machines"], 3);
        assert_eq!(m.json["probe"]["first_failure"]["class"], "connect_reset");
        assert_eq!(m.json["probe"]["first_failure"]["at_s"], 1.25);
        assert_eq!(m.json["probe"]["attempted"], 33);
        assert_eq!(m.json["probe"]["failures"]["connect_reset"], 3);
        assert_eq!(m.json["config"]["max"], 300);
        assert_eq!(m.json["phases"]["connect"]["count"], 30);
        assert!(m.json["confirm"].is_null());
        let series = m.json["probe"]["series"].as_array().unwrap();
        assert_eq!(
            series.iter().map(|p| p[1].as_u64().unwrap()).max(),
            Some(30)
        );
        // It reads back as a probe report, so merged probes merge again.
        typed("m.json", &m.json).expect("schema");
        let text = render_text(&m);
        assert!(
            text.contains("aggregate limit  30 connections held across 3 machines"),
            "{text}"
        );
        assert!(text.contains("seen by p1.json (input 2)"), "{text}");
    }

    #[test]
    fn machines_still_ramping_at_the_failure_are_read_from_their_series() {
        // p1 fails at 0.45 s while p0, still ramping (one per 100 ms up to 20), held 4 or 5.
        let docs = named(vec![probe(T, 20, None, 20), probe(T, 3, Some(0.45), 100)]);
        let m = merge(&docs, &MergeOptions::default(), vec![]).expect("merges");
        assert_eq!(
            m.sources[0].held,
            Some((5, 4)),
            "first sample after, last before"
        );
        assert_eq!(m.aggregate.limit, 3 + 5);
        assert_eq!(m.aggregate.limit_low, 3 + 4);
        assert!(!m.aggregate.reached_max);
    }

    #[test]
    fn no_failure_anywhere_sums_the_limits_and_ties_go_to_the_first_given() {
        let m = merge(
            &named(vec![probe(T, 5, None, 5), probe(T + 30, 7, None, 7)]),
            &MergeOptions::default(),
            vec![],
        )
        .expect("merges");
        assert_eq!(m.aggregate.limit, 12);
        assert!(m.aggregate.reached_max);
        assert!(m.aggregate.first_failure.is_none());
        assert!(render_text(&m).contains("not found: all 12 connections"));
        let tie = merge(
            &named(vec![probe(T, 4, Some(1.0), 9), probe(T, 6, Some(1.0), 9)]),
            &MergeOptions::default(),
            vec![],
        )
        .expect("merges");
        assert_eq!(tie.aggregate.first_failure.unwrap().0, 0);
    }

    #[test]
    fn probes_of_other_targets_other_times_or_damaged_are_refused() {
        let mut other = probe(T, 5, None, 5);
        other["target"]["url"] = json!("http://198.18.0.9:8080/");
        let e = merge(
            &named(vec![probe(T, 5, None, 5), other.clone()]),
            &MergeOptions::default(),
            vec![],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("reports differ in target.url"),
            "{e}"
        );
        let allowed = MergeOptions {
            allow_mixed: true,
            allow_disjoint: false,
        };
        merge(&named(vec![probe(T, 5, None, 5), other]), &allowed, vec![]).expect("mixed");
        let later = probe(T + 60_000, 5, None, 5);
        let e = merge(
            &named(vec![probe(T, 5, None, 5), later]),
            &MergeOptions::default(),
            vec![],
        )
        .unwrap_err();
        assert!(matches!(e, MergeError::Disjoint { .. }), "{e}");
        let mut damaged = probe(T, 5, None, 5);
        damaged["phases"]["connect"]["count"] = json!(6);
        let e = merge(
            &named(vec![probe(T, 5, None, 5), damaged]),
            &MergeOptions::default(),
            vec![],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("p1.json: phases.connect: count says 6"),
            "{e}"
        );
        let mut wrong = probe(T, 5, None, 5);
        wrong["probe"]["series"] = json!("no");
        let e = merge(&named(vec![wrong]), &MergeOptions::default(), vec![]).unwrap_err();
        assert!(e.to_string().starts_with("p0.json: probe.series"), "{e}");
    }
}
