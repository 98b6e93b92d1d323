//! R6 for the kernel-side `Dart::map` of several frames: a map refused at
//! one frame (its type forbids the DART, or a count is at its limit) leaves
//! no PTE, no table and no count on any frame; the same map of allowed
//! frames then succeeds whole. Each test asserts the exact error, then
//! every frame's type and counts, the frame table's free count (no table
//! kept) and a DMA at the range.

use dart::testing::Fixture;
use dart::{Dart, DartError, FaultKind, Variant};
use frame_table::{Access, Counts, Error, Frame, FrameTable, FrameType, OnViolation, Perm};
use std::sync::Arc;

const IOVA: u64 = 0x10_0000;
const SID: u32 = 1;

fn setup() -> (Arc<FrameTable>, Dart) {
    Fixture::new(Variant::T8110).name("d").on_violation(OnViolation::Reject).translating(&[SID]).build()
}

fn assert_states(frames: &FrameTable, want: &[(Frame, FrameType, Counts)]) {
    for &(f, ty, c) in want {
        let s = frames.state(f).unwrap();
        assert_eq!((s.ty(), s.counts(), s.pins(), s.claimed()), (ty, c, 0, false), "state of {f}");
    }
}

fn assert_no_translation(d: &Dart) {
    let mut buf = [0u8; 4];
    let err = d.dma_read(SID, IOVA, &mut buf).unwrap_err();
    assert!(matches!(err, DartError::Fault(f) if f.kind == FaultKind::NoTtbr), "{err:?}");
}

#[test]
fn a_map_refused_at_its_middle_frame_changes_nothing() {
    let (frames, d) = setup();
    let buf = frames.alloc(FrameType::UserData, 3).unwrap();
    frames.retype(buf[1], FrameType::KernelShared).unwrap();
    let secret = frames.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
    let free_before = frames.free_frames();
    let list = [buf[0], secret, buf[2]];
    assert_eq!(
        d.map(SID, IOVA, &list, Perm::RW, None),
        Err(DartError::Frame(Error::ForbiddenType {
            frame: secret,
            ty: FrameType::KernelRestricted,
            access: Access::Dart,
            perm: Perm::RW
        }))
    );
    let none = Counts::default();
    assert_states(
        &frames,
        &[
            (buf[0], FrameType::UserData, none),
            (secret, FrameType::KernelRestricted, none),
            (buf[2], FrameType::UserData, none),
        ],
    );
    assert_eq!(frames.free_frames(), free_before, "a table was kept");
    assert_no_translation(&d);
    // Every frame may still change type: none is counted.
    assert_eq!(frames.free_all(&buf), Ok(()));
}

#[test]
fn a_map_refused_at_a_count_limit_changes_nothing() {
    let (frames, d) = setup();
    let buf = frames.alloc(FrameType::KernelShared, 2).unwrap();
    // A pending-invalidation count at its limit cannot refuse a map; the
    // DART count can: take it to the limit on the second frame.
    let limit = frame_table::Counter::Dart.max();
    for _ in 0..limit {
        frames.acquire(buf[1], Access::Dart, Perm::R).unwrap();
    }
    let free_before = frames.free_frames();
    assert_eq!(
        d.map(SID, IOVA, &buf, Perm::R, None),
        Err(DartError::Frame(Error::MappingLimit {
            frame: buf[1],
            ty: FrameType::KernelShared,
            counter: frame_table::Counter::Dart,
            count: limit,
            limit
        }))
    );
    let at_limit = Counts { dart: limit as u32, ..Counts::default() };
    assert_states(
        &frames,
        &[(buf[0], FrameType::KernelShared, Counts::default()), (buf[1], FrameType::KernelShared, at_limit)],
    );
    assert_eq!(frames.free_frames(), free_before, "a table was kept");
    assert_no_translation(&d);
    // Once the second frame's counts drop, the same map lands whole.
    for _ in 0..limit {
        frames.release(buf[1], frame_table::Counter::Dart).unwrap();
    }
    assert_eq!(d.map(SID, IOVA, &buf, Perm::R, None), Ok(()));
    let one = Counts { dart: 1, ..Counts::default() };
    assert_states(&frames, &[(buf[0], FrameType::KernelShared, one), (buf[1], FrameType::KernelShared, one)]);
}
