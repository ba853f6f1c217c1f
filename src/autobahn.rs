//! Autobahn|Testsuite client driver: runs the fuzzing server's cases against connbench's own
//! WebSocket framing ([`crate::proto::ws`]) so its conformance report is the conformance of the
//! client that `connbench ws` uses.
//!
//! This module owns the fuzzing-server case protocol (`/getCaseCount`, `/runCase?case=N&agent=A`,
//! `/updateReports?agent=A`) and a minimal echo peer over a blocking [`TcpStream`]: one
//! connection at a time, so no event loop is needed. It must not grow its own framing: every
//! byte sent is built by `proto::ws` (upgrade, masked frames, closes) and every byte received is
//! judged by `proto::ws::Decoder`, otherwise the report would describe some other code. It does
//! not speak TLS (the fuzzing server is plain `ws://` on loopback) and negotiates no extension,
//! which is why the compression sections (12, 13) are expected to be excluded.
//!
//! Rules each case connection follows (what Autobahn grades):
//! 1. Every text or binary message is echoed with the same opcode as one final frame, masked
//!    with a fresh random key.
//! 2. Every ping is answered with a pong carrying the same payload; pongs are ignored.
//! 3. A close frame is answered with a close echoing its code (1000 when it carried none) and
//!    the session ends once the server has closed the TCP connection.
//! 4. A protocol violation ([`WsError`]) is answered with a close carrying
//!    [`WsError::close_code`] at once (invalid UTF-8 fails fast, as bytes arrive) and the
//!    session ends the same way.
//! 5. Nothing waits forever: each case has a deadline, and the linger after our close is short.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::proto::ws::{self, Decoder, Frame, Handshake, OpCode, Progress, WsError};

/// Largest message accepted: section 9 sends messages of up to 16 MiB; the margin keeps a
/// server that sends a little more from being graded on our limit instead of our framing.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// A case that has not ended by then is abandoned (the slowest, 9.x, take about a second).
const CASE_DEADLINE: Duration = Duration::from_secs(60);
/// Report generation for a full run takes a few seconds; the server closes when it is done.
const REPORT_DEADLINE: Duration = Duration::from_secs(120);
/// Bound on TCP connect and on the upgrade exchange.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After our close frame, how long the server gets to close the TCP connection. RFC 6455 §7.1.1
/// has the server close TCP first; waiting for it lets Autobahn see a clean close.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 256 * 1024;
/// Echoes are written once this much is queued, even if more input is buffered.
const FLUSH_AT: usize = 1024 * 1024;
/// Largest case number accepted in a case list (Autobahn has 517 cases).
const MAX_CASE: u32 = 100_000;

/// What a run achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Cases selected (all the server has, or those asked for).
    pub cases: u32,
    /// Cases that ran to their end (closed, failed or dropped) before the per-case deadline.
    pub ran: u32,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "autobahn: ran {} of {} cases", self.ran, self.cases)?;
        if self.ran < self.cases {
            write!(
                f,
                " ({} did not end within {} s)",
                self.cases - self.ran,
                CASE_DEADLINE.as_secs()
            )?;
        }
        write!(f, "; the fuzzing server has written its reports")
    }
}

/// Why a run stopped. Display: one line.
#[derive(Debug)]
pub enum AutobahnError {
    /// Bad input (the user's fault): the URL, the agent name, or case numbers the server does
    /// not have.
    Url(String),
    /// The fuzzing server could not be reached (not running, wrong port).
    Connect(String),
    /// The server answered, but not as an Autobahn fuzzing server does.
    Protocol(String),
}

impl fmt::Display for AutobahnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AutobahnError::Url(m) | AutobahnError::Connect(m) | AutobahnError::Protocol(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for AutobahnError {}

/// A parsed `--cases` list: 1-based case numbers, sorted, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseList(pub Vec<u32>);

/// Parse "1-10,42" into case numbers (1-based, sorted, no duplicates).
pub fn parse_cases(s: &str) -> Result<CaseList, String> {
    let bad = || format!("invalid case list {s:?} (use e.g. 1-10,42; cases count from 1)");
    let number = |t: &str| match t.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_CASE).contains(&n) => Ok(n),
        _ => Err(bad()),
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(number(part)?),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    out.sort_unstable();
    out.dedup();
    Ok(CaseList(out))
}

/// Run the fuzzing server's cases (all of them, or the 1-based numbers in `cases`) as `agent`,
/// then ask the server to write its reports.
///
/// A case that outlives its deadline is abandoned and not counted in [`Summary::ran`]; the run
/// goes on. Connection and upgrade failures stop the run: the server is gone or is not one.
pub fn run(url: &str, agent: &str, cases: Option<&[u32]>) -> Result<Summary, AutobahnError> {
    let server = Server::parse(url)?;
    if agent.is_empty()
        || agent.len() > 64
        || !agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        // The agent names report files and goes into the query string unescaped.
        return Err(AutobahnError::Url(format!(
            "invalid agent {agent:?} (use 1-64 letters, digits, '.', '_' or '-')"
        )));
    }
    let mut peer = Peer::new();

    let count = peer.case_count(&server)?;
    let selected: Vec<u32> = match cases {
        None => (1..=count).collect(),
        Some([]) => return Err(AutobahnError::Url("no cases selected".to_owned())),
        Some(list) => {
            if let Some(bad) = list.iter().find(|&&n| n == 0 || n > count) {
                return Err(AutobahnError::Url(format!(
                    "case {bad} does not exist: the fuzzing server has cases 1-{count}"
                )));
            }
            list.to_vec()
        }
    };

    let mut ran: u32 = 0;
    for &case in &selected {
        let target = format!("/runCase?case={case}&agent={agent}");
        let mut conn = server.open(&target, &mut peer.rng, CASE_DEADLINE)?;
        match peer.session(&mut conn, true, &mut |_, _| {}) {
            End::TimedOut => {}
            End::Closed(_) | End::Failed(_) | End::Dropped => ran = ran.saturating_add(1),
        }
    }

    let target = format!("/updateReports?agent={agent}");
    let mut conn = server.open(&target, &mut peer.rng, REPORT_DEADLINE)?;
    if peer.session(&mut conn, false, &mut |_, _| {}) == End::TimedOut {
        return Err(AutobahnError::Protocol(format!(
            "the fuzzing server did not finish its reports within {} s",
            REPORT_DEADLINE.as_secs()
        )));
    }
    Ok(Summary {
        // At most `count` distinct cases, but a caller's list may repeat them.
        cases: u32::try_from(selected.len()).unwrap_or(u32::MAX),
        ran,
    })
}

/// The fuzzing server's address, from a `ws://HOST:PORT` URL.
#[derive(Debug, Clone)]
struct Server {
    /// The URL as given (for messages).
    url: String,
    /// `host[:port]` for the Host header, as the URL spells it.
    authority: String,
    addrs: Vec<SocketAddr>,
}

impl Server {
    fn parse(url: &str) -> Result<Server, AutobahnError> {
        let bad = |why: &str| {
            AutobahnError::Url(format!(
                "invalid --url {url:?}: {why} (use ws://HOST:PORT, e.g. ws://127.0.0.1:9001)"
            ))
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        match parsed.scheme() {
            "ws" => {}
            "wss" => {
                return Err(bad(
                    "wss is not supported here; the fuzzing server runs plain ws",
                ))
            }
            _ => return Err(bad("the scheme must be ws")),
        }
        // The case protocol lives at the server's root; a path would be silently dropped.
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err(bad("the URL must not have a path or query"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("the URL must not carry credentials"));
        }
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::from((ip, port))],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::from((ip, port))],
            Some(url::Host::Domain(name)) => (name, port)
                .to_socket_addrs()
                .map_err(|e| AutobahnError::Connect(format!("cannot resolve {name}: {e}")))?
                .collect(),
            None => return Err(bad("no host")),
        };
        let authority = &parsed[url::Position::BeforeHost..url::Position::AfterPort];
        Ok(Server {
            url: url.to_owned(),
            authority: authority.to_owned(),
            addrs,
        })
    }

    /// Connect, upgrade on `target`, and return the connection (with any frame bytes that came
    /// with the 101) and its deadline.
    fn open(
        &self,
        target: &str,
        rng: &mut StdRng,
        deadline: Duration,
    ) -> Result<Conn, AutobahnError> {
        let mut last = None;
        let mut stream = None;
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(mut stream) = stream else {
            let why = last.map_or_else(|| "no address".to_owned(), |e| e.to_string());
            return Err(AutobahnError::Connect(format!(
                "cannot reach the fuzzing server at {}: {why}",
                self.url
            )));
        };
        let io_err = |e: io::Error| {
            AutobahnError::Protocol(format!("upgrade on {target} at {}: {e}", self.url))
        };
        // Echoes are small and latency-graded (section 9.7/9.8): no Nagle delay.
        stream.set_nodelay(true).map_err(io_err)?;
        stream
            .set_write_timeout(Some(CASE_DEADLINE))
            .map_err(io_err)?;

        let handshake = Handshake::new(rng);
        let request = ws::encode_upgrade(target, &self.authority, &handshake.key, &[])
            .map_err(|e| AutobahnError::Url(format!("cannot build the upgrade request: {e}")))?;
        stream.write_all(&request).map_err(io_err)?;

        let upgrade_by = Instant::now() + CONNECT_TIMEOUT;
        let mut buf = Vec::new();
        loop {
            match ws::parse_upgrade_response(&buf, &handshake.accept) {
                Ok(Some(head)) => {
                    return Ok(Conn {
                        stream,
                        buf,
                        pos: head,
                        out: Vec::new(),
                        deadline: Instant::now() + deadline,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(AutobahnError::Protocol(format!(
                        "upgrade on {target} at {}: {e}",
                        self.url
                    )))
                }
            }
            match read_some(&mut stream, &mut buf, upgrade_by) {
                Ok(0) => {
                    return Err(AutobahnError::Protocol(format!(
                        "upgrade on {target} at {}: connection closed before the 101",
                        self.url
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(io_err(e)),
            }
        }
    }
}

/// One upgraded connection: input not yet consumed by the decoder, echoes not yet written.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of the unconsumed input in `buf`.
    pos: usize,
    out: Vec<u8>,
    deadline: Instant,
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server sent a close (its code) and we answered it.
    Closed(Option<u16>),
    /// The server broke the protocol; we sent the close code the error calls for.
    Failed(WsError),
    /// The TCP connection ended (EOF, reset, write failure) without a close frame from the
    /// server. Autobahn drops the connection itself in some cases, so this is a normal end.
    Dropped,
    /// The deadline passed first.
    TimedOut,
}

/// State kept across connections: the decoder (its buffer is reused) and the masking RNG.
struct Peer {
    decoder: Decoder,
    rng: StdRng,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            decoder: Decoder::new(MAX_MESSAGE, true),
            rng: StdRng::from_rng(&mut rand::rng()),
        }
    }

    /// `/getCaseCount`: the server sends the count as one text message, then closes.
    fn case_count(&mut self, server: &Server) -> Result<u32, AutobahnError> {
        let mut conn = server.open("/getCaseCount", &mut self.rng, CONNECT_TIMEOUT)?;
        let mut text: Option<Vec<u8>> = None;
        let end = self.session(&mut conn, false, &mut |is_text, data| {
            if is_text && text.is_none() {
                text = Some(data.to_vec());
            }
        });
        let Some(text) = text else {
            return Err(AutobahnError::Protocol(format!(
                "{} sent no case count on /getCaseCount (session ended: {end:?})",
                server.url
            )));
        };
        std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .ok_or_else(|| {
                AutobahnError::Protocol(format!(
                    "{} answered /getCaseCount with {:?}, not a number",
                    server.url,
                    String::from_utf8_lossy(&text[..text.len().min(64)])
                ))
            })
    }

    /// Serve one connection until it ends (rules 1-5 of the module docs). `on_message` sees
    /// every complete message; `echo` sends it back.
    fn session(
        &mut self,
        conn: &mut Conn,
        echo: bool,
        on_message: &mut dyn FnMut(bool, &[u8]),
    ) -> End {
        self.decoder.reset();
        loop {
            // Decode everything buffered, queueing the answers.
            loop {
                let (n, progress) = match self.decoder.decode(&conn.buf[conn.pos..]) {
                    Ok(step) => step,
                    Err(e) => {
                        ws::encode_close(&mut conn.out, e.close_code(), "", self.rng.random());
                        conn.finish();
                        return End::Failed(e);
                    }
                };
                conn.pos += n;
                match progress {
                    Progress::Partial if n == 0 => break,
                    Progress::Partial => {}
                    Progress::Frame(Frame::Message { text, data }) => {
                        on_message(text, data);
                        if echo {
                            let opcode = if text { OpCode::Text } else { OpCode::Binary };
                            ws::encode_frame(&mut conn.out, opcode, true, data, self.rng.random());
                        }
                    }
                    Progress::Frame(Frame::Ping(payload)) => {
                        ws::encode_frame(
                            &mut conn.out,
                            OpCode::Pong,
                            true,
                            payload,
                            self.rng.random(),
                        );
                    }
                    Progress::Frame(Frame::Pong(_)) => {}
                    Progress::Frame(Frame::Close { code, .. }) => {
                        let reply = code.filter(|&c| may_echo(c)).unwrap_or(1000);
                        ws::encode_close(&mut conn.out, reply, "", self.rng.random());
                        conn.finish();
                        return End::Closed(code);
                    }
                }
                if conn.out.len() >= FLUSH_AT && conn.flush().is_err() {
                    return End::Dropped;
                }
            }
            if conn.flush().is_err() {
                return End::Dropped;
            }
            conn.compact();
            match read_some(&mut conn.stream, &mut conn.buf, conn.deadline) {
                Ok(0) => return End::Dropped,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return End::TimedOut,
                Err(_) => return End::Dropped,
            }
        }
    }
}

/// A close code we may send back (RFC 6455 §7.4): the decoder only reports sendable codes, but
/// echoing 1005, 1006 or 1015 would itself be a violation, so it is checked here too.
fn may_echo(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl Conn {
    /// Write every queued byte.
    fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Drop consumed input so the buffer does not grow with the whole session.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Send the queued close, then wait (bounded by [`LINGER`]) for the server to close TCP,
    /// discarding whatever else it sends, and shut the socket down.
    fn finish(&mut self) {
        if self.flush().is_ok() {
            let until = Instant::now() + LINGER;
            let mut sink = [0u8; 16 * 1024];
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                    break;
                }
                match self.stream.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        // The server may already be gone; nothing is left to report either way.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// One `read` into the end of `buf`, waiting at most until `until`. `Ok(0)` is end of stream;
/// a passed deadline is an error of kind `TimedOut`.
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>, until: Instant) -> io::Result<usize> {
    loop {
        let left = until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))?;
        stream.set_read_timeout(Some(left))?;
        let len = buf.len();
        buf.resize(len + READ_CHUNK, 0);
        let result = stream.read(&mut buf[len..]);
        buf.truncate(len + *result.as_ref().unwrap_or(&0));
        match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
            other => return other,
        }
    }
}

/// A read timeout shows up as `WouldBlock` on Unix and `TimedOut` on Windows.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread::{self, JoinHandle};

    use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode as TOpCode};
    use tungstenite::protocol::frame::{CloseFrame, Frame as TFrame};
    use tungstenite::{Bytes, Message};

    /// Bound on every wait in the fake server.
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// What the fake server saw on one connection: the request target and every message the
    /// client sent, in order (the client's close included).
    type Seen = Vec<(String, Vec<Message>)>;

    /// A fake fuzzing server on 127.0.0.1:0 serving exactly `connections` connections, then
    /// returning what it saw. `/getCaseCount` answers `count`; `/runCase?case=N` plays
    /// [`script`]`(N)`; `/updateReports` just closes.
    fn fake_server(count: u32, connections: usize) -> (String, JoinHandle<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let handle = thread::spawn(move || {
            let mut seen = Seen::new();
            let until = Instant::now() + TEST_TIMEOUT;
            while seen.len() < connections && Instant::now() < until {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(e) => panic!("accept: {e}"),
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(TEST_TIMEOUT)).unwrap();
                seen.push(serve_one(stream, count));
            }
            seen
        });
        (url, handle)
    }

    // The handshake callback's error type is tungstenite's (an HTTP response), not ours.
    #[allow(clippy::result_large_err)]
    fn serve_one(stream: TcpStream, count: u32) -> (String, Vec<Message>) {
        let mut target = String::new();
        let mut ws = tungstenite::accept_hdr(
            stream,
            |req: &tungstenite::handshake::server::Request, resp| {
                target = req.uri().to_string();
                Ok(resp)
            },
        )
        .unwrap();
        if target == "/getCaseCount" {
            ws.send(Message::text(count.to_string())).unwrap();
            ws.close(None).unwrap();
        } else if let Some(rest) = target.strip_prefix("/runCase?case=") {
            let case: u32 = rest.split('&').next().unwrap().parse().unwrap();
            for message in script(case) {
                ws.send(message).unwrap();
            }
        } else {
            ws.close(None).unwrap();
        }
        let mut got = Vec::new();
        // Ends with ConnectionClosed once the closing handshake is complete (or on a timeout).
        while let Ok(message) = ws.read() {
            got.push(message);
        }
        (target, got)
    }

    fn close(code: u16, reason: &'static str) -> Message {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
    }

    /// Case 1: text, binary, ping, a fragmented text with a ping between its fragments, close.
    /// Case 2: a text frame that is not UTF-8. Case 3: a close without a code.
    fn script(case: u32) -> Vec<Message> {
        match case {
            1 => vec![
                Message::text("héllo"),
                Message::binary(vec![0u8, 1, 2, 255]),
                Message::Ping(Bytes::from_static(b"p1")),
                Message::Frame(TFrame::message(
                    &b"frag"[..],
                    TOpCode::Data(Data::Text),
                    false,
                )),
                Message::Frame(TFrame::ping(&b"mid"[..])),
                Message::Frame(TFrame::message(
                    &b"ment"[..],
                    TOpCode::Data(Data::Continue),
                    true,
                )),
                close(1000, "bye"),
            ],
            2 => vec![Message::Frame(TFrame::message(
                vec![b'o', b'k', 0xce, 0xba, 0xff],
                TOpCode::Data(Data::Text),
                true,
            ))],
            3 => vec![Message::Close(None)],
            _ => vec![close(1000, "")],
        }
    }

    fn close_code(message: &Message) -> Option<u16> {
        match message {
            Message::Close(Some(frame)) => Some(u16::from(frame.code)),
            _ => None,
        }
    }

    #[test]
    fn echoes_messages_answers_pings_and_closes_against_tungstenite() {
        let (url, server) = fake_server(3, 5);
        let summary = run(&url, "test", None).unwrap();
        assert_eq!(summary, Summary { cases: 3, ran: 3 });
        let seen = server.join().unwrap();
        let targets: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            targets,
            [
                "/getCaseCount",
                "/runCase?case=1&agent=test",
                "/runCase?case=2&agent=test",
                "/runCase?case=3&agent=test",
                "/updateReports?agent=test",
            ]
        );
        // getCaseCount: nothing echoed, only the close answered.
        assert_eq!(seen[0].1.len(), 1);
        assert_eq!(close_code(&seen[0].1[0]), Some(1000));
        assert_eq!(
            seen[1].1,
            vec![
                Message::text("héllo"),
                Message::binary(vec![0u8, 1, 2, 255]),
                Message::Pong(Bytes::from_static(b"p1")),
                Message::Pong(Bytes::from_static(b"mid")),
                Message::text("fragment"),
                close(1000, ""),
            ]
        );
        // Invalid UTF-8 fails the connection with 1007 and nothing is echoed.
        assert_eq!(seen[2].1.len(), 1);
        assert_eq!(close_code(&seen[2].1[0]), Some(1007));
        // A close without a code is answered with 1000.
        assert_eq!(seen[3].1.len(), 1);
        assert_eq!(close_code(&seen[3].1[0]), Some(1000));
    }

    #[test]
    fn runs_only_the_selected_cases() {
        let (url, server) = fake_server(3, 3);
        let summary = run(&url, "test", Some(&[3])).unwrap();
        assert_eq!(summary, Summary { cases: 1, ran: 1 });
        let seen = server.join().unwrap();
        assert_eq!(seen[1].0, "/runCase?case=3&agent=test");
        assert_eq!(seen[2].0, "/updateReports?agent=test");
    }

    #[test]
    fn a_case_the_server_lacks_is_bad_input() {
        let (url, server) = fake_server(3, 1);
        let err = run(&url, "test", Some(&[2, 4])).unwrap_err();
        assert!(
            matches!(&err, AutobahnError::Url(m) if m.contains("case 4") && m.contains("1-3")),
            "{err}"
        );
        assert_eq!(server.join().unwrap().len(), 1);
    }

    #[test]
    fn an_unreachable_server_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = run(&url, "test", None).unwrap_err();
        assert!(matches!(err, AutobahnError::Connect(_)), "{err}");
    }

    #[test]
    fn a_server_refusing_the_upgrade_is_a_protocol_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(TEST_TIMEOUT)).unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "client closed before the end of its request");
                request.extend_from_slice(&chunk[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        let err = run(&url, "test", None).unwrap_err();
        assert!(
            matches!(&err, AutobahnError::Protocol(m) if m.contains("404")),
            "{err}"
        );
        server.join().unwrap();
    }

    #[test]
    fn bad_urls_and_agents_are_refused_before_connecting() {
        for url in [
            "wss://127.0.0.1:9001",
            "http://127.0.0.1:9001",
            "ws://127.0.0.1:9001/path",
            "ws://127.0.0.1:9001/?x=1",
            "ws://user:pw@127.0.0.1:9001",
            "not a url",
        ] {
            let err = run(url, "test", None).unwrap_err();
            assert!(matches!(err, AutobahnError::Url(_)), "{url}: {err}");
        }
        for agent in ["", "a b", "a&case=1", "ä", &"x".repeat(65)] {
            let err = run("ws://127.0.0.1:9", agent, None).unwrap_err();
            assert!(matches!(err, AutobahnError::Url(_)), "{agent:?}: {err}");
        }
        let server = Server::parse("ws://localhost:9001/").unwrap();
        assert_eq!(server.authority, "localhost:9001");
        let server = Server::parse("ws://[::1]:9001").unwrap();
        assert_eq!(server.authority, "[::1]:9001");
        assert_eq!(
            server.addrs,
            vec!["[::1]:9001".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn parse_cases_reads_lists_and_ranges() {
        assert_eq!(
            parse_cases("1-3,42,2").unwrap(),
            CaseList(vec![1, 2, 3, 42])
        );
        assert_eq!(parse_cases(" 7 ").unwrap(), CaseList(vec![7]));
        for bad in [
            "",
            ",",
            "0",
            "3-1",
            "x",
            "1-",
            "-2",
            "1-100001",
            "4294967296",
        ] {
            assert!(parse_cases(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn read_some_gives_up_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_silent, _) = listener.accept().unwrap();
        let started = Instant::now();
        let mut buf = vec![1, 2, 3];
        let err =
            read_some(&mut client, &mut buf, started + Duration::from_millis(100)).unwrap_err();
        assert!(is_timeout(&err), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            buf,
            [1, 2, 3],
            "a timed-out read leaves the buffer as it was"
        );
    }

    #[test]
    fn only_sendable_codes_are_echoed() {
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(may_echo(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!may_echo(code), "{code}");
        }
    }
}
