//! The built-in target's connection-ending faults as `connbench serve` flags: `--over-limit
//! close` (a clean FIN right after accept) and `--ws-drop-mode rst` (the WebSocket drop as a TCP
//! reset). Each test starts `connbench serve` as a child process on port 0 and stops it by PID.

use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};

use crate::util::{assert_usage_error, bin, connbench_raw};

/// `connbench serve ARGS` in a child process; returns it and its plain HTTP address.
fn serve_cli(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--http", "0", "--no-https", "--for", "60s"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
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
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("serve exits");
    assert!(status.success(), "serve exit {status:?}");
}

#[test]
fn serve_over_limit_close_ends_the_extra_connection_with_a_fin() {
    let (child, addr) = serve_cli(&["--max-conns", "1", "--over-limit", "close"]);
    let timeout = Some(std::time::Duration::from_secs(10));
    let mut first = std::net::TcpStream::connect(&addr).expect("connect");
    first.set_read_timeout(timeout).expect("timeout");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = first.read(&mut buf).expect("first is answered");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let mut extra = std::net::TcpStream::connect(&addr).expect("connect");
    extra.set_read_timeout(timeout).expect("timeout");
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    // A clean EOF, no byte and no reset.
    assert_eq!(extra.read(&mut buf).expect("EOF, not a reset"), 0);
    drop((first, extra));
    stop(child);
}

#[test]
fn serve_ws_drop_mode_rst_resets_and_fin_closes() {
    use tungstenite::error::ProtocolError;
    for mode in ["rst", "fin"] {
        let (child, addr) = serve_cli(&[
            "--ws-rate",
            "100",
            "--ws-drop-every",
            "200ms",
            "--ws-drop-mode",
            mode,
        ]);
        let sock = std::net::TcpStream::connect(&addr).expect("connect");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let (mut ws, _) = tungstenite::client(format!("ws://{addr}/ws"), sock).expect("upgrade");
        ws.send(tungstenite::Message::text(
            r#"{"op":"subscribe","symbol":"X"}"#,
        ))
        .expect("subscribe");
        // Read (bounded by the read timeout) until the drop ends the connection.
        let mut messages = 0;
        let err = loop {
            match ws.read() {
                Ok(m) => {
                    assert!(!m.is_close(), "--ws-drop-mode {mode}: a close frame {m:?}");
                    messages += 1;
                    assert!(messages < 10_000, "--ws-drop-mode {mode}: no drop");
                }
                Err(e) => break e,
            }
        };
        stop(child);
        let reset = matches!(&err, tungstenite::Error::Io(e)
            if e.kind() == std::io::ErrorKind::ConnectionReset);
        let fin = matches!(
            &err,
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        );
        assert!(messages > 1, "--ws-drop-mode {mode}: data before the drop");
        assert_eq!(
            (reset, fin),
            (mode == "rst", mode == "fin"),
            "{mode}: {err}"
        );
    }
}

#[test]
fn serve_ws_drop_mode_needs_ws_drop_every() {
    let r = connbench_raw(&[
        "serve",
        "--http",
        "0",
        "--no-https",
        "--ws-drop-mode",
        "rst",
    ]);
    assert_usage_error(&r, "--ws-drop-every");
}
