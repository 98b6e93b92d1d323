//! Page-table entry (PTE) encoding for Apple DART IOMMU page tables.
//!
//! Two hardware formats exist:
//!
//! * [`PteFormat::Dart1`] (Apple t8020): 36-bit output addresses, the PA held
//!   in place at bits \[35:12\]; bit-level details in [`dart1`].
//! * [`PteFormat::Dart2`] (t6000, t8110): 42-bit output addresses, the PA held
//!   shifted right by 4 at bits \[37:10\] (\[37:8\] with 4 KiB pages); bit-level
//!   details in [`dart2`].
//!
//! Both formats share the valid bit (bit 0) and the subpage-protection fields
//! `SP_START` (bits \[63:52\]) and `SP_END` (bits \[51:40\]). A table descriptor
//! (an entry pointing at the next-level table) carries the next table's
//! physical address in the same position as a leaf's PA plus the valid bit,
//! and nothing else.
//!
//! The layout follows Linux's `drivers/iommu/io-pgtable-dart.c`: each format
//! has a few small named functions (`pa_to_pte`, `pte_to_pa`, `prot_to_pte`,
//! ...) and [`PteFormat`] dispatches to them. Nothing here panics: every
//! `u64` decodes to something (or `None` when the valid bit is clear) and
//! every encode request returns `Ok` or a [`PteError`] carrying the offending
//! values.
//!
//! Every function taking a `page_shift` expects 12 (4 KiB pages) or 14
//! (16 KiB pages). Other values are handled by the same rules without
//! panicking (a shift of 64 or more behaves like a page size of zero, so
//! encoding is refused), but are not meaningful for real hardware.

pub mod dart1;
pub mod dart2;
mod decoder;

pub(crate) use decoder::PteDecoder;

/// Bit 0 of every DART PTE, in both formats and for both leaves and table
/// descriptors: the entry is valid. An entry with this bit clear is ignored
/// by the hardware whatever its other bits hold.
pub const PTE_VALID: u64 = 1 << 0;

/// Bits \[63:52\] of a leaf PTE (both formats): `SP_START`, the first
/// accessible subpage unit of the page (inclusive).
pub const PTE_SUBPAGE_START: u64 = genmask(63, 52);

/// Bits \[51:40\] of a leaf PTE (both formats): `SP_END`, the last accessible
/// subpage unit of the page (inclusive).
pub const PTE_SUBPAGE_END: u64 = genmask(51, 40);

/// Size in bytes of one subpage-protection unit, the unit of `SP_START` and
/// `SP_END`.
///
/// **Inferred**, not documented by Apple: the 12-bit fields cover exactly a
/// 16 KiB page at 4 bytes per unit, and `SP_START = 0, SP_END = 0xfff` is what
/// Linux writes for "the whole page". This is the only place the unit is
/// defined.
pub const SUBPAGE_UNIT_BYTES: u64 = 4;

/// Largest value the 12-bit `SP_START` / `SP_END` fields can hold.
pub const SUBPAGE_FIELD_MAX: u16 = 0xfff;

/// `GENMASK_ULL(h, l)`: bits `h` down to `l` inclusive set. Only used with
/// constant arguments `63 >= h >= l`.
const fn genmask(h: u32, l: u32) -> u64 {
    (u64::MAX >> (63 - h)) & (u64::MAX << l)
}

/// `FIELD_PREP(mask, val)`: `val` shifted into the field `mask`; bits of
/// `val` that do not fit are dropped.
const fn field_prep(mask: u64, val: u64) -> u64 {
    (val << mask.trailing_zeros()) & mask
}

/// `FIELD_GET(mask, pte)`: the value of the field `mask` in `pte`.
const fn field_get(mask: u64, pte: u64) -> u64 {
    (pte & mask) >> mask.trailing_zeros()
}

/// Page size in bytes for `page_shift`; 0 when `page_shift >= 64`.
const fn page_size(page_shift: u32) -> u64 {
    match 1u64.checked_shl(page_shift) {
        Some(size) => size,
        None => 0,
    }
}

/// Mask of the byte-offset-within-page bits for `page_shift`; all ones when
/// `page_shift >= 64`.
const fn page_offset_mask(page_shift: u32) -> u64 {
    page_size(page_shift).wrapping_sub(1)
}

/// True when `bytes` is a whole number of subpage units. (`checked_rem`
/// rather than `is_multiple_of`, which is newer than the crate's MSRV.)
const fn is_unit_aligned(bytes: u64) -> bool {
    matches!(bytes.checked_rem(SUBPAGE_UNIT_BYTES), Some(0))
}

/// `SP_START` / `SP_END` fields of a PTE holding `subpage`, exactly as given
/// (no `SP_DIS` handling; that is DART1-specific and lives in [`dart1`]).
fn subpage_to_pte(subpage: Subpage) -> u64 {
    field_prep(PTE_SUBPAGE_START, u64::from(subpage.start)) | field_prep(PTE_SUBPAGE_END, u64::from(subpage.end))
}

/// The subpage described by the `SP_START` / `SP_END` fields of `pte`.
fn pte_to_subpage(pte: u64) -> Subpage {
    // Both fields are 12 bits wide, so the casts are lossless.
    Subpage { start: field_get(PTE_SUBPAGE_START, pte) as u16, end: field_get(PTE_SUBPAGE_END, pte) as u16 }
}

pub use crate::variant::PteFormat;

/// A subpage-protection range: the part of a page a leaf PTE grants access
/// to, in [`SUBPAGE_UNIT_BYTES`]-byte units, both ends inclusive.
///
/// The accessible bytes of the page are
/// `[start * 4, min((end + 1) * 4, page_size))` (see [`Subpage::byte_range`]).
/// The fields are plain data: any values can be stored, and
/// [`PteFormat::encode_leaf`] refuses ranges the hardware cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subpage {
    /// First accessible unit of the page (inclusive).
    pub start: u16,
    /// Last accessible unit of the page (inclusive).
    pub end: u16,
}

impl Subpage {
    /// The whole page: `start = 0`, `end = 0xfff`. Covers every page of up to
    /// 16 KiB; this is the value DART1 decodes whenever `SP_DIS` is set.
    pub const WHOLE: Subpage = Subpage { start: 0, end: SUBPAGE_FIELD_MAX };

    /// The subpage granting exactly the bytes `[start_byte, end_byte_exclusive)`
    /// of a `page_size`-byte page.
    ///
    /// Returns `None` unless both bounds are multiples of
    /// [`SUBPAGE_UNIT_BYTES`], `start_byte < end_byte_exclusive`,
    /// `end_byte_exclusive <= page_size` and the last unit fits the 12-bit
    /// field. When `Some(s)` is returned, `s.byte_range(page_size)` equals
    /// `(start_byte, end_byte_exclusive)`.
    pub fn from_bytes(start_byte: u64, end_byte_exclusive: u64, page_size: u64) -> Option<Subpage> {
        if !is_unit_aligned(start_byte)
            || !is_unit_aligned(end_byte_exclusive)
            || start_byte >= end_byte_exclusive
            || end_byte_exclusive > page_size
        {
            return None;
        }
        let start = start_byte / SUBPAGE_UNIT_BYTES;
        // end_byte_exclusive > start_byte >= 0, so it is at least one unit.
        let end = end_byte_exclusive / SUBPAGE_UNIT_BYTES - 1;
        if end > u64::from(SUBPAGE_FIELD_MAX) {
            return None;
        }
        // start < end + 1 <= 0x1000, so both fit in u16.
        Some(Subpage { start: start as u16, end: end as u16 })
    }

    /// The accessible bytes of a `page_size`-byte page as a half-open range
    /// `(first, end_exclusive)`: `(start * 4, min((end + 1) * 4, page_size))`.
    ///
    /// The range is empty (`first >= end_exclusive`) when `start > end` or
    /// when `start` lies beyond the page; such a range contains no byte.
    /// Never overflows.
    pub fn byte_range(&self, page_size: u64) -> (u64, u64) {
        let first = u64::from(self.start) * SUBPAGE_UNIT_BYTES;
        let end = (u64::from(self.end) + 1) * SUBPAGE_UNIT_BYTES;
        (first, end.min(page_size))
    }

    /// True when the subpage grants every byte of a `page_size`-byte page,
    /// i.e. [`Subpage::byte_range`] is exactly `(0, page_size)`. For 4 KiB
    /// pages any `end >= 0x3ff` with `start == 0` is whole.
    pub fn is_whole(&self, page_size: u64) -> bool {
        self.byte_range(page_size) == (0, page_size)
    }

    /// True when every byte of `[offset, offset + len)` lies within
    /// [`Subpage::byte_range`] for a `page_size`-byte page. False when
    /// `offset + len` overflows; an empty range (`len == 0`) is contained
    /// when `offset` lies within `[first, end_exclusive]`. Never panics.
    pub fn contains(&self, offset: u64, len: u64, page_size: u64) -> bool {
        let (first, end) = self.byte_range(page_size);
        match offset.checked_add(len) {
            Some(access_end) => first <= offset && access_end <= end,
            None => false,
        }
    }

    /// True when the hardware fields can express this subpage for a page of
    /// `1 << page_shift` bytes: `start <= end <= 0xfff` and `start` lies
    /// inside the page (so at least one byte is granted).
    fn is_encodable(&self, page_shift: u32) -> bool {
        self.start <= self.end
            && self.end <= SUBPAGE_FIELD_MAX
            && u64::from(self.start) * SUBPAGE_UNIT_BYTES < page_size(page_shift)
    }
}

/// The decoded content of a valid leaf PTE: where the page lives and what
/// access it grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// Physical (output) address of the page; page aligned whenever produced
    /// by [`PteFormat::decode_leaf`].
    pub pa: u64,
    /// Device reads are allowed.
    pub read: bool,
    /// Device writes are allowed.
    pub write: bool,
    /// The part of the page the permissions apply to; bytes outside it are
    /// inaccessible.
    pub subpage: Subpage,
}

/// Why an entry could not be encoded. Every variant carries the offending
/// values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PteError {
    /// The physical address has bits set below the page size (or below the
    /// format's PA field), so it cannot be stored exactly.
    #[error("physical address {pa:#x} is not aligned to a 2^{page_shift}-byte page")]
    Unaligned {
        /// The offending physical address.
        pa: u64,
        /// log2 of the page size the address had to be aligned to.
        page_shift: u32,
    },
    /// The physical address is at or above the format's output-address limit
    /// ([`PteFormat::max_pa`]).
    #[error("physical address {pa:#x} is not below the format's limit {max:#x}")]
    PaTooWide {
        /// The offending physical address.
        pa: u64,
        /// The exclusive upper bound of representable addresses.
        max: u64,
    },
    /// The leaf grants neither read nor write; mappings must be r, w or rw.
    #[error("leaf grants neither read nor write access")]
    NoAccess,
    /// The subpage range cannot be expressed: `start > end`, `end > 0xfff`,
    /// or `start` lies beyond the page (the range would grant no byte).
    #[error("subpage range {start:#x}..={end:#x} is not encodable for a 2^{page_shift}-byte page")]
    BadSubpage {
        /// The offending first unit.
        start: u16,
        /// The offending last unit.
        end: u16,
        /// log2 of the page size the range was checked against.
        page_shift: u32,
    },
}

impl PteFormat {
    /// Exclusive upper bound of the output (physical) addresses this format
    /// can hold: `1 << 36` for DART1, `1 << 42` for DART2.
    pub const fn max_pa(self) -> u64 {
        match self {
            PteFormat::Dart1 => 1 << dart1::MAX_ADDR_BITS,
            PteFormat::Dart2 => 1 << dart2::MAX_ADDR_BITS,
        }
    }

    /// True when the valid bit (bit 0, the same in both formats) is set.
    pub const fn is_valid(pte: u64) -> bool {
        pte & PTE_VALID != 0
    }

    /// Physical-address bits a PTE of this format can hold for pages of
    /// `1 << page_shift` bytes.
    fn pa_mask(self, page_shift: u32) -> u64 {
        match self {
            PteFormat::Dart1 => dart1::pa_mask(page_shift),
            PteFormat::Dart2 => dart2::pa_mask(page_shift),
        }
    }

    /// Checks that `pa` can be stored exactly: `PaTooWide` first, then
    /// `Unaligned`.
    fn check_pa(self, page_shift: u32, pa: u64) -> Result<(), PteError> {
        let max = self.max_pa();
        if pa >= max {
            return Err(PteError::PaTooWide { pa, max });
        }
        if pa & !self.pa_mask(page_shift) != 0 {
            return Err(PteError::Unaligned { pa, page_shift });
        }
        Ok(())
    }

    /// The PA field of a PTE holding `pa` (`pa` already checked).
    fn pa_to_pte(self, page_shift: u32, pa: u64) -> u64 {
        match self {
            PteFormat::Dart1 => dart1::pa_to_pte(pa, page_shift),
            PteFormat::Dart2 => dart2::pa_to_pte(pa, page_shift),
        }
    }

    /// The physical address held in the PA field of `pte`.
    fn pte_to_pa(self, page_shift: u32, pte: u64) -> u64 {
        match self {
            PteFormat::Dart1 => dart1::pte_to_pa(pte, page_shift),
            PteFormat::Dart2 => dart2::pte_to_pa(pte, page_shift),
        }
    }

    /// Encodes a valid leaf PTE mapping `leaf` with pages of
    /// `1 << page_shift` bytes.
    ///
    /// Checks, in this order: `leaf.pa < max_pa()` ([`PteError::PaTooWide`]),
    /// `leaf.pa` page aligned and representable ([`PteError::Unaligned`]),
    /// read or write granted ([`PteError::NoAccess`]), subpage expressible
    /// ([`PteError::BadSubpage`]). On `Ok`, the result has the valid bit set
    /// and [`PteFormat::decode_leaf`] with the same `page_shift` returns
    /// `leaf` again, except that on DART1 a whole-page subpage
    /// ([`Subpage::is_whole`]) is written with `SP_DIS` and decodes as
    /// [`Subpage::WHOLE`]. DART2 never sets its no-cache bit.
    pub fn encode_leaf(self, page_shift: u32, leaf: &Leaf) -> Result<u64, PteError> {
        self.check_pa(page_shift, leaf.pa)?;
        if !leaf.read && !leaf.write {
            return Err(PteError::NoAccess);
        }
        if !leaf.subpage.is_encodable(page_shift) {
            return Err(PteError::BadSubpage { start: leaf.subpage.start, end: leaf.subpage.end, page_shift });
        }
        let pa = self.pa_to_pte(page_shift, leaf.pa);
        let bits = match self {
            PteFormat::Dart1 => {
                dart1::prot_to_pte(leaf.read, leaf.write) | dart1::subpage_to_pte(leaf.subpage, page_size(page_shift))
            }
            PteFormat::Dart2 => dart2::prot_to_pte(leaf.read, leaf.write) | dart2::subpage_to_pte(leaf.subpage),
        };
        Ok(pa | bits | PTE_VALID)
    }

    /// The leaf bits a driver may write that [`Leaf`] does not model but
    /// the format keeps: DART2's no-cache (bit 1), none on DART1.
    pub const fn kept_leaf_bits(self) -> u64 {
        match self {
            PteFormat::Dart1 => 0,
            PteFormat::Dart2 => dart2::PTE_PROT_NO_CACHE,
        }
    }

    /// [`PteFormat::encode_leaf`] with the [`PteFormat::kept_leaf_bits`] of
    /// `kept` set as well (e.g. DART2 no-cache, or the bits of a PTE read
    /// back with [`PteFormat::decode_leaf_kept`]); other bits of `kept` are
    /// ignored.
    pub fn encode_leaf_kept(self, page_shift: u32, leaf: &Leaf, kept: u64) -> Result<u64, PteError> {
        Ok(self.encode_leaf(page_shift, leaf)? | (kept & self.kept_leaf_bits()))
    }

    /// [`PteFormat::decode_leaf`] and the [`PteFormat::kept_leaf_bits`] set
    /// in `pte`: re-encoding both with [`PteFormat::encode_leaf_kept`] keeps
    /// what a driver wrote (DART2 no-cache).
    pub fn decode_leaf_kept(self, page_shift: u32, pte: u64) -> Option<(Leaf, u64)> {
        self.decode_leaf(page_shift, pte).map(|l| (l, pte & self.kept_leaf_bits()))
    }

    /// Decodes a leaf PTE for pages of `1 << page_shift` bytes; `None` when
    /// the valid bit is clear.
    ///
    /// Only the named fields are read (PA, no-read, no-write, subpage, and
    /// `SP_DIS` on DART1); all other bits are ignored, so any `u64` with the
    /// valid bit set decodes to some [`Leaf`] without panicking. The decoded
    /// `pa` is always page aligned and below [`PteFormat::max_pa`] (PA-field
    /// bits below the page size are ignored); the caller must still check it
    /// against physical memory. The permissions and subpage are reported as
    /// stored, even when they grant nothing (no-read and no-write both set,
    /// or an empty subpage range).
    pub fn decode_leaf(self, page_shift: u32, pte: u64) -> Option<Leaf> {
        if !Self::is_valid(pte) {
            return None;
        }
        let pa = self.pte_to_pa(page_shift, pte);
        let ((read, write), subpage) = match self {
            PteFormat::Dart1 => (dart1::pte_to_prot(pte), dart1::pte_to_subpage(pte)),
            PteFormat::Dart2 => (dart2::pte_to_prot(pte), dart2::pte_to_subpage(pte)),
        };
        Some(Leaf { pa, read, write, subpage })
    }

    /// Encodes a valid table descriptor pointing at the next-level table at
    /// `table_pa`, for pages (and tables) of `1 << page_shift` bytes.
    ///
    /// The result holds only the PA field and the valid bit. Refuses
    /// `table_pa >= max_pa()` ([`PteError::PaTooWide`]) and unaligned or
    /// unrepresentable addresses ([`PteError::Unaligned`]). On `Ok`,
    /// [`PteFormat::decode_table`] returns `table_pa` again.
    pub fn encode_table(self, page_shift: u32, table_pa: u64) -> Result<u64, PteError> {
        self.check_pa(page_shift, table_pa)?;
        Ok(self.pa_to_pte(page_shift, table_pa) | PTE_VALID)
    }

    /// Decodes a table descriptor: the next-level table's physical address,
    /// or `None` when the valid bit is clear.
    ///
    /// Only the PA field is read; any `u64` with the valid bit set yields an
    /// address that is page aligned and below [`PteFormat::max_pa`], which
    /// the caller must still check against physical memory.
    pub fn decode_table(self, page_shift: u32, pte: u64) -> Option<u64> {
        if !Self::is_valid(pte) {
            return None;
        }
        Some(self.pte_to_pa(page_shift, pte))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FORMATS: [PteFormat; 2] = [PteFormat::Dart1, PteFormat::Dart2];

    fn any_format() -> impl Strategy<Value = PteFormat> {
        prop_oneof![Just(PteFormat::Dart1), Just(PteFormat::Dart2)]
    }

    fn any_page_shift() -> impl Strategy<Value = u32> {
        prop_oneof![Just(12u32), Just(14u32)]
    }

    /// (read, write): r, w or rw.
    fn any_perm() -> impl Strategy<Value = (bool, bool)> {
        prop_oneof![Just((true, false)), Just((false, true)), Just((true, true))]
    }

    /// Any encodable subpage for the page size: start inside the page,
    /// start <= end <= 0xfff (so on 4 KiB pages `end` may run past the page).
    fn any_subpage(page_shift: u32) -> impl Strategy<Value = Subpage> {
        let units = (1u16 << page_shift) / SUBPAGE_UNIT_BYTES as u16;
        (0..units).prop_flat_map(|start| {
            (Just(start), start..=SUBPAGE_FIELD_MAX).prop_map(|(start, end)| Subpage { start, end })
        })
    }

    /// Format, page shift and an encodable leaf for them.
    fn any_valid_leaf() -> impl Strategy<Value = (PteFormat, u32, Leaf)> {
        (any_format(), any_page_shift()).prop_flat_map(|(fmt, shift)| {
            let pages = fmt.max_pa() >> shift;
            (0..pages, any_perm(), any_subpage(shift)).prop_map(move |(page, (read, write), subpage)| {
                (fmt, shift, Leaf { pa: page << shift, read, write, subpage })
            })
        })
    }

    /// What decode(encode(leaf)) must return: DART1 normalises a whole-page
    /// subpage to `Subpage::WHOLE`; everything else is unchanged.
    fn normalised(fmt: PteFormat, page_shift: u32, leaf: Leaf) -> Leaf {
        match fmt {
            PteFormat::Dart1 if leaf.subpage.is_whole(1 << page_shift) => Leaf { subpage: Subpage::WHOLE, ..leaf },
            _ => leaf,
        }
    }

    fn rw(pa: u64) -> Leaf {
        Leaf { pa, read: true, write: true, subpage: Subpage::WHOLE }
    }

    #[test]
    fn shared_field_masks() {
        assert_eq!(PTE_SUBPAGE_START, 0xfff0_0000_0000_0000);
        assert_eq!(PTE_SUBPAGE_END, 0x000f_ff00_0000_0000);
        assert_eq!(PTE_VALID, 0x1);
    }

    #[test]
    fn max_pa_per_format() {
        assert_eq!(PteFormat::Dart1.max_pa(), 0x10_0000_0000);
        assert_eq!(PteFormat::Dart2.max_pa(), 0x400_0000_0000);
    }

    #[test]
    fn is_valid_looks_at_bit_0_only() {
        assert!(PteFormat::is_valid(1));
        assert!(PteFormat::is_valid(u64::MAX));
        assert!(!PteFormat::is_valid(0));
        assert!(!PteFormat::is_valid(u64::MAX - 1));
    }

    #[test]
    fn invalid_pte_decodes_to_none() {
        for fmt in FORMATS {
            for shift in [12, 14] {
                assert_eq!(fmt.decode_leaf(shift, 0), None);
                assert_eq!(fmt.decode_leaf(shift, !PTE_VALID), None);
                assert_eq!(fmt.decode_table(shift, 0), None);
                assert_eq!(fmt.decode_table(shift, !PTE_VALID), None);
            }
        }
    }

    #[test]
    fn subpage_from_bytes() {
        assert_eq!(Subpage::from_bytes(0x100, 0x200, 0x4000), Some(Subpage { start: 0x40, end: 0x7f }));
        assert_eq!(Subpage::from_bytes(0, 0x4000, 0x4000), Some(Subpage::WHOLE));
        assert_eq!(Subpage::from_bytes(0, 0x1000, 0x1000), Some(Subpage { start: 0, end: 0x3ff }));
        // Not multiples of 4.
        assert_eq!(Subpage::from_bytes(1, 0x200, 0x4000), None);
        assert_eq!(Subpage::from_bytes(0, 0x202, 0x4000), None);
        // Empty or inverted.
        assert_eq!(Subpage::from_bytes(0x200, 0x200, 0x4000), None);
        assert_eq!(Subpage::from_bytes(0x204, 0x200, 0x4000), None);
        // Past the page.
        assert_eq!(Subpage::from_bytes(0, 0x1004, 0x1000), None);
        // Past what 12 bits can express (page larger than 16 KiB).
        assert_eq!(Subpage::from_bytes(0, 0x4004, 0x8000), None);
        assert_eq!(Subpage::from_bytes(0, 0x4000, 0x8000), Some(Subpage::WHOLE));
        assert_eq!(Subpage::from_bytes(0, u64::MAX - 3, u64::MAX), None);
    }

    #[test]
    fn subpage_byte_range_and_whole() {
        assert_eq!(Subpage::WHOLE.byte_range(0x4000), (0, 0x4000));
        assert_eq!(Subpage::WHOLE.byte_range(0x1000), (0, 0x1000));
        assert!(Subpage::WHOLE.is_whole(0x4000));
        assert!(Subpage::WHOLE.is_whole(0x1000));
        let quarter = Subpage { start: 0, end: 0x3ff };
        assert!(quarter.is_whole(0x1000));
        assert!(!quarter.is_whole(0x4000));
        assert!(!Subpage { start: 1, end: 0xfff }.is_whole(0x4000));
        // Beyond the page / inverted: empty ranges.
        let beyond = Subpage { start: 0x800, end: 0xfff };
        assert_eq!(beyond.byte_range(0x1000), (0x2000, 0x1000));
        assert!(!beyond.contains(0x1000, 0, 0x1000));
        assert!(!beyond.contains(0x2000, 4, 0x1000));
        let inverted = Subpage { start: 5, end: 4 };
        assert!(!inverted.contains(0x14, 1, 0x4000));
    }

    #[test]
    fn subpage_contains() {
        let s = Subpage { start: 0x40, end: 0x7f };
        assert!(s.contains(0x100, 0x100, 0x4000));
        assert!(s.contains(0x1fc, 4, 0x4000));
        assert!(s.contains(0x180, 8, 0x4000));
        assert!(!s.contains(0xfc, 8, 0x4000));
        assert!(!s.contains(0x1fc, 5, 0x4000));
        assert!(!s.contains(0x200, 1, 0x4000));
        assert!(!s.contains(u64::MAX, 2, 0x4000));
        assert!(Subpage::WHOLE.contains(0, 0x1000, 0x1000));
        assert!(!Subpage::WHOLE.contains(0, 0x1001, 0x1000));
        assert!(Subpage::WHOLE.contains(0x3fff, 1, 0x4000));
    }

    #[test]
    fn refuses_unaligned_pa() {
        let pa = 0x8_1234_5000; // 4 KiB aligned, not 16 KiB aligned
        for fmt in FORMATS {
            assert_eq!(fmt.encode_leaf(14, &rw(pa)), Err(PteError::Unaligned { pa, page_shift: 14 }));
            assert_eq!(fmt.encode_table(14, pa), Err(PteError::Unaligned { pa, page_shift: 14 }));
            let pa = 0x8_1234_5800;
            assert_eq!(fmt.encode_leaf(12, &rw(pa)), Err(PteError::Unaligned { pa, page_shift: 12 }));
            assert_eq!(fmt.encode_table(12, pa), Err(PteError::Unaligned { pa, page_shift: 12 }));
            let pa = 0x8_1234_4004;
            assert_eq!(fmt.encode_leaf(14, &rw(pa)), Err(PteError::Unaligned { pa, page_shift: 14 }));
        }
    }

    #[test]
    fn refuses_pa_too_wide() {
        let cases = [
            (PteFormat::Dart1, 0x10_0000_0000, 0x10_0000_0000),
            (PteFormat::Dart1, 0x400_0000_0000, 0x10_0000_0000),
            (PteFormat::Dart1, u64::MAX, 0x10_0000_0000),
            (PteFormat::Dart2, 0x400_0000_0000, 0x400_0000_0000),
            (PteFormat::Dart2, 0x8000_0000_0000_0000, 0x400_0000_0000),
            (PteFormat::Dart2, u64::MAX, 0x400_0000_0000),
        ];
        for (fmt, pa, max) in cases {
            for shift in [12, 14] {
                assert_eq!(fmt.encode_leaf(shift, &rw(pa)), Err(PteError::PaTooWide { pa, max }));
                assert_eq!(fmt.encode_table(shift, pa), Err(PteError::PaTooWide { pa, max }));
            }
        }
    }

    #[test]
    fn too_wide_is_reported_before_unaligned() {
        let pa = 0x10_0000_0800;
        assert_eq!(PteFormat::Dart1.encode_leaf(14, &rw(pa)), Err(PteError::PaTooWide { pa, max: 0x10_0000_0000 }));
    }

    #[test]
    fn refuses_no_access() {
        for fmt in FORMATS {
            for shift in [12, 14] {
                let leaf = Leaf { read: false, write: false, ..rw(0x8_1234_4000) };
                assert_eq!(fmt.encode_leaf(shift, &leaf), Err(PteError::NoAccess));
            }
        }
    }

    #[test]
    fn refuses_bad_subpage() {
        let cases = [
            // start > end
            (14, 0x80, 0x7f),
            // end beyond the 12-bit field
            (14, 0, 0x1000),
            (12, 0, 0xffff),
            // start beyond a 4 KiB page: grants no byte
            (12, 0x400, 0x500),
            (12, 0xfff, 0xfff),
        ];
        for fmt in FORMATS {
            for (page_shift, start, end) in cases {
                let leaf = Leaf { subpage: Subpage { start, end }, ..rw(0x8_1234_4000) };
                assert_eq!(fmt.encode_leaf(page_shift, &leaf), Err(PteError::BadSubpage { start, end, page_shift }));
            }
        }
    }

    #[test]
    fn unusual_page_shifts_do_not_panic() {
        for fmt in FORMATS {
            for shift in [0, 1, 10, 11, 13, 15, 21, 63, 64, 65, u32::MAX] {
                let _ = fmt.encode_leaf(shift, &rw(0x8_1234_4000));
                let _ = fmt.encode_leaf(shift, &rw(0));
                let _ = fmt.encode_table(shift, 0x8_1234_4000);
                let _ = fmt.decode_leaf(shift, u64::MAX);
                let _ = fmt.decode_table(shift, u64::MAX);
            }
            // A page size that does not fit in u64 admits nothing.
            assert_eq!(fmt.encode_leaf(64, &rw(0)), Err(PteError::BadSubpage { start: 0, end: 0xfff, page_shift: 64 }));
            assert_eq!(fmt.encode_table(64, 0x4000), Err(PteError::Unaligned { pa: 0x4000, page_shift: 64 }));
        }
    }

    proptest! {
        #[test]
        fn leaf_round_trip((fmt, shift, leaf) in any_valid_leaf()) {
            let pte = fmt.encode_leaf(shift, &leaf).unwrap();
            prop_assert!(PteFormat::is_valid(pte));
            prop_assert_eq!(fmt.decode_leaf(shift, pte), Some(normalised(fmt, shift, leaf)));
        }

        #[test]
        fn table_round_trip(fmt in any_format(), shift in any_page_shift(), page in any::<u64>()) {
            let pa = (page % (fmt.max_pa() >> shift)) << shift;
            let pte = fmt.encode_table(shift, pa).unwrap();
            prop_assert!(PteFormat::is_valid(pte));
            prop_assert_eq!(fmt.decode_table(shift, pte), Some(pa));
            // A descriptor carries only the PA and the valid bit.
            prop_assert_eq!(pte & (PTE_SUBPAGE_START | PTE_SUBPAGE_END), 0);
        }

        #[test]
        fn any_unaligned_pa_is_refused(
            fmt in any_format(),
            shift in any_page_shift(),
            pa in any::<u64>(),
        ) {
            let pa = pa % fmt.max_pa();
            prop_assume!(pa & ((1 << shift) - 1) != 0);
            let err = Err(PteError::Unaligned { pa, page_shift: shift });
            prop_assert_eq!(fmt.encode_leaf(shift, &rw(pa)), err);
            prop_assert_eq!(fmt.encode_table(shift, pa), err);
        }

        #[test]
        fn any_too_wide_pa_is_refused(
            fmt in any_format(),
            shift in any_page_shift(),
            pa in any::<u64>(),
        ) {
            let max = fmt.max_pa();
            let pa = pa.max(max);
            let err = Err(PteError::PaTooWide { pa, max });
            prop_assert_eq!(fmt.encode_leaf(shift, &rw(pa)), err);
            prop_assert_eq!(fmt.encode_table(shift, pa), err);
        }

        #[test]
        fn garbage_decodes_without_panic(
            fmt in any_format(),
            shift in any_page_shift(),
            pte in any::<u64>(),
        ) {
            let leaf = fmt.decode_leaf(shift, pte);
            let table = fmt.decode_table(shift, pte);
            prop_assert_eq!(leaf.is_some(), PteFormat::is_valid(pte));
            prop_assert_eq!(table.is_some(), PteFormat::is_valid(pte));
            if let (Some(leaf), Some(table)) = (leaf, table) {
                // Both decodings read the same PA field.
                prop_assert_eq!(leaf.pa, table);
                prop_assert!(leaf.pa < fmt.max_pa());
                prop_assert_eq!(leaf.pa & ((1 << shift) - 1), 0);
                // Whatever was decoded re-encodes, unless it grants nothing.
                match fmt.encode_leaf(shift, &leaf) {
                    Ok(again) => prop_assert_eq!(
                        fmt.decode_leaf(shift, again),
                        Some(normalised(fmt, shift, leaf))
                    ),
                    Err(PteError::NoAccess) => prop_assert!(!leaf.read && !leaf.write),
                    Err(PteError::BadSubpage { .. }) => {
                        prop_assert!(!leaf.subpage.is_encodable(shift))
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
                prop_assert_eq!(fmt.encode_table(shift, table).map(|t| fmt.decode_table(shift, t)), Ok(Some(table)));
            }
        }

        #[test]
        fn garbage_any_shift_never_panics(
            fmt in any_format(),
            shift in any::<u32>(),
            pte in any::<u64>(),
            leaf_pa in any::<u64>(),
            start in any::<u16>(),
            end in any::<u16>(),
            read in any::<bool>(),
            write in any::<bool>(),
        ) {
            let _ = fmt.decode_leaf(shift, pte);
            let _ = fmt.decode_table(shift, pte);
            let _ = fmt.encode_table(shift, leaf_pa);
            let leaf = Leaf { pa: leaf_pa, read, write, subpage: Subpage { start, end } };
            let _ = fmt.encode_leaf(shift, &leaf);
        }

        #[test]
        fn subpage_bytes_round_trip(
            shift in any_page_shift(),
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let units = (1u64 << shift) / SUBPAGE_UNIT_BYTES;
            let (x, y) = (a % (units + 1), b % (units + 1));
            prop_assume!(x != y);
            let (lo, hi) = (x.min(y) * SUBPAGE_UNIT_BYTES, x.max(y) * SUBPAGE_UNIT_BYTES);
            let page = 1u64 << shift;
            let s = Subpage::from_bytes(lo, hi, page).unwrap();
            prop_assert_eq!(s.byte_range(page), (lo, hi));
            prop_assert_eq!(s.is_whole(page), lo == 0 && hi == page);
            prop_assert!(s.contains(lo, hi - lo, page));
            prop_assert!(!s.contains(lo, hi - lo + 1, page));
            if lo > 0 {
                prop_assert!(!s.contains(lo - 1, 1, page));
            }
        }

        #[test]
        fn subpage_methods_never_panic(
            start in any::<u16>(),
            end in any::<u16>(),
            page in any::<u64>(),
            offset in any::<u64>(),
            len in any::<u64>(),
        ) {
            let s = Subpage { start, end };
            let _ = s.byte_range(page);
            let _ = s.is_whole(page);
            let _ = s.contains(offset, len, page);
            let _ = Subpage::from_bytes(offset, len, page);
        }
    }
}
