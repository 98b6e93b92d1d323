//! DART1 (Apple t8020) PTE bit layout.
//!
//! Leaf PTE:
//!
//! | bits    | field                                        |
//! |---------|----------------------------------------------|
//! | 63:52   | `SP_START` (shared, [`super::PTE_SUBPAGE_START`]) |
//! | 51:40   | `SP_END` (shared, [`super::PTE_SUBPAGE_END`])     |
//! | 35:12   | physical address, in place ([`PADDR_MASK`])  |
//! | 8       | no-read ([`PTE_PROT_NO_READ`])               |
//! | 7       | no-write ([`PTE_PROT_NO_WRITE`])             |
//! | 1       | subpage protection disable ([`PTE_PROT_SP_DIS`]) |
//! | 0       | valid ([`super::PTE_VALID`])                 |
//!
//! A table descriptor holds only the next table's PA (same position) and the
//! valid bit. These are raw building blocks that do no validation; use
//! [`super::PteFormat::Dart1`] for checked encoding.

use super::{genmask, page_offset_mask, Subpage};

/// Output-address width: DART1 PTEs address 36 bits of physical memory.
pub const MAX_ADDR_BITS: u32 = 36;

/// Bits \[35:12\]: the physical address, stored in place (PA bit n is PTE
/// bit n). Covers 36-bit output with 4 KiB or 16 KiB pages.
pub const PADDR_MASK: u64 = genmask(35, 12);

/// Bit 8: reads through this leaf are refused.
pub const PTE_PROT_NO_READ: u64 = 1 << 8;

/// Bit 7: writes through this leaf are refused.
pub const PTE_PROT_NO_WRITE: u64 = 1 << 7;

/// Bit 1: subpage protection disabled; the whole page is accessible whatever
/// `SP_START` / `SP_END` hold.
pub const PTE_PROT_SP_DIS: u64 = 1 << 1;

/// Physical-address bits a DART1 PTE can hold for pages of
/// `1 << page_shift` bytes: [`PADDR_MASK`] minus the in-page offset bits.
/// With 16 KiB pages PTE bits 12 and 13 are therefore not part of the PA.
pub const fn pa_mask(page_shift: u32) -> u64 {
    PADDR_MASK & !page_offset_mask(page_shift)
}

/// The PA field of a PTE holding `pa`: `pa` masked with
/// [`pa_mask`]`(page_shift)`. Bits outside the mask are silently dropped.
pub const fn pa_to_pte(pa: u64, page_shift: u32) -> u64 {
    pa & pa_mask(page_shift)
}

/// The physical address held in `pte`'s PA field; always below
/// `1 << 36` and page aligned. Other bits of `pte` are ignored.
pub const fn pte_to_pa(pte: u64, page_shift: u32) -> u64 {
    pte & pa_mask(page_shift)
}

/// The protection bits granting `read` / `write`: no-read and no-write set
/// for whatever is not granted. Never sets [`PTE_PROT_SP_DIS`].
pub const fn prot_to_pte(read: bool, write: bool) -> u64 {
    let mut pte = 0;
    if !read {
        pte |= PTE_PROT_NO_READ;
    }
    if !write {
        pte |= PTE_PROT_NO_WRITE;
    }
    pte
}

/// `(read, write)` as granted by `pte`'s no-read / no-write bits.
pub const fn pte_to_prot(pte: u64) -> (bool, bool) {
    (pte & PTE_PROT_NO_READ == 0, pte & PTE_PROT_NO_WRITE == 0)
}

/// The subpage bits of a leaf granting `subpage` of a `page_size`-byte page.
///
/// As Linux does for whole-page mappings: when `subpage` covers the whole
/// page this is [`PTE_PROT_SP_DIS`] with `SP_START = 0`, `SP_END = 0xfff`;
/// otherwise `SP_DIS` is clear and the fields hold `subpage` (values are
/// truncated to 12 bits).
pub fn subpage_to_pte(subpage: Subpage, page_size: u64) -> u64 {
    if subpage.is_whole(page_size) {
        PTE_PROT_SP_DIS | super::subpage_to_pte(Subpage::WHOLE)
    } else {
        super::subpage_to_pte(subpage)
    }
}

/// The subpage granted by `pte`: [`Subpage::WHOLE`] when
/// [`PTE_PROT_SP_DIS`] is set (regardless of the fields), otherwise the
/// `SP_START` / `SP_END` fields as stored.
pub fn pte_to_subpage(pte: u64) -> Subpage {
    if pte & PTE_PROT_SP_DIS != 0 {
        Subpage::WHOLE
    } else {
        super::pte_to_subpage(pte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::pte::{Leaf, PteFormat};

    const FMT: PteFormat = PteFormat::Dart1;

    /// Asserts that `leaf` encodes to exactly `pte` and `pte` decodes back
    /// to `leaf`.
    fn check_leaf(page_shift: u32, leaf: Leaf, pte: u64) {
        assert_eq!(FMT.encode_leaf(page_shift, &leaf), Ok(pte), "encode {leaf:x?}");
        assert_eq!(FMT.decode_leaf(page_shift, pte), Some(leaf), "decode {pte:#x}");
    }

    fn leaf(pa: u64, read: bool, write: bool, start: u16, end: u16) -> Leaf {
        Leaf { pa, read, write, subpage: Subpage { start, end } }
    }

    #[test]
    fn named_masks() {
        assert_eq!(PADDR_MASK, 0x0000_000f_ffff_f000);
        assert_eq!(pa_mask(12), 0x0000_000f_ffff_f000);
        assert_eq!(pa_mask(14), 0x0000_000f_ffff_c000);
        assert_eq!(prot_to_pte(true, true), 0);
        assert_eq!(prot_to_pte(true, false), 0x80);
        assert_eq!(prot_to_pte(false, true), 0x100);
        assert_eq!(prot_to_pte(false, false), 0x180);
    }

    // 16 KiB pages, pa = 0x8_1234_4000 (bits [35:12], in place).
    //   PA field             0x0000_0008_1234_4000
    //   SP_END 0xfff << 40   0x000f_ff00_0000_0000
    //   SP_DIS bit 1         0x2
    //   valid bit 0          0x1

    #[test]
    fn vector_rw_whole_page_sets_sp_dis() {
        // 0x000f_ff00_0000_0000 | 0x8_1234_4000 | 0x2 | 0x1
        check_leaf(14, leaf(0x8_1234_4000, true, true, 0, 0xfff), 0x000f_ff08_1234_4003);
    }

    #[test]
    fn vector_read_only() {
        // rw whole page | no-write (bit 7 = 0x80)
        check_leaf(14, leaf(0x8_1234_4000, true, false, 0, 0xfff), 0x000f_ff08_1234_4083);
    }

    #[test]
    fn vector_write_only() {
        // rw whole page | no-read (bit 8 = 0x100)
        check_leaf(14, leaf(0x8_1234_4000, false, true, 0, 0xfff), 0x000f_ff08_1234_4103);
    }

    #[test]
    fn vector_subpage() {
        // bytes [0x100, 0x200) = units 0x40..=0x7f, SP_DIS clear:
        //   SP_START 0x40 << 52  0x0400_0000_0000_0000
        //   SP_END   0x7f << 40  0x0000_7f00_0000_0000
        //   PA                   0x0000_0008_1234_4000
        //   valid                0x1
        let sp = Subpage::from_bytes(0x100, 0x200, 0x4000).unwrap();
        assert_eq!(sp, Subpage { start: 0x40, end: 0x7f });
        check_leaf(14, leaf(0x8_1234_4000, true, true, 0x40, 0x7f), 0x0400_7f08_1234_4001);
    }

    #[test]
    fn vector_highest_pa_16k() {
        // pa = 0xf_ffff_c000 (last 16 KiB page below 1 << 36):
        // 0x000f_ff00_0000_0000 | 0xf_ffff_c000 | 0x3
        check_leaf(14, leaf(0xf_ffff_c000, true, true, 0, 0xfff), 0x000f_ff0f_ffff_c003);
    }

    #[test]
    fn vector_table_16k() {
        // table at 0x8_1234_8000: PA in place | valid
        assert_eq!(FMT.encode_table(14, 0x8_1234_8000), Ok(0x0000_0008_1234_8001));
        assert_eq!(FMT.decode_table(14, 0x0000_0008_1234_8001), Some(0x8_1234_8000));
    }

    #[test]
    fn vector_4k_rw_whole_page() {
        // 4 KiB page at 0x8_1234_5000 (bit 12 used by the PA):
        // 0x000f_ff00_0000_0000 | 0x8_1234_5000 | SP_DIS 0x2 | valid 0x1
        check_leaf(12, leaf(0x8_1234_5000, true, true, 0, 0xfff), 0x000f_ff08_1234_5003);
    }

    #[test]
    fn vector_4k_last_unit_read_only() {
        // bytes [0xffc, 0x1000) of a 4 KiB page = unit 0x3ff..=0x3ff, SP_DIS clear:
        //   SP_START 0x3ff << 52 0x3ff0_0000_0000_0000
        //   SP_END   0x3ff << 40 0x0003_ff00_0000_0000
        //   PA                   0x0000_0008_1234_5000
        //   no-write bit 7       0x80
        //   valid                0x1
        let sp = Subpage::from_bytes(0xffc, 0x1000, 0x1000).unwrap();
        assert_eq!(sp, Subpage { start: 0x3ff, end: 0x3ff });
        check_leaf(12, leaf(0x8_1234_5000, true, false, 0x3ff, 0x3ff), 0x3ff3_ff08_1234_5081);
    }

    #[test]
    fn vector_4k_table() {
        // table at 0x8_1234_5000: PA in place | valid
        assert_eq!(FMT.encode_table(12, 0x8_1234_5000), Ok(0x0000_0008_1234_5001));
        assert_eq!(FMT.decode_table(12, 0x0000_0008_1234_5001), Some(0x8_1234_5000));
    }

    #[test]
    fn whole_4k_page_is_normalised_to_sp_dis() {
        // Units 0..=0x3ff cover a 4 KiB page: written like Linux's whole-page
        // mapping (SP_DIS, 0 / 0xfff) and decoded as Subpage::WHOLE.
        let quarter = leaf(0x8_1234_5000, true, true, 0, 0x3ff);
        assert_eq!(FMT.encode_leaf(12, &quarter), Ok(0x000f_ff08_1234_5003));
        assert_eq!(FMT.decode_leaf(12, 0x000f_ff08_1234_5003), Some(leaf(0x8_1234_5000, true, true, 0, 0xfff)));
    }

    #[test]
    fn sp_dis_overrides_fields_on_decode() {
        // SP_DIS with SP_START 0x40 / SP_END 0x7f still means the whole page.
        assert_eq!(FMT.decode_leaf(14, 0x0400_7f08_1234_4003), Some(leaf(0x8_1234_4000, true, true, 0, 0xfff)));
    }

    #[test]
    fn decode_ignores_unnamed_bits() {
        // Bits 39:36, 11:9, 6:2 set on top of the rw whole-page vector.
        let noise = 0x0000_00f0_0000_0e7c;
        assert_eq!(FMT.decode_leaf(14, 0x000f_ff08_1234_4003 | noise), Some(leaf(0x8_1234_4000, true, true, 0, 0xfff)));
        // 16 KiB pages: PTE bits 12 and 13 are below the page and ignored.
        assert_eq!(FMT.decode_table(14, 0x0000_0008_1234_7001), Some(0x8_1234_4000));
        assert_eq!(FMT.decode_table(12, 0x0000_0008_1234_7001), Some(0x8_1234_7000));
    }
}
