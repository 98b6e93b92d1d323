//! The IOTLB's fill policy seen through the DART (bimodal insertion, see
//! `Iotlb::fill`): a miss whose slot holds a live entry of another page
//! evicts it only on every `EVICT_EVERY`th such miss of the thread; a slot
//! that is empty, or whose entry an invalidation killed, is taken at once.
//! For each step: the result, then the stream's DMA-path counters and live
//! entries. Each test runs on its own thread, whose turn count starts at 0.

mod common;

use dart::testing::EVICT_EVERY;
use dart::testing::{map_page, Fixture};
use dart::{Dart, Dir, Invalidation, Variant};
use frame_table::{FrameTable, Perm};
use std::sync::Arc;

const SID: u32 = 1;
const PAGE: u64 = 0x4000;
/// Two pages of one 32 MiB region that share an IOTLB slot (256 entries,
/// direct-mapped by page number: pages 256 apart collide).
const A: u64 = 3 * PAGE;
const B: u64 = (3 + 256) * PAGE;

fn setup(mode: Invalidation) -> (Arc<FrameTable>, Dart) {
    let (ft, dart) =
        Fixture::new(Variant::T8110).memory(8 << 20).invalidation(mode).iotlb_entries(256).translating(&[SID]).build();
    for iova in [A, B] {
        map_page(&ft, &dart, SID, iova, Perm::RW);
    }
    (ft, dart)
}

/// `[translations, iotlb_hits, iotlb_misses, walks, faults]` of stream SID.
fn counters(dart: &Dart) -> [u64; 5] {
    common::counters(dart, SID)
}

/// IOVAs of stream SID's live IOTLB entries, sorted.
fn live(dart: &Dart) -> Vec<u64> {
    common::live(dart, SID)
}

fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(f).join().expect("test thread");
}

#[test]
fn live_conflicting_entry_is_evicted_once_every_evict_every_misses() {
    on_fresh_thread(|| {
        let (_ft, dart) = setup(Invalidation::Strict);
        dart.translate(SID, A, 8, Dir::Read).unwrap();
        assert_eq!(counters(&dart), [1, 0, 1, 1, 0], "A walks into an empty slot");
        assert_eq!(live(&dart), [A]);

        let n = u64::from(EVICT_EVERY);
        for i in 1..n {
            dart.translate(SID, B, 8, Dir::Read).unwrap();
            assert_eq!(counters(&dart), [1 + i, 0, 1 + i, 1 + i, 0], "B miss {i}");
            assert_eq!(live(&dart), [A], "B miss {i} leaves A cached");
        }
        dart.translate(SID, A, 8, Dir::Read).unwrap();
        assert_eq!(counters(&dart), [n + 1, 1, n, n, 0], "A still hits");

        dart.translate(SID, B, 8, Dir::Read).unwrap();
        assert_eq!(counters(&dart), [n + 2, 1, n + 1, n + 1, 0], "B's {n}th miss");
        assert_eq!(live(&dart), [B], "B's {n}th miss evicts A");
        dart.translate(SID, B, 8, Dir::Read).unwrap();
        assert_eq!(counters(&dart), [n + 3, 2, n + 1, n + 1, 0], "B hits");
        assert_eq!(dart.check_iotlb_coherent(), Ok(()));
    });
}

#[test]
fn entry_killed_by_a_flush_is_replaced_at_once() {
    on_fresh_thread(|| {
        let (_ft, dart) = setup(Invalidation::Strict);
        dart.translate(SID, A, 8, Dir::Read).unwrap();
        dart.flush(Some(SID)).unwrap();
        assert_eq!(live(&dart), Vec::<u64>::new());
        dart.translate(SID, B, 8, Dir::Read).unwrap();
        assert_eq!(counters(&dart), [2, 0, 2, 2, 0], "B walks");
        assert_eq!(live(&dart), [B], "and takes the dead entry's slot");
        dart.translate(SID, B, 8, Dir::Read).unwrap();
        assert_eq!(counters(&dart), [3, 1, 2, 2, 0], "B hits");
    });
}

#[test]
fn strict_unmap_kills_the_entry_so_its_slot_is_taken_at_once() {
    on_fresh_thread(|| {
        let (_ft, dart) = setup(Invalidation::Strict);
        dart.translate(SID, A, 8, Dir::Read).unwrap();
        assert_eq!(dart.unmap(SID, A, PAGE).unwrap(), 1);
        dart.translate(SID, B, 8, Dir::Read).unwrap();
        assert_eq!(live(&dart), [B]);
        dart.translate(SID, B, 8, Dir::Read).unwrap();
        assert_eq!(counters(&dart), [3, 1, 2, 2, 0]);
        assert_eq!(dart.check_restricted_unreachable(), Ok(()));
    });
}

/// Deferred mode: the stale entry of an unmapped page keeps serving DMA
/// until the flush, and the policy only makes it outlive conflicting
/// misses, never die earlier.
#[test]
fn deferred_stale_entry_survives_conflicting_misses_until_the_flush() {
    on_fresh_thread(|| {
        let (_ft, dart) = setup(Invalidation::Deferred);
        dart.translate(SID, A, 8, Dir::Read).unwrap();
        assert_eq!(dart.unmap(SID, A, PAGE).unwrap(), 1);
        for i in 1..u64::from(EVICT_EVERY) {
            dart.translate(SID, B, 8, Dir::Read).unwrap();
            assert!(dart.translate(SID, A, 8, Dir::Read).is_ok(), "stale A still serves DMA after B miss {i}");
        }
        dart.flush(Some(SID)).unwrap();
        assert!(dart.translate(SID, A, 8, Dir::Read).is_err(), "the flush ends it");
    });
}
