//! Arbitrary op sequences against a small emulated system: one frame table
//! (64 frames of 16 KiB, breaches rejected rather than halting), a t8020
//! and a t8110 DART with a mapper service for two devices. Every op may
//! fail, never panic; after each op the invariants hold:
//!
//! - `restricted-unreachable` and `iotlb-coherent` on both DARTs;
//! - counts consistent: every frame's DART and pending counts equal what
//!   the DARTs' tables and queues hold, and the CPU counts stay zero (no op
//!   maps for a CPU);
//! - a DMA write that succeeded is read back unchanged (no lost write) as
//!   long as nothing else ran in between;
//! - nothing halted the system (the violation mode is `reject`);
//! - the monitor (driver-built tables: `PteWrite`, `PteRead`,
//!   `ReleaseTable`, `PteTree`): a write that succeeded reads back as
//!   written, a refused one changed nothing (the entry, or the refusal to
//!   read a table that is not this DART's, is as before: M8), and a
//!   released table is no longer this DART's.
#![no_main]

use arbitrary::Arbitrary;
use coprocessor_sim::rpc::service::MapperService;
use coprocessor_sim::rpc::wire::{self, Request};
use coprocessor_sim::soc::Device;
use dart::{Dart, DartConfig, Invalidation, StreamConfig, Variant};
use frame_table::{Counter, Frame, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::Arc;

const PAGE: u64 = 1 << 14;

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc { ty: u8, count: u8 },
    Free { frame: u8 },
    Retype { frame: u8, ty: u8 },
    Map { dart: bool, sid: u8, page: u16, frame: u8, count: u8, perm: u8, subpage: Option<(u16, u16)> },
    Unmap { dart: bool, sid: u8, page: u16, pages: u8 },
    UnmapRaw { dart: bool, sid: u8, iova: u64, len: u64 },
    Flush { dart: bool, sid: Option<u8> },
    DmaWrite { dart: bool, sid: u8, iova: u32, len: u16, fill: u8 },
    DmaRead { dart: bool, sid: u8, iova: u64, len: u16 },
    Translate { dart: bool, sid: u8, iova: u64, len: u64, write: bool },
    MmioWrite { dart: bool, offset: u16, value: u32 },
    MmioRead { dart: bool, offset: u64 },
    SetTtbr { dart: bool, sid: u8, idx: u8, pa: Option<u64> },
    Grant { device: bool, frame: u8, count: u8, perm: u8 },
    Rpc { device: bool, handle: u8, offset: u8, len: u8, page: u16, perm: u8, unmap: bool },
    RpcRaw { device: bool, bytes: [u8; 64] },
    Revoke { handle: u8 },
    AllocRoot { dart: bool },
    // A monitor write into the table at `table`'s frame.
    PteWrite { dart: bool, table: u8, index: u16, value: PteValue },
    // A monitor read of the table at `table`'s frame.
    PteRead { dart: bool, table: u8, index: u16 },
    // `release_table` of the table at `table`'s frame.
    ReleaseTable { dart: bool, table: u8 },
    // TTBR `idx` of stream `sid` := `frame`'s PA (a root the fuzzer built).
    SetTtbrFrame { dart: bool, sid: u8, idx: u8, frame: u8 },
    // The honest driver sequence in one op: register `root` and `leaves`
    // (zero writes), TTBR 0 of `sid` at `root`, descriptor `root[slot / 2048]`
    // -> `leaves`, leaf `leaves[slot % 2048]` -> `data`. Each step may be
    // refused; the post-conditions hold after each.
    PteTree { dart: bool, sid: u8, root: u8, leaves: u8, slot: u16, data: u8, perm: u8 },
}

/// The value of a monitor write: raw, or encoded from a frame.
#[derive(Arbitrary, Debug)]
enum PteValue {
    Raw(u64),
    // A leaf in the DART's format naming `frame` (perm 0, which no leaf
    // encodes: the PA with the valid bit, a table descriptor's shape).
    Leaf { frame: u8, perm: u8 },
    // A table descriptor naming `frame`.
    Table { frame: u8 },
    // The entry's current value with the valid bit cleared (a clear).
    Clear,
}

fn perm(p: u8) -> Perm {
    Perm::new(p & 1 != 0, p & 2 != 0)
}

fn frame_type(t: u8) -> FrameType {
    FrameType::ALL[t as usize % FrameType::ALL.len()]
}

struct System {
    frames: Arc<FrameTable>,
    darts: [Arc<Dart>; 2],
    service: MapperService,
}

impl System {
    fn new() -> System {
        let frames = Arc::new(
            FrameTable::new(FrameTableConfig::with_memory(64 * PAGE).on_violation(OnViolation::Reject)).unwrap(),
        );
        let mut a = DartConfig::new("dart-a", Variant::T8020);
        a.streams = 4;
        a.iotlb_entries = 8;
        let mut b = DartConfig::new("dart-b", Variant::T8110);
        b.streams = 4;
        b.iotlb_entries = 8;
        b.invalidation = Invalidation::Deferred;
        b.trusted = vec![3];
        let darts = [Arc::new(Dart::new(frames.clone(), a).unwrap()), Arc::new(Dart::new(frames.clone(), b).unwrap())];
        for d in &darts {
            for sid in 0..3 {
                d.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
            }
        }
        let devices = vec![
            Device { name: "a1".into(), dart: 0, stream: 1, trusted: false, window: 0..(1 << 30) },
            Device { name: "b2".into(), dart: 1, stream: 2, trusted: false, window: 0..(1 << 30) },
        ];
        let service = MapperService::new(frames.clone(), darts.to_vec(), devices);
        System { frames, darts, service }
    }

    fn dart(&self, b: bool) -> &Dart {
        &self.darts[b as usize]
    }

    fn frame(&self, i: u8) -> Frame {
        // A few numbers past the end, to exercise the range checks.
        Frame(u32::from(i) % 70)
    }

    /// The PA of frame `i`; past the end of memory for a frame past it.
    fn pa(&self, i: u8) -> u64 {
        let f = self.frame(i);
        self.frames.pa_of(f).unwrap_or(self.frames.pa_of(Frame(0)).unwrap_or(0) + u64::from(f.0) * PAGE)
    }

    /// The raw entry `value` names for entry `(table, index)` of `d`.
    fn pte_value(&self, d: &Dart, table: u64, index: u64, value: &PteValue) -> u64 {
        let (fmt, shift) = (d.pte_format(), d.page_shift());
        match *value {
            PteValue::Raw(v) => v,
            PteValue::Leaf { frame, perm: p } => {
                let pa = self.pa(frame);
                let leaf =
                    dart::pte::Leaf { pa, read: p & 1 != 0, write: p & 2 != 0, subpage: dart::pte::Subpage::WHOLE };
                fmt.encode_leaf(shift, &leaf)
                    .unwrap_or_else(|_| fmt.encode_table(shift, pa).unwrap_or(pa | dart::pte::PTE_VALID))
            }
            PteValue::Table { frame } => {
                let pa = self.pa(frame);
                fmt.encode_table(shift, pa).unwrap_or(pa | dart::pte::PTE_VALID)
            }
            PteValue::Clear => d.read_table_entry(table, index).unwrap_or(0) & !dart::pte::PTE_VALID,
        }
    }

    /// A monitor write with its post-conditions: read back as written, or
    /// nothing changed (M8).
    fn pte_write(&self, d: &Dart, table: u64, index: u64, value: u64) {
        let before = d.read_table_entry(table, index);
        match d.write_table_entry(table, index, value) {
            Ok(()) => assert_eq!(d.read_table_entry(table, index), Ok(value), "{table:#x}[{index}] := {value:#x}"),
            Err(e) => assert_eq!(
                d.read_table_entry(table, index),
                before,
                "a refused write ({e}) of {table:#x}[{index}] := {value:#x} changed it"
            ),
        }
    }

    fn check(&self) {
        assert_eq!(self.frames.halted(), None, "the system halted in reject mode");
        let mut dart: HashMap<Frame, (u64, u64)> = HashMap::new();
        for d in &self.darts {
            d.check_restricted_unreachable().unwrap();
            d.check_iotlb_coherent().unwrap();
            for (f, (live, pending)) in d.dart_counts() {
                let e = dart.entry(f).or_default();
                e.0 += live;
                e.1 += pending;
            }
        }
        for (f, s) in self.frames.states() {
            let (live, pending) = dart.get(&f).copied().unwrap_or_default();
            let c = s.counts();
            assert_eq!(
                (
                    u64::from(c.cpu_kernel),
                    u64::from(c.cpu_user),
                    s.count(Counter::Dart),
                    s.count(Counter::PendingInvalidation)
                ),
                (0, 0, live, pending),
                "{f}: frame-table counts differ from the DARTs' ({s:?})"
            );
        }
    }

    fn run(&self, op: &Op) {
        match *op {
            Op::Alloc { ty, count } => {
                let _ = self.frames.alloc(frame_type(ty), u64::from(count % 8));
            }
            Op::Free { frame } => {
                let _ = self.frames.free(self.frame(frame));
            }
            Op::Retype { frame, ty } => {
                let _ = self.frames.retype(self.frame(frame), frame_type(ty));
            }
            Op::Map { dart, sid, page, frame, count, perm: p, subpage } => {
                let first = self.frame(frame).0;
                let frames: Vec<Frame> = (0..u32::from(count % 4)).map(|i| Frame(first + i)).collect();
                let sub = subpage.map(|(a, b)| (u64::from(a), u64::from(b)));
                let _ = self.dart(dart).map(u32::from(sid % 5), u64::from(page) * PAGE, &frames, perm(p), sub);
            }
            Op::Unmap { dart, sid, page, pages } => {
                let _ = self.dart(dart).unmap(u32::from(sid % 5), u64::from(page) * PAGE, u64::from(pages) * PAGE);
            }
            Op::UnmapRaw { dart, sid, iova, len } => {
                let _ = self.dart(dart).unmap(u32::from(sid), iova, len);
            }
            Op::Flush { dart, sid } => {
                let _ = self.dart(dart).flush(sid.map(|s| u32::from(s % 5)));
            }
            Op::DmaWrite { dart, sid, iova, len, fill } => {
                let d = self.dart(dart);
                let sid = u32::from(sid % 5);
                let data: Vec<u8> = (0..len % 4096).map(|i| fill ^ (i as u8)).collect();
                if d.dma_write(sid, u64::from(iova), &data).is_ok() {
                    let mut back = vec![0u8; data.len()];
                    // A readable mapping reads back what was just written,
                    // unless two pages of the range alias one frame.
                    let aliased = match d.translate(sid, u64::from(iova), data.len() as u64, dart::Dir::Read) {
                        Ok(t) => {
                            let mut spans: Vec<(u64, u64)> = t.spans().iter().map(|s| (s.pa, s.len)).collect();
                            spans.sort();
                            spans.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0)
                        }
                        Err(_) => true,
                    };
                    if !aliased && d.dma_read(sid, u64::from(iova), &mut back).is_ok() {
                        assert_eq!(back, data, "lost write at {iova:#x}");
                    }
                }
            }
            Op::DmaRead { dart, sid, iova, len } => {
                let mut buf = vec![0xA5u8; usize::from(len % 4096)];
                if self.dart(dart).dma_read(u32::from(sid % 5), iova, &mut buf).is_err() {
                    assert!(buf.iter().all(|&b| b == 0xA5), "a failed DMA read changed the buffer");
                }
            }
            Op::Translate { dart, sid, iova, len, write } => {
                let dir = if write { dart::Dir::Write } else { dart::Dir::Read };
                if let Ok(t) = self.dart(dart).translate(u32::from(sid % 5), iova, len % (1 << 20), dir) {
                    for s in t.spans() {
                        let f = self.frames.frame_of(s.pa).unwrap();
                        let ty = self.frames.state(f).unwrap().ty();
                        assert!(frame_table::policy::device_reachable(ty), "translated to a {ty} frame");
                    }
                }
            }
            Op::MmioWrite { dart, offset, value } => {
                let _ = self.dart(dart).mmio_write(u64::from(offset), value);
            }
            Op::MmioRead { dart, offset } => {
                let _ = self.dart(dart).mmio_read(offset);
            }
            Op::SetTtbr { dart, sid, idx, pa } => {
                let _ = self.dart(dart).set_ttbr(u32::from(sid % 5), usize::from(idx % 5), pa);
            }
            Op::Grant { device, frame, count, perm: p } => {
                let first = self.frame(frame).0;
                let frames: Vec<Frame> = (0..u32::from(count % 4)).map(|i| Frame(first + i)).collect();
                let _ = self.service.grant(device as usize, frames, perm(p));
            }
            Op::Rpc { device, handle, offset, len, page, perm: p, unmap } => {
                let req = if unmap {
                    Request::Unmap { iova: u64::from(page) * PAGE, len: u64::from(len % 4) * PAGE }
                } else {
                    Request::Map {
                        handle: u32::from(handle % 8),
                        offset: u64::from(offset % 4) * PAGE,
                        len: u64::from(len % 4) * PAGE,
                        iova: u64::from(page) * PAGE,
                        perm: perm(p),
                    }
                };
                let _ = self.service.handle_message(device as usize, &wire::encode_request(7, &req));
            }
            Op::RpcRaw { device, bytes } => {
                let _ = self.service.handle_message(device as usize + 1, &bytes);
            }
            Op::Revoke { handle } => {
                let _ = self.service.revoke(u32::from(handle % 8));
            }
            Op::AllocRoot { dart } => {
                let _ = self.dart(dart).alloc_root_table();
            }
            Op::PteWrite { dart, table, index, ref value } => {
                let d = self.dart(dart);
                let (table, index) = (self.pa(table), u64::from(index) % (d.entries_per_table() + 4));
                let value = self.pte_value(d, table, index, value);
                self.pte_write(d, table, index, value);
            }
            Op::PteRead { dart, table, index } => {
                let d = self.dart(dart);
                let n = d.entries_per_table();
                let index = u64::from(index) % (n + 4);
                let r = d.read_table_entry(self.pa(table), index);
                if index >= n {
                    assert_eq!(r.map_err(|e| e.kind()), Err("bad-range"), "index {index} past the table");
                }
            }
            Op::ReleaseTable { dart, table } => {
                let d = self.dart(dart);
                let pa = self.pa(table);
                if d.release_table(pa).is_ok() {
                    assert!(d.read_table_entry(pa, 0).is_err(), "{pa:#x} still this DART's table after its release");
                }
            }
            Op::SetTtbrFrame { dart, sid, idx, frame } => {
                let _ = self.dart(dart).set_ttbr(u32::from(sid % 5), usize::from(idx % 5), Some(self.pa(frame)));
            }
            Op::PteTree { dart, sid, root, leaves, slot, data, perm: p } => {
                let d = self.dart(dart);
                let (root, leaves) = (self.pa(root), self.pa(leaves));
                let n = d.entries_per_table();
                self.pte_write(d, root, 0, 0);
                self.check();
                self.pte_write(d, leaves, 0, 0);
                self.check();
                let _ = d.set_ttbr(u32::from(sid % 5), 0, Some(root));
                self.check();
                let (hi, lo) = (u64::from(slot) / n % n, u64::from(slot) % n);
                let desc = d.pte_format().encode_table(d.page_shift(), leaves).unwrap_or(leaves | dart::pte::PTE_VALID);
                self.pte_write(d, root, hi, desc);
                self.check();
                let leaf = self.pte_value(d, leaves, lo, &PteValue::Leaf { frame: data, perm: p });
                self.pte_write(d, leaves, lo, leaf);
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let sys = System::new();
    for op in ops.iter().take(64) {
        sys.run(op);
        sys.check();
    }
});
