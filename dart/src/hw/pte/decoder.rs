//! A format's PTE decoding at one page size, with every mask computed once.
//!
//! [`PteFormat::decode_leaf`] and [`PteFormat::decode_table`] take the page
//! size on each call and dispatch on the format, so each decode recomputes
//! the format's masks from the page shift. The table walker decodes every
//! PTE it reads; it asks its DART's [`PteDecoder`] instead, built once from
//! the same named per-format functions ([`super::dart1`], [`super::dart2`]),
//! which reduces a decode to a few masks and shifts. A leaf decodes
//! straight into the value the IOTLB caches ([`crate::hw::tlb_value`]), with
//! no [`super::Leaf`] in between. Both give the same answer for every
//! `u64` (`tlb_value::pack` of the format's leaf; tested below,
//! exhaustively over the bits that matter and by proptest over the rest).

use super::{dart1, dart2, PteFormat, Subpage, PTE_SUBPAGE_END, PTE_VALID};
use crate::hw::tlb_value;

/// [`Subpage::WHOLE`] as `start << 12 | end`.
const WHOLE_SP24: u64 = (Subpage::WHOLE.start as u64) << 12 | Subpage::WHOLE.end as u64;

// The layout `tlb_value` relies on: SP_START right above SP_END at the top
// of the PTE, no-read right above no-write, R right above W.
const _: () = {
    assert!(super::PTE_SUBPAGE_START == super::PTE_SUBPAGE_END << 12);
    assert!(super::PTE_SUBPAGE_START >> 52 == 0xfff);
    assert!(dart1::PTE_PROT_NO_READ == dart1::PTE_PROT_NO_WRITE << 1);
    assert!(dart2::PTE_PROT_NO_READ == dart2::PTE_PROT_NO_WRITE << 1);
    assert!(tlb_value::R == tlb_value::W << 1);
};

/// [`PteFormat::decode_leaf`] and [`PteFormat::decode_table`] for one
/// format and page size, precomputed.
///
/// Both formats store the PA as `((pte & pa_field) << pa_shift) & pa_mask`:
/// DART1 in place (`pa_shift = 0`), DART2 shifted right by 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PteDecoder {
    /// The PTE bits of the PA field.
    pa_field: u64,
    /// The PA field shifted left by this many bits is the PA.
    pa_shift: u32,
    /// The PA bits the format can hold at this page size (page aligned).
    pa_mask: u64,
    /// DART1's subpage-disable bit (the whole page is granted when set); 0
    /// for DART2, which has none.
    sp_dis: u64,
    /// The PTE bits of the page number, and how far right they move to
    /// become it: `pa(pte) >> page_shift == (pte & pfn_field) >> pfn_shift`.
    pfn_field: u64,
    pfn_shift: u32,
    /// The no-write bit's position; no-read is the bit above it in both
    /// formats.
    no_write_bit: u32,
    /// The page's last subpage unit ([`tlb_value::last_unit`]).
    last_unit: u64,
}

impl PteDecoder {
    /// The decoder of `format` for pages of `1 << page_shift` bytes.
    pub(crate) const fn new(format: PteFormat, page_shift: u32) -> PteDecoder {
        let (pa_field, pa_shift, pa_mask, no_write, sp_dis) = match format {
            PteFormat::Dart1 => (
                dart1::pa_mask(page_shift),
                0,
                dart1::pa_mask(page_shift),
                dart1::PTE_PROT_NO_WRITE,
                dart1::PTE_PROT_SP_DIS,
            ),
            PteFormat::Dart2 => (
                dart2::paddr_mask(page_shift),
                dart2::PADDR_SHIFT,
                dart2::pa_mask(page_shift),
                dart2::PTE_PROT_NO_WRITE,
                0,
            ),
        };
        PteDecoder {
            pa_field,
            pa_shift,
            pa_mask,
            sp_dis,
            // The PTE bits that survive `pa`'s shift and mask, moved
            // straight to the page number (page_shift >= pa_shift in both
            // formats).
            pfn_field: pa_field & (pa_mask >> pa_shift),
            pfn_shift: page_shift - pa_shift,
            no_write_bit: no_write.trailing_zeros(),
            last_unit: tlb_value::last_unit(page_shift),
        }
    }

    /// The PA held in `pte`'s PA field (other bits ignored).
    #[inline(always)]
    fn pa(&self, pte: u64) -> u64 {
        ((pte & self.pa_field) << self.pa_shift) & self.pa_mask
    }

    /// [`PteFormat::decode_leaf`], packed as the IOTLB caches it
    /// ([`crate::hw::tlb_value`]): the leaf `pte` describes, `None` when its
    /// valid bit is clear. Built with no [`super::Leaf`] in between: each
    /// pair of fields moves with one shift and one mask.
    #[inline(always)]
    pub(crate) fn tlb_value(&self, pte: u64) -> Option<u64> {
        if pte & PTE_VALID == 0 {
            return None;
        }
        // SP_START above SP_END at the top of the PTE: `start << 12 | end`.
        let sp24 = if pte & self.sp_dis != 0 { WHOLE_SP24 } else { pte >> PTE_SUBPAGE_END.trailing_zeros() };
        // No-read just above no-write, both inverted into R above W.
        let rw = ((!pte >> self.no_write_bit) & 0b11) << tlb_value::W.trailing_zeros();
        let pfn = (pte & self.pfn_field) >> self.pfn_shift;
        Some(tlb_value::from_parts(pfn, rw, sp24, tlb_value::covers_page(sp24, self.last_unit)))
    }

    /// [`PteFormat::decode_table`]: the next-level table `pte` points at,
    /// `None` when its valid bit is clear.
    #[inline(always)]
    pub(crate) fn table(&self, pte: u64) -> Option<u64> {
        if pte & PTE_VALID == 0 {
            return None;
        }
        Some(self.pa(pte))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FORMATS: [PteFormat; 2] = [PteFormat::Dart1, PteFormat::Dart2];

    /// Every combination of the low 16 bits (valid, protection, SP_DIS and
    /// the bottom of the PA field) under a few fixed upper halves.
    #[test]
    fn agrees_with_the_format_on_every_low_bit_pattern() {
        for format in FORMATS {
            for shift in [12, 14] {
                let d = PteDecoder::new(format, shift);
                for high in [
                    0u64,
                    u64::MAX << 16,
                    0x0123_4567_89ab_0000,
                    0xfff0_0000_0000_0000,
                    // Whole-page subpage ranges of 16 KiB and 4 KiB pages,
                    // and one unit short of the 4 KiB one.
                    0x000f_ff00_0000_0000,
                    0x0003_ff00_0000_0000,
                    0x0003_fe00_0000_0000,
                ] {
                    for low in 0..=0xffffu64 {
                        let pte = high | low;
                        assert_eq!(
                            d.tlb_value(pte),
                            format.decode_leaf(shift, pte).map(|l| tlb_value::pack(&l, shift)),
                            "{format:?} 2^{shift} leaf {pte:#x}"
                        );
                        assert_eq!(
                            d.table(pte),
                            format.decode_table(shift, pte),
                            "{format:?} 2^{shift} table {pte:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn decodes_what_the_format_encodes() {
        for format in FORMATS {
            for shift in [12, 14] {
                let d = PteDecoder::new(format, shift);
                let leaf = crate::hw::pte::Leaf {
                    pa: 0xf_fff0_0000 & !((1 << shift) - 1),
                    read: true,
                    write: false,
                    subpage: Subpage::WHOLE,
                };
                let pte = format.encode_leaf(shift, &leaf).unwrap();
                assert_eq!(d.tlb_value(pte).map(|v| tlb_value::unpack(v, shift)), Some(leaf), "{format:?} 2^{shift}");
                let table = format.encode_table(shift, 0x8_0000_0000).unwrap();
                assert_eq!(d.table(table), Some(0x8_0000_0000), "{format:?} 2^{shift}");
            }
        }
    }

    #[test]
    fn iotlb_value_agrees_with_the_packed_leaf_on_every_subpage_range() {
        for format in FORMATS {
            for shift in [12, 14] {
                let d = PteDecoder::new(format, shift);
                // Valid with both permissions, valid read-only, and DART1's
                // SP_DIS (which DART2 reads as a no-cache bit).
                for low in [0x1u64, 0x1 | dart1::PTE_PROT_NO_WRITE | dart2::PTE_PROT_NO_WRITE, 0x3] {
                    for sp24 in 0..1u64 << 24 {
                        let pte = sp24 << 40 | 0x12_3456_c000 | low;
                        assert_eq!(
                            d.tlb_value(pte),
                            format.decode_leaf(shift, pte).map(|l| tlb_value::pack(&l, shift)),
                            "{format:?} 2^{shift} {pte:#x}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_format_on_any_pte(pte in any::<u64>(), dart2 in any::<bool>(), k16 in any::<bool>()) {
            let format = if dart2 { PteFormat::Dart2 } else { PteFormat::Dart1 };
            let shift = if k16 { 14 } else { 12 };
            let d = PteDecoder::new(format, shift);
            prop_assert_eq!(d.tlb_value(pte), format.decode_leaf(shift, pte).map(|l| tlb_value::pack(&l, shift)));
            prop_assert_eq!(d.table(pte), format.decode_table(shift, pte));
        }
    }
}
