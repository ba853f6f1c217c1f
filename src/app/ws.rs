//! `connbench ws`: WebSocket streams, echo and ping, with the reconnection manager.

#[allow(unused_imports)]
use super::*;

pub(super) fn ws(
    a: WsArgs,
    given: &Given,
    argv: Vec<String>,
    sink: measure::Sink<'_>,
) -> Result<i32, AppError> {
    let (checked, fields) = validate::check_ws(&a, given)?;
    let verdict =
        validate::check_verdict(&a.verdict, &validate::ws_context(&a, &checked, &fields))?;
    check_start_at(a.load.start_at)?;
    let runs = series::runs(Mode::Ws, &a.stages, a.scenario.as_deref())?;
    let mut load = a.load;
    if let Some(busiest) = series::busiest(&runs) {
        // The slots: as many as the busiest stage of any run.
        load.connections = busiest;
    } else if a.duration.is_zero() {
        return usage("-d must be longer than 0 (e.g. -d 10s)");
    }
    // -R is a total over the connections; each connection keeps its share of the schedule.
    let send_rate = a
        .rate
        .map_or(a.send_rate, |r| r / load.connections.max(1) as f64);
    if a.mode == WsModeArg::Echo && !(send_rate > 0.0 && send_rate.is_finite()) {
        return usage("--send-rate / -R must be a positive number of messages per second");
    }
    if a.mode == WsModeArg::Ping && a.ping_interval.is_zero() {
        return usage("--ping-interval must be longer than 0");
    }
    if a.backoff_base.is_zero() || a.backoff_cap < a.backoff_base {
        return usage("--backoff-base must be > 0 and not above --backoff-cap");
    }
    let ts_unit = match &a.ts_unit {
        None => None,
        Some(u) => Some(TsUnit::parse(u).ok_or_else(|| {
            AppError::Usage(UsageError(format!(
                "invalid --ts-unit {u:?} (use s, ms, us or ns)"
            )))
        })?),
    };
    let heartbeat = match a.heartbeat.as_deref() {
        None => Heartbeat::Off,
        Some(h) => match Heartbeat::parse(h) {
            Some(Heartbeat::Text(t)) if t.is_empty() => None,
            parsed => parsed,
        }
        .ok_or_else(|| {
            AppError::Usage(UsageError(format!(
                "invalid --heartbeat {h:?} (use ping, or text:MESSAGE such as text:ping)"
            )))
        })?,
    };
    // Ping mode is a protocol-ping heartbeat at --ping-interval.
    let (heartbeat, heartbeat_interval) = match a.mode {
        WsModeArg::Ping => (Heartbeat::Ping, a.ping_interval),
        _ => (heartbeat, a.heartbeat_interval),
    };
    if heartbeat != Heartbeat::Off && heartbeat_interval.is_zero() {
        return usage("--heartbeat-interval must be longer than 0");
    }
    // A ping unanswered when the next one is due means the peer is gone (the default of
    // --heartbeat ping). Ping mode measures pongs: cutting slow ones off would hide the tail
    // it is there to show, so it has no timeout unless asked.
    let pong_timeout =
        match a.pong_timeout {
            Some(_) if heartbeat != Heartbeat::Ping => return usage(
                "--pong-timeout needs protocol pings: add --heartbeat ping (or use --mode ping)",
            ),
            Some(t) if t.is_zero() => return usage("--pong-timeout must be longer than 0"),
            Some(t) => Some(t),
            None if a.mode == WsModeArg::Ping => None,
            None => (heartbeat == Heartbeat::Ping).then_some(heartbeat_interval),
        };
    let reconnect_budget = match &a.reconnect_budget {
        None => None,
        Some(b) => Some(
            engine::reconnect::parse_budget(b)
                .map_err(|e| AppError::Usage(UsageError(format!("--reconnect-budget: {e}"))))?,
        ),
    };
    let p = prepare(&load, &a.tls, checked, true)?;
    let session = WsSession {
        subscriptions: fields.subscriptions,
        mode: match a.mode {
            WsModeArg::Stream => WsMode::Stream,
            WsModeArg::Echo => WsMode::Echo,
            WsModeArg::Ping => WsMode::Ping,
        },
        send_rate,
        message_size: a.message_size,
        ping_interval: a.ping_interval,
        ts_field: fields.ts_field.map(|(_, path)| path),
        ts_unit,
        seq_field: fields.seq_field.map(|(_, path)| path),
        stream_field: fields.stream_field,
        utf8_check: !a.no_utf8_check,
        max_message: a.max_message.max(125),
        backoff: BackoffPolicy {
            jitter: match a.backoff {
                JitterArg::Full => Jitter::Full,
                JitterArg::Decorrelated => Jitter::Decorrelated,
            },
            base: a.backoff_base,
            cap: a.backoff_cap,
            max_retries: a.max_retries,
        },
        reconnect_budget,
        stale_after: a.stale_after,
        heartbeat: heartbeat.clone(),
        heartbeat_interval,
        pong_timeout,
        send_buffer: a.send_buffer,
    };
    // One plan per run (most command lines: one, unstaged or staged).
    let build = |p: &Prepared, stages: Vec<crate::plan::Stage>, series| -> (WsPlan, RunMeta) {
        let connections = stages
            .iter()
            .map(|s| s.connections)
            .max()
            .unwrap_or(load.connections);
        let cpus = p.cpus.for_connections(connections);
        let duration = if stages.is_empty() {
            a.duration
        } else {
            stages.iter().map(|s| s.length()).sum()
        };
        let plan = WsPlan {
            target: p.target.clone(),
            tls: p.tls.clone(),
            headers: p.headers.clone(),
            connections,
            threads: cpus.threads,
            pinning: cpus.pinning.clone(),
            duration,
            warmup: load.warmup,
            connect_timeout: load.connect_timeout,
            progress: crate::plan::Progress {
                when: validate::progress_when(load.progress, load.quiet),
                series,
            },
            // An --html page draws latency over time from the intervals too.
            intervals: load.hlog.is_some() || load.html.is_some(),
            session: session.clone(),
            sources: p.sources.clone(),
            stages,
            busy_poll: p.busy_poll.clone(),
            verbose: load.verbose,
            start_at: load.start_at.map(|s| s.0),
        };
        let meta = RunMeta {
            duration: Some(plan.duration),
            connections,
            threads: cpus.threads,
            worker_cpus: match &cpus.pinning {
                Pinning::Cpus(c) => c.clone(),
                Pinning::None => vec![],
            },
            // Echo mode is open-loop: corrected latency and send lag are reported.
            rate: (plan.session.mode == WsMode::Echo).then_some((
                plan.session.send_rate * plan.connections as f64,
                Arrival::Uniform,
            )),
            ws: Some(plan.session.clone()),
            ..p.meta(Mode::Ws, &load, argv.clone(), verdict.clone())
        };
        (plan, meta)
    };
    p.execute_to(
        sink,
        &load,
        "WebSocket connections",
        runs,
        build,
        engine::run_ws,
    )
}
