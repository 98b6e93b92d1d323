//! The DART's view of physical memory: PTE loads and stores, and DMA copies.
//!
//! Tables live in physical memory in the hardware format; the walker reads
//! them with atomic 64-bit loads and the mapper writes them with atomic
//! stores, so a walk racing a map or unmap sees each PTE either before or
//! after the change, never torn. PTEs go through [`PteLoader`] (host
//! pointers after its own bounds and alignment check); DMA copies through
//! `vm_memory`'s checked accessors. Either way an address outside memory is
//! `None` / `false`, never undefined behaviour. `load_pte`/`store_pte`, the
//! vm-memory versions, remain as the reference the loader is tested against.

use frame_table::vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use std::sync::atomic::Ordering;

/// Loads the PTE at `pa` (`Acquire`: a valid table descriptor read here
/// makes the zero-filled table it points at visible). `None` outside memory.
#[inline]
#[cfg(test)]
pub(crate) fn load_pte(mem: &GuestMemoryMmap, pa: u64) -> Option<u64> {
    mem.load::<u64>(GuestAddress(pa), Ordering::Acquire).ok()
}

/// Stores the PTE at `pa` (`Release`: a table's contents, and a leaf's
/// frame accounting, are visible before the PTE that points at them).
#[inline]
#[cfg(test)]
pub(crate) fn store_pte(mem: &GuestMemoryMmap, pa: u64, pte: u64) -> bool {
    mem.store::<u64>(pte, GuestAddress(pa), Ordering::Release).is_ok()
}

/// Copies `buf.len()` bytes from physical `pa`.
#[inline]
pub(crate) fn read(mem: &GuestMemoryMmap, pa: u64, buf: &mut [u8]) -> bool {
    mem.read_slice(buf, GuestAddress(pa)).is_ok()
}

/// Copies `data` to physical `pa`.
#[inline]
pub(crate) fn write(mem: &GuestMemoryMmap, pa: u64, data: &[u8]) -> bool {
    mem.write_slice(data, GuestAddress(pa)).is_ok()
}

/// Asks the CPU to bring the cache line at host address `addr` in, and
/// returns at once. A hint, not an access: it reads nothing a program can
/// observe, never faults and never races, whatever `addr` is (freed,
/// reused, or not mapped at all). Only on x86-64; elsewhere it does
/// nothing (the AArch64 instruction needs `asm!` that this machine, with
/// only the x86-64 target, cannot build), and `Translator::access` does not
/// even look for the address.
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU implements
    // (part of the x86-64 baseline); `prefetcht0` does not access memory in
    // the language's sense and nothing dereferences the pointer, so no
    // address can make it undefined behaviour.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Host addresses of physical memory, for the walker's PTE loads.
///
/// vm-memory's checked `load` finds the region, checks bounds and builds a
/// volatile reference on every call: several dozen instructions per PTE. The
/// walker instead keeps each region's guest start, host address and the
/// number of 8-byte-load offsets it holds, and loads through a pointer after
/// its own bounds and alignment check: one subtraction and one compare for
/// the first region (the only one in most systems), the others in turn
/// after it. Outside every region the load is `None`, as with vm-memory.
#[derive(Debug)]
pub(crate) struct PteLoader {
    /// The memory the regions below point into: a handle of the guest
    /// memory (its regions are reference counted), held so that every
    /// mapping a [`PteRegion`] names stays mapped for as long as the loader
    /// lives, whoever else drops theirs.
    _mem: GuestMemoryMmap,
    first: PteRegion,
    rest: Box<[PteRegion]>,
    /// PTEs in a table, less one: a PTE index within a table. A table is
    /// one page of 8-byte PTEs, at every level.
    table_index_mask: u64,
}

/// Where a whole table lies in host memory: its host address, found by
/// [`PteLoader::table`] with every one of its PTEs inside one region of
/// physical memory. The walk cache keeps these (as bits), so that
/// a walk through it loads the leaf PTE with no region lookup on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostTable(u64);

impl HostTable {
    /// The bits to keep (in an atomic).
    pub(crate) const fn to_bits(self) -> u64 {
        self.0
    }

    /// The table whose [`HostTable::to_bits`] gave `bits`.
    ///
    /// # Safety
    ///
    /// `bits` must be `to_bits()` of a `HostTable` that a [`PteLoader`] of
    /// memory that is still mapped returned: [`PteLoader::load_in`] then
    /// reads inside that table.
    pub(crate) const unsafe fn from_bits(bits: u64) -> HostTable {
        HostTable(bits)
    }
}

/// One region of physical memory as the loader sees it.
#[derive(Debug, Clone, Copy)]
struct PteRegion {
    /// Guest physical address of its first byte.
    start: u64,
    /// Offsets `off < loads` can be loaded as 8 bytes: `len - 7`, or 0 for
    /// a region shorter than 8 bytes (`off + 8 <= len` for every such
    /// `off`).
    loads: u64,
    /// Host address of its first byte (page aligned).
    host: usize,
}

impl PteRegion {
    /// The PTE at `pa`, an 8-byte-aligned address, if it lies in this region.
    #[inline(always)]
    fn pte(&self, pa: u64) -> Option<&std::sync::atomic::AtomicU64> {
        let off = pa.wrapping_sub(self.start);
        if off >= self.loads {
            return None;
        }
        let ptr = (self.host + off as usize) as *const std::sync::atomic::AtomicU64;
        // SAFETY: `[start, start + len)` is a region of the
        // `GuestMemoryMmap` the loader holds (`_mem`), mapped at `host` for
        // as long as that handle lives; the returned reference borrows
        // `self`, so it cannot outlive the loader. `off < loads = len - 7`
        // keeps the 8 bytes inside the mapping; the caller's 8-byte-aligned
        // `pa`, with `start` and `host` page aligned, makes the pointer
        // 8-byte aligned. Every access to a PTE is atomic (this type, or
        // vm-memory's atomic `load`/`store`), so there is never a data race
        // on it.
        Some(unsafe { &*ptr })
    }
}

impl PteLoader {
    /// Records the regions of `mem`, which it keeps: the loads stay inside
    /// mappings the loader itself holds.
    pub(crate) fn new(mem: GuestMemoryMmap, table_bytes: u64) -> PteLoader {
        use frame_table::vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
        let mut regions = mem.iter().filter_map(|r| {
            let host = r.get_host_address(MemoryRegionAddress(0)).ok()? as usize;
            Some(PteRegion { start: r.start_addr().0, loads: r.len().saturating_sub(7), host })
        });
        let first = regions.next().unwrap_or(PteRegion { start: 0, loads: 0, host: 0 });
        let rest = regions.collect();
        PteLoader { _mem: mem, first, rest, table_index_mask: (table_bytes / 8).max(1) - 1 }
    }

    /// The table at `pa` (`table_bytes` as given to [`PteLoader::new`]), if
    /// `pa` is 8-byte aligned and the whole table lies inside one region.
    pub(crate) fn table(&self, pa: u64) -> Option<HostTable> {
        // The first and the last PTE inside the same region: every PTE
        // between them is.
        if !pa.is_multiple_of(8) {
            return None;
        }
        let last = pa.checked_add(8 * self.table_index_mask)?;
        let region = std::iter::once(&self.first).chain(self.rest.iter()).find(|r| r.pte(pa).is_some())?;
        region.pte(last)?;
        Some(HostTable(region.host as u64 + (pa - region.start)))
    }

    /// Loads (`Acquire`) PTE `index` of `table`, modulo the entries a table
    /// holds.
    #[inline(always)]
    pub(crate) fn load_in(&self, table: HostTable, index: u64) -> u64 {
        let ptr = self.pte_address(table.0, index) as *const std::sync::atomic::AtomicU64;
        // SAFETY: `table` came from `PteLoader::table` of the memory this
        // loader reads (the contract of `HostTable::from_bits` for a table
        // kept as bits), so all its PTEs lie inside one region, mapped for
        // as long as the loader holds `_mem`; the masked index keeps the 8
        // bytes inside the table; `pa` 8-byte aligned with `start` and
        // `host` page aligned makes the pointer 8-byte aligned. Every access
        // to a PTE is atomic, so there is never a data race on it.
        unsafe { &*ptr }.load(Ordering::Acquire)
    }

    /// The host address of PTE `index` (modulo the entries a table holds)
    /// of the table kept as `bits` ([`HostTable::to_bits`]): where
    /// [`PteLoader::load_in`] loads, and what a touch passes to
    /// [`prefetch`], for which `bits` need not name a live table.
    #[inline(always)]
    pub(crate) fn pte_address(&self, bits: u64, index: u64) -> usize {
        bits.wrapping_add(8 * (index & self.table_index_mask)) as usize
    }

    /// The PTE at `pa` as an atomic, if `pa` is 8-byte aligned and inside
    /// one of the regions.
    #[inline]
    fn pte(&self, pa: u64) -> Option<&std::sync::atomic::AtomicU64> {
        if !pa.is_multiple_of(8) {
            return None;
        }
        if let Some(pte) = self.first.pte(pa) {
            return Some(pte);
        }
        self.rest.iter().find_map(|r| r.pte(pa))
    }

    /// Loads the PTE at `pa` with `Acquire`, as `load_pte` does; `None`
    /// outside memory or if `pa` is not 8-byte aligned.
    #[inline]
    pub(crate) fn load(&self, pa: u64) -> Option<u64> {
        Some(self.pte(pa)?.load(Ordering::Acquire))
    }

    /// Stores the PTE at `pa` with `Release`, as `store_pte` does; `false`
    /// outside memory or if `pa` is not 8-byte aligned.
    #[inline]
    pub(crate) fn store(&self, pa: u64, pte: u64) -> bool {
        self.pte(pa).map(|p| p.store(pte, Ordering::Release)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame_table::vm_memory::GuestAddress;

    #[test]
    fn loader_matches_vm_memory_and_refuses_what_it_refuses() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0x1000_0000), 0x4000),
            (GuestAddress(0x2000_0000), 0x4000),
            (GuestAddress(0x3000_0000), 0x4000),
        ])
        .unwrap();
        let loader = PteLoader::new(mem.clone(), 0x4000);
        for (pa, v) in [(0x1000_0000u64, 1u64), (0x1000_3ff8, 2), (0x2000_0008, 3), (0x3000_3ff8, 4)] {
            assert!(store_pte(&mem, pa, v));
            assert_eq!(loader.load(pa), Some(v));
            assert_eq!(loader.load(pa), load_pte(&mem, pa));
            assert!(loader.store(pa, v + 10));
            assert_eq!(load_pte(&mem, pa), Some(v + 10));
        }
        // Outside memory, straddling a region's end, misaligned: None.
        for pa in [
            0u64,
            0x0fff_fff8,
            0x1000_4000,
            0x1000_3ffc,
            0x1000_0004,
            0x2000_4000,
            0x3000_3ffc,
            0x3000_4000,
            u64::MAX - 7,
        ] {
            assert_eq!(loader.load(pa), None, "{pa:#x}");
            assert!(!loader.store(pa, 1), "{pa:#x}");
        }
    }

    /// A table is found only whole inside one region; through it, PTE `i`
    /// is the PTE at `pa + 8 * i`, with the index taken modulo the table.
    #[test]
    fn tables_lie_whole_in_a_region_and_load_what_the_loader_loads() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0x1000_0000), 0x8000),
            (GuestAddress(0x2000_0000), 0x4000),
        ])
        .unwrap();
        let loader = PteLoader::new(mem.clone(), 0x4000);
        for pa in [0x1000_0000u64, 0x1000_4000, 0x2000_0000] {
            let table = loader.table(pa).unwrap_or_else(|| panic!("{pa:#x}"));
            for i in 0..0x800u64 {
                assert!(loader.store(pa + 8 * i, pa ^ i));
            }
            for i in [0u64, 1, 0x7ff] {
                assert_eq!(loader.load_in(table, i), pa ^ i, "{pa:#x}[{i}]");
            }
            assert_eq!(loader.load_in(table, 0x800), pa, "index 0x800 wraps to 0");
            // Kept as bits and back, the same table.
            // SAFETY: bits of a table of this loader, whose memory lives.
            assert_eq!(unsafe { HostTable::from_bits(table.to_bits()) }, table);
        }
        // Straddling a region's end, past it, outside memory, misaligned.
        for pa in [0x1000_4008u64, 0x1000_8000, 0x2000_0008, 0x0fff_c000, 0x3000_0000, 0x1000_0004, u64::MAX - 7] {
            assert_eq!(loader.table(pa), None, "{pa:#x}");
        }
    }
}
