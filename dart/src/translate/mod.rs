//! The device side: the only reader of the translation tables. A DMA's
//! IOVA goes, top to bottom of this module, through [`Translator::translate`]
//! or [`Translator::access`]: the stream's configuration, the in-flight
//! entry ([`crate::sync::inflight`]), the IOTLB ([`iotlb`]), on a miss the
//! walk ([`walk`], through the walk cache, [`walk_cache`], and the PTE
//! loads, [`phys`]), the permission and subpage checks, the copy. Faults are
//! not raised here but handed to the caller's [`Raise`].
//!
//! This is one of the three places with `unsafe` code (the PTE loads of
//! [`phys`] and the walk cache's table pointers); every block says why it
//! is sound.

pub(crate) mod iotlb;
pub(crate) mod phys;
pub(crate) mod stream;
pub(crate) mod walk;
pub(crate) mod walk_cache;

use crate::error::DartError;
use crate::fault::FaultKind;
use crate::hw::pte::Leaf;
use crate::hw::tlb_value;
use crate::observe::stats::Stats;
use crate::sync::inflight::InFlight;
use crate::types::{Dir, Span, StreamConfig};
use crate::variant::Variant;
use frame_table::{Access, Frame, FrameTable, Perm};
use iotlb::{Iotlb, Place};
use smallvec::SmallVec;
use std::sync::Arc;
use stream::StreamState;
use walk::Walker;
use walk_cache::WalkCache;

/// Where the device side reports a fault: counters, the ERROR latch, the
/// interrupt line and the event trace belong to the whole DART, which
/// implements this. Returns the error the access fails with.
pub(crate) trait Raise {
    /// The device side whose access this is.
    fn translator(&self) -> &Translator;

    /// Records a fault of `kind` at `iova` of stream `sid` for a `dir`
    /// access and returns the error.
    fn raise(&self, sid: u32, iova: u64, kind: FaultKind, dir: Dir) -> DartError;
}

/// The result of [`Dart::translate`](crate::Dart::translate): physical spans, valid while it lives
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

/// The device side's state: the streams (configuration, TTBRs,
/// generations), the IOTLB, the in-flight tracker, the walk cache, the PTE
/// loader and walk plans, and the counters the DMA path bumps. The mapper
/// writes through the same streams, tables and tracker (under its lock);
/// it reaches them through the accessors below.
pub(crate) struct Translator {
    page_shift: u32,
    /// `(1 << page_shift) - 1`: the offset bits of an IOVA, kept so that
    /// the hit path finds a page offset with one `and`.
    page_mask: u64,
    frames: Arc<FrameTable>,
    streams: Box<[StreamState]>,
    iotlb: Iotlb,
    stats: Stats,
    inflight: InFlight,
    /// The walker's PTE loads (host pointers into `frames`' memory).
    ptes: phys::PteLoader,
    /// The walker's precomputed geometries and PTE decoding.
    walker: Walker,
    /// The leaf tables recent walks reached, per DMA thread.
    walk_cache: WalkCache,
}

impl Translator {
    /// This DART's identity while it lives (its device side's address): the
    /// key of the interrupt scope ([`crate::fault::in_interrupt_of`]).
    pub(crate) fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// The device side of a `variant` DART over `frames` with streams
    /// created trusted or not as `trusted` says, and an IOTLB of
    /// `iotlb_entries` (see [`Iotlb::new`]).
    pub(crate) fn new(frames: Arc<FrameTable>, variant: Variant, trusted: &[bool], iotlb_entries: usize) -> Translator {
        let page_shift = frames.frame_size().shift();
        Translator {
            page_shift,
            page_mask: (1u64 << page_shift) - 1,
            streams: trusted.iter().map(|&t| StreamState::new(t)).collect(),
            iotlb: Iotlb::new(iotlb_entries),
            stats: Stats::new(trusted.len()),
            inflight: InFlight::new(),
            ptes: phys::PteLoader::new(frames.memory().clone(), frames.frame_size().bytes()),
            walker: Walker::new(variant, page_shift),
            walk_cache: WalkCache::new(crate::sync::slot::EXCLUSIVE),
            frames,
        }
    }

    /// log2 of the page size (= the frame size).
    #[inline]
    pub(crate) fn page_shift(&self) -> u32 {
        self.page_shift
    }

    /// The frame table behind the DART.
    #[inline]
    pub(crate) fn frames(&self) -> &Arc<FrameTable> {
        &self.frames
    }

    /// Every stream's state.
    #[inline]
    pub(crate) fn streams(&self) -> &[StreamState] {
        &self.streams
    }

    /// Stream `sid`'s state.
    #[inline]
    pub(crate) fn stream(&self, sid: u32) -> Result<&StreamState, DartError> {
        self.streams.get(sid as usize).ok_or(DartError::NoSuchStream { sid, streams: self.streams.len() as u32 })
    }

    /// The counters.
    #[inline]
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The in-flight tracker (the mapper waits on it).
    #[inline]
    pub(crate) fn inflight(&self) -> &InFlight {
        &self.inflight
    }

    /// The walk cache (the mapper invalidates it).
    #[inline]
    pub(crate) fn walk_cache(&self) -> &WalkCache {
        &self.walk_cache
    }

    /// The PTE loads and stores (the mapper writes tables through it).
    #[inline]
    pub(crate) fn ptes(&self) -> &phys::PteLoader {
        &self.ptes
    }

    /// The IOTLB's capacity.
    pub(crate) fn iotlb_capacity(&self) -> usize {
        self.iotlb.capacity()
    }

    /// Current IOTLB entries of stream `st` (= `sid`) that are live (current
    /// generation), as leaves.
    pub(crate) fn iotlb_entries(&self, sid: u32) -> Result<Vec<(u64, Leaf)>, DartError> {
        let st = self.stream(sid)?;
        Ok(self
            .iotlb
            .snapshot()
            .into_iter()
            .filter(|e| e.stream == sid && e.gen == st.gen(e.page << self.page_shift))
            .map(|e| (e.page << self.page_shift, tlb_value::unpack(e.value, self.page_shift)))
            .collect())
    }

    /// The live IOTLB entries of every stream, indexed by stream, from one
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

    /// [`Dart::translate`](crate::Dart::translate): the stream, the
    /// in-flight entry and the hit path, else the general path. Always
    /// inlined, so that the caller's `match` sees the hit path's
    /// translation in registers (the compiler does not inline it into a
    /// large caller on its own).
    #[inline(always)]
    pub(crate) fn translate(
        faults: &impl Raise,
        (sid, iova, len, dir): (u32, u64, u64, Dir),
    ) -> Result<Translation<'_>, DartError> {
        let this = faults.translator();
        let Some(st) = this.streams.get(sid as usize) else {
            return Err(this.refuse_stream(sid, iova, len));
        };
        let (guard, hit) = this.enter_and_hit(st, sid, iova, len, dir);
        if let Some(span) = hit {
            return Ok(Translation { _inflight: guard, first: span, many: None });
        }
        match Self::translate_general(faults, (sid, st), iova, len, dir, guard.slot()) {
            Ok((first, many)) => Ok(Translation { _inflight: guard, first, many }),
            Err(e) => Err(e),
        }
    }

    /// The fast path, for the common case: an access within one page, on a
    /// stream that is enabled and translating (not bypassed), the system
    /// running, whose page the IOTLB holds under the stream's current
    /// generation or a walk finds (and the IOTLB then caches), granting
    /// `dir` on the whole page. Returns its span, counted; `None` sends the
    /// caller to the general path ([`Translator::admit`], then
    /// [`Translator::translate_pages`]), which redoes every check and reports the
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
        // (G4, T6) After the in-flight entry, before the lookup and walk.
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
    /// some region, and [`Translator::fast`]. On a thread without one: the entry
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
                // (I3 of `crate::sync::inflight`) Entered before `fast` reads
                // the generation, the IOTLB or the tables.
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
    /// Inlined into the fast path: as a call it saves and restores
    /// registers and passes eight arguments for every miss, and the hit
    /// path does not get slower for it. It fills the place the lookup
    /// found rather than finding the slot again.
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
        faults: &impl Raise,
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
            // (G4, T6) As on the fast path: inside the DMA's section.
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
        result.map_err(|(at, kind)| faults.raise(sid, at, kind, dir))
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
    /// [`Translator::translate`] and [`Translator::access`] each open with
    /// the stream lookup and the in-flight entry written out: a shared
    /// prelude returning `Result<(stream, guard), _>` would move the guard
    /// through memory on the hit path.
    #[cold]
    pub(crate) fn refuse_stream(&self, sid: u32, iova: u64, len: u64) -> DartError {
        match self.frames.check_running().map_err(DartError::from).and_then(|()| self.check_access(iova, len)) {
            Err(e) => e,
            Ok(()) => DartError::NoSuchStream { sid, streams: self.streams.len() as u32 },
        }
    }

    /// The general path's checks of a device access, in order: the system
    /// runs, the range is sane, the stream is live (else `stream-disabled`,
    /// raised). The caller has entered the in-flight tracker. Returns the
    /// stream's configuration.
    fn admit(
        &self,
        faults: &impl Raise,
        st: &StreamState,
        sid: u32,
        iova: u64,
        len: u64,
        dir: Dir,
    ) -> Result<StreamConfig, DartError> {
        self.frames.check_running()?;
        self.check_access(iova, len)?;
        let c = st.config();
        if !c.live() {
            return Err(faults.raise(sid, iova, FaultKind::StreamDisabled, dir));
        }
        Ok(c)
    }

    /// [`Translator::translate`] past the hit path: the translation's spans
    /// (the first, and all of them when there are several). It returns the
    /// spans rather than the whole [`Translation`] so that its result
    /// lives in memory of its own: written through the same return slot
    /// as the hit path's, it would make the hit path store its translation
    /// there too.
    #[inline(never)]
    fn translate_general(
        faults: &impl Raise,
        (sid, st): (u32, &StreamState),
        iova: u64,
        len: u64,
        dir: Dir,
        slot: Option<usize>,
    ) -> Result<TranslatedSpans, DartError> {
        let this = faults.translator();
        let c = this.admit(faults, st, sid, iova, len, dir)?;
        if c.bypass {
            return Err(DartError::BypassDenied { sid });
        }
        let mut spans: SmallVec<[Span; 1]> = SmallVec::new();
        this.fence_beyond_first_region(sid, iova, len);
        this.translate_pages(faults, (sid, st, c), iova, len, dir, slot, &mut spans)?;
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
    pub(crate) fn access(
        faults: &impl Raise,
        sid: u32,
        iova: u64,
        len: u64,
        dir: Dir,
        copy: impl FnOnce(&frame_table::vm_memory::GuestMemoryMmap, &[Span]) -> bool,
    ) -> Result<(), DartError> {
        let this = faults.translator();
        let Some(st) = this.streams.get(sid as usize) else {
            return Err(this.refuse_stream(sid, iova, len));
        };
        if cfg!(target_arch = "x86_64") && len >= crate::translate::walk::TOUCH_MIN_LEN {
            // Decides nothing (`Translator::touch_leaf`): starts the leaf PTE's miss
            // before the in-flight entry and the IOTLB probe.
            this.touch_leaf(sid, st, iova);
        }
        let (guard, hit) = this.enter_and_hit(st, sid, iova, len, dir);
        let Some(span) = hit else {
            return Self::access_general(faults, (sid, st), iova, len, dir, guard.slot(), copy);
        };
        if copy(this.frames.memory(), std::slice::from_ref(&span)) {
            this.stats.count_bytes_in(guard.slot(), sid, dir == Dir::Write, len);
            Ok(())
        } else {
            Err(faults.raise(sid, iova, FaultKind::ForbiddenFrame, dir))
        }
    }

    /// [`Translator::access`] past the hit path: the general checks, then
    /// the bypassed access or the page-by-page translation, the copy and
    /// its count. The caller holds the DMA's in-flight guard (on thread
    /// slot `slot`). Out of line, so that what only this path needs (the
    /// IOTLB hash, the stream, the span list) is not kept in registers
    /// across the hit path's walk.
    #[inline(never)]
    fn access_general(
        faults: &impl Raise,
        (sid, st): (u32, &StreamState),
        iova: u64,
        len: u64,
        dir: Dir,
        slot: Option<usize>,
        copy: impl FnOnce(&frame_table::vm_memory::GuestMemoryMmap, &[Span]) -> bool,
    ) -> Result<(), DartError> {
        let this = faults.translator();
        let c = this.admit(faults, st, sid, iova, len, dir)?;
        if c.bypass {
            this.bypass_access(faults, sid, iova, len, dir, copy)?;
            this.stats.count_bytes_in(slot, sid, dir == Dir::Write, len);
            return Ok(());
        }
        let mut spans: SmallVec<[Span; 4]> = SmallVec::new();
        this.fence_beyond_first_region(sid, iova, len);
        this.translate_pages(faults, (sid, st, c), iova, len, dir, slot, &mut spans)?;
        if copy(this.frames.memory(), &spans) {
            this.stats.count_bytes_in(slot, sid, dir == Dir::Write, len);
            Ok(())
        } else {
            Err(faults.raise(sid, iova, FaultKind::ForbiddenFrame, dir))
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
            // (I8 of `crate::sync::inflight`) Before anything of `beyond` is read.
            self.inflight.fence_for(sid, beyond);
        }
    }

    /// A bypassed access: IOVA = PA, every frame pinned with the DART
    /// column's policy check, so forbidden frames stay unreachable.
    fn bypass_access(
        &self,
        faults: &impl Raise,
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
                Err(_) => return Err(faults.raise(sid, (page << shift).max(pa), FaultKind::ForbiddenFrame, dir)),
            }
            page += 1;
        }
        let perm = if dir == Dir::Read { Perm::R } else { Perm::W };
        let pin = match self.frames.pin(&frames, Access::Dart, perm) {
            Ok(pin) => pin,
            Err(frame_table::Error::ForbiddenType { frame, .. }) => {
                let at = self.frames.pa_of(frame).unwrap_or(pa).max(pa);
                return Err(faults.raise(sid, at, FaultKind::ForbiddenFrame, dir));
            }
            Err(e) => return Err(e.into()),
        };
        let ok = copy(self.frames.memory(), &[Span { iova: pa, pa, len }]);
        drop(pin);
        if ok {
            Ok(())
        } else {
            Err(faults.raise(sid, pa, FaultKind::ForbiddenFrame, dir))
        }
    }
}
