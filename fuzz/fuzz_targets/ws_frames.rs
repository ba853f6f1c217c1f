//! The WebSocket client frame decoder (`connbench::proto::ws::Decoder`): frames a server sends.
//!
//! Input: `[opts, cut1, cut2]` then the frames. `opts` bit 0 turns the UTF-8 check off, bits 1-2
//! pick the message maximum (1 MiB, 125, 1000, 64 KiB); `cut1`/`cut2` place two split points.
//!
//! Checks, for any input:
//! 1. No panic; `decode` never consumes more than it is given; an event always consumes bytes;
//!    "Partial" with nothing consumed means the same bytes again change nothing.
//! 2. Fed whole, byte by byte and in three pieces: the same events, the same error, and (when
//!    no error) the same unconsumed bytes.
//! 3. tungstenite as oracle (client role, the same 1 MiB limit, UTF-8 checked): up to the first
//!    close frame, both see the same messages, pings, pongs and close, and what tungstenite
//!    refuses the decoder refuses too. The policy differences are written out below.
#![no_main]

use std::io::{self, Read, Write};

use connbench::proto::ws::{Decoder, Frame, Progress, WsError};
use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::{Message, Role, WebSocket, WebSocketConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Msg { text: bool, data: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Ev>,
    error: Option<WsError>,
    leftover: Vec<u8>,
}

fn owned(frame: Frame<'_>) -> Ev {
    match frame {
        Frame::Message { text, data } => Ev::Msg {
            text,
            data: data.to_vec(),
        },
        Frame::Ping(p) => Ev::Ping(p.to_vec()),
        Frame::Pong(p) => Ev::Pong(p.to_vec()),
        Frame::Close { code, reason } => Ev::Close(code, reason.to_owned()),
    }
}

fn feed<'a>(make: &dyn Fn() -> Decoder, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut dec = make();
    let mut pending: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            let (n, event) = match dec.decode(&pending) {
                Ok((n, Progress::Partial)) => (n, None),
                Ok((n, Progress::Frame(f))) => (n, Some(owned(f))),
                Err(e) => {
                    assert_eq!(dec.decode(&[0x81, 0x00]), Err(e.clone()), "stays failed");
                    return Outcome {
                        events,
                        error: Some(e),
                        leftover: pending,
                    };
                }
            };
            assert!(n <= pending.len(), "consumed {n} of {}", pending.len());
            pending.drain(..n);
            match event {
                Some(ev) => {
                    assert!(n > 0, "an event consumed nothing");
                    events.push(ev);
                }
                None if n > 0 => {}
                None => {
                    assert!(matches!(dec.decode(&pending), Ok((0, Progress::Partial))));
                    break;
                }
            }
        }
    }
    Outcome {
        events,
        error: None,
        leftover: pending,
    }
}

/// The server's bytes for tungstenite: reads hand out the input, writes (its pong and close
/// replies) go nowhere.
struct Wire<'a>(&'a [u8]);

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite's reading of the same bytes: events up to and including the first close, and
/// whether it stopped on a protocol violation (rather than on the end of the input).
fn tungstenite_reading(wire: &[u8]) -> (Vec<Ev>, bool) {
    // The same limit as ours (1 MiB): tungstenite checks a frame's length at its header too.
    let config = WebSocketConfig::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let mut ws = WebSocket::from_raw_socket(Wire(wire), Role::Client, Some(config));
    let mut events = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => events.push(Ev::Msg {
                text: true,
                data: t.as_bytes().to_vec(),
            }),
            Ok(Message::Binary(b)) => events.push(Ev::Msg {
                text: false,
                data: b.to_vec(),
            }),
            Ok(Message::Ping(p)) => events.push(Ev::Ping(p.to_vec())),
            Ok(Message::Pong(p)) => events.push(Ev::Pong(p.to_vec())),
            Ok(Message::Close(c)) => {
                events.push(match c {
                    Some(c) => Ev::Close(Some(c.code.into()), c.reason.to_string()),
                    None => Ev::Close(None, String::new()),
                });
                return (events, false);
            }
            Ok(Message::Frame(_)) => {}
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return (events, false),
            Err(tungstenite::Error::Io(_)) => return (events, false),
            Err(_) => return (events, true),
        }
    }
}

fn oracle(wire: &[u8], ours: &Outcome) {
    // Up to our first close: after it the engine stops reading, and so does tungstenite.
    let mut events = ours.events.clone();
    let mut error = ours.error.is_some();
    if let Some(i) = events.iter().position(|e| matches!(e, Ev::Close(..))) {
        events.truncate(i + 1);
        error = false;
    }
    let (mut theirs, mut their_error) = tungstenite_reading(wire);
    // tungstenite reports a close code a peer may not send as the close it answers with,
    // 1002 "Protocol violation": that is its protocol error (unless the server sent exactly
    // that close, which we then return too).
    let violation = Ev::Close(Some(1002), "Protocol violation".into());
    if theirs.last() == Some(&violation) && events.get(theirs.len() - 1) != Some(&violation) {
        theirs.pop();
        their_error = true;
    }
    // Policy difference: close code 1014 (Bad Gateway, registered with IANA) is one a peer may
    // send; tungstenite 0.30 does not know it and refuses it. Compare up to it.
    if let Some(i) = events
        .iter()
        .position(|e| matches!(e, Ev::Close(Some(1014), _)))
    {
        assert_eq!(theirs, events[..i], "events before a close 1014");
        assert!(their_error);
        return;
    }
    assert_eq!(theirs, events, "events, ours then tungstenite's");
    // What tungstenite refuses, we refuse. The converse does not hold for a frame the input
    // cuts short: we check a frame's header and UTF-8 as its bytes arrive and fail at once,
    // tungstenite only reads complete frames (and then sees the end of the input).
    if their_error {
        assert!(error, "tungstenite refused what we accepted");
    }
}

fuzz_target!(|data: &[u8]| {
    let [opts, cut1, cut2, wire @ ..] = data else {
        return;
    };
    let utf8_check = opts & 1 == 0;
    let max = [1 << 20, 125, 1000, 1 << 16][usize::from((opts >> 1) & 3)];
    let make = move || Decoder::new(max, utf8_check);
    let at = |cut: u8| wire.len() * usize::from(cut) / 255;
    let (a, b) = (at(*cut1).min(at(*cut2)), at(*cut1).max(at(*cut2)));

    let whole = feed(&make, [wire]);
    let bytewise = feed(&make, wire.chunks(1));
    assert_eq!(bytewise.events, whole.events, "byte by byte vs whole");
    assert_eq!(bytewise.error, whole.error, "byte by byte vs whole");
    let three = feed(&make, [&wire[..a], &wire[a..b], &wire[b..]]);
    assert_eq!(three.events, whole.events, "split at {a} and {b}");
    assert_eq!(three.error, whole.error, "split at {a} and {b}");
    if whole.error.is_none() {
        assert_eq!(bytewise.leftover, whole.leftover);
        assert_eq!(three.leftover, whole.leftover);
    }
    if utf8_check && max == 1 << 20 {
        oracle(wire, &whole);
    }
});
