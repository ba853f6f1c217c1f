//! Codec micro-benchmarks for `connbench::proto::http1`, over in-memory buffers only (no
//! socket): framing a typical JSON response whole, 16 of them pipelined in one buffer, a 4 KiB
//! chunked response, and `encode_request` for reference. Throughput is in responses (or
//! requests) per second.
//!
//! Before measuring, this binary checks the hot-path promise that `decode` never allocates: a
//! counting global allocator (this bench binary only) must see zero allocations while each
//! scenario is decoded.
//!
//! Run: `cargo bench --bench http1 -- --quick` (or `--measurement-time 3`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use connbench::proto::http1::{encode_request, Progress, ResponseDecoder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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

/// A typical API response: ~200-byte JSON body, 6 header fields.
fn json_response() -> Vec<u8> {
    let mut body = String::from(
        r#"{"id":"7f3c2a9e-5b1d-4e8a-9c6f-2d4b8a1e0f37","status":"ok","items":[1,2,3,5,8,13],"user":{"name":"bench","roles":["read","write"]},"ts":1785153600,"pad":""#,
    );
    while body.len() < 198 {
        body.push('x');
    }
    body.push_str("\"}");
    format!(
        "HTTP/1.1 200 OK\r\nDate: Mon, 27 Jul 2026 12:00:00 GMT\r\nServer: connbench-target\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Request-Id: 7f3c2a9e-5b1d-4e8a-9c6f-2d4b8a1e0f37\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A 4 KiB body sent as four 1 KiB chunks.
fn chunked_response() -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for i in 0..4u8 {
        out.extend_from_slice(b"400\r\n");
        out.extend(std::iter::repeat_n(b'a' + i, 1024));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Frame every response in `buf` (the engine's loop without the socket); returns how many
/// completed. Panics if the buffer does not hold exactly complete responses, so a broken
/// decoder cannot produce a fast-looking number.
fn decode_all(dec: &mut ResponseDecoder, buf: &[u8]) -> usize {
    let mut at = 0;
    let mut done = 0;
    while at < buf.len() {
        match dec.decode(&buf[at..], false) {
            Ok((n, Progress::Complete(info))) => {
                black_box(info);
                at += n;
                done += 1;
            }
            other => panic!("bench input did not frame: {other:?}"),
        }
    }
    done
}

fn assert_decode_does_not_allocate(buffers: &[&[u8]]) {
    // The counter must see an allocation when one happens, or the check below proves nothing.
    let before = allocations();
    black_box(Vec::<u8>::with_capacity(16));
    assert!(
        allocations() > before,
        "the counting allocator is not installed"
    );

    let mut dec = ResponseDecoder::new();
    for buf in buffers {
        let before = allocations();
        decode_all(&mut dec, buf);
        // Byte-by-byte feeding walks every partial path (head scan, chunk lines, CRLF checks).
        let mut start = 0;
        for end in 1..=buf.len() {
            let (n, _) = dec.decode(&buf[start..end], false).expect("frames");
            start += n;
        }
        assert_eq!(dec.finish_eof(&[]), Ok(None));
        let made = allocations() - before;
        assert_eq!(made, 0, "decode allocated {made} times");
    }
}

fn decode_benches(c: &mut Criterion) {
    let single = json_response();
    let pipelined = single.repeat(16);
    let chunked = chunked_response();
    assert_decode_does_not_allocate(&[&single, &pipelined, &chunked]);

    let mut group = c.benchmark_group("http1_decode");
    let mut dec = ResponseDecoder::new();

    group.throughput(Throughput::Elements(1));
    group.bench_function("json_200_whole", |b| {
        b.iter(|| decode_all(&mut dec, black_box(&single)))
    });

    group.throughput(Throughput::Elements(16));
    group.bench_function("json_200_pipelined_x16", |b| {
        b.iter(|| decode_all(&mut dec, black_box(&pipelined)))
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("chunked_4k_in_4", |b| {
        b.iter(|| decode_all(&mut dec, black_box(&chunked)))
    });
    group.finish();
}

fn encode_bench(c: &mut Criterion) {
    let headers = vec![
        ("Accept".to_string(), "application/json".to_string()),
        (
            "Authorization".to_string(),
            "Bearer abcdef0123456789".to_string(),
        ),
        ("X-Bench".to_string(), "1".to_string()),
    ];
    let mut group = c.benchmark_group("http1_encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_3_headers", |b| {
        b.iter(|| {
            encode_request(
                black_box("GET"),
                black_box("/api/v1/items?limit=10"),
                black_box("127.0.0.1:8080"),
                black_box(&headers),
                black_box(b""),
            )
            .expect("valid request")
        })
    });
    group.finish();
}

criterion_group!(benches, decode_benches, encode_bench);
criterion_main!(benches);
