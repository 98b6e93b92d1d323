//! The monitor: tables a driver builds itself, every entry validated as it
//! is written (docs/design.md §3, "Driver-built tables (the monitor path)").
//!
//! Real drivers (Linux io-pgtable-dart, m1n1, XNU through SPTM) allocate
//! their own `dart-table` frames, write the entries and program TTBRs by
//! register. Here the driver never stores into a table frame (the aperture
//! refuses `dart-table` frames); it asks the monitor, which applies each
//! entry as the mapper would apply its own, under the same mapper lock.
//!
//! # Invariants (all under the mapper lock; numbered M1–M8, cited in code)
//!
//! - **M1 one owner.** A driver table is a `dart-table` frame that this
//!   DART registered by its first monitor write, taking the DART's hold
//!   with [`frame_table::FrameTable::hold_table_sole`], which succeeds only
//!   while nothing counts the frame: no other DART (mapper or monitor) holds
//!   it, and a mapper's fresh table (held with the same call) is never
//!   registered. The mapper never writes a driver table and the monitor
//!   never writes a mapper table, so each tree has one writer.
//! - **M2 levels.** A driver table gets its level when first linked (a TTBR:
//!   level 0; a table descriptor in a table of level `L`: `L + 1`) and keeps
//!   it until released. A tree's depth (its table levels) is fixed by the
//!   first valid entry written into its root, from the geometry of the
//!   streams whose TTBR names the root then (they must agree): Linux writes
//!   a stream's TTBR before its TCR, so the TCR of the TTBR write is not yet
//!   the one the tree is built for. A child takes its parent's depth. A
//!   valid entry is written only into a table with a level, and is a leaf
//!   exactly when the table is the tree's last level, a table descriptor
//!   otherwise.
//! - **M3 one parent.** A table has at most one parent entry, and a table
//!   with a level is linked only at that level, so the driver's trees are
//!   trees (no cycle, no sharing below the root); a root may be named by
//!   several TTBRs.
//! - **M4 leaves are counted before they exist.** A valid leaf holds one
//!   DART count on its frame, taken with the policy check (R3, R4) in one
//!   atomic step of the frame table *before* the PTE is stored (`Release`);
//!   a refused leaf stores nothing.
//! - **M5 descriptors name registered tables.** A valid table descriptor
//!   names a driver table of this DART, linked by it (M3).
//! - **M6 a cleared entry stays counted until it is unreachable.** Clearing
//!   a valid entry stores the new (invalid) value at once, so no walk that
//!   starts later reads it; what it named stays counted: a leaf's DART count
//!   moves to "pending invalidation", a descriptor's child stays linked. A
//!   pending item names the streams whose TTBR reached the tree when it was
//!   cleared; it completes in the flush ([`Kernel::flush_streams`]: the
//!   register flush and [`crate::Dart::flush`]) that has covered all of
//!   them, after that flush's invalidation bumped their generations and
//!   waited for the DMA in flight (inflight I4, I9; streams whose TTBR moved
//!   since the last invalidation are always waited for, G5). Slice holds
//!   are counts of their own (`crate::hold`). Strict and deferred DARTs
//!   behave alike here: the driver invalidates, as Linux's `iotlb_sync`
//!   does.
//! - **M7 release.** A driver table is released (its hold dropped, the
//!   frame free to be freed) only with no valid entry, no parent entry (a
//!   cleared one's unlink completed, M6) and no TTBR naming it, after a full
//!   wait for DMA in flight (a DMA may have loaded a TTBR that named it).
//! - **M8 all or nothing.** A refused write changes nothing: its checks run
//!   before its first effect, and the registration of a table on this write
//!   is undone when a later step refuses.
//!
//! Checked under loom (`crate::loom_models`): `monitor_clear_vs_inflight_dma`
//! (M6; a clear that releases at once is caught) and
//! `monitor_unlink_and_release_vs_cached_walks` (M6, M7; a release with no
//! wait is caught); with threads in `dart/tests/monitor_race.rs`.
//!
//! Why a walk of a driver tree is safe whatever the driver writes: the
//! walker checks every table it reads is `dart-table` and every leaf's frame
//! is device-reachable ([`crate::translate`]'s walk), so a tree read with
//! another geometry than its own (a TCR.FOUR_LEVEL change) faults rather
//! than reaching anything; M4–M6 keep every frame a walk can reach counted.

use super::{Kernel, MapperState, Pending, PendingItem};
use crate::error::DartError;
use crate::observe::events::EventKind;
use crate::observe::stats::Counter;
use crate::types::set_stream;
use frame_table::{Counter as FrameCounter, Frame, FrameType, Perm};

/// A table a driver built, registered with this DART (M1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DriverTable {
    /// Level below the TTBR (0 = root), once linked (M2).
    pub(crate) level: Option<u32>,
    /// The tree's table levels: a root's is fixed by the first valid entry
    /// written into it, a child's is its parent's (M2).
    pub(crate) depth: Option<u32>,
    /// Valid entries in it.
    pub(crate) live: u32,
    /// The table whose entry links it (M3), until that entry's clearing
    /// completes (M6).
    pub(crate) parent: Option<Frame>,
}

impl DriverTable {
    /// Whether its valid entries are leaves (it is its tree's last level).
    pub(crate) fn is_leaf_table(&self) -> bool {
        matches!((self.level, self.depth), (Some(level), Some(depth)) if level + 1 == depth)
    }
}

/// A table address the monitor was handed: its frame, checked to be a page
/// in memory.
fn table_frame(k: &Kernel<'_>, table: u64, index: u64, value: u64) -> Result<Frame, DartError> {
    let bad = |reason| DartError::BadEntry { table, index, value, reason };
    if table & ((1 << k.page_shift()) - 1) != 0 {
        return Err(bad("the table address is not page aligned"));
    }
    let f = k.device().frames().frame_of(table).map_err(|_| bad("the table address is outside memory"))?;
    if index >= 1 << (k.page_shift() - 3) {
        return Err(bad("the index is past the table"));
    }
    Ok(f)
}

impl MapperState {
    /// Checks that frame `f` at `pa` is a driver table of this DART or a
    /// `dart-table` frame it may register (M1); `Ok(true)` when it must be
    /// registered.
    fn driver_table_or_new(&self, k: &Kernel<'_>, f: Frame, pa: u64) -> Result<bool, DartError> {
        if self.driver.contains_key(&f) {
            return Ok(false);
        }
        if self.tables.contains_key(f) {
            return Err(DartError::NotDriverTable { pa, reason: "a table of this DART's mapper" });
        }
        match k.device().frames().state(f).map(|s| s.ty()) {
            Ok(FrameType::DartTable) => Ok(true),
            _ => Err(DartError::NotDriverTable { pa, reason: "not a dart-table frame" }),
        }
    }

    /// The root of the tree holding driver table `t`, found through the
    /// parent links (M3).
    fn root_of(&self, t: Frame) -> Frame {
        let mut root = t;
        // A tree has at most four levels (M2, M3): the bound only guards
        // against a broken invariant, never a real walk.
        for _ in 0..8 {
            match self.driver.get(&root).and_then(|d| d.parent) {
                Some(p) => root = p,
                None => break,
            }
        }
        root
    }

    /// Whether driver table `f` may be a root: it has no level yet or is
    /// one (M2).
    pub(crate) fn may_root(&self, f: Frame) -> bool {
        self.driver.get(&f).is_some_and(|d| d.level.is_none_or(|level| level == 0))
    }

    /// Links driver table `f`, if it is one, as a root (M2); a table with a
    /// level keeps it.
    pub(crate) fn link_driver_root(&mut self, f: Frame) {
        if let Some(d) = self.driver.get_mut(&f) {
            d.level.get_or_insert(0);
        }
    }
}

impl Kernel<'_> {
    /// [`Dart::write_table_entry`](crate::Dart::write_table_entry).
    pub(crate) fn write_table_entry(&self, table: u64, index: u64, value: u64) -> Result<(), DartError> {
        self.device().frames().check_running()?;
        // A clear may invalidate at once (the pending counter full).
        self.refuse_in_interrupt("write_table_entry")?;
        let f = table_frame(self, table, index, value)?;
        let traced = self.trace.start();
        let mut m = self.mapper.lock();
        let register = m.driver_table_or_new(self, f, table)?;
        if register {
            // M1: registered here, undone below if the write is refused (M8).
            match self.device().frames().hold_table_sole(f)? {
                Some(_) => {
                    m.driver.insert(f, DriverTable::default());
                }
                None => return Err(DartError::NotDriverTable { pa: table, reason: "another DART holds it" }),
            }
        }
        let slot = table + 8 * index;
        let old = self.device().ptes().load(slot).unwrap_or(0);
        let result = self.apply_entry(&mut m, f, table, index, old, value);
        if result.is_err() && register {
            m.driver.remove(&f);
            let _ = self.device().frames().release(f, FrameCounter::Dart);
        }
        drop(m);
        if result.is_ok() {
            self.trace.emit_since(traced, || EventKind::PteWrite { table, index, value, old });
        }
        result
    }

    /// Applies `value` over `old` at entry `index` of driver table `f` (at
    /// `table`), under the mapper lock `m`.
    fn apply_entry(
        &self,
        m: &mut MapperState,
        f: Frame,
        table: u64,
        index: u64,
        old: u64,
        value: u64,
    ) -> Result<(), DartError> {
        let slot = table + 8 * index;
        let info = m.driver.get(&f).copied().unwrap_or_default();
        let (was, now) = (crate::hw::pte::PteFormat::is_valid(old), crate::hw::pte::PteFormat::is_valid(value));
        let bad = |reason| DartError::BadEntry { table, index, value, reason };
        match (was, now) {
            (true, true) => Err(DartError::EntryInUse { table, index }),
            (false, false) => {
                self.device().ptes().store(slot, value);
                Ok(())
            }
            (false, true) => {
                let Some(level) = info.level else {
                    return Err(bad("the table has no level yet: link it by a TTBR or a table entry first"));
                };
                let depth = match info.depth {
                    Some(depth) => depth,
                    None => self.root_depth(table).map_err(bad)?,
                };
                if level + 1 == depth {
                    self.write_leaf(m, f, table, index, value)?;
                } else {
                    self.write_descriptor(m, f, (table, index, value), level + 1, depth)?;
                }
                // M2: a root's depth is fixed by its first valid entry.
                if let Some(d) = m.driver.get_mut(&f) {
                    d.depth = Some(depth);
                }
                Ok(())
            }
            (true, false) => {
                self.clear_entry(m, f, slot, old, value);
                Ok(())
            }
        }
    }

    /// The depth of the tree rooted at `root` (a root with no valid entry
    /// yet): the table levels of the streams whose TTBR names it now, which
    /// must agree (M2). Linux writes a stream's TTBR before its TCR, so the
    /// depth is read at the first entry, not at the TTBR write.
    fn root_depth(&self, root: u64) -> Result<u32, &'static str> {
        let mut depth = None;
        for (_, st) in self.streams_naming(root) {
            let levels = self.geometry_for(st.config()).levels;
            if depth.is_some_and(|d| d != levels) {
                return Err("the streams whose TTBR names this root disagree on its depth (TCR.FOUR_LEVEL)");
            }
            depth = Some(levels);
        }
        depth.ok_or("no TTBR names this root now: its depth is unknown")
    }

    /// A valid leaf into leaf table `f` (M4).
    fn write_leaf(&self, m: &mut MapperState, f: Frame, table: u64, index: u64, value: u64) -> Result<(), DartError> {
        let bad = |reason| DartError::BadEntry { table, index, value, reason };
        let (fmt, shift) = (self.pte_format(), self.page_shift());
        let Some(leaf) = fmt.decode_leaf(shift, value) else { return Err(bad("not a valid leaf")) };
        if let Err(e) = fmt.encode_leaf(shift, &leaf) {
            return Err(match e {
                crate::hw::pte::PteError::NoAccess => bad("the leaf grants neither read nor write"),
                crate::hw::pte::PteError::BadSubpage { .. } => bad("the subpage range is malformed"),
                _ => bad("the leaf's PA cannot be expressed in the format"),
            });
        }
        let frame = self.device().frames().frame_of(leaf.pa).map_err(|_| bad("the leaf's PA is outside memory"))?;
        let perm = Perm::new(leaf.read, leaf.write);
        self.device().frames().acquire(frame, frame_table::Access::Dart, perm)?;
        // M4: counted above, stored after.
        self.device().ptes().store(table + 8 * index, value);
        if let Some(d) = m.driver.get_mut(&f) {
            d.live += 1;
        }
        self.device().stats().add_serialized(&*m, None, Counter::Maps, 1);
        Ok(())
    }

    /// A valid table descriptor into directory table `f`, naming a table
    /// that becomes level `level` of a tree of `depth` (M2, M3, M5).
    fn write_descriptor(
        &self,
        m: &mut MapperState,
        f: Frame,
        (table, index, value): (u64, u64, u64),
        level: u32,
        depth: u32,
    ) -> Result<(), DartError> {
        let bad = |reason| DartError::BadEntry { table, index, value, reason };
        let Some(child_pa) = self.pte_format().decode_table(self.page_shift(), value) else {
            return Err(bad("not a valid table descriptor"));
        };
        let child =
            self.device().frames().frame_of(child_pa).map_err(|_| bad("the descriptor's table is outside memory"))?;
        if m.tables.contains_key(child) {
            return Err(DartError::NotDriverTable { pa: child_pa, reason: "a table of this DART's mapper" });
        }
        let Some(c) = m.driver.get(&child) else {
            return Err(DartError::NotDriverTable {
                pa: child_pa,
                reason: "not registered with this DART (write one of its entries first)",
            });
        };
        if c.parent.is_some() {
            return Err(DartError::TableInUse { pa: child_pa, reason: "another entry links it" });
        }
        let other = |v: Option<u32>, want| v.is_some_and(|v| v != want);
        if other(c.level, level) || other(c.depth, depth) {
            return Err(DartError::TableInUse { pa: child_pa, reason: "it is linked at another level" });
        }
        // (A table a TTBR names is a root, level 0: refused above.)
        if let Some(c) = m.driver.get_mut(&child) {
            (c.level, c.depth, c.parent) = (Some(level), Some(depth), Some(f));
        }
        self.device().ptes().store(table + 8 * index, value);
        if let Some(d) = m.driver.get_mut(&f) {
            d.live += 1;
        }
        Ok(())
    }

    /// Clears the valid entry `old` at `slot` of driver table `f` with the
    /// invalid `value` (M6).
    fn clear_entry(&self, m: &mut MapperState, f: Frame, slot: u64, old: u64, value: u64) {
        let leaf_table = m.driver.get(&f).is_some_and(|d| d.is_leaf_table());
        let (fmt, shift) = (self.pte_format(), self.page_shift());
        // Named before the store: what the old entry reached.
        let what = if leaf_table {
            fmt.decode_leaf(shift, old).and_then(|l| self.device().frames().frame_of(l.pa).ok()).map(Pending::Frame)
        } else {
            fmt.decode_table(shift, old).and_then(|pa| self.device().frames().frame_of(pa).ok()).map(Pending::Unlink)
        };
        self.device().ptes().store(slot, value);
        if let Some(d) = m.driver.get_mut(&f) {
            d.live = d.live.saturating_sub(1);
        }
        // The streams whose TTBR reaches the tree.
        let mut streams = [0u64; 4];
        if let Ok(root) = self.device().frames().pa_of(m.root_of(f)) {
            self.streams_naming(root).for_each(|(s, _)| set_stream(&mut streams, s));
        }
        match what {
            Some(Pending::Frame(frame)) => {
                self.device().stats().add_serialized(&*m, None, Counter::Unmaps, 1);
                if self.device().frames().defer_dart(frame).is_ok() {
                    m.pending.push(PendingItem { what: Pending::Frame(frame), streams });
                } else {
                    // The pending counter is full: this clear completes now.
                    self.invalidate(m, &streams, None);
                    let _ = self.device().frames().release(frame, FrameCounter::Dart);
                }
            }
            Some(Pending::Unlink(child)) => {
                // A walk-cache row may start its walks at a leaf table below
                // the cleared descriptor: none does after this.
                self.device().walk_cache().invalidate(&*m);
                m.pending.push(PendingItem { what: Pending::Unlink(child), streams });
            }
            _ => {}
        }
    }

    /// Completes a pending unlink (M6): the child table has no parent now.
    pub(super) fn complete_unlink(&self, m: &mut MapperState, child: Frame) {
        if let Some(c) = m.driver.get_mut(&child) {
            c.parent = None;
        }
    }

    /// [`Dart::read_table_entry`](crate::Dart::read_table_entry).
    pub(crate) fn read_table_entry(&self, table: u64, index: u64) -> Result<u64, DartError> {
        let f = table_frame(self, table, index, 0)?;
        let m = self.mapper.lock();
        if !m.driver.contains_key(&f) && !m.tables.contains_key(f) {
            return Err(DartError::NotDriverTable { pa: table, reason: "not a table of this DART" });
        }
        Ok(self.device().ptes().load(table + 8 * index).unwrap_or(0))
    }

    /// [`Dart::release_table`](crate::Dart::release_table).
    pub(crate) fn release_table(&self, table: u64) -> Result<(), DartError> {
        self.device().frames().check_running()?;
        self.refuse_in_interrupt("release_table")?;
        let f = table_frame(self, table, 0, 0)?;
        let mut m = self.mapper.lock();
        let Some(d) = m.driver.get(&f).copied() else {
            return Err(DartError::NotDriverTable { pa: table, reason: "not a driver table of this DART" });
        };
        if d.live > 0 {
            return Err(DartError::TableInUse { pa: table, reason: "it still has valid entries" });
        }
        if d.parent.is_some() {
            return Err(DartError::TableInUse {
                pa: table,
                reason: "an entry links it (a cleared one: until the flush that covers it)",
            });
        }
        if self.streams_naming(table).next().is_some() {
            return Err(DartError::TableInUse { pa: table, reason: "a TTBR names it" });
        }
        m.driver.remove(&f);
        // M7: a DMA that loaded a TTBR naming it before that TTBR moved may
        // still be walking it.
        self.device().walk_cache().invalidate(&*m);
        self.device().inflight().synchronize();
        let _ = self.device().frames().release(f, FrameCounter::Dart);
        Ok(())
    }
}
