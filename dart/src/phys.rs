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
/// walker instead keeps each region's `(guest start, length, host address)`
/// and loads through a pointer after its own bounds and alignment check.
/// Outside every region the load is `None`, as with vm-memory.
#[derive(Debug)]
pub(crate) struct PteLoader {
    regions: Box<[(u64, u64, usize)]>,
}

impl PteLoader {
    /// Records the regions of `mem` (which must outlive every load: the
    /// DART holds the frame table that owns it).
    pub(crate) fn new(mem: &GuestMemoryMmap) -> PteLoader {
        use frame_table::vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
        let regions = mem
            .iter()
            .filter_map(|r| {
                let host = r.get_host_address(MemoryRegionAddress(0)).ok()? as usize;
                Some((r.start_addr().0, r.len(), host))
            })
            .collect();
        PteLoader { regions }
    }

    /// The PTE at `pa` as an atomic, if `pa` is 8-byte aligned and inside
    /// one of the regions.
    #[inline]
    fn pte(&self, pa: u64) -> Option<&std::sync::atomic::AtomicU64> {
        if !pa.is_multiple_of(8) {
            return None;
        }
        for &(start, len, host) in self.regions.iter() {
            let off = pa.wrapping_sub(start);
            if off < len && len - off >= 8 {
                let ptr = (host + off as usize) as *const std::sync::atomic::AtomicU64;
                // SAFETY: `[start, start + len)` is a region of the
                // `GuestMemoryMmap` this loader was built from, mapped at
                // `host` for as long as that memory lives, which the DART
                // guarantees by holding the frame table that owns it (the
                // returned reference cannot outlive `self`, a field of the
                // DART). `off + 8 <= len` keeps the 8 bytes inside the
                // mapping; `pa` and the page-aligned `host` make the pointer
                // 8-byte aligned. Every access to a PTE is atomic (this type,
                // or vm-memory's atomic `load`/`store`), so there is never a
                // data race on it.
                return Some(unsafe { &*ptr });
            }
        }
        None
    }

    /// Loads the PTE at `pa` with `Acquire`, as [`load_pte`] does; `None`
    /// outside memory or if `pa` is not 8-byte aligned.
    #[inline]
    pub(crate) fn load(&self, pa: u64) -> Option<u64> {
        Some(self.pte(pa)?.load(Ordering::Acquire))
    }

    /// Stores the PTE at `pa` with `Release`, as [`store_pte`] does; `false`
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
        ])
        .unwrap();
        let loader = PteLoader::new(&mem);
        for (pa, v) in [(0x1000_0000u64, 1u64), (0x1000_3ff8, 2), (0x2000_0008, 3)] {
            assert!(store_pte(&mem, pa, v));
            assert_eq!(loader.load(pa), Some(v));
            assert_eq!(loader.load(pa), load_pte(&mem, pa));
            assert!(loader.store(pa, v + 10));
            assert_eq!(load_pte(&mem, pa), Some(v + 10));
        }
        // Outside memory, straddling a region's end, misaligned: None.
        for pa in [0u64, 0x0fff_fff8, 0x1000_4000, 0x1000_3ffc, 0x1000_0004, 0x2000_4000, u64::MAX - 7] {
            assert_eq!(loader.load(pa), None, "{pa:#x}");
            assert!(!loader.store(pa, 1), "{pa:#x}");
        }
    }
}
