//! Chrome trace-event JSON (the format Perfetto's UI and `chrome://tracing`
//! open) from recorded [`Event`]s.
//!
//! The layout, for each *run* (a scenario, a benchmark…):
//! - one process (`pid`) per event source of the run (each DART, `frames`),
//!   named `RUN: SOURCE` with `process_name` metadata (`ph: "M"`);
//! - in a source's process, one thread (`tid`) per *track*: per stream and
//!   recording thread ([`Event::thread`]), plus per recording thread one for
//!   the DART itself (register accesses, flushes) or, in `frames`, the frame
//!   table; each is named with `thread_name` metadata (`stream 1 (thread
//!   2)`, `DART (thread 1)`, `frame table (thread 1)`). Tids count from 1 in
//!   that order (the DART's tracks, then streams by number, each by thread
//!   ordinal). Slices from two OS threads can partly overlap in time, which
//!   a viewer cannot draw on one track; slices from one thread nest or are
//!   disjoint, so every track nests properly;
//! - map, unmap, flush and watched DMA are complete slices (`ph: "X"`, `ts`
//!   their start, with `dur`; a DMA's duration is not measured and shows as
//!   1 ns, as does any duration under 1 ns); faults,
//!   violations, RPC decisions, register accesses and frame events are
//!   thread-scoped instant events (`ph: "i"`, `s: "t"`);
//! - counter samples are counter tracks (`ph: "C"`) on their DART's process;
//! - optional labelled slices (a scenario's steps) go to a process of their
//!   own, named after the run.
//!
//! Timestamps (`ts`, `dur`) are in microseconds, as the format requires.
//! Addresses and register values appear in `args` as hex strings.

use crate::observe::events::{Event, EventKind};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A sample of one source's counters at one time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterSample {
    /// When, in the events' clock (ns).
    pub ts_ns: u64,
    /// The DART's name.
    pub source: String,
    /// Counter names and values.
    pub values: Vec<(String, u64)>,
}

/// A labelled slice on the run's own track (e.g. one scenario step).
#[derive(Clone, Debug, PartialEq)]
pub struct RunSlice {
    /// Start, in the events' clock (ns).
    pub start_ns: u64,
    /// End (ns).
    pub end_ns: u64,
    /// Its name.
    pub name: String,
    /// Extra fields shown with it.
    pub args: Value,
}

/// What one run recorded.
#[derive(Clone, Copy, Debug)]
pub struct TraceRun<'a> {
    /// The run's name (a scenario file, a workload).
    pub label: &'a str,
    /// Its events, in order.
    pub events: &'a [Event],
    /// Its counter samples.
    pub counters: &'a [CounterSample],
    /// Its labelled slices.
    pub slices: &'a [RunSlice],
}

/// The `traceEvents` document for `runs`.
pub fn chrome_trace<'a>(runs: &[TraceRun<'a>]) -> Value {
    let mut out = Vec::new();
    let mut next_pid = 1u64;
    for run in runs {
        let mut pids: BTreeMap<&'a str, u64> = BTreeMap::new();
        let mut threads: BTreeMap<(u64, u64), String> = BTreeMap::new();
        let mut pid_of = |source: &'a str, out: &mut Vec<Value>| -> u64 {
            if let Some(&p) = pids.get(source) {
                return p;
            }
            let p = next_pid;
            next_pid += 1;
            pids.insert(source, p);
            out.push(metadata("process_name", p, 0, &format!("{}: {source}", run.label)));
            p
        };
        if !run.slices.is_empty() {
            let pid = pid_of("steps", &mut out);
            out.push(metadata("thread_name", pid, 0, "steps"));
            for s in run.slices {
                out.push(json!({
                    "name": s.name, "cat": "step", "ph": "X", "pid": pid, "tid": 0,
                    "ts": us(s.start_ns), "dur": us(s.end_ns.saturating_sub(s.start_ns).max(1)), "args": s.args,
                }));
            }
        }
        // Each source's tracks, (stream, recording thread), in tid order.
        let mut tracks: BTreeMap<&'a str, BTreeSet<(Option<u32>, u32)>> = BTreeMap::new();
        for e in run.events {
            tracks.entry(e.source.as_str()).or_default().insert((e.kind.stream(), e.thread));
        }
        let tids: BTreeMap<(&str, Option<u32>, u32), u64> = tracks
            .iter()
            .flat_map(|(source, set)| set.iter().zip(1..).map(|(&(s, t), tid)| ((*source, s, t), tid)))
            .collect();
        for e in run.events {
            let pid = pid_of(e.source.as_str(), &mut out);
            let tid = tids[&(e.source.as_str(), e.kind.stream(), e.thread)];
            threads.entry((pid, tid)).or_insert_with(|| {
                let track = match (e.source.as_str(), e.kind.stream()) {
                    (_, Some(s)) => format!("stream {s}"),
                    ("frames", None) => "frame table".to_owned(),
                    (_, None) => "DART".to_owned(),
                };
                format!("{track} (thread {})", e.thread)
            });
            out.push(trace_event(e, pid, tid));
        }
        for c in run.counters {
            let pid = pid_of(c.source.as_str(), &mut out);
            for (name, v) in &c.values {
                out.push(json!({
                    "name": name, "cat": "counter", "ph": "C", "pid": pid, "tid": 0, "ts": us(c.ts_ns),
                    "args": {"value": v},
                }));
            }
        }
        for ((pid, tid), name) in threads {
            out.push(metadata("thread_name", pid, tid, &name));
        }
    }
    json!({ "traceEvents": out, "displayTimeUnit": "ns" })
}

/// Nanoseconds as the format's microseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn metadata(what: &str, pid: u64, tid: u64, name: &str) -> Value {
    json!({ "name": what, "ph": "M", "pid": pid, "tid": tid, "args": { "name": name } })
}

/// Fields shown as hex (addresses and offsets already serialize as hex
/// strings, and are kept as they are; this turns register values to hex).
const HEX_FIELDS: [&str; 4] = ["iova", "pa", "offset", "value"];

fn trace_event(e: &Event, pid: u64, tid: u64) -> Value {
    let mut args = match serde_json::to_value(&e.kind) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    args.remove("event");
    for k in HEX_FIELDS {
        if let Some(v) = args.get(k).and_then(Value::as_u64) {
            args.insert(k.to_owned(), Value::String(format!("{v:#x}")));
        }
    }
    args.insert("seq".to_owned(), json!(e.seq));
    let name = match &e.kind {
        EventKind::Fault { code, .. } => format!("fault:{code}"),
        EventKind::Rpc { request, decision, .. } => format!("rpc {request}: {decision}"),
        EventKind::Mmio { dir, register, .. } => format!("{} {register}", if *dir == "read" { "R" } else { "W" }),
        EventKind::Violation { kind, .. } => format!("violation:{kind}"),
        EventKind::Dma { dir, .. } => format!("dma-{dir}"),
        k => k.name().to_owned(),
    };
    let slice = matches!(
        e.kind,
        EventKind::Map { .. }
            | EventKind::Unmap { .. }
            | EventKind::Flush { .. }
            | EventKind::Dma { .. }
            | EventKind::PteWrite { .. }
    );
    if slice {
        let dur = e.dur_ns.max(1);
        json!({
            "name": name, "cat": e.kind.name(), "ph": "X", "pid": pid, "tid": tid,
            "ts": us(e.ts_ns), "dur": us(dur), "args": args,
        })
    } else {
        json!({
            "name": name, "cat": e.kind.name(), "ph": "i", "s": "t", "pid": pid, "tid": tid,
            "ts": us(e.ts_ns), "args": args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, source: &str, kind: EventKind) -> Event {
        Event { seq, ts_ns: 5000 + seq * 1000, dur_ns: 2000, source: source.into(), thread: 1, kind }
    }

    #[test]
    fn layout_of_one_run() {
        let events = [
            ev(0, "dart0", EventKind::Map { stream: 3, iova: 0x4000, pages: 1, pa: 0x8000, perm: "rw" }),
            ev(1, "dart0", EventKind::Fault { stream: 3, iova: 0x8000, code: "no-pte", dir: "read", latched: true }),
            ev(2, "frames", EventKind::Free { pa: 0x8000, from: "user-data" }),
        ];
        let counters = [CounterSample { ts_ns: 9000, source: "dart0".into(), values: vec![("faults".into(), 1)] }];
        let doc = chrome_trace(&[TraceRun { label: "s.toml", events: &events, counters: &counters, slices: &[] }]);
        let te = doc["traceEvents"].as_array().unwrap();
        let find = |ph: &str, name: &str| te.iter().find(|e| e["ph"] == ph && e["name"] == name).unwrap().clone();
        assert_eq!(find("M", "process_name")["args"]["name"], "s.toml: dart0");
        let map = find("X", "map");
        assert_eq!((map["pid"].as_u64(), map["tid"].as_u64()), (Some(1), Some(1)));
        // `ts` is the start: `ts_ns`.
        assert_eq!((map["ts"].as_f64(), map["dur"].as_f64()), (Some(5.0), Some(2.0)));
        assert_eq!(map["args"]["iova"], "0x4000");
        let fault = find("i", "fault:no-pte");
        assert_eq!((fault["pid"].as_u64(), fault["tid"].as_u64(), fault["s"].as_str()), (Some(1), Some(1), Some("t")));
        let free = find("i", "free");
        assert_eq!((free["pid"].as_u64(), free["tid"].as_u64()), (Some(2), Some(1)));
        let c = find("C", "faults");
        assert_eq!((c["pid"].as_u64(), c["ts"].as_f64(), c["args"]["value"].as_u64()), (Some(1), Some(9.0), Some(1)));
        let names: Vec<_> = te
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(names, vec![(1, 1, "stream 3 (thread 1)"), (2, 1, "frame table (thread 1)")]);
    }

    /// The "X" slices of `doc` that partly overlap another on the same
    /// (pid, tid): neither disjoint from it nor one containing the other.
    /// One "X" slice: start and end (ns), and the event.
    type Slice<'v> = (u64, u64, &'v Value);

    fn partial_overlaps(doc: &Value) -> Vec<(Value, Value)> {
        let ns = |v: &Value| (v.as_f64().unwrap() * 1000.0).round() as u64;
        let mut by_track: BTreeMap<(u64, u64), Vec<Slice<'_>>> = BTreeMap::new();
        for e in doc["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X") {
            let (ts, dur) = (ns(&e["ts"]), ns(&e["dur"]));
            by_track.entry((e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap())).or_default().push((
                ts,
                ts + dur,
                e,
            ));
        }
        let mut bad = Vec::new();
        for slices in by_track.values() {
            for (i, a) in slices.iter().enumerate() {
                for b in &slices[i + 1..] {
                    let disjoint = a.1 <= b.0 || b.1 <= a.0;
                    let nested = (a.0 <= b.0 && b.1 <= a.1) || (b.0 <= a.0 && a.1 <= b.1);
                    if !disjoint && !nested {
                        bad.push((a.2.clone(), b.2.clone()));
                    }
                }
            }
        }
        bad
    }

    #[test]
    fn slices_of_two_threads_on_one_stream_go_on_two_tracks_that_nest() {
        // A map on thread 1 and an unmap of the same stream on thread 2 that
        // partly overlap in time (as in scenarios/race-map-same-iova.toml),
        // then a later map on thread 1.
        let mk = |seq, thread, ts_ns, dur_ns, kind| Event { seq, ts_ns, dur_ns, source: "dart0".into(), thread, kind };
        let map = |iova| EventKind::Map { stream: 1, iova, pages: 1, pa: 0x8000, perm: "rw" };
        let unmap = EventKind::Unmap { stream: 1, iova: 0x4000, len: 0x4000, pages: 1, invalidation: "strict" };
        let events = [
            mk(0, 1, 1_000, 3_000, map(0x4000)),
            mk(1, 2, 2_000, 4_000, unmap),
            mk(2, 1, 4_500, 500, map(0x8000)),
            mk(3, 2, 6_500, 0, EventKind::Flush { streams: vec![1] }),
        ];
        let doc = chrome_trace(&[TraceRun { label: "race", events: &events, counters: &[], slices: &[] }]);
        assert!(partial_overlaps(&doc).is_empty(), "{:?}", partial_overlaps(&doc));
        let te = doc["traceEvents"].as_array().unwrap();
        let tid = |seq: u64| te.iter().find(|e| e["args"]["seq"] == seq).unwrap()["tid"].as_u64().unwrap();
        assert_ne!(tid(0), tid(1));
        assert_eq!(tid(0), tid(2));
        let names: Vec<_> = te
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(names, vec![(1, "DART (thread 2)"), (2, "stream 1 (thread 1)"), (3, "stream 1 (thread 2)")]);

        // The same events all on one thread would partly overlap on one
        // track: what the check catches.
        let one: Vec<Event> = events.iter().cloned().map(|e| Event { thread: 1, ..e }).collect();
        let doc = chrome_trace(&[TraceRun { label: "race", events: &one, counters: &[], slices: &[] }]);
        assert_eq!(partial_overlaps(&doc).len(), 1);
    }
}
