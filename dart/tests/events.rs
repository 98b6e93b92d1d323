//! The event trace: a scripted run records exactly the expected events, in
//! order, next to the counters; a disabled log records nothing; a full log
//! counts what it drops; watched DMA records stream, IOVA, PA, direction and
//! (capped) data, and unwatched DMA nothing.

use dart::events::{EventKind, DMA_DATA_CAP};
use dart::testing::Fixture;
use dart::{Dart, DartError, EventLog, Variant, WatchRange};
use frame_table::{FrameEvent, FrameTable, FrameType, Perm};
use std::sync::Arc;

const SID: u32 = 1;

/// A t8110 DART over 4 MiB of 16 KiB frames, stream 1 translating, the
/// frame table and the DART both recording into `log`.
fn setup(log: &Arc<EventLog>) -> (Arc<FrameTable>, Dart) {
    let (ft, dart) = Fixture::new(Variant::T8110).translating(&[SID]).build();
    let sink = log.clone();
    ft.set_observer(Some(Arc::new(move |e: &FrameEvent| sink.record("frames", EventKind::from_frame_event(e)))));
    dart.set_event_log(Some(log.clone()));
    (ft, dart)
}

/// The script: map, watched and unwatched DMA, two faults, an ERROR read,
/// unmap, flush, retype and free.
fn script(ft: &FrameTable, dart: &Dart) {
    let f = ft.alloc(FrameType::UserData, 1).unwrap()[0];
    dart.map(SID, 0x4000, &[f], Perm::RW, None).unwrap();
    dart.watch(SID, 0x4000, 0x10).unwrap();
    dart.dma_write(SID, 0x4008, &[1, 2, 3, 4]).unwrap();
    dart.dma_write(SID, 0x4100, &[9; 4]).unwrap(); // outside the watch: not recorded
    let mut buf = [0u8; 8];
    dart.dma_read(SID, 0x4004, &mut buf).unwrap();
    assert!(matches!(dart.dma_read(SID, 0x8000, &mut buf), Err(DartError::Fault(_))));
    assert!(matches!(dart.dma_write(SID, 0x8000, &buf), Err(DartError::Fault(_))));
    dart.mmio_read(0x100).unwrap(); // ERROR
    dart.unmap(SID, 0x4000, 0x4000).unwrap();
    dart.flush(Some(SID)).unwrap();
    ft.retype(f, FrameType::KernelShared).unwrap();
    ft.free(f).unwrap();
}

#[test]
fn scripted_run_records_exactly_the_expected_events_in_order() {
    let log = Arc::new(EventLog::new(1024).unwrap());
    log.set_enabled(true);
    let (ft, dart) = setup(&log);
    script(&ft, &dart);
    let events = log.drain();

    // Physical addresses: memory starts at the default DRAM base; frames are
    // handed out lowest first.
    let base = ft.pa_of(frame_table::Frame(0)).unwrap();
    let pa = |i: u64| base + i * 0x4000;
    let got: Vec<(&str, EventKind)> = events.iter().map(|e| (e.source.as_str(), e.kind.clone())).collect();
    let error_value = 0x8010_0008; // t8110 ERROR: FLAG (31), SID (1 at bit 20), NO_PTE (3)
    let want = vec![
        ("frames", EventKind::Alloc { pa: pa(0), ty: "user-data" }),
        // The map makes its two tables first (it installs them from the end
        // of the allocation: the root at pa(2), the leaf table at pa(1)).
        ("frames", EventKind::Alloc { pa: pa(1), ty: "dart-table" }),
        ("frames", EventKind::Alloc { pa: pa(2), ty: "dart-table" }),
        ("dart0", EventKind::Map { stream: SID, iova: 0x4000, pages: 1, pa: pa(0), perm: "rw" }),
        (
            "dart0",
            EventKind::Dma {
                stream: SID,
                iova: 0x4008,
                pa: pa(0) + 8,
                len: 4,
                dir: "write",
                data: "01020304".into(),
                truncated: false,
            },
        ),
        (
            "dart0",
            EventKind::Dma {
                stream: SID,
                iova: 0x4004,
                pa: pa(0) + 4,
                len: 8,
                dir: "read",
                data: "0000000001020304".into(),
                truncated: false,
            },
        ),
        ("dart0", EventKind::Fault { stream: SID, iova: 0x8000, code: "no-pte", dir: "read", latched: true }),
        ("dart0", EventKind::Fault { stream: SID, iova: 0x8000, code: "no-pte", dir: "write", latched: false }),
        (
            "dart0",
            EventKind::Mmio {
                dir: "read",
                offset: 0x100,
                value: error_value,
                register: "ERROR".into(),
                fields: events
                    .iter()
                    .find_map(|e| match &e.kind {
                        EventKind::Mmio { fields, .. } => Some(fields.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
                outcome: "done".into(),
            },
        ),
        // The last page of the leaf table went: the leaf table is freed.
        ("frames", EventKind::Free { pa: pa(1), from: "dart-table" }),
        ("dart0", EventKind::Unmap { stream: SID, iova: 0x4000, len: 0x4000, pages: 1, invalidation: "strict" }),
        ("dart0", EventKind::Flush { streams: vec![SID] }),
        ("frames", EventKind::Retype { pa: pa(0), from: "user-data", to: "kernel-shared" }),
        ("frames", EventKind::Free { pa: pa(0), from: "kernel-shared" }),
    ];
    assert_eq!(got, want);
    // The MMIO event's fields are m1n1's, with the values decoded.
    let EventKind::Mmio { fields, .. } = &want[8].1 else { unreachable!() };
    assert!(fields.contains(&("FLAG".to_owned(), 1)), "{fields:?}");
    assert!(fields.contains(&("SID".to_owned(), u64::from(SID))), "{fields:?}");
    // Sequence numbers 0..; `ts_ns` is an event's start, so on one thread
    // the *ends* (`ts_ns + dur_ns`, when each was recorded) are
    // non-decreasing in `seq` order, the starts not necessarily (a map
    // begins before the frame allocations it records first); durations only
    // on map/unmap/flush; one recording thread.
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..want.len() as u64).collect::<Vec<_>>());
    assert!(events.windows(2).all(|w| w[0].ts_ns + w[0].dur_ns <= w[1].ts_ns + w[1].dur_ns));
    let map = events.iter().position(|e| matches!(e.kind, EventKind::Map { .. })).unwrap();
    let table = events[..map].iter().rposition(|e| matches!(e.kind, EventKind::Alloc { .. })).unwrap();
    assert!(table > 0 && events[map].ts_ns <= events[table].ts_ns, "{:?} {:?}", events[table], events[map]);
    assert!(events.iter().all(|e| e.thread == events[0].thread));
    assert!(events
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::Map { .. } | EventKind::Unmap { .. } | EventKind::Flush { .. }))
        .all(|e| e.dur_ns == 0));
    assert_eq!(log.dropped(), 0);

    // The counters agree with the events.
    let s = dart.stats().snapshot();
    for (path, v) in [
        ("s1.maps", 1),
        ("s1.unmaps", 1),
        ("s1.faults", 2),
        ("s1.faults.no-pte", 2),
        ("s1.translations", 5),
        ("s1.bytes_written", 8),
        ("s1.bytes_read", 8),
        ("s1.invalidations", 2),
        ("faults", 2),
        ("violations", 0),
    ] {
        assert_eq!(s.get(path), Some(v), "{path}");
    }
}

#[test]
fn disabled_or_detached_log_records_nothing() {
    let log = Arc::new(EventLog::new(1024).unwrap());
    let (ft, dart) = setup(&log);
    script(&ft, &dart);
    assert!(log.is_empty());
    assert_eq!(log.dropped(), 0);
    // Detached: enabling the log changes nothing for this DART.
    dart.set_event_log(None);
    ft.set_observer(None);
    log.set_enabled(true);
    script(&ft, &dart);
    assert!(log.is_empty());
    // The run itself was unaffected: counters as usual.
    assert_eq!(dart.stats().snapshot().get("s1.maps"), Some(2));
}

#[test]
fn full_log_counts_drops_and_keeps_the_first_events() {
    let log = Arc::new(EventLog::new(3).unwrap());
    log.set_enabled(true);
    let (ft, dart) = setup(&log);
    script(&ft, &dart);
    let events = log.drain();
    assert_eq!(events.len(), 3);
    assert_eq!(log.dropped(), 14 - 3);
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(events.iter().all(|e| matches!(e.kind, EventKind::Alloc { .. })));
}

#[test]
fn watch_ranges_validate_and_cap_data() {
    let log = Arc::new(EventLog::new(64).unwrap());
    log.set_enabled(true);
    let (ft, dart) = setup(&log);
    // Refusals change nothing.
    assert!(matches!(dart.watch(99, 0, 1), Err(DartError::NoSuchStream { sid: 99, .. })));
    assert!(matches!(dart.watch(SID, 0, 0), Err(DartError::BadRange { len: 0, .. })));
    assert!(matches!(dart.watch(SID, u64::MAX, 2), Err(DartError::BadRange { .. })));
    assert!(matches!(dart.unwatch(SID, 0, 4), Err(DartError::BadRange { reason: "no such watch range", .. })));
    assert!(dart.watches().is_empty());

    let f = ft.alloc(FrameType::UserData, 1).unwrap()[0];
    dart.map(SID, 0, &[f], Perm::RW, None).unwrap();
    let _ = log.drain();
    // No watch: DMA records nothing even with the log on.
    dart.dma_write(SID, 0, &[7; 100]).unwrap();
    assert!(log.is_empty());
    dart.watch(SID, 0x50, 1).unwrap();
    dart.watch(SID, 0x50, 1).unwrap(); // twice: one range
    assert_eq!(dart.watches(), vec![WatchRange { stream: SID, iova: 0x50, len: 1 }]);
    dart.dma_write(SID, 0, &[7; 100]).unwrap();
    let events = log.drain();
    assert_eq!(events.len(), 1);
    match &events[0].kind {
        EventKind::Dma { len: 100, data, truncated: true, .. } => assert_eq!(data, &"07".repeat(DMA_DATA_CAP)),
        other => panic!("unexpected {other:?}"),
    }
    dart.unwatch(SID, 0x50, 1).unwrap();
    assert!(dart.watches().is_empty());
    dart.dma_write(SID, 0, &[7; 100]).unwrap();
    assert!(log.is_empty());
}
