//! The DART: streams, the device-side translation path, faults.
//!
//! # Protocol: how a translation can never outlive its unmap (strict mode)
//!
//! *Who writes.* PTEs and TTBRs are written only by the mapper
//! ([`crate::mapper`]), under the DART's mapper lock, with `Release` stores.
//! IOTLB entries are written by any DMA thread after a walk, tagged with the
//! generation of the page's IOVA region it read *before* the walk
//! ([`crate::translate::stream`]: a stream has one generation per group of 32 MiB
//! regions). Generations are bumped by configuration changes (all of the
//! stream's, `SeqCst`) and by unmap (those of the unmapped range's regions)
//! and flush (all), with a `Release` store that the in-flight tracker's
//! `SeqCst` fence then orders, always under the mapper lock.
//!
//! *Who reads.* DMA threads, with no lock: enter the in-flight tracker
//! ([`crate::sync::inflight`], two plain stores to a per-thread section word), load the
//! stream configuration and generation, probe the IOTLB (a seqlock read), on
//! a miss walk the tables with `Acquire` loads, check permission and
//! subpage, copy, leave.
//!
//! *Why a stale translation is impossible after `unmap` returns.* Strict
//! unmap clears the PTEs, bumps the generations of the unmapped range's
//! regions in its stream (all of them if another of its TTBRs reaches the
//! cleared tables, and all generations of every other stream whose TTBR
//! can reach them), and calls `synchronize_regions`, which returns only
//! after every DMA that entered before it and may read what changed has
//! left. A DMA that enters later and translates a page of the range reads
//! its region's new
//! generation (so every older IOTLB entry of the page, including one a
//! racing walk inserted late, is dead to it) and walks tables in which the
//! PTE is already clear. Entries of pages outside the range stay live: their
//! PTEs did not change. Only then are the frames' DART counts released, so a frame can be
//! freed or retyped only when nothing can reach it. Deferred mode skips the
//! bump and the wait: stale IOTLB entries keep serving until a flush, and the
//! frames stay counted as "pending invalidation" until then (docs/design.md §3).
//!
//! *Faults* never move data: every page of an access is translated and
//! checked before the first byte is copied.

mod mmio;

use crate::error::DartError;
use crate::fault::{ErrorLatch, Fault, FaultKind};
use crate::hw::pte::{Leaf, PteFormat};
use crate::mapper::{Kernel, MapId, Mapper, OwnedScope};
use crate::observe::events::{EventLog, WatchRange};
use crate::observe::stats::Stats;
use crate::translate::phys;
use crate::translate::stream::StreamState;
pub use crate::translate::Translation;
use crate::translate::{Raise, Translator};
use crate::types::{Dir, Invalidation, StreamConfig};
use crate::variant::{Geometry, Variant};
use frame_table::{Frame, FrameTable, Perm};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

/// How to build a [`Dart`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DartConfig {
    /// Instance name (`dart0`, `dart-ane`, …).
    pub name: String,
    /// Hardware variant.
    pub variant: Variant,
    /// Streams (1 ..= the variant's maximum).
    pub streams: u32,
    /// Invalidation mode.
    pub invalidation: Invalidation,
    /// IOTLB entries (rounded up to a power of two).
    pub iotlb_entries: usize,
    /// Streams allowed to bypass translation.
    pub trusted: Vec<u32>,
}

impl DartConfig {
    /// The largest IOTLB a DART has (2^20 entries): a larger
    /// `iotlb_entries` is clamped to it.
    pub const MAX_IOTLB_ENTRIES: usize = crate::translate::iotlb::Iotlb::MAX_ENTRIES;

    /// A `variant` DART named `name` with 16 streams (or fewer if the variant
    /// has fewer), strict invalidation, 256 IOTLB entries, no trusted stream.
    pub fn new(name: impl Into<String>, variant: Variant) -> DartConfig {
        DartConfig {
            name: name.into(),
            variant,
            streams: variant.max_streams().min(16),
            invalidation: Invalidation::Strict,
            iotlb_entries: 256,
            trusted: Vec::new(),
        }
    }
}
/// The interrupt line: called when ERROR goes from clear to latched.
pub type InterruptFn = dyn Fn(&Fault) + Send + Sync;

/// A software DART.
pub struct Dart {
    variant: Variant,
    format: PteFormat,
    invalidation: Invalidation,
    /// The device side: streams, IOTLB, in-flight tracker, walk cache,
    /// PTE loads, counters.
    device: Translator,
    /// The kernel side: the only writer of the tables.
    mapper: Mapper,
    error: Mutex<ErrorLatch>,
    interrupt: RwLock<Option<Arc<InterruptFn>>>,
    pub(crate) mmio: mmio::MmioState,
    pub(crate) trace: crate::observe::events::DartTrace,
    /// The slice holds outstanding on each frame ([`crate::hold`]).
    pub(crate) holds: Arc<crate::hold::Holds>,
}

impl std::fmt::Debug for Dart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dart")
            .field("name", &self.name())
            .field("variant", &self.variant)
            .field("streams", &self.stream_count())
            .field("invalidation", &self.invalidation)
            .finish_non_exhaustive()
    }
}

/// # Device side
///
/// What a device's DMA does: translate IOVAs of one stream, check
/// permissions, copy. Lock-free. A device holds a [`crate::StreamPort`]
/// (handed out by [`Dart::port`]), which reaches these for its own stream
/// and nothing else of the `Dart`.
impl Raise for Dart {
    #[inline(always)]
    fn translator(&self) -> &Translator {
        &self.device
    }

    #[inline]
    fn raise(&self, sid: u32, iova: u64, kind: FaultKind, dir: Dir) -> DartError {
        Dart::raise(self, sid, iova, kind, dir)
    }
}

impl Dart {
    /// The device's capability for stream `sid`: DMA, translation and a
    /// vm-memory view, nothing kernel-side ([`crate::StreamPort`]).
    pub fn port(self: &Arc<Self>, sid: u32) -> Result<crate::StreamPort, DartError> {
        crate::StreamPort::new(self.clone(), sid)
    }

    /// Translates `[iova, iova + len)` of stream `sid` for `dir`, returning
    /// physical spans that stay valid while the [`Translation`] lives. A
    /// bypassed stream is refused here (`BypassDenied`: bypass has no
    /// translation to hand out; use [`Dart::dma_read`]/[`Dart::dma_write`]).
    ///
    /// A one-page access whose page the IOTLB holds costs a few nanoseconds.
    /// In a loop that hot, `match` the result rather than `?`-converting the
    /// error: the `?` machinery moves the whole `Result` through memory,
    /// where `match` lets the hit path's translation stay in registers.
    /// Always inlined, for the same reason.
    #[inline(always)]
    pub fn translate(&self, sid: u32, iova: u64, len: u64, dir: Dir) -> Result<Translation<'_>, DartError> {
        Translator::translate(self, (sid, iova, len, dir))
    }

    /// Device reads `buf.len()` bytes at `iova` through stream `sid`. On a
    /// fault nothing is read (`buf` unchanged) and the fault is latched.
    pub fn dma_read(&self, sid: u32, iova: u64, buf: &mut [u8]) -> Result<(), DartError> {
        let len = buf.len() as u64;
        Translator::access(self, sid, iova, len, Dir::Read, |mem, spans| {
            let mut off = 0usize;
            for s in spans {
                let n = s.len as usize;
                if !phys::read(mem, s.pa, &mut buf[off..off + n]) {
                    return false;
                }
                off += n;
            }
            if self.trace.watching() {
                self.trace.dma(sid, iova, Dir::Read, spans, buf);
            }
            true
        })
    }

    /// Device writes `data` at `iova` through stream `sid`. On a fault
    /// nothing is written and the fault is latched.
    pub fn dma_write(&self, sid: u32, iova: u64, data: &[u8]) -> Result<(), DartError> {
        let len = data.len() as u64;
        Translator::access(self, sid, iova, len, Dir::Write, |mem, spans| {
            let mut off = 0usize;
            for s in spans {
                let n = s.len as usize;
                if !phys::write(mem, s.pa, &data[off..off + n]) {
                    return false;
                }
                off += n;
            }
            if self.trace.watching() {
                self.trace.dma(sid, iova, Dir::Write, spans, data);
            }
            true
        })
    }

    /// The device side, for tests that look inside it.
    #[cfg(test)]
    pub(crate) fn device(&self) -> &Translator {
        &self.device
    }

    /// Records a fault: counters, ERROR latch, interrupt. Returns the error.
    #[cold]
    pub(crate) fn raise(&self, sid: u32, iova: u64, kind: FaultKind, dir: Dir) -> DartError {
        let fault = Fault { kind, stream: sid, iova, write: dir == Dir::Write };
        self.device.stats().fault(Some(sid), kind.code());
        if self.mmio.error_masked(self.variant, kind, fault.write) {
            // ERROR_MASK: the DMA still fails, but nothing latches.
            self.trace.emit(|| crate::observe::events::EventKind::fault(&fault, false));
            return DartError::Fault(fault);
        }
        let newly = {
            let mut e = self.error.lock();
            if e.first.is_none() {
                e.first = Some(fault);
                true
            } else {
                e.more = e.more.saturating_add(1);
                false
            }
        };
        self.trace.emit(|| crate::observe::events::EventKind::fault(&fault, newly));
        if newly {
            let cb = self.interrupt.read().clone();
            if let Some(cb) = cb {
                // Calls that wait for DMA in flight refuse while it runs.
                let _scope = crate::fault::InterruptScope::enter(self.device.id());
                cb(&fault);
            }
        }
        DartError::Fault(fault)
    }
}

/// # Kernel side: building and mapping
///
/// The kernel builds a DART over its frame table, hands devices their ports,
/// and maps through the validated mapper (`map`, `unmap`, `flush` and the
/// mapper's tables, below): the only writer of the translation tables.
impl Dart {
    /// Builds a DART over `frames`. Streams start disabled, with no TTBR.
    pub fn new(frames: Arc<FrameTable>, config: DartConfig) -> Result<Dart, DartError> {
        let v = config.variant;
        if config.streams == 0 || config.streams > v.max_streams() {
            return Err(DartError::Config {
                reason: format!("{} has 1 to {} streams, not {}", v, v.max_streams(), config.streams),
            });
        }
        if let Some(&sid) = config.trusted.iter().find(|&&s| s >= config.streams) {
            return Err(DartError::Config { reason: format!("trusted stream {sid} does not exist") });
        }
        let trusted: Vec<bool> = (0..config.streams).map(|sid| config.trusted.contains(&sid)).collect();
        Ok(Dart {
            variant: v,
            format: v.pte_format(),
            invalidation: config.invalidation,
            mapper: Mapper::new(v, config.invalidation),
            error: Mutex::new(ErrorLatch::default()),
            interrupt: RwLock::new(None),
            mmio: mmio::MmioState::new(config.streams),
            trace: crate::observe::events::DartTrace::new(config.name),
            holds: Arc::new(crate::hold::Holds::new(frames.clone())),
            device: Translator::new(frames, v, &trusted, config.iotlb_entries),
        })
    }

    /// The frame table behind it.
    pub fn frames(&self) -> &Arc<FrameTable> {
        self.device.frames()
    }

    /// Counts one RPC request a mapping service received from a device on
    /// stream `sid` (`rpc_requests`), and, if it refused it, the refusal
    /// (`rpc_refused` and `rpc_refused.KIND`; a kind outside
    /// [`crate::observe::stats::REFUSAL_KINDS`] counts as `other`). Kernel side: the
    /// service calls it; devices have no way to it.
    pub fn account_rpc(&self, sid: u32, refused: Option<&str>) {
        self.device.stats().add(Some(sid), crate::observe::stats::Counter::RpcRequests, 1);
        if let Some(kind) = refused {
            self.device.stats().rpc_refused(Some(sid), kind);
        }
    }

    /// How many slice holds of this DART's ports still keep `frame`
    /// counted ([`crate::hold`]). A kernel that waits for this to reach 0
    /// before `free` or `retype` never breaches R2 through a held slice.
    pub fn slice_holds(&self, frame: Frame) -> u64 {
        self.holds.on(frame)
    }
}

/// # Kernel side: the mapper
///
/// The only writer of the translation tables. `map` takes every frame's DART
/// count, with the frame-type policy check, before the PTE that points at it
/// exists; on a locked DART it still maps under existing TTBRs, but a map
/// that would give a stream its first table (a TTBR write) is `locked`;
/// `unmap` and `flush` clear, invalidate and wait for the DMA in flight
/// before they release those counts (slices a port handed out keep their
/// own counts: [`crate::hold`]).
impl Dart {
    /// The kernel side, lent the components it writes through.
    #[inline]
    pub(crate) fn kernel(&self) -> Kernel<'_> {
        Kernel { mapper: &self.mapper, dev: &self.device, trace: &self.trace, holds: &self.holds, regs: &self.mmio }
    }

    /// Maps `frames` at `iova` (one page each, in order) in stream `sid` with
    /// `perm`, optionally limited to the byte range `subpage` = `[start, end)`
    /// of a single frame. Each frame's DART count is taken with its policy
    /// check before its PTE is written; on any refusal nothing is left behind
    /// (no count, no PTE, no table).
    pub fn map(
        &self,
        sid: u32,
        iova: u64,
        frames: &[Frame],
        perm: Perm,
        subpage: Option<(u64, u64)>,
    ) -> Result<(), DartError> {
        self.kernel().map(sid, iova, frames, perm, subpage)
    }

    /// [`Dart::map`], and every leaf it writes carries a fresh [`MapId`],
    /// which it returns: [`Dart::unmap_owned`] with that id removes these
    /// pages only while their PTEs are still the ones this call wrote (see
    /// [`MapId`]). A mapping service maps a client's requests this way.
    pub fn map_owned(
        &self,
        sid: u32,
        iova: u64,
        frames: &[Frame],
        perm: Perm,
        subpage: Option<(u64, u64)>,
    ) -> Result<MapId, DartError> {
        self.kernel().map_owned(sid, iova, frames, perm, subpage)
    }

    /// Unmaps `[iova, iova + len)` of stream `sid`: clears the leaf PTEs and
    /// frees emptied tables. Strict mode invalidates, waits for DMA in flight
    /// and releases the frames' DART counts before returning; deferred mode
    /// moves them to "pending invalidation" until a flush. Returns the pages
    /// unmapped; `not-mapped` if none was.
    pub fn unmap(&self, sid: u32, iova: u64, len: u64) -> Result<u64, DartError> {
        self.kernel().unmap(sid, iova, len)
    }

    /// [`Dart::unmap`] of the pages `[iova, iova + owners.len() pages)` of
    /// stream `sid` whose leaf, reached through the stream's tables as they
    /// are now, still carries the id `owners[i]` names (page `i`'s id from
    /// [`Dart::map_owned`]). With [`OwnedScope::Whole`] every page must, or
    /// nothing is unmapped and the first page that does not is `not-mapped`;
    /// with [`OwnedScope::Matching`] the others are left mapped and only if
    /// none matched is the call `not-mapped`. The check and the unmap are
    /// one step under the mapper lock: a PTE cleared, re-written or moved
    /// out of reach (TTBR, TCR, shared tables) by anyone since is never
    /// removed. Returns the pages unmapped.
    pub fn unmap_owned(&self, sid: u32, iova: u64, owners: &[MapId], scope: OwnedScope) -> Result<u64, DartError> {
        self.kernel().unmap_owned(sid, iova, owners, scope)
    }

    /// Flushes the IOTLB of stream `sid` (or of every stream): stale entries
    /// die, DMA in flight is waited for, and the deferred unmaps this flush
    /// covers complete (their frames leave "pending invalidation").
    pub fn flush(&self, sid: Option<u32>) -> Result<(), DartError> {
        self.kernel().flush(sid)
    }

    /// Allocates an empty root table — a zeroed `dart-table` frame owned by
    /// this DART's mapper — and returns its physical address. No TTBR names
    /// it yet: this is the page-table root a driver allocates for a domain
    /// (Linux's io-pgtable `pgd`) before it points streams at it by writing
    /// their TTBR registers (value: [`crate::hw::regs::encode_ttbr`]) or with
    /// [`Dart::set_ttbr`]. [`Dart::map`] on a stream whose TTBR names it then
    /// fills it, and every stream pointed at it shares the mappings. (A
    /// stream with no TTBR gets a root of its own on its first map.)
    pub fn alloc_root_table(&self) -> Result<u64, DartError> {
        self.kernel().alloc_root_table()
    }

    /// Frees a root table from [`Dart::alloc_root_table`] (or one a stream
    /// got on its first map) once it is empty and no TTBR names it, after
    /// the DMA that may still be walking it has finished. Anything else is
    /// refused (`bad-range`) and changes nothing.
    pub fn free_root_table(&self, pa: u64) -> Result<(), DartError> {
        self.kernel().free_root_table(pa)
    }
}

/// # Kernel side: the monitor (driver-built tables)
///
/// A driver that builds its own tables (Linux io-pgtable-dart, m1n1, XNU
/// through SPTM) allocates `dart-table` frames and writes every entry
/// through the monitor, which validates it as the mapper would before it
/// is stored: a leaf takes its frame's DART count with the policy check in
/// the same step, a table descriptor must name a table frame of this DART,
/// and a cleared entry keeps what it named counted until an invalidation
/// covers it (docs/design.md §3, "Driver-built tables"). TTBRs then name the
/// driver's roots by register or [`Dart::set_ttbr`]. The protocol is on
/// `dart/src/mapper/monitor.rs` (invariants M1–M8).
impl Dart {
    /// Writes entry `index` of the driver-built table at physical address
    /// `table` with `value`, an entry in this DART's PTE format
    /// ([`Dart::pte_format`]): a leaf in a leaf table, a table descriptor
    /// above it, or any value with the valid bit clear (which clears a
    /// valid entry). The table registers with this DART on its first write
    /// or link. Refused, changing nothing: `forbidden-type` for a frame that
    /// is not a driver table of this DART or a leaf whose frame's type
    /// forbids DART access, `mapping-limit`, `iova-in-use` over a valid
    /// entry, `table-in-use` for a descriptor naming a table already linked,
    /// `bad-range` for an index past the table, a PA outside memory or a
    /// malformed entry.
    ///
    /// ```
    /// use dart::pte::{Leaf, Subpage};
    /// use dart::{Dart, DartConfig, StreamConfig, Variant};
    /// use frame_table::{FrameTable, FrameTableConfig, FrameType, OnViolation};
    /// use std::sync::Arc;
    ///
    /// let config = FrameTableConfig::with_memory(16 << 20).on_violation(OnViolation::Reject);
    /// let frames = Arc::new(FrameTable::new(config).unwrap());
    /// let dart = Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110)).unwrap();
    /// let (fmt, shift) = (dart.pte_format(), dart.page_shift());
    /// // The driver's tables: a root and a leaf table, registered by their zeroing stores.
    /// let t = frames.alloc(FrameType::DartTable, 2).unwrap();
    /// let (root, leaves) = (frames.pa_of(t[0]).unwrap(), frames.pa_of(t[1]).unwrap());
    /// dart.write_table_entry(root, 0, 0).unwrap();
    /// dart.write_table_entry(leaves, 0, 0).unwrap();
    /// // TTBR first (as Linux), then TCR; then link, then fill.
    /// dart.set_ttbr(1, 0, Some(root)).unwrap();
    /// dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    /// dart.write_table_entry(root, 0, fmt.encode_table(shift, leaves).unwrap()).unwrap();
    /// let buf = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    /// let leaf = Leaf { pa: frames.pa_of(buf).unwrap(), read: true, write: true, subpage: Subpage::WHOLE };
    /// dart.write_table_entry(leaves, 2, fmt.encode_leaf(shift, &leaf).unwrap()).unwrap();
    /// dart.dma_write(1, 2 << shift, b"dma").unwrap();
    ///
    /// // A leaf at a kernel-restricted frame is refused and stores nothing.
    /// let secret = frames.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
    /// let forged = Leaf { pa: frames.pa_of(secret).unwrap(), ..leaf };
    /// let e = dart.write_table_entry(leaves, 3, fmt.encode_leaf(shift, &forged).unwrap()).unwrap_err();
    /// assert_eq!(e.kind(), "forbidden-type");
    /// assert_eq!(dart.read_table_entry(leaves, 3), Ok(0));
    ///
    /// // A cleared leaf keeps its frame counted until the flush covers it.
    /// dart.write_table_entry(leaves, 2, 0).unwrap();
    /// assert_eq!(frames.free(buf).unwrap_err().kind(), "frame-busy");
    /// dart.flush(Some(1)).unwrap();
    /// frames.free(buf).unwrap();
    /// ```
    pub fn write_table_entry(&self, table: u64, index: u64, value: u64) -> Result<(), DartError> {
        self.kernel().write_table_entry(table, index, value)
    }

    /// Reads entry `index` of a table of this DART (driver-built or the
    /// mapper's) at physical address `table`: the value the walker reads.
    pub fn read_table_entry(&self, table: u64, index: u64) -> Result<u64, DartError> {
        self.kernel().read_table_entry(table, index)
    }

    /// Ends the registration of the driver-built table at `table` once it
    /// has no valid entry, no parent entry (a cleared one's invalidation
    /// done) and no TTBR names it, after the DMA that may still walk it has
    /// finished: the DART drops its hold, and the frame may be freed.
    /// Anything else is refused (`table-in-use`, `forbidden-type`).
    pub fn release_table(&self, table: u64) -> Result<(), DartError> {
        self.kernel().release_table(table)
    }

    /// Entries per table (a table is one page of 8-byte entries).
    pub fn entries_per_table(&self) -> u64 {
        1 << (self.page_shift() - 3)
    }
}

/// # Inspection: mappings, counts and invariants
///
/// Read-only, under the mapper lock: what the tables map, which frames they
/// and the outstanding invalidations and slice holds count, and the checks
/// the runner and tests assert after every step.
impl Dart {
    /// Every valid leaf of stream `sid`'s tables as `(iova, leaf)`, in IOVA order.
    pub fn mappings(&self, sid: u32) -> Result<Vec<(u64, Leaf)>, DartError> {
        self.kernel().mappings(sid)
    }

    /// Per frame: valid leaf PTEs in this DART's tables plus its hold on each
    /// of its own table frames and its ports' slice holds, and pending
    /// invalidations. What the frame table's DART counts must equal when
    /// every DART of the SoC is summed.
    pub fn dart_counts(&self) -> HashMap<Frame, (u64, u64)> {
        self.kernel().dart_counts()
    }

    /// The [`MapId`] the leaf stream `sid` reaches at `iova` now carries:
    /// `None` if no valid leaf is there or a plain [`Dart::map`] wrote it.
    pub fn map_id(&self, sid: u32, iova: u64) -> Result<Option<MapId>, DartError> {
        self.kernel().map_id(sid, iova)
    }

    /// Checks the provenance invariant (module docs): every recorded slot
    /// holds a valid leaf in a leaf table this mapper owns. Returns a
    /// description of the first breach.
    pub fn check_provenance(&self) -> Result<(), String> {
        self.kernel().check_provenance()
    }

    /// Frames this DART owns as tables.
    pub fn table_frames(&self) -> Vec<Frame> {
        self.kernel().table_frames()
    }

    /// Checks `restricted-unreachable` for this DART: every valid PTE any
    /// TTBR reaches names a frame whose type allows DART access (tables:
    /// `dart-table`), every live IOTLB entry too, no untrusted stream
    /// bypasses, and the frame table's device-reachable map (the walker's
    /// leaf check) agrees with every frame's type. Returns a description of
    /// the first breach.
    pub fn check_restricted_unreachable(&self) -> Result<(), String> {
        self.kernel().check_restricted_unreachable()
    }

    /// Checks `iotlb-coherent` (meaningful in strict mode, when no map or
    /// unmap is running): every live IOTLB entry equals its PTE.
    pub fn check_iotlb_coherent(&self) -> Result<(), String> {
        self.kernel().check_iotlb_coherent()
    }
}

/// Whether a configuration change writes TCR, which the DART's lock
/// guards ([`Dart::update_stream_config`]), or only the enable bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcrWrite {
    /// A TCR write: refused while locked.
    Gated,
    /// An enable-register write: not locked.
    Ungated,
}

/// # Registers
///
/// The stream state a driver programs (streams' configuration, TTBRs, the
/// error latch and the interrupt line), as typed calls; the MMIO register
/// file ([`Dart::mmio_read`], [`Dart::mmio_write`]) reads and writes the same
/// state.
impl Dart {
    /// Stream `sid`'s configuration.
    pub fn stream_config(&self, sid: u32) -> Result<StreamConfig, DartError> {
        Ok(self.stream(sid)?.config())
    }

    /// Sets stream `sid`'s configuration (its TCR and enable bit). Refused,
    /// changing nothing: on a locked DART (`locked`, whatever the value: the
    /// call programs TCR, whose writes the lock drops; [`Dart::set_enabled`]
    /// is not locked), and bypass on an untrusted stream (`bypass-denied`).
    /// Kills the stream's IOTLB entries (a changed configuration must not be
    /// served from the old one).
    pub fn set_stream_config(&self, sid: u32, config: StreamConfig) -> Result<(), DartError> {
        self.update_stream_config(sid, TcrWrite::Gated, |_| config).map(drop)
    }

    /// Replaces stream `sid`'s configuration `c` with `f(c)`, atomically
    /// with respect to every other configuration change and to the lock bit
    /// (read-modify-write under the mapper lock, which lock-bit writes also
    /// take), with [`Dart::set_stream_config`]'s checks; with
    /// [`TcrWrite::Gated`], refused (`locked`) while the DART is locked.
    /// Returns the new configuration.
    pub(crate) fn update_stream_config(
        &self,
        sid: u32,
        tcr: TcrWrite,
        f: impl FnOnce(StreamConfig) -> StreamConfig,
    ) -> Result<StreamConfig, DartError> {
        self.device.frames().check_running()?;
        let st = self.stream(sid)?;
        let mut m = self.mapper.lock();
        if tcr == TcrWrite::Gated && self.mmio.tcr_ttbr_locked() {
            return Err(DartError::Locked { sid, register: crate::error::LockedRegister::Tcr });
        }
        let config = f(st.config());
        if config.bypass && !st.trusted {
            return Err(DartError::BypassDenied { sid });
        }
        st.set_config(config);
        // (G5 of `translate::stream`) Moved: the next invalidation names
        // every region of the stream (inflight I9); the bump kills its
        // IOTLB entries (G3).
        m.moved(sid);
        st.bump_gen();
        self.device.walk_cache().invalidate(&*m);
        Ok(config)
    }

    /// Enables or disables stream `sid`, keeping the rest of its
    /// configuration. (The enable registers are not behind the lock.)
    pub fn set_enabled(&self, sid: u32, enabled: bool) -> Result<(), DartError> {
        self.update_stream_config(sid, TcrWrite::Ungated, |c| StreamConfig { enabled, ..c }).map(drop)
    }

    /// Turns bypass (TCR.BYPASS_DART) on or off for stream `sid`: refused
    /// on a locked DART (`locked`) and for untrusted streams
    /// (`bypass-denied`), changing nothing.
    pub fn set_bypass(&self, sid: u32, bypass: bool) -> Result<(), DartError> {
        self.update_stream_config(sid, TcrWrite::Gated, |c| StreamConfig { bypass, ..c }).map(drop)
    }

    /// The table TTBR `idx` of stream `sid` names, if valid.
    pub fn ttbr(&self, sid: u32, idx: usize) -> Result<Option<u64>, DartError> {
        let st = self.stream(sid)?;
        if idx >= self.variant.ttbrs_per_stream() as usize {
            return Err(DartError::BadRange { iova: idx as u64, len: 0, reason: "no such TTBR index" });
        }
        Ok(st.ttbr(idx))
    }

    /// Points TTBR `idx` of stream `sid` at `table` (or invalidates it with
    /// `None`). Refused on a locked DART (`locked`), before the target is
    /// looked at, changing nothing. A table that is not a `dart-table` frame
    /// owned by this DART is an invariant breach handled by the SoC's
    /// violation mode (docs/design.md §2).
    pub fn set_ttbr(&self, sid: u32, idx: usize, table: Option<u64>) -> Result<(), DartError> {
        self.device.frames().check_running()?;
        let st = self.stream(sid)?;
        if idx >= self.variant.ttbrs_per_stream() as usize {
            return Err(DartError::BadRange { iova: idx as u64, len: 0, reason: "no such TTBR index" });
        }
        let mut m = self.mapper.lock();
        if self.mmio.tcr_ttbr_locked() {
            return Err(DartError::Locked { sid, register: crate::error::LockedRegister::Ttbr { index: idx } });
        }
        if let Some(pa) = table {
            m.check_ttbr_target(&self.kernel(), pa)?;
        }
        st.set_ttbr(idx, table);
        m.ttbr_written(sid, (0..self.variant.ttbrs_per_stream() as usize).any(|i| st.ttbr(i).is_some()));
        // (G5 of `translate::stream`) As in `update_stream_config`.
        m.moved(sid);
        st.bump_gen();
        self.device.walk_cache().invalidate(&*m);
        Ok(())
    }

    /// Installs the interrupt callback, called when ERROR latches a fault.
    pub fn set_interrupt(&self, f: Option<Arc<InterruptFn>>) {
        *self.interrupt.write() = f;
    }

    /// The latched error.
    pub fn error(&self) -> ErrorLatch {
        *self.error.lock()
    }

    /// Clears the latched error (ERROR write-1-to-clear of the FLAG bit).
    pub fn clear_error(&self) {
        *self.error.lock() = ErrorLatch::default();
    }

    /// The interrupt line's level: high while ERROR holds a fault.
    pub fn interrupt_pending(&self) -> bool {
        self.error.lock().first.is_some()
    }
}

/// # Inspection
///
/// Read-only views: identity and geometry, counters (snapshots through
/// [`crate::observe::stats::Stats::snapshot`]), the IOTLB's live entries, and (below)
/// mappings, DART counts and the invariant checks. Nothing here changes the
/// DART.
impl Dart {
    /// Instance name.
    pub fn name(&self) -> &str {
        self.trace.source()
    }

    /// Hardware variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// PTE format.
    pub fn pte_format(&self) -> PteFormat {
        self.format
    }

    /// Number of streams.
    pub fn stream_count(&self) -> u32 {
        self.device.streams().len() as u32
    }

    /// log2 of the page size (= the frame size).
    pub fn page_shift(&self) -> u32 {
        self.device.page_shift()
    }

    /// Invalidation mode.
    pub fn invalidation(&self) -> Invalidation {
        self.invalidation
    }

    /// The geometry stream `sid` translates with now.
    pub fn geometry(&self, sid: u32) -> Result<Geometry, DartError> {
        Ok(self.geometry_for(self.stream(sid)?.config()))
    }

    /// Whether stream `sid` was created trusted (may bypass).
    pub fn trusted(&self, sid: u32) -> Result<bool, DartError> {
        Ok(self.stream(sid)?.trusted)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        self.device.stats()
    }

    /// The IOTLB's capacity: `iotlb_entries` rounded up to a power of two
    /// and clamped to `[1, DartConfig::MAX_IOTLB_ENTRIES]`.
    pub fn iotlb_capacity(&self) -> usize {
        self.device.iotlb_capacity()
    }

    /// Current IOTLB entries of stream `sid` that are live (current generation), as leaves.
    pub fn iotlb_entries(&self, sid: u32) -> Result<Vec<(u64, Leaf)>, DartError> {
        self.device.iotlb_entries(sid)
    }

    #[inline]
    pub(crate) fn stream(&self, sid: u32) -> Result<&StreamState, DartError> {
        self.device.stream(sid)
    }

    #[inline]
    pub(crate) fn geometry_for(&self, c: StreamConfig) -> Geometry {
        Geometry::new(self.variant, self.device.page_shift(), c.four_level)
    }
}

/// # Inspection: events and watches
///
/// Where this DART records what it does (an [`EventLog`]), and the IOVA
/// ranges whose accesses it records one by one.
impl Dart {
    /// Attaches (or with `None` detaches) the event log this DART records
    /// into. Several DARTs (and a frame table) may share one log.
    pub fn set_event_log(&self, log: Option<Arc<EventLog>>) {
        self.trace.set_log(log);
    }

    /// The attached event log.
    pub fn event_log(&self) -> Option<Arc<EventLog>> {
        self.trace.log()
    }

    /// Watches `[iova, iova + len)` of stream `sid`: every DMA through
    /// [`Dart::dma_read`]/[`Dart::dma_write`] touching it is recorded (with
    /// up to [`DMA_DATA_CAP`](crate::observe::events::DMA_DATA_CAP) bytes of data)
    /// while a log is attached and enabled. Refused (`bad-range`,
    /// `NoSuchStream`) for an empty or overflowing range or a stream the
    /// DART lacks; then nothing changes.
    pub fn watch(&self, sid: u32, iova: u64, len: u64) -> Result<(), DartError> {
        self.check_watch(sid, iova, len)?;
        self.trace.watch(WatchRange { stream: sid, iova, len });
        Ok(())
    }

    /// Stops watching exactly the range [`Dart::watch`] was given; `bad-range`
    /// if it is not watched.
    pub fn unwatch(&self, sid: u32, iova: u64, len: u64) -> Result<(), DartError> {
        self.check_watch(sid, iova, len)?;
        if !self.trace.unwatch(WatchRange { stream: sid, iova, len }) {
            return Err(DartError::BadRange { iova, len, reason: "no such watch range" });
        }
        Ok(())
    }

    /// The watched ranges, in the order they were added.
    pub fn watches(&self) -> Vec<WatchRange> {
        self.trace.watches()
    }

    fn check_watch(&self, sid: u32, iova: u64, len: u64) -> Result<(), DartError> {
        self.stream(sid)?;
        if len == 0 {
            return Err(DartError::BadRange { iova, len, reason: "empty watch range" });
        }
        if iova.checked_add(len).is_none() {
            return Err(DartError::BadRange { iova, len, reason: "IOVA range overflows" });
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{DartConfig, Span, StreamConfig, Variant};
    use frame_table::vm_memory::{Bytes, GuestAddress};
    use frame_table::Perm;
    use frame_table::{FrameTable, FrameTableConfig, FrameType};

    /// What one thread saw: two translations of a read of the same 8
    /// bytes, one of a write there, a DMA read and a DMA write of them,
    /// and its slot number afterwards.
    struct Seen {
        reads: [Result<Vec<Span>, DartError>; 2],
        write: Result<Span, DartError>,
        dma: (Result<[u8; 8], DartError>, Result<(), DartError>),
        held: Option<usize>,
    }

    /// On a fresh thread (one without a slot number if `slotless`), after
    /// a flush of stream 1: what it saw, and how much each of stream 1's
    /// `[translations, iotlb_hits, iotlb_misses, walks]` grew.
    fn run(dart: &Dart, slotless: bool) -> (Seen, [u64; 4]) {
        let counts = || {
            let snap = dart.stats().snapshot();
            ["translations", "iotlb_hits", "iotlb_misses", "walks"].map(|n| snap.get(&format!("s1.{n}")))
        };
        dart.flush(Some(1)).unwrap();
        dart.clear_error();
        let before = counts();
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                if slotless {
                    crate::sync::slot::act_as_overflow_thread();
                }
                let spans = || dart.translate(1, 0x4010, 8, Dir::Read).map(|t| t.spans().to_vec());
                let reads = [spans(), spans()];
                let write = dart.translate(1, 0x4010, 8, Dir::Write).map(|t| *t.first());
                let mut buf = [0u8; 8];
                let dma = (dart.dma_read(1, 0x4010, &mut buf).map(|()| buf), dart.dma_write(1, 0x4010, &[0; 8]));
                Seen { reads, write, dma, held: crate::sync::slot::held() }
            })
            .join()
            .unwrap()
        });
        let after = counts();
        let grew = std::array::from_fn(|k| after[k].unwrap() - before[k].unwrap());
        (seen, grew)
    }

    /// A thread without an exclusive slot number (all 64 taken) skips the
    /// hit path and takes the general one: the same spans, the same fault,
    /// the same counts, and nothing left in flight.
    #[test]
    fn a_thread_without_a_slot_translates_and_counts_as_one_with_a_slot() {
        let frames = std::sync::Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
        let dart = Dart::new(frames.clone(), DartConfig::new("overflow", Variant::T8110)).unwrap();
        dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
        let data = frames.alloc(FrameType::UserData, 1).unwrap();
        let pa = frames.pa_of(data[0]).unwrap();
        dart.map(1, 0x4000, &data, Perm::R, None).unwrap();
        let span = Span { iova: 0x4010, pa: pa + 0x10, len: 8 };
        frames.memory().write_slice(b"8 bytes!", GuestAddress(pa + 0x10)).unwrap();
        let write_fault = DartError::Fault(Fault { kind: FaultKind::Write, stream: 1, iova: 0x4010, write: true });
        let check = |seen: Seen| {
            assert_eq!(seen.reads, [Ok(vec![span]), Ok(vec![span])]);
            assert_eq!(seen.write, Err(write_fault.clone()));
            assert_eq!(seen.dma, (Ok(*b"8 bytes!"), Err(write_fault.clone())));
            seen.held
        };

        let (seen, with_slot) = run(&dart, false);
        assert!(check(seen).is_some(), "a fresh thread claims a slot on its first DMA");
        // A miss (and its walk), then four hits: the second read, the
        // write (which faults on the permissions the hit brings), and the
        // two DMAs.
        assert_eq!(with_slot, [5, 4, 1, 1]);

        let (seen, without) = run(&dart, true);
        assert_eq!(check(seen), None, "the thread had no slot");
        assert_eq!(without, with_slot);
        // Every guard left: a synchronize returns.
        dart.device().inflight().synchronize();
    }
}
