//! One upgraded WebSocket connection's behaviour, sans-IO: what `/echo` and `/ws` answer, the
//! market-data feed (subscriptions, pacing, seq numbers, injected gaps), the server heartbeat,
//! and the timed faults (drop, stall). Time comes in as arguments (`now` for schedules, the
//! wall clock in µs for message timestamps); output is appended to the connection's reused
//! output buffer. The connection layer owns the socket, the decoder and the close choreography.
//!
//! Timing rules:
//! 1. Every fault is timed from the connection's upgrade.
//! 2. Data message k (k ≥ 1) of a connection is due at `start + k / ws_rate`, where `start` is
//!    when its first subscription arrived; each wake sends every message that is due, so rates
//!    above the loop's 1 ms timer granularity still average out. A connection more than
//!    [`CATCH_UP`] behind (a starved loop) skips the backlog instead of bursting it.
//! 3. A message due at or after the stall instant is never sent.
//! 4. One ping is outstanding at a time. Without `ws_pong_timeout`, its pong must arrive before
//!    the next ping is due; with it, within that long of the ping (and the next ping waits).
//!
//! Back-pressure: a data message is dropped (its seq consumed, counted) when the output buffer
//! already holds the caller's bound; control answers are always queued, since they are bounded
//! by what the client sends and the caller stops reading while output is over the bound.

use std::io::Write as _;
use std::time::{Duration, Instant};

use super::ws::{self, Event, OpCode};

/// Subscriptions one connection may hold (Binance allows 1024 streams per connection).
const MAX_SUBSCRIPTIONS: usize = 1024;
/// Longest stream name kept, in characters, before JSON escaping.
const MAX_NAME: usize = 200;
/// How far behind schedule the feed may fall before it skips ahead (rule 2).
const CATCH_UP: Duration = Duration::from_secs(1);
/// Data messages sent in one wake at most; past it the schedule skips ahead (rule 2).
const MAX_BURST: u64 = 4096;

/// Which WebSocket endpoint the client upgraded on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `/ws`: subscriptions and a paced market-data feed.
    Feed,
    /// `/echo`: every text or binary message comes back with the same opcode.
    Echo,
}

/// The WebSocket part of the server configuration (see `ServeConfig` for each field).
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    pub(super) rate: f64,
    pub(super) drop_every: Option<Duration>,
    pub(super) gap_every: Option<u64>,
    pub(super) stall_after: Option<Duration>,
    pub(super) ping_every: Option<Duration>,
    pub(super) pong_timeout: Option<Duration>,
    pub(super) ignore_pings: bool,
}

/// Counts one drive accumulates; the connection adds them to the thread's atomics once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) sent: u64,
    pub(super) gaps: u64,
    pub(super) dropped: u64,
    pub(super) subscriptions: u64,
    pub(super) drops: u64,
    pub(super) pong_timeouts: u64,
}

/// What the connection must do after handling input or a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// Keep going.
    Continue,
    /// A close frame is queued: flush it, then close (FIN) and stop reading messages.
    Close,
    /// Abnormal close: no close frame, end the TCP connection now.
    Drop,
}

/// Where the output of a call goes and how much of it data messages may use.
pub(super) struct Output<'a> {
    pub(super) out: &'a mut Vec<u8>,
    /// Data messages are dropped once `out.len()` reaches this.
    pub(super) limit: usize,
    /// Per-thread formatting buffer.
    pub(super) scratch: &'a mut Vec<u8>,
}

/// One subscription's stream and its sequence state.
#[derive(Debug)]
struct Sub {
    /// The stream name, JSON-escaped (without quotes), ready to paste into messages.
    name: Box<[u8]>,
    /// Data messages generated (sent or dropped).
    generated: u64,
    /// Seq of the last generated message (0 before the first).
    seq: u64,
    /// Seq of the last message actually sent (0 before the first).
    last_sent: u64,
}

/// The data schedule of rule 2.
#[derive(Clone, Copy, Debug)]
struct Pacer {
    start: Instant,
    /// Messages generated since `start`.
    k: u64,
    /// Seconds between messages.
    interval: f64,
}

impl Pacer {
    /// When the next message is due; `None` if that is too far away to represent.
    fn next_due(&self) -> Option<Instant> {
        let after = Duration::try_from_secs_f64((self.k + 1) as f64 * self.interval).ok()?;
        self.start.checked_add(after)
    }
}

/// The server heartbeat of rule 4.
#[derive(Clone, Copy, Debug)]
struct Heartbeat {
    every: Duration,
    timeout: Option<Duration>,
    next_ping: Instant,
    /// Counter of the last ping sent (its payload, big-endian).
    sent: u64,
    /// The last ping is unanswered; the pong is due by then.
    awaiting: Option<Instant>,
}

/// One connection's WebSocket state after the 101.
#[derive(Debug)]
pub(super) struct Session {
    kind: Kind,
    settings: Settings,
    subs: Vec<Sub>,
    /// Round-robin position in `subs`.
    next_sub: usize,
    /// Subscribe messages seen, for `sub{n}` names.
    sub_requests: u64,
    pacer: Option<Pacer>,
    heartbeat: Option<Heartbeat>,
    drop_at: Option<Instant>,
    stall_at: Option<Instant>,
}

impl Session {
    /// A session upgraded at `now`.
    pub(super) fn new(kind: Kind, settings: Settings, now: Instant) -> Session {
        let after = |d: Option<Duration>| d.and_then(|d| now.checked_add(d));
        Session {
            kind,
            settings,
            subs: Vec::new(),
            next_sub: 0,
            sub_requests: 0,
            pacer: None,
            heartbeat: settings.ping_every.and_then(|every| {
                Some(Heartbeat {
                    every,
                    timeout: settings.pong_timeout,
                    next_ping: now.checked_add(every)?,
                    sent: 0,
                    awaiting: None,
                })
            }),
            drop_at: after(settings.drop_every),
            stall_at: after(settings.stall_after),
        }
    }

    /// Handles one decoded client event.
    pub(super) fn on_event(
        &mut self,
        ev: Event<'_>,
        now: Instant,
        o: &mut Output<'_>,
        tally: &mut Tally,
    ) -> Flow {
        match ev {
            Event::Ping(payload) => {
                if !self.settings.ignore_pings {
                    ws::push_frame(o.out, OpCode::Pong, payload);
                }
            }
            Event::Pong(payload) => {
                if let Some(hb) = &mut self.heartbeat {
                    if hb.awaiting.is_some() && payload == hb.sent.to_be_bytes() {
                        hb.awaiting = None;
                    }
                }
            }
            Event::Close(code) => {
                // Echo the code (RFC 6455 §5.5.1), then the connection closes.
                ws::push_close(o.out, code, "");
                return Flow::Close;
            }
            Event::Binary(payload) => {
                if self.kind == Kind::Echo {
                    ws::push_frame(o.out, OpCode::Binary, payload);
                }
            }
            Event::Text(payload) => match self.kind {
                Kind::Echo => ws::push_frame(o.out, OpCode::Text, payload),
                Kind::Feed => self.on_feed_text(payload, now, o, tally),
            },
        }
        Flow::Continue
    }

    /// Sends what is due at `now`: the heartbeat, then data messages. `wall_us` stamps them.
    pub(super) fn tick(
        &mut self,
        now: Instant,
        wall_us: u64,
        o: &mut Output<'_>,
        tally: &mut Tally,
    ) -> Flow {
        if self.drop_at.is_some_and(|t| now >= t) {
            tally.drops += 1;
            return Flow::Drop;
        }
        if let Some(hb) = &mut self.heartbeat {
            if hb.awaiting.is_some_and(|due| now >= due) {
                tally.pong_timeouts += 1;
                ws::push_close(o.out, Some(1008), "pong timeout");
                return Flow::Close;
            }
            if now >= hb.next_ping {
                if hb.awaiting.is_none() {
                    hb.sent += 1;
                    ws::push_frame(o.out, OpCode::Ping, &hb.sent.to_be_bytes());
                    let deadline = match hb.timeout {
                        Some(t) => now.checked_add(t),
                        None => hb.next_ping.checked_add(hb.every),
                    };
                    // Unrepresentable deadline: nothing can be late for it.
                    hb.awaiting = deadline;
                }
                let next = hb.next_ping.checked_add(hb.every);
                hb.next_ping = match next {
                    Some(t) if t > now => t,
                    // Behind by more than a period: the schedule restarts from now.
                    _ => now.checked_add(hb.every).unwrap_or(now),
                };
            }
        }
        self.send_due(now, wall_us, o, tally);
        Flow::Continue
    }

    /// The earliest instant a [`Session::tick`] has something to do, if any.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let data = self.pacer.and_then(|p| p.next_due());
        let ping = self
            .heartbeat
            .map(|hb| hb.awaiting.map_or(hb.next_ping, |a| a.min(hb.next_ping)));
        [data, ping, self.drop_at].into_iter().flatten().min()
    }

    fn send_due(&mut self, now: Instant, wall_us: u64, o: &mut Output<'_>, tally: &mut Tally) {
        if self.subs.is_empty() {
            return;
        }
        let mut burst = 0;
        while let Some(mut p) = self.pacer {
            let Some(due) = p.next_due() else { return };
            if due > now {
                return;
            }
            if self.stall_at.is_some_and(|s| due >= s) {
                // Rule 3: the feed is over for this connection.
                self.pacer = None;
                return;
            }
            if now.duration_since(due) > CATCH_UP || burst == MAX_BURST {
                p.start = now;
                p.k = 0;
                self.pacer = Some(p);
                return;
            }
            p.k += 1;
            self.pacer = Some(p);
            burst += 1;
            self.emit(wall_us, o, tally);
        }
    }

    /// Generates the next data message of the round-robin and sends or drops it.
    fn emit(&mut self, wall_us: u64, o: &mut Output<'_>, tally: &mut Tally) {
        let i = self.next_sub % self.subs.len();
        self.next_sub = (i + 1) % self.subs.len();
        let sub = &mut self.subs[i];
        sub.generated += 1;
        let skip = self
            .settings
            .gap_every
            .is_some_and(|n| sub.generated > 1 && sub.generated.is_multiple_of(n));
        sub.seq += if skip { 2 } else { 1 };
        if o.out.len() >= o.limit {
            tally.dropped += 1;
            return;
        }
        if sub.last_sent > 0 && sub.seq > sub.last_sent + 1 {
            tally.gaps += 1;
        }
        sub.last_sent = sub.seq;
        data_json(&sub.name, sub.seq, wall_us, o.scratch);
        ws::push_frame(o.out, OpCode::Text, o.scratch);
        tally.sent += 1;
    }

    fn on_feed_text(&mut self, text: &[u8], now: Instant, o: &mut Output<'_>, tally: &mut Tally) {
        if text.trim_ascii().eq_ignore_ascii_case(b"ping") {
            ws::push_frame(o.out, OpCode::Text, b"pong");
        } else if is_op_ping(text) {
            ws::push_frame(o.out, OpCode::Text, br#"{"op":"pong"}"#);
        } else if contains_ignore_case(text, b"unsubscribe") {
            // Checked before "subscribe", which it contains.
            let name = stream_name(text, self.sub_requests + 1);
            if let Some(pos) = self.subs.iter().position(|s| *s.name == *name) {
                self.subs.remove(pos);
                if self.subs.is_empty() {
                    self.pacer = None;
                    self.next_sub = 0;
                } else {
                    self.next_sub %= self.subs.len();
                }
            }
            push_event(o, b"unsubscribed", b"stream", &name);
        } else if contains_ignore_case(text, b"subscribe") {
            self.sub_requests += 1;
            let name = stream_name(text, self.sub_requests);
            if self.subs.iter().any(|s| *s.name == *name) {
                // Already streaming: acknowledge again, but no second copy of the stream.
                push_event(o, b"subscribed", b"stream", &name);
                return;
            }
            if self.subs.len() == MAX_SUBSCRIPTIONS {
                push_event(o, b"error", b"message", b"too many subscriptions");
                return;
            }
            push_event(o, b"subscribed", b"stream", &name);
            self.subs.push(Sub {
                name: name.into_boxed_slice(),
                generated: 0,
                seq: 0,
                last_sent: 0,
            });
            tally.subscriptions += 1;
            self.start_feed(now);
        }
        // Anything else is ignored, like a relay ignores chatter it does not understand.
    }

    /// Starts the data schedule at the first subscription (rule 2), unless the rate is zero or
    /// the feed already stalled.
    fn start_feed(&mut self, now: Instant) {
        if self.pacer.is_some()
            || self.settings.rate <= 0.0
            || self.stall_at.is_some_and(|s| now >= s)
        {
            return;
        }
        self.pacer = Some(Pacer {
            start: now,
            k: 0,
            interval: 1.0 / self.settings.rate,
        });
    }
}

/// `{"op":"ping"}`-style application heartbeat (Bybit), tolerant of whitespace.
fn is_op_ping(text: &[u8]) -> bool {
    let mut rest = text;
    while let Some(pos) = find(rest, br#""op""#) {
        let after = rest[pos + 4..].trim_ascii_start();
        if let Some(value) = after.strip_prefix(b":") {
            if value.trim_ascii_start().starts_with(br#""ping""#) {
                return true;
            }
        }
        rest = &rest[pos + 4..];
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The stream a subscribe (or unsubscribe) message names, JSON-escaped without quotes: the
/// string fields `exchange`, `channel`, `symbol` joined by `.` (any subset, in that order);
/// else the first string of an `args`/`params` array (or, OKX style, those three fields of its
/// first object); else a `stream` field; else `sub{n}`. This is the rare path, so it may
/// allocate and uses serde_json.
fn stream_name(text: &[u8], n: u64) -> Vec<u8> {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(text).ok();
    let name = parsed
        .as_ref()
        .and_then(|v| v.as_object())
        .and_then(|obj| {
            joined_fields(obj)
                .or_else(|| {
                    ["args", "params"].iter().find_map(|key| {
                        let first = obj.get(*key)?.as_array()?;
                        first
                            .iter()
                            .find_map(|v| v.as_str().map(str::to_string))
                            .or_else(|| first.first()?.as_object().and_then(joined_fields))
                    })
                })
                .or_else(|| obj.get("stream")?.as_str().map(str::to_string))
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("sub{n}"));
    let name: String = name.chars().take(MAX_NAME).collect();
    // A JSON string literal of any `String` is valid; its inside is what messages embed.
    let quoted = serde_json::to_string(&name).unwrap_or_else(|_| format!("\"sub{n}\""));
    quoted.as_bytes()[1..quoted.len() - 1].to_vec()
}

fn joined_fields(obj: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let parts: Vec<&str> = ["exchange", "channel", "symbol"]
        .iter()
        .filter_map(|k| obj.get(*k)?.as_str())
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// `{"event":"<event>","<key>":"<value>"}` as a text frame; `value` is already escaped.
fn push_event(o: &mut Output<'_>, event: &[u8], key: &[u8], value: &[u8]) {
    let s = &mut *o.scratch;
    s.clear();
    s.extend_from_slice(br#"{"event":""#);
    s.extend_from_slice(event);
    s.extend_from_slice(br#"",""#);
    s.extend_from_slice(key);
    s.extend_from_slice(br#"":""#);
    s.extend_from_slice(value);
    s.extend_from_slice(br#""}"#);
    ws::push_frame(o.out, OpCode::Text, s);
}

/// One data message (about 100 bytes) into `scratch`. Price and quantity are derived from the
/// seq so the stream is plausible and deterministic apart from the timestamp.
fn data_json(name: &[u8], seq: u64, wall_us: u64, scratch: &mut Vec<u8>) {
    let cents = 6_700_000 + seq.wrapping_mul(7919) % 100_000;
    let qty = 1 + seq.wrapping_mul(31) % 9999;
    scratch.clear();
    scratch.extend_from_slice(br#"{"stream":""#);
    scratch.extend_from_slice(name);
    // Writing into a Vec cannot fail, and integer formatting does not allocate.
    let _ = write!(
        scratch,
        r#"","seq":{seq},"timestamp":{wall_us},"price":"{}.{:02}","qty":"0.{qty:04}","side":"buy"}}"#,
        cents / 100,
        cents % 100
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            rate: 100.0,
            drop_every: None,
            gap_every: None,
            stall_after: None,
            ping_every: None,
            pong_timeout: None,
            ignore_pings: false,
        }
    }

    /// A session plus the buffers the connection would lend it.
    struct Harness {
        s: Session,
        t0: Instant,
        out: Vec<u8>,
        scratch: Vec<u8>,
        limit: usize,
        tally: Tally,
    }

    impl Harness {
        fn new(kind: Kind, settings: Settings) -> Harness {
            let t0 = Instant::now();
            Harness {
                s: Session::new(kind, settings, t0),
                t0,
                out: Vec::new(),
                scratch: Vec::new(),
                limit: usize::MAX,
                tally: Tally::default(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn event(&mut self, ev: Event<'_>, ms: u64) -> Flow {
            let now = self.at(ms);
            let mut o = Output {
                out: &mut self.out,
                limit: self.limit,
                scratch: &mut self.scratch,
            };
            self.s.on_event(ev, now, &mut o, &mut self.tally)
        }

        fn text(&mut self, text: &str, ms: u64) -> Flow {
            self.event(Event::Text(text.as_bytes()), ms)
        }

        fn tick(&mut self, ms: u64) -> Flow {
            let now = self.at(ms);
            let mut o = Output {
                out: &mut self.out,
                limit: self.limit,
                scratch: &mut self.scratch,
            };
            self.s.tick(
                now,
                1_700_000_000_000_000 + ms * 1000,
                &mut o,
                &mut self.tally,
            )
        }

        /// Takes the frames written so far: (opcode byte, payload).
        fn frames(&mut self) -> Vec<(u8, Vec<u8>)> {
            let mut frames = Vec::new();
            let mut rest = &self.out[..];
            while !rest.is_empty() {
                let op = rest[0] & 0x0f;
                let (len, hl) = match rest[1] {
                    126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
                    127 => panic!("unexpectedly large frame"),
                    n => (usize::from(n), 2),
                };
                frames.push((op, rest[hl..hl + len].to_vec()));
                rest = &rest[hl + len..];
            }
            self.out.clear();
            frames
        }

        /// Data messages written so far as (stream, seq).
        fn data(&mut self) -> Vec<(String, u64)> {
            self.frames()
                .into_iter()
                .filter_map(|(op, p)| {
                    assert_eq!(op, 1, "data is text");
                    let v: serde_json::Value = serde_json::from_slice(&p).expect("json");
                    let stream = v.get("stream")?.as_str()?.to_string();
                    Some((stream, v.get("seq")?.as_u64()?))
                })
                .collect()
        }
    }

    #[test]
    fn stream_names_follow_the_documented_precedence() {
        let name = |t: &str| String::from_utf8(stream_name(t.as_bytes(), 7)).expect("utf8");
        assert_eq!(
            name(
                r#"{"op":"subscribe","exchange":"binance","channel":"trades","symbol":"BTCUSDT"}"#
            ),
            "binance.trades.BTCUSDT"
        );
        assert_eq!(
            name(r#"{"type":"subscribe","symbol":"ETH","exchange":"okx"}"#),
            "okx.ETH"
        );
        assert_eq!(
            name(r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","x"],"id":1}"#),
            "btcusdt@trade"
        );
        assert_eq!(
            name(r#"{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}"#),
            "trades"
        );
        assert_eq!(name(r#"{"subscribe":true,"stream":"s1"}"#), "s1");
        assert_eq!(name("subscribe me"), "sub7");
        assert_eq!(name(r#"{"op":"subscribe","stream":""}"#), "sub7");
        // Quotes and control characters come out escaped, ready to paste into JSON.
        assert_eq!(name(r#"{"subscribe":1,"stream":"a\"b\n"}"#), r#"a\"b\n"#);
        assert_eq!(
            name(&format!(
                r#"{{"subscribe":1,"stream":"{}"}}"#,
                "x".repeat(500)
            ))
            .len(),
            MAX_NAME
        );
    }

    #[test]
    fn op_ping_detection_is_whitespace_tolerant() {
        assert!(is_op_ping(br#"{"op":"ping"}"#));
        assert!(is_op_ping(br#"{ "req_id":"1", "op" : "ping" }"#));
        assert!(!is_op_ping(br#"{"op":"pong"}"#));
        assert!(!is_op_ping(br#"{"op":"subscribe","args":["ping"]}"#));
    }

    #[test]
    fn subscribe_ack_then_round_robin_with_own_seq() {
        let mut h = Harness::new(Kind::Feed, settings());
        h.text(r#"{"op":"subscribe","stream":"a"}"#, 0);
        h.text(r#"{"op":"subscribe","stream":"b"}"#, 0);
        h.text(r#"{"op":"subscribe","stream":"a"}"#, 0);
        let acks = h.frames();
        assert_eq!(acks.len(), 3);
        assert_eq!(
            acks[0].1,
            br#"{"event":"subscribed","stream":"a"}"#.to_vec()
        );
        assert_eq!(
            acks[1].1,
            br#"{"event":"subscribed","stream":"b"}"#.to_vec()
        );
        assert_eq!(
            h.tally.subscriptions, 2,
            "a duplicate is acknowledged, not added"
        );
        // 100 msg/s: 10 messages are due by 100 ms, alternating a and b.
        h.tick(100);
        let got = h.data();
        let expect: Vec<(String, u64)> = (0..10)
            .map(|i| {
                let s = if i % 2 == 0 { "a" } else { "b" };
                (s.to_string(), i / 2 + 1)
            })
            .collect();
        assert_eq!(got, expect);
        assert_eq!(h.tally.sent, 10);
        assert_eq!(h.tally.gaps, 0);
        // Unsubscribing b leaves a alone in the rotation.
        h.text(r#"{"op":"unsubscribe","stream":"b"}"#, 100);
        assert_eq!(
            h.frames()[0].1,
            br#"{"event":"unsubscribed","stream":"b"}"#.to_vec()
        );
        h.tick(130);
        assert_eq!(
            h.data(),
            vec![
                ("a".to_string(), 6),
                ("a".to_string(), 7),
                ("a".to_string(), 8)
            ]
        );
    }

    #[test]
    fn data_messages_are_relay_shaped() {
        let mut h = Harness::new(Kind::Feed, settings());
        h.text(
            r#"{"op":"subscribe","exchange":"binance","channel":"trades","symbol":"BTCUSDT"}"#,
            0,
        );
        h.frames();
        h.tick(10);
        let frames = h.frames();
        assert_eq!(frames.len(), 1);
        let p = &frames[0].1;
        assert!(
            (90..=140).contains(&p.len()),
            "about 100 bytes: {}",
            p.len()
        );
        let v: serde_json::Value = serde_json::from_slice(p).expect("json");
        assert_eq!(v["stream"], "binance.trades.BTCUSDT");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["timestamp"], 1_700_000_000_010_000u64);
        assert!(v["price"].as_str().expect("price").parse::<f64>().is_ok());
        assert!(v["qty"].as_str().expect("qty").parse::<f64>().is_ok());
        assert_eq!(v["side"], "buy");
    }

    #[test]
    fn gap_every_skips_one_seq_and_counts_each_gap() {
        let mut h = Harness::new(
            Kind::Feed,
            Settings {
                gap_every: Some(3),
                ..settings()
            },
        );
        h.text("subscribe", 0);
        h.frames();
        h.tick(100);
        let seqs: Vec<u64> = h.data().into_iter().map(|(_, s)| s).collect();
        assert_eq!(seqs, vec![1, 2, 4, 5, 6, 8, 9, 10, 12, 13]);
        assert_eq!(h.tally.gaps, 3);
        // Every message gapped: all but the first.
        let mut h = Harness::new(
            Kind::Feed,
            Settings {
                gap_every: Some(1),
                ..settings()
            },
        );
        h.text("subscribe", 0);
        h.frames();
        h.tick(40);
        let seqs: Vec<u64> = h.data().into_iter().map(|(_, s)| s).collect();
        assert_eq!(seqs, vec![1, 3, 5, 7]);
        assert_eq!(h.tally.gaps, 3);
    }

    #[test]
    fn back_pressure_drops_messages_and_the_next_sent_counts_a_gap() {
        let mut h = Harness::new(Kind::Feed, settings());
        h.text("subscribe", 0);
        h.frames();
        h.tick(20);
        let seqs: Vec<u64> = h.data().into_iter().map(|(_, s)| s).collect();
        assert_eq!(seqs, vec![1, 2]);
        h.limit = 0;
        h.tick(50);
        assert_eq!(h.tally.dropped, 3);
        assert!(h.out.is_empty());
        h.limit = usize::MAX;
        h.tick(60);
        let seqs: Vec<u64> = h.data().into_iter().map(|(_, s)| s).collect();
        assert_eq!(seqs, vec![6]);
        assert_eq!(h.tally.gaps, 1);
        assert_eq!(h.tally.sent, 3);
    }

    #[test]
    fn stall_stops_data_but_not_control_answers() {
        let mut h = Harness::new(
            Kind::Feed,
            Settings {
                stall_after: Some(Duration::from_millis(50)),
                ..settings()
            },
        );
        h.text("subscribe", 0);
        h.frames();
        h.tick(200);
        // Due at 10, 20, 30, 40 ms; the one due at 50 ms is at the stall instant.
        assert_eq!(h.data().len(), 4);
        h.tick(1000);
        assert!(h.frames().is_empty());
        assert_eq!(h.s.next_deadline(), None);
        h.event(Event::Ping(b"hb"), 1000);
        h.text("ping", 1000);
        h.text(r#"{"op":"ping"}"#, 1000);
        assert_eq!(
            h.frames(),
            vec![
                (10, b"hb".to_vec()),
                (1, b"pong".to_vec()),
                (1, br#"{"op":"pong"}"#.to_vec())
            ]
        );
    }

    #[test]
    fn ignore_pings_answers_no_ping_but_keeps_data_and_text_heartbeats() {
        let mut h = Harness::new(
            Kind::Feed,
            Settings {
                ignore_pings: true,
                ..settings()
            },
        );
        h.text("subscribe", 0);
        h.frames();
        h.event(Event::Ping(b"hb"), 5);
        assert!(h.frames().is_empty(), "no pong");
        h.text("ping", 6);
        assert_eq!(h.frames(), vec![(1, b"pong".to_vec())]);
        h.tick(30);
        assert_eq!(h.data().len(), 3, "data goes on");
        let mut echo = Harness::new(
            Kind::Echo,
            Settings {
                ignore_pings: true,
                ..settings()
            },
        );
        echo.event(Event::Ping(b"x"), 0);
        echo.text("hi", 0);
        assert_eq!(echo.frames(), vec![(1, b"hi".to_vec())]);
    }

    #[test]
    fn rate_is_exact_over_a_second_of_ticks_and_zero_sends_nothing() {
        let mut h = Harness::new(
            Kind::Feed,
            Settings {
                rate: 1000.0,
                ..settings()
            },
        );
        h.text("subscribe", 0);
        h.frames();
        // Irregular wakes, as a loop with 1 ms timers has.
        let mut ms = 0;
        while ms < 1000 {
            ms += 1 + ms % 3;
            h.tick(ms.min(1000));
        }
        assert_eq!(h.data().len(), 1000);
        let mut h = Harness::new(
            Kind::Feed,
            Settings {
                rate: 0.0,
                ..settings()
            },
        );
        h.text("subscribe", 0);
        assert_eq!(h.frames().len(), 1, "acknowledged");
        h.tick(5000);
        assert!(h.frames().is_empty());
        assert_eq!(h.s.next_deadline(), None);
    }

    #[test]
    fn a_starved_feed_skips_its_backlog() {
        let mut h = Harness::new(Kind::Feed, settings());
        h.text("subscribe", 0);
        h.frames();
        h.tick(5000);
        assert!(h.data().is_empty(), "5 s behind: skip, do not burst 500");
        h.tick(5100);
        assert_eq!(h.data().len(), 10);
    }

    #[test]
    fn heartbeat_pings_carry_a_counter_and_a_late_pong_closes_with_1008() {
        let mut h = Harness::new(
            Kind::Echo,
            Settings {
                ping_every: Some(Duration::from_millis(100)),
                ..settings()
            },
        );
        assert_eq!(h.s.next_deadline(), Some(h.at(100)));
        assert_eq!(h.tick(100), Flow::Continue);
        assert_eq!(h.frames(), vec![(9, 1u64.to_be_bytes().to_vec())]);
        // A pong with the wrong payload does not count; the right one does.
        h.event(Event::Pong(b"nope"), 150);
        h.event(Event::Pong(&1u64.to_be_bytes()), 160);
        assert_eq!(h.tick(200), Flow::Continue);
        assert_eq!(h.frames(), vec![(9, 2u64.to_be_bytes().to_vec())]);
        // No pong for ping 2 by the time ping 3 is due.
        assert_eq!(h.tick(300), Flow::Close);
        let frames = h.frames();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, 8);
        assert_eq!(&frames[0].1[..2], &1008u16.to_be_bytes());
        assert_eq!(&frames[0].1[2..], b"pong timeout");
        assert_eq!(h.tally.pong_timeouts, 1);
    }

    #[test]
    fn pong_timeout_is_counted_from_the_ping() {
        let mut h = Harness::new(
            Kind::Echo,
            Settings {
                ping_every: Some(Duration::from_millis(100)),
                pong_timeout: Some(Duration::from_millis(250)),
                ..settings()
            },
        );
        h.tick(100);
        assert_eq!(h.frames().len(), 1);
        // Ping 2 is not sent while ping 1 is within its allowance.
        assert_eq!(h.tick(200), Flow::Continue);
        assert!(h.frames().is_empty());
        assert_eq!(h.s.next_deadline(), Some(h.at(300)));
        assert_eq!(h.tick(349), Flow::Continue);
        assert_eq!(h.tick(350), Flow::Close);
    }

    #[test]
    fn drop_is_due_at_its_time_and_counted() {
        let mut h = Harness::new(
            Kind::Feed,
            Settings {
                drop_every: Some(Duration::from_millis(300)),
                ..settings()
            },
        );
        assert_eq!(h.s.next_deadline(), Some(h.at(300)));
        assert_eq!(h.tick(299), Flow::Continue);
        assert_eq!(h.tick(300), Flow::Drop);
        assert_eq!(h.tally.drops, 1);
    }

    #[test]
    fn echo_returns_the_same_opcode_and_close_is_echoed() {
        let mut h = Harness::new(Kind::Echo, settings());
        h.event(Event::Text(b"hi"), 0);
        h.event(Event::Binary(&[0, 1, 2]), 0);
        assert_eq!(h.event(Event::Close(Some(4001)), 0), Flow::Close);
        assert_eq!(
            h.frames(),
            vec![
                (1, b"hi".to_vec()),
                (2, vec![0, 1, 2]),
                (8, 4001u16.to_be_bytes().to_vec())
            ]
        );
        // The feed ignores binary and unknown text.
        let mut h = Harness::new(Kind::Feed, settings());
        h.event(Event::Binary(b"subscribe"), 0);
        h.text("hello", 0);
        assert!(h.frames().is_empty());
    }
}
