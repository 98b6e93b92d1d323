//! The mapper service decides ownership from what the tables hold now (docs/design.md
//! §4): after the kernel re-points a TTBR, toggles TCR.FOUR_LEVEL, or unmaps
//! and re-maps a page (here through a sibling stream sharing the tables), a
//! device's RPC `unmap` and the kernel's `revoke` of its handle are
//! `not-mapped` / remove nothing, and the kernel's mapping stays. Requests go
//! straight to `MapperService::handle` (the decoded message), which also
//! covers the FOUR_LEVEL route's RPC unmap: after that toggle the device's
//! ring, mapped with the two-level geometry, is out of its own reach, so the
//! catalogue scenario (rpc-stale-four-level-t8110.toml) shows the revoke.

use coprocessor_sim::rpc::service::{MapperService, RpcError};
use coprocessor_sim::rpc::wire::Request;
use coprocessor_sim::soc::Device;
use dart::{Dart, DartConfig, StreamConfig, Variant};
use frame_table::{Counter, Frame, FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;

const PAGE: u64 = 0x4000;

struct System {
    frames: Arc<FrameTable>,
    dart: Arc<Dart>,
    service: MapperService,
    /// The device's grant (two `user-data` frames, handle `h`).
    grant: Vec<Frame>,
    h: u32,
    /// The kernel's firmware (two `kernel-shared` frames).
    fw: Vec<Frame>,
}

/// Device 0 on stream 1 and device 1 on stream 2 of one DART.
fn system(variant: Variant) -> System {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("d", variant)).unwrap());
    for sid in [1, 2] {
        dart.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
    }
    let devices = (1..=2)
        .map(|sid| Device { name: format!("dev{sid}"), dart: 0, stream: sid, trusted: false, window: 0..(1 << 32) })
        .collect();
    let service = MapperService::new(frames.clone(), vec![dart.clone()], devices);
    let grant = frames.alloc(FrameType::UserData, 2).unwrap();
    let h = service.grant(0, grant.clone(), Perm::RW).unwrap();
    let fw = frames.alloc(FrameType::KernelShared, 2).unwrap();
    System { frames, dart, service, grant, h, fw }
}

impl System {
    fn rpc_map(&self, iova: u64) {
        let req = Request::Map { handle: self.h, offset: 0, len: 2 * PAGE, iova, perm: Perm::RW };
        self.service.handle(0, &req).unwrap();
    }

    fn rpc_unmap(&self, iova: u64, len: u64) -> Result<(), RpcError> {
        self.service.handle(0, &Request::Unmap { iova, len })
    }

    /// `(iova, pa)` of every leaf stream `sid` maps.
    fn leaves(&self, sid: u32) -> Vec<(u64, u64)> {
        self.dart.mappings(sid).unwrap().into_iter().map(|(iova, l)| (iova, l.pa)).collect()
    }

    fn pa(&self, f: Frame) -> u64 {
        self.frames.pa_of(f).unwrap()
    }

    fn dart_counts(&self, fs: &[Frame]) -> Vec<u64> {
        fs.iter().map(|&f| self.frames.state(f).unwrap().count(Counter::Dart)).collect()
    }

    /// The RPC unmap of both pages is `not-mapped` and changes nothing; so
    /// is one page at a time; the revoke removes nothing; the kernel's
    /// pages at `x` are still what stream 1 maps there.
    fn assert_device_owns_nothing_at(&self, x: u64, kernel: &[Frame]) {
        let before = (self.leaves(1), self.leaves(2), self.dart_counts(&self.grant), self.dart_counts(kernel));
        assert_eq!(self.rpc_unmap(x, 2 * PAGE), Err(RpcError::NotMapped { iova: x, len: 2 * PAGE }));
        assert_eq!(self.rpc_unmap(x + PAGE, PAGE), Err(RpcError::NotMapped { iova: x + PAGE, len: PAGE }));
        assert_eq!(self.service.rpc_pages(0), [(x, self.h), (x + PAGE, self.h)], "the records stay");
        assert_eq!(self.service.revoke(self.h), Ok(0));
        assert_eq!(self.service.rpc_pages(0), [], "the revoke forgot them");
        let after = (self.leaves(1), self.leaves(2), self.dart_counts(&self.grant), self.dart_counts(kernel));
        assert_eq!(after, before);
        let kernel_leaves: Vec<(u64, u64)> =
            kernel.iter().enumerate().map(|(i, &f)| (x + i as u64 * PAGE, self.pa(f))).collect();
        assert!(kernel_leaves.iter().all(|l| after.0.contains(l)), "{:?} in {:?}", kernel_leaves, after.0);
        assert_eq!(self.dart.stats().snapshot().get("s1.unmaps"), Some(0));
        assert_eq!(self.dart.check_provenance(), Ok(()));
    }
}

#[test]
fn a_ttbr_repoint_leaves_the_new_tables_to_the_kernel() {
    let s = system(Variant::T8020);
    let x = 0x100000;
    s.dart.map(2, x, &s.fw, Perm::R, None).unwrap();
    s.rpc_map(x);
    let root2 = s.dart.ttbr(2, 0).unwrap();
    s.dart.set_ttbr(1, 0, root2).unwrap();
    s.assert_device_owns_nothing_at(x, &s.fw);
    // The device's own pages stay in its old tables (no TTBR names them):
    // docs/design.md §4, "the page is not-mapped to the device and stays mapped".
    assert_eq!(s.dart_counts(&s.grant), [1, 1]);
}

#[test]
fn a_four_level_toggle_leaves_what_x_walks_now_to_the_kernel() {
    let s = system(Variant::T8110);
    let x = 0x200_0000; // two-level root entry 1; four-level root entry 0
    s.rpc_map(x);
    s.dart.set_stream_config(1, StreamConfig { four_level: true, ..StreamConfig::TRANSLATING }).unwrap();
    s.dart.map(1, x, &s.fw, Perm::R, None).unwrap();
    s.assert_device_owns_nothing_at(x, &s.fw);
    assert_eq!(s.dart_counts(&s.grant), [1, 1]);
}

#[test]
fn a_kernel_unmap_and_identical_remap_through_a_sibling_is_the_kernels() {
    let s = system(Variant::T8110);
    let x = 0x100000;
    s.rpc_map(x);
    let root1 = s.dart.ttbr(1, 0).unwrap();
    s.dart.set_ttbr(2, 0, root1).unwrap();
    // Stream 2's own unmap and re-map of the grant's frames, same
    // permission: PTEs bit-identical to the device's.
    let device_leaves = s.leaves(1);
    assert_eq!(s.dart.unmap(2, x, 2 * PAGE), Ok(2));
    s.dart.map(2, x, &s.grant, Perm::RW, None).unwrap();
    assert_eq!(s.leaves(1), device_leaves);
    s.assert_device_owns_nothing_at(x, &s.grant);
}

#[test]
fn the_devices_own_pages_still_unmap_and_revoke() {
    let s = system(Variant::T8110);
    s.rpc_map(0x100000);
    // Shared with a sibling: still the device's.
    let root1 = s.dart.ttbr(1, 0).unwrap();
    s.dart.set_ttbr(2, 0, root1).unwrap();
    assert_eq!(s.rpc_unmap(0x104000, PAGE), Ok(()));
    assert_eq!(s.leaves(1), [(0x100000, s.pa(s.grant[0]))]);
    assert_eq!(s.service.revoke(s.h), Ok(1));
    assert_eq!((s.leaves(1), s.leaves(2)), (vec![], vec![]));
    assert_eq!(s.dart_counts(&s.grant), [0, 0]);
    assert_eq!(s.service.rpc_pages(0), []);
}
