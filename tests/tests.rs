//! End-to-end tests: the real `connbench` binary against the built-in target, started in this
//! process on ephemeral loopback ports and stopped through its handle. Every test checks the
//! JSON report the run wrote (or the exit code and message of a bad invocation).

mod benches;
mod compare;
mod faults;
mod floor;
mod live;
mod merge;
mod multihost;
mod newconn;
mod nullclient;
mod plot;
mod probe;
mod proto;
mod rate;
mod schema;
mod source;
mod stages;
mod usage;
mod util;
mod verbose;
mod verdict;
mod ws;

use util::{assert_usage_error, connbench, connbench_raw, http_url, https_url, serve, write_ca};

const PHASES: [&str; 4] = ["connect", "tls", "ttfb", "total"];

#[test]
fn plain_keep_alive_counts_phases_and_reuses_connections() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&["http", &url, "-c", "4", "-n", "2000", "--no-pin", "-t", "1"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/counters/responses"), 2000);
    assert_eq!(r.u64("/responses/2xx"), 2000);
    assert_eq!(r.u64("/errors/total"), 0);
    assert_eq!(r.u64("/phases/connect/count"), 4);
    assert_eq!(r.u64("/phases/tls/count"), 0, "no TLS phase on plain TCP");
    assert_eq!(r.u64("/phases/ttfb/count"), 2000);
    assert_eq!(r.u64("/phases/total/count"), 2000);
    assert!(r.f64("/counters/reuse_rate") >= 0.99);
    assert_eq!(r.u64("/counters/connections_opened"), 4);
    // total ≥ ttfb for the same requests: compare medians
    assert!(r.u64("/phases/total/p50") >= r.u64("/phases/ttfb/p50"));
    assert!(r.report()["tls"].is_null());
    assert_eq!(r.report()["insecure"], false);
    assert_eq!(r.report()["schema"], "connbench.report.v1");
}

#[test]
fn tls_with_ca_counts_all_four_phases() {
    let s = serve(|_| {});
    let dir = util::TempDir::new("tls");
    let ca = write_ca(&s, &dir);
    let url = https_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "-c",
        "4",
        "-n",
        "1000",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/counters/responses"), 1000);
    for p in PHASES {
        assert!(r.u64(&format!("/phases/{p}/count")) > 0, "phase {p} empty");
    }
    assert_eq!(r.u64("/phases/tls/count"), 4);
    let tls = &r.report()["tls"];
    assert!(tls["version"].as_str().unwrap().contains("TLS"), "{tls}");
    assert!(tls["cipher_suite"].is_string());
    assert!(tls["kx_group"].is_string());
    assert_eq!(tls["alpn"], "http/1.1");
    assert_eq!(r.report()["insecure"], false);
}

#[test]
fn close_after_10_gives_reuse_rate_0_9_and_matching_connections() {
    let s = serve(|c| c.close_after = Some(10));
    let url = http_url(&s, "/");
    let r = connbench(&["http", &url, "-c", "4", "-n", "2000", "--no-pin"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/counters/responses"), 2000);
    assert_eq!(r.u64("/errors/total"), 0);
    let reuse = r.f64("/counters/reuse_rate");
    assert!((reuse - 0.9).abs() <= 0.01, "reuse {reuse}");
    // Every connection carries 10 requests and is closed by the server; only at the very end
    // of a -n run may the last few (at most one per slot) carry fewer or none.
    let carried = r.u64("/counters/requests") - r.u64("/counters/reused_requests");
    let opened = r.u64("/counters/connections_opened");
    let closes = r.u64("/counters/server_closes");
    assert!(
        (200..=204).contains(&carried),
        "connections that carried requests: {carried}"
    );
    assert!((carried..=carried + 4).contains(&opened), "opened {opened}");
    assert!(
        (carried - 4..=carried).contains(&closes),
        "server closes {closes}"
    );
}

#[test]
fn status_429_lands_in_its_own_class() {
    let s = serve(|_| {});
    let url = http_url(&s, "/status/429");
    let r = connbench(&["http", &url, "-c", "2", "-n", "300", "--no-pin"]);
    s.stop();
    // Every response an error status: nothing measured (issue 9, "Pass/fail"), exit 3.
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.u64("/responses/429"), 300);
    assert_eq!(r.u64("/responses/4xx"), 0);
    assert_eq!(r.u64("/responses/2xx"), 0);
}

#[test]
fn delayed_responses_show_in_ttfb() {
    let s = serve(|_| {});
    let url = http_url(&s, "/delay/2000");
    let r = connbench(&["http", &url, "-c", "4", "-n", "200", "--no-pin"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/counters/responses"), 200);
    let p50 = r.u64("/phases/ttfb/p50");
    assert!(p50 >= 2_000_000, "ttfb p50 {p50} ns < 2 ms");
}

#[test]
fn exact_request_count_is_honoured_with_pipelining() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    for pipeline in ["1", "4"] {
        let r = connbench(&[
            "http",
            &url,
            "-c",
            "3",
            "-n",
            "1000",
            "--pipeline",
            pipeline,
            "--no-pin",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.u64("/counters/requests"), 1000, "pipeline {pipeline}");
        assert_eq!(r.u64("/counters/responses"), 1000, "pipeline {pipeline}");
    }
    s.stop();
}

#[test]
fn tls_without_ca_is_a_certificate_error_not_a_crash() {
    let s = serve(|_| {});
    let url = https_url(&s, "/");
    let r = connbench(&["http", &url, "-c", "2", "-n", "20", "--no-pin"]);
    s.stop();
    // The run ends and reports; with every connection failed it measured nothing: exit 3.
    assert_eq!(
        r.code, 3,
        "a failing connection never aborts the run: {}",
        r.stderr
    );
    assert_eq!(r.u64("/counters/responses"), 0);
    assert!(r.u64("/errors/tls_certificate") > 0);
    assert_eq!(
        r.u64("/errors/tls_certificate"),
        r.u64("/errors/total"),
        "only certificate errors"
    );
}

#[test]
fn insecure_succeeds_and_says_so() {
    let s = serve(|_| {});
    let url = https_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "--insecure",
        "-c",
        "2",
        "-n",
        "200",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/counters/responses"), 200);
    assert_eq!(r.report()["insecure"], true);
    assert!(
        r.stderr.contains("--insecure"),
        "warning on stderr: {}",
        r.stderr
    );
}

#[test]
fn no_resume_gives_only_full_handshakes_and_reconnects_resume_otherwise() {
    let s = serve(|c| c.close_after = Some(5));
    let dir = util::TempDir::new("resume");
    let ca = write_ca(&s, &dir);
    let url = https_url(&s, "/");
    let ca = ca.to_str().unwrap();
    let args = ["http", &url, "--ca", ca, "-c", "2", "-n", "200", "--no-pin"];
    let full = connbench(&[&args[..], &["--no-resume"]].concat());
    let resumed = connbench(&args);
    s.stop();
    for r in [&full, &resumed] {
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.u64("/counters/responses"), 200);
        assert_eq!(
            r.u64("/tls/handshakes_full") + r.u64("/tls/handshakes_resumed"),
            40
        );
    }
    assert_eq!(full.u64("/tls/handshakes_resumed"), 0);
    assert_eq!(full.u64("/tls/handshakes_full"), 40);
    assert!(
        resumed.u64("/tls/handshakes_resumed") >= 30,
        "reconnects should resume: {}",
        resumed.report()["tls"]
    );
}

#[test]
fn head_and_chunked_responses_are_framed() {
    let s = serve(|_| {});
    let head = connbench(&[
        "http",
        &http_url(&s, "/bytes/5000"),
        "-m",
        "HEAD",
        "-n",
        "100",
        "-c",
        "2",
        "--no-pin",
    ]);
    let chunked = connbench(&[
        "http",
        &http_url(&s, "/chunked/10000"),
        "-n",
        "100",
        "-c",
        "2",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(head.u64("/responses/2xx"), 100, "{}", head.stderr);
    assert!(
        head.u64("/counters/bytes_in") < 100 * 5000,
        "HEAD carries no body"
    );
    assert_eq!(chunked.u64("/responses/2xx"), 100, "{}", chunked.stderr);
    assert!(chunked.u64("/counters/bytes_in") > 100 * 10000);
    assert_eq!(chunked.u64("/errors/total"), 0);
}

#[test]
fn builtin_target_is_the_default() {
    let r = connbench(&["http", "-c", "2", "-d", "1s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["target"]["builtin"], true);
    assert!(r.u64("/counters/responses") > 100);
    assert!(
        r.stdout.contains("ttfb"),
        "text summary on stdout: {}",
        r.stdout
    );
    // a path instead of a URL picks a route of the built-in target
    let r = connbench(&["http", "/status/503", "-c", "1", "-n", "10"]);
    assert_eq!(r.u64("/responses/5xx"), 10, "{}", r.stderr);
}

#[test]
fn secrets_never_reach_the_output() {
    let s = serve(|_| {});
    let port = s.http_addr().unwrap().port();
    let url = format!("http://alice:hunter2@127.0.0.1:{port}/?symbol=BTCUSDT&api_key=k3yv4lue");
    let r = connbench(&[
        "http",
        &url,
        "-H",
        "Authorization: Bearer t0psecret",
        "-n",
        "20",
        "-c",
        "1",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/responses/2xx"), 20);
    let json = r.report().to_string();
    for secret in ["hunter2", "k3yv4lue", "t0psecret"] {
        assert!(!json.contains(secret), "{secret} in JSON");
        assert!(!r.stdout.contains(secret), "{secret} in stdout");
        assert!(!r.stderr.contains(secret), "{secret} in stderr");
    }
    assert!(json.contains("BTCUSDT"), "harmless parameters stay");
}

#[test]
fn json_to_stdout_moves_the_summary_to_stderr() {
    let s = serve(|_| {});
    let r = connbench_raw(&[
        "http",
        &http_url(&s, "/"),
        "-n",
        "50",
        "-c",
        "1",
        "--json",
        "-",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("stdout is JSON");
    assert_eq!(v["counters"]["responses"], 50);
    assert!(r.stderr.contains("ttfb"));
}

#[test]
fn ctrl_c_still_writes_the_report() {
    let s = serve(|_| {});
    let dir = util::TempDir::new("sigint");
    let json = dir.path("r.json");
    let child = std::process::Command::new(util::bin())
        .args([
            "http",
            &http_url(&s, "/"),
            "-c",
            "2",
            "-d",
            "30s",
            "-q",
            "--json",
        ])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    s.stop();
    assert_eq!(out.status.code(), Some(130));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report written")).unwrap();
    assert_eq!(v["interrupted"], true);
    assert!(v["counters"]["responses"].as_u64().unwrap() > 0);
    assert!(v["duration_s"].as_f64().unwrap() < 20.0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted"));
}

#[test]
fn bad_input_exits_2_with_one_clear_line() {
    assert_usage_error(&connbench_raw(&["http", "not a url"]), "invalid URL");
    assert_usage_error(&connbench_raw(&["http", "ftp://127.0.0.1/"]), "scheme");
    assert_usage_error(
        &connbench_raw(&["http", "http://127.0.0.1:9/", "-c", "0"]),
        "-c",
    );
    assert_usage_error(
        &connbench_raw(&[
            "http",
            "https://127.0.0.1:9/",
            "--ca",
            "/nonexistent/ca.pem",
            "-n",
            "1",
        ]),
        "--ca",
    );
    assert_usage_error(
        &connbench_raw(&["http", "http://127.0.0.1:9/", "-d", "5x"]),
        "duration",
    );
    assert_usage_error(
        &connbench_raw(&["http", "http://127.0.0.1:9/", "-H", "nocolon"]),
        "-H",
    );
    assert_usage_error(
        &connbench_raw(&["http", "http://127.0.0.1:9/", "-c", "1000000"]),
        "file descriptors",
    );
    assert_usage_error(&connbench_raw(&["http", "http://[::1/"]), "invalid URL");
}

#[test]
fn refused_connections_are_counted_and_the_run_ends() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let r = connbench(&["http", &url, "-c", "2", "-n", "10", "--no-pin"]);
    // Every connection refused used to exit 0; the run measured nothing: exit 3, saying why
    // (issue 9, "Pass/fail"; tests/verdict).
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("nothing measured: no response: all 10 connections or requests failed"),
        "{}",
        r.stderr
    );
    assert_eq!(r.u64("/errors/connect_refused"), 10);
    assert_eq!(r.u64("/counters/responses"), 0);
}

#[test]
fn serve_subcommand_serves_plain_and_tls_with_its_certificate() {
    use std::io::BufRead;
    let dir = util::TempDir::new("serve");
    let cert = dir.path("cert.pem");
    let mut child = std::process::Command::new(util::bin())
        .args([
            "serve",
            "--http",
            "0",
            "--https",
            "0",
            "--for",
            "60s",
            "--ws-rate",
            "300",
            "--ws-gap-every",
            "10",
            "--cert-out",
        ])
        .arg(&cert)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut http, mut https) = (None, None);
    for line in lines.by_ref().take(10) {
        let line = line.unwrap();
        let url = line.split_whitespace().nth(1).map(str::to_string);
        if line.starts_with("http ") {
            http = url;
        } else if line.starts_with("https ") {
            https = url;
        }
        if http.is_some() && https.is_some() {
            break;
        }
    }
    let (http, https) = (http.expect("http line"), https.expect("https line"));
    let plain = connbench(&["http", &http, "-n", "50", "-c", "1"]);
    let tls = connbench(&[
        "http",
        &https,
        "--ca",
        cert.to_str().unwrap(),
        "-n",
        "50",
        "-c",
        "1",
    ]);
    // the WebSocket flags reach the target: 300 messages/s with a gap every 10th
    let ws_url = format!("{}ws", http.replace("http://", "ws://"));
    let stream = connbench(&[
        "ws",
        &ws_url,
        "-c",
        "1",
        "-d",
        "1s",
        "--subscribe",
        r#"{"op":"subscribe","symbol":"X"}"#,
        "--seq-field",
        "seq",
    ]);
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("serve exits");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "serve exit {status:?}");
    assert_eq!(plain.u64("/responses/2xx"), 50, "{}", plain.stderr);
    assert_eq!(tls.u64("/responses/2xx"), 50, "{}", tls.stderr);
    let msgs = stream.u64("/ws/messages_in");
    assert!(
        (150..=400).contains(&msgs),
        "--ws-rate 300 for 1 s gave {msgs}"
    );
    assert!(
        stream.u64("/ws/seq_gaps") >= 10,
        "{}",
        stream.report()["ws"]
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("served 101 requests") && l.contains("1 WebSocket upgrades")),
        "final stats: {rest:?}"
    );
}

#[test]
fn tls_verifies_a_dns_name_whichever_address_localhost_resolves_to_first() {
    let s = serve(|_| {});
    let dir = util::TempDir::new("dnsname");
    let ca = write_ca(&s, &dir);
    let url = format!("https://localhost:{}/", s.https_addr().unwrap().port());
    let r = connbench(&[
        "http",
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "-c",
        "2",
        "-n",
        "100",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // If ::1 comes first, each slot is refused there once (a failed request of the -n budget)
    // and moves on to 127.0.0.1.
    let refused = r.u64("/errors/connect_refused");
    assert!(refused <= 2, "refused {refused}");
    assert_eq!(r.u64("/responses/2xx") + refused, 100);
    assert_eq!(r.u64("/errors/total"), r.u64("/errors/connect_refused"));
}

#[test]
fn slow_responses_fail_as_read_timeouts() {
    let s = serve(|_| {});
    let url = http_url(&s, "/delay/3000000");
    let started = std::time::Instant::now();
    let r = connbench(&["http", &url, "--timeout", "200ms", "-c", "2", "-n", "4"]);
    s.stop();
    // Every request timed out: nothing measured (issue 9, "Pass/fail"), exit 3.
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.u64("/errors/read_timeout"), 4);
    assert_eq!(r.u64("/counters/responses"), 0);
    assert_eq!(
        r.u64("/phases/total/count"),
        0,
        "timeouts are not latencies"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[test]
fn connects_that_never_complete_fail_as_connect_timeouts() {
    // A listener that never accepts, with the smallest backlog: once its queue is full the
    // kernel drops further SYNs, so those connects hang until --connect-timeout.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let url = format!("http://{addr}/");
    let r = connbench(&[
        "http",
        &url,
        "--connect-timeout",
        "200ms",
        "--timeout",
        "300ms",
        "-c",
        "8",
        "-d",
        "1s",
    ]);
    drop(sock);
    // No connection ever completed: nothing measured (issue 9, "Pass/fail"), exit 3.
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.u64("/errors/connect_timeout") > 0,
        "{}",
        r.report()["errors"]
    );
    assert_eq!(r.u64("/counters/responses"), 0);
}

#[test]
fn warmup_is_excluded_from_the_results() {
    let s = serve(|_| {});
    let r = connbench(&[
        "http",
        &http_url(&s, "/"),
        "-c",
        "2",
        "--warmup",
        "2s",
        "-d",
        "1s",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = r.f64("/duration_s");
    assert!((0.9..1.5).contains(&d), "measured window {d}");
    // (2 s of warm-up: on a loaded 2-core machine the worker threads may wait a while for a
    // CPU before their first connect; 500 ms was once not enough.)
    assert!(r.u64("/phases/ttfb/count") > 0);
    // Both connections were set up during the warm-up: nothing of that is reported.
    assert_eq!(r.u64("/phases/connect/count"), 0);
    assert_eq!(r.u64("/counters/connections_opened"), 0);
    assert_eq!(r.f64("/config/warmup_s"), 2.0);
}

#[test]
fn post_bodies_and_headers_are_sent() {
    let s = serve(|_| {});
    let dir = util::TempDir::new("body");
    let body = dir.path("body.json");
    std::fs::write(&body, vec![b'x'; 1000]).unwrap();
    let r = connbench(&[
        "http",
        &http_url(&s, "/"),
        "-m",
        "POST",
        "--body-file",
        body.to_str().unwrap(),
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Test: 1",
        "-n",
        "100",
        "-c",
        "2",
    ]);
    s.stop();
    assert_eq!(r.u64("/responses/2xx"), 100, "{}", r.stderr);
    assert!(r.u64("/counters/bytes_out") >= 100 * 1000);
    assert_eq!(r.u64("/config/body_len"), 1000);
    let headers = r.report()["config"]["headers"].to_string();
    assert!(headers.contains("X-Test: 1"), "{headers}");
}

#[test]
fn sni_overrides_the_verified_name_and_keylog_is_written() {
    let s = serve(|_| {});
    let dir = util::TempDir::new("sni");
    let ca = write_ca(&s, &dir);
    let ca = ca.to_str().unwrap();
    let url = https_url(&s, "/");
    let keylog = dir.path("keys.log");
    let out = std::process::Command::new(util::bin())
        .args([
            "http",
            &url,
            "--ca",
            ca,
            "--sni",
            "localhost",
            "-n",
            "20",
            "-c",
            "1",
            "-q",
        ])
        .env("SSLKEYLOGFILE", &keylog)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2xx 20"));
    let keys = std::fs::read_to_string(&keylog).expect("SSLKEYLOGFILE written");
    assert!(keys.contains("CLIENT_TRAFFIC_SECRET_0") || keys.contains("CLIENT_RANDOM"));
    // a name the certificate does not carry fails verification
    let wrong = connbench(&[
        "http",
        &url,
        "--ca",
        ca,
        "--sni",
        "wrong.example",
        "-n",
        "3",
        "-c",
        "1",
    ]);
    s.stop();
    assert_eq!(wrong.u64("/errors/tls_certificate"), 3, "{}", wrong.stderr);
}

#[test]
fn progress_line_only_on_a_terminal() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    // stderr is a pipe here: no progress line.
    let piped = connbench_raw(&["http", &url, "-c", "1", "-d", "1500ms"]);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert!(!piped.stderr.contains("req/s"), "{}", piped.stderr);
    // Under a pseudo-terminal (util-linux `script`), one line per second, redrawn in place.
    let dir = util::TempDir::new("tty");
    let log = dir.path("tty.log");
    let cmd = format!("{} http {url} -c 1 -d 2500ms", util::bin());
    let status = std::process::Command::new("script")
        .args(["-qec", &cmd])
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    s.stop();
    // `script` is in bsdutils, an essential Debian package: its absence is a broken machine,
    // and this test fails rather than skip its terminal half.
    let status = status.expect("run `script` (util-linux/bsdutils) for a pseudo-terminal");
    assert!(status.success());
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.matches(" req/s ").count() >= 2, "{out}");
    assert!(out.contains("\r\x1b[K"), "redrawn in place");
    // quiet: nothing
    let quiet = connbench_raw(&["http", "-c", "1", "-d", "1s", "-q"]);
    assert!(!quiet.stderr.contains("connbench:"), "{}", quiet.stderr);
}

#[test]
fn interval_histograms_add_up_to_the_run() {
    use connbench::metrics::Phase;
    use connbench::plan::{HttpPlan, Pinning, Stop, TlsPlan};
    let s = serve(|_| {});
    let (target, _) = connbench::app::parse_target(&http_url(&s, "/")).unwrap();
    let plan = HttpPlan {
        target,
        tls: TlsPlan::default(),
        method: "GET".into(),
        headers: vec![],
        body: vec![],
        connections: 2,
        threads: 2,
        pinning: Pinning::None,
        pipeline: 1,
        stop: Stop::Duration(std::time::Duration::from_millis(2500)),
        warmup: std::time::Duration::from_millis(300),
        timeout: std::time::Duration::from_secs(5),
        connect_timeout: std::time::Duration::from_secs(5),
        progress: connbench::plan::Progress::new(connbench::plan::ProgressWhen::Never),
        intervals: true,
        rate: None,
        stages: vec![],
        sources: vec![],
        requests_per_conn: None,
        conn_rate: None,
        close: Default::default(),
        busy_poll: None,
        verbose: false,
        start_at: None,
    };
    let r = connbench::engine::run(&plan).unwrap();
    s.stop();
    // 2.5 s of measurement after the warm-up: intervals starting at 0, 1 and 2 s
    let starts: Vec<u64> = r.intervals.iter().map(|i| i.start.as_secs()).collect();
    assert_eq!(starts, vec![0, 1, 2], "{starts:?}");
    assert!(r.intervals[2].length <= std::time::Duration::from_millis(600));
    let per_interval: u64 = r
        .intervals
        .iter()
        .flat_map(|i| i.hists.iter())
        .filter(|(p, _)| *p == Phase::Total)
        .map(|(_, h)| h.len())
        .sum();
    assert!(per_interval > 0);
    assert_eq!(per_interval, r.recorder.histogram(Phase::Total).len());
}

/// A worker that panics used to vanish: its join error was skipped, its measurements dropped,
/// and the run exited 0 (and ran on for the whole duration).
#[test]
fn a_worker_panic_fails_the_run_loudly_and_keeps_the_other_workers_measurements() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = util::connbench_env(
        &["http", &url, "-c", "4", "-t", "2", "-d", "120s", "--no-pin"],
        &[(connbench::engine::DEBUG_PANIC_ENV, "1")],
    );
    s.stop();
    assert_eq!(r.code, 70, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("connbench: error: worker 1 panicked")
            && r.stderr.contains("panic injected for the tests"),
        "stderr: {}",
        r.stderr
    );
    assert!(
        r.stdout.contains("ERROR: worker 1 panicked"),
        "{}",
        r.stdout
    );
    let panics = r.report()["worker_panics"].as_array().expect("array");
    assert_eq!(panics.len(), 1);
    assert_eq!(panics[0]["worker"], 1);
    // The run stopped at the panic, not after 120 s, and worker 0's responses are reported.
    assert!(r.f64("/duration_s") < 60.0, "{}", r.f64("/duration_s"));
    assert!(r.u64("/counters/responses") > 0);
    assert_eq!(
        r.report()["client"]["workers"].as_array().map(Vec::len),
        Some(1)
    );
}
