//! What a worker shares with the coordinator while it runs (the live counters of the progress
//! line and its percentiles of the last second, the interval histograms of `--hlog`), what it
//! hands back when it ends, and the progress line itself (`--progress`).
//!
//! Rules of the live line:
//! 1. The hot path pays one branch: [`Recorder::record`] also records the line's one phase into
//!    a small 2-significant-digit histogram ([`Recorder::enable_recent`]). The worker adds it
//!    into its shared [`Recent`] and resets it every [`RECENT_FLUSH`] (`try_lock`: a worker
//!    never waits for the coordinator); the coordinator takes every worker's once a second.
//!    Nothing is allocated per request; `--hlog`'s intervals are separate and untouched.
//! 2. The line is built by pure functions ([`format_load`], [`format_probe`]) from a snapshot,
//!    into a reused buffer; [`Drawer`] redraws it in place on a terminal (`\r`, erase line) or
//!    prints one newline-ended line a second elsewhere (`--progress always` in CI logs), and
//!    erases it before the report is printed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::run::WorkerStats;
use crate::metrics::{Phase, Recorder};
use crate::plan::{ProgressWhen, SeriesPos, Stop, WindowKind};

/// State shared between one worker and the coordinator: written by the worker with relaxed
/// stores once per loop iteration, read by the progress line. Cache-line aligned so workers
/// never share a line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Live {
    /// Responses fully framed in the measured window.
    pub responses: AtomicU64,
    /// Failures in the measured window.
    pub errors: AtomicU64,
    /// Connections currently open.
    pub open: AtomicU64,
    /// The worker has sent its whole `-n` share and seen every answer.
    pub done: AtomicBool,
    /// The run's start, the same instant for every worker: set by the coordinator before it
    /// releases the workers. Schedules (`-R`, `--conn-rate`, stages) and the window count from
    /// it, so a worker whose thread got the CPU late shows that as send or open lag instead of
    /// owing fewer requests. Unset (a worker run on its own), the loop starts when it starts.
    pub start: std::sync::OnceLock<Instant>,
    /// WebSocket messages sent.
    pub sent: AtomicU64,
    /// WebSocket reconnections.
    pub reconnects: AtomicU64,
    /// The live line's percentiles of the last second (rule 1); None when no line is drawn.
    pub recent: Option<Recent>,
    /// One-second interval histograms (`--hlog`), pushed by the worker once a second and read
    /// by the coordinator after the join; None when interval logging is off.
    pub intervals: Option<std::sync::Mutex<Vec<IntervalPart>>>,
}

/// One worker's share of interval `index` (seconds since the measured window began).
pub type IntervalPart = (u32, Vec<(Phase, hdrhistogram::Histogram<u64>)>);

/// Cuts the worker's interval histograms once a second (only when `--hlog` asked for them).
#[derive(Debug)]
pub struct IntervalClock {
    next: Option<Instant>,
    index: u32,
}

impl IntervalClock {
    /// Off unless the live cell collects intervals; else the first cut is a second after `from`.
    pub fn new(live: &Live, rec: &mut Recorder, from: Instant) -> IntervalClock {
        let next = live.intervals.as_ref().map(|_| {
            rec.enable_intervals();
            from + Duration::from_secs(1)
        });
        IntervalClock { next, index: 0 }
    }

    /// When the next cut is due, if interval logging is on.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Restart the intervals (the warm-up ended at `from`).
    pub fn restart(&mut self, from: Instant) {
        if self.next.is_some() {
            self.next = Some(from + Duration::from_secs(1));
            self.index = 0;
        }
    }

    /// Cut an interval if one is due (or, with `last`, whatever is left).
    pub fn tick(&mut self, now: Instant, last: bool, rec: &mut Recorder, live: &Live) {
        let (Some(next), Some(store)) = (self.next, &live.intervals) else {
            return;
        };
        if now < next && !last {
            return;
        }
        let part = rec.cut_interval();
        if !part.is_empty() {
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.index, part));
        }
        self.index += 1;
        self.next = Some(next + Duration::from_secs(1));
    }
}

/// One worker's samples of the live line's phase since the coordinator last took them.
#[derive(Debug)]
pub struct Recent {
    /// The phase the line shows (total or corrected for HTTP, latency or rtt for WebSocket).
    pub phase: Phase,
    /// Added to by the worker, taken (added and reset) by the coordinator.
    pub hist: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Recent {
    /// An empty one for `phase`.
    pub fn new(phase: Phase) -> Recent {
        Recent {
            phase,
            hist: Mutex::new(crate::metrics::new_recent_histogram()),
        }
    }
}

/// How often a worker hands its recent samples over (rule 1).
pub const RECENT_FLUSH: Duration = Duration::from_millis(250);

/// Hands the worker's recent samples to its [`Recent`] every [`RECENT_FLUSH`] (rule 1).
#[derive(Debug)]
pub struct RecentClock {
    next: Option<Instant>,
}

impl RecentClock {
    /// Off unless the live cell has a [`Recent`]; else the recorder records its phase too.
    pub fn new(live: &Live, rec: &mut Recorder, from: Instant) -> RecentClock {
        let next = live.recent.as_ref().map(|r| {
            rec.enable_recent(r.phase);
            from + RECENT_FLUSH
        });
        RecentClock { next }
    }

    /// When the next hand-over is due, if the line is on.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Hand the samples over if due (or, with `last`, now). A contended lock is retried on the
    /// next turn.
    pub fn tick(&mut self, now: Instant, last: bool, rec: &mut Recorder, live: &Live) {
        let (Some(next), Some(shared)) = (self.next, &live.recent) else {
            return;
        };
        if now < next && !last {
            return;
        }
        let Some(local) = rec.recent() else {
            // A stage window took the recorder (and its settings) away: start again.
            rec.enable_recent(shared.phase);
            self.next = Some(now + RECENT_FLUSH);
            return;
        };
        if !local.is_empty() {
            let mut into = if last {
                shared.hist.lock().unwrap_or_else(|e| e.into_inner())
            } else {
                match shared.hist.try_lock() {
                    Ok(g) => g,
                    Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => return,
                }
            };
            // Same bounds: never fails, never allocates.
            let _ = into.add(&*local);
            local.reset();
        }
        self.next = Some(now + RECENT_FLUSH);
    }
}

/// p50 and p99 (ns) of a histogram; None when it is empty.
pub fn p50_p99(h: &hdrhistogram::Histogram<u64>) -> Option<(u64, u64)> {
    (!h.is_empty()).then(|| (h.value_at_quantile(0.50), h.value_at_quantile(0.99)))
}

/// Where a staged run stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageNow {
    /// 1-based stage number.
    pub stage: usize,
    /// Stages in the run.
    pub stages: usize,
    /// Ramping or holding.
    pub kind: WindowKind,
    /// Connections at the start of the window.
    pub from: usize,
    /// Connections at its end.
    pub to: usize,
    /// The stage's total request rate, if paced.
    pub rate: Option<f64>,
    /// Left of the window.
    pub left: Duration,
}

/// Where stage windows `windows` stand `t` into the run; None when unstaged.
pub fn stage_now(windows: &[crate::plan::StageWindow], t: Duration) -> Option<StageNow> {
    let stages = windows.last()?.stage;
    let w = windows
        .iter()
        .rev()
        .find(|w| w.start <= t)
        .unwrap_or(&windows[0]);
    Some(StageNow {
        stage: w.stage,
        stages,
        kind: w.kind,
        from: w.from,
        to: w.to,
        rate: w.rate,
        left: (w.start + w.length).saturating_sub(t),
    })
}

/// What a load run's line shows of its work.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// HTTP: responses per second.
    Http {
        /// Responses per second.
        per_sec: f64,
    },
    /// WebSocket: messages per second, reconnections.
    Ws {
        /// Messages received per second.
        in_per_sec: f64,
        /// Messages sent per second (echo mode); None where the run sends none of its own.
        out_per_sec: Option<f64>,
        /// Reconnections so far.
        reconnects: u64,
    },
}

/// One second of a load run (`http`, `ws`), as the line shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSnapshot<'a> {
    /// Since the workers started (warm-up included).
    pub elapsed: Duration,
    /// Warm-up before the measured window.
    pub warmup: Duration,
    /// What ends the run.
    pub stop: Stop,
    /// Responses (WebSocket: messages received) in the measured window so far.
    pub done: u64,
    /// This run's place in a series.
    pub series: Option<&'a SeriesPos>,
    /// The stage now, in a staged run.
    pub stage: Option<StageNow>,
    /// Rates.
    pub work: Work,
    /// The phase the percentiles are of.
    pub phase: Phase,
    /// p50 and p99 (ns) of the last second; None without samples.
    pub recent: Option<(u64, u64)>,
    /// Failures so far.
    pub errors: u64,
    /// Connections open.
    pub open: u64,
}

/// The line of a load run (rule 2), e.g.
/// `[12s/30s  18s left]  41,203 req/s  total p50 212µs p99 1.3ms  errors 0  open 100`.
pub fn format_load(out: &mut String, s: &LoadSnapshot<'_>) {
    out.push('[');
    if let Some(p) = s.series {
        let _ = write!(out, "run {}/{} {}  ", p.index, p.of, p.name);
    }
    if s.elapsed < s.warmup {
        out.push_str("warm-up ");
        secs(out, s.elapsed, false);
        out.push('/');
        secs(out, s.warmup, true);
    } else {
        let measured = s.elapsed - s.warmup;
        secs(out, measured, false);
        if let Stop::Duration(d) = s.stop {
            out.push('/');
            secs(out, d, true);
        }
    }
    match s.stop {
        Stop::Duration(d) => {
            out.push_str("  ");
            secs(out, (s.warmup + d).saturating_sub(s.elapsed), true);
            out.push_str(" left");
        }
        Stop::Requests(n) => {
            out.push_str("  ");
            group(out, s.done);
            out.push('/');
            group(out, n);
            out.push_str(" req");
        }
    }
    out.push(']');
    if let Some(st) = &s.stage {
        let _ = write!(
            out,
            "  stage {}/{} {} ",
            st.stage,
            st.stages,
            st.kind.name()
        );
        if st.from != st.to {
            let _ = write!(out, "{}→", st.from);
        }
        let _ = write!(out, "{} conns", st.to);
        if let Some(r) = st.rate {
            out.push_str(" @");
            group(out, r.round() as u64);
            out.push_str("/s");
        }
        out.push_str(", ");
        secs(out, st.left, true);
        out.push_str(" left");
    }
    out.push_str("  ");
    match s.work {
        Work::Http { per_sec } => {
            group(out, per_sec.round() as u64);
            out.push_str(" req/s");
        }
        Work::Ws {
            in_per_sec,
            out_per_sec,
            ..
        } => {
            group(out, in_per_sec.round() as u64);
            out.push_str(" msgs/s in");
            if let Some(o) = out_per_sec {
                out.push_str("  ");
                group(out, o.round() as u64);
                out.push_str(" msgs/s out");
            }
        }
    }
    out.push_str("  ");
    out.push_str(s.phase.name());
    percentiles(out, s.recent);
    if let Work::Ws { reconnects, .. } = s.work {
        out.push_str("  reconnects ");
        group(out, reconnects);
    }
    out.push_str("  errors ");
    group(out, s.errors);
    out.push_str("  open ");
    group(out, s.open);
}

/// Where a probe pass is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeStep {
    /// Opening connections at the connect rate.
    Ramp,
    /// Every connection opened; waiting for the last ones to settle.
    Settling,
    /// The first failure came; waiting for the earlier connections to settle.
    Resolving,
    /// Holding what was established.
    Hold,
}

impl ProbeStep {
    /// As the line shows it.
    pub fn name(self) -> &'static str {
        match self {
            ProbeStep::Ramp => "ramp",
            ProbeStep::Settling => "settling",
            ProbeStep::Resolving => "resolving",
            ProbeStep::Hold => "hold",
        }
    }
}

/// One second of a probe pass, as the line shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeSnapshot {
    /// Since the pass started.
    pub elapsed: Duration,
    /// Where the pass is.
    pub step: ProbeStep,
    /// Connections attempted so far.
    pub attempted: u64,
    /// Most connections the pass attempts.
    pub max: u64,
    /// Established so far.
    pub established: u64,
    /// Open now.
    pub open: u64,
    /// Establishment failures and drops so far.
    pub failures: u64,
    /// Connect p50 and p99 (ns) of the last second; None without samples.
    pub connect: Option<(u64, u64)>,
    /// Time left: exact in the hold; during the ramp an estimate (at the connect rate, if
    /// nothing fails first), shown with `~`; None when unknown.
    pub left: Option<(Duration, bool)>,
}

/// The line of a probe (rule 2), e.g.
/// `[12s  ~18s left]  ramp 1,200/5,000 attempted  1,190 established  1,180 open  connect p50
/// 212µs p99 1.3ms  failures 0`.
pub fn format_probe(out: &mut String, s: &ProbeSnapshot) {
    out.push('[');
    secs(out, s.elapsed, false);
    if let Some((left, estimate)) = s.left {
        out.push_str("  ");
        if estimate {
            out.push('~');
        }
        secs(out, left, true);
        out.push_str(" left");
    }
    out.push_str("]  ");
    out.push_str(s.step.name());
    out.push(' ');
    group(out, s.attempted);
    out.push('/');
    group(out, s.max);
    out.push_str(" attempted  ");
    group(out, s.established);
    out.push_str(" established  ");
    group(out, s.open);
    out.push_str(" open  connect");
    percentiles(out, s.connect);
    out.push_str("  failures ");
    group(out, s.failures);
}

/// ` p50 212µs p99 1.3ms`, or ` p50 - p99 -` without samples.
fn percentiles(out: &mut String, p: Option<(u64, u64)>) {
    match p {
        Some((p50, p99)) => {
            out.push_str(" p50 ");
            latency(out, p50);
            out.push_str(" p99 ");
            latency(out, p99);
        }
        None => out.push_str(" p50 - p99 -"),
    }
}

/// A latency with its unit: `850ns`, `4.2µs`, `212µs`, `1.3ms`, `25ms`, `1.25s`.
pub fn latency(out: &mut String, ns: u64) {
    let v = ns as f64;
    let (scaled, unit) = if ns < 1_000 {
        let _ = write!(out, "{ns}ns");
        return;
    } else if ns < 1_000_000 {
        (v / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        (v / 1e6, "ms")
    } else {
        let _ = write!(out, "{:.2}s", v / 1e9);
        return;
    };
    if scaled < 9.95 {
        let _ = write!(out, "{scaled:.1}{unit}");
    } else {
        let _ = write!(out, "{scaled:.0}{unit}");
    }
}

/// Whole seconds: `12s`, `2m05s`, `1h02m` (rounded up with `up`: time left).
fn secs(out: &mut String, d: Duration, up: bool) {
    let mut s = d.as_secs();
    if up && d.subsec_nanos() > 0 {
        s += 1;
    }
    let _ = if s < 60 {
        write!(out, "{s}s")
    } else if s < 3600 {
        write!(out, "{}m{:02}s", s / 60, s % 60)
    } else {
        write!(out, "{}h{:02}m", s / 3600, s % 3600 / 60)
    };
}

/// An integer with thousands separators: `41,203`.
fn group(out: &mut String, n: u64) {
    let mut div = 1u64;
    while n / div >= 1000 {
        div *= 1000;
    }
    let _ = write!(out, "{}", n / div);
    let mut rest = n % div;
    while div > 1 {
        div /= 1000;
        let _ = write!(out, ",{:03}", rest / div);
        rest %= div;
    }
}

/// Draws the line on stderr (rule 2).
#[derive(Debug)]
pub struct Drawer {
    /// Redraw in place (a terminal), else one newline-ended line each time.
    redraw: bool,
    drew: bool,
    buf: String,
}

impl Drawer {
    /// A drawer when `when` asks for a line here (`auto`: stderr is a terminal).
    pub fn new(when: ProgressWhen) -> Option<Drawer> {
        let tty = crate::sys::stderr_is_tty();
        match when {
            ProgressWhen::Never => None,
            ProgressWhen::Auto if !tty => None,
            _ => Some(Drawer {
                redraw: tty,
                drew: false,
                buf: String::with_capacity(256),
            }),
        }
    }

    /// Build the line with `f` (into the reused buffer) and show it.
    pub fn draw(&mut self, f: impl FnOnce(&mut String)) {
        self.buf.clear();
        if self.redraw {
            self.buf.push_str("\r\x1b[K");
        }
        f(&mut self.buf);
        if !self.redraw {
            self.buf.push('\n');
        }
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(self.buf.as_bytes());
        let _ = err.flush();
        self.drew = true;
    }

    /// Erase the line (on a terminal) before anything else is printed.
    pub fn clear(&mut self) {
        if self.redraw && self.drew {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(b"\r\x1b[K");
            let _ = err.flush();
            self.drew = false;
        }
    }
}

/// What a worker hands back when it ends.
pub struct Output {
    /// Measurements of the measured window.
    pub recorder: Recorder,
    /// Staged runs: this worker's measurements per stage window (ramp, hold, …) and the
    /// connections it had open at the end of each.
    pub windows: Vec<(Recorder, u64)>,
    /// Cost and health.
    pub stats: WorkerStats,
    /// When the worker's last request was answered (or the worker stopped).
    pub finished_at: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn http(elapsed: Duration, stop: Stop) -> LoadSnapshot<'static> {
        LoadSnapshot {
            elapsed,
            warmup: Duration::ZERO,
            stop,
            done: 0,
            series: None,
            stage: None,
            work: Work::Http { per_sec: 41_203.4 },
            phase: Phase::Total,
            recent: Some((212_000, 1_300_000)),
            errors: 0,
            open: 100,
        }
    }

    fn load(s: &LoadSnapshot<'_>) -> String {
        let mut out = String::new();
        format_load(&mut out, s);
        out
    }

    #[test]
    fn a_timed_http_run_shows_elapsed_total_time_left_rate_and_percentiles() {
        let s = http(Duration::from_millis(12_300), Stop::Duration(secs(30)));
        assert_eq!(
            load(&s),
            "[12s/30s  18s left]  41,203 req/s  total p50 212µs p99 1.3ms  errors 0  open 100"
        );
    }

    #[test]
    fn warm_up_is_said_and_time_left_counts_it() {
        let s = LoadSnapshot {
            warmup: secs(5),
            ..http(Duration::from_millis(2_500), Stop::Duration(secs(30)))
        };
        assert_eq!(
            load(&s),
            "[warm-up 2s/5s  33s left]  41,203 req/s  total p50 212µs p99 1.3ms  errors 0  \
             open 100"
        );
        // After the warm-up the measured window's clock starts at 0.
        let s = LoadSnapshot {
            warmup: secs(5),
            ..http(Duration::from_millis(7_100), Stop::Duration(secs(30)))
        };
        assert!(load(&s).starts_with("[2s/30s  28s left]"), "{}", load(&s));
    }

    #[test]
    fn a_request_count_shows_done_of_total_instead_of_time_left() {
        let s = LoadSnapshot {
            done: 41_203,
            errors: 1_234_567,
            ..http(secs(3), Stop::Requests(100_000))
        };
        assert_eq!(
            load(&s),
            "[3s  41,203/100,000 req]  41,203 req/s  total p50 212µs p99 1.3ms  \
             errors 1,234,567  open 100"
        );
    }

    #[test]
    fn a_staged_run_in_a_series_shows_the_run_the_stage_its_target_and_its_time_left() {
        let pos = SeriesPos {
            index: 2,
            of: 3,
            name: "medium".into(),
        };
        let stages = [
            crate::plan::Stage {
                connections: 50,
                ramp: secs(10),
                hold: secs(30),
                rate: None,
            },
            crate::plan::Stage {
                connections: 200,
                ramp: secs(20),
                hold: secs(45),
                rate: Some(1500.0),
            },
        ];
        let windows = crate::plan::stage_windows(&stages);
        let t = secs(52);
        let s = LoadSnapshot {
            series: Some(&pos),
            stage: stage_now(&windows, t),
            ..http(t, Stop::Duration(secs(105)))
        };
        assert_eq!(
            load(&s),
            "[run 2/3 medium  52s/1m45s  53s left]  stage 2/2 ramp 50→200 conns @1,500/s, 8s \
             left  41,203 req/s  total p50 212µs p99 1.3ms  errors 0  open 100"
        );
        // In the first stage's hold: its target only.
        let st = stage_now(&windows, secs(11)).unwrap();
        assert_eq!(
            (st.stage, st.kind, st.to, st.left),
            (1, WindowKind::Hold, 50, secs(29))
        );
        assert_eq!(stage_now(&[], secs(1)), None);
    }

    #[test]
    fn a_websocket_line_shows_messages_in_and_out_reconnects_and_no_samples_as_dashes() {
        let ws = |out_per_sec| LoadSnapshot {
            work: Work::Ws {
                in_per_sec: 1999.6,
                out_per_sec,
                reconnects: 3,
            },
            phase: Phase::Latency,
            recent: None,
            ..http(secs(1), Stop::Duration(secs(10)))
        };
        assert_eq!(
            load(&ws(None)),
            "[1s/10s  9s left]  2,000 msgs/s in  latency p50 - p99 -  reconnects 3  errors 0  \
             open 100"
        );
        let s = LoadSnapshot {
            phase: Phase::Rtt,
            recent: Some((850, 25_400_000)),
            ..ws(Some(400.0))
        };
        assert_eq!(
            load(&s),
            "[1s/10s  9s left]  2,000 msgs/s in  400 msgs/s out  rtt p50 850ns p99 25ms  \
             reconnects 3  errors 0  open 100"
        );
    }

    #[test]
    fn a_probe_line_shows_the_step_the_connections_the_connect_percentiles_and_time_left() {
        let s = ProbeSnapshot {
            elapsed: Duration::from_millis(12_500),
            step: ProbeStep::Ramp,
            attempted: 1_200,
            max: 5_000,
            established: 1_190,
            open: 1_180,
            failures: 2,
            connect: Some((4_250, 1_250_000_000)),
            left: Some((Duration::from_millis(17_200), true)),
        };
        let mut out = String::new();
        format_probe(&mut out, &s);
        assert_eq!(
            out,
            "[12s  ~18s left]  ramp 1,200/5,000 attempted  1,190 established  1,180 open  \
             connect p50 4.2µs p99 1.25s  failures 2"
        );
        out.clear();
        format_probe(
            &mut out,
            &ProbeSnapshot {
                step: ProbeStep::Settling,
                left: None,
                connect: None,
                ..s
            },
        );
        assert!(
            out.starts_with("[12s]  settling 1,200/5,000") && out.contains("connect p50 - p99 -"),
            "{out}"
        );
    }

    #[test]
    fn latencies_carry_their_unit_and_round_to_two_or_three_digits() {
        let cases = [
            (1, "1ns"),
            (999, "999ns"),
            (1_000, "1.0µs"),
            (9_940, "9.9µs"),
            (9_960, "10µs"),
            (212_400, "212µs"),
            (999_400, "999µs"),
            (1_300_000, "1.3ms"),
            (25_000_000, "25ms"),
            (1_250_000_000, "1.25s"),
        ];
        for (ns, want) in cases {
            let mut out = String::new();
            latency(&mut out, ns);
            assert_eq!(out, want, "{ns} ns");
        }
        let mut out = String::new();
        for (d, up) in [(secs(59), false), (secs(125), false), (secs(3720), false)] {
            super::secs(&mut out, d, up);
            out.push(' ');
        }
        super::secs(&mut out, Duration::from_millis(200), true);
        assert_eq!(out, "59s 2m05s 1h02m 1s");
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_000_001, "1,000,001"),
        ] {
            out.clear();
            group(&mut out, n);
            assert_eq!(out, want);
        }
    }

    fn live_with_recent() -> Live {
        Live {
            recent: Some(Recent::new(Phase::Total)),
            ..Live::default()
        }
    }

    #[test]
    fn recent_samples_reach_the_shared_histogram_at_the_flush_not_before() {
        let live = live_with_recent();
        let mut rec = Recorder::new();
        let t0 = Instant::now();
        let mut clock = RecentClock::new(&live, &mut rec, t0);
        assert_eq!(clock.next(), Some(t0 + RECENT_FLUSH));
        rec.record(Phase::Total, 5_000);
        rec.record(Phase::Ttfb, 7_000); // not the line's phase
        clock.tick(t0 + Duration::from_millis(100), false, &mut rec, &live);
        let shared = &live.recent.as_ref().unwrap().hist;
        assert!(shared.lock().unwrap().is_empty(), "handed over too early");
        clock.tick(t0 + RECENT_FLUSH, false, &mut rec, &live);
        {
            let h = shared.lock().unwrap();
            assert_eq!(h.len(), 1, "only the line's phase");
            assert!(h.equivalent(h.max(), 5_000));
        }
        assert!(
            rec.recent().unwrap().is_empty(),
            "local reset after the hand-over"
        );
        // The full-precision histogram is untouched.
        assert_eq!(rec.histogram(Phase::Total).len(), 1);
    }

    #[test]
    fn a_busy_shared_histogram_is_skipped_and_retried_and_a_lost_recorder_is_re_armed() {
        let live = live_with_recent();
        let mut rec = Recorder::new();
        let t0 = Instant::now();
        let mut clock = RecentClock::new(&live, &mut rec, t0);
        rec.record(Phase::Total, 5_000);
        let shared = &live.recent.as_ref().unwrap().hist;
        {
            let _held = shared.lock().unwrap();
            clock.tick(t0 + RECENT_FLUSH, false, &mut rec, &live);
        }
        assert!(shared.lock().unwrap().is_empty());
        assert_eq!(rec.recent().unwrap().len(), 1, "kept for the next turn");
        clock.tick(t0 + RECENT_FLUSH, false, &mut rec, &live);
        assert_eq!(shared.lock().unwrap().len(), 1);
        // A stage window took the recorder: the next tick arms the new one.
        rec = Recorder::default();
        assert!(rec.recent().is_none());
        clock.tick(t0 + RECENT_FLUSH * 3, false, &mut rec, &live);
        rec.record(Phase::Total, 9_000);
        clock.tick(t0 + RECENT_FLUSH * 3, true, &mut rec, &live);
        assert_eq!(shared.lock().unwrap().len(), 2);
    }

    #[test]
    fn no_recent_cell_means_no_recent_histogram() {
        let live = Live::default();
        let mut rec = Recorder::new();
        let mut clock = RecentClock::new(&live, &mut rec, Instant::now());
        assert_eq!(clock.next(), None);
        rec.record(Phase::Total, 5_000);
        clock.tick(Instant::now(), true, &mut rec, &live);
        assert!(rec.recent().is_none());
    }
}
