//! The walk cache (`dart::walk_cache`) is invisible: after every change to
//! what a walk reads above the leaf (a TTBR retargeted, a leaf table
//! unlinked and another linked in its place), a DMA walks the new tables,
//! never the table a previous walk of the same block reached. For each
//! step: the result, then the stream's DMA-path counters, its live IOTLB
//! entries and the DART's table frames. Each test runs on its own thread
//! (its own walk-cache row).

mod common;

use dart::testing::Fixture;
use dart::{Dart, DartError, Dir, FaultKind, Invalidation, Variant};
use frame_table::vm_memory::{Bytes, GuestAddress};
use frame_table::{Counts, Frame, FrameTable, FrameType, Perm};
use std::sync::Arc;

const PAGE: u64 = 0x4000;
/// Two pages of one 32 MiB block (one leaf table), in different IOTLB slots.
const X: u64 = 0x0200_0000 + 5 * PAGE;
const Y: u64 = 0x0200_0000 + 6 * PAGE;

fn setup(mode: Invalidation) -> (Arc<FrameTable>, Dart) {
    Fixture::new(Variant::T8110).memory(8 << 20).invalidation(mode).translating(&[1, 2]).build()
}

fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(f).join().expect("test thread");
}

fn user_frame(ft: &FrameTable) -> (Frame, u64) {
    let f = ft.alloc(FrameType::UserData, 1).unwrap()[0];
    (f, ft.pa_of(f).unwrap())
}

/// Where an 8-byte read of `iova` through stream `sid` lands, or its fault.
fn pa(dart: &Dart, sid: u32, iova: u64) -> Result<u64, FaultKind> {
    match dart.translate(sid, iova, 8, Dir::Read) {
        Ok(t) => Ok(t.spans()[0].pa),
        Err(DartError::Fault(f)) => Err(f.kind),
        Err(e) => panic!("expected a translation or a fault, got {e:?}"),
    }
}

/// The DART's table frames, sorted.
fn tables(dart: &Dart) -> Vec<Frame> {
    let mut t = dart.table_frames();
    t.sort_unstable();
    t
}

#[test]
fn a_retargeted_ttbr_is_walked_not_the_tables_its_old_root_reached() {
    on_fresh_thread(|| {
        let (ft, dart) = setup(Invalidation::Strict);
        let (f1, p1) = user_frame(&ft);
        let (f2, p2) = user_frame(&ft);
        let (f3, p3) = user_frame(&ft);
        // Stream 1 maps X on a root of its own; stream 2's root R2 maps X and Y.
        dart.map(1, X, &[f1], Perm::RW, None).unwrap();
        let r1 = dart.ttbr(1, 0).unwrap().unwrap();
        let r2 = dart.alloc_root_table().unwrap();
        dart.set_ttbr(2, 0, Some(r2)).unwrap();
        dart.map(2, X, &[f2], Perm::RW, None).unwrap();
        dart.map(2, Y, &[f3], Perm::RW, None).unwrap();
        assert_eq!(tables(&dart).len(), 4, "two roots, two leaf tables");

        // Stream 1 walks its own tables; the walk cache learns X's block.
        assert_eq!(pa(&dart, 1, X), Ok(p1));
        assert_eq!(common::counters(&dart, 1), [1, 0, 1, 1, 0]);
        assert_eq!(common::live(&dart, 1), [X]);
        assert_eq!(pa(&dart, 1, Y), Err(FaultKind::NoPte), "Y is not mapped under stream 1's root");
        assert_eq!(common::counters(&dart, 1), [2, 0, 2, 2, 1]);

        // Retarget stream 1 at R2: the IOTLB and the walk cache both forget.
        dart.set_ttbr(1, 0, Some(r2)).unwrap();
        assert_eq!(common::live(&dart, 1), Vec::<u64>::new());
        assert_eq!(pa(&dart, 1, X), Ok(p2), "X walks R2's leaf table");
        assert_eq!(pa(&dart, 1, Y), Ok(p3), "Y too");
        assert_eq!(common::counters(&dart, 1), [4, 0, 4, 4, 1]);
        assert_eq!(common::live(&dart, 1), [X, Y]);

        // And back: R1's leaf table again.
        dart.set_ttbr(1, 0, Some(r1)).unwrap();
        assert_eq!(pa(&dart, 1, X), Ok(p1));
        assert_eq!(pa(&dart, 1, Y), Err(FaultKind::NoPte));
        assert_eq!(common::counters(&dart, 1), [6, 0, 6, 6, 2]);
        assert_eq!(common::live(&dart, 1), [X]);
        // Stream 2 never moved.
        assert_eq!((pa(&dart, 2, X), pa(&dart, 2, Y)), (Ok(p2), Ok(p3)));
        assert_eq!(dart.check_iotlb_coherent(), Ok(()));
    });
}

#[test]
fn a_leaf_table_replaced_under_a_deferred_unmap_is_not_walked() {
    on_fresh_thread(|| {
        let (ft, dart) = setup(Invalidation::Deferred);
        let (f1, p1) = user_frame(&ft);
        let (f2, p2) = user_frame(&ft);
        dart.map(1, X, &[f1], Perm::RW, None).unwrap();
        let before = tables(&dart);
        assert_eq!(before.len(), 2, "root and X's leaf table");
        assert_eq!(pa(&dart, 1, X), Ok(p1));
        assert_eq!(common::counters(&dart, 1), [1, 0, 1, 1, 0]);

        // Unmapping X empties its leaf table: unlinked, pending until a flush.
        assert_eq!(dart.unmap(1, X, PAGE), Ok(1));
        let root = dart.ttbr(1, 0).unwrap().unwrap();
        let root = ft.frame_of(root).unwrap();
        assert_eq!(tables(&dart), [root]);
        let old_leaf = *before.iter().find(|&&t| t != root).unwrap();
        let s = ft.state(old_leaf).unwrap();
        assert_eq!((s.ty(), s.counts().dart), (FrameType::DartTable, 1), "still held: a walk may be on it");
        assert_eq!(ft.state(f1).unwrap().counts(), Counts { pending: 1, ..Counts::default() });
        // The lazy window: X's stale IOTLB entry still serves.
        assert_eq!(pa(&dart, 1, X), Ok(p1));
        assert_eq!(common::counters(&dart, 1), [2, 1, 1, 1, 0]);

        // Y, in the same block, gets a new leaf table; walks reach it.
        dart.map(1, Y, &[f2], Perm::RW, None).unwrap();
        let new_leaf = *tables(&dart).iter().find(|&&t| t != root).unwrap();
        assert_ne!(new_leaf, old_leaf);
        assert_eq!(pa(&dart, 1, Y), Ok(p2), "Y walks the new leaf table");
        assert_eq!(common::counters(&dart, 1), [3, 1, 2, 2, 0]);
        assert_eq!(common::live(&dart, 1), [X, Y]);

        // The flush ends the lazy window and frees the old leaf table.
        dart.flush(Some(1)).unwrap();
        assert_eq!(ft.state(old_leaf).unwrap().ty(), FrameType::Free);
        assert_eq!(ft.state(f1).unwrap().counts(), Counts::default());
        assert_eq!(tables(&dart), {
            let mut t = vec![root, new_leaf];
            t.sort_unstable();
            t
        });
        assert_eq!(pa(&dart, 1, X), Err(FaultKind::NoPte), "X walks the new table, where it is not mapped");
        assert_eq!(pa(&dart, 1, Y), Ok(p2));
        assert_eq!(common::counters(&dart, 1), [5, 1, 4, 4, 1]);
        assert_eq!(common::live(&dart, 1), [Y]);
        assert_eq!(dart.check_iotlb_coherent(), Ok(()));
    });
}

#[test]
fn every_thread_walks_to_the_same_answers_and_each_walk_counts_once() {
    on_fresh_thread(|| {
        let (ft, dart) = setup(Invalidation::Strict);
        let dart = Arc::new(dart);
        let (f1, p1) = user_frame(&ft);
        dart.map(1, X, &[f1], Perm::RW, None).unwrap();
        // This thread's row learns the block; a flush empties the IOTLB
        // only, so the next walk goes through the row.
        assert_eq!(pa(&dart, 1, X), Ok(p1));
        dart.flush(Some(1)).unwrap();
        assert_eq!(pa(&dart, 1, X), Ok(p1));
        assert_eq!(pa(&dart, 1, Y), Err(FaultKind::NoPte));
        assert_eq!(common::counters(&dart, 1), [3, 0, 3, 3, 1], "cached or not, a walk is a walk");
        // Another thread, another row: the same answers, counted the same.
        let other = dart.clone();
        std::thread::spawn(move || {
            other.flush(Some(1)).unwrap();
            assert_eq!(pa(&other, 1, X), Ok(p1));
            assert_eq!(pa(&other, 1, Y), Err(FaultKind::NoPte));
        })
        .join()
        .unwrap();
        assert_eq!(common::counters(&dart, 1), [5, 0, 5, 5, 2]);
        assert_eq!(common::live(&dart, 1), [X]);
    });
}

/// DMAs of 1 KiB or more first touch (prefetch) the leaf PTE through the
/// walk cache, under any generation (`Dart::touch_leaf`): that decides
/// nothing. A 4 KiB read after the page's leaf table was retired and
/// another, in another frame, linked in reads the new mapping; after a
/// plain unmap it faults and copies nothing.
#[test]
fn large_dmas_read_what_the_tables_map_now_after_the_leaf_table_changes() {
    on_fresh_thread(|| {
        let (ft, dart) = setup(Invalidation::Strict);
        let (f1, p1) = user_frame(&ft);
        let (f2, p2) = user_frame(&ft);
        let mem = ft.memory();
        mem.write_slice(&[0x11; 4096], GuestAddress(p1)).unwrap();
        mem.write_slice(&[0x22; 4096], GuestAddress(p2)).unwrap();
        let mut buf = [0u8; 4096];

        dart.map(1, X, &[f1], Perm::RW, None).unwrap();
        dart.dma_read(1, X, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0x11));
        assert_eq!(common::counters(&dart, 1), [1, 0, 1, 1, 0]);
        let first_leaf = tables(&dart);

        // The leaf table is retired (the only page unmapped) and a new one
        // linked for the same block, mapping X to f2. The retired table's
        // frame is taken first, so the new table is in another frame and
        // the walk cache's dead entry names the old one.
        assert_eq!(dart.unmap(1, X, PAGE), Ok(1));
        let spare = ft.alloc(FrameType::UserData, 1).unwrap();
        dart.map(1, X, &[f2], Perm::RW, None).unwrap();
        let second_leaf = tables(&dart);
        assert_eq!(second_leaf.len(), first_leaf.len(), "root and one leaf table again");
        assert_ne!(second_leaf, first_leaf, "in another frame");
        ft.free(spare[0]).unwrap();
        dart.dma_read(1, X, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0x22), "the new mapping, not the old leaf's");
        assert_eq!(common::counters(&dart, 1), [2, 0, 2, 2, 0]);
        assert_eq!(common::live(&dart, 1), [X]);

        // Unmapped again: the walk faults, nothing is copied.
        assert_eq!(dart.unmap(1, X, PAGE), Ok(1));
        let mut buf = [0xa5u8; 4096];
        match dart.dma_read(1, X, &mut buf) {
            Err(DartError::Fault(f)) => assert_eq!((f.kind, f.iova), (FaultKind::NoL1, X)),
            other => panic!("expected a NoL1 fault, got {other:?}"),
        }
        assert!(buf.iter().all(|&b| b == 0xa5), "nothing copied");
        assert_eq!(common::counters(&dart, 1), [3, 0, 3, 3, 1]);
        assert_eq!(common::live(&dart, 1), Vec::<u64>::new());
        assert_eq!(dart.check_iotlb_coherent(), Ok(()));
    });
}
