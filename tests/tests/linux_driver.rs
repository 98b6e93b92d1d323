//! A Linux-style driver over the monitor (issue 26, item 3).
//!
//! `linux_driver/apple_dart.rs` models Linux's `apple-dart.c` (probe,
//! reset, stream commands, fault handler, paging domain) and talks to the
//! DART only through its registers; `linux_driver/io_pgtable.rs` models
//! `io-pgtable-dart.c` and builds the domain's tables itself, every entry
//! written and read through the monitor (`Dart::write_table_entry` /
//! `read_table_entry`, `release_table`), in `dart-table` frames it
//! allocates from the frame table as a kernel would.
//!
//! Each run (variant × page size × table levels) probes, resets, builds a
//! domain, attaches two streams, maps pages (crossing a last-level table
//! boundary, read-only, write-only, and one far away: another TTBR or L0
//! slot where the geometry has one), lets a device DMA real data through
//! them and checks the bytes in the frames, takes faults and reads them
//! back through ERROR / ERROR_ADDR as Linux's IRQ handler does, asks the
//! monitor to map forbidden frames (each refused `forbidden-type`,
//! changing nothing), unmaps (strict, and lazy: `iommu_unmap_fast` then
//! `iotlb_sync`), and tears everything down until the frame table is all
//! free again. `cargo test --test linux_driver -- --nocapture` prints one
//! line per run.
//!
//! Two more runs repeat one configuration each on a deferred-invalidation
//! DART (the monitor keeps cleared entries pending until the driver's
//! invalidation there too). `four_levels_in_linux_register_order` pins
//! the case that once failed: Linux's attach order (TTBRs while TCR is 0,
//! then TCR with FOUR_LEVEL) builds a four-level tree.
//!
//! dart/tests/mmio.rs holds the register-level probe of the same Linux
//! driver (every register after reset, every fault code) over
//! mapper-built tables; this file is its monitor-path counterpart.

mod linux_driver {
    pub mod apple_dart;
    pub mod io_pgtable;
}

use dart::{Dart, DartConfig, DartError, FaultKind, Invalidation, Variant};
use frame_table::{Frame, FrameSize, FrameState, FrameTable, FrameTableConfig, FrameType, OnViolation};
use linux_driver::apple_dart::{match_data, AppleDart, Domain};
use linux_driver::io_pgtable::{IotlbGather, IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE};
use std::collections::HashMap;
use std::sync::Arc;

/// Table levels below the TTBR the domain uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Levels {
    Two,
    Four,
}

/// Everything the frame table and the DART count, for "changed nothing".
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    states: Vec<(Frame, FrameState)>,
    dart_counts: HashMap<Frame, (u64, u64)>,
    violations: u64,
}

fn snapshot(frames: &FrameTable, dart: &Dart) -> Snapshot {
    Snapshot { states: frames.states().collect(), dart_counts: dart.dart_counts(), violations: frames.violations() }
}

/// A deterministic byte pattern.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The name Linux's IRQ handler gives the fault `kind` on this variant.
fn linux_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::NoTtbr => "NO TTBR FOR IOVA",
        FaultKind::NoL0 => "NO PGD FOR IOVA",
        FaultKind::NoL1 => "NO PMD FOR IOVA",
        FaultKind::NoPte => "NO PTE FOR IOVA",
        FaultKind::Write => "WRITE FAULT",
        FaultKind::Read => "READ FAULT",
        other => panic!("{other:?} is not provoked here"),
    }
}

/// A DMA that must fault with `kind`: the device sees the typed fault, and
/// the driver's IRQ handler reads ERROR / ERROR_ADDR, names the fault as
/// Linux does, and clears it by writing ERROR back.
fn take_fault(drv: &AppleDart, r: Result<(), DartError>, sid: u32, iova: u64, write: bool, kind: FaultKind) {
    let f = match r {
        Err(DartError::Fault(f)) => f,
        other => panic!("DMA at {iova:#x} (sid {sid}): expected a {kind:?} fault, got {other:?}"),
    };
    assert_eq!((f.kind, f.stream, f.iova, f.write), (kind, sid, iova, write), "the device's fault");
    assert!(drv.dart().interrupt_pending(), "{kind:?}: the interrupt line is up");
    let report = drv.irq().unwrap_or_else(|| panic!("{kind:?}: IRQ_NONE"));
    assert_eq!(report.code.count_ones(), 1, "{report:?}: one code bit");
    assert_eq!(report.error & report.code, report.code);
    assert_eq!((report.stream, report.addr, report.name), (sid, iova, linux_name(kind)), "{report:?}");
    assert_eq!(drv.readl(drv.hw.error), 0, "{kind:?}: ERROR is write-1-to-clear");
    assert!(!drv.dart().interrupt_pending(), "{kind:?}: the line dropped");
    assert_eq!(drv.irq(), None);
}

fn run(v: Variant, fs: FrameSize, levels: Levels, invalidation: Invalidation) {
    let frames = Arc::new(
        FrameTable::new(FrameTableConfig::with_memory(16 << 20).frame_size(fs).on_violation(OnViolation::Reject))
            .unwrap(),
    );
    let all_frames = frames.free_frames();
    let mut config = DartConfig::new("dart0", v);
    config.streams = if v == Variant::T8110 { 40 } else { 16 };
    config.invalidation = invalidation;
    let dart = Arc::new(Dart::new(frames.clone(), config).unwrap());
    let p = fs.bytes();
    let shift = fs.shift();
    let sids: [u32; 2] = if v == Variant::T8110 { [1, 33] } else { [1, 2] };
    let mut violations = 0;

    // ---- Probe and reset.
    let drv = AppleDart::probe(dart.clone(), match_data(v)).unwrap();
    let (ias, oas, streams) = match v {
        Variant::T8020 => (32, 36, 16),
        Variant::T6000 => (32, 42, 16),
        Variant::T8110 => ((shift + 3 * (shift - 3)).min(42), 42, 40),
    };
    assert_eq!((drv.pgsize, drv.ias, drv.oas, drv.num_streams), (p, ias, oas, streams), "{v} {fs:?}: PARAMS");
    assert!(drv.supports_bypass);
    assert_eq!(drv.four_level, v == Variant::T8110 && ias > 36);
    assert_eq!(drv.hw.fmt.crate_format(), dart.pte_format(), "{v}: the PTE format");
    for sid in 0..drv.num_streams {
        assert_eq!(drv.readl(drv.tcr(sid)), 0, "TCR({sid}) after reset");
        for i in 0..drv.hw.ttbr_count {
            assert_eq!(drv.readl(drv.ttbr(sid, i)), 0, "TTBR({sid}, {i}) after reset");
        }
        assert!(dart.stream_config(sid).unwrap().enabled, "the reset enables every stream");
    }
    assert_eq!(drv.readl(drv.hw.error), 0);

    // ---- The domain: io-pgtable decides levels and roots from ias.
    let four = levels == Levels::Four;
    assert!(!four || drv.four_level, "{v} has no four-level tables");
    // Two levels on t8110: a domain narrower than PARAMS3's VA width.
    let ias_limit = (v == Variant::T8110 && !four).then_some(shift + 2 * (shift - 3));
    let mut domain = Domain::finalize(&drv, ias_limit).unwrap();
    let cfg = domain.pgtbl().cfg().clone();
    let n_ttbrs = if v != Variant::T8110 && fs == FrameSize::K4 { 4 } else { 1 };
    assert_eq!((cfg.n_levels, cfg.n_ttbrs), (if four { 4 } else { 3 }, n_ttbrs), "{cfg:?}");
    let roots: Vec<u64> = domain.pgtbl().pgd().to_vec();
    if v == Variant::T8110 {
        assert!(roots.iter().all(|r| r % (16 << 10) == 0), "t8110 roots are 16 KiB aligned");
    }

    // ---- Attach two streams (TTBRs, TCR, invalidate).
    domain.attach(&sids).unwrap();
    let tcr = drv.hw.tcr_enabled | if four { drv.hw.tcr_4level } else { 0 };
    for &sid in &sids {
        assert_eq!(drv.readl(drv.tcr(sid)), tcr, "TCR({sid})");
        for i in 0..drv.hw.ttbr_count {
            let expect = roots.get(i as usize).map_or(0, |&r| drv.ttbr_value(r));
            assert_eq!(drv.readl(drv.ttbr(sid, i)), expect, "TTBR({sid}, {i})");
            assert_eq!(dart.ttbr(sid, i as usize).unwrap(), roots.get(i as usize).copied());
        }
        let c = dart.stream_config(sid).unwrap();
        assert!(c.enabled && c.translate && !c.bypass && c.four_level == four, "{c:?}");
    }
    for &r in &roots {
        let st = frames.state(frames.frame_of(r).unwrap()).unwrap();
        assert_eq!((st.ty(), st.counts().dart), (FrameType::DartTable, 1), "root {r:#x}: registered, one DART hold");
    }

    // ---- Map. IOVAs: six data pages straddling a last-level table
    // boundary, a read-only and a write-only page after them, and one page
    // far away (another TTBR, another L0 slot, or another L1 slot).
    let leaf_span = domain.pgtbl().leaf_table_span();
    let upper_span = domain.pgtbl().upper_table_span();
    let base = leaf_span - 2 * p;
    let (ro, wo) = (base + 8 * p, base + 9 * p);
    let far = if n_ttbrs > 1 || four { upper_span } else { 5 * leaf_span };
    assert!(far + p - 1 <= domain.aperture_end);
    let data: Vec<Frame> = frames.alloc(FrameType::UserData, 6).unwrap();
    let data_pa: Vec<u64> = data.iter().map(|&f| frames.pa_of(f).unwrap()).collect();
    let extra = frames.alloc(FrameType::UserData, 3).unwrap();
    let extra_pa: Vec<u64> = extra.iter().map(|&f| frames.pa_of(f).unwrap()).collect();
    let (ro_pa, wo_pa, far_pa) = (extra_pa[0], extra_pa[1], extra_pa[2]);

    domain.map_sg(base, &data_pa, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE).unwrap();
    domain.map(ro, ro_pa, p, IOMMU_READ).unwrap();
    domain.map(wo, wo_pa, p, IOMMU_WRITE).unwrap();
    domain.map(far, far_pa, p, IOMMU_READ | IOMMU_WRITE).unwrap();
    // Tables: the roots, two last-level tables for the data, one for the
    // far page; four levels: an L1 table under L0 slot 0 and one under slot 1.
    let tables = roots.len() as u64 + 3 + if four { 2 } else { 0 };
    assert_eq!(domain.pgtbl().stats().tables_allocated, tables);

    // The leaves are Linux's encoding, and the crate's.
    let pg = domain.pgtbl();
    for (k, &pa) in data_pa.iter().enumerate() {
        let iova = base + k as u64 * p;
        let pte = pg.leaf_entry(iova).unwrap();
        assert_eq!(pte, pg.crate_leaf(pa, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE), "leaf at {iova:#x}");
        assert_eq!(domain.iova_to_phys(iova + 5), pa + 5);
    }
    assert_eq!(pg.leaf_entry(ro).unwrap(), pg.crate_leaf(ro_pa, IOMMU_READ));
    assert_eq!(pg.leaf_entry(wo).unwrap(), pg.crate_leaf(wo_pa, IOMMU_WRITE));
    assert_eq!(pg.leaf_entry(far).unwrap(), pg.crate_leaf(far_pa, IOMMU_READ | IOMMU_WRITE));
    for &f in data.iter().chain(&extra) {
        assert_eq!(frames.state(f).unwrap().counts().dart, 1, "{f:?}: one DART count per leaf");
    }

    // ---- A device DMAs through the driver's tables.
    let port1 = dart.port(sids[0]).unwrap();
    let port2 = dart.port(sids[1]).unwrap();
    let mut bytes = 0u64;
    let len = 6 * p as usize - 200;
    let payload = pattern(len, shift + v as u32);
    port1.dma_write(base + 100, &payload).unwrap();
    bytes += len as u64;
    let mut image = vec![0u8; 6 * p as usize];
    image[100..100 + len].copy_from_slice(&payload);
    for (k, &pa) in data_pa.iter().enumerate() {
        let mut buf = vec![0u8; p as usize];
        frames.aperture_read(pa, &mut buf).unwrap();
        assert!(buf == image[k * p as usize..(k + 1) * p as usize], "page {k} at {pa:#x}: the bytes landed there");
    }
    let mut back = vec![0u8; len];
    port2.dma_read(base + 100, &mut back).unwrap();
    bytes += len as u64;
    assert!(back == payload, "the other stream reads the same domain");
    frames.aperture_write(data_pa[3] + 64, b"from the kernel").unwrap();
    let mut msg = [0u8; 15];
    port2.dma_read(base + 3 * p + 64, &mut msg).unwrap();
    bytes += msg.len() as u64;
    assert_eq!(&msg, b"from the kernel");
    // Read-only and write-only pages.
    frames.aperture_write(ro_pa + 8, b"read-only for the device").unwrap();
    let mut ro_buf = [0u8; 24];
    port1.dma_read(ro + 8, &mut ro_buf).unwrap();
    bytes += 24;
    assert_eq!(&ro_buf, b"read-only for the device");
    port1.dma_write(wo + 16, b"write-only").unwrap();
    bytes += 10;
    let mut wo_buf = [0u8; 10];
    frames.aperture_read(wo_pa + 16, &mut wo_buf).unwrap();
    assert_eq!(&wo_buf, b"write-only");
    // The far page.
    port2.dma_write(far + 8, b"far away").unwrap();
    let mut far_buf = [0u8; 8];
    frames.aperture_read(far_pa + 8, &mut far_buf).unwrap();
    assert_eq!(&far_buf, b"far away");
    port1.dma_read(far + 8, &mut far_buf).unwrap();
    bytes += 16;

    // ---- Faults, through ERROR / ERROR_ADDR.
    let w = [0x5au8; 32];
    let mut r = [0u8; 32];
    take_fault(&drv, port1.dma_write(ro, &w), sids[0], ro, true, FaultKind::Write);
    take_fault(&drv, port2.dma_read(wo, &mut r), sids[1], wo, false, FaultKind::Read);
    take_fault(&drv, port1.dma_read(base + 12 * p, &mut r), sids[0], base + 12 * p, false, FaultKind::NoPte);
    take_fault(&drv, port1.dma_write(9 * leaf_span, &w), sids[0], 9 * leaf_span, true, FaultKind::NoL1);
    if four {
        take_fault(&drv, port2.dma_read(2 * upper_span, &mut r), sids[1], 2 * upper_span, false, FaultKind::NoL0);
    }
    if n_ttbrs == 1 && v != Variant::T8110 {
        // TTBR 1 (IOVA[37:36] = 1) is not set.
        take_fault(&drv, port1.dma_read(1 << 36, &mut r), sids[0], 1 << 36, false, FaultKind::NoTtbr);
    }
    for (i, b) in image.iter().enumerate() {
        // Faults wrote nothing.
        let mut one = [0u8; 1];
        if i % 997 == 0 {
            frames.aperture_read(data_pa[i / p as usize] + (i as u64 % p), &mut one).unwrap();
            assert_eq!(one[0], *b);
        }
    }

    // ---- The driver asks to map forbidden frames: each leaf is refused by
    // the monitor (`forbidden-type`) and nothing changes.
    let leaf_b = domain.pgtbl().leaf_table(base + 2 * p).unwrap().expect("the second last-level table");
    let mut forbidden: Vec<(&str, Option<Frame>, u64, u32)> = Vec::new();
    for (name, ty, prot) in [
        ("kernel-restricted", FrameType::KernelRestricted, IOMMU_READ | IOMMU_WRITE),
        ("read-only (rw)", FrameType::ReadOnly, IOMMU_READ | IOMMU_WRITE),
        ("read-only (r)", FrameType::ReadOnly, IOMMU_READ),
        ("dart-table (unused)", FrameType::DartTable, IOMMU_READ | IOMMU_WRITE),
        ("page-table", FrameType::PageTable, IOMMU_READ | IOMMU_WRITE),
        ("mmio", FrameType::Mmio, IOMMU_READ | IOMMU_WRITE),
        ("reserved", FrameType::Reserved, IOMMU_READ | IOMMU_WRITE),
    ] {
        let f = frames.alloc(ty, 1).unwrap()[0];
        forbidden.push((name, Some(f), frames.pa_of(f).unwrap(), prot));
    }
    forbidden.push(("dart-table (the domain's root)", None, roots[0], IOMMU_READ));
    forbidden.push(("dart-table (a linked last-level table)", None, leaf_b, IOMMU_READ | IOMMU_WRITE));
    // Freed after the others are allocated, so none of them reuses it.
    let gone = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    frames.free(gone).unwrap();
    forbidden.push(("free", None, frames.pa_of(gone).unwrap(), IOMMU_READ | IOMMU_WRITE));
    let stats_before = domain.pgtbl().stats();
    for (k, &(name, _, pa, prot)) in forbidden.iter().enumerate() {
        let iova = base + (16 + k as u64) * p;
        let before = snapshot(&frames, &dart);
        let err = domain.map(iova, pa, p, prot).unwrap_err();
        assert_eq!(err.kind(), "forbidden-type", "{v} {fs:?}: map of a {name} frame: {err:?}");
        assert_eq!(domain.pgtbl().leaf_entry(iova).unwrap(), 0, "{name}: the PTE reads back 0");
        assert_eq!(domain.iova_to_phys(iova), 0);
        assert!(snapshot(&frames, &dart) == before, "{name}: the refusal changed nothing");
        take_fault(&drv, port1.dma_read(iova, &mut r), sids[0], iova, false, FaultKind::NoPte);
    }
    let st = domain.pgtbl().stats();
    assert_eq!(st.tables_allocated, stats_before.tables_allocated, "no table was needed");
    assert_eq!(st.leaves_set, stats_before.leaves_set, "no leaf was written");
    for &(_, f, _, _) in &forbidden {
        if let Some(f) = f {
            frames.free(f).unwrap();
        }
    }
    let refused = forbidden.len();

    // ---- Mapping over a mapping: io-pgtable refuses it itself (-EEXIST,
    // with Linux's WARN); a driver skipping that check meets the monitor.
    let before = snapshot(&frames, &dart);
    assert_eq!(domain.map(base, extra_pa[2], p, IOMMU_READ).unwrap_err().kind(), "EEXIST");
    let leaf_a = domain.pgtbl().leaf_table(base).unwrap().unwrap();
    let idx = domain.pgtbl().leaf_index(base);
    let over = domain.pgtbl().crate_leaf(extra_pa[2], IOMMU_READ);
    assert_eq!(dart.write_table_entry(leaf_a, idx, over).unwrap_err().kind(), "iova-in-use");
    assert!(snapshot(&frames, &dart) == before, "refusals changed nothing");
    assert_eq!(domain.pgtbl().leaf_entry(base).unwrap(), pg_leaf(&domain, data_pa[0]));

    // ---- Unmap. Lazy first (iommu_unmap_fast, iotlb_sync later): the
    // entry is clear at once, but the frame stays counted until the flush.
    let mut gather = IotlbGather::default();
    assert_eq!(domain.unmap_fast(ro, p, &mut gather), p);
    assert_eq!(gather.pages, 1);
    assert_eq!(domain.pgtbl().leaf_entry(ro).unwrap(), 0);
    let ro_frame = extra[0];
    let err = frames.free(ro_frame).unwrap_err();
    violations += 1;
    assert_eq!(err.kind(), "frame-busy", "freeing a frame before its invalidation: {err:?}");
    assert!(frames.state(ro_frame).unwrap().counts().any(), "still counted until the flush");
    domain.iotlb_sync(&gather);
    assert_eq!(frames.state(ro_frame).unwrap().counts(), Default::default(), "the flush released it");
    take_fault(&drv, port1.dma_read(ro, &mut r), sids[0], ro, false, FaultKind::NoPte);
    // Strict: iommu_unmap reads each entry back, clears it, then syncs.
    let reads = domain.pgtbl().stats().reads;
    assert_eq!(domain.unmap(base, 6 * p), 6 * p);
    assert!(domain.pgtbl().stats().reads >= reads + 6, "unmap_pages reads every entry back");
    assert_eq!(domain.unmap(wo, p), p);
    assert_eq!(domain.unmap(far, p), p);
    for k in 0..6 {
        assert_eq!(domain.iova_to_phys(base + k * p), 0);
    }
    for &f in data.iter().chain(&extra) {
        assert_eq!(frames.state(f).unwrap().counts(), Default::default(), "{f:?}: no count left");
    }
    take_fault(&drv, port1.dma_read(base + 100, &mut r), sids[0], base + 100, false, FaultKind::NoPte);
    take_fault(&drv, port2.dma_write(far, &w), sids[1], far, true, FaultKind::NoPte);
    let pages_mapped = domain.pages_mapped;
    let stats = domain.pgtbl().stats();
    assert_eq!(stats.leaves_set, 9);
    assert_eq!(stats.leaves_cleared, 9);
    assert_eq!(stats.warnings, 1, "only the -EEXIST WARN_ON");

    // ---- Teardown. While a TTBR names the root it can be neither
    // released nor freed.
    let before = snapshot(&frames, &dart);
    assert_eq!(domain.pgtbl().release_table(roots[0]).unwrap_err().kind(), "table-in-use");
    assert_eq!(frames.free(frames.frame_of(roots[0]).unwrap()).unwrap_err().kind(), "frame-busy");
    violations += 1;
    assert_eq!(snapshot(&frames, &dart).states, before.states, "refusals changed nothing");
    // Clear every descriptor, invalidate, detach, release, free.
    let released = domain.destroy().unwrap();
    assert_eq!(released, tables);
    frames.free_all(&data).unwrap();
    frames.free_all(&extra).unwrap();

    // ---- The whole state, as pKVM's selftests assert it after teardown.
    assert_eq!(frames.free_frames(), all_frames, "every frame is free again");
    for (f, st) in frames.states() {
        assert_eq!((st.ty(), st.counts(), st.pins()), (FrameType::Free, Default::default(), 0), "{f:?}");
    }
    assert!(dart.dart_counts().is_empty(), "{:?}", dart.dart_counts());
    assert!(dart.table_frames().is_empty());
    for &sid in &sids {
        assert_eq!(drv.readl(drv.tcr(sid)), drv.hw.tcr_disabled);
        for i in 0..drv.hw.ttbr_count {
            assert_eq!(drv.readl(drv.ttbr(sid, i)), 0);
            assert_eq!(dart.ttbr(sid, i as usize).unwrap(), None);
        }
        assert!(dart.iotlb_entries(sid).unwrap().is_empty());
    }
    assert_eq!(dart.check_restricted_unreachable(), Ok(()));
    assert_eq!(dart.check_iotlb_coherent(), Ok(()));
    assert_eq!(dart.check_provenance(), Ok(()));
    assert_eq!(frames.reach_map_consistent(), Ok(()));
    assert_eq!(frames.violations(), violations, "only the two provoked breaches");
    assert!(frames.halted().is_none());
    assert!(!dart.interrupt_pending());
    assert_eq!(drv.readl(drv.hw.error), 0);
    let mmio = dart.mmio_counts();
    assert_eq!((mmio.refused, mmio.bad_offset, mmio.unknown, mmio.locked), (0, 0, 0, 0), "{mmio:?}");

    let ds = drv.stats();
    eprintln!(
        "linux-driver {v} {:>2} KiB {} levels ({} TTBR{}, ias {}, {:?}): {} pages mapped, {} bytes DMA'd, {} faults taken, \
         {} forbidden maps refused, {} tables, {} monitor writes / {} reads, {} invalidations ({} BUSY polls)",
        p >> 10,
        if four { 4 } else { 2 },
        n_ttbrs,
        if n_ttbrs > 1 { "s" } else { "" },
        cfg.ias,
        invalidation,
        pages_mapped,
        bytes,
        ds.faults,
        refused,
        tables,
        stats.writes,
        stats.reads,
        ds.invalidations,
        ds.busy_polls,
    );
}

/// The leaf Linux writes for `pa` read-write-cached (for the check after refusals).
fn pg_leaf(domain: &Domain, pa: u64) -> u64 {
    domain.pgtbl().crate_leaf(pa, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE)
}

#[test]
fn t8020_16k() {
    run(Variant::T8020, FrameSize::K16, Levels::Two, Invalidation::Strict);
}

#[test]
fn t8020_4k() {
    run(Variant::T8020, FrameSize::K4, Levels::Two, Invalidation::Strict);
}

#[test]
fn t6000_16k() {
    run(Variant::T6000, FrameSize::K16, Levels::Two, Invalidation::Strict);
}

#[test]
fn t6000_4k() {
    run(Variant::T6000, FrameSize::K4, Levels::Two, Invalidation::Strict);
}

#[test]
fn t8110_16k_two_levels() {
    run(Variant::T8110, FrameSize::K16, Levels::Two, Invalidation::Strict);
}

#[test]
fn t8110_16k_four_levels() {
    run(Variant::T8110, FrameSize::K16, Levels::Four, Invalidation::Strict);
}

#[test]
fn t8110_4k_two_levels() {
    run(Variant::T8110, FrameSize::K4, Levels::Two, Invalidation::Strict);
}

#[test]
fn t8110_4k_four_levels() {
    run(Variant::T8110, FrameSize::K4, Levels::Four, Invalidation::Strict);
}

/// Deferred DARTs: the monitor keeps a cleared entry pending until the
/// driver's invalidation as on strict ones (contract rule 7), so the same
/// driver runs unchanged.
#[test]
fn deferred_t6000_16k() {
    run(Variant::T6000, FrameSize::K16, Levels::Two, Invalidation::Deferred);
}

#[test]
fn deferred_t8110_16k_four_levels() {
    run(Variant::T8110, FrameSize::K16, Levels::Four, Invalidation::Deferred);
}

/// Linux's own `apple_dart_setup_translation` order with four levels:
/// TTBRs first (the stream's TCR is still 0 after the reset), then TCR =
/// TRANSLATE_ENABLE | FOUR_LEVEL, then the invalidation; then one page
/// mapped and DMA'd. On hardware the walker reads FOUR_LEVEL at walk time;
/// the monitor fixes the tree's depth at the root's first entry, after the
/// TCR write. (It once fixed it at the TTBR write, and io-pgtable's L1
/// descriptor was refused `forbidden-type`.)
#[test]
fn four_levels_in_linux_register_order() {
    for fs in [FrameSize::K16, FrameSize::K4] {
        let frames = Arc::new(
            FrameTable::new(FrameTableConfig::with_memory(16 << 20).frame_size(fs).on_violation(OnViolation::Reject))
                .unwrap(),
        );
        let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110)).unwrap());
        let drv = AppleDart::probe(dart.clone(), match_data(Variant::T8110)).unwrap();
        let mut domain = Domain::finalize(&drv, None).unwrap();
        assert_eq!(domain.pgtbl().cfg().n_levels, 4);
        domain.attach(&[1]).unwrap();
        assert!(dart.stream_config(1).unwrap().four_level);
        let f = frames.alloc(FrameType::UserData, 1).unwrap()[0];
        let pa = frames.pa_of(f).unwrap();
        let r = domain.map(0, pa, fs.bytes(), IOMMU_READ | IOMMU_WRITE);
        assert!(r.is_ok(), "{fs:?}: map after Linux's attach order: {r:?}");
        let port = dart.port(1).unwrap();
        port.dma_write(8, b"linux order").unwrap();
        let mut buf = [0u8; 11];
        frames.aperture_read(pa + 8, &mut buf).unwrap();
        assert_eq!(&buf, b"linux order");
    }
}
