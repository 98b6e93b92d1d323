//! The monitor, threaded (`dart::mapper::monitor`, M4 and M6; the loom
//! models `monitor_clear_vs_inflight_dma` and its caught variant are the
//! exhaustive half of this check).
//!
//! A driver thread and a DMA thread start each round from a
//! `std::sync::Barrier`. The driver writes a leaf (`Dart::write_table_entry`)
//! naming a fresh `user-data` frame that holds a marker; the DMA thread reads
//! (and writes, beside the marker) through it over and over, while the
//! driver clears the leaf, tries to free the frame (refused `frame-busy`:
//! its count is pending, M6), flushes the stream (`Dart::flush`), frees the
//! frame (now it succeeds), retypes it `kernel-restricted` and writes a
//! secret into it through the aperture. Every step is published (`phase`)
//! right before and after it, and every DMA reads the phase before and after
//! itself, so each access is classified against the driver's progress:
//! - every read either returns the marker or faults `fault:no-pte`; none
//!   ever returns the secret or anything else;
//! - no access begun after the flush returned succeeds, and none faults
//!   before the clear began (an access after the clear may still succeed:
//!   the IOTLB serves the cleared leaf until the flush, which the contract
//!   allows, and the frame stays counted meanwhile);
//! - the old frame holds exactly the marker and the device's writes once the
//!   flush returned, and the secret stays intact after the reuse;
//! - after every round the frame's counts are gone, nothing forbidden is
//!   reachable and the IOTLB is coherent (`check_restricted_unreachable`,
//!   `check_iotlb_coherent`); every few rounds every frame's counts are
//!   exactly what the DART accounts for.
//!
//! On t8020 and t8110, each on a strict and on a deferred DART (the monitor
//! behaves alike on both). The test shows that it raced: the DMA thread
//! publishes each access's sequence number (odd while the access is in
//! flight), which the driver reads right before and after its clear and its
//! flush; a round overlapped when the clear or the flush began while a DMA
//! was in flight. It prints those rounds, the rounds in which the DMA
//! thread saw both a success and a fault, and the stale successes between
//! the clear and the flush (run with `--nocapture`), and asserts overlap in
//! at least `MIN_OVERLAPS` rounds, running on past `ROUNDS` (to a cap)
//! until it has them.

use dart::{Dart, DartError, Invalidation, Variant};
use frame_table::{Counts, Error, Frame, FrameTable, FrameType, OnViolation};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};

mod common;
use common::Rig;

const SID: u32 = 1;
/// The churned leaf's index in the leaf table (its IOVA is `IDX` pages).
const IDX: u64 = 2;
/// The DMA reads `[0, READ_LEN)` of the page (long enough that the clear or
/// the flush often begins while one is in flight) and writes the next
/// `WRITE_LEN`.
const READ_LEN: usize = 8192;
const WRITE_LEN: usize = 64;
const LEN: usize = READ_LEN + WRITE_LEN;
const MARKER: u8 = 0x3c;
const DEVICE: u8 = 0xa5;
const SECRET: u8 = 0x5a;

/// Rounds at least per configuration; then on until `MIN_OVERLAPS` rounds
/// overlapped (the clear or the flush began while a DMA was in flight) and
/// `MIN_MIXED` rounds saw a success and a fault, at most `MAX_ROUNDS` or
/// `MAX_SECONDS`. On a loaded two-core machine the two threads often share
/// a core, and a DMA is then in flight at the clear only if the scheduler
/// preempted it mid-access: the test asserts at least one such round, and
/// `MIN_MIXED` of the others.
const ROUNDS: u64 = 2_000;
const MAX_ROUNDS: u64 = 25 * ROUNDS;
const MAX_SECONDS: u64 = 10;
const MIN_OVERLAPS: u64 = 50;
const MIN_MIXED: u64 = 100;
/// A full counts check (every frame) after every this many rounds.
const CHECK_EVERY: u64 = 256;
/// Spin bounds: the driver's pause before the clear and between the clear
/// and the flush; the DMA thread's pause between accesses (a spin, and a
/// yield only every `DMA_YIELD_EVERY` accesses: the DMA thread keeps its
/// core busy, so that a clear on the other core meets a DMA in flight).
const CLEAR_SPIN: u32 = 4_000;
const FLUSH_SPIN: u32 = 2_000;
const DMA_SPIN: u32 = 64;
const DMA_YIELD_EVERY: u64 = 64;
/// Accesses per round at most (the DMA thread stops at the reuse anyway).
const MAX_ACCESSES: u64 = 100_000;

/// The driver's progress in the current round, `round << 3 | step`.
const MAPPED: u64 = 0;
const CLEARING: u64 = 1;
const CLEARED: u64 = 2;
const FLUSHING: u64 = 3;
const FLUSHED: u64 = 4;
const REUSED: u64 = 5;

fn spin(n: u32) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// A random short pause of up to `max` spins, or now and then a yield
/// (where the two threads share a core only a yield lets the other run).
fn pause(rng: &mut SmallRng, max: u32) {
    if rng.gen_ratio(1, 8) {
        std::thread::yield_now();
    } else {
        spin(rng.gen_range(0..max));
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// The DMA thread's figures for one configuration.
#[derive(Default)]
struct DmaCounts {
    reads_ok: AtomicU64,
    writes_ok: AtomicU64,
    faults: AtomicU64,
    /// Rounds in which the DMA thread saw both a success and a fault: the
    /// clear and the flush landed between its accesses (overlap).
    mixed_rounds: AtomicU64,
    /// Accesses begun before the clear began that ended after it returned,
    /// and those begun before the flush began that ended after it returned
    /// (the flush's in-flight wait may have waited for them).
    across_clear: AtomicU64,
    across_flush: AtomicU64,
    /// Successful accesses begun after the clear returned (before the
    /// flush): the IOTLB served the cleared leaf.
    stale_hits: AtomicU64,
    /// Must stay 0: a read of the secret, a read of anything but the
    /// marker, a success begun after the flush returned, a fault ended
    /// before the clear began, a fault of another kind, an access begun
    /// after the reuse that succeeded.
    secret_reads: AtomicU64,
    other_reads: AtomicU64,
    after_flush: AtomicU64,
    early_faults: AtomicU64,
    other_faults: AtomicU64,
    /// The first breach, described.
    first_breach: Mutex<Option<String>>,
}

impl DmaCounts {
    fn breaches(&self) -> u64 {
        get(&self.secret_reads)
            + get(&self.other_reads)
            + get(&self.after_flush)
            + get(&self.early_faults)
            + get(&self.other_faults)
    }

    fn breach(&self, c: &AtomicU64, what: String) {
        bump(c);
        self.first_breach.lock().unwrap().get_or_insert(what);
    }
}

/// What the driver and the DMA thread share.
struct Shared {
    barrier: Barrier,
    stop: AtomicBool,
    round: AtomicU64,
    arrived: AtomicU64,
    /// `round << 3 | step`, stored (SeqCst) right before / after the step.
    phase: AtomicU64,
    /// The DMA thread's accesses: `2n + 1` while its `n`th access of the
    /// round is in flight (stored right before it), `2n + 2` once it
    /// returned. The driver reads it right before and after its clear and
    /// its flush.
    access: AtomicU64,
    d: DmaCounts,
    failures: Mutex<Vec<String>>,
}

/// The start of a round's race, right after the barrier (which wakes its
/// sleepers one by one): spins until both threads arrived, then yields.
fn start_line(s: &Shared) {
    s.arrived.fetch_add(1, Ordering::SeqCst);
    let mut spins = 0u32;
    while s.arrived.load(Ordering::SeqCst) < 2 {
        if spins < 2_000 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// One DMA round: read and write through the churned page until the
/// driver reused the frame, classifying every access by the phases read
/// before and after it.
fn dma_round(dart: &Dart, s: &Shared, rng: &mut SmallRng, round: u64, iova: u64) {
    let d = &s.d;
    let at = |step| round << 3 | step;
    let (mut ok, mut faulted) = (false, false);
    let mut buf = [0u8; READ_LEN];
    let data = [DEVICE; WRITE_LEN];
    for n in 0..MAX_ACCESSES {
        let before = s.phase.load(Ordering::SeqCst);
        let write = n % 2 == 1;
        s.access.store(2 * n + 1, Ordering::SeqCst);
        let got =
            if write { dart.dma_write(SID, iova + READ_LEN as u64, &data) } else { dart.dma_read(SID, iova, &mut buf) };
        s.access.store(2 * n + 2, Ordering::SeqCst);
        let after = s.phase.load(Ordering::SeqCst);
        if before < at(CLEARING) && after >= at(CLEARED) {
            bump(&d.across_clear);
        }
        if before < at(FLUSHING) && after >= at(FLUSHED) {
            bump(&d.across_flush);
        }
        let what = if write { "write" } else { "read" };
        match got {
            Ok(()) => {
                ok = true;
                bump(if write { &d.writes_ok } else { &d.reads_ok });
                if before >= at(FLUSHED) {
                    d.breach(&d.after_flush, format!("round {round}: a {what} begun after the flush succeeded"));
                } else if before >= at(CLEARED) {
                    bump(&d.stale_hits);
                }
                if !write {
                    if let Some(i) = buf.iter().position(|&b| b == SECRET) {
                        let phases = format!("phases {:#x} before, {after:#x} after", before);
                        d.breach(&d.secret_reads, format!("round {round}: read the secret at byte {i} ({phases})"));
                    } else if let Some(i) = buf.iter().position(|&b| b != MARKER) {
                        let what = format!("round {round}: read {:#x} at byte {i}, not the marker", buf[i]);
                        d.breach(&d.other_reads, what);
                    }
                }
            }
            Err(DartError::Fault(f)) => {
                faulted = true;
                bump(&d.faults);
                let e = DartError::Fault(f);
                if e.kind() != "fault:no-pte" {
                    d.breach(&d.other_faults, format!("round {round}: a {what} faulted {e}"));
                }
                if after < at(CLEARING) {
                    d.breach(&d.early_faults, format!("round {round}: a {what} faulted before the clear: {e}"));
                }
            }
            Err(e) => panic!("round {round}: a {what} failed with {e:?}"),
        }
        if before >= at(REUSED) {
            break;
        }
        if n % DMA_YIELD_EVERY == DMA_YIELD_EVERY - 1 {
            // Where the driver shares this core, let it get on.
            std::thread::yield_now();
        } else {
            spin(rng.gen_range(0..DMA_SPIN));
        }
    }
    if ok && faulted {
        bump(&d.mixed_rounds);
    }
}

/// The DMA thread: one round between the two barriers of each driver
/// round, until the driver says stop. A panic inside a round is recorded
/// and the thread goes on meeting the barriers.
fn dma_thread(dart: Arc<Dart>, s: Arc<Shared>, iova: u64, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    loop {
        s.barrier.wait();
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let round = s.round.load(Ordering::SeqCst);
        start_line(&s);
        let r = catch_unwind(AssertUnwindSafe(|| dma_round(&dart, &s, &mut rng, round, iova)));
        if let Err(p) = r {
            s.failures.lock().unwrap().push(format!("DMA, round {round}: {}", panic_text(&*p)));
        }
        s.barrier.wait();
    }
}

/// The driver's figures.
#[derive(Default, Debug)]
struct DriverCounts {
    rounds: u64,
    /// Rounds in which the clear (the flush) began while a DMA access was in
    /// flight, and those in which that same access was still in flight when
    /// it returned.
    clear_began_in_flight: u64,
    clear_inside_one_access: u64,
    flush_began_in_flight: u64,
    flush_inside_one_access: u64,
    /// Rounds in which the clear or the flush began while a DMA access was
    /// in flight (overlap).
    overlaps: u64,
    /// Frees refused `frame-busy` between the clear and the flush.
    refused_frees: u64,
}

/// A driver tree for `SID` (`common::Rig`) on a reject-mode frame table.
fn rig(variant: Variant, invalidation: Invalidation) -> Rig {
    Rig::new(variant, invalidation, OnViolation::Reject, SID)
}

/// Every frame's DART counts are what the DART accounts for (its tables,
/// leaves, pending clears), no hold is left, nothing forbidden is reachable
/// and the IOTLB is coherent.
fn assert_consistent(frames: &FrameTable, dart: &Dart) {
    let dart_counts = dart.dart_counts();
    for (f, st) in frames.states() {
        let (mapped, pending) = dart_counts.get(&f).copied().unwrap_or((0, 0));
        let c = st.counts();
        assert_eq!((c.cpu_kernel, c.cpu_user), (0, 0), "{f} ({})", st.ty());
        assert_eq!((u64::from(c.dart), u64::from(c.pending)), (mapped, pending), "{f} ({})", st.ty());
        assert_eq!(dart.slice_holds(f), 0, "{f}");
    }
    assert_eq!(frames.halted(), None);
    assert_eq!(dart.check_restricted_unreachable(), Ok(()));
    assert_eq!(dart.check_iotlb_coherent(), Ok(()));
}

/// Runs `step` and says whether it began while a DMA access was in flight,
/// and whether that same access was still in flight when it returned.
fn in_flight(s: &Shared, step: impl FnOnce()) -> (bool, bool) {
    let before = s.access.load(Ordering::SeqCst);
    step();
    let after = s.access.load(Ordering::SeqCst);
    (before % 2 == 1, before % 2 == 1 && after == before)
}

/// One driver round (see the module doc). `in_round` is set while the DMA
/// thread is between the barriers.
fn driver_round(r: &Rig, s: &Shared, rng: &mut SmallRng, k: &mut DriverCounts, in_round: &mut bool) {
    let (frames, dart) = (&r.frames, &r.dart);
    let round = k.rounds + 1;
    let at = |step| round << 3 | step;
    let f = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    let pa = frames.pa_of(f).unwrap();
    frames.aperture_write(pa, &[MARKER; LEN]).unwrap();
    dart.write_table_entry(r.leaves, IDX, r.leaf(pa, true, true)).unwrap();
    assert_eq!(frames.state(f).unwrap().counts(), Counts { dart: 1, ..Counts::default() }, "round {round}");
    s.arrived.store(0, Ordering::SeqCst);
    s.access.store(0, Ordering::SeqCst);
    s.round.store(round, Ordering::SeqCst);
    s.phase.store(at(MAPPED), Ordering::SeqCst);
    k.rounds = round;

    s.barrier.wait();
    *in_round = true;
    start_line(s);
    pause(rng, CLEAR_SPIN);
    s.phase.store(at(CLEARING), Ordering::SeqCst);
    let clear = in_flight(s, || dart.write_table_entry(r.leaves, IDX, 0).unwrap());
    s.phase.store(at(CLEARED), Ordering::SeqCst);
    // (M6) Pending until the flush: counted, not freeable.
    assert_eq!(frames.state(f).unwrap().counts(), Counts { pending: 1, ..Counts::default() }, "round {round}");
    match frames.free(f) {
        Err(e @ Error::FrameBusy { frame, ty: FrameType::UserData, counts }) => {
            assert_eq!((e.kind(), frame, counts), ("frame-busy", f, Counts { pending: 1, ..Counts::default() }));
            k.refused_frees += 1;
        }
        other => panic!("round {round}: a free before the flush must be frame-busy, got {other:?}"),
    }
    assert_eq!(dart.dart_counts().get(&f), Some(&(0, 1)), "round {round}");
    pause(rng, FLUSH_SPIN);
    s.phase.store(at(FLUSHING), Ordering::SeqCst);
    let flush = in_flight(s, || dart.flush(Some(SID)).unwrap());
    s.phase.store(at(FLUSHED), Ordering::SeqCst);
    k.clear_began_in_flight += u64::from(clear.0);
    k.clear_inside_one_access += u64::from(clear.1);
    k.flush_began_in_flight += u64::from(flush.0);
    k.flush_inside_one_access += u64::from(flush.1);
    k.overlaps += u64::from(clear.0 || flush.0);
    // Nothing reaches the frame now: its content is final (the marker and,
    // if a write went through, the device's bytes), and it frees at once.
    let mut now = [0u8; LEN];
    frames.aperture_read(pa, &mut now).unwrap();
    assert_eq!(now[..READ_LEN], [MARKER; READ_LEN], "round {round}");
    assert!(
        now[READ_LEN..] == [MARKER; WRITE_LEN] || now[READ_LEN..] == [DEVICE; WRITE_LEN],
        "round {round}: {now:x?}"
    );
    assert_eq!(frames.state(f).unwrap().counts(), Counts::default(), "round {round}");
    frames.free(f).unwrap();
    // Reused: the kernel's secret in the same frame.
    frames.retype(f, FrameType::KernelRestricted).unwrap();
    frames.aperture_write(pa, &[SECRET; LEN]).unwrap();
    s.phase.store(at(REUSED), Ordering::SeqCst);

    s.barrier.wait();
    *in_round = false;
    // The DMA thread is done: no late write landed after the flush.
    let mut now = [0u8; LEN];
    frames.aperture_read(pa, &mut now).unwrap();
    assert_eq!(now, [SECRET; LEN], "round {round}: the secret changed");
    let st = frames.state(f).unwrap();
    assert_eq!((st.ty(), st.counts()), (FrameType::KernelRestricted, Counts::default()), "round {round}");
    assert!(!dart.dart_counts().contains_key(&f), "round {round}");
    assert_eq!(dart.read_table_entry(r.leaves, IDX), Ok(0));
    assert_eq!(dart.check_restricted_unreachable(), Ok(()), "round {round}");
    assert_eq!(dart.check_iotlb_coherent(), Ok(()), "round {round}");
    frames.free(f).unwrap();
    if round.is_multiple_of(CHECK_EVERY) {
        assert_consistent(frames, dart);
    }
}

/// The race on one configuration; returns the line of figures it printed.
fn race(variant: Variant, invalidation: Invalidation, seed: u64) -> String {
    let what = format!("{variant} {invalidation:?}");
    let r = rig(variant, invalidation);
    let iova = IDX << r.dart.page_shift();
    let s = Arc::new(Shared {
        barrier: Barrier::new(2),
        stop: AtomicBool::new(false),
        round: AtomicU64::new(0),
        arrived: AtomicU64::new(0),
        phase: AtomicU64::new(0),
        access: AtomicU64::new(0),
        d: DmaCounts::default(),
        failures: Mutex::new(Vec::new()),
    });
    let dma = {
        let (dart, s) = (r.dart.clone(), s.clone());
        std::thread::spawn(move || dma_thread(dart, s, iova, seed + 1))
    };

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut k = DriverCounts::default();
    let mut in_round = false;
    let start = std::time::Instant::now();
    let driver = catch_unwind(AssertUnwindSafe(|| {
        let go_on = |k: &DriverCounts| {
            let raced = k.overlaps >= MIN_OVERLAPS && get(&s.d.mixed_rounds) >= MIN_MIXED;
            let capped = k.rounds >= MAX_ROUNDS || start.elapsed().as_secs() >= MAX_SECONDS;
            (k.rounds < ROUNDS || (!raced && !capped)) && s.failures.lock().unwrap().is_empty() && s.d.breaches() == 0
        };
        while go_on(&k) {
            driver_round(&r, &s, &mut rng, &mut k, &mut in_round);
        }
    }));
    // Release the DMA thread wherever it waits, then stop it.
    if in_round {
        s.barrier.wait();
    }
    s.stop.store(true, Ordering::SeqCst);
    s.barrier.wait();
    dma.join().unwrap();
    let d = &s.d;
    let line = format!(
        "{what}: {} rounds in {:.2?}; overlap (the clear or the flush began while a DMA was in flight) in {} rounds: \
         the clear in {} (all of it inside one DMA in {}), the flush in {} (all of it inside one DMA in {}); \
         a success and a fault in one round in {} rounds; \
         {} accesses bracketed the clear, {} the flush; {} stale successes between clear and flush; \
         {} reads and {} writes succeeded, {} faults; {} frees refused before the flush",
        k.rounds,
        start.elapsed(),
        k.overlaps,
        k.clear_began_in_flight,
        k.clear_inside_one_access,
        k.flush_began_in_flight,
        k.flush_inside_one_access,
        get(&d.mixed_rounds),
        get(&d.across_clear),
        get(&d.across_flush),
        get(&d.stale_hits),
        get(&d.reads_ok),
        get(&d.writes_ok),
        get(&d.faults),
        k.refused_frees,
    );
    eprintln!("{line}");
    if let Err(p) = driver {
        std::panic::resume_unwind(p);
    }
    assert_eq!(*s.failures.lock().unwrap(), Vec::<String>::new(), "{what}: DMA thread");
    let first = d.first_breach.lock().unwrap().clone().unwrap_or_default();
    assert_eq!(get(&d.secret_reads), 0, "{what}: a DMA read the secret; the first breach: {first}");
    assert_eq!(get(&d.other_reads), 0, "{what}: a DMA read other than the marker; the first breach: {first}");
    assert_eq!(get(&d.after_flush), 0, "{what}: a DMA begun after the flush succeeded; the first breach: {first}");
    assert_eq!(get(&d.early_faults), 0, "{what}: a DMA faulted before the clear; the first breach: {first}");
    assert_eq!(get(&d.other_faults), 0, "{what}: a fault other than no-pte; the first breach: {first}");
    // Every free before a flush was refused, and only those were violations.
    assert_eq!(k.refused_frees, k.rounds);
    assert_eq!(r.frames.violations(), k.refused_frees);
    // Every fault counted once, all no-pte.
    let stats = r.dart.stats().snapshot();
    assert_eq!(stats.get("s1.faults"), Some(get(&d.faults)), "{what}");
    assert_eq!(stats.get("s1.faults.no-pte"), Some(get(&d.faults)), "{what}");
    assert_consistent(&r.frames, &r.dart);
    // Only the two tables are left.
    let mut left: Vec<Frame> = r.frames.states().filter(|(_, st)| st.ty() != FrameType::Free).map(|(f, _)| f).collect();
    let mut tables = r.dart.table_frames();
    left.sort();
    tables.sort();
    assert_eq!(left, tables, "{what}");
    // The race happened.
    assert!(k.overlaps > 0, "{what}: no clear or flush began while a DMA was in flight: {line}");
    assert!(get(&d.mixed_rounds) >= MIN_MIXED, "{what}: the race did not happen often enough: {line}");
    line
}

#[test]
fn dma_never_reaches_a_cleared_leaf_frame_after_the_flush() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("seed {seed}");
    for variant in [Variant::T8020, Variant::T8110] {
        for invalidation in Invalidation::ALL {
            race(variant, invalidation, seed);
        }
    }
}
