//! The machine-readable report: one versioned JSON document per run, stable enough to diff runs,
//! feed dashboards and merge runs from several machines (every phase carries its full
//! HdrHistogram, so merging never averages percentiles).
//!
//! This module owns the schema below and must keep it backward compatible within a `schema`
//! version: fields may be added, never renamed, retyped or removed (that needs `…v2`). It formats
//! only what the engine measured; every user-supplied string goes through [`redact`], and it
//! never reads the host (the caller passes [`HostFacts`]).
//!
//! # Schema `connbench.report.v1`
//!
//! Durations are seconds (`_s`, float) or microseconds (`_us`, float) as the name says; phase
//! values are integer nanoseconds. Rates divide by `duration_s` and are 0 when it is 0. Object
//! keys are written in alphabetical order.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | always `"connbench.report.v1"` ([`SCHEMA`]) |
//! | `connbench_version` | string | version of the binary that ran |
//! | `mode` | string | `"http"` or `"ws"` (`"probe"`: see [`super::probe`]) |
//! | `started_at` | string | start of the measured window (after warm-up), RFC 3339 UTC, whole seconds: `2023-11-14T22:13:20Z` |
//! | `started_at_unix_ms` | integer | the same instant, ms since the Unix epoch |
//! | `duration_s` | number | length of the measured window |
//! | `interrupted` | bool | Ctrl-C ended the run early; results are partial |
//! | `worker_panics` | array | `{worker, message, responses_lost}` per worker thread that panicked (a connbench defect; exit 70): the run stopped early and those responses are missing; empty normally |
//! | `insecure` | bool | `--insecure`: certificates were NOT verified (always present) |
//! | `command_line` | array of string | the process arguments, redacted |
//! | `target.url` | string | target URL, redacted |
//! | `target.builtin` | bool | the in-process built-in target was used |
//! | `config.method` | string | request method |
//! | `config.headers` | array of string | extra request headers as `"Name: value"`, secret values redacted |
//! | `config.body_len` | integer | request body bytes |
//! | `config.connections` | integer | concurrent connections asked for |
//! | `config.threads` | integer | worker threads |
//! | `config.worker_cpus` | array of integer | CPUs the workers were pinned to (empty: not pinned) |
//! | `config.target_cpus` | array of integer | CPUs the in-process target was pinned to |
//! | `config.pipeline` | integer | requests in flight per connection |
//! | `config.duration_s` | number \| null | `-d`, when the run was time-bounded |
//! | `config.requests` | integer \| null | `-n`, when the run was count-bounded |
//! | `config.warmup_s` | number | warm-up excluded from every number here |
//! | `config.timeout_s` | number | per-request timeout |
//! | `config.connect_timeout_s` | number | TCP connect timeout |
//! | `config.tls` | bool | https |
//! | `config.resume` | bool | TLS session resumption enabled |
//! | `config.sni` | string \| null | `--sni` |
//! | `config.ca_file` | string \| null | `--ca` |
//! | `config.fd_limit` | integer | soft RLIMIT_NOFILE in force |
//! | `config.sources` | array of string | `--source` addresses in round-robin order; empty when not given |
//! | `config.requests_per_conn` | integer \| null | requests a connection carries before connbench closes it and opens the next (`--requests-per-conn`; `--no-keepalive` is 1; `--conn-rate` defaults to 1); null: keep-alive |
//! | `config.close` | string \| null | how connbench closes the connections it is done with: `fin` or `rst` (`--close`); null for WebSocket runs |
//! | `config.busy_poll` | bool | `--busy-poll`: the workers spun in `epoll_wait(…, 0)` instead of sleeping |
//! | `config.so_busy_poll_us` | integer \| null | SO_BUSY_POLL set on every socket (µs); null without `--busy-poll` or when the kernel refused it |
//! | `config.so_busy_poll_error` | string \| null | why the kernel refused SO_BUSY_POLL (e.g. no CAP_NET_ADMIN); null when set or not asked for |
//! | `config.percentiles` | array of number | `--percentiles` in increasing order (the phases' `percentiles` and the text columns; `merge` renders with the first report's) |
//! | `host.cpus_online` | integer | logical CPUs online |
//! | `host.cpus_allowed` | integer | CPUs in the process's affinity mask |
//! | `host.clocksource` | string \| null | Linux clocksource (`tsc` is the cheap one) |
//! | `host.kernel` | string \| null | `uname -r` |
//! | `host.arch` | string | e.g. `x86_64` |
//! | `host.os` | string | e.g. `linux` |
//! | `throughput.requests_per_s` | number | requests sent ÷ duration |
//! | `throughput.responses_per_s` | number | responses fully framed ÷ duration |
//! | `throughput.bytes_in_per_s` | number | socket bytes read ÷ duration (TLS records included) |
//! | `throughput.bytes_out_per_s` | number | socket bytes written ÷ duration |
//! | `counters.requests` | integer | requests whose first byte was written |
//! | `counters.responses` | integer | responses fully framed |
//! | `counters.bytes_in`, `counters.bytes_out` | integer | socket bytes read / written |
//! | `counters.connections_opened` | integer | `connect()` calls |
//! | `counters.connections_established` | integer | connections that completed (TLS: handshake done) |
//! | `counters.reused_requests` | integer | requests sent on a connection that already carried one |
//! | `counters.reuse_rate` | number | `reused_requests ÷ requests` (0..1; 0 with no requests) |
//! | `counters.server_closes` | integer | connections the server closed (`Connection: close`, …) |
//! | `responses.{1xx,2xx,3xx,4xx,429,5xx,other}` | integer | responses by status class (4xx excludes 429); all keys present |
//! | `errors.{class}` | integer | failures per error class, every class present: `connect_refused`, `connect_timeout`, `connect_reset`, `local_addr_exhausted`, `local_fd_limit`, `tls_certificate`, `tls_alert`, `tls_handshake`, `read_timeout`, `reset_mid_response`, `eof_mid_response`, `protocol`, `io`, `upgrade_rejected`, `ws_protocol`, `ws_abnormal_close`, `stale`, `pong_timeout`, `ws_reset` (`merge` reads a class missing from an older report as 0) |
//! | `errors.total` | integer | sum of all classes |
//! | `errors.reasons` | object | why failures happened, where connbench knows (protocol errors: `protocol`, `ws_protocol`, `upgrade_rejected`): per class with any, an array of `{"reason": string, "count": integer}`, most frequent first, at most 4 distinct reasons per class plus `"(other reasons)"` for the rest; `{}` when none |
//! | `tls` | object \| null | null when the run was not TLS |
//! | `tls.version`, `tls.cipher_suite`, `tls.kx_group`, `tls.alpn` | string \| null | negotiated by the first completed handshake (null if none completed / no ALPN) |
//! | `tls.handshakes_full`, `tls.handshakes_resumed` | integer | handshakes by kind |
//! | `phases.{connect,tls,tls_full,tls_resumed,ttfb,total}` | object | one per phase, always all six (WebSocket: `connect`, `tls`, `tls_full`, `tls_resumed` and its own phases); `tls_full` and `tls_resumed` split `tls` by handshake kind |
//! | `phases.open_lag` | object | `--conn-rate` only: `connect()` called − the connection's due time on the schedule (how far behind the opener fell) |
//! | `phases.*.unit` | string | always `"ns"` |
//! | `phases.*.count` | integer | samples |
//! | `phases.*.{min,p50,p90,p95,p99,p999,max}` | integer \| null | ns (HdrHistogram equivalents, 3 significant digits); null when `count` is 0 (`p95` is null in reports written before it existed) |
//! | `phases.*.percentiles` | array of object | the `--percentiles` (default 50, 90, 95, 99, 99.9), in increasing order: `{"percentile": number, "value": integer \| null}` (ns; null when `count` is 0; percentile 100 is `max`); empty in reports written before it existed |
//! | `phases.*.{mean,stdev}` | number \| null | ns; null when `count` is 0 |
//! | `phases.*.hdr` | string | the full histogram, base64 HdrHistogram V2+deflate ([`hdr::encode`]); present even when empty |
//! | `client.cpu_user_s`, `client.cpu_sys_s` | number | CPU time of all worker threads |
//! | `client.cpu_per_request_us` | number \| null | (user + sys) ÷ responses; null with 0 responses |
//! | `client.peak_rss_bytes` | integer | peak RSS of the process (includes an in-process target); 0 if unknown |
//! | `client.max_loop_stall_us` | number | worst gap between two polls over all workers |
//! | `rate` | object \| null | rate mode (`-R`, WebSocket echo) only |
//! | `rate.asked_per_s`, `rate.arrival` | number, string | the schedule asked for (`uniform`, `poisson`) |
//! | `rate.sent_per_s` | number | requests (echo messages) written ÷ duration |
//! | `rate.unsent` | integer | due and never written (WebSocket echo: dropped for a full `--send-buffer` too) |
//! | `rate.behind` | string \| null | who fell behind the schedule: `client`, `server`, or null when it held ([`super::behind`]) |
//! | `rate.behind_cause` | string \| null | `send_lag` (client loop late), `connections` (too few for the rate), `late_responses`, `outages` (server) |
//! | `rate.connections_needed` | integer \| null | HTTP: ⌈rate × median response time⌉ (Little's law); null for echo or with no response |
//! | `conn_rate` | object \| null | connection-rate mode (`--conn-rate`) only |
//! | `conn_rate.asked_per_s` | number | new connections per second asked for |
//! | `conn_rate.opened_per_s` | number | `connect()` calls ÷ duration (`counters.connections_opened`) |
//! | `conn_rate.unopened` | integer | connections due on the schedule and never opened: every `-c` slot was busy |
//! | `time_wait` | object \| null | this host's sockets in TIME_WAIT towards the target (`/proc/net/tcp`, `tcp6`; any process's): local ports it cannot reuse towards it for 60 s; null when unreadable, and in merged reports |
//! | `time_wait.at_start`, `time_wait.at_end` | integer | before the first connection; after the workers closed their last ones |
//! | `client.workers` | array of object | per worker, in worker order: `cpu` (integer \| null), `connections`, `cpu_user_s`, `cpu_sys_s`, `max_loop_stall_us` |
//! | `peak_open_connections` | integer | most connections open at once |
//! | `rss_per_open_connection_bytes` | integer \| null | `client.peak_rss_bytes ÷ peak_open_connections`; null with none open |
//! | `start_at` | string \| null | `--start-at`: the instant asked for, RFC 3339 UTC with the fraction of a second given (`2026-11-30T15:40:00.25Z`); null without it. Merged: the inputs' common value, null when they differ |
//! | `start_skew_s` | number \| null | actual − asked start, seconds: when the workers were released (connections began to open) minus `start_at`; the measured window (`started_at`) begins a warm-up later. Null without `--start-at`. Merged: the largest of the inputs' (by magnitude) |
//! | `stages` | array of object | `--stages`/`--scenario` only (else empty), one per ramp or hold window in order: `stage` (1-based), `window` (`ramp`, `hold`), `start_s`, `duration_s`, `connections_from`, `connections_to` (asked), `open_at_end`, `connections_opened`, `requests`, `responses`, `responses_per_s`, `reuse_rate`, `errors` (total), `responses_by_class` (as `responses` above), `errors_by_class` (every class, as `errors.{class}` above), `error_rate` (0..1; `http`: failures plus responses that are not 2xx/3xx, over responses plus failures; `ws`: failures over connections attempted; 0 with neither), `requests_per_s`, `asked_per_s` (the stage's `@RATE` or the run's `-R`; null in closed loop), `ws` (WebSocket runs, else null: `connections_attempted`, `connections_upgraded`, `connections_failed`, `messages_in`, `messages_in_per_s`, `reconnects` by cause as `ws.reconnects` below, `reconnects_total`), `phases` (as `phases` above, of that window) |
//! | `ws` | object \| null | WebSocket runs only: the settings (redacted) and counters below |
//! | `ws.mode` | string | `stream`, `echo` or `ping` |
//! | `ws.subscriptions` | array of string | subscription messages, templates expanded, redacted |
//! | `ws.send_rate`, `ws.message_size`, `ws.send_buffer` | number, integer, integer | echo: messages per second per connection, bytes per message, `--send-buffer` |
//! | `ws.ping_interval_s` | number | ping mode: interval between pings |
//! | `ws.ts_field`, `ws.seq_field` | string \| null | `--ts-field`, `--seq-field` |
//! | `ws.ts_unit` | string \| null | timestamp unit in force (given, or inferred from the first timestamp) |
//! | `ws.ts_unit_inferred` | bool | no `--ts-unit` was given |
//! | `ws.latency_note` | string | one-way latency assumes synchronized client and server clocks |
//! | `ws.stream_field` | string | `--stream-field` |
//! | `ws.stale_after_s` | number \| null | `--stale-after` |
//! | `ws.heartbeat` | string | `off`, `ping` or `text:…` |
//! | `ws.heartbeat_interval_s` | number | heartbeat interval |
//! | `ws.pong_timeout_s` | number \| null | pong timeout in force; null: pings never time out |
//! | `ws.backoff`, `ws.backoff_base_s`, `ws.backoff_cap_s` | string, number, number | reconnect backoff (`full`, `decorrelated`), its base and cap |
//! | `ws.max_retries` | integer \| null | `--max-retries` |
//! | `ws.reconnect_budget` | object \| null | `--reconnect-budget`: `count` reconnects per `period_s` |
//! | `ws.utf8_check`, `ws.max_message` | bool, integer | UTF-8 validation of text messages, `--max-message` |
//! | `ws.connections_attempted`, `ws.connections_upgraded`, `ws.connections_failed` | integer | `connect()` calls, upgrades validated (101), attempted − upgraded |
//! | `ws.success_rate` | number | upgraded ÷ attempted (0 with none) |
//! | `ws.peak_open` | integer | most connections open at once |
//! | `ws.messages_in`, `ws.messages_out` | integer | messages received (reassembled; replies to a text heartbeat included) and data messages sent (subscriptions, echo payloads, text heartbeats) |
//! | `ws.messages_in_per_s` | number | `messages_in ÷ duration_s` |
//! | `ws.subscriptions_sent`, `ws.resubscribed` | integer | subscription messages sent; connections that subscribed again after a reconnect |
//! | `ws.reconnects.{server_close,abnormal_close,error,stale,pong_timeout}` | integer | reconnects by cause; all keys present |
//! | `ws.reconnects_total` | integer | their sum |
//! | `ws.retries_exhausted` | integer | connections that gave up after `--max-retries` |
//! | `ws.close_codes` | object | close codes the server sent, by code (`"1000"` … `"1015"`, only those seen) and `other` (outside that range or no code) |
//! | `ws.pings_answered`, `ws.pings_sent`, `ws.pongs_received` | integer | server pings answered; heartbeats sent (pings and text heartbeats); their answers |
//! | `ws.seq_gaps`, `ws.seq_missing`, `ws.seq_restarts` | integer | sequence gaps, numbers skipped in them, numbers that went backwards |
//! | `ws.ts_missing`, `ws.ts_future` | integer | messages without a timestamp; with one in the future (not recorded as latency) |
//! | `ws.buffered_sent`, `ws.buffer_dropped` | integer | echo messages queued while disconnected and sent later; dropped for a full `--send-buffer` |
//! | `thresholds` | array of object | every `--threshold`, then every `--targets seed` target the command measures, checked: `threshold` (e.g. `ttfb.p95<180ms`), `metric`, `op`, `limit` and `measured` (number in `unit`; `measured` null when the metric had no sample or only `bounds` are known), `unit` (`ns`, `ratio` 0..1, `count`, `per_s`), `bounds` (`[low, high]` when only bounds are known: `setup` over TLS; else null), `pass` (bool), `origin` (`threshold` or `seed`), `target` (the seed's words, or null); empty when none was asked |
//! | `nothing_measured` | string \| null | why the run measured nothing (no response below 400; WebSocket: no upgrade, or no data message, echo or pong): the run exits 3 unless `--allow-nothing-measured`; null when it measured something |
//! | `merged_from` | array of string | reports written by `merge` only: the input files, in order |
//! | `sources` | array of object | `merge` only: per input, `file`, `started_at`, `started_at_unix_ms`, `duration_s`, `responses`, `url`, `connections`, `threads`, `host`, `start_at`, `start_skew_s` |
//! | `merge_window` | object | `merge` only: `start_unix_ms` (earliest start), `union_s` (earliest start to latest end), `overlap_s` (time every window covers; 0 when disjoint), `shortest_s` |

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::Value;

use super::host::HostFacts;
use super::percentiles::Percentiles;
use super::{hdr, redact, schema, threshold, RunMeta, RunResult, WorkerStats};
use crate::metrics::{ErrorClass, Phase, Reasons, Recorder, StatusClass};
use crate::plan::WsSession;

/// Identifies this document format; bumped only for incompatible changes.
pub const SCHEMA: &str = "connbench.report.v1";

/// Build the report document (see the module doc for every field).
pub fn render(meta: &RunMeta, run: &RunResult, host: &HostFacts) -> Value {
    schema::to_value(&report(meta, run, host))
}

/// The report document as its [`schema::Report`] type.
pub fn report(meta: &RunMeta, run: &RunResult, host: &HostFacts) -> schema::Report {
    let c = &run.recorder.counters;
    let secs = run.elapsed.as_secs_f64();
    let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let started_ms = unix_ms(run.started_at);

    let responses = StatusClass::ALL
        .iter()
        .map(|s| (s.name().to_string(), c.status[s.index()]))
        .collect();
    let errors = schema::Errors {
        classes: ErrorClass::ALL
            .iter()
            .map(|e| (e.name().to_string(), c.errors[e.index()]))
            .collect(),
        total: c.total_errors(),
        reasons: reasons(&run.recorder.reasons),
    };

    schema::Report {
        schema: SCHEMA.to_string(),
        connbench_version: env!("CARGO_PKG_VERSION").to_string(),
        mode: meta.mode.name().to_string(),
        started_at: rfc3339(started_ms.div_euclid(1000)),
        started_at_unix_ms: started_ms,
        duration_s: secs,
        interrupted: run.interrupted,
        worker_panics: run
            .worker_panics
            .iter()
            .map(|p| schema::WorkerPanic {
                worker: p.worker,
                message: p.message.clone(),
                responses_lost: p.responses_lost,
            })
            .collect(),
        insecure: meta.insecure(),
        command_line: redact::command_line(&meta.command_line),
        target: target(meta),
        config: schema::Config {
            method: meta.method.clone(),
            headers: headers(meta),
            body_len: meta.body_len as u64,
            connections: meta.connections as u64,
            threads: meta.threads as u64,
            worker_cpus: meta.worker_cpus.iter().map(|&c| c as u64).collect(),
            target_cpus: meta.target_cpus.iter().map(|&c| c as u64).collect(),
            pipeline: meta.pipeline as u64,
            duration_s: meta.duration.map(|d| d.as_secs_f64()),
            requests: meta.requests,
            warmup_s: meta.warmup.as_secs_f64(),
            timeout_s: meta.timeout.as_secs_f64(),
            connect_timeout_s: meta.connect_timeout.as_secs_f64(),
            tls: meta.tls.is_some(),
            resume: meta.tls.as_ref().is_none_or(|t| t.resume),
            sni: meta.tls.as_ref().and_then(|t| t.sni.clone()),
            ca_file: ca_file(meta),
            fd_limit: meta.fd_limit,
            sources: meta.sources.iter().map(|s| s.to_string()).collect(),
            requests_per_conn: meta.requests_per_conn,
            close: meta.close.map(|c| c.name().to_string()),
            busy_poll: meta.busy_poll.is_some(),
            so_busy_poll_us: meta
                .busy_poll
                .as_ref()
                .and_then(|b| b.so_busy_poll.as_ref().ok())
                .map(|&us| u64::from(us)),
            so_busy_poll_error: meta
                .busy_poll
                .as_ref()
                .and_then(|b| b.so_busy_poll.as_ref().err())
                .cloned(),
            percentiles: meta.percentiles.values(),
        },
        host: host.into(),
        throughput: schema::Throughput {
            requests_per_s: per_s(c.requests),
            responses_per_s: per_s(c.responses),
            bytes_in_per_s: per_s(c.bytes_in),
            bytes_out_per_s: per_s(c.bytes_out),
        },
        counters: schema::Counters {
            requests: c.requests,
            responses: c.responses,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            connections_opened: c.connections_opened,
            connections_established: c.connections_established,
            reused_requests: c.reused_requests,
            reuse_rate: c.reuse_rate(),
            server_closes: c.server_closes,
        },
        responses,
        errors,
        tls: tls(meta, &run.recorder),
        phases: phases(&meta.phases(), &run.recorder, &meta.percentiles),
        client: client(
            &run.workers,
            if meta.ws.is_some() {
                c.ws.messages_in
            } else {
                c.responses
            },
            run.peak_rss_bytes,
        ),
        ws: meta.ws.as_ref().map(|w| websocket(w, run)),
        peak_open_connections: run.peak_open,
        rss_per_open_connection_bytes: run.peak_rss_bytes.checked_div(run.peak_open),
        start_at: meta.start_at.map(rfc3339_precise),
        start_skew_s: meta.start_skew_s(run.started_at),
        stages: run.stages.iter().map(|s| stage(meta, s)).collect(),
        rate: meta.rate.as_ref().map(|(asked, arrival)| {
            let behind = super::behind::verdict(meta, run);
            schema::Rate {
                asked_per_s: *asked,
                arrival: arrival.name().to_string(),
                sent_per_s: per_s(c.requests),
                unsent: c.unsent,
                behind: behind.map(|b| b.who.name().to_string()),
                behind_cause: behind.map(|b| b.cause.name().to_string()),
                connections_needed: super::behind::connections_needed(meta, run),
            }
        }),
        conn_rate: meta.conn_rate.map(|asked| schema::ConnRate {
            asked_per_s: asked,
            opened_per_s: per_s(c.connections_opened),
            unopened: c.unopened,
        }),
        time_wait: run.time_wait.map(|t| schema::TimeWait {
            at_start: t.at_start,
            at_end: t.at_end,
        }),
        thresholds: thresholds(&threshold::evaluate(&threshold::Source::Run(meta, run))),
        nothing_measured: threshold::nothing_measured(meta, run),
    }
}

/// The `target` object (also the probe's).
pub(crate) fn target(meta: &RunMeta) -> schema::Target {
    schema::Target {
        url: redact::url(&meta.url),
        builtin: meta.builtin_target,
    }
}

/// `config.headers`: `"Name: value"`, secret values redacted (also the probe's).
pub(crate) fn headers(meta: &RunMeta) -> Vec<String> {
    meta.headers
        .iter()
        .map(|(n, v)| redact::header(n, v))
        .collect()
}

/// `config.ca_file`: the `--ca` file as given (also the probe's).
pub(crate) fn ca_file(meta: &RunMeta) -> Option<String> {
    let tls = meta.tls.as_ref()?;
    tls.ca_file.as_ref().map(|p| p.display().to_string())
}

/// The `ws` object of a WebSocket run: its settings (redacted) and its counters.
fn websocket(m: &WsSession, run: &RunResult) -> schema::Ws {
    use crate::metrics::{ReconnectCause, CLOSE_CODE_FIRST};
    let w = &run.recorder.counters.ws;
    let c = &run.recorder.counters;
    let secs = run.elapsed.as_secs_f64();
    let reconnects = ReconnectCause::ALL
        .iter()
        .map(|r| (r.name().to_string(), w.reconnects[r.index()]))
        .collect();
    let mut close_codes: BTreeMap<String, u64> = w
        .close_codes
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| ((CLOSE_CODE_FIRST + i as u16).to_string(), *n))
        .collect();
    if w.close_codes_other > 0 {
        close_codes.insert("other".into(), w.close_codes_other);
    }
    schema::Ws {
        mode: m.mode.name().to_string(),
        subscriptions: m.subscriptions.iter().map(|s| redact::message(s)).collect(),
        send_rate: m.send_rate,
        message_size: m.message_size as u64,
        ping_interval_s: m.ping_interval.as_secs_f64(),
        ts_field: m.ts_field.as_ref().map(ToString::to_string),
        ts_unit: run.recorder.ts_unit.map(str::to_string),
        ts_unit_inferred: m.ts_unit.is_none(),
        latency_note: LATENCY_NOTE.to_string(),
        seq_field: m.seq_field.as_ref().map(ToString::to_string),
        stream_field: m.stream_field.to_string(),
        stale_after_s: m.stale_after.map(|d| d.as_secs_f64()),
        heartbeat: m.heartbeat.describe(redact::message),
        heartbeat_interval_s: m.heartbeat_interval.as_secs_f64(),
        pong_timeout_s: m.pong_timeout.map(|d| d.as_secs_f64()),
        backoff: m.backoff.jitter.name().to_string(),
        backoff_base_s: m.backoff.base.as_secs_f64(),
        backoff_cap_s: m.backoff.cap.as_secs_f64(),
        max_retries: m.backoff.max_retries.map(u64::from),
        reconnect_budget: m.reconnect_budget.map(|(k, per)| schema::ReconnectBudget {
            count: u64::from(k),
            period_s: per.as_secs_f64(),
        }),
        send_buffer: m.send_buffer as u64,
        utf8_check: m.utf8_check,
        max_message: m.max_message as u64,
        connections_attempted: c.connections_opened,
        connections_upgraded: w.upgraded,
        connections_failed: c.connections_opened.saturating_sub(w.upgraded),
        success_rate: if c.connections_opened > 0 {
            w.upgraded as f64 / c.connections_opened as f64
        } else {
            0.0
        },
        peak_open: run.peak_open,
        messages_in: w.messages_in,
        messages_out: w.messages_out,
        messages_in_per_s: if secs > 0.0 {
            w.messages_in as f64 / secs
        } else {
            0.0
        },
        subscriptions_sent: w.subscriptions_sent,
        resubscribed: w.resubscribed,
        reconnects,
        reconnects_total: w.total_reconnects(),
        retries_exhausted: w.retries_exhausted,
        close_codes,
        pings_answered: w.pings_answered,
        pings_sent: w.pings_sent,
        pongs_received: w.pongs_received,
        seq_gaps: w.seq_gaps,
        seq_missing: w.seq_missing,
        seq_restarts: w.seq_backwards,
        ts_missing: w.ts_missing,
        ts_future: w.ts_future,
        buffered_sent: w.buffered_sent,
        buffer_dropped: w.buffer_dropped,
    }
}

/// `ws.latency_note`.
pub const LATENCY_NOTE: &str = "one-way latency assumes synchronized client and server clocks";

/// One window of a staged run: what it asked, what it got, its phases.
fn stage(meta: &RunMeta, s: &super::StageResult) -> schema::Stage {
    let c = &s.recorder.counters;
    let secs = s.window.length.as_secs_f64();
    schema::Stage {
        stage: s.window.stage as u64,
        window: s.window.kind.name().to_string(),
        start_s: s.window.start.as_secs_f64(),
        duration_s: secs,
        connections_from: s.window.from as u64,
        connections_to: s.window.to as u64,
        open_at_end: s.open_at_end,
        connections_opened: c.connections_opened,
        requests: c.requests,
        responses: c.responses,
        responses_per_s: if secs > 0.0 {
            c.responses as f64 / secs
        } else {
            0.0
        },
        reuse_rate: c.reuse_rate(),
        errors: c.total_errors(),
        responses_by_class: StatusClass::ALL
            .iter()
            .map(|k| (k.name().to_string(), c.status[k.index()]))
            .collect(),
        errors_by_class: ErrorClass::ALL
            .iter()
            .map(|e| (e.name().to_string(), c.errors[e.index()]))
            .collect(),
        error_rate: if meta.ws.is_some() {
            c.ws_error_rate()
        } else {
            c.error_rate()
        },
        requests_per_s: if secs > 0.0 {
            c.requests as f64 / secs
        } else {
            0.0
        },
        asked_per_s: super::stage_asked_rate(meta, &s.window),
        ws: meta.ws.as_ref().map(|_| {
            use crate::metrics::ReconnectCause;
            let w = &c.ws;
            schema::StageWs {
                connections_attempted: c.connections_opened,
                connections_upgraded: w.upgraded,
                connections_failed: c.connections_opened.saturating_sub(w.upgraded),
                messages_in: w.messages_in,
                messages_in_per_s: if secs > 0.0 {
                    w.messages_in as f64 / secs
                } else {
                    0.0
                },
                reconnects: ReconnectCause::ALL
                    .iter()
                    .map(|r| (r.name().to_string(), w.reconnects[r.index()]))
                    .collect(),
                reconnects_total: w.total_reconnects(),
            }
        }),
        phases: phases(&meta.phases(), &s.recorder, &meta.percentiles),
    }
}

/// The `errors.reasons` object: per class whose failures carried a reason, the reasons, most
/// frequent first, then the failures whose reason was not kept (see
/// [`crate::metrics::MAX_REASONS`]).
pub(crate) fn reasons(r: &Reasons) -> BTreeMap<String, Vec<schema::Reason>> {
    let mut out = BTreeMap::new();
    for class in ErrorClass::ALL {
        let (list, other) = r.of(class);
        if list.is_empty() && other == 0 {
            continue;
        }
        let mut entries: Vec<schema::Reason> = list
            .iter()
            .map(|(reason, count)| schema::Reason {
                reason: reason.to_string(),
                count: *count,
            })
            .collect();
        if other > 0 {
            entries.push(schema::Reason {
                reason: OTHER_REASONS.to_string(),
                count: other,
            });
        }
        out.insert(class.name().to_string(), entries);
    }
    out
}

/// The reason standing for failures whose own reason was not kept.
pub const OTHER_REASONS: &str = "(other reasons)";

/// The `phases` object: each listed phase's statistics, its `--percentiles` and its full
/// histogram (also the probe's).
pub(crate) fn phases(
    list: &[Phase],
    rec: &Recorder,
    percentiles: &Percentiles,
) -> BTreeMap<String, schema::PhaseStats> {
    list.iter()
        .map(|&p| (p.name().to_string(), phase(rec.histogram(p), percentiles)))
        .collect()
}

/// The `tls` object of a TLS run, or null (also the probe's).
pub(crate) fn tls(meta: &RunMeta, rec: &Recorder) -> Option<schema::Tls> {
    meta.tls.as_ref()?;
    let f = &rec.tls;
    Some(schema::Tls {
        version: f.version.clone(),
        cipher_suite: f.cipher_suite.clone(),
        kx_group: f.kx_group.clone(),
        alpn: f.alpn.clone(),
        handshakes_full: rec.counters.handshakes_full,
        handshakes_resumed: rec.counters.handshakes_resumed,
    })
}

/// One `phases.*` object.
pub(crate) fn phase(h: &Histogram<u64>, percentiles: &Percentiles) -> schema::PhaseStats {
    let hdr = hdr::encode(h);
    let full = !h.is_empty();
    let q = |q: f64| full.then(|| h.value_at_quantile(q));
    schema::PhaseStats {
        unit: "ns".to_string(),
        count: h.len(),
        min: full.then(|| h.min()),
        p50: q(0.50),
        p90: q(0.90),
        p95: q(0.95),
        p99: q(0.99),
        p999: q(0.999),
        max: full.then(|| h.max()),
        mean: full.then(|| mean(h)),
        stdev: full.then(|| h.stdev()),
        hdr,
        percentiles: percentiles
            .iter()
            .map(|p| schema::PercentileValue {
                percentile: p.value(),
                value: full.then(|| p.of(h)),
            })
            .collect(),
    }
}

/// The `thresholds` array: every `--threshold` and `--targets` outcome (also the probe's).
pub(crate) fn thresholds(outcomes: &[threshold::Outcome]) -> Vec<schema::ThresholdResult> {
    outcomes
        .iter()
        .map(|o| {
            let t = o.threshold;
            let exact = o.measured.filter(|m| m.is_exact());
            schema::ThresholdResult {
                threshold: t.to_string(),
                metric: t.metric.name(),
                op: t.op.symbol().to_string(),
                limit: t.limit.base(),
                unit: t.metric.kind().unit().to_string(),
                measured: exact.map(|m| m.lo),
                bounds: o.measured.filter(|m| !m.is_exact()).map(|m| (m.lo, m.hi)),
                pass: o.pass,
                origin: match o.origin {
                    threshold::Origin::Flag => "threshold",
                    threshold::Origin::Seed(_) => "seed",
                }
                .to_string(),
                target: match o.origin {
                    threshold::Origin::Flag => None,
                    threshold::Origin::Seed(s) => Some(s.describe().to_string()),
                },
            }
        })
        .collect()
}

/// The mean of a non-empty histogram, ns, kept inside `[min, max]`: the f64 sum of
/// value × count / total can round one ulp past them (e.g. 3.2e13 samples of 819 ns gave
/// 819.0000000000001 > max 819).
pub(crate) fn mean(h: &Histogram<u64>) -> f64 {
    // Not `clamp`, which panics should min > max.
    h.mean().max(h.min() as f64).min(h.max() as f64)
}

/// The `client` object: the benchmark's own cost.
fn client(workers: &[WorkerStats], responses: u64, peak_rss_bytes: u64) -> schema::Client {
    let user: u64 = workers.iter().map(|w| w.cpu_user_ns).sum();
    let sys: u64 = workers.iter().map(|w| w.cpu_sys_ns).sum();
    let stall = workers.iter().map(|w| w.max_stall_ns).max().unwrap_or(0);
    let per_request_us =
        (responses > 0).then(|| (user as f64 + sys as f64) / responses as f64 / 1e3);
    schema::Client {
        cpu_user_s: user as f64 / 1e9,
        cpu_sys_s: sys as f64 / 1e9,
        cpu_per_request_us: per_request_us,
        peak_rss_bytes,
        max_loop_stall_us: stall as f64 / 1e3,
        workers: workers
            .iter()
            .map(|w| schema::Worker {
                cpu: w.cpu.map(|c| c as u64),
                connections: w.connections as u64,
                cpu_user_s: w.cpu_user_ns as f64 / 1e9,
                cpu_sys_s: w.cpu_sys_ns as f64 / 1e9,
                max_loop_stall_us: w.max_stall_ns as f64 / 1e3,
            })
            .collect(),
    }
}

/// Write the document pretty-printed with a trailing newline: to stdout for `"-"`, else to a
/// file created or truncated at `dest`.
pub fn write(dest: &str, v: &Value) -> io::Result<()> {
    if dest == "-" {
        let stdout = io::stdout();
        let mut w = stdout.lock();
        write_to(&mut w, v)
    } else {
        let mut w = io::BufWriter::new(std::fs::File::create(dest)?);
        write_to(&mut w, v)
    }
}

fn write_to(w: &mut impl Write, v: &Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, v)?;
    w.write_all(b"\n")?;
    // Flush explicitly: BufWriter's drop would swallow a late write error (e.g. disk full).
    w.flush()
}

/// Milliseconds since the Unix epoch (negative before it, saturating far outside i64).
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// RFC 3339 UTC timestamp to the nanosecond, trailing zeros of the fraction dropped (none for
/// a whole second): `"2026-11-30T15:40:00.25Z"`. Instants before 1970 are written as 1970.
pub fn rfc3339_precise(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let whole = rfc3339(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return whole;
    }
    let frac = format!("{nanos:09}");
    format!(
        "{}.{}Z",
        whole.trim_end_matches('Z'),
        frac.trim_end_matches('0')
    )
}

/// RFC 3339 UTC timestamp, whole seconds: `1700000000` → `"2023-11-14T22:13:20Z"`.
/// Written by hand (days → civil date, Howard Hinnant's `civil_from_days`) to avoid a date crate.
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
/// Eras are 400-year cycles of 146,097 days starting on 0000-03-01, so leap days fall at the
/// end of each shifted year and need no special case.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Saturate: only absurd SystemTimes get near these bounds, and then any date is fine.
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year, [0, 365]
    let mp = (5 * doy + 2) / 153; // March = 0, [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe.saturating_add(era.saturating_mul(400));
    (if m <= 2 { y.saturating_add(1) } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::metrics::TlsFacts;
    use crate::plan::{Mode, TlsPlan};

    fn host() -> HostFacts {
        HostFacts {
            cpus_online: 2,
            cpus_allowed: 2,
            clocksource: Some("tsc".into()),
            kernel: Some("6.18.0".into()),
            arch: "x86_64",
            os: "linux",
        }
    }

    fn meta() -> RunMeta {
        RunMeta {
            mode: Mode::Http,
            url: "https://bob:PW-LEAK-1@api.example.com/trades?symbol=BTC&api_key=KEY-LEAK-2#x"
                .into(),
            command_line: vec![
                "connbench".into(),
                "http".into(),
                "-H".into(),
                "Authorization: Bearer HDR-LEAK-3".into(),
                "--header=X-Api-Key: HDR-LEAK-4".into(),
                "https://bob:PW-LEAK-1@api.example.com/trades?symbol=BTC&api_key=KEY-LEAK-2#x"
                    .into(),
            ],
            method: "GET".into(),
            headers: vec![
                ("Authorization".into(), "Bearer HDR-LEAK-3".into()),
                ("X-Api-Key".into(), "HDR-LEAK-4".into()),
                ("Accept".into(), "application/json".into()),
            ],
            connections: 4,
            threads: 2,
            worker_cpus: vec![0, 1],
            pipeline: 1,
            duration: Some(Duration::from_secs(2)),
            warmup: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            tls: Some(TlsPlan {
                resume: true,
                sni: Some("api.example.com".into()),
                ..TlsPlan::default()
            }),
            fd_limit: 4096,
            ..RunMeta::new(Mode::Http, "")
        }
    }

    fn run() -> RunResult {
        let mut r = Recorder::new();
        for i in 1..=200u64 {
            r.record(Phase::Total, i * 1_000);
            r.record(Phase::Ttfb, i * 900);
            r.response(200);
        }
        r.record(Phase::Connect, 40_000);
        r.counters.requests = 201;
        r.counters.reused_requests = 197;
        r.counters.bytes_in = 1_000_000;
        r.counters.bytes_out = 50_000;
        r.counters.connections_opened = 4;
        r.counters.handshakes_full = 4;
        r.error(ErrorClass::ReadTimeout);
        r.tls = TlsFacts {
            version: Some("TLSv1_3".into()),
            cipher_suite: Some("TLS13_AES_128_GCM_SHA256".into()),
            kx_group: Some("X25519".into()),
            alpn: Some("http/1.1".into()),
        };
        RunResult {
            recorder: r,
            workers: vec![
                WorkerStats {
                    cpu: Some(0),
                    connections: 2,
                    cpu_user_ns: 100_000_000,
                    cpu_sys_ns: 200_000_000,
                    max_stall_ns: 50_000,
                },
                WorkerStats {
                    cpu: None,
                    connections: 2,
                    cpu_user_ns: 100_000_000,
                    cpu_sys_ns: 0,
                    max_stall_ns: 70_000,
                },
            ],
            started_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            elapsed: Duration::from_secs(2),
            interrupted: false,
            peak_rss_bytes: 10 << 20,
            peak_open: 4,
            intervals: vec![],
            stages: vec![],
            worker_panics: Vec::new(),
            time_wait: None,
        }
    }

    #[test]
    fn top_level_fields() {
        let v = render(&meta(), &run(), &host());
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["connbench_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["started_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["started_at_unix_ms"], 1_700_000_000_123i64);
        assert_eq!(v["duration_s"], 2.0);
        assert_eq!(v["insecure"], false);
        assert_eq!(v["interrupted"], false);
        assert_eq!(v["config"]["duration_s"], 2.0);
        assert_eq!(v["config"]["requests"], Value::Null);
        assert_eq!(v["config"]["warmup_s"], 0.5);
        assert_eq!(v["config"]["worker_cpus"], json!([0, 1]));
        assert_eq!(v["host"]["clocksource"], "tsc");
        assert_eq!(v["throughput"]["responses_per_s"], 100.0);
        assert_eq!(v["throughput"]["bytes_in_per_s"], 500_000.0);
        assert_eq!(v["counters"]["reused_requests"], 197);
        assert_eq!(v["responses"]["2xx"], 200);
        assert_eq!(v["tls"]["alpn"], "http/1.1");
        assert_eq!(v["tls"]["handshakes_full"], 4);
        assert_eq!(v["client"]["cpu_per_request_us"], 2_000.0);
        assert_eq!(v["client"]["max_loop_stall_us"], 70.0);
        assert_eq!(v["client"]["workers"][1]["cpu"], Value::Null);
        assert_eq!(v["client"]["workers"][0]["cpu_sys_s"], 0.2);
    }

    #[test]
    fn insecure_and_tls_null_are_explicit() {
        let mut m = meta();
        if let Some(t) = &mut m.tls {
            t.insecure = true;
        }
        let v = render(&m, &run(), &host());
        assert_eq!(v["insecure"], true);
        m.tls = None;
        let plain = render(&m, &run(), &host());
        assert!(plain.as_object().expect("object").contains_key("tls"));
        assert_eq!(plain["tls"], Value::Null);
        assert_eq!(plain["insecure"], false, "present even when false");
    }

    #[test]
    fn every_error_class_and_status_key_present() {
        let v = render(&meta(), &run(), &host());
        let errors = v["errors"].as_object().expect("object");
        for e in ErrorClass::ALL {
            let expect = u64::from(e == ErrorClass::ReadTimeout);
            assert_eq!(errors[e.name()], expect, "{}", e.name());
        }
        assert_eq!(errors["total"], 1);
        assert_eq!(errors["reasons"], json!({}), "present even when empty");
        assert_eq!(errors.len(), ErrorClass::COUNT + 2);
        let responses = v["responses"].as_object().expect("object");
        for s in ["1xx", "2xx", "3xx", "4xx", "429", "5xx", "other"] {
            assert!(responses.contains_key(s), "{s}");
        }
    }

    #[test]
    fn error_reasons_are_listed_per_class() {
        let mut r = run();
        for _ in 0..3 {
            r.recorder.error(ErrorClass::Protocol);
            r.recorder.reason(
                ErrorClass::Protocol,
                &"response head has more than 1024 header fields",
            );
        }
        r.recorder.error(ErrorClass::Protocol);
        r.recorder
            .reason(ErrorClass::Protocol, &"malformed response head: x");
        use crate::metrics::MAX_REASONS;
        for i in 0..MAX_REASONS + 2 {
            r.recorder.error(ErrorClass::WsProtocol);
            r.recorder
                .reason(ErrorClass::WsProtocol, &format_args!("frame fault {i}"));
        }
        let v = render(&meta(), &r, &host());
        let reasons = &v["errors"]["reasons"];
        assert_eq!(
            reasons["protocol"],
            json!([
                { "reason": "response head has more than 1024 header fields", "count": 3 },
                { "reason": "malformed response head: x", "count": 1 },
            ])
        );
        let ws = reasons["ws_protocol"].as_array().expect("array");
        assert_eq!(ws.len(), MAX_REASONS + 1);
        assert_eq!(
            ws[MAX_REASONS],
            json!({ "reason": OTHER_REASONS, "count": 2 })
        );
        assert_eq!(reasons.as_object().expect("object").len(), 2);
    }

    #[test]
    fn phase_hdr_decodes_to_the_same_counts() {
        let r = run();
        let v = render(&meta(), &r, &host());
        for p in Phase::HTTP {
            let o = &v["phases"][p.name()];
            let h = r.recorder.histogram(p);
            let back = hdr::decode(o["hdr"].as_str().expect("hdr string")).expect("decodes");
            assert_eq!(&back, h, "{}", p.name());
            assert_eq!(o["count"], h.len());
            assert_eq!(o["unit"], "ns");
            if h.is_empty() {
                for k in ["min", "p50", "p90", "p99", "p999", "max", "mean", "stdev"] {
                    assert_eq!(o[k], Value::Null, "{}.{k}", p.name());
                }
            } else {
                assert_eq!(o["p99"], back.value_at_quantile(0.99));
                assert_eq!(o["max"], back.max());
            }
        }
        assert_eq!(v["phases"]["tls"]["count"], 0);
        assert_eq!(v["phases"]["total"]["count"], 200);
    }

    #[test]
    fn new_connection_settings_conn_rate_and_time_wait_are_written_typed() {
        let mut m = meta();
        m.requests_per_conn = Some(3);
        m.conn_rate = Some(250.0);
        m.close = Some(crate::plan::CloseMode::Rst);
        let mut r = run();
        r.recorder.counters.connections_opened = 498;
        r.recorder.counters.unopened = 2;
        r.recorder.record(Phase::OpenLag, 7_000);
        r.recorder.record(Phase::TlsResumed, 300_000);
        r.time_wait = Some(crate::metrics::run::TimeWait {
            at_start: 1,
            at_end: 9,
        });
        let v = render(&m, &r, &host());
        assert_eq!(v["config"]["requests_per_conn"], 3);
        assert_eq!(v["config"]["close"], "rst");
        assert_eq!(
            v["conn_rate"],
            json!({ "asked_per_s": 250.0, "opened_per_s": 249.0, "unopened": 2 })
        );
        assert_eq!(v["phases"]["open_lag"]["count"], 1);
        assert_eq!(v["phases"]["tls_resumed"]["count"], 1);
        assert_eq!(v["phases"]["tls_full"]["count"], 0);
        assert_eq!(v["time_wait"], json!({ "at_start": 1, "at_end": 9 }));
        // Keep-alive: null settings and no conn_rate object or open_lag phase; null time_wait
        // when it could not be read.
        let v = render(&meta(), &run(), &host());
        assert_eq!(v["config"]["requests_per_conn"], Value::Null);
        assert_eq!(v["config"]["close"], Value::Null);
        assert_eq!(v["conn_rate"], Value::Null);
        assert_eq!(v["time_wait"], Value::Null);
        assert!(v["phases"].get("open_lag").is_none());
        assert!(
            v["phases"].get("tls_full").is_some(),
            "always with the HTTP phases"
        );
    }

    #[test]
    fn no_secret_anywhere() {
        let v = render(&meta(), &run(), &host());
        let s = v.to_string();
        for secret in ["PW-LEAK-1", "KEY-LEAK-2", "HDR-LEAK-3", "HDR-LEAK-4", "bob"] {
            assert!(!s.contains(secret), "{secret} leaked: {s}");
        }
        assert!(s.contains("symbol=BTC"));
        assert_eq!(
            v["target"]["url"],
            "https://[redacted]@api.example.com/trades?symbol=BTC&api_key=[redacted]#x"
        );
        assert_eq!(
            v["config"]["headers"],
            json!([
                "Authorization: [redacted]",
                "X-Api-Key: [redacted]",
                "Accept: application/json"
            ])
        );
    }

    #[test]
    fn zero_elapsed_and_zero_responses() {
        let mut r = run();
        r.elapsed = Duration::ZERO;
        r.recorder = Recorder::new();
        let v = render(&meta(), &r, &host());
        assert_eq!(v["throughput"]["requests_per_s"], 0.0);
        assert_eq!(v["client"]["cpu_per_request_us"], Value::Null);
        assert_eq!(v["counters"]["reuse_rate"], 0.0);
    }

    #[test]
    fn rfc3339_known_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z"); // 2100 is not leap
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        // Absurd inputs format without panicking.
        let _ = rfc3339(i64::MAX);
        let _ = rfc3339(i64::MIN);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(1500)), -1500);
    }

    #[test]
    fn civil_dates_match_a_day_by_day_calendar() {
        // Walk one full 400-year cycle from 1970 and compare with a naive calendar.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..146_097i64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn write_pretty_with_trailing_newline() {
        let v = render(&meta(), &run(), &host());
        let path = std::env::temp_dir().join(format!(
            "connbench-json-test-{}-{}.json",
            std::process::id(),
            unix_ms(SystemTime::now())
        ));
        let dest = path.to_str().expect("utf-8 temp path");
        std::fs::write(&path, "x".repeat(100_000)).expect("pre-fill");
        write(dest, &v).expect("writes");
        let text = std::fs::read_to_string(&path).expect("reads back");
        std::fs::remove_file(&path).expect("cleanup");
        assert!(text.ends_with("}\n"), "truncated and newline-terminated");
        assert!(text.contains("\n  \"schema\": "), "pretty-printed");
        // Compare text, not parsed values: serde_json's default float parser may be 1 ULP off.
        let expect = serde_json::to_string_pretty(&v).expect("serializes") + "\n";
        assert_eq!(text, expect);
        let back: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back["schema"], SCHEMA);
        assert!(write("/nonexistent-dir/connbench/x.json", &v).is_err());
    }
}
