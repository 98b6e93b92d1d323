//! The device-reachable map: one bit per frame, set while a DART may reach
//! the frame ([`crate::policy::device_reachable`] of its type).
//!
//! It exists for the DART walker's leaf check. The state words are 8 bytes a
//! frame (512 KiB for a gigabyte of 16 KiB frames) and a random walk misses
//! them in cache; this map is 1/64 of that and stays cached, so the check
//! that keeps forbidden frames unreachable costs an L1 hit instead of a
//! second cache miss after the PTE's.
//!
//! # Protocol
//!
//! *Who writes.* Only the thread that holds a frame's *claim* (the
//! `claimed` flag of its state word, see `frame-table/src/cell.rs`) writes the frame's
//! bit. Every change of type claims first: allocation and retype from
//! `free`, retype between other types, and free. While a frame is claimed,
//! every other transition on it waits or is refused, so its bit and its
//! type have one writer. The claimer:
//! 1. claims the frame (a CAS that also makes the type change's checks:
//!    R1 transition, no mapping, no pin; the word keeps the old type). A
//!    multi-frame change claims all its frames before step 2 and, if one
//!    refuses, gives the claims back (the old word again): the bits were
//!    never touched;
//! 2. clears the bit if the old type was reachable;
//! 3. scrubs the frame if it leaves `free`;
//! 4. sets the bit if the new type is reachable;
//! 5. publishes the new type and drops the claim (one CAS).
//!
//! *Who reads.* The walker, with no lock: one `Acquire` load of the word
//! holding the bit.
//!
//! *Why it is safe.* Outside a claim, a set bit never stands for a type
//! that forbids DART access: it is cleared (step 2) before the claim is
//! released with a type that forbids it, and set (step 4) only once the
//! change to a reachable type is decided and no other change can start
//! before it is published. Between the claim and step 2 the bit is still
//! set: a walk then is ordered before the retype, as one that read the bit
//! just before the claim would be.
//! The bit RMWs are `AcqRel` and sequenced before the publishing CAS
//! (`AcqRel`), so a thread that reads the new type also reads the new bit.
//! The walker's check is a snapshot, as a load of the state word was: a
//! DMA that read the bit before a retype began may finish after it. That is
//! the same window the state-word check had, and it only concerns PTEs no
//! mapping counts: a mapped frame cannot be retyped at all (R1).
//!
//! *Invariant at rest:* for every unclaimed frame, bit = reachable(type);
//! [`crate::FrameTable::reach_map_consistent`] checks it.

use crate::sync::{AtomicU64, Ordering};

/// One bit per frame, in 64-bit words.
#[derive(Debug)]
pub(crate) struct ReachMap {
    words: Box<[AtomicU64]>,
}

impl ReachMap {
    /// A map of `frames` frames, all unreachable (every frame starts `free`
    /// or a hole).
    pub(crate) fn new(frames: usize) -> ReachMap {
        ReachMap { words: (0..frames.div_ceil(64)).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Whether frame `index`'s bit is set; false past the end.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> bool {
        match self.words.get(index / 64) {
            Some(w) => (w.load(Ordering::Acquire) >> (index % 64)) & 1 != 0,
            None => false,
        }
    }

    /// Sets or clears frame `index`'s bit. Only the holder of the frame's
    /// claim calls this.
    pub(crate) fn set(&self, index: usize, reachable: bool) {
        if let Some(w) = self.words.get(index / 64) {
            let bit = 1u64 << (index % 64);
            if reachable {
                w.fetch_or(bit, Ordering::AcqRel);
            } else {
                w.fetch_and(!bit, Ordering::AcqRel);
            }
        }
    }
}
