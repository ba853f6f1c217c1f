//! Pass/fail end to end (issue 9, "Pass/fail" and "Percentiles"): the exit codes (0 passed,
//! 1 a threshold failed, 2 usage, 3 nothing measured, 74 report not written; 70 and 130 are
//! pinned in `tests.rs`), `--threshold` PASS/FAIL lines and their JSON, `--targets seed`'s
//! table, runs that measured nothing, and `--percentiles`.
//!
//! Exit codes are written as numbers, not through connbench's constants: the number is what a
//! script checks, and the README's table is tested against the same numbers.
//!
//! Every run is bounded by a request count (`-n`), a duration or `--max`, against the built-in
//! target on loopback or a port nothing listens on. Latency is never asserted against a tight
//! bound: thresholds that must pass are loose (`ttfb.p95<30s`), and the one that must fail is
//! below a delay the target itself adds (`/delay/20000` against `ttfb.p50<1ms`).

use serde_json::Value;

use crate::util::{connbench, connbench_raw, http_url, serve, Run, TempDir};

/// A loopback port with nothing listening on it (bound, then released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `thresholds` array of the report.
fn thresholds(r: &Run) -> &Vec<Value> {
    r.report()["thresholds"]
        .as_array()
        .expect("thresholds is an array")
}

/// The one line of stderr that contains `needle`.
fn stderr_line<'a>(r: &'a Run, needle: &str) -> &'a str {
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "one {needle:?} line in: {}", r.stderr);
    lines[0]
}

#[test]
fn thresholds_that_hold_exit_0_with_a_pass_line_each() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let exprs = [
        "ttfb.p95<30s",
        "total.p99.9 <= 30s",
        "setup.max<30s",
        "errors.rate<0.1%",
        "reuse>50%",
        "status.5xx==0",
        "responses==500",
    ];
    let mut args = vec!["http", &url, "-c", "2", "-n", "500", "--no-pin"];
    for e in &exprs {
        args.extend(["--threshold", e]);
    }
    let r = connbench(&args);
    s.stop();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("thresholds  7 passed, 0 failed"),
        "{}",
        r.stdout
    );
    let list = thresholds(&r);
    assert_eq!(list.len(), exprs.len());
    for (e, t) in exprs.iter().zip(list) {
        let written = e.replace(' ', "");
        assert_eq!(t["threshold"], written.as_str());
        assert_eq!(t["pass"], true, "{t}");
        assert_eq!(t["origin"], "threshold");
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains(&written))
            .unwrap_or_else(|| panic!("no line for {written}: {}", r.stdout));
        assert!(line.trim_start().starts_with("PASS"), "{line}");
        assert!(line.contains("measured "), "{line}");
    }
    // The measured values are the report's own numbers.
    assert_eq!(
        list[0]["measured"].as_f64(),
        Some(r.f64("/phases/ttfb/p95"))
    );
    assert_eq!(list[0]["unit"], "ns");
    assert_eq!(
        list[2]["measured"].as_f64(),
        Some(r.f64("/phases/connect/max"))
    );
    assert_eq!(list[3]["measured"], 0.0);
    assert_eq!(list[3]["unit"], "ratio");
    assert_eq!(
        list[4]["measured"].as_f64(),
        Some(r.f64("/counters/reuse_rate"))
    );
    assert_eq!(list[6]["measured"], 500.0);
    assert_eq!(r.report()["nothing_measured"], Value::Null);
}

#[test]
fn a_failing_threshold_exits_1_with_a_fail_line_and_what_was_measured() {
    let s = serve(|_| {});
    // Every response waits 20 ms in the target: a median TTFB under 1 ms cannot be met.
    let url = http_url(&s, "/delay/20000");
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "2",
        "-n",
        "20",
        "--no-pin",
        "--timeout",
        "30s",
        "--threshold",
        "ttfb.p50<1ms",
        "--threshold",
        "status.2xx==20",
    ]);
    s.stop();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let list = thresholds(&r);
    assert_eq!(list[0]["pass"], false);
    assert_eq!(list[1]["pass"], true);
    let measured = list[0]["measured"].as_f64().expect("measured");
    assert!(
        measured >= 20e6,
        "TTFB p50 {measured} ns under the 20 ms delay"
    );
    assert_eq!(measured, r.f64("/phases/ttfb/p50"));
    assert_eq!(list[0]["limit"], 1e6);
    let shown = connbench::report::text::dur_compact(measured);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("ttfb.p50<1ms"))
        .expect("a line for the threshold");
    assert_eq!(
        line.trim(),
        format!("FAIL  ttfb.p50<1ms    measured {shown}")
    );
    assert!(r.stdout.contains("thresholds  1 passed, 1 failed"));
    // One line on stderr says why the exit code is 1.
    let why = stderr_line(&r, "thresholds failed");
    assert_eq!(
        why,
        format!("connbench: 1 of 2 thresholds failed: ttfb.p50<1ms (measured {shown})")
    );
}

/// A run that failed completely used to exit 0, like a run that measured what it was asked:
/// a script (or CI) could not tell "the server is fast" from "nothing answered".
#[test]
fn a_run_whose_every_connection_is_refused_exits_3_not_0() {
    // Nothing listening: ECONNREFUSED. The built-in target with `max_conns = 0`: every
    // connection reset at accept.
    let port = dead_port();
    let closed = format!("http://127.0.0.1:{port}/");
    let s = serve(|c| c.max_conns = Some(0));
    let resets = http_url(&s, "/");
    for url in [&closed, &resets] {
        let r = connbench(&["http", url, "-c", "2", "-n", "10", "--no-pin"]);
        assert_eq!(r.code, 3, "{url}: {}\n{}", r.stdout, r.stderr);
        let line = stderr_line(&r, "nothing measured");
        assert!(
            line.starts_with("connbench: error: nothing measured: no response: all "),
            "{line}"
        );
        let why = r.report()["nothing_measured"].as_str().expect("a reason");
        assert!(line.ends_with(why), "{line} vs {why}");
        assert_eq!(r.u64("/counters/responses"), 0);
        assert!(r.u64("/errors/total") >= 10, "{}", r.report()["errors"]);
        assert!(
            r.stdout.contains("NOTHING MEASURED: no response"),
            "{}",
            r.stdout
        );
    }
    assert!(s.stats().rejected >= 10, "the target reset the connections");
    s.stop();

    // --allow-nothing-measured: exit 0, the reason still said (as a warning).
    let r = connbench(&[
        "http",
        &closed,
        "-c",
        "1",
        "-n",
        "3",
        "--no-pin",
        "--allow-nothing-measured",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = stderr_line(&r, "nothing measured");
    assert!(
        line.starts_with("connbench: warning: nothing measured: no response: all 3"),
        "{line}"
    );
    assert!(
        line.ends_with("(exit code 0: --allow-nothing-measured)"),
        "{line}"
    );
}

/// "100 % errors" includes a server that answers every request with an error status: the
/// seed counts 4xx and 5xx as errors, and the latency of a 503 is not the service's.
#[test]
fn a_run_answered_only_with_error_statuses_exits_3_not_0() {
    let s = serve(|_| {});
    let r = connbench(&["http", &http_url(&s, "/status/503"), "-c", "2", "-n", "20"]);
    s.stop();
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.u64("/responses/5xx"), 20);
    assert_eq!(
        stderr_line(&r, "nothing measured"),
        "connbench: error: nothing measured: every one of the 20 responses was an error (5xx 20)"
    );
}

/// A subscription that matches nothing used to look like a quiet market: exit 0, "0 in".
#[test]
fn a_websocket_stream_with_no_data_message_exits_3_not_0() {
    let s = serve(|_| {});
    // The target's /ws streams only after a text message containing "subscribe".
    let url = format!("ws://{}/ws", s.http_addr().unwrap());
    let r = connbench(&[
        "ws",
        &url,
        "--subscribe",
        r#"{"op":"hello"}"#,
        "-c",
        "2",
        "-d",
        "1s",
        "--no-pin",
    ]);
    let upgrades = s.stats().ws_upgrades;
    s.stop();
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(upgrades >= 2, "the connections were upgraded: {upgrades}");
    assert_eq!(r.u64("/ws/connections_upgraded"), upgrades);
    assert_eq!(r.u64("/ws/messages_in"), 0);
    let line = stderr_line(&r, "nothing measured");
    assert!(
        line.starts_with(&format!(
            "connbench: error: nothing measured: {upgrades} connections upgraded but no data \
             message arrived"
        )),
        "{line}"
    );

    // The same stream subscribed: data, exit 0, and WebSocket thresholds that hold.
    let s = serve(|c| c.ws_rate = 100.0);
    let url = format!("ws://{}/ws", s.http_addr().unwrap());
    let r = connbench(&[
        "ws",
        &url,
        "--subscribe",
        r#"{"op":"subscribe"}"#,
        "-c",
        "2",
        "-d",
        "1s",
        "--no-pin",
        "--threshold",
        "msgs.rate>1",
        "--threshold",
        "connections.success==100%",
        "--threshold",
        "first_message.max<30s",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.u64("/ws/messages_in") > 0);
    assert_eq!(r.report()["nothing_measured"], Value::Null);
    let list = thresholds(&r);
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|t| t["pass"] == true), "{list:?}");
    assert_eq!(
        list[0]["measured"].as_f64(),
        Some(r.f64("/ws/messages_in_per_s"))
    );
    assert_eq!(list[1]["measured"], 1.0);
    assert!(
        r.stdout.contains("thresholds  3 passed, 0 failed"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_probe_that_never_connects_exits_3_not_0() {
    let url = format!("http://127.0.0.1:{}/", dead_port());
    let r = connbench(&["probe", &url, "--max", "5", "--hold", "100ms"]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.u64("/probe/established"), 0);
    let line = stderr_line(&r, "nothing measured");
    assert!(
        line.starts_with(
            "connbench: error: nothing measured: the probe never established a connection"
        ) && line.contains("connect_refused"),
        "{line}"
    );
    assert_eq!(
        r.report()["nothing_measured"].as_str(),
        line.strip_prefix("connbench: error: nothing measured: ")
    );
}

#[test]
fn targets_seed_prints_the_verdict_table_and_fails_the_missed_target() {
    // Every connection closes after one request: reuse is 0 %, far below the seed's 95 %.
    let s = serve(|c| c.close_after = Some(1));
    let r = connbench(&[
        "http",
        &http_url(&s, "/"),
        "-c",
        "2",
        "-n",
        "100",
        "--no-pin",
        "--targets",
        "seed",
    ]);
    s.stop();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("seed targets (--targets seed)"),
        "{}",
        r.stdout
    );
    let list = thresholds(&r);
    let seed: Vec<&str> = list
        .iter()
        .map(|t| t["threshold"].as_str().unwrap())
        .collect();
    assert_eq!(
        seed,
        [
            "setup.p95<50ms",
            "ttfb.p95<180ms",
            "reuse>95%",
            "errors.rate<0.1%"
        ]
    );
    let row = |needle: &str| -> &str {
        r.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row {needle:?}: {}", r.stdout))
    };
    for t in list {
        assert_eq!(t["origin"], "seed");
        let line = row(t["target"].as_str().expect("the seed's words"));
        let verdict = if t["pass"] == true { "PASS" } else { "FAIL" };
        assert!(line.ends_with(verdict), "{line} vs {t}");
        assert!(line.contains(t["threshold"].as_str().unwrap()), "{line}");
    }
    assert_eq!(list[2]["pass"], false, "reuse {}", list[2]);
    assert_eq!(list[2]["measured"], 0.0);
    assert!(row("connection reuse > 95 %").contains("0.000 %"));
    assert!(
        row(">= 500 connections per key").ends_with("n/a (measured by connbench probe, not http)")
    );
    assert!(
        stderr_line(&r, "thresholds failed").contains("reuse>95% (measured 0.000 %)"),
        "{}",
        r.stderr
    );

    // The probe checks the connection target: 20 of the 500 asked.
    let r = connbench(&[
        "probe",
        "--max",
        "20",
        "--hold",
        "100ms",
        "--targets",
        "seed",
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let limit = thresholds(&r)
        .iter()
        .find(|t| t["threshold"] == "connections>=500")
        .expect("the connection target");
    assert_eq!(limit["measured"], 20.0);
    assert_eq!(limit["pass"], false);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains(">= 500 connections per key"))
        .expect("row");
    assert!(
        line.contains("connections>=500") && line.ends_with("FAIL"),
        "{line}"
    );
    assert!(r
        .stdout
        .lines()
        .any(|l| l.contains("TTFB P95 < 180 ms") && l.contains("n/a")));
}

/// `--percentiles` chooses the columns of the phase table and the JSON summaries, which carry
/// the histogram's own values; the default has p95.
#[test]
fn percentiles_choose_the_columns_and_the_json_summaries() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "2",
        "-n",
        "300",
        "--no-pin",
        "--percentiles",
        "99.99,50,100",
    ]);
    let default = connbench(&["http", &url, "-c", "2", "-n", "50", "--no-pin"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = |r: &Run| -> Vec<String> {
        r.stdout
            .lines()
            .find(|l| l.starts_with("phase"))
            .expect("phase table")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        header(&r),
        ["phase", "count", "min", "p50", "p99.99", "max", "mean"]
    );
    assert_eq!(
        header(&default),
        ["phase", "count", "min", "p50", "p90", "p95", "p99", "p99.9", "max", "mean"]
    );
    assert_eq!(
        r.report()["config"]["percentiles"],
        serde_json::json!([50.0, 99.99, 100.0])
    );
    let total = &r.report()["phases"]["total"];
    let h = connbench::report::hdr::decode(total["hdr"].as_str().unwrap()).unwrap();
    assert_eq!(
        total["percentiles"],
        serde_json::json!([
            {"percentile": 50.0, "value": h.value_at_quantile(0.5)},
            {"percentile": 99.99, "value": h.value_at_quantile(0.9999)},
            {"percentile": 100.0, "value": h.max()},
        ])
    );
    // The fixed keys stay, p95 among them.
    assert_eq!(total["p95"], h.value_at_quantile(0.95));
    assert_eq!(total["p999"], h.value_at_quantile(0.999));
    let row: Vec<&str> = r
        .stdout
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("total row")
        .split_whitespace()
        .collect();
    let d = |v: u64| connbench::report::text::dur_compact(v as f64);
    assert_eq!(row[3], d(h.value_at_quantile(0.5)));
    assert_eq!(row[4], d(h.value_at_quantile(0.9999)));
    assert_eq!(row[5], d(h.max()));
}

/// `merge` renders the columns of its first report, and reports written before p95 and
/// `--percentiles` existed (the 26c9108 fixtures) merge into the default columns, p95 included.
#[test]
fn merge_keeps_the_percentile_columns_and_reads_reports_without_p95() {
    let s = serve(|_| {});
    let dir = TempDir::new("verdict-merge");
    let a = dir.path("a.json");
    let r = crate::util::connbench_raw(&[
        "http",
        &http_url(&s, "/"),
        "-c",
        "2",
        "-n",
        "100",
        "--no-pin",
        "-q",
        "--percentiles",
        "50,99.99",
        "--json",
        a.to_str().unwrap(),
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = connbench_raw(&["merge", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    let header = m
        .stdout
        .lines()
        .find(|l| l.starts_with("phase"))
        .expect("phase table");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["phase", "count", "min", "p50", "p99.99", "max", "mean"]
    );

    let old = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/old-26c9108-http.json");
    let fixture: Value = serde_json::from_slice(&std::fs::read(&old).unwrap()).unwrap();
    assert!(
        fixture["phases"]["total"].get("p95").is_none(),
        "the fixture predates p95"
    );
    let out = dir.path("merged.json");
    let m = connbench_raw(&[
        "merge",
        old.to_str().unwrap(),
        old.to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
    ]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    let header = m
        .stdout
        .lines()
        .find(|l| l.starts_with("phase"))
        .expect("phase table");
    assert!(header.contains("p95"), "{header}");
    let merged: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let total = &merged["phases"]["total"];
    let h = connbench::report::hdr::decode(total["hdr"].as_str().unwrap()).unwrap();
    assert_eq!(
        h.len(),
        2 * fixture["phases"]["total"]["count"].as_u64().unwrap()
    );
    assert_eq!(total["p95"], h.value_at_quantile(0.95));
    assert_eq!(
        merged["config"]["percentiles"],
        serde_json::json!([50.0, 90.0, 95.0, 99.0, 99.9])
    );
}

/// A bad `--percentiles` is a usage error before anything starts (the host never resolves, so
/// a check that ran after the DNS lookup would say "cannot resolve" instead).
#[test]
fn bad_percentiles_are_usage_errors_naming_the_value() {
    let host = "http://connbench-verdict-test.invalid/";
    let ws = "ws://connbench-verdict-test.invalid/ws";
    for (args, needles) in [
        (
            vec!["http", host, "--percentiles", "50,0"],
            vec!["--percentiles: invalid percentile \"0\"", "at most 100"],
        ),
        (
            vec!["http", host, "--percentiles", "99.999,101"],
            vec!["\"101\""],
        ),
        (
            vec!["ws", ws, "--subscribe", "x", "--percentiles", "p999"],
            vec!["\"p999\""],
        ),
        (
            vec!["probe", host, "--percentiles", ""],
            vec!["--percentiles"],
        ),
    ] {
        let r = connbench_raw(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {}", r.stderr);
        assert!(lines[0].starts_with("connbench: error: "), "{}", lines[0]);
        for n in needles {
            assert!(lines[0].contains(n), "{args:?}: {n:?} in {}", lines[0]);
        }
        assert!(!lines[0].contains("resolve"), "{}", lines[0]);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
}

/// Bad pass/fail flags are usage errors before anything starts (the host never resolves, so a
/// check that ran after the DNS lookup would say "cannot resolve" instead).
#[test]
fn bad_thresholds_are_usage_errors_naming_the_problem() {
    let host = "http://connbench-verdict-test.invalid/";
    let ws = "ws://connbench-verdict-test.invalid/ws";
    for (args, needles) in [
        (
            vec!["http", host, "--threshold", "latency.p99<20ms"],
            vec![
                "--threshold \"latency.p99<20ms\": latency is not measured by connbench http",
                "valid: connect, ttfb, total",
                "errors.rate",
                "reuse",
            ],
        ),
        (
            vec!["http", host, "--threshold", "ttfb.p95<180"],
            vec!["ttfb.p95 is a duration: give a unit"],
        ),
        (
            vec!["http", host, "--threshold", "ttfb<180ms"],
            vec!["ttfb needs a statistic, e.g. ttfb.p95"],
        ),
        (
            vec!["http", host, "--threshold", "tls.p99<10ms"],
            vec!["tls.p99", "plain TCP"],
        ),
        (
            vec!["http", host, "--threshold", "corrected.p99<10ms"],
            vec!["-R RATE"],
        ),
        (
            vec!["http", host, "--threshold", "errors.rate<5"],
            vec!["errors.rate is a ratio: write 5% or a fraction"],
        ),
        (
            vec!["http", host, "--threshold", "ttfb.p95"],
            vec!["no comparison"],
        ),
        (
            vec!["ws", ws, "--subscribe", "x", "--threshold", "reuse>95%"],
            vec!["reuse is not measured by connbench ws", "msgs.rate"],
        ),
        (
            vec!["ws", ws, "--subscribe", "x", "--threshold", "rtt.p99<1ms"],
            vec!["rtt.p99", "--mode echo"],
        ),
        (
            vec!["probe", host, "--threshold", "errors.rate<1%"],
            vec!["errors is not measured by connbench probe", "connections"],
        ),
    ] {
        let r = connbench_raw(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {}", r.stderr);
        assert!(lines[0].starts_with("connbench: error: "), "{}", lines[0]);
        for n in needles {
            assert!(lines[0].contains(n), "{args:?}: {n:?} in {}", lines[0]);
        }
        assert!(!lines[0].contains("resolve"), "{}", lines[0]);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    // An unknown --targets set is clap's usage error.
    let r = connbench_raw(&["http", host, "--targets", "bogus"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("seed"), "{}", r.stderr);
}

/// A report that cannot be written used to exit 1, the code a failed threshold now has.
#[test]
fn a_report_that_cannot_be_written_exits_74() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    for flag in ["--json", "--hlog"] {
        let r = connbench_raw(&[
            "http",
            &url,
            "-c",
            "1",
            "-n",
            "20",
            "-q",
            flag,
            "/nonexistent-dir/connbench/r.out",
        ]);
        assert_eq!(r.code, 74, "{flag}: {}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("cannot write {flag} /nonexistent-dir")),
            "{}",
            r.stderr
        );
    }
    s.stop();
}

/// The README's exit-code table has a row for every code connbench exits with.
#[test]
fn the_readme_lists_every_exit_code() {
    let readme = include_str!("../../README.md");
    let table = readme
        .split("## Exit codes")
        .nth(1)
        .expect("a README section \"## Exit codes\"");
    for code in [0, 1, 2, 3, 70, 74, 130] {
        assert!(
            table.contains(&format!("\n| `{code}` |")),
            "no row for exit code {code}"
        );
    }
    for (code, name) in connbench::app::EXIT_CODES {
        assert!(
            table.contains(&format!("\n| `{code}` |")),
            "{name} = {code} has no row"
        );
    }
}
