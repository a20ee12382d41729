//! Frame encode/decode cost: the per-frame work a worker does besides the
//! service and the socket. Run with `cargo bench --bench frame`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wharf::frame::{Decoded, DATA};
use wharf::Framing;

fn encode_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    for size in [64usize, 4096, 65536] {
        let payload = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encode_length", size), &payload, |b, p| {
            let mut out = Vec::with_capacity(size + 16);
            b.iter(|| {
                out.clear();
                Framing::Length.encode(DATA, std::hint::black_box(p), &mut out);
                out.len()
            })
        });
        let mut encoded = Vec::new();
        Framing::Length.encode(DATA, &payload, &mut encoded);
        group.bench_with_input(BenchmarkId::new("decode_length", size), &encoded, |b, e| {
            b.iter(
                || match Framing::Length.decode(std::hint::black_box(e), 0, 1 << 20) {
                    Ok(Decoded::Frame { used, .. }) => used,
                    other => panic!("unexpected {other:?}"),
                },
            )
        });
        let mut line = payload.clone();
        line.push(b'\n');
        group.bench_with_input(BenchmarkId::new("decode_line", size), &line, |b, l| {
            b.iter(
                || match Framing::Line.decode(std::hint::black_box(l), 0, 1 << 20) {
                    Ok(Decoded::Frame { used, .. }) => used,
                    other => panic!("unexpected {other:?}"),
                },
            )
        });
    }
    group.finish();
}

criterion_group!(benches, encode_decode);
criterion_main!(benches);
