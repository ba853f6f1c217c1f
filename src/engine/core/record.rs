//! The TLS record layer of an established client connection, done in place in the caller's
//! buffers: rustls does the handshake (and keeps the session tickets and key schedule through its
//! `KernelConnection`), this module seals and opens the records after it. rustls 0.23 copies
//! every application-data record into a fresh `Vec` in both directions, even through its
//! unbuffered API (`ReadTraffic::next_record` pops an owned chunk, `write_fragments` encrypts
//! into an owned message); here a request is sealed straight into the connection's reused
//! output buffer and a response is opened where the socket read put it.
//!
//! Sans-IO: bytes in, bytes out, no socket, no clock. Rules:
//! 1. One record at a time: [`record_len`] says whether the buffer starts with a complete
//!    record, [`Records::open`] decrypts exactly that record in place. Partial input is "not
//!    yet" and consumes nothing.
//! 2. The nonce is the traffic IV XOR the record sequence number (RFC 8446 §5.3; TLS 1.2
//!    ChaCha20-Poly1305, RFC 7905; TLS 1.2 AES-GCM sends its last 8 bytes as the explicit nonce,
//!    the construction rustls itself uses). Every record sealed or opened moves its direction's
//!    sequence number on, whatever it carries.
//! 3. Errors are rustls' own [`rustls::Error`] values, built without allocating, so they are
//!    classified by [`crate::tls::classify`] exactly as rustls' errors were.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{ConnectionTrafficSecrets, ContentType, Error, InvalidMessage, PeerMisbehaved};

/// Largest plaintext per record (RFC 8446 §5.1).
pub const MAX_FRAGMENT: usize = 1 << 14;
/// Record header: type, legacy version (2), length (2).
pub const HEADER: usize = 5;
/// AEAD tag of every suite rustls' ring provider offers.
const TAG: usize = 16;
/// TLS 1.2 AES-GCM explicit nonce carried in each record.
const EXPLICIT: usize = 8;
/// Records this long or longer are refused from the header, as rustls' deframer does (TLS 1.3
/// allows 2^14 + 256, TLS 1.2 2^14 + 2048; rustls takes `len < 2^14 + 2048` for both).
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 2048;
/// Room a record needs beyond its plaintext (header, explicit nonce or inner type, tag).
pub const OVERHEAD: usize = HEADER + EXPLICIT + TAG;

/// The protocol version the handshake chose: it decides the record format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.2: the content type is in the header; AES-GCM carries an explicit nonce.
    Tls12,
    /// TLS 1.3: every record is application data outside, the real type is its last
    /// plaintext byte.
    Tls13,
}

/// One direction's keys and sequence number.
#[derive(Clone)]
struct Direction {
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
    /// TLS 1.2 AES-GCM: an 8-byte explicit nonce follows the header.
    explicit: bool,
}

impl Direction {
    fn new(version: Version, seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<Self, Error> {
        let (alg, key, iv, gcm) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => return Err(Error::HandshakeNotComplete),
        };
        let key = UnboundKey::new(alg, key.as_ref()).map_err(|_| Error::HandshakeNotComplete)?;
        let mut fixed = [0u8; aead::NONCE_LEN];
        fixed.copy_from_slice(iv.as_ref());
        Ok(Direction {
            key: LessSafeKey::new(key),
            iv: fixed,
            seq,
            explicit: gcm && version == Version::Tls12,
        })
    }

    /// IV XOR sequence number (rule 2).
    fn nonce(&self) -> [u8; aead::NONCE_LEN] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }
}

/// TLS 1.2 additional data: sequence number, type, the header's version, plaintext length.
/// The version is the record's own, as rustls authenticates it: a record whose version bytes
/// were changed on the way does not open.
fn aad12(seq: u64, typ: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = typ;
    a[9..11].copy_from_slice(&version);
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}

/// TLS 1.3 additional data: the header as a TLS 1.3 sender writes it (application data, 0x0303,
/// the length). rustls builds it so whatever the received legacy version bytes say (RFC 8446
/// §5.1: they are ignored for all purposes); the outer type is checked in [`Records::open`].
fn aad13(len: usize) -> [u8; HEADER] {
    let len = (len as u16).to_be_bytes();
    [u8::from(ContentType::ApplicationData), 3, 3, len[0], len[1]]
}

/// The length of the complete record `buf` starts with, `None` while it is partial (rule 1).
/// A bad header is refused as soon as its 5 bytes are in, with the error rustls' deframer
/// gives: a content type TLS does not define, a version other than 0x03XX, an empty record of
/// a type other than application data, a length of 2^14 + 2048 or more.
pub fn record_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let typ = ContentType::from(buf[0]);
    if let ContentType::Unknown(_) = typ {
        return Err(Error::InvalidMessage(InvalidMessage::InvalidContentType));
    }
    if buf[1] != 3 {
        return Err(Error::InvalidMessage(
            InvalidMessage::UnknownProtocolVersion,
        ));
    }
    let len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if len == 0 && typ != ContentType::ApplicationData {
        return Err(Error::InvalidMessage(InvalidMessage::InvalidEmptyPayload));
    }
    if len >= MAX_CIPHERTEXT {
        return Err(Error::InvalidMessage(InvalidMessage::MessageTooLarge));
    }
    Ok((buf.len() >= HEADER + len).then_some(HEADER + len))
}

/// Both directions of an established connection. A clone has the same keys and sequence
/// numbers (the fuzz target opens every input from the same starting point).
#[derive(Clone)]
pub struct Records {
    version: Version,
    tx: Direction,
    rx: Direction,
}

impl Records {
    /// The record layer for secrets rustls extracted at the end of the handshake.
    pub fn new(
        version: Version,
        tx: (u64, &ConnectionTrafficSecrets),
        rx: (u64, &ConnectionTrafficSecrets),
    ) -> Result<Records, Error> {
        Ok(Records {
            version,
            tx: Direction::new(version, tx.0, tx.1)?,
            rx: Direction::new(version, rx.0, rx.1)?,
        })
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Records sealed so far under the current sending key.
    pub fn tx_seq(&self) -> u64 {
        self.tx.seq
    }

    /// New sending keys (after a TLS 1.3 key update), from sequence number `seq`.
    pub fn rekey_tx(&mut self, seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<(), Error> {
        self.tx = Direction::new(self.version, seq, secrets)?;
        Ok(())
    }

    /// New receiving keys (after the peer's TLS 1.3 key update).
    pub fn rekey_rx(&mut self, seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<(), Error> {
        self.rx = Direction::new(self.version, seq, secrets)?;
        Ok(())
    }

    /// Seal `data` of content type `typ` as records appended to `out`, at most
    /// [`MAX_FRAGMENT`] plaintext bytes each. Nothing is allocated once `out` has the capacity.
    pub fn seal(&mut self, typ: ContentType, data: &[u8], out: &mut Vec<u8>) {
        let mut chunks = data.chunks(MAX_FRAGMENT);
        // An empty message is still one (empty) record.
        let first = chunks.next().unwrap_or(&[]);
        for chunk in std::iter::once(first).chain(chunks) {
            self.seal_one(u8::from(typ), chunk, out);
        }
    }

    fn seal_one(&mut self, typ: u8, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let nonce = self.tx.nonce();
        let (outer, body_len) = match self.version {
            Version::Tls13 => (u8::from(ContentType::ApplicationData), data.len() + 1 + TAG),
            Version::Tls12 if self.tx.explicit => (typ, EXPLICIT + data.len() + TAG),
            Version::Tls12 => (typ, data.len() + TAG),
        };
        out.reserve(HEADER + body_len);
        let len = (body_len as u16).to_be_bytes();
        out.extend_from_slice(&[outer, 3, 3, len[0], len[1]]);
        if self.tx.explicit {
            out.extend_from_slice(&nonce[4..]);
        }
        let sealed_from = out.len();
        out.extend_from_slice(data);
        let tag = match self.version {
            Version::Tls13 => {
                out.push(typ);
                let mut header = [0u8; HEADER];
                header.copy_from_slice(&out[start..start + HEADER]);
                self.tx.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(header),
                    &mut out[sealed_from..],
                )
            }
            Version::Tls12 => self.tx.key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad12(self.tx.seq, typ, [3, 3], data.len())),
                &mut out[sealed_from..],
            ),
        }
        .expect("a record is far below the AEAD's length limit");
        out.extend_from_slice(tag.as_ref());
        self.tx.seq += 1;
    }

    /// Open the one complete record `rec` holds (as [`record_len`] measured it) in place: its
    /// content type and where its plaintext now is inside `rec`.
    pub fn open(&mut self, rec: &mut [u8]) -> Result<(ContentType, std::ops::Range<usize>), Error> {
        let outer = rec[0];
        let version = [rec[1], rec[2]];
        let body = &mut rec[HEADER..];
        match self.version {
            Version::Tls13 => {
                if outer != u8::from(ContentType::ApplicationData) {
                    return Err(Error::PeerMisbehaved(
                        PeerMisbehaved::IllegalMiddleboxChangeCipherSpec,
                    ));
                }
                let nonce = self.rx.nonce();
                let aad = aad13(body.len());
                let plain = self
                    .rx
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut rec[HEADER..],
                    )
                    .map_err(|_| Error::DecryptError)?;
                self.rx.seq += 1;
                // The checks and their order are rustls' (`into_tls13_unpadded_message`).
                if plain.len() > MAX_FRAGMENT + 1 {
                    return Err(Error::PeerSentOversizedRecord);
                }
                // The real type is the last non-zero byte; zeros after it are padding.
                let Some(at) = plain.iter().rposition(|&b| b != 0) else {
                    return Err(Error::PeerMisbehaved(
                        PeerMisbehaved::IllegalTlsInnerPlaintext,
                    ));
                };
                if plain[at] == u8::from(ContentType::ChangeCipherSpec) {
                    return Err(Error::PeerMisbehaved(
                        PeerMisbehaved::IllegalMiddleboxChangeCipherSpec,
                    ));
                }
                if at > MAX_FRAGMENT {
                    return Err(Error::PeerSentOversizedRecord);
                }
                Ok((ContentType::from(plain[at]), HEADER..HEADER + at))
            }
            Version::Tls12 => {
                let skip = if self.rx.explicit { EXPLICIT } else { 0 };
                if body.len() < skip + TAG {
                    return Err(Error::DecryptError);
                }
                let plain_len = body.len() - skip - TAG;
                let mut nonce = self.rx.nonce();
                if self.rx.explicit {
                    nonce[4..].copy_from_slice(&body[..EXPLICIT]);
                }
                let aad = aad12(self.rx.seq, outer, version, plain_len);
                self.rx
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut body[skip..],
                    )
                    .map_err(|_| Error::DecryptError)?;
                // Checked once the record is authentic, as rustls does: a forged long record
                // is a decrypt error.
                if plain_len > MAX_FRAGMENT {
                    return Err(Error::PeerSentOversizedRecord);
                }
                self.rx.seq += 1;
                let from = HEADER + skip;
                Ok((ContentType::from(outer), from..from + plain_len))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Defects the tls_records fuzz target (fuzz/fuzz_targets/tls_records.rs) found against
    //! rustls' own record layer, pinned with made-up keys (both directions share them, so what
    //! one `Records` seals its clone opens).
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    fn fresh(version: Version) -> Records {
        let s = ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([7u8; 32]),
            iv: Iv::new([9u8; 12]),
        };
        Records::new(version, (0, &s), (0, &s)).unwrap()
    }

    fn open(r: &mut Records, rec: &[u8]) -> Result<(ContentType, Vec<u8>), Error> {
        let mut rec = rec.to_vec();
        let (typ, range) = r.open(&mut rec)?;
        Ok((typ, rec[range].to_vec()))
    }

    #[test]
    fn a_tls12_record_whose_version_bytes_were_changed_is_refused() {
        let mut r = fresh(Version::Tls12);
        let mut wire = Vec::new();
        r.seal(ContentType::ApplicationData, b"hello", &mut wire);
        let untouched = open(&mut r.clone(), &wire);
        assert_eq!(
            untouched,
            Ok((ContentType::ApplicationData, b"hello".to_vec()))
        );
        // rustls authenticates the header's version (0x0301 here): so must the layer.
        wire[2] = 1;
        assert_eq!(record_len(&wire), Ok(Some(wire.len())));
        assert_eq!(open(&mut r, &wire), Err(Error::DecryptError));
    }

    #[test]
    fn a_tls13_record_opens_whatever_its_legacy_version_bytes_say_as_in_rustls() {
        let mut r = fresh(Version::Tls13);
        let mut wire = Vec::new();
        r.seal(ContentType::ApplicationData, b"hello", &mut wire);
        wire[2] = 1;
        let got = open(&mut r, &wire);
        assert_eq!(got, Ok((ContentType::ApplicationData, b"hello".to_vec())));
    }

    #[test]
    fn record_headers_rustls_refuses_are_refused_once_the_header_is_in() {
        let bad = |e| Err(Error::InvalidMessage(e));
        let unknown_type = [0x63, 3, 3, 0, 1];
        assert_eq!(
            record_len(&unknown_type),
            bad(InvalidMessage::InvalidContentType)
        );
        let not_tls = [23, 2, 3, 0, 1];
        assert_eq!(
            record_len(&not_tls),
            bad(InvalidMessage::UnknownProtocolVersion)
        );
        let empty_handshake = [22, 3, 3, 0, 0];
        assert_eq!(
            record_len(&empty_handshake),
            bad(InvalidMessage::InvalidEmptyPayload)
        );
        let empty_data = [23, 3, 3, 0, 0];
        assert_eq!(record_len(&empty_data), Ok(Some(HEADER)));
        let too_long = (MAX_CIPHERTEXT as u16).to_be_bytes();
        let too_long = [23, 3, 3, too_long[0], too_long[1]];
        assert_eq!(record_len(&too_long), bad(InvalidMessage::MessageTooLarge));
        let longest = ((MAX_CIPHERTEXT - 1) as u16).to_be_bytes();
        assert_eq!(record_len(&[23, 3, 1, longest[0], longest[1]]), Ok(None));
    }

    #[test]
    fn an_oversized_tls13_record_of_padding_only_is_oversized_as_rustls_says() {
        let mut r = fresh(Version::Tls13);
        let mut wire = Vec::new();
        // Inner type 0 after 16,386 zero bytes: nothing but padding, and too long.
        r.seal_one(0, &[0; MAX_FRAGMENT + 2], &mut wire);
        assert_eq!(open(&mut r, &wire), Err(Error::PeerSentOversizedRecord));
    }

    #[test]
    fn a_tls13_protected_change_cipher_spec_is_refused_as_rustls_does() {
        let mut r = fresh(Version::Tls13);
        let mut wire = Vec::new();
        r.seal(ContentType::ChangeCipherSpec, &[1], &mut wire);
        assert_eq!(
            open(&mut r, &wire),
            Err(Error::PeerMisbehaved(
                PeerMisbehaved::IllegalMiddleboxChangeCipherSpec
            ))
        );
    }

    #[test]
    fn a_forged_oversized_tls12_record_is_a_decrypt_error_as_in_rustls() {
        let mut r = fresh(Version::Tls12);
        let mut wire = Vec::new();
        r.seal_one(23, &[b'x'; MAX_FRAGMENT + 1], &mut wire);
        let authentic = open(&mut r.clone(), &wire);
        assert_eq!(authentic, Err(Error::PeerSentOversizedRecord));
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(open(&mut r, &wire), Err(Error::DecryptError));
    }
}
