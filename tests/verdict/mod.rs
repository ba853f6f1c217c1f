//! Percentiles end to end (issue 9, "Percentiles"): `--percentiles` chooses the columns of the
//! phase tables and the JSON summaries, p95 is in the default, and `merge` keeps the columns
//! (reports written before p95 existed still merge).
//!
//! Every run is bounded by a request count (`-n`) against the built-in target on loopback.

use serde_json::Value;

use crate::util::{connbench, connbench_raw, http_url, serve, Run, TempDir};

/// `--percentiles` chooses the columns of the phase table and the JSON summaries, which carry
/// the histogram's own values; the default has p95.
#[test]
fn percentiles_choose_the_columns_and_the_json_summaries() {
    let s = serve(|_| {});
    let url = http_url(&s, "/");
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "2",
        "-n",
        "300",
        "--no-pin",
        "--percentiles",
        "99.99,50,100",
    ]);
    let default = connbench(&["http", &url, "-c", "2", "-n", "50", "--no-pin"]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = |r: &Run| -> Vec<String> {
        r.stdout
            .lines()
            .find(|l| l.starts_with("phase"))
            .expect("phase table")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        header(&r),
        ["phase", "count", "min", "p50", "p99.99", "max", "mean"]
    );
    assert_eq!(
        header(&default),
        ["phase", "count", "min", "p50", "p90", "p95", "p99", "p99.9", "max", "mean"]
    );
    assert_eq!(
        r.report()["config"]["percentiles"],
        serde_json::json!([50.0, 99.99, 100.0])
    );
    let total = &r.report()["phases"]["total"];
    let h = connbench::report::hdr::decode(total["hdr"].as_str().unwrap()).unwrap();
    assert_eq!(
        total["percentiles"],
        serde_json::json!([
            {"percentile": 50.0, "value": h.value_at_quantile(0.5)},
            {"percentile": 99.99, "value": h.value_at_quantile(0.9999)},
            {"percentile": 100.0, "value": h.max()},
        ])
    );
    // The fixed keys stay, p95 among them.
    assert_eq!(total["p95"], h.value_at_quantile(0.95));
    assert_eq!(total["p999"], h.value_at_quantile(0.999));
    let row: Vec<&str> = r
        .stdout
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("total row")
        .split_whitespace()
        .collect();
    let d = |v: u64| connbench::report::text::dur_compact(v as f64);
    assert_eq!(row[3], d(h.value_at_quantile(0.5)));
    assert_eq!(row[4], d(h.value_at_quantile(0.9999)));
    assert_eq!(row[5], d(h.max()));
}

/// `merge` renders the columns of its first report, and reports written before p95 and
/// `--percentiles` existed (the 26c9108 fixtures) merge into the default columns, p95 included.
#[test]
fn merge_keeps_the_percentile_columns_and_reads_reports_without_p95() {
    let s = serve(|_| {});
    let dir = TempDir::new("verdict-merge");
    let a = dir.path("a.json");
    let r = crate::util::connbench_raw(&[
        "http",
        &http_url(&s, "/"),
        "-c",
        "2",
        "-n",
        "100",
        "--no-pin",
        "-q",
        "--percentiles",
        "50,99.99",
        "--json",
        a.to_str().unwrap(),
    ]);
    s.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = connbench_raw(&["merge", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    let header = m
        .stdout
        .lines()
        .find(|l| l.starts_with("phase"))
        .expect("phase table");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["phase", "count", "min", "p50", "p99.99", "max", "mean"]
    );

    let old = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/old-26c9108-http.json");
    let fixture: Value = serde_json::from_slice(&std::fs::read(&old).unwrap()).unwrap();
    assert!(
        fixture["phases"]["total"].get("p95").is_none(),
        "the fixture predates p95"
    );
    let out = dir.path("merged.json");
    let m = connbench_raw(&[
        "merge",
        old.to_str().unwrap(),
        old.to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
    ]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    let header = m
        .stdout
        .lines()
        .find(|l| l.starts_with("phase"))
        .expect("phase table");
    assert!(header.contains("p95"), "{header}");
    let merged: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let total = &merged["phases"]["total"];
    let h = connbench::report::hdr::decode(total["hdr"].as_str().unwrap()).unwrap();
    assert_eq!(
        h.len(),
        2 * fixture["phases"]["total"]["count"].as_u64().unwrap()
    );
    assert_eq!(total["p95"], h.value_at_quantile(0.95));
    assert_eq!(
        merged["config"]["percentiles"],
        serde_json::json!([50.0, 90.0, 95.0, 99.0, 99.9])
    );
}

/// A bad `--percentiles` is a usage error before anything starts (the host never resolves, so
/// a check that ran after the DNS lookup would say "cannot resolve" instead).
#[test]
fn bad_percentiles_are_usage_errors_naming_the_value() {
    let host = "http://connbench-verdict-test.invalid/";
    let ws = "ws://connbench-verdict-test.invalid/ws";
    for (args, needles) in [
        (
            vec!["http", host, "--percentiles", "50,0"],
            vec!["--percentiles: invalid percentile \"0\"", "at most 100"],
        ),
        (
            vec!["http", host, "--percentiles", "99.999,101"],
            vec!["\"101\""],
        ),
        (
            vec!["ws", ws, "--subscribe", "x", "--percentiles", "p999"],
            vec!["\"p999\""],
        ),
        (
            vec!["probe", host, "--percentiles", ""],
            vec!["--percentiles"],
        ),
    ] {
        let r = connbench_raw(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {}", r.stderr);
        assert!(lines[0].starts_with("connbench: error: "), "{}", lines[0]);
        for n in needles {
            assert!(lines[0].contains(n), "{args:?}: {n:?} in {}", lines[0]);
        }
        assert!(!lines[0].contains("resolve"), "{}", lines[0]);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
}
