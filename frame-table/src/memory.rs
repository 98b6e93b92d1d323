//! Physical memory: the regions of a SoC's DRAM as a `vm_memory::GuestMemoryMmap`.

use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Where SoC DRAM starts by default (Apple SoCs map DRAM at 0x8_0000_0000).
pub const DEFAULT_DRAM_BASE: u64 = 0x8_0000_0000;

/// The frame size, equal to the DART page size (SoC-wide).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameSize {
    /// 4 KiB frames.
    K4,
    /// 16 KiB frames (the default, as on Apple SoCs).
    K16,
}

impl FrameSize {
    /// log2 of the frame size.
    pub const fn shift(self) -> u32 {
        match self {
            FrameSize::K4 => 12,
            FrameSize::K16 => 14,
        }
    }
    /// The frame size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }
    /// The frame size for a byte count, if it is 4096 or 16384.
    pub const fn from_bytes(bytes: u64) -> Option<FrameSize> {
        match bytes {
            4096 => Some(FrameSize::K4),
            16384 => Some(FrameSize::K16),
            _ => None,
        }
    }
}

/// One region of physical memory: `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First physical address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Errors building physical memory.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No regions, or a region of zero size.
    #[error("physical memory needs at least one region of non-zero size")]
    Empty,
    /// A region whose base or size is not a multiple of the frame size.
    #[error("region {base:#x}+{size:#x} is not aligned to the {frame_size}-byte frame size")]
    Unaligned {
        /// Region base.
        base: u64,
        /// Region size.
        size: u64,
        /// Frame size.
        frame_size: u64,
    },
    /// Regions that overlap, or one that runs past the 64-bit address space.
    #[error("region {base:#x}+{size:#x} overlaps another region or overflows")]
    Overlap {
        /// Region base.
        base: u64,
        /// Region size.
        size: u64,
    },
    /// More frames than a `u32` frame number can name.
    #[error("the regions span {frames} frames, more than {max}")]
    TooLarge {
        /// Frames spanned.
        frames: u64,
        /// The most supported.
        max: u64,
    },
    /// The host refused the memory mapping.
    #[error("cannot map {bytes} bytes of physical memory: {source}")]
    Mmap {
        /// Bytes asked for.
        bytes: u64,
        /// The host's error.
        source: vm_memory::mmap::FromRangesError,
    },
}

/// Most frames a table can hold (frame numbers are `u32`; 64 GiB of 16 KiB
/// frames is 4 Mi, well inside it).
pub const MAX_FRAMES: u64 = 1 << 28;

/// Validates `regions` for `frame_size` and returns them sorted by base.
pub(crate) fn check_regions(regions: &[Region], frame_size: FrameSize) -> Result<Vec<Region>, ConfigError> {
    if regions.is_empty() || regions.iter().any(|r| r.size == 0) {
        return Err(ConfigError::Empty);
    }
    let fs = frame_size.bytes();
    let mut sorted = regions.to_vec();
    sorted.sort_by_key(|r| r.base);
    let mut end_prev = 0u64;
    for (i, r) in sorted.iter().enumerate() {
        if r.base % fs != 0 || r.size % fs != 0 {
            return Err(ConfigError::Unaligned { base: r.base, size: r.size, frame_size: fs });
        }
        let Some(end) = r.base.checked_add(r.size) else {
            return Err(ConfigError::Overlap { base: r.base, size: r.size });
        };
        if i > 0 && r.base < end_prev {
            return Err(ConfigError::Overlap { base: r.base, size: r.size });
        }
        end_prev = end;
    }
    let frames = (end_prev - sorted[0].base) / fs;
    if frames > MAX_FRAMES {
        return Err(ConfigError::TooLarge { frames, max: MAX_FRAMES });
    }
    Ok(sorted)
}

/// Maps the regions as anonymous host memory.
pub(crate) fn map_regions(regions: &[Region]) -> Result<GuestMemoryMmap, ConfigError> {
    let bytes = regions.iter().map(|r| r.size).sum();
    let mut ranges = Vec::with_capacity(regions.len());
    for r in regions {
        let size = usize::try_from(r.size).map_err(|_| ConfigError::TooLarge { frames: r.size, max: MAX_FRAMES })?;
        ranges.push((GuestAddress(r.base), size));
    }
    GuestMemoryMmap::from_ranges(&ranges).map_err(|source| ConfigError::Mmap { bytes, source })
}
