//! The walk cache: which leaf table a stream's IOVA block walks to, so that
//! an IOTLB miss reads one PTE (the leaf) instead of one per level.
//!
//! Hardware walkers keep such a cache beside the IOTLB; here it is a pure
//! accelerator, invisible in every answer: a walk through it returns what
//! a full walk from the TTBR would have returned at some instant of the
//! DMA's in-flight section, and both are counted as one walk.
//!
//! # Protocol
//!
//! *What an entry says.* `(key, gen, table)`: "while the walk generation
//! was `gen`, the block `key` (a stream and the IOVA bits above the leaf
//! table's index) walked to the leaf table `table`". The cache does not
//! read `table`; the walker keeps there where the table lies in host
//! memory (`phys::HostTable`, checked once when the entry is filled), so
//! that a walk through the entry loads the leaf PTE with no region lookup.
//! The walk generation ([`WalkCache::gen`]) is one DART-wide counter.
//!
//! *Who writes the generation.* Only the mapper, under the DART's mapper
//! lock, with a `SeqCst` RMW ([`WalkCache::invalidate`]), right after every
//! change that can make an entry wrong: a table descriptor cleared (a table
//! unlinked on its way to being freed), a TTBR written, a stream's
//! configuration changed (the geometry). Installing a table where there was
//! none needs no bump: no entry can name a block that did not walk.
//!
//! *Who writes entries.* Only the thread that owns the row: one row per
//! exclusive slot number (`crate::sync::slot`), used by the thread holding that
//! number, so an entry has one writer and one reader and is never torn by
//! a concurrent fill (a number passes to a new thread through the slot free
//! list's mutex, which orders the old owner's stores before the new owner's
//! loads). Threads without a slot walk in full. The row's owner stores an
//! entry after a full walk that found the leaf table, tagged with the
//! generation it loaded *before* that walk.
//!
//! *Why a live entry can never name a freed or changed table.* A table is
//! freed only after it was unlinked, the generation bumped, and then
//! `InFlight::synchronize` returned (strict unmap; deferred unmap leaves the
//! table pending until a flush, which synchronizes). The DMA loads the
//! generation after entering the in-flight tracker, with `SeqCst` (as it
//! loads the IOTLB generations, for the same reason: see
//! `StreamState::gen`). Either it entered before the synchronize's scan,
//! and the table is not freed until it leaves; or it entered after, reads
//! the bumped generation, and so misses every entry filled before the bump,
//! and its own full walk, whose `Acquire` loads come after a `SeqCst` load
//! that read the bump, sees the cleared descriptor. An entry tagged with
//! the new generation therefore names only tables linked after the change.
//! That holds for the DMA the invalidation waits for or makes fence: the
//! readers of the IOVA regions it names (`crate::sync::inflight`, "Unfenced
//! readers"). A reader of another region may enter unfenced and miss the
//! bump, but its entries are for its own block, which lies within its
//! region, and name a leaf table nothing was unlinked from: unlinking a
//! leaf table names its region, and retiring a table above a leaf names
//! every region of the stream. TTBR and configuration changes bump the
//! generation and wait for nothing, since they free nothing; the next
//! invalidation makes every region of the changed stream fence, so no DMA
//! still walking its old tables is missed.
//!
//! *Touches.* A large DMA first touches the leaf PTE its walk would read
//! ([`WalkCache::peek`]): before entering the in-flight tracker, it
//! prefetches the PTE's line in the table its row holds for the block,
//! under any generation. A prefetch reads nothing: the entry may be dead
//! and its table freed or reused, and the DMA still enters, checks the
//! generation and walks as above. It only starts the line's miss early
//! (see `Translator::touch_leaf`).
//!
//! *What it keeps checking.* A walk through an entry still checks that the
//! leaf's frame is device-reachable, as a full walk does. It does not
//! check the leaf table's type again: the full walk that filled the entry
//! did, and the table stays a `dart-table` frame while the entry lives
//! (the DART holds it, so retyping or freeing it is an invariant breach,
//! refused or halting, and the DART releases it only after the entry is
//! dead, as above). The bounds of a walk's loads do not rest on any of
//! this (a table's host address stays inside the DART's physical memory,
//! which outlives the cache, whatever the table became), but their freedom
//! from races does: a walk loads only through live entries, whose tables
//! nothing but atomic PTE accesses touch; a touch, which may go through a
//! dead one, only prefetches.

use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// Entries per row (a power of two): blocks of one stream whose IOVA bits
/// above the leaf index differ in their low six bits never evict each
/// other. A 16 KiB-page leaf table maps 32 MiB, so 2 GiB of one stream fits.
/// A DART's cache is 64 rows of 64 entries of 24 bytes: 96 KiB.
#[cfg(not(loom))]
pub(crate) const WALK_ENTRIES: usize = 64;
/// Under loom, models use two blocks at most.
#[cfg(loom)]
pub(crate) const WALK_ENTRIES: usize = 2;

/// One cached walk; `key == 0` is empty.
#[derive(Debug)]
struct WalkEntry {
    key: AtomicU64,
    gen: AtomicU64,
    table: AtomicU64,
}

/// One slot's entries.
#[derive(Debug)]
struct WalkRow([WalkEntry; WALK_ENTRIES]);

/// A DART's walk cache: the walk generation and one row per exclusive slot.
#[derive(Debug)]
pub(crate) struct WalkCache {
    gen: CachePadded<AtomicU64>,
    rows: Box<[CachePadded<WalkRow>]>,
}

impl WalkCache {
    /// An empty cache with `rows` rows (slots `0..rows` cache, the others
    /// never do).
    pub(crate) fn new(rows: usize) -> WalkCache {
        let row = || {
            CachePadded::new(WalkRow(std::array::from_fn(|_| WalkEntry {
                key: AtomicU64::new(0),
                gen: AtomicU64::new(0),
                table: AtomicU64::new(0),
            })))
        };
        WalkCache { gen: CachePadded::new(AtomicU64::new(0)), rows: (0..rows).map(|_| row()).collect() }
    }

    /// The key of stream `sid`'s block `block` (the IOVA shifted right by
    /// the leaf table's span, below 2^40 on every geometry): never 0, and
    /// distinct for distinct pairs while `sid < 2^23` (a DART has at most
    /// 256 streams).
    #[inline(always)]
    pub(crate) fn key(sid: u32, block: u64) -> u64 {
        (u64::from(sid) << 40 | block) << 1 | 1
    }

    /// The entry `key` uses in a row.
    #[inline(always)]
    fn index(key: u64) -> usize {
        // Bits 1.. are the block; the stream moves a block to another index
        // so that two streams mapping the same IOVAs do not evict each other.
        ((key >> 1).wrapping_add((key >> 41).wrapping_mul(13)) as usize) & (WALK_ENTRIES - 1)
    }

    /// The walk generation, loaded as a DMA must (after entering the
    /// in-flight tracker, before probing or walking).
    #[inline(always)]
    pub(crate) fn gen(&self) -> u64 {
        self.gen.load(Ordering::SeqCst)
    }

    /// The leaf table (as the walker keeps it) slot `lane`'s row holds for
    /// `key` under `gen`, if any.
    /// The caller owns `lane` (its DMA guard's lane).
    #[inline(always)]
    pub(crate) fn lookup(&self, lane: usize, key: u64, gen: u64) -> Option<u64> {
        let e = self.entry(lane, key)?;
        (e.gen.load(Ordering::Relaxed) == gen).then(|| e.table.load(Ordering::Relaxed))
    }

    /// The leaf table slot `lane`'s row holds for `key` under whatever
    /// generation: possibly dead, so only for a prefetch, which reads
    /// nothing (a touch: see "Touches" in the module docs). The caller owns
    /// `lane`.
    #[inline(always)]
    pub(crate) fn peek(&self, lane: usize, key: u64) -> Option<u64> {
        Some(self.entry(lane, key)?.table.load(Ordering::Relaxed))
    }

    /// Slot `lane`'s entry for `key`, if it holds `key` (under any
    /// generation). The caller owns `lane`: only the row's owner writes
    /// it, so `Relaxed` loads suffice (see the protocol).
    #[inline(always)]
    fn entry(&self, lane: usize, key: u64) -> Option<&WalkEntry> {
        let e = &self.rows.get(lane)?.0[Self::index(key)];
        (e.key.load(Ordering::Relaxed) == key).then_some(e)
    }

    /// Records in slot `lane`'s row that `key` walked to the leaf table at
    /// `table` under `gen` (loaded before the walk). The caller owns `lane`;
    /// a lane without a row records nothing.
    #[inline(always)]
    pub(crate) fn fill(&self, lane: usize, key: u64, gen: u64, table: u64) {
        if let Some(row) = self.rows.get(lane) {
            let e = &row.0[Self::index(key)];
            e.key.store(key, Ordering::Relaxed);
            e.gen.store(gen, Ordering::Relaxed);
            e.table.store(table, Ordering::Relaxed);
        }
    }

    /// Kills every entry: bumps the walk generation. The caller holds the
    /// DART's mapper lock (`_held`), has just changed what a walk reads
    /// above the leaf (a descriptor cleared, a TTBR, a configuration), and
    /// frees nothing it unlinked before `InFlight::synchronize` returns.
    pub(crate) fn invalidate(&self, _held: &impl crate::sync::WriterLock) {
        self.gen.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::TestWriterLock;

    /// Each transition, then every entry it leaves visible.
    #[test]
    fn entries_live_until_the_generation_moves_and_only_in_their_row() {
        let cache = WalkCache::new(2);
        let held = TestWriterLock;
        let (a, b) = (WalkCache::key(1, 5), WalkCache::key(2, 5));
        let g = cache.gen();
        assert_eq!(g, 0);
        // Empty: nothing, in any row or in a lane without one.
        assert_eq!((cache.lookup(0, a, g), cache.lookup(1, a, g), cache.lookup(2, a, g)), (None, None, None));
        // A fill is visible in its row only, under its generation only.
        cache.fill(0, a, g, 0x4000);
        assert_eq!((cache.lookup(0, a, g), cache.lookup(1, a, g)), (Some(0x4000), None));
        assert_eq!(cache.lookup(0, a, g + 1), None);
        // Another stream's same block is another key (and another index).
        assert_ne!(WalkCache::index(a), WalkCache::index(b));
        assert_eq!(cache.lookup(0, b, g), None);
        cache.fill(0, b, g, 0x8000);
        assert_eq!((cache.lookup(0, a, g), cache.lookup(0, b, g)), (Some(0x4000), Some(0x8000)));
        // A lane past the rows records nothing.
        cache.fill(2, a, g, 0xc000);
        assert_eq!(cache.lookup(2, a, g), None);
        // Invalidation: the generation moves, every entry is dead.
        cache.invalidate(&held);
        let g1 = cache.gen();
        assert_eq!(g1, g + 1);
        assert_eq!((cache.lookup(0, a, g1), cache.lookup(0, b, g1)), (None, None));
        // A late fill under the old generation (a walk that raced the
        // invalidation) stays dead.
        cache.fill(1, a, g, 0x4000);
        assert_eq!(cache.lookup(1, a, g1), None);
        // Blocks WALK_ENTRIES apart share an entry: the later fill evicts.
        let far = WalkCache::key(1, 5 + WALK_ENTRIES as u64);
        assert_eq!(WalkCache::index(far), WalkCache::index(a));
        cache.fill(0, a, g1, 0x4000);
        cache.fill(0, far, g1, 0x10000);
        assert_eq!((cache.lookup(0, a, g1), cache.lookup(0, far, g1)), (None, Some(0x10000)));
    }

    /// A peek (for a touch) reads an entry whatever its generation, and
    /// only the entry of its own key in its own row.
    #[test]
    fn a_peek_reads_its_key_s_entry_under_any_generation() {
        let cache = WalkCache::new(2);
        let held = TestWriterLock;
        let (a, b) = (WalkCache::key(1, 5), WalkCache::key(2, 5));
        let g = cache.gen();
        // Empty: nothing.
        assert_eq!((cache.peek(0, a), cache.peek(1, a), cache.peek(2, a)), (None, None, None));
        // Filled: in its row, for its key only.
        cache.fill(0, a, g, 0x4000);
        assert_eq!((cache.peek(0, a), cache.peek(1, a), cache.peek(0, b)), (Some(0x4000), None, None));
        // Dead (the generation moved): no lookup finds it, a peek still does.
        cache.invalidate(&held);
        assert_eq!((cache.lookup(0, a, cache.gen()), cache.peek(0, a)), (None, Some(0x4000)));
        // Evicted by another key of its index: gone for both.
        let far = WalkCache::key(1, 5 + WALK_ENTRIES as u64);
        cache.fill(0, far, cache.gen(), 0x10000);
        assert_eq!((cache.peek(0, a), cache.peek(0, far)), (None, Some(0x10000)));
        // A lane past the rows holds nothing.
        cache.fill(2, a, cache.gen(), 0xc000);
        assert_eq!(cache.peek(2, a), None);
    }

    #[test]
    fn keys_are_never_empty_and_tell_streams_and_blocks_apart() {
        let blocks = [0u64, 1, 63, 64, (1 << 22) - 1, (1 << 40) - 1];
        let mut keys = Vec::new();
        for sid in [0u32, 1, 255, 4096] {
            for &b in &blocks {
                keys.push(WalkCache::key(sid, b));
            }
        }
        assert!(keys.iter().all(|&k| k != 0));
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "distinct (stream, block) pairs give distinct keys");
    }
}
