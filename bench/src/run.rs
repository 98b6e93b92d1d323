//! Running workloads: threads, timing, figures.
//!
//! Every worker thread runs its operation in batches of [`BATCH`] between
//! loads of a shared stop flag, so the timing loop costs one relaxed load
//! per batch. All workers (and `translate-churn`'s writer) start together
//! from a barrier; the main thread sleeps for the requested time, reporting
//! progress, raises the flag and joins them. `secs` is the wall time from the
//! barrier to the last join.
//!
//! # Rounds
//!
//! On a shared or virtual machine the same figure moves by tens of percent
//! from one measurement to the next, so one measurement per figure makes
//! every ratio to the baseline flap. With [`BenchOptions::rounds`] `N`, the
//! whole plan (every workload × threads × implementation, in order, each
//! baseline figure measured right after its dartemu figure) runs `N` times
//! over, round after round, each measurement lasting
//! [`BenchOptions::seconds`]. Each reported [`Figure`] is then its median
//! round (by `ns_per_op`) with the fastest and slowest round beside it, and
//! its ratio to the baseline is the median of the per-round ratios: a
//! dartemu measurement is divided by the baseline's of the same round,
//! taken seconds later, so a stretch of time in which the machine runs slow
//! moves both sides of that ratio. Interleaving the rounds, rather than
//! measuring one figure `N` times in a row, spreads each figure's
//! measurements over the whole run.
//!
//! Rounds alternate direction: even rounds (counting from 0) run the plan
//! forward, odd rounds backward (an ABBA order). Two figures that are
//! compared are then measured A before B in half the rounds and B before A
//! in the other half, so neither side of a ratio always follows the same
//! workload (a two-thread baseline that leaves the cores busier or slower,
//! say) or always comes later in a drift of the machine's speed. (With
//! `--threads 1,2` and the baseline, `translate-churn` is measured eight
//! measurements after the `translate` it is compared with.)

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

/// Most rounds [`BenchOptions::check`] accepts.
pub const MAX_ROUNDS: usize = 1000;

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

/// One reported figure: docs/design.md §8's fields plus which implementation, the
/// ratio to the baseline measured in the same run and, over the rounds,
/// the spread.
///
/// `ops`, `secs`, `ns_per_op`, `mops`, `gib_per_s` and `writer_ops` are
/// those of one measurement, the median round ([`BenchOptions::rounds`]),
/// so they agree with each other; with one round they are that round's.
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
    /// dartemu's `mops` divided by the baseline's `mops` for the same
    /// workload and threads (`dma4k-vm-memory` against the baseline's
    /// `dma4k`), both of the same round; the median of these per-round
    /// ratios (the lower middle one for an even number of rounds). Only on
    /// dartemu's figures, and only when the baseline ran. With several
    /// rounds it need not equal this figure's `mops` over the baseline
    /// figure's: each side's median may come from a different round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<f64>,
    /// Measurements behind this figure: [`BenchOptions::rounds`], at least 1.
    pub rounds: usize,
    /// The fastest round's `ns_per_op` (at most `ns_per_op`; equal to it
    /// with one round).
    pub ns_per_op_min: f64,
    /// The slowest round's `ns_per_op` (at least `ns_per_op`; equal to it
    /// with one round).
    pub ns_per_op_max: f64,
    /// The lowest per-round ratio behind `vs_baseline` (at most it); present
    /// exactly when `vs_baseline` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline_min: Option<f64>,
    /// The highest per-round ratio behind `vs_baseline` (at least it);
    /// present exactly when `vs_baseline` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline_max: Option<f64>,
    /// `dma4k` and `dma4k-vm-memory` (dartemu): `mops` over `raw4k`'s at
    /// the same threads, paired round by round, when `raw4k` ran: how
    /// close translated DMA comes to the in-process copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_raw4k: Option<PairedRatio>,
    /// `translate-churn` (dartemu): `mops` over dartemu's own `translate`
    /// at the same threads, paired round by round, when `translate` ran:
    /// what the writer costs the readers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_translate: Option<PairedRatio>,
    /// Figures of more than one thread: `mops` (all threads) over the same
    /// workload and implementation on one thread, paired round by round,
    /// when one thread ran: the scaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_one_thread: Option<PairedRatio>,
}

/// A ratio of two figures' `mops` measured in the same rounds: each round's
/// ratio pairs measurements taken seconds apart, and these are the median
/// of the per-round ratios (the lower middle one for an even number of
/// rounds) and their extremes. `min <= median <= max`; all three are equal
/// with one round.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PairedRatio {
    /// The median per-round ratio.
    pub median: f64,
    /// The lowest per-round ratio.
    pub min: f64,
    /// The highest per-round ratio.
    pub max: f64,
}

impl From<(f64, f64, f64)> for PairedRatio {
    /// From `(median, min, max)`.
    fn from((median, min, max): (f64, f64, f64)) -> PairedRatio {
        PairedRatio { median, min, max }
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Thread counts; each workload runs once per count.
    pub threads: Vec<usize>,
    /// Seconds per measurement (each figure is measured once per round).
    pub seconds: f64,
    /// Also run the vm-memory baseline.
    pub baseline: bool,
    /// IOTLB entries of the system's DART ([`DEFAULT_IOTLB_ENTRIES`] unless
    /// measuring the IOTLB: 65536 holds the whole mapped gigabyte, as the
    /// baseline's fully populated `Iotlb` does).
    pub iotlb_entries: usize,
    /// Rounds, `1..=`[`MAX_ROUNDS`]: the whole plan runs this many times
    /// over, and each figure reports its median round (module docs,
    /// [Rounds](self#rounds)). 1 measures each figure once.
    pub rounds: usize,
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
    /// The round being measured, from 1 to `rounds`.
    pub round: usize,
    /// Rounds in the whole run ([`BenchOptions::rounds`]).
    pub rounds: usize,
    /// Measurements finished so far, over all rounds.
    pub done: usize,
    /// Measurements in the whole run: figures × rounds.
    pub total: usize,
}

impl BenchOptions {
    /// Checks the options: at least one workload and thread count, thread
    /// counts in `1..=MAX_THREADS`, seconds finite and in `(0, 3600]`,
    /// rounds in `1..=`[`MAX_ROUNDS`]. The error names the offending value
    /// as its option, e.g. `--rounds 0: must be 1 to 1000`.
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
        if self.iotlb_entries == 0 || self.iotlb_entries > dart::DartConfig::MAX_IOTLB_ENTRIES {
            return Err(BenchError::Options(format!(
                "--iotlb-entries {}: must be 1 to {}",
                self.iotlb_entries,
                dart::DartConfig::MAX_IOTLB_ENTRIES
            )));
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 3600.0) {
            return Err(BenchError::Options(format!("--seconds {}: must be above 0 and at most 3600", self.seconds)));
        }
        if self.rounds == 0 || self.rounds > MAX_ROUNDS {
            return Err(BenchError::Options(format!("--rounds {}: must be 1 to {MAX_ROUNDS}", self.rounds)));
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
/// operation is the harness's own (WyRand is lighter than `rand`'s
/// `SmallRng`, xoshiro256++).
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
/// first `pages` pages, with a `len`-byte buffer of its own, page-aligned
/// for every workload and implementation alike ([`crate::buffer`]); a
/// `len` past [`crate::READ_BUFFER_BYTES`] is an error.
fn random_access<'a>(
    pages: u64,
    align: u64,
    len: usize,
    op: impl Fn(u64, &mut [u8]) -> Result<(), BenchError> + Sync + 'a,
) -> Box<Worker<'a>> {
    Box::new(move |t, stop| {
        let mut rng = rng_for(t);
        let mut page = crate::ReadBuffer::new();
        let Some(buf) = page.first(len) else {
            let max = crate::READ_BUFFER_BYTES;
            return Err(BenchError::Options(format!("a {len}-byte read does not fit the {max}-byte read buffer")));
        };
        spin(stop, || {
            let iova = random_iova(&mut rng, pages, align);
            op(iova, buf)?;
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
        Workload::Raw4k => (random_access(MAPPED / PAGE, 4096, 4096, move |iova, buf| sys.raw_read(iova, buf)), None),
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
        rounds: 1,
        ns_per_op_min: ns_per_op,
        ns_per_op_max: ns_per_op,
        vs_baseline_min: None,
        vs_baseline_max: None,
        vs_raw4k: None,
        vs_translate: None,
        vs_one_thread: None,
    }
}

/// The figure reported for the rounds of one (workload, implementation,
/// threads), given in any order: the median round by `ns_per_op` (sorted
/// ascending, index `N / 2`: for an even `N` the slower of the two middle
/// rounds), whole, so its `ops`, `secs`, `mops`, ... stay that round's,
/// with `rounds = N` and the fastest and slowest rounds' `ns_per_op`.
/// `None` for no rounds.
fn median_round(rounds: &[Figure]) -> Option<Figure> {
    let mut sorted: Vec<&Figure> = rounds.iter().collect();
    sorted.sort_by(|a, b| a.ns_per_op.total_cmp(&b.ns_per_op));
    let (first, last) = (sorted.first()?, sorted.last()?);
    Some(Figure {
        rounds: sorted.len(),
        ns_per_op_min: first.ns_per_op,
        ns_per_op_max: last.ns_per_op,
        ..sorted[sorted.len() / 2].clone()
    })
}

/// dartemu's `mops` over the baseline's, round by round: `dartemu[r]` and
/// `baseline[r]` are the measurements of round `r`, taken seconds apart.
fn round_ratios(dartemu: &[Figure], baseline: &[Figure]) -> Vec<f64> {
    dartemu.iter().zip(baseline).map(|(d, b)| d.mops / b.mops).collect()
}

/// `(median, min, max)` of per-round ratios: the median is index
/// `(N - 1) / 2` of the ratios sorted ascending, for an even `N` the lower
/// of the two middle ones (the less flattering to dartemu). `None` for no
/// ratios.
fn median_ratio(ratios: &[f64]) -> Option<(f64, f64, f64)> {
    if ratios.is_empty() {
        return None;
    }
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((sorted[(sorted.len() - 1) / 2], sorted[0], sorted[sorted.len() - 1]))
}

/// Fills in every figure's paired ratios: `keys[i]` names figure `i`
/// (workload, implementation, threads) and `measured[i]` holds its rounds,
/// in round order. Each ratio is [`median_ratio`] of [`round_ratios`]
/// against the related figure, when that figure ran:
///
/// - `vs_baseline` (+ min, max): dartemu's figures against the baseline's
///   of the same workload and threads (`dma4k-vm-memory`: `dma4k`'s);
/// - `vs_raw4k`: dartemu's `dma4k` and `dma4k-vm-memory` against `raw4k`;
/// - `vs_translate`: dartemu's `translate-churn` against its `translate`;
/// - `vs_one_thread`: any figure of more than one thread against the same
///   workload and implementation on one thread.
fn relate(keys: &[(Workload, Implementation, usize)], measured: &[Vec<Figure>], figures: &mut [Figure]) {
    let paired = |i: usize, j: usize| median_ratio(&round_ratios(&measured[i], &measured[j]));
    let find = |key: (Workload, Implementation, usize)| keys.iter().position(|k| *k == key);
    for (i, f) in figures.iter_mut().enumerate() {
        let Some(&(w, imp, threads)) = keys.get(i) else { return };
        let ratio = |of: (Workload, Implementation, usize)| find(of).and_then(|j| paired(i, j));
        if threads > 1 {
            f.vs_one_thread = ratio((w, imp, 1)).map(PairedRatio::from);
        }
        if imp != Implementation::Dartemu {
            continue;
        }
        let base = if w == Workload::Dma4kVmMemory { Workload::Dma4k } else { w };
        if let Some((median, min, max)) = ratio((base, Implementation::VmMemory, threads)) {
            (f.vs_baseline, f.vs_baseline_min, f.vs_baseline_max) = (Some(median), Some(min), Some(max));
        }
        if matches!(w, Workload::Dma4k | Workload::Dma4kVmMemory) {
            f.vs_raw4k = ratio((Workload::Raw4k, imp, threads)).map(PairedRatio::from);
        }
        if w == Workload::TranslateChurn {
            f.vs_translate = ratio((Workload::Translate, imp, threads)).map(PairedRatio::from);
        }
    }
}

/// Runs every workload × thread count (and the baseline if asked) on
/// `sys`, [`BenchOptions::rounds`] times over (module docs,
/// [Rounds](self#rounds)), calling `progress` about ten times a second and
/// `done` once per reported figure, as soon as its last round is measured
/// (without its ratio to the baseline: ratios are filled in at the end).
///
/// Returns one figure per (workload, threads, implementation), in plan
/// order: each figure's median round, with the spread over its rounds and,
/// on dartemu's figures when the baseline ran, the median of the per-round
/// ratios to the baseline.
pub fn run(
    sys: &BenchSystem,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(Progress),
    done: &mut dyn FnMut(&Figure),
) -> Result<Vec<Figure>, BenchError> {
    opts.check()?;
    let base = if opts.baseline { Some(baseline_memory(sys).map_err(|e| baseline_error(0, e))?) } else { None };
    // The plan, with each item's workers built once for all its rounds.
    let mut plan = Vec::new();
    for &w in &opts.workloads {
        for &threads in &opts.threads {
            plan.push((w, Implementation::Dartemu, threads, dartemu_workers(sys, w)?));
            if let Some(workers) = base.as_ref().and_then(|b| baseline_workers(sys, b, w)) {
                plan.push((w, Implementation::VmMemory, threads, workers));
            }
        }
    }
    let total = plan.len() * opts.rounds;
    let mut measured: Vec<Vec<Figure>> = plan.iter().map(|_| Vec::with_capacity(opts.rounds)).collect();
    let mut figures: Vec<Option<Figure>> = plan.iter().map(|_| None).collect();
    for round in 0..opts.rounds {
        for (k, i) in round_order(plan.len(), round).enumerate() {
            let (w, imp, threads, (worker, writer)) = &plan[i];
            let (w, imp, threads) = (*w, *imp, *threads);
            let mut tick = |elapsed| {
                progress(Progress {
                    workload: w,
                    implementation: imp,
                    threads,
                    elapsed,
                    seconds: opts.seconds,
                    round: round + 1,
                    rounds: opts.rounds,
                    done: round * plan.len() + k,
                    total,
                })
            };
            let m = measure(threads, opts.seconds, &**worker, writer.as_deref(), &mut tick)?;
            let entries = (imp == Implementation::Dartemu).then(|| sys.dart.iotlb_capacity());
            measured[i].push(figure(w, imp, threads, m, entries));
            if round + 1 == opts.rounds {
                // Never `None`: this round just measured the item.
                if let Some(f) = median_round(&measured[i]) {
                    done(&f);
                    figures[i] = Some(f);
                }
            }
        }
    }
    // In plan order, whichever way the last round went.
    let mut figures: Vec<Figure> = figures.into_iter().flatten().collect();
    let keys: Vec<_> = plan.iter().map(|(w, imp, threads, _)| (*w, *imp, *threads)).collect();
    relate(&keys, &measured, &mut figures);
    Ok(figures)
}

/// The order in which round `round` (from 0) measures a plan of `n`
/// items: forward in even rounds, backward in odd ones (module docs,
/// [Rounds](self#rounds)).
fn round_order(n: usize, round: usize) -> impl Iterator<Item = usize> {
    let backward = round % 2 == 1;
    (0..n).map(move |k| if backward { n - 1 - k } else { k })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_run_the_plan_forward_then_backward() {
        let order = |n, round| round_order(n, round).collect::<Vec<_>>();
        assert_eq!(order(3, 0), [0, 1, 2]);
        assert_eq!(order(3, 1), [2, 1, 0]);
        assert_eq!(order(3, 2), [0, 1, 2]);
        assert_eq!(order(3, 7), [2, 1, 0]);
        assert_eq!(order(1, 1), [0]);
        assert_eq!(order(0, 1), Vec::<usize>::new());
    }

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

    /// One measurement of `translate` by dartemu on one thread: `ops` in
    /// `secs`, so `ns_per_op = secs * 1e9 / ops` and `mops = ops / secs / 1e6`.
    fn round(ops: u64, secs: f64, writer_ops: u64) -> Figure {
        figure(Workload::Translate, Implementation::Dartemu, 1, (ops, Some(writer_ops), secs), Some(256))
    }

    fn options(rounds: usize) -> BenchOptions {
        BenchOptions {
            workloads: vec![Workload::Translate],
            threads: vec![1],
            seconds: 1.0,
            baseline: true,
            iotlb_entries: DEFAULT_IOTLB_ENTRIES,
            rounds,
        }
    }

    #[test]
    fn one_round_is_reported_as_measured() {
        let r = round(2_000_000, 1.0, 7);
        assert_eq!((r.ns_per_op, r.mops, r.rounds, r.ns_per_op_min, r.ns_per_op_max), (500.0, 2.0, 1, 500.0, 500.0));
        assert_eq!(median_round(std::slice::from_ref(&r)), Some(r));
        assert_eq!(median_round(&[]), None);
    }

    #[test]
    fn odd_rounds_report_the_middle_round_by_ns_per_op_whole() {
        // ns/op 500, 2000, 1250: the middle is the third round measured.
        let rounds = [round(3_000_000, 1.5, 1), round(1_000_000, 2.0, 2), round(2_000_000, 2.5, 3)];
        assert_eq!([rounds[0].ns_per_op, rounds[1].ns_per_op, rounds[2].ns_per_op], [500.0, 2000.0, 1250.0]);
        let m = median_round(&rounds).unwrap();
        assert_eq!((m.ops, m.secs, m.ns_per_op, m.mops, m.writer_ops), (2_000_000, 2.5, 1250.0, 0.8, Some(3)));
        assert_eq!((m.rounds, m.ns_per_op_min, m.ns_per_op_max), (3, 500.0, 2000.0));
        assert_eq!(m, Figure { rounds: 3, ns_per_op_min: 500.0, ns_per_op_max: 2000.0, ..rounds[2].clone() });
    }

    #[test]
    fn even_rounds_report_the_slower_middle_round() {
        // ns/op 500, 1000, 2000, 1250; sorted 500, 1000 | 1250, 2000: the
        // slower middle one is 1250 (the fourth round measured), not 1000.
        let rounds =
            [round(2_000_000, 1.0, 1), round(1_000_000, 1.0, 2), round(500_000, 1.0, 3), round(800_000, 1.0, 4)];
        let m = median_round(&rounds).unwrap();
        assert_eq!((m.ops, m.secs, m.ns_per_op, m.mops, m.writer_ops), (800_000, 1.0, 1250.0, 0.8, Some(4)));
        assert_eq!((m.rounds, m.ns_per_op_min, m.ns_per_op_max), (4, 500.0, 2000.0));
        // Two rounds: the slower one.
        let m = median_round(&rounds[..2]).unwrap();
        assert_eq!(
            (m.ns_per_op, m.writer_ops, m.rounds, m.ns_per_op_min, m.ns_per_op_max),
            (1000.0, Some(2), 2, 500.0, 1000.0)
        );
    }

    #[test]
    fn ratio_median_takes_the_lower_middle_for_even_rounds() {
        assert_eq!(median_ratio(&[]), None);
        assert_eq!(median_ratio(&[2.0]), Some((2.0, 2.0, 2.0)));
        assert_eq!(median_ratio(&[1.3, 0.8, 1.0]), Some((1.0, 0.8, 1.3)));
        // Sorted 0.9, 1.1 | 1.2, 1.5: the lower middle one.
        assert_eq!(median_ratio(&[1.5, 0.9, 1.2, 1.1]), Some((1.1, 0.9, 1.5)));
        assert_eq!(median_ratio(&[1.2, 0.9]), Some((0.9, 0.9, 1.2)));
    }

    #[test]
    fn ratios_pair_each_round_with_the_baseline_of_the_same_round() {
        // Round 2 ran while the machine was slow: both sides at half speed.
        // Round 3 was fast: both at double speed. Each round's ratio is 2.
        let dartemu = [round(2_000_000, 1.0, 0), round(1_000_000, 1.0, 0), round(4_000_000, 1.0, 0)];
        let baseline = [round(1_000_000, 1.0, 0), round(500_000, 1.0, 0), round(2_000_000, 1.0, 0)];
        assert_eq!(round_ratios(&dartemu, &baseline), [2.0, 2.0, 2.0]);
        assert_eq!(median_ratio(&round_ratios(&dartemu, &baseline)), Some((2.0, 2.0, 2.0)));
        // Paired by round, not by rank: round 1's 4 / 2 and round 2's 2 / 4.
        let dartemu = [round(4_000_000, 1.0, 0), round(2_000_000, 1.0, 0)];
        let baseline = [round(2_000_000, 1.0, 0), round(4_000_000, 1.0, 0)];
        assert_eq!(round_ratios(&dartemu, &baseline), [2.0, 0.5]);
        assert_eq!(median_ratio(&round_ratios(&dartemu, &baseline)), Some((0.5, 0.5, 2.0)));
    }

    /// Two rounds of `(w, imp, threads)` at `mops` Mops/s each.
    fn rounds_of((w, imp, threads): (Workload, Implementation, usize), mops: [u64; 2]) -> Vec<Figure> {
        mops.iter().map(|&m| figure(w, imp, threads, (m * 1_000_000, None, 1.0), None)).collect()
    }

    #[test]
    fn each_figure_is_paired_with_the_figures_it_is_measured_against() {
        use Implementation::{Dartemu as D, VmMemory as V};
        use Workload::*;
        let keys = [
            (Translate, D, 1),
            (Translate, V, 1),
            (Translate, D, 2),
            (TranslateChurn, D, 1),
            (TranslateChurn, V, 1),
            (Dma4k, D, 1),
            (Dma4k, V, 1),
            (Raw4k, D, 1),
            (Dma4kVmMemory, D, 1),
            (MapUnmap, D, 2),
        ];
        // Mops/s of rounds 1 and 2; round 2 mostly ran with the machine slower.
        let mops = [[80, 40], [4, 2], [152, 72], [60, 28], [1, 1], [9, 5], [6, 3], [10, 5], [8, 4], [3, 1]];
        let measured: Vec<Vec<Figure>> = keys.iter().zip(mops).map(|(&k, m)| rounds_of(k, m)).collect();
        let mut figures: Vec<Figure> = measured.iter().map(|r| median_round(r).unwrap()).collect();
        relate(&keys, &measured, &mut figures);
        let r = |median, min, max| Some(PairedRatio { median, min, max });
        let got: Vec<_> = figures
            .iter()
            .map(|f| (f.vs_baseline, f.vs_baseline_min, f.vs_baseline_max, f.vs_raw4k, f.vs_translate, f.vs_one_thread))
            .collect();
        let none = (None, None, None, None, None, None);
        assert_eq!(
            got,
            [
                // 80 / 4 and 40 / 2.
                (Some(20.0), Some(20.0), Some(20.0), None, None, None),
                none,
                // No baseline at two threads; 152 / 80 and 72 / 40 (lower middle).
                (None, None, None, None, None, r(1.8, 1.8, 1.9)),
                // 60 / 1 and 28 / 1; 60 / 80 and 28 / 40 against translate.
                (Some(28.0), Some(28.0), Some(60.0), None, r(0.7, 0.7, 0.75), None),
                none,
                // 9 / 6 and 5 / 3; 9 / 10 and 5 / 5 against raw4k.
                (Some(1.5), Some(1.5), Some(5.0 / 3.0), r(0.9, 0.9, 1.0), None, None),
                none,
                // raw4k has no baseline figure.
                none,
                // dma4k-vm-memory against the baseline's dma4k, and raw4k.
                (Some(4.0 / 3.0), Some(4.0 / 3.0), Some(4.0 / 3.0), r(0.8, 0.8, 0.8), None, None),
                // No one-thread mapunmap ran: no scaling.
                none,
            ]
        );
    }

    #[test]
    fn check_rejects_zero_and_too_many_rounds_naming_the_value() {
        for rounds in [0, MAX_ROUNDS + 1, usize::MAX] {
            let e = options(rounds).check().unwrap_err().to_string();
            assert_eq!(e, format!("--rounds {rounds}: must be 1 to 1000"));
        }
        assert!(options(0).check().unwrap_err().to_string().contains("--rounds 0"));
        for rounds in [1, 2, MAX_ROUNDS] {
            options(rounds).check().unwrap();
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
