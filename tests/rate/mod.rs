//! Constant-rate mode (`-R`) end to end against the built-in target.

use crate::util::{assert_usage_error, connbench, connbench_raw, http_url, serve};

#[test]
fn the_achieved_rate_is_the_asked_rate() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&["http", &url, "-R", "1000", "-d", "3s", "-c", "4"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sent = r.f64("/rate/sent_per_s");
    assert!((sent - 1000.0).abs() <= 10.0, "asked 1000/s, sent {sent}/s");
    assert_eq!(r.f64("/rate/asked_per_s"), 1000.0);
    // every request has both latencies and a send lag
    let n = r.u64("/phases/total/count");
    assert!(n >= 2900, "{n}");
    assert_eq!(r.u64("/phases/corrected/count"), n);
    assert_eq!(r.u64("/phases/send_lag/count"), r.u64("/counters/requests"));
    // corrected ≥ uncorrected for the same requests
    assert!(r.u64("/phases/corrected/p50") >= r.u64("/phases/total/p50"));
    assert!(r.u64("/rate/unsent") <= 2);
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
