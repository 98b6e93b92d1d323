//! The buffer a reading workload copies into.
//!
//! Where a copy's destination lies changes what the copy costs. On the
//! development VM a 4 KiB read from a page-aligned source took 4–17%
//! longer (25–115 ns, in two sets of runs) into a destination 16 to 48
//! bytes past a page boundary than into a page-aligned one; at 64, 208,
//! 256, 736, 2048, 3232, 4000 or 4080 bytes past it, no longer (`OFF=16
//! target/release/examples/dma_probe raw4k raw-off`; likely the copy's loads falsely
//! waiting on its own stores, whose addresses agree in their low 12
//! bits). Worker threads' 4 KiB `Vec`s landed 208, 3232, 3280 and 3328
//! bytes past a page in one check, outside that band; but where they land
//! depends on the allocator's history, and each measurement's worker
//! threads allocate their own, so `dma4k` and `raw4k` (or dartemu and the
//! baseline) could copy into differently placed buffers. Every reading
//! workload, of every implementation, copies into a [`ReadBuffer`]
//! instead: page-aligned, as a DMA buffer is, the same for every figure.

/// Bytes in a [`ReadBuffer`]: the largest read of any workload.
pub const READ_BUFFER_BYTES: usize = 4096;

/// A page-aligned buffer of [`READ_BUFFER_BYTES`] bytes, zeroed, on the
/// heap (so that moving it moves a pointer).
#[derive(Debug)]
pub struct ReadBuffer(Box<Page>);

#[repr(C, align(4096))]
#[derive(Debug)]
struct Page([u8; READ_BUFFER_BYTES]);

impl ReadBuffer {
    /// A zeroed buffer.
    pub fn new() -> ReadBuffer {
        ReadBuffer(Box::new(Page([0; READ_BUFFER_BYTES])))
    }

    /// Its first `len` bytes, starting at the page-aligned first byte;
    /// `None` if `len` is more than [`READ_BUFFER_BYTES`].
    pub fn first(&mut self, len: usize) -> Option<&mut [u8]> {
        self.0 .0.get_mut(..len)
    }
}

impl Default for ReadBuffer {
    fn default() -> ReadBuffer {
        ReadBuffer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_buffer_is_page_aligned_zeroed_and_refuses_longer_reads() {
        let mut b = ReadBuffer::new();
        let whole = b.first(4096).unwrap();
        assert_eq!(whole.as_ptr() as usize % 4096, 0);
        assert!(whole.iter().all(|&x| x == 0));
        assert_eq!(b.first(64).map(|s| s.len()), Some(64));
        assert_eq!(b.first(0).map(|s| s.len()), Some(0));
        assert!(b.first(4097).is_none(), "a longer read does not fit");
        // Another buffer: aligned too, wherever the allocator put it.
        let mut c = ReadBuffer::default();
        assert_eq!(c.first(8).map(|s| s.as_ptr() as usize % 4096), Some(0));
    }
}
