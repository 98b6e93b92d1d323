//! loom models of the DART's lock-free protocols, built from the real code:
//! the in-flight tracker ([`InFlight`]), the IOTLB ([`Iotlb`]), the stream
//! generation ([`StreamState`]) and the frame table's state-word CAS (a real
//! [`FrameTable`]). Only what lives in `vm-memory` memory is modelled: the
//! leaf PTE is a loom `AtomicU64` written with `Release` and read with
//! `Acquire`, exactly the orderings of `phys::store_pte`/`phys::load_pte`.
//!
//! Each model asserts the safety property, not only the absence of a crash:
//!
//! - [`strict_unmap_vs_inflight_dma`]: a DMA that entered the tracker and
//!   translated through a PTE never "copies" (reads the frame it reached)
//!   after the unmapper released the frame's DART count, freed it and
//!   retyped it to `kernel-restricted`; and after `unmap` returns, no new DMA
//!   reaches the frame (IOTLB or walk; held slices are [`crate::hold`]'s).
//!   Also with both threads on exclusive slots (the tracker's section
//!   words, [`strict_unmap_vs_inflight_dma_on_exclusive_slots`]) and with
//!   nested sections closed out of order ([`strict_unmap_vs_nested_dma_sections`]).
//! - [`two_strict_unmaps_vs_two_dmas`]: the same with two of each, so the
//!   tracker's phase flips (shared counters) or the new outer section
//!   (exclusive slot) of one `synchronize` are live during the next.
//! - [`iotlb_fill_races_invalidate`]: a walk that read the old PTE and fills
//!   the IOTLB late can never be hit under the new generation.
//! - [`table_retire_vs_cached_walks`]: a DMA thread walks twice through its
//!   walk-cache row ([`WalkCache`]) while a strict unmap unlinks the leaf
//!   table, bumps the walk generation, synchronizes and frees the table: no
//!   walk reads the table after it was freed, and none reaches it after
//!   the unmap returned. Without the bump the model fails
//!   ([`table_retire_without_walk_cache_bump_is_caught`]).
//! - [`slice_hold_vs_strict_unmap_and_free`]: a device that takes a slice
//!   hold inside its translation's section and reads through the slice
//!   after the section closed never reads a frame after its unmap released
//!   it; the kernel's `free` meanwhile is refused (`frame-busy`), never
//!   waits. Taking the hold after the section closes is caught
//!   ([`slice_hold_after_the_section_is_caught`]).
//! - [`monitor_clear_vs_inflight_dma`]: a driver clears a leaf it wrote
//!   through the monitor (`crate::mapper::monitor`, M6: the PTE stored
//!   invalid, the frame's DART count moved to "pending invalidation", a
//!   `free` refused) and flushes (every generation of the stream bumped,
//!   the in-flight wait, the pending count released) while DMAs translate
//!   through the IOTLB or the PTE: no DMA copies from the frame after its
//!   count was released, a stale IOTLB hit between the clear and the flush
//!   reaches a still-counted frame, and after the flush no DMA reaches it.
//!   A clear that releases the count at once is caught
//!   ([`monitor_clear_releasing_before_the_flush_is_caught`]).
//! - [`monitor_unlink_and_release_vs_cached_walks`]: a driver clears the
//!   descriptor linking one of its tables (walk cache invalidated, unlink
//!   pending), flushes and releases the table (M7: walk cache invalidated,
//!   full wait, hold dropped) while a DMA walks twice through its walk-cache
//!   row: no walk reads the table after its hold was dropped (also with
//!   M7's wait alone). Dropping the hold with no wait is caught
//!   ([`monitor_release_without_a_wait_is_caught`]).
//! - The test-only broken ordering (`--features loom-broken-ordering`, see
//!   [`StreamState::gen`]) and a model of unmap *without* `synchronize` are
//!   both caught (`#[should_panic]` tests).
//!
//! Run (a few seconds once built; the build takes minutes on 2 cores):
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p dart --release --lib loom_models`
//! and, for the broken-ordering check, the same with
//! `--features loom-broken-ordering`.

use crate::hold::Holds;
use crate::hw::pte::PTE_VALID;
use crate::sync::inflight::InFlight;
use crate::sync::{AtomicU64, Ordering};
use crate::translate::iotlb::Iotlb;
use crate::translate::stream::StreamState;
use crate::translate::walk_cache::WalkCache;
use frame_table::{Access, Counter, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use loom::thread;
use std::sync::Arc;

/// Stream and page every model translates.
const SID: u32 = 1;
const PAGE: u64 = 0;

/// The models' page size (16 KiB).
const PAGE_SHIFT: u32 = 14;

/// The first page of the next IOTLB generation region: unmapping it bumps
/// another generation than [`PAGE`]'s.
const OTHER_REGION_PAGE: u64 = 1 << (crate::types::GEN_REGION_SHIFT - PAGE_SHIFT);

/// The DMA path of `Dart::translate_into` on one page, with the walk reduced
/// to its last PTE load: the generation is read before the IOTLB probe and
/// the walk, and the walk's result is inserted under that generation.
fn translate(st: &StreamState, iotlb: &Iotlb, pte: &AtomicU64) -> Option<u64> {
    translate_page(st, iotlb, pte, PAGE)
}

/// [`translate`] for IOVA page `page`.
fn translate_page(st: &StreamState, iotlb: &Iotlb, pte: &AtomicU64, page: u64) -> Option<u64> {
    let gen = st.gen(page << PAGE_SHIFT);
    if let Some(v) = iotlb.lookup(SID, page, gen) {
        return Some(v);
    }
    let p = pte.load(Ordering::Acquire);
    if p & PTE_VALID == 0 {
        return None;
    }
    iotlb.insert(SID, page, gen, p);
    Some(p)
}

/// The DMA's copy in the unmap and monitor-clear models: the frame the
/// leaf PTE `p` reaches must still be the mapped `user-data` frame, its
/// one DART count not released (live, or moved to "pending invalidation"
/// by a monitor clear, M6 of `crate::mapper::monitor`).
fn assert_copy_reaches_mapped_frame(frames: &FrameTable, p: u64) {
    let s = frames.state(frames.frame_of(p & !PTE_VALID).unwrap()).unwrap();
    assert!(
        s.ty() == FrameType::UserData && s.count(Counter::Dart) + s.count(Counter::PendingInvalidation) == 1,
        "DMA copied from a frame after its unmap released it: {s:?}"
    );
}

/// The in-flight slots of the models' DMA thread and unmapper thread: both
/// on exclusive slots (section words), or both on the shared counters.
const EXCLUSIVE_SLOTS: (Option<usize>, Option<usize>) = (Some(0), Some(1));
const SHARED_COUNTERS: (Option<usize>, Option<usize>) = (None, None);

/// One strict unmap racing one DMA in flight. `synchronize` says whether
/// the unmapper waits for DMA in flight (the real protocol) or not (the
/// known gap this model must catch); `(dma_slot, unmapper_slot)` which
/// in-flight slots the two threads enter with. With `nested`, the DMA
/// thread opens a section, opens a second one in which it translates,
/// closes the first, and only then copies: the tracker must wait for the
/// copy although a section closed after the writer looked.
fn strict_unmap_model(synchronize: bool, (dma_slot, unmapper_slot): (Option<usize>, Option<usize>), nested: bool) {
    loom::model(move || {
        let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(4 << 14)).unwrap());
        let f = frames.alloc(FrameType::UserData, 1).unwrap()[0];
        frames.acquire(f, Access::Dart, Perm::RW).unwrap();
        let pa = frames.pa_of(f).unwrap();
        let pte = Arc::new(AtomicU64::new(pa | PTE_VALID));
        let st = Arc::new(StreamState::new(false));
        let iotlb = Arc::new(Iotlb::new(1));
        let inflight = Arc::new(InFlight::new());

        let dma = {
            let (frames, pte, st, iotlb, inflight) =
                (frames.clone(), pte.clone(), st.clone(), iotlb.clone(), inflight.clone());
            thread::spawn(move || {
                let outer = nested.then(|| inflight.enter_as(dma_slot, SID, crate::sync::inflight::ALL_REGIONS));
                let _guard = inflight.enter_as(dma_slot, SID, crate::sync::inflight::ALL_REGIONS);
                let translated = translate(&st, &iotlb, &pte);
                if let Some(outer) = outer {
                    drop(outer);
                    // The copy takes a while: let the unmapper run between
                    // the close and the copy without spending a preemption
                    // (within the preemption bound, loom finds a tracker
                    // that trusts a falling depth only with this yield).
                    thread::yield_now();
                }
                if let Some(p) = translated {
                    assert_copy_reaches_mapped_frame(&frames, p);
                }
            })
        };

        // Strict unmap: clear the PTE, bump the generation, wait for DMA in
        // flight, then release the DART count; then the kernel frees the
        // frame and reuses it as kernel-restricted.
        pte.store(0, Ordering::Release);
        st.bump_range_before_synchronize(PAGE << PAGE_SHIFT, 1 << PAGE_SHIFT);
        if synchronize {
            inflight.synchronize();
        }
        frames.release(f, Counter::Dart).unwrap();
        frames.free(f).unwrap();
        frames.retype(f, FrameType::KernelRestricted).unwrap();

        // After unmap returned: a new DMA reaches nothing.
        {
            let _guard = inflight.enter_as(unmapper_slot, SID, crate::sync::inflight::ALL_REGIONS);
            assert_eq!(translate(&st, &iotlb, &pte), None, "a DMA after unmap still translated");
        }
        dma.join().unwrap();
        let _guard = inflight.enter_as(unmapper_slot, SID, crate::sync::inflight::ALL_REGIONS);
        assert_eq!(translate(&st, &iotlb, &pte), None, "a DMA after unmap still translated");
    });
}

/// The real protocol: the DMA never observes the frame after it was freed
/// and retyped, and nothing translates after unmap returns.
#[test]
fn strict_unmap_vs_inflight_dma() {
    strict_unmap_model(true, SHARED_COUNTERS, false);
}

/// The same with both threads on exclusive slots (section words).
#[test]
fn strict_unmap_vs_inflight_dma_on_exclusive_slots() {
    strict_unmap_model(true, EXCLUSIVE_SLOTS, false);
}

/// Exclusive slots, and the DMA thread nests two sections and closes the
/// outer one between its translation and its copy.
#[test]
fn strict_unmap_vs_nested_dma_sections() {
    strict_unmap_model(true, EXCLUSIVE_SLOTS, true);
}

/// The known gap of `dart/tests/unmap_race.rs` (removing only the
/// `synchronize` of strict unmap went unnoticed in 100k stress rounds):
/// this model finds the interleaving.
#[test]
#[should_panic(expected = "DMA copied from a frame after its unmap released it")]
fn strict_unmap_without_synchronize_is_caught() {
    strict_unmap_model(false, EXCLUSIVE_SLOTS, false);
}

/// Two DMAs in a row race two strict unmaps in a row (of two pages, two
/// frames, in two IOTLB generation regions, so each unmap bumps only its
/// own page's generation): on the shared counters the phase flips from the
/// first `synchronize` are live when the second DMA enters and the second
/// unmap synchronizes; on an exclusive slot the second DMA opens a new
/// outer section while the first unmap may still be waiting on the first.
/// Neither DMA ever reads a frame after its release.
#[test]
fn two_strict_unmaps_vs_two_dmas() {
    two_strict_unmaps_model(None);
    two_strict_unmaps_model(Some(0));
}

/// [`two_strict_unmaps_vs_two_dmas`] with the DMA thread on `dma_slot`.
fn two_strict_unmaps_model(dma_slot: Option<usize>) {
    loom::model(move || {
        let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(4 << 14)).unwrap());
        let fs = frames.alloc(FrameType::UserData, 2).unwrap();
        let ptes: Arc<[AtomicU64; 2]> = Arc::new([0, 1].map(|i| {
            frames.acquire(fs[i], Access::Dart, Perm::RW).unwrap();
            AtomicU64::new(frames.pa_of(fs[i]).unwrap() | PTE_VALID)
        }));
        let st = Arc::new(StreamState::new(false));
        let iotlb = Arc::new(Iotlb::new(2));
        let inflight = Arc::new(InFlight::new());
        let dma = {
            let (frames, ptes, st, iotlb, inflight) =
                (frames.clone(), ptes.clone(), st.clone(), iotlb.clone(), inflight.clone());
            thread::spawn(move || {
                for (i, page) in [(1, OTHER_REGION_PAGE), (0, PAGE)] {
                    let _guard = inflight.enter_as(dma_slot, SID, crate::sync::inflight::ALL_REGIONS);
                    if let Some(p) = translate_page(&st, &iotlb, &ptes[i], page) {
                        assert_copy_reaches_mapped_frame(&frames, p);
                    }
                }
            })
        };
        for (i, page) in [(0, PAGE), (1, OTHER_REGION_PAGE)] {
            let f = fs[i];
            ptes[i].store(0, Ordering::Release);
            st.bump_range_before_synchronize(page << PAGE_SHIFT, 1 << PAGE_SHIFT);
            inflight.synchronize();
            frames.release(f, Counter::Dart).unwrap();
            frames.free(f).unwrap();
        }
        dma.join().unwrap();
    });
}

/// Stale and fresh leaf PTEs of [`iotlb_fill_model`].
const OLD: u64 = 0x8000_0000 | PTE_VALID;
const NEW: u64 = 0x8000_4000 | PTE_VALID;

/// A walker translates while the mapper remaps the page (`Release` store of
/// the PTE) and bumps the generation with `bump`: what unmap + map or a
/// flush does ([`StreamState::bump_gen_before_synchronize`]; the
/// `synchronize` that follows does not matter to the IOTLB's freshness) or
/// a configuration change ([`StreamState::bump_gen`]).
fn iotlb_fill_model(bump: fn(&StreamState)) {
    loom::model(move || {
        let pte = Arc::new(AtomicU64::new(OLD));
        let st = Arc::new(StreamState::new(false));
        let iotlb = Arc::new(Iotlb::new(1));
        let walker = {
            let (pte, st, iotlb) = (pte.clone(), st.clone(), iotlb.clone());
            thread::spawn(move || {
                let got = translate(&st, &iotlb, &pte);
                assert!(got == Some(OLD) || got == Some(NEW), "{got:?}");
            })
        };
        pte.store(NEW, Ordering::Release);
        bump(&st);
        assert_eq!(translate(&st, &iotlb, &pte), Some(NEW), "stale IOTLB entry served after the bump");
        walker.join().unwrap();
        assert_eq!(translate(&st, &iotlb, &pte), Some(NEW), "stale IOTLB entry served after the bump");
    });
}

/// A walk that read the PTE before a remap fills the IOTLB late (after the
/// generation bump): whatever the interleaving, a translation under the
/// new generation returns the new PTE, never the stale one, both in a
/// thread racing the fill and after it.
#[cfg(not(feature = "loom-broken-ordering"))]
#[test]
fn iotlb_fill_races_invalidate() {
    iotlb_fill_model(StreamState::bump_gen_before_synchronize);
    iotlb_fill_model(|st| st.bump_range_before_synchronize(PAGE << PAGE_SHIFT, 1 << PAGE_SHIFT));
    iotlb_fill_model(StreamState::bump_gen);
}

/// The deliberately broken ordering (`loom-broken-ordering`: the stream
/// generation is loaded `Relaxed` instead of `SeqCst`): a walker can read
/// the new generation yet the old PTE, and fill the IOTLB with the stale
/// translation under the new generation. The same model finds it.
#[cfg(feature = "loom-broken-ordering")]
#[test]
#[should_panic(expected = "stale IOTLB entry served after the bump")]
fn broken_generation_ordering_is_caught() {
    iotlb_fill_model(StreamState::bump_gen_before_synchronize);
}

/// The same with the configuration changes' `SeqCst` bump.
#[cfg(feature = "loom-broken-ordering")]
#[test]
#[should_panic(expected = "stale IOTLB entry served after the bump")]
fn broken_generation_ordering_is_caught_with_seqcst_bump() {
    iotlb_fill_model(StreamState::bump_gen);
}

/// The walk-cache key of the block the walk-cache model walks.
const BLOCK: u64 = 0;

/// The walk of the walk-cache model, reduced to the levels above the leaf:
/// the walk generation, then the row of `lane`, else the table descriptor
/// (`Acquire`), whose table is cached under the generation read before.
/// Returns the leaf table's address.
fn walk_to_leaf_table(cache: &WalkCache, descriptor: &AtomicU64, lane: usize) -> Option<u64> {
    let gen = cache.gen();
    let key = WalkCache::key(SID, BLOCK);
    if let Some(table) = cache.lookup(lane, key, gen) {
        return Some(table);
    }
    let d = descriptor.load(Ordering::Acquire);
    if d & PTE_VALID == 0 {
        return None;
    }
    let table = d & !PTE_VALID;
    cache.fill(lane, key, gen, table);
    Some(table)
}

/// Reading the leaf table at `table`: it must still be the DART's
/// `dart-table` frame, its hold not released.
fn assert_table_held(frames: &FrameTable, table: u64) {
    let s = frames.state(frames.frame_of(table).unwrap()).unwrap();
    assert!(
        s.ty() == FrameType::DartTable && s.count(Counter::Dart) == 1,
        "walk read a leaf table after its unmap freed it: {s:?}"
    );
}

/// A strict unmap that empties the leaf table races two DMAs of one thread
/// (exclusive slot 0, so its walks go through row 0 of the walk cache):
/// the mapper clears the descriptor, bumps the walk generation when `bump`
/// (the real protocol), synchronizes, and releases, frees and retypes the
/// table frame. Each DMA that reaches the table reads it while it is still
/// held; after the unmap, a walk on row 0 reaches nothing.
fn table_retire_model(bump: bool) {
    table_walk_model(
        |frames, t| {
            frames.hold_table(t).unwrap();
        },
        move |descriptor, cache, inflight| {
            descriptor.store(0, Ordering::Release);
            if bump {
                cache.invalidate(&crate::sync::TestWriterLock);
            }
            inflight.synchronize();
        },
    );
}

/// The walk-cache models' frame: a leaf table `t` held by `hold`, linked by
/// a descriptor; a DMA thread walks twice through row 0 of the walk cache
/// (exclusive slot 0), checking each table it reaches is still held, while
/// this thread runs `retire` (the unlink and its waits), then drops the
/// hold, frees the frame and retypes it `kernel-restricted`; after the
/// join, a walk on row 0 reaches nothing.
fn table_walk_model(
    hold: fn(&FrameTable, frame_table::Frame),
    retire: impl Fn(&AtomicU64, &WalkCache, &InFlight) + Send + Sync + 'static,
) {
    loom::model(move || {
        let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(4 << 14)).unwrap());
        let t = frames.alloc(FrameType::DartTable, 1).unwrap()[0];
        hold(&frames, t);
        let descriptor = Arc::new(AtomicU64::new(frames.pa_of(t).unwrap() | PTE_VALID));
        let cache = Arc::new(WalkCache::new(2));
        let inflight = Arc::new(InFlight::new());

        let dma = {
            let (frames, descriptor, cache, inflight) =
                (frames.clone(), descriptor.clone(), cache.clone(), inflight.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    let guard = inflight.enter_as(Some(0), SID, crate::sync::inflight::ALL_REGIONS);
                    if let Some(table) = walk_to_leaf_table(&cache, &descriptor, guard.lane()) {
                        assert_table_held(&frames, table);
                    }
                }
            })
        };

        retire(&descriptor, &cache, &inflight);
        frames.release(t, Counter::Dart).unwrap();
        frames.free(t).unwrap();
        frames.retype(t, FrameType::KernelRestricted).unwrap();

        dma.join().unwrap();
        // Slot 0 is this thread's now (its owner exited): its row says nothing.
        let guard = inflight.enter_as(Some(0), SID, crate::sync::inflight::ALL_REGIONS);
        assert_eq!(
            walk_to_leaf_table(&cache, &descriptor, guard.lane()),
            None,
            "walk read a leaf table after its unmap freed it"
        );
    });
}

/// The real protocol: no walk through the cache outlives its table.
#[test]
fn table_retire_vs_cached_walks() {
    table_retire_model(true);
}

/// Without the walk-generation bump, a walk through the cache reads the
/// freed table.
#[test]
#[should_panic(expected = "walk read a leaf table after its unmap freed it")]
fn table_retire_without_walk_cache_bump_is_caught() {
    table_retire_model(false);
}

/// One strict unmap racing a device that takes a slice hold ([`Holds`])
/// on the frame its translation reached and reads through the slice after
/// its in-flight section closed (virtio-queue's `Reader`). The unmapper
/// releases the PTE's count, tries to `free` the frame (reject mode) and,
/// if that succeeds, recycles it as the kernel's `kernel-shared` buffer
/// (another owner a DART may reach). With `in_section` (the protocol,
/// invariant 1 of `hold.rs`) the hold is taken before the section closes;
/// without it, after: the model must find the interleaving in which the
/// unmapper's `synchronize` does not wait for the translation, the frame is
/// recycled, and the late hold succeeds on the new owner's frame.
fn slice_hold_model(in_section: bool) {
    loom::model(move || {
        let frames = Arc::new(
            FrameTable::new(FrameTableConfig::with_memory(4 << 14).on_violation(OnViolation::Reject)).unwrap(),
        );
        let f = frames.alloc(FrameType::UserData, 1).unwrap()[0];
        frames.acquire(f, Access::Dart, Perm::RW).unwrap();
        let pa = frames.pa_of(f).unwrap();
        let pte = Arc::new(AtomicU64::new(pa | PTE_VALID));
        let st = Arc::new(StreamState::new(false));
        let iotlb = Arc::new(Iotlb::new(1));
        let inflight = Arc::new(InFlight::new());
        let holds = Arc::new(Holds::new(frames.clone()));

        let device = {
            let (frames, pte, st, iotlb, inflight, holds) =
                (frames.clone(), pte.clone(), st.clone(), iotlb.clone(), inflight.clone(), holds.clone());
            thread::spawn(move || {
                let guard = inflight.enter_as(None, SID, crate::sync::inflight::ALL_REGIONS);
                let Some(p) = translate(&st, &iotlb, &pte) else {
                    return;
                };
                let frame = frames.frame_of(p & !PTE_VALID).unwrap();
                let hold = if in_section {
                    let hold = holds.take(&[frame], Perm::R);
                    drop(guard);
                    Some(hold.expect("a hold taken inside the section finds the PTE's count"))
                } else {
                    drop(guard);
                    // Refused if the frame is free by now; taken if it is
                    // still (or again) a type the DART may reach.
                    holds.take(&[frame], Perm::R).ok()
                };
                if let Some(hold) = hold {
                    // The copy out of the slice, later.
                    let s = frames.state(frame).unwrap();
                    assert!(
                        s.ty() == FrameType::UserData && s.count(Counter::Dart) >= 1,
                        "slice read a frame after its unmap released it: {s:?}"
                    );
                    drop(hold);
                }
            })
        };

        // Strict unmap, then the kernel's reuse of the frame.
        pte.store(0, Ordering::Release);
        st.bump_range_before_synchronize(PAGE << PAGE_SHIFT, 1 << PAGE_SHIFT);
        inflight.synchronize();
        frames.release(f, Counter::Dart).unwrap();
        let freed = match frames.free(f) {
            Ok(()) => true,
            Err(frame_table::Error::FrameBusy { .. }) => false,
            Err(e) => panic!("free refused for another reason: {e}"),
        };
        if freed {
            frames.retype(f, FrameType::KernelShared).unwrap();
        }
        device.join().unwrap();
        assert_eq!(holds.on(f), 0, "every hold was given back");
        if !freed {
            // Refused while held; free once the slice is gone.
            let s = frames.state(f).unwrap();
            assert_eq!((s.ty(), s.count(Counter::Dart)), (FrameType::UserData, 0));
            frames.free(f).unwrap();
        }
    });
}

/// Holds taken inside the translation's section: a slice never reads a
/// frame after its unmap released it, and a `free` while it lives is
/// refused, never waits.
#[test]
fn slice_hold_vs_strict_unmap_and_free() {
    slice_hold_model(true);
}

/// A hold taken after the section closed is caught.
#[test]
#[should_panic(expected = "slice read a frame after its unmap released it")]
fn slice_hold_after_the_section_is_caught() {
    slice_hold_model(false);
}

/// How the monitor models' driver clears a valid entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MonitorClear {
    /// The monitor (M6): the entry is stored invalid at once, what it named
    /// stays counted ("pending invalidation" / "unlink pending") until the
    /// driver's flush has bumped the stream's generations and waited for
    /// the DMA in flight; only then is it released.
    Flushed,
    /// The broken clear these models must catch: what the entry named is
    /// released at once, without a pending count, a bump or a wait.
    ReleasedAtOnce,
}

/// The streams bitmap of [`SID`] alone, as `Dart::flush(Some(SID))` hands
/// it to `Kernel::flush_streams`.
fn sid_mask() -> [u64; 4] {
    let mut mask = [0u64; 4];
    crate::types::set_stream(&mut mask, SID);
    mask
}

/// A driver clears a leaf it wrote with `Dart::write_table_entry` while a
/// device DMAs through it: the DMA thread runs `dmas` DMAs in a row (each
/// enters the tracker, translates through the IOTLB or the leaf PTE, and
/// "copies" from the frame it reached); the driver thread clears the leaf
/// as `Kernel::clear_entry` does (the PTE stored 0 with `Release`, the
/// frame's DART count moved to pending with `FrameTable::defer_dart`, M6),
/// tries to free the frame (refused: still counted), then flushes as
/// `Kernel::flush_streams` does for the pending item (`invalidate`: every
/// generation of the stream bumped, G3/G5, then `synchronize_regions` of
/// the stream, I4/I9; then the pending count released), frees the frame
/// and retypes it `kernel-restricted`. No DMA copies from the frame after
/// its count was released; after the flush, no DMA reaches it. With two
/// DMAs the second may hit the IOTLB entry the first filled after the
/// clear (the stale translation the contract allows until the flush).
///
/// [`MonitorClear::ReleasedAtOnce`] releases the DART count right after the
/// store and frees the frame, with no pending count, bump or wait: the
/// model must find the DMA that translated before the store and copies
/// after the free. (A broken clear bumps nothing either, so a stale IOTLB
/// entry could also serve after it; that check is left to the real
/// protocol, the broken run asks loom only for the copy.)
fn monitor_clear_model(clear: MonitorClear, (dma_slot, driver_slot): (Option<usize>, Option<usize>), dmas: usize) {
    loom::model(move || {
        let frames = Arc::new(
            FrameTable::new(FrameTableConfig::with_memory(4 << 14).on_violation(OnViolation::Reject)).unwrap(),
        );
        // The driver's leaf write (M4): counted, then stored.
        let f = frames.alloc(FrameType::UserData, 1).unwrap()[0];
        frames.acquire(f, Access::Dart, Perm::RW).unwrap();
        let pte = Arc::new(AtomicU64::new(frames.pa_of(f).unwrap() | PTE_VALID));
        let st = Arc::new(StreamState::new(false));
        let iotlb = Arc::new(Iotlb::new(1));
        let inflight = Arc::new(InFlight::new());

        let dma = {
            let (frames, pte, st, iotlb, inflight) =
                (frames.clone(), pte.clone(), st.clone(), iotlb.clone(), inflight.clone());
            thread::spawn(move || {
                for _ in 0..dmas {
                    let _guard = inflight.enter_as(dma_slot, SID, crate::sync::inflight::ALL_REGIONS);
                    if let Some(p) = translate(&st, &iotlb, &pte) {
                        assert_copy_reaches_mapped_frame(&frames, p);
                    }
                }
            })
        };

        // `Kernel::clear_entry` of the leaf: stored invalid at once.
        pte.store(0, Ordering::Release);
        match clear {
            MonitorClear::Flushed => {
                // (M6) The count moves to pending; the kernel cannot free
                // the frame until the flush.
                frames.defer_dart(f).unwrap();
                assert!(
                    matches!(frames.free(f), Err(frame_table::Error::FrameBusy { .. })),
                    "a cleared leaf's frame was freed before the flush"
                );
                // `Kernel::flush_streams(sid_mask())` -> `invalidate`: bump
                // every generation of the stream (G3, G5), then wait for
                // the DMA in flight on it (I4, I9); then the pending item
                // completes.
                st.bump_gen_before_synchronize();
                inflight.synchronize_regions(&sid_mask(), None);
                frames.release(f, Counter::PendingInvalidation).unwrap();
            }
            MonitorClear::ReleasedAtOnce => {
                frames.release(f, Counter::Dart).unwrap();
            }
        }
        frames.free(f).unwrap();
        frames.retype(f, FrameType::KernelRestricted).unwrap();

        if clear == MonitorClear::Flushed {
            // After the flush returned: a new DMA reaches nothing.
            {
                let _guard = inflight.enter_as(driver_slot, SID, crate::sync::inflight::ALL_REGIONS);
                assert_eq!(translate(&st, &iotlb, &pte), None, "a DMA after the flush still translated");
            }
            dma.join().unwrap();
            let _guard = inflight.enter_as(driver_slot, SID, crate::sync::inflight::ALL_REGIONS);
            assert_eq!(translate(&st, &iotlb, &pte), None, "a DMA after the flush still translated");
        } else {
            dma.join().unwrap();
        }
    });
}

/// The monitor's clear and flush (M6): a DMA in flight never copies from
/// the cleared leaf's frame after its pending count was released, and
/// nothing reaches it after the flush. On the shared counters with two
/// DMAs in a row (the second may hit the IOTLB entry the first filled),
/// and on exclusive slots with one.
#[test]
fn monitor_clear_vs_inflight_dma() {
    monitor_clear_model(MonitorClear::Flushed, SHARED_COUNTERS, 2);
    monitor_clear_model(MonitorClear::Flushed, EXCLUSIVE_SLOTS, 2);
}

/// A clear that releases the leaf's DART count at once and frees the
/// frame (no pending count, no flush) is caught: a DMA that translated
/// before the clear copies from the freed frame.
#[test]
#[should_panic(expected = "DMA copied from a frame after its unmap released it")]
fn monitor_clear_releasing_before_the_flush_is_caught() {
    monitor_clear_model(MonitorClear::ReleasedAtOnce, EXCLUSIVE_SLOTS, 1);
}

/// How the monitor model's driver retires a leaf table it linked by a
/// table descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MonitorUnlink {
    /// The monitor: the descriptor's clear (`Kernel::clear_entry`: stored
    /// invalid, walk cache invalidated, unlink pending, M6), the flush that
    /// completes the unlink (`Kernel::flush_streams`: its wait for the DMA
    /// in flight on the stream, I4), then `Dart::release_table` (M7: walk
    /// cache invalidated again, a full `synchronize`, the hold dropped).
    Flushed,
    /// The clear, then `release_table`'s steps without the flush before it
    /// (which the unlink-pending check of M7 refuses): M7's own wait
    /// suffices for a walk that read the descriptor before the clear.
    ReleaseWaitsOnly,
    /// The broken retire: the clear, then the hold dropped at once (no
    /// flush, no M7 wait). Must be caught.
    ReleasedAtOnce,
}

/// A driver clears the table descriptor linking a leaf table it built
/// (registered by its first monitor write, M1: `hold_table_sole`) and
/// releases the table, while a device DMAs twice through row 0 of the walk
/// cache (exclusive slot 0), as [`table_retire_model`] for the mapper's
/// tables; then the kernel frees the frame and retypes it
/// `kernel-restricted`. No walk reads the leaf table after its hold was
/// dropped, and after the release no walk on row 0 reaches it.
fn monitor_unlink_model(retire: MonitorUnlink) {
    table_walk_model(
        // (M1) Registered by the driver's first write: the DART's hold.
        |frames, t| assert!(frames.hold_table_sole(t).unwrap().is_some()),
        // (M5) The descriptor is the one the driver wrote in the table above.
        move |descriptor, cache, inflight| {
            // `Kernel::clear_entry` of the descriptor (M6): stored invalid at
            // once, and no walk-cache row starts a walk at the child after this.
            descriptor.store(0, Ordering::Release);
            cache.invalidate(&crate::sync::TestWriterLock);
            if retire == MonitorUnlink::Flushed {
                // `Kernel::flush_streams` of the stream: its wait (I4, I9), then
                // the pending unlink completes (bookkeeping only).
                inflight.synchronize_regions(&sid_mask(), None);
            }
            if retire != MonitorUnlink::ReleasedAtOnce {
                // `Kernel::release_table` (M7).
                cache.invalidate(&crate::sync::TestWriterLock);
                inflight.synchronize();
            }
        },
    );
}

/// The monitor's unlink, flush and release (M6, M7): no walk through the
/// walk cache outlives the driver's table; nor without the flush, by
/// `release_table`'s own wait.
#[test]
fn monitor_unlink_and_release_vs_cached_walks() {
    monitor_unlink_model(MonitorUnlink::Flushed);
    monitor_unlink_model(MonitorUnlink::ReleaseWaitsOnly);
}

/// Dropping the hold on a just-unlinked driver table without the flush or
/// M7's wait is caught: a walk that read the descriptor before the clear
/// reads the freed table.
#[test]
#[should_panic(expected = "walk read a leaf table after its unmap freed it")]
fn monitor_release_without_a_wait_is_caught() {
    monitor_unlink_model(MonitorUnlink::ReleasedAtOnce);
}
