//! `connbench serve`: the built-in target on its own.

#[allow(unused_imports)]
use super::*;

pub(super) fn serve(a: ServeArgs, given: &Given) -> Result<i32, AppError> {
    if a.threads == 0 {
        return usage("--threads must be at least 1");
    }
    if a.max_conns == Some(0) {
        return usage("--max-conns must be at least 1");
    }
    if a.close_after == Some(0) {
        return usage("--close-after must be at least 1");
    }
    if !(a.ws_rate >= 0.0 && a.ws_rate.is_finite()) {
        return usage("--ws-rate must be a number of messages per second (0 or more)");
    }
    if a.ws_gap_every == Some(0) {
        return usage("--ws-gap-every must be at least 1");
    }
    if a.ws_greeting
        .as_ref()
        .is_some_and(|g| g.len() > crate::serve::MAX_GREETING)
    {
        return usage(format!(
            "--ws-greeting must be at most {} bytes",
            crate::serve::MAX_GREETING
        ));
    }
    if a.stall_for.is_some_and(|d| d.is_zero()) {
        return usage("--stall-for must be longer than 0 (e.g. --stall-at 2s --stall-for 500ms)");
    }
    validate::check_serve(&a, given, &crate::sys::allowed_cpus())?;
    if a.drip.is_some_and(|d| d.is_zero()) {
        return usage("--drip must be longer than 0 (e.g. --drip 1ms)");
    }
    let cfg = ServeConfig {
        bind: a.bind,
        http_port: (!a.no_http).then_some(a.http),
        https_port: (!a.no_https).then_some(a.https),
        echo_port: a.echo,
        threads: a.threads,
        cpus: a.cpus.map(|c| c.0).unwrap_or_default(),
        max_conns: a.max_conns,
        over_limit: match a.over_limit {
            OverLimitArg::Refuse => OverLimit::Refuse,
            OverLimitArg::TooMany => OverLimit::TooMany,
            OverLimitArg::Close => OverLimit::Close,
        },
        close_after: a.close_after,
        cert_out: a.cert_out.clone(),
        ws_rate: a.ws_rate,
        ws_drop_every: a.ws_drop_every,
        ws_drop_rst: a.ws_drop_mode == Some(crate::cli::WsDropModeArg::Rst),
        ws_gap_every: a.ws_gap_every,
        ws_stall_after: a.ws_stall_after,
        ws_ping_every: a.ws_ping_every,
        ws_pong_timeout: a.ws_pong_timeout,
        http_stall: a.stall_at.zip(a.stall_for),
        ws_greeting: a.ws_greeting.clone(),
        ws_ignore_pings: a.ws_no_pong,
        drip: a.drip,
        http_fail_after: a.fail_after.map(|n| (n, a.fail_status)),
    };
    crate::sys::raise_fd_limit();
    // Before anything is printed: whoever reads the address may interrupt at once.
    crate::sys::install_interrupt_handler();
    let handle = crate::serve::start(cfg).map_err(AppError::Serve)?;
    if let Some(addr) = handle.http_addr() {
        println!("http   http://{addr}/");
    }
    if let Some(addr) = handle.https_addr() {
        println!("https  https://{addr}/   (self-signed; SANs 127.0.0.1, ::1, localhost)");
        match &a.cert_out {
            Some(p) => println!("cert   {} (use --ca {})", p.display(), p.display()),
            None => print!("{}", handle.ca_pem()),
        }
    }
    if let Some(addr) = handle.echo_addr() {
        println!("echo   {addr}   (raw TCP: every byte comes back)");
    }
    println!("routes / /bytes/N /chunked/N /delay/MICROS /status/CODE /exchanges/EX/trades?symbol=S&limit=N /headers/N /garbage");
    println!("faults /close/fin/N /close/rst/N /truncate/fin/N /truncate/rst/N (bytes, then the connection ends)");
    println!(
        "ws     /ws (subscribe, then {}/s per connection)  /echo",
        a.ws_rate
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    while !crate::sys::interrupted() && a.run_for.is_none_or(|d| start.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = handle.stats();
    handle.stop();
    println!(
        "served {} requests on {} connections ({} rejected); {} WebSocket upgrades, {} messages sent, {} gaps, {} drops",
        stats.requests,
        stats.accepted,
        stats.rejected,
        stats.ws_upgrades,
        stats.ws_messages_sent,
        stats.ws_gaps,
        stats.ws_drops
    );
    if let Some(n) = a.fail_after {
        println!(
            "fail   {} requests answered {} after the first {n} (--fail-after)",
            stats.http_failed, a.fail_status
        );
    }
    if a.echo.is_some() {
        println!("echo   {} bytes echoed", stats.echo_bytes);
    }
    if a.stall_at.is_some() {
        println!(
            "stall  {} requests were held by --stall-at/--stall-for",
            stats.http_stalled_requests
        );
    }
    if let Some(path) = &a.stats {
        let doc = stats_json(&stats);
        report::json::write(&path.to_string_lossy(), &doc).map_err(|e| {
            AppError::Report(format!("cannot write --stats {}: {e}", path.display()))
        })?;
    }
    Ok(EXIT_OK)
}

/// `serve --stats FILE`: the target's counters at exit, one key per [`crate::serve::ServerStats`]
/// field.
fn stats_json(s: &crate::serve::ServerStats) -> serde_json::Value {
    serde_json::json!({
        "schema": "connbench.serve-stats.v1",
        "requests": s.requests,
        "accepted": s.accepted,
        "rejected": s.rejected,
        "open": s.open,
        "ws_upgrades": s.ws_upgrades,
        "ws_messages_sent": s.ws_messages_sent,
        "ws_messages_dropped": s.ws_messages_dropped,
        "ws_gaps": s.ws_gaps,
        "ws_drops": s.ws_drops,
        "ws_pong_timeouts": s.ws_pong_timeouts,
        "ws_subscriptions": s.ws_subscriptions,
        "http_stalled_requests": s.http_stalled_requests,
    })
}
