//! Usage errors end to end (issue 7, "Usage"): a flag that has no effect in the chosen mode, a
//! header the WebSocket upgrade owns, a URL without a host and a negative duration are refused
//! with exit code 2 and one line naming the flag (and the mode), before anything starts: no
//! banner, nothing on stdout, no connection to the target the test started, no DNS lookup.
//! And every one of those flags is still accepted where it works.
//!
//! Every run that would start something if the check were missing is bounded (`-d 300ms`,
//! `-n 5`, `--max 2`, `--for 300ms`), so an unfixed binary fails these tests quickly.

use connbench::serve::ServerHandle;

use crate::util::{
    assert_usage_error, connbench, connbench_raw, http_url, https_url, serve, write_ca, Run,
    TempDir,
};

/// A host under `.invalid` (RFC 6761) never resolves: if a usage check ran after the lookup,
/// the run would end with "cannot resolve host" instead of the check's message.
const UNRESOLVABLE: &str = "connbench-usage-test.invalid";

/// A template using all three lists.
const SUB: &str =
    r#"{"op":"subscribe","exchange":"{exchange}","channel":"{channel}","symbol":"{symbol}"}"#;

fn ws_url(s: &ServerHandle, path: &str) -> String {
    format!("ws://{}{}", s.http_addr().expect("plain port"), path)
}

fn wss_url(s: &ServerHandle, path: &str) -> String {
    format!("wss://{}{}", s.https_addr().expect("tls port"), path)
}

/// Run the binary as a user would (no `-q`, so a started run would print its banner) and check
/// the usage error: exit 2, exactly one line on stderr, naming every needle, nothing on stdout.
/// Returns that line.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let r = connbench_raw(args);
    assert_usage_error(&r, needles[0]);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: one line, no banner, no warning: {}",
        r.stderr
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{args:?}: {needle:?} in {}",
            lines[0]
        );
    }
    assert!(
        !lines[0].contains("resolve"),
        "{args:?}: checked before any DNS lookup: {}",
        lines[0]
    );
    assert!(r.stdout.is_empty(), "{args:?}: stdout: {}", r.stdout);
    lines[0].to_string()
}

/// `refused` against a target this test started: the target must not have seen a connection.
fn refused_by_target(s: &ServerHandle, args: &[&str], needles: &[&str]) -> String {
    let line = refused(args, needles);
    let st = s.stats();
    assert_eq!(
        st.accepted + st.rejected,
        0,
        "{args:?}: the target saw a connection"
    );
    line
}

#[test]
fn echo_flags_outside_echo_mode_are_usage_errors_not_ignored() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/echo");
    for (flag, value) in [
        ("--send-rate", "5"),
        ("--message-size", "100"),
        ("--send-buffer", "10"),
    ] {
        for mode in ["stream", "ping"] {
            refused_by_target(
                &s,
                &[
                    "ws", &url, "-c", "1", "-d", "300ms", "--mode", mode, flag, value,
                ],
                &[flag, &format!("--mode {mode}"), "--mode echo"],
            );
        }
        // No --mode at all: stream, the default, is named.
        refused_by_target(
            &s,
            &["ws", &url, "-c", "1", "-d", "300ms", flag, value],
            &[flag, "--mode stream"],
        );
    }
    // -R belongs to echo mode too, and says so the same way.
    refused_by_target(
        &s,
        &["ws", &url, "-c", "1", "-d", "300ms", "-R", "10"],
        &["-R", "--mode stream", "--mode echo"],
    );
    s.stop();
}

#[test]
fn ping_interval_outside_ping_mode_is_a_usage_error_not_ignored() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/echo");
    for mode in ["stream", "echo"] {
        refused_by_target(
            &s,
            &[
                "ws",
                &url,
                "-c",
                "1",
                "-d",
                "300ms",
                "--mode",
                mode,
                "--ping-interval",
                "50ms",
            ],
            &["--ping-interval", &format!("--mode {mode}"), "--mode ping"],
        );
    }
    s.stop();
}

#[test]
fn ts_unit_without_ts_field_is_a_usage_error_not_ignored() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/ws");
    refused_by_target(
        &s,
        &["ws", &url, "-c", "1", "-d", "300ms", "--ts-unit", "ms"],
        &["--ts-unit", "--ts-field"],
    );
    s.stop();
}

#[test]
fn stream_field_without_seq_field_is_a_usage_error_not_ignored() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/ws");
    // Even spelled as its default value: the user asked for something that cannot happen.
    for value in ["data.s", "stream"] {
        refused_by_target(
            &s,
            &[
                "ws",
                &url,
                "-c",
                "1",
                "-d",
                "300ms",
                "--stream-field",
                value,
            ],
            &["--stream-field", "--seq-field"],
        );
    }
    s.stop();
}

#[test]
fn heartbeat_interval_without_a_heartbeat_is_a_usage_error_not_ignored() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/ws");
    let base = ["ws", url.as_str(), "-c", "1", "-d", "300ms"];
    refused_by_target(
        &s,
        &[&base[..], &["--heartbeat-interval", "100ms"]].concat(),
        &["--heartbeat-interval", "--heartbeat"],
    );
    refused_by_target(
        &s,
        &[
            &base[..],
            &["--heartbeat", "off", "--heartbeat-interval", "100ms"],
        ]
        .concat(),
        &["--heartbeat-interval", "--heartbeat"],
    );
    // Ping mode's pings are the heartbeat: both flags would be ignored there.
    let echo = ws_url(&s, "/echo");
    let ping = [
        "ws",
        echo.as_str(),
        "-c",
        "1",
        "-d",
        "300ms",
        "--mode",
        "ping",
    ];
    refused_by_target(
        &s,
        &[&ping[..], &["--heartbeat", "text:ping"]].concat(),
        &["--heartbeat", "--mode ping"],
    );
    refused_by_target(
        &s,
        &[
            &ping[..],
            &["--heartbeat", "ping", "--heartbeat-interval", "1s"],
        ]
        .concat(),
        &["--heartbeat", "--mode ping"],
    );
    s.stop();
}

#[test]
fn tls_flags_with_a_plain_url_are_usage_errors_not_ignored() {
    let s = serve(|_| {});
    let dir = TempDir::new("plain-tls");
    let ca = write_ca(&s, &dir);
    let ca = ca.to_str().unwrap();
    let http = http_url(&s, "/");
    let ws = ws_url(&s, "/echo");
    for tls in [
        vec!["--ca", ca],
        vec!["--sni", "localhost"],
        vec!["--no-resume"],
        vec!["-k"],
    ] {
        let flag = if tls[0] == "-k" { "--insecure" } else { tls[0] };
        let runs: [Vec<&str>; 4] = [
            vec!["http", &http, "-c", "1", "-n", "5"],
            vec!["ws", &ws, "-c", "1", "-d", "300ms", "--mode", "ping"],
            vec!["probe", &http, "--max", "2", "--hold", "100ms"],
            vec!["probe", &ws, "--max", "2", "--hold", "100ms"],
        ];
        for run in runs {
            let args = [&run[..], &tls[..]].concat();
            refused_by_target(&s, &args, &[flag, "plain"]);
        }
        // The built-in target is plain unless --tls.
        refused(
            &[&["http", "/", "-c", "1", "-n", "5"][..], &tls[..]].concat(),
            &[flag, "plain", "--tls"],
        );
    }
    s.stop();
}

#[test]
fn ca_with_insecure_is_a_usage_error_not_ignored() {
    let s = serve(|_| {});
    let dir = TempDir::new("ca-insecure");
    let ca = write_ca(&s, &dir);
    let url = https_url(&s, "/");
    refused_by_target(
        &s,
        &[
            "http",
            &url,
            "-c",
            "1",
            "-n",
            "5",
            "-k",
            "--ca",
            ca.to_str().unwrap(),
        ],
        &["--ca", "--insecure"],
    );
    s.stop();
}

#[test]
fn serve_over_limit_without_max_conns_is_a_usage_error_not_ignored() {
    // Ephemeral ports and --for: an unfixed binary would serve for 300 ms and exit 0.
    let base = ["serve", "--http", "0", "--https", "0", "--for", "300ms"];
    refused(
        &[&base[..], &["--over-limit", "429"]].concat(),
        &["--over-limit", "--max-conns"],
    );
    refused(
        &[&base[..], &["--over-limit", "refuse"]].concat(),
        &["--over-limit", "--max-conns"],
    );
}

#[test]
fn serve_flags_for_a_disabled_port_are_usage_errors_not_ignored() {
    let dir = TempDir::new("serve-off");
    let cert = dir.path("cert.pem");
    let cert = cert.to_str().unwrap();
    refused(
        &[
            "serve",
            "--no-http",
            "--http",
            "0",
            "--https",
            "0",
            "--for",
            "300ms",
        ],
        &["--http", "--no-http"],
    );
    refused(
        &[
            "serve",
            "--no-https",
            "--https",
            "0",
            "--http",
            "0",
            "--for",
            "300ms",
        ],
        &["--https", "--no-https"],
    );
    refused(
        &[
            "serve",
            "--no-https",
            "--http",
            "0",
            "--cert-out",
            cert,
            "--for",
            "300ms",
        ],
        &["--cert-out", "--no-https"],
    );
    assert!(!dir.path("cert.pem").exists(), "nothing was written");
}

#[test]
fn probe_confirm_pause_without_confirm_is_a_usage_error_not_ignored() {
    let s = serve(|c| c.https_port = None);
    let url = http_url(&s, "/");
    refused_by_target(
        &s,
        &[
            "probe",
            &url,
            "--max",
            "2",
            "--hold",
            "100ms",
            "--confirm-pause",
            "200ms",
        ],
        &["--confirm-pause", "--confirm"],
    );
    s.stop();
}

#[test]
fn probe_headers_with_nothing_to_send_are_a_usage_error_not_ignored() {
    let s = serve(|c| c.https_port = None);
    let url = http_url(&s, "/");
    refused_by_target(
        &s,
        &[
            "probe",
            &url,
            "--max",
            "2",
            "--hold",
            "100ms",
            "-H",
            "X-Test: 1",
        ],
        &["-H", "--request", "--keepalive"],
    );
    s.stop();
}

#[test]
fn subscription_lists_no_template_uses_are_usage_errors_not_ignored() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/ws");
    let base = ["ws", url.as_str(), "-c", "1", "-d", "300ms"];
    for (flag, placeholder) in [
        ("--exchanges", "{exchange}"),
        ("--channels", "{channel}"),
        ("--symbols", "{symbol}"),
    ] {
        // No template at all.
        refused_by_target(
            &s,
            &[&base[..], &[flag, "a,b"]].concat(),
            &[flag, placeholder, "--subscribe"],
        );
        // Templates that use the other two lists only.
        let template = SUB.replace(placeholder, "x");
        refused_by_target(
            &s,
            &[
                &base[..],
                &[
                    "--subscribe",
                    &template,
                    "--exchanges",
                    "e",
                    "--channels",
                    "c",
                    "--symbols",
                    "s",
                ],
            ]
            .concat(),
            &[flag, placeholder],
        );
    }
    s.stop();
}

#[test]
fn headers_the_upgrade_owns_are_one_usage_error_for_ws_and_probe() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/echo");
    for header in [
        "Connection: keep-alive",
        "connection: close",
        "Upgrade: h2c",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 8",
        "Sec-WebSocket-Accept: x",
        "Sec-WebSocket-Extensions: permessage-deflate",
    ] {
        let name = header.split(':').next().unwrap();
        let ws = refused_by_target(
            &s,
            &[
                "ws", &url, "-c", "1", "-d", "300ms", "--mode", "ping", "-H", header,
            ],
            &[name, "-H", "upgrade"],
        );
        let probe = refused_by_target(
            &s,
            &["probe", &url, "--max", "2", "--hold", "100ms", "-H", header],
            &[name],
        );
        assert_eq!(ws, probe, "one check, one message");
        // --ws on the built-in target (a path): the same check, the same line.
        let probe_ws = refused(
            &[
                "probe", "/echo", "--ws", "--max", "2", "--hold", "100ms", "-H", header,
            ],
            &[name],
        );
        assert_eq!(ws, probe_ws, "one check, one message");
    }
    s.stop();
}

#[test]
fn a_url_with_an_empty_host_is_a_usage_error_not_a_dns_lookup_of_its_path() {
    // Each would otherwise look up "path" (or fail on the credentials) as the host.
    for (cmd, url) in [
        ("http", "http:///path"),
        ("http", "https:///path"),
        ("http", "http:/path"),
        ("http", "http:path"),
        ("http", "http://user:s3cr3t@/path"),
        ("ws", "ws:///path"),
        ("ws", "wss:///path"),
        ("probe", "http:///path"),
        ("probe", "ws:///path"),
        ("probe", "wss:///path"),
    ] {
        let line = refused(&[cmd, url], &["no host"]);
        assert!(
            !line.contains("s3cr3t"),
            "credentials are not echoed: {line}"
        );
    }
}

#[test]
fn negative_durations_say_negative() {
    for args in [
        vec!["http", "http://127.0.0.1:9/", "-d", "-1s"],
        vec!["http", "http://127.0.0.1:9/", "--duration", "-2ms"],
        vec!["http", "http://127.0.0.1:9/", "--warmup", "-1s"],
        vec!["http", "http://127.0.0.1:9/", "--timeout", "-1"],
        vec!["http", "http://127.0.0.1:9/", "--connect-timeout", "-5s"],
        vec!["http", "http://127.0.0.1:9/", "--stages", "5@-1s+1s"],
        vec!["ws", "ws://127.0.0.1:9/", "-d", "-1s"],
        vec!["ws", "ws://127.0.0.1:9/", "--stale-after", "-1s"],
        vec!["ws", "ws://127.0.0.1:9/", "--backoff-base", "-10ms"],
        vec!["probe", "http://127.0.0.1:9/", "--hold", "-1s"],
        vec!["serve", "--for", "-1s"],
        vec!["serve", "--ws-drop-every", "-1s"],
    ] {
        let r = connbench_raw(&args);
        assert_usage_error(&r, "negative");
        assert!(
            !r.stderr.contains("unexpected argument"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

#[test]
fn checks_that_ran_after_dns_or_the_target_start_now_run_first() {
    let ws = format!("ws://{UNRESOLVABLE}/");
    let http = format!("http://{UNRESOLVABLE}/");
    let https = format!("https://{UNRESOLVABLE}/");
    for (args, needle) in [
        (vec!["ws", &ws, "--subscribe", "{symbol}"], "--symbols"),
        (vec!["ws", &ws, "--ts-field", "a..b"], "--ts-field"),
        (vec!["ws", &ws, "--seq-field", "a..b"], "--seq-field"),
        (
            vec!["ws", &ws, "--seq-field", "seq", "--stream-field", "a..b"],
            "--stream-field",
        ),
        (vec!["ws", &ws, "-H", "Connection: close"], "Connection"),
        (vec!["ws", &ws, "-H", "Content-Length: 5"], "Content-Length"),
        (vec!["http", &http, "-m", "GET POST"], "method"),
        (vec!["http", &http, "-H", "Bad Name: x"], "header name"),
        (vec!["http", &https, "--ca", "/nonexistent/ca.pem"], "--ca"),
        (vec!["http", &https, "--sni", "not a name"], "--sni"),
    ] {
        refused(&args, &[needle]);
    }
}

#[test]
fn serve_errors_name_flags_not_internal_fields() {
    let base = ["serve", "--http", "0", "--https", "0", "--for", "300ms"];
    for (extra, flag, internal) in [
        (
            vec!["--ws-drop-every", "0s"],
            "--ws-drop-every",
            "ws_drop_every",
        ),
        (
            vec!["--ws-stall-after", "0s"],
            "--ws-stall-after",
            "ws_stall_after",
        ),
        (
            vec!["--ws-ping-every", "0s"],
            "--ws-ping-every",
            "ws_ping_every",
        ),
        (
            vec!["--ws-ping-every", "1s", "--ws-pong-timeout", "0s"],
            "--ws-pong-timeout",
            "ws_pong_timeout",
        ),
        (
            vec!["--ws-pong-timeout", "1s"],
            "--ws-pong-timeout",
            "ws_pong_timeout",
        ),
        (
            vec!["--ws-drop-every", "9000h"],
            "--ws-drop-every",
            "ws_drop_every",
        ),
        (vec!["--ws-rate", "5000000"], "--ws-rate", "ws_rate"),
        (
            vec!["--stall-at", "9000h", "--stall-for", "1s"],
            "--stall-at",
            "http_stall",
        ),
    ] {
        let line = refused(&[&base[..], &extra[..]].concat(), &[flag]);
        assert!(!line.contains(internal), "{line}");
        assert!(!line.contains("configuration"), "{line}");
    }
}

#[test]
fn basic_and_bearer_values_of_any_header_are_redacted() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let secrets = [
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ",
        "b3ar3rs3cret",
        "l0wercas3basic",
    ];
    let r = connbench_raw(&[
        "http",
        &url,
        "-c",
        "1",
        "-n",
        "5",
        "-H",
        "X-Upstream: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "-H",
        "X-Relay: BEARER b3ar3rs3cret",
        "--header=X-Hop:basic l0wercas3basic",
        "--json",
        "-",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON on stdout");
    assert_eq!(report["counters"]["responses"], 5);
    for secret in secrets {
        assert!(!r.stdout.contains(secret), "{secret} in the JSON report");
        assert!(!r.stderr.contains(secret), "{secret} in the text summary");
    }
    let headers = report["config"]["headers"].to_string();
    assert!(
        headers.contains("X-Upstream") && headers.contains("[redacted]"),
        "{headers}"
    );
}

/// A run that must work: exit 0 and its report.
fn accepted(args: &[&str]) -> Run {
    let r = connbench(args);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    r
}

#[test]
fn every_refused_flag_is_accepted_where_it_applies() {
    let s = serve(|c| c.ws_rate = 100.0);
    let dir = TempDir::new("accepted");
    let ca = write_ca(&s, &dir);
    let ca = ca.to_str().unwrap();

    let echo = ws_url(&s, "/echo");
    let r = accepted(&[
        "ws",
        &echo,
        "-c",
        "1",
        "-d",
        "500ms",
        "--mode",
        "echo",
        "--send-rate",
        "40",
        "--message-size",
        "100",
        "--send-buffer",
        "7",
    ]);
    assert_eq!(r.f64("/ws/send_rate"), 40.0);
    assert_eq!(r.u64("/ws/message_size"), 100);
    assert_eq!(r.u64("/ws/send_buffer"), 7);
    assert!(r.u64("/phases/rtt/count") > 0);
    let r = accepted(&[
        "ws", &echo, "-c", "1", "-d", "500ms", "--mode", "echo", "-R", "40",
    ]);
    assert!(r.u64("/phases/rtt/count") > 0);

    let r = accepted(&[
        "ws",
        &echo,
        "-c",
        "1",
        "-d",
        "500ms",
        "--mode",
        "ping",
        "--ping-interval",
        "50ms",
    ]);
    assert_eq!(r.f64("/ws/ping_interval_s"), 0.05);
    assert!(r.u64("/ws/pings_sent") > 0);

    let stream = ws_url(&s, "/ws");
    let r = accepted(&[
        "ws",
        &stream,
        "-c",
        "1",
        "-d",
        "500ms",
        "--subscribe",
        SUB,
        "--exchanges",
        "e",
        "--channels",
        "c",
        "--symbols",
        "s",
        "--ts-field",
        "timestamp",
        "--ts-unit",
        "us",
        "--seq-field",
        "seq",
        "--stream-field",
        "stream",
        "--heartbeat",
        "ping",
        "--heartbeat-interval",
        "100ms",
        "-H",
        "Host: localhost",
        "-H",
        "X-Test: 1",
    ]);
    assert_eq!(r.u64("/ws/subscriptions_sent"), 1);
    assert_eq!(r.report()["ws"]["ts_unit"], "us");
    assert_eq!(r.report()["ws"]["ts_unit_inferred"], false);
    assert_eq!(r.report()["ws"]["stream_field"], "stream");
    assert_eq!(r.f64("/ws/heartbeat_interval_s"), 0.1);
    assert!(r.u64("/ws/pings_sent") > 0);
    // The built-in target's /ws fills --ts-field and --seq-field in: their companions apply.
    let r = accepted(&[
        "ws",
        "/ws",
        "-c",
        "1",
        "-d",
        "500ms",
        "--ts-unit",
        "us",
        "--stream-field",
        "stream",
        "--symbols",
        "ETHUSDT",
    ]);
    assert_eq!(r.report()["ws"]["ts_unit"], "us");
    assert!(r.report()["ws"]["subscriptions"][0]
        .as_str()
        .unwrap()
        .contains("ETHUSDT"));

    let https = https_url(&s, "/");
    let r = accepted(&[
        "http",
        &https,
        "-c",
        "1",
        "-n",
        "5",
        "--ca",
        ca,
        "--sni",
        "localhost",
        "--no-resume",
    ]);
    assert_eq!(r.u64("/responses/2xx"), 5);
    assert_eq!(r.report()["config"]["sni"], "localhost");
    let r = accepted(&["http", &https, "-c", "1", "-n", "5", "-k"]);
    assert_eq!(r.report()["insecure"], true);
    let r = accepted(&["http", "/", "--tls", "-c", "1", "-n", "5", "--no-resume"]);
    assert_eq!(r.u64("/phases/tls/count"), 1);
    let r = accepted(&[
        "ws",
        &wss_url(&s, "/echo"),
        "-c",
        "1",
        "-d",
        "300ms",
        "--mode",
        "ping",
        // Pings within the 300 ms, so the run measures round trips (else it exits 3).
        "--ping-interval",
        "50ms",
        "--ca",
        ca,
        "--sni",
        "localhost",
        "--no-resume",
    ]);
    assert_eq!(r.u64("/ws/connections_upgraded"), 1);

    let plain = http_url(&s, "/");
    let r = accepted(&[
        "probe",
        &plain,
        "--max",
        "3",
        "--hold",
        "100ms",
        "--settle",
        "50ms",
        "--confirm",
        "--confirm-pause",
        "100ms",
    ]);
    assert_eq!(r.u64("/probe/limit"), 3);
    for args in [
        vec!["probe", plain.as_str(), "--request", "-H", "X-Test: 1"],
        vec![
            "probe",
            plain.as_str(),
            "--keepalive",
            "1s",
            "-H",
            "X-Test: 1",
        ],
        vec!["probe", echo.as_str(), "-H", "X-Test: 1"],
        vec![
            "probe",
            &https,
            "--ca",
            ca,
            "--sni",
            "localhost",
            "--no-resume",
        ],
    ] {
        let r = accepted(
            &[
                &args[..],
                &["--max", "2", "--hold", "100ms", "--settle", "50ms"],
            ]
            .concat(),
        );
        assert_eq!(r.u64("/probe/limit"), 2, "{args:?}");
    }
    s.stop();

    let cert = dir.path("cert.pem");
    let out = connbench_raw(&[
        "serve",
        "--http",
        "0",
        "--https",
        "0",
        "--for",
        "300ms",
        "--max-conns",
        "5",
        "--over-limit",
        "429",
        "--ws-ping-every",
        "100ms",
        "--ws-pong-timeout",
        "50ms",
        "--cert-out",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("http "), "{}", out.stdout);
    assert!(std::fs::read_to_string(&cert)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
}
