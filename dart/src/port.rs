//! Stream ports: what a device holds instead of the [`Dart`].
//!
//! A [`StreamPort`] is a capability for one stream of one DART: DMA read
//! and write, translation, and a vm-memory view ([`PortMemory`]) for
//! device code written against vm-memory's [`Bytes`] and
//! [`GuestMemory`] (virtio-queue's `Queue`, `Reader`, `Writer`). Nothing
//! reachable from a port leads back to the `Dart`, the frame table or
//! physical memory: the kernel keeps those, and hands a device its port
//! ([`Dart::port`]).
//!
//! The view is dartemu's own [`GuestMemory`], not vm-memory's
//! `IommuMemory` (whose `get_backend`, `iommu` and `set_iommu_enabled`
//! would hand the device the kernel's keys), and every slice it hands out
//! carries a [`SliceHold`]: the frames it covers stay counted as
//! DART-reachable until the last slice derived from it is dropped
//! ([`crate::hold`] has the protocol).
//!
//! [`Bytes`]: frame_table::vm_memory::Bytes

use crate::dart::{Dart, Translation};
use crate::error::DartError;
use crate::fault::FaultKind;
use crate::hold::SliceHold;
use crate::types::{Dir, Span};
use frame_table::vm_memory::guest_memory::{Error as GuestMemoryError, GuestMemorySliceIterator};
use frame_table::vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryMmap, Permissions, VolatileSlice,
};
use frame_table::{Frame, Perm};
use smallvec::SmallVec;
use std::iter::FusedIterator;
use std::sync::Arc;

/// A device's capability for stream `sid` of one DART: DMA, translation
/// and a vm-memory view, nothing else. Cheap to clone; `Send` and `Sync`,
/// so a device may DMA from several threads.
///
/// ```
/// use dart::vm_memory::{Bytes, GuestAddress};
/// use dart::{Dart, DartConfig, StreamConfig, Variant};
/// use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
/// use std::sync::Arc;
///
/// // Kernel side: memory, a DART, a mapping, and the device's port.
/// let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(1 << 20)).unwrap());
/// let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110)).unwrap());
/// dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
/// let buf = frames.alloc(FrameType::UserData, 1).unwrap();
/// dart.map(1, 0x4000, &buf, Perm::RW, None).unwrap();
/// let port = dart.port(1).unwrap();
///
/// // Device side: only the port.
/// port.dma_write(0x4000, b"hello").unwrap();
/// let mem = port.memory();
/// assert_eq!(mem.read_obj::<[u8; 5]>(GuestAddress(0x4000)).unwrap(), *b"hello");
/// assert!(mem.read_obj::<u32>(GuestAddress(0x8000)).is_err()); // unmapped: fault:no-pte
/// ```
#[derive(Clone)]
pub struct StreamPort {
    dart: Arc<Dart>,
    sid: u32,
}

impl std::fmt::Debug for StreamPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPort").field("dart", &self.dart.name()).field("sid", &self.sid).finish()
    }
}

impl StreamPort {
    /// The port of stream `sid` of `dart`; `NoSuchStream` if it has none.
    /// Kernel side: whoever holds the `Arc<Dart>` decides which device
    /// gets which port.
    pub fn new(dart: Arc<Dart>, sid: u32) -> Result<StreamPort, DartError> {
        dart.stream(sid)?;
        Ok(StreamPort { dart, sid })
    }

    /// The stream.
    pub fn sid(&self) -> u32 {
        self.sid
    }

    /// The DART's instance name (for messages).
    pub fn dart_name(&self) -> &str {
        self.dart.name()
    }

    /// log2 of the DART's page size.
    pub fn page_shift(&self) -> u32 {
        self.dart.page_shift()
    }

    /// Reads `buf.len()` bytes at `iova` ([`Dart::dma_read`]).
    #[inline]
    pub fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DartError> {
        self.dart.dma_read(self.sid, iova, buf)
    }

    /// Writes `data` at `iova` ([`Dart::dma_write`]).
    #[inline]
    pub fn dma_write(&self, iova: u64, data: &[u8]) -> Result<(), DartError> {
        self.dart.dma_write(self.sid, iova, data)
    }

    /// Translates `[iova, iova + len)` for `dir` ([`Dart::translate`]); the
    /// DMA is in flight while the translation lives, so drop it promptly:
    /// a strict unmap of its pages waits for it.
    #[inline]
    pub fn translate(&self, iova: u64, len: u64, dir: Dir) -> Result<Translation<'_>, DartError> {
        self.dart.translate(self.sid, iova, len, dir)
    }

    /// Holds the frames of `[iova, iova + len)` as a slice of them would,
    /// without handing out the slice: for a device that keeps a buffer
    /// across requests (a ring it polls, a descriptor it completes later).
    /// `access` is the direction translated (`Read`, `Write` or both for
    /// `ReadWrite`; `No` probes as a read). The frames stay counted as
    /// DART-reachable until the returned hold and its clones are dropped
    /// ([`crate::hold`]); faults are raised, latched and counted as for any
    /// DMA and come back typed. A zero-length range is `BadRange`.
    pub fn hold(&self, iova: u64, len: u64, access: Permissions) -> Result<SliceHold, DartError> {
        if len == 0 {
            return Err(DartError::BadRange { iova, len, reason: "zero-length hold" });
        }
        self.hold_spans(iova, len, access).map(|(_, hold)| hold)
    }

    /// Holds `[iova, iova + len)` for `access`: its physical spans and the
    /// hold on their frames, taken inside the translation's in-flight
    /// section (invariant 1 of [`crate::hold`]).
    fn hold_spans(
        &self,
        iova: u64,
        len: u64,
        access: Permissions,
    ) -> Result<(SmallVec<[Span; 2]>, SliceHold), DartError> {
        let dart = &*self.dart;
        let sid = self.sid;
        let (first, second, perm) = match access {
            Permissions::No | Permissions::Read => (Dir::Read, None, Perm::R),
            Permissions::Write => (Dir::Write, None, Perm::W),
            Permissions::ReadWrite => (Dir::Read, Some(Dir::Write), Perm::RW),
        };
        let t = match dart.translate(sid, iova, len, first) {
            Ok(t) => t,
            Err(DartError::BypassDenied { .. }) if dart.stream_config(sid)?.bypass => {
                return self.hold_bypassed(iova, len, first, perm);
            }
            Err(e) => return Err(e),
        };
        let t2 = second.map(|d| dart.translate(sid, iova, len, d)).transpose()?;
        let spans: SmallVec<[Span; 2]> = t.spans().iter().copied().collect();
        let frames = self.frames_of(&spans)?;
        // Invariant 1 of `crate::hold`: the section of `t` (and `t2`) is
        // still open here.
        let hold = dart.holds.take(&frames, perm)?;
        drop(t2);
        drop(t);
        Ok((spans, hold))
    }

    /// [`StreamPort::hold_spans`] on a bypassed stream: `IOVA = PA`, every frame
    /// checked against the DART column as the hold takes it.
    fn hold_bypassed(
        &self,
        pa: u64,
        len: u64,
        dir: Dir,
        perm: Perm,
    ) -> Result<(SmallVec<[Span; 2]>, SliceHold), DartError> {
        let dart = &*self.dart;
        let sid = self.sid;
        if len == 0 || pa.checked_add(len).is_none() {
            return Err(DartError::BadRange { iova: pa, len, reason: "IOVA range overflows" });
        }
        let span = Span { iova: pa, pa, len };
        let frames = match self.frames_of(&[span]) {
            Ok(f) => f,
            Err(_) => return Err(dart.raise(sid, pa, FaultKind::ForbiddenFrame, dir)),
        };
        // Invariant 1 of `crate::hold`, bypassed: no section and no PTE; the
        // policy check the hold makes is the whole protection.
        match dart.holds.take(&frames, perm) {
            Ok(hold) => Ok((SmallVec::from_slice(&[span]), hold)),
            Err(frame_table::Error::ForbiddenType { frame, .. }) => {
                let at = dart.frames().pa_of(frame).unwrap_or(pa).max(pa);
                Err(dart.raise(sid, at, FaultKind::ForbiddenFrame, dir))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The frames `spans` cover, in order.
    fn frames_of(&self, spans: &[Span]) -> Result<SmallVec<[Frame; 2]>, DartError> {
        let frames = self.dart.frames();
        let shift = self.dart.page_shift();
        let mut out = SmallVec::new();
        for s in spans {
            let last = s.pa.checked_add(s.len - 1).ok_or(DartError::BadRange {
                iova: s.iova,
                len: s.len,
                reason: "physical span overflows",
            })?;
            for pfn in (s.pa >> shift)..=(last >> shift) {
                out.push(frames.frame_of(pfn << shift)?);
            }
        }
        Ok(out)
    }

    /// The vm-memory view of this stream ([`PortMemory`]).
    pub fn memory(&self) -> PortMemory {
        PortMemory { port: self.clone(), phys: self.dart.frames().memory().clone() }
    }
}

/// A stream port as vm-memory [`GuestMemory`]: IOVAs in, checked
/// [`VolatileSlice`]s out, each carrying a [`SliceHold`] on the frames it
/// covers. `Bytes` (blanket-implemented by vm-memory for every
/// `GuestMemory`) and virtio-queue's `Queue`, `Reader` and `Writer` work on
/// it.
///
/// Semantics:
/// - [`Permissions::Read`] / [`Permissions::Write`] translate for that
///   direction; [`Permissions::ReadWrite`] for both; [`Permissions::No`]
///   (`check_range` probes) as a read.
/// - A DART fault (latched in ERROR and counted as for any DMA) becomes
///   `GuestMemoryError::IommuError(CannotResolve)` naming the fault kind and
///   the faulting IOVA; a halted system, a missing stream or a hold the
///   frame table refuses (for example a full DART counter) becomes
///   `IommuMisconfigured`.
/// - A bypassed (trusted) stream hands out slices of the physical range
///   `IOVA = PA`, with the frame-type check of the DART column: a forbidden
///   frame faults `forbidden-frame`.
/// - A zero-length request yields no slice and touches nothing.
/// - `bytes_read`/`bytes_written` count nothing here (the copies happen in
///   vm-memory); translations, IOTLB and fault counters are the DART's.
/// - `physical_memory()` is `None`: there is no way from the view to
///   untranslated memory.
#[derive(Clone)]
pub struct PortMemory {
    port: StreamPort,
    /// The frame table's memory (a clone of its `Arc`ed regions): the
    /// slices point into it, so it outlives every slice borrowed from `self`.
    phys: GuestMemoryMmap,
}

impl std::fmt::Debug for PortMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortMemory").field("port", &self.port).finish_non_exhaustive()
    }
}

impl PortMemory {
    /// The port this view reads and writes through.
    pub fn port(&self) -> &StreamPort {
        &self.port
    }

    /// The slices of `spans` in physical memory, each carrying `hold`.
    fn slices(&self, spans: &[Span], hold: &SliceHold) -> Result<PortSlices<'_>, GuestMemoryError> {
        let mut slices = SmallVec::new();
        for s in spans {
            let len = usize::try_from(s.len).map_err(|_| GuestMemoryError::InvalidGuestAddress(GuestAddress(s.pa)))?;
            for piece in GuestMemoryBackend::get_slices(&self.phys, GuestAddress(s.pa), len) {
                let piece = piece?;
                // SAFETY: `piece` is a bounds-checked slice of `self.phys`'s
                // mmap regions, so `[ptr, ptr + len)` is mapped memory that
                // supports volatile access. The new slice borrows `self` for
                // its lifetime, and `self.phys` holds the regions (`Arc`s)
                // alive at least that long. `None` for the mmap info is what
                // vm-memory passes for non-Xen mappings, the only kind the
                // frame table builds (no `xen` feature).
                let slice = unsafe {
                    VolatileSlice::with_bitmap(piece.ptr_guard_mut().as_ptr(), piece.len(), hold.clone(), None)
                };
                slices.push(slice);
            }
        }
        Ok(PortSlices { slices: slices.into_iter() })
    }
}

/// The slices of one [`PortMemory`] `get_slices` call, all holding the
/// same frames.
pub struct PortSlices<'a> {
    slices: smallvec::IntoIter<[VolatileSlice<'a, SliceHold>; 2]>,
}

impl std::fmt::Debug for PortSlices<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortSlices").field("left", &self.slices.len()).finish()
    }
}

impl<'a> Iterator for PortSlices<'a> {
    type Item = Result<VolatileSlice<'a, SliceHold>, GuestMemoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.slices.next().map(Ok)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slices.size_hint()
    }
}

impl FusedIterator for PortSlices<'_> {}

impl<'a> GuestMemorySliceIterator<'a, SliceHold> for PortSlices<'a> {}

impl GuestMemory for PortMemory {
    type PhysicalMemory = GuestMemoryMmap;
    type Bitmap = SliceHold;

    fn check_range(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        if count == 0 {
            return true;
        }
        self.port.hold_spans(addr.0, count as u64, access).is_ok()
    }

    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        access: Permissions,
    ) -> Result<impl GuestMemorySliceIterator<'a, SliceHold>, GuestMemoryError> {
        if count == 0 {
            return Ok(PortSlices { slices: SmallVec::new().into_iter() });
        }
        let len = count as u64;
        let (spans, hold) = self
            .port
            .hold_spans(addr.0, len, access)
            .map_err(|e| GuestMemoryError::IommuError(crate::adapters::iommu::to_iommu_error(addr.0, len, &e)))?;
        self.slices(&spans, &hold)
    }
}
