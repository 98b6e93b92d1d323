//! A million random register writes to a DART that is serving DMA.
//!
//! One thread writes registers: offsets mostly inside the window (half of
//! them at the registers that matter: TCR, TTBR, enables, commands, ERROR,
//! lock), some wild (misaligned, beyond the window); values random or aimed
//! (TTBRs at every kind of frame: the DART's own tables, a foreign
//! `dart-table`, user data, kernel-restricted, page-table, no memory). Now and
//! then it maps and unmaps through the kernel-side mapper. Another thread
//! does DMA on three streams (one trusted, so bypass can be switched on) and
//! checks that no read ever returns kernel-restricted bytes. Afterwards no
//! forbidden frame is reachable, every frame's counts match the DART's
//! tables, kernel-restricted memory is intact and nothing panicked.
//!
//! `on_violation = reject`: a TTBR at a wrong frame is refused and the run
//! goes on (in `panic` mode the first one halts the system; see
//! `tests/mmio.rs`).

use dart::regs::encode_ttbr;
use dart::{Dart, DartConfig, DartError, Invalidation, MmioError, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITES: u64 = 1_000_000;
const SECRET: [u8; 16] = *b"KERNEL-RESTRICT!";
const WINDOW: u64 = 0x4000;

struct Figures {
    elapsed: Duration,
    dma_ok: u64,
    dma_fault: u64,
    /// Successful DMAs at a physical address through a bypassed stream.
    bypassed_ok: u64,
}

/// Offsets worth hitting often on `v` (written out from docs/design.md §3).
fn hot_offsets(v: Variant) -> Vec<u64> {
    let mut o = vec![0x0, 0x4];
    if v == Variant::T8110 {
        o.extend([0x8, 0xc, 0x80, 0x80, 0x80, 0x100, 0x104, 0x170, 0x174, 0x1c0, 0x200, 0x204, 0x208]);
        o.extend((0..2).flat_map(|i| [0xc00 + 4 * i, 0xc20 + 4 * i]));
        o.extend((0..20).flat_map(|s| [0x1000 + 4 * s, 0x1400 + 4 * s, 0x1400 + 4 * s]));
    } else {
        o.extend([0x20, 0x20, 0x34, 0x40, 0x50, 0x54, 0x60, 0xfc, 0xfc]);
        o.extend((0..16).map(|s| 0x100 + 4 * s));
        o.extend((0..16).flat_map(|s| (0..4).map(move |i| 0x200 + 16 * s + 4 * i)));
    }
    o
}

fn is_ttbr(v: Variant, off: u64) -> bool {
    match v {
        Variant::T8110 => (0x1400..0x1800).contains(&off),
        _ => (0x200..0x300).contains(&off),
    }
}

fn is_tcr(v: Variant, off: u64) -> bool {
    match v {
        Variant::T8110 => (0x1000..0x1400).contains(&off),
        _ => (0x100..0x140).contains(&off),
    }
}

/// The lock registers and their lock bits (kept clear until the last 1%).
fn lock_bits(v: Variant, off: u64) -> u32 {
    match (v, off) {
        (Variant::T8110, 0x200 | 0x208) => 1,
        (Variant::T8110, _) => 0,
        (_, 0x60) => 1 << 15,
        _ => 0,
    }
}

fn fuzz(variant: Variant, invalidation: Invalidation, seed: u64) -> Figures {
    let frames =
        Arc::new(FrameTable::new(FrameTableConfig::with_memory(64 << 20).on_violation(OnViolation::Reject)).unwrap());
    let mut cfg = DartConfig::new("fuzz", variant);
    cfg.streams = 16;
    cfg.trusted = vec![15];
    cfg.invalidation = invalidation;
    let d = Arc::new(Dart::new(frames.clone(), cfg).unwrap());
    let observed = Arc::new(AtomicU64::new(0));
    let seen = observed.clone();
    d.set_mmio_observer(Some(Arc::new(move |_: &dart::MmioAccess| {
        seen.fetch_add(1, Ordering::Relaxed);
    })));
    let page = frames.frame_size().bytes();
    let shift = frames.frame_size().shift();

    // The live streams and what they can reach.
    let user = frames.alloc(FrameType::UserData, 16).unwrap();
    let secret = frames.alloc(FrameType::KernelRestricted, 2).unwrap();
    for &f in &secret {
        let pa = frames.pa_of(f).unwrap();
        for off in (0..page).step_by(SECRET.len()) {
            frames.aperture_write(pa + off, &SECRET).unwrap();
        }
    }
    let page_table = frames.alloc(FrameType::PageTable, 1).unwrap()[0];
    let foreign = frames.alloc(FrameType::DartTable, 1).unwrap()[0];
    for sid in [1, 2, 15] {
        d.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
    }
    const IOVA: u64 = 0x100_0000;
    d.map(1, IOVA, &user[..8], Perm::RW, None).unwrap();
    d.map(2, IOVA, &user[8..12], Perm::R, None).unwrap();
    d.map(15, IOVA, &user[12..], Perm::RW, None).unwrap();
    let root1 = d.ttbr(1, 0).unwrap().unwrap();
    // The register writes that re-attach stream 1 to its tables (docs/design.md §3
    // offsets and bits), as a driver would after a reset.
    let reattach: [(u64, u32); 4] = match variant {
        Variant::T8110 => {
            [(0x1400 + 4, encode_ttbr(variant, 14, Some(root1))), (0x1004, 1), (0xc00, 1 << 1), (0x80, 0x101)]
        }
        _ => [(0x210, encode_ttbr(variant, 14, Some(root1))), (0x104, 0x80), (0x34, 1 << 1), (0x20, 1 << 20)],
    };

    let mut pas: Vec<u64> = user.iter().chain(&secret).map(|&f| frames.pa_of(f).unwrap()).collect();
    pas.push(frames.pa_of(page_table).unwrap());
    pas.push(frames.pa_of(foreign).unwrap());
    let fixed_pas = pas.clone();
    let secret_pas: Vec<u64> = secret.iter().map(|&f| frames.pa_of(f).unwrap()).collect();

    // The DMA thread.
    let stop = Arc::new(AtomicBool::new(false));
    let dma = {
        let (d, stop, bypass_targets) = (d.clone(), stop.clone(), fixed_pas.clone());
        std::thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed ^ 0xd4a);
            let (mut ok, mut fault, mut bypassed) = (0u64, 0u64, 0u64);
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                let sid = [1, 1, 2, 15, 15][rng.gen_range(0..5)];
                let at_pa = sid == 15 && rng.gen_bool(0.5);
                let iova = if at_pa {
                    bypass_targets[rng.gen_range(0..bypass_targets.len())] + rng.gen_range(0..page / 64) * 64
                } else {
                    IOVA + rng.gen_range(0..12 * page / 64) * 64
                };
                let r = if rng.gen_bool(0.5) {
                    let r = d.dma_read(sid, iova, &mut buf);
                    if r.is_ok() {
                        assert_ne!(&buf[..16], &SECRET, "stream {sid} read kernel-restricted bytes at {iova:#x}");
                    }
                    r
                } else {
                    d.dma_write(sid, iova, &[0xa5; 64])
                };
                match r {
                    Ok(()) => {
                        ok += 1;
                        bypassed += at_pa as u64;
                    }
                    Err(DartError::Fault(_)) => fault += 1,
                    Err(e) => panic!("DMA: unexpected {e:?}"),
                }
            }
            (ok, fault, bypassed)
        })
    };

    // The register thread (this one).
    let mut rng = SmallRng::seed_from_u64(seed);
    let hot = hot_offsets(variant);
    let mut tables: Vec<u64> = Vec::new();
    let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
    let start = Instant::now();
    for i in 0..WRITES {
        if i % 4096 == 0 {
            // The kernel maps and unmaps, and we learn the current tables.
            let sid = [1, 2][rng.gen_range(0..2)];
            let at = IOVA + rng.gen_range(0..32) * page;
            let _ = if rng.gen_bool(0.5) {
                d.map(sid, at, &user[rng.gen_range(0..16)..][..1], Perm::RW, None).map(drop)
            } else {
                d.unmap(sid, at, page).map(drop)
            };
            tables = d.table_frames().iter().map(|&f| frames.pa_of(f).unwrap()).collect();
        }
        let r: f64 = rng.gen();
        let offset = if r < 0.04 {
            rng.gen::<u64>() // wild: mostly misaligned or far beyond the window
        } else if r < 0.06 {
            WINDOW + 4 * rng.gen_range(0..1024u64)
        } else if r < 0.53 {
            hot[rng.gen_range(0..hot.len())]
        } else {
            4 * rng.gen_range(0..WINDOW / 4)
        };
        let mut value: u32 = if is_ttbr(variant, offset) && rng.gen_bool(0.7) {
            let pa = match rng.gen_range(0..4) {
                0 if !tables.is_empty() => tables[rng.gen_range(0..tables.len())],
                0 | 1 => fixed_pas[rng.gen_range(0..fixed_pas.len())],
                2 => pas[rng.gen_range(0..pas.len())] + (rng.gen_range(0..4) << 12),
                _ => rng.gen::<u64>() & 0xf_ffff_c000,
            };
            encode_ttbr(variant, shift, Some(pa))
        } else if is_tcr(variant, offset) && rng.gen_bool(0.7) {
            let bits: u32 = if variant == Variant::T8110 { rng.gen_range(0..16) } else { rng.gen_range(0..8) };
            if variant == Variant::T8110 {
                bits
            } else {
                (bits & 1) << 7 | (bits & 2) << 7 | (bits & 4) << 10
            }
        } else if rng.gen_bool(0.5) {
            rng.gen()
        } else {
            1 << rng.gen_range(0..32)
        };
        if i < WRITES * 99 / 100 {
            value &= !lock_bits(variant, offset);
        }
        match d.mmio_write(offset, value) {
            Ok(()) => *outcomes.entry("ok").or_default() += 1,
            Err(MmioError::Misaligned { .. } | MmioError::OutOfRange { .. }) => {
                assert!(offset % 4 != 0 || offset >= WINDOW);
                *outcomes.entry("bad-offset").or_default() += 1;
            }
            Err(e @ MmioError::Refused { .. }) => {
                let kind = e.kind();
                assert!(matches!(kind, "bypass-denied" | "forbidden-type"), "write {value:#x} at {offset:#x}: {e}");
                *outcomes.entry(kind).or_default() += 1;
            }
        }
        if i % 64 == 0 {
            let _ = d.mmio_read(4 * rng.gen_range(0..WINDOW / 4));
        }
        if i % 1024 == 0 {
            for (off, v) in reattach {
                d.mmio_write(off, v).unwrap();
            }
            if variant != Variant::T8110 {
                let on = d.mmio_read(0xfc).unwrap();
                d.mmio_write(0xfc, on | 1 << 1).unwrap();
            }
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (dma_ok, dma_fault, bypassed_ok) = dma.join().expect("the DMA thread panicked");

    // Afterwards: nothing forbidden reachable, counts consistent, secrets intact.
    assert_eq!(frames.halted(), None);
    assert_eq!(d.check_restricted_unreachable(), Ok(()));
    let dart_counts = d.dart_counts();
    for (f, st) in frames.states() {
        let (mapped, pending) = dart_counts.get(&f).copied().unwrap_or((0, 0));
        let c = st.counts();
        assert_eq!((u64::from(c.dart), u64::from(c.pending)), (mapped, pending), "{f} ({})", st.ty());
    }
    for &pa in &secret_pas {
        for off in (0..page).step_by(SECRET.len()) {
            let mut b = [0u8; 16];
            frames.aperture_read(pa + off, &mut b).unwrap();
            assert_eq!(b, SECRET, "kernel-restricted memory changed at {:#x}", pa + off);
        }
    }
    d.flush(None).unwrap();
    assert_eq!(d.check_iotlb_coherent(), Ok(()));
    assert_eq!(d.check_restricted_unreachable(), Ok(()));
    let c = d.mmio_counts();
    let reattach_writes = WRITES.div_ceil(1024) * (4 + (variant != Variant::T8110) as u64);
    assert_eq!(c.writes, WRITES + reattach_writes);
    assert_eq!(observed.load(Ordering::Relaxed), c.reads + c.writes);
    assert_eq!(outcomes.get("bad-offset").copied().unwrap_or(0), c.bad_offset, "reads and re-attaches are never bad");
    assert_eq!(
        outcomes.get("bypass-denied").copied().unwrap_or(0) + outcomes.get("forbidden-type").copied().unwrap_or(0),
        c.refused
    );
    assert_eq!(outcomes.values().sum::<u64>(), WRITES);
    assert!(c.refused > 0 && c.unknown > 0 && c.ignored > 0, "{c:?}");
    assert!(frames.violations() > 0);
    eprintln!(
        "{variant} {invalidation:?}: {WRITES} writes in {:.2?} ({:.0} ns/write), {} reads; {c:?}; \
         outcomes {outcomes:?}; DMA {dma_ok} ok ({bypassed_ok} bypassed) / {dma_fault} faults; \
         {} violations refused",
        elapsed,
        elapsed.as_nanos() as f64 / WRITES as f64,
        c.reads,
        frames.violations(),
    );
    Figures { elapsed, dma_ok, dma_fault, bypassed_ok }
}

#[test]
fn a_million_random_writes_t8110_deferred() {
    let f = fuzz(Variant::T8110, Invalidation::Deferred, 0x8110);
    assert!(f.dma_ok > f.bypassed_ok && f.dma_fault > 0, "both translated and faulting DMA ran");
    assert!(f.elapsed < Duration::from_secs(30));
}

#[test]
fn a_million_random_writes_t8020_strict() {
    let f = fuzz(Variant::T8020, Invalidation::Strict, 0x8020);
    assert!(f.dma_ok > f.bypassed_ok && f.dma_fault > 0, "both translated and faulting DMA ran");
    assert!(f.elapsed < Duration::from_secs(30));
}
