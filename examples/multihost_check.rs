//! The checker of `scripts/multihost.sh`: are the merged reports of a multi-machine run exact?
//! Written apart from `connbench merge` (it never calls `Histogram::add` or the merge code):
//! the merged percentiles must be those of the concatenated samples, the merged counts the sum
//! of the parts and the target's own count.
//!
//! ```text
//! multihost_check load  --target-stats S.json --merged M.json --hlog M.hlog PART.json…
//! multihost_check probe --target-stats S.json --merged M.json --limit N PART.json…
//! ```
//!
//! Prints one `ok …` line per check, or `FAIL …` lines and exits 1.

use std::process::ExitCode;

use connbench::report::hdr;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::Histogram;
use serde_json::Value;

fn read(path: &str) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn u(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{ptr} missing or not an integer"))
}

/// Every bucket of `h` as (highest equivalent value, count).
fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| {
            (
                h.highest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
        .collect()
}

/// The samples of all `parts` in one histogram, each bucket's value recorded as often as it
/// was counted (no `Histogram::add`).
fn concatenated(parts: &[Histogram<u64>]) -> Histogram<u64> {
    let mut all = connbench::metrics::new_histogram();
    for h in parts {
        for (value, count) in buckets(h) {
            all.record_n(value, count).expect("in range");
        }
    }
    all
}

struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        if ok {
            println!("ok    {what}");
        } else {
            println!("FAIL  {what}");
            self.0.push(what);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let flag = |name: &str| -> Option<String> {
        let i = args.iter().position(|a| a == name)?;
        Some(
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{name} needs a value"))
                .clone(),
        )
    };
    let stats = read(&flag("--target-stats").expect("--target-stats"));
    let merged = read(&flag("--merged").expect("--merged"));
    let hlog = flag("--hlog");
    let limit = flag("--limit").map(|l| l.parse::<u64>().expect("--limit N"));
    let mut skip = false;
    let parts: Vec<Value> = args[1..]
        .iter()
        .filter(|a| {
            if skip {
                skip = false;
                return false;
            }
            if a.starts_with("--") {
                skip = true;
                return false;
            }
            true
        })
        .map(|p| read(p))
        .collect();
    let mut c = Checks(Vec::new());
    let k = parts.len();
    match mode.as_str() {
        "load" => {
            for ptr in [
                "/counters/requests",
                "/counters/responses",
                "/counters/connections_opened",
                "/counters/connections_established",
                "/errors/total",
            ] {
                let sum: u64 = parts.iter().map(|p| u(p, ptr)).sum();
                let got = u(&merged, ptr);
                c.check(
                    got == sum,
                    format!("{ptr}: merged {got} = sum of the {k} parts {sum}"),
                );
            }
            let established: u64 = parts
                .iter()
                .map(|p| u(p, "/counters/connections_established"))
                .sum();
            let accepted = u(&stats, "/accepted");
            c.check(
                established == accepted,
                format!("connections: the parts established {established}, the target accepted {accepted}"),
            );
            let responses = u(&merged, "/counters/responses");
            let served = u(&stats, "/requests");
            // A request in flight when the run ended is answered by the target but never
            // framed by the client, so the target may have served a few more.
            c.check(
                responses > 0 && served >= responses,
                format!("responses: merged {responses}, the target served {served}"),
            );
            let mut logged: Vec<(String, Histogram<u64>)> = Vec::new();
            if let Some(path) = &hlog {
                let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
                for e in IntervalLogIterator::new(&bytes) {
                    if let LogEntry::Interval(i) = e.expect("the merged log parses") {
                        let tag = i.tag().expect("tagged").as_str().to_string();
                        let h = hdr::decode(i.encoded_histogram()).expect("hdr");
                        match logged.iter_mut().find(|(t, _)| *t == tag) {
                            Some((_, all)) => *all = concatenated(&[all.clone(), h]),
                            None => logged.push((tag, h)),
                        }
                    }
                }
            }
            for phase in ["connect", "ttfb", "total"] {
                let decode = |v: &Value| {
                    hdr::decode(v["phases"][phase]["hdr"].as_str().expect("hdr")).expect("hdr")
                };
                let all = concatenated(&parts.iter().map(decode).collect::<Vec<_>>());
                let got = decode(&merged);
                c.check(
                    buckets(&got) == buckets(&all),
                    format!(
                        "{phase}: the merged histogram holds the concatenated samples ({})",
                        all.len()
                    ),
                );
                for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
                    let want = all.value_at_quantile(q);
                    let have = u(&merged, &format!("/phases/{phase}/{key}"));
                    c.check(
                        have == want,
                        format!("{phase} {key}: merged {have} ns = concatenated {want} ns"),
                    );
                }
                let (have, want) = (u(&merged, &format!("/phases/{phase}/max")), all.max());
                c.check(
                    have == want,
                    format!("{phase} max: merged {have} ns = concatenated {want} ns"),
                );
                if hlog.is_some() {
                    let in_log = logged
                        .iter()
                        .find(|(t, _)| t == phase)
                        .map(|(_, h)| buckets(h));
                    c.check(
                        in_log.as_ref() == Some(&buckets(&all)),
                        format!("{phase}: the merged interval log holds the same samples"),
                    );
                }
            }
        }
        "probe" => {
            let limit = limit.expect("--limit N");
            let got = u(&merged, "/aggregate/limit");
            c.check(
                got == limit,
                format!("aggregate limit: merged {got} = the target's --max-conns {limit}"),
            );
            let accepted = u(&stats, "/accepted");
            c.check(
                accepted == limit,
                format!("the target admitted {accepted} = --max-conns {limit}"),
            );
            let machines = u(&merged, "/aggregate/machines");
            c.check(
                machines == k as u64,
                format!("{machines} machines merged of {k}"),
            );
            let held: u64 = merged["sources"]
                .as_array()
                .expect("sources")
                .iter()
                .filter_map(|s| s["held_at_first_failure"].as_u64())
                .sum();
            let spread = merged["sources"]
                .as_array()
                .expect("sources")
                .iter()
                .filter(|s| s["held_at_first_failure"].as_u64().unwrap_or(0) > 0)
                .count();
            c.check(held == limit, format!("held across the machines: {held}"));
            c.check(
                spread >= 2,
                format!("the limit was held across {spread} machines, not one"),
            );
            let who = merged["aggregate"]["first_failure"]["file"]
                .as_str()
                .unwrap_or("(none)");
            println!("      first failure seen by {who}");
        }
        other => panic!("unknown mode {other:?}: load or probe"),
    }
    if c.0.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
