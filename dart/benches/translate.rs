//! Baseline criterion benches of `Dart::translate`: an IOTLB hit (one hot
//! page) and a miss (a walk: random pages over 64 MiB with a 16-entry IOTLB).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dart::{Dart, DartConfig, Dir, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

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

criterion_group!(benches, translate);
criterion_main!(benches);
