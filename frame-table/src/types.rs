//! Frame types: the SPTM-style classification of every physical frame.

use std::fmt;
use std::str::FromStr;

/// The type of a physical frame. Its policy (where it may be mapped) is the
/// row of [`crate::policy::POLICY`] at `self as usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FrameType {
    /// On the free list; mapped nowhere. Leaves `free` only zero-filled (R5).
    Free = 0,
    /// `XNU_KERNEL_RESTRICTED`: at most one kernel mapping, never user, never DART.
    KernelRestricted = 1,
    /// Shared data heap: mappable by kernel, user and DART.
    KernelShared = 2,
    /// Compressor memory: kernel and DART (swap I/O), never user.
    Compressor = 3,
    /// User data: kernel, user and DART.
    UserData = 4,
    /// Read-only allocator: kernel read-only mappings, aperture reads only.
    ReadOnly = 5,
    /// CPU page tables: mapped nowhere, aperture cannot touch them.
    PageTable = 6,
    /// DART translation tables: mapped nowhere, written only by the DART's mapper.
    DartTable = 7,
    /// Device registers: mapped nowhere here.
    Mmio = 8,
    /// Carve-outs and firmware: mapped nowhere.
    Reserved = 9,
}

impl FrameType {
    /// Every frame type, in encoding order.
    pub const ALL: [FrameType; 10] = [
        FrameType::Free,
        FrameType::KernelRestricted,
        FrameType::KernelShared,
        FrameType::Compressor,
        FrameType::UserData,
        FrameType::ReadOnly,
        FrameType::PageTable,
        FrameType::DartTable,
        FrameType::Mmio,
        FrameType::Reserved,
    ];

    /// The name used in scenario files and reports (`kernel-restricted`, …).
    pub const fn name(self) -> &'static str {
        match self {
            FrameType::Free => "free",
            FrameType::KernelRestricted => "kernel-restricted",
            FrameType::KernelShared => "kernel-shared",
            FrameType::Compressor => "compressor",
            FrameType::UserData => "user-data",
            FrameType::ReadOnly => "read-only",
            FrameType::PageTable => "page-table",
            FrameType::DartTable => "dart-table",
            FrameType::Mmio => "mmio",
            FrameType::Reserved => "reserved",
        }
    }

    /// Decodes the 4-bit type field of a frame state word. `None` for the
    /// codes no type uses.
    pub const fn from_code(code: u8) -> Option<FrameType> {
        if (code as usize) < FrameType::ALL.len() {
            Some(FrameType::ALL[code as usize])
        } else {
            None
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The number of a physical frame: its index in the frame table, counted in
/// frames from the table's base address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame(pub u32);

impl Frame {
    /// The index as a `usize`, for slices.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame {}", self.0)
    }
}

/// A frame type name that is not one of [`FrameType::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown frame type `{0}` (expected one of free, kernel-restricted, kernel-shared, compressor, user-data, read-only, page-table, dart-table, mmio, reserved)")]
pub struct UnknownFrameType(pub String);

impl FromStr for FrameType {
    type Err = UnknownFrameType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FrameType::ALL.iter().copied().find(|t| t.name() == s).ok_or_else(|| UnknownFrameType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_codes_match_order() {
        for (i, t) in FrameType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
            assert_eq!(FrameType::from_code(i as u8), Some(*t));
            assert_eq!(t.name().parse::<FrameType>(), Ok(*t));
        }
        assert_eq!(FrameType::from_code(10), None);
        assert_eq!(FrameType::from_code(15), None);
        assert_eq!("kernel_restricted".parse::<FrameType>(), Err(UnknownFrameType("kernel_restricted".into())));
    }
}
