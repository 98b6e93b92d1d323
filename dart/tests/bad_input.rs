//! Bad input to the DART, end to end: every public entry point given
//! out-of-range, overflowing, misaligned, empty and huge inputs returns the
//! exact typed error, and the system is unchanged afterwards (frame states
//! and free count, every stream's mappings, TTBRs and configuration). Moved
//! here from `coprocessor-sim/tests/bad_input.rs`, which keeps the mapper
//! service, scenario and coprocessor rows; the frame-table rows are in
//! `frame-table/tests/bad_input.rs`, the CLI's in `cli/tests/bad_input.rs`.
//!
//! | entry point | inputs |
//! |---|---|
//! | `Dart::new` | zero / too many streams, missing trusted stream, huge IOTLB |
//! | `Dart::map` | no stream, no frame, misaligned, overflowing, past the IOVA space, empty permission, bad subpages, frame past memory |
//! | `Dart::unmap` | no stream, empty, misaligned, overflowing, past the IOVA space, nothing mapped, the whole (huge) IOVA space |
//! | `Dart::flush` | no stream |
//! | `Dart::translate` / `dma_read` / `dma_write` | no stream, empty, overflowing, unmapped, huge |
//! | `Dart::set_ttbr` / `ttbr` / `stream_config` / `set_bypass` | no stream, no TTBR index, a non-table frame, address past memory, untrusted bypass |
//! | `Dart::mmio_read` / `mmio_write` | misaligned, past the window, `u64::MAX` |

use dart::{Dart, DartConfig, DartError, Dir, FaultKind, MmioError, StreamConfig, Variant};
use frame_table::{Error, Frame, FrameState, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use std::sync::Arc;

const PAGE: u64 = 1 << 14;
const FRAMES: u64 = 64;

/// A small system: 64 frames, a t8020 and a four-level t8110 DART, one live
/// mapping on each.
struct System {
    frames: Arc<FrameTable>,
    t8020: Arc<Dart>,
    t8110: Arc<Dart>,
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
    System { frames, t8020, t8110, idle: f[1] }
}

/// Everything a refused call must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    states: Vec<(Frame, FrameState)>,
    free: u64,
    mappings: Vec<Vec<(u64, dart::pte::Leaf)>>,
    ttbrs: Vec<Option<u64>>,
    configs: Vec<StreamConfig>,
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
