#![no_main]
//! The report reader behind `connbench merge` ([`merge_reports`]), fed untrusted input two ways:
//!
//! 1. Input that starts with `{`: arbitrary bytes as a report file, merged with itself.
//! 2. Anything else: a program that edits real reports (the seed corpus, embedded below).
//!    Counters, classes and summed settings are set to fuzzer-chosen values (near `u64::MAX`,
//!    powers of two, negative, fractional, strings) or removed; phase counts are changed;
//!    phase histograms are re-encoded with fuzzer-chosen buckets and counts, or replaced by raw
//!    HdrHistogram V2 blobs. Two or three edited copies are merged.
//!
//! Either way the reader ([`read_reports`]) must not panic, and must either refuse with an
//! error or produce measurements whose invariants hold ([`check_read`]): counters, status and
//! error classes are the inputs' sums; each phase histogram holds the sum of the inputs' counts
//! and no 0 ns sample. One input in four (a flag in the program's first byte; for raw bytes,
//! their length) is also rendered, and the report's invariants checked ([`check`]): per phase
//! 0 < min ≤ p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max and min ≤ mean ≤ max, the merged histogram decodes
//! and holds `count` samples; the summed settings are the inputs' sums, and `errors.total` is
//! the sum of the classes. (Rendering costs four times the reading: checking it on every
//! input would cut the executions by as much.)

use std::sync::OnceLock;

use base64::Engine as _;
use connbench::metrics::{new_histogram, ErrorClass, StatusClass, HIST_MAX_NS};
use connbench::report::hdr;
use connbench::report::merge::{read_reports, render_text, Combined, MergeOptions, Merged};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Real reports (`connbench http`, `ws`, `http -R`, `http --tls` against the built-in target).
const SEEDS: [&str; 4] = [
    include_str!("../corpus/report_reader/http.json"),
    include_str!("../corpus/report_reader/ws.json"),
    include_str!("../corpus/report_reader/rate.json"),
    include_str!("../corpus/report_reader/tls.json"),
];

/// Fields a program may set to a number (or something that is not one).
const FIELDS: [&str; 33] = [
    "/counters/requests",
    "/counters/responses",
    "/counters/bytes_in",
    "/counters/connections_opened",
    "/counters/reused_requests",
    "/counters/server_closes",
    "/responses/2xx",
    "/responses/429",
    "/errors/io",
    "/errors/read_timeout",
    "/errors/stale",
    "/errors/total",
    "/tls/handshakes_full",
    "/rate/unsent",
    "/rate/asked_per_s",
    "/client/peak_rss_bytes",
    "/client/workers/0/cpu_user_s",
    "/peak_open_connections",
    "/config/connections",
    "/config/threads",
    "/config/requests",
    "/ws/messages_in",
    "/ws/reconnects/stale",
    "/ws/reconnects/error",
    "/ws/close_codes/1001",
    "/ws/close_codes/other",
    "/started_at_unix_ms",
    "/ws/ping_interval_s",
    "/ws/max_retries",
    "/ws/reconnect_budget/count",
    "/ws/heartbeat",
    "/ws/mode",
    "/rate/arrival",
];

/// Fields a program may remove (what an older report may lack, and more).
const REMOVABLE: [&str; 10] = [
    "/errors/stale",
    "/errors/total",
    "/counters/server_closes",
    "/phases/tls",
    "/phases/total",
    "/peak_open_connections",
    "/tls",
    "/rate",
    "/ws/close_codes",
    "/config/requests",
];

fn templates() -> &'static [Value] {
    static T: OnceLock<Vec<Value>> = OnceLock::new();
    T.get_or_init(|| {
        SEEDS
            .iter()
            .map(|s| serde_json::from_str(s).expect("seed reports are JSON"))
            .collect()
    })
}

/// The fuzzer's bytes, consumed front to back; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.0.len().min(8);
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        a
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A count-like integer of an interesting shape.
fn count(b: &mut Bytes<'_>) -> u64 {
    let raw = b.u64();
    match b.u8() % 6 {
        0 => raw,
        1 => raw % 1024,
        2 => u64::MAX - raw % 1024,
        3 => 1u64 << (raw % 64),
        4 => (1u64 << 63) + raw % 1024,
        _ => (1u64 << 53) - raw % 1024,
    }
}

/// A JSON value for a count field: mostly integers, sometimes what a damaged file holds.
fn number(b: &mut Bytes<'_>) -> Value {
    match b.u8() % 8 {
        0..=4 => json!(count(b)),
        5 => json!(-1 - (b.u64() % 1000) as i64),
        6 => json!(f64::from_bits(b.u64())),
        _ => json!("x"),
    }
}

/// Set `ptr` in `doc`, creating (or replacing with) objects on the way.
fn set(doc: &mut Value, ptr: &str, v: Value) {
    let mut at = doc;
    let mut keys = ptr.split('/').skip(1).peekable();
    while let Some(k) = keys.next() {
        if !at.is_object() && !at.is_array() {
            *at = json!({});
        }
        let last = keys.peek().is_none();
        let slot = match at {
            Value::Array(a) => match k.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(s) => s,
                None => return,
            },
            Value::Object(m) => m.entry(k.to_string()).or_insert(Value::Null),
            _ => return,
        };
        if last {
            *slot = v;
            return;
        }
        at = slot;
    }
}

/// Remove `ptr` from `doc` if it is there.
fn remove(doc: &mut Value, ptr: &str) {
    let Some((parent, key)) = ptr.rsplit_once('/') else {
        return;
    };
    if let Some(Value::Object(m)) = doc.pointer_mut(parent) {
        m.remove(key);
    }
}

/// One of the document's phase names.
fn phase_name(doc: &Value, pick: u8) -> Option<String> {
    let phases = doc.get("phases")?.as_object()?;
    if phases.is_empty() {
        return None;
    }
    phases.keys().nth(usize::from(pick) % phases.len()).cloned()
}

/// A phase histogram with fuzzer-chosen buckets and counts, and a count field that is its
/// length, its exact sum or anything.
fn rebuild_phase(doc: &mut Value, b: &mut Bytes<'_>) {
    let Some(name) = phase_name(doc, b.u8()) else {
        return;
    };
    let mut h = new_histogram();
    let mut exact: u128 = 0;
    for _ in 0..b.u8() % 6 {
        let v = match b.u8() % 3 {
            0 => b.u64() % 4096,
            1 => b.u64() % (HIST_MAX_NS + 2),
            _ => b.u64(),
        };
        let n = count(b);
        if h.record_n(v, n).is_ok() {
            exact += u128::from(n);
        }
    }
    // Deflated as connbench writes it, or plain V2 (cheaper; the reader takes both).
    let encoded = if b.u8().is_multiple_of(4) {
        hdr::try_encode(&h)
    } else {
        hdr::try_encode_plain(&h)
    };
    let Ok(blob) = encoded else {
        return;
    };
    let n = match b.u8() % 3 {
        0 => json!(h.len()),
        1 => json!(u64::try_from(exact).unwrap_or(u64::MAX)),
        _ => number(b),
    };
    set(doc, &format!("/phases/{name}/hdr"), json!(blob));
    set(doc, &format!("/phases/{name}/count"), n);
}

/// A phase histogram replaced by a raw (uncompressed) V2 blob: header fields and payload from
/// the fuzzer.
fn raw_phase(doc: &mut Value, b: &mut Bytes<'_>) {
    let Some(name) = phase_name(doc, b.u8()) else {
        return;
    };
    let digits = u32::from(b.u8() % 7);
    let lowest = match b.u8() % 3 {
        0 => 1,
        1 => b.u64() % 10_000,
        _ => b.u64(),
    };
    let highest = match b.u8() % 3 {
        0 => HIST_MAX_NS,
        1 => b.u64() % (HIST_MAX_NS * 4),
        _ => b.u64(),
    };
    let declared = b.u8();
    let len = usize::from(b.u8() % 64);
    let payload = b.take(len).to_vec();
    let mut blob = Vec::with_capacity(40 + payload.len());
    blob.extend_from_slice(&(0x1c84_9303u32 | 0x10).to_be_bytes());
    let declared = if declared < 200 {
        payload.len() as u32
    } else {
        u32::from(declared) << 8
    };
    blob.extend_from_slice(&declared.to_be_bytes());
    blob.extend_from_slice(&0u32.to_be_bytes());
    blob.extend_from_slice(&digits.to_be_bytes());
    blob.extend_from_slice(&lowest.to_be_bytes());
    blob.extend_from_slice(&highest.to_be_bytes());
    blob.extend_from_slice(&1.0f64.to_be_bytes());
    blob.extend_from_slice(&payload);
    let text = base64::engine::general_purpose::STANDARD.encode(&blob);
    set(doc, &format!("/phases/{name}/hdr"), json!(text));
    if b.u8() & 1 == 0 {
        set(doc, &format!("/phases/{name}/count"), number(b));
    }
}

/// Run the editing program in `b` over copies of one seed report; also says whether to render.
fn edited(b: &mut Bytes<'_>) -> (Vec<Value>, MergeOptions, bool) {
    let head = b.u8();
    let render = head & 0xc0 == 0xc0;
    let template = &templates()[usize::from(head) % SEEDS.len()];
    let copies = 2 + usize::from(head >> 2) % 2;
    let opts = MergeOptions {
        allow_disjoint: head & 0x10 != 0,
        allow_mixed: head & 0x20 != 0,
    };
    let mut docs = vec![template.clone(); copies];
    let mut steps = 0;
    while !b.is_empty() && steps < 64 {
        steps += 1;
        let op = b.u8();
        let doc = &mut docs[usize::from(op >> 5) % copies];
        match op & 0x1f {
            0..=17 => {
                let field = FIELDS[usize::from(b.u8()) % FIELDS.len()];
                let v = number(b);
                set(doc, field, v);
            }
            18..=21 => rebuild_phase(doc, b),
            22..=23 => raw_phase(doc, b),
            24..=25 => remove(doc, REMOVABLE[usize::from(b.u8()) % REMOVABLE.len()]),
            26 => {
                let name = phase_name(doc, b.u8());
                if let Some(name) = name {
                    set(doc, &format!("/phases/{name}/count"), number(b));
                }
            }
            27 => set(doc, "/errors/from_a_newer_connbench", number(b)),
            28 => set(doc, "/duration_s", json!(f64::from_bits(b.u64()))),
            29 => {
                let w = json!({"connections": 1, "cpu": null, "cpu_sys_s": 0.0,
                    "cpu_user_s": f64::from_bits(b.u64()).abs(), "max_loop_stall_us": 0.0});
                if let Some(Value::Array(ws)) = doc.pointer_mut("/client/workers") {
                    ws.push(w);
                }
            }
            30 => set(
                doc,
                "/mode",
                json!(["http", "ws", "probe"][usize::from(b.u8() % 3)]),
            ),
            _ => set(doc, "/config/worker_cpus", json!([count(b), count(b)])),
        }
    }
    (docs, opts, render)
}

/// The sum over `inputs` of the integer at `ptr` (absent or not an integer: 0).
fn input_sum(inputs: &[Value], ptr: &str) -> u128 {
    inputs
        .iter()
        .map(|d| u128::from(d.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)))
        .sum()
}

/// The invariants of the reader's result from `inputs` (see the module doc).
fn check_read(inputs: &[Value], c: &Combined) {
    let same = |ptr: &str, got: u64| assert_eq!(u128::from(got), input_sum(inputs, ptr), "{ptr}");
    let n = &c.counters;
    for (key, got) in [
        ("requests", n.requests),
        ("responses", n.responses),
        ("bytes_in", n.bytes_in),
        ("bytes_out", n.bytes_out),
        ("connections_opened", n.connections_opened),
        ("connections_established", n.connections_established),
        ("reused_requests", n.reused_requests),
        ("server_closes", n.server_closes),
    ] {
        same(&format!("/counters/{key}"), got);
    }
    for s in StatusClass::ALL {
        same(&format!("/responses/{}", s.name()), n.status[s.index()]);
    }
    for e in ErrorClass::ALL {
        same(&format!("/errors/{}", e.name()), n.errors[e.index()]);
    }
    for (phase, h) in &c.hists {
        let name = phase.name();
        same(&format!("/phases/{name}/count"), h.len());
        assert_eq!(h.count_at(0), 0, "{name}: a 0 ns sample was read");
    }
    assert_eq!(c.sources.len(), inputs.len(), "one source per input");
}

/// The invariants of a merged report built from `inputs` (see the module doc).
fn check(inputs: &[Value], m: &Merged) {
    let j = &m.json;
    let sum = |ptr: &str| input_sum(inputs, ptr);
    let got = |ptr: &str| -> u64 {
        j.pointer(ptr)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{ptr} is not an integer in the merged report"))
    };
    let same = |ptr: &str| assert_eq!(u128::from(got(ptr)), sum(ptr), "{ptr}");
    for key in [
        "requests",
        "responses",
        "bytes_in",
        "bytes_out",
        "connections_opened",
        "connections_established",
        "reused_requests",
        "server_closes",
    ] {
        same(&format!("/counters/{key}"));
    }
    for key in j["responses"].as_object().expect("responses").keys() {
        same(&format!("/responses/{key}"));
    }
    let mut classes: u128 = 0;
    for (key, n) in j["errors"].as_object().expect("errors") {
        // `reasons` explains failures already counted under their class.
        if key != "total" && key != "reasons" {
            same(&format!("/errors/{key}"));
            classes += u128::from(n.as_u64().expect("a class is an integer"));
        }
    }
    assert_eq!(u128::from(got("/errors/total")), classes, "errors.total");
    if inputs.iter().all(|d| d.pointer("/errors/total").is_some()) {
        assert_eq!(classes, sum("/errors/total"), "errors.total of the inputs");
    }
    same("/client/peak_rss_bytes");
    same("/peak_open_connections");
    same("/config/connections");
    same("/config/threads");
    for (name, p) in j["phases"].as_object().expect("phases") {
        let n = got(&format!("/phases/{name}/count"));
        assert_eq!(
            u128::from(n),
            sum(&format!("/phases/{name}/count")),
            "{name}"
        );
        let h = hdr::decode(p["hdr"].as_str().expect("hdr")).expect("merged hdr decodes");
        assert_eq!(
            h.len(),
            n,
            "{name}: the merged histogram holds count samples"
        );
        if n == 0 {
            continue;
        }
        let q = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{name}.{k}: {p}"));
        let order = [q("min"), q("p50"), q("p90"), q("p99"), q("p999"), q("max")];
        assert!(order[0] > 0, "{name}: min 0 ns with {n} samples: {p}");
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{name}: {p}");
        let mean = p["mean"].as_f64().expect("mean");
        assert!(
            mean >= order[0] as f64 && mean <= order[5] as f64,
            "{name}: mean outside [min, max]: {p}"
        );
    }
    // The text summary renders from the same merge.
    let text = render_text(m);
    assert!(text.starts_with("merged "));
}

/// Read `docs` (as files would be) and check the result; render and check that too if asked.
fn read_and_check(docs: &[Value], texts: &[&[u8]], opts: &MergeOptions, render: bool) {
    let inputs = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("r{i}.json"), *t));
    if let Ok(c) = read_reports(inputs, opts) {
        check_read(docs, &c);
        if render {
            check(docs, &c.render(Vec::new()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        // Arbitrary bytes as a report, read with itself. Only what parses as JSON can be read.
        let Ok(doc) = serde_json::from_slice::<Value>(data) else {
            let inputs = [("a.json".to_string(), data), ("b.json".to_string(), data)];
            assert!(read_reports(inputs, &MergeOptions::default()).is_err());
            return;
        };
        read_and_check(
            &[doc.clone(), doc],
            &[data, data],
            &MergeOptions::default(),
            data.len().is_multiple_of(4),
        );
    } else {
        let (docs, opts, render) = edited(&mut Bytes(data));
        let texts: Vec<String> = docs.iter().map(Value::to_string).collect();
        let texts: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        read_and_check(&docs, &texts, &opts, render);
    }
});
