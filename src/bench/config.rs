//! The endpoint list of `cargo bench --bench endpoints`: `connbench-bench.toml` (or the file
//! `CONNBENCH_BENCH_CONFIG` names), parsed into [`Config`]; `connbench-bench.example.toml`
//! documents every key.
//!
//! Rules:
//! 1. Every key is known: a misspelt key, a wrong type or a bad value is a [`ConfigError`]
//!    naming the file and the key (`endpoints.relay.headers.X-Api-Key`) and the fix, on one
//!    line.
//! 2. Secrets come from the environment: `${NAME}` in a URL, a header value, a subscribe
//!    message or an extra argument is replaced by that variable's value ([`expand`]); a
//!    variable that is not set is an error naming it.
//! 3. A value that connbench would redact (`crate::redact`: a secret-named header, a Basic or
//!    Bearer value, URL credentials, a secret-named query parameter or JSON key) must take its
//!    secret from `${NAME}`: written literally in the file it is refused (rule 1), so no
//!    secret is ever committed with the file.
//! 4. Endpoints keep the file's order: the first HTTP endpoint is what the other HTTP
//!    endpoints are compared with, and likewise for WebSocket.
//! 5. Nothing here opens a socket or reads a file other than the configuration itself; the
//!    environment is read through the caller's lookup function (tests pass their own).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::redact;

/// Where the configuration is looked for when `CONNBENCH_BENCH_CONFIG` is not set: the
/// package root (`cargo bench` runs benches there).
pub const DEFAULT_FILE: &str = "connbench-bench.toml";
/// The environment variable that names another configuration file.
pub const CONFIG_ENV: &str = "CONNBENCH_BENCH_CONFIG";

/// Top-level keys and their defaults.
const TOP_KEYS: [&str; 6] = [
    "rounds",
    "round_duration",
    "connections",
    "requests_per_conn",
    "fail_threshold_pct",
    "endpoints",
];
const ENDPOINT_KEYS: [&str; 11] = [
    "url",
    "headers",
    "connections",
    "duration",
    "requests_per_conn",
    "subscribe",
    "ts_field",
    "ts_unit",
    "ca",
    "insecure",
    "args",
];

/// A malformed configuration: the file, the key and what is wrong with it (rule 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file as named.
    pub file: String,
    /// The key's dotted path, empty for the file as a whole.
    pub key: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

/// What an endpoint speaks, from its URL's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// http:// or https://: measured like `connbench http`.
    Http,
    /// ws:// or wss://: measured like `connbench ws`.
    Ws,
}

impl Kind {
    /// `http` or `ws`, as the reports name the mode.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Ws => "ws",
        }
    }
}

/// The settings every endpoint shares unless it sets its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Interleaved rounds: each round measures every endpoint once, in order.
    pub rounds: u32,
    /// How long each endpoint is measured in each round.
    pub round_duration: Duration,
    /// Concurrent connections per endpoint.
    pub connections: usize,
    /// HTTP: requests per connection before it is closed and a new one opened, so connect and
    /// TLS (full and resumed) are measured too; None: keep-alive.
    pub requests_per_conn: Option<u64>,
    /// `--fail-on-regression`: a phase fails when it got slower beyond noise by more than
    /// this many percent.
    pub fail_threshold_pct: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            rounds: 5,
            round_duration: Duration::from_secs(2),
            connections: 2,
            requests_per_conn: Some(20),
            fail_threshold_pct: 0.0,
        }
    }
}

/// One named endpoint, with its secrets expanded (rule 2).
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    /// Its name: the table rows, the report file names, the filter.
    pub name: String,
    /// Its kind, from the URL's scheme.
    pub kind: Kind,
    /// The URL, `${NAME}` expanded.
    pub url: String,
    /// Extra request (or upgrade) headers, values expanded.
    pub headers: Vec<(String, String)>,
    /// Concurrent connections.
    pub connections: usize,
    /// Measured this long in each round.
    pub duration: Duration,
    /// HTTP: requests per connection (None: keep-alive).
    pub requests_per_conn: Option<u64>,
    /// WebSocket: messages sent after the upgrade, expanded.
    pub subscribe: Vec<String>,
    /// WebSocket: the JSON field holding the server's send time (message latency).
    pub ts_field: Option<String>,
    /// WebSocket: that field's unit (s, ms, us, ns).
    pub ts_unit: Option<String>,
    /// A CA certificate file to trust.
    pub ca: Option<PathBuf>,
    /// Do not verify certificates.
    pub insecure: bool,
    /// More `connbench http|ws` flags, expanded.
    pub args: Vec<String>,
}

/// Secrets stay out of debug output: only the redacted forms are shown.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &redact::url(&self.url))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, v)| redact::header(n, v))
                    .collect::<Vec<_>>(),
            )
            .field("connections", &self.connections)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The `connbench http|ws` command line that measures this endpoint for one round.
    pub fn argv(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "connbench".into(),
            self.kind.name().into(),
            self.url.clone(),
            "-c".into(),
            self.connections.to_string(),
            "-d".into(),
            format!("{}us", self.duration.as_micros()),
            "-q".into(),
        ];
        for (n, val) in &self.headers {
            v.push("-H".into());
            v.push(format!("{n}: {val}"));
        }
        if let Some(n) = self.requests_per_conn {
            v.push("--requests-per-conn".into());
            v.push(n.to_string());
        }
        for s in &self.subscribe {
            v.push("--subscribe".into());
            v.push(s.clone());
        }
        if let Some(f) = &self.ts_field {
            v.push("--ts-field".into());
            v.push(f.clone());
        }
        if let Some(u) = &self.ts_unit {
            v.push("--ts-unit".into());
            v.push(u.clone());
        }
        if let Some(ca) = &self.ca {
            v.push("--ca".into());
            v.push(ca.display().to_string());
        }
        if self.insecure {
            v.push("--insecure".into());
        }
        v.extend(self.args.iter().cloned());
        v
    }
}

/// The parsed configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Shared settings.
    pub settings: Settings,
    /// The endpoints, in the file's order (rule 4).
    pub endpoints: Vec<Endpoint>,
}

/// An endpoint's name is part of file names: letters, digits, `-`, `_`, `.`, not starting
/// with `.`, at most 64 bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a usable name (letters, digits, '-', '_', '.', not starting with \
             '.', at most 64 characters)"
        ))
    }
}

/// True when `raw` takes something from the environment (`${NAME}`).
pub fn has_reference(raw: &str) -> bool {
    raw.contains("${")
}

/// Replace every `${NAME}` in `raw` with `env(NAME)` (rule 2). `$` not followed by `{` is
/// kept as is. Errors: an unterminated reference, a bad name, a variable not set.
pub fn expand(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err("has \"${\" without its closing \"}\" (write ${NAME})".into());
        };
        let name = &after[..end];
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!(
                "${{{name}}} is not an environment variable name (letters, digits and '_')"
            ));
        }
        match env(name) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "the environment variable {name} is not set (export {name}=… before \
                     cargo bench)"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse the configuration text; `file` names it in errors, `env` looks up `${NAME}`.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let err = |key: &str, problem: String| ConfigError {
        file: file.to_string(),
        key: key.to_string(),
        problem,
    };
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // toml's message spans several lines (a source excerpt): keep its first.
        let msg = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" at line {line}")
            })
            .unwrap_or_default();
        err("", format!("not valid TOML{at}: {msg}"))
    })?;
    unknown_keys(&doc, &TOP_KEYS, "", &err)?;
    let defaults = Settings::default();
    let settings = Settings {
        rounds: match doc.get("rounds") {
            None => defaults.rounds,
            Some(v) => positive_int(v, "rounds", 1_000, &err)? as u32,
        },
        round_duration: match doc.get("round_duration") {
            None => defaults.round_duration,
            Some(v) => duration(v, "round_duration", &err)?,
        },
        connections: match doc.get("connections") {
            None => defaults.connections,
            Some(v) => positive_int(v, "connections", 100_000, &err)? as usize,
        },
        requests_per_conn: match doc.get("requests_per_conn") {
            None => defaults.requests_per_conn,
            Some(v) => requests_per_conn(v, "requests_per_conn", &err)?,
        },
        fail_threshold_pct: match doc.get("fail_threshold_pct") {
            None => defaults.fail_threshold_pct,
            Some(v) => {
                let x = match v {
                    toml::Value::Integer(i) => *i as f64,
                    toml::Value::Float(f) => *f,
                    _ => return Err(err("fail_threshold_pct", "must be a number".into())),
                };
                if !(x.is_finite() && x >= 0.0) {
                    return Err(err(
                        "fail_threshold_pct",
                        "must be 0 or more (percent; 0: any slowdown beyond noise fails)".into(),
                    ));
                }
                x
            }
        },
    };
    let Some(eps) = doc.get("endpoints") else {
        return Err(err(
            "endpoints",
            "missing: add an [endpoints] table, e.g. relay = \"https://relay.example/…\" \
             (see connbench-bench.example.toml)"
                .into(),
        ));
    };
    let Some(eps) = eps.as_table() else {
        return Err(err(
            "endpoints",
            "must be a table of NAME = \"URL\" or NAME = { url = … }".into(),
        ));
    };
    if eps.is_empty() {
        return Err(err(
            "endpoints",
            "is empty: name at least one endpoint".into(),
        ));
    }
    let mut endpoints = Vec::new();
    for (name, v) in eps {
        let key = format!("endpoints.{name}");
        check_name(name).map_err(|p| err(&key, p))?;
        endpoints.push(endpoint(name, v, &key, &settings, env, &err)?);
    }
    Ok(Config {
        settings,
        endpoints,
    })
}

type ErrFn<'a> = dyn Fn(&str, String) -> ConfigError + 'a;

fn unknown_keys(
    t: &toml::Table,
    known: &[&str],
    prefix: &str,
    err: &ErrFn,
) -> Result<(), ConfigError> {
    for k in t.keys() {
        if !known.contains(&k.as_str()) {
            return Err(err(
                &format!("{prefix}{k}"),
                format!("unknown key (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn positive_int(v: &toml::Value, key: &str, max: i64, err: &ErrFn) -> Result<i64, ConfigError> {
    match v.as_integer() {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(err(key, format!("must be a whole number from 1 to {max}"))),
    }
}

fn requests_per_conn(v: &toml::Value, key: &str, err: &ErrFn) -> Result<Option<u64>, ConfigError> {
    match v {
        toml::Value::Integer(0) => Ok(None),
        toml::Value::Integer(n) if *n > 0 => Ok(Some(*n as u64)),
        _ => Err(err(
            key,
            "must be a whole number: requests per connection, or 0 for keep-alive".into(),
        )),
    }
}

fn duration(v: &toml::Value, key: &str, err: &ErrFn) -> Result<Duration, ConfigError> {
    let Some(s) = v.as_str() else {
        return Err(err(
            key,
            "must be a duration string such as \"2s\" or \"500ms\"".into(),
        ));
    };
    match crate::cli::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(err(key, "must be longer than 0 (e.g. \"2s\")".into())),
        Err(e) => Err(err(key, e)),
    }
}

fn string<'v>(v: &'v toml::Value, key: &str, err: &ErrFn) -> Result<&'v str, ConfigError> {
    v.as_str()
        .ok_or_else(|| err(key, "must be a string".into()))
}

/// Expand `raw` (rule 2) after refusing a literal secret (rule 3): `redacted` is true when
/// connbench would not show `raw` as written.
fn secret_checked(
    raw: &str,
    redacted: bool,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    err: &ErrFn,
) -> Result<String, ConfigError> {
    if redacted && !has_reference(raw) {
        return Err(err(
            key,
            "holds a literal secret: put it in an environment variable and write \
             \"${NAME}\" here (e.g. \"Bearer ${RELAY_TOKEN}\"); secrets never go in the file"
                .into(),
        ));
    }
    expand(raw, env).map_err(|p| err(key, p))
}

fn endpoint(
    name: &str,
    v: &toml::Value,
    key: &str,
    s: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
    err: &ErrFn,
) -> Result<Endpoint, ConfigError> {
    let empty = toml::Table::new();
    let (raw_url, t) = match v {
        toml::Value::String(u) => (u.as_str(), &empty),
        toml::Value::Table(t) => {
            unknown_keys(t, &ENDPOINT_KEYS, &format!("{key}."), err)?;
            let Some(u) = t.get("url") else {
                return Err(err(
                    &format!("{key}.url"),
                    "missing: every endpoint needs its url".into(),
                ));
            };
            (string(u, &format!("{key}.url"), err)?, t)
        }
        _ => {
            return Err(err(
                key,
                "must be a URL string or a table with url = \"…\"".into(),
            ))
        }
    };
    let url_key = if t.is_empty() {
        key.to_string()
    } else {
        format!("{key}.url")
    };
    let url = secret_checked(raw_url, redact::url(raw_url) != raw_url, &url_key, env, err)?;
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let kind = match scheme.as_deref() {
        Some("http" | "https") => Kind::Http,
        Some("ws" | "wss") => Kind::Ws,
        _ => {
            return Err(err(
                &url_key,
                "must be an http://, https://, ws:// or wss:// URL".into(),
            ))
        }
    };
    let sub = |k: &str| format!("{key}.{k}");
    let mut headers = Vec::new();
    if let Some(h) = t.get("headers") {
        let Some(h) = h.as_table() else {
            return Err(err(
                &sub("headers"),
                "must be a table of \"Name\" = \"value\"".into(),
            ));
        };
        for (n, val) in h {
            let hk = format!("{key}.headers.{n}");
            let raw = string(val, &hk, err)?;
            let redacted = redact::header(n, raw) != format!("{n}: {raw}");
            let value = secret_checked(raw, redacted, &hk, env, err)?;
            headers.push((n.clone(), value));
        }
    }
    let ws_only = |k: &str| -> Result<(), ConfigError> {
        if t.contains_key(k) && kind != Kind::Ws {
            return Err(err(
                &sub(k),
                "only WebSocket endpoints (ws:// or wss://) take it".into(),
            ));
        }
        Ok(())
    };
    for k in ["subscribe", "ts_field", "ts_unit"] {
        ws_only(k)?;
    }
    if t.contains_key("requests_per_conn") && kind != Kind::Http {
        return Err(err(
            &sub("requests_per_conn"),
            "only HTTP endpoints (http:// or https://) take it".into(),
        ));
    }
    let list =
        |k: &str, redacts: &dyn Fn(&[String]) -> Vec<String>| -> Result<Vec<String>, ConfigError> {
            let Some(v) = t.get(k) else {
                return Ok(Vec::new());
            };
            let Some(a) = v.as_array() else {
                return Err(err(&sub(k), "must be an array of strings".into()));
            };
            let raw: Vec<String> = a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| err(&sub(k), "must be an array of strings".into()))?;
            let shown = redacts(&raw);
            raw.iter()
                .zip(shown.iter())
                .enumerate()
                .map(|(i, (r, s))| secret_checked(r, r != s, &format!("{key}.{k}[{i}]"), env, err))
                .collect()
        };
    let subscribe = list("subscribe", &|raw| {
        raw.iter().map(|m| redact::message(m)).collect()
    })?;
    let args = list("args", &|raw| {
        let mut line = vec!["connbench".to_string()];
        line.extend(raw.iter().cloned());
        redact::command_line(&line).split_off(1)
    })?;
    let opt_str = |k: &str| -> Result<Option<String>, ConfigError> {
        t.get(k)
            .map(|v| string(v, &sub(k), err).map(str::to_string))
            .transpose()
    };
    Ok(Endpoint {
        name: name.to_string(),
        kind,
        url,
        headers,
        connections: match t.get("connections") {
            Some(v) => positive_int(v, &sub("connections"), 100_000, err)? as usize,
            None => s.connections,
        },
        duration: match t.get("duration") {
            Some(v) => duration(v, &sub("duration"), err)?,
            None => s.round_duration,
        },
        requests_per_conn: match (kind, t.get("requests_per_conn")) {
            (Kind::Http, Some(v)) => requests_per_conn(v, &sub("requests_per_conn"), err)?,
            (Kind::Http, None) => s.requests_per_conn,
            (Kind::Ws, _) => None,
        },
        subscribe,
        ts_field: opt_str("ts_field")?,
        ts_unit: opt_str("ts_unit")?,
        ca: opt_str("ca")?.map(PathBuf::from),
        insecure: match t.get("insecure") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| err(&sub("insecure"), "must be true or false".into()))?,
        },
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "RELAY_TOKEN" => Some("s3cr3t-token".into()),
            "KEY" => Some("k-123".into()),
            _ => None,
        }
    }

    fn parse_ok(text: &str) -> Config {
        parse("c.toml", text, &env).unwrap()
    }

    fn problem(text: &str) -> String {
        let e = parse("c.toml", text, &env).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(!e.contains("s3cr3t"), "no secret in errors: {e}");
        e
    }

    #[test]
    fn endpoints_keep_the_file_order_and_take_the_shared_settings() {
        let c = parse_ok(
            r#"
rounds = 3
round_duration = "500ms"
connections = 4
[endpoints]
zeta = "https://relay.example/exchanges/binance/trades?symbol=BTCUSDT"
alpha = { url = "http://127.0.0.1:8080/", connections = 1, duration = "1s", requests_per_conn = 0 }
[endpoints.stream]
url = "wss://relay.example/ws"
subscribe = ['{"op":"subscribe","channel":"trades"}']
ts_field = "data.T"
ts_unit = "ms"
"#,
        );
        assert_eq!(c.settings.rounds, 3);
        assert_eq!(c.settings.round_duration, Duration::from_millis(500));
        let names: Vec<&str> = c.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "stream"], "the file's order");
        let (z, a, w) = (&c.endpoints[0], &c.endpoints[1], &c.endpoints[2]);
        assert_eq!(
            (z.kind, z.connections, z.duration),
            (Kind::Http, 4, Duration::from_millis(500))
        );
        assert_eq!(z.requests_per_conn, Settings::default().requests_per_conn);
        assert_eq!(
            (a.connections, a.duration, a.requests_per_conn),
            (1, Duration::from_secs(1), None)
        );
        assert_eq!(w.kind, Kind::Ws);
        assert_eq!(w.requests_per_conn, None);
        assert_eq!(
            w.argv(),
            [
                "connbench",
                "ws",
                "wss://relay.example/ws",
                "-c",
                "4",
                "-d",
                "500000us",
                "-q",
                "--subscribe",
                r#"{"op":"subscribe","channel":"trades"}"#,
                "--ts-field",
                "data.T",
                "--ts-unit",
                "ms"
            ]
        );
        // Every argv parses as a connbench command line.
        for e in &c.endpoints {
            crate::cli::try_parse_from(e.argv()).unwrap();
        }
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let c = parse_ok(
            r#"
[endpoints.relay]
url = "https://relay.example/t?symbol=BTCUSDT&api_key=${KEY}"
headers = { Authorization = "Bearer ${RELAY_TOKEN}", "X-Client" = "bench" }
"#,
        );
        let e = &c.endpoints[0];
        assert_eq!(
            e.url,
            "https://relay.example/t?symbol=BTCUSDT&api_key=k-123"
        );
        assert_eq!(
            e.headers,
            [
                (
                    "Authorization".to_string(),
                    "Bearer s3cr3t-token".to_string()
                ),
                ("X-Client".to_string(), "bench".to_string())
            ]
        );
        // Nothing secret in what is shown of it.
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("k-123"),
            "{shown}"
        );
        let argv = crate::redact::command_line(&e.argv()).join(" ");
        assert!(
            !argv.contains("s3cr3t") && !argv.contains("k-123"),
            "{argv}"
        );
    }

    #[test]
    fn literal_secrets_are_refused_naming_the_key() {
        let e = problem(
            "[endpoints.r]\nurl = \"https://h/\"\nheaders = { Authorization = \"Bearer abc\" }\n",
        );
        assert!(
            e.starts_with("c.toml: endpoints.r.headers.Authorization: holds a literal secret"),
            "{e}"
        );
        assert!(e.contains("${NAME}"), "names the fix: {e}");
        let e = problem("[endpoints.r]\nurl = \"https://h/\"\nheaders = { X-Anything = \"Basic dXNlcjpwYXNz\" }\n");
        assert!(
            e.contains("endpoints.r.headers.X-Anything: holds a literal secret"),
            "{e}"
        );
        let e = problem("[endpoints.r]\nurl = \"https://h/\"\nheaders = { X-Api-Key = \"abc\" }\n");
        assert!(
            e.contains("endpoints.r.headers.X-Api-Key: holds a literal secret"),
            "{e}"
        );
        let e = problem("[endpoints]\nr = \"https://user:pw@h/\"\n");
        assert!(
            e.starts_with("c.toml: endpoints.r: holds a literal secret"),
            "{e}"
        );
        let e = problem("[endpoints]\nr = \"https://h/?token=abc\"\n");
        assert!(e.contains("endpoints.r: holds a literal secret"), "{e}");
        let e = problem("[endpoints.w]\nurl = \"wss://h/\"\nsubscribe = ['{\"op\":\"auth\",\"api_key\":\"abc\"}']\n");
        assert!(
            e.contains("endpoints.w.subscribe[0]: holds a literal secret"),
            "{e}"
        );
        let e = problem(
            "[endpoints.r]\nurl = \"https://h/\"\nargs = [\"-H\", \"Authorization: Bearer abc\"]\n",
        );
        assert!(
            e.contains("endpoints.r.args[1]: holds a literal secret"),
            "{e}"
        );
        // The same with the secret from the environment is fine.
        parse_ok("[endpoints.w]\nurl = \"wss://h/\"\nsubscribe = ['{\"op\":\"auth\",\"api_key\":\"${KEY}\"}']\n");
        parse_ok("[endpoints.r]\nurl = \"https://h/\"\nargs = [\"-H\", \"Authorization: Bearer ${KEY}\"]\n");
    }

    #[test]
    fn expansion_errors_name_the_variable() {
        let e = problem("[endpoints.r]\nurl = \"https://h/\"\nheaders = { Authorization = \"Bearer ${NOPE}\" }\n");
        assert!(
            e.contains(
                "endpoints.r.headers.Authorization: the environment variable NOPE is not set"
            ),
            "{e}"
        );
        assert_eq!(expand("a${KEY}b$c", &env).unwrap(), "ak-123b$c");
        assert!(expand("${KEY", &env)
            .unwrap_err()
            .contains("without its closing"));
        assert!(expand("${1X}", &env)
            .unwrap_err()
            .contains("not an environment variable name"));
        assert!(expand("${}", &env).is_err());
        assert_eq!(expand("no refs", &env).unwrap(), "no refs");
    }

    #[test]
    fn bad_configurations_are_one_line_errors_naming_the_key() {
        let cases: [(&str, &str); 16] = [
            (
                "rounds = 0\n[endpoints]\na = \"http://h/\"",
                "c.toml: rounds: must be a whole number from 1",
            ),
            (
                "round_duration = \"fast\"\n[endpoints]\na = \"http://h/\"",
                "c.toml: round_duration: invalid duration",
            ),
            (
                "round_duration = 2\n[endpoints]\na = \"http://h/\"",
                "c.toml: round_duration: must be a duration string",
            ),
            (
                "round_duration = \"0s\"\n[endpoints]\na = \"http://h/\"",
                "c.toml: round_duration: must be longer than 0",
            ),
            (
                "roundz = 2\n[endpoints]\na = \"http://h/\"",
                "c.toml: roundz: unknown key (known: rounds,",
            ),
            ("rounds = 2", "c.toml: endpoints: missing"),
            ("[endpoints]", "c.toml: endpoints: is empty"),
            ("endpoints = 3", "c.toml: endpoints: must be a table"),
            (
                "[endpoints]\na = \"ftp://h/\"",
                "c.toml: endpoints.a: must be an http://",
            ),
            (
                "[endpoints]\na = 3",
                "c.toml: endpoints.a: must be a URL string",
            ),
            (
                "[endpoints.a]\nconnections = 2",
                "c.toml: endpoints.a.url: missing",
            ),
            (
                "[endpoints.a]\nurl = \"http://h/\"\nsubscribe = [\"x\"]",
                "c.toml: endpoints.a.subscribe: only WebSocket endpoints",
            ),
            (
                "[endpoints.a]\nurl = \"ws://h/\"\nrequests_per_conn = 3",
                "c.toml: endpoints.a.requests_per_conn: only HTTP endpoints",
            ),
            (
                "[endpoints.a]\nurl = \"ws://h/\"\nheader = {}",
                "c.toml: endpoints.a.header: unknown key",
            ),
            (
                "[endpoints]\n\"a/b\" = \"http://h/\"",
                "c.toml: endpoints.a/b: \"a/b\" is not a usable name",
            ),
            ("[endpoints\na = 1", "c.toml: not valid TOML at line 1"),
        ];
        for (text, want) in cases {
            let e = problem(text);
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }
}

#[cfg(test)]
mod example {
    use super::*;

    const EXAMPLE: &str = include_str!("../../connbench-bench.example.toml");

    #[test]
    fn the_example_file_parses_and_documents_every_key() {
        let env = |n: &str| {
            ["EXCHANGE_API_KEY", "RELAY_TOKEN"]
                .contains(&n)
                .then(|| format!("value-of-{n}"))
        };
        let c = parse("connbench-bench.example.toml", EXAMPLE, &env).unwrap();
        let names: Vec<&str> = c.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["relay", "direct", "relay_ws", "direct_ws"]);
        assert_eq!(
            c.settings,
            Settings::default(),
            "the example shows the defaults"
        );
        for key in TOP_KEYS.iter().chain(&ENDPOINT_KEYS) {
            assert!(
                EXAMPLE.lines().any(|l| l
                    .trim_start_matches("# ")
                    .starts_with(&format!("{key} ="))
                    || l.starts_with(&format!("[{key}]"))
                    || l.starts_with(&format!("# {key}:"))
                    || l.starts_with(&format!("# {key},"))),
                "{key} is not documented in the example"
            );
        }
        for e in &c.endpoints {
            crate::cli::try_parse_from(e.argv()).unwrap();
        }
        // Not a live target: the example points at placeholder hosts only.
        assert!(c.endpoints.iter().all(|e| e.url.contains(".example")));
        // Without its variables, it says which one is missing.
        let e = parse("x.toml", EXAMPLE, &|_| None).unwrap_err().to_string();
        assert!(e.contains("EXCHANGE_API_KEY is not set"), "{e}");
    }
}
