//! `-v` end to end: what the first connections received, every WebSocket reconnection and each
//! threshold evaluation reach stderr, redacted, bounded, and only when asked.

use crate::util::{connbench, http_url, serve};

/// The `-v` lines of a run's stderr (they start with a time offset or `-v:`).
fn verbose_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("[+") || l.starts_with("-v:"))
        .collect()
}

#[test]
fn http_verbose_shows_the_first_reads_of_the_first_connections_and_each_threshold() {
    let s = serve(|_| {});
    let url = http_url(&s, "/bytes/10");
    let args = [
        "http",
        url.as_str(),
        "-c",
        "5",
        "-t",
        "1",
        "-d",
        "500ms",
        "--threshold",
        "ttfb.p99<10s",
    ];
    let quiet = connbench(&args);
    let mut with_v = args.to_vec();
    with_v.push("-v");
    let loud = connbench(&with_v);
    s.stop();
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(loud.code, 0, "{}", loud.stderr);
    assert!(verbose_lines(&quiet.stderr).is_empty(), "{}", quiet.stderr);
    let lines = verbose_lines(&loud.stderr);
    let received: Vec<&&str> = lines.iter().filter(|l| l.contains(": received ")).collect();
    // The first 3 connections, at most 2 reads each, whatever the run's length.
    assert!(!received.is_empty() && received.len() <= 6, "{lines:?}");
    for l in &received {
        assert!(
            ["conn 0:", "conn 1:", "conn 2:"]
                .iter()
                .any(|c| l.contains(c)),
            "{l}"
        );
        assert!(l.contains("HTTP/1.1 200"), "{l}");
        assert!(!l.contains('\r'), "escaped: {l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("-v: --threshold ttfb.p99<10s: measured ")
                && l.ends_with("→ PASS")),
        "{lines:?}"
    );
}

#[test]
fn ws_verbose_logs_each_reconnection_and_redacts_the_first_messages() {
    let s = serve(|c| c.ws_drop_every = Some(std::time::Duration::from_millis(300)));
    let url = format!("ws://{}/echo", s.http_addr().expect("plain port"));
    // The echo route sends the subscription back: its secret must not reach stderr.
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "2",
        "-t",
        "1",
        "-d",
        "1500ms",
        "--backoff-base",
        "50ms",
        "--backoff-cap",
        "100ms",
        "--subscribe",
        r#"{"op":"login","api_key":"k3y-s3cret"}"#,
        "-v",
    ]);
    s.stop();
    assert!(!r.stderr.contains("k3y-s3cret"), "{}", r.stderr);
    let lines = verbose_lines(&r.stderr);
    let reconnects: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("reconnecting in"))
        .collect();
    let counted = r.u64("/ws/reconnects_total");
    assert!(counted > 0, "the target dropped connections: {}", r.stdout);
    assert_eq!(
        reconnects.len() as u64,
        counted,
        "one line per reconnection: {lines:?}"
    );
    assert!(
        reconnects.iter().all(|l| l.contains("(attempt ")),
        "{reconnects:?}"
    );
    let upgrades: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("received") && l.contains("101"))
        .collect();
    assert!(
        !upgrades.is_empty(),
        "the 101 of the first connections: {lines:?}"
    );
    let messages: Vec<&&str> = lines.iter().filter(|l| l.contains(": message ")).collect();
    assert!(
        messages.iter().any(|l| l.contains("[redacted]")),
        "the echoed login, redacted: {lines:?}"
    );
}
