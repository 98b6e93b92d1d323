//! A software Apple DART IOMMU (SPEC §3).
//!
//! A [`Dart`] sits between simulated coprocessors and a shared
//! [`frame_table::FrameTable`]. Its translation tables live in physical
//! memory, in `dart-table` frames, in the hardware PTE format of its
//! [`Variant`]; the walker reads them from there. The kernel-side mapper
//! ([`Dart::map`], [`Dart::unmap`], [`Dart::flush`]) is the only writer and
//! takes every frame's DART count, with the frame-type policy check, before
//! the PTE that points at it exists. The device side ([`Dart::dma_read`],
//! [`Dart::dma_write`], [`Dart::translate`]) takes no lock. Drivers program
//! it through its MMIO register file ([`Dart::mmio_read`],
//! [`Dart::mmio_write`]; layouts and model in [`regs`]), which reads and
//! writes the same stream state as the high-level API.
#![deny(missing_docs)]

mod barrier;
mod dart;
mod error;
pub mod events;
pub mod fault;
pub mod hold;
pub mod inflight;
pub mod iommu;
pub mod iotlb;
#[cfg(all(test, loom))]
mod loom_models;
mod mapper;
mod phys;
pub mod port;
pub mod pte;
pub mod regs;
mod slot;
pub mod stats;
mod stream;
mod sync;
mod tlb_value;
pub mod trace_event;
pub mod variant;
pub mod vfio;
mod walk;
mod walk_cache;

pub use dart::{Dart, DartConfig, Dir, InterruptFn, Invalidation, Span, Translation};
pub use error::DartError;
pub use events::{Event, EventKind, EventLog, WatchRange};
pub use fault::{ErrorLatch, Fault, FaultKind};
/// The vm-memory this crate is built on (0.18), so embedders import one version.
pub use frame_table::vm_memory;
pub use hold::SliceHold;
pub use iommu::{stream_memory, StreamIommu, StreamMemory};
pub use port::{PortMemory, PortSlices, StreamPort};
pub use regs::{decode_access, DecodedAccess, MmioAccess, MmioCounts, MmioDir, MmioError, MmioObserver, MmioOutcome};
pub use stream::StreamConfig;
pub use variant::{Geometry, Variant};
pub use vfio::{DartVfioDomain, VfioDomainError};
