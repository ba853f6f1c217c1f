//! WebSocket framing for the server role, sans-IO (RFC 6455): the check of a client's
//! `Sec-WebSocket-Key`, a frame-header parser, a [`Decoder`] that turns client bytes into
//! complete messages and control frames, and the (unmasked) server frame encoder. What both
//! roles need — opcodes, masking, the accept key, frame-header encoding, close-code rules — is
//! [`crate::proto::ws`]'s, used here, not repeated.
//!
//! Rules it enforces, each answered with the close code the caller sends:
//! 1. Client frames must be masked; RSV bits must be clear (no extension is ever negotiated);
//!    opcodes must be known; control frames must be final and at most 125 bytes; a continuation
//!    needs a message in progress and a new data frame needs none. Violations: 1002.
//! 2. A message (all its fragments) over [`MAX_MESSAGE`] bytes: 1009, decided from the header,
//!    before any of its payload is buffered.
//! 3. Text messages and close reasons must be UTF-8: 1007.
//!
//! Partial input returns "not yet" and consumes nothing, except that a data frame's payload
//! streams into the decoder's message buffer as it arrives, so a 1 MiB message never needs a
//! 1 MiB input buffer. A final unfragmented frame that is already whole is unmasked in place
//! and handed out without a copy (the common case). Nothing here reads a socket or a clock.

use base64::Engine as _;

pub(super) use crate::proto::ws::OpCode;
use crate::proto::ws::{
    apply_mask, close_payload, encode_head, is_sendable_close_code, CONTROL_MAX,
};

/// Largest message (sum of its fragments) accepted from a client.
pub(super) const MAX_MESSAGE: usize = 1 << 20;
/// Message-buffer capacity kept after a large message; more is returned to the allocator so a
/// connection that once echoed 1 MiB does not hold it for the rest of its life.
const KEEP_CAPACITY: usize = 64 * 1024;
/// A `Sec-WebSocket-Key` must be the base64 of 16 bytes (RFC 6455 §4.1, item 7).
pub(super) fn valid_key(key: &[u8]) -> bool {
    let mut raw = [0u8; 18];
    key.len() == 24
        && matches!(
            base64::engine::general_purpose::STANDARD.decode_slice(key, &mut raw),
            Ok(16)
        )
}

/// Why the client's byte stream cannot continue; each maps to the close code to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// Framing rules broken (module rule 1): 1002.
    Protocol,
    /// Message larger than [`MAX_MESSAGE`]: 1009.
    TooBig,
    /// Text or close reason that is not UTF-8: 1007.
    BadUtf8,
}

impl Fault {
    /// The close code that reports this fault.
    pub(super) fn code(self) -> u16 {
        match self {
            Fault::Protocol => 1002,
            Fault::TooBig => 1009,
            Fault::BadUtf8 => 1007,
        }
    }

    /// A short close reason.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Fault::Protocol => "protocol error",
            Fault::TooBig => "message too big",
            Fault::BadUtf8 => "invalid utf-8",
        }
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrameHead {
    pub(super) fin: bool,
    pub(super) opcode: OpCode,
    pub(super) mask: [u8; 4],
    /// Payload length (already checked against [`MAX_MESSAGE`] for data frames).
    pub(super) len: usize,
    /// Header bytes, mask included (6..=14).
    pub(super) header_len: usize,
}

/// Parses a client frame header at the start of `buf`. `Ok(None)`: not all of it is here yet
/// (nothing is consumed; call again with more bytes). Rule violations visible in the bytes
/// present are reported at once, so garbage is refused without waiting for more of it.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<FrameHead>, Fault> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(Fault::Protocol);
    }
    let opcode = OpCode::from_bits(b0 & 0x0f).ok_or(Fault::Protocol)?;
    if b1 & 0x80 == 0 {
        return Err(Fault::Protocol);
    }
    let len7 = b1 & 0x7f;
    if opcode.is_control() && (!fin || usize::from(len7) > CONTROL_MAX) {
        return Err(Fault::Protocol);
    }
    let (len, ext) = match len7 {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(b);
                let n = u64::from_be_bytes(n);
                // RFC 6455 §5.2: the most significant bit must be 0.
                if n >> 63 != 0 {
                    return Err(Fault::Protocol);
                }
                (n, 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(Fault::TooBig);
    }
    let header_len = 2 + ext + 4;
    let Some(m) = buf.get(2 + ext..header_len) else {
        return Ok(None);
    };
    Ok(Some(FrameHead {
        fin,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        len: len as usize,
        header_len,
    }))
}

/// One thing the client said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event<'a> {
    /// A complete text message, already checked to be UTF-8.
    Text(&'a [u8]),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping and its payload.
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// A close frame with its (valid) status code, or `None` when it carried no payload.
    Close(Option<u16>),
}

/// A data frame whose payload is still arriving into the message buffer.
#[derive(Clone, Copy, Debug)]
struct Streaming {
    fin: bool,
    mask: [u8; 4],
    remaining: usize,
    /// Payload bytes of this frame already unmasked, mod 4.
    phase: usize,
}

/// Reassembles client frames into [`Event`]s; one per connection, reused for its life.
#[derive(Debug, Default)]
pub(super) struct Decoder {
    /// The data frame being streamed into `msg`, if its payload has not all arrived.
    streaming: Option<Streaming>,
    /// Opcode (text or binary) of the message being assembled in `msg`.
    message: Option<OpCode>,
    /// Payload of the message in progress (fragments, or a frame that arrived in pieces).
    msg: Vec<u8>,
    /// `msg` was handed out by the previous call and must be emptied first.
    delivered: bool,
}

/// What one [`Decoder::decode`] call did: `consumed` bytes of its input are used up (the
/// caller drops them), and maybe one event is ready. `consumed == 0` with no event means
/// "need more bytes".
pub(super) struct Step<'a> {
    pub(super) consumed: usize,
    pub(super) event: Option<Event<'a>>,
}

impl Decoder {
    /// Decodes from the start of `buf` (bytes not yet consumed). Masked payloads are unmasked
    /// in place, which is why `buf` is mutable. After an error the stream is dead: the caller
    /// sends the fault's close frame and decodes no more.
    pub(super) fn decode<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Step<'a>, Fault> {
        if self.delivered {
            self.delivered = false;
            self.msg.clear();
            if self.msg.capacity() > KEEP_CAPACITY {
                self.msg = Vec::new();
            }
        }
        if let Some(mut st) = self.streaming {
            let take = st.remaining.min(buf.len());
            if take == 0 {
                return Ok(Step::pending());
            }
            let chunk = &mut buf[..take];
            apply_mask(chunk, st.mask, st.phase);
            self.msg.extend_from_slice(chunk);
            st.remaining -= take;
            st.phase = (st.phase + take) % 4;
            if st.remaining > 0 {
                self.streaming = Some(st);
                return Ok(Step::consumed(take));
            }
            self.streaming = None;
            return self.frame_done(st.fin, take);
        }
        let Some(head) = parse_head(buf)? else {
            return Ok(Step::pending());
        };
        let total = head.header_len + head.len;
        match head.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                let Some(payload) = buf.get_mut(head.header_len..total) else {
                    // At most 131 bytes: wait until the whole frame is buffered.
                    return Ok(Step::pending());
                };
                apply_mask(payload, head.mask, 0);
                let event = match head.opcode {
                    OpCode::Ping => Event::Ping(payload),
                    OpCode::Pong => Event::Pong(payload),
                    _ => Event::Close(parse_close(payload)?),
                };
                Ok(Step {
                    consumed: total,
                    event: Some(event),
                })
            }
            OpCode::Continuation => {
                if self.message.is_none() {
                    return Err(Fault::Protocol);
                }
                if self.msg.len() + head.len > MAX_MESSAGE {
                    return Err(Fault::TooBig);
                }
                self.stream_frame(head, buf)
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(Fault::Protocol);
                }
                if head.fin && buf.len() >= total {
                    // Whole single-frame message: no copy. (Checked by length rather than with
                    // `get_mut` so the borrow does not outlive this branch.)
                    {
                        let payload = &mut buf[head.header_len..total];
                        apply_mask(payload, head.mask, 0);
                        let event = data_event(head.opcode, payload)?;
                        return Ok(Step {
                            consumed: total,
                            event: Some(event),
                        });
                    }
                }
                self.message = Some(head.opcode);
                self.stream_frame(head, buf)
            }
        }
    }

    /// Consumes a data frame's header and whatever payload is present into `msg`.
    fn stream_frame<'a>(
        &'a mut self,
        head: FrameHead,
        buf: &'a mut [u8],
    ) -> Result<Step<'a>, Fault> {
        let avail = &mut buf[head.header_len..];
        let take = head.len.min(avail.len());
        let chunk = &mut avail[..take];
        apply_mask(chunk, head.mask, 0);
        if self.msg.capacity() == 0 {
            // First use on this connection: start big enough for typical messages at once.
            self.msg.reserve(head.len.clamp(256, KEEP_CAPACITY));
        }
        self.msg.extend_from_slice(chunk);
        let consumed = head.header_len + take;
        if take < head.len {
            self.streaming = Some(Streaming {
                fin: head.fin,
                mask: head.mask,
                remaining: head.len - take,
                phase: take % 4,
            });
            return Ok(Step::consumed(consumed));
        }
        self.frame_done(head.fin, consumed)
    }

    /// A data frame's payload is complete in `msg`; a final one completes the message.
    fn frame_done(&mut self, fin: bool, consumed: usize) -> Result<Step<'_>, Fault> {
        if !fin {
            return Ok(Step::consumed(consumed));
        }
        let opcode = self.message.take().unwrap_or(OpCode::Binary);
        self.delivered = true;
        let event = data_event(opcode, &self.msg)?;
        Ok(Step {
            consumed,
            event: Some(event),
        })
    }
}

impl Step<'_> {
    fn pending() -> Self {
        Step {
            consumed: 0,
            event: None,
        }
    }

    fn consumed(n: usize) -> Self {
        Step {
            consumed: n,
            event: None,
        }
    }
}

fn data_event(opcode: OpCode, payload: &[u8]) -> Result<Event<'_>, Fault> {
    if opcode == OpCode::Text {
        std::str::from_utf8(payload).map_err(|_| Fault::BadUtf8)?;
        Ok(Event::Text(payload))
    } else {
        Ok(Event::Binary(payload))
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<u16>, Fault> {
    match payload {
        [] => Ok(None),
        [_] => Err(Fault::Protocol),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_sendable_close_code(code) {
                return Err(Fault::Protocol);
            }
            std::str::from_utf8(reason).map_err(|_| Fault::BadUtf8)?;
            Ok(Some(code))
        }
    }
}

/// Appends the header of a final, unmasked server frame carrying `len` payload bytes.
pub(super) fn push_head(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    let mut head = [0u8; 14];
    let n = encode_head(&mut head, opcode, true, len, None);
    out.extend_from_slice(&head[..n]);
}

/// Appends a whole final server frame.
pub(super) fn push_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    push_head(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame: `code` and `reason` (cut to fit the 125-byte control limit), or an
/// empty close when `code` is `None` (the answer to an empty close).
pub(super) fn push_close(out: &mut Vec<u8>, code: Option<u16>, reason: &str) {
    let Some(code) = code else {
        push_head(out, OpCode::Close, 0);
        return;
    };
    let mut payload = [0u8; CONTROL_MAX];
    let len = close_payload(&mut payload, code, reason);
    push_frame(out, OpCode::Close, &payload[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, built by hand (the oracle comparisons below use tungstenite).
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        // Byte at a time (RFC 6455 §5.3), independent of the `apply_mask` under test.
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Owned copy of an event, so tests can collect them across calls.
    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>),
    }

    fn own(e: Event<'_>) -> Owned {
        match e {
            Event::Text(p) => Owned::Text(p.to_vec()),
            Event::Binary(p) => Owned::Binary(p.to_vec()),
            Event::Ping(p) => Owned::Ping(p.to_vec()),
            Event::Pong(p) => Owned::Pong(p.to_vec()),
            Event::Close(c) => Owned::Close(c),
        }
    }

    /// Feeds `wire` in pieces of at most `piece` bytes (like reads), decoding after each, with
    /// the unconsumed bytes carried over the way the connection carries them. Returns the
    /// events, the first fault, and the unconsumed tail.
    fn feed(wire: &[u8], piece: usize) -> (Vec<Owned>, Option<Fault>, Vec<u8>) {
        let mut dec = Decoder::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut events = Vec::new();
        for chunk in wire.chunks(piece.max(1)) {
            buf.extend_from_slice(chunk);
            loop {
                match dec.decode(&mut buf) {
                    Err(f) => return (events, Some(f), buf),
                    Ok(step) => {
                        let n = step.consumed;
                        let got = step.event.map(own);
                        let done = n == 0 && got.is_none();
                        if let Some(e) = got {
                            events.push(e);
                        }
                        buf.drain(..n);
                        if done {
                            break;
                        }
                    }
                }
            }
        }
        (events, None, buf)
    }

    #[test]
    fn valid_key_is_the_base64_of_16_bytes() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key(b"not base64 at all!!!!!!!"));
        assert!(!valid_key(b""));
    }

    #[test]
    fn header_parse_agrees_with_tungstenite_at_length_boundaries() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::coding::{Data, OpCode as TOp};
        use tungstenite::protocol::frame::FrameHeader;
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, MAX_MESSAGE] {
            let header = FrameHeader {
                is_final: true,
                rsv1: false,
                rsv2: false,
                rsv3: false,
                opcode: TOp::Data(Data::Binary),
                mask: Some([1, 2, 3, 4]),
            };
            let mut wire = Vec::new();
            header.format(len as u64, &mut wire).expect("format");
            let expect_len = header.len(len as u64);
            let ours = parse_head(&wire).expect("valid").expect("complete");
            assert_eq!(ours.len, len);
            assert_eq!(ours.header_len, expect_len);
            assert_eq!(ours.mask, [1, 2, 3, 4]);
            assert!(ours.fin);
            assert_eq!(ours.opcode, OpCode::Binary);
            let mut cur = Cursor::new(&wire[..]);
            let (_, theirs_len) = FrameHeader::parse(&mut cur)
                .expect("tungstenite parses")
                .expect("complete");
            assert_eq!(theirs_len as usize, ours.len);
            // Every strict prefix is "not yet" (and consumes nothing: the function is pure).
            for cut in 0..wire.len() {
                assert_eq!(parse_head(&wire[..cut]), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn header_rule_violations() {
        // Unmasked.
        assert_eq!(parse_head(&[0x81, 0x05]), Err(Fault::Protocol));
        // RSV1 set.
        assert_eq!(parse_head(&[0xC1, 0x80]), Err(Fault::Protocol));
        // Unknown opcode 3 and 0xB.
        assert_eq!(parse_head(&[0x83, 0x80]), Err(Fault::Protocol));
        assert_eq!(parse_head(&[0x8B, 0x80]), Err(Fault::Protocol));
        // Fragmented ping, and a 126-byte ping.
        assert_eq!(parse_head(&[0x09, 0x80]), Err(Fault::Protocol));
        assert_eq!(parse_head(&[0x89, 0x80 | 126]), Err(Fault::Protocol));
        // 64-bit length with the top bit set.
        let mut w = vec![0x82, 0x80 | 127];
        w.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(parse_head(&w), Err(Fault::Protocol));
        // One byte over the message limit.
        let mut w = vec![0x82, 0x80 | 127];
        w.extend_from_slice(&(MAX_MESSAGE as u64 + 1).to_be_bytes());
        assert_eq!(parse_head(&w), Err(Fault::TooBig));
    }

    #[test]
    fn decoder_whole_bytewise_and_with_trailing_bytes() {
        let mut wire = Vec::new();
        wire.extend(client_frame(true, 1, b"hello", [1, 2, 3, 4]));
        wire.extend(client_frame(true, 9, b"ping-data", [5, 6, 7, 8]));
        // Fragmented binary with a pong in the middle.
        wire.extend(client_frame(false, 2, &[1, 2, 3], [9, 9, 9, 9]));
        wire.extend(client_frame(true, 10, b"p", [0, 1, 0, 1]));
        wire.extend(client_frame(false, 0, &[4, 5], [3, 1, 4, 1]));
        wire.extend(client_frame(true, 0, &[6], [2, 7, 1, 8]));
        // A large single frame (streams when split).
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        wire.extend(client_frame(true, 2, &big, [0xde, 0xad, 0xbe, 0xef]));
        wire.extend(client_frame(true, 1, b"", [1, 1, 1, 1]));
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        wire.extend(client_frame(true, 8, &close, [4, 3, 2, 1]));
        let expect = vec![
            Owned::Text(b"hello".to_vec()),
            Owned::Ping(b"ping-data".to_vec()),
            Owned::Pong(b"p".to_vec()),
            Owned::Binary(vec![1, 2, 3, 4, 5, 6]),
            Owned::Binary(big.clone()),
            Owned::Text(Vec::new()),
            Owned::Close(Some(1000)),
        ];
        for piece in [wire.len(), 1, 2, 3, 7, 100, 4096] {
            let (events, fault, tail) = feed(&wire, piece);
            assert_eq!(fault, None, "piece {piece}");
            assert_eq!(events, expect, "piece {piece}");
            assert!(tail.is_empty(), "piece {piece}");
        }
        // Trailing partial frame bytes stay unconsumed.
        let mut with_tail = client_frame(true, 1, b"abc", [1, 2, 3, 4]);
        let next = client_frame(true, 1, b"defgh", [1, 2, 3, 4]);
        with_tail.extend_from_slice(&next[..4]);
        let (events, fault, tail) = feed(&with_tail, with_tail.len());
        assert_eq!(fault, None);
        assert_eq!(events, vec![Owned::Text(b"abc".to_vec())]);
        assert_eq!(tail, next[..4].to_vec());
    }

    #[test]
    fn decoder_matches_tungstenite_encoder() {
        use tungstenite::protocol::frame::coding::{Data, OpCode as TOp};
        use tungstenite::protocol::frame::Frame;
        let mut wire = Vec::new();
        let mut f = Frame::message("relay ✓".as_bytes().to_vec(), TOp::Data(Data::Text), true);
        f.header_mut().mask = Some([0x11, 0x22, 0x33, 0x44]);
        f.format(&mut wire).expect("format");
        let mut f = Frame::ping(b"12345678".to_vec());
        f.header_mut().mask = Some([0xa0, 0x0b, 0xc0, 0x0d]);
        f.format(&mut wire).expect("format");
        let (events, fault, _) = feed(&wire, 3);
        assert_eq!(fault, None);
        assert_eq!(
            events,
            vec![
                Owned::Text("relay ✓".as_bytes().to_vec()),
                Owned::Ping(b"12345678".to_vec())
            ]
        );
    }

    #[test]
    fn decoder_faults() {
        let m = [1, 2, 3, 4];
        let fault = |wire: Vec<u8>| feed(&wire, wire.len()).1;
        // Continuation without a message.
        assert_eq!(fault(client_frame(true, 0, b"x", m)), Some(Fault::Protocol));
        // New data frame inside a fragmented message.
        let mut w = client_frame(false, 1, b"a", m);
        w.extend(client_frame(true, 1, b"b", m));
        assert_eq!(fault(w), Some(Fault::Protocol));
        // Invalid UTF-8, whole and split across fragments.
        assert_eq!(
            fault(client_frame(true, 1, &[0xff], m)),
            Some(Fault::BadUtf8)
        );
        let mut w = client_frame(false, 1, &[0xe2, 0x9c], m);
        w.extend(client_frame(true, 0, &[0x93], m));
        assert_eq!(
            feed(&w, w.len()).0,
            vec![Owned::Text("✓".as_bytes().to_vec())]
        );
        // Fragments adding up to more than the limit.
        let mut w = client_frame(false, 2, &vec![0; MAX_MESSAGE], m);
        w.extend(client_frame(true, 0, b"x", m));
        assert_eq!(fault(w), Some(Fault::TooBig));
        // Close payloads: one byte, reserved code, bad reason.
        assert_eq!(fault(client_frame(true, 8, &[3], m)), Some(Fault::Protocol));
        assert_eq!(
            fault(client_frame(true, 8, &1005u16.to_be_bytes(), m)),
            Some(Fault::Protocol)
        );
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.push(0xff);
        assert_eq!(fault(client_frame(true, 8, &p, m)), Some(Fault::BadUtf8));
        assert_eq!(
            feed(&client_frame(true, 8, &[], m), 100).0,
            vec![Owned::Close(None)]
        );
        assert_eq!(
            feed(&client_frame(true, 8, &4000u16.to_be_bytes(), m), 100).0,
            vec![Owned::Close(Some(4000))]
        );
    }

    #[test]
    fn server_frames_decode_with_tungstenite() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::FrameHeader;
        for len in [0usize, 5, 125, 126, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            push_frame(&mut out, OpCode::Binary, &payload);
            let mut cur = Cursor::new(&out[..]);
            let (h, n) = FrameHeader::parse(&mut cur)
                .expect("parse")
                .expect("complete");
            assert!(h.is_final && h.mask.is_none());
            assert_eq!(n as usize, len);
            assert_eq!(&out[cur.position() as usize..], &payload[..]);
        }
        let mut out = Vec::new();
        push_close(&mut out, Some(1008), &"é".repeat(100));
        assert_eq!(out[0], 0x88);
        let len = usize::from(out[1]);
        assert!(len <= CONTROL_MAX);
        assert_eq!(&out[2..4], &1008u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[4..]).is_ok());
        let mut out = Vec::new();
        push_close(&mut out, None, "ignored");
        assert_eq!(out, vec![0x88, 0]);
    }
}
