//! The report of `connbench floor`: a text table (one row per layer and mode, with what is
//! lower under each layer, then the verdict) and a JSON document (`mode: "floor"`) built from
//! what [`crate::metrics::floor`] holds.
//!
//! It formats only; it never touches a socket or a clock. User strings (URL, command line) go
//! through [`redact`] as in every other report. The JSON keeps the shared envelope of
//! `connbench.report.v1` (`schema`, `connbench_version`, `mode`, `started_at`,
//! `started_at_unix_ms`, `duration_s`, `interrupted`, `insecure`, `command_line`, `target`,
//! `host`, `client`), documented in [`super::json`], and puts the floor under `config`,
//! `layers` and `verdict`. Layer names: `raw_tcp_rtt`, `tcp_connect`, `tls_full`,
//! `tls_resumed`, `http_ttfb`, `ws_echo_rtt`, `clock_read`, `timer_lateness`; mode names:
//! `sleep_pinned`, `busy_poll_pinned`, `sleep_unpinned`, `busy_poll_unpinned`.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `config.measurement_s` | number | how long each measurement (one layer in one mode) ran |
//! | `config.busy_poll` | bool | `--busy-poll`: the verdict is for a busy-polling client |
//! | `config.client_cpu` | integer \| null | the CPU the pinned rows' client ran on; null when no row is pinned |
//! | `config.target_cpus` | array of integer | the CPUs of the built-in target of the pinned rows (empty with a URL) |
//! | `config.so_busy_poll_us` | integer \| null | SO_BUSY_POLL the busy-poll rows set on their sockets (µs); null when the kernel refused it |
//! | `config.so_busy_poll_error` | string \| null | why the kernel refused SO_BUSY_POLL; null when it was set |
//! | `config.ping_bytes` | integer | bytes of each raw ping (and of its echo) |
//! | `config.ws_send_rate` | number | WebSocket echo messages per second at one connection |
//! | `config.ws_message_bytes` | integer | bytes of each WebSocket echo message |
//! | `config.timer_ahead_us` | number | how far ahead each timer wake-up is asked for |
//! | `config.clock_batch` | integer | clock reads per sample (a sample is their mean) |
//! | `config.echo` | string \| null | the `--echo` address measured; null with the built-in target |
//! | `config.ws_url` | string \| null | the `--ws` URL measured, redacted; null with the built-in target |
//! | `layers.{layer}` | object | one per layer, every layer present |
//! | `layers.*.title`, `layers.*.op` | string | what the text report calls the layer, and one operation of it (`round trip`, `connection`, `handshake`, `request`, `message`, `read`, `wake-up`) |
//! | `layers.*.available` | bool | the layer was measured (with a URL, a layer the host lacks something for is not) |
//! | `layers.*.reason` | string \| null | why not; null when measured |
//! | `layers.*.variants.{mode}` | object | one per mode when the layer was measured, else `{}` |
//! | `layers.*.variants.*.busy_poll`, `layers.*.variants.*.pinned` | bool | the mode |
//! | `layers.*.variants.*.available` | bool | the row has samples |
//! | `layers.*.variants.*.reason` | string \| null | why not (`clock_read` has no busy-poll rows: nothing waits; one CPU: no pinned rows; a failure; Ctrl-C) |
//! | `layers.*.variants.*.stats` | object \| null | the samples as in `phases.*` of the load reports (ns, percentiles, full histogram); null without samples |
//! | `layers.*.variants.*.ops` | integer | operations done |
//! | `layers.*.variants.*.cpu_per_op_us` | number \| null | the client thread's CPU (user + sys) ÷ `ops` |
//! | `layers.*.variants.*.errors` | integer | operations that failed |
//! | `layers.*.variants.*.note` | string \| null | the failures by class, or what else the row needs said (handshakes not resumed) |
//! | `layers.*.lowest` | string \| null | the mode with the lowest p50 |
//! | `layers.*.busy_poll_minus_sleep_p50_ns` | integer \| null | busy-poll p50 − sleeping p50 (pinned rows, else not pinned); negative: busy-poll is lower |
//! | `layers.*.lower_wait` | string \| null | `busy_poll`, `sleep` or `equal`, from the line above |
//! | `layers.*.pinned_minus_unpinned_p50_ns` | integer \| null | pinned p50 − not pinned p50 (sleeping rows, else busy-poll) |
//! | `layers.*.lower_pinning` | string \| null | `pinned`, `unpinned` or `equal` |
//! | `verdict.busy_poll`, `verdict.pinned` | bool | the mode the verdict compares (busy-poll as `--busy-poll` says; pinned when both pinned rows have samples) |
//! | `verdict.raw_rtt_p50_ns`, `verdict.http_ttfb_p50_ns` | integer \| null | the two medians compared |
//! | `verdict.adds_ns` | integer \| null | HTTP TTFB p50 − raw round trip p50: what connbench (and HTTP over the raw bytes) adds on this machine |
//! | `verdict.cpu_per_request_us` | number \| null | the client's CPU per HTTP request in that mode |
//! | `verdict.missing` | string \| null | why there is no comparison (e.g. no raw echo service with a URL) |
//! | `client.peak_rss_bytes` | integer | peak RSS of the process (the built-in target included) |

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::host::HostFacts;
use super::json::{phase, rfc3339, unix_ms, SCHEMA};
use super::percentiles::Percentiles;
use super::text::{dur_compact, dur_spaced};
use super::{redact, schema};
use crate::engine::floor::{CLOCK_BATCH, PING_BYTES, TIMER_AHEAD};
use crate::metrics::floor::{FloorResult, LayerResult, Lower, Mode, Verdict};
use crate::plan::BusyPoll;

/// The floor's settings, as the reports show them (strings raw; reports redact them).
#[derive(Clone, Debug)]
pub struct FloorMeta {
    /// The HTTP URL measured (the built-in target's when none was given).
    pub url: String,
    /// The built-in target was used.
    pub builtin: bool,
    /// The process's command line.
    pub command_line: Vec<String>,
    /// How long each measurement ran.
    pub measure_for: Duration,
    /// `--busy-poll`: the verdict is for a busy-polling client.
    pub verdict_busy_poll: bool,
    /// The pinned rows' client CPU (None: no row pinned).
    pub client_cpu: Option<usize>,
    /// The built-in target's CPUs for the pinned rows.
    pub target_cpus: Vec<usize>,
    /// What the busy-poll rows set of SO_BUSY_POLL.
    pub busy_poll: BusyPoll,
    /// `--echo` address measured.
    pub echo: Option<String>,
    /// `--ws` URL measured.
    pub ws_url: Option<String>,
    /// `--insecure`.
    pub insecure: bool,
    /// WebSocket echo messages per second.
    pub ws_send_rate: f64,
    /// WebSocket echo message size.
    pub ws_message_bytes: usize,
}

/// Width of the layer column.
const LAYER_W: usize = 24;
/// Width of the mode column.
const MODE_W: usize = 24;
/// Width of the number columns.
const COL_W: usize = 10;

/// "5.20 µs", "−1.10 µs" (signed, for differences).
fn signed(ns: i64) -> String {
    let mag = dur_spaced(ns.unsigned_abs() as f64);
    if ns < 0 {
        format!("−{mag}")
    } else {
        mag
    }
}

/// "busy-poll lower by 51.3 µs (p50), pinned lower by 2.10 µs".
fn lower_line(l: &LayerResult) -> Option<String> {
    let mut parts = Vec::new();
    let say = |d: Lower, a: &str, b: &str| match d.diff_ns {
        0 => format!("{a} and {b} equal"),
        n if n < 0 => format!("{a} lower by {}", dur_spaced(n.unsigned_abs() as f64)),
        n => format!("{b} lower by {}", dur_spaced(n as f64)),
    };
    if l.layer.waits() {
        if let Some(d) = l.busy_poll_vs_sleep() {
            parts.push(say(d, "busy-poll", "sleep"));
        }
    }
    if let Some(d) = l.pinned_vs_unpinned() {
        parts.push(say(d, "pinned", "not pinned"));
    }
    (!parts.is_empty()).then(|| format!("{} (p50)", parts.join(", ")))
}

/// The human summary. Ends with a newline.
pub fn text(meta: &FloorMeta, r: &FloorResult) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "connbench {}  floor  {}",
        env!("CARGO_PKG_VERSION"),
        redact::url(&meta.url)
    );
    if meta.builtin {
        out.push_str("  (built-in target)");
    }
    out.push('\n');
    let pinned = match meta.client_cpu {
        Some(cpu) if meta.target_cpus.is_empty() => format!("pinned rows: client on cpu {cpu}"),
        Some(cpu) => format!(
            "pinned rows: client on cpu {cpu}, target on cpu {}",
            join(&meta.target_cpus)
        ),
        None => "no pinned rows".to_string(),
    };
    let _ = writeln!(
        out,
        "  one connection; each row {}; {pinned}",
        dur_spaced(meta.measure_for.as_nanos() as f64)
    );
    let so = match &meta.busy_poll.so_busy_poll {
        Ok(us) => format!("SO_BUSY_POLL {us} µs on its sockets"),
        Err(why) => format!("SO_BUSY_POLL refused by the kernel: {why}"),
    };
    let _ = writeln!(
        out,
        "  sleep: the client blocks in epoll_wait; busy-poll: it spins in epoll_wait(…, 0) ({so})"
    );
    if meta.insecure {
        out.push_str(super::text::INSECURE_WARNING);
        out.push('\n');
    }
    if r.interrupted {
        out.push_str(super::text::INTERRUPTED_NOTE);
        out.push('\n');
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<LAYER_W$}{:<MODE_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}",
        "layer", "mode", "count", "min", "p50", "p99", "CPU/op"
    );
    let blank = "";
    for l in &r.layers {
        let rows = match &l.rows {
            Err(why) => {
                let _ = writeln!(out, "{:<LAYER_W$}n/a: {why}", l.layer.title());
                continue;
            }
            Ok(rows) => rows,
        };
        let mut first = true;
        for row in rows {
            // Nothing waits in the clock read: its busy-poll rows would only repeat "n/a".
            if !l.layer.waits() && row.mode.busy_poll {
                continue;
            }
            let title = if first { l.layer.title() } else { blank };
            first = false;
            let label = if l.layer.waits() {
                row.mode.label()
            } else if row.mode.pinned {
                "pinned"
            } else {
                "not pinned"
            };
            match &row.outcome {
                Err(why) => {
                    let _ = writeln!(out, "{title:<LAYER_W$}{label:<MODE_W$}n/a: {why}");
                }
                Ok(m) => {
                    let h = &m.hist;
                    let cpu = m
                        .cpu_per_op_us()
                        .map(|us| dur_compact(us * 1e3))
                        .unwrap_or_else(|| "-".into());
                    let _ = write!(
                        out,
                        "{title:<LAYER_W$}{label:<MODE_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}{:>COL_W$}",
                        h.len(),
                        dur_compact(h.min() as f64),
                        dur_compact(h.value_at_quantile(0.5) as f64),
                        dur_compact(h.value_at_quantile(0.99) as f64),
                        cpu
                    );
                    if let Some(note) = &m.error_note {
                        let _ = write!(out, "   ({note})");
                    }
                    out.push('\n');
                }
            }
        }
        if let Some(line) = lower_line(l) {
            let _ = writeln!(out, "{blank:<LAYER_W$}{line}");
        }
    }
    out.push('\n');
    verdict_text(&mut out, &r.verdict(meta.verdict_busy_poll));
    out
}

fn verdict_text(out: &mut String, v: &Verdict) {
    let mode = v.mode.label();
    match (v.adds_ns, v.raw_p50_ns, v.http_p50_ns) {
        (Some(adds), Some(raw), Some(http)) => {
            let _ = writeln!(
                out,
                "verdict   connbench adds {} (p50) over the raw round trip on this machine{}",
                signed(adds),
                if adds < 0 {
                    " (below it: this machine's noise)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                out,
                "          HTTP keep-alive TTFB {} vs raw TCP round trip {} ({mode})",
                dur_spaced(http as f64),
                dur_spaced(raw as f64)
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "verdict   n/a ({mode}): {}",
                v.missing.as_deref().unwrap_or("nothing to compare")
            );
        }
    }
    if let Some(us) = v.cpu_per_request_us {
        let _ = writeln!(
            out,
            "          client CPU {} per request (HTTP keep-alive, {mode})",
            dur_spaced(us * 1e3)
        );
    }
}

fn join(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `busy_poll`/`sleep`, `pinned`/`unpinned`, or `equal`, from a difference a − b.
fn which(d: Option<Lower>, a: &str, b: &str) -> Option<String> {
    d.map(|d| match d.diff_ns {
        0 => "equal".to_string(),
        n if n < 0 => a.to_string(),
        _ => b.to_string(),
    })
}

fn layer(l: &LayerResult) -> schema::FloorLayer {
    let variants = match &l.rows {
        Err(_) => Default::default(),
        Ok(rows) => rows
            .iter()
            .map(|row| {
                let v = match &row.outcome {
                    Ok(m) => schema::FloorVariant {
                        busy_poll: row.mode.busy_poll,
                        pinned: row.mode.pinned,
                        available: true,
                        reason: None,
                        stats: Some(phase(&m.hist, &Percentiles::default())),
                        ops: m.ops,
                        cpu_per_op_us: m.cpu_per_op_us(),
                        errors: m.errors,
                        note: m.error_note.clone(),
                    },
                    Err(why) => schema::FloorVariant {
                        busy_poll: row.mode.busy_poll,
                        pinned: row.mode.pinned,
                        available: false,
                        reason: Some(why.clone()),
                        stats: None,
                        ops: 0,
                        cpu_per_op_us: None,
                        errors: 0,
                        note: None,
                    },
                };
                (row.mode.name().to_string(), v)
            })
            .collect(),
    };
    let busy = if l.layer.waits() {
        l.busy_poll_vs_sleep()
    } else {
        None
    };
    let pin = l.pinned_vs_unpinned();
    schema::FloorLayer {
        title: l.layer.title().to_string(),
        op: l.layer.op().to_string(),
        available: l.rows.is_ok(),
        reason: l.rows.as_ref().err().cloned(),
        variants,
        lowest: l.lowest().map(|m: Mode| m.name().to_string()),
        busy_poll_minus_sleep_p50_ns: busy.map(|d| d.diff_ns),
        lower_wait: which(busy, "busy_poll", "sleep"),
        pinned_minus_unpinned_p50_ns: pin.map(|d| d.diff_ns),
        lower_pinning: which(pin, "pinned", "unpinned"),
    }
}

/// The report document as its [`schema::FloorReport`] type.
pub fn report(meta: &FloorMeta, r: &FloorResult, host: &HostFacts) -> schema::FloorReport {
    let started_ms = unix_ms(r.started_at);
    let v = r.verdict(meta.verdict_busy_poll);
    schema::FloorReport {
        schema: SCHEMA.to_string(),
        connbench_version: env!("CARGO_PKG_VERSION").to_string(),
        mode: "floor".to_string(),
        started_at: rfc3339(started_ms.div_euclid(1000)),
        started_at_unix_ms: started_ms,
        duration_s: r.elapsed.as_secs_f64(),
        interrupted: r.interrupted,
        insecure: meta.insecure,
        command_line: redact::command_line(&meta.command_line),
        target: schema::Target {
            url: redact::url(&meta.url),
            builtin: meta.builtin,
        },
        config: schema::FloorConfig {
            measurement_s: meta.measure_for.as_secs_f64(),
            busy_poll: meta.verdict_busy_poll,
            client_cpu: meta.client_cpu.map(|c| c as u64),
            target_cpus: meta.target_cpus.iter().map(|&c| c as u64).collect(),
            so_busy_poll_us: meta
                .busy_poll
                .so_busy_poll
                .as_ref()
                .ok()
                .map(|&us| us.into()),
            so_busy_poll_error: meta.busy_poll.so_busy_poll.as_ref().err().cloned(),
            ping_bytes: PING_BYTES as u64,
            ws_send_rate: meta.ws_send_rate,
            ws_message_bytes: meta.ws_message_bytes as u64,
            timer_ahead_us: TIMER_AHEAD.as_secs_f64() * 1e6,
            clock_batch: CLOCK_BATCH,
            echo: meta.echo.clone(),
            ws_url: meta.ws_url.as_deref().map(redact::url),
        },
        host: host.into(),
        layers: r
            .layers
            .iter()
            .map(|l| (l.layer.name().to_string(), layer(l)))
            .collect(),
        verdict: schema::FloorVerdict {
            busy_poll: v.mode.busy_poll,
            pinned: v.mode.pinned,
            raw_rtt_p50_ns: v.raw_p50_ns,
            http_ttfb_p50_ns: v.http_p50_ns,
            adds_ns: v.adds_ns,
            cpu_per_request_us: v.cpu_per_request_us,
            missing: v.missing,
        },
        client: schema::FloorClient {
            peak_rss_bytes: r.peak_rss_bytes,
        },
    }
}

/// Build the report document (see the module doc for every field).
pub fn render(meta: &FloorMeta, r: &FloorResult, host: &HostFacts) -> Value {
    schema::to_value(&report(meta, r, host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::floor::{Layer, Measured, Row};
    use std::time::SystemTime;

    fn measured(v: u64) -> Measured {
        let mut hist = crate::metrics::new_histogram();
        for i in 0..100 {
            hist.record(v + i).unwrap();
        }
        Measured {
            hist,
            ops: 100,
            cpu_ns: 500_000,
            errors: 0,
            error_note: None,
        }
    }

    fn meta() -> FloorMeta {
        FloorMeta {
            url: "http://user:secret@127.0.0.1:8080/?api_key=abc".into(),
            builtin: false,
            command_line: vec!["connbench".into(), "floor".into()],
            measure_for: Duration::from_millis(750),
            verdict_busy_poll: false,
            client_cpu: Some(1),
            target_cpus: vec![0],
            busy_poll: BusyPoll {
                so_busy_poll: Err("Operation not permitted (os error 1)".into()),
            },
            echo: None,
            ws_url: None,
            insecure: false,
            ws_send_rate: 2000.0,
            ws_message_bytes: 64,
        }
    }

    fn result() -> FloorResult {
        let rows = |base: u64| {
            Ok(Mode::ALL
                .iter()
                .map(|&mode| Row {
                    mode,
                    outcome: if mode.pinned || !mode.busy_poll {
                        Ok(measured(if mode.busy_poll { base / 3 } else { base }))
                    } else {
                        Err("one CPU".into())
                    },
                })
                .collect())
        };
        FloorResult {
            layers: Layer::ALL
                .iter()
                .map(|&layer| LayerResult {
                    layer,
                    rows: match layer {
                        Layer::WsEcho => Err("no WebSocket echo endpoint given".into()),
                        Layer::HttpTtfb => rows(90_000),
                        _ => rows(80_000),
                    },
                })
                .collect(),
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            elapsed: Duration::from_secs(20),
            interrupted: false,
            peak_rss_bytes: 1 << 20,
        }
    }

    #[test]
    fn the_text_has_a_row_per_mode_what_is_lower_and_the_verdict() {
        let t = text(&meta(), &result());
        assert!(t.contains("raw TCP round trip      sleep, pinned"), "{t}");
        assert!(t.contains("busy-poll, not pinned   n/a: one CPU"), "{t}");
        assert!(
            t.contains("WebSocket echo RTT      n/a: no WebSocket echo endpoint"),
            "{t}"
        );
        assert!(t.contains("busy-poll lower by"), "{t}");
        // The clock has no busy-poll rows in the text; its rows say pinned / not pinned.
        let clock = t.lines().find(|l| l.starts_with("clock read")).unwrap();
        assert!(
            clock.contains("pinned") && !clock.contains("sleep"),
            "{clock}"
        );
        assert!(
            t.contains("verdict   connbench adds 10.0 µs (p50) over the raw round trip"),
            "{t}"
        );
        assert!(t.contains("client CPU 5.00 µs per request"), "{t}");
        assert!(t.contains("SO_BUSY_POLL refused by the kernel"), "{t}");
        assert!(!t.contains("secret") && !t.contains("abc"), "redacted: {t}");
    }

    #[test]
    fn the_json_has_every_layer_and_mode_and_reads_back() {
        let host = HostFacts {
            cpus_online: 2,
            cpus_allowed: 2,
            clocksource: Some("tsc".into()),
            kernel: None,
            arch: "x86_64",
            os: "linux",
        };
        let v = render(&meta(), &result(), &host);
        let back: schema::FloorReport = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back.layers.len(), Layer::COUNT);
        let raw = &back.layers["raw_tcp_rtt"];
        assert_eq!(raw.variants.len(), 4);
        assert_eq!(raw.lower_wait.as_deref(), Some("busy_poll"));
        assert!(raw.busy_poll_minus_sleep_p50_ns.unwrap() < 0);
        assert_eq!(raw.lowest.as_deref(), Some("busy_poll_pinned"));
        let free_busy = &raw.variants["busy_poll_unpinned"];
        assert!(!free_busy.available && free_busy.stats.is_none());
        assert_eq!(free_busy.reason.as_deref(), Some("one CPU"));
        let ws = &back.layers["ws_echo_rtt"];
        assert!(!ws.available && ws.variants.is_empty() && ws.reason.is_some());
        assert!(back.verdict.adds_ns.unwrap() > 0);
        assert!(back.verdict.pinned && !back.verdict.busy_poll);
        assert_eq!(back.config.so_busy_poll_us, None);
        assert!(back.config.so_busy_poll_error.is_some());
        assert!(!v.to_string().contains("secret"));
        assert_eq!(v["mode"], "floor");
    }
}
