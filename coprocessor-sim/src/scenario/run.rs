//! The scenario runner (docs/design.md §6): builds the SoC a scenario describes, runs
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

use crate::rpc::service::RpcError;
use crate::rpc::wire::{self, Request};
use crate::scenario::{
    Address, Check, FrameRef, Invariant, MmioValue, Op, Outcome, PteValue, RpcCall, Scenario, Space, Step, Target,
};
use crate::soc::coprocessor::{Command, Reply};
use crate::soc::Soc;
use dart::stats::{Counter as DartCounter, StatsSnapshot};
use dart::trace_event::{CounterSample, RunSlice};
use dart::{DartError, Event, EventLog};
use frame_table::{Access, Counter, Frame, FrameType, Perm};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

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
    /// For a `race`: how much its threads overlapped (reported, not asserted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<RaceOverlap>,
}

/// How much the threads of one `race` step overlapped: per iteration, whether
/// steps of different threads were executing at the same time.
///
/// Each race step is bracketed by an atomic gauge (a bit per thread): a
/// step *overlaps* when another thread's step was in progress at some moment
/// while it was. An iteration overlaps when any of its steps did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RaceOverlap {
    /// Iterations run (fewer than asked when one failed).
    pub iterations: u64,
    /// Iterations in which some step overlapped a step of another thread.
    pub overlapped: u64,
    /// Every step of every thread, in file order.
    pub steps: Vec<StepOverlap>,
}

/// One step of a race thread and the iterations in which it overlapped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepOverlap {
    /// 1-based thread number.
    pub thread: usize,
    /// 1-based step number in its thread.
    pub step: usize,
    /// Line in the file.
    pub line: usize,
    /// The op.
    pub op: &'static str,
    /// Iterations in which another thread's step was in progress while this one was.
    pub overlapped: u64,
}

impl RaceOverlap {
    /// `overlapped / iterations`, 0 when nothing ran.
    pub fn fraction(&self) -> f64 {
        ratio(self.overlapped, self.iterations)
    }
}

impl StepOverlap {
    /// The fraction of `iterations` in which this step overlapped.
    pub fn fraction(&self, iterations: u64) -> f64 {
        ratio(self.overlapped, iterations)
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// Who is executing a race step right now: one bit per race thread
/// (races have at most [`crate::scenario::MAX_RACE_THREADS`] = 64 threads),
/// and a count of step entries.
///
/// Protocol (all `SeqCst`): entering sets the thread's bit, remembering the
/// bits already set, then takes a ticket from `entries`; leaving reads
/// `entries`, then clears the bit. A step overlapped iff another bit was set
/// when it entered, or another entry's ticket was taken between its own
/// ticket and its read on leaving (that thread set its bit before its ticket
/// and clears it after its own read, so the two were inside together).
#[derive(Debug, Default)]
struct Gauge {
    inside: AtomicU64,
    entries: AtomicU64,
}

/// Lines up a race's threads after the start barrier: a thread woken from
/// the barrier spins (yielding now and then, for hosts with fewer cores
/// than threads) until every thread of the iteration is awake, so their
/// first steps begin within a few instructions of each other rather than a
/// futex wake-up apart.
#[derive(Debug, Default)]
struct StartLine {
    /// Threads that reached the line, over all iterations so far.
    arrived: AtomicU64,
}

impl StartLine {
    /// Spins until all `threads` reached the line in iteration `it`. Never
    /// waits for a thread that is not running: every thread is past the
    /// iteration's start barrier when it calls this.
    fn align(&self, it: u64, threads: usize) {
        let n = threads as u64;
        let target = (it + 1) * n;
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let mut spins = 0u32;
        while self.arrived.load(Ordering::SeqCst) < target {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 14) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// What [`Gauge::enter`] hands to [`Gauge::leave`].
struct Entry {
    bit: u64,
    others: u64,
    ticket: u64,
}

impl Gauge {
    fn enter(&self, thread: usize) -> Entry {
        let bit = 1u64 << (thread % 64);
        let others = self.inside.fetch_or(bit, Ordering::SeqCst) & !bit;
        let ticket = self.entries.fetch_add(1, Ordering::SeqCst);
        Entry { bit, others, ticket }
    }

    /// Whether the step that made `entry` overlapped another thread's.
    fn leave(&self, entry: Entry) -> bool {
        let now = self.entries.load(Ordering::SeqCst);
        self.inside.fetch_and(!entry.bit, Ordering::SeqCst);
        entry.others != 0 || now > entry.ticket + 1
    }
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
    /// docs/design.md §6 defaults: `dart0` (t8110) with `dev0` on stream 1.
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

/// A read's outcome: `got` equals `want` under `mask`, or `data-mismatch`
/// naming the three in hex of `width` characters (`0x` included).
fn expect_masked(got: u64, want: u64, mask: u64, width: usize) -> Outcomes {
    if got & mask == want & mask {
        Ok(())
    } else {
        Err(fail(
            "data-mismatch",
            format!("read {got:#0width$x}, expected {want:#0width$x} under mask {mask:#0width$x}"),
        ))
    }
}

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
    /// Frames the run's invariant checks visited, all checks together: the
    /// frames that ever left `free` (and those a DART names past them), per
    /// check; never every frame of memory.
    pub frames_checked: u64,
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
        frames_checked: 0,
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
    let run = Run {
        frames_checked: AtomicU64::new(0),
        soc,
        names: Mutex::new(Names::default()),
        rings: Mutex::new(HashMap::new()),
    };
    for step in &scenario.steps {
        let start_ns = log.map(|l| l.now_ns());
        let r = run.step(step, Via::Coprocessor);
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
    record.frames_checked = run.frames_checked.load(Ordering::Relaxed);
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

/// Where a step's DMA runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// On the device's coprocessor thread (its command channel).
    Coprocessor,
    /// On the calling thread, through the device's port (race threads).
    Port,
}

struct Run {
    /// Frames the invariant checks visited (state words and device-reachable
    /// bits read), over the run: [`RunRecord::frames_checked`].
    frames_checked: AtomicU64,
    soc: Soc,
    names: Mutex<Names>,
    rings: Mutex<HashMap<usize, RingClient>>,
}

impl Run {
    fn step(&self, step: &Step, via: Via) -> StepResult {
        let (actual, overlap) = match &step.op {
            Op::Race { iterations, threads } => {
                let (actual, overlap) = self.race(*iterations, threads);
                (actual, Some(overlap))
            }
            op => (self.execute(op, via), None),
        };
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
            overlap,
        }
    }

    /// Runs a race: one OS thread per race thread, spawned once, each
    /// running its steps `iterations` times; the DMA steps run on the race
    /// thread through the device's port ([`Via::Port`]).
    ///
    /// Protocol: the threads first wait for `gate` (held by this thread
    /// while spawning, so a refused spawn stops them before any barrier),
    /// then per iteration wait at `start`, run their steps, and wait at
    /// `end`; this thread, the extra party of both barriers, reads their
    /// failures between `end` and the next `start`, checks every
    /// invariant, and sets `stop` before releasing the next `start` when
    /// the race is over early. Every iteration's threads thus start
    /// together, and no step runs during a check.
    fn race(&self, iterations: u64, threads: &[Vec<Step>]) -> (Outcomes, RaceOverlap) {
        let mut overlap = RaceOverlap {
            iterations: 0,
            overlapped: 0,
            steps: threads
                .iter()
                .enumerate()
                .flat_map(|(t, steps)| {
                    steps.iter().enumerate().map(move |(k, st)| StepOverlap {
                        thread: t + 1,
                        step: k + 1,
                        line: st.line,
                        op: st.op.name(),
                        overlapped: 0,
                    })
                })
                .collect(),
        };
        if threads.len() > crate::scenario::MAX_RACE_THREADS {
            let reason =
                format!("a race of {} threads has more than {}", threads.len(), crate::scenario::MAX_RACE_THREADS);
            return (Err(fail("bad-range", reason)), overlap);
        }
        let gauge = Gauge::default();
        let gate = std::sync::RwLock::new(());
        let start = Barrier::new(threads.len() + 1);
        let end = Barrier::new(threads.len() + 1);
        let stop = AtomicBool::new(false);
        let ready = StartLine::default();
        // Per thread: the first failure of the current iteration, and per
        // step whether it overlapped in it.
        let slots: Vec<Mutex<(Option<String>, Vec<bool>)>> =
            threads.iter().map(|steps| Mutex::new((None, vec![false; steps.len()]))).collect();
        let outcome = std::thread::scope(|s| {
            let held = gate.write().unwrap_or_else(|e| e.into_inner());
            for (t, steps) in threads.iter().enumerate() {
                let (gauge, gate, start, end, stop, ready, slot) =
                    (&gauge, &gate, &start, &end, &stop, &ready, &slots[t]);
                let spawned = std::thread::Builder::new().name(format!("race-{}", t + 1)).spawn_scoped(s, move || {
                    drop(gate.read().unwrap_or_else(|e| e.into_inner()));
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    for it in 0..iterations {
                        start.wait();
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        ready.align(it, threads.len());
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let mut first = None;
                            let mut over = Vec::with_capacity(steps.len());
                            for st in steps {
                                let entry = gauge.enter(t);
                                let r = self.step(st, Via::Port);
                                over.push(gauge.leave(entry));
                                if !r.passed && first.is_none() {
                                    first = Some(failed_step(&r));
                                }
                            }
                            (first, over)
                        }));
                        *slot.lock() = ran.unwrap_or_else(|_| {
                            (Some(format!("race thread {} stopped", t + 1)), vec![false; steps.len()])
                        });
                        end.wait();
                    }
                });
                if let Err(e) = spawned {
                    stop.store(true, Ordering::SeqCst);
                    drop(held);
                    return Err(fail("spawn-failed", format!("cannot start race thread {}: {e}", t + 1)));
                }
            }
            drop(held);
            for it in 0..iterations {
                start.wait();
                end.wait();
                overlap.iterations += 1;
                let mut failure = None;
                let mut any = false;
                let mut next = overlap.steps.iter_mut();
                for slot in &slots {
                    let (first, over) = &mut *slot.lock();
                    for (o, s) in over.iter().zip(next.by_ref()) {
                        s.overlapped += u64::from(*o);
                        any |= *o;
                    }
                    if failure.is_none() {
                        failure = first.take();
                    }
                }
                overlap.overlapped += u64::from(any);
                let outcome = match failure {
                    Some(f) => Err(fail("race-step-failed", format!("iteration {it}: {f}"))),
                    None if self.soc.frames.halted().is_none() => {
                        self.check(Invariant::All).map_err(|Fail(k, d)| Fail(k, format!("after iteration {it}: {d}")))
                    }
                    None => Ok(()),
                };
                if outcome.is_err() {
                    if it + 1 < iterations {
                        stop.store(true, Ordering::SeqCst);
                        start.wait();
                    }
                    return outcome;
                }
            }
            Ok(())
        });
        (outcome, overlap)
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

    /// The physical address of a target that names one frame (`NAME[i]`,
    /// `ttbr:DEVICE`, or a one-frame buffer).
    fn frame_pa(&self, target: &Target) -> Result<u64, Fail> {
        let [f] = self.frames_of(target)?[..] else {
            return Err(fail("bad-range", format!("`{target}` is not one frame")));
        };
        self.soc.frames.pa_of(f).map_err(frame_err)
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

    fn execute(&self, op: &Op, via: Via) -> Outcomes {
        let ft = &self.soc.frames;
        match op {
            Op::Alloc { name, ty, frames, align } => {
                let got = ft.alloc_aligned(*ty, *frames, *align).map_err(frame_err)?;
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
            Op::Rpc { device, call } => self.rpc(device, call, via),
            Op::DmaRead { device, iova, len, data } => {
                let (i, _, _) = self.device(device)?;
                let buf = self.dma(i, Command::DmaRead { iova: self.address(iova)?, len: *len }, via)?;
                compare(&buf, data.as_deref())
            }
            Op::DmaWrite { device, iova, data } => {
                let (i, _, _) = self.device(device)?;
                self.dma(i, Command::DmaWrite { iova: self.address(iova)?, data: data.clone() }, via)?;
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
            Op::PteWrite { dart, table, index, value } => {
                let d = self.dart(dart)?;
                let table = self.frame_pa(table)?;
                let value = self.pte_value(d, value)?;
                d.write_table_entry(table, *index, value)?;
                Ok(())
            }
            Op::PteRead { dart, table, index, value, mask } => {
                let d = self.dart(dart)?;
                let table = self.frame_pa(table)?;
                let want = value.as_ref().map(|v| self.pte_value(d, v)).transpose()?;
                let got = d.read_table_entry(table, *index)?;
                let Some(want) = want else { return Ok(()) };
                expect_masked(got, want, mask.unwrap_or(u64::MAX), 18)
            }
            Op::ReleaseTable { dart, table } => {
                let d = self.dart(dart)?;
                d.release_table(self.frame_pa(table)?)?;
                Ok(())
            }
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
            Op::Race { iterations, threads } => self.race(*iterations, threads).0,
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

    fn rpc(&self, device: &str, call: &RpcCall, via: Via) -> Outcomes {
        let (dev, _, dart) = self.device(device)?;
        // A raw message shorter than a slot is zero-padded; one longer does
        // not fit a slot and is handed to the service whole (below).
        let msg: Result<[u8; wire::SLOT_BYTES], &[u8]> = match call {
            RpcCall::Raw { bytes } => wire::slot_message(bytes).map_err(|_| bytes.as_slice()),
            RpcCall::Map { handle, offset, len, iova, perm } => {
                // An unknown name is a handle nobody was granted.
                let h = self.names.lock().handles.get(handle).copied().unwrap_or(u32::MAX);
                Ok(wire::encode_request(
                    1,
                    &Request::Map { handle: h, offset: *offset, len: *len, iova: self.address(iova)?, perm: *perm },
                ))
            }
            RpcCall::Unmap { iova, len } => {
                Ok(wire::encode_request(1, &Request::Unmap { iova: self.address(iova)?, len: *len }))
            }
            RpcCall::MapPa { pa, len, iova, perm } => Ok(wire::encode_request(
                1,
                &Request::MapPa { pa: self.address(pa)?, len: *len, iova: self.address(iova)?, perm: *perm },
            )),
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
        let msg = match msg {
            Ok(m) => m,
            // Too long for a slot: never cut to fit. The service sees the
            // whole message and refuses it (`bad-message`, counted); the
            // ring and everything else stay as they were.
            Err(whole) => {
                drop(rings);
                return self.soc.service.handle_message(dev, whole).1.map_err(rpc_err);
            }
        };
        // The device writes the message and bumps the head, by DMA.
        let layout = wire::RingLayout { slots: ring.slots };
        let slot = ring.iova + layout.slot_offset(ring.head) as u64;
        self.dma(dev, Command::DmaWrite { iova: slot, data: msg.to_vec() }, via)?;
        let head = ring.head.wrapping_add(1);
        let head_iova = ring.iova + wire::RingLayout::head_offset() as u64;
        self.dma(dev, Command::DmaWrite { iova: head_iova, data: head.to_le_bytes().to_vec() }, via)?;
        rings.insert(dev, RingClient { head, ..ring });
        let served = self.soc.service.service_ring(dev).map_err(rpc_err)?;
        match served.into_iter().last() {
            Some((_, Ok(()))) => Ok(()),
            Some((_, Err(e))) => Err(rpc_err(e)),
            None => Err(fail("bad-message", "the service found no message")),
        }
    }

    /// Device `i`'s DMA: through its coprocessor thread, or on this thread
    /// through its port (a race thread's DMA, so that it is in the DART
    /// while the other race threads run, not queued behind them).
    fn dma(&self, i: usize, cmd: Command, via: Via) -> Result<Vec<u8>, Fail> {
        let port = match (via, self.soc.ports.get(i)) {
            (Via::Port, Some(port)) => port,
            _ => return self.device_call(i, cmd),
        };
        match cmd {
            Command::DmaRead { iova, len } => {
                if len > crate::scenario::MAX_READ_BYTES {
                    return Err(fail(
                        "bad-range",
                        format!(
                            "a read of {len} bytes is longer than the longest read a step may ask for ({})",
                            crate::scenario::MAX_READ_BYTES
                        ),
                    ));
                }
                let mut buf = Vec::new();
                buf.try_reserve_exact(len as usize)
                    .map_err(|e| fail("bad-range", format!("a read of {len} bytes: {e}")))?;
                buf.resize(len as usize, 0);
                port.dma_read(iova, &mut buf)?;
                Ok(buf)
            }
            Command::DmaWrite { iova, data } => {
                port.dma_write(iova, &data)?;
                Ok(Vec::new())
            }
            other => self.device_call(i, other),
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
        expect_masked(got.into(), want.into(), mask.into(), 10)
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
            MmioValue::DeviceTtbr(device) => {
                let [f] = self.frames_of(&Target::Ttbr(device.clone()))?[..] else {
                    return Err(fail("bad-range", format!("`{device}` has no single top table")));
                };
                let pa = self.soc.frames.pa_of(f).map_err(frame_err)?;
                Ok(dart::regs::encode_ttbr(d.variant(), d.page_shift(), Some(pa)))
            }
        }
    }

    /// A `pte-*` value as an entry in `d`'s PTE format at its page size.
    /// An entry the format cannot hold (a PA past its output width) is
    /// `bad-range`, as the monitor would answer for it.
    fn pte_value(&self, d: &dart::Dart, v: &PteValue) -> Result<u64, Fail> {
        let (format, shift) = (d.pte_format(), d.page_shift());
        let unencodable = |e: dart::pte::PteError| fail("bad-range", format!("`{v}` cannot be encoded: {e}"));
        match v {
            PteValue::Int(x) => Ok(*x),
            PteValue::Leaf { frame, perm, nocache } => {
                let pa = self.frame_pa(frame)?;
                let leaf =
                    dart::pte::Leaf { pa, read: perm.read(), write: perm.write(), subpage: dart::pte::Subpage::WHOLE };
                if *nocache && format.kept_leaf_bits() == 0 {
                    return Err(fail("bad-range", format!("`{v}`: {} has no no-cache bit", d.variant())));
                }
                let kept = if *nocache { format.kept_leaf_bits() } else { 0 };
                format.encode_leaf_kept(shift, &leaf, kept).map_err(unencodable)
            }
            PteValue::Table(frame) => {
                let pa = self.frame_pa(frame)?;
                format.encode_table(shift, pa).map_err(unencodable)
            }
        }
    }

    fn check(&self, inv: Invariant) -> Outcomes {
        let all = inv == Invariant::All;
        if all || inv == Invariant::RestrictedUnreachable {
            // Each DART's check reads the device-reachable map of the
            // touched frames.
            let touched = self.soc.frames.touched_frames();
            self.frames_checked.fetch_add(touched * self.soc.darts.len() as u64, Ordering::Relaxed);
            for d in &self.soc.darts {
                d.check_restricted_unreachable().map_err(|e| fail("invariant-violated", e))?;
            }
        }
        if all || inv == Invariant::CountsConsistent {
            self.check_counts()?;
            for d in &self.soc.darts {
                d.check_provenance().map_err(|e| fail("invariant-violated", e))?;
            }
        }
        if all || inv == Invariant::IotlbCoherent {
            for d in &self.soc.darts {
                d.check_iotlb_coherent().map_err(|e| fail("invariant-violated", e))?;
            }
        }
        Ok(())
    }

    /// `counts-consistent`: every frame's counters equal the mappings that
    /// exist. Visits the frames that ever left `free` (the frame table's
    /// touched prefix) and the frames the DARTs' tables and holds name, so
    /// it costs what is used and mapped, not the size of memory.
    fn check_counts(&self) -> Outcomes {
        let mut dart: HashMap<Frame, (u64, u64)> = HashMap::new();
        for d in &self.soc.darts {
            for (f, (live, pending)) in d.dart_counts() {
                let e = dart.entry(f).or_default();
                e.0 += live;
                e.1 += pending;
            }
        }
        let ft = &self.soc.frames;
        let touched = ft.touched_frames();
        // Frames past the touched prefix are free: only a DART table or hold
        // naming one (a forged PTE) can make its counts disagree.
        let mut past: Vec<Frame> = dart.keys().copied().filter(|f| u64::from(f.0) >= touched).collect();
        past.sort_unstable();
        let past = past.into_iter().filter_map(|f| Some((f, ft.state(f).ok()?)));
        let names = self.names.lock();
        let mut visited = 0u64;
        let mut result = Ok(());
        for (f, s) in ft.touched_states().chain(past) {
            visited += 1;
            let c = s.counts();
            let (live, pending) = dart.get(&f).copied().unwrap_or_default();
            let kernel = names.cpu_maps.get(&(f, Space::Kernel)).copied().unwrap_or(0);
            let user = names.cpu_maps.get(&(f, Space::User)).copied().unwrap_or(0);
            let expected = (kernel, user, live, pending);
            let got = (c.cpu_kernel as u64, c.cpu_user as u64, c.dart as u64, c.pending as u64);
            if got != expected {
                result = Err(fail(
                    "invariant-violated",
                    format!("{f} counts (kernel, user, dart, pending) = {got:?}, mappings say {expected:?}"),
                ));
                break;
            }
        }
        self.frames_checked.fetch_add(visited, Ordering::Relaxed);
        result
    }
}

/// A failed race step, for the race's detail.
fn failed_step(r: &StepResult) -> String {
    format!("line {}: {} expected {}, got {} {}", r.line, r.op, r.expect, r.actual, r.detail)
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
