//! Mapping provenance (docs/design.md §4, "decides ownership from what the tables hold
//! now"): `map_owned` gives its leaves an id, `unmap_owned` removes a page
//! only while the leaf the stream reaches there still carries it. Each test
//! moves the page out of the owner's hands by one route (a plain unmap and
//! bit-identical re-map, shared tables, a TTBR re-point, a TCR.FOUR_LEVEL
//! toggle) and asserts the refusal, then the full state after it.

use dart::{Dart, DartConfig, DartError, OwnedScope, StreamConfig, Variant};
use frame_table::{Counter, Frame, FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;

const PAGE: u64 = 0x4000;

fn soc(variant: Variant) -> (Arc<FrameTable>, Dart) {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
    let d = Dart::new(frames.clone(), DartConfig::new("d", variant)).unwrap();
    for sid in [1, 2] {
        d.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
    }
    (frames, d)
}

fn dart_counts(frames: &FrameTable, fs: &[Frame]) -> Vec<u64> {
    fs.iter().map(|&f| frames.state(f).unwrap().count(Counter::Dart)).collect()
}

/// `(iova, pa)` of every leaf stream `sid` maps.
fn leaves(d: &Dart, sid: u32) -> Vec<(u64, u64)> {
    d.mappings(sid).unwrap().into_iter().map(|(iova, l)| (iova, l.pa)).collect()
}

#[test]
fn ids_are_fresh_per_call_and_an_owned_unmap_takes_several() {
    let (frames, d) = soc(Variant::T8110);
    let f = frames.alloc(FrameType::UserData, 3).unwrap();
    let a = d.map_owned(1, 0x100000, &f[..2], Perm::RW, None).unwrap();
    let b = d.map_owned(1, 0x108000, &f[2..], Perm::R, None).unwrap();
    assert!(a.get() >= 1 && b.get() > a.get());
    assert_eq!(d.map_id(1, 0x104000), Ok(Some(a)));
    assert_eq!(d.map_id(1, 0x108010), Ok(Some(b)), "any byte of the page");
    assert_eq!(d.map_id(1, 0x10c000), Ok(None));
    // A wrong id for one page: nothing goes.
    assert_eq!(
        d.unmap_owned(1, 0x100000, &[a, b, b], OwnedScope::Whole),
        Err(DartError::NotMapped { sid: 1, iova: 0x104000, len: PAGE })
    );
    assert_eq!(leaves(&d, 1).len(), 3);
    assert_eq!(dart_counts(&frames, &f), [1, 1, 1]);
    assert_eq!(d.unmap_owned(1, 0x100000, &[a, a, b], OwnedScope::Whole), Ok(3));
    assert_eq!(leaves(&d, 1), []);
    assert_eq!(dart_counts(&frames, &f), [0, 0, 0]);
    assert_eq!(d.check_provenance(), Ok(()));
}

#[test]
fn a_plain_unmap_and_identical_remap_is_not_the_owners_page() {
    let (frames, d) = soc(Variant::T8110);
    let f = frames.alloc(FrameType::UserData, 2).unwrap();
    let a = d.map_owned(1, 0x100000, &f, Perm::RW, None).unwrap();
    // The kernel unmaps page 0 and maps the same frame, same permission:
    // the PTE is bit-identical, the id is gone.
    assert_eq!(d.unmap(1, 0x100000, PAGE), Ok(1));
    d.map(1, 0x100000, &f[..1], Perm::RW, None).unwrap();
    assert_eq!(d.map_id(1, 0x100000), Ok(None));
    assert_eq!(d.map_id(1, 0x104000), Ok(Some(a)));
    let pa: Vec<u64> = f.iter().map(|&x| frames.pa_of(x).unwrap()).collect();

    assert_eq!(
        d.unmap_owned(1, 0x100000, &[a, a], OwnedScope::Whole),
        Err(DartError::NotMapped { sid: 1, iova: 0x100000, len: PAGE })
    );
    assert_eq!(leaves(&d, 1), [(0x100000, pa[0]), (0x104000, pa[1])]);
    // Each page on its own: only the one still the owner's goes.
    assert_eq!(d.unmap_owned(1, 0x100000, &[a, a], OwnedScope::Matching), Ok(1));
    assert_eq!(leaves(&d, 1), [(0x100000, pa[0])]);
    assert_eq!(dart_counts(&frames, &f), [1, 0]);
    assert_eq!(
        d.unmap_owned(1, 0x100000, &[a], OwnedScope::Matching),
        Err(DartError::NotMapped { sid: 1, iova: 0x100000, len: PAGE })
    );
    assert_eq!(leaves(&d, 1), [(0x100000, pa[0])]);
    assert_eq!(d.check_provenance(), Ok(()));
}

#[test]
fn the_id_follows_shared_tables_and_dies_with_the_pte() {
    let (frames, d) = soc(Variant::T8110);
    let f = frames.alloc(FrameType::UserData, 1).unwrap();
    let a = d.map_owned(1, 0x100000, &f, Perm::RW, None).unwrap();
    // Stream 2 joins stream 1's domain.
    let root = d.ttbr(1, 0).unwrap().unwrap();
    d.set_ttbr(2, 0, Some(root)).unwrap();
    assert_eq!(d.map_id(2, 0x100000), Ok(Some(a)));
    // The kernel unmaps and re-maps the same frame through the sibling.
    assert_eq!(d.unmap(2, 0x100000, PAGE), Ok(1));
    d.map(2, 0x100000, &f, Perm::RW, None).unwrap();
    assert_eq!(d.map_id(1, 0x100000), Ok(None));

    assert_eq!(
        d.unmap_owned(1, 0x100000, &[a], OwnedScope::Whole),
        Err(DartError::NotMapped { sid: 1, iova: 0x100000, len: PAGE })
    );
    let pa = frames.pa_of(f[0]).unwrap();
    assert_eq!(leaves(&d, 1), [(0x100000, pa)]);
    assert_eq!(leaves(&d, 2), [(0x100000, pa)]);
    assert_eq!(dart_counts(&frames, &f), [1]);
    // An owned map through the sibling is owned from both streams.
    assert_eq!(d.unmap(1, 0x100000, PAGE), Ok(1));
    let b = d.map_owned(2, 0x100000, &f, Perm::R, None).unwrap();
    assert_eq!(d.map_id(1, 0x100000), Ok(Some(b)));
    assert_eq!(d.unmap_owned(1, 0x100000, &[b], OwnedScope::Whole), Ok(1));
    assert_eq!((leaves(&d, 1), leaves(&d, 2)), (vec![], vec![]));
    assert_eq!(d.check_provenance(), Ok(()));
}

#[test]
fn a_ttbr_repoint_takes_the_page_out_of_the_owners_reach_and_back() {
    let (frames, d) = soc(Variant::T8020);
    let dev = frames.alloc(FrameType::UserData, 1).unwrap();
    let fw = frames.alloc(FrameType::KernelShared, 1).unwrap();
    let a = d.map_owned(1, 0x100000, &dev, Perm::RW, None).unwrap();
    d.map(2, 0x100000, &fw, Perm::R, None).unwrap();
    let (root1, root2) = (d.ttbr(1, 0).unwrap().unwrap(), d.ttbr(2, 0).unwrap().unwrap());
    d.set_ttbr(1, 0, Some(root2)).unwrap();

    assert_eq!(d.map_id(1, 0x100000), Ok(None));
    for scope in [OwnedScope::Whole, OwnedScope::Matching] {
        assert_eq!(
            d.unmap_owned(1, 0x100000, &[a], scope),
            Err(DartError::NotMapped { sid: 1, iova: 0x100000, len: PAGE })
        );
    }
    let fw_pa = frames.pa_of(fw[0]).unwrap();
    assert_eq!((leaves(&d, 1), leaves(&d, 2)), (vec![(0x100000, fw_pa)], vec![(0x100000, fw_pa)]));
    assert_eq!(dart_counts(&frames, &[dev[0], fw[0]]), [1, 1]);
    // Back on its own tables, the page is the owner's again.
    d.set_ttbr(1, 0, Some(root1)).unwrap();
    assert_eq!(d.map_id(1, 0x100000), Ok(Some(a)));
    assert_eq!(d.unmap_owned(1, 0x100000, &[a], OwnedScope::Whole), Ok(1));
    assert_eq!(dart_counts(&frames, &[dev[0], fw[0]]), [0, 1]);
    assert_eq!(d.check_provenance(), Ok(()));
}

#[test]
fn a_four_level_toggle_takes_the_page_out_of_the_owners_reach_and_back() {
    let (frames, d) = soc(Variant::T8110);
    let dev = frames.alloc(FrameType::UserData, 1).unwrap();
    let fw = frames.alloc(FrameType::KernelShared, 1).unwrap();
    let x = 0x200_0000; // two-level root entry 1; four-level root entry 0
    let a = d.map_owned(1, x, &dev, Perm::RW, None).unwrap();
    let four = StreamConfig { four_level: true, ..StreamConfig::TRANSLATING };
    d.set_stream_config(1, four).unwrap();
    d.map(1, x, &fw, Perm::R, None).unwrap();

    assert_eq!(d.map_id(1, x), Ok(None));
    assert_eq!(d.unmap_owned(1, x, &[a], OwnedScope::Whole), Err(DartError::NotMapped { sid: 1, iova: x, len: PAGE }));
    let fw_pa = frames.pa_of(fw[0]).unwrap();
    assert_eq!(leaves(&d, 1), [(x, fw_pa)]);
    assert_eq!(dart_counts(&frames, &[dev[0], fw[0]]), [1, 1]);
    d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    assert_eq!(d.map_id(1, x), Ok(Some(a)));
    assert_eq!(d.unmap_owned(1, x, &[a], OwnedScope::Matching), Ok(1));
    assert_eq!(dart_counts(&frames, &[dev[0], fw[0]]), [0, 1]);
    assert_eq!(d.check_provenance(), Ok(()));
}

#[test]
fn bad_owned_unmaps_are_refused_and_change_nothing() {
    let (frames, d) = soc(Variant::T8110);
    let f = frames.alloc(FrameType::UserData, 1).unwrap();
    let a = d.map_owned(1, 0x100000, &f, Perm::RW, None).unwrap();
    let refused = [
        (d.unmap_owned(1, 0x100000, &[], OwnedScope::Whole), "empty range"),
        (d.unmap_owned(1, 0x100010, &[a], OwnedScope::Whole), "IOVA and length must be page aligned"),
        (d.unmap_owned(1, !(PAGE - 1), &[a, a], OwnedScope::Matching), "IOVA range overflows"),
    ];
    for (r, why) in refused {
        assert!(matches!(r, Err(DartError::BadRange { reason, .. }) if reason == why), "{r:?}");
    }
    assert_eq!(
        d.unmap_owned(99, 0x100000, &[a], OwnedScope::Whole),
        Err(DartError::NoSuchStream { sid: 99, streams: 16 })
    );
    // An id the DART never handed out matches nothing.
    let foreign = d.map_owned(1, 0x200000, &frames.alloc(FrameType::UserData, 1).unwrap(), Perm::R, None).unwrap();
    assert_eq!(
        d.unmap_owned(1, 0x100000, &[foreign], OwnedScope::Matching),
        Err(DartError::NotMapped { sid: 1, iova: 0x100000, len: PAGE })
    );
    assert_eq!(d.map_id(1, 0x100000), Ok(Some(a)));
    assert_eq!(dart_counts(&frames, &f), [1]);
}
