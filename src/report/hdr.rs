//! Lossless transport of phase histograms: HdrHistogram V2 + deflate, base64 (STANDARD alphabet).
//!
//! This is the same "HISTFAAA…" blob the Java/Go/Rust HdrHistogram tools write in interval logs,
//! so a report's histograms can be merged exactly later (`connbench merge`) or fed to
//! HistogramLogProcessor, instead of averaging percentiles.
//!
//! This module owns the text encoding only; it must not interpret the histogram (no percentiles,
//! no units). [`decode`] reads files that other machines wrote, so it treats its input as
//! untrusted:
//!
//! 1. The base64 text and the decompressed V2 payload are size-capped ([`MAX_ENCODED_LEN`],
//!    [`MAX_DECODED_LEN`]) before anything is allocated from a length field, because the V2 header
//!    carries a 32-bit payload length that the hdrhistogram deserializer would allocate blindly.
//! 2. The payload's varints are checked before the hdrhistogram deserializer sees them: one
//!    crafted value (zig-zag `i64::MIN`) makes that crate negate with overflow, which panics in
//!    debug builds.
//! 3. Only then is the (decompressed, plain V2) blob handed to `hdrhistogram`'s `Deserializer`, so
//!    the counts are interpreted exactly as the reference implementation does.

use std::fmt;
use std::io::Read;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Longest base64 text [`decode`] accepts (8 MiB). A connbench phase histogram encodes to a few
/// hundred bytes to a few KiB.
pub const MAX_ENCODED_LEN: usize = 8 << 20;
/// Largest decompressed V2 blob [`decode`] accepts (16 MiB). A full connbench phase histogram
/// (27,648 counters, every one non-zero and huge) is under 256 KiB uncompressed.
pub const MAX_DECODED_LEN: usize = 16 << 20;

/// Cookie of an uncompressed V2 histogram (HdrHistogram encoding spec; not exported by the crate).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
/// Cookie of a V2 + deflate histogram.
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// Bytes of the V2 header: cookie, payload length, normalizing offset, digits (4 each), lowest,
/// highest (8 each), integer-to-double ratio (8).
const V2_HEADER_LEN: usize = 40;

/// Why an encoded histogram could not be turned back into a histogram. Every variant means the
/// input (a report file) is damaged or not a connbench/HdrHistogram blob.
#[derive(Debug)]
pub enum HdrError {
    /// The text is empty.
    Empty,
    /// The text is longer than [`MAX_ENCODED_LEN`].
    TooLong(usize),
    /// The text is not valid base64 (STANDARD alphabet, padded).
    Base64(base64::DecodeError),
    /// The bytes do not start with a V2 or V2-deflate cookie.
    NotHdr,
    /// The blob ends before its header or payload does.
    Truncated,
    /// The decompressed blob would exceed [`MAX_DECODED_LEN`].
    TooLarge,
    /// The deflate stream is corrupt.
    Inflate(std::io::Error),
    /// A count or zero-run in the payload is out of range.
    BadPayload,
    /// The hdrhistogram deserializer rejected the blob.
    Deserialize(hdrhistogram::serialization::DeserializeError),
    /// Encoding failed (only possible for a count above `i64::MAX`).
    Serialize(String),
}

impl fmt::Display for HdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HdrError::Empty => write!(f, "histogram: empty encoding"),
            HdrError::TooLong(n) => write!(
                f,
                "histogram: encoding is {n} bytes, above the {MAX_ENCODED_LEN}-byte limit"
            ),
            HdrError::Base64(e) => write!(f, "histogram: invalid base64: {e}"),
            HdrError::NotHdr => write!(f, "histogram: not an HdrHistogram V2 encoding"),
            HdrError::Truncated => write!(f, "histogram: encoding is truncated"),
            HdrError::TooLarge => write!(
                f,
                "histogram: decompresses to more than {MAX_DECODED_LEN} bytes"
            ),
            HdrError::Inflate(e) => write!(f, "histogram: corrupt deflate stream: {e}"),
            HdrError::BadPayload => write!(f, "histogram: count out of range in payload"),
            HdrError::Deserialize(e) => write!(f, "histogram: {e}"),
            HdrError::Serialize(e) => write!(f, "histogram: cannot encode: {e}"),
        }
    }
}

impl std::error::Error for HdrError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HdrError::Base64(e) => Some(e),
            HdrError::Inflate(e) => Some(e),
            HdrError::Deserialize(e) => Some(e),
            _ => None,
        }
    }
}

/// Encode a histogram as base64(V2 + deflate). Returns an empty string in the one case
/// serialization can fail (a single count above `i64::MAX`, which no real run reaches); use
/// [`try_encode`] to see that error.
pub fn encode(h: &Histogram<u64>) -> String {
    try_encode(h).unwrap_or_default()
}

/// [`encode`], reporting a serialization failure instead of returning an empty string.
pub fn try_encode(h: &Histogram<u64>) -> Result<String, HdrError> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| HdrError::Serialize(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(&buf))
}

/// [`try_encode`] without the deflate: base64(plain V2), which [`decode`] reads as well. Larger,
/// and cheaper to write (the fuzz harnesses write thousands of histograms a second).
pub fn try_encode_plain(h: &Histogram<u64>) -> Result<String, HdrError> {
    let mut buf = Vec::new();
    hdrhistogram::serialization::V2Serializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| HdrError::Serialize(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(&buf))
}

/// Decode what [`encode`] produced (or any base64 HdrHistogram V2 / V2-deflate blob).
/// Surrounding whitespace is ignored. Never panics and never allocates more than a bounded
/// amount, whatever the input.
pub fn decode(s: &str) -> Result<Histogram<u64>, HdrError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(HdrError::Empty);
    }
    if s.len() > MAX_ENCODED_LEN {
        return Err(HdrError::TooLong(s.len()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(HdrError::Base64)?;
    let v2 = match read_u32(&bytes, 0)? {
        V2_COMPRESSED_COOKIE => inflate(&bytes)?,
        V2_COOKIE => bytes,
        _ => return Err(HdrError::NotHdr),
    };
    check_v2(&v2)?;
    Deserializer::new()
        .deserialize(&mut v2.as_slice())
        .map_err(HdrError::Deserialize)
}

/// Big-endian u32 at `at`, or `Truncated`.
fn read_u32(b: &[u8], at: usize) -> Result<u32, HdrError> {
    let end = at.checked_add(4).ok_or(HdrError::Truncated)?;
    let s = b.get(at..end).ok_or(HdrError::Truncated)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Decompress the zlib payload of a V2-deflate blob into a plain V2 blob, capped at
/// [`MAX_DECODED_LEN`] so a deflate bomb cannot exhaust memory.
fn inflate(b: &[u8]) -> Result<Vec<u8>, HdrError> {
    let len = read_u32(b, 4)? as usize;
    let payload = b
        .get(8..8usize.saturating_add(len))
        .ok_or(HdrError::Truncated)?;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(payload)
        .take(MAX_DECODED_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(HdrError::Inflate)?;
    if out.len() > MAX_DECODED_LEN {
        return Err(HdrError::TooLarge);
    }
    if read_u32(&out, 0)? != V2_COOKIE {
        return Err(HdrError::NotHdr);
    }
    Ok(out)
}

/// Validate a plain V2 blob before the hdrhistogram deserializer reads it (rules 1 and 2 of the
/// module doc): the declared payload must be present, and no varint may decode to `i64::MIN`.
fn check_v2(b: &[u8]) -> Result<(), HdrError> {
    let declared = read_u32(b, 4)? as usize;
    if b.len() < V2_HEADER_LEN {
        return Err(HdrError::Truncated);
    }
    let payload = b
        .get(V2_HEADER_LEN..V2_HEADER_LEN.saturating_add(declared))
        .ok_or(HdrError::Truncated)?;
    let mut at = 0;
    while at < payload.len() {
        let (v, used) = read_varint(&payload[at..]).ok_or(HdrError::Truncated)?;
        // Zig-zag: u64::MAX decodes to i64::MIN, the only value whose negation overflows.
        if v == u64::MAX {
            return Err(HdrError::BadPayload);
        }
        at += used;
    }
    Ok(())
}

/// One LEB128-64b9B varint (HdrHistogram's: up to 8 bytes of 7 bits, then a full 9th byte).
/// `None` when the slice ends inside the varint.
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..9 {
        let byte = *b.get(i)?;
        if i == 8 {
            value |= u64::from(byte) << 56;
            return Some((value, 9));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    fn round_trip(h: &Histogram<u64>) -> Histogram<u64> {
        let s = encode(h);
        assert!(
            s.starts_with("HISTFAAA"),
            "V2-deflate blobs start HISTFAAA: {s}"
        );
        decode(&s).expect("own encoding decodes")
    }

    fn assert_same(a: &Histogram<u64>, b: &Histogram<u64>) {
        // PartialEq ignores the highest trackable value, so compare the bounds too.
        assert_eq!(a, b);
        assert_eq!(
            (a.low(), a.high(), a.sigfig()),
            (b.low(), b.high(), b.sigfig())
        );
        assert_eq!(a.len(), b.len());
        assert_eq!((a.min(), a.max()), (b.min(), b.max()));
    }

    #[test]
    fn round_trip_empty() {
        let h = new_histogram();
        let back = round_trip(&h);
        assert_same(&h, &back);
        assert!(back.is_empty());
    }

    #[test]
    fn round_trip_spread_and_huge_values() {
        let mut h = new_histogram();
        for v in [1u64, 7, 999, 38_100, 52_300, 1_000_000, 10_000_000_000] {
            h.record_n(v, v % 13 + 1).expect("in range");
        }
        for i in 0..5_000u64 {
            h.record(20_000 + i * 37).expect("in range");
        }
        let back = round_trip(&h);
        assert_same(&h, &back);
        assert_eq!(back.max(), h.highest_equivalent(10_000_000_000));
        assert_eq!(
            back.count_at(10_000_000_000),
            h.count_at(10_000_000_000),
            "1e10 ns bucket survives"
        );
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
    }

    #[test]
    fn decodes_plain_v2_too() {
        let mut h = new_histogram();
        h.record(1234).expect("in range");
        let s = try_encode_plain(&h).expect("serializes");
        // Plain V2's cookie, not V2-deflate's.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&s)
            .expect("base64");
        assert_eq!(raw[..4], [0x1c, 0x84, 0x93, 0x13]);
        assert_same(&h, &decode(&s).expect("plain V2 decodes"));
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        assert!(matches!(decode(""), Err(HdrError::Empty)));
        assert!(matches!(decode("not base64!"), Err(HdrError::Base64(_))));
        assert!(matches!(decode("AAAAAAAA"), Err(HdrError::NotHdr)));
        let mut h = new_histogram();
        h.record(5_000).expect("in range");
        let good = encode(&h);
        // Cut in the middle of the deflate stream.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&good)
            .expect("valid");
        let cut = base64::engine::general_purpose::STANDARD.encode(&bytes[..bytes.len() - 6]);
        assert!(decode(&cut).is_err());
        // Every single-byte corruption of the blob either decodes or errors; none panics.
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = decode(&base64::engine::general_purpose::STANDARD.encode(&b));
            }
        }
        let msg = decode("AAAAAAAA").expect_err("not hdr").to_string();
        assert!(
            !msg.contains('\n') && msg.starts_with("histogram: "),
            "{msg}"
        );
    }

    /// A plain V2 blob with a valid header and the given payload.
    fn v2_blob(declared_len: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&V2_COOKIE.to_be_bytes());
        b.extend_from_slice(&declared_len.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes()); // normalizing offset
        b.extend_from_slice(&3u32.to_be_bytes()); // digits
        b.extend_from_slice(&1u64.to_be_bytes());
        b.extend_from_slice(&60_000_000_000u64.to_be_bytes());
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn hostile_length_and_varint_are_rejected() {
        let enc = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        // Declares a 4 GiB payload: must not be allocated.
        let huge = v2_blob(u32::MAX, &[2]);
        assert!(matches!(decode(&enc(&huge)), Err(HdrError::Truncated)));
        // A zig-zag i64::MIN zero-run: panics inside hdrhistogram in debug builds if passed on.
        let min = v2_blob(9, &[0xff; 9]);
        assert!(matches!(decode(&enc(&min)), Err(HdrError::BadPayload)));
        // Same blob, deflated: the check also runs after decompression.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &min).expect("in memory");
        let z = z.finish().expect("in memory");
        let mut wrapped = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        wrapped.extend_from_slice(&(z.len() as u32).to_be_bytes());
        wrapped.extend_from_slice(&z);
        assert!(matches!(decode(&enc(&wrapped)), Err(HdrError::BadPayload)));
        // A well-formed hand-built blob with one count at index 3 decodes.
        let ok = v2_blob(2, &[0x05, 0x02]); // zig-zag: -3 (skip 3 zeros), then count 1
        let h = decode(&enc(&ok)).expect("valid hand-built blob");
        assert_eq!(h.len(), 1);
        assert_eq!(h.max(), 3);
    }

    #[test]
    fn deflate_bomb_is_capped() {
        let zeros = vec![0u8; MAX_DECODED_LEN + 1024];
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &V2_COOKIE.to_be_bytes()).expect("in memory");
        std::io::Write::write_all(&mut z, &zeros).expect("in memory");
        let z = z.finish().expect("in memory");
        let mut b = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        b.extend_from_slice(&(z.len() as u32).to_be_bytes());
        b.extend_from_slice(&z);
        let s = base64::engine::general_purpose::STANDARD.encode(&b);
        assert!(matches!(decode(&s), Err(HdrError::TooLarge)));
    }
}
