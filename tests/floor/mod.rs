//! `--busy-poll` on `http` and `ws`, and `connbench floor`, end to end against the built-in
//! target (in this process on port 0, stopped by handle) or the one `floor` starts itself.
//!
//! No timing ratio is asserted (the machine is shared): the tests pin what was measured and
//! classified, with run lengths far beyond the deadlines they check.

use crate::util::{connbench, http_url, serve};

/// A busy-polling client spins a whole CPU: the tests that run one take turns, so that on a
/// 2-core machine they never take both CPUs from the tests running beside them.
static SPINNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spinning() -> std::sync::MutexGuard<'static, ()> {
    SPINNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// SO_BUSY_POLL either took (µs) or the report says why not: never both, never neither.
fn assert_so_busy_poll_reported(r: &crate::util::Run) {
    let c = &r.report()["config"];
    let us = c["so_busy_poll_us"].as_u64();
    let why = c["so_busy_poll_error"].as_str();
    assert!(
        us.is_some() != why.is_some(),
        "exactly one of so_busy_poll_us / so_busy_poll_error: {c}"
    );
    if let Some(us) = us {
        assert_eq!(us, 50, "{c}");
    }
}

#[test]
fn busy_poll_runs_http_end_to_end_and_the_report_says_so() {
    let _turn = spinning();
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let spin = connbench(&[
        "http",
        &url,
        "-c",
        "1",
        "-n",
        "3000",
        "--busy-poll",
        "--no-pin",
    ]);
    let sleep = connbench(&["http", &url, "-c", "1", "-n", "300", "--no-pin"]);
    s.stop();
    assert_eq!(spin.code, 0, "{}", spin.stderr);
    assert_eq!(spin.u64("/responses/2xx"), 3000);
    assert_eq!(spin.u64("/errors/total"), 0);
    assert_eq!(spin.u64("/phases/ttfb/count"), 3000);
    assert_eq!(spin.report()["config"]["busy_poll"], true);
    assert_so_busy_poll_reported(&spin);
    assert!(
        spin.stdout
            .contains("busy-poll: workers spin in epoll_wait(…, 0)"),
        "{}",
        spin.stdout
    );
    // Without the flag the report says the workers slept.
    assert_eq!(sleep.code, 0, "{}", sleep.stderr);
    assert_eq!(sleep.report()["config"]["busy_poll"], false);
    assert!(sleep.report()["config"]["so_busy_poll_us"].is_null());
    assert!(sleep.report()["config"]["so_busy_poll_error"].is_null());
    assert!(!sleep.stdout.contains("busy-poll"), "{}", sleep.stdout);
}

#[test]
fn busy_poll_still_fires_request_timeouts() {
    // Every request waits 10 s for its answer; with --timeout 200ms over a 1.5 s run, a loop
    // whose timers fire counts several read timeouts, one that never looks at its timer table
    // counts none.
    let _turn = spinning();
    let s = serve(|_| {});
    let url = http_url(&s, "/delay/10000000");
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "1",
        "-d",
        "1500ms",
        "--timeout",
        "200ms",
        "--busy-poll",
        "--no-pin",
        // Every request times out by design: nothing else is measured.
        "--allow-nothing-measured",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/counters/responses"), 0);
    let timeouts = r.u64("/errors/read_timeout");
    assert!(timeouts >= 3, "{timeouts} read timeouts in 1.5 s at 200 ms");
    assert_eq!(r.u64("/errors/total"), timeouts, "{}", r.report()["errors"]);
    assert_eq!(r.report()["config"]["busy_poll"], true);
}

#[test]
fn busy_poll_keeps_the_rate_schedule_without_its_timerfd() {
    let _turn = spinning();
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "-R",
        "300",
        "-d",
        "1s",
        "-c",
        "2",
        "--busy-poll",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["config"]["busy_poll"], true);
    // 300 due in 1 s: every one sent or counted unsent. A spinning client on a shared CPU
    // gets only its fair share of it, so it may end with a backlog; a loop that never
    // checked the schedule without its timerfd would have sent the first request only.
    let sent = r.u64("/counters/requests");
    let unsent = r.u64("/rate/unsent");
    let due = (300.0 * r.f64("/duration_s")).round() as u64;
    assert!(
        (sent + unsent).abs_diff(due) <= 4 + due / 100,
        "{sent} + {unsent} vs {due}"
    );
    assert!(sent >= due / 2, "{sent} of {due} sent");
    assert!(r.u64("/phases/send_lag/count") >= sent);
}

#[test]
fn busy_poll_runs_websocket_echo() {
    let _turn = spinning();
    let s = serve(|_| {});
    let url = format!("ws://{}/echo", s.http_addr().unwrap());
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "echo",
        "--send-rate",
        "300",
        "-c",
        "1",
        "-d",
        "1s",
        "--busy-poll",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["config"]["busy_poll"], true);
    assert_so_busy_poll_reported(&r);
    // Echoes of 300 due (fewer when the spinning client did not get its CPU all along; none
    // but the first if the loop never released the schedule without its timerfd).
    let rtt = r.u64("/phases/rtt/count");
    assert!(rtt >= 100, "{rtt} echoes of 300 due");
    assert_eq!(r.u64("/errors/total"), 0);
}

/// `connbench serve --echo PORT` in a child process: the lines it prints on start, the echo
/// listener's address parsed from them, and the child to stop.
struct ServeChild {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    http: String,
    echo: std::net::SocketAddr,
}

fn serve_child_with_echo() -> ServeChild {
    use std::io::BufRead;
    let mut child = std::process::Command::new(crate::util::bin())
        .args([
            "serve",
            "--http",
            "0",
            "--no-https",
            "--echo",
            "0",
            "--for",
            "60s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut http, mut echo) = (None, None);
    for line in lines.by_ref().take(10) {
        let line = line.unwrap();
        let word = line.split_whitespace().nth(1).map(str::to_string);
        if line.starts_with("http ") {
            http = word;
        } else if line.starts_with("echo ") {
            echo = word.and_then(|a| a.parse().ok());
        }
        if http.is_some() && echo.is_some() {
            break;
        }
    }
    ServeChild {
        child,
        lines,
        http: http.expect("http line"),
        echo: echo.expect("an `echo ADDR` line"),
    }
}

impl ServeChild {
    /// SIGINT, wait, and the lines printed after the start.
    fn stop(mut self) -> Vec<String> {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("serve exits");
        assert!(status.success(), "serve exit {status:?}");
        self.lines.map_while(Result::ok).collect()
    }
}

#[test]
fn serve_echo_flag_listens_for_raw_tcp_echo() {
    use std::io::{Read, Write};
    let srv = serve_child_with_echo();
    let mut s = std::net::TcpStream::connect(srv.echo).expect("connect to --echo");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut back = [0u8; 11];
    for _ in 0..3 {
        s.write_all(b"ping-pong\r\n").unwrap();
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping-pong\r\n");
    }
    drop(s);
    // The HTTP port is still HTTP.
    let r = connbench(&["http", &srv.http, "-n", "10", "-c", "1"]);
    let rest = srv.stop();
    assert_eq!(r.u64("/responses/2xx"), 10, "{}", r.stderr);
    assert!(
        rest.iter().any(|l| l == "echo   33 bytes echoed"),
        "final stats: {rest:?}"
    );
}

/// Run `connbench floor ARGS --json - -q`: the report comes on stdout, the table on stderr.
fn floor(args: &[&str]) -> crate::util::Run {
    let mut all = vec!["floor"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "-", "-q"]);
    let mut r = crate::util::connbench_raw(&all);
    r.json = serde_json::from_str(&r.stdout).ok();
    r
}

const LAYERS: [&str; 8] = [
    "raw_tcp_rtt",
    "tcp_connect",
    "tls_full",
    "tls_resumed",
    "http_ttfb",
    "ws_echo_rtt",
    "clock_read",
    "timer_lateness",
];
const MODES: [&str; 4] = [
    "sleep_pinned",
    "busy_poll_pinned",
    "sleep_unpinned",
    "busy_poll_unpinned",
];

/// Every measured row is a coherent distribution: samples, min ≤ p50 ≤ p99 ≤ max, operations
/// at least the samples; a row without samples says why. Returns how many rows were measured.
fn assert_rows_coherent(r: &crate::util::Run, layer: &str) -> usize {
    let l = &r.report()["layers"][layer];
    let mut measured = 0;
    for mode in MODES {
        let v = &l["variants"][mode];
        assert!(v.is_object(), "{layer}.{mode} missing: {l}");
        if v["available"] == true {
            let s = &v["stats"];
            let n = s["count"].as_u64().unwrap();
            let (min, p50, p99, max) = (
                s["min"].as_u64().unwrap(),
                s["p50"].as_u64().unwrap(),
                s["p99"].as_u64().unwrap(),
                s["max"].as_u64().unwrap(),
            );
            assert!(n > 0, "{layer}.{mode}: {v}");
            assert!(
                min <= p50 && p50 <= p99 && p99 <= max,
                "{layer}.{mode}: {min} {p50} {p99} {max}"
            );
            assert!(v["ops"].as_u64().unwrap() >= n, "{layer}.{mode}: {v}");
            assert!(v["cpu_per_op_us"].as_f64().unwrap() >= 0.0);
            measured += 1;
        } else {
            assert!(v["stats"].is_null(), "{layer}.{mode}: {v}");
            assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        }
    }
    measured
}

#[test]
fn floor_reports_every_layer_in_every_mode_and_the_verdict() {
    let _turn = spinning();
    let r = floor(&["-d", "200ms"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.report();
    assert_eq!(doc["mode"], "floor");
    assert_eq!(doc["target"]["builtin"], true);
    assert_eq!(doc["config"]["busy_poll"], false);
    let two_cpus = doc["host"]["cpus_allowed"].as_u64().unwrap() >= 2;
    for layer in LAYERS {
        let l = &doc["layers"][layer];
        assert_eq!(l["available"], true, "{layer}: {l}");
        let measured = assert_rows_coherent(&r, layer);
        assert!(measured >= 1, "{layer}: no row measured: {l}");
    }
    // Nothing waits in a clock read: its busy-poll rows say so instead of repeating it.
    for mode in ["busy_poll_pinned", "busy_poll_unpinned"] {
        let v = &doc["layers"]["clock_read"]["variants"][mode];
        assert_eq!(v["available"], false);
        assert!(
            v["reason"].as_str().unwrap().contains("nothing waits"),
            "{v}"
        );
    }
    if two_cpus {
        // Client and target pinned apart: the pinned rows exist (measured, or failed with a
        // reason on a machine too busy for the budget, never silently missing).
        assert!(doc["config"]["client_cpu"].is_u64(), "{}", doc["config"]);
        assert_eq!(doc["config"]["target_cpus"].as_array().unwrap().len(), 1);
    }
    // The verdict: HTTP TTFB minus the raw round trip, in the mode it names.
    let v = &doc["verdict"];
    assert_eq!(v["busy_poll"], false, "{v}");
    let mode = if v["pinned"] == true {
        "sleep_pinned"
    } else {
        "sleep_unpinned"
    };
    let p50 = |layer: &str| doc["layers"][layer]["variants"][mode]["stats"]["p50"].as_i64();
    match (p50("raw_tcp_rtt"), p50("http_ttfb")) {
        (Some(raw), Some(http)) => {
            assert_eq!(v["raw_rtt_p50_ns"].as_i64(), Some(raw));
            assert_eq!(v["http_ttfb_p50_ns"].as_i64(), Some(http));
            assert_eq!(v["adds_ns"].as_i64(), Some(http - raw), "{v}");
            assert!(v["missing"].is_null());
            assert!(v["cpu_per_request_us"].as_f64().unwrap() > 0.0);
            assert!(
                r.stderr.contains("verdict   connbench adds ")
                    && r.stderr
                        .contains("(p50) over the raw round trip on this machine"),
                "{}",
                r.stderr
            );
        }
        _ => assert!(v["missing"].is_string(), "{v}"),
    }
    // Which mode is lower, per layer, agrees with the medians it names.
    let raw = &doc["layers"]["raw_tcp_rtt"];
    if let Some(d) = raw["busy_poll_minus_sleep_p50_ns"].as_i64() {
        let want = match d {
            0 => "equal",
            d if d < 0 => "busy_poll",
            _ => "sleep",
        };
        assert_eq!(raw["lower_wait"], want);
    }
    assert!(r.stderr.contains("raw TCP round trip"), "{}", r.stderr);
    assert!(r.stderr.contains("timer wake-up lateness"), "{}", r.stderr);
    // Every key written is documented (src/report/floor.rs, the envelope in json.rs) and
    // every documented row is written.
    let table = crate::schema::Table::read("src/report/floor.rs");
    let load_table = crate::schema::Table::read("src/report/json.rs");
    let paths = crate::schema::all_key_paths(std::slice::from_ref(doc));
    let envelope = [
        "schema",
        "connbench_version",
        "mode",
        "started_at",
        "started_at_unix_ms",
        "duration_s",
        "interrupted",
        "insecure",
        "command_line",
        "target",
        "host",
        "client",
    ];
    let undocumented: Vec<String> = paths
        .iter()
        .filter(|k| !(table.covers(k) || envelope.contains(&k[0].as_str()) && load_table.covers(k)))
        .map(|k| k.join("."))
        .collect();
    assert!(
        undocumented.is_empty(),
        "written by floor but not documented: {undocumented:?}"
    );
    crate::schema::assert_rows_written(&table, &paths);
    // It reads back into the schema type.
    serde_json::from_value::<connbench::report::schema::FloorReport>(doc.clone())
        .expect("the floor report reads into schema::FloorReport");
}

#[test]
fn floor_with_an_unreachable_url_is_one_clear_error() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let t0 = std::time::Instant::now();
    let r = floor(&[&format!("http://127.0.0.1:{port}/"), "-d", "5s"]);
    crate::util::assert_usage_error(&r, "cannot connect to");
    assert!(r.stderr.contains("is the server up?"), "{}", r.stderr);
    assert!(r.json.is_none(), "no report of nothing: {}", r.stdout);
    // Before measuring anything: not 30 measurements of 5 s.
    assert!(t0.elapsed() < std::time::Duration::from_secs(25));
}

#[test]
fn floor_with_a_plain_url_says_what_the_host_lacks_instead_of_measuring_it() {
    let _turn = spinning();
    let s = serve(|c| c.echo_port = Some(0));
    let url = http_url(&s, "/");
    let r = floor(&[&url, "-d", "100ms"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.report();
    assert_eq!(doc["target"]["builtin"], false);
    let na = |layer: &str, needle: &str| {
        let l = &doc["layers"][layer];
        assert_eq!(l["available"], false, "{layer}: {l}");
        assert!(l["variants"].as_object().unwrap().is_empty());
        let why = l["reason"].as_str().unwrap();
        assert!(why.contains(needle), "{layer}: {why}");
    };
    na("raw_tcp_rtt", "--echo HOST:PORT");
    na("tls_full", "https://");
    na("tls_resumed", "https://");
    na("ws_echo_rtt", "--ws");
    for layer in ["tcp_connect", "http_ttfb", "clock_read", "timer_lateness"] {
        assert_eq!(doc["layers"][layer]["available"], true, "{layer}");
        assert!(assert_rows_coherent(&r, layer) >= 1, "{layer}");
    }
    let v = &doc["verdict"];
    assert!(
        v["adds_ns"].is_null() && v["raw_rtt_p50_ns"].is_null(),
        "{v}"
    );
    assert!(v["missing"].as_str().unwrap().contains("--echo"), "{v}");
    assert!(
        r.stderr.contains("raw TCP round trip      n/a: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("verdict   n/a"), "{}", r.stderr);
    s.stop();
}

#[test]
fn floor_against_an_https_url_with_echo_and_ws_measures_every_layer_for_busy_poll() {
    let _turn = spinning();
    let s = serve(|c| c.echo_port = Some(0));
    let dir = crate::util::TempDir::new("floor-ca");
    let ca = crate::util::write_ca(&s, &dir);
    let url = crate::util::https_url(&s, "/");
    let echo = s.echo_addr().unwrap().to_string();
    let ws = format!("wss://{}/echo", s.https_addr().unwrap());
    let r = floor(&[
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "--echo",
        &echo,
        "--ws",
        &ws,
        "--busy-poll",
        "-d",
        "100ms",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.report();
    for layer in LAYERS {
        assert_eq!(doc["layers"][layer]["available"], true, "{layer}");
        assert!(assert_rows_coherent(&r, layer) >= 1, "{layer}");
    }
    assert_eq!(doc["config"]["echo"], echo.as_str());
    assert!(doc["config"]["ws_url"]
        .as_str()
        .unwrap()
        .starts_with("wss://"));
    // --busy-poll: the verdict compares the busy-poll rows.
    assert_eq!(doc["config"]["busy_poll"], true);
    let v = &doc["verdict"];
    assert_eq!(v["busy_poll"], true, "{v}");
    if let (Some(raw), Some(http)) = (v["raw_rtt_p50_ns"].as_i64(), v["http_ttfb_p50_ns"].as_i64())
    {
        let mode = if v["pinned"] == true {
            "busy_poll_pinned"
        } else {
            "busy_poll_unpinned"
        };
        let p50 = |l: &str| doc["layers"][l]["variants"][mode]["stats"]["p50"].as_i64();
        assert_eq!(Some(raw), p50("raw_tcp_rtt"));
        assert_eq!(Some(http), p50("http_ttfb"));
    }
    // Full handshakes are full, resumed ones resumed (the first aside): the target saw both.
    let full = &doc["layers"]["tls_full"]["variants"];
    let resumed = &doc["layers"]["tls_resumed"]["variants"];
    for mode in MODES {
        for (layer, v) in [("tls_full", &full[mode]), ("tls_resumed", &resumed[mode])] {
            if v["available"] == true {
                assert!(v["note"].is_null(), "{layer}.{mode}: {v}");
            }
        }
    }
    assert!(stats.echo_bytes > 0, "the raw round trips went to --echo");
    assert!(stats.ws_upgrades >= 1, "the WebSocket echo went to --ws");
}

#[test]
fn floor_refuses_an_echo_address_that_does_not_echo() {
    // The HTTP port waits for the end of a request head that never comes: no echo.
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let http = s.http_addr().unwrap().to_string();
    let r = floor(&[&url, "--echo", &http, "-d", "100ms"]);
    s.stop();
    crate::util::assert_usage_error(&r, "not a raw TCP echo service");
}
