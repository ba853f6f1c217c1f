//! Find one field in a JSON message without parsing the whole message.
//!
//! `connbench ws` reads a server timestamp (`--ts-field`) and a sequence number (`--seq-field`)
//! out of every message it receives, so this is on the hot path. [`find`] walks the document once,
//! left to right, following a [`FieldPath`]: at each level it compares object keys (or counts
//! array elements) and skips everything not on the path as a whole, without building a tree and
//! without allocating. It owns the byte-level JSON grammar needed for that and nothing else: no
//! socket, no clock (the current time comes in as an argument to [`infer_unit`]), no decoding of
//! string values.
//!
//! The scanner's contract:
//! 1. Every byte it reads before the match is checked against the JSON grammar (RFC 8259), so
//!    whitespace anywhere, escapes in keys and strings, and nested values are handled, and
//!    malformed input gives `None`.
//! 2. It stops right after the matched value and the delimiter that follows it: bytes after that
//!    are never read. That early exit is what keeps the lookup cheap, and it means a message that
//!    is malformed only *after* the field still yields the field.
//! 3. Keys match only at the depth the path names; the first matching key wins (serde_json keeps
//!    the last of duplicate keys; servers do not send duplicates, and stopping early is cheaper).
//! 4. Nothing recurses: skipped containers are tracked with a fixed bit stack, deeper than
//!    [`MAX_SKIP_DEPTH`] levels is treated as malformed. Linear time, no panic on any input.

use std::fmt;

/// Deepest nesting accepted inside a skipped value (serde_json's recursion limit is 128 too).
pub const MAX_SKIP_DEPTH: usize = 128;

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    /// The segment's text: matched against object keys (after unescaping them).
    key: Box<str>,
    /// The array index when the segment is a canonical decimal number ("0", "17", not "01").
    index: Option<usize>,
}

/// A dotted path: "timestamp", "E", "data.ts", "data.0.T" (a numeric segment indexes an array).
///
/// A numeric segment applied to an object matches the key with that text, so `"0"` finds both
/// `[x, ...]`'s first element and `{"0": x}`. Keys containing a dot cannot be addressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Parse a dotted path. The error is one line naming the problem and the fix.
    pub fn parse(s: &str) -> Result<FieldPath, String> {
        if s.is_empty() {
            return Err("empty field path (give a key such as timestamp, or data.ts)".to_string());
        }
        let mut segments = Vec::new();
        for part in s.split('.') {
            if part.is_empty() {
                return Err(format!(
                    "empty segment in field path {s:?} (separate keys with single dots, e.g. data.ts)"
                ));
            }
            segments.push(Segment {
                key: part.into(),
                index: parse_index(part),
            });
        }
        Ok(FieldPath { segments })
    }

    /// Number of segments (at least one).
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Always false: a parsed path has at least one segment (here for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&seg.key)?;
        }
        Ok(())
    }
}

/// A canonical array index: digits only, no leading zero unless it is "0", fits in usize.
fn parse_index(part: &str) -> Option<usize> {
    let canonical =
        part.bytes().all(|b| b.is_ascii_digit()) && (part == "0" || !part.starts_with('0'));
    if canonical {
        part.parse().ok()
    } else {
        None
    }
}

/// The raw value found: a number token, or a string's raw bytes (between the quotes, escapes not
/// decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw<'a> {
    /// A number token exactly as written, e.g. `1.7e12` or `-3`.
    Number(&'a [u8]),
    /// The bytes between a string's quotes, escapes left as written.
    Str(&'a [u8]),
    /// An object, array, `true`, `false` or `null` (well-formed, contents not returned).
    Other,
}

/// Locate `path` in `doc`. See the module documentation for the exact contract; in short:
/// whitespace and escapes anywhere, keys matched only at the right depth, first match wins,
/// malformed input before the match gives `None`, never panics, linear time, no allocation.
pub fn find<'a>(doc: &'a [u8], path: &FieldPath) -> Option<Raw<'a>> {
    let mut cur = Cursor { doc, pos: 0 };
    let mut in_object = false;
    for seg in &path.segments {
        cur.skip_ws();
        match cur.peek()? {
            b'{' => {
                cur.pos += 1;
                cur.find_member(&seg.key)?;
                in_object = true;
            }
            b'[' => {
                cur.pos += 1;
                cur.find_element(seg.index?)?;
                in_object = false;
            }
            _ => return None,
        }
    }
    cur.skip_ws();
    let raw = match cur.peek()? {
        b'"' => Raw::Str(cur.string()?.0),
        b'-' | b'0'..=b'9' => Raw::Number(cur.number()?),
        _ => {
            cur.skip_value()?;
            Raw::Other
        }
    };
    // The value must be followed by what its container allows; this rejects a truncated number
    // (`{"ts":17` would otherwise read as 17) and junk such as `{"ts":12x}`.
    cur.skip_ws();
    match (cur.peek()?, in_object) {
        (b',', _) | (b'}', true) | (b']', false) => Some(raw),
        _ => None,
    }
}

/// The value as an unsigned integer: a JSON integer, a number with a fraction/exponent
/// (truncated toward zero, e.g. `1.7e12` → 1700000000000, `12.9` → 12), or a string holding such
/// a number (exchanges send `"E":"1700…"`). Negative numbers, values ≥ 2^64, strings with escapes
/// or surrounding spaces, and non-numbers give `None`.
pub fn find_u64(doc: &[u8], path: &FieldPath) -> Option<u64> {
    match find(doc, path)? {
        Raw::Number(n) => number_to_u64(n),
        Raw::Str(s) => number_to_u64(s),
        Raw::Other => None,
    }
}

/// Convert a JSON number token (strict grammar, the whole slice) to u64 exactly, truncating any
/// fraction. Integer arithmetic only: `f64` would lose nanosecond timestamps (> 2^53).
pub fn number_to_u64(s: &[u8]) -> Option<u64> {
    let mut i = 0;
    match s.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits_end(s, i),
        // `-` is grammatical but the value is not unsigned; anything else is not a number.
        _ => return None,
    }
    let int_digits = &s[..i];
    let mut frac_digits: &[u8] = &[];
    if s.get(i) == Some(&b'.') {
        let start = i + 1;
        i = digits_end(s, start);
        if i == start {
            return None;
        }
        frac_digits = &s[start..i];
    }
    let mut exp: i64 = 0;
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        i = digits_end(s, start);
        if i == start {
            return None;
        }
        // Saturate: past a billion the answer is 0 or overflow either way, and the clamp keeps
        // the arithmetic below from overflowing.
        for &d in &s[start..i] {
            exp = (exp * 10 + i64::from(d - b'0')).min(1_000_000_000);
        }
        if negative {
            exp = -exp;
        }
    }
    if i != s.len() {
        return None;
    }
    // The mantissa digits are int_digits ++ frac_digits; the integer part of the value is the
    // first `k` of them, padded with zeros when k exceeds their count.
    let total = int_digits.len() + frac_digits.len();
    let k = int_digits.len() as i64 + exp;
    if k <= 0 {
        return Some(0);
    }
    let take = (k as u64).min(total as u64) as usize;
    let mut acc: u64 = 0;
    for &d in int_digits.iter().chain(frac_digits).take(take) {
        acc = acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if acc == 0 {
        return Some(0);
    }
    // At most 20 multiplications before overflow returns None, however large the exponent.
    for _ in take as u64..k as u64 {
        acc = acc.checked_mul(10)?;
    }
    Some(acc)
}

fn digits_end(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// A position in the document. Every read goes through `get`, so no input can index out of bounds.
struct Cursor<'a> {
    doc: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.doc.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn expect(&mut self, b: u8) -> Option<()> {
        if self.peek()? == b {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// Just after an object's `{`: advance to the value of the member named `want`, or `None`
    /// when the object ends without it (or is malformed).
    fn find_member(&mut self, want: &str) -> Option<()> {
        self.skip_ws();
        if self.peek()? == b'}' {
            return None;
        }
        loop {
            let (key, escaped) = self.member_key()?;
            if key_eq(key, escaped, want.as_bytes()) {
                self.skip_ws();
                return Some(());
            }
            self.skip_value()?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                _ => return None, // `}`: not here; anything else: malformed
            }
        }
    }

    /// Just after an array's `[`: advance to element `index`, or `None` when there are fewer.
    fn find_element(&mut self, index: usize) -> Option<()> {
        self.skip_ws();
        if self.peek()? == b']' {
            return None;
        }
        let mut i = 0;
        loop {
            if i == index {
                self.skip_ws();
                return Some(());
            }
            self.skip_value()?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                _ => return None,
            }
            i += 1;
        }
    }

    /// `"key"` then `:`, whitespace allowed around both. Returns the raw key and whether it has
    /// escapes.
    fn member_key(&mut self) -> Option<(&'a [u8], bool)> {
        self.skip_ws();
        if self.peek()? != b'"' {
            return None;
        }
        let key = self.string()?;
        self.skip_ws();
        self.expect(b':')?;
        Some(key)
    }

    /// At a `"`: the raw bytes between the quotes and whether they contain an escape. Escapes are
    /// validated (including the four hex digits of `\u`), control characters are rejected.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => {
                    let raw = &self.doc[start..self.pos];
                    self.pos += 1;
                    return Some((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            let hex = self.doc.get(self.pos + 1..self.pos + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.pos += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// At a number: the token, checked against the JSON number grammar.
    fn number(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.pos = digits_end(self.doc, self.pos),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            let after = self.pos + 1;
            self.pos = digits_end(self.doc, after);
            if self.pos == after {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            let after = self.pos;
            self.pos = digits_end(self.doc, after);
            if self.pos == after {
                return None;
            }
        }
        Some(&self.doc[start..self.pos])
    }

    fn literal(&mut self) -> Option<()> {
        let rest = self.doc.get(self.pos..)?;
        for word in [&b"true"[..], b"false", b"null"] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return Some(());
            }
        }
        None
    }

    /// Skip one complete value, validating it. Iterative: containers are tracked in a bit stack
    /// (1 = object, 0 = array), so hostile nesting cannot overflow the thread's stack.
    fn skip_value(&mut self) -> Option<()> {
        let mut stack = [0u64; MAX_SKIP_DEPTH / 64];
        let mut depth = 0usize;
        let push = |stack: &mut [u64], depth: &mut usize, object: bool| -> Option<()> {
            if *depth == MAX_SKIP_DEPTH {
                return None;
            }
            let (word, bit) = (*depth / 64, *depth % 64);
            if object {
                stack[word] |= 1 << bit;
            } else {
                stack[word] &= !(1 << bit);
            }
            *depth += 1;
            Some(())
        };
        'value: loop {
            self.skip_ws();
            match self.peek()? {
                b'{' => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek()? == b'}' {
                        self.pos += 1;
                    } else {
                        push(&mut stack, &mut depth, true)?;
                        self.member_key()?;
                        continue 'value;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek()? == b']' {
                        self.pos += 1;
                    } else {
                        push(&mut stack, &mut depth, false)?;
                        continue 'value;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                _ => self.literal()?,
            }
            // A complete value was just read: close containers until one continues.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let top = depth - 1;
                let object = (stack[top / 64] >> (top % 64)) & 1 == 1;
                self.skip_ws();
                match (self.peek()?, object) {
                    (b',', true) => {
                        self.pos += 1;
                        self.member_key()?;
                        continue 'value;
                    }
                    (b',', false) => {
                        self.pos += 1;
                        continue 'value;
                    }
                    (b'}', true) | (b']', false) => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    _ => return None,
                }
            }
        }
    }
}

/// Compare a raw (validated) key with the wanted text. Keys without a backslash are compared
/// byte for byte; the rare escaped key is decoded on the fly, one character at a time, so even
/// that path does not allocate.
fn key_eq(raw: &[u8], escaped: bool, want: &[u8]) -> bool {
    if !escaped {
        return raw == want;
    }
    let mut want = want;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'\\' {
            match want.split_first() {
                Some((&w, rest)) if w == b => want = rest,
                _ => return false,
            }
            i += 1;
            continue;
        }
        let decoded = match raw.get(i + 1) {
            Some(b'u') => {
                let Some(unit) = hex4(raw.get(i + 2..i + 6)) else {
                    return false;
                };
                i += 6;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low surrogate.
                        let low = match (raw.get(i..i + 2), hex4(raw.get(i + 2..i + 6))) {
                            (Some(b"\\u"), Some(low @ 0xDC00..=0xDFFF)) => low,
                            _ => return false,
                        };
                        i += 6;
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    // A lone low surrogate is not a character: nothing can equal it.
                    0xDC00..=0xDFFF => return false,
                    _ => unit,
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return false,
                }
            }
            Some(&e) => {
                i += 2;
                match e {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    _ => return false,
                }
            }
            None => return false,
        };
        let mut buf = [0u8; 4];
        let encoded = decoded.encode_utf8(&mut buf).as_bytes();
        match want.strip_prefix(encoded) {
            Some(rest) => want = rest,
            None => return false,
        }
    }
    want.is_empty()
}

fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    let digits = digits?;
    let mut v = 0u32;
    for &d in digits {
        v = v * 16 + char::from(d).to_digit(16)?;
    }
    Some(v)
}

/// Timestamp units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsUnit {
    /// Seconds since the Unix epoch.
    Seconds,
    /// Milliseconds since the Unix epoch (most exchanges).
    Millis,
    /// Microseconds since the Unix epoch.
    Micros,
    /// Nanoseconds since the Unix epoch.
    Nanos,
}

/// Ten years of 365.25 days, in nanoseconds: how far from "now" a timestamp may be.
const TEN_YEARS_NS: u64 = 10 * 36_525 * 864 * 1_000_000_000;

impl TsUnit {
    const ALL: [TsUnit; 4] = [
        TsUnit::Seconds,
        TsUnit::Millis,
        TsUnit::Micros,
        TsUnit::Nanos,
    ];

    /// The short name used on the command line and in reports: "s", "ms", "us", "ns".
    pub fn name(self) -> &'static str {
        match self {
            TsUnit::Seconds => "s",
            TsUnit::Millis => "ms",
            TsUnit::Micros => "us",
            TsUnit::Nanos => "ns",
        }
    }

    /// Parse "s", "ms", "us" / "µs", "ns".
    pub fn parse(s: &str) -> Option<TsUnit> {
        match s {
            "s" => Some(TsUnit::Seconds),
            "ms" => Some(TsUnit::Millis),
            "us" | "µs" => Some(TsUnit::Micros),
            "ns" => Some(TsUnit::Nanos),
            _ => None,
        }
    }

    /// Nanoseconds in one unit.
    pub fn nanos_per_unit(self) -> u64 {
        match self {
            TsUnit::Seconds => 1_000_000_000,
            TsUnit::Millis => 1_000_000,
            TsUnit::Micros => 1_000,
            TsUnit::Nanos => 1,
        }
    }

    /// `v` in this unit as Unix nanoseconds, saturating at `u64::MAX` (year 2554).
    pub fn to_unix_nanos(self, v: u64) -> u64 {
        v.saturating_mul(self.nanos_per_unit())
    }
}

/// Infer the unit of an epoch timestamp from its magnitude, given the current time in Unix ns:
/// the unit in which `v` is within ±10 years of now. `None` if no unit fits, or if more than one
/// does (only possible when `now_unix_ns` is within a few decades of 1970, i.e. a broken clock).
pub fn infer_unit(v: u64, now_unix_ns: u64) -> Option<TsUnit> {
    let mut found = None;
    for unit in TsUnit::ALL {
        let per = unit.nanos_per_unit();
        if v.abs_diff(now_unix_ns / per) <= TEN_YEARS_NS / per {
            if found.is_some() {
                return None;
            }
            found = Some(unit);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).expect("test paths are valid")
    }

    fn u(doc: &str, p: &str) -> Option<u64> {
        find_u64(doc.as_bytes(), &path(p))
    }

    fn raw<'a>(doc: &'a str, p: &str) -> Option<Raw<'a>> {
        find(doc.as_bytes(), &path(p))
    }

    // ---- FieldPath ----

    #[test]
    fn path_parse_and_display() {
        let p = path("data.0.T");
        assert_eq!(p.len(), 3);
        assert!(!p.is_empty());
        assert_eq!(p.to_string(), "data.0.T");
        assert_eq!(p.segments[1].index, Some(0));
        assert_eq!(p.segments[0].index, None);
        assert_eq!(
            path("01").segments[0].index,
            None,
            "a leading zero is a key, not an index"
        );
        assert_eq!(path("10").segments[0].index, Some(10));
        assert_eq!(
            path("99999999999999999999999").segments[0].index,
            None,
            "too large for an index: only ever a key"
        );
    }

    #[test]
    fn path_errors_name_problem_and_fix() {
        let e = FieldPath::parse("").unwrap_err();
        assert!(
            e.contains("empty field path") && e.contains("data.ts"),
            "{e}"
        );
        for bad in ["a..b", ".a", "a.", "."] {
            let e = FieldPath::parse(bad).unwrap_err();
            assert!(
                e.contains("empty segment") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    // ---- find: targeted cases ----

    #[test]
    fn top_level_and_nested_fields() {
        assert_eq!(
            u(r#"{"E":1700000000000,"s":"BTCUSDT"}"#, "E"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            u(r#"{"stream":"x","data":{"e":"trade","T":42}}"#, "data.T"),
            Some(42)
        );
        assert_eq!(u(r#"{"data":[{"T":1},{"T":2}]}"#, "data.1.T"), Some(2));
        assert_eq!(u(r#"{"data":[{"T":1},{"T":2}]}"#, "data.2.T"), None);
        assert_eq!(u(r#"[[1,2],[3,[4,5]]]"#, "1.1.0"), Some(4));
        assert_eq!(u(r#"{"a":[]}"#, "a.0"), None);
        assert_eq!(u(r#"{}"#, "a"), None);
    }

    #[test]
    fn keys_match_only_at_the_right_depth() {
        assert_eq!(u(r#"{"a":{"ts":1},"ts":2}"#, "ts"), Some(2));
        assert_eq!(u(r#"{"a":{"ts":1}}"#, "ts"), None);
        assert_eq!(
            u(r#"{"a":[{"ts":1}],"b":{"c":{"ts":3}},"ts":4}"#, "ts"),
            Some(4)
        );
        assert_eq!(u(r#"{"ts":{"ts":9}}"#, "ts.ts"), Some(9));
        assert_eq!(raw(r#"{"ts":{"ts":9}}"#, "ts"), Some(Raw::Other));
        // A key inside a string value is text, not a key.
        assert_eq!(u(r#"{"s":"{\"ts\":1}","ts":2}"#, "ts"), Some(2));
        assert_eq!(u(r#"{"s":"\"ts\":1,"}"#, "ts"), None);
    }

    #[test]
    fn prefix_keys_do_not_match() {
        let doc = r#"{"t":1,"tsx":2,"timestamp":3,"ts":4}"#;
        assert_eq!(u(doc, "ts"), Some(4));
        assert_eq!(u(doc, "t"), Some(1));
        assert_eq!(u(doc, "tsx"), Some(2));
        assert_eq!(u(doc, "tim"), None);
    }

    #[test]
    fn numeric_segment_on_an_object_is_a_key() {
        assert_eq!(u(r#"{"0":5}"#, "0"), Some(5));
        assert_eq!(u(r#"{"01":5}"#, "01"), Some(5));
        assert_eq!(u(r#"[5,6]"#, "01"), None);
        assert_eq!(u(r#"[5,6]"#, "a"), None);
    }

    #[test]
    fn first_match_wins() {
        assert_eq!(u(r#"{"ts":1,"ts":2}"#, "ts"), Some(1));
        // Committed to the first "a": its subtree has no "b".
        assert_eq!(u(r#"{"a":{},"a":{"b":1}}"#, "a.b"), None);
    }

    #[test]
    fn whitespace_anywhere() {
        let doc = " \n{ \"data\"\t:\r\n [ { \"T\" :\n 7 } , 8 ] , \"x\" : 1 }\n";
        assert_eq!(u(doc, "data.0.T"), Some(7));
        assert_eq!(u(doc, "data.1"), Some(8));
        assert_eq!(u(doc, "x"), Some(1));
    }

    #[test]
    fn escaped_keys_are_compared_unescaped() {
        assert_eq!(u(r#"{"t\u0073":5}"#, "ts"), Some(5));
        assert_eq!(u(r#"{"\u0074\u0073":5}"#, "ts"), Some(5));
        assert_eq!(u(r#"{"\"ts\"":1,"ts":2}"#, "ts"), Some(2));
        assert_eq!(u(r#"{"\"ts\"":1}"#, "\"ts\""), Some(1));
        assert_eq!(u(r#"{"a\\b":3}"#, "a\\b"), Some(3));
        assert_eq!(u(r#"{"a\/b":3}"#, "a/b"), Some(3));
        assert_eq!(u(r#"{"\u00e9":3}"#, "é"), Some(3));
        assert_eq!(u(r#"{"\u65e5\u672c":3}"#, "日本"), Some(3));
        assert_eq!(u(r#"{"\ud83d\ude00":7}"#, "😀"), Some(7));
        assert_eq!(
            u(r#"{"\uD83D\uDE00x":7}"#, "😀x"),
            Some(7),
            "upper-case hex"
        );
        // Lone surrogates are not characters: they match nothing, and do not stop the scan.
        assert_eq!(u(r#"{"\ud83d":1,"x":2}"#, "x"), Some(2));
        assert_eq!(u(r#"{"\ude00":1,"x":2}"#, "x"), Some(2));
        assert_eq!(u(r#"{"ts\n":1,"ts":2}"#, "ts"), Some(2));
        assert_eq!(
            u(r#"{"t\u0073x":1,"ts":2}"#, "ts"),
            Some(2),
            "escaped key longer"
        );
        assert_eq!(
            u(r#"{"\u0074":1,"ts":2}"#, "ts"),
            Some(2),
            "escaped key shorter"
        );
    }

    #[test]
    fn string_values_are_raw() {
        assert_eq!(raw(r#"{"s":"a\"b"}"#, "s"), Some(Raw::Str(br#"a\"b"#)));
        assert_eq!(raw(r#"{"s":""}"#, "s"), Some(Raw::Str(b"")));
        assert_eq!(raw(r#"{"n":-1.5e3}"#, "n"), Some(Raw::Number(b"-1.5e3")));
        assert_eq!(
            raw(r#"{"b":true,"n":null,"f":false}"#, "n"),
            Some(Raw::Other)
        );
        assert_eq!(raw(r#"{"a":[1,{"b":[]}]}"#, "a"), Some(Raw::Other));
    }

    #[test]
    fn malformed_before_the_match_is_none() {
        for doc in [
            r#"{"ts":12x}"#,
            r#"{"ts":012}"#,
            r#"{"ts":1.}"#,
            r#"{"ts":.5}"#,
            r#"{"ts":-}"#,
            r#"{"ts":1e}"#,
            r#"{"ts":+1}"#,
            r#"{ts:1}"#,
            r#"{"a" 1,"ts":2}"#,
            r#"{"a":1 "ts":2}"#,
            r#"{"a":1,,"ts":2}"#,
            r#"{"a":[1,}2],"ts":5}"#,
            r#"{"a":[1,2},"ts":5}"#,
            r#"{"a":{"b":1],"ts":5}"#,
            r#"{"a":[1,],"ts":5}"#,
            r#"{"a":tru,"ts":5}"#,
            r#"{"a":"\x","ts":5}"#,
            r#"{"a":"\u12g4","ts":5}"#,
            "{\"a\":\"tab\there\",\"ts\":5}",
            r#"{"ts":17"#,
            r#"{"ts":17]"#,
            r#"[17}"#,
            r#"{"ts":"17"#,
            "",
            "   ",
            "17",
            r#""ts""#,
        ] {
            assert_eq!(u(doc, "ts"), None, "{doc}");
            assert_eq!(u(doc, "0"), None, "{doc}");
        }
    }

    #[test]
    fn bytes_after_the_match_are_not_read() {
        // The documented early exit: the value and its delimiter are enough.
        assert_eq!(u(r#"{"ts":1, garbage"#, "ts"), Some(1));
        assert_eq!(u(r#"{"ts":1}}}}"#, "ts"), Some(1));
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_none_not_a_crash() {
        let deep = format!("{{\"a\":{}{},\"ts\":1}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(u(&deep, "ts"), None);
        let ok = format!(
            "{{\"a\":{}{},\"ts\":1}}",
            "[".repeat(MAX_SKIP_DEPTH),
            "]".repeat(MAX_SKIP_DEPTH)
        );
        assert_eq!(u(&ok, "ts"), Some(1));
        let hostile = "[".repeat(1_000_000);
        assert_eq!(u(&hostile, "ts"), None);
        assert_eq!(u(&hostile, "0.0.0.0"), None);
        // Following a long path through deep nesting is iterative too.
        let long_path = vec!["a"; 5000].join(".");
        let doc = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
        assert_eq!(u(&doc, &long_path), Some(1));
    }

    // ---- find_u64 ----

    #[test]
    fn u64_from_every_number_form() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("42", Some(42)),
            ("1700000000000", Some(1_700_000_000_000)),
            ("1.7e12", Some(1_700_000_000_000)),
            ("1.7E+12", Some(1_700_000_000_000)),
            ("17e11", Some(1_700_000_000_000)),
            ("1700000000000.9", Some(1_700_000_000_000)),
            ("1700000000000123456", Some(1_700_000_000_000_123_456)),
            ("1.700000000000123456e18", Some(1_700_000_000_000_123_456)),
            ("12.9", Some(12)),
            ("0.999", Some(0)),
            ("1234e-2", Some(12)),
            ("0.000123e10", Some(1_230_000)),
            ("5e-999999999999", Some(0)),
            ("0e999999999999", Some(0)),
            ("0.0", Some(0)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551615.99", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("1e19", Some(10_000_000_000_000_000_000)),
            ("1e20", None),
            ("1e999999999999", None),
            ("-5", None),
            ("-0", None),
            ("-0.5", None),
        ];
        for &(n, want) in cases {
            assert_eq!(u(&format!(r#"{{"v":{n}}}"#), "v"), want, "number {n}");
            assert_eq!(u(&format!(r#"{{"v":"{n}"}}"#), "v"), want, "string {n}");
            assert_eq!(number_to_u64(n.as_bytes()), want, "token {n}");
        }
    }

    #[test]
    fn u64_rejects_non_numbers() {
        for v in [
            r#""""#,
            r#""abc""#,
            r#"" 1""#,
            r#""1 ""#,
            r#""+1""#,
            r#""0x10""#,
            r#""1_000""#,
            r#""\u0031""#,
            r#""01""#,
            r#""1.""#,
            r#""inf""#,
            "true",
            "null",
            "[1]",
            r#"{"v":1}"#,
        ] {
            assert_eq!(u(&format!(r#"{{"v":{v}}}"#), "v"), None, "{v}");
        }
    }

    /// Reference for `number_to_u64` built from string manipulation only: move the decimal point,
    /// keep the integer digits, let `u128` parsing judge the size.
    fn reference_u64(token: &str) -> Option<u64> {
        if token.starts_with('-') {
            return None;
        }
        let (mantissa, exp) = match token.find(['e', 'E']) {
            Some(i) => (&token[..i], token[i + 1..].parse::<i64>().ok()?),
            None => (token, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits: String = format!("{int}{frac}");
        let k = int.len() as i64 + exp;
        let int_digits: String = if k <= 0 {
            "0".to_string()
        } else if k as usize <= digits.len() {
            digits[..k as usize].to_string()
        } else {
            format!("{digits}{}", "0".repeat(k as usize - digits.len()))
        };
        let trimmed = int_digits.trim_start_matches('0');
        if trimmed.len() > 20 {
            return None;
        }
        let v: u128 = if trimmed.is_empty() {
            0
        } else {
            trimmed.parse().ok()?
        };
        u64::try_from(v).ok()
    }

    #[test]
    fn number_conversion_matches_the_string_reference() {
        let mut rng = Prng(7);
        for _ in 0..50_000 {
            let token = rng.long_number();
            assert_eq!(
                number_to_u64(token.as_bytes()),
                reference_u64(&token),
                "token {token}"
            );
        }
    }

    // ---- serde_json as the oracle over generated documents ----

    /// splitmix64: tiny, deterministic, good enough to drive a generator.
    struct Prng(u64);

    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as u64) as usize]
        }
        fn digits(&mut self, n: usize, leading_nonzero: bool) -> String {
            (0..n)
                .map(|i| {
                    let d = if i == 0 && leading_nonzero {
                        1 + self.below(9)
                    } else {
                        self.below(10)
                    };
                    char::from(b'0' + d as u8)
                })
                .collect()
        }
        fn exp_marker(&mut self) -> &'static str {
            self.pick(&["e", "E", "e+", "E+", "e-", "E-"])
        }

        /// A number token whose value serde_json's f64 represents closely enough that truncating
        /// it is exact (see `oracle_u64`).
        fn number(&mut self) -> String {
            match self.below(10) {
                0 => self.below(1000).to_string(),
                1 => {
                    let base = self.pick(&[
                        1_700_000_000u64,
                        1_700_000_000_000,
                        1_700_000_000_000_000,
                        1_700_000_000_000_000_000,
                    ]);
                    (base + self.below(1_000_000_000)).to_string()
                }
                2 => self
                    .pick(&[
                        "18446744073709551615",
                        "18446744073709551614",
                        "18446744073709551616",
                        "99999999999999999999999",
                        "9007199254740993",
                    ])
                    .to_string(),
                3 => format!("-{}", 1 + self.below(1_000_000)),
                4 => format!("{}.{}", self.below(1_000_000), {
                    let n = 1 + self.below(6) as usize;
                    self.digits(n, false)
                }),
                5 | 6 => {
                    // At most four significant digits: every value below 2^64 is exact in f64.
                    let n = 1 + self.below(4) as usize;
                    let m = self.digits(n, true);
                    let mantissa = if n > 1 && self.chance(50) {
                        format!("{}.{}", &m[..1], &m[1..])
                    } else {
                        m
                    };
                    let marker = self.exp_marker();
                    let e = if marker.ends_with('-') {
                        self.below(6)
                    } else {
                        self.below(20)
                    };
                    format!("{mantissa}{marker}{e}")
                }
                7 => self
                    .pick(&["0", "0.0", "0e5", "0.000", "-0.0", "-0", "-1.5", "-2e3"])
                    .to_string(),
                8 => self.next().to_string(),
                _ => format!(
                    "{}.{}e-{}",
                    self.below(1000),
                    self.digits(3, false),
                    1 + self.below(3)
                ),
            }
        }

        /// Any grammatical non-negative-or-negative token, digits unconstrained.
        fn long_number(&mut self) -> String {
            let mut s = String::new();
            if self.chance(10) {
                s.push('-');
            }
            if self.chance(20) {
                s.push('0');
            } else {
                let n = 1 + self.below(25) as usize;
                s += &self.digits(n, true);
            }
            if self.chance(50) {
                s.push('.');
                let n = 1 + self.below(25) as usize;
                s += &self.digits(n, false);
            }
            if self.chance(60) {
                s += self.exp_marker();
                s += &self.below(45).to_string();
            }
            s
        }
    }

    /// A generated value, kept as a tree so paths to its leaves are known.
    enum Gen {
        /// A serialized scalar (number token, literal, or a whole quoted string).
        Leaf(String),
        Obj(Vec<(String, Gen)>),
        Arr(Vec<Gen>),
    }

    /// Keys chosen to collide: prefixes of each other, the same names at every depth, numeric
    /// names, names that need escaping, and names a path cannot address (empty, dotted).
    const KEYS: &[&str] = &[
        "ts",
        "t",
        "tsx",
        "timestamp",
        "E",
        "e",
        "T",
        "data",
        "d",
        "0",
        "1",
        "10",
        "seq",
        "u",
        "a.b",
        "",
        "t\"s",
        "k\\",
        "é",
        "日本",
        "😀ts",
        "ts ",
        "\u{1}c",
        "x/y",
    ];

    /// Paths tried on every document beside the ones leading to its leaves.
    const PROBES: &[&str] = &[
        "ts", "t", "E", "T", "data.ts", "data.0.T", "data.E", "0", "1.ts", "0.0", "d.d.d", "seq",
        "10", "01",
    ];

    fn escape(rng: &mut Prng, text: &str, out: &mut String) {
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                '/' if rng.chance(50) => out.push_str("\\/"),
                c if rng.chance(15) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        if rng.chance(50) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        } else {
                            out.push_str(&format!("\\u{unit:04X}"));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn gen_value(rng: &mut Prng, depth: u32) -> Gen {
        let container = depth < 4 && rng.chance(if depth == 0 { 100 } else { 35 });
        if container {
            let n = rng.below(6) as usize;
            if rng.chance(70) {
                let mut members: Vec<(String, Gen)> = Vec::new();
                for _ in 0..n {
                    let key = rng.pick(KEYS).to_string();
                    // Distinct keys per object: serde_json keeps the last duplicate, we the first.
                    if members.iter().all(|(k, _)| *k != key) {
                        members.push((key, gen_value(rng, depth + 1)));
                    }
                }
                Gen::Obj(members)
            } else {
                Gen::Arr((0..n).map(|_| gen_value(rng, depth + 1)).collect())
            }
        } else {
            Gen::Leaf(match rng.below(10) {
                0..=4 => rng.number(),
                // Exchanges send numbers as strings; never escaped (an escaped number is None).
                5 | 6 => {
                    let n = rng.number();
                    format!("\"{n}\"")
                }
                7 => {
                    let text = rng.pick(&[
                        "abc",
                        "",
                        r#"{"ts":1}"#,
                        r#""ts":2,"#,
                        "[1,2]",
                        "back\\slash",
                        "日本😀",
                        "tab\there",
                        "12a",
                        " 12",
                    ]);
                    let mut s = String::from("\"");
                    escape(rng, text, &mut s);
                    s.push('"');
                    s
                }
                _ => rng.pick(&["true", "false", "null"]).to_string(),
            })
        }
    }

    fn ws(rng: &mut Prng, out: &mut String) {
        if rng.chance(30) {
            let s = rng.pick(&[" ", "\n", "\t", "\r\n", "  \n\t "]);
            out.push_str(s);
        }
    }

    fn serialize(rng: &mut Prng, g: &Gen, out: &mut String) {
        ws(rng, out);
        match g {
            Gen::Leaf(s) => out.push_str(s),
            Gen::Obj(members) => {
                out.push('{');
                ws(rng, out);
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(rng, out);
                    out.push('"');
                    escape(rng, k, out);
                    out.push('"');
                    ws(rng, out);
                    out.push(':');
                    serialize(rng, v, out);
                }
                out.push('}');
            }
            Gen::Arr(items) => {
                out.push('[');
                ws(rng, out);
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    serialize(rng, v, out);
                }
                out.push(']');
            }
        }
        ws(rng, out);
    }

    /// Every addressable path in the tree (containers and leaves).
    fn paths(g: &Gen, prefix: &str, out: &mut Vec<String>) {
        let join = |seg: &str| {
            if prefix.is_empty() {
                seg.to_string()
            } else {
                format!("{prefix}.{seg}")
            }
        };
        match g {
            Gen::Leaf(_) => {}
            Gen::Obj(members) => {
                for (k, v) in members {
                    if !k.is_empty() && !k.contains('.') {
                        let p = join(k);
                        out.push(p.clone());
                        paths(v, &p, out);
                    }
                }
            }
            Gen::Arr(items) => {
                for (i, v) in items.iter().enumerate() {
                    let p = join(&i.to_string());
                    out.push(p.clone());
                    paths(v, &p, out);
                }
                out.push(join(&items.len().to_string()));
            }
        }
    }

    /// What `find_u64` must return, judged from serde_json's parse.
    fn oracle_u64(doc: &Value, p: &str) -> Option<u64> {
        let mut v = doc;
        for seg in p.split('.') {
            v = match v {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(parse_index(seg)?)?,
                _ => return None,
            };
        }
        let number = match v {
            Value::Number(n) => n.clone(),
            Value::String(s) => {
                if s.trim() != s || s.starts_with('+') {
                    return None;
                }
                serde_json::from_str::<serde_json::Number>(s).ok()?
            }
            _ => return None,
        };
        if let Some(x) = number.as_u64() {
            return Some(x);
        }
        if number.as_i64().is_some() {
            return None; // negative integer
        }
        let f = number.as_f64()?;
        if f.is_sign_negative() || f >= 18_446_744_073_709_551_616.0 {
            return None;
        }
        Some(f as u64) // truncates; exact for the generator's floats
    }

    #[test]
    fn agrees_with_serde_json_on_generated_documents() {
        let mut rng = Prng(0x5EED);
        let mut checked = 0u64;
        let mut found = 0u64;
        for _ in 0..3000 {
            let tree = gen_value(&mut rng, 0);
            let mut doc = String::new();
            serialize(&mut rng, &tree, &mut doc);
            let parsed: Value = serde_json::from_str(&doc)
                .unwrap_or_else(|e| panic!("generator made invalid JSON ({e}): {doc}"));
            let mut ps = Vec::new();
            paths(&tree, "", &mut ps);
            ps.extend(PROBES.iter().map(|s| s.to_string()));
            for p in &ps {
                let want = oracle_u64(&parsed, p);
                let got = find_u64(doc.as_bytes(), &path(p));
                assert_eq!(got, want, "path {p} in {doc}");
                checked += 1;
                found += u64::from(got.is_some());
            }
        }
        // The generator must actually exercise hits, not just misses.
        assert!(
            checked > 30_000 && found > 5_000,
            "checked {checked}, found {found}"
        );
    }

    // ---- robustness ----

    #[test]
    fn every_prefix_is_none_or_the_full_answer() {
        let mut rng = Prng(0xF00D);
        for _ in 0..300 {
            let tree = gen_value(&mut rng, 0);
            let mut doc = String::new();
            serialize(&mut rng, &tree, &mut doc);
            let mut ps = Vec::new();
            paths(&tree, "", &mut ps);
            ps.extend(PROBES.iter().map(|s| s.to_string()));
            for p in &ps {
                let p = path(p);
                let full = find_u64(doc.as_bytes(), &p);
                for end in 0..doc.len() {
                    let got = find_u64(&doc.as_bytes()[..end], &p);
                    assert!(
                        got.is_none() || got == full,
                        "prefix {:?} gave {got:?}, full doc {full:?}",
                        String::from_utf8_lossy(&doc.as_bytes()[..end])
                    );
                }
            }
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = Prng(0xBAD);
        let alphabet: &[u8] = b"{}[]\":,\\ u0123456789.eE-+tfnrlasd\x00\xff\xe6\x97\xa5";
        let probes: Vec<FieldPath> = PROBES.iter().map(|p| path(p)).collect();
        for _ in 0..20_000 {
            let len = rng.below(64) as usize;
            let doc: Vec<u8> = (0..len).map(|_| rng.pick(alphabet)).collect();
            for p in &probes {
                let _ = find(&doc, p);
                let _ = find_u64(&doc, p);
            }
        }
        for _ in 0..2000 {
            let tree = gen_value(&mut rng, 0);
            let mut doc = String::new();
            serialize(&mut rng, &tree, &mut doc);
            let mut bytes = doc.into_bytes();
            if bytes.is_empty() {
                continue;
            }
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = if rng.chance(50) {
                    rng.pick(alphabet)
                } else {
                    rng.below(256) as u8
                };
            }
            for p in &probes {
                let _ = find_u64(&bytes, p);
            }
        }
    }

    // ---- units ----

    #[test]
    fn unit_names_round_trip() {
        for unit in TsUnit::ALL {
            assert_eq!(TsUnit::parse(unit.name()), Some(unit));
        }
        assert_eq!(TsUnit::parse("µs"), Some(TsUnit::Micros));
        assert_eq!(TsUnit::parse("sec"), None);
        assert_eq!(TsUnit::parse(""), None);
        assert_eq!(TsUnit::parse("MS"), None);
    }

    #[test]
    fn unit_conversion_to_nanos() {
        assert_eq!(TsUnit::Seconds.to_unix_nanos(2), 2_000_000_000);
        assert_eq!(
            TsUnit::Millis.to_unix_nanos(1_700_000_000_123),
            1_700_000_000_123_000_000
        );
        assert_eq!(TsUnit::Micros.to_unix_nanos(5), 5_000);
        assert_eq!(TsUnit::Nanos.to_unix_nanos(7), 7);
        assert_eq!(
            TsUnit::Seconds.to_unix_nanos(u64::MAX / 2),
            u64::MAX,
            "saturates"
        );
    }

    #[test]
    fn unit_inferred_from_magnitude() {
        // 2023-11-14T22:13:20.123456789Z
        let now = 1_700_000_000_123_456_789u64;
        assert_eq!(infer_unit(1_700_000_000, now), Some(TsUnit::Seconds));
        assert_eq!(infer_unit(1_700_000_000_123, now), Some(TsUnit::Millis));
        assert_eq!(infer_unit(1_700_000_000_123_456, now), Some(TsUnit::Micros));
        assert_eq!(infer_unit(now, now), Some(TsUnit::Nanos));
        let year_s = 31_557_600u64;
        for (unit, per) in [
            (TsUnit::Seconds, 1_000_000_000u64),
            (TsUnit::Millis, 1_000_000),
            (TsUnit::Micros, 1_000),
            (TsUnit::Nanos, 1),
        ] {
            let now_u = now / per;
            let nine_years = 9 * year_s * (1_000_000_000 / per);
            let eleven_years = 11 * year_s * (1_000_000_000 / per);
            assert_eq!(infer_unit(now_u + nine_years, now), Some(unit));
            assert_eq!(infer_unit(now_u - nine_years, now), Some(unit));
            assert_eq!(infer_unit(now_u + eleven_years, now), None, "{unit:?} +11y");
            assert_eq!(infer_unit(now_u - eleven_years, now), None, "{unit:?} -11y");
        }
        // Between the bands, and the extremes.
        assert_eq!(infer_unit(100_000_000_000, now), None);
        assert_eq!(infer_unit(0, now), None);
        assert_eq!(infer_unit(u64::MAX, now), None);
        // A clock stuck near 1970 makes small values fit several units: refuse to guess.
        assert_eq!(infer_unit(5, 0), None);
    }
}
