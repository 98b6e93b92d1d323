//! A model of Linux's `drivers/iommu/io-pgtable-dart.c` (the version with
//! `DART_MAX_LEVELS` 4, i.e. with the four-level patch), written for
//! dartemu's monitor: every table entry is read with
//! [`Dart::read_table_entry`] (Linux: `READ_ONCE(*ptep)`) and written with
//! [`Dart::write_table_entry`] (Linux: a store or `cmpxchg64` into the
//! table page), and tables are `dart-table` frames of the frame table
//! (Linux: `iommu_alloc_pages_sz`, zeroed).
//!
//! The encodings (`paddr_to_iopte`, `dart_prot_to_pte`, `dart_init_pte`,
//! `dart_install_table`) and the geometry (`dart_alloc_pgtable`'s levels and
//! `tbl_bits`, `dart_get_index`) are written out here from the Linux source,
//! not taken from the `dart` crate, and every entry the model writes is
//! cross-checked against the crate's own encoder (`PteFormat::encode_leaf`,
//! `encode_table`).
//!
//! Where the model departs from Linux, it says so:
//! - DART2 at 4 KiB pages: Linux's `APPLE_DART2_PADDR_MASK` is \[37:10\],
//!   which drops PA bits 12-13 of a 4 KiB page (no DART2 part runs 4 KiB
//!   pages). The model uses \[37:8\] there, dartemu's inferred layout.
//! - Every table is registered with the DART when allocated, by one
//!   monitor write of an invalid entry (Linux zeroes the page; the frame
//!   table already has): the monitor reads only tables it knows, and a TTBR
//!   may only name a registered one.
//! - Roots are allocated at the alignment the DART's TTBR needs (t8110:
//!   16 KiB, `DART_T8110_TTBR_SHIFT`); Linux only `WARN_ON`s a misaligned
//!   root in `apple_dart_hw_set_ttbr`.
//! - Teardown: Linux's `apple_dart_free_pgtable` frees the pages. Under the
//!   monitor a table is released only once its parent entry is cleared and
//!   invalidated and no TTBR names it, so freeing is three steps:
//!   [`DartIoPgtable::unlink_tables`] (clear every table descriptor), the
//!   driver's flush and TTBR clear, then [`DartIoPgtable::free`]
//!   (`release_table` and free, children first).
//! - A refused monitor write is an error Linux has no equivalent for
//!   (a store cannot fail); `map_pages` reports it with what it wrote
//!   before, so `iommu_map`'s unwind can clear that.

use dart::pte::{Leaf, Subpage};
use dart::variant::PteFormat;
use dart::{Dart, DartError};
use frame_table::FrameType;
use std::cell::Cell;
use std::sync::Arc;

/// `IOMMU_READ`.
pub const IOMMU_READ: u32 = 1 << 0;
/// `IOMMU_WRITE`.
pub const IOMMU_WRITE: u32 = 1 << 1;
/// `IOMMU_CACHE`.
pub const IOMMU_CACHE: u32 = 1 << 2;

const SZ_4K: u64 = 4 << 10;
const SZ_16K: u64 = 16 << 10;

const DART_MAX_TABLE_BITS: u32 = 2;
const DART_MAX_TABLES: usize = 1 << DART_MAX_TABLE_BITS;
/// Includes the TTBR level.
const DART_MAX_LEVELS: u32 = 4;

/// `sizeof(dart_iopte)`, log2.
const IOPTE_SHIFT: u32 = 3;

const fn genmask(h: u32, l: u32) -> u64 {
    (u64::MAX >> (63 - h)) & (u64::MAX << l)
}

const APPLE_DART_PTE_SUBPAGE_START: u64 = genmask(63, 52);
const APPLE_DART_PTE_SUBPAGE_END: u64 = genmask(51, 40);

const APPLE_DART1_PADDR_MASK: u64 = genmask(35, 12);
const APPLE_DART2_PADDR_MASK: u64 = genmask(37, 10);
/// Not Linux: the DART2 PA field at 4 KiB pages (module docs).
const APPLE_DART2_PADDR_MASK_4K: u64 = genmask(37, 8);
const APPLE_DART2_PADDR_SHIFT: u32 = 4;

const APPLE_DART1_PTE_PROT_NO_READ: u64 = 1 << 8;
const APPLE_DART1_PTE_PROT_NO_WRITE: u64 = 1 << 7;
const APPLE_DART1_PTE_PROT_SP_DIS: u64 = 1 << 1;

const APPLE_DART2_PTE_PROT_NO_READ: u64 = 1 << 3;
const APPLE_DART2_PTE_PROT_NO_WRITE: u64 = 1 << 2;
const APPLE_DART2_PTE_PROT_NO_CACHE: u64 = 1 << 1;

const APPLE_DART_PTE_VALID: u64 = 1 << 0;

const fn field_prep(mask: u64, val: u64) -> u64 {
    (val << mask.trailing_zeros()) & mask
}

/// `enum io_pgtable_fmt`: `APPLE_DART` (DART1) or `APPLE_DART2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    /// `APPLE_DART`: t8020.
    AppleDart,
    /// `APPLE_DART2`: t6000, t8110.
    AppleDart2,
}

impl Fmt {
    /// The `dart` crate's name for the same format (for cross-checks).
    pub fn crate_format(self) -> PteFormat {
        match self {
            Fmt::AppleDart => PteFormat::Dart1,
            Fmt::AppleDart2 => PteFormat::Dart2,
        }
    }
}

/// `struct io_pgtable_cfg` with its `apple_dart_cfg` outputs.
#[derive(Clone, Debug)]
pub struct PgtableCfg {
    /// The one page size.
    pub pgsize_bitmap: u64,
    /// Input (IOVA) bits.
    pub ias: u32,
    /// Output (PA) bits.
    pub oas: u32,
    /// The walker is cache coherent (Linux requires it).
    pub coherent_walk: bool,
    /// Not Linux: the alignment the DART's TTBR needs of a root (module docs).
    pub root_align: u64,
    /// Output: roots (TTBRs) the tables use.
    pub n_ttbrs: usize,
    /// Output: levels including the TTBR level (3: two table levels, 4: three).
    pub n_levels: u32,
    /// Output: the roots' PAs.
    pub ttbr: [u64; DART_MAX_TABLES],
}

impl PgtableCfg {
    /// A configuration for `alloc`.
    pub fn new(pgsize: u64, ias: u32, oas: u32, root_align: u64) -> PgtableCfg {
        PgtableCfg {
            pgsize_bitmap: pgsize,
            ias,
            oas,
            coherent_walk: true,
            root_align,
            n_ttbrs: 0,
            n_levels: 0,
            ttbr: [0; DART_MAX_TABLES],
        }
    }
}

/// Why an io-pgtable operation failed (Linux's errno, or the monitor's refusal).
#[derive(Debug)]
pub enum PgtableError {
    /// `-EINVAL`.
    Inval,
    /// `-ERANGE`.
    Range,
    /// `-ENOMEM`.
    NoMem,
    /// `-EEXIST`: the entry is valid; unmap first.
    Exist,
    /// The monitor refused a table entry read or write.
    Monitor(DartError),
}

impl PgtableError {
    /// The outcome kind: the monitor's error kind, or the errno's name.
    pub fn kind(&self) -> &'static str {
        match self {
            PgtableError::Inval => "EINVAL",
            PgtableError::Range => "ERANGE",
            PgtableError::NoMem => "ENOMEM",
            PgtableError::Exist => "EEXIST",
            PgtableError::Monitor(e) => e.kind(),
        }
    }
}

impl From<DartError> for PgtableError {
    fn from(e: DartError) -> Self {
        PgtableError::Monitor(e)
    }
}

/// `struct iommu_iotlb_gather`: the range an unmap cleared, for `iotlb_sync`.
#[derive(Clone, Copy, Debug, Default)]
pub struct IotlbGather {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub end: u64,
    /// Pages added.
    pub pages: u64,
}

impl IotlbGather {
    /// `io_pgtable_tlb_add_page` (apple-dart has no `tlb` ops: it only gathers).
    fn add_page(&mut self, iova: u64, size: u64) {
        if self.pages == 0 || iova < self.start {
            self.start = iova;
        }
        self.end = self.end.max(iova + size - 1);
        self.pages += 1;
    }
}

/// What the model did, for the run's summary and assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgtableStats {
    /// Tables allocated (roots included).
    pub tables_allocated: u64,
    /// Monitor writes.
    pub writes: u64,
    /// Monitor reads.
    pub reads: u64,
    /// Leaf entries written.
    pub leaves_set: u64,
    /// Leaf entries cleared.
    pub leaves_cleared: u64,
    /// Table descriptors written.
    pub tables_installed: u64,
    /// Linux `WARN_ON`s hit.
    pub warnings: u64,
}

/// `struct dart_io_pgtable`.
pub struct DartIoPgtable {
    dart: Arc<Dart>,
    fmt: Fmt,
    cfg: PgtableCfg,
    /// Levels including the TTBR level.
    levels: u32,
    tbl_bits: u32,
    bits_per_level: u32,
    pgd: Vec<u64>,
    stats: Cell<PgtableStats>,
}

impl DartIoPgtable {
    /// `apple_dart_alloc_pgtable` (with `dart_alloc_pgtable`): `None` where
    /// Linux returns NULL.
    pub fn alloc(dart: Arc<Dart>, fmt: Fmt, cfg: &mut PgtableCfg) -> Option<DartIoPgtable> {
        if !cfg.coherent_walk {
            return None;
        }
        if cfg.oas != 36 && cfg.oas != 42 {
            return None;
        }
        if cfg.ias > cfg.oas {
            return None;
        }
        if !(cfg.pgsize_bitmap == SZ_4K || cfg.pgsize_bitmap == SZ_16K) {
            return None;
        }

        // dart_alloc_pgtable: old 4K-page DARTs can use up to 4 top-level
        // tables; newer ones only ever use one.
        let max_tbl_bits = if cfg.pgsize_bitmap == SZ_4K { DART_MAX_TABLE_BITS } else { 0 };
        let pg_shift = cfg.pgsize_bitmap.trailing_zeros();
        let bits_per_level = pg_shift - IOPTE_SHIFT;
        let va_bits = cfg.ias as i32 - pg_shift as i32;
        let levels = 2.max((va_bits - max_tbl_bits as i32 + bits_per_level as i32 - 1) / bits_per_level as i32);
        if levels > (DART_MAX_LEVELS - 1) as i32 {
            return None;
        }
        let tbl_bits = 0.max(va_bits - bits_per_level as i32 * levels);
        if tbl_bits > max_tbl_bits as i32 {
            return None;
        }

        let mut data = DartIoPgtable {
            dart,
            fmt,
            cfg: cfg.clone(),
            levels: levels as u32 + 1,
            tbl_bits: tbl_bits as u32,
            bits_per_level,
            pgd: Vec::new(),
            stats: Cell::new(PgtableStats::default()),
        };
        cfg.n_ttbrs = 1 << data.tbl_bits;
        cfg.n_levels = data.levels;
        for i in 0..cfg.n_ttbrs {
            match data.alloc_table(cfg.root_align) {
                Ok(pa) => {
                    data.pgd.push(pa);
                    cfg.ttbr[i] = pa;
                }
                Err(_) => {
                    for &pa in &data.pgd {
                        data.free_frame(pa);
                    }
                    return None;
                }
            }
        }
        data.cfg = cfg.clone();
        Some(data)
    }

    /// The configuration with its outputs.
    pub fn cfg(&self) -> &PgtableCfg {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> PgtableStats {
        self.stats.get()
    }

    /// The roots.
    pub fn pgd(&self) -> &[u64] {
        &self.pgd
    }

    fn bump(&self, f: impl FnOnce(&mut PgtableStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    fn warn_on(&self, cond: bool) -> bool {
        if cond {
            self.bump(|s| s.warnings += 1);
        }
        cond
    }

    fn page_shift(&self) -> u32 {
        self.cfg.pgsize_bitmap.trailing_zeros()
    }

    /// `DART_PTES_PER_TABLE`.
    fn ptes_per_table(&self) -> u64 {
        1 << self.bits_per_level
    }

    /// `READ_ONCE(table[index])`, through the monitor.
    pub fn read(&self, table: u64, index: u64) -> Result<u64, DartError> {
        self.bump(|s| s.reads += 1);
        self.dart.read_table_entry(table, index)
    }

    /// `table[index] = value`, through the monitor.
    fn write(&self, table: u64, index: u64, value: u64) -> Result<(), DartError> {
        self.bump(|s| s.writes += 1);
        self.dart.write_table_entry(table, index, value)
    }

    /// A zeroed table (`iommu_alloc_pages_sz(gfp, DART_GRANULE)`),
    /// registered with the DART (module docs).
    fn alloc_table(&self, align: u64) -> Result<u64, PgtableError> {
        let frames = self.dart.frames();
        let align_frames = (align / self.cfg.pgsize_bitmap).max(1);
        let f = frames.alloc_aligned(FrameType::DartTable, 1, align_frames).map_err(|_| PgtableError::NoMem)?[0];
        let pa = frames.pa_of(f).expect("an allocated frame has a PA");
        // The frame table zero-fills it (R5); this invalid entry only
        // registers it, so a TTBR may name it and its entries may be read.
        if let Err(e) = self.write(pa, 0, 0) {
            frames.free(f).expect("free a table page the monitor refused");
            return Err(e.into());
        }
        self.bump(|s| s.tables_allocated += 1);
        Ok(pa)
    }

    /// `iommu_free_pages` of a table nothing links: released, then freed.
    fn free_frame(&self, pa: u64) {
        let frames = self.dart.frames();
        self.dart.release_table(pa).expect("release an unlinked table");
        frames.free(frames.frame_of(pa).unwrap()).expect("free an unused table page");
    }

    /// The DART2 PA field's mask (wider at 4 KiB pages: module docs).
    fn dart2_paddr_mask(&self) -> u64 {
        if self.cfg.pgsize_bitmap == SZ_4K {
            APPLE_DART2_PADDR_MASK_4K
        } else {
            APPLE_DART2_PADDR_MASK
        }
    }

    /// `paddr_to_iopte`.
    fn paddr_to_iopte(&self, paddr: u64) -> u64 {
        match self.fmt {
            Fmt::AppleDart => paddr & APPLE_DART1_PADDR_MASK,
            Fmt::AppleDart2 => (paddr >> APPLE_DART2_PADDR_SHIFT) & self.dart2_paddr_mask(),
        }
    }

    /// `iopte_to_paddr`.
    fn iopte_to_paddr(&self, pte: u64) -> u64 {
        match self.fmt {
            Fmt::AppleDart => pte & APPLE_DART1_PADDR_MASK,
            Fmt::AppleDart2 => (pte & self.dart2_paddr_mask()) << APPLE_DART2_PADDR_SHIFT,
        }
    }

    /// `dart_prot_to_pte`.
    fn prot_to_pte(&self, prot: u32) -> u64 {
        let mut pte = 0;
        match self.fmt {
            Fmt::AppleDart => {
                pte |= APPLE_DART1_PTE_PROT_SP_DIS;
                if prot & IOMMU_WRITE == 0 {
                    pte |= APPLE_DART1_PTE_PROT_NO_WRITE;
                }
                if prot & IOMMU_READ == 0 {
                    pte |= APPLE_DART1_PTE_PROT_NO_READ;
                }
            }
            Fmt::AppleDart2 => {
                if prot & IOMMU_WRITE == 0 {
                    pte |= APPLE_DART2_PTE_PROT_NO_WRITE;
                }
                if prot & IOMMU_READ == 0 {
                    pte |= APPLE_DART2_PTE_PROT_NO_READ;
                }
                if prot & IOMMU_CACHE == 0 {
                    pte |= APPLE_DART2_PTE_PROT_NO_CACHE;
                }
            }
        }
        pte
    }

    /// The leaf `dart_init_pte` writes for `paddr` with `prot`, as the
    /// `dart` crate encodes it (the cross-check).
    pub fn crate_leaf(&self, paddr: u64, prot: u32) -> u64 {
        let fmt = self.fmt.crate_format();
        let leaf =
            Leaf { pa: paddr, read: prot & IOMMU_READ != 0, write: prot & IOMMU_WRITE != 0, subpage: Subpage::WHOLE };
        let kept = if prot & IOMMU_CACHE == 0 { fmt.kept_leaf_bits() } else { 0 };
        fmt.encode_leaf_kept(self.page_shift(), &leaf, kept).expect("the crate encodes the leaf")
    }

    /// `dart_get_index`.
    fn get_index(&self, iova: u64, level: u32) -> u64 {
        (iova >> (level * self.bits_per_level + IOPTE_SHIFT)) & ((1 << self.bits_per_level) - 1)
    }

    /// `dart_get_last_index`.
    fn get_last_index(&self, iova: u64) -> u64 {
        (iova >> (self.bits_per_level + IOPTE_SHIFT)) & ((1 << self.bits_per_level) - 1)
    }

    /// `dart_get_last`: the leaf table covering `iova`, if every table on
    /// the way is there.
    fn get_last(&self, iova: u64) -> Result<Option<u64>, DartError> {
        let mut level = self.levels;
        let tbl = self.get_index(iova, level);
        if tbl >= 1 << self.tbl_bits {
            return Ok(None);
        }
        let mut table = self.pgd[tbl as usize];
        loop {
            level -= 1;
            if level <= 1 {
                break;
            }
            let pte = self.read(table, self.get_index(iova, level))?;
            if pte == 0 {
                return Ok(None);
            }
            table = self.iopte_to_paddr(pte);
        }
        Ok(Some(table))
    }

    /// `dart_init_pte`: `num_entries` leaves from `table[start]`.
    fn init_pte(
        &self,
        paddr: u64,
        prot: u64,
        num_entries: u64,
        table: u64,
        start: u64,
    ) -> Result<(), (u64, PgtableError)> {
        let sz = self.cfg.pgsize_bitmap;
        for i in 0..num_entries {
            let old = self.read(table, start + i).map_err(|e| (0, e.into()))?;
            if old & APPLE_DART_PTE_VALID != 0 {
                // We require an unmap first.
                self.warn_on(true);
                return Err((0, PgtableError::Exist));
            }
        }
        // Subpage protection: always allow access to the entire page.
        let mut pte = prot;
        pte |= field_prep(APPLE_DART_PTE_SUBPAGE_START, 0);
        pte |= field_prep(APPLE_DART_PTE_SUBPAGE_END, 0xfff);
        pte |= APPLE_DART_PTE_VALID;
        for i in 0..num_entries {
            let value = pte | self.paddr_to_iopte(paddr + i * sz);
            self.write(table, start + i, value).map_err(|e| (i, e.into()))?;
            self.bump(|s| s.leaves_set += 1);
        }
        Ok(())
    }

    /// `dart_install_table`: `cmpxchg64(ptep, curr, new)`, returning the old value.
    fn install_table(&self, child: u64, table: u64, index: u64, curr: u64) -> Result<u64, DartError> {
        let new = self.paddr_to_iopte(child) | APPLE_DART_PTE_VALID;
        let fmt = self.fmt.crate_format();
        assert_eq!(Ok(new), fmt.encode_table(self.page_shift(), child), "descriptor encoding of {child:#x}");
        let old = self.read(table, index)?;
        if old == curr {
            self.write(table, index, new)?;
            self.bump(|s| s.tables_installed += 1);
        }
        Ok(old)
    }

    /// `dart_map_pages`. `mapped` grows by what was written, also when the
    /// monitor refuses a leaf part-way (module docs).
    pub fn map_pages(
        &self,
        iova: u64,
        paddr: u64,
        pgsize: u64,
        pgcount: u64,
        iommu_prot: u32,
        mapped: &mut u64,
    ) -> Result<(), PgtableError> {
        if self.warn_on(pgsize != self.cfg.pgsize_bitmap) {
            return Err(PgtableError::Inval);
        }
        if self.warn_on(paddr >> self.cfg.oas != 0) {
            return Err(PgtableError::Range);
        }
        if iommu_prot & (IOMMU_READ | IOMMU_WRITE) == 0 {
            return Err(PgtableError::Inval);
        }
        let mut level = self.levels;
        let tbl = self.get_index(iova, level);
        if tbl >= 1 << self.tbl_bits {
            return Err(PgtableError::NoMem);
        }
        let mut table = self.pgd[tbl as usize];
        loop {
            level -= 1;
            if level <= 1 {
                break;
            }
            let index = self.get_index(iova, level);
            let mut pte = self.read(table, index)?;
            // No table present.
            if pte == 0 {
                let cptep = self.alloc_table(self.cfg.pgsize_bitmap)?;
                match self.install_table(cptep, table, index, 0) {
                    Ok(0) => {}
                    Ok(_) => self.free_frame(cptep),
                    Err(e) => {
                        self.free_frame(cptep);
                        return Err(e.into());
                    }
                }
                // The next table is present (now).
                pte = self.read(table, index)?;
            }
            table = self.iopte_to_paddr(pte);
        }

        // Install leaf entries into the last table.
        let prot = self.prot_to_pte(iommu_prot);
        let map_idx_start = self.get_last_index(iova);
        let max_entries = self.ptes_per_table() - map_idx_start;
        let num_entries = pgcount.min(max_entries);
        match self.init_pte(paddr, prot, num_entries, table, map_idx_start) {
            Ok(()) => {
                *mapped += num_entries * pgsize;
                Ok(())
            }
            Err((written, e)) => {
                *mapped += written * pgsize;
                Err(e)
            }
        }
    }

    /// `dart_unmap_pages`: reads each entry back and clears it.
    pub fn unmap_pages(
        &self,
        iova: u64,
        pgsize: u64,
        pgcount: u64,
        gather: &mut IotlbGather,
    ) -> Result<u64, DartError> {
        if self.warn_on(pgsize != self.cfg.pgsize_bitmap || pgcount == 0) {
            return Ok(0);
        }
        let Some(table) = self.get_last(iova)? else {
            // Valid last-level IOPTE pointer?
            self.warn_on(true);
            return Ok(0);
        };
        let unmap_idx_start = self.get_last_index(iova);
        let max_entries = self.ptes_per_table() - unmap_idx_start;
        let num_entries = pgcount.min(max_entries);
        let mut i = 0;
        while i < num_entries {
            let pte = self.read(table, unmap_idx_start + i)?;
            if self.warn_on(pte == 0) {
                break;
            }
            // Clear the PTE.
            self.write(table, unmap_idx_start + i, 0)?;
            self.bump(|s| s.leaves_cleared += 1);
            gather.add_page(iova + i * pgsize, pgsize);
            i += 1;
        }
        Ok(i * pgsize)
    }

    /// `dart_iova_to_phys` (0: no translation).
    pub fn iova_to_phys(&self, iova: u64) -> Result<u64, DartError> {
        let Some(table) = self.get_last(iova)? else { return Ok(0) };
        let pte = self.read(table, self.get_last_index(iova))?;
        if pte != 0 {
            return Ok(self.iopte_to_paddr(pte) | (iova & (self.cfg.pgsize_bitmap - 1)));
        }
        Ok(0)
    }

    /// The last-level table covering `iova`, if the tables reach it.
    pub fn leaf_table(&self, iova: u64) -> Result<Option<u64>, DartError> {
        self.get_last(iova)
    }

    /// The index of `iova`'s entry in its last-level table.
    pub fn leaf_index(&self, iova: u64) -> u64 {
        self.get_last_index(iova)
    }

    /// The leaf entry for `iova` as the table holds it (0 if no table is there).
    pub fn leaf_entry(&self, iova: u64) -> Result<u64, DartError> {
        let Some(table) = self.get_last(iova)? else { return Ok(0) };
        self.read(table, self.get_last_index(iova))
    }

    /// Every table below the roots, each after its children (the order
    /// `apple_dart_free_pgtables` frees them in), as `(table, parent, index)`.
    fn subtables(&self) -> Result<Vec<(u64, u64, u64)>, DartError> {
        fn walk(data: &DartIoPgtable, table: u64, level: u32, out: &mut Vec<(u64, u64, u64)>) -> Result<(), DartError> {
            if level > 1 {
                for i in 0..data.ptes_per_table() {
                    let pte = data.read(table, i)?;
                    if pte != 0 {
                        let child = data.iopte_to_paddr(pte);
                        walk(data, child, level - 1, out)?;
                        out.push((child, table, i));
                    }
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        for &root in &self.pgd {
            walk(self, root, self.levels - 1, &mut out)?;
        }
        Ok(out)
    }

    /// Not Linux (module docs): clears every table descriptor, so the
    /// children can be released once the driver has invalidated. Returns
    /// the tables unlinked, children first.
    pub fn unlink_tables(&self) -> Result<Vec<u64>, DartError> {
        let tables = self.subtables()?;
        for &(_, parent, index) in &tables {
            self.write(parent, index, 0)?;
        }
        Ok(tables.into_iter().map(|(t, _, _)| t).collect())
    }

    /// `apple_dart_free_pgtable`, monitor side: releases `subtables` (from
    /// [`DartIoPgtable::unlink_tables`]) and the roots, and frees them.
    /// The first refusal is returned with nothing after it done.
    pub fn free(self, subtables: &[u64]) -> Result<(), DartError> {
        let frames = self.dart.frames();
        for &pa in subtables.iter().chain(&self.pgd) {
            self.dart.release_table(pa)?;
            frames.free(frames.frame_of(pa)?)?;
        }
        Ok(())
    }

    /// Releases one table (the test's probe of rule 8).
    pub fn release_table(&self, pa: u64) -> Result<(), DartError> {
        self.dart.release_table(pa)
    }

    /// IOVA bytes one last-level table covers (one entry of the level above).
    pub fn leaf_table_span(&self) -> u64 {
        1 << (self.bits_per_level + self.page_shift())
    }

    /// IOVA bytes one table of the level above the last covers (one L0
    /// entry with four levels, one root at two).
    pub fn upper_table_span(&self) -> u64 {
        1 << (2 * self.bits_per_level + self.page_shift())
    }
}
