//! The decoders end to end: responses with many header fields, malformed heads, and every byte
//! split from the next (the target's `drip` fault). The error class never depends on how TCP
//! split the bytes, and a protocol error says why, in the report and on stderr.

use std::time::Duration;

use crate::util::{assert_usage_error, connbench, connbench_raw, http_url, serve};
use connbench::serve::ServerHandle;
use serde_json::json;

const FIELDS_OVER: &str = "response head has more than 1024 header fields";
const GARBAGE_REASON: &str = "malformed response head: invalid header name";

/// Every failure of a run against `/garbage`: protocol, for the garbage's reason, none of them
/// an EOF or a timeout (the run lasts 2 s, its timeout is 30 s: a misclassified failure would
/// show as eof_mid_response, or not at all).
fn assert_garbage_is_protocol(r: &crate::util::Run, how: &str) {
    // No response at all: nothing measured (issue 9, "Pass/fail"), exit 3.
    assert_eq!(r.code, 3, "{how}: {}", r.stderr);
    let protocol = r.u64("/errors/protocol");
    assert!(protocol >= 2, "{how}: {}", r.report()["errors"]);
    assert_eq!(
        r.u64("/errors/total"),
        protocol,
        "{how}: {}",
        r.report()["errors"]
    );
    assert_eq!(r.u64("/counters/responses"), 0, "{how}");
    assert_eq!(
        r.report()["errors"]["reasons"],
        json!({ "protocol": [{ "reason": GARBAGE_REASON, "count": protocol }] }),
        "{how}"
    );
}

fn garbage_run(s: &ServerHandle) -> crate::util::Run {
    let url = http_url(s, "/garbage");
    connbench(&[
        "http",
        &url,
        "-c",
        "1",
        "-t",
        "1",
        "--no-pin",
        "-d",
        "2s",
        "--timeout",
        "30s",
    ])
}

#[test]
fn a_malformed_head_dripped_byte_by_byte_is_protocol_not_eof() {
    // Regression (issue 7, point 4): the same malformed, unfinished head was `protocol` when it
    // arrived whole and `eof_mid_response` when it arrived a byte at a time (the decoder said
    // "not yet" until the server's close). `/garbage` closes after its bytes; `drip` writes each
    // byte alone, 1 ms apart.
    let whole = serve(|_| {});
    let r = garbage_run(&whole);
    whole.stop();
    assert_garbage_is_protocol(&r, "whole");

    let dripped = serve(|c| c.drip = Some(Duration::from_millis(1)));
    let r = garbage_run(&dripped);
    dripped.stop();
    assert_garbage_is_protocol(&r, "byte by byte");
    assert!(
        r.stderr.contains(&format!(
            "connbench: protocol: {} ({GARBAGE_REASON})",
            r.u64("/errors/protocol")
        )),
        "the reason is on stderr: {}",
        r.stderr
    );
}

#[test]
fn responses_with_many_header_fields_frame_and_past_1024_say_why() {
    // Regression (issue 7, point 3): 85 header fields failed as `protocol` (a 64-slot array).
    let s = serve(|_| {});
    for fields in ["85", "1024"] {
        let url = http_url(&s, &format!("/headers/{fields}"));
        let r = connbench(&["http", &url, "-c", "2", "-n", "200", "--no-pin", "-t", "1"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            r.u64("/responses/2xx"),
            200,
            "{fields}: {}",
            r.report()["errors"]
        );
        assert_eq!(r.u64("/errors/total"), 0, "{fields}");
        assert_eq!(r.report()["errors"]["reasons"], json!({}), "{fields}");
    }
    let url = http_url(&s, "/headers/1025");
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "1",
        "-d",
        "1s",
        "--no-pin",
        "-t",
        "1",
        "--timeout",
        "30s",
    ]);
    s.stop();
    // Every response refused as `protocol`: nothing measured (issue 9, "Pass/fail"), exit 3.
    assert_eq!(r.code, 3, "{}", r.stderr);
    let protocol = r.u64("/errors/protocol");
    assert!(protocol >= 2, "{}", r.report()["errors"]);
    assert_eq!(r.u64("/errors/total"), protocol);
    assert_eq!(
        r.report()["errors"]["reasons"],
        json!({ "protocol": [{ "reason": FIELDS_OVER, "count": protocol }] })
    );
    // The text summary and stderr say it too, not just a count.
    let line = format!("protocol: {protocol} ({FIELDS_OVER})");
    assert!(r.stdout.contains(&line), "summary: {}", r.stdout);
    assert!(
        r.stderr.contains(&format!("connbench: {line}")),
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn websocket_upgrade_and_frames_dripped_byte_by_byte_decode() {
    // The 101 and every frame arrive a byte at a time: nothing fails, messages arrive.
    let s = serve(|c| {
        c.ws_rate = 5.0;
        c.drip = Some(Duration::from_millis(1));
    });
    let url = format!("ws://{}/ws", s.http_addr().unwrap());
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "1",
        "-d",
        "2s",
        "--subscribe",
        r#"{"op":"subscribe","symbol":"BTCUSDT"}"#,
        "--seq-field",
        "seq",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/ws/connections_upgraded"), 1, "{}", r.report()["ws"]);
    assert!(r.u64("/ws/messages_in") >= 1, "{}", r.report()["ws"]);
    assert_eq!(r.u64("/errors/total"), 0, "{}", r.report()["errors"]);
    assert_eq!(r.u64("/ws/seq_gaps"), 0);
}

#[test]
fn serve_drip_flag_writes_a_byte_at_a_time() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(crate::util::bin())
        .args([
            "serve",
            "--http",
            "0",
            "--no-https",
            "--for",
            "60s",
            "--drip",
            "2ms",
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
    // "HTTP/1.1 204 No Content\r\nServer: connbench\r\n\r\n": 46 bytes, so at least 45 gaps
    // of 2 ms between the first byte and the last.
    let r = connbench(&["http", &format!("{http}status/204"), "-n", "3", "-c", "1"]);
    let garbage = connbench(&[
        "http",
        &format!("{http}garbage"),
        "-c",
        "1",
        "-d",
        "1s",
        "--timeout",
        "30s",
    ]);
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("serve exits");
    assert!(status.success(), "serve exit {status:?}");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/responses/2xx"), 3, "{}", r.report()["errors"]);
    let floor = 45 * 2_000_000;
    assert!(
        r.u64("/phases/total/min") >= floor,
        "total {} ns: the bytes were not dripped",
        r.u64("/phases/total/min")
    );
    assert!(
        garbage.u64("/errors/protocol") >= 1,
        "{}",
        garbage.report()["errors"]
    );
    assert_eq!(
        garbage.u64("/errors/total"),
        garbage.u64("/errors/protocol"),
        "{}",
        garbage.report()["errors"]
    );

    let zero = connbench_raw(&["serve", "--http", "0", "--no-https", "--drip", "0ms"]);
    assert_usage_error(&zero, "--drip must be longer than 0");
}
