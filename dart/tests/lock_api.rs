//! The DART's lock (t8020 CONFIG.LOCK, t8110 PROTECT LOCK_TCR_TTBR) guards
//! the typed calls that program TCR and TTBR as it guards the registers
//! (docs/design.md §3): once locked they return `DartError::Locked` naming the register
//! and change nothing, a map that would write a stream's first TTBR is
//! refused the same way, and enables and maps under existing TTBRs go on.
//! t8110 UNPROTECT clears a PROTECT bit unless PROTECT_LOCK holds that bit.

use dart::{Dart, DartConfig, DartError, LockedRegister, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;

const PROTECT: u64 = 0x200;
const UNPROTECT: u64 = 0x204;
const PROTECT_LOCK: u64 = 0x208;
const CONFIG: u64 = 0x60;

fn dart(variant: Variant) -> (Arc<FrameTable>, Arc<Dart>) {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
    let mut c = DartConfig::new("d", variant);
    c.trusted = vec![1];
    let d = Arc::new(Dart::new(frames.clone(), c).unwrap());
    for sid in [1, 2] {
        d.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
    }
    (frames, d)
}

/// What a refused call must leave as it was: configurations and TTBRs of
/// streams 1 and 2, the tables, the free frames, the violations counter.
fn state(frames: &FrameTable, d: &Dart) -> (Vec<StreamConfig>, Vec<Option<u64>>, usize, u64, Option<u64>) {
    let ttbrs = (0..d.variant().ttbrs_per_stream() as usize).flat_map(|i| [1, 2].map(|s| d.ttbr(s, i).unwrap()));
    (
        [1, 2].map(|s| d.stream_config(s).unwrap()).to_vec(),
        ttbrs.collect(),
        d.table_frames().len(),
        frames.free_frames(),
        d.stats().snapshot().get("violations"),
    )
}

fn locked(sid: u32, register: LockedRegister) -> Result<(), DartError> {
    Err(DartError::Locked { sid, register })
}

#[test]
fn a_locked_t8110_refuses_every_typed_tcr_and_ttbr_change() {
    let (frames, d) = dart(Variant::T8110);
    let data = frames.alloc(FrameType::UserData, 3).unwrap();
    d.map(1, 0, &data[..1], Perm::R, None).unwrap();
    let root = d.ttbr(1, 0).unwrap();
    d.mmio_write(PROTECT, 1).unwrap();
    let before = state(&frames, &d);

    let four = StreamConfig { four_level: true, ..StreamConfig::TRANSLATING };
    assert_eq!(d.set_stream_config(1, four), locked(1, LockedRegister::Tcr));
    assert_eq!(d.set_bypass(1, true), locked(1, LockedRegister::Tcr));
    assert_eq!(d.set_bypass(1, false), locked(1, LockedRegister::Tcr), "even to the value it has");
    assert_eq!(d.set_ttbr(2, 0, root), locked(2, LockedRegister::Ttbr { index: 0 }));
    assert_eq!(d.set_ttbr(1, 0, None), locked(1, LockedRegister::Ttbr { index: 0 }));
    // A forged target is not looked at: refused, not a violation.
    let forged = frames.pa_of(data[2]).ok();
    assert_eq!(d.set_ttbr(1, 0, forged), locked(1, LockedRegister::Ttbr { index: 0 }));
    // Stream 2 has no table: its first map would write TTBR(2).
    assert_eq!(
        d.map(2, 0, &data[1..2], Perm::R, None),
        Err(DartError::Locked { sid: 2, register: LockedRegister::Ttbr { index: 0 } })
    );
    assert_eq!(state(&frames, &d), before);
    assert_eq!(d.mappings(2).unwrap(), []);
    assert_eq!(frames.state(data[1]).unwrap().count(frame_table::Counter::Dart), 0);

    // Not locked: enables, and maps under an existing TTBR.
    d.set_enabled(2, false).unwrap();
    d.set_enabled(2, true).unwrap();
    d.map(1, 0x4000, &data[1..2], Perm::R, None).unwrap();
    assert_eq!(d.mappings(1).unwrap().len(), 2);
    assert_eq!(d.ttbr(1, 0).unwrap(), root);
}

#[test]
fn unprotect_clears_a_protect_bit_unless_protect_lock_holds_it() {
    let (_, d) = dart(Variant::T8110);
    // PROTECT_LOCK holds bit 1 only: UNPROTECT of bit 0 unlocks.
    d.mmio_write(PROTECT, 1).unwrap();
    d.mmio_write(PROTECT_LOCK, 2).unwrap();
    d.mmio_write(UNPROTECT, 1).unwrap();
    assert_eq!((d.mmio_read(PROTECT), d.mmio_read(PROTECT_LOCK)), (Ok(0), Ok(2)));
    assert_eq!(d.set_bypass(1, true), Ok(()));
    assert!(d.stream_config(1).unwrap().bypass);
    // PROTECT_LOCK holds bit 0: UNPROTECT of bit 0 does nothing.
    d.mmio_write(PROTECT, 1).unwrap();
    d.mmio_write(PROTECT_LOCK, 1).unwrap();
    let counted = d.mmio_counts().locked;
    d.mmio_write(UNPROTECT, 1).unwrap();
    assert_eq!(d.mmio_counts().locked, counted + 1, "the dropped UNPROTECT is counted");
    assert_eq!((d.mmio_read(PROTECT), d.mmio_read(PROTECT_LOCK)), (Ok(1), Ok(3)));
    assert_eq!(d.set_bypass(1, false), locked(1, LockedRegister::Tcr));
    assert!(d.stream_config(1).unwrap().bypass);
}

#[test]
fn a_locked_t8020_refuses_until_reset_and_names_the_ttbr() {
    let (frames, d) = dart(Variant::T8020);
    let data = frames.alloc(FrameType::UserData, 2).unwrap();
    d.map(1, 0, &data[..1], Perm::R, None).unwrap();
    d.mmio_write(CONFIG, 0x8000).unwrap();
    d.mmio_write(CONFIG, 0).unwrap();
    assert_eq!(d.mmio_read(CONFIG), Ok(0x8000), "CONFIG.LOCK stays until reset");
    let before = state(&frames, &d);
    assert_eq!(d.set_ttbr(1, 3, None), locked(1, LockedRegister::Ttbr { index: 3 }));
    // IOVA bits [37:36] = 1: TTBR 1 of stream 1, which has none yet.
    assert_eq!(
        d.map(1, 1 << 36, &data[1..], Perm::R, None),
        Err(DartError::Locked { sid: 1, register: LockedRegister::Ttbr { index: 1 } })
    );
    assert_eq!(d.set_bypass(1, true), locked(1, LockedRegister::Tcr));
    assert_eq!(state(&frames, &d), before);
    // The register path drops the same writes (TTBR(1,1) = 0x214).
    let counted = d.mmio_counts().locked;
    d.mmio_write(0x214, 0).unwrap();
    d.mmio_write(0x104, 0).unwrap();
    assert_eq!(d.mmio_counts().locked, counted + 2);
    assert_eq!(state(&frames, &d), before);
}

/// The lock check is one step with the change: once the PROTECT write has
/// returned, no typed call racing it changes the configuration any more.
#[test]
fn no_typed_change_lands_after_the_lock_write_returns() {
    let (_, d) = dart(Variant::T8110);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toggler = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut on = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                on = !on;
                let _ = d.set_bypass(1, on);
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(5));
    d.mmio_write(PROTECT, 1).unwrap();
    let frozen = d.stream_config(1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    toggler.join().unwrap();
    assert_eq!(d.stream_config(1).unwrap(), frozen);
    assert_eq!(d.set_bypass(1, !frozen.bypass), locked(1, LockedRegister::Tcr));
}
