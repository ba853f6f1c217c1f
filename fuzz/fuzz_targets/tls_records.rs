//! The in-place TLS record layer (`connbench::engine::core::record`): the records a server sends
//! after the handshake, and the records the client seals.
//!
//! Keys: once per suite (TLS 1.3 AES-128-GCM, AES-256-GCM, ChaCha20; TLS 1.2 ECDSA AES-128-GCM,
//! AES-256-GCM, ChaCha20), an in-memory handshake between a rustls client and server, both with
//! secret extraction on. The client's secrets key the layer (a `Records` cloned for every input,
//! so every input starts from the same sequence numbers); the extracted secrets of both ends
//! give the ORACLE: rustls' own record protection (`MessageEncrypter`/`MessageDecrypter` of the
//! negotiated suite, the code rustls' connections seal and open records with), behind the header
//! checks of rustls' deframer (written out in `rustls_open`, as `read_opaque_message_header`
//! in rustls 0.23 does them).
//!
//! Input: `[suite, mode, cut1, cut2, at1, at2]` then the body. `suite` picks the suite (modulo
//! 6). `mode` bit 0 clear: the body is (a) bytes off the wire, as they are. Bit 0 set: the body
//! is (b) a program, `[op, len, bytes...]` repeated: each step is one message of the type
//! `op & 3` picks (application data twice as likely, alert, handshake) of `len` bytes (times 65
//! when `op & 0x80`, the given bytes repeated), sealed by rustls' server side; then bit 1 flips
//! one byte of the records (at `at1 at2`, xor `cut1 | 1`), bit 2 cuts them there, bit 3 appends
//! the tail of the program as garbage.
//!
//! Checks, for any input:
//! 1. No panic.
//! 2. Opened by the layer as the transport does (`record_len`, then `Records::open` in place,
//!    the unopened rest carried in front of the next read): whole, byte by byte, in the three
//!    pieces `cut1`/`cut2` make, and whole with the start of another record after it: the same
//!    records (type and plaintext), the same error and the same bytes consumed every way.
//! 3. The same bytes through rustls (the oracle): the same records, the same error, the same
//!    bytes consumed. Policy difference, on purpose: in TLS 1.3 every protected record's outer
//!    type is application data (RFC 8446 §5.2), and the layer refuses any other outer type
//!    (`IllegalMiddleboxChangeCipherSpec`) where rustls tries to decrypt it (and treats a
//!    change_cipher_spec as plaintext).
//! 4. (b) unmodified: the layer opens exactly the messages the server sealed.
//! 5. Round trip: the program's messages sealed by the layer are what rustls' server side opens.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use connbench::engine::core::record::{record_len, Records, Version, MAX_FRAGMENT};
use libfuzzer_sys::fuzz_target;
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage,
};
use rustls::crypto::ring::cipher_suite as cs;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, ConnectionTrafficSecrets, ContentType, Error, InvalidMessage,
    PeerMisbehaved, ProtocolVersion, ServerConfig, ServerConnection, SupportedCipherSuite,
};

/// One suite's keys: the layer's, and rustls' for both directions.
struct Suite {
    version: Version,
    /// The layer as the handshake left it (cloned per input).
    records: Records,
    /// rustls sealing server-to-client records, from this sequence number.
    s2c_seal: Box<dyn MessageEncrypter>,
    /// rustls opening server-to-client records (the oracle for what the layer opens).
    s2c_open: Box<dyn MessageDecrypter>,
    s2c_seq: u64,
    /// rustls opening client-to-server records (what the layer seals).
    c2s_open: Box<dyn MessageDecrypter>,
    c2s_seq: u64,
}

fn suites() -> [SupportedCipherSuite; 6] {
    [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

fn key_iv(s: ConnectionTrafficSecrets) -> (AeadKey, Iv) {
    match s {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
        _ => panic!("a suite rustls' ring provider does not offer"),
    }
}

fn decrypter(
    suite: SupportedCipherSuite,
    s: ConnectionTrafficSecrets,
) -> Box<dyn MessageDecrypter> {
    let (key, iv) = key_iv(s);
    match suite {
        SupportedCipherSuite::Tls13(t) => t.aead_alg.decrypter(key, iv),
        SupportedCipherSuite::Tls12(t) => {
            // The extracted IV is the fixed part and (GCM) the explicit nonce's start.
            let fixed = t.aead_alg.key_block_shape().fixed_iv_len;
            t.aead_alg.decrypter(key, &iv.as_ref()[..fixed])
        }
    }
}

fn encrypter(
    suite: SupportedCipherSuite,
    s: ConnectionTrafficSecrets,
) -> Box<dyn MessageEncrypter> {
    let (key, iv) = key_iv(s);
    match suite {
        SupportedCipherSuite::Tls13(t) => t.aead_alg.encrypter(key, iv),
        SupportedCipherSuite::Tls12(t) => {
            let fixed = t.aead_alg.key_block_shape().fixed_iv_len;
            t.aead_alg
                .encrypter(key, &iv.as_ref()[..fixed], &iv.as_ref()[fixed..])
        }
    }
}

/// Move every byte either side has to send to the other until neither has any.
fn shuttle(client: &mut ClientConnection, server: &mut ServerConnection) {
    for _ in 0..32 {
        let mut moved = false;
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets().unwrap();
            moved = true;
        }
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("the in-memory handshake did not settle");
}

fn setup(suite: SupportedCipherSuite) -> Suite {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let cert = CertificateDer::from(cert.cert.der().to_vec());
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    });
    let version = match suite {
        SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
        SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
    };
    let mut server_cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server_cfg.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client_cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_cfg.enable_secret_extraction = true;
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(Arc::new(client_cfg), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
    shuttle(&mut client, &mut server);
    assert!(!client.is_handshaking() && !server.is_handshaking());
    let c = client.dangerous_extract_secrets().unwrap();
    let s = server.dangerous_extract_secrets().unwrap();
    assert_eq!(
        (c.tx.0, c.rx.0),
        (s.rx.0, s.tx.0),
        "both ends agree on the sequence numbers"
    );
    let version = match suite {
        SupportedCipherSuite::Tls13(_) => Version::Tls13,
        SupportedCipherSuite::Tls12(_) => Version::Tls12,
    };
    let records = Records::new(version, (c.tx.0, &c.tx.1), (c.rx.0, &c.rx.1)).unwrap();
    Suite {
        version,
        records,
        s2c_seal: encrypter(suite, s.tx.1),
        s2c_open: decrypter(suite, c.rx.1),
        s2c_seq: c.rx.0,
        c2s_open: decrypter(suite, s.rx.1),
        c2s_seq: s.rx.0,
    }
}

fn suite(i: usize) -> &'static Mutex<Suite> {
    static SUITES: [OnceLock<Mutex<Suite>>; 6] = [const { OnceLock::new() }; 6];
    SUITES[i].get_or_init(|| Mutex::new(setup(suites()[i])))
}

/// What opening a byte stream came to.
#[derive(Debug, PartialEq)]
struct Outcome {
    records: Vec<(ContentType, Vec<u8>)>,
    error: Option<Error>,
    consumed: usize,
}

/// The layer as the transport drives it: the bytes arrive in `pieces`; after each, every
/// complete record at the front is opened in place and the rest is carried to the next.
fn layer_open<'a>(records: &Records, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut r = records.clone();
    let mut carry: Vec<u8> = Vec::new();
    let mut out = Outcome {
        records: Vec::new(),
        error: None,
        consumed: 0,
    };
    for piece in pieces {
        carry.extend_from_slice(piece);
        let mut at = 0;
        loop {
            let len = match record_len(&carry[at..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    out.consumed += at;
                    return out;
                }
            };
            let rec = &mut carry[at..at + len];
            match r.open(rec) {
                Ok((typ, range)) => {
                    assert!(
                        range.end <= len && range.start >= 5,
                        "plaintext inside the record"
                    );
                    out.records.push((typ, rec[range].to_vec()));
                }
                Err(e) => {
                    out.error = Some(e);
                    out.consumed += at;
                    return out;
                }
            }
            at += len;
        }
        carry.drain(..at);
        out.consumed += at;
    }
    out
}

/// rustls on the same bytes: its deframer's header checks, then its record decryption.
fn rustls_open(s: &mut Suite, wire: &[u8]) -> Outcome {
    let mut out = Outcome {
        records: Vec::new(),
        error: None,
        consumed: 0,
    };
    let mut seq = s.s2c_seq;
    let mut at = 0;
    let fail = |out: &mut Outcome, at, e| {
        out.error = Some(e);
        out.consumed = at;
    };
    while wire.len() - at >= 5 {
        let h = &wire[at..at + 5];
        let typ = ContentType::from(h[0]);
        let version = ProtocolVersion::from(u16::from_be_bytes([h[1], h[2]]));
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        if let ContentType::Unknown(_) = typ {
            fail(
                &mut out,
                at,
                Error::InvalidMessage(InvalidMessage::InvalidContentType),
            );
            return out;
        }
        if h[1] != 3 {
            fail(
                &mut out,
                at,
                Error::InvalidMessage(InvalidMessage::UnknownProtocolVersion),
            );
            return out;
        }
        if typ != ContentType::ApplicationData && len == 0 {
            fail(
                &mut out,
                at,
                Error::InvalidMessage(InvalidMessage::InvalidEmptyPayload),
            );
            return out;
        }
        if len >= 16_384 + 2048 {
            fail(
                &mut out,
                at,
                Error::InvalidMessage(InvalidMessage::MessageTooLarge),
            );
            return out;
        }
        if wire.len() - at - 5 < len {
            break;
        }
        let mut payload = wire[at + 5..at + 5 + len].to_vec();
        let msg = InboundOpaqueMessage::new(typ, version, &mut payload);
        match s.s2c_open.decrypt(msg, seq) {
            Ok(plain) => out.records.push((plain.typ, plain.payload.to_vec())),
            Err(e) => {
                fail(&mut out, at, e);
                return out;
            }
        }
        seq += 1;
        at += 5 + len;
    }
    out.consumed = at;
    out
}

/// Check 2 and 3 on `wire`.
fn check(s: &mut Suite, wire: &[u8], cut1: u8, cut2: u8) -> Outcome {
    let whole = layer_open(&s.records, [wire]);
    assert!(whole.consumed <= wire.len());

    let bytes = layer_open(&s.records, wire.chunks(1));
    assert_eq!(bytes, whole, "byte by byte");

    let (a, b) = (
        cut1 as usize % (wire.len() + 1),
        cut2 as usize % (wire.len() + 1),
    );
    let (a, b) = (a.min(b), a.max(b));
    let pieces = layer_open(&s.records, [&wire[..a], &wire[a..b], &wire[b..]]);
    assert_eq!(pieces, whole, "in pieces at {a} and {b}");

    // The start of another record after everything: refused or left alone, never opened.
    if whole.error.is_some() || whole.consumed == wire.len() {
        let mut more = wire.to_vec();
        more.extend_from_slice(&[23, 3, 3, 0, 40, 1, 2]);
        assert_eq!(
            layer_open(&s.records, [&more[..]]),
            whole,
            "with trailing bytes"
        );
    }

    let oracle = rustls_open(s, wire);
    let outer_refused = s.version == Version::Tls13
        && whole.error
            == Some(Error::PeerMisbehaved(
                PeerMisbehaved::IllegalMiddleboxChangeCipherSpec,
            ))
        && wire[whole.consumed] != 23;
    if outer_refused {
        // The policy difference: up to that record both agree.
        assert!(
            oracle.records.starts_with(&whole.records),
            "before the refused record"
        );
    } else {
        assert_eq!(whole, oracle, "the layer and rustls differ");
    }
    whole
}

/// The program's messages: (type, plaintext).
fn program(mut body: &[u8]) -> (Vec<(ContentType, Vec<u8>)>, &[u8]) {
    let mut msgs = Vec::new();
    while body.len() >= 2 && msgs.len() < 8 {
        let (op, len) = (body[0], body[1] as usize);
        let take = len.min(body.len() - 2);
        let bytes = &body[2..2 + take];
        body = &body[2 + take..];
        let typ = match op & 3 {
            0 | 1 => ContentType::ApplicationData,
            2 => ContentType::Alert,
            _ => ContentType::Handshake,
        };
        let n = if op & 0x80 != 0 { len * 65 } else { len };
        let data: Vec<u8> = if bytes.is_empty() {
            vec![0x5a; n]
        } else {
            bytes.iter().copied().cycle().take(n).collect()
        };
        msgs.push((typ, data));
    }
    (msgs, body)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (suite_no, mode, cut1, cut2) = (data[0] as usize % 6, data[1], data[2], data[3]);
    let at = u16::from_be_bytes([data[4], data[5]]) as usize;
    let body = &data[6..];
    let mut guard = suite(suite_no).lock().unwrap();
    let s = &mut *guard;

    if mode & 1 == 0 {
        check(s, body, cut1, cut2);
        return;
    }

    let (msgs, tail) = program(body);
    // Sealed by rustls' server side, each message in records of at most 2^14 bytes.
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    let mut seq = s.s2c_seq;
    for (typ, plain) in &msgs {
        let mut chunks = plain.chunks(MAX_FRAGMENT);
        let first = chunks.next().unwrap_or(&[]);
        for chunk in std::iter::once(first).chain(chunks) {
            let msg = OutboundPlainMessage {
                typ: *typ,
                version: ProtocolVersion::TLSv1_2,
                payload: OutboundChunks::Single(chunk),
            };
            wire.extend_from_slice(&s.s2c_seal.encrypt(msg, seq).unwrap().encode());
            seq += 1;
            expect.push((*typ, chunk.to_vec()));
        }
    }
    let modified = mode & 0b1110 != 0 && !wire.is_empty();
    if modified {
        if mode & 2 != 0 {
            let i = at % wire.len();
            wire[i] ^= cut1 | 1;
        }
        if mode & 4 != 0 {
            wire.truncate(at % wire.len());
        }
        if mode & 8 != 0 {
            wire.extend_from_slice(tail);
        }
    }
    let got = check(s, &wire, cut1, cut2);
    if !modified {
        let want = Outcome {
            records: expect,
            error: None,
            consumed: wire.len(),
        };
        assert_eq!(
            got, want,
            "the layer opened other messages than the server sealed"
        );
    }

    // Round trip: sealed by the layer, opened by rustls' server side.
    let mut r = s.records.clone();
    let mut out = Vec::new();
    let mut sent = Vec::new();
    for (typ, plain) in &msgs {
        r.seal(*typ, plain, &mut out);
        let mut chunks = plain.chunks(MAX_FRAGMENT);
        let first = chunks.next().unwrap_or(&[]);
        for chunk in std::iter::once(first).chain(chunks) {
            sent.push((*typ, chunk.to_vec()));
        }
    }
    let mut opened = Vec::new();
    let (mut at, mut seq) = (0, s.c2s_seq);
    while at < out.len() {
        let len = record_len(&out[at..]).unwrap().expect("a whole record");
        let h = &out[at..at + 5];
        let typ = ContentType::from(h[0]);
        let version = ProtocolVersion::from(u16::from_be_bytes([h[1], h[2]]));
        let mut payload = out[at + 5..at + len].to_vec();
        let plain = s
            .c2s_open
            .decrypt(InboundOpaqueMessage::new(typ, version, &mut payload), seq)
            .expect("rustls opens what the layer sealed");
        opened.push((plain.typ, plain.payload.to_vec()));
        at += len;
        seq += 1;
    }
    assert_eq!(
        opened, sent,
        "rustls opened other messages than the layer sealed"
    );
});
