//! The report of `connbench probe`: a short text summary and a JSON document (`mode: "probe"`)
//! built from what [`crate::metrics::probe`] holds.
//!
//! It formats only; it never touches a socket or a clock. User strings (URL, headers, command
//! line) go through [`redact`] as in every other report. The JSON keeps the shared envelope of
//! `connbench.report.v1` (`schema`, `connbench_version`, `mode`, `started_at`,
//! `started_at_unix_ms`, `duration_s`,
//! `interrupted`, `insecure`, `command_line`, `target`, `host`, `tls`, `phases`, `client`) and
//! puts the probe's findings under `probe` and `confirm`:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `config.establish` | string | `"connect"`, `"request"` or `"websocket"`: what counts as established |
//! | `config.connect_rate` | number | connections opened per second |
//! | `config.max` | integer | most connections attempted (`--max`, or the fd limit minus a reserve) |
//! | `config.max_from_fd_limit` | bool | `config.max` was derived from the fd limit |
//! | `config.hold_s`, `config.settle_s` | number | `--hold`, `--settle` |
//! | `config.keepalive_s` | number \| null | `--keepalive` |
//! | `config.confirm_pause_s` | number \| null | pause between `--confirm` passes; null without `--confirm` |
//! | `config.headers`, `config.connect_timeout_s`, `config.tls`, `config.resume`, `config.sni`, `config.ca_file`, `config.fd_limit` | | as in the load reports |
//! | `probe.limit` | integer | connections admitted when the ramp ended: at the first failure, those settled then plus those opened before it once they settle (not the ones opened after it that raced the failure); at `max`, all open once settled |
//! | `probe.reached_max` | bool | every one of `max` connections was established, none failed |
//! | `probe.first_failure` | object \| null | `class` (label: an error class such as `connect_reset` or `local_fd_limit`, `http_429`, `ws_close_1013`), `local` (bool: this machine's limit), `status` (integer \| null), `close_code` (integer \| null), `at_s` (seconds from the start), `connection` (1-based) |
//! | `probe.failures` | object | establishment failures by label (first included) |
//! | `probe.failures_total` | integer | their sum |
//! | `probe.drops` | object | held connections lost later, by label |
//! | `probe.drops_total` | integer | their sum |
//! | `probe.series` | array of `[t_s, open]` | established connections open, every 100 ms and at the end |
//! | `probe.survived` | object | `survived` of `of` (the connections counted in the limit, still open after `hold_s`) |
//! | `probe.attempted`, `probe.established`, `probe.unresolved`, `probe.peak_open` | integer | connections tried, established, still in progress at the end, most open at once |
//! | `confirm` | object \| null | `result` (`"stable"`, `"unstable"`, `"skipped"`), `reason`, `below` and `above` (each null or `{max, limit, reached_max, first_failure}`) |
//! | `phases.{connect,tls,total,upgrade}` | object | as in the load reports (`total`: the establishing request; `upgrade`: the 101) |
//! | `client` | object | `cpu_user_s`, `cpu_sys_s`, `peak_rss_bytes` |
//! | `merged_from` | array of string | merged probes only (`connbench merge` of probe reports, [`super::merge_probe`]): the input files, in order |
//! | `sources` | array of object | merged probes only: per input, `file`, `started_at_unix_ms`, `duration_s`, `limit`, `first_failure` (label \| null), `first_failure_at_unix_ms` (number \| null), `held_at_first_failure` (integer \| null: its open connections when the aggregate's first failure came) |
//! | `aggregate.limit` | integer | merged probes only: connections held across all machines when the first failure came (the failing probe's `limit` plus the others' series at that instant, first sample at or after it, capped by their own limits); the sum of the limits when none failed. Also written as `probe.limit` |
//! | `aggregate.limit_low` | integer | the same from the others' last samples before the failure (the two differ by what they opened within one 100 ms sample) |
//! | `aggregate.machines` | integer | probes merged |
//! | `aggregate.first_failure` | object \| null | which machine saw the first failure: `source` (0-based input), `file`, `class`, `at_unix_ms`. In a merged report `probe.first_failure` is that probe's, its `at_s` from the merged start; `probe.series` is the sum of the probes' series on a 100 ms grid; counts, `config.max` and `config.connect_rate` are summed; `confirm` is null |
//! | `start_at` | string \| null | `--start-at`: the instant asked for, RFC 3339 UTC (with the fraction given); null without it |
//! | `start_skew_s` | number \| null | actual − asked start, seconds (the probe's clock, `started_at`, starts when the wait ends); null without `--start-at` |
//! | `warnings` | array of strings | what may make the finding mislead ([`warnings`]): a `--max` the fd limit cuts short; no limit found by a probe that never asked the server for anything |
//! | `config.percentiles` | array of number | `--percentiles`, as in the load reports |
//! | `thresholds` | array of object | `--threshold` and `--targets seed` checked against the probe, as in the load reports (`connections` is `probe.limit`) |
//! | `nothing_measured` | string \| null | why the probe measured nothing (it never established a connection): exit 3 unless `--allow-nothing-measured`; null otherwise |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::host::HostFacts;
use super::json::{ca_file, headers, phases, rfc3339, target, thresholds, tls, unix_ms, SCHEMA};
use super::text::dur_compact;
use super::{redact, schema, threshold, RunMeta};
use crate::metrics::probe::{Cause, FirstFailure, PassResult, ProbeResult};
use crate::metrics::Phase;
use crate::plan::{Establish, ProbePlan};

/// The probe's own settings, as the reports show them.
#[derive(Clone, Debug)]
pub struct ProbeMeta {
    /// The probe's plan: what it reports of its settings comes from here.
    pub plan: ProbePlan,
    /// `plan.max` came from the fd limit (no `--max`).
    pub max_from_fd_limit: bool,
    /// The most connections the fd limit leaves room for (the in-process target's ends
    /// counted), when that is well below `plan.max` (see [`fd_warning`]).
    pub fd_room: Option<u64>,
}

/// The warning before a probe whose `--max` the fd limit cuts well short (at most `room`
/// connections fit): it would end with a local `fd_limit` failure, not the server's limit.
pub fn fd_warning(max: usize, room: u64, fd_limit: u64) -> String {
    format!(
        "--max {max} is above what RLIMIT_NOFILE {fd_limit} allows (at most {room} \
         connections): the probe will stop short of it with a LOCAL fd_limit failure, not the \
         server's limit; raise the limit (ulimit -n) or lower --max"
    )
}

/// What may make the finding mislead, one line each (text, JSON `warnings`, and stderr).
pub fn warnings(meta: &RunMeta, p: &ProbeMeta, r: &ProbeResult) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(room) = p.fd_room {
        out.push(fd_warning(p.plan.max, room, meta.fd_limit));
    }
    let pass = &r.pass;
    if pass.first_failure.is_none() && pass.reached_max && p.plan.establish == Establish::Connect {
        let refused: Vec<(u16, u64)> = pass
            .failures
            .iter()
            .chain(&pass.drops)
            .filter_map(|(c, n)| c.status().map(|s| (s, *n)))
            .collect();
        if refused.is_empty() {
            out.push(
                "no limit found, but a connect-only probe never asks the server for anything: \
                 a server that accepts every connection and answers 429 to its requests looks \
                 unlimited here; add --request to count only the connections it serves"
                    .to_string(),
            );
        } else {
            let list: Vec<String> = refused.iter().map(|(s, n)| format!("{n}× {s}")).collect();
            out.push(format!(
                "no limit found, yet the server answered keep-alive requests with {}: it \
                 accepts connections it does not serve; add --request so that a refused \
                 request counts as not established",
                list.join(", ")
            ));
        }
    }
    out
}

/// The phases a probe reports.
const PHASES: [Phase; 4] = [Phase::Connect, Phase::Tls, Phase::Total, Phase::Upgrade];
/// Most points of the time series printed in the text summary.
const SERIES_POINTS: usize = 12;

/// The human summary.
pub fn text(meta: &RunMeta, p: &ProbeMeta, r: &ProbeResult) -> String {
    let pass = &r.pass;
    let mut out = String::new();
    let _ = write!(
        out,
        "connbench {}  probe  {}",
        env!("CARGO_PKG_VERSION"),
        redact::url(&meta.url)
    );
    if meta.builtin_target {
        out.push_str("  (built-in target)");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "  establish: {}, {} conn/s, max {}{}, settle {}, hold {}{}",
        p.plan.establish.name(),
        p.plan.connect_rate,
        p.plan.max,
        if p.max_from_fd_limit {
            " (fd limit)"
        } else {
            ""
        },
        secs(p.plan.settle),
        secs(p.plan.hold),
        p.plan
            .keepalive
            .map(|k| format!(", keep-alive every {}", secs(k)))
            .unwrap_or_default()
    );
    out.push('\n');

    match &pass.first_failure {
        Some(f) => {
            let _ = writeln!(
                out,
                "  limit          {} connections open at the first failure ({} in)",
                pass.limit,
                secs(f.at)
            );
            let _ = writeln!(
                out,
                "  first failure  {} on connection {}{}",
                f.cause.label(),
                f.connection,
                if f.cause.is_local() {
                    " (LOCAL: this machine's limit, not the server's)"
                } else {
                    " (server side)"
                }
            );
        }
        None if pass.reached_max => {
            let _ = writeln!(
                out,
                "  limit          not found: all {} connections were established (raise --max)",
                pass.max
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  limit          not found: {} connections open when the probe stopped",
                pass.limit
            );
        }
    }
    let _ = writeln!(out, "  failures       {}", counts(&pass.failures));
    let _ = writeln!(out, "  drops          {}", counts(&pass.drops));
    let _ = writeln!(
        out,
        "  survived       {} of {} after holding {}",
        pass.survived,
        pass.held,
        secs(p.plan.hold)
    );
    let _ = writeln!(
        out,
        "  connections    {} attempted, {} established, peak {} open{}",
        pass.attempted,
        pass.established,
        pass.peak_open,
        if pass.unresolved > 0 {
            format!(", {} unresolved at the end", pass.unresolved)
        } else {
            String::new()
        }
    );
    if let Some(c) = &r.confirm {
        let _ = writeln!(out, "  confirm        {}: {}", c.stability.name(), c.reason);
    }
    let _ = writeln!(out, "  open over time {}", series_line(&pass.series));
    out.push('\n');
    for phase in PHASES {
        let h = pass.recorder.histogram(phase);
        if h.is_empty() {
            continue;
        }
        let _ = write!(out, "  {:<8}", phase.name());
        for p in meta.percentiles.columns() {
            let _ = write!(out, " {} {:>8} ", p.label(), dur_compact(p.of(h) as f64));
        }
        let _ = writeln!(
            out,
            " max {:>8}  ({} samples)",
            dur_compact(h.max() as f64),
            h.len()
        );
    }
    out.push_str(&threshold::render_text(
        meta,
        &threshold::evaluate(&threshold::Source::Probe(meta, pass)),
    ));
    if let Some(why) = threshold::probe_nothing_measured(pass) {
        let _ = writeln!(out, "{}: {why}", super::text::NOTHING_MEASURED);
    }
    for w in warnings(meta, p, r) {
        let _ = writeln!(out, "warning: {w}");
    }
    if r.interrupted {
        let _ = writeln!(out, "{}", super::text::INTERRUPTED_NOTE);
    }
    if meta.insecure() {
        let _ = writeln!(out, "{}", super::text::INSECURE_WARNING);
    }
    out
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.1}s")
    } else {
        format!("{s:.2}s")
    }
}

fn counts(v: &[(Cause, u64)]) -> String {
    if v.is_empty() {
        return "none".to_string();
    }
    v.iter()
        .map(|(c, n)| format!("{} {n}", c.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// At most [`SERIES_POINTS`] evenly spaced samples, the last one always included.
fn series_line(series: &[(f64, u64)]) -> String {
    if series.is_empty() {
        return "-".to_string();
    }
    let step = series.len().div_ceil(SERIES_POINTS).max(1);
    let mut picked: Vec<(f64, u64)> = series.iter().step_by(step).copied().collect();
    if let (Some(last), Some(all_last)) = (picked.last(), series.last()) {
        if last.0 != all_last.0 {
            picked.push(*all_last);
        }
    }
    picked
        .iter()
        .map(|(t, n)| format!("{t:.1}s:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The JSON document (fields in the module doc).
pub fn json(meta: &RunMeta, p: &ProbeMeta, r: &ProbeResult, host: &HostFacts) -> Value {
    schema::to_value(&report(meta, p, r, host))
}

/// The JSON document as its [`schema::ProbeReport`] type.
pub fn report(
    meta: &RunMeta,
    p: &ProbeMeta,
    r: &ProbeResult,
    host: &HostFacts,
) -> schema::ProbeReport {
    let pass = &r.pass;
    let rec = &pass.recorder;
    let started_ms = unix_ms(r.started_at);
    schema::ProbeReport {
        schema: SCHEMA.to_string(),
        connbench_version: env!("CARGO_PKG_VERSION").to_string(),
        mode: "probe".to_string(),
        started_at: rfc3339(started_ms.div_euclid(1000)),
        started_at_unix_ms: started_ms,
        duration_s: r.elapsed.as_secs_f64(),
        interrupted: r.interrupted,
        insecure: meta.insecure(),
        command_line: redact::command_line(&meta.command_line),
        target: target(meta),
        config: schema::ProbeConfig {
            establish: p.plan.establish.name().to_string(),
            connect_rate: p.plan.connect_rate,
            max: p.plan.max as u64,
            max_from_fd_limit: p.max_from_fd_limit,
            hold_s: p.plan.hold.as_secs_f64(),
            settle_s: p.plan.settle.as_secs_f64(),
            keepalive_s: p.plan.keepalive.map(|d| d.as_secs_f64()),
            confirm_pause_s: p.plan.confirm.map(|d| d.as_secs_f64()),
            headers: headers(meta),
            connect_timeout_s: meta.connect_timeout.as_secs_f64(),
            tls: meta.tls.is_some(),
            resume: meta.tls.as_ref().is_none_or(|t| t.resume),
            sni: meta.tls.as_ref().and_then(|t| t.sni.clone()),
            ca_file: ca_file(meta),
            fd_limit: meta.fd_limit,
            percentiles: meta.percentiles.values(),
        },
        host: host.into(),
        probe: schema::Probe {
            limit: pass.limit,
            reached_max: pass.reached_max,
            first_failure: pass.first_failure.as_ref().map(first_failure),
            failures: by_label(&pass.failures),
            failures_total: pass.failures_total(),
            drops: by_label(&pass.drops),
            drops_total: pass.drops_total(),
            series: pass.series.clone(),
            survived: schema::Survived {
                survived: pass.survived,
                of: pass.held,
            },
            attempted: pass.attempted,
            established: pass.established,
            unresolved: pass.unresolved,
            peak_open: pass.peak_open,
        },
        confirm: r.confirm.as_ref().map(|c| schema::Confirm {
            result: c.stability.name().to_string(),
            reason: c.reason.clone(),
            below: c.below.as_ref().map(pass_summary),
            above: c.above.as_ref().map(pass_summary),
        }),
        tls: tls(meta, rec),
        phases: phases(&PHASES, rec, &meta.percentiles),
        client: schema::ProbeClient {
            cpu_user_s: r.cpu_user_ns as f64 / 1e9,
            cpu_sys_s: r.cpu_sys_ns as f64 / 1e9,
            peak_rss_bytes: r.peak_rss_bytes,
        },
        warnings: warnings(meta, p, r),
        thresholds: thresholds(&threshold::evaluate(&threshold::Source::Probe(meta, pass))),
        nothing_measured: threshold::probe_nothing_measured(pass),
        start_at: p.plan.start_at.map(super::json::rfc3339_precise),
        start_skew_s: p
            .plan
            .start_at
            .map(|at| match r.started_at.duration_since(at) {
                Ok(late) => late.as_secs_f64(),
                Err(early) => -early.duration().as_secs_f64(),
            }),
    }
}

fn first_failure(f: &FirstFailure) -> schema::FirstFailure {
    schema::FirstFailure {
        class: f.cause.label(),
        local: f.cause.is_local(),
        status: f.cause.status().map(u64::from),
        close_code: f.cause.close_code().map(u64::from),
        at_s: f.at.as_secs_f64(),
        connection: f.connection,
    }
}

fn by_label(v: &[(Cause, u64)]) -> BTreeMap<String, u64> {
    v.iter().map(|(c, n)| (c.label(), *n)).collect()
}

fn pass_summary(p: &PassResult) -> schema::PassSummary {
    schema::PassSummary {
        max: p.max as u64,
        limit: p.limit,
        reached_max: p.reached_max,
        first_failure: p.first_failure.as_ref().map(first_failure),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::metrics::probe::{Confirm, Stability};
    use crate::metrics::{ErrorClass, Recorder};
    use crate::plan::Establish;
    use std::time::SystemTime;

    fn result() -> ProbeResult {
        let mut rec = Recorder::new();
        rec.record(Phase::Connect, 50_000);
        let pass = PassResult {
            max: 1000,
            limit: 300,
            reached_max: false,
            first_failure: Some(FirstFailure {
                cause: Cause::Error(ErrorClass::ConnectReset),
                at: Duration::from_millis(3010),
                connection: 301,
            }),
            failures: vec![(Cause::Error(ErrorClass::ConnectReset), 1)],
            drops: vec![],
            series: (0..40)
                .map(|i| (i as f64 / 10.0, (i * 10).min(300)))
                .collect(),
            held: 300,
            survived: 300,
            attempted: 301,
            established: 300,
            unresolved: 0,
            peak_open: 300,
            elapsed: Duration::from_secs(5),
            interrupted: false,
            recorder: rec,
        };
        ProbeResult {
            confirm: Some(Confirm {
                stability: Stability::Stable,
                reason: "ok".into(),
                below: Some(pass.clone()),
                above: None,
            }),
            pass,
            started_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(5),
            interrupted: false,
            peak_rss_bytes: 0,
            cpu_user_ns: 0,
            cpu_sys_ns: 0,
        }
    }

    fn meta() -> (RunMeta, ProbeMeta) {
        let url = "http://user:hunter2@127.0.0.1:1/?api_key=s3cret";
        let headers = vec![("Authorization".to_string(), "Bearer s3cret".to_string())];
        let plan = ProbePlan {
            target: crate::plan::Target {
                scheme: crate::plan::Scheme::Http,
                host: "127.0.0.1".into(),
                port: 1,
                path: "/?api_key=s3cret".into(),
                authority: "127.0.0.1:1".into(),
                addrs: vec!["127.0.0.1:1".parse().unwrap()],
                url: url.into(),
            },
            progress: crate::plan::ProgressWhen::Never,
            tls: Default::default(),
            headers: headers.clone(),
            connect_rate: 100.0,
            max: 1000,
            hold: Duration::from_secs(2),
            settle: Duration::from_millis(100),
            establish: Establish::Connect,
            keepalive: None,
            connect_timeout: Duration::from_secs(1),
            confirm: Some(Duration::from_secs(1)),
            start_at: None,
        };
        (
            RunMeta {
                headers,
                ..RunMeta::new(crate::plan::Mode::Probe, url)
            },
            ProbeMeta {
                plan,
                max_from_fd_limit: false,
                fd_room: None,
            },
        )
    }

    /// `result()` with no failure up to `max`, and `drops` as the held connections' losses.
    fn unlimited(drops: Vec<(Cause, u64)>) -> ProbeResult {
        let mut r = result();
        r.pass.first_failure = None;
        r.pass.failures.clear();
        r.pass.reached_max = true;
        r.pass.limit = 1000;
        r.pass.drops = drops;
        r
    }

    #[test]
    fn a_connect_only_probe_that_found_no_limit_says_it_never_asked_the_server() {
        let (m, p) = meta();
        let w = warnings(&m, &p, &unlimited(vec![]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("never asks the server") && w[0].contains("--request"),
            "{w:?}"
        );
        let text = text(&m, &p, &unlimited(vec![]));
        assert!(text.contains(&format!("warning: {}", w[0])), "{text}");
        let v = json(&m, &p, &unlimited(vec![]), &HostFacts::collect());
        assert_eq!(v["warnings"], json!(w));
    }

    #[test]
    fn keep_alives_answered_429_while_no_limit_was_found_are_named_in_the_warning() {
        let (m, p) = meta();
        let w = warnings(
            &m,
            &p,
            &unlimited(vec![
                (Cause::Status(429), 7),
                (Cause::Error(ErrorClass::ReadTimeout), 1),
            ]),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("7× 429") && w[0].contains("--request"),
            "{w:?}"
        );
    }

    #[test]
    fn a_limit_found_or_a_probe_that_asks_needs_no_hint() {
        let (m, mut p) = meta();
        assert!(warnings(&m, &p, &result()).is_empty(), "a limit was found");
        assert_eq!(
            json(&m, &p, &result(), &HostFacts::collect())["warnings"],
            json!([])
        );
        p.plan.establish = Establish::Request;
        assert!(
            warnings(&m, &p, &unlimited(vec![])).is_empty(),
            "--request asks"
        );
    }

    #[test]
    fn a_max_the_fd_limit_cuts_short_is_warned_about() {
        let (mut m, mut p) = meta();
        m.fd_limit = 128;
        p.fd_room = Some(128);
        let w = warnings(&m, &p, &result());
        assert_eq!(w, vec![fd_warning(1000, 128, 128)]);
        assert!(
            w[0].contains("--max 1000") && w[0].contains("RLIMIT_NOFILE 128"),
            "{w:?}"
        );
        assert!(w[0].contains("LOCAL"), "{w:?}");
    }

    #[test]
    fn json_carries_limit_failure_series_survival_and_confirm() {
        let (m, p) = meta();
        let v = json(&m, &p, &result(), &HostFacts::collect());
        assert_eq!(v["mode"], "probe");
        assert_eq!(v["probe"]["limit"], 300);
        let f = &v["probe"]["first_failure"];
        assert_eq!(f["class"], "connect_reset");
        assert_eq!(f["local"], false);
        assert!(f["status"].is_null());
        assert_eq!(f["connection"], 301);
        assert_eq!(v["probe"]["failures"]["connect_reset"], 1);
        assert_eq!(v["probe"]["series"].as_array().map(Vec::len), Some(40));
        assert_eq!(v["probe"]["series"][39], json!([3.9, 300]));
        assert_eq!(v["probe"]["survived"], json!({"survived": 300, "of": 300}));
        assert_eq!(v["confirm"]["result"], "stable");
        assert_eq!(v["confirm"]["below"]["limit"], 300);
        assert!(v["confirm"]["above"].is_null());
        assert_eq!(v["phases"]["connect"]["count"], 1);
        assert_eq!(v["phases"]["upgrade"]["count"], 0);
        let s = v.to_string();
        assert!(!s.contains("hunter2") && !s.contains("s3cret"), "{s}");
    }

    #[test]
    fn text_names_the_failure_and_whose_limit_it_is() {
        let (m, p) = meta();
        let mut r = result();
        let t = text(&m, &p, &r);
        assert!(
            t.contains("300 connections open at the first failure"),
            "{t}"
        );
        assert!(
            t.contains("connect_reset on connection 301 (server side)"),
            "{t}"
        );
        assert!(t.contains("survived       300 of 300"), "{t}");
        assert!(t.contains("confirm        stable"), "{t}");
        assert!(
            t.contains("3.9s:300"),
            "the last sample is always shown: {t}"
        );
        assert!(!t.contains("hunter2"), "{t}");
        r.pass.first_failure = Some(FirstFailure {
            cause: Cause::Error(ErrorClass::FdLimit),
            at: Duration::from_secs(1),
            connection: 90,
        });
        let t = text(&m, &p, &r);
        assert!(t.contains("local_fd_limit on connection 90 (LOCAL"), "{t}");
    }

    #[test]
    fn series_line_is_bounded() {
        let series: Vec<(f64, u64)> = (0..1000).map(|i| (i as f64 / 10.0, i)).collect();
        let line = series_line(&series);
        assert!(line.split(' ').count() <= SERIES_POINTS + 1, "{line}");
        assert!(line.ends_with("99.9s:999"), "{line}");
        assert_eq!(series_line(&[]), "-");
    }
}
