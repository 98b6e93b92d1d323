//! t8020 / t6000 register layout (Linux `DART_T8020_*` and `DART_PARAMS*`,
//! m1n1 `DART8020Regs`). t6000 differs from t8020 only in its PTE format and
//! output width, not in its registers.

use super::{fields, Described, Field, NamedField, Reg};
use crate::fault::Fault;
use crate::types::StreamConfig;
use crate::variant::Variant;

/// PARAMS1: read-only instance parameters.
pub const PARAMS1: u32 = 0x000;
/// PARAMS1 page shift: the page size is `1 << PAGE_SHIFT`.
pub const PARAMS1_PAGE_SHIFT: Field = Field::new(27, 24);
/// PARAMS2: read-only instance parameters.
pub const PARAMS2: u32 = 0x004;
/// PARAMS2: the DART can bypass translation.
pub const PARAMS2_BYPASS_SUPPORT: Field = Field::bit(0);

/// STREAM_COMMAND: runs a command on the streams STREAM_SELECT names.
pub const STREAM_COMMAND: u32 = 0x020;
/// STREAM_COMMAND: invalidate the selected streams' IOTLB entries.
pub const STREAM_COMMAND_INVALIDATE: Field = Field::bit(20);
/// STREAM_COMMAND: a command is running (the emulator: always 0 on read).
pub const STREAM_COMMAND_BUSY: Field = Field::bit(2);
/// STREAM_SELECT: bitmap of the streams the next command applies to.
pub const STREAM_SELECT: u32 = 0x034;

/// ERROR: the latched fault (write FLAG to clear).
pub const ERROR: u32 = 0x040;
/// ERROR: a fault is latched.
pub const ERROR_FLAG: Field = Field::bit(31);
/// ERROR: the faulting stream.
pub const ERROR_STREAM: Field = Field::new(27, 24);
/// ERROR: the code bits (Linux's width; m1n1 says 23:0).
pub const ERROR_CODE: Field = Field::new(11, 0);
/// ERROR_ADDR_LO: faulting IOVA bits 31:0.
pub const ERROR_ADDR_LO: u32 = 0x050;
/// ERROR_ADDR_HI: faulting IOVA bits 63:32.
pub const ERROR_ADDR_HI: u32 = 0x054;

/// CONFIG: lock register.
pub const CONFIG: u32 = 0x060;
/// CONFIG: TCR/TTBR locked until reset (sticky).
pub const CONFIG_LOCK: Field = Field::bit(15);

/// STREAMS_ENABLE (m1n1 ENABLED_STREAMS): bitmap of enabled streams.
pub const STREAMS_ENABLE: u32 = 0x0fc;

/// STREAM_REMAP\[0..4\] (0x80–0x8c): four SIDs per register, one byte each.
/// Defined by Linux and m1n1, programmed by neither: emulated as
/// read-as-written from a reset value of 0, with no effect on translation
/// (*inferred*).
pub const REMAP_BASE: u32 = 0x080;

/// The REMAP registers.
pub const REMAPS: u32 = 4;

/// TCR of stream 0; stream `sid` at `TCR_BASE + 4·sid`.
pub const TCR_BASE: u32 = 0x100;
/// TCR: translate through the tables.
pub const TCR_TRANSLATE_ENABLE: Field = Field::bit(7);
/// TCR: bypass the DART (IOVA = PA).
pub const TCR_BYPASS_DART: Field = Field::bit(8);
/// TCR: bypass the DAPF.
pub const TCR_BYPASS_DAPF: Field = Field::bit(12);

/// TTBR (stream 0, index 0); (sid, idx) at `TTBR_BASE + 16·sid + 4·idx`.
pub const TTBR_BASE: u32 = 0x200;
/// TTBR: valid.
pub const TTBR_VALID: Field = Field::bit(31);
/// TTBR: the table's PA >> [`TTBR_SHIFT`].
pub const TTBR_ADDR: Field = Field::new(30, 0);
/// TTBR address shift (4 KiB units, whatever the page size).
pub const TTBR_SHIFT: u32 = 12;

/// Streams the layout has registers for.
pub const STREAMS: u32 = 16;
/// TTBRs per stream.
pub const TTBRS: u32 = 4;

/// Offset of stream `sid`'s TCR.
pub const fn tcr(sid: u32) -> u32 {
    TCR_BASE + 4 * sid
}

/// Offset of stream `sid`'s TTBR `idx`.
pub const fn ttbr(sid: u32, idx: u32) -> u32 {
    TTBR_BASE + 16 * sid + 4 * idx
}

pub(crate) fn reg_at(off: u32) -> Reg {
    match off {
        PARAMS1 | PARAMS2 => Reg::Params(off / 4),
        STREAM_COMMAND => Reg::StreamCommand,
        STREAM_SELECT => Reg::StreamSelect,
        ERROR => Reg::Error,
        ERROR_ADDR_LO => Reg::ErrorAddrLo,
        ERROR_ADDR_HI => Reg::ErrorAddrHi,
        CONFIG => Reg::Config,
        STREAMS_ENABLE => Reg::StreamsEnable,
        o if (REMAP_BASE..REMAP_BASE + 4 * REMAPS).contains(&o) => Reg::Remap((o - REMAP_BASE) / 4),
        o if (TCR_BASE..tcr(STREAMS)).contains(&o) => Reg::Tcr((o - TCR_BASE) / 4),
        o if (TTBR_BASE..ttbr(STREAMS, 0)).contains(&o) => {
            Reg::Ttbr((o - TTBR_BASE) / 16, ((o - TTBR_BASE) % 16 / 4) as usize)
        }
        _ => Reg::Unknown,
    }
}

pub(crate) const fn tcr_encode(c: StreamConfig) -> u32 {
    (if c.translate { TCR_TRANSLATE_ENABLE.mask() } else { 0 })
        | (if c.bypass { TCR_BYPASS_DART.mask() } else { 0 })
        | (if c.bypass_dapf { TCR_BYPASS_DAPF.mask() } else { 0 })
}

pub(crate) const fn tcr_decode(tcr: u32, old: StreamConfig) -> StreamConfig {
    StreamConfig {
        enabled: old.enabled,
        translate: TCR_TRANSLATE_ENABLE.is_set(tcr),
        bypass: TCR_BYPASS_DART.is_set(tcr),
        bypass_dapf: TCR_BYPASS_DAPF.is_set(tcr),
        four_level: false,
    }
}

pub(crate) fn ttbr_encode(table: Option<u64>) -> u32 {
    table.map_or(0, |pa| TTBR_VALID.mask() | TTBR_ADDR.put((pa >> TTBR_SHIFT) as u32))
}

pub(crate) fn ttbr_decode(ttbr: u32) -> Option<u64> {
    TTBR_VALID.is_set(ttbr).then(|| u64::from(TTBR_ADDR.get(ttbr)) << TTBR_SHIFT)
}

pub(crate) fn error_encode(f: &Fault) -> u32 {
    ERROR_FLAG.mask() | ERROR_STREAM.put(f.stream) | 1 << f.kind.error_bit(Variant::T8020, f.write)
}

pub(crate) fn params(idx: u32, page_shift: u32) -> Option<u32> {
    match idx {
        0 => Some(PARAMS1_PAGE_SHIFT.put(page_shift)),
        1 => Some(PARAMS2_BYPASS_SUPPORT.mask()),
        _ => None,
    }
}

// ---- Decoder: m1n1's `DART8020Regs` names and fields. ----

const R_PARAMS_0: &[NamedField] = fields![("LOG2_PGSZ", 27, 24)];
const R_PARAMS_4: &[NamedField] = fields![("SUPPORT_FULL_BYPASS", 0)];
const R_STREAM_COMMAND: &[NamedField] = fields![("INVALIDATE", 20), ("BUSY", 2)];
const R_ERROR: &[NamedField] = fields![
    ("FLAG", 31),
    ("STREAM", 27, 24),
    ("CODE", 23, 0),
    ("NO_DAPF_MATCH", 11),
    ("WRITE", 10),
    ("SUBPAGE_PROT", 7),
    ("PTE_READ_FAULT", 6),
    ("READ_FAULT", 4),
    ("WRITE_FAULT", 3),
    ("NO_PTE", 2),
    ("NO_PMD", 1),
    ("NO_TTBR", 0),
];
const R_CONFIG: &[NamedField] = fields![("LOCK", 15)];
const R_REMAP: &[NamedField] = fields![("MAP3", 31, 24), ("MAP2", 23, 16), ("MAP1", 15, 8), ("MAP0", 7, 0)];
const R_DAPF_LOCK: &[NamedField] = fields![("LOCK", 0)];
const R_TCR: &[NamedField] = fields![("BYPASS_DAPF", 12), ("BYPASS_DART", 8), ("TRANSLATE_ENABLE", 7)];
const R_TTBR: &[NamedField] = fields![("VALID", 31), ("ADDR", 30, 0)];
const PLAIN: &[NamedField] = &[];

pub(crate) fn describe(off: u32) -> Option<Described> {
    let named = |name: &str, f| Some((name.to_string(), f));
    match off {
        0x000 => named("PARAMS_0", R_PARAMS_0),
        0x004 => named("PARAMS_4", R_PARAMS_4),
        0x020 => named("STREAM_COMMAND", R_STREAM_COMMAND),
        0x034 => named("STREAM_SELECT", PLAIN),
        0x040 => named("ERROR", R_ERROR),
        0x050 => named("ERROR_ADDR_LO", PLAIN),
        0x054 => named("ERROR_ADDR_HI", PLAIN),
        0x060 => named("CONFIG", R_CONFIG),
        0x080..=0x08c => Some((format!("REMAP[{}]", (off - 0x80) / 4), R_REMAP)),
        0x0f0 => named("DAPF_LOCK", R_DAPF_LOCK),
        0x0f8 => named("UNK1", PLAIN),
        0x0fc => named("ENABLED_STREAMS", PLAIN),
        0x100..=0x13c => Some((format!("TCR[{}]", (off - TCR_BASE) / 4), R_TCR)),
        0x200..=0x2fc => {
            let (sid, idx) = ((off - TTBR_BASE) / 16, (off - TTBR_BASE) % 16 / 4);
            Some((format!("TTBR[({sid}, {idx})]"), R_TTBR))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultKind;

    #[test]
    fn offsets() {
        assert_eq!((tcr(15), ttbr(15, 3)), (0x13c, 0x2fc));
        assert_eq!(reg_at(0x13c), Reg::Tcr(15));
        assert_eq!(reg_at(0x140), Reg::Unknown);
        assert_eq!(reg_at(0x234), Reg::Ttbr(3, 1));
        assert_eq!(reg_at(0x300), Reg::Unknown);
        assert_eq!(reg_at(0x008), Reg::Unknown);
    }

    #[test]
    fn error_layout() {
        let f = Fault { kind: FaultKind::NoPte, stream: 5, iova: 0, write: false };
        assert_eq!(error_encode(&f), 0x8000_0000 | 5 << 24 | 1 << 2);
    }
}
