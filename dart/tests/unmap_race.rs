//! Strict mode, threaded: a DMA thread hammers one page (directly, or with
//! accesses that span into it from the neighbouring IOVA region) while the
//! main thread maps a fresh frame there, unmaps it, frees it, retypes it
//! `kernel-restricted` and writes a secret into it through the aperture.
//! After `unmap` returns no DMA may read the secret or write into the frame.

use dart::{Dart, DartConfig, DartError, StreamConfig, Variant};
use frame_table::{FrameSize, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const ROUNDS: u64 = 100_000;
const SECRET: u8 = 0x5a;
const DEVICE: u8 = 0xa5;
const IOVA: u64 = 0x40_0000;

/// What the DMA thread does, over and over: an optional read of `elsewhere`
/// (64 bytes, always mapped), a `read_len`-byte read at `read`, and a
/// `write_len`-byte write at `write`; the last two may fault.
struct DmaLoop {
    elsewhere: Option<u64>,
    read: u64,
    read_len: usize,
    write: u64,
    write_len: usize,
}

/// Physical memory for a race: 64 frames of 4 KiB; a violation panics.
fn memory() -> Arc<FrameTable> {
    Arc::new(
        FrameTable::new(
            FrameTableConfig::with_memory(64 * 4096).frame_size(FrameSize::K4).on_violation(OnViolation::Panic),
        )
        .unwrap(),
    )
}

/// Runs one DMA thread doing `dma` while this thread maps a fresh frame at
/// `churned`, unmaps it, frees it, retypes it `kernel-restricted` and
/// writes a secret into it through the aperture, for at least `ROUNDS`
/// rounds and on until the DMA thread has both read and written the mapped
/// page (bounded, never a hang: on a loaded two-core machine it may not
/// run at all during the first `ROUNDS`). Then asserts that no DMA read the
/// secret or wrote into a frame after its unmap returned, that the race
/// happened, and that the system is intact. One DMA thread (two busy
/// threads on this two-core machine: an oversubscribed DMA thread preempted
/// mid-access would only make the unmapper wait longer).
fn race(frames: &Arc<FrameTable>, d: &Arc<Dart>, churned: u64, dma: DmaLoop, what: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let (reads_ok, writes_ok, leaks) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let thread = {
        let (d, stop, rok, wok, leaks) = (d.clone(), stop.clone(), reads_ok.clone(), writes_ok.clone(), leaks.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; dma.read_len];
            let mut small = [0u8; 64];
            let data = vec![DEVICE; dma.write_len];
            while !stop.load(Ordering::Relaxed) {
                if let Some(iova) = dma.elsewhere {
                    d.dma_read(1, iova, &mut small).unwrap();
                }
                match d.dma_read(1, dma.read, &mut buf) {
                    Ok(()) => {
                        rok.fetch_add(1, Ordering::Relaxed);
                        if buf.contains(&SECRET) {
                            leaks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(DartError::Fault(_)) => {}
                    Err(e) => panic!("{e}"),
                }
                match d.dma_write(1, dma.write, &data) {
                    Ok(()) => {
                        wok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(DartError::Fault(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    let (mut late_writes, mut rounds) = (0u64, 0u64);
    let raced = || reads_ok.load(Ordering::Relaxed) > 0 && writes_ok.load(Ordering::Relaxed) > 0;
    while rounds < ROUNDS || (!raced() && rounds < 100 * ROUNDS) {
        rounds += 1;
        let f = frames.alloc(FrameType::UserData, 1).unwrap()[0];
        d.map(1, churned, &[f], Perm::RW, None).unwrap();
        std::hint::spin_loop();
        d.unmap(1, churned, 4096).unwrap();
        // From here on, nothing may reach f.
        frames.free(f).unwrap();
        frames.retype(f, FrameType::KernelRestricted).unwrap();
        let pa = frames.pa_of(f).unwrap();
        frames.aperture_write(pa, &[SECRET; 128]).unwrap();
        let mut back = [0u8; 128];
        frames.aperture_read(pa, &mut back).unwrap();
        if back != [SECRET; 128] {
            late_writes += 1;
        }
        frames.free(f).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert_eq!(leaks.load(Ordering::Relaxed), 0, "{what}: a DMA read the secret");
    assert_eq!(late_writes, 0, "{what}: a DMA wrote into the frame after unmap");
    assert!(raced(), "{what}: the race happened ({rounds} rounds)");
    assert_eq!(frames.halted(), None);
    assert_eq!(d.check_restricted_unreachable(), Ok(()));
    eprintln!(
        "{what}: {rounds} rounds, {} DMA reads and {} DMA writes succeeded",
        reads_ok.load(Ordering::Relaxed),
        writes_ok.load(Ordering::Relaxed)
    );
}

#[test]
fn no_dma_reaches_a_frame_after_strict_unmap_returns() {
    for variant in [Variant::T8020, Variant::T8110] {
        let frames = memory();
        let d = Arc::new(Dart::new(frames.clone(), DartConfig::new("d", variant)).unwrap());
        d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
        // A neighbour keeps the leaf table alive, so the walk reaches the PTE.
        let neighbour = frames.alloc(FrameType::UserData, 1).unwrap();
        d.map(1, IOVA + 4096, &neighbour, Perm::R, None).unwrap();
        let dma = DmaLoop { elsewhere: None, read: IOVA, read_len: 64, write: IOVA + 64, write_len: 64 };
        race(&frames, &d, IOVA, dma, &variant.to_string());
    }
}

/// The same race for DMA that reaches the unmapped page from another IOVA
/// region, where the in-flight tracker lets readers enter unfenced during
/// unmap bursts: a 8 KiB read and a 128-byte write that begin on the last
/// page of region 0 and go on into the first page of region 1 (the general
/// path, which fences before going on into a flagged region), between
/// reads of a page of region 0 only (entered unfenced while the bursts
/// flag region 1). After `unmap` returns no DMA may read the secret or
/// write into the frame.
#[test]
fn no_dma_from_another_region_reaches_a_frame_after_strict_unmap_returns() {
    const REGION: u64 = 32 << 20;
    const CHURNED: u64 = REGION; // first page of region 1
    const BEFORE: u64 = REGION - 4096; // last page of region 0
    const ELSEWHERE: u64 = 0x1_0000; // region 0
    let frames = memory();
    let d = Arc::new(Dart::new(frames.clone(), DartConfig::new("d", Variant::T8110)).unwrap());
    d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let keep = frames.alloc(FrameType::UserData, 3).unwrap();
    // A neighbour keeps region 1's leaf table alive; region 0's pages stay mapped.
    d.map(1, CHURNED + 4096, &keep[..1], Perm::R, None).unwrap();
    d.map(1, BEFORE, &keep[1..2], Perm::RW, None).unwrap();
    d.map(1, ELSEWHERE, &keep[2..], Perm::R, None).unwrap();
    let dma = DmaLoop { elsewhere: Some(ELSEWHERE), read: BEFORE, read_len: 8192, write: CHURNED - 64, write_len: 128 };
    race(&frames, &d, CHURNED, dma, "spanning from region 0");
}
