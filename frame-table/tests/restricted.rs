//! docs/design.md §2's headline rules: kernel-restricted frames, read-only frames, and
//! the scrub on leaving `free` (R5).

use frame_table::{
    Access, Counter, Counts, Error, FrameSize, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm,
};

fn table() -> FrameTable {
    FrameTable::new(FrameTableConfig::with_memory(32 * 16384).on_violation(OnViolation::Panic)).unwrap()
}

#[test]
fn kernel_restricted_allows_exactly_one_kernel_mapping_no_user_no_dart() {
    let t = table();
    let f = t.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
    let ty = FrameType::KernelRestricted;
    assert_eq!(t.acquire(f, Access::CpuKernel, Perm::RW).unwrap().counts().cpu_kernel, 1);
    for perm in [Perm::R, Perm::RW] {
        assert_eq!(
            t.acquire(f, Access::CpuKernel, perm),
            Err(Error::MappingLimit { frame: f, ty, counter: Counter::CpuKernel, count: 1, limit: 1 })
        );
        assert_eq!(
            t.acquire(f, Access::CpuUser, perm),
            Err(Error::ForbiddenType { frame: f, ty, access: Access::CpuUser, perm })
        );
    }
    for perm in [Perm::R, Perm::W, Perm::RW] {
        assert_eq!(
            t.acquire(f, Access::Dart, perm),
            Err(Error::ForbiddenType { frame: f, ty, access: Access::Dart, perm })
        );
        assert!(t.pin(&[f], Access::Dart, perm).is_err(), "no bypassed DMA either");
    }
    assert_eq!(t.state(f).unwrap().counts(), Counts { cpu_kernel: 1, ..Counts::default() });
    // After the one mapping goes, another may be taken.
    t.release(f, Counter::CpuKernel).unwrap();
    t.acquire(f, Access::CpuKernel, Perm::R).unwrap();
    // And the type cannot become shareable except through free (which scrubs).
    assert_eq!(
        t.retype(f, FrameType::KernelShared),
        Err(Error::BadTransition { frame: f, from: ty, to: FrameType::KernelShared })
    );
    assert_eq!(t.halted(), None);
}

#[test]
fn read_only_never_gets_a_writable_mapping_or_an_aperture_write() {
    let t = table();
    let f = t.alloc(FrameType::ReadOnly, 1).unwrap()[0];
    let ty = FrameType::ReadOnly;
    let pa = t.pa_of(f).unwrap();
    for (access, perm) in [
        (Access::CpuKernel, Perm::RW),
        (Access::CpuKernel, Perm::W),
        (Access::CpuUser, Perm::RW),
        (Access::Dart, Perm::W),
        (Access::Dart, Perm::RW),
    ] {
        assert_eq!(t.acquire(f, access, perm), Err(Error::ForbiddenType { frame: f, ty, access, perm }));
    }
    assert_eq!(
        t.aperture_write(pa, b"patch"),
        Err(Error::ForbiddenType { frame: f, ty, access: Access::Aperture, perm: Perm::W })
    );
    // Even while a read-only kernel mapping exists.
    t.acquire(f, Access::CpuKernel, Perm::R).unwrap();
    assert!(t.aperture_write(pa + 100, b"x").is_err());
    let mut buf = [1u8; 5];
    t.aperture_read(pa, &mut buf).unwrap();
    assert_eq!(buf, [0; 5]);
    assert_eq!(t.state(f).unwrap().counts(), Counts { cpu_kernel: 1, ..Counts::default() });
}

#[test]
fn a_freed_then_reallocated_frame_reads_as_zeros() {
    for fs in [FrameSize::K16, FrameSize::K4] {
        let t = FrameTable::new(FrameTableConfig::with_memory(8 * fs.bytes()).frame_size(fs)).unwrap();
        let f = t.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
        let pa = t.pa_of(f).unwrap();
        let secret = vec![0x5a; fs.bytes() as usize];
        t.aperture_write(pa, &secret).unwrap();
        t.free(f).unwrap();
        // LIFO reuse: the next allocation gets the same frame, scrubbed.
        let g = t.alloc(FrameType::UserData, 1).unwrap()[0];
        assert_eq!(g, f);
        let mut back = vec![0xffu8; fs.bytes() as usize];
        t.aperture_read(pa, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 0), "scrubbed on alloc");
        // Same through a direct retype out of free.
        t.aperture_write(pa, &secret).unwrap();
        t.free(g).unwrap();
        t.retype(g, FrameType::KernelShared).unwrap();
        t.aperture_read(pa, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 0), "scrubbed on retype from free");
    }
}

#[test]
fn metadata_is_at_most_eight_bytes_per_frame() {
    const { assert!(FrameTable::METADATA_BYTES_PER_FRAME <= 8) };
    let t = FrameTable::new(FrameTableConfig::with_memory(1 << 30)).unwrap();
    assert_eq!(t.frame_count(), 65536);
    assert!(t.frame_count() * FrameTable::METADATA_BYTES_PER_FRAME as u64 <= 512 * 1024);
}

#[test]
fn free_list_stays_bounded_under_free_retype_cycles() {
    let t = FrameTable::new(FrameTableConfig::with_memory(4 * 4096).frame_size(FrameSize::K4)).unwrap();
    let f = t.alloc(FrameType::UserData, 1).unwrap()[0];
    for _ in 0..10_000 {
        t.free(f).unwrap();
        t.retype(f, FrameType::UserData).unwrap();
    }
    assert_eq!(t.free_frames(), 3);
    // All three free frames (and only they) can be allocated, then none.
    let got = t.alloc(FrameType::UserData, 3).unwrap();
    assert!(!got.contains(&f));
    assert!(matches!(t.alloc(FrameType::UserData, 1), Err(Error::OutOfFrames { .. })));
}
