//! A software Apple DART IOMMU.
#![deny(missing_docs)]

pub mod iotlb;
pub mod pte;
pub mod stats;
#[allow(unused_imports)]
mod sync;
