//! The typed form of a scenario file (docs/design.md §6).
//!
//! Everything here is plain data: the parser ([`super::parse_scenario`]) fills
//! it in with every default applied; the runner resolves the names it holds
//! (buffers, devices, handles, DARTs in steps) against the emulated SoC.

use frame_table::{FrameType, Perm};
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;

pub use crate::soc::config::{
    CoprocessorConfig, DartConfig, SocConfig, DEFAULT_DART_NAME, DEFAULT_DEVICE_NAME, DEFAULT_DEVICE_STREAM,
    DEFAULT_IOTLB_ENTRIES, DEFAULT_MEMORY_MIB, DEFAULT_STREAMS, DEFAULT_WINDOW,
};

// Input limits (docs/design.md §4 "Input limits"; scenarios/README.md lists them).
// Every size a scenario file can name is bounded here, so that no file makes
// the runner exhaust memory, spawn unbounded threads or run without end; the
// parser refuses a value above its limit with the value and the limit.

/// Largest accepted `[[dart]] iotlb_entries`. An IOTLB slot is 32 bytes and
/// the invariant checks read every slot once per DART, so this keeps the
/// 64 DARTs' IOTLBs at 64 MiB and a check at 2^20 slot reads.
pub const MAX_IOTLB_ENTRIES: u64 = 1 << 14;
/// Largest accepted `[soc] memory_mib`: 1 TiB.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// Most frames physical memory may have: 1 TiB of 16 KiB frames (with
/// 4 KiB pages, 256 GiB). The frame table keeps 8 bytes of state a frame.
pub const MAX_FRAMES: u64 = 1 << 26;
/// Most `[[dart]]` sections.
pub const MAX_DARTS: usize = 64;
/// Most `[[coprocessor]]` sections (each runs one thread).
pub const MAX_COPROCESSORS: usize = 256;
/// Most threads in one `race`: one bit each in the overlap gauge.
pub const MAX_RACE_THREADS: usize = 64;
/// Largest `iterations` of one `race`.
pub const MAX_ITERATIONS: u64 = 1_000_000;
/// Most frames one `alloc` step may ask for (1 GiB of 16 KiB frames).
pub const MAX_ALLOC_FRAMES: u64 = 1 << 16;
/// Most steps in one file, race threads' steps included.
pub const MAX_STEPS: usize = 10_000;
/// Most step executions one file may ask for: its steps outside races,
/// plus each race's `iterations` × the steps of all its threads.
pub const MAX_WORK: u64 = 2_000_000;
/// Largest scenario file, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
// Largest `len` of one `dma-read`, `cpu-read` or `hold` step: the
// coprocessor's own read limit.
pub use crate::soc::coprocessor::MAX_READ_BYTES;

/// A parsed scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The file it was read from (as given to the parser).
    pub file: PathBuf,
    /// `name`: what the scenario shows.
    pub name: String,
    /// `description`: optional free text.
    pub description: Option<String>,
    /// `[soc]`, defaults applied.
    pub soc: SocConfig,
    /// `[[dart]]`, in file order; one default `dart0` when the file has none.
    pub darts: Vec<DartConfig>,
    /// `[[coprocessor]]`, in file order; one default `dev0` when the file has none.
    pub coprocessors: Vec<CoprocessorConfig>,
    /// `[[step]]`, in file order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// The DART named `name`.
    pub fn dart(&self, name: &str) -> Option<&DartConfig> {
        self.darts.iter().find(|d| d.name == name)
    }

    /// The coprocessor named `name`.
    pub fn coprocessor(&self, name: &str) -> Option<&CoprocessorConfig> {
        self.coprocessors.iter().find(|c| c.name == name)
    }
}

/// A DART hardware variant: the DART's own.
pub use dart::Variant as DartVariant;

/// An invalidation mode: the DART's own.
pub use dart::Invalidation;

/// Kernel or user CPU address space (`space` of `cpu-map` / `cpu-unmap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// The kernel's address space.
    Kernel,
    /// A user process.
    User,
}

impl Space {
    /// The scenario-file spelling: `kernel` or `user`.
    pub const fn name(self) -> &'static str {
        match self {
            Space::Kernel => "kernel",
            Space::User => "user",
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Space {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kernel" => Ok(Space::Kernel),
            "user" => Ok(Space::User),
            _ => Err(format!("unknown space `{}` (expected kernel or user)", shorten(s))),
        }
    }
}

/// One frame of a buffer: `NAME[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameRef {
    /// The buffer's name (from an `alloc` step).
    pub buffer: String,
    /// The frame's index in the buffer, from 0.
    pub index: u64,
}

impl fmt::Display for FrameRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.buffer, self.index)
    }
}

/// What a step acts on (`target`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `NAME`: every frame of a buffer, in order.
    Buffer(String),
    /// `NAME[i]`: one frame of a buffer.
    Frame(FrameRef),
    /// `ttbr:DEVICE`: the top-level table of that device's stream.
    Ttbr(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Buffer(name) => f.write_str(name),
            Target::Frame(frame) => frame.fmt(f),
            Target::Ttbr(device) => write!(f, "ttbr:{device}"),
        }
    }
}

/// An address (`iova`, `pa`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A literal address. TOML integers stop at `i64::MAX`; a string such as
    /// `"0xffff_ffff_ffff_c000"` reaches the rest of the `u64` range.
    Int(u64),
    /// `pa:NAME[i]`: that frame's physical address.
    Pa(FrameRef),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Int(v) => write!(f, "{v:#x}"),
            Address::Pa(frame) => write!(f, "pa:{frame}"),
        }
    }
}

/// The `value` of an MMIO step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MmioValue {
    /// A literal register value.
    Int(u64),
    /// `pa:NAME[i]`: that frame's physical address.
    Pa(FrameRef),
    /// `ttbr:NAME[i]`: that frame's address encoded as the DART variant's
    /// TTBR register value (valid bit included).
    Ttbr(FrameRef),
    /// `ttbr:DEVICE`: the table TTBR 0 of that device's stream names now,
    /// encoded the same way (so a driver can point one stream at another's
    /// tables, as Linux shares a domain's tables across a device group).
    DeviceTtbr(String),
}

impl fmt::Display for MmioValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmioValue::Int(v) => write!(f, "{v:#x}"),
            MmioValue::Pa(frame) => write!(f, "pa:{frame}"),
            MmioValue::Ttbr(frame) => write!(f, "ttbr:{frame}"),
            MmioValue::DeviceTtbr(device) => write!(f, "ttbr:{device}"),
        }
    }
}

/// The `value` of a `pte-write` / `pte-read` step: one table entry in the
/// DART's PTE format (docs/design.md §3, "Driver-built tables").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PteValue {
    /// A raw entry, stored as given.
    Int(u64),
    /// `leaf:FRAME:PERM` (optionally `:nocache`): a valid leaf naming
    /// that frame, whole page, encoded by the DART's
    /// [`dart::variant::PteFormat::encode_leaf`] at its page size.
    Leaf {
        /// The frame the leaf names: [`Target::Frame`] or [`Target::Ttbr`].
        frame: Target,
        /// `r`, `w` or `rw`.
        perm: Perm,
        /// `:nocache`: DART2's no-cache bit set as well.
        nocache: bool,
    },
    /// `table:FRAME`: a valid table descriptor naming that frame
    /// ([`Target::Frame`] or [`Target::Ttbr`]).
    Table(Target),
}

impl fmt::Display for PteValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PteValue::Int(v) => write!(f, "{v:#x}"),
            PteValue::Leaf { frame, perm, nocache } => {
                write!(f, "leaf:{frame}:{perm}")?;
                if *nocache {
                    f.write_str(":nocache")?;
                }
                Ok(())
            }
            PteValue::Table(frame) => write!(f, "table:{frame}"),
        }
    }
}

/// A DMA fault kind (docs/design.md §3), as written after `fault:` in `expect`: the DART's own.
pub use dart::FaultKind;

/// The outcome a step expects (`expect`), or that a step had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `ok`: the step succeeded (the default for top-level steps).
    Ok,
    /// `any`: whatever happens, as long as invariants hold (the default for
    /// steps inside a race).
    Any,
    /// `forbidden-type`.
    ForbiddenType,
    /// `mapping-limit`.
    MappingLimit,
    /// `frame-busy`.
    FrameBusy,
    /// `bad-transition`.
    BadTransition,
    /// `bad-range`.
    BadRange,
    /// `iova-in-use`.
    IovaInUse,
    /// `not-mapped`.
    NotMapped,
    /// `not-granted`.
    NotGranted,
    /// `perm-exceeds-grant`.
    PermExceedsGrant,
    /// `bad-message`.
    BadMessage,
    /// `bypass-denied`.
    BypassDenied,
    /// `no-such-device`.
    NoSuchDevice,
    /// `table-in-use`: a driver-built table is linked, named by a TTBR or
    /// still has valid entries.
    TableInUse,
    /// `panic`: this step breached an invariant in `panic` mode.
    Panic,
    /// `halted`: the system had already halted.
    Halted,
    /// `out-of-frames`.
    OutOfFrames,
    /// `locked`: a TCR/TTBR change asked of a DART whose lock is set.
    Locked,
    /// `fault:CODE`: the DMA faulted.
    Fault(FaultKind),
}

impl Outcome {
    /// Every outcome, in the order of docs/design.md §6.
    pub const ALL: [Outcome; 28] = [
        Outcome::Ok,
        Outcome::Any,
        Outcome::ForbiddenType,
        Outcome::MappingLimit,
        Outcome::FrameBusy,
        Outcome::BadTransition,
        Outcome::BadRange,
        Outcome::IovaInUse,
        Outcome::NotMapped,
        Outcome::NotGranted,
        Outcome::PermExceedsGrant,
        Outcome::BadMessage,
        Outcome::BypassDenied,
        Outcome::NoSuchDevice,
        Outcome::TableInUse,
        Outcome::Panic,
        Outcome::Halted,
        Outcome::OutOfFrames,
        Outcome::Locked,
        Outcome::Fault(FaultKind::NoTtbr),
        Outcome::Fault(FaultKind::NoL0),
        Outcome::Fault(FaultKind::NoL1),
        Outcome::Fault(FaultKind::NoPte),
        Outcome::Fault(FaultKind::Read),
        Outcome::Fault(FaultKind::Write),
        Outcome::Fault(FaultKind::Subpage),
        Outcome::Fault(FaultKind::StreamDisabled),
        Outcome::Fault(FaultKind::ForbiddenFrame),
    ];

    /// The scenario-file spelling (`ok`, `forbidden-type`, `fault:no-pte`, …);
    /// error kinds match the crates' `kind()` strings.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Any => "any",
            Outcome::ForbiddenType => "forbidden-type",
            Outcome::MappingLimit => "mapping-limit",
            Outcome::FrameBusy => "frame-busy",
            Outcome::BadTransition => "bad-transition",
            Outcome::BadRange => "bad-range",
            Outcome::IovaInUse => "iova-in-use",
            Outcome::NotMapped => "not-mapped",
            Outcome::NotGranted => "not-granted",
            Outcome::PermExceedsGrant => "perm-exceeds-grant",
            Outcome::BadMessage => "bad-message",
            Outcome::BypassDenied => "bypass-denied",
            Outcome::NoSuchDevice => "no-such-device",
            Outcome::TableInUse => "table-in-use",
            Outcome::Panic => "panic",
            Outcome::Halted => "halted",
            Outcome::OutOfFrames => "out-of-frames",
            Outcome::Locked => "locked",
            Outcome::Fault(FaultKind::NoTtbr) => "fault:no-ttbr",
            Outcome::Fault(FaultKind::NoL0) => "fault:no-l0",
            Outcome::Fault(FaultKind::NoL1) => "fault:no-l1",
            Outcome::Fault(FaultKind::NoPte) => "fault:no-pte",
            Outcome::Fault(FaultKind::Read) => "fault:read",
            Outcome::Fault(FaultKind::Write) => "fault:write",
            Outcome::Fault(FaultKind::Subpage) => "fault:subpage",
            Outcome::Fault(FaultKind::StreamDisabled) => "fault:stream-disabled",
            Outcome::Fault(FaultKind::ForbiddenFrame) => "fault:forbidden-frame",
        }
    }

    /// Whether this expectation is met by `actual` (`any` accepts everything).
    pub fn accepts(self, actual: Outcome) -> bool {
        self == Outcome::Any || self == actual
    }

    /// Whether this is an error kind (neither `ok` nor `any`).
    pub const fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Any)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Outcome::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| {
            let all: Vec<&str> = Outcome::ALL.iter().map(|o| o.name()).collect();
            format!("unknown expect kind `{}` (expected one of {})", shorten(s), all.join(", "))
        })
    }
}

/// An invariant a `check` step verifies (docs/design.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// No valid PTE, IOTLB entry or bypassed stream reaches a frame whose type
    /// forbids DART access.
    RestrictedUnreachable,
    /// Every frame's counters equal the mappings that exist.
    CountsConsistent,
    /// In strict mode every IOTLB entry matches its PTE.
    IotlbCoherent,
    /// All of the above.
    All,
}

impl Invariant {
    /// Every invariant name.
    pub const ALL: [Invariant; 4] =
        [Invariant::RestrictedUnreachable, Invariant::CountsConsistent, Invariant::IotlbCoherent, Invariant::All];

    /// The scenario-file spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Invariant::RestrictedUnreachable => "restricted-unreachable",
            Invariant::CountsConsistent => "counts-consistent",
            Invariant::IotlbCoherent => "iotlb-coherent",
            Invariant::All => "all",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Invariant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Invariant::ALL.into_iter().find(|i| i.name() == s).ok_or_else(|| {
            format!(
                "unknown invariant `{}` (expected restricted-unreachable, counts-consistent, iotlb-coherent or all)",
                shorten(s)
            )
        })
    }
}

/// Basic counter names of docs/design.md §5 (the DART's own list). `faults` and
/// `rpc_refused` also take a `.CODE` / `.KIND` suffix.
pub fn counter_names() -> impl Iterator<Item = &'static str> {
    dart::stats::Counter::ALL.into_iter().map(|c| c.name())
}

/// A counter reference: `"DART.NAME"` or `"DART.sSID.NAME"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CounterRef {
    /// The DART's name (not resolved by the parser).
    pub dart: String,
    /// The stream, for per-stream counters.
    pub stream: Option<u32>,
    /// The counter (`maps`, `faults.no-pte`, …).
    pub name: String,
}

impl fmt::Display for CounterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stream {
            Some(sid) => write!(f, "{}.s{}.{}", self.dart, sid, self.name),
            None => write!(f, "{}.{}", self.dart, self.name),
        }
    }
}

/// How a counter check compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterCmp {
    /// `equals = N`.
    Equals(u64),
    /// `at_least = N`.
    AtLeast(u64),
}

impl CounterCmp {
    /// Whether `value` satisfies the comparison.
    pub const fn holds(self, value: u64) -> bool {
        match self {
            CounterCmp::Equals(n) => value == n,
            CounterCmp::AtLeast(n) => value >= n,
        }
    }
}

/// What a `check` step checks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// `invariant = "…"`.
    Invariant(Invariant),
    /// `counter = "…"` with `equals` or `at_least`.
    Counter {
        /// Which counter.
        counter: CounterRef,
        /// The comparison.
        cmp: CounterCmp,
    },
    /// `holds = TARGET` with `equals` or `at_least`: the slice holds
    /// devices keep on the target's frames, summed over frames and DARTs.
    Holds {
        /// Whose frames.
        target: Target,
        /// The comparison.
        cmp: CounterCmp,
    },
}

/// The `call` of an `rpc` step: the request a coprocessor sends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RpcCall {
    /// `call = "map"`: map part of a granted buffer.
    Map {
        /// `handle`: the grant's name.
        handle: String,
        /// `offset` into the grant in bytes (default 0).
        offset: u64,
        /// `len` in bytes.
        len: u64,
        /// `iova`.
        iova: Address,
        /// `perm`.
        perm: Perm,
    },
    /// `call = "unmap"`.
    Unmap {
        /// `iova`.
        iova: Address,
        /// `len` in bytes.
        len: u64,
    },
    /// `call = "map-pa"`: map a raw physical address (always refused).
    MapPa {
        /// `pa`.
        pa: Address,
        /// `len` in bytes.
        len: u64,
        /// `iova`.
        iova: Address,
        /// `perm`.
        perm: Perm,
    },
    /// `call = "raw"`: these bytes, written into the ring as a message
    /// (zero-padded to a slot). Bytes that do not fit one slot are never
    /// cut to fit: the service refuses the whole message (`bad-message`)
    /// and the ring is not written.
    Raw {
        /// `bytes` (hex data).
        bytes: Vec<u8>,
    },
}

impl RpcCall {
    /// The scenario-file spelling of the call.
    pub const fn name(&self) -> &'static str {
        match self {
            RpcCall::Map { .. } => "map",
            RpcCall::Unmap { .. } => "unmap",
            RpcCall::MapPa { .. } => "map-pa",
            RpcCall::Raw { .. } => "raw",
        }
    }
}

/// Every `op` name, in the order of docs/design.md §6.
pub const OP_NAMES: [&str; 26] = [
    "alloc",
    "retype",
    "free",
    "cpu-map",
    "cpu-unmap",
    "cpu-write",
    "cpu-read",
    "map",
    "unmap",
    "flush",
    "grant",
    "revoke",
    "rpc",
    "dma-read",
    "dma-write",
    "bypass",
    "mmio-write",
    "mmio-read",
    "pte-write",
    "pte-read",
    "release-table",
    "check",
    "race",
    "watch",
    "hold",
    "release",
];

/// What a step does, with its fields (docs/design.md §6 table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `alloc`: take frames from `free` and type them.
    Alloc {
        /// `name` of the new buffer.
        name: String,
        /// `type`.
        ty: FrameType,
        /// `frames` (default 1).
        frames: u64,
        /// `align` (frames, a power of two, default 1): every frame's PA is
        /// a multiple of this many frames (a t8110 root at 4 KiB pages
        /// needs 4: its TTBR names 16 KiB units).
        align: u64,
    },
    /// `retype`.
    Retype {
        /// `target`.
        target: Target,
        /// `type`: the new type.
        ty: FrameType,
    },
    /// `free`.
    Free {
        /// `target`.
        target: Target,
    },
    /// `cpu-map`.
    CpuMap {
        /// `target`.
        target: Target,
        /// `space`.
        space: Space,
        /// `perm`: `r` or `rw`.
        perm: Perm,
    },
    /// `cpu-unmap`.
    CpuUnmap {
        /// `target`.
        target: Target,
        /// `space`.
        space: Space,
        /// `perm` (optional: `r` or `rw`).
        perm: Option<Perm>,
    },
    /// `cpu-write`: through the kernel's physical aperture.
    CpuWrite {
        /// `target` (one frame).
        target: Target,
        /// `offset` in bytes (default 0).
        offset: u64,
        /// `data`.
        data: Vec<u8>,
    },
    /// `cpu-read`: through the kernel's physical aperture.
    CpuRead {
        /// `target`.
        target: Target,
        /// `offset` in bytes (default 0).
        offset: u64,
        /// `len` in bytes (defaults to the length of `data` when that is given).
        len: u64,
        /// `data`: the bytes expected (optional).
        data: Option<Vec<u8>>,
    },
    /// `map`: the kernel maps frames into a device's stream.
    Map {
        /// `device`.
        device: String,
        /// `iova`.
        iova: Address,
        /// `target`.
        target: Target,
        /// `perm`.
        perm: Perm,
        /// `subpage`: allowed byte range `[start, end)` of the page (optional).
        subpage: Option<Range<u64>>,
    },
    /// `unmap`.
    Unmap {
        /// `device`.
        device: String,
        /// `iova`.
        iova: Address,
        /// `len` in bytes.
        len: u64,
    },
    /// `flush`: invalidate a DART's IOTLB.
    Flush {
        /// `dart`.
        dart: String,
        /// `stream` (`None`: all streams).
        stream: Option<u32>,
    },
    /// `grant`: give a device a buffer under a handle.
    Grant {
        /// `device`.
        device: String,
        /// `target`.
        target: Target,
        /// `perm`: the most the device may ask for.
        perm: Perm,
        /// `name`: the handle.
        name: String,
    },
    /// `revoke`: withdraw a grant and everything mapped through it.
    Revoke {
        /// `name`: the handle.
        name: String,
    },
    /// `rpc`: the device sends a request to the mapper service.
    Rpc {
        /// `device`.
        device: String,
        /// `call` and its fields.
        call: RpcCall,
    },
    /// `dma-read`.
    DmaRead {
        /// `device`.
        device: String,
        /// `iova`.
        iova: Address,
        /// `len` in bytes (defaults to the length of `data` when that is given).
        len: u64,
        /// `data`: the bytes expected (optional).
        data: Option<Vec<u8>>,
    },
    /// `dma-write`.
    DmaWrite {
        /// `device`.
        device: String,
        /// `iova`.
        iova: Address,
        /// `data`.
        data: Vec<u8>,
    },
    /// `bypass`: ask for DART bypass on a device's stream.
    Bypass {
        /// `device`.
        device: String,
        /// `enable`.
        enable: bool,
    },
    /// `mmio-write`: a DART register write.
    MmioWrite {
        /// `dart`.
        dart: String,
        /// `offset` of the register.
        offset: u64,
        /// `value`.
        value: MmioValue,
    },
    /// `mmio-read`: a DART register read.
    MmioRead {
        /// `dart`.
        dart: String,
        /// `offset` of the register.
        offset: u64,
        /// `value`: expected (optional).
        value: Option<MmioValue>,
        /// `mask`: bits compared (optional: all; only with `value`).
        mask: Option<u64>,
    },
    /// `pte-write`: a driver writes one entry of a table it built, through
    /// the monitor ([`dart::Dart::write_table_entry`]).
    PteWrite {
        /// `dart`.
        dart: String,
        /// `table`: `NAME[i]` (one frame of a `dart-table` buffer) or
        /// `ttbr:DEVICE` (the table TTBR 0 of that device's stream names).
        table: Target,
        /// `index` of the entry.
        index: u64,
        /// `value`.
        value: PteValue,
    },
    /// `pte-read`: read one entry of a table of the DART back
    /// ([`dart::Dart::read_table_entry`]).
    PteRead {
        /// `dart`.
        dart: String,
        /// `table`: `NAME[i]` (one frame of a `dart-table` buffer) or
        /// `ttbr:DEVICE` (the table TTBR 0 of that device's stream names).
        table: Target,
        /// `index` of the entry.
        index: u64,
        /// `value`: expected (optional).
        value: Option<PteValue>,
        /// `mask`: bits compared (optional: all 64; only with `value`).
        mask: Option<u64>,
    },
    /// `release-table`: the driver ends a table's registration with the
    /// DART ([`dart::Dart::release_table`]), so its frame can be freed.
    ReleaseTable {
        /// `dart`.
        dart: String,
        /// `table`: `NAME[i]` (one frame of a `dart-table` buffer) or
        /// `ttbr:DEVICE` (the table TTBR 0 of that device's stream names).
        table: Target,
    },
    /// `hold`: the device holds the frames of `[iova, iova + len)` as a
    /// slice of them would, until `release`.
    Hold {
        /// `device`.
        device: String,
        /// `iova`.
        iova: Address,
        /// `len` in bytes.
        len: u64,
        /// `perm`: the direction translated (default `r`).
        perm: Perm,
    },
    /// `release`: the device drops every hold it keeps.
    Release {
        /// `device`.
        device: String,
    },
    /// `check`.
    Check(Check),
    /// `watch`: trace every DMA of a device that touches `[iova, iova + len)`
    /// (an event with the data, when the run records events), or with
    /// `enable = false` stop watching exactly that range.
    Watch {
        /// `device`.
        device: String,
        /// `iova`.
        iova: Address,
        /// `len` in bytes.
        len: u64,
        /// `enable` (default true).
        enable: bool,
    },
    /// `race`: threads of steps run concurrently, `iterations` times;
    /// invariants are checked after.
    Race {
        /// `iterations` (default 1, at least 1).
        iterations: u64,
        /// `threads`: one step list per thread (none empty).
        threads: Vec<Vec<Step>>,
    },
}

impl Op {
    /// The scenario-file name of the op (`alloc`, `cpu-map`, …).
    pub const fn name(&self) -> &'static str {
        match self {
            Op::Alloc { .. } => "alloc",
            Op::Retype { .. } => "retype",
            Op::Free { .. } => "free",
            Op::CpuMap { .. } => "cpu-map",
            Op::CpuUnmap { .. } => "cpu-unmap",
            Op::CpuWrite { .. } => "cpu-write",
            Op::CpuRead { .. } => "cpu-read",
            Op::Map { .. } => "map",
            Op::Unmap { .. } => "unmap",
            Op::Flush { .. } => "flush",
            Op::Grant { .. } => "grant",
            Op::Revoke { .. } => "revoke",
            Op::Rpc { .. } => "rpc",
            Op::DmaRead { .. } => "dma-read",
            Op::DmaWrite { .. } => "dma-write",
            Op::Bypass { .. } => "bypass",
            Op::MmioWrite { .. } => "mmio-write",
            Op::MmioRead { .. } => "mmio-read",
            Op::PteWrite { .. } => "pte-write",
            Op::PteRead { .. } => "pte-read",
            Op::ReleaseTable { .. } => "release-table",
            Op::Hold { .. } => "hold",
            Op::Release { .. } => "release",
            Op::Check(_) => "check",
            Op::Race { .. } => "race",
            Op::Watch { .. } => "watch",
        }
    }
}

/// One `[[step]]` (or one step of a race thread).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Position from 0: in [`Scenario::steps`], or in its race thread.
    pub index: usize,
    /// 1-based line of its `[[step]]` header, or of its inline table.
    pub line: usize,
    /// `expect`: `ok` by default, `any` inside a race.
    pub expect: Outcome,
    /// The op and its fields.
    pub op: Op,
}

impl Step {
    /// The 1-based step number used in messages (`step 3`).
    pub const fn number(&self) -> usize {
        self.index + 1
    }
}

/// Cuts a user-supplied string for an error message.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out.escape_debug().to_string()
}
