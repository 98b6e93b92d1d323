//! Bad input, end to end: every public entry point given out-of-range,
//! overflowing, misaligned, empty and huge inputs returns the exact typed
//! error, and the system is unchanged afterwards (frame states and free
//! count, every stream's mappings and TTBRs, the mapper service's RPC
//! records). The list, by entry point:
//!
//! | entry point | inputs |
//! |---|---|
//! | `FrameTable::new` | no memory, unaligned, overflowing, huge |
//! | `FrameTable::alloc` | type `free`, zero, huge count |
//! | `FrameTable::retype` / `free` | frame past the end / `u32::MAX`, to `free`, free of a free frame |
//! | `FrameTable::acquire` / `release` / `pin` | frame past the end, empty permission, aperture as a mapping, zero count |
//! | `FrameTable::aperture_read` / `aperture_write` | empty, no memory, overflowing, past the end, huge |
//! | `FrameTable::pa_of` / `frame_of` / `state` | frame `u32::MAX`, address `u64::MAX`, below memory |
//! | `Dart::new` | zero / too many streams, missing trusted stream, huge IOTLB |
//! | `Dart::map` | no stream, no frame, misaligned, overflowing, past the IOVA space, empty permission, bad subpages, frame past memory |
//! | `Dart::unmap` | no stream, empty, misaligned, overflowing, past the IOVA space, nothing mapped, the whole (huge) IOVA space |
//! | `Dart::flush` | no stream |
//! | `Dart::translate` / `dma_read` / `dma_write` | no stream, empty, overflowing, unmapped, huge |
//! | `Dart::set_ttbr` / `ttbr` / `stream_config` / `set_bypass` | no stream, no TTBR index, a non-table frame, address past memory, untrusted bypass |
//! | `Dart::mmio_read` / `mmio_write` | misaligned, past the window, `u64::MAX` |
//! | `MapperService::grant` / `revoke` / `handle` / `handle_message` / `attach_ring` / `service_ring` / `kernel_unmap` | no device, empty, zero length, misaligned, overflowing, beyond the grant / window, short, long and huge messages |
//! | `parse_scenario` / `load_scenario` | empty, NUL, huge numbers, bad page size, a huge read, missing file, a folder |
//! | `Coprocessor::call` | a huge DMA read |
//! | CLI: `cli::collect`, `stress::run_stress`, the `dartemu` binary | missing paths, zero / huge threads and seconds, zero / too many bench rounds, bad flags |

use coprocessor_sim::cli::collect;
use coprocessor_sim::coprocessor::{Command, Coprocessor, Reply};
use coprocessor_sim::rpc::wire::{self, Request, WireError};
use coprocessor_sim::scenario::{load_scenario, parse_scenario, MAX_READ_BYTES};
use coprocessor_sim::service::{MapperService, RpcError};
use coprocessor_sim::soc::Device;
use coprocessor_sim::stress::{run_stress, StressConfig, StressError, MAX_SECONDS, MAX_THREADS};
use dart::{Dart, DartConfig, DartError, Dir, FaultKind, MmioError, StreamConfig, Variant};
use frame_table::{
    Access, ConfigError, Counter, Error, Frame, FrameSize, FrameState, FrameTable, FrameTableConfig, FrameType,
    OnViolation, Perm, Region, DEFAULT_DRAM_BASE,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PAGE: u64 = 1 << 14;
const FRAMES: u64 = 64;
const BASE: u64 = DEFAULT_DRAM_BASE;

/// A small system: 64 frames, a t8020 and a four-level t8110 DART, a
/// mapper service for one device on each, one live mapping on each.
struct System {
    frames: Arc<FrameTable>,
    t8020: Arc<Dart>,
    t8110: Arc<Dart>,
    service: MapperService,
    /// An idle `user-data` frame.
    idle: Frame,
}

fn system() -> System {
    let frames = Arc::new(
        FrameTable::new(FrameTableConfig::with_memory(FRAMES * PAGE).on_violation(OnViolation::Reject)).unwrap(),
    );
    let mut a = DartConfig::new("dart-a", Variant::T8020);
    a.streams = 4;
    let mut b = DartConfig::new("dart-b", Variant::T8110);
    b.streams = 4;
    let t8020 = Arc::new(Dart::new(frames.clone(), a).unwrap());
    let t8110 = Arc::new(Dart::new(frames.clone(), b).unwrap());
    t8020.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    t8110.set_stream_config(1, StreamConfig { four_level: true, ..StreamConfig::TRANSLATING }).unwrap();
    let f = frames.alloc(FrameType::UserData, 2).unwrap();
    t8020.map(1, 0, &[f[0]], Perm::RW, None).unwrap();
    t8110.map(1, 0, &[f[0]], Perm::RW, None).unwrap();
    let devices = vec![
        Device { name: "a".into(), dart: 0, stream: 1, trusted: false, window: 0..(1 << 32) },
        Device { name: "b".into(), dart: 1, stream: 1, trusted: false, window: 0..(1 << 32) },
    ];
    let service = MapperService::new(frames.clone(), vec![t8020.clone(), t8110.clone()], devices);
    System { frames, t8020, t8110, service, idle: f[1] }
}

/// Everything a refused call must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    states: Vec<(Frame, FrameState)>,
    free: u64,
    mappings: Vec<Vec<(u64, dart::pte::Leaf)>>,
    ttbrs: Vec<Option<u64>>,
    configs: Vec<StreamConfig>,
    rpc: Vec<Vec<(u64, u32)>>,
    halted: bool,
}

impl System {
    fn snapshot(&self) -> Snapshot {
        let darts = [&self.t8020, &self.t8110];
        let mut mappings = Vec::new();
        let mut ttbrs = Vec::new();
        let mut configs = Vec::new();
        for d in darts {
            for sid in 0..d.stream_count() {
                mappings.push(d.mappings(sid).unwrap());
                configs.push(d.stream_config(sid).unwrap());
                for idx in 0..d.variant().ttbrs_per_stream() as usize {
                    ttbrs.push(d.ttbr(sid, idx).unwrap());
                }
            }
        }
        Snapshot {
            states: self.frames.states().collect(),
            free: self.frames.free_frames(),
            mappings,
            ttbrs,
            configs,
            rpc: (0..2).map(|d| self.service.rpc_pages(d)).collect(),
            halted: self.frames.halted().is_some(),
        }
    }

    /// Runs `f`, which must fail with exactly `want`, and checks nothing changed.
    fn refuses<T: std::fmt::Debug, E: std::fmt::Debug + PartialEq>(
        &self,
        what: &str,
        want: E,
        f: impl FnOnce(&System) -> Result<T, E>,
    ) {
        let before = self.snapshot();
        let got = f(self);
        assert_eq!(got.as_ref().err(), Some(&want), "{what}: got {got:?}");
        assert_eq!(self.snapshot(), before, "{what}: the refused call changed the system");
    }
}

fn frame_err(e: Error) -> DartError {
    DartError::Frame(e)
}

#[test]
fn frame_table_construction() {
    let cfg = |regions: Vec<Region>| {
        let mut c = FrameTableConfig::with_memory(PAGE);
        c.regions = regions;
        FrameTable::new(c).map(drop).map_err(|e| e.to_string())
    };
    assert_eq!(cfg(vec![]), Err(ConfigError::Empty.to_string()));
    assert_eq!(cfg(vec![Region { base: BASE, size: 0 }]), Err(ConfigError::Empty.to_string()));
    assert_eq!(
        cfg(vec![Region { base: BASE + 1, size: PAGE }]),
        Err(ConfigError::Unaligned { base: BASE + 1, size: PAGE, frame_size: PAGE }.to_string())
    );
    assert_eq!(
        cfg(vec![Region { base: BASE, size: PAGE + 8 }]),
        Err(ConfigError::Unaligned { base: BASE, size: PAGE + 8, frame_size: PAGE }.to_string())
    );
    let top = u64::MAX - PAGE + 1;
    assert_eq!(
        cfg(vec![Region { base: top, size: 2 * PAGE }]),
        Err(ConfigError::Overlap { base: top, size: 2 * PAGE }.to_string())
    );
    assert_eq!(
        cfg(vec![Region { base: BASE, size: 4 * PAGE }, Region { base: BASE + PAGE, size: PAGE }]),
        Err(ConfigError::Overlap { base: BASE + PAGE, size: PAGE }.to_string())
    );
    let huge = 1u64 << 62;
    assert_eq!(
        cfg(vec![Region { base: 0, size: huge }]),
        Err(ConfigError::TooLarge { frames: huge >> 14, max: frame_table::MAX_FRAMES }.to_string())
    );
    assert!(FrameTable::new(FrameTableConfig::with_memory(4 * 4096).frame_size(FrameSize::K4)).is_ok());
}

#[test]
fn frame_table_calls() {
    let s = system();
    let past = Frame(FRAMES as u32);
    let max = Frame(u32::MAX);
    let oor = |frame| Error::OutOfRange { frame, frames: FRAMES };
    s.refuses(
        "alloc free",
        Error::BadTransition { frame: Frame(0), from: FrameType::Free, to: FrameType::Free },
        |s| s.frames.alloc(FrameType::Free, 1),
    );
    s.refuses(
        "alloc zero",
        Error::BadRange { start: 0, len: 0, reason: "an allocation needs at least one frame" },
        |s| s.frames.alloc(FrameType::UserData, 0),
    );
    let free = s.frames.free_frames();
    s.refuses(
        "alloc huge",
        Error::OutOfFrames { ty: FrameType::UserData, requested: u64::MAX, available: free },
        |s| s.frames.alloc(FrameType::UserData, u64::MAX),
    );
    for f in [past, max] {
        s.refuses("retype past the end", oor(f), |s| s.frames.retype(f, FrameType::KernelShared));
        s.refuses("free past the end", oor(f), |s| s.frames.free(f));
        s.refuses("acquire past the end", oor(f), |s| s.frames.acquire(f, Access::Dart, Perm::R));
        s.refuses("release past the end", oor(f), |s| s.frames.release(f, Counter::Dart));
        s.refuses("pin past the end", oor(f), |s| s.frames.pin(&[s.idle, f], Access::Aperture, Perm::R).map(drop));
        s.refuses("pa_of past the end", oor(f), |s| s.frames.pa_of(f));
        s.refuses("state past the end", oor(f), |s| s.frames.state(f));
    }
    let idle = s.idle;
    s.refuses(
        "retype to free",
        Error::BadTransition { frame: idle, from: FrameType::UserData, to: FrameType::Free },
        |s| s.frames.retype(idle, FrameType::Free),
    );
    let last = Frame(FRAMES as u32 - 1);
    s.refuses(
        "free a free frame",
        Error::BadTransition { frame: last, from: FrameType::Free, to: FrameType::Free },
        |s| s.frames.free(last),
    );
    s.refuses(
        "acquire with no permission",
        Error::ForbiddenType { frame: idle, ty: FrameType::UserData, access: Access::Dart, perm: Perm::NONE },
        |s| s.frames.acquire(idle, Access::Dart, Perm::NONE),
    );
    s.refuses(
        "acquire the aperture",
        Error::ForbiddenType { frame: idle, ty: FrameType::UserData, access: Access::Aperture, perm: Perm::R },
        |s| s.frames.acquire(idle, Access::Aperture, Perm::R),
    );
    s.refuses(
        "release a zero count",
        Error::NotMapped { frame: idle, ty: FrameType::UserData, counter: Counter::CpuUser },
        |s| s.frames.release(idle, Counter::CpuUser),
    );
    s.refuses(
        "defer a zero count",
        Error::NotMapped { frame: idle, ty: FrameType::UserData, counter: Counter::Dart },
        |s| s.frames.defer_dart(idle),
    );
    let end = BASE + FRAMES * PAGE;
    let br = |start, len, reason| Error::BadRange { start, len, reason };
    let mut buf16 = [0u8; 16];
    s.refuses("aperture read empty", br(BASE, 0, "empty access"), |s| s.frames.aperture_read(BASE, &mut []));
    s.refuses("aperture write empty", br(BASE, 0, "empty access"), |s| s.frames.aperture_write(BASE, &[]));
    s.refuses("aperture read below memory", br(0, 16, "no physical memory at this address"), |s| {
        s.frames.aperture_read(0, &mut buf16)
    });
    s.refuses("aperture read overflowing", br(u64::MAX - 3, 16, "range overflows"), |s| {
        s.frames.aperture_read(u64::MAX - 3, &mut [0u8; 16])
    });
    s.refuses("aperture write past the end", br(end - 2, 16, "range runs past physical memory"), |s| {
        s.frames.aperture_write(end - 2, &[1u8; 16])
    });
    let huge = vec![0u8; (FRAMES * PAGE + PAGE) as usize];
    s.refuses("aperture write huge", br(BASE, huge.len() as u64, "range runs past physical memory"), |s| {
        s.frames.aperture_write(BASE, &huge)
    });
    s.refuses(
        "frame_of u64::MAX",
        Error::BadRange { start: u64::MAX, len: 1, reason: "no physical memory at this address" },
        |s| s.frames.frame_of(u64::MAX),
    );
}

#[test]
fn dart_construction() {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(FRAMES * PAGE)).unwrap());
    let build = |streams: u32, trusted: Vec<u32>| {
        let mut c = DartConfig::new("d", Variant::T8020);
        c.streams = streams;
        c.trusted = trusted;
        Dart::new(frames.clone(), c).map(drop)
    };
    assert_eq!(build(0, vec![]), Err(DartError::Config { reason: "t8020 has 1 to 16 streams, not 0".into() }));
    assert_eq!(build(17, vec![]), Err(DartError::Config { reason: "t8020 has 1 to 16 streams, not 17".into() }));
    assert_eq!(
        build(u32::MAX, vec![]),
        Err(DartError::Config { reason: format!("t8020 has 1 to 16 streams, not {}", u32::MAX) })
    );
    assert_eq!(build(4, vec![4]), Err(DartError::Config { reason: "trusted stream 4 does not exist".into() }));
    let mut huge = DartConfig::new("d", Variant::T8110);
    huge.iotlb_entries = usize::MAX;
    let d = Dart::new(frames.clone(), huge).unwrap();
    assert_eq!(d.iotlb_capacity(), DartConfig::MAX_IOTLB_ENTRIES);
    assert_eq!(frames.free_frames(), FRAMES, "a DART allocates nothing until it maps");
}

#[test]
fn dart_map_unmap_flush() {
    let s = system();
    let f = s.idle;
    for d in [&s.t8020, &s.t8110] {
        let streams = d.stream_count();
        let limit = d.geometry(1).unwrap().iova_limit();
        let br = |iova, len, reason| DartError::BadRange { iova, len, reason };
        for sid in [streams, u32::MAX] {
            s.refuses("map no stream", DartError::NoSuchStream { sid, streams }, |_| {
                d.map(sid, 0, &[f], Perm::R, None)
            });
            s.refuses("unmap no stream", DartError::NoSuchStream { sid, streams }, |_| d.unmap(sid, 0, PAGE));
            s.refuses("flush no stream", DartError::NoSuchStream { sid, streams }, |_| d.flush(Some(sid)));
        }
        s.refuses("map no frame", br(PAGE, 0, "a mapping needs at least one frame"), |_| {
            d.map(1, PAGE, &[], Perm::R, None)
        });
        s.refuses("map misaligned", br(PAGE + 8, PAGE, "IOVA and length must be page aligned"), |_| {
            d.map(1, PAGE + 8, &[f], Perm::R, None)
        });
        let top = u64::MAX - PAGE + 1;
        s.refuses("map overflowing", br(top, 2 * PAGE, "IOVA range overflows"), |_| {
            d.map(1, top, &[f, f], Perm::R, None)
        });
        s.refuses("map past the IOVA space", br(limit - PAGE, 2 * PAGE, "beyond the stream's IOVA space"), |_| {
            d.map(1, limit - PAGE, &[f, f], Perm::R, None)
        });
        s.refuses("map no permission", br(PAGE, PAGE, "a mapping needs r, w or rw"), |_| {
            d.map(1, PAGE, &[f], Perm::NONE, None)
        });
        let sub = "subpage range must be non-empty, 4-byte aligned and inside the page";
        s.refuses("map empty subpage", br(8, 0, sub), |_| d.map(1, PAGE, &[f], Perm::R, Some((8, 8))));
        s.refuses("map misaligned subpage", br(3, 5, sub), |_| d.map(1, PAGE, &[f], Perm::R, Some((3, 8))));
        s.refuses("map subpage past the page", br(0, PAGE + 4, sub), |_| {
            d.map(1, PAGE, &[f], Perm::R, Some((0, PAGE + 4)))
        });
        s.refuses("map huge subpage", br(u64::MAX - 3, 3, sub), |_| {
            d.map(1, PAGE, &[f], Perm::R, Some((u64::MAX - 3, u64::MAX)))
        });
        s.refuses("map subpage of two frames", br(PAGE, 2 * PAGE, "a subpage mapping takes exactly one frame"), |_| {
            d.map(1, PAGE, &[f, f], Perm::R, Some((0, 64)))
        });
        let past = Frame(FRAMES as u32);
        s.refuses("map frame past memory", frame_err(Error::OutOfRange { frame: past, frames: FRAMES }), |_| {
            d.map(1, PAGE, &[f, past], Perm::R, None)
        });
        s.refuses("map over a mapping", DartError::IovaInUse { sid: 1, iova: 0 }, |_| d.map(1, 0, &[f], Perm::R, None));
        s.refuses("unmap empty", br(0, 0, "empty range"), |_| d.unmap(1, 0, 0));
        s.refuses("unmap misaligned", br(0, 100, "IOVA and length must be page aligned"), |_| d.unmap(1, 0, 100));
        s.refuses("unmap overflowing", br(top, 2 * PAGE, "IOVA range overflows"), |_| d.unmap(1, top, 2 * PAGE));
        s.refuses("unmap past the IOVA space", br(limit, PAGE, "beyond the stream's IOVA space"), |_| {
            d.unmap(1, limit, PAGE)
        });
        s.refuses("unmap nothing", DartError::NotMapped { sid: 1, iova: PAGE, len: PAGE }, |_| d.unmap(1, PAGE, PAGE));
        // The whole IOVA space but the mapped page: huge, and quick (empty tables are skipped).
        s.refuses("unmap huge", DartError::NotMapped { sid: 1, iova: PAGE, len: limit - PAGE }, |_| {
            d.unmap(1, PAGE, limit - PAGE)
        });
        let limit2 = d.geometry(2).unwrap().iova_limit();
        s.refuses("unmap huge, unconfigured stream", DartError::NotMapped { sid: 2, iova: 0, len: limit2 }, |_| {
            d.unmap(2, 0, limit2)
        });
    }
}

#[test]
fn dart_dma_and_translate() {
    let s = system();
    for d in [&s.t8020, &s.t8110] {
        let streams = d.stream_count();
        let br = |iova, len, reason| DartError::BadRange { iova, len, reason };
        let mut buf = [0u8; 16];
        for sid in [streams, u32::MAX] {
            s.refuses("dma read no stream", DartError::NoSuchStream { sid, streams }, |_| d.dma_read(sid, 0, &mut buf));
            s.refuses("dma write no stream", DartError::NoSuchStream { sid, streams }, |_| d.dma_write(sid, 0, &[1]));
            s.refuses("translate no stream", DartError::NoSuchStream { sid, streams }, |_| {
                d.translate(sid, 0, 1, Dir::Read).map(drop)
            });
        }
        s.refuses("dma read empty", br(0, 0, "empty DMA"), |_| d.dma_read(1, 0, &mut []));
        s.refuses("dma write empty", br(0, 0, "empty DMA"), |_| d.dma_write(1, 0, &[]));
        s.refuses("translate empty", br(0, 0, "empty DMA"), |_| d.translate(1, 0, 0, Dir::Write).map(drop));
        s.refuses("dma read overflowing", br(u64::MAX - 7, 16, "IOVA range overflows"), |_| {
            d.dma_read(1, u64::MAX - 7, &mut [0u8; 16])
        });
        s.refuses("dma write overflowing", br(u64::MAX, 2, "IOVA range overflows"), |_| {
            d.dma_write(1, u64::MAX, &[1, 2])
        });
        s.refuses("translate overflowing", br(1, u64::MAX, "IOVA range overflows"), |_| {
            d.translate(1, 1, u64::MAX, Dir::Read).map(drop)
        });
        // Faults latch ERROR (by design) but move no data and change no mapping.
        let fault = |iova, kind, write| DartError::Fault(dart::Fault { kind, stream: 1, iova, write });
        let no_pte = FaultKind::NoPte;
        s.refuses("dma read past the mapping", fault(PAGE, no_pte, false), |_| d.dma_read(1, PAGE - 4, &mut buf));
        let mut untouched = [0xA5u8; 16];
        let _ = d.dma_read(1, PAGE - 4, &mut untouched);
        assert_eq!(untouched, [0xA5; 16], "a faulting DMA read wrote the buffer");
        let huge = vec![7u8; (2 * PAGE) as usize];
        s.refuses("dma write huge", fault(PAGE, no_pte, true), |_| d.dma_write(1, 0, &huge));
        let mut back = [0u8; 4];
        d.dma_read(1, 0, &mut back).unwrap();
        assert_ne!(back, [7u8; 4], "a faulting DMA write wrote its first page");
        s.refuses("translate huge", fault(PAGE, no_pte, false), |_| {
            d.translate(1, 0, u64::MAX / 2, Dir::Read).map(drop)
        });
        let limit = d.geometry(1).unwrap().iova_limit();
        s.refuses("dma past the IOVA space", fault(limit, FaultKind::NoTtbr, false), |_| {
            d.dma_read(1, limit, &mut buf)
        });
        let disabled =
            DartError::Fault(dart::Fault { kind: FaultKind::StreamDisabled, stream: 2, iova: 0, write: false });
        s.refuses("dma on a disabled stream", disabled, |_| d.dma_read(2, 0, &mut buf));
        d.clear_error();
    }
}

#[test]
fn dart_configuration_and_mmio() {
    let s = system();
    for d in [&s.t8020, &s.t8110] {
        let streams = d.stream_count();
        let ttbrs = d.variant().ttbrs_per_stream() as usize;
        let br = |iova, len, reason| DartError::BadRange { iova, len, reason };
        s.refuses("ttbr no stream", DartError::NoSuchStream { sid: u32::MAX, streams }, |_| d.ttbr(u32::MAX, 0));
        s.refuses("set_ttbr no stream", DartError::NoSuchStream { sid: streams, streams }, |_| {
            d.set_ttbr(streams, 0, None)
        });
        s.refuses("ttbr no index", br(ttbrs as u64, 0, "no such TTBR index"), |_| d.ttbr(1, ttbrs));
        s.refuses("set_ttbr no index", br(usize::MAX as u64, 0, "no such TTBR index"), |_| {
            d.set_ttbr(1, usize::MAX, None)
        });
        let pa = s.frames.pa_of(s.idle).unwrap();
        s.refuses(
            "set_ttbr at a user-data frame",
            frame_err(Error::NotTable { pa, ty: Some(FrameType::UserData) }),
            |_| d.set_ttbr(2, 0, Some(pa)),
        );
        s.refuses("set_ttbr past memory", frame_err(Error::NotTable { pa: u64::MAX - 3, ty: None }), |_| {
            d.set_ttbr(2, 0, Some(u64::MAX - 3))
        });
        s.refuses("stream_config no stream", DartError::NoSuchStream { sid: u32::MAX, streams }, |_| {
            d.stream_config(u32::MAX)
        });
        s.refuses("set_stream_config no stream", DartError::NoSuchStream { sid: streams, streams }, |_| {
            d.set_stream_config(streams, StreamConfig::TRANSLATING)
        });
        s.refuses("bypass untrusted", DartError::BypassDenied { sid: 1 }, |_| d.set_bypass(1, true));
        let size = d.mmio_size();
        for off in [1, 2, 3, size + 1, u64::MAX] {
            s.refuses("mmio read misaligned", MmioError::Misaligned { offset: off }, |_| d.mmio_read(off));
            s.refuses("mmio write misaligned", MmioError::Misaligned { offset: off }, |_| d.mmio_write(off, 1));
        }
        for off in [size, size + 4, u64::MAX - 3] {
            s.refuses("mmio read past the window", MmioError::OutOfRange { offset: off, size }, |_| d.mmio_read(off));
            s.refuses("mmio write past the window", MmioError::OutOfRange { offset: off, size }, |_| {
                d.mmio_write(off, u32::MAX)
            });
        }
    }
}

#[test]
fn mapper_service() {
    let s = system();
    let sv = &s.service;
    let handle = sv.grant(0, vec![s.idle], Perm::R).unwrap();
    let map = |offset, len, iova| Request::Map { handle, offset, len, iova, perm: Perm::R };
    let br = |start, len, reason| RpcError::BadRange { start, len, reason };
    s.refuses("grant no device", RpcError::NoSuchDevice(2), |s| s.service.grant(2, vec![s.idle], Perm::R));
    s.refuses("grant no device (usize::MAX)", RpcError::NoSuchDevice(usize::MAX), |s| {
        s.service.grant(usize::MAX, vec![s.idle], Perm::R)
    });
    s.refuses("grant empty", br(0, 0, "a grant needs frames and a permission"), |s| {
        s.service.grant(0, vec![], Perm::R)
    });
    s.refuses("grant no permission", br(0, 0, "a grant needs frames and a permission"), |s| {
        s.service.grant(0, vec![s.idle], Perm::NONE)
    });
    s.refuses("revoke unknown", RpcError::NotGranted { reason: "handle 4242 is not granted".into() }, |s| {
        s.service.revoke(4242)
    });
    s.refuses("handle no device", RpcError::NoSuchDevice(7), |s| s.service.handle(7, &map(0, PAGE, PAGE)));
    s.refuses(
        "map another device's grant",
        RpcError::NotGranted { reason: format!("handle {handle} is not granted to b") },
        |s| s.service.handle(1, &map(0, PAGE, PAGE)),
    );
    s.refuses("map above the grant", RpcError::PermExceedsGrant { asked: Perm::RW, granted: Perm::R }, |s| {
        s.service.handle(0, &Request::Map { handle, offset: 0, len: PAGE, iova: PAGE, perm: Perm::RW })
    });
    s.refuses("map zero length", br(PAGE, 0, "zero length"), |s| s.service.handle(0, &map(0, 0, PAGE)));
    s.refuses("map misaligned", br(PAGE + 1, PAGE, "offset, length and IOVA must be page aligned"), |s| {
        s.service.handle(0, &map(0, PAGE, PAGE + 1))
    });
    let top = u64::MAX - PAGE + 1;
    s.refuses("map iova overflowing", br(top, 2 * PAGE, "iova + len overflows"), |s| {
        s.service.handle(0, &map(0, 2 * PAGE, top))
    });
    s.refuses("map offset overflowing", br(top, 2 * PAGE, "offset + len overflows"), |s| {
        s.service.handle(0, &map(top, 2 * PAGE, PAGE))
    });
    s.refuses("map beyond the grant", br(0, 2 * PAGE, "beyond the granted buffer"), |s| {
        s.service.handle(0, &map(0, 2 * PAGE, PAGE))
    });
    s.refuses("map outside the window", br(1 << 32, PAGE, "outside the coprocessor's IOVA window"), |s| {
        s.service.handle(0, &map(0, PAGE, 1 << 32))
    });
    s.refuses("map over a mapping", RpcError::Dart(DartError::IovaInUse { sid: 1, iova: 0 }), |s| {
        s.service.handle(0, &map(0, PAGE, 0))
    });
    s.refuses(
        "map-pa",
        RpcError::NotGranted { reason: "raw physical address 0x800000000: only granted handles map".into() },
        |s| s.service.handle(0, &Request::MapPa { pa: BASE, len: PAGE, iova: PAGE, perm: Perm::R }),
    );
    let unmap = |iova, len| Request::Unmap { iova, len };
    s.refuses("unmap zero", br(0, 0, "zero length"), |s| s.service.handle(0, &unmap(0, 0)));
    s.refuses("unmap misaligned", br(3, PAGE, "length and IOVA must be page aligned"), |s| {
        s.service.handle(0, &unmap(3, PAGE))
    });
    s.refuses("unmap overflowing", br(top, 2 * PAGE, "iova + len overflows"), |s| {
        s.service.handle(0, &unmap(top, 2 * PAGE))
    });
    s.refuses("unmap the kernel's mapping", RpcError::NotMapped { iova: 0, len: PAGE }, |s| {
        s.service.handle(0, &unmap(0, PAGE))
    });
    s.refuses("unmap huge", RpcError::NotMapped { iova: 0, len: 1 << 40 }, |s| s.service.handle(0, &unmap(0, 1 << 40)));
    for (what, msg, want) in [
        ("empty message", vec![], WireError::Short { len: 0 }),
        ("short message", vec![0u8; 63], WireError::Short { len: 63 }),
        ("long message", vec![0u8; 65], WireError::Long { len: 65 }),
        ("huge message", vec![0xFFu8; 1 << 20], WireError::Long { len: 1 << 20 }),
    ] {
        s.refuses(what, RpcError::BadMessage(want), |s| s.service.handle_message(0, &msg).1);
    }
    let mut bad_perm = wire::encode_request(9, &map(0, PAGE, PAGE));
    bad_perm[20] = 0;
    s.refuses("message with no permission", RpcError::BadMessage(WireError::BadPerm { bits: 0 }), |s| {
        let (seq, r) = s.service.handle_message(0, &bad_perm);
        assert_eq!(seq, 9);
        r
    });
    s.refuses("message to no device", RpcError::NoSuchDevice(5), |s| {
        s.service.handle_message(5, &wire::encode_request(1, &map(0, PAGE, PAGE))).1
    });
    let idle = s.idle;
    s.refuses(
        "ring in user-data",
        RpcError::Dart(frame_err(Error::ForbiddenType {
            frame: idle,
            ty: FrameType::UserData,
            access: Access::Dart,
            perm: Perm::RW,
        })),
        |s| s.service.attach_ring(0, idle),
    );
    let past = Frame(u32::MAX);
    s.refuses("ring past memory", RpcError::Dart(frame_err(Error::OutOfRange { frame: past, frames: FRAMES })), |s| {
        s.service.attach_ring(0, past)
    });
    s.refuses("ring of no device", RpcError::NoSuchDevice(9), |s| s.service.attach_ring(9, idle));
    s.refuses("service without a ring", RpcError::NotGranted { reason: "no ring attached".into() }, |s| {
        s.service.service_ring(0)
    });
    s.refuses("kernel unmap no device", RpcError::NoSuchDevice(3), |s| s.service.kernel_unmap(3, 0, PAGE));
    s.refuses(
        "kernel unmap overflowing",
        RpcError::Dart(DartError::BadRange { iova: top, len: 2 * PAGE, reason: "IOVA range overflows" }),
        |s| s.service.kernel_unmap(0, top, 2 * PAGE),
    );
    sv.revoke(handle).unwrap();
}

#[test]
fn scenario_inputs() {
    let file = Path::new("bad.toml");
    let err = |src: &str| parse_scenario(src, file).map(drop).map_err(|e| (e.line, e.reason));
    let range = "integer out of range (TOML integers stop at 9223372036854775807; `iova`, `pa` and MMIO `value` also take strings such as \"0xffff_ffff_ffff_c000\")";
    let dart = "name = \"x\"\n[[dart]]\nname = \"d\"\nvariant = \"t8110\"\n";
    let huge_read = "name = \"x\"\n[[step]]\nop = \"dma-read\"\ndevice = \"dev0\"\niova = 0\nlen = 9223372036854775807\nexpect = \"ok\"\n";
    let cases: Vec<(String, usize, String)> = vec![
        ("".into(), 1, "the top-level table is missing `name`".into()),
        ("\0".into(), 1, "TOML syntax error: invalid key".into()),
        ("name = \"x\"\n[soc]\nmemory_mib = 18446744073709551615\n".into(), 3, format!("`memory_mib`: {range}")),
        (
            "name = \"x\"\n[soc]\nmemory_mib = -1\n".into(),
            3,
            "`memory_mib` in [soc] must not be negative, got -1".into(),
        ),
        (
            "name = \"x\"\n[soc]\nmemory_mib = 0\n".into(),
            3,
            "`memory_mib` in [soc] must be at least 1, got 0".into(),
        ),
        (
            "name = \"x\"\n[soc]\nmemory_mib = 9223372036854775807\n".into(),
            3,
            "`memory_mib` in [soc]: 9223372036854775807 MiB of memory is above the limit of 1048576".into(),
        ),
        (
            "name = \"x\"\n[soc]\npage_size = 1234\n".into(),
            3,
            "`page_size` in [soc] must be 16384 or 4096, got 1234".into(),
        ),
        (format!("{dart}streams = 0\n"), 5, "`streams` in dart `d` must be between 1 and 256 for t8110, got 0".into()),
        (
            format!("{dart}streams = 100000\n"),
            5,
            "`streams` in dart `d`: 100000 streams is above the limit of 256".into(),
        ),
        (
            format!("{dart}iotlb_entries = 9223372036854775807\n"),
            5,
            "`iotlb_entries` in dart `d`: 9223372036854775807 IOTLB entries is above the limit of 16384".into(),
        ),
        (format!("{dart}iotlb_entries = 18446744073709551615\n"), 5, format!("`iotlb_entries`: {range}")),
        (
            huge_read.into(),
            6,
            format!("`len` in step 1 (op = \"dma-read\"): 9223372036854775807 bytes in one read or hold is above the limit of {MAX_READ_BYTES}"),
        ),
    ];
    for (src, line, reason) in cases {
        assert_eq!(err(&src), Err((line, reason)), "{src:?}");
    }
    let long = format!("name = \"{}\"\n", "x".repeat(1 << 20));
    assert_eq!(err(&long), Ok(()), "a 1 MiB name is just a long name");
    let missing = load_scenario(Path::new("/nonexistent/dartemu.toml")).unwrap_err();
    assert_eq!(
        (missing.file.as_path(), missing.line, missing.reason.as_str()),
        (
            Path::new("/nonexistent/dartemu.toml"),
            0,
            "cannot read the scenario file: No such file or directory (os error 2)"
        )
    );
    let dir = load_scenario(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_err();
    assert_eq!((dir.line, dir.reason.as_str()), (0, "cannot read the scenario file: Is a directory (os error 21)"));
}

/// A coprocessor asked (through its public command API) for a read larger
/// than any SoC could return refuses it instead of aborting on allocation.
#[test]
fn coprocessor_huge_read() {
    let s = system();
    let c = Coprocessor::spawn("a", s.t8020.port(1).unwrap()).unwrap();
    let before = s.snapshot();
    assert_eq!(
        c.call(Command::DmaRead { iova: 0, len: u64::MAX }),
        Reply::Failed(DartError::BadRange {
            iova: 0,
            len: u64::MAX,
            reason: "longer than the longest read a step may ask for"
        })
    );
    assert_eq!(s.snapshot(), before);
}

#[test]
fn cli_paths() {
    let missing = PathBuf::from("/nonexistent/scenarios");
    let e = collect(std::slice::from_ref(&missing)).unwrap_err();
    assert_eq!((e.file, e.line, e.reason.as_str()), (missing, 0, "no such file or folder"));
    assert_eq!(collect(&[]).unwrap(), Vec::<PathBuf>::new());
    let cfg = |seconds, threads| StressConfig { seconds, threads, seed: 0 };
    for threads in [0, MAX_THREADS + 1, usize::MAX] {
        assert!(matches!(
            run_stress(&cfg(1, threads)),
            Err(StressError::BadThreads { threads: t, max: MAX_THREADS }) if t == threads
        ));
    }
    for seconds in [0, MAX_SECONDS + 1, u64::MAX] {
        assert!(matches!(
            run_stress(&cfg(seconds, 1)),
            Err(StressError::BadSeconds { seconds: s, max: MAX_SECONDS }) if s == seconds
        ));
    }
    let bin = env!("CARGO_BIN_EXE_dartemu");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let huge = std::env::temp_dir().join(format!("dartemu-bad-input-{}.toml", std::process::id()));
    std::fs::write(
        &huge,
        "name = \"x\"\n[[step]]\nop = \"dma-read\"\ndevice = \"dev0\"\niova = 0\nlen = 9223372036854775807\nexpect = \"ok\"\n",
    )
    .unwrap();
    let (code, err) = run(&["run", huge.to_str().unwrap()]);
    std::fs::remove_file(&huge).unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("9223372036854775807 bytes in one read or hold is above the limit of 16777216"), "{err}");
    for (args, needle) in [
        (&["run", "/nonexistent/x.toml"][..], "no such file or folder"),
        (&["run"][..], "required"),
        (&["stress", "--threads", "0"][..], "--threads 0: must be 1..=32"),
        (&["stress", "--seconds", "0"][..], "--seconds 0: must be 1..=86400"),
        (&["stress", "--seconds", "-1"][..], "unexpected argument"),
        (&["stress", "--threads", "99999999999999999999999"][..], "invalid value"),
        (&["bench", "--rounds", "0"][..], "--rounds 0: must be 1 to 1000"),
        (&["bench", "--rounds", "1001"][..], "--rounds 1001: must be 1 to 1000"),
        (&["bogus"][..], "unrecognized subcommand"),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
    }
}
