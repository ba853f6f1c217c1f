//! `--hlog FILE`: the run's per-interval phase histograms as an HdrHistogram interval log, the
//! format HdrHistogram's own tools read (Java `HistogramLogProcessor`, HdrHistogram_py,
//! hdrhistogram-rs `IntervalLogIterator`), so a run can be plotted over time or merged with runs
//! from other machines without averaging percentiles.
//!
//! Layout (log format 1.3, the one `HistogramLogProcessor` expects):
//!
//! 1. Comments naming the producer and the unit, then `#[StartTime: …]` and `#[BaseTime: …]`,
//!    both the wall-clock start of the measured window (`RunResult::started_at`), so every
//!    interval timestamp is an offset into the window.
//! 2. `#[MaxValueDivisor: 1000000.000]`: the informational max column is in ms, like the Java
//!    writer's default; the histograms themselves hold nanoseconds. (No legend line: every
//!    reader skips it, and the hdrhistogram-rs writer cannot emit one after its headers.)
//! 3. One line per (interval, phase): `Tag=<phase>,start,length,max,HIST…`
//!    with the histogram in V2 + deflate, intervals in time order and, within one interval,
//!    phases in the order the caller gives. Phases without samples in an interval get no line.
//!
//! This module only formats what the engine measured: it must not read clocks, merge workers or
//! decide which phases a mode has (the caller passes them).

use std::io::{self, Write};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use super::RunResult;
use crate::metrics::Phase;

/// Divisor of the max column: values are ns, the column shows ms (the Java writer's default
/// ratio, so `HistogramLogProcessor` output looks the same as for a Java-written log).
const MAX_VALUE_DIVISOR: f64 = 1e6;

/// Write the interval log of `run` to the file `path` (created or truncated), one line per
/// interval and phase of `phases` that has samples.
pub fn write(path: &str, run: &RunResult, phases: &[Phase]) -> io::Result<()> {
    let mut w = io::BufWriter::new(std::fs::File::create(path)?);
    write_to(&mut w, run, phases)?;
    // Flush explicitly: BufWriter's drop would swallow a late write error (e.g. disk full).
    w.flush()
}

/// [`write`] into any writer (the file path is only opened by [`write`]).
pub fn write_to(w: &mut impl Write, run: &RunResult, phases: &[Phase]) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "[Logged with connbench {}]",
            env!("CARGO_PKG_VERSION")
        ))
        .add_comment("[Histogram log format version 1.3]")
        .add_comment("[values in nanoseconds; one Tag per phase]")
        .with_start_time(run.started_at)
        .with_base_time(run.started_at)
        .with_max_value_divisor(MAX_VALUE_DIVISOR)
        .begin_log_with(w, &mut serializer)?;
    // The engine hands intervals over in time order; sorting (stable) keeps that promise even
    // if a future engine does not, since readers assume ordered logs.
    let mut order: Vec<&crate::metrics::Interval> = run.intervals.iter().collect();
    order.sort_by_key(|i| i.start);
    for interval in order {
        for &phase in phases {
            let Some((_, h)) = interval.hists.iter().find(|(p, _)| *p == phase) else {
                continue;
            };
            if h.is_empty() {
                continue;
            }
            let tag = Tag::new(phase.name()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("phase name {:?} is not a valid hlog tag", phase.name()),
                )
            })?;
            log.write_histogram(h, interval.start, interval.length, Some(tag))
                .map_err(|e| io::Error::other(format!("hlog: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;

    use super::*;
    use crate::metrics::{new_histogram, Interval, Recorder};

    fn run_with(intervals: Vec<Interval>) -> RunResult {
        RunResult {
            recorder: Recorder::new(),
            workers: Vec::new(),
            started_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            elapsed: Duration::from_secs(3),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: 0,
            intervals,
            stages: Vec::new(),
            worker_panics: Vec::new(),
            time_wait: None,
        }
    }

    /// Three 1 s intervals (handed over out of order) with ttfb and total samples, connect only
    /// in the first; returns the run and the whole-run histogram of each phase.
    fn sample() -> (RunResult, [Histogram<u64>; 3]) {
        let mut whole = [new_histogram(), new_histogram(), new_histogram()];
        let mut intervals = Vec::new();
        for k in 0..3u64 {
            let mut hists = Vec::new();
            if k == 0 {
                let mut c = new_histogram();
                c.record_n(40_000, 2).expect("in range");
                whole[0].add(&c).expect("same bounds");
                hists.push((Phase::Connect, c));
            }
            let mut ttfb = new_histogram();
            let mut total = new_histogram();
            for i in 0..(100 + k * 50) {
                ttfb.record(30_000 + i * 7 + k * 1_000).expect("in range");
                total.record(50_000 + i * 11 + k * 5_000).expect("in range");
            }
            whole[1].add(&ttfb).expect("same bounds");
            whole[2].add(&total).expect("same bounds");
            // An empty phase histogram must not produce a line.
            hists.push((Phase::Tls, new_histogram()));
            hists.push((Phase::Total, total));
            hists.push((Phase::Ttfb, ttfb));
            intervals.push(Interval {
                start: Duration::from_secs(k),
                length: Duration::from_secs(1),
                hists,
            });
        }
        intervals.swap(0, 2);
        (run_with(intervals), whole)
    }

    #[test]
    fn round_trips_through_the_reference_reader() {
        let (run, whole) = sample();
        let mut buf = Vec::new();
        write_to(&mut buf, &run, &Phase::HTTP).expect("in memory");
        let text = String::from_utf8(buf.clone()).expect("utf-8");
        assert!(
            text.contains("#[Histogram log format version 1.3]"),
            "{text}"
        );

        let mut start = None;
        let mut base = None;
        let mut lines = Vec::new();
        let mut sums = [new_histogram(), new_histogram(), new_histogram()];
        for entry in IntervalLogIterator::new(&buf) {
            match entry.expect("parses") {
                LogEntry::StartTime(t) => start = Some(t),
                LogEntry::BaseTime(t) => base = Some(t),
                LogEntry::Interval(i) => {
                    let tag = i.tag().expect("tagged").as_str().to_string();
                    let bytes = base64::Engine::decode(
                        &base64::engine::general_purpose::STANDARD,
                        i.encoded_histogram(),
                    )
                    .expect("base64");
                    let h: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut bytes.as_slice())
                        .expect("V2 deflate");
                    let slot = match tag.as_str() {
                        "connect" => 0,
                        "ttfb" => 1,
                        "total" => 2,
                        other => panic!("unexpected tag {other}"),
                    };
                    sums[slot].add(&h).expect("same bounds");
                    // The max column is in ms.
                    assert!((i.max() - h.max() as f64 / 1e6).abs() < 1e-3, "{}", i.max());
                    lines.push((i.start_timestamp(), tag, h.len(), i.duration()));
                }
            }
        }
        let t0 = Duration::from_millis(1_700_000_000_250);
        assert_eq!(start, Some(t0));
        assert_eq!(base, Some(t0));
        // Time order, phases in the given order, no line for empty or missing phases.
        let got: Vec<(u64, &str, u64)> = lines
            .iter()
            .map(|(t, tag, n, d)| {
                assert_eq!(*d, Duration::from_secs(1));
                (t.as_secs(), tag.as_str(), *n)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "connect", 2),
                (0, "ttfb", 100),
                (0, "total", 100),
                (1, "ttfb", 150),
                (1, "total", 150),
                (2, "ttfb", 200),
                (2, "total", 200),
            ]
        );
        for (sum, whole) in sums.iter().zip(whole.iter()) {
            assert_eq!(sum, whole);
            assert_eq!(sum.max(), whole.max());
        }
    }

    #[test]
    fn phases_not_asked_for_are_left_out() {
        let (run, _) = sample();
        let mut buf = Vec::new();
        write_to(&mut buf, &run, &[Phase::Total]).expect("in memory");
        let tags: Vec<String> = IntervalLogIterator::new(&buf)
            .filter_map(|e| match e.expect("parses") {
                LogEntry::Interval(i) => Some(i.tag().expect("tagged").as_str().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(tags, vec!["total"; 3]);
    }

    #[test]
    fn a_run_without_intervals_is_a_valid_empty_log() {
        let run = run_with(Vec::new());
        let mut buf = Vec::new();
        write_to(&mut buf, &run, &Phase::HTTP).expect("in memory");
        let entries: Vec<_> = IntervalLogIterator::new(&buf)
            .map(|e| e.expect("parses"))
            .collect();
        assert_eq!(entries.len(), 2, "StartTime and BaseTime only");
    }

    #[test]
    fn write_creates_the_file_and_reports_a_bad_path() {
        let (run, _) = sample();
        let dir = std::env::temp_dir().join(format!("connbench-hlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("run.hlog");
        let path = path.to_str().expect("utf-8 temp path");
        write(path, &run, &Phase::HTTP).expect("writes");
        let bytes = std::fs::read(path).expect("written");
        let n = IntervalLogIterator::new(&bytes)
            .filter(|e| matches!(e, Ok(LogEntry::Interval(_))))
            .count();
        assert_eq!(n, 7);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(write("/nonexistent-dir/connbench/x.hlog", &run, &Phase::HTTP).is_err());
    }
}
