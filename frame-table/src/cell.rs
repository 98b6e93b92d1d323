//! The lock-free protocol on one frame's state word.
//!
//! # Protocol
//!
//! Every frame has one `AtomicU64` (layout in [`crate::state`]). It is the
//! only place the frame's type and counts live, and it changes only by
//! compare-and-swap: each operation loads the word, decides from that one
//! snapshot (policy check, limit check, zero-count check) and installs the new
//! word only if the word is still the snapshot. So:
//!
//! - *map vs retype/free*: a map checks the type and takes its count in one
//!   CAS; a retype or free checks "all counts zero" and changes the type in one
//!   CAS. Whichever CAS lands first changes the word, and the other fails and
//!   re-decides on the new word: a map can never land on a type that forbids
//!   it, and a retype can never land while a count is taken.
//! - *aperture copies and bypassed DMA* take a pin (same CAS, with the policy
//!   check), copy, and drop the pin. Retype, free and claim wait (spin with
//!   backoff) while pins are held, so the type cannot change under a copy.
//! - *type changes* (allocation, retype, free) go through a *claim*: a CAS
//!   that makes the change's checks and sets the `claimed` flag, keeping the
//!   old type in the word. A claim can still be given back
//!   ([`FrameCell::cancel`], the old word again); once the holder decides the
//!   change (every frame of the call claimed), it alone updates the frame's
//!   bit in the device-reachable map ([`crate::reach`]), zero-fills the frame
//!   if it leaves `free`, and publishes the new type with a CAS that drops
//!   the claim ([`FrameCell::complete`]). A claimed frame is never retyped,
//!   freed or pinned, and takes no mapping: a map its old type forbids is
//!   refused at once (it is refused whether the change is given back or
//!   not), anything else waits until the claim is published or cancelled (a
//!   short, bounded step).
//! - *several frames in one call* (`free NAME`, `retype NAME`: R6) are
//!   changed all or nothing by [`claim_all`]:
//!   1. the frames are taken in ascending frame order;
//!   2. each is claimed (its checks and the claim in one CAS, step above);
//!   3. at the first refusal, the claims already taken are cancelled in
//!      reverse order and the call fails: no frame changed, and since a
//!      claimed word shows its old type, no other thread saw a new one;
//!   4. otherwise every frame is claimed and the change is decided: each is
//!      completed (reach bit, scrub, publish).
//!
//!   A map of frame k racing the free of frames `[0..n)` either lands
//!   before k is claimed (the free is refused at k and gives every claim
//!   back: the map is the only change) or meets the claim and waits (the
//!   free then publishes `free`, and the map is refused on it).
//!
//!   *No deadlock.* A claimer waits (step 2) only for pins and other claims
//!   on the frame it is claiming, never on one it holds; a pin holder
//!   ([`crate::FramePin`], pinned in ascending order too) waits only for
//!   claims on frames above those it pinned; an allocation's claim never
//!   waits, and a map waiting on a claim holds no claim or pin. Every wait
//!   points upwards in frame order, so no cycle of waits exists.
//!
//! Orderings: successful CASes are `AcqRel` and loads `Acquire`, so a thread
//! that observes a type also observes the memory writes (scrub, aperture
//! copy) that happened before it was published, and a pin's release
//! (`Release` on drop) orders the copy before any later retype.
//!
//! Writers: any thread. Readers: any thread. No locks.

use crate::policy::{device_reachable, policy, retype_allowed, Access, Perm};
use crate::reach::ReachMap;
use crate::state::{Counter, Counts, FrameState};
use crate::sync::{backoff, AtomicU64, Ordering};
use crate::types::FrameType;

/// Why a cell refused a transition. The table turns it into an [`crate::Error`]
/// with the frame number, or into a [`crate::Violation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The frame number is a hole.
    Hole,
    /// The type's policy forbids the access.
    Forbidden(FrameType),
    /// A limit (type or counter width) is reached.
    Limit { ty: FrameType, counter: Counter, count: u64, limit: u64 },
    /// The frame has mappings: an invariant breach for retype and free.
    Mapped { ty: FrameType, counts: Counts },
    /// R1 does not allow this transition.
    Transition { from: FrameType },
    /// A release of a zero count.
    NotMapped { ty: FrameType, counter: Counter },
}

/// What one CAS-loop step decides.
enum Step {
    /// Install this word.
    Set(FrameState),
    /// Refuse; nothing changes.
    Refuse(Refusal),
    /// A short transition (pin, claim) is in progress: back off and re-read.
    Wait,
}

/// One frame's state word and the transitions on it.
#[derive(Debug)]
pub(crate) struct FrameCell(AtomicU64);

impl FrameCell {
    pub(crate) fn new(state: FrameState) -> FrameCell {
        FrameCell(AtomicU64::new(state.raw()))
    }

    /// A snapshot of the word.
    #[inline]
    pub(crate) fn load(&self) -> FrameState {
        FrameState::from_raw(self.0.load(Ordering::Acquire))
    }

    /// The CAS loop every transition runs: decide from a snapshot, install
    /// the decision only if the snapshot is still current. Returns the new word.
    #[inline]
    fn transition(&self, mut decide: impl FnMut(FrameState) -> Step) -> Result<FrameState, Refusal> {
        let mut current = self.load();
        loop {
            match decide(current) {
                Step::Set(next) => {
                    match self.0.compare_exchange_weak(current.raw(), next.raw(), Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return Ok(next),
                        Err(seen) => current = FrameState::from_raw(seen),
                    }
                }
                Step::Refuse(r) => return Err(r),
                Step::Wait => {
                    backoff();
                    current = self.load();
                }
            }
        }
    }

    /// Takes one mapping of `access` (`CpuKernel`, `CpuUser` or `Dart`) with
    /// `perm`: policy check, limit check and count in one CAS (R3, R4).
    pub(crate) fn acquire(&self, access: Access, perm: Perm) -> Result<FrameState, Refusal> {
        let counter = match access {
            Access::CpuKernel => Counter::CpuKernel,
            Access::CpuUser => Counter::CpuUser,
            Access::Dart => Counter::Dart,
            Access::Aperture => return Err(Refusal::Forbidden(self.load().ty())),
        };
        self.transition(|s| {
            if s.hole() {
                return Step::Refuse(Refusal::Hole);
            }
            let ty = s.ty();
            let pol = policy(ty);
            if !pol.allows(access, perm) {
                return Step::Refuse(Refusal::Forbidden(ty));
            }
            if s.claimed() {
                // A type change to a type that allows the map is being
                // finished: the map lands after it.
                return Step::Wait;
            }
            let count = s.count(counter);
            let limit = if counter == Counter::CpuKernel {
                (pol.cpu_kernel_limit as u64).min(counter.max())
            } else {
                counter.max()
            };
            match s.incremented(counter) {
                Some(next) if count < limit => Step::Set(next),
                _ => Step::Refuse(Refusal::Limit { ty, counter, count, limit }),
            }
        })
    }

    /// Takes one DART count on a `dart-table` frame: the DART's own reference
    /// to one of its translation tables (no mapping policy applies: the
    /// frame is never mapped, but the DART walks it).
    pub(crate) fn hold_table(&self) -> Result<FrameState, Refusal> {
        self.hold_table_if(false)
    }

    /// [`FrameCell::hold_table`] only when the frame has no count of any
    /// kind yet (no DART holds it as a table): the claim by which one DART
    /// registers a driver-built table, so that two DARTs (or a DART and a
    /// mapper between its allocation and its hold) never share a table.
    /// A frame with counts is refused with `Mapped`.
    pub(crate) fn hold_table_sole(&self) -> Result<FrameState, Refusal> {
        self.hold_table_if(true)
    }

    /// The one transition of both holds: with `sole`, only from no count.
    fn hold_table_if(&self, sole: bool) -> Result<FrameState, Refusal> {
        self.transition(|s| {
            if s.hole() {
                return Step::Refuse(Refusal::Hole);
            }
            let ty = s.ty();
            if ty != FrameType::DartTable {
                return Step::Refuse(Refusal::Forbidden(ty));
            }
            if s.claimed() {
                return Step::Wait;
            }
            if sole && s.counts().any() {
                return Step::Refuse(Refusal::Mapped { ty, counts: s.counts() });
            }
            match s.incremented(Counter::Dart) {
                Some(next) => Step::Set(next),
                None => Step::Refuse(Refusal::Limit {
                    ty,
                    counter: Counter::Dart,
                    count: s.count(Counter::Dart),
                    limit: Counter::Dart.max(),
                }),
            }
        })
    }

    /// Drops one count of `counter`.
    pub(crate) fn release(&self, counter: Counter) -> Result<FrameState, Refusal> {
        self.transition(|s| match s.decremented(counter) {
            Some(next) => Step::Set(next),
            None => Step::Refuse(Refusal::NotMapped { ty: s.ty(), counter }),
        })
    }

    /// Moves one DART count to "pending invalidation" (a deferred unmap).
    pub(crate) fn defer(&self) -> Result<FrameState, Refusal> {
        self.transition(|s| {
            let Some(next) = s.decremented(Counter::Dart) else {
                return Step::Refuse(Refusal::NotMapped { ty: s.ty(), counter: Counter::Dart });
            };
            match next.incremented(Counter::PendingInvalidation) {
                Some(next) => Step::Set(next),
                None => Step::Refuse(Refusal::Limit {
                    ty: s.ty(),
                    counter: Counter::PendingInvalidation,
                    count: s.count(Counter::PendingInvalidation),
                    limit: Counter::PendingInvalidation.max(),
                }),
            }
        })
    }

    /// Claims a frame for a retype (R1): the transition, no-mapping and no-pin
    /// checks in one CAS that sets the claim (the word keeps the old type).
    /// Returns the type left; the caller finishes with
    /// [`FrameCell::complete`] or gives the claim back with
    /// [`FrameCell::cancel`].
    pub(crate) fn retype(&self, to: FrameType) -> Result<FrameType, Refusal> {
        let mut from = FrameType::Free;
        self.transition(|s| {
            if s.hole() {
                return Step::Refuse(Refusal::Hole);
            }
            if s.claimed() {
                return Step::Wait;
            }
            from = s.ty();
            if !retype_allowed(from, to) {
                return Step::Refuse(Refusal::Transition { from });
            }
            if s.mapped() {
                return Step::Refuse(Refusal::Mapped { ty: from, counts: s.counts() });
            }
            if s.pins() != 0 {
                return Step::Wait;
            }
            Step::Set(claimed_word(from, to))
        })?;
        Ok(from)
    }

    /// Claims a frame for a free (R2): only at zero counts, never twice. The
    /// word keeps the old type. Returns the type left; the caller finishes
    /// with [`FrameCell::complete`] to `free` or gives the claim back with
    /// [`FrameCell::cancel`].
    pub(crate) fn free(&self) -> Result<FrameType, Refusal> {
        let mut from = FrameType::Free;
        self.transition(|s| {
            if s.hole() {
                return Step::Refuse(Refusal::Hole);
            }
            if s.claimed() {
                return Step::Wait;
            }
            let ty = s.ty();
            if ty == FrameType::Free {
                return Step::Refuse(Refusal::Transition { from: ty });
            }
            if s.mapped() {
                return Step::Refuse(Refusal::Mapped { ty, counts: s.counts() });
            }
            if s.pins() != 0 {
                return Step::Wait;
            }
            from = ty;
            Step::Set(claimed_word(ty, FrameType::Free))
        })?;
        Ok(from)
    }

    /// Claims a `free`, unclaimed frame for an allocation.
    pub(crate) fn claim(&self) -> Result<FrameState, Refusal> {
        self.transition(|s| {
            if s.hole() {
                return Step::Refuse(Refusal::Hole);
            }
            if s.ty() != FrameType::Free || s.claimed() {
                return Step::Refuse(Refusal::Transition { from: s.ty() });
            }
            if s.pins() != 0 {
                return Step::Wait;
            }
            Step::Set(s.with_claimed(true))
        })
    }

    /// Finishes the type change of a frame this thread claimed, from `from` to
    /// `to` (steps 2–5 of [`crate::reach`]): clears its reach bit if `from` was
    /// device-reachable, runs `scrub` if it leaves `free`, sets the bit if `to`
    /// is reachable, and publishes `to`.
    pub(crate) fn complete(
        &self,
        from: FrameType,
        to: FrameType,
        reach: &ReachMap,
        index: usize,
        scrub: impl FnOnce(),
    ) {
        if device_reachable(from) {
            reach.set(index, false);
        }
        if from == FrameType::Free {
            scrub();
        }
        if device_reachable(to) {
            reach.set(index, true);
        }
        // Only the claimer changes a claimed word: this cannot fail.
        let _ = self.publish(to);
    }

    /// Publishes a claimed (and scrubbed) frame with its new type.
    fn publish(&self, ty: FrameType) -> Result<FrameState, Refusal> {
        self.transition(|s| {
            if !s.claimed() {
                return Step::Refuse(Refusal::Transition { from: s.ty() });
            }
            Step::Set(FrameState::of_type(ty))
        })
    }

    /// Returns a claimed frame to `free` (an allocation that could not complete).
    pub(crate) fn unclaim(&self) -> Result<FrameState, Refusal> {
        self.transition(|s| {
            if !s.claimed() {
                return Step::Refuse(Refusal::Transition { from: s.ty() });
            }
            Step::Set(FrameState::FREE)
        })
    }

    /// Gives back a claim taken by [`FrameCell::retype`] or
    /// [`FrameCell::free`] on a frame of type `from`: the word is unclaimed
    /// `from` again, as before the claim (a claimed word has no counts and
    /// no pins: every other transition waits or is refused on it).
    pub(crate) fn cancel(&self, from: FrameType) {
        // Only the claimer changes a claimed word: this cannot fail.
        let _ = self.transition(|s| {
            if !s.claimed() {
                return Step::Refuse(Refusal::Transition { from: s.ty() });
            }
            Step::Set(FrameState::of_type(from))
        });
    }

    /// Takes a pin for an aperture copy or a bypassed DART access, with the
    /// policy check of `access` and `perm` in the same CAS.
    pub(crate) fn pin(&self, access: Access, perm: Perm) -> Result<FrameState, Refusal> {
        self.transition(|s| {
            if s.hole() {
                return Step::Refuse(Refusal::Hole);
            }
            if s.claimed() {
                return Step::Wait;
            }
            let ty = s.ty();
            if !policy(ty).allows(access, perm) {
                return Step::Refuse(Refusal::Forbidden(ty));
            }
            if s.pins_maxed() {
                return Step::Wait;
            }
            Step::Set(s.with_pins(s.pins() + 1))
        })
    }

    /// Drops a pin taken by [`FrameCell::pin`].
    pub(crate) fn unpin(&self) {
        // The pin count is non-zero (we hold one), so subtracting one unit
        // cannot borrow from the fields above it.
        self.0.fetch_sub(FrameState::PIN_UNIT, Ordering::Release);
    }
}

/// The word a retype or free claim installs on a frame of type `from`
/// changing to `to`: `from`, claimed (step 2 of the multi-frame protocol).
#[cfg(not(all(loom, feature = "loom-broken-claim")))]
const fn claimed_word(from: FrameType, _to: FrameType) -> FrameState {
    FrameState::of_type(from).with_claimed(true)
}

/// The deliberately broken claim (`loom-broken-claim`, loom only): the claim
/// shows the new type at once, so a map racing a multi-frame change that is
/// then given back is refused on a type the frame never ends up with. The
/// loom model [`loom_tests::map_races_multi_frame_free`] catches it.
#[cfg(all(loom, feature = "loom-broken-claim"))]
const fn claimed_word(_from: FrameType, to: FrameType) -> FrameState {
    FrameState::of_type(to).with_claimed(true)
}

/// A multi-frame claim refused at one frame; every earlier claim has been
/// given back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClaimRefused {
    /// The position (in the caller's order) of the frame that refused.
    pub(crate) at: usize,
    /// Why.
    pub(crate) refusal: Refusal,
    /// The types of the frames before it, whose claims were cancelled.
    pub(crate) cancelled: Vec<FrameType>,
}

/// Steps 2 and 3 of the multi-frame protocol (R6): claims every cell of
/// `cells` in order with `claim` ([`FrameCell::free`] or
/// [`FrameCell::retype`]), and at the first refusal cancels the claims
/// already taken, in reverse order. On success returns each frame's old
/// type, for [`FrameCell::complete`]. The caller passes the cells in
/// ascending frame order, each once.
pub(crate) fn claim_all<'a>(
    cells: impl IntoIterator<Item = &'a FrameCell>,
    mut claim: impl FnMut(&FrameCell) -> Result<FrameType, Refusal>,
) -> Result<Vec<(&'a FrameCell, FrameType)>, ClaimRefused> {
    let mut claimed: Vec<(&FrameCell, FrameType)> = Vec::new();
    for (at, cell) in cells.into_iter().enumerate() {
        match claim(cell) {
            Ok(from) => claimed.push((cell, from)),
            Err(refusal) => {
                for &(c, from) in claimed.iter().rev() {
                    c.cancel(from);
                }
                let cancelled = claimed.iter().map(|&(_, from)| from).collect();
                return Err(ClaimRefused { at, refusal, cancelled });
            }
        }
    }
    Ok(claimed)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn claimed_frames_forbid_maps_and_pins_wait() {
        let c = FrameCell::new(FrameState::FREE);
        c.claim().unwrap();
        assert_eq!(c.acquire(Access::Dart, Perm::R), Err(Refusal::Forbidden(FrameType::Free)));
        assert_eq!(c.claim(), Err(Refusal::Transition { from: FrameType::Free }));
        let s = c.publish(FrameType::UserData).unwrap();
        assert_eq!(s, FrameState::of_type(FrameType::UserData));
        assert_eq!(c.publish(FrameType::UserData), Err(Refusal::Transition { from: FrameType::UserData }));
    }

    #[test]
    fn defer_moves_a_dart_count_to_pending() {
        let c = FrameCell::new(FrameState::of_type(FrameType::UserData));
        assert_eq!(c.defer(), Err(Refusal::NotMapped { ty: FrameType::UserData, counter: Counter::Dart }));
        c.acquire(Access::Dart, Perm::RW).unwrap();
        let s = c.defer().unwrap();
        assert_eq!(s.counts(), Counts { pending: 1, ..Counts::default() });
        assert!(s.mapped());
        assert_eq!(c.free(), Err(Refusal::Mapped { ty: FrameType::UserData, counts: s.counts() }));
        let s = c.release(Counter::PendingInvalidation).unwrap();
        assert!(!s.mapped());
        c.free().unwrap();
    }

    #[test]
    fn pins_block_nothing_but_transitions() {
        let c = FrameCell::new(FrameState::of_type(FrameType::ReadOnly));
        assert_eq!(c.pin(Access::Aperture, Perm::W), Err(Refusal::Forbidden(FrameType::ReadOnly)));
        let s = c.pin(Access::Aperture, Perm::R).unwrap();
        assert_eq!(s.pins(), 1);
        c.unpin();
        assert_eq!(c.load().pins(), 0);
        assert_eq!(c.load().ty(), FrameType::ReadOnly);
    }
}

/// loom models of the state-word protocol: every interleaving (up to the
/// preemption bound) of a map racing a retype and a free, and of an aperture
/// pin racing a retype. Each asserts the safety property itself: a frame is
/// never counted as DART-mapped while its type forbids DART access, a map
/// and a retype/free of the same frame never both succeed, and a pinned
/// frame's type never changes under the pin holder.
///
/// Run with `RUSTFLAGS="--cfg loom" cargo test -p frame-table --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::policy::device_reachable;
    use loom::sync::Arc;
    use loom::thread;

    /// The invariant every quiescent or intermediate word must satisfy.
    fn assert_consistent(s: FrameState) {
        if s.counts().dart > 0 {
            assert!(device_reachable(s.ty()), "DART count on a {:?} frame: {s:?}", s.ty());
        }
        if s.ty() == FrameType::Free {
            assert!(!s.mapped(), "free frame with mappings: {s:?}");
        }
    }

    /// A DART map (policy check + count) races a free followed by reuse as
    /// `kernel-restricted` (claim, publish: what `FrameTable::retype` does
    /// from `free`) of the same `user-data` frame. The map and the free never both succeed; a successful map
    /// leaves its count on a DART-reachable type; a free always ends with
    /// the frame `kernel-restricted` and unmapped.
    #[test]
    fn map_races_free_and_reuse() {
        loom::model(|| {
            let cell = Arc::new(FrameCell::new(FrameState::of_type(FrameType::UserData)));
            let reach = ReachMap::new(1);
            reach.set(0, true);
            let mapper = {
                let cell = cell.clone();
                thread::spawn(move || {
                    let r = cell.acquire(Access::Dart, Perm::RW);
                    if let Ok(s) = r {
                        assert_consistent(s);
                    }
                    r.is_ok()
                })
            };
            let freed = cell.free().is_ok();
            if freed {
                cell.complete(FrameType::UserData, FrameType::Free, &reach, 0, || {});
                assert_eq!(cell.retype(FrameType::KernelRestricted), Ok(FrameType::Free));
                assert!(cell.load().claimed());
                cell.complete(FrameType::Free, FrameType::KernelRestricted, &reach, 0, || {});
                assert!(!reach.get(0), "reach bit set on a kernel-restricted frame");
            }
            let mapped = mapper.join().unwrap();
            let s = cell.load();
            assert_consistent(s);
            assert!(!(mapped && freed), "map and free both succeeded: {s:?}");
            if mapped {
                assert_eq!(s.ty(), FrameType::UserData, "{s:?}");
                assert_eq!(s.counts().dart, 1, "{s:?}");
            } else {
                assert!(freed, "the map failed though the frame was never freed: {s:?}");
                assert_eq!((s.ty(), s.mapped()), (FrameType::KernelRestricted, false), "{s:?}");
            }
        });
    }

    /// An aperture pin (the policy check for a CPU copy) races a retype from
    /// `user-data` to `kernel-shared`: while the pin is held, the type the pin
    /// was taken on stays; the retype lands only after the unpin.
    #[test]
    fn pin_holds_the_type_against_retype() {
        loom::model(|| {
            let cell = Arc::new(FrameCell::new(FrameState::of_type(FrameType::UserData)));
            let copier = {
                let cell = cell.clone();
                thread::spawn(move || {
                    if let Ok(s) = cell.pin(Access::Aperture, Perm::R) {
                        let during = cell.load();
                        assert_eq!(during.ty(), s.ty(), "type changed under a pin: {s:?} -> {during:?}");
                        cell.unpin();
                    }
                })
            };
            assert_eq!(cell.retype(FrameType::KernelShared), Ok(FrameType::UserData));
            cell.complete(FrameType::UserData, FrameType::KernelShared, &ReachMap::new(1), 0, || {});
            copier.join().unwrap();
            let s = cell.load();
            assert_eq!((s.ty(), s.pins()), (FrameType::KernelShared, 0));
        });
    }

    /// Two maps race a free: the counts never get lost (both maps land, or
    /// the free lands first and neither map does, or it lands between
    /// them). The maps share one thread: a map that meets the free's claim
    /// waits for its publish, and two threads waiting on one claim let loom
    /// schedule them against each other forever (each yield hands over to
    /// the other, which costs no preemption), an unfair schedule no real
    /// scheduler keeps up. Two maps racing each other are
    /// [`two_maps_count_exactly`].
    #[test]
    fn two_maps_race_free() {
        loom::model(|| {
            let cell = Arc::new(FrameCell::new(FrameState::of_type(FrameType::UserData)));
            let maps = {
                let cell = cell.clone();
                thread::spawn(move || [0, 1].map(|_| cell.acquire(Access::Dart, Perm::R).is_ok()))
            };
            let freed = cell.free().is_ok();
            if freed {
                cell.complete(FrameType::UserData, FrameType::Free, &ReachMap::new(1), 0, || {});
            }
            let mapped = maps.join().unwrap().into_iter().filter(|&m| m).count() as u64;
            let s = cell.load();
            assert_consistent(s);
            assert_eq!(u64::from(s.counts().dart), mapped, "lost count: {s:?}");
            assert!(!(freed && mapped > 0), "free and a map both succeeded: {s:?}");
        });
    }

    /// Two maps on two threads race each other's CAS: both land, and the
    /// count is exactly two.
    #[test]
    fn two_maps_count_exactly() {
        loom::model(|| {
            let cell = Arc::new(FrameCell::new(FrameState::of_type(FrameType::UserData)));
            let other = {
                let cell = cell.clone();
                thread::spawn(move || cell.acquire(Access::Dart, Perm::R).is_ok())
            };
            assert!(cell.acquire(Access::Dart, Perm::R).is_ok());
            assert!(other.join().unwrap());
            let s = cell.load();
            assert_consistent(s);
            assert_eq!((s.ty(), s.counts().dart), (FrameType::UserData, 2), "lost count: {s:?}");
        });
    }

    /// An unmapped `kernel-shared` frame and a one-frame reach map with its
    /// bit set, as the table keeps them at rest.
    fn kernel_shared_with_its_bit() -> (Arc<FrameCell>, Arc<ReachMap>) {
        let reach = Arc::new(ReachMap::new(1));
        reach.set(0, true);
        (Arc::new(FrameCell::new(FrameState::of_type(FrameType::KernelShared))), reach)
    }

    /// The device-reachable bit ([`crate::reach`]) against the type: a
    /// walker-like reader takes a snapshot (state, bit, state again) while
    /// another thread frees a `kernel-shared` frame and retypes it to
    /// `user-data` (each type once, so two equal loads mean no change between
    /// them). Whenever both loads see the same unclaimed word, the bit
    /// between them is exactly "its type is device-reachable": never set for
    /// `free` (the safety side), never clear for the other two (no spurious
    /// faults). At the end the bit is set.
    #[test]
    fn reach_bit_follows_the_type() {
        loom::model(|| {
            let (cell, reach) = kernel_shared_with_its_bit();
            let walker = {
                let (cell, reach) = (cell.clone(), reach.clone());
                thread::spawn(move || {
                    let s1 = cell.load();
                    let bit = reach.get(0);
                    let s2 = cell.load();
                    if s1 == s2 && !s1.claimed() {
                        assert_eq!(bit, device_reachable(s1.ty()), "bit {bit} for {s1:?}");
                    }
                })
            };
            assert_eq!(cell.free(), Ok(FrameType::KernelShared));
            cell.complete(FrameType::KernelShared, FrameType::Free, &reach, 0, || {});
            assert_eq!(cell.retype(FrameType::UserData), Ok(FrameType::Free));
            cell.complete(FrameType::Free, FrameType::UserData, &reach, 0, || {});
            walker.join().unwrap();
            assert_eq!(cell.load(), FrameState::of_type(FrameType::UserData));
            assert!(reach.get(0));
        });
    }

    /// Two retypes of one `kernel-shared` frame race (to `user-data` and to
    /// `compressor`; neither can follow the other under R1): exactly one
    /// lands, and the bit ends equal to the reachability of the type it
    /// gave (both reachable: clear, then set again, by one claimer).
    #[test]
    fn racing_retypes_leave_one_type_and_its_bit() {
        loom::model(|| {
            let (cell, reach) = kernel_shared_with_its_bit();
            let other = {
                let (cell, reach) = (cell.clone(), reach.clone());
                thread::spawn(move || {
                    let ok = cell.retype(FrameType::UserData).is_ok();
                    if ok {
                        cell.complete(FrameType::KernelShared, FrameType::UserData, &reach, 0, || {});
                    }
                    ok
                })
            };
            let mine = cell.retype(FrameType::Compressor).is_ok();
            if mine {
                cell.complete(FrameType::KernelShared, FrameType::Compressor, &reach, 0, || {});
            }
            let theirs = other.join().unwrap();
            assert!(mine != theirs, "retypes landed: compressor {mine}, user-data {theirs}");
            let s = cell.load();
            let want = if mine { FrameType::Compressor } else { FrameType::UserData };
            assert_eq!((s.ty(), s.claimed()), (want, false));
            assert_eq!(reach.get(0), device_reachable(want));
        });
    }

    /// A free of two `user-data` frames (the real [`claim_all`], then
    /// [`FrameCell::complete`]) races a device that maps frame 1, then frame
    /// 0 (R6). Frame 1 decides: either the free claims it first, and then
    /// both maps are refused on `free`, or the map lands first, the free is
    /// refused at frame 1 and gives frame 0 back, and both maps land. A map
    /// refused on `free` while the free is given back would have seen a
    /// half-done free: the deliberately broken claim (`loom-broken-claim`)
    /// shows it.
    fn multi_frame_free_model() {
        loom::model(|| {
            let cells = Arc::new([0, 1].map(|_| FrameCell::new(FrameState::of_type(FrameType::UserData))));
            let reach = ReachMap::new(2);
            reach.set(0, true);
            reach.set(1, true);
            let mapper = {
                let cells = cells.clone();
                thread::spawn(move || {
                    [1, 0].map(|i| match cells[i].acquire(Access::Dart, Perm::R) {
                        Ok(_) => true,
                        Err(Refusal::Forbidden(FrameType::Free)) => false,
                        Err(r) => panic!("map of frame {i}: {r:?}"),
                    })
                })
            };
            let freed = match claim_all(cells.iter(), FrameCell::free) {
                Ok(claimed) => {
                    for (i, (cell, from)) in claimed.into_iter().enumerate() {
                        cell.complete(from, FrameType::Free, &reach, i, || {});
                    }
                    true
                }
                Err(e) => {
                    // Refused at frame 0 (both maps landed first) or at
                    // frame 1, giving frame 0's claim back.
                    let want = if e.at == 0 { vec![] } else { vec![FrameType::UserData] };
                    assert_eq!((e.at, e.cancelled), (e.at.min(1), want));
                    false
                }
            };
            let [mapped1, mapped0] = mapper.join().unwrap();
            let states = cells.each_ref().map(|c| c.load());
            for s in states {
                assert_consistent(s);
            }
            assert!(
                (freed && !mapped0 && !mapped1) || (!freed && mapped0 && mapped1),
                "a map saw a half-done free: freed {freed}, maps {mapped0} {mapped1}, {states:?}"
            );
            let want = if freed { FrameType::Free } else { FrameType::UserData };
            for (i, s) in states.iter().enumerate() {
                assert_eq!((s.ty(), s.claimed(), s.counts().dart), (want, false, u32::from(!freed)), "frame {i}");
                assert_eq!(reach.get(i), !freed, "reach bit of frame {i}");
            }
        });
    }

    #[cfg(not(feature = "loom-broken-claim"))]
    #[test]
    fn map_races_multi_frame_free() {
        multi_frame_free_model();
    }

    /// The broken claim (new type shown at once) is caught by the same model.
    #[cfg(feature = "loom-broken-claim")]
    #[test]
    #[should_panic(expected = "a map saw a half-done free")]
    fn broken_claim_is_caught() {
        multi_frame_free_model();
    }
}
