#![no_main]
//! The report reader and the statistics behind `connbench compare` ([`compare::read`],
//! [`compare::compare`], [`compare::render_text`]), fed untrusted input two ways:
//!
//! 1. Input that starts with `{`: arbitrary bytes as report B, compared with a real report A
//!    both ways.
//! 2. Anything else: a program that edits two copies of a real report (the `report_reader`
//!    seeds): phase histograms re-encoded with fuzzer-chosen buckets and counts (one sample,
//!    huge values, up to 2^53 samples), counts, durations and modes set to anything; then
//!    the copies are compared with fuzzer-chosen settings (replicates, effective samples,
//!    floor, confidence, a regression check).
//!
//! Either way nothing may panic, and a comparison that succeeds must hold ([`check`]): every
//! row's values are its histograms' own; a judged row has a finite interval with low ≤ high;
//! "slower"/"faster" only when the interval excludes 0, in the direction of the change; a
//! regression check fails only rows that are slower.

use std::sync::OnceLock;

use connbench::metrics::{new_histogram, HIST_MAX_NS};
use connbench::report::compare::{self, stats::Noise, Gate, Input, Metric, Options};
use connbench::report::hdr;
use connbench::report::schema::{CompareReport, Presence, Verdict};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Real reports (`connbench http`, `ws`, `http -R`, `http --tls` against the built-in target).
const SEEDS: [&str; 4] = [
    include_str!("../corpus/report_reader/http.json"),
    include_str!("../corpus/report_reader/ws.json"),
    include_str!("../corpus/report_reader/rate.json"),
    include_str!("../corpus/report_reader/tls.json"),
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

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A count of an interesting shape (small, a power of two, near 2^53).
fn count(b: &mut Bytes<'_>) -> u64 {
    let raw = b.u64();
    match b.u8() % 4 {
        0 => raw % 8,
        1 => raw % 100_000,
        2 => 1u64 << (raw % 54),
        _ => (1u64 << 53) - raw % 1024,
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

/// A phase histogram with fuzzer-chosen buckets and counts; its `count` is its length, or
/// sometimes anything.
fn rebuild_phase(doc: &mut Value, b: &mut Bytes<'_>) {
    let Some(name) = phase_name(doc, b.u8()) else {
        return;
    };
    let mut h = new_histogram();
    for _ in 0..b.u8() % 8 {
        let v = match b.u8() % 3 {
            0 => b.u64() % 4096,
            1 => b.u64() % (HIST_MAX_NS + 2),
            _ => b.u64(),
        };
        let _ = h.record_n(v, count(b));
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
    let n = if b.u8() % 8 == 0 {
        json!(b.u64())
    } else {
        json!(h.len())
    };
    doc["phases"][&name]["hdr"] = json!(blob);
    doc["phases"][&name]["count"] = n;
}

/// Edit two copies of a seed report, then the comparison's options.
fn edited(b: &mut Bytes<'_>) -> ([Value; 2], Options) {
    let head = b.u8();
    let template = &templates()[usize::from(head) % SEEDS.len()];
    let mut docs = [template.clone(), template.clone()];
    let mut steps = 0;
    while !b.is_empty() && steps < 32 {
        steps += 1;
        let op = b.u8();
        let doc = &mut docs[usize::from(op >> 7)];
        match op & 0x7 {
            0..=3 => rebuild_phase(doc, b),
            4 => doc["duration_s"] = json!(f64::from_bits(b.u64())),
            5 => doc["counters"]["responses"] = json!(b.u64()),
            6 => doc["errors"]["io"] = json!(count(b)),
            _ => doc["mode"] = json!(["http", "ws", "probe"][usize::from(b.u8() % 3)]),
        }
    }
    // Keep `errors.total` the sum of the classes, so edits reach the statistics.
    for doc in &mut docs {
        if let Some(errors) = doc["errors"].as_object() {
            let total: u64 = errors
                .iter()
                .filter(|(k, _)| *k != "total" && *k != "reasons")
                .filter_map(|(_, v)| v.as_u64())
                .fold(0, u64::saturating_add);
            doc["errors"]["total"] = json!(total);
        }
    }
    let noise = Noise {
        confidence: 0.5 + f64::from(b.u8() % 100) / 200.0,
        resamples: 1 + u32::from(b.u8() % 40),
        min_change: f64::from(b.u8()) / 100.0,
        effective_samples: match b.u8() % 3 {
            0 => 1 + b.u64() % 1000,
            1 => u64::MAX,
            _ => 300,
        },
    };
    let gate = (b.u8() & 1 == 1).then(|| Gate {
        threshold_pct: f64::from(b.u8()),
        metrics: ["p50", "p99", "ttfb.p50", "rtt.p90", "mean"]
            .iter()
            .take(usize::from(b.u8() % 3))
            .filter_map(|m| Metric::parse(m).ok())
            .collect(),
    });
    (docs, Options { noise, gate })
}

/// The invariants of a comparison of `a` and `b` (see the module doc).
fn check(a: &Input, b: &Input, c: &CompareReport) {
    for (name, p) in &c.phases {
        let (ha, hb) = (a.samples(name), b.samples(name));
        assert_eq!(p.count_a, ha.map_or(0, |h| h.len()), "{name}");
        assert_eq!(p.count_b, hb.map_or(0, |h| h.len()), "{name}");
        if p.present_in != Presence::Both {
            assert!(p.stats.is_empty(), "{name}");
            continue;
        }
        let (ha, hb) = (ha.expect("both"), hb.expect("both"));
        for (stat, r) in &p.stats {
            let q = match stat.as_str() {
                "p50" => Some(0.5),
                "p90" => Some(0.9),
                "p95" => Some(0.95),
                "p99" => Some(0.99),
                "p999" => Some(0.999),
                "max" => Some(1.0),
                _ => None,
            };
            if let Some(q) = q {
                assert_eq!(r.a, ha.value_at_quantile(q) as f64, "{name}.{stat}");
                assert_eq!(r.b, hb.value_at_quantile(q) as f64, "{name}.{stat}");
            }
            match (r.low, r.high) {
                (Some(lo), Some(hi)) => {
                    assert!(
                        lo.is_finite() && hi.is_finite() && lo <= hi,
                        "{name}.{stat}: {r:?}"
                    );
                    match r.verdict {
                        Verdict::Slower => assert!(lo > 0.0 && r.change > 0.0, "{r:?}"),
                        Verdict::Faster => assert!(hi < 0.0 && r.change < 0.0, "{r:?}"),
                        Verdict::NoChange => {}
                        v => panic!("{name}.{stat}: latency verdict {v:?}"),
                    }
                }
                (None, None) => assert_eq!(r.verdict, Verdict::NotJudged, "{r:?}"),
                _ => panic!("{name}.{stat}: half an interval: {r:?}"),
            }
        }
    }
    if let Some(g) = &c.regression {
        assert_eq!(g.passed, g.failed.is_empty());
        for f in &g.failed {
            let (phase, stat) = f.split_once('.').expect("phase.stat");
            let key = if stat == "p99.9" { "p999" } else { stat };
            assert_eq!(c.phases[phase].stats[key].verdict, Verdict::Slower, "{f}");
        }
    }
    let text = compare::render_text(c);
    assert!(text.starts_with("compare  B against A"));
}

fn run(a: &Input, b: &Input, opts: &Options) {
    if let Ok(c) = compare::compare(a, b, opts) {
        check(a, b, &c);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        let real = SEEDS[0].as_bytes();
        let (Ok(a), Ok(b)) = (compare::read("a.json", real), compare::read("b.json", data)) else {
            return;
        };
        let opts = Options {
            noise: Noise {
                resamples: 20,
                ..Noise::default()
            },
            gate: None,
        };
        run(&a, &b, &opts);
        run(&b, &a, &opts);
    } else {
        let (docs, opts) = edited(&mut Bytes(data));
        let texts: Vec<String> = docs.iter().map(Value::to_string).collect();
        let (Ok(a), Ok(b)) = (
            compare::read("a.json", texts[0].as_bytes()),
            compare::read("b.json", texts[1].as_bytes()),
        ) else {
            return;
        };
        run(&a, &b, &opts);
    }
});
