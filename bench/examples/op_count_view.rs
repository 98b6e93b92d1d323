//! Instruction counts per 4 KiB read through a device's vm-memory view of
//! a DART stream, for `valgrind --tool=callgrind` (as `op_count`, whose
//! system this one copies: 64 MiB mapped in 16 KiB pages to shuffled
//! frames, stream 1 of a t8110 DART with 256 IOTLB entries).
//!
//! ```text
//! cargo build --release -p dartemu-bench --example op_count_view
//! valgrind --tool=callgrind target/release/examples/op_count_view dma4k-view 100000
//! ```
//!
//! A binary of its own rather than a workload of `op_count`: under fat LTO,
//! a second caller of vm-memory's copy routines in `op_count` changed how
//! the compiler inlined the other workloads (`dma4k` read 893 instructions
//! alone and 948 beside a vm-memory workload, with the library unchanged).
//!
//! Workloads: `dma4k-view`, `Bytes::read_slice` through the stream port's
//! `PortMemory` (a slice hold taken and dropped per read), and
//! `dma4k-iommu-memory`, the same through vm-memory's `IommuMemory` over the
//! kernel-side `Iommu` adapter (no hold).

use dart::vm_memory::{Bytes, GuestAddress};
use dart::{Dart, DartConfig, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::hint::black_box;
use std::sync::Arc;

const PAGE: u64 = 16 << 10;
const MAPPED: u64 = 64 << 20;
const STREAM: u32 = 1;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_else(|| "dma4k-view".into());
    let n: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);

    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(MAPPED + (8 << 20)))?);
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("count", Variant::T8110))?);
    dart.set_stream_config(STREAM, StreamConfig::TRANSLATING)?;
    let mut data = frames.alloc(FrameType::UserData, MAPPED / PAGE)?;
    data.shuffle(&mut SmallRng::seed_from_u64(1));
    for (i, chunk) in data.chunks(2048).enumerate() {
        dart.map(STREAM, i as u64 * 2048 * PAGE, chunk, Perm::RW, None)?;
    }

    let mut rng = dartemu_bench::HarnessRng::with_seed(2);
    let mut random = |range: u64| dartemu_bench::uniform(&mut rng, range);
    let mut page = dartemu_bench::ReadBuffer::new();
    let buf = page.first(4096).ok_or("a ReadBuffer holds 4 KiB")?;
    match workload.as_str() {
        "dma4k-view" => reads(&dart.port(STREAM)?.memory(), n, &mut random, buf),
        "dma4k-iommu-memory" => reads(&dart::stream_memory(dart.clone(), STREAM)?, n, &mut random, buf),
        other => Err(format!("unknown workload {other}").into()),
    }
}

/// `n` 4 KiB reads through `mem` at random 4 KiB-aligned IOVAs below `MAPPED`.
#[inline(never)]
fn reads(
    mem: &impl Bytes<GuestAddress, E = dart::vm_memory::GuestMemoryError>,
    n: u64,
    random: &mut impl FnMut(u64) -> u64,
    buf: &mut [u8],
) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..n {
        mem.read_slice(buf, GuestAddress(random(MAPPED) & !4095))?;
        black_box(&*buf);
    }
    Ok(())
}
