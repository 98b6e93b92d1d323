//! The monitor (docs/design.md §3, "Driver-built tables"): every entry a
//! driver writes is validated as the mapper would, every refusal is the
//! exact error and changes nothing, and a cleared entry keeps what it named
//! counted until a flush covers it. Each test checks the error, then the
//! whole state it guards (entries, counts, tables), as pKVM's ownership
//! selftests do.

use dart::pte::{Leaf, Subpage};
use dart::{Dart, DartConfig, DartError, Invalidation, StreamConfig, Variant};
use frame_table::{Counter, Frame, FrameTable, FrameTableConfig, FrameType, OnViolation};
use std::sync::Arc;

mod common;
use common::Rig;

const SID: u32 = 1;

fn rig_with(variant: Variant, invalidation: Invalidation, mode: OnViolation) -> Rig {
    Rig::new(variant, invalidation, mode, SID)
}

fn rig(variant: Variant) -> Rig {
    rig_with(variant, Invalidation::Strict, OnViolation::Reject)
}

impl Rig {
    fn alloc(&self, ty: FrameType) -> (Frame, u64) {
        let f = self.frames.alloc(ty, 1).unwrap()[0];
        (f, self.frames.pa_of(f).unwrap())
    }

    fn page(&self) -> u64 {
        1 << self.dart.page_shift()
    }

    /// Every entry of both tables, the frame table's counts of `frames`, the
    /// DART's tables and whether its invariants hold.
    fn state(&self, frames: &[Frame]) -> (Vec<u64>, Vec<(u64, u64)>, usize, bool) {
        let n = self.dart.entries_per_table();
        let entries = [self.root, self.leaves]
            .iter()
            .flat_map(|&t| (0..n).map(move |i| (t, i)))
            .map(|(t, i)| self.dart.read_table_entry(t, i).unwrap())
            .collect();
        let counts = frames
            .iter()
            .map(|&f| {
                let s = self.frames.state(f).unwrap();
                (s.count(Counter::Dart), s.count(Counter::PendingInvalidation))
            })
            .collect();
        let ok = self.dart.check_restricted_unreachable().is_ok() && self.dart.check_iotlb_coherent().is_ok();
        (entries, counts, self.dart.table_frames().len(), ok)
    }
}

#[test]
fn an_honest_driver_tree_translates_and_reads_back_on_every_variant() {
    for variant in [Variant::T8020, Variant::T6000, Variant::T8110] {
        let r = rig(variant);
        let (data, pa) = r.alloc(FrameType::UserData);
        let pte = r.leaf(pa, true, true);
        r.dart.write_table_entry(r.leaves, 3, pte).unwrap();
        assert_eq!(r.dart.read_table_entry(r.leaves, 3), Ok(pte));
        let iova = 3 * r.page();
        r.dart.dma_write(SID, iova + 8, b"driver").unwrap();
        let mut buf = [0u8; 6];
        r.frames.aperture_read(pa + 8, &mut buf).unwrap();
        assert_eq!(&buf, b"driver", "{variant:?}");
        r.dart.dma_read(SID, iova + 8, &mut buf).unwrap();
        assert_eq!(&buf, b"driver");
        assert_eq!(r.frames.state(data).unwrap().count(Counter::Dart), 1);
        assert_eq!(r.dart.mappings(SID).unwrap().len(), 1);
        assert_eq!(r.dart.table_frames().len(), 2);
        r.dart.check_restricted_unreachable().unwrap();
        r.dart.check_iotlb_coherent().unwrap();
        let counts = r.dart.dart_counts();
        assert_eq!(counts.get(&data), Some(&(1, 0)));
    }
}

#[test]
fn forged_leaves_are_refused_and_change_nothing() {
    let r = rig(Variant::T8110);
    let (secret, secret_pa) = r.alloc(FrameType::KernelRestricted);
    let (ro, ro_pa) = r.alloc(FrameType::ReadOnly);
    let (mmio, mmio_pa) = r.alloc(FrameType::Mmio);
    let (pt, pt_pa) = r.alloc(FrameType::PageTable);
    let all = [secret, ro, mmio, pt];
    let before = r.state(&all);
    let forged = [
        r.leaf(secret_pa, true, false),
        r.leaf(ro_pa, true, true),
        r.leaf(mmio_pa, true, true),
        r.leaf(pt_pa, true, false),
        r.leaf(r.root, true, true),
        r.leaf(r.leaves, true, false),
    ];
    for (i, &pte) in forged.iter().enumerate() {
        let e = r.dart.write_table_entry(r.leaves, i as u64, pte).unwrap_err();
        assert_eq!(e.kind(), "forbidden-type", "entry {i}: {e}");
        assert!(matches!(e, DartError::Frame(frame_table::Error::ForbiddenType { .. })), "{e:?}");
    }
    assert_eq!(r.state(&all), before);
    let e = r.dart.dma_read(SID, 0, &mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), "fault:no-pte");
}

#[test]
fn malformed_writes_are_bad_range_and_a_valid_entry_is_never_overwritten() {
    let r = rig(Variant::T8020);
    let (data, pa) = r.alloc(FrameType::UserData);
    let pte = r.leaf(pa, true, false);
    r.dart.write_table_entry(r.leaves, 0, pte).unwrap();
    let before = r.state(&[data]);
    let n = r.dart.entries_per_table();
    assert!(matches!(r.dart.write_table_entry(r.leaves, n, pte), Err(DartError::BadEntry { index, .. }) if index == n));
    assert_eq!(r.dart.read_table_entry(r.leaves, n).unwrap_err().kind(), "bad-range");
    assert_eq!(r.dart.write_table_entry(r.leaves + 8, 0, pte).unwrap_err().kind(), "bad-range", "unaligned table");
    assert_eq!(r.dart.write_table_entry(1 << 40, 0, pte).unwrap_err().kind(), "bad-range", "table outside memory");
    // A leaf naming memory that does not exist.
    let beyond = r.leaf(16 << 20, true, false);
    assert_eq!(r.dart.write_table_entry(r.leaves, 1, beyond).unwrap_err().kind(), "bad-range");
    // A leaf granting nothing: no-read and no-write bits both set.
    let none = pte | dart::pte::dart1::PTE_PROT_NO_READ | dart::pte::dart1::PTE_PROT_NO_WRITE;
    assert_eq!(r.dart.write_table_entry(r.leaves, 1, none).unwrap_err().kind(), "bad-range");
    // Over the valid entry, even the same value: clear it first.
    assert_eq!(r.dart.write_table_entry(r.leaves, 0, pte), Err(DartError::EntryInUse { table: r.leaves, index: 0 }));
    let other = r.leaf(pa, true, true);
    assert_eq!(r.dart.write_table_entry(r.leaves, 0, other).unwrap_err().kind(), "iova-in-use");
    assert_eq!(r.state(&[data]), before);
}

#[test]
fn tables_must_be_registered_leveled_and_linked_once() {
    let r = rig(Variant::T8110);
    let fmt = r.dart.pte_format();
    let shift = r.dart.page_shift();
    let (_loose, loose_pa) = r.alloc(FrameType::DartTable);
    let (user, user_pa) = r.alloc(FrameType::UserData);
    let before = r.state(&[user]);
    // A descriptor naming an unregistered table, a data frame, the root, the linked leaf table.
    let e = r.dart.write_table_entry(r.root, 1, fmt.encode_table(shift, loose_pa).unwrap()).unwrap_err();
    assert!(matches!(e, DartError::NotDriverTable { pa, .. } if pa == loose_pa), "{e:?}");
    assert_eq!(e.kind(), "forbidden-type");
    let e = r.dart.write_table_entry(r.root, 1, fmt.encode_table(shift, user_pa).unwrap()).unwrap_err();
    assert_eq!(e.kind(), "forbidden-type");
    let e = r.dart.write_table_entry(r.root, 1, fmt.encode_table(shift, r.leaves).unwrap()).unwrap_err();
    assert!(matches!(e, DartError::TableInUse { pa, .. } if pa == r.leaves), "{e:?}");
    let e = r.dart.write_table_entry(r.root, 1, fmt.encode_table(shift, r.root).unwrap()).unwrap_err();
    assert_eq!(e.kind(), "table-in-use");
    assert_eq!(r.state(&[user]), before);
    // Registered by a zero write, it still has no level: no valid entry yet.
    r.dart.write_table_entry(loose_pa, 0, 0).unwrap();
    let e = r.dart.write_table_entry(loose_pa, 0, r.leaf(user_pa, true, false)).unwrap_err();
    assert!(matches!(e, DartError::BadEntry { reason, .. } if reason.contains("no level")), "{e:?}");
    assert_eq!(r.frames.state(user).unwrap().count(Counter::Dart), 0);
    // A data frame is not a table to write into.
    let e = r.dart.write_table_entry(user_pa, 0, 0).unwrap_err();
    assert_eq!(e, DartError::NotDriverTable { pa: user_pa, reason: "not a dart-table frame" });
    assert_eq!(r.dart.table_frames().len(), 3);
}

#[test]
fn one_owner_per_tree() {
    let r = rig(Variant::T8020);
    let (data, _) = r.alloc(FrameType::UserData);
    // The mapper does not map through a driver root.
    let e = r.dart.map(SID, 0x10_0000, &[data], frame_table::Perm::R, None).unwrap_err();
    assert_eq!(e.kind(), "forbidden-type");
    assert_eq!(r.dart.unmap(SID, 0, r.page()).unwrap_err().kind(), "not-mapped");
    // The monitor does not write the mapper's tables.
    r.dart.set_stream_config(2, StreamConfig::TRANSLATING).unwrap();
    r.dart.map(2, 0, &[data], frame_table::Perm::R, None).unwrap();
    let mroot = r.dart.ttbr(2, 0).unwrap().unwrap();
    let e = r.dart.write_table_entry(mroot, 5, 0).unwrap_err();
    assert_eq!(e, DartError::NotDriverTable { pa: mroot, reason: "a table of this DART's mapper" });
    // But it reads them (the value the walker reads).
    assert_ne!(r.dart.read_table_entry(mroot, 0).unwrap(), 0);
    // Another DART may not write, link or name this DART's tables.
    let mut c = DartConfig::new("other", Variant::T8020);
    c.invalidation = Invalidation::Strict;
    let other = Dart::new(r.frames.clone(), c).unwrap();
    let e = other.write_table_entry(r.leaves, 9, 0).unwrap_err();
    assert_eq!(e, DartError::NotDriverTable { pa: r.leaves, reason: "another DART holds it" });
    let violations = r.frames.violations();
    let e = other.set_ttbr(SID, 0, Some(r.root)).unwrap_err();
    assert_eq!(e, DartError::Frame(frame_table::Error::ForeignTable { pa: r.root }));
    assert_eq!(r.frames.violations(), violations + 1);
    assert_eq!(other.ttbr(SID, 0), Ok(None));
    assert_eq!(other.table_frames(), Vec::<Frame>::new());
}

#[test]
fn a_cleared_leaf_stays_counted_until_a_flush_in_both_modes() {
    for invalidation in [Invalidation::Strict, Invalidation::Deferred] {
        let r = rig_with(Variant::T8110, invalidation, OnViolation::Reject);
        let (data, pa) = r.alloc(FrameType::UserData);
        r.dart.write_table_entry(r.leaves, 2, r.leaf(pa, true, true)).unwrap();
        let iova = 2 * r.page();
        let mut buf = [0u8; 4];
        r.dart.dma_read(SID, iova, &mut buf).unwrap();
        r.dart.write_table_entry(r.leaves, 2, 0).unwrap();
        // Pending: counted, not freeable; the stale IOTLB entry may serve.
        assert_eq!(r.frames.state(data).unwrap().count(Counter::PendingInvalidation), 1);
        assert_eq!(r.frames.state(data).unwrap().count(Counter::Dart), 0);
        let e = r.frames.free(data).unwrap_err();
        assert_eq!(e.kind(), "frame-busy", "{invalidation:?}: {e}");
        assert_eq!(r.frames.state(data).unwrap().ty(), FrameType::UserData);
        r.dart.check_iotlb_coherent().unwrap();
        assert_eq!(r.dart.dart_counts().get(&data), Some(&(0, 1)));
        // The flush of another stream does not cover it.
        r.dart.flush(Some(5)).unwrap();
        assert_eq!(r.frames.state(data).unwrap().count(Counter::PendingInvalidation), 1);
        r.dart.flush(Some(SID)).unwrap();
        assert_eq!(r.frames.state(data).unwrap().count(Counter::PendingInvalidation), 0);
        assert_eq!(r.dart.dma_read(SID, iova, &mut buf).unwrap_err().kind(), "fault:no-pte");
        r.frames.free(data).unwrap();
        assert_eq!(r.dart.dart_counts().get(&data), None);
    }
}

#[test]
fn clear_then_free_before_the_flush_halts_in_panic_mode() {
    let r = rig_with(Variant::T8020, Invalidation::Deferred, OnViolation::Panic);
    let (data, pa) = r.alloc(FrameType::UserData);
    r.dart.write_table_entry(r.leaves, 0, r.leaf(pa, true, false)).unwrap();
    r.dart.write_table_entry(r.leaves, 0, 0).unwrap();
    let e = r.frames.free(data).unwrap_err();
    assert_eq!(e.kind(), "panic");
    assert!(r.frames.halted().is_some());
    assert_eq!(r.frames.state(data).unwrap().ty(), FrameType::UserData);
    assert_eq!(r.dart.write_table_entry(r.leaves, 1, 0).unwrap_err().kind(), "halted");
}

#[test]
fn a_table_is_released_only_empty_unlinked_and_unnamed() {
    let r = rig(Variant::T6000);
    let (data, pa) = r.alloc(FrameType::UserData);
    let leaves = r.frames.frame_of(r.leaves).unwrap();
    let root = r.frames.frame_of(r.root).unwrap();
    r.dart.write_table_entry(r.leaves, 0, r.leaf(pa, true, false)).unwrap();
    let in_use = |reason: &'static str, pa| Err(DartError::TableInUse { pa, reason });
    assert_eq!(r.dart.release_table(r.leaves), in_use("it still has valid entries", r.leaves));
    r.dart.write_table_entry(r.leaves, 0, 0).unwrap();
    assert_eq!(
        r.dart.release_table(r.leaves),
        in_use("an entry links it (a cleared one: until the flush that covers it)", r.leaves)
    );
    r.dart.write_table_entry(r.root, 0, 0).unwrap();
    // Unlinked, but the clear is pending: still linked, not freeable.
    assert_eq!(r.dart.release_table(r.leaves).unwrap_err().kind(), "table-in-use");
    assert_eq!(r.frames.free(leaves).unwrap_err().kind(), "frame-busy");
    r.dart.flush(None).unwrap();
    r.dart.release_table(r.leaves).unwrap();
    assert_eq!(r.dart.release_table(r.root), in_use("a TTBR names it", r.root));
    r.dart.set_ttbr(SID, 0, None).unwrap();
    r.dart.release_table(r.root).unwrap();
    assert_eq!(r.dart.release_table(r.root).unwrap_err().kind(), "forbidden-type");
    assert_eq!(r.dart.table_frames(), Vec::<Frame>::new());
    r.frames.free_all(&[root, leaves, data]).unwrap();
    for f in [root, leaves, data] {
        let s = r.frames.state(f).unwrap();
        assert_eq!((s.ty(), s.counts().any()), (FrameType::Free, false));
    }
}

#[test]
fn a_four_level_tree_translates_through_three_table_levels() {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
    let dart = Dart::new(frames.clone(), DartConfig::new("d", Variant::T8110)).unwrap();
    dart.set_stream_config(SID, StreamConfig { four_level: true, ..StreamConfig::TRANSLATING }).unwrap();
    let t = frames.alloc(FrameType::DartTable, 3).unwrap();
    let pas: Vec<u64> = t.iter().map(|&f| frames.pa_of(f).unwrap()).collect();
    for &pa in &pas {
        dart.write_table_entry(pa, 0, 0).unwrap();
    }
    let (fmt, shift) = (dart.pte_format(), dart.page_shift());
    dart.set_ttbr(SID, 0, Some(pas[0])).unwrap();
    dart.write_table_entry(pas[0], 0, fmt.encode_table(shift, pas[1]).unwrap()).unwrap();
    // The level-1 table is not a leaf table in a three-level tree.
    let data = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    let leaf = Leaf { pa: frames.pa_of(data).unwrap(), read: true, write: true, subpage: Subpage::WHOLE };
    let pte = fmt.encode_leaf(shift, &leaf).unwrap();
    assert_eq!(dart.write_table_entry(pas[1], 0, pte).unwrap_err().kind(), "forbidden-type", "a leaf read as a table");
    dart.write_table_entry(pas[1], 0, fmt.encode_table(shift, pas[2]).unwrap()).unwrap();
    dart.write_table_entry(pas[2], 1, pte).unwrap();
    dart.dma_write(SID, 1 << shift, b"deep").unwrap();
    let mut buf = [0u8; 4];
    frames.aperture_read(leaf.pa, &mut buf).unwrap();
    assert_eq!(&buf, b"deep");
    dart.check_restricted_unreachable().unwrap();
}

/// Linux's `apple_dart_setup_translation` writes a stream's TTBR while its
/// TCR is still 0, then TCR = TRANSLATE | FOUR_LEVEL: the tree's depth is
/// fixed by the first entry written into the root, not by the TTBR write.
/// Streams naming one root with different depths leave its depth unknown.
#[test]
fn a_roots_depth_is_fixed_by_its_first_entry_after_ttbr_then_tcr() {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
    let dart = Dart::new(frames.clone(), DartConfig::new("d", Variant::T8110)).unwrap();
    let t = frames.alloc(FrameType::DartTable, 3).unwrap();
    let pas: Vec<u64> = t.iter().map(|&f| frames.pa_of(f).unwrap()).collect();
    for &pa in &pas {
        dart.write_table_entry(pa, 0, 0).unwrap();
    }
    let (fmt, shift) = (dart.pte_format(), dart.page_shift());
    let desc = fmt.encode_table(shift, pas[1]).unwrap();
    dart.set_ttbr(SID, 0, Some(pas[0])).unwrap();
    dart.set_ttbr(2, 0, Some(pas[0])).unwrap();
    let four = StreamConfig { four_level: true, ..StreamConfig::TRANSLATING };
    dart.set_stream_config(SID, four).unwrap();
    dart.set_stream_config(2, StreamConfig::TRANSLATING).unwrap();
    let e = dart.write_table_entry(pas[0], 0, desc).unwrap_err();
    assert!(matches!(e, DartError::BadEntry { reason, .. } if reason.contains("disagree")), "{e:?}");
    assert_eq!(dart.read_table_entry(pas[0], 0), Ok(0));
    dart.set_stream_config(2, four).unwrap();
    dart.write_table_entry(pas[0], 0, desc).unwrap();
    // Three table levels now: the level-1 table holds descriptors.
    dart.write_table_entry(pas[1], 0, fmt.encode_table(shift, pas[2]).unwrap()).unwrap();
    let data = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    let leaf = Leaf { pa: frames.pa_of(data).unwrap(), read: true, write: false, subpage: Subpage::WHOLE };
    dart.write_table_entry(pas[2], 0, fmt.encode_leaf(shift, &leaf).unwrap()).unwrap();
    dart.dma_read(SID, 0, &mut [0u8; 4]).unwrap();
    dart.dma_read(2, 0, &mut [0u8; 4]).unwrap();
    // TCR.FOUR_LEVEL cleared under a built tree: the walk faults, nothing is reached.
    dart.set_stream_config(2, StreamConfig::TRANSLATING).unwrap();
    assert_eq!(dart.dma_read(2, 0, &mut [0u8; 4]).unwrap_err().kind(), "fault:forbidden-frame");
    dart.check_restricted_unreachable().unwrap();
    // A root no TTBR names has no depth to give a first entry.
    let lone = frames.pa_of(frames.alloc(FrameType::DartTable, 1).unwrap()[0]).unwrap();
    dart.write_table_entry(lone, 0, 0).unwrap();
    dart.set_ttbr(3, 0, Some(lone)).unwrap();
    dart.set_ttbr(3, 0, None).unwrap();
    let e = dart.write_table_entry(lone, 0, fmt.encode_table(shift, pas[2]).unwrap()).unwrap_err();
    assert!(matches!(e, DartError::BadEntry { reason, .. } if reason.contains("no TTBR")), "{e:?}");
}

/// The interrupt callback runs on the faulting DMA's thread, inside that
/// DMA: every call that waits for the DART's DMA in flight would wait for
/// itself, so from the callback each is refused `in-interrupt` and changes
/// nothing; reading and clearing ERROR still work, and the DMA returns.
#[test]
fn calls_that_wait_for_dma_refuse_inside_the_interrupt_callback() {
    let r = rig(Variant::T8110);
    let (data, pa) = r.alloc(FrameType::UserData);
    r.dart.write_table_entry(r.leaves, 1, r.leaf(pa, true, false)).unwrap();
    let (spare, spare_pa) = r.alloc(FrameType::DartTable);
    r.dart.write_table_entry(spare_pa, 0, 0).unwrap();
    let (leaves, page) = (r.leaves, r.page());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (weak, log) = (Arc::downgrade(&r.dart), seen.clone());
    r.dart.set_interrupt(Some(Arc::new(move |_: &dart::Fault| {
        let Some(d) = weak.upgrade() else { return };
        let mut log = log.lock().unwrap();
        log.push(d.release_table(spare_pa));
        log.push(d.flush(None));
        log.push(d.write_table_entry(leaves, 1, 0));
        log.push(d.unmap(SID, 0, page).map(drop));
        log.push(d.mmio_write(0x80, 0).map_err(|e| match e {
            dart::MmioError::Refused { source, .. } => source,
            other => panic!("{other:?}"),
        }));
        log.push(d.mmio_read(0x100).map(drop).map_err(|e| panic!("{e:?}")));
        d.clear_error();
    })));
    let e = r.dart.dma_read(SID, 0, &mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), "fault:no-pte");
    let calls = ["release_table", "flush", "write_table_entry", "unmap", "flush"];
    let seen = seen.lock().unwrap();
    // (The t8110 TLB_CMD flush-all runs `flush`.)
    for (got, call) in seen.iter().zip(calls) {
        assert_eq!(got, &Err(DartError::InInterrupt { call }), "{call}");
        assert_eq!(got.as_ref().unwrap_err().kind(), "in-interrupt");
    }
    assert_eq!(seen[5], Ok(()), "registers can be read");
    assert_eq!(r.dart.error().first, None, "ERROR cleared from the callback");
    assert_eq!(r.dart.read_table_entry(r.leaves, 1), Ok(r.leaf(pa, true, false)));
    assert_eq!(r.frames.state(data).unwrap().count(Counter::Dart), 1);
    assert!(r.dart.table_frames().contains(&spare));
    // Outside the callback the same calls go through.
    r.dart.write_table_entry(r.leaves, 1, 0).unwrap();
    r.dart.flush(None).unwrap();
    r.dart.release_table(spare_pa).unwrap();
}
