//! HTTP/1.1 response framing (`connbench::proto::http1::ResponseDecoder`).
//!
//! Input: `[heads, cut1, cut2]` then the bytes a server sent. Bit i of `heads` says response i
//! answers a HEAD request; `cut1`/`cut2` place two split points (as fractions of the length).
//!
//! Checks, for any input:
//! 1. No panic; `decode` never consumes more than it is given; "Partial" with nothing consumed
//!    means the same bytes again change nothing.
//! 2. Fed whole, byte by byte and in three pieces, the decoder gives the same responses, the
//!    same error and the same unconsumed bytes, and `finish_eof` the same verdict.
//! 3. httparse as oracle for the first head: where httparse (with as many slots as connbench
//!    allows) calls a prefix of it an error, the decoder reports that error; where httparse says
//!    "incomplete", the decoder reports nothing; a complete head is never a head error.
#![no_main]

use connbench::proto::http1::{Progress, ProtoError, ResponseDecoder, ResponseInfo, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    responses: Vec<ResponseInfo>,
    error: Option<ProtoError>,
    /// Bytes left unconsumed; after an error, nothing (what was fed by then depends on the split).
    leftover: Vec<u8>,
    eof: Option<Result<Option<ResponseInfo>, ProtoError>>,
}

/// What the engine does: append each piece, decode in a loop, drop what was consumed; at the
/// end, EOF (unless the decoder already failed).
fn feed<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, heads: u8) -> Outcome {
    let mut dec = ResponseDecoder::new();
    let mut pending = Vec::new();
    let mut responses = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            let head = responses.len() < 8 && heads & (1 << responses.len()) != 0;
            match dec.decode(&pending, head) {
                Ok((n, progress)) => {
                    assert!(n <= pending.len(), "consumed {n} of {}", pending.len());
                    pending.drain(..n);
                    match progress {
                        Progress::Complete(info) => responses.push(info),
                        Progress::Partial => {
                            assert_eq!(dec.decode(&pending, head), Ok((0, Progress::Partial)));
                            break;
                        }
                    }
                }
                Err(e) => {
                    // A failed decoder repeats its error.
                    assert_eq!(
                        dec.decode(b"HTTP/1.1 200 OK\r\n\r\n", false),
                        Err(e.clone())
                    );
                    return Outcome {
                        responses,
                        error: Some(e),
                        leftover: Vec::new(),
                        eof: None,
                    };
                }
            }
        }
    }
    let eof = Some(dec.finish_eof(&pending));
    Outcome {
        responses,
        error: None,
        leftover: pending,
        eof,
    }
}

fn httparse_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

const RANGE: ProtoError = ProtoError::Malformed("status code outside 100-599");

fn is_head_error(e: &Option<ProtoError>) -> bool {
    matches!(
        e,
        Some(ProtoError::Malformed(_) | ProtoError::TooManyHeaders)
    )
}

fn oracle(wire: &[u8], heads: u8, whole: &Outcome) {
    let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let verdict = response.parse(wire);
    let out_of_range = response.code.is_some_and(|c| !(100..=599).contains(&c));
    match verdict {
        _ if out_of_range => assert_eq!(whole.error, Some(RANGE)),
        Err(httparse::Error::TooManyHeaders) => {
            assert_eq!(whole.error, Some(ProtoError::TooManyHeaders))
        }
        Err(e) => assert_eq!(whole.error, Some(ProtoError::Malformed(httparse_text(e)))),
        Ok(httparse::Status::Partial) => {
            // Heads are at most 64 KiB; fuzz inputs are smaller.
            assert!(whole.responses.is_empty());
            assert_eq!(whole.error, None);
        }
        Ok(httparse::Status::Complete(len)) => {
            let first = feed([&wire[..len]], heads);
            assert!(!is_head_error(&first.error), "{:?}", first.error);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [heads, cut1, cut2, wire @ ..] = data else {
        return;
    };
    let at = |cut: u8| wire.len() * usize::from(cut) / 255;
    let (a, b) = (at(*cut1).min(at(*cut2)), at(*cut1).max(at(*cut2)));

    let whole = feed([wire], *heads);
    let bytewise = feed(wire.chunks(1), *heads);
    assert_eq!(bytewise, whole, "byte by byte vs whole");
    let three = feed([&wire[..a], &wire[a..b], &wire[b..]], *heads);
    assert_eq!(three, whole, "split at {a} and {b} vs whole");
    oracle(wire, *heads, &whole);
});
