//! The DMA throughput workloads of docs/design.md §8, the vm-memory baseline they are
//! compared with, and the runner behind `dartemu bench`.
//!
//! - [`system`]: the fixed system every workload runs on (1 GiB mapped in
//!   16 KiB pages to shuffled physical pages, touched before timing).
//! - [`workload`]: the workloads by name.
//! - [`baseline`]: what a user would pick instead: vm-memory's `IommuMemory`
//!   over a `RwLock`ed, fully populated vm-memory `Iotlb`.
//! - [`mod@run`]: threads, timing and the figures (docs/design.md §8's JSON fields).
//! - [`buffer`]: the page-aligned buffer every reading workload copies into.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod baseline;
pub mod buffer;
pub mod run;
pub mod system;
pub mod workload;

pub use buffer::{ReadBuffer, READ_BUFFER_BYTES};
pub use run::{
    run, uniform, BenchOptions, Figure, HarnessRng, Implementation, PairedRatio, Progress, DEFAULT_IOTLB_ENTRIES,
    MAX_ROUNDS,
};
pub use system::{BenchError, BenchSystem};
pub use workload::{UnknownWorkload, Workload};
