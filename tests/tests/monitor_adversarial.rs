//! Adversarial tests of the monitor (docs/design.md §3, "Driver-built
//! tables (the monitor path)"; `dart/src/mapper/monitor.rs`, M1–M8): forged
//! descriptors, TTBR tricks, clear-then-free sequences, extreme values,
//! counter limits, a halted system and racing threads. Each test asserts
//! the behaviour the design promises: the exact error, then the whole state
//! (entries, frame counts, tables, `dart_counts` against the frame table,
//! and the invariant checks).

use dart::pte::{Leaf, Subpage};
use dart::vm_memory::Permissions;
use dart::{Dart, DartConfig, DartError, Dir, Invalidation, StreamConfig, Variant};
use frame_table::{Counter, Frame, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

const SID: u32 = 1;
const MEM: u64 = 16 << 20;

struct Sys {
    frames: Arc<FrameTable>,
    dart: Arc<Dart>,
}

fn frames_with(mode: OnViolation) -> Arc<FrameTable> {
    Arc::new(FrameTable::new(FrameTableConfig::with_memory(MEM).on_violation(mode)).unwrap())
}

fn dart_on(frames: &Arc<FrameTable>, name: &str, variant: Variant, invalidation: Invalidation) -> Arc<Dart> {
    let mut c = DartConfig::new(name, variant);
    c.invalidation = invalidation;
    Arc::new(Dart::new(frames.clone(), c).unwrap())
}

fn sys(variant: Variant, invalidation: Invalidation, mode: OnViolation) -> Sys {
    let frames = frames_with(mode);
    let dart = dart_on(&frames, "d", variant, invalidation);
    Sys { frames, dart }
}

fn four() -> StreamConfig {
    StreamConfig { four_level: true, ..StreamConfig::TRANSLATING }
}

impl Sys {
    /// The same system with streams `sids` configured translating.
    fn translating(self, sids: &[u32]) -> Sys {
        for &sid in sids {
            self.dart.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
        }
        self
    }

    /// A fresh `dart-table` frame, registered by a zeroing store.
    fn table(&self) -> (Frame, u64) {
        table_on(&self.frames, &self.dart)
    }

    fn data(&self, ty: FrameType) -> (Frame, u64) {
        let f = self.frames.alloc(ty, 1).unwrap()[0];
        (f, self.frames.pa_of(f).unwrap())
    }

    fn leaf(&self, pa: u64, read: bool, write: bool) -> u64 {
        leaf_of(&self.dart, pa, read, write)
    }

    fn desc(&self, pa: u64) -> u64 {
        self.dart.pte_format().encode_table(self.dart.page_shift(), pa).unwrap()
    }

    fn page(&self) -> u64 {
        1 << self.dart.page_shift()
    }

    /// A two-level tree on `sid`: root and one leaf table linked at index 0.
    fn tree(&self, sid: u32) -> (u64, u64) {
        let (_, root) = self.table();
        let (_, leaves) = self.table();
        self.dart.set_ttbr(sid, 0, Some(root)).unwrap();
        self.dart.write_table_entry(root, 0, self.desc(leaves)).unwrap();
        (root, leaves)
    }

    /// [`Sys::tree`] on `sid` with a fresh `user-data` frame mapped read-write
    /// at entry `index` of the leaf table: `(root, leaves, data, data_pa)`.
    fn tree_with_leaf(&self, sid: u32, index: u64) -> (u64, u64, Frame, u64) {
        let (root, leaves) = self.tree(sid);
        let (data, dpa) = self.data(FrameType::UserData);
        self.dart.write_table_entry(leaves, index, self.leaf(dpa, true, true)).unwrap();
        (root, leaves, data, dpa)
    }

    /// A three-level tree on `sid` (whose stream must already be four-level
    /// when it matters): root, level-1 and leaf table, each linked at index
    /// 0 of its parent, as `(frame, pa)`.
    fn tree3(&self, sid: u32) -> [(Frame, u64); 3] {
        let [r, a, b] = [self.table(), self.table(), self.table()];
        self.dart.set_ttbr(sid, 0, Some(r.1)).unwrap();
        self.dart.write_table_entry(r.1, 0, self.desc(a.1)).unwrap();
        self.dart.write_table_entry(a.1, 0, self.desc(b.1)).unwrap();
        [r, a, b]
    }

    fn counts(&self, f: Frame) -> (u64, u64) {
        let s = self.frames.state(f).unwrap();
        (s.count(Counter::Dart), s.count(Counter::PendingInvalidation))
    }

    fn entries(&self, table: u64) -> Vec<u64> {
        (0..self.dart.entries_per_table()).map(|i| self.dart.read_table_entry(table, i).unwrap()).collect()
    }

    fn check(&self) {
        check_all(&self.frames, &[&self.dart]);
    }
}

fn table_on(frames: &FrameTable, dart: &Dart) -> (Frame, u64) {
    let f = frames.alloc(FrameType::DartTable, 1).unwrap()[0];
    let pa = frames.pa_of(f).unwrap();
    dart.write_table_entry(pa, 0, 0).unwrap();
    (f, pa)
}

fn leaf_of(dart: &Dart, pa: u64, read: bool, write: bool) -> u64 {
    let leaf = Leaf { pa, read, write, subpage: Subpage::WHOLE };
    dart.pte_format().encode_leaf(dart.page_shift(), &leaf).unwrap()
}

/// `counts-consistent` (every frame's DART and pending counts equal what
/// the DARTs account for), `restricted-unreachable` and `iotlb-coherent`.
fn check_all(frames: &FrameTable, darts: &[&Dart]) {
    let mut sum: HashMap<Frame, (u64, u64)> = HashMap::new();
    for d in darts {
        for (f, (live, pending)) in d.dart_counts() {
            let e = sum.entry(f).or_default();
            e.0 += live;
            e.1 += pending;
        }
    }
    for (f, s) in frames.states() {
        let got = (s.count(Counter::Dart), s.count(Counter::PendingInvalidation));
        let want = sum.get(&f).copied().unwrap_or_default();
        assert_eq!(got, want, "{f}: frame table counts (dart, pending) vs the DARTs' accounts");
    }
    for d in darts {
        d.check_restricted_unreachable().unwrap();
        d.check_iotlb_coherent().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Forged descriptors: cycles, sharing, re-linking.
// ---------------------------------------------------------------------------

/// In a three-level tree, a descriptor naming the table itself, an ancestor,
/// a linked sibling level or a table of the wrong level is refused and
/// changes nothing; a leaf-table entry naming a table is a forged leaf.
#[test]
fn self_ancestor_and_cross_level_links_are_refused() {
    let s = sys(Variant::T8110, Invalidation::Strict, OnViolation::Reject);
    s.dart.set_stream_config(SID, four()).unwrap();
    let [(_, r), (_, a), (_, b)] = s.tree3(SID);
    let (_, loose) = s.table();
    let (data, dpa) = s.data(FrameType::UserData);
    s.dart.write_table_entry(b, 0, s.leaf(dpa, true, true)).unwrap();
    let before: Vec<Vec<u64>> = [r, a, b, loose].iter().map(|&t| s.entries(t)).collect();
    let tables = s.dart.table_frames().len();
    for (table, target, kind) in [
        (r, r, "table-in-use"),       // self link at the root
        (a, a, "table-in-use"),       // self link at level 1
        (a, r, "table-in-use"),       // ancestor
        (r, b, "table-in-use"),       // level-2 table under the root
        (a, b, "table-in-use"),       // already linked (same parent, other index)
        (b, a, "forbidden-type"),     // a leaf-table entry naming a table: a forged leaf
        (b, r, "forbidden-type"),     // ...naming the root
        (b, loose, "forbidden-type"), // ...naming an unlinked table
    ] {
        let e = s.dart.write_table_entry(table, 1, s.desc(target)).unwrap_err();
        assert_eq!(e.kind(), kind, "{table:#x}[1] -> {target:#x}: {e:?}");
    }
    let after: Vec<Vec<u64>> = [r, a, b, loose].iter().map(|&t| s.entries(t)).collect();
    assert_eq!(after, before);
    assert_eq!(s.dart.table_frames().len(), tables);
    assert_eq!(s.counts(data), (1, 0));
    // The loose table has no level: neither a leaf nor a descriptor goes in.
    for v in [s.leaf(dpa, true, false), s.desc(b)] {
        let e = s.dart.write_table_entry(loose, 3, v).unwrap_err();
        assert!(matches!(e, DartError::BadEntry { reason, .. } if reason.contains("no level")), "{e:?}");
    }
    s.dart.dma_write(SID, 0, b"ok").unwrap();
    s.check();
}

/// A child whose parent entry was cleared is linked nowhere else until the
/// flush that covers the clear; after it, once, anywhere at its level.
#[test]
fn a_child_is_never_shared_before_or_after_its_unlink_completes() {
    for invalidation in [Invalidation::Strict, Invalidation::Deferred] {
        let s = sys(Variant::T8110, invalidation, OnViolation::Reject).translating(&[SID, 2]);
        let (r, c, data, _) = s.tree_with_leaf(SID, 4);
        let (_, r2) = s.table();
        s.dart.set_ttbr(2, 0, Some(r2)).unwrap();
        s.dart.dma_read(SID, 4 * s.page(), &mut [0u8; 8]).unwrap();
        s.dart.write_table_entry(r, 0, 0).unwrap();
        // Pending: not under the same parent, not under another root.
        for (t, i) in [(r, 0), (r, 1), (r2, 0)] {
            let e = s.dart.write_table_entry(t, i, s.desc(c)).unwrap_err();
            assert_eq!(e, DartError::TableInUse { pa: c, reason: "another entry links it" }, "{invalidation:?}");
        }
        assert_eq!(s.dart.read_table_entry(r2, 0), Ok(0));
        // Flushing stream 2 does not cover the clear (stream 1 reached it).
        s.dart.flush(Some(2)).unwrap();
        assert_eq!(s.dart.write_table_entry(r2, 0, s.desc(c)).unwrap_err().kind(), "table-in-use");
        s.dart.flush(Some(SID)).unwrap();
        // Now under stream 2's root, and only there.
        s.dart.write_table_entry(r2, 7, s.desc(c)).unwrap();
        let e = s.dart.write_table_entry(r, 0, s.desc(c)).unwrap_err();
        assert_eq!(e.kind(), "table-in-use");
        let mut buf = [0u8; 8];
        assert_eq!(s.dart.dma_read(SID, 4 * s.page(), &mut buf).unwrap_err().kind(), "fault:no-l1");
        let iova2 = (7 << (s.dart.page_shift() + 11)) + 4 * s.page();
        s.dart.dma_read(2, iova2, &mut buf).unwrap();
        assert_eq!(s.counts(data), (1, 0));
        s.check();
    }
}

/// A root released while its child's unlink is pending, freed, and its
/// frame reused (as a data frame, then as a table linked *below* the old
/// child): the stale parent link reaches nothing, counts stay exact, and
/// every table is released and freed in the end.
#[test]
fn a_released_root_frame_reused_below_its_old_child_reaches_nothing() {
    let s = sys(Variant::T8110, Invalidation::Strict, OnViolation::Reject);
    s.dart.set_stream_config(SID, four()).unwrap();
    let [(rf, r), (af, a), (bf, b)] = s.tree3(SID);
    let (data, dpa) = s.data(FrameType::UserData);
    s.dart.write_table_entry(b, 0, s.leaf(dpa, true, true)).unwrap();
    s.dart.dma_read(SID, 0, &mut [0u8; 4]).unwrap();
    // Unlink A (pending), drop the TTBR, release the root.
    s.dart.write_table_entry(r, 0, 0).unwrap();
    s.dart.set_ttbr(SID, 0, None).unwrap();
    s.dart.release_table(r).unwrap();
    assert_eq!(s.counts(rf), (0, 0));
    // Re-registered, the old root is linked below its old child (A, level 1).
    s.dart.write_table_entry(r, 0, 0).unwrap();
    s.dart.write_table_entry(a, 1, s.desc(r)).unwrap();
    // Now r is a leaf table (level 2 of a three-level tree).
    s.dart.write_table_entry(r, 2, s.leaf(dpa, true, false)).unwrap();
    assert_eq!(s.counts(data), (2, 0));
    s.check();
    // No TTBR may name a non-root.
    for t in [r, a, b] {
        let e = s.dart.set_ttbr(SID, 0, Some(t)).unwrap_err();
        assert_eq!(e, DartError::Frame(frame_table::Error::ForeignTable { pa: t }));
    }
    assert_eq!(s.dart.ttbr(SID, 0), Ok(None));
    // Tear down: clear every entry, flush, release, free.
    s.dart.write_table_entry(r, 2, 0).unwrap();
    s.dart.write_table_entry(b, 0, 0).unwrap();
    s.dart.write_table_entry(a, 1, 0).unwrap();
    s.dart.write_table_entry(a, 0, 0).unwrap();
    assert_eq!(s.counts(data), (0, 2));
    assert_eq!(s.frames.free(data).unwrap_err().kind(), "frame-busy");
    s.check();
    s.dart.flush(None).unwrap();
    assert_eq!(s.counts(data), (0, 0));
    for t in [r, b, a] {
        s.dart.release_table(t).unwrap();
    }
    assert!(s.dart.table_frames().is_empty());
    s.frames.free_all(&[rf, af, bf, data]).unwrap();
    s.check();
}

// ---------------------------------------------------------------------------
// TTBR tricks.
// ---------------------------------------------------------------------------

/// A TTBR naming a leaf table, another DART's root, a released table, an
/// unregistered table or a data frame is the foreign-TTBR breach: refused
/// (reject mode), counted once, nothing changes.
#[test]
fn ttbrs_name_only_this_darts_roots() {
    let s = sys(Variant::T8020, Invalidation::Strict, OnViolation::Reject).translating(&[SID]);
    let (r, c) = s.tree(SID);
    let other = dart_on(&s.frames, "other", Variant::T8020, Invalidation::Strict);
    let (_, or) = table_on(&s.frames, &other);
    other.set_ttbr(0, 0, Some(or)).unwrap();
    let (_, released) = s.table();
    s.dart.release_table(released).unwrap();
    let unregistered = s.frames.pa_of(s.frames.alloc(FrameType::DartTable, 1).unwrap()[0]).unwrap();
    let (_, user) = s.data(FrameType::UserData);
    let cases = [
        (c, frame_table::Error::ForeignTable { pa: c }),
        (or, frame_table::Error::ForeignTable { pa: or }),
        (released, frame_table::Error::ForeignTable { pa: released }),
        (unregistered, frame_table::Error::ForeignTable { pa: unregistered }),
        (r + 8, frame_table::Error::ForeignTable { pa: r + 8 }),
    ];
    for (idx, (pa, want)) in cases.into_iter().enumerate() {
        let v = s.frames.violations();
        let e = s.dart.set_ttbr(2, idx % 4, Some(pa)).unwrap_err();
        assert_eq!(e, DartError::Frame(want), "{pa:#x}");
        assert_eq!(s.frames.violations(), v + 1);
        assert_eq!(s.dart.ttbr(2, idx % 4), Ok(None));
    }
    let e = s.dart.set_ttbr(2, 0, Some(user)).unwrap_err();
    assert_eq!(e.kind(), "forbidden-type");
    // The unregistered table stays unregistered, the released one released.
    assert_eq!(s.dart.table_frames().len(), 2);
    assert_eq!(other.table_frames().len(), 1);
    // All four TTBRs of one stream may name the same root (aliases).
    for i in 0..4 {
        s.dart.set_ttbr(2, i, Some(r)).unwrap();
    }
    check_all(&s.frames, &[&s.dart, &other]);
}

/// Two streams with different TCR.FOUR_LEVEL naming one built root, and
/// FOUR_LEVEL set under a two-level tree: the mismatched walks fault,
/// reaching nothing, in both directions.
#[test]
fn mismatched_depth_walks_fault_in_both_directions() {
    let s = sys(Variant::T8110, Invalidation::Strict, OnViolation::Reject).translating(&[SID]);
    let (r, c, _, dpa) = s.tree_with_leaf(SID, 0);
    let (_, spa) = s.data(FrameType::KernelShared);
    s.dart.write_table_entry(c, 1, s.leaf(spa, true, true)).unwrap();
    s.dart.set_ttbr(2, 0, Some(r)).unwrap();
    s.dart.set_stream_config(2, four()).unwrap();
    for iova in [0, s.page()] {
        let e = s.dart.dma_read(2, iova, &mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), "fault:forbidden-frame", "{iova:#x}");
    }
    assert!(s.dart.mappings(2).unwrap().is_empty());
    s.check();
    // A three-level tree read with two levels.
    s.dart.set_stream_config(3, four()).unwrap();
    let [_, _, (_, b3)] = s.tree3(3);
    s.dart.write_table_entry(b3, 0, s.leaf(dpa, true, false)).unwrap();
    s.dart.dma_read(3, 0, &mut [0u8; 4]).unwrap();
    s.dart.set_stream_config(3, StreamConfig::TRANSLATING).unwrap();
    assert_eq!(s.dart.dma_read(3, 0, &mut [0u8; 4]).unwrap_err().kind(), "fault:forbidden-frame");
    assert!(s.dart.mappings(3).unwrap().is_empty());
    assert!(s.dart.iotlb_entries(3).unwrap().is_empty());
    s.check();
}

/// A root released (entry cleared, TTBR cleared) while a DMA that walked
/// through it is in flight: the release waits for it (M7); a flush does
/// too (M6); then the frames can be freed.
#[test]
fn release_and_flush_wait_for_the_dma_that_walked_the_old_tree() {
    let s = sys(Variant::T8110, Invalidation::Strict, OnViolation::Reject).translating(&[SID]);
    let (r, c, data, _) = s.tree_with_leaf(SID, 0);
    in_flight_then(&s, "the release waited for the DMA in flight", || {
        s.dart.write_table_entry(r, 0, 0).unwrap();
        s.dart.set_ttbr(SID, 0, None).unwrap();
        s.dart.release_table(r).unwrap();
    });
    // The leaf table, under a new root: a clear's flush waits too.
    let (_, r2) = s.table();
    s.dart.set_ttbr(SID, 0, Some(r2)).unwrap();
    s.dart.flush(Some(SID)).unwrap();
    s.dart.write_table_entry(r2, 0, s.desc(c)).unwrap();
    in_flight_then(&s, "the flush waited for the DMA in flight", || {
        s.dart.write_table_entry(c, 0, 0).unwrap();
        assert_eq!(s.counts(data), (0, 1));
        s.dart.flush(Some(SID)).unwrap();
    });
    assert_eq!(s.counts(data), (0, 0));
    let rf = s.frames.frame_of(r).unwrap();
    s.frames.free_all(&[rf, data]).unwrap();
    s.check();
}

/// Runs `then` while another thread holds a translation of IOVA 0 on `SID`
/// for 300 ms, and asserts (`what`) that `then` returned only after the
/// translation was dropped.
fn in_flight_then(s: &Sys, what: &str, then: impl FnOnce()) {
    let started = Barrier::new(2);
    let dropped = AtomicBool::new(false);
    std::thread::scope(|t| {
        t.spawn(|| {
            let tr = s.dart.translate(SID, 0, 64, Dir::Read).unwrap();
            started.wait();
            std::thread::sleep(std::time::Duration::from_millis(300));
            dropped.store(true, Ordering::SeqCst);
            drop(tr);
        });
        started.wait();
        then();
        assert!(dropped.load(Ordering::SeqCst), "{what}");
    });
}

// ---------------------------------------------------------------------------
// Clear, then free or retype, before and after flushes.
// ---------------------------------------------------------------------------

/// A leaf cleared under a root two streams name (one through all four
/// TTBRs): freeing or retyping its frame is refused until a flush has
/// covered both streams, whichever order and however partial the flushes.
#[test]
fn a_clear_reached_by_two_streams_completes_only_when_both_are_flushed() {
    for invalidation in [Invalidation::Strict, Invalidation::Deferred] {
        let s = sys(Variant::T8020, invalidation, OnViolation::Reject).translating(&[SID, 2, 3]);
        let (r, c) = s.tree(SID);
        for i in 0..4 {
            s.dart.set_ttbr(2, i, Some(r)).unwrap();
        }
        let (data, dpa) = s.data(FrameType::UserData);
        s.dart.write_table_entry(c, 5, s.leaf(dpa, true, true)).unwrap();
        let iova = 5 * s.page();
        let alias = iova | 3 << 36; // TTBR 3 of stream 2 (t8020: 2 bits above 36)
        s.dart.dma_read(SID, iova, &mut [0u8; 4]).unwrap();
        s.dart.dma_read(2, alias, &mut [0u8; 4]).unwrap();
        s.dart.write_table_entry(c, 5, 0).unwrap();
        assert_eq!(s.counts(data), (0, 1));
        for step in [Some(3), Some(2)] {
            s.dart.flush(step).unwrap();
            assert_eq!(s.frames.free(data).unwrap_err().kind(), "frame-busy", "{invalidation:?} after {step:?}");
            let e = s.frames.retype(data, FrameType::KernelShared).unwrap_err();
            assert_eq!(e.kind(), "frame-busy");
            assert_eq!(s.frames.state(data).unwrap().ty(), FrameType::UserData);
            s.check();
        }
        // Stream 1's TTBR moved away since: its flush still completes the clear.
        let (_, other_root) = s.table();
        s.dart.set_ttbr(SID, 0, Some(other_root)).unwrap();
        assert_eq!(s.counts(data), (0, 1));
        s.dart.flush(Some(SID)).unwrap();
        assert_eq!(s.counts(data), (0, 0));
        s.frames.retype(data, FrameType::KernelShared).unwrap();
        s.frames.free(data).unwrap();
        let restricted = s.frames.alloc(FrameType::KernelRestricted, 1).unwrap();
        assert!(restricted.contains(&data) || s.frames.state(data).unwrap().ty() == FrameType::Free);
        for (sid, iova) in [(SID, iova), (2, alias), (2, iova)] {
            let e = s.dart.dma_read(sid, iova, &mut [0u8; 4]).unwrap_err();
            assert!(e.kind().starts_with("fault:"), "{sid} {iova:#x}: {e:?}");
        }
        s.check();
    }
}

/// A leaf table with cleared leaves, its descriptor cleared, is released
/// and freed only after the flush; the data frame reused as
/// `kernel-restricted` is never read through the stale IOTLB entry.
#[test]
fn a_released_table_and_its_reused_data_frame_are_out_of_reach() {
    for invalidation in [Invalidation::Strict, Invalidation::Deferred] {
        let s = sys(Variant::T6000, invalidation, OnViolation::Reject).translating(&[SID]);
        let (r, c) = s.tree(SID);
        let cf = s.frames.frame_of(c).unwrap();
        let (data, dpa) = s.data(FrameType::UserData);
        s.frames.aperture_write(dpa, b"public").unwrap();
        s.dart.write_table_entry(c, 0, s.leaf(dpa, true, false)).unwrap();
        let mut buf = [0u8; 6];
        s.dart.dma_read(SID, 0, &mut buf).unwrap();
        assert_eq!(s.dart.iotlb_entries(SID).unwrap().len(), 1);
        s.dart.write_table_entry(c, 0, 0).unwrap();
        s.dart.write_table_entry(r, 0, 0).unwrap();
        assert_eq!(s.dart.release_table(c).unwrap_err().kind(), "table-in-use");
        assert_eq!(s.frames.free(cf).unwrap_err().kind(), "frame-busy");
        assert_eq!(s.frames.free(data).unwrap_err().kind(), "frame-busy");
        s.check();
        s.dart.flush(Some(SID)).unwrap();
        assert!(s.dart.iotlb_entries(SID).unwrap().is_empty());
        s.dart.release_table(c).unwrap();
        s.frames.free_all(&[cf, data]).unwrap();
        s.frames.retype(data, FrameType::KernelRestricted).unwrap();
        s.frames.aperture_write(dpa, b"secret").unwrap();
        let mut buf = [0u8; 6];
        let e = s.dart.dma_read(SID, 0, &mut buf).unwrap_err();
        assert_eq!(e.kind(), "fault:no-l1", "{invalidation:?}");
        assert_eq!(buf, [0; 6]);
        // The old leaf table's frame, reallocated as a table of the mapper.
        s.dart.set_stream_config(2, StreamConfig::TRANSLATING).unwrap();
        let (pub_f, _) = s.data(FrameType::UserData);
        s.dart.map(2, 0, &[pub_f], Perm::R, None).unwrap();
        s.check();
    }
}

/// A slice held through the port across clear + flush keeps the frame
/// counted: free and retype are refused until the hold drops.
#[test]
fn a_slice_hold_outlives_the_clear_and_the_flush() {
    use dart::vm_memory::{GuestAddress, GuestMemory};
    let s = sys(Variant::T8110, Invalidation::Deferred, OnViolation::Reject).translating(&[SID]);
    let (r, c, data, _) = s.tree_with_leaf(SID, 1);
    let port = s.dart.port(SID).unwrap();
    let hold = port.hold(s.page(), 64, Permissions::ReadWrite).unwrap();
    let mem = port.memory();
    let slices =
        mem.get_slices(GuestAddress(s.page()), 32, Permissions::Read).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(s.counts(data), (3, 0));
    s.dart.write_table_entry(c, 1, 0).unwrap();
    s.dart.write_table_entry(r, 0, 0).unwrap();
    s.dart.flush(None).unwrap();
    assert_eq!(s.counts(data), (2, 0));
    assert_eq!(s.frames.free(data).unwrap_err().kind(), "frame-busy");
    assert_eq!(s.frames.retype(data, FrameType::KernelShared).unwrap_err().kind(), "frame-busy");
    s.check();
    drop(slices);
    assert_eq!(s.frames.free(data).unwrap_err().kind(), "frame-busy");
    drop(hold);
    assert_eq!(s.counts(data), (0, 0));
    s.dart.release_table(c).unwrap();
    s.frames.free(data).unwrap();
    s.check();
}

// ---------------------------------------------------------------------------
// The mapper and the monitor on one DART.
// ---------------------------------------------------------------------------

/// Neither path writes, links, frees or names the other's tables, and each
/// refusal changes nothing.
#[test]
fn the_mapper_and_the_monitor_never_cross() {
    let s = sys(Variant::T8020, Invalidation::Strict, OnViolation::Reject).translating(&[SID, 2]);
    let (r, c, data, dpa) = s.tree_with_leaf(SID, 0);
    s.dart.map(2, 0, &[data], Perm::R, None).unwrap();
    let mroot = s.dart.ttbr(2, 0).unwrap().unwrap();
    let mleaf = s.dart.pte_format().decode_table(s.dart.page_shift(), s.dart.read_table_entry(mroot, 0).unwrap());
    let mleaf = mleaf.unwrap();
    let spare = s.dart.alloc_root_table().unwrap();
    let before = (s.entries(r), s.entries(c), s.entries(mroot), s.entries(mleaf), s.counts(data));
    // The mapper over the driver's tree.
    assert_eq!(s.dart.map(SID, s.page(), &[data], Perm::R, None).unwrap_err().kind(), "forbidden-type");
    assert_eq!(s.dart.unmap(SID, 0, s.page()).unwrap_err().kind(), "not-mapped");
    for t in [r, c] {
        assert_eq!(s.dart.free_root_table(t).unwrap_err().kind(), "bad-range");
    }
    // The monitor over the mapper's tables.
    for (t, v) in [(mroot, 0), (mleaf, 0), (spare, 0), (mleaf, s.leaf(dpa, true, false))] {
        let e = s.dart.write_table_entry(t, 3, v).unwrap_err();
        assert_eq!(e, DartError::NotDriverTable { pa: t, reason: "a table of this DART's mapper" });
    }
    assert_eq!(s.dart.release_table(mroot).unwrap_err().kind(), "forbidden-type");
    assert_eq!(s.dart.release_table(spare).unwrap_err().kind(), "forbidden-type");
    let e = s.dart.write_table_entry(r, 1, s.desc(mleaf)).unwrap_err();
    assert_eq!(e, DartError::NotDriverTable { pa: mleaf, reason: "a table of this DART's mapper" });
    assert_eq!(s.dart.write_table_entry(r, 1, s.desc(spare)).unwrap_err().kind(), "forbidden-type");
    assert_eq!(s.dart.write_table_entry(c, 1, s.leaf(mleaf, true, false)).unwrap_err().kind(), "forbidden-type");
    let after = (s.entries(r), s.entries(c), s.entries(mroot), s.entries(mleaf), s.counts(data));
    assert_eq!(after, before);
    // A stream pointed at the mapper's spare root maps through the mapper;
    // at the driver's root, only through the monitor.
    s.dart.set_ttbr(3, 0, Some(spare)).unwrap();
    s.dart.set_stream_config(3, StreamConfig::TRANSLATING).unwrap();
    s.dart.map(3, 0, &[data], Perm::RW, None).unwrap();
    assert_eq!(s.counts(data), (3, 0));
    s.check();
    assert_eq!(s.dart.unmap(3, 0, s.page()), Ok(1));
    s.check();
}

// ---------------------------------------------------------------------------
// Raw values and addresses at the edges.
// ---------------------------------------------------------------------------

/// Junk invalid values are stored as written and counted as nothing; table
/// addresses and indices at every edge are `bad-range`; a leaf may name the
/// last frame of memory; PA bits beyond the format are not the frame
/// counted.
#[test]
fn raw_values_and_edge_addresses() {
    for variant in [Variant::T8020, Variant::T8110] {
        let s = sys(variant, Invalidation::Strict, OnViolation::Reject).translating(&[SID]);
        let (r, c) = s.tree(SID);
        let n = s.dart.entries_per_table();
        let tables = s.dart.table_frames();
        let last_frame = Frame((s.frames.frame_count() - 1) as u32);
        let last_pa = s.frames.pa_of(last_frame).unwrap();
        let end = last_pa + s.page();
        for (table, index) in [
            (u64::MAX, 0),
            (!(s.page() - 1), 0),
            (end, 0),
            (end + (1 << 40), 0),
            (c, n),
            (c, u64::MAX),
            (c, u64::MAX / 8 + 1),
            (c + 8, 0),
            (c | 1, 0),
        ] {
            let e = s.dart.write_table_entry(table, index, 0).unwrap_err();
            assert_eq!(e.kind(), "bad-range", "{variant:?} {table:#x}[{index}]");
            assert_eq!(s.dart.read_table_entry(table, index).unwrap_err().kind(), "bad-range");
        }
        assert_eq!(s.dart.release_table(u64::MAX).unwrap_err().kind(), "bad-range");
        assert_eq!(s.dart.release_table(end).unwrap_err().kind(), "bad-range");
        assert_eq!(s.dart.table_frames(), tables);
        // Junk with the valid bit clear: stored, read back, maps nothing.
        for (i, junk) in [u64::MAX - 1, 0xdead_beef_0000_0000, 2].into_iter().enumerate() {
            s.dart.write_table_entry(c, 10 + i as u64, junk).unwrap();
            s.dart.write_table_entry(r, 10 + i as u64, junk).unwrap();
            assert_eq!(s.dart.read_table_entry(c, 10 + i as u64), Ok(junk));
            let e = s.dart.dma_read(SID, (10 + i as u64) * s.page(), &mut [0u8; 4]).unwrap_err();
            assert_eq!(e.kind(), "fault:no-pte");
        }
        // The last frame of memory, as user data, mapped and read at its last byte.
        s.frames.retype(last_frame, FrameType::UserData).unwrap_or_else(|_| panic!("last frame free"));
        s.frames.aperture_write(end - 1, b"z").unwrap();
        s.dart.write_table_entry(c, 20, s.leaf(last_pa, true, false)).unwrap();
        let mut b = [0u8; 1];
        s.dart.dma_read(SID, 20 * s.page() + s.page() - 1, &mut b).unwrap();
        assert_eq!(&b, b"z");
        let e = s.dart.dma_read(SID, 20 * s.page() + s.page() - 1, &mut [0u8; 2]).unwrap_err();
        assert!(e.kind().starts_with("fault:"), "{e:?}");
        // A leaf whose PA field (masked to the format) lands past memory.
        let (data, dpa) = s.data(FrameType::UserData);
        let fmt = s.dart.pte_format();
        let max = fmt.max_pa();
        let beyond = s.leaf(max - s.page(), true, false);
        assert_eq!(s.dart.write_table_entry(c, 21, beyond).unwrap_err().kind(), "bad-range");
        // Junk everywhere but the fields: the decoded frame is the one counted.
        let junky = s.leaf(dpa, true, true) | (1 << 1);
        let decoded = fmt.decode_leaf(s.dart.page_shift(), junky).unwrap();
        match s.dart.write_table_entry(c, 22, junky) {
            Ok(()) => {
                assert_eq!(s.dart.read_table_entry(c, 22), Ok(junky));
                let f = s.frames.frame_of(decoded.pa).unwrap();
                assert_eq!(s.counts(f).0, 1 + u64::from(f == last_frame));
            }
            Err(e) => assert_eq!(e.kind(), "bad-range", "{variant:?}: {e:?}"),
        }
        let _ = data;
        s.check();
    }
}

/// A write refused after the table's first-write registration leaves the
/// frame unregistered and free to go.
#[test]
fn a_refused_first_write_does_not_register_the_table() {
    let s = sys(Variant::T8110, Invalidation::Strict, OnViolation::Reject);
    let (_, dpa) = s.data(FrameType::UserData);
    let f = s.frames.alloc(FrameType::DartTable, 1).unwrap()[0];
    let pa = s.frames.pa_of(f).unwrap();
    for v in [s.leaf(dpa, true, true), s.desc(pa), 1, u64::MAX] {
        let e = s.dart.write_table_entry(pa, 0, v).unwrap_err();
        assert_eq!(e.kind(), "bad-range", "{v:#x}: {e:?}");
        assert!(s.dart.table_frames().is_empty());
        assert_eq!(s.counts(f), (0, 0));
        assert_eq!(s.dart.read_table_entry(pa, 0).unwrap_err().kind(), "forbidden-type");
    }
    s.frames.free(f).unwrap();
    s.check();
}

// ---------------------------------------------------------------------------
// Counters at their limits.
// ---------------------------------------------------------------------------

/// One frame mapped by as many driver leaves as its DART counter holds: the
/// next leaf is `mapping-limit` and changes nothing; all of them cleared
/// fill the pending counter; one more leaf cleared then takes the
/// synchronous fallback (M6): invalidated at once, its stale IOTLB entry
/// dead, its count gone, the rest still pending until the flush.
#[test]
fn the_dart_and_pending_counters_at_their_limits() {
    let s = sys(Variant::T8110, Invalidation::Deferred, OnViolation::Reject).translating(&[SID]);
    let (_, root) = s.table();
    s.dart.set_ttbr(SID, 0, Some(root)).unwrap();
    let n = s.dart.entries_per_table();
    let max = Counter::Dart.max();
    assert_eq!(Counter::PendingInvalidation.max(), max);
    let tables: Vec<u64> = (0..max.div_ceil(n) + 1).map(|_| s.table().1).collect();
    for (i, &t) in tables.iter().enumerate() {
        s.dart.write_table_entry(root, i as u64, s.desc(t)).unwrap();
    }
    let (data, dpa) = s.data(FrameType::UserData);
    let pte = s.leaf(dpa, true, true);
    let slot = |k: u64| (tables[(k / n) as usize], k % n);
    for k in 0..max {
        let (t, i) = slot(k);
        s.dart.write_table_entry(t, i, pte).unwrap();
    }
    assert_eq!(s.counts(data), (max, 0));
    let (t, i) = slot(max);
    let e = s.dart.write_table_entry(t, i, pte).unwrap_err();
    assert_eq!(e.kind(), "mapping-limit");
    assert_eq!(s.dart.read_table_entry(t, i), Ok(0));
    // A slice hold needs a count too: refused, nothing taken.
    let port = s.dart.port(SID).unwrap();
    assert!(port.hold(0, 8, Permissions::Read).is_err());
    assert_eq!(s.counts(data), (max, 0));
    s.check();
    for k in 0..max {
        let (t, i) = slot(k);
        s.dart.write_table_entry(t, i, 0).unwrap();
    }
    assert_eq!(s.counts(data), (0, max));
    // One more leaf, read through (cached), then cleared with the pending
    // counter full.
    s.dart.write_table_entry(t, i, pte).unwrap();
    let iova = max * s.page();
    s.dart.dma_read(SID, iova, &mut [0u8; 4]).unwrap();
    assert!(s.dart.iotlb_entries(SID).unwrap().iter().any(|&(v, _)| v == iova));
    s.dart.write_table_entry(t, i, 0).unwrap();
    assert_eq!(s.counts(data), (0, max));
    assert!(!s.dart.iotlb_entries(SID).unwrap().iter().any(|&(v, _)| v == iova), "invalidated at once");
    assert_eq!(s.dart.dma_read(SID, iova, &mut [0u8; 4]).unwrap_err().kind(), "fault:no-pte");
    assert_eq!(s.frames.free(data).unwrap_err().kind(), "frame-busy");
    s.check();
    s.dart.flush(Some(SID)).unwrap();
    assert_eq!(s.counts(data), (0, 0));
    s.frames.free(data).unwrap();
    s.check();
}

// ---------------------------------------------------------------------------
// A halted system.
// ---------------------------------------------------------------------------

/// After a halt (freeing a registered table in panic mode), every monitor
/// call that would change something is `halted` and changes nothing;
/// reads still answer.
#[test]
fn a_halted_system_refuses_every_monitor_change() {
    let s = sys(Variant::T8110, Invalidation::Deferred, OnViolation::Panic).translating(&[SID]);
    let (r, c, data, dpa) = s.tree_with_leaf(SID, 0);
    s.dart.write_table_entry(c, 1, s.leaf(dpa, true, false)).unwrap();
    s.dart.write_table_entry(c, 1, 0).unwrap();
    let (_, spare) = s.table();
    let cf = s.frames.frame_of(c).unwrap();
    assert_eq!(s.frames.free(cf).unwrap_err().kind(), "panic");
    assert!(s.frames.halted().is_some());
    let before = (s.entries(r), s.entries(c), s.counts(data), s.counts(cf), s.dart.table_frames());
    let unregistered = s.frames.pa_of(Frame((s.frames.frame_count() - 1) as u32)).unwrap();
    assert_eq!(s.dart.write_table_entry(c, 2, s.leaf(dpa, true, true)).unwrap_err().kind(), "halted");
    assert_eq!(s.dart.write_table_entry(c, 0, 0).unwrap_err().kind(), "halted");
    assert_eq!(s.dart.write_table_entry(r, 0, 0).unwrap_err().kind(), "halted");
    assert_eq!(s.dart.write_table_entry(spare, 0, 0).unwrap_err().kind(), "halted");
    assert_eq!(s.dart.write_table_entry(unregistered, 0, 0).unwrap_err().kind(), "halted");
    assert_eq!(s.dart.release_table(spare).unwrap_err().kind(), "halted");
    assert_eq!(s.dart.set_ttbr(2, 0, Some(spare)).unwrap_err().kind(), "halted");
    assert_eq!(s.dart.set_ttbr(SID, 0, None).unwrap_err().kind(), "halted");
    assert_eq!(s.dart.flush(None).unwrap_err().kind(), "halted");
    let after = (s.entries(r), s.entries(c), s.counts(data), s.counts(cf), s.dart.table_frames());
    assert_eq!(after, before);
    assert_eq!(s.counts(data), (1, 1));
    assert_eq!(s.dart.ttbr(SID, 0), Ok(Some(r)));
    // No DMA reaches anything on a halted system either.
    assert!(s.dart.dma_read(SID, 0, &mut [0u8; 4]).is_err());
    s.check();
}

// ---------------------------------------------------------------------------
// Two DARTs on one frame table.
// ---------------------------------------------------------------------------

/// DART B's driver registers every `dart-table` frame it can while DART A's
/// mapper allocates tables: no frame ends up a table of both, every table
/// frame has exactly one hold, and refused maps change nothing.
#[test]
fn two_darts_race_for_fresh_table_frames() {
    let frames = frames_with(OnViolation::Reject);
    let a = dart_on(&frames, "a", Variant::T8110, Invalidation::Strict);
    let b = dart_on(&frames, "b", Variant::T8110, Invalidation::Strict);
    let data = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    let streams = 16u32;
    for sid in 0..streams {
        a.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
    }
    let count = frames.frame_count();
    let go = Barrier::new(2);
    let done = AtomicBool::new(false);
    let mut refused = 0;
    std::thread::scope(|t| {
        t.spawn(|| {
            go.wait();
            while !done.load(Ordering::Relaxed) {
                for i in 0..count {
                    let pa = frames.pa_of(Frame(i as u32)).unwrap();
                    let st = frames.state(Frame(i as u32)).unwrap();
                    if st.ty() == FrameType::DartTable && !st.counts().any() {
                        let _ = b.write_table_entry(pa, 0, 0);
                    }
                }
            }
        });
        go.wait();
        // Stops B's loop however this thread leaves (a failed assertion too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&done);
        for round in 0..3000u64 {
            for sid in 0..streams {
                // A new leaf table per map (one covers 32 MiB; the unmap
                // retires and frees it), a root per stream.
                let iova = (round % 64) << 25;
                match a.map(sid, iova, &[data], Perm::R, None) {
                    Ok(()) => assert_eq!(a.unmap(sid, iova, 1 << 14), Ok(1)),
                    Err(e) => {
                        assert_eq!(e.kind(), "table-in-use", "{e:?}");
                        refused += 1;
                    }
                }
            }
        }
    });
    let at: std::collections::HashSet<Frame> = a.table_frames().into_iter().collect();
    let bt: std::collections::HashSet<Frame> = b.table_frames().into_iter().collect();
    assert!(at.is_disjoint(&bt), "a frame is a table of both DARTs");
    for f in at.iter().chain(bt.iter()) {
        assert_eq!(frames.state(*f).unwrap().count(Counter::Dart), 1, "{f}");
    }
    // Tables the race gave B, and nothing else, stay allocated and unheld.
    for (f, st) in frames.states() {
        if st.ty() == FrameType::DartTable && !at.contains(&f) && !bt.contains(&f) {
            assert!(!st.counts().any(), "{f}: {st:?}");
        }
    }
    eprintln!("refused maps: {refused}");
    check_all(&frames, &[&a, &b]);
}

// ---------------------------------------------------------------------------
// Racing threads.
// ---------------------------------------------------------------------------

/// A small deterministic generator per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const SECRET: &[u8; 8] = b"SECRET!!";

/// Threads race leaf writes and clears, descriptor unlinks and relinks,
/// TTBR moves, flushes, releases, DMA, and a kernel that frees data frames
/// and reuses them as `kernel-restricted` with a secret: no DMA ever reads
/// the secret, no call panics, and after a final flush every count agrees.
#[test]
fn racing_monitor_calls_keep_every_frame_counted() {
    for invalidation in [Invalidation::Strict, Invalidation::Deferred] {
        let s = sys(Variant::T8110, invalidation, OnViolation::Reject).translating(&[SID, 2]);
        let (_, root) = s.table();
        let leaf_tables: Vec<u64> = (0..4).map(|_| s.table().1).collect();
        s.dart.set_ttbr(SID, 0, Some(root)).unwrap();
        s.dart.set_ttbr(2, 0, Some(root)).unwrap();
        for (i, &t) in leaf_tables.iter().enumerate() {
            s.dart.write_table_entry(root, i as u64, s.desc(t)).unwrap();
        }
        let data: Vec<(Frame, u64)> = (0..6).map(|_| s.data(FrameType::UserData)).collect();
        for &(_, pa) in &data {
            s.frames.aperture_write(pa, b"public!!").unwrap();
        }
        let stop = AtomicBool::new(false);
        let leaked = AtomicBool::new(false);
        let go = Barrier::new(6);
        let span = 1u64 << (s.dart.page_shift() + 11);
        std::thread::scope(|t| {
            // Leaf writer / clearer.
            t.spawn(|| {
                go.wait();
                let mut rng = Rng(0x1234_5678);
                for _ in 0..20_000 {
                    let table = leaf_tables[rng.next(4) as usize];
                    let index = rng.next(8);
                    let (_, pa) = data[rng.next(data.len() as u64) as usize];
                    let v = if rng.next(2) == 0 { 0 } else { leaf_of(&s.dart, pa, true, rng.next(2) == 0) };
                    let _ = s.dart.write_table_entry(table, index, v);
                }
            });
            // Unlink / relink / release / re-register.
            t.spawn(|| {
                go.wait();
                let mut rng = Rng(0x9abc_def1);
                let fmt = s.dart.pte_format();
                for _ in 0..5_000 {
                    let i = rng.next(4);
                    let t = leaf_tables[i as usize];
                    match rng.next(4) {
                        0 => {
                            let _ = s.dart.write_table_entry(root, i, 0);
                        }
                        1 => {
                            let _ =
                                s.dart.write_table_entry(root, i, fmt.encode_table(s.dart.page_shift(), t).unwrap());
                        }
                        2 => {
                            for k in 0..8 {
                                let _ = s.dart.write_table_entry(t, k, 0);
                            }
                            let _ = s.dart.release_table(t);
                        }
                        _ => {
                            let _ = s.dart.write_table_entry(t, 9, 0);
                        }
                    }
                }
            });
            // TTBR moves and flushes.
            t.spawn(|| {
                go.wait();
                let mut rng = Rng(0x2468_ace0);
                for _ in 0..3_000 {
                    match rng.next(5) {
                        0 => {
                            let _ = s.dart.set_ttbr(2, 0, None);
                        }
                        1 => {
                            let _ = s.dart.set_ttbr(2, 0, Some(root));
                        }
                        2 => s.dart.flush(Some(SID)).unwrap(),
                        3 => s.dart.flush(Some(2)).unwrap(),
                        _ => s.dart.flush(None).unwrap(),
                    }
                }
            });
            // DMA on both streams.
            for sid in [SID, 2] {
                let (stop, leaked, go, s) = (&stop, &leaked, &go, &s);
                t.spawn(move || {
                    go.wait();
                    let mut rng = Rng(0x1357_9bdf + u64::from(sid));
                    let mut buf = [0u8; 8];
                    while !stop.load(Ordering::Relaxed) {
                        let iova = rng.next(4) * span + rng.next(8) * s.page();
                        if s.dart.dma_read(sid, iova, &mut buf).is_ok() && &buf == SECRET {
                            leaked.store(true, Ordering::Relaxed);
                        }
                    }
                });
            }
            // The kernel: free a data frame when it can, reuse it restricted.
            go.wait();
            let mut reused = 0;
            for round in 0..20_000 {
                let (f, pa) = data[round % data.len()];
                if s.frames.state(f).unwrap().ty() == FrameType::UserData && s.frames.free(f).is_ok() {
                    s.frames.retype(f, FrameType::KernelRestricted).unwrap();
                    s.frames.aperture_write(pa, SECRET).unwrap();
                    reused += 1;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            stop.store(true, Ordering::Relaxed);
            eprintln!("{invalidation:?}: reused {reused} data frames");
        });
        assert!(!leaked.load(Ordering::Relaxed), "{invalidation:?}: a DMA read the secret");
        s.check();
        s.dart.flush(None).unwrap();
        s.check();
        for &(f, _) in &data {
            let st = s.frames.state(f).unwrap();
            if st.ty() == FrameType::KernelRestricted {
                assert!(!st.counts().any() || st.count(Counter::Dart) == 0, "{f}: {st:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 4 KiB pages, and a TTBR naming a mapper table that is not a root.
// ---------------------------------------------------------------------------

/// At 4 KiB pages (512 entries a table), t8110's TTBR names only 16 KiB
/// aligned roots: a driver root elsewhere is the foreign-TTBR breach; an
/// aligned one builds, translates, clears and releases as at 16 KiB.
#[test]
fn four_kib_pages_and_t8110_root_alignment() {
    for variant in [Variant::T8020, Variant::T8110] {
        let cfg =
            FrameTableConfig::with_memory(MEM).frame_size(frame_table::FrameSize::K4).on_violation(OnViolation::Reject);
        let frames = Arc::new(FrameTable::new(cfg).unwrap());
        let dart = dart_on(&frames, "d4k", variant, Invalidation::Deferred);
        let s = Sys { frames, dart };
        assert_eq!((s.dart.page_shift(), s.dart.entries_per_table()), (12, 512));
        s.dart.set_stream_config(SID, StreamConfig::TRANSLATING).unwrap();
        let roots = s.frames.alloc_aligned(FrameType::DartTable, 1, 4).unwrap();
        let root = s.frames.pa_of(roots[0]).unwrap();
        let odd_f = s.frames.alloc(FrameType::DartTable, 1).unwrap()[0];
        let mut odd = s.frames.pa_of(odd_f).unwrap();
        if odd & 0x3fff == 0 {
            let more = s.frames.alloc(FrameType::DartTable, 1).unwrap()[0];
            odd = s.frames.pa_of(more).unwrap();
        }
        assert_ne!(odd & 0x3fff, 0);
        for t in [root, odd] {
            s.dart.write_table_entry(t, 0, 0).unwrap();
        }
        let v = s.frames.violations();
        let e = s.dart.set_ttbr(SID, 0, Some(odd));
        if variant == Variant::T8110 {
            assert_eq!(e, Err(DartError::Frame(frame_table::Error::ForeignTable { pa: odd })));
            assert_eq!(s.frames.violations(), v + 1);
            assert_eq!(s.dart.ttbr(SID, 0), Ok(None));
        } else {
            e.unwrap();
            s.dart.set_ttbr(SID, 0, None).unwrap();
            s.dart.release_table(odd).unwrap();
            s.dart.write_table_entry(odd, 0, 0).unwrap();
        }
        // The odd table, never a root, becomes the leaf table.
        s.dart.set_ttbr(SID, 0, Some(root)).unwrap();
        s.dart.write_table_entry(root, 511, s.desc(odd)).unwrap();
        let (data, dpa) = s.data(FrameType::UserData);
        s.dart.write_table_entry(odd, 511, s.leaf(dpa, true, true)).unwrap();
        let iova = (511 << 21) | (511 << 12);
        s.dart.dma_write(SID, iova + 4092, b"edge").unwrap();
        s.dart.write_table_entry(odd, 511, 0).unwrap();
        s.dart.write_table_entry(root, 511, 0).unwrap();
        assert_eq!(s.dart.release_table(odd).unwrap_err().kind(), "table-in-use");
        assert_eq!(s.frames.free(data).unwrap_err().kind(), "frame-busy");
        s.check();
        s.dart.flush(None).unwrap();
        s.dart.release_table(odd).unwrap();
        s.frames.free(data).unwrap();
        assert_eq!(s.dart.dma_read(SID, iova, &mut [0u8; 4]).unwrap_err().kind(), "fault:no-l1");
        s.check();
    }
}

/// A TTBR may name one of the mapper's non-root tables (the code accepts
/// any mapper table, §2; §3 says "its mapper's roots"): the walk from it
/// reaches only counted frames, and the mapper's unmap through the real
/// root invalidates that stream too, so the freed frame is never read.
#[test]
fn a_ttbr_naming_a_mapper_mid_table_is_invalidated_by_the_mappers_unmap() {
    let s = sys(Variant::T8110, Invalidation::Strict, OnViolation::Reject);
    s.dart.set_stream_config(SID, four()).unwrap();
    s.dart.set_stream_config(2, StreamConfig::TRANSLATING).unwrap();
    let (data, dpa) = s.data(FrameType::UserData);
    s.frames.aperture_write(dpa, b"public").unwrap();
    s.dart.map(SID, 0, &[data], Perm::R, None).unwrap();
    let root = s.dart.ttbr(SID, 0).unwrap().unwrap();
    let (fmt, shift) = (s.dart.pte_format(), s.dart.page_shift());
    let mid = fmt.decode_table(shift, s.dart.read_table_entry(root, 0).unwrap()).unwrap();
    // Accepted by the code (a table of this DART's mapper).
    match s.dart.set_ttbr(2, 0, Some(mid)) {
        Ok(()) => {
            let mut buf = [0u8; 6];
            s.dart.dma_read(2, 0, &mut buf).unwrap();
            assert_eq!(&buf, b"public");
            s.check();
            assert_eq!(s.dart.unmap(SID, 0, s.page()), Ok(1));
            assert!(s.dart.iotlb_entries(2).unwrap().is_empty());
            s.frames.free(data).unwrap();
            s.frames.retype(data, FrameType::KernelRestricted).unwrap();
            s.frames.aperture_write(dpa, b"secret").unwrap();
            let mut buf = [0u8; 6];
            assert!(s.dart.dma_read(2, 0, &mut buf).is_err());
            assert_eq!(buf, [0; 6]);
        }
        Err(e) => assert_eq!(e.kind(), "forbidden-type"),
    }
    s.check();
}

// ---------------------------------------------------------------------------
// Borderline: a monitor call from the interrupt callback.
// ---------------------------------------------------------------------------

/// The interrupt callback runs on the faulting DMA thread inside its
/// in-flight section; `release_table` waits for all DMA in flight (M7), so
/// from the callback it would wait for itself. It is refused
/// (`in-interrupt`) and the DMA returns. (Once a hang: found by this file.)
#[test]
fn a_release_from_the_interrupt_callback_does_not_deadlock() {
    let s = sys(Variant::T8110, Invalidation::Strict, OnViolation::Reject).translating(&[SID]);
    let (_, t) = s.table();
    let weak = Arc::downgrade(&s.dart);
    s.dart.set_interrupt(Some(Arc::new(move |_: &dart::Fault| {
        if let Some(d) = weak.upgrade() {
            // Inside the faulting DMA: refused, not a wait for itself.
            assert_eq!(d.release_table(t), Err(DartError::InInterrupt { call: "release_table" }));
        }
    })));
    let (tx, rx) = std::sync::mpsc::channel();
    let d = s.dart.clone();
    // Detached: if it deadlocks, the thread stays stuck and the test fails.
    std::thread::spawn(move || {
        let faulted = d.dma_read(SID, 0, &mut [0u8; 4]).is_err();
        let _ = tx.send(faulted);
    });
    let r = rx.recv_timeout(std::time::Duration::from_secs(5));
    assert_eq!(r, Ok(true), "the faulting DMA never returned: its callback's release_table waits for it");
}
