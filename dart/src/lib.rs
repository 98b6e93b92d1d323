//! A software Apple DART IOMMU.
//!
//! A [`Dart`] sits between simulated coprocessors and a shared
//! [`frame_table::FrameTable`]. Its translation tables live in physical
//! memory, in `dart-table` frames, in the hardware PTE format of its
//! [`Variant`]; the walker reads them from there. Its API reads as four
//! small ones (one `impl` block each in these docs):
//!
//! - **Device side**: a device holds a [`StreamPort`] (from [`Dart::port`]):
//!   DMA read and write, translation, and a vm-memory view
//!   ([`PortMemory`]) whose slices hold their frames ([`hold`]). Lock-free.
//!   Nothing reachable from a port leads back to the `Dart`, the frame
//!   table or physical memory.
//! - **Kernel side**: the validated mapper ([`Dart::map`], [`Dart::unmap`],
//!   [`Dart::flush`]) is the only writer of the tables and takes every
//!   frame's DART count, with the frame-type policy check, before the PTE
//!   that points at it exists. [`Dart::map_owned`] and
//!   [`Dart::unmap_owned`] let a mapping service decide ownership from what
//!   the tables hold now ([`MapId`]). The vm-memory [`iommu`] adapter (a VMM's
//!   `IommuMemory`) and the [`vfio`] adapter are kernel-side too.
//! - **Registers**: drivers program it through its MMIO register file
//!   ([`Dart::mmio_read`], [`Dart::mmio_write`]; layouts and model in
//!   [`regs`]), which reads and writes the same stream state as the typed
//!   calls ([`Dart::set_ttbr`], [`Dart::set_stream_config`], …); once the
//!   DART is locked, both refuse TCR/TTBR changes ([`DartError::Locked`]).
//! - **Inspection**: counters ([`stats`] snapshots), the IOTLB's live
//!   entries, mappings, DART counts, events and the invariant checks;
//!   read-only.
//!
//! # Layout
//!
//! Modules depend only on the ones listed before them (no import cycle):
//!
//! 1. leaves, vocabulary only: `types` ([`Dir`], [`Span`], [`StreamConfig`],
//!    IOVA regions), [`variant`], [`fault`], `error`;
//! 2. `hw`: the hardware's formats, encode and decode only ([`pte`], [`regs`]);
//! 3. `sync`: the concurrency protocol (atomics, slots, the in-flight
//!    tracker, the membarrier barrier);
//! 4. `observe`: counters, events, trace export ([`stats`], [`events`],
//!    [`trace_event`]); [`hold`]: slice holds;
//! 5. `translate`: the device side, the only reader of the tables (streams,
//!    IOTLB, walk, walk cache, physical loads);
//! 6. `mapper`: the kernel side, the only writer (map, unmap, flush, tables,
//!    invalidation, provenance), writing through the device side's streams;
//! 7. `dart`: [`Dart`], those components composed, and its fault raising and
//!    register file; [`port`] and the adapters ([`iommu`], `vfio`) on top.
//!
//! The IOTLB, the in-flight tracker, the walk cache and the counters'
//! mutators are private: no public path plants a translation or forges a
//! count. These do not compile:
//!
//! ```compile_fail,E0599
//! // No IOTLB handle: a translation cannot be planted.
//! fn plant(dart: &dart::Dart) {
//!     dart.iotlb().insert(1, 0x4, 0, 0);
//! }
//! ```
//! ```compile_fail,E0603
//! // The IOTLB module is private.
//! use dart::translate::iotlb::Iotlb;
//! ```
//! ```compile_fail,E0624
//! // Counters are read through snapshots; only the DART counts.
//! fn forge(dart: &dart::Dart) {
//!     dart.stats().add(Some(1), dart::stats::Counter::Translations, 1);
//! }
//! ```
#![deny(missing_docs)]

mod adapters;
mod dart;
mod error;
pub mod fault;
pub mod hold;
mod hw;
pub use adapters::iommu;
#[cfg(feature = "vfio")]
pub use adapters::vfio;
mod observe;
pub use observe::{events, stats, trace_event};
#[cfg(all(test, loom))]
mod loom_models;
mod mapper;
pub mod port;
pub use hw::{pte, regs};
mod sync;
#[cfg(feature = "test-utils")]
pub mod testing;
mod translate;
mod types;
pub mod variant;

pub use dart::{Dart, DartConfig, InterruptFn, Translation};
pub use error::{DartError, LockedRegister};
pub use events::{Event, EventKind, EventLog, WatchRange};
pub use fault::{ErrorLatch, Fault, FaultKind};
/// The vm-memory this crate is built on (0.18), so embedders import one version.
pub use frame_table::vm_memory;
pub use hold::SliceHold;
pub use iommu::{stream_memory, StreamIommu, StreamMemory};
pub use mapper::{MapId, OwnedScope};
pub use port::{PortMemory, PortSlices, StreamPort};
pub use regs::{decode_access, DecodedAccess, MmioAccess, MmioCounts, MmioDir, MmioError, MmioObserver, MmioOutcome};
pub use types::{Dir, Invalidation, Span, StreamConfig};
pub use variant::{Geometry, Variant};
#[cfg(feature = "vfio")]
pub use vfio::{DartVfioDomain, VfioDomainError};
