//! Errors of DART operations. Each carries the offending values and maps to
//! an outcome kind as scenario files spell it ([`DartError::kind`]).

use crate::fault::Fault;

/// An error from a DART operation. A call that returns one changed nothing,
/// except [`frame_table::Error::Panic`] (the system halted) and faults
/// (which latch ERROR and count, but never move data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DartError {
    /// A stream number beyond the DART's streams.
    #[error("no stream {sid}: the DART has {streams}")]
    NoSuchStream {
        /// The stream asked for.
        sid: u32,
        /// Streams the DART has.
        streams: u32,
    },
    /// An IOVA range that is empty, unaligned, overflowing or out of reach.
    #[error("bad range {iova:#x}+{len:#x}: {reason}")]
    BadRange {
        /// First IOVA.
        iova: u64,
        /// Length in bytes.
        len: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A map over an IOVA page that is already mapped.
    #[error("stream {sid}: IOVA {iova:#x} is already mapped")]
    IovaInUse {
        /// The stream.
        sid: u32,
        /// The first page in use.
        iova: u64,
    },
    /// An unmap of a range with nothing mapped.
    #[error("stream {sid}: nothing is mapped in {iova:#x}+{len:#x}")]
    NotMapped {
        /// The stream.
        sid: u32,
        /// First IOVA.
        iova: u64,
        /// Length.
        len: u64,
    },
    /// Bypass asked for a stream that is not trusted.
    #[error("stream {sid} is not trusted: bypass refused")]
    BypassDenied {
        /// The stream.
        sid: u32,
    },
    /// The stream's TTBR names a table this DART's mapper does not manage
    /// (set through registers), so the mapper will not write through it.
    #[error("stream {sid}: TTBR {pa:#x} is not a root table of this DART")]
    ForeignTtbr {
        /// The stream.
        sid: u32,
        /// The TTBR's table address.
        pa: u64,
    },
    /// A change of a stream's TCR or TTBR asked of a DART whose
    /// configuration is locked (t8020 CONFIG.LOCK, t8110 PROTECT
    /// LOCK_TCR_TTBR): the typed calls that program those registers
    /// ([`crate::Dart::set_stream_config`], [`crate::Dart::set_bypass`],
    /// [`crate::Dart::set_ttbr`], and a [`crate::Dart::map`] that would
    /// give a stream its first table) are refused, as the registers drop
    /// the same writes.
    #[error("stream {sid}: {register} is locked (CONFIG.LOCK / PROTECT LOCK_TCR_TTBR)")]
    Locked {
        /// The stream.
        sid: u32,
        /// The register the call would have written.
        register: LockedRegister,
    },
    /// A monitor write over a valid entry (clear it first, as io-pgtable's
    /// `-EEXIST`).
    #[error("table {table:#x} entry {index}: already valid (clear it first)")]
    EntryInUse {
        /// The table's physical address.
        table: u64,
        /// The entry.
        index: u64,
    },
    /// A monitor write or read the entry's table or value makes impossible:
    /// an index past the table, a table address that is not a page in
    /// memory, a PA beyond memory or the output width, a subpage range or
    /// permission the format cannot express, a valid entry in a table that
    /// has no level yet.
    #[error("table {table:#x} entry {index}, value {value:#x}: {reason}")]
    BadEntry {
        /// The table's physical address.
        table: u64,
        /// The entry.
        index: u64,
        /// The value written (0 for a read).
        value: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A frame the monitor was asked to write, read, link or release as a
    /// driver-built table of this DART is not one: not a `dart-table`
    /// frame, a table of this DART's mapper, or held by another DART.
    #[error("{pa:#x} is not a driver-built table of this DART: {reason}")]
    NotDriverTable {
        /// The frame's physical address.
        pa: u64,
        /// What it is instead.
        reason: &'static str,
    },
    /// A table the monitor was asked to link or release is in a use that
    /// forbids it: it already has a parent entry, a TTBR names it, it is
    /// linked at another level, or it still has entries.
    #[error("table {pa:#x} is in use: {reason}")]
    TableInUse {
        /// The table's physical address.
        pa: u64,
        /// The use.
        reason: &'static str,
    },
    /// A call that waits for the DART's DMA in flight, made from its
    /// interrupt callback, which runs on the faulting DMA's thread inside
    /// that DMA: it would wait for itself (flush, unmap, `release_table`,
    /// `free_root_table`, monitor writes, register flush commands).
    #[error("{call} from the DART's interrupt callback would wait for the faulting DMA itself")]
    InInterrupt {
        /// The call refused.
        call: &'static str,
    },
    /// A bad configuration value.
    #[error("bad DART configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The frame table refused (policy, limits, out of frames) or the system halted.
    #[error(transparent)]
    Frame(#[from] frame_table::Error),
    /// A DMA fault.
    #[error("DMA fault: {0}")]
    Fault(Fault),
}

impl DartError {
    /// The outcome kind (`forbidden-type`, `fault:no-pte`, `halted`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            DartError::NoSuchStream { .. } => "no-such-device",
            DartError::BadRange { .. } | DartError::Config { .. } => "bad-range",
            DartError::IovaInUse { .. } | DartError::EntryInUse { .. } => "iova-in-use",
            DartError::BadEntry { .. } => "bad-range",
            DartError::NotDriverTable { .. } => "forbidden-type",
            DartError::TableInUse { .. } => "table-in-use",
            DartError::NotMapped { .. } => "not-mapped",
            DartError::BypassDenied { .. } => "bypass-denied",
            DartError::ForeignTtbr { .. } => "forbidden-type",
            DartError::Locked { .. } => "locked",
            DartError::InInterrupt { .. } => "in-interrupt",
            DartError::Frame(e) => e.kind(),
            DartError::Fault(f) => f.kind.kind(),
        }
    }
}

/// The register a [`DartError::Locked`] call would have written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockedRegister {
    /// The stream's TCR (translate, bypass, four-level).
    Tcr,
    /// The stream's TTBR `index`.
    Ttbr {
        /// Which TTBR (0..4 on t8020/t6000, 0 on t8110).
        index: usize,
    },
}

impl std::fmt::Display for LockedRegister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockedRegister::Tcr => f.write_str("TCR"),
            LockedRegister::Ttbr { index } => write!(f, "TTBR {index}"),
        }
    }
}
