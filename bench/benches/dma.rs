//! Criterion benches of the docs/design.md §8 operations on the docs/design.md §8 system
//! ([`dartemu_bench::BenchSystem`]: 1 GiB mapped in 16 KiB pages to shuffled
//! frames), one operation per iteration:
//!
//! - `translate/hit` (one hot page) and `translate/miss` (uniform over the
//!   gigabyte: an IOTLB miss and a table walk almost every time);
//! - `dma4k` (a 4 KiB `dma_read` at a random IOVA);
//! - `mapunmap` (map then strictly unmap one page);
//! - `translate/churn` (`translate/miss` while another thread maps and
//!   unmaps pages of the churn window).
//!
//! `cargo bench -p dartemu-bench --bench dma`. The `dartemu bench` command
//! runs the same workloads with a wall-clock harness and the vm-memory baseline.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dart::Dir;
use dartemu_bench::system::{BenchSystem, CHURN_BASE, MAPPED, PAGE, STREAM};
use frame_table::Perm;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};

fn random_iova(rng: &mut SmallRng, align: u64) -> u64 {
    (rng.gen::<u64>() % MAPPED) & !(align - 1)
}

fn benches(c: &mut Criterion) {
    let sys = BenchSystem::new(dart::Variant::T8110, 256).expect("the docs/design.md §8 system builds");
    let d = &*sys.dart;
    let mut rng = SmallRng::seed_from_u64(7);

    let mut g = c.benchmark_group("translate");
    g.bench_function("hit", |b| {
        b.iter(|| black_box(d.translate(STREAM, black_box(0x4008), 8, Dir::Read).map(|t| t.first().pa)))
    });
    g.bench_function("miss", |b| {
        b.iter(|| {
            let iova = random_iova(&mut rng, 8);
            black_box(d.translate(STREAM, iova, 8, Dir::Read).map(|t| t.first().pa))
        })
    });
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = SmallRng::seed_from_u64(9);
            let n = sys.churn_frames.len();
            let mut mapped = vec![false; n];
            while !stop.load(Ordering::Relaxed) {
                let p = rng.gen_range(0..n);
                let iova = CHURN_BASE + p as u64 * PAGE;
                let ok = if mapped[p] {
                    d.unmap(STREAM, iova, PAGE).is_ok()
                } else {
                    d.map(STREAM, iova, &sys.churn_frames[p..=p], Perm::RW, None).is_ok()
                };
                mapped[p] ^= ok;
            }
            for (p, _) in mapped.iter().enumerate().filter(|(_, m)| **m) {
                let _ = d.unmap(STREAM, CHURN_BASE + p as u64 * PAGE, PAGE);
            }
        });
        g.bench_function("churn", |b| {
            b.iter(|| {
                let iova = random_iova(&mut rng, 8);
                black_box(d.translate(STREAM, iova, 8, Dir::Read).map(|t| t.first().pa))
            })
        });
        stop.store(true, Ordering::Relaxed);
    });
    g.finish();

    let mut page = dartemu_bench::ReadBuffer::new();
    let buf = page.first(4096).expect("a ReadBuffer holds 4 KiB");
    c.bench_function("dma4k", |b| {
        b.iter(|| {
            let iova = random_iova(&mut rng, 4096);
            black_box(d.dma_read(STREAM, iova, buf))
        })
    });

    let iova = BenchSystem::mapunmap_iova(0);
    let frame = &sys.mapunmap_frames[0..1];
    c.bench_function("mapunmap", |b| {
        b.iter(|| {
            d.map(STREAM, iova, frame, Perm::RW, None).expect("map");
            d.unmap(STREAM, iova, PAGE).expect("unmap")
        })
    });
}

criterion_group! {
    name = dma;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(dma);
