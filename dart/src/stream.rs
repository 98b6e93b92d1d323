//! Per-stream state: configuration (enable, TCR), TTBRs and the IOTLB
//! generations.
//!
//! This is the one source of truth for stream configuration: the high-level
//! API and the MMIO register file (which encodes it per variant) both read
//! and write these atomics. Writers (configuration calls, register writes)
//! hold the DART's mapper lock; readers (the DMA path) load without a lock.

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// A stream's configuration, variant-neutral (the register model encodes it
/// into each variant's TCR / enable registers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamConfig {
    /// The stream is enabled (STREAMS_ENABLE / ENABLE_STREAMS).
    pub enabled: bool,
    /// TCR.TRANSLATE_ENABLE.
    pub translate: bool,
    /// TCR.BYPASS_DART: accesses go to physical addresses untranslated (still
    /// checked against the frame table). Only for trusted streams.
    pub bypass: bool,
    /// TCR.BYPASS_DAPF: recorded; the emulator has no DAPF to bypass.
    pub bypass_dapf: bool,
    /// TCR.FOUR_LEVEL (t8110): three table levels below the TTBR.
    pub four_level: bool,
}

const ENABLED: u32 = 1 << 0;
const TRANSLATE: u32 = 1 << 1;
const BYPASS: u32 = 1 << 2;
const BYPASS_DAPF: u32 = 1 << 3;
const FOUR_LEVEL: u32 = 1 << 4;
/// Derived, never set alone: enabled, translating and not bypassing, the
/// only configuration the hit path serves (one bit test instead of three).
const TRANSLATING: u32 = 1 << 5;

impl StreamConfig {
    /// Enabled and translating: how scenarios start every coprocessor's stream.
    pub const TRANSLATING: StreamConfig =
        StreamConfig { enabled: true, translate: true, bypass: false, bypass_dapf: false, four_level: false };

    pub(crate) const fn to_bits(self) -> u32 {
        (self.enabled as u32 * ENABLED)
            | (self.translate as u32 * TRANSLATE)
            | (self.bypass as u32 * BYPASS)
            | (self.bypass_dapf as u32 * BYPASS_DAPF)
            | (self.four_level as u32 * FOUR_LEVEL)
            | ((self.enabled && self.translate && !self.bypass) as u32 * TRANSLATING)
    }

    pub(crate) const fn from_bits(bits: u32) -> StreamConfig {
        StreamConfig {
            enabled: bits & ENABLED != 0,
            translate: bits & TRANSLATE != 0,
            bypass: bits & BYPASS != 0,
            bypass_dapf: bits & BYPASS_DAPF != 0,
            four_level: bits & FOUR_LEVEL != 0,
        }
    }

    /// Whether accesses can go anywhere at all (enabled, and translating or bypassing).
    pub const fn live(self) -> bool {
        self.enabled && (self.translate || self.bypass)
    }
}

/// The TTBR slot value: a table's physical address with bit 0 as valid.
const TTBR_VALID: u64 = 1;

/// IOTLB generations per stream. IOVA region `r` (of
/// [`GEN_REGION_SHIFT`] bits) uses generation `r % GEN_REGIONS`, so an
/// unmap kills the IOTLB entries of the regions it touches (and of the
/// regions that share their generations), not the whole stream's.
pub(crate) const GEN_REGIONS: usize = 64;

// Region masks (`region_bit`, `region_mask`) are `u64`s.
const _: () = assert!(GEN_REGIONS <= 64);

/// 32 MiB regions: an unmap of a few pages costs the IOTLB entries of one
/// 32 MiB region (what one 16 KiB leaf table maps).
pub(crate) const GEN_REGION_SHIFT: u32 = 25;

/// The generation index of `iova`.
#[inline]
const fn region(iova: u64) -> usize {
    (iova >> GEN_REGION_SHIFT) as usize % GEN_REGIONS
}

/// `iova`'s region as a region mask: bit [`region`]`(iova)`. The in-flight
/// tracker's fence flags use these masks ([`crate::inflight`]).
#[inline]
pub(crate) const fn region_bit(iova: u64) -> u64 {
    1 << region(iova)
}

/// The region mask of `[iova, iova + len)` (of at least its first byte):
/// every region an access or invalidation of that range touches, all of
/// them when it wraps around the [`GEN_REGIONS`].
#[inline]
pub(crate) fn region_mask(iova: u64, len: u64) -> u64 {
    let first = iova >> GEN_REGION_SHIFT;
    let last = iova.saturating_add(len.max(1) - 1) >> GEN_REGION_SHIFT;
    match last - first {
        0 => region_bit(iova),
        n if n >= GEN_REGIONS as u64 - 1 => u64::MAX,
        _ => (first..=last).fold(0u64, |m, r| m | 1 << (r % GEN_REGIONS as u64)),
    }
}

/// Stream sets travel as bitmaps: bit `sid % 64` of word `sid / 64` (the
/// mapper's invalidations, the in-flight tracker's `synchronize_regions`).
/// Sets stream `sid`'s bit of `bits`.
#[inline]
pub(crate) fn set_stream(bits: &mut [u64; 4], sid: u32) {
    bits[(sid / 64) as usize & 3] |= 1 << (sid % 64);
}

/// Clears stream `sid`'s bit of `bits` (see [`set_stream`]).
#[inline]
pub(crate) fn clear_stream(bits: &mut [u64; 4], sid: u32) {
    bits[(sid / 64) as usize & 3] &= !(1 << (sid % 64));
}

/// Whether stream `sid`'s bit of `bits` is set (see [`set_stream`]).
#[inline]
pub(crate) fn has_stream(bits: &[u64; 4], sid: u32) -> bool {
    bits[(sid / 64) as usize & 3] & (1 << (sid % 64)) != 0
}

/// The stream ids whose bits are set in `bits`, in increasing order (see
/// [`set_stream`]).
#[inline]
pub(crate) fn streams_in(bits: [u64; 4]) -> StreamIds {
    StreamIds { bits, word: 0 }
}

/// [`streams_in`]'s iterator: clears each bit as it yields it (a loop the
/// compiler keeps as tight as the hand-written one it replaced; a
/// `flat_map` of `successors` cost the mapper's unmap 175 instructions).
pub(crate) struct StreamIds {
    bits: [u64; 4],
    word: usize,
}

impl Iterator for StreamIds {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while let Some(b) = self.bits.get_mut(self.word) {
            if *b != 0 {
                let s = self.word * 64 + b.trailing_zeros() as usize;
                *b &= *b - 1;
                return Some(s);
            }
            self.word += 1;
        }
        None
    }
}

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
        StreamConfig::from_bits(self.config.load(Ordering::Acquire))
    }

    /// The configuration, if it is enabled, translating and not bypassing
    /// (one bit test of the word `set_config` stored); `None` otherwise.
    #[inline]
    pub(crate) fn translating_config(&self) -> Option<StreamConfig> {
        let bits = self.config.load(Ordering::Acquire);
        (bits & TRANSLATING != 0).then(|| StreamConfig::from_bits(bits))
    }

    pub(crate) fn set_config(&self, c: StreamConfig) {
        self.config.store(c.to_bits(), Ordering::Release);
    }

    /// The table the TTBR `idx` names, if valid.
    #[inline]
    pub(crate) fn ttbr(&self, idx: usize) -> Option<u64> {
        let v = self.ttbr.get(idx)?.load(Ordering::Acquire);
        (v & TTBR_VALID != 0).then_some(v & !TTBR_VALID)
    }

    pub(crate) fn set_ttbr(&self, idx: usize, table: Option<u64>) {
        if let Some(slot) = self.ttbr.get(idx) {
            slot.store(table.map_or(0, |pa| pa | TTBR_VALID), Ordering::Release);
        }
    }

    /// The IOTLB generation for `iova`. `SeqCst`, not just `Acquire`: a DMA
    /// that entered the in-flight tracker (a `SeqCst` RMW) after a strict
    /// unmap's scan must read the bumped generation, and under the C++20
    /// model only a `SeqCst` load (or a `SeqCst` fence) after that RMW is
    /// ordered after the scan's fence; an `Acquire` load may still return the
    /// old generation and the old PTE (the loom model in `crate::loom_models`
    /// found exactly that). On x86-64 and AArch64 this load costs the same as
    /// `Acquire` (`mov`, `ldar`).
    #[inline]
    pub(crate) fn gen(&self, iova: u64) -> u64 {
        let gen = &self.gens[region(iova)];
        // The test-only `loom-broken-ordering` feature weakens this one load
        // under loom, to show the model in `crate::loom_models` catches it.
        #[cfg(all(loom, feature = "loom-broken-ordering"))]
        return gen.load(Ordering::Relaxed);
        #[cfg(not(all(loom, feature = "loom-broken-ordering")))]
        gen.load(Ordering::SeqCst)
    }

    /// Kills every IOTLB entry of this stream (`SeqCst`: ordered before the
    /// in-flight tracker's scan; see [`crate::inflight`]).
    pub(crate) fn bump_gen(&self) {
        for gen in self.gens.iter() {
            gen.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// [`StreamState::bump_gen`] for an invalidation that calls
    /// `InFlight::synchronize` next (strict unmap, flush): a `load` + a
    /// `Release` store instead of a `lock`-prefixed RMW. Exact because every
    /// generation writer holds the DART's mapper lock (one writer at a
    /// time); `Release` still publishes the cleared PTEs to a DMA that reads
    /// the new generation; and `synchronize`'s leading `SeqCst` fence orders
    /// the store before the tracker's scan, which is all the scan's argument
    /// needs (see `crate::inflight`, "Idle writers").
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
            gen.store(gen.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

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
