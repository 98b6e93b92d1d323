//! The MMIO register model (docs/design.md §3), driven the way Linux's
//! `drivers/iommu/apple-dart.c` drives the hardware.
//!
//! Everything the driver knows about the registers is written out here from
//! the Linux source (`struct apple_dart_hw` and the `apple_dart_hw_*`
//! sequences) and docs/design.md §3, not taken from the crate, so a wrong offset or bit
//! in `dart::regs` fails these tests.

use dart::{Dart, DartConfig, DartError, FaultKind, Invalidation, MmioError, MmioOutcome, StreamConfig, Variant};
use frame_table::{
    Counts, Error, Frame, FrameSize, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm, Violation,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------
// The hardware description Linux carries for each variant.

#[derive(Debug)]
enum Invalidate {
    /// t8020/t6000: STREAM_SELECT + STREAM_COMMAND.
    StreamCommand { select: u64, command: u64, invalidate: u32, busy: u32 },
    /// t8110: TLB_CMD, one FLUSH_SID per stream.
    TlbCmd { cmd: u64, flush_sid: u32, busy: u32 },
}

#[derive(Debug)]
struct Hw {
    max_sid_count: u32,
    /// PARAMS3/4 are read (t8110).
    has_params34: bool,
    lock: u64,
    lock_bit: u32,
    error: u64,
    error_flag: u32,
    error_stream_shift: u32,
    error_mask: Option<u64>,
    error_streams: Option<u64>,
    error_addr_lo: u64,
    error_addr_hi: u64,
    enable_streams: u64,
    disable_streams: Option<u64>,
    tcr: u64,
    tcr_enabled: u32,
    tcr_disabled: u32,
    tcr_bypass: u32,
    tcr_4level: u32,
    ttbr: u64,
    ttbr_valid: u32,
    ttbr_addr_field_shift: u32,
    /// `None`: the page shift (t8110; Linux's 14 at 16 KiB, inferred 12 at 4 KiB).
    ttbr_shift: Option<u32>,
    ttbr_count: u32,
    invalidate: Invalidate,
}

static T8020: Hw = Hw {
    max_sid_count: 16,
    has_params34: false,
    lock: 0x60,
    lock_bit: 1 << 15,
    error: 0x40,
    error_flag: 1 << 31,
    error_stream_shift: 24,
    error_mask: None,
    error_streams: None,
    error_addr_lo: 0x50,
    error_addr_hi: 0x54,
    enable_streams: 0xfc,
    disable_streams: None,
    tcr: 0x100,
    tcr_enabled: 1 << 7,
    tcr_disabled: 0,
    tcr_bypass: (1 << 12) | (1 << 8),
    tcr_4level: 0,
    ttbr: 0x200,
    ttbr_valid: 1 << 31,
    ttbr_addr_field_shift: 0,
    ttbr_shift: Some(12),
    ttbr_count: 4,
    invalidate: Invalidate::StreamCommand { select: 0x34, command: 0x20, invalidate: 1 << 20, busy: 1 << 2 },
};

static T8110: Hw = Hw {
    max_sid_count: 256,
    has_params34: true,
    lock: 0x200,
    lock_bit: 1,
    error: 0x100,
    error_flag: 1 << 31,
    error_stream_shift: 20,
    error_mask: Some(0x104),
    error_streams: Some(0x1c0),
    error_addr_lo: 0x170,
    error_addr_hi: 0x174,
    enable_streams: 0xc00,
    disable_streams: Some(0xc20),
    tcr: 0x1000,
    tcr_enabled: 1,
    tcr_disabled: 0,
    tcr_bypass: (1 << 2) | (1 << 1),
    tcr_4level: 1 << 3,
    ttbr: 0x1400,
    ttbr_valid: 1,
    ttbr_addr_field_shift: 2,
    // DART_T8110_TTBR_SHIFT: PA >> 14 at every page size.
    ttbr_shift: Some(14),
    ttbr_count: 1,
    invalidate: Invalidate::TlbCmd { cmd: 0x80, flush_sid: 1 << 8, busy: 1 << 31 },
};

fn hw(v: Variant) -> &'static Hw {
    match v {
        Variant::T8020 | Variant::T6000 => &T8020,
        Variant::T8110 => &T8110,
    }
}

/// docs/design.md §3's fault table: the ERROR code bit of each fault.
fn code_bit(v: Variant, kind: FaultKind, write: bool) -> u32 {
    let t8110 = v == Variant::T8110;
    match kind {
        FaultKind::NoTtbr | FaultKind::StreamDisabled => 0,
        FaultKind::NoL0 => 1,
        FaultKind::NoL1 => 1 + t8110 as u32,
        FaultKind::NoPte => 2 + t8110 as u32,
        FaultKind::Write => 3 + t8110 as u32,
        FaultKind::Read => 4 + t8110 as u32,
        FaultKind::Subpage if t8110 => 4 + !write as u32,
        FaultKind::Subpage => 7,
        FaultKind::ForbiddenFrame => unreachable!("not provoked here"),
    }
}

// ---------------------------------------------------------------------------
// A driver written from apple-dart.c.

struct Driver<'a> {
    dart: &'a Dart,
    hw: &'static Hw,
    pgsize: u64,
    supports_bypass: bool,
    ias: u32,
    oas: u32,
    num_streams: u32,
    /// Polls of a BUSY bit before it read clear, over all invalidations.
    busy_polls: usize,
}

impl<'a> Driver<'a> {
    fn readl(&self, off: u64) -> u32 {
        self.dart.mmio_read(off).unwrap_or_else(|e| panic!("readl({off:#x}): {e}"))
    }

    fn writel(&self, value: u32, off: u64) {
        self.dart.mmio_write(off, value).unwrap_or_else(|e| panic!("writel({value:#x}, {off:#x}): {e}"))
    }

    /// `apple_dart_probe`: PARAMS before the reset.
    fn probe(dart: &'a Dart) -> Driver<'a> {
        let hw = hw(dart.variant());
        let mut d =
            Driver { dart, hw, pgsize: 0, supports_bypass: false, ias: 0, oas: 0, num_streams: 0, busy_polls: 0 };
        let params1 = d.readl(0x00);
        let params2 = d.readl(0x04);
        d.pgsize = 1 << ((params1 >> 24) & 0xf);
        d.supports_bypass = params2 & 1 != 0;
        if hw.has_params34 {
            let params3 = d.readl(0x08);
            let params4 = d.readl(0x0c);
            d.oas = (params3 >> 24) & 0x3f;
            d.ias = (params3 >> 16) & 0x3f;
            d.num_streams = params4 & 0x1ff;
            assert!(d.num_streams <= hw.max_sid_count, "Too many streams");
        } else {
            d.ias = 32;
            d.oas = if dart.variant() == Variant::T8020 { 36 } else { 42 };
            d.num_streams = hw.max_sid_count;
        }
        d
    }

    fn tcr(&self, sid: u32) -> u64 {
        self.hw.tcr + 4 * u64::from(sid)
    }

    fn ttbr(&self, sid: u32, idx: u32) -> u64 {
        self.hw.ttbr + u64::from(((self.hw.ttbr_count * sid) << 2) + (idx << 2))
    }

    fn ttbr_value(&self, pa: u64) -> u32 {
        let shift = self.hw.ttbr_shift.unwrap_or(self.pgsize.trailing_zeros());
        self.hw.ttbr_valid | (((pa >> shift) as u32) << self.hw.ttbr_addr_field_shift)
    }

    /// `readl_poll_timeout_atomic(reg, v, !(v & busy), 1, 100)`.
    fn poll_busy(&mut self, off: u64, busy: u32) {
        for _ in 0..100 {
            self.busy_polls += 1;
            if self.readl(off) & busy == 0 {
                return;
            }
        }
        panic!("busy bit did not clear");
    }

    /// `hw->invalidate_tlb` for the streams in `sids`.
    fn invalidate(&mut self, sids: &[u32]) {
        match self.hw.invalidate {
            Invalidate::StreamCommand { select, command, invalidate, busy } => {
                let map = sids.iter().fold(0u32, |m, &s| m | 1 << s);
                self.writel(map, select);
                self.writel(invalidate, command);
                self.poll_busy(command, busy);
            }
            Invalidate::TlbCmd { cmd, flush_sid, busy } => {
                for &sid in sids {
                    self.writel(flush_sid | sid, cmd);
                    self.poll_busy(cmd, busy);
                }
            }
        }
    }

    /// `apple_dart_hw_reset`.
    fn hw_reset(&mut self) -> Result<(), String> {
        let config = self.readl(self.hw.lock);
        if config & self.hw.lock_bit != 0 {
            return Err(format!("DART is locked down until reboot: {config:08x}"));
        }
        for sid in 0..self.num_streams {
            self.writel(self.hw.tcr_disabled, self.tcr(sid));
        }
        for idx in 0..self.hw.ttbr_count {
            for sid in 0..self.num_streams {
                self.writel(0, self.ttbr(sid, idx));
            }
        }
        for i in 0..self.num_streams.div_ceil(32) {
            self.writel(u32::MAX, self.hw.enable_streams + 4 * u64::from(i));
        }
        let error = self.readl(self.hw.error);
        self.writel(error, self.hw.error);
        if let Some(mask) = self.hw.error_mask {
            self.writel(0, mask);
        }
        let all: Vec<u32> = (0..self.num_streams).collect();
        self.invalidate(&all);
        Ok(())
    }

    /// `apple_dart_setup_translation` + `apple_dart_hw_enable_translation` +
    /// the flush of an attach.
    fn attach(&mut self, sid: u32, ttbrs: &[u64], four_level: bool) {
        for (i, &pa) in ttbrs.iter().enumerate() {
            self.writel(self.ttbr_value(pa), self.ttbr(sid, i as u32));
        }
        for i in ttbrs.len() as u32..self.hw.ttbr_count {
            self.writel(0, self.ttbr(sid, i));
        }
        let tcr = self.hw.tcr_enabled | if four_level { self.hw.tcr_4level } else { 0 };
        self.writel(tcr, self.tcr(sid));
        self.invalidate(&[sid]);
    }

    /// `apple_dart_t8020_irq` / `apple_dart_t8110_irq` (with the
    /// ERROR_STREAMS clear of the t602x patch): `(error, addr)` if it was ours.
    fn irq(&self) -> Option<(u32, u64)> {
        let error = self.readl(self.hw.error);
        let lo = self.readl(self.hw.error_addr_lo);
        let hi = self.readl(self.hw.error_addr_hi);
        let addr = u64::from(lo) | u64::from(hi) << 32;
        if error & self.hw.error_flag == 0 {
            return None;
        }
        self.writel(error, self.hw.error);
        if let Some(streams) = self.hw.error_streams {
            for i in 0..self.num_streams.div_ceil(32) {
                self.writel(u32::MAX, streams + 4 * u64::from(i));
            }
        }
        Some((error, addr))
    }

    fn set_enabled(&self, sid: u32, enabled: bool) {
        let word = u64::from(sid / 32) * 4;
        match (self.hw.disable_streams, enabled) {
            (Some(dis), false) => self.writel(1 << (sid % 32), dis + word),
            (Some(_), true) => self.writel(1 << (sid % 32), self.hw.enable_streams + word),
            (None, _) => {
                let v = self.readl(self.hw.enable_streams);
                let v = if enabled { v | 1 << sid } else { v & !(1 << sid) };
                self.writel(v, self.hw.enable_streams);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn soc(fs: FrameSize, mode: OnViolation) -> Arc<FrameTable> {
    Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20).frame_size(fs).on_violation(mode)).unwrap())
}

fn config(v: Variant, streams: u32) -> DartConfig {
    let mut c = DartConfig::new("dart0", v);
    c.streams = streams;
    c
}

fn streams_for(v: Variant) -> u32 {
    if v == Variant::T8110 {
        40
    } else {
        16
    }
}

/// What every register of a fresh instance must read, from the instance's
/// configuration alone.
fn expected_at_reset(v: Variant, page_shift: u32, streams: u32, off: u64) -> u32 {
    match (v, off) {
        (_, 0x00) => page_shift << 24,
        (Variant::T8110, 0x04) => 0b11, // bypass support, register lock support
        (_, 0x04) => 1,                 // bypass support
        (Variant::T8110, 0x08) => {
            // PA width 42; VA width with FOUR_LEVEL: page + 3 levels of (page_shift - 3) bits.
            42 << 24 | (page_shift + 3 * (page_shift - 3)).min(42) << 16
        }
        (Variant::T8110, 0x0c) => streams,
        _ => 0,
    }
}

fn fault_of(r: Result<(), DartError>) -> dart::Fault {
    match r {
        Err(DartError::Fault(f)) => f,
        other => panic!("expected a fault, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn registers_after_reset_describe_the_instance() {
    for v in Variant::ALL {
        for fs in [FrameSize::K16, FrameSize::K4] {
            let counts: &[u32] = if v == Variant::T8110 { &[1, 16, 33, 256] } else { &[1, 16] };
            for &n in counts {
                let frames = soc(fs, OnViolation::Reject);
                let d = Dart::new(frames, config(v, n)).unwrap();
                let p = fs.shift();
                for off in (0..0x4000u64).step_by(4) {
                    assert_eq!(d.mmio_read(off).unwrap(), expected_at_reset(v, p, n, off), "{v} {fs:?} {n} {off:#x}");
                }
                // Linux's reset: then every stream is enabled, STREAM_SELECT
                // holds the last sidmap, the rest is as before.
                let mut drv = Driver::probe(&d);
                // t8110 reads its stream count; Linux hard-codes 16 for t8020/t6000.
                let linux_streams = if v == Variant::T8110 { n } else { 16 };
                assert_eq!((drv.pgsize, drv.supports_bypass, drv.num_streams), (fs.bytes(), true, linux_streams));
                drv.hw_reset().unwrap();
                for off in (0..0x4000u64).step_by(4) {
                    let bits_below =
                        |first: u32| -> u32 { (0..32).filter(|b| first + b < n).fold(0, |m, b| m | 1 << b) };
                    let expect = match (v, off) {
                        (Variant::T8110, 0xc00..=0xc3c) => bits_below((off as u32 & 0x1f) / 4 * 32),
                        (Variant::T8110, _) => expected_at_reset(v, p, n, off),
                        (_, 0xfc) => bits_below(0),
                        (_, 0x34) => 0xffff, // the last sidmap, as written
                        _ => expected_at_reset(v, p, n, off),
                    };
                    assert_eq!(d.mmio_read(off).unwrap(), expect, "after reset: {v} {fs:?} {n} {off:#x}");
                }
                for sid in 0..n {
                    let c = d.stream_config(sid).unwrap();
                    assert_eq!(c, StreamConfig { enabled: true, ..StreamConfig::default() });
                }
                assert_eq!(drv.busy_polls, if v == Variant::T8110 { n as usize } else { 1 }, "BUSY reads 0 at once");
            }
        }
    }
}

#[test]
fn probe_reads_params_like_linux() {
    for v in Variant::ALL {
        for fs in [FrameSize::K16, FrameSize::K4] {
            let d = Dart::new(soc(fs, OnViolation::Reject), config(v, streams_for(v))).unwrap();
            let drv = Driver::probe(&d);
            assert_eq!(drv.pgsize, fs.bytes());
            assert!(drv.supports_bypass);
            assert_eq!(drv.num_streams, streams_for(v));
            assert_eq!(drv.oas, v.output_bits());
            let p = fs.shift();
            // ias ≤ oas, or Linux's apple_dart_alloc_pgtable refuses the domain.
            let ias = if v == Variant::T8110 { (p + 3 * (p - 3)).min(42) } else { 32 };
            assert_eq!(drv.ias, ias);
            assert!(drv.ias <= drv.oas, "{v} {fs:?}");
            if v == Variant::T8110 && p == 14 {
                assert_eq!((drv.ias, drv.oas), (42, 42), "as T602x");
            }
        }
    }
}

/// One driver session per variant: reset, attach, map, DMA, flush, every
/// fault kind read back through ERROR / ERROR_ADDR and cleared.
fn linux_driver(v: Variant, fs: FrameSize) {
    let frames = soc(fs, OnViolation::Reject);
    let d = Dart::new(frames.clone(), config(v, streams_for(v))).unwrap();
    let irqs = Arc::new(AtomicUsize::new(0));
    let counter = irqs.clone();
    d.set_interrupt(Some(Arc::new(move |_: &dart::Fault| {
        counter.fetch_add(1, Ordering::SeqCst);
    })));
    let mut drv = Driver::probe(&d);
    drv.hw_reset().unwrap();
    let page = fs.bytes();
    let p = fs.shift();
    let l1_span = 1u64 << (p + (p - 3)); // what one L1 entry covers
    let iova = 0x40 * page;

    // Attach stream 1 to a DMA domain whose page-table root the kernel-side
    // mapper allocated; the driver points the TTBR at it.
    let pgd = d.alloc_root_table().unwrap();
    drv.attach(1, &[pgd], false);
    assert_eq!(d.ttbr(1, 0).unwrap(), Some(pgd));
    assert_eq!(d.stream_config(1).unwrap(), StreamConfig::TRANSLATING);
    assert_eq!(drv.readl(drv.ttbr(1, 0)), drv.ttbr_value(pgd));
    assert_eq!(drv.readl(drv.tcr(1)), drv.hw.tcr_enabled);

    // Map through the domain (iommu_map), then iotlb_sync_map.
    let user = frames.alloc(FrameType::UserData, 7).unwrap();
    d.map(1, iova, &user[..4], Perm::RW, None).unwrap();
    d.map(1, iova + 8 * page, &user[4..5], Perm::R, None).unwrap();
    d.map(1, iova + 9 * page, &user[5..6], Perm::W, None).unwrap();
    d.map(1, iova + 10 * page, &user[6..7], Perm::RW, Some((0x100, 0x200))).unwrap();
    drv.invalidate(&[1]);
    assert_eq!(d.ttbr(1, 0).unwrap(), Some(pgd), "the mapper filled the driver's root");

    // DMA across a page boundary.
    d.dma_write(1, iova + page - 5, b"crossing pages").unwrap();
    let mut buf = [0u8; 14];
    d.dma_read(1, iova + page - 5, &mut buf).unwrap();
    assert_eq!(&buf, b"crossing pages");
    assert_eq!(irqs.load(Ordering::SeqCst), 0);
    assert!(!d.interrupt_pending());

    // Stream 2: translating, no TTBR. Stream 3 (t8110): four-level tables.
    drv.attach(2, &[], false);
    let l0_span = 1u64 << (p + 2 * (p - 3));
    if v == Variant::T8110 {
        let pgd3 = d.alloc_root_table().unwrap();
        drv.attach(3, &[pgd3], true);
        assert!(d.stream_config(3).unwrap().four_level);
        let own = frames.alloc(FrameType::UserData, 1).unwrap();
        d.map(3, 0, &own, Perm::RW, None).unwrap();
        d.dma_write(3, 0, b"four levels").unwrap();
    }

    let mut cases: Vec<(u32, u64, bool, FaultKind)> = vec![
        (2, iova, false, FaultKind::NoTtbr),
        (1, iova + 7 * l1_span, false, FaultKind::NoL1),
        (1, iova + 5 * page, true, FaultKind::NoPte),
        (1, iova + 9 * page, false, FaultKind::Read),
        (1, iova + 8 * page, true, FaultKind::Write),
        (1, iova + 10 * page, false, FaultKind::Subpage),
        (1, iova + 10 * page + 0x1f0, true, FaultKind::Subpage),
    ];
    if v == Variant::T8110 {
        cases.push((3, 5 * l0_span, false, FaultKind::NoL0));
    } else {
        // t8020/t6000: the TTBR chosen by the IOVA's top bits is not set.
        cases.push((1, l0_span + iova, false, FaultKind::NoTtbr));
    }
    let check = |drv: &Driver, sid: u32, at: u64, write: bool, kind: FaultKind, before: usize| {
        assert!(d.interrupt_pending(), "{kind:?}: line high");
        assert_eq!(irqs.load(Ordering::SeqCst), before + 1, "{kind:?}: one interrupt");
        let expect = drv.hw.error_flag | sid << drv.hw.error_stream_shift | 1 << code_bit(v, kind, write);
        assert_eq!(code_bit(v, kind, write), kind.error_bit(v, write));
        assert_eq!(drv.irq(), Some((expect, at)), "{v} {kind:?}");
        assert_eq!(drv.readl(drv.hw.error), 0, "{kind:?}: write-1-to-clear");
        assert!(!d.interrupt_pending(), "{kind:?}: line dropped");
        assert_eq!(drv.irq(), None);
    };
    for &(sid, at, write, kind) in &cases {
        let before = irqs.load(Ordering::SeqCst);
        let r = if write { d.dma_write(sid, at, &[0x5a; 0x20]) } else { d.dma_read(sid, at, &mut [0u8; 0x20]) };
        let f = fault_of(r);
        assert_eq!((f.kind, f.stream, f.iova, f.write), (kind, sid, at, write), "{v}");
        check(&drv, sid, at, write, kind, before);
    }

    // Stream disabled by the enable registers; then a blocked domain (TCR 0).
    drv.set_enabled(1, false);
    assert!(!d.stream_config(1).unwrap().enabled);
    let before = irqs.load(Ordering::SeqCst);
    let f = fault_of(d.dma_read(1, iova, &mut buf));
    assert_eq!(f.kind, FaultKind::StreamDisabled);
    check(&drv, 1, iova, false, FaultKind::StreamDisabled, before);
    drv.set_enabled(1, true);
    d.dma_read(1, iova, &mut [0u8; 4]).unwrap();
    drv.writel(drv.hw.tcr_disabled, drv.tcr(1));
    let before = irqs.load(Ordering::SeqCst);
    assert_eq!(fault_of(d.dma_read(1, iova, &mut buf)).kind, FaultKind::StreamDisabled);
    check(&drv, 1, iova, false, FaultKind::StreamDisabled, before);
    drv.writel(drv.hw.tcr_enabled, drv.tcr(1));

    // While ERROR is latched, later faults do not overwrite it.
    let before = irqs.load(Ordering::SeqCst);
    fault_of(d.dma_read(1, iova + 5 * page, &mut buf));
    fault_of(d.dma_read(2, iova, &mut buf));
    assert_eq!(d.error().more, 1);
    check(&drv, 1, iova + 5 * page, false, FaultKind::NoPte, before);

    // Unmap (strict: invalidated before it returns), then the driver's flush.
    d.unmap(1, iova, 4 * page).unwrap();
    drv.invalidate(&[1]);
    assert_eq!(fault_of(d.dma_read(1, iova, &mut buf)).kind, FaultKind::NoPte);
    drv.irq().unwrap();
    for f in &user[..4] {
        assert_eq!(frames.state(*f).unwrap().counts(), Counts::default());
    }
    assert_eq!(d.check_restricted_unreachable(), Ok(()));
    assert_eq!(d.check_iotlb_coherent(), Ok(()));
    let c = d.mmio_counts();
    assert_eq!((c.unknown, c.locked, c.refused, c.bad_offset), (0, 0, 0, 0), "{c:?}");
    // Ignored: the reset's write-back of a clear ERROR, and (t8110) the IRQ
    // handler's ERROR_STREAMS clears, two words for 40 streams.
    let irq_count = (cases.len() + 4) as u64;
    assert_eq!(c.ignored, 1 + if v == Variant::T8110 { irq_count * 2 } else { 0 }, "{c:?}");
}

#[test]
fn linux_driver_t8020() {
    linux_driver(Variant::T8020, FrameSize::K16);
}

#[test]
fn linux_driver_t6000() {
    linux_driver(Variant::T6000, FrameSize::K16);
}

#[test]
fn linux_driver_t8110() {
    linux_driver(Variant::T8110, FrameSize::K16);
}

#[test]
fn linux_driver_4k_pages() {
    for v in Variant::ALL {
        linux_driver(v, FrameSize::K4);
    }
}

#[test]
fn a_register_flush_completes_deferred_unmaps() {
    for v in Variant::ALL {
        let frames = soc(FrameSize::K16, OnViolation::Reject);
        let mut cfg = config(v, streams_for(v));
        cfg.invalidation = Invalidation::Deferred;
        let d = Dart::new(frames.clone(), cfg).unwrap();
        let mut drv = Driver::probe(&d);
        drv.hw_reset().unwrap();
        let pgd = d.alloc_root_table().unwrap();
        drv.attach(1, &[pgd], false);
        drv.attach(4, &[pgd], false); // a second stream in the same domain
        let f = frames.alloc(FrameType::UserData, 1).unwrap();
        let iova = 0xffff_c000;
        d.map(1, iova, &f, Perm::RW, None).unwrap();
        d.dma_write(1, iova, b"abc").unwrap();
        d.dma_write(4, iova, b"abc").unwrap();
        d.unmap(1, iova, 0x4000).unwrap();
        assert_eq!(frames.state(f[0]).unwrap().counts(), Counts { pending: 1, ..Counts::default() });
        d.dma_read(1, iova, &mut [0u8; 3]).unwrap(); // stale IOTLB entry: the lazy window
        drv.invalidate(&[1]);
        assert_eq!(frames.state(f[0]).unwrap().counts().pending, 1, "stream 4 may still cache it");
        if v == Variant::T8110 {
            drv.writel(0, 0x80); // TLB_CMD OP 0: flush all
            assert_eq!(drv.readl(0x80) & (1 << 31), 0);
        } else {
            drv.invalidate(&[4]);
        }
        assert_eq!(frames.state(f[0]).unwrap().counts(), Counts::default());
        // Its leaf table emptied and went with it: the L1 entry is gone.
        assert_eq!(fault_of(d.dma_read(4, iova, &mut [0u8; 3])).kind, FaultKind::NoL1);
        assert_eq!(frames.free(f[0]), Ok(()));
    }
}

#[test]
fn the_lock_bit_freezes_tcr_and_ttbr() {
    for v in Variant::ALL {
        let frames = soc(FrameSize::K16, OnViolation::Reject);
        let d = Dart::new(frames.clone(), config(v, streams_for(v))).unwrap();
        let mut drv = Driver::probe(&d);
        drv.hw_reset().unwrap();
        let pgd = d.alloc_root_table().unwrap();
        drv.attach(1, &[pgd], false);
        let f = frames.alloc(FrameType::UserData, 1).unwrap();
        d.map(1, 0, &f, Perm::RW, None).unwrap();
        let before = d.mmio_counts().locked;
        drv.writel(drv.hw.lock_bit, drv.hw.lock);
        assert_eq!(drv.readl(drv.hw.lock) & drv.hw.lock_bit, drv.hw.lock_bit);
        assert!(drv.hw_reset().unwrap_err().contains("locked down"));
        // TCR / TTBR writes: Ok, ignored, counted.
        drv.writel(drv.hw.tcr_disabled, drv.tcr(1));
        drv.writel(0, drv.ttbr(1, 0));
        drv.writel(drv.hw.tcr_enabled, drv.tcr(5));
        assert_eq!(d.mmio_counts().locked, before + 3);
        assert_eq!(d.stream_config(1).unwrap(), StreamConfig::TRANSLATING);
        assert_eq!(d.ttbr(1, 0).unwrap(), Some(pgd));
        assert_eq!(drv.readl(drv.tcr(1)), drv.hw.tcr_enabled);
        assert_eq!(drv.readl(drv.ttbr(1, 0)), drv.ttbr_value(pgd));
        assert!(!d.stream_config(5).unwrap().translate);
        d.dma_write(1, 0, b"still translating").unwrap();
        // Enables and flushes are not locked.
        drv.set_enabled(1, false);
        assert!(!d.stream_config(1).unwrap().enabled);
        drv.set_enabled(1, true);
        drv.invalidate(&[1]);
        match v {
            Variant::T8110 => {
                // UNPROTECT lifts it unless PROTECT_LOCK was written.
                drv.writel(1, 0x204);
                assert_eq!(drv.readl(0x200), 0);
                drv.writel(drv.hw.tcr_enabled, drv.tcr(5));
                assert!(d.stream_config(5).unwrap().translate);
                drv.writel(1, 0x200);
                drv.writel(1, 0x208);
                let locked = d.mmio_counts().locked;
                drv.writel(1, 0x204);
                assert_eq!(drv.readl(0x200), 1);
                assert_eq!(d.mmio_counts().locked, locked + 1);
            }
            _ => {
                // CONFIG.LOCK is sticky.
                drv.writel(0, drv.hw.lock);
                assert_eq!(drv.readl(drv.hw.lock), drv.hw.lock_bit);
            }
        }
        drv.writel(0, drv.tcr(1));
        assert_eq!(d.stream_config(1).unwrap(), StreamConfig::TRANSLATING);
    }
}

#[test]
fn a_ttbr_at_user_data_is_refused_in_reject_mode() {
    for v in Variant::ALL {
        let frames = soc(FrameSize::K16, OnViolation::Reject);
        let d = Dart::new(frames.clone(), config(v, streams_for(v))).unwrap();
        let mut drv = Driver::probe(&d);
        drv.hw_reset().unwrap();
        let pgd = d.alloc_root_table().unwrap();
        drv.attach(1, &[pgd], false);
        let user = frames.alloc(FrameType::UserData, 1).unwrap()[0];
        let secret = frames.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
        let foreign = frames.alloc(FrameType::DartTable, 1).unwrap()[0];
        let user_pa = frames.pa_of(user).unwrap();
        let targets = [
            (user_pa, Some(FrameType::UserData)),
            (frames.pa_of(secret).unwrap(), Some(FrameType::KernelRestricted)),
            (frames.pa_of(foreign).unwrap(), Some(FrameType::DartTable)),
            (0x1000_0000, None),
        ];
        for (i, &(pa, ty)) in targets.iter().enumerate() {
            let err = d.mmio_write(drv.ttbr(1, 0), drv.ttbr_value(pa)).unwrap_err();
            match &err {
                // A dart-table frame, but not this DART's: the foreign-table breach.
                MmioError::Refused { source: DartError::Frame(Error::ForeignTable { pa: got }), .. } => {
                    assert_eq!((*got, Some(FrameType::DartTable)), (pa, ty), "{v}")
                }
                MmioError::Refused { source: DartError::Frame(Error::NotTable { pa: got, ty: got_ty }), .. } => {
                    assert_eq!((*got, *got_ty), (pa, ty), "{v}")
                }
                _ => panic!("{v}: {err:?}"),
            }
            assert_eq!(err.kind(), "forbidden-type");
            assert_eq!(frames.violations(), i as u64 + 1);
            assert_eq!(d.ttbr(1, 0).unwrap(), Some(pgd), "nothing changed");
        }
        assert_eq!(frames.halted(), None);
        assert_eq!(d.mmio_counts().refused, targets.len() as u64);
        // The same frame as a TTBR of another stream, or of another index.
        assert!(d.mmio_write(drv.ttbr(2, 0), drv.ttbr_value(user_pa)).is_err());
        assert_eq!(d.ttbr(2, 0).unwrap(), None);
        assert_eq!(d.check_restricted_unreachable(), Ok(()));
    }
}

#[test]
fn a_ttbr_at_user_data_halts_in_panic_mode() {
    for v in Variant::ALL {
        let frames = soc(FrameSize::K16, OnViolation::Panic);
        let d = Dart::new(frames.clone(), config(v, streams_for(v))).unwrap();
        let mut drv = Driver::probe(&d);
        drv.hw_reset().unwrap();
        let pgd = d.alloc_root_table().unwrap();
        drv.attach(1, &[pgd], false);
        let user = frames.alloc(FrameType::UserData, 1).unwrap()[0];
        let pa = frames.pa_of(user).unwrap();
        let ttbr = drv.ttbr(1, 0);
        let err = d.mmio_write(ttbr, drv.ttbr_value(pa)).unwrap_err();
        let breach = Violation::TtbrNotTable { pa, ty: Some(FrameType::UserData) };
        assert_eq!(
            err,
            MmioError::Refused {
                offset: ttbr,
                register: dart::decode_access(v, ttbr, 0).register,
                source: DartError::Frame(Error::Panic(breach.clone())),
            }
        );
        assert_eq!(err.kind(), "panic");
        assert_eq!(frames.halted(), Some(breach.clone()));
        assert_eq!(d.ttbr(1, 0).unwrap(), Some(pgd), "the breach changed nothing");
        // Every later access returns halted.
        let halted = d.mmio_read(drv.hw.error).unwrap_err();
        assert_eq!(halted.kind(), "halted");
        assert!(matches!(halted, MmioError::Refused { source: DartError::Frame(Error::Halted(_)), .. }));
        assert_eq!(d.mmio_write(drv.tcr(1), 0).unwrap_err().kind(), "halted");
        assert_eq!(d.stream_config(1).unwrap(), StreamConfig::TRANSLATING);
    }
}

#[test]
fn bypass_by_tcr_needs_a_trusted_stream() {
    for v in Variant::ALL {
        let frames = soc(FrameSize::K16, OnViolation::Reject);
        let mut cfg = config(v, streams_for(v));
        cfg.trusted = vec![15];
        let d = Dart::new(frames.clone(), cfg).unwrap();
        let mut drv = Driver::probe(&d);
        drv.hw_reset().unwrap();
        drv.attach(1, &[], false);
        let err = d.mmio_write(drv.tcr(1), drv.hw.tcr_bypass).unwrap_err();
        assert_eq!(err.kind(), "bypass-denied");
        assert!(matches!(err, MmioError::Refused { source: DartError::BypassDenied { sid: 1 }, .. }));
        assert_eq!(d.stream_config(1).unwrap(), StreamConfig::TRANSLATING, "nothing changed");
        assert_eq!(drv.readl(drv.tcr(1)), drv.hw.tcr_enabled);
        // m1n1 bypasses with BYPASS_DART alone: refused as well.
        let bypass_dart_only = drv.hw.tcr_bypass & !(if v == Variant::T8110 { 1 << 2 } else { 1 << 12 });
        assert_eq!(d.mmio_write(drv.tcr(1), bypass_dart_only).unwrap_err().kind(), "bypass-denied");
        assert!(!d.stream_config(1).unwrap().bypass);
        // A trusted stream bypasses; forbidden frames stay unreachable.
        drv.writel(drv.hw.tcr_bypass, drv.tcr(15));
        assert_eq!(drv.readl(drv.tcr(15)), drv.hw.tcr_bypass);
        let c = d.stream_config(15).unwrap();
        assert!(c.bypass && c.bypass_dapf && c.enabled && !c.translate);
        let user = frames.pa_of(frames.alloc(FrameType::UserData, 1).unwrap()[0]).unwrap();
        let secret = frames.pa_of(frames.alloc(FrameType::KernelRestricted, 1).unwrap()[0]).unwrap();
        d.dma_write(15, user, b"identity").unwrap();
        assert_eq!(fault_of(d.dma_read(15, secret, &mut [0u8; 4])).kind, FaultKind::ForbiddenFrame);
        assert_eq!(d.check_restricted_unreachable(), Ok(()));
    }
}

#[test]
fn bad_and_unknown_offsets() {
    for v in Variant::ALL {
        let d = Dart::new(soc(FrameSize::K16, OnViolation::Reject), config(v, 4)).unwrap();
        let unknown = if v == Variant::T8110 { 0x7f0 } else { 0x8 };
        assert_eq!(d.mmio_read(unknown), Ok(0));
        assert_eq!(d.mmio_write(unknown, 0xdead_beef), Ok(()));
        assert_eq!(d.mmio_read(unknown), Ok(0));
        // TCR / TTBR of a stream the instance lacks.
        let tcr7 = hw(v).tcr + 4 * 7;
        assert_eq!(d.mmio_write(tcr7, 1), Ok(()));
        assert_eq!(d.mmio_read(tcr7), Ok(0));
        // Read-only PARAMS.
        assert_eq!(d.mmio_write(0x0, 0), Ok(()));
        assert_eq!(d.mmio_read(0x0), Ok(14 << 24));
        assert_eq!(d.mmio_read(0x102), Err(MmioError::Misaligned { offset: 0x102 }));
        assert_eq!(d.mmio_write(0x4000, 0), Err(MmioError::OutOfRange { offset: 0x4000, size: 0x4000 }));
        assert_eq!(d.mmio_write(u64::MAX, 0), Err(MmioError::Misaligned { offset: u64::MAX }));
        assert_eq!(d.mmio_read(u64::MAX - 3).unwrap_err().kind(), "bad-range");
        let c = d.mmio_counts();
        assert_eq!((c.reads, c.writes, c.unknown, c.ignored, c.bad_offset), (6, 5, 5, 1, 4), "{v}: {c:?}");
    }
}

#[test]
fn the_observer_sees_every_access_decoded_like_m1n1() {
    let d = Dart::new(soc(FrameSize::K16, OnViolation::Reject), config(Variant::T8020, 16)).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    d.set_mmio_observer(Some(Arc::new(move |a: &dart::MmioAccess| {
        sink.lock().unwrap().push((a.seq, a.outcome, a.to_string()));
    })));
    d.mmio_write(0x10c, 0x80).unwrap();
    d.mmio_read(0x10c).unwrap();
    d.mmio_write(0x34, 0xffff).unwrap();
    d.mmio_write(0x20, 0x100000).unwrap();
    d.mmio_write(0x7f0, 5).unwrap();
    d.mmio_write(0x234, 0x8000_0000).unwrap_err();
    d.mmio_read(0x3).unwrap_err();
    d.set_mmio_observer(None);
    d.mmio_read(0x10c).unwrap();
    let lines = lines.lock().unwrap();
    let text: Vec<&str> = lines.iter().map(|l| l.2.as_str()).collect();
    assert_eq!(
        text,
        [
            "MMIO: W.4   TCR[3] = 0x80 (BYPASS_DAPF=0, BYPASS_DART=0, TRANSLATE_ENABLE=1)",
            "MMIO: R.4   TCR[3] = 0x80 (BYPASS_DAPF=0, BYPASS_DART=0, TRANSLATE_ENABLE=1)",
            "MMIO: W.4   STREAM_SELECT = 0xffff ()",
            "MMIO: W.4   STREAM_COMMAND = 0x100000 (INVALIDATE=1, BUSY=0)",
            "MMIO: W.4   0x7f0 = 0x5",
            "MMIO: W.4   TTBR[(3, 1)] = 0x80000000 (VALID=1, ADDR=0x0)",
            "MMIO: R.4   0x3 = 0x0",
        ]
    );
    let outcomes: Vec<MmioOutcome> = lines.iter().map(|l| l.1).collect();
    assert_eq!(
        outcomes,
        [
            MmioOutcome::Done,
            MmioOutcome::Done,
            MmioOutcome::Done,
            MmioOutcome::Done,
            MmioOutcome::Unknown,
            MmioOutcome::Refused("forbidden-type"),
            MmioOutcome::BadOffset,
        ]
    );
    assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "sequence numbers increase");
    let e = dart::decode_access(Variant::T8110, 0x100, 0x8030_0008);
    assert_eq!(e.register, "ERROR");
    assert!(e.fields.contains(&("SID".to_string(), 3)) && e.fields.contains(&("NO_PTE".to_string(), 1)));
}

#[test]
fn error_mask_keeps_faults_from_latching() {
    let frames = soc(FrameSize::K16, OnViolation::Reject);
    let d = Dart::new(frames, config(Variant::T8110, 16)).unwrap();
    let mut drv = Driver::probe(&d);
    drv.hw_reset().unwrap();
    drv.attach(2, &[], false);
    let no_ttbr = 1 << code_bit(Variant::T8110, FaultKind::NoTtbr, false);
    drv.writel(no_ttbr, 0x104);
    assert_eq!(drv.readl(0x104), no_ttbr);
    assert_eq!(fault_of(d.dma_read(2, 0, &mut [0u8; 4])).kind, FaultKind::NoTtbr, "the DMA still fails");
    assert!(!d.interrupt_pending());
    assert_eq!(drv.readl(0x100), 0);
    assert_eq!(d.stats().snapshot().get("faults.no-ttbr"), Some(1));
    drv.writel(0, 0x104);
    fault_of(d.dma_read(2, 0, &mut [0u8; 4]));
    assert!(d.interrupt_pending());
    assert_eq!(drv.irq(), Some((1 << 31 | 2 << 20 | no_ttbr, 0)));
}

#[test]
fn clearing_four_level_over_four_level_tables_maps_nothing() {
    let frames = soc(FrameSize::K16, OnViolation::Reject);
    let d = Dart::new(frames.clone(), config(Variant::T8110, 16)).unwrap();
    let mut drv = Driver::probe(&d);
    drv.hw_reset().unwrap();
    let pgd = d.alloc_root_table().unwrap();
    drv.attach(1, &[pgd], true);
    let f = frames.alloc(FrameType::UserData, 1).unwrap();
    d.map(1, 0, &f, Perm::RW, None).unwrap();
    d.dma_write(1, 0, b"x").unwrap();
    drv.writel(drv.hw.tcr_enabled, drv.tcr(1)); // FOUR_LEVEL cleared
    drv.invalidate(&[1]);
    // The two-level walk finds the L1 table's descriptor in the leaf slot:
    // it names a dart-table frame, so the walk faults and maps nothing.
    assert_eq!(fault_of(d.dma_read(1, 0, &mut [0u8; 1])).kind, FaultKind::ForbiddenFrame);
    assert_eq!(d.mappings(1).unwrap(), vec![]);
    assert_eq!(d.check_restricted_unreachable(), Ok(()));
    drv.writel(drv.hw.tcr_enabled | drv.hw.tcr_4level, drv.tcr(1));
    d.dma_read(1, 0, &mut [0u8; 1]).unwrap();
    assert_eq!(d.mappings(1).unwrap().len(), 1);
}

#[test]
fn root_tables_are_freed_only_when_empty_and_unnamed() {
    let frames = soc(FrameSize::K16, OnViolation::Reject);
    let d = Dart::new(frames.clone(), config(Variant::T6000, 16)).unwrap();
    let mut drv = Driver::probe(&d);
    drv.hw_reset().unwrap();
    let pgd = d.alloc_root_table().unwrap();
    let root: Frame = frames.frame_of(pgd).unwrap();
    assert_eq!(frames.state(root).unwrap().ty(), FrameType::DartTable);
    drv.attach(1, &[pgd], false);
    let f = frames.alloc(FrameType::UserData, 1).unwrap();
    d.map(1, 0, &f, Perm::RW, None).unwrap();
    assert_eq!(d.free_root_table(pgd).unwrap_err().kind(), "bad-range", "has entries");
    d.unmap(1, 0, 0x4000).unwrap();
    assert_eq!(d.free_root_table(pgd).unwrap_err().kind(), "bad-range", "named by a TTBR");
    assert!(d.free_root_table(pgd + 0x4000).is_err());
    drv.writel(0, drv.ttbr(1, 0));
    d.free_root_table(pgd).unwrap();
    assert_eq!(frames.state(root).unwrap().ty(), FrameType::Free);
    // A freed root can no longer be named.
    assert_eq!(d.mmio_write(drv.ttbr(1, 0), drv.ttbr_value(pgd)).unwrap_err().kind(), "forbidden-type");
}

/// t8110 at 4 KiB pages: the TTBR holds PA >> 14 (Linux, m1n1), so a root
/// above 2^40 reads back whole, and writing the read-back value again names
/// the same root; the root the mapper hands out is 16 KiB aligned even
/// though the memory's frames are only 4 KiB aligned.
#[test]
fn t8110_4k_ttbr_names_a_root_above_2_40_and_its_read_back_value_again() {
    let base = (1u64 << 40) + 0x23_0000_1000; // 4 KiB aligned, not 16 KiB
    let regions = vec![frame_table::Region { base, size: 256 << 10 }];
    let cfg = FrameTableConfig { regions, frame_size: FrameSize::K4, on_violation: OnViolation::Panic };
    let frames = Arc::new(FrameTable::new(cfg).unwrap());
    let d = Dart::new(frames.clone(), config(Variant::T8110, 4)).unwrap();
    let mut drv = Driver::probe(&d);
    drv.hw_reset().unwrap();
    assert!(drv.ias <= drv.oas);
    let pgd = d.alloc_root_table().unwrap();
    assert!(pgd > 1 << 40 && pgd.is_multiple_of(16 << 10), "{pgd:#x}");
    drv.attach(1, &[pgd], false);
    let off = drv.ttbr(1, 0);
    let value = d.mmio_read(off).unwrap();
    assert_eq!(value, ((pgd >> 14) as u32) << 2 | 1);
    assert_eq!(value, drv.ttbr_value(pgd));
    d.mmio_write(off, value).unwrap();
    assert_eq!(d.mmio_read(off).unwrap(), value);
    assert_eq!(d.ttbr(1, 0).unwrap(), Some(pgd));
    assert_eq!(frames.halted(), None);
    // The root translates: a page mapped under it is reachable by DMA.
    let user = frames.alloc(FrameType::UserData, 1).unwrap();
    d.map(1, 0x4000, &user, Perm::RW, None).unwrap();
    drv.invalidate(&[1]);
    d.dma_write(1, 0x4000, b"above 2^40").unwrap();
    assert_eq!(d.ttbr(1, 0).unwrap(), Some(pgd));
    // Every root the mapper hands out (typed or by a map on a stream
    // without one) is 16 KiB aligned.
    drv.attach(2, &[], false);
    let own = frames.alloc(FrameType::UserData, 1).unwrap();
    d.map(2, 0, &own, Perm::RW, None).unwrap();
    let root2 = d.ttbr(2, 0).unwrap().unwrap();
    assert_eq!(root2 % (16 << 10), 0, "{root2:#x}");
    assert_eq!(d.mmio_read(drv.ttbr(2, 0)).unwrap(), drv.ttbr_value(root2));
    assert_eq!(frames.halted(), None);
}

/// A typed TTBR write of a table the register cannot name (4 KiB aligned
/// at t8110) follows the bad-TTBR rules: refused as a foreign TTBR.
#[test]
fn t8110_4k_a_root_the_ttbr_cannot_name_is_refused() {
    let cfg = FrameTableConfig::with_memory(1 << 20).frame_size(FrameSize::K4).on_violation(OnViolation::Reject);
    let frames = Arc::new(FrameTable::new(cfg).unwrap());
    let d = Dart::new(frames.clone(), config(Variant::T8110, 4)).unwrap();
    // Leaf and L1 tables need only 4 KiB alignment: map enough pages in
    // distinct L1 ranges that some table lands off a 16 KiB boundary.
    let pgd = d.alloc_root_table().unwrap();
    d.set_ttbr(1, 0, Some(pgd)).unwrap();
    let user = frames.alloc(FrameType::UserData, 8).unwrap();
    for (i, f) in user.iter().enumerate() {
        d.map(1, (i as u64) << 21, std::slice::from_ref(f), Perm::RW, None).unwrap();
    }
    let odd = frames
        .states()
        .filter(|(_, s)| s.ty() == FrameType::DartTable)
        .map(|(f, _)| frames.pa_of(f).unwrap())
        .find(|pa| pa % (16 << 10) != 0)
        .expect("a 4 KiB-aligned table");
    let before = frames.violations();
    assert!(d.set_ttbr(2, 0, Some(odd)).is_err());
    assert_eq!(frames.violations(), before + 1);
    assert_eq!(d.ttbr(2, 0).unwrap(), None);
}

/// t8020/t6000 STREAM_REMAP (0x80–0x8c) and t8110 TCR REMAP / REMAP_EN are
/// read-as-written with no effect on translation (docs/design.md §3,
/// *inferred*): the value written reads back, the stream keeps translating
/// as itself, and a locked t8110 drops TCR writes, remap bits included.
#[test]
fn remap_registers_read_as_written_and_change_no_translation() {
    for v in Variant::ALL {
        let frames = soc(FrameSize::K16, OnViolation::Reject);
        let d = Dart::new(frames.clone(), config(v, streams_for(v))).unwrap();
        d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
        let data = frames.alloc(FrameType::UserData, 1).unwrap()[0];
        d.map(1, 0, &[data], Perm::RW, None).unwrap();
        d.dma_write(1, 0, b"ours").unwrap();
        let tcr = if v == Variant::T8110 { 0x1000 + 4 } else { 0x100 + 4 };
        let before = d.mmio_read(tcr).unwrap();
        if v == Variant::T8110 {
            // REMAP = 5, REMAP_EN.
            d.mmio_write(tcr, before | 5 << 8 | 1 << 7).unwrap();
            assert_eq!(d.mmio_read(tcr).unwrap(), before | 5 << 8 | 1 << 7, "{v}");
            assert_eq!(d.stream_config(1).unwrap(), StreamConfig::TRANSLATING);
            d.mmio_write(0x200, 1).unwrap(); // PROTECT LOCK_TCR_TTBR
            d.mmio_write(tcr, before).unwrap();
            assert_eq!(d.mmio_read(tcr).unwrap(), before | 5 << 8 | 1 << 7, "locked: dropped");
        } else {
            for i in 0..4u64 {
                assert_eq!(d.mmio_read(0x80 + 4 * i).unwrap(), 0, "{v} REMAP[{i}] at reset");
                d.mmio_write(0x80 + 4 * i, 0x0102_0304 * (i as u32 + 1)).unwrap();
            }
            for i in 0..4u64 {
                assert_eq!(d.mmio_read(0x80 + 4 * i).unwrap(), 0x0102_0304 * (i as u32 + 1), "{v}");
            }
            assert_eq!(d.mmio_read(tcr).unwrap(), before);
        }
        let mut buf = [0u8; 4];
        d.dma_read(1, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"ours", "{v}: stream 1 still translates as itself");
        assert_eq!(d.dma_read(0, 0, &mut buf).unwrap_err().kind(), "fault:stream-disabled", "{v}");
    }
}
