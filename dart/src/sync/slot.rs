//! Per-thread slot numbers: what lets the DMA path count and mark itself in
//! flight with plain stores instead of atomic read-modify-writes.
//!
//! # Protocol
//!
//! The code cites these invariants as `(S1)` to `(S4)`.
//!
//! 1. **S1 (one live holder).** Every thread that does DMA through any DART
//!    claims, on its first DMA, a number in `0..EXCLUSIVE` that no other
//!    *live* thread holds, and keeps it until it exits. Data indexed by a
//!    slot number (a stripe of counters, an in-flight section word) thus has
//!    exactly one writer at a time, which may update it with `load` +
//!    `store` (no `lock`-prefixed instruction) while other threads read it
//!    with plain loads.
//! 2. **S2 (hand-off through the mutex).** An exiting thread's destructor
//!    first stops its DMA path from using the number (the cached copy
//!    becomes "none", so later DMA of the thread takes the shared path) and
//!    then puts the number on the free list under its mutex. The old owner's
//!    last stores happen-before its unlock, which happens-before the new
//!    owner's lock, so the new owner's first `load` sees them and no count is
//!    lost across owners.
//! 3. **S3 (fresh numbers).** A number that was never used comes from a
//!    `Relaxed` `fetch_add` on a counter: its atomicity alone makes the
//!    number unique, and no data is published through it (a new owner of a
//!    never-used number has no predecessor to see).
//! 4. **S4 (overflow).** When all `EXCLUSIVE` numbers are taken, [`current`]
//!    returns `None` and callers fall back to a shared slot updated with
//!    atomic RMWs: still exact, just contended. Under loom every thread takes
//!    that path (a loom model exercises the shared protocol; the exclusive
//!    one differs only in having a single writer per slot).

use parking_lot::Mutex;

/// Slot numbers that can be held exclusively at once.
pub(crate) const EXCLUSIVE: usize = 64;

// Under loom no thread claims a number (see above): these go unused there.
/// Numbers returned by exited threads.
#[cfg_attr(loom, allow(dead_code))]
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Next never-used number.
#[cfg_attr(loom, allow(dead_code))]
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A claimed number, returned to [`FREE`] when the thread exits.
#[cfg_attr(loom, allow(dead_code))]
struct Claim(Option<usize>);

impl Claim {
    #[cfg_attr(loom, allow(dead_code))]
    fn new() -> Claim {
        // (S2) A returned number: the lock orders its old owner's last
        // stores before this thread's first.
        if let Some(n) = FREE.lock().pop() {
            return Claim(Some(n));
        }
        // (S3) `Relaxed`: uniqueness is the RMW's, nothing is published.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < EXCLUSIVE {
            Claim(Some(n))
        } else {
            // (S4) Keep NEXT from growing without bound (it never wraps in
            // practice, but be exact): numbers past the end are never used,
            // and NEXT is already at least `EXCLUSIVE`, so no number below
            // it is handed out twice (S1). `Relaxed`, as S3.
            NEXT.store(EXCLUSIVE, std::sync::atomic::Ordering::Relaxed);
            Claim(None)
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // (S2) First the DMA path stops using the number (it takes the
        // shared path from now on, S4), ...
        #[cfg(not(loom))]
        let _ = CACHED.try_with(|c| c.set(NO_SLOT));
        // ... then (S2) the number goes back under the lock, after this
        // thread's last store to the data it indexes.
        if let Some(n) = self.0 {
            FREE.lock().push(n);
        }
    }
}

/// [`CACHED`] before this thread's first call of [`current`].
#[cfg(not(loom))]
const UNCLAIMED: usize = usize::MAX;
/// [`CACHED`] when the thread has no exclusive number (all were taken, or
/// its [`Claim`] has been dropped at thread exit).
#[cfg(not(loom))]
const NO_SLOT: usize = usize::MAX - 1;

#[cfg(not(loom))]
thread_local! {
    /// The claim, whose destructor returns the number.
    static SLOT: Claim = Claim::new();
    /// A copy of the claimed number for the DMA path: a `const`, drop-free
    /// thread-local is one load with no lazy-initialization check, where
    /// [`SLOT`] needs a state check on every access. Written by [`current`]
    /// on first use and set to [`NO_SLOT`] by the claim's destructor
    /// before the number goes back to [`FREE`].
    static CACHED: std::cell::Cell<usize> = const { std::cell::Cell::new(UNCLAIMED) };
}

/// This thread's exclusive slot number, claiming one on first use; `None`
/// when every number is held by another live thread (or while this thread's
/// thread-locals are being destroyed).
#[cfg(not(loom))]
#[inline]
pub(crate) fn current() -> Option<usize> {
    let n = CACHED.with(|c| c.get());
    // (S1) This thread's own number; (S4) `NO_SLOT`: the shared path.
    if n < EXCLUSIVE {
        Some(n)
    } else if n == UNCLAIMED {
        claim_cached()
    } else {
        None
    }
}

/// This thread's exclusive slot number if it already holds one; `None`
/// before its first [`current`] call (which claims), and when it holds
/// none. One thread-local load and one compare: the DMA path's entry.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn held() -> Option<usize> {
    let n = CACHED.with(|c| c.get());
    (n < EXCLUSIVE).then_some(n)
}

/// [`current`]'s first call on a thread: claims through [`SLOT`] and
/// caches the answer.
#[cfg(not(loom))]
#[cold]
#[inline(never)]
fn claim_cached() -> Option<usize> {
    let n = SLOT.try_with(|c| c.0).ok().flatten();
    CACHED.with(|c| c.set(n.unwrap_or(NO_SLOT)));
    n
}

/// Makes the calling thread act as one that found every number taken
/// ([`current`] and [`held`] return `None` from now on), for tests of the
/// paths such a thread takes. Its number, if it claimed one, is returned
/// when it exits as usual.
#[cfg(all(test, not(loom)))]
pub(crate) fn act_as_overflow_thread() {
    CACHED.with(|c| c.set(NO_SLOT));
}

/// Under loom every thread uses the shared, RMW-updated slot.
#[cfg(loom)]
#[inline]
pub(crate) fn current() -> Option<usize> {
    None
}

/// Under loom no thread holds a number.
#[cfg(loom)]
#[inline]
pub(crate) fn held() -> Option<usize> {
    None
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn held_is_none_until_the_first_claim_then_the_claimed_number() {
        std::thread::spawn(|| {
            assert_eq!(held(), None, "a new thread holds nothing before its first DMA");
            let n = current();
            assert!(n.is_some_and(|n| n < EXCLUSIVE));
            assert_eq!(held(), n);
            assert_eq!(current(), n, "stable");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn live_threads_hold_distinct_numbers_and_exited_ones_are_reused() {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let numbers: Vec<Option<usize>> = (0..8)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    let n = current();
                    b.wait(); // all eight alive at once
                    assert_eq!(current(), n, "a thread's number is stable");
                    n
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let live: Vec<usize> = numbers.iter().flatten().copied().collect();
        assert_eq!(live.iter().collect::<HashSet<_>>().len(), live.len(), "numbers held at once are distinct");
        assert!(live.iter().all(|&n| n < EXCLUSIVE));
        // The eight have exited: a new thread gets a number back from the free list.
        let again = std::thread::spawn(current).join().unwrap();
        assert!(again.is_some());
    }
}
