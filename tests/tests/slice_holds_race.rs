//! Slices hold their frames, threaded (docs/design.md §4, "Slices hold their
//! frames"; issue requirement (c)).
//!
//! Two device threads use one mapped `user-data` frame through their
//! stream port's vm-memory view: a reader takes a slice with `get_slices`
//! (and keeps only a sub-slice of it), a writer pops a device-writable
//! descriptor chain from a virtio split queue and builds a virtio-queue
//! `Writer` over it. Each keeps what it took for a random short time,
//! reading (writing) it several times, while the kernel thread unmaps the
//! frame (strict), tries to free it or to retype it `kernel-shared` until
//! one succeeds, then reuses it as `kernel-restricted` and writes a marker
//! into it through the aperture.
//!
//! The kernel publishes each step of a round (mapped, unmap returned,
//! frame reused) before the devices' next access, so every access is
//! classified against a shadow of the kernel's progress:
//! - no slice is handed out once the unmap has returned (the request
//!   faults `fault:no-pte`, at the exact IOVA and length);
//! - no access begins after the frame was reused, and none ever sees the
//!   marker: the reader sees the public data, always;
//! - a free or retype while a slice lives is refused `frame-busy` (reject
//!   mode), naming the frame, its type and exactly its holds as DART
//!   counts; between attempts the frame is still `user-data` with a DART
//!   count bracketed by `Dart::slice_holds` read before and after it;
//! - once the holds are gone the free (retype) succeeds at once, the late
//!   device writes are in the old frame, and the marker stays intact.
//!
//! The test shows that it raced: it counts the rounds in which a slice was
//! still held when the unmap returned, the refusals, and the device
//! accesses that began after the unmap returned, and prints them (run with
//! `--nocapture`).

use dart::vm_memory::{iommu, GuestAddress, GuestMemory, GuestMemoryError, Permissions};
use dart::{Dart, DartConfig, PortMemory, StreamConfig, Variant};
use frame_table::{Counts, Error, Frame, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::any::Any;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{DescriptorChain, Writer};

const PAGE: u64 = 16 << 10;
/// The writer's split queue, in one mapped `kernel-shared` page (which
/// also keeps the leaf table of `DATA` alive).
const RING: u64 = 0x10_0000;
/// The churned frame's IOVA.
const DATA: u64 = 0x20_0000;
/// The reader's range: `[DATA, DATA + READ_LEN)`.
const READ_LEN: usize = 64;
/// The writer's range: `[DATA + READ_LEN, DATA + LEN)`, in `CHUNK`s.
const WRITE_LEN: usize = 64;
const LEN: usize = READ_LEN + WRITE_LEN;
const CHUNK: usize = 16;
const PUBLIC: &[u8; CHUNK] = b"public data here";
const MARKER: &[u8; CHUNK] = b"kernel marker!!!";
const DEVICE: &[u8; CHUNK] = b"device wrote it.";

/// Rounds at least; then on until the race has shown itself (below),
/// at most `MAX_ROUNDS`.
const ROUNDS: u64 = 10_000;
const MAX_ROUNDS: u64 = 10 * ROUNDS;
/// Rounds in which a slice must have outlived the unmap.
const MIN_OVERLAPS: u64 = 100;
/// A full counts check (every frame) after every this many rounds.
const CHECK_EVERY: u64 = 256;

/// Spin bounds (iterations of `spin_loop`): the kernel's delay before
/// the unmap, a device's delay before it takes its slice, and its delay
/// before each access while it holds it.
const UNMAP_SPIN: u32 = 3_000;
const TAKE_SPIN: u32 = 1_000;
const HOLD_SPIN: u32 = 800;
/// How often a pause yields instead of spinning.
const YIELD_ONE_IN: u32 = 4;
/// Reads per held slice (the writer always writes its four chunks).
const MAX_READS: u32 = 8;

/// The kernel's progress in the current round, `round << 2 | step`.
const MAPPED: u64 = 0;
const UNMAPPED: u64 = 1;
const REUSED: u64 = 2;

fn spin(n: u32) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// A random short pause of up to `max` spins, or now and then a yield:
/// where the threads share a core (this machine has two, and may be busy
/// with more than this test) only a yield lets the other side run while a
/// slice is held.
fn pause(rng: &mut SmallRng, max: u32) {
    if rng.gen_ratio(1, YIELD_ONE_IN) {
        std::thread::yield_now();
    } else {
        spin(rng.gen_range(0..max));
    }
}

fn pattern(p: &[u8; CHUNK], len: usize) -> Vec<u8> {
    p.repeat(len / CHUNK)
}

/// Which devices take part in a round (a bit each).
const READER: u64 = 1;
const WRITER: u64 = 2;

/// What the kernel and the devices share.
struct Shared {
    barrier: Barrier,
    stop: AtomicBool,
    round: AtomicU64,
    /// The devices taking part in this round (`READER | WRITER`).
    active: AtomicU64,
    /// The round's participants that have reached the start line.
    arrived: AtomicU64,
    /// `round << 2 | MAPPED / UNMAPPED / REUSED`, stored (SeqCst) right
    /// after the kernel's step returned, loaded before each device access.
    phase: AtomicU64,
    /// Chunks the writer wrote or is writing in this round (the kernel
    /// checks the frame holds exactly these once the holds are gone).
    chunks_written: AtomicU64,
    d: DeviceCounts,
    /// What went wrong on a device thread (a panic inside a round).
    failures: Mutex<Vec<String>>,
}

/// The devices' figures.
#[derive(Default)]
struct DeviceCounts {
    /// Slices (a `Writer`) handed out, and requests that faulted.
    reader_slices: AtomicU64,
    reader_faults: AtomicU64,
    writer_slices: AtomicU64,
    writer_faults: AtomicU64,
    /// Reads (chunk writes) through a held slice, and those of them that
    /// began after the unmap had returned.
    reads: AtomicU64,
    late_reads: AtomicU64,
    writes: AtomicU64,
    late_writes: AtomicU64,
    /// Must stay 0: a slice handed out after the unmap returned, an access
    /// begun after the frame was reused, a read of the marker, a read of
    /// anything else but the public data.
    slices_after_unmap: AtomicU64,
    accesses_after_reuse: AtomicU64,
    marker_reads: AtomicU64,
    other_reads: AtomicU64,
    /// The first read of the marker, and of anything else, described.
    first_marker_read: Mutex<Option<String>>,
    first_other_read: Mutex<Option<String>>,
}

impl DeviceCounts {
    /// Shadow breaches so far (each must stay 0).
    fn breaches(&self) -> u64 {
        get(&self.slices_after_unmap)
            + get(&self.accesses_after_reuse)
            + get(&self.marker_reads)
            + get(&self.other_reads)
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

/// The start of a round's race, right after the barrier (which wakes its
/// sleepers one by one): spins until all `n` participants arrived, yielding
/// after a while (the machine may be busy with more than this test).
fn start_line(s: &Shared, n: u64) {
    s.arrived.fetch_add(1, Ordering::SeqCst);
    let mut spins = 0u32;
    while s.arrived.load(Ordering::SeqCst) < n {
        if spins < 2_000 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// The fault a request for `[iova, iova + len)` must get once the unmap
/// has cleared the PTE: `fault:no-pte` at `iova` for all of it.
fn assert_no_pte(e: &GuestMemoryError, iova: u64, len: usize) {
    match e {
        GuestMemoryError::IommuError(iommu::Error::CannotResolve { iova_range, reason }) => {
            assert_eq!((iova_range.base, iova_range.length), (GuestAddress(iova), len), "{e}");
            assert!(reason.starts_with("fault:no-pte: "), "{e}");
        }
        other => panic!("expected fault:no-pte at {iova:#x}, got {other:?}"),
    }
}

/// The reader's round: take a slice of `[DATA, DATA + READ_LEN)` (or
/// fault), keep a sub-slice of it, read it up to `MAX_READS` times with
/// random pauses, and check every byte against the public data.
fn reader_round(mem: &PortMemory, s: &Shared, rng: &mut SmallRng, round: u64) {
    let d = &s.d;
    spin(rng.gen_range(0..TAKE_SPIN));
    let before = s.phase.load(Ordering::SeqCst);
    let held = match mem.get_slices(GuestAddress(DATA), READ_LEN, Permissions::Read) {
        Err(e) => {
            assert_no_pte(&e, DATA, READ_LEN);
            bump(&d.reader_faults);
            return;
        }
        Ok(mut slices) => {
            let slice = slices.next().expect("one slice").unwrap();
            assert!(slices.next().is_none(), "one page, one slice");
            assert_eq!(slice.len(), READ_LEN);
            // The sub-slice alone keeps the hold once the slice is gone.
            slice.subslice(0, READ_LEN).unwrap()
        }
    };
    bump(&d.reader_slices);
    if before >= (round << 2 | UNMAPPED) {
        bump(&d.slices_after_unmap);
    }
    let mut buf = [0u8; READ_LEN];
    for _ in 0..rng.gen_range(1..=MAX_READS) {
        pause(rng, HOLD_SPIN);
        let now = s.phase.load(Ordering::SeqCst);
        assert_eq!(held.copy_to(&mut buf[..]), READ_LEN);
        bump(&d.reads);
        match now & 3 {
            UNMAPPED => bump(&d.late_reads),
            REUSED => bump(&d.accesses_after_reuse),
            _ => {}
        }
        let (count, first) = if buf.chunks(CHUNK).any(|c| c == MARKER) {
            (&d.marker_reads, &d.first_marker_read)
        } else if buf.chunks(CHUNK).any(|c| c != PUBLIC) {
            (&d.other_reads, &d.first_other_read)
        } else {
            continue;
        };
        bump(count);
        let step = ["mapped", "unmapped", "reused"][(now & 3) as usize];
        let what = format!("round {round}, frame {step} before the read: read {}", show(&buf));
        first.lock().unwrap().get_or_insert(what);
    }
}

/// The writer's chain for a round: the driver makes one device-writable
/// descriptor (at `DATA + READ_LEN`) available at the start of the split
/// queue at `RING` again, and the device pops it.
fn pop_chain<'m>(mock: &'m MockSplitQueue<'_, PortMemory>) -> DescriptorChain<&'m PortMemory> {
    mock.avail().idx().store(0);
    let desc = SplitDescriptor::new(DATA + READ_LEN as u64, WRITE_LEN as u32, VRING_DESC_F_WRITE as u16, 0);
    mock.build_desc_chain(&[RawDescriptor::from(desc)]).unwrap()
}

/// The writer's round: build a `Writer` over the popped `chain` (or
/// fault), and write its four chunks with random pauses.
fn writer_round(mem: &PortMemory, chain: DescriptorChain<&PortMemory>, s: &Shared, rng: &mut SmallRng, round: u64) {
    let d = &s.d;
    spin(rng.gen_range(0..TAKE_SPIN));
    let before = s.phase.load(Ordering::SeqCst);
    let mut writer = match Writer::new(mem, chain) {
        Err(virtio_queue::Error::GuestMemoryError(e)) => {
            assert_no_pte(&e, DATA + READ_LEN as u64, WRITE_LEN);
            bump(&d.writer_faults);
            return;
        }
        Err(e) => panic!("Writer::new: {e:?}"),
        Ok(w) => w,
    };
    bump(&d.writer_slices);
    if before >= (round << 2 | UNMAPPED) {
        bump(&d.slices_after_unmap);
    }
    for _ in 0..WRITE_LEN / CHUNK {
        pause(rng, HOLD_SPIN);
        let now = s.phase.load(Ordering::SeqCst);
        // Counted before the write: the `Writer` drops a buffer (and so
        // the hold) as soon as it is used up, inside the last write.
        s.chunks_written.fetch_add(1, Ordering::SeqCst);
        writer.write_all(DEVICE).unwrap();
        bump(&d.writes);
        match now & 3 {
            UNMAPPED => bump(&d.late_writes),
            REUSED => bump(&d.accesses_after_reuse),
            _ => {}
        }
    }
    assert_eq!(writer.available_bytes(), 0);
}

/// A device thread: between the two barriers of each kernel round, one
/// round of its own if the kernel made it active, until the kernel says
/// stop. A panic inside a round is recorded and the thread goes on meeting
/// the barriers, so the kernel never waits for a thread that is gone.
fn device(s: Arc<Shared>, mem: PortMemory, writer: bool, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mock = MockSplitQueue::create(&mem, GuestAddress(RING), 16);
    loop {
        s.barrier.wait();
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let round = s.round.load(Ordering::SeqCst);
        let active = s.active.load(Ordering::SeqCst);
        if active & if writer { WRITER } else { READER } == 0 {
            s.barrier.wait();
            continue;
        }
        let n = 1 + u64::from(active.count_ones());
        let mut started = false;
        let r = catch_unwind(AssertUnwindSafe(|| {
            if writer {
                // Ring work before the start line: the race is the data's.
                let chain = pop_chain(&mock);
                start_line(&s, n);
                started = true;
                writer_round(&mem, chain, &s, &mut rng, round);
            } else {
                start_line(&s, n);
                started = true;
                reader_round(&mem, &s, &mut rng, round);
            }
        }));
        if let Err(p) = r {
            if !started {
                start_line(&s, n);
            }
            let who = if writer { "writer" } else { "reader" };
            s.failures.lock().unwrap().push(format!("{who}, round {round}: {}", panic_text(&*p)));
        }
        s.barrier.wait();
    }
}

/// Every frame's DART counts are what the DART accounts for (PTEs, its
/// tables, slice holds, pending invalidations), no CPU mapping exists, no
/// hold is left, and nothing forbidden is reachable.
fn assert_consistent(frames: &FrameTable, dart: &Dart) {
    let dart_counts = dart.dart_counts();
    for (f, st) in frames.states() {
        let (mapped, pending) = dart_counts.get(&f).copied().unwrap_or((0, 0));
        let c = st.counts();
        assert_eq!((c.cpu_kernel, c.cpu_user), (0, 0), "{f} ({})", st.ty());
        assert_eq!((u64::from(c.dart), u64::from(c.pending)), (mapped, pending), "{f} ({})", st.ty());
        assert_eq!(dart.slice_holds(f), 0, "{f}: a hold outlived its round");
    }
    assert_eq!(frames.halted(), None);
    assert_eq!(dart.check_restricted_unreachable(), Ok(()));
}

/// Between reuse attempts: `f` is still `user-data`, unmapped, and its only
/// counts are DART counts, as many as its slice holds. Holds only drop
/// after the unmap returned, and a release gives back the registry's hold
/// and the frame's count under one lock, so the frame's count lies between
/// the holds read before and after it. Returns the count.
fn assert_held(frames: &FrameTable, dart: &Dart, f: Frame, round: u64) -> u32 {
    let before = dart.slice_holds(f);
    let st = frames.state(f).unwrap();
    let after = dart.slice_holds(f);
    assert_eq!(st.ty(), FrameType::UserData, "round {round}");
    let c = st.counts();
    assert_eq!(c, Counts { dart: c.dart, ..Counts::default() }, "round {round}");
    assert!(
        before >= u64::from(c.dart) && u64::from(c.dart) >= after && c.dart <= 2,
        "round {round}: {f} has {} DART counts, holds {before} then {after}",
        c.dart
    );
    c.dart
}

/// The kernel's figures.
#[derive(Default, Debug)]
struct KernelCounts {
    rounds: u64,
    /// Rounds in which the reader (the writer) took part.
    reader_rounds: u64,
    writer_rounds: u64,
    /// Rounds in which a slice was still held when the unmap returned, and
    /// those in which both devices held one.
    overlaps: u64,
    both_held: u64,
    /// Rounds in which the first reuse attempt was refused.
    refused_rounds: u64,
    free_refusals: u64,
    retype_refusals: u64,
    /// Rounds in which the frame was reused by a retype to `kernel-shared`
    /// (then freed) rather than a free.
    via_retype: u64,
    /// Must stay 0: rounds in which the old frame, once its holds were
    /// gone, did not hold the public data and exactly the writer's chunks,
    /// and rounds in which the marker changed after the frame was reused.
    old_frame_wrong: u64,
    marker_changed: u64,
    /// The first of those, described.
    first_wrong: Option<String>,
}

impl KernelCounts {
    fn breaches(&self) -> u64 {
        self.old_frame_wrong + self.marker_changed
    }
}

/// One round of the kernel: map a fresh `user-data` frame holding public
/// data, start the devices, unmap it, reuse it as `kernel-restricted` with
/// the marker as soon as the frame table lets it, and check it all once
/// the devices are done. One device or both take part, at random; the
/// others sit the round out at the second barrier, so most rounds race two
/// running threads on this two-core machine. `in_round` is set while the
/// devices are between the barriers.
fn kernel_round(
    frames: &FrameTable,
    dart: &Dart,
    s: &Shared,
    rng: &mut SmallRng,
    k: &mut KernelCounts,
    in_round: &mut bool,
) {
    let round = k.rounds + 1;
    let f = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    let pa = frames.pa_of(f).unwrap();
    frames.aperture_write(pa, &pattern(PUBLIC, LEN)).unwrap();
    dart.map(1, DATA, &[f], Perm::RW, None).unwrap();
    s.chunks_written.store(0, Ordering::SeqCst);
    let active = rng.gen_range(1..=READER | WRITER);
    k.reader_rounds += active & READER;
    k.writer_rounds += (active & WRITER) >> 1;
    s.active.store(active, Ordering::SeqCst);
    s.arrived.store(0, Ordering::SeqCst);
    s.round.store(round, Ordering::SeqCst);
    s.phase.store(round << 2 | MAPPED, Ordering::SeqCst);
    k.rounds = round;

    s.barrier.wait();
    *in_round = true;
    start_line(s, 1 + u64::from(active.count_ones()));
    pause(rng, UNMAP_SPIN);
    assert_eq!(dart.unmap(1, DATA, PAGE).unwrap(), 1);
    s.phase.store(round << 2 | UNMAPPED, Ordering::SeqCst);
    // No hold can be taken from here on: the counts only go down.
    match assert_held(frames, dart, f, round) {
        0 => {}
        1 => k.overlaps += 1,
        _ => {
            k.overlaps += 1;
            k.both_held += 1;
        }
    }

    // Reuse: free it, or retype it to `kernel-shared` and free it, as soon
    // as the frame table lets us; every refusal is exactly frame-busy.
    let mut first = true;
    loop {
        let counted = assert_held(frames, dart, f, round);
        if counted == 0 {
            // Quiescent: the old frame has the public data where the
            // reader looked, and exactly the writer's chunks after it.
            let mut now = vec![0u8; LEN];
            frames.aperture_read(pa, &mut now).unwrap();
            let written = s.chunks_written.load(Ordering::SeqCst) as usize;
            let mut want = pattern(PUBLIC, LEN);
            want[READ_LEN..READ_LEN + written * CHUNK].copy_from_slice(&pattern(DEVICE, written * CHUNK));
            if now != want {
                k.old_frame_wrong += 1;
                let what = format!("round {round}: the old frame holds {}, not {}", show(&now), show(&want));
                k.first_wrong.get_or_insert(what);
            }
        }
        let retype = rng.gen_bool(0.5);
        let holds_before = dart.slice_holds(f);
        let got = if retype { frames.retype(f, FrameType::KernelShared) } else { frames.free(f) };
        let holds_after = dart.slice_holds(f);
        match got {
            Ok(()) => {
                if retype {
                    k.via_retype += 1;
                    frames.free(f).unwrap();
                }
                break;
            }
            Err(e @ Error::FrameBusy { frame, ty: FrameType::UserData, counts }) => {
                assert_eq!(e.kind(), "frame-busy");
                assert_eq!(frame, f);
                assert_ne!(counted, 0, "round {round}: {f} had no counts, yet {e}");
                assert_eq!(counts, Counts { dart: counts.dart, ..Counts::default() }, "round {round}: {e}");
                let n = u64::from(counts.dart);
                assert!(
                    holds_before >= n && n >= holds_after && n >= 1,
                    "round {round}: {e}, holds {holds_before} then {holds_after}"
                );
                if retype {
                    k.retype_refusals += 1;
                } else {
                    k.free_refusals += 1;
                }
                if first {
                    k.refused_rounds += 1;
                }
            }
            Err(e) => panic!("round {round}: reuse of {f} (retype: {retype}) must succeed or be frame-busy, got {e:?}"),
        }
        first = false;
        // The holder may share this core.
        std::thread::yield_now();
    }

    // The same frame, now the kernel's: scrubbed, then the marker.
    frames.retype(f, FrameType::KernelRestricted).unwrap();
    frames.aperture_write(pa, &pattern(MARKER, LEN)).unwrap();
    s.phase.store(round << 2 | REUSED, Ordering::SeqCst);
    let st = frames.state(f).unwrap();
    assert_eq!((st.ty(), st.counts()), (FrameType::KernelRestricted, Counts::default()), "round {round}");
    assert_eq!(dart.slice_holds(f), 0);

    s.barrier.wait();
    *in_round = false;
    // The devices are done: the marker is intact (no late write landed),
    // the frame unchanged, and it goes back to the free list.
    let mut now = vec![0u8; LEN];
    frames.aperture_read(pa, &mut now).unwrap();
    if now != pattern(MARKER, LEN) {
        k.marker_changed += 1;
        k.first_wrong.get_or_insert(format!("round {round}: the marker became {}", show(&now)));
    }
    let st = frames.state(f).unwrap();
    assert_eq!((st.ty(), st.counts()), (FrameType::KernelRestricted, Counts::default()), "round {round}");
    assert!(!dart.dart_counts().contains_key(&f), "round {round}");
    frames.free(f).unwrap();
    if round.is_multiple_of(CHECK_EVERY) {
        assert_consistent(frames, dart);
    }
}

#[test]
fn devices_holding_slices_across_unmap_never_see_the_reused_frame() {
    let frames =
        Arc::new(FrameTable::new(FrameTableConfig::with_memory(8 << 20).on_violation(OnViolation::Reject)).unwrap());
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110)).unwrap());
    dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let ring = frames.alloc(FrameType::KernelShared, 1).unwrap();
    dart.map(1, RING, &ring, Perm::RW, None).unwrap();

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let s = Arc::new(Shared {
        barrier: Barrier::new(3),
        stop: AtomicBool::new(false),
        round: AtomicU64::new(0),
        active: AtomicU64::new(0),
        arrived: AtomicU64::new(0),
        phase: AtomicU64::new(0),
        chunks_written: AtomicU64::new(0),
        d: DeviceCounts::default(),
        failures: Mutex::new(Vec::new()),
    });
    let devices: Vec<_> = [false, true]
        .into_iter()
        .enumerate()
        .map(|(i, writer)| {
            let (s, mem) = (s.clone(), dart.port(1).unwrap().memory());
            std::thread::spawn(move || device(s, mem, writer, seed + 1 + i as u64))
        })
        .collect();

    let raced = |k: &KernelCounts| k.overlaps >= MIN_OVERLAPS && get(&s.d.late_reads) > 0 && get(&s.d.late_writes) > 0;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut k = KernelCounts::default();
    let mut in_round = false;
    let start = std::time::Instant::now();
    let kernel = catch_unwind(AssertUnwindSafe(|| {
        let go_on = |k: &KernelCounts| {
            (k.rounds < ROUNDS || (!raced(k) && k.rounds < MAX_ROUNDS))
                && s.failures.lock().unwrap().is_empty()
                && s.d.breaches() + k.breaches() == 0
        };
        while go_on(&k) {
            kernel_round(&frames, &dart, &s, &mut rng, &mut k, &mut in_round);
        }
    }));
    // Release the devices wherever they wait, then stop them.
    if in_round {
        s.barrier.wait();
    }
    s.stop.store(true, Ordering::SeqCst);
    s.barrier.wait();
    for t in devices {
        t.join().unwrap();
    }
    let elapsed = start.elapsed();

    let d = &s.d;
    println!(
        "seed {seed}: {} rounds in {elapsed:.2?} (reader in {}, writer in {}); a slice outlived the unmap \
         in {} rounds (overlap; both devices held one in {} of them); reuse refused in {} rounds: {} free and {} retype \
         refusals (frame-busy); {} reuses by retype",
        k.rounds,
        k.reader_rounds,
        k.writer_rounds,
        k.overlaps,
        k.both_held,
        k.refused_rounds,
        k.free_refusals,
        k.retype_refusals,
        k.via_retype
    );
    println!(
        "reader: {} slices, {} faults, {} reads of which {} began after the unmap returned; \
         writer: {} Writers, {} faults, {} chunk writes of which {} began after the unmap returned",
        get(&d.reader_slices),
        get(&d.reader_faults),
        get(&d.reads),
        get(&d.late_reads),
        get(&d.writer_slices),
        get(&d.writer_faults),
        get(&d.writes),
        get(&d.late_writes)
    );
    if let Err(p) = kernel {
        std::panic::resume_unwind(p);
    }

    assert_eq!(*s.failures.lock().unwrap(), Vec::<String>::new(), "device threads");
    // The shadow checks: the marker was never observed, nothing but the
    // public data was, and no slice or access outlived its guarantee.
    let first = |m: &Mutex<Option<String>>| m.lock().unwrap().clone().unwrap_or_default();
    assert_eq!(get(&d.marker_reads), 0, "a device read the marker; the first: {}", first(&d.first_marker_read));
    assert_eq!(
        get(&d.other_reads),
        0,
        "a device read other than the public data; the first: {}",
        first(&d.first_other_read)
    );
    let kernel_saw = k.first_wrong.clone().unwrap_or_default();
    assert_eq!(get(&d.accesses_after_reuse), 0, "a device access began after the frame was reused; {kernel_saw}");
    assert_eq!(get(&d.slices_after_unmap), 0, "a slice was handed out after the unmap returned");
    assert_eq!((k.old_frame_wrong, k.marker_changed), (0, 0), "{:?}", k.first_wrong);
    // The race happened.
    assert!(raced(&k), "the race did not happen often enough: {k:?}");
    assert!(k.free_refusals + k.retype_refusals > 0, "{k:?}");

    // The full state after it: every request either got its slice or
    // faulted no-pte, each fault counted once; every refusal was the
    // reject-mode answer to a breach; no hold is left and every count is
    // accounted for; only the ring is mapped.
    assert_eq!(get(&d.reader_slices) + get(&d.reader_faults), k.reader_rounds);
    assert_eq!(get(&d.writer_slices) + get(&d.writer_faults), k.writer_rounds);
    assert_eq!(get(&d.writes), 4 * get(&d.writer_slices));
    let stats = dart.stats().snapshot();
    let faults = get(&d.reader_faults) + get(&d.writer_faults);
    assert_eq!(stats.get("s1.faults"), Some(faults));
    assert_eq!(stats.get("s1.faults.no-pte"), Some(faults));
    assert_eq!(stats.get("s1.unmaps"), Some(k.rounds));
    assert_eq!(frames.violations(), k.free_refusals + k.retype_refusals);
    assert_consistent(&frames, &dart);
    assert_eq!(dart.mappings(1).unwrap().iter().map(|(iova, _)| *iova).collect::<Vec<_>>(), [RING]);
    let states: Vec<_> =
        frames.states().filter(|(_, st)| st.ty() != FrameType::Free).map(|(f, st)| (f, st.ty())).collect();
    let tables = dart.table_frames();
    assert_eq!(states.len(), 1 + tables.len(), "{states:?}");
    assert!(states.contains(&(ring[0], FrameType::KernelShared)));
    assert!(tables.iter().all(|t| states.contains(&(*t, FrameType::DartTable))));
}
