//! The system every docs/design.md §8 workload runs on, built the same way each time
//! so that figures compare across tools and runs.
//!
//! - 1 GiB of mapped memory in 16 KiB frames: every IOVA page of
//!   `[0, 1 GiB)` of stream [`STREAM`] is mapped read-write to a shuffled
//!   physical page, no two IOVA neighbours physically contiguous (so no
//!   translation can be served by merging neighbours).
//! - Beyond it, a 64 MiB churn window `[1 GiB, 1 GiB + 64 MiB)` (mapped and
//!   unmapped by the churn writer of `translate-churn`) and the `mapunmap`
//!   window: one private page per thread, plus one anchor page kept mapped
//!   so that the leaf table stays (unmapping the last page of a leaf table
//!   frees it; the workload measures map and unmap, not table allocation).
//! - Physical memory is 1 GiB + 96 MiB: the mapped gigabyte, the churn
//!   window's frames, the mapunmap frames and the table frames.
//! - Every 4 KiB host page of the mapped gigabyte is written before timing.

use dart::{Dart, DartConfig, DartError, StreamConfig, Variant};
use frame_table::vm_memory::{Bytes, GuestAddress};
use frame_table::{Frame, FrameTable, FrameTableConfig, FrameType, Perm};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// Page (= frame) size: 16 KiB.
pub const PAGE: u64 = 16 << 10;
/// Bytes of the fully mapped IOVA range `[0, MAPPED)`.
pub const MAPPED: u64 = 1 << 30;
/// Pages in the mapped range.
pub const PAGES: u64 = MAPPED / PAGE;
/// Pages of `translate-hot`.
pub const HOT_PAGES: u64 = 64;
/// First IOVA of the churn window.
pub const CHURN_BASE: u64 = MAPPED;
/// Bytes of the churn window.
pub const CHURN_BYTES: u64 = 64 << 20;
/// First IOVA of the `mapunmap` window (its anchor page).
pub const MAPUNMAP_BASE: u64 = CHURN_BASE + CHURN_BYTES;
/// Most threads a system is built for (mapunmap pages).
pub const MAX_THREADS: usize = 64;
/// The stream every workload uses.
pub const STREAM: u32 = 1;
/// Physical memory: the mapped gigabyte plus 96 MiB.
pub const MEMORY: u64 = MAPPED + (96 << 20);

/// What went wrong building the system or running a workload.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The frame table could not be built.
    #[error("frame table: {0}")]
    Config(#[from] frame_table::ConfigError),
    /// A frame-table operation failed.
    #[error("frame table: {0}")]
    Frames(#[from] frame_table::Error),
    /// A DART operation failed (during setup, or a workload operation that
    /// must succeed, with the IOVA).
    #[error("DART: {0}")]
    Dart(#[from] DartError),
    /// The vm-memory baseline failed.
    #[error("vm-memory at IOVA {iova:#x}: {reason}")]
    Baseline {
        /// Where.
        iova: u64,
        /// What vm-memory said.
        reason: String,
    },
    /// A bad option.
    #[error("{0}")]
    Options(String),
}

/// The docs/design.md §8 system: a frame table, a DART with stream [`STREAM`] mapped
/// as described in the module documentation, and the frames of each window.
pub struct BenchSystem {
    /// The frame table (physical memory).
    pub frames: Arc<FrameTable>,
    /// The DART.
    pub dart: Arc<Dart>,
    /// Physical address of IOVA page `i` of the mapped gigabyte.
    pub pas: Vec<u64>,
    /// Frames of the churn window, one per IOVA page of it.
    pub churn_frames: Vec<Frame>,
    /// One private frame per thread for `mapunmap`.
    pub mapunmap_frames: Vec<Frame>,
}

impl std::fmt::Debug for BenchSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchSystem").field("dart", &self.dart).field("pages", &self.pas.len()).finish()
    }
}

/// Shuffles `frames` so that no two neighbours are physically adjacent
/// (`pa(i + 1) != pa(i) + PAGE`), deterministically from `seed`.
fn shuffle_apart(frames: &mut [Frame], seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    frames.shuffle(&mut rng);
    let n = frames.len();
    let adjacent = |f: &[Frame], i: usize| f[i + 1].0 == f[i].0.wrapping_add(1);
    for i in 0..n.saturating_sub(1) {
        while adjacent(frames, i) {
            let j = rng.gen_range(0..n);
            frames.swap(i + 1, j);
            // A swap may have made j's neighbours adjacent: those before i
            // are re-checked by the final pass below.
        }
    }
    // Repair any adjacency the swaps created behind the cursor.
    let mut again = true;
    while again {
        again = false;
        for i in 0..n.saturating_sub(1) {
            if adjacent(frames, i) {
                let j = rng.gen_range(0..n);
                frames.swap(i + 1, j);
                again = true;
            }
        }
    }
}

impl BenchSystem {
    /// Builds the system on a `variant` DART with `iotlb_entries` IOTLB
    /// entries (the default SoC's 256 unless measuring the IOTLB).
    pub fn new(variant: Variant, iotlb_entries: usize) -> Result<BenchSystem, BenchError> {
        let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(MEMORY))?);
        let mut cfg = DartConfig::new("bench", variant);
        cfg.iotlb_entries = iotlb_entries;
        let dart = Arc::new(Dart::new(frames.clone(), cfg)?);
        dart.set_stream_config(STREAM, StreamConfig::TRANSLATING)?;

        let mut data = frames.alloc(FrameType::UserData, PAGES)?;
        shuffle_apart(&mut data, 0x5eed);
        let pas = data.iter().map(|&f| frames.pa_of(f)).collect::<Result<Vec<_>, _>>()?;
        // Map in runs of one leaf table's worth: the mapper takes each
        // frame's count with its policy check, as for any map.
        for (i, chunk) in data.chunks(2048).enumerate() {
            dart.map(STREAM, i as u64 * 2048 * PAGE, chunk, Perm::RW, None)?;
        }
        let churn_frames = frames.alloc(FrameType::UserData, CHURN_BYTES / PAGE)?;
        let anchor = frames.alloc(FrameType::UserData, 1)?;
        dart.map(STREAM, MAPUNMAP_BASE, &anchor, Perm::RW, None)?;
        let mapunmap_frames = frames.alloc(FrameType::UserData, MAX_THREADS as u64)?;

        // Touch every 4 KiB host page of the mapped gigabyte.
        let mem = frames.memory();
        for &pa in &pas {
            for off in (0..PAGE).step_by(4096) {
                mem.write_obj(pa ^ off, GuestAddress(pa + off))
                    .map_err(|e| BenchError::Baseline { iova: pa + off, reason: e.to_string() })?;
            }
        }
        Ok(BenchSystem { frames, dart, pas, churn_frames, mapunmap_frames })
    }

    /// `raw4k`'s read: `buf.len()` bytes at the physical address the mapped
    /// gigabyte's IOVA `iova` maps to, straight from physical memory, with
    /// no DART. An IOVA outside the gigabyte, or a read past memory, is an
    /// error naming the IOVA.
    #[inline]
    pub fn raw_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), BenchError> {
        let outside = || BenchError::Baseline { iova, reason: "not in the mapped gigabyte".into() };
        let pa = self.pas.get((iova / PAGE) as usize).ok_or_else(outside)? + iova % PAGE;
        self.frames
            .memory()
            .read_slice(buf, GuestAddress(pa))
            .map_err(|e| BenchError::Baseline { iova, reason: e.to_string() })
    }

    /// IOVA of thread `t`'s private `mapunmap` page.
    pub fn mapunmap_iova(t: usize) -> u64 {
        MAPUNMAP_BASE + (1 + t as u64) * PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `raw4k`'s read returns what a DMA through the DART reads at the same
    /// IOVA, and refuses an IOVA past the mapped gigabyte, changing nothing.
    #[test]
    fn a_raw_read_reads_what_the_dart_maps_there() {
        let sys = BenchSystem::new(Variant::T8110, 256).unwrap();
        let (mut raw, mut dma) = ([0u8; 64], [0u8; 64]);
        for iova in [0, 3 * PAGE + 4096, MAPPED - 64] {
            sys.raw_read(iova, &mut raw).unwrap();
            sys.dart.dma_read(STREAM, iova, &mut dma).unwrap();
            assert_eq!(raw, dma, "at {iova:#x}");
        }
        // Each 4 KiB host page begins with its own address, so the reads
        // above compared different, non-zero bytes.
        sys.raw_read(4096, &mut raw).unwrap();
        assert_eq!(u64::from_le_bytes(raw[..8].try_into().unwrap()), sys.pas[0] + 4096);
        let before = raw;
        match sys.raw_read(MAPPED, &mut raw) {
            Err(BenchError::Baseline { iova, reason }) => {
                assert_eq!((iova, reason.as_str()), (MAPPED, "not in the mapped gigabyte"))
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(raw, before, "nothing read");
    }

    #[test]
    fn shuffle_leaves_no_neighbours_adjacent_and_keeps_every_frame() {
        let mut f: Vec<Frame> = (0..4096).map(Frame).collect();
        shuffle_apart(&mut f, 7);
        assert!(f.windows(2).all(|w| w[1].0 != w[0].0 + 1));
        let mut sorted = f.clone();
        sorted.sort();
        assert_eq!(sorted, (0..4096).map(Frame).collect::<Vec<_>>());
    }
}
