//! Slice holds: memory a [`crate::StreamPort`] hands out as
//! [`vm_memory::VolatileSlice`]s keeps its frames counted as DART-reachable
//! until the last slice derived from it is dropped (docs/design.md §4, "Slices hold
//! their frames").
//!
//! A slice outlives the translation that produced it: virtio-queue's
//! `Reader::new` collects a descriptor chain's slices and copies from them
//! later, long after the DMA left the in-flight tracker. Without a hold, a
//! strict unmap could return, the kernel free the frame and reuse it as
//! `kernel-restricted`, and the old `Reader` read the secret.
//!
//! # Protocol
//!
//! 1. A hold takes one DART count on every frame its slices cover
//!    ([`frame_table::FrameTable::acquire`], `Access::Dart`, with the
//!    policy check), **while the translation's in-flight section is still
//!    open** (the in-flight tracker). All or nothing: if one frame refuses,
//!    the counts already taken are given back and no slice is handed out.
//! 2. A strict unmap (or a deferred flush) clears the entries, invalidates,
//!    waits for the DMA in flight, and only then releases the PTE's count.
//!    By 1, a hold taken under a translation of the old entry entered the
//!    section before that wait ended, so its count was taken *before* the
//!    PTE's count is released: the frame never reaches zero counts while a
//!    slice of it exists. A translation that enters after the wait sees the
//!    cleared entry and gets no slice.
//! 3. The unmap does not wait for holds: it returns, and no *new* DMA
//!    reaches the frames. The frame's DART count drops when the last clone
//!    of the hold is dropped ([`SliceHold`] is reference-counted, and
//!    vm-memory copies it into every slice and sub-slice).
//! 4. While a hold lives, `free` or `retype` of its frames sees a DART
//!    count: the R2 breach (`frame-busy` in reject mode, the halt in panic
//!    mode). It never waits, unlike the frame table's pins.
//! 5. Every hold is recorded per frame in the DART's `Holds` registry in
//!    the same critical section as its counts, so the registry, the PTEs
//!    and the pending invalidations together account for every DART count
//!    (`counts-consistent`), and the kernel can ask how many holds a frame
//!    still has ([`crate::Dart::slice_holds`]).
//!
//! The hot paths ([`crate::Dart::translate`], [`crate::Dart::dma_read`],
//! [`crate::Dart::dma_write`]) take no hold: a copy through them ends
//! inside its in-flight section. Only the port's vm-memory view pays for
//! holds, once per `get_slices` call.
//!
//! A hold is not `Send` (like a `VolatileSlice`, and like the in-flight
//! guard): it is dropped on the thread that took it.

use frame_table::{Access, Counter, Frame, FrameTable, Perm};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

/// A DART's record of the slice holds outstanding on each frame
/// (invariant 5 of the module protocol).
#[derive(Debug)]
pub(crate) struct Holds {
    frames: Arc<FrameTable>,
    /// Holds per frame; a frame with none has no entry.
    by_frame: Mutex<FxHashMap<Frame, u32>>,
}

impl Holds {
    pub(crate) fn new(frames: Arc<FrameTable>) -> Holds {
        Holds { frames, by_frame: Mutex::new(FxHashMap::default()) }
    }

    /// Takes one hold on each of `frames` with `perm` (invariant 1): the
    /// policy check and a DART count per frame, all or nothing. The caller
    /// holds the in-flight section of the translation that found them (or,
    /// for a bypassed stream, the frames are named by physical address and
    /// the policy check is the whole protection).
    pub(crate) fn take(self: &Arc<Self>, frames: &[Frame], perm: Perm) -> Result<SliceHold, frame_table::Error> {
        if frames.is_empty() {
            return Ok(SliceHold::EMPTY);
        }
        // Invariant 5: the counts and their record in one critical section.
        let mut by_frame = self.by_frame.lock();
        for (i, &f) in frames.iter().enumerate() {
            // Invariant 1: the policy check and a DART count per frame,
            // while the caller's in-flight section is open.
            if let Err(e) = self.frames.acquire(f, Access::Dart, perm) {
                // Invariant 1: all or nothing.
                for &g in &frames[..i] {
                    // Taken just above under this lock: the release cannot fail.
                    let _ = self.frames.release(g, Counter::Dart);
                }
                return Err(e);
            }
        }
        // Invariant 5: recorded before the lock is dropped.
        for &f in frames {
            *by_frame.entry(f).or_default() += 1;
        }
        drop(by_frame);
        Ok(SliceHold(Some(Rc::new(HoldInner { holds: self.clone(), frames: frames.into() }))))
    }

    /// Holds outstanding on `frame`.
    pub(crate) fn on(&self, frame: Frame) -> u64 {
        self.by_frame.lock().get(&frame).copied().map_or(0, u64::from)
    }

    /// Every frame with holds, and how many.
    pub(crate) fn all(&self) -> Vec<(Frame, u64)> {
        self.by_frame.lock().iter().map(|(&f, &n)| (f, u64::from(n))).collect()
    }

    /// Gives back one hold on each of `frames` (invariant 3).
    fn release(&self, frames: &[Frame]) {
        // Invariant 5: the record and the counts change together.
        let mut by_frame = self.by_frame.lock();
        for &f in frames {
            if let Some(n) = by_frame.get_mut(&f) {
                *n -= 1;
                if *n == 0 {
                    by_frame.remove(&f);
                }
            }
            // Taken by `take`: the frame still has this count.
            let _ = self.frames.release(f, Counter::Dart);
        }
    }
}

/// What one `get_slices` call holds: its frames, given back when the last
/// clone drops.
struct HoldInner {
    holds: Arc<Holds>,
    frames: SmallVec<[Frame; 2]>,
}

impl Drop for HoldInner {
    fn drop(&mut self) {
        // Invariant 3: the last clone of the hold gives the counts back.
        self.holds.release(&self.frames);
    }
}

/// The hold every slice of a [`crate::PortMemory`] carries: its frames stay
/// counted as DART-reachable while any clone of it lives (the module's
/// protocol, invariant 3). It is the view's vm-memory bitmap type, so vm-memory and
/// virtio-queue copy it into every `VolatileSlice`, sub-slice, `Reader` and
/// `Writer`. It tracks no dirty pages. Not `Send`.
#[derive(Clone, Default)]
pub struct SliceHold(Option<Rc<HoldInner>>);

impl SliceHold {
    /// A hold on nothing (what `Bitmap::slice_at` of an empty hold gives).
    pub const EMPTY: SliceHold = SliceHold(None);

    /// The frames this hold keeps counted (with repeats if a frame is
    /// reached twice).
    pub fn frames(&self) -> &[Frame] {
        self.0.as_ref().map_or(&[], |h| &h.frames)
    }
}

impl fmt::Debug for SliceHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SliceHold").field(&self.frames()).finish()
    }
}

impl frame_table::vm_memory::bitmap::WithBitmapSlice<'_> for SliceHold {
    type S = SliceHold;
}

impl frame_table::vm_memory::bitmap::BitmapSlice for SliceHold {}

impl frame_table::vm_memory::bitmap::Bitmap for SliceHold {
    fn mark_dirty(&self, _offset: usize, _len: usize) {}

    fn dirty_at(&self, _offset: usize) -> bool {
        false
    }

    /// A sub-slice keeps the whole hold: its frames are among the hold's.
    fn slice_at(&self, _offset: usize) -> SliceHold {
        self.clone()
    }
}
