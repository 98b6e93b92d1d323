//! Errors of the frame table, and the invariant breaches (violations) the
//! SoC's `on_violation` mode decides about.

use crate::policy::{Access, Perm};
use crate::state::{Counter, Counts};
use crate::types::{Frame, FrameType};

/// An invariant breach (docs/design.md §2): not a refused request but an operation that,
/// if carried out, would break the frame table's promise.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// R2: free of a frame that still has mappings (pending invalidations included).
    #[error("free of {frame} ({ty}) with live mappings: {counts}")]
    FreeMapped {
        /// The frame.
        frame: Frame,
        /// Its type.
        ty: FrameType,
        /// Its counts at the time.
        counts: Counts,
    },
    /// R1: retype of a frame that still has mappings.
    #[error("retype of {frame} {from} -> {to} with live mappings: {counts}")]
    RetypeMapped {
        /// The frame.
        frame: Frame,
        /// Its type.
        from: FrameType,
        /// The requested type.
        to: FrameType,
        /// Its counts at the time.
        counts: Counts,
    },
    /// A DART TTBR pointed at something that is not a `dart-table` frame.
    #[error("TTBR points at {pa:#x} ({}), not a dart-table frame", .ty.map_or("no memory", |t| t.name()))]
    TtbrNotTable {
        /// The address written to the TTBR.
        pa: u64,
        /// The type of the frame there, `None` where no memory backs it.
        ty: Option<FrameType>,
    },
    /// A DART TTBR pointed at a `dart-table` frame that is not one of that
    /// DART's own tables (its contents are not the DART's to vouch for).
    #[error("TTBR points at {pa:#x}, a dart-table frame this DART does not own")]
    TtbrForeign {
        /// The address written to the TTBR.
        pa: u64,
    },
}

impl Violation {
    /// The error a `reject`-mode SoC returns instead of halting.
    pub fn reject_error(&self) -> Error {
        match *self {
            Violation::FreeMapped { frame, ty, counts } => Error::FrameBusy { frame, ty, counts },
            Violation::RetypeMapped { frame, from, counts, .. } => Error::FrameBusy { frame, ty: from, counts },
            Violation::TtbrNotTable { pa, ty } => Error::NotTable { pa, ty },
            Violation::TtbrForeign { pa } => Error::ForeignTable { pa },
        }
    }
}

/// Errors of frame-table operations. Each carries the offending values.
///
/// A call that returns an error other than [`Error::Panic`] changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A frame number beyond the table, or a hole between memory regions.
    #[error("{frame} is not backed by memory (the table has {frames} frames)")]
    OutOfRange {
        /// The frame asked for.
        frame: Frame,
        /// Frames in the table.
        frames: u64,
    },
    /// A byte range outside memory or outside what the call allows.
    #[error("bad range {start:#x}+{len:#x}: {reason}")]
    BadRange {
        /// First byte (a physical address or an offset, as the call takes).
        start: u64,
        /// Length in bytes.
        len: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The frame's type forbids this access (docs/design.md §2 policy matrix).
    #[error("{access} {perm} access to {frame} of type {ty} is forbidden")]
    ForbiddenType {
        /// The frame.
        frame: Frame,
        /// Its type.
        ty: FrameType,
        /// Who asked.
        access: Access,
        /// With which permission.
        perm: Perm,
    },
    /// A mapping limit of the type (kernel-restricted: one kernel mapping) or
    /// of the counter's width (R4) would be exceeded.
    #[error("{frame} ({ty}): {counter} count {count} is at its limit {limit}")]
    MappingLimit {
        /// The frame.
        frame: Frame,
        /// Its type.
        ty: FrameType,
        /// The counter.
        counter: Counter,
        /// Its value.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// The frame has mappings (the `reject`-mode answer to a violation).
    #[error("{frame} ({ty}) is busy: {counts}")]
    FrameBusy {
        /// The frame.
        frame: Frame,
        /// Its type.
        ty: FrameType,
        /// Its counts.
        counts: Counts,
    },
    /// A TTBR target that is not a `dart-table` frame (the `reject`-mode answer).
    #[error("{pa:#x} ({}) is not a dart-table frame", .ty.map_or("no memory", |t| t.name()))]
    NotTable {
        /// The address.
        pa: u64,
        /// The type there, `None` where no memory backs it.
        ty: Option<FrameType>,
    },
    /// A TTBR target that is a `dart-table` frame, but not a root table of
    /// the DART whose TTBR it is (the `reject`-mode answer).
    #[error("{pa:#x} is a dart-table frame, but not a root table of this DART")]
    ForeignTable {
        /// The address.
        pa: u64,
    },
    /// R1 does not allow this retype (or a free of a free frame).
    #[error("{frame}: {from} -> {to} is not an allowed transition")]
    BadTransition {
        /// The frame.
        frame: Frame,
        /// Its type.
        from: FrameType,
        /// The requested type.
        to: FrameType,
    },
    /// A release of a count that is zero.
    #[error("{frame} ({ty}) has no {counter} mapping to release")]
    NotMapped {
        /// The frame.
        frame: Frame,
        /// Its type.
        ty: FrameType,
        /// The counter.
        counter: Counter,
    },
    /// Not enough free frames.
    #[error("cannot allocate {requested} frames of {ty}: {available} free")]
    OutOfFrames {
        /// The type asked for.
        ty: FrameType,
        /// Frames asked for.
        requested: u64,
        /// Frames free at the time.
        available: u64,
    },
    /// This call breached an invariant in `panic` mode: the system is now halted.
    #[error("invariant breach, system halted: {0}")]
    Panic(Violation),
    /// The system halted earlier; nothing runs any more.
    #[error("system halted earlier: {0}")]
    Halted(Violation),
}

impl Error {
    /// The outcome kind as scenario files spell it (`forbidden-type`, …).
    pub const fn kind(&self) -> &'static str {
        match self {
            Error::OutOfRange { .. } | Error::BadRange { .. } => "bad-range",
            Error::ForbiddenType { .. } | Error::NotTable { .. } | Error::ForeignTable { .. } => "forbidden-type",
            Error::MappingLimit { .. } => "mapping-limit",
            Error::FrameBusy { .. } => "frame-busy",
            Error::BadTransition { .. } => "bad-transition",
            Error::NotMapped { .. } => "not-mapped",
            Error::OutOfFrames { .. } => "out-of-frames",
            Error::Panic(_) => "panic",
            Error::Halted(_) => "halted",
        }
    }
}
