//! Ownership-selftest style transition tests (after pKVM's
//! `pkvm_ownership_selftest`): for every frame type and every operation of
//! docs/design.md §2, the expected result, then the full expected state of the frame.
//!
//! The expectations are written out here as literals, independently of the
//! crate's `POLICY` table, so that a wrong row there fails this test.

use frame_table::{
    Access, Counter, Counts, Error, Frame, FrameSize, FrameState, FrameTable, FrameTableConfig, FrameType, OnViolation,
    Perm, Violation,
};

const TYPES: [FrameType; 10] = FrameType::ALL;

fn table(mode: OnViolation) -> FrameTable {
    FrameTable::new(FrameTableConfig::with_memory(64 * 4096).frame_size(FrameSize::K4).on_violation(mode)).unwrap()
}

/// A frame of type `ty` with no mappings (a `free` frame is simply not allocated).
fn frame_of_type(t: &FrameTable, ty: FrameType) -> Frame {
    if ty == FrameType::Free {
        let f = t.alloc(FrameType::UserData, 1).unwrap()[0];
        t.free(f).unwrap();
        f
    } else {
        t.alloc(ty, 1).unwrap()[0]
    }
}

fn counts(cpu_kernel: u32, cpu_user: u32, dart: u32, pending: u32) -> Counts {
    Counts { cpu_kernel, cpu_user, dart, pending }
}

fn assert_state(t: &FrameTable, f: Frame, ty: FrameType, c: Counts) {
    let s = t.state(f).unwrap();
    assert_eq!((s.ty(), s.counts(), s.pins(), s.claimed()), (ty, c, 0, false), "state of {f}");
    // The walker's leaf check: the EXPECTED_ACCESS "dart r" column.
    let row = TYPES.iter().position(|&x| x == ty).unwrap();
    let reachable = EXPECTED_ACCESS[row].split(' ').nth(4) == Some("y");
    assert_eq!(t.device_reachable_at(t.pa_of(f).unwrap()), reachable, "device-reachable bit of {f} ({ty})");
    let pfn = t.pa_of(f).unwrap() >> t.frame_size().shift();
    assert_eq!(t.device_reachable_frame(pfn), reachable, "device-reachable bit of {f} ({ty}) by number");
    assert_eq!(t.reach_map_consistent(), Ok(()));
}

/// The map columns: (access, perm).
const MAPS: [(Access, Perm); 7] = [
    (Access::CpuKernel, Perm::R),
    (Access::CpuKernel, Perm::RW),
    (Access::CpuUser, Perm::R),
    (Access::CpuUser, Perm::RW),
    (Access::Dart, Perm::R),
    (Access::Dart, Perm::W),
    (Access::Dart, Perm::RW),
];

/// docs/design.md §2 table, one row per type in `TYPES` order: `y` allowed, `.` forbidden.
/// Columns: kernel r, kernel rw, user r, user rw, dart r, dart w, dart rw,
/// aperture read, aperture write.
const EXPECTED_ACCESS: [&str; 10] = [
    /* free              */ ". . . . . . . y y",
    /* kernel-restricted */ "y y . . . . . y y",
    /* kernel-shared     */ "y y y y y y y y y",
    /* compressor        */ "y y . . y y y y y",
    /* user-data         */ "y y y y y y y y y",
    /* read-only         */ "y . . . . . . y .",
    /* page-table        */ ". . . . . . . . .",
    /* dart-table        */ ". . . . . . . . .",
    /* mmio              */ ". . . . . . . . .",
    /* reserved          */ ". . . . . . . . .",
];

fn row(ty: FrameType) -> Vec<bool> {
    EXPECTED_ACCESS[ty as usize].split(' ').map(|c| c == "y").collect()
}

#[test]
fn every_type_times_every_map() {
    for ty in TYPES {
        let expected = row(ty);
        for (col, &(access, perm)) in MAPS.iter().enumerate() {
            let t = table(OnViolation::Panic);
            let f = frame_of_type(&t, ty);
            let got = t.acquire(f, access, perm);
            if expected[col] {
                let c = match access {
                    Access::CpuKernel => counts(1, 0, 0, 0),
                    Access::CpuUser => counts(0, 1, 0, 0),
                    _ => counts(0, 0, 1, 0),
                };
                assert_eq!(got.map(|s| s.counts()), Ok(c), "{ty} {access} {perm}");
                assert_state(&t, f, ty, c);
                // And the release returns it to zero.
                let counter = match access {
                    Access::CpuKernel => Counter::CpuKernel,
                    Access::CpuUser => Counter::CpuUser,
                    _ => Counter::Dart,
                };
                t.release(f, counter).unwrap();
                assert_state(&t, f, ty, Counts::default());
            } else {
                assert_eq!(got, Err(Error::ForbiddenType { frame: f, ty, access, perm }), "{ty} {access} {perm}");
                assert_state(&t, f, ty, Counts::default());
            }
            assert_eq!(t.halted(), None);
        }
    }
}

#[test]
fn every_type_times_aperture_read_and_write() {
    for ty in TYPES {
        let expected = row(ty);
        let t = table(OnViolation::Panic);
        let f = frame_of_type(&t, ty);
        let pa = t.pa_of(f).unwrap();
        let mut buf = [0xaau8; 8];
        let read = t.aperture_read(pa + 8, &mut buf);
        if expected[7] {
            assert_eq!(read, Ok(()), "{ty} read");
            assert_eq!(buf, [0; 8]);
        } else {
            assert_eq!(read, Err(Error::ForbiddenType { frame: f, ty, access: Access::Aperture, perm: Perm::R }));
            assert_eq!(buf, [0xaa; 8], "{ty}: a refused read fills nothing");
        }
        let write = t.aperture_write(pa + 8, &[1, 2, 3]);
        let mut back = [0u8; 3];
        vm_read(&t, pa + 8, &mut back);
        if expected[8] {
            assert_eq!(write, Ok(()), "{ty} write");
            assert_eq!(back, [1, 2, 3]);
        } else {
            assert_eq!(write, Err(Error::ForbiddenType { frame: f, ty, access: Access::Aperture, perm: Perm::W }));
            assert_eq!(back, [0, 0, 0], "{ty}: a refused write writes nothing");
        }
        assert_state(&t, f, ty, Counts::default());
    }
}

/// Reads physical memory behind every check (test oracle only).
fn vm_read(t: &FrameTable, pa: u64, buf: &mut [u8]) {
    use frame_table::vm_memory::{Bytes, GuestAddress};
    t.memory().read_slice(buf, GuestAddress(pa)).unwrap();
}

/// R1 with zero counts: `y` allowed. Rows `from`, columns `to`, in `TYPES` order.
const EXPECTED_RETYPE: [&str; 10] = [
    /* free              */ ". y y y y y y y y y",
    /* kernel-restricted */ ". . . . . . . . . .",
    /* kernel-shared     */ ". . . y y . . . . .",
    /* compressor        */ ". . y . . . . . . .",
    /* user-data         */ ". . y . . . . . . .",
    /* read-only         */ ". . . . . . . . . .",
    /* page-table        */ ". . . . . . . . . .",
    /* dart-table        */ ". . . . . . . . . .",
    /* mmio              */ ". . . . . . . . . .",
    /* reserved          */ ". . . . . . . . . .",
];

#[test]
fn every_type_times_every_retype_at_zero_counts() {
    for from in TYPES {
        let allowed: Vec<bool> = EXPECTED_RETYPE[from as usize].split(' ').map(|c| c == "y").collect();
        for to in TYPES {
            let t = table(OnViolation::Panic);
            let f = frame_of_type(&t, from);
            let got = t.retype(f, to);
            if allowed[to as usize] {
                assert_eq!(got, Ok(()), "{from} -> {to}");
                assert_state(&t, f, to, Counts::default());
            } else {
                assert_eq!(got, Err(Error::BadTransition { frame: f, from, to }), "{from} -> {to}");
                assert_state(&t, f, from, Counts::default());
            }
            assert_eq!(t.halted(), None, "a refused retype is not a breach");
        }
    }
}

#[test]
fn every_type_times_free_at_zero_counts() {
    for ty in TYPES {
        let t = table(OnViolation::Panic);
        let f = frame_of_type(&t, ty);
        let got = t.free(f);
        if ty == FrameType::Free {
            assert_eq!(got, Err(Error::BadTransition { frame: f, from: FrameType::Free, to: FrameType::Free }));
        } else {
            assert_eq!(got, Ok(()), "free {ty}");
        }
        assert_state(&t, f, FrameType::Free, Counts::default());
        assert_eq!(t.halted(), None);
    }
}

/// Each kind of live mapping (pending invalidation included) makes free and
/// retype an invariant breach: `panic` mode halts, `reject` mode refuses.
#[test]
fn free_and_retype_with_each_kind_of_mapping_breach() {
    let kinds: [(&str, Counts); 4] = [
        ("cpu-kernel", counts(1, 0, 0, 0)),
        ("cpu-user", counts(0, 1, 0, 0)),
        ("dart", counts(0, 0, 1, 0)),
        ("pending", counts(0, 0, 0, 1)),
    ];
    for (name, c) in kinds {
        for free in [true, false] {
            for mode in [OnViolation::Panic, OnViolation::Reject] {
                let t = table(mode);
                let ty = FrameType::KernelShared;
                let f = t.alloc(ty, 1).unwrap()[0];
                match name {
                    "cpu-kernel" => t.acquire(f, Access::CpuKernel, Perm::RW).map(|_| ()),
                    "cpu-user" => t.acquire(f, Access::CpuUser, Perm::RW).map(|_| ()),
                    "dart" => t.acquire(f, Access::Dart, Perm::RW).map(|_| ()),
                    _ => t.acquire(f, Access::Dart, Perm::RW).and_then(|_| t.defer_dart(f)).map(|_| ()),
                }
                .unwrap();
                let violation = if free {
                    Violation::FreeMapped { frame: f, ty, counts: c }
                } else {
                    Violation::RetypeMapped { frame: f, from: ty, to: FrameType::UserData, counts: c }
                };
                let got = if free { t.free(f) } else { t.retype(f, FrameType::UserData) };
                match mode {
                    OnViolation::Panic => {
                        assert_eq!(got, Err(Error::Panic(violation.clone())), "{name} free={free}");
                        assert_eq!(t.halted(), Some(violation.clone()));
                        // Every later operation returns halted.
                        assert_eq!(t.alloc(FrameType::UserData, 1), Err(Error::Halted(violation.clone())));
                        assert_eq!(t.acquire(f, Access::CpuKernel, Perm::R), Err(Error::Halted(violation.clone())));
                        assert_eq!(t.free(f), Err(Error::Halted(violation.clone())));
                    }
                    OnViolation::Reject => {
                        assert_eq!(got, Err(Error::FrameBusy { frame: f, ty, counts: c }), "{name} free={free}");
                        assert_eq!(got.unwrap_err().kind(), "frame-busy");
                        assert_eq!(t.halted(), None);
                    }
                }
                assert_eq!(t.violations(), 1);
                assert_state(&t, f, ty, c);
            }
        }
    }
}

#[test]
fn releases_of_zero_counts_are_refused() {
    let t = table(OnViolation::Panic);
    let f = t.alloc(FrameType::UserData, 1).unwrap()[0];
    for counter in [Counter::CpuKernel, Counter::CpuUser, Counter::Dart, Counter::PendingInvalidation] {
        assert_eq!(t.release(f, counter), Err(Error::NotMapped { frame: f, ty: FrameType::UserData, counter }));
    }
    assert_eq!(t.defer_dart(f), Err(Error::NotMapped { frame: f, ty: FrameType::UserData, counter: Counter::Dart }));
    assert_state(&t, f, FrameType::UserData, Counts::default());
}

#[test]
fn deferred_dart_unmap_keeps_the_frame_counted_until_completion() {
    let t = table(OnViolation::Reject);
    let f = t.alloc(FrameType::UserData, 1).unwrap()[0];
    t.acquire(f, Access::Dart, Perm::R).unwrap();
    assert_eq!(t.defer_dart(f).unwrap().counts(), counts(0, 0, 0, 1));
    assert_eq!(t.free(f), Err(Error::FrameBusy { frame: f, ty: FrameType::UserData, counts: counts(0, 0, 0, 1) }));
    assert_eq!(t.release(f, Counter::PendingInvalidation).unwrap().counts(), Counts::default());
    assert_eq!(t.free(f), Ok(()));
    assert_state(&t, f, FrameType::Free, Counts::default());
}

#[test]
fn counters_refuse_to_overflow() {
    let t = table(OnViolation::Panic);
    let f = t.alloc(FrameType::UserData, 1).unwrap()[0];
    for _ in 0..Counter::Dart.max() {
        t.acquire(f, Access::Dart, Perm::R).unwrap();
    }
    let max = Counter::Dart.max();
    assert_eq!(
        t.acquire(f, Access::Dart, Perm::R),
        Err(Error::MappingLimit { frame: f, ty: FrameType::UserData, counter: Counter::Dart, count: max, limit: max })
    );
    assert_state(&t, f, FrameType::UserData, counts(0, 0, max as u32, 0));
    for _ in 0..Counter::CpuUser.max() {
        t.acquire(f, Access::CpuUser, Perm::R).unwrap();
    }
    let umax = Counter::CpuUser.max();
    assert_eq!(
        t.acquire(f, Access::CpuUser, Perm::RW),
        Err(Error::MappingLimit {
            frame: f,
            ty: FrameType::UserData,
            counter: Counter::CpuUser,
            count: umax,
            limit: umax
        })
    );
    assert_state(&t, f, FrameType::UserData, counts(0, umax as u32, max as u32, 0));
}

#[test]
fn out_of_range_and_bad_arguments_are_typed_errors() {
    let t = table(OnViolation::Panic);
    let n = t.frame_count();
    let far = Frame(u32::MAX);
    assert_eq!(t.state(far), Err(Error::OutOfRange { frame: far, frames: n }));
    assert_eq!(t.free(far), Err(Error::OutOfRange { frame: far, frames: n }));
    assert_eq!(t.retype(far, FrameType::UserData), Err(Error::OutOfRange { frame: far, frames: n }));
    assert_eq!(t.acquire(far, Access::Dart, Perm::R), Err(Error::OutOfRange { frame: far, frames: n }));
    assert_eq!(t.release(far, Counter::Dart), Err(Error::OutOfRange { frame: far, frames: n }));
    assert_eq!(t.pa_of(far), Err(Error::OutOfRange { frame: far, frames: n }));
    assert!(matches!(t.frame_of(0), Err(Error::BadRange { start: 0, .. })));
    assert!(matches!(t.frame_of(u64::MAX), Err(Error::BadRange { .. })));
    assert!(matches!(
        t.aperture_write(u64::MAX - 1, &[1, 2, 3]),
        Err(Error::BadRange { reason: "range overflows", .. })
    ));
    assert!(matches!(t.aperture_read(0, &mut []), Err(Error::BadRange { reason: "empty access", .. })));
    let base = t.pa_of(Frame(0)).unwrap();
    let end = base + n * 4096;
    assert!(matches!(
        t.aperture_write(end - 2, &[1, 2, 3]),
        Err(Error::BadRange { reason: "range runs past physical memory", .. })
    ));
    assert_eq!(
        t.alloc(FrameType::UserData, n + 1),
        Err(Error::OutOfFrames { ty: FrameType::UserData, requested: n + 1, available: n })
    );
    assert!(matches!(t.alloc(FrameType::UserData, 0), Err(Error::BadRange { .. })));
    assert!(matches!(t.alloc(FrameType::Free, 1), Err(Error::BadTransition { .. })));
    assert_eq!(t.free_frames(), n, "refused allocations take nothing");
    // An aperture write spanning an allowed and a forbidden frame writes nothing.
    let a = t.alloc(FrameType::UserData, 1).unwrap()[0];
    let b = t.alloc(FrameType::PageTable, 1).unwrap()[0];
    assert_eq!(b.0, a.0 + 1);
    let pa_b = t.pa_of(b).unwrap();
    assert_eq!(
        t.aperture_write(pa_b - 2, &[9, 9, 9, 9]),
        Err(Error::ForbiddenType { frame: b, ty: FrameType::PageTable, access: Access::Aperture, perm: Perm::W })
    );
    let mut back = [0u8; 2];
    vm_read(&t, pa_b - 2, &mut back);
    assert_eq!(back, [0, 0]);
    assert_eq!(t.state(a).unwrap(), FrameState::of_type(FrameType::UserData));
}

#[test]
fn regions_with_holes() {
    use frame_table::Region;
    let cfg = FrameTableConfig {
        regions: vec![Region { base: 0x10_0000, size: 0x4000 }, Region { base: 0x20_0000, size: 0x4000 }],
        frame_size: FrameSize::K4,
        on_violation: OnViolation::Panic,
    };
    let t = FrameTable::new(cfg).unwrap();
    let frames = t.alloc(FrameType::UserData, 8).unwrap();
    let pas: Vec<u64> = frames.iter().map(|&f| t.pa_of(f).unwrap()).collect();
    assert_eq!(pas, [0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000, 0x20_0000, 0x20_1000, 0x20_2000, 0x20_3000]);
    assert!(matches!(t.alloc(FrameType::UserData, 1), Err(Error::OutOfFrames { available: 0, .. })));
    let hole = t.frame_of(0x10_4000);
    assert!(matches!(hole, Err(Error::BadRange { start: 0x10_4000, .. })));
    assert!(matches!(t.state(Frame(4)), Ok(s) if s.hole()));
    assert_eq!(t.free(Frame(4)), Err(Error::OutOfRange { frame: Frame(4), frames: t.frame_count() }));
    assert_eq!(
        t.acquire(Frame(4), Access::Dart, Perm::R),
        Err(Error::OutOfRange { frame: Frame(4), frames: t.frame_count() })
    );
    assert!(matches!(t.aperture_write(0x10_3ffe, &[1, 2, 3, 4]), Err(Error::BadRange { .. })));
    assert_eq!(t.states().count(), 8);
    // The walker's type check: a frame of the type; not another type, a
    // hole (whose state carries the `reserved` type) or outside memory.
    assert!(t.is_type_at(0x10_3ff8, FrameType::UserData));
    assert!(!t.is_type_at(0x10_3ff8, FrameType::DartTable));
    for ty in TYPES {
        assert!(!t.is_type_at(0x10_4000, ty), "hole as {ty}");
        assert!(!t.is_type_at(0x30_0000, ty), "outside memory as {ty}");
        assert!(!t.is_type_at(0xf_f000, ty), "below memory as {ty}");
    }
    // The walker's reach check by frame number says what the one by
    // address says: user data reachable; hole, below and past memory not.
    for pa in [0x10_0000u64, 0x10_3000, 0x20_3000, 0x10_4000, 0x1f_f000, 0xf_f000, 0x20_4000, 0x30_0000, 0, !0xfff] {
        let pfn = pa >> 12;
        assert_eq!(t.device_reachable_frame(pfn), t.device_reachable_at(pa), "{pa:#x}");
        assert_eq!(t.device_reachable_frame(pfn), pas.contains(&pa), "{pa:#x}");
    }
    t.free(frames[0]).unwrap();
    assert!(!t.device_reachable_frame(0x10_0000 >> 12), "a free frame is not reachable");
    // Bad configurations are typed errors.
    let bad = FrameTableConfig {
        regions: vec![Region { base: 0x1000, size: 0x2000 }, Region { base: 0x2000, size: 0x2000 }],
        frame_size: FrameSize::K4,
        on_violation: OnViolation::Panic,
    };
    assert!(matches!(FrameTable::new(bad), Err(frame_table::ConfigError::Overlap { base: 0x2000, .. })));
    let unaligned = FrameTableConfig::with_memory(0x1000);
    assert!(matches!(FrameTable::new(unaligned), Err(frame_table::ConfigError::Unaligned { size: 0x1000, .. })));
    assert!(matches!(FrameTable::new(FrameTableConfig::with_memory(0)), Err(frame_table::ConfigError::Empty)));
}

#[test]
fn table_holds_only_on_dart_tables_and_they_block_free_and_retype() {
    for ty in TYPES {
        let t = table(OnViolation::Reject);
        let f = frame_of_type(&t, ty);
        let got = t.hold_table(f);
        if ty == FrameType::DartTable {
            assert_eq!(got.map(|s| s.counts()), Ok(counts(0, 0, 1, 0)));
            assert_eq!(t.free(f), Err(Error::FrameBusy { frame: f, ty, counts: counts(0, 0, 1, 0) }));
            assert_state(&t, f, ty, counts(0, 0, 1, 0));
            t.release(f, Counter::Dart).unwrap();
            assert_eq!(t.free(f), Ok(()));
        } else {
            assert_eq!(got, Err(Error::ForbiddenType { frame: f, ty, access: Access::Dart, perm: Perm::RW }), "{ty}");
            assert_state(&t, f, ty, Counts::default());
        }
    }
}
