//! The tables `cargo bench --bench endpoints` prints: one per phase, a row per endpoint, each
//! endpoint against the first endpoint of its kind and against its own previous run (or a
//! named baseline).
//!
//! Every comparison is [`crate::report::compare::compare`] on the reports as saved — the
//! statistics of `connbench compare` (bootstrap of the histograms, its noise rule), not a
//! second implementation. Rules:
//! 1. The reference of a phase table is the first endpoint of that kind (HTTP endpoints are
//!    compared with the first HTTP endpoint, WebSocket with the first WebSocket one: their
//!    phases differ, and `compare` refuses to mix them).
//! 2. The regression check is `compare`'s `--fail-on-regression` (p50, p95, p99 of every
//!    phase with the samples to judge them) against the previous run or baseline only: an
//!    endpoint slower than the reference is what the table is for, not a failure.
//! 3. A phase is shown when an endpoint has samples of it; `tls` (full and resumed together)
//!    is left out for its two parts.

use std::fmt::Write as _;

use crate::metrics::Phase;
use crate::report::compare::{self, Gate, Input, Options};
use crate::report::schema::{CompareReport, Presence, Verdict};
use crate::report::text::dur_compact;

/// The phases the tables show, in order (rule 3).
pub const PHASES: [Phase; 9] = [
    Phase::Connect,
    Phase::TlsFull,
    Phase::TlsResumed,
    Phase::Ttfb,
    Phase::Total,
    Phase::Upgrade,
    Phase::FirstMessage,
    Phase::Latency,
    Phase::Rtt,
];

/// The statistics each comparison column shows.
const STATS: [&str; 2] = ["p50", "p99"];

/// One endpoint's measurements this run, and what it is compared with.
pub struct Subject {
    /// The endpoint's name.
    pub name: String,
    /// This run's report.
    pub now: Input,
    /// The previous run's (or the baseline's) report, if there is one.
    pub before: Option<Input>,
}

/// One comparison cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// This endpoint is the reference.
    Reference,
    /// Compared: the change in % of the other (None when it was 0) and the verdict.
    Change(Option<f64>, Verdict),
    /// Not compared, and why (`new`: no previous run; `no samples`: the other has none).
    Missing(&'static str),
}

impl Cell {
    fn render(&self) -> String {
        match self {
            Cell::Reference => "reference".into(),
            Cell::Missing(why) => (*why).into(),
            Cell::Change(pct, v) => {
                let verdict = match v {
                    Verdict::NoChange => "within noise",
                    other => other.describe(),
                };
                match pct {
                    Some(p) => format!("{p:+.1} % {verdict}"),
                    None => verdict.to_string(),
                }
            }
        }
    }
}

/// One row of a phase table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The endpoint.
    pub endpoint: String,
    /// Samples this run.
    pub count: u64,
    /// This run's p50 and p99, ns.
    pub values: [f64; 2],
    /// Against the reference: p50, p99.
    pub vs_first: [Cell; 2],
    /// Against the previous run or baseline: p50, p99.
    pub vs_before: [Cell; 2],
}

/// One phase's table.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseTable {
    /// The phase.
    pub phase: Phase,
    /// The reference endpoint (rule 1); `h/w` when the table has rows of both kinds.
    pub reference: String,
    /// One row per endpoint with samples of the phase.
    pub rows: Vec<Row>,
}

/// Everything a bench run prints.
#[derive(Clone, Debug, PartialEq)]
pub struct Tables {
    /// What "before" is: `previous run` or `baseline NAME`.
    pub before_label: String,
    /// The phase tables, in [`PHASES`] order.
    pub phases: Vec<PhaseTable>,
    /// Endpoints that could not be compared with their previous run, and why.
    pub notes: Vec<String>,
    /// The regression check, when asked (rule 2).
    pub regression: Option<Regression>,
}

/// The outcome of `--fail-on-regression`.
#[derive(Clone, Debug, PartialEq)]
pub struct Regression {
    /// Its threshold, % of the previous value.
    pub threshold_pct: f64,
    /// Rows checked, `endpoint: phase.stat`.
    pub checked: usize,
    /// Rows that got slower beyond noise by more than the threshold, `endpoint: phase.stat`.
    pub failed: Vec<String>,
}

impl Regression {
    /// No row failed.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Compare and tabulate. `gate`: `--fail-on-regression`'s threshold, in %.
pub fn build(subjects: &[Subject], before_label: &str, gate: Option<f64>) -> Tables {
    let plain = Options::default();
    let gated = Options {
        gate: gate.map(|threshold_pct| Gate {
            threshold_pct,
            metrics: vec![],
        }),
        ..Options::default()
    };
    let mut notes = Vec::new();
    let mut regression = gate.map(|threshold_pct| Regression {
        threshold_pct,
        checked: 0,
        failed: vec![],
    });
    // Against the reference (rule 1) and against before (rule 2), per endpoint.
    let mut vs_first: Vec<Option<CompareReport>> = Vec::new();
    let mut vs_before: Vec<Option<CompareReport>> = Vec::new();
    for s in subjects {
        let reference = subjects
            .iter()
            .find(|r| r.now.report.mode == s.now.report.mode)
            .expect("an endpoint is of its own kind");
        vs_first.push(if reference.name == s.name {
            None
        } else {
            compare::compare(&reference.now, &s.now, &plain).ok()
        });
        let Some(before) = &s.before else {
            vs_before.push(None);
            continue;
        };
        let c = match compare::compare(before, &s.now, &gated) {
            // Nothing to check (no phase judged in both): compared all the same.
            Err(compare::CompareError::Metric { .. }) => compare::compare(before, &s.now, &plain),
            other => other,
        };
        match c {
            Ok(c) => {
                if let (Some(r), Some(g)) = (&mut regression, &c.regression) {
                    r.checked += g.checked.len();
                    r.failed
                        .extend(g.failed.iter().map(|f| format!("{}: {f}", s.name)));
                }
                vs_before.push(Some(c));
            }
            Err(e) => {
                notes.push(format!(
                    "{}: not compared with its {before_label}: {e}",
                    s.name
                ));
                vs_before.push(None);
            }
        }
    }
    let cells = |c: Option<&CompareReport>, phase: &str, missing: &'static str| -> [Cell; 2] {
        STATS.map(|stat| match c {
            None => Cell::Missing(missing),
            Some(c) => match c.phases.get(phase) {
                Some(p) if p.present_in == Presence::Both => match p.stats.get(stat) {
                    Some(r) => Cell::Change(r.change_pct, r.verdict),
                    None => Cell::Missing("not compared"),
                },
                _ => Cell::Missing("no samples"),
            },
        })
    };
    let mut phases = Vec::new();
    for phase in PHASES {
        let name = phase.name();
        let mut rows = Vec::new();
        let mut reference: Vec<String> = Vec::new();
        for (i, s) in subjects.iter().enumerate() {
            let Some(h) = s.now.samples(name) else {
                continue;
            };
            let first = subjects
                .iter()
                .find(|r| r.now.report.mode == s.now.report.mode)
                .expect("an endpoint is of its own kind");
            if !reference.contains(&first.name) {
                reference.push(first.name.clone());
            }
            rows.push(Row {
                endpoint: s.name.clone(),
                count: h.len(),
                values: [
                    h.value_at_quantile(0.5) as f64,
                    h.value_at_quantile(0.99) as f64,
                ],
                vs_first: if first.name == s.name {
                    [Cell::Reference, Cell::Reference]
                } else {
                    cells(vs_first[i].as_ref(), name, "not compared")
                },
                vs_before: cells(vs_before[i].as_ref(), name, "new"),
            });
        }
        if !rows.is_empty() {
            phases.push(PhaseTable {
                phase,
                reference: reference.join("/"),
                rows,
            });
        }
    }
    Tables {
        before_label: before_label.to_string(),
        phases,
        notes,
        regression,
    }
}

/// The text: a table per phase, the notes, the method, the regression line. Ends with a
/// newline.
pub fn render(t: &Tables) -> String {
    let mut out = String::new();
    for p in &t.phases {
        let _ = writeln!(
            out,
            "{}  (vs {}: against the first endpoint of its kind; vs {}: against its own)",
            p.phase.name(),
            p.reference,
            t.before_label
        );
        let mut rows: Vec<Vec<String>> = vec![vec![
            "endpoint".into(),
            "samples".into(),
            "p50".into(),
            "p99".into(),
            format!("vs {} p50", p.reference),
            format!("vs {} p99", p.reference),
            format!("vs {} p50", t.before_label),
            format!("vs {} p99", t.before_label),
        ]];
        for r in &p.rows {
            let mut row = vec![
                r.endpoint.clone(),
                r.count.to_string(),
                dur_compact(r.values[0]),
                dur_compact(r.values[1]),
            ];
            row.extend(r.vs_first.iter().map(Cell::render));
            row.extend(r.vs_before.iter().map(Cell::render));
            rows.push(row);
        }
        align(&rows, &mut out);
        out.push('\n');
    }
    for n in &t.notes {
        let _ = writeln!(out, "note  {n}");
    }
    let _ = writeln!(
        out,
        "method  as `connbench compare` (its defaults): bootstrap of the histograms; \"within \
         noise\" = the interval of the change includes 0, or the change is below compare's \
         smallest change; \"not judged\" = too few samples for that percentile"
    );
    if let Some(r) = &t.regression {
        if r.passed() {
            let _ = writeln!(
                out,
                "regression  PASS: none of {} rows (p50, p95, p99 per phase) got slower than \
                 the {} by more than {} % beyond noise",
                r.checked, t.before_label, r.threshold_pct
            );
        } else {
            let _ = writeln!(
                out,
                "regression  FAIL: {} slower than the {} by more than {} % beyond noise",
                r.failed.join(", "),
                t.before_label,
                r.threshold_pct
            );
        }
    }
    out
}

/// Aligned columns: the first left-aligned, numbers right-aligned, comparisons left-aligned.
fn align(rows: &[Vec<String>], out: &mut String) {
    let n = rows[0].len();
    let mut w = vec![0usize; n];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(w[i] - c.chars().count());
            if (1..4).contains(&i) {
                line.push_str(&pad);
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{input, measured};
    use super::*;
    use crate::plan::Mode;

    fn subject(name: &str, now: Input, before: Option<Input>) -> Subject {
        Subject {
            name: name.into(),
            now,
            before,
        }
    }

    fn row<'t>(t: &'t Tables, phase: Phase, endpoint: &str) -> &'t Row {
        t.phases
            .iter()
            .find(|p| p.phase == phase)
            .and_then(|p| p.rows.iter().find(|r| r.endpoint == endpoint))
            .unwrap_or_else(|| panic!("{phase:?} {endpoint}"))
    }

    #[test]
    fn two_identical_histograms_are_no_change() {
        let a = input("a", &measured(Mode::Http, 1, 20_000, 30_000.0));
        let t = build(
            &[
                subject("api", a.clone(), Some(a.clone())),
                subject("copy", a.clone(), None),
            ],
            "previous run",
            Some(0.0),
        );
        for phase in [Phase::Ttfb, Phase::Total] {
            let r = row(&t, phase, "api");
            assert_eq!(r.vs_first, [Cell::Reference, Cell::Reference]);
            for c in &r.vs_before {
                assert_eq!(c, &Cell::Change(Some(0.0), Verdict::NoChange), "{phase:?}");
            }
            let r = row(&t, phase, "copy");
            for c in &r.vs_first {
                assert_eq!(c, &Cell::Change(Some(0.0), Verdict::NoChange), "{phase:?}");
            }
            assert_eq!(r.vs_before, [Cell::Missing("new"), Cell::Missing("new")]);
        }
        let reg = t.regression.as_ref().unwrap();
        assert!(reg.passed() && reg.checked > 0, "{reg:?}");
        let text = render(&t);
        assert!(text.contains("regression  PASS"), "{text}");
        assert!(text.contains("+0.0 % within noise"), "{text}");
    }

    #[test]
    fn a_slower_endpoint_and_a_regression_are_flagged() {
        let direct = input("direct", &measured(Mode::Http, 1, 20_000, 30_000.0));
        let relay = input("relay", &measured(Mode::Http, 2, 20_000, 45_000.0));
        let relay_before = input("relay-before", &measured(Mode::Http, 3, 20_000, 30_000.0));
        let t = build(
            &[
                subject("direct", direct, None),
                subject("relay", relay, Some(relay_before)),
            ],
            "baseline main",
            Some(10.0),
        );
        let p = t.phases.iter().find(|p| p.phase == Phase::Ttfb).unwrap();
        assert_eq!(p.reference, "direct");
        let r = row(&t, Phase::Ttfb, "relay");
        for c in r.vs_first.iter().chain(&r.vs_before) {
            match c {
                Cell::Change(Some(pct), Verdict::Slower) => {
                    assert!((pct - 50.0).abs() < 12.0, "{c:?}")
                }
                other => panic!("{other:?}"),
            }
        }
        let reg = t.regression.as_ref().unwrap();
        assert!(!reg.passed());
        assert!(
            reg.failed.contains(&"relay: ttfb.p50".to_string()),
            "{reg:?}"
        );
        let text = render(&t);
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("ttfb"))
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(table.len(), 4, "title, header, two rows: {text}");
        assert!(table[1].starts_with("endpoint  samples"), "{text}");
        assert!(
            table[1].contains("vs direct p50") && table[1].contains("vs baseline main p99"),
            "{text}"
        );
        assert!(
            table[2].starts_with("direct") && table[2].contains("reference"),
            "{text}"
        );
        assert!(
            table[3].starts_with("relay") && table[3].contains("% slower"),
            "{text}"
        );
        // Columns line up: every row as wide as its header up to the comparisons.
        let col = table[1][..table[1].find("vs direct p50").unwrap()]
            .chars()
            .count();
        let cells: Vec<char> = table[3].chars().collect();
        assert_eq!((cells[col - 1], cells[col]), (' ', '+'), "{text}");
        let fail = text
            .lines()
            .find(|l| l.starts_with("regression  FAIL: "))
            .unwrap();
        assert!(fail.contains("relay: ttfb.p50"), "{text}");
        // Phases without samples have no table; connect has one (20 samples each).
        assert!(!t.phases.iter().any(|p| p.phase == Phase::Upgrade));
        assert!(t.phases.iter().any(|p| p.phase == Phase::Connect));
    }

    #[test]
    fn websocket_endpoints_are_compared_with_the_first_websocket_endpoint() {
        let h = input("h", &measured(Mode::Http, 1, 2_000, 30_000.0));
        let w1 = input("w1", &measured(Mode::Ws, 2, 2_000, 100_000.0));
        let w2 = input("w2", &measured(Mode::Ws, 3, 2_000, 100_000.0));
        let t = build(
            &[
                subject("h", h, None),
                subject("w1", w1, None),
                subject("w2", w2, None),
            ],
            "previous run",
            None,
        );
        let p = t.phases.iter().find(|p| p.phase == Phase::Latency).unwrap();
        assert_eq!(p.reference, "w1");
        assert_eq!(row(&t, Phase::Latency, "w1").vs_first[0], Cell::Reference);
        assert!(matches!(
            row(&t, Phase::Latency, "w2").vs_first[0],
            Cell::Change(_, _)
        ));
        // Connect is in both kinds' tables, each against its own kind's first.
        assert_eq!(row(&t, Phase::Connect, "h").vs_first[0], Cell::Reference);
        assert_eq!(row(&t, Phase::Connect, "w1").vs_first[0], Cell::Reference);
        let p = t.phases.iter().find(|p| p.phase == Phase::Connect).unwrap();
        assert_eq!(p.reference, "h/w1");
        assert!(t.regression.is_none());
    }
}
