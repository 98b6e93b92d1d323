//! Deferred (lazy) invalidation, docs/design.md §3: a DMA after `unmap` but before the
//! flush may still succeed through a stale IOTLB entry; freeing the frame
//! before the flush is the R2 breach (halts in `panic` mode, `frame-busy` in
//! `reject` mode); after the flush the DMA faults `no-pte` and the free
//! succeeds.

use dart::testing::Fixture;
use dart::{Dart, DartError, FaultKind, Invalidation, StreamConfig, Variant};
use frame_table::{Counts, Error, FrameTable, FrameType, OnViolation, Perm, Violation};
use std::sync::Arc;

const IOVA: u64 = 0x10_0000;

fn setup(mode: OnViolation) -> (Arc<FrameTable>, Dart, frame_table::Frame) {
    let (frames, d) = Fixture::new(Variant::T6000)
        .name("d")
        .on_violation(mode)
        .invalidation(Invalidation::Deferred)
        .translating(&[2])
        .build();
    let f = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    let keep = frames.alloc(FrameType::UserData, 1).unwrap();
    d.map(2, IOVA, &[f], Perm::RW, None).unwrap();
    d.map(2, IOVA + 0x4000, &keep, Perm::R, None).unwrap();
    d.dma_write(2, IOVA, b"device data").unwrap();
    (frames, d, f)
}

#[test]
fn stale_dma_succeeds_until_the_flush() {
    let (frames, d, f) = setup(OnViolation::Reject);
    assert_eq!(d.unmap(2, IOVA, 0x4000), Ok(1));
    assert_eq!(frames.state(f).unwrap().counts(), Counts { pending: 1, ..Counts::default() });
    // The IOTLB still holds the translation: the lazy-unmap window.
    let mut buf = [0u8; 11];
    assert_eq!(d.dma_read(2, IOVA, &mut buf), Ok(()));
    assert_eq!(&buf, b"device data");
    assert_eq!(d.dma_write(2, IOVA, b"stale write"), Ok(()));
    // Freeing now is refused: the frame is still counted.
    assert_eq!(
        frames.free(f),
        Err(Error::FrameBusy { frame: f, ty: FrameType::UserData, counts: Counts { pending: 1, ..Counts::default() } })
    );
    // A flush of another stream does not complete it.
    d.set_stream_config(3, StreamConfig::TRANSLATING).unwrap();
    d.flush(Some(3)).unwrap();
    assert_eq!(frames.state(f).unwrap().counts().pending, 1);
    // The flush of its stream closes the window.
    d.flush(Some(2)).unwrap();
    assert_eq!(frames.state(f).unwrap().counts(), Counts::default());
    let err = d.dma_read(2, IOVA, &mut buf).unwrap_err();
    assert!(matches!(err, DartError::Fault(fault) if fault.kind == FaultKind::NoPte && fault.iova == IOVA), "{err:?}");
    assert_eq!(err.kind(), "fault:no-pte");
    assert_eq!(frames.free(f), Ok(()));
    assert_eq!(frames.state(f).unwrap().ty(), FrameType::Free);
}

#[test]
fn free_before_the_flush_halts_in_panic_mode() {
    let (frames, d, f) = setup(OnViolation::Panic);
    d.unmap(2, IOVA, 0x4000).unwrap();
    let breach =
        Violation::FreeMapped { frame: f, ty: FrameType::UserData, counts: Counts { pending: 1, ..Counts::default() } };
    assert_eq!(frames.free(f), Err(Error::Panic(breach.clone())));
    assert_eq!(frames.halted(), Some(breach.clone()));
    // Everything afterwards returns halted, DMA included.
    let mut buf = [0u8; 4];
    assert_eq!(d.dma_read(2, IOVA, &mut buf).unwrap_err(), DartError::Frame(Error::Halted(breach.clone())));
    assert_eq!(d.dma_read(2, IOVA, &mut buf).unwrap_err().kind(), "halted");
    assert_eq!(d.map(2, 0, &[f], Perm::R, None).unwrap_err().kind(), "halted");
    assert_eq!(frames.state(f).unwrap().counts().pending, 1, "the breach changed nothing");
}
