//! DART2 (t6000, t8110) PTE bit layout.
//!
//! Leaf PTE:
//!
//! | bits    | field                                                 |
//! |---------|-------------------------------------------------------|
//! | 63:52   | `SP_START` (shared, [`super::PTE_SUBPAGE_START`])          |
//! | 51:40   | `SP_END` (shared, [`super::PTE_SUBPAGE_END`])              |
//! | 37:10   | physical address >> 4 ([`PADDR_MASK`]); 37:8 with 4 KiB pages ([`paddr_mask`]) |
//! | 3       | no-read ([`PTE_PROT_NO_READ`])                        |
//! | 2       | no-write ([`PTE_PROT_NO_WRITE`])                      |
//! | 1       | no-cache ([`PTE_PROT_NO_CACHE`])                      |
//! | 0       | valid ([`super::PTE_VALID`])                          |
//!
//! DART2 has no `SP_DIS` bit: the subpage fields always apply. A table
//! descriptor holds only the next table's PA (same position) and the valid
//! bit. These are raw building blocks that do no validation; use
//! [`super::PteFormat::Dart2`] for checked encoding.

use super::{genmask, page_offset_mask, Subpage};

/// Output-address width: DART2 PTEs address 42 bits of physical memory.
pub const MAX_ADDR_BITS: u32 = 42;

/// Bits \[37:10\]: the physical address shifted right by
/// [`PADDR_SHIFT`], so PA bits \[41:14\] are representable (42-bit output,
/// 16 KiB aligned). This is the field for 16 KiB pages, as in Linux.
pub const PADDR_MASK: u64 = genmask(37, 10);

/// Bits \[37:8\]: the PA field for pages smaller than 16 KiB (4 KiB pages),
/// holding PA bits \[41:12\].
///
/// **Inferred**: Linux only uses \[37:10\], which would lose PA bits 12 and 13
/// of a 4 KiB page; we assume the field extends down to bit 8 when the DART
/// runs with 4 KiB pages. [`paddr_mask`] is the only place that chooses
/// between this and [`PADDR_MASK`].
pub const PADDR_MASK_4K: u64 = genmask(37, 8);

/// The PA is stored shifted right by this many bits.
pub const PADDR_SHIFT: u32 = 4;

/// Bit 3: reads through this leaf are refused.
pub const PTE_PROT_NO_READ: u64 = 1 << 3;

/// Bit 2: writes through this leaf are refused.
pub const PTE_PROT_NO_WRITE: u64 = 1 << 2;

/// Bit 1: accesses through this leaf bypass caches (Linux
/// `APPLE_DART2_PTE_PROT_NO_CACHE`). The walk ignores it (this model has no
/// caching behaviour to change); [`super::PteFormat::encode_leaf_kept`] sets
/// it and [`super::PteFormat::decode_leaf_kept`] reads it back, so a
/// driver's PTE decoded and re-encoded keeps it.
pub const PTE_PROT_NO_CACHE: u64 = 1 << 1;

/// The PTE bits forming the PA field for pages of `1 << page_shift` bytes:
/// [`PADDR_MASK_4K`] (**inferred**) for pages smaller than 16 KiB
/// (`page_shift < 14`), [`PADDR_MASK`] otherwise.
pub const fn paddr_mask(page_shift: u32) -> u64 {
    if page_shift < 14 {
        PADDR_MASK_4K
    } else {
        PADDR_MASK
    }
}

/// Physical-address bits a DART2 PTE can hold for pages of
/// `1 << page_shift` bytes: the PA field shifted back up, minus the in-page
/// offset bits. PA bits \[41:12\] for 4 KiB pages, \[41:14\] for 16 KiB pages.
pub const fn pa_mask(page_shift: u32) -> u64 {
    (paddr_mask(page_shift) << PADDR_SHIFT) & !page_offset_mask(page_shift)
}

/// The PA field of a PTE holding `pa`: `(pa >> 4) & paddr_mask(page_shift)`.
/// Bits of `pa` outside [`pa_mask`]`(page_shift)` are silently dropped.
pub const fn pa_to_pte(pa: u64, page_shift: u32) -> u64 {
    ((pa & pa_mask(page_shift)) >> PADDR_SHIFT) & paddr_mask(page_shift)
}

/// The physical address held in `pte`'s PA field; always below
/// `1 << 42` and page aligned. Other bits of `pte` are ignored.
pub const fn pte_to_pa(pte: u64, page_shift: u32) -> u64 {
    ((pte & paddr_mask(page_shift)) << PADDR_SHIFT) & pa_mask(page_shift)
}

/// The protection bits granting `read` / `write`: no-read and no-write set
/// for whatever is not granted. Never sets [`PTE_PROT_NO_CACHE`].
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

/// The subpage bits of a leaf granting `subpage`: the `SP_START` / `SP_END`
/// fields exactly as given (values truncated to 12 bits). A whole page is
/// whatever the caller passes, e.g. [`Subpage::WHOLE`].
pub fn subpage_to_pte(subpage: Subpage) -> u64 {
    super::subpage_to_pte(subpage)
}

/// The subpage granted by `pte`: its `SP_START` / `SP_END` fields as stored.
pub fn pte_to_subpage(pte: u64) -> Subpage {
    super::pte_to_subpage(pte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::pte::{Leaf, PteError, PteFormat};

    const FMT: PteFormat = PteFormat::Dart2;

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
        assert_eq!(PADDR_MASK, 0x0000_003f_ffff_fc00);
        assert_eq!(PADDR_MASK_4K, 0x0000_003f_ffff_ff00);
        assert_eq!(paddr_mask(14), PADDR_MASK);
        assert_eq!(paddr_mask(12), PADDR_MASK_4K);
        assert_eq!(pa_mask(14), 0x0000_03ff_ffff_c000);
        assert_eq!(pa_mask(12), 0x0000_03ff_ffff_f000);
        assert_eq!(prot_to_pte(true, true), 0);
        assert_eq!(prot_to_pte(true, false), 0x4);
        assert_eq!(prot_to_pte(false, true), 0x8);
        assert_eq!(prot_to_pte(false, false), 0xc);
    }

    // 16 KiB pages, pa = 0x8_1234_4000:
    //   PA field pa >> 4      0x0000_0000_8123_4400  (bits [37:10]; 0x400 = bit 10)
    //   SP_END 0xfff << 40    0x000f_ff00_0000_0000  (whole page, no SP_DIS)
    //   valid bit 0           0x1

    #[test]
    fn vector_rw_whole_page() {
        // 0x000f_ff00_0000_0000 | 0x8123_4400 | 0x1
        check_leaf(14, leaf(0x8_1234_4000, true, true, 0, 0xfff), 0x000f_ff00_8123_4401);
    }

    #[test]
    fn vector_read_only() {
        // rw whole page | no-write (bit 2 = 0x4)
        check_leaf(14, leaf(0x8_1234_4000, true, false, 0, 0xfff), 0x000f_ff00_8123_4405);
    }

    #[test]
    fn vector_write_only() {
        // rw whole page | no-read (bit 3 = 0x8)
        check_leaf(14, leaf(0x8_1234_4000, false, true, 0, 0xfff), 0x000f_ff00_8123_4409);
    }

    #[test]
    fn vector_subpage() {
        // bytes [0x100, 0x200) = units 0x40..=0x7f:
        //   SP_START 0x40 << 52  0x0400_0000_0000_0000
        //   SP_END   0x7f << 40  0x0000_7f00_0000_0000
        //   PA >> 4              0x0000_0000_8123_4400
        //   valid                0x1
        check_leaf(14, leaf(0x8_1234_4000, true, true, 0x40, 0x7f), 0x0400_7f00_8123_4401);
    }

    #[test]
    fn vector_highest_pa_16k() {
        // pa = 0x3ff_ffff_c000 (last 16 KiB page below 1 << 42):
        //   pa >> 4 = 0x3f_ffff_fc00 = all of bits [37:10]
        //   0x000f_ff00_0000_0000 | 0x3f_ffff_fc00 | 0x1
        check_leaf(14, leaf(0x3ff_ffff_c000, true, true, 0, 0xfff), 0x000f_ff3f_ffff_fc01);
    }

    #[test]
    fn vector_table_16k() {
        // table at 0x8_1234_8000: pa >> 4 = 0x8123_4800, | valid
        assert_eq!(FMT.encode_table(14, 0x8_1234_8000), Ok(0x0000_0000_8123_4801));
        assert_eq!(FMT.decode_table(14, 0x0000_0000_8123_4801), Some(0x8_1234_8000));
    }

    #[test]
    fn vector_4k_rw_whole_page() {
        // 4 KiB page at 0x8_1234_5000: pa >> 4 = 0x8123_4500, which needs
        // bit 8 (0x100) of the inferred 4 KiB field [37:8].
        // 0x000f_ff00_0000_0000 | 0x8123_4500 | 0x1
        check_leaf(12, leaf(0x8_1234_5000, true, true, 0, 0xfff), 0x000f_ff00_8123_4501);
    }

    #[test]
    fn vector_4k_highest_pa_subpage() {
        // pa = 0x3ff_ffff_f000 (last 4 KiB page below 1 << 42), units 0..=0x3ff
        // (exactly the 4 KiB page; DART2 stores the fields as given):
        //   SP_END 0x3ff << 40   0x0003_ff00_0000_0000
        //   pa >> 4              0x0000_003f_ffff_ff00  (all of bits [37:8])
        //   valid                0x1
        check_leaf(12, leaf(0x3ff_ffff_f000, true, true, 0, 0x3ff), 0x0003_ff3f_ffff_ff01);
    }

    #[test]
    fn vector_4k_table() {
        // table at 0x8_1234_5000: pa >> 4 = 0x8123_4500, | valid
        assert_eq!(FMT.encode_table(12, 0x8_1234_5000), Ok(0x0000_0000_8123_4501));
        assert_eq!(FMT.decode_table(12, 0x0000_0000_8123_4501), Some(0x8_1234_5000));
    }

    #[test]
    fn whole_page_is_not_normalised() {
        // No SP_DIS on DART2: a whole page written as units 0..=0x3ff on a
        // 4 KiB page keeps those fields.
        let pte = FMT.encode_leaf(12, &leaf(0x8_1234_5000, true, true, 0, 0x3ff));
        assert_eq!(pte, Ok(0x0003_ff00_8123_4501));
    }

    #[test]
    fn decode_ignores_unnamed_and_no_cache_bits() {
        // No-cache (bit 1) and bits 39:38, 9:4 set on top of the rw vector;
        // with 16 KiB pages, field bits 9:8 are not part of the PA.
        let noise = PTE_PROT_NO_CACHE | 0x0000_00c0_0000_03f0;
        assert_eq!(FMT.decode_leaf(14, 0x000f_ff00_8123_4401 | noise), Some(leaf(0x8_1234_4000, true, true, 0, 0xfff)));
        // The same bits 9:8 are PA bits 13:12 with 4 KiB pages.
        assert_eq!(FMT.decode_table(12, 0x0000_0000_8123_4701), Some(0x8_1234_7000));
        assert_eq!(FMT.decode_table(14, 0x0000_0000_8123_4701), Some(0x8_1234_4000));
    }

    #[test]
    fn sixteen_k_field_refuses_4k_aligned_pa() {
        // 0x8_1234_5000 needs field bit 8, outside [37:10]: refused, not truncated.
        let pa = 0x8_1234_5000;
        assert_eq!(FMT.encode_table(14, pa), Err(PteError::Unaligned { pa, page_shift: 14 }));
    }

    #[test]
    fn no_cache_leaf_bit_reads_back() {
        for shift in [12, 14] {
            // A driver's leaf: PA, no-write, no-cache (bit 1), whole page, valid.
            let pte = pa_to_pte(0x8_1234_4000, shift) | PTE_PROT_NO_WRITE | PTE_PROT_NO_CACHE | (0xfff << 40) | 1;
            let (leaf, kept) = FMT.decode_leaf_kept(shift, pte).unwrap();
            assert_eq!(kept, PTE_PROT_NO_CACHE);
            assert_eq!((leaf.pa, leaf.read, leaf.write), (0x8_1234_4000, true, false));
            let again = FMT.encode_leaf_kept(shift, &leaf, kept).unwrap();
            assert_eq!(again, pte, "{shift}");
            assert_eq!(again & (1 << 1), 1 << 1);
            // Without it: as before.
            assert_eq!(FMT.encode_leaf_kept(shift, &leaf, 0), FMT.encode_leaf(shift, &leaf));
        }
        assert_eq!(PteFormat::Dart1.kept_leaf_bits(), 0);
    }
}
