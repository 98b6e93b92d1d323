//! A strict unmap invalidates the IOTLB entries of the 32 MiB IOVA regions
//! it touches, not the whole stream's: a page in another region keeps
//! hitting, a page in the same region walks again, the unmapped page faults.
//! A flush and a deferred unmap's flush still kill every entry. For each
//! step: the result, then the stream's DMA-path counters and live entries.

mod common;

use dart::testing::{map_page, Fixture};
use dart::{Dart, DartError, Dir, FaultKind, Invalidation, Variant};
use frame_table::{FrameTable, Perm};
use std::sync::Arc;

const SID: u32 = 1;
const REGION: u64 = 32 << 20;
/// Two pages of region 0 and one of region 1, in three different IOTLB
/// slots (the IOTLB is direct-mapped by page number).
const A: u64 = 0x4000;
const B: u64 = 0x8000;
const C: u64 = REGION + 0xc000;

fn setup(mode: Invalidation) -> (Arc<FrameTable>, Dart) {
    let (ft, dart) = Fixture::new(Variant::T8110).invalidation(mode).translating(&[SID]).build();
    for iova in [A, B, C] {
        map_page(&ft, &dart, SID, iova, Perm::RW);
        dart.translate(SID, iova, 8, Dir::Read).unwrap();
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

fn fault_kind<T>(r: Result<T, DartError>) -> Option<FaultKind> {
    match r {
        Err(DartError::Fault(f)) => Some(f.kind),
        _ => None,
    }
}

#[test]
fn strict_unmap_kills_only_its_regions_entries() {
    let (_ft, dart) = setup(Invalidation::Strict);
    assert_eq!(counters(&dart), [3, 0, 3, 3, 0]);
    assert_eq!(live(&dart), [A, B, C]);

    assert_eq!(dart.unmap(SID, A, 0x4000).unwrap(), 1);
    assert_eq!(live(&dart), [C], "region 0's entries are dead, region 1's lives");

    assert!(dart.translate(SID, C, 8, Dir::Read).is_ok());
    assert_eq!(counters(&dart), [4, 1, 3, 3, 0], "C: a hit");
    assert!(dart.translate(SID, B, 8, Dir::Read).is_ok());
    assert_eq!(counters(&dart), [5, 1, 4, 4, 0], "B: same region as A, walks again");
    assert_eq!(fault_kind(dart.translate(SID, A, 8, Dir::Read)), Some(FaultKind::NoPte));
    assert_eq!(counters(&dart), [6, 1, 5, 5, 1], "A: unmapped, faults after a walk");
    assert_eq!(live(&dart), [B, C]);
    assert_eq!(dart.check_iotlb_coherent(), Ok(()));
    assert_eq!(dart.check_restricted_unreachable(), Ok(()));
}

#[test]
fn flush_kills_every_region() {
    let (_ft, dart) = setup(Invalidation::Strict);
    dart.flush(Some(SID)).unwrap();
    assert_eq!(live(&dart), Vec::<u64>::new());
    assert!(dart.translate(SID, C, 8, Dir::Read).is_ok());
    assert_eq!(counters(&dart), [4, 0, 4, 4, 0], "C walks again after the flush");
}

#[test]
fn deferred_unmap_serves_stale_until_the_flush() {
    let (_ft, dart) = setup(Invalidation::Deferred);
    assert_eq!(dart.unmap(SID, A, 0x4000).unwrap(), 1);
    assert_eq!(live(&dart), [A, B, C], "deferred: nothing invalidated yet");
    assert!(dart.translate(SID, A, 8, Dir::Read).is_ok(), "the stale entry still serves A");
    assert_eq!(counters(&dart), [4, 1, 3, 3, 0]);
    dart.flush(Some(SID)).unwrap();
    assert_eq!(live(&dart), Vec::<u64>::new());
    assert_eq!(fault_kind(dart.translate(SID, A, 8, Dir::Read)), Some(FaultKind::NoPte));
    assert_eq!(counters(&dart), [5, 1, 4, 4, 1]);
}
