//! The mapper's counters (`maps`, `unmaps`, `invalidations`) under threads:
//! they are written under the DART's mapper lock with a plain load + store
//! (`Stats::add_serialized`), so no increment may be lost however the
//! mapping threads interleave, and snapshots taken while they run never go
//! backwards.

use dart::{Dart, DartConfig, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;

const THREADS: u32 = 4;
const ROUNDS: u64 = 20_000;
const PAGE: u64 = 16 << 10;

#[test]
fn concurrent_maps_and_unmaps_are_all_counted() {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
    let d = Dart::new(frames.clone(), DartConfig::new("d", Variant::T8110)).unwrap();
    for sid in 1..=THREADS {
        d.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
    }
    let before = d.stats().snapshot();
    assert_eq!(before.get("maps"), Some(0));
    std::thread::scope(|s| {
        for sid in 1..=THREADS {
            let (d, frames) = (&d, &frames);
            s.spawn(move || {
                let frame = frames.alloc(FrameType::UserData, 2).unwrap();
                for round in 0..ROUNDS {
                    // One page, then two: `maps` counts pages.
                    let n = 1 + (round % 2) as usize;
                    d.map(sid, 0x10_0000, &frame[..n], Perm::RW, None).unwrap();
                    assert_eq!(d.unmap(sid, 0x10_0000, n as u64 * PAGE).unwrap(), n as u64);
                }
            });
        }
        // A reader's snapshots never go backwards while the mappers run.
        let mut last = 0;
        for _ in 0..200 {
            let maps = d.stats().snapshot().get("maps").unwrap();
            assert!(maps >= last, "maps went from {last} to {maps}");
            last = maps;
        }
    });
    let snap = d.stats().snapshot();
    let pages = ROUNDS / 2 * 3;
    assert_eq!(snap.get("maps"), Some(THREADS as u64 * pages));
    assert_eq!(snap.get("unmaps"), Some(THREADS as u64 * pages));
    // Strict mode: one invalidation of the unmapping stream per unmap.
    assert_eq!(snap.get("invalidations"), Some(THREADS as u64 * ROUNDS));
    for sid in 1..=THREADS {
        assert_eq!(snap.get(&format!("s{sid}.maps")), Some(pages), "s{sid}");
        assert_eq!(snap.get(&format!("s{sid}.unmaps")), Some(pages), "s{sid}");
        assert_eq!(snap.get(&format!("s{sid}.invalidations")), Some(ROUNDS), "s{sid}");
    }
    assert_eq!(snap.get("s0.maps"), Some(0));
}
