//! Baseline criterion benches of `Dart::translate`: an IOTLB hit (one hot
//! page) and a miss (a walk: random pages over 64 MiB with a 16-entry IOTLB);
//! and the cost of the event trace on the DMA path: a 64-byte `dma_read` of a
//! hot page with tracing off, with a log on and a watch range the DMA does
//! not touch, and with every DMA recorded (drained outside the timing).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dart::{Dart, DartConfig, Dir, EventLog, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGES: u64 = 4096; // 64 MiB of 16 KiB pages

fn setup(iotlb_entries: usize) -> Dart {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory((PAGES + 64) * 16384)).unwrap());
    let mut cfg = DartConfig::new("bench", Variant::T8110);
    cfg.iotlb_entries = iotlb_entries;
    let d = Dart::new(frames.clone(), cfg).unwrap();
    d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let buf = frames.alloc(FrameType::UserData, PAGES).unwrap();
    d.map(1, 0, &buf, Perm::RW, None).unwrap();
    d
}

fn translate(c: &mut Criterion) {
    let d = setup(256);
    c.bench_function("translate/iotlb-hit", |b| {
        b.iter(|| black_box(d.translate(1, black_box(0x4008), 8, Dir::Read).unwrap().spans()[0].pa))
    });
    let d = setup(16);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    c.bench_function("translate/iotlb-miss-walk", |b| {
        b.iter(|| {
            let iova = rng.gen_range(0..PAGES) * 16384 + 8;
            black_box(d.translate(1, iova, 8, Dir::Read).unwrap().spans()[0].pa)
        })
    });
}

fn dma_tracing(c: &mut Criterion) {
    let d = setup(256);
    let mut buf = [0u8; 64];
    c.bench_function("dma64/trace-off", |b| b.iter(|| d.dma_read(1, black_box(0x4000), &mut buf).unwrap()));
    let log = Arc::new(EventLog::new(1 << 16).unwrap());
    log.set_enabled(true);
    d.set_event_log(Some(log.clone()));
    d.watch(1, 0x100_0000, 64).unwrap();
    c.bench_function("dma64/trace-on-unwatched", |b| b.iter(|| d.dma_read(1, black_box(0x4000), &mut buf).unwrap()));
    d.watch(1, 0x4000, 64).unwrap();
    c.bench_function("dma64/trace-on-recorded", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(1 << 15);
                let t = Instant::now();
                for _ in 0..n {
                    d.dma_read(1, black_box(0x4000), &mut buf).unwrap();
                }
                total += t.elapsed();
                left -= n;
                black_box(log.drain());
            }
            assert_eq!(log.dropped(), 0);
            total
        })
    });
}

criterion_group!(benches, translate, dma_tracing);
criterion_main!(benches);
