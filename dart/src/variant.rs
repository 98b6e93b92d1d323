//! DART hardware variants and their translation geometry (docs/design.md §3).
//!
//! Everything that differs between t8020, t6000 and t8110 in how an IOVA is
//! cut into table indices lives here: stream count, TTBRs per stream and the
//! IOVA bits that choose one, levels, PTE format and output address width.

use std::fmt;
use std::str::FromStr;

/// A page-table entry format: which DART generation's bit layout to use
/// (its encoding and decoding are in [`crate::pte`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PteFormat {
    /// DART1 (Apple t8020): PA in place at bits \[35:12\], 36-bit output
    /// addresses, `SP_DIS` bit for whole-page mappings. See [`crate::pte::dart1`].
    Dart1,
    /// DART2 (t6000, t8110): PA >> 4 at bits \[37:10\] (\[37:8\] with 4 KiB
    /// pages), 42-bit output addresses. See [`crate::pte::dart2`].
    Dart2,
}

/// A DART hardware variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// DART1 PTEs, 16 streams, 4 TTBRs per stream, 36-bit output.
    T8020,
    /// DART2 PTEs, 16 streams, 4 TTBRs per stream, 42-bit output.
    T6000,
    /// DART2 PTEs, up to 256 streams, 1 TTBR, optional four-level tables.
    T8110,
}

impl Variant {
    /// Scenario-file spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Variant::T8020 => "t8020",
            Variant::T6000 => "t6000",
            Variant::T8110 => "t8110",
        }
    }

    /// PTE format.
    pub const fn pte_format(self) -> PteFormat {
        match self {
            Variant::T8020 => PteFormat::Dart1,
            Variant::T6000 | Variant::T8110 => PteFormat::Dart2,
        }
    }

    /// Most streams an instance can have.
    pub const fn max_streams(self) -> u32 {
        match self {
            Variant::T8020 | Variant::T6000 => 16,
            Variant::T8110 => 256,
        }
    }

    /// TTBRs per stream.
    pub const fn ttbrs_per_stream(self) -> u32 {
        match self {
            Variant::T8020 | Variant::T6000 => 4,
            Variant::T8110 => 1,
        }
    }

    /// Output (physical) address width in bits (t8110: what PARAMS3 reports).
    pub const fn output_bits(self) -> u32 {
        match self {
            Variant::T8020 => 36,
            Variant::T6000 | Variant::T8110 => 42,
        }
    }

    /// Whether TCR.FOUR_LEVEL exists.
    pub const fn has_four_level(self) -> bool {
        matches!(self, Variant::T8110)
    }

    /// All variants.
    pub const ALL: [Variant; 3] = [Variant::T8020, Variant::T6000, Variant::T8110];
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown DART variant `{s}` (expected t8020, t6000 or t8110)"))
    }
}

/// How one stream cuts an IOVA: page offset, table levels, TTBR selection.
///
/// With `page_shift` p and `b = p - 3` index bits per table (one table is one
/// page of 8-byte PTEs), the IOVA is, from the top:
///
/// ```text
/// | TTBR select (t8020/t6000: 2 bits) | [L0: b bits, four-level only] | L1: b bits | L2: b bits | offset: p bits |
/// ```
///
/// At 16 KiB that is IOVA\[37:36\] TTBR, IOVA\[46:36\] L0, IOVA\[35:25\] L1,
/// IOVA\[24:14\] L2 (docs/design.md §3). The 4 KiB layout (9 bits per level, TTBR select
/// at IOVA\[31:30\]) is *inferred* by the same rule; no public source shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// log2 of the page size (12 or 14).
    pub page_shift: u32,
    /// Table levels below the TTBR: 2, or 3 with four-level tables.
    pub levels: u32,
    /// IOVA bits above the levels that pick a TTBR (2 for 4 TTBRs, else 0).
    pub ttbr_bits: u32,
    /// Most IOVA bits the instance accepts (t8110: its output width, as
    /// PARAMS3 reports ias ≤ oas; 64 elsewhere): caps [`Geometry::iova_bits`].
    pub max_iova_bits: u32,
}

impl Geometry {
    /// The geometry of `variant` at `page_shift`, with or without TCR.FOUR_LEVEL
    /// (ignored by variants that lack it).
    pub const fn new(variant: Variant, page_shift: u32, four_level: bool) -> Geometry {
        let levels = if four_level && variant.has_four_level() { 3 } else { 2 };
        let ttbr_bits = match variant.ttbrs_per_stream() {
            4 => 2,
            _ => 0,
        };
        let max_iova_bits = if variant.has_four_level() { variant.output_bits() } else { 64 };
        Geometry { page_shift, levels, ttbr_bits, max_iova_bits }
    }

    /// Index bits per table level.
    pub const fn bits_per_level(&self) -> u32 {
        self.page_shift - 3
    }

    /// PTEs per table.
    pub const fn entries_per_table(&self) -> u64 {
        1 << self.bits_per_level()
    }

    /// The page size in bytes.
    pub const fn page_size(&self) -> u64 {
        1 << self.page_shift
    }

    /// IOVA bits the tables translate (TTBR select included), at most
    /// [`Geometry::max_iova_bits`]: t8110 four-level at 16 KiB pages has
    /// 47 bits of table index but accepts 42 (its L0 table uses 64 entries
    /// of 2048), as T602x's PARAMS3 reports IAS 42 against OAS 42.
    pub const fn iova_bits(&self) -> u32 {
        let bits = self.page_shift + self.levels * self.bits_per_level() + self.ttbr_bits;
        if bits < self.max_iova_bits {
            bits
        } else {
            self.max_iova_bits
        }
    }

    /// The first IOVA this geometry cannot translate.
    pub const fn iova_limit(&self) -> u64 {
        1 << self.iova_bits()
    }

    /// Which of the stream's TTBRs translates `iova`.
    pub const fn ttbr_index(&self, iova: u64) -> usize {
        let shift = self.page_shift + self.levels * self.bits_per_level();
        ((iova >> shift) & ((1 << self.ttbr_bits) - 1)) as usize
    }

    /// The PTE index of `iova` in the table at `level` (0 = the table the TTBR
    /// points at, `levels - 1` = the leaf table).
    pub const fn index(&self, iova: u64, level: u32) -> usize {
        let shift = self.page_shift + (self.levels - 1 - level) * self.bits_per_level();
        ((iova >> shift) & (self.entries_per_table() - 1)) as usize
    }

    /// The IOVA page number of `iova`.
    pub const fn page(&self, iova: u64) -> u64 {
        iova >> self.page_shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_k_geometry_matches_the_spec_bit_ranges() {
        let g = Geometry::new(Variant::T8020, 14, false);
        assert_eq!((g.levels, g.ttbr_bits, g.iova_bits()), (2, 2, 38));
        let iova = (0b10u64 << 36) | (0x5a5 << 25) | (0x3c3 << 14) | 0x123;
        assert_eq!(g.ttbr_index(iova), 2);
        assert_eq!(g.index(iova, 0), 0x5a5);
        assert_eq!(g.index(iova, 1), 0x3c3);
        let t = Geometry::new(Variant::T8110, 14, false);
        assert_eq!((t.levels, t.ttbr_bits, t.iova_bits()), (2, 0, 36));
        let f = Geometry::new(Variant::T8110, 14, true);
        // Four levels cut 47 bits; the instance accepts 42 (ias ≤ oas).
        assert_eq!((f.levels, f.iova_bits(), f.iova_limit()), (3, 42, 1 << 42));
        let iova = (0x3fu64 << 36) | (0x001 << 25) | (0x7fe << 14);
        assert_eq!((f.ttbr_index(iova), f.index(iova, 0), f.index(iova, 1), f.index(iova, 2)), (0, 0x3f, 1, 0x7fe));
        // FOUR_LEVEL means nothing to the 4-TTBR variants.
        assert_eq!(Geometry::new(Variant::T6000, 14, true).levels, 2);
    }

    #[test]
    fn four_k_geometry() {
        let g = Geometry::new(Variant::T6000, 12, false);
        assert_eq!((g.entries_per_table(), g.iova_bits()), (512, 32));
        let iova = (3u64 << 30) | (0x1ff << 21) | (0x101 << 12);
        assert_eq!((g.ttbr_index(iova), g.index(iova, 0), g.index(iova, 1)), (3, 0x1ff, 0x101));
        assert_eq!(Geometry::new(Variant::T8110, 12, true).iova_bits(), 39);
    }
}
