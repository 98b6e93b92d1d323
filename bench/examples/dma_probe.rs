//! Where `dma4k`'s time goes against `raw4k`: variants of one 4 KiB read
//! at a random IOVA of the docs/design.md §8 system, measured in alternation in one
//! thread (one process, so the machine's state moves all of them alike).
//!
//! ```text
//! cargo build --release -p dartemu-bench --example dma_probe
//! target/release/examples/dma_probe                 # every variant
//! target/release/examples/dma_probe raw4k raw-late  # some of them
//! N=4000000 target/release/examples/dma_probe dma64-hot
//! OFF=16 target/release/examples/dma_probe raw4k raw-off
//! ```
//!
//! - `raw4k`: the bench's `raw4k` (the physical address from a table by
//!   IOVA page, then vm-memory's `read_slice`);
//! - `raw-late`: the same, with 160 instructions that the lookup does not
//!   depend on placed before it, as a walk places its PTE load after the
//!   in-flight entry and the IOTLB probe (on x86-64; elsewhere 40 steps
//!   through memory);
//! - `raw-off`: `raw4k` into a buffer `OFF` bytes (16 unless the `OFF`
//!   variable says; at most 4096) past a page boundary; every other
//!   variant reads into a page-aligned `ReadBuffer`, as the bench does;
//! - `dma4k`: `Dart::dma_read` of 4 KiB;
//! - `xlate-only`: `Dart::translate` of the same 4 KiB, no copy;
//! - `dma64-hot`: `Dart::dma_read` of 64 bytes within the first 64 pages
//!   (IOTLB hits; run with a larger `N`).
//!
//! Each variant runs `N` reads (400,000 unless the `N` variable says) per
//! round, 21 rounds; it prints each variant's median and fastest round.

use dart::{Dir, Variant};
use dartemu_bench::system::{HOT_PAGES, MAPPED, PAGE, STREAM};
use dartemu_bench::{BenchSystem, HarnessRng};
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: u64 = 21;
const VARIANTS: [&str; 6] = ["raw4k", "raw-late", "raw-off", "dma4k", "xlate-only", "dma64-hot"];

/// 160 single-cycle additions to four scratch registers, in four chains
/// of 40: they fill the out-of-order window ahead of what follows without
/// anything following depending on them (an optimizer keeps all of them,
/// as it would not keep plain Rust arithmetic whose result is unused).
#[inline(always)]
fn independent_instructions() {
    // SAFETY: the assembly adds to four registers it declares clobbered
    // (and the flags, which the compiler takes as clobbered without
    // `preserves_flags`); it touches neither memory nor the stack.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!(
            ".rept 40", "add r8, 1", "add r9, 1", "add r10, 1", "add r11, 1", ".endr",
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nomem, nostack),
        );
    }
    // Elsewhere (not built here: this machine has only the x86-64
    // target), each step goes through memory instead, which fills the
    // window too, with loads and stores.
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut filler = 0u64;
        for _ in 0..40 {
            filler = std::hint::black_box(filler.wrapping_add(1));
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let only: Vec<String> = std::env::args().skip(1).collect();
    if let Some(bad) = only.iter().find(|o| !VARIANTS.contains(&o.as_str())) {
        return Err(format!("unknown variant {bad}; variants: {}", VARIANTS.join(", ")).into());
    }
    let variants: Vec<&str> = VARIANTS.into_iter().filter(|v| only.is_empty() || only.iter().any(|o| o == v)).collect();
    let n: u64 = std::env::var("N").ok().map(|v| v.parse()).transpose()?.unwrap_or(400_000);

    let sys = BenchSystem::new(Variant::T8110, 256)?;
    let raw = |iova: u64, buf: &mut [u8]| sys.raw_read(iova, buf);
    let mut page = dartemu_bench::ReadBuffer::new();
    let buf = page.first(4096).ok_or("a ReadBuffer holds 4 KiB")?;
    #[repr(align(4096))]
    struct Two([u8; 8192]);
    let mut two = Box::new(Two([0; 8192]));
    let off: usize = std::env::var("OFF").ok().map(|v| v.parse()).transpose()?.unwrap_or(16);
    let end = off.checked_add(4096).ok_or_else(|| format!("OFF={off}: at most 4096"))?;
    let offset = two.0.get_mut(off..end).ok_or_else(|| format!("OFF={off}: at most 4096"))?;
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        for (k, &v) in variants.iter().enumerate() {
            let mut rng = HarnessRng::with_seed(7 + round);
            let start = Instant::now();
            for _ in 0..n {
                let iova = dartemu_bench::uniform(&mut rng, MAPPED) & !4095;
                match v {
                    "raw4k" => raw(iova, buf)?,
                    "raw-off" => {
                        raw(iova, offset)?;
                        black_box(&*offset);
                    }
                    "raw-late" => {
                        independent_instructions();
                        raw(iova, buf)?;
                    }
                    "dma4k" => sys.dart.dma_read(STREAM, iova, buf)?,
                    "xlate-only" => {
                        black_box(sys.dart.translate(STREAM, iova, 4096, Dir::Read)?.first().pa);
                    }
                    _ => sys.dart.dma_read(STREAM, iova % (HOT_PAGES * PAGE), &mut buf[..64])?,
                }
                black_box(&*buf);
            }
            ns[k].push(start.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    for (v, mut rounds) in variants.iter().zip(ns) {
        rounds.sort_by(f64::total_cmp);
        println!("{v:12} median {:7.1} ns  min {:7.1}", rounds[rounds.len() / 2], rounds[0]);
    }
    Ok(())
}
