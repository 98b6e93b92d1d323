//! The cost of the vm-memory adapter's per-call IOTLB view: a 4 KiB read at
//! an IOTLB-hot IOVA through `Dart::dma_read` (the native device path),
//! through `IommuMemory::read_slice` over `StreamIommu` (translation + view +
//! copy), and the bare `Iommu::translate` of the adapter (translation + view,
//! no copy) against `Dart::translate` (translation only).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dart::{Dart, DartConfig, Dir, StreamConfig, Variant};
use frame_table::vm_memory::{Bytes, GuestAddress, Iommu, Permissions};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;

const PAGES: u64 = 64;
const IOVA: u64 = 0x8000;

fn setup() -> Arc<Dart> {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory((PAGES + 64) * 16384)).unwrap());
    let d = Dart::new(frames.clone(), DartConfig::new("bench", Variant::T8110)).unwrap();
    d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let buf = frames.alloc(FrameType::UserData, PAGES).unwrap();
    d.map(1, 0, &buf, Perm::RW, None).unwrap();
    Arc::new(d)
}

fn iommu(c: &mut Criterion) {
    let d = setup();
    let mem = dart::stream_memory(d.clone(), 1).unwrap();
    let mut buf = vec![0u8; 4096];
    c.bench_function("dma4k/dart-dma-read", |b| {
        b.iter(|| {
            d.dma_read(1, black_box(IOVA), &mut buf).unwrap();
            black_box(buf[0])
        })
    });
    c.bench_function("dma4k/iommu-memory-read", |b| {
        b.iter(|| {
            mem.read_slice(&mut buf, GuestAddress(black_box(IOVA))).unwrap();
            black_box(buf[0])
        })
    });
    c.bench_function("translate4k/dart-translate", |b| {
        b.iter(|| black_box(d.translate(1, black_box(IOVA), 4096, Dir::Read).unwrap().spans()[0].pa))
    });
    let iommu = mem.iommu().clone();
    c.bench_function("translate4k/stream-iommu", |b| {
        b.iter(|| black_box(iommu.translate(GuestAddress(black_box(IOVA)), 4096, Permissions::Read).unwrap().next()))
    });
    c.bench_function("translate4k/stream-iommu-rw", |b| {
        b.iter(|| {
            black_box(iommu.translate(GuestAddress(black_box(IOVA)), 4096, Permissions::ReadWrite).unwrap().next())
        })
    });
}

criterion_group!(benches, iommu);
criterion_main!(benches);
