//! The pure validation stage: everything a command line can be checked for without I/O, checked
//! before anything starts — no DNS lookup, no banner, no built-in target, no connection.
//!
//! Rules (they are what the e2e tests in `tests/usage` pin):
//! 1. A flag that has no effect in the chosen mode is a usage error naming the flag and the mode
//!    ("--send-rate only applies to --mode echo (this run is --mode stream)"), never silently
//!    ignored.
//! 2. "Given" means typed on the command line: [`Given`] records clap's value source, so a
//!    flag's default value never triggers rule 1. Build a [`Cli`] with [`parse`] or
//!    [`try_parse_from`] (not `Cli::parse`, which cannot see value sources) so it is filled in.
//! 3. Messages name flags as the user types them (`--send-rate`, `-H Connection`), never
//!    internal fields (`send_rate`, `WsPlan.…`, `ws_pong_timeout`).
//! 4. Every function here is pure: no socket, no file, no clock, no printing. What needs I/O
//!    (reading `--ca` and `--body-file`, resolving the host, binding `--source`) happens in
//!    `app`, still before the banner and the built-in target.
//! 5. Durations are never negative: every flag whose value parser yields a [`Duration`] accepts
//!    a leading '-' ([`command`] sets `allow_hyphen_values` on it), so `-d -1s` reaches
//!    [`super::parse_duration`], which says "negative", instead of clap reading `-1s` as flags.

use std::any::TypeId;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches};

use super::{
    expand_subscriptions, parse_header, validate_http, validate_load, validate_probe, Cli,
    CompareArgs, FloorArgs, HttpArgs, LoadArgs, ProbeArgs, ServeArgs, TargetsArg, TlsArgs,
    UsageError, VerdictArgs, WsArgs, WsModeArg, MAX_CONNECT_RATE, MIN_CONNECT_RATE,
};
use crate::plan::{Establish, Scheme, Stage, WsMode};
use crate::proto::jsonfield::FieldPath;
use crate::report::percentiles::Percentiles;
use crate::report::threshold::{Checks, Command, Context, Targets, Threshold};

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

// ---------------------------------------------------------------------------------------------
// Parsing, with the value sources kept
// ---------------------------------------------------------------------------------------------

/// The arguments the user typed (clap ids, i.e. field names), as opposed to defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given(BTreeSet<String>);

impl Given {
    /// The arguments of `matches` and of its subcommand (recursively) whose value came from
    /// the command line.
    pub fn from_matches(matches: &ArgMatches) -> Given {
        let mut ids = BTreeSet::new();
        let mut level = Some(matches);
        while let Some(m) = level {
            for id in m.ids() {
                if m.value_source(id.as_str()) == Some(ValueSource::CommandLine) {
                    ids.insert(id.as_str().to_string());
                }
            }
            level = m.subcommand().map(|(_, sub)| sub);
        }
        Given(ids)
    }

    /// True when the argument with this clap id was typed by the user.
    pub fn has(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

/// The clap command of [`Cli`], with rule 5 applied to every duration flag of every subcommand
/// (flags added later included: the rule follows the value parser's type, not a list).
pub fn command() -> clap::Command {
    Cli::command().mut_subcommands(|sub| sub.mut_args(allow_negative_durations))
}

/// `allow_hyphen_values` on an argument whose value is a [`Duration`].
fn allow_negative_durations(arg: Arg) -> Arg {
    if takes_duration(&arg) {
        arg.allow_hyphen_values(true)
    } else {
        arg
    }
}

/// True when the argument's value parser yields a [`Duration`].
pub fn takes_duration(arg: &Arg) -> bool {
    arg.get_num_args().is_none_or(|n| n.takes_values())
        && arg.get_value_parser().type_id() == TypeId::of::<Duration>()
}

/// Parse a command line into a [`Cli`] whose `given` is filled in (rule 2).
pub fn try_parse_from<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(argv)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command()))?;
    cli.given = Given::from_matches(&matches);
    Ok(cli)
}

/// Parse this process's command line; on error print clap's message and exit (code 2; 0 for
/// `--help` and `--version`).
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

// ---------------------------------------------------------------------------------------------
// --progress
// ---------------------------------------------------------------------------------------------

/// Parse `--progress`: auto, always or never.
pub fn parse_progress(s: &str) -> Result<crate::plan::ProgressWhen, String> {
    crate::plan::ProgressWhen::parse(s.trim())
        .ok_or_else(|| format!("--progress {s:?}: use auto, always or never"))
}

/// When the progress line is drawn: as `--progress` says; without it, `auto`, or `never` with
/// `--quiet`.
pub fn progress_when(
    flag: Option<crate::plan::ProgressWhen>,
    quiet: bool,
) -> crate::plan::ProgressWhen {
    match flag {
        Some(w) => w,
        None if quiet => crate::plan::ProgressWhen::Never,
        None => crate::plan::ProgressWhen::Auto,
    }
}

// ---------------------------------------------------------------------------------------------
// --start-at (no clock: the caller passes "now")
// ---------------------------------------------------------------------------------------------

/// How far in the past a `--start-at` may lie: a launcher that starts every machine a moment
/// late still starts them together (they all begin at once, the skew is recorded).
pub const START_AT_PAST: Duration = Duration::from_secs(1);
/// How far ahead a `--start-at` may lie: a date further out is a typo, not a plan.
pub const START_AT_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// The value of `--start-at`: an instant on the wall clock (CLOCK_REALTIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAt(pub SystemTime);

/// Parse `--start-at`: Unix seconds (`1767225600`, fractional allowed: `1767225600.25`) or an
/// RFC 3339 date-time (`2026-11-30T15:40:00Z`, `2026-11-30T16:40:00.5+01:00`; `T` or a space,
/// any case). Exact to the nanosecond: no floating point.
pub fn parse_start_at(s: &str) -> Result<StartAt, String> {
    let t = s.trim();
    let hint = "give Unix seconds (e.g. $(( $(date +%s) + 10 ))) or an RFC 3339 time such as \
                2026-11-30T15:40:00Z";
    let parsed = if t.contains('-') || t.contains(':') {
        parse_rfc3339(t)
    } else {
        parse_unix_seconds(t)
    };
    parsed
        .map(StartAt)
        .map_err(|problem| format!("--start-at {s:?}: {problem}; {hint}"))
}

/// `SECONDS[.FRACTION]` since the Unix epoch, at most 9 fraction digits.
fn parse_unix_seconds(t: &str) -> Result<SystemTime, String> {
    let (whole, frac) = t.split_once('.').unwrap_or((t, "0"));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number of seconds".into());
    }
    let secs: u64 = whole.parse().map_err(|_| "too large".to_string())?;
    let nanos = fraction_nanos(frac)?;
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| "too large".to_string())
}

/// Nanoseconds of a decimal fraction's digits (`"25"` is 250,000,000), at most 9 digits.
fn fraction_nanos(frac: &str) -> Result<u32, String> {
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the fraction of a second must be 1 to 9 digits".into());
    }
    let mut n: u32 = 0;
    for i in 0..9 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        n = n * 10 + d;
    }
    Ok(n)
}

/// RFC 3339 `YYYY-MM-DD(T| )HH:MM:SS[.F…](Z|±HH:MM)` (years 1970..=9999).
fn parse_rfc3339(t: &str) -> Result<SystemTime, String> {
    let b = t.as_bytes();
    let bad = || "not an RFC 3339 time (YYYY-MM-DDTHH:MM:SSZ)".to_string();
    if b.len() < 20 {
        return Err(bad());
    }
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = &t[from..from + len];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            Ok(part.parse::<i64>().map_err(|_| bad())?)
        } else {
            Err(bad())
        }
    };
    let sep = |i: usize, c: &[u8]| {
        if c.contains(&b[i]) {
            Ok(())
        } else {
            Err(bad())
        }
    };
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    sep(13, b":")?;
    sep(16, b":")?;
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_len = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap(year) => 29,
        2 => 28,
        _ => return Err(format!("month {month} does not exist")),
    };
    if year < 1970 {
        return Err("before 1970".into());
    }
    if !(1..=month_len).contains(&day) {
        return Err(format!("day {day} does not exist in month {month}"));
    }
    // 60 would be a leap second: the kernel's clock never shows one, so neither do we.
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!(
            "{hour:02}:{minute:02}:{second:02} is not a time of day"
        ));
    }
    let mut rest = &t[19..];
    let mut nanos = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        nanos = fraction_nanos(&after_dot[..digits])?;
        rest = &after_dot[digits..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let r = rest.as_bytes();
            if r[3] != b':' || !r[1..3].iter().chain(&r[4..6]).all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let (h, m) = (num_at(rest, 1)?, num_at(rest, 4)?);
            if h > 23 || m > 59 {
                return Err(format!("offset {rest} is out of range"));
            }
            let sign = if r[0] == b'-' { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err("the time zone must be Z or ±HH:MM".into()),
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (the inverse of the report's
    // `civil_from_days`; March-based years put the leap day last).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let secs = u64::try_from(secs).map_err(|_| "before 1970".to_string())?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// The two digits at `from` of an offset already checked to be digits.
fn num_at(s: &str, from: usize) -> Result<i64, String> {
    s[from..from + 2]
        .parse()
        .map_err(|_| "not an RFC 3339 time".to_string())
}

/// `--start-at` against the wall clock `now` (the caller reads it; this stays pure): more than
/// [`START_AT_PAST`] in the past, or more than [`START_AT_AHEAD`] ahead, is a usage error
/// naming the fix.
pub fn check_start_at(at: StartAt, now: SystemTime) -> Result<(), UsageError> {
    match at.0.duration_since(now) {
        Ok(ahead) if ahead > START_AT_AHEAD => usage(format!(
            "--start-at is {:.0} s from now, more than 24 h ahead: give a time within the next \
             24 hours (check the date and the time zone)",
            ahead.as_secs_f64()
        )),
        Ok(_) => Ok(()),
        Err(e) if e.duration() > START_AT_PAST => usage(format!(
            "--start-at is {:.3} s in the past: give a time a few seconds ahead, the same on \
             every machine (e.g. --start-at $(( $(date +%s) + 10 )))",
            e.duration().as_secs_f64()
        )),
        Err(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// URLs (no DNS)
// ---------------------------------------------------------------------------------------------

/// A target URL taken apart, its host not resolved yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    /// The URL as the user gave it (reports redact it).
    pub raw: String,
    /// Plain or TLS.
    pub scheme: Scheme,
    /// The scheme as written, lower-case: http, https, ws or wss.
    pub scheme_name: String,
    /// Host as written in the URL (no brackets for IPv6): what is resolved, and the SNI.
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
    /// Path and query, at least "/".
    pub path: String,
    /// Value of the Host header: host, plus ":port" when not the default.
    pub authority: String,
    /// `user:password@` of the URL, percent-decoded (sent as Basic auth).
    pub credentials: Option<(String, String)>,
}

/// Take a target URL apart: http/https, or ws/wss when `websocket` (the other pair is refused
/// with a hint). A URL without a host (`http:///path`, `http:path`, `http://user@/`) is refused
/// rather than read the WHATWG way, which would look up the first path segment as the host.
pub fn parse_url(raw: &str, websocket: bool) -> Result<UrlParts, UsageError> {
    let redacted = || crate::report::redact::url(raw);
    let example = if websocket {
        "ws://127.0.0.1:8080/path"
    } else {
        "http://127.0.0.1:8080/path"
    };
    let no_host = || {
        usage(format!(
            "URL {} has no host (expected e.g. {example})",
            redacted()
        ))
    };
    let url = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(url::ParseError::EmptyHost) => return no_host(),
        Err(e) => {
            return usage(format!(
                "invalid URL {}: {e} (expected e.g. https://host:port/path)",
                redacted()
            ))
        }
    };
    let scheme = match (url.scheme(), websocket) {
        ("http", false) | ("ws", true) => Scheme::Http,
        ("https", false) | ("wss", true) => Scheme::Https,
        (other, false) => {
            return usage(format!(
                "unsupported URL scheme {other:?} (connbench http takes http:// or https://; \
                 for ws:// use connbench ws)"
            ))
        }
        (other, true) => {
            return usage(format!(
                "unsupported URL scheme {other:?} (connbench ws takes ws:// or wss://)"
            ))
        }
    };
    if !has_authority(raw) {
        return no_host();
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return no_host(),
    };
    let default_port = if scheme == Scheme::Https { 443 } else { 80 };
    let port = url.port().unwrap_or(default_port);
    let host_for_header = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        _ => host.clone(),
    };
    let authority = if port == default_port {
        host_for_header
    } else {
        format!("{host_for_header}:{port}")
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let credentials = if url.username().is_empty() {
        None
    } else {
        let user = percent_decode(url.username());
        let pass = url.password().map(percent_decode).unwrap_or_default();
        Some((user, pass))
    };
    Ok(UrlParts {
        raw: raw.to_string(),
        scheme,
        scheme_name: url.scheme().to_string(),
        host,
        port,
        path,
        authority,
        credentials,
    })
}

/// True when `raw` spells `scheme://` followed by a non-empty host. The WHATWG parser the url
/// crate follows repairs `http:///x`, `http:/x` and `http:x` into `http://x/`; a benchmark
/// must not guess a host from a path.
fn has_authority(raw: &str) -> bool {
    let raw = raw.trim();
    let Some(colon) = raw.find(':') else {
        return false;
    };
    let rest = &raw[colon + 1..];
    let is_slash = |c: char| c == '/' || c == '\\';
    let mut chars = rest.chars();
    if !(chars.next().is_some_and(is_slash) && chars.next().is_some_and(is_slash)) {
        return false;
    }
    let after = &rest[2..];
    let end = after
        .find(|c: char| is_slash(c) || c == '?' || c == '#')
        .unwrap_or(after.len());
    let authority = &after[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    !host.is_empty()
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// What every load command shares: where to connect, TLS flags, headers
// ---------------------------------------------------------------------------------------------

/// Where a load command connects, decided without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Start the built-in target in this process and use this path on it.
    Builtin {
        /// Path (and query) on the target, e.g. "/" or "/ws".
        path: String,
        /// `--tls`: its TLS port instead of the plain one.
        tls: bool,
    },
    /// A URL the user gave.
    Url(UrlParts),
}

impl Endpoint {
    /// True for the in-process built-in target.
    pub fn is_builtin(&self) -> bool {
        matches!(self, Endpoint::Builtin { .. })
    }

    /// True when connections use TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            Endpoint::Builtin { tls, .. } => *tls,
            Endpoint::Url(u) => u.scheme == Scheme::Https,
        }
    }

    /// The path (and query) requests or the upgrade ask for.
    pub fn path(&self) -> &str {
        match self {
            Endpoint::Builtin { path, .. } => path,
            Endpoint::Url(u) => &u.path,
        }
    }

    /// The host TLS verifies (before `--sni`): the built-in target's certificate names
    /// 127.0.0.1, the address it is reached at.
    pub fn tls_host(&self) -> &str {
        match self {
            Endpoint::Builtin { .. } => "127.0.0.1",
            Endpoint::Url(u) => &u.host,
        }
    }

    /// The Host header value requests will carry. The built-in target's port is only known
    /// once it listens; any loopback authority passes the same checks.
    fn authority_for_checks(&self) -> &str {
        match self {
            Endpoint::Builtin { .. } => "127.0.0.1",
            Endpoint::Url(u) => &u.authority,
        }
    }
}

/// A load command's destination and request headers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadTarget {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// `-H` headers in order, plus `Authorization: Basic …` from URL credentials (unless an
    /// Authorization header was given).
    pub headers: Vec<(String, String)>,
}

/// Decide the endpoint (no URL, or a path: the built-in target) and check the TLS flags and
/// `-H` against it.
pub fn load_target(
    url: Option<&str>,
    tls: &TlsArgs,
    raw_headers: &[String],
    websocket: bool,
    default_path: &str,
) -> Result<LoadTarget, UsageError> {
    let builtin = url.is_none_or(|u| u.starts_with('/'));
    if tls.builtin_tls && !builtin {
        let secure = if websocket { "wss" } else { "https" };
        return usage(format!(
            "--tls only applies to the built-in target; give a {secure}:// URL instead"
        ));
    }
    let endpoint = match url {
        Some(u) if !builtin => Endpoint::Url(parse_url(u, websocket)?),
        _ => Endpoint::Builtin {
            path: builtin_path(url.unwrap_or(default_path))?,
            tls: tls.builtin_tls,
        },
    };
    check_tls_flags(tls, &endpoint)?;
    let mut headers = Vec::with_capacity(raw_headers.len() + 1);
    for h in raw_headers {
        headers.push(parse_header(h)?);
    }
    if let Endpoint::Url(UrlParts {
        credentials: Some((user, pass)),
        ..
    }) = &endpoint
    {
        use base64::Engine as _;
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            headers.push(("Authorization".to_string(), format!("Basic {token}")));
        }
    }
    Ok(LoadTarget { endpoint, headers })
}

/// A path on the built-in target, normalized as the URL built from it will be (spaces and
/// other characters percent-encoded, a fragment dropped).
fn builtin_path(path: &str) -> Result<String, UsageError> {
    let url = url::Url::parse(&format!("http://127.0.0.1{path}")).map_err(|e| {
        UsageError(format!(
            "invalid path {path:?} for the built-in target: {e} (e.g. /bytes/1024)"
        ))
    })?;
    let mut out = url.path().to_string();
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// `--ca`, `--sni`, `--no-resume` and `--insecure` only mean something over TLS; `--ca` means
/// nothing when `--insecure` verifies nothing; `--sni` must be a name TLS can carry.
pub fn check_tls_flags(tls: &TlsArgs, endpoint: &Endpoint) -> Result<(), UsageError> {
    if !endpoint.is_tls() {
        let given = [
            (tls.ca.is_some(), "--ca"),
            (tls.sni.is_some(), "--sni"),
            (tls.no_resume, "--no-resume"),
            (tls.insecure, "--insecure"),
        ];
        if let Some((_, flag)) = given.iter().find(|(g, _)| *g) {
            return match endpoint {
                Endpoint::Builtin { .. } => usage(format!(
                    "{flag} only applies to TLS, and the built-in target is plain unless --tls: \
                     add --tls or drop {flag}"
                )),
                Endpoint::Url(u) => usage(format!(
                    "{flag} only applies to TLS, and {}:// is plain: use {}s:// or drop {flag}",
                    u.scheme_name, u.scheme_name
                )),
            };
        }
        return Ok(());
    }
    if tls.ca.is_some() && tls.insecure {
        return usage(
            "--ca has no effect with --insecure (no certificate is verified): drop one of them",
        );
    }
    let name = tls.sni.as_deref().unwrap_or(endpoint.tls_host());
    if rustls::pki_types::ServerName::try_from(name.to_string()).is_err() {
        return usage(match &tls.sni {
            Some(_) => format!("--sni {name:?} is not a DNS name or an IP address"),
            None => format!(
                "the URL host {name:?} is not a valid TLS server name (a DNS name or an IP \
                 address): set --sni"
            ),
        });
    }
    Ok(())
}

/// The request an `http` run (or a probe's `--request`/`--keepalive`) sends is encodable:
/// method, target, header names and values, Content-Length against the body. The message is
/// the encoder's, which names the header or value at fault.
pub fn check_request(method: &str, target: &LoadTarget, body: &[u8]) -> Result<(), UsageError> {
    crate::proto::http1::encode_request(
        method,
        target.endpoint.path(),
        target.endpoint.authority_for_checks(),
        &target.headers,
        body,
    )
    .map(drop)
    .map_err(|e| UsageError(e.to_string()))
}

/// Header fields the WebSocket upgrade owns: it sends Upgrade, Connection, Sec-WebSocket-Key
/// and Sec-WebSocket-Version itself, offers no extension (none is implemented), and
/// Sec-WebSocket-Accept is the server's answer. `Host` is not among them: a user Host header
/// replaces the automatic one, as it does for `http`.
pub const UPGRADE_HEADERS: [&str; 6] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Accept",
];

/// The one check (and message) for the headers of a WebSocket upgrade, shared by `ws` and
/// `probe --ws`: no header the upgrade owns, and everything the upgrade encoder would refuse.
pub fn check_upgrade_headers(target: &LoadTarget) -> Result<(), UsageError> {
    if let Some((name, _)) = target.headers.iter().find(|(name, _)| {
        UPGRADE_HEADERS
            .iter()
            .any(|owned| name.eq_ignore_ascii_case(owned))
    }) {
        return usage(format!(
            "-H {name}: the WebSocket upgrade owns this header (Upgrade, Connection, \
             Sec-WebSocket-Key, -Version, -Extensions and -Accept); drop it"
        ));
    }
    crate::proto::ws::encode_upgrade(
        target.endpoint.path(),
        target.endpoint.authority_for_checks(),
        "dGhlIHNhbXBsZSBub25jZQ==",
        &target.headers,
    )
    .map(drop)
    .map_err(|e| UsageError(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------------

/// A parsed `--stages` list: the stages in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages(pub Vec<Stage>);

impl Stages {
    /// Every stage has its own rate (`…@RATE`).
    pub fn paced(&self) -> bool {
        self.0.iter().all(|st| st.rate.is_some())
    }
}

/// Highest rate `-R` or a stage may ask for, requests per second in total.
pub const MAX_RATE: f64 = 10_000_000.0;

/// Parse `CONNS@RAMP+HOLD[@RATE],…` — `50@10s+30s,200@20s+45s`, `50@10s+30s@50/s` — into
/// stages: connections, ramp, hold, and the stage's rate in requests per second (`50/s` or
/// `50`). Every stage of a list has a rate or none has. The errors name the stage at fault
/// and the fix (clap prints them for `--stages`).
pub fn parse_stages(s: &str) -> Result<Stages, String> {
    const FORM: &str = "use CONNS@RAMP+HOLD or CONNS@RAMP+HOLD@RATE, e.g. 50@10s+30s or \
                        50@10s+30s@50/s";
    let mut out: Vec<Stage> = Vec::new();
    let mut first_paced: Option<&str> = None;
    let mut first_unpaced: Option<&str> = None;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid stage {part:?} in --stages ({FORM})");
        let (conns, rest) = part.split_once('@').ok_or_else(bad)?;
        let (times, rate) = match rest.split_once('@') {
            Some((times, rate)) => (times, Some(rate)),
            None => (rest, None),
        };
        let (ramp, hold) = times.split_once('+').ok_or_else(bad)?;
        let in_stage = |e: String| format!("stage {part:?} of --stages: {e}");
        let connections = conns.trim().parse().map_err(|_| {
            in_stage(format!(
                "{:?} is not a number of connections (e.g. 50@10s+30s)",
                conns.trim()
            ))
        })?;
        let rate = match rate {
            None => {
                first_unpaced.get_or_insert(part);
                None
            }
            Some(r) => {
                first_paced.get_or_insert(part);
                Some(parse_stage_rate(r).map_err(in_stage)?)
            }
        };
        out.push(Stage {
            connections,
            ramp: super::parse_duration(ramp).map_err(in_stage)?,
            hold: super::parse_duration(hold).map_err(in_stage)?,
            rate,
        });
    }
    if let (Some(paced), Some(unpaced)) = (first_paced, first_unpaced) {
        return Err(format!(
            "stage {unpaced:?} of --stages has no rate but {paced:?} has one: give every stage \
             a rate (…@RATE, e.g. @50/s) or none"
        ));
    }
    if out.is_empty() {
        return Err("empty --stages (use e.g. 50@10s+30s,200@20s+45s)".into());
    }
    if out.iter().all(|st| st.connections == 0) {
        return Err("--stages never opens a connection".into());
    }
    let total: Duration = out.iter().map(Stage::length).sum();
    if total.is_zero() {
        return Err("--stages lasts no time (give a ramp or a hold)".into());
    }
    Ok(Stages(out))
}

/// A stage's `@RATE`: requests per second in total, `50/s` or `50`.
fn parse_stage_rate(r: &str) -> Result<f64, String> {
    let r = r.trim();
    let number = r.strip_suffix("/s").unwrap_or(r).trim();
    let rate: f64 = number
        .parse()
        .map_err(|_| format!("rate {r:?} is not a number of requests per second (e.g. @50/s)"))?;
    if !(rate > 0.0 && rate.is_finite() && rate <= MAX_RATE) {
        return Err(format!(
            "rate {r:?} must be between 0 and 10,000,000 requests per second"
        ));
    }
    Ok(rate)
}

/// `http --stages`/`--scenario` against the other flags of the run: a stage rate replaces `-R`
/// and paces one request per connection; `--arrival` needs a rate to space; the first ramp is
/// the warm-up.
fn check_http_stages(a: &HttpArgs) -> Result<(), UsageError> {
    let staged = !a.stages.is_empty() || a.scenario.is_some();
    let paced = a.stages.iter().any(Stages::paced);
    check_several_runs(&a.stages, a.scenario.as_deref(), &a.load)?;
    if staged && !a.load.warmup.is_zero() {
        return usage(
            "--warmup does not combine with --stages or --scenario: the first ramp is the \
             warm-up",
        );
    }
    if paced && a.rate.is_some() {
        return usage(
            "-R sets one rate for the whole run and --stages gives each stage its own (…@RATE): \
             drop one of them",
        );
    }
    if paced && a.pipeline != 1 {
        return usage(
            "a stage rate (…@RATE) paces one request per connection at a time: drop --pipeline",
        );
    }
    if a.arrival.is_some() && a.rate.is_none() && !paced {
        return usage(
            "--arrival spaces the requests of a constant rate: add -R RATE or stage rates \
             (--stages 50@10s+30s@50/s), or drop --arrival",
        );
    }
    Ok(())
}

/// `ws --stages`/`--scenario`: stream and ping modes (an echo schedule is per connection from
/// the run's start, so a total asked rate would change with every ramp), no stage rates (a
/// stage rate paces HTTP requests), and the first ramp is the warm-up.
fn check_ws_stages(a: &WsArgs) -> Result<(), UsageError> {
    let flag = match (&a.stages[..], &a.scenario) {
        ([_, ..], _) => "--stages",
        ([], Some(_)) => "--scenario",
        ([], None) => return Ok(()),
    };
    check_several_runs(&a.stages, a.scenario.as_deref(), &a.load)?;
    if a.mode == WsModeArg::Echo {
        return usage(format!(
            "{flag} does not apply to --mode echo (its messages are due per connection from the \
             start of the run): use --mode stream or ping, or a fixed -c"
        ));
    }
    if let Some(st) = a
        .stages
        .iter()
        .flat_map(|l| &l.0)
        .find(|s| s.rate.is_some())
    {
        return usage(format!(
            "stage {st} of --stages has a rate, and stage rates pace HTTP requests: drop the \
             @RATE for ws"
        ));
    }
    if !a.load.warmup.is_zero() {
        return usage(format!(
            "--warmup does not combine with {flag}: the first ramp is the warm-up"
        ));
    }
    Ok(())
}

/// True when the command line asks for several runs one after the other: `--stages` more than
/// once, or `--scenario all`.
pub fn several_runs(stages: &[Stages], scenario: Option<&str>) -> bool {
    stages.len() > 1 || scenario == Some("all")
}

/// Several runs write one JSON document (holding each run) but cannot share one interval log.
fn check_several_runs(
    stages: &[Stages],
    scenario: Option<&str>,
    load: &LoadArgs,
) -> Result<(), UsageError> {
    if !several_runs(stages, scenario) {
        return Ok(());
    }
    let what = if stages.len() > 1 {
        "--stages given more than once"
    } else {
        "--scenario all"
    };
    if load.hlog.is_some() {
        return usage(format!(
            "--hlog logs the intervals of one run, and {what} makes several: drop --hlog, or \
             run them one by one"
        ));
    }
    if load.html.is_some() {
        return usage(format!(
            "--html draws the page of one run, and {what} makes several: drop --html (the \
             --json document holds every run; `connbench plot` draws them), or run them one by one"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Per command
// ---------------------------------------------------------------------------------------------

/// `connbench http`: the numeric flags, the URL, the TLS flags and `-H`. The request itself is
/// checked with [`check_request`] once the body is read.
pub fn check_http(a: &HttpArgs) -> Result<LoadTarget, UsageError> {
    validate_http(a)?;
    check_new_connections(a)?;
    check_http_stages(a)?;
    load_target(a.url.as_deref(), &a.tls, &a.load.headers, false, "/")
}

/// Requests a connection carries before connbench closes it: `--requests-per-conn`, 1 with
/// `--no-keepalive`, 1 by default with `--conn-rate`; None: keep-alive.
pub fn requests_per_conn(a: &HttpArgs) -> Option<u64> {
    match (a.no_keepalive, a.requests_per_conn, a.conn_rate) {
        (true, _, _) => Some(1),
        (false, Some(n), _) => Some(n),
        (false, None, Some(_)) => Some(1),
        (false, None, None) => None,
    }
}

/// The new-connection flags (`--no-keepalive`, `--requests-per-conn`, `--conn-rate`,
/// `--close`) against each other and the load shape.
pub fn check_new_connections(a: &HttpArgs) -> Result<(), UsageError> {
    if a.no_keepalive && a.requests_per_conn.is_some() {
        return usage("--no-keepalive is --requests-per-conn 1: give one of them, not both");
    }
    if a.requests_per_conn == Some(0) {
        return usage(
            "--requests-per-conn must be at least 1 (requests a connection carries before it \
             is closed)",
        );
    }
    if let Some(r) = a.conn_rate {
        if !(r.is_finite() && (MIN_CONNECT_RATE..=MAX_CONNECT_RATE).contains(&r)) {
            return usage(format!(
                "--conn-rate must be between {MIN_CONNECT_RATE} and {MAX_CONNECT_RATE} new \
                 connections per second"
            ));
        }
        if a.rate.is_some() {
            return usage(
                "--conn-rate paces new connections and -R paces requests: give one of them \
                 (with --conn-rate, requests follow at once on each new connection)",
            );
        }
        if !a.stages.is_empty() || a.scenario.is_some() {
            return usage(
                "--conn-rate decides when connections open, --stages and --scenario how many \
                 are open: give one of them",
            );
        }
    }
    match requests_per_conn(a) {
        Some(n) if a.pipeline as u64 > n => usage(format!(
            "--pipeline {} puts more requests in flight than a connection carries \
             ({n} per connection): lower --pipeline or raise --requests-per-conn",
            a.pipeline
        )),
        None if a.close.is_some() => usage(
            "--close only applies when connbench closes connections itself: add \
             --no-keepalive, --requests-per-conn N or --conn-rate R",
        ),
        _ => Ok(()),
    }
}

/// The `--mode` name a message shows.
fn mode_name(mode: WsModeArg) -> &'static str {
    match mode {
        WsModeArg::Stream => "stream",
        WsModeArg::Echo => "echo",
        WsModeArg::Ping => "ping",
    }
}

/// The subscription the built-in target's `/ws` gets when none is given.
pub const BUILTIN_SUBSCRIPTION: &str =
    r#"{"op":"subscribe","exchange":"{exchange}","channel":"{channel}","symbol":"{symbol}"}"#;

/// A WebSocket run's message settings, checked and resolved (built-in defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFields {
    /// The subscription messages, expanded over the lists (`{conn}` left for the engine).
    pub subscriptions: Vec<String>,
    /// `--ts-field` as given (or the built-in default), and parsed.
    pub ts_field: Option<(String, FieldPath)>,
    /// `--seq-field` as given (or the built-in default), and parsed.
    pub seq_field: Option<(String, FieldPath)>,
    /// `--stream-field`, parsed.
    pub stream_field: FieldPath,
}

/// `connbench ws`: every flag against the mode, the lists against the templates, the field
/// paths, the URL, the TLS flags and the upgrade headers.
pub fn check_ws(a: &WsArgs, given: &Given) -> Result<(LoadTarget, WsFields), UsageError> {
    validate_load(&a.load)?;
    check_ws_stages(a)?;
    let mode = mode_name(a.mode);
    let only_in = |flag: &str, wanted: WsModeArg| {
        let want = mode_name(wanted);
        usage(format!(
            "{flag} only applies to --mode {want} (this run is --mode {mode}): add --mode {want} \
             or drop {flag}"
        ))
    };
    if a.mode != WsModeArg::Echo {
        for (id, flag) in [
            ("send_rate", "--send-rate"),
            ("message_size", "--message-size"),
            ("send_buffer", "--send-buffer"),
        ] {
            if given.has(id) {
                return only_in(flag, WsModeArg::Echo);
            }
        }
        if a.rate.is_some() {
            return only_in("-R", WsModeArg::Echo);
        }
    }
    if a.mode != WsModeArg::Ping && given.has("ping_interval") {
        return only_in("--ping-interval", WsModeArg::Ping);
    }
    if a.mode == WsModeArg::Ping {
        for (given_here, flag) in [
            (a.heartbeat.is_some(), "--heartbeat"),
            (given.has("heartbeat_interval"), "--heartbeat-interval"),
        ] {
            if given_here {
                return usage(format!(
                    "{flag} does not apply to --mode ping: its pings every --ping-interval are \
                     the heartbeat (drop {flag})"
                ));
            }
        }
    } else if given.has("heartbeat_interval")
        && matches!(a.heartbeat.as_deref(), None | Some("off"))
    {
        return usage(
            "--heartbeat-interval needs a heartbeat to time (--heartbeat ping or \
             --heartbeat text:MESSAGE): add one or drop --heartbeat-interval",
        );
    }

    let default_path = if a.mode == WsModeArg::Echo {
        "/echo"
    } else {
        "/ws"
    };
    let target = load_target(
        a.url.as_deref(),
        &a.tls,
        &a.load.headers,
        true,
        default_path,
    )?;
    check_upgrade_headers(&target)?;

    // The built-in target's /ws messages carry "timestamp" (µs) and "seq" per "stream": with
    // no flags, subscribe to one stream and measure latency and gaps.
    let builtin_stream = target.endpoint.is_builtin()
        && target.endpoint.path().starts_with("/ws")
        && a.mode == WsModeArg::Stream;
    let mut templates = a.subscribe.clone();
    let (mut exchanges, mut channels, mut symbols) =
        (a.exchanges.clone(), a.channels.clone(), a.symbols.clone());
    for (flag, placeholder, list) in [
        ("--exchanges", "{exchange}", &a.exchanges),
        ("--channels", "{channel}", &a.channels),
        ("--symbols", "{symbol}", &a.symbols),
    ] {
        let used = if templates.is_empty() {
            builtin_stream
        } else {
            templates.iter().any(|t| t.contains(placeholder))
        };
        if !list.is_empty() && !used {
            return usage(format!(
                "{flag} is given but no --subscribe template uses {placeholder}: add \
                 {placeholder} to a template or drop {flag}"
            ));
        }
    }
    let mut ts_field = a.ts_field.clone();
    let mut seq_field = a.seq_field.clone();
    if builtin_stream {
        if templates.is_empty() {
            templates.push(BUILTIN_SUBSCRIPTION.to_string());
        }
        for (list, default) in [
            (&mut exchanges, "binance"),
            (&mut channels, "trades"),
            (&mut symbols, "BTCUSDT"),
        ] {
            if list.is_empty() {
                list.push(default.to_string());
            }
        }
        ts_field.get_or_insert_with(|| "timestamp".to_string());
        seq_field.get_or_insert_with(|| "seq".to_string());
    }
    if a.ts_unit.is_some() && ts_field.is_none() {
        return usage(
            "--ts-unit needs --ts-field (it is the unit of that field): add --ts-field PATH or \
             drop --ts-unit",
        );
    }
    if given.has("stream_field") && seq_field.is_none() {
        return usage(
            "--stream-field needs --seq-field (it names the stream sequence numbers belong \
             to): add --seq-field PATH or drop --stream-field",
        );
    }
    let path =
        |flag: &str, s: &str| FieldPath::parse(s).map_err(|e| UsageError(format!("{flag}: {e}")));
    let fields = WsFields {
        subscriptions: expand_subscriptions(&templates, &exchanges, &channels, &symbols)?,
        ts_field: match ts_field {
            Some(f) => Some((f.clone(), path("--ts-field", &f)?)),
            None => None,
        },
        seq_field: match seq_field {
            Some(f) => Some((f.clone(), path("--seq-field", &f)?)),
            None => None,
        },
        stream_field: path("--stream-field", &a.stream_field)?,
    };
    Ok((target, fields))
}

/// `connbench probe`: the numeric flags, the URL against `--ws`/`--request`, `--confirm-pause`
/// and `-H` against what the probe sends, the TLS flags, the request and the upgrade headers.
/// Returns the destination and whether connections upgrade to WebSocket.
pub fn check_probe(a: &ProbeArgs, given: &Given) -> Result<(LoadTarget, bool), UsageError> {
    validate_probe(a)?;
    let scheme_is = |prefixes: &[&str]| {
        a.url.as_deref().is_some_and(|u| {
            let u = u.to_ascii_lowercase();
            prefixes.iter().any(|p| u.starts_with(p))
        })
    };
    let ws_url = scheme_is(&["ws://", "wss://"]);
    if a.ws && scheme_is(&["http://", "https://"]) {
        return usage("--ws takes a ws:// or wss:// URL (e.g. ws://host:port/path)");
    }
    if a.request && ws_url {
        return usage(
            "--request sends HTTP; a ws:// or wss:// URL upgrades instead (drop --request)",
        );
    }
    let websocket = a.ws || ws_url;
    if given.has("confirm_pause") && !a.confirm {
        return usage(
            "--confirm-pause only applies with --confirm (the pause between its passes): add \
             --confirm or drop --confirm-pause",
        );
    }
    if !a.headers.is_empty() && !websocket && !a.request && a.keepalive.is_none() {
        return usage(
            "-H only applies to what the probe sends, and a plain connect probe sends nothing: \
             add --request, --ws or --keepalive, or drop -H",
        );
    }
    let default_path = if websocket { "/echo" } else { "/" };
    let target = load_target(
        a.url.as_deref(),
        &a.tls,
        &a.headers,
        websocket,
        default_path,
    )?;
    check_request("GET", &target, &[])?;
    if websocket {
        check_upgrade_headers(&target)?;
    }
    Ok((target, websocket))
}

// ---------------------------------------------------------------------------------------------
// Pass/fail and percentiles (`http`, `ws`, `probe`)
// ---------------------------------------------------------------------------------------------

/// `--threshold`, `--targets`, `--percentiles` and `--allow-nothing-measured`, checked: what
/// the reports render and the exit code is decided from.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `--percentiles` (the default list when not given).
    pub percentiles: Percentiles,
    /// The thresholds, the named targets and `--allow-nothing-measured`.
    pub checks: Checks,
}

/// Parse every `--threshold` against what the run will measure (`ctx`), and `--percentiles`.
/// A bad one is a usage error naming the flag, the expression and the valid metrics.
pub fn check_verdict(v: &VerdictArgs, ctx: &Context) -> Result<Verdict, UsageError> {
    let percentiles = match &v.percentiles {
        None => Percentiles::default(),
        Some(list) => {
            Percentiles::parse(list).map_err(|e| UsageError(format!("--percentiles: {e}")))?
        }
    };
    let thresholds = v
        .thresholds
        .iter()
        .map(|t| {
            Threshold::parse(t, ctx).map_err(|e| UsageError(format!("--threshold {t:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Verdict {
        percentiles,
        checks: Checks {
            thresholds,
            targets: v.targets.map(|t| match t {
                TargetsArg::Seed => Targets::Seed,
            }),
            allow_nothing_measured: v.allow_nothing_measured,
        },
    })
}

/// What an `http` run will measure: TLS or not, rate mode or not.
pub fn http_context(a: &HttpArgs, target: &LoadTarget) -> Context {
    Context {
        tls: target.endpoint.is_tls(),
        rate: a.rate.is_some(),
        ..Context::new(Command::Http)
    }
}

/// What a `ws` run will measure: TLS or not, its mode, a timestamp field or not.
pub fn ws_context(a: &WsArgs, target: &LoadTarget, fields: &WsFields) -> Context {
    Context {
        tls: target.endpoint.is_tls(),
        ws_mode: Some(match a.mode {
            WsModeArg::Stream => WsMode::Stream,
            WsModeArg::Echo => WsMode::Echo,
            WsModeArg::Ping => WsMode::Ping,
        }),
        ts_field: fields.ts_field.is_some(),
        ..Context::new(Command::Ws)
    }
}

/// What a probe will measure: TLS or not, and what counts as established.
pub fn probe_context(a: &ProbeArgs, target: &LoadTarget, websocket: bool) -> Context {
    Context {
        tls: target.endpoint.is_tls(),
        establish: Some(if websocket {
            Establish::WebSocket
        } else if a.request {
            Establish::Request
        } else {
            Establish::Connect
        }),
        ..Context::new(Command::Probe)
    }
}

/// Largest `--ws-*` delay and `--stall-at`/`--stall-for` the built-in target takes (its own
/// bound, which keeps `start + delay` from overflowing an `Instant`): 7 days.
pub const MAX_SERVE_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest `--ws-rate` the built-in target takes (its own bound), per connection.
pub const MAX_SERVE_WS_RATE: f64 = 1_000_000.0;

/// `connbench serve`: flags for a disabled port or a missing companion flag, and every bound
/// the target checks, said with flag names. `allowed_cpus` is this process's CPU mask.
pub fn check_serve(a: &ServeArgs, given: &Given, allowed_cpus: &[usize]) -> Result<(), UsageError> {
    if given.has("over_limit") && a.max_conns.is_none() {
        return usage(
            "--over-limit only applies with --max-conns N (what to do past N connections): add \
             --max-conns or drop --over-limit",
        );
    }
    if a.no_http && given.has("http") {
        return usage("--http sets the plain port, and --no-http disables it: drop one of them");
    }
    if a.no_https && given.has("https") {
        return usage("--https sets the TLS port, and --no-https disables it: drop one of them");
    }
    if a.no_https && a.cert_out.is_some() {
        return usage(
            "--cert-out writes the certificate of the TLS port, and --no-https disables it: \
             drop one of them",
        );
    }
    if given.has("fail_status") && a.fail_after.is_none() {
        return usage(
            "--fail-status is the status --fail-after answers with: add --fail-after N or drop \
             --fail-status",
        );
    }
    if !(200..=599).contains(&a.fail_status) {
        return usage(format!(
            "--fail-status must be an HTTP status between 200 and 599, not {}",
            a.fail_status
        ));
    }
    if a.ws_pong_timeout.is_some() && a.ws_ping_every.is_none() {
        return usage(
            "--ws-pong-timeout needs --ws-ping-every (no ping, no pong to wait for): add \
             --ws-ping-every or drop --ws-pong-timeout",
        );
    }
    if !(a.ws_rate.is_finite() && (0.0..=MAX_SERVE_WS_RATE).contains(&a.ws_rate)) {
        return usage(format!(
            "--ws-rate must be between 0 and {MAX_SERVE_WS_RATE} messages per second per \
             connection"
        ));
    }
    for (flag, value) in [
        ("--ws-drop-every", a.ws_drop_every),
        ("--ws-stall-after", a.ws_stall_after),
        ("--ws-ping-every", a.ws_ping_every),
        ("--ws-pong-timeout", a.ws_pong_timeout),
        ("--stall-for", a.stall_for),
    ] {
        if value.is_some_and(|d| d.is_zero()) {
            return usage(format!("{flag} must be longer than 0"));
        }
    }
    for (flag, value) in [
        ("--ws-drop-every", a.ws_drop_every),
        ("--ws-stall-after", a.ws_stall_after),
        ("--ws-ping-every", a.ws_ping_every),
        ("--ws-pong-timeout", a.ws_pong_timeout),
        ("--stall-at", a.stall_at),
        ("--stall-for", a.stall_for),
    ] {
        if value.is_some_and(|d| d > MAX_SERVE_DELAY) {
            return usage(format!(
                "{flag} must be at most {} s (7 days)",
                MAX_SERVE_DELAY.as_secs()
            ));
        }
    }
    if let Some(list) = &a.cpus {
        if let Some(bad) = list.0.iter().find(|c| !allowed_cpus.contains(c)) {
            return usage(format!(
                "--cpus: CPU {bad} is not available to this process (allowed: {})",
                allowed_cpus
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// compare
// ---------------------------------------------------------------------------------------------

/// Largest `--min-change` and `--fail-on-regression`, %: a latency can grow by any factor, but
/// a threshold above a million per cent is a typo.
const MAX_COMPARE_PCT: f64 = 1e6;

/// `connbench compare`'s flags into the comparison's options (rules 1 and 3).
pub fn check_compare(a: &CompareArgs) -> Result<crate::report::compare::Options, UsageError> {
    use crate::report::compare::{stats::Noise, Gate, Metric, Options};
    let pct = |flag: &str, v: f64| {
        if v.is_finite() && (0.0..=MAX_COMPARE_PCT).contains(&v) {
            Ok(v)
        } else {
            usage(format!(
                "{flag} {v} is not a percentage from 0 to {MAX_COMPARE_PCT} (e.g. {flag} 10)"
            ))
        }
    };
    let min_change = pct("--min-change", a.min_change)?;
    if a.effective_samples == 0 {
        return usage(
            "--effective-samples 0: a run has at least one sample (e.g. --effective-samples 300)",
        );
    }
    let gate = match a.fail_on_regression {
        Some(t) => {
            let threshold_pct = pct("--fail-on-regression", t)?;
            let metrics = a
                .metric
                .iter()
                .map(|m| Metric::parse(m.trim()).map_err(|e| UsageError(format!("--metric {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            Some(Gate {
                threshold_pct,
                metrics,
            })
        }
        None if !a.metric.is_empty() => {
            return usage(
                "--metric only chooses what --fail-on-regression checks (add e.g. \
                 --fail-on-regression 10)",
            )
        }
        None => None,
    };
    Ok(Options {
        noise: Noise {
            min_change: min_change / 100.0,
            effective_samples: a.effective_samples,
            ..Noise::default()
        },
        gate,
    })
}

/// `connbench floor`'s destinations, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorTarget {
    /// The HTTP endpoint: the built-in target (with a path), or the URL.
    pub endpoint: Endpoint,
    /// `--echo HOST:PORT`, not resolved.
    pub echo: Option<(String, u16)>,
    /// `--ws URL`.
    pub ws: Option<UrlParts>,
}

impl FloorTarget {
    /// The host TLS verifies (before `--sni`), when any measurement uses TLS: the https URL's,
    /// or a wss:// `--ws`'s. The built-in target's TLS trusts its certificate in memory.
    pub fn tls_host(&self) -> Option<&str> {
        match (&self.endpoint, &self.ws) {
            (Endpoint::Url(u), _) if u.scheme == Scheme::Https => Some(&u.host),
            (_, Some(w)) if w.scheme == Scheme::Https => Some(&w.host),
            _ => None,
        }
    }
}

/// Parse `--echo HOST:PORT` (`[::1]:7007` for IPv6), without DNS.
pub fn parse_host_port(s: &str) -> Result<(String, u16), UsageError> {
    let bad = || {
        UsageError(format!(
            "invalid --echo {s:?} (use HOST:PORT, e.g. relay.example:7007 or [::1]:7007)"
        ))
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// `connbench floor`: the measurement length, the URL, `--echo` and `--ws` (only with a URL:
/// the built-in target has both), and the TLS flags (only where something speaks TLS that
/// the built-in target's in-memory trust does not cover).
pub fn check_floor(a: &FloorArgs) -> Result<FloorTarget, UsageError> {
    if a.duration.is_zero() {
        return usage("-d must be longer than 0 (how long each measurement runs, e.g. -d 500ms)");
    }
    let builtin = a.url.as_deref().is_none_or(|u| u.starts_with('/'));
    let endpoint = match a.url.as_deref() {
        Some(u) if !builtin => Endpoint::Url(parse_url(u, false)?),
        u => Endpoint::Builtin {
            path: builtin_path(u.unwrap_or("/"))?,
            tls: false,
        },
    };
    if builtin {
        for (given, flag, what) in [
            (a.echo.is_some(), "--echo", "a raw TCP echo listener"),
            (a.ws.is_some(), "--ws", "a WebSocket echo endpoint"),
        ] {
            if given {
                return usage(format!(
                    "{flag} only applies with a URL: the built-in target has {what} of its own \
                     (give a URL or drop {flag})"
                ));
            }
        }
        for (given, flag) in [
            (a.ca.is_some(), "--ca"),
            (a.insecure, "--insecure"),
            (a.sni.is_some(), "--sni"),
        ] {
            if given {
                return usage(format!(
                    "{flag} does not apply to the built-in target, whose certificate floor \
                     trusts in memory: drop {flag}"
                ));
            }
        }
    }
    let echo = a.echo.as_deref().map(parse_host_port).transpose()?;
    let ws = a.ws.as_deref().map(|u| parse_url(u, true)).transpose()?;
    let target = FloorTarget { endpoint, echo, ws };
    if !builtin {
        // The TLS flags must have something speaking TLS to apply to.
        let tls_endpoint = match (&target.endpoint, &target.ws) {
            (Endpoint::Url(u), Some(w)) if u.scheme != Scheme::Https => Endpoint::Url(w.clone()),
            (e, _) => e.clone(),
        };
        let tls = TlsArgs {
            ca: a.ca.clone(),
            insecure: a.insecure,
            sni: a.sni.clone(),
            no_resume: false,
            builtin_tls: false,
        };
        check_tls_flags(&tls, &tls_endpoint)?;
    }
    Ok(target)
}

// Pictures: `--html` and `connbench plot`
// ---------------------------------------------------------------------------------------------

/// `--html FILE` (http, ws, probe, merge): the page goes to a file, never to stdout.
pub fn check_html(html: Option<&str>) -> Result<(), UsageError> {
    match html {
        Some("-") => usage(
            "--html writes a page to a file, not to stdout: give a file name (e.g. --html run.html)",
        ),
        Some("") => usage("--html needs a file name (e.g. --html run.html)"),
        _ => Ok(()),
    }
}

/// `connbench plot` as checked: what to draw, the inputs still unread.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotChecked {
    /// (report file, legend label, interval log) per report, in command-line order.
    pub inputs: Vec<(String, String, Option<String>)>,
    /// Charts asked for (empty: the defaults), without repeats.
    pub charts: Vec<crate::report::plot::Chart>,
    /// Phases asked for (empty: the defaults), without repeats.
    pub phases: Vec<String>,
}

/// `connbench plot`: labels and interval logs at most one per report, known phase names, an
/// output file, and `--chart time` only with an interval log.
pub fn check_plot(a: &super::PlotArgs) -> Result<PlotChecked, UsageError> {
    use super::ChartArg;
    use crate::report::plot::Chart;
    if a.output.is_empty() {
        return usage("-o needs a file name (e.g. -o run.svg, or -o - for stdout)");
    }
    for (flag, n) in [("--label", a.labels.len()), ("--hlog", a.hlogs.len())] {
        if n > a.reports.len() {
            return usage(format!(
                "{flag} given {n} times for {} report(s): give at most one per report, in the                  reports' order",
                a.reports.len()
            ));
        }
    }
    let mut phases: Vec<String> = Vec::new();
    for p in &a.phases {
        let p = p.trim();
        let known = crate::metrics::Phase::ALL.iter().any(|k| k.name() == p);
        if !known {
            let names: Vec<&str> = crate::metrics::Phase::ALL
                .iter()
                .map(|k| k.name())
                .collect();
            return usage(format!(
                "--phase: unknown phase {p:?} (one of {})",
                names.join(", ")
            ));
        }
        if !phases.iter().any(|x| x == p) {
            phases.push(p.to_string());
        }
    }
    let mut charts = Vec::new();
    for c in &a.charts {
        let c = match c {
            ChartArg::Percentiles => Chart::Percentiles,
            ChartArg::Time => Chart::Time,
            ChartArg::Stages => Chart::Stages,
            ChartArg::Ramp => Chart::Ramp,
        };
        if !charts.contains(&c) {
            charts.push(c);
        }
    }
    if charts.contains(&Chart::Time) && a.hlogs.is_empty() {
        return usage(
            "--chart time needs the run's interval log: add --hlog FILE (written by              `connbench http --hlog FILE`)",
        );
    }
    let inputs = a
        .reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let label = a.labels.get(i).cloned().unwrap_or_else(|| {
                std::path::Path::new(r)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| r.clone())
            });
            (r.clone(), label, a.hlogs.get(i).cloned())
        })
        .collect();
    Ok(PlotChecked {
        inputs,
        charts,
        phases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn parse_ok(args: &[&str]) -> Cli {
        try_parse_from(std::iter::once("connbench").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn ws(args: &[&str]) -> Result<(LoadTarget, WsFields), UsageError> {
        let cli = parse_ok(&[&["ws"], args].concat());
        let Command::Ws(a) = cli.command else {
            panic!("ws")
        };
        check_ws(&a, &cli.given)
    }

    fn http(args: &[&str]) -> Result<LoadTarget, UsageError> {
        let cli = parse_ok(&[&["http"], args].concat());
        let Command::Http(a) = cli.command else {
            panic!("http")
        };
        check_http(&a)
    }

    fn probe(args: &[&str]) -> Result<(LoadTarget, bool), UsageError> {
        let cli = parse_ok(&[&["probe"], args].concat());
        let Command::Probe(a) = cli.command else {
            panic!("probe")
        };
        check_probe(&a, &cli.given)
    }

    fn serve(args: &[&str]) -> Result<(), UsageError> {
        let cli = parse_ok(&[&["serve"], args].concat());
        let Command::Serve(a) = cli.command else {
            panic!("serve")
        };
        check_serve(&a, &cli.given, &[0, 1])
    }

    fn floor(args: &[&str]) -> Result<FloorTarget, UsageError> {
        let cli = parse_ok(&[&["floor"], args].concat());
        let Command::Floor(a) = cli.command else {
            panic!("floor")
        };
        check_floor(&a)
    }

    #[test]
    fn floor_takes_the_builtin_target_or_a_url_and_its_echo_and_ws() {
        let t = floor(&[]).unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Builtin {
                path: "/".into(),
                tls: false
            }
        );
        assert_eq!(
            t.tls_host(),
            None,
            "the built-in target's trust is in memory"
        );
        let t = floor(&["/bytes/64"]).unwrap();
        assert_eq!(t.endpoint.path(), "/bytes/64");
        let t = floor(&[
            "http://127.0.0.5:8080/x",
            "--echo",
            "127.0.0.5:7007",
            "--ws",
            "wss://127.0.0.5:8443/echo",
            "--ca",
            "ca.pem",
        ])
        .unwrap();
        assert_eq!(t.echo, Some(("127.0.0.5".into(), 7007)));
        assert_eq!(t.ws.as_ref().unwrap().port, 8443);
        assert_eq!(
            t.tls_host(),
            Some("127.0.0.5"),
            "--ca applies to the wss:// --ws"
        );
        let t = floor(&["https://example.com/", "--echo", "[::1]:7"]).unwrap();
        assert_eq!(t.echo, Some(("::1".into(), 7)));
        assert_eq!(t.tls_host(), Some("example.com"));
    }

    #[test]
    fn floor_refuses_what_cannot_apply_before_any_io() {
        refused(floor(&["-d", "0s"]), &["-d", "longer than 0"]);
        refused(
            floor(&["--echo", "127.0.0.1:7"]),
            &["--echo", "only applies with a URL"],
        );
        refused(
            floor(&["--ws", "ws://127.0.0.1/echo"]),
            &["--ws", "with a URL"],
        );
        for (args, name) in [
            (&["--ca", "x.pem"][..], "--ca"),
            (&["-k"], "--insecure"),
            (&["--sni", "a.example"], "--sni"),
        ] {
            refused(floor(args), &[name, "built-in target"]);
        }
        refused(
            floor(&["http://127.0.0.1/", "--ca", "x.pem"]),
            &["--ca", "only applies to TLS"],
        );
        for bad in [
            "7007",
            "host:",
            ":7",
            "host:0",
            "host:99999",
            "::1:7",
            "[::1]7",
        ] {
            refused(
                floor(&["http://127.0.0.1/", "--echo", bad]),
                &["invalid --echo", "HOST:PORT"],
            );
        }
        refused(
            floor(&["http://127.0.0.1/", "--ws", "http://127.0.0.1/echo"]),
            &["ws://"],
        );
        refused(floor(&["ftp://127.0.0.1/"]), &["unsupported URL scheme"]);
    }

    /// The error's one line contains every needle.
    #[track_caller]
    fn refused<T: std::fmt::Debug>(r: Result<T, UsageError>, needles: &[&str]) {
        let e = r.expect_err("a usage error").0;
        assert!(!e.contains('\n'), "one line: {e}");
        for n in needles {
            assert!(e.contains(n), "{n:?} in {e:?}");
        }
    }

    const URL: &str = "ws://127.0.0.1:9/";

    #[test]
    fn given_sees_typed_flags_and_never_defaults() {
        let cli = parse_ok(&["ws", URL, "--send-rate", "10", "--mode", "echo"]);
        assert!(cli.given.has("send_rate"));
        assert!(cli.given.has("mode"));
        // Defaults are filled in by clap but were not typed.
        for id in [
            "message_size",
            "ping_interval",
            "send_buffer",
            "stream_field",
            "duration",
        ] {
            assert!(!cli.given.has(id), "{id}");
        }
        // Flattened groups (LoadArgs) count too.
        assert!(parse_ok(&["ws", URL, "--warmup", "0s"]).given.has("warmup"));
        // `Cli::parse` cannot see value sources: nothing is given.
        let plain = <Cli as clap::Parser>::try_parse_from(["connbench", "ws", "--send-rate", "1"]);
        assert_eq!(plain.unwrap().given, Given::default());
    }

    #[test]
    fn defaults_never_trigger_a_usage_error() {
        for mode in ["stream", "echo", "ping"] {
            ws(&[URL, "--mode", mode]).unwrap_or_else(|e| panic!("{mode}: {e}"));
            ws(&["/echo", "--mode", mode]).unwrap_or_else(|e| panic!("{mode}: {e}"));
        }
        ws(&[]).unwrap();
        http(&[]).unwrap();
        http(&["http://127.0.0.1:9/"]).unwrap();
        probe(&["http://127.0.0.1:9/"]).unwrap();
        probe(&[]).unwrap();
        serve(&[]).unwrap();
    }

    #[test]
    fn echo_flags_only_in_echo_mode() {
        for (flag, value) in [
            ("--send-rate", "5"),
            ("--message-size", "100"),
            ("--send-buffer", "10"),
            ("-R", "10"),
        ] {
            for mode in ["stream", "ping"] {
                refused(
                    ws(&[URL, "--mode", mode, flag, value]),
                    &[flag, &format!("(this run is --mode {mode})"), "--mode echo"],
                );
            }
            ws(&[URL, "--mode", "echo", flag, value]).unwrap();
        }
        // Typing the default value is still typing it.
        refused(
            ws(&[URL, "--send-rate", "10"]),
            &["--send-rate", "--mode stream"],
        );
    }

    #[test]
    fn ping_interval_only_in_ping_mode() {
        for mode in ["stream", "echo"] {
            refused(
                ws(&[URL, "--mode", mode, "--ping-interval", "1s"]),
                &["--ping-interval", &format!("--mode {mode}"), "--mode ping"],
            );
        }
        ws(&[URL, "--mode", "ping", "--ping-interval", "1s"]).unwrap();
    }

    #[test]
    fn heartbeat_flags_need_a_heartbeat_and_not_ping_mode() {
        refused(
            ws(&[URL, "--heartbeat-interval", "5s"]),
            &["--heartbeat-interval", "--heartbeat ping"],
        );
        refused(
            ws(&[URL, "--heartbeat", "off", "--heartbeat-interval", "5s"]),
            &["--heartbeat-interval"],
        );
        ws(&[URL, "--heartbeat", "ping", "--heartbeat-interval", "5s"]).unwrap();
        ws(&[
            URL,
            "--heartbeat",
            "text:ping",
            "--heartbeat-interval",
            "5s",
        ])
        .unwrap();
        ws(&[URL, "--heartbeat", "off"]).unwrap();
        refused(
            ws(&[URL, "--mode", "ping", "--heartbeat", "ping"]),
            &["--heartbeat", "--mode ping"],
        );
        refused(
            ws(&[URL, "--mode", "ping", "--heartbeat-interval", "1s"]),
            &["--heartbeat-interval", "--mode ping"],
        );
    }

    #[test]
    fn ts_unit_and_stream_field_need_their_field() {
        refused(ws(&[URL, "--ts-unit", "ms"]), &["--ts-unit", "--ts-field"]);
        let (_, f) = ws(&[URL, "--ts-unit", "ms", "--ts-field", "E"]).unwrap();
        assert_eq!(f.ts_field.unwrap().0, "E");
        refused(
            ws(&[URL, "--stream-field", "s"]),
            &["--stream-field", "--seq-field"],
        );
        refused(
            ws(&[URL, "--stream-field", "stream"]),
            &["--stream-field", "--seq-field"],
        );
        ws(&[URL, "--seq-field", "u", "--stream-field", "s"]).unwrap();
        // The built-in /ws fills both fields in, so their companions apply there.
        let (_, f) = ws(&["--ts-unit", "us", "--stream-field", "stream"]).unwrap();
        assert_eq!(f.ts_field.unwrap().0, "timestamp");
        assert_eq!(f.seq_field.unwrap().0, "seq");
        // ... but not to /echo.
        refused(ws(&["/echo", "--ts-unit", "us"]), &["--ts-unit"]);
    }

    #[test]
    fn lists_must_be_used_by_a_template() {
        refused(ws(&[URL, "--symbols", "X"]), &["--symbols", "{symbol}"]);
        refused(
            ws(&[
                URL,
                "--subscribe",
                "{exchange}",
                "--exchanges",
                "a",
                "--channels",
                "c",
            ]),
            &["--channels", "{channel}"],
        );
        let (_, f) = ws(&[
            URL,
            "--subscribe",
            "{exchange}.{symbol}",
            "--exchanges",
            "a,b",
            "--symbols",
            "X",
        ])
        .unwrap();
        assert_eq!(f.subscriptions, ["a.X", "b.X"]);
        // The built-in /ws template uses all three.
        let (_, f) = ws(&["--symbols", "ETHUSDT"]).unwrap();
        assert!(f.subscriptions[0].contains("ETHUSDT") && f.subscriptions[0].contains("binance"));
        // ... only in stream mode, where it is sent.
        refused(
            ws(&["/ws", "--mode", "ping", "--symbols", "X"]),
            &["--symbols"],
        );
    }

    #[test]
    fn field_paths_and_subscriptions_are_checked_here() {
        refused(ws(&[URL, "--ts-field", "a..b"]), &["--ts-field"]);
        refused(ws(&[URL, "--seq-field", ""]), &["--seq-field"]);
        refused(
            ws(&[URL, "--seq-field", "s", "--stream-field", "a."]),
            &["--stream-field"],
        );
        refused(ws(&[URL, "--subscribe", "{symbol}"]), &["--symbols"]);
    }

    #[test]
    fn tls_flags_need_tls() {
        for (flag, args) in [
            ("--ca", vec!["--ca", "ca.pem"]),
            ("--sni", vec!["--sni", "localhost"]),
            ("--no-resume", vec!["--no-resume"]),
            ("--insecure", vec!["-k"]),
        ] {
            refused(
                http(&[&["http://h/"], &args[..]].concat()),
                &[flag, "http:// is plain", "https://"],
            );
            refused(
                ws(&[&["ws://h/"], &args[..]].concat()),
                &[flag, "ws:// is plain", "wss://"],
            );
            refused(probe(&[&["ws://h/"], &args[..]].concat()), &[flag, "plain"]);
            refused(
                http(&[&["/"], &args[..]].concat()),
                &[flag, "built-in", "--tls"],
            );
            if flag != "--insecure" {
                http(&[&["https://h/"], &args[..]].concat()).unwrap();
                ws(&[&["wss://h/"], &args[..]].concat()).unwrap();
                http(&[&["/", "--tls"], &args[..]].concat()).unwrap();
            }
        }
        http(&["https://h/", "-k", "--sni", "localhost", "--no-resume"]).unwrap();
        refused(
            http(&["https://h/", "-k", "--ca", "ca.pem"]),
            &["--ca", "--insecure"],
        );
        refused(http(&["https://h/", "--sni", "not a name"]), &["--sni"]);
        refused(http(&["https://h/", "--tls"]), &["--tls"]);
    }

    #[test]
    fn urls_without_a_host_are_refused_before_any_lookup() {
        for (raw, websocket) in [
            ("http:///path", false),
            ("https:///path", false),
            ("http:/path", false),
            ("http:path", false),
            ("HTTP:///path", false),
            ("http:\\\\\\path", false),
            ("http://user:pw@/path", false),
            ("http://:80/", false),
            ("ws:///path", true),
            ("wss:///path", true),
        ] {
            let e = parse_url(raw, websocket).unwrap_err().0;
            assert!(e.contains("has no host"), "{raw}: {e}");
            assert!(!e.contains("pw@"), "{raw}: {e}");
        }
        let u = parse_url("http://us%40er:p%3Ass@127.0.0.1:8080/a?x=1", false).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/a?x=1")
        );
        assert_eq!(u.credentials, Some(("us@er".into(), "p:ss".into())));
        let u = parse_url("wss://[::1]/", true).unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority.as_str(), u.port),
            ("::1", "[::1]", 443)
        );
        assert_eq!(u.scheme, Scheme::Https);
        assert!(parse_url("HTTP://Example.COM/", false).is_ok());
        assert!(parse_url("http://h/", true)
            .unwrap_err()
            .0
            .contains("ws://"));
        assert!(parse_url("ws://h/", false)
            .unwrap_err()
            .0
            .contains("connbench ws"));
    }

    #[test]
    fn url_credentials_become_basic_auth_unless_authorization_is_given() {
        let t = http(&["http://u:p@127.0.0.1/"]).unwrap();
        assert_eq!(
            t.headers,
            [("Authorization".to_string(), "Basic dTpw".to_string())]
        );
        let t = http(&["http://u:p@127.0.0.1/", "-H", "authorization: Bearer x"]).unwrap();
        assert_eq!(t.headers.len(), 1);
        assert_eq!(t.headers[0].1, "Bearer x");
    }

    #[test]
    fn upgrade_headers_are_refused_with_one_message_for_ws_and_probe() {
        for name in UPGRADE_HEADERS
            .iter()
            .copied()
            .chain(["connection", "UPGRADE"])
        {
            let h = format!("{name}: x");
            let a = ws(&[URL, "-H", &h]).unwrap_err();
            let b = probe(&[URL, "-H", &h]).unwrap_err();
            let c = probe(&["http://127.0.0.1:9/", "--ws", "-H", &h]);
            assert_eq!(a, b);
            assert!(c.is_err(), "{name}");
            assert!(a.0.starts_with(&format!("-H {name}:")), "{a}");
            // A plain HTTP probe or run may send them.
            probe(&["http://127.0.0.1:9/", "--request", "-H", &h]).unwrap();
            http(&["http://127.0.0.1:9/", "-H", &h]).unwrap();
        }
        // Host replaces the automatic one; other fields pass.
        ws(&[
            URL,
            "-H",
            "Host: example.com",
            "-H",
            "Sec-WebSocket-Protocol: json",
        ])
        .unwrap();
        // What the upgrade encoder refuses is refused here too, before anything starts.
        refused(ws(&[URL, "-H", "Content-Length: 3"]), &["Content-Length"]);
        refused(
            ws(&[URL, "-H", "Transfer-Encoding: chunked"]),
            &["Transfer-Encoding"],
        );
        refused(ws(&[URL, "-H", "Host: a", "-H", "Host: b"]), &["Host"]);
    }

    #[test]
    fn the_upgrade_headers_cover_what_the_encoder_refuses() {
        // The encoder (proto::ws) refuses its own set by name; every one of them must get the
        // specific message here, so none falls through to "invalid header name".
        for name in [
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Extensions",
            "Sec-WebSocket-Accept",
            "Sec-WebSocket-Protocol",
            "Host",
            "Origin",
            "User-Agent",
            "X-Anything",
        ] {
            let headers = [(name.to_string(), "x".to_string())];
            let refused_by_encoder = matches!(
                crate::proto::ws::encode_upgrade("/", "h", "k", &headers),
                Err(crate::proto::http1::RequestError::InvalidHeaderName(_))
            );
            if refused_by_encoder {
                assert!(
                    UPGRADE_HEADERS.iter().any(|o| o.eq_ignore_ascii_case(name)),
                    "{name} is refused by the encoder but not named here"
                );
            }
        }
    }

    #[test]
    fn requests_are_checked_before_anything_starts() {
        let t = http(&["http://127.0.0.1:9/", "-H", "Content-Length: 2"]).unwrap();
        refused(check_request("POST", &t, b"abc"), &["Content-Length"]);
        check_request("POST", &t, b"ab").unwrap();
        refused(check_request("GET POST", &t, b"ab"), &["method"]);
        let t = http(&["http://127.0.0.1:9/", "-H", "Bad Name: x"]).unwrap();
        refused(check_request("GET", &t, b""), &["header name", "Bad Name"]);
        refused(http(&["http://127.0.0.1:9/", "-H", "no colon"]), &["-H"]);
        // A built-in target's path is normalized as its URL will be, then checked.
        let t = http(&["/a b?x=1#f"]).unwrap();
        assert_eq!(t.endpoint.path(), "/a%20b?x=1");
        check_request("GET", &t, b"").unwrap();
    }

    #[test]
    fn new_connection_flags_are_checked_against_each_other_and_the_load_shape() {
        for ok in [
            &["--no-keepalive"][..],
            &["--no-keepalive", "--close", "rst", "-n", "100"],
            &["--requests-per-conn", "5", "--pipeline", "5"],
            &["--requests-per-conn", "5", "-R", "100"],
            &["--requests-per-conn", "3", "--stages", "2@1s+1s"],
            &["--conn-rate", "200", "--close", "fin"],
            &["--conn-rate", "200", "--no-keepalive", "-n", "50"],
            &[
                "--conn-rate",
                "200",
                "--requests-per-conn",
                "4",
                "--pipeline",
                "2",
            ],
        ] {
            http(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        refused(
            http(&["--requests-per-conn", "0"]),
            &["--requests-per-conn", "at least 1"],
        );
        refused(
            http(&["--no-keepalive", "--requests-per-conn", "2"]),
            &["--no-keepalive", "--requests-per-conn 1", "not both"],
        );
        refused(
            http(&["--conn-rate", "100", "-R", "100"]),
            &["--conn-rate", "-R", "give one"],
        );
        for shape in [&["--stages", "2@1s+1s"][..], &["--scenario", "light"]] {
            refused(
                http(&[&["--conn-rate", "100"], shape].concat()),
                &["--conn-rate", "--stages", "--scenario"],
            );
        }
        for bad in ["0", "NaN", "inf", "2000000"] {
            refused(
                http(&["--conn-rate", bad]),
                &["--conn-rate must be between"],
            );
        }
        refused(
            http(&["--no-keepalive", "--pipeline", "2"]),
            &["--pipeline 2", "1 per connection", "--requests-per-conn"],
        );
        refused(
            http(&["--conn-rate", "10", "--pipeline", "2"]),
            &["--pipeline 2", "1 per connection"],
        );
        refused(
            http(&["--close", "rst"]),
            &[
                "--close",
                "--no-keepalive",
                "--requests-per-conn",
                "--conn-rate",
            ],
        );
        // Typing the default is still typing it.
        refused(http(&["--close", "fin"]), &["--close only applies"]);
    }

    #[test]
    fn probe_flags_against_what_it_sends() {
        let u = "http://127.0.0.1:9/";
        refused(
            probe(&[u, "--confirm-pause", "2s"]),
            &["--confirm-pause", "--confirm"],
        );
        probe(&[u, "--confirm", "--confirm-pause", "2s"]).unwrap();
        refused(
            probe(&[u, "-H", "X: 1"]),
            &["-H", "--request", "--ws", "--keepalive"],
        );
        let (_, websocket) = probe(&[u, "--request", "-H", "X: 1"]).unwrap();
        assert!(!websocket);
        let (_, websocket) = probe(&[u, "--keepalive", "1s", "-H", "X: 1"]).unwrap();
        assert!(!websocket);
        let (_, websocket) = probe(&["ws://127.0.0.1:9/", "-H", "X: 1"]).unwrap();
        assert!(websocket);
        let (_, websocket) = probe(&["/echo", "--ws", "-H", "X: 1"]).unwrap();
        assert!(websocket);
        refused(probe(&[u, "--ws"]), &["ws://"]);
        refused(probe(&["ws://127.0.0.1:9/", "--request"]), &["--request"]);
    }

    #[test]
    fn serve_flags_against_the_ports_and_their_companions() {
        refused(
            serve(&["--over-limit", "429"]),
            &["--over-limit", "--max-conns"],
        );
        serve(&["--max-conns", "5", "--over-limit", "429"]).unwrap();
        refused(
            serve(&["--no-http", "--http", "1"]),
            &["--http", "--no-http"],
        );
        refused(
            serve(&["--no-https", "--https", "1"]),
            &["--https", "--no-https"],
        );
        refused(
            serve(&["--no-https", "--cert-out", "c.pem"]),
            &["--cert-out", "--no-https"],
        );
        serve(&["--no-https", "--http", "0"]).unwrap();
        refused(
            serve(&["--ws-pong-timeout", "1s"]),
            &["--ws-pong-timeout", "--ws-ping-every"],
        );
        serve(&["--ws-ping-every", "1s", "--ws-pong-timeout", "1s"]).unwrap();
        refused(
            serve(&["--fail-status", "500"]),
            &["--fail-status", "--fail-after"],
        );
        refused(
            serve(&["--fail-after", "3", "--fail-status", "99"]),
            &["--fail-status", "200 and 599"],
        );
        serve(&["--fail-after", "3", "--fail-status", "500"]).unwrap();
        serve(&["--fail-after", "0"]).unwrap();
        refused(
            serve(&["--ws-drop-every", "0s"]),
            &["--ws-drop-every", "longer than 0"],
        );
        refused(
            serve(&["--ws-stall-after", "169h"]),
            &["--ws-stall-after", "at most"],
        );
        serve(&["--ws-stall-after", "168h"]).unwrap();
        refused(
            serve(&["--stall-at", "169h", "--stall-for", "1s"]),
            &["--stall-at"],
        );
        refused(serve(&["--ws-rate", "1000001"]), &["--ws-rate"]);
        refused(
            serve(&["--cpus", "7"]),
            &["--cpus", "CPU 7", "allowed: 0,1"],
        );
        serve(&["--cpus", "1"]).unwrap();
    }

    #[test]
    fn the_serve_bounds_are_the_targets() {
        use crate::serve::{self, ServeConfig};
        let start = |tweak: &dyn Fn(&mut ServeConfig)| {
            let mut cfg = ServeConfig {
                http_port: Some(0),
                https_port: None,
                ..ServeConfig::default()
            };
            tweak(&mut cfg);
            serve::start(cfg).map(|h| h.stop())
        };
        start(&|c| c.ws_stall_after = Some(MAX_SERVE_DELAY)).expect("the largest delay");
        start(&|c| c.ws_rate = MAX_SERVE_WS_RATE).expect("the largest rate");
        assert!(
            start(&|c| c.ws_stall_after = Some(MAX_SERVE_DELAY + Duration::from_secs(1))).is_err()
        );
        assert!(start(&|c| c.ws_rate = MAX_SERVE_WS_RATE * 1.01).is_err());
    }

    #[test]
    fn stages_parse_with_and_without_rates() {
        let ms = Duration::from_millis;
        let st = parse_stages("50@10s+30s@50/s, 200@20s+45s@120.5").unwrap();
        assert_eq!(
            st.0,
            [
                Stage {
                    connections: 50,
                    ramp: ms(10_000),
                    hold: ms(30_000),
                    rate: Some(50.0),
                },
                Stage {
                    connections: 200,
                    ramp: ms(20_000),
                    hold: ms(45_000),
                    rate: Some(120.5),
                },
            ]
        );
        assert!(st.paced());
        let st = parse_stages("2@300ms+500ms,4@0s+500ms").unwrap();
        assert_eq!(st.0.len(), 2);
        assert!(st.0.iter().all(|s| s.rate.is_none()));
        assert!(!st.paced());
        // What it prints back is what it parses.
        for spec in ["50@10s+30s@50/s", "2@300ms+500ms,4@0s+500ms"] {
            let st = parse_stages(spec).unwrap();
            assert_eq!(crate::plan::stages_spec(&st.0), spec);
        }
    }

    #[test]
    fn bad_stages_name_the_part_and_the_fix() {
        for (spec, needles) in [
            (
                "10@1s",
                &["\"10@1s\"", "CONNS@RAMP+HOLD@RATE", "50@10s+30s@50/s"][..],
            ),
            (
                "x@1s+1s",
                &["stage \"x@1s+1s\"", "\"x\" is not a number of connections"],
            ),
            ("5@1s+2q", &["stage \"5@1s+2q\"", "unit"]),
            ("5@-1s+1s", &["stage \"5@-1s+1s\"", "negative"]),
            (
                "50@10s+30s@fast",
                &["stage \"50@10s+30s@fast\"", "rate \"fast\"", "e.g. @50/s"],
            ),
            ("5@1s+1s@0/s", &["rate \"0/s\"", "between 0 and 10,000,000"]),
            ("5@1s+1s@-3", &["rate \"-3\"", "between 0"]),
            ("5@1s+1s@inf", &["between 0"]),
            ("5@1s+1s@20000000/s", &["between 0 and 10,000,000"]),
            (
                "50@10s+30s@50/s,200@20s+45s",
                &[
                    "stage \"200@20s+45s\"",
                    "no rate",
                    "\"50@10s+30s@50/s\" has one",
                    "every stage a rate",
                ],
            ),
            (
                "50@10s+30s,200@20s+45s@9/s",
                &["stage \"50@10s+30s\"", "no rate", "\"200@20s+45s@9/s\""],
            ),
            ("", &["empty --stages"]),
            ("0@1s+1s", &["never opens a connection"]),
            ("5@0s+0s", &["lasts no time"]),
        ] {
            let e = parse_stages(spec).unwrap_err();
            assert!(!e.contains('\n'), "{spec}: {e}");
            for n in needles {
                assert!(e.contains(n), "{spec}: {n:?} in {e:?}");
            }
        }
    }

    #[test]
    fn stage_rates_against_the_other_flags_of_http() {
        let paced = "2@0s+1s@100/s";
        http(&["--stages", paced]).unwrap();
        http(&["--stages", paced, "--arrival", "poisson"]).unwrap();
        http(&["--stages", "2@0s+1s", "-R", "100"]).unwrap();
        http(&["-R", "100", "--arrival", "uniform"]).unwrap();
        refused(
            http(&["--stages", paced, "-R", "100"]),
            &["-R", "each stage its own", "drop one"],
        );
        refused(
            http(&["--stages", paced, "--pipeline", "2"]),
            &["stage rate", "--pipeline"],
        );
        refused(
            http(&["--arrival", "poisson"]),
            &["--arrival", "-R RATE", "50@10s+30s@50/s"],
        );
        refused(
            http(&["--stages", "2@0s+1s", "--arrival", "poisson"]),
            &["--arrival"],
        );
        refused(
            http(&["--scenario", "light", "--warmup", "1s"]),
            &["--warmup", "first ramp"],
        );
    }

    #[test]
    fn several_runs_take_no_interval_log() {
        http(&["--stages", "2@0s+1s", "--stages", "4@0s+1s"]).unwrap();
        http(&["--scenario", "all"]).unwrap();
        ws(&["--scenario", "all"]).unwrap();
        http(&["--stages", "2@0s+1s", "--hlog", "a.hlog"]).unwrap();
        refused(
            http(&[
                "--stages", "2@0s+1s", "--stages", "4@0s+1s", "--hlog", "a.hlog",
            ]),
            &["--hlog", "--stages given more than once", "one by one"],
        );
        refused(
            http(&["--scenario", "all", "--hlog", "a.hlog"]),
            &["--hlog", "--scenario all"],
        );
        refused(
            ws(&["--scenario", "all", "--hlog", "a.hlog"]),
            &["--hlog", "--scenario all"],
        );
        // Nor one HTML page (a flag that would do nothing there is refused).
        http(&["--stages", "2@0s+1s", "--html", "a.html"]).unwrap();
        refused(
            http(&["--scenario", "all", "--html", "a.html"]),
            &["--html", "--scenario all", "connbench plot"],
        );
        refused(
            ws(&[
                "--stages", "2@0s+1s", "--stages", "4@0s+1s", "--html", "a.html",
            ]),
            &["--html", "--stages given more than once"],
        );
        // A stage rate in any of the lists refuses -R.
        refused(
            http(&["--stages", "2@0s+1s", "--stages", "4@0s+1s@5/s", "-R", "9"]),
            &["-R"],
        );
        assert!(several_runs(&[], Some("all")));
        assert!(!several_runs(&[], Some("light")));
    }

    #[test]
    fn ws_stages_take_stream_and_ping_modes_without_rates_or_warmup() {
        ws(&["--stages", "2@0s+1s,4@1s+1s"]).unwrap();
        ws(&["--scenario", "2"]).unwrap();
        ws(&["/echo", "--mode", "ping", "--stages", "2@0s+1s"]).unwrap();
        refused(
            ws(&["/echo", "--mode", "echo", "--stages", "2@0s+1s"]),
            &["--stages", "--mode echo", "stream or ping"],
        );
        refused(
            ws(&["/echo", "--mode", "echo", "--scenario", "1"]),
            &["--scenario", "--mode echo"],
        );
        refused(
            ws(&["--stages", "2@0s+1s@10/s"]),
            &["stage 2@0s+1s@10/s", "rate", "drop the @RATE"],
        );
        refused(
            ws(&["--scenario", "3", "--warmup", "1s"]),
            &["--warmup", "--scenario", "first ramp"],
        );
        for bad in [
            vec!["ws", "--scenario", "light"],
            vec!["ws", "--scenario", "1", "-c", "5"],
            vec!["ws", "--stages", "1@0s+1s", "-d", "5s"],
            vec!["ws", "--stages", "1@0s+1s", "--scenario", "1"],
        ] {
            assert!(
                try_parse_from(std::iter::once("connbench").chain(bad.clone())).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn negative_durations_are_refused_by_name() {
        use crate::cli::parse_duration;
        for bad in ["-1s", "-1", "-0.5ms", "-2m"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("negative") && e.contains(bad), "{bad}: {e}");
        }
        // Not a duration at all (e.g. a flag taken as the value): the general message.
        let e = parse_duration("--json").unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
        let e = try_parse_from(["connbench", "http", "--stages", "5@-1s+1s"]).unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
    }

    #[test]
    fn every_duration_flag_takes_a_leading_minus_and_says_negative() {
        let cmd = command();
        let mut seen = 0;
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments().filter(|a| takes_duration(a)) {
                seen += 1;
                assert!(arg.is_allow_hyphen_values_set(), "{}", arg.get_id());
                let flag = match (arg.get_long(), arg.get_short()) {
                    (Some(l), _) => format!("--{l}"),
                    (None, Some(s)) => format!("-{s}"),
                    (None, None) => continue,
                };
                let e = command()
                    .try_get_matches_from(["connbench", sub.get_name(), &flag, "-1s"])
                    .expect_err(&flag)
                    .to_string();
                assert!(e.contains("negative"), "{} {flag}: {e}", sub.get_name());
                assert!(e.contains(&flag), "{} {flag}: {e}", sub.get_name());
            }
        }
        // -d, --warmup, --connect-timeout, --timeout, --ping-interval, --backoff-*, probe's
        // --hold/--settle/--keepalive/--confirm-pause, serve's --for and faults, ...
        assert!(seen >= 20, "{seen} duration flags found");
        // Only durations: other values keep clap's reading of a leading '-'.
        let e = command()
            .try_get_matches_from(["connbench", "http", "-c", "-1"])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("negative"), "{e}");
        command().debug_assert();
    }
}

#[cfg(test)]
mod start_at_tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        parse_start_at(s).unwrap_or_else(|e| panic!("{s}: {e}")).0
    }

    fn unix(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn unix_seconds_whole_and_fractional_are_exact() {
        assert_eq!(at("1700000000"), unix(1_700_000_000, 0));
        assert_eq!(at("1700000000.25"), unix(1_700_000_000, 250_000_000));
        assert_eq!(at("1700000000.000000001"), unix(1_700_000_000, 1));
        assert_eq!(at(" 0 "), UNIX_EPOCH);
        for bad in [
            "",
            "-5",
            "1e9",
            "17000.",
            "1700000000.1234567891",
            "now",
            "99999999999999999999",
        ] {
            let e = parse_start_at(bad).expect_err(bad);
            assert!(
                e.contains("--start-at") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn rfc3339_agrees_with_the_report_writer_and_takes_offsets() {
        // The report's own formatter is the oracle: every instant it writes parses back.
        for secs in [
            0u64,
            951_782_400,
            951_868_799,
            1_700_000_000,
            4_107_542_400,
            253_402_300_799,
        ] {
            let text = crate::report::json::rfc3339(secs as i64);
            assert_eq!(at(&text), unix(secs, 0), "{text}");
        }
        assert_eq!(
            at("2023-11-14T22:13:20.5Z"),
            unix(1_700_000_000, 500_000_000)
        );
        assert_eq!(at("2023-11-14 22:13:20z"), unix(1_700_000_000, 0));
        assert_eq!(at("2023-11-14t23:13:20+01:00"), unix(1_700_000_000, 0));
        assert_eq!(at("2023-11-14T17:43:20-04:30"), unix(1_700_000_000, 0));
        // The precise writer round-trips too.
        let t = unix(1_700_000_000, 123_456_789);
        assert_eq!(at(&crate::report::json::rfc3339_precise(t)), t);
        for bad in [
            "2023-11-14T22:13:20",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:60Z",
            "2023-11-14T22:13:20+25:00",
            "2023-11-14T22:13:20.Z",
            "1969-12-31T23:59:59Z",
            "2023/11/14T22:13:20Z",
            "2023-11-14T22:13:20Zjunk",
        ] {
            assert!(parse_start_at(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(at("2024-02-29T00:00:00Z"), unix(1_709_164_800, 0));
    }

    #[test]
    fn start_at_in_the_past_or_too_far_ahead_is_a_usage_error_naming_the_fix() {
        let now = unix(1_700_000_000, 0);
        let ok = |t: SystemTime| check_start_at(StartAt(t), now);
        assert!(ok(now).is_ok());
        assert!(
            ok(now - Duration::from_millis(999)).is_ok(),
            "a launcher's lag"
        );
        assert!(ok(now + Duration::from_secs(24 * 3600)).is_ok());
        let past = ok(now - Duration::from_millis(1500)).unwrap_err();
        assert!(past.0.contains("1.500 s in the past"), "{past}");
        assert!(past.0.contains("a few seconds ahead"), "{past}");
        let far = ok(now + Duration::from_secs(24 * 3600 + 1)).unwrap_err();
        assert!(far.0.contains("more than 24 h ahead"), "{far}");
        assert!(far.0.contains("time zone"), "{far}");
    }

    #[test]
    fn progress_takes_auto_always_never_and_quiet_means_never_unless_given() {
        use crate::plan::ProgressWhen::{Always, Auto, Never};
        assert_eq!(parse_progress("always"), Ok(Always));
        assert_eq!(parse_progress(" never "), Ok(Never));
        let e = parse_progress("sometimes").unwrap_err();
        assert!(e.contains("--progress \"sometimes\"") && e.contains("auto, always or never"));
        assert_eq!(progress_when(None, false), Auto);
        assert_eq!(progress_when(None, true), Never);
        assert_eq!(progress_when(Some(Always), true), Always);
        assert_eq!(progress_when(Some(Never), false), Never);
    }
}
