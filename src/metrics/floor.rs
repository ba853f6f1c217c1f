//! What `connbench floor` measured: for each layer (raw TCP round trip, TCP connect, TLS
//! handshakes, HTTP keep-alive TTFB, WebSocket echo, clock read, timer lateness) one row per
//! mode (sleeping or busy-polling, pinned or not), each a histogram with its operation count
//! and the CPU it cost, or the reason there is none; and the comparisons the report states:
//! which mode is lower per layer, and what connbench adds over the raw round trip.
//!
//! `app::floor` fills it from `engine::floor` and the load engine; `report::floor` renders it.
//! Nothing here reads a clock or touches a socket; the comparisons are pure (and tested).

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

/// A layer of the floor, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Ping-pong of a small message on one TCP connection, against a raw echo service.
    RawRtt,
    /// `connect()` called → connected, one connection at a time.
    Connect,
    /// A full TLS handshake (no resumption), TCP established → handshake done.
    TlsFull,
    /// A resumed TLS handshake (session ticket), TCP established → handshake done.
    TlsResumed,
    /// HTTP/1.1 keep-alive time to first byte at one connection (the `http` engine).
    HttpTtfb,
    /// WebSocket echo round trip at one connection (the `ws` engine, echo mode).
    WsEcho,
    /// The cost of one clock read (`Instant::now`, i.e. `clock_gettime(CLOCK_MONOTONIC)`).
    ClockRead,
    /// How late a wake-up for a deadline comes: timerfd sleeping, the timer table spinning.
    TimerLateness,
}

impl Layer {
    /// Number of layers.
    pub const COUNT: usize = 8;
    /// Every layer, in report order.
    pub const ALL: [Layer; Layer::COUNT] = [
        Layer::RawRtt,
        Layer::Connect,
        Layer::TlsFull,
        Layer::TlsResumed,
        Layer::HttpTtfb,
        Layer::WsEcho,
        Layer::ClockRead,
        Layer::TimerLateness,
    ];

    /// Stable key in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Layer::RawRtt => "raw_tcp_rtt",
            Layer::Connect => "tcp_connect",
            Layer::TlsFull => "tls_full",
            Layer::TlsResumed => "tls_resumed",
            Layer::HttpTtfb => "http_ttfb",
            Layer::WsEcho => "ws_echo_rtt",
            Layer::ClockRead => "clock_read",
            Layer::TimerLateness => "timer_lateness",
        }
    }

    /// What the text report calls it.
    pub fn title(self) -> &'static str {
        match self {
            Layer::RawRtt => "raw TCP round trip",
            Layer::Connect => "TCP connect",
            Layer::TlsFull => "TLS handshake, full",
            Layer::TlsResumed => "TLS handshake, resumed",
            Layer::HttpTtfb => "HTTP keep-alive TTFB",
            Layer::WsEcho => "WebSocket echo RTT",
            Layer::ClockRead => "clock read",
            Layer::TimerLateness => "timer wake-up lateness",
        }
    }

    /// One operation of the layer (what CPU per operation divides by).
    pub fn op(self) -> &'static str {
        match self {
            Layer::RawRtt => "round trip",
            Layer::Connect => "connection",
            Layer::TlsFull | Layer::TlsResumed => "handshake",
            Layer::HttpTtfb => "request",
            Layer::WsEcho => "message",
            Layer::ClockRead => "read",
            Layer::TimerLateness => "wake-up",
        }
    }

    /// False for the layer where nothing waits, so sleeping and busy-polling are the same
    /// code: the clock read.
    pub fn waits(self) -> bool {
        self != Layer::ClockRead
    }
}

/// How the client waited and where it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Spinning in `epoll_wait(…, 0)` (`--busy-poll`) instead of sleeping in it.
    pub busy_poll: bool,
    /// The client thread pinned to one CPU (and the built-in target to another).
    pub pinned: bool,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 4] = [
        Mode {
            busy_poll: false,
            pinned: true,
        },
        Mode {
            busy_poll: true,
            pinned: true,
        },
        Mode {
            busy_poll: false,
            pinned: false,
        },
        Mode {
            busy_poll: true,
            pinned: false,
        },
    ];

    /// Stable key in the JSON report: `sleep_pinned`, `busy_poll_pinned`, `sleep_unpinned`,
    /// `busy_poll_unpinned`.
    pub fn name(self) -> &'static str {
        match (self.busy_poll, self.pinned) {
            (false, true) => "sleep_pinned",
            (true, true) => "busy_poll_pinned",
            (false, false) => "sleep_unpinned",
            (true, false) => "busy_poll_unpinned",
        }
    }

    /// What the text report calls it.
    pub fn label(self) -> &'static str {
        match (self.busy_poll, self.pinned) {
            (false, true) => "sleep, pinned",
            (true, true) => "busy-poll, pinned",
            (false, false) => "sleep, not pinned",
            (true, false) => "busy-poll, not pinned",
        }
    }
}

/// One measurement: the samples (ns), the operations done, their CPU, and failures.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Samples in nanoseconds.
    pub hist: Histogram<u64>,
    /// Operations the CPU time was spent on (samples, plus any not sampled).
    pub ops: u64,
    /// CPU time (user + system) of the measuring thread(s), ns.
    pub cpu_ns: u64,
    /// Operations that failed (counted, never sampled).
    pub errors: u64,
    /// What went wrong, when something did (e.g. `connect_refused 3`).
    pub error_note: Option<String>,
}

impl Measured {
    /// CPU per operation, µs; None with no operation.
    pub fn cpu_per_op_us(&self) -> Option<f64> {
        (self.ops > 0).then(|| self.cpu_ns as f64 / self.ops as f64 / 1e3)
    }

    /// The median, ns; None with no sample.
    pub fn p50(&self) -> Option<u64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(0.5))
    }
}

/// One row: a layer in one mode, measured, or why not (not applicable, failed, interrupted).
#[derive(Clone, Debug)]
pub struct Row {
    /// The mode.
    pub mode: Mode,
    /// The measurement, or why there is none.
    pub outcome: Result<Measured, String>,
}

impl Row {
    /// The row's median, when it has samples.
    pub fn p50(&self) -> Option<u64> {
        self.outcome.as_ref().ok().and_then(Measured::p50)
    }
}

/// One layer: its rows in [`Mode::ALL`] order, or why the whole layer does not apply (with a
/// URL: what the host lacks).
#[derive(Clone, Debug)]
pub struct LayerResult {
    /// Which layer.
    pub layer: Layer,
    /// Its rows, or why it was not measured.
    pub rows: Result<Vec<Row>, String>,
}

/// Which of two rows has the lower median, and by how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lower {
    /// The first row's median minus the second's, ns (negative: the first is lower).
    pub diff_ns: i64,
}

impl Lower {
    /// The median of `a` minus that of `b`, when both have samples.
    pub fn of(a: Option<u64>, b: Option<u64>) -> Option<Lower> {
        let (a, b) = (a?, b?);
        Some(Lower {
            diff_ns: a as i64 - b as i64,
        })
    }
}

impl LayerResult {
    /// The row of a mode, if the layer was measured.
    pub fn row(&self, mode: Mode) -> Option<&Row> {
        self.rows.as_ref().ok()?.iter().find(|r| r.mode == mode)
    }

    /// The median of a mode's row, when it has samples.
    pub fn p50(&self, mode: Mode) -> Option<u64> {
        self.row(mode).and_then(Row::p50)
    }

    /// Busy-poll minus sleeping, pinned when both pinned rows have samples, else not pinned.
    pub fn busy_poll_vs_sleep(&self) -> Option<Lower> {
        [true, false].iter().find_map(|&pinned| {
            Lower::of(
                self.p50(Mode {
                    busy_poll: true,
                    pinned,
                }),
                self.p50(Mode {
                    busy_poll: false,
                    pinned,
                }),
            )
        })
    }

    /// Pinned minus not pinned, sleeping when both sleeping rows have samples, else
    /// busy-polling.
    pub fn pinned_vs_unpinned(&self) -> Option<Lower> {
        [false, true].iter().find_map(|&busy_poll| {
            Lower::of(
                self.p50(Mode {
                    busy_poll,
                    pinned: true,
                }),
                self.p50(Mode {
                    busy_poll,
                    pinned: false,
                }),
            )
        })
    }

    /// The mode with the lowest median (the first in report order on a tie).
    pub fn lowest(&self) -> Option<Mode> {
        let rows = self.rows.as_ref().ok()?;
        rows.iter()
            .filter_map(|r| r.p50().map(|p| (p, r.mode)))
            .min_by_key(|(p, _)| *p)
            .map(|(_, m)| m)
    }
}

/// Everything `floor` measured.
#[derive(Clone, Debug)]
pub struct FloorResult {
    /// One per layer, in [`Layer::ALL`] order.
    pub layers: Vec<LayerResult>,
    /// When the first measurement started.
    pub started_at: SystemTime,
    /// How long all of them took.
    pub elapsed: Duration,
    /// Ctrl-C ended it early: later rows say "interrupted".
    pub interrupted: bool,
    /// Peak RSS of the process, bytes.
    pub peak_rss_bytes: u64,
}

/// The answer a user runs `floor` for: what connbench adds over the raw round trip, and its
/// CPU per request, in one mode.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The mode compared (busy-poll as asked; pinned when the pinned rows have samples).
    pub mode: Mode,
    /// Raw TCP round trip, p50 ns.
    pub raw_p50_ns: Option<u64>,
    /// HTTP keep-alive TTFB, p50 ns.
    pub http_p50_ns: Option<u64>,
    /// HTTP p50 minus raw p50, ns (what connbench and HTTP add over TCP).
    pub adds_ns: Option<i64>,
    /// Client CPU per HTTP request, µs.
    pub cpu_per_request_us: Option<f64>,
    /// Why there is no comparison, when there is none.
    pub missing: Option<String>,
}

impl FloorResult {
    /// The result of a layer.
    pub fn layer(&self, layer: Layer) -> Option<&LayerResult> {
        self.layers.iter().find(|l| l.layer == layer)
    }

    /// The verdict for a client that busy-polls or sleeps.
    pub fn verdict(&self, busy_poll: bool) -> Verdict {
        let (raw, http) = (self.layer(Layer::RawRtt), self.layer(Layer::HttpTtfb));
        let both = |pinned| {
            let mode = Mode { busy_poll, pinned };
            let r = raw.and_then(|l| l.p50(mode));
            let h = http.and_then(|l| l.p50(mode));
            (mode, r, h)
        };
        // Pinned when both pinned rows have samples; else whatever not pinned has.
        let (mode, raw_p50_ns, http_p50_ns) = match both(true) {
            (m, Some(r), Some(h)) => (m, Some(r), Some(h)),
            _ => both(false),
        };
        let cpu_per_request_us = http
            .and_then(|l| l.row(mode))
            .and_then(|r| r.outcome.as_ref().ok())
            .and_then(Measured::cpu_per_op_us);
        let why = |l: Option<&LayerResult>, title: &str| match l.map(|l| &l.rows) {
            Some(Err(why)) => format!("no {title}: {why}"),
            _ => format!("no {title} sample in this mode"),
        };
        let missing = match (raw_p50_ns, http_p50_ns) {
            (Some(_), Some(_)) => None,
            (None, _) => Some(why(raw, Layer::RawRtt.title())),
            (_, None) => Some(why(http, Layer::HttpTtfb.title())),
        };
        Verdict {
            mode,
            raw_p50_ns,
            http_p50_ns,
            adds_ns: Lower::of(http_p50_ns, raw_p50_ns).map(|l| l.diff_ns),
            cpu_per_request_us,
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(values: &[u64]) -> Measured {
        let mut hist = crate::metrics::new_histogram();
        for &v in values {
            hist.record(v).unwrap();
        }
        Measured {
            ops: values.len() as u64,
            cpu_ns: 4_000 * values.len() as u64,
            hist,
            errors: 0,
            error_note: None,
        }
    }

    /// A layer whose rows have these medians (None: the row is not measured).
    fn layer(layer: Layer, p50s: [Option<u64>; 4]) -> LayerResult {
        LayerResult {
            layer,
            rows: Ok(Mode::ALL
                .iter()
                .zip(p50s)
                .map(|(&mode, p)| Row {
                    mode,
                    outcome: p.map(|v| measured(&[v, v, v])).ok_or("n/a".to_string()),
                })
                .collect()),
        }
    }

    #[test]
    fn names_are_distinct_and_modes_cover_both_axes() {
        let mut names: Vec<_> = Layer::ALL.iter().map(|l| l.name()).collect();
        names.dedup();
        assert_eq!(names.len(), Layer::COUNT);
        let modes: Vec<_> = Mode::ALL.iter().map(|m| (m.busy_poll, m.pinned)).collect();
        for want in [(false, true), (true, true), (false, false), (true, false)] {
            assert!(modes.contains(&want), "{want:?}");
        }
        assert!(!Layer::ClockRead.waits() && Layer::TimerLateness.waits());
    }

    #[test]
    fn lower_says_which_row_is_lower_and_by_how_much() {
        // Medians: sleep pinned 80 µs, busy-poll pinned 28 µs, sleep free 85, busy free 30.
        let l = layer(
            Layer::RawRtt,
            [Some(80_000), Some(28_000), Some(85_000), Some(30_000)],
        );
        let busy = l.busy_poll_vs_sleep().unwrap();
        assert!(busy.diff_ns < 0, "busy-poll lower");
        assert!((busy.diff_ns + 52_000).abs() < 100, "{busy:?}");
        let pin = l.pinned_vs_unpinned().unwrap();
        assert!((pin.diff_ns + 5_000).abs() < 100, "{pin:?}");
        assert_eq!(
            l.lowest(),
            Some(Mode {
                busy_poll: true,
                pinned: true
            })
        );
        // Without pinned rows the comparison falls back to the unpinned ones.
        let l = layer(Layer::RawRtt, [None, None, Some(85_000), Some(30_000)]);
        assert!((l.busy_poll_vs_sleep().unwrap().diff_ns + 55_000).abs() < 100);
        assert_eq!(l.pinned_vs_unpinned(), None);
        // A layer that was not measured compares nothing.
        let na = LayerResult {
            layer: Layer::RawRtt,
            rows: Err("no echo".into()),
        };
        assert_eq!(na.lowest(), None);
        assert_eq!(na.busy_poll_vs_sleep(), None);
    }

    fn result(layers: Vec<LayerResult>) -> FloorResult {
        FloorResult {
            layers,
            started_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(1),
            interrupted: false,
            peak_rss_bytes: 0,
        }
    }

    #[test]
    fn the_verdict_is_http_minus_raw_in_the_asked_mode() {
        let r = result(vec![
            layer(
                Layer::RawRtt,
                [Some(80_000), Some(28_000), Some(85_000), Some(30_000)],
            ),
            layer(
                Layer::HttpTtfb,
                [Some(86_000), Some(31_000), Some(90_000), Some(33_000)],
            ),
        ]);
        let sleep = r.verdict(false);
        assert_eq!(
            sleep.mode,
            Mode {
                busy_poll: false,
                pinned: true
            }
        );
        let adds = sleep.adds_ns.unwrap();
        assert!((adds - 6_000).abs() < 100, "{adds}");
        assert_eq!(sleep.missing, None);
        assert!((sleep.cpu_per_request_us.unwrap() - 4.0).abs() < 1e-9);
        let spin = r.verdict(true);
        assert!(spin.mode.busy_poll && spin.mode.pinned);
        assert!((spin.adds_ns.unwrap() - 3_000).abs() < 100);
        // Pinned rows missing: not pinned.
        let r = result(vec![
            layer(Layer::RawRtt, [None, None, Some(85_000), Some(30_000)]),
            layer(Layer::HttpTtfb, [None, None, Some(80_000), Some(33_000)]),
        ]);
        let v = r.verdict(false);
        assert!(!v.mode.pinned);
        assert!(
            v.adds_ns.unwrap() < 0,
            "a negative difference is shown as it is"
        );
    }

    #[test]
    fn without_a_raw_round_trip_the_verdict_says_why() {
        let r = result(vec![
            LayerResult {
                layer: Layer::RawRtt,
                rows: Err("the host has no raw TCP echo".into()),
            },
            layer(Layer::HttpTtfb, [Some(86_000), None, None, None]),
        ]);
        let v = r.verdict(false);
        assert_eq!(v.adds_ns, None);
        assert_eq!(v.http_p50_ns, None, "not pinned: no sample in this mode");
        let missing = v.missing.unwrap();
        assert!(
            missing.contains("raw TCP round trip") && missing.contains("no raw TCP echo"),
            "{missing}"
        );
    }
}
