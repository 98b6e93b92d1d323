//! Physical memory and SPTM-style frame types for dartemu.
//!
//! Every physical frame has a [`FrameType`] whose row in the policy matrix
//! ([`policy::POLICY`]) says where it may be mapped: by CPU kernel or user
//! mappings, by a DART, or touched by the kernel's physical aperture. The
//! [`FrameTable`] keeps each frame's type and mapping counts in one atomic word
//! and changes it only by compare-and-swap, so that "check the policy and take
//! the count" and "retype only at zero counts" are single atomic steps (docs/design.md §2).
//!
//! ```
//! use frame_table::{Access, Error, FrameTable, FrameTableConfig, FrameType, Perm};
//!
//! let table = FrameTable::new(FrameTableConfig::with_memory(1 << 20)).unwrap();
//! let secret = table.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
//! let err = table.acquire(secret, Access::Dart, Perm::R).unwrap_err();
//! assert!(matches!(err, Error::ForbiddenType { .. }));
//! assert_eq!(err.kind(), "forbidden-type");
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cell;
mod error;
mod memory;
pub mod observer;
pub mod policy;
pub mod reach;
mod state;
mod sync;
mod table;
mod types;

pub use error::{Error, Violation};
pub use memory::{ConfigError, FrameSize, Region, DEFAULT_DRAM_BASE, MAX_FRAMES};
pub use observer::{FrameEvent, FrameObserver};
pub use policy::{Access, Perm};
pub use state::{Counter, Counts, FrameState};
pub use table::{FramePin, FrameTable, FrameTableConfig, OnViolation};
pub use types::{Frame, FrameType, UnknownFrameType};
pub use vm_memory;
