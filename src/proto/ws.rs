//! Sans-IO WebSocket client codec (RFC 6455): the upgrade request, the check of the server's
//! `101 Switching Protocols`, masked frame encoding and a frame decoder that reassembles messages.
//!
//! This module owns the byte-level protocol of one WebSocket connection as seen by a client. It
//! never touches a socket, never reads a clock and never allocates per frame in steady state:
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
use std::mem::MaybeUninit;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::proto::http1::RequestError;

/// RFC 6455 §1.3: appended to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest upgrade response head accepted, interim responses included.
const HEAD_MAX: usize = 64 * 1024;
/// Most header fields accepted in one response head (the stack array httparse fills).
const MAX_HEADERS: usize = 64;
/// RFC 6455 §5.5: control frames carry at most 125 payload bytes.
const CONTROL_MAX: usize = 125;
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
pub fn accept_for(key: &str) -> String {
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha1.finish().as_ref())
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
    if !is_valid_target(target) {
        return Err(RequestError::InvalidTarget(target.to_owned()));
    }
    if key.is_empty() || !is_valid_field_value(key.as_bytes()) {
        return Err(RequestError::InvalidHeaderValue(
            "Sec-WebSocket-Key".to_owned(),
        ));
    }
    let mut has_host = false;
    let mut has_user_agent = false;
    for (name, value) in headers {
        if !is_token(name.as_bytes()) {
            return Err(RequestError::InvalidHeaderName(name.clone()));
        }
        if !is_valid_field_value(value.as_bytes()) {
            return Err(RequestError::InvalidHeaderValue(name.clone()));
        }
        if name.eq_ignore_ascii_case("host") {
            if has_host {
                return Err(RequestError::DuplicateHost);
            }
            has_host = true;
        } else if name.eq_ignore_ascii_case("user-agent") {
            has_user_agent = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            if trim_ows(value.as_bytes()) != b"0" {
                return Err(RequestError::ContentLengthMismatch {
                    given: value.clone(),
                    body: 0,
                });
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::TransferEncodingGiven(value.clone()));
        } else if RESERVED_HEADERS
            .iter()
            .any(|reserved| name.eq_ignore_ascii_case(reserved))
        {
            return Err(RequestError::InvalidHeaderName(name.clone()));
        }
    }
    if !has_host && !is_valid_host(host) {
        return Err(RequestError::InvalidHost(host.to_owned()));
    }

    let user_agent = concat!("connbench/", env!("CARGO_PKG_VERSION"));
    // Sized up front so the one allocation is the only one.
    let capacity = target.len()
        + host.len()
        + key.len()
        + user_agent.len()
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
        + 160;
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !has_host {
        push_field(&mut out, "Host", host);
    }
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    push_field(&mut out, "Sec-WebSocket-Key", key);
    out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    if !has_user_agent {
        push_field(&mut out, "User-Agent", user_agent);
    }
    for (name, value) in headers {
        push_field(&mut out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// RFC 9110 `token = 1*tchar`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Origin-form only (RFC 6455 §4.1: the request-target is the resource name).
fn is_valid_target(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic())
}

fn is_valid_host(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic())
}

/// RFC 9110 §5.5: visible characters, SP, HTAB and obs-text; no other control character.
fn is_valid_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Strip optional whitespace (SP / HTAB) from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
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
/// once per connection, so re-parsing a partial head is cheaper than keeping state). A 101 must
/// be HTTP/1.1 and must not select an extension (none is offered). A selected subprotocol is not
/// checked here: the caller knows which it offered.
pub fn parse_upgrade_response(
    buf: &[u8],
    expected_accept: &str,
) -> Result<Option<usize>, UpgradeError> {
    let window = &buf[..buf.len().min(HEAD_MAX)];
    let mut at = 0;
    loop {
        let rest = &window[at..];
        // Uninitialised slots: httparse writes only the fields it finds.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            rest,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return if buf.len() >= HEAD_MAX {
                    Err(UpgradeError::HeadTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(UpgradeError::Malformed(httparse_error_text(e))),
        };
        let (Some(minor), Some(status)) = (response.version, response.code) else {
            return Err(UpgradeError::Malformed("no status line"));
        };
        match status {
            101 => {}
            // Interim response (100 Continue, 103 Early Hints): the final one follows.
            100..=199 => {
                at += len;
                continue;
            }
            200..=599 => return Err(UpgradeError::Status(status)),
            _ => return Err(UpgradeError::Malformed("status code outside 100-599")),
        }
        if minor != 1 {
            return Err(UpgradeError::Malformed("101 on HTTP/1.0"));
        }
        check_101_fields(response.headers, expected_accept)?;
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

fn httparse_error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "more than 64 header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
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
    header[0] = (u8::from(fin) << 7) | opcode.bits();
    let mut header_len = 2;
    if len <= 125 {
        // Fits: len <= 125.
        header[1] = 0x80 | len as u8;
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = 0x80 | 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        header_len = 4;
    } else {
        header[1] = 0x80 | 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        header_len = 10;
    }
    header[header_len..header_len + 4].copy_from_slice(&mask);
    header_len += 4;

    out.reserve(header_len + len);
    out.extend_from_slice(&header[..header_len]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// Convenience: a close frame with code and reason.
///
/// The reason is cut to 123 bytes (at a character boundary, so it stays valid UTF-8) because a
/// control frame carries at most 125 bytes. No allocation when `out` has capacity.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: [u8; 4]) {
    let mut end = reason.len().min(CONTROL_MAX - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut payload = [0u8; CONTROL_MAX];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason);
    encode_frame(out, OpCode::Close, true, &payload[..2 + reason.len()], mask);
}

/// XOR `buf` with `mask` as if it started at byte `offset` of the payload.
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
            WsError::MessageTooBig { size, max } => write!(
                f,
                "server message of at least {size} bytes exceeds the {max}-byte maximum"
            ),
        }
    }
}

impl std::error::Error for WsError {}

/// Close codes a peer may send (RFC 6455 §7.4 and the IANA registry: 1012-1014 are registered,
/// 3000-3999 are for libraries and frameworks, 4000-4999 private use).
fn is_sendable_close_code(code: u16) -> bool {
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
        let len7 = b1 & 0x7F;
        if opcode.is_control() && usize::from(len7) > CONTROL_MAX {
            return Err(WsError::ControlTooLong);
        }
        let (header_len, payload_len) = match len7 {
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
        if !opcode.is_control() {
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
