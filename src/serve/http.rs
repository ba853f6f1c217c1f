//! Request heads, sans-IO: find where a head ends in buffered bytes, then parse it with httparse
//! into the facts the connection needs (route, HEAD, keep-alive, body length to discard).
//!
//! The parser is stateless (httparse), so the connection keeps head bytes until a blank line is
//! present and [`find_head_end`] resumes its scan where the previous one stopped; a head is then
//! parsed exactly once. Nothing here reads a socket or a clock.

use std::mem::MaybeUninit;

use super::routes::{self, Route};
use super::ws;
use crate::proto::ws::accept_key;

/// Longest request head accepted; longer heads get 431 and the connection closes.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Header lines accepted; more is treated as an oversized head (431).
const MAX_HEADERS: usize = 48;

/// What a complete request head asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Request {
    pub(super) route: Route,
    /// HEAD: answer with headers only.
    pub(super) head_only: bool,
    /// HTTP/1.0 (keep-alive only on request; no chunked responses).
    pub(super) http10: bool,
    /// The client allows the connection to stay open after this request.
    pub(super) keep_alive: bool,
    /// Request body bytes (Content-Length) that follow the head and must be discarded.
    pub(super) body_len: u64,
}

/// Why a head cannot be served; every case closes the connection after the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeadError {
    /// Not HTTP, or contradictory framing: 400.
    Malformed,
    /// A request body with Transfer-Encoding (chunked): 411, since the target only reads
    /// Content-Length bodies.
    LengthRequired,
    /// More than [`MAX_HEAD`] bytes or too many header lines: 431.
    TooLarge,
}

impl HeadError {
    /// The status code that answers this error.
    pub(super) fn status(self) -> u16 {
        match self {
            HeadError::Malformed => 400,
            HeadError::LengthRequired => 411,
            HeadError::TooLarge => 431,
        }
    }
}

/// Returns the length of the head (through its blank line) if `buf` holds one. `from` is where
/// the previous call stopped scanning, so a head trickling in byte by byte is scanned once.
/// Bare-LF line endings are accepted, as httparse accepts them.
pub(super) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    // Back up so a blank line split across two reads is still seen.
    let mut i = from.saturating_sub(3);
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Parses one complete head (as delimited by [`find_head_end`]).
pub(super) fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        head,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed);
    };
    let http10 = version == 0;
    let mut close = false;
    let mut keep_alive = false;
    let mut body_len: Option<u64> = None;
    let mut ws = WsHeaders::default();
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                ws.connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            ws.upgrade_websocket |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        } else if h.name.eq_ignore_ascii_case("sec-websocket-version") {
            ws.version_13 = h.value.trim_ascii() == b"13";
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            ws.key = Some(h.value.trim_ascii());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value).ok_or(HeadError::Malformed)?;
            // Repeated Content-Length must agree (RFC 9112 §6.3); otherwise framing is ambiguous.
            if body_len.is_some_and(|prev| prev != n) {
                return Err(HeadError::Malformed);
            }
            body_len = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::LengthRequired);
        }
    }
    let body_len = body_len.unwrap_or(0);
    let mut keep_alive = if http10 { keep_alive && !close } else { !close };
    let mut route = routes::route(path);
    if let Route::WsEndpoint(kind) = route {
        route = ws.route(kind, method == "GET" && !http10 && body_len == 0);
        // A refused upgrade closes: the client's next bytes may already be frames.
        keep_alive &= matches!(route, Route::Upgrade { .. });
    }
    Ok(Request {
        route,
        head_only: method == "HEAD",
        http10,
        keep_alive,
        body_len,
    })
}

/// The headers a WebSocket upgrade needs (RFC 6455 §4.2.1).
#[derive(Default)]
struct WsHeaders<'a> {
    upgrade_websocket: bool,
    connection_upgrade: bool,
    version_13: bool,
    key: Option<&'a [u8]>,
}

impl WsHeaders<'_> {
    /// `GET` over HTTP/1.1 without a body (`plain_get`), `Upgrade: websocket`, `Connection:
    /// upgrade` and a 16-byte key: 101; wrong or missing version: 426 (which names version
    /// 13); anything else: 400.
    fn route(&self, kind: super::session::Kind, plain_get: bool) -> Route {
        let key = match self.key {
            Some(key) if ws::valid_key(key) => key,
            _ => return Route::Status(400),
        };
        if !(plain_get && self.upgrade_websocket && self.connection_upgrade) {
            return Route::Status(400);
        }
        if !self.version_13 {
            return Route::Status(426);
        }
        Route::Upgrade {
            kind,
            accept: accept_key(key),
        }
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::super::session::Kind;
    use super::*;

    #[test]
    fn websocket_upgrade_validation() {
        let ok = "GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let r = parse_head(ok.as_bytes()).expect("valid");
        assert_eq!(
            r.route,
            Route::Upgrade {
                kind: Kind::Feed,
                accept: *b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
            }
        );
        assert!(r.keep_alive);
        let echo = ok.replace("/ws?x=1", "/echo");
        assert!(matches!(
            parse_head(echo.as_bytes()).expect("valid").route,
            Route::Upgrade {
                kind: Kind::Echo,
                ..
            }
        ));
        let status = |req: String| {
            let r = parse_head(req.as_bytes()).expect("valid head");
            match r.route {
                Route::Status(code) => {
                    assert!(!r.keep_alive, "a refused upgrade closes");
                    code
                }
                other => panic!("expected a status, got {other:?}"),
            }
        };
        assert_eq!(status(ok.replace("13", "8")), 426);
        assert_eq!(status(ok.replace("Sec-WebSocket-Version: 13\r\n", "")), 426);
        assert_eq!(status(ok.replace("GET", "POST")), 400);
        assert_eq!(status(ok.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert_eq!(
            status(ok.replace("Upgrade: WebSocket", "Upgrade: h2c")),
            400
        );
        assert_eq!(status(ok.replace("keep-alive, Upgrade", "keep-alive")), 400);
        assert_eq!(status(ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")), 400);
        assert_eq!(
            status(ok.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            400
        );
        // Other paths ignore upgrade headers entirely.
        let other = ok.replace("/ws?x=1", "/");
        assert_eq!(
            parse_head(other.as_bytes()).expect("valid").route,
            Route::Index
        );
    }

    #[test]
    fn head_end_whole_bytewise_and_with_trailing_bytes() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(find_head_end(head, 0), Some(head.len()));
        let mut with_tail = head.to_vec();
        with_tail.extend_from_slice(b"GET /x HTTP/1.1\r\n");
        assert_eq!(find_head_end(&with_tail, 0), Some(head.len()));
        // Byte by byte, resuming from the previous buffer length each time.
        let mut prev = 0;
        for end in 1..=head.len() {
            let found = find_head_end(&head[..end], prev);
            if end < head.len() {
                assert_eq!(found, None, "end {end}");
            } else {
                assert_eq!(found, Some(head.len()));
            }
            prev = end;
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(find_head_end(b"", 0), None);
    }

    #[test]
    fn keep_alive_rules() {
        let p = |s: &str| parse_head(s.as_bytes()).expect("valid");
        assert!(p("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!p("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!p("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n").keep_alive);
        assert!(!p("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(p("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        let r = p("HEAD /bytes/3 HTTP/1.0\r\n\r\n");
        assert!(r.head_only && r.http10);
        assert_eq!(r.route, Route::Bytes(3));
    }

    #[test]
    fn bodies_and_errors() {
        let p = |s: &str| parse_head(s.as_bytes());
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").map(|r| r.body_len),
            Ok(12)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                .map(|r| r.body_len),
            Ok(5)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::LengthRequired)
        );
        assert_eq!(p("hello there\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(p("GET / HTTP/2.0\r\n\r\n"), Err(HeadError::Malformed));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(
            p(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(HeadError::TooLarge)
        );
    }
}
