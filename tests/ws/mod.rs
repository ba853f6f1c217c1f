//! `connbench ws` end to end against the built-in target's WebSocket routes, with its faults.

use crate::util::{assert_usage_error, connbench, connbench_raw, serve, write_ca, TempDir};
use connbench::serve::ServerHandle;

fn ws_url(s: &ServerHandle, path: &str) -> String {
    format!("ws://{}{}", s.http_addr().unwrap(), path)
}

const SUB: &str =
    r#"{"op":"subscribe","exchange":"{exchange}","channel":"{channel}","symbol":"{symbol}"}"#;

#[test]
fn stream_mode_receives_messages_and_records_latency() {
    let s = serve(|c| c.ws_rate = 200.0);
    let url = ws_url(&s, "/ws");
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "4",
        "-d",
        "1500ms",
        "--subscribe",
        SUB,
        "--exchanges",
        "binance,bybit",
        "--channels",
        "trades",
        "--symbols",
        "BTCUSDT",
        "--ts-field",
        "timestamp",
        "--seq-field",
        "seq",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ws = &r.report()["ws"];
    assert_eq!(ws["connections_upgraded"], 4, "{ws}");
    assert_eq!(
        ws["subscriptions_sent"], 8,
        "two subscriptions per connection"
    );
    assert_eq!(stats.ws_subscriptions, 8);
    assert!(r.u64("/ws/messages_in") > 400, "{ws}");
    assert_eq!(r.u64("/phases/upgrade/count"), 4);
    assert_eq!(r.u64("/phases/first_message/count"), 4);
    assert!(r.u64("/phases/latency/count") > 400);
    assert_eq!(ws["ts_unit"], "us", "µs timestamps are inferred");
    assert_eq!(r.u64("/ws/seq_gaps"), 0);
    assert_eq!(r.u64("/errors/total"), 0);
    assert_eq!(r.u64("/ws/reconnects_total"), 0);
    // one-way latency on loopback: well under a second
    assert!(r.u64("/phases/latency/p50") < 1_000_000_000);
    assert!(
        r.stdout.contains("synchronized"),
        "the caveat is printed: {}",
        r.stdout
    );
}

#[test]
fn gaps_are_counted_exactly() {
    // Every 5th message skips a sequence number; the server then goes quiet, so every message
    // it sent has arrived when the client stops.
    let s = serve(|c| {
        c.ws_rate = 100.0;
        c.ws_gap_every = Some(5);
        c.ws_stall_after = Some(std::time::Duration::from_millis(700));
    });
    let url = ws_url(&s, "/ws");
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "3",
        "-d",
        "1500ms",
        "--subscribe",
        r#"{"op":"subscribe","symbol":"ETHUSDT"}"#,
        "--seq-field",
        "seq",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(stats.ws_gaps > 0);
    assert_eq!(r.u64("/ws/seq_gaps"), stats.ws_gaps, "{}", r.report()["ws"]);
    assert_eq!(
        r.u64("/ws/seq_missing"),
        stats.ws_gaps,
        "one number skipped per gap"
    );
}

#[test]
fn drops_reconnect_and_resubscribe() {
    let s = serve(|c| {
        c.ws_rate = 200.0;
        c.ws_drop_every = Some(std::time::Duration::from_millis(300));
        c.ws_gap_every = Some(7);
    });
    let url = ws_url(&s, "/ws");
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "4",
        "-d",
        "2s",
        "--subscribe",
        SUB,
        "--exchanges",
        "binance",
        "--channels",
        "trades",
        "--symbols",
        "BTCUSDT",
        "--seq-field",
        "seq",
        "--backoff-base",
        "20ms",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ws = &r.report()["ws"];
    let abnormal = r.u64("/ws/reconnects/abnormal_close");
    assert!(abnormal >= 4, "{ws}");
    assert_eq!(r.u64("/errors/ws_abnormal_close"), abnormal);
    // every replacement that upgraded sent its subscription again
    let upgraded = r.u64("/ws/connections_upgraded");
    assert_eq!(r.u64("/ws/resubscribed"), upgraded - 4, "{ws}");
    assert_eq!(r.u64("/ws/subscriptions_sent"), upgraded);
    assert_eq!(r.u64("/phases/outage/count"), upgraded - 4);
    assert_eq!(r.u64("/phases/resubscribe/count"), upgraded - 4);
    assert!(
        r.u64("/ws/seq_restarts") > 0,
        "a new connection starts a new numbering"
    );
    // Gaps the server revealed; only messages in flight when the client stopped (at most one
    // per connection) may be missing from the client's count.
    let gaps = r.u64("/ws/seq_gaps");
    assert!(
        gaps <= stats.ws_gaps && gaps + 4 >= stats.ws_gaps,
        "client {gaps} server {}",
        stats.ws_gaps
    );
}

#[test]
fn stale_connections_are_replaced() {
    let s = serve(|c| {
        c.ws_rate = 100.0;
        c.ws_stall_after = Some(std::time::Duration::from_millis(200));
    });
    let url = ws_url(&s, "/ws");
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "2",
        "-d",
        "1500ms",
        "--subscribe",
        SUB,
        "--symbols",
        "X",
        "--exchanges",
        "e",
        "--channels",
        "c",
        "--stale-after",
        "250ms",
        "--backoff-base",
        "10ms",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.u64("/ws/reconnects/stale") >= 2, "{}", r.report()["ws"]);
    assert_eq!(r.u64("/errors/stale"), r.u64("/ws/reconnects/stale"));
    assert!(r.u64("/ws/resubscribed") >= 2);
}

#[test]
fn server_pings_are_answered_and_the_connection_stays() {
    let s = serve(|c| {
        c.ws_rate = 20.0;
        c.ws_ping_every = Some(std::time::Duration::from_millis(100));
        // A loaded machine may hold the client off the CPU for longer than one ping interval:
        // the deadline is explicit and far, so only a pong that never comes fails.
        c.ws_pong_timeout = Some(std::time::Duration::from_secs(5));
    });
    let url = ws_url(&s, "/ws");
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "3",
        "-d",
        "1500ms",
        "--subscribe",
        SUB,
        "--symbols",
        "X",
        "--exchanges",
        "e",
        "--channels",
        "c",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.u64("/ws/pings_answered") >= 3 * 10,
        "{}",
        r.report()["ws"]
    );
    assert_eq!(stats.ws_pong_timeouts, 0);
    assert_eq!(r.u64("/ws/reconnects_total"), 0);
    assert_eq!(r.u64("/ws/connections_upgraded"), 3);
}

#[test]
fn a_plain_http_answer_is_an_upgrade_error() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/");
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "2",
        "-d",
        "500ms",
        "--backoff-base",
        "50ms",
    ]);
    s.stop();
    // The run ends and reports; no connection was upgraded, so it measured nothing: exit 3.
    assert_eq!(
        r.code, 3,
        "a failing connection never aborts the run: {}",
        r.stderr
    );
    let rejected = r.u64("/errors/upgrade_rejected");
    assert!(rejected >= 2);
    assert_eq!(r.u64("/ws/connections_upgraded"), 0);
    // the status of the answer is kept: the built-in target says 200 on /
    assert_eq!(r.u64("/responses/2xx"), rejected);
    assert!(
        r.stdout.contains("upgrade answered without 101"),
        "{}",
        r.stdout
    );
}

#[test]
fn echo_mode_times_round_trips_and_buffers_while_down() {
    let s = serve(|c| c.ws_drop_every = Some(std::time::Duration::from_millis(400)));
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "echo",
        "--send-rate",
        "200",
        "-c",
        "2",
        "-d",
        "1500ms",
        "--backoff-base",
        "30ms",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rtt = r.u64("/phases/rtt/count");
    assert!(rtt > 200, "{}", r.report()["ws"]);
    assert!(r.u64("/ws/messages_out") > 200);
    assert!(r.u64("/ws/reconnects/abnormal_close") >= 2);
    assert!(
        r.u64("/ws/buffered_sent") > 0,
        "messages owed during outages are sent after reconnecting"
    );
    // a one-message buffer drops the rest
    let s = serve(|c| c.ws_drop_every = Some(std::time::Duration::from_millis(300)));
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "echo",
        "--send-rate",
        "500",
        "-c",
        "1",
        "-d",
        "1s",
        "--backoff-base",
        "50ms",
        "--send-buffer",
        "1",
    ]);
    s.stop();
    assert!(r.u64("/ws/buffer_dropped") > 0, "{}", r.report()["ws"]);
}

#[test]
fn ping_mode_times_pongs() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "ping",
        "--ping-interval",
        "50ms",
        "-c",
        "2",
        "-d",
        "1s",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.u64("/ws/pings_sent") >= 20);
    assert!(r.u64("/ws/pongs_received") >= 20);
    assert!(r.u64("/phases/rtt/count") >= 20);
}

#[test]
fn wss_with_ca_times_tls_and_upgrade() {
    let s = serve(|c| c.ws_rate = 100.0);
    let dir = TempDir::new("wss");
    let ca = write_ca(&s, &dir);
    let url = format!("wss://{}/ws", s.https_addr().unwrap());
    let r = connbench(&[
        "ws",
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "-c",
        "2",
        "-d",
        "1s",
        "--subscribe",
        SUB,
        "--symbols",
        "X",
        "--exchanges",
        "e",
        "--channels",
        "c",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/phases/tls/count"), 2);
    assert_eq!(r.u64("/phases/upgrade/count"), 2);
    assert!(r.u64("/ws/messages_in") > 50);
    assert!(r.report()["tls"]["version"].is_string());
}

#[test]
fn retries_run_out_against_a_dead_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let started = std::time::Instant::now();
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "2",
        "-d",
        "20s",
        "--max-retries",
        "3",
        "--backoff-base",
        "10ms",
    ]);
    // Nothing listens: nothing measured (issue 9, "Pass/fail"), exit 3.
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.u64("/ws/retries_exhausted"), 2);
    assert_eq!(
        r.u64("/errors/connect_refused"),
        2 * 4,
        "first try plus 3 retries each"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the run ends when every slot gave up"
    );
}

#[test]
fn the_reconnect_budget_limits_reconnects() {
    let s = serve(|c| c.ws_drop_every = Some(std::time::Duration::from_millis(100)));
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "1",
        "-d",
        "1500ms",
        "--backoff-base",
        "1ms",
        "--reconnect-budget",
        "2/1m",
    ]);
    s.stop();
    // A stream from /echo carries no data message: nothing measured (issue 9), exit 3.
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        r.u64("/ws/connections_upgraded"),
        3,
        "the first connection plus 2 budgeted reconnects: {}",
        r.report()["ws"]
    );
}

#[test]
fn ws_bad_input_exits_2() {
    assert_usage_error(&connbench_raw(&["ws", "http://127.0.0.1:9/"]), "ws://");
    assert_usage_error(
        &connbench_raw(&["ws", "ws://127.0.0.1:9/", "--ts-unit", "hours"]),
        "--ts-unit",
    );
    assert_usage_error(
        &connbench_raw(&["ws", "ws://127.0.0.1:9/", "--subscribe", "{symbol}"]),
        "--symbols",
    );
    assert_usage_error(
        &connbench_raw(&["ws", "ws://127.0.0.1:9/", "--reconnect-budget", "lots"]),
        "--reconnect-budget",
    );
    assert_usage_error(
        &connbench_raw(&["ws", "ws://127.0.0.1:9/", "--heartbeat", "shout"]),
        "--heartbeat",
    );
    assert_usage_error(
        &connbench_raw(&["ws", "ws://127.0.0.1:9/", "--ts-field", "a..b"]),
        "--ts-field",
    );
}

#[test]
fn the_builtin_websocket_target_is_the_default() {
    let r = connbench(&["ws", "-c", "2", "-d", "1s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["target"]["builtin"], true);
    assert!(r.u64("/ws/messages_in") > 0);
    assert!(r.u64("/phases/latency/count") > 0);
}

#[test]
fn secrets_in_subscriptions_and_headers_are_redacted() {
    let s = serve(|c| c.ws_rate = 50.0);
    let url = ws_url(&s, "/ws?token=qu3rys3cret");
    let login = r#"{"op":"subscribe","args":["trades.BTCUSDT"],"apiKey":"k3ys3cret","signature":"s1gs3cret"}"#;
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "1",
        "-d",
        "500ms",
        "--subscribe",
        login,
        "-H",
        "X-MBX-APIKEY: h3ads3cret",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.u64("/ws/messages_in") > 0,
        "the subscription itself was sent unredacted"
    );
    let json = r.report().to_string();
    for secret in ["qu3rys3cret", "k3ys3cret", "s1gs3cret", "h3ads3cret"] {
        assert!(!json.contains(secret), "{secret} in JSON");
        assert!(!r.stdout.contains(secret), "{secret} in stdout");
        assert!(!r.stderr.contains(secret), "{secret} in stderr");
    }
    assert!(json.contains("trades.BTCUSDT"));
}

#[test]
fn client_heartbeats_are_sent_and_answered() {
    let s = serve(|c| c.ws_rate = 0.0);
    let url = ws_url(&s, "/ws");
    // A JSON heartbeat (Bybit style): the target answers {"op":"pong"}.
    let text = connbench(&[
        "ws",
        &url,
        "-c",
        "1",
        "-d",
        "1s",
        "--heartbeat",
        r#"text:{"op":"ping"}"#,
        "--heartbeat-interval",
        "100ms",
    ]);
    // A protocol ping heartbeat: pongs come back and give round trips.
    let ping = connbench(&[
        "ws",
        &url,
        "-c",
        "1",
        "-d",
        "1s",
        "--heartbeat",
        "ping",
        "--heartbeat-interval",
        "100ms",
    ]);
    s.stop();
    // Heartbeat replies are not data, and `ws_rate` 0 sends none: nothing measured, exit 3.
    assert_eq!(text.code, 3, "{}", text.stderr);
    assert_eq!(ping.code, 3, "{}", ping.stderr);
    let out = text.u64("/ws/messages_out");
    assert!(
        (6..=12).contains(&out),
        "about one heartbeat per 100 ms: {out}"
    );
    assert_eq!(
        text.u64("/ws/messages_in"),
        out,
        "each answered with a pong message"
    );
    assert_eq!(text.report()["ws"]["heartbeat"], r#"text:{"op":"ping"}"#);
    assert!(ping.u64("/ws/pings_sent") >= 6);
    assert!(ping.u64("/ws/pongs_received") + 1 >= ping.u64("/ws/pings_sent"));
    assert!(ping.u64("/phases/rtt/count") >= 6);
}

#[test]
fn echo_at_a_constant_rate_corrects_for_outages() {
    // Open loop: messages due while a connection is down are sent after it comes back, and
    // their latency from the intended send time includes the outage; the round trip from the
    // actual send does not.
    let s = serve(|c| c.ws_drop_every = Some(std::time::Duration::from_millis(500)));
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "echo",
        "-R",
        "400",
        "-c",
        "2",
        "-d",
        "3s",
        "--backoff-base",
        "200ms",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sent = r.u64("/phases/send_lag/count") as f64 / r.f64("/duration_s");
    assert!((sent - 400.0).abs() < 40.0, "asked 400 msg/s, sent {sent}");
    assert_eq!(r.f64("/rate/asked_per_s"), 400.0);
    assert!(r.u64("/ws/buffered_sent") > 0);
    // Each message's corrected latency is its round trip plus its wait: the outages show in
    // corrected, while the typical round trip stays short. (The tail of the round trip is the
    // machine's: a CI box with 15 runnable threads put rtt p99 at 114 ms, so only p50 is
    // bounded.)
    let corrected = r.u64("/phases/corrected/p99");
    let rtt_p50 = r.u64("/phases/rtt/p50");
    let rtt_p99 = r.u64("/phases/rtt/p99");
    assert!(corrected >= 30_000_000, "corrected p99 {corrected}");
    assert!(rtt_p50 < 30_000_000, "rtt p50 {rtt_p50}");
    assert!(
        corrected > rtt_p99,
        "corrected p99 {corrected} must exceed rtt p99 {rtt_p99}"
    );
    assert!(r.stdout.contains("echo rate"), "{}", r.stdout);
}

#[test]
fn echo_message_k_is_due_at_k_over_rate_not_one_interval_later() {
    // Issue 7 point 5: message k went out at (k+1)/rate while its intended time said k/rate, so
    // every send lag was at least one interval (100 ms here). Due at k/rate, the lag is the
    // client's timer wake-up: far below half an interval even on a loaded machine.
    let s = serve(|_| {});
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "echo",
        "--send-rate",
        "10",
        "-c",
        "2",
        "-d",
        "2s",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let n = r.u64("/phases/send_lag/count");
    // 2 connections × 10/s × 2 s, messages 0..=20 of each schedule
    assert!((36..=44).contains(&n), "{n} messages released");
    let lag = r.u64("/phases/send_lag/p50");
    assert!(
        lag < 50_000_000,
        "send lag p50 {lag} ns: one interval too high"
    );
    // corrected = lag + round trip: not an interval above the round trip either
    let corrected = r.u64("/phases/corrected/p50");
    let rtt = r.u64("/phases/rtt/p50");
    assert!(corrected >= rtt, "corrected {corrected} < rtt {rtt}");
    assert!(
        corrected - rtt < 50_000_000,
        "corrected {corrected} rtt {rtt}"
    );
    // nothing was owed: the first message of each connection is not an outage
    assert_eq!(r.u64("/ws/buffered_sent"), 0, "{}", r.report()["ws"]);
}

#[test]
fn a_stalled_feed_answering_text_heartbeats_is_still_stale() {
    // Issue 7 point 6: the stalled feed keeps answering {"op":"ping"} (and text ping); those
    // replies are not data, so --stale-after must still fire. Heartbeats every 50 ms would
    // otherwise keep a 300 ms staleness window fresh forever.
    for heartbeat in [r#"text:{"op":"ping"}"#, "text:ping"] {
        let s = serve(|c| {
            c.ws_rate = 100.0;
            c.ws_stall_after = Some(std::time::Duration::from_millis(200));
        });
        let url = ws_url(&s, "/ws");
        let r = connbench(&[
            "ws",
            &url,
            "-c",
            "2",
            "-d",
            "2s",
            "--subscribe",
            SUB,
            "--symbols",
            "X",
            "--exchanges",
            "e",
            "--channels",
            "c",
            "--heartbeat",
            heartbeat,
            "--heartbeat-interval",
            "50ms",
            "--stale-after",
            "300ms",
            "--backoff-base",
            "10ms",
        ]);
        s.stop();
        assert_eq!(r.code, 0, "{}", r.stderr);
        let ws = &r.report()["ws"];
        assert!(r.u64("/ws/reconnects/stale") >= 2, "{heartbeat}: {ws}");
        assert_eq!(r.u64("/errors/stale"), r.u64("/ws/reconnects/stale"));
        // the replies were seen and told apart from data
        assert!(r.u64("/ws/pongs_received") >= 4, "{heartbeat}: {ws}");
        assert!(r.u64("/ws/pings_sent") >= r.u64("/ws/pongs_received"));
    }
}

#[test]
fn a_server_that_stops_answering_pings_is_detected_by_the_pong_timeout() {
    // Issue 7 point 6: --heartbeat ping had no pong timeout. The server keeps streaming data
    // (so staleness cannot be what fires) but never pongs.
    let s = serve(|c| {
        c.ws_rate = 100.0;
        c.ws_ignore_pings = true;
    });
    let url = ws_url(&s, "/ws");
    let args = |timeout: Option<&'static str>| {
        let mut v = vec![
            "ws",
            "-c",
            "2",
            "-d",
            "2s",
            "--subscribe",
            r#"{"op":"subscribe","symbol":"X"}"#,
            "--heartbeat",
            "ping",
            "--heartbeat-interval",
            "100ms",
            "--stale-after",
            "30s",
            "--backoff-base",
            "10ms",
        ];
        if let Some(t) = timeout {
            v.extend(["--pong-timeout", t]);
        }
        v
    };
    let mut a = args(None);
    a.insert(1, &url);
    // default: the pong is due before the next ping (one heartbeat interval)
    let r = connbench(&a);
    let mut a = args(Some("30s"));
    a.insert(1, &url);
    let patient = connbench(&a);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ws = &r.report()["ws"];
    let timeouts = r.u64("/errors/pong_timeout");
    assert!(timeouts >= 2, "{ws}");
    assert_eq!(r.u64("/ws/reconnects/pong_timeout"), timeouts);
    assert_eq!(r.u64("/errors/stale"), 0, "data kept flowing: {ws}");
    assert_eq!(r.u64("/ws/pongs_received"), 0);
    assert!(r.u64("/ws/messages_in") > 50, "{ws}");
    assert!(r.stdout.contains("pong_timeout"), "{}", r.stdout);
    // --pong-timeout 30s: the same silence is tolerated for the whole 2 s run
    assert_eq!(patient.code, 0, "{}", patient.stderr);
    assert_eq!(patient.u64("/errors/pong_timeout"), 0);
    assert_eq!(patient.u64("/ws/reconnects_total"), 0);
    assert!(patient.u64("/ws/pings_sent") >= 2);
    assert_eq!(patient.report()["ws"]["pong_timeout_s"], 30.0);
}

#[test]
fn pong_timeout_is_a_usage_error_without_protocol_pings() {
    assert_usage_error(
        &connbench_raw(&["ws", "ws://127.0.0.1:9/", "--pong-timeout", "1s"]),
        "--pong-timeout",
    );
    assert_usage_error(
        &connbench_raw(&[
            "ws",
            "ws://127.0.0.1:9/",
            "--heartbeat",
            "text:ping",
            "--pong-timeout",
            "1s",
        ]),
        "--pong-timeout",
    );
    assert_usage_error(
        &connbench_raw(&[
            "ws",
            "ws://127.0.0.1:9/",
            "--heartbeat",
            "ping",
            "--pong-timeout",
            "0s",
        ]),
        "--pong-timeout",
    );
}

#[test]
fn first_message_is_not_a_1ns_artefact_when_it_arrives_with_the_101() {
    // Issue 7 point 8: the greeting leaves in the same write as the 101, so the client reads
    // both at the same instant. first_message runs from the upgrade request's first byte
    // written to the first data message received: never shorter than the upgrade itself.
    let s = serve(|c| {
        c.ws_rate = 0.0;
        c.ws_greeting = Some(r#"{"event":"hello"}"#.into());
    });
    let url = ws_url(&s, "/ws");
    let r = connbench(&["ws", &url, "-c", "3", "-d", "700ms"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/phases/upgrade/count"), 3);
    assert_eq!(r.u64("/phases/first_message/count"), 3);
    assert_eq!(r.u64("/ws/messages_in"), 3, "one greeting each");
    // per connection first_message ≥ upgrade, so every order statistic is too
    for q in ["min", "p50", "max"] {
        let first = r.u64(&format!("/phases/first_message/{q}"));
        let upgrade = r.u64(&format!("/phases/upgrade/{q}"));
        assert!(
            first >= upgrade,
            "{q}: first_message {first} < upgrade {upgrade}"
        );
    }
    // a loopback upgrade is tens of µs at least; 1 ns was the artefact
    assert!(r.u64("/phases/first_message/min") > 1_000);
}

#[test]
fn serve_greeting_and_no_pong_flags_reach_the_target() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(crate::util::bin())
        .args([
            "serve",
            "--http",
            "0",
            "--no-https",
            "--for",
            "60s",
            "--ws-no-pong",
            "--ws-greeting",
            r#"{"event":"hello"}"#,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let http = lines
        .by_ref()
        .take(10)
        .map_while(Result::ok)
        .find(|l| l.starts_with("http "))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .expect("http line");
    let url = format!("{}echo", http.replace("http://", "ws://"));
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "1",
        "-d",
        "1500ms",
        "--heartbeat",
        "ping",
        "--heartbeat-interval",
        "100ms",
        "--backoff-base",
        "10ms",
    ]);
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("serve exits");
    assert!(status.success(), "serve exit {status:?}");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ws = &r.report()["ws"];
    // --ws-no-pong: pings go unanswered and the connection is replaced
    assert!(r.u64("/errors/pong_timeout") >= 1, "{ws}");
    assert_eq!(r.u64("/ws/pongs_received"), 0, "{ws}");
    // --ws-greeting: every connection's first message is the greeting, after the upgrade
    let upgraded = r.u64("/ws/connections_upgraded");
    assert!(upgraded >= 2, "{ws}");
    assert_eq!(r.u64("/phases/first_message/count"), upgraded);
    assert!(r.u64("/phases/first_message/min") >= r.u64("/phases/upgrade/min"));
    assert_usage_error(
        &connbench_raw(&["serve", "--ws-greeting", &"x".repeat(70_000)]),
        "--ws-greeting",
    );
}

#[test]
fn echo_rate_warning_blames_the_server_for_its_drops() {
    // Issue 7 point 9: the client kept its schedule; the server dropped the connections and
    // the messages due meanwhile went out late.
    let s = serve(|c| c.ws_drop_every = Some(std::time::Duration::from_millis(500)));
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "echo",
        "-R",
        "400",
        "-c",
        "2",
        "-d",
        "3s",
        "--backoff-base",
        "400ms",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rate = &r.report()["rate"];
    assert_eq!(rate["behind"], "server", "{rate}");
    assert_eq!(rate["behind_cause"], "outages", "{rate}");
    assert!(r.u64("/ws/buffered_sent") > 0);
    assert!(
        r.stdout.contains("the server could not keep up"),
        "{}",
        r.stdout
    );
    // sent: echo messages written, near the asked rate
    let sent = r.f64("/rate/sent_per_s");
    assert!(sent > 300.0 && sent < 440.0, "{rate}");
}

#[test]
fn echo_rate_warning_blames_the_client_when_it_cannot_send_fast_enough() {
    // Issue 7 point 9: 5 million messages per second from one connection is more than any
    // client loop releases (at most 256 messages per pass): the client is behind its own
    // schedule whatever the echo server does.
    let s = serve(|_| {});
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws", &url, "--mode", "echo", "-R", "5000000", "-c", "1", "-d", "1s",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rate = &r.report()["rate"];
    assert_eq!(rate["behind"], "client", "{rate}");
    assert_eq!(rate["behind_cause"], "send_lag", "{rate}");
    assert!(r.u64("/rate/unsent") > 1_000_000, "{rate}");
    assert!(
        r.stdout.contains("the client could not keep up"),
        "{}",
        r.stdout
    );
}

/// Messages between the 80 KiB receive buffer and the 1 MiB `--max-message` default failed as
/// `ws_protocol` ("data outgrew the 80 KiB receive buffer"): a frame is decoded only once whole,
/// so the buffer must be able to hold the largest message accepted.
#[test]
fn websocket_messages_larger_than_80_kib_are_decoded_not_ws_protocol() {
    let s = serve(|_| {});
    let url = ws_url(&s, "/echo");
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "echo",
        "--message-size",
        "200000",
        "--send-rate",
        "5",
        "-d",
        "1500ms",
        "-c",
        "1",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/errors/total"), 0, "{}", r.report()["errors"]);
    assert!(
        r.u64("/phases/rtt/count") >= 3,
        "{}",
        r.report()["phases"]["rtt"]
    );
}
