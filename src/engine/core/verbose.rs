//! `-v`: what the first connections saw, and every reconnection, on stderr while the run goes.
//!
//! Rules:
//! 1. Off by default, and then free: sessions hold an `Option<Arc<Verbose>>` and test it before
//!    formatting anything.
//! 2. Bounded: one budget of [`LINES`] lines for the whole run, shared by every worker; past it
//!    lines are counted, and [`Verbose::finish`] says how many were left out. A run with 20,000
//!    reconnecting connections cannot flood the terminal.
//! 3. Only the first [`FIRST_CONNS`] connections (by global index) show what they received, each
//!    at most [`FIRST_READS`] reads of at most [`SHOWN_BYTES`] bytes, escaped so that control
//!    bytes and binary frames stay on one line.
//! 4. Everything shown from the network or the user is redacted as the reports are
//!    ([`crate::redact`]): header lines by name and value, JSON messages by key, URLs.
//! 5. A line is written whole with one `write` to stderr (the lock `eprintln!` takes), so lines of
//!    different workers never interleave inside a line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::redact;

/// Lines a run may print (rule 2).
pub const LINES: u64 = 200;
/// Connections whose first reads are shown (rule 3).
pub const FIRST_CONNS: usize = 3;
/// Reads shown per such connection (rule 3).
pub const FIRST_READS: u32 = 2;
/// Bytes shown per read (rule 3).
pub const SHOWN_BYTES: usize = 300;

/// The run's `-v` log: where lines go and how many are left.
#[derive(Debug)]
pub struct Verbose {
    start: Instant,
    printed: AtomicU64,
    suppressed: AtomicU64,
    out: Sink,
}

/// Where the lines go: stderr, or (for tests) memory.
#[derive(Debug)]
enum Sink {
    /// stderr; on a terminal each line first erases the live progress line the coordinator
    /// may have drawn there (redrawn a second later).
    Stderr {
        tty: bool,
    },
    Memory(std::sync::Mutex<Vec<String>>),
}

impl Verbose {
    /// A log whose times count from `start`, printing to stderr.
    pub fn new(start: Instant) -> Verbose {
        Verbose {
            start,
            printed: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            out: Sink::Stderr {
                tty: crate::sys::stderr_is_tty(),
            },
        }
    }

    /// A log that keeps its lines (tests).
    pub fn in_memory(start: Instant) -> Verbose {
        Verbose {
            out: Sink::Memory(Default::default()),
            ..Verbose::new(start)
        }
    }

    /// The lines kept by [`Verbose::in_memory`].
    pub fn lines(&self) -> Vec<String> {
        match &self.out {
            Sink::Memory(m) => m.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            Sink::Stderr { .. } => Vec::new(),
        }
    }

    /// One line about connection `conn` (global index), at `now`, within the budget.
    pub fn conn(&self, now: Instant, conn: usize, what: std::fmt::Arguments<'_>) {
        if self.printed.fetch_add(1, Ordering::Relaxed) >= LINES {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let t = now.saturating_duration_since(self.start);
        let line = format!("[+{:.3} s] conn {conn}: {what}", t.as_secs_f64());
        self.emit(line);
    }

    /// What a connection among the first ones received (rule 3): the bytes, escaped and
    /// redacted. `read` is the connection's 0-based read count.
    pub fn received(&self, now: Instant, conn: usize, read: u32, bytes: &[u8]) {
        if conn >= FIRST_CONNS || read >= FIRST_READS || bytes.is_empty() {
            return;
        }
        self.conn(
            now,
            conn,
            format_args!("received {} B: {}", bytes.len(), shown(bytes)),
        );
    }

    /// The message a connection among the first ones received (rule 3), redacted as JSON.
    pub fn message(&self, now: Instant, conn: usize, index: u64, text: &[u8], binary: bool) {
        if conn >= FIRST_CONNS || index >= u64::from(FIRST_READS) {
            return;
        }
        let body = if binary {
            format!("binary, {} B: {}", text.len(), escaped(text, SHOWN_BYTES))
        } else {
            let s = String::from_utf8_lossy(text);
            format!(
                "text, {} B: {}",
                text.len(),
                escaped(redact::message(&s).as_bytes(), SHOWN_BYTES)
            )
        };
        self.conn(now, conn, format_args!("message {} ({body})", index + 1));
    }

    /// A connection lost and waiting to reconnect: the seed's "Reconnecting in X s (attempt n)".
    pub fn reconnecting(
        &self,
        now: Instant,
        conn: usize,
        cause: &str,
        wait: Duration,
        attempt: u32,
    ) {
        self.conn(
            now,
            conn,
            format_args!(
                "{cause}; reconnecting in {:.3} s (attempt {attempt})",
                wait.as_secs_f64()
            ),
        );
    }

    /// Say how many lines the budget left out (at the end of the run).
    pub fn finish(&self) {
        let n = self.suppressed.load(Ordering::Relaxed);
        if n > 0 {
            self.emit(format!(
                "-v: {n} more lines left out (the first {LINES} are shown)"
            ));
        }
    }

    fn emit(&self, line: String) {
        match &self.out {
            Sink::Stderr { tty } => {
                let erase = if *tty { "\r\x1b[K" } else { "" };
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{erase}{line}");
            }
            Sink::Memory(m) => m.lock().unwrap_or_else(|e| e.into_inner()).push(line),
        }
    }
}

/// Received bytes as shown: an HTTP head has its secret header values redacted line by line
/// (rule 4); everything is escaped and cut at [`SHOWN_BYTES`].
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SHOWN_BYTES)];
    let text = String::from_utf8_lossy(cut);
    let mut out = String::new();
    for (i, line) in text.split("\r\n").enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        match line.split_once(':') {
            Some((name, value))
                if i > 0 && !name.is_empty() && !name.contains(' ') && name.is_ascii() =>
            {
                out.push_str(&redact::header(name, value.trim_start()));
            }
            _ => out.push_str(line),
        }
    }
    let mut s = escaped(out.as_bytes(), usize::MAX);
    if bytes.len() > SHOWN_BYTES {
        let _ = write!(s, "… (+{} B)", bytes.len() - SHOWN_BYTES);
    }
    s
}

/// Bytes on one line: printable ASCII and UTF-8 as they are, `\r` `\n` `\t` escaped, other
/// control bytes as `\xNN`; at most `max` bytes.
fn escaped(bytes: &[u8], max: usize) -> String {
    let cut = &bytes[..bytes.len().min(max)];
    let mut out = String::with_capacity(cut.len());
    for c in String::from_utf8_lossy(cut).chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    if bytes.len() > max {
        let _ = write!(out, "… (+{} B)", bytes.len() - max);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reads_of_the_first_connections_are_shown_escaped_and_redacted() {
        let t0 = Instant::now();
        let v = Verbose::in_memory(t0);
        let head = b"HTTP/1.1 200 OK\r\nSet-Cookie: session=s3cret\r\nX-Id: 7\r\n\r\nhi\x01";
        v.received(t0 + Duration::from_millis(12), 0, 0, head);
        v.received(t0, 0, FIRST_READS, head); // past the reads shown
        v.received(t0, FIRST_CONNS, 0, head); // past the connections shown
        let lines = v.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert!(
            l.starts_with("[+0.012 s] conn 0: received 59 B: HTTP/1.1 200 OK\\r\\n"),
            "{l}"
        );
        assert!(!l.contains("s3cret"), "{l}");
        assert!(l.contains("X-Id: 7"), "{l}");
        assert!(l.ends_with("hi\\x01"), "{l}");
        assert!(!l.contains('\n'), "one line: {l}");
    }

    #[test]
    fn long_reads_are_cut_and_say_how_much_was_left_out() {
        let t0 = Instant::now();
        let v = Verbose::in_memory(t0);
        v.received(t0, 1, 0, &[b'a'; SHOWN_BYTES + 50]);
        assert!(v.lines()[0].ends_with("… (+50 B)"), "{:?}", v.lines());
    }

    #[test]
    fn messages_are_redacted_as_json_and_reconnections_say_when_and_which_attempt() {
        let t0 = Instant::now();
        let v = Verbose::in_memory(t0);
        let login = br#"{"op":"login","api_key":"k3y"}"#;
        v.message(t0, 2, 0, login, false);
        v.message(t0, 2, u64::from(FIRST_READS), b"later", false);
        v.reconnecting(t0, 9, "stale", Duration::from_millis(1234), 3);
        let lines = v.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let shown = format!("message 1 (text, {} B", login.len());
        assert!(lines[0].contains(&shown), "{}", lines[0]);
        assert!(!lines[0].contains("k3y"), "{}", lines[0]);
        assert_eq!(
            lines[1],
            "[+0.000 s] conn 9: stale; reconnecting in 1.234 s (attempt 3)"
        );
    }

    #[test]
    fn the_budget_bounds_the_lines_and_the_rest_are_counted() {
        let t0 = Instant::now();
        let v = Verbose::in_memory(t0);
        for i in 0..LINES + 25 {
            v.reconnecting(t0, i as usize, "eof", Duration::ZERO, 1);
        }
        v.finish();
        let lines = v.lines();
        assert_eq!(lines.len() as u64, LINES + 1);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("-v: 25 more lines left out (the first 200 are shown)")
        );
    }
}
