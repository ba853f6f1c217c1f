//! The check of the server's answer to a WebSocket upgrade
//! (`connbench::proto::ws::parse_upgrade_response`).
//!
//! Input: `[opts, piece]` then the server's bytes. `opts` bit 0 picks the key whose accept value
//! is expected (the RFC sample's, or another); `piece` is how many bytes arrive per read.
//!
//! Checks, for any input:
//! 1. No panic; a validated 101 is never longer than the input.
//! 2. Fed whole and a few bytes per read (the engine calls it with everything so far), the
//!    first verdict that is not "need more" is the same; a verdict reached stays the same
//!    when more bytes (frames) follow.
//! 3. httparse as oracle: where it calls the first head malformed, so does the check; a
//!    validated 101 is a complete head by httparse's reading, at the same length (interim
//!    heads before it included), with status 101.
#![no_main]

use connbench::proto::http1::MAX_HEADERS;
use connbench::proto::ws::{accept_for, parse_upgrade_response, UpgradeError};
use libfuzzer_sys::fuzz_target;

const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const OTHER_KEY: &str = "x3JJHMbDL1EzLkh9GBhXDw==";

fn fed(input: &[u8], accept: &str, piece: usize) -> Result<Option<usize>, UpgradeError> {
    let mut end = 0;
    loop {
        end = (end + piece).min(input.len());
        match parse_upgrade_response(&input[..end], accept) {
            Ok(None) if end < input.len() => {}
            verdict => return verdict,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [opts, piece, wire @ ..] = data else {
        return;
    };
    let accept = accept_for(if opts & 1 == 0 { SAMPLE_KEY } else { OTHER_KEY });
    let whole = parse_upgrade_response(wire, &accept);
    if let Ok(Some(n)) = whole {
        assert!(n <= wire.len());
    }
    let piece = usize::from(*piece).max(1);
    assert_eq!(fed(wire, &accept, piece), whole, "{piece} bytes per read");
    if wire.len() <= 512 {
        assert_eq!(fed(wire, &accept, 1), whole, "byte by byte");
    }
    if !matches!(whole, Ok(None)) {
        let mut more = wire.to_vec();
        more.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        assert_eq!(
            parse_upgrade_response(&more, &accept),
            whole,
            "with a frame after"
        );
    }

    // Oracle: the first head as httparse reads it.
    let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut first = httparse::Response::new(&mut slots);
    let verdict = first.parse(wire);
    let out_of_range = first.code.is_some_and(|c| !(100..=599).contains(&c));
    match verdict {
        Err(httparse::Error::TooManyHeaders) if !out_of_range => {
            assert_eq!(whole, Err(UpgradeError::TooManyHeaders))
        }
        Err(_) => assert!(
            matches!(whole, Err(UpgradeError::Malformed(_))),
            "{whole:?}"
        ),
        Ok(_) if out_of_range => assert!(matches!(whole, Err(UpgradeError::Malformed(_)))),
        Ok(httparse::Status::Partial) => assert_eq!(whole, Ok(None)),
        Ok(httparse::Status::Complete(_)) => {}
    }
    if let Ok(Some(n)) = whole {
        // Walk the heads as httparse sees them: interim ones, then the 101 ending at n.
        let mut at = 0;
        loop {
            let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut slots);
            let Ok(httparse::Status::Complete(len)) = r.parse(&wire[at..n]) else {
                panic!("validated 101 is not a complete head at {at}..{n}");
            };
            at += len;
            match r.code {
                Some(101) => {
                    assert_eq!(at, n);
                    assert_eq!(r.version, Some(1));
                    let accepts: Vec<_> = r
                        .headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                        .collect();
                    assert_eq!(accepts.len(), 1);
                    break;
                }
                Some(100..=199) => {}
                other => panic!("validated an answer with status {other:?}"),
            }
        }
    }
});
