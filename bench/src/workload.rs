//! The throughput workloads of docs/design.md §8, by name.

use std::fmt;
use std::str::FromStr;

/// One docs/design.md §8 workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Translate an 8-byte read at a uniformly random IOVA of the 1 GiB mapping.
    Translate,
    /// The same within the first 64 pages.
    TranslateHot,
    /// `Translate` while one extra thread maps and unmaps random pages of a
    /// disjoint 64 MiB IOVA window of the same stream.
    TranslateChurn,
    /// Read 4 KiB at a random 4 KiB-aligned IOVA into a buffer.
    Dma4k,
    /// The same read straight from physical memory (the in-process limit).
    Raw4k,
    /// Map then unmap one page (validated, strict invalidation) in a private window.
    MapUnmap,
    /// `Dma4k` through `vm_memory::IommuMemory` over the DART's `Iommu` adapter.
    Dma4kVmMemory,
}

impl Workload {
    /// Every workload, in docs/design.md §8's order.
    pub const ALL: [Workload; 7] = [
        Workload::Translate,
        Workload::TranslateHot,
        Workload::TranslateChurn,
        Workload::Dma4k,
        Workload::Raw4k,
        Workload::MapUnmap,
        Workload::Dma4kVmMemory,
    ];

    /// docs/design.md spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Workload::Translate => "translate",
            Workload::TranslateHot => "translate-hot",
            Workload::TranslateChurn => "translate-churn",
            Workload::Dma4k => "dma4k",
            Workload::Raw4k => "raw4k",
            Workload::MapUnmap => "mapunmap",
            Workload::Dma4kVmMemory => "dma4k-vm-memory",
        }
    }

    /// Bytes of data one operation moves (for `gib_per_s`), 0 if none.
    pub const fn bytes_per_op(self) -> u64 {
        match self {
            Workload::Dma4k | Workload::Raw4k | Workload::Dma4kVmMemory => 4096,
            _ => 0,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A workload name that is not one of docs/design.md §8's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown workload `{name}` (expected one of: translate, translate-hot, translate-churn, dma4k, raw4k, mapunmap, dma4k-vm-memory, all)")]
pub struct UnknownWorkload {
    /// What was given.
    pub name: String,
}

impl FromStr for Workload {
    type Err = UnknownWorkload;
    fn from_str(s: &str) -> Result<Workload, UnknownWorkload> {
        Workload::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| UnknownWorkload { name: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for w in Workload::ALL {
            assert_eq!(w.name().parse::<Workload>(), Ok(w));
        }
        assert_eq!("dma8k".parse::<Workload>(), Err(UnknownWorkload { name: "dma8k".into() }));
    }
}
