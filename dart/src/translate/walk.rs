//! The table walk: from a stream's TTBR down to the leaf PTE of an IOVA,
//! as the DART's hardware walker does, with the checks that keep forbidden
//! frames unreachable.
//!
//! The walk reads TTBRs and PTEs with `Acquire` loads (the mapper writes
//! them with `Release` stores under its lock, [`crate::mapper`]), the frame
//! table's state words and device-reachable map. It takes no lock; the
//! only thing it writes is its own thread's row of the walk cache
//! ([`crate::translate::walk_cache`]): which leaf table the IOVA's block reached, so
//! that the next walk of the block starts there. A walk racing an unmap may
//! see the old or the new PTE, and [`crate::dart`]'s protocol makes either
//! answer safe.
//!
//! Everything a walk derives from the DART's fixed configuration (shifts,
//! masks, the IOVA limit for two and three levels, the PTE decoding at the
//! DART's page size) is computed once, at [`Walker::new`]; a walk only
//! indexes, loads and compares.

use super::Translator;
use crate::fault::FaultKind;
use crate::hw::pte::PteDecoder;
use crate::hw::tlb_value;
use crate::translate::phys::HostTable;
use crate::translate::stream::StreamState;
use crate::translate::walk_cache::WalkCache;
use crate::types::StreamConfig;
use crate::variant::{Geometry, Variant};
use frame_table::FrameType;

/// One [`Geometry`]'s walk, precomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalkPlan {
    /// Table levels below the TTBR (2 or 3).
    levels: u32,
    /// The shift of the first level's index in the IOVA.
    top_shift: u32,
    /// Index bits per level.
    bits: u32,
    /// `entries per table - 1`.
    index_mask: u64,
    /// The first IOVA the geometry cannot translate.
    iova_limit: u64,
    /// The shift of the TTBR select bits in the IOVA.
    ttbr_shift: u32,
    /// `TTBRs per stream - 1`.
    ttbr_mask: u64,
    /// The shift of the leaf table's index in the IOVA (the page shift).
    leaf_shift: u32,
    /// The shift of the IOVA's block: the bits above the leaf table's
    /// index, which pick the leaf table ([`crate::translate::walk_cache`]'s keys).
    block_shift: u32,
}

impl WalkPlan {
    /// The plan of `geo`; walks with it read the same PTEs as
    /// [`Geometry::index`] and [`Geometry::ttbr_index`] name.
    pub(crate) const fn new(geo: Geometry) -> WalkPlan {
        let bits = geo.bits_per_level();
        WalkPlan {
            levels: geo.levels,
            top_shift: geo.page_shift + (geo.levels - 1) * bits,
            bits,
            index_mask: geo.entries_per_table() - 1,
            iova_limit: geo.iova_limit(),
            ttbr_shift: geo.page_shift + geo.levels * bits,
            ttbr_mask: (1 << geo.ttbr_bits) - 1,
            leaf_shift: geo.page_shift,
            block_shift: geo.page_shift + bits,
        }
    }
}

/// A DART's walks: the plans of its two geometries (TCR.FOUR_LEVEL clear
/// and set; the same plan twice on variants without four-level tables) and
/// its PTE decoder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walker {
    plans: [WalkPlan; 2],
    decoder: PteDecoder,
}

impl Walker {
    /// The walker of a `variant` DART with pages of `1 << page_shift` bytes.
    pub(crate) const fn new(variant: Variant, page_shift: u32) -> Walker {
        Walker {
            plans: [
                WalkPlan::new(Geometry::new(variant, page_shift, false)),
                WalkPlan::new(Geometry::new(variant, page_shift, true)),
            ],
            decoder: PteDecoder::new(variant.pte_format(), page_shift),
        }
    }

    /// The plan a stream configured as `config` walks with.
    #[inline(always)]
    fn plan(&self, config: StreamConfig) -> &WalkPlan {
        &self.plans[config.four_level as usize]
    }
}

/// The shortest DMA (by the length asked for) that touches its leaf PTE
/// before entering ([`Translator::touch_leaf`]): a DMA that copies 1 KiB or more
/// spends far more than the touch's cost in its copy, and is likely one of
/// a run of long copies whose tails the touch overlaps. The touch is
/// wasted on a DMA that then hits the IOTLB or faults.
pub(crate) const TOUCH_MIN_LEN: u64 = 1024;

impl Translator {
    /// Walks stream `sid`'s tables (`st`, under its configuration `config`)
    /// for `iova`, through the walk cache of the caller's lane `lane` (its
    /// DMA guard's; [`crate::translate::walk_cache`]). Checks that every table it reads
    /// is a `dart-table` frame and that the leaf's frame may be reached by a
    /// DART. Returns the leaf as the IOTLB caches it ([`crate::hw::tlb_value`]),
    /// decoded straight from the PTE.
    ///
    /// Faults: `NoTtbr` beyond the geometry's IOVA limit or when the TTBR is
    /// invalid; `NoL0`/`NoL1` for an invalid table descriptor (the level
    /// above the leaf table is L1); `NoPte` for an invalid leaf;
    /// `ForbiddenFrame` when a table is not a `dart-table` frame, lies
    /// outside memory, or the leaf's frame is not device-reachable.
    ///
    /// The table checks restate invariants the mapper keeps (TTBRs and table
    /// descriptors only ever name this DART's own tables, which stay
    /// `dart-table` while anything can walk them); a full walk makes them
    /// at every level (one load and one compare per table, on lines it
    /// touches anyway), a walk through the cache made them when it filled
    /// the entry. The leaf check is the one that keeps forbidden frames
    /// unreachable whatever the tables say, and every walk makes it.
    #[inline(always)]
    pub(crate) fn walk(
        &self,
        (sid, st): (u32, &StreamState),
        config: StreamConfig,
        iova: u64,
        lane: usize,
    ) -> Result<u64, FaultKind> {
        let walker = &self.walker;
        let plan = walker.plan(config);
        if iova >= plan.iova_limit {
            return Err(FaultKind::NoTtbr);
        }
        let gen = self.walk_cache.gen();
        let key = WalkCache::key(sid, iova >> plan.block_shift);
        let pte = match self.walk_cache.lookup(lane, key, gen) {
            // Type-checked when the entry was filled, and still a
            // `dart-table` frame (`crate::translate::walk_cache`, "What it keeps
            // checking").
            Some(bits) => {
                // SAFETY: this DART's walk cache holds only what the arm
                // below stores in it, `HostTable` bits from this loader, and
                // the entry read is one such store: a row's entries are
                // written by the thread that owns its lane alone and pass
                // from owner to owner through the slot mutex, so a lookup
                // sees the last fill's key, generation and table together;
                // an entry never filled has key 0, which no lookup matches.
                // The table lies in the memory this loader holds a handle
                // of, so it stays mapped; and the entry is live (its
                // generation is the current one), so the table is still
                // one (`crate::translate::walk_cache`, the protocol), whose PTEs only
                // atomic accesses touch.
                let table = unsafe { HostTable::from_bits(bits) };
                // The leaf's index is the page number (the leaf shift is
                // the page shift, `WalkPlan::new`), which the loader takes
                // modulo the table itself. Worked out here and below rather
                // than before the lookup: one value fewer kept across it.
                self.ptes.load_in(table, iova >> self.page_shift)
            }
            None => {
                let table = self.walk_to_leaf_table(st, plan, iova)?;
                let pte = self.table_pte(table, (iova >> self.page_shift) & plan.index_mask)?;
                if let Some(host) = self.ptes.table(table) {
                    self.walk_cache.fill(lane, key, gen, host.to_bits());
                }
                pte
            }
        };
        match walker.decoder.tlb_value(pte) {
            // The DART's pages are the frame table's frames (`Dart::new`).
            Some(v) if self.frames.device_reachable_frame(tlb_value::page_number(v)) => Ok(v),
            Some(_) => Err(FaultKind::ForbiddenFrame),
            None => Err(FaultKind::NoPte),
        }
    }

    /// Prefetches the leaf PTE that a walk of `iova` through the walk cache
    /// would read, if the calling thread's row holds the block: the line
    /// [`Translator::touch_address`] names. Decides nothing (`crate::translate::walk_cache`,
    /// "Touches").
    ///
    /// Why: a DMA's copy is a long run of loads and stores, and the next
    /// DMA's walk comes well into it; while the copy before it has not
    /// retired, the leaf PTE's load may not even issue, and in a loop of
    /// long DMAs the line has left the caches. Issued first, the miss
    /// overlaps the copy's tail. A prefetch rather than a load: unlike a
    /// load it cannot race with whatever reuses a freed table's frame. It
    /// is not free, so only DMAs of [`TOUCH_MIN_LEN`] bytes or more make it.
    /// Only on x86-64 (see [`crate::translate::phys::prefetch`]): elsewhere
    /// `Translator::access` skips it.
    #[inline(always)]
    pub(crate) fn touch_leaf(&self, sid: u32, st: &StreamState, iova: u64) {
        if let Some(addr) = self.touch_address(sid, st, iova) {
            crate::translate::phys::prefetch(addr);
        }
    }

    /// The host address of the leaf PTE a walk of `iova` (on stream `sid`,
    /// `st`) through the calling thread's walk-cache row would read, if the
    /// row holds the block under any generation ([`WalkCache::peek`]):
    /// possibly in a table since freed or reused. `None` for a thread
    /// without a slot, a stream that does not translate, an IOVA past the
    /// geometry, or a block the row does not hold.
    #[inline(always)]
    pub(crate) fn touch_address(&self, sid: u32, st: &StreamState, iova: u64) -> Option<usize> {
        let (lane, config) = (crate::sync::slot::held()?, st.translating_config()?);
        let plan = self.walker.plan(config);
        if iova >= plan.iova_limit {
            return None;
        }
        let bits = self.walk_cache.peek(lane, WalkCache::key(sid, iova >> plan.block_shift))?;
        Some(self.ptes.pte_address(bits, iova >> plan.leaf_shift))
    }

    /// The levels above the leaf: from the TTBR to the leaf table's address.
    #[inline(always)]
    fn walk_to_leaf_table(&self, st: &StreamState, plan: &WalkPlan, iova: u64) -> Result<u64, FaultKind> {
        let Some(mut table) = st.ttbr(((iova >> plan.ttbr_shift) & plan.ttbr_mask) as usize) else {
            return Err(FaultKind::NoTtbr);
        };
        let mut shift = plan.top_shift;
        // Levels left below the table being read.
        for below in (1..plan.levels).rev() {
            let pte = self.table_pte(table, (iova >> shift) & plan.index_mask)?;
            table = match self.walker.decoder.table(pte) {
                Some(next) => next,
                None if below >= 2 => return Err(FaultKind::NoL0),
                None => return Err(FaultKind::NoL1),
            };
            shift -= plan.bits;
        }
        Ok(table)
    }

    /// PTE `index` of the table at `table`, which must be a `dart-table`
    /// frame in memory (else `ForbiddenFrame`).
    #[inline(always)]
    fn table_pte(&self, table: u64, index: u64) -> Result<u64, FaultKind> {
        if !self.frames.is_type_at(table, FrameType::DartTable) {
            return Err(FaultKind::ForbiddenFrame);
        }
        self.ptes.load(table + 8 * index).ok_or(FaultKind::ForbiddenFrame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dart, DartConfig, DartError};
    use frame_table::{FrameTable, FrameTableConfig, Perm};
    use std::sync::Arc;

    /// A touch names the leaf PTE a walk through the cache would read, for
    /// a thread whose row holds the block, under any generation; else
    /// nothing. Each step, then the address the touch would prefetch and
    /// the DMA's result.
    #[test]
    fn a_touch_names_the_leaf_pte_a_cached_walk_reads_and_decides_nothing() {
        // Its own thread: no slot, no walk-cache row yet.
        std::thread::spawn(|| {
            const PAGE: u64 = 0x4000;
            let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
            let d = Dart::new(frames.clone(), DartConfig::new("touch", Variant::T8110)).unwrap();
            d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
            let data = frames.alloc(FrameType::UserData, 1).unwrap();
            let (x, elsewhere) = (0x0200_0000 + 5 * PAGE, 0x0400_0000);
            d.map(1, x, &data, Perm::RW, None).unwrap();
            let st = &d.device().streams()[1];
            // Where x's leaf PTE lies in host memory: PTE 5 of the table
            // that is not the root.
            let root = d.ttbr(1, 0).unwrap().unwrap();
            let leaf_table = d.table_frames().into_iter().map(|f| frames.pa_of(f).unwrap()).find(|&pa| pa != root);
            let host = d.device().ptes().table(leaf_table.unwrap()).unwrap().to_bits() as usize;
            let (pte_x, pte_next) = (host + 8 * 5, host + 8 * 6);

            // No DMA on this thread yet: no slot, so no row to read.
            assert_eq!(crate::sync::slot::held(), None);
            assert_eq!(d.device().touch_address(1, st, x), None);

            // A DMA claims a slot and its walk fills the row: the touch
            // names x's leaf PTE, and the next page's in the same table.
            d.dma_read(1, x, &mut [0u8; 64]).unwrap();
            assert_eq!(d.device().touch_address(1, st, x), Some(pte_x));
            assert_eq!(d.device().touch_address(1, st, x + PAGE), Some(pte_next));
            // Another block, and a stream that does not translate: nothing.
            assert_eq!(d.device().touch_address(1, st, elsewhere), None);
            assert_eq!(d.device().touch_address(2, &d.device().streams()[2], x), None);
            d.device().touch_leaf(1, st, x);

            // The unmap retires the leaf table and moves the walk
            // generation: the row's entry is dead, and the touch still
            // names the retired table's line, but the DMA walks from the
            // TTBR and faults.
            d.unmap(1, x, PAGE).unwrap();
            assert_eq!(d.device().touch_address(1, st, x), Some(pte_x), "a dead entry is still read");
            d.device().touch_leaf(1, st, x);
            let mut buf = [0xa5u8; 4096];
            match d.dma_read(1, x, &mut buf) {
                Err(DartError::Fault(f)) => assert_eq!((f.kind, f.iova), (FaultKind::NoL1, x)),
                other => panic!("expected a NoL1 fault, got {other:?}"),
            }
            assert!(buf.iter().all(|&b| b == 0xa5), "nothing copied");
        })
        .join()
        .unwrap();
    }

    /// Every leaf table maps IOVAs of one region only (its block is never
    /// wider than a region), so an unmap that retires one need only fence
    /// the readers of that region (`Kernel::invalidate`).
    #[test]
    fn a_leaf_table_lies_within_one_region() {
        for variant in [Variant::T8020, Variant::T6000, Variant::T8110] {
            for shift in [12, 14] {
                for four in [false, true] {
                    let plan = WalkPlan::new(Geometry::new(variant, shift, four));
                    assert!(plan.block_shift <= crate::types::GEN_REGION_SHIFT, "{variant:?} 2^{shift} four={four}");
                }
            }
        }
    }

    /// The plan's indices are the geometry's, on every variant, page size
    /// and level count, at the first and last IOVA and two in between whose
    /// index fields differ at every level.
    #[test]
    fn plans_index_as_the_geometry_does() {
        for variant in [Variant::T8020, Variant::T6000, Variant::T8110] {
            for shift in [12, 14] {
                for four in [false, true] {
                    let geo = Geometry::new(variant, shift, four);
                    let plan = WalkPlan::new(geo);
                    assert_eq!(plan.levels, geo.levels);
                    assert_eq!(plan.iova_limit, geo.iova_limit());
                    assert_eq!(plan.top_shift - (geo.levels - 1) * plan.bits, plan.leaf_shift, "the leaf's index");
                    for iova in [0, 0x1234_5678_9abc, geo.iova_limit() - 1, (geo.iova_limit() - 1) / 3, u64::MAX] {
                        let iova = iova & (geo.iova_limit() - 1);
                        assert_eq!(((iova >> plan.ttbr_shift) & plan.ttbr_mask) as usize, geo.ttbr_index(iova));
                        // The block (the walk cache's key) is the TTBR and
                        // every index but the leaf's.
                        let twin = iova ^ plan.index_mask << plan.leaf_shift;
                        assert_eq!(iova >> plan.block_shift, twin >> plan.block_shift);
                        let above = iova ^ 1 << plan.block_shift;
                        assert_ne!(iova >> plan.block_shift, above >> plan.block_shift);
                        assert_eq!(geo.index(twin, geo.levels - 2), geo.index(iova, geo.levels - 2));
                        for level in 0..geo.levels {
                            let at = plan.top_shift - level * plan.bits;
                            let index = ((iova >> at) & plan.index_mask) as usize;
                            assert_eq!(
                                index,
                                geo.index(iova, level),
                                "{variant:?} 2^{shift} four={four} {iova:#x} level {level}"
                            );
                        }
                    }
                }
            }
        }
    }
}
