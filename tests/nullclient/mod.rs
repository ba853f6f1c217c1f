//! examples/null_client.rs, the floor `scripts/compare.sh` measures connbench against: it runs
//! against the built-in target and counts real responses (the server's own count agrees), and
//! it refuses to miscount when the server's responses stop being what it learned.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::serve;

/// The example's binary in this test build's profile, built (or found fresh) by cargo itself;
/// its path comes from cargo's own artifact message, so a custom target dir still works.
fn null_client() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--example", "null_client", "--message-format=json"])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build --example null_client");
        assert!(
            out.status.success(),
            "cargo build --example null_client failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"]["name"] == "null_client")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo named no null_client executable")
    })
}

struct Out {
    code: i32,
    json: Option<Value>,
    stderr: String,
}

fn run(args: &[&str]) -> Out {
    let out = Command::new(null_client())
        .args(args)
        .output()
        .expect("run null_client");
    Out {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_slice(&out.stdout).ok(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn null_client_counts_every_response_of_the_builtin_target() {
    let s = serve(|_| {});
    let addr = s.http_addr().expect("plain port").to_string();
    let o = run(&[&addr, "-c", "4", "-n", "2000", "-d", "60s"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let j = o.json.expect("a JSON line");
    assert_eq!(j["responses"], 2000, "{j}");
    assert_eq!(j["connections"], 4);
    assert_eq!(j["mode"], "blocking");
    // One learning request on the first connection, then exactly the counted ones: the target
    // answered as many requests as the client counted, no more, no fewer.
    assert_eq!(s.stats().requests, 2001, "target's count vs the client's");
    assert!(j["cpu_per_response_us"].as_f64().unwrap() > 0.0, "{j}");
    s.stop();
}

#[test]
fn null_client_spinning_at_one_connection_reports_its_round_trip() {
    let s = serve(|_| {});
    let addr = s.http_addr().expect("plain port").to_string();
    let o = run(&[
        &addr, "-c", "1", "-n", "500", "-d", "60s", "--spin", "--rtt",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let j = o.json.expect("a JSON line");
    assert_eq!(j["mode"], "spin");
    assert_eq!(j["responses"], 500);
    assert_eq!(j["rtt_samples"], 500, "one round trip per response: {j}");
    let p50 = j["rtt_p50_us"].as_f64().unwrap();
    let p99 = j["rtt_p99_us"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{j}");
    s.stop();
}

#[test]
fn null_client_fails_instead_of_miscounting_when_the_server_closes() {
    // The target closes every connection after its 3rd response (Connection: close): the null
    // client must say so and fail, not count on.
    let s = serve(|c| c.close_after = Some(3));
    let addr = s.http_addr().expect("plain port").to_string();
    let o = run(&[&addr, "-c", "2", "-n", "100", "-d", "30s"]);
    assert_eq!(o.code, 1, "stderr: {}", o.stderr);
    // The 3rd response carries a Connection: close header (longer than the learned length) or
    // the close comes first: either way a named failure.
    assert!(
        o.stderr.contains("closed connection") || o.stderr.contains("differ in length"),
        "{}",
        o.stderr
    );
    assert!(o.json.is_none(), "no report from a failed run");
    s.stop();
}

#[test]
fn null_client_refuses_bad_input_with_one_line() {
    for (args, says) in [
        (&["192.0.2.1:80"][..], "not a loopback address"),
        (&["127.0.0.1:80", "-c", "0"][..], "-c"),
        (&["127.0.0.1:80", "-c", "2", "--rtt"][..], "-c 1"),
        (&["127.0.0.1:80", "-d", "5x"][..], "duration"),
    ] {
        let o = run(args);
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(says), "{args:?}: {}", o.stderr);
    }
}
