//! The report schema: reports written by an older connbench (the fixtures under
//! `tests/fixtures/`, written by commit 26c9108 against its built-in target) still read into
//! [`connbench::report::schema`] and still merge with reports of this build, into exact sums.

use std::path::{Path, PathBuf};

use connbench::report::schema::Report;
use serde_json::Value;

use crate::util::{connbench, connbench_raw, TempDir};

/// The fixture reports written by commit 26c9108 (`connbench http|ws -d 1s -c 2 -t 1 --no-pin`,
/// built-in target): HTTP plain and TLS, WebSocket echo (`--send-rate 100`) and stream.
const OLD: [&str; 4] = [
    "old-26c9108-http.json",
    "old-26c9108-https.json",
    "old-26c9108-ws-echo.json",
    "old-26c9108-ws-stream.json",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(p: &Path) -> Value {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The integer at `ptr`, 0 when the report lacks it (what merge counts for a field an older
/// report does not have).
fn int_or_zero(v: &Value, ptr: &str) -> u64 {
    match v.pointer(ptr) {
        None => 0,
        Some(x) => x
            .as_u64()
            .unwrap_or_else(|| panic!("{ptr} is not an integer: {x}")),
    }
}

/// Every integer field that merge sums, as JSON pointers found in either input or the result.
fn summed_pointers(docs: &[&Value]) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for d in docs {
        for obj in ["counters", "responses", "errors"] {
            for (k, v) in d[obj].as_object().expect("object").iter() {
                if v.is_u64() {
                    out.insert(format!("/{obj}/{k}"));
                }
            }
        }
        for (k, p) in d["phases"].as_object().expect("phases").iter() {
            assert!(p["count"].is_u64(), "phases.{k}.count");
            out.insert(format!("/phases/{k}/count"));
        }
        if d["ws"].is_object() {
            for k in [
                "connections_attempted",
                "connections_upgraded",
                "messages_in",
                "messages_out",
                "subscriptions_sent",
                "reconnects_total",
                "pings_sent",
                "pongs_received",
                "ts_missing",
            ] {
                out.insert(format!("/ws/{k}"));
            }
        }
        if d["tls"].is_object() {
            out.insert("/tls/handshakes_full".into());
            out.insert("/tls/handshakes_resumed".into());
        }
        out.insert("/config/connections".into());
        out.insert("/config/threads".into());
        out.insert("/client/peak_rss_bytes".into());
    }
    out.into_iter().collect()
}

/// Merge `a` and `b` (`--allow-mixed --allow-disjoint`: different ports, different times) and
/// check that every summed field is the sum of the two.
fn merge_and_check_sums(a: &Path, b: &Path) -> Value {
    let dir = TempDir::new("schema-merge");
    let out = dir.path("merged.json");
    let r = connbench_raw(&[
        "merge",
        s(a),
        s(b),
        "--allow-mixed",
        "--allow-disjoint",
        "--json",
        s(&out),
    ]);
    assert_eq!(
        r.code,
        0,
        "merging {} and {}: {}",
        a.display(),
        b.display(),
        r.stderr
    );
    let (da, db, m) = (read(a), read(b), read(&out));
    let mut checked = 0;
    for ptr in summed_pointers(&[&da, &db, &m]) {
        let want = int_or_zero(&da, &ptr) + int_or_zero(&db, &ptr);
        assert_eq!(
            int_or_zero(&m, &ptr),
            want,
            "{ptr} of merging {} and {}",
            a.display(),
            b.display()
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} summed fields were compared");
    // The phases' histograms were added, not just their counts.
    for (name, p) in m["phases"].as_object().expect("phases") {
        let n = p["count"].as_u64().expect("count");
        let h = connbench::report::hdr::decode(p["hdr"].as_str().expect("hdr")).expect("hdr");
        assert_eq!(h.len(), n, "phases.{name}: histogram total vs count");
    }
    assert!(
        int_or_zero(&m, "/phases/connect/count") > 0,
        "both runs connected"
    );
    assert_eq!(m["merged_from"].as_array().map(Vec::len), Some(2));
    assert_eq!(m["worker_panics"], serde_json::json!([]));
    assert_eq!(m["schema"], "connbench.report.v1");
    // What merge writes reads back into the schema types.
    serde_json::from_value::<Report>(m.clone()).expect("merged report reads into the schema");
    m
}

#[test]
fn reports_written_by_26c9108_read_into_the_schema_types() {
    for name in OLD {
        let v = read(&fixture(name));
        assert!(
            v.get("worker_panics").is_none(),
            "{name}: the fixture predates worker_panics"
        );
        let r: Report = serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("{name} does not read into schema::Report: {e}"));
        assert!(r.worker_panics.is_empty(), "{name}: defaults to none");
        assert_eq!(
            r.counters.responses,
            v["counters"]["responses"].as_u64().unwrap()
        );
        assert_eq!(r.mode, v["mode"].as_str().unwrap());
        // Written again, it keeps every key and value it had (and only adds the later ones).
        let again = serde_json::to_value(&r).expect("serialize");
        assert_same_where_present(&v, &again, name, "");
    }
}

/// Every value of `old` is in `new` at the same place (objects may have gained keys).
fn assert_same_where_present(old: &Value, new: &Value, name: &str, at: &str) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let inner = format!("{at}.{k}");
                let w = b.get(k).unwrap_or_else(|| {
                    panic!("{name}: {inner} lost on the way through the schema")
                });
                assert_same_where_present(v, w, name, &inner);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{name}: {at}");
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                assert_same_where_present(v, w, name, &format!("{at}[{i}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{name}: {at}"),
    }
}

#[test]
fn merge_sums_reports_written_by_26c9108_with_this_builds() {
    let dir = TempDir::new("schema-new");
    // Each new report is a run of this build with the same arguments the fixture was written with.
    let runs: [(&str, &[&str]); 4] = [
        (
            "http",
            &["http", "-d", "1s", "-c", "2", "-t", "1", "--no-pin"],
        ),
        (
            "https",
            &[
                "http", "--tls", "-d", "1s", "-c", "2", "-t", "1", "--no-pin",
            ],
        ),
        (
            "ws-echo",
            &[
                "ws",
                "/echo",
                "--mode",
                "echo",
                "--send-rate",
                "100",
                "-d",
                "1s",
                "-c",
                "2",
                "-t",
                "1",
                "--no-pin",
            ],
        ),
        (
            "ws-stream",
            &["ws", "-d", "1s", "-c", "2", "-t", "1", "--no-pin"],
        ),
    ];
    for ((tag, args), old) in runs.iter().zip(OLD) {
        let r = connbench(args);
        assert_eq!(r.code, 0, "{tag}: {}", r.stderr);
        let new = dir.path(&format!("new-{tag}.json"));
        std::fs::write(&new, serde_json::to_vec(r.report()).unwrap()).unwrap();
        let m = merge_and_check_sums(&fixture(old), &new);
        assert_eq!(m["mode"], r.report()["mode"], "{tag}");
    }
    // The old reports with each other: TLS with plain HTTP (TLS first: a mixed merge takes
    // the first report's `config.tls`, and with plain first it writes `tls: null`), and each
    // WebSocket one with itself.
    merge_and_check_sums(&fixture(OLD[1]), &fixture(OLD[0]));
    merge_and_check_sums(&fixture(OLD[2]), &fixture(OLD[2]));
    merge_and_check_sums(&fixture(OLD[3]), &fixture(OLD[3]));
}
