//! Constant-rate mode (`-R`) end to end against the built-in target.

use crate::util::{assert_usage_error, connbench, connbench_raw, http_url, serve};

#[test]
fn the_achieved_rate_is_the_asked_rate() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&["http", &url, "-R", "1000", "-d", "3s", "-c", "4"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.f64("/rate/asked_per_s"), 1000.0);
    // Every request due in the window was sent or counted unsent: the books balance to within
    // 1 % (the workers see the stop flag a few ms after the coordinator's clock says 3 s).
    let sent = r.u64("/counters/requests");
    let unsent = r.u64("/rate/unsent");
    let due = (1000.0 * r.f64("/duration_s")).round() as u64;
    assert!(
        (sent + unsent).abs_diff(due) <= due / 100,
        "{sent} + {unsent} vs {due}"
    );
    // Requests still waiting for a free connection when the run ended: at most what came due
    // during the longest wait this (possibly loaded) machine measured, plus the edge.
    let longest_wait_s = r.u64("/phases/corrected/max") as f64 / 1e9;
    let backlog = 2 + (1000.0 * longest_wait_s).ceil() as u64;
    assert!(unsent <= backlog, "{unsent} unsent, bound {backlog}");
    let per_s = r.f64("/rate/sent_per_s");
    let floor = 990.0 - backlog as f64 / r.f64("/duration_s");
    assert!(
        per_s >= floor && per_s <= 1010.0,
        "asked 1000/s, sent {per_s}/s"
    );
    // every request has both latencies and a send lag
    let n = r.u64("/phases/total/count");
    assert!(n + backlog >= 2900, "{n}");
    assert_eq!(r.u64("/phases/corrected/count"), n);
    // one send lag per request released: written, or still queued for a connection at the end
    let released = r.u64("/phases/send_lag/count");
    let requests = r.u64("/counters/requests");
    assert!(
        released >= requests && released <= requests + r.u64("/rate/unsent"),
        "{released} released, {requests} sent"
    );
    // corrected ≥ uncorrected for the same requests
    assert!(r.u64("/phases/corrected/p50") >= r.u64("/phases/total/p50"));
}

#[test]
fn poisson_arrivals_keep_the_mean_rate() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "-R",
        "800",
        "--arrival",
        "poisson",
        "-d",
        "3s",
        "-c",
        "8",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sent = r.f64("/rate/sent_per_s");
    // 2400 exponential gaps: the count is within a few percent of the mean
    assert!((sent - 800.0).abs() <= 48.0, "asked 800/s, sent {sent}/s");
    assert_eq!(r.report()["rate"]["arrival"], "poisson");
}

#[test]
fn a_slow_server_shows_in_corrected_latency_and_unsent_requests() {
    // 2 connections, each response takes 50 ms: at most 40 req/s get through, 200/s are asked.
    let s = serve(|_| {});
    let url = http_url(&s, "/delay/50000");
    let r = connbench(&["http", &url, "-R", "200", "-d", "2s", "-c", "2"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // the requests that did go out waited in the backlog: their corrected latency is far above
    // the 50 ms service time, the uncorrected one is not
    let corrected = r.u64("/phases/corrected/p50");
    let total = r.u64("/phases/total/p50");
    assert!(total < 100_000_000, "service time {total}");
    assert!(corrected > 300_000_000, "corrected p50 {corrected}");
    assert!(r.u64("/rate/unsent") > 200, "{}", r.report()["rate"]);
    assert!(r.stdout.contains("could not keep up"), "{}", r.stdout);
}

#[test]
fn rate_mode_bad_input() {
    assert_usage_error(
        &connbench_raw(&["http", "http://127.0.0.1:9/", "-R", "0"]),
        "-R",
    );
    assert_usage_error(
        &connbench_raw(&[
            "http",
            "http://127.0.0.1:9/",
            "-R",
            "100",
            "--pipeline",
            "2",
        ]),
        "--pipeline",
    );
    // -R with -n is refused by the parser (exit 2)
    let r = connbench_raw(&["http", "http://127.0.0.1:9/", "-R", "100", "-n", "5"]);
    assert_eq!(r.code, 2);
}

#[test]
fn stages_open_the_asked_connections_in_the_asked_windows() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "--stages",
        "4@400ms+400ms,8@400ms+400ms,2@0s+400ms",
        "--no-pin",
        "-t",
        "2",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = r.report()["stages"].as_array().expect("stages").clone();
    let got: Vec<(String, u64, u64)> = st
        .iter()
        .map(|w| {
            (
                format!("{}{}", w["stage"], w["window"].as_str().unwrap()),
                w["connections_opened"].as_u64().unwrap(),
                w["open_at_end"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64)> = vec![
        ("1ramp".into(), 4, 4),
        ("1hold".into(), 0, 4),
        ("2ramp".into(), 4, 8),
        ("2hold".into(), 0, 8),
        ("3hold".into(), 0, 2),
    ];
    assert_eq!(got, want, "{}", r.report()["stages"]);
    // each window measured on its own; the whole run is their sum
    let sum: u64 = st.iter().map(|w| w["responses"].as_u64().unwrap()).sum();
    assert_eq!(sum, r.u64("/counters/responses"));
    assert!(st.iter().all(|w| w["responses"].as_u64().unwrap() > 0));
    assert!((r.f64("/duration_s") - 2.0).abs() < 0.2);
    assert!(
        r.stdout.contains("0→4") && r.stdout.contains("4→8"),
        "{}",
        r.stdout
    );
}

#[test]
fn scenarios_and_stages_refuse_conflicting_flags() {
    for args in [
        vec![
            "http",
            "http://127.0.0.1:9/",
            "--stages",
            "10@1s+1s",
            "-c",
            "5",
        ],
        vec![
            "http",
            "http://127.0.0.1:9/",
            "--scenario",
            "light",
            "-d",
            "5s",
        ],
        vec!["http", "http://127.0.0.1:9/", "--scenario", "extreme"],
    ] {
        assert_eq!(connbench_raw(&args).code, 2, "{args:?}");
    }
    assert_usage_error(
        &connbench_raw(&["http", "http://127.0.0.1:9/", "--stages", "10@1s"]),
        "--stages",
    );
    assert_usage_error(
        &connbench_raw(&[
            "http",
            "http://127.0.0.1:9/",
            "--stages",
            "10@1s+1s",
            "--warmup",
            "1s",
        ]),
        "--warmup",
    );
}

#[test]
fn a_stall_shows_in_corrected_p99_but_not_in_uncorrected() {
    // The target answers nothing for 400 ms, one second in. Closed-loop thinking would record
    // only the 8 requests that were in flight (0.5 % of the run: below p99); the open-loop
    // schedule keeps asking, and every request due during the stall waits for it.
    let s = serve(|c| {
        c.http_stall = Some((
            std::time::Duration::from_secs(1),
            std::time::Duration::from_millis(400),
        ))
    });
    let url = http_url(&s, "/delay/1000");
    let r = connbench(&["http", &url, "-R", "500", "-d", "3s", "-c", "8"]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        stats.http_stalled_requests > 0,
        "the stall happened during the run"
    );
    let corrected = r.u64("/phases/corrected/p99");
    let uncorrected = r.u64("/phases/total/p99");
    assert!(corrected >= 200_000_000, "corrected p99 {corrected} ns");
    assert!(
        uncorrected < 100_000_000,
        "uncorrected p99 {uncorrected} ns"
    );
    // both see the stall at their maximum
    assert!(r.u64("/phases/total/max") >= 300_000_000);
}

#[test]
fn the_rate_warning_blames_the_server_when_the_server_stalls() {
    // Issue 7 point 9: a 400 ms stall of the target made the report say "the client could not
    // keep up". The client kept its schedule (its send lag is its own timer wake-up); requests
    // due during the stall waited for the server.
    let s = serve(|c| {
        c.http_stall = Some((
            std::time::Duration::from_secs(1),
            std::time::Duration::from_millis(400),
        ))
    });
    let url = http_url(&s, "/delay/1000");
    let r = connbench(&[
        "http",
        &url,
        "-R",
        "500",
        "-d",
        "3s",
        "-c",
        "8",
        "--timeout",
        "30s",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(stats.http_stalled_requests > 0, "the stall happened");
    let rate = &r.report()["rate"];
    assert_eq!(rate["behind"], "server", "{rate}");
    assert_eq!(rate["behind_cause"], "late_responses", "{rate}");
    assert!(
        r.stdout.contains("the server could not keep up"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("the client could not keep up"));
    assert_eq!(r.u64("/errors/total"), 0);
}

#[test]
fn the_rate_warning_blames_the_client_when_its_connections_cannot_carry_the_rate() {
    // Issue 7 point 9: one connection, one request in flight, 20 ms per response: at most
    // 50 req/s can go out, 1000/s are asked. The server answers every request in its usual
    // time; the client is the one that cannot keep the schedule (it needs ≥ 20 connections).
    let s = serve(|_| {});
    let url = http_url(&s, "/delay/20000");
    let r = connbench(&[
        "http",
        &url,
        "-R",
        "1000",
        "-d",
        "2s",
        "-c",
        "1",
        "--timeout",
        "30s",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rate = &r.report()["rate"];
    assert_eq!(rate["behind"], "client", "{rate}");
    assert_eq!(rate["behind_cause"], "connections", "{rate}");
    assert!(rate["connections_needed"].as_u64().unwrap() >= 20, "{rate}");
    assert!(r.u64("/rate/unsent") > 1000, "{rate}");
    assert!(
        r.stdout.contains("the client could not keep up"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("-c"), "{}", r.stdout);
}
