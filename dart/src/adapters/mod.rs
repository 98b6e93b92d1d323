//! The DART behind other crates' interfaces: vm-memory's `Iommu` for a
//! VMM's `IommuMemory` ([`iommu`]) and vfio-ioctls' `VfioOps` for a VFIO
//! container ([`vfio`], behind the default-on `vfio` feature, so that an
//! embedder without VFIO need not build vfio-ioctls). Kernel side: both
//! map and translate through the `Dart`'s public API.

pub mod iommu;
#[cfg(feature = "vfio")]
pub mod vfio;
