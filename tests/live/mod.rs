//! The live progress line (`--progress`), end to end: the binary runs with its stderr on a pipe
//! (not a terminal), so `--progress always` prints one newline-ended line a second. Runs are a
//! few seconds long and the tests check what the lines say and in which order, never how many
//! there are (a busy machine may draw one fewer).

use super::util::{assert_usage_error, connbench, connbench_raw, http_url, serve};

/// The progress lines of a run's stderr (they start with `[`).
fn progress_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with('[')).collect()
}

/// Checks every line is a plain line (no `\r` redraw, no escape sequence) and returns them.
fn plain_lines(stderr: &str) -> Vec<&str> {
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "a terminal redraw on a pipe: {stderr:?}"
    );
    let lines = progress_lines(stderr);
    assert!(!lines.is_empty(), "no progress line: {stderr}");
    lines
}

/// The index of the first line containing `needle`.
fn first(lines: &[&str], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}: {lines:#?}"))
}

#[test]
fn http_progress_always_shows_req_per_s_percentiles_and_time_left() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    // connbench() adds -q: an explicit --progress wins over it.
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "2",
        "-t",
        "1",
        "--no-pin",
        "-d",
        "3s",
        "--progress",
        "always",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = plain_lines(&r.stderr);
    let l = lines[first(&lines, "req/s")];
    assert!(l.contains("/3s  ") && l.contains(" left]"), "{l}");
    assert!(l.contains("total p50 ") && l.contains(" p99 "), "{l}");
    assert!(l.contains("errors 0") && l.contains("open "), "{l}");
    // A line with samples shows them with a unit, not the empty-second dashes.
    assert!(
        lines
            .iter()
            .any(|l| !l.contains("p50 -") && l.contains("s p99 ")),
        "{lines:#?}"
    );
    // The report is still complete.
    assert!(r.u64("/counters/responses") > 0);
}

#[test]
fn http_with_a_request_count_shows_done_of_total_and_warm_up() {
    let s = serve(|_| {});
    // 20 ms a response on 2 connections: at most 100/s, so the 600 requests take 6 s or more
    // (the 2.5 s warm-up included: two chances at a warm-up line), however fast the machine.
    let url = http_url(&s, "/delay/20000");
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "2",
        "-t",
        "1",
        "--no-pin",
        "-n",
        "600",
        "--warmup",
        "2500ms",
        "--progress",
        "always",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = plain_lines(&r.stderr);
    let warm = first(&lines, "[warm-up ");
    assert!(
        lines[warm].contains("/3s  "),
        "the warm-up's length: {lines:#?}"
    );
    assert!(lines[warm].contains("/600 req]"), "{lines:#?}");
    let counted = lines
        .iter()
        .position(|l| !l.starts_with("[warm-up") && l.contains("/600 req]"))
        .unwrap_or_else(|| panic!("no line after the warm-up: {lines:#?}"));
    assert!(warm < counted, "{lines:#?}");
    assert!(lines[counted].contains("total p50 "), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains(" left]")), "{lines:#?}");
}

#[test]
fn stages_show_in_order_with_their_targets() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "-t",
        "1",
        "--no-pin",
        "--stages",
        "1@0s+3s,3@0s+3s",
        "--progress",
        "always",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = plain_lines(&r.stderr);
    let one = first(&lines, "stage 1/2 hold 1 conns");
    let two = first(&lines, "stage 2/2 hold 3 conns");
    assert!(one < two, "{lines:#?}");
    assert!(lines[one].contains("/6s  "), "the run's length: {lines:#?}");
}

#[test]
fn a_series_shows_which_run_of_how_many() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "-t",
        "1",
        "--no-pin",
        "--stages",
        "1@0s+3s",
        "--stages",
        "2@0s+3s",
        "--progress",
        "always",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = plain_lines(&r.stderr);
    let a = first(&lines, "[run 1/2 1@0s+3s  ");
    let b = first(&lines, "[run 2/2 2@0s+3s  ");
    assert!(a < b, "{lines:#?}");
}

#[test]
fn websocket_echo_shows_msgs_per_s_in_and_out_and_the_rtt() {
    let s = serve(|_| {});
    let url = format!("ws://{}/echo", s.http_addr().unwrap());
    let r = connbench(&[
        "ws",
        &url,
        "-c",
        "2",
        "-t",
        "1",
        "--no-pin",
        "-d",
        "4s",
        "--mode",
        "echo",
        "--send-rate",
        "50",
        "--progress",
        "always",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = plain_lines(&r.stderr);
    let l = lines[first(&lines, "msgs/s in")];
    assert!(l.contains(" msgs/s out"), "{l}");
    assert!(l.contains("rtt p50 ") && l.contains("reconnects 0"), "{l}");
    assert!(!lines.iter().any(|l| l.contains("req/s")), "{lines:#?}");
}

#[test]
fn probe_shows_its_step_connections_and_connect_percentiles() {
    let r = connbench(&[
        "probe",
        "--max",
        "300",
        "--connect-rate",
        "100",
        "--hold",
        "1s",
        "--progress",
        "always",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = plain_lines(&r.stderr);
    let ramp = first(&lines, "]  ramp ");
    let l = lines[ramp];
    assert!(
        l.contains("/300 attempted") && l.contains(" established  "),
        "{l}"
    );
    assert!(
        l.contains("connect p50 ") && l.contains("failures 0"),
        "{l}"
    );
    assert!(l.contains(" left]"), "the ramp's estimate: {l}");
}

#[test]
fn never_quiet_and_auto_off_a_terminal_print_no_line() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let base = [
        "http", &url, "-c", "2", "-t", "1", "--no-pin", "-d", "2500ms",
    ];
    for extra in [&["--progress", "never"][..], &["-q"][..], &[][..]] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let r = connbench_raw(&args);
        assert_eq!(r.code, 0, "{extra:?}: {}", r.stderr);
        assert!(
            progress_lines(&r.stderr).is_empty() && !r.stderr.contains("req/s"),
            "{extra:?} drew a line: {}",
            r.stderr
        );
    }
    let probe = connbench_raw(&["probe", "--max", "150", "--hold", "0s", "-q"]);
    s.stop();
    assert_eq!(probe.code, 0, "{}", probe.stderr);
    assert!(progress_lines(&probe.stderr).is_empty(), "{}", probe.stderr);
}

#[test]
fn a_bad_progress_value_is_a_usage_error() {
    for cmd in ["http", "ws", "probe"] {
        assert_usage_error(
            &connbench_raw(&[cmd, "--progress", "sometimes"]),
            "--progress \"sometimes\": use auto, always or never",
        );
    }
}

#[test]
fn ctrl_c_with_the_line_on_still_prints_the_report() {
    use std::io::BufRead;
    let s = serve(|_| {});
    let dir = super::util::TempDir::new("live-sigint");
    let json = dir.path("r.json");
    let mut child = std::process::Command::new(super::util::bin())
        .args([
            "http",
            &http_url(&s, "/"),
            "-c",
            "2",
            "-t",
            "1",
            "--no-pin",
            "-d",
            "60s",
            "--progress",
            "always",
            "--json",
        ])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Interrupt once the first progress line is out (however slow the machine starts it),
    // far before the 60 s end; the lines are collected as they come.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with('[') {
                let _ = tx.send(());
            }
            all.push(line);
        }
        all.join("\n")
    });
    let drawn = rx.recv_timeout(std::time::Duration::from_secs(30)).is_ok();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    s.stop();
    let stderr = reader.join().expect("reader");
    assert!(drawn, "no progress line within 30 s: {stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let lines = plain_lines(&stderr);
    assert!(lines.iter().any(|l| l.contains("req/s")), "{lines:#?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report written")).unwrap();
    assert_eq!(v["interrupted"], true);
}

/// A pseudo-terminal for a child's stderr: (the master end, read by the test; the slave end,
/// handed to the child).
fn pty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors it opened into the two ints; the rest is NULL.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

#[test]
fn auto_on_a_terminal_redraws_in_place_and_erases_before_the_report_and_before_v_lines() {
    use std::io::Read;
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let (mut master, slave) = pty();
    let child = {
        // The command (and its copy of the slave end) is dropped once the child runs, so the
        // master reads EOF (EIO) when the child exits.
        let mut cmd = std::process::Command::new(super::util::bin());
        cmd.args([
            "http", &url, "-c", "2", "-t", "1", "--no-pin", "-d", "2500ms", "-v",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(slave));
        cmd.spawn().expect("spawn")
    };
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        // Linux: EIO once the child (the last holder of the slave end) has exited.
        while let Ok(n) = master.read(&mut chunk) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let out = child.wait_with_output().expect("wait");
    s.stop();
    let tty = reader.join().expect("reader");
    assert_eq!(out.status.code(), Some(0), "{tty}");
    const ERASE: &str = "\r\x1b[K";
    // Redrawn in place: each line begins by erasing the previous one, none ends with a newline.
    let drawn = tty.matches(&format!("{ERASE}[")).count();
    assert!(drawn >= 1, "no redrawn line: {tty:?}");
    assert!(
        // (A -v line that follows a newline is the next check's.)
        !tty.split("\n[").skip(1).any(|rest| !rest.starts_with('+')),
        "a newline-ended progress line: {tty:?}"
    );
    // Erased at the end: after the last line's text comes the erase.
    let last = tty.rfind("req/s").expect("a progress line");
    assert!(tty[last..].contains(ERASE), "not erased: {tty:?}");
    // -v lines (`[+0.001 s] conn 0: …`) erase the progress line before they are written.
    let v_lines = tty.matches("[+").count();
    assert!(v_lines >= 1, "no -v line: {tty:?}");
    assert_eq!(
        tty.matches(&format!("{ERASE}[+")).count(),
        v_lines,
        "a -v line written over the progress line: {tty:?}"
    );
    // The report (stdout, a pipe) has no escape sequence.
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
}
