//! Codec micro-benchmarks for `connbench::proto::ws`, over in-memory buffers only (no socket):
//! decoding a 100-byte JSON text frame alone and in a 64-frame batch, the same batch decoded by
//! tungstenite (a `WebSocket` in `Role::Client` over an in-memory reader) for comparison, and
//! encoding one masked 100-byte client frame. Throughput is in frames per second.
//!
//! Before measuring, this binary checks the hot-path promise that decoding and encoding do not
//! allocate in steady state: a counting global allocator (this bench binary only) must see zero
//! allocations while each scenario runs (fragmented messages after the reassembly buffer has
//! grown once, encoding into a buffer with capacity).
//!
//! Run: `cargo bench --bench ws -- --quick` (or `--measurement-time 3`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::io::{Read, Write};

use connbench::proto::ws::{encode_frame, Decoder, Frame, OpCode, Progress};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tungstenite::protocol::{Role, WebSocket};

/// Counts allocations made by the current thread, then defers to the system allocator.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`; the counter is a plain thread-local
// `Cell` with no destructor, touched through `try_with` so it is safe during thread teardown.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Frames per batch: what one socket read of a busy market-data stream typically holds.
const BATCH: usize = 64;
/// Largest message the benchmark decoder accepts.
const MAX_MESSAGE: usize = 1 << 20;

/// A typical market-data message: exactly 100 bytes of JSON.
fn json_payload() -> Vec<u8> {
    let mut body = String::from(
        r#"{"e":"trade","E":1785153600123,"s":"BTCUSDT","t":4129374,"p":"67012.10","q":"0.013","m":true,"x":""#,
    );
    while body.len() < 98 {
        body.push('x');
    }
    body.push_str("\"}");
    assert_eq!(body.len(), 100);
    body.into_bytes()
}

/// An unmasked server frame (payload ≤ 125 bytes).
fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mut out = vec![(u8::from(fin) << 7) | opcode, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// Decode every frame in `buf` (the engine's loop without the socket); returns how many
/// messages completed. Panics if the buffer does not hold exactly complete frames, so a broken
/// decoder cannot produce a fast-looking number.
fn decode_all(dec: &mut Decoder, buf: &[u8]) -> usize {
    let mut at = 0;
    let mut done = 0;
    while at < buf.len() {
        match dec.decode(&buf[at..]) {
            Ok((n, Progress::Frame(Frame::Message { data, .. }))) => {
                black_box(data);
                at += n;
                done += 1;
            }
            Ok((n, Progress::Partial)) if n > 0 => at += n,
            other => panic!("bench input did not decode: {other:?}"),
        }
    }
    done
}

fn assert_no_allocation(what: &str, run: impl FnOnce()) {
    let before = allocations();
    run();
    let made = allocations() - before;
    assert_eq!(made, 0, "{what} allocated {made} times");
}

fn assert_hot_paths_do_not_allocate(single: &[u8], batch: &[u8]) {
    // The counter must see an allocation when one happens, or the checks below prove nothing.
    let before = allocations();
    black_box(Vec::<u8>::with_capacity(16));
    assert!(
        allocations() > before,
        "the counting allocator is not installed"
    );

    let mut dec = Decoder::new(MAX_MESSAGE, true);
    assert_no_allocation("decoding one frame", || {
        assert_eq!(decode_all(&mut dec, single), 1)
    });
    assert_no_allocation("decoding a batch", || {
        assert_eq!(decode_all(&mut dec, batch), BATCH)
    });
    assert_no_allocation("decoding byte by byte", || {
        let mut start = 0;
        for end in 1..=batch.len() {
            let (n, _) = dec.decode(&batch[start..end]).expect("decodes");
            start += n;
        }
        assert_eq!(start, batch.len());
    });

    // Fragmented messages: the first one grows the reassembly buffer, later ones reuse it.
    let payload = json_payload();
    let fragmented = [
        server_frame(0x1, false, &payload[..40]),
        server_frame(0x9, true, b"ping"),
        server_frame(0x0, true, &payload[40..]),
    ]
    .concat();
    let mut dec = Decoder::new(MAX_MESSAGE, true);
    let feed = |dec: &mut Decoder| {
        let mut at = 0;
        while at < fragmented.len() {
            let (n, _) = dec.decode(&fragmented[at..]).expect("decodes");
            at += n;
        }
    };
    feed(&mut dec);
    assert_no_allocation("decoding fragmented messages", || {
        for _ in 0..10 {
            feed(&mut dec);
        }
    });

    let mut out = Vec::with_capacity(256);
    assert_no_allocation("encoding into a buffer with capacity", || {
        for i in 0..10u8 {
            out.clear();
            encode_frame(&mut out, OpCode::Text, true, &payload, [i, 2, 3, 4]);
        }
    });
}

/// An in-memory stream for tungstenite that replays one buffer; writes are discarded (the batch
/// holds no ping, so tungstenite never has anything to send).
struct Replay {
    data: Vec<u8>,
    at: usize,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.data[self.at..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn decode_benches(c: &mut Criterion) {
    let payload = json_payload();
    let single = server_frame(0x1, true, &payload);
    let batch = single.repeat(BATCH);
    assert_hot_paths_do_not_allocate(&single, &batch);

    let mut group = c.benchmark_group("ws_decode");
    let mut dec = Decoder::new(MAX_MESSAGE, true);

    group.throughput(Throughput::Elements(1));
    group.bench_function("text_100_single", |b| {
        b.iter(|| decode_all(&mut dec, black_box(&single)))
    });

    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("text_100_batch_x64", |b| {
        b.iter(|| decode_all(&mut dec, black_box(&batch)))
    });

    // tungstenite's full client read path (frame codec, UTF-8 check, message assembly) over
    // the same bytes; the socket is created once and rewound, as a long-lived connection is.
    let mut socket = WebSocket::from_raw_socket(
        Replay {
            data: batch.clone(),
            at: 0,
        },
        Role::Client,
        None,
    );
    group.bench_function("tungstenite_text_100_batch_x64", |b| {
        b.iter(|| {
            socket.get_mut().at = 0;
            for _ in 0..BATCH {
                match socket.read() {
                    Ok(tungstenite::Message::Text(text)) => {
                        black_box(text);
                    }
                    other => panic!("tungstenite did not decode the batch: {other:?}"),
                }
            }
        })
    });
    group.finish();
}

fn encode_benches(c: &mut Criterion) {
    let payload = json_payload();
    let mut out = Vec::with_capacity(256);
    let mut mask = 0x1234_5678u32;

    let mut group = c.benchmark_group("ws_encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("text_100_masked", |b| {
        b.iter(|| {
            // A different mask each frame, as RFC 6455 asks (the key's source is not measured).
            mask = mask.wrapping_mul(0x9E37_79B9).wrapping_add(1);
            out.clear();
            encode_frame(
                &mut out,
                OpCode::Text,
                true,
                black_box(&payload),
                mask.to_ne_bytes(),
            );
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, decode_benches, encode_benches);
criterion_main!(benches);
