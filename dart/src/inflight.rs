//! Tracking DMA in flight, so that a strict unmap can wait for every DMA that
//! may have translated through the entries it cleared.
//!
//! # Protocol (SRCU-style two-phase counters)
//!
//! There are two *phases*, each with [`SLOTS`] counters: one per exclusive
//! thread slot (the crate's `slot` module) and one shared by threads that got
//! none. A slot's two counters (one per phase) form the slot's *lane*; each
//! counter has a cache line of its own, so a writer waiting on the old
//! phase's counter does not pull away the line the reader is incrementing
//! in the new phase.
//!
//! - **Reader (a DMA or a translation):** load the current phase `p`;
//!   `fetch_add(1, SeqCst)` on `lanes[slot][p]`; then read the stream's
//!   generation, the IOTLB and the tables, and copy; finally decrement the
//!   same counter with `Release`: a plain `load` + `store` on an exclusive
//!   slot (its thread is the only writer), `fetch_sub` on the shared one.
//!   No lock. A thread's first DMA also raises the tracker's high-water mark
//!   of slots in use (`fetch_max`, then a `SeqCst` fence) before it
//!   increments, so the writer's scan can stop at the mark: either the
//!   writer's load of the mark sees it, or the reader's fence comes after the
//!   writer's in the `SeqCst` order and the reader sees the cleared PTEs.
//!   A guard is not `Send`: it must be dropped by the thread that owns its
//!   slot.
//! - **Writer ([`InFlight::synchronize`], after clearing PTEs and bumping the
//!   stream generation):** `fence(SeqCst)`; if every counter in use reads
//!   zero in both phases, return (see "Idle writers" below). Otherwise, under
//!   a mutex (one flipping synchronizer at a time), flip the phase, then wait
//!   until every counter of the old phase reads zero; then do the same once
//!   more with the other phase.
//!
//! Why a reader can never use a translation cleared before `synchronize`
//! began: take the SeqCst total order. A reader whose increment comes *after*
//! the writer's scan saw that counter at zero also comes after the writer's
//! PTE clear and generation bump (they precede the scan's `SeqCst` fence), so
//! it reads the new generation (ignoring older IOTLB entries) and the cleared
//! PTE. A reader whose increment comes *before* the scan is counted, and the
//! writer waits for its decrement (`Release`, paired with the scan's
//! `Acquire`), which follows its last use of the translation. A reader that
//! loaded the old phase but increments late is covered by the second flip:
//! after two flips, every counter of both phases has been seen at zero after
//! the clear.
//!
//! # Unfenced readers (asymmetric fences)
//!
//! The `SeqCst` increment is the one costly instruction on the read side
//! (a `lock`-prefixed RMW, ~5 ns here). While no unmap is going on, readers
//! on exclusive slots skip it: they check the tracker's `fenced` flag
//! (`Relaxed`), and if it is clear they increment with a plain `load` +
//! `store`, a compiler fence, and a second `Relaxed` load of the flag; if
//! that second load sees the flag set, they issue a `SeqCst` fence after
//! all. The writer pays instead (the crate's `barrier` module, `membarrier(2)`): a `synchronize` that
//! finds the flag clear sets it (`SeqCst`) and issues the process-wide
//! barrier before it scans, and later `synchronize` calls in the same burst
//! skip the barrier because every reader that entered after the barrier
//! either saw the flag and fenced, or is covered as follows. Take a reader
//! that saw the flag clear, and its barrier point `M` forced by the
//! writer's process-wide barrier:
//!
//! - if its second flag load came before `M`, so did its increment, which
//!   the writer's scan (after the barrier returned) therefore sees;
//! - if it came after `M`, it saw the flag set (stored before the barrier)
//!   and fenced, so it is an ordinary fenced reader for later scans, and
//!   for this scan its loads after `M` already see the cleared PTEs.
//!
//! A burst ends (the writer clears the flag, `Release`) when a `synchronize`
//! finishes more than [`BURST`] after the burst began; the next one starts
//! a new burst with a new barrier. Reading the clock costs about as much as
//! an idle `synchronize`, so a burst reads it at its second call and then
//! only when the calls so far say its end may be near: after a check that
//! leaves `t` of the burst for calls `d` apart, the next
//! `min(t / 2d, `[`MAX_UNTIMED`]`)` calls skip it. At a steady rate a burst
//! still ends at the first call past [`BURST`]; calls that slow down or stop
//! can keep it on for at most [`MAX_UNTIMED`] more calls, which only makes
//! readers fence longer. When unmaps stop altogether no call comes to end
//! the burst, so fenced readers end it too: every [`FENCED_CHECK`]th fenced
//! entry of a thread with a slot tries the writer mutex and, if no
//! `synchronize` holds it and the burst began more than [`BURST`] ago,
//! clears the flag exactly as a `synchronize` ending the burst would (under
//! the mutex, so no `synchronize` is between its flag check and its scan).
//! So a steady stream of unmaps costs one
//! process-wide barrier per [`BURST`] and fenced readers meanwhile, and
//! readers with no unmap in sight pay no RMW at all. If the process-wide
//! barrier is unavailable (not Linux, refused, or under loom) the flag is
//! set for good and every reader fences. The writer skips the barrier
//! altogether while no exclusive slot has ever entered (high-water mark 0).
//!
//! # Idle writers
//!
//! The phase flips exist for liveness only: safety needs just one scan,
//! after the writer's `fence(SeqCst)` `F`, that sees every counter a reader
//! may have incremented read zero, whatever phase that reader loaded. Take a
//! fenced reader (its increment is a `SeqCst` RMW, or a plain store followed
//! by a `SeqCst` fence) and its `SeqCst` point `R` (the RMW or the fence).
//! If `R` precedes `F` in the `SeqCst` order, the scan's load of its counter,
//! sequenced after `F`, returns the increment or a later value; a zero is
//! then the reader's own decrement (each reader adds one and later
//! subtracts one, so a zero count means every increment before it has been
//! undone), and that `Release` decrement read by the `Acquire` scan orders
//! the reader's last use of its translation before the writer goes on. If
//! `F` precedes `R`, the reader's `SeqCst` load of the stream generation
//! comes after `F`, so it sees the bump, sequenced before `F` (a `SeqCst`
//! load that reads an older value than a store is ordered before every
//! `SeqCst` fence that store happens before: C++20 \[atomics.order\] 4.2;
//! so the bump need not be an RMW), and, through its `Release`, the
//! cleared PTEs. Unfenced readers are covered by the process-wide
//! barrier exactly as for the flipping scans ("Unfenced readers" above),
//! so the idle scan runs after the barrier, where the first flip's would.
//! Hence `synchronize` returns without flipping when a scan of both phases
//! finds every counter at zero, which is what a strict unmap with no DMA in
//! flight costs: one fence and a few loads.
//!
//! While the high-water mark reads 0 (no exclusive slot has ever entered:
//! only shared-counter readers, which always fence), that scan is two loads
//! and needs neither the barrier nor the burst state, so `synchronize` does
//! it before taking the mutex and returns at once if both counters read
//! zero. A reader whose slot raises the mark after the writer's load of it
//! is covered by the mark's argument (its `SeqCst` fence follows `F`). A
//! concurrent flipping synchronizer changes only which phase new readers
//! enter, and the idle scan reads both.
//!
//! New readers always enter the current phase, so the old phase drains as
//! soon as the DMAs in it finish: the writer's wait is bounded by the longest
//! DMA in flight, never by the arrival rate.
//!
//! crossbeam-epoch pins are the other way to do this, but it offers no
//! blocking "wait for a grace period" call; this scheme gives one with one
//! uncontended atomic RMW per DMA and can be modelled by loom.

use crate::slot::{self, EXCLUSIVE};
use crate::sync::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::marker::PhantomData;

/// Counters per phase: one per exclusive thread slot, then the shared one.
pub const SLOTS: usize = EXCLUSIVE + 1;

/// Index of the shared counter.
const SHARED: usize = EXCLUSIVE;

/// Fenced entries of a thread between its attempts to end a stale burst.
pub const FENCED_CHECK: u32 = 4096;

#[cfg(not(loom))]
thread_local! {
    /// This thread's fenced entries (any DART), counted to pace its
    /// attempts to end a stale burst.
    static FENCED_ENTRIES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
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
    phase: CachePadded<AtomicUsize>,
    /// One more than the highest exclusive slot that ever entered.
    high: CachePadded<AtomicUsize>,
    /// Lane `i`: slot `i`'s counters of phase 0 and phase 1.
    lanes: Box<[[CachePadded<AtomicU64>; 2]; SLOTS]>,
    /// Set: readers must fence (a burst of unmaps is on, or the
    /// process-wide barrier is unavailable).
    fenced: CachePadded<AtomicBool>,
    /// The current burst, if any (writer only, under the mutex).
    writer: Mutex<Option<Burst>>,
}

/// A DMA in flight: while it lives, translations it uses stay valid. Not
/// `Send`: the thread that entered must drop it.
#[derive(Debug)]
#[must_use]
pub struct DmaGuard<'a> {
    counter: &'a AtomicU64,
    /// The thread's exclusive slot number (then `counter` is that slot's,
    /// written only by this thread), or [`SHARED`]: the shared counter.
    lane: u32,
    _not_send: PhantomData<*const ()>,
}

impl DmaGuard<'_> {
    /// The entering thread's exclusive slot number, or [`SHARED`] (past
    /// every slot number) for a thread without one.
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
            // This thread is the only writer of an exclusive counter.
            counter.store(counter.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Release);
        } else {
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
        InFlight {
            phase: CachePadded::new(AtomicUsize::new(0)),
            high: CachePadded::new(AtomicUsize::new(0)),
            // A fixed-size array: `enter` indexes it with a slot number the
            // compiler knows is below `SLOTS`, so without a bounds check.
            lanes: Box::new(std::array::from_fn(|_| {
                [CachePadded::new(AtomicU64::new(0)), CachePadded::new(AtomicU64::new(0))]
            })),
            fenced: CachePadded::new(AtomicBool::new(!crate::barrier::available())),
            writer: Mutex::new(None),
        }
    }

    /// Enters a DMA. Everything read after this call and used before the
    /// guard drops is covered by later [`InFlight::synchronize`] calls.
    #[inline]
    pub fn enter(&self) -> DmaGuard<'_> {
        let slot = slot::current();
        let index = match slot {
            Some(i) => {
                if i >= self.high.load(Ordering::Relaxed) {
                    self.raise_high(i);
                }
                i
            }
            None => SHARED,
        };
        let p = self.phase.load(Ordering::Relaxed) & 1;
        let counter = &self.lanes[index][p];
        if slot.is_some() && !self.fenced.load(Ordering::Relaxed) {
            // Unfenced entry (see "Unfenced readers"): this thread is the
            // counter's only writer.
            counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            if self.fenced.load(Ordering::Relaxed) {
                fence(Ordering::SeqCst);
            }
        } else {
            counter.fetch_add(1, Ordering::SeqCst);
            #[cfg(not(loom))]
            if slot.is_some() {
                let n = FENCED_ENTRIES.with(|n| {
                    n.set(n.get().wrapping_add(1));
                    n.get()
                });
                if n.is_multiple_of(FENCED_CHECK) {
                    self.end_stale_burst();
                }
            }
            // loom treats `SeqCst` loads as `Acquire`, so the `SeqCst` load
            // of the stream generation that follows is modelled by this
            // fence (loom only: the real build needs no fence).
            #[cfg(loom)]
            fence(Ordering::SeqCst);
        }
        DmaGuard { counter, lane: index as u32, _not_send: PhantomData }
    }

    /// A fenced reader's attempt to end a burst that no `synchronize` is
    /// left to end (see "Unfenced readers").
    #[cold]
    #[inline(never)]
    fn end_stale_burst(&self) {
        if let Some(mut burst) = self.writer.try_lock() {
            if burst.as_ref().is_some_and(|b| b.began.elapsed() > BURST) {
                *burst = None;
                self.fenced.store(false, Ordering::Release);
            }
        }
    }

    #[cold]
    fn raise_high(&self, i: usize) {
        self.high.fetch_max(i + 1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Waits until every DMA that entered before this call has left.
    pub fn synchronize(&self) {
        fence(Ordering::SeqCst);
        // No exclusive slot has ever entered and nothing is in flight on
        // the shared counters: done, without the writer mutex, the barrier
        // or a flip (see "Idle writers" in the module docs).
        if self.high.load(Ordering::SeqCst) == 0 && self.idle(0) {
            return;
        }
        let mut burst = self.writer.lock();
        let high = self.high.load(Ordering::SeqCst).min(EXCLUSIVE);
        if high > 0 && !self.fenced.load(Ordering::Relaxed) {
            self.fenced.store(true, Ordering::SeqCst);
            if crate::barrier::process_wide() {
                *burst = Some(Burst::new());
            } else {
                // Unreachable while `available()` held at construction;
                // stay fenced for good rather than trust unfenced readers.
                *burst = None;
            }
        }
        // Nothing in flight in either phase: no flip needed (the flips only
        // keep the wait bounded while readers keep arriving).
        let flips = if self.idle(high) { 0 } else { 2 };
        for _ in 0..flips {
            let old = self.phase.fetch_add(1, Ordering::SeqCst) & 1;
            for lane in self.lanes[..high].iter().chain(std::iter::once(&self.lanes[SHARED])) {
                let c = &lane[old];
                let mut spins = 0u32;
                while c.load(Ordering::Acquire) != 0 {
                    backoff(&mut spins);
                }
            }
        }
        if let Some(b) = burst.as_mut() {
            if b.finish_call() {
                *burst = None;
                self.fenced.store(false, Ordering::Release);
            }
        }
    }

    /// Whether the counters of the first `high` exclusive slots and the
    /// shared one read zero in both phases (`Acquire`: a zero that a
    /// reader's decrement wrote makes that reader's accesses happen before
    /// what the writer does next).
    #[inline]
    fn idle(&self, high: usize) -> bool {
        self.lanes[..high]
            .iter()
            .chain(std::iter::once(&self.lanes[SHARED]))
            .all(|lane| lane.iter().all(|c| c.load(Ordering::Acquire) == 0))
    }
}

/// Spins briefly (a DMA in flight is usually a few hundred nanoseconds),
/// then yields the CPU.
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
        let g = f.enter();
        drop(g);
        f.synchronize();
    }

    #[test]
    fn idle_synchronize_does_not_flip_and_busy_synchronize_flips_twice() {
        let phase = |f: &InFlight| f.phase.load(Ordering::Relaxed);
        // Never entered: the lock-free idle path.
        let f = InFlight::new();
        f.synchronize();
        assert_eq!(phase(&f), 0);
        // Entered and left on an exclusive slot (high-water mark raised):
        // still idle, so no flip, with or without a burst going on.
        drop(f.enter());
        f.synchronize();
        f.synchronize();
        assert_eq!(phase(&f), 0);
        // A DMA in flight on another thread, which leaves only once the
        // writer has flipped: the two flips, and the wait.
        let f = Arc::new(InFlight::new());
        let entered = Arc::new(std::sync::Barrier::new(2));
        let dma = {
            let (f, entered) = (f.clone(), entered.clone());
            std::thread::spawn(move || {
                let g = f.enter();
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
        assert_eq!(phase(&f), 2);
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
        let g = f.enter();
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
        assert!(crate::barrier::available(), "membarrier(2) is available on the machines this runs on");
        let f = InFlight::new();
        drop(f.enter()); // an exclusive slot has entered: bursts apply
        f.synchronize();
        assert!(f.fenced.load(Ordering::Relaxed), "a synchronize starts a burst");
        std::thread::sleep(BURST * 2);
        for _ in 0..FENCED_CHECK {
            drop(f.enter());
        }
        assert!(!f.fenced.load(Ordering::Relaxed), "a stale burst ends without another synchronize");
        assert!(f.writer.lock().is_none());
        // Unfenced now; the next synchronize starts a new burst.
        drop(f.enter());
        f.synchronize();
        assert!(f.fenced.load(Ordering::Relaxed));
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
                        let _g = f.enter();
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
