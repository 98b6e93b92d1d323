//! The vfio adapter, **kernel side**: a DMA domain backed by one DART
//! stream, as a [`vfio_ioctls::VfioOps`], so that a VMM holding an
//! `Arc<dyn VfioOps>` maps and unmaps through the emulated DART as it would
//! through a VFIO container. The device behind the domain DMAs through its
//! [`crate::StreamPort`].
//!
//! `vfio_dma_map(iova, size, user_addr)` takes a host virtual address inside
//! the emulator's physical memory (the frame table's `GuestMemoryMmap`, as a
//! VMM would pass the host address of guest RAM), resolves it to frames and
//! maps them read-write through the validated mapper path ([`Dart::map`]:
//! each frame's DART count is taken with the frame-type policy check before
//! its PTE exists). `vfio_dma_unmap(iova, size)` unmaps with [`Dart::unmap`]
//! (strict mode: invalidated and drained before it returns).
//!
//! Like VFIO type1, the domain remembers its mappings and an unmap must
//! cover whole mappings exactly, with no gap (vfio-ioctls' own container
//! refuses an unmap that removes fewer bytes than asked with
//! `InvalidDmaUnmapSize`; here the request is refused, with the same
//! variant, before anything changes). Every refusal changes nothing.
//!
//! `VfioError`'s map/unmap variants carry only an errno, so the trait
//! methods report `IommuDmaMap`/`IommuDmaUnmap` with the errno of
//! [`VfioDomainError::errno`] (an unmap that is not made of whole mappings
//! is `InvalidDmaUnmapSize`, as above), and keep the typed error, with every offending
//! value and the DART's own error, for [`DartVfioDomain::last_error`]. The
//! inherent [`DartVfioDomain::dma_map`] / [`DartVfioDomain::dma_unmap`]
//! return it directly.
//!
//! Locking: map and unmap of one domain serialize on its record (a
//! `parking_lot` mutex, a slow path); the DART's mapper lock is taken inside.
//! The DMA path never takes either.

use crate::dart::Dart;
use crate::error::DartError;
use frame_table::vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
use frame_table::{Frame, Perm};
use parking_lot::Mutex;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use vfio_ioctls::{VfioError, VfioOps};
use vmm_sys_util::errno::Error as SysError;

/// Why a DMA map or unmap of a [`DartVfioDomain`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VfioDomainError {
    /// Zero size, a size, IOVA or host address not page aligned, or a range
    /// that overflows.
    #[error("DMA {op} of {size:#x} bytes at IOVA {iova:#x} (host {user_addr:#x}): {reason}")]
    BadRequest {
        /// `map` or `unmap`.
        op: &'static str,
        /// IOVA asked for.
        iova: u64,
        /// Size asked for.
        size: u64,
        /// Host address asked for (0 for an unmap).
        user_addr: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The host range is not inside one region of the emulator's physical memory.
    #[error("host range {user_addr:#x}+{size:#x} is not inside the emulator's physical memory")]
    NotInMemory {
        /// Host address asked for.
        user_addr: u64,
        /// Size asked for.
        size: u64,
    },
    /// An unmap that does not cover whole mappings of this domain, without gaps.
    #[error("unmap {iova:#x}+{size:#x} does not cover whole mappings of this domain exactly")]
    UnmapMismatch {
        /// IOVA asked for.
        iova: u64,
        /// Size asked for.
        size: u64,
    },
    /// The DART refused (forbidden frame type, IOVA in use, out of frames,
    /// beyond the stream's IOVA space, halted, …).
    #[error(transparent)]
    Dart(#[from] DartError),
}

impl VfioDomainError {
    /// The errno a VFIO type1 container would give for this refusal:
    /// `EINVAL` (bad request, unmap mismatch, bad range), `EFAULT` (host
    /// address not in memory), `EPERM` (frame type forbids DART access,
    /// bypass denied), `EEXIST` (IOVA in use), `ENOENT` (nothing mapped),
    /// `ENOMEM` (out of frames, mapping limit), `ENODEV` (no such stream),
    /// `EIO` (the emulated system halted, a foreign TTBR, anything else).
    pub fn errno(&self) -> i32 {
        use frame_table::Error as F;
        match self {
            VfioDomainError::BadRequest { .. } | VfioDomainError::UnmapMismatch { .. } => libc::EINVAL,
            VfioDomainError::NotInMemory { .. } => libc::EFAULT,
            VfioDomainError::Dart(e) => match e {
                DartError::BadRange { .. } | DartError::Config { .. } => libc::EINVAL,
                DartError::IovaInUse { .. } => libc::EEXIST,
                DartError::NotMapped { .. } => libc::ENOENT,
                DartError::NoSuchStream { .. } => libc::ENODEV,
                DartError::BypassDenied { .. } => libc::EPERM,
                DartError::Frame(F::ForbiddenType { .. }) => libc::EPERM,
                DartError::Frame(F::OutOfFrames { .. } | F::MappingLimit { .. }) => libc::ENOMEM,
                DartError::Frame(F::BadRange { .. } | F::OutOfRange { .. }) => libc::EINVAL,
                _ => libc::EIO,
            },
        }
    }
}

/// A VFIO DMA domain backed by one stream of a [`Dart`]: maps are
/// read-write, validated, and recorded.
#[derive(Debug)]
pub struct DartVfioDomain {
    dart: Arc<Dart>,
    sid: u32,
    /// Mappings made through this domain: IOVA -> size.
    maps: Mutex<BTreeMap<u64, u64>>,
    last_error: Mutex<Option<VfioDomainError>>,
}

impl DartVfioDomain {
    /// The domain of stream `sid` of `dart`; `NoSuchStream` if there is none.
    pub fn new(dart: Arc<Dart>, sid: u32) -> Result<DartVfioDomain, DartError> {
        dart.stream(sid)?;
        Ok(DartVfioDomain { dart, sid, maps: Mutex::new(BTreeMap::new()), last_error: Mutex::new(None) })
    }

    /// The DART.
    pub fn dart(&self) -> &Arc<Dart> {
        &self.dart
    }

    /// The stream.
    pub fn sid(&self) -> u32 {
        self.sid
    }

    /// The mappings made through this domain, as `(iova, size)` in IOVA order.
    pub fn mappings(&self) -> Vec<(u64, u64)> {
        self.maps.lock().iter().map(|(&i, &s)| (i, s)).collect()
    }

    /// The typed reason of the last refused trait call (`vfio_dma_map` or
    /// `vfio_dma_unmap`), whose `VfioError` carries only an errno.
    pub fn last_error(&self) -> Option<VfioDomainError> {
        self.last_error.lock().clone()
    }

    /// The frames behind host range `[user_addr, user_addr + size)`: it must
    /// lie inside one region of the DART's physical memory, page aligned.
    fn frames_of(&self, iova: u64, size: u64, user_addr: u64) -> Result<Vec<Frame>, VfioDomainError> {
        let bad = |reason| VfioDomainError::BadRequest { op: "map", iova, size, user_addr, reason };
        let page = 1u64 << self.dart.page_shift();
        if size == 0 {
            return Err(bad("empty range"));
        }
        if !size.is_multiple_of(page) || !iova.is_multiple_of(page) {
            return Err(bad("IOVA and size must be page aligned"));
        }
        let end = user_addr.checked_add(size).ok_or(bad("host range overflows"))?;
        iova.checked_add(size).ok_or(bad("IOVA range overflows"))?;
        let frames = self.dart.frames();
        let region = frames.memory().iter().find_map(|r| {
            let host = r.get_host_address(MemoryRegionAddress(0)).ok()? as u64;
            (host <= user_addr && end <= host.checked_add(r.len())?).then_some((host, r.start_addr().0))
        });
        let (host, pa_base) = region.ok_or(VfioDomainError::NotInMemory { user_addr, size })?;
        let pa = pa_base + (user_addr - host);
        if !pa.is_multiple_of(page) {
            return Err(bad("host address not page aligned"));
        }
        (0..size / page).map(|i| frames.frame_of(pa + i * page).map_err(|e| DartError::from(e).into())).collect()
    }

    /// Maps host range `[user_addr, user_addr + size)` of the emulator's
    /// physical memory read-write at `iova`. The address is only compared
    /// with the memory map, never dereferenced. On a refusal nothing changes.
    pub fn dma_map(&self, iova: u64, size: u64, user_addr: u64) -> Result<(), VfioDomainError> {
        let frames = self.frames_of(iova, size, user_addr)?;
        let mut maps = self.maps.lock();
        self.dart.map(self.sid, iova, &frames, Perm::RW, None)?;
        maps.insert(iova, size);
        Ok(())
    }

    /// Unmaps `[iova, iova + size)`, which must be made of whole mappings of
    /// this domain with no gap. On a refusal nothing changes.
    pub fn dma_unmap(&self, iova: u64, size: u64) -> Result<(), VfioDomainError> {
        let mismatch = VfioDomainError::UnmapMismatch { iova, size };
        if size == 0 {
            return Err(VfioDomainError::BadRequest { op: "unmap", iova, size, user_addr: 0, reason: "empty range" });
        }
        let end = iova.checked_add(size).ok_or(VfioDomainError::BadRequest {
            op: "unmap",
            iova,
            size,
            user_addr: 0,
            reason: "IOVA range overflows",
        })?;
        let mut maps = self.maps.lock();
        let mut covered = iova;
        let whole: Vec<(u64, u64)> = maps.range(iova..end).map(|(&i, &s)| (i, s)).collect();
        for &(i, s) in &whole {
            if i != covered {
                return Err(mismatch);
            }
            covered = i + s;
        }
        if covered != end {
            return Err(mismatch);
        }
        for (i, s) in whole {
            // Each was mapped whole by this domain, so the DART unmaps it
            // whole; an error here (a halted system, or someone else
            // unmapping behind the domain's back) is reported, and the
            // record keeps what the DART still may hold.
            self.dart.unmap(self.sid, i, s)?;
            maps.remove(&i);
        }
        Ok(())
    }

    /// Keeps the typed reason of a refusal for [`DartVfioDomain::last_error`]
    /// and turns it into `wrap(errno)`, or `InvalidDmaUnmapSize` for an
    /// unmap that does not match whole mappings (what vfio-ioctls' container
    /// reports when the kernel unmaps fewer bytes than asked).
    fn record<T>(&self, r: Result<T, VfioDomainError>, wrap: fn(SysError) -> VfioError) -> Result<T, VfioError> {
        r.map_err(|e| {
            let err = match e {
                VfioDomainError::UnmapMismatch { .. } => VfioError::InvalidDmaUnmapSize,
                _ => wrap(SysError::new(e.errno())),
            };
            *self.last_error.lock() = Some(e);
            err
        })
    }
}

impl VfioOps for DartVfioDomain {
    /// Maps `[user_addr, user_addr + size)`, which must lie in the
    /// emulator's physical memory, read-write at `iova` (see
    /// [`DartVfioDomain::dma_map`]); refusals are `IommuDmaMap(errno)`.
    ///
    /// # Safety
    ///
    /// The trait's contract (the caller keeps the range mapped and makes no
    /// Rust reference to it until it is unmapped) is what the emulated device
    /// relies on; this implementation never dereferences `user_addr`: it only
    /// compares it with the host addresses of the frame table's memory
    /// regions, and the device reaches the memory through
    /// `GuestMemoryMmap`'s volatile accesses.
    unsafe fn vfio_dma_map(&self, iova: u64, size: usize, user_addr: *mut u8) -> vfio_ioctls::Result<()> {
        self.record(self.dma_map(iova, size as u64, user_addr as u64), VfioError::IommuDmaMap)
    }

    /// Unmaps `[iova, iova + size)` (see [`DartVfioDomain::dma_unmap`]);
    /// refusals are `InvalidDmaUnmapSize` for a range that is not made of
    /// whole mappings, `IommuDmaUnmap(errno)` otherwise.
    fn vfio_dma_unmap(&self, iova: u64, size: usize) -> vfio_ioctls::Result<()> {
        self.record(self.dma_unmap(iova, size as u64), VfioError::IommuDmaUnmap)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
