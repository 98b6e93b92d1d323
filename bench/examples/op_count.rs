//! Instruction counts per operation, for `valgrind --tool=callgrind`
//! (this VM has no hardware counters; callgrind's counts are repeatable
//! whatever else the machine does).
//!
//! ```text
//! cargo build --release -p dartemu-bench --example op_count
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/op_count translate-hot 1000000
//! ```
//!
//! Runs `N` operations of one workload on a small system (64 MiB mapped in
//! 16 KiB pages to shuffled frames; stream 1 of a t8110 DART with 256 IOTLB
//! entries), so that setup stays cheap under valgrind. Run it twice with
//! different `N`: the difference of the totals divided by the difference of
//! `N` is the cost of one operation, harness (random IOVA) included.

use dart::{Dart, DartConfig, Dir, StreamConfig, Variant};
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
    let workload = args.next().unwrap_or_else(|| "translate-hot".into());
    let n: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);

    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(MAPPED + (8 << 20)))?);
    let dart = Dart::new(frames.clone(), DartConfig::new("count", Variant::T8110))?;
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
        "translate-hot" | "translate" => {
            let range = if workload == "translate" { MAPPED } else { 64 * PAGE };
            translations(&dart, n, range, &mut random)?;
        }
        "dma4k" => {
            for _ in 0..n {
                dart.dma_read(STREAM, random(MAPPED) & !4095, buf)?;
                black_box(&*buf);
            }
        }
        "raw4k" => {
            use frame_table::vm_memory::{Bytes, GuestAddress};
            let pas = data.iter().map(|&f| frames.pa_of(f)).collect::<Result<Vec<_>, _>>()?;
            let mem = frames.memory();
            for _ in 0..n {
                let iova = random(MAPPED) & !4095;
                let pa = pas[(iova / PAGE) as usize] + iova % PAGE;
                mem.read_slice(buf, GuestAddress(pa))?;
                black_box(&*buf);
            }
        }
        // `mapunmap-after-dma`: after one DMA (a translation) on this
        // thread, as in a system whose devices have done any: the strict
        // unmap's wait then scans the in-flight slots instead of returning
        // at once (in the full bench plan every workload before `mapunmap`
        // has done DMA).
        "mapunmap" | "mapunmap-after-dma" => {
            if workload == "mapunmap-after-dma" {
                drop(dart.translate(STREAM, 0, 8, Dir::Read)?);
            }
            let frame = frames.alloc(FrameType::UserData, 1)?;
            let anchor = frames.alloc(FrameType::UserData, 1)?;
            dart.map(STREAM, MAPPED, &anchor, Perm::RW, None)?;
            for _ in 0..n {
                dart.map(STREAM, MAPPED + PAGE, &frame, Perm::RW, None)?;
                dart.unmap(STREAM, MAPPED + PAGE, PAGE)?;
            }
        }
        other => return Err(format!("unknown workload {other}").into()),
    }
    Ok(())
}

/// `n` translations of an 8-byte read at random IOVAs below `range`. A
/// function of its own, like the bench's worker, so that the compiler
/// inlines `Dart::translate` here as it does there (inside `main` it does
/// not, and each translation then also pays a call and a return through
/// memory).
#[inline(never)]
fn translations(dart: &Dart, n: u64, range: u64, random: &mut impl FnMut(u64) -> u64) -> Result<(), dart::DartError> {
    for _ in 0..n {
        let iova = random(range) & !7;
        match dart.translate(STREAM, iova, 8, Dir::Read) {
            Ok(t) => black_box(t.first().pa),
            Err(e) => return Err(e),
        };
    }
    Ok(())
}
