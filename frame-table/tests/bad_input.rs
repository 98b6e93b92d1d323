//! Bad input to the frame table, end to end: every public entry point given
//! out-of-range, overflowing, misaligned, empty and huge inputs returns the
//! exact typed error, and the frame table is unchanged afterwards (frame
//! states and free count). Moved here from `coprocessor-sim/tests/bad_input.rs`,
//! which keeps the mapper service, scenario and coprocessor rows; the DART
//! rows are in `dart/tests/bad_input.rs`, the CLI's in `cli/tests/bad_input.rs`.
//!
//! | entry point | inputs |
//! |---|---|
//! | `FrameTable::new` | no memory, unaligned, overflowing, huge |
//! | `FrameTable::alloc` | type `free`, zero, huge count |
//! | `FrameTable::retype` / `free` | frame past the end / `u32::MAX`, to `free`, free of a free frame |
//! | `FrameTable::acquire` / `release` / `pin` | frame past the end, empty permission, aperture as a mapping, zero count |
//! | `FrameTable::aperture_read` / `aperture_write` | empty, no memory, overflowing, past the end, huge |
//! | `FrameTable::pa_of` / `frame_of` / `state` | frame `u32::MAX`, address `u64::MAX`, below memory |

use frame_table::{
    Access, ConfigError, Counter, Error, Frame, FrameSize, FrameState, FrameTable, FrameTableConfig, FrameType,
    OnViolation, Perm, Region, DEFAULT_DRAM_BASE,
};
use std::sync::Arc;

const PAGE: u64 = 1 << 14;
const FRAMES: u64 = 64;
const BASE: u64 = DEFAULT_DRAM_BASE;

/// A small frame table: 64 frames, two `user-data` frames, the first with
/// two DART mappings (as `coprocessor-sim`'s bad-input system maps it on two
/// DARTs).
struct System {
    frames: Arc<FrameTable>,
    /// An idle `user-data` frame.
    idle: Frame,
}

fn system() -> System {
    let frames = Arc::new(
        FrameTable::new(FrameTableConfig::with_memory(FRAMES * PAGE).on_violation(OnViolation::Reject)).unwrap(),
    );
    let f = frames.alloc(FrameType::UserData, 2).unwrap();
    frames.acquire(f[0], Access::Dart, Perm::RW).unwrap();
    frames.acquire(f[0], Access::Dart, Perm::RW).unwrap();
    System { frames, idle: f[1] }
}

/// Everything a refused call must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    states: Vec<(Frame, FrameState)>,
    free: u64,
    halted: bool,
}

impl System {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            states: self.frames.states().collect(),
            free: self.frames.free_frames(),
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
