//! `connbench probe` end to end: the real binary against the built-in target (in this process,
//! port 0, stopped by handle) with a connection limit, in both over-limit modes, and with the
//! probe's own file-descriptor limit lowered. Every run is bounded by `--max`, `--hold` and the
//! connect rate.

use std::os::unix::process::CommandExt;
use std::process::Command;

use connbench::target::OverLimit;
use serde_json::Value;

use crate::util::{
    assert_usage_error, bin, connbench, connbench_raw, http_url, serve, Run, TempDir,
};

/// Settle window for the tests: wide enough that a loaded CI machine still sees the target's
/// reset inside it.
const SETTLE: &str = "500ms";

/// Server-side limit used throughout.
const LIMIT: usize = 300;

fn plain(
    tweak: impl FnOnce(&mut connbench::target::ServeConfig),
) -> connbench::target::ServerHandle {
    serve(|c| {
        c.https_port = None;
        tweak(c);
    })
}

/// The time series climbs without ever going down until it reaches the limit, and it ends
/// at the limit (nothing is opened after the first failure, and everything survives).
fn assert_series_climbs_to(r: &Run, limit: u64) {
    let series = r.report()["probe"]["series"]
        .as_array()
        .unwrap_or_else(|| panic!("no series: {}", r.report()));
    let points: Vec<(f64, u64)> = series
        .iter()
        .map(|p| (p[0].as_f64().expect("t"), p[1].as_u64().expect("open")))
        .collect();
    assert!(points.len() >= 3, "{points:?}");
    assert_eq!(points[0], (0.0, 0));
    let mut prev = 0;
    for &(_, open) in points.iter().take_while(|p| p.1 < limit) {
        assert!(
            open >= prev,
            "series went down before the limit: {points:?}"
        );
        prev = open;
    }
    assert!(points.windows(2).all(|w| w[1].0 >= w[0].0), "{points:?}");
    assert_eq!(points.last().map(|p| p.1), Some(limit), "{points:?}");
    // A connection the target resets right after TCP completes may be sampled in between.
    assert!(points.iter().all(|p| p.1 <= limit + 1), "{points:?}");
}

#[test]
fn max_conns_refuse_gives_limit_300_a_server_reset_full_survival_and_a_stable_confirm() {
    let s = plain(|c| {
        c.max_conns = Some(LIMIT);
        c.over_limit = OverLimit::Refuse;
    });
    let url = http_url(&s, "/");
    let r = connbench(&[
        "probe",
        &url,
        "--connect-rate",
        "1000",
        "--max",
        "1000",
        "--hold",
        "500ms",
        "--settle",
        SETTLE,
        "--confirm",
        "--confirm-pause",
        "200ms",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["mode"], "probe");
    assert_eq!(r.u64("/probe/limit"), LIMIT as u64, "{}", r.stdout);
    let f = &r.report()["probe"]["first_failure"];
    assert_eq!(f["class"], "connect_reset", "{f}");
    assert_eq!(f["local"], false);
    assert!(f["status"].is_null());
    // The first connection past the limit fails (on a loaded machine the next one or two may
    // already be on their way before the reset is seen).
    let first = f["connection"].as_u64().unwrap();
    assert!(
        (LIMIT as u64 + 1..=LIMIT as u64 + 3).contains(&first),
        "{f}"
    );
    assert_eq!(r.report()["probe"]["reached_max"], false);
    // Every connection open at the failure was still open after the hold.
    assert_eq!(r.u64("/probe/survived/of"), LIMIT as u64);
    assert_eq!(r.u64("/probe/survived/survived"), LIMIT as u64);
    assert_eq!(r.u64("/probe/drops_total"), 0);
    assert_series_climbs_to(&r, LIMIT as u64);
    // Nothing was opened after the first failure (the confirm passes are separate).
    let attempted = r.u64("/probe/attempted");
    assert!(
        (LIMIT as u64 + 1..=LIMIT as u64 + 3).contains(&attempted),
        "{attempted}"
    );
    assert_eq!(
        r.report()["confirm"]["result"],
        "stable",
        "{}",
        r.report()["confirm"]
    );
    assert_eq!(r.report()["confirm"]["below"]["reached_max"], true);
    assert_eq!(r.u64("/confirm/below/limit"), LIMIT as u64 - 1);
    assert_eq!(r.u64("/confirm/above/limit"), LIMIT as u64);
    assert_eq!(
        r.report()["confirm"]["above"]["first_failure"]["class"],
        "connect_reset"
    );
    // The target refused at least one connection per pass (the probe's and the confirm's; a
    // loaded machine may let a pass start before the target has seen the last one's closes).
    assert!(stats.rejected >= 2, "{stats:?}");
    assert!(r.u64("/phases/connect/count") >= LIMIT as u64);
    assert!(r.stdout.contains("(server side)"), "{}", r.stdout);
    assert!(r.stdout.contains("confirm        stable"), "{}", r.stdout);
}

#[test]
fn max_conns_429_with_request_gives_limit_300_and_http_429() {
    let s = plain(|c| {
        c.max_conns = Some(LIMIT);
        c.over_limit = OverLimit::TooMany;
    });
    let url = http_url(&s, "/");
    let r = connbench(&[
        "probe",
        &url,
        "--request",
        "--connect-rate",
        "1000",
        "--max",
        "1000",
        "--hold",
        "300ms",
        "--settle",
        SETTLE,
        "--keepalive",
        "100ms",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/probe/limit"), LIMIT as u64, "{}", r.stdout);
    let f = &r.report()["probe"]["first_failure"];
    assert_eq!(f["class"], "http_429", "{f}");
    assert_eq!(f["status"], 429);
    assert_eq!(f["local"], false);
    assert!(r.u64("/probe/failures/http_429") >= 1);
    assert_eq!(r.u64("/probe/survived/survived"), LIMIT as u64);
    assert_series_climbs_to(&r, LIMIT as u64);
    // One timed request per connection, 300 answered 200 and one 429.
    assert!(r.u64("/phases/total/count") > LIMIT as u64);
    assert_eq!(r.report()["config"]["establish"], "request");
    // Keep-alives went out on the held connections and were answered (no drop).
    assert!(stats.requests > LIMIT as u64 + 1, "{stats:?}");
    assert_eq!(r.u64("/probe/drops_total"), 0);
    assert!(stats.rejected >= 1, "{stats:?}");
}

#[test]
fn websocket_upgrade_refused_with_429_is_the_first_failure() {
    let s = plain(|c| {
        c.max_conns = Some(50);
        c.over_limit = OverLimit::TooMany;
    });
    let url = format!("ws://{}/echo", s.http_addr().expect("plain port"));
    let r = connbench(&[
        "probe",
        &url,
        "--connect-rate",
        "1000",
        "--max",
        "200",
        "--hold",
        "300ms",
        "--settle",
        SETTLE,
        "--keepalive",
        "100ms",
    ]);
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["config"]["establish"], "websocket");
    assert_eq!(r.u64("/probe/limit"), 50, "{}", r.stdout);
    assert_eq!(r.report()["probe"]["first_failure"]["class"], "http_429");
    assert_eq!(r.u64("/phases/upgrade/count"), 50);
    assert_eq!(stats.ws_upgrades, 50);
    assert_eq!(r.u64("/probe/survived/survived"), 50);
    assert_eq!(r.u64("/probe/drops_total"), 0, "pings were answered");
}

/// Run the binary with RLIMIT_NOFILE (soft and hard, so it cannot raise it back) set to
/// `limit` in the child, between fork and exec.
fn connbench_with_fd_limit(args: &[&str], limit: u64) -> Run {
    let dir = TempDir::new("probe-fd");
    let json = dir.path("report.json");
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--json").arg(&json).arg("-q");
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
    // which is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run connbench");
    let json: Option<Value> = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
    }
}

#[test]
fn a_lowered_fd_limit_is_reported_as_a_local_limit_not_the_servers() {
    let s = plain(|_| {});
    let url = http_url(&s, "/");
    // --max far beyond what 128 descriptors allow: the probe must start anyway.
    let r = connbench_with_fd_limit(
        &[
            "probe",
            &url,
            "--connect-rate",
            "2000",
            "--max",
            "1000",
            "--hold",
            "200ms",
            "--settle",
            SETTLE,
        ],
        128,
    );
    let stats = s.stats();
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = &r.report()["probe"]["first_failure"];
    assert_eq!(f["class"], "local_fd_limit", "{f}");
    assert_eq!(f["local"], true);
    assert_eq!(r.u64("/config/fd_limit"), 128);
    let limit = r.u64("/probe/limit");
    // stdin/out/err, epoll and the timer take a few of the 128.
    assert!((100..128).contains(&limit), "limit {limit}");
    assert_eq!(
        stats.accepted, limit,
        "the server saw every connection that was opened"
    );
    assert_eq!(r.u64("/probe/survived/survived"), limit);
    assert!(r.stdout.contains("LOCAL"), "{}", r.stdout);
}

#[test]
fn no_failure_up_to_max_reports_max_and_skips_the_confirm() {
    let s = plain(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "probe",
        &url,
        "--connect-rate",
        "1000",
        "--max",
        "20",
        "--hold",
        "100ms",
        "--settle",
        "100ms",
        "--confirm",
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/probe/limit"), 20);
    assert_eq!(r.report()["probe"]["reached_max"], true);
    assert!(r.report()["probe"]["first_failure"].is_null());
    assert_eq!(r.u64("/probe/failures_total"), 0);
    assert_eq!(r.report()["confirm"]["result"], "skipped");
    assert!(r.stdout.contains("raise --max"), "{}", r.stdout);
}

#[test]
fn bad_probe_flags_are_usage_errors() {
    let r = connbench_raw(&["probe", "http://127.0.0.1:9/", "--connect-rate", "0"]);
    assert_usage_error(&r, "--connect-rate");
    let r = connbench_raw(&["probe", "http://127.0.0.1:9/", "--max", "0"]);
    assert_usage_error(&r, "--max");
    let r = connbench_raw(&["probe", "http://127.0.0.1:9/", "--ws"]);
    assert_usage_error(&r, "ws://");
    let r = connbench_raw(&["probe", "ws://127.0.0.1:9/", "--request"]);
    assert_usage_error(&r, "--request");
}
