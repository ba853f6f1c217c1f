//! Beyond one machine: `--start-at` (every process opens its connections at one wall-clock
//! instant), and `merge` of what many processes wrote — interval logs and probe reports. The
//! processes here are several `connbench` runs on loopback against one in-process target;
//! `scripts/multihost.sh` does the same across network namespaces.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connbench::report::json::rfc3339_precise;

use crate::util::{assert_usage_error, bin, connbench, connbench_raw, http_url, serve, TempDir};

/// `secs` from now, as the Unix seconds with a fraction that `--start-at` takes, and the
/// instant they name.
fn start_in(secs: f64) -> (String, SystemTime) {
    let at = SystemTime::now() + Duration::from_secs_f64(secs);
    let d = at.duration_since(UNIX_EPOCH).expect("after 1970");
    // Millisecond precision, so the instant is exactly what the text says.
    let text = format!("{}.{:03}", d.as_secs(), d.subsec_millis());
    let exact = UNIX_EPOCH + Duration::new(d.as_secs(), d.subsec_millis() * 1_000_000);
    (text, exact)
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

#[test]
fn start_at_opens_no_connection_before_the_instant_and_records_the_skew() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    // 3 s ahead: ample for the process to start and prepare on a busy machine.
    let (arg, at) = start_in(3.0);
    let child = std::thread::spawn({
        let (url, arg) = (url.clone(), arg.clone());
        move || {
            connbench(&[
                "http",
                &url,
                "-c",
                "2",
                "-t",
                "1",
                "-n",
                "200",
                "--no-pin",
                "--start-at",
                &arg,
            ])
        }
    });
    // Until the instant, the target must see no connection at all.
    let mut polls = 0;
    while SystemTime::now() + Duration::from_millis(20) < at {
        assert_eq!(
            s.stats().accepted,
            0,
            "a connection was opened {:?} before --start-at",
            at.duration_since(SystemTime::now()).unwrap_or_default()
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(polls > 10, "the wait was watched ({polls} polls)");
    let r = child.join().expect("runner thread");
    let accepted = s.stats().accepted;
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(accepted, 2);
    assert_eq!(r.u64("/counters/responses"), 200);
    assert_eq!(r.report()["start_at"], rfc3339_precise(at));
    let skew = r.f64("/start_skew_s");
    // Never early; late by what the machine's scheduling cost (generous: a busy CI box).
    assert!((0.0..5.0).contains(&skew), "skew {skew}");
    assert!(r.report()["started_at_unix_ms"].as_i64().unwrap() >= unix_ms(at));
}

#[test]
fn without_start_at_the_report_says_null() {
    let s = serve(|_| {});
    let r = connbench(&[
        "http",
        &http_url(&s, "/"),
        "-c",
        "1",
        "-n",
        "10",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.report()["start_at"].is_null());
    assert!(r.report()["start_skew_s"].is_null());
}

#[test]
fn ctrl_c_while_waiting_for_start_at_exits_130_without_a_connection_or_a_report() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let dir = TempDir::new("start-at-int");
    let json = dir.path("r.json");
    // A minute ahead: only Ctrl-C can end this wait within the test.
    let (arg, _) = start_in(60.0);
    let mut child = Command::new(bin())
        .args([
            "http",
            &url,
            "-c",
            "2",
            "-d",
            "1s",
            "--no-pin",
            "--start-at",
            &arg,
        ])
        .arg("--json")
        .arg(&json)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn connbench");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    // The announcement comes after the interrupt handler is installed.
    while !seen.contains("waiting until") {
        let mut line = String::new();
        if err.read_line(&mut line).expect("read stderr") == 0 {
            panic!("connbench ended before waiting: {seen}");
        }
        seen.push_str(&line);
    }
    let sent_at = Instant::now();
    // SAFETY: kill(2) on the pid of our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(
        sent_at.elapsed() < Duration::from_secs(30),
        "the wait did not end at Ctrl-C"
    );
    let accepted = s.stats().accepted;
    s.stop();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(
        rest.contains("interrupted while waiting for --start-at"),
        "{rest}"
    );
    assert_eq!(accepted, 0, "no connection after Ctrl-C during the wait");
    assert!(!json.exists(), "no report of a run that never ran");
}

#[test]
fn a_start_at_in_the_past_or_a_day_ahead_or_garbled_is_a_usage_error() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let past = (now - 30).to_string();
    let far = (now + 2 * 24 * 3600).to_string();
    for (cmd, extra) in [
        ("http", vec![]),
        ("ws", vec![]),
        ("probe", vec!["--max", "1"]),
    ] {
        let run = |v: &str| {
            let mut args = vec![cmd, "http://127.0.0.1:9/", "--start-at", v];
            if cmd == "ws" {
                args[1] = "ws://127.0.0.1:9/";
            }
            args.extend(&extra);
            connbench_raw(&args)
        };
        assert_usage_error(&run(&past), "in the past");
        assert_usage_error(&run(&far), "more than 24 h ahead");
        assert_usage_error(&run("tomorrow"), "--start-at \"tomorrow\"");
    }
    // Checked before any file is read: the start time is the error, not the missing body.
    let r = connbench_raw(&[
        "http",
        "http://127.0.0.1:9/",
        "--body-file",
        "/nonexistent/body",
        "--start-at",
        &past,
    ]);
    assert_usage_error(&r, "in the past");
}

#[test]
fn a_websocket_run_starts_at_the_instant_too() {
    let srv = serve(|_| {});
    let url = format!("ws://{}/echo", srv.http_addr().expect("plain port"));
    let (arg, at) = start_in(2.0);
    let r = connbench(&[
        "ws",
        &url,
        // The echo route sends it back: a data message, so the run measured something.
        "--subscribe",
        r#"{"op":"subscribe"}"#,
        "-c",
        "2",
        "-t",
        "1",
        "-d",
        "500ms",
        "--no-pin",
        "--start-at",
        &arg,
    ]);
    let accepted = srv.stats().accepted;
    srv.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["start_at"], rfc3339_precise(at));
    let skew = r.f64("/start_skew_s");
    assert!((0.0..5.0).contains(&skew), "skew {skew}");
    assert!(r.report()["started_at_unix_ms"].as_i64().unwrap() >= unix_ms(at));
    assert_eq!(r.u64("/ws/connections_upgraded"), 2);
    assert_eq!(accepted, 2);
}

#[test]
fn a_probe_starts_at_the_instant_too() {
    let s = serve(|_| {});
    let (arg, at) = start_in(2.0);
    let r = connbench(&[
        "probe",
        &http_url(&s, "/"),
        "--max",
        "5",
        "--connect-rate",
        "1000",
        "--hold",
        "100ms",
        "--start-at",
        &arg,
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["start_at"], rfc3339_precise(at));
    let skew = r.f64("/start_skew_s");
    assert!((0.0..5.0).contains(&skew), "skew {skew}");
    assert_eq!(r.u64("/probe/established"), 5);
}

#[test]
fn serve_stats_writes_the_targets_counters_on_exit() {
    let dir = TempDir::new("serve-stats");
    let stats = dir.path("stats.json");
    let mut server = Command::new(bin())
        .args([
            "serve",
            "--http",
            "0",
            "--no-https",
            // Only the bound should the test fail before its Ctrl-C below.
            "--for",
            "30s",
            "--stats",
        ])
        .arg(&stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut out = BufReader::new(server.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the address line");
    let url = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let r = connbench(&["http", &url, "-c", "3", "-t", "1", "-n", "30", "--no-pin"]);
    // Ended by Ctrl-C once the client is done: an exit timed by `--for` alone raced the client
    // on a loaded machine (a 3 s target had exited before the client's last requests).
    // SAFETY: kill(2) on the pid of our own child, not yet waited for.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGINT);
    }
    // The rest of stdout, until the target exits.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read stdout");
    let status = server.wait().expect("wait serve");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(status.success(), "{rest}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("--stats written")).expect("JSON");
    assert_eq!(v["schema"], "connbench.serve-stats.v1");
    assert_eq!(v["accepted"], r.u64("/counters/connections_established"));
    assert_eq!(v["accepted"], 3);
    assert_eq!(v["requests"], 30);
    assert_eq!(v["rejected"], 0);
    // The same numbers as the line it prints.
    assert!(
        rest.contains("served 30 requests on 3 connections (0 rejected)"),
        "{rest}"
    );
}

/// The report at `path`.
fn read(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read report")).expect("JSON")
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn decode(v: &serde_json::Value, phase: &str) -> hdrhistogram::Histogram<u64> {
    connbench::report::hdr::decode(v["phases"][phase]["hdr"].as_str().expect("hdr")).expect("hdr")
}

/// The concatenation of the samples of `parts` (every bucket's value recorded as often as it
/// was counted): the oracle for an exact merge, built without `Histogram::add`.
fn concatenated(parts: &[hdrhistogram::Histogram<u64>]) -> hdrhistogram::Histogram<u64> {
    let mut all = connbench::metrics::new_histogram();
    for h in parts {
        for v in h.iter_recorded() {
            all.record_n(
                h.highest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
            .expect("in range");
        }
    }
    all
}

/// Every interval of an interval log, summed by tag.
fn hlog_totals(bytes: &[u8]) -> Vec<(String, hdrhistogram::Histogram<u64>)> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut out: Vec<(String, hdrhistogram::Histogram<u64>)> = Vec::new();
    for e in IntervalLogIterator::new(bytes) {
        if let LogEntry::Interval(i) = e.expect("parses") {
            let tag = i.tag().expect("tagged").as_str().to_string();
            let h = connbench::report::hdr::decode(i.encoded_histogram()).expect("hdr");
            match out.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, sum)) => sum.add(&h).expect("bounds"),
                None => out.push((tag, h)),
            }
        }
    }
    out
}

#[test]
fn three_processes_started_together_merge_exactly_reports_and_interval_logs() {
    let srv = serve(|_| {});
    let url = http_url(&srv, "/");
    let dir = TempDir::new("hlog-merge");
    let (arg, _) = start_in(2.0);
    let runs: Vec<_> = (0..3)
        .map(|i| {
            let (json, hlog) = (
                dir.path(&format!("r{i}.json")),
                dir.path(&format!("r{i}.hlog")),
            );
            let mut c = Command::new(bin());
            c.args([
                "http", &url, "-c", "2", "-t", "1", "-d", "2500ms", "--no-pin", "-q",
            ])
            .args(["--start-at", &arg, "--json", s(&json), "--hlog", s(&hlog)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            (c.spawn().expect("spawn"), json, hlog)
        })
        .collect();
    let mut reports = Vec::new();
    for (child, json, hlog) in runs {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        reports.push((json, hlog));
    }
    let accepted = srv.stats().accepted;
    srv.stop();

    let merged = dir.path("all.json");
    let merged_hlog = dir.path("all.hlog");
    let mut args = vec!["merge"];
    args.extend(reports.iter().map(|(j, _)| s(j)));
    args.extend(["--json", s(&merged), "--hlog", s(&merged_hlog), "--hlog-in"]);
    args.extend(reports.iter().map(|(_, h)| s(h)));
    let r = connbench_raw(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("one-second windows from 3 interval logs"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("warning"),
        "started together: {}",
        r.stdout
    );

    let parts: Vec<serde_json::Value> = reports.iter().map(|(j, _)| read(j)).collect();
    let m = read(&merged);
    // Counts: the merged counters are the sum of the parts, and the target's.
    let sum = |ptr: &str| {
        parts
            .iter()
            .map(|p| p.pointer(ptr).unwrap().as_u64().unwrap())
            .sum::<u64>()
    };
    for ptr in [
        "/counters/responses",
        "/counters/requests",
        "/counters/connections_established",
    ] {
        assert_eq!(m.pointer(ptr).unwrap().as_u64().unwrap(), sum(ptr), "{ptr}");
    }
    assert_eq!(sum("/counters/connections_established"), accepted);
    assert!(sum("/counters/responses") > 0);
    // Percentiles: those of the concatenated samples, exactly.
    let hlog_sums = hlog_totals(&std::fs::read(&merged_hlog).expect("merged hlog"));
    for phase in ["connect", "ttfb", "total"] {
        let all = concatenated(&parts.iter().map(|p| decode(p, phase)).collect::<Vec<_>>());
        let got = decode(&m, phase);
        assert!(
            connbench::report::merge_hlog::same_samples(&got, &all),
            "{phase}"
        );
        for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
            assert_eq!(
                m["phases"][phase][key],
                all.value_at_quantile(q),
                "{phase} {key}"
            );
        }
        assert_eq!(m["phases"][phase]["max"], all.max(), "{phase} max");
        // The merged interval log holds the same samples as the merged report.
        let (_, logged) = hlog_sums
            .iter()
            .find(|(t, _)| t == phase)
            .unwrap_or_else(|| panic!("no {phase} in the merged log"));
        assert!(
            connbench::report::merge_hlog::same_samples(logged, &all),
            "hlog {phase}"
        );
    }
    assert_eq!(m["start_at"], parts[0]["start_at"]);
    assert!(m["start_skew_s"].as_f64().is_some());
}

#[test]
fn merge_refuses_an_interval_log_given_for_the_wrong_report() {
    let srv = serve(|_| {});
    let url = http_url(&srv, "/");
    let dir = TempDir::new("hlog-wrong");
    let mut files = Vec::new();
    for i in 0..2 {
        let (json, hlog) = (
            dir.path(&format!("r{i}.json")),
            dir.path(&format!("r{i}.hlog")),
        );
        let r = connbench_raw(&[
            "http",
            &url,
            "-c",
            "1",
            "-n",
            "300",
            "--no-pin",
            "-q",
            "--json",
            s(&json),
            "--hlog",
            s(&hlog),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        files.push((json, hlog));
    }
    srv.stop();
    let out = dir.path("m.hlog");
    let swapped = connbench_raw(&[
        "merge",
        s(&files[0].0),
        s(&files[1].0),
        "--allow-disjoint",
        "--hlog",
        s(&out),
        "--hlog-in",
        s(&files[1].1),
        s(&files[0].1),
    ]);
    assert_usage_error(&swapped, "in the reports' order");
    let missing = connbench_raw(&["merge", s(&files[0].0), "--hlog", s(&out)]);
    assert_usage_error(&missing, "--hlog needs the runs' interval logs");
    let count = connbench_raw(&[
        "merge",
        s(&files[0].0),
        s(&files[1].0),
        "--allow-disjoint",
        "--hlog",
        s(&out),
        "--hlog-in",
        s(&files[0].1),
    ]);
    assert_usage_error(&count, "names 1 interval logs for 2 reports");
    let alone = connbench_raw(&["merge", s(&files[0].0), "--hlog-in", s(&files[0].1)]);
    assert_usage_error(&alone, "--hlog-in needs --hlog");
}

#[test]
fn probes_started_together_find_the_targets_limit_held_across_them() {
    const LIMIT: usize = 12;
    let srv = serve(|c| {
        c.max_conns = Some(LIMIT);
        c.over_limit = connbench::serve::OverLimit::Refuse;
    });
    let url = http_url(&srv, "/");
    let dir = TempDir::new("probe-merge");
    let (arg, _) = start_in(2.0);
    // Three "machines" at 20 connections/s each, each allowed 20: only the target's limit
    // (12 in all) can stop them.
    let children: Vec<_> = (0..3)
        .map(|i| {
            let json = dir.path(&format!("p{i}.json"));
            let child = Command::new(bin())
                .args([
                    "probe",
                    &url,
                    "--connect-rate",
                    "20",
                    "--max",
                    "20",
                    "--hold",
                    "300ms",
                ])
                .args(["-q", "--start-at", &arg, "--json", s(&json)])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn probe");
            (child, json)
        })
        .collect();
    let mut files = Vec::new();
    for (child, json) in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        files.push(json);
    }
    let stats = srv.stats();
    srv.stop();
    let merged = dir.path("all.json");
    let mut args = vec!["merge"];
    args.extend(files.iter().map(|f| s(f)));
    args.extend(["--json", s(&merged)]);
    let r = connbench_raw(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = read(&merged);
    let parts: Vec<serde_json::Value> = files.iter().map(|f| read(f)).collect();
    // Every probe failed (the target refused it), and the target admitted exactly its limit.
    for p in &parts {
        assert_eq!(
            p["probe"]["first_failure"]["class"], "connect_reset",
            "{}",
            p["probe"]
        );
    }
    assert_eq!(stats.accepted, LIMIT as u64, "{stats:?}");
    assert_eq!(m["probe"]["limit"], LIMIT, "{}", r.stdout);
    assert_eq!(m["aggregate"]["limit"], LIMIT);
    assert_eq!(m["aggregate"]["machines"], 3);
    // The machine that saw it is the one whose first failure came first.
    let abs = |p: &serde_json::Value| {
        p["started_at_unix_ms"].as_f64().unwrap()
            + p["probe"]["first_failure"]["at_s"].as_f64().unwrap() * 1e3
    };
    let earliest = (0..3)
        .min_by(|&a, &b| abs(&parts[a]).total_cmp(&abs(&parts[b])))
        .unwrap();
    assert_eq!(m["aggregate"]["first_failure"]["source"], earliest);
    assert_eq!(m["aggregate"]["first_failure"]["file"], s(&files[earliest]));
    assert!(
        r.stdout.contains(&format!(
            "aggregate limit  {LIMIT} connections held across 3 machines"
        )),
        "{}",
        r.stdout
    );
    // A run report among probe reports is refused.
    let mixed = connbench_raw(&[
        "merge",
        s(&files[0]),
        "tests/fixtures/old-26c9108-http.json",
    ]);
    assert_eq!(mixed.code, 2, "{}", mixed.stderr);
}
