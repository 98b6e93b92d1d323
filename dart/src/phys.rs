//! The DART's view of physical memory: PTE loads and stores, and DMA copies.
//!
//! Tables live in physical memory in the hardware format; the walker reads
//! them with atomic 64-bit loads and the mapper writes them with atomic
//! stores, so a walk racing a map or unmap sees each PTE either before or
//! after the change, never torn. Every access here goes through
//! `vm_memory`'s checked accessors: an address outside memory is `None` /
//! `false`, never undefined behaviour.

use frame_table::vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use std::sync::atomic::Ordering;

/// Loads the PTE at `pa` (`Acquire`: a valid table descriptor read here
/// makes the zero-filled table it points at visible). `None` outside memory.
#[inline]
pub(crate) fn load_pte(mem: &GuestMemoryMmap, pa: u64) -> Option<u64> {
    mem.load::<u64>(GuestAddress(pa), Ordering::Acquire).ok()
}

/// Stores the PTE at `pa` (`Release`: a table's contents, and a leaf's
/// frame accounting, are visible before the PTE that points at them).
#[inline]
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
