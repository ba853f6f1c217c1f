//! New connections as a workload (`--no-keepalive`, `--requests-per-conn`, `--conn-rate`,
//! `--close`) against the built-in target: the connections connbench opens are the ones the
//! target accepted, reuse stays true, TIME_WAIT follows the close mode, and TLS handshakes are
//! reported by kind.

use connbench::plan::share;

use crate::util::{assert_usage_error, connbench, connbench_raw, http_url, https_url, serve};
use crate::util::{write_ca, Run, TempDir};

fn time_wait_added(r: &Run) -> i64 {
    r.u64("/time_wait/at_end") as i64 - r.u64("/time_wait/at_start") as i64
}

#[test]
fn no_keepalive_opens_one_connection_per_request_and_the_target_accepts_each() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "--no-keepalive",
        "-n",
        "200",
        "-c",
        "4",
        "-t",
        "1",
        "--no-pin",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/counters/responses"), 200);
    assert_eq!(r.u64("/errors/total"), 0);
    assert_eq!(r.u64("/counters/connections_opened"), 200);
    assert_eq!(r.u64("/counters/connections_established"), 200);
    assert_eq!(stats.accepted, 200, "the target accepted every one");
    assert_eq!(stats.requests, 200);
    assert_eq!(
        r.u64("/counters/reused_requests"),
        0,
        "no request reused one"
    );
    assert_eq!(r.f64("/counters/reuse_rate"), 0.0);
    assert_eq!(r.u64("/counters/server_closes"), 0, "connbench closed them");
    // Every new connection is timed: connect and TTFB of each.
    assert_eq!(r.u64("/phases/connect/count"), 200);
    assert_eq!(r.u64("/phases/ttfb/count"), 200);
    assert_eq!(r.u64("/config/requests_per_conn"), 1);
    assert_eq!(r.report()["config"]["close"], "fin");
    assert!(r.report()["conn_rate"].is_null());
    assert!(
        r.stdout
            .contains("1 request per connection, then closed by connbench (fin)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\ntime_wait "), "{}", r.stdout);
}

/// `-n N --requests-per-conn 5 -t T`: each worker claims its share of N five at a time (the last
/// claim smaller), so it opens ⌈share / 5⌉ connections, and the run Σ ⌈share_w / 5⌉: at most
/// T − 1 more than ⌈N / 5⌉ (one partly used connection per worker), never one that carried
/// nothing.
#[test]
fn requests_per_conn_5_opens_ceil_n_over_5_connections_per_worker() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    for threads in [1usize, 2] {
        let before = s.stats().accepted;
        let t = threads.to_string();
        let r = connbench(&[
            "http",
            &url,
            "--requests-per-conn",
            "5",
            "-n",
            "203",
            "-c",
            "4",
            "-t",
            &t,
            "--no-pin",
        ]);
        assert_eq!(r.code, 0, "-t {threads}: {}", r.stderr);
        let want: u64 = (0..threads)
            .map(|w| share(203, threads, w).div_ceil(5))
            .sum();
        assert_eq!(want, if threads == 1 { 41 } else { 42 });
        assert_eq!(r.u64("/counters/responses"), 203);
        assert_eq!(r.u64("/counters/connections_opened"), want, "-t {threads}");
        assert_eq!(s.stats().accepted - before, want, "-t {threads}: accepted");
        // One request per connection is new; every other one reused it.
        assert_eq!(r.u64("/counters/reused_requests"), 203 - want);
        assert_eq!(r.u64("/config/requests_per_conn"), 5);
    }
    s.stop();
}

#[test]
fn conn_rate_200_opens_about_200_connections_a_second_and_reports_the_rate() {
    // Measured on the shared 2-core machine under load (load average 5–6): 397–400 connections
    // due in 2 s, every one opened, open lag p99 1–5 ms. -c 50 slots: the opener falls behind
    // only if the target stops answering for 250 ms.
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "--conn-rate",
        "200",
        "-d",
        "2s",
        "-c",
        "50",
        "-t",
        "1",
        "--no-pin",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let opened = r.u64("/counters/connections_opened");
    let unopened = r.u64("/conn_rate/unopened");
    // 2 s at 200/s: connections 0..=399 are due inside the window, and one due exactly at the
    // end may go either way. The schedule and the window both count from the run's start, so a
    // worker thread that got the CPU late owes the same connections (it opens them late, with
    // open lag): under two CPU hogs and other builds (load 9) a worker-own start had counted
    // fewer than 360 due.
    assert!(
        (399..=401).contains(&(opened + unopened)),
        "opened {opened} + unopened {unopened}"
    );
    assert!(opened >= 300, "opened {opened}");
    assert_eq!(r.f64("/conn_rate/asked_per_s"), 200.0);
    let per_s = opened as f64 / r.f64("/duration_s");
    assert!((r.f64("/conn_rate/opened_per_s") - per_s).abs() < 1e-6);
    assert_eq!(
        r.u64("/phases/open_lag/count"),
        opened,
        "one lag per connection"
    );
    assert_eq!(r.u64("/counters/reused_requests"), 0);
    // The last connections may be cut off by the end of the run, at most one per slot.
    assert!(stats.accepted <= opened && stats.accepted + 50 >= opened);
    assert!(r.u64("/counters/responses") + 50 >= opened);
    assert!(
        r.stdout.contains("conn rate   asked 200 conn/s   opened "),
        "{}",
        r.stdout
    );
}

#[test]
fn close_rst_leaves_no_time_wait_towards_the_target_and_close_fin_one_per_connection() {
    let run = |close: &str| {
        let s = serve(|_| {});
        let url = http_url(&s, "/");
        let r = connbench(&[
            "http",
            &url,
            "--no-keepalive",
            "--close",
            close,
            "-n",
            "200",
            "-c",
            "4",
            "-t",
            "1",
            "--no-pin",
        ]);
        s.stop();
        assert_eq!(r.code, 0, "--close {close}: {}", r.stderr);
        assert_eq!(r.u64("/counters/responses"), 200, "--close {close}");
        assert_eq!(r.u64("/errors/total"), 0, "--close {close}");
        assert_eq!(r.report()["config"]["close"], close);
        r
    };
    let rst = run("rst");
    assert!(
        time_wait_added(&rst) <= 0,
        "--close rst left {} in TIME_WAIT",
        time_wait_added(&rst)
    );
    // With FIN each of the 200 connections leaves its port in TIME_WAIT once the target has
    // closed its side (a few of the last may still be in FIN_WAIT2 when the count is taken;
    // measured: 196–200).
    let fin = run("fin");
    let added = time_wait_added(&fin);
    assert!((100..=200).contains(&added), "--close fin left {added}");
}

#[test]
fn tls_resumption_puts_resumed_handshakes_in_tls_resumed_and_full_ones_in_tls_full() {
    let s = serve(|_| {});
    let dir = TempDir::new("newconn-tls");
    let ca = write_ca(&s, &dir);
    let url = https_url(&s, "/");
    let ca = ca.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "http",
            &url,
            "--ca",
            ca,
            "--no-keepalive",
            "-n",
            "40",
            "-c",
            "1",
            "-t",
            "1",
            "--no-pin",
        ];
        args.extend_from_slice(extra);
        let r = connbench(&args);
        assert_eq!(r.code, 0, "{extra:?}: {}", r.stderr);
        assert_eq!(r.u64("/counters/responses"), 40, "{extra:?}");
        assert_eq!(r.u64("/phases/tls/count"), 40, "{extra:?}");
        // The phases agree with the handshake counters, and add up to tls.
        let (full, resumed) = (
            r.u64("/phases/tls_full/count"),
            r.u64("/phases/tls_resumed/count"),
        );
        assert_eq!(full, r.u64("/tls/handshakes_full"), "{extra:?}");
        assert_eq!(resumed, r.u64("/tls/handshakes_resumed"), "{extra:?}");
        assert_eq!(full + resumed, 40, "{extra:?}");
        (full, resumed)
    };
    // One connection at a time: the first handshake is full, each later one resumes with a
    // ticket from the one before (TLS 1.3 tickets arrive before the response, and records are
    // read in order, so the ticket is stored before connbench closes).
    assert_eq!(run(&[]), (1, 39));
    assert_eq!(run(&["--no-resume"]), (40, 0));
    s.stop();
}

#[test]
fn new_connection_flags_that_cannot_work_together_are_usage_errors() {
    for (args, needle) in [
        (
            &["--requests-per-conn", "0"][..],
            "--requests-per-conn must be at least 1",
        ),
        (
            &["--conn-rate", "100", "-R", "100"],
            "--conn-rate paces new connections",
        ),
        (&["--conn-rate", "0"], "--conn-rate must be between"),
        (&["--close", "rst"], "--close only applies"),
        (&["--no-keepalive", "--pipeline", "4"], "--pipeline 4"),
        (
            &["--no-keepalive", "--requests-per-conn", "3"],
            "--no-keepalive is --requests-per-conn 1",
        ),
    ] {
        let mut argv = vec!["http"];
        argv.extend_from_slice(args);
        let r = connbench_raw(&argv);
        assert_usage_error(&r, needle);
        // Refused before anything started: the one line of the error, no banner.
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("connbench: error: "),
            "{args:?}: {}",
            r.stderr
        );
    }
}
