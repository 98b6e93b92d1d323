//! The DART's MMIO register file (docs/design.md §3 "Streams and registers").
//!
//! # The model
//!
//! Every [`Dart`](crate::Dart) has a 32-bit register window of
//! [`MMIO_SIZE`] bytes (0x4000, the smallest resource Linux's
//! `apple-dart.c` accepts), read and written with
//! [`Dart::mmio_read`](crate::Dart::mmio_read) and
//! [`Dart::mmio_write`](crate::Dart::mmio_write). The layouts follow Linux
//! `drivers/iommu/apple-dart.c` (`DART_T8020_*`, `DART_T8110_*`) and m1n1's
//! `hw/dart8020.py` / `hw/dart8110.py`; each variant has its own module
//! ([`t8020`], also used by t6000, and [`t8110`]) holding the named offsets and
//! fields and the small functions that encode the DART's state into register
//! values and decode register values back. No other module twiddles
//! register bits.
//!
//! **One source of truth.** The registers hold no copy of the stream
//! configuration: TCR, TTBR and the stream-enable bitmaps are computed on
//! every read from the per-stream state the high-level API uses
//! ([`StreamConfig`] and the TTBR slots), and every write is decoded and
//! applied through the same paths as [`Dart::set_stream_config`],
//! [`Dart::set_ttbr`] and [`Dart::flush`], with all their checks. ERROR and
//! ERROR_ADDR are computed from the fault latch ([`Dart::error`]). Only
//! state that exists nowhere else lives here: STREAM_SELECT, the lock /
//! protect bits and ERROR_MASK.
//!
//! **What is emulated.**
//! - PARAMS (read-only), describing the instance: page shift (PARAMS1
//!   \[27:24\]), bypass support (PARAMS2 bit 0, always 1: the DART can bypass,
//!   the SoC decides which streams may); t8110 PA width, VA width (PARAMS3)
//!   and the number of streams (PARAMS4 \[8:0\]).
//! - TCR per stream: TRANSLATE_ENABLE, BYPASS_DART, BYPASS_DAPF and (t8110)
//!   FOUR_LEVEL. t8110 TCR REMAP / REMAP_EN and t8020 STREAM_REMAP
//!   (0x80–0x8c) are read-as-written with no effect on translation
//!   (*inferred*: no public driver programs them, so no consistent
//!   semantics can be stated; the IOTLB and the walk use the stream's SID).
//!   Other TCR bits are dropped on write and read as 0.
//! - TTBR per stream (and index): VALID plus the table address.
//! - Stream enables: t8020 STREAMS_ENABLE (0xfc) as a read/write bitmap;
//!   t8110 ENABLE_STREAMS (0xc00 + 4·i) write-1-to-set and DISABLE_STREAMS
//!   (0xc20 + 4·i) write-1-to-clear, 32 streams per register; reads of
//!   either return the enabled bitmap. Bits of streams the instance does not
//!   have read as 0 and are dropped on write.
//! - Invalidation: t8020 STREAM_SELECT (0x34) + STREAM_COMMAND (0x20,
//!   INVALIDATE bit 20) and t8110 TLB_CMD (0x80, OP 0 flush all, 1 flush
//!   STREAM). A command runs [`Dart::flush`]'s work — IOTLB entries die, DMA
//!   in flight is waited for, the deferred unmaps it covers complete —
//!   synchronously inside the write, so BUSY (t8020 bit 2, t8110 bit 31)
//!   always reads 0 afterwards and a driver's poll loop ends at once. The
//!   command registers read 0.
//! - ERROR, ERROR_ADDR_LO/HI: the latched fault (FLAG bit 31, the stream,
//!   the code bit from [`FaultKind::error_bit`](crate::FaultKind::error_bit),
//!   the IOVA). A write with FLAG set clears the latch
//!   ([`Dart::clear_error`]) and the interrupt line drops; other ERROR writes
//!   are ignored.
//! - Lock: t8020 CONFIG (0x60) LOCK bit 15; t8110 PROTECT (0x200)
//!   LOCK_TCR_TTBR bit 0. Once set, TCR and TTBR writes are ignored
//!   (`Ok`, counted as [`MmioOutcome::Locked`]), and the typed calls that
//!   program the same registers ([`Dart::set_stream_config`],
//!   [`Dart::set_bypass`], [`Dart::set_ttbr`], and a [`Dart::map`] that
//!   would give a stream its first table) return
//!   [`DartError::Locked`] and change nothing.
//!   Enables, flushes and page-table updates under existing TTBRs are not
//!   locked.
//!
//! **Outcomes.** A misaligned or out-of-window offset is an error
//! ([`MmioError::Misaligned`], [`MmioError::OutOfRange`]). An offset with no
//! emulated register reads 0 and drops writes (`Ok`,
//! [`MmioOutcome::Unknown`]); so do the TCR/TTBR slots of streams the instance
//! does not have. A write to a read-only register, or a command the model
//! does not implement, is dropped (`Ok`, [`MmioOutcome::Ignored`]). A write
//! the DART's rules refuse returns [`MmioError::Refused`] with the reason and
//! changes nothing: BYPASS on a stream the SoC does not trust
//! (`bypass-denied`), a TTBR aimed at a frame that is not one of this DART's
//! `dart-table` frames (an invariant breach: the SoC's `on_violation` mode
//! halts the system or rejects the write), and any access once the system
//! has halted. Every access is counted ([`MmioCounts`]) and, with an
//! observer installed ([`Dart::set_mmio_observer`]), reported as an
//! [`MmioAccess`] that decodes, with [`decode_access`], into register and
//! field names the way m1n1's DART tracer prints them.
//!
//! **Serialization.** Register accesses that read-modify-write state
//! (enables, TCR, TTBR, STREAM_SELECT, commands, lock bits) hold the DART's
//! register lock, taken before the mapper lock (order: register lock →
//! mapper lock → error latch). A write that sets or clears the lock bit
//! also holds the mapper lock, under which every TCR/TTBR change (typed or
//! by register) checks the lock: the check and the change are one step.
//! PARAMS and the error registers need no
//! register lock and take none, so an interrupt handler running inside the
//! interrupt callback (on the faulting DMA thread) can read and clear ERROR
//! while another thread holds the register lock waiting for DMA in flight.
//! The interrupt callback runs inside the faulting DMA: an invalidation
//! (a flush command, [`Dart::flush`], an unmap) waits for DMA in flight,
//! including that one, so from the callback it is refused
//! ([`crate::DartError::InInterrupt`]). The DMA path never takes a register lock.
//!
//! **Inferred** (no public source states these; they are kept here, in
//! [`t8020`] and [`t8110`]):
//! - t8110 TTBR: bits \[29:2\] hold PA >> 14 at every page size, as Linux
//!   (`DART_T8110_TTBR_SHIFT`) and m1n1 decode it, so a root is 16 KiB
//!   aligned even at 4 KiB pages and lies below 2^42 (confirmed by both
//!   drivers; listed here because the 4 KiB case is not documented).
//! - t8110 PARAMS3 reports VA width ≤ PA width, as Linux's
//!   `apple_dart_alloc_pgtable` requires (ias ≤ oas): 42/42 at 16 KiB (as
//!   T602x parts), 39/42 at 4 KiB; TCR.FOUR_LEVEL still works, and IOVAs at
//!   or above 2^42 fault as beyond the geometry.
//!   t8110 PARAMS2 also sets SUPPORT_REG_LOCK (bit 1: PROTECT is emulated).
//!   Every other PARAMS field (TLB geometry, versions, client counts) is 0.
//! - ENABLE_STREAMS / DISABLE_STREAMS are write-1-to-set / write-1-to-clear
//!   over one bitmap, read back through either.
//! - ERROR is write-1-to-clear of FLAG, clearing the whole latch. No
//!   direction bit is set (t8020 WRITE bit 10 would fall inside Linux's
//!   code mask and turn every write fault into "unknown"; t8110
//!   WRITE_nREAD bit 28 is left 0 to match).
//! - t8110 ERROR_MASK (m1n1: ERROR_DISABLE) holds ERROR code bits; a fault
//!   whose code bit is set there still fails the DMA and is counted, but
//!   does not latch ERROR nor raise the interrupt line. It resets to 0.
//! - t8110 ERROR_STREAMS (0x1c0 + 4·i, m1n1 ERR_SECONDARY) reads the latched
//!   fault's stream as a bitmap; writes (Linux writes all-ones after
//!   clearing ERROR) are accepted and ignored: the latch clears through ERROR.
//! - t8110 PROTECT (0x200) ORs in protection bits \[4:0\]; UNPROTECT (0x204)
//!   clears them except bits written to PROTECT_LOCK (0x208), which stick.
//!   Only LOCK_TCR_TTBR (bit 0) has an effect. UNPROTECT reads 0. t8020
//!   CONFIG.LOCK is sticky (writing 0 does not unlock); other CONFIG bits read 0.
//! - A TTBR written with VALID clear reads back 0 (its address bits are
//!   not kept). STREAM_SELECT keeps all 32 bits written; bits of streams the
//!   instance lacks select nothing.
//! - Reset values: everything 0 except PARAMS; streams start disabled with
//!   TCR 0 and no TTBR (as [`Dart::new`] builds them).
//! - Decoder names: t8020 PARAMS at 0x0/0x4 are not in m1n1's t8020 map; they
//!   are named as m1n1's t8110 map names the same offsets (`PARAMS_0`
//!   LOG2_PGSZ, `PARAMS_4` SUPPORT_FULL_BYPASS).
//!
//! [`StreamConfig`]: crate::StreamConfig
//! [`Dart::set_stream_config`]: crate::Dart::set_stream_config
//! [`Dart::set_ttbr`]: crate::Dart::set_ttbr
//! [`Dart::set_bypass`]: crate::Dart::set_bypass
//! [`Dart::flush`]: crate::Dart::flush
//! [`Dart::error`]: crate::Dart::error
//! [`Dart::clear_error`]: crate::Dart::clear_error
//! [`Dart::set_mmio_observer`]: crate::Dart::set_mmio_observer
//! [`Dart::map`]: crate::Dart::map
//! [`Dart::new`]: crate::Dart::new

pub mod t8020;
pub mod t8110;

use crate::error::DartError;
use crate::fault::Fault;
use crate::types::StreamConfig;
use crate::variant::Variant;
use std::fmt;

/// Bytes of every variant's register window (Linux requires at least 0x4000).
pub const MMIO_SIZE: u64 = 0x4000;

/// A bit field `[hi:lo]` of a 32-bit register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// Highest bit.
    pub hi: u32,
    /// Lowest bit.
    pub lo: u32,
}

impl Field {
    /// The field `[hi:lo]`.
    pub const fn new(hi: u32, lo: u32) -> Field {
        Field { hi, lo }
    }

    /// The one-bit field `[n:n]`.
    pub const fn bit(n: u32) -> Field {
        Field { hi: n, lo: n }
    }

    /// Width in bits.
    pub const fn width(self) -> u32 {
        self.hi - self.lo + 1
    }

    /// The field's bits in place.
    pub const fn mask(self) -> u32 {
        (((1u64 << self.width()) - 1) as u32) << self.lo
    }

    /// The field's value in `reg`.
    pub const fn get(self, reg: u32) -> u32 {
        (reg & self.mask()) >> self.lo
    }

    /// `value` placed in the field (bits beyond its width dropped).
    pub const fn put(self, value: u32) -> u32 {
        (value << self.lo) & self.mask()
    }

    /// Whether any bit of the field is set in `reg`.
    pub const fn is_set(self, reg: u32) -> bool {
        reg & self.mask() != 0
    }
}

/// A named field, as the decoder prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NamedField {
    /// m1n1's name.
    pub name: &'static str,
    /// The bits.
    pub field: Field,
}

/// `NamedField`s from `("NAME", bit)` or `("NAME", hi, lo)`, in m1n1's
/// class-definition order.
macro_rules! fields {
    ($(($name:literal, $hi:literal $(, $lo:literal)?)),* $(,)?) => {
        &[$($crate::hw::regs::NamedField {
            name: $name,
            field: fields!(@f $hi $(, $lo)?),
        }),*]
    };
    (@f $bit:literal) => { $crate::hw::regs::Field::bit($bit) };
    (@f $hi:literal, $lo:literal) => { $crate::hw::regs::Field::new($hi, $lo) };
}
pub(crate) use fields;

/// A register as the decoder names it: m1n1's name (with the array index,
/// if any) and its fields.
pub(crate) type Described = (String, &'static [NamedField]);

/// The emulated register an offset selects (variant-neutral).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reg {
    /// PARAMS1..4, numbered from 0 (offset / 4).
    Params(u32),
    /// t8020 STREAM_SELECT.
    StreamSelect,
    /// t8020 STREAM_COMMAND.
    StreamCommand,
    /// t8110 TLB_CMD.
    TlbCmd,
    /// ERROR.
    Error,
    /// t8110 ERROR_MASK.
    ErrorMask,
    /// ERROR_ADDR_LO.
    ErrorAddrLo,
    /// ERROR_ADDR_HI.
    ErrorAddrHi,
    /// t8110 ERROR_STREAMS word.
    ErrorStreams(u32),
    /// t8020 CONFIG (lock).
    Config,
    /// t8110 PROTECT.
    Protect,
    /// t8110 UNPROTECT.
    Unprotect,
    /// t8110 PROTECT_LOCK.
    ProtectLock,
    /// t8020 STREAMS_ENABLE (a plain bitmap, word 0).
    StreamsEnable,
    /// t8110 ENABLE_STREAMS word (write 1 to set).
    EnableStreams(u32),
    /// t8110 DISABLE_STREAMS word (write 1 to clear).
    DisableStreams(u32),
    /// TCR of a stream the instance has.
    Tcr(u32),
    /// TTBR (stream, index) of a stream the instance has.
    Ttbr(u32, usize),
    /// t8020/t6000 STREAM_REMAP\[i\] (read-as-written).
    Remap(u32),
    /// Nothing emulated here.
    Unknown,
}

impl Reg {
    /// Registers that need no register lock: read-only or backed by the
    /// error latch and atomics only.
    pub(crate) const fn lock_free(self) -> bool {
        matches!(
            self,
            Reg::Params(_)
                | Reg::Error
                | Reg::ErrorMask
                | Reg::ErrorAddrLo
                | Reg::ErrorAddrHi
                | Reg::ErrorStreams(_)
                | Reg::Unknown
        )
    }
}

/// Whether `v` uses the t8020 layout (t8020 and t6000 share it).
const fn is_t8020(v: Variant) -> bool {
    matches!(v, Variant::T8020 | Variant::T6000)
}

/// The register at `offset` of a `variant` DART with `streams` streams.
pub(crate) fn reg_at(variant: Variant, streams: u32, offset: u32) -> Reg {
    let reg = if is_t8020(variant) { t8020::reg_at(offset) } else { t8110::reg_at(offset) };
    match reg {
        Reg::Tcr(sid) | Reg::Ttbr(sid, _) if sid >= streams => Reg::Unknown,
        r => r,
    }
}

/// TCR value of `c`.
pub(crate) fn tcr_encode(variant: Variant, c: StreamConfig) -> u32 {
    if is_t8020(variant) {
        t8020::tcr_encode(c)
    } else {
        t8110::tcr_encode(c)
    }
}

/// `old` with the TCR fields of `tcr` applied (enable state kept).
pub(crate) fn tcr_decode(variant: Variant, tcr: u32, old: StreamConfig) -> StreamConfig {
    if is_t8020(variant) {
        t8020::tcr_decode(tcr, old)
    } else {
        t8110::tcr_decode(tcr, old)
    }
}

/// The TTBR register value naming `table` (0 for none) on a `variant` DART
/// with pages of `1 << page_shift` bytes. What a driver writes to point a
/// stream at a table, and what the scenario value `ttbr:NAME[i]` means.
/// No variant's encoding depends on the page size any more (t8110: PA >> 14
/// at 4 KiB pages too, as Linux and m1n1); `page_shift` is kept for callers.
pub fn encode_ttbr(variant: Variant, _page_shift: u32, table: Option<u64>) -> u32 {
    if is_t8020(variant) {
        t8020::ttbr_encode(table)
    } else {
        t8110::ttbr_encode(table)
    }
}

/// Whether a TTBR register value can name the table at `pa` exactly
/// (t8110: PA >> 14 in 28 bits, so 16 KiB aligned and below 2^42 at every
/// page size).
pub fn ttbr_names(variant: Variant, page_shift: u32, pa: u64) -> bool {
    decode_ttbr(variant, page_shift, encode_ttbr(variant, page_shift, Some(pa))) == Some(pa)
}

/// The alignment in bytes a TTBR needs of the table it names: t8110 16 KiB
/// at every page size; t8020/t6000 (PA >> 12) the page size.
pub fn ttbr_align(variant: Variant, page_shift: u32) -> u64 {
    if is_t8020(variant) {
        1 << page_shift
    } else {
        1 << t8110::TTBR_SHIFT.max(page_shift)
    }
}

/// The table a TTBR register value names, `None` if VALID is clear.
pub fn decode_ttbr(variant: Variant, _page_shift: u32, ttbr: u32) -> Option<u64> {
    if is_t8020(variant) {
        t8020::ttbr_decode(ttbr)
    } else {
        t8110::ttbr_decode(ttbr)
    }
}

/// The ERROR value of a latched fault (0 when none).
pub(crate) fn error_encode(variant: Variant, fault: Option<&Fault>) -> u32 {
    match fault {
        None => 0,
        Some(f) if is_t8020(variant) => t8020::error_encode(f),
        Some(f) => t8110::error_encode(f),
    }
}

/// PARAMS register `idx` (0-based) of an instance, `None` where the variant
/// has none.
pub(crate) fn params(variant: Variant, idx: u32, page_shift: u32, streams: u32) -> Option<u32> {
    if is_t8020(variant) {
        t8020::params(idx, page_shift)
    } else {
        t8110::params(idx, page_shift, streams)
    }
}

/// Direction of an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmioDir {
    /// A register read.
    Read,
    /// A register write.
    Write,
}

/// What an MMIO access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmioOutcome {
    /// Read, or written and applied.
    Done,
    /// No emulated register at this offset: read 0, write dropped.
    Unknown,
    /// A read-only register or a command the model does not implement:
    /// the write was dropped.
    Ignored,
    /// A TCR/TTBR write (or an unlock) the lock bit dropped.
    Locked,
    /// The write was refused (the error kind: `bypass-denied`,
    /// `forbidden-type`, `panic`, `halted`, …) and changed nothing.
    Refused(&'static str),
    /// Misaligned or outside the register window: an error.
    BadOffset,
}

impl fmt::Display for MmioOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmioOutcome::Done => f.write_str("done"),
            MmioOutcome::Unknown => f.write_str("unknown"),
            MmioOutcome::Ignored => f.write_str("ignored"),
            MmioOutcome::Locked => f.write_str("locked"),
            MmioOutcome::Refused(kind) => write!(f, "refused:{kind}"),
            MmioOutcome::BadOffset => f.write_str("bad-offset"),
        }
    }
}

/// One register access, as the observer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioAccess {
    /// Sequence number, per DART. Accesses that hold the register lock get
    /// their number under it, so their order is the order they took effect.
    pub seq: u64,
    /// The DART's variant (to decode `offset`).
    pub variant: Variant,
    /// Byte offset in the register window (as given, even if bad).
    pub offset: u64,
    /// The value read, or the value written.
    pub value: u32,
    /// Read or write.
    pub dir: MmioDir,
    /// What it did.
    pub outcome: MmioOutcome,
}

impl MmioAccess {
    /// Register and field names of this access ([`decode_access`]).
    pub fn decode(&self) -> DecodedAccess {
        decode_access(self.variant, self.offset, self.value)
    }
}

impl fmt::Display for MmioAccess {
    /// m1n1's `Tracer.evt_rw` line: `MMIO: W.4   TCR[3] = 0x80 (…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = if self.dir == MmioDir::Read { 'R' } else { 'W' };
        write!(f, "MMIO: {d}.{:<2}  {}", 4, self.decode())
    }
}

/// The observer hook: called after every register access, outside the
/// register lock. See [`crate::Dart::set_mmio_observer`].
pub type MmioObserver = dyn Fn(&MmioAccess) + Send + Sync;

/// A register access decoded into m1n1's register and field names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedAccess {
    /// The offset.
    pub offset: u64,
    /// The value.
    pub value: u32,
    /// The register's name as m1n1 prints it (`TCR[3]`, `TTBR[(3, 1)]`,
    /// `ERROR`), or the offset in hex (`0x7f0`) where no register is known.
    pub register: String,
    /// Each field's name and value, in m1n1's order (empty for registers
    /// m1n1 gives no fields, and for unknown offsets).
    pub fields: Vec<(String, u64)>,
    /// Whether a register is known at this offset.
    pub known: bool,
    layout: &'static [NamedField],
}

/// Names the register at `offset` of a `variant` DART and splits `value`
/// into its fields. Pure: independent of any instance (so the TCR/TTBR of
/// streams an instance lacks are still named).
pub fn decode_access(variant: Variant, offset: u64, value: u32) -> DecodedAccess {
    let described = match u32::try_from(offset) {
        Ok(off) if off.is_multiple_of(4) && u64::from(off) < MMIO_SIZE => {
            if is_t8020(variant) {
                t8020::describe(off)
            } else {
                t8110::describe(off)
            }
        }
        _ => None,
    };
    match described {
        Some((register, layout)) => DecodedAccess {
            offset,
            value,
            register,
            fields: layout.iter().map(|f| (f.name.to_string(), u64::from(f.field.get(value)))).collect(),
            known: true,
            layout,
        },
        None => DecodedAccess {
            offset,
            value,
            register: format!("{offset:#x}"),
            fields: Vec::new(),
            known: false,
            layout: &[],
        },
    }
}

impl fmt::Display for DecodedAccess {
    /// m1n1's `Register.__str__`: `TCR[3] = 0x80 (BYPASS_DAPF=0, …)`;
    /// fields wider than 3 bits in hex, others in decimal; an unknown offset
    /// as `0x7f0 = 0x5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.known {
            return write!(f, "{} = {:#x}", self.register, self.value);
        }
        write!(f, "{} = 0x{:x} (", self.register, self.value)?;
        for (i, ((name, v), spec)) in self.fields.iter().zip(self.layout).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if spec.field.width() > 3 {
                write!(f, "{name}=0x{v:x}")?;
            } else {
                write!(f, "{name}={v}")?;
            }
        }
        f.write_str(")")
    }
}

/// Counts of register accesses, per DART.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MmioCounts {
    /// Reads (every call, bad offsets included).
    pub reads: u64,
    /// Writes (every call, bad offsets included).
    pub writes: u64,
    /// Accesses to offsets with no emulated register.
    pub unknown: u64,
    /// Writes dropped: read-only registers, unimplemented commands.
    pub ignored: u64,
    /// TCR/TTBR writes (and unlock attempts) the lock dropped.
    pub locked: u64,
    /// Accesses refused with [`MmioError::Refused`].
    pub refused: u64,
    /// Misaligned or out-of-window offsets.
    pub bad_offset: u64,
}

/// An MMIO access that failed. A failed access changed nothing, except a
/// refusal whose source is [`frame_table::Error::Panic`] (the system halted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MmioError {
    /// The offset is not a multiple of 4.
    #[error("MMIO offset {offset:#x} is not 4-byte aligned")]
    Misaligned {
        /// The offset.
        offset: u64,
    },
    /// The offset is beyond the register window.
    #[error("MMIO offset {offset:#x} is outside the {size:#x}-byte register window")]
    OutOfRange {
        /// The offset.
        offset: u64,
        /// The window's size.
        size: u64,
    },
    /// The DART refused the access (bypass on an untrusted stream, a TTBR
    /// at a frame that is not this DART's table, a halted system).
    #[error("MMIO access to {register} ({offset:#x}) refused: {source}")]
    Refused {
        /// The offset.
        offset: u64,
        /// The register's decoded name.
        register: String,
        /// Why.
        source: DartError,
    },
}

impl MmioError {
    /// The outcome kind as scenario files spell it: `bad-range` for a bad
    /// offset, else the refusal's kind (`bypass-denied`, `forbidden-type`,
    /// `panic`, `halted`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            MmioError::Misaligned { .. } | MmioError::OutOfRange { .. } => "bad-range",
            MmioError::Refused { source, .. } => source.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let f = Field::new(27, 24);
        assert_eq!((f.width(), f.mask(), f.get(0x0e00_0000), f.put(0x1e)), (4, 0x0f00_0000, 0xe, 0x0e00_0000));
        assert_eq!(Field::bit(31).mask(), 0x8000_0000);
        assert_eq!(Field::new(31, 0).mask(), u32::MAX);
    }

    #[test]
    fn decodes_like_m1n1() {
        let d = decode_access(Variant::T8020, 0x10c, 0x80);
        assert_eq!(d.to_string(), "TCR[3] = 0x80 (BYPASS_DAPF=0, BYPASS_DART=0, TRANSLATE_ENABLE=1)");
        assert_eq!(d.fields[2], ("TRANSLATE_ENABLE".to_string(), 1));
        assert_eq!(decode_access(Variant::T6000, 0x234, 0).register, "TTBR[(3, 1)]");
        assert_eq!(decode_access(Variant::T8020, 0x34, 0xffff).to_string(), "STREAM_SELECT = 0xffff ()");
        assert_eq!(decode_access(Variant::T8020, 0x7f0, 5).to_string(), "0x7f0 = 0x5");
        assert_eq!(decode_access(Variant::T8020, 0x4000, 5).register, "0x4000");
        assert_eq!(
            decode_access(Variant::T8110, 0x80, 0x103).to_string(),
            "TLB_OP = 0x103 (BUSY=0, HARDWARE_FLUSH=0, FLUSH_VA_RANGE=0, ENABLE_STT_FLUSH=0, \
             DISABLE_STC_FLUSH=0, OP=1, STREAM=0x3)"
        );
        assert_eq!(decode_access(Variant::T8110, 0x1404, 0).register, "TTBR[1]");
        assert_eq!(decode_access(Variant::T8110, 0xc24, 0).register, "DISABLE_STREAMS[1]");
        let a = MmioAccess {
            seq: 0,
            variant: Variant::T8020,
            offset: 0x10c,
            value: 0x80,
            dir: MmioDir::Write,
            outcome: MmioOutcome::Done,
        };
        assert_eq!(a.to_string(), "MMIO: W.4   TCR[3] = 0x80 (BYPASS_DAPF=0, BYPASS_DART=0, TRANSLATE_ENABLE=1)");
    }

    #[test]
    fn ttbr_round_trips() {
        for v in Variant::ALL {
            for shift in [12, 14] {
                let pa = 0x1234u64 << 14;
                assert_eq!(decode_ttbr(v, shift, encode_ttbr(v, shift, Some(pa))), Some(pa), "{v} {shift}");
                assert_eq!(encode_ttbr(v, shift, None), 0);
                assert_eq!(decode_ttbr(v, shift, 0), None);
            }
        }
        assert_eq!(encode_ttbr(Variant::T8020, 14, Some(0x8_0000_4000)), 0x8000_0000 | 0x80_0004);
        assert_eq!(encode_ttbr(Variant::T8110, 14, Some(0x8_0000_4000)), ((0x8_0000_4000u64 >> 14) << 2) as u32 | 1);
        // t8110: PA >> 14 in [29:2] at both page sizes (Linux, m1n1).
        for shift in [12, 14] {
            let v = Variant::T8110;
            assert_eq!(encode_ttbr(v, shift, Some(0x8_0000_4000)), 0x20_0001 << 2 | 1);
            assert_eq!(decode_ttbr(v, shift, 0x20_0001 << 2 | 1), Some(0x8_0000_4000));
            // Above 2^40, up to the top of 42 bits.
            for pa in [0x123_4567_c000u64, 0x3ff_ffff_c000] {
                assert_eq!(decode_ttbr(v, shift, encode_ttbr(v, shift, Some(pa))), Some(pa), "{pa:#x} {shift}");
                assert!(ttbr_names(v, shift, pa));
            }
            // A 4 KiB-aligned table, or one at 2^42: not nameable.
            assert!(!ttbr_names(v, shift, 0x8_0000_5000));
            assert!(!ttbr_names(v, shift, 1 << 42));
            assert_eq!(ttbr_align(v, shift), 1 << 14);
        }
        assert_eq!(ttbr_align(Variant::T6000, 12), 1 << 12);
    }

    #[test]
    fn tcr_round_trips() {
        for v in Variant::ALL {
            for bits in 0..16u32 {
                let c = StreamConfig {
                    enabled: true,
                    translate: bits & 1 != 0,
                    bypass: bits & 2 != 0,
                    bypass_dapf: bits & 4 != 0,
                    four_level: bits & 8 != 0 && v.has_four_level(),
                };
                assert_eq!(tcr_decode(v, tcr_encode(v, c), StreamConfig { enabled: true, ..Default::default() }), c);
            }
        }
        assert_eq!(tcr_encode(Variant::T8020, StreamConfig::TRANSLATING), 0x80);
        assert_eq!(tcr_encode(Variant::T8110, StreamConfig::TRANSLATING), 0x1);
    }
}
