//! Sans-IO HTTP/1.1 client codec: request serialization and response framing.
//!
//! This module owns two things. [`encode_request`] validates user input once, at start, and turns
//! it into the exact bytes the engine writes for every request. [`ResponseDecoder`] frames the
//! responses arriving on one connection (FIFO, so pipelining works): it finds where each response
//! ends and reports its status, body length and whether the connection may be reused. It never
//! touches a socket, never reads a clock, never allocates in `decode` / `finish_eof`, and never
//! keeps a copy of body bytes: the engine measures, this module only frames.
//!
//! Decoder contract, in the order the engine relies on it:
//! 1. A response head is consumed only once it is complete (status line, fields, empty line); until
//!    then `decode` returns `(0, Partial)` and the caller keeps the bytes and appends more. A
//!    "scanned up to" offset makes feeding a head byte by byte O(n), not O(n²).
//! 2. Body bytes are consumed as they arrive, so a large body never accumulates in the caller.
//! 3. `decode` returns right after a response completes; the next pipelined response stays
//!    unconsumed and the caller loops.
//! 4. Framing follows RFC 9112 §6.3. Errors are the peer's fault and leave the decoder failed
//!    (every later call repeats the error) until [`ResponseDecoder::reset`].
//! 5. The error never depends on how the bytes were split: bytes that cannot start a valid
//!    response (a status line, header line, chunk-size line or trailer that is already wrong)
//!    fail as soon as they arrive, not when the line or head would have ended, and
//!    [`ResponseDecoder::finish_eof`] judges what it is handed the same way. The head check is
//!    httparse's response grammar run incrementally ([`HeadLexer`]); a head that arrives whole
//!    goes straight to httparse, and the tests hold the two to the same verdict on every prefix.

use std::fmt;
use std::mem::MaybeUninit;

/// Largest response head accepted, status line to empty line inclusive.
const HEAD_MAX: usize = 64 * 1024;
/// Most header fields accepted in one response head. Heads up to [`STACK_HEADERS`] fields are
/// parsed into a stack array; larger ones into a per-decoder heap array sized to the head and
/// reused, so a server that always sends many fields costs no allocation per response.
pub const MAX_HEADERS: usize = 1024;
/// Header slots on the stack: more than almost any real response carries.
const STACK_HEADERS: usize = 64;
/// Longest chunk-size line accepted, extensions and CRLF included.
const CHUNK_LINE_MAX: usize = 4 * 1024;
/// Largest trailer section accepted after the last chunk.
const TRAILERS_MAX: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Request encoding
// ---------------------------------------------------------------------------------------------

/// Why user input could not become a request (shown to the user: say what is wrong and how to fix it).
///
/// Every variant is the user's fault and is reported before the run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The method is empty or not an RFC 9110 token (letters, digits, ``!#$%&'*+-.^_`|~``).
    InvalidMethod(String),
    /// The target is not origin-form (`/path?q`), `*`, or absolute-form (`http(s)://…`), or it
    /// holds whitespace, control or non-ASCII bytes.
    InvalidTarget(String),
    /// The host used for the automatic `Host` header is empty or holds whitespace, control or
    /// non-ASCII bytes.
    InvalidHost(String),
    /// A header name is empty or not a token.
    InvalidHeaderName(String),
    /// The value of the named header holds CR, LF, NUL or another control character.
    InvalidHeaderValue(String),
    /// A `Content-Length` header was given that does not state the body's length.
    ContentLengthMismatch {
        /// The value the user gave.
        given: String,
        /// The body's real length in bytes.
        body: usize,
    },
    /// A `Transfer-Encoding` header was given (the value is kept); bodies are always sent with
    /// `Content-Length`.
    TransferEncodingGiven(String),
    /// More than one `Host` header was given; servers must reject such requests (RFC 9112 §3.2).
    DuplicateHost,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` quotes and escapes user text, so a stray newline cannot break the one-line rule.
        match self {
            RequestError::InvalidMethod(m) => write!(
                f,
                "invalid HTTP method {m:?}: use a token such as GET or POST (letters, digits and !#$%&'*+-.^_`|~, no spaces)"
            ),
            RequestError::InvalidTarget(t) => write!(
                f,
                "invalid request target {t:?}: start it with '/' (or use '*' or http(s)://...) and percent-encode spaces, control and non-ASCII characters"
            ),
            RequestError::InvalidHost(h) => write!(
                f,
                "invalid host {h:?} for the Host header: give a non-empty ASCII host[:port] without spaces (use the xn-- form for international names) or pass a Host header"
            ),
            RequestError::InvalidHeaderName(n) => write!(
                f,
                "invalid header name {n:?}: use a non-empty token (letters, digits and !#$%&'*+-.^_`|~, no spaces or colons)"
            ),
            RequestError::InvalidHeaderValue(n) => write!(
                f,
                "header {n:?} has a value with CR, LF, NUL or another control character: remove it (a value must stay on one line)"
            ),
            RequestError::ContentLengthMismatch { given, body } => write!(
                f,
                "Content-Length {given:?} does not match the {body}-byte body: remove the header and connbench sets it"
            ),
            RequestError::TransferEncodingGiven(v) => write!(
                f,
                "Transfer-Encoding {v:?} is not supported: remove the header, bodies are sent with Content-Length"
            ),
            RequestError::DuplicateHost => write!(
                f,
                "more than one Host header given: keep exactly one (servers reject duplicates)"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// Serialize one request once, at start; the engine writes these bytes for every request.
///
/// Rules: `METHOD SP target SP HTTP/1.1\r\n`; `Host: {host}` first unless `headers` has a Host
/// (case-insensitive); then user headers in order; `User-Agent: connbench/{CARGO_PKG_VERSION}`
/// unless given; `Content-Length: {body.len()}` when the body is non-empty or the method is
/// POST/PUT/PATCH, unless given (a given Content-Length that differs from `body.len()` is an
/// error; a given Transfer-Encoding is an error: bodies are sent with Content-Length); no
/// Connection header (HTTP/1.1 keep-alive is the default); then `\r\n` and the body.
///
/// Validates: method is an RFC 9110 token; target starts with '/' (or is '*', or absolute-form
/// http(s)://...) and has no whitespace, control or non-ASCII bytes; header names are tokens;
/// values have no CR, LF, NUL or other control characters (HTAB is allowed); the host used for
/// the automatic Host header is non-empty printable ASCII.
pub fn encode_request(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<u8>, RequestError> {
    if !is_token(method.as_bytes()) {
        return Err(RequestError::InvalidMethod(method.to_owned()));
    }
    if !is_valid_target(target) {
        return Err(RequestError::InvalidTarget(target.to_owned()));
    }

    let mut has_host = false;
    let mut has_user_agent = false;
    let mut has_content_length = false;
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
            has_content_length = true;
            if parse_decimal(trim_ows(value.as_bytes())) != Some(body.len() as u64) {
                return Err(RequestError::ContentLengthMismatch {
                    given: value.clone(),
                    body: body.len(),
                });
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::TransferEncodingGiven(value.clone()));
        }
    }
    if !has_host && !is_valid_host(host) {
        return Err(RequestError::InvalidHost(host.to_owned()));
    }

    let needs_length =
        !has_content_length && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"));
    let user_agent = concat!("connbench/", env!("CARGO_PKG_VERSION"));

    // Sized up front so the one allocation is the only one.
    let capacity = method.len()
        + target.len()
        + host.len()
        + user_agent.len()
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
        + body.len()
        + 96;
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !has_host {
        push_field(&mut out, "Host", host);
    }
    for (name, value) in headers {
        push_field(&mut out, name, value);
    }
    if !has_user_agent {
        push_field(&mut out, "User-Agent", user_agent);
    }
    if needs_length {
        push_field(&mut out, "Content-Length", &body.len().to_string());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 `token = 1*tchar`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Printable ASCII without space: what may appear in a request target or a host.
fn is_visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

fn is_valid_target(target: &str) -> bool {
    if !is_visible_ascii(target) {
        return false;
    }
    if target.starts_with('/') || target == "*" {
        return true;
    }
    // Absolute-form (RFC 9112 §3.2.2), used towards proxies: a scheme and a non-empty rest.
    ["http://", "https://"].iter().any(|scheme| {
        target.len() > scheme.len()
            && target.as_bytes()[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
    })
}

fn is_valid_host(host: &str) -> bool {
    !host.is_empty() && is_visible_ascii(host)
}

/// RFC 9110 §5.5: a field value is visible characters, SP, HTAB and obs-text; every other
/// control character (CR, LF and NUL above all) is refused, so no header can be injected.
fn is_valid_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Strip optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `1*DIGIT` as a u64; `None` for anything else, including overflow and signs.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

// ---------------------------------------------------------------------------------------------
// Response decoding
// ---------------------------------------------------------------------------------------------

/// A fully framed final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Status code of the final response (100..=599).
    pub status: u16,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
    /// Body bytes (after de-chunking), 0 for no-body responses.
    pub body_len: u64,
}

/// What one `decode` call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed to finish the current response.
    Partial,
    /// A final response ended at the consumed offset.
    Complete(ResponseInfo),
}

/// Why the response bytes cannot be framed. Display: one line.
///
/// Every variant is the server's fault (or the network's, for [`ProtoError::Truncated`]); the
/// engine counts it against the connection and replaces the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The status line or a header field is not valid HTTP/1.x (what httparse reported, or a
    /// status code outside 100..=599).
    Malformed(&'static str),
    /// The head has more than [`MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// The head is larger than 64 KiB.
    HeadTooLarge,
    /// A `Content-Length` value is not a plain decimal number (or overflows 64 bits).
    InvalidContentLength,
    /// Several `Content-Length` values disagree.
    ConflictingContentLength,
    /// The chunked body is broken; the text says where.
    InvalidChunk(&'static str),
    /// A chunk-size line is longer than 4 KiB.
    ChunkLineTooLong,
    /// A trailer line after the last chunk is not a header field.
    InvalidTrailer,
    /// The trailer section is larger than 64 KiB.
    TrailersTooLarge,
    /// The connection closed in the middle of a response.
    Truncated,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Malformed(what) => write!(f, "malformed response head: {what}"),
            ProtoError::TooManyHeaders => {
                write!(f, "response head has more than {MAX_HEADERS} header fields")
            }
            ProtoError::HeadTooLarge => {
                write!(f, "response head is larger than {} KiB", HEAD_MAX / 1024)
            }
            ProtoError::InvalidContentLength => {
                write!(f, "response Content-Length is not a valid number")
            }
            ProtoError::ConflictingContentLength => {
                write!(f, "response has conflicting Content-Length values")
            }
            ProtoError::InvalidChunk(what) => write!(f, "invalid chunked body: {what}"),
            ProtoError::ChunkLineTooLong => write!(
                f,
                "chunk-size line is longer than {} KiB",
                CHUNK_LINE_MAX / 1024
            ),
            ProtoError::InvalidTrailer => {
                write!(f, "invalid trailer field after the last chunk")
            }
            ProtoError::TrailersTooLarge => write!(
                f,
                "trailer section is larger than {} KiB",
                TRAILERS_MAX / 1024
            ),
            ProtoError::Truncated => write!(f, "connection closed in the middle of a response"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Where the decoder is inside the current response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for a complete response head.
    Head(HeadScan),
    /// Content-Length body: this many bytes still to come.
    Fixed { remaining: u64 },
    /// Expecting a chunk-size line; `scanned` bytes of it hold no LF yet.
    ChunkSize { scanned: usize },
    /// Inside a chunk's data: this many bytes still to come.
    ChunkData { remaining: u64 },
    /// Expecting the CRLF that closes a chunk's data.
    ChunkDataEnd,
    /// After the last chunk: trailer lines up to the empty line. `scanned` bytes of the current
    /// line hold no LF yet and were checked (a CR at its end excepted); `colon` says whether
    /// they hold the colon; `total` bytes of trailer lines were already consumed.
    Trailers {
        scanned: usize,
        colon: bool,
        total: usize,
    },
    /// Body delimited by the connection closing: everything is body until `finish_eof`.
    UntilClose,
    /// The response could not be framed; every call repeats the error until `reset`.
    Failed(ProtoError),
}

/// Progress on the head of the next response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct HeadScan {
    /// `None` until one parse attempt found the head incomplete; then the incremental check of
    /// the bytes seen so far, which resumes where it stopped, so no byte is checked twice.
    lexer: Option<HeadLexer>,
    /// Empty lines consumed before the status line (tolerated, as httparse does, but bounded).
    skipped: usize,
    /// An interim 1xx response for the current request was already consumed.
    interim_seen: bool,
}

impl State {
    fn idle() -> Self {
        State::Head(HeadScan::default())
    }
}

/// How a final response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body at all (HEAD, 204, 304, 101).
    Empty,
    /// Chunked transfer coding.
    Chunked,
    /// Exactly this many bytes.
    Length(u64),
    /// Until the peer closes the connection.
    UntilClose,
}

/// What one state step did, in bytes of the input it was handed.
enum Step {
    /// Consumed this many bytes and moved on; keep going.
    Advance(usize),
    /// Consumed this many bytes and needs more input.
    NeedMore(usize),
    /// Consumed this many bytes and the final response is complete.
    Done(usize),
}

/// Incremental framer for the responses on one connection (FIFO, pipelining-safe).
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    state: State,
    /// The final response being framed: status and keep-alive from its head, body bytes so far.
    current: ResponseInfo,
    /// Header slots for heads with more than [`STACK_HEADERS`] fields (kept across responses).
    slots: HeaderSlots,
    /// The last head parsed whole on this decoder's first look, and what it said (kept across
    /// responses and connections of the slot).
    cache: HeadCache,
}

/// Longest response head [`HeadCache`] keeps: a typical server's head (status line, Date,
/// Server, Content-Type, Content-Length, Connection) is 150–250 bytes.
const HEAD_CACHE_MAX: usize = 320;

/// Memo of the last complete head parsed: its exact bytes, from the status line through the
/// empty line that ends it, and the facts httparse and [`head_facts`] drew from them.
///
/// A server answering the same request over and over sends the same head, byte for byte, until
/// its Date field ticks (once a second). httparse and the field walk cost ~150 ns per response
/// (a third of the client's own CPU per keep-alive request); comparing ≤ 320 bytes costs ~10.
/// Parsing is a function of the bytes up to and including the head's empty line (httparse never
/// looks past it), so input that starts with the cached bytes is that head again and has the
/// same facts: the cache changes no outcome, only its cost (`head_cache_changes_no_outcome`).
#[derive(Debug, Clone)]
struct HeadCache {
    bytes: [u8; HEAD_CACHE_MAX],
    /// 0: empty.
    len: usize,
    head: Head,
}

impl HeadCache {
    fn empty() -> HeadCache {
        HeadCache {
            bytes: [0; HEAD_CACHE_MAX],
            len: 0,
            head: Head {
                status: 0,
                keep_alive: false,
                http10: false,
                transfer_encoding: false,
                chunked_last: false,
                content_length: ContentLength::Absent,
            },
        }
    }

    /// The cached head when `input` starts with it.
    #[inline]
    fn hit(&self, input: &[u8]) -> Option<(usize, Head)> {
        let n = self.len;
        (n > 0 && input.len() >= n && input[..n] == self.bytes[..n]).then_some((n, self.head))
    }

    fn store(&mut self, head_bytes: &[u8], head: Head) {
        if head_bytes.len() <= HEAD_CACHE_MAX {
            self.bytes[..head_bytes.len()].copy_from_slice(head_bytes);
            self.len = head_bytes.len();
            self.head = head;
        }
    }
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseDecoder {
    /// A decoder waiting for the first response of a connection.
    pub fn new() -> Self {
        ResponseDecoder {
            state: State::idle(),
            current: ResponseInfo {
                status: 0,
                keep_alive: false,
                body_len: 0,
            },
            slots: HeaderSlots::default(),
            cache: HeadCache::empty(),
        }
    }

    /// Feed the unconsumed bytes the connection holds. Returns how many bytes were consumed and
    /// whether a response completed. Contract (the engine relies on it):
    /// - Head bytes are NOT consumed until the whole head (status line + headers + CRLFCRLF) is
    ///   present: the caller keeps them and calls again with more bytes appended. An internal
    ///   "scanned up to" offset keeps feeding a head one byte at a time O(n).
    /// - Body bytes are consumed as they arrive (Partial with n > 0), so large bodies never
    ///   accumulate.
    /// - It stops right after a completed response: bytes of the next pipelined response stay
    ///   unconsumed (the caller loops).
    /// - `head_request`: the request this response answers was HEAD (no body whatever the
    ///   headers say).
    /// - Interim 1xx responses (other than 101) are consumed and skipped; decoding continues
    ///   with the final response. 101 completes with keep_alive=false, body_len 0.
    /// - Framing per RFC 9112 §6.3: HEAD, 1xx, 204, 304 → no body; Transfer-Encoding whose last
    ///   coding is chunked → chunked (it overrides Content-Length); Transfer-Encoding not ending
    ///   in chunked, or on an HTTP/1.0 response (§6.1: framing faulty) → close-delimited; valid
    ///   Content-Length (duplicates allowed only if equal) → fixed; neither → close-delimited.
    /// - Chunked: chunk-size lines with extensions, CRLF after each chunk's data verified, last
    ///   chunk `0`, optional trailer fields up to the empty line. Only complete size lines and
    ///   trailer lines are consumed.
    /// - keep_alive: HTTP/1.1 unless a `Connection` header has the token `close`; HTTP/1.0 only
    ///   with the token `keep-alive` (and no `close`); always false for close-delimited.
    /// - Limits: head ≤ 64 KiB, ≤ [`MAX_HEADERS`] header fields, chunk-size line ≤ 4 KiB,
    ///   trailers ≤ 64 KiB.
    /// - Bytes that cannot begin a valid response fail as soon as they are seen (contract
    ///   rule 5): the result never depends on how the input was split.
    ///
    /// After an error the decoder stays failed (each call returns the same error) until
    /// [`reset`](Self::reset).
    pub fn decode(
        &mut self,
        buf: &[u8],
        head_request: bool,
    ) -> Result<(usize, Progress), ProtoError> {
        let mut pos = 0;
        loop {
            let input = &buf[pos..];
            let step = match self.step(input, head_request) {
                Ok(step) => step,
                Err(e) => {
                    self.state = State::Failed(e.clone());
                    return Err(e);
                }
            };
            match step {
                Step::Advance(n) => pos += n,
                Step::NeedMore(n) => return Ok((pos + n, Progress::Partial)),
                Step::Done(n) => {
                    let info = self.current;
                    self.state = State::idle();
                    return Ok((pos + n, Progress::Complete(info)));
                }
            }
        }
    }

    /// The peer closed the connection. `pending` = bytes still unconsumed in the caller's buffer.
    /// Close-delimited body in progress → Ok(Some(info)) (pending counts as body).
    /// Nothing of a response seen and pending empty → Ok(None) (a clean close between
    /// responses; stray empty lines count as nothing).
    /// Bytes that could never become a valid response (checked here too, so bytes the decoder
    /// is handed only now are judged like any others) → the error they call for.
    /// Anything else → Err(ProtoError::Truncated) (or the error the decoder already failed with).
    ///
    /// The decoder is reset afterwards, whatever the outcome.
    pub fn finish_eof(&mut self, pending: &[u8]) -> Result<Option<ResponseInfo>, ProtoError> {
        let outcome = match &self.state {
            State::Head(scan) if !scan.interim_seen && only_blank_lines(pending) => Ok(None),
            State::UntilClose => {
                let mut info = self.current;
                info.body_len = info.body_len.saturating_add(pending.len() as u64);
                info.keep_alive = false;
                Ok(Some(info))
            }
            State::Failed(e) => Err(e.clone()),
            // Whatever state the bytes would leave the decoder in, an error they cause is the
            // answer; otherwise the response was cut short.
            _ => match self.decode(pending, false) {
                Err(e) => Err(e),
                // A close-delimited body that started in `pending` ends here.
                Ok((n, Progress::Partial)) if self.state == State::UntilClose => {
                    let mut info = self.current;
                    info.body_len = info.body_len.saturating_add((pending.len() - n) as u64);
                    info.keep_alive = false;
                    Ok(Some(info))
                }
                Ok(_) => Err(ProtoError::Truncated),
            },
        };
        self.reset();
        outcome
    }

    /// Forget any partial response (the connection is being replaced). The heap header slots,
    /// if a large head ever needed them, are kept for the next connection.
    pub fn reset(&mut self) {
        self.state = State::idle();
        self.current = ResponseDecoder::new().current;
    }

    /// Run the current state once over `input` (the unconsumed bytes from the state's start).
    /// Every `Advance` either consumes bytes or changes state, so `decode` always terminates.
    fn step(&mut self, input: &[u8], head_request: bool) -> Result<Step, ProtoError> {
        match self.state {
            State::Head(scan) => self.step_head(scan, input, head_request),
            State::Fixed { remaining } => {
                let take = take_body(remaining, input);
                self.add_body(take);
                let remaining = remaining - take as u64;
                if remaining == 0 {
                    Ok(Step::Done(take))
                } else {
                    self.state = State::Fixed { remaining };
                    Ok(Step::NeedMore(take))
                }
            }
            State::ChunkSize { scanned } => self.step_chunk_size(scanned, input),
            State::ChunkData { remaining } => {
                let take = take_body(remaining, input);
                self.add_body(take);
                let remaining = remaining - take as u64;
                if remaining == 0 {
                    self.state = State::ChunkDataEnd;
                    Ok(Step::Advance(take))
                } else {
                    self.state = State::ChunkData { remaining };
                    Ok(Step::NeedMore(take))
                }
            }
            State::ChunkDataEnd => match input {
                [b'\r', b'\n', ..] => {
                    self.state = State::ChunkSize { scanned: 0 };
                    Ok(Step::Advance(2))
                }
                [] | [b'\r'] => Ok(Step::NeedMore(0)),
                _ => Err(ProtoError::InvalidChunk(
                    "chunk data is not followed by CRLF",
                )),
            },
            State::Trailers {
                scanned,
                colon,
                total,
            } => self.step_trailers(scanned, colon, total, input),
            State::UntilClose => {
                self.add_body(input.len());
                Ok(Step::NeedMore(input.len()))
            }
            State::Failed(ref e) => Err(e.clone()),
        }
    }

    fn add_body(&mut self, n: usize) {
        self.current.body_len = self.current.body_len.saturating_add(n as u64);
    }

    fn step_head(
        &mut self,
        mut scan: HeadScan,
        input: &[u8],
        head_request: bool,
    ) -> Result<Step, ProtoError> {
        if scan.lexer.is_none() {
            // Empty lines before a status line are consumed here rather than left to httparse,
            // so they never count against the head's size limit or its parse.
            let blank = leading_blank_lines(input);
            if blank > 0 {
                scan.skipped += blank;
                if scan.skipped > HEAD_MAX {
                    return Err(ProtoError::HeadTooLarge);
                }
                self.state = State::Head(scan);
                return Ok(Step::Advance(blank));
            }
            if input.is_empty() || input == b"\r" {
                return Ok(Step::NeedMore(0));
            }
        }

        let window = &input[..input.len().min(HEAD_MAX)];
        let mut parsed = None;
        if scan.lexer.is_none() {
            // First look at this head: usually it is all there, and usually the same bytes as
            // the last one (HeadCache); else httparse frames it at once.
            parsed = match self.cache.hit(window) {
                Some(hit) => Some(hit),
                None => {
                    let p = parse_head(window, &mut self.slots)?;
                    if let Some((len, head)) = p {
                        self.cache.store(&window[..len], head);
                    }
                    p
                }
            };
        }
        if parsed.is_none() {
            // Incomplete: check what arrived (once per byte, resuming on the next call) so a
            // prefix that cannot become a head fails now, whatever the split (rule 5).
            let lexer = scan.lexer.get_or_insert_with(HeadLexer::default);
            if let Some(end) = lexer.feed(window)? {
                parsed = parse_head(&window[..end], &mut self.slots)?;
                if parsed.is_none() {
                    // Unreachable while the lexer and httparse agree (the tests hold them to it).
                    return Err(ProtoError::Malformed(
                        "response head does not end at its empty line",
                    ));
                }
            }
        }
        let Some((len, head)) = parsed else {
            if input.len() >= HEAD_MAX {
                return Err(ProtoError::HeadTooLarge);
            }
            self.state = State::Head(scan);
            return Ok(Step::NeedMore(0));
        };

        if head.status < 200 && head.status != 101 {
            // Interim response: skip it, the final response for the same request follows.
            self.state = State::Head(HeadScan {
                interim_seen: true,
                ..HeadScan::default()
            });
            return Ok(Step::Advance(len));
        }
        let framing = if head_request || matches!(head.status, 101 | 204 | 304) {
            Framing::Empty
        } else {
            head.body_framing()?
        };
        self.current = ResponseInfo {
            status: head.status,
            keep_alive: head.keep_alive && head.status != 101 && framing != Framing::UntilClose,
            body_len: 0,
        };
        match framing {
            Framing::Empty | Framing::Length(0) => Ok(Step::Done(len)),
            Framing::Length(remaining) => {
                self.state = State::Fixed { remaining };
                Ok(Step::Advance(len))
            }
            Framing::Chunked => {
                self.state = State::ChunkSize { scanned: 0 };
                Ok(Step::Advance(len))
            }
            Framing::UntilClose => {
                self.state = State::UntilClose;
                Ok(Step::Advance(len))
            }
        }
    }

    fn step_chunk_size(&mut self, scanned: usize, input: &[u8]) -> Result<Step, ProtoError> {
        let window = &input[..input.len().min(CHUNK_LINE_MAX)];
        // httparse reads an empty line as size 0; a size needs at least one hex digit.
        if window.first().is_some_and(|b| !b.is_ascii_hexdigit()) {
            return Err(ProtoError::InvalidChunk("chunk size is not a hex number"));
        }
        let Some(lf) = find_byte(window, scanned, b'\n') else {
            // No LF yet: a line that is already wrong fails now, not when its LF comes
            // (rule 5). httparse stops at the first bad byte, so a wrong prefix is an error
            // and a good one is Partial; checked only when new bytes arrived (≤ 4 KiB).
            if window.len() > scanned && httparse::parse_chunk_size(window).is_err() {
                return Err(ProtoError::InvalidChunk("bad chunk-size line"));
            }
            if input.len() >= CHUNK_LINE_MAX {
                return Err(ProtoError::ChunkLineTooLong);
            }
            self.state = State::ChunkSize {
                scanned: window.len(),
            };
            return Ok(Step::NeedMore(0));
        };
        let line = &window[..=lf];
        let size = match httparse::parse_chunk_size(line) {
            Ok(httparse::Status::Complete((end, size))) if end == line.len() => size,
            // Partial on a whole line means a bare LF inside an extension: CRLF is required.
            _ => return Err(ProtoError::InvalidChunk("bad chunk-size line")),
        };
        self.state = if size == 0 {
            State::Trailers {
                scanned: 0,
                colon: false,
                total: 0,
            }
        } else {
            State::ChunkData { remaining: size }
        };
        Ok(Step::Advance(line.len()))
    }

    fn step_trailers(
        &mut self,
        scanned: usize,
        colon: bool,
        total: usize,
        input: &[u8],
    ) -> Result<Step, ProtoError> {
        let budget = TRAILERS_MAX - total;
        let window = &input[..input.len().min(budget)];
        let Some(lf) = find_byte(window, scanned, b'\n') else {
            // No LF yet: check the new bytes of the line now (rule 5).
            let (checked, colon) =
                check_field_prefix(window, scanned, colon).ok_or(ProtoError::InvalidTrailer)?;
            if input.len() >= budget {
                return Err(ProtoError::TrailersTooLarge);
            }
            self.state = State::Trailers {
                scanned: checked,
                colon,
                total,
            };
            return Ok(Step::NeedMore(0));
        };
        let line = &window[..=lf];
        if line == b"\r\n" || line == b"\n" {
            return Ok(Step::Done(line.len()));
        }
        if !is_field_line(line) {
            return Err(ProtoError::InvalidTrailer);
        }
        self.state = State::Trailers {
            scanned: 0,
            colon: false,
            total: total + line.len(),
        };
        Ok(Step::Advance(line.len()))
    }
}

/// Body bytes to take from `input` when `remaining` are still expected.
fn take_body(remaining: u64, input: &[u8]) -> usize {
    // Fits: bounded by input.len().
    remaining.min(input.len() as u64) as usize
}

/// Bytes of complete empty lines (CRLF or LF) at the start of `input`.
fn leading_blank_lines(input: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match &input[i..] {
            [b'\n', ..] => i += 1,
            [b'\r', b'\n', ..] => i += 2,
            _ => return i,
        }
    }
}

/// Empty lines (CRLF or LF) and at most the CR of one more: nothing of a response.
fn only_blank_lines(pending: &[u8]) -> bool {
    let blank = leading_blank_lines(pending);
    pending[blank..].is_empty() || &pending[blank..] == b"\r"
}

/// Index of the first `needle` at or after `from` (clamped to the slice).
fn find_byte(buf: &[u8], from: usize, needle: u8) -> Option<usize> {
    let from = from.min(buf.len());
    buf[from..]
        .iter()
        .position(|&b| b == needle)
        .map(|i| from + i)
}

/// A trailer line (`name: value` ending in CRLF or LF): the name is a token, the value has no
/// control characters other than HTAB.
fn is_field_line(line: &[u8]) -> bool {
    let body = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    match body.iter().position(|&b| b == b':') {
        Some(colon) => is_token(&body[..colon]) && is_valid_field_value(&body[colon + 1..]),
        None => false,
    }
}

/// Check the bytes `line[from..]` of a trailer line that has no LF yet, given whether
/// `line[..from]` (already checked) holds the colon. Returns how far the line is now checked and
/// whether it holds the colon, or `None` when no ending can make it a valid line (see
/// [`is_field_line`]). A CR is left unchecked while it is the last byte: it may start the CRLF.
fn check_field_prefix(line: &[u8], from: usize, mut colon: bool) -> Option<(usize, bool)> {
    for (i, &b) in line.iter().enumerate().skip(from) {
        if b == b'\r' {
            if i + 1 == line.len() {
                return Some((i, colon));
            }
            // A CR followed by anything but the LF (which this line does not hold yet).
            return None;
        }
        let ok = if colon {
            b == b'\t' || (b >= 0x20 && b != 0x7f)
        } else if b == b':' {
            colon = true;
            i > 0
        } else {
            is_tchar(b)
        };
        if !ok {
            return None;
        }
    }
    Some((line.len(), colon))
}

/// The framing-relevant facts of one parsed head; the header values it cares about are
/// folded in while the headers are walked once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// The Connection rules say the connection may be reused (before the framing check).
    keep_alive: bool,
    /// HTTP/1.0 (minor version 0).
    http10: bool,
    /// At least one Transfer-Encoding field was present.
    transfer_encoding: bool,
    /// The last transfer coding across all Transfer-Encoding fields is `chunked`.
    chunked_last: bool,
    content_length: ContentLength,
}

/// What the Content-Length fields said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ContentLength {
    Absent,
    Value(u64),
    Invalid,
    Conflicting,
}

impl Head {
    /// RFC 9112 §6.3 rules 3–7 for a response that may have a body.
    fn body_framing(&self) -> Result<Framing, ProtoError> {
        if self.transfer_encoding {
            // §6.1: Transfer-Encoding on HTTP/1.0 means the framing cannot be trusted.
            return Ok(if self.chunked_last && !self.http10 {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        match self.content_length {
            ContentLength::Absent => Ok(Framing::UntilClose),
            ContentLength::Value(n) => Ok(Framing::Length(n)),
            ContentLength::Invalid => Err(ProtoError::InvalidContentLength),
            ContentLength::Conflicting => Err(ProtoError::ConflictingContentLength),
        }
    }
}

/// Parse a head with httparse: `Ok(None)` when incomplete, else its length and facts.
fn parse_head(buf: &[u8], slots: &mut HeaderSlots) -> Result<Option<(usize, Head)>, ProtoError> {
    parse_response(buf, slots, head_facts)
}

/// The framing facts of a complete, parsed head.
fn head_facts(response: &httparse::Response<'_, '_>) -> Head {
    let minor = response.version.unwrap_or(1);
    let mut close = false;
    let mut keep_alive_token = false;
    let mut head = Head {
        status: response.code.unwrap_or(0),
        keep_alive: false,
        http10: minor == 0,
        transfer_encoding: false,
        chunked_last: false,
        content_length: ContentLength::Absent,
    };
    for header in response.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for token in list_elements(header.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.transfer_encoding = true;
            // Only the last coding of the last field decides; empty elements do not count.
            for coding in list_elements(header.value) {
                head.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            head.content_length = fold_content_length(head.content_length, header.value);
        }
    }
    head.keep_alive = !close && (minor >= 1 || keep_alive_token);
    head
}

/// Header slots for httparse beyond the stack array: a heap array that lives as long as its
/// decoder, sized to the largest head seen (at most [`MAX_HEADERS`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderSlots {
    /// Always empty between parses; only its capacity is kept. `'static` because a field can
    /// only borrow a buffer while one parse runs: [`HeaderSlots::parse_with`] re-types it for
    /// that parse and back, without reallocating (`Vec`'s in-place collect).
    spare: Vec<MaybeUninit<httparse::Header<'static>>>,
}

impl HeaderSlots {
    /// Parse `buf` into as many heap slots as it has lines (at most [`MAX_HEADERS`]).
    fn parse_with<R>(
        &mut self,
        buf: &[u8],
        f: impl FnOnce(&httparse::Response<'_, '_>) -> R,
    ) -> Result<Option<(usize, R)>, ProtoError> {
        let lines = buf.iter().filter(|&&b| b == b'\n').count();
        let mut heap: Vec<MaybeUninit<httparse::Header<'_>>> =
            retype(std::mem::take(&mut self.spare));
        heap.resize(lines.min(MAX_HEADERS), MaybeUninit::uninit());
        let mut response = httparse::Response::new(&mut []);
        let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut heap,
        );
        let out = finish_parse(status, &response, f);
        self.spare = retype(heap);
        out
    }
}

/// The same (empty) vector for fields of another lifetime, keeping its allocation: the element
/// types have one layout, so the in-place collect reuses the buffer.
fn retype<'a, 'b>(
    mut v: Vec<MaybeUninit<httparse::Header<'a>>>,
) -> Vec<MaybeUninit<httparse::Header<'b>>> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// Parse a response head with httparse and hand the parsed response to `f`: `Ok(None)` when it
/// is incomplete (and not already wrong), else its length and what `f` made of it. Heads with
/// more than [`STACK_HEADERS`] fields go to `slots`; more than [`MAX_HEADERS`] fail.
///
/// A status code outside 100-599 fails as soon as its three digits are there (and before any
/// error after them), so that the verdict on a prefix matches [`HeadLexer`]'s.
pub(crate) fn parse_response<R>(
    buf: &[u8],
    slots: &mut HeaderSlots,
    f: impl FnOnce(&httparse::Response<'_, '_>) -> R,
) -> Result<Option<(usize, R)>, ProtoError> {
    // Uninitialised slots: the parser writes only the fields it finds, so the stack array costs
    // nothing for the usual 6-10 fields.
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut stack,
    ) {
        Err(httparse::Error::TooManyHeaders) => slots.parse_with(buf, f),
        status => finish_parse(status, &response, f),
    }
}

fn finish_parse<R>(
    status: httparse::Result<usize>,
    response: &httparse::Response<'_, '_>,
    f: impl FnOnce(&httparse::Response<'_, '_>) -> R,
) -> Result<Option<(usize, R)>, ProtoError> {
    if response.code.is_some_and(|c| !(100..=599).contains(&c)) {
        return Err(STATUS_RANGE);
    }
    match status {
        Ok(httparse::Status::Complete(len)) => match (response.version, response.code) {
            (Some(_), Some(_)) => Ok(Some((len, f(response)))),
            _ => Err(ProtoError::Malformed("no status line")),
        },
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(ProtoError::TooManyHeaders),
        Err(e) => Err(ProtoError::Malformed(httparse_error_text(e))),
    }
}

/// A three-digit status code outside 100-599.
const STATUS_RANGE: ProtoError = ProtoError::Malformed("status code outside 100-599");

/// The incremental check of a response head that arrives in pieces: httparse's response
/// grammar (its default `ParserConfig`: no obs-fold, no space before a colon, single spaces in
/// the status line) run one byte at a time and resumable, plus the status range and the field
/// count. It gives, for every prefix, the verdict httparse gives on that prefix, so a head is
/// rejected at the byte that makes it hopeless however it was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct HeadLexer {
    at: Lex,
    /// Bytes of the head checked so far.
    pos: usize,
    /// Header fields completed so far.
    fields: usize,
}

/// Where [`HeadLexer`] is in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Lex {
    /// Before the status line, where empty lines are skipped.
    #[default]
    Start,
    /// A CR before the status line: LF must follow.
    StartCr,
    /// This many bytes of `HTTP/1.` matched; at 7 the minor version (0 or 1) is next.
    Version(u8),
    /// The single space after the version.
    VersionSpace,
    /// This many status-code digits read, and their value.
    Code { digits: u8, value: u16 },
    /// After the code: a space and a reason, or the end of the line.
    AfterCode,
    /// A CR right after the code: LF must follow.
    AfterCodeCr,
    /// Inside the reason phrase.
    Reason,
    /// A CR after the reason: LF must follow.
    ReasonCr,
    /// At the start of a header line or of the empty line that ends the head.
    LineStart,
    /// A CR at the start of a line: LF must follow, and the head ends.
    LineStartCr,
    /// Inside a header name.
    Name,
    /// After the colon, before the value.
    ValueWs,
    /// Inside a value.
    Value,
    /// A CR after a value: LF must follow.
    ValueCr,
}

impl HeadLexer {
    /// Check `head[self.pos..]`. `Ok(Some(len))`: the head ends after `len` bytes;
    /// `Ok(None)`: valid so far.
    fn feed(&mut self, head: &[u8]) -> Result<Option<usize>, ProtoError> {
        const HTTP1: &[u8; 7] = b"HTTP/1.";
        let version = || ProtoError::Malformed(httparse_error_text(httparse::Error::Version));
        let status = || ProtoError::Malformed(httparse_error_text(httparse::Error::Status));
        let name = || ProtoError::Malformed(httparse_error_text(httparse::Error::HeaderName));
        let value = || ProtoError::Malformed(httparse_error_text(httparse::Error::HeaderValue));
        let newline = || ProtoError::Malformed(httparse_error_text(httparse::Error::NewLine));
        while let Some(&b) = head.get(self.pos) {
            self.pos += 1;
            self.at = match (self.at, b) {
                (Lex::Start, b'\r') => Lex::StartCr,
                (Lex::Start, b'\n') | (Lex::StartCr, b'\n') => Lex::Start,
                (Lex::StartCr, _) => return Err(newline()),
                (Lex::Start, b) if b == HTTP1[0] => Lex::Version(1),
                (Lex::Start, _) => return Err(version()),
                (Lex::Version(n @ 0..=6), b) if b == HTTP1[usize::from(n)] => Lex::Version(n + 1),
                (Lex::Version(7), b'0' | b'1') => Lex::VersionSpace,
                (Lex::Version(_), _) => return Err(version()),
                (Lex::VersionSpace, b' ') => Lex::Code {
                    digits: 0,
                    value: 0,
                },
                (Lex::VersionSpace, _) => return Err(version()),
                (Lex::Code { digits, value }, b'0'..=b'9') => {
                    let value = value * 10 + u16::from(b - b'0');
                    if digits < 2 {
                        Lex::Code {
                            digits: digits + 1,
                            value,
                        }
                    } else if (100..=599).contains(&value) {
                        Lex::AfterCode
                    } else {
                        return Err(STATUS_RANGE);
                    }
                }
                (Lex::Code { .. }, _) => return Err(status()),
                (Lex::AfterCode, b' ') => Lex::Reason,
                (Lex::AfterCode, b'\r') => Lex::AfterCodeCr,
                (Lex::AfterCode, b'\n') | (Lex::AfterCodeCr, b'\n') => Lex::LineStart,
                (Lex::AfterCode, _) | (Lex::AfterCodeCr, _) => return Err(status()),
                (Lex::Reason, b'\r') => Lex::ReasonCr,
                (Lex::Reason, b'\n') | (Lex::ReasonCr, b'\n') => Lex::LineStart,
                (Lex::Reason, b'\t' | b' '..=b'~' | 0x80..=0xff) => Lex::Reason,
                (Lex::Reason, _) | (Lex::ReasonCr, _) => return Err(status()),
                (Lex::LineStart, b'\r') => Lex::LineStartCr,
                (Lex::LineStart, b'\n') | (Lex::LineStartCr, b'\n') => return Ok(Some(self.pos)),
                (Lex::LineStartCr, _) => return Err(newline()),
                (Lex::LineStart, b) | (Lex::Name, b) if is_tchar(b) => Lex::Name,
                (Lex::Name, b':') => Lex::ValueWs,
                (Lex::LineStart, _) | (Lex::Name, _) => return Err(name()),
                (Lex::ValueWs, b' ' | b'\t') => Lex::ValueWs,
                (Lex::ValueWs | Lex::Value, b'\r') => Lex::ValueCr,
                (Lex::ValueWs | Lex::Value | Lex::ValueCr, b'\n') => {
                    self.fields += 1;
                    if self.fields > MAX_HEADERS {
                        return Err(ProtoError::TooManyHeaders);
                    }
                    Lex::LineStart
                }
                (Lex::ValueWs | Lex::Value, b'\t' | b' '..=b'~' | 0x80..=0xff) => Lex::Value,
                (Lex::ValueWs | Lex::Value | Lex::ValueCr, _) => return Err(value()),
            };
        }
        Ok(None)
    }
}

/// Non-empty, OWS-trimmed elements of a comma-separated field value.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Merge one Content-Length field value (possibly a list of repeats, RFC 9110 §8.6) into what
/// earlier fields said. Invalid beats conflicting: a bad number is reported as such.
fn fold_content_length(so_far: ContentLength, value: &[u8]) -> ContentLength {
    let mut state = so_far;
    for element in value.split(|&b| b == b',') {
        let Some(n) = parse_decimal(trim_ows(element)) else {
            return ContentLength::Invalid;
        };
        state = match state {
            ContentLength::Absent => ContentLength::Value(n),
            ContentLength::Value(m) if m == n => ContentLength::Value(m),
            ContentLength::Value(_) | ContentLength::Conflicting => ContentLength::Conflicting,
            ContentLength::Invalid => ContentLength::Invalid,
        };
    }
    state
}

/// What an httparse error means, for [`ProtoError::Malformed`].
pub(crate) fn httparse_error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// End offset of the empty line that closes a head (`LF LF` or `LF CR LF`, so bare-LF heads,
    /// which httparse accepts, are found too), searching from `from`.
    fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
        let mut at = from;
        while let Some(lf) = find_byte(buf, at, b'\n') {
            match &buf[lf + 1..] {
                [b'\n', ..] => return Some(lf + 2),
                [b'\r', b'\n', ..] => return Some(lf + 3),
                _ => at = lf + 1,
            }
        }
        None
    }

    // -----------------------------------------------------------------------------------------
    // Feeding harness: exactly what the engine does (append, decode in a loop, drop consumed).
    // -----------------------------------------------------------------------------------------

    /// What feeding a byte stream produced.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Outcome {
        responses: Vec<ResponseInfo>,
        error: Option<ProtoError>,
        /// Bytes the decoder left unconsumed.
        leftover: Vec<u8>,
    }

    /// Feed `chunks` one after the other; `heads[i]` says whether response i answers a HEAD.
    fn feed<'a>(
        dec: &mut ResponseDecoder,
        chunks: impl IntoIterator<Item = &'a [u8]>,
        heads: &[bool],
    ) -> Outcome {
        let mut pending = Vec::new();
        let mut responses = Vec::new();
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            loop {
                assert!(responses.len() < 10_000, "decoder completes without input");
                let head = heads.get(responses.len()).copied().unwrap_or(false);
                match dec.decode(&pending, head) {
                    Ok((n, progress)) => {
                        assert!(n <= pending.len(), "consumed {n} of {}", pending.len());
                        pending.drain(..n);
                        match progress {
                            Progress::Complete(info) => responses.push(info),
                            Progress::Partial => {
                                // Partial means "needs more input": the same bytes again must
                                // consume nothing and change nothing.
                                assert_eq!(dec.decode(&pending, head), Ok((0, Progress::Partial)));
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        return Outcome {
                            responses,
                            error: Some(e),
                            leftover: pending,
                        }
                    }
                }
            }
        }
        Outcome {
            responses,
            error: None,
            leftover: pending,
        }
    }

    fn whole(input: &[u8]) -> Vec<&[u8]> {
        vec![input]
    }

    fn bytewise(input: &[u8]) -> Vec<&[u8]> {
        input.chunks(1).collect()
    }

    /// How a case's byte stream ends.
    #[derive(Debug, Clone)]
    enum End {
        /// Between responses: nothing left over, `finish_eof` reports a clean close.
        Idle,
        /// A close-delimited body is in progress; `finish_eof` completes it with this info.
        CloseDelimited(ResponseInfo),
        /// Framing fails with this error.
        Error(ProtoError),
    }

    /// Bytes that follow a case's input in the "trailing bytes" run: the start of another
    /// response, which must stay unconsumed.
    const TRAILING: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Le";

    fn info(status: u16, keep_alive: bool, body_len: u64) -> ResponseInfo {
        ResponseInfo {
            status,
            keep_alive,
            body_len,
        }
    }

    /// Check one decoder case whole, byte by byte, with trailing bytes, and (for short inputs)
    /// split in two at every point.
    fn check(name: &str, input: &[u8], heads: &[bool], expect: &[ResponseInfo], end: End) {
        let mut feeds: Vec<(String, Vec<&[u8]>)> = vec![
            ("whole".into(), whole(input)),
            ("bytewise".into(), bytewise(input)),
        ];
        if input.len() <= 2048 {
            for split in 1..input.len() {
                feeds.push((
                    format!("split at {split}"),
                    vec![&input[..split], &input[split..]],
                ));
            }
        }
        for (how, chunks) in feeds {
            let ctx = format!("case {name:?}, fed {how}");
            let mut dec = ResponseDecoder::new();
            let out = feed(&mut dec, chunks, heads);
            assert_eq!(out.responses, expect, "{ctx}");
            match &end {
                End::Idle => {
                    assert_eq!(out.error, None, "{ctx}");
                    assert!(
                        out.leftover.is_empty(),
                        "{ctx}: leftover {:?}",
                        out.leftover
                    );
                    assert_eq!(dec.finish_eof(&out.leftover), Ok(None), "{ctx}");
                }
                End::CloseDelimited(last) => {
                    assert_eq!(out.error, None, "{ctx}");
                    assert_eq!(dec.finish_eof(&out.leftover), Ok(Some(*last)), "{ctx}");
                }
                End::Error(e) => {
                    assert_eq!(out.error.as_ref(), Some(e), "{ctx}");
                    // The decoder stays failed until reset.
                    assert_eq!(
                        dec.decode(b"HTTP/1.1 200 OK\r\n\r\n", false),
                        Err(e.clone())
                    );
                }
            }
        }

        let mut with_trailing = input.to_vec();
        with_trailing.extend_from_slice(TRAILING);
        for (how, chunks) in [
            ("whole + trailing", whole(&with_trailing)),
            ("bytewise + trailing", bytewise(&with_trailing)),
        ] {
            let ctx = format!("case {name:?}, fed {how}");
            let mut dec = ResponseDecoder::new();
            let out = feed(&mut dec, chunks, heads);
            assert_eq!(out.responses, expect, "{ctx}");
            match &end {
                End::Idle => {
                    assert_eq!(out.error, None, "{ctx}");
                    assert_eq!(out.leftover, TRAILING, "{ctx}");
                    assert_eq!(dec.finish_eof(&out.leftover), Err(ProtoError::Truncated));
                }
                End::CloseDelimited(last) => {
                    // Everything up to the close is body, the trailing bytes included.
                    let mut last = *last;
                    last.body_len += TRAILING.len() as u64;
                    assert_eq!(out.error, None, "{ctx}");
                    assert_eq!(dec.finish_eof(&out.leftover), Ok(Some(last)), "{ctx}");
                }
                End::Error(e) => assert_eq!(out.error.as_ref(), Some(e), "{ctx}"),
            }
        }
    }

    fn ok_case(name: &str, input: &[u8], expect: &[ResponseInfo]) {
        check(name, input, &[], expect, End::Idle);
    }

    fn err_case(name: &str, input: &[u8], e: ProtoError) {
        check(name, input, &[], &[], End::Error(e));
    }

    // -----------------------------------------------------------------------------------------
    // Fixed-length bodies and heads
    // -----------------------------------------------------------------------------------------

    #[test]
    fn content_length_body() {
        ok_case(
            "cl",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
            &[info(200, true, 5)],
        );
        ok_case(
            "cl zero",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            &[info(404, true, 0)],
        );
        ok_case(
            "cl with ows and equal duplicates",
            b"HTTP/1.1 200 OK\r\nContent-Length:  3 \r\ncontent-length: 3\r\nCONTENT-LENGTH: 3, 3\r\n\r\nabc",
            &[info(200, true, 3)],
        );
        ok_case(
            "no reason phrase",
            b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
            &[info(200, true, 1)],
        );
    }

    #[test]
    fn bare_lf_heads_are_accepted() {
        ok_case(
            "bare lf",
            b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
            &[info(200, true, 2)],
        );
        ok_case(
            "mixed lf then crlf",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nhi",
            &[info(200, true, 2)],
        );
    }

    #[test]
    fn empty_lines_before_a_status_line_are_skipped() {
        ok_case(
            "leading blank lines",
            b"\r\n\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
            &[info(200, true, 1)],
        );
        ok_case(
            "stray crlf between responses",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            &[info(200, true, 1), info(201, true, 0)],
        );
    }

    #[test]
    fn large_body_is_consumed_as_it_arrives() {
        let mut input = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        let head_len = input.len();
        input.extend(std::iter::repeat_n(b'z', 100_000));
        let mut dec = ResponseDecoder::new();
        // The head and the first body bytes go in one call: all of them are consumed.
        assert_eq!(
            dec.decode(&input[..head_len + 10], false),
            Ok((head_len + 10, Progress::Partial))
        );
        for piece in input[head_len + 10..input.len() - 1].chunks(4096) {
            assert_eq!(
                dec.decode(piece, false),
                Ok((piece.len(), Progress::Partial))
            );
        }
        assert_eq!(
            dec.decode(&input[input.len() - 1..], false),
            Ok((1, Progress::Complete(info(200, true, 100_000))))
        );
        check(
            "large body",
            &input,
            &[],
            &[info(200, true, 100_000)],
            End::Idle,
        );
    }

    #[test]
    fn head_bytes_are_not_consumed_until_the_head_is_complete() {
        let head = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n";
        let mut dec = ResponseDecoder::new();
        for end in 1..head.len() {
            assert_eq!(dec.decode(&head[..end], false), Ok((0, Progress::Partial)));
        }
        assert_eq!(
            dec.decode(head, false),
            Ok((head.len(), Progress::Complete(info(200, true, 0))))
        );
    }

    #[test]
    fn head_search_resumes_where_it_stopped() {
        // Byte-by-byte feeding stays O(n) because each call resumes the check of the head where
        // the previous call stopped instead of at the start of the head.
        let head = format!(
            "HTTP/1.1 200 OK\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
            "p".repeat(5000)
        );
        let head = head.as_bytes();
        let mut dec = ResponseDecoder::new();
        for end in 1..head.len() {
            assert_eq!(dec.decode(&head[..end], false), Ok((0, Progress::Partial)));
            match dec.state {
                State::Head(HeadScan {
                    lexer: Some(lexer), ..
                }) => assert_eq!(lexer.pos, end, "after {end} bytes"),
                ref other => panic!("after {end} bytes: unexpected state {other:?}"),
            }
        }
        assert!(matches!(
            dec.decode(head, false),
            Ok((n, Progress::Complete(_))) if n == head.len()
        ));
    }

    // -----------------------------------------------------------------------------------------
    // Chunked bodies
    // -----------------------------------------------------------------------------------------

    #[test]
    fn chunked_body() {
        ok_case(
            "chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            &[info(200, true, 11)],
        );
        ok_case(
            "chunked upper hex, leading zeros, size ows",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n00A \r\n0123456789\r\n0\r\n\r\n",
            &[info(200, true, 10)],
        );
        ok_case(
            "empty chunked body",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[info(200, true, 0)],
        );
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let mut input =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Expires\r\n\r\n1a;foo=bar\r\n"
                .to_vec();
        input.extend_from_slice(b"abcdefghijklmnopqrstuvwxyz\r\n");
        input.extend_from_slice(b"3 ; name=\"quoted;value\"\r\nxyz\r\n");
        input.extend_from_slice(
            b"0;last\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\nX-Sum:\t1\r\n\r\n",
        );
        ok_case("extensions and trailers", &input, &[info(200, true, 29)]);
        ok_case(
            "trailer lines with bare lf",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nA: b\n\n",
            &[info(200, true, 1)],
        );
    }

    #[test]
    fn transfer_encoding_rules() {
        ok_case(
            "chunked overrides content-length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            &[info(200, true, 2)],
        );
        ok_case(
            "chunked overrides even an invalid content-length",
            b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            &[info(200, true, 2)],
        );
        ok_case(
            "gzip then chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            &[info(200, true, 2)],
        );
        ok_case(
            "codings across two fields",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            &[info(200, true, 2)],
        );
        for (name, input) in [
            (
                "te not ending in chunked",
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 2\r\n\r\nabcd"[..],
            ),
            (
                "te gzip only",
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabcd"[..],
            ),
            (
                "te chunked on http/1.0 (RFC 9112 6.1: framing faulty)",
                &b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\nabcd"[..],
            ),
        ] {
            check(
                name,
                input,
                &[],
                &[],
                End::CloseDelimited(info(200, false, 4)),
            );
        }
    }

    #[test]
    fn chunked_errors() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let bad = |body: &str, e: ProtoError| {
            err_case(body, format!("{head}{body}").as_bytes(), e);
        };
        let missing_crlf = ProtoError::InvalidChunk("chunk data is not followed by CRLF");
        bad("5\r\nhelloXY", missing_crlf.clone());
        bad("5\r\nhello\rX", missing_crlf.clone());
        bad("5\r\nhello\n", missing_crlf);
        let not_hex = ProtoError::InvalidChunk("chunk size is not a hex number");
        bad("zz\r\n", not_hex.clone());
        bad("\r\n", not_hex.clone());
        bad(";ext\r\n", not_hex.clone());
        bad("-1\r\n", not_hex);
        let bad_line = ProtoError::InvalidChunk("bad chunk-size line");
        bad("5x\r\n", bad_line.clone());
        bad("5\n", bad_line.clone());
        bad("5;a\nb\r\n", bad_line.clone());
        bad("5\rx\n", bad_line.clone());
        bad("10000000000000000\r\n", bad_line);
        bad(
            &format!("1;{}\r\n", "e".repeat(CHUNK_LINE_MAX)),
            ProtoError::ChunkLineTooLong,
        );
        bad("0\r\nno colon here\r\n\r\n", ProtoError::InvalidTrailer);
        bad("0\r\n folded: x\r\n\r\n", ProtoError::InvalidTrailer);
        bad("0\r\nA: b\x01c\r\n\r\n", ProtoError::InvalidTrailer);
        let many_trailers = "X-T: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n"
            .repeat(TRAILERS_MAX / 64 + 1);
        bad(
            &format!("0\r\n{many_trailers}\r\n"),
            ProtoError::TrailersTooLarge,
        );
    }

    #[test]
    fn chunk_line_and_trailer_limits_are_inclusive() {
        // A size line of exactly 4 KiB (CRLF included) is fine.
        let ext = "e".repeat(CHUNK_LINE_MAX - "1;\r\n".len());
        let input = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{ext}\r\nx\r\n0\r\n\r\n"
        );
        ok_case("4 KiB size line", input.as_bytes(), &[info(200, true, 1)]);
        // Trailer lines of exactly 64 KiB in total, then the empty line, are too much only by
        // the empty line: one byte less of trailer fits.
        let line = |len: usize| format!("X: {}\r\n", "v".repeat(len - 5));
        let fits = format!("{}{}", line(TRAILERS_MAX / 2), line(TRAILERS_MAX / 2 - 2));
        let input = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{fits}\r\n");
        ok_case(
            "trailers at the limit",
            input.as_bytes(),
            &[info(200, true, 0)],
        );
        let over = format!("{}{}", line(TRAILERS_MAX / 2), line(TRAILERS_MAX / 2 - 1));
        let input = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{over}\r\n");
        err_case(
            "trailers over the limit",
            input.as_bytes(),
            ProtoError::TrailersTooLarge,
        );
    }

    // -----------------------------------------------------------------------------------------
    // No-body responses, interim responses, upgrades
    // -----------------------------------------------------------------------------------------

    #[test]
    fn head_response_has_no_body() {
        for (name, input) in [
            (
                "head with content-length",
                &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"[..],
            ),
            (
                "head with chunked",
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            ),
            ("head without framing", &b"HTTP/1.1 200 OK\r\n\r\n"[..]),
            (
                "head with invalid content-length",
                &b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..],
            ),
        ] {
            check(name, input, &[true], &[info(200, true, 0)], End::Idle);
        }
    }

    #[test]
    fn no_body_statuses() {
        ok_case(
            "204 with content-length",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
            &[info(204, true, 0)],
        );
        ok_case(
            "304 with content-length",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 512\r\n\r\n",
            &[info(304, true, 0)],
        );
        ok_case(
            "304 with chunked",
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            &[info(304, true, 0)],
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        ok_case(
            "100 then 103 then 200",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            &[info(200, true, 2)],
        );
        ok_case(
            "102 with a bogus content-length",
            b"HTTP/1.1 102 Processing\r\nContent-Length: 9\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            &[info(201, true, 0)],
        );
        check(
            "100 before a HEAD response",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            &[true],
            &[info(200, true, 0)],
            End::Idle,
        );
        // The interim head alone is consumed, so its bytes never pile up in the caller.
        let mut dec = ResponseDecoder::new();
        assert_eq!(
            dec.decode(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", false),
            Ok((25, Progress::Partial))
        );
    }

    #[test]
    fn switching_protocols_completes_without_keep_alive() {
        // The bytes after a 101 belong to the new protocol: the trailing run checks they stay.
        ok_case(
            "101",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            &[info(101, false, 0)],
        );
    }

    // -----------------------------------------------------------------------------------------
    // Close-delimited bodies and end of stream
    // -----------------------------------------------------------------------------------------

    #[test]
    fn close_delimited_body_ends_at_eof() {
        check(
            "no framing headers",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nevery byte until close",
            &[],
            &[],
            End::CloseDelimited(info(200, false, 22)),
        );
        check(
            "empty close-delimited body",
            b"HTTP/1.0 200 OK\r\n\r\n",
            &[],
            &[],
            End::CloseDelimited(info(200, false, 0)),
        );
        // Bytes the caller still holds at EOF count as body.
        let mut dec = ResponseDecoder::new();
        assert_eq!(
            dec.decode(b"HTTP/1.1 200 OK\r\n\r\nabc", false),
            Ok((22, Progress::Partial))
        );
        assert_eq!(dec.finish_eof(b"de"), Ok(Some(info(200, false, 5))));
        // finish_eof leaves the decoder ready for a new connection.
        assert_eq!(dec.finish_eof(&[]), Ok(None));
    }

    #[test]
    fn eof_in_the_middle_of_a_response_is_truncated() {
        let cases: [(&str, &[u8]); 6] = [
            (
                "half a fixed body",
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
            ),
            ("half a head", b"HTTP/1.1 200 OK\r\nContent-Le"),
            ("first byte of a head", b"H"),
            (
                "inside a chunk",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
            ),
            (
                "inside trailers",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n",
            ),
            (
                "after an interim response",
                b"HTTP/1.1 100 Continue\r\n\r\n",
            ),
        ];
        for (name, input) in cases {
            for chunks in [whole(input), bytewise(input)] {
                let mut dec = ResponseDecoder::new();
                let out = feed(&mut dec, chunks, &[]);
                assert_eq!(out.error, None, "{name}");
                assert!(out.responses.is_empty(), "{name}");
                assert_eq!(
                    dec.finish_eof(&out.leftover),
                    Err(ProtoError::Truncated),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn eof_when_idle_is_clean() {
        let mut dec = ResponseDecoder::new();
        assert_eq!(dec.finish_eof(&[]), Ok(None));
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(
            dec.decode(response, false),
            Ok((response.len(), Progress::Complete(info(200, true, 1))))
        );
        assert_eq!(dec.finish_eof(&[]), Ok(None));
        assert_eq!(dec.finish_eof(b"\r\n"), Ok(None));
    }

    #[test]
    fn finish_eof_after_an_error_repeats_it_and_resets() {
        let mut dec = ResponseDecoder::new();
        let e = dec.decode(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false);
        assert_eq!(e, Err(ProtoError::InvalidContentLength));
        assert_eq!(dec.finish_eof(&[]), Err(ProtoError::InvalidContentLength));
        assert_eq!(dec.finish_eof(&[]), Ok(None));
    }

    #[test]
    fn reset_forgets_a_partial_response() {
        let mut dec = ResponseDecoder::new();
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert_eq!(
            dec.decode(partial, false),
            Ok((partial.len(), Progress::Partial))
        );
        dec.reset();
        let next = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            dec.decode(next, false),
            Ok((next.len(), Progress::Complete(info(202, true, 0))))
        );
        // Reset also clears a failure.
        assert!(dec.decode(b"garbage\r\n\r\n", false).is_err());
        dec.reset();
        assert_eq!(
            dec.decode(next, false),
            Ok((next.len(), Progress::Complete(info(202, true, 0))))
        );
    }

    // -----------------------------------------------------------------------------------------
    // keep-alive
    // -----------------------------------------------------------------------------------------

    #[test]
    fn keep_alive_rules() {
        let cases: [(&str, &str, bool); 12] = [
            ("HTTP/1.1", "", true),
            ("HTTP/1.1", "Connection: close\r\n", false),
            ("HTTP/1.1", "Connection: keep-alive, close\r\n", false),
            ("HTTP/1.1", "connection: Upgrade,CLOSE\r\n", false),
            (
                "HTTP/1.1",
                "Connection: keep-alive\r\nConnection: close\r\n",
                false,
            ),
            ("HTTP/1.1", "Connection: closed, xclose\r\n", true),
            ("HTTP/1.1", "Connection: Keep-Alive\r\n", true),
            ("HTTP/1.0", "", false),
            ("HTTP/1.0", "Connection: keep-alive\r\n", true),
            ("HTTP/1.0", "Connection: Keep-Alive, foo\r\n", true),
            ("HTTP/1.0", "Connection: keep-alive, close\r\n", false),
            ("HTTP/1.0", "Keep-Alive: timeout=5\r\n", false),
        ];
        for (version, fields, keep_alive) in cases {
            let input = format!("{version} 200 OK\r\n{fields}Content-Length: 2\r\n\r\nok");
            ok_case(
                &format!("{version} {fields:?}"),
                input.as_bytes(),
                &[info(200, keep_alive, 2)],
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Malformed heads
    // -----------------------------------------------------------------------------------------

    #[test]
    fn malformed_heads() {
        err_case(
            "garbage",
            b"garbage\r\n\r\n",
            ProtoError::Malformed("invalid HTTP version"),
        );
        err_case(
            "http/2 status line",
            b"HTTP/2 200 OK\r\n\r\n",
            ProtoError::Malformed("invalid HTTP version"),
        );
        err_case(
            "lowercase version",
            b"http/1.1 200 OK\r\n\r\n",
            ProtoError::Malformed("invalid HTTP version"),
        );
        err_case(
            "bad status code",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            ProtoError::Malformed("invalid status code"),
        );
        err_case(
            "status below 100",
            b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
            ProtoError::Malformed("status code outside 100-599"),
        );
        err_case(
            "status above 599",
            b"HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n",
            ProtoError::Malformed("status code outside 100-599"),
        );
        err_case(
            "space in header name",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            ProtoError::Malformed("invalid header name"),
        );
        err_case(
            "control byte in header value",
            b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
            ProtoError::Malformed("invalid header value"),
        );
    }

    #[test]
    fn bad_content_length() {
        for value in [
            "abc",
            "-1",
            "+5",
            "1 2",
            "",
            "5,",
            "0x10",
            "99999999999999999999",
        ] {
            let input = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n");
            err_case(value, input.as_bytes(), ProtoError::InvalidContentLength);
        }
        for fields in [
            "Content-Length: 3\r\nContent-Length: 4\r\n",
            "Content-Length: 3, 4\r\n",
            "Content-Length: 3\r\nContent-Length: 3, 30\r\n",
        ] {
            let input = format!("HTTP/1.1 200 OK\r\n{fields}\r\nabcd");
            err_case(
                fields,
                input.as_bytes(),
                ProtoError::ConflictingContentLength,
            );
        }
    }

    /// A head with `fields` header fields (the last one `Content-Length: 0`).
    fn head_with_fields(fields: usize) -> String {
        let mut s = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..fields - 1 {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s
    }

    #[test]
    fn responses_with_many_header_fields_frame() {
        // Regression (issue 7, point 3): 85 fields failed as `protocol` because the header
        // array httparse fills had 64 slots.
        for fields in [64, 65, 85, 256, 1000, 1024] {
            ok_case(
                &format!("{fields} fields"),
                head_with_fields(fields).as_bytes(),
                &[info(200, true, 0)],
            );
        }
        err_case(
            "1025 fields",
            head_with_fields(1025).as_bytes(),
            ProtoError::TooManyHeaders,
        );
        // The reason names the limit.
        assert_eq!(
            ProtoError::TooManyHeaders.to_string(),
            "response head has more than 1024 header fields"
        );
        // Past the limit the error comes as soon as field 1025 is complete, before the head
        // ends, whole or byte by byte.
        let over = head_with_fields(1100);
        let cut = over.find("X-1024: v\r\n").expect("field 1025") + "X-1024: v\r\n".len();
        err_case(
            "1025 complete fields, head unfinished",
            &over.as_bytes()[..cut],
            ProtoError::TooManyHeaders,
        );
        let mut dec = ResponseDecoder::new();
        assert_eq!(
            dec.decode(&over.as_bytes()[..cut - 1], false),
            Ok((0, Progress::Partial))
        );
    }

    #[test]
    fn many_header_fields_reuse_one_buffer() {
        // The heap slots for heads past the stack array are allocated once per decoder and
        // reused, so a server that always sends many fields costs no allocation per response.
        let head = head_with_fields(300);
        let mut dec = ResponseDecoder::new();
        assert!(matches!(
            dec.decode(head.as_bytes(), false),
            Ok((_, Progress::Complete(_)))
        ));
        let (ptr, cap) = (dec.slots.spare.as_ptr(), dec.slots.spare.capacity());
        assert!(cap >= 300, "{cap}");
        for _ in 0..3 {
            assert!(matches!(
                dec.decode(head.as_bytes(), false),
                Ok((_, Progress::Complete(_)))
            ));
            assert_eq!(
                (dec.slots.spare.as_ptr(), dec.slots.spare.capacity()),
                (ptr, cap)
            );
        }
        dec.reset();
        assert_eq!(dec.slots.spare.capacity(), cap, "reset keeps the slots");
    }

    #[test]
    fn head_size_limit() {
        // A head of exactly HEAD_MAX bytes is accepted; one byte more is not.
        let head = |len: usize| {
            let fixed = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: \r\n\r\n".len();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: {}\r\n\r\n",
                "p".repeat(len - fixed)
            )
        };
        assert_eq!(head(HEAD_MAX).len(), HEAD_MAX);
        ok_case(
            "head at limit",
            head(HEAD_MAX).as_bytes(),
            &[info(200, true, 0)],
        );
        err_case(
            "head over limit",
            head(HEAD_MAX + 1).as_bytes(),
            ProtoError::HeadTooLarge,
        );
        let long_field = format!("X: {}\r\n", "y".repeat(100));
        err_case(
            "head never ends",
            format!("HTTP/1.1 200 OK\r\n{}", long_field.repeat(700)).as_bytes(),
            ProtoError::HeadTooLarge,
        );
        err_case(
            "endless empty lines",
            "\r\n".repeat(HEAD_MAX / 2 + 1).as_bytes(),
            ProtoError::HeadTooLarge,
        );
    }

    // -----------------------------------------------------------------------------------------
    // The error never depends on how the bytes were split (issue 7, point 4)
    // -----------------------------------------------------------------------------------------

    fn version() -> ProtoError {
        ProtoError::Malformed("invalid HTTP version")
    }
    fn status() -> ProtoError {
        ProtoError::Malformed("invalid status code")
    }
    fn range() -> ProtoError {
        ProtoError::Malformed("status code outside 100-599")
    }
    fn name() -> ProtoError {
        ProtoError::Malformed("invalid header name")
    }
    fn value() -> ProtoError {
        ProtoError::Malformed("invalid header value")
    }
    fn newline() -> ProtoError {
        ProtoError::Malformed("invalid line ending")
    }

    /// Prefixes that no byte can turn into a valid response, with the error they must give.
    fn hopeless_prefixes() -> Vec<(&'static str, &'static [u8], ProtoError)> {
        let not_hex = ProtoError::InvalidChunk("chunk size is not a hex number");
        let bad_line = ProtoError::InvalidChunk("bad chunk-size line");
        vec![
            ("HX", b"HX", version()),
            ("garbage", b"garbage", version()),
            ("HTTP/2", b"HTTP/2 200", version()),
            ("HTTP/1.2", b"HTTP/1.2 200 OK", version()),
            ("lowercase", b"http/1.1", version()),
            ("no space after the version", b"HTTP/1.1x", version()),
            ("two spaces after the version", b"HTTP/1.1  200", status()),
            ("letter in the code", b"HTTP/1.1 2x", status()),
            ("code below 100", b"HTTP/1.1 099", range()),
            ("code above 599", b"HTTP/1.1 600 Nope", range()),
            ("code then a letter", b"HTTP/1.1 200x", status()),
            (
                "control byte in the reason",
                b"HTTP/1.1 200 O\x01",
                status(),
            ),
            (
                "CR without LF after the reason",
                b"HTTP/1.1 200 OK\rX",
                status(),
            ),
            ("CR without LF after the code", b"HTTP/1.1 200\rX", status()),
            (
                "space in a header name",
                b"HTTP/1.1 200 OK\r\nBad Name",
                name(),
            ),
            (
                "header line without a colon",
                b"HTTP/1.1 200 OK\r\nNoColon\r\n",
                name(),
            ),
            (
                "folded header line",
                b"HTTP/1.1 200 OK\r\nA: b\r\n c",
                name(),
            ),
            (
                "control byte in a value",
                b"HTTP/1.1 200 OK\r\nX: a\x01",
                value(),
            ),
            (
                "control byte opening a value",
                b"HTTP/1.1 200 OK\r\nX:\x7f",
                value(),
            ),
            (
                "CR without LF in a value",
                b"HTTP/1.1 200 OK\r\nX: a\rb",
                value(),
            ),
            (
                "CR without LF ending the head",
                b"HTTP/1.1 200 OK\r\n\rX",
                newline(),
            ),
            ("CR without LF before the status line", b"\rX", newline()),
            (
                "code out of range before a bad field",
                b"HTTP/1.1 700 X\r\nBad Name: y\r\n\r\n",
                range(),
            ),
            (
                "chunk size not hex",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz",
                not_hex,
            ),
            (
                "chunk size then junk",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x",
                bad_line.clone(),
            ),
            (
                "chunk size with 17 digits",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000",
                bad_line.clone(),
            ),
            (
                "CR without LF in a chunk-size line",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e\rx",
                bad_line,
            ),
            (
                "trailer name with a space",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Name",
                ProtoError::InvalidTrailer,
            ),
            (
                "control byte in a trailer value",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\x01",
                ProtoError::InvalidTrailer,
            ),
            (
                "CR without LF in a trailer",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\rc",
                ProtoError::InvalidTrailer,
            ),
        ]
    }

    #[test]
    fn a_malformed_prefix_fails_at_once_whole_or_byte_by_byte() {
        // Regression (issue 7, point 4): "HX" whole was `protocol`, but "H" then "X" was
        // "not yet" and the EOF that followed made it `eof_mid_response` (or, with no EOF, a
        // read timeout). A prefix that cannot start a valid response fails as soon as it is
        // seen, whatever the split (`check` feeds it whole, byte by byte, split at every
        // point, and followed by more bytes).
        for (name, input, e) in hopeless_prefixes() {
            err_case(name, input, e);
        }
    }

    #[test]
    fn eof_classifies_by_what_was_received() {
        // Bytes handed over only at EOF are judged like any others: a prefix that could never
        // become a response is a protocol error, one that could is a truncated response.
        for (name, input, e) in hopeless_prefixes() {
            let mut dec = ResponseDecoder::new();
            let mut split = feed(&mut dec, bytewise(input), &[]);
            if split.error.is_none() {
                split.error = dec.finish_eof(&split.leftover).err();
            }
            assert_eq!(split.error, Some(e.clone()), "{name}, fed byte by byte");
            assert_eq!(
                ResponseDecoder::new().finish_eof(input).err(),
                Some(e),
                "{name}, only at EOF"
            );
        }
        // Empty lines are nothing; a CR that no LF follows is not an empty line.
        assert_eq!(ResponseDecoder::new().finish_eof(b"\r\n\n\r"), Ok(None));
        assert_eq!(
            ResponseDecoder::new().finish_eof(b"\r\n\r\r"),
            Err(newline())
        );
        for valid in [
            &b"H"[..],
            b"HTTP/1.",
            b"HTTP/1.1 2",
            b"HTTP/1.1 200 OK\r",
            b"HTTP/1.1 200 OK\r\nName",
            b"HTTP/1.1 200 OK\r\nName: value\r",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext\r",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r",
        ] {
            assert_eq!(
                ResponseDecoder::new().finish_eof(valid),
                Err(ProtoError::Truncated),
                "{:?}",
                String::from_utf8_lossy(valid)
            );
        }
    }

    #[test]
    fn head_check_agrees_with_httparse_on_every_prefix() {
        // Oracle: for every prefix of valid and damaged heads, the decoder says "error" exactly
        // when httparse (with as many slots as the decoder allows) does, with the same error,
        // and fed byte by byte it says the same as fed whole.
        let mut rng = Rng(0x00DD_BA11);
        let damage: &[u8] = b" \r\n:\t\x01\x7f\x80xH0";
        for round in 0..200 {
            let mut wire = Vec::new();
            gen_response(&mut rng, true, &mut wire);
            let head_end = find_head_end(&wire, 0).unwrap_or(wire.len());
            for _ in 0..rng.below(3) {
                let at = rng.below(head_end);
                wire[at] = *rng.pick(damage);
            }
            wire.truncate(head_end);
            for end in 0..=wire.len() {
                let prefix = &wire[..end];
                let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut slots);
                let oracle = response.parse(prefix);
                let out_of_range = response.code.is_some_and(|c| !(100..=599).contains(&c));
                let ctx = format!("round {round}: {:?}", String::from_utf8_lossy(prefix));
                let mut dec = ResponseDecoder::new();
                let got = feed(&mut dec, whole(prefix), &[]);
                let bytewise_got = feed(&mut ResponseDecoder::new(), bytewise(prefix), &[]);
                assert_eq!(bytewise_got.error, got.error, "{ctx}");
                assert_eq!(bytewise_got.responses, got.responses, "{ctx}");
                match oracle {
                    _ if out_of_range => assert_eq!(got.error, Some(range()), "{ctx}"),
                    Err(e) => assert_eq!(
                        got.error,
                        Some(ProtoError::Malformed(httparse_error_text(e))),
                        "{ctx}"
                    ),
                    Ok(httparse::Status::Partial) => {
                        assert_eq!(got.error, None, "{ctx}");
                        assert!(got.responses.is_empty(), "{ctx}");
                    }
                    // A complete head: framing may still fail (Content-Length), the head may
                    // not (what follows it is another head, judged by another prefix).
                    Ok(httparse::Status::Complete(len)) => {
                        let first = feed(&mut ResponseDecoder::new(), whole(&prefix[..len]), &[]);
                        assert!(
                            !matches!(
                                first.error,
                                Some(ProtoError::Malformed(_) | ProtoError::TooManyHeaders)
                            ),
                            "{ctx}: {:?}",
                            first.error
                        );
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Pipelining
    // -----------------------------------------------------------------------------------------

    #[test]
    fn pipelined_triple_split_at_every_point() {
        let input: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let expect = [info(200, true, 5), info(201, true, 5), info(204, false, 0)];
        // `check` splits at every point too; this also feeds three-way splits around the
        // response boundaries.
        ok_case("pipelined triple", input, &expect);
        for a in 0..=input.len() {
            for b in (a..=input.len()).step_by(7) {
                let mut dec = ResponseDecoder::new();
                let out = feed(&mut dec, [&input[..a], &input[a..b], &input[b..]], &[]);
                assert_eq!(out.responses, expect, "splits at {a}, {b}");
                assert!(out.leftover.is_empty());
                assert_eq!(out.error, None);
            }
        }
    }

    #[test]
    fn pipelined_with_head_and_interim() {
        let input: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        check(
            "HEAD, POST with 100, HEAD",
            input,
            &[true, false, true],
            &[info(200, true, 0), info(200, true, 3), info(200, true, 0)],
            End::Idle,
        );
    }

    // -----------------------------------------------------------------------------------------
    // Oracle: random responses, expectations from an independent httparse-based reading.
    // -----------------------------------------------------------------------------------------

    /// xorshift64*: deterministic, no crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
        fn word(&mut self, len: usize) -> String {
            (0..len)
                .map(|_| *self.pick(b"abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-_") as char)
                .collect()
        }
    }

    /// Append one response (maybe preceded by an interim one) to `wire`; returns whether it
    /// answers a HEAD. Close-delimited bodies are only generated when `last`.
    fn gen_response(rng: &mut Rng, last: bool, wire: &mut Vec<u8>) -> bool {
        if rng.chance(15) {
            let code = *rng.pick(&[100u16, 102, 103]);
            wire.extend_from_slice(format!("HTTP/1.1 {code} Interim\r\n").as_bytes());
            if rng.chance(50) {
                wire.extend_from_slice(b"Link: </a.css>; rel=preload\r\n");
            }
            wire.extend_from_slice(b"\r\n");
        }
        let http10 = rng.chance(20);
        let head_request = rng.chance(15);
        let status = *rng.pick(&[200u16, 201, 204, 206, 301, 304, 404, 500, 503]);
        let no_body = head_request || status == 204 || status == 304;

        let mut fields: Vec<String> = (0..rng.below(8))
            .map(|_| {
                let name = rng.pick(&[
                    "Server",
                    "date",
                    "X-Request-Id",
                    "Cache-Control",
                    "ETag",
                    "vary",
                ]);
                let value_len = rng.below(30);
                format!("{name}: {}", rng.word(value_len))
            })
            .collect();
        let connection = *rng.pick(&[
            "",
            "close",
            "keep-alive",
            "Keep-Alive",
            "upgrade, close",
            "foo, keep-alive",
            "CLOSE",
        ]);
        if !connection.is_empty() {
            fields.push(format!(
                "{}: {connection}",
                rng.pick(&["Connection", "connection"])
            ));
        }

        let mut body = Vec::new();
        if no_body {
            // Framing headers that must be ignored.
            match rng.below(3) {
                0 => fields.push(format!("Content-Length: {}", rng.below(5000))),
                1 => fields.push("Transfer-Encoding: chunked".into()),
                _ => {}
            }
        } else {
            let kind = loop {
                let kind = rng.below(3);
                let chunked_ok = !http10 || last;
                if kind == 0 || (kind == 1 && chunked_ok) || (kind == 2 && last) {
                    break kind;
                }
            };
            match kind {
                0 => {
                    let len = rng.below(300);
                    body = rng.word(len).into_bytes();
                    fields.push(format!("Content-Length: {len}"));
                    if rng.chance(10) {
                        fields.push(format!("content-length: {len}, {len}"));
                    }
                }
                1 => {
                    let te = rng.pick(&["chunked", "Chunked", "gzip, chunked", "gzip,  CHUNKED"]);
                    fields.push(format!("Transfer-Encoding: {te}"));
                    if rng.chance(15) {
                        fields.push("Content-Length: 12345".into());
                    }
                    for _ in 0..rng.below(5) {
                        let size = 1 + rng.below(40);
                        let size_text = if rng.chance(30) {
                            format!("{size:X}")
                        } else {
                            format!("{size:x}")
                        };
                        let ext = if rng.chance(30) { ";ext=val" } else { "" };
                        body.extend_from_slice(format!("{size_text}{ext}\r\n").as_bytes());
                        body.extend_from_slice(rng.word(size).as_bytes());
                        body.extend_from_slice(b"\r\n");
                    }
                    body.extend_from_slice(b"0\r\n");
                    if rng.chance(30) {
                        body.extend_from_slice(b"Expires: never\r\nX-Checksum: abc\r\n");
                    }
                    body.extend_from_slice(b"\r\n");
                }
                _ => {
                    if rng.chance(50) {
                        fields.push("Transfer-Encoding: gzip".into());
                    }
                    let len = rng.below(300);
                    body = rng.word(len).into_bytes();
                }
            }
        }
        // Shuffle so framing headers appear anywhere.
        for i in (1..fields.len()).rev() {
            let j = rng.below(i + 1);
            fields.swap(i, j);
        }
        let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        wire.extend_from_slice(format!("{version} {status} Reason\r\n").as_bytes());
        for field in &fields {
            wire.extend_from_slice(field.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&body);
        head_request
    }

    /// Decoded chunked body: (data bytes, wire bytes), by a plain reading of RFC 9112 §7.1.
    fn oracle_dechunk(wire: &[u8]) -> (u64, usize) {
        let text = std::str::from_utf8(wire).expect("generated bodies are ASCII");
        let mut pos = 0;
        let mut data = 0;
        loop {
            let line_end = pos + text[pos..].find("\r\n").expect("size line");
            let size_text = text[pos..line_end].split(';').next().expect("size").trim();
            let size = u64::from_str_radix(size_text, 16).expect("hex size");
            pos = line_end + 2;
            if size == 0 {
                break;
            }
            data += size;
            pos += size as usize + 2;
        }
        loop {
            let line_end = pos + text[pos..].find("\r\n").expect("trailer line");
            let empty = line_end == pos;
            pos = line_end + 2;
            if empty {
                return (data, pos);
            }
        }
    }

    /// Expected final responses for a generated stream, and what EOF completes (if anything).
    fn oracle(wire: &[u8], heads: &[bool]) -> (Vec<ResponseInfo>, Option<ResponseInfo>) {
        let mut pos = 0;
        let mut done = Vec::new();
        while pos < wire.len() {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut slots);
            let httparse::Status::Complete(head_len) =
                response.parse(&wire[pos..]).expect("generated head parses")
            else {
                panic!("generated head is incomplete");
            };
            pos += head_len;
            let status = response.code.expect("status");
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let values = |name: &str| -> Vec<String> {
                response
                    .headers
                    .iter()
                    .filter(|h| h.name.to_ascii_lowercase() == name)
                    .flat_map(|h| {
                        std::str::from_utf8(h.value)
                            .expect("ascii")
                            .split(',')
                            .map(|s| s.trim().to_ascii_lowercase())
                            .filter(|s| !s.is_empty())
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            let connection = values("connection");
            let close = connection.iter().any(|t| t == "close");
            let http11 = response.version == Some(1);
            let mut keep_alive = !close && (http11 || connection.iter().any(|t| t == "keep-alive"));
            let codings = values("transfer-encoding");
            let lengths = values("content-length");
            let head_request = heads[done.len()];
            let body_len = if head_request || [101, 204, 304].contains(&status) {
                0
            } else if !codings.is_empty() {
                if http11 && codings.last().map(String::as_str) == Some("chunked") {
                    let (data, used) = oracle_dechunk(&wire[pos..]);
                    pos += used;
                    data
                } else {
                    keep_alive = false;
                    let rest = (wire.len() - pos) as u64;
                    return (done, Some(info(status, keep_alive, rest)));
                }
            } else if let Some(first) = lengths.first() {
                assert!(
                    lengths.iter().all(|l| l == first),
                    "generator made a conflict"
                );
                let len: u64 = first.parse().expect("generated length");
                pos += len as usize;
                len
            } else {
                let rest = (wire.len() - pos) as u64;
                return (done, Some(info(status, false, rest)));
            };
            done.push(info(status, keep_alive && status != 101, body_len));
        }
        (done, None)
    }

    #[test]
    fn oracle_random_pipelines_at_random_splits() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut close_delimited_seen = 0;
        for round in 0..400 {
            let mut wire = Vec::new();
            let count = 1 + rng.below(4);
            let heads: Vec<bool> = (0..count)
                .map(|i| gen_response(&mut rng, i + 1 == count, &mut wire))
                .collect();
            let (expect, at_eof) = oracle(&wire, &heads);
            close_delimited_seen += usize::from(at_eof.is_some());
            for pass in 0..3 {
                // Pass 0: whole; pass 1: byte by byte; pass 2: random piece sizes.
                let mut chunks = Vec::new();
                let mut at = 0;
                while at < wire.len() {
                    let len = match pass {
                        0 => wire.len(),
                        1 => 1,
                        _ => {
                            let max = 1 + rng.below(64);
                            1 + rng.below(max)
                        }
                    };
                    let end = (at + len).min(wire.len());
                    chunks.push(&wire[at..end]);
                    at = end;
                }
                let mut dec = ResponseDecoder::new();
                let out = feed(&mut dec, chunks, &heads);
                let ctx = format!(
                    "round {round} pass {pass}: {:?}",
                    String::from_utf8_lossy(&wire)
                );
                assert_eq!(out.error, None, "{ctx}");
                assert_eq!(out.responses, expect, "{ctx}");
                assert_eq!(dec.finish_eof(&out.leftover), Ok(at_eof), "{ctx}");
            }
        }
        // The generator really exercised the close-delimited path.
        assert!(close_delimited_seen > 20, "{close_delimited_seen}");
    }

    #[test]
    fn errors_display_on_one_line() {
        let errors = [
            ProtoError::Malformed("invalid HTTP version"),
            ProtoError::TooManyHeaders,
            ProtoError::HeadTooLarge,
            ProtoError::InvalidContentLength,
            ProtoError::ConflictingContentLength,
            ProtoError::InvalidChunk("bad chunk-size line"),
            ProtoError::ChunkLineTooLong,
            ProtoError::InvalidTrailer,
            ProtoError::TrailersTooLarge,
            ProtoError::Truncated,
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // encode_request
    // -----------------------------------------------------------------------------------------

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const UA: &str = concat!("connbench/", env!("CARGO_PKG_VERSION"));

    /// Parsed request: method, target, headers in order, body.
    type Parsed = (String, String, Vec<(String, String)>, Vec<u8>);

    /// Oracle: read the encoded bytes back with httparse.
    fn parse_request(bytes: &[u8]) -> Parsed {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut slots);
        let httparse::Status::Complete(head_len) = request.parse(bytes).expect("valid request")
        else {
            panic!("incomplete request head");
        };
        assert_eq!(request.version, Some(1), "HTTP/1.1");
        let headers = request
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8(h.value.to_vec()).expect("utf-8 value");
                (h.name.to_string(), value)
            })
            .collect();
        (
            request.method.expect("method").to_string(),
            request.path.expect("path").to_string(),
            headers,
            bytes[head_len..].to_vec(),
        )
    }

    #[test]
    fn encode_get_exact_bytes() {
        let bytes = encode_request("GET", "/", "example.com", &[], b"").expect("valid");
        assert_eq!(
            bytes,
            format!("GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: {UA}\r\n\r\n").as_bytes()
        );
    }

    #[test]
    fn encode_header_order_and_defaults() {
        let user = hdrs(&[("Accept", "application/json"), ("X-Trace", "a\tb")]);
        let bytes =
            encode_request("GET", "/api/v1?x=1&y=%20", "127.0.0.1:8080", &user, b"").expect("ok");
        let (method, path, headers, body) = parse_request(&bytes);
        assert_eq!(method, "GET");
        assert_eq!(path, "/api/v1?x=1&y=%20");
        let mut expect = hdrs(&[("Host", "127.0.0.1:8080")]);
        expect.extend(user);
        expect.extend(hdrs(&[("User-Agent", UA)]));
        assert_eq!(headers, expect);
        assert!(body.is_empty());
        assert!(!headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("connection")));
    }

    #[test]
    fn encode_user_host_and_user_agent_replace_the_defaults() {
        let user = hdrs(&[
            ("Accept", "*/*"),
            ("host", "api.test"),
            ("USER-AGENT", "me/1"),
        ]);
        // The host argument is not used, so it is not validated either.
        let bytes = encode_request("GET", "/", "", &user, b"").expect("ok");
        let (_, _, headers, _) = parse_request(&bytes);
        assert_eq!(headers, user);
    }

    #[test]
    fn encode_content_length_rules() {
        let length = |method: &str, user: &[(&str, &str)], body: &[u8]| {
            let bytes = encode_request(method, "/", "h", &hdrs(user), body).expect("valid");
            let (_, _, headers, sent) = parse_request(&bytes);
            assert_eq!(sent, body, "{method}: body sent as given");
            headers
                .into_iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
        };
        assert_eq!(length("GET", &[], b""), Vec::<String>::new());
        assert_eq!(length("HEAD", &[], b""), Vec::<String>::new());
        assert_eq!(length("DELETE", &[], b""), Vec::<String>::new());
        assert_eq!(length("post", &[], b""), Vec::<String>::new());
        for method in ["POST", "PUT", "PATCH"] {
            assert_eq!(length(method, &[], b""), ["0"]);
        }
        assert_eq!(length("POST", &[], b"{\"a\":1}"), ["7"]);
        assert_eq!(length("GET", &[], b"xyz"), ["3"]);
        // httparse trims the value's whitespace; the point is that no second length appears.
        assert_eq!(
            length("POST", &[("content-length", " 7 ")], b"{\"a\":1}"),
            ["7"]
        );
        assert_eq!(length("PUT", &[("Content-Length", "0")], b""), ["0"]);
    }

    #[test]
    fn encode_random_requests_round_trip() {
        let mut rng = Rng(42);
        for _ in 0..300 {
            let method = *rng.pick(&[
                "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "M-SEARCH",
            ]);
            let path_len = rng.below(20);
            let target = format!("/{}?q={}", rng.word(path_len), rng.word(5));
            let user: Vec<(String, String)> = (0..rng.below(10))
                .map(|i| {
                    let name = format!("X-{}-{i}", rng.word(3));
                    let value_len = rng.below(40);
                    (name, rng.word(value_len))
                })
                .collect();
            let body_len = rng.below(3) * rng.below(100);
            let body = rng.word(body_len).into_bytes();
            let bytes = encode_request(method, &target, "bench.local", &user, &body).expect("ok");
            let (m, p, headers, sent) = parse_request(&bytes);
            assert_eq!((m.as_str(), p.as_str()), (method, target.as_str()));
            assert_eq!(headers[0], ("Host".to_string(), "bench.local".to_string()));
            assert_eq!(headers[1..=user.len()], user[..]);
            assert_eq!(
                headers[user.len() + 1],
                ("User-Agent".to_string(), UA.to_string())
            );
            let wants_length = !body.is_empty() || ["POST", "PUT", "PATCH"].contains(&method);
            let lengths: Vec<_> = headers[user.len() + 2..].to_vec();
            if wants_length {
                assert_eq!(
                    lengths,
                    [("Content-Length".to_string(), body.len().to_string())]
                );
            } else {
                assert!(lengths.is_empty());
            }
            assert_eq!(sent, body);
        }
    }

    #[test]
    fn encode_accepts_other_target_forms() {
        for target in [
            "*",
            "http://example.com/x",
            "HTTPS://h/",
            "/",
            "/a%20b#frag",
        ] {
            let bytes = encode_request("OPTIONS", target, "h", &[], b"").expect(target);
            assert_eq!(parse_request(&bytes).1, target);
        }
    }

    #[test]
    fn encode_rejects_bad_input() {
        let enc = |method: &str, target: &str, host: &str, user: &[(&str, &str)], body: &[u8]| {
            encode_request(method, target, host, &hdrs(user), body)
        };
        for method in ["", "GE T", "GET\r\n", "GÉT", "GET/", "(GET)"] {
            assert_eq!(
                enc(method, "/", "h", &[], b""),
                Err(RequestError::InvalidMethod(method.into()))
            );
        }
        for target in [
            "",
            "foo",
            "/a b",
            "/a\tb",
            "/a\r\nX: y",
            "/\x7f",
            "/é",
            "http://",
            "ftp://x/",
            "**",
        ] {
            assert_eq!(
                enc("GET", target, "h", &[], b""),
                Err(RequestError::InvalidTarget(target.into()))
            );
        }
        for host in ["", "ex ample", "a\r\nb", "bücher.de"] {
            assert_eq!(
                enc("GET", "/", host, &[], b""),
                Err(RequestError::InvalidHost(host.into()))
            );
        }
        for name in ["", "X Y", "X:Y", "X\r\n", "Ä"] {
            assert_eq!(
                enc("GET", "/", "h", &[(name, "v")], b""),
                Err(RequestError::InvalidHeaderName(name.into()))
            );
        }
        for value in [
            "a\r\nInjected: 1",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\x01b",
            "a\x7fb",
        ] {
            assert_eq!(
                enc("GET", "/", "h", &[("X-V", value)], b""),
                Err(RequestError::InvalidHeaderValue("X-V".into()))
            );
        }
        // Obs-text (non-ASCII) values are legal field content.
        assert!(enc("GET", "/", "h", &[("X-V", "café")], b"").is_ok());
        for given in ["3", "abc", "+4", "4, 4", ""] {
            assert_eq!(
                enc("POST", "/", "h", &[("Content-Length", given)], b"body"),
                Err(RequestError::ContentLengthMismatch {
                    given: given.into(),
                    body: 4
                })
            );
        }
        assert_eq!(
            enc("POST", "/", "h", &[("Transfer-Encoding", "chunked")], b""),
            Err(RequestError::TransferEncodingGiven("chunked".into()))
        );
        assert_eq!(
            enc("GET", "/", "h", &[("Host", "a"), ("HOST", "b")], b""),
            Err(RequestError::DuplicateHost)
        );
    }

    #[test]
    fn request_errors_display_on_one_line() {
        let errors = [
            RequestError::InvalidMethod("G\nET".into()),
            RequestError::InvalidTarget("/a\r\nb".into()),
            RequestError::InvalidHost("a\nb".into()),
            RequestError::InvalidHeaderName("X\nY".into()),
            RequestError::InvalidHeaderValue("X-V".into()),
            RequestError::ContentLengthMismatch {
                given: "3\n".into(),
                body: 4,
            },
            RequestError::TransferEncodingGiven("chunked\n".into()),
            RequestError::DuplicateHost,
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains(['\n', '\r']), "{text:?}");
        }
    }

    /// The head cache is a memo: a decoder that last framed any of these responses frames each
    /// of them exactly as a fresh decoder does, whole, byte by byte and split, including heads
    /// that share all but their last bytes with the cached one, or start with it.
    #[test]
    fn head_cache_changes_no_outcome() {
        let base = "HTTP/1.1 200 OK\r\nServer: t\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n";
        let responses: Vec<Vec<u8>> = vec![
            format!("{base}Content-Length: 2\r\n\r\nok").into_bytes(),
            format!("{base}Content-Length: 3\r\n\r\nokk").into_bytes(),
            format!("{base}Content-Length: 2\r\nConnection: close\r\n\r\nok").into_bytes(),
            format!("{base}Content-Length: 2\r\nX: y\r\n\r\nok").into_bytes(),
            format!("{base}Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n").into_bytes(),
            format!("{base}\r\nclose-delimited").into_bytes(),
            format!("{base}Content-Length: 2\r\nContent-Length: 3\r\n\r\nok").into_bytes(),
            format!("{base}Content-Length: 2\r\nbad header\r\n\r\nok").into_bytes(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            format!("{base}Content-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Le").into_bytes(),
        ];
        let fresh = |chunks: Vec<&[u8]>| feed(&mut ResponseDecoder::new(), chunks, &[]);
        for warm in &responses {
            for x in &responses {
                let feeds: Vec<(&str, Vec<&[u8]>)> = vec![
                    ("whole", whole(x)),
                    ("bytewise", bytewise(x)),
                    ("split", vec![&x[..x.len() / 2], &x[x.len() / 2..]]),
                ];
                for (how, chunks) in feeds {
                    let mut dec = ResponseDecoder::new();
                    let _ = feed(&mut dec, whole(warm), &[]);
                    dec.reset();
                    let cached = feed(&mut dec, chunks.clone(), &[]);
                    assert_eq!(
                        cached,
                        fresh(chunks),
                        "after {:?}, {:?} fed {how}",
                        String::from_utf8_lossy(warm),
                        String::from_utf8_lossy(x)
                    );
                }
            }
        }
        // The cache is used: the same head twice hits it.
        let mut dec = ResponseDecoder::new();
        let x = &responses[0];
        let _ = feed(&mut dec, whole(x), &[]);
        let head_len = x.len() - 2;
        assert_eq!(dec.cache.len, head_len);
        assert_eq!(dec.cache.hit(x).map(|(n, _)| n), Some(head_len));
        assert_eq!(dec.cache.hit(&responses[1]), None);
    }
}
