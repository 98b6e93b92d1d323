//! The crate's vocabulary: plain values every component speaks (a DMA's
//! direction, a translated span, a stream's configuration, the invalidation
//! mode), and the two bit sets the concurrency protocol passes around:
//! IOVA regions (the granularity of IOTLB generations and of the in-flight
//! tracker's fence flags) and stream sets. No behaviour, no state.

/// When `unmap` invalidates (docs/design.md §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// `unmap` clears, invalidates, waits for DMA in flight, then releases.
    #[default]
    Strict,
    /// `unmap` clears and queues; stale IOTLB entries serve until a flush.
    Deferred,
}

impl Invalidation {
    /// Both modes.
    pub const ALL: [Invalidation; 2] = [Invalidation::Strict, Invalidation::Deferred];

    /// Scenario-file spelling: `strict` or `deferred`.
    pub const fn name(self) -> &'static str {
        match self {
            Invalidation::Strict => "strict",
            Invalidation::Deferred => "deferred",
        }
    }
}

impl std::fmt::Display for Invalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Direction of a DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Device reads memory.
    Read,
    /// Device writes memory.
    Write,
}

/// A run of IOVA space that translates to contiguous physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// First IOVA.
    pub iova: u64,
    /// First physical address.
    pub pa: u64,
    /// Bytes.
    pub len: u64,
}

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
pub(crate) const TRANSLATING: u32 = 1 << 5;

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
pub(crate) const fn region(iova: u64) -> usize {
    (iova >> GEN_REGION_SHIFT) as usize % GEN_REGIONS
}

/// `iova`'s region as a region mask: bit [`region`]`(iova)`. The in-flight
/// tracker's fence flags use these masks ([`crate::sync::inflight`]).
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
/// compiler keeps as tight as a hand-written one, which a `flat_map` of
/// `successors` is not).
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
