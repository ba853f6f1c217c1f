//! Staged runs end to end against the built-in target: what each stage window reports (response
//! and error classes, error rate, TTFB and total percentiles), per-stage rates, WebSocket stages,
//! and several runs in one command with their summary.

use serde_json::Value;

use crate::util::{connbench, http_url, serve};

/// The `stages` array of a run's report.
fn windows(r: &crate::util::Run) -> Vec<Value> {
    r.report()["stages"]
        .as_array()
        .unwrap_or_else(|| panic!("no stages in {}", r.report()))
        .clone()
}

fn int(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{ptr} missing or not an integer in {v}"))
}

fn num(v: &Value, ptr: &str) -> f64 {
    v.pointer(ptr)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{ptr} missing or not a number in {v}"))
}

#[test]
fn a_stage_answered_only_with_503_reports_its_5xx_and_error_rate_1_not_errors_0() {
    // The target answers the first 40 requests, then 503 to everything: the first stage sees the
    // 200s (and the first 503s), the second stage nothing but 503. Before, both rows said
    // `errors 0` and the JSON windows had no status classes at all.
    let s = serve(|c| c.http_fail_after = Some((40, 503)));
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "--stages",
        "2@0s+600ms,4@300ms+600ms",
        "--no-pin",
        "-t",
        "1",
        "--timeout",
        "30s",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = windows(&r);
    let kinds: Vec<String> = st
        .iter()
        .map(|w| format!("{}{}", w["stage"], w["window"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, ["1hold", "2ramp", "2hold"]);
    // The 40 answers of the target's first requests, all in the first window (2 connections
    // do 40 requests in far less than its 600 ms).
    assert_eq!(int(r.report(), "/responses/2xx"), 40);
    assert_eq!(int(&st[0], "/responses_by_class/2xx"), 40);
    for (i, w) in st.iter().enumerate() {
        let responses = int(w, "/responses");
        assert!(responses > 0, "window {i}: {w}");
        let by_class: u64 = ["1xx", "2xx", "3xx", "4xx", "429", "5xx", "other"]
            .iter()
            .map(|c| int(w, &format!("/responses_by_class/{c}")))
            .sum();
        assert_eq!(by_class, responses, "window {i}");
        // 503s are answers, not failed requests: no error class counts them ...
        assert_eq!(int(w, "/errors"), 0, "window {i}");
        for (class, n) in w["errors_by_class"].as_object().expect("errors_by_class") {
            assert_eq!(n.as_u64(), Some(0), "window {i}: {class}");
        }
        // ... but the error rate does: non-2xx/3xx responses over all answers and failures.
        let rate = num(w, "/error_rate");
        let want = int(w, "/responses_by_class/5xx") as f64 / responses as f64;
        assert!((rate - want).abs() < 1e-9, "window {i}: {rate} vs {want}");
    }
    for w in &st[1..] {
        assert_eq!(
            int(w, "/responses_by_class/5xx"),
            int(w, "/responses"),
            "{w}"
        );
        assert_eq!(num(w, "/error_rate"), 1.0, "{w}");
    }
    // The text rows say it too: the 5xx count and 100 % on the second stage's rows.
    for w in &st[1..] {
        let head = format!("2      {:<6}", w["window"].as_str().unwrap());
        let row = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&head) && l.contains('→'))
            .unwrap_or_else(|| panic!("no row {head:?} in\n{}", r.stdout));
        assert!(row.contains("100.0 %"), "{row}");
        assert!(
            row.split_whitespace()
                .any(|c| c == int(w, "/responses_by_class/5xx").to_string()),
            "{row}"
        );
    }
}

#[test]
fn serve_fail_after_answers_503_once_the_first_n_requests_were_answered() {
    use std::io::{BufRead, Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::util::bin())
        // Ended by --for, not a signal: a SIGINT could come before the handler is installed.
        .args(["serve", "--http", "0", "--no-https", "--for", "4s"])
        .args(["--fail-after", "2", "--fail-status", "500"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = lines
        .by_ref()
        .take(10)
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("http ").map(|u| {
                u.trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string()
            })
        })
        .expect("serve prints its http address");
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        s.write_all(b"GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        // Read one response head (204: no body; 500: a short text body with its length).
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "EOF after {buf:?}");
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        statuses.push(head[9..12].to_string());
    }
    assert_eq!(statuses, ["204", "204", "500"]);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("serve exits").success());
    assert!(
        rest.iter()
            .any(|l| l == "fail   1 requests answered 500 after the first 2 (--fail-after)"),
        "{rest:?}"
    );
}

#[test]
fn each_stage_sends_at_its_own_rate() {
    // 100/s for a second, then 400/s for a second, on an open-loop schedule per stage.
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "--stages",
        "4@0s+1s@100/s,4@0s+1s@400/s",
        "--no-pin",
        "-t",
        "1",
        "--timeout",
        "30s",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = windows(&r);
    assert_eq!(st.len(), 2, "{st:?}");
    assert_eq!(num(&st[0], "/asked_per_s"), 100.0);
    assert_eq!(num(&st[1], "/asked_per_s"), 400.0);
    // The run asked their time-weighted mean, and paced it: corrected latency and send lag.
    assert_eq!(num(r.report(), "/rate/asked_per_s"), 250.0);
    assert!(int(r.report(), "/phases/corrected/count") > 0);
    assert!(int(r.report(), "/phases/send_lag/count") > 0);
    // What this (possibly loaded) machine made requests wait: a request due in one window but
    // released late lands in the next, or stays unsent; a late window cut takes the next
    // stage's first requests. Either way the longest wait (corrected max) bounds how many, at
    // the higher rate.
    let longest_wait_s = int(r.report(), "/phases/corrected/max") as f64 / 1e9;
    let unsent = int(r.report(), "/rate/unsent");
    let slack = 2 + (400.0 * longest_wait_s).ceil() as u64;
    let elapsed = num(r.report(), "/duration_s");
    let due = [100.0, 400.0 * (elapsed - 1.0)].map(|d: f64| d.round() as u64);
    for (w, due) in st.iter().zip(due) {
        let sent = int(w, "/requests");
        assert!(
            sent + slack + unsent >= due && sent <= due + slack,
            "{sent} sent, {due} due (slack {slack}, unsent {unsent}): {w}"
        );
        assert_eq!(int(w, "/responses_by_class/2xx"), int(w, "/responses"));
        assert_eq!(num(w, "/error_rate"), 0.0);
    }
    // Every request due in the run was sent or counted unsent (to within 1 %: the worker sees
    // the end a few ms after the coordinator's clock).
    let sent = int(r.report(), "/counters/requests");
    let total_due = due[0] + due[1];
    assert!(
        (sent + unsent).abs_diff(total_due) <= 2 + total_due / 100,
        "{sent} + {unsent} vs {total_due}"
    );
    // The text rows show what each stage asked and sent.
    let row = |head: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(head) && l.contains('→'))
            .unwrap_or_else(|| panic!("no {head:?} row in\n{}", r.stdout))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // stage window conns opened open-at-end requests asked/s sent/s req/s …
    assert_eq!(row("1      hold")[6], "100");
    assert_eq!(row("2      hold")[6], "400");
}

#[test]
fn bad_stage_lists_and_stage_rates_against_other_flags_are_usage_errors() {
    use crate::util::{assert_usage_error, connbench_raw};
    let url = "http://127.0.0.1:9/";
    for (args, needle) in [
        (vec!["--stages", "50@10s+30s@fast"], "rate \"fast\""),
        (
            vec!["--stages", "5@1s+1s@10/s,5@1s+1s"],
            "every stage a rate",
        ),
        (
            vec!["--stages", "5@1s+1s@10/s", "-R", "10"],
            "drop one of them",
        ),
        (
            vec!["--stages", "5@1s+1s@10/s", "--pipeline", "4"],
            "--pipeline",
        ),
        (vec!["--arrival", "poisson"], "--arrival"),
    ] {
        let argv: Vec<&str> = ["http", url].into_iter().chain(args).collect();
        let r = connbench_raw(&argv);
        assert_usage_error(&r, needle);
        assert!(!r.stderr.contains("connbench:  "), "{}", r.stderr);
    }
}

/// `ws://` URL of the target.
fn ws_url(s: &connbench::serve::ServerHandle, path: &str) -> String {
    format!("ws://{}{}", s.http_addr().expect("plain port"), path)
}

/// A WebSocket staged run against `url`'s `/ws` feed: one subscription, latency and sequence.
fn ws_staged(url: &str, stages: &str) -> crate::util::Run {
    connbench(&[
        "ws",
        url,
        "--stages",
        stages,
        "--subscribe",
        r#"{"op":"subscribe","stream":"s{conn}"}"#,
        "--ts-field",
        "timestamp",
        "--seq-field",
        "seq",
        "--no-pin",
        "-t",
        "1",
    ])
}

#[test]
fn ws_stages_report_each_window_and_ramping_down_is_no_reconnect() {
    let s = serve(|c| c.ws_rate = 100.0);
    let r = ws_staged(&ws_url(&s, "/ws"), "2@0s+600ms,4@400ms+600ms,1@0s+600ms");
    let upgrades = s.stats().ws_upgrades;
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = windows(&r);
    let got: Vec<(String, u64, u64, u64)> = st
        .iter()
        .map(|w| {
            (
                format!("{}{}", w["stage"], w["window"].as_str().unwrap()),
                int(w, "/connections_to"),
                int(w, "/open_at_end"),
                int(w, "/ws/connections_attempted"),
            )
        })
        .collect();
    // Opened where the ramps say (the last of the ramp half-way through it, so its upgrade
    // may complete in the next window), closed normally where they go down; nothing else.
    let want: Vec<(String, u64, u64, u64)> = vec![
        ("1hold".into(), 2, 2, 2),
        ("2ramp".into(), 4, 4, 2),
        ("2hold".into(), 4, 4, 0),
        ("3hold".into(), 1, 1, 0),
    ];
    assert_eq!(got, want, "{}", r.report()["stages"]);
    assert_eq!(upgrades, 4, "the target saw every connection once");
    let upgraded: u64 = st.iter().map(|w| int(w, "/ws/connections_upgraded")).sum();
    assert_eq!(upgraded, 4);
    for w in &st {
        assert_eq!(int(w, "/ws/reconnects_total"), 0, "{w}");
        assert_eq!(int(w, "/errors"), 0, "{w}");
        assert_eq!(num(w, "/error_rate"), 0.0, "{w}");
        let n = int(w, "/ws/messages_in");
        assert!(n > 0, "{w}");
        let per_s = n as f64 / num(w, "/duration_s");
        assert!((num(w, "/ws/messages_in_per_s") - per_s).abs() < 1e-6);
        assert!(int(w, "/phases/latency/count") > 0, "{w}");
    }
    // The windows add up to the run.
    let sum = |ptr: &str| st.iter().map(|w| int(w, ptr)).sum::<u64>();
    assert_eq!(sum("/ws/messages_in"), int(r.report(), "/ws/messages_in"));
    assert_eq!(
        sum("/phases/latency/count"),
        int(r.report(), "/phases/latency/count")
    );
    assert_eq!(int(r.report(), "/ws/reconnects_total"), 0);
    assert_eq!(int(r.report(), "/ws/seq_gaps"), 0);
    // One text row per window, and the latency table.
    for (w, head) in st
        .iter()
        .zip(["1      hold", "2      ramp", "2      hold", "3      hold"])
    {
        let row = r
            .stdout
            .lines()
            .find(|l| l.starts_with(head) && l.contains('→'))
            .unwrap_or_else(|| panic!("no {head:?} row in\n{}", r.stdout));
        let cells: Vec<&str> = row.split_whitespace().collect();
        // stage window conns attempted upgraded failed open-at-end msgs-in msgs/s rate recon
        assert_eq!(cells[7], int(w, "/ws/messages_in").to_string(), "{row}");
    }
    assert!(
        r.stdout.contains("latency p50  latency p95  latency p99"),
        "{}",
        r.stdout
    );
}

#[test]
fn ws_stage_windows_count_reconnects_by_cause() {
    // The target drops every connection 200 ms after its upgrade, without a close frame: each
    // window sees its own abnormal closes and reconnects.
    let s = serve(|c| {
        c.ws_rate = 100.0;
        c.ws_drop_every = Some(std::time::Duration::from_millis(200));
    });
    let r = ws_staged(&ws_url(&s, "/ws"), "2@0s+700ms,3@0s+700ms");
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = windows(&r);
    assert_eq!(st.len(), 2);
    for w in &st {
        let abnormal = int(w, "/ws/reconnects/abnormal_close");
        assert!(abnormal > 0, "{w}");
        assert_eq!(int(w, "/ws/reconnects_total"), abnormal, "{w}");
        assert_eq!(
            int(w, "/errors_by_class/ws_abnormal_close"),
            abnormal,
            "{w}"
        );
        assert!(num(w, "/error_rate") > 0.0, "{w}");
    }
    let sum: u64 = st
        .iter()
        .map(|w| int(w, "/ws/reconnects/abnormal_close"))
        .sum();
    assert_eq!(sum, int(r.report(), "/ws/reconnects/abnormal_close"));
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("2      hold") && l.contains(": abnormal_close ")),
        "{}",
        r.stdout
    );
}

/// The fields documented in the `| field | type | meaning |` table of `src/report/series.rs`:
/// every backticked name of a row's first cell (`summary[].p50`, …).
fn series_doc() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/report/series.rs");
    let text = std::fs::read_to_string(path).expect("read series.rs");
    text.lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .filter_map(|row| row.split(" | ").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string))
        .filter(|f| f != "field")
        .collect()
}

/// The documented fields under `prefix` (`""`: the top level; `"runs[]."`), sorted.
fn documented_under(doc: &[String], prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = doc
        .iter()
        .filter_map(|f| f.strip_prefix(prefix))
        .filter(|f| !f.contains('.'))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn several_stage_lists_run_one_after_the_other_with_a_summary_and_one_document() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "--stages",
        "2@200ms+400ms,3@0s+400ms",
        "--stages",
        "1@0s+500ms@200/s",
        "--no-pin",
        "--timeout",
        "30s",
    ]);
    let accepted = s.stats().accepted;
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.report();
    assert_eq!(doc["schema"], "connbench.series.v1");
    assert_eq!(doc["mode"], "http");
    let runs = doc["runs"].as_array().expect("runs");
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["2@200ms+400ms,3@0s+400ms", "1@0s+500ms@200/s"]);
    // Each run is a whole report of its own, against the same target, one after the other.
    let (a, b) = (&runs[0]["report"], &runs[1]["report"]);
    for rep in [a, b] {
        assert_eq!(rep["schema"], "connbench.report.v1");
        assert_eq!(rep["target"]["url"], url.as_str());
    }
    assert_eq!(a["stages"].as_array().unwrap().len(), 3);
    assert_eq!(b["stages"].as_array().unwrap().len(), 1);
    assert_eq!(a["config"]["connections"], 3);
    assert_eq!(b["config"]["connections"], 1);
    assert!(a["rate"].is_null());
    assert_eq!(b["rate"]["asked_per_s"], 200.0);
    let ended_a = int(a, "/started_at_unix_ms") as f64 + num(a, "/duration_s") * 1000.0;
    assert!(int(b, "/started_at_unix_ms") as f64 >= ended_a - 1.0);
    let opened = int(a, "/counters/connections_opened") + int(b, "/counters/connections_opened");
    assert_eq!(accepted, opened, "the target saw both runs' connections");
    // The summary: one row per run, from the run's own numbers.
    let rows = doc["summary"].as_array().expect("summary");
    assert_eq!(rows.len(), 2);
    for (row, (rep, conns)) in rows.iter().zip([(a, 3), (b, 1)]) {
        assert_eq!(int(row, "/connections"), conns);
        assert_eq!(row["latency_phase"], "ttfb");
        assert_eq!(int(row, "/p50"), int(rep, "/phases/ttfb/p50"));
        assert_eq!(int(row, "/p99"), int(rep, "/phases/ttfb/p99"));
        assert!(int(row, "/p50") <= int(row, "/p95") && int(row, "/p95") <= int(row, "/p99"));
        let tput = num(rep, "/throughput/responses_per_s");
        assert!((num(row, "/throughput_per_s") - tput).abs() < 1e-6 * tput.max(1.0));
        assert_eq!(num(row, "/error_rate"), 0.0);
        assert_eq!(row["interrupted"], false);
    }
    // Every key written is documented, and every documented key is written.
    let documented = series_doc();
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(documented_under(&documented, ""), keys(doc), "top level");
    assert_eq!(documented_under(&documented, "runs[]."), keys(&runs[0]));
    assert_eq!(documented_under(&documented, "summary[]."), keys(&rows[0]));
    // The text: each run's report under its title, then the summary table.
    let first = r
        .stdout
        .find("== run 1/2: 2@200ms+400ms,3@0s+400ms ==")
        .expect("run 1");
    let second = r
        .stdout
        .find("== run 2/2: 1@0s+500ms@200/s ==")
        .expect("run 2");
    let summary = r.stdout.find("\nsummary ").expect("summary");
    assert!(first < second && second < summary, "{}", r.stdout);
    let table: Vec<&str> = r.stdout[summary..].lines().skip(1).take(3).collect();
    assert!(table[0].contains("ttfb p95") && table[0].ends_with("error rate"));
    assert!(
        table[1].starts_with("2@200ms+400ms,3@0s+400ms "),
        "{}",
        table[1]
    );
    assert!(table[2].starts_with("1@0s+500ms@200/s "), "{}", table[2]);
}

#[test]
fn ws_stage_lists_run_one_after_the_other_with_a_latency_summary() {
    let s = serve(|c| c.ws_rate = 100.0);
    let url = ws_url(&s, "/ws");
    let r = connbench(&[
        "ws",
        &url,
        "--stages",
        "2@0s+500ms",
        "--stages",
        "3@0s+500ms",
        "--subscribe",
        r#"{"op":"subscribe","stream":"s{conn}"}"#,
        "--ts-field",
        "timestamp",
        "--no-pin",
        "-t",
        "1",
    ]);
    let upgrades = s.stats().ws_upgrades;
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.report();
    assert_eq!(doc["mode"], "ws");
    assert_eq!(upgrades, 5);
    let rows = doc["summary"].as_array().expect("summary");
    for (row, (rep, conns)) in rows.iter().zip(
        doc["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["report"])
            .zip([2, 3]),
    ) {
        assert_eq!(int(row, "/connections"), conns);
        assert_eq!(int(rep, "/ws/connections_upgraded"), conns);
        assert_eq!(row["latency_phase"], "latency");
        assert_eq!(int(row, "/p50"), int(rep, "/phases/latency/p50"));
        let msgs = num(rep, "/ws/messages_in_per_s");
        assert!(msgs > 0.0 && (num(row, "/throughput_per_s") - msgs).abs() < 1e-6 * msgs);
    }
    assert!(r.stdout.contains("latency p50"), "{}", r.stdout);
    assert!(r.stdout.contains(" msg/s "), "{}", r.stdout);
}

#[test]
fn ctrl_c_ends_the_run_in_progress_and_the_series_with_exit_130() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let dir = crate::util::TempDir::new("series-int");
    let json = dir.path("series.json");
    // Two runs of 30 s each: the interrupt must end the first, and the second never starts.
    let mut child = Command::new(crate::util::bin())
        .args(["http", &url, "--stages", "1@0s+30s", "--stages", "2@0s+30s"])
        .args(["--no-pin", "--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    // The handler is installed before this line is printed.
    let started = err
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("connbench: run 1/2:"));
    assert!(started, "the first run never started");
    let t = std::time::Instant::now();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = err.map_while(Result::ok).collect();
    let out = child.wait_with_output().expect("wait");
    s.stop();
    assert_eq!(out.status.code(), Some(130), "{rest:?}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "not ended early"
    );
    assert!(!rest.iter().any(|l| l.contains("run 2/2")), "{rest:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted (Ctrl-C)"), "{stdout}");
    assert!(stdout.contains("(interrupted)"), "{stdout}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["runs"].as_array().unwrap().len(), 1);
    assert_eq!(doc["summary"][0]["interrupted"], true);
    assert_eq!(doc["runs"][0]["report"]["interrupted"], true);
}

#[test]
fn a_staged_run_logs_intervals_for_every_stage_not_only_the_first() {
    // A stage cut replaced the worker's recorder with one without interval histograms: the
    // --hlog of a 2-stage run ended with its first stage (and the --html time chart with it).
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let dir = crate::util::TempDir::new("stages-hlog");
    let log = dir.path("run.hlog");
    let r = connbench(&[
        "http",
        &url,
        "--stages",
        "2@0s+1s,3@0s+2s",
        "-t",
        "1",
        "--hlog",
        log.to_str().expect("utf-8 path"),
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(&log).expect("--hlog written");
    // `Tag=total,START,LENGTH,MAX,HISTOGRAM`: the latest interval with samples starts in the
    // second stage (at 1 s or later of a 3 s run).
    let last_start = text
        .lines()
        .filter_map(|l| l.strip_prefix("Tag=total,"))
        .filter_map(|l| l.split(',').next()?.parse::<f64>().ok())
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        last_start >= 1.0,
        "last total interval starts at {last_start}:\n{text}"
    );
}
