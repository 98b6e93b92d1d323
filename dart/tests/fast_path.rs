//! The one-page fast path and the general path give the same answers and
//! the same counters: a hit, a fresh walk, a permission fault right after a
//! walk, a subpage-restricted page, an access over two pages. For each
//! access: the result, then every DMA-path counter of the stream.

use dart::testing::Fixture;
use dart::{Dart, DartError, Dir, FaultKind, Variant};
use frame_table::{FrameTable, FrameType, Perm};
use std::sync::Arc;

const SID: u32 = 1;
const PAGE: u64 = 0x4000;

fn setup() -> (Arc<FrameTable>, Dart) {
    Fixture::new(Variant::T8110).translating(&[SID]).build()
}

/// [`setup`] with one user-data page mapped at IOVA `PAGE` with `perm`;
/// also returns the page's PA.
fn setup_one_page(perm: Perm) -> (Arc<FrameTable>, Dart, u64) {
    let (ft, dart) = setup();
    let f = ft.alloc(FrameType::UserData, 1).unwrap();
    dart.map(SID, PAGE, &f, perm, None).unwrap();
    let pa = ft.pa_of(f[0]).unwrap();
    (ft, dart, pa)
}

/// `[translations, iotlb_hits, iotlb_misses, walks, faults]` of stream SID.
fn counters(dart: &Dart) -> [u64; 5] {
    let snap = dart.stats().snapshot();
    let get = |name: &str| snap.get(&format!("s{SID}.{name}")).unwrap();
    [get("translations"), get("iotlb_hits"), get("iotlb_misses"), get("walks"), get("faults")]
}

fn fault_kind(r: Result<dart::Translation<'_>, DartError>) -> Option<FaultKind> {
    match r {
        Err(DartError::Fault(f)) => Some(f.kind),
        _ => None,
    }
}

#[test]
fn walk_then_hit() {
    let (_ft, dart, pa) = setup_one_page(Perm::RW);
    let spans = |iova| dart.translate(SID, iova, 8, Dir::Read).unwrap().spans().to_vec();
    assert_eq!(spans(PAGE + 0x10), [dart::Span { iova: PAGE + 0x10, pa: pa + 0x10, len: 8 }]);
    assert_eq!(counters(&dart), [1, 0, 1, 1, 0], "first access: a miss and a walk");
    assert_eq!(spans(PAGE + 0x20), [dart::Span { iova: PAGE + 0x20, pa: pa + 0x20, len: 8 }]);
    assert_eq!(counters(&dart), [2, 1, 1, 1, 0], "second access: a hit");
    assert_eq!(dart.iotlb_entries(SID).unwrap().len(), 1);
}

#[test]
fn permission_fault_after_a_walk_counts_the_walk_once() {
    let (_ft, dart, _) = setup_one_page(Perm::R);
    assert_eq!(fault_kind(dart.translate(SID, PAGE, 8, Dir::Write)), Some(FaultKind::Write));
    assert_eq!(counters(&dart), [1, 0, 1, 1, 1], "one miss, one walk, one fault");
    assert_eq!(dart.error().first.map(|f| (f.kind, f.iova)), Some((FaultKind::Write, PAGE)));
    // The general path cached the leaf: the same write now hits, then faults.
    assert_eq!(fault_kind(dart.translate(SID, PAGE, 8, Dir::Write)), Some(FaultKind::Write));
    assert_eq!(counters(&dart), [2, 1, 1, 1, 2]);
    // And a read is served by the fast path from the same entry.
    assert!(dart.translate(SID, PAGE, 8, Dir::Read).is_ok());
    assert_eq!(counters(&dart), [3, 2, 1, 1, 2]);
}

#[test]
fn subpage_pages_take_the_general_path_with_the_same_counts() {
    let (ft, dart) = setup();
    let f = ft.alloc(FrameType::UserData, 1).unwrap();
    // Only [0x1000, 0x2000) of the page is accessible.
    dart.map(SID, PAGE, &f, Perm::RW, Some((0x1000, 0x2000))).unwrap();
    assert!(dart.translate(SID, PAGE + 0x1000, 8, Dir::Read).is_ok());
    assert_eq!(counters(&dart), [1, 0, 1, 1, 0], "first access: a miss and a walk");
    assert!(dart.translate(SID, PAGE + 0x1ff8, 8, Dir::Write).is_ok());
    assert_eq!(counters(&dart), [2, 1, 1, 1, 0], "then a hit, served by the general path");
    assert_eq!(fault_kind(dart.translate(SID, PAGE + 0x2000, 8, Dir::Read)), Some(FaultKind::Subpage));
    assert_eq!(counters(&dart), [3, 2, 1, 1, 1]);
}

#[test]
fn an_access_over_two_pages_counts_both() {
    let (ft, dart) = setup();
    let f = ft.alloc(FrameType::UserData, 2).unwrap();
    dart.map(SID, PAGE, &f, Perm::RW, None).unwrap();
    let t = dart.translate(SID, 2 * PAGE - 8, 16, Dir::Read).unwrap();
    let (pa0, pa1) = (ft.pa_of(f[0]).unwrap(), ft.pa_of(f[1]).unwrap());
    let want: Vec<dart::Span> = if pa1 == pa0 + PAGE {
        vec![dart::Span { iova: 2 * PAGE - 8, pa: pa0 + PAGE - 8, len: 16 }]
    } else {
        vec![
            dart::Span { iova: 2 * PAGE - 8, pa: pa0 + PAGE - 8, len: 8 },
            dart::Span { iova: 2 * PAGE, pa: pa1, len: 8 },
        ]
    };
    assert_eq!(t.spans(), want.as_slice());
    drop(t);
    assert_eq!(counters(&dart), [2, 0, 2, 2, 0]);
    // Both pages are cached now: one-page accesses to either hit.
    assert!(dart.translate(SID, PAGE, 8, Dir::Read).is_ok());
    assert!(dart.translate(SID, 2 * PAGE, 8, Dir::Read).is_ok());
    assert_eq!(counters(&dart), [4, 2, 2, 2, 0]);
}

#[test]
fn first_is_the_span_at_the_iova_for_one_page_and_for_several() {
    let (ft, dart) = setup();
    let f = ft.alloc(FrameType::UserData, 3).unwrap();
    // Frames 0 and 2: never physically adjacent, so an access over the
    // page boundary has two spans.
    dart.map(SID, PAGE, &[f[0], f[2]], Perm::RW, None).unwrap();
    let (pa0, pa2) = (ft.pa_of(f[0]).unwrap(), ft.pa_of(f[2]).unwrap());
    assert_ne!(pa2, pa0 + PAGE);

    let one = dart.translate(SID, PAGE + 0x40, 8, Dir::Read).unwrap();
    assert_eq!(one.first(), &dart::Span { iova: PAGE + 0x40, pa: pa0 + 0x40, len: 8 });
    assert_eq!(one.spans(), std::slice::from_ref(one.first()));
    drop(one);

    let two = dart.translate(SID, 2 * PAGE - 8, 16, Dir::Read).unwrap();
    let want =
        [dart::Span { iova: 2 * PAGE - 8, pa: pa0 + PAGE - 8, len: 8 }, dart::Span { iova: 2 * PAGE, pa: pa2, len: 8 }];
    assert_eq!(two.spans(), want.as_slice());
    assert_eq!(two.first(), &want[0]);
    drop(two);
    assert_eq!(counters(&dart), [3, 1, 2, 2, 0], "a walk, a hit, then a hit and a walk");
}

/// The fast path's in-page test at its edges: the last bytes of a page and
/// the whole page are one-page accesses (a walk, then hits), one byte more
/// crosses into the next page, and an empty access is refused.
#[test]
fn in_page_accesses_end_exactly_at_the_page_end() {
    let (_ft, dart, pa) = setup_one_page(Perm::RW);
    let one = |iova, len| dart.translate(SID, iova, len, Dir::Read).map(|t| t.spans().to_vec());
    assert_eq!(one(2 * PAGE - 8, 8).unwrap(), [dart::Span { iova: 2 * PAGE - 8, pa: pa + PAGE - 8, len: 8 }]);
    assert_eq!(counters(&dart), [1, 0, 1, 1, 0], "a walk");
    assert_eq!(one(PAGE, PAGE).unwrap(), [dart::Span { iova: PAGE, pa, len: PAGE }]);
    assert_eq!(one(2 * PAGE - 1, 1).unwrap(), [dart::Span { iova: 2 * PAGE - 1, pa: pa + PAGE - 1, len: 1 }]);
    assert_eq!(counters(&dart), [3, 2, 1, 1, 0], "two hits");
    // Nine bytes from 8 before the end reach the unmapped next page.
    assert_eq!(fault_kind(dart.translate(SID, 2 * PAGE - 8, 9, Dir::Read)), Some(FaultKind::NoPte));
    assert!(matches!(dart.translate(SID, PAGE, 0, Dir::Read), Err(DartError::BadRange { iova: PAGE, len: 0, .. })));
}

/// A cached translation is not served once its stream stops translating:
/// disabled, the access faults; enabled again, it walks afresh.
#[test]
fn a_disabled_stream_is_not_served_from_the_iotlb() {
    let (_ft, dart, _) = setup_one_page(Perm::RW);
    assert!(dart.translate(SID, PAGE, 8, Dir::Read).is_ok());
    assert!(dart.translate(SID, PAGE, 8, Dir::Read).is_ok());
    assert_eq!(counters(&dart), [2, 1, 1, 1, 0], "a walk, then a hit");
    dart.set_enabled(SID, false).unwrap();
    assert_eq!(fault_kind(dart.translate(SID, PAGE, 8, Dir::Read)), Some(FaultKind::StreamDisabled));
    assert_eq!(counters(&dart), [2, 1, 1, 1, 1], "no hit, one fault");
    dart.set_enabled(SID, true).unwrap();
    assert!(dart.translate(SID, PAGE, 8, Dir::Read).is_ok());
    assert_eq!(counters(&dart), [3, 1, 2, 2, 1], "the entry died with the change: a walk");
}
