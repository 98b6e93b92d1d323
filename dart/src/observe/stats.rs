//! Counters, per DART and per stream (product spec §5).
//!
//! # Protocol
//!
//! *Writers* are the threads that do work for the DART: DMA threads
//! (translations, IOTLB hits and misses, walks, faults, bytes moved) and the
//! RPC server (maps, unmaps, invalidations, requests, refusals, violations).
//! A writer never takes a lock and never touches a cache line that a writer
//! on another core is likely to be using: the counters are split into
//! `STRIPES` stripes, each stripe holds every slot (the DART-wide set and
//! one set per stream), stripes start on cache-line-pair boundaries
//! ([`CachePadded`]), and a thread picks its stripe once (round-robin from a
//! global counter, kept in a thread-local) and only ever increments that
//! stripe, with `fetch_add(n, Relaxed)`.
//!
//! The DMA path's own counters (`translations`, `iotlb_hits`,
//! `iotlb_misses`, `walks`, `bytes_read`, `bytes_written`), updated on every
//! access, go one step further: each exclusive slot number (the crate's
//! `slot` module) has its own *hot stripe* per DART, holding those counters
//! per stream; the hot stripes are one flat array allocated with the
//! counters. An IOTLB hit, the commonest event, and the fast path's walk
//! count in a separate per-slot row of 256 (hit, walk) counter pairs (one
//! per possible stream of every variant), found with a shift and one
//! compare. Its owner is its only
//! writer, so it adds with a `Relaxed` `load` + `store`: no `lock`-prefixed
//! instruction on the hot path. Only two events are stored per stream:
//! IOTLB hits and IOTLB misses. Every miss walks and every translated page
//! is a hit or a miss, so `walks` = `iotlb_misses` and `translations` =
//! `iotlb_hits + iotlb_misses` are derived when summing: a hit updates one
//! counter and a fast-path walk one counter too. The DART-wide values are
//! the sums over streams. Threads without a slot number count in the
//! striped slots with `fetch_add`.
//!
//! The mapper's counters (maps, unmaps, invalidations, the TTBR violations
//! it finds) are added under the
//! DART's mapper lock, which already serializes their writers: they go to
//! one more cold-stripe-shaped set, the *mapper's stripe*, with a `Relaxed`
//! `load` + `store` and no per-thread lookup (`Stats::add_serialized`).
//!
//! The other slow-path counters of `Stats::add` (requests, …)
//! go per thread the same way: a thread with a slot number
//! gets its own *cold stripe* per DART on its first `add`, holding the 13
//! basic counters of the DART-wide set and of every stream, and adds with a
//! `Relaxed` `load` + `store` (as `fetch_add`s they would cost about as
//! much as a strict unmap's own atomics). Threads without a slot number,
//! and fault and refusal codes, count in the striped slots.
//!
//! *Readers* call [`Stats::snapshot`] at any time; it sums every slot over all
//! stripes, hot stripes, cold stripes and the mapper's stripe with `Relaxed`
//! loads.
//!
//! *Why `Relaxed` is enough:* a counter carries no synchronization: no reader
//! infers from a counter's value that some other memory is ready, so no
//! ordering with other memory is needed. Each `fetch_add` is atomic on its own
//! location, so no increment is ever lost; a snapshot taken while writers run
//! may mix earlier and later values of different slots (it is not exact, and
//! e.g. `faults` may momentarily differ from the sum of `faults.CODE`). Once
//! the writers have stopped and the reader has synchronized with them (a
//! thread `join`, a lock, a channel), every increment happens-before the
//! snapshot's loads, and the snapshot is exact.
//!
//! # Stripes and memory
//!
//! There are `STRIPES` = 8 stripes: enough that a handful of DMA threads
//! plus the RPC server rarely share one, while memory stays small. With more
//! than eight counting threads, some threads share a stripe: still correct,
//! just contended. Every stripe holds `(1 + streams) * 37` 8-byte slots,
//! rounded up to whole 128-byte blocks (the size of a [`CachePadded`] block on
//! x86_64 and aarch64); each of the 64 hot stripes holds `streams * 4`
//! slots, rounded up the same way, each of the 64 fast-path rows 512 slots,
//! and the mapper's stripe `(1 + streams) * 13`, rounded up the same way.
//! Bytes per DART (x86_64 / aarch64):
//!
//! | streams | bytes per DART            |
//! |--------:|---------------------------|
//! |       0 | 265,344 (259 KiB)         |
//! |      16 | 337,664 (330 KiB)         |
//! |     256 | 1,422,464 (1.4 MiB)       |
//! |    4096 | 18,779,264 (17.9 MiB)     |
//!
//! (The DART variants have at most 256 streams.)
//!
//! `Stats::new` accepts up to `MAX_STREAMS` = 4096 streams and clamps
//! larger counts to that. Each thread that counts through `Stats::add`
//! with a slot number adds a cold stripe of `(1 + streams) * 13` slots in
//! whole 128-byte blocks (16 streams: 1,792 bytes; 256 streams: 26,752).

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Ordering};

/// Number of stripes every [`Stats`] is split into.
pub(crate) const STRIPES: usize = 8;

/// Largest stream count [`Stats::new`] accepts; larger counts are clamped.
pub(crate) const MAX_STREAMS: usize = 4096;

/// Number of slots in one set (one DART or one stream): 13 basic counters,
/// then one per fault code, then one per refusal kind.
const SLOTS: usize = 13 + 9 + 15;

/// Slots per cache-padded block (16 × 8 bytes = 128 bytes).
const LANES: usize = 16;

/// One block of slots, aligned and padded so that no two blocks (and hence no
/// two stripes, which start on block boundaries) share a cache line.
type Block = CachePadded<[AtomicU64; LANES]>;

/// Declares the name table once: the public code and kind lists and the full
/// slot names (`"translations"`, …, `"faults.no-ttbr"`, …,
/// `"rpc_refused.forbidden-type"`, …), in slot order.
macro_rules! name_table {
    (
        basic: [$($basic:literal),* $(,)?],
        faults: [$($fault:literal),* $(,)?],
        refusals: [$($kind:literal),* $(,)?] $(,)?
    ) => {
        /// Fault codes, in slot order: each counts in `faults.CODE`.
        pub const FAULT_CODES: [&str; 9] = [$($fault),*];

        /// RPC refusal kinds, in slot order: each counts in
        /// `rpc_refused.KIND`. Unknown kinds count as `other`.
        pub const REFUSAL_KINDS: [&str; 15] = [$($kind),*];

        /// Every slot's name, in slot order.
        const SLOT_NAMES: [&str; SLOTS] = [
            $($basic,)*
            $(concat!("faults.", $fault),)*
            $(concat!("rpc_refused.", $kind),)*
        ];
    };
}

name_table! {
    basic: [
        "translations", "iotlb_hits", "iotlb_misses", "walks", "faults", "maps", "unmaps",
        "invalidations", "bytes_read", "bytes_written", "rpc_requests", "rpc_refused",
        "violations",
    ],
    faults: [
        "no-ttbr", "no-l0", "no-l1", "no-pte", "read", "write", "subpage", "stream-disabled",
        "forbidden-frame",
    ],
    refusals: [
        "forbidden-type", "mapping-limit", "frame-busy", "bad-transition", "bad-range",
        "iova-in-use", "not-mapped", "not-granted", "perm-exceeds-grant", "bad-message",
        "bypass-denied", "no-such-device", "halted", "panic", "other",
    ],
}

// ---- Slot index math: the only place that knows the layout. ----

/// Slot of fault code number `i` (an index into [`FAULT_CODES`]).
const fn fault_slot(i: usize) -> usize {
    Counter::ALL.len() + i
}

/// Slot of refusal kind number `i` (an index into [`REFUSAL_KINDS`]).
const fn refusal_slot(i: usize) -> usize {
    Counter::ALL.len() + FAULT_CODES.len() + i
}

/// Index of refusal kind `other`, where unknown kinds are counted.
const OTHER_KIND: usize = REFUSAL_KINDS.len() - 1;

/// Set number of the DART-wide counters; stream `sid` has set `1 + sid`.
const DART_SET: usize = 0;

/// Slots per stripe for `streams` streams, rounded up to whole blocks.
const fn stripe_len(streams: usize) -> usize {
    ((1 + streams) * SLOTS).div_ceil(LANES) * LANES
}

/// Flat slot index of `slot` of set `set` in the stripe starting at `base`.
#[inline]
const fn slot_index(base: usize, set: usize, slot: usize) -> usize {
    base + set * SLOTS + slot
}

/// This thread's stripe, assigned round-robin on the thread's first count.
#[cfg(not(loom))]
#[inline]
fn stripe_index() -> usize {
    use crate::sync::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    // During thread-local destruction the slot may be gone: fall back to
    // stripe 0 rather than panic.
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

/// Under loom every thread counts on stripe 0, which models the contended
/// case (loom atomics cannot live in a `static`).
#[cfg(loom)]
#[inline]
fn stripe_index() -> usize {
    0
}

/// A basic counter. Its slot is its discriminant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Translations attempted (`translations`).
    Translations,
    /// Translations served from the IOTLB (`iotlb_hits`).
    IotlbHits,
    /// Translations that missed the IOTLB (`iotlb_misses`).
    IotlbMisses,
    /// Page-table walks (`walks`).
    Walks,
    /// Translation faults (`faults`, and `faults.CODE` per fault code).
    Faults,
    /// Pages mapped (`maps`).
    Maps,
    /// Pages unmapped (`unmaps`).
    Unmaps,
    /// IOTLB invalidations (`invalidations`).
    Invalidations,
    /// Bytes read by DMA (`bytes_read`).
    BytesRead,
    /// Bytes written by DMA (`bytes_written`).
    BytesWritten,
    /// RPC requests received (`rpc_requests`).
    RpcRequests,
    /// RPC requests refused (`rpc_refused`, and `rpc_refused.KIND` per
    /// kind; counted by [`crate::Dart::account_rpc`]).
    RpcRefused,
    /// Policy violations (`violations`).
    Violations,
}

impl Counter {
    /// Every basic counter, in slot order.
    pub const ALL: [Counter; 13] = [
        Counter::Translations,
        Counter::IotlbHits,
        Counter::IotlbMisses,
        Counter::Walks,
        Counter::Faults,
        Counter::Maps,
        Counter::Unmaps,
        Counter::Invalidations,
        Counter::BytesRead,
        Counter::BytesWritten,
        Counter::RpcRequests,
        Counter::RpcRefused,
        Counter::Violations,
    ];

    /// The counter's name, e.g. `"iotlb_hits"`.
    pub const fn name(self) -> &'static str {
        SLOT_NAMES[self.slot()]
    }

    /// The counter's slot in a set.
    const fn slot(self) -> usize {
        self as usize
    }
}

/// The per-thread counters of the DMA path, one set of [`HOT`] per stream.
const HOT: usize = 4;
/// Streams a fast-path row covers: the most any variant has.
const HIT_STREAMS: usize = 256;
/// A stream's counters within a fast-path row: its IOTLB hits, then its walks.
const FAST_HIT: usize = 0;
const FAST_WALK: usize = 1;
/// Hot counter indices within a stream's set.
/// IOTLB hits of the general path (the fast path's are in the fast-path rows).
const HOT_HITS: usize = 0;
/// IOTLB misses, each of which walked.
const HOT_MISSES: usize = 1;
const HOT_READ: usize = 2;
const HOT_WRITTEN: usize = 3;

/// Basic counters per set in a [`ColdStripe`].
const BASIC: usize = Counter::ALL.len();

/// One thread's cold stripe: the basic counters ([`Counter::ALL`]) of the
/// DART-wide set and of every stream, `(1 + streams) * BASIC` slots in whole
/// cache-padded blocks, set `k` at `[k * BASIC, (k + 1) * BASIC)`.
struct ColdStripe {
    blocks: Box<[Block]>,
}

impl ColdStripe {
    fn new(streams: usize) -> ColdStripe {
        let blocks = (0..((1 + streams) * BASIC).div_ceil(LANES))
            .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))));
        ColdStripe { blocks: blocks.collect() }
    }

    #[inline]
    fn cell(&self, set: usize, counter: Counter) -> Option<&AtomicU64> {
        let index = set * BASIC + counter.slot();
        self.blocks.get(index / LANES).map(|b| &b[index % LANES])
    }

    /// Adds `n` to `counter` of `set`; only the stripe's owner (one thread,
    /// or for the mapper's stripe the holder of the mapper lock) calls this.
    #[inline]
    fn add(&self, set: usize, counter: Counter, n: u64) {
        if let Some(c) = self.cell(set, counter) {
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        }
    }

    /// Adds `n` to `counter` of the DART-wide set and, if `stream_set` is
    /// given, of that stream's set; as [`ColdStripe::add`].
    #[inline]
    fn add_counted(&self, stream_set: Option<usize>, counter: Counter, n: u64) {
        self.add(DART_SET, counter, n);
        if let Some(set) = stream_set {
            self.add(set, counter, n);
        }
    }

    fn load(&self, set: usize, counter: Counter) -> u64 {
        self.cell(set, counter).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The live counters of one DART: lock-free, striped, cheap to increment.
pub struct Stats {
    /// The hot stripes, one per exclusive slot number, back to back:
    /// slot `k`'s counter `c` of stream `sid` is flat slot
    /// `k * hot_len + sid * HOT + c`.
    hot: Box<[Block]>,
    /// Slots per hot stripe (a multiple of [`LANES`]).
    hot_len: usize,
    /// The fast-path rows, one per exclusive slot number: the fast path's
    /// IOTLB hits (`2 * sid + FAST_HIT`) and walks (`2 * sid + FAST_WALK`)
    /// of stream `sid` (`sid < HIT_STREAMS`).
    /// A fixed-size array, so that the hit path's index by a slot number
    /// the compiler knows is below `EXCLUSIVE` needs no bounds check.
    fast: Box<[FastRow; crate::sync::slot::EXCLUSIVE]>,
    /// Cold stripes ([`Stats::add`]) by exclusive slot number, allocated on
    /// first use.
    cold: Box<[std::sync::OnceLock<ColdStripe>]>,
    /// The mapper's stripe ([`Stats::add_serialized`]): written only by
    /// holders of the DART's mapper lock.
    serial: ColdStripe,
    /// All stripes back to back; stripe `k` is
    /// `[k * stripe_len, (k + 1) * stripe_len)` in slots.
    blocks: Box<[Block]>,
    /// Slots per stripe (a multiple of [`LANES`]).
    stripe_len: usize,
    /// Number of streams with their own set.
    streams: usize,
}

/// One exclusive slot's fast-path row ([`Stats::count_hit`]).
type FastRow = CachePadded<[AtomicU64; 2 * HIT_STREAMS]>;

/// The fast-path rows of every exclusive slot, zeroed, built on the heap
/// (all of them are 256 KiB, too much to build on a stack first).
fn fast_rows() -> Box<[FastRow; crate::sync::slot::EXCLUSIVE]> {
    let rows: Box<[FastRow]> = (0..crate::sync::slot::EXCLUSIVE)
        .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
        .collect();
    match rows.try_into() {
        Ok(rows) => rows,
        // `rows` has exactly `EXCLUSIVE` rows, so this arm is never taken.
        Err(_) => unreachable!("fast-path rows: one per exclusive slot"),
    }
}

impl Stats {
    /// Counters for a DART with `streams` streams (sids `0..streams`), all
    /// zero. Stream counts above 4096 are clamped to 4096.
    pub(crate) fn new(streams: usize) -> Stats {
        let streams = streams.min(MAX_STREAMS);
        let stripe_len = stripe_len(streams);
        let blocks = (0..STRIPES * stripe_len / LANES)
            .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        let hot_len = (streams * HOT).div_ceil(LANES) * LANES;
        let hot = (0..crate::sync::slot::EXCLUSIVE * hot_len / LANES)
            .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        let fast = fast_rows();
        let cold = (0..crate::sync::slot::EXCLUSIVE).map(|_| std::sync::OnceLock::new()).collect();
        let serial = ColdStripe::new(streams);
        Stats { hot, hot_len, fast, cold, serial, blocks, stripe_len, streams }
    }

    /// Flat index of stream `sid`'s set of hot counters in slot number
    /// `slot`'s stripe, if the thread has a slot and the stream its own
    /// counters; counter `c` of the set is [`Stats::hot_at`]`(base + c)`.
    #[inline(always)]
    fn hot_set(&self, slot: Option<usize>, sid: u32) -> Option<usize> {
        let s = sid as usize;
        if s >= self.streams {
            return None;
        }
        Some(slot? * self.hot_len + s * HOT)
    }

    /// The hot counter at flat index `i`.
    #[inline(always)]
    fn hot_at(&self, i: usize) -> Option<&AtomicU64> {
        self.hot.get(i / LANES).map(|b| &b[i % LANES])
    }

    /// Hot counter `c` of stream `sid` in slot number `slot`'s stripe.
    #[inline(always)]
    fn hot_cell(&self, slot: Option<usize>, sid: u32, c: usize) -> Option<&AtomicU64> {
        self.hot_at(self.hot_set(slot, sid)? + c)
    }

    /// Adds `n` to a hot counter; only the owner of its slot calls this.
    #[inline(always)]
    fn hot_add(cell: &AtomicU64, n: u64) {
        cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Counts one single-page translation served by the IOTLB on stream
    /// `sid`, for the thread whose in-flight lane is `lane` (its exclusive
    /// slot number, or any larger number for a thread without one).
    #[inline(always)]
    pub(crate) fn count_hit(&self, lane: usize, sid: u32) {
        self.count_fast(lane, sid, FAST_HIT);
    }

    /// Counts one IOTLB miss, and so one walk and one translated page, on
    /// stream `sid`: the fast path's fill. `lane` as for
    /// [`Stats::count_hit`].
    #[inline(always)]
    pub(crate) fn count_walk(&self, lane: usize, sid: u32) {
        self.count_fast(lane, sid, FAST_WALK);
    }

    /// Adds one to counter `k` ([`FAST_HIT`] or [`FAST_WALK`]) of stream
    /// `sid` in the fast-path row of `lane`: a shift and two compares.
    /// Lanes without a row count through [`Stats::count_translation_in`].
    #[inline(always)]
    fn count_fast(&self, lane: usize, sid: u32, k: usize) {
        if cfg!(feature = "no-counters") {
            return;
        }
        // A sid past the DART's streams never gets here (the DART checked
        // it); one below HIT_STREAMS but past `streams` would only count in
        // a slot no snapshot reads.
        match self.fast.get(lane).and_then(|row| row.get(2 * sid as usize + k)) {
            Some(c) => Self::hot_add(c, 1),
            None if k == FAST_HIT => self.count_translation_in(None, sid, 1, 0),
            None => self.count_translation_in(None, sid, 0, 1),
        }
    }

    /// Counts one access's translation work on stream `sid`: `hits` pages
    /// served by the IOTLB and `misses` pages walked (`translations` is
    /// their sum, `walks` equals `misses`). Per thread and with plain
    /// stores when the thread has a slot number (see the module docs);
    /// `slot` must be the calling thread's own.
    #[inline]
    pub(crate) fn count_translation_in(&self, slot: Option<usize>, sid: u32, hits: u64, misses: u64) {
        if cfg!(feature = "no-counters") {
            return;
        }
        let cells = match self.hot_set(slot, sid) {
            Some(base) => (self.hot_at(base + HOT_HITS), self.hot_at(base + HOT_MISSES)),
            None => (None, None),
        };
        match cells {
            (Some(h), Some(m)) => {
                Self::hot_add(h, hits);
                Self::hot_add(m, misses);
            }
            _ => {
                self.add(Some(sid), Counter::Translations, hits.wrapping_add(misses));
                self.add(Some(sid), Counter::IotlbHits, hits);
                self.add(Some(sid), Counter::IotlbMisses, misses);
                self.add(Some(sid), Counter::Walks, misses);
            }
        }
    }

    /// Counts `n` bytes moved by DMA on stream `sid` (`bytes_written` if
    /// `write`, else `bytes_read`), like [`Stats::count_translation_in`].
    #[inline]
    pub(crate) fn count_bytes_in(&self, slot: Option<usize>, sid: u32, write: bool, n: u64) {
        if cfg!(feature = "no-counters") {
            return;
        }
        match self.hot_cell(slot, sid, if write { HOT_WRITTEN } else { HOT_READ }) {
            Some(c) => Self::hot_add(c, n),
            None => self.add(Some(sid), if write { Counter::BytesWritten } else { Counter::BytesRead }, n),
        }
    }

    /// Number of streams with their own counters.
    pub fn streams(&self) -> usize {
        self.streams
    }

    /// Adds `n` to `counter`, DART-wide and, when `stream` is a sid below
    /// [`Stats::streams`], for that stream. Other sids count DART-wide only.
    /// In the calling thread's cold stripe with plain stores when it has a
    /// slot number, else in its shared stripe (see the module docs).
    #[inline]
    pub(crate) fn add(&self, stream: Option<u32>, counter: Counter, n: u64) {
        if cfg!(feature = "no-counters") {
            return;
        }
        let set = self.stream_set(stream);
        match self.cold_stripe(crate::sync::slot::current()) {
            Some(c) => c.add_counted(set, counter, n),
            None => self.bump(self.stripe_base(), set, counter.slot(), n),
        }
    }

    /// [`Stats::add`] for a caller holding its DART's mapper lock, which
    /// `_held` (the lock's contents) witnesses: maps, unmaps, invalidations
    /// and the TTBR violations the mapper finds. Every writer of the mapper's stripe holds that lock,
    /// so a `Relaxed` load + store loses no increment, and the count needs
    /// neither the thread's slot number nor its cold stripe (cheaper than
    /// [`Stats::add`]).
    #[inline]
    pub(crate) fn add_serialized(
        &self,
        _held: &impl crate::sync::WriterLock,
        stream: Option<u32>,
        counter: Counter,
        n: u64,
    ) {
        if cfg!(feature = "no-counters") {
            return;
        }
        self.serial.add_counted(self.stream_set(stream), counter, n);
    }

    /// The cold stripe of slot number `slot` (the calling thread's own).
    #[inline]
    fn cold_stripe(&self, slot: Option<usize>) -> Option<&ColdStripe> {
        Some(self.cold.get(slot?)?.get_or_init(|| ColdStripe::new(self.streams)))
    }

    /// Counts a fault: `faults` and `faults.CODE` (DART-wide, and for the
    /// stream as in [`Stats::add`]). A code not in [`FAULT_CODES`] counts in
    /// `faults` only.
    #[inline]
    pub(crate) fn fault(&self, stream: Option<u32>, code: &str) {
        let base = self.stripe_base();
        let set = self.stream_set(stream);
        self.bump(base, set, Counter::Faults.slot(), 1);
        if let Some(i) = FAULT_CODES.iter().position(|c| *c == code) {
            self.bump(base, set, fault_slot(i), 1);
        }
    }

    /// Counts a refused RPC request: `rpc_refused` and `rpc_refused.KIND`
    /// (DART-wide, and for the stream as in [`Stats::add`]). A kind not in
    /// [`REFUSAL_KINDS`] counts as `other`.
    pub(crate) fn rpc_refused(&self, stream: Option<u32>, kind: &str) {
        let base = self.stripe_base();
        let set = self.stream_set(stream);
        let i = REFUSAL_KINDS.iter().position(|k| *k == kind).unwrap_or(OTHER_KIND);
        self.bump(base, set, Counter::RpcRefused.slot(), 1);
        self.bump(base, set, refusal_slot(i), 1);
    }

    /// Sums every slot over all stripes. Not atomic across slots while
    /// writers run; exact once they have stopped (see the module docs).
    pub fn snapshot(&self) -> StatsSnapshot {
        let sets = 1 + self.streams;
        let mut sums = vec![0u64; sets * SLOTS];
        for stripe in 0..STRIPES {
            let base = stripe * self.stripe_len;
            for (i, sum) in sums.iter_mut().enumerate() {
                *sum = sum.wrapping_add(self.load(base + i));
            }
        }
        for slot in 0..crate::sync::slot::EXCLUSIVE {
            for sid in 0..self.streams {
                let get = |k: usize| self.hot_cell(Some(slot), sid as u32, k).map_or(0, |c| c.load(Ordering::Relaxed));
                let row = |k: usize| self.fast[slot].get(2 * sid + k).map_or(0, |c| c.load(Ordering::Relaxed));
                let (hits, misses) =
                    (get(HOT_HITS).wrapping_add(row(FAST_HIT)), get(HOT_MISSES).wrapping_add(row(FAST_WALK)));
                let values = [
                    (Counter::Translations, hits.wrapping_add(misses)),
                    (Counter::IotlbHits, hits),
                    (Counter::IotlbMisses, misses),
                    (Counter::Walks, misses),
                    (Counter::BytesRead, get(HOT_READ)),
                    (Counter::BytesWritten, get(HOT_WRITTEN)),
                ];
                for (counter, v) in values {
                    for set in [DART_SET, 1 + sid] {
                        let sum = &mut sums[set * SLOTS + counter.slot()];
                        *sum = sum.wrapping_add(v);
                    }
                }
            }
        }
        for c in self.cold.iter().filter_map(|c| c.get()).chain([&self.serial]) {
            for set in 0..1 + self.streams {
                for counter in Counter::ALL {
                    let sum = &mut sums[set * SLOTS + counter.slot()];
                    *sum = sum.wrapping_add(c.load(set, counter));
                }
            }
        }
        let mut sets = sums.chunks_exact(SLOTS).map(|chunk| {
            let mut set = CounterSet::default();
            set.slots.copy_from_slice(chunk);
            set
        });
        let dart = sets.next().unwrap_or_default();
        StatsSnapshot { dart, streams: sets.collect() }
    }

    /// Bytes of counter storage (excluding this header).
    fn bytes(&self) -> usize {
        std::mem::size_of_val::<[Block]>(&self.blocks)
            + std::mem::size_of_val::<[Block]>(&self.hot)
            + std::mem::size_of_val::<[FastRow; crate::sync::slot::EXCLUSIVE]>(&self.fast)
            + self
                .cold
                .iter()
                .filter_map(|c| c.get())
                .chain([&self.serial])
                .map(|c| std::mem::size_of_val::<[Block]>(&c.blocks))
                .sum::<usize>()
    }

    /// First slot of this thread's stripe.
    #[inline]
    fn stripe_base(&self) -> usize {
        stripe_index() * self.stripe_len
    }

    /// The per-stream set for `stream`, if it has one.
    #[inline]
    fn stream_set(&self, stream: Option<u32>) -> Option<usize> {
        let sid = usize::try_from(stream?).ok()?;
        (sid < self.streams).then_some(1 + sid)
    }

    /// Adds `n` to `slot` of the DART set and of `set`, if any, in the stripe
    /// starting at `base`.
    #[inline]
    fn bump(&self, base: usize, set: Option<usize>, slot: usize, n: u64) {
        self.bump_one(slot_index(base, DART_SET, slot), n);
        if let Some(set) = set {
            self.bump_one(slot_index(base, set, slot), n);
        }
    }

    /// Adds `n` to flat slot `index` (always in range by construction; an
    /// out-of-range index is ignored rather than panicking).
    #[inline]
    fn bump_one(&self, index: usize, n: u64) {
        if let Some(block) = self.blocks.get(index / LANES) {
            block[index % LANES].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Reads flat slot `index` (0 when out of range).
    fn load(&self, index: usize) -> u64 {
        self.blocks.get(index / LANES).map_or(0, |block| block[index % LANES].load(Ordering::Relaxed))
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("streams", &self.streams)
            .field("stripes", &STRIPES)
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

/// The values of every slot of one set (the DART or one stream).
#[derive(Clone, PartialEq, Eq)]
pub struct CounterSet {
    /// One value per slot, in slot order (see [`CounterSet::iter`]).
    slots: [u64; SLOTS],
}

impl Default for CounterSet {
    fn default() -> Self {
        CounterSet { slots: [0; SLOTS] }
    }
}

impl CounterSet {
    /// The value of `name` (`"translations"`, `"faults.no-pte"`,
    /// `"rpc_refused.not-granted"`, …), or `None` for an unknown name.
    pub fn get(&self, name: &str) -> Option<u64> {
        let slot = SLOT_NAMES.iter().position(|n| *n == name)?;
        self.slots.get(slot).copied()
    }

    /// Every name with its value, zeros included, in a stable order: the 13
    /// basic counters (as [`Counter::ALL`]), then `faults.CODE` (as
    /// [`FAULT_CODES`]), then `rpc_refused.KIND` (as [`REFUSAL_KINDS`]).
    pub fn iter(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        SLOT_NAMES.iter().zip(self.slots.iter()).map(|(name, value)| ((*name).to_owned(), *value))
    }

    /// `iotlb_hits / (iotlb_hits + iotlb_misses)`, or `None` when both are
    /// zero.
    pub fn hit_rate(&self) -> Option<f64> {
        let hits = self.slots[Counter::IotlbHits.slot()];
        let misses = self.slots[Counter::IotlbMisses.slot()];
        if hits == 0 && misses == 0 {
            return None;
        }
        Some(hits as f64 / (hits as f64 + misses as f64))
    }
}

/// Lists the non-zero slots by name (zeros are omitted for readability).
impl fmt::Debug for CounterSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(SLOT_NAMES.iter().zip(self.slots.iter()).filter(|(_, value)| **value != 0)).finish()
    }
}

/// A point-in-time sum of a [`Stats`]: the DART-wide set and one set per
/// stream (index = sid).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// DART-wide counters.
    pub dart: CounterSet,
    /// Per-stream counters, indexed by sid.
    pub streams: Vec<CounterSet>,
}

impl StatsSnapshot {
    /// The value at `path`: `"NAME"` for the DART (e.g. `"maps"`,
    /// `"faults.no-pte"`), `"sSID.NAME"` for a stream (e.g.
    /// `"s3.faults.no-pte"`). `None` for unknown names or sids and malformed
    /// paths.
    pub fn get(&self, path: &str) -> Option<u64> {
        // No DART-wide name's first component starts with `s`, so such a
        // head always names a stream.
        if let Some((head, name)) = path.split_once('.') {
            if let Some(digits) = head.strip_prefix('s') {
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let sid: usize = digits.parse().ok()?;
                return self.streams.get(sid)?.get(name);
            }
        }
        self.dart.get(path)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Asserts that `name` is `want` in `set` and every other slot is zero.
    fn only(set: &CounterSet, want: &[(&str, u64)]) {
        for (name, value) in set.iter() {
            let expected = want.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v);
            assert_eq!(value, expected, "slot {name} in {set:?}");
        }
    }

    #[test]
    fn names_and_tables() {
        assert_eq!(SLOT_NAMES.len(), 37);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.slot(), i);
        }
        let names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "translations",
                "iotlb_hits",
                "iotlb_misses",
                "walks",
                "faults",
                "maps",
                "unmaps",
                "invalidations",
                "bytes_read",
                "bytes_written",
                "rpc_requests",
                "rpc_refused",
                "violations",
            ]
        );
        assert_eq!(FAULT_CODES[0], "no-ttbr");
        assert_eq!(FAULT_CODES[8], "forbidden-frame");
        assert_eq!(REFUSAL_KINDS[0], "forbidden-type");
        assert_eq!(REFUSAL_KINDS[OTHER_KIND], "other");
        assert_eq!(SLOT_NAMES[fault_slot(3)], "faults.no-pte");
        assert_eq!(SLOT_NAMES[refusal_slot(7)], "rpc_refused.not-granted");
    }

    #[test]
    fn basic_counters_route_to_dart_and_stream_only() {
        for (i, &c) in Counter::ALL.iter().enumerate() {
            let stats = Stats::new(4);
            let n = 10 + i as u64;
            stats.add(Some(2), c, n);
            let snap = stats.snapshot();
            assert_eq!(snap.streams.len(), 4);
            only(&snap.dart, &[(c.name(), n)]);
            for (sid, set) in snap.streams.iter().enumerate() {
                if sid == 2 {
                    only(set, &[(c.name(), n)]);
                } else {
                    only(set, &[]);
                }
            }
            assert_eq!(snap.get(c.name()), Some(n));
            assert_eq!(snap.get(&format!("s2.{}", c.name())), Some(n));
            assert_eq!(snap.get(&format!("s1.{}", c.name())), Some(0));

            // No stream: DART-wide only.
            let stats = Stats::new(4);
            stats.add(None, c, n);
            let snap = stats.snapshot();
            only(&snap.dart, &[(c.name(), n)]);
            snap.streams.iter().for_each(|s| only(s, &[]));
        }
    }

    #[test]
    fn out_of_range_sid_counts_dart_wide_only() {
        for streams in [0, 1, 4] {
            let stats = Stats::new(streams);
            stats.add(Some(streams as u32), Counter::Maps, 3);
            stats.add(Some(u32::MAX), Counter::Maps, 4);
            stats.fault(Some(999), "no-pte");
            stats.rpc_refused(Some(999), "halted");
            let snap = stats.snapshot();
            assert_eq!(snap.streams.len(), streams);
            only(
                &snap.dart,
                &[("maps", 7), ("faults", 1), ("faults.no-pte", 1), ("rpc_refused", 1), ("rpc_refused.halted", 1)],
            );
            snap.streams.iter().for_each(|s| only(s, &[]));
        }
    }

    #[test]
    fn fault_codes_route() {
        for (i, code) in FAULT_CODES.iter().enumerate() {
            let stats = Stats::new(3);
            stats.fault(Some(1), code);
            let snap = stats.snapshot();
            let name = format!("faults.{code}");
            assert_eq!(SLOT_NAMES[fault_slot(i)], name);
            let want = [("faults", 1), (name.as_str(), 1)];
            only(&snap.dart, &want);
            only(&snap.streams[1], &want);
            only(&snap.streams[0], &[]);
            only(&snap.streams[2], &[]);
            assert_eq!(snap.get(&format!("s1.{name}")), Some(1));
        }
    }

    #[test]
    fn unknown_fault_code_counts_in_faults_only() {
        let stats = Stats::new(2);
        stats.fault(Some(0), "bogus");
        stats.fault(None, "");
        let snap = stats.snapshot();
        only(&snap.dart, &[("faults", 2)]);
        only(&snap.streams[0], &[("faults", 1)]);
        only(&snap.streams[1], &[]);
        assert_eq!(snap.get("faults.bogus"), None);
    }

    #[test]
    fn refusal_kinds_route() {
        for (i, kind) in REFUSAL_KINDS.iter().enumerate() {
            let stats = Stats::new(3);
            stats.rpc_refused(Some(0), kind);
            let snap = stats.snapshot();
            let name = format!("rpc_refused.{kind}");
            assert_eq!(SLOT_NAMES[refusal_slot(i)], name);
            let want = [("rpc_refused", 1), (name.as_str(), 1)];
            only(&snap.dart, &want);
            only(&snap.streams[0], &want);
            only(&snap.streams[1], &[]);
            only(&snap.streams[2], &[]);
        }
    }

    #[test]
    fn unknown_refusal_kind_counts_as_other() {
        let stats = Stats::new(1);
        stats.rpc_refused(Some(0), "what");
        stats.rpc_refused(None, "");
        let snap = stats.snapshot();
        only(&snap.dart, &[("rpc_refused", 2), ("rpc_refused.other", 2)]);
        only(&snap.streams[0], &[("rpc_refused", 1), ("rpc_refused.other", 1)]);
    }

    #[test]
    fn snapshot_get_paths() {
        let stats = Stats::new(4);
        stats.add(None, Counter::Maps, 5);
        stats.add(Some(3), Counter::Unmaps, 2);
        stats.fault(Some(3), "no-pte");
        let snap = stats.snapshot();
        assert_eq!(snap.get("maps"), Some(5));
        assert_eq!(snap.get("unmaps"), Some(2));
        assert_eq!(snap.get("s3.unmaps"), Some(2));
        assert_eq!(snap.get("s3.faults.no-pte"), Some(1));
        assert_eq!(snap.get("faults.no-pte"), Some(1));
        assert_eq!(snap.get("s0.maps"), Some(0));
        assert_eq!(snap.get("s03.unmaps"), Some(2));
        for bad in [
            "",
            "s",
            "s.maps",
            "s999.maps",
            "s4.maps",
            "sX.maps",
            "s+3.maps",
            "s-1.maps",
            "s99999999999999999999999.maps",
            "nope",
            "s1.nope",
            "s1.",
            "s1",
            "faults.",
            "faults.nope",
            "rpc_refused.nope",
            "Maps",
            " maps",
        ] {
            assert_eq!(snap.get(bad), None, "path {bad:?}");
        }
        assert_eq!(StatsSnapshot::default().get("maps"), Some(0));
        assert_eq!(StatsSnapshot::default().get("s0.maps"), None);
    }

    #[test]
    fn iter_order_and_completeness() {
        let set = Stats::new(0).snapshot().dart;
        let names: Vec<String> = set.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 37);
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 37);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(names[i], c.name());
        }
        for (i, code) in FAULT_CODES.iter().enumerate() {
            assert_eq!(names[13 + i], format!("faults.{code}"));
        }
        for (i, kind) in REFUSAL_KINDS.iter().enumerate() {
            assert_eq!(names[22 + i], format!("rpc_refused.{kind}"));
        }
        assert!(set.iter().all(|(_, v)| v == 0));
        for name in &names {
            assert_eq!(set.get(name), Some(0));
        }
        assert_eq!(set, CounterSet::default());
    }

    /// The DMA path stores hits and misses only; `translations` and
    /// `walks` are derived. Slot 3 stands for a thread with a slot number
    /// (hot stripe and fast-path row), `None` and lane 64 for one without.
    #[test]
    fn dma_path_counters_derive_translations_and_walks() {
        let stats = Stats::new(4);
        stats.count_hit(3, 1);
        stats.count_hit(3, 1);
        stats.count_walk(3, 1);
        stats.count_translation_in(Some(3), 1, 2, 3);
        stats.count_hit(crate::sync::slot::EXCLUSIVE, 2);
        stats.count_walk(crate::sync::slot::EXCLUSIVE, 2);
        stats.count_translation_in(None, 2, 1, 1);
        let snap = stats.snapshot();
        let get = |p: &str| snap.get(p).unwrap();
        let names = ["translations", "iotlb_hits", "iotlb_misses", "walks"];
        assert_eq!(names.map(|n| get(&format!("s1.{n}"))), [8, 4, 4, 4]);
        assert_eq!(names.map(|n| get(&format!("s2.{n}"))), [4, 2, 2, 2]);
        assert_eq!(names.map(|n| get(&format!("s0.{n}"))), [0, 0, 0, 0]);
        assert_eq!(names.map(get), [12, 6, 6, 6]);
    }

    #[test]
    fn hit_rate() {
        let stats = Stats::new(2);
        assert_eq!(stats.snapshot().dart.hit_rate(), None);
        stats.add(Some(0), Counter::IotlbHits, 3);
        stats.add(Some(1), Counter::IotlbMisses, 1);
        let snap = stats.snapshot();
        assert_eq!(snap.dart.hit_rate(), Some(0.75));
        assert_eq!(snap.streams[0].hit_rate(), Some(1.0));
        assert_eq!(snap.streams[1].hit_rate(), Some(0.0));
        let mut big = CounterSet::default();
        big.slots[Counter::IotlbHits.slot()] = u64::MAX;
        big.slots[Counter::IotlbMisses.slot()] = u64::MAX;
        assert_eq!(big.hit_rate(), Some(0.5));
    }

    #[test]
    fn stream_count_and_memory() {
        assert_eq!(Stats::new(0).streams(), 0);
        assert_eq!(Stats::new(256).streams(), 256);
        assert_eq!(Stats::new(MAX_STREAMS).streams(), MAX_STREAMS);
        let clamped = Stats::new(MAX_STREAMS + 1);
        assert_eq!(clamped.streams(), MAX_STREAMS);
        assert_eq!(clamped.snapshot().streams.len(), MAX_STREAMS);
        clamped.add(Some(4095), Counter::Walks, 1);
        clamped.add(Some(4096), Counter::Walks, 1);
        let snap = clamped.snapshot();
        assert_eq!(snap.get("walks"), Some(2));
        assert_eq!(snap.get("s4095.walks"), Some(1));
        assert_eq!(snap.get("s4096.walks"), None);
        // The figures documented in the module docs.
        if std::mem::size_of::<Block>() == 128 {
            assert_eq!(Stats::new(0).bytes(), 265_344);
            assert_eq!(Stats::new(16).bytes(), 337_664);
            assert_eq!(Stats::new(256).bytes(), 1_422_464);
            assert_eq!(Stats::new(4096).bytes(), 18_779_264);
        }
        assert!(format!("{:?}", Stats::new(16)).contains("streams: 16"));
    }

    #[test]
    fn add_counts_in_a_cold_stripe_per_thread() {
        // Each slot number that adds gets one cold stripe: (1 + 16) * 13
        // slots = 14 blocks of 128 bytes. The threads stay alive together,
        // so they hold distinct slot numbers.
        let stats = Stats::new(16);
        let together = std::sync::Barrier::new(3);
        let base = stats.bytes();
        let per_thread = if std::mem::size_of::<Block>() == 128 { 1_792 } else { 14 * std::mem::size_of::<Block>() };
        let slotted = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3u32)
                .map(|t| {
                    let (stats, together) = (&stats, &together);
                    s.spawn(move || {
                        together.wait();
                        for _ in 0..1000 {
                            stats.add(Some(t), Counter::Maps, 2);
                            stats.add(None, Counter::RpcRequests, 1);
                        }
                        stats.fault(Some(t), "no-pte");
                        together.wait();
                        crate::sync::slot::current().is_some()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).filter(|&slotted| slotted).count()
        });
        assert_eq!(stats.bytes(), base + slotted * per_thread);
        let snap = stats.snapshot();
        only(&snap.dart, &[("maps", 6000), ("rpc_requests", 3000), ("faults", 3), ("faults.no-pte", 3)]);
        for (sid, set) in snap.streams.iter().enumerate() {
            if sid < 3 {
                only(set, &[("maps", 2000), ("faults", 1), ("faults.no-pte", 1)]);
            } else {
                only(set, &[]);
            }
        }
        // The 256-stream figure of the module docs.
        let big = Stats::new(256);
        let before = big.bytes();
        big.add(Some(255), Counter::Unmaps, 1);
        if crate::sync::slot::current().is_some() && std::mem::size_of::<Block>() == 128 {
            assert_eq!(big.bytes(), before + 26_752);
        }
        assert_eq!(big.snapshot().get("s255.unmaps"), Some(1));
    }

    #[test]
    fn stripe_is_stable_per_thread() {
        let a = stripe_index();
        assert!(a < STRIPES);
        assert_eq!(stripe_index(), a);
    }

    #[test]
    fn wrapping_does_not_panic() {
        let stats = Stats::new(1);
        stats.add(Some(0), Counter::BytesRead, u64::MAX);
        stats.add(Some(0), Counter::BytesRead, 2);
        assert_eq!(stats.snapshot().get("s0.bytes_read"), Some(1));
    }

    #[test]
    fn debug_lists_non_zero_slots() {
        let stats = Stats::new(1);
        stats.fault(Some(0), "read");
        let text = format!("{:?}", stats.snapshot().dart);
        assert_eq!(text, r#"{"faults": 1, "faults.read": 1}"#);
    }

    #[test]
    fn threaded_increments_are_exact_after_join() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 250_000;
        let stats = Stats::new(8);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..PER_THREAD {
                        stats.add(Some(5), Counter::Translations, 1);
                    }
                });
            }
        });
        let snap = stats.snapshot();
        assert_eq!(snap.get("translations"), Some(1_000_000));
        assert_eq!(snap.get("s5.translations"), Some(1_000_000));
        only(&snap.dart, &[("translations", 1_000_000)]);
        only(&snap.streams[5], &[("translations", 1_000_000)]);
        for (sid, set) in snap.streams.iter().enumerate() {
            if sid != 5 {
                only(set, &[]);
            }
        }
    }
}
