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
    first: PteRegion,
    rest: Box<[PteRegion]>,
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
        // `GuestMemoryMmap` the loader was built from, mapped at `host` for
        // as long as that memory lives, which the DART guarantees by holding
        // the frame table that owns it (the returned reference cannot
        // outlive the loader, a field of the DART). `off < loads = len - 7`
        // keeps the 8 bytes inside the mapping; the caller's 8-byte-aligned
        // `pa`, with `start` and `host` page aligned, makes the pointer
        // 8-byte aligned. Every access to a PTE is atomic (this type, or
        // vm-memory's atomic `load`/`store`), so there is never a data race
        // on it.
        Some(unsafe { &*ptr })
    }
}

impl PteLoader {
    /// Records the regions of `mem` (which must outlive every load: the
    /// DART holds the frame table that owns it).
    pub(crate) fn new(mem: &GuestMemoryMmap) -> PteLoader {
        use frame_table::vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
        let mut regions = mem.iter().filter_map(|r| {
            let host = r.get_host_address(MemoryRegionAddress(0)).ok()? as usize;
            Some(PteRegion { start: r.start_addr().0, loads: r.len().saturating_sub(7), host })
        });
        let first = regions.next().unwrap_or(PteRegion { start: 0, loads: 0, host: 0 });
        PteLoader { first, rest: regions.collect() }
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
        let loader = PteLoader::new(&mem);
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
}
