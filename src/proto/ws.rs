//! Sans-IO WebSocket codec (RFC 6455). Two parts:
//! - the primitives both roles share — client here and the built-in server in
//!   [`crate::serve`] — and that therefore exist once: [`OpCode`], [`apply_mask`] (the
//!   unmasking fast path is the masking one), [`accept_key`] / [`accept_for`] (the
//!   `Sec-WebSocket-Accept` derivation), [`encode_head`] (a frame header, masked or not),
//!   [`is_sendable_close_code`] and [`CONTROL_MAX`];
//! - the client role: the upgrade request, the check of the server's `101 Switching Protocols`,
//!   masked frame encoding and a frame decoder that reassembles messages.
//!
//! It never touches a socket, never reads a clock and never allocates per frame in steady state:
//! [`encode_frame`] appends to the caller's buffer, and [`Decoder`] returns messages borrowed from
//! the caller's input (single-frame messages) or from its own reassembly buffer (fragmented
//! ones), which it reuses. It does not answer pings, send closes or track the closing handshake:
//! the engine decides what to send; this module only says what arrived and which close code a
//! protocol violation calls for ([`WsError::close_code`]).
//!
//! Decoder contract, in the order the engine relies on it:
//! 1. Nothing of a frame is consumed until the whole frame is present, so a single-frame message
//!    can be borrowed from the input. Until then `decode` returns `(0, Partial)` and the caller
//!    keeps the bytes and appends more; the header is parsed once and text is validated as it
//!    arrives, so feeding a frame in small pieces stays O(n) and invalid UTF-8 fails fast.
//! 2. Each fragment of a fragmented message is consumed (copied into the reassembly buffer) as
//!    soon as that fragment frame is complete: `(n > 0, Partial)`. The caller therefore never
//!    holds more than one frame. Control frames between fragments are returned as they come.
//! 3. `decode` returns after at most one event; the bytes of the next frame stay unconsumed.
//! 4. Servers must not mask, must not set reserved bits (no extension is ever negotiated) and
//!    must follow the fragmentation and control-frame rules; any violation is an error that
//!    leaves the decoder failed (every later call repeats it) until [`Decoder::reset`].
//!    Non-minimal length encodings are accepted: RFC 6455 §5.2 puts the "minimal number of
//!    bytes" MUST on the sender, and refusing them would only make the benchmark fragile.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::proto::http1::{parse_response, trim_ows, HeaderSlots, ProtoError, RequestError};

/// RFC 6455 §1.3: appended to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest upgrade response head accepted, interim responses included.
const HEAD_MAX: usize = 64 * 1024;
/// RFC 6455 §5.5: control frames carry at most 125 payload bytes.
pub const CONTROL_MAX: usize = 125;
/// Reassembly capacity kept after a fragmented message: enough for typical messages so steady
/// state does not allocate, small enough that one huge message does not pin memory on each of
/// thousands of connections.
const RETAIN_CAPACITY: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------------

/// A fresh random Sec-WebSocket-Key (16 random bytes, base64) and its expected accept value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The `Sec-WebSocket-Key` to send (24 base64 characters).
    pub key: String,
    /// The `Sec-WebSocket-Accept` the server must answer with.
    pub accept: String,
}

impl Handshake {
    /// A new random key (RFC 6455 §4.1: a nonce of 16 random bytes) and its accept value.
    pub fn new<R: rand::Rng + ?Sized>(rng: &mut R) -> Handshake {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        Handshake::from_key(&BASE64.encode(nonce))
    }

    /// The accept value for a given key (tests, or a key chosen by the user).
    pub fn from_key(key: &str) -> Handshake {
        Handshake {
            key: key.to_owned(),
            accept: accept_for(key),
        }
    }
}

/// Sec-WebSocket-Accept for a key: base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
/// Both roles use it: the client to check the server's answer, the server to give it. Writes
/// into an array, so the server's upgrade path does not allocate.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key);
    sha1.update(ACCEPT_GUID);
    let digest = sha1.finish();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28 characters (one `=` of padding), so this cannot
    // run out of room.
    let _ = BASE64.encode_slice(digest.as_ref(), &mut out);
    out
}

/// [`accept_key`] as a `String` (the client keeps it beside its key).
pub fn accept_for(key: &str) -> String {
    // Base64 output is ASCII.
    accept_key(key.as_bytes())
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// Header fields the handshake itself sends or that would break it; a user header with one of
/// these names is refused (as [`RequestError::InvalidHeaderName`]) rather than sent twice.
const RESERVED_HEADERS: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    // This codec implements no extension (reserved bits are refused), so none may be offered.
    "sec-websocket-extensions",
];

/// Serialize the upgrade request: "GET {target} HTTP/1.1", Host, Upgrade: websocket,
/// Connection: Upgrade, Sec-WebSocket-Key, Sec-WebSocket-Version: 13, User-Agent: connbench/VERSION
/// (unless given), then user headers.
///
/// Validates like [`crate::proto::http1::encode_request`]: the target is origin-form (starts with
/// '/', printable ASCII, no spaces); header names are tokens; values have no CR, LF, NUL or other
/// control characters; the host used for the automatic Host header is non-empty printable ASCII
/// (a user `Host` header replaces it, two are refused). Also refused: user headers the handshake
/// owns (Upgrade, Connection, Sec-WebSocket-Key/-Version/-Extensions) as `InvalidHeaderName`, a
/// `Content-Length` other than 0 and any `Transfer-Encoding` (the upgrade has no body), and a key
/// with control characters (`InvalidHeaderValue("Sec-WebSocket-Key")`).
pub fn encode_upgrade(
    target: &str,
    host: &str,
    key: &str,
    headers: &[(String, String)],
) -> Result<Vec<u8>, RequestError> {
    if !target.starts_with('/') {
        return Err(RequestError::InvalidTarget(target.to_owned()));
    }
    if key.is_empty() || key.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(RequestError::InvalidHeaderValue(
            "Sec-WebSocket-Key".to_owned(),
        ));
    }
    if let Some((name, _)) = headers.iter().find(|(name, _)| {
        RESERVED_HEADERS
            .iter()
            .any(|reserved| name.eq_ignore_ascii_case(reserved))
    }) {
        return Err(RequestError::InvalidHeaderName(name.clone()));
    }
    // Everything else (validation, Host, User-Agent, no body) is an ordinary GET.
    let mut all = Vec::with_capacity(headers.len() + 4);
    for (name, value) in [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ] {
        all.push((name.to_owned(), value.to_owned()));
    }
    all.extend_from_slice(headers);
    crate::proto::http1::encode_request("GET", target, host, &all, &[])
}

/// Non-empty, OWS-trimmed elements of a comma-separated field value.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Why the 101 was not accepted. Every variant is the server's fault. Display: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    /// The final response was not `101 Switching Protocols` (its status code is kept).
    Status(u16),
    /// `Sec-WebSocket-Accept` is missing, repeated, or not the value the key calls for.
    BadAccept,
    /// The 101 lacks `Upgrade: websocket` or a `Connection` field with the token `upgrade`.
    MissingUpgrade,
    /// The response head is not valid HTTP/1.1, or the 101 selects an extension not offered.
    Malformed(&'static str),
    /// The response head (interim responses included) is larger than 64 KiB.
    HeadTooLarge,
    /// The response head has more header fields than connbench accepts
    /// ([`crate::proto::http1::MAX_HEADERS`]).
    TooManyHeaders,
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Status(code) => write!(
                f,
                "server answered the WebSocket upgrade with status {code} instead of 101"
            ),
            UpgradeError::BadAccept => write!(
                f,
                "server's Sec-WebSocket-Accept is missing or does not match the key sent"
            ),
            UpgradeError::MissingUpgrade => write!(
                f,
                "server's 101 lacks 'Upgrade: websocket' or 'Connection: Upgrade'"
            ),
            UpgradeError::Malformed(what) => write!(f, "malformed upgrade response: {what}"),
            UpgradeError::HeadTooLarge => write!(
                f,
                "upgrade response head is larger than {} KiB",
                HEAD_MAX / 1024
            ),
            UpgradeError::TooManyHeaders => write!(
                f,
                "upgrade response head has more than {} header fields",
                crate::proto::http1::MAX_HEADERS
            ),
        }
    }
}

impl std::error::Error for UpgradeError {}

/// Parse the server's answer to the upgrade. Ok(None): need more bytes (nothing consumed).
/// Ok(Some(n)): 101 validated (status 101, Upgrade: websocket, Connection contains upgrade,
/// Sec-WebSocket-Accept == expected); the first n bytes were the head; bytes after n are frames.
/// A non-101 final status → Err(Status(code)) (interim 1xx other than 101 skipped).
///
/// Stateless: on `Ok(None)` call again with more bytes appended (the upgrade answer is parsed
/// once per connection, so re-parsing a partial head is cheaper than keeping state). Being
/// stateless, the verdict never depends on how the bytes were split, and a prefix that cannot
/// become a valid head (httparse's verdict, or a status code outside 100-599) fails at once. A
/// 101 must be HTTP/1.1 and must not select an extension (none is offered). A selected
/// subprotocol is not checked here: the caller knows which it offered. Up to
/// [`crate::proto::http1::MAX_HEADERS`] header fields.
pub fn parse_upgrade_response(
    buf: &[u8],
    expected_accept: &str,
) -> Result<Option<usize>, UpgradeError> {
    let window = &buf[..buf.len().min(HEAD_MAX)];
    // Heap slots only for a head with more fields than the stack array holds (once per
    // connection, never per message).
    let mut slots = HeaderSlots::default();
    let mut at = 0;
    loop {
        let rest = &window[at..];
        let parsed = parse_response(rest, &mut slots, |response| {
            let status = response.code.unwrap_or(0);
            let check = if status == 101 {
                check_101_fields(response.headers, expected_accept)
            } else {
                Ok(())
            };
            (response.version, status, check)
        });
        let (len, (minor, status, check)) = match parsed {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                return if buf.len() >= HEAD_MAX {
                    Err(UpgradeError::HeadTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(ProtoError::TooManyHeaders) => return Err(UpgradeError::TooManyHeaders),
            Err(ProtoError::Malformed(what)) => return Err(UpgradeError::Malformed(what)),
            // parse_response reports nothing else.
            Err(_) => return Err(UpgradeError::Malformed("response head cannot be parsed")),
        };
        match status {
            101 => {}
            // Interim response (100 Continue, 103 Early Hints): the final one follows.
            100..=199 => {
                at += len;
                continue;
            }
            // parse_response refuses codes outside 100-599.
            _ => return Err(UpgradeError::Status(status)),
        }
        if minor != Some(1) {
            return Err(UpgradeError::Malformed("101 on HTTP/1.0"));
        }
        check?;
        return Ok(Some(at + len));
    }
}

/// RFC 6455 §4.1 steps 2-6 for the fields of a 101.
fn check_101_fields(
    headers: &[httparse::Header<'_>],
    expected_accept: &str,
) -> Result<(), UpgradeError> {
    let mut upgrade = false;
    let mut connection = false;
    let mut accepts = 0;
    let mut accept_matches = false;
    for header in headers {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= list_elements(header.value).any(|p| p.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection |= list_elements(header.value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            accepts += 1;
            accept_matches = trim_ows(header.value) == expected_accept.as_bytes();
        } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions")
            && list_elements(header.value).next().is_some()
        {
            return Err(UpgradeError::Malformed(
                "server selected a WebSocket extension that was not offered",
            ));
        }
    }
    if !upgrade || !connection {
        return Err(UpgradeError::MissingUpgrade);
    }
    if accepts != 1 || !accept_matches {
        return Err(UpgradeError::BadAccept);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Frame encoding
// ---------------------------------------------------------------------------------------------

/// A frame's opcode (RFC 6455 §5.2); reserved opcodes are never produced or accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: a later fragment of a text or binary message.
    Continuation,
    /// 0x1: the first (or only) frame of a UTF-8 text message.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: close, with an optional status code and reason.
    Close,
    /// 0x9: ping; the peer answers with a pong carrying the same payload.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// The opcode for a 4-bit wire value; `None` for the reserved ones (0x3-0x7, 0xB-0xF).
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Append one client frame to `out` (masked with `mask`, FIN as given). No allocation when `out`
/// has capacity. `payload` is copied and masked in place in `out` (mask fast: 8 bytes at a time,
/// correct at every alignment and length — test against a byte-at-a-time reference).
///
/// The length uses the minimal form (7, 16 or 64 bits). The frame is written as asked: keeping
/// control frames final and at most 125 bytes is the caller's job (see [`encode_close`]).
/// RFC 6455 §5.3 wants a fresh unpredictable `mask` per frame.
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, fin: bool, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    let mut header = [0u8; 14];
    let header_len = encode_head(&mut header, opcode, fin, len, Some(mask));
    out.reserve(header_len + len);
    out.extend_from_slice(&header[..header_len]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// Write a frame header for a `len`-byte payload into `header` and return its length (2 to 14
/// bytes): FIN and opcode, the minimal length form (7, 16 or 64 bits), and the mask key when
/// there is one (clients always mask, servers never do). The payload itself is the caller's.
pub fn encode_head(
    header: &mut [u8; 14],
    opcode: OpCode,
    fin: bool,
    len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    header[0] = (u8::from(fin) << 7) | opcode.bits();
    let mut header_len = 2;
    if len <= 125 {
        // Fits: len <= 125.
        header[1] = mask_bit | len as u8;
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = mask_bit | 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        header_len = 4;
    } else {
        header[1] = mask_bit | 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        header_len = 10;
    }
    if let Some(mask) = mask {
        header[header_len..header_len + 4].copy_from_slice(&mask);
        header_len += 4;
    }
    header_len
}

/// Convenience: a close frame with code and reason (see [`close_payload`]). No allocation when
/// `out` has capacity.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: [u8; 4]) {
    let mut payload = [0u8; CONTROL_MAX];
    let len = close_payload(&mut payload, code, reason);
    encode_frame(out, OpCode::Close, true, &payload[..len], mask);
}

/// A close frame's payload, written into `payload`; returns its length. The code comes first
/// (big-endian), then the reason cut to 123 bytes at a character boundary, so it stays valid
/// UTF-8 and the whole fits the 125 bytes a control frame may carry. Both roles build closes
/// with it.
pub fn close_payload(payload: &mut [u8; CONTROL_MAX], code: u16, reason: &str) -> usize {
    let mut end = reason.len().min(CONTROL_MAX - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    2 + end
}

/// XOR `buf` with `mask` as if it started at byte `offset` of the payload. Masking and unmasking
/// are the same operation: the client masks what it sends with it, the server unmasks what it
/// receives (in place, a frame delivered in pieces continuing at `offset`).
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let phase = [
        mask[offset % 4],
        mask[(offset + 1) % 4],
        mask[(offset + 2) % 4],
        mask[(offset + 3) % 4],
    ];
    // Eight bytes per step as one u64 (unaligned loads are fine on every target we build for,
    // and the compiler widens this loop further with SIMD); byte order does not matter because
    // the mask word is built from the same bytes in the same order.
    let wide = u64::from_ne_bytes([
        phase[0], phase[1], phase[2], phase[3], phase[0], phase[1], phase[2], phase[3],
    ]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
    }
    // The tail starts at a multiple of 8, hence at phase 0.
    for (i, byte) in tail.iter_mut().enumerate() {
        *byte ^= phase[i % 4];
    }
}

// ---------------------------------------------------------------------------------------------
// Frame decoding
// ---------------------------------------------------------------------------------------------

/// What one decode step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete text or binary message (fragments reassembled). Borrowed from the input when it
    /// came in one frame, else from the decoder's reassembly buffer.
    Message {
        /// The message was text (opcode 0x1); its data is valid UTF-8 when the decoder checks it.
        text: bool,
        /// The payload, unmasked.
        data: &'a [u8],
    },
    /// A ping with its payload (the caller should answer with a pong carrying it).
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// Close frame: code (None when the payload was empty) and reason.
    Close {
        /// The status code; always one a peer may send (RFC 6455 §7.4).
        code: Option<u16>,
        /// The reason text (empty when absent).
        reason: &'a str,
    },
}

/// What one `decode` call achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress<'a> {
    /// More bytes are needed (a fragment may have been consumed: see the consumed count).
    Partial,
    /// One event is complete.
    Frame(Frame<'a>),
}

/// Protocol violations by the server, each with the close code the client must send
/// ([`close_code`](Self::close_code)). Display: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// RSV1-3 set, but no extension was negotiated (1002).
    ReservedBits,
    /// A reserved opcode (0x3-0x7, 0xB-0xF) (1002).
    ReservedOpcode(u8),
    /// A control frame without FIN (1002).
    FragmentedControl,
    /// A control frame with more than 125 payload bytes (1002).
    ControlTooLong,
    /// A continuation frame while no fragmented message was in progress (1002).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message was in progress (1002).
    ExpectedContinuation,
    /// A masked frame: servers must not mask (1002).
    MaskedFrame,
    /// A 64-bit payload length with its most significant bit set (1002).
    InvalidLength,
    /// A close payload of exactly one byte (1002).
    CloseTooShort,
    /// A close code a peer may not send: <1000, 1004-1006, 1015, 1016-2999, ≥5000 (1002).
    InvalidCloseCode(u16),
    /// A text message that is not valid UTF-8 (1007).
    InvalidUtf8,
    /// A close reason that is not valid UTF-8 (1007).
    InvalidCloseReason,
    /// A message larger than the configured maximum (1009).
    MessageTooBig {
        /// Bytes the message would have reached with this frame.
        size: u64,
        /// The maximum configured.
        max: usize,
    },
}

impl WsError {
    /// The close code to send before dropping the connection (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::InvalidUtf8 | WsError::InvalidCloseReason => 1007,
            WsError::MessageTooBig { .. } => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::ReservedBits => {
                write!(f, "server frame sets reserved bits without an extension")
            }
            WsError::ReservedOpcode(op) => write!(f, "server frame uses reserved opcode {op:#x}"),
            WsError::FragmentedControl => write!(f, "server sent a fragmented control frame"),
            WsError::ControlTooLong => write!(
                f,
                "server sent a control frame longer than {CONTROL_MAX} bytes"
            ),
            WsError::UnexpectedContinuation => write!(
                f,
                "server sent a continuation frame outside a fragmented message"
            ),
            WsError::ExpectedContinuation => write!(
                f,
                "server started a new message inside a fragmented message"
            ),
            WsError::MaskedFrame => write!(f, "server sent a masked frame"),
            WsError::InvalidLength => write!(
                f,
                "server frame has a 64-bit length with the most significant bit set"
            ),
            WsError::CloseTooShort => write!(f, "server close frame has a 1-byte payload"),
            WsError::InvalidCloseCode(code) => {
                write!(f, "server close frame has the invalid code {code}")
            }
            WsError::InvalidUtf8 => write!(f, "server text message is not valid UTF-8"),
            WsError::InvalidCloseReason => {
                write!(f, "server close reason is not valid UTF-8")
            }
            // The size is left out on purpose: the text is a report's reason, and one reason per
            // maximum reads better than one per size (the size stays in the value).
            WsError::MessageTooBig { max, .. } => write!(
                f,
                "server message exceeds the {max}-byte maximum (--max-message)"
            ),
        }
    }
}

impl std::error::Error for WsError {}

/// Close codes a peer may send (RFC 6455 §7.4 and the IANA registry: 1012-1014 are registered,
/// 3000-3999 are for libraries and frameworks, 4000-4999 private use; 1005, 1006 and 1015 are
/// for local use only, 1004 and 1016-2999 unassigned). Both roles check received closes with it.
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Where the decoder is between frames.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// No message in progress.
    Idle,
    /// A fragmented message is being reassembled (its first frame was text or binary).
    Fragmented { text: bool },
    /// The reassembly buffer holds the message just returned; it is released on the next call.
    Delivered,
    /// A protocol violation; every call repeats it until `reset`.
    Failed(WsError),
}

/// The parsed header of the frame at the start of the input, kept while the frame is incomplete
/// so it is parsed (and checked) once however the bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    fin: bool,
    opcode: OpCode,
    header_len: usize,
    /// Fits in usize: bounded by the message maximum (data) or 125 (control).
    payload_len: usize,
    /// The payload is text to validate (a text frame, or a continuation of a text message).
    check_utf8: bool,
    /// Payload bytes already fed to the UTF-8 validator while the frame was incomplete.
    validated: usize,
}

/// Incremental UTF-8 validation across chunk boundaries: `std::str::from_utf8` on each chunk,
/// carrying an incomplete trailing sequence (at most 3 bytes) into the next chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// A byte sequence that can never become valid UTF-8, whatever follows.
struct Invalid;

impl Utf8Validator {
    /// Validate the next chunk. Fails at the first sequence that cannot be completed (std's
    /// `error_len() == Some(_)`); an incomplete but valid prefix at the end is carried over.
    fn feed(&mut self, mut input: &[u8]) -> Result<(), Invalid> {
        if self.carry_len > 0 {
            let have = usize::from(self.carry_len);
            let need = sequence_len(self.carry[0]).saturating_sub(have);
            let take = need.min(input.len());
            self.carry[have..have + take].copy_from_slice(&input[..take]);
            let filled = have + take;
            match std::str::from_utf8(&self.carry[..filled]) {
                Ok(_) => {
                    self.carry_len = 0;
                    input = &input[take..];
                }
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: the chunk ended inside the sequence. Fits: filled < 4.
                    self.carry_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(Invalid),
            }
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // std reports at most 3 bytes of an incomplete sequence; the min keeps that
                // promise from turning into a panic.
                let rest = &input[e.valid_up_to()..];
                let n = rest.len().min(3);
                self.carry[..n].copy_from_slice(&rest[..n]);
                self.carry_len = n as u8;
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// The message ended: valid only if no sequence is left open. Resets the validator.
    fn finish(&mut self) -> Result<(), Invalid> {
        let complete = self.carry_len == 0;
        *self = Utf8Validator::default();
        if complete {
            Ok(())
        } else {
            Err(Invalid)
        }
    }
}

/// Length of the UTF-8 sequence a lead byte starts (only valid leads are ever carried).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// A decode step's result before it is tied to the decoder's own buffer.
enum Event<'a> {
    Partial,
    Frame(Frame<'a>),
    /// The reassembly buffer holds a complete message.
    Reassembled {
        text: bool,
    },
}

/// Incremental decoder for the frames a server sends on one connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_message: usize,
    utf8_check: bool,
    state: State,
    /// The incomplete frame at the start of the caller's input, if its header is complete.
    pending: Option<FrameHead>,
    /// Fragments of the message in progress (reused across messages).
    reassembly: Vec<u8>,
    /// UTF-8 state of the text message in progress.
    utf8: Utf8Validator,
}

impl Decoder {
    /// `max_message`: largest message (after reassembly) accepted; `utf8_check`: validate text.
    ///
    /// Close reasons are always validated (they are returned as `&str`).
    pub fn new(max_message: usize, utf8_check: bool) -> Decoder {
        Decoder {
            max_message,
            utf8_check,
            state: State::Idle,
            pending: None,
            reassembly: Vec::new(),
            utf8: Utf8Validator::default(),
        }
    }

    /// Decode at most one frame event from `buf`. Returns bytes consumed. Contract:
    /// - A frame header is consumed only when complete; a data frame's payload only when the whole
    ///   frame is present (so `Frame::Message` can borrow it) — EXCEPT fragments of a fragmented
    ///   message, which are consumed (copied into the reassembly buffer) as soon as each fragment
    ///   frame is complete; so callers hold at most one frame.
    /// - Intermediate fragments produce (consumed > 0, Partial); control frames interleaved in a
    ///   fragmented message are returned as they come.
    /// - After an error, keep returning it until `reset()`.
    ///
    /// `buf` must start with the bytes left unconsumed by the previous call (the decoder
    /// remembers how far it parsed the frame they begin).
    pub fn decode<'a>(&'a mut self, buf: &'a [u8]) -> Result<(usize, Progress<'a>), WsError> {
        match self.step(buf) {
            Ok((n, Event::Partial)) => Ok((n, Progress::Partial)),
            Ok((n, Event::Frame(frame))) => Ok((n, Progress::Frame(frame))),
            Ok((n, Event::Reassembled { text })) => Ok((
                n,
                Progress::Frame(Frame::Message {
                    text,
                    data: &self.reassembly,
                }),
            )),
            Err(e) => {
                self.state = State::Failed(e.clone());
                self.pending = None;
                Err(e)
            }
        }
    }

    /// Forget any partial frame or message and any error (the connection is being replaced).
    /// The reassembly buffer's capacity is kept, up to 64 KiB.
    pub fn reset(&mut self) {
        self.release_message();
        self.pending = None;
        self.utf8 = Utf8Validator::default();
    }

    /// The largest message accepted, as configured.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Empty the reassembly buffer, giving back memory a large message made it grow.
    fn release_message(&mut self) {
        self.reassembly.clear();
        if self.reassembly.capacity() > RETAIN_CAPACITY {
            self.reassembly.shrink_to(RETAIN_CAPACITY);
        }
        self.state = State::Idle;
    }

    fn step<'a>(&mut self, buf: &'a [u8]) -> Result<(usize, Event<'a>), WsError> {
        match &self.state {
            State::Failed(e) => return Err(e.clone()),
            State::Delivered => self.release_message(),
            State::Idle | State::Fragmented { .. } => {}
        }
        let mut head = match self.pending.take() {
            Some(head) => head,
            None => match self.parse_header(buf)? {
                Some(head) => head,
                None => return Ok((0, Event::Partial)),
            },
        };
        let end = head.header_len + head.payload_len;
        if head.check_utf8 {
            // Validate what has arrived so far, so a bad byte fails now and not once a large
            // frame is complete; `validated` keeps every byte from being checked twice.
            let arrived = buf
                .get(head.header_len..end.min(buf.len()))
                .unwrap_or_default();
            if let Some(fresh) = arrived.get(head.validated..) {
                self.utf8
                    .feed(fresh)
                    .map_err(|Invalid| WsError::InvalidUtf8)?;
                head.validated = arrived.len();
            }
        }
        let Some(payload) = buf.get(head.header_len..end) else {
            if head.opcode == OpCode::Close {
                // A close payload that is already wrong fails now (at most 125 bytes to look at).
                let arrived = buf.get(head.header_len..).unwrap_or_default();
                check_close_prefix(arrived)?;
            }
            self.pending = Some(head);
            return Ok((0, Event::Partial));
        };

        let event = match head.opcode {
            OpCode::Ping => Event::Frame(Frame::Ping(payload)),
            OpCode::Pong => Event::Frame(Frame::Pong(payload)),
            OpCode::Close => {
                let (code, reason) = parse_close(payload)?;
                Event::Frame(Frame::Close { code, reason })
            }
            OpCode::Text | OpCode::Binary => {
                let text = head.opcode == OpCode::Text;
                if head.fin {
                    if head.check_utf8 {
                        self.utf8.finish().map_err(|Invalid| WsError::InvalidUtf8)?;
                    }
                    Event::Frame(Frame::Message {
                        text,
                        data: payload,
                    })
                } else {
                    self.reassembly.extend_from_slice(payload);
                    self.state = State::Fragmented { text };
                    Event::Partial
                }
            }
            OpCode::Continuation => {
                self.reassembly.extend_from_slice(payload);
                if head.fin {
                    if head.check_utf8 {
                        self.utf8.finish().map_err(|Invalid| WsError::InvalidUtf8)?;
                    }
                    let text = self.state == State::Fragmented { text: true };
                    self.state = State::Delivered;
                    Event::Reassembled { text }
                } else {
                    Event::Partial
                }
            }
        };
        Ok((end, event))
    }

    /// Parse and check the header at the start of `buf`; `Ok(None)` when it is incomplete.
    /// Each check runs as soon as the bytes it needs are present, so a violation is reported
    /// at the same point however the input is split.
    fn parse_header(&mut self, buf: &[u8]) -> Result<Option<FrameHead>, WsError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(WsError::ReservedOpcode(b0 & 0x0F))?;
        let fragmented = matches!(self.state, State::Fragmented { .. });
        if opcode.is_control() {
            if !fin {
                return Err(WsError::FragmentedControl);
            }
        } else if opcode == OpCode::Continuation && !fragmented {
            return Err(WsError::UnexpectedContinuation);
        } else if opcode != OpCode::Continuation && fragmented {
            return Err(WsError::ExpectedContinuation);
        }

        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        if b1 & 0x80 != 0 {
            return Err(WsError::MaskedFrame);
        }
        let (header_len, payload_len) = match b1 & 0x7F {
            126 => match buf.get(2..).and_then(|b| b.first_chunk::<2>()) {
                Some(bytes) => (4, u64::from(u16::from_be_bytes(*bytes))),
                None => return Ok(None),
            },
            127 => match buf.get(2..).and_then(|b| b.first_chunk::<8>()) {
                Some(bytes) => (10, u64::from_be_bytes(*bytes)),
                None => return Ok(None),
            },
            short => (2, u64::from(short)),
        };
        if payload_len >> 63 != 0 {
            return Err(WsError::InvalidLength);
        }
        // The real length, not the form: a short control frame in a non-minimal form is as
        // acceptable as a data frame in one.
        if opcode.is_control() {
            if payload_len > CONTROL_MAX as u64 {
                return Err(WsError::ControlTooLong);
            }
            // Known from the header alone: fail now rather than once the byte arrives.
            if opcode == OpCode::Close && payload_len == 1 {
                return Err(WsError::CloseTooShort);
            }
        } else {
            let so_far = if opcode == OpCode::Continuation {
                self.reassembly.len()
            } else {
                0
            };
            let room = self.max_message.saturating_sub(so_far) as u64;
            if payload_len > room {
                return Err(WsError::MessageTooBig {
                    size: (so_far as u64).saturating_add(payload_len),
                    max: self.max_message,
                });
            }
        }
        let check_utf8 = self.utf8_check
            && match opcode {
                OpCode::Text => true,
                OpCode::Continuation => self.state == State::Fragmented { text: true },
                _ => false,
            };
        if opcode == OpCode::Text {
            self.utf8 = Utf8Validator::default();
        }
        Ok(Some(FrameHead {
            fin,
            opcode,
            header_len,
            // Fits: bounded by max_message (a usize) or by 125 above.
            payload_len: payload_len as usize,
            check_utf8,
            validated: 0,
        }))
    }
}

/// The part of a close payload that has arrived: an error if no ending can make it valid
/// (the checks of [`parse_close`], in its order, on what is there).
fn check_close_prefix(arrived: &[u8]) -> Result<(), WsError> {
    let [hi, lo, reason @ ..] = arrived else {
        return Ok(());
    };
    let code = u16::from_be_bytes([*hi, *lo]);
    if !is_sendable_close_code(code) {
        return Err(WsError::InvalidCloseCode(code));
    }
    match std::str::from_utf8(reason) {
        Err(e) if e.error_len().is_some() => Err(WsError::InvalidCloseReason),
        _ => Ok(()),
    }
}

/// Split a close payload into its code and reason (RFC 6455 §5.5.1, §7.4).
fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &str), WsError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(WsError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_sendable_close_code(code) {
                return Err(WsError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidCloseReason)?;
            Ok((Some(code), reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read, Write};

    // -----------------------------------------------------------------------------------------
    // Helpers: server frames, a deterministic PRNG, owned events
    // -----------------------------------------------------------------------------------------

    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;
    const CONT: u8 = 0x0;
    const CLOSE: u8 = 0x8;
    const PING: u8 = 0x9;
    const PONG: u8 = 0xA;

    /// An unmasked server frame with the minimal length form.
    fn frame(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let form = match payload.len() {
            0..=125 => 7,
            126..=65535 => 16,
            _ => 64,
        };
        frame_with_form(op, fin, payload, form)
    }

    /// An unmasked server frame whose length uses the given form (7, 16 or 64 bits), minimal
    /// or not.
    fn frame_with_form(op: u8, fin: bool, payload: &[u8], form: u8) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | op];
        match form {
            7 => out.push(payload.len() as u8),
            16 => {
                out.push(126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        p
    }

    fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    /// splitmix64: small, deterministic, good enough to pick lengths and split points.
    struct Prng(u64);

    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }

        fn mask(&mut self) -> [u8; 4] {
            (self.next() as u32).to_ne_bytes()
        }

        /// A random length: mostly small (JSON-sized), sometimes around the 16/64-bit forms.
        fn length(&mut self) -> usize {
            match self.below(10) {
                0..=5 => self.below(130),
                6 | 7 => self.below(2000),
                8 => 65_530 + self.below(12),
                _ => self.below(70_000),
            }
        }

        /// Random text of about `n` bytes mixing 1-, 2-, 3- and 4-byte characters.
        fn text(&mut self, n: usize) -> String {
            let mut s = String::with_capacity(n + 4);
            while s.len() < n {
                s.push(*self.pick(&['a', '{', '"', 'é', 'ß', '€', '中', '😀', '𝄞']));
            }
            s
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }

        /// Cut `len` bytes into `parts` pieces at random points (pieces may be empty).
        fn cuts(&mut self, len: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
            let mut points: Vec<usize> = (1..parts).map(|_| self.below(len + 1)).collect();
            points.sort_unstable();
            let mut ranges = Vec::new();
            let mut start = 0;
            for p in points.into_iter().chain([len]) {
                ranges.push(start..p);
                start = p;
            }
            ranges
        }
    }

    /// An event with owned data, comparable across decoders.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Msg { text: bool, data: Vec<u8> },
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    fn text(s: &str) -> Ev {
        Ev::Msg {
            text: true,
            data: s.as_bytes().to_vec(),
        }
    }

    fn binary(b: &[u8]) -> Ev {
        Ev::Msg {
            text: false,
            data: b.to_vec(),
        }
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

    // -----------------------------------------------------------------------------------------
    // Feeding harness: exactly what the engine does (append, decode in a loop, drop consumed).
    // -----------------------------------------------------------------------------------------

    #[derive(Debug)]
    struct Outcome {
        events: Vec<Ev>,
        error: Option<WsError>,
        leftover: Vec<u8>,
    }

    fn feed<'a>(dec: &mut Decoder, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        let mut pending: Vec<u8> = Vec::new();
        let mut events = Vec::new();
        let mut steps = 0usize;
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            loop {
                steps += 1;
                assert!(steps < 1_000_000, "decoder loops without input");
                let (n, event) = match dec.decode(&pending) {
                    Ok((n, Progress::Partial)) => (n, None),
                    Ok((n, Progress::Frame(f))) => (n, Some(owned(f))),
                    Err(e) => {
                        return Outcome {
                            events,
                            error: Some(e),
                            leftover: pending,
                        }
                    }
                };
                assert!(n <= pending.len(), "consumed {n} of {}", pending.len());
                pending.drain(..n);
                match event {
                    Some(ev) => {
                        assert!(n > 0, "an event consumed nothing");
                        events.push(ev);
                    }
                    // A fragment was consumed: there may be more frames in the buffer.
                    None if n > 0 => {}
                    None => {
                        // "Needs more input": the same bytes again change nothing.
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

    /// The start of another frame, which must stay unconsumed after a case's input.
    const TRAILING: &[u8] = &[0x81, 0x05, b'h', b'e'];

    fn decoder() -> Decoder {
        Decoder::new(1 << 20, true)
    }

    /// Check one decoder case whole, byte by byte, split in two at every point (short inputs)
    /// or at random points (long ones), and with trailing bytes that must stay unconsumed.
    fn check_with(
        make: impl Fn() -> Decoder,
        name: &str,
        input: &[u8],
        expect: &[Ev],
        error: Option<WsError>,
    ) {
        let mut feeds: Vec<(String, Vec<&[u8]>)> = vec![
            ("whole".into(), vec![input]),
            ("bytewise".into(), input.chunks(1).collect()),
        ];
        let mut splits: Vec<usize> = if input.len() <= 1024 {
            (1..input.len()).collect()
        } else {
            let mut rng = Prng(input.len() as u64);
            (0..16).map(|_| 1 + rng.below(input.len() - 1)).collect()
        };
        splits.dedup();
        for split in splits {
            feeds.push((
                format!("split at {split}"),
                vec![&input[..split], &input[split..]],
            ));
        }
        for (how, chunks) in feeds {
            let ctx = format!("case {name:?}, fed {how}");
            let mut dec = make();
            let out = feed(&mut dec, chunks);
            assert_eq!(out.events, expect, "{ctx}");
            assert_eq!(out.error, error, "{ctx}");
            match &error {
                None => assert!(
                    out.leftover.is_empty(),
                    "{ctx}: leftover {:?}",
                    out.leftover
                ),
                Some(e) => {
                    // The decoder stays failed until reset, then works again.
                    assert_eq!(dec.decode(&[0x81, 0x00]), Err(e.clone()), "{ctx}");
                    dec.reset();
                    assert_eq!(
                        dec.decode(&[0x81, 0x01, b'x']),
                        Ok((
                            3,
                            Progress::Frame(Frame::Message {
                                text: true,
                                data: b"x"
                            })
                        )),
                        "{ctx}"
                    );
                }
            }
        }

        let mut with_trailing = input.to_vec();
        with_trailing.extend_from_slice(TRAILING);
        for (how, chunks) in [
            ("whole + trailing", vec![&with_trailing[..]]),
            ("bytewise + trailing", with_trailing.chunks(1).collect()),
        ] {
            let ctx = format!("case {name:?}, fed {how}");
            let out = feed(&mut make(), chunks);
            assert_eq!(out.events, expect, "{ctx}");
            assert_eq!(out.error, error, "{ctx}");
            if error.is_none() {
                assert_eq!(out.leftover, TRAILING, "{ctx}");
            }
        }
    }

    fn ok_case(name: &str, input: &[u8], expect: &[Ev]) {
        check_with(decoder, name, input, expect, None);
    }

    fn err_case(name: &str, input: &[u8], expect: &[Ev], e: WsError) {
        check_with(decoder, name, input, expect, Some(e));
    }

    // -----------------------------------------------------------------------------------------
    // Single frames and lengths
    // -----------------------------------------------------------------------------------------

    #[test]
    fn every_length_form_decodes() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bin = frame(BINARY, true, &payload);
            let header_len = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(bin.len(), header_len + len, "len {len}");
            ok_case(&format!("binary {len}"), &bin, &[binary(&payload)]);

            let text_payload: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            ok_case(
                &format!("text {len}"),
                &frame(TEXT, true, text_payload.as_bytes()),
                &[text(&text_payload)],
            );
        }
    }

    #[test]
    fn single_frame_messages_borrow_the_input() {
        let input = frame(TEXT, true, b"{\"a\":1}");
        let mut dec = decoder();
        match dec.decode(&input) {
            Ok((n, Progress::Frame(Frame::Message { text: true, data }))) => {
                assert_eq!(n, input.len());
                assert_eq!(data, b"{\"a\":1}");
                // Zero-copy: the data points into the caller's buffer.
                assert_eq!(data.as_ptr(), input[2..].as_ptr());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        // RFC 6455 §5.2 puts the minimal-encoding MUST on the sender; a lenient receiver
        // costs nothing and keeps odd servers measurable.
        ok_case(
            "5 bytes in the 16-bit form",
            &frame_with_form(TEXT, true, b"hello", 16),
            &[text("hello")],
        );
        ok_case(
            "5 bytes in the 64-bit form",
            &frame_with_form(BINARY, true, b"hello", 64),
            &[binary(b"hello")],
        );
        ok_case(
            "ping in the 16-bit form",
            &frame_with_form(PING, true, b"p", 16),
            &[Ev::Ping(b"p".to_vec())],
        );
    }

    #[test]
    fn several_frames_in_one_buffer_come_out_one_per_call() {
        let input = concat(&[
            frame(TEXT, true, b"one"),
            frame(PING, true, b""),
            frame(BINARY, true, &[0, 1, 2]),
            frame(PONG, true, b"pp"),
            frame(TEXT, true, b""),
        ]);
        ok_case(
            "five frames",
            &input,
            &[
                text("one"),
                Ev::Ping(vec![]),
                binary(&[0, 1, 2]),
                Ev::Pong(b"pp".to_vec()),
                text(""),
            ],
        );
        let mut dec = decoder();
        assert!(matches!(dec.decode(&input), Ok((5, Progress::Frame(_)))));
    }

    #[test]
    fn partial_frames_consume_nothing() {
        let input = frame(BINARY, true, &[7u8; 300]);
        let mut dec = decoder();
        for end in 0..input.len() {
            assert_eq!(
                dec.decode(&input[..end]),
                Ok((0, Progress::Partial)),
                "{end}"
            );
        }
        assert!(matches!(
            dec.decode(&input),
            Ok((n, Progress::Frame(Frame::Message { text: false, .. }))) if n == input.len()
        ));
    }

    // -----------------------------------------------------------------------------------------
    // Fragmentation
    // -----------------------------------------------------------------------------------------

    #[test]
    fn fragmented_text_with_interleaved_control_frames() {
        let input = concat(&[
            frame(TEXT, false, b"Hel"),
            frame(PING, true, b"p1"),
            frame(CONT, false, b"lo"),
            frame(PONG, true, b""),
            frame(CONT, false, b""),
            frame(CONT, true, b" world"),
            frame(TEXT, true, b"next"),
        ]);
        ok_case(
            "fragmented text",
            &input,
            &[
                Ev::Ping(b"p1".to_vec()),
                Ev::Pong(vec![]),
                text("Hello world"),
                text("next"),
            ],
        );
    }

    #[test]
    fn fragmented_binary_and_empty_fragments() {
        ok_case(
            "binary in three",
            &concat(&[
                frame(BINARY, false, &[1, 2]),
                frame(CONT, false, &[3]),
                frame(CONT, true, &[4, 5]),
            ]),
            &[binary(&[1, 2, 3, 4, 5])],
        );
        ok_case(
            "all fragments empty",
            &concat(&[frame(TEXT, false, b""), frame(CONT, true, b"")]),
            &[text("")],
        );
        ok_case(
            "close between fragments",
            &concat(&[
                frame(BINARY, false, &[1]),
                frame(CLOSE, true, &close_payload(1001, b"away")),
                frame(CONT, true, &[2]),
            ]),
            &[Ev::Close(Some(1001), "away".into()), binary(&[1, 2])],
        );
    }

    #[test]
    fn fragments_are_consumed_as_soon_as_complete() {
        let first = frame(TEXT, false, b"ab");
        let second = frame(CONT, true, b"cd");
        let mut input = first.clone();
        input.extend_from_slice(&second[..3]);
        let mut dec = decoder();
        assert_eq!(dec.decode(&input), Ok((first.len(), Progress::Partial)));
        assert_eq!(dec.decode(&second[..3]), Ok((0, Progress::Partial)));
        assert_eq!(
            dec.decode(&second),
            Ok((
                second.len(),
                Progress::Frame(Frame::Message {
                    text: true,
                    data: b"abcd"
                })
            ))
        );
    }

    #[test]
    fn reassembly_buffer_is_reused_and_large_ones_shrink() {
        let mut dec = decoder();
        let small = concat(&[
            frame(BINARY, false, &[1; 100]),
            frame(CONT, true, &[2; 100]),
        ]);
        assert_eq!(feed(&mut dec, [&small[..]]).events.len(), 1);
        let capacity = dec.reassembly.capacity();
        assert!(capacity >= 200);
        let pointer = dec.reassembly.as_ptr();
        assert_eq!(feed(&mut dec, [&small[..]]).events.len(), 1);
        // Same allocation: steady state does not allocate.
        assert_eq!(
            (dec.reassembly.as_ptr(), dec.reassembly.capacity()),
            (pointer, capacity)
        );

        let big = concat(&[
            frame(BINARY, false, &[3; 100_000]),
            frame(CONT, true, &[4; 100_000]),
        ]);
        let first_len = 10 + 100_000;
        assert_eq!(dec.decode(&big), Ok((first_len, Progress::Partial)));
        assert!(matches!(
            dec.decode(&big[first_len..]),
            Ok((_, Progress::Frame(Frame::Message { text: false, data }))) if data.len() == 200_000
        ));
        assert!(dec.reassembly.capacity() >= 200_000);
        // The next call releases the delivered message and gives the memory back.
        assert_eq!(dec.decode(&[]), Ok((0, Progress::Partial)));
        assert!(dec.reassembly.capacity() <= RETAIN_CAPACITY);
        assert!(dec.reassembly.is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Close frames
    // -----------------------------------------------------------------------------------------

    #[test]
    fn close_frames() {
        ok_case(
            "close with code and reason",
            &frame(CLOSE, true, &close_payload(1000, "done ✓".as_bytes())),
            &[Ev::Close(Some(1000), "done ✓".into())],
        );
        ok_case(
            "close without payload",
            &frame(CLOSE, true, b""),
            &[Ev::Close(None, String::new())],
        );
        ok_case(
            "close with code only",
            &frame(CLOSE, true, &close_payload(4999, b"")),
            &[Ev::Close(Some(4999), String::new())],
        );
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ]
        .into_iter()
        .chain([3000, 3999, 4000, 4999])
        {
            ok_case(
                &format!("close {code}"),
                &frame(CLOSE, true, &close_payload(code, b"r")),
                &[Ev::Close(Some(code), "r".into())],
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Protocol errors, each with its close code
    // -----------------------------------------------------------------------------------------

    fn assert_code(e: &WsError, code: u16) {
        assert_eq!(e.close_code(), code, "{e:?}");
    }

    #[test]
    fn reserved_bits_and_opcodes() {
        for rsv in [0x40u8, 0x20, 0x10, 0x70] {
            let mut f = frame(TEXT, true, b"x");
            f[0] |= rsv;
            err_case(&format!("rsv {rsv:#x}"), &f, &[], WsError::ReservedBits);
        }
        for op in (0x3u8..=0x7).chain(0xB..=0xF) {
            err_case(
                &format!("opcode {op:#x}"),
                &frame(op, true, b""),
                &[],
                WsError::ReservedOpcode(op),
            );
        }
        assert_code(&WsError::ReservedBits, 1002);
        assert_code(&WsError::ReservedOpcode(3), 1002);
    }

    #[test]
    fn control_frame_rules() {
        for op in [CLOSE, PING, PONG] {
            err_case(
                &format!("fragmented control {op:#x}"),
                &frame(op, false, b""),
                &[],
                WsError::FragmentedControl,
            );
            err_case(
                &format!("control {op:#x} of 126 bytes"),
                &frame(op, true, &[b'a'; 126]),
                &[],
                WsError::ControlTooLong,
            );
            err_case(
                &format!("control {op:#x} of 200 bytes, 64-bit form"),
                &frame_with_form(op, true, &[b'a'; 200], 64),
                &[],
                WsError::ControlTooLong,
            );
        }
        ok_case(
            "ping of 125 bytes",
            &frame(PING, true, &[b'a'; 125]),
            &[Ev::Ping(vec![b'a'; 125])],
        );
        assert_code(&WsError::FragmentedControl, 1002);
        assert_code(&WsError::ControlTooLong, 1002);
    }

    #[test]
    fn fragmentation_errors() {
        err_case(
            "continuation without a start",
            &frame(CONT, true, b"x"),
            &[],
            WsError::UnexpectedContinuation,
        );
        err_case(
            "continuation after a complete message",
            &concat(&[frame(TEXT, true, b"a"), frame(CONT, true, b"b")]),
            &[text("a")],
            WsError::UnexpectedContinuation,
        );
        err_case(
            "new text inside a fragmented message",
            &concat(&[
                frame(BINARY, false, b"a"),
                frame(PING, true, b""),
                frame(TEXT, true, b"b"),
            ]),
            &[Ev::Ping(vec![])],
            WsError::ExpectedContinuation,
        );
        err_case(
            "new binary inside a fragmented message",
            &concat(&[frame(TEXT, false, b"a"), frame(BINARY, false, b"b")]),
            &[],
            WsError::ExpectedContinuation,
        );
        assert_code(&WsError::UnexpectedContinuation, 1002);
        assert_code(&WsError::ExpectedContinuation, 1002);
    }

    #[test]
    fn masked_frames_and_bad_lengths() {
        let mut masked = frame(TEXT, true, b"");
        masked[1] |= 0x80;
        masked.extend_from_slice(&[1, 2, 3, 4]);
        err_case("masked frame", &masked, &[], WsError::MaskedFrame);
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        err_case("length msb set", &huge, &[], WsError::InvalidLength);
        assert_code(&WsError::MaskedFrame, 1002);
        assert_code(&WsError::InvalidLength, 1002);
    }

    #[test]
    fn invalid_close_payloads() {
        err_case(
            "1-byte close",
            &frame(CLOSE, true, &[3]),
            &[],
            WsError::CloseTooShort,
        );
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            err_case(
                &format!("close code {code}"),
                &frame(CLOSE, true, &close_payload(code, b"")),
                &[],
                WsError::InvalidCloseCode(code),
            );
        }
        err_case(
            "close reason not utf-8",
            &frame(CLOSE, true, &close_payload(1000, b"bad \xff")),
            &[],
            WsError::InvalidCloseReason,
        );
        // Close reasons are validated even when text is not (they are returned as &str).
        check_with(
            || Decoder::new(1024, false),
            "close reason, utf8_check off",
            &frame(CLOSE, true, &close_payload(1000, b"\xc3")),
            &[],
            Some(WsError::InvalidCloseReason),
        );
        assert_code(&WsError::CloseTooShort, 1002);
        assert_code(&WsError::InvalidCloseCode(1005), 1002);
        assert_code(&WsError::InvalidCloseReason, 1007);
    }

    #[test]
    fn close_frame_errors_fail_before_the_frame_is_complete() {
        // A close payload that is already wrong fails as soon as the bytes that make it wrong
        // arrive, like bad UTF-8 in text: a server that sends half of a bad close frame and
        // stalls is a protocol error now, not a timeout later.
        let cases: [(&[u8], WsError); 4] = [
            // A 1-byte close payload is wrong from its header on.
            (&[0x88, 0x01], WsError::CloseTooShort),
            (&[0x88, 0x7e, 0x00, 0x01], WsError::CloseTooShort),
            // The code is wrong as soon as its two bytes are there.
            (&[0x88, 0x05, 0x03, 0xed], WsError::InvalidCloseCode(1005)),
            // The reason is wrong at its first impossible byte.
            (
                &[0x88, 0x10, 0x03, 0xe8, b'o', b'k', 0xff],
                WsError::InvalidCloseReason,
            ),
        ];
        for (partial, e) in cases {
            let mut dec = decoder();
            assert_eq!(dec.decode(partial), Err(e.clone()), "{partial:?} whole");
            let mut dec = decoder();
            let out = feed(&mut dec, partial.chunks(1));
            assert_eq!(out.error, Some(e), "{partial:?} byte by byte");
        }
        // A valid prefix of a reason (a UTF-8 sequence cut short) is not an error yet.
        let mut dec = decoder();
        assert_eq!(
            dec.decode(&[0x88, 0x06, 0x03, 0xe8, 0xe2, 0x82]),
            Ok((0, Progress::Partial))
        );
    }

    // -----------------------------------------------------------------------------------------
    // UTF-8
    // -----------------------------------------------------------------------------------------

    #[test]
    fn invalid_utf8_in_single_frames() {
        for bad in [
            &b"\xff"[..],
            b"ab\xc0\xafcd",     // overlong
            b"\xed\xa0\x80",     // surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"ok\xe2\x82",       // truncated at the end of the message
            b"\x80",             // lone continuation byte
        ] {
            err_case(
                &format!("text {bad:?}"),
                &frame(TEXT, true, bad),
                &[],
                WsError::InvalidUtf8,
            );
        }
        // The same bytes as binary are fine, and so is text when checking is off.
        ok_case(
            "binary ff",
            &frame(BINARY, true, b"\xff"),
            &[binary(b"\xff")],
        );
        check_with(
            || Decoder::new(1024, false),
            "unchecked text",
            &frame(TEXT, true, b"\xff"),
            &[Ev::Msg {
                text: true,
                data: b"\xff".to_vec(),
            }],
            None,
        );
        assert_code(&WsError::InvalidUtf8, 1007);
    }

    #[test]
    fn four_byte_sequences_split_at_every_point() {
        let message = "a😀b𝄞c".as_bytes();
        for first in 0..=message.len() {
            for second in first..=message.len() {
                let input = concat(&[
                    frame(TEXT, false, &message[..first]),
                    frame(CONT, false, &message[first..second]),
                    frame(CONT, true, &message[second..]),
                ]);
                ok_case(
                    &format!("split at {first} and {second}"),
                    &input,
                    &[text("a😀b𝄞c")],
                );
            }
        }
    }

    #[test]
    fn invalid_utf8_across_fragments() {
        // A 4-byte sequence cut short by the end of the message.
        let emoji = "😀".as_bytes();
        for cut in 1..4 {
            err_case(
                &format!("truncated after {cut} bytes"),
                &concat(&[frame(TEXT, false, &emoji[..cut]), frame(CONT, true, b"")]),
                &[],
                WsError::InvalidUtf8,
            );
        }
        // A lead byte whose continuation arrives in the next fragment and is wrong.
        err_case(
            "bad continuation in the next fragment",
            &concat(&[frame(TEXT, false, b"\xf0\x9f"), frame(CONT, true, b"(x")]),
            &[],
            WsError::InvalidUtf8,
        );
    }

    #[test]
    fn invalid_utf8_fails_fast() {
        // F0 28 can never become valid: the error comes with the first fragment, before the
        // final one (never sent here) could complete the message.
        let mut dec = decoder();
        let first = frame(TEXT, false, b"ok\xf0\x28");
        assert_eq!(dec.decode(&first), Err(WsError::InvalidUtf8));

        // Inside one large frame: the error comes as soon as the bad byte arrives, long
        // before the frame is complete.
        let mut payload = vec![b'a'; 10_000];
        payload[10] = 0xff;
        let big = frame(TEXT, true, &payload);
        let mut dec = decoder();
        assert_eq!(dec.decode(&big[..4 + 10]), Ok((0, Progress::Partial)));
        assert_eq!(dec.decode(&big[..4 + 11]), Err(WsError::InvalidUtf8));

        // A valid prefix of a sequence at the end of a fragment is not an error (yet).
        let mut dec = decoder();
        let first = frame(TEXT, false, b"ok\xf0\x9f");
        assert_eq!(dec.decode(&first), Ok((first.len(), Progress::Partial)));
    }

    // -----------------------------------------------------------------------------------------
    // Maximum message size
    // -----------------------------------------------------------------------------------------

    #[test]
    fn max_message_size() {
        let small = || Decoder::new(100, true);
        check_with(
            small,
            "exactly the maximum",
            &frame(BINARY, true, &[1; 100]),
            &[binary(&[1; 100])],
            None,
        );
        check_with(
            small,
            "one byte over",
            &frame(BINARY, true, &[1; 101]),
            &[],
            Some(WsError::MessageTooBig {
                size: 101,
                max: 100,
            }),
        );
        check_with(
            small,
            "fragments exactly at the maximum",
            &concat(&[
                frame(TEXT, false, &[b'a'; 60]),
                frame(CONT, true, &[b'b'; 40]),
            ]),
            &[Ev::Msg {
                text: true,
                data: [[b'a'; 60].as_slice(), &[b'b'; 40]].concat(),
            }],
            None,
        );
        check_with(
            small,
            "fragments over the maximum",
            &concat(&[
                frame(TEXT, false, &[b'a'; 60]),
                frame(PING, true, b""),
                frame(CONT, false, &[b'b'; 40]),
                frame(CONT, true, &[b'c'; 1]),
            ]),
            &[Ev::Ping(vec![])],
            Some(WsError::MessageTooBig {
                size: 101,
                max: 100,
            }),
        );
        // Control frames are bounded by 125 bytes, not by the message maximum.
        check_with(
            || Decoder::new(10, true),
            "ping above a tiny maximum",
            &frame(PING, true, &[0; 20]),
            &[Ev::Ping(vec![0; 20])],
            None,
        );
        // The limit is checked from the header alone: nothing of the payload is needed.
        let mut dec = Decoder::new(1000, true);
        assert_eq!(
            dec.decode(&[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(WsError::MessageTooBig {
                size: 1 << 32,
                max: 1000
            })
        );
        assert_code(&WsError::MessageTooBig { size: 1, max: 0 }, 1009);
    }

    #[test]
    fn errors_display_on_one_line() {
        let errors = [
            WsError::ReservedBits,
            WsError::ReservedOpcode(0xB),
            WsError::FragmentedControl,
            WsError::ControlTooLong,
            WsError::UnexpectedContinuation,
            WsError::ExpectedContinuation,
            WsError::MaskedFrame,
            WsError::InvalidLength,
            WsError::CloseTooShort,
            WsError::InvalidCloseCode(1005),
            WsError::InvalidUtf8,
            WsError::InvalidCloseReason,
            WsError::MessageTooBig { size: 2, max: 1 },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains(['\n', '\r']), "{text:?}");
        }
        for e in [
            UpgradeError::Status(200),
            UpgradeError::BadAccept,
            UpgradeError::MissingUpgrade,
            UpgradeError::Malformed("x"),
            UpgradeError::HeadTooLarge,
        ] {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains(['\n', '\r']), "{text:?}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Encoding and masking
    // -----------------------------------------------------------------------------------------

    fn mask_reference(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    #[test]
    fn apply_mask_matches_the_byte_reference() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(37)).collect();
        // Every buffer alignment, every mask offset, every length.
        for align in 0..8 {
            for offset in 0..8 {
                for len in 0..=64 {
                    let mut fast = data[align..align + len].to_vec();
                    let mut slow = fast.clone();
                    let mut backing = data.clone();
                    let aligned = &mut backing[align..align + len];
                    apply_mask(&mut fast, mask, offset);
                    apply_mask(aligned, mask, offset);
                    mask_reference(&mut slow, mask, offset);
                    assert_eq!(fast, slow, "align {align} offset {offset} len {len}");
                    assert_eq!(
                        aligned,
                        &slow[..],
                        "align {align} offset {offset} len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn unmasked_headers_parse_with_tungstenite_at_length_boundaries() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::FrameHeader;
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
            for (opcode, fin) in [
                (OpCode::Binary, true),
                (OpCode::Text, false),
                (OpCode::Ping, true),
            ] {
                let mut head = [0u8; 14];
                let n = encode_head(&mut head, opcode, fin, len, None);
                let mut cur = Cursor::new(&head[..n]);
                let (h, theirs) = FrameHeader::parse(&mut cur)
                    .expect("tungstenite parses")
                    .expect("complete");
                assert_eq!(cur.position() as usize, n, "len {len}: whole header read");
                assert_eq!(theirs as usize, len);
                assert_eq!(h.is_final, fin);
                assert_eq!(h.mask, None, "a server header carries no mask");
                assert_eq!(u8::from(h.opcode), opcode.bits());
                assert_eq!(n, h.len(len as u64), "minimal length form for {len}");
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        let mask = [9, 8, 7, 6];
        let data: Vec<u8> = (0..200u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for split in 0..data.len() {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, split);
            assert_eq!(pieces, whole, "split {split}");
        }
    }

    /// Parse a client frame by hand (reference for the encoder): fin, opcode bits, mask and the
    /// unmasked payload, checking the minimal length form.
    fn parse_client_frame(bytes: &[u8]) -> (bool, u8, [u8; 4], Vec<u8>) {
        let fin = bytes[0] & 0x80 != 0;
        assert_eq!(bytes[0] & 0x70, 0, "reserved bits");
        assert_eq!(bytes[1] & 0x80, 0x80, "client frames are masked");
        let (len, at) = match bytes[1] & 0x7F {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let minimal = match len {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        };
        assert_eq!(at, minimal, "length form for {len}");
        let mask: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        assert_eq!(bytes.len(), at + 4 + len);
        let mut payload = bytes[at + 4..].to_vec();
        mask_reference(&mut payload, mask, 0);
        (fin, bytes[0] & 0x0F, mask, payload)
    }

    #[test]
    fn encode_frame_lengths_and_masking() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            for (op, fin) in [(OpCode::Binary, true), (OpCode::Text, false)] {
                let mut out = b"prefix".to_vec();
                encode_frame(&mut out, op, fin, &payload, [1, 2, 3, 0xff]);
                assert_eq!(&out[..6], b"prefix");
                let (f, bits, mask, data) = parse_client_frame(&out[6..]);
                assert_eq!((f, bits, mask), (fin, op.bits(), [1, 2, 3, 0xff]));
                assert_eq!(data, payload, "len {len}");
            }
        }
    }

    #[test]
    fn encode_frame_does_not_allocate_with_capacity() {
        let mut out = Vec::with_capacity(200);
        let pointer = out.as_ptr();
        for _ in 0..5 {
            out.clear();
            encode_frame(&mut out, OpCode::Text, true, &[b'x'; 100], [1, 2, 3, 4]);
            encode_close(&mut out, 1000, "bye", [5, 6, 7, 8]);
            assert_eq!((out.as_ptr(), out.capacity()), (pointer, 200));
        }
    }

    #[test]
    fn encode_close_frames() {
        let mut out = Vec::new();
        encode_close(&mut out, 1001, "going away", [4, 3, 2, 1]);
        let (fin, op, _, payload) = parse_client_frame(&out);
        assert!(fin);
        assert_eq!(op, OpCode::Close.bits());
        assert_eq!(payload, close_payload(1001, b"going away"));

        // A long reason is cut at a character boundary to fit 125 bytes.
        let long = "é".repeat(100); // 200 bytes
        out.clear();
        encode_close(&mut out, 1000, &long, [0; 4]);
        let (_, _, _, payload) = parse_client_frame(&out);
        assert_eq!(payload.len(), 2 + 122);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }

    #[test]
    fn opcode_bits_round_trip() {
        for bits in 0..16u8 {
            match OpCode::from_bits(bits) {
                Some(op) => assert_eq!(op.bits(), bits),
                None => assert!(matches!(bits, 0x3..=0x7 | 0xB..=0xF)),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Oracle: tungstenite
    // -----------------------------------------------------------------------------------------

    /// An in-memory stream for tungstenite: reads from a buffer, swallows writes (pongs).
    struct Pipe {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn from_tungstenite(message: tungstenite::Message) -> Ev {
        use tungstenite::Message;
        match message {
            Message::Text(s) => text(s.as_str()),
            Message::Binary(b) => binary(&b),
            Message::Ping(p) => Ev::Ping(p.to_vec()),
            Message::Pong(p) => Ev::Pong(p.to_vec()),
            Message::Close(None) => Ev::Close(None, String::new()),
            Message::Close(Some(c)) => Ev::Close(Some(c.code.into()), c.reason.as_str().into()),
            Message::Frame(f) => panic!("raw frame from read: {f:?}"),
        }
    }

    /// One frame to send: opcode, FIN, payload.
    type PlannedFrame = (OpCode, bool, Vec<u8>);

    /// A random message as a list of (opcode, fin, payload) frames plus the event it makes,
    /// with a ping between fragments now and then.
    fn random_message(rng: &mut Prng) -> (Vec<PlannedFrame>, Vec<Ev>) {
        let is_text = rng.below(2) == 0;
        let len = rng.length();
        let data = if is_text {
            rng.text(len).into_bytes()
        } else {
            rng.bytes(len)
        };
        let parts = if rng.below(3) == 0 {
            1 + rng.below(5)
        } else {
            1
        };
        let mut frames = Vec::new();
        let mut events = Vec::new();
        let ranges = rng.cuts(data.len(), parts);
        let last = ranges.len() - 1;
        for (i, range) in ranges.into_iter().enumerate() {
            let op = match (i, is_text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            frames.push((op, i == last, data[range].to_vec()));
            if i != last && rng.below(3) == 0 {
                let ping_len = rng.below(126);
                let ping = rng.bytes(ping_len);
                events.push(Ev::Ping(ping.clone()));
                frames.push((OpCode::Ping, true, ping));
            }
        }
        events.push(Ev::Msg {
            text: is_text,
            data,
        });
        (frames, events)
    }

    #[test]
    fn oracle_tungstenite_server_decodes_our_frames() {
        let mut rng = Prng(0x5eed_0001);
        for round in 0..40 {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let (frames, events) = random_message(&mut rng);
                for (op, fin, payload) in frames {
                    encode_frame(&mut wire, op, fin, &payload, rng.mask());
                }
                expected.extend(events);
            }
            let code = *rng.pick(&[1000u16, 1001, 1011, 3000, 4999]);
            encode_close(&mut wire, code, "bye ✓", rng.mask());
            expected.push(Ev::Close(Some(code), "bye ✓".into()));

            let mut pipe = Pipe {
                input: Cursor::new(wire),
                output: Vec::new(),
            };
            let mut server = tungstenite::protocol::WebSocketContext::new(
                tungstenite::protocol::Role::Server,
                None,
            );
            let got: Vec<Ev> = (0..expected.len())
                .map(|i| {
                    let message = server
                        .read(&mut pipe)
                        .unwrap_or_else(|e| panic!("round {round}, message {i}: {e}"));
                    from_tungstenite(message)
                })
                .collect();
            assert_eq!(got, expected, "round {round}");
        }
    }

    #[test]
    fn oracle_we_decode_tungstenite_server_frames() {
        use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode as TOp};
        use tungstenite::protocol::frame::{CloseFrame, Frame as TFrame};

        let mut rng = Prng(0x5eed_0002);
        for round in 0..40 {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let (frames, events) = random_message(&mut rng);
                for (op, fin, payload) in frames {
                    let frame = match op {
                        OpCode::Text => TFrame::message(payload, TOp::Data(Data::Text), fin),
                        OpCode::Binary => TFrame::message(payload, TOp::Data(Data::Binary), fin),
                        OpCode::Continuation => {
                            TFrame::message(payload, TOp::Data(Data::Continue), fin)
                        }
                        OpCode::Ping => TFrame::ping(payload),
                        other => panic!("not generated: {other:?}"),
                    };
                    frame.format(&mut wire).expect("format into a Vec");
                }
                expected.extend(events);
            }
            if rng.below(2) == 0 {
                TFrame::pong(b"pong".to_vec())
                    .format(&mut wire)
                    .expect("format");
                expected.push(Ev::Pong(b"pong".to_vec()));
            }
            TFrame::close(Some(CloseFrame {
                code: CloseCode::from(1000),
                reason: "done".into(),
            }))
            .format(&mut wire)
            .expect("format");
            expected.push(Ev::Close(Some(1000), "done".into()));

            // Random read sizes, as a socket would deliver them.
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let small = rng.below(4) == 0;
                let n = 1 + rng.below(if small { 16 } else { 9000 });
                let end = (at + n).min(wire.len());
                chunks.push(&wire[at..end]);
                at = end;
            }
            let out = feed(&mut decoder(), chunks);
            assert_eq!(out.error, None, "round {round}");
            assert!(out.leftover.is_empty(), "round {round}");
            assert_eq!(out.events, expected, "round {round}");
        }
    }

    #[test]
    fn oracle_frame_headers_match_tungstenite() {
        // Our encoder's header against tungstenite's header parser, across the length forms.
        use tungstenite::protocol::frame::FrameHeader;
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let mut out = Vec::new();
            encode_frame(&mut out, OpCode::Binary, false, &vec![0; len], [1, 2, 3, 4]);
            let mut cursor = Cursor::new(&out[..]);
            let (header, parsed_len) = FrameHeader::parse(&mut cursor)
                .expect("valid header")
                .expect("complete header");
            assert_eq!(parsed_len, len as u64);
            assert!(!header.is_final);
            assert_eq!(header.mask, Some([1, 2, 3, 4]));
            assert_eq!(cursor.position() as usize, out.len() - len);
        }
    }

    #[test]
    fn damaged_streams_decode_the_same_however_they_are_split() {
        // Valid frames with random bytes overwritten: whatever happens (events, then perhaps an
        // error), it must not panic and must not depend on how the bytes arrive.
        let mut rng = Prng(0x5eed_0003);
        for round in 0..300 {
            let mut wire = Vec::new();
            for _ in 0..1 + rng.below(6) {
                let (frames, _) = random_message(&mut rng);
                for (op, fin, payload) in frames {
                    if payload.len() <= 600 {
                        wire.extend(frame(op.bits(), fin, &payload));
                    }
                }
            }
            for _ in 0..rng.below(4) {
                if !wire.is_empty() {
                    let at = rng.below(wire.len());
                    wire[at] = rng.next() as u8;
                }
            }
            let utf8_check = rng.below(2) == 0;
            let make = || Decoder::new(2000, utf8_check);
            let whole = feed(&mut make(), [&wire[..]]);
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let end = (at + 1 + rng.below(40)).min(wire.len());
                chunks.push(&wire[at..end]);
                at = end;
            }
            let split = feed(&mut make(), chunks);
            assert_eq!(split.events, whole.events, "round {round}");
            assert_eq!(split.error, whole.error, "round {round}");
            if whole.error.is_none() {
                assert_eq!(split.leftover, whole.leftover, "round {round}");
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Handshake
    // -----------------------------------------------------------------------------------------

    const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn accept_matches_the_rfc_sample() {
        assert_eq!(accept_for(SAMPLE_KEY), SAMPLE_ACCEPT);
        assert_eq!(Handshake::from_key(SAMPLE_KEY).accept, SAMPLE_ACCEPT);
        assert_eq!(
            accept_for("x3JJHMbDL1EzLkh9GBhXDw=="),
            tungstenite::handshake::derive_accept_key(b"x3JJHMbDL1EzLkh9GBhXDw==")
        );
    }

    #[test]
    fn accept_key_bytes_match_the_rfc_sample_and_tungstenite() {
        // The server's allocation-free form gives the same 28 characters as the client's.
        assert_eq!(&accept_key(SAMPLE_KEY.as_bytes()), SAMPLE_ACCEPT.as_bytes());
        for key in [
            &b"x3JJHMbDL1EzLkh9GBhXDw=="[..],
            b"AQIDBAUGBwgJCgsMDQ4PEC==",
            b"",
        ] {
            let ours = accept_key(key);
            let theirs = tungstenite::handshake::derive_accept_key(key);
            assert_eq!(std::str::from_utf8(&ours).expect("ascii"), theirs);
        }
    }

    #[test]
    fn handshake_keys_are_random_16_byte_nonces() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = Handshake::new(&mut rng);
        let b = Handshake::new(&mut rng);
        assert_ne!(a.key, b.key);
        for h in [&a, &b] {
            assert_eq!(h.key.len(), 24);
            assert_eq!(BASE64.decode(&h.key).expect("base64").len(), 16);
            assert_eq!(h.accept, accept_for(&h.key));
        }
        // Through a trait object too (`?Sized`).
        let dyn_rng: &mut dyn rand::Rng = &mut rng;
        assert_eq!(Handshake::new(dyn_rng).key.len(), 24);
    }

    fn parse_request(bytes: &[u8]) -> (String, Vec<(String, String)>) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let status = req.parse(bytes).expect("valid request");
        assert_eq!(status, httparse::Status::Complete(bytes.len()));
        assert_eq!((req.method, req.version), (Some("GET"), Some(1)));
        let fields = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8(h.value.to_vec()).expect("utf-8"),
                )
            })
            .collect();
        (req.path.expect("path").to_string(), fields)
    }

    fn hdrs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn encode_upgrade_is_a_valid_request() {
        let ua = concat!("connbench/", env!("CARGO_PKG_VERSION"));
        let bytes = encode_upgrade(
            "/ws?stream=btcusdt@trade",
            "127.0.0.1:9001",
            SAMPLE_KEY,
            &hdrs(&[("Origin", "http://x"), ("Sec-WebSocket-Protocol", "chat")]),
        )
        .expect("valid");
        let (path, fields) = parse_request(&bytes);
        assert_eq!(path, "/ws?stream=btcusdt@trade");
        assert_eq!(
            fields,
            hdrs(&[
                ("Host", "127.0.0.1:9001"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", SAMPLE_KEY),
                ("Sec-WebSocket-Version", "13"),
                ("Origin", "http://x"),
                ("Sec-WebSocket-Protocol", "chat"),
                ("User-Agent", ua),
            ])
        );

        // A user Host and User-Agent replace the automatic ones.
        let bytes = encode_upgrade(
            "/",
            "",
            SAMPLE_KEY,
            &hdrs(&[("host", "example.com"), ("User-Agent", "me")]),
        )
        .expect("valid");
        let (_, fields) = parse_request(&bytes);
        assert_eq!(
            fields,
            hdrs(&[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", SAMPLE_KEY),
                ("Sec-WebSocket-Version", "13"),
                ("host", "example.com"),
                ("User-Agent", "me"),
            ])
        );
        assert!(encode_upgrade("/", "h", SAMPLE_KEY, &hdrs(&[("Content-Length", "0")])).is_ok());
    }

    #[test]
    fn encode_upgrade_rejects_bad_input() {
        let enc = |target: &str, host: &str, key: &str, user: &[(&str, &str)]| {
            encode_upgrade(target, host, key, &hdrs(user))
        };
        for target in ["", "ws", "*", "http://h/", "/a b", "/a\r\nX: y", "/é"] {
            assert_eq!(
                enc(target, "h", SAMPLE_KEY, &[]),
                Err(RequestError::InvalidTarget(target.into()))
            );
        }
        for host in ["", "a b", "a\r\nb"] {
            assert_eq!(
                enc("/", host, SAMPLE_KEY, &[]),
                Err(RequestError::InvalidHost(host.into()))
            );
        }
        for key in ["", "k\r\nX: y"] {
            assert_eq!(
                enc("/", "h", key, &[]),
                Err(RequestError::InvalidHeaderValue("Sec-WebSocket-Key".into()))
            );
        }
        for name in [
            "",
            "X Y",
            "X:Y",
            "Upgrade",
            "connection",
            "Sec-WebSocket-Key",
        ]
        .into_iter()
        .chain(["sec-websocket-version", "Sec-WebSocket-Extensions"])
        {
            assert_eq!(
                enc("/", "h", SAMPLE_KEY, &[(name, "v")]),
                Err(RequestError::InvalidHeaderName(name.into()))
            );
        }
        for value in ["a\r\nInjected: 1", "a\nb", "a\0b"] {
            assert_eq!(
                enc("/", "h", SAMPLE_KEY, &[("X-V", value)]),
                Err(RequestError::InvalidHeaderValue("X-V".into()))
            );
        }
        assert_eq!(
            enc("/", "h", SAMPLE_KEY, &[("Host", "a"), ("HOST", "b")]),
            Err(RequestError::DuplicateHost)
        );
        assert_eq!(
            enc("/", "h", SAMPLE_KEY, &[("Content-Length", "3")]),
            Err(RequestError::ContentLengthMismatch {
                given: "3".into(),
                body: 0
            })
        );
        assert_eq!(
            enc("/", "h", SAMPLE_KEY, &[("Transfer-Encoding", "chunked")]),
            Err(RequestError::TransferEncodingGiven("chunked".into()))
        );
    }

    fn response_101(accept: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
    }

    #[test]
    fn parse_upgrade_accepts_a_valid_101_and_leaves_frames() {
        let head = response_101(SAMPLE_ACCEPT);
        let mut input = head.clone().into_bytes();
        let first_frame = frame(TEXT, true, b"hello");
        input.extend_from_slice(&first_frame);
        assert_eq!(
            parse_upgrade_response(&input, SAMPLE_ACCEPT),
            Ok(Some(head.len()))
        );
        // The bytes after the head are the first frame.
        let mut dec = decoder();
        assert!(matches!(
            dec.decode(&input[head.len()..]),
            Ok((
                7,
                Progress::Frame(Frame::Message {
                    text: true,
                    data: b"hello"
                })
            ))
        ));

        // Every partial head needs more bytes and consumes nothing.
        for end in 0..head.len() {
            assert_eq!(
                parse_upgrade_response(&input[..end], SAMPLE_ACCEPT),
                Ok(None),
                "{end}"
            );
        }

        // Case, list values, OWS and interim responses.
        let lenient = format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\nsec-websocket-accept:  {SAMPLE_ACCEPT} \r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        assert_eq!(
            parse_upgrade_response(lenient.as_bytes(), SAMPLE_ACCEPT),
            Ok(Some(lenient.len()))
        );
        assert_eq!(
            parse_upgrade_response(&lenient.as_bytes()[..lenient.len() - 1], SAMPLE_ACCEPT),
            Ok(None)
        );
    }

    /// Feed an upgrade answer the way the engine does (the whole buffer so far on each call,
    /// `pieces` bytes more each time) and return the first verdict that is not "need more".
    fn upgrade_fed(input: &[u8], piece: usize) -> Result<Option<usize>, UpgradeError> {
        let mut end = 0;
        loop {
            end = (end + piece).min(input.len());
            match parse_upgrade_response(&input[..end], SAMPLE_ACCEPT) {
                Ok(None) if end < input.len() => {}
                verdict => return verdict,
            }
        }
    }

    #[test]
    fn upgrade_verdicts_are_the_same_whole_and_byte_by_byte() {
        let ok = response_101(SAMPLE_ACCEPT);
        let many = {
            let mut s = String::from("HTTP/1.1 101 Switching Protocols\r\n");
            for i in 0..300 {
                s.push_str(&format!("X-{i}: v\r\n"));
            }
            s.push_str(&ok["HTTP/1.1 101 Switching Protocols\r\n".len()..]);
            s
        };
        let too_many = {
            let mut s = String::from("HTTP/1.1 101 Switching Protocols\r\n");
            for i in 0..1025 {
                s.push_str(&format!("X-{i}: v\r\n"));
            }
            s
        };
        let mut endless = b"HTTP/1.1 101 S\r\nX-Pad: ".to_vec();
        endless.resize(HEAD_MAX + 10, b'p');
        type Case = (&'static str, Vec<u8>, Result<Option<usize>, UpgradeError>);
        let cases: Vec<Case> = vec![
            ("valid 101", ok.clone().into_bytes(), Ok(Some(ok.len()))),
            // Regression (issue 7, point 3): more than 64 fields failed as malformed.
            ("101 with 300 more fields", many.clone().into_bytes(), Ok(Some(many.len()))),
            ("1025 fields", too_many.into_bytes(), Err(UpgradeError::TooManyHeaders)),
            ("404", b"HTTP/1.1 404 Not Found\r\n\r\n".to_vec(), Err(UpgradeError::Status(404))),
            (
                "426 after 100",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 426 Upgrade Required\r\n\r\n".to_vec(),
                Err(UpgradeError::Status(426)),
            ),
            (
                "wrong accept",
                response_101("s3pPLMBiTxaQ9kYGzzhZRbK+xOA=").into_bytes(),
                Err(UpgradeError::BadAccept),
            ),
            (
                "no upgrade field",
                format!("HTTP/1.1 101 S\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n").into_bytes(),
                Err(UpgradeError::MissingUpgrade),
            ),
            (
                "extension selected",
                format!("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\nSec-WebSocket-Extensions: x\r\n\r\n").into_bytes(),
                Err(UpgradeError::Malformed(
                    "server selected a WebSocket extension that was not offered",
                )),
            ),
            (
                "101 on HTTP/1.0",
                format!("HTTP/1.0 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n").into_bytes(),
                Err(UpgradeError::Malformed("101 on HTTP/1.0")),
            ),
            ("HX", b"HX".to_vec(), Err(UpgradeError::Malformed("invalid HTTP version"))),
            ("SSH banner", b"SSH-2.0-OpenSSH\r\n".to_vec(), Err(UpgradeError::Malformed("invalid HTTP version"))),
            ("letter in the code", b"HTTP/1.1 1x1".to_vec(), Err(UpgradeError::Malformed("invalid status code"))),
            // Hopeless as soon as the three digits are there, ended or not.
            ("code 999", b"HTTP/1.1 999 X".to_vec(), Err(UpgradeError::Malformed("status code outside 100-599"))),
            ("space in a field name", b"HTTP/1.1 101 S\r\nBad Name".to_vec(), Err(UpgradeError::Malformed("invalid header name"))),
            ("head too large", endless, Err(UpgradeError::HeadTooLarge)),
        ];
        let trailing = frame(TEXT, true, b"after");
        for (name, input, expect) in cases {
            assert_eq!(upgrade_fed(&input, input.len()), expect, "{name}, whole");
            if input.len() <= 4 * 1024 {
                // (The parse is stateless: feeding a large head a byte at a time is quadratic.)
                assert_eq!(upgrade_fed(&input, 1), expect, "{name}, byte by byte");
            }
            assert_eq!(
                upgrade_fed(&input, 61),
                expect,
                "{name}, 61 bytes at a time"
            );
            let mut with_trailing = input.clone();
            with_trailing.extend_from_slice(&trailing);
            // The head's length does not include the frame behind it; errors stay errors.
            assert_eq!(
                upgrade_fed(&with_trailing, with_trailing.len()),
                expect,
                "{name}, + frame"
            );
            if input.len() <= 4 * 1024 {
                assert_eq!(
                    upgrade_fed(&with_trailing, 1),
                    expect,
                    "{name}, + frame, bytewise"
                );
            }
        }
    }

    #[test]
    fn parse_upgrade_rejects_bad_answers() {
        let parse = |s: &str| parse_upgrade_response(s.as_bytes(), SAMPLE_ACCEPT);
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Err(UpgradeError::Status(200))
        );
        assert_eq!(
            parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 426 Upgrade Required\r\n\r\n"),
            Err(UpgradeError::Status(426))
        );
        // The status is known as soon as the head is complete, body or not.
        assert_eq!(
            parse("HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\npartial"),
            Err(UpgradeError::Status(403))
        );
        assert_eq!(
            parse(&response_101("s3pPLMBiTxaQ9kYGzzhZRbK+xOA=")),
            Err(UpgradeError::BadAccept)
        );
        assert_eq!(
            parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            Err(UpgradeError::BadAccept)
        );
        let twice = format!(
            "HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n"
        );
        assert_eq!(parse(&twice), Err(UpgradeError::BadAccept));
        for missing in [
            format!("HTTP/1.1 101 S\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n"),
            format!("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n"),
            format!("HTTP/1.1 101 S\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n"),
            format!("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n"),
        ] {
            assert_eq!(parse(&missing), Err(UpgradeError::MissingUpgrade), "{missing:?}");
        }
        let extension = format!(
            "HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        );
        assert!(matches!(parse(&extension), Err(UpgradeError::Malformed(_))));
        assert!(matches!(
            parse(&format!("HTTP/1.0 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n")),
            Err(UpgradeError::Malformed(_))
        ));
        assert!(matches!(
            parse("HTTP/1.1 abc\r\n\r\n"),
            Err(UpgradeError::Malformed(_))
        ));
        assert!(matches!(
            parse("SSH-2.0-OpenSSH\r\n\r\n"),
            Err(UpgradeError::Malformed(_))
        ));
        assert!(matches!(
            parse("HTTP/1.1 999 X\r\n\r\n"),
            Err(UpgradeError::Malformed(_))
        ));

        let mut endless = b"HTTP/1.1 101 S\r\nX-Pad: ".to_vec();
        endless.resize(HEAD_MAX + 10, b'p');
        assert_eq!(
            parse_upgrade_response(&endless, SAMPLE_ACCEPT),
            Err(UpgradeError::HeadTooLarge)
        );
    }
}
