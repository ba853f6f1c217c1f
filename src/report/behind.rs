//! Who fell behind a rate-mode schedule (`-R`, WebSocket echo): the client or the server.
//!
//! The open-loop schedule (`engine::pace`) says when each request (echo message) is due. When
//! requests go out late or never, either the client could not keep its own schedule or the
//! server held it up, and the remedy differs (more client CPU or connections, or a look at the
//! server). The evidence, all in every report so merged reports get the same verdict:
//!
//! 1. **Send lag** (`send_lag`): how late the client's loop released each request. It is the
//!    client's own lateness only (`pace` rule 5): a request queued for a busy connection is not
//!    late in it.
//! 2. **Lateness**: corrected p99 − uncorrected p99 (uncorrected: `total` for HTTP, the echo
//!    `rtt` for WebSocket). Requests that waited before being written, for whatever reason.
//! 3. **Unsent**: requests due and never written.
//! 4. **Capacity** (HTTP, one request in flight per connection): `-R` × the server's median
//!    response time is the number of connections the schedule needs (Little's law). Fewer means
//!    the client could never have kept it, even with the server answering as usual.
//! 5. **Outages** (WebSocket): messages owed while the server had dropped the connection.
//!
//! Rules, in order: nothing to say unless the schedule slipped (unsent past a handful, or send
//! lag or lateness p99 over [`SLIP_NS`]). The client is behind when its send lag is over the
//! threshold and explains at least half the lateness (its loop released requests late), or,
//! for HTTP, when its connections cannot carry `-R` at the server's median response time.
//! Otherwise the server is: its connection drops (WebSocket outages) or its late responses kept
//! every connection busy while the client released requests on time.

use super::{RunMeta, RunResult};
use crate::metrics::Phase;

/// Send lag or lateness p99 above this means the schedule slipped (a millisecond: the timer
/// fires within microseconds, so this is a real stall, not timer slack).
pub const SLIP_NS: u64 = 1_000_000;

/// Who could not keep the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The load generator itself.
    Client,
    /// The system under test.
    Server,
}

impl Who {
    /// Stable name: "client", "server".
    pub fn name(self) -> &'static str {
        match self {
            Who::Client => "client",
            Who::Server => "server",
        }
    }
}

/// Why, in one word a report can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The client's loop released requests late (rule 1).
    SendLag,
    /// Too few connections for the rate at the server's median response time (rule 4).
    Connections,
    /// Requests released on time waited for responses that came late (rules 1–2).
    LateResponses,
    /// The server dropped connections and messages due meanwhile went out late (rule 5).
    Outages,
}

impl Cause {
    /// Stable name used in JSON (`rate.behind_cause`).
    pub fn name(self) -> &'static str {
        match self {
            Cause::SendLag => "send_lag",
            Cause::Connections => "connections",
            Cause::LateResponses => "late_responses",
            Cause::Outages => "outages",
        }
    }
}

/// The verdict and the numbers it rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behind {
    /// Who fell behind.
    pub who: Who,
    /// Why.
    pub cause: Cause,
    /// Send lag p99, ns.
    pub send_lag_p99: u64,
    /// Corrected p99, ns.
    pub corrected_p99: u64,
    /// Uncorrected p99 (HTTP total, echo rtt), ns.
    pub uncorrected_p99: u64,
    /// Uncorrected median: the server's usual response time, ns.
    pub uncorrected_p50: u64,
}

/// Rule 4: connections the schedule needs at the server's median response time (HTTP only;
/// None without a rate, a response, or for WebSocket echo, which has no in-flight limit).
pub fn connections_needed(meta: &RunMeta, run: &RunResult) -> Option<u64> {
    let (asked, _) = meta.rate.as_ref()?;
    if meta.ws.is_some() {
        return None;
    }
    let h = run.recorder.histogram(Phase::Total);
    if h.is_empty() {
        return None;
    }
    // The bucket's lowest value: HdrHistogram's rounding must not add a connection.
    let p50 = h.lowest_equivalent(h.value_at_quantile(0.5));
    let busy = asked * p50 as f64 / 1e9;
    Some(busy.ceil() as u64)
}

/// The verdict of a rate-mode run (module rules), or None when the schedule held (or the run
/// was not in rate mode).
pub fn verdict(meta: &RunMeta, run: &RunResult) -> Option<Behind> {
    meta.rate.as_ref()?;
    let rec = &run.recorder;
    let c = &rec.counters;
    let p = |phase: Phase, q: f64| {
        let h = rec.histogram(phase);
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    let service = if meta.ws.is_some() {
        Phase::Rtt
    } else {
        Phase::Total
    };
    let send_lag_p99 = p(Phase::SendLag, 0.99);
    let corrected_p99 = p(Phase::Corrected, 0.99);
    let uncorrected_p99 = p(service, 0.99);
    let lateness = corrected_p99.saturating_sub(uncorrected_p99);
    // A request due in the last instant before the stop is honestly unsent but is no sign of
    // trouble: one per connection (or per worker), or one in a thousand.
    let tolerated = (meta.connections as u64)
        .max(run.workers.len() as u64)
        .max(c.requests / 1000);
    if c.unsent <= tolerated && send_lag_p99 <= SLIP_NS && lateness <= SLIP_NS {
        return None;
    }
    let (who, cause) = if send_lag_p99 > SLIP_NS && send_lag_p99.saturating_mul(2) >= lateness {
        (Who::Client, Cause::SendLag)
    } else if connections_needed(meta, run).is_some_and(|n| n > meta.connections as u64) {
        (Who::Client, Cause::Connections)
    } else if meta.ws.is_some() && c.ws.buffered_sent + c.ws.buffer_dropped > 0 {
        (Who::Server, Cause::Outages)
    } else {
        (Who::Server, Cause::LateResponses)
    };
    Some(Behind {
        who,
        cause,
        send_lag_p99,
        corrected_p99,
        uncorrected_p99,
        uncorrected_p50: p(service, 0.5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Recorder;
    use crate::plan::{Arrival, Mode, WsMode, WsSession};

    fn http(rate: f64, connections: usize) -> RunMeta {
        RunMeta {
            connections,
            rate: Some((rate, Arrival::Uniform)),
            ..RunMeta::new(Mode::Http, "http://127.0.0.1:1/")
        }
    }

    fn echo(rate: f64, connections: usize) -> RunMeta {
        RunMeta {
            mode: Mode::Ws,
            ws: Some(WsSession::example(WsMode::Echo)),
            ..http(rate, connections)
        }
    }

    fn run(rec: Recorder) -> RunResult {
        RunResult {
            recorder: rec,
            workers: vec![Default::default()],
            started_at: std::time::SystemTime::UNIX_EPOCH,
            elapsed: std::time::Duration::from_secs(3),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: 0,
            intervals: Vec::new(),
            stages: Vec::new(),
            worker_panics: Vec::new(),
            time_wait: None,
        }
    }

    const MS: u64 = 1_000_000;

    /// `n` requests: send lag `lag`, uncorrected `service`, corrected `service + wait`.
    fn record(rec: &mut Recorder, uncorrected: Phase, n: u64, lag: u64, service: u64, wait: u64) {
        for _ in 0..n {
            rec.record(Phase::SendLag, lag);
            rec.record(uncorrected, service);
            rec.record(Phase::Corrected, service + lag + wait);
            rec.counters.requests += 1;
        }
    }

    #[test]
    fn a_schedule_that_held_has_no_verdict() {
        let mut rec = Recorder::new();
        record(&mut rec, Phase::Total, 1000, 50_000, MS, 0);
        rec.counters.unsent = 3;
        assert_eq!(verdict(&http(500.0, 8), &run(rec)), None);
        // not in rate mode: nothing to say whatever the numbers
        let mut rec = Recorder::new();
        record(&mut rec, Phase::Total, 1000, 900 * MS, MS, 0);
        let meta = RunMeta {
            rate: None,
            ..http(500.0, 8)
        };
        assert_eq!(verdict(&meta, &run(rec)), None);
    }

    #[test]
    fn a_server_stall_is_the_server_even_with_some_client_lag() {
        // The client released on time give or take 3 ms (a loaded machine); 5 % of requests
        // waited 300 ms for connections stuck on the server.
        let mut rec = Recorder::new();
        record(&mut rec, Phase::Total, 950, 3 * MS, MS, 0);
        record(&mut rec, Phase::Total, 50, 3 * MS, MS, 300 * MS);
        let v = verdict(&http(500.0, 8), &run(rec)).expect("behind");
        assert_eq!((v.who, v.cause), (Who::Server, Cause::LateResponses));
        assert!(v.corrected_p99 >= 300 * MS);
    }

    #[test]
    fn a_late_client_loop_is_the_client() {
        // Every request released 40 ms late (a stalled loop), the server answering in 1 ms.
        let mut rec = Recorder::new();
        record(&mut rec, Phase::Total, 1000, 40 * MS, MS, 0);
        let v = verdict(&http(500.0, 8), &run(rec)).expect("behind");
        assert_eq!((v.who, v.cause), (Who::Client, Cause::SendLag));
        // and the same for WebSocket echo
        let mut rec = Recorder::new();
        record(&mut rec, Phase::Rtt, 1000, 40 * MS, MS, 0);
        let v = verdict(&echo(500.0, 8), &run(rec)).expect("behind");
        assert_eq!((v.who, v.cause), (Who::Client, Cause::SendLag));
    }

    #[test]
    fn too_few_connections_for_the_rate_is_the_client() {
        // 20 ms per response, 1000/s asked: 20 connections needed, 1 given.
        let mut rec = Recorder::new();
        record(&mut rec, Phase::Total, 100, 100_000, 20 * MS, 900 * MS);
        rec.counters.unsent = 1900;
        let meta = http(1000.0, 1);
        let r = run(rec);
        assert_eq!(connections_needed(&meta, &r), Some(20));
        let v = verdict(&meta, &r).expect("behind");
        assert_eq!((v.who, v.cause), (Who::Client, Cause::Connections));
        // With 25 connections the same numbers are the server's doing.
        let v = verdict(&http(1000.0, 25), &r).expect("behind");
        assert_eq!((v.who, v.cause), (Who::Server, Cause::LateResponses));
    }

    #[test]
    fn echo_outages_are_the_server() {
        let mut rec = Recorder::new();
        record(&mut rec, Phase::Rtt, 900, 200_000, MS, 0);
        record(&mut rec, Phase::Rtt, 100, 200_000, MS, 250 * MS);
        rec.counters.ws.buffered_sent = 100;
        let meta = echo(400.0, 2);
        let r = run(rec);
        assert_eq!(connections_needed(&meta, &r), None, "no in-flight limit");
        let v = verdict(&meta, &r).expect("behind");
        assert_eq!((v.who, v.cause), (Who::Server, Cause::Outages));
    }

    #[test]
    fn unsent_requests_alone_slip_the_schedule() {
        // Nothing answered (every connection refused): nothing sent, everything unsent.
        let mut rec = Recorder::new();
        rec.counters.unsent = 5000;
        for _ in 0..5000 {
            rec.record(Phase::SendLag, 30_000);
        }
        let v = verdict(&http(500.0, 8), &run(rec)).expect("behind");
        assert_eq!(v.who, Who::Server);
        assert_eq!(v.uncorrected_p50, 0);
    }
}
