//! The DART: streams, the device-side translation path, faults.
//!
//! # Protocol: how a translation can never outlive its unmap (strict mode)
//!
//! *Who writes.* PTEs and TTBRs are written only by the mapper
//! ([`crate::mapper`]), under the DART's mapper lock, with `Release` stores.
//! IOTLB entries are written by any DMA thread after a walk, tagged with the
//! generation of the page's IOVA region it read *before* the walk
//! ([`crate::stream`]: a stream has one generation per group of 32 MiB
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
//! frames stay counted as "pending invalidation" until then (SPEC §3).
//!
//! *Faults* never move data: every page of an access is translated and
//! checked before the first byte is copied.

mod mmio;

use crate::error::DartError;
use crate::fault::{ErrorLatch, Fault, FaultKind};
use crate::hw::pte::{Leaf, PteFormat};
use crate::hw::tlb_value;
use crate::iotlb::{Iotlb, Place};
use crate::mapper::Mapper;
use crate::observe::events::{EventLog, WatchRange};
use crate::observe::stats::Stats;
use crate::phys;
use crate::stream::StreamState;
use crate::sync::inflight::InFlight;
use crate::types::StreamConfig;
pub(crate) use crate::types::{Dir, Invalidation, Span};
use crate::variant::{Geometry, Variant};
use crate::walk::Walker;
use crate::walk_cache::WalkCache;
use crossbeam_utils::CachePadded;
use frame_table::{Access, Frame, FrameTable, Perm};
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;
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
    pub const MAX_IOTLB_ENTRIES: usize = Iotlb::MAX_ENTRIES;

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

/// The result of [`Dart::translate`]: physical spans, valid while it lives
/// (it holds the DMA in flight, so a strict unmap waits for it).
///
/// A one-page translation (the common case) is held inline, without a
/// heap block; plain fields rather than a small-vector union, so that the
/// compiler can keep a returned translation in registers.
#[derive(Debug)]
pub struct Translation<'a> {
    _inflight: crate::sync::inflight::DmaGuard<'a>,
    /// The only span, when there is one.
    first: Span,
    /// Every span, when there are several.
    many: Option<Box<[Span]>>,
}

/// A [`Translation`]'s spans without its guard: the first, and all of
/// them when there are several.
type TranslatedSpans = (Span, Option<Box<[Span]>>);

impl Translation<'_> {
    /// The spans, in IOVA order, adjacent physical runs merged.
    pub fn spans(&self) -> &[Span] {
        match &self.many {
            None => std::slice::from_ref(&self.first),
            Some(spans) => spans,
        }
    }

    /// The first span: the one at the translated IOVA, and the only one
    /// when the access lies within one page. The same as `spans()[0]`
    /// without the test of how many there are.
    #[inline]
    pub fn first(&self) -> &Span {
        &self.first
    }
}

/// The interrupt line: called when ERROR goes from clear to latched.
pub type InterruptFn = dyn Fn(&Fault) + Send + Sync;

/// A software DART.
pub struct Dart {
    variant: Variant,
    format: PteFormat,
    page_shift: u32,
    /// `(1 << page_shift) - 1`: the offset bits of an IOVA, kept so that
    /// the hit path finds a page offset with one `and`.
    page_mask: u64,
    invalidation: Invalidation,
    pub(crate) frames: Arc<FrameTable>,
    pub(crate) streams: Box<[StreamState]>,
    pub(crate) iotlb: Iotlb,
    pub(crate) stats: Stats,
    pub(crate) inflight: InFlight,
    /// On a line of its own: map and unmap write it while DMA threads read
    /// the fields around it on every access.
    pub(crate) mapper: CachePadded<Mutex<Mapper>>,
    error: Mutex<ErrorLatch>,
    interrupt: RwLock<Option<Arc<InterruptFn>>>,
    pub(crate) mmio: mmio::MmioState,
    /// The walker's PTE loads (host pointers into `frames`' memory).
    pub(crate) ptes: phys::PteLoader,
    /// The walker's precomputed geometries and PTE decoding.
    pub(crate) walker: Walker,
    /// The leaf tables recent walks reached, per DMA thread.
    pub(crate) walk_cache: WalkCache,
    pub(crate) trace: crate::observe::events::DartTrace,
    /// The slice holds outstanding on each frame ([`crate::hold`]).
    pub(crate) holds: Arc<crate::hold::Holds>,
}

impl std::fmt::Debug for Dart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dart")
            .field("name", &self.name())
            .field("variant", &self.variant)
            .field("streams", &self.streams.len())
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
    /// error: the `?` machinery moves the whole 64-byte `Result` through
    /// memory in a way that stalls on store forwarding (measured: 15 ns per
    /// hit with `?` against 6 with `match`).
    ///
    /// Always inlined, so that the caller's `match` sees the hit path's
    /// translation in registers (the compiler did inline it into the
    /// bench's worker, but not into a larger function).
    #[inline(always)]
    pub fn translate(&self, sid: u32, iova: u64, len: u64, dir: Dir) -> Result<Translation<'_>, DartError> {
        let Some(st) = self.streams.get(sid as usize) else {
            return Err(self.refuse_stream(sid, iova, len));
        };
        let (guard, hit) = self.enter_and_hit(st, sid, iova, len, dir);
        if let Some(span) = hit {
            return Ok(Translation { _inflight: guard, first: span, many: None });
        }
        match self.translate_general((sid, st), iova, len, dir, guard.slot()) {
            Ok((first, many)) => Ok(Translation { _inflight: guard, first, many }),
            Err(e) => Err(e),
        }
    }

    /// Device reads `buf.len()` bytes at `iova` through stream `sid`. On a
    /// fault nothing is read (`buf` unchanged) and the fault is latched.
    pub fn dma_read(&self, sid: u32, iova: u64, buf: &mut [u8]) -> Result<(), DartError> {
        let len = buf.len() as u64;
        self.access(sid, iova, len, Dir::Read, |mem, spans| {
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
        self.access(sid, iova, len, Dir::Write, |mem, spans| {
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

    /// The fast path, for the common case: an access within one page, on a
    /// stream that is enabled and translating (not bypassed), the system
    /// running, whose page the IOTLB holds under the stream's current
    /// generation or a walk finds (and the IOTLB then caches), granting
    /// `dir` on the whole page. Returns its span, counted; `None` sends the
    /// caller to the general path ([`Dart::admit`], then
    /// [`Dart::translate_pages`]), which redoes every check and reports the
    /// error, so both paths give the same answer. The caller holds a DMA
    /// in-flight guard on exclusive slot `lane` (the counters' row), entered
    /// before this reads the generation; a thread without a slot takes the
    /// general path.
    ///
    /// An access that would overflow `iova + len` never gets here: it can
    /// only end on the last page of the 64-bit space, beyond every
    /// geometry's IOVA limit (the walk refuses it).
    #[inline(always)]
    fn fast(&self, st: &StreamState, sid: u32, iova: u64, len: u64, dir: Dir, lane: usize) -> Option<Span> {
        let off = iova & self.page_mask;
        // 1 <= len <= page_size - off: not empty, within the page.
        if len.wrapping_sub(1) > self.page_mask - off {
            return None;
        }
        let config = st.translating_config()?;
        if self.frames.check_running().is_err() {
            return None;
        }
        let page = iova >> self.page_shift;
        let gen = st.gen(iova);
        let place = self.iotlb.place(sid, page)?;
        let v = match place.lookup(gen) {
            Some(v) if tlb_value::grants(v, dir) => {
                self.stats.count_hit(lane, sid);
                v
            }
            Some(_) => return None,
            None => self.fill(st, config, (sid, iova, gen), dir, lane, place)?,
        };
        Some(Span { iova, pa: tlb_value::pa(v, self.page_shift) + off, len })
    }

    /// A DMA's or translation's in-flight entry, and its hit-path answer.
    /// On the thread's slot number (below `EXCLUSIVE`, which the compiler
    /// then knows when it indexes the slot's counters): the entry for
    /// `iova`'s region, its mask worked out only if a burst has flagged
    /// some region, and [`Dart::fast`]. On a thread without one: the entry
    /// that claims one or takes a shared counter, and `None`, for the
    /// general path.
    #[inline(always)]
    fn enter_and_hit(
        &self,
        st: &StreamState,
        sid: u32,
        iova: u64,
        len: u64,
        dir: Dir,
    ) -> (crate::sync::inflight::DmaGuard<'_>, Option<Span>) {
        match crate::sync::slot::held() {
            Some(lane) => {
                let guard = self.inflight.enter_exclusive_at(lane, sid, iova);
                let hit = self.fast(st, sid, iova, len, dir, lane);
                (guard, hit)
            }
            None => (self.inflight.enter(sid, crate::types::region_bit(iova)), None),
        }
    }

    /// The fast path's IOTLB miss: walks and, if the leaf grants `dir` on
    /// the whole page, caches it under `gen` at `place` (the slot the
    /// lookup read, so it is not found twice) and returns it packed (counted
    /// as a miss and a walk); `None` (nothing cached, nothing counted) on a
    /// fault or a narrower grant, for the general path to redo and report.
    ///
    /// Inlined into the fast path: as a call it saved and restored six
    /// registers and passed eight arguments for every random translation
    /// (`translate` 16.5 -> 13.5 ns, medians of 8 alternating runs), and
    /// the hit path measured no slower without the call (`translate-hot`
    /// 4.48 -> 4.34 ns). Filling the looked-up place instead of finding
    /// the slot again: `translate` 13.6 -> 12.9 ns, `translate-hot` 4.41 ->
    /// 4.48 ns (+1.6%, medians of 8 and 10).
    #[inline]
    fn fill(
        &self,
        st: &StreamState,
        config: StreamConfig,
        (sid, iova, gen): (u32, u64, u64),
        dir: Dir,
        lane: usize,
        place: Place<'_>,
    ) -> Option<u64> {
        let v = self.walk((sid, st), config, iova, lane).ok()?;
        if !tlb_value::grants(v, dir) {
            // Not cached here: the general path walks again, caches and
            // counts the miss and the walk (and reports any fault), so the
            // counters read as if this walk had not happened.
            return None;
        }
        place.fill(gen, v, |s, p, g| self.iotlb_entry_live(s, p, g));
        self.stats.count_walk(lane, sid);
        Some(v)
    }

    /// Whether an IOTLB entry of stream `sid`'s page `page` cached under
    /// generation `gen` can still be hit: the stream exists and the page's
    /// region is still at `gen`. The IOTLB's fill policy asks this of the
    /// entry a fill would evict ([`Iotlb::fill`]).
    fn iotlb_entry_live(&self, sid: u32, page: u64, gen: u64) -> bool {
        self.streams.get(sid as usize).is_some_and(|st| st.gen(page << self.page_shift) == gen)
    }

    /// Translates `[iova, iova + len)` for `dir` into `spans`, page by page
    /// (IOTLB, else a walk); the first fault stops it and is raised. The
    /// caller holds a DMA in-flight guard (whose thread slot is `slot`).
    #[allow(clippy::too_many_arguments)]
    fn translate_pages(
        &self,
        (sid, st, config): (u32, &StreamState, StreamConfig),
        iova: u64,
        len: u64,
        dir: Dir,
        slot: Option<usize>,
        spans: &mut SmallVec<impl smallvec::Array<Item = Span>>,
    ) -> Result<(), DartError> {
        let page_size = 1u64 << self.page_shift;
        let end = iova + len;
        let (mut cur, mut hits, mut walks) = (iova, 0u64, 0u64);
        let result = loop {
            if cur >= end {
                break Ok(());
            }
            let page = cur >> self.page_shift;
            let off = cur & (page_size - 1);
            let n = (page_size - off).min(end - cur);
            let gen = st.gen(cur);
            // As on the fast path: the slot is found once, for the lookup
            // and the fill after a miss (none for a page the IOTLB cannot
            // tag, which then always walks).
            let place = self.iotlb.place(sid, page);
            let v = match place.and_then(|p| p.lookup(gen)) {
                Some(v) => {
                    hits += 1;
                    v
                }
                None => {
                    walks += 1;
                    match self.walk((sid, st), config, cur, slot.unwrap_or(usize::MAX)) {
                        Ok(v) => {
                            if let Some(p) = place {
                                p.fill(gen, v, |s, p, g| self.iotlb_entry_live(s, p, g));
                            }
                            v
                        }
                        Err(kind) => break Err((cur, kind)),
                    }
                }
            };
            let leaf = tlb_value::unpack(v, self.page_shift);
            let permitted = match dir {
                Dir::Read => leaf.read,
                Dir::Write => leaf.write,
            };
            if !permitted {
                break Err((cur, if dir == Dir::Read { FaultKind::Read } else { FaultKind::Write }));
            }
            if !leaf.subpage.contains(off, n, page_size) {
                break Err((cur, FaultKind::Subpage));
            }
            let pa = leaf.pa + off;
            match spans.last_mut() {
                Some(last) if last.pa + last.len == pa => last.len += n,
                _ => spans.push(Span { iova: cur, pa, len: n }),
            }
            cur += n;
        };
        self.stats.count_translation_in(slot, sid, hits, walks);
        result.map_err(|(at, kind)| self.raise(sid, at, kind, dir))
    }

    fn check_access(&self, iova: u64, len: u64) -> Result<(), DartError> {
        if len == 0 {
            return Err(DartError::BadRange { iova, len, reason: "empty DMA" });
        }
        if iova.checked_add(len).is_none() {
            return Err(DartError::BadRange { iova, len, reason: "IOVA range overflows" });
        }
        Ok(())
    }

    /// The error of an access to stream `sid` that does not exist, after
    /// the checks that come first (the system runs, the range is sane).
    ///
    /// [`Dart::translate`] and [`Dart::access`] each open with the stream
    /// lookup and the in-flight entry written out: a shared prelude
    /// returning `Result<(stream, guard), _>` measured 4% slower on
    /// `translate-hot` (the guard travels through memory).
    #[cold]
    fn refuse_stream(&self, sid: u32, iova: u64, len: u64) -> DartError {
        match self.frames.check_running().map_err(DartError::from).and_then(|()| self.check_access(iova, len)) {
            Err(e) => e,
            Ok(()) => DartError::NoSuchStream { sid, streams: self.stream_count() },
        }
    }

    /// The general path's checks of a device access, in order: the system
    /// runs, the range is sane, the stream is live (else `stream-disabled`,
    /// raised). The caller has entered the in-flight tracker. Returns the
    /// stream's configuration.
    fn admit(&self, st: &StreamState, sid: u32, iova: u64, len: u64, dir: Dir) -> Result<StreamConfig, DartError> {
        self.frames.check_running()?;
        self.check_access(iova, len)?;
        let c = st.config();
        if !c.live() {
            return Err(self.raise(sid, iova, FaultKind::StreamDisabled, dir));
        }
        Ok(c)
    }

    /// [`Dart::translate`] past the hit path: the translation's spans (the
    /// first, and all of them when there are several). It returns the
    /// spans rather than the whole [`Translation`] so that its result
    /// lives in memory of its own: written through the same return slot
    /// as the hit path's, it made the hit path store its translation
    /// there too (`op_count translate-hot`: 6 stores per hit, and 6% of
    /// the hit's time in `dartemu bench`).
    #[inline(never)]
    fn translate_general(
        &self,
        (sid, st): (u32, &StreamState),
        iova: u64,
        len: u64,
        dir: Dir,
        slot: Option<usize>,
    ) -> Result<TranslatedSpans, DartError> {
        let c = self.admit(st, sid, iova, len, dir)?;
        if c.bypass {
            return Err(DartError::BypassDenied { sid });
        }
        let mut spans: SmallVec<[Span; 1]> = SmallVec::new();
        self.fence_beyond_first_region(sid, iova, len);
        self.translate_pages((sid, st, c), iova, len, dir, slot, &mut spans)?;
        Ok(match spans.as_slice() {
            [one] => (*one, None),
            // Never empty: translate_pages covers len >= 1 bytes or fails.
            _ => (
                spans.first().copied().unwrap_or(Span { iova, pa: 0, len: 0 }),
                Some(spans.into_vec().into_boxed_slice()),
            ),
        })
    }

    /// One DMA: translate (or bypass-check) everything, then copy.
    fn access(
        &self,
        sid: u32,
        iova: u64,
        len: u64,
        dir: Dir,
        copy: impl FnOnce(&frame_table::vm_memory::GuestMemoryMmap, &[Span]) -> bool,
    ) -> Result<(), DartError> {
        let Some(st) = self.streams.get(sid as usize) else {
            return Err(self.refuse_stream(sid, iova, len));
        };
        if cfg!(target_arch = "x86_64") && len >= crate::walk::TOUCH_MIN_LEN {
            // Decides nothing (`Dart::touch_leaf`): starts the leaf PTE's miss
            // before the in-flight entry and the IOTLB probe.
            self.touch_leaf(sid, st, iova);
        }
        let (guard, hit) = self.enter_and_hit(st, sid, iova, len, dir);
        let mut spans: SmallVec<[Span; 4]> = SmallVec::new();
        match hit {
            Some(span) => spans.push(span),
            None => {
                let c = self.admit(st, sid, iova, len, dir)?;
                if c.bypass {
                    self.bypass_access(sid, iova, len, dir, copy)?;
                    self.stats.count_bytes_in(guard.slot(), sid, dir == Dir::Write, len);
                    return Ok(());
                }
                self.fence_beyond_first_region(sid, iova, len);
                self.translate_pages((sid, st, c), iova, len, dir, guard.slot(), &mut spans)?;
            }
        }
        if copy(self.frames.memory(), &spans) {
            self.stats.count_bytes_in(guard.slot(), sid, dir == Dir::Write, len);
            Ok(())
        } else {
            Err(self.raise(sid, iova, FaultKind::ForbiddenFrame, dir))
        }
    }

    /// Before the general path translates `[iova, iova + len)`: the DMA
    /// entered the in-flight tracker for `iova`'s region only, so it fences
    /// if a burst of unmaps flagged another region the range reaches
    /// ([`InFlight::fence_for`](crate::sync::inflight::InFlight::fence_for)).
    #[inline]
    fn fence_beyond_first_region(&self, sid: u32, iova: u64, len: u64) {
        let beyond = crate::types::region_mask(iova, len) & !crate::types::region_bit(iova);
        if beyond != 0 {
            self.inflight.fence_for(sid, beyond);
        }
    }

    /// A bypassed access: IOVA = PA, every frame pinned with the DART
    /// column's policy check, so forbidden frames stay unreachable.
    fn bypass_access(
        &self,
        sid: u32,
        pa: u64,
        len: u64,
        dir: Dir,
        copy: impl FnOnce(&frame_table::vm_memory::GuestMemoryMmap, &[Span]) -> bool,
    ) -> Result<(), DartError> {
        let shift = self.page_shift;
        let mut frames: SmallVec<[Frame; 4]> = SmallVec::new();
        let mut page = pa >> shift;
        let last = (pa + len - 1) >> shift;
        while page <= last {
            match self.frames.frame_of(page << shift) {
                Ok(f) => frames.push(f),
                Err(_) => return Err(self.raise(sid, (page << shift).max(pa), FaultKind::ForbiddenFrame, dir)),
            }
            page += 1;
        }
        let perm = if dir == Dir::Read { Perm::R } else { Perm::W };
        let pin = match self.frames.pin(&frames, Access::Dart, perm) {
            Ok(pin) => pin,
            Err(frame_table::Error::ForbiddenType { frame, .. }) => {
                let at = self.frames.pa_of(frame).unwrap_or(pa).max(pa);
                return Err(self.raise(sid, at, FaultKind::ForbiddenFrame, dir));
            }
            Err(e) => return Err(e.into()),
        };
        let ok = copy(self.frames.memory(), &[Span { iova: pa, pa, len }]);
        drop(pin);
        if ok {
            Ok(())
        } else {
            Err(self.raise(sid, pa, FaultKind::ForbiddenFrame, dir))
        }
    }

    /// Records a fault: counters, ERROR latch, interrupt. Returns the error.
    #[cold]
    pub(crate) fn raise(&self, sid: u32, iova: u64, kind: FaultKind, dir: Dir) -> DartError {
        let fault = Fault { kind, stream: sid, iova, write: dir == Dir::Write };
        self.stats.fault(Some(sid), kind.code());
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
        let streams = (0..config.streams).map(|sid| StreamState::new(config.trusted.contains(&sid))).collect();
        Ok(Dart {
            variant: v,
            format: v.pte_format(),
            page_shift: frames.frame_size().shift(),
            page_mask: (1u64 << frames.frame_size().shift()) - 1,
            invalidation: config.invalidation,
            streams,
            iotlb: Iotlb::new(config.iotlb_entries),
            stats: Stats::new(config.streams as usize),
            inflight: InFlight::new(),
            mapper: CachePadded::new(Mutex::new(Mapper::default())),
            error: Mutex::new(ErrorLatch::default()),
            interrupt: RwLock::new(None),
            mmio: mmio::MmioState::new(),
            ptes: phys::PteLoader::new(frames.memory(), frames.frame_size().bytes()),
            walker: Walker::new(v, frames.frame_size().shift()),
            walk_cache: WalkCache::new(crate::sync::slot::EXCLUSIVE),
            trace: crate::observe::events::DartTrace::new(config.name),
            holds: Arc::new(crate::hold::Holds::new(frames.clone())),
            frames,
        })
    }

    /// The frame table behind it.
    pub fn frames(&self) -> &Arc<FrameTable> {
        &self.frames
    }

    /// Counts one RPC request a mapping service received from a device on
    /// stream `sid` (`rpc_requests`), and, if it refused it, the refusal
    /// (`rpc_refused` and `rpc_refused.KIND`; a kind outside
    /// [`crate::observe::stats::REFUSAL_KINDS`] counts as `other`). Kernel side: the
    /// service calls it; devices have no way to it.
    pub fn account_rpc(&self, sid: u32, refused: Option<&str>) {
        self.stats.add(Some(sid), crate::observe::stats::Counter::RpcRequests, 1);
        if let Some(kind) = refused {
            self.stats.rpc_refused(Some(sid), kind);
        }
    }

    /// How many slice holds of this DART's ports still keep `frame`
    /// counted ([`crate::hold`]). A kernel that waits for this to reach 0
    /// before `free` or `retype` never breaches R2 through a held slice.
    pub fn slice_holds(&self, frame: Frame) -> u64 {
        self.holds.on(frame)
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
        self.frames.check_running()?;
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
        m.moved(sid);
        st.bump_gen();
        self.walk_cache.invalidate(&*m);
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
    /// violation mode (SPEC §2).
    pub fn set_ttbr(&self, sid: u32, idx: usize, table: Option<u64>) -> Result<(), DartError> {
        self.frames.check_running()?;
        let st = self.stream(sid)?;
        if idx >= self.variant.ttbrs_per_stream() as usize {
            return Err(DartError::BadRange { iova: idx as u64, len: 0, reason: "no such TTBR index" });
        }
        let mut m = self.mapper.lock();
        if self.mmio.tcr_ttbr_locked() {
            return Err(DartError::Locked { sid, register: crate::error::LockedRegister::Ttbr { index: idx } });
        }
        if let Some(pa) = table {
            m.check_ttbr_target(self, pa)?;
        }
        st.set_ttbr(idx, table);
        m.ttbr_written(sid, (0..self.variant.ttbrs_per_stream() as usize).any(|i| st.ttbr(i).is_some()));
        m.moved(sid);
        st.bump_gen();
        self.walk_cache.invalidate(&*m);
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
        self.streams.len() as u32
    }

    /// log2 of the page size (= the frame size).
    pub fn page_shift(&self) -> u32 {
        self.page_shift
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
        &self.stats
    }

    /// The IOTLB's capacity: `iotlb_entries` rounded up to a power of two
    /// and clamped to `[1, DartConfig::MAX_IOTLB_ENTRIES]`.
    pub fn iotlb_capacity(&self) -> usize {
        self.iotlb.capacity()
    }

    /// Current IOTLB entries of stream `sid` that are live (current generation), as leaves.
    pub fn iotlb_entries(&self, sid: u32) -> Result<Vec<(u64, Leaf)>, DartError> {
        let st = self.stream(sid)?;
        Ok(self
            .iotlb
            .snapshot()
            .into_iter()
            .filter(|e| e.stream == sid && e.gen == st.gen(e.page << self.page_shift))
            .map(|e| (e.page << self.page_shift, tlb_value::unpack(e.value, self.page_shift)))
            .collect())
    }

    /// [`Dart::iotlb_entries`] of every stream, indexed by stream, from one
    /// pass over the IOTLB: what the invariant checks read, so that a check
    /// costs the IOTLB's size once, not once per stream.
    pub(crate) fn iotlb_entries_by_stream(&self) -> Vec<Vec<(u64, Leaf)>> {
        let mut out: Vec<Vec<(u64, Leaf)>> = (0..self.streams.len()).map(|_| Vec::new()).collect();
        for e in self.iotlb.snapshot() {
            let Some(st) = self.streams.get(e.stream as usize) else { continue };
            let iova = e.page << self.page_shift;
            if e.gen == st.gen(iova) {
                out[e.stream as usize].push((iova, tlb_value::unpack(e.value, self.page_shift)));
            }
        }
        out
    }

    #[inline]
    pub(crate) fn stream(&self, sid: u32) -> Result<&StreamState, DartError> {
        self.streams.get(sid as usize).ok_or(DartError::NoSuchStream { sid, streams: self.stream_count() })
    }

    #[inline]
    pub(crate) fn geometry_for(&self, c: StreamConfig) -> Geometry {
        Geometry::new(self.variant, self.page_shift, c.four_level)
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
    use crate::{DartConfig, StreamConfig, Variant};
    use frame_table::vm_memory::{Bytes, GuestAddress};
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
        dart.inflight.synchronize();
    }
}
