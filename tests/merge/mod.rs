//! `connbench merge` end to end: three real `connbench http` processes load the built-in target
//! at the same time, and their reports merge into exactly the sums; damaged, foreign or
//! non-simultaneous reports are refused with one line and exit code 2.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connbench::metrics::new_histogram;
use connbench::report::hdr;
use serde_json::Value;

use crate::util::{self, assert_usage_error, connbench, connbench_raw, http_url, serve, TempDir};

const PHASES: [&str; 4] = ["connect", "tls", "ttfb", "total"];

fn read_json(p: &Path) -> Value {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).expect("valid JSON")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Wait for a child at most `limit`, killing it (by handle) when it overstays.
fn wait_bounded(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("connbench did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_simultaneous_processes_merge_into_exact_sums() {
    let server = serve(|_| {});
    // 1 ms per response: each run lasts about 1.5 s, so the few ms between the three process
    // starts cannot push the overlap under half of a window even on a loaded machine.
    let url = http_url(&server, "/delay/1000");
    let dir = TempDir::new("merge3");
    let files: Vec<_> = (1..=3).map(|i| dir.path(&format!("f{i}.json"))).collect();
    let children: Vec<Child> = files
        .iter()
        .map(|f| {
            Command::new(util::bin())
                .args(["http", &url, "-n", "3000", "-c", "2", "-q", "--json", s(f)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn connbench")
        })
        .collect();
    let statuses: Vec<_> = children
        .into_iter()
        .map(|c| wait_bounded(c, Duration::from_secs(60)))
        .collect();
    server.stop();
    for st in statuses {
        assert!(st.success(), "{st:?}");
    }
    let reports: Vec<Value> = files.iter().map(|f| read_json(f)).collect();

    let merged_path = dir.path("merged.json");
    let r = connbench_raw(&[
        "merge",
        s(&files[0]),
        s(&files[1]),
        s(&files[2]),
        "--json",
        s(&merged_path),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = read_json(&merged_path);

    let sum = |ptr: &str| -> u64 {
        reports
            .iter()
            .map(|v| v.pointer(ptr).and_then(Value::as_u64).expect(ptr))
            .sum()
    };
    assert_eq!(m["schema"], "connbench.report.v1");
    assert_eq!(m["counters"]["responses"], 9000);
    assert_eq!(m["counters"]["responses"], sum("/counters/responses"));
    assert_eq!(m["responses"]["2xx"], sum("/responses/2xx"));
    assert_eq!(m["counters"]["requests"], sum("/counters/requests"));
    assert_eq!(m["errors"]["total"], sum("/errors/total"));
    assert_eq!(m["config"]["connections"], 6);
    assert_eq!(m["config"]["requests"], 9000);
    for phase in PHASES {
        let mut want = new_histogram();
        for v in &reports {
            let h = hdr::decode(v["phases"][phase]["hdr"].as_str().expect("hdr")).expect("decodes");
            want.add(&h).expect("same bounds");
        }
        let count = m["phases"][phase]["count"].as_u64().expect("count");
        assert_eq!(count, sum(&format!("/phases/{phase}/count")), "{phase}");
        assert_eq!(count, want.len(), "{phase}");
        let got = hdr::decode(m["phases"][phase]["hdr"].as_str().expect("hdr")).expect("decodes");
        assert_eq!(got, want, "{phase}");
        if count > 0 {
            assert_eq!(
                m["phases"][phase]["p50"],
                want.value_at_quantile(0.5),
                "{phase}"
            );
            assert_eq!(m["phases"][phase]["max"], want.max(), "{phase}");
            assert_eq!(m["phases"][phase]["min"], want.min(), "{phase}");
        }
    }
    assert_eq!(m["phases"]["total"]["count"], 9000);

    // The windows overlap; the merged window is their union and rates use it.
    let start = |v: &Value| v["started_at_unix_ms"].as_i64().expect("start") as f64;
    let end = |v: &Value| start(v) + v["duration_s"].as_f64().expect("duration") * 1e3;
    let union_ms = reports.iter().map(end).fold(f64::MIN, f64::max)
        - reports.iter().map(start).fold(f64::MAX, f64::min);
    let overlap_ms = reports.iter().map(end).fold(f64::MAX, f64::min)
        - reports.iter().map(start).fold(f64::MIN, f64::max);
    assert!(overlap_ms > 0.0, "windows do not overlap: {overlap_ms} ms");
    let d = m["duration_s"].as_f64().expect("duration");
    assert!(
        (d * 1e3 - union_ms).abs() < 1e-6,
        "{d} s vs union {union_ms} ms"
    );
    assert!(
        (m["merge_window"]["overlap_s"].as_f64().expect("overlap") * 1e3 - overlap_ms).abs() < 1e-6
    );
    let rps = m["throughput"]["responses_per_s"].as_f64().expect("rate");
    assert!((rps - 9000.0 / d).abs() < 1e-6 * rps, "{rps}");
    let names: Vec<&str> = m["merged_from"]
        .as_array()
        .expect("merged_from")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, files.iter().map(|f| s(f)).collect::<Vec<_>>());
    assert_eq!(m["sources"][2]["responses"], 3000);

    // The text summary is the usual one, for the merged run.
    assert!(r.stdout.contains("merged 3 http reports"), "{}", r.stdout);
    assert!(r.stdout.contains("6 connections"), "{}", r.stdout);
    assert!(r.stdout.contains("2xx 9000"), "{}", r.stdout);
}

#[test]
fn damaged_foreign_and_disjoint_reports_are_refused() {
    let server = serve(|_| {});
    let one = connbench(&["http", &http_url(&server, "/"), "-n", "200", "-c", "1"]);
    server.stop();
    assert_eq!(one.code, 0, "{}", one.stderr);
    let dir = TempDir::new("merge-bad");
    let good = dir.path("good.json");
    std::fs::write(&good, one.report().to_string()).expect("write");

    // A corrupt histogram.
    let mut v = one.report().clone();
    v["phases"]["total"]["hdr"] = Value::from("HISTFAAAnot-a-histogram");
    let corrupt = dir.path("corrupt.json");
    std::fs::write(&corrupt, v.to_string()).expect("write");
    let r = connbench_raw(&["merge", s(&good), s(&corrupt)]);
    assert_usage_error(&r, "corrupt.json: phases.total: histogram");

    // Not JSON, missing, another schema.
    let text = dir.path("text.json");
    std::fs::write(&text, "connbench 0.1.0 http ...").expect("write");
    assert_usage_error(
        &connbench_raw(&["merge", s(&good), s(&text)]),
        "text.json: not valid JSON",
    );
    let missing = dir.path("missing.json");
    assert_usage_error(
        &connbench_raw(&["merge", s(&good), s(&missing)]),
        "missing.json: cannot read",
    );
    let mut v = one.report().clone();
    v["schema"] = Value::from("connbench.report.v9");
    let foreign = dir.path("v9.json");
    std::fs::write(&foreign, v.to_string()).expect("write");
    assert_usage_error(
        &connbench_raw(&["merge", s(&good), s(&foreign)]),
        "v9.json: schema",
    );

    // The same run moved an hour earlier: no overlap, refused unless --allow-disjoint.
    let mut v = one.report().clone();
    let start = v["started_at_unix_ms"].as_i64().expect("start");
    v["started_at_unix_ms"] = Value::from(start - 3_600_000);
    let early = dir.path("early.json");
    std::fs::write(&early, v.to_string()).expect("write");
    let r = connbench_raw(&["merge", s(&good), s(&early)]);
    assert_usage_error(&r, "do not overlap");
    assert_usage_error(&r, "--allow-disjoint");
    let out = dir.path("disjoint.json");
    let r = connbench_raw(&[
        "merge",
        s(&good),
        s(&early),
        "--allow-disjoint",
        "--json",
        s(&out),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = read_json(&out);
    assert_eq!(m["counters"]["responses"], 400);
    assert_eq!(m["merge_window"]["overlap_s"], 0.0);
    assert!(m["duration_s"].as_f64().expect("duration") >= 3600.0);

    // Another URL needs --allow-mixed.
    let mut v = one.report().clone();
    v["target"]["url"] = Value::from("http://127.0.0.1:1/elsewhere");
    let other = dir.path("other-url.json");
    std::fs::write(&other, v.to_string()).expect("write");
    assert_usage_error(
        &connbench_raw(&["merge", s(&good), s(&other)]),
        "--allow-mixed",
    );
    let r = connbench_raw(&["merge", s(&good), s(&other), "--allow-mixed"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn hlog_intervals_add_up_to_the_report() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    let server = serve(|_| {});
    let url = http_url(&server, "/delay/1000");
    let dir = TempDir::new("hlog");
    let log = dir.path("run.hlog");
    let r = connbench(&["http", &url, "-n", "3000", "-c", "2", "--hlog", s(&log)]);
    server.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bytes = std::fs::read(&log).expect("--hlog written");

    let mut start_time = None;
    let mut base_time = None;
    let mut last_start = Duration::ZERO;
    let mut intervals = 0;
    let mut sums: Vec<(String, hdrhistogram::Histogram<u64>)> = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        match entry.expect("a valid interval log") {
            LogEntry::StartTime(t) => start_time = Some(t),
            LogEntry::BaseTime(t) => base_time = Some(t),
            LogEntry::Interval(i) => {
                intervals += 1;
                assert!(i.start_timestamp() >= last_start, "time order");
                last_start = i.start_timestamp();
                let tag = i.tag().expect("every line is tagged").as_str().to_string();
                assert!(PHASES.contains(&tag.as_str()), "{tag}");
                let blob = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    i.encoded_histogram(),
                )
                .expect("base64");
                let h: hdrhistogram::Histogram<u64> = Deserializer::new()
                    .deserialize(&mut blob.as_slice())
                    .expect("V2 deflate");
                assert!(!h.is_empty(), "no line for an empty phase");
                match sums.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, sum)) => sum.add(&h).expect("same bounds"),
                    None => sums.push((tag, h)),
                }
            }
        }
    }
    // The window's start, to the log's millisecond precision.
    let start_ms = r.report()["started_at_unix_ms"].as_u64().expect("start");
    let t = start_time.expect("StartTime").as_millis() as u64;
    assert!(
        t.abs_diff(start_ms) <= 1,
        "StartTime {t} vs report {start_ms}"
    );
    assert_eq!(start_time, base_time);
    assert!(intervals >= 2, "a 1.5 s run spans two one-second intervals");
    for phase in ["connect", "ttfb", "total"] {
        let want = hdr::decode(r.report()["phases"][phase]["hdr"].as_str().expect("hdr"))
            .expect("decodes");
        let (_, got) = sums
            .iter()
            .find(|(t, _)| t == phase)
            .unwrap_or_else(|| panic!("no {phase} line"));
        assert_eq!(got, &want, "{phase}: intervals add up to the report");
    }
    assert!(
        sums.iter().all(|(t, _)| t != "tls"),
        "plain run: no tls line"
    );
}

/// A real report: a short run against the built-in target.
fn real_report() -> Value {
    let server = serve(|_| {});
    let r = connbench(&["http", &http_url(&server, "/"), "-n", "200", "-c", "1"]);
    server.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.report().clone()
}

/// Replace a phase's histogram with `h` and its count with `count`.
fn set_phase(doc: &mut Value, phase: &str, h: &hdrhistogram::Histogram<u64>, count: u64) {
    doc["phases"][phase]["hdr"] = Value::from(hdr::try_encode(h).expect("counts fit i64"));
    doc["phases"][phase]["count"] = Value::from(count);
}

/// Write `docs` as `name0.json`, `name1.json`, … and return their paths.
fn write_all(dir: &TempDir, name: &str, docs: &[Value]) -> Vec<String> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let p = dir.path(&format!("{name}{i}.json"));
            std::fs::write(&p, d.to_string()).expect("write");
            s(&p).to_string()
        })
        .collect()
}

fn merge_files(files: &[String], extra: &[&str]) -> crate::util::Run {
    let mut args: Vec<&str> = vec!["merge"];
    args.extend(files.iter().map(String::as_str));
    args.extend(extra);
    connbench_raw(&args)
}

const I64_MAX: u64 = i64::MAX as u64;

#[test]
fn merge_refuses_histogram_counts_that_overflow() {
    let real = real_report();
    let p50 = real["phases"]["total"]["p50"].as_u64().expect("p50");
    let dir = TempDir::new("merge-hist-overflow");

    // Three reports of i64::MAX samples each: their sum does not fit in a u64 (unfixed, the
    // merge exited 0 with count 18446744073709551615), and each is past the 2^53 limit.
    let mut h = new_histogram();
    h.record_n(p50, I64_MAX).expect("in range");
    let mut big = real.clone();
    set_phase(&mut big, "total", &h, I64_MAX);
    let files = write_all(&dir, "big", &[big.clone(), big.clone(), big]);
    let r = merge_files(&files, &[]);
    assert_usage_error(&r, "big0.json: phases.total");

    // One report whose own histogram holds more than u64::MAX samples (the decoder saturates
    // the total at u64::MAX, which a count of u64::MAX then seems to confirm).
    let mut h = new_histogram();
    h.record_n(p50, I64_MAX).expect("in range");
    h.record_n(p50 * 2, I64_MAX).expect("in range");
    h.record_n(p50 * 3, 7).expect("in range");
    let mut sat = real.clone();
    set_phase(&mut sat, "total", &h, u64::MAX);
    let files = write_all(&dir, "sat", &[real.clone(), sat]);
    assert_usage_error(&merge_files(&files, &[]), "sat1.json: phases.total");
}

#[test]
fn merged_percentiles_are_never_zero_for_a_nonempty_histogram() {
    let real = real_report();
    let dir = TempDir::new("merge-p50");

    // 0 ns samples (connbench records at least 1 ns) would make the merged p50 0 ns.
    let mut h = new_histogram();
    h.record_n(0, 1_000).expect("in range");
    h.record(70_000).expect("in range");
    let mut zero = real.clone();
    set_phase(&mut zero, "ttfb", &h, 1_001);
    let files = write_all(&dir, "zero", &[real.clone(), zero]);
    assert_usage_error(&merge_files(&files, &[]), "zero1.json: phases.ttfb");

    // Huge but legal counts merge into exact, non-zero percentiles with min ≤ p50 ≤ max and
    // mean ≤ max.
    let p50 = real["phases"]["total"]["p50"].as_u64().expect("p50");
    let mut h = new_histogram();
    h.record_n(p50, 1 << 51).expect("in range");
    h.record_n(p50 * 4, 1 << 50).expect("in range");
    let mut huge = real.clone();
    set_phase(&mut huge, "total", &h, h.len());
    let files = write_all(&dir, "huge", &[huge.clone(), huge]);
    let out = dir.path("merged.json");
    let r = merge_files(&files, &["--json", s(&out)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = read_json(&out);
    let t = &m["phases"]["total"];
    let n = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("{k}: {t}"));
    assert_eq!(t["count"], 2 * h.len());
    assert_eq!(t["p50"], h.highest_equivalent(p50));
    assert!(n("min") > 0.0 && n("min") <= n("p50"), "{t}");
    assert!(n("p50") <= n("p99") && n("p99") <= n("max"), "{t}");
    assert!(n("mean") <= n("max") && n("mean") >= n("min"), "{t}");
}

#[test]
fn merge_refuses_counters_whose_sum_overflows() {
    let real = real_report();
    let dir = TempDir::new("merge-counters");
    let half = 1u64 << 63;

    let mut a = real.clone();
    a["counters"]["requests"] = Value::from(half);
    let files = write_all(&dir, "req", &[a.clone(), a]);
    assert_usage_error(&merge_files(&files, &[]), "req1.json: counters.requests");

    // Two error classes of 2^63 in one report: errors.total would wrap to 0.
    let mut e = real.clone();
    e["errors"]["io"] = Value::from(half);
    e["errors"]["protocol"] = Value::from(half);
    let files = write_all(&dir, "err", &[real.clone(), e]);
    assert_usage_error(&merge_files(&files, &[]), "err1.json: errors");
}

#[test]
fn an_older_report_without_an_error_class_still_merges() {
    let real = real_report();
    let dir = TempDir::new("merge-older");
    let mut old = real.clone();
    // Written before `stale` and `server_closes` existed: the keys are absent.
    for (obj, key) in [("errors", "stale"), ("counters", "server_closes")] {
        let map = old[obj].as_object_mut().expect("object");
        assert!(map.remove(key).is_some(), "{obj}.{key} in a real report");
    }
    let files = write_all(&dir, "r", &[real.clone(), old]);
    let out = dir.path("merged.json");
    let r = merge_files(&files, &["--json", s(&out)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = read_json(&out);
    assert_eq!(m["errors"]["stale"], real["errors"]["stale"]);
    assert_eq!(
        m["counters"]["server_closes"],
        real["counters"]["server_closes"]
    );
    let twice = |p: &str| 2 * real.pointer(p).and_then(Value::as_u64).expect(p);
    assert_eq!(m["counters"]["responses"], twice("/counters/responses"));
    assert_eq!(m["errors"]["total"], twice("/errors/total"));
}

/// Run the binary with `args`; its exit code, stderr and peak RSS (KiB, from `wait4`, so only
/// this child counts). Killed by pid if it overstays `limit`.
// The child is reaped by `wait4` (for its rusage), which clippy does not see.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str], limit: Duration) -> (i32, String, i64) {
    use std::io::Read as _;
    let mut child = Command::new(util::bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn connbench");
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            };
            return (code, err, usage.ru_maxrss);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("connbench {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn merge_memory_does_not_grow_with_the_number_of_reports() {
    // A real report whose four phases carry histograms with ~20,000 filled buckets each: a
    // few hundred KiB of report, several times that as a parsed document.
    let mut big = real_report();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for phase in PHASES {
        let mut h = new_histogram();
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Log-spaced values from 1 µs to ~60 s, counts up to 2^20.
            let v = (1_000.0 * (i as f64 * 0.00055).exp()) as u64;
            h.record_n(v.min(60_000_000_000), 1 + (x & 0xf_ffff))
                .expect("in range");
        }
        set_phase(&mut big, phase, &h, h.len());
    }
    let dir = TempDir::new("merge-rss");
    let file = dir.path("big.json");
    std::fs::write(&file, big.to_string()).expect("write");
    let size_kib = (std::fs::metadata(&file).expect("written").len() / 1024) as i64;
    assert!(size_kib > 200, "the report is big: {size_kib} KiB");

    let measure = |n: usize| {
        let mut args = vec!["merge"];
        args.extend(std::iter::repeat_n(s(&file), n));
        let (code, err, rss) = run_measured(&args, Duration::from_secs(300));
        assert_eq!(code, 0, "{err}");
        rss
    };
    let two = measure(2);
    let many = measure(40);
    // Holding every report would add ~38 parsed documents (each larger than the file); one
    // at a time adds only the per-source facts.
    assert!(
        many < two + 3 * size_kib,
        "peak RSS {many} KiB for 40 reports vs {two} KiB for 2 ({size_kib} KiB each)"
    );
}
