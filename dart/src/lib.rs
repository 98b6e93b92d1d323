//! A software Apple DART IOMMU.
#![deny(missing_docs)]

pub mod pte;
