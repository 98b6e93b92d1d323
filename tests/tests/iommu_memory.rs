//! A device's view of a DART stream through `vm_memory::IommuMemory` over
//! `dart::StreamIommu`: data lands at the physical frames the stream maps,
//! unmapped and forbidden pages fault (latched in ERROR, counted, surfaced as
//! vm-memory errors, no data moved), and a strict unmap is seen by the next
//! access and waits for an access in flight.

use dart::{
    Dart, DartConfig, DartError, Fault, FaultKind, Invalidation, StreamConfig, StreamIommu, StreamMemory, Variant,
};
use frame_table::{Access, Frame, FrameSize, FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use vm_memory::iommu::{Error as IommuError, IovaRange};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError, Permissions};

const PAGE: u64 = 4096;
const BASE: u64 = 0x10_0000;

struct Rig {
    frames: Arc<FrameTable>,
    dart: Arc<Dart>,
    mem: StreamMemory,
}

fn rig(invalidation: Invalidation) -> Rig {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(64 * PAGE).frame_size(FrameSize::K4)).unwrap());
    let mut cfg = DartConfig::new("dart0", Variant::T8110);
    cfg.invalidation = invalidation;
    cfg.trusted = vec![3];
    let dart = Arc::new(Dart::new(frames.clone(), cfg).unwrap());
    dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let mem = dart::stream_memory(dart.clone(), 1).unwrap();
    Rig { frames, dart, mem }
}

impl Rig {
    fn user_frames(&self, n: u64) -> Vec<Frame> {
        self.frames.alloc(FrameType::UserData, n).unwrap()
    }
    fn pa(&self, f: Frame) -> u64 {
        self.frames.pa_of(f).unwrap()
    }
    fn phys(&self, pa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.frames.memory().read_slice(&mut v, GuestAddress(pa)).unwrap();
        v
    }
    fn dart_count(&self, f: Frame) -> u32 {
        self.frames.state(f).unwrap().counts().dart
    }
    fn stat(&self, path: &str) -> u64 {
        self.dart.stats().snapshot().get(path).unwrap()
    }
}

/// The `CannotResolve` range and reason of a vm-memory error, or a description of what else it was.
fn cannot_resolve(e: GuestMemoryError) -> (IovaRange, String) {
    match e {
        GuestMemoryError::IommuError(IommuError::CannotResolve { iova_range, reason }) => (iova_range, reason),
        other => panic!("expected CannotResolve, got {other:?}"),
    }
}

fn range(base: u64, length: usize) -> IovaRange {
    IovaRange { base: GuestAddress(base), length }
}

#[test]
fn writes_and_reads_reach_the_physical_frames() {
    let r = rig(Invalidation::Strict);
    let fr = r.user_frames(2);
    let (a, b) = (fr[0], fr[1]);
    // IOVA-adjacent, physically reversed: the access crosses two spans.
    r.dart.map(1, BASE, &[b], Perm::RW, None).unwrap();
    r.dart.map(1, BASE + PAGE, &[a], Perm::RW, None).unwrap();

    let data: Vec<u8> = (0..PAGE as usize).map(|i| (i * 7 + 1) as u8).collect();
    r.mem.write_slice(&data, GuestAddress(BASE + 0x800)).unwrap();
    assert_eq!(r.phys(r.pa(b), 0x800), vec![0; 0x800]);
    assert_eq!(r.phys(r.pa(b) + 0x800, 0x800), data[..0x800]);
    assert_eq!(r.phys(r.pa(a), 0x800), data[0x800..]);
    assert_eq!(r.phys(r.pa(a) + 0x800, 0x800), vec![0; 0x800]);

    // The other way: bytes put at the frame are what the device reads.
    r.frames.memory().write_slice(&[0xab, 0xcd, 0xef], GuestAddress(r.pa(a) + 0x900)).unwrap();
    let mut got = [0u8; 3];
    r.mem.read_slice(&mut got, GuestAddress(BASE + PAGE + 0x900)).unwrap();
    assert_eq!(got, [0xab, 0xcd, 0xef]);
    r.mem.write_obj(0x0102_0304_0506_0708u64, GuestAddress(BASE + 0x10)).unwrap();
    assert_eq!(r.phys(r.pa(b) + 0x10, 8), 0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(r.mem.read_obj::<u64>(GuestAddress(BASE + 0x10)).unwrap(), 0x0102_0304_0506_0708);

    // Every access went through the DART: 2 + 1 + 1 + 1 pages translated, no fault.
    assert_eq!(r.dart.error(), Default::default());
    assert_eq!(r.stat("s1.translations"), 5);
    assert_eq!(r.stat("s1.faults"), 0);
    assert_eq!((r.dart_count(a), r.dart_count(b)), (1, 1));
}

#[test]
fn unmapped_page_faults_and_moves_no_data() {
    let r = rig(Invalidation::Strict);
    let fr = r.user_frames(2);
    // A hole at BASE + PAGE between two mapped pages of one leaf table.
    r.dart.map(1, BASE, &fr[..1], Perm::RW, None).unwrap();
    r.dart.map(1, BASE + 2 * PAGE, &fr[1..], Perm::RW, None).unwrap();
    r.frames.memory().write_slice(&[0x11; PAGE as usize], GuestAddress(r.pa(fr[0]))).unwrap();

    let mut buf = [0xee_u8; 16];
    let (rng, reason) = cannot_resolve(r.mem.read_slice(&mut buf, GuestAddress(BASE + PAGE + 8)).unwrap_err());
    assert_eq!(rng, range(BASE + PAGE + 8, 16));
    assert!(reason.starts_with("fault:no-pte"), "{reason}");
    assert_eq!(buf, [0xee; 16]);
    let fault = Fault { kind: FaultKind::NoPte, stream: 1, iova: BASE + PAGE + 8, write: false };
    assert_eq!(r.dart.error().first, Some(fault));
    assert_eq!(r.dart.error().more, 0);
    assert!(r.dart.interrupt_pending());

    // A write that starts on a mapped page and runs into the hole: the fault
    // names the first unmapped byte, and nothing is written to the mapped page.
    let (rng, reason) =
        cannot_resolve(r.mem.write_slice(&[0x77; PAGE as usize], GuestAddress(BASE + 0x800)).unwrap_err());
    assert_eq!(rng, range(BASE + PAGE, 0x800));
    assert!(reason.starts_with("fault:no-pte"), "{reason}");
    assert_eq!(r.phys(r.pa(fr[0]), PAGE as usize), vec![0x11; PAGE as usize]);
    assert_eq!(r.dart.error().first, Some(fault), "the first fault stays latched");
    assert_eq!(r.dart.error().more, 1);
    assert_eq!(r.stat("s1.faults.no-pte"), 2);
    assert!(!r.mem.check_range(GuestAddress(BASE + PAGE), 1, Permissions::Read));
    assert_eq!(r.stat("s1.faults.no-pte"), 3);
}

#[test]
fn forbidden_pages_fault() {
    let r = rig(Invalidation::Strict);
    let secret = r.frames.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
    r.frames.memory().write_slice(&[0x5a; 64], GuestAddress(r.pa(secret))).unwrap();
    let fr = r.user_frames(3);

    // A kernel-restricted frame cannot be mapped, so the device cannot reach it.
    let refused = r.dart.map(1, BASE, &[secret], Perm::RW, None).unwrap_err();
    assert_eq!(
        refused,
        DartError::Frame(frame_table::Error::ForbiddenType {
            frame: secret,
            ty: FrameType::KernelRestricted,
            access: Access::Dart,
            perm: Perm::RW
        })
    );
    assert_eq!(r.dart_count(secret), 0);
    r.dart.map(1, BASE + PAGE, &fr[..1], Perm::RW, None).unwrap();
    let mut buf = [0u8; 64];
    let (rng, reason) = cannot_resolve(r.mem.read_slice(&mut buf, GuestAddress(BASE)).unwrap_err());
    assert_eq!(rng, range(BASE, 64));
    assert!(reason.starts_with("fault:no-pte"), "{reason}");
    assert_eq!(buf, [0; 64]);

    // A read-only page refuses writes; ReadWrite checks both directions.
    r.dart.clear_error();
    r.dart.map(1, BASE + 2 * PAGE, &fr[1..2], Perm::R, None).unwrap();
    let ro = BASE + 2 * PAGE;
    let (rng, reason) = cannot_resolve(r.mem.write_slice(&[1; 8], GuestAddress(ro)).unwrap_err());
    assert_eq!((rng, reason.starts_with("fault:write")), (range(ro, 8), true), "{reason}");
    assert_eq!(r.phys(r.pa(fr[1]), 8), [0; 8]);
    assert_eq!(r.dart.error().first, Some(Fault { kind: FaultKind::Write, stream: 1, iova: ro, write: true }));
    assert!(r.mem.check_range(GuestAddress(ro), 8, Permissions::Read));
    assert!(!r.mem.check_range(GuestAddress(ro), 8, Permissions::ReadWrite));
    let e = r.mem.get_slices(GuestAddress(ro), 8, Permissions::ReadWrite).err().unwrap();
    assert!(cannot_resolve(e).1.starts_with("fault:write"));
    assert_eq!(r.stat("s1.faults.write"), 3);

    // A write-only page refuses reads (and `Permissions::No` probes, checked as reads).
    r.dart.map(1, BASE + 3 * PAGE, &fr[2..3], Perm::W, None).unwrap();
    let wo = BASE + 3 * PAGE;
    r.mem.write_slice(&[9; 8], GuestAddress(wo)).unwrap();
    assert_eq!(r.phys(r.pa(fr[2]), 8), [9; 8]);
    let mut got = [0u8; 8];
    let (_, reason) = cannot_resolve(r.mem.read_slice(&mut got, GuestAddress(wo)).unwrap_err());
    assert!(reason.starts_with("fault:read"), "{reason}");
    assert_eq!(got, [0; 8]);
    assert!(!r.mem.check_range(GuestAddress(wo), 8, Permissions::No));
    assert_eq!(r.stat("s1.faults.read"), 2);
}

#[test]
fn strict_unmap_is_seen_by_the_next_access() {
    let r = rig(Invalidation::Strict);
    let fr = r.user_frames(2);
    r.dart.map(1, BASE, &fr, Perm::RW, None).unwrap();
    r.mem.write_slice(&[0x42; 32], GuestAddress(BASE)).unwrap();
    let mut buf = [0u8; 32];
    r.mem.read_slice(&mut buf, GuestAddress(BASE)).unwrap();
    assert_eq!(buf, [0x42; 32]);
    assert!(r.dart.iotlb_entries(1).unwrap().iter().any(|(iova, _)| *iova == BASE), "the page is IOTLB-hot");

    assert_eq!(r.dart.unmap(1, BASE, PAGE), Ok(1));
    assert_eq!(r.dart_count(fr[0]), 0, "strict unmap released the frame");
    let (rng, reason) = cannot_resolve(r.mem.read_slice(&mut buf, GuestAddress(BASE)).unwrap_err());
    assert_eq!(rng, range(BASE, 32));
    assert!(reason.starts_with("fault:no-pte"), "{reason}");
    assert_eq!(r.dart.error().first, Some(Fault { kind: FaultKind::NoPte, stream: 1, iova: BASE, write: false }));
    // Nothing reaches the frame any more: it can be freed.
    r.frames.free(fr[0]).unwrap();
    // The neighbour is untouched.
    r.mem.read_slice(&mut buf, GuestAddress(BASE + PAGE)).unwrap();
    assert_eq!(r.dart_count(fr[1]), 1);
}

#[test]
fn strict_unmap_waits_for_an_access_in_flight() {
    let r = rig(Invalidation::Strict);
    let fr = r.user_frames(2);
    r.dart.map(1, BASE, &fr, Perm::RW, None).unwrap();
    r.frames.memory().write_slice(&[0x3c; 64], GuestAddress(r.pa(fr[0]))).unwrap();

    // The slice iterator holds the translation (the DMA is in flight) until dropped.
    let mut slices = r.mem.get_slices(GuestAddress(BASE), 64, Permissions::Read).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let unmapper = {
        let (dart, done) = (r.dart.clone(), done.clone());
        std::thread::spawn(move || {
            let res = dart.unmap(1, BASE, PAGE);
            done.store(true, Ordering::SeqCst);
            res
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!done.load(Ordering::SeqCst), "strict unmap returned while a DMA through the page was in flight");
    let slice = slices.next().unwrap().unwrap();
    let mut got = [0u8; 64];
    slice.copy_to(&mut got[..]);
    assert_eq!(got, [0x3c; 64]);
    assert_eq!(r.dart_count(fr[0]), 1, "the count is held while the DMA is in flight");
    drop(slices);
    assert_eq!(unmapper.join().unwrap(), Ok(1));
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(r.dart_count(fr[0]), 0);
    assert!(r.mem.read_slice(&mut got, GuestAddress(BASE)).is_err());
}

#[test]
fn odd_inputs_are_errors_not_panics() {
    let r = rig(Invalidation::Strict);
    assert_eq!(StreamIommu::new(r.dart.clone(), 99).unwrap_err(), DartError::NoSuchStream { sid: 99, streams: 16 });
    assert!(dart::stream_memory(r.dart.clone(), 16).is_err());

    // Empty accesses succeed without touching the DART, wherever they are.
    assert_eq!(r.mem.read(&mut [], GuestAddress(u64::MAX)).unwrap(), 0);
    assert_eq!(r.mem.write(&[], GuestAddress(BASE)).unwrap(), 0);
    assert_eq!(r.stat("s1.translations"), 0);

    // An overflowing range is refused, with nothing latched.
    let (rng, reason) = cannot_resolve(r.mem.read_slice(&mut [0u8; 16], GuestAddress(u64::MAX - 4)).unwrap_err());
    assert_eq!(rng, range(u64::MAX - 4, 16));
    assert!(reason.starts_with("bad-range"), "{reason}");
    assert_eq!(r.dart.error(), Default::default());

    // A disabled stream faults.
    let m2 = dart::stream_memory(r.dart.clone(), 2).unwrap();
    let (_, reason) = cannot_resolve(m2.read_slice(&mut [0u8; 4], GuestAddress(BASE)).unwrap_err());
    assert!(reason.starts_with("fault:stream-disabled"), "{reason}");
    assert_eq!(
        r.dart.error().first,
        Some(Fault { kind: FaultKind::StreamDisabled, stream: 2, iova: BASE, write: false })
    );

    // A bypassed (trusted) stream has no translation to hand out.
    r.dart.set_stream_config(3, StreamConfig { bypass: true, ..StreamConfig::TRANSLATING }).unwrap();
    let m3 = dart::stream_memory(r.dart.clone(), 3).unwrap();
    match m3.read_slice(&mut [0u8; 4], GuestAddress(BASE)).unwrap_err() {
        GuestMemoryError::IommuError(IommuError::IommuMisconfigured { reason }) => {
            assert!(reason.starts_with("bypass-denied"), "{reason}")
        }
        other => panic!("expected IommuMisconfigured, got {other:?}"),
    }
}

#[test]
fn deferred_unmap_keeps_serving_until_a_flush() {
    let r = rig(Invalidation::Deferred);
    let fr = r.user_frames(2);
    r.dart.map(1, BASE, &fr, Perm::RW, None).unwrap();
    r.mem.write_slice(&[7; 8], GuestAddress(BASE)).unwrap();
    assert_eq!(r.dart.unmap(1, BASE, PAGE), Ok(1));
    // The stale IOTLB entry still serves (deferred mode, docs/design.md §3) and the
    // frame is pending invalidation, not free to retype.
    let mut got = [0u8; 8];
    r.mem.read_slice(&mut got, GuestAddress(BASE)).unwrap();
    assert_eq!(got, [7; 8]);
    assert_eq!(r.frames.state(fr[0]).unwrap().counts().pending, 1);
    r.dart.flush(Some(1)).unwrap();
    assert!(r.mem.read_slice(&mut got, GuestAddress(BASE)).is_err());
    assert_eq!(r.frames.state(fr[0]).unwrap().counts().pending, 0);
}

/// The race of `dart/tests/unmap_race.rs`, with the device on vm-memory: a
/// device thread reads and writes one IOVA through `IommuMemory` while the
/// kernel maps a fresh frame there, unmaps it (strict), frees it, retypes it
/// `kernel-restricted` and puts a secret in it. No device access may see the
/// secret or change it. (A stress check of the whole path: a view that
/// dropped its translation before the copy opens a window of nanoseconds,
/// which this race rarely hits; `strict_unmap_waits_for_an_access_in_flight`
/// is the test that pins the guard down.)
#[test]
fn no_iommu_memory_access_reaches_a_frame_after_strict_unmap_returns() {
    const ROUNDS: u64 = 20_000;
    const SECRET: u8 = 0x5a;
    const DEVICE: u8 = 0xa5;
    let r = rig(Invalidation::Strict);
    // A neighbour keeps the leaf table alive, so the walk reaches the PTE.
    let neighbour = r.user_frames(1);
    r.dart.map(1, BASE + PAGE, &neighbour, Perm::R, None).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let device = {
        let (mem, stop, ok) = (r.mem.clone(), stop.clone(), ok.clone());
        std::thread::spawn(move || {
            let mut leaks = 0u64;
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if mem.read_slice(&mut buf, GuestAddress(BASE)).is_ok() {
                    ok.fetch_add(1, Ordering::Relaxed);
                    leaks += u64::from(buf.contains(&SECRET));
                }
                if mem.write_slice(&[DEVICE; 64], GuestAddress(BASE + 64)).is_ok() {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
            leaks
        })
    };
    // At least ROUNDS rounds, and on until the device has got through often
    // enough for the race to mean something (bounded, never a hang).
    let (mut late_writes, mut rounds) = (0u64, 0u64);
    while rounds < ROUNDS || (ok.load(Ordering::Relaxed) < 1000 && rounds < 100 * ROUNDS) {
        rounds += 1;
        let f = r.user_frames(1)[0];
        r.dart.map(1, BASE, &[f], Perm::RW, None).unwrap();
        std::hint::spin_loop();
        assert_eq!(r.dart.unmap(1, BASE, PAGE), Ok(1));
        r.frames.free(f).unwrap();
        r.frames.retype(f, FrameType::KernelRestricted).unwrap();
        let pa = r.pa(f);
        r.frames.aperture_write(pa, &[SECRET; 128]).unwrap();
        let mut back = [0u8; 128];
        r.frames.aperture_read(pa, &mut back).unwrap();
        late_writes += u64::from(back != [SECRET; 128]);
        r.frames.free(f).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let leaks = device.join().unwrap();
    assert_eq!(leaks, 0, "a device read saw the secret");
    assert_eq!(late_writes, 0, "a device write reached the frame after unmap");
    assert!(ok.load(Ordering::Relaxed) >= 1000, "the race happened ({rounds} rounds)");
    assert_eq!(r.frames.halted(), None);
    assert_eq!(r.dart.check_restricted_unreachable(), Ok(()));
}
