//! DMA faults: their kinds, the record the DART latches, and the ERROR
//! register code bits per variant (docs/design.md §3).

use crate::variant::Variant;
use std::fmt;

/// What went wrong with one DMA page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The TTBR for this IOVA is not valid (or the IOVA is beyond the tables' reach).
    NoTtbr,
    /// The L0 entry (four-level tables) is not valid.
    NoL0,
    /// The L1 entry is not valid.
    NoL1,
    /// The leaf PTE is not valid.
    NoPte,
    /// A read through a PTE that forbids reading.
    Read,
    /// A write through a PTE that forbids writing.
    Write,
    /// An access outside the PTE's subpage range.
    Subpage,
    /// The stream is disabled, or has neither translation nor bypass enabled.
    StreamDisabled,
    /// A table or a target frame whose type forbids device access (bypassed
    /// accesses to forbidden frames, forged tables).
    ForbiddenFrame,
}

impl FaultKind {
    /// All kinds.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::NoTtbr,
        FaultKind::NoL0,
        FaultKind::NoL1,
        FaultKind::NoPte,
        FaultKind::Read,
        FaultKind::Write,
        FaultKind::Subpage,
        FaultKind::StreamDisabled,
        FaultKind::ForbiddenFrame,
    ];

    /// The code as counters name it (`no-pte`, …).
    pub const fn code(self) -> &'static str {
        match self {
            FaultKind::NoTtbr => "no-ttbr",
            FaultKind::NoL0 => "no-l0",
            FaultKind::NoL1 => "no-l1",
            FaultKind::NoPte => "no-pte",
            FaultKind::Read => "read",
            FaultKind::Write => "write",
            FaultKind::Subpage => "subpage",
            FaultKind::StreamDisabled => "stream-disabled",
            FaultKind::ForbiddenFrame => "forbidden-frame",
        }
    }

    /// The outcome kind as scenario files spell it (`fault:no-pte`, …).
    pub const fn kind(self) -> &'static str {
        match self {
            FaultKind::NoTtbr => "fault:no-ttbr",
            FaultKind::NoL0 => "fault:no-l0",
            FaultKind::NoL1 => "fault:no-l1",
            FaultKind::NoPte => "fault:no-pte",
            FaultKind::Read => "fault:read",
            FaultKind::Write => "fault:write",
            FaultKind::Subpage => "fault:subpage",
            FaultKind::StreamDisabled => "fault:stream-disabled",
            FaultKind::ForbiddenFrame => "fault:forbidden-frame",
        }
    }

    /// The ERROR register code bit of this fault on `variant`.
    ///
    /// From docs/design.md §3 and Linux `apple-dart.c` / m1n1 `dart8020.py`,
    /// `dart8110.py`. *Inferred* (no source says): `stream-disabled` uses the
    /// NO_TTBR bit; t8110 `subpage` uses the read or write fault bit;
    /// `forbidden-frame` uses the DAPF/APF reject bit (t8020 NO_DAPF_MATCH
    /// bit 11, t8110 APF_REJECT bit 10), the filters that refuse accesses by
    /// physical address; t8020 has no L0 and reports `no-l0` as NO_PMD.
    pub const fn error_bit(self, variant: Variant, write: bool) -> u32 {
        match variant {
            Variant::T8020 | Variant::T6000 => match self {
                FaultKind::NoTtbr | FaultKind::StreamDisabled => 0,
                FaultKind::NoL0 | FaultKind::NoL1 => 1,
                FaultKind::NoPte => 2,
                FaultKind::Write => 3,
                FaultKind::Read => 4,
                FaultKind::Subpage => 7,
                FaultKind::ForbiddenFrame => 11,
            },
            Variant::T8110 => match self {
                FaultKind::NoTtbr | FaultKind::StreamDisabled => 0,
                FaultKind::NoL0 => 1,
                FaultKind::NoL1 => 2,
                FaultKind::NoPte => 3,
                FaultKind::Write => 4,
                FaultKind::Read => 5,
                FaultKind::Subpage => {
                    if write {
                        4
                    } else {
                        5
                    }
                }
                FaultKind::ForbiddenFrame => 10,
            },
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// One fault: what, on which stream, at which IOVA, for which direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The kind.
    pub kind: FaultKind,
    /// The stream (SID).
    pub stream: u32,
    /// The faulting IOVA (the first byte of the access on the faulting page).
    pub iova: u64,
    /// Whether the access was a write.
    pub write: bool,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on stream {} at IOVA {:#x} ({})",
            self.kind,
            self.stream,
            self.iova,
            if self.write { "write" } else { "read" }
        )
    }
}

/// The DART's latched error (what ERROR / ERROR_ADDR show): the first fault
/// since the last clear, and how many more came while it was latched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ErrorLatch {
    /// The first fault, if any is latched.
    pub first: Option<Fault>,
    /// Faults seen while one was already latched.
    pub more: u64,
}

std::thread_local! {
    /// The DART (its device side's address) whose interrupt callback this
    /// thread is running, 0 outside one.
    static INTERRUPTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// While alive, this thread runs the interrupt callback of the DART
/// `dart` names ([`in_interrupt_of`]); the callback runs on the faulting DMA
/// thread, inside that DMA's in-flight section.
pub(crate) struct InterruptScope(usize);

impl InterruptScope {
    pub(crate) fn enter(dart: usize) -> InterruptScope {
        InterruptScope(INTERRUPTED.with(|c| c.replace(dart)))
    }
}

impl Drop for InterruptScope {
    fn drop(&mut self) {
        INTERRUPTED.with(|c| c.set(self.0));
    }
}

/// Whether this thread is inside the interrupt callback of the DART `dart`
/// names: a call that waits for that DART's DMA in flight would wait for
/// the faulting DMA itself, forever.
pub(crate) fn in_interrupt_of(dart: usize) -> bool {
    INTERRUPTED.with(|c| c.get()) == dart
}
