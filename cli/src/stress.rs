//! `dartemu stress`: a long-running, model-checked stress of the whole SoC.
//!
//! The default SoC (three DARTs of three variants, four coprocessors, strict
//! invalidation, breaches in `reject` mode so that an attack is refused and
//! counted instead of halting the system) is driven by `threads` workers.
//! Worker `i` acts for device `i mod 4` in an IOVA region of its own, and
//! mixes: kernel maps and unmaps, maps and unmaps through the RPC mapper
//! service (grant, `map`, `unmap`, revoke), DMA writes and reads with a
//! per-mapping data pattern, `translate` of its own mappings, DMA to IOVAs
//! it has not mapped, attacks (free or retype of a frame another worker has
//! mapped, a map of a `kernel-restricted` frame), retypes and frees of its
//! own idle frames, stream flushes, and MMIO register reads and writes
//! (writes only to registers of the spare streams 3 and up, so no device
//! stream is reconfigured under its worker). Besides its own region, every
//! worker maps, unmaps (strict, then frees the frame) and DMA-writes pages
//! of every device's shared *race region*, so DMA races strict unmap on
//! other threads; the frames freed there are soon reallocated (the free list
//! is LIFO) as `kernel-restricted` frames, which must stay all-zero. With the
//! `synchronize` of strict unmap removed, a 10-second run finds stale DMA
//! writes in them (and in other workers' data) within seconds.
//!
//! Three more parts cover what the default SoC's fixed device streams cannot:
//!
//! - [`lab`]: five more DARTs over the same frame table (t8020 and t8110
//!   *deferred*, t6000 strict, and two DARTs dedicated to register locks)
//!   where each worker owns *lab streams* and, under DMA through their
//!   [`dart::StreamPort`]s, maps into and unmaps from two root tables the
//!   kernel allocated, points the TTBRs at either root (or at none), toggles
//!   TCR.TRANSLATE, disables and re-enables the stream, flushes by API and
//!   by register (STREAM_SELECT + STREAM_COMMAND and TLB_CMD, BUSY polled),
//!   locks the registers (CONFIG.LOCK, PROTECT/UNPROTECT) and probes TCR/TTBR
//!   writes under the lock. Its shadow follows the TTBRs per stream and
//!   accepts a stale read of the old frame's data after a deferred unmap
//!   until the flush, never after; the lab module states its rules.
//! - [`mini`]: a small private SoC per worker, alternately in `panic` and
//!   `reject` mode, where multi-frame free and retype name a busy frame: a
//!   refusal in reject mode, a halt in panic mode (after which nothing moves
//!   and a fresh SoC replaces it, counted as a halt); a refused request that
//!   changed some of its frames is a *partial change* violation (docs/design.md §2 R6).
//! - [`driver`]: two more DARTs (t8020 DART1, t8110 DART2 with two- and
//!   three-level trees) where each worker builds its own tables through the
//!   monitor (`Dart::write_table_entry`, `read_table_entry`,
//!   `release_table`): registers tables by a zero write, links them by TTBR
//!   and by descriptor, writes honest leaves, clears, flushes by API and
//!   register, frees and releases, while every worker's DMA races the
//!   trees' race slots; forged leaves, descriptors, TTBRs and releases must
//!   be refused `forbidden-type`, valid-over-valid `iova-in-use`, busy
//!   tables `table-in-use`, counted frames `frame-busy`; the driver module
//!   states its rules.
//!
//! # The shadow
//!
//! A shadow of which frames each stream may legally reach lives behind the
//! harness's own lock (never taken by the DART): frame → `Mapped` from the
//! moment its map returned `Ok` until just before its unmap starts. It is
//! checked against the emulator:
//!
//! - every `translate` of a worker's mapping must return exactly the frames
//!   the worker mapped there, and a DMA to an IOVA the worker has not mapped
//!   must fault: otherwise an **unreachable access**;
//! - a `kernel-restricted` frame is all-zero when it leaves the pool and at
//!   every quiescent check (no device write reached it): otherwise an
//!   **unreachable access**;
//! - every DMA read returns the pattern last written (a worker owns its
//!   frames, nobody else writes them), and a DMA to a live mapping never
//!   faults: otherwise a **lost write**;
//! - a free or retype of a frame the shadow says is `Mapped` must be refused
//!   (`frame-busy`), and a frame a worker unmapped must free at once (its
//!   count is released when a strict unmap returns): otherwise a **count
//!   mismatch**;
//! - periodically and at the end, with the workers parked at an op boundary
//!   (a harness `RwLock`: workers hold it shared for one op, the checker
//!   takes it exclusively), every DART passes `restricted-unreachable` and
//!   `iotlb-coherent`, the frame table's DART and pending counts equal what
//!   the DARTs' tables and queues hold, its CPU counts are zero, and every
//!   non-table frame's DART count equals the shadow's, a frame with a
//!   pending-invalidation count is one a lab worker unmapped deferred and
//!   has not flushed (or a driver stream cleared and has not flushed), and
//!   every mini SoC that runs passes the same checks against its own DART
//!   and shadow: otherwise an **invariant** failure. The driver DARTs are
//!   among "every DART" (their counts include the driver trees); after the
//!   workers' teardown they must hold no table and count no frame.

pub mod driver;
pub mod lab;
pub mod mini;

use coprocessor_sim::rpc::wire::{self, Request};
use coprocessor_sim::scenario::OnViolation;
use coprocessor_sim::soc::{Soc, SocError};
use dart::{Dart, Dir};
use frame_table::{Counter, Frame, FrameType, Perm};
use parking_lot::{Mutex, RwLock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most workers a run accepts.
pub const MAX_THREADS: usize = 32;
/// Longest run accepted (one day).
pub const MAX_SECONDS: u64 = 86_400;
/// IOVA page slots per worker.
const SLOTS: usize = 16;
/// Bytes of IOVA space per worker region.
const REGION: u64 = 0x1000_0000;

/// How to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StressConfig {
    /// Wall-clock seconds (1 ..= [`MAX_SECONDS`]).
    pub seconds: u64,
    /// Worker threads (1 ..= [`MAX_THREADS`]).
    pub threads: usize,
    /// Seed of the workers' random choices.
    pub seed: u64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StressError {
    /// `threads` outside 1 ..= [`MAX_THREADS`].
    #[error("--threads {threads}: must be 1..={max}")]
    BadThreads {
        /// Asked.
        threads: usize,
        /// Largest accepted.
        max: usize,
    },
    /// `seconds` outside 1 ..= [`MAX_SECONDS`].
    #[error("--seconds {seconds}: must be 1..={max}")]
    BadSeconds {
        /// Asked.
        seconds: u64,
        /// Largest accepted.
        max: u64,
    },
    /// The SoC could not be built.
    #[error(transparent)]
    Soc(#[from] SocError),
}

/// Operation kinds a worker performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// Kernel `Dart::map` of fresh `user-data` frames.
    Map,
    /// Kernel `Dart::unmap` (strict), then free of the frames.
    Unmap,
    /// Grant + RPC `map` through the mapper service.
    RpcMap,
    /// RPC `unmap` + revoke.
    RpcUnmap,
    /// DMA write of a new pattern to a live mapping.
    DmaWrite,
    /// DMA read of a live mapping, compared with its pattern.
    DmaRead,
    /// `translate` of a live mapping, compared with the shadow.
    Translate,
    /// DMA to an IOVA the worker has not mapped (must fault).
    DmaUnmapped,
    /// Free or retype of a frame another worker has mapped (must be refused).
    Attack,
    /// Map of a `kernel-restricted` frame (must be refused).
    MapRestricted,
    /// Retype of an idle own frame `user-data` ↔ `kernel-shared`.
    Retype,
    /// Flush of the worker's stream.
    Flush,
    /// MMIO register write to a spare stream's register.
    MmioWrite,
    /// MMIO register read anywhere in the window.
    MmioRead,
    /// Map of a page of a device's shared race region.
    RaceMap,
    /// Strict unmap of a race-region page (and free of its frame) while
    /// other workers may be doing DMA to it.
    RaceUnmap,
    /// DMA write to a race-region page, racing its unmap (may fault).
    RaceDma,
    /// Kernel map into the root a lab stream's TTBR names ([`lab`]).
    LabMap,
    /// Kernel unmap on a lab stream (strict: free; deferred: pending, stale).
    LabUnmap,
    /// DMA write/read on a lab stream, judged by the lab rules 1-3.
    LabDma,
    /// Read right after a deferred unmap: the old data (a stale hit, `ok`) or a fault.
    StaleRead,
    /// Read of a formerly stale page after its flush: must fault.
    FlushedRead,
    /// Flush by register (STREAM_SELECT + STREAM_COMMAND, TLB_CMD; BUSY polled).
    FlushReg,
    /// TTBR rewrite of a lab stream (register or API), unlocked.
    TtbrWrite,
    /// TCR.TRANSLATE toggle of a lab stream (register or API), unlocked.
    TcrWrite,
    /// Disable or re-enable a lab stream (register or API).
    StreamEnable,
    /// Lock a lock DART (t8020 CONFIG.LOCK, t8110 PROTECT; then UNPROTECT).
    Lock,
    /// TCR/TTBR write while locked: ignored (register) or `locked`/applied (API).
    LockedWrite,
    /// The DART's reach of a lab stream compared with the shadow's.
    ReachCheck,
    /// Free of an own deferred-unmapped, unflushed frame (must be refused).
    FreePending,
    /// Kernel free of frames a live grant names (R7: must be refused).
    FreeGranted,
    /// Map, unmap, DMA or flush on a worker's mini SoC ([`mini`]).
    MiniWork,
    /// Reject-mode multi-frame free naming a busy frame (must be refused).
    MultiFree,
    /// Reject-mode multi-frame retype naming a busy frame (must be refused).
    MultiRetype,
    /// Panic-mode multi-frame free/retype naming a busy frame (halts the mini SoC).
    PanicBreach,
    /// An operation on a halted mini SoC (must return `halted`).
    Halted,
    /// Registration of a fresh driver table by a zero write ([`driver`]).
    PteRegister,
    /// Link of a driver table: TTBR (API or register) or table descriptor.
    PteLink,
    /// Honest leaf write naming a `user-data` / `kernel-shared` / `compressor` frame.
    PteLeaf,
    /// Forged write, descriptor, release or TTBR (must be refused `forbidden-type`).
    PteForged,
    /// Valid entry over a valid entry (must be refused `iova-in-use`).
    PteOverwrite,
    /// Clear of a valid leaf or descriptor.
    PteClear,
    /// Flush of a driver stream (API or register), then the frees it allows.
    PteFlush,
    /// Free of a counted frame of a driver tree (must be refused `frame-busy`).
    PteFreeBusy,
    /// Release of an idle driver table, and free of its frame.
    PteRelease,
    /// Link or release of a busy driver table (must be refused `table-in-use`).
    PteInUse,
    /// `read_table_entry` compared with the shadow.
    PteRead,
    /// DMA on a driver stream, judged by its shadow.
    PteDma,
    /// DMA into any driver stream's race slots, racing its owner (may fault).
    PteRaceDma,
    /// The DART's reach of a driver stream compared with the shadow.
    PteReach,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 50] = [
        OpKind::Map,
        OpKind::Unmap,
        OpKind::RpcMap,
        OpKind::RpcUnmap,
        OpKind::DmaWrite,
        OpKind::DmaRead,
        OpKind::Translate,
        OpKind::DmaUnmapped,
        OpKind::Attack,
        OpKind::MapRestricted,
        OpKind::Retype,
        OpKind::Flush,
        OpKind::MmioWrite,
        OpKind::MmioRead,
        OpKind::RaceMap,
        OpKind::RaceUnmap,
        OpKind::RaceDma,
        OpKind::LabMap,
        OpKind::LabUnmap,
        OpKind::LabDma,
        OpKind::StaleRead,
        OpKind::FlushedRead,
        OpKind::FlushReg,
        OpKind::TtbrWrite,
        OpKind::TcrWrite,
        OpKind::StreamEnable,
        OpKind::Lock,
        OpKind::LockedWrite,
        OpKind::ReachCheck,
        OpKind::FreePending,
        OpKind::FreeGranted,
        OpKind::MiniWork,
        OpKind::MultiFree,
        OpKind::MultiRetype,
        OpKind::PanicBreach,
        OpKind::Halted,
        OpKind::PteRegister,
        OpKind::PteLink,
        OpKind::PteLeaf,
        OpKind::PteForged,
        OpKind::PteOverwrite,
        OpKind::PteClear,
        OpKind::PteFlush,
        OpKind::PteFreeBusy,
        OpKind::PteRelease,
        OpKind::PteInUse,
        OpKind::PteRead,
        OpKind::PteDma,
        OpKind::PteRaceDma,
        OpKind::PteReach,
    ];

    /// Report name.
    pub const fn name(self) -> &'static str {
        match self {
            OpKind::Map => "map",
            OpKind::Unmap => "unmap",
            OpKind::RpcMap => "rpc-map",
            OpKind::RpcUnmap => "rpc-unmap",
            OpKind::DmaWrite => "dma-write",
            OpKind::DmaRead => "dma-read",
            OpKind::Translate => "translate",
            OpKind::DmaUnmapped => "dma-unmapped",
            OpKind::Attack => "attack-free-retype",
            OpKind::MapRestricted => "map-restricted",
            OpKind::Retype => "retype-own",
            OpKind::Flush => "flush",
            OpKind::MmioWrite => "mmio-write",
            OpKind::MmioRead => "mmio-read",
            OpKind::RaceMap => "race-map",
            OpKind::RaceUnmap => "race-unmap",
            OpKind::RaceDma => "race-dma",
            OpKind::LabMap => "lab-map",
            OpKind::LabUnmap => "lab-unmap",
            OpKind::LabDma => "lab-dma",
            OpKind::StaleRead => "stale-read",
            OpKind::FlushedRead => "after-flush-read",
            OpKind::FlushReg => "flush-reg",
            OpKind::TtbrWrite => "ttbr-write",
            OpKind::TcrWrite => "tcr-write",
            OpKind::StreamEnable => "stream-enable",
            OpKind::Lock => "lock",
            OpKind::LockedWrite => "locked-write",
            OpKind::ReachCheck => "reach-check",
            OpKind::FreePending => "free-pending",
            OpKind::FreeGranted => "free-granted",
            OpKind::MiniWork => "mini-work",
            OpKind::MultiFree => "multi-free",
            OpKind::MultiRetype => "multi-retype",
            OpKind::PanicBreach => "panic-breach",
            OpKind::Halted => "after-halt",
            OpKind::PteRegister => "pte-register",
            OpKind::PteLink => "pte-link",
            OpKind::PteLeaf => "pte-write-leaf",
            OpKind::PteForged => "pte-write-forged",
            OpKind::PteOverwrite => "pte-write-over",
            OpKind::PteClear => "pte-clear",
            OpKind::PteFlush => "pte-flush",
            OpKind::PteFreeBusy => "pte-free-busy",
            OpKind::PteRelease => "pte-release",
            OpKind::PteInUse => "pte-table-in-use",
            OpKind::PteRead => "pte-read",
            OpKind::PteDma => "pte-dma",
            OpKind::PteRaceDma => "pte-race-dma",
            OpKind::PteReach => "pte-reach-check",
        }
    }
}

/// Successful and refused operations of one kind. A refusal is expected
/// for attacks and DMA to unmapped IOVAs, and possible elsewhere (out of
/// frames, an MMIO write the DART ignores); it is a violation only where the
/// module documentation says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCount {
    /// Calls that returned `Ok`.
    pub ok: u64,
    /// Calls that returned an error.
    pub refused: u64,
}

/// Violations by class (all must be zero).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    /// A DMA or translation reached a frame the shadow does not give it.
    pub unreachable_access: u64,
    /// A DMA read returned other than the last write, or a DMA to a live mapping faulted.
    pub lost_writes: u64,
    /// A frame's counts disagreed with the shadow (busy frame freed, idle frame not freeable).
    pub count_mismatches: u64,
    /// A quiescent invariant check failed.
    pub invariant_failures: u64,
    /// A refused multi-frame free or retype changed some of its frames (R6).
    pub partial_changes: u64,
    /// The first few violations, described.
    pub first: Vec<String>,
}

impl Violations {
    /// All classes summed.
    pub fn total(&self) -> u64 {
        self.unreachable_access
            + self.lost_writes
            + self.count_mismatches
            + self.invariant_failures
            + self.partial_changes
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct StressReport {
    /// The configuration.
    pub seconds: u64,
    /// Workers.
    pub threads: usize,
    /// Seed.
    pub seed: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Per kind.
    pub ops: BTreeMap<OpKind, OpCount>,
    /// Quiescent invariant checks run.
    pub checks: u64,
    /// Breaches the frame tables refused (the attacks), from
    /// [`frame_table::FrameTable::violations`] of the SoC's and of the
    /// reject-mode mini SoCs' frame tables.
    pub refused_breaches: u64,
    /// Panic-mode mini SoCs halted by a breach (each replaced by a fresh one).
    pub halts: u64,
    /// Violations.
    pub violations: Violations,
}

impl StressReport {
    /// Operations of every kind.
    pub fn total_ops(&self) -> u64 {
        self.ops.values().map(|c| c.ok + c.refused).sum()
    }
}

impl fmt::Display for StressReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "stress: {:.1} s, {} threads, seed {}, default SoC (dart-ane t8110, dart-disp t6000, dart-usb t8020)",
            self.elapsed.as_secs_f64(),
            self.threads,
            self.seed
        )?;
        writeln!(f, "{:<20} {:>14} {:>14}", "operation", "ok", "refused")?;
        for k in OpKind::ALL {
            let c = self.ops.get(&k).copied().unwrap_or_default();
            writeln!(f, "{:<20} {:>14} {:>14}", k.name(), c.ok, c.refused)?;
        }
        let total = self.total_ops();
        writeln!(
            f,
            "total {total} operations ({:.0}/s), {} quiescent invariant checks, {} breaches refused",
            total as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.checks,
            self.refused_breaches
        )?;
        writeln!(f, "panic-mode halts {} (a fresh mini SoC after each)", self.halts)?;
        let v = &self.violations;
        writeln!(
            f,
            "violations: unreachable-access {}, lost-write {}, count-mismatch {}, invariant {}, partial-change {} (total {})",
            v.unreachable_access,
            v.lost_writes,
            v.count_mismatches,
            v.invariant_failures,
            v.partial_changes,
            v.total()
        )?;
        for d in &v.first {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// A worker's mapping at one IOVA slot.
#[derive(Clone, Debug)]
struct Mapping {
    frames: Vec<Frame>,
    /// The grant handle, for a mapping made through RPC.
    handle: Option<u32>,
    /// The byte the pattern is derived from.
    pattern: u8,
}

/// One page of a device's race region: any worker maps, unmaps and DMAs
/// there, so DMA races strict unmap (the lock guards only this state, never
/// the DART calls).
#[derive(Clone, Debug, PartialEq, Eq)]
enum RacePage {
    Empty,
    /// A worker is mapping or unmapping it.
    Busy,
    Mapped(Frame),
}

/// Pages in a device's race region.
const RACE_PAGES: usize = 8;
/// Offset of the race region in a device's IOVA window (past every worker region).
const RACE_BASE: u64 = 12 * REGION;

/// State shared by the workers and the checker.
struct Shared {
    soc: Soc,
    /// Workers hold it shared for one op; the checker exclusively.
    gate: RwLock<()>,
    /// Frames mapped (the shadow), with the mapping worker.
    shadow: Mutex<HashMap<Frame, usize>>,
    /// `kernel-restricted` frames the workers made (targets of map attempts).
    restricted: Mutex<Vec<Frame>>,
    /// Per device, the pages of its race region (see [`RacePage`]).
    race: Vec<Mutex<Vec<RacePage>>>,
    violations: Mutex<Violations>,
    stop: AtomicBool,
    /// The lab DARTs ([`lab`]), over the SoC's frame table.
    labs: Vec<lab::LabDart>,
    /// Per SoC DART, the driver lock of register flush sequences.
    soc_regs: Vec<Mutex<()>>,
    /// The driver DARTs ([`driver`]), over the SoC's frame table.
    drivers: Vec<lab::LabDart>,
    /// Every worker's driver streams, for the race DMA of all workers.
    drv_targets: Vec<driver::DrvTarget>,
    /// Frames lab workers unmapped on deferred DARTs and have not flushed
    /// (a superset of the frames with a pending-invalidation count).
    pending: Mutex<HashSet<Frame>>,
    /// Per worker, its mini SoC ([`mini`]).
    minis: Vec<Mutex<Option<mini::MiniSoc>>>,
    /// Breaches refused by retired reject-mode mini SoCs.
    mini_breaches: AtomicU64,
    /// Panic-mode mini SoC halts.
    halts: AtomicU64,
    /// Operations done so far (each worker adds its count every
    /// [`OPS_BATCH`] operations), for the progress display.
    ops_done: AtomicU64,
}

impl Shared {
    /// A `kernel-restricted` frame is zero-filled when allocated and nobody
    /// may write it: any other byte is a device write that reached it.
    fn check_untouched(&self, f: Frame) {
        let mut buf = vec![0u8; self.soc.frames.frame_size().bytes() as usize];
        let pa = match self.soc.frames.pa_of(f) {
            Ok(pa) => pa,
            Err(e) => return self.violation(|v| &mut v.invariant_failures, format!("{f}: {e}")),
        };
        match self.soc.frames.aperture_read(pa, &mut buf) {
            Ok(()) if buf.iter().all(|&b| b == 0) => {}
            Ok(()) => self.violation(
                |v| &mut v.unreachable_access,
                format!(
                    "kernel-restricted {f} was written (first non-zero byte at {:#x})",
                    buf.iter().position(|&b| b != 0).unwrap_or(0)
                ),
            ),
            Err(e) => self.violation(|v| &mut v.invariant_failures, format!("aperture read of {f}: {e}")),
        }
    }

    fn violation(&self, class: fn(&mut Violations) -> &mut u64, what: String) {
        let mut v = self.violations.lock();
        *class(&mut v) += 1;
        if v.first.len() < 10 {
            v.first.push(what);
        }
    }
}

fn pattern_bytes(pattern: u8, worker: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern ^ (i as u8).wrapping_mul(31) ^ (worker as u8)).collect()
}

/// One worker's private state.
struct Worker<'a> {
    id: usize,
    shared: &'a Shared,
    device: usize,
    dart: &'a Dart,
    sid: u32,
    base: u64,
    page: u64,
    slots: Vec<Option<Mapping>>,
    rng: SmallRng,
    ops: BTreeMap<OpKind, OpCount>,
    /// The worker's lab streams ([`lab`]).
    labs: Vec<lab::LabStream>,
    /// The worker's driver streams ([`driver`]).
    drv: Vec<driver::DrvStream>,
    /// Generation of the worker's next mini SoC.
    mini_gen: u64,
}

impl<'a> Worker<'a> {
    fn count(&mut self, kind: OpKind, ok: bool) {
        let c = self.ops.entry(kind).or_default();
        if ok {
            c.ok += 1;
        } else {
            c.refused += 1;
        }
    }

    fn iova(&self, slot: usize) -> u64 {
        // Two pages per slot: a mapping has one or two frames.
        self.base + slot as u64 * 2 * self.page
    }

    fn pick(&mut self, mapped: bool) -> Option<usize> {
        let start = self.rng.gen_range(0..SLOTS);
        (0..SLOTS).map(|i| (start + i) % SLOTS).find(|&s| self.slots[s].is_some() == mapped)
    }

    fn step(&mut self) {
        let roll = self.rng.gen_range(0..170u32);
        match roll {
            140..=169 => self.drv_step(roll - 140),
            100..=129 => self.lab_step(roll - 100),
            130..=139 => self.mini_step(),
            0..=9 => self.map(false),
            10..=14 => self.map(true),
            15..=24 => self.unmap(),
            25..=34 => self.dma_write(),
            35..=44 => self.dma_read(),
            45..=46 => self.race_map(),
            47..=48 => self.race_unmap(),
            49..=54 => self.race_dma(),
            55..=62 => self.translate(),
            63..=68 => self.dma_unmapped(),
            69..=74 => self.attack(),
            75..=78 => self.map_restricted(),
            79..=84 => self.retype(),
            85..=87 => {
                let ok = self.dart.flush(Some(self.sid)).is_ok();
                self.count(OpKind::Flush, ok);
            }
            88..=93 => self.mmio_write(),
            94..=99 => {
                // Mostly aligned registers; sometimes anything (misaligned, past the window).
                let size = self.dart.mmio_size();
                let off = if self.rng.gen_bool(0.9) {
                    self.rng.gen_range(0..size / 4) * 4
                } else {
                    self.rng.gen_range(0..size + 64)
                };
                let ok = self.dart.mmio_read(off).is_ok();
                self.count(OpKind::MmioRead, ok);
            }
            _ => {}
        }
    }

    fn map(&mut self, rpc: bool) {
        let kind = if rpc { OpKind::RpcMap } else { OpKind::Map };
        let Some(slot) = self.pick(false) else { return self.unmap() };
        let n = self.rng.gen_range(1..=2u64);
        let frames = match self.shared.soc.frames.alloc(FrameType::UserData, n) {
            Ok(f) => f,
            Err(_) => return self.count(kind, false),
        };
        let iova = self.iova(slot);
        let (result, handle) = if rpc {
            match self.shared.soc.service.grant(self.device, frames.clone(), Perm::RW) {
                Ok(h) => {
                    let req = Request::Map { handle: h, offset: 0, len: n * self.page, iova, perm: Perm::RW };
                    // Through the wire format, as a ring message would arrive.
                    let seq = self.rng.gen();
                    let (echo, r) =
                        self.shared.soc.service.handle_message(self.device, &wire::encode_request(seq, &req));
                    let r = r.map_err(|e| e.to_string()).and_then(|()| {
                        if echo == seq {
                            Ok(())
                        } else {
                            Err(format!("the service answered seq {echo} to seq {seq}"))
                        }
                    });
                    if r.is_err() {
                        let _ = self.shared.soc.service.revoke(h);
                    }
                    (r, Some(h))
                }
                Err(e) => (Err(e.to_string()), None),
            }
        } else {
            (self.dart.map(self.sid, iova, &frames, Perm::RW, None).map_err(|e| e.to_string()), None)
        };
        if let Err(e) = result {
            self.count(kind, false);
            for &f in &frames {
                if let Err(fe) = self.shared.soc.frames.free(f) {
                    self.shared.violation(
                        |v| &mut v.count_mismatches,
                        format!("worker {}: {f} not freeable after a refused map ({e}): {fe}", self.id),
                    );
                }
            }
            return;
        }
        {
            let mut sh = self.shared.shadow.lock();
            for &f in &frames {
                sh.insert(f, self.id);
            }
        }
        let pattern = self.rng.gen();
        self.slots[slot] = Some(Mapping { frames, handle, pattern });
        self.count(kind, true);
        self.write_pattern(slot, pattern);
    }

    fn write_pattern(&mut self, slot: usize, pattern: u8) {
        let Some(m) = self.slots[slot].as_mut() else { return };
        let len = m.frames.len() * self.page as usize;
        let data = pattern_bytes(pattern, self.id, len);
        let iova = self.base + slot as u64 * 2 * self.page;
        match self.dart.dma_write(self.sid, iova, &data) {
            Ok(()) => m.pattern = pattern,
            Err(e) => self.shared.violation(
                |v| &mut v.lost_writes,
                format!("worker {}: DMA write to its live mapping at {iova:#x} failed: {e}", self.id),
            ),
        }
    }

    fn unmap(&mut self) {
        let Some(slot) = self.pick(true) else { return self.map(false) };
        let Some(m) = self.slots[slot].take() else { return };
        let iova = self.iova(slot);
        let len = m.frames.len() as u64 * self.page;
        {
            let mut sh = self.shared.shadow.lock();
            for f in &m.frames {
                sh.remove(f);
            }
        }
        let (kind, result) = match m.handle {
            Some(h) => {
                // R7: while the grant lives, the kernel may not free its
                // frames (refused, nothing changes), mapped or not.
                let before: Vec<_> = m.frames.iter().map(|&f| self.shared.soc.frames.state(f).ok()).collect();
                let freed = self.shared.soc.service.kernel_free(&m.frames);
                self.count(OpKind::FreeGranted, freed.is_ok());
                let after: Vec<_> = m.frames.iter().map(|&f| self.shared.soc.frames.state(f).ok()).collect();
                match freed {
                    Err(ref e) if e.kind() == "frame-busy" && before == after => {}
                    other => self.shared.violation(
                        |v| &mut v.count_mismatches,
                        format!("worker {}: free of granted {:?} gave {other:?}", self.id, m.frames),
                    ),
                }
                let r = self.shared.soc.service.handle(self.device, &Request::Unmap { iova, len });
                let revoked = self.shared.soc.service.revoke(h);
                (
                    OpKind::RpcUnmap,
                    r.map_err(|e| e.to_string()).and_then(|_| revoked.map(drop).map_err(|e| e.to_string())),
                )
            }
            None => (OpKind::Unmap, self.dart.unmap(self.sid, iova, len).map(drop).map_err(|e| e.to_string())),
        };
        self.count(kind, result.is_ok());
        if let Err(e) = result {
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("worker {}: unmap of its mapping at {iova:#x} failed: {e}", self.id),
            );
            return;
        }
        // Strict unmap (and revoke) returned: the counts are released, the
        // frames free at once, all of them in one kernel call.
        if let Err(e) = self.shared.soc.service.kernel_free(&m.frames) {
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("worker {}: {:?} not freeable after its unmap: {e}", self.id, m.frames),
            );
        }
    }

    fn dma_write(&mut self) {
        let Some(slot) = self.pick(true) else { return self.map(false) };
        let pattern = self.rng.gen();
        self.write_pattern(slot, pattern);
        self.count(OpKind::DmaWrite, true);
    }

    fn dma_read(&mut self) {
        let Some(slot) = self.pick(true) else { return self.map(false) };
        let Some(m) = self.slots[slot].clone() else { return };
        let len = m.frames.len() * self.page as usize;
        let iova = self.iova(slot);
        let mut buf = vec![0u8; len];
        match self.dart.dma_read(self.sid, iova, &mut buf) {
            Ok(()) => {
                self.count(OpKind::DmaRead, true);
                if buf != pattern_bytes(m.pattern, self.id, len) {
                    self.shared.violation(
                        |v| &mut v.lost_writes,
                        format!("worker {}: DMA read at {iova:#x} differs from the last write", self.id),
                    );
                }
            }
            Err(e) => {
                self.count(OpKind::DmaRead, false);
                self.shared.violation(
                    |v| &mut v.lost_writes,
                    format!("worker {}: DMA read of its live mapping at {iova:#x} failed: {e}", self.id),
                );
            }
        }
    }

    fn translate(&mut self) {
        let Some(slot) = self.pick(true) else { return self.dma_unmapped() };
        let Some(m) = self.slots[slot].clone() else { return };
        let iova = self.iova(slot);
        let len = m.frames.len() as u64 * self.page;
        let (frames, page) = (&self.shared.soc.frames, self.page);
        let got: Result<Vec<Frame>, String> = match self.dart.translate(self.sid, iova, len, Dir::Write) {
            Ok(t) => t
                .spans()
                .iter()
                .flat_map(|s| (0..s.len / page).map(move |i| s.pa + i * page))
                .map(|pa| frames.frame_of(pa).map_err(|e| e.to_string()))
                .collect(),
            Err(e) => Err(e.to_string()),
        };
        self.count(OpKind::Translate, got.is_ok());
        match got {
            Ok(v) if v == m.frames => {}
            Ok(v) => self.shared.violation(
                |x| &mut x.unreachable_access,
                format!("worker {}: {iova:#x} translates to {v:?}, the shadow says {:?}", self.id, m.frames),
            ),
            Err(e) => self.shared.violation(
                |x| &mut x.lost_writes,
                format!("worker {}: translate of its live mapping at {iova:#x} failed: {e}", self.id),
            ),
        }
    }

    fn dma_unmapped(&mut self) {
        let Some(slot) = self.pick(false) else { return };
        let iova = self.iova(slot) + self.rng.gen_range(0..2 * self.page);
        let mut buf = [0u8; 64];
        let r = self.dart.dma_read(self.sid, iova, &mut buf);
        self.count(OpKind::DmaUnmapped, r.is_ok());
        if r.is_ok() {
            self.shared.violation(
                |v| &mut v.unreachable_access,
                format!("worker {}: DMA at unmapped IOVA {iova:#x} succeeded", self.id),
            );
        }
    }

    fn attack(&mut self) {
        let frames = &self.shared.soc.frames;
        // Under the shadow lock: the victim cannot start unmapping meanwhile,
        // so the frame's DART count is held for the whole attempt.
        let sh = self.shared.shadow.lock();
        if sh.is_empty() {
            drop(sh);
            return self.count(OpKind::Attack, false);
        }
        let skip = self.rng.gen_range(0..sh.len().min(64));
        let Some((&f, &owner)) = sh.iter().nth(skip) else { return };
        let retype = self.rng.gen_bool(0.5);
        let r = if retype { frames.retype(f, FrameType::KernelShared) } else { frames.free(f) };
        drop(sh);
        self.count(OpKind::Attack, r.is_ok());
        if r.is_ok() {
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!(
                    "worker {}: {} of {f}, mapped by worker {owner}, succeeded",
                    self.id,
                    if retype { "retype" } else { "free" }
                ),
            );
        }
    }

    fn map_restricted(&mut self) {
        let frames = &self.shared.soc.frames;
        let Some(slot) = self.pick(false) else { return };
        let iova = self.iova(slot);
        // The list lock is held across the map, so no other worker frees the
        // target (and nobody reallocates it) meanwhile.
        let mut list = self.shared.restricted.lock();
        // A fresh one each time: the free list is LIFO, so this is often a
        // frame another worker just unmapped and freed. A DMA that outlived
        // that unmap would write into it (caught by the zero check).
        if let Ok(f) = frames.alloc(FrameType::KernelRestricted, 1) {
            list.extend(f);
        }
        if list.len() > 16 {
            let f = list.remove(0);
            self.shared.check_untouched(f);
            if let Err(e) = frames.free(f) {
                self.shared.violation(
                    |v| &mut v.count_mismatches,
                    format!("worker {}: unmapped kernel-restricted {f} not freeable: {e}", self.id),
                );
            }
        }
        if list.is_empty() {
            return;
        }
        let target = list[self.rng.gen_range(0..list.len())];
        let r = self.dart.map(self.sid, iova, &[target], Perm::R, None);
        drop(list);
        self.count(OpKind::MapRestricted, r.is_ok());
        if r.is_ok() {
            let ty = frames.state(target).map(|s| s.ty());
            self.shared.violation(
                |v| &mut v.unreachable_access,
                format!("worker {}: map of kernel-restricted {target} ({ty:?} now) at {iova:#x} succeeded", self.id),
            );
            let _ = self.dart.unmap(self.sid, iova, self.page);
        }
    }

    /// A random device's race region: (device, stream's DART, stream, base IOVA).
    fn race_target(&mut self) -> (usize, &'a Dart, u32, u64) {
        let shared: &'a Shared = self.shared;
        let soc = &shared.soc;
        let d = self.rng.gen_range(0..soc.devices.len());
        let dev = &soc.devices[d];
        (d, &soc.darts[dev.dart], dev.stream, dev.window.start + RACE_BASE)
    }

    fn race_map(&mut self) {
        let (d, dart, sid, base) = self.race_target();
        let p = self.rng.gen_range(0..RACE_PAGES);
        {
            let mut r = self.shared.race[d].lock();
            if r[p] != RacePage::Empty {
                return;
            }
            r[p] = RacePage::Busy;
        }
        let frames = &self.shared.soc.frames;
        let mapped = match frames.alloc(FrameType::UserData, 1) {
            Ok(f) => match dart.map(sid, base + p as u64 * self.page, &f, Perm::RW, None) {
                Ok(()) => Some(f[0]),
                Err(_) => {
                    let _ = frames.free(f[0]);
                    None
                }
            },
            Err(_) => None,
        };
        if let Some(f) = mapped {
            self.shared.shadow.lock().insert(f, self.id);
        }
        self.shared.race[d].lock()[p] = mapped.map_or(RacePage::Empty, RacePage::Mapped);
        self.count(OpKind::RaceMap, mapped.is_some());
    }

    fn race_unmap(&mut self) {
        let (d, dart, sid, base) = self.race_target();
        let p = self.rng.gen_range(0..RACE_PAGES);
        let f = {
            let mut r = self.shared.race[d].lock();
            let RacePage::Mapped(f) = r[p] else { return };
            r[p] = RacePage::Busy;
            f
        };
        self.shared.shadow.lock().remove(&f);
        let iova = base + p as u64 * self.page;
        let r = dart.unmap(sid, iova, self.page);
        self.count(OpKind::RaceUnmap, r.is_ok());
        if let Err(e) = r {
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("worker {}: race-region unmap at {iova:#x} failed: {e}", self.id),
            );
        }
        // Strict unmap returned: no DMA can still reach the frame. Free it
        // at once; the LIFO free list hands it to the next allocation,
        // often a kernel-restricted one (checked to stay untouched).
        if let Err(e) = self.shared.soc.frames.free(f) {
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("worker {}: {f} not freeable after its race-region unmap: {e}", self.id),
            );
        }
        self.shared.race[d].lock()[p] = RacePage::Empty;
    }

    fn race_dma(&mut self) {
        let (_, dart, sid, base) = self.race_target();
        let p = self.rng.gen_range(0..RACE_PAGES) as u64;
        let data = vec![0x5Au8 ^ self.id as u8; self.page as usize];
        let ok = dart.dma_write(sid, base + p * self.page, &data).is_ok();
        self.count(OpKind::RaceDma, ok);
    }

    fn retype(&mut self) {
        let frames = &self.shared.soc.frames;
        let Ok(f) = frames.alloc(FrameType::UserData, 1) else { return self.count(OpKind::Retype, false) };
        let f = f[0];
        let there = frames.retype(f, FrameType::KernelShared);
        let back = frames.retype(f, FrameType::UserData);
        let freed = frames.free(f);
        let ok = there.is_ok() && back.is_ok() && freed.is_ok();
        self.count(OpKind::Retype, ok);
        if !ok {
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("worker {}: idle {f} retype/free refused: {there:?} {back:?} {freed:?}", self.id),
            );
        }
    }

    fn mmio_write(&mut self) {
        let variant = self.dart.variant();
        let size = self.dart.mmio_size();
        // Find a register of a spare stream (3 and up), or an unknown offset.
        for _ in 0..8 {
            let off = self.rng.gen_range(0..size / 4) * 4;
            let value: u32 = self.rng.gen();
            let d = dart::decode_access(variant, off, value);
            if d.known && !spare_stream_register(&d.register) {
                continue;
            }
            let ok = self.dart.mmio_write(off, value).is_ok();
            return self.count(OpKind::MmioWrite, ok);
        }
    }
}

/// Whether an m1n1 register name (`TCR[3]`, `TTBR[(3, 1)]`) is a per-stream
/// register of a stream >= 3 (no device stream uses those).
fn spare_stream_register(name: &str) -> bool {
    let Some(open) = name.find('[') else { return false };
    let digits: String = name[open + 1..].chars().skip_while(|&c| c == '(').take_while(char::is_ascii_digit).collect();
    let per_stream = name.starts_with("TCR") || name.starts_with("TTBR");
    per_stream && digits.parse::<u32>().is_ok_and(|s| s >= 3)
}

/// The quiescent checks (workers parked). Returns failure descriptions.
fn check_quiescent(shared: &Shared) -> Vec<String> {
    let soc = &shared.soc;
    let mut out = Vec::new();
    let mut dart: HashMap<Frame, (u64, u64)> = HashMap::new();
    for d in soc.darts.iter().chain(shared.labs.iter().chain(&shared.drivers).map(|l| &l.dart)) {
        if let Err(e) = d.check_restricted_unreachable() {
            out.push(format!("restricted-unreachable: {e}"));
        }
        if let Err(e) = d.check_iotlb_coherent() {
            out.push(format!("iotlb-coherent: {e}"));
        }
        if let Err(e) = d.check_provenance() {
            out.push(format!("provenance: {e}"));
        }
        for (f, (live, pending)) in d.dart_counts() {
            let e = dart.entry(f).or_default();
            e.0 += live;
            e.1 += pending;
        }
    }
    let shadow = shared.shadow.lock();
    for (f, s) in soc.frames.states() {
        let (live, pending) = dart.get(&f).copied().unwrap_or_default();
        let c = s.counts();
        let got = (
            u64::from(c.cpu_kernel),
            u64::from(c.cpu_user),
            s.count(Counter::Dart),
            s.count(Counter::PendingInvalidation),
        );
        if got != (0, 0, live, pending) {
            out.push(format!(
                "counts-consistent: {f} (kernel, user, dart, pending) = {got:?}, the DARTs hold {:?}",
                (live, pending)
            ));
        }
        if s.ty() != FrameType::DartTable && s.count(Counter::PendingInvalidation) > 0 && !shared.pending_contains(f) {
            out.push(format!("shadow: {f} ({}) is pending invalidation, no worker unmapped it deferred", s.ty()));
        }
        if s.ty() != FrameType::DartTable && s.count(Counter::Dart) != u64::from(shadow.contains_key(&f)) {
            out.push(format!(
                "shadow: {f} ({}) has DART count {}, the shadow says {}",
                s.ty(),
                s.count(Counter::Dart),
                u64::from(shadow.contains_key(&f))
            ));
        }
        if out.len() >= 10 {
            break;
        }
    }
    drop(shadow);
    for m in &shared.minis {
        if let Some(m) = m.lock().as_ref() {
            out.extend(m.check());
        }
    }
    out
}

fn run_checks(shared: &Shared) {
    let _parked = shared.gate.write();
    for e in check_quiescent(shared) {
        shared.violation(|v| &mut v.invariant_failures, e);
    }
    let list = shared.restricted.lock().clone();
    for f in list {
        shared.check_untouched(f);
    }
}

/// Operations a worker does between two additions to the shared count.
const OPS_BATCH: u64 = 1024;

/// Where a stress run is, about four times a second, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StressTick {
    /// Operations done (to within 1024 per worker: each adds its count in batches).
    pub ops: u64,
    /// Quiescent invariant checks done.
    pub checks: u64,
    /// Breaches refused so far.
    pub breaches: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// Runs the stress for `config.seconds` with `config.threads` workers and
/// returns the report (its [`Violations::total`] must be zero).
pub fn run_stress(config: &StressConfig) -> Result<StressReport, StressError> {
    run_stress_with(config, &mut |_| {})
}

/// [`run_stress`], calling `tick` after every quiescent check.
pub fn run_stress_with(config: &StressConfig, tick: &mut dyn FnMut(StressTick)) -> Result<StressReport, StressError> {
    if config.threads == 0 || config.threads > MAX_THREADS {
        return Err(StressError::BadThreads { threads: config.threads, max: MAX_THREADS });
    }
    if config.seconds == 0 || config.seconds > MAX_SECONDS {
        return Err(StressError::BadSeconds { seconds: config.seconds, max: MAX_SECONDS });
    }
    let (mut soc_cfg, darts, devices) = Soc::default_soc();
    soc_cfg.on_violation = OnViolation::Reject;
    let soc = Soc::new(&soc_cfg, &darts, &devices)?;
    let labs = lab::build_labs(&soc.frames)?;
    let mut lab_streams = Vec::with_capacity(config.threads);
    for id in 0..config.threads {
        let streams = lab::lab_streams(&labs, id, config.threads)
            .map_err(|source| SocError::Dart { name: "lab".into(), source })?;
        lab_streams.push(streams);
    }
    let drivers = driver::build_drivers(&soc.frames)?;
    let mut drv_streams = Vec::with_capacity(config.threads);
    for id in 0..config.threads {
        let streams =
            driver::drv_streams(&drivers, id).map_err(|source| SocError::Dart { name: "driver".into(), source })?;
        drv_streams.push(streams);
    }
    let drv_targets = drv_streams.iter().flatten().map(driver::DrvStream::target).collect();
    let shared = Arc::new(Shared {
        soc,
        gate: RwLock::new(()),
        shadow: Mutex::new(HashMap::new()),
        restricted: Mutex::new(Vec::new()),
        race: (0..devices.len()).map(|_| Mutex::new(vec![RacePage::Empty; RACE_PAGES])).collect(),
        violations: Mutex::new(Violations::default()),
        stop: AtomicBool::new(false),
        labs,
        soc_regs: darts.iter().map(|_| Mutex::new(())).collect(),
        drivers,
        drv_targets,
        pending: Mutex::new(HashSet::new()),
        minis: (0..config.threads).map(|_| Mutex::new(None)).collect(),
        mini_breaches: AtomicU64::new(0),
        halts: AtomicU64::new(0),
        ops_done: AtomicU64::new(0),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(config.seconds);
    let mut report =
        StressReport { seconds: config.seconds, threads: config.threads, seed: config.seed, ..Default::default() };
    let ops = std::thread::scope(|scope| {
        let handles: Vec<_> = lab_streams
            .into_iter()
            .zip(drv_streams)
            .enumerate()
            .map(|(id, (labs, drv))| {
                let shared = &*shared;
                scope.spawn(move || worker(shared, id, config.seed, labs, drv))
            })
            .collect();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now())));
            run_checks(&shared);
            report.checks += 1;
            tick(StressTick {
                ops: shared.ops_done.load(Ordering::Relaxed),
                checks: report.checks,
                breaches: shared.soc.frames.violations() + shared.mini_breaches.load(Ordering::Relaxed),
                elapsed: started.elapsed(),
            });
        }
        shared.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<BTreeMap<OpKind, OpCount>> = Vec::new();
        for h in handles {
            match h.join() {
                Ok(ops) => all.push(ops),
                Err(_) => shared.violation(|v| &mut v.invariant_failures, "a worker panicked".into()),
            }
        }
        all
    });
    // Empty the race regions (every worker has stopped).
    for (d, dev) in shared.soc.devices.iter().enumerate() {
        let dart = &shared.soc.darts[dev.dart];
        let page = shared.soc.frames.frame_size().bytes();
        let pages = std::mem::take(&mut *shared.race[d].lock());
        for (p, state) in pages.into_iter().enumerate() {
            if let RacePage::Mapped(f) = state {
                shared.shadow.lock().remove(&f);
                let iova = dev.window.start + RACE_BASE + p as u64 * page;
                if let Err(e) =
                    dart.unmap(dev.stream, iova, page).map(drop).and_then(|_| Ok(shared.soc.frames.free(f)?))
                {
                    shared.violation(|v| &mut v.count_mismatches, format!("race page {iova:#x} teardown: {e}"));
                }
            }
        }
    }
    run_checks(&shared);
    report.checks += 1;
    for e in driver::check_drivers_empty(&shared.drivers) {
        shared.violation(|v| &mut v.invariant_failures, e);
    }
    for per in ops {
        for (k, c) in per {
            let e = report.ops.entry(k).or_default();
            e.ok += c.ok;
            e.refused += c.refused;
        }
    }
    report.elapsed = started.elapsed();
    let live_minis: u64 = shared
        .minis
        .iter()
        .filter_map(|m| m.lock().take())
        .filter(|m| m.breaches() > 0 && m.frames_halted().is_none())
        .map(|m| m.breaches())
        .sum();
    report.refused_breaches =
        shared.soc.frames.violations() + shared.mini_breaches.load(Ordering::Relaxed) + live_minis;
    report.halts = shared.halts.load(Ordering::Relaxed);
    {}
    if let Some(v) = shared.soc.frames.halted() {
        shared.violation(|x| &mut x.invariant_failures, format!("the system halted: {v}"));
    }
    report.violations = shared.violations.lock().clone();
    Ok(report)
}

fn worker(
    shared: &Shared,
    id: usize,
    seed: u64,
    labs: Vec<lab::LabStream>,
    drv: Vec<driver::DrvStream>,
) -> BTreeMap<OpKind, OpCount> {
    let ndev = shared.soc.devices.len();
    let device = id % ndev;
    let dev = &shared.soc.devices[device];
    let dart = &shared.soc.darts[dev.dart];
    let page = shared.soc.frames.frame_size().bytes();
    let mut w = Worker {
        id,
        shared,
        device,
        dart,
        sid: dev.stream,
        base: dev.window.start + (id / ndev) as u64 * REGION + REGION / 2,
        page,
        slots: vec![None; SLOTS],
        rng: SmallRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        ops: BTreeMap::new(),
        labs,
        drv,
        mini_gen: id as u64,
    };
    let mut batch = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let _op = shared.gate.read();
        w.step();
        batch += 1;
        if batch == OPS_BATCH {
            shared.ops_done.fetch_add(batch, Ordering::Relaxed);
            batch = 0;
        }
    }
    // Leave nothing mapped: unmap and free everything (checked by the final check).
    let _op = shared.gate.read();
    while w.slots.iter().any(Option::is_some) {
        w.unmap();
    }
    w.lab_teardown();
    w.drv_teardown();
    w.ops
}

/// The `dartemu stress` command: runs with a progress bar on standard
/// error (as `mode` says), prints the report, and returns exit status 0 (no
/// violation), 1 (violations) or 2 (bad arguments).
pub fn main(config: &StressConfig, mode: crate::progress::Mode) -> std::process::ExitCode {
    let bar = mode.bar(config.seconds, "[{elapsed_precise}] {bar:30} {pos}/{len} s  {wide_msg}");
    let run = run_stress_with(config, &mut |t| {
        bar.set_position(t.elapsed.as_secs().min(config.seconds));
        bar.set_message(format!("{} operations, {} checks, {} breaches refused", t.ops, t.checks, t.breaches));
    });
    bar.finish();
    match run {
        Ok(report) => {
            print!("{report}");
            if report.violations.total() == 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("dartemu stress: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_stream_registers_are_per_stream_registers_of_streams_3_and_up() {
        assert!(spare_stream_register("TCR[3]"));
        assert!(spare_stream_register("TTBR[(15, 2)]"));
        assert!(!spare_stream_register("TCR[1]"));
        assert!(!spare_stream_register("TTBR[(2, 0)]"));
        assert!(!spare_stream_register("ENABLE_STREAMS[0]"));
        assert!(!spare_stream_register("ERROR"));
        assert!(!spare_stream_register("TCR[x]"));
    }

    /// A short run does every kind of operation, the old ones and the
    /// lab, mini-SoC and driver-table ones, and finds nothing: no illegal
    /// reach, no count mismatch, no lost write, no failed invariant.
    #[test]
    fn a_short_run_exercises_every_kind_without_violations() {
        let report = run_stress(&StressConfig { seconds: 3, threads: 2, seed: 7 }).unwrap();
        println!("{report}");
        assert_eq!(report.violations, Violations::default(), "{report}");
        for k in OpKind::ALL {
            let c = report.ops.get(&k).copied().unwrap_or_default();
            assert!(c.ok + c.refused > 0, "{} never ran:\n{report}", k.name());
        }
        assert!(report.checks >= 2, "{report}");
        assert_eq!(report.ops[&OpKind::Attack].ok, 0);
        assert_eq!(report.ops[&OpKind::MapRestricted].ok, 0);
        assert_eq!(report.ops[&OpKind::DmaUnmapped].ok, 0);
        // Stale hits happened (deferred DARTs serve them until the flush),
        // and none after it.
        assert!(report.ops[&OpKind::StaleRead].ok > 0, "{report}");
        assert_eq!(report.ops[&OpKind::FlushedRead].ok, 0, "{report}");
        // Every refusal the rules demand.
        assert_eq!(report.ops[&OpKind::FreePending].ok, 0, "{report}");
        assert_eq!(report.ops[&OpKind::FreeGranted].ok, 0, "{report}");
        assert_eq!(report.ops[&OpKind::MultiFree].ok, 0, "{report}");
        assert_eq!(report.ops[&OpKind::MultiRetype].ok, 0, "{report}");
        assert_eq!(report.ops[&OpKind::PanicBreach].ok, 0, "{report}");
        assert_eq!(report.ops[&OpKind::Halted].ok, 0, "{report}");
        // Typed TCR/TTBR calls on a locked DART are refused (`locked`).
        assert!(report.ops[&OpKind::LockedWrite].refused > 0, "{report}");
        // Each panic-mode breach halted its mini SoC, which was replaced.
        assert_eq!(report.halts, report.ops[&OpKind::PanicBreach].refused, "{report}");
        assert!(report.halts > 0, "{report}");
        assert!(report.refused_breaches > 0, "{report}");
        // The monitor: forgeries, overwrites, busy tables and counted frames
        // are all refused; honest driver work all succeeds.
        for k in [OpKind::PteForged, OpKind::PteOverwrite, OpKind::PteInUse, OpKind::PteFreeBusy] {
            let c = report.ops[&k];
            assert!(c.ok == 0 && c.refused > 0, "{}: {c:?}\n{report}", k.name());
        }
        for k in [
            OpKind::PteRegister,
            OpKind::PteLink,
            OpKind::PteLeaf,
            OpKind::PteClear,
            OpKind::PteFlush,
            OpKind::PteRelease,
            OpKind::PteReach,
        ] {
            let c = report.ops[&k];
            assert!(c.ok > 0 && c.refused == 0, "{}: {c:?}\n{report}", k.name());
        }
    }
}
