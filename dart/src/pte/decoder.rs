//! A format's PTE decoding at one page size, with every mask computed once.
//!
//! [`PteFormat::decode_leaf`] and [`PteFormat::decode_table`] take the page
//! size on each call and dispatch on the format, so each decode recomputes
//! the format's masks from the page shift. The table walker decodes every
//! PTE it reads; it asks its DART's [`PteDecoder`] instead, built once from
//! the same named per-format functions ([`super::dart1`], [`super::dart2`]),
//! which reduces a decode to a few masks and shifts. Both give the same
//! answer for every `u64` (tested below, exhaustively over the bits that
//! matter and by proptest over the rest).

use super::{dart1, dart2, pte_to_subpage, Leaf, PteFormat, Subpage, PTE_VALID};

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
    /// The no-read bit.
    no_read: u64,
    /// The no-write bit.
    no_write: u64,
    /// DART1's subpage-disable bit (the whole page is granted when set); 0
    /// for DART2, which has none.
    sp_dis: u64,
}

impl PteDecoder {
    /// The decoder of `format` for pages of `1 << page_shift` bytes.
    pub(crate) const fn new(format: PteFormat, page_shift: u32) -> PteDecoder {
        match format {
            PteFormat::Dart1 => PteDecoder {
                pa_field: dart1::pa_mask(page_shift),
                pa_shift: 0,
                pa_mask: dart1::pa_mask(page_shift),
                no_read: dart1::PTE_PROT_NO_READ,
                no_write: dart1::PTE_PROT_NO_WRITE,
                sp_dis: dart1::PTE_PROT_SP_DIS,
            },
            PteFormat::Dart2 => PteDecoder {
                pa_field: dart2::paddr_mask(page_shift),
                pa_shift: dart2::PADDR_SHIFT,
                pa_mask: dart2::pa_mask(page_shift),
                no_read: dart2::PTE_PROT_NO_READ,
                no_write: dart2::PTE_PROT_NO_WRITE,
                sp_dis: 0,
            },
        }
    }

    /// The PA held in `pte`'s PA field (other bits ignored).
    #[inline(always)]
    fn pa(&self, pte: u64) -> u64 {
        ((pte & self.pa_field) << self.pa_shift) & self.pa_mask
    }

    /// [`PteFormat::decode_leaf`]: the leaf `pte` describes, `None` when its
    /// valid bit is clear.
    #[inline(always)]
    pub(crate) fn leaf(&self, pte: u64) -> Option<Leaf> {
        if pte & PTE_VALID == 0 {
            return None;
        }
        let subpage = if pte & self.sp_dis != 0 { Subpage::WHOLE } else { pte_to_subpage(pte) };
        Some(Leaf { pa: self.pa(pte), read: pte & self.no_read == 0, write: pte & self.no_write == 0, subpage })
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
                for high in [0u64, u64::MAX << 16, 0x0123_4567_89ab_0000, 0xfff0_0000_0000_0000] {
                    for low in 0..=0xffffu64 {
                        let pte = high | low;
                        assert_eq!(d.leaf(pte), format.decode_leaf(shift, pte), "{format:?} 2^{shift} leaf {pte:#x}");
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
                let leaf =
                    Leaf { pa: 0xf_fff0_0000 & !((1 << shift) - 1), read: true, write: false, subpage: Subpage::WHOLE };
                let pte = format.encode_leaf(shift, &leaf).unwrap();
                assert_eq!(d.leaf(pte), Some(leaf), "{format:?} 2^{shift}");
                let table = format.encode_table(shift, 0x8_0000_0000).unwrap();
                assert_eq!(d.table(table), Some(0x8_0000_0000), "{format:?} 2^{shift}");
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_format_on_any_pte(pte in any::<u64>(), dart2 in any::<bool>(), k16 in any::<bool>()) {
            let format = if dart2 { PteFormat::Dart2 } else { PteFormat::Dart1 };
            let shift = if k16 { 14 } else { 12 };
            let d = PteDecoder::new(format, shift);
            prop_assert_eq!(d.leaf(pte), format.decode_leaf(shift, pte));
            prop_assert_eq!(d.table(pte), format.decode_table(shift, pte));
        }
    }
}
