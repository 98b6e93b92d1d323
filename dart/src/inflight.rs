//! Tracking DMA in flight, so that a strict unmap can wait for every DMA that
//! may have translated through the entries it cleared.
//!
//! # Protocol (SRCU-style two-phase counters)
//!
//! There are two *phases*, each with [`SLOTS`] cache-padded counters. A DMA
//! thread uses one slot, chosen once per thread.
//!
//! - **Reader (a DMA or a translation):** load the current phase `p`;
//!   `fetch_add(1, SeqCst)` on `counters[p][slot]`; then read the stream's
//!   generation, the IOTLB and the tables, and copy; finally
//!   `fetch_sub(1, Release)` on the same counter. No lock.
//! - **Writer ([`InFlight::synchronize`], after clearing PTEs and bumping the
//!   stream generation):** under a mutex (one synchronizer at a time),
//!   `fence(SeqCst)`, flip the phase, then wait until every counter of the old
//!   phase reads zero; then do the same once more with the other phase.
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
//! New readers always enter the current phase, so the old phase drains as
//! soon as the DMAs in it finish: the writer's wait is bounded by the longest
//! DMA in flight, never by the arrival rate.
//!
//! crossbeam-epoch pins are the other way to do this, but it offers no
//! blocking "wait for a grace period" call; this scheme gives one with two
//! uncontended atomic RMWs per DMA and can be modelled by loom.

use crate::sync::{fence, AtomicU64, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

/// Counters per phase. Threads beyond this share slots (still correct).
pub const SLOTS: usize = 32;

/// The in-flight DMA tracker of one DART.
#[derive(Debug)]
pub struct InFlight {
    phase: CachePadded<AtomicUsize>,
    counters: [Box<[CachePadded<AtomicU64>]>; 2],
    writer: Mutex<()>,
}

/// A DMA in flight: while it lives, translations it uses stay valid.
#[derive(Debug)]
#[must_use]
pub struct DmaGuard<'a> {
    counter: &'a AtomicU64,
}

impl Drop for DmaGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Release);
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
        let bank = || (0..SLOTS).map(|_| CachePadded::new(AtomicU64::new(0))).collect::<Vec<_>>().into_boxed_slice();
        InFlight { phase: CachePadded::new(AtomicUsize::new(0)), counters: [bank(), bank()], writer: Mutex::new(()) }
    }

    /// Enters a DMA. Everything read after this call and used before the
    /// guard drops is covered by later [`InFlight::synchronize`] calls.
    #[inline]
    pub fn enter(&self) -> DmaGuard<'_> {
        let p = self.phase.load(Ordering::Relaxed) & 1;
        let counter = &self.counters[p][thread_slot()];
        counter.fetch_add(1, Ordering::SeqCst);
        // loom treats `SeqCst` loads as `Acquire`, so the `SeqCst` load of the
        // stream generation that follows is modelled by this fence (loom
        // only: the real build needs no fence).
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        DmaGuard { counter }
    }

    /// Waits until every DMA that entered before this call has left.
    pub fn synchronize(&self) {
        let _one_writer = self.writer.lock();
        fence(Ordering::SeqCst);
        for _ in 0..2 {
            let old = self.phase.fetch_add(1, Ordering::SeqCst) & 1;
            for c in self.counters[old].iter() {
                let mut spins = 0u32;
                while c.load(Ordering::Acquire) != 0 {
                    backoff(&mut spins);
                }
            }
        }
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

#[cfg(not(loom))]
#[inline]
fn thread_slot() -> usize {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SLOTS;
        s.set(v);
        v
    })
}

#[cfg(loom)]
fn thread_slot() -> usize {
    // Under loom every thread gets its own slot by id, which keeps models small.
    let id = format!("{:?}", std::thread::current().id());
    id.bytes().fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize)) % SLOTS
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
