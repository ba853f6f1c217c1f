//! Per-worker measurements: phase histograms, counters and error classes.
//!
//! Each worker owns one [`Recorder`]; nothing here is shared or locked. The engine merges the
//! recorders after the workers join ([`Recorder::merge`]), and reports read the merged one.
//! Histograms hold nanoseconds (1 ns .. 60 s, 3 significant digits) so the loopback floor of a
//! few tens of microseconds keeps its resolution.
//!
//! This module must not read a clock or touch a socket: callers pass durations in.

use hdrhistogram::Histogram;

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
    /// Request first byte written → first response byte (plaintext) available.
    Ttfb,
    /// Request first byte written → response fully framed.
    Total,
}

impl Phase {
    /// Number of phases.
    pub const COUNT: usize = 4;
    /// Every phase, in report order.
    pub const ALL: [Phase; Phase::COUNT] = [Phase::Connect, Phase::Tls, Phase::Ttfb, Phase::Total];

    /// Stable lower-case name used in text and JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Ttfb => "ttfb",
            Phase::Total => "total",
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
}

impl ErrorClass {
    /// Number of error classes.
    pub const COUNT: usize = 13;
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
    }

    /// Total of every error class.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
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

/// One worker's measurements.
#[derive(Clone, Debug)]
pub struct Recorder {
    hist: [Histogram<u64>; Phase::COUNT],
    /// Counters.
    pub counters: Counters,
    /// TLS facts from the first completed handshake.
    pub tls: TlsFacts,
}

/// A fresh phase histogram with the crate's bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIG)
        .expect("static histogram bounds are valid")
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
            counters: Counters::default(),
            tls: TlsFacts::default(),
        }
    }

    /// Record one duration, in nanoseconds, for a phase. Values above [`HIST_MAX_NS`] are
    /// clamped; zero is recorded as 1 ns. Never allocates.
    #[inline]
    pub fn record(&mut self, phase: Phase, ns: u64) {
        self.hist[phase.index()].saturating_record(ns.max(1));
    }

    /// Count one failure.
    #[inline]
    pub fn error(&mut self, class: ErrorClass) {
        self.counters.errors[class.index()] += 1;
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
    }

    /// Forget everything measured so far but the TLS facts (used when a warm-up ends).
    pub fn reset(&mut self) {
        for h in &mut self.hist {
            h.reset();
        }
        self.counters = Counters::default();
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
}
