//! Differential property test: random sequences of map / unmap / flush / DMA
//! on random streams against a reference model (a `BTreeMap` of pages), for
//! every variant (and t8110 four-level) and both page sizes. Same results,
//! same fault kinds, same data, and frame counts that equal the model's
//! mappings after every step.
//!
//! In deferred mode a DMA to a page unmapped since the last flush may be
//! served by a stale IOTLB entry: the model accepts either the stale data or
//! the fault there, and nowhere else.

use dart::{Dart, DartConfig, DartError, Invalidation, StreamConfig, Variant};
use frame_table::{Frame, FrameSize, FrameTable, FrameTableConfig, FrameType, Perm};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const STREAMS: u32 = 3;

#[derive(Clone, Debug)]
enum Op {
    Map { sid: u32, at: (u8, u8, u8), frames: Vec<u8>, perm: u8, subpage: Option<(u16, u16)> },
    Unmap { sid: u32, at: (u8, u8, u8), pages: u8 },
    Flush { sid: Option<u32> },
    Dma { sid: u32, at: (u8, u8, u8), offset: u16, len: u16, write: bool, byte: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let at = (0u8..2, 0u8..2, 0u8..6);
    prop_oneof![
        4 => (0..STREAMS, at.clone(), prop::collection::vec(0u8..10, 1..4), 1u8..4, prop::option::weighted(0.2, (0u16..64, 1u16..64)))
            .prop_map(|(sid, at, frames, perm, subpage)| Op::Map { sid, at, frames, perm, subpage }),
        2 => (0..STREAMS, at.clone(), 1u8..4).prop_map(|(sid, at, pages)| Op::Unmap { sid, at, pages }),
        1 => prop::option::of(0..STREAMS).prop_map(|sid| Op::Flush { sid }),
        6 => (0..STREAMS, at, any::<u16>(), 1u16..40000, any::<bool>(), any::<u8>())
            .prop_map(|(sid, at, offset, len, write, byte)| Op::Dma { sid, at, offset, len, write, byte }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ModelLeaf {
    frame: usize,
    read: bool,
    write: bool,
    sub: (u64, u64),
}

struct Model {
    mappings: BTreeMap<(u32, u64), ModelLeaf>,
    /// Pages unmapped in deferred mode and not flushed yet: (sid, page) → leaf.
    stale: BTreeMap<(u32, u64), ModelLeaf>,
    roots: BTreeSet<(u32, usize)>,
    data: Vec<Vec<u8>>,
}

struct Setup {
    variant: Variant,
    four_level: bool,
    frame_size: FrameSize,
    mode: Invalidation,
}

fn run(setup: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let fs = setup.frame_size.bytes();
    let frames =
        Arc::new(FrameTable::new(FrameTableConfig::with_memory(128 * fs).frame_size(setup.frame_size)).unwrap());
    let mut cfg = DartConfig::new("d", setup.variant);
    cfg.streams = STREAMS;
    cfg.invalidation = setup.mode;
    cfg.iotlb_entries = 16;
    let d = Dart::new(frames.clone(), cfg).unwrap();
    for sid in 0..STREAMS {
        d.set_stream_config(sid, StreamConfig { four_level: setup.four_level, ..StreamConfig::TRANSLATING }).unwrap();
    }
    let geo = d.geometry(0).unwrap();
    // Frames 0..8 user-data, 8..10 kernel-restricted.
    let mut pool: Vec<Frame> = frames.alloc(FrameType::UserData, 8).unwrap();
    pool.extend(frames.alloc(FrameType::KernelRestricted, 2).unwrap());
    let restricted = |i: usize| i >= 8;
    let mut m = Model {
        mappings: BTreeMap::new(),
        stale: BTreeMap::new(),
        roots: BTreeSet::new(),
        data: vec![vec![0; fs as usize]; 10],
    };
    let bpl = geo.bits_per_level();
    let iova_of = |(hi, r, p): (u8, u8, u8)| -> u64 {
        ((hi as u64) << (geo.iova_bits() - 1)) | ((r as u64) << (geo.page_shift + bpl)) | ((p as u64) << geo.page_shift)
    };
    // Whether the table at `level` covering `iova` exists, per the model.
    let table_exists = |m: &Model, sid: u32, iova: u64, level: u32| -> bool {
        let cover = geo.page_shift + (geo.levels - level) * bpl;
        m.mappings.keys().any(|&(s, va)| s == sid && va >> cover == iova >> cover)
    };
    let expected_fault = |m: &Model, sid: u32, iova: u64| -> &'static str {
        if !m.roots.contains(&(sid, geo.ttbr_index(iova))) {
            return "fault:no-ttbr";
        }
        for level in 1..geo.levels {
            if !table_exists(m, sid, iova, level) {
                return if level == 1 && geo.levels == 3 { "fault:no-l0" } else { "fault:no-l1" };
            }
        }
        "fault:no-pte"
    };

    for op in ops {
        match op.clone() {
            Op::Map { sid, at, frames: fi, perm, subpage } => {
                let iova = iova_of(at);
                let perm = match perm {
                    1 => Perm::R,
                    2 => Perm::W,
                    _ => Perm::RW,
                };
                let fl: Vec<Frame> = fi.iter().map(|&i| pool[i as usize]).collect();
                let sub = subpage.map(|(a, l)| (a as u64 * 4, (a as u64 + l as u64) * 4));
                let got = d.map(sid, iova, &fl, perm, sub);
                let pages: Vec<u64> = (0..fl.len() as u64).map(|i| iova + i * fs).collect();
                let expect = if sub.is_some() && fl.len() != 1 {
                    Err("bad-range")
                } else if let Some(&p) = pages.iter().find(|&&p| m.mappings.contains_key(&(sid, p))) {
                    let _ = p;
                    Err("iova-in-use")
                } else if fi.iter().any(|&i| restricted(i as usize)) {
                    Err("forbidden-type")
                } else {
                    Ok(())
                };
                prop_assert_eq!(got.as_ref().map(|_| ()).map_err(|e| e.kind()), expect, "{:?}", op);
                if expect.is_ok() {
                    for (k, &p) in pages.iter().enumerate() {
                        m.roots.insert((sid, geo.ttbr_index(p)));
                        m.mappings.insert(
                            (sid, p),
                            ModelLeaf {
                                frame: fi[k] as usize,
                                read: perm.read(),
                                write: perm.write(),
                                sub: sub.unwrap_or((0, fs)),
                            },
                        );
                        m.stale.remove(&(sid, p));
                    }
                }
            }
            Op::Unmap { sid, at, pages } => {
                let iova = iova_of(at);
                let len = pages as u64 * fs;
                let got = d.unmap(sid, iova, len);
                let gone: Vec<u64> =
                    (0..pages as u64).map(|i| iova + i * fs).filter(|p| m.mappings.contains_key(&(sid, *p))).collect();
                if gone.is_empty() {
                    prop_assert_eq!(got.map_err(|e| e.kind()), Err("not-mapped"));
                } else {
                    prop_assert_eq!(got.map_err(|e| e.kind()), Ok(gone.len() as u64));
                    for p in gone {
                        let leaf = m.mappings.remove(&(sid, p)).unwrap();
                        if setup.mode == Invalidation::Deferred {
                            m.stale.insert((sid, p), leaf);
                        }
                    }
                }
            }
            Op::Flush { sid } => {
                d.flush(sid).unwrap();
                m.stale.retain(|&(s, _), _| sid.is_some_and(|f| f != s));
            }
            Op::Dma { sid, at, offset, len, write, byte } => {
                let iova = iova_of(at) + (offset as u64 % fs);
                let len = len as u64;
                let mut buf = vec![0xeeu8; len as usize];
                let got = if write {
                    buf.iter_mut().for_each(|b| *b = byte);
                    d.dma_write(sid, iova, &buf)
                } else {
                    d.dma_read(sid, iova, &mut buf)
                };
                // The model: page by page, the first failure wins.
                let mut cur = iova;
                let mut expect: Result<(), (&str, u64)> = Ok(());
                let mut stale_involved = false;
                let mut pieces = Vec::new();
                while cur < iova + len {
                    let page = cur & !(fs - 1);
                    let off = cur - page;
                    let n = (fs - off).min(iova + len - cur);
                    let leaf = m.mappings.get(&(sid, page)).copied();
                    let leaf = match leaf {
                        Some(l) => l,
                        None => {
                            if let Some(l) = m.stale.get(&(sid, page)) {
                                stale_involved = true;
                                let _ = l;
                            }
                            expect = Err((expected_fault(&m, sid, page), cur));
                            break;
                        }
                    };
                    if (write && !leaf.write) || (!write && !leaf.read) {
                        expect = Err((if write { "fault:write" } else { "fault:read" }, cur));
                        break;
                    }
                    if off < leaf.sub.0 || off + n > leaf.sub.1 {
                        expect = Err(("fault:subpage", cur));
                        break;
                    }
                    pieces.push((leaf.frame, off as usize, n as usize));
                    cur += n;
                }
                let got_kind = got.as_ref().map(|_| ()).map_err(|e| match e {
                    DartError::Fault(f) => (f.kind.kind(), f.iova),
                    other => (other.kind(), 0),
                });
                if stale_involved && got_kind != expect {
                    // A stale IOTLB entry may have served a page: outcome
                    // not pinned down; the data check below is skipped and
                    // the model's data resynchronised from memory.
                    for (i, d) in m.data.iter_mut().enumerate() {
                        let pa = frames.pa_of(pool[i]).unwrap();
                        use frame_table::vm_memory::{Bytes, GuestAddress};
                        frames.memory().read_slice(d, GuestAddress(pa)).unwrap();
                    }
                    continue;
                }
                prop_assert_eq!(got_kind, expect, "{:?} at {:#x}", op, iova);
                if expect.is_ok() {
                    let mut pos = 0;
                    for (f, off, n) in pieces {
                        if write {
                            m.data[f][off..off + n].copy_from_slice(&buf[pos..pos + n]);
                        } else {
                            prop_assert_eq!(&buf[pos..pos + n], &m.data[f][off..off + n]);
                        }
                        pos += n;
                    }
                } else if !write {
                    prop_assert!(buf.iter().all(|&b| b == 0xee), "a faulting read filled the buffer");
                }
            }
        }
        // Frame counts equal the model after every step.
        for (i, &f) in pool.iter().enumerate() {
            let live = m.mappings.values().filter(|l| l.frame == i).count() as u32;
            let c = frames.state(f).unwrap().counts();
            prop_assert_eq!(c.dart, live, "frame {} after {:?}", i, op);
            if setup.mode == Invalidation::Strict {
                prop_assert_eq!(c.pending, 0);
            }
        }
        // And memory equals the model (no write went anywhere else).
        for (i, &f) in pool.iter().enumerate() {
            let pa = frames.pa_of(f).unwrap();
            let mut now = vec![0u8; fs as usize];
            use frame_table::vm_memory::{Bytes, GuestAddress};
            frames.memory().read_slice(&mut now, GuestAddress(pa)).unwrap();
            prop_assert!(now == m.data[i], "frame {} memory differs from the model after {:?}", i, op);
        }
        prop_assert_eq!(d.check_restricted_unreachable(), Ok(()));
        prop_assert_eq!(d.check_iotlb_coherent(), Ok(()));
    }
    // Tear down: everything unmapped and flushed leaves no count and only roots.
    for &(sid, page) in m.mappings.keys() {
        d.unmap(sid, page, fs).unwrap();
    }
    d.flush(None).unwrap();
    for &f in &pool {
        prop_assert!(!frames.state(f).unwrap().mapped());
    }
    prop_assert_eq!(d.table_frames().len(), m.roots.len());
    Ok(())
}

fn setups() -> Vec<Setup> {
    let mut v = Vec::new();
    for frame_size in [FrameSize::K16, FrameSize::K4] {
        for (variant, four_level) in
            [(Variant::T8020, false), (Variant::T6000, false), (Variant::T8110, false), (Variant::T8110, true)]
        {
            for mode in [Invalidation::Strict, Invalidation::Deferred] {
                v.push(Setup { variant, four_level, frame_size, mode });
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn dart_matches_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        for s in setups() {
            run(&s, &ops).map_err(|e| TestCaseError::fail(format!(
                "{} four_level={} {:?} {:?}: {}", s.variant, s.four_level, s.frame_size, s.mode, e
            )))?;
        }
    }
}
