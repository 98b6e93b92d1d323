//! Bad input, end to end: every public entry point given out-of-range,
//! overflowing, misaligned, empty and huge inputs returns the exact typed
//! error, and the system is unchanged afterwards (frame states and free
//! count, every stream's mappings and TTBRs, the mapper service's RPC
//! records). The frame table's and the DART's own entry points are in
//! `frame-table/tests/bad_input.rs` and `dart/tests/bad_input.rs`, the
//! CLI's in `cli/tests/bad_input.rs`. The list, by entry point:
//!
//! | entry point | inputs |
//! |---|---|
//! | `MapperService::grant` / `revoke` / `handle` / `handle_message` / `attach_ring` / `service_ring` / `kernel_unmap` | no device, empty, zero length, misaligned, overflowing, beyond the grant / window, short, long and huge messages |
//! | `parse_scenario` / `load_scenario` | empty, NUL, huge numbers, bad page size, a huge read, missing file, a folder |
//! | `Coprocessor::call` | a huge DMA read |

use coprocessor_sim::rpc::service::{MapperService, RpcError};
use coprocessor_sim::rpc::wire::{self, Request, WireError};
use coprocessor_sim::scenario::{load_scenario, parse_scenario, MAX_READ_BYTES};
use coprocessor_sim::soc::coprocessor::{Command, Coprocessor, Reply};
use coprocessor_sim::soc::Device;
use dart::{Dart, DartConfig, DartError, StreamConfig, Variant};
use frame_table::{
    Access, Error, Frame, FrameState, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm, DEFAULT_DRAM_BASE,
};
use std::path::Path;
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
