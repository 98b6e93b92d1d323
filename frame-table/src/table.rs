//! The frame table: physical memory plus one state word per frame, the
//! operations of docs/design.md §2 (allocate, retype, free, map counts, aperture), and
//! the SoC's violation mode.
//!
//! The per-frame protocol is in [`crate::cell`]; this module adds frame
//! numbers, the free list (a slow-path `parking_lot` mutex: allocation is not a
//! hot path), scrubbing, and what to do about an invariant breach.

use crate::cell::{claim_all, ClaimRefused, FrameCell, Refusal};
use crate::error::{Error, Violation};
use crate::memory::{check_regions, map_regions, ConfigError, FrameSize, Region, DEFAULT_DRAM_BASE};
use crate::observer::{FrameEvent, FrameObserver, ObserverSlot};
use crate::policy::{device_reachable, Access, Perm};
use crate::reach::ReachMap;
use crate::state::{Counter, FrameState};
use crate::sync::{AtomicBool, AtomicU64, Ordering};
use crate::types::{Frame, FrameType};
use parking_lot::Mutex;
use std::borrow::Cow;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// What the SoC does about an invariant breach (docs/design.md §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnViolation {
    /// As SPTM: the emulated system halts, records why, and every later
    /// operation returns [`Error::Halted`].
    #[default]
    Panic,
    /// The step fails with `frame-busy` or `forbidden-type`, nothing changes,
    /// and the run goes on (for fuzzing).
    Reject,
}

/// How to build a [`FrameTable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameTableConfig {
    /// Physical memory regions (at least one).
    pub regions: Vec<Region>,
    /// The frame size (= DART page size).
    pub frame_size: FrameSize,
    /// The violation mode.
    pub on_violation: OnViolation,
}

impl FrameTableConfig {
    /// One region of `bytes` at [`DEFAULT_DRAM_BASE`], 16 KiB frames, `panic` mode.
    pub fn with_memory(bytes: u64) -> FrameTableConfig {
        FrameTableConfig {
            regions: vec![Region { base: DEFAULT_DRAM_BASE, size: bytes }],
            frame_size: FrameSize::K16,
            on_violation: OnViolation::Panic,
        }
    }

    /// The same with another frame size.
    pub fn frame_size(mut self, frame_size: FrameSize) -> Self {
        self.frame_size = frame_size;
        self
    }

    /// The same with another violation mode.
    pub fn on_violation(mut self, mode: OnViolation) -> Self {
        self.on_violation = mode;
        self
    }
}

/// A pin on frames for one aperture copy or bypassed DART access: while it
/// lives, their types cannot change. Dropping it releases them.
#[derive(Debug)]
pub struct FramePin<'a> {
    table: &'a FrameTable,
    frames: Vec<Frame>,
}

impl FramePin<'_> {
    /// The pinned frames.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }
}

impl Drop for FramePin<'_> {
    fn drop(&mut self) {
        for f in &self.frames {
            self.table.cells[f.index()].unpin();
        }
    }
}

/// Physical memory and the state of every frame in it.
///
/// Guarantees, whatever the interleaving of calls from any threads:
/// - a frame's mappings of each kind are only taken when its type's policy
///   allows them, and the type only changes when it has none (R1–R3);
/// - counters never wrap (R4);
/// - a frame leaves `free` zero-filled (R5);
/// - a retype or free of several frames changes every one of them or none,
///   and no other thread sees a frame of it changed before all are (R6);
/// - an invariant breach is handled by the [`OnViolation`] mode, never by a
///   Rust panic; once halted, every operation returns [`Error::Halted`].
#[derive(Debug)]
pub struct FrameTable {
    memory: GuestMemoryMmap,
    base: u64,
    frame_size: FrameSize,
    /// `frame_size.shift()`, kept as a number for the address-to-frame
    /// lookups of every DART walk.
    frame_shift: u32,
    /// `base >> frame_shift`: the absolute number of frame 0.
    base_frame: u64,
    cells: Box<[FrameCell]>,
    reach: ReachMap,
    free_list: Mutex<Vec<u32>>,
    free_count: AtomicU64,
    /// One past the highest frame that ever left `free` (allocation or
    /// retype): every frame at or above it is `free` (or a hole), has no
    /// mapping and is unreachable, so invariant checks stop here and cost
    /// what was used, not the size of memory. Raised (`fetch_max`) by the
    /// claimer, before the frame's type changes; never lowered.
    touched: AtomicU64,
    on_violation: OnViolation,
    halted: AtomicBool,
    halt_reason: Mutex<Option<Violation>>,
    violations: AtomicU64,
    observer: ObserverSlot,
}

impl FrameTable {
    /// Maps the configured memory and marks every frame `free`.
    pub fn new(config: FrameTableConfig) -> Result<FrameTable, ConfigError> {
        let regions = check_regions(&config.regions, config.frame_size)?;
        let memory = map_regions(&regions)?;
        let shift = config.frame_size.shift();
        let base = regions[0].base;
        let end = regions.last().map_or(base, |r| r.base + r.size);
        let frames = ((end - base) >> shift) as usize;
        let mut backed = vec![false; frames];
        for r in &regions {
            let first = ((r.base - base) >> shift) as usize;
            let n = (r.size >> shift) as usize;
            backed[first..first + n].iter_mut().for_each(|b| *b = true);
        }
        let cells = backed
            .iter()
            .map(|&b| FrameCell::new(if b { FrameState::FREE } else { FrameState::HOLE }))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        // Popped from the end: the lowest frames are allocated first.
        let free: Vec<u32> = (0..frames as u32).rev().filter(|&i| backed[i as usize]).collect();
        Ok(FrameTable {
            memory,
            base,
            frame_size: config.frame_size,
            frame_shift: shift,
            base_frame: base >> shift,
            free_count: AtomicU64::new(free.len() as u64),
            touched: AtomicU64::new(0),
            free_list: Mutex::new(free),
            reach: ReachMap::new(cells.len()),
            cells,
            on_violation: config.on_violation,
            halted: AtomicBool::new(false),
            halt_reason: Mutex::new(None),
            violations: AtomicU64::new(0),
            observer: ObserverSlot::default(),
        })
    }

    /// The physical memory. Writing it directly bypasses every check: that is
    /// for devices' own bookkeeping in tests, not for emulated accesses.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// The frame size.
    pub fn frame_size(&self) -> FrameSize {
        self.frame_size
    }

    /// The violation mode.
    pub fn on_violation(&self) -> OnViolation {
        self.on_violation
    }

    /// Frame numbers in the table (holes included).
    pub fn frame_count(&self) -> u64 {
        self.cells.len() as u64
    }

    /// Frames currently `free` (claimed ones excluded; approximate under races).
    pub fn free_frames(&self) -> u64 {
        self.free_count.load(Ordering::Relaxed)
    }

    /// Metadata bytes per frame (the state word).
    pub const METADATA_BYTES_PER_FRAME: usize = std::mem::size_of::<FrameCell>();

    /// The physical address of `frame`.
    pub fn pa_of(&self, frame: Frame) -> Result<u64, Error> {
        self.cell(frame)?;
        Ok(self.pa_unchecked(frame))
    }

    /// The frame holding physical address `pa`.
    #[inline]
    pub fn frame_of(&self, pa: u64) -> Result<Frame, Error> {
        match self.cell_at(pa) {
            Some((i, cell)) if !cell.load().hole() => Ok(Frame(i as u32)),
            _ => Err(Error::BadRange { start: pa, len: 1, reason: "no physical memory at this address" }),
        }
    }

    /// The index and cell of the frame holding `pa`, if the table covers it
    /// (holes included).
    #[inline]
    fn cell_at(&self, pa: u64) -> Option<(usize, &FrameCell)> {
        let index = usize::try_from(pa.checked_sub(self.base)? >> self.frame_shift).ok()?;
        Some((index, self.cells.get(index)?))
    }

    /// The state of the frame holding `pa`, if memory backs it (holes
    /// included: callers check the type).
    #[inline]
    fn state_at(&self, pa: u64) -> Option<FrameState> {
        Some(self.cell_at(pa)?.1.load())
    }

    /// Whether the frame holding `pa` is a frame of type `ty` (not a hole,
    /// not outside memory): one load and one compare, for the DART walker's
    /// check of every table it reads.
    #[inline]
    pub fn is_type_at(&self, pa: u64, ty: FrameType) -> bool {
        self.state_at(pa).is_some_and(|s| s.is(ty))
    }

    /// [`FrameTable::device_reachable_frame`] of the frame holding `pa`.
    #[inline]
    pub fn device_reachable_at(&self, pa: u64) -> bool {
        // The regions are frame-aligned (`check_regions`), so the frame
        // number of `pa` less `base_frame` is `(pa - base) >> frame_shift`.
        self.device_reachable_frame(pa >> self.frame_shift)
    }

    /// Whether a DART may reach the frame whose absolute number is `pfn`
    /// (the frame holding `pfn * frame_size`) at all
    /// ([`crate::policy::device_reachable`] of its type); false for holes,
    /// outside memory, and while a type change away from a reachable type is
    /// in progress. One subtraction and one load of the device-reachable map
    /// ([`crate::reach`]), which stays cached: the walker's leaf check, with
    /// the frame number its IOTLB value holds.
    #[inline]
    pub fn device_reachable_frame(&self, pfn: u64) -> bool {
        match pfn.checked_sub(self.base_frame).map(usize::try_from) {
            Some(Ok(index)) => self.reach.get(index),
            _ => false,
        }
    }

    /// Whether the device-reachable map agrees with every unclaimed frame's
    /// type (its invariant at rest, [`crate::reach`]); the frames it gets
    /// wrong otherwise. For invariant checks at quiescent points.
    pub fn reach_map_consistent(&self) -> Result<(), Vec<Frame>> {
        let wrong: Vec<Frame> = (0..self.touched_frames() as usize)
            .filter(|&i| {
                let s = self.cells[i].load();
                !s.claimed() && self.reach.get(i) != (!s.hole() && device_reachable(s.ty()))
            })
            .map(|i| Frame(i as u32))
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong)
        }
    }

    /// A snapshot of `frame`'s state.
    #[inline]
    pub fn state(&self, frame: Frame) -> Result<FrameState, Error> {
        Ok(self.cell(frame)?.load())
    }

    /// One past the highest frame number that ever left `free`: frames from
    /// here on are `free` or holes, unmapped and unreachable. Invariant
    /// checks visit only the frames below it ([`FrameTable::touched_states`]).
    pub fn touched_frames(&self) -> u64 {
        self.touched.load(Ordering::Acquire).min(self.cells.len() as u64)
    }

    /// [`FrameTable::states`] of the frames below
    /// [`FrameTable::touched_frames`]: every frame that can have a type
    /// other than `free`, a mapping or a device-reachable bit.
    pub fn touched_states(&self) -> impl Iterator<Item = (Frame, FrameState)> + '_ {
        self.cells[..self.touched_frames() as usize]
            .iter()
            .enumerate()
            .map(|(i, c)| (Frame(i as u32), c.load()))
            .filter(|(_, s)| !s.hole())
    }

    /// Every frame with its state (holes left out).
    pub fn states(&self) -> impl Iterator<Item = (Frame, FrameState)> + '_ {
        self.cells.iter().enumerate().map(|(i, c)| (Frame(i as u32), c.load())).filter(|(_, s)| !s.hole())
    }

    /// Whether the emulated system has halted, and why.
    pub fn halted(&self) -> Option<Violation> {
        if self.halted.load(Ordering::Acquire) {
            self.halt_reason.lock().clone()
        } else {
            None
        }
    }

    /// Invariant breaches seen so far (in either mode).
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }

    /// `Err(Halted)` once the system has halted: the first check of every operation.
    #[inline]
    pub fn check_running(&self) -> Result<(), Error> {
        if self.halted.load(Ordering::Acquire) {
            Err(self.halted_error())
        } else {
            Ok(())
        }
    }

    #[cold]
    fn halted_error(&self) -> Error {
        let reason = self.halt_reason.lock().clone();
        // `halted` is set only after the reason is recorded.
        Error::Halted(reason.unwrap_or(Violation::TtbrNotTable { pa: 0, ty: None }))
    }

    /// Installs (or with `None` removes) the observer, called after every
    /// successful allocation, retype and free and for every invariant breach
    /// (see [`crate::observer`]).
    pub fn set_observer(&self, observer: Option<Arc<FrameObserver>>) {
        self.observer.set(observer);
    }

    /// Handles an invariant breach according to the violation mode and returns
    /// the error for the step that caused it: [`Error::Panic`] (and the system
    /// halts) or the `reject`-mode error. Used by the DART for TTBR breaches.
    pub fn report_violation(&self, violation: Violation) -> Error {
        self.violations.fetch_add(1, Ordering::Relaxed);
        self.observer.emit(|| FrameEvent::Violation(violation.clone()));
        match self.on_violation {
            OnViolation::Reject => violation.reject_error(),
            OnViolation::Panic => {
                let mut reason = self.halt_reason.lock();
                if reason.is_none() {
                    *reason = Some(violation.clone());
                }
                self.halted.store(true, Ordering::Release);
                Error::Panic(violation)
            }
        }
    }

    #[inline]
    fn cell(&self, frame: Frame) -> Result<&FrameCell, Error> {
        match self.cells.get(frame.index()) {
            Some(c) => Ok(c),
            None => Err(Error::OutOfRange { frame, frames: self.frame_count() }),
        }
    }

    /// Turns a cell's refusal into the public error, `access`/`perm` naming
    /// what was asked (for `ForbiddenType`) and `to` the requested type.
    fn refused(&self, frame: Frame, r: Refusal, access: Access, perm: Perm, to: FrameType) -> Error {
        match r {
            Refusal::Hole => Error::OutOfRange { frame, frames: self.frame_count() },
            Refusal::Forbidden(ty) => Error::ForbiddenType { frame, ty, access, perm },
            Refusal::Limit { ty, counter, count, limit } => Error::MappingLimit { frame, ty, counter, count, limit },
            Refusal::Transition { from } => Error::BadTransition { frame, from, to },
            Refusal::NotMapped { ty, counter } => Error::NotMapped { frame, ty, counter },
            Refusal::Mapped { ty, counts } => {
                let violation = if to == FrameType::Free {
                    Violation::FreeMapped { frame, ty, counts }
                } else {
                    Violation::RetypeMapped { frame, from: ty, to, counts }
                };
                self.report_violation(violation)
            }
        }
    }

    /// Allocates `count` frames of `ty`, zero-filled (R5). All or nothing.
    pub fn alloc(&self, ty: FrameType, count: u64) -> Result<Vec<Frame>, Error> {
        self.check_alloc_type(ty)?;
        if count == 0 {
            return Err(Error::BadRange { start: 0, len: 0, reason: "an allocation needs at least one frame" });
        }
        let mut claimed = Vec::new();
        {
            let mut list = self.free_list.lock();
            if count > list.len() as u64 {
                return Err(Error::OutOfFrames { ty, requested: count, available: list.len() as u64 });
            }
            while (claimed.len() as u64) < count {
                let Some(i) = list.pop() else { break };
                claimed.extend(self.claim_free(i));
            }
            self.keep_or_give_back(&mut list, &claimed, ty, count)?;
        }
        Ok(self.publish_alloc(claimed, ty))
    }

    /// [`FrameTable::alloc`] of `count` frames whose PAs are each a multiple
    /// of `align_frames` frames (a power of two; the frames need not be
    /// contiguous): for a table a register names at a coarser granule than
    /// the frame size (t8110's TTBR at 4 KiB frames). All or nothing;
    /// `OutOfFrames` when fewer than `count` aligned frames are free.
    pub fn alloc_aligned(&self, ty: FrameType, count: u64, align_frames: u64) -> Result<Vec<Frame>, Error> {
        if align_frames <= 1 {
            return self.alloc(ty, count);
        }
        self.check_alloc_type(ty)?;
        if count == 0 || !align_frames.is_power_of_two() {
            return Err(Error::BadRange {
                start: 0,
                len: 0,
                reason: "an aligned allocation needs frames and a power-of-two alignment",
            });
        }
        let mask = (align_frames << self.frame_shift) - 1;
        let mut claimed = Vec::new();
        {
            let mut list = self.free_list.lock();
            // From the top, as `alloc` pops; an aligned entry that fails the
            // claim is stale (retyped out of `free` directly) and is dropped.
            let mut i = list.len();
            while i > 0 && (claimed.len() as u64) < count {
                i -= 1;
                let f = list[i];
                if self.pa_unchecked(Frame(f)) & mask != 0 {
                    continue;
                }
                list.swap_remove(i);
                claimed.extend(self.claim_free(f));
            }
            self.keep_or_give_back(&mut list, &claimed, ty, count)?;
        }
        Ok(self.publish_alloc(claimed, ty))
    }

    /// The checks every allocation makes first: the system runs, and the
    /// new type is not `free`.
    fn check_alloc_type(&self, ty: FrameType) -> Result<(), Error> {
        self.check_running()?;
        if ty == FrameType::Free {
            return Err(Error::BadTransition { frame: Frame(0), from: FrameType::Free, to: FrameType::Free });
        }
        Ok(())
    }

    /// Claims free-list entry `i` for an allocation; `None` if the entry
    /// is stale (the frame was retyped out of `free` directly).
    fn claim_free(&self, i: u32) -> Option<Frame> {
        self.cells[i as usize].claim().ok()?;
        self.touched.fetch_max(u64::from(i) + 1, Ordering::AcqRel);
        Some(Frame(i))
    }

    /// Under the free-list lock: keeps `claimed` if it has `count` frames,
    /// else gives every claim back to `list` and fails `OutOfFrames` (all
    /// or nothing).
    fn keep_or_give_back(
        &self,
        list: &mut Vec<u32>,
        claimed: &[Frame],
        ty: FrameType,
        count: u64,
    ) -> Result<(), Error> {
        if (claimed.len() as u64) < count {
            for f in claimed {
                let _ = self.cells[f.index()].unclaim();
                list.push(f.0);
            }
            let available = claimed.len() as u64;
            return Err(Error::OutOfFrames { ty, requested: count, available });
        }
        self.free_count.fetch_sub(count, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes claimed frames as `ty` (scrubbed, R5) and reports them.
    fn publish_alloc(&self, claimed: Vec<Frame>, ty: FrameType) -> Vec<Frame> {
        for &f in &claimed {
            self.cells[f.index()].complete(FrameType::Free, ty, &self.reach, f.index(), || self.scrub(f));
        }
        for &frame in &claimed {
            self.observer.emit(|| FrameEvent::Alloc { frame, pa: self.pa_unchecked(frame), ty });
        }
        claimed
    }

    /// Retypes `frame` to `to` (R1): only the docs/design.md §2 transitions, only with no
    /// mapping of any kind (else an invariant breach). From `free` the frame is
    /// scrubbed first. [`FrameTable::retype_all`] of one frame.
    pub fn retype(&self, frame: Frame, to: FrameType) -> Result<(), Error> {
        self.retype_all(&[frame], to)
    }

    /// Frees `frame` (R2): only with no mapping of any kind, pending DART
    /// invalidations included (else an invariant breach).
    /// [`FrameTable::free_all`] of one frame.
    pub fn free(&self, frame: Frame) -> Result<(), Error> {
        self.free_all(&[frame])
    }

    /// Retypes every frame of `frames` to `to`, all or nothing (R1, R6): each
    /// frame's transition must be allowed and the frame unmapped; the first
    /// frame (in ascending frame order) that is not makes the whole call
    /// fail and changes no frame (`frame-table/src/cell.rs`, `# Protocol`).
    /// Frames leaving `free` are scrubbed.
    ///
    /// Errors: `BadRange` for an empty list or a frame named twice,
    /// `OutOfRange`, `BadTransition` (also for `to == free`: frames return
    /// there only by [`FrameTable::free_all`]), and for a mapped frame the
    /// violation mode's answer: `FrameBusy` in `reject` mode, `Panic` in
    /// `panic` mode. A halted retype changed nothing either: every frame
    /// keeps its type and counts, and the table records the breach.
    pub fn retype_all(&self, frames: &[Frame], to: FrameType) -> Result<(), Error> {
        self.check_running()?;
        let order = self.ascending(frames)?;
        if to == FrameType::Free {
            let frame = order[0];
            let from = self.cells[frame.index()].load().ty();
            return Err(Error::BadTransition { frame, from, to });
        }
        // Raised before the claims: a frame may leave `free` here, and the
        // checks visit only the touched prefix.
        if let Some(last) = order.last() {
            self.touched.fetch_max(last.0 as u64 + 1, Ordering::AcqRel);
        }
        let claimed = claim_all(order.iter().map(|f| &self.cells[f.index()]), |c| c.retype(to))
            .map_err(|e| self.claim_refused(&order, e, to))?;
        let from_free = claimed.iter().filter(|&&(_, from)| from == FrameType::Free).count() as u64;
        self.free_count.fetch_sub(from_free, Ordering::Relaxed);
        for (&frame, &(cell, from)) in order.iter().zip(&claimed) {
            cell.complete(from, to, &self.reach, frame.index(), || self.scrub(frame));
        }
        for (&frame, &(_, from)) in order.iter().zip(&claimed) {
            self.observer.emit(|| FrameEvent::Retype { frame, pa: self.pa_unchecked(frame), from, to });
        }
        Ok(())
    }

    /// Frees every frame of `frames`, all or nothing (R2, R6): each frame
    /// must be allocated and have no mapping of any kind, pending DART
    /// invalidations included; the first frame (in ascending frame order)
    /// that does not makes the whole call fail and changes no frame.
    ///
    /// Errors: `BadRange` for an empty list or a frame named twice,
    /// `OutOfRange`, `BadTransition` for a frame already `free`, and for a
    /// mapped frame the violation mode's answer: `FrameBusy` in `reject`
    /// mode, `Panic` in `panic` mode. A halted free changed nothing either:
    /// every frame keeps its type and counts (none of them is `free`), and
    /// the table records the breach.
    pub fn free_all(&self, frames: &[Frame]) -> Result<(), Error> {
        self.check_running()?;
        let order = self.ascending(frames)?;
        let claimed = claim_all(order.iter().map(|f| &self.cells[f.index()]), FrameCell::free)
            .map_err(|e| self.claim_refused(&order, e, FrameType::Free))?;
        for (&frame, &(cell, from)) in order.iter().zip(&claimed) {
            cell.complete(from, FrameType::Free, &self.reach, frame.index(), || {});
        }
        {
            let mut list = self.free_list.lock();
            list.extend(order.iter().map(|f| f.0));
            let free = self.free_count.fetch_add(order.len() as u64, Ordering::Relaxed) + order.len() as u64;
            if list.len() as u64 > 2 * free + 64 {
                self.compact_free_list(&mut list);
            }
        }
        for (&frame, &(_, from)) in order.iter().zip(&claimed) {
            self.observer.emit(|| FrameEvent::Free { frame, pa: self.pa_unchecked(frame), from });
        }
        Ok(())
    }

    /// `frames` in ascending order (step 1 of the multi-frame protocol),
    /// checked: not empty, every frame in the table, none named twice.
    fn ascending(&self, frames: &[Frame]) -> Result<Vec<Frame>, Error> {
        if frames.is_empty() {
            return Err(Error::BadRange { start: 0, len: 0, reason: "a retype or free needs at least one frame" });
        }
        for &f in frames {
            self.cell(f)?;
        }
        let mut order = frames.to_vec();
        order.sort_unstable();
        if let Some(w) = order.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::BadRange {
                start: u64::from(w[0].0),
                len: 1,
                reason: "a frame is named twice in one retype or free",
            });
        }
        Ok(order)
    }

    /// The error of a multi-frame claim refused at `e.at` (all claims
    /// already given back). Frames whose cancelled claim was on `free` go
    /// back on the free list: an allocation that met the claim dropped the
    /// frame's entry as stale.
    fn claim_refused(&self, order: &[Frame], e: ClaimRefused, to: FrameType) -> Error {
        let back: Vec<u32> =
            order.iter().zip(&e.cancelled).filter(|&(_, &from)| from == FrameType::Free).map(|(f, _)| f.0).collect();
        if !back.is_empty() {
            self.free_list.lock().extend(back);
        }
        self.refused(order[e.at], e.refusal, Access::CpuKernel, Perm::NONE, to)
    }

    /// Drops the free list's stale entries (frames retyped straight out of
    /// `free`, or listed twice), keeping the most recent entry of each frame
    /// so reuse stays last-in, first-out. Amortised: it runs only when stale
    /// entries outnumber live ones.
    fn compact_free_list(&self, list: &mut Vec<u32>) {
        let mut seen = vec![false; self.cells.len()];
        let mut kept: Vec<u32> = list
            .iter()
            .rev()
            .copied()
            .filter(|&i| {
                let s = self.cells[i as usize].load();
                let keep = s.ty() == FrameType::Free && !s.claimed() && !seen[i as usize];
                seen[i as usize] = true;
                keep
            })
            .collect();
        kept.reverse();
        *list = kept;
    }

    /// Takes one mapping of `frame` for `access` (`CpuKernel`, `CpuUser` or
    /// `Dart`) with `perm`: the policy check, the limits and the count in one
    /// atomic step (R3, R4). Returns the new state.
    #[inline]
    pub fn acquire(&self, frame: Frame, access: Access, perm: Perm) -> Result<FrameState, Error> {
        self.check_running()?;
        let cell = self.cell(frame)?;
        cell.acquire(access, perm).map_err(|r| self.refused(frame, r, access, perm, FrameType::Free))
    }

    /// Takes the DART's reference on one of its own translation tables (a
    /// `dart-table` frame; anything else is `ForbiddenType`). While held, the
    /// frame counts as DART-mapped, so freeing or retyping it is the R1/R2
    /// invariant breach: a table the DART can still walk is never recycled.
    /// Released with [`FrameTable::release`] and [`Counter::Dart`].
    pub fn hold_table(&self, frame: Frame) -> Result<FrameState, Error> {
        self.check_running()?;
        let cell = self.cell(frame)?;
        cell.hold_table().map_err(|r| self.refused(frame, r, Access::Dart, Perm::RW, FrameType::Free))
    }

    /// [`FrameTable::hold_table`] of a `dart-table` frame nothing counts
    /// yet, in one atomic step: how a DART registers a table a driver built
    /// (docs/design.md §3, "Driver-built tables"), so that a table has one
    /// owner. `Ok(None)` when the frame already has counts (another DART
    /// holds it as a table); anything but `dart-table` is `ForbiddenType`.
    pub fn hold_table_sole(&self, frame: Frame) -> Result<Option<FrameState>, Error> {
        self.check_running()?;
        let cell = self.cell(frame)?;
        match cell.hold_table_sole() {
            Ok(s) => Ok(Some(s)),
            Err(Refusal::Mapped { .. }) => Ok(None),
            Err(r) => Err(self.refused(frame, r, Access::Dart, Perm::RW, FrameType::Free)),
        }
    }

    /// Releases one count of `counter` (a mapping gone, or a pending DART
    /// invalidation completed). Works after a halt too, so that teardown
    /// accounting stays exact.
    #[inline]
    pub fn release(&self, frame: Frame, counter: Counter) -> Result<FrameState, Error> {
        let cell = self.cell(frame)?;
        cell.release(counter).map_err(|r| self.refused(frame, r, Access::Dart, Perm::NONE, FrameType::Free))
    }

    /// Moves one DART count of `frame` to "pending invalidation" (deferred
    /// unmap). Refused with `MappingLimit` when the pending counter is full: the
    /// caller must then invalidate synchronously.
    pub fn defer_dart(&self, frame: Frame) -> Result<FrameState, Error> {
        let cell = self.cell(frame)?;
        cell.defer().map_err(|r| self.refused(frame, r, Access::Dart, Perm::NONE, FrameType::Free))
    }

    /// Pins `frames` for one access of `access` (`Aperture` or `Dart` for a
    /// bypassed DMA) with `perm`: each frame's policy is checked in the same
    /// atomic step that pins it, and its type cannot change until the pin
    /// drops. All or nothing. The frames are pinned in ascending order, as
    /// multi-frame retypes and frees claim them (no cycle of waits:
    /// `frame-table/src/cell.rs`, `# Protocol`).
    pub fn pin(&self, frames: &[Frame], access: Access, perm: Perm) -> Result<FramePin<'_>, Error> {
        self.check_running()?;
        let order: Cow<'_, [Frame]> = if frames.is_sorted() {
            Cow::Borrowed(frames)
        } else {
            let mut sorted = frames.to_vec();
            sorted.sort_unstable();
            Cow::Owned(sorted)
        };
        let mut pin = FramePin { table: self, frames: Vec::with_capacity(order.len()) };
        for &f in order.iter() {
            let cell = self.cell(f)?;
            cell.pin(access, perm).map_err(|r| self.refused(f, r, access, perm, FrameType::Free))?;
            pin.frames.push(f);
        }
        Ok(pin)
    }

    /// The frames `[pa, pa + len)` covers, or `BadRange`.
    fn frames_of_range(&self, pa: u64, len: u64) -> Result<Vec<Frame>, Error> {
        let bad = |reason| Error::BadRange { start: pa, len, reason };
        if len == 0 {
            return Err(bad("empty access"));
        }
        let last = pa.checked_add(len - 1).ok_or_else(|| bad("range overflows"))?;
        let first = self.frame_of(pa).map_err(|_| bad("no physical memory at this address"))?;
        let end = self.frame_of(last).map_err(|_| bad("range runs past physical memory"))?;
        let frames: Vec<Frame> = (first.0..=end.0).map(Frame).collect();
        if frames.iter().any(|&f| self.cells[f.index()].load().hole()) {
            return Err(bad("range crosses a hole between memory regions"));
        }
        Ok(frames)
    }

    /// Reads `buf.len()` bytes at `pa` through the static physical aperture
    /// (not a mapping): refused for types the aperture may not read.
    pub fn aperture_read(&self, pa: u64, buf: &mut [u8]) -> Result<(), Error> {
        let frames = self.frames_of_range(pa, buf.len() as u64)?;
        let _pin = self.pin(&frames, Access::Aperture, Perm::R)?;
        self.memory.read_slice(buf, GuestAddress(pa)).map_err(|_| Error::BadRange {
            start: pa,
            len: buf.len() as u64,
            reason: "memory access failed",
        })
    }

    /// Writes `data` at `pa` through the static physical aperture: refused
    /// (nothing written) if any frame's type forbids aperture writes.
    pub fn aperture_write(&self, pa: u64, data: &[u8]) -> Result<(), Error> {
        let frames = self.frames_of_range(pa, data.len() as u64)?;
        let _pin = self.pin(&frames, Access::Aperture, Perm::W)?;
        self.memory.write_slice(data, GuestAddress(pa)).map_err(|_| Error::BadRange {
            start: pa,
            len: data.len() as u64,
            reason: "memory access failed",
        })
    }

    /// The physical address of a frame known to be in the table.
    fn pa_unchecked(&self, frame: Frame) -> u64 {
        self.base + ((frame.0 as u64) << self.frame_shift)
    }

    /// Zero-fills a claimed frame.
    fn scrub(&self, frame: Frame) {
        static ZEROS: [u8; 16384] = [0; 16384];
        let pa = self.pa_unchecked(frame);
        let len = self.frame_size.bytes() as usize;
        // The frame is inside a mapped region (checked at construction).
        let _ = self.memory.write_slice(&ZEROS[..len], GuestAddress(pa));
    }
}
