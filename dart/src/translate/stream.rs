//! Per-stream state: configuration (enable, TCR), TTBRs and the IOTLB
//! generations.
//!
//! This is the one source of truth for stream configuration: the high-level
//! API and the MMIO register file (which encodes it per variant) both read
//! and write these atomics. Writers (configuration calls, register writes)
//! hold the DART's mapper lock; readers (the DMA path) load without a lock.
//!
//! # Protocol
//!
//! The code cites these invariants as `(G1)` to `(G5)`; `I`n are those of
//! `crate::sync::inflight`.
//!
//! 1. **G1 (one writer).** Every store to a stream's configuration, TTBRs
//!    and generations is made under the DART's mapper lock, so a generation
//!    can be bumped with a `load` and a `store` and no bump is lost.
//! 2. **G2 (publication).** Configuration and TTBR stores are `Release`,
//!    the DMA path's loads `Acquire`: a reader that sees a configuration or
//!    a TTBR sees the tables the mapper wrote before it.
//! 3. **G3 (generations kill entries).** An IOTLB entry is tagged with its
//!    region's generation read *before* its walk (`translate::iotlb`, T6),
//!    and a lookup matches only the current one. An invalidation clears the
//!    PTEs first and then bumps the generations of the regions it changed,
//!    with `Release`: a reader that loads the new generation also sees the
//!    cleared PTEs, and every older entry of those regions, including one a
//!    racing walk fills late, is dead to it.
//! 4. **G4 (the reader's load is `SeqCst`).** The DMA path loads the
//!    generation after its in-flight entry, with `SeqCst`: under the C++20
//!    model only a `SeqCst` load (or fence) after the reader's `SeqCst` point
//!    is ordered after the writer's fence `F` (I3, I5); an `Acquire` load may
//!    still return the old generation and the old PTE (the loom model in
//!    `crate::loom_models` finds exactly that). On x86-64 and AArch64 it costs
//!    the same as `Acquire` (`mov`, `ldar`).
//! 5. **G5 (bumps before `synchronize`).** A strict unmap or a flush bumps
//!    with a plain `Release` store (G1) and calls `InFlight::synchronize`
//!    next, whose leading `SeqCst` fence `F` orders the store before the
//!    tracker's scan: all I5 needs. A configuration or TTBR change bumps
//!    every generation of the stream with a `SeqCst` RMW and marks the
//!    stream moved, so that the next invalidation names all its regions (I9).

use crate::sync::{AtomicU32, AtomicU64, Ordering};
#[cfg(test)]
use crate::types::region_mask;
use crate::types::{region, StreamConfig, GEN_REGIONS, TRANSLATING};
use crossbeam_utils::CachePadded;

/// The TTBR slot value: a table's physical address with bit 0 as valid.
const TTBR_VALID: u64 = 1;

pub(crate) struct StreamState {
    config: AtomicU32,
    ttbr: [AtomicU64; 4],
    /// IOTLB generations, one per group of IOVA regions ([`GEN_REGIONS`]):
    /// entries tagged with an older one are dead.
    gens: CachePadded<[AtomicU64; GEN_REGIONS]>,
    pub(crate) trusted: bool,
}

impl StreamState {
    pub(crate) fn new(trusted: bool) -> StreamState {
        StreamState {
            config: AtomicU32::new(0),
            ttbr: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            gens: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
            trusted,
        }
    }

    #[inline]
    pub(crate) fn config(&self) -> StreamConfig {
        // (G2)
        StreamConfig::from_bits(self.config.load(Ordering::Acquire))
    }

    /// The configuration, if it is enabled, translating and not bypassing
    /// (one bit test of the word `set_config` stored); `None` otherwise.
    #[inline]
    pub(crate) fn translating_config(&self) -> Option<StreamConfig> {
        // (G2) `Acquire`: pairs with `set_config`'s `Release`.
        let bits = self.config.load(Ordering::Acquire);
        (bits & TRANSLATING != 0).then(|| StreamConfig::from_bits(bits))
    }

    pub(crate) fn set_config(&self, c: StreamConfig) {
        // (G1) Under the mapper lock. (G2) `Release`: publishes the tables
        // the configuration makes reachable.
        self.config.store(c.to_bits(), Ordering::Release);
    }

    /// The table the TTBR `idx` names, if valid.
    #[inline]
    pub(crate) fn ttbr(&self, idx: usize) -> Option<u64> {
        // (G2) `Acquire`: the table the TTBR names, as the mapper wrote it.
        let v = self.ttbr.get(idx)?.load(Ordering::Acquire);
        (v & TTBR_VALID != 0).then_some(v & !TTBR_VALID)
    }

    pub(crate) fn set_ttbr(&self, idx: usize, table: Option<u64>) {
        if let Some(slot) = self.ttbr.get(idx) {
            // (G1) Under the mapper lock. (G2) `Release`: publishes the table.
            slot.store(table.map_or(0, |pa| pa | TTBR_VALID), Ordering::Release);
        }
    }

    /// The IOTLB generation for `iova` (G3). `SeqCst`, not just `Acquire`
    /// (G4): a DMA that entered the in-flight tracker after a strict unmap's
    /// fence must read the bumped generation.
    #[inline]
    pub(crate) fn gen(&self, iova: u64) -> u64 {
        let gen = &self.gens[region(iova)];
        // The test-only `loom-broken-ordering` feature weakens this one load
        // under loom, to show the model in `crate::loom_models` catches it.
        #[cfg(all(loom, feature = "loom-broken-ordering"))]
        return gen.load(Ordering::Relaxed);
        // (G4) `SeqCst`, after the reader's `SeqCst` point (I3).
        #[cfg(not(all(loom, feature = "loom-broken-ordering")))]
        gen.load(Ordering::SeqCst)
    }

    /// Kills every IOTLB entry of this stream (G3; `SeqCst`: ordered before
    /// the in-flight tracker's scan, G5; see [`crate::sync::inflight`]).
    pub(crate) fn bump_gen(&self) {
        for gen in self.gens.iter() {
            // (G3, G5) A configuration or TTBR change: a `SeqCst` RMW, under
            // the mapper lock (G1).
            gen.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// [`StreamState::bump_gen`] for an invalidation that calls
    /// `InFlight::synchronize` next (strict unmap, flush): a `load` + a
    /// `Release` store instead of a `lock`-prefixed RMW (G5). Exact because
    /// every generation writer holds the DART's mapper lock (G1); `Release`
    /// still publishes the cleared PTEs to a DMA that reads the new
    /// generation (G3); and `synchronize`'s leading `SeqCst` fence orders the
    /// store before the tracker's scan, which is all the scan's argument
    /// needs (`crate::sync::inflight`, I5).
    pub(crate) fn bump_gen_before_synchronize(&self) {
        self.bump_gens_before_synchronize(u64::MAX);
    }

    /// [`StreamState::bump_gen_before_synchronize`] of the generations that
    /// cover `[iova, iova + len)` only: what a strict unmap of that range
    /// needs, since no IOTLB entry outside it can have gone stale.
    /// (The mapper bumps [`region_mask`]'s generations itself, as it also
    /// hands the mask to the in-flight tracker; tests and loom models call
    /// this.)
    #[cfg(test)]
    pub(crate) fn bump_range_before_synchronize(&self, iova: u64, len: u64) {
        self.bump_gens_before_synchronize(region_mask(iova, len));
    }

    /// Bumps generation `i` for every bit `i` of `mask` (a [`region_mask`]).
    pub(crate) fn bump_gens_before_synchronize(&self, mut mask: u64) {
        while mask != 0 {
            let gen = &self.gens[mask.trailing_zeros() as usize];
            mask &= mask - 1;
            // (G1) The only writer: a `Relaxed` load of its own last value.
            // (G3) `Release`: publishes the cleared PTEs. (G5) Ordered before
            // the scan by `synchronize`'s fence `F`, which follows.
            gen.store(gen.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::types::*;

    /// A stream bitmap holds exactly the ids set in it, each in its word,
    /// and lists them in increasing order, across word boundaries.
    #[test]
    fn stream_bitmaps_set_clear_test_and_list_their_ids() {
        let mut bits = [0u64; 4];
        assert_eq!(streams_in(bits).count(), 0);
        for sid in [255, 0, 63, 64, 130] {
            set_stream(&mut bits, sid);
        }
        assert_eq!(bits, [1 | 1 << 63, 1, 1 << 2, 1 << 63]);
        assert_eq!(streams_in(bits).collect::<Vec<_>>(), [0, 63, 64, 130, 255]);
        assert!(has_stream(&bits, 130) && !has_stream(&bits, 131));
        clear_stream(&mut bits, 63);
        clear_stream(&mut bits, 62); // not set: no change
        assert_eq!(streams_in(bits).collect::<Vec<_>>(), [0, 64, 130, 255]);
        assert_eq!(streams_in([u64::MAX; 4]).count(), 256);
    }

    /// Every configuration round-trips through its bits, and exactly the
    /// enabled, translating, unbypassed ones read as translating.
    #[test]
    fn translating_config_is_enabled_translating_and_not_bypassing() {
        let st = StreamState::new(true);
        assert_eq!(st.translating_config(), None, "a new stream is disabled");
        for bits in 0..32u32 {
            let c = StreamConfig::from_bits(bits);
            assert_eq!(StreamConfig::from_bits(c.to_bits()), c);
            st.set_config(c);
            assert_eq!(st.config(), c);
            let want = (c.enabled && c.translate && !c.bypass).then_some(c);
            assert_eq!(st.translating_config(), want, "{c:?}");
        }
    }

    fn gens(st: &StreamState) -> Vec<u64> {
        (0..GEN_REGIONS as u64).map(|r| st.gen(r << GEN_REGION_SHIFT)).collect()
    }

    #[test]
    fn an_unmap_bumps_the_generations_of_its_regions_only() {
        let st = StreamState::new(false);
        let region = 1u64 << GEN_REGION_SHIFT;
        // One page in region 2.
        st.bump_range_before_synchronize(2 * region + 0x4000, 0x4000);
        let mut want = vec![0u64; GEN_REGIONS];
        want[2] = 1;
        assert_eq!(gens(&st), want);
        // Regions 3 to 5, ending exactly at 6's start.
        st.bump_range_before_synchronize(3 * region + 0x8000, 3 * region - 0x8000);
        want[3..=5].iter_mut().for_each(|g| *g += 1);
        assert_eq!(gens(&st), want);
        // Region 64 + 7 shares generation 7.
        st.bump_range_before_synchronize((GEN_REGIONS as u64 + 7) * region, 1);
        want[7] += 1;
        assert_eq!(gens(&st), want);
        assert_eq!(st.gen(7 * region), st.gen((GEN_REGIONS as u64 + 7) * region));
        // A range of GEN_REGIONS regions or more, and the top of the space, bump all.
        st.bump_range_before_synchronize(region / 2, GEN_REGIONS as u64 * region);
        want.iter_mut().for_each(|g| *g += 1);
        assert_eq!(gens(&st), want);
        st.bump_range_before_synchronize(u64::MAX - 0x3fff, 0x4000);
        want[GEN_REGIONS - 1] += 1;
        assert_eq!(gens(&st), want);
        // Configuration changes and flushes bump all.
        st.bump_gen();
        st.bump_gen_before_synchronize();
        want.iter_mut().for_each(|g| *g += 2);
        assert_eq!(gens(&st), want);
    }
}
