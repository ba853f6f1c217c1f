//! Secret redaction for everything a report prints or writes: URLs, request headers and the
//! command line. Reports are pasted into tickets and committed next to benchmarks, so credentials
//! must never reach them.
//!
//! Rules (each errs towards hiding, since a lost secret cannot be recalled and an over-redacted
//! value costs only a little readability):
//!
//! 1. URL userinfo (`user:pass@`) becomes `[redacted]@`, whole — a user name can be a token too.
//! 2. Query and fragment parameters whose *name* looks secret ([`is_secret_param`]) keep the name
//!    and lose the value: `api_key=[redacted]`. Other parameters are kept byte for byte.
//! 3. Header values are redacted when the *name* looks secret ([`is_secret_header`]), when the
//!    value is a `Basic` or `Bearer` credential (any header name, any case of the scheme), and
//!    URL credentials inside a value are redacted per 1–2.
//!    Only names are judged: a value that merely contains the word "token" is kept.
//! 4. On the command line, header flags (`-H V`, `-HV`, `--header V`, `--header=V`; a value
//!    that is not `Name: value` is hidden whole), URL arguments, `Name: value` and `name=value`
//!    arguments, long flags with a secret name (`--token X`, `--api-key=X`) and JSON arguments
//!    (values under secret-named keys, e.g. in `--subscribe`; the JSON is re-serialized with
//!    sorted keys when something was hidden) are redacted.
//!
//! This module only rewrites strings; it must not decide what is shown (that is the renderers'
//! job) and must not panic on any input.

/// The text that replaces every secret.
pub const REDACTED: &str = "[redacted]";

/// Redact a URL: userinfo and secret-named query/fragment parameters (rules 1–2).
/// Works on anything URL-shaped, with or without a scheme; text that is not a URL passes
/// through unchanged. Percent-encoding is preserved; parameter names are judged decoded.
pub fn url(u: &str) -> String {
    // Fragment first: a '?' inside the fragment does not start a query.
    let (before_frag, frag) = match u.find('#') {
        Some(i) => (&u[..i], Some(&u[i + 1..])),
        None => (u, None),
    };
    let (base, query) = match before_frag.find('?') {
        Some(i) => (&before_frag[..i], Some(&before_frag[i + 1..])),
        None => (before_frag, None),
    };
    let mut out = String::with_capacity(u.len());
    out.push_str(&redact_userinfo(base));
    if let Some(q) = query {
        out.push('?');
        out.push_str(&redact_params(q));
    }
    if let Some(f) = frag {
        out.push('#');
        // OAuth implicit flows put `access_token=…` in the fragment.
        out.push_str(&redact_params(f));
    }
    out
}

/// Replace the userinfo of `scheme://userinfo@host…` (the part before any '?' or '#').
fn redact_userinfo(base: &str) -> String {
    let Some(scheme_end) = base.find("://") else {
        return base.to_string();
    };
    let auth_start = scheme_end + 3;
    let rest = &base[auth_start..];
    // RFC 3986: the authority ends at the first '/'; WHATWG also ends it at '\' for http(s).
    let auth_end = rest.find(['/', '\\']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let at = match authority.rfind('@') {
        Some(at) => Some(at),
        // `http://user:pa/ss@host/`: an unencoded '/' in a password cuts the authority short and
        // leaves an invalid port ("pa"). No URL parser would reach a host here, but the string is
        // still a credential on the command line, so hide everything up to the last '@'.
        None if has_invalid_port(authority) => rest.rfind('@'),
        None => None,
    };
    match at {
        Some(at) => format!("{}{}@{}", &base[..auth_start], REDACTED, &rest[at + 1..]),
        None => base.to_string(),
    }
}

/// True when `host:port` has a port that is not all digits (ignoring IPv6 brackets).
fn has_invalid_port(authority: &str) -> bool {
    let after_host = match authority.rfind(']') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    match after_host.rfind(':') {
        Some(i) => !after_host[i + 1..].bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Redact the values of secret-named `name=value` pairs in `&`- or `;`-separated parameters
/// (`;` is the old HTML 4 separator some servers still split on), keeping the separators.
fn redact_params(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut rest = q;
    loop {
        let (pair, sep, next) = match rest.find(['&', ';']) {
            Some(i) => (&rest[..i], Some(&rest[i..i + 1]), &rest[i + 1..]),
            None => (rest, None, ""),
        };
        match pair.split_once('=') {
            Some((name, _)) if is_secret_param(&percent_decode(name)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
        match sep {
            Some(sep) => out.push_str(sep),
            None => return out,
        }
        rest = next;
    }
}

/// Decode `%XX` escapes and `+` (form encoding) for judging a name; invalid escapes stay as-is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Split a name into lower-case words at non-alphanumerics and camelCase humps:
/// `X-Api-Key` → [x, api, key], `accessToken` → [access, token].
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Substrings of the separator-free, lower-case name that always mean a credential.
const SECRET_PARTS: &[&str] = &[
    "token",
    "secret",
    "signature",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "credential",
    "sessionid",
    "sessid",
    "authorization",
    "cookie",
    "bearer",
    "jwt",
];

/// Whole words that mean a credential when they end a name (`api_key`, `x-bapi-sign`, `sig`).
/// Ending-only, so `key_id`, `sign_up` or `session=asia` (a trading session) stay readable.
const SECRET_LAST_WORDS: &[&str] = &[
    "key", "token", "secret", "sig", "sign", "pwd", "pass", "auth", "otp",
];

/// The judgement shared by headers and parameters (rules 2–3).
fn is_secret_name(name: &str) -> bool {
    let words = words(name);
    let compact: String = words.concat();
    if compact.is_empty() {
        return false;
    }
    SECRET_PARTS.iter().any(|p| compact.contains(p))
        || words
            .last()
            .is_some_and(|w| SECRET_LAST_WORDS.contains(&w.as_str()))
}

/// True for header names whose value is a credential (case-insensitive): `Authorization`,
/// `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`, `Api-Key`, `X-Auth-Token`,
/// `X-MBX-APIKEY`, `Ocp-Apim-Subscription-Key`, `CB-ACCESS-SIGN`, `OK-ACCESS-PASSPHRASE`, anything
/// containing token / secret / signature / password / credential / apikey, anything ending in a
/// `key` / `sign` / `auth` / `session` word, and any header with an `auth` word (`X-Auth-User`).
pub fn is_secret_header(name: &str) -> bool {
    is_secret_name(name) || words(name).iter().any(|w| w == "auth")
}

/// True for query/fragment parameter names whose value is a credential (case-insensitive):
/// `key`, `api_key`, `apikey`, `api-key`, `access_key`, `token`, `access_token`, `auth`,
/// `secret`, `signature`, `sig`, `sign`, `password`, `passwd`, `pwd`, `client_secret`,
/// `X-Amz-Signature`, `X-Amz-Security-Token`, `X-Amz-Credential`, names ending in
/// `_key` / `_token` / `_secret` (or `-key`, `Key`, …) and names containing token / secret /
/// signature / password / credential. `symbol`, `limit`, `monkey`, `keyword` are not secret.
pub fn is_secret_param(name: &str) -> bool {
    is_secret_name(name)
}

/// `"Name: value"`, with the value redacted per rule 3.
pub fn header(name: &str, value: &str) -> String {
    format!("{}: {}", name, header_value(name, value))
}

/// HTTP authentication schemes whose credentials follow them in a value (RFC 9110 §11.4), in
/// whatever header they are sent: `X-Upstream-Auth: Basic …` is as secret as `Authorization`.
const CREDENTIAL_SCHEMES: [&str; 2] = ["basic", "bearer"];

/// True for a value `Scheme credentials` with a [`CREDENTIAL_SCHEMES`] scheme (any case, any
/// whitespace between), e.g. `Basic dXNlcjpwYXNz` or `bearer eyJ…`.
fn is_credential_value(value: &str) -> bool {
    let v = value.trim_start();
    let Some((scheme, rest)) = v.split_once(|c: char| c.is_ascii_whitespace()) else {
        return false;
    };
    CREDENTIAL_SCHEMES
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
        && !rest.trim().is_empty()
}

/// The value of a header as a report may show it.
fn header_value(name: &str, value: &str) -> String {
    if is_secret_header(name) || is_credential_value(value) {
        REDACTED.to_string()
    } else if value.contains("://") || value.contains('?') {
        // e.g. `Referer: https://u:p@host/?token=…`
        redact_embedded_urls(value)
    } else {
        value.to_string()
    }
}

/// Redact every whitespace-separated URL-looking word of a free-form value.
fn redact_embedded_urls(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut last = 0;
    for (start, word) in split_words(value) {
        out.push_str(&value[last..start]);
        if word.contains("://") || word.contains('?') {
            out.push_str(&url(word));
        } else {
            out.push_str(word);
        }
        last = start + word.len();
    }
    out.push_str(&value[last..]);
    out
}

/// Non-whitespace runs of `s` with their byte offsets.
fn split_words(s: &str) -> Vec<(usize, &str)> {
    let mut v = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(st)) => {
                v.push((st, &s[st..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        v.push((st, &s[st..]));
    }
    v
}

/// True for arguments with an http/https/ws/wss scheme (case-insensitive).
fn is_url(arg: &str) -> bool {
    let Some((scheme, _)) = arg.split_once("://") else {
        return false;
    };
    ["http", "https", "ws", "wss"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
}

/// True for an RFC 9110 token (header names, parameter names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Split `Name: value` when `Name` is a plausible header name (an RFC 9110 token, surrounding
/// whitespace tolerated as curl does).
fn split_header(arg: &str) -> Option<(&str, &str)> {
    let (name, value) = arg.split_once(':')?;
    let name = name.trim();
    is_token(name).then(|| (name, value.trim_start()))
}

/// Redact the value of a header flag (`-H`, `--header`). A value that does not parse as
/// `Name: value` cannot be judged, so it is hidden whole rather than risk printing a secret.
fn header_arg(arg: &str) -> String {
    match split_header(arg) {
        Some((name, value)) => header(name, value),
        None => REDACTED.to_string(),
    }
}

/// Redact one free-standing argument value (rule 4): URL, `Name: value`, `name=value`, or JSON.
fn value_arg(arg: &str) -> String {
    if is_url(arg) {
        return url(arg);
    }
    if let Some((name, value)) = split_header(arg) {
        // Only rewrite when something changes, so `host:8080` keeps its exact spelling.
        let redacted = header_value(name, value);
        if redacted != value {
            return format!("{name}: {redacted}");
        }
        return arg.to_string();
    }
    if let Some((name, _)) = arg.split_once('=') {
        if is_token(name) && is_secret_param(name) {
            return format!("{name}={REDACTED}");
        }
    }
    let t = arg.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(arg) {
            if redact_json(&mut v) {
                return v.to_string();
            }
        }
    }
    arg.to_string()
}

/// A message the user asked to send (a WebSocket subscription, a heartbeat): values under
/// secret-named keys of a JSON message are redacted (login messages carry keys and
/// signatures); other text is returned as is.
pub fn message(text: &str) -> String {
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) {
            if redact_json(&mut v) {
                return v.to_string();
            }
        }
    }
    text.to_string()
}

/// Replace values under secret-named keys anywhere in a JSON document; true if any changed.
/// Strings elsewhere still get URL redaction.
fn redact_json(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut changed = false;
            for (k, val) in map.iter_mut() {
                if is_secret_param(k) && !val.is_null() {
                    *val = Value::String(REDACTED.to_string());
                    changed = true;
                } else {
                    changed |= redact_json(val);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, i| redact_json(i) | c),
        Value::String(s) if is_url(s) => {
            let r = url(s);
            let changed = r != *s;
            *s = r;
            changed
        }
        _ => false,
    }
}

/// Redact a command line (rule 4). Argument count and order are preserved, so the result still
/// reads as the command that ran.
pub fn command_line(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-H" || arg == "--header" {
            out.push(arg.clone());
            if let Some(v) = args.get(i) {
                out.push(header_arg(v));
                i += 1;
            }
        } else if let Some(v) = arg.strip_prefix("--header=") {
            out.push(format!("--header={}", header_arg(v)));
        } else if let Some(v) = arg.strip_prefix("-H").filter(|_| !arg.starts_with("--")) {
            out.push(format!("-H{}", header_arg(v)));
        } else if let Some(flag) = arg.strip_prefix("--").filter(|f| !f.is_empty()) {
            match flag.split_once('=') {
                Some((name, _)) if is_secret_param(name) => {
                    out.push(format!("--{name}={REDACTED}"));
                }
                Some((name, value)) => out.push(format!("--{name}={}", value_arg(value))),
                None if is_secret_param(flag) => {
                    out.push(arg.clone());
                    // `--token X`: hide X, unless the flag turned out to be a switch.
                    if args.get(i).is_some_and(|v| !v.starts_with('-')) {
                        out.push(REDACTED.to_string());
                        i += 1;
                    }
                }
                None => out.push(arg.clone()),
            }
        } else {
            out.push(value_arg(arg));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn userinfo_is_replaced_whole() {
        assert_eq!(
            url("https://alice:s3cr3t@api.example.com/v1?x=1"),
            "https://[redacted]@api.example.com/v1?x=1"
        );
        assert_eq!(url("http://tok@h:8080/"), "http://[redacted]@h:8080/");
        // '@' inside the password, unencoded: the last '@' of the authority wins.
        assert_eq!(url("http://u:p@ss@h/"), "http://[redacted]@h/");
        // Unencoded '/' in the password leaves an invalid port; still hidden.
        assert_eq!(url("http://u:pa/ss@h/x"), "http://[redacted]@h/x");
        // '@' in the path of a URL without userinfo is not userinfo.
        assert_eq!(url("https://h/@scope/pkg"), "https://h/@scope/pkg");
    }

    #[test]
    fn secret_params_lose_values_others_kept() {
        assert_eq!(
            url("https://api.example.com/trades?symbol=BTC&api_key=abc&signature=xyz"),
            "https://api.example.com/trades?symbol=BTC&api_key=[redacted]&signature=[redacted]"
        );
        assert_eq!(
            url("http://h/?limit=100&apiKey=abc&X-Amz-Signature=f00&X-Amz-Credential=AK%2F1&flag"),
            "http://h/?limit=100&apiKey=[redacted]&X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]&flag"
        );
        // Percent-encoded names are judged decoded.
        assert_eq!(
            url("http://h/?api%5Fkey=abc"),
            "http://h/?api%5Fkey=[redacted]"
        );
        assert_eq!(url("http://h/?token="), "http://h/?token=[redacted]");
        assert_eq!(
            url("http://h/?a=1;sig=2&&b"),
            "http://h/?a=1;sig=[redacted]&&b"
        );
    }

    #[test]
    fn fragments_are_separate_and_redacted() {
        // The fragment is not part of the last query value, and its own params are judged.
        assert_eq!(
            url("https://h/cb?state=1&sig=abc#access_token=xyz&token_type=bearer"),
            "https://h/cb?state=1&sig=[redacted]#access_token=[redacted]&token_type=[redacted]"
        );
        assert_eq!(url("https://h/p#section-2"), "https://h/p#section-2");
        // '?' after '#' is fragment text, not a query.
        assert_eq!(url("https://h/p#a?key=1"), "https://h/p#a?key=[redacted]");
    }

    #[test]
    fn ipv6_hosts() {
        assert_eq!(
            url("http://[::1]:8080/x?token=t"),
            "http://[::1]:8080/x?token=[redacted]"
        );
        assert_eq!(
            url("https://u:p@[2001:db8::1]:443/"),
            "https://[redacted]@[2001:db8::1]:443/"
        );
        assert_eq!(url("http://[::1]/"), "http://[::1]/");
    }

    #[test]
    fn urls_without_secrets_are_untouched() {
        for u in [
            "http://127.0.0.1:41234/",
            "https://example.com/exchanges/binance/trades?symbol=BTCUSDT&limit=100",
            "wss://stream.example.com:9443/ws",
            "http://h",
            "not a url",
            "",
        ] {
            assert_eq!(url(u), u);
        }
    }

    #[test]
    fn header_names() {
        for n in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "SET-COOKIE",
            "X-Api-Key",
            "api-key",
            "X-Auth-Token",
            "X-MBX-APIKEY",
            "Ocp-Apim-Subscription-Key",
            "CB-ACCESS-SIGN",
            "OK-ACCESS-PASSPHRASE",
            "X-Client-Secret",
            "X-Hub-Signature-256",
            "Private-Token",
            "X-Auth-User",
        ] {
            assert!(is_secret_header(n), "{n} should be secret");
        }
        for n in [
            "Accept",
            "Content-Type",
            "User-Agent",
            "X-Request-Id",
            "Host",
            "X-Author",
        ] {
            assert!(!is_secret_header(n), "{n} should be kept");
        }
    }

    #[test]
    fn param_names() {
        for n in [
            "key",
            "KEY",
            "api_key",
            "apikey",
            "api-key",
            "access_key",
            "token",
            "access_token",
            "auth",
            "secret",
            "signature",
            "sig",
            "password",
            "passwd",
            "pwd",
            "client_secret",
            "refresh_token",
            // Any name containing "token" is hidden, even a harmless one: erring towards hiding.
            "token_type",
            "partner_key",
            "x_token",
            "accessKey",
        ] {
            assert!(is_secret_param(n), "{n} should be secret");
        }
        for n in [
            "symbol", "limit", "monkey", "keyword", "author", "key_id", "session", "", "q",
        ] {
            assert!(!is_secret_param(n), "{n} should be kept");
        }
    }

    #[test]
    fn header_values() {
        assert_eq!(
            header("Authorization", "Bearer abc"),
            "Authorization: [redacted]"
        );
        assert_eq!(header("x-api-key", "abc"), "x-api-key: [redacted]");
        // A value that merely mentions "token" in a non-secret header is kept.
        assert_eq!(
            header("X-Note", "token bucket test"),
            "X-Note: token bucket test"
        );
        // A bearer credential under an unusual name is still hidden.
        assert_eq!(
            header("X-Upstream", "bearer eyJhbGci"),
            "X-Upstream: [redacted]"
        );
        assert_eq!(
            header("Referer", "https://u:p@h/?token=t"),
            "Referer: https://[redacted]@h/?token=[redacted]"
        );
        assert_eq!(header("Accept", "*/*"), "Accept: */*");
    }

    #[test]
    fn command_line_header_flag_forms() {
        let got = command_line(&args(&[
            "connbench",
            "http",
            "-H",
            "Authorization: Bearer AAA",
            "-HX-Api-Key: BBB",
            "--header",
            "Cookie: sid=CCC",
            "--header=X-Auth-Token: DDD",
            "-H",
            "X-Note: token bucket",
            "-H",
            "Accept: */*",
            "https://user:EEE@h/p?symbol=BTC&api_key=FFF",
        ]));
        assert_eq!(
            got,
            args(&[
                "connbench",
                "http",
                "-H",
                "Authorization: [redacted]",
                "-HX-Api-Key: [redacted]",
                "--header",
                "Cookie: [redacted]",
                "--header=X-Auth-Token: [redacted]",
                "-H",
                "X-Note: token bucket",
                "-H",
                "Accept: */*",
                "https://[redacted]@h/p?symbol=BTC&api_key=[redacted]",
            ])
        );
        let joined = got.join(" ");
        for s in ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"] {
            assert!(!joined.contains(s), "{s} leaked: {joined}");
        }
    }

    #[test]
    fn command_line_other_forms() {
        let got = command_line(&args(&[
            "connbench",
            "-c",
            "10",
            "--token",
            "AAA",
            "--api-key=BBB",
            "--insecure",
            "--proxy=http://u:CCC@p:3128",
            "Authorization: DDD",
            "WSS://h/ws?key=EEE",
            r#"{"op":"subscribe","apiKey":"FFF","args":["trades"]}"#,
            "--json",
            "out.json",
            "127.0.0.1:8080",
            "-H",
        ]));
        assert_eq!(
            got,
            args(&[
                "connbench",
                "-c",
                "10",
                "--token",
                "[redacted]",
                "--api-key=[redacted]",
                "--insecure",
                "--proxy=http://[redacted]@p:3128",
                "Authorization: [redacted]",
                "WSS://h/ws?key=[redacted]",
                r#"{"apiKey":"[redacted]","args":["trades"],"op":"subscribe"}"#,
                "--json",
                "out.json",
                "127.0.0.1:8080",
                "-H",
            ])
        );
        // Header flag values that do not parse are hidden whole; odd spacing still parses.
        assert_eq!(
            command_line(&args(&[
                "-H",
                "Authorization : AAA",
                "-H",
                "garbage AAA",
                "-HCookie:AAA"
            ])),
            args(&[
                "-H",
                "Authorization: [redacted]",
                "-H",
                "[redacted]",
                "-HCookie: [redacted]"
            ])
        );
        assert_eq!(
            command_line(&args(&["api_key=AAA", "limit=5"])),
            args(&["api_key=[redacted]", "limit=5"])
        );
        // A secret-named switch followed by another flag does not swallow it.
        assert_eq!(
            command_line(&args(&["--no-token", "-c", "1"])),
            args(&["--no-token", "-c", "1"])
        );
    }

    #[test]
    fn basic_and_bearer_values_are_redacted_under_any_name() {
        for value in [
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            "basic QWxh",
            "BASIC QWxh",
            "Bearer eyJhbGci",
            "bEaReR eyJhbGci",
            "Bearer\teyJhbGci",
            "  Basic   QWxh",
        ] {
            assert_eq!(
                header("X-Upstream", value),
                "X-Upstream: [redacted]",
                "{value:?}"
            );
            assert_eq!(
                header("Forwarded-To", value),
                "Forwarded-To: [redacted]",
                "{value:?}"
            );
        }
        // The command line, in every -H form and as a free-standing argument.
        let got = command_line(&args(&[
            "-H",
            "X-A: Basic s1",
            "-HX-B: bearer s2",
            "--header=X-C: BASIC s3",
            "X-D: Bearer s4",
        ]));
        let joined = got.join(" ");
        for secret in ["s1", "s2", "s3", "s4"] {
            assert!(!joined.contains(secret), "{secret} in {got:?}");
        }
        assert_eq!(got[1], "X-A: [redacted]");
        // The scheme word alone, or inside other text, is not a credential.
        for kept in [
            "Basic",
            "Bearer ",
            "basically fine",
            "Token bucket",
            "Bearerx y",
        ] {
            assert_eq!(
                header("X-Note", kept),
                format!("X-Note: {kept}"),
                "{kept:?}"
            );
        }
    }

    #[test]
    fn odd_input_never_panics() {
        for s in [
            "%",
            "%4",
            "%zz=1",
            "?&&==",
            "://@",
            "http://@",
            "h://[::1",
            "ü%C3%BC=ä",
            "#?",
        ] {
            let _ = url(s);
            let _ = command_line(&args(&[s, "-H", s, s]));
            let _ = header(s, s);
        }
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%41+b"), "aA b");
    }
}
