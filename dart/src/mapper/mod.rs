//! The kernel-side mapper: writes the DART's tables (the only writer), takes
//! and releases frames' DART counts, invalidates.
//!
//! All mapper operations of one DART serialize on its mapper lock (a
//! `parking_lot` mutex; the DMA path never takes it). The lock covers the
//! table tree rather than one stream because streams may share tables: Linux
//! points every stream of an IOMMU domain at the same page tables, and the
//! register model lets a driver do the same, so a per-stream lock would not
//! protect a shared table.
//!
//! Invariants kept under the lock:
//! - every table is a `dart-table` frame this DART allocated (`tables`), with
//!   its level and its count of valid entries;
//! - every valid leaf PTE holds one DART count on its frame (taken, with the
//!   policy check, before the PTE is written); every cleared one has either
//!   released it (strict, after invalidation and the in-flight wait) or moved
//!   it to "pending invalidation" (deferred, released by the flush that
//!   covers every stream that could still cache it);
//! - a table is freed only once it is empty, unlinked, named by no TTBR, and
//!   the same invalidation has passed;
//! - provenance: `MapperState::provenance` holds `slot → id` exactly while the
//!   leaf PTE at physical address `slot` is the one a [`Dart::map_owned`](crate::Dart::map_owned)
//!   call that returned `id` wrote. The mapper writes a leaf only into an
//!   empty slot, and every path that clears a leaf ([`Dart::unmap`](crate::Dart::unmap),
//!   [`Dart::unmap_owned`](crate::Dart::unmap_owned)) drops its entry in the same critical section,
//!   so an entry never outlives its PTE and a later PTE at the same place
//!   (even a bit-identical one) never inherits it.
//!
//! Mapping provenance (who wrote a leaf, so a mapping service can tell its
//! client's mapping from whatever the tables hold there now) is described on
//! [`MapId`].

mod monitor;

use crate::error::{DartError, LockedRegister};
use crate::hold::Holds;
use crate::hw::pte::{Leaf, PteError, PteFormat, Subpage};
use crate::observe::events::{DartTrace, EventKind};
use crate::observe::stats::Counter;
use crate::translate::stream::StreamState;
use crate::translate::Translator;
use crate::types::{clear_stream, has_stream, set_stream, streams_in, Invalidation, StreamConfig};
use crate::variant::{Geometry, Variant};
use crossbeam_utils::CachePadded;
use frame_table::{Access, Counter as FrameCounter, Frame, FrameType, Perm, Violation};
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;
use std::collections::HashMap;

/// One table the DART owns.
#[derive(Clone, Copy, Debug)]
struct TableInfo {
    /// Level below the TTBR (0 = root).
    level: u32,
    /// Whether it is a leaf table (its valid PTEs are leaves).
    leaf: bool,
    /// Valid entries in it.
    live: u32,
}

/// Frames per [`TableMap`] chunk.
const CHUNK: usize = 64;

/// The tables a DART owns, by frame number: a two-level array whose chunks
/// of [`CHUNK`] frames are allocated when a table first lands in them, so
/// that the lookups every map and unmap makes (one per level) are two
/// indexed loads instead of a hash probe. A chunk costs 12 bytes per frame
/// it covers and exists only where a table is or was, so it adds at most
/// 768 bytes per table (a table is a whole 4 or 16 KiB frame).
#[derive(Debug, Default)]
struct TableMap {
    chunks: Vec<Option<Box<[Option<TableInfo>; CHUNK]>>>,
}

impl TableMap {
    #[inline]
    fn get(&self, f: Frame) -> Option<&TableInfo> {
        self.chunks.get(f.index() / CHUNK)?.as_ref()?[f.index() % CHUNK].as_ref()
    }

    #[inline]
    fn get_mut(&mut self, f: Frame) -> Option<&mut TableInfo> {
        self.chunks.get_mut(f.index() / CHUNK)?.as_mut()?[f.index() % CHUNK].as_mut()
    }

    fn contains_key(&self, f: Frame) -> bool {
        self.get(f).is_some()
    }

    fn insert(&mut self, f: Frame, info: TableInfo) {
        let c = f.index() / CHUNK;
        if self.chunks.len() <= c {
            self.chunks.resize_with(c + 1, || None);
        }
        if let Some(chunk) = self.chunks.get_mut(c) {
            chunk.get_or_insert_with(|| Box::new([None; CHUNK]))[f.index() % CHUNK] = Some(info);
        }
    }

    /// One more valid entry in the table at frame `f` (if it is one).
    #[inline]
    fn count_entry(&mut self, f: Frame) {
        if let Some(t) = self.get_mut(f) {
            t.live += 1;
        }
    }

    fn remove(&mut self, f: Frame) -> Option<TableInfo> {
        self.chunks.get_mut(f.index() / CHUNK)?.as_mut()?[f.index() % CHUNK].take()
    }

    /// Every table with its bookkeeping, in frame order.
    fn iter(&self) -> impl Iterator<Item = (Frame, &TableInfo)> + '_ {
        self.chunks.iter().enumerate().filter_map(|(c, chunk)| Some((c, chunk.as_ref()?))).flat_map(|(c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, info)| Some((Frame((c * CHUNK + i) as u32), info.as_ref()?)))
        })
    }
}

/// Who wrote a leaf PTE: the id a [`Dart::map_owned`](crate::Dart::map_owned) call returned, unique
/// per call over the DART's lifetime.
///
/// # Mapping provenance (docs/design.md §4, "decides ownership from what the tables hold now")
///
/// A mapping service that records "device D mapped IOVA X" cannot tell,
/// later, whether what X reaches is still that mapping: the kernel may have
/// re-pointed the stream's TTBR, toggled TCR.FOUR_LEVEL (so X walks other
/// entries), shared the tables with a sibling stream and unmapped and
/// re-mapped X through it (a PTE bit-identical to the device's). So the DART
/// itself remembers who wrote each leaf: [`Dart::map_owned`](crate::Dart::map_owned) returns a
/// `MapId` (fresh per call, from a counter under the mapper lock) and records
/// it per leaf, keyed by the PTE's physical location (table frame + index),
/// so the record follows the tables through sharing, TTBR re-points and
/// geometry changes, and dies with the PTE: every path that clears a leaf
/// drops it in the same critical section, and a later PTE at the same place
/// (even a bit-identical one) never inherits it. [`Dart::unmap_owned`](crate::Dart::unmap_owned) then
/// removes, under the same lock, only pages whose leaf, reached through the
/// stream's tables *now*, still carries the id the caller names:
/// - [`OwnedScope::Whole`] (an RPC unmap; docs/design.md R6, all or nothing): every
///   page of the range must carry its id, or nothing is unmapped and the
///   first page that does not is `not-mapped`;
/// - [`OwnedScope::Matching`] (a revoke): the pages that carry their id are
///   unmapped, the others stay as they are; `not-mapped` only if none did.
///
/// A page the stream no longer reaches as the owner's mapping stays mapped
/// (docs/design.md §4): where its PTE still exists, out of the stream's reach, it is
/// the kernel's to clear. The ids live beside the tables, never in PTE bits
/// (the tables stay bit-exact with what Linux and m1n1 build), and the DMA
/// path never reads them. [`Dart::map_id`](crate::Dart::map_id) reads the id a page carries;
/// [`Dart::check_provenance`](crate::Dart::check_provenance) checks that every recorded id names a valid
/// leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapId(u64);

impl MapId {
    /// The id as a number (ids start at 1 and grow by one per map call).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for MapId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "map#{}", self.0)
    }
}

/// Which pages of its range [`Dart::unmap_owned`](crate::Dart::unmap_owned) removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnedScope {
    /// All or nothing: every page must still carry its id; otherwise nothing
    /// is unmapped and the first page that does not is `not-mapped`.
    Whole,
    /// Each page on its own: those that still carry their id are unmapped,
    /// the rest are left alone; `not-mapped` only if no page was unmapped.
    Matching,
}

/// What [`Kernel::plan_map`] found: the tables a map must create, and, for a
/// single page whose tables all exist, its leaf PTE's address and the leaf
/// table's frame (the map writes there instead of walking again).
struct MapPlan {
    tables: u64,
    /// Of `tables`, the root tables (a TTBR names them: allocated aligned
    /// for the TTBR encoding, [`Kernel::alloc_roots`]).
    roots: u64,
    leaf_slot: Option<(u64, Frame)>,
}

/// Something a deferred unmap left for a flush to finish.
#[derive(Clone, Debug)]
enum Pending {
    /// A frame's DART count, now "pending invalidation".
    Frame(Frame),
    /// An unlinked, empty table to free.
    Table(Frame),
    /// A driver table whose parent entry was cleared (`monitor`, M6): it
    /// stays linked until the flush that covers it.
    Unlink(Frame),
}

/// A pending item and the streams whose IOTLBs must be flushed before it completes.
#[derive(Clone, Debug)]
struct PendingItem {
    what: Pending,
    streams: [u64; 4],
}

/// The mapper's state (under its lock).
#[derive(Debug, Default)]
pub(crate) struct MapperState {
    tables: TableMap,
    pending: Vec<PendingItem>,
    /// Emptied tables a TTBR still named when they were retired: kept (and
    /// held) until the DART is dropped, never recycled.
    orphans: Vec<Frame>,
    /// Streams whose TTBR or configuration changed since an invalidation
    /// last made all their readers fence (bit `sid % 64` of word
    /// `sid / 64`): a DMA of theirs in flight may still walk the tables
    /// they named before, from any region, so the next invalidation waits
    /// for every region of theirs ([`Kernel::invalidate`]).
    moved: [u64; 4],
    /// Streams with at least one valid TTBR (same bit layout): the only
    /// ones an unmap must look at for TTBRs that reach the tables it
    /// changed, rather than every stream of the DART.
    with_ttbr: [u64; 4],
    /// Leaf PTEs written by [`Dart::map_owned`](crate::Dart::map_owned), by the PTE's physical
    /// address, with the id of the call that wrote them (module docs:
    /// "provenance").
    provenance: FxHashMap<u64, MapId>,
    /// The last [`MapId`] handed out (0: none yet).
    last_id: u64,
    /// Tables drivers built, registered with this DART (`monitor`, M1).
    driver: FxHashMap<Frame, monitor::DriverTable>,
}

impl crate::sync::WriterLock for MapperState {}

impl MapperState {
    /// A fresh mapping id, or a refusal once all 2^64 - 1 are spent (an id
    /// is never handed out twice).
    fn next_map_id(&mut self) -> Result<MapId, DartError> {
        let id = self.last_id.checked_add(1).ok_or(DartError::Config { reason: "mapping ids exhausted".into() })?;
        self.last_id = id;
        Ok(MapId(id))
    }

    /// Drops the provenance of the leaf at `slot`, which is being cleared.
    #[inline]
    fn forget_leaf(&mut self, slot: u64) {
        if !self.provenance.is_empty() {
            self.provenance.remove(&slot);
        }
    }

    /// Records that stream `sid`'s TTBR or configuration changed (see
    /// `moved`).
    pub(crate) fn moved(&mut self, sid: u32) {
        set_stream(&mut self.moved, sid);
    }

    /// Records whether stream `sid` has any valid TTBR now, after a TTBR
    /// write (see `with_ttbr`).
    pub(crate) fn ttbr_written(&mut self, sid: u32, any_valid: bool) {
        if any_valid {
            set_stream(&mut self.with_ttbr, sid);
        } else {
            clear_stream(&mut self.with_ttbr, sid);
        }
    }
}

impl MapperState {
    /// Checks a TTBR target: a `dart-table` frame this DART owns as a table;
    /// anything else is an invariant breach (docs/design.md §2), reported to the frame
    /// table's violation mode.
    pub(crate) fn check_ttbr_target(&mut self, k: &Kernel<'_>, pa: u64) -> Result<(), DartError> {
        let frames = &k.device().frames();
        let f = frames.frame_of(pa).ok();
        let ty = f.and_then(|f| frames.state(f).ok()).map(|s| s.ty());
        if ty != Some(FrameType::DartTable) {
            k.device().stats().add_serialized(self, None, Counter::Violations, 1);
            return Err(frames.report_violation(Violation::TtbrNotTable { pa, ty }).into());
        }
        // Owned (the mapper's, or a driver table that is or may become a
        // root), page aligned, and a table the TTBR encoding names exactly
        // (t8110: 16 KiB aligned, below 2^42).
        let owned = f.is_some_and(|f| self.tables.contains_key(f) || self.may_root(f))
            && pa & ((1 << k.page_shift()) - 1) == 0
            && crate::hw::regs::ttbr_names(k.variant(), k.page_shift(), pa);
        if !owned {
            k.device().stats().add_serialized(self, None, Counter::Violations, 1);
            return Err(frames.report_violation(Violation::TtbrForeign { pa }).into());
        }
        // A driver's table is linked here as a root (`monitor`, M2).
        if let Some(f) = f {
            self.link_driver_root(f);
        }
        Ok(())
    }

    fn table(&self, k: &Kernel<'_>, sid: u32, pa: u64, level: u32, geo: Geometry) -> Result<Frame, DartError> {
        let f = k.device().frames().frame_of(pa).map_err(|_| DartError::ForeignTtbr { sid, pa })?;
        match self.tables.get(f) {
            Some(info) if info.level == level && info.leaf == (level + 1 == geo.levels) => Ok(f),
            _ => Err(DartError::ForeignTtbr { sid, pa }),
        }
    }

    /// [`MapperState::table`] with the table's bookkeeping, in one lookup.
    fn table_mut(
        &mut self,
        k: &Kernel<'_>,
        sid: u32,
        pa: u64,
        level: u32,
        geo: Geometry,
    ) -> Result<(Frame, &mut TableInfo), DartError> {
        let f = k.device().frames().frame_of(pa).map_err(|_| DartError::ForeignTtbr { sid, pa })?;
        match self.tables.get_mut(f) {
            Some(info) if info.level == level && info.leaf == (level + 1 == geo.levels) => Ok((f, info)),
            _ => Err(DartError::ForeignTtbr { sid, pa }),
        }
    }
}

/// The kernel side's component: the mapper's state behind its lock, and the
/// DART's fixed properties the mapper encodes tables with.
pub(crate) struct Mapper {
    /// On a line of its own: map and unmap write it while DMA threads read
    /// the fields around it on every access.
    state: CachePadded<Mutex<MapperState>>,
    variant: Variant,
    format: PteFormat,
    invalidation: Invalidation,
}

impl Mapper {
    /// A mapper with no table for a `variant` DART in `invalidation` mode.
    pub(crate) fn new(variant: Variant, invalidation: Invalidation) -> Mapper {
        Mapper {
            state: CachePadded::new(Mutex::new(MapperState::default())),
            variant,
            format: variant.pte_format(),
            invalidation,
        }
    }

    /// Takes the mapper lock: every change to tables, TTBRs, stream
    /// configurations and the register lock bit holds it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, MapperState> {
        self.state.lock()
    }
}

/// The register state the mapper consults under its lock: whether TCR and
/// TTBR writes are locked (a map that would write a TTBR is then refused).
pub(crate) trait RegisterLock {
    /// Whether TCR/TTBR writes are locked. Every write of the lock bit
    /// holds the mapper lock.
    fn tcr_ttbr_locked(&self) -> bool;
}

/// The kernel side at work: the mapper and the components it writes through
/// or reports to (the device side's streams, tables, tracker and counters;
/// the event trace; the slice holds it counts; the register lock bit). A
/// [`crate::Dart`] lends these for each kernel-side call.
pub(crate) struct Kernel<'a> {
    pub(crate) mapper: &'a Mapper,
    pub(crate) dev: &'a Translator,
    pub(crate) trace: &'a DartTrace,
    pub(crate) holds: &'a Holds,
    pub(crate) regs: &'a dyn RegisterLock,
}

impl Kernel<'_> {
    #[inline]
    fn device(&self) -> &Translator {
        self.dev
    }

    #[inline]
    fn page_shift(&self) -> u32 {
        self.dev.page_shift()
    }

    #[inline]
    fn pte_format(&self) -> PteFormat {
        self.mapper.format
    }

    #[inline]
    fn variant(&self) -> Variant {
        self.mapper.variant
    }

    #[inline]
    fn invalidation(&self) -> Invalidation {
        self.mapper.invalidation
    }

    fn name(&self) -> &str {
        self.trace.source()
    }

    #[inline]
    fn stream(&self, sid: u32) -> Result<&StreamState, DartError> {
        self.dev.stream(sid)
    }

    fn stream_count(&self) -> u32 {
        self.dev.streams().len() as u32
    }

    #[inline]
    fn geometry_for(&self, c: StreamConfig) -> Geometry {
        Geometry::new(self.variant(), self.page_shift(), c.four_level)
    }

    /// The streams (number and state) one of whose TTBRs names the table
    /// at `pa` now.
    pub(crate) fn streams_naming(&self, pa: u64) -> impl Iterator<Item = (u32, &StreamState)> + '_ {
        let ttbrs = self.variant().ttbrs_per_stream() as usize;
        let streams = self.device().streams().iter().enumerate();
        streams.filter(move |(_, st)| (0..ttbrs).any(|i| st.ttbr(i) == Some(pa))).map(|(s, st)| (s as u32, st))
    }

    /// Refuses `call`, which may wait for DMA in flight, when this thread
    /// runs the DART's interrupt callback (inside the faulting DMA).
    pub(crate) fn refuse_in_interrupt(&self, call: &'static str) -> Result<(), DartError> {
        if crate::fault::in_interrupt_of(self.dev.id()) {
            return Err(DartError::InInterrupt { call });
        }
        Ok(())
    }
}

fn pte_error(iova: u64, len: u64, e: PteError) -> DartError {
    let reason = match e {
        PteError::PaTooWide { .. } => "frame beyond the DART's output address width",
        PteError::Unaligned { .. } => "frame not page aligned",
        PteError::NoAccess => "a mapping needs r, w or rw",
        PteError::BadSubpage { .. } => "subpage range not expressible",
    };
    DartError::BadRange { iova, len, reason }
}

/// # Kernel side: the mapper
///
/// The only writer of the translation tables. `map` takes every frame's DART
/// count, with the frame-type policy check, before the PTE that points at it
/// exists; on a locked DART it still maps under existing TTBRs, but a map
/// that would give a stream its first table (a TTBR write) is `locked`; `unmap` and `flush` clear, invalidate and wait for the DMA in
/// flight before they release those counts (slices a port handed out keep
/// their own counts: [`crate::hold`]).
impl Kernel<'_> {
    fn check_range(&self, geo: Geometry, iova: u64, len: u64) -> Result<(), DartError> {
        let page = geo.page_size();
        if len == 0 {
            return Err(DartError::BadRange { iova, len, reason: "empty range" });
        }
        if !iova.is_multiple_of(page) || !len.is_multiple_of(page) {
            return Err(DartError::BadRange { iova, len, reason: "IOVA and length must be page aligned" });
        }
        let end = iova.checked_add(len).ok_or(DartError::BadRange { iova, len, reason: "IOVA range overflows" })?;
        if end > geo.iova_limit() {
            return Err(DartError::BadRange { iova, len, reason: "beyond the stream's IOVA space" });
        }
        Ok(())
    }

    /// [`Dart::map`](crate::Dart::map).
    pub(crate) fn map(
        &self,
        sid: u32,
        iova: u64,
        frames: &[Frame],
        perm: Perm,
        subpage: Option<(u64, u64)>,
    ) -> Result<(), DartError> {
        self.map_inner(sid, iova, frames, perm, subpage, None)
    }

    /// [`Dart::map_owned`](crate::Dart::map_owned).
    pub(crate) fn map_owned(
        &self,
        sid: u32,
        iova: u64,
        frames: &[Frame],
        perm: Perm,
        subpage: Option<(u64, u64)>,
    ) -> Result<MapId, DartError> {
        let mut id = MapId(0);
        self.map_inner(sid, iova, frames, perm, subpage, Some(&mut id))?;
        Ok(id)
    }

    /// [`Dart::map`](crate::Dart::map); with `owned`, takes a fresh id under the mapper lock,
    /// records it for every leaf written and stores it in `owned`.
    fn map_inner(
        &self,
        sid: u32,
        iova: u64,
        frames: &[Frame],
        perm: Perm,
        subpage: Option<(u64, u64)>,
        owned: Option<&mut MapId>,
    ) -> Result<(), DartError> {
        self.device().frames().check_running()?;
        let st = self.stream(sid)?;
        let config = st.config();
        let mut geo = self.geometry_for(config);
        let page = geo.page_size();
        let n = frames.len() as u64;
        let len = n.saturating_mul(page);
        if frames.is_empty() {
            return Err(DartError::BadRange { iova, len: 0, reason: "a mapping needs at least one frame" });
        }
        self.check_range(geo, iova, len)?;
        if perm.is_empty() {
            return Err(DartError::BadRange { iova, len, reason: "a mapping needs r, w or rw" });
        }
        let sp = match subpage {
            None => Subpage::WHOLE,
            Some(_) if n != 1 => {
                return Err(DartError::BadRange { iova, len, reason: "a subpage mapping takes exactly one frame" })
            }
            Some((a, b)) => Subpage::from_bytes(a, b, page).ok_or(DartError::BadRange {
                iova: a,
                len: b.saturating_sub(a),
                reason: "subpage range must be non-empty, 4-byte aligned and inside the page",
            })?,
        };
        let mut leaves: SmallVec<[u64; 4]> = SmallVec::new();
        for &f in frames {
            let pa = self.device().frames().pa_of(f)?;
            let leaf = Leaf { pa, read: perm.read(), write: perm.write(), subpage: sp };
            leaves.push(self.pte_format().encode_leaf(self.page_shift(), &leaf).map_err(|e| pte_error(iova, len, e))?);
        }

        let traced = self.trace.start();
        let mut m = self.mapper.lock();
        // The configuration again, under the lock that configuration
        // changes take: the tables are built for the geometry the stream
        // walks with.
        if st.config() != config {
            geo = self.geometry_for(st.config());
            self.check_range(geo, iova, len)?;
        }
        // Plan: refuse overlaps, count the tables to create, find a
        // one-page map's leaf slot.
        let plan = self.plan_map(&m, sid, st, geo, iova, n)?;
        // A stream without a root gets one by a TTBR write, which a locked
        // DART refuses (the lock bit changes only under this lock).
        if plan.tables > 0 && self.regs.tcr_ttbr_locked() {
            let (first, last) = (geo.ttbr_index(iova), geo.ttbr_index(iova + (len - page)));
            if let Some(index) = (first..=last).find(|&i| st.ttbr(i).is_none()) {
                return Err(DartError::Locked { sid, register: LockedRegister::Ttbr { index } });
            }
        }
        let id = match owned {
            Some(_) => Some(m.next_map_id()?),
            None => None,
        };
        let others = plan.tables - plan.roots;
        let mut pool = if others > 0 { self.alloc_tables(others)? } else { Vec::new() };
        let mut roots = match self.alloc_roots(plan.roots) {
            Ok(r) => r,
            Err(e) => {
                for t in pool {
                    self.drop_table(t);
                }
                return Err(e);
            }
        };
        // Counts, with the policy check, before any PTE exists.
        for (i, &f) in frames.iter().enumerate() {
            if let Err(e) = self.device().frames().acquire(f, Access::Dart, perm) {
                for &g in &frames[..i] {
                    let _ = self.device().frames().release(g, FrameCounter::Dart);
                }
                for t in pool.into_iter().chain(roots) {
                    self.drop_table(t);
                }
                return Err(e.into());
            }
        }
        match (plan.leaf_slot, leaves.as_slice()) {
            // One page whose tables all exist: the slot the plan found
            // (nothing changed it since: the lock is held, and acquiring
            // counts writes no table).
            (Some((slot, table)), &[pte]) => {
                self.device().ptes().store(slot, pte);
                m.tables.count_entry(table);
                if let Some(id) = id {
                    m.provenance.insert(slot, id);
                }
            }
            _ => {
                for (i, &pte) in leaves.iter().enumerate() {
                    let slot =
                        self.install(&mut m, (sid, st), geo, iova + i as u64 * page, pte, (&mut pool, &mut roots));
                    if let Some(id) = id {
                        m.provenance.insert(slot, id);
                    }
                }
            }
        }
        if let (Some(out), Some(id)) = (owned, id) {
            *out = id;
        }
        self.device().stats().add_serialized(&*m, Some(sid), Counter::Maps, n);
        drop(m);
        self.trace.emit_since(traced, || EventKind::Map {
            stream: sid,
            iova,
            pages: n,
            pa: self.device().frames().pa_of(frames[0]).unwrap_or(0),
            perm: perm.name(),
        });
        Ok(())
    }

    /// Counts the tables a map of `n` pages at `iova` must create, refusing
    /// pages already mapped and trees the mapper does not own; for a
    /// single page whose tables all exist, also where its leaf goes.
    fn plan_map(
        &self,
        m: &MapperState,
        sid: u32,
        st: &StreamState,
        geo: Geometry,
        iova: u64,
        n: u64,
    ) -> Result<MapPlan, DartError> {
        let mut missing: FxHashSet<(u32, u64)> = FxHashSet::default();
        let mut leaf_slot = None;
        for i in 0..n {
            let va = iova + i * geo.page_size();
            let mut table = st.ttbr(geo.ttbr_index(va));
            for level in 0..geo.levels {
                let Some(pa) = table else {
                    let cover = geo.page_shift + (geo.levels - level) * geo.bits_per_level();
                    missing.insert((level, va >> cover));
                    continue;
                };
                let tf = m.table(self, sid, pa, level, geo)?;
                let slot = pa + 8 * geo.index(va, level) as u64;
                let pte = self.device().ptes().load(slot).unwrap_or(0);
                if level + 1 < geo.levels {
                    table = self.pte_format().decode_table(self.page_shift(), pte);
                } else if crate::hw::pte::PteFormat::is_valid(pte) {
                    return Err(DartError::IovaInUse { sid, iova: va });
                } else if n == 1 {
                    leaf_slot = Some((slot, tf));
                }
            }
        }
        let roots = missing.iter().filter(|&&(level, _)| level == 0).count() as u64;
        Ok(MapPlan { tables: missing.len() as u64, roots, leaf_slot })
    }

    /// Writes one leaf, creating tables from `pool` on the way, and returns
    /// the leaf's slot. The plan guaranteed the slot is free and the pool is
    /// large enough.
    fn install(
        &self,
        m: &mut MapperState,
        (sid, st): (u32, &StreamState),
        geo: Geometry,
        iova: u64,
        leaf_pte: u64,
        (pool, roots): (&mut Vec<Frame>, &mut Vec<Frame>),
    ) -> u64 {
        let idx = geo.ttbr_index(iova);
        let mut new_table = |m: &mut MapperState, level: u32| -> u64 {
            let from = if level == 0 { &mut *roots } else { &mut *pool };
            let f = from.pop().expect("plan counted every table");
            m.tables.insert(f, TableInfo { level, leaf: level + 1 == geo.levels, live: 0 });
            self.device().frames().pa_of(f).unwrap_or(0)
        };
        let mut table = match st.ttbr(idx) {
            Some(pa) => pa,
            None => {
                let pa = new_table(m, 0);
                st.set_ttbr(idx, Some(pa));
                m.ttbr_written(sid, true);
                pa
            }
        };
        // One more valid entry in the (owned, planned) table at `table`.
        let count_entry = |m: &mut MapperState, table: u64| {
            if let Ok(tf) = self.device().frames().frame_of(table) {
                m.tables.count_entry(tf);
            }
        };
        let leaf_level = geo.levels.saturating_sub(1);
        for level in 0..leaf_level {
            let slot = table + 8 * geo.index(iova, level) as u64;
            let pte = self.device().ptes().load(slot).unwrap_or(0);
            table = match self.pte_format().decode_table(self.page_shift(), pte) {
                Some(next) => next,
                None => {
                    let pa = new_table(m, level + 1);
                    let desc = self.pte_format().encode_table(self.page_shift(), pa).unwrap_or(0);
                    self.device().ptes().store(slot, desc);
                    count_entry(m, table);
                    pa
                }
            };
        }
        let slot = table + 8 * geo.index(iova, leaf_level) as u64;
        self.device().ptes().store(slot, leaf_pte);
        count_entry(m, table);
        slot
    }

    /// [`Dart::unmap`](crate::Dart::unmap).
    pub(crate) fn unmap(&self, sid: u32, iova: u64, len: u64) -> Result<u64, DartError> {
        self.unmap_inner(sid, iova, len, None)
    }

    /// [`Dart::unmap_owned`](crate::Dart::unmap_owned).
    pub(crate) fn unmap_owned(
        &self,
        sid: u32,
        iova: u64,
        owners: &[MapId],
        scope: OwnedScope,
    ) -> Result<u64, DartError> {
        let len = (owners.len() as u64).saturating_mul(1 << self.page_shift());
        self.unmap_inner(sid, iova, len, Some((owners, scope)))
    }

    /// [`Dart::unmap`](crate::Dart::unmap); with `owned`, [`Dart::unmap_owned`](crate::Dart::unmap_owned)'s check (`len`
    /// is then `owners.len()` pages).
    fn unmap_inner(
        &self,
        sid: u32,
        iova: u64,
        len: u64,
        owned: Option<(&[MapId], OwnedScope)>,
    ) -> Result<u64, DartError> {
        self.device().frames().check_running()?;
        self.refuse_in_interrupt("unmap")?;
        let st = self.stream(sid)?;
        let config = st.config();
        let mut geo = self.geometry_for(config);
        self.check_range(geo, iova, len)?;
        let traced = self.trace.start();
        let mut m = self.mapper.lock();
        // The configuration again, under the lock that configuration
        // changes take: a geometry read before it may be stale, and its
        // IOVAs (and so the regions `invalidate` names) would not be the
        // ones the stream's DMA walks with now.
        if st.config() != config {
            geo = self.geometry_for(st.config());
            self.check_range(geo, iova, len)?;
        }
        let fmt = self.pte_format();
        let shift = self.page_shift();
        if let Some((owners, OwnedScope::Whole)) = owned {
            let page = geo.page_size();
            for (i, id) in owners.iter().enumerate() {
                let va = iova + i as u64 * page; // `check_range`: no overflow
                if self.leaf_slot(&m, sid, st, geo, va).and_then(|slot| m.provenance.get(&slot)) != Some(id) {
                    return Err(DartError::NotMapped { sid, iova: va, len: page });
                }
            }
        }
        let mut released: SmallVec<[Frame; 4]> = SmallVec::new();
        let mut retired: SmallVec<[Frame; 4]> = SmallVec::new();
        let mut touched: SmallVec<[u64; 8]> = SmallVec::new();
        // Whether a table above a leaf was retired ([`Kernel::invalidate`]).
        let mut above_leaf = false;
        let mut va = iova;
        let end = iova + len; // `check_range`: no overflow
        while va < end {
            // The tables above the leaf table: (frame, slot of the next level's descriptor).
            let mut parents: SmallVec<[(Frame, u64); 3]> = SmallVec::new();
            let mut table = st.ttbr(geo.ttbr_index(va));
            // A missing table covers a whole aligned block: skip it, so that
            // unmapping a huge, mostly empty range costs no more than its tables.
            let mut step = geo.page_size();
            for level in 0..geo.levels {
                let Some(pa) = table else {
                    step = 1 << (geo.page_shift + (geo.levels - level) * geo.bits_per_level());
                    break;
                };
                let slot = pa + 8 * geo.index(va, level) as u64;
                if level + 1 < geo.levels {
                    let Ok(tf) = m.table(self, sid, pa, level, geo) else { break };
                    if !touched.contains(&pa) {
                        touched.push(pa);
                    }
                    parents.push((tf, slot));
                    table = fmt.decode_table(shift, self.device().ptes().load(slot).unwrap_or(0));
                    continue;
                }
                if let Some((owners, _)) = owned {
                    // A page whose leaf is not (or no longer) the owner's
                    // stays as it is. (`Whole` checked every page above.)
                    let i = ((va - iova) >> geo.page_shift) as usize;
                    if m.provenance.get(&slot) != owners.get(i) {
                        break;
                    }
                }
                let Ok((tf, info)) = m.table_mut(self, sid, pa, level, geo) else { break };
                if !touched.contains(&pa) {
                    touched.push(pa);
                }
                let Some(leaf) = fmt.decode_leaf(shift, self.device().ptes().load(slot).unwrap_or(0)) else { break };
                self.device().ptes().store(slot, 0);
                if let Ok(f) = self.device().frames().frame_of(leaf.pa) {
                    released.push(f);
                }
                info.live = info.live.saturating_sub(1);
                let emptied = info.live == 0;
                m.forget_leaf(slot);
                if emptied {
                    above_leaf |= self.retire_emptied(&mut m, tf, &parents, &mut retired);
                }
            }
            va = (va & !(step - 1)) + step;
        }
        if released.is_empty() {
            return Err(DartError::NotMapped { sid, iova, len });
        }
        // Every stream whose TTBR can reach what changed must drop its IOTLB entries.
        let mut affected = [0u64; 4];
        set_stream(&mut affected, sid);
        let ttbrs = self.variant().ttbrs_per_stream() as usize;
        let touched = touched.as_slice();
        let mut reaching = 0;
        for s in streams_in(m.with_ttbr) {
            let Some(other) = self.device().streams().get(s) else { continue };
            let n = (0..ttbrs).filter(|&i| other.ttbr(i).is_some_and(|pa| touched.contains(&pa))).count();
            if n > 0 {
                set_stream(&mut affected, s as u32);
            }
            if s == sid as usize {
                reaching = n;
            }
        }
        // Stream `sid` loses only the IOTLB entries and fences only the
        // readers of the regions of `[iova, iova + len)` when the TTBR this
        // walk began at is the only one of its TTBRs that reaches what
        // changed. A second one (two TTBRs naming tables of one tree) maps
        // the same tables at other IOVAs, in other regions: then all of
        // them.
        let unmapped = (reaching <= 1).then_some((sid, iova, len, above_leaf));
        let pages = released.len() as u64;
        match self.invalidation() {
            Invalidation::Strict => {
                self.invalidate(&mut m, &affected, unmapped);
                // Invariant 2 of `crate::hold`: released only after the wait
                // for DMA in flight (`crate::sync::inflight`, I5), so a hold
                // taken inside a section of the old entry already counts.
                for f in released {
                    let _ = self.device().frames().release(f, FrameCounter::Dart);
                }
                for t in retired {
                    self.free_table(&mut m, t);
                }
            }
            Invalidation::Deferred => {
                let mut now: SmallVec<[Frame; 4]> = SmallVec::new();
                for f in released {
                    match self.device().frames().defer_dart(f) {
                        Ok(_) => m.pending.push(PendingItem { what: Pending::Frame(f), streams: affected }),
                        Err(_) => now.push(f),
                    }
                }
                for t in retired {
                    m.pending.push(PendingItem { what: Pending::Table(t), streams: affected });
                }
                if !now.is_empty() {
                    // The pending counter is full: this part goes strict
                    // (its tables stay pending until a flush of all regions).
                    self.invalidate(&mut m, &affected, unmapped);
                    // Invariant 2 of `crate::hold`, as in strict mode.
                    for f in now {
                        let _ = self.device().frames().release(f, FrameCounter::Dart);
                    }
                }
            }
        }
        self.device().stats().add_serialized(&*m, Some(sid), Counter::Unmaps, pages);
        drop(m);
        self.trace.emit_since(traced, || EventKind::Unmap {
            stream: sid,
            iova,
            len,
            pages,
            invalidation: self.invalidation().name(),
        });
        Ok(pages)
    }

    /// The slot of the valid leaf PTE that stream `sid`'s tables, as they
    /// are now, give `iova` with geometry `geo`, if the walk stays in tables
    /// this mapper owns at the levels it built them for.
    fn leaf_slot(&self, m: &MapperState, sid: u32, st: &StreamState, geo: Geometry, iova: u64) -> Option<u64> {
        let fmt = self.pte_format();
        let mut table = st.ttbr(geo.ttbr_index(iova))?;
        for level in 0..geo.levels {
            m.table(self, sid, table, level, geo).ok()?;
            let slot = table + 8 * geo.index(iova, level) as u64;
            let pte = self.device().ptes().load(slot).unwrap_or(0);
            if level + 1 == geo.levels {
                return fmt.decode_leaf(self.page_shift(), pte).map(|_| slot);
            }
            table = fmt.decode_table(self.page_shift(), pte)?;
        }
        None
    }

    /// Unlinks the emptied leaf table `t` (below `parents`, root first) and
    /// every parent it leaves empty, up to (not including) the root,
    /// retiring each. Whether it retired a table above the leaf: such a
    /// table spans more than one IOVA region, so its invalidation must
    /// make every reader of the stream fence ([`Kernel::invalidate`]).
    fn retire_emptied(
        &self,
        m: &mut MapperState,
        mut t: Frame,
        parents: &[(Frame, u64)],
        retired: &mut SmallVec<[Frame; 4]>,
    ) -> bool {
        let mut above_leaf = false;
        for (depth, &(parent, slot)) in parents.iter().enumerate().rev() {
            self.device().ptes().store(slot, 0);
            self.device().walk_cache().invalidate(m);
            m.tables.remove(t);
            retired.push(t);
            let Some(info) = m.tables.get_mut(parent) else { return above_leaf };
            info.live = info.live.saturating_sub(1);
            if info.live > 0 || depth == 0 {
                return above_leaf;
            }
            t = parent;
            above_leaf = true;
        }
        above_leaf
    }

    /// Bumps the generations of every stream in `mask` and waits for DMA in
    /// flight. With `unmapped = Some((sid, iova, len, above_leaf))`, stream
    /// `sid` only loses the IOTLB entries of the regions `[iova, iova +
    /// len)` touches (the only ones that can be stale: its other PTEs did
    /// not change); every other stream in `mask` shares a table and loses
    /// them all. The caller holds the mapper lock (`m`).
    ///
    /// The wait makes the readers of what changed fence meanwhile
    /// ([`InFlight::synchronize_regions`](crate::sync::inflight::InFlight::synchronize_regions)):
    /// for `sid`, those of `[iova, iova + len)`'s regions, or of all its
    /// regions when `above_leaf` (a table above the leaf was retired: it
    /// spans many regions, and a reader of any may be walking through it);
    /// for the other streams, all their regions; and all the regions of
    /// every stream whose TTBR or configuration changed since the last
    /// invalidation (`MapperState::moved`, which this clears), whose DMA in
    /// flight may still walk the tables it named before. A leaf table lies
    /// within one region (`walk`'s block is never wider than a region), and
    /// the caller narrows `sid` only when the one TTBR it walked from
    /// reaches what changed, so a reader of another region reads nothing
    /// this invalidation changed or frees.
    fn invalidate(&self, m: &mut MapperState, mask: &[u64; 4], unmapped: Option<(u32, u64, u64, bool)>) {
        let mut narrowed = None;
        for s in streams_in(*mask) {
            if let Some(st) = self.device().streams().get(s) {
                match unmapped {
                    Some((sid, iova, len, above_leaf)) if sid as usize == s => {
                        let range = crate::types::region_mask(iova, len);
                        // (G3, G5 of `translate::stream`) After the PTEs were
                        // cleared, before `synchronize_regions` below.
                        st.bump_gens_before_synchronize(range);
                        if !above_leaf {
                            narrowed = Some((sid, range));
                        }
                    }
                    // (G3, G5) Every generation of a stream sharing a table.
                    _ => st.bump_gen_before_synchronize(),
                }
                self.device().stats().add_serialized(m, Some(s as u32), Counter::Invalidations, 1);
            }
        }
        let mut fenced = *mask;
        for (f, moved) in fenced.iter_mut().zip(m.moved) {
            *f |= moved;
        }
        // A moved stream that is also `sid` is not narrowed.
        if narrowed.is_some_and(|(sid, _)| has_stream(&m.moved, sid)) {
            narrowed = None;
        }
        // (I4, I9 of `crate::sync::inflight`) Its fence `F` orders the bumps
        // above before the scan; `fenced` names every region a DMA in flight
        // may read what changed in, moved streams included.
        self.device().inflight().synchronize_regions(&fenced, narrowed);
        m.moved = [0; 4];
    }

    /// Frees a retired table unless a TTBR still names it (then it stays
    /// allocated, orphaned, until the DART is dropped: never recycled while
    /// a walk could start from it).
    fn free_table(&self, m: &mut MapperState, t: Frame) {
        let pa = self.device().frames().pa_of(t).unwrap_or(u64::MAX);
        if self.streams_naming(pa).next().is_some() {
            m.orphans.push(t);
        } else {
            self.drop_table(t);
        }
    }

    /// Allocates `n` table frames and takes the DART's hold on each (see
    /// [`frame_table::FrameTable::hold_table`]): from here until
    /// [`Kernel::drop_table`], freeing or retyping one is an invariant breach.
    fn alloc_tables(&self, n: u64) -> Result<Vec<Frame>, DartError> {
        self.alloc_tables_aligned(n, 1)
    }

    /// [`Kernel::alloc_tables`] of `n` root tables: each one a table the
    /// TTBR encoding can name (t8110 names PA >> 14 at every page size, so
    /// at 4 KiB pages a root is 16 KiB aligned). A root the encoding cannot
    /// name (above its PA width) is refused, not handed out.
    fn alloc_roots(&self, n: u64) -> Result<Vec<Frame>, DartError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let (v, shift) = (self.variant(), self.page_shift());
        let align = crate::hw::regs::ttbr_align(v, shift) >> shift;
        let pool = self.alloc_tables_aligned(n, align.max(1))?;
        let frames = self.device().frames();
        let unnamed =
            pool.iter().find_map(|&f| frames.pa_of(f).ok().filter(|&pa| !crate::hw::regs::ttbr_names(v, shift, pa)));
        if let Some(pa) = unnamed {
            for t in pool {
                self.drop_table(t);
            }
            return Err(DartError::BadRange { iova: pa, len: 0, reason: "no free table frame the TTBR can name" });
        }
        Ok(pool)
    }

    fn alloc_tables_aligned(&self, n: u64, align_frames: u64) -> Result<Vec<Frame>, DartError> {
        let pool = self.device().frames().alloc_aligned(FrameType::DartTable, n, align_frames)?;
        for (i, &t) in pool.iter().enumerate() {
            // Held only if nothing counts it yet: a driver's monitor write
            // may have registered the fresh frame with another DART in
            // between (`monitor`, M1); that DART keeps it.
            let held = self.device().frames().hold_table_sole(t);
            if !matches!(held, Ok(Some(_))) {
                for &u in &pool[..i] {
                    let _ = self.device().frames().release(u, FrameCounter::Dart);
                }
                for &u in pool.iter().filter(|&&u| u != t || held.is_err()) {
                    let _ = self.device().frames().free(u);
                }
                let pa = self.device().frames().pa_of(t).unwrap_or(0);
                return Err(match held {
                    Err(e) => e.into(),
                    _ => DartError::TableInUse { pa, reason: "another DART registered the fresh table frame" },
                });
            }
        }
        Ok(pool)
    }

    /// Drops the DART's hold on a table frame nothing can walk any more, and frees it.
    fn drop_table(&self, t: Frame) {
        let _ = self.device().frames().release(t, FrameCounter::Dart);
        let _ = self.device().frames().free(t);
    }

    /// [`Dart::flush`](crate::Dart::flush).
    pub(crate) fn flush(&self, sid: Option<u32>) -> Result<(), DartError> {
        self.device().frames().check_running()?;
        self.refuse_in_interrupt("flush")?;
        if let Some(s) = sid {
            self.stream(s)?;
        }
        let mut mask = [0u64; 4];
        match sid {
            Some(s) => set_stream(&mut mask, s),
            None => (0..self.stream_count()).for_each(|s| set_stream(&mut mask, s)),
        }
        self.flush_streams(mask);
        Ok(())
    }

    /// [`Dart::flush`](crate::Dart::flush) of the streams in the bitmap `mask` (bit `sid` of
    /// word `sid / 64`; bits of streams the DART lacks are ignored).
    pub(crate) fn flush_streams(&self, mask: [u64; 4]) {
        let traced = self.trace.start();
        let mut m = self.mapper.lock();
        self.invalidate(&mut m, &mask, None);
        // Invariant 2 of `crate::hold`: pending counts drop only after the
        // wait for DMA in flight.
        let items = std::mem::take(&mut m.pending);
        for mut item in items {
            for (w, f) in item.streams.iter_mut().zip(mask.iter()) {
                *w &= !f;
            }
            if item.streams.iter().any(|&w| w != 0) {
                m.pending.push(item);
                continue;
            }
            match item.what {
                Pending::Frame(f) => {
                    let _ = self.device().frames().release(f, FrameCounter::PendingInvalidation);
                }
                Pending::Table(t) => self.free_table(&mut m, t),
                Pending::Unlink(t) => self.complete_unlink(&mut m, t),
            }
        }
        drop(m);
        self.trace.emit_since(traced, || EventKind::Flush {
            streams: (0..self.stream_count()).filter(|&s| has_stream(&mask, s)).collect(),
        });
    }

    /// [`Dart::alloc_root_table`](crate::Dart::alloc_root_table).
    pub(crate) fn alloc_root_table(&self) -> Result<u64, DartError> {
        self.device().frames().check_running()?;
        let mut m = self.mapper.lock();
        let f = self.alloc_roots(1)?[0];
        m.tables.insert(f, TableInfo { level: 0, leaf: false, live: 0 });
        Ok(self.device().frames().pa_of(f)?)
    }

    /// [`Dart::free_root_table`](crate::Dart::free_root_table).
    pub(crate) fn free_root_table(&self, pa: u64) -> Result<(), DartError> {
        self.device().frames().check_running()?;
        self.refuse_in_interrupt("free_root_table")?;
        let mut m = self.mapper.lock();
        let refuse = |reason| Err(DartError::BadRange { iova: pa, len: 0, reason });
        let Ok(f) = self.device().frames().frame_of(pa) else { return refuse("not a root table of this DART") };
        match m.tables.get(f) {
            Some(info) if info.level == 0 && pa & ((1 << self.page_shift()) - 1) == 0 => {
                if info.live > 0 {
                    return refuse("the root table still has entries");
                }
            }
            _ => return refuse("not a root table of this DART"),
        }
        if self.streams_naming(pa).next().is_some() {
            return refuse("a TTBR still names the root table");
        }
        m.tables.remove(f);
        // A DMA that loaded the TTBR before it changed may still be walking.
        self.device().inflight().synchronize();
        self.drop_table(f);
        Ok(())
    }
}

/// # Inspection: mappings, counts and invariants
///
/// Read-only, under the mapper lock: what the tables map, which frames they
/// and the outstanding invalidations and slice holds count, and the checks
/// the runner and tests assert after every step.
impl Kernel<'_> {
    /// [`Dart::mappings`](crate::Dart::mappings).
    pub(crate) fn mappings(&self, sid: u32) -> Result<Vec<(u64, Leaf)>, DartError> {
        let st = self.stream(sid)?;
        let geo = self.geometry_for(st.config());
        let m = self.mapper.lock();
        let mut out = Vec::new();
        for idx in 0..self.variant().ttbrs_per_stream() as usize {
            if let Some(root) = st.ttbr(idx) {
                let base = (idx as u64) << (geo.page_shift + geo.levels * geo.bits_per_level());
                self.collect_leaves(&m, geo, root, 0, base, &mut out);
            }
        }
        Ok(out)
    }

    fn collect_leaves(
        &self,
        m: &MapperState,
        geo: Geometry,
        table: u64,
        level: u32,
        base: u64,
        out: &mut Vec<(u64, Leaf)>,
    ) {
        let Ok(tf) = self.device().frames().frame_of(table) else { return };
        let ok = self.device().frames().state(tf).is_ok_and(|s| s.ty() == FrameType::DartTable);
        if !ok || level >= geo.levels {
            return;
        }
        // A table the mapper built as a non-leaf (a deeper tree seen through
        // a shallower geometry: TCR.FOUR_LEVEL cleared over four-level
        // tables) holds table descriptors, not leaves. The walker reading them
        // as leaves finds `dart-table` frames and faults forbidden-frame, so
        // they map nothing.
        if level + 1 == geo.levels
            && (m.tables.get(tf).is_some_and(|i| !i.leaf) || m.driver.get(&tf).is_some_and(|d| !d.is_leaf_table()))
        {
            return;
        }
        let shift = geo.page_shift + (geo.levels - 1 - level) * geo.bits_per_level();
        for i in 0..geo.entries_per_table() {
            let pte = self.device().ptes().load(table + 8 * i).unwrap_or(0);
            let va = base | (i << shift);
            if level + 1 < geo.levels {
                if let Some(next) = self.pte_format().decode_table(self.page_shift(), pte) {
                    self.collect_leaves(m, geo, next, level + 1, va, out);
                }
            } else if let Some(leaf) = self.pte_format().decode_leaf(self.page_shift(), pte) {
                out.push((va, leaf));
            }
        }
    }

    /// [`Dart::dart_counts`](crate::Dart::dart_counts).
    pub(crate) fn dart_counts(&self) -> HashMap<Frame, (u64, u64)> {
        let m = self.mapper.lock();
        let mut out: HashMap<Frame, (u64, u64)> = HashMap::new();
        let entries = 1u64 << (self.page_shift() - 3);
        // Leaf tables: the mapper's and drivers' (`monitor`, M4).
        let mapper_leaves = m.tables.iter().filter(|(_, info)| info.leaf).map(|(tf, _)| tf);
        let driver_leaves = m.driver.iter().filter(|(_, d)| d.is_leaf_table()).map(|(&tf, _)| tf);
        for tf in mapper_leaves.chain(driver_leaves) {
            let Ok(base) = self.device().frames().pa_of(tf) else { continue };
            for i in 0..entries {
                let pte = self.device().ptes().load(base + 8 * i).unwrap_or(0);
                if let Some(leaf) = self.pte_format().decode_leaf(self.page_shift(), pte) {
                    if let Ok(f) = self.device().frames().frame_of(leaf.pa) {
                        out.entry(f).or_default().0 += 1;
                    }
                }
            }
        }
        for item in &m.pending {
            match item.what {
                Pending::Frame(f) => out.entry(f).or_default().1 += 1,
                Pending::Table(t) => out.entry(t).or_default().0 += 1,
                Pending::Unlink(_) => {}
            }
        }
        // The DART's hold on each table it owns, its mapper's and drivers'.
        for t in m.tables.iter().map(|(t, _)| t).chain(m.orphans.iter().copied()).chain(m.driver.keys().copied()) {
            out.entry(t).or_default().0 += 1;
        }
        // Slices its ports handed out (`crate::hold`): taken after the
        // mapper lock, the order every path that takes both follows.
        for (f, n) in self.holds.all() {
            out.entry(f).or_default().0 += n;
        }
        drop(m);
        out
    }

    /// [`Dart::map_id`](crate::Dart::map_id).
    pub(crate) fn map_id(&self, sid: u32, iova: u64) -> Result<Option<MapId>, DartError> {
        let st = self.stream(sid)?;
        let m = self.mapper.lock();
        let geo = self.geometry_for(st.config());
        if iova >= geo.iova_limit() {
            return Ok(None);
        }
        Ok(self
            .leaf_slot(&m, sid, st, geo, iova & !(geo.page_size() - 1))
            .and_then(|slot| m.provenance.get(&slot))
            .copied())
    }

    /// [`Dart::check_provenance`](crate::Dart::check_provenance).
    pub(crate) fn check_provenance(&self) -> Result<(), String> {
        let m = self.mapper.lock();
        let page_mask = (1u64 << self.page_shift()) - 1;
        for (&slot, id) in &m.provenance {
            let in_leaf_table = self
                .device()
                .frames()
                .frame_of(slot & !page_mask)
                .ok()
                .and_then(|t| m.tables.get(t))
                .is_some_and(|info| info.leaf);
            let valid = self
                .pte_format()
                .decode_leaf(self.page_shift(), self.device().ptes().load(slot).unwrap_or(0))
                .is_some();
            if !(in_leaf_table && valid) {
                return Err(format!("{}: {id} is recorded for PTE {slot:#x}, which holds no leaf", self.name()));
            }
        }
        Ok(())
    }

    /// [`Dart::table_frames`](crate::Dart::table_frames).
    pub(crate) fn table_frames(&self) -> Vec<Frame> {
        let m = self.mapper.lock();
        m.tables.iter().map(|(t, _)| t).chain(m.driver.keys().copied()).collect()
    }

    /// [`Dart::check_restricted_unreachable`](crate::Dart::check_restricted_unreachable).
    pub(crate) fn check_restricted_unreachable(&self) -> Result<(), String> {
        if let Err(wrong) = self.device().frames().reach_map_consistent() {
            let shown: Vec<String> = wrong.iter().take(8).map(|f| f.to_string()).collect();
            return Err(format!(
                "{}: the device-reachable map disagrees with the type of {} frame(s): {}",
                self.name(),
                wrong.len(),
                shown.join(", ")
            ));
        }
        let tlb = self.device().iotlb_entries_by_stream();
        for (sid, st) in self.device().streams().iter().enumerate() {
            let cached = tlb.get(sid).map_or(&[][..], Vec::as_slice);
            let sid = sid as u32;
            let c = st.config();
            if c.bypass && !st.trusted {
                return Err(format!("{}: untrusted stream {sid} bypasses translation", self.name()));
            }
            for (iova, leaf) in self.mappings(sid).unwrap_or_default() {
                self.check_reachable(sid, iova, leaf.pa, "PTE")?;
            }
            for &(iova, leaf) in cached {
                self.check_reachable(sid, iova, leaf.pa, "IOTLB entry")?;
            }
        }
        Ok(())
    }

    fn check_reachable(&self, sid: u32, iova: u64, pa: u64, what: &str) -> Result<(), String> {
        let ty = self.device().frames().frame_of(pa).and_then(|f| self.device().frames().state(f)).map(|s| s.ty());
        match ty {
            Ok(t) if frame_table::policy::device_reachable(t) => Ok(()),
            Ok(t) => {
                Err(format!("{} stream {sid}: {what} at IOVA {iova:#x} reaches {pa:#x}, a {t} frame", self.name()))
            }
            Err(_) => {
                Err(format!("{} stream {sid}: {what} at IOVA {iova:#x} reaches {pa:#x}, outside memory", self.name()))
            }
        }
    }

    /// [`Dart::check_iotlb_coherent`](crate::Dart::check_iotlb_coherent).
    pub(crate) fn check_iotlb_coherent(&self) -> Result<(), String> {
        if self.invalidation() == Invalidation::Deferred {
            return Ok(());
        }
        // Entries a driver cleared are pending until a flush covers them
        // (`monitor`, M6): their stale IOTLB entries are allowed until then.
        let (pending, unlinking) = {
            let m = self.mapper.lock();
            let mut frames: FxHashSet<(u32, Frame)> = FxHashSet::default();
            let mut unlinking = [0u64; 4];
            for item in &m.pending {
                for s in streams_in(item.streams) {
                    match item.what {
                        Pending::Frame(f) => {
                            frames.insert((s as u32, f));
                        }
                        Pending::Unlink(_) => set_stream(&mut unlinking, s as u32),
                        Pending::Table(_) => {}
                    }
                }
            }
            (frames, unlinking)
        };
        let tlb = self.device().iotlb_entries_by_stream();
        for (sid, cached) in (0..self.stream_count()).zip(&tlb) {
            if cached.is_empty() || has_stream(&unlinking, sid) {
                continue;
            }
            let pt: HashMap<u64, Leaf> = self.mappings(sid).unwrap_or_default().into_iter().collect();
            for &(iova, leaf) in cached {
                let mut expect = pt.get(&iova).copied();
                if let Some(e) = expect.as_mut() {
                    // The IOTLB keeps whole-page subpage ranges as decoded.
                    if e.subpage.is_whole(1 << self.page_shift()) && leaf.subpage.is_whole(1 << self.page_shift()) {
                        e.subpage = leaf.subpage;
                    }
                }
                let stale_pending = self.device().frames().frame_of(leaf.pa).is_ok_and(|f| pending.contains(&(sid, f)));
                if expect != Some(leaf) && !stale_pending {
                    return Err(format!(
                        "{} stream {sid}: IOTLB entry at IOVA {iova:#x} is {leaf:?}, the PTE is {expect:?}",
                        self.name()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Dart;

    fn info(level: u32, live: u32) -> TableInfo {
        TableInfo { level, leaf: level == 1, live }
    }

    /// A strict unmap makes the readers of the regions it changed fence,
    /// and of every region of the stream once it retires a table above a
    /// leaf (one that spans many regions).
    #[test]
    fn strict_unmaps_fence_the_regions_they_change_and_all_when_a_middle_table_goes() {
        use crate::types::region_bit;
        use crate::{DartConfig, StreamConfig, Variant};
        use frame_table::{FrameTable, FrameTableConfig};
        let frames = std::sync::Arc::new(FrameTable::new(FrameTableConfig::with_memory(64 << 20)).unwrap());
        let dart = Dart::new(frames.clone(), DartConfig::new("fence", Variant::T8110)).unwrap();
        let four = StreamConfig { four_level: true, ..StreamConfig::TRANSLATING };
        dart.set_stream_config(1, four).unwrap();
        let data = frames.alloc(FrameType::UserData, 2).unwrap();
        // Two pages in regions 1 and 5: two leaf tables under one middle table.
        let (p1, p5) = (1u64 << 25, 5u64 << 25);
        dart.map(1, p1, &data[..1], Perm::RW, None).unwrap();
        dart.map(1, p5, &data[1..], Perm::RW, None).unwrap();
        assert!(dart.translate(1, p1, 8, crate::Dir::Read).is_ok());
        let calls = || std::mem::take(&mut *dart.device().inflight().synchronized.lock());
        // The configuration change's first invalidation names the stream
        // whole (see the next test).
        dart.flush(Some(1)).unwrap();
        calls();

        assert_eq!(dart.unmap(1, p1, 1 << 14), Ok(1));
        assert_eq!(calls(), [([2, 0, 0, 0], Some((1, region_bit(p1))))], "the leaf table went: region 1 only");
        assert_eq!(dart.unmap(1, p5, 1 << 14), Ok(1));
        assert_eq!(calls(), [([2, 0, 0, 0], None)], "the middle table went too: every region");
        // A flush invalidates every region of the streams it covers.
        dart.flush(Some(1)).unwrap();
        assert_eq!(calls(), [([2, 0, 0, 0], None)]);
    }

    /// A stream whose TTBR or configuration changed may have DMA in flight
    /// on the tables it named before, at any IOVA: the next invalidation
    /// (of any stream) makes every region of it fence, and only the next.
    #[test]
    fn the_invalidation_after_a_ttbr_or_config_change_fences_all_that_streams_regions() {
        use crate::types::region_bit;
        use crate::{DartConfig, StreamConfig, Variant};
        use frame_table::{FrameTable, FrameTableConfig};
        let frames = std::sync::Arc::new(FrameTable::new(FrameTableConfig::with_memory(64 << 20)).unwrap());
        let dart = Dart::new(frames.clone(), DartConfig::new("fence", Variant::T8110)).unwrap();
        for sid in [1, 2] {
            dart.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
        }
        let data = frames.alloc(FrameType::UserData, 4).unwrap();
        let p1 = 1u64 << 25;
        let calls = || std::mem::take(&mut *dart.device().inflight().synchronized.lock());
        // The configuration changes above: the first unmap names streams 1
        // and 2 whole.
        dart.map(1, p1, &data[..1], Perm::RW, None).unwrap();
        assert_eq!(dart.unmap(1, p1, 1 << 14), Ok(1));
        assert_eq!(calls(), [([0b110, 0, 0, 0], None)], "stream 1 moved: not narrowed; stream 2 moved: named");
        // Nothing moved since: narrowed to stream 1's region.
        dart.map(1, p1, &data[1..2], Perm::RW, None).unwrap();
        assert_eq!(dart.unmap(1, p1, 1 << 14), Ok(1));
        assert_eq!(calls(), [([0b10, 0, 0, 0], Some((1, region_bit(p1))))]);
        // Stream 2 retargeted: the next unmap of stream 1 fences all of 2.
        let root = dart.alloc_root_table().unwrap();
        dart.set_ttbr(2, 0, Some(root)).unwrap();
        dart.map(1, p1, &data[2..3], Perm::RW, None).unwrap();
        assert_eq!(dart.unmap(1, p1, 1 << 14), Ok(1));
        assert_eq!(calls(), [([0b110, 0, 0, 0], Some((1, region_bit(p1))))]);
        dart.map(1, p1, &data[3..], Perm::RW, None).unwrap();
        assert_eq!(dart.unmap(1, p1, 1 << 14), Ok(1));
        assert_eq!(calls(), [([0b10, 0, 0, 0], Some((1, region_bit(p1))))], "only the next");
        // A flush names the moved streams too.
        dart.set_enabled(2, false).unwrap();
        dart.flush(Some(1)).unwrap();
        assert_eq!(calls(), [([0b110, 0, 0, 0], None)]);
    }

    /// Two TTBRs of one stream naming one table (t8020 at 4 KiB: the TTBR
    /// select is IOVA\[31:30\], so the alias of a page is 1 GiB up, 32
    /// regions away): an unmap through one kills the alias's IOTLB entry
    /// and fences every region; a DMA through the alias then faults
    /// instead of hitting a stale entry to the released frame.
    #[test]
    fn an_unmap_through_one_of_two_ttbrs_naming_a_table_invalidates_both_aliases() {
        use crate::{DartConfig, Dir, FaultKind, StreamConfig, Variant};
        use frame_table::{FrameSize, FrameTable, FrameTableConfig};
        let frames = std::sync::Arc::new(
            FrameTable::new(FrameTableConfig::with_memory(4 << 20).frame_size(FrameSize::K4)).unwrap(),
        );
        let dart = Dart::new(frames.clone(), DartConfig::new("alias", Variant::T8020)).unwrap();
        dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
        let data = frames.alloc(FrameType::UserData, 1).unwrap();
        let pa = frames.pa_of(data[0]).unwrap();
        let (page, alias) = (0x1000u64, (1u64 << 30) + 0x1000);
        dart.map(1, page, &data, Perm::RW, None).unwrap();
        let root = dart.ttbr(1, 0).unwrap().unwrap();
        dart.set_ttbr(1, 1, Some(root)).unwrap();
        // Both translate; the alias is cached (the page and its alias share
        // an IOTLB slot, whose first entry stays).
        assert_eq!(dart.translate(1, alias, 8, Dir::Read).map(|t| t.spans()[0].pa), Ok(pa));
        assert_eq!(dart.translate(1, page, 8, Dir::Read).map(|t| t.spans()[0].pa), Ok(pa));
        let live: Vec<u64> = dart.iotlb_entries(1).unwrap().into_iter().map(|(iova, _)| iova).collect();
        assert_eq!(live, [alias]);
        dart.device().inflight().synchronized.lock().clear();

        assert_eq!(dart.unmap(1, page, 0x1000), Ok(1));
        assert_eq!(
            *dart.device().inflight().synchronized.lock(),
            [([0b10, 0, 0, 0], None)],
            "every region of stream 1"
        );
        assert!(dart.iotlb_entries(1).unwrap().is_empty(), "the alias's entry died with the page's");
        for iova in [page, alias] {
            match dart.translate(1, iova, 8, Dir::Read) {
                // The leaf table went with its only page.
                Err(DartError::Fault(f)) => assert_eq!(f.kind, FaultKind::NoL1),
                other => panic!("expected a NoL1 fault at {iova:#x}, got {other:?}"),
            }
        }
        let state = frames.state(data[0]).unwrap();
        assert_eq!(state.count(FrameCounter::Dart), 0, "the frame is released");
    }

    /// An unmap that read the stream's configuration before a change took
    /// the mapper lock walks with the configuration it finds under the
    /// lock: here the stream went from four-level to three-level tables
    /// while the unmap waited, so its IOVA now walks to an empty root entry
    /// and nothing is unmapped (with the old geometry it would have
    /// unmapped, and narrowed its invalidation to, IOVAs the stream no
    /// longer walks).
    #[test]
    fn an_unmap_walks_with_the_geometry_it_finds_under_the_mapper_lock() {
        use crate::{DartConfig, StreamConfig, Variant};
        use frame_table::{FrameTable, FrameTableConfig};
        let frames = std::sync::Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
        let dart = std::sync::Arc::new(Dart::new(frames.clone(), DartConfig::new("geo", Variant::T8110)).unwrap());
        let four = StreamConfig { four_level: true, ..StreamConfig::TRANSLATING };
        dart.set_stream_config(1, four).unwrap();
        let data = frames.alloc(FrameType::UserData, 1).unwrap();
        // Four-level: root[0] -> middle[5] -> leaf[0]. Three-level: root[5],
        // which is empty.
        let v = 5u64 << 25;
        dart.map(1, v, &data, Perm::RW, None).unwrap();

        let m = dart.kernel().mapper.lock();
        let d = dart.clone();
        let unmap = std::thread::spawn(move || d.unmap(1, v, 1 << 14));
        // Let the unmap read the configuration and block on the lock.
        std::thread::sleep(std::time::Duration::from_millis(50));
        // What `update_stream_config` does, under the lock held here.
        let st = dart.stream(1).unwrap();
        st.set_config(StreamConfig::TRANSLATING);
        st.bump_gen();
        drop(m);
        assert_eq!(unmap.join().unwrap(), Err(DartError::NotMapped { sid: 1, iova: v, len: 1 << 14 }));
        // The four-level mapping is untouched: the frame keeps its DART count.
        assert_eq!(frames.state(data[0]).unwrap().count(FrameCounter::Dart), 1);
    }

    #[test]
    fn table_map_inserts_finds_updates_removes_and_lists_in_frame_order() {
        let mut t = TableMap::default();
        assert!(t.get(Frame(0)).is_none() && t.get(Frame(u32::MAX)).is_none());
        assert_eq!(t.iter().count(), 0);
        // Sparse frames: the first, a chunk boundary, far away.
        for (f, level) in [(Frame(700_000), 0), (Frame(64), 1), (Frame(0), 0), (Frame(63), 1)] {
            t.insert(f, info(level, 0));
        }
        // Only the chunks holding a table exist.
        assert_eq!(t.chunks.iter().filter(|c| c.is_some()).count(), 3);
        assert!(t.contains_key(Frame(63)) && !t.contains_key(Frame(62)) && !t.contains_key(Frame(65)));
        let frames: Vec<u32> = t.iter().map(|(f, _)| f.0).collect();
        assert_eq!(frames, [0, 63, 64, 700_000]);
        if let Some(i) = t.get_mut(Frame(64)) {
            i.live = 5;
        }
        assert_eq!(t.get(Frame(64)).map(|i| (i.level, i.leaf, i.live)), Some((1, true, 5)));
        assert_eq!(t.remove(Frame(64)).map(|i| i.live), Some(5));
        assert!(t.remove(Frame(64)).is_none() && t.remove(Frame(1 << 30)).is_none());
        assert!(t.get_mut(Frame(64)).is_none());
        let frames: Vec<u32> = t.iter().map(|(f, _)| f.0).collect();
        assert_eq!(frames, [0, 63, 700_000]);
        // Re-inserting replaces.
        t.insert(Frame(0), info(1, 2));
        assert_eq!(t.get(Frame(0)).map(|i| (i.level, i.live)), Some((1, 2)));
        // The memory bound of the type's docs: 12 bytes per covered frame.
        assert_eq!(std::mem::size_of::<[Option<TableInfo>; CHUNK]>(), 12 * CHUNK);
    }
}
