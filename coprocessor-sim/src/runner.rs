//! The scenario runner (SPEC §6): builds the SoC a scenario describes, runs
//! its steps, compares every outcome with its `expect`, and reports.
//!
//! Names in steps (buffers, devices, handles, DARTs) are resolved here; an
//! unknown name is that step's failure (`no-such-device`, or `bad-range` for
//! an unknown buffer), never a Rust panic. `race` steps run their threads on
//! real OS threads, `iterations` times, and check every invariant after.
//!
//! RPC steps go through the coprocessor's shared-memory ring: on its first
//! `rpc` step a device gets a `kernel-shared` ring frame, mapped read-write
//! at the last page of its stream's IOVA space; the device writes the message
//! into a slot with DMA and bumps the ring head; the service copies the slot
//! out once, decodes, validates and answers.

use crate::coprocessor::{Command, Reply};
use crate::rpc::wire::{self, Request};
use crate::scenario::{
    Address, Check, FrameRef, Invariant, MmioValue, Op, Outcome, RpcCall, Scenario, Space, Step, Target,
};
use crate::service::RpcError;
use crate::soc::Soc;
use dart::stats::{Counter as DartCounter, StatsSnapshot};
use dart::trace_event::{CounterSample, RunSlice};
use dart::{DartError, Event, EventLog};
use frame_table::{Access, Counter, Frame, FrameType, Perm};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What happened in one step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepResult {
    /// 1-based step number (race inner steps: the race's number).
    pub step: usize,
    /// Line in the file.
    pub line: usize,
    /// The op.
    pub op: &'static str,
    /// What the file expected.
    pub expect: String,
    /// What happened (`ok` or an outcome kind).
    pub actual: String,
    /// Whether the expectation held.
    pub passed: bool,
    /// Details (the error message, the data difference, …).
    pub detail: String,
}

/// The result of one scenario.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScenarioResult {
    /// The file.
    pub file: PathBuf,
    /// The scenario's name.
    pub name: String,
    /// Every step.
    pub steps: Vec<StepResult>,
    /// A failure before the steps could run (the SoC could not be built).
    pub setup_error: Option<String>,
}

impl ScenarioResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.setup_error.is_none() && self.steps.iter().all(|s| s.passed)
    }
}

/// Which SoC a scenario without its own `[[dart]]`/`[[coprocessor]]` gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Base {
    /// SPEC §6 defaults: `dart0` (t8110) with `dev0` on stream 1.
    #[default]
    Spec,
    /// The main job's default SoC ([`Soc::default_soc`]).
    DefaultSoc,
}

/// A step's failure: its outcome kind and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fail(String, String);

/// An outcome: `Ok(())` or the failure.
type Outcomes = Result<(), Fail>;

fn fail(kind: &str, detail: impl Into<String>) -> Fail {
    Fail(kind.to_owned(), detail.into())
}

impl From<DartError> for Fail {
    fn from(e: DartError) -> Self {
        fail(e.kind(), e.to_string())
    }
}

fn frame_err(e: frame_table::Error) -> Fail {
    fail(e.kind(), e.to_string())
}

fn rpc_err(e: RpcError) -> Fail {
    fail(e.kind(), e.to_string())
}

/// Runs a scenario.
pub fn run_scenario(scenario: &Scenario, base: Base) -> ScenarioResult {
    run_scenario_recorded(scenario, base, None).result
}

/// One DART's counters at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DartCounters {
    /// The DART's name.
    pub name: String,
    /// Its variant (`t8110`, …).
    pub variant: String,
    /// Its counters, DART-wide and per stream.
    pub counters: StatsSnapshot,
}

/// A scenario run with what it recorded besides the verdicts.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// The verdicts.
    pub result: ScenarioResult,
    /// Every DART's counters after the last step.
    pub darts: Vec<DartCounters>,
    /// Invariant breaches the frame table saw.
    pub violations: u64,
    /// The run's events, in order (empty without a log).
    pub events: Vec<Event>,
    /// Every DART's basic counters after each step (empty without a log).
    pub samples: Vec<CounterSample>,
    /// One slice per step, named `step N: OP` (empty without a log).
    pub steps: Vec<RunSlice>,
}

/// Runs a scenario; with `log`, records its events into it (the caller
/// enables it) and drains them into the record, and samples the counters
/// after every step.
pub fn run_scenario_recorded(scenario: &Scenario, base: Base, log: Option<&Arc<EventLog>>) -> RunRecord {
    let mut record = RunRecord {
        result: ScenarioResult {
            file: scenario.file.clone(),
            name: scenario.name.clone(),
            steps: Vec::new(),
            setup_error: None,
        },
        darts: Vec::new(),
        violations: 0,
        events: Vec::new(),
        samples: Vec::new(),
        steps: Vec::new(),
    };
    let result = &mut record.result;
    let explicit = scenario.darts.iter().any(|d| d.line != 0) || scenario.coprocessors.iter().any(|c| c.line != 0);
    let soc = if base == Base::DefaultSoc && !explicit {
        let (mut soc, darts, devs) = Soc::default_soc();
        if scenario.soc.line != 0 {
            soc = scenario.soc.clone();
        }
        Soc::new(&soc, &darts, &devs)
    } else {
        Soc::new(&scenario.soc, &scenario.darts, &scenario.coprocessors)
    };
    let soc = match soc {
        Ok(s) => s,
        Err(e) => {
            result.setup_error = Some(e.to_string());
            return record;
        }
    };
    if let Some(log) = log {
        soc.set_event_log(Some(log.clone()));
    }
    let run = Run { soc, names: Mutex::new(Names::default()), rings: Mutex::new(HashMap::new()) };
    for step in &scenario.steps {
        let start_ns = log.map(|l| l.now_ns());
        let r = run.step(step);
        if let (Some(log), Some(start_ns)) = (log, start_ns) {
            let end_ns = log.now_ns();
            record.steps.push(RunSlice {
                start_ns,
                end_ns,
                name: format!("step {}: {}", r.step, r.op),
                args: serde_json::json!({ "line": r.line, "expect": r.expect, "actual": r.actual, "passed": r.passed }),
            });
            for d in &run.soc.darts {
                let snap = d.stats().snapshot();
                let values = DartCounter::ALL
                    .iter()
                    .filter_map(|c| Some((c.name().to_owned(), snap.dart.get(c.name())?)))
                    .collect();
                record.samples.push(CounterSample { ts_ns: end_ns, source: d.name().to_owned(), values });
            }
        }
        record.result.steps.push(r);
    }
    if let Some(log) = log {
        run.soc.set_event_log(None);
        record.events = log.drain();
    }
    record.darts = run
        .soc
        .darts
        .iter()
        .map(|d| DartCounters {
            name: d.name().to_owned(),
            variant: d.variant().to_string(),
            counters: d.stats().snapshot(),
        })
        .collect();
    record.violations = run.soc.frames.violations();
    record
}

#[derive(Default)]
struct Names {
    buffers: HashMap<String, Vec<Frame>>,
    handles: HashMap<String, u32>,
    /// Live CPU mappings the scenario made: (frame, space) → count.
    cpu_maps: HashMap<(Frame, Space), u64>,
}

/// A device's RPC ring as the runner drives it: IOVA of the ring page and
/// the next head index.
#[derive(Clone, Copy)]
struct RingClient {
    iova: u64,
    head: u32,
    slots: u32,
}

struct Run {
    soc: Soc,
    names: Mutex<Names>,
    rings: Mutex<HashMap<usize, RingClient>>,
}

impl Run {
    fn step(&self, step: &Step) -> StepResult {
        let actual = self.execute(&step.op);
        let (actual_name, detail) = match &actual {
            Ok(()) => ("ok".to_owned(), String::new()),
            Err(Fail(k, d)) => (k.clone(), d.clone()),
        };
        let passed = match step.expect {
            Outcome::Any => true,
            expect => expect.name() == actual_name,
        };
        StepResult {
            step: step.number(),
            line: step.line,
            op: step.op.name(),
            expect: step.expect.name().to_owned(),
            actual: actual_name,
            passed,
            detail,
        }
    }

    fn frames_of(&self, target: &Target) -> Result<Vec<Frame>, Fail> {
        match target {
            Target::Buffer(name) => self
                .names
                .lock()
                .buffers
                .get(name)
                .cloned()
                .ok_or_else(|| fail("bad-range", format!("no buffer `{name}`"))),
            Target::Frame(r) => Ok(vec![self.frame_ref(r)?]),
            Target::Ttbr(device) => {
                let (_, dev) =
                    self.soc.device(device).ok_or_else(|| fail("no-such-device", format!("no device `{device}`")))?;
                let dart = &self.soc.darts[dev.dart];
                let pa = dart
                    .ttbr(dev.stream, 0)?
                    .ok_or_else(|| fail("bad-range", format!("`{device}` has no TTBR yet (nothing mapped)")))?;
                Ok(vec![self.soc.frames.frame_of(pa).map_err(frame_err)?])
            }
        }
    }

    fn frame_ref(&self, r: &FrameRef) -> Result<Frame, Fail> {
        let names = self.names.lock();
        let b = names.buffers.get(&r.buffer).ok_or_else(|| fail("bad-range", format!("no buffer `{}`", r.buffer)))?;
        b.get(r.index as usize)
            .copied()
            .ok_or_else(|| fail("bad-range", format!("`{}` has {} frames, no [{}]", r.buffer, b.len(), r.index)))
    }

    fn address(&self, a: &Address) -> Result<u64, Fail> {
        match a {
            Address::Int(v) => Ok(*v),
            Address::Pa(r) => self.soc.frames.pa_of(self.frame_ref(r)?).map_err(frame_err),
        }
    }

    fn device(&self, name: &str) -> Result<(usize, u32, &dart::Dart), Fail> {
        let (i, dev) = self.soc.device(name).ok_or_else(|| fail("no-such-device", format!("no device `{name}`")))?;
        Ok((i, dev.stream, &self.soc.darts[dev.dart]))
    }

    fn dart(&self, name: &str) -> Result<&dart::Dart, Fail> {
        self.soc.dart(name).map(|d| &**d).ok_or_else(|| fail("no-such-device", format!("no DART `{name}`")))
    }

    fn execute(&self, op: &Op) -> Outcomes {
        let ft = &self.soc.frames;
        match op {
            Op::Alloc { name, ty, frames } => {
                let got = ft.alloc(*ty, *frames).map_err(frame_err)?;
                self.names.lock().buffers.insert(name.clone(), got);
                Ok(())
            }
            // Through the service: refused while a live grant names a frame
            // (R7), and all or nothing over the buffer's frames (R6).
            Op::Retype { target, ty } => self.soc.service.kernel_retype(&self.frames_of(target)?, *ty).map_err(rpc_err),
            Op::Free { target } => self.soc.service.kernel_free(&self.frames_of(target)?).map_err(rpc_err),
            Op::CpuMap { target, space, perm } => {
                let frames = self.frames_of(target)?;
                let access = if *space == Space::Kernel { Access::CpuKernel } else { Access::CpuUser };
                for (i, &f) in frames.iter().enumerate() {
                    if let Err(e) = ft.acquire(f, access, *perm) {
                        let counter = if *space == Space::Kernel { Counter::CpuKernel } else { Counter::CpuUser };
                        for &g in &frames[..i] {
                            let _ = ft.release(g, counter);
                        }
                        return Err(frame_err(e));
                    }
                }
                let mut names = self.names.lock();
                for f in frames {
                    *names.cpu_maps.entry((f, *space)).or_default() += 1;
                }
                Ok(())
            }
            Op::CpuUnmap { target, space, .. } => {
                let frames = self.frames_of(target)?;
                let counter = if *space == Space::Kernel { Counter::CpuKernel } else { Counter::CpuUser };
                let mut names = self.names.lock();
                if let Some(&f) = frames.iter().find(|f| names.cpu_maps.get(&(**f, *space)).copied().unwrap_or(0) == 0)
                {
                    return Err(fail("not-mapped", format!("{f} has no {space} mapping made by this scenario")));
                }
                for f in frames {
                    ft.release(f, counter).map_err(frame_err)?;
                    *names.cpu_maps.entry((f, *space)).or_default() -= 1;
                }
                Ok(())
            }
            Op::CpuWrite { target, offset, data } => {
                let pa = self.one_frame_range(target, *offset, data.len() as u64)?;
                ft.aperture_write(pa, data).map_err(frame_err)
            }
            Op::CpuRead { target, offset, len, data } => {
                let pa = self.one_frame_range(target, *offset, *len)?;
                let mut buf = vec![0u8; *len as usize];
                ft.aperture_read(pa, &mut buf).map_err(frame_err)?;
                compare(&buf, data.as_deref())
            }
            Op::Map { device, iova, target, perm, subpage } => {
                let (_, sid, dart) = self.device(device)?;
                let iova = self.address(iova)?;
                let frames = self.frames_of(target)?;
                dart.map(sid, iova, &frames, *perm, subpage.clone().map(|r| (r.start, r.end)))?;
                Ok(())
            }
            Op::Unmap { device, iova, len } => {
                let (i, _, _) = self.device(device)?;
                self.soc.service.kernel_unmap(i, self.address(iova)?, *len).map_err(rpc_err)?;
                Ok(())
            }
            Op::Flush { dart, stream } => {
                self.dart(dart)?.flush(*stream)?;
                Ok(())
            }
            Op::Grant { device, target, perm, name } => {
                let (i, _, _) = self.device(device)?;
                let frames = self.frames_of(target)?;
                let h = self.soc.service.grant(i, frames, *perm).map_err(rpc_err)?;
                self.names.lock().handles.insert(name.clone(), h);
                Ok(())
            }
            Op::Revoke { name } => {
                let h = self.names.lock().handles.get(name).copied();
                let h = h.ok_or_else(|| fail("not-granted", format!("no handle `{name}`")))?;
                self.soc.service.revoke(h).map_err(rpc_err)?;
                Ok(())
            }
            Op::Rpc { device, call } => self.rpc(device, call),
            Op::DmaRead { device, iova, len, data } => {
                let (i, _, _) = self.device(device)?;
                let buf = self.device_call(i, Command::DmaRead { iova: self.address(iova)?, len: *len })?;
                compare(&buf, data.as_deref())
            }
            Op::DmaWrite { device, iova, data } => {
                let (i, _, _) = self.device(device)?;
                self.device_call(i, Command::DmaWrite { iova: self.address(iova)?, data: data.clone() })?;
                Ok(())
            }
            Op::Bypass { device, enable } => {
                let (_, sid, dart) = self.device(device)?;
                dart.set_bypass(sid, *enable)?;
                Ok(())
            }
            Op::Watch { device, iova, len, enable } => {
                let (_, sid, dart) = self.device(device)?;
                let iova = self.address(iova)?;
                if *enable {
                    dart.watch(sid, iova, *len)?;
                } else {
                    dart.unwatch(sid, iova, *len)?;
                }
                Ok(())
            }
            Op::MmioWrite { dart, offset, value } => self.mmio_write(dart, *offset, value),
            Op::MmioRead { dart, offset, value, mask } => self.mmio_read(dart, *offset, value.as_ref(), *mask),
            Op::Hold { device, iova, len, perm } => {
                let (i, _, _) = self.device(device)?;
                self.device_call(i, Command::Hold { iova: self.address(iova)?, len: *len, perm: *perm })?;
                Ok(())
            }
            Op::Release { device } => {
                let (i, _, _) = self.device(device)?;
                self.device_call(i, Command::Release)?;
                Ok(())
            }
            Op::Check(Check::Invariant(inv)) => self.check(*inv),
            Op::Check(Check::Holds { target, cmp }) => {
                let frames = self.frames_of(target)?;
                let held: u64 =
                    frames.iter().map(|&f| self.soc.darts.iter().map(|d| d.slice_holds(f)).sum::<u64>()).sum();
                if cmp.holds(held) {
                    Ok(())
                } else {
                    Err(fail("counter-mismatch", format!("holds on {target} are {held}, expected {cmp:?}")))
                }
            }
            Op::Check(Check::Counter { counter, cmp }) => {
                let dart = self.dart(&counter.dart)?;
                let path = match counter.stream {
                    Some(s) => format!("s{s}.{}", counter.name),
                    None => counter.name.clone(),
                };
                let snap = dart.stats().snapshot();
                let v = snap.get(&path).ok_or_else(|| fail("bad-range", format!("no counter `{counter}`")))?;
                if cmp.holds(v) {
                    Ok(())
                } else {
                    Err(fail("counter-mismatch", format!("{counter} is {v}, expected {cmp:?}")))
                }
            }
            Op::Race { iterations, threads } => {
                for it in 0..*iterations {
                    let failures: Vec<String> = std::thread::scope(|s| {
                        let hs: Vec<_> = threads
                            .iter()
                            .map(|steps| {
                                s.spawn(move || {
                                    steps
                                        .iter()
                                        .map(|st| self.step(st))
                                        .filter(|r| !r.passed)
                                        .map(|r| {
                                            format!(
                                                "line {}: {} expected {}, got {} {}",
                                                r.line, r.op, r.expect, r.actual, r.detail
                                            )
                                        })
                                        .collect::<Vec<_>>()
                                })
                            })
                            .collect();
                        hs.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec!["thread died".into()])).collect()
                    });
                    if let Some(f) = failures.first() {
                        return Err(fail("race-step-failed", format!("iteration {it}: {f}")));
                    }
                    if self.soc.frames.halted().is_none() {
                        self.check(Invariant::All)
                            .map_err(|Fail(k, d)| Fail(k, format!("after iteration {it}: {d}")))?;
                    }
                }
                Ok(())
            }
        }
    }

    fn one_frame_range(&self, target: &Target, offset: u64, len: u64) -> Result<u64, Fail> {
        let frames = self.frames_of(target)?;
        let [f] = frames[..] else {
            return Err(fail("bad-range", "cpu-read/cpu-write take one frame"));
        };
        let fs = self.soc.frames.frame_size().bytes();
        if offset.checked_add(len).is_none_or(|end| end > fs) {
            return Err(fail("bad-range", format!("{offset:#x}+{len:#x} is outside the frame")));
        }
        Ok(self.soc.frames.pa_of(f).map_err(frame_err)? + offset)
    }

    fn rpc(&self, device: &str, call: &RpcCall) -> Outcomes {
        let (dev, _, dart) = self.device(device)?;
        let msg: [u8; wire::SLOT_BYTES] = match call {
            RpcCall::Raw { bytes } => {
                let mut m = [0u8; wire::SLOT_BYTES];
                let n = bytes.len().min(wire::SLOT_BYTES);
                m[..n].copy_from_slice(&bytes[..n]);
                m
            }
            RpcCall::Map { handle, offset, len, iova, perm } => {
                // An unknown name is a handle nobody was granted.
                let h = self.names.lock().handles.get(handle).copied().unwrap_or(u32::MAX);
                wire::encode_request(
                    1,
                    &Request::Map { handle: h, offset: *offset, len: *len, iova: self.address(iova)?, perm: *perm },
                )
            }
            RpcCall::Unmap { iova, len } => {
                wire::encode_request(1, &Request::Unmap { iova: self.address(iova)?, len: *len })
            }
            RpcCall::MapPa { pa, len, iova, perm } => wire::encode_request(
                1,
                &Request::MapPa { pa: self.address(pa)?, len: *len, iova: self.address(iova)?, perm: *perm },
            ),
        };
        let mut rings = self.rings.lock();
        let ring = match rings.get(&dev) {
            Some(r) => *r,
            None => {
                let r = self.attach_ring(dev, dart)?;
                rings.insert(dev, r);
                r
            }
        };
        // The device writes the message and bumps the head, by DMA.
        let layout = wire::RingLayout { slots: ring.slots };
        let slot = ring.iova + layout.slot_offset(ring.head) as u64;
        self.device_call(dev, Command::DmaWrite { iova: slot, data: msg.to_vec() })?;
        let head = ring.head.wrapping_add(1);
        let head_iova = ring.iova + wire::RingLayout::head_offset() as u64;
        self.device_call(dev, Command::DmaWrite { iova: head_iova, data: head.to_le_bytes().to_vec() })?;
        rings.insert(dev, RingClient { head, ..ring });
        let served = self.soc.service.service_ring(dev).map_err(rpc_err)?;
        match served.into_iter().last() {
            Some((_, Ok(()))) => Ok(()),
            Some((_, Err(e))) => Err(rpc_err(e)),
            None => Err(fail("bad-message", "the service found no message")),
        }
    }

    /// Has coprocessor `i` run `cmd` on its own thread.
    fn device_call(&self, i: usize, cmd: Command) -> Result<Vec<u8>, Fail> {
        match self.soc.coprocessors[i].call(cmd) {
            Reply::Done(v) => Ok(v),
            Reply::Failed(e) => Err(e.into()),
            Reply::Script(_) => Err(fail("bad-message", "unexpected script reply")),
        }
    }

    fn attach_ring(&self, dev: usize, dart: &dart::Dart) -> Result<RingClient, Fail> {
        let ft = &self.soc.frames;
        let sid = self.soc.devices[dev].stream;
        let frame = ft.alloc(FrameType::KernelShared, 1).map_err(frame_err)?[0];
        let layout = self.soc.service.attach_ring(dev, frame).map_err(rpc_err)?;
        let geo = dart.geometry(sid)?;
        let iova = geo.iova_limit() - geo.page_size();
        dart.map(sid, iova, &[frame], Perm::RW, None)?;
        Ok(RingClient { iova, head: 0, slots: layout.slots })
    }

    fn mmio_write(&self, dart: &str, offset: u64, value: &MmioValue) -> Outcomes {
        let d = self.dart(dart)?;
        let v = self.mmio_value(d, value)?;
        d.mmio_write(offset, v).map_err(|e| fail(e.kind(), e.to_string()))
    }

    fn mmio_read(&self, dart: &str, offset: u64, value: Option<&MmioValue>, mask: Option<u64>) -> Outcomes {
        let d = self.dart(dart)?;
        let got = d.mmio_read(offset).map_err(|e| fail(e.kind(), e.to_string()))?;
        let Some(value) = value else { return Ok(()) };
        let want = self.mmio_value(d, value)?;
        let mask = mask.unwrap_or(0xffff_ffff) as u32;
        if got & mask == want & mask {
            Ok(())
        } else {
            Err(fail("data-mismatch", format!("read {got:#010x}, expected {want:#010x} under mask {mask:#010x}")))
        }
    }

    fn mmio_value(&self, d: &dart::Dart, v: &MmioValue) -> Result<u32, Fail> {
        let too_wide = |x: u64| fail("bad-range", format!("MMIO value {x:#x} does not fit 32 bits"));
        match v {
            MmioValue::Int(x) => u32::try_from(*x).map_err(|_| too_wide(*x)),
            MmioValue::Pa(r) => {
                let pa = self.soc.frames.pa_of(self.frame_ref(r)?).map_err(frame_err)?;
                u32::try_from(pa).map_err(|_| too_wide(pa))
            }
            MmioValue::Ttbr(r) => {
                let pa = self.soc.frames.pa_of(self.frame_ref(r)?).map_err(frame_err)?;
                Ok(dart::regs::encode_ttbr(d.variant(), d.page_shift(), Some(pa)))
            }
        }
    }

    fn check(&self, inv: Invariant) -> Outcomes {
        let all = inv == Invariant::All;
        if all || inv == Invariant::RestrictedUnreachable {
            for d in &self.soc.darts {
                d.check_restricted_unreachable().map_err(|e| fail("invariant-violated", e))?;
            }
        }
        if all || inv == Invariant::CountsConsistent {
            self.check_counts()?;
        }
        if all || inv == Invariant::IotlbCoherent {
            for d in &self.soc.darts {
                d.check_iotlb_coherent().map_err(|e| fail("invariant-violated", e))?;
            }
        }
        Ok(())
    }

    fn check_counts(&self) -> Outcomes {
        let mut dart: HashMap<Frame, (u64, u64)> = HashMap::new();
        for d in &self.soc.darts {
            for (f, (live, pending)) in d.dart_counts() {
                let e = dart.entry(f).or_default();
                e.0 += live;
                e.1 += pending;
            }
        }
        let names = self.names.lock();
        for (f, s) in self.soc.frames.states() {
            let c = s.counts();
            let (live, pending) = dart.get(&f).copied().unwrap_or_default();
            let kernel = names.cpu_maps.get(&(f, Space::Kernel)).copied().unwrap_or(0);
            let user = names.cpu_maps.get(&(f, Space::User)).copied().unwrap_or(0);
            let expected = (kernel, user, live, pending);
            let got = (c.cpu_kernel as u64, c.cpu_user as u64, c.dart as u64, c.pending as u64);
            if got != expected {
                return Err(fail(
                    "invariant-violated",
                    format!("{f} counts (kernel, user, dart, pending) = {got:?}, mappings say {expected:?}"),
                ));
            }
        }
        Ok(())
    }
}

fn compare(got: &[u8], want: Option<&[u8]>) -> Outcomes {
    match want {
        Some(w) if w != got => Err(fail("data-mismatch", format!("read 0x{}, expected 0x{}", hex(got), hex(w)))),
        _ => Ok(()),
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
