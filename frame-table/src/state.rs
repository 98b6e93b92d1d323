//! The frame state word: type, flags and counters packed in one `u64`.
//!
//! ```text
//!  63        48 47        32 31    22 21    12 11  6  5   4   3  0
//! +------------+------------+--------+--------+-----+---+---+-----+
//! |  pending   |    dart    |cpu_user|cpu_kern| pins|HOL|CLM| type|
//! +------------+------------+--------+--------+-----+---+---+-----+
//! ```
//!
//! - `type`: [`FrameType`] code.
//! - `CLM` (claimed): a type change (allocation, retype, free) holds the
//!   frame. The word keeps the old type until the change publishes the new
//!   one or gives the claim back (a multi-frame change refused at a later
//!   frame, R6); meanwhile nothing else may change the word (see
//!   `frame-table/src/cell.rs`, `# Protocol`). This flag is also the
//!   multi-frame change's reservation: R6 needs no further bit.
//! - `HOL` (hole): a frame number inside the table's span that no memory
//!   region backs. It never changes.
//! - `pins`: aperture copies and bypassed DART accesses in progress. They are
//!   not mappings; retype and free wait for them to drain.
//! - `cpu_kern`, `cpu_user`, `dart`: live mappings of each kind.
//! - `pending`: DART mappings unmapped in deferred mode whose invalidation has
//!   not completed; they still count as mappings (R2).
//!
//! The field layout lives only here: callers use the named accessors.

use crate::types::FrameType;
use std::fmt;

/// A counter of the frame state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Live CPU kernel mappings.
    CpuKernel,
    /// Live CPU user mappings.
    CpuUser,
    /// Live DART mappings.
    Dart,
    /// DART mappings awaiting a deferred invalidation.
    PendingInvalidation,
}

impl Counter {
    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::CpuKernel => "cpu-kernel",
            Counter::CpuUser => "cpu-user",
            Counter::Dart => "dart",
            Counter::PendingInvalidation => "pending-invalidation",
        }
    }

    const fn field(self) -> Field {
        match self {
            Counter::CpuKernel => CPU_KERNEL,
            Counter::CpuUser => CPU_USER,
            Counter::Dart => DART,
            Counter::PendingInvalidation => PENDING,
        }
    }

    /// The largest value this counter can hold; a map past it is refused (R4).
    pub const fn max(self) -> u64 {
        self.field().max()
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy)]
struct Field {
    shift: u32,
    width: u32,
}

impl Field {
    const fn max(self) -> u64 {
        (1 << self.width) - 1
    }
    const fn mask(self) -> u64 {
        self.max() << self.shift
    }
    const fn get(self, word: u64) -> u64 {
        (word >> self.shift) & self.max()
    }
    const fn set(self, word: u64, value: u64) -> u64 {
        (word & !self.mask()) | ((value & self.max()) << self.shift)
    }
}

const TYPE: Field = Field { shift: 0, width: 4 };
const CLAIMED: Field = Field { shift: 4, width: 1 };
const HOLE: Field = Field { shift: 5, width: 1 };
const PINS: Field = Field { shift: 6, width: 6 };
const CPU_KERNEL: Field = Field { shift: 12, width: 10 };
const CPU_USER: Field = Field { shift: 22, width: 10 };
const DART: Field = Field { shift: 32, width: 16 };
const PENDING: Field = Field { shift: 48, width: 16 };

/// The number of live mappings of each kind on one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    /// CPU kernel mappings.
    pub cpu_kernel: u32,
    /// CPU user mappings.
    pub cpu_user: u32,
    /// DART mappings.
    pub dart: u32,
    /// DART mappings awaiting a deferred invalidation.
    pub pending: u32,
}

impl Counts {
    /// Whether any mapping of any kind (pending invalidations included) exists.
    pub const fn any(&self) -> bool {
        self.cpu_kernel != 0 || self.cpu_user != 0 || self.dart != 0 || self.pending != 0
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu-kernel={} cpu-user={} dart={} pending-invalidation={}",
            self.cpu_kernel, self.cpu_user, self.dart, self.pending
        )
    }
}

/// A snapshot of one frame's state word.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameState(u64);

impl FrameState {
    /// The state of a `free` frame with no mappings.
    pub const FREE: FrameState = FrameState(0);
    /// The state of a frame number no memory backs.
    pub(crate) const HOLE: FrameState = FrameState(HOLE.set(TYPE.set(0, FrameType::Reserved as u64), 1));

    pub(crate) const fn from_raw(raw: u64) -> FrameState {
        FrameState(raw)
    }

    /// A frame of type `ty` with no mappings and no flags.
    pub const fn of_type(ty: FrameType) -> FrameState {
        FrameState(TYPE.set(0, ty as u64))
    }

    /// The raw word, for traces.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The frame's type. A claimed frame shows the type it is changing
    /// from, until the change is published.
    pub const fn ty(self) -> FrameType {
        match FrameType::from_code(TYPE.get(self.0) as u8) {
            Some(t) => t,
            // Only this crate writes state words, and it writes valid codes.
            None => FrameType::Reserved,
        }
    }

    /// Whether a type change (allocation, retype or free) has claimed this
    /// frame: its type is still the old one, and the change is being
    /// finished (device-reachable bit, scrub, publish) or given back by the
    /// claimer alone.
    pub const fn claimed(self) -> bool {
        CLAIMED.get(self.0) != 0
    }

    /// Whether this is a frame (not a hole) of type `ty`: its type and hole
    /// bits tested in one mask and compare.
    #[inline]
    pub(crate) const fn is(self, ty: FrameType) -> bool {
        self.0 & (TYPE.mask() | HOLE.mask()) == TYPE.set(0, ty as u64)
    }

    /// Whether this frame number is a hole between memory regions.
    pub const fn hole(self) -> bool {
        HOLE.get(self.0) != 0
    }

    /// Aperture copies and bypassed DART accesses in progress.
    pub const fn pins(self) -> u64 {
        PINS.get(self.0)
    }

    /// One counter.
    pub const fn count(self, counter: Counter) -> u64 {
        counter.field().get(self.0)
    }

    /// All counters.
    pub const fn counts(self) -> Counts {
        Counts {
            cpu_kernel: CPU_KERNEL.get(self.0) as u32,
            cpu_user: CPU_USER.get(self.0) as u32,
            dart: DART.get(self.0) as u32,
            pending: PENDING.get(self.0) as u32,
        }
    }

    /// Whether the frame has any mapping (pending invalidations included).
    pub const fn mapped(self) -> bool {
        self.0 & (CPU_KERNEL.mask() | CPU_USER.mask() | DART.mask() | PENDING.mask()) != 0
    }

    pub(crate) const fn with_claimed(self, claimed: bool) -> FrameState {
        FrameState(CLAIMED.set(self.0, claimed as u64))
    }

    /// `Some` with the counter one higher, `None` if it is at its maximum.
    pub(crate) const fn incremented(self, counter: Counter) -> Option<FrameState> {
        let f = counter.field();
        let v = f.get(self.0);
        if v >= f.max() {
            None
        } else {
            Some(FrameState(f.set(self.0, v + 1)))
        }
    }

    /// `Some` with the counter one lower, `None` if it is zero.
    pub(crate) const fn decremented(self, counter: Counter) -> Option<FrameState> {
        let f = counter.field();
        let v = f.get(self.0);
        if v == 0 {
            None
        } else {
            Some(FrameState(f.set(self.0, v - 1)))
        }
    }

    pub(crate) const fn pins_maxed(self) -> bool {
        PINS.get(self.0) == PINS.max()
    }

    pub(crate) const fn with_pins(self, pins: u64) -> FrameState {
        FrameState(PINS.set(self.0, pins))
    }

    /// The value to add to a state word to take or drop one pin.
    pub(crate) const PIN_UNIT: u64 = 1 << PINS.shift;
}

impl fmt::Debug for FrameState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}", self.ty(), self.counts())?;
        if self.pins() != 0 {
            write!(f, " pins={}", self.pins())?;
        }
        if self.claimed() {
            f.write_str(" claimed")?;
        }
        if self.hole() {
            f.write_str(" hole")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for FrameState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap_and_fill_the_word() {
        let fields = [TYPE, CLAIMED, HOLE, PINS, CPU_KERNEL, CPU_USER, DART, PENDING];
        let mut all = 0u64;
        for f in fields {
            assert_eq!(all & f.mask(), 0);
            all |= f.mask();
        }
        assert_eq!(all, u64::MAX);
    }

    #[test]
    fn is_compares_type_and_hole_and_nothing_else() {
        let others = !(TYPE.mask() | HOLE.mask());
        for ty in FrameType::ALL {
            for other in FrameType::ALL {
                let s = FrameState::of_type(other);
                assert_eq!(s.is(ty), ty == other, "{other} is {ty}");
                // Counts, pins and the claim bit do not change the answer.
                assert_eq!(FrameState(s.0 | others).is(ty), ty == other, "busy {other} is {ty}");
                assert!(!FrameState(s.0 | HOLE.mask()).is(ty), "hole of {other} is {ty}");
            }
            assert!(!FrameState::HOLE.is(ty), "hole is {ty}");
        }
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        for c in [Counter::CpuKernel, Counter::CpuUser, Counter::Dart, Counter::PendingInvalidation] {
            let mut s = FrameState::of_type(FrameType::UserData);
            assert_eq!(s.decremented(c), None);
            s = FrameState(c.field().set(s.0, c.max()));
            assert_eq!(s.count(c), c.max());
            assert_eq!(s.incremented(c), None);
            assert_eq!(s.ty(), FrameType::UserData);
            let d = s.decremented(c).unwrap();
            assert_eq!(d.count(c), c.max() - 1);
            assert!(d.mapped());
        }
        assert_eq!(Counter::CpuKernel.max(), 1023);
        assert_eq!(Counter::Dart.max(), 65535);
    }
}
