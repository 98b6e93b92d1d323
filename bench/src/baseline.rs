//! The baseline a user would pick instead of dartemu: vm-memory's own
//! `IommuMemory` over an [`Iommu`] that keeps a vm-memory [`Iotlb`] behind a
//! `std::sync::RwLock`, fully populated with the same mappings as the
//! dartemu system (so it never misses), with no frame-type checks at all.

use crate::system::{BenchSystem, PAGE};
use frame_table::vm_memory::{GuestAddress, GuestMemoryMmap};
use std::sync::RwLock;
use vm_memory::iommu::{Error, Iommu, Iotlb, IotlbIterator};
use vm_memory::{IommuMemory, Permissions};

/// An [`Iommu`] that is nothing but a locked, fully populated [`Iotlb`].
#[derive(Debug, Default)]
pub struct LockedIotlb {
    /// The mappings; readers take the read lock, map/unmap the write lock.
    pub iotlb: RwLock<Iotlb>,
}

impl Iommu for LockedIotlb {
    type IotlbGuard<'a> = std::sync::RwLockReadGuard<'a, Iotlb>;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Self::IotlbGuard<'_>>, Error> {
        let guard = self.iotlb.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Iotlb::lookup(guard, iova, length, access).map_err(|_| Error::CannotResolve {
            iova_range: vm_memory::iommu::IovaRange { base: iova, length },
            reason: "not mapped".into(),
        })
    }
}

impl LockedIotlb {
    /// Maps one page (write lock).
    pub fn map_page(&self, iova: u64, pa: u64) -> Result<(), Error> {
        let mut t = self.iotlb.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        t.set_mapping(GuestAddress(iova), GuestAddress(pa), PAGE as usize, Permissions::ReadWrite)
    }

    /// Unmaps one page (write lock).
    pub fn unmap_page(&self, iova: u64) {
        let mut t = self.iotlb.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        t.invalidate_mapping(GuestAddress(iova), PAGE as usize);
    }
}

/// The baseline memory a device would use: vm-memory's `IommuMemory`.
pub type BaselineMemory = IommuMemory<GuestMemoryMmap, LockedIotlb>;

/// Builds the baseline over `sys`'s physical memory with every page of the
/// mapped gigabyte mapped as in `sys`.
pub fn baseline_memory(sys: &BenchSystem) -> Result<BaselineMemory, Error> {
    let iommu = LockedIotlb::default();
    for (i, &pa) in sys.pas.iter().enumerate() {
        iommu.map_page(i as u64 * PAGE, pa)?;
    }
    Ok(IommuMemory::new(sys.frames.memory().clone(), iommu, true, ()))
}
