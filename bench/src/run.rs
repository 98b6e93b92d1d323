//! Running workloads: threads, timing, figures.
//!
//! Every worker thread runs its operation in batches of [`BATCH`] between
//! loads of a shared stop flag, so the timing loop costs one relaxed load
//! per batch. All workers (and `translate-churn`'s writer) start together
//! from a barrier; the main thread sleeps for the requested time, reporting
//! progress, raises the flag and joins them. `secs` is the wall time from the
//! barrier to the last join.

use crate::baseline::{baseline_memory, BaselineMemory};
use crate::system::{BenchError, BenchSystem, CHURN_BASE, HOT_PAGES, MAPPED, MAX_THREADS, PAGE, STREAM};
use crate::workload::Workload;
use dart::Dir;
use frame_table::vm_memory::{Bytes, GuestAddress};
use frame_table::Perm;
use serde::Serialize;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use vm_memory::iommu::Iommu;
use vm_memory::Permissions;

/// Operations between two checks of the stop flag.
pub const BATCH: u64 = 64;

/// Which implementation produced a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Implementation {
    /// dartemu's DART.
    Dartemu,
    /// The vm-memory baseline ([`crate::baseline`]).
    VmMemory,
}

impl Implementation {
    /// Display name.
    pub const fn name(self) -> &'static str {
        match self {
            Implementation::Dartemu => "dartemu",
            Implementation::VmMemory => "vm-memory",
        }
    }
}

/// One measured figure: SPEC §8's fields plus which implementation and the
/// ratio to the baseline measured in the same run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    /// Workload name.
    pub workload: String,
    /// `dartemu` or `vm-memory`.
    #[serde(rename = "impl")]
    pub implementation: Implementation,
    /// Worker threads (not counting `translate-churn`'s writer).
    pub threads: usize,
    /// Operations done by all worker threads.
    pub ops: u64,
    /// Wall time, seconds.
    pub secs: f64,
    /// Wall time per operation per thread, ns.
    pub ns_per_op: f64,
    /// Million operations per second, all threads.
    pub mops: f64,
    /// Data moved, GiB/s (0 for workloads that move none).
    pub gib_per_s: f64,
    /// IOTLB entries of the DART measured (rounded up to a power of two);
    /// none for the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iotlb_entries: Option<usize>,
    /// Operations of the background writer (`translate-churn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_ops: Option<u64>,
    /// `mops` divided by the baseline's `mops` for the same workload and
    /// threads in this run (`dma4k-vm-memory` against the baseline's `dma4k`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<f64>,
}

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Thread counts; each workload runs once per count.
    pub threads: Vec<usize>,
    /// Seconds per figure.
    pub seconds: f64,
    /// Also run the vm-memory baseline.
    pub baseline: bool,
    /// IOTLB entries of the system's DART ([`DEFAULT_IOTLB_ENTRIES`] unless
    /// measuring the IOTLB: 65536 holds the whole mapped gigabyte, as the
    /// baseline's fully populated `Iotlb` does).
    pub iotlb_entries: usize,
}

/// The IOTLB size of the default SoC's DARTs, and of the bench's unless told.
pub const DEFAULT_IOTLB_ENTRIES: usize = 256;

/// Where a run is, for a progress line.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Workload.
    pub workload: Workload,
    /// Implementation.
    pub implementation: Implementation,
    /// Threads.
    pub threads: usize,
    /// Seconds elapsed.
    pub elapsed: f64,
    /// Seconds requested.
    pub seconds: f64,
    /// Figures finished so far.
    pub done: usize,
    /// Figures in the whole run.
    pub total: usize,
}

impl BenchOptions {
    /// Checks the options: at least one workload and thread count, thread
    /// counts in `1..=MAX_THREADS`, seconds finite and in `(0, 3600]`.
    pub fn check(&self) -> Result<(), BenchError> {
        if self.workloads.is_empty() {
            return Err(BenchError::Options("no workload given".into()));
        }
        if self.threads.is_empty() {
            return Err(BenchError::Options("no thread count given".into()));
        }
        if let Some(&t) = self.threads.iter().find(|&&t| t == 0 || t > MAX_THREADS) {
            return Err(BenchError::Options(format!("--threads {t}: must be 1 to {MAX_THREADS}")));
        }
        if self.iotlb_entries == 0 || self.iotlb_entries > dart::iotlb::Iotlb::MAX_ENTRIES {
            return Err(BenchError::Options(format!(
                "--iotlb-entries {}: must be 1 to {}",
                self.iotlb_entries,
                dart::iotlb::Iotlb::MAX_ENTRIES
            )));
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 3600.0) {
            return Err(BenchError::Options(format!("--seconds {}: must be above 0 and at most 3600", self.seconds)));
        }
        Ok(())
    }
}

/// Runs `op` until `stop`, in batches; returns the operations done.
#[inline]
fn spin(stop: &AtomicBool, mut op: impl FnMut() -> Result<(), BenchError>) -> Result<u64, BenchError> {
    let mut ops = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..BATCH {
            op()?;
        }
        ops += BATCH;
    }
    Ok(ops)
}

/// The workers' random-number generator: WyRand (`fastrand`), one add, one
/// 64x64->128-bit multiply and one xor per number, with a single word of
/// state. Every operation of both dartemu and the baseline pays for one
/// number, so the lighter the generator, the less of each measured
/// operation is the harness's own (WyRand costs about 0.26 ns less per
/// operation than `rand`'s `SmallRng`, xoshiro256++, on the README's
/// machine).
pub type HarnessRng = fastrand::Rng;

/// A random number in `[0, range)`: a multiply and a shift (Lemire's
/// reduction) rather than a 64-bit division, which would cost as much as
/// the fastest operations measured. The bias, at most `range / 2^64`, is
/// far below anything a benchmark can see. `range = 0` gives 0.
#[inline]
pub fn uniform(rng: &mut HarnessRng, range: u64) -> u64 {
    ((rng.u64(..) as u128 * range as u128) >> 64) as u64
}

/// A random IOVA in `[0, pages * PAGE)` aligned to `align`.
#[inline]
fn random_iova(rng: &mut HarnessRng, pages: u64, align: u64) -> u64 {
    uniform(rng, pages * PAGE) & !(align - 1)
}

fn rng_for(thread: usize) -> HarnessRng {
    HarnessRng::with_seed(0x9e37_79b9 ^ thread as u64)
}

fn baseline_error(iova: u64, e: impl std::fmt::Display) -> BenchError {
    BenchError::Baseline { iova, reason: e.to_string() }
}

type Worker<'a> = dyn Fn(usize, &AtomicBool) -> Result<u64, BenchError> + Sync + 'a;

/// Runs `threads` workers (and an optional background writer) for `seconds`.
/// Returns `(ops, writer_ops, secs)`.
fn measure(
    threads: usize,
    seconds: f64,
    worker: &Worker<'_>,
    writer: Option<&Worker<'_>>,
    tick: &mut dyn FnMut(f64),
) -> Result<(u64, Option<u64>, f64), BenchError> {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1 + writer.is_some() as usize);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, barrier) = (&stop, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    worker(t, stop)
                })
            })
            .collect();
        let writer = writer.map(|w| {
            let (stop, barrier) = (&stop, &barrier);
            s.spawn(move || {
                barrier.wait();
                w(threads, stop)
            })
        });
        barrier.wait();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs_f64(seconds);
        loop {
            let now = Instant::now();
            if now >= deadline || workers.iter().any(|w| w.is_finished()) {
                break;
            }
            tick(now.duration_since(t0).as_secs_f64());
            std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
        }
        stop.store(true, Ordering::Relaxed);
        let mut ops = 0;
        let mut first_error = None;
        for w in workers {
            match w.join() {
                Ok(Ok(n)) => ops += n,
                Ok(Err(e)) => first_error = first_error.or(Some(e)),
                Err(_) => first_error = first_error.or(Some(BenchError::Options("a worker thread panicked".into()))),
            }
        }
        let writer_ops = match writer.map(|w| w.join()) {
            None => None,
            Some(Ok(Ok(n))) => Some(n),
            Some(Ok(Err(e))) => return Err(first_error.unwrap_or(e)),
            Some(Err(_)) => return Err(BenchError::Options("the writer thread panicked".into())),
        };
        let secs = t0.elapsed().as_secs_f64();
        match first_error {
            Some(e) => Err(e),
            None => Ok((ops, writer_ops, secs)),
        }
    })
}

/// A worker that runs `op(iova, buf)` at random `align`-aligned IOVAs of the
/// first `pages` pages, with a `len`-byte buffer of its own.
fn random_access<'a>(
    pages: u64,
    align: u64,
    len: usize,
    op: impl Fn(u64, &mut [u8]) -> Result<(), BenchError> + Sync + 'a,
) -> Box<Worker<'a>> {
    Box::new(move |t, stop| {
        let mut rng = rng_for(t);
        let mut buf = vec![0u8; len];
        spin(stop, || {
            let iova = random_iova(&mut rng, pages, align);
            op(iova, &mut buf)?;
            // Keeps what the operation read; a translation's own result is
            // kept by its operation (`len` 0: nothing to keep here).
            if len != 0 {
                black_box(&buf);
            }
            Ok(())
        })
    })
}

/// `translate-churn`'s writer: flips random pages of the churn window
/// between mapped (`map(p)`) and unmapped (`unmap(p)`) until stopped, then
/// unmaps what it left mapped, so every run starts from the same system.
fn churn_writer<'a>(
    pages: usize,
    map: impl Fn(usize) -> Result<(), BenchError> + Sync + 'a,
    unmap: impl Fn(usize) -> Result<(), BenchError> + Sync + 'a,
) -> Box<Worker<'a>> {
    Box::new(move |t, stop| {
        let mut rng = rng_for(t);
        let mut mapped = vec![false; pages];
        let flip = |p: usize, mapped: &mut Vec<bool>| -> Result<(), BenchError> {
            if mapped[p] {
                unmap(p)?;
            } else {
                map(p)?;
            }
            mapped[p] = !mapped[p];
            Ok(())
        };
        let ops = spin(stop, || flip(uniform(&mut rng, pages as u64) as usize, &mut mapped))?;
        for p in 0..pages {
            if mapped[p] {
                flip(p, &mut mapped)?;
            }
        }
        Ok(ops)
    })
}

/// IOVA of page `p` of the churn window.
fn churn_iova(p: usize) -> u64 {
    CHURN_BASE + p as u64 * PAGE
}

/// The workers of one workload for dartemu.
fn dartemu_workers<'a>(
    sys: &'a BenchSystem,
    w: Workload,
) -> Result<(Box<Worker<'a>>, Option<Box<Worker<'a>>>), BenchError> {
    let d = &*sys.dart;
    // `match`, not `?`: `?` moves the 64-byte `Result` through the `Try`
    // machinery, which the compiler copies through memory with partial
    // loads that stall on store forwarding (15 ns per hit against 6 here).
    // The baseline's worker is written the same way.
    let translate = move |pages: u64| {
        random_access(pages, 8, 0, move |iova, _| match d.translate(STREAM, iova, 8, Dir::Read) {
            Ok(tr) => {
                black_box(tr.first().pa);
                Ok(())
            }
            Err(e) => Err(e.into()),
        })
    };
    Ok(match w {
        Workload::Translate => (translate(MAPPED / PAGE), None),
        Workload::TranslateHot => (translate(HOT_PAGES), None),
        Workload::TranslateChurn => {
            let writer = churn_writer(
                sys.churn_frames.len(),
                move |p| Ok(d.map(STREAM, churn_iova(p), &sys.churn_frames[p..=p], Perm::RW, None)?),
                move |p| d.unmap(STREAM, churn_iova(p), PAGE).map(drop).map_err(Into::into),
            );
            (translate(MAPPED / PAGE), Some(writer))
        }
        Workload::Dma4k => {
            (random_access(MAPPED / PAGE, 4096, 4096, move |iova, buf| Ok(d.dma_read(STREAM, iova, buf)?)), None)
        }
        Workload::Raw4k => {
            let mem = sys.frames.memory();
            let raw = move |iova: u64, buf: &mut [u8]| {
                let pa = sys.pas[(iova / PAGE) as usize] + iova % PAGE;
                mem.read_slice(buf, GuestAddress(pa)).map_err(|e| baseline_error(iova, e))
            };
            (random_access(MAPPED / PAGE, 4096, 4096, raw), None)
        }
        Workload::MapUnmap => (
            Box::new(move |t, stop| {
                let iova = BenchSystem::mapunmap_iova(t);
                let frame = &sys.mapunmap_frames[t..=t];
                spin(stop, || {
                    d.map(STREAM, iova, frame, Perm::RW, None)?;
                    d.unmap(STREAM, iova, PAGE)?;
                    Ok(())
                })
            }),
            None,
        ),
        Workload::Dma4kVmMemory => {
            let mem = dart::stream_memory(sys.dart.clone(), STREAM)?;
            let read = move |iova: u64, buf: &mut [u8]| {
                mem.read_slice(buf, GuestAddress(iova)).map_err(|e| baseline_error(iova, e))
            };
            (random_access(MAPPED / PAGE, 4096, 4096, read), None)
        }
    })
}

/// The workers of one workload for the baseline, or `None` where the
/// baseline has no counterpart (`raw4k` uses no IOMMU; `dma4k-vm-memory` is
/// compared with the baseline's `dma4k`).
fn baseline_workers<'a>(
    sys: &'a BenchSystem,
    base: &'a BaselineMemory,
    w: Workload,
) -> Option<(Box<Worker<'a>>, Option<Box<Worker<'a>>>)> {
    let iommu = base.iommu();
    let translate = move |pages: u64| {
        random_access(pages, 8, 0, move |iova, _| match iommu.translate(GuestAddress(iova), 8, Permissions::Read) {
            Ok(mut it) => {
                black_box(it.next().map(|r| r.base));
                Ok(())
            }
            Err(e) => Err(baseline_error(iova, e)),
        })
    };
    Some(match w {
        Workload::Translate => (translate(MAPPED / PAGE), None),
        Workload::TranslateHot => (translate(HOT_PAGES), None),
        Workload::TranslateChurn => {
            let writer = churn_writer(
                sys.churn_frames.len(),
                move |p| {
                    let pa = sys.frames.pa_of(sys.churn_frames[p])?;
                    iommu.map_page(churn_iova(p), pa).map_err(|e| baseline_error(churn_iova(p), e))
                },
                move |p| {
                    iommu.unmap_page(churn_iova(p));
                    Ok(())
                },
            );
            (translate(MAPPED / PAGE), Some(writer))
        }
        Workload::Dma4k => {
            let read = move |iova: u64, buf: &mut [u8]| {
                base.read_slice(buf, GuestAddress(iova)).map_err(|e| baseline_error(iova, e))
            };
            (random_access(MAPPED / PAGE, 4096, 4096, read), None)
        }
        Workload::MapUnmap => (
            Box::new(move |t, stop| {
                let iova = BenchSystem::mapunmap_iova(t);
                let pa = sys.frames.pa_of(sys.mapunmap_frames[t])?;
                spin(stop, || {
                    iommu.map_page(iova, pa).map_err(|e| baseline_error(iova, e))?;
                    iommu.unmap_page(iova);
                    Ok(())
                })
            }),
            None,
        ),
        Workload::Raw4k | Workload::Dma4kVmMemory => return None,
    })
}

fn figure(
    w: Workload,
    imp: Implementation,
    threads: usize,
    (ops, writer_ops, secs): (u64, Option<u64>, f64),
    iotlb_entries: Option<usize>,
) -> Figure {
    let ns_per_op = if ops == 0 { f64::INFINITY } else { secs * 1e9 * threads as f64 / ops as f64 };
    Figure {
        workload: w.name().to_string(),
        implementation: imp,
        threads,
        ops,
        secs,
        ns_per_op,
        mops: ops as f64 / secs / 1e6,
        gib_per_s: (ops * w.bytes_per_op()) as f64 / secs / (1u64 << 30) as f64,
        iotlb_entries,
        writer_ops,
        vs_baseline: None,
    }
}

/// Runs every workload × thread count (and the baseline if asked) on
/// `sys`, calling `progress` about ten times a second and `done` after each
/// figure. Ratios to the baseline are filled in at the end.
pub fn run(
    sys: &BenchSystem,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(Progress),
    done: &mut dyn FnMut(&Figure),
) -> Result<Vec<Figure>, BenchError> {
    opts.check()?;
    let base = if opts.baseline { Some(baseline_memory(sys).map_err(|e| baseline_error(0, e))?) } else { None };
    let mut plan = Vec::new();
    for &w in &opts.workloads {
        for &threads in &opts.threads {
            plan.push((w, Implementation::Dartemu, threads));
            if base.is_some() && !matches!(w, Workload::Raw4k | Workload::Dma4kVmMemory) {
                plan.push((w, Implementation::VmMemory, threads));
            }
        }
    }
    let total = plan.len();
    let mut figures = Vec::with_capacity(total);
    for (i, &(w, imp, threads)) in plan.iter().enumerate() {
        let workers = match (imp, &base) {
            (Implementation::Dartemu, _) => Some(dartemu_workers(sys, w)?),
            (Implementation::VmMemory, Some(b)) => baseline_workers(sys, b, w),
            (Implementation::VmMemory, None) => None,
        };
        let Some((worker, writer)) = workers else { continue };
        let mut tick = |elapsed| {
            progress(Progress {
                workload: w,
                implementation: imp,
                threads,
                elapsed,
                seconds: opts.seconds,
                done: i,
                total,
            })
        };
        let measured = measure(threads, opts.seconds, &*worker, writer.as_deref(), &mut tick)?;
        let entries = (imp == Implementation::Dartemu).then(|| sys.dart.iotlb().capacity());
        let f = figure(w, imp, threads, measured, entries);
        done(&f);
        figures.push(f);
    }
    let baseline_of = |f: &Figure| {
        let name = if f.workload == Workload::Dma4kVmMemory.name() { Workload::Dma4k.name() } else { &f.workload };
        figures
            .iter()
            .find(|b| b.implementation == Implementation::VmMemory && b.workload == name && b.threads == f.threads)
            .map(|b| f.mops / b.mops)
    };
    let ratios: Vec<_> = figures
        .iter()
        .map(|f| if f.implementation == Implementation::Dartemu { baseline_of(f) } else { None })
        .collect();
    for (f, r) in figures.iter_mut().zip(ratios) {
        f.vs_baseline = r;
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_range_and_fills_it_evenly() {
        let mut rng = rng_for(0);
        assert_eq!(uniform(&mut rng, 0), 0);
        assert_eq!(uniform(&mut rng, 1), 0);
        // 16 buckets of a range that is not a power of two, 16,000 draws
        // each expected: every bucket within 5% (over 12 standard
        // deviations away for a fair generator).
        let (range, buckets, draws) = (3 * MAPPED / PAGE, 16u64, 256_000u64);
        let mut seen = vec![0u64; buckets as usize];
        for _ in 0..draws {
            let x = uniform(&mut rng, range);
            assert!(x < range, "{x} out of [0, {range})");
            seen[(x * buckets / range) as usize] += 1;
        }
        let expected = draws / buckets;
        for (b, &n) in seen.iter().enumerate() {
            assert!(n.abs_diff(expected) < expected / 20, "bucket {b}: {n} draws, {expected} expected");
        }
    }

    #[test]
    fn random_iovas_are_aligned_and_inside_the_pages() {
        let mut rng = rng_for(3);
        for _ in 0..10_000 {
            let iova = random_iova(&mut rng, HOT_PAGES, 4096);
            assert_eq!(iova % 4096, 0);
            assert!(iova < HOT_PAGES * PAGE);
        }
    }
}
