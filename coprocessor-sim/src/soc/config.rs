//! What a SoC is built from ([`super::Soc::new`]): the `[soc]`,
//! `[[dart]]` and `[[coprocessor]]` sections of a scenario file (docs/design.md §6),
//! with their defaults. The scenario parser fills these in and
//! [`crate::scenario`] re-exports them.

use dart::{Invalidation, Variant as DartVariant};
use frame_table::{FrameSize, OnViolation};
use std::ops::Range;

/// Name of the DART made when a scenario has no `[[dart]]` section.
pub const DEFAULT_DART_NAME: &str = "dart0";
/// Name of the coprocessor made when a scenario has no `[[coprocessor]]` section.
pub const DEFAULT_DEVICE_NAME: &str = "dev0";
/// Stream of the default coprocessor.
pub const DEFAULT_DEVICE_STREAM: u32 = 1;
/// Default `[soc] memory_mib`.
pub const DEFAULT_MEMORY_MIB: u64 = 64;
/// Default `[[dart]] streams`.
pub const DEFAULT_STREAMS: u32 = 16;
/// Default `[[dart]] iotlb_entries`.
pub const DEFAULT_IOTLB_ENTRIES: u64 = 256;

/// Default coprocessor IOVA window, `[start, end)`.
pub const DEFAULT_WINDOW: Range<u64> = 0..0x1_0000_0000;

/// `[soc]`: SoC-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocConfig {
    /// `memory_mib`: physical memory in MiB (default 64).
    pub memory_mib: u64,
    /// `page_size`: frame and DART page size, 16384 (default) or 4096.
    pub page_size: FrameSize,
    /// `on_violation`: `panic` (default) or `reject`.
    pub on_violation: OnViolation,
    /// Line of the `[soc]` header; 0 when the section is absent.
    pub line: usize,
}

impl SocConfig {
    /// Physical memory in bytes.
    pub const fn memory_bytes(&self) -> u64 {
        self.memory_mib << 20
    }
}

impl Default for SocConfig {
    fn default() -> Self {
        SocConfig {
            memory_mib: DEFAULT_MEMORY_MIB,
            page_size: FrameSize::K16,
            on_violation: OnViolation::Panic,
            line: 0,
        }
    }
}

/// `[[dart]]`: one DART instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DartConfig {
    /// `name` (required).
    pub name: String,
    /// `variant` (default t8110).
    pub variant: DartVariant,
    /// `streams`: 1..=16 (t8020, t6000) or 1..=256 (t8110); default 16.
    pub streams: u32,
    /// `invalidation` (default strict).
    pub invalidation: Invalidation,
    /// `iotlb_entries` (default 256; 1..=[`crate::scenario::MAX_IOTLB_ENTRIES`]).
    pub iotlb_entries: u64,
    /// Line of its `[[dart]]` header; 0 for the default DART.
    pub line: usize,
}

impl DartConfig {
    /// The DART made when a scenario has none: `dart0`, t8110, 16 streams.
    pub fn default_dart() -> DartConfig {
        DartConfig {
            name: DEFAULT_DART_NAME.to_owned(),
            variant: DartVariant::T8110,
            streams: DEFAULT_STREAMS,
            invalidation: Invalidation::Strict,
            iotlb_entries: DEFAULT_IOTLB_ENTRIES,
            line: 0,
        }
    }
}

/// `[[coprocessor]]`: one device behind a DART stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoprocessorConfig {
    /// `name` (required).
    pub name: String,
    /// `dart`: the name of its DART (required; checked to exist).
    pub dart: String,
    /// `stream`: its SID on that DART (required; below the DART's `streams`).
    pub stream: u32,
    /// `trusted` (default false): only trusted streams may bypass.
    pub trusted: bool,
    /// `window`: IOVA window for RPC maps, `[start, end)`; default
    /// [`DEFAULT_WINDOW`]; `start < end`.
    pub window: Range<u64>,
    /// Line of its `[[coprocessor]]` header; 0 for the default coprocessor.
    pub line: usize,
}
