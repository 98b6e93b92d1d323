//! The vm-memory adapter, **kernel side**: one DART stream as a
//! [`vm_memory::Iommu`], so that a VMM that already speaks
//! [`vm_memory::IommuMemory`] can put the emulated DART under its guest
//! memory, with every `Bytes` access translated and checked by the DART.
//!
//! It is not a device's view. `IommuMemory` hands its holder the kernel's
//! keys: `get_backend()` is the whole physical memory, `iommu().dart()` the
//! `Dart` (and from it the frame table), `set_iommu_enabled(false)` turns
//! translation off. And its slices are **not held**: a `VolatileSlice`
//! kept after its iterator is dropped (virtio-queue's `Reader::new` keeps
//! them) can outlive an unmap, and read whatever the frame holds next.
//! Device code gets a [`crate::StreamPort`] and its
//! [`crate::PortMemory`], whose slices hold their frames
//! ([`crate::hold`]).
//!
//! # Design: a per-call IOTLB view (lock-free, nothing shared)
//!
//! vm-memory's [`Iommu::translate`] must return an
//! [`IotlbIterator`] over a guard that dereferences to a
//! [`vm_memory::Iotlb`]. [`IommuMemory`] keeps that iterator inside the
//! slice iterator it hands to `Bytes::read`/`write` and drops it only once
//! the last slice has been produced and copied (or on error). This adapter
//! therefore builds, per call, an [`StreamIotlb`] that owns
//!
//! - the DART's [`Translation`] (one per direction asked for): it holds the
//!   DMA in flight, so a strict [`Dart::unmap`] of these pages waits until
//!   the copy is over, exactly as for [`Dart::dma_read`]; and
//! - a private [`vm_memory::Iotlb`] filled from the translation's merged
//!   physical spans, with the access asked for.
//!
//! *Who writes, who reads.* Nothing in the view is shared: each call writes
//! its own `Iotlb`, and only its own iterator reads it. The DART side is the
//! device path of [`Dart::translate`] (no lock; see `dart/src/dart.rs` for
//! its protocol), so faults latch ERROR and bump the counters as for any
//! DMA. Coherence with the DART's tables is by construction: the view is
//! born from a translation of the current tables and dies with the access,
//! so there is nothing to invalidate, and a strict unmap is seen by the next
//! access.
//!
//! *Cost.* One [`Dart::translate`] per direction (two for
//! [`Permissions::ReadWrite`]), plus one `rangemap` insert per physical span
//! (a heap allocation for the first) and the lookup that builds the
//! iterator. `cargo bench -p dart --bench iommu` measures it against
//! `Dart::dma_read` for a 4 KiB read; docs/performance.md describes how.
//!
//! The alternative, a long-lived `Iotlb` published by epoch or `ArcSwap`,
//! would save the `rangemap` insert on hits but must be kept coherent with
//! unmaps (a second invalidation path to get right) and would not by itself
//! hold the DMA in flight during the copy, which is what makes strict unmap
//! safe; the per-call view gets both for free.
//!
//! # Semantics
//!
//! - [`Permissions::Read`] / [`Permissions::Write`] translate for that
//!   direction; [`Permissions::ReadWrite`] translates for both and fails if
//!   either fails; [`Permissions::No`] (used by `check_range` probes) is
//!   checked as a read: a DART has no "touch without access" transaction.
//! - A zero-length access succeeds without touching the DART (as reading an
//!   empty buffer does in vm-memory).
//! - A DART fault becomes [`iommu::Error::CannotResolve`] whose range starts
//!   at the faulting IOVA and runs to the end of the access, with the fault
//!   kind (`fault:no-pte`, …) and the DART's message as the reason. A range
//!   that overflows is also `CannotResolve`. A halted system, a missing
//!   stream or a bypassed stream (bypass has no translation to hand out) is
//!   [`iommu::Error::IommuMisconfigured`].
//! - `IommuMemory` counts no bytes in `bytes_read`/`bytes_written` (it
//!   copies after the translation); the translations, IOTLB and fault
//!   counters are the DART's own.
//! - A `VolatileSlice` kept after its slice iterator is dropped is no longer
//!   covered by the in-flight guard and holds nothing: use slices while
//!   iterating, as `Bytes` does (devices use ports, whose slices hold their
//!   frames). A thread must not call a strict `unmap` of pages it is itself
//!   iterating over (it would wait for itself).
//! - `IommuMemory::set_iommu_enabled(false)` switches vm-memory to
//!   pass-through on the physical memory: that is the embedder's choice, not
//!   a DART feature, and this adapter cannot see it.

use crate::dart::{Dart, Translation};
use crate::error::DartError;
use crate::types::Dir;
use frame_table::vm_memory::iommu::{self, IotlbIterator, IovaRange};
use frame_table::vm_memory::{GuestAddress, GuestMemoryMmap, Iommu, IommuMemory, Iotlb, Permissions};
use std::ops::Deref;
use std::sync::Arc;

/// `vm_memory::IommuMemory` over the DART's physical memory, translated by
/// one stream: a VMM's (kernel-side) view; devices use
/// [`crate::PortMemory`].
pub type StreamMemory = IommuMemory<GuestMemoryMmap, StreamIommu>;

/// One stream of a [`Dart`] as a vm-memory [`Iommu`].
#[derive(Clone, Debug)]
pub struct StreamIommu {
    dart: Arc<Dart>,
    sid: u32,
}

impl StreamIommu {
    /// The adapter for stream `sid` of `dart`; `NoSuchStream` if it has no
    /// such stream.
    pub fn new(dart: Arc<Dart>, sid: u32) -> Result<StreamIommu, DartError> {
        dart.stream(sid)?;
        Ok(StreamIommu { dart, sid })
    }

    /// The DART.
    pub fn dart(&self) -> &Arc<Dart> {
        &self.dart
    }

    /// The stream.
    pub fn sid(&self) -> u32 {
        self.sid
    }

    /// `IommuMemory` over the DART's physical memory (a cheap clone of the
    /// frame table's `GuestMemoryMmap`), translated through this stream,
    /// with no dirty bitmap.
    pub fn into_memory(self) -> StreamMemory {
        let backend = self.dart.frames().memory().clone();
        IommuMemory::new(backend, self, true, ())
    }
}

/// A VMM's `IommuMemory` over stream `sid` of `dart` in one call:
/// `StreamIommu::new(dart, sid)?.into_memory()`. Kernel side (see the
/// module documentation): its slices hold nothing.
///
/// ```
/// use dart::{Dart, DartConfig, StreamConfig, Variant};
/// use frame_table::vm_memory::{Bytes, GuestAddress};
/// use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
/// use std::sync::Arc;
///
/// let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(1 << 20)).unwrap());
/// let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110)).unwrap());
/// dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
/// let buf = frames.alloc(FrameType::UserData, 1).unwrap();
/// dart.map(1, 0x4000, &buf, Perm::RW, None).unwrap();
///
/// let mem = dart::iommu::stream_memory(dart.clone(), 1).unwrap();
/// mem.write_obj(0xdead_beef_u32, GuestAddress(0x4010)).unwrap();
/// assert_eq!(mem.read_obj::<u32>(GuestAddress(0x4010)).unwrap(), 0xdead_beef);
/// assert!(mem.read_obj::<u32>(GuestAddress(0x8000)).is_err()); // unmapped: fault:no-pte
/// assert!(dart.error().first.is_some());
/// ```
pub fn stream_memory(dart: Arc<Dart>, sid: u32) -> Result<StreamMemory, DartError> {
    Ok(StreamIommu::new(dart, sid)?.into_memory())
}

/// The IOTLB view [`StreamIommu::translate`] hands out: the DART
/// translations of one access (holding the DMA in flight) and a private
/// [`vm_memory::Iotlb`] of their spans. Dropping it ends the DMA.
#[derive(Debug)]
pub struct StreamIotlb<'a> {
    _translations: [Option<Translation<'a>>; 2],
    iotlb: Iotlb,
}

impl Deref for StreamIotlb<'_> {
    type Target = Iotlb;

    fn deref(&self) -> &Iotlb {
        &self.iotlb
    }
}

impl StreamIommu {
    /// Translates for one direction, mapping a refusal to vm-memory's error.
    fn translate_dir(&self, iova: u64, len: u64, dir: Dir) -> Result<Translation<'_>, iommu::Error> {
        self.dart.translate(self.sid, iova, len, dir).map_err(|e| to_iommu_error(iova, len, &e))
    }
}

/// vm-memory's error for a DART refusal of `[iova, iova + len)`.
pub(crate) fn to_iommu_error(iova: u64, len: u64, e: &DartError) -> iommu::Error {
    let range = |base: u64| IovaRange {
        base: GuestAddress(base),
        length: usize::try_from(len.saturating_sub(base.saturating_sub(iova))).unwrap_or(usize::MAX),
    };
    match e {
        DartError::Fault(f) => {
            iommu::Error::CannotResolve { iova_range: range(f.iova), reason: format!("{}: {e}", f.kind.kind()) }
        }
        DartError::BadRange { .. } => {
            iommu::Error::CannotResolve { iova_range: range(iova), reason: format!("{}: {e}", e.kind()) }
        }
        _ => iommu::Error::IommuMisconfigured { reason: format!("{}: {e}", e.kind()) },
    }
}

impl Iommu for StreamIommu {
    type IotlbGuard<'a> = StreamIotlb<'a>;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<StreamIotlb<'_>>, iommu::Error> {
        let (start, len) = (iova.0, length as u64);
        let mut view = StreamIotlb { _translations: [None, None], iotlb: Iotlb::new() };
        if len > 0 {
            if start.checked_add(len).is_none() {
                // Refused by the DART too; checked here so nothing below can overflow.
                let e = DartError::BadRange { iova: start, len, reason: "IOVA range overflows" };
                return Err(to_iommu_error(start, len, &e));
            }
            let dirs: &[Dir] = match access {
                Permissions::No | Permissions::Read => &[Dir::Read],
                Permissions::Write => &[Dir::Write],
                Permissions::ReadWrite => &[Dir::Read, Dir::Write],
            };
            for (slot, &dir) in dirs.iter().enumerate() {
                let t = self.translate_dir(start, len, dir)?;
                if slot == 0 {
                    for s in t.spans() {
                        let n = usize::try_from(s.len).map_err(|_| iommu::Error::CannotResolve {
                            iova_range: IovaRange { base: GuestAddress(s.iova), length: usize::MAX },
                            reason: "span longer than the host address space".into(),
                        })?;
                        view.iotlb.set_mapping(GuestAddress(s.iova), GuestAddress(s.pa), n, access)?;
                    }
                }
                view._translations[slot] = Some(t);
            }
        }
        Iotlb::lookup(view, iova, length, access).map_err(|fails| {
            // Cannot happen: the view holds exactly the translated range with
            // `access`. Reported rather than unwrapped.
            let first = fails.misses.first().or(fails.access_fails.first()).cloned();
            iommu::Error::CannotResolve {
                iova_range: first.unwrap_or(IovaRange { base: iova, length }),
                reason: "IOTLB view does not cover the translated range".into(),
            }
        })
    }
}
