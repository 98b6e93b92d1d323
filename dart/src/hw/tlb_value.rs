//! The IOTLB value: a leaf in one `u64`, as a walk produces it and the
//! IOTLB caches it.
//!
//! ```text
//! 63..59 | 58 FULL | 57..46 SP_START | 45..34 SP_END | 33 R | 32 W | 31..0 PA page number
//! ```
//!
//! `FULL` is set when the subpage range covers the whole page, so that the
//! hit path can decide permission for any in-page access with one mask
//! test ([`grants`]); a leaf with a narrower subpage range takes the
//! general path, which checks the range.
//!
//! The subpage fields and the permission bits are in the order both PTE
//! formats keep them (`SP_START` above `SP_END`, no-read above no-write),
//! so that the walker's decoder ([`crate::hw::pte::PteDecoder::tlb_value`])
//! moves each pair with one shift and one mask. `pack` (test builds only) builds the same
//! value from a decoded [`Leaf`]; the decoder's tests check that the two
//! agree on every PTE.

use crate::hw::pte::{Leaf, Subpage};
use crate::types::Dir;

/// Device writes are allowed.
pub(crate) const W: u64 = 1 << 32;
/// Device reads are allowed.
pub(crate) const R: u64 = 1 << 33;
/// Lowest bit of the subpage fields: `SP_END` at bits 45..34, `SP_START`
/// at 57..46, the two as one 24-bit field `start << 12 | end`.
pub(crate) const SUBPAGE_SHIFT: u32 = 34;
/// The subpage range covers the whole page.
pub(crate) const FULL: u64 = 1 << 58;
/// The page number's bits.
const PAGE_NUMBER: u64 = 0xffff_ffff;

/// The value of a leaf whose page is `page_number`, with permission bits
/// `rw` (a combination of [`R`] and [`W`]), subpage fields `sp24`
/// (`start << 12 | end`, each 12 bits) and whole-page flag `full`.
#[inline(always)]
pub(crate) fn from_parts(page_number: u64, rw: u64, sp24: u64, full: bool) -> u64 {
    page_number | rw | (sp24 << SUBPAGE_SHIFT) | (full as u64 * FULL)
}

/// Whether subpage fields `sp24` (`start << 12 | end`) cover every byte
/// of a page whose last 4-byte unit is `last_unit`: `start == 0` and
/// `end >= last_unit` (see [`Subpage::contains`]).
#[inline(always)]
pub(crate) fn covers_page(sp24: u64, last_unit: u64) -> bool {
    // start == 0 exactly when sp24 <= 0xfff; then sp24 is `end`.
    sp24.wrapping_sub(last_unit) <= 0xfff - last_unit
}

/// The last 4-byte subpage unit of a `1 << page_shift`-byte page, as far
/// as the 12-bit field reaches.
pub(crate) const fn last_unit(page_shift: u32) -> u64 {
    let units = (1u64 << page_shift) / crate::hw::pte::SUBPAGE_UNIT_BYTES;
    if units > 0x1000 {
        0xfff
    } else {
        units - 1
    }
}

/// The value of `leaf` on pages of `1 << page_shift` bytes: the reference
/// the walker's decoder is tested against (it builds the same value from
/// the PTE without a [`Leaf`]).
#[cfg(test)]
pub(crate) fn pack(leaf: &Leaf, page_shift: u32) -> u64 {
    let page_size = 1u64 << page_shift;
    let full = leaf.subpage.contains(0, page_size, page_size);
    let sp24 = (u64::from(leaf.subpage.start) & 0xfff) << 12 | (u64::from(leaf.subpage.end) & 0xfff);
    from_parts(leaf.pa >> page_shift, ((leaf.read as u64) * R) | ((leaf.write as u64) * W), sp24, full)
}

/// The leaf `v` holds (the inverse of `pack` for page-aligned `pa`).
#[inline]
pub(crate) fn unpack(v: u64, page_shift: u32) -> Leaf {
    let sp24 = (v >> SUBPAGE_SHIFT) & 0xff_ffff;
    Leaf {
        pa: pa(v, page_shift),
        read: v & R != 0,
        write: v & W != 0,
        subpage: Subpage { start: (sp24 >> 12) as u16, end: (sp24 & 0xfff) as u16 },
    }
}

/// Whether `v` grants `dir` on every byte of its page.
#[inline(always)]
pub(crate) fn grants(v: u64, dir: Dir) -> bool {
    let need = FULL | if dir == Dir::Read { R } else { W };
    v & need == need
}

/// The physical address of the page `v` maps.
#[inline(always)]
pub(crate) fn pa(v: u64, page_shift: u32) -> u64 {
    page_number(v) << page_shift
}

/// The number of the page `v` maps: its physical address over the page
/// size (the frame number, the DART's pages being the frame table's
/// frames).
#[inline(always)]
pub(crate) fn page_number(v: u64) -> u64 {
    v & PAGE_NUMBER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_unpack_gives_the_leaf_back() {
        for shift in [12, 14] {
            for (start, end) in [(0, 0xfff), (0, 0x3ff), (0x40, 0x7f), (0xfff, 0xfff), (0, 0)] {
                for (read, write) in [(true, true), (true, false), (false, true), (false, false)] {
                    let leaf = Leaf { pa: 0x3ff_ffff << shift, read, write, subpage: Subpage { start, end } };
                    let v = pack(&leaf, shift);
                    assert_eq!(unpack(v, shift), leaf, "2^{shift} {leaf:?}");
                    let page = 1u64 << shift;
                    assert_eq!(v & FULL != 0, leaf.subpage.contains(0, page, page), "2^{shift} {leaf:?}");
                    assert_eq!(grants(v, Dir::Read), read && v & FULL != 0);
                    assert_eq!(grants(v, Dir::Write), write && v & FULL != 0);
                }
            }
        }
    }

    #[test]
    fn covers_page_is_subpage_contains_for_every_field_value() {
        for shift in [12u32, 14] {
            let page = 1u64 << shift;
            for sp24 in 0..1u64 << 24 {
                let s = Subpage { start: (sp24 >> 12) as u16, end: (sp24 & 0xfff) as u16 };
                assert_eq!(covers_page(sp24, last_unit(shift)), s.contains(0, page, page), "2^{shift} {s:?}");
            }
        }
    }
}
