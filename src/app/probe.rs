//! `connbench probe`: the connection-limit probe.

#[allow(unused_imports)]
use super::*;

/// `connbench probe`: one thread, the built-in target when no URL is given, a text summary and
/// optionally the JSON report. Exit 0 whatever limit the probe found (finding one is success),
/// 3 when it never established a connection, 1 when a `--threshold` or `--targets` target
/// failed, 130 on Ctrl-C.
pub(super) fn probe(a: ProbeArgs, given: &Given, argv: Vec<String>) -> Result<i32, AppError> {
    use crate::engine::probe::{Establish, ProbePlan};
    let (checked, websocket) = validate::check_probe(&a, given)?;
    let verdict = validate::check_verdict(
        &a.verdict,
        &validate::probe_context(&a, &checked, websocket),
    )?;
    check_start_at(a.start_at)?;
    // The shared preparation wants load flags; a probe is one thread, unpinned, and must not
    // be refused for a --max above the fd limit (finding that limit is its job), so the fd
    // check is asked for a single connection.
    let load = LoadArgs {
        connections: 1,
        threads: Some(1),
        warmup: Duration::ZERO,
        connect_timeout: a.connect_timeout,
        headers: a.headers.clone(),
        no_pin: true,
        cpus: None,
        json: a.json.clone(),
        html: None,
        hlog: None,
        source: None,
        quiet: a.quiet,
        progress: a.progress,
        busy_poll: false,
        verbose: false,
        start_at: a.start_at,
    };
    let mut p = prepare(&load, &a.tls, checked, websocket)?;
    // The in-process target holds the other end of every connection in this process.
    let fds_per_conn = if p.builtin { 2 } else { 1 };
    let room = p.fd_limit.saturating_sub(engine::FD_RESERVE) / fds_per_conn;
    let max = a
        .max
        .unwrap_or_else(|| usize::try_from(room).unwrap_or(usize::MAX).max(1));
    let establish = if websocket {
        Establish::WebSocket
    } else if a.request {
        Establish::Request
    } else {
        Establish::Connect
    };
    let plan = ProbePlan {
        target: p.target.clone(),
        progress: validate::progress_when(a.progress, a.quiet),
        tls: p.tls.clone(),
        headers: p.headers.clone(),
        connect_rate: a.connect_rate,
        max,
        hold: a.hold,
        settle: a.settle,
        establish,
        keepalive: a.keepalive,
        connect_timeout: a.connect_timeout,
        confirm: a.confirm.then_some(a.confirm_pause),
        start_at: a.start_at.map(|s| s.0),
    };
    let meta = RunMeta {
        connections: max,
        ..p.meta(Mode::Probe, &load, argv, verdict)
    };
    // A --max the fd limit cuts well short ends with a local failure: said before and after.
    let most = p.fd_limit / fds_per_conn;
    let fd_room = (a.max.is_some() && most < (max as u64).saturating_mul(9) / 10).then_some(most);
    let probe_meta = report::probe::ProbeMeta {
        plan: plan.clone(),
        max_from_fd_limit: a.max.is_none(),
        fd_room,
    };
    if let Some(room) = fd_room {
        eprintln!(
            "warning: {}",
            report::probe::fd_warning(max, room, p.fd_limit)
        );
    }
    if meta.insecure() {
        eprintln!("warning: --insecure: server certificates are NOT verified (chain and name)");
    }
    if !a.quiet {
        eprintln!(
            "connbench: probing {}{} at {} conn/s up to {max} connections (established = {}; fd limit {})",
            report::redact::url(&p.target.url),
            if p.builtin { " (built-in target)" } else { "" },
            a.connect_rate,
            establish.name(),
            p.fd_limit,
        );
    }
    crate::sys::install_interrupt_handler();
    if let (Some(at), false) = (plan.start_at, a.quiet) {
        announce_start(at);
    }
    let result = engine::probe::run(&plan);
    if let Some(s) = p.server.take() {
        s.stop();
    }
    let result = result?;
    let text = report::probe::text(&meta, &probe_meta, &result);
    if a.json.as_deref() == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(dest) = a.json.as_deref() {
        let host = report::host::HostFacts::collect();
        let v = report::probe::json(&meta, &probe_meta, &result, &host);
        report::json::write(dest, &v)
            .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
    }
    if let Some(dest) = a.html.as_deref() {
        let host = report::host::HostFacts::collect();
        let doc = report::probe::report(&meta, &probe_meta, &result, &host);
        let title = html_title("probe", &meta.url, &doc.started_at);
        let source = report::plot::Source {
            label: "this probe".to_string(),
            doc: report::plot::Doc::Probe(Box::new(doc)),
            timeline: None,
        };
        report::html::write(dest, &report::html::run_page(&title, &text, &[source]))
            .map_err(|e| AppError::Report(format!("cannot write --html {dest}: {e}")))?;
    }
    let outcomes =
        report::threshold::evaluate(&report::threshold::Source::Probe(&meta, &result.pass));
    let nothing = report::threshold::probe_nothing_measured(&result.pass);
    Ok(exit_code(
        &meta,
        false,
        result.interrupted,
        nothing.as_deref(),
        &outcomes,
    ))
}
