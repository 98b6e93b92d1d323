//! t8110 register layout (Linux `DART_T8110_*` and `DART_PARAMS*`, m1n1
//! `DART8110Regs`).

use super::{fields, Described, Field, NamedField, Reg};
use crate::fault::Fault;
use crate::types::StreamConfig;
use crate::variant::{Geometry, Variant};

/// PARAMS1 (m1n1 PARAMS_0): read-only instance parameters.
pub const PARAMS1: u32 = 0x000;
/// PARAMS1 page shift (m1n1 LOG2_PGSZ).
pub const PARAMS1_PAGE_SHIFT: Field = Field::new(27, 24);
/// PARAMS2 (m1n1 PARAMS_4).
pub const PARAMS2: u32 = 0x004;
/// PARAMS2: the DART can bypass translation (m1n1 SUPPORT_FULL_BYPASS).
pub const PARAMS2_BYPASS_SUPPORT: Field = Field::bit(0);
/// PARAMS2: the register lock exists (m1n1 SUPPORT_REG_LOCK; *inferred*).
pub const PARAMS2_REG_LOCK_SUPPORT: Field = Field::bit(1);
/// PARAMS3 (m1n1 PARAMS_8).
pub const PARAMS3: u32 = 0x008;
/// PARAMS3: output address bits.
pub const PARAMS3_PA_WIDTH: Field = Field::new(29, 24);
/// PARAMS3: input (IOVA) bits.
pub const PARAMS3_VA_WIDTH: Field = Field::new(21, 16);
/// PARAMS4 (m1n1 PARAMS_C).
pub const PARAMS4: u32 = 0x00c;
/// PARAMS4: number of streams.
pub const PARAMS4_NUM_SIDS: Field = Field::new(8, 0);

/// TLB_CMD (m1n1 TLB_OP): invalidation command.
pub const TLB_CMD: u32 = 0x080;
/// TLB_CMD: a command is running (the emulator: always 0 on read).
pub const TLB_CMD_BUSY: Field = Field::bit(31);
/// TLB_CMD: the operation.
pub const TLB_CMD_OP: Field = Field::new(10, 8);
/// TLB_CMD OP: flush every stream.
pub const TLB_CMD_OP_FLUSH_ALL: u32 = 0;
/// TLB_CMD OP: flush the stream in STREAM.
pub const TLB_CMD_OP_FLUSH_SID: u32 = 1;
/// TLB_CMD: the stream of a FLUSH_SID.
pub const TLB_CMD_STREAM: Field = Field::new(7, 0);

/// ERROR: the latched fault (write FLAG to clear).
pub const ERROR: u32 = 0x100;
/// ERROR: a fault is latched.
pub const ERROR_FLAG: Field = Field::bit(31);
/// ERROR: the faulting stream.
pub const ERROR_STREAM: Field = Field::new(27, 20);
/// ERROR: the code bits.
pub const ERROR_CODE: Field = Field::new(14, 0);
/// ERROR_MASK (m1n1 ERROR_DISABLE): code bits that do not latch (*inferred*).
pub const ERROR_MASK: u32 = 0x104;
/// ERROR_ADDR_LO: faulting IOVA bits 31:0.
pub const ERROR_ADDR_LO: u32 = 0x170;
/// ERROR_ADDR_HI: faulting IOVA bits 63:32.
pub const ERROR_ADDR_HI: u32 = 0x174;
/// ERROR_STREAMS word 0 (m1n1 ERR_SECONDARY): bitmap of the latched
/// fault's stream; words at `+4·i`.
pub const ERROR_STREAMS: u32 = 0x1c0;

/// PROTECT: write 1 to protect.
pub const PROTECT: u32 = 0x200;
/// UNPROTECT: write 1 to unprotect (unless locked by PROTECT_LOCK).
pub const UNPROTECT: u32 = 0x204;
/// PROTECT_LOCK: bits written here can no longer be unprotected.
pub const PROTECT_LOCK: u32 = 0x208;
/// PROTECT: TCR and TTBR writes are ignored.
pub const PROTECT_TTBR_TCR: Field = Field::bit(0);
/// PROTECT bits m1n1 names (LOCK_TZ_SELECT … LOCK_TCR_TTBR).
pub const PROTECT_BITS: Field = Field::new(4, 0);

/// ENABLE_STREAMS word 0: write 1 to enable; words at `+4·i`, 32 streams each.
pub const ENABLE_STREAMS: u32 = 0xc00;
/// DISABLE_STREAMS word 0: write 1 to disable.
pub const DISABLE_STREAMS: u32 = 0xc20;
/// Words of ENABLE_STREAMS / DISABLE_STREAMS / ERROR_STREAMS.
pub const STREAM_WORDS: u32 = 8;

/// TCR of stream 0; stream `sid` at `TCR_BASE + 4·sid`.
pub const TCR_BASE: u32 = 0x1000;
/// TCR: translate through the tables.
pub const TCR_TRANSLATE_ENABLE: Field = Field::bit(0);
/// TCR: bypass the DART.
pub const TCR_BYPASS_DART: Field = Field::bit(1);
/// TCR: bypass the DAPF.
pub const TCR_BYPASS_DAPF: Field = Field::bit(2);
/// TCR: three table levels below the TTBR.
pub const TCR_FOUR_LEVEL: Field = Field::bit(3);
/// TCR REMAP_EN (bit 7) and REMAP (\[11:8\]): defined by Linux and m1n1,
/// programmed by neither. Kept per stream as written and read back, with
/// no effect on translation (*inferred*): the IOTLB and the walk use the
/// stream's own SID.
pub const TCR_REMAP_BITS: u32 = 0xf80;

/// TTBR of stream 0; stream `sid` at `TTBR_BASE + 4·sid`.
pub const TTBR_BASE: u32 = 0x1400;
/// TTBR: valid.
pub const TTBR_VALID: Field = Field::bit(0);
/// TTBR: the table's PA >> [`TTBR_SHIFT`] at every page size (Linux
/// `DART_T8110_TTBR_SHIFT`, m1n1 `dart8110.py`), so a root table is 16 KiB
/// aligned even at 4 KiB pages, and below 2^42.
pub const TTBR_ADDR: Field = Field::new(29, 2);
/// The shift of the PA in [`TTBR_ADDR`].
pub const TTBR_SHIFT: u32 = 14;

/// Streams the layout has registers for.
pub const STREAMS: u32 = 256;

/// Offset of stream `sid`'s TCR.
pub const fn tcr(sid: u32) -> u32 {
    TCR_BASE + 4 * sid
}

/// Offset of stream `sid`'s TTBR.
pub const fn ttbr(sid: u32) -> u32 {
    TTBR_BASE + 4 * sid
}

pub(crate) fn reg_at(off: u32) -> Reg {
    let words = |base: u32| base..base + 4 * STREAM_WORDS;
    match off {
        PARAMS1 | PARAMS2 | PARAMS3 | PARAMS4 => Reg::Params(off / 4),
        TLB_CMD => Reg::TlbCmd,
        ERROR => Reg::Error,
        ERROR_MASK => Reg::ErrorMask,
        ERROR_ADDR_LO => Reg::ErrorAddrLo,
        ERROR_ADDR_HI => Reg::ErrorAddrHi,
        PROTECT => Reg::Protect,
        UNPROTECT => Reg::Unprotect,
        PROTECT_LOCK => Reg::ProtectLock,
        o if words(ERROR_STREAMS).contains(&o) => Reg::ErrorStreams((o - ERROR_STREAMS) / 4),
        o if words(ENABLE_STREAMS).contains(&o) => Reg::EnableStreams((o - ENABLE_STREAMS) / 4),
        o if words(DISABLE_STREAMS).contains(&o) => Reg::DisableStreams((o - DISABLE_STREAMS) / 4),
        o if (TCR_BASE..tcr(STREAMS)).contains(&o) => Reg::Tcr((o - TCR_BASE) / 4),
        o if (TTBR_BASE..ttbr(STREAMS)).contains(&o) => Reg::Ttbr((o - TTBR_BASE) / 4, 0),
        _ => Reg::Unknown,
    }
}

pub(crate) const fn tcr_encode(c: StreamConfig) -> u32 {
    (if c.translate { TCR_TRANSLATE_ENABLE.mask() } else { 0 })
        | (if c.bypass { TCR_BYPASS_DART.mask() } else { 0 })
        | (if c.bypass_dapf { TCR_BYPASS_DAPF.mask() } else { 0 })
        | (if c.four_level { TCR_FOUR_LEVEL.mask() } else { 0 })
}

pub(crate) const fn tcr_decode(tcr: u32, old: StreamConfig) -> StreamConfig {
    StreamConfig {
        enabled: old.enabled,
        translate: TCR_TRANSLATE_ENABLE.is_set(tcr),
        bypass: TCR_BYPASS_DART.is_set(tcr),
        bypass_dapf: TCR_BYPASS_DAPF.is_set(tcr),
        four_level: TCR_FOUR_LEVEL.is_set(tcr),
    }
}

pub(crate) fn ttbr_encode(table: Option<u64>) -> u32 {
    table.map_or(0, |pa| TTBR_VALID.mask() | TTBR_ADDR.put((pa >> TTBR_SHIFT) as u32))
}

pub(crate) fn ttbr_decode(ttbr: u32) -> Option<u64> {
    TTBR_VALID.is_set(ttbr).then(|| u64::from(TTBR_ADDR.get(ttbr)) << TTBR_SHIFT)
}

pub(crate) fn error_encode(f: &Fault) -> u32 {
    ERROR_FLAG.mask() | ERROR_STREAM.put(f.stream) | 1 << f.kind.error_bit(Variant::T8110, f.write)
}

pub(crate) fn params(idx: u32, page_shift: u32, streams: u32) -> Option<u32> {
    match idx {
        0 => Some(PARAMS1_PAGE_SHIFT.put(page_shift)),
        1 => Some(PARAMS2_BYPASS_SUPPORT.mask() | PARAMS2_REG_LOCK_SUPPORT.mask()),
        2 => {
            let va = Geometry::new(Variant::T8110, page_shift, true).iova_bits();
            Some(PARAMS3_PA_WIDTH.put(Variant::T8110.output_bits()) | PARAMS3_VA_WIDTH.put(va))
        }
        3 => Some(PARAMS4_NUM_SIDS.put(streams)),
        _ => None,
    }
}

// ---- Decoder: m1n1's `DART8110Regs` names and fields. ----

const R_PARAMS_0: &[NamedField] = fields![
    ("CLIENT_PARTITIONS_SUPPORTED", 29),
    ("LOG2_PGSZ", 27, 24),
    ("LOG2_TE_COUNT", 22, 20),
    ("TLB_SET_COUNT", 11, 0),
];
const R_PARAMS_4: &[NamedField] = fields![
    ("LOG2_NUM_WAYS", 30, 28),
    ("NUM_ASCS", 25, 24),
    ("NUM_W_PORTS", 22, 20),
    ("NUM_R_PORTS", 18, 16),
    ("NUM_APFS", 15, 8),
    ("SUPPORT_STT_PREFETCH", 6),
    ("SUPPORT_TLB_PREFETCH", 5),
    ("SUPPORT_CTC_PREFETCH", 4),
    ("SUPPORT_HW_FLUSH", 3),
    ("SUPPORT_TZ_TAGGER", 2),
    ("SUPPORT_REG_LOCK", 1),
    ("SUPPORT_FULL_BYPASS", 0),
];
const R_PARAMS_8: &[NamedField] =
    fields![("PA_WIDTH", 29, 24), ("VA_WIDTH", 21, 16), ("VERS_MAJ", 15, 8), ("VERS_MIN", 7, 0)];
const R_PARAMS_C: &[NamedField] = fields![("NUM_CLIENTS", 24, 16), ("NUM_SIDS", 8, 0)];
const R_ERROR: &[NamedField] = fields![
    ("FLAG", 31),
    ("SMMU", 30),
    ("REGION_PROTECT", 29),
    ("WRITE_nREAD", 28),
    ("SID", 27, 20),
    ("SECONDARY", 19),
    ("FILL_REGION", 18),
    ("BPF_REJECT", 14),
    ("EXTERNAL", 13),
    ("STT_FLUSH", 12),
    ("STT_MISMATCH", 11),
    ("APF_REJECT", 10),
    ("DROP_PROTECT", 9),
    ("CTRR_WRITE_PROTECT", 8),
    ("AXI_ERROR", 7),
    ("AXI_DECODE", 6),
    ("READ_FAULT", 5),
    ("WRITE_FAULT", 4),
    ("NO_PTE", 3),
    ("NO_PMD", 2),
    ("NO_PGD", 1),
    ("NO_TTBR", 0),
];
const R_TLB_OP: &[NamedField] = fields![
    ("BUSY", 31),
    ("HARDWARE_FLUSH", 30),
    ("FLUSH_VA_RANGE", 14),
    ("ENABLE_STT_FLUSH", 13),
    ("DISABLE_STC_FLUSH", 12),
    ("OP", 10, 8),
    ("STREAM", 7, 0),
];
const R_TLB_OP_IDX: &[NamedField] = fields![("SET", 13, 8), ("WAY", 6, 4), ("TE", 2, 0)];
// m1n1 also defines `_BIT2 = 2`, which its printer skips (leading underscore).
const R_PROTECT: &[NamedField] =
    fields![("LOCK_TZ_SELECT", 4), ("LOCK_TZ_CONFIG", 3), ("LOCK_REG_4xx", 1), ("LOCK_TCR_TTBR", 0)];
const R_DIAG_LOCK: &[NamedField] = fields![("LOCK_ON_ERR", 1), ("LOCK", 0)];
const R_TCR: &[NamedField] = fields![
    ("REMAP", 11, 8),
    ("REMAP_EN", 7),
    ("FOUR_LEVELS", 3),
    ("BYPASS_DAPF", 2),
    ("BYPASS_DART", 1),
    ("TRANSLATE_ENABLE", 0),
];
const R_TTBR: &[NamedField] = fields![("ADDR", 29, 2), ("VALID", 0)];
const PLAIN: &[NamedField] = &[];

/// m1n1's scalar registers without fields.
const PLAIN_SCALARS: &[(u32, &str)] = &[
    (0x010, "REG_0x10"),
    (0x014, "REG_0x14"),
    (0x088, "TLB_TAG_LO"),
    (0x08c, "TLB_TAG_HI"),
    (0x090, "TLB_PA_LO"),
    (0x094, "TLB_PA_HI"),
    (0x098, "TLB_START_DVA_PAGE"),
    (0x0a0, "TLB_END_DVA_PAGE"),
    (0x160, "REG_0x160"),
    (0x164, "REG_0x164"),
    (0x170, "ERROR_ADDR_LO"),
    (0x174, "ERROR_ADDR_HI"),
    (0x178, "REG_0x178"),
    (0x20c, "REG_0x20c"),
    (0x218, "REG_0x218"),
    (0x220, "REG_0x220"),
    (0x224, "REG_0x224"),
    (0x228, "TLIMIT"),
    (0x22c, "TEQRESERVE"),
    (0x300, "REG_0x300"),
    (0x308, "REG_0x308"),
    (0x310, "REG_0x310"),
    (0x318, "REG_0x318"),
    (0x320, "REG_0x320"),
    (0x328, "REG_0x328"),
    (0x330, "REG_0x330"),
    (0x338, "REG_0x338"),
    (0x340, "REG_0x340"),
    (0x348, "REG_0x348"),
    (0x350, "REG_0x350"),
    (0x358, "REG_0x358"),
    (0x400, "REG_0x400"),
    (0x404, "REG_0x404"),
    (0x408, "REG_0x408"),
    (0x410, "REG_0x410"),
    (0x500, "TZ_CONFIG"),
    (0x504, "TZ_SELECT"),
    (0x508, "TZ_REGION0_START"),
    (0x510, "TZ_REGION0_END"),
    (0x518, "TZ_REGION0_OFFSET"),
    (0x520, "TZ_REGION1_START"),
    (0x528, "TZ_REGION1_END"),
    (0x530, "TZ_REGION1_OFFSET"),
    (0x538, "TZ_REGION2_START"),
    (0x540, "TZ_REGION2_END"),
    (0x548, "TZ_REGION2_OFFSET"),
    (0x700, "PERF_INTR_ENABLE"),
    (0x704, "PERF_INTR_STATUS"),
    (0x760, "PERF_TLB_MISS"),
    (0x764, "PERF_TLB_FILL"),
    (0x768, "PERF_TLB_HIT"),
    (0x770, "PERF_ST_MISS"),
    (0x774, "PERF_ST_FILL"),
    (0x778, "PERF_ST_HIT"),
    (0x780, "PERF_CTC_MISS"),
    (0x784, "PERF_CTC_FILL"),
    (0x788, "PERF_CTC_HIT"),
];

/// m1n1's register arrays without fields: (base, count, name).
const PLAIN_ARRAYS: &[(u32, u32, &str)] = &[
    (0x120, 8, "STREAM_UNK_SET"),
    (0x140, 8, "STREAM_UNK_CLR"),
    (0x180, 4, "REG_0x180"),
    (0x1a0, 8, "REG_0x1a0"),
    (0x1c0, 8, "ERR_SECONDARY"),
    (0x230, 4, "TRANS"),
    (0x720, 8, "PERF_UNK1"),
    (0x740, 8, "PERF_UNK2"),
    (0x800, 256, "UNK_TUNABLES"),
    (0xc00, 8, "ENABLE_STREAMS"),
    (0xc20, 8, "DISABLE_STREAMS"),
];

pub(crate) fn describe(off: u32) -> Option<Described> {
    let named = |name: &str, f| Some((name.to_string(), f));
    match off {
        0x000 => return named("PARAMS_0", R_PARAMS_0),
        0x004 => return named("PARAMS_4", R_PARAMS_4),
        0x008 => return named("PARAMS_8", R_PARAMS_8),
        0x00c => return named("PARAMS_C", R_PARAMS_C),
        0x080 => return named("TLB_OP", R_TLB_OP),
        0x084 => return named("TLP_OP_IDX", R_TLB_OP_IDX),
        0x100 => return named("ERROR", R_ERROR),
        0x104 => return named("ERROR_DISABLE", R_ERROR),
        0x200 => return named("REG_PROTECT", R_PROTECT),
        0x204 => return named("REG_UNPROTECT", R_PROTECT),
        0x208 => return named("REG_PROTECT_LOCK", R_PROTECT),
        0x210 => return named("DIAG_LOCK", R_DIAG_LOCK),
        0x1000..=0x13fc => return Some((format!("TCR[{}]", (off - TCR_BASE) / 4), R_TCR)),
        0x1400..=0x17fc => return Some((format!("TTBR[{}]", (off - TTBR_BASE) / 4), R_TTBR)),
        _ => {}
    }
    if let Some(&(_, name)) = PLAIN_SCALARS.iter().find(|&&(o, _)| o == off) {
        return named(name, PLAIN);
    }
    PLAIN_ARRAYS
        .iter()
        .find(|&&(base, n, _)| (base..base + 4 * n).contains(&off))
        .map(|&(base, _, name)| (format!("{name}[{}]", (off - base) / 4), PLAIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultKind;

    #[test]
    fn offsets() {
        assert_eq!((tcr(255), ttbr(255)), (0x13fc, 0x17fc));
        assert_eq!(reg_at(0x13fc), Reg::Tcr(255));
        assert_eq!(reg_at(0x1404), Reg::Ttbr(1, 0));
        assert_eq!(reg_at(0xc1c), Reg::EnableStreams(7));
        assert_eq!(reg_at(0xc20), Reg::DisableStreams(0));
        assert_eq!(reg_at(0xc40), Reg::Unknown);
        assert_eq!(reg_at(0x1800), Reg::Unknown);
    }

    #[test]
    fn params_describe_the_instance() {
        // ias ≤ oas, as Linux's apple_dart_alloc_pgtable requires (T602x: 42, 42).
        assert_eq!(params(2, 14, 16), Some(42 << 24 | 42 << 16));
        assert_eq!(params(2, 12, 16), Some(42 << 24 | 39 << 16));
        assert_eq!(params(3, 14, 256), Some(256));
    }

    #[test]
    fn error_layout() {
        let f = Fault { kind: FaultKind::NoL0, stream: 200, iova: 0, write: true };
        assert_eq!(error_encode(&f), 0x8000_0000 | 200 << 20 | 1 << 1);
    }
}
