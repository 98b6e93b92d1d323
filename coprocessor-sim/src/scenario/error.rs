//! The one error type of scenario parsing, and the input limits it reports.

use std::fmt;
use std::path::PathBuf;

/// Why a scenario file could not be read or parsed.
///
/// Displays as `FILE:LINE: REASON`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {}", .file.display(), .line, .reason)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// 1-based line of the problem; 0 when no line applies (an I/O error,
    /// the file's size).
    pub line: usize,
    /// What is wrong, naming the key, step or value.
    pub reason: String,
    /// When a size is above its limit: which, the value and the limit (the
    /// reason says the same in words).
    pub limit: Option<LimitExceeded>,
}

/// A size a scenario names, above its documented limit (docs/design.md §4 "Input
/// limits"; the limits are the `MAX_*` constants of [`crate::scenario`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value} {what} is above the limit of {limit}")]
pub struct LimitExceeded {
    /// Which size.
    pub what: Limit,
    /// The value the file asks for.
    pub value: u64,
    /// The largest accepted.
    pub limit: u64,
}

/// The sizes a scenario file can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The file's size in bytes.
    FileBytes,
    /// `[soc] memory_mib`.
    MemoryMib,
    /// Frames of physical memory (`memory_mib` over `page_size`).
    Frames,
    /// `[[dart]]` sections.
    Darts,
    /// `[[coprocessor]]` sections.
    Coprocessors,
    /// `[[dart]] streams`: the variant's stream count (16 for t8020 and
    /// t6000, 256 for t8110).
    Streams,
    /// `[[dart]] iotlb_entries`.
    IotlbEntries,
    /// Frames of one `alloc`.
    AllocFrames,
    /// Bytes of one read or hold.
    ReadBytes,
    /// Threads of one `race`.
    RaceThreads,
    /// `iterations` of one `race`.
    Iterations,
    /// Steps in the file, race threads' steps included.
    Steps,
    /// Step executions the file asks for (races: iterations × steps).
    Work,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::FileBytes => "bytes of scenario file",
            Limit::MemoryMib => "MiB of memory",
            Limit::Frames => "frames of memory",
            Limit::Darts => "DARTs",
            Limit::Coprocessors => "coprocessors",
            Limit::Streams => "streams",
            Limit::IotlbEntries => "IOTLB entries",
            Limit::AllocFrames => "frames in one alloc",
            Limit::ReadBytes => "bytes in one read or hold",
            Limit::RaceThreads => "threads in one race",
            Limit::Iterations => "race iterations",
            Limit::Steps => "steps",
            Limit::Work => "step executions",
        })
    }
}
