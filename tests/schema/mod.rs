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

/// One documented table: its rows' field patterns, each a list of segments where `*` matches
/// any key (`phases.*.unit`, `errors.{class}`) and alternatives (`phases.{connect,tls}`) are
/// expanded into rows of their own, grouped by the row they came from.
pub(crate) struct Table {
    /// The source file the table is in (for messages).
    file: &'static str,
    /// Per row: its text and its expanded patterns.
    rows: Vec<(String, Vec<Vec<String>>)>,
}

impl Table {
    /// Read the `| field | type | meaning |` table of a module doc.
    pub(crate) fn read(file: &'static str) -> Table {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).expect("read the module");
        let mut rows = Vec::new();
        for line in text.lines() {
            let Some(row) = line.strip_prefix("//! | ") else {
                continue;
            };
            let field = row.split(" | ").next().unwrap_or("");
            if field == "field" || !field.starts_with('`') {
                continue;
            }
            // Every `name` of the field cell is a documented key path.
            let patterns: Vec<Vec<String>> = field
                .split('`')
                .skip(1)
                .step_by(2)
                .flat_map(expand)
                .collect();
            assert!(!patterns.is_empty(), "{file}: no field in row {row}");
            rows.push((field.to_string(), patterns));
        }
        assert!(rows.len() >= 20, "{file}: found only {} rows", rows.len());
        Table { file, rows }
    }

    fn patterns(&self) -> impl Iterator<Item = &Vec<String>> {
        self.rows.iter().flat_map(|(_, p)| p)
    }

    /// A row that documents its object's keys in prose (no row below it).
    fn opaque(&self, pat: &[String]) -> bool {
        !self
            .patterns()
            .any(|q| q.len() > pat.len() && matches(&q[..pat.len()], pat))
    }

    /// The key path is a documented row, lies on the way to one, or is inside an object
    /// whose row documents its keys in prose.
    pub(crate) fn covers(&self, path: &[String]) -> bool {
        self.patterns().any(|p| {
            (p.len() >= path.len() && matches(&p[..path.len()], path))
                || (p.len() < path.len() && matches(p, &path[..p.len()]) && self.opaque(p))
        })
    }
}

/// `phases.{connect,tls}.count` → `phases.connect.count`, `phases.tls.count`; a single name in
/// braces (`errors.{class}`) is a placeholder, like `*`.
fn expand(field: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = vec![vec![]];
    let mut segments = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in field.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            '.' if depth == 0 => {
                segments.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    segments.push(cur);
    for seg in segments {
        let alts: Vec<String> = match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(inner) if inner.contains(',') => inner.split(',').map(str::to_string).collect(),
            Some(_) => vec!["*".to_string()],
            None => vec![seg],
        };
        out = out
            .into_iter()
            .flat_map(|prefix| {
                alts.iter().map(move |a| {
                    let mut p = prefix.clone();
                    p.push(a.clone());
                    p
                })
            })
            .collect();
    }
    out
}

/// Pattern against key path, segment by segment (`*` matches any key).
fn matches(pattern: &[String], path: &[String]) -> bool {
    pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, k)| p == "*" || p == k)
}

/// Every key path of a document: objects are walked, arrays and scalars are leaves.
fn key_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(map) = v {
        for (k, x) in map {
            prefix.push(k.clone());
            out.push(prefix.clone());
            key_paths(x, prefix, out);
            prefix.pop();
        }
    }
}

pub(crate) fn all_key_paths(docs: &[Value]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for d in docs {
        key_paths(d, &mut Vec::new(), &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// Run this build and return its report.
fn report_of(args: &[&str]) -> Value {
    let r = connbench(args);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    r.report().clone()
}

/// Every documented row exists in some report, as every expansion of its pattern.
pub(crate) fn assert_rows_written(table: &Table, paths: &[Vec<String>]) {
    for (row, pats) in &table.rows {
        for p in pats {
            assert!(
                paths.iter().any(|k| matches(p, k)),
                "{}: the row {row} documents {} that no report wrote",
                table.file,
                p.join(".")
            );
        }
    }
}

#[test]
fn every_key_written_is_in_the_schema_table_and_every_row_is_written() {
    let load_table = Table::read("src/report/json.rs");
    let probe_table = Table::read("src/report/probe.rs");
    let common = ["-t", "1", "--no-pin"];
    let with = |args: &[&'static str]| -> Vec<&'static str> {
        args.iter().chain(common.iter()).copied().collect()
    };
    let load = vec![
        report_of(&with(&["http", "--stages", "2@300ms+300ms"])),
        report_of(&with(&[
            "http", "--tls", "-R", "500", "-d", "1s", "-c", "2",
        ])),
        report_of(&with(&[
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
        ])),
        report_of(&with(&["ws", "-d", "1s", "-c", "2"])),
        report_of(&with(&[
            "http",
            "--conn-rate",
            "100",
            "--close",
            "rst",
            "-d",
            "500ms",
            "-c",
            "2",
        ])),
    ];
    let mut probe = vec![report_of(&["probe", "--max", "20", "--tls"])];
    // A merged probe report (of that one with itself).
    let probe_dir = TempDir::new("schema-probe-keys");
    let (p1, pm) = (probe_dir.path("p.json"), probe_dir.path("pm.json"));
    std::fs::write(&p1, serde_json::to_vec(&probe[0]).unwrap()).unwrap();
    let r = connbench_raw(&["merge", s(&p1), s(&p1), "--json", s(&pm)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    probe.push(read(&pm));
    // A report written by `merge` (of two of the above: not simultaneous, hence the flags).
    let dir = TempDir::new("schema-keys");
    let (a, merged) = (dir.path("a.json"), dir.path("merged.json"));
    std::fs::write(&a, serde_json::to_vec(&load[1]).unwrap()).unwrap();
    let r = connbench_raw(&[
        "merge",
        s(&a),
        s(&a),
        "--allow-disjoint",
        "--json",
        s(&merged),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut load = load;
    load.push(read(&merged));

    let load_paths = all_key_paths(&load);
    let undocumented: Vec<String> = load_paths
        .iter()
        .filter(|k| !load_table.covers(k))
        .map(|k| k.join("."))
        .collect();
    assert!(
        undocumented.is_empty(),
        "written but not documented in src/report/json.rs: {undocumented:?}"
    );
    assert_rows_written(&load_table, &load_paths);

    // The probe report keeps the load reports' envelope (listed in probe.rs's module doc).
    let envelope = [
        "schema",
        "connbench_version",
        "mode",
        "started_at",
        "started_at_unix_ms",
        "duration_s",
        "interrupted",
        "insecure",
        "command_line",
        "target",
        "host",
        "tls",
        "phases",
        "client",
    ];
    let probe_doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/report/probe.rs"))
            .expect("read probe.rs");
    for key in envelope {
        assert!(
            probe_doc.contains(&format!("`{key}`")),
            "probe.rs's module doc does not list {key} in the envelope"
        );
    }
    let probe_paths = all_key_paths(&probe);
    let undocumented: Vec<String> = probe_paths
        .iter()
        .filter(|k| {
            let shared = envelope.contains(&k[0].as_str()) && load_table.covers(k);
            !(probe_table.covers(k) || shared)
        })
        .map(|k| k.join("."))
        .collect();
    assert!(
        undocumented.is_empty(),
        "written by probe but documented in neither src/report/probe.rs nor (for the \
         envelope) src/report/json.rs: {undocumented:?}"
    );
    assert_rows_written(&probe_table, &probe_paths);
}
