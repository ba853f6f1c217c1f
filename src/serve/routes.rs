//! The target's routes, sans-IO: a request path becomes a [`Route`], and a [`Reply`] becomes
//! response bytes appended to a connection's reused output buffer plus, for large bodies, a
//! [`Body`] that streams from one shared static buffer. Nothing here touches a socket.
//!
//! Allocation rules: `GET /` is a single copy of bytes serialized once at start; every other
//! head is written straight into the caller's buffer; large bodies are never materialized (a
//! 64 MiB `/bytes` costs the same memory as a 64 KiB one). Only the trades route formats JSON,
//! into a scratch buffer the caller reuses.

use std::io::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::session::Kind;

/// Largest body `/bytes/N` and `/chunked/N` will send.
pub(super) const MAX_BODY: u64 = 64 << 20;
/// Longest delay `/delay/MICROS` accepts (10 minutes); bounds the timer heap's horizon and keeps
/// `Instant + delay` from overflowing.
pub(super) const MAX_DELAY_US: u64 = 600_000_000;
/// `limit` of the trades route when the query has none, and its cap.
const TRADES_DEFAULT: u16 = 100;
const TRADES_MAX: u16 = 1000;
/// Chunk size of `/chunked/N`.
const CHUNK: usize = 8 * 1024;
/// Most header fields `/headers/N` sends (its head stays under 200 KiB).
pub(super) const MAX_FIELDS: u64 = 10_000;
/// What `/garbage` writes before it closes: a status line, then a header line that is not
/// one, cut off before the head ends. A client must call it a protocol error at its fourth
/// line's first space however the bytes arrive (the head never completes, so a client that
/// waits for the empty line sees only the close).
pub(super) const GARBAGE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: connbench\r\nContent-Length: 0\r\nThis is not a header field";

/// Body bytes for `/bytes` and `/chunked`: shared and static so no request allocates its body.
static FILL: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// The fixed body of `/`: a small trade list shaped like the relay's REST answer.
const INDEX_BODY: &str = concat!(
    r#"{"exchange":"binance","symbol":"BTCUSDT","trades":["#,
    r#"{"id":1,"price":"67012.35","qty":"0.0150","side":"buy","timestamp":1700000000000000},"#,
    r#"{"id":2,"price":"67012.40","qty":"0.2000","side":"sell","timestamp":1700000000001000}"#,
    "]}"
);

/// Where a request goes. Errors of the request line itself (bad number, unknown path) are
/// routes too, so the connection layer handles every answer the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// `/`: the pre-serialized trade list.
    Index,
    /// `/bytes/N`: N bytes with Content-Length.
    Bytes(u64),
    /// `/chunked/N`: N bytes with Transfer-Encoding: chunked.
    Chunked(u64),
    /// `/delay/MICROS`: 200 once the delay has elapsed.
    Delay(u64),
    /// `/status/CODE`, or an error answer (400, 404, 411, 429, 431).
    Status(u16),
    /// `/headers/N`: 200 with exactly N header fields and an empty body.
    Headers(u16),
    /// `/garbage`: a malformed, unfinished head, then the connection closes.
    Garbage,
    /// `/exchanges/{exchange}/trades?symbol=S&limit=N`.
    Trades(TradesQuery),
    /// `/ws` or `/echo` before the upgrade headers are checked; `http::parse_head` turns it
    /// into [`Route::Upgrade`] or an error status, so it never reaches [`write_reply`].
    WsEndpoint(Kind),
    /// A valid WebSocket upgrade: `101 Switching Protocols` with this accept key, after which
    /// the connection speaks WebSocket.
    Upgrade { kind: Kind, accept: [u8; 28] },
    /// Fault `/close/{fin,rst}/N`: 200 with N body bytes and neither Content-Length nor
    /// chunked (the body is delimited by the close), then the connection ends with `cut` right
    /// after the last byte.
    CloseDelimited { len: u64, cut: Cut },
    /// Fault `/truncate/{fin,rst}/N`: 200 announcing `Content-Length: N`, only the first N/2
    /// body bytes, then the connection ends with `cut` right after them.
    Truncated { len: u64, cut: Cut },
}

/// How a fault route ends its connection right after its last byte, so that the bytes and the
/// close reach the client together (one readiness event on its side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cut {
    /// TCP FIN (`shutdown(SHUT_WR)`), with no TLS close_notify before it: a server that drops
    /// the connection, not one that closes its TLS session.
    Fin,
    /// TCP RST (SO_LINGER 0, then close).
    Rst,
}

impl Route {
    /// The fault routes end their connection with this right after their last byte.
    pub(super) fn cut(&self) -> Option<Cut> {
        match *self {
            Route::CloseDelimited { cut, .. } | Route::Truncated { cut, .. } => Some(cut),
            _ => None,
        }
    }
}

/// A short ASCII token stored inline so a [`Route`] stays `Copy` and allocation-free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Token {
    len: u8,
    bytes: [u8; Token::CAP],
}

impl Token {
    const CAP: usize = 32;

    /// Accepts 1..=32 characters of `[A-Za-z0-9_.-]`, which need no JSON escaping.
    fn parse(s: &str) -> Option<Token> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.';
        if s.is_empty() || s.len() > Self::CAP || !s.bytes().all(ok) {
            return None;
        }
        let mut bytes = [0; Self::CAP];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Token {
            len: s.len() as u8,
            bytes,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The parsed query of the trades route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TradesQuery {
    exchange: Token,
    symbol: Token,
    limit: u16,
}

/// Maps a request target (path and query) to a route.
pub(super) fn route(target: &str) -> Route {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/" {
        return Route::Index;
    }
    let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    let third = parts.next();
    let rest = parts.next();
    match (first, second, third, rest) {
        ("bytes", Some(n), None, None) => match parse_num(n) {
            Some(n) if n <= MAX_BODY => Route::Bytes(n),
            _ => Route::Status(400),
        },
        ("chunked", Some(n), None, None) => match parse_num(n) {
            Some(n) if n <= MAX_BODY => Route::Chunked(n),
            _ => Route::Status(400),
        },
        ("delay", Some(n), None, None) => match parse_num(n) {
            Some(n) if n <= MAX_DELAY_US => Route::Delay(n),
            _ => Route::Status(400),
        },
        ("headers", Some(n), None, None) => match parse_num(n) {
            // Server, Content-Length and maybe Connection are among the N.
            Some(n) if (3..=MAX_FIELDS).contains(&n) => Route::Headers(n as u16),
            _ => Route::Status(400),
        },
        ("garbage", None, None, None) => Route::Garbage,
        ("status", Some(n), None, None) => match parse_num(n) {
            Some(code @ 200..=599) => Route::Status(code as u16),
            _ => Route::Status(400),
        },
        ("exchanges", Some(ex), Some("trades"), None) => trades(ex, query),
        ("close" | "truncate", Some(how), Some(n), None) => {
            let cut = match how {
                "fin" => Cut::Fin,
                "rst" => Cut::Rst,
                _ => return Route::Status(404),
            };
            let Some(len) = parse_num(n).filter(|&len| len <= MAX_BODY) else {
                return Route::Status(400);
            };
            match first {
                "close" => Route::CloseDelimited { len, cut },
                // Announcing 0 bytes and sending none is not a truncation.
                _ if len == 0 => Route::Status(400),
                _ => Route::Truncated { len, cut },
            }
        }
        ("ws", None, None, None) => Route::WsEndpoint(Kind::Feed),
        ("echo", None, None, None) => Route::WsEndpoint(Kind::Echo),
        _ => Route::Status(404),
    }
}

fn trades(exchange: &str, query: &str) -> Route {
    let Some(exchange) = Token::parse(exchange) else {
        return Route::Status(400);
    };
    let mut symbol = None;
    let mut limit = TRADES_DEFAULT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "symbol" => match Token::parse(value) {
                Some(t) => symbol = Some(t),
                None => return Route::Status(400),
            },
            // Over the cap is clamped (like a relay that pages); zero or junk is the caller's bug.
            "limit" => match parse_num(value) {
                Some(n) if n >= 1 => limit = n.min(u64::from(TRADES_MAX)) as u16,
                _ => return Route::Status(400),
            },
            _ => {}
        }
    }
    match symbol {
        Some(symbol) => Route::Trades(TradesQuery {
            exchange,
            symbol,
            limit,
        }),
        None => Route::Status(400),
    }
}

/// Decimal digits only (no sign, no spaces), at most 19 of them so it cannot overflow.
fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What the `Connection` header of a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConnHeader {
    /// Nothing: HTTP/1.1 keep-alive is the default.
    Default,
    /// `Connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
    /// `Connection: close`; the connection closes after this response.
    Close,
}

/// One response waiting its turn on a connection (responses leave in request order).
#[derive(Clone, Copy, Debug)]
pub(super) struct Reply {
    pub(super) route: Route,
    /// HEAD: the same headers, no body.
    pub(super) head_only: bool,
    /// HTTP/1.0 cannot read chunked bodies; such clients get Content-Length instead.
    pub(super) http10: bool,
    pub(super) conn: ConnHeader,
    /// Not to be written before this instant (`/delay`).
    pub(super) not_before: Option<Instant>,
}

/// The body still to send after a head: it streams from [`FILL`] with back-pressure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Body {
    /// Content-Length body; `remaining` bytes left.
    Fixed { remaining: u64 },
    /// Chunked body: `remaining` bytes of data left in total, `in_chunk` of them belong to the
    /// chunk whose size line is already written.
    Chunked { remaining: u64, in_chunk: usize },
}

impl Body {
    /// Appends body bytes (and chunk framing) to `out` while it stays under `limit`. Returns
    /// `true` once the whole body, terminator included, is in `out`.
    pub(super) fn fill(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        loop {
            match self {
                Body::Fixed { remaining } => {
                    if *remaining == 0 {
                        return true;
                    }
                    let piece = (*remaining).min(FILL.len() as u64) as usize;
                    if out.len() + piece > limit {
                        return false;
                    }
                    out.extend_from_slice(&FILL[..piece]);
                    *remaining -= piece as u64;
                }
                Body::Chunked {
                    remaining,
                    in_chunk,
                } => {
                    if *in_chunk == 0 {
                        if *remaining == 0 {
                            out.extend_from_slice(b"0\r\n\r\n");
                            return true;
                        }
                        let size = (*remaining).min(CHUNK as u64) as usize;
                        push_hex(out, size);
                        out.extend_from_slice(b"\r\n");
                        *in_chunk = size;
                    }
                    if out.len() + *in_chunk > limit {
                        return false;
                    }
                    out.extend_from_slice(&FILL[..*in_chunk]);
                    out.extend_from_slice(b"\r\n");
                    *remaining -= *in_chunk as u64;
                    *in_chunk = 0;
                }
            }
        }
    }

    /// The next body bytes to write straight from the static buffer, once `out` is empty and
    /// [`Body::fill`] refused because they would not fit.
    pub(super) fn direct(&self) -> &'static [u8] {
        match *self {
            Body::Fixed { remaining } => &FILL[..(remaining.min(FILL.len() as u64) as usize)],
            Body::Chunked { in_chunk, .. } => &FILL[..in_chunk],
        }
    }

    /// Records that `n` bytes of [`Body::direct`] were written; finishing a chunk queues its
    /// CRLF into `out`.
    pub(super) fn advance(&mut self, n: usize, out: &mut Vec<u8>) {
        match self {
            Body::Fixed { remaining } => *remaining -= n as u64,
            Body::Chunked {
                remaining,
                in_chunk,
            } => {
                *remaining -= n as u64;
                *in_chunk -= n;
                if *in_chunk == 0 {
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

/// `GET /` over HTTP/1.1 keep-alive, complete, serialized once at start.
pub(super) fn index_response() -> Box<[u8]> {
    let mut out = Vec::with_capacity(256 + INDEX_BODY.len());
    push_head(
        &mut out,
        200,
        Some("application/json"),
        Length::Fixed(INDEX_BODY.len() as u64),
        ConnHeader::Default,
    );
    out.extend_from_slice(INDEX_BODY.as_bytes());
    out.into_boxed_slice()
}

/// How the body length is announced.
enum Length {
    Fixed(u64),
    Chunked,
    /// 204 and 304: no body and no Content-Length.
    None,
    /// The body runs until the connection closes: no Content-Length, not chunked.
    Close,
}

/// Appends `reply`'s head and any small body to `out`; returns the body still to stream.
/// `index` is [`index_response`]'s output; `scratch` is reused across calls.
pub(super) fn write_reply(
    reply: &Reply,
    index: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Option<Body> {
    let body = |n| (!reply.head_only).then_some(Body::Fixed { remaining: n });
    match reply.route {
        Route::Index => {
            if !reply.head_only && reply.conn == ConnHeader::Default {
                out.extend_from_slice(index);
            } else {
                let json = Some("application/json");
                let len = Length::Fixed(INDEX_BODY.len() as u64);
                push_head(out, 200, json, len, reply.conn);
                if !reply.head_only {
                    out.extend_from_slice(INDEX_BODY.as_bytes());
                }
            }
            None
        }
        Route::Bytes(n) => {
            let octets = Some("application/octet-stream");
            push_head(out, 200, octets, Length::Fixed(n), reply.conn);
            body(n)
        }
        Route::Chunked(n) if reply.http10 => {
            let octets = Some("application/octet-stream");
            push_head(out, 200, octets, Length::Fixed(n), reply.conn);
            body(n)
        }
        Route::Chunked(n) => {
            let octets = Some("application/octet-stream");
            push_head(out, 200, octets, Length::Chunked, reply.conn);
            (!reply.head_only).then_some(Body::Chunked {
                remaining: n,
                in_chunk: 0,
            })
        }
        Route::Delay(us) => {
            scratch.clear();
            let _ = write!(scratch, "{{\"delay_us\":{us}}}");
            push_small(out, reply, 200, "application/json", scratch);
            None
        }
        Route::Status(code) => {
            if code == 204 || code == 304 {
                push_head(out, code, None, Length::None, reply.conn);
            } else {
                scratch.clear();
                let _ = writeln!(scratch, "{code} {}", reason(code));
                push_small(out, reply, code, "text/plain", scratch);
            }
            None
        }
        Route::Trades(q) => {
            trades_json(&q, scratch);
            push_small(out, reply, 200, "application/json", scratch);
            None
        }
        Route::Headers(n) => {
            push_many_fields(out, u64::from(n), reply.conn);
            None
        }
        Route::Garbage => {
            out.extend_from_slice(GARBAGE);
            None
        }
        Route::Upgrade { accept, .. } => {
            out.extend_from_slice(
                b"HTTP/1.1 101 Switching Protocols\r\nServer: connbench\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Accept: ",
            );
            out.extend_from_slice(&accept);
            out.extend_from_slice(b"\r\n\r\n");
            None
        }
        Route::CloseDelimited { len, .. } => {
            let octets = Some("application/octet-stream");
            push_head(out, 200, octets, Length::Close, reply.conn);
            body(len)
        }
        Route::Truncated { len, .. } => {
            let octets = Some("application/octet-stream");
            push_head(out, 200, octets, Length::Fixed(len), reply.conn);
            body(len / 2)
        }
        // Unreachable by construction (see the variant); answered like any bad request.
        Route::WsEndpoint(_) => {
            let bad = Reply {
                route: Route::Status(400),
                ..*reply
            };
            write_reply(&bad, index, out, scratch)
        }
    }
}

/// `/headers/N`: a 200 whose head holds exactly `n` fields (n ≥ 3): Server, Content-Length: 0,
/// the Connection field when there is one, then `X-Field-K: K` for the rest.
fn push_many_fields(out: &mut Vec<u8>, n: u64, conn: ConnHeader) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: connbench\r\nContent-Length: 0\r\n");
    let mut fields = 2;
    match conn {
        ConnHeader::Default => {}
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    if conn != ConnHeader::Default {
        fields += 1;
    }
    for k in fields + 1..=n {
        out.extend_from_slice(b"X-Field-");
        push_dec(out, k);
        out.extend_from_slice(b": ");
        push_dec(out, k);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Head plus a body that is already in memory.
fn push_small(out: &mut Vec<u8>, reply: &Reply, code: u16, ctype: &str, body: &[u8]) {
    let len = Length::Fixed(body.len() as u64);
    push_head(out, code, Some(ctype), len, reply.conn);
    if !reply.head_only {
        out.extend_from_slice(body);
    }
}

fn push_head(out: &mut Vec<u8>, code: u16, ctype: Option<&str>, len: Length, conn: ConnHeader) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_dec(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason(code).as_bytes());
    out.extend_from_slice(b"\r\nServer: connbench\r\n");
    if let Some(ctype) = ctype {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(ctype.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match len {
        Length::Fixed(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_dec(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Length::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Length::None | Length::Close => {}
    }
    if code == 426 {
        // RFC 6455 §4.2.2: tell the client which protocol version this server speaks.
        out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    match conn {
        ConnHeader::Default => {}
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Trade JSON for the relay-shaped route. Prices and quantities are derived from the trade id
/// so the output is plausible and deterministic apart from the timestamps.
fn trades_json(q: &TradesQuery, out: &mut Vec<u8>) {
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let limit = u64::from(q.limit);
    let first_id = now_us / 1000;
    out.clear();
    out.extend_from_slice(b"{\"exchange\":\"");
    out.extend_from_slice(q.exchange.as_bytes());
    out.extend_from_slice(b"\",\"symbol\":\"");
    out.extend_from_slice(q.symbol.as_bytes());
    out.extend_from_slice(b"\",\"trades\":[");
    for i in 0..limit {
        let id = first_id + i;
        let cents = 6_700_000 + (id.wrapping_mul(7919) % 100_000);
        let qty = 1 + id.wrapping_mul(31) % 9999;
        let side = if id.is_multiple_of(2) { "buy" } else { "sell" };
        // Oldest first, 1 ms apart, the newest stamped now.
        let ts = now_us.saturating_sub((limit - 1 - i) * 1000);
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(
            out,
            "{{\"id\":{id},\"price\":\"{}.{:02}\",\"qty\":\"0.{qty:04}\",\"side\":\"{side}\",\"timestamp\":{ts}}}",
            cents / 100,
            cents % 100
        );
    }
    out.extend_from_slice(b"]}");
}

fn push_dec(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_hex(out: &mut Vec<u8>, mut n: usize) {
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn reason(code: u16) -> &'static str {
    match code {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        418 => "I'm a teapot",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(route: Route) -> Reply {
        Reply {
            route,
            head_only: false,
            http10: false,
            conn: ConnHeader::Default,
            not_before: None,
        }
    }

    /// Runs a reply to completion through the fill/direct/advance protocol the connection uses.
    fn render(r: &Reply, limit: usize) -> Vec<u8> {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let mut wire = Vec::new();
        let mut body = write_reply(r, &index_response(), &mut out, &mut scratch);
        loop {
            if let Some(b) = &mut body {
                if b.fill(&mut out, limit) {
                    body = None;
                }
            }
            wire.append(&mut out);
            match &mut body {
                None => return wire,
                Some(b) => {
                    // Write at most 1000 bytes at a time to exercise partial advances.
                    let piece = b.direct();
                    let n = piece.len().min(1000);
                    wire.extend_from_slice(&piece[..n]);
                    b.advance(n, &mut out);
                }
            }
        }
    }

    fn parse(wire: &[u8]) -> (u16, Vec<(String, String)>, usize) {
        let mut h = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut h);
        let n = match r.parse(wire).expect("valid response") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial head"),
        };
        let headers = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        (r.code.expect("code"), headers, n)
    }

    fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
        hs.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn routes_parse() {
        assert_eq!(route("/"), Route::Index);
        assert_eq!(route("/?x=1"), Route::Index);
        assert_eq!(route("/bytes/10"), Route::Bytes(10));
        assert_eq!(route("/bytes/67108864"), Route::Bytes(MAX_BODY));
        assert_eq!(route("/bytes/67108865"), Route::Status(400));
        assert_eq!(route("/bytes/-1"), Route::Status(400));
        assert_eq!(route("/bytes/99999999999999999999999"), Route::Status(400));
        assert_eq!(route("/chunked/5"), Route::Chunked(5));
        assert_eq!(route("/delay/200"), Route::Delay(200));
        assert_eq!(route("/delay/600000001"), Route::Status(400));
        assert_eq!(route("/status/503"), Route::Status(503));
        assert_eq!(route("/status/101"), Route::Status(400));
        assert_eq!(route("/status/600"), Route::Status(400));
        assert_eq!(route("/nope"), Route::Status(404));
        assert_eq!(route("/headers/3"), Route::Headers(3));
        assert_eq!(route("/headers/10000"), Route::Headers(10_000));
        assert_eq!(route("/headers/2"), Route::Status(400));
        assert_eq!(route("/headers/10001"), Route::Status(400));
        assert_eq!(route("/garbage"), Route::Garbage);
        assert_eq!(route("/garbage/x"), Route::Status(404));
        assert_eq!(route("/bytes/1/2"), Route::Status(404));
        assert_eq!(route("/exchanges/binance/trades"), Route::Status(400));
        assert_eq!(
            route("/exchanges/bin\"ance/trades?symbol=X"),
            Route::Status(400)
        );
        assert_eq!(
            route("/exchanges/binance/trades?symbol=BTCUSDT&limit=0"),
            Route::Status(400)
        );
        let (fin, rst) = (Cut::Fin, Cut::Rst);
        assert_eq!(
            route("/close/fin/10"),
            Route::CloseDelimited { len: 10, cut: fin }
        );
        assert_eq!(
            route("/close/rst/0"),
            Route::CloseDelimited { len: 0, cut: rst }
        );
        assert_eq!(
            route("/truncate/rst/7"),
            Route::Truncated { len: 7, cut: rst }
        );
        assert_eq!(route("/truncate/fin/0"), Route::Status(400));
        assert_eq!(route("/close/fin/67108865"), Route::Status(400));
        assert_eq!(route("/close/both/1"), Route::Status(404));
        assert_eq!(route("/close/fin"), Route::Status(404));
        assert_eq!(route("/close/fin/1/2"), Route::Status(404));
        assert_eq!(route("/close/fin/1").cut(), Some(fin));
        assert_eq!(route("/bytes/1").cut(), None);
        match route("/exchanges/binance/trades?symbol=BTCUSDT&limit=5000") {
            Route::Trades(q) => assert_eq!(q.limit, TRADES_MAX),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn index_is_about_200_bytes_of_json() {
        let wire = render(&reply(Route::Index), 16 * 1024);
        let (code, hs, n) = parse(&wire);
        assert_eq!(code, 200);
        assert_eq!(header(&hs, "content-type"), Some("application/json"));
        assert_eq!(header(&hs, "server"), Some("connbench"));
        let body = &wire[n..];
        assert_eq!(
            header(&hs, "content-length"),
            Some(&*body.len().to_string())
        );
        assert!((150..=260).contains(&body.len()), "{}", body.len());
        let v: serde_json::Value = serde_json::from_slice(body).expect("json");
        assert_eq!(v["trades"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn fixed_bodies_stream_exactly_at_every_limit() {
        for n in [0u64, 1, 100, 65_535, 65_536, 65_537, 200_000] {
            for limit in [0usize, 100, 16 * 1024, 1 << 20] {
                let wire = render(&reply(Route::Bytes(n)), limit);
                let (code, hs, head) = parse(&wire);
                assert_eq!(code, 200);
                assert_eq!(header(&hs, "content-length"), Some(&*n.to_string()));
                assert_eq!((wire.len() - head) as u64, n, "n={n} limit={limit}");
                assert!(wire[head..].iter().all(|&b| b == b'x'));
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_exactly_at_every_limit() {
        for n in [0u64, 1, 8191, 8192, 8193, 100_000] {
            for limit in [0usize, 100, 16 * 1024, 1 << 20] {
                let wire = render(&reply(Route::Chunked(n)), limit);
                let (_, hs, mut pos) = parse(&wire);
                assert_eq!(header(&hs, "transfer-encoding"), Some("chunked"));
                let mut total = 0u64;
                loop {
                    let (idx, size) = match httparse::parse_chunk_size(&wire[pos..]) {
                        Ok(httparse::Status::Complete(c)) => c,
                        other => panic!("bad chunk at {pos}: {other:?}"),
                    };
                    assert!(size <= CHUNK as u64);
                    pos += idx;
                    if size == 0 {
                        assert_eq!(&wire[pos..], b"\r\n", "n={n} limit={limit}");
                        break;
                    }
                    pos += size as usize;
                    assert_eq!(&wire[pos..pos + 2], b"\r\n");
                    pos += 2;
                    total += size;
                }
                assert_eq!(total, n, "n={n} limit={limit}");
            }
        }
    }

    #[test]
    fn head_and_connection_variants() {
        let mut r = reply(Route::Index);
        r.head_only = true;
        r.conn = ConnHeader::Close;
        let wire = render(&r, 16 * 1024);
        let (code, hs, n) = parse(&wire);
        assert_eq!(code, 200);
        assert_eq!(n, wire.len(), "HEAD carries no body");
        assert_eq!(header(&hs, "connection"), Some("close"));
        assert_eq!(
            header(&hs, "content-length"),
            Some(&*INDEX_BODY.len().to_string())
        );

        let mut r = reply(Route::Chunked(10));
        r.http10 = true;
        r.conn = ConnHeader::KeepAlive;
        let wire = render(&r, 16 * 1024);
        let (_, hs, n) = parse(&wire);
        assert_eq!(header(&hs, "content-length"), Some("10"));
        assert_eq!(header(&hs, "connection"), Some("keep-alive"));
        assert_eq!(wire.len() - n, 10);
    }

    #[test]
    fn close_delimited_and_truncated_bodies() {
        for limit in [100usize, 16 * 1024] {
            let mut r = reply(Route::CloseDelimited {
                len: 3000,
                cut: Cut::Fin,
            });
            r.conn = ConnHeader::Close;
            let wire = render(&r, limit);
            let (code, hs, n) = parse(&wire);
            assert_eq!(code, 200);
            assert_eq!(header(&hs, "content-length"), None);
            assert_eq!(header(&hs, "transfer-encoding"), None);
            assert_eq!(header(&hs, "connection"), Some("close"));
            assert_eq!(wire.len() - n, 3000);

            let r = reply(Route::Truncated {
                len: 3001,
                cut: Cut::Rst,
            });
            let wire = render(&r, limit);
            let (_, hs, n) = parse(&wire);
            assert_eq!(header(&hs, "content-length"), Some("3001"));
            assert_eq!(wire.len() - n, 1500, "half of what is announced");
        }
    }

    #[test]
    fn status_bodies() {
        let wire = render(&reply(Route::Status(204)), 1024);
        let (code, hs, n) = parse(&wire);
        assert_eq!(code, 204);
        assert_eq!(n, wire.len());
        assert_eq!(header(&hs, "content-length"), None);
        let wire = render(&reply(Route::Status(418)), 1024);
        let (code, hs, n) = parse(&wire);
        assert_eq!(code, 418);
        assert_eq!(header(&hs, "content-type"), Some("text/plain"));
        assert_eq!(&wire[n..], b"418 I'm a teapot\n");
    }

    #[test]
    fn headers_route_sends_exactly_n_fields() {
        for n in [3u16, 64, 1024, 1025, 10_000] {
            for conn in [
                ConnHeader::Default,
                ConnHeader::Close,
                ConnHeader::KeepAlive,
            ] {
                let mut r = reply(Route::Headers(n));
                r.conn = conn;
                let wire = render(&r, 1024);
                let mut slots = vec![httparse::EMPTY_HEADER; usize::from(n)];
                let mut resp = httparse::Response::new(&mut slots);
                let parsed = resp.parse(&wire).expect("valid head");
                assert_eq!(parsed, httparse::Status::Complete(wire.len()), "no body");
                assert_eq!(resp.code, Some(200));
                assert_eq!(resp.headers.len(), usize::from(n), "{n} fields, {conn:?}");
                let hs: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into()))
                    .collect();
                assert_eq!(header(&hs, "content-length"), Some("0"));
                let expect_conn = match conn {
                    ConnHeader::Default => None,
                    ConnHeader::Close => Some("close"),
                    ConnHeader::KeepAlive => Some("keep-alive"),
                };
                assert_eq!(header(&hs, "connection"), expect_conn);
            }
        }
    }

    #[test]
    fn garbage_is_a_head_no_parser_accepts() {
        let wire = render(&reply(Route::Garbage), 1024);
        assert_eq!(wire, GARBAGE);
        let mut h = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut h);
        assert_eq!(r.parse(&wire), Err(httparse::Error::HeaderName));
        // Not even a prefix of it: it fails before its end.
        let mut h = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut h);
        let cut = GARBAGE.len() - "not a header field".len();
        assert_eq!(r.parse(&wire[..cut]), Err(httparse::Error::HeaderName));
    }

    #[test]
    fn trades_json_is_relay_shaped() {
        let q = match route("/exchanges/kraken/trades?symbol=ETH-USD&limit=3") {
            Route::Trades(q) => q,
            r => panic!("{r:?}"),
        };
        let wire = render(&reply(Route::Trades(q)), 1024);
        let (_, hs, n) = parse(&wire);
        assert_eq!(
            header(&hs, "content-length"),
            Some(&*(wire.len() - n).to_string())
        );
        let v: serde_json::Value = serde_json::from_slice(&wire[n..]).expect("json");
        assert_eq!(v["exchange"], "kraken");
        assert_eq!(v["symbol"], "ETH-USD");
        let trades = v["trades"].as_array().expect("array");
        assert_eq!(trades.len(), 3);
        for t in trades {
            assert!(t["id"].is_u64());
            assert!(t["price"].as_str().expect("price").parse::<f64>().is_ok());
            assert!(t["qty"].as_str().expect("qty").parse::<f64>().is_ok());
            assert!(t["side"] == "buy" || t["side"] == "sell");
            // Microseconds since the epoch: after 2020, before 2100.
            let ts = t["timestamp"].as_u64().expect("timestamp");
            assert!((1_577_836_800_000_000..4_102_444_800_000_000).contains(&ts));
        }
    }
}
