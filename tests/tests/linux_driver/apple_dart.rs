//! A model of Linux's `drivers/iommu/apple-dart.c` (with the t8110 and
//! four-level patches): the probe, the reset, the stream commands, the
//! fault handler and the paging domain, talking to the DART only through
//! its registers ([`Dart::mmio_read`] / [`Dart::mmio_write`]); its page
//! tables are [`DartIoPgtable`]'s, written through the monitor.
//!
//! Register offsets and bits are written out from the Linux source
//! (`DART_*`, `struct apple_dart_hw`), not taken from the `dart` crate.
//!
//! Where the model departs from Linux, it says so:
//! - `detach` also clears the stream's TTBRs (Linux's blocked domain only
//!   writes TCR = 0 and leaves the TTBRs naming the old root). The monitor
//!   releases a table only once no TTBR names it.
//! - `finalize` refuses a domain needing more TTBRs than the variant has
//!   (Linux would write `DART_TTBR(dart, sid, idx)` for `idx >= ttbr_count`,
//!   which on t8110 is the next stream's TTBR).
//! - Identity (bypass) domains are not modelled: only paging and blocked.
//! - A domain may be given an IOVA width below the DART's (`ias_limit`), as
//!   the four-level patch suggests ("restrict this based on the actual
//!   attached devices"): that is how t8110 runs with two table levels.

use super::io_pgtable::{DartIoPgtable, Fmt, IotlbGather, PgtableCfg, PgtableError};
use dart::{Dart, Variant};
use std::cell::Cell;
use std::sync::Arc;

const DART_MAX_STREAMS: u32 = 256;
const DART_MAX_TTBR: usize = 4;

// Common registers.
const DART_PARAMS1: u64 = 0x00;
const DART_PARAMS1_PAGE_SHIFT_LO: u32 = 24;
const DART_PARAMS1_PAGE_SHIFT_MASK: u32 = 0xf << DART_PARAMS1_PAGE_SHIFT_LO;
const DART_PARAMS2: u64 = 0x04;
const DART_PARAMS2_BYPASS_SUPPORT: u32 = 1 << 0;

// T8020/T6000 registers.
const DART_T8020_STREAM_COMMAND: u64 = 0x20;
const DART_T8020_STREAM_COMMAND_BUSY: u32 = 1 << 2;
const DART_T8020_STREAM_COMMAND_INVALIDATE: u32 = 1 << 20;
const DART_T8020_STREAM_SELECT: u64 = 0x34;
const DART_T8020_ERROR: u64 = 0x40;
const DART_T8020_ERROR_STREAM: (u32, u32) = (27, 24);
const DART_T8020_ERROR_CODE: (u32, u32) = (11, 0);
const DART_T8020_ERROR_FLAG: u32 = 1 << 31;
const DART_T8020_ERROR_READ_FAULT: u32 = 1 << 4;
const DART_T8020_ERROR_WRITE_FAULT: u32 = 1 << 3;
const DART_T8020_ERROR_NO_PTE: u32 = 1 << 2;
const DART_T8020_ERROR_NO_PMD: u32 = 1 << 1;
const DART_T8020_ERROR_NO_TTBR: u32 = 1 << 0;
const DART_T8020_CONFIG: u64 = 0x60;
const DART_T8020_CONFIG_LOCK: u32 = 1 << 15;
const DART_T8020_ERROR_ADDR_HI: u64 = 0x54;
const DART_T8020_ERROR_ADDR_LO: u64 = 0x50;
const DART_T8020_STREAMS_ENABLE: u64 = 0xfc;
const DART_T8020_TCR: u64 = 0x100;
const DART_T8020_TCR_TRANSLATE_ENABLE: u32 = 1 << 7;
const DART_T8020_TTBR: u64 = 0x200;
const DART_T8020_TTBR_VALID: u32 = 1 << 31;
const DART_T8020_TTBR_ADDR_FIELD_SHIFT: u32 = 0;
const DART_T8020_TTBR_SHIFT: u32 = 12;

// T8110 registers.
const DART_T8110_PARAMS3: u64 = 0x08;
const DART_T8110_PARAMS3_PA_WIDTH: (u32, u32) = (29, 24);
const DART_T8110_PARAMS3_VA_WIDTH: (u32, u32) = (21, 16);
const DART_T8110_PARAMS4: u64 = 0x0c;
const DART_T8110_PARAMS4_NUM_SIDS: (u32, u32) = (8, 0);
const DART_T8110_TLB_CMD: u64 = 0x80;
const DART_T8110_TLB_CMD_BUSY: u32 = 1 << 31;
const DART_T8110_TLB_CMD_OP: (u32, u32) = (10, 8);
const DART_T8110_TLB_CMD_OP_FLUSH_SID: u32 = 1;
const DART_T8110_TLB_CMD_STREAM: (u32, u32) = (7, 0);
const DART_T8110_ERROR: u64 = 0x100;
const DART_T8110_ERROR_STREAM: (u32, u32) = (27, 20);
const DART_T8110_ERROR_CODE: (u32, u32) = (14, 0);
const DART_T8110_ERROR_FLAG: u32 = 1 << 31;
const DART_T8110_ERROR_MASK: u64 = 0x104;
const DART_T8110_ERROR_READ_FAULT: u32 = 1 << 5;
const DART_T8110_ERROR_WRITE_FAULT: u32 = 1 << 4;
const DART_T8110_ERROR_NO_PTE: u32 = 1 << 3;
const DART_T8110_ERROR_NO_PMD: u32 = 1 << 2;
const DART_T8110_ERROR_NO_PGD: u32 = 1 << 1;
const DART_T8110_ERROR_NO_TTBR: u32 = 1 << 0;
const DART_T8110_ERROR_ADDR_LO: u64 = 0x170;
const DART_T8110_ERROR_ADDR_HI: u64 = 0x174;
const DART_T8110_ERROR_STREAMS: u64 = 0x1c0;
const DART_T8110_PROTECT: u64 = 0x200;
const DART_T8110_PROTECT_TTBR_TCR: u32 = 1 << 0;
const DART_T8110_ENABLE_STREAMS: u64 = 0xc00;
const DART_T8110_TCR: u64 = 0x1000;
const DART_T8110_TCR_FOUR_LEVEL: u32 = 1 << 3;
const DART_T8110_TCR_TRANSLATE_ENABLE: u32 = 1 << 0;
const DART_T8110_TTBR: u64 = 0x1400;
const DART_T8110_TTBR_VALID: u32 = 1 << 0;
const DART_T8110_TTBR_ADDR_FIELD_SHIFT: u32 = 2;
const DART_T8110_TTBR_SHIFT: u32 = 14;

/// `readl_poll_timeout_atomic(..., 1, DART_STREAM_COMMAND_BUSY_TIMEOUT)`: polls.
const DART_STREAM_COMMAND_BUSY_TIMEOUT: u32 = 100;

/// `FIELD_GET`.
const fn field_get((hi, lo): (u32, u32), reg: u32) -> u32 {
    (reg >> lo) & (u32::MAX >> (31 - (hi - lo)))
}

/// `FIELD_PREP`.
const fn field_prep((hi, lo): (u32, u32), val: u32) -> u32 {
    (val & (u32::MAX >> (31 - (hi - lo)))) << lo
}

/// `BITS_TO_U32`.
const fn bits_to_u32(bits: u32) -> u32 {
    bits.div_ceil(32)
}

/// `enum dart_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DartType {
    /// DART_T8020.
    T8020,
    /// DART_T6000.
    T6000,
    /// DART_T8110.
    T8110,
}

/// `struct apple_dart_hw`.
#[derive(Debug)]
pub struct Hw {
    /// The type.
    pub ty: DartType,
    /// Output bits (t8110: read from PARAMS3 instead).
    pub oas: u32,
    /// The page-table format.
    pub fmt: Fmt,
    /// Most streams.
    pub max_sid_count: u32,
    /// Lock register and bit.
    pub lock: u64,
    /// The lock bit.
    pub lock_bit: u32,
    /// ERROR.
    pub error: u64,
    /// Stream enables (t8110: write-1-to-set words).
    pub enable_streams: u64,
    /// TCR of stream 0.
    pub tcr: u64,
    /// TCR: translating.
    pub tcr_enabled: u32,
    /// TCR: blocked.
    pub tcr_disabled: u32,
    /// TCR: four levels.
    pub tcr_4level: u32,
    /// TTBR of stream 0.
    pub ttbr: u64,
    /// TTBR: valid.
    pub ttbr_valid: u32,
    /// TTBR: where the address field starts.
    pub ttbr_addr_field_shift: u32,
    /// TTBR: the PA shift.
    pub ttbr_shift: u32,
    /// TTBRs per stream.
    pub ttbr_count: u32,
}

/// `apple_dart_hw_t8103`.
pub static APPLE_DART_HW_T8103: Hw = Hw {
    ty: DartType::T8020,
    oas: 36,
    fmt: Fmt::AppleDart,
    max_sid_count: 16,
    lock: DART_T8020_CONFIG,
    lock_bit: DART_T8020_CONFIG_LOCK,
    error: DART_T8020_ERROR,
    enable_streams: DART_T8020_STREAMS_ENABLE,
    tcr: DART_T8020_TCR,
    tcr_enabled: DART_T8020_TCR_TRANSLATE_ENABLE,
    tcr_disabled: 0,
    tcr_4level: 0,
    ttbr: DART_T8020_TTBR,
    ttbr_valid: DART_T8020_TTBR_VALID,
    ttbr_addr_field_shift: DART_T8020_TTBR_ADDR_FIELD_SHIFT,
    ttbr_shift: DART_T8020_TTBR_SHIFT,
    ttbr_count: 4,
};

/// `apple_dart_hw_t6000`: t8103's registers, a wider output and DART2 tables.
pub static APPLE_DART_HW_T6000: Hw = Hw { ty: DartType::T6000, oas: 42, fmt: Fmt::AppleDart2, ..APPLE_DART_HW_T8103 };

/// `apple_dart_hw_t8110`.
pub static APPLE_DART_HW_T8110: Hw = Hw {
    ty: DartType::T8110,
    oas: 0,
    fmt: Fmt::AppleDart2,
    max_sid_count: 256,
    lock: DART_T8110_PROTECT,
    lock_bit: DART_T8110_PROTECT_TTBR_TCR,
    error: DART_T8110_ERROR,
    enable_streams: DART_T8110_ENABLE_STREAMS,
    tcr: DART_T8110_TCR,
    tcr_enabled: DART_T8110_TCR_TRANSLATE_ENABLE,
    tcr_disabled: 0,
    tcr_4level: DART_T8110_TCR_FOUR_LEVEL,
    ttbr: DART_T8110_TTBR,
    ttbr_valid: DART_T8110_TTBR_VALID,
    ttbr_addr_field_shift: DART_T8110_TTBR_ADDR_FIELD_SHIFT,
    ttbr_shift: DART_T8110_TTBR_SHIFT,
    ttbr_count: 1,
};

/// `of_device_get_match_data`: the device tree's compatible picks the
/// hardware description (t8020's DART is `apple,t8103-dart`).
pub fn match_data(v: Variant) -> &'static Hw {
    match v {
        Variant::T8020 => &APPLE_DART_HW_T8103,
        Variant::T6000 => &APPLE_DART_HW_T6000,
        Variant::T8110 => &APPLE_DART_HW_T8110,
    }
}

/// What the fault handler read (and then cleared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// ERROR as read.
    pub error: u32,
    /// Its code field.
    pub code: u32,
    /// Its stream field.
    pub stream: u32,
    /// ERROR_ADDR_HI:LO.
    pub addr: u64,
    /// The handler's name for the code.
    pub name: &'static str,
}

/// Driver counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct DriverStats {
    /// Invalidation commands issued (t8020: one per STREAM_COMMAND, t8110: one per stream).
    pub invalidations: u64,
    /// BUSY polls.
    pub busy_polls: u64,
    /// Faults handled.
    pub faults: u64,
}

/// `struct apple_dart`.
pub struct AppleDart {
    dart: Arc<Dart>,
    /// The hardware description.
    pub hw: &'static Hw,
    /// Input bits.
    pub ias: u32,
    /// Output bits.
    pub oas: u32,
    /// Page size.
    pub pgsize: u64,
    /// Streams.
    pub num_streams: u32,
    /// PARAMS2 bypass support.
    pub supports_bypass: bool,
    /// Four-level tables supported (t8110 with ias > 36).
    pub four_level: bool,
    stats: Cell<DriverStats>,
}

impl AppleDart {
    /// `apple_dart_probe`: PARAMS, then `apple_dart_hw_reset`.
    pub fn probe(dart: Arc<Dart>, hw: &'static Hw) -> Result<AppleDart, String> {
        let mut d = AppleDart {
            dart,
            hw,
            ias: 0,
            oas: 0,
            pgsize: 0,
            num_streams: 0,
            supports_bypass: false,
            four_level: false,
            stats: Cell::new(DriverStats::default()),
        };
        let params1 = d.readl(DART_PARAMS1);
        let params2 = d.readl(DART_PARAMS2);
        d.pgsize = 1 << ((params1 & DART_PARAMS1_PAGE_SHIFT_MASK) >> DART_PARAMS1_PAGE_SHIFT_LO);
        d.supports_bypass = params2 & DART_PARAMS2_BYPASS_SUPPORT != 0;
        match hw.ty {
            DartType::T8020 | DartType::T6000 => {
                d.ias = 32;
                d.oas = hw.oas;
                d.num_streams = hw.max_sid_count;
            }
            DartType::T8110 => {
                let params3 = d.readl(DART_T8110_PARAMS3);
                let params4 = d.readl(DART_T8110_PARAMS4);
                d.ias = field_get(DART_T8110_PARAMS3_VA_WIDTH, params3);
                d.oas = field_get(DART_T8110_PARAMS3_PA_WIDTH, params3);
                d.num_streams = field_get(DART_T8110_PARAMS4_NUM_SIDS, params4);
                d.four_level = d.ias > 36;
            }
        }
        if d.num_streams > DART_MAX_STREAMS {
            return Err(format!("Too many streams ({} > {DART_MAX_STREAMS})", d.num_streams));
        }
        d.hw_reset()?;
        Ok(d)
    }

    /// The DART (for the test's cross-checks only; the driver uses registers).
    pub fn dart(&self) -> &Arc<Dart> {
        &self.dart
    }

    /// Counters.
    pub fn stats(&self) -> DriverStats {
        self.stats.get()
    }

    fn bump(&self, f: impl FnOnce(&mut DriverStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// `readl`.
    pub fn readl(&self, off: u64) -> u32 {
        self.dart.mmio_read(off).unwrap_or_else(|e| panic!("readl({off:#x}): {e}"))
    }

    /// `writel`.
    pub fn writel(&self, value: u32, off: u64) {
        self.dart.mmio_write(off, value).unwrap_or_else(|e| panic!("writel({value:#x}, {off:#x}): {e}"))
    }

    /// `DART_TCR(dart, sid)`.
    pub fn tcr(&self, sid: u32) -> u64 {
        self.hw.tcr + (u64::from(sid) << 2)
    }

    /// `DART_TTBR(dart, sid, idx)`.
    pub fn ttbr(&self, sid: u32, idx: u32) -> u64 {
        self.hw.ttbr + (u64::from(self.hw.ttbr_count * sid) << 2) + (u64::from(idx) << 2)
    }

    /// The TTBR value `apple_dart_hw_set_ttbr` writes for `paddr`.
    pub fn ttbr_value(&self, paddr: u64) -> u32 {
        self.hw.ttbr_valid | (((paddr >> self.hw.ttbr_shift) as u32) << self.hw.ttbr_addr_field_shift)
    }

    /// `apple_dart_hw_enable_translation`.
    fn hw_enable_translation(&self, sids: &[u32], levels: u32) {
        let mut tcr = self.hw.tcr_enabled;
        if levels == 4 {
            tcr |= self.hw.tcr_4level;
        }
        assert!(levels == 3 || levels == 4, "WARN_ON(levels != 3 && levels != 4)");
        assert!(levels != 4 || self.four_level, "WARN_ON(levels == 4 && !dart->four_level)");
        for &sid in sids {
            self.writel(tcr, self.tcr(sid));
        }
    }

    /// `apple_dart_hw_disable_dma`.
    fn hw_disable_dma(&self, sids: &[u32]) {
        for &sid in sids {
            self.writel(self.hw.tcr_disabled, self.tcr(sid));
        }
    }

    /// `apple_dart_hw_set_ttbr`.
    fn hw_set_ttbr(&self, sids: &[u32], idx: u32, paddr: u64) {
        assert_eq!(paddr & ((1 << self.hw.ttbr_shift) - 1), 0, "WARN_ON(paddr & ((1 << ttbr_shift) - 1))");
        for &sid in sids {
            self.writel(self.ttbr_value(paddr), self.ttbr(sid, idx));
        }
    }

    /// `apple_dart_hw_clear_ttbr`.
    fn hw_clear_ttbr(&self, sids: &[u32], idx: u32) {
        for &sid in sids {
            self.writel(0, self.ttbr(sid, idx));
        }
    }

    /// `apple_dart_hw_clear_all_ttbrs`.
    fn hw_clear_all_ttbrs(&self, sids: &[u32]) {
        for i in 0..self.hw.ttbr_count {
            self.hw_clear_ttbr(sids, i);
        }
    }

    /// `readl_poll_timeout_atomic(reg, v, !(v & busy), 1, TIMEOUT)`.
    fn poll_busy(&self, off: u64, busy: u32) -> Result<(), String> {
        for _ in 0..DART_STREAM_COMMAND_BUSY_TIMEOUT {
            self.bump(|s| s.busy_polls += 1);
            if self.readl(off) & busy == 0 {
                return Ok(());
            }
        }
        Err(format!("busy bit did not clear at {off:#x}"))
    }

    /// `apple_dart_t8020_hw_stream_command`.
    fn t8020_hw_stream_command(&self, sids: &[u32], command: u32) -> Result<(), String> {
        let mut sidmap = vec![0u32; bits_to_u32(self.num_streams) as usize];
        for &sid in sids {
            sidmap[(sid / 32) as usize] |= 1 << (sid % 32);
        }
        for (i, word) in sidmap.iter().enumerate() {
            self.writel(*word, DART_T8020_STREAM_SELECT + 4 * i as u64);
        }
        self.writel(command, DART_T8020_STREAM_COMMAND);
        self.bump(|s| s.invalidations += 1);
        self.poll_busy(DART_T8020_STREAM_COMMAND, DART_T8020_STREAM_COMMAND_BUSY)
            .map_err(|e| format!("{e} after command {command:x} for streams {sidmap:x?}"))
    }

    /// `apple_dart_t8110_hw_tlb_command`.
    fn t8110_hw_tlb_command(&self, sids: &[u32], command: u32) -> Result<(), String> {
        for &sid in sids {
            let val = field_prep(DART_T8110_TLB_CMD_OP, command) | field_prep(DART_T8110_TLB_CMD_STREAM, sid);
            self.writel(val, DART_T8110_TLB_CMD);
            self.bump(|s| s.invalidations += 1);
            self.poll_busy(DART_T8110_TLB_CMD, DART_T8110_TLB_CMD_BUSY)
                .map_err(|e| format!("{e} after command {command:x} for stream {sid}"))?;
        }
        Ok(())
    }

    /// `hw->invalidate_tlb`.
    pub fn invalidate_tlb(&self, sids: &[u32]) -> Result<(), String> {
        match self.hw.ty {
            DartType::T8020 | DartType::T6000 => {
                self.t8020_hw_stream_command(sids, DART_T8020_STREAM_COMMAND_INVALIDATE)
            }
            DartType::T8110 => self.t8110_hw_tlb_command(sids, DART_T8110_TLB_CMD_OP_FLUSH_SID),
        }
    }

    /// `apple_dart_hw_reset`.
    fn hw_reset(&self) -> Result<(), String> {
        let config = self.readl(self.hw.lock);
        if config & self.hw.lock_bit != 0 {
            return Err(format!("DART is locked down until reboot: {config:08x}"));
        }
        let all: Vec<u32> = (0..self.num_streams).collect();
        self.hw_disable_dma(&all);
        self.hw_clear_all_ttbrs(&all);
        // Enable all streams globally since TCR is used to control isolation.
        for i in 0..bits_to_u32(self.num_streams) {
            self.writel(u32::MAX, self.hw.enable_streams + 4 * u64::from(i));
        }
        // Clear any pending errors before the interrupt is unmasked.
        self.writel(self.readl(self.hw.error), self.hw.error);
        if self.hw.ty == DartType::T8110 {
            self.writel(0, DART_T8110_ERROR_MASK);
        }
        self.invalidate_tlb(&all)
    }

    /// `hw->irq_handler` (`apple_dart_t8020_irq` / `apple_dart_t8110_irq`):
    /// `None` for IRQ_NONE.
    pub fn irq(&self) -> Option<FaultReport> {
        let (error_reg, lo, hi, code_f, stream_f, flag) = match self.hw.ty {
            DartType::T8020 | DartType::T6000 => (
                DART_T8020_ERROR,
                DART_T8020_ERROR_ADDR_LO,
                DART_T8020_ERROR_ADDR_HI,
                DART_T8020_ERROR_CODE,
                DART_T8020_ERROR_STREAM,
                DART_T8020_ERROR_FLAG,
            ),
            DartType::T8110 => (
                DART_T8110_ERROR,
                DART_T8110_ERROR_ADDR_LO,
                DART_T8110_ERROR_ADDR_HI,
                DART_T8110_ERROR_CODE,
                DART_T8110_ERROR_STREAM,
                DART_T8110_ERROR_FLAG,
            ),
        };
        let error = self.readl(error_reg);
        let code = field_get(code_f, error);
        let addr_lo = self.readl(lo);
        let addr_hi = self.readl(hi);
        let addr = u64::from(addr_lo) | (u64::from(addr_hi) << 32);
        let stream = field_get(stream_f, error);
        if error & flag == 0 {
            return None;
        }
        // There should only be a single bit set but let's use == to be sure.
        let name = match self.hw.ty {
            DartType::T8020 | DartType::T6000 => match code {
                DART_T8020_ERROR_READ_FAULT => "READ FAULT",
                DART_T8020_ERROR_WRITE_FAULT => "WRITE FAULT",
                DART_T8020_ERROR_NO_PTE => "NO PTE FOR IOVA",
                DART_T8020_ERROR_NO_PMD => "NO PMD FOR IOVA",
                DART_T8020_ERROR_NO_TTBR => "NO TTBR FOR IOVA",
                _ => "unknown",
            },
            DartType::T8110 => match code {
                DART_T8110_ERROR_READ_FAULT => "READ FAULT",
                DART_T8110_ERROR_WRITE_FAULT => "WRITE FAULT",
                DART_T8110_ERROR_NO_PTE => "NO PTE FOR IOVA",
                DART_T8110_ERROR_NO_PMD => "NO PMD FOR IOVA",
                DART_T8110_ERROR_NO_PGD => "NO PGD FOR IOVA",
                DART_T8110_ERROR_NO_TTBR => "NO TTBR FOR IOVA",
                _ => "unknown",
            },
        };
        self.writel(error, error_reg);
        if self.hw.ty == DartType::T8110 {
            for i in 0..bits_to_u32(self.num_streams) {
                self.writel(u32::MAX, DART_T8110_ERROR_STREAMS + 4 * u64::from(i));
            }
        }
        self.bump(|s| s.faults += 1);
        Some(FaultReport { error, code, stream, addr, name })
    }
}

/// `struct apple_dart_domain` with the iommu core's `iommu_map` /
/// `iommu_unmap` loops on top.
pub struct Domain<'a> {
    dart: &'a AppleDart,
    pgtbl: DartIoPgtable,
    sids: Vec<u32>,
    /// `domain->geometry.aperture_end`.
    pub aperture_end: u64,
    /// Pages mapped over the domain's life.
    pub pages_mapped: u64,
}

impl<'a> Domain<'a> {
    /// `apple_dart_domain_alloc_paging` + `apple_dart_finalize_domain`
    /// (`ias_limit`: module docs).
    pub fn finalize(dart: &'a AppleDart, ias_limit: Option<u32>) -> Result<Domain<'a>, String> {
        let ias = ias_limit.map_or(dart.ias, |l| l.min(dart.ias));
        let root_align = dart.pgsize.max(1 << dart.hw.ttbr_shift);
        let mut cfg = PgtableCfg::new(dart.pgsize, ias, dart.oas, root_align);
        let pgtbl = DartIoPgtable::alloc(dart.dart.clone(), dart.hw.fmt, &mut cfg)
            .ok_or_else(|| format!("alloc_io_pgtable_ops refused {cfg:?}"))?;
        if cfg.n_ttbrs > dart.hw.ttbr_count as usize || cfg.n_ttbrs > DART_MAX_TTBR {
            return Err(format!("{} roots for {} TTBRs", cfg.n_ttbrs, dart.hw.ttbr_count));
        }
        Ok(Domain { dart, pgtbl, sids: Vec::new(), aperture_end: (1u64 << cfg.ias) - 1, pages_mapped: 0 })
    }

    /// The page tables.
    pub fn pgtbl(&self) -> &DartIoPgtable {
        &self.pgtbl
    }

    /// `apple_dart_attach_dev_paging`: add the streams, then
    /// `apple_dart_setup_translation` in Linux's order: TTBRs (the stream's
    /// TCR still 0 after the reset), then TCR, then the invalidation. The
    /// monitor fixes a four-level tree's depth at its first entry, after
    /// this (docs/design.md §3).
    pub fn attach(&mut self, sids: &[u32]) -> Result<(), String> {
        self.sids.extend_from_slice(sids);
        let cfg = self.pgtbl.cfg();
        for i in 0..cfg.n_ttbrs {
            self.dart.hw_set_ttbr(sids, i as u32, cfg.ttbr[i]);
        }
        for i in cfg.n_ttbrs as u32..self.dart.hw.ttbr_count {
            self.dart.hw_clear_ttbr(sids, i);
        }
        self.dart.hw_enable_translation(sids, cfg.n_levels);
        self.dart.invalidate_tlb(sids)
    }

    /// `apple_dart_domain_flush_tlb` (`flush_iotlb_all`, `iotlb_sync`, `iotlb_sync_map`).
    pub fn flush_tlb(&self) {
        self.dart.invalidate_tlb(&self.sids).expect("invalidate");
    }

    /// `iommu_map`: `map_pages` until done, unwinding on error, then
    /// `iotlb_sync_map`.
    pub fn map(&mut self, iova: u64, paddr: u64, size: u64, prot: u32) -> Result<(), PgtableError> {
        let pgsize = self.dart.pgsize;
        if !iova.is_multiple_of(pgsize) || !paddr.is_multiple_of(pgsize) || !size.is_multiple_of(pgsize) || size == 0 {
            return Err(PgtableError::Inval);
        }
        if iova + size - 1 > self.aperture_end {
            return Err(PgtableError::Range);
        }
        let mut done = 0;
        while done < size {
            let mut mapped = 0;
            let r = self.pgtbl.map_pages(iova + done, paddr + done, pgsize, (size - done) / pgsize, prot, &mut mapped);
            done += mapped;
            if let Err(e) = r {
                if done > 0 {
                    self.unmap(iova, done);
                }
                return Err(e);
            }
        }
        self.pages_mapped += size / pgsize;
        self.flush_tlb();
        Ok(())
    }

    /// `iommu_map_sg` for a list of pages: runs of contiguous PAs go to
    /// `map_pages` together.
    pub fn map_sg(&mut self, iova: u64, pages: &[u64], prot: u32) -> Result<(), PgtableError> {
        let pgsize = self.dart.pgsize;
        let mut i = 0;
        while i < pages.len() {
            let mut run = 1;
            while i + run < pages.len() && pages[i + run] == pages[i] + run as u64 * pgsize {
                run += 1;
            }
            self.map(iova + i as u64 * pgsize, pages[i], run as u64 * pgsize, prot)?;
            i += run;
        }
        Ok(())
    }

    /// `iommu_unmap_fast`: clears without the sync (dma-iommu's lazy mode
    /// queues the flush).
    pub fn unmap_fast(&self, iova: u64, size: u64, gather: &mut IotlbGather) -> u64 {
        let pgsize = self.dart.pgsize;
        let mut done = 0;
        while done < size {
            let n = self.pgtbl.unmap_pages(iova + done, pgsize, (size - done) / pgsize, gather).expect("unmap_pages");
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }

    /// `iommu_iotlb_sync`.
    pub fn iotlb_sync(&self, _gather: &IotlbGather) {
        self.flush_tlb();
    }

    /// `iommu_unmap`: `unmap_pages` until done, then `iotlb_sync`.
    pub fn unmap(&self, iova: u64, size: u64) -> u64 {
        let mut gather = IotlbGather::default();
        let done = self.unmap_fast(iova, size, &mut gather);
        self.iotlb_sync(&gather);
        done
    }

    /// `iommu_iova_to_phys`.
    pub fn iova_to_phys(&self, iova: u64) -> u64 {
        self.pgtbl.iova_to_phys(iova).expect("iova_to_phys")
    }

    /// `apple_dart_attach_dev_blocked` for every attached stream, and the
    /// TTBR clear the monitor needs (module docs), then an invalidation.
    pub fn detach(&mut self) {
        let sids = std::mem::take(&mut self.sids);
        self.dart.hw_disable_dma(&sids);
        self.dart.hw_clear_all_ttbrs(&sids);
        self.dart.invalidate_tlb(&sids).expect("invalidate");
    }

    /// Domain teardown under the monitor: clear every table descriptor,
    /// invalidate, detach (TCR, TTBRs, invalidate), then
    /// `apple_dart_domain_free` (release and free every table).
    pub fn destroy(mut self) -> Result<u64, String> {
        let subtables = self.pgtbl.unlink_tables().map_err(|e| format!("unlink: {e}"))?;
        self.flush_tlb();
        self.detach();
        let n = subtables.len() as u64 + self.pgtbl.pgd().len() as u64;
        self.pgtbl.free(&subtables).map_err(|e| format!("free_io_pgtable_ops: {e}"))?;
        Ok(n)
    }
}
