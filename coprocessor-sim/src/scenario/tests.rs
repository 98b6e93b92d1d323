//! Tests of the scenario parser: the AST of a full file, defaults, errors
//! with exact lines, and "never panics" properties.

use super::*;
use proptest::prelude::*;
use std::path::Path;

/// Uses every op, every rpc call, both check forms and a race.
const FULL: &str = r#"name = "every op"
description = "a scenario that uses every op"

[soc]
memory_mib = 128
page_size = 4096
on_violation = "reject"

[[dart]]
name = "dart0"
variant = "t8020"
streams = 8
invalidation = "deferred"
iotlb_entries = 64

[[dart]]
name = "disp"
streams = 256

[[coprocessor]]
name = "ane"
dart = "dart0"
stream = 1
trusted = true
window = [0x1000, 0x2_0000]

[[coprocessor]]
name = "dcp"
dart = "disp"
stream = 200

[[step]]
op = "alloc"
name = "secret"
type = "kernel-restricted"
frames = 2
align = 4

[[step]]
op = "retype"
target = "secret[1]"
type = "kernel-shared"
expect = "bad-transition"

[[step]]
op = "free"
target = "secret"

[[step]]
op = "cpu-map"
target = "buf[0]"
space = "user"
perm = "rw"

[[step]]
op = "cpu-unmap"
target = "buf"
space = "kernel"

[[step]]
op = "cpu-write"
target = "buf[0]"
offset = 0x10
data = "0xdeadbeef"

[[step]]
op = "cpu-read"
target = "buf[0]"
offset = 16
data = "0xdead_beef"

[[step]]
op = "map"
device = "ane"
iova = 0x10000
target = "secret"
perm = "rw"
subpage = [0x40, 0x80]
expect = "forbidden-type"

[[step]]
op = "unmap"
device = "ane"
iova = "pa:buf[3]"
len = 0x4000

[[step]]
op = "flush"
dart = "dart0"
stream = 1

[[step]]
op = "grant"
device = "ane"
target = "buf"
perm = "r"
name = "h1"

[[step]]
op = "revoke"
name = "h1"

[[step]]
op = "rpc"
device = "ane"
call = "map"
handle = "h1"
offset = 0x4000
len = 0x4000
iova = 0x20000
perm = "r"

[[step]]
op = "rpc"
device = "ane"
call = "unmap"
iova = 0x20000
len = 0x4000
expect = "not-mapped"

[[step]]
op = "rpc"
device = "ane"
call = "map-pa"
pa = "pa:secret[0]"
len = 0x4000
iova = "0xffff_ffff_ffff_c000"
perm = "rw"
expect = "not-granted"

[[step]]
op = "rpc"
device = "ane"
call = "raw"
bytes = "0x"
expect = "bad-message"

[[step]]
op = "dma-read"
device = "ane"
iova = 0x10000
len = 4
expect = "fault:no-pte"

[[step]]
op = "dma-write"
device = "ane"
iova = 0x10000
data = "0x0102"

[[step]]
op = "bypass"
device = "dcp"
enable = true
expect = "bypass-denied"

[[step]]
op = "mmio-write"
dart = "dart0"
offset = 0x200
value = "ttbr:tables[0]"

[[step]]
op = "mmio-read"
dart = "dart0"
offset = 0x40
value = 0x8000_0000
mask = 0x8000_0000

[[step]]
op = "check"
invariant = "restricted-unreachable"

[[step]]
op = "check"
counter = "dart0.s1.faults.no-pte"
at_least = 1

[[step]]
op = "race"
iterations = 100
threads = [
  [ { op = "map", device = "ane", iova = 0x40000, target = "buf[1]", perm = "rw" },
    { op = "unmap", device = "ane", iova = 0x40000, len = 0x1000, expect = "ok" } ],
  [ { op = "retype", target = "buf[1]", type = "user-data" } ],
]

[[step]]
op = "mmio-read"
dart = "disp"
offset = 0x1000
expect = "any"

[[step]]
op = "watch"
device = "ane"
iova = 0x4000
len = 0x40
enable = false

[[step]]
op = "hold"
device = "ane"
iova = 0x4000
len = 0x40

[[step]]
op = "hold"
device = "ane"
iova = "pa:buf[0]"
len = 1
perm = "rw"

[[step]]
op = "check"
holds = "buf[0]"
equals = 1

[[step]]
op = "release"
device = "ane"

[[step]]
op = "check"
holds = "buf"
at_least = 0

[[step]]
op = "pte-write"
dart = "dart0"
table = "root[0]"
index = 3
value = "table:leaf[0]"

[[step]]
op = "pte-read"
dart = "dart0"
table = "ttbr:ane"
index = 0x7ff
value = "leaf:buf[2]:rw"
mask = "0xffff_ffff_ffff_ffff"

[[step]]
op = "release-table"
dart = "disp"
table = "leaf[0]"
expect = "table-in-use"
"#;

fn parse(src: &str) -> Result<Scenario, ScenarioError> {
    parse_scenario(src, Path::new("test.toml"))
}

/// Parses `src`, expecting an error at `line` whose reason contains `needle`.
#[track_caller]
fn assert_err(src: &str, line: usize, needle: &str) {
    match parse(src) {
        Ok(s) => panic!("expected an error containing {needle:?} at line {line}, parsed {s:#?}"),
        Err(e) => {
            assert!(e.reason.contains(needle), "reason {:?} does not contain {needle:?}", e.reason);
            assert_eq!(e.line, line, "wrong line for {:?}", e.reason);
            assert_eq!(e.file, Path::new("test.toml"));
            assert_eq!(e.to_string(), format!("test.toml:{line}: {}", e.reason));
        }
    }
}

fn frame(buffer: &str, index: u64) -> FrameRef {
    FrameRef { buffer: buffer.to_owned(), index }
}

/// 1-based lines of the lines of `src` that start with `prefix`.
fn lines_starting_with(src: &str, prefix: &str) -> Vec<usize> {
    src.lines().enumerate().filter(|(_, l)| l.trim_start().starts_with(prefix)).map(|(i, _)| i + 1).collect()
}

#[test]
fn full_scenario_parses_to_the_expected_ast() {
    let s = parse(FULL).unwrap();
    assert_eq!(s.name, "every op");
    assert_eq!(s.description.as_deref(), Some("a scenario that uses every op"));
    assert_eq!(s.file, Path::new("test.toml"));
    assert_eq!(
        s.soc,
        SocConfig { memory_mib: 128, page_size: FrameSize::K4, on_violation: OnViolation::Reject, line: 4 }
    );
    assert_eq!(s.soc.memory_bytes(), 128 << 20);
    assert_eq!(
        s.darts,
        vec![
            DartConfig {
                name: "dart0".into(),
                variant: DartVariant::T8020,
                streams: 8,
                invalidation: Invalidation::Deferred,
                iotlb_entries: 64,
                line: 9,
            },
            DartConfig {
                name: "disp".into(),
                variant: DartVariant::T8110,
                streams: 256,
                invalidation: Invalidation::Strict,
                iotlb_entries: 256,
                line: 16,
            },
        ]
    );
    assert_eq!(
        s.coprocessors,
        vec![
            CoprocessorConfig {
                name: "ane".into(),
                dart: "dart0".into(),
                stream: 1,
                trusted: true,
                window: 0x1000..0x2_0000,
                line: 20,
            },
            CoprocessorConfig {
                name: "dcp".into(),
                dart: "disp".into(),
                stream: 200,
                trusted: false,
                window: DEFAULT_WINDOW,
                line: 27,
            },
        ]
    );
    assert_eq!(s.coprocessor("dcp").unwrap().dart, "disp");
    assert_eq!(s.dart("disp").unwrap().streams, 256);

    // Every step: index, line of its header, and its op name.
    let headers = lines_starting_with(FULL, "[[step]]");
    assert_eq!(headers[0], 32);
    assert_eq!(s.steps.len(), headers.len());
    let names: Vec<&str> = s.steps.iter().map(|st| st.op.name()).collect();
    for op in OP_NAMES {
        assert!(names.contains(&op), "op {op} not exercised");
    }
    for (i, (step, line)) in s.steps.iter().zip(&headers).enumerate() {
        assert_eq!(step.index, i);
        assert_eq!(step.number(), i + 1);
        assert_eq!(step.line, *line, "line of step {}", i + 1);
    }

    let ops: Vec<&Op> = s.steps.iter().map(|st| &st.op).collect();
    assert_eq!(*ops[0], Op::Alloc { name: "secret".into(), ty: FrameType::KernelRestricted, frames: 2, align: 4 });
    assert_eq!(s.steps[0].expect, Outcome::Ok);
    assert_eq!(*ops[1], Op::Retype { target: Target::Frame(frame("secret", 1)), ty: FrameType::KernelShared });
    assert_eq!(s.steps[1].expect, Outcome::BadTransition);
    assert_eq!(*ops[2], Op::Free { target: Target::Buffer("secret".into()) });
    assert_eq!(*ops[3], Op::CpuMap { target: Target::Frame(frame("buf", 0)), space: Space::User, perm: Perm::RW });
    assert_eq!(*ops[4], Op::CpuUnmap { target: Target::Buffer("buf".into()), space: Space::Kernel, perm: None });
    assert_eq!(
        *ops[5],
        Op::CpuWrite { target: Target::Frame(frame("buf", 0)), offset: 0x10, data: vec![0xde, 0xad, 0xbe, 0xef] }
    );
    assert_eq!(
        *ops[6],
        Op::CpuRead {
            target: Target::Frame(frame("buf", 0)),
            offset: 16,
            len: 4,
            data: Some(vec![0xde, 0xad, 0xbe, 0xef])
        }
    );
    assert_eq!(
        *ops[7],
        Op::Map {
            device: "ane".into(),
            iova: Address::Int(0x10000),
            target: Target::Buffer("secret".into()),
            perm: Perm::RW,
            subpage: Some(0x40..0x80),
        }
    );
    assert_eq!(s.steps[7].expect, Outcome::ForbiddenType);
    assert_eq!(*ops[8], Op::Unmap { device: "ane".into(), iova: Address::Pa(frame("buf", 3)), len: 0x4000 });
    assert_eq!(*ops[9], Op::Flush { dart: "dart0".into(), stream: Some(1) });
    assert_eq!(
        *ops[10],
        Op::Grant { device: "ane".into(), target: Target::Buffer("buf".into()), perm: Perm::R, name: "h1".into() }
    );
    assert_eq!(*ops[11], Op::Revoke { name: "h1".into() });
    assert_eq!(
        *ops[12],
        Op::Rpc {
            device: "ane".into(),
            call: RpcCall::Map {
                handle: "h1".into(),
                offset: 0x4000,
                len: 0x4000,
                iova: Address::Int(0x20000),
                perm: Perm::R
            }
        }
    );
    assert_eq!(
        *ops[13],
        Op::Rpc { device: "ane".into(), call: RpcCall::Unmap { iova: Address::Int(0x20000), len: 0x4000 } }
    );
    assert_eq!(s.steps[13].expect, Outcome::NotMapped);
    assert_eq!(
        *ops[14],
        Op::Rpc {
            device: "ane".into(),
            call: RpcCall::MapPa {
                pa: Address::Pa(frame("secret", 0)),
                len: 0x4000,
                iova: Address::Int(0xffff_ffff_ffff_c000),
                perm: Perm::RW
            }
        }
    );
    assert_eq!(*ops[15], Op::Rpc { device: "ane".into(), call: RpcCall::Raw { bytes: vec![] } });
    assert_eq!(s.steps[15].expect, Outcome::BadMessage);
    assert_eq!(*ops[16], Op::DmaRead { device: "ane".into(), iova: Address::Int(0x10000), len: 4, data: None });
    assert_eq!(s.steps[16].expect, Outcome::Fault(FaultKind::NoPte));
    assert_eq!(*ops[17], Op::DmaWrite { device: "ane".into(), iova: Address::Int(0x10000), data: vec![1, 2] });
    assert_eq!(*ops[18], Op::Bypass { device: "dcp".into(), enable: true });
    assert_eq!(s.steps[18].expect, Outcome::BypassDenied);
    assert_eq!(
        *ops[19],
        Op::MmioWrite { dart: "dart0".into(), offset: 0x200, value: MmioValue::Ttbr(frame("tables", 0)) }
    );
    assert_eq!(
        *ops[20],
        Op::MmioRead {
            dart: "dart0".into(),
            offset: 0x40,
            value: Some(MmioValue::Int(0x8000_0000)),
            mask: Some(0x8000_0000)
        }
    );
    assert_eq!(*ops[21], Op::Check(Check::Invariant(Invariant::RestrictedUnreachable)));
    assert_eq!(
        *ops[22],
        Op::Check(Check::Counter {
            counter: CounterRef { dart: "dart0".into(), stream: Some(1), name: "faults.no-pte".into() },
            cmp: CounterCmp::AtLeast(1),
        })
    );
    let Op::Race { iterations, threads } = ops[23] else { panic!("step 24 is {:?}", ops[23]) };
    assert_eq!(*iterations, 100);
    assert_eq!(threads.len(), 2);
    assert_eq!(threads[0].len(), 2);
    assert_eq!(threads[1].len(), 1);
    let inner_lines = lines_starting_with(FULL, "[ { op");
    let second_line = lines_starting_with(FULL, "{ op = \"unmap\"");
    assert_eq!(threads[0][0].line, inner_lines[0]);
    assert_eq!(threads[0][1].line, second_line[0]);
    assert_eq!(threads[1][0].line, inner_lines[1]);
    assert_eq!((threads[0][1].index, threads[1][0].index), (1, 0));
    assert_eq!(threads[0][0].expect, Outcome::Any, "inner steps default to any");
    assert_eq!(threads[0][1].expect, Outcome::Ok);
    assert_eq!(
        threads[0][0].op,
        Op::Map {
            device: "ane".into(),
            iova: Address::Int(0x40000),
            target: Target::Frame(frame("buf", 1)),
            perm: Perm::RW,
            subpage: None
        }
    );
    assert_eq!(threads[1][0].op, Op::Retype { target: Target::Frame(frame("buf", 1)), ty: FrameType::UserData });
    assert_eq!(s.steps[23].expect, Outcome::Ok);
    assert_eq!(*ops[24], Op::MmioRead { dart: "disp".into(), offset: 0x1000, value: None, mask: None });
    assert_eq!(*ops[25], Op::Watch { device: "ane".into(), iova: Address::Int(0x4000), len: 0x40, enable: false });
    assert_eq!(s.steps[24].expect, Outcome::Any);
    assert_eq!(
        *ops[26],
        Op::Hold { device: "ane".into(), iova: Address::Int(0x4000), len: 0x40, perm: Perm::R },
        "perm defaults to r"
    );
    assert_eq!(*ops[27], Op::Hold { device: "ane".into(), iova: Address::Pa(frame("buf", 0)), len: 1, perm: Perm::RW });
    assert_eq!(
        *ops[28],
        Op::Check(Check::Holds { target: Target::Frame(frame("buf", 0)), cmp: CounterCmp::Equals(1) })
    );
    assert_eq!(*ops[29], Op::Release { device: "ane".into() });
    assert_eq!(*ops[30], Op::Check(Check::Holds { target: Target::Buffer("buf".into()), cmp: CounterCmp::AtLeast(0) }));
    assert_eq!(
        *ops[31],
        Op::PteWrite {
            dart: "dart0".into(),
            table: Target::Frame(frame("root", 0)),
            index: 3,
            value: PteValue::Table(Target::Frame(frame("leaf", 0)))
        }
    );
    assert_eq!(
        *ops[32],
        Op::PteRead {
            dart: "dart0".into(),
            table: Target::Ttbr("ane".into()),
            index: 0x7ff,
            value: Some(PteValue::Leaf { frame: Target::Frame(frame("buf", 2)), perm: Perm::RW, nocache: false }),
            mask: Some(u64::MAX),
        }
    );
    assert_eq!(*ops[33], Op::ReleaseTable { dart: "disp".into(), table: Target::Frame(frame("leaf", 0)) });
    assert_eq!(s.steps[33].expect, Outcome::TableInUse);
    assert_eq!(ops.len(), 34);
}

#[test]
fn defaults_apply_when_sections_are_absent() {
    let s = parse("name = \"minimal\"\n").unwrap();
    assert_eq!(s.description, None);
    assert_eq!(s.soc, SocConfig::default());
    assert_eq!(s.soc.memory_mib, 64);
    assert_eq!(s.soc.page_size, FrameSize::K16);
    assert_eq!(s.soc.on_violation, OnViolation::Panic);
    assert_eq!(s.darts, vec![DartConfig::default_dart()]);
    let d = &s.darts[0];
    assert_eq!(
        (d.name.as_str(), d.variant, d.streams, d.invalidation, d.iotlb_entries),
        ("dart0", DartVariant::T8110, 16, Invalidation::Strict, 256)
    );
    assert_eq!(
        s.coprocessors,
        vec![CoprocessorConfig {
            name: "dev0".into(),
            dart: "dart0".into(),
            stream: 1,
            trusted: false,
            window: 0..0x1_0000_0000,
            line: 0,
        }]
    );
    assert!(s.steps.is_empty());

    // Partial sections keep the other defaults; a lone DART named otherwise
    // gets the default coprocessor.
    let s = parse("name = \"x\"\n[soc]\npage_size = 4096\n[[dart]]\nname = \"d\"\nvariant = \"t6000\"\n").unwrap();
    assert_eq!(s.soc.memory_mib, 64);
    assert_eq!(s.soc.page_size, FrameSize::K4);
    assert_eq!(s.darts[0].streams, 16);
    assert_eq!(s.darts[0].line, 4);
    assert_eq!(s.coprocessors[0].dart, "d");
    assert_eq!(s.coprocessors[0].stream, 1);

    // Step defaults.
    let s = parse(
        "name = \"x\"\n[[step]]\nop = \"alloc\"\nname = \"b\"\ntype = \"user-data\"\n\
         [[step]]\nop = \"race\"\nthreads = [[{ op = \"free\", target = \"b\" }]]\n\
         [[step]]\nop = \"rpc\"\ndevice = \"dev0\"\ncall = \"map\"\nhandle = \"h\"\nlen = 1\niova = 0\nperm = \"r\"\n",
    )
    .unwrap();
    assert_eq!(s.steps[0].op, Op::Alloc { name: "b".into(), ty: FrameType::UserData, frames: 1, align: 1 });
    assert_eq!(s.steps[0].expect, Outcome::Ok);
    assert_eq!(s.steps[1].line, 6);
    let Op::Race { iterations, threads } = &s.steps[1].op else { panic!() };
    assert_eq!(*iterations, 1);
    assert_eq!(threads[0][0].expect, Outcome::Any);
    assert_eq!(threads[0][0].line, 8);
    let Op::Rpc { call: RpcCall::Map { offset, .. }, .. } = &s.steps[2].op else { panic!() };
    assert_eq!(*offset, 0);
}

#[test]
fn outcome_names_round_trip() {
    for o in Outcome::ALL {
        assert_eq!(o.name().parse::<Outcome>(), Ok(o));
        assert_eq!(o.to_string(), o.name());
    }
    assert!(Outcome::Any.accepts(Outcome::Panic));
    assert!(!Outcome::Ok.accepts(Outcome::Panic));
    assert!(Outcome::Fault(FaultKind::Read).is_error());
    for k in FaultKind::ALL {
        assert_eq!(Outcome::Fault(k).name(), format!("fault:{}", k.code()));
    }
    for v in DartVariant::ALL {
        assert_eq!(v.name().parse::<DartVariant>(), Ok(v));
    }
    for i in Invariant::ALL {
        assert_eq!(i.name().parse::<Invariant>(), Ok(i));
    }
    assert_eq!(Target::Frame(frame("a", 2)).to_string(), "a[2]");
    assert_eq!(Target::Ttbr("ane".into()).to_string(), "ttbr:ane");
    assert_eq!(CounterRef { dart: "d".into(), stream: Some(3), name: "maps".into() }.to_string(), "d.s3.maps");
}

#[test]
fn string_syntaxes() {
    use super::parse::tests_support::*;
    assert_eq!(hex("0xdeadbeef"), Ok(vec![0xde, 0xad, 0xbe, 0xef]));
    assert_eq!(hex("0x"), Ok(vec![]));
    assert_eq!(hex("0xDE_AD"), Ok(vec![0xde, 0xad]));
    assert!(hex("0xabc").unwrap_err().contains("odd number of hex digits (3)"));
    assert!(hex("0xzz").unwrap_err().contains("`z` is not a hex digit"));
    assert!(hex("dead").unwrap_err().contains("must start with `0x`"));
    assert_eq!(target("a-b_c"), Ok(Target::Buffer("a-b_c".into())));
    assert_eq!(target("a[0x10]"), Ok(Target::Frame(frame("a", 16))));
    assert_eq!(target("ttbr:ane"), Ok(Target::Ttbr("ane".into())));
    for bad in ["", "a[", "a[]", "a[-1]", "[1]", "a b", "pa:a[1]", "ttbr:", "a[1]x", "a[99999999999999999999]"] {
        assert!(target(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(address("0x10"), Ok(Address::Int(16)));
    assert_eq!(address("pa:b[2]"), Ok(Address::Pa(frame("b", 2))));
    assert!(address("pa:b").unwrap_err().contains("a frame index `[i]` is needed"));
    assert!(address("0x1_0000_0000_0000_0000").unwrap_err().contains("out of range"));
    assert_eq!(mmio_value("ttbr:t[1]"), Ok(MmioValue::Ttbr(frame("t", 1))));
    assert_eq!(mmio_value("ttbr:dcp"), Ok(MmioValue::DeviceTtbr("dcp".into())));
    assert_eq!(MmioValue::DeviceTtbr("dcp".into()).to_string(), "ttbr:dcp");
    assert_eq!(mmio_value("pa:t[0]"), Ok(MmioValue::Pa(frame("t", 0))));
    for bad in ["ttbr:", "ttbr:a b", "ttbr:t[", "pa:t", "x:y", "0xzz"] {
        assert!(mmio_value(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(pte_value("0x8000_0000_0000_0001"), Ok(PteValue::Int(0x8000_0000_0000_0001)));
    assert_eq!(pte_value("17"), Ok(PteValue::Int(17)));
    let leaf = |frame: Target, perm: Perm, nocache: bool| Ok(PteValue::Leaf { frame, perm, nocache });
    assert_eq!(pte_value("leaf:buf[3]:r"), leaf(Target::Frame(frame("buf", 3)), Perm::R, false));
    assert_eq!(pte_value("leaf:b[0]:w"), leaf(Target::Frame(frame("b", 0)), Perm::W, false));
    assert_eq!(pte_value("leaf:b[0x1]:rw:nocache"), leaf(Target::Frame(frame("b", 1)), Perm::RW, true));
    assert_eq!(pte_value("leaf:ttbr:ane:r"), leaf(Target::Ttbr("ane".into()), Perm::R, false));
    assert_eq!(pte_value("leaf:ttbr:ane:rw:nocache"), leaf(Target::Ttbr("ane".into()), Perm::RW, true));
    assert_eq!(pte_value("table:l1[0]"), Ok(PteValue::Table(Target::Frame(frame("l1", 0)))));
    assert_eq!(pte_value("table:ttbr:dcp"), Ok(PteValue::Table(Target::Ttbr("dcp".into()))));
    for v in ["0x3", "leaf:b[0]:rw", "leaf:b[2]:w:nocache", "leaf:ttbr:d:r", "table:t[1]", "table:ttbr:d"] {
        let parsed = pte_value(v).unwrap();
        assert_eq!(pte_value(&parsed.to_string()), Ok(parsed), "{v} does not round-trip");
    }
    for bad in [
        "leaf:b[0]",
        "leaf:b:rw",
        "leaf:b[0]:x",
        "leaf:b[0]:none",
        "leaf:b[0]:rw:cache",
        "leaf:b[0]:rw:nocache:x",
        "leaf::rw",
        "leaf:ttbr:d",
        "leaf:ttbr::r",
        "leaf:ttbr:d[0]:r",
        "table:t",
        "table:ttbr:",
        "table:b",
        "table:",
        "pa:b[0]",
        "ttbr:b[0]",
        "0x1_0000_0000_0000_0000",
        "",
    ] {
        assert!(pte_value(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(counter("d.maps").unwrap(), CounterRef { dart: "d".into(), stream: None, name: "maps".into() });
    assert_eq!(
        counter("d.rpc_refused.not-granted").unwrap(),
        CounterRef { dart: "d".into(), stream: None, name: "rpc_refused.not-granted".into() }
    );
    for bad in ["maps", "d.", "d.s1", "d.s1.nope", "d.maps.x", "d.faults.nope", "d.s99999999999.maps", ".maps"] {
        assert!(counter(bad).is_err(), "{bad:?} accepted");
    }
}

/// Wraps a step body (without its `[[step]]` header) after `name` at line 1
/// and the header at line 2: the body's first line is line 3.
fn step(body: &str) -> String {
    format!("name = \"x\"\n[[step]]\n{body}")
}

#[test]
fn errors_name_the_line_and_the_problem() {
    // 1. TOML syntax errors.
    assert_err("name = \"x\"\n\n[[step]]\nop = \"map\nfoo = 1\n", 4, "TOML syntax error");
    assert_err("name = \"x\"\nthreads = [1,\n", 2, "TOML syntax error");
    assert_err("name = \"x\"\nname = \"y\"\n", 2, "duplicate key");
    // 2. Unknown keys, at the line of the key.
    assert_err("name = \"x\"\n\nnmae = 1\n", 3, "unknown key `nmae` in the top-level table");
    assert_err("name = \"x\"\n[soc]\nmemory = 1\n", 3, "unknown key `memory` in [soc]");
    assert_err("name = \"x\"\n[[dart]]\nname = \"d\"\nsid = 1\n", 4, "unknown key `sid` in [[dart]] #1");
    assert_err(
        "name = \"x\"\n[[coprocessor]]\nname = \"c\"\ndart = \"dart0\"\nstream = 2\nwindows = [0, 1]\n",
        6,
        "unknown key `windows` in [[coprocessor]] #1",
    );
    assert_err(
        "name = \"x\"\n[[step]]\nop = \"alloc\"\nname = \"a\"\ntype = \"user-data\"\n[[step]]\nop = \"alloc\"\n\
         name = \"b\"\ntype = \"user-data\"\n[[step]]\nop = \"map\"\ndevice = \"dev0\"\niovaa = 0x1000\n",
        13,
        "unknown key `iovaa` in step 3 (op = \"map\")",
    );
    assert_err(
        &step("op = \"race\"\nthreads = [\n  [ { op = \"free\", target = \"a\" },\n    { op = \"free\", tagret = \"a\" } ],\n]\n"),
        6,
        "unknown key `tagret` in step 1 thread 1 step 2 (op = \"free\")",
    );
    assert_err(
        &step("op = \"rpc\"\ndevice = \"dev0\"\ncall = \"unmap\"\niova = 0\nlen = 1\nperm = \"r\"\n"),
        8,
        "unknown key `perm` in step 1 (op = \"rpc\", call = \"unmap\")",
    );
    assert_err(&step("op = \"map\"\n[step.extra]\nx = 1\n"), 4, "unknown key `extra` in step 1 (op = \"map\")");
    // 3. Missing fields, at the step's line.
    assert_err(
        "name = \"x\"\n[[step]]\nop = \"free\"\ntarget = \"a\"\n\n[[step]]\nop = \"map\"\niova = 0\n",
        6,
        "step 2 (op = \"map\") is missing `device`",
    );
    assert_err(&step("target = \"a\"\n"), 2, "step 1 is missing `op`");
    assert_err("description = \"no name\"\n", 1, "the top-level table is missing `name`");
    assert_err("name = \"x\"\n\n[[dart]]\nvariant = \"t8020\"\n", 3, "[[dart]] #1 is missing `name`");
    assert_err(
        &step("op = \"race\"\nthreads = [[\n  { op = \"map\", device = \"d\" },\n]]\n"),
        5,
        "step 1 thread 1 step 1 (op = \"map\") is missing `iova`",
    );
    assert_err(&step("op = \"cpu-read\"\ntarget = \"a\"\n"), 2, "step 1 (op = \"cpu-read\") is missing `len`");
    // 4. Bad op, expect kind, frame type, perm, space, variant.
    assert_err(&step("op = \"mapp\"\n"), 3, "unknown op `mapp`");
    assert_err(
        &step("op = \"free\"\ntarget = \"a\"\nexpect = \"fault:nope\"\n"),
        5,
        "unknown expect kind `fault:nope`",
    );
    assert_err(
        &step("op = \"alloc\"\nname = \"a\"\ntype = \"kernal-restricted\"\n"),
        5,
        "unknown frame type `kernal-restricted`",
    );
    assert_err(
        &step("op = \"map\"\ndevice = \"d\"\niova = 0\ntarget = \"a\"\nperm = \"x\"\n"),
        7,
        "unknown permission `x`",
    );
    assert_err(&step("op = \"cpu-map\"\ntarget = \"a\"\nspace = \"user\"\nperm = \"w\"\n"), 6, "take r or rw");
    assert_err(&step("op = \"cpu-map\"\ntarget = \"a\"\nspace = \"usr\"\nperm = \"r\"\n"), 5, "unknown space `usr`");
    assert_err("name = \"x\"\n[[dart]]\nname = \"d\"\nvariant = \"t9000\"\n", 4, "unknown DART variant `t9000`");
    assert_err(&step("op = \"rpc\"\ndevice = \"d\"\ncall = \"mapp\"\n"), 5, "unknown rpc call `mapp`");
    assert_err(&step("op = \"check\"\ninvariant = \"everything\"\n"), 4, "unknown invariant `everything`");
    assert_err(&step("op = \"check\"\ncounter = \"dart0.mpas\"\nequals = 1\n"), 4, "unknown counter `mpas`");
    assert_err(&step("op = \"check\"\ncounter = \"dart0.maps\"\n"), 2, "needs `equals` or `at_least`");
    assert_err(&step("op = \"check\"\n"), 2, "needs `invariant`, `counter` or `holds`");
    assert_err(&step("op = \"check\"\nholds = \"a[0]\"\n"), 2, "needs `equals` or `at_least`");
    assert_err(
        &step("op = \"check\"\ninvariant = \"all\"\nholds = \"a\"\n"),
        5,
        "cannot be combined with `invariant`: a check step checks one thing",
    );
    assert_err(&step("op = \"check\"\ninvariant = \"all\"\nequals = 1\n"), 5, "only goes with `counter` or `holds`");
    assert_err(&step("op = \"check\"\nholds = \"a[x]\"\nequals = 1\n"), 4, "bad target");
    assert_err(&step("op = \"hold\"\ndevice = \"d\"\niova = 0\nlen = 1\nperm = \"x\"\n"), 7, "unknown permission `x`");
    assert_err(&step("op = \"hold\"\ndevice = \"d\"\niova = 0\n"), 2, "`len`");
    assert_err(&step("op = \"release\"\n"), 2, "`device`");
    assert_err(
        &step("op = \"alloc\"\nname = \"t\"\ntype = \"dart-table\"\nalign = 3\n"),
        6,
        "`align` in step 1 (op = \"alloc\") must be a power of two (frames), got 3",
    );
    assert_err(&step("op = \"alloc\"\nname = \"t\"\ntype = \"dart-table\"\nalign = 0\n"), 6, "got 0");
    // 5. Bad hex data.
    assert_err(&step("op = \"cpu-write\"\ntarget = \"a[0]\"\ndata = \"0xabc\"\n"), 5, "odd number of hex digits");
    assert_err(&step("op = \"cpu-write\"\ntarget = \"a[0]\"\ndata = \"0xzz\"\n"), 5, "`z` is not a hex digit");
    assert_err(&step("op = \"rpc\"\ndevice = \"d\"\ncall = \"raw\"\nbytes = \"ff\"\n"), 6, "must start with `0x`");
    assert_err(
        &step("op = \"dma-read\"\ndevice = \"d\"\niova = 0\nlen = 8\ndata = \"0x00\"\n"),
        6,
        "`len` in step 1 (op = \"dma-read\") is 8, but `data` has 1 byte(s)",
    );
    // 6. Bad targets, addresses and values.
    assert_err(&step("op = \"free\"\ntarget = \"secret[x]\"\n"), 4, "bad target `secret[x]`");
    assert_err(&step("op = \"free\"\ntarget = \"pa:secret[0]\"\n"), 4, "unknown prefix `pa:`");
    assert_err(
        &step("op = \"mmio-write\"\ndart = \"dart0\"\noffset = 0\nvalue = \"ttbr:t[\"\n"),
        6,
        "bad value `ttbr:t[`: missing `]` at the end",
    );
    assert_err(
        &step("op = \"mmio-write\"\ndart = \"dart0\"\noffset = 0\nvalue = \"ttbr:\"\n"),
        6,
        "bad value `ttbr:`: the name is empty",
    );
    assert_err(&step("op = \"unmap\"\ndevice = \"d\"\niova = \"pa:\"\nlen = 1\n"), 5, "bad address `pa:`");
    // 6b. The monitor's steps: every key and value form.
    let pte = |body: &str| step(&format!("op = \"pte-write\"\ndart = \"dart0\"\n{body}"));
    assert_err(
        &pte("table = \"t[0]\"\nindex = 0\nvalue = \"pa:b[0]\"\n"),
        7,
        "`value` in step 1 (op = \"pte-write\"): bad value `pa:b[0]`: expected an integer, \"leaf:NAME[i]:PERM\"",
    );
    assert_err(&pte("table = \"t[0]\"\nindex = 0\nvalue = \"leaf:b[0]:x\"\n"), 7, "unknown permission `x`");
    assert_err(&pte("table = \"t[0]\"\nindex = 0\nvalue = \"leaf:b[0]\"\n"), 7, "a leaf needs a permission");
    assert_err(
        &pte("table = \"t[0]\"\nindex = 0\nvalue = \"leaf:b[0]:rw:cache\"\n"),
        7,
        "unknown leaf flag `cache` (expected nocache)",
    );
    assert_err(&pte("table = \"t[0]\"\nindex = 0\nvalue = \"table:t\"\n"), 7, "a frame index `[i]` is needed");
    assert_err(&pte("table = \"t[0]\"\nindex = 0\nvalue = 1.5\n"), 7, "must be an integer or a string");
    assert_err(&pte("table = \"t[0]\"\nindex = 0\nvalue = -1\n"), 7, "must not be negative");
    assert_err(&pte("index = 0\nvalue = 0\n"), 2, "step 1 (op = \"pte-write\") is missing `table`");
    assert_err(&pte("table = \"t[0]\"\nvalue = 0\n"), 2, "is missing `index`");
    assert_err(&pte("table = \"t[0]\"\nindex = 0\n"), 2, "is missing `value`");
    assert_err(&step("op = \"pte-write\"\ntable = \"t[0]\"\nindex = 0\nvalue = 0\n"), 2, "is missing `dart`");
    assert_err(
        &pte("table = \"t[0]\"\nindex = \"3\"\nvalue = 0\n"),
        6,
        "`index` in step 1 (op = \"pte-write\") must be a non-negative integer, got the string \"3\"",
    );
    assert_err(&pte("table = \"t[0]\"\nindex = -1\nvalue = 0\n"), 6, "must not be negative");
    assert_err(
        &pte("table = \"t\"\nindex = 0\nvalue = 0\n"),
        5,
        "`table` in step 1 (op = \"pte-write\"): bad table `t`: a frame index `[i]` is needed; expected NAME[i] or \
         ttbr:DEVICE",
    );
    assert_err(&pte("table = \"pa:t[0]\"\nindex = 0\nvalue = 0\n"), 5, "bad table `pa:t[0]`");
    assert_err(&pte("table = \"ttbr:\"\nindex = 0\nvalue = 0\n"), 5, "bad table `ttbr:`: the name is empty");
    assert_err(&pte("table = \"t[0]\"\nindex = 0\nvalue = 0\nmask = 1\n"), 8, "unknown key `mask`");
    assert_err(&pte("table = \"t[0]\"\nindex = 0\nvalue = 0\ndevice = \"d\"\n"), 8, "unknown key `device`");
    assert_err(
        &step("op = \"pte-read\"\ndart = \"dart0\"\ntable = \"t[0]\"\nindex = 0\nmask = 1\n"),
        7,
        "`mask` in step 1 (op = \"pte-read\") needs an expected `value` to compare",
    );
    assert_err(
        &step("op = \"pte-read\"\ndart = \"dart0\"\ntable = \"t[0]\"\nindex = 0\nvalue = 1\nmask = \"0xzz\"\n"),
        8,
        "bad mask `0xzz`",
    );
    assert_err(
        &step("op = \"pte-read\"\ndart = \"dart0\"\ntable = \"t[0]\"\nindex = 0\nvalue = \"leaf:b[0]:rwx\"\n"),
        7,
        "unknown permission `rwx`",
    );
    assert_err(&step("op = \"release-table\"\ndart = \"dart0\"\n"), 2, "is missing `table`");
    assert_err(
        &step("op = \"release-table\"\ndart = \"dart0\"\ntable = \"t[0]\"\nindex = 0\n"),
        6,
        "unknown key `index` in step 1 (op = \"release-table\")",
    );
    // 7. Negative and out-of-range integers.
    assert_err(
        &step("op = \"map\"\ndevice = \"d\"\niova = -16384\ntarget = \"a\"\nperm = \"r\"\n"),
        5,
        "`iova` in step 1 (op = \"map\") must not be negative, got -16384",
    );
    assert_err(
        &step("op = \"unmap\"\ndevice = \"d\"\niova = 0\nlen = -1\n"),
        6,
        "`len` in step 1 (op = \"unmap\") must not be negative",
    );
    assert_err(
        &step("op = \"flush\"\ndart = \"d\"\nstream = 0x1_0000_0000\n"),
        5,
        "`stream` in step 1 (op = \"flush\") is out of range",
    );
    assert_err(
        &step("op = \"unmap\"\ndevice = \"d\"\niova = \"0x1_0000_0000_0000_0000\"\nlen = 1\n"),
        5,
        "`iova` in step 1 (op = \"unmap\"): `0x1_0000_0000_0000_0000` is out of range",
    );
    assert_err("name = \"x\"\nbig = 0x1_0000_0000_0000_0000\n", 2, "`big`: integer out of range");
    assert_err(
        "name = \"x\"\n[[coprocessor]]\nname = \"a\"\nwindow = [0, 0x8000_0000_0000_0000]\n",
        4,
        "`window`: integer out of range",
    );
    assert_err(
        &step("op = \"race\"\niterations = 0\nthreads = [[{ op = \"free\", target = \"a\" }]]\n"),
        4,
        "must be at least 1",
    );
    // 8. Wrong value types.
    assert_err(
        &step("op = \"alloc\"\nname = \"a\"\ntype = \"user-data\"\nframes = \"2\"\n"),
        6,
        "`frames` in step 1 (op = \"alloc\") must be a non-negative integer, got the string \"2\"",
    );
    assert_err(&step("op = \"bypass\"\ndevice = \"d\"\nenable = \"yes\"\n"), 5, "must be a boolean");
    assert_err(
        &step("op = \"free\"\ntarget = 3\n"),
        4,
        "`target` in step 1 (op = \"free\") must be a string, got the integer 3",
    );
    assert_err(&step("op = \"unmap\"\ndevice = \"d\"\niova = 1.5\nlen = 1\n"), 5, "got the float 1.5");
    assert_err("name = 1\n", 1, "`name` in the top-level table must be a string");
    assert_err("name = \"x\"\nsoc = 1\n", 2, "`soc` in the top-level table must be a table");
    assert_err("name = \"x\"\n[step]\nop = \"free\"\n", 2, "must be an array of tables (write [[step]] sections)");
    assert_err("name = \"x\"\nstep = [1]\n", 2, "step 1 must be a table, got the integer 1");
    assert_err(
        &step("op = \"race\"\nthreads = [{ op = \"free\" }]\n"),
        4,
        "thread 1 of step 1 (op = \"race\") must be an array of step tables",
    );
    assert_err(&step("op = \"race\"\nthreads = []\n"), 4, "must list at least one thread");
    assert_err(
        &step("op = \"race\"\nthreads = [[{ op = \"race\", threads = [] }]]\n"),
        4,
        "race steps cannot be nested",
    );
    assert_err("name = \"x\"\nwhen = 1979-05-27\n", 2, "dates and times are not supported");
    assert_err(
        &step("op = \"map\"\ndevice = \"d\"\niova = 0\ntarget = \"a\"\nperm = \"r\"\nsubpage = [1, 2, 3]\n"),
        8,
        "got 3 items",
    );
    assert_err(
        &step("op = \"free\"\ntarget = \"a\"\nexpect = 0\n"),
        5,
        "`expect` in step 1 (op = \"free\") must be a string",
    );
    // 9. SoC, DART and coprocessor checks.
    assert_err("name = \"x\"\n[soc]\npage_size = 8192\n", 3, "`page_size` in [soc] must be 16384 or 4096, got 8192");
    assert_err("name = \"x\"\n[soc]\nmemory_mib = 0\n", 3, "`memory_mib` in [soc] must be at least 1, got 0");
    assert_err("name = \"x\"\n[soc]\non_violation = \"ignore\"\n", 3, "unknown on_violation mode `ignore`");
    assert_err(
        "name = \"x\"\n[[dart]]\nname = \"d\"\nstreams = 300\n",
        4,
        "`streams` in dart `d`: 300 streams is above the limit of 256",
    );
    assert_err("name = \"x\"\n[[dart]]\nname = \"d\"\nstreams = 0\n", 4, "must be between 1 and 256");
    assert_err(
        "name = \"x\"\n[[dart]]\nname = \"d\"\nvariant = \"t8020\"\nstreams = 17\n",
        5,
        "17 streams is above the limit of 16",
    );
    assert_err(
        "name = \"x\"\n[[dart]]\nname = \"d\"\niotlb_entries = 0\n",
        4,
        "`iotlb_entries` in dart `d` must be at least 1, got 0",
    );
    assert_err(
        "name = \"x\"\n[[coprocessor]]\nname = \"ane\"\ndart = \"dart9\"\nstream = 1\n",
        4,
        "`dart` in coprocessor `ane`: unknown dart `dart9` (defined: dart0)",
    );
    assert_err(
        "name = \"x\"\n[[dart]]\nname = \"d\"\n\n[[dart]]\nname = \"d\"\n",
        6,
        "duplicate dart name `d` (first defined on line 2)",
    );
    assert_err(
        "name = \"x\"\n[[coprocessor]]\nname = \"c\"\ndart = \"dart0\"\nstream = 1\n[[coprocessor]]\nname = \"c\"\ndart = \"dart0\"\nstream = 2\n",
        7,
        "duplicate coprocessor name `c` (first defined on line 2)",
    );
    assert_err(
        "name = \"x\"\n[[coprocessor]]\nname = \"ane\"\ndart = \"dart0\"\nstream = 16\n",
        5,
        "`stream` in coprocessor `ane` is 16, but dart `dart0` has 16 streams (0 to 15)",
    );
    assert_err(
        "name = \"x\"\n[[coprocessor]]\nname = \"a\"\ndart = \"dart0\"\nstream = 3\n[[coprocessor]]\nname = \"b\"\ndart = \"dart0\"\nstream = 3\n",
        9,
        "stream 3 of dart `dart0` is already used by coprocessor `a`",
    );
    assert_err(
        "name = \"x\"\n[[coprocessor]]\nname = \"ane\"\ndart = \"dart0\"\nstream = 1\nwindow = [0x2000, 0x1000]\n",
        6,
        "`window` in coprocessor `ane` must have start < end, got [0x2000, 0x1000]",
    );
    assert_err(
        "name = \"x\"\n[[coprocessor]]\nname = \"ane\"\ndart = \"dart0\"\nstream = 1\nwindow = [0, -1]\n",
        6,
        "must not be negative",
    );
    assert_err(
        "name = \"x\"\n[[dart]]\nname = \"d\"\nstreams = 1\n",
        2,
        "the default coprocessor `dev0` needs stream 1",
    );
    assert_err("name = \"x\"\n[[dart]]\nname = \"d.e\"\n", 3, "`d.e` is not a valid name");
    assert_err("name = \"  \"\n", 1, "must not be empty");
}

#[test]
fn load_reports_io_and_utf8_errors() {
    let dir = std::env::temp_dir().join(format!("scenario-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.toml");
    let e = load_scenario(&missing).unwrap_err();
    assert_eq!(e.line, 0);
    assert_eq!(e.file, missing);
    assert!(e.reason.contains("cannot read"), "{e}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, b"name = \"x\"\n# \xff\n").unwrap();
    let e = load_scenario(&bad).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("UTF-8"), "{e}");

    let good = dir.join("good.toml");
    std::fs::write(&good, FULL).unwrap();
    let s = load_scenario(&good).unwrap();
    assert_eq!(s.file, good);
    assert_eq!(s.steps.len(), 34);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One random edit of a text.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippets = prop::sample::select(vec![
        "\"",
        "[",
        "]",
        "{",
        "}",
        "=",
        ",",
        "\n",
        "[[step]]\n",
        "-",
        "0x",
        "op = \"race\"\n",
        "threads = [[",
        "expect = \"",
        "999999999999999999999",
        "-1",
        "pa:",
        "ttbr:",
        "leaf:",
        "table:",
        ":rw",
        "[0]",
        "'",
        "#",
        ".",
        "\\",
        "é",
        "1979-05-27",
        "inf",
        "nan",
        "true",
    ]);
    prop_oneof![
        (any::<usize>(), 0..40usize).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), snippets.clone()).prop_map(|(a, s)| Mutation::Insert(a, s.to_owned())),
        (any::<usize>(), "[ -~\n]{0,12}").prop_map(|(a, s)| Mutation::Insert(a, s)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Replace(a, b)),
        (any::<usize>(), 0..200usize).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let at = |a: usize, len: usize| if len == 0 { 0 } else { a % (len + 1) };
    match m {
        Mutation::Delete(a, n) => {
            let start = at(*a, bytes.len());
            let end = (start + n).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::Insert(a, s) => {
            let start = at(*a, bytes.len());
            bytes.splice(start..start, s.bytes());
        }
        Mutation::Replace(a, b) => {
            if !bytes.is_empty() {
                let i = a % bytes.len();
                bytes[i] = *b;
            }
        }
        Mutation::Duplicate(a, n) => {
            let start = at(*a, bytes.len());
            let end = (start + n).min(bytes.len());
            let copy = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Errors carry a line inside the text (or 0).
fn check_line(text: &str, result: Result<Scenario, ScenarioError>) {
    if let Err(e) = result {
        assert!(e.line <= text.lines().count().max(1), "line {} beyond the text: {e}", e.line);
        assert!(!e.reason.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        check_line(&text, parse(&text));
    }

    #[test]
    fn mutated_scenarios_never_panic(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut text = FULL.to_owned();
        for m in &mutations {
            text = apply(&text, m);
        }
        check_line(&text, parse(&text));
    }

    #[test]
    fn random_field_values_never_panic(
        key in prop::sample::select(vec![
            "iova", "target", "perm", "len", "data", "expect", "subpage", "device", "stream", "value", "offset",
            "mask",
        ]),
        value in prop_oneof![
            "\"[ -~]{0,16}\"",
            any::<i64>().prop_map(|v| v.to_string()),
            Just("[1, 2]".to_owned()),
            Just("{ a = 1 }".to_owned()),
            Just("true".to_owned()),
            Just("-0.5".to_owned()),
        ],
    ) {
        let text = format!("name = \"x\"\n[[step]]\nop = \"map\"\ndevice = \"d\"\niova = 0\ntarget = \"a\"\nperm = \"r\"\n\
            [[step]]\nop = \"dma-read\"\n{key} = {value}\n");
        check_line(&text, parse(&text));
        let text = format!("name = \"x\"\n[[step]]\nop = \"pte-read\"\ndart = \"d\"\ntable = \"t[0]\"\nindex = 1\n{key} = {value}\n");
        check_line(&text, parse(&text));
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let n = 100_000;
    let texts = [
        format!("name = \"x\"\na = {}1{}\n", "[".repeat(n), "]".repeat(n)),
        format!("name = \"x\"\na = {}1{}\n", "{b = ".repeat(n), "}".repeat(n)),
        format!("name = \"x\"\n[{}]\n", vec!["a"; n].join(".")),
        format!("name = \"x\"\n{} = 1\n", vec!["a"; n].join(".")),
    ];
    for text in texts {
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("recursion limit"), "{e}");
    }
}
