//! `--busy-poll` on `http` and `ws`, and `connbench floor`, end to end against the built-in
//! target (in this process on port 0, stopped by handle) or the one `floor` starts itself.
//!
//! No timing ratio is asserted (the machine is shared): the tests pin what was measured and
//! classified, with run lengths far beyond the deadlines they check.

use crate::util::{connbench, http_url, serve};

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
    // Every request waits 10 s for its answer; with --timeout 300ms over a 3 s run, a loop
    // whose timers fire counts several read timeouts, one that never looks at its timer table
    // counts none.
    let s = serve(|_| {});
    let url = http_url(&s, "/delay/10000000");
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "1",
        "-d",
        "3s",
        "--timeout",
        "300ms",
        "--busy-poll",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/counters/responses"), 0);
    let timeouts = r.u64("/errors/read_timeout");
    assert!(timeouts >= 3, "{timeouts} read timeouts in 3 s at 300 ms");
    assert_eq!(r.u64("/errors/total"), timeouts, "{}", r.report()["errors"]);
    assert_eq!(r.report()["config"]["busy_poll"], true);
}

#[test]
fn busy_poll_keeps_the_rate_schedule_without_its_timerfd() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "-R",
        "200",
        "-d",
        "2s",
        "-c",
        "2",
        "--busy-poll",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["config"]["busy_poll"], true);
    // 400 due in 2 s: sent or counted unsent, and (almost) all of them sent.
    let sent = r.u64("/counters/requests");
    let unsent = r.u64("/rate/unsent");
    let due = (200.0 * r.f64("/duration_s")).round() as u64;
    assert!(
        (sent + unsent).abs_diff(due) <= 4 + due / 100,
        "{sent} + {unsent} vs {due}"
    );
    assert!(sent >= 300, "{sent} of {due} sent");
    assert!(r.u64("/phases/send_lag/count") >= sent);
}

#[test]
fn busy_poll_runs_websocket_echo() {
    let s = serve(|_| {});
    let url = format!("ws://{}/echo", s.http_addr().unwrap());
    let r = connbench(&[
        "ws",
        &url,
        "--mode",
        "echo",
        "--send-rate",
        "200",
        "-c",
        "1",
        "-d",
        "2s",
        "--busy-poll",
        "--no-pin",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["config"]["busy_poll"], true);
    assert_so_busy_poll_reported(&r);
    let rtt = r.u64("/phases/rtt/count");
    assert!(rtt >= 300, "{rtt} echoes of 400 sent");
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
