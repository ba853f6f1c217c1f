//! Per-worker measurements: phase histograms, counters and error classes.
//!
//! Each worker owns one [`Recorder`]; nothing here is shared or locked. The engine merges the
//! recorders after the workers join ([`Recorder::merge`]), and reports read the merged one.
//! Histograms hold nanoseconds (1 ns .. 60 s, 3 significant digits) so the loopback floor of a
//! few tens of microseconds keeps its resolution.
//!
//! This module must not read a clock or touch a socket: callers pass durations in.

use std::fmt::{self, Write as _};

use hdrhistogram::Histogram;

pub mod floor;
pub mod probe;
pub mod run;

/// Highest value a phase histogram tracks: 60 s in nanoseconds. Longer values are clamped.
pub const HIST_MAX_NS: u64 = 60_000_000_000;
/// Significant digits kept by every phase histogram.
pub const HIST_SIGFIG: u8 = 3;

/// A timed phase of a connection's or a request's life (definitions in DESIGN.md / README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `connect()` called → socket writable with no pending error.
    Connect,
    /// TCP established → TLS handshake complete.
    Tls,
    /// The same as `Tls`, for full handshakes only (no session resumed).
    TlsFull,
    /// The same as `Tls`, for handshakes that resumed a session (ticket or session id).
    TlsResumed,
    /// Request first byte written → first response byte (plaintext) available.
    Ttfb,
    /// Request first byte written → response fully framed.
    Total,
    /// WebSocket upgrade request first byte written → 101 validated.
    Upgrade,
    /// WebSocket upgrade request first byte written → first data message (not a heartbeat
    /// reply) fully received. Never shorter than `Upgrade` of the same connection.
    FirstMessage,
    /// One-way message latency: receive time − the server's timestamp in the message
    /// (assumes synchronized clocks).
    Latency,
    /// Round trip: an echo message or a protocol ping sent → its echo or pong received.
    Rtt,
    /// A connection lost → its replacement upgraded.
    Outage,
    /// A connection lost → every subscription sent again on its replacement.
    Resubscribe,
    /// Rate mode: the request's intended send time → response fully framed.
    Corrected,
    /// Rate mode: actual send time − intended send time (the client's own lag).
    SendLag,
    /// Connection-rate mode: `connect()` called − the connection's intended open time.
    OpenLag,
}

impl Phase {
    /// Number of phases.
    pub const COUNT: usize = 15;
    /// Every phase, in report order.
    pub const ALL: [Phase; Phase::COUNT] = [
        Phase::Connect,
        Phase::Tls,
        Phase::TlsFull,
        Phase::TlsResumed,
        Phase::Ttfb,
        Phase::Total,
        Phase::Upgrade,
        Phase::FirstMessage,
        Phase::Latency,
        Phase::Rtt,
        Phase::Outage,
        Phase::Resubscribe,
        Phase::Corrected,
        Phase::SendLag,
        Phase::OpenLag,
    ];
    /// The phases an HTTP run reports.
    pub const HTTP: [Phase; 6] = [
        Phase::Connect,
        Phase::Tls,
        Phase::TlsFull,
        Phase::TlsResumed,
        Phase::Ttfb,
        Phase::Total,
    ];
    /// The phases a WebSocket run reports.
    pub const WS: [Phase; 10] = [
        Phase::Connect,
        Phase::Tls,
        Phase::TlsFull,
        Phase::TlsResumed,
        Phase::Upgrade,
        Phase::FirstMessage,
        Phase::Latency,
        Phase::Rtt,
        Phase::Outage,
        Phase::Resubscribe,
    ];

    /// The phases a run of this mode reports ("http", "ws").
    pub fn for_mode(mode: &str) -> &'static [Phase] {
        match mode {
            "ws" => &Phase::WS,
            _ => &Phase::HTTP,
        }
    }

    /// Stable lower-case name used in text and JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::TlsFull => "tls_full",
            Phase::TlsResumed => "tls_resumed",
            Phase::Ttfb => "ttfb",
            Phase::Total => "total",
            Phase::Upgrade => "upgrade",
            Phase::FirstMessage => "first_message",
            Phase::Latency => "latency",
            Phase::Rtt => "rtt",
            Phase::Outage => "outage",
            Phase::Resubscribe => "resubscribe",
            Phase::Corrected => "corrected",
            Phase::SendLag => "send_lag",
            Phase::OpenLag => "open_lag",
        }
    }

    /// Index into per-phase arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a connection or a request failed. Each class is counted separately and never folded
/// into latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The server refused the TCP connection (ECONNREFUSED).
    ConnectRefused,
    /// The TCP connection did not complete within `--connect-timeout`.
    ConnectTimeout,
    /// The TCP connection was reset while connecting (ECONNRESET before established).
    ConnectReset,
    /// No local address/port was available (EADDRNOTAVAIL): a client-side limit.
    AddrNotAvailable,
    /// The process ran out of file descriptors (EMFILE/ENFILE): a client-side limit.
    FdLimit,
    /// The server's certificate was rejected (unknown issuer, bad name, expired, …).
    TlsCertificate,
    /// The peer sent a fatal TLS alert during the handshake.
    TlsAlert,
    /// Any other TLS handshake failure (protocol, decrypt, reset during handshake, …).
    TlsHandshake,
    /// A request saw no complete response within `--timeout`.
    ReadTimeout,
    /// The connection was reset (ECONNRESET/EPIPE) while a request was outstanding.
    ResetMidResponse,
    /// The server closed the connection (EOF) while a request was outstanding.
    EofMidResponse,
    /// The response could not be framed (malformed status line, headers, chunk sizes, …).
    Protocol,
    /// Any other socket error.
    Io,
    /// The server answered the WebSocket upgrade with something other than a valid 101.
    UpgradeRejected,
    /// The server broke the WebSocket protocol (bad frame, bad UTF-8, oversize message).
    WsProtocol,
    /// The WebSocket connection ended without a close frame (close code 1006) by a FIN or a
    /// socket error other than a reset.
    WsAbnormalClose,
    /// No data message arrived for `--stale-after`: the connection was replaced.
    Stale,
    /// A protocol ping went unanswered for `--pong-timeout`: the connection was replaced.
    PongTimeout,
    /// An open WebSocket connection was reset (ECONNRESET/EPIPE): no close frame and no FIN.
    WsReset,
}

impl ErrorClass {
    /// Number of error classes.
    pub const COUNT: usize = 19;
    /// Every class, in report order.
    pub const ALL: [ErrorClass; ErrorClass::COUNT] = [
        ErrorClass::ConnectRefused,
        ErrorClass::ConnectTimeout,
        ErrorClass::ConnectReset,
        ErrorClass::AddrNotAvailable,
        ErrorClass::FdLimit,
        ErrorClass::TlsCertificate,
        ErrorClass::TlsAlert,
        ErrorClass::TlsHandshake,
        ErrorClass::ReadTimeout,
        ErrorClass::ResetMidResponse,
        ErrorClass::EofMidResponse,
        ErrorClass::Protocol,
        ErrorClass::Io,
        ErrorClass::UpgradeRejected,
        ErrorClass::WsProtocol,
        ErrorClass::WsAbnormalClose,
        ErrorClass::Stale,
        ErrorClass::PongTimeout,
        ErrorClass::WsReset,
    ];

    /// Stable snake_case name used in text and JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::ConnectRefused => "connect_refused",
            ErrorClass::ConnectTimeout => "connect_timeout",
            ErrorClass::ConnectReset => "connect_reset",
            ErrorClass::AddrNotAvailable => "local_addr_exhausted",
            ErrorClass::FdLimit => "local_fd_limit",
            ErrorClass::TlsCertificate => "tls_certificate",
            ErrorClass::TlsAlert => "tls_alert",
            ErrorClass::TlsHandshake => "tls_handshake",
            ErrorClass::ReadTimeout => "read_timeout",
            ErrorClass::ResetMidResponse => "reset_mid_response",
            ErrorClass::EofMidResponse => "eof_mid_response",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Io => "io",
            ErrorClass::UpgradeRejected => "upgrade_rejected",
            ErrorClass::WsProtocol => "ws_protocol",
            ErrorClass::WsAbnormalClose => "ws_abnormal_close",
            ErrorClass::Stale => "stale",
            ErrorClass::PongTimeout => "pong_timeout",
            ErrorClass::WsReset => "ws_reset",
        }
    }

    /// True when the client itself hit a limit, not the server.
    pub fn is_local(self) -> bool {
        matches!(self, ErrorClass::AddrNotAvailable | ErrorClass::FdLimit)
    }

    /// Index into per-class arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// Classify an OS error seen while a TCP connection was being established.
    pub fn from_connect_error(e: &std::io::Error) -> ErrorClass {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => ErrorClass::ConnectRefused,
            Some(libc::ECONNRESET) | Some(libc::ECONNABORTED) => ErrorClass::ConnectReset,
            Some(libc::ETIMEDOUT) => ErrorClass::ConnectTimeout,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => ErrorClass::AddrNotAvailable,
            Some(libc::EMFILE) | Some(libc::ENFILE) => ErrorClass::FdLimit,
            _ => ErrorClass::Io,
        }
    }

    /// Classify an OS error seen on an established connection with a request outstanding.
    pub fn from_io_error(e: &std::io::Error) -> ErrorClass {
        match e.raw_os_error() {
            Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => {
                ErrorClass::ResetMidResponse
            }
            Some(libc::ETIMEDOUT) => ErrorClass::ReadTimeout,
            _ => ErrorClass::Io,
        }
    }
}

/// HTTP response status classes counted separately (429 apart from the other 4xx).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 1xx final responses (101 outside a WebSocket upgrade).
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirect,
    /// 4xx except 429.
    ClientError,
    /// 429 Too Many Requests.
    TooManyRequests,
    /// 5xx.
    ServerError,
    /// Outside 100..=599.
    Other,
}

impl StatusClass {
    /// Number of status classes.
    pub const COUNT: usize = 7;
    /// Every class, in report order.
    pub const ALL: [StatusClass; StatusClass::COUNT] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirect,
        StatusClass::ClientError,
        StatusClass::TooManyRequests,
        StatusClass::ServerError,
        StatusClass::Other,
    ];

    /// The class of a status code.
    #[inline]
    pub fn of(status: u16) -> StatusClass {
        match status {
            429 => StatusClass::TooManyRequests,
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }

    /// Stable name used in reports: "1xx", "2xx", "3xx", "4xx", "429", "5xx", "other".
    pub fn name(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::TooManyRequests => "429",
            StatusClass::ServerError => "5xx",
            StatusClass::Other => "other",
        }
    }

    /// Index into per-class arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Plain counters of one worker (or, after merging, of the run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests whose first byte was written.
    pub requests: u64,
    /// Responses fully framed.
    pub responses: u64,
    /// Responses by [`StatusClass`].
    pub status: [u64; StatusClass::COUNT],
    /// Failures by [`ErrorClass`].
    pub errors: [u64; ErrorClass::COUNT],
    /// Bytes read from sockets (TLS records included).
    pub bytes_in: u64,
    /// Bytes written to sockets (TLS records included).
    pub bytes_out: u64,
    /// TCP connections whose `connect()` was called.
    pub connections_opened: u64,
    /// TCP connections that completed (and, for TLS, finished the handshake).
    pub connections_established: u64,
    /// Requests sent on a connection that had already carried a request.
    pub reused_requests: u64,
    /// TLS handshakes that were full (including HelloRetryRequest).
    pub handshakes_full: u64,
    /// TLS handshakes that resumed a session.
    pub handshakes_resumed: u64,
    /// Connections closed because the server said `Connection: close` (or HTTP/1.0, or a
    /// close-delimited body).
    pub server_closes: u64,
    /// Rate mode: requests that were due but never written (the client could not keep up).
    pub unsent: u64,
    /// Connection-rate mode: connections that were due but never opened (every slot busy).
    pub unopened: u64,
    /// WebSocket counters.
    pub ws: WsCounters,
}

impl Counters {
    /// Add another worker's counters into these.
    pub fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.responses += o.responses;
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(o.errors.iter()) {
            *a += b;
        }
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.connections_opened += o.connections_opened;
        self.connections_established += o.connections_established;
        self.reused_requests += o.reused_requests;
        self.handshakes_full += o.handshakes_full;
        self.handshakes_resumed += o.handshakes_resumed;
        self.server_closes += o.server_closes;
        self.unsent += o.unsent;
        self.unopened += o.unopened;
        self.ws.add(&o.ws);
    }

    /// Total of every error class.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Responses whose status is neither 2xx nor 3xx: 4xx, 429, 5xx, a final 1xx, or outside
    /// 100..=599.
    pub fn unsuccessful_responses(&self) -> u64 {
        self.responses
            - self.status[StatusClass::Success.index()]
            - self.status[StatusClass::Redirect.index()]
    }

    /// The HTTP error rate: failures (every error class: refused or reset connections, timeouts,
    /// protocol errors, …) plus responses that are not 2xx/3xx, over responses plus failures
    /// (every request answered or failed, and every connection that failed). 0 with neither.
    pub fn error_rate(&self) -> f64 {
        let failures = self.total_errors();
        let all = self.responses + failures;
        if all == 0 {
            0.0
        } else {
            (failures + self.unsuccessful_responses()) as f64 / all as f64
        }
    }

    /// The WebSocket error rate: failures (every error class) over connections attempted
    /// (`connect()` calls). 0 with no attempt.
    pub fn ws_error_rate(&self) -> f64 {
        if self.connections_opened == 0 {
            0.0
        } else {
            self.total_errors() as f64 / self.connections_opened as f64
        }
    }

    /// Reused requests ÷ requests (0 when no request was sent).
    pub fn reuse_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.reused_requests as f64 / self.requests as f64
        }
    }
}

/// Why a WebSocket connection was replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReconnectCause {
    /// The server sent a close frame.
    ServerClose,
    /// The connection ended without a close frame (EOF, reset).
    Abnormal,
    /// Connect, TLS, upgrade or protocol failure.
    Error,
    /// No data message for `--stale-after`.
    Stale,
    /// A protocol ping unanswered for `--pong-timeout`.
    PongTimeout,
}

impl ReconnectCause {
    /// Number of causes.
    pub const COUNT: usize = 5;
    /// Every cause, in report order.
    pub const ALL: [ReconnectCause; ReconnectCause::COUNT] = [
        ReconnectCause::ServerClose,
        ReconnectCause::Abnormal,
        ReconnectCause::Error,
        ReconnectCause::Stale,
        ReconnectCause::PongTimeout,
    ];

    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ReconnectCause::ServerClose => "server_close",
            ReconnectCause::Abnormal => "abnormal_close",
            ReconnectCause::Error => "error",
            ReconnectCause::Stale => "stale",
            ReconnectCause::PongTimeout => "pong_timeout",
        }
    }

    /// Index into per-cause arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Close codes counted one by one (1000..=1015); anything else lands in `other`.
pub const CLOSE_CODE_FIRST: u16 = 1000;
/// Number of individually counted close codes.
pub const CLOSE_CODES: usize = 16;

/// WebSocket counters (all zero in an HTTP run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsCounters {
    /// Messages received (text or binary, reassembled), replies to a text heartbeat included.
    pub messages_in: u64,
    /// Data messages sent (subscriptions, echo payloads, text heartbeats).
    pub messages_out: u64,
    /// Upgrades validated (101).
    pub upgraded: u64,
    /// Subscription messages sent.
    pub subscriptions_sent: u64,
    /// Connections that sent their subscriptions again after a reconnect.
    pub resubscribed: u64,
    /// Reconnects by cause.
    pub reconnects: [u64; ReconnectCause::COUNT],
    /// Slots that gave up after `--max-retries`.
    pub retries_exhausted: u64,
    /// Close codes the server sent, 1000..=1015.
    pub close_codes: [u64; CLOSE_CODES],
    /// Close codes the server sent outside 1000..=1015 (or a close frame without a code).
    pub close_codes_other: u64,
    /// Protocol pings answered with a pong.
    pub pings_answered: u64,
    /// Heartbeats sent: protocol pings (ping mode, `--heartbeat ping`) and text heartbeats.
    pub pings_sent: u64,
    /// Their answers: pongs, and replies to a text heartbeat (see `engine::ws` rule 7).
    pub pongs_received: u64,
    /// Sequence gaps (a message whose sequence number skipped ahead).
    pub seq_gaps: u64,
    /// Sequence numbers skipped in all gaps.
    pub seq_missing: u64,
    /// Messages whose sequence number went backwards (a new numbering).
    pub seq_backwards: u64,
    /// Messages without the `--ts-field` (or not a number).
    pub ts_missing: u64,
    /// Messages whose timestamp lay in the future (clock skew): counted here, not recorded as
    /// latency.
    pub ts_future: u64,
    /// Messages queued while disconnected and sent after resubscribing.
    pub buffered_sent: u64,
    /// Messages dropped because the send buffer was full while disconnected.
    pub buffer_dropped: u64,
}

impl WsCounters {
    /// Add another worker's WebSocket counters into these.
    pub fn add(&mut self, o: &WsCounters) {
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.upgraded += o.upgraded;
        self.subscriptions_sent += o.subscriptions_sent;
        self.resubscribed += o.resubscribed;
        for (a, b) in self.reconnects.iter_mut().zip(o.reconnects.iter()) {
            *a += b;
        }
        self.retries_exhausted += o.retries_exhausted;
        for (a, b) in self.close_codes.iter_mut().zip(o.close_codes.iter()) {
            *a += b;
        }
        self.close_codes_other += o.close_codes_other;
        self.pings_answered += o.pings_answered;
        self.pings_sent += o.pings_sent;
        self.pongs_received += o.pongs_received;
        self.seq_gaps += o.seq_gaps;
        self.seq_missing += o.seq_missing;
        self.seq_backwards += o.seq_backwards;
        self.ts_missing += o.ts_missing;
        self.ts_future += o.ts_future;
        self.buffered_sent += o.buffered_sent;
        self.buffer_dropped += o.buffer_dropped;
    }

    /// Count a close code the server sent.
    pub fn close_code(&mut self, code: Option<u16>) {
        match code {
            Some(c) if (CLOSE_CODE_FIRST..CLOSE_CODE_FIRST + CLOSE_CODES as u16).contains(&c) => {
                self.close_codes[(c - CLOSE_CODE_FIRST) as usize] += 1
            }
            _ => self.close_codes_other += 1,
        }
    }

    /// Total reconnects, all causes.
    pub fn total_reconnects(&self) -> u64 {
        self.reconnects.iter().sum()
    }
}

/// What the TLS layer negotiated, as first seen by a worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// e.g. "TLSv1_3".
    pub version: Option<String>,
    /// e.g. "TLS13_AES_128_GCM_SHA256".
    pub cipher_suite: Option<String>,
    /// e.g. "X25519".
    pub kx_group: Option<String>,
    /// Negotiated ALPN protocol, if any.
    pub alpn: Option<String>,
}

impl TlsFacts {
    /// True once a handshake has filled the facts in.
    pub fn is_known(&self) -> bool {
        self.version.is_some()
    }
}

/// One interval of an interval log: the histograms of the phases that had samples in it.
#[derive(Clone, Debug)]
pub struct Interval {
    /// Offset of the interval from the start of the measured window.
    pub start: std::time::Duration,
    /// Length of the interval (one second, the last one shorter).
    pub length: std::time::Duration,
    /// All workers merged; only phases with samples.
    pub hists: Vec<(Phase, Histogram<u64>)>,
}

/// Distinct reasons kept per error class; failures with a further reason are counted together
/// in [`Reasons::other`], so a server that varies its faults cannot grow the report.
pub const MAX_REASONS: usize = 4;

/// Why failures happened, for the classes whose failures carry a reason (protocol errors:
/// "response head has more than 1024 header fields", "server sent a masked frame", …): the
/// first distinct reasons seen and how often each occurred. Text is stored once per distinct
/// reason; counting one more failure of a known reason allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reasons {
    /// `(class, reason, failures)` in the order first seen, at most [`MAX_REASONS`] per class.
    kept: Vec<(ErrorClass, String, u64)>,
    /// Per class: failures whose reason was not kept (more than [`MAX_REASONS`] distinct ones).
    other: [u64; ErrorClass::COUNT],
}

impl Reasons {
    /// Count one failure of `class` for `reason`.
    pub fn add(&mut self, class: ErrorClass, reason: &str, n: u64) {
        if let Some(entry) = self
            .kept
            .iter_mut()
            .find(|(c, r, _)| *c == class && r == reason)
        {
            entry.2 = entry.2.saturating_add(n);
        } else if self.kept.iter().filter(|(c, ..)| *c == class).count() < MAX_REASONS {
            self.kept.push((class, reason.to_owned(), n));
        } else {
            let other = &mut self.other[class.index()];
            *other = other.saturating_add(n);
        }
    }

    /// Add another worker's reasons into these.
    pub fn merge(&mut self, o: &Reasons) {
        for (class, reason, n) in &o.kept {
            self.add(*class, reason, *n);
        }
        for (a, b) in self.other.iter_mut().zip(o.other.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// The reasons of one class, most frequent first (ties in the order first seen), then the
    /// failures whose reason was not kept, if any.
    pub fn of(&self, class: ErrorClass) -> (Vec<(&str, u64)>, u64) {
        let mut list: Vec<(&str, u64)> = self
            .kept
            .iter()
            .filter(|(c, ..)| *c == class)
            .map(|(_, r, n)| (r.as_str(), *n))
            .collect();
        list.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        (list, self.other[class.index()])
    }

    /// True when no failure carried a reason.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.other.iter().all(|&n| n == 0)
    }
}

/// One worker's measurements.
#[derive(Clone, Debug)]
pub struct Recorder {
    hist: [Histogram<u64>; Phase::COUNT],
    /// Samples since the last interval cut, when interval logging is on.
    interval: Option<Box<[Histogram<u64>; Phase::COUNT]>>,
    /// The live line's phase and its low-precision samples since the worker last handed them
    /// over ([`Recorder::enable_recent`]).
    recent: Option<Box<(Phase, Histogram<u64>)>>,
    /// Counters.
    pub counters: Counters,
    /// TLS facts from the first completed handshake.
    pub tls: TlsFacts,
    /// Unit of the server timestamps used for message latency (given or inferred).
    pub ts_unit: Option<&'static str>,
    /// Why failures happened, where the engine knows ([`Recorder::reason`]).
    pub reasons: Reasons,
    /// Reused buffer a reason is formatted into before it is looked up.
    reason_text: String,
}

/// A fresh phase histogram with the crate's bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIG)
        .expect("static histogram bounds are valid")
}

/// A histogram for the live line's percentiles: the crate's range at 2 significant digits
/// (1 %), small enough to add and reset a few times a second.
pub fn new_recent_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 2).expect("static histogram bounds are valid")
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder. Allocates the histograms (≈216 KiB each) once.
    pub fn new() -> Recorder {
        Recorder {
            hist: std::array::from_fn(|_| new_histogram()),
            interval: None,
            recent: None,
            counters: Counters::default(),
            tls: TlsFacts::default(),
            ts_unit: None,
            reasons: Reasons::default(),
            reason_text: String::new(),
        }
    }

    /// Record one duration, in nanoseconds, for a phase. Values above [`HIST_MAX_NS`] are
    /// clamped; zero is recorded as 1 ns. Never allocates.
    #[inline]
    pub fn record(&mut self, phase: Phase, ns: u64) {
        self.hist[phase.index()].saturating_record(ns.max(1));
        if let Some(iv) = &mut self.interval {
            iv[phase.index()].saturating_record(ns.max(1));
        }
        if let Some(r) = &mut self.recent {
            if r.0 == phase {
                r.1.saturating_record(ns.max(1));
            }
        }
    }

    /// Also record `phase` into a small low-precision histogram the live progress line takes
    /// its percentiles of the last second from ([`Recorder::recent`]). Allocates it once.
    pub fn enable_recent(&mut self, phase: Phase) {
        self.recent = Some(Box::new((phase, new_recent_histogram())));
    }

    /// The live line's histogram (the caller hands it over and resets it); None when off.
    pub fn recent(&mut self) -> Option<&mut Histogram<u64>> {
        self.recent.as_mut().map(|r| &mut r.1)
    }

    /// Add a whole histogram (same bounds) to a phase: how reports from other processes are
    /// merged exactly. Errors only if `h` holds values outside the phase histogram's range.
    pub fn add_histogram(
        &mut self,
        phase: Phase,
        h: &Histogram<u64>,
    ) -> Result<(), hdrhistogram::AdditionError> {
        self.hist[phase.index()].add(h)
    }

    /// Hand over a stage window's measurements (histograms, counters, facts, reasons) and go
    /// on from empty. Interval logging and the live line's samples stay on with what they
    /// hold: they are cut by time, not by stage (a recorder replaced by an empty one had
    /// neither, and a staged run's `--hlog` ended with its first stage).
    pub fn take_window(&mut self) -> Recorder {
        let mut next = Recorder::new();
        next.interval = self.interval.take();
        next.recent = self.recent.take();
        std::mem::replace(self, next)
    }

    /// Keep a second set of histograms for interval logs (`--hlog`).
    pub fn enable_intervals(&mut self) {
        self.interval = Some(Box::new(std::array::from_fn(|_| new_histogram())));
    }

    /// The samples since the previous cut (phases with samples only), and start a new interval.
    /// Empty when interval logging is off.
    pub fn cut_interval(&mut self) -> Vec<(Phase, Histogram<u64>)> {
        let Some(iv) = &mut self.interval else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in Phase::ALL {
            let h = &mut iv[p.index()];
            if !h.is_empty() {
                out.push((p, h.clone()));
                h.reset();
            }
        }
        out
    }

    /// Count one failure.
    #[inline]
    pub fn error(&mut self, class: ErrorClass) {
        self.counters.errors[class.index()] += 1;
    }

    /// Note why a failure of `class` happened; the failure itself is counted by
    /// [`Recorder::error`]. Formats into a reused buffer: only a reason never seen before
    /// allocates (its text is kept, up to [`MAX_REASONS`] per class).
    pub fn reason(&mut self, class: ErrorClass, why: &dyn fmt::Display) {
        self.reason_text.clear();
        let _ = write!(self.reason_text, "{why}");
        self.reasons.add(class, &self.reason_text, 1);
    }

    /// Count one fully framed response with this status code.
    #[inline]
    pub fn response(&mut self, status: u16) {
        self.counters.responses += 1;
        self.counters.status[StatusClass::of(status).index()] += 1;
    }

    /// The histogram of a phase.
    pub fn histogram(&self, phase: Phase) -> &Histogram<u64> {
        &self.hist[phase.index()]
    }

    /// Add another recorder's histograms, counters and (if still unknown) TLS facts.
    pub fn merge(&mut self, other: &Recorder) {
        for (a, b) in self.hist.iter_mut().zip(other.hist.iter()) {
            a.add(b).expect("phase histograms share bounds");
        }
        self.counters.add(&other.counters);
        if !self.tls.is_known() {
            self.tls = other.tls.clone();
        }
        if self.ts_unit.is_none() {
            self.ts_unit = other.ts_unit;
        }
        self.reasons.merge(&other.reasons);
    }

    /// Forget everything measured so far but the TLS facts (used when a warm-up ends).
    pub fn reset(&mut self) {
        for h in &mut self.hist {
            h.reset();
        }
        if let Some(iv) = &mut self.interval {
            for h in iv.iter_mut() {
                h.reset();
            }
        }
        self.counters = Counters::default();
        self.reasons = Reasons::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_put_429_apart() {
        assert_eq!(StatusClass::of(429), StatusClass::TooManyRequests);
        assert_eq!(StatusClass::of(404), StatusClass::ClientError);
        assert_eq!(StatusClass::of(200), StatusClass::Success);
        assert_eq!(StatusClass::of(503), StatusClass::ServerError);
        assert_eq!(StatusClass::of(302), StatusClass::Redirect);
        assert_eq!(StatusClass::of(101), StatusClass::Informational);
        assert_eq!(StatusClass::of(999), StatusClass::Other);
    }

    #[test]
    fn indexes_match_all_order() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        for (i, c) in ErrorClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for (i, c) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn merge_adds_histograms_and_counters() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.record(Phase::Total, 1_000);
        b.record(Phase::Total, 3_000);
        b.record(Phase::Ttfb, 500);
        a.response(200);
        b.response(429);
        b.error(ErrorClass::ConnectRefused);
        b.counters.requests = 5;
        b.counters.reused_requests = 4;
        a.merge(&b);
        assert_eq!(a.histogram(Phase::Total).len(), 2);
        assert_eq!(a.histogram(Phase::Ttfb).len(), 1);
        assert_eq!(a.counters.responses, 2);
        assert_eq!(a.counters.status[StatusClass::TooManyRequests.index()], 1);
        assert_eq!(a.counters.errors[ErrorClass::ConnectRefused.index()], 1);
        assert!((a.counters.reuse_rate() - 0.8).abs() < 1e-9);
        assert_eq!(
            a.histogram(Phase::Total).max(),
            a.histogram(Phase::Total).highest_equivalent(3_000)
        );
    }

    #[test]
    fn the_error_rate_counts_failures_and_every_answer_that_is_not_2xx_or_3xx() {
        let mut c = Counters::default();
        assert_eq!(c.error_rate(), 0.0, "nothing answered, nothing failed");
        assert_eq!(c.ws_error_rate(), 0.0);
        let mut r = Recorder::new();
        for status in [200, 204, 301, 304, 101, 404, 429, 503, 999] {
            r.response(status);
        }
        r.error(ErrorClass::ReadTimeout);
        c = r.counters.clone();
        assert_eq!(c.unsuccessful_responses(), 5);
        // (1 failure + 5 answers that are not 2xx/3xx) / (9 answers + 1 failure)
        assert!((c.error_rate() - 0.6).abs() < 1e-12, "{}", c.error_rate());
        // Only failures: every one counts.
        let mut f = Counters::default();
        f.errors[ErrorClass::ConnectRefused.index()] = 3;
        assert_eq!(f.error_rate(), 1.0);
        f.connections_opened = 12;
        assert_eq!(f.ws_error_rate(), 0.25);
    }

    #[test]
    fn record_clamps_instead_of_failing() {
        let mut r = Recorder::new();
        r.record(Phase::Connect, 0);
        r.record(Phase::Connect, u64::MAX);
        assert_eq!(r.histogram(Phase::Connect).len(), 2);
        assert!(r.histogram(Phase::Connect).max() >= HIST_MAX_NS);
    }

    #[test]
    fn reset_forgets_measurements() {
        let mut r = Recorder::new();
        r.record(Phase::Total, 10);
        r.counters.requests = 3;
        r.reset();
        assert_eq!(r.histogram(Phase::Total).len(), 0);
        assert_eq!(r.counters, Counters::default());
    }

    #[test]
    fn reasons_are_counted_per_class_and_bounded() {
        let mut r = Recorder::new();
        for _ in 0..3 {
            r.reason(ErrorClass::Protocol, &"more than 1024 header fields");
        }
        r.reason(ErrorClass::Protocol, &"invalid HTTP version");
        r.reason(ErrorClass::WsProtocol, &"invalid HTTP version");
        let (list, other) = r.reasons.of(ErrorClass::Protocol);
        assert_eq!(
            list,
            [
                ("more than 1024 header fields", 3),
                ("invalid HTTP version", 1)
            ]
        );
        assert_eq!(other, 0);
        assert_eq!(
            r.reasons.of(ErrorClass::WsProtocol).0,
            [("invalid HTTP version", 1)]
        );
        // Past MAX_REASONS distinct reasons, the rest are counted together.
        for i in 0..10 {
            r.reason(ErrorClass::Protocol, &format_args!("reason {i}"));
        }
        let (list, other) = r.reasons.of(ErrorClass::Protocol);
        assert_eq!(list.len(), MAX_REASONS);
        assert_eq!(other, 10 - (MAX_REASONS as u64 - 2));
        // A kept reason still counts after the list is full.
        r.reason(ErrorClass::Protocol, &"invalid HTTP version");
        assert!(r
            .reasons
            .of(ErrorClass::Protocol)
            .0
            .contains(&("invalid HTTP version", 2)));
    }

    #[test]
    fn reasons_merge_and_reset() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.reason(ErrorClass::Protocol, &"x");
        b.reason(ErrorClass::Protocol, &"x");
        b.reason(ErrorClass::Protocol, &"y");
        b.reason(ErrorClass::Protocol, &"y");
        a.merge(&b);
        assert_eq!(a.reasons.of(ErrorClass::Protocol).0, [("x", 2), ("y", 2)]);
        a.reset();
        assert!(a.reasons.is_empty());
    }

    #[test]
    fn connect_errors_classify_local_limits() {
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(ErrorClass::from_connect_error(&e), ErrorClass::FdLimit);
        assert!(ErrorClass::FdLimit.is_local());
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            ErrorClass::from_connect_error(&e),
            ErrorClass::ConnectRefused
        );
        assert!(!ErrorClass::ConnectRefused.is_local());
    }

    #[test]
    fn the_readme_tables_name_every_error_class_and_every_phase() {
        // The README's error-class and phase tables are what users check the numbers against:
        // every class and phase the code can report has its own row.
        let readme = include_str!("../../README.md");
        for e in ErrorClass::ALL {
            assert!(
                readme.contains(&format!("| `{}` |", e.name())),
                "README error-class table lacks a row for {}",
                e.name()
            );
        }
        for p in Phase::ALL {
            assert!(
                readme.contains(&format!("\n| {} |", p.name())),
                "README phase tables lack a row for {}",
                p.name()
            );
        }
    }
}
