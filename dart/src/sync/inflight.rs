//! Tracking DMA in flight, so that a strict unmap can wait for every DMA that
//! may have translated through the entries it cleared.
//!
//! # Protocol
//!
//! A thread with an exclusive slot number (the crate's `slot` module, S1)
//! marks its DMA in a *section word* of its own; threads without one share
//! two SRCU-style counters, one per *phase*. Each word and counter has a
//! cache line of its own. A *reader* is a DMA or a translation; the
//! *writer* is [`InFlight::synchronize_regions`] ([`InFlight::synchronize`]
//! for every region), called after the mapper cleared PTEs and bumped the
//! generations of what it changed (`translate::stream`, G3). The code cites
//! these invariants as `(I1)` to `(I11)`.
//!
//! 1. **I1 (section word).** An exclusive slot's word is `(outer, depth)`:
//!    entering takes it to `(outer + 1, 1)` if `depth` was 0, else to
//!    `(outer, depth + 1)`; leaving to `(outer, depth - 1)` (the `section`
//!    module). Only the slot's thread writes it (S1; a guard is not `Send`),
//!    so both are a `load` and a `store`, no read-modify-write. While a
//!    section is open the depth stays at least 1 and the outer count stays
//!    put, so a later value with depth 0 or another outer count was stored
//!    after that section closed. An outer count that wraps all the way round
//!    between two reads only makes the writer wait longer.
//! 2. **I2 (leaving releases).** The enter and leave stores are `Release`,
//!    and a shared reader's decrement is a `Release` RMW. So the writer's
//!    `Acquire` read of a value stored after a section closed (I1), or of a
//!    zero counter, makes the reader's last use of its translation
//!    happen-before the writer goes on. (The enter store is `Release` too:
//!    since C++20 a later plain store does not continue the close's release
//!    sequence, and the value read may be a later enter's.)
//! 3. **I3 (the reader's `SeqCst` point `R`).** After its enter and before it
//!    reads the stream's generation, the IOTLB or the tables, a reader has a
//!    point `R` in the `SeqCst` order: a shared counter's `fetch_add(SeqCst)`;
//!    on an exclusive slot whose region is flagged (I7), the section word
//!    stored again with a `SeqCst` swap (or a `SeqCst` fence, I8); on an
//!    unflagged exclusive slot, none of its own: the writer's process-wide
//!    barrier stands in (I8). It then loads the generation with `SeqCst` (G4).
//! 4. **I4 (the writer's fence `F` and scan).** The writer issues
//!    `fence(SeqCst)` `F`; then, under the writer mutex (one synchronizer at a
//!    time), reads each exclusive word below the high-water mark (I6) once,
//!    `Acquire`, and for each `seen` with a section open waits until a later
//!    `Acquire` read shows it closed (I1); then waits until the shared
//!    counters read zero (`Acquire`).
//! 5. **I5 (safety: the bump or the scan).** Take a fenced reader's `R`. If
//!    `F` precedes `R`, the reader's `SeqCst` generation load sees the bump,
//!    which is sequenced before `F` (a `SeqCst` load that reads an older
//!    value than a store is ordered before every `SeqCst` fence that store
//!    happens before: C++20 \[atomics.order\] 4.2, so the bump need not be
//!    an RMW), and through the bump's `Release` the cleared PTEs: it ignores
//!    older IOTLB entries and walks the new tables. If `R` precedes `F`, the
//!    scan's read after `F` returns the reader's enter (or increment) or a
//!    later value (coherence, and the fence-to-fence rule of the `SeqCst`
//!    order), and the writer waits until I2 orders the reader's last use
//!    before it. A zero shared counter is a reader's own decrement (each
//!    reader adds one and later subtracts one). So no reader uses a
//!    translation cleared before `synchronize` began.
//! 6. **I6 (high-water mark).** A slot's first entry raises `high`
//!    (`fetch_max`, then `fence(SeqCst)`) before its enter store; the writer
//!    scans only below the `high` it loads (`SeqCst`) after `F`: either that
//!    load sees the raise, or the reader's fence follows `F` and the reader
//!    sees the bump (I5). While `high` is 0 (only shared readers, which always
//!    fence) the scan is two loads, so the writer does it right after `F`,
//!    without the mutex, the barrier or the burst state, and returns if both
//!    counters read zero.
//! 7. **I7 (fence flags).** Per stream, one bit per IOVA region (the regions
//!    of the generations, `crate::types::region_bit`) says its readers must
//!    fence, and one `flagged` bit says some bit may be set. Both are set
//!    only under the writer mutex, with `SeqCst` stores, by a call that
//!    names the region (or a wider one, see "Bursts"), *before* its scan;
//!    and whenever that sets a bit the current burst's last process-wide
//!    barrier (the crate's `barrier` module, B1) did not *cover* (set before
//!    it), the call issues a new barrier before it scans. `flagged` is set before a burst's first barrier and cleared
//!    after its end cleared the bits (I10), so reading it clear says no bit
//!    is set.
//! 8. **I8 (unfenced readers).** A reader on an exclusive slot stores its
//!    enter with a plain store and a compiler fence, then loads `flagged` and,
//!    only if set, its stream's flags (both `Acquire`); if its region's bit is
//!    set, it fences (I3). A reader that saw the bit clear has a barrier
//!    point `M` forced by the writer's process-wide barrier: if its flag load
//!    came before `M`, so did its enter store, which the scan (after the
//!    barrier returned) therefore sees; if after `M`, it saw the bit set
//!    (stored before the barrier) and fenced. A DMA that goes on into more
//!    regions loads their flags again, after its enter and before it reads
//!    anything of them, and fences if a bit is set ([`InFlight::fence_for`]).
//! 9. **I9 (named regions).** A reader of a region the call did not name may
//!    enter unfenced during a burst and be missed by the scan. That is safe
//!    because the caller names every region in which a DMA may read what it
//!    changed or frees: a strict unmap (the mapper's `Kernel::invalidate`)
//!    names its range's regions in its stream (a leaf table lies within one
//!    region); every region of its stream when it retires a table above a
//!    leaf (which spans many) or when another TTBR of the stream reaches the
//!    changed tables; every region of each other stream whose TTBR reaches
//!    them; and every region of each stream whose TTBR or configuration
//!    changed since the last invalidation (its DMA in flight may still walk
//!    the old tables, at any IOVA). A flush and [`InFlight::synchronize`] name
//!    every region of the streams they cover. (A large DMA may prefetch a
//!    leaf PTE's line before it enters: a prefetch reads nothing;
//!    `crate::translate::walk_cache`, "Touches".)
//! 10. **I10 (a burst's end).** A burst ends by clearing every bit it set,
//!     then `flagged`, with `Release` stores, under the writer mutex (so no
//!     call is between its flagging and its scan). A reader's `Acquire` load
//!     of a cleared bit thus sees the burst's bumps and cleared PTEs, and no
//!     load of its DMA is performed before it. Without the process-wide
//!     barrier (not Linux, refused, or under loom) every bit is set for good
//!     and every exclusive reader fences. The writer skips the barrier and
//!     the flags while `high` is 0 (no unfenced reader exists).
//! 11. **I11 (liveness).** The phase flips exist for liveness only: I5 needs
//!     one scan after `F` that reads zero on every counter a reader may have
//!     incremented, whatever phase it loaded, so the writer does not flip
//!     when both counters read zero. Otherwise it flips twice, waiting each
//!     time for the old phase to drain (a reader that loaded the old phase
//!     but increments late is covered by the second flip); new readers enter
//!     the current phase, and new sections on a slot change its outer count,
//!     so the wait is bounded by the DMA in flight at its read, never by the
//!     arrival rate. Its reads of a section word are spaced out
//!     (`wait_for_section`): each one pulls the line of a thread doing DMA.
//!
//! # Bursts, and which regions they flag
//!
//! Policy only: which readers fence, and for how long. Every call still
//! flags what it names before its scan, with a barrier when that sets an
//! uncovered bit (I7), which is all the argument needs.
//!
//! - A burst begins with a call's barrier and ends (I10) when a
//!   `synchronize` finishes more than [`BURST`] after it began. A burst
//!   reads the clock at its second call and then only when the calls so far
//!   say its end may be near: after a check that leaves `t` of the burst for
//!   calls `d` apart, the next `min(t / 2d, `[`MAX_UNTIMED`]`)` calls skip
//!   it. Calls that slow down or stop keep it on for at most
//!   [`MAX_UNTIMED`] more calls, which only makes readers fence longer.
//! - When unmaps stop, fenced readers end the burst: every
//!   [`FENCED_CHECK`]th fenced entry of a thread with a slot tries the writer
//!   mutex and, if no `synchronize` holds it and the burst began more than
//!   [`BURST`] ago, ends it as a `synchronize` would (I10).
//! - A burst starts by flagging what its first call names and what the
//!   previous burst's calls named (the *prediction*): unmaps that stay in a
//!   few regions pay one barrier per burst and fence only those regions'
//!   readers. A later call that names a region the burst has not flagged
//!   flags every region of every stream, with a second barrier, so that no
//!   further call of the burst needs one; and the next [`WIDE_BURSTS`] bursts
//!   start with everything flagged (one barrier each) before a burst tries a
//!   prediction again.
//!
//! crossbeam-epoch pins are the other way to do this, but it offers no
//! blocking "wait for a grace period" call; this scheme gives one with two
//! plain stores to a thread's own line per DMA outside the regions an unmap
//! burst changes, and can be modelled by loom (whose models enter on given
//! slots, see `InFlight::enter_as`).

use crate::sync::slot::{self, EXCLUSIVE};
use crate::sync::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::marker::PhantomData;

/// The lane number of the threads without an exclusive slot: past every
/// slot number.
const SHARED: usize = EXCLUSIVE;

/// Fenced entries of a thread between its attempts to end a stale burst.
#[cfg_attr(loom, allow(dead_code))]
pub const FENCED_CHECK: u32 = 4096;

#[cfg(not(loom))]
thread_local! {
    /// This thread's fenced entries (any DART), counted to pace its
    /// attempts to end a stale burst.
    static FENCED_ENTRIES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(all(test, not(loom)))]
thread_local! {
    /// Tests: this thread's fences issued by [`InFlight::fence_for`].
    static FENCES_FOR: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Tests: this thread's fenced entries and [`InFlight::fence_for`] fences
/// so far.
#[cfg(all(test, not(loom)))]
pub(crate) fn fences_so_far() -> (u32, u32) {
    (FENCED_ENTRIES.with(|n| n.get()), FENCES_FOR.with(|n| n.get()))
}

/// How long a burst of `synchronize` calls keeps readers fenced after its
/// process-wide barrier.
pub const BURST: std::time::Duration = std::time::Duration::from_micros(200);

/// Most `synchronize` calls of a burst in a row that skip the clock.
pub const MAX_UNTIMED: u32 = 32;

/// A burst of `synchronize` calls (writer only, under the mutex).
#[derive(Debug)]
struct Burst {
    /// When its process-wide barrier was issued.
    began: std::time::Instant,
    /// `synchronize` calls finished in it.
    calls: u32,
    /// Calls left before the next clock check.
    untimed: u32,
}

impl Burst {
    fn new() -> Burst {
        Burst { began: std::time::Instant::now(), calls: 0, untimed: 0 }
    }

    /// Counts a finished call; whether the burst is over.
    fn finish_call(&mut self) -> bool {
        self.calls = self.calls.saturating_add(1);
        if self.untimed > 0 {
            self.untimed -= 1;
            return false;
        }
        let elapsed = self.began.elapsed();
        if elapsed > BURST {
            return true;
        }
        // `calls - 1` gaps between calls so far (the first call began the burst).
        if let Some(gaps) = self.calls.checked_sub(1).filter(|&g| g > 0) {
            let gap = (elapsed.as_nanos() / u128::from(gaps)).max(1);
            let left = (BURST - elapsed).as_nanos() / gap;
            self.untimed = u32::try_from(left / 2).unwrap_or(u32::MAX).min(MAX_UNTIMED);
        }
        false
    }
}

/// The in-flight DMA tracker of one DART.
#[derive(Debug)]
pub struct InFlight {
    /// The shared counters' current phase.
    phase: CachePadded<AtomicUsize>,
    /// One more than the highest exclusive slot that ever entered.
    high: CachePadded<AtomicUsize>,
    /// Exclusive slot `i`'s section word (see [`section`]).
    sections: Box<[CachePadded<AtomicU64>; EXCLUSIVE]>,
    /// The shared counters of phase 0 and phase 1.
    shared: [CachePadded<AtomicU64>; 2],
    /// Per stream (index `sid % MAX_STREAMS`), the IOVA regions whose
    /// readers must fence: bit `r` for the region `crate::translate::stream::region`
    /// numbers `r`. Set for the regions a burst of unmaps invalidates
    /// (and all of them while the process-wide barrier is unavailable);
    /// written only under the writer mutex.
    fenced: [AtomicU64; MAX_STREAMS],
    /// Whether any bit of `fenced` may be set: from before a burst's first
    /// barrier until after its end cleared them (and for good without the
    /// barrier; I7, I10). Readers load it first, so that outside bursts an
    /// entry reads this one flag.
    flagged: CachePadded<AtomicBool>,
    /// The current burst, if any (writer only, under the mutex). On a line
    /// of its own: every `synchronize` writes it, and readers load
    /// `sections` on every entry, so a shared line would make the first DMA
    /// entry after each `synchronize` miss.
    writer: CachePadded<Mutex<Writer>>,
    /// Tests: the `regions` of every `synchronize_regions` call, in order.
    #[cfg(test)]
    pub(crate) synchronized: Mutex<Vec<SynchronizeCall>>,
}

/// Streams an [`InFlight`] keeps fence flags for: every DART's (stream ids
/// are below 256; fewer under loom, whose models use stream 1).
#[cfg(not(loom))]
pub const MAX_STREAMS: usize = 256;
/// Streams an [`InFlight`] keeps fence flags for (loom models: stream 1).
#[cfg(loom)]
pub const MAX_STREAMS: usize = 4;

/// Every IOVA region of a stream, as a region mask.
pub const ALL_REGIONS: u64 = u64::MAX;

/// Every stream, as a stream bitmap (bit `sid % 64` of word `sid / 64`).
pub const ALL_STREAMS: [u64; 4] = [u64::MAX; 4];

/// Tests: the arguments of one [`InFlight::synchronize_regions`] call.
#[cfg(test)]
pub(crate) type SynchronizeCall = ([u64; 4], Option<(u32, u64)>);

/// Bursts in a row that start wide (every region of every stream flagged)
/// after a burst had to widen (see "Bursts, and which regions they flag").
pub const WIDE_BURSTS: u32 = 8;

/// The writer's state (under the writer mutex).
#[derive(Debug)]
struct Writer {
    /// The current burst, if any.
    burst: Option<Burst>,
    /// Per stream, the regions the burst has flagged, each set before (and
    /// so covered by) the burst's last process-wide barrier: equal to
    /// `InFlight::fenced` outside `for_good`.
    covered: Box<[u64; MAX_STREAMS]>,
    /// Per stream, the regions the current burst's calls named.
    named: Box<[u64; MAX_STREAMS]>,
    /// Per stream, the regions the previous burst's calls named: what the
    /// next burst flags at its start, beside what its first call names.
    predicted: Box<[u64; MAX_STREAMS]>,
    /// Bursts left that start wide.
    wide: u32,
    /// The process-wide barrier is unavailable: every flag is set for good.
    for_good: bool,
}

impl Writer {
    fn new(for_good: bool) -> Writer {
        Writer {
            burst: None,
            covered: Box::new([0; MAX_STREAMS]),
            named: Box::new([0; MAX_STREAMS]),
            predicted: Box::new([0; MAX_STREAMS]),
            wide: 0,
            for_good,
        }
    }
}

/// The section word of an exclusive slot: its thread's open DMA sections
/// (the nesting depth, low 32 bits) and how many times the depth has risen
/// from zero (the *outer* count, high 32 bits, wrapping).
///
/// Only the slot's thread writes the word; the writer of `synchronize`
/// reads it. A section open when the writer reads the word `seen` is
/// certainly over once a later read returns depth zero, or another outer
/// count (the depth went through zero in between): [`section::closed_since`].
mod section {
    /// The nesting depth's bits.
    const DEPTH: u64 = 0xFFFF_FFFF;
    /// One outer section.
    const OUTER: u64 = 1 << 32;

    /// The word after its thread enters one more section: depth + 1, and a
    /// new outer count if the depth was zero.
    #[inline]
    pub(super) const fn entered(word: u64) -> u64 {
        let outer = if word & DEPTH == 0 { OUTER } else { 0 };
        word.wrapping_add(outer + 1)
    }

    /// The word after its thread leaves a section (depth - 1; the caller
    /// holds one, so the depth is not zero).
    #[inline]
    pub(super) const fn left(word: u64) -> u64 {
        word.wrapping_sub(1)
    }

    /// Whether a section is open in `word`.
    #[inline]
    pub(super) const fn open(word: u64) -> bool {
        word & DEPTH != 0
    }

    /// Whether every section open in `seen` is over in `now`, a later
    /// value of the same word: the depth is zero, or the outer count
    /// moved (the depth was zero in between). An outer count that wraps
    /// all the way round between the two reads (2^32 sections) only makes
    /// the writer wait for the current section too.
    #[inline]
    pub(super) const fn closed_since(seen: u64, now: u64) -> bool {
        !open(now) || (now ^ seen) >> 32 != 0
    }
}

/// A DMA in flight: while it lives, translations it uses stay valid. Not
/// `Send`: the thread that entered must drop it.
#[derive(Debug)]
#[must_use]
pub struct DmaGuard<'a> {
    /// The slot's section word, or the shared counter of the phase entered.
    counter: &'a AtomicU64,
    /// The thread's exclusive slot number (then `counter` is that slot's
    /// section word, written only by this thread), or [`SHARED`]: a shared
    /// counter.
    lane: u32,
    _not_send: PhantomData<*const ()>,
}

impl DmaGuard<'_> {
    /// The entering thread's exclusive slot number, or [`SHARED`] (past
    /// every slot number) for a thread without one. (The DART's paths use
    /// [`DmaGuard::slot`], whose test tells the compiler the number is in
    /// range.)
    #[cfg(test)]
    #[inline]
    pub(crate) fn lane(&self) -> usize {
        self.lane as usize
    }

    /// The entering thread's exclusive slot number (the crate's `slot` module), if any.
    #[inline]
    pub(crate) fn slot(&self) -> Option<usize> {
        let lane = self.lane as usize;
        (lane < SHARED).then_some(lane)
    }
}

impl Drop for DmaGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let counter = self.counter;
        if (self.lane as usize) < SHARED {
            // (I1) This thread is the only writer of its section word: a
            // `Relaxed` load of its own last store. (I2) `Release`: a writer
            // that reads this value or a later one sees the section's
            // accesses done.
            counter.store(section::left(counter.load(Ordering::Relaxed)), Ordering::Release);
        } else {
            // (I2) `Release`: the scan's `Acquire` read of the zero this
            // leads to orders this reader's accesses before the writer goes on.
            counter.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new()
    }
}

impl InFlight {
    /// A tracker with no DMA in flight.
    pub fn new() -> InFlight {
        // (I10, B2) No process-wide barrier: every bit set for good.
        let for_good = !crate::sync::barrier::available();
        InFlight {
            phase: CachePadded::new(AtomicUsize::new(0)),
            high: CachePadded::new(AtomicUsize::new(0)),
            // A fixed-size array: `enter` indexes it with a slot number the
            // compiler knows is below `EXCLUSIVE`, so without a bounds check.
            sections: Box::new(std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0)))),
            shared: [CachePadded::new(AtomicU64::new(0)), CachePadded::new(AtomicU64::new(0))],
            fenced: std::array::from_fn(|_| AtomicU64::new(if for_good { ALL_REGIONS } else { 0 })),
            flagged: CachePadded::new(AtomicBool::new(for_good)),
            writer: CachePadded::new(Mutex::new(Writer::new(for_good))),
            #[cfg(test)]
            synchronized: Mutex::new(Vec::new()),
        }
    }

    /// Enters a DMA of stream `sid` that starts in the IOVA regions
    /// `regions` (a mask of `crate::types::region_bit`s; [`ALL_REGIONS`]
    /// for any). Everything of those regions read after this call and used
    /// before the guard drops is covered by later `synchronize` calls; a
    /// DMA that goes on into other regions calls [`InFlight::fence_for`]
    /// with them first.
    #[inline]
    pub fn enter(&self, sid: u32, regions: u64) -> DmaGuard<'_> {
        match slot::held() {
            Some(i) => self.enter_exclusive(i, sid, || regions),
            None => self.enter_first_or_shared(sid, regions),
        }
    }

    /// [`InFlight::enter`] for a DMA of stream `sid` whose first byte is at
    /// `iova`, by a thread whose exclusive slot is `i`, as
    /// `crate::sync::slot::held` returned it (so owned by the calling thread):
    /// for that byte's region (`crate::types::region_bit`), which is
    /// worked out only if a burst has flagged some region (the hit path's
    /// entry, which should not pay for the mask up front).
    #[inline]
    pub(crate) fn enter_exclusive_at(&self, i: usize, sid: u32, iova: u64) -> DmaGuard<'_> {
        self.enter_exclusive(i, sid, || crate::types::region_bit(iova))
    }

    /// [`InFlight::enter`] for a thread that holds no slot number yet (its
    /// first DMA claims one) or could not get one.
    #[cold]
    #[inline(never)]
    fn enter_first_or_shared(&self, sid: u32, regions: u64) -> DmaGuard<'_> {
        self.enter_as(slot::current(), sid, regions)
    }

    /// [`InFlight::enter`] for a thread whose exclusive slot is `slot`
    /// (`None`: the shared counters). The caller must own `slot`: no
    /// other live thread may enter with it.
    #[inline]
    pub(crate) fn enter_as(&self, slot: Option<usize>, sid: u32, regions: u64) -> DmaGuard<'_> {
        match slot {
            Some(i) if i < EXCLUSIVE => self.enter_exclusive(i, sid, || regions),
            _ => self.enter_shared(),
        }
    }

    /// The fence flags of stream `sid`.
    #[inline]
    fn flags(&self, sid: u32) -> &AtomicU64 {
        &self.fenced[sid as usize % MAX_STREAMS]
    }

    /// Before a DMA that entered goes on into the IOVA regions `regions` of
    /// stream `sid` (beyond those it entered for): fences if a burst
    /// flagged any of them, as an entry for them would have (I8). The
    /// caller holds the guard from
    /// [`InFlight::enter`]; its section store comes before this load.
    #[inline]
    pub fn fence_for(&self, sid: u32, regions: u64) {
        // (I8) After the section store, before anything of `regions` is
        // read. (I10) `Acquire`, as an entry's load of the flags: a bit a
        // burst's end cleared brings that burst's bumps and cleared PTEs.
        if self.flags(sid).load(Ordering::Acquire) & regions != 0 {
            #[cfg(all(test, not(loom)))]
            FENCES_FOR.with(|n| n.set(n.get() + 1));
            // (I3) This reader's `SeqCst` point for the flagged regions.
            fence(Ordering::SeqCst);
        }
    }

    /// Opens a section on exclusive slot `i`, which the calling thread owns,
    /// for the IOVA regions `regions()` (asked only if a burst has flagged
    /// any region).
    #[inline]
    fn enter_exclusive(&self, i: usize, sid: u32, regions: impl FnOnce() -> u64) -> DmaGuard<'_> {
        // (I6) `Relaxed`: this thread's own raise (or a larger one) is
        // already visible to it; only a first entry raises, with a fence.
        if i >= self.high.load(Ordering::Relaxed) {
            self.raise_high(i);
        }
        let word = &self.sections[i];
        // (I1) This thread is the word's only writer: load and store, no
        // RMW. (I2) `Release` (a fenced entry's `SeqCst` swap stores the
        // same value again), so that a writer that reads a later value sees
        // everything the thread did in its sections before.
        let next = section::entered(word.load(Ordering::Relaxed));
        word.store(next, Ordering::Release);
        // (I8) The flag loads below stay after the enter store in program
        // order; the writer's process-wide barrier orders them in hardware.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        // (I8) `flagged` first, the stream's flags only if it is set (I7).
        // (I10) `Acquire` (a plain load on x86-64, `ldar` on AArch64): a
        // flag a burst's end cleared (`Release`) makes this reader see every
        // generation bump and cleared PTE of that burst, and no load of the
        // DMA that follows can be performed before this one.
        if self.flagged.load(Ordering::Acquire) && self.flags(sid).load(Ordering::Acquire) & regions() != 0 {
            // (I3) A flagged region: this reader takes its own `SeqCst` point.
            self.fence_entry(word, next);
        }
        DmaGuard { counter: word, lane: i as u32, _not_send: PhantomData }
    }

    /// The fenced end of an entry whose region a burst flagged (I3, I8):
    /// the section word, already stored, is stored
    /// again with a `SeqCst` swap, the reader's `SeqCst` point (on x86-64
    /// a `lock xchg`, cheaper than the `mfence` of a `SeqCst` fence); and
    /// every [`FENCED_CHECK`]th such entry of the thread may end a stale
    /// burst.
    #[cold]
    #[inline(never)]
    fn fence_entry(&self, word: &AtomicU64, next: u64) {
        // (I3) The reader's `SeqCst` point `R`, storing the value its enter
        // store already wrote (I1: only this thread writes the word).
        word.swap(next, Ordering::SeqCst);
        #[cfg(not(loom))]
        {
            let n = FENCED_ENTRIES.with(|n| {
                n.set(n.get().wrapping_add(1));
                n.get()
            });
            if n.is_multiple_of(FENCED_CHECK) {
                self.end_stale_burst();
            }
        }
        // (I3, G4) loom treats `SeqCst` loads as `Acquire`, so the `SeqCst`
        // load of the stream generation that follows is modelled by this
        // fence (loom only: the real build needs no fence).
        #[cfg(loom)]
        fence(Ordering::SeqCst);
    }

    /// Enters on the shared counter of the current phase.
    #[inline]
    fn enter_shared(&self) -> DmaGuard<'_> {
        // (I11) `Relaxed`: either phase is safe (I5 scans both counters'
        // increments); a stale phase only costs the writer its second flip.
        let p = self.phase.load(Ordering::Relaxed) & 1;
        let counter = &self.shared[p];
        // (I3) The shared reader's `SeqCst` point `R`.
        counter.fetch_add(1, Ordering::SeqCst);
        // (I3, G4) As in `fence_entry`: loom's model of the generation's `SeqCst` load.
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        DmaGuard { counter, lane: SHARED as u32, _not_send: PhantomData }
    }

    /// A fenced reader's attempt to end a burst that no `synchronize` is
    /// left to end (see "Bursts"; I10: under the writer mutex). Not called
    /// under loom, whose models end bursts through `synchronize` only.
    #[cold]
    #[inline(never)]
    #[cfg_attr(loom, allow(dead_code))]
    fn end_stale_burst(&self) {
        if let Some(mut w) = self.writer.try_lock() {
            if w.burst.as_ref().is_some_and(|b| b.began.elapsed() > BURST) {
                self.end_burst(&mut w);
            }
        }
    }

    /// Ends the current burst: clears every flag it set (`Release`), under
    /// the writer mutex (`w`) (I10).
    fn end_burst(&self, w: &mut Writer) {
        w.burst = None;
        for (flags, covered) in self.fenced.iter().zip(w.covered.iter_mut()) {
            if *covered != 0 {
                // (I10) `Release`: a reader that loads the cleared bit sees
                // the burst's bumps and cleared PTEs.
                flags.store(0, Ordering::Release);
                *covered = 0;
            }
        }
        // (I7) Cleared after the bits: reading it clear says none is set.
        // (I10) `Release`, as the bits.
        self.flagged.store(false, Ordering::Release);
        // What this burst named is the next one's prediction.
        std::mem::swap(&mut w.predicted, &mut w.named);
        w.named.fill(0);
    }

    #[cold]
    fn raise_high(&self, i: usize) {
        // (I6) The raise, then a `SeqCst` fence before the enter store:
        // either the writer's load of `high` after `F` sees the raise, or
        // this fence follows `F` and the reader sees the bump (I5).
        self.high.fetch_max(i + 1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Waits until every DMA that entered before this call has left: a
    /// [`InFlight::synchronize_regions`] of every region of every stream.
    pub fn synchronize(&self) {
        self.synchronize_regions(&ALL_STREAMS, None);
    }

    /// Waits until every DMA that entered before this call has left, for an
    /// invalidation that changed only every region of the streams in the
    /// bitmap `streams` (bit `sid % 64` of word `sid / 64`), except for
    /// stream `sid` of `narrowed = Some((sid, regions))`, whose regions
    /// `regions` only (a region mask, `crate::types::region_mask`).
    /// Readers of the other regions and streams are not made to fence
    /// meanwhile (I8): the caller guarantees that nothing they may read was
    /// changed or freed (I9).
    pub fn synchronize_regions(&self, streams: &[u64; 4], narrowed: Option<(u32, u64)>) {
        #[cfg(test)]
        self.synchronized.lock().push((*streams, narrowed));
        // (I4) The writer's fence `F`: after the caller's bumps (G3), before
        // every load of the scan.
        fence(Ordering::SeqCst);
        // (I6) No exclusive slot has ever entered and nothing is in flight
        // on the shared counters: done, without the writer mutex, the
        // barrier or a flip (I11).
        if self.high.load(Ordering::SeqCst) == 0 && self.shared_idle() {
            return;
        }
        // (I4) One synchronizer at a time; (I7) flags change only under it.
        let mut w = self.writer.lock();
        // (I6) The scan's bound, loaded after `F`.
        let high = self.high.load(Ordering::SeqCst).min(EXCLUSIVE);
        // (I7) Flag what this call names; a bit the burst's last barrier did
        // not cover needs a barrier (B1) before the scan. (I10) None while
        // `high` is 0, or for good.
        if high > 0 && !w.for_good && self.flag(&mut w, streams, narrowed) {
            // (I7, I8) The barrier that covers the bits just set, before the
            // scan (B1).
            if crate::sync::barrier::process_wide() {
                if w.burst.is_none() {
                    w.burst = Some(Burst::new());
                }
            } else {
                // (B3) The kernel refused both barriers although registration
                // succeeded at construction (say, a seccomp filter installed
                // since): stay fenced for good rather than trust unfenced
                // readers. Those that entered unfenced before this call are
                // left to their store buffers, which every real CPU drains
                // within microseconds: the scan starts a millisecond later.
                // (No memory-model guarantee covers this; it is the best
                // left without the barrier.)
                w.burst = None;
                w.for_good = true;
                // (I10) Every bit set for good, `SeqCst` as in `cover` (I7).
                for flags in self.fenced.iter() {
                    flags.store(ALL_REGIONS, Ordering::SeqCst);
                }
                self.flagged.store(true, Ordering::SeqCst);
                #[cfg(not(loom))]
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        // (I4) Exclusive slots: wait out each section open at this read.
        for word in self.sections[..high].iter() {
            // (I5) After `F` (and after the barrier, I8): the reader's enter
            // or a later value. (I2) `Acquire`: a closed section's accesses
            // happen-before what follows.
            let seen = word.load(Ordering::Acquire);
            if section::open(seen) {
                wait_for_section(word, seen);
            }
        }
        // (I11) The shared counters: nothing in flight in either phase needs
        // no flip (the flips only keep the wait bounded while readers keep
        // arriving on the same counter).
        if !self.shared_idle() {
            for _ in 0..2 {
                // (I11) The flip: new readers enter the other phase.
                let old = self.phase.fetch_add(1, Ordering::SeqCst) & 1;
                let mut spins = 0u32;
                // (I2, I5) `Acquire`: the zero is the readers' own
                // decrements, and brings their accesses with it.
                while self.shared[old].load(Ordering::Acquire) != 0 {
                    backoff(&mut spins);
                }
            }
        }
        // (I10) After the scan, still under the mutex.
        if w.burst.as_mut().is_some_and(|b| b.finish_call()) {
            self.end_burst(&mut w);
        }
    }

    /// Sets the fence flags for what [`InFlight::synchronize_regions`] names
    /// (`SeqCst`, before the process-wide barrier), under the writer mutex
    /// (`w`), as "Bursts, and which regions they flag" describes (I7): at a burst's
    /// start its prediction too, or everything while bursts start wide;
    /// within a burst, everything once a call names a region the burst has
    /// not flagged. Whether any flag was set that the burst's last
    /// process-wide barrier did not cover: then the caller must issue one
    /// (and start the burst if none is on).
    fn flag(&self, w: &mut Writer, streams: &[u64; 4], narrowed: Option<(u32, u64)>) -> bool {
        let mut uncovered = false;
        for s in crate::types::streams_in(*streams).map(|s| s % MAX_STREAMS) {
            let mask = match narrowed {
                Some((sid, regions)) if sid as usize % MAX_STREAMS == s => regions,
                _ => ALL_REGIONS,
            };
            w.named[s] |= mask;
            uncovered |= mask & !w.covered[s] != 0;
        }
        if !uncovered {
            return false;
        }
        let starting = w.burst.is_none();
        if starting && w.wide == 0 {
            // A narrow start: what this call names and what the last burst
            // named.
            for s in 0..MAX_STREAMS {
                self.cover(w, s, w.named[s] | w.predicted[s]);
            }
        } else {
            // A start while bursts start wide, or a burst whose flags did
            // not cover this call (the prediction failed): everything, so
            // that no later call of the burst needs another barrier, and
            // the next bursts start wide.
            if starting {
                w.wide -= 1;
            } else {
                w.wide = WIDE_BURSTS;
            }
            for s in 0..MAX_STREAMS {
                self.cover(w, s, ALL_REGIONS);
            }
        }
        // (I7) `SeqCst`, under the mutex, before the caller's barrier.
        self.flagged.store(true, Ordering::SeqCst);
        true
    }

    /// Flags the regions `regions` of stream index `s` on top of what the
    /// burst covers (`SeqCst`), under the writer mutex (`w`).
    fn cover(&self, w: &mut Writer, s: usize, regions: u64) {
        if regions & !w.covered[s] != 0 {
            w.covered[s] |= regions;
            // (I7) `SeqCst`, under the mutex, before the caller's barrier
            // that covers it and before its scan.
            self.fenced[s].store(w.covered[s], Ordering::SeqCst);
        }
    }

    /// Whether both shared counters read zero (`Acquire`: a zero that a
    /// reader's decrement wrote makes that reader's accesses happen before
    /// what the writer does next).
    #[inline]
    fn shared_idle(&self) -> bool {
        // (I2, I5) Loaded after `F`: every counter a reader may have
        // incremented, whatever phase it loaded (I11).
        self.shared.iter().all(|c| c.load(Ordering::Acquire) == 0)
    }
}

/// Waits until every section open in `seen` is over on `word` (see
/// [`section::closed_since`]). The reads are spaced out (a gap of spin-loop
/// hints that doubles from 16 to 128, then yields), because each read pulls
/// the line of a thread that is doing DMA: read back to back, they would
/// slow the very DMA being waited for.
fn wait_for_section(word: &AtomicU64, seen: u64) {
    // Under loom every wait is a yield (loom explores the schedules).
    #[cfg_attr(loom, allow(unused_mut, unused_variables))]
    let mut gap = 16u32;
    loop {
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        if gap > 128 {
            std::thread::yield_now();
        } else {
            for _ in 0..gap {
                std::hint::spin_loop();
            }
            gap *= 2;
        }
        // (I1) Closed once depth 0 or another outer count; (I2) `Acquire`.
        if section::closed_since(seen, word.load(Ordering::Acquire)) {
            return;
        }
    }
}

/// Spins briefly (a DMA in flight is short), then yields the CPU.
#[inline]
fn backoff(spins: &mut u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if *spins < 128 {
            *spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn synchronize_returns_at_once_with_nothing_in_flight() {
        let f = InFlight::new();
        f.synchronize();
        let g = f.enter(0, ALL_REGIONS);
        drop(g);
        f.synchronize();
    }

    /// The section word through nested, out-of-order enters and leaves:
    /// the depth, the outer count, and which later values close which
    /// earlier ones.
    #[test]
    fn section_word_counts_depth_and_outer_sections() {
        use section::{closed_since, entered, left, open};
        const OUTER: u64 = 1 << 32;
        let idle = 0u64;
        assert!(!open(idle));
        let a = entered(idle);
        assert_eq!(a, OUTER + 1, "first section: outer 1, depth 1");
        let ab = entered(a);
        assert_eq!(ab, OUTER + 2, "nested: same outer, depth 2");
        let b = left(ab);
        assert_eq!(b, OUTER + 1, "one of the two closed (either one)");
        assert!(!closed_since(a, b), "depth 1, same outer: the section seen may be open");
        assert!(!closed_since(ab, b));
        let none = left(b);
        assert_eq!(none, OUTER);
        assert!(closed_since(a, none) && closed_since(ab, none), "depth 0 closes everything seen");
        let c = entered(none);
        assert_eq!(c, 2 * OUTER + 1, "a new outer section");
        assert!(closed_since(a, c) && closed_since(ab, c), "another outer count: the depth went through 0");
        assert!(!closed_since(c, c));
        // The outer count wraps; a word equal to the one seen never closes it.
        let last = (u32::MAX as u64) << 32;
        assert_eq!(entered(last), 1, "outer wraps to 0, depth 1");
        assert!(closed_since(entered(last), last) && !closed_since(entered(last), entered(last)));
    }

    /// Never entered, or entered and left on an exclusive slot: no flip.
    /// A section open on an exclusive slot is waited out without a flip.
    #[test]
    fn exclusive_sections_are_waited_out_without_a_flip() {
        let phase = |f: &InFlight| f.phase.load(Ordering::Relaxed);
        let f = InFlight::new();
        f.synchronize();
        drop(f.enter_as(Some(0), 0, ALL_REGIONS));
        f.synchronize();
        f.synchronize();
        assert_eq!(phase(&f), 0);

        let f = Arc::new(InFlight::new());
        let left = Arc::new(AtomicBool::new(false));
        let entered = Arc::new(std::sync::Barrier::new(2));
        let dma = {
            let (f, left, entered) = (f.clone(), left.clone(), entered.clone());
            std::thread::spawn(move || {
                let g = f.enter_as(Some(0), 0, ALL_REGIONS);
                entered.wait();
                std::thread::sleep(std::time::Duration::from_millis(30));
                left.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(g);
            })
        };
        entered.wait();
        f.synchronize();
        assert!(left.load(std::sync::atomic::Ordering::SeqCst), "synchronize returned with the section open");
        dma.join().unwrap();
        assert_eq!(phase(&f), 0, "exclusive slots need no flip");
        assert_eq!(f.sections[0].load(Ordering::Relaxed), 1 << 32, "outer 1, depth 0");
    }

    /// A section seen open stays waited for while the thread nests another
    /// and closes the first (the word cannot tell which closed): the writer
    /// returns only after the depth reaches 0, and never before the
    /// section it saw closed.
    #[test]
    fn nested_sections_closed_out_of_order_are_waited_out() {
        let f = Arc::new(InFlight::new());
        let step = Arc::new(std::sync::Barrier::new(2));
        let outer_closed = Arc::new(AtomicBool::new(false));
        let dma = {
            let (f, step, outer_closed) = (f.clone(), step.clone(), outer_closed.clone());
            std::thread::spawn(move || {
                let first = f.enter_as(Some(3), 0, ALL_REGIONS);
                step.wait(); // the writer may now read the word
                let second = f.enter_as(Some(3), 0, ALL_REGIONS);
                std::thread::sleep(std::time::Duration::from_millis(20));
                outer_closed.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(first);
                std::thread::sleep(std::time::Duration::from_millis(20));
                drop(second);
            })
        };
        step.wait();
        f.synchronize();
        assert!(outer_closed.load(std::sync::atomic::Ordering::SeqCst), "returned before the section seen closed");
        dma.join().unwrap();
        assert_eq!(f.sections[3].load(Ordering::Relaxed), 1 << 32, "outer 1, depth 0: both closed");
    }

    /// A reader on the shared counters, in flight until the writer flips:
    /// the two flips, and the wait.
    #[test]
    fn busy_shared_counters_flip_twice() {
        let phase = |f: &InFlight| f.phase.load(Ordering::Relaxed);
        let f = Arc::new(InFlight::new());
        let entered = Arc::new(std::sync::Barrier::new(2));
        let dma = {
            let (f, entered) = (f.clone(), entered.clone());
            std::thread::spawn(move || {
                let g = f.enter_as(None, 0, ALL_REGIONS);
                assert_eq!(g.lane(), SHARED);
                entered.wait();
                while f.phase.load(Ordering::Relaxed) == 0 {
                    std::thread::yield_now();
                }
                drop(g);
            })
        };
        entered.wait();
        f.synchronize();
        dma.join().unwrap();
        assert_eq!(phase(&f), 2);
        f.synchronize();
        assert_eq!(phase(&f), 2, "idle shared counters: no flip");
        assert!(f.shared_idle());
    }

    #[test]
    fn a_burst_ends_on_the_clock_at_most_max_untimed_calls_late() {
        let ago = |d: std::time::Duration| std::time::Instant::now().checked_sub(d).unwrap();
        // Past BURST at a timed call: over.
        let mut b = Burst { began: ago(2 * BURST), calls: 5, untimed: 0 };
        assert!(b.finish_call());
        // The first call has no gap to go by: the second is timed.
        let mut b = Burst::new();
        let first = b.finish_call();
        assert!(first || b.untimed == 0);
        // Calls close together skip the clock, never more than MAX_UNTIMED
        // in a row (unless the burst is already over, if this thread was
        // descheduled for BURST).
        if !first && !b.finish_call() {
            assert!((1..=MAX_UNTIMED).contains(&b.untimed), "{b:?}");
        }
        // Calls that stop coming: the burst ends exactly MAX_UNTIMED calls late.
        let mut b = Burst { began: ago(10 * BURST), calls: 2, untimed: MAX_UNTIMED };
        for _ in 0..MAX_UNTIMED {
            assert!(!b.finish_call());
        }
        assert!(b.finish_call());
        assert_eq!(b.calls, 2 + MAX_UNTIMED + 1);
    }

    #[test]
    fn synchronize_waits_for_a_dma_in_flight() {
        let f = Arc::new(InFlight::new());
        let left = Arc::new(AtomicBool::new(false));
        let g = f.enter(0, ALL_REGIONS);
        let (f2, left2) = (f.clone(), left.clone());
        let h = std::thread::spawn(move || {
            f2.synchronize();
            assert!(left2.load(std::sync::atomic::Ordering::SeqCst), "synchronize returned while a DMA was in flight");
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        left.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(g);
        h.join().unwrap();
    }

    #[test]
    fn fenced_readers_end_a_burst_that_no_unmap_ends() {
        assert!(crate::sync::barrier::available(), "membarrier(2) is available on the machines this runs on");
        let f = InFlight::new();
        drop(f.enter(0, ALL_REGIONS)); // an exclusive slot has entered: bursts apply
        f.synchronize();
        assert_eq!(f.fenced[0].load(Ordering::Relaxed), ALL_REGIONS, "a synchronize starts a burst");
        std::thread::sleep(BURST * 2);
        for _ in 0..FENCED_CHECK {
            drop(f.enter(0, ALL_REGIONS));
        }
        assert_eq!(f.fenced[0].load(Ordering::Relaxed), 0, "a stale burst ends without another synchronize");
        assert!(f.writer.lock().burst.is_none());
        // Unfenced now; the next synchronize starts a new burst.
        drop(f.enter(0, ALL_REGIONS));
        f.synchronize();
        assert_eq!(f.fenced[0].load(Ordering::Relaxed), ALL_REGIONS);
    }

    /// This thread's fenced entries so far.
    fn fenced_entries() -> u32 {
        FENCED_ENTRIES.with(|n| n.get())
    }

    /// A burst flags only the regions its invalidations name: readers of
    /// other regions (and of other streams) enter unfenced, readers of
    /// those fence, at entry or when they go on into them; a covered region
    /// needs no new barrier; the burst's end clears every flag.
    #[test]
    fn a_burst_fences_the_readers_of_the_regions_it_invalidates_only() {
        assert!(crate::sync::barrier::available(), "membarrier(2) is available on the machines this runs on");
        let (a, b) = (1u64 << 3, 1u64 << 7);
        let f = InFlight::new();
        drop(f.enter(1, a)); // an exclusive slot has entered: bursts apply
        f.synchronize_regions(&[2, 0, 0, 0], Some((1, b)));
        assert_eq!(flags4(&f), [0, b, 0, 0], "only stream 1's region b is flagged");
        assert!(f.writer.lock().burst.is_some());
        assert_eq!(f.writer.lock().covered[1], b);

        let before = fenced_entries();
        drop(f.enter(1, a));
        drop(f.enter(0, b));
        assert_eq!(fenced_entries(), before, "other regions and streams enter unfenced");
        drop(f.enter(1, b));
        drop(f.enter(1, a | b));
        assert_eq!(fenced_entries(), before + 2, "readers of region b fence");

        // Covered regions need no new barrier.
        let mut w = f.writer.lock();
        assert!(!f.flag(&mut w, &[2, 0, 0, 0], Some((1, b))), "b is covered by the burst's barrier");
        assert_eq!(f.fenced[1].load(Ordering::Relaxed), b);

        // The burst's end clears every flag it set.
        f.end_burst(&mut w);
        assert!(f.fenced.iter().all(|x| x.load(Ordering::Relaxed) == 0));
        assert!(w.covered.iter().all(|&c| c == 0) && w.burst.is_none());
    }

    /// The flags of `f`'s first four streams.
    fn flags4(f: &InFlight) -> [u64; 4] {
        std::array::from_fn(|s| f.fenced[s].load(Ordering::Relaxed))
    }

    /// Which regions a burst flags: at its start, what its first call names
    /// and what the previous burst named (one barrier); a call naming a
    /// region the burst has not flagged flags everything (a second
    /// barrier, the last of the burst), and the next `WIDE_BURSTS` bursts
    /// start wide; then bursts predict again, from what the last one named.
    /// Each transition: the barrier it asks for, then every flag and the
    /// writer's state.
    #[test]
    fn a_burst_flags_its_prediction_and_widens_when_it_fails() {
        let (a, b, c) = (1u64 << 3, 1u64 << 7, 1u64 << 9);
        let f = InFlight::new();
        let mut w = f.writer.lock();
        let one = [2, 0, 0, 0];
        // `synchronize_regions` starts the burst when `flag` asks for a
        // barrier; the test does the same.
        let call = |w: &mut Writer, streams: &[u64; 4], narrowed| {
            let barrier = f.flag(w, streams, narrowed);
            if barrier && w.burst.is_none() {
                w.burst = Some(Burst::new());
            }
            barrier
        };

        // Burst 1: nothing predicted; its calls stay in regions a and b.
        assert!(!f.flagged.load(Ordering::Relaxed), "no burst, no flag");
        assert!(call(&mut w, &one, Some((1, a))), "a burst's first call needs a barrier");
        assert_eq!(flags4(&f), [0, a, 0, 0]);
        assert!(f.flagged.load(Ordering::Relaxed), "set with the burst's first flags");
        assert!(!call(&mut w, &one, Some((1, a))), "covered");
        assert!(call(&mut w, &one, Some((1, b))), "b was not predicted: widen");
        assert_eq!(flags4(&f), [ALL_REGIONS; 4], "a widened burst flags everything");
        assert!(f.fenced.iter().all(|x| x.load(Ordering::Relaxed) == ALL_REGIONS));
        assert_eq!(w.wide, WIDE_BURSTS);
        assert!(!call(&mut w, &[0b1101, 0, 0, 0], None), "no second widening barrier");
        assert_eq!(w.named[..4], [ALL_REGIONS, a | b, ALL_REGIONS, ALL_REGIONS]);
        f.end_burst(&mut w);
        assert_eq!(flags4(&f), [0; 4]);
        assert!(!f.flagged.load(Ordering::Relaxed), "cleared with the flags");
        assert_eq!(w.predicted[..4], [ALL_REGIONS, a | b, ALL_REGIONS, ALL_REGIONS]);
        assert_eq!(w.named[..4], [0; 4]);

        // The next WIDE_BURSTS bursts start wide: one barrier each.
        for left in (0..WIDE_BURSTS).rev() {
            assert!(call(&mut w, &one, Some((1, a))));
            assert_eq!(flags4(&f), [ALL_REGIONS; 4]);
            assert_eq!(w.wide, left);
            assert!(!call(&mut w, &one, Some((1, b))), "everything is covered");
            f.end_burst(&mut w);
            assert_eq!(w.predicted[..4], [0, a | b, 0, 0], "what the burst named");
        }

        // Then a burst predicts again: regions a and b of stream 1, which
        // covers every later call of the same pattern.
        assert!(call(&mut w, &one, Some((1, b))));
        assert_eq!(flags4(&f), [0, a | b, 0, 0]);
        assert!(!call(&mut w, &one, Some((1, a))), "predicted");
        assert!(!call(&mut w, &one, Some((1, a | b))), "predicted");
        assert_eq!(w.wide, 0);
        f.end_burst(&mut w);
        assert_eq!(w.predicted[..4], [0, a | b, 0, 0]);

        // A prediction that fails for another stream widens as well.
        assert!(call(&mut w, &one, Some((1, a))));
        assert_eq!(flags4(&f), [0, a | b, 0, 0]);
        assert!(call(&mut w, &[1, 0, 0, 0], Some((0, c))), "stream 0 was not predicted");
        assert_eq!(flags4(&f), [ALL_REGIONS; 4]);
        assert_eq!(w.wide, WIDE_BURSTS);
        f.end_burst(&mut w);
        assert_eq!(w.predicted[..4], [c, a, 0, 0]);
    }

    /// During a burst that flags region 1 of stream 1 only, through the
    /// DART: a DMA within region 0 enters unfenced; one that begins on
    /// region 0's last page and goes on into region 1 fences before it does
    /// (`fence_for`), as does such a translation; one that begins in
    /// region 1 enters fenced.
    #[test]
    fn a_dma_fences_for_the_flagged_regions_it_reaches() {
        use crate::types::region_bit;
        use crate::{Dart, DartConfig, Dir, StreamConfig, Variant};
        use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
        assert!(crate::sync::barrier::available(), "membarrier(2) is available on the machines this runs on");
        let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
        let d = Dart::new(frames.clone(), DartConfig::new("f", Variant::T8110)).unwrap();
        d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
        let page = 16u64 << 10;
        let (last0, first1, elsewhere) = ((32u64 << 20) - page, 32u64 << 20, 4 * page);
        let data = frames.alloc(FrameType::UserData, 3).unwrap();
        d.map(1, last0, &data[..2], Perm::RW, None).unwrap();
        d.map(1, elsewhere, &data[2..], Perm::RW, None).unwrap();
        let mut buf = vec![0u8; 2 * page as usize];
        d.dma_read(1, elsewhere, &mut buf[..64]).unwrap(); // a slot entered: bursts apply
        d.device().inflight().synchronize_regions(&[2, 0, 0, 0], Some((1, region_bit(first1))));
        assert_eq!(d.device().inflight().fenced[1].load(Ordering::Relaxed), region_bit(first1));
        assert!(d.device().inflight().flagged.load(Ordering::Relaxed));

        let (entries, fences) = fences_so_far();
        d.dma_read(1, elsewhere, &mut buf[..64]).unwrap();
        assert_eq!(fences_so_far(), (entries, fences), "region 0 only: unfenced");
        d.dma_read(1, last0, &mut buf).unwrap();
        assert_eq!(fences_so_far(), (entries, fences + 1), "on into region 1: a fence first");
        assert!(d.translate(1, last0, 2 * page, Dir::Read).is_ok());
        assert_eq!(fences_so_far(), (entries, fences + 2), "a translation as well");
        d.dma_read(1, first1, &mut buf[..64]).unwrap();
        assert_eq!(fences_so_far(), (entries + 1, fences + 2), "begins in region 1: a fenced entry");
    }

    #[test]
    fn new_readers_do_not_starve_the_writer() {
        let f = Arc::new(InFlight::new());
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (f, stop) = (f.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _g = f.enter(0, ALL_REGIONS);
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        for _ in 0..1000 {
            f.synchronize();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    }
}
