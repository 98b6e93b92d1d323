//! A VMM's view: `dart::DartVfioDomain` driven only through
//! `Arc<dyn vfio_ioctls::VfioOps>` (map, DMA, unmap, refusals), with the
//! DART's tables and the frames' DART counts checked after each step.

use dart::{Dart, DartConfig, DartError, DartVfioDomain, Fault, FaultKind, StreamConfig, Variant, VfioDomainError};
use frame_table::{Access, Frame, FrameSize, FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;
use vfio_ioctls::{VfioError, VfioOps};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const PAGE: u64 = 4096;
const IOVA: u64 = 0x20_0000;

struct Rig {
    frames: Arc<FrameTable>,
    dart: Arc<Dart>,
    ops: Arc<dyn VfioOps>,
}

fn rig() -> Rig {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(64 * PAGE).frame_size(FrameSize::K4)).unwrap());
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8020)).unwrap());
    dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let ops: Arc<dyn VfioOps> = Arc::new(DartVfioDomain::new(dart.clone(), 1).unwrap());
    Rig { frames, dart, ops }
}

impl Rig {
    /// `n` physically contiguous frames of type `ty`.
    fn frames_of(&self, ty: FrameType, n: u64) -> Vec<Frame> {
        let fr = self.frames.alloc(ty, n).unwrap();
        for w in fr.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 1, "test precondition: contiguous frames");
        }
        fr
    }
    fn pa(&self, f: Frame) -> u64 {
        self.frames.pa_of(f).unwrap()
    }
    /// The host address of frame `f`, as a VMM would pass it.
    fn host(&self, f: Frame) -> *mut u8 {
        self.frames.memory().get_host_address(GuestAddress(self.pa(f))).unwrap()
    }
    fn dart_count(&self, f: Frame) -> u32 {
        self.frames.state(f).unwrap().counts().dart
    }
    /// The typed reason of the last refusal, via the trait's `as_any`.
    fn last_error(&self) -> Option<VfioDomainError> {
        self.ops.as_any().downcast_ref::<DartVfioDomain>().unwrap().last_error()
    }
    fn map(&self, iova: u64, size: usize, host: *mut u8) -> Result<(), VfioError> {
        // SAFETY: `host` is inside the frame table's memory mapping, which
        // lives as long as `self.frames`; no Rust reference to it exists, and
        // the tests touch it only through `GuestMemoryMmap`.
        unsafe { self.ops.vfio_dma_map(iova, size, host) }
    }
}

fn map_errno(r: Result<(), VfioError>) -> i32 {
    match r {
        Err(VfioError::IommuDmaMap(e)) => e.errno(),
        other => panic!("expected IommuDmaMap, got {other:?}"),
    }
}

#[test]
fn map_dma_unmap_through_dyn_vfio_ops() {
    let r = rig();
    let fr = r.frames_of(FrameType::UserData, 2);
    r.map(IOVA, 2 * PAGE as usize, r.host(fr[0])).unwrap();
    assert_eq!((r.dart_count(fr[0]), r.dart_count(fr[1])), (1, 1));
    let leaves: Vec<(u64, u64, bool, bool)> =
        r.dart.mappings(1).unwrap().iter().map(|(iova, l)| (*iova, l.pa, l.read, l.write)).collect();
    assert_eq!(leaves, vec![(IOVA, r.pa(fr[0]), true, true), (IOVA + PAGE, r.pa(fr[1]), true, true)]);

    // Device DMA through the stream lands in the VMM's memory, across the page boundary.
    let data: Vec<u8> = (0..64u8).collect();
    r.dart.dma_write(1, IOVA + PAGE - 32, &data).unwrap();
    let mut at = vec![0u8; 64];
    r.frames.memory().read_slice(&mut at, GuestAddress(r.pa(fr[0]) + PAGE - 32)).unwrap();
    assert_eq!(at, data);
    // And through the vm-memory adapter.
    let mem = dart::stream_memory(r.dart.clone(), 1).unwrap();
    let mut back = vec![0u8; 64];
    mem.read_slice(&mut back, GuestAddress(IOVA + PAGE - 32)).unwrap();
    assert_eq!(back, data);

    r.ops.vfio_dma_unmap(IOVA, 2 * PAGE as usize).unwrap();
    assert_eq!((r.dart_count(fr[0]), r.dart_count(fr[1])), (0, 0));
    assert!(r.dart.mappings(1).unwrap().is_empty());
    let mut buf = [0u8; 8];
    let e = r.dart.dma_read(1, IOVA, &mut buf).unwrap_err();
    assert!(matches!(e, DartError::Fault(Fault { stream: 1, iova: IOVA, write: false, .. })), "{e}");
    // The frames are free to recycle.
    r.frames.free(fr[0]).unwrap();
    r.frames.free(fr[1]).unwrap();
}

#[test]
fn kernel_restricted_region_is_refused_and_nothing_changes() {
    let r = rig();
    let user = r.frames_of(FrameType::UserData, 1)[0];
    let restricted = r.frames_of(FrameType::KernelRestricted, 1)[0];
    assert_eq!(restricted.0, user.0 + 1, "test precondition: adjacent frames");
    let refused = r.map(IOVA, PAGE as usize, r.host(restricted));
    assert_eq!(map_errno(refused), libc::EPERM);
    assert_eq!(
        r.last_error(),
        Some(VfioDomainError::Dart(DartError::Frame(frame_table::Error::ForbiddenType {
            frame: restricted,
            ty: FrameType::KernelRestricted,
            access: Access::Dart,
            perm: Perm::RW,
        })))
    );
    assert_eq!(r.dart_count(restricted), 0);
    assert!(r.dart.mappings(1).unwrap().is_empty());
    assert!(r.dart.table_frames().is_empty(), "no table left behind");

    // A region that starts in user data and runs into a restricted frame: all refused.
    assert_eq!(map_errno(r.map(IOVA, 2 * PAGE as usize, r.host(user))), libc::EPERM);
    assert_eq!((r.dart_count(user), r.dart_count(restricted)), (0, 0));
    assert!(r.dart.table_frames().is_empty());
    assert!(r.dart.mappings(1).unwrap().is_empty());
    let e = r.dart.dma_read(1, IOVA, &mut [0u8; 8]).unwrap_err();
    assert_eq!(e, DartError::Fault(Fault { kind: FaultKind::NoTtbr, stream: 1, iova: IOVA, write: false }));
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let r = rig();
    let fr = r.frames_of(FrameType::UserData, 2);
    let host = r.host(fr[0]);
    let cases: Vec<(u64, usize, *mut u8, i32)> = vec![
        (IOVA, 0, host, libc::EINVAL),                                       // empty
        (IOVA + 8, PAGE as usize, host, libc::EINVAL),                       // unaligned IOVA
        (IOVA, 100, host, libc::EINVAL),                                     // unaligned size
        (IOVA, PAGE as usize, host.wrapping_add(8), libc::EINVAL),           // unaligned host address
        (IOVA, PAGE as usize, usize::MAX as *mut u8, libc::EINVAL),          // host range overflows
        (!(PAGE - 1), 2 * PAGE as usize, host, libc::EINVAL),                // IOVA range overflows
        (IOVA, PAGE as usize, std::ptr::dangling_mut::<u8>(), libc::EFAULT), // not emulator memory
        (IOVA, 128 * PAGE as usize, host, libc::EFAULT),                     // runs past the memory
        (1 << 40, PAGE as usize, host, libc::EINVAL),                        // beyond the stream's IOVA space
    ];
    for (iova, size, addr, errno) in cases {
        assert_eq!(map_errno(r.map(iova, size, addr)), errno, "map {iova:#x}+{size:#x} at {addr:?}");
        assert_eq!((r.dart_count(fr[0]), r.dart_count(fr[1])), (0, 0));
        assert!(r.dart.mappings(1).unwrap().is_empty());
    }
    assert_eq!(
        r.last_error(),
        Some(VfioDomainError::Dart(DartError::BadRange {
            iova: 1 << 40,
            len: PAGE,
            reason: "beyond the stream's IOVA space"
        }))
    );

    // IOVA in use: the second map is refused, the first stays.
    r.map(IOVA, PAGE as usize, host).unwrap();
    assert_eq!(map_errno(r.map(IOVA, PAGE as usize, r.host(fr[1]))), libc::EEXIST);
    assert_eq!(r.last_error(), Some(VfioDomainError::Dart(DartError::IovaInUse { sid: 1, iova: IOVA })));
    assert_eq!((r.dart_count(fr[0]), r.dart_count(fr[1])), (1, 0));

    // Unmaps must cover whole mappings of the domain, with no gap.
    r.map(IOVA + 2 * PAGE, PAGE as usize, r.host(fr[1])).unwrap();
    for (iova, size) in [(IOVA, 2 * PAGE), (IOVA, 3 * PAGE + PAGE), (IOVA + PAGE, PAGE), (IOVA, 3 * PAGE)] {
        assert!(matches!(r.ops.vfio_dma_unmap(iova, size as usize), Err(VfioError::InvalidDmaUnmapSize)));
        assert_eq!(r.last_error(), Some(VfioDomainError::UnmapMismatch { iova, size }));
        assert_eq!((r.dart_count(fr[0]), r.dart_count(fr[1])), (1, 1), "unmap {iova:#x}+{size:#x}");
    }
    assert!(matches!(r.ops.vfio_dma_unmap(IOVA, 0), Err(VfioError::IommuDmaUnmap(e)) if e.errno() == libc::EINVAL));
    r.ops.vfio_dma_unmap(IOVA, PAGE as usize).unwrap();
    assert_eq!((r.dart_count(fr[0]), r.dart_count(fr[1])), (0, 1));
    r.ops.vfio_dma_unmap(IOVA + 2 * PAGE, PAGE as usize).unwrap();
    assert_eq!((r.dart_count(fr[0]), r.dart_count(fr[1])), (0, 0));
    assert!(r.dart.mappings(1).unwrap().is_empty());
}

#[test]
fn no_such_stream() {
    let r = rig();
    assert_eq!(DartVfioDomain::new(r.dart.clone(), 16).unwrap_err(), DartError::NoSuchStream { sid: 16, streams: 16 });
}
