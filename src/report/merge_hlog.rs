//! `connbench merge --hlog OUT --hlog-in A.hlog …`: one interval log from the interval logs of
//! runs made together on several machines, exactly — every input interval's histogram is added
//! whole into one output interval, never split, scaled or averaged.
//!
//! Rules:
//! 1. Times are absolute: an interval's start is its log's `BaseTime` plus its timestamp (as
//!    HdrHistogram's readers do; a log with only `StartTime` uses the same heuristic as theirs),
//!    to the millisecond, the precision the logs are written with.
//! 2. The output windows are one second long and lie on one grid of absolute time: they start
//!    at the earliest input's `StartTime` plus whole seconds. Each input interval goes whole into
//!    the window its start is nearest to (a tie goes to the later one). Runs started with a
//!    common `--start-at` have their intervals a few ms after the grid's seconds; the largest
//!    distance from a window's start is reported ([`HlogMerged::worst_offset_ms`]) and a
//!    distance over [`ALIGNED_MS`] is warned about: such logs were not started together.
//! 3. Within a window, tags (phases) keep the order in which the inputs first used them; each
//!    window's histogram of a tag is the sum of the inputs' histograms of that tag assigned to
//!    it, so the sum over windows of a tag is the sum over inputs (what the merged JSON report
//!    holds).
//! 4. Each log must belong to the report given at the same position: its `StartTime` is the
//!    report's `started_at_unix_ms` (± 1 ms, the rounding of the log's 3 decimals), and the sum of
//!    its intervals of each tag holds exactly the samples of the report's phase of that name.
//!    Anything else (another run's log, a truncated log, logs in another order) is refused
//!    naming the file, so the merged log always describes the merged report.
//! 5. The inputs are read one at a time and only their encoded intervals (a few hundred bytes
//!    each) are kept; windows are decoded, summed, written and dropped one at a time, so memory
//!    does not grow with the number of windows × tags × histogram size.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde_json::Value;

use super::hdr;
use super::merge::MergeError;
use crate::metrics::new_histogram;

/// Largest distance (ms) of an input interval's start from its window's start that counts as
/// aligned (rule 2): beyond it the inputs were not started together.
pub const ALIGNED_MS: i64 = 100;

/// Largest interval log read (64 MiB): a run of an hour with four phases writes about 5 MiB.
pub const MAX_HLOG_BYTES: u64 = 64 << 20;

/// One input interval, kept encoded until its window is written (rule 5).
#[derive(Debug)]
struct Entry {
    /// Absolute start, ms since the Unix epoch.
    start_ms: i64,
    /// Length, ms.
    length_ms: i64,
    /// Index into [`HlogMerge::tags`].
    tag: usize,
    /// The base64 V2+deflate histogram, as in the log.
    encoded: String,
    /// Which input (for errors).
    input: usize,
}

/// The running merge of interval logs: their intervals, encoded, and the inputs' names.
#[derive(Debug, Default)]
pub struct HlogMerge {
    entries: Vec<Entry>,
    tags: Vec<String>,
    files: Vec<String>,
    /// Earliest `StartTime` of the inputs, ms (the grid's origin).
    origin_ms: Option<i64>,
}

/// What the merged log holds, for the text summary and the tests.
#[derive(Debug, Clone, PartialEq)]
pub struct HlogMerged {
    /// Input logs.
    pub inputs: usize,
    /// Input intervals (one per tag and interval).
    pub intervals_in: usize,
    /// Output windows.
    pub windows: usize,
    /// Largest distance of an input interval's start from its window's start, ms.
    pub worst_offset_ms: i64,
    /// Start of the first window, ms since the Unix epoch.
    pub start_ms: i64,
}

impl HlogMerged {
    /// The warning when the inputs were not started together (rule 2), if they were not.
    pub fn warning(&self) -> Option<String> {
        (self.worst_offset_ms > ALIGNED_MS).then(|| {
            format!(
                "the interval logs' intervals start up to {} ms away from the merged \
                 one-second windows: the runs were not started together (use a common \
                 --start-at), so each merged second mixes neighbouring seconds",
                self.worst_offset_ms
            )
        })
    }
}

fn bad(file: &str, problem: impl Into<String>) -> MergeError {
    MergeError::Input {
        file: file.to_string(),
        problem: problem.into(),
    }
}

/// Seconds (a log's 3-decimal timestamp) to whole ms.
fn ms(secs: f64) -> i64 {
    (secs * 1e3).round() as i64
}

impl HlogMerge {
    /// An empty merge.
    pub fn new() -> HlogMerge {
        HlogMerge::default()
    }

    /// Read the interval log `file` (its bytes) and check it against `report`, the JSON report
    /// of the same run (rule 4), then keep its intervals.
    pub fn add(&mut self, file: &str, bytes: &[u8], report: &Value) -> Result<(), MergeError> {
        let input = self.files.len();
        let mut start_ms: Option<i64> = None;
        let mut base_ms: Option<i64> = None;
        let mut totals: Vec<(usize, Histogram<u64>)> = Vec::new();
        let mut entries = Vec::new();
        for (n, e) in IntervalLogIterator::new(bytes).enumerate() {
            let e = e.map_err(|e| {
                bad(
                    file,
                    format!(
                        "not an HdrHistogram interval log (entry {}: {e:?}); give the files \
                         written by --hlog",
                        n + 1
                    ),
                )
            })?;
            let iv = match e {
                LogEntry::StartTime(t) => {
                    start_ms.get_or_insert(ms(t.as_secs_f64()));
                    continue;
                }
                LogEntry::BaseTime(t) => {
                    base_ms = Some(ms(t.as_secs_f64()));
                    continue;
                }
                LogEntry::Interval(iv) => iv,
            };
            let ts = ms(iv.start_timestamp().as_secs_f64());
            // Rule 1: BaseTime, else HdrHistogram's StartTime heuristic (deltas when more than
            // a year below StartTime), else absolute.
            const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;
            let abs = match (base_ms, start_ms) {
                (Some(b), _) => b + ts,
                (None, Some(s)) if ts < s - YEAR_MS => s + ts,
                _ => ts,
            };
            let tag_name = iv.tag().map(|t| t.as_str()).unwrap_or("").to_string();
            if tag_name.is_empty() {
                return Err(bad(
                    file,
                    "an interval without a Tag=: connbench logs tag every interval with its \
                     phase; give the files written by --hlog",
                ));
            }
            let h = hdr::decode(iv.encoded_histogram()).map_err(|e| {
                bad(
                    file,
                    format!("interval at {:.3} s, tag {tag_name}: {e}", ts as f64 / 1e3),
                )
            })?;
            let tag = match self.tags.iter().position(|t| *t == tag_name) {
                Some(i) => i,
                None => {
                    self.tags.push(tag_name.clone());
                    self.tags.len() - 1
                }
            };
            match totals.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, sum)) => add(sum, &h, file, &tag_name)?,
                None => {
                    let mut sum = new_histogram();
                    add(&mut sum, &h, file, &tag_name)?;
                    totals.push((tag, sum));
                }
            }
            entries.push(Entry {
                start_ms: abs,
                length_ms: ms(iv.duration().as_secs_f64()),
                tag,
                encoded: iv.encoded_histogram().to_string(),
                input,
            });
        }
        let start_ms = start_ms.ok_or_else(|| {
            bad(
                file,
                "no #[StartTime: …] line: not an interval log written by connbench --hlog",
            )
        })?;
        self.check_report(file, start_ms, &totals, report)?;
        self.origin_ms = Some(self.origin_ms.map_or(start_ms, |o| o.min(start_ms)));
        self.files.push(file.to_string());
        self.entries.extend(entries);
        Ok(())
    }

    /// Rule 4: the log belongs to `report`.
    fn check_report(
        &self,
        file: &str,
        start_ms: i64,
        totals: &[(usize, Histogram<u64>)],
        report: &Value,
    ) -> Result<(), MergeError> {
        let fix = "give each report's own --hlog file, in the reports' order";
        let report_ms = report
            .get("started_at_unix_ms")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(file, "its report has no started_at_unix_ms"))?;
        if (start_ms - report_ms).abs() > 1 {
            return Err(bad(
                file,
                format!(
                    "starts at {start_ms} ms but its report's window starts at {report_ms} ms: \
                     not the same run; {fix}"
                ),
            ));
        }
        let phases = report.get("phases").and_then(Value::as_object);
        let phase_hist = |name: &str| -> Result<Option<Histogram<u64>>, MergeError> {
            match phases.and_then(|p| p.get(name)) {
                None => Ok(None),
                Some(p) => {
                    let enc = p.get("hdr").and_then(Value::as_str).ok_or_else(|| {
                        bad(file, format!("its report's phases.{name} has no hdr"))
                    })?;
                    hdr::decode(enc)
                        .map(Some)
                        .map_err(|e| bad(file, format!("its report's phases.{name}: {e}")))
                }
            }
        };
        for (tag, sum) in totals {
            let name = &self.tags[*tag];
            let want = phase_hist(name)?.ok_or_else(|| {
                bad(
                    file,
                    format!("has tag {name}, a phase its report does not have; {fix}"),
                )
            })?;
            if !same_samples(sum, &want) {
                return Err(bad(
                    file,
                    format!(
                        "its {name} intervals hold {} samples that differ from its report's \
                         phases.{name} ({} samples): not the same run, or a truncated log; {fix}",
                        sum.len(),
                        want.len()
                    ),
                ));
            }
        }
        // A phase with samples must appear in the log.
        for (name, _) in phases.into_iter().flatten() {
            let logged = totals.iter().any(|(t, _)| self.tags[*t] == *name);
            if !logged && phase_hist(name)?.is_some_and(|h| !h.is_empty()) {
                return Err(bad(
                    file,
                    format!(
                        "has no {name} intervals but its report's phases.{name} has samples; {fix}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Write the merged log (rules 2, 3, 5) and say what it holds.
    pub fn write_to(&self, w: &mut impl Write) -> Result<HlogMerged, io::Error> {
        let origin = self.origin_ms.unwrap_or(0);
        // Window index of an interval: the nearest grid second (ties to the later one).
        let window = |e: &Entry| (e.start_ms - origin + 500).div_euclid(1000);
        let mut by_window: BTreeMap<i64, Vec<&Entry>> = BTreeMap::new();
        let mut worst = 0i64;
        for e in &self.entries {
            let k = window(e);
            worst = worst.max((e.start_ms - (origin + k * 1000)).abs());
            by_window.entry(k).or_default().push(e);
        }
        let first_k = by_window.keys().next().copied().unwrap_or(0);
        let start_ms = origin + first_k.min(0) * 1000;
        let start = UNIX_EPOCH + Duration::from_millis(start_ms.max(0) as u64);
        let mut serializer = V2DeflateSerializer::new();
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "[Logged with connbench {} merge]",
                env!("CARGO_PKG_VERSION")
            ))
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[values in nanoseconds; one Tag per phase]")
            .add_comment(&format!(
                "[Merged from {} interval logs: each interval is the exact sum of the inputs' \
                 intervals starting nearest to it]",
                self.files.len()
            ))
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1e6)
            .begin_log_with(w, &mut serializer)?;
        for (&k, entries) in &by_window {
            let offset = Duration::from_millis(((k - first_k.min(0)) * 1000) as u64);
            let length = entries.iter().map(|e| e.length_ms).max().unwrap_or(0);
            let length = Duration::from_millis(length.max(0) as u64);
            for (tag, name) in self.tags.iter().enumerate() {
                let mut sum: Option<Histogram<u64>> = None;
                for e in entries.iter().filter(|e| e.tag == tag) {
                    let file = &self.files[e.input];
                    let h = hdr::decode(&e.encoded)
                        .map_err(|err| io::Error::other(format!("{file}: {err}")))?;
                    let s = sum.get_or_insert_with(new_histogram);
                    add(s, &h, file, name).map_err(|err| io::Error::other(err.to_string()))?;
                }
                let Some(sum) = sum.filter(|s| !s.is_empty()) else {
                    continue;
                };
                let tag = Tag::new(name).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("bad tag {name:?}"))
                })?;
                log.write_histogram(&sum, offset, length, Some(tag))
                    .map_err(|e| io::Error::other(format!("hlog: {e}")))?;
            }
        }
        Ok(HlogMerged {
            inputs: self.files.len(),
            intervals_in: self.entries.len(),
            windows: by_window.len(),
            worst_offset_ms: worst,
            start_ms,
        })
    }
}

/// `sum += h`, or an error naming the file and tag when `h` does not fit connbench's range.
fn add(
    sum: &mut Histogram<u64>,
    h: &Histogram<u64>,
    file: &str,
    tag: &str,
) -> Result<(), MergeError> {
    sum.add(h).map_err(|e| {
        bad(
            file,
            format!("tag {tag}: histogram does not fit connbench's range (1 ns .. 60 s): {e:?}"),
        )
    })
}

/// Both histograms hold the same samples (the same count in every bucket), whatever their
/// bounds.
pub fn same_samples(a: &Histogram<u64>, b: &Histogram<u64>) -> bool {
    let buckets = |h: &Histogram<u64>| -> Vec<(u64, u64)> {
        h.iter_recorded()
            .map(|v| {
                (
                    h.highest_equivalent(v.value_iterated_to()),
                    v.count_at_value(),
                )
            })
            .collect()
    };
    a.len() == b.len() && buckets(a) == buckets(b)
}

/// Read an interval log file (at most [`MAX_HLOG_BYTES`]).
pub fn load(path: &str) -> Result<Vec<u8>, MergeError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_HLOG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_HLOG_BYTES {
        return Err(bad(
            path,
            format!(
                "larger than {} MiB: not a connbench interval log",
                MAX_HLOG_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::metrics::{Interval, Phase, Recorder};
    use crate::report::RunResult;

    /// A run that started at `start_ms` with `n` one-second intervals of ttfb and total samples
    /// derived from `seed`; returns its interval log and a report holding its phases.
    fn run(start_ms: u64, n: u64, seed: u64) -> (Vec<u8>, Value, Vec<[Histogram<u64>; 2]>) {
        let mut per = Vec::new();
        let mut intervals = Vec::new();
        let mut whole = [new_histogram(), new_histogram()];
        for k in 0..n {
            let mut ttfb = new_histogram();
            let mut total = new_histogram();
            for i in 0..(50 + seed * 7 + k * 3) {
                ttfb.record(20_000 + (i * 131 + seed * 977 + k * 53) % 90_000)
                    .unwrap();
                total
                    .record(40_000 + (i * 211 + seed * 389 + k * 71) % 400_000)
                    .unwrap();
            }
            whole[0].add(&ttfb).unwrap();
            whole[1].add(&total).unwrap();
            per.push([ttfb.clone(), total.clone()]);
            intervals.push(Interval {
                start: Duration::from_secs(k),
                length: Duration::from_secs(1),
                hists: vec![(Phase::Ttfb, ttfb), (Phase::Total, total)],
            });
        }
        let started_at = UNIX_EPOCH + Duration::from_millis(start_ms);
        let r = RunResult {
            recorder: Recorder::new(),
            workers: Vec::new(),
            started_at,
            elapsed: Duration::from_secs(n),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: 0,
            intervals,
            stages: Vec::new(),
            worker_panics: Vec::new(),
            time_wait: None,
        };
        let mut log = Vec::new();
        crate::report::hlog::write_to(&mut log, &r, &[Phase::Ttfb, Phase::Total]).unwrap();
        let report = json!({
            "started_at_unix_ms": start_ms,
            "phases": {
                "connect": {"hdr": hdr::encode(&new_histogram())},
                "ttfb": {"hdr": hdr::encode(&whole[0])},
                "total": {"hdr": hdr::encode(&whole[1])},
            }
        });
        (log, report, per)
    }

    /// Every interval of a log: (start ms since the Unix epoch, tag, histogram).
    fn read_log(bytes: &[u8]) -> Vec<(i64, String, Histogram<u64>)> {
        let mut base = 0;
        let mut out = Vec::new();
        for e in IntervalLogIterator::new(bytes) {
            match e.expect("parses") {
                LogEntry::BaseTime(t) => base = ms(t.as_secs_f64()),
                LogEntry::StartTime(_) => {}
                LogEntry::Interval(i) => out.push((
                    base + ms(i.start_timestamp().as_secs_f64()),
                    i.tag().unwrap().as_str().to_string(),
                    hdr::decode(i.encoded_histogram()).unwrap(),
                )),
            }
        }
        out
    }

    const T: u64 = 1_790_000_000_000;

    #[test]
    fn merged_windows_are_exact_sums_aligned_on_absolute_time() {
        // Two runs started together (3 and 10 ms late), one a second later.
        let inputs = [run(T + 3, 4, 1), run(T + 10, 4, 2), run(T + 1_002, 3, 3)];
        let mut m = HlogMerge::new();
        for (i, (log, report, _)) in inputs.iter().enumerate() {
            m.add(&format!("{i}.hlog"), log, report).expect("belongs");
        }
        let mut out = Vec::new();
        let got = m.write_to(&mut out).expect("in memory");
        assert_eq!(got.inputs, 3);
        assert_eq!(got.intervals_in, (4 + 4 + 3) * 2);
        assert_eq!(got.windows, 4);
        assert_eq!(
            got.worst_offset_ms, 7,
            "10 ms late against the grid at +3 ms"
        );
        assert_eq!(got.start_ms, (T + 3) as i64);
        assert!(got.warning().is_none());

        let lines = read_log(&out);
        assert_eq!(lines.len(), 4 * 2, "one line per window and tag");
        for (k, pair) in lines.chunks(2).enumerate() {
            let k64 = k as i64;
            for (j, (start, tag, h)) in pair.iter().enumerate() {
                assert_eq!(*start, (T + 3) as i64 + k64 * 1000, "window {k}");
                assert_eq!(tag, ["ttfb", "total"][j], "tags keep their first order");
                // What must be in window k: interval k of the first two runs, k-1 of the third.
                let mut want = new_histogram();
                want.add(&inputs[0].2[k][j]).unwrap();
                want.add(&inputs[1].2[k][j]).unwrap();
                if k >= 1 {
                    want.add(&inputs[2].2[k - 1][j]).unwrap();
                }
                assert!(same_samples(h, &want), "window {k} tag {tag}");
            }
        }
    }

    #[test]
    fn a_log_of_another_run_a_truncated_log_or_logs_out_of_order_are_refused() {
        let (a_log, a_rep, _) = run(T, 3, 1);
        let (b_log, b_rep, _) = run(T + 20, 3, 2);
        // Out of order: b's log against a's report.
        let e = HlogMerge::new().add("b.hlog", &b_log, &a_rep).unwrap_err();
        assert!(e.to_string().starts_with("b.hlog: starts at"), "{e}");
        assert!(e.to_string().contains("in the reports' order"), "{e}");
        // Same start, other samples.
        let (c_log, _, _) = run(T, 3, 5);
        let e = HlogMerge::new().add("c.hlog", &c_log, &a_rep).unwrap_err();
        assert!(e.to_string().contains("differ from its report"), "{e}");
        // The last line dropped: its samples are missing.
        let text = String::from_utf8(a_log.clone()).unwrap();
        let cut: String = text
            .lines()
            .take(text.lines().count() - 1)
            .map(|l| format!("{l}\n"))
            .collect();
        let e = HlogMerge::new()
            .add("a.hlog", cut.as_bytes(), &a_rep)
            .unwrap_err();
        assert!(e.to_string().contains("a truncated log"), "{e}");
        // Cut in the middle of a line, or trailing bytes that are not a log line.
        let half = &a_log[..a_log.len() - 20];
        assert!(HlogMerge::new().add("a.hlog", half, &a_rep).is_err());
        let mut trailing = a_log.clone();
        trailing.extend_from_slice(b"Tag=total,not,a,line\n");
        assert!(HlogMerge::new().add("a.hlog", &trailing, &a_rep).is_err());
        // Whole, it belongs.
        HlogMerge::new()
            .add("a.hlog", &a_log, &a_rep)
            .expect("a's own log");
        HlogMerge::new()
            .add("b.hlog", &b_log, &b_rep)
            .expect("b's own log");
        // A report phase with samples that the log lacks.
        let mut more = a_rep.clone();
        let mut h = new_histogram();
        h.record(5).unwrap();
        more["phases"]["connect"]["hdr"] = json!(hdr::encode(&h));
        let e = HlogMerge::new().add("a.hlog", &a_log, &more).unwrap_err();
        assert!(e.to_string().contains("has no connect intervals"), "{e}");
    }

    #[test]
    fn foreign_files_are_refused_naming_the_file() {
        let (_, rep, _) = run(T, 1, 1);
        for junk in [&b""[..], b"{\"schema\": 1}\n", b"\x00\x01\x02"] {
            let e = HlogMerge::new().add("x.hlog", junk, &rep).unwrap_err();
            assert!(e.to_string().starts_with("x.hlog: "), "{e}");
        }
    }

    #[test]
    fn logs_not_started_together_are_warned_about() {
        let inputs = [run(T, 2, 1), run(T + 400, 2, 2)];
        let mut m = HlogMerge::new();
        for (log, rep, _) in &inputs {
            m.add("x.hlog", log, rep).unwrap();
        }
        let mut out = Vec::new();
        let got = m.write_to(&mut out).unwrap();
        assert_eq!(got.worst_offset_ms, 400);
        assert!(got.warning().unwrap().contains("--start-at"));
        // Still exact: every sample of every input is in the merged log once.
        let held: u64 = read_log(&out).iter().map(|(_, _, h)| h.len()).sum();
        let given: u64 = inputs
            .iter()
            .flat_map(|(_, _, per)| per.iter().flatten())
            .map(Histogram::len)
            .sum();
        assert_eq!(held, given);
    }
}
