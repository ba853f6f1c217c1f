//! examples/null_client.rs, the floor `scripts/compare.sh` measures connbench against: it runs
//! against the built-in target and counts real responses (the server's own count agrees), and
//! it refuses to miscount when the server's responses stop being what it learned.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::{serve, write_ca, TempDir};

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
        (&["127.0.0.1:80", "--tls"][..], "--ca FILE"),
        (&["127.0.0.1:80", "-k"][..], "add --tls"),
        (&["127.0.0.1:80", "--ca", "ca.pem"][..], "add --tls"),
        (
            &["127.0.0.1:80", "--tls", "-k", "--ca", "ca.pem"][..],
            "together",
        ),
    ] {
        let o = run(args);
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(says), "{args:?}: {}", o.stderr);
    }
}

#[test]
fn null_client_over_tls_counts_every_response_of_the_builtin_target() {
    // --tls: rustls makes each connection's handshake and first exchange, then the client
    // seals and opens the records itself. The target's own count must agree: one first
    // exchange per connection, then exactly the counted responses.
    let s = serve(|_| {});
    let dir = TempDir::new("nullclient-tls");
    let ca = write_ca(&s, &dir);
    let addr = s.https_addr().expect("tls port").to_string();
    let o = run(&[
        &addr,
        "-c",
        "3",
        "-n",
        "1500",
        "-d",
        "60s",
        "--tls",
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let j = o.json.expect("a JSON line");
    assert_eq!(j["responses"], 1500, "{j}");
    assert_eq!(j["tls"], true, "{j}");
    assert_eq!(s.stats().requests, 1503, "target's count vs the client's");
    s.stop();
}

#[test]
fn null_client_over_tls_verifies_the_certificate_unless_told_not_to() {
    // Another target's CA does not vouch for this one: the handshake fails and the run says so.
    // -k skips the chain (the run goes through); the control shows the refusal is the CA's.
    let s = serve(|_| {});
    let other = serve(|_| {});
    let dir = TempDir::new("nullclient-tls-ca");
    let wrong = write_ca(&other, &dir);
    other.stop();
    let addr = s.https_addr().expect("tls port").to_string();
    let o = run(&[&addr, "-n", "10", "--tls", "--ca", wrong.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("certificate"), "{}", o.stderr);
    assert!(o.json.is_none(), "no report from a failed run");
    let o = run(&[&addr, "-n", "10", "--tls", "-k"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.json.expect("a JSON line")["responses"], 10);
    s.stop();
}

#[test]
fn null_client_over_tls_fails_instead_of_miscounting_when_the_server_closes() {
    // Over TLS the close comes as a close_notify alert (or the response carrying
    // Connection: close is longer than the learned one): a named failure either way.
    let s = serve(|c| c.close_after = Some(3));
    let addr = s.https_addr().expect("tls port").to_string();
    let o = run(&[&addr, "-c", "2", "-n", "100", "-d", "30s", "--tls", "-k"]);
    assert_eq!(o.code, 1, "stderr: {}", o.stderr);
    assert!(
        ["alert", "closed connection", "differ in length"]
            .iter()
            .any(|w| o.stderr.contains(w)),
        "{}",
        o.stderr
    );
    assert!(o.json.is_none(), "no report from a failed run");
    s.stop();
}
