//! Instrumentation end to end: a scripted scenario records exactly the
//! expected events in order next to its counters; the Chrome trace of the
//! whole catalogue has every field the trace-event format requires for each
//! phase. That `--events`, `--trace` and `--report` write what they promise:
//! `cli/tests/instrumentation.rs`.

use coprocessor_sim::scenario::load_scenario;
use coprocessor_sim::scenario::run::{run_scenario_recorded, Base, RunRecord};
use dart::trace_event::{chrome_trace, TraceRun};
use dart::{EventKind, EventLog};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn enabled_log(capacity: usize) -> Arc<EventLog> {
    let log = Arc::new(EventLog::new(capacity).unwrap());
    log.set_enabled(true);
    log
}

/// The shipped catalogue folder, `scenarios/` at the workspace root.
fn catalogue_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
}

/// The catalogue's `*.toml` files, folders searched recursively, sorted (as
/// the CLI collects them).
fn catalogue_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "toml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&catalogue_dir(), &mut files);
    files
}

fn watch_scenario() -> PathBuf {
    catalogue_dir().join("trace-watch-ring.toml")
}

#[test]
fn watch_scenario_records_exactly_the_expected_events() {
    let s = load_scenario(&watch_scenario()).unwrap();
    let log = enabled_log(1024);
    let r = run_scenario_recorded(&s, Base::DefaultSoc, Some(&log));
    assert!(r.result.passed(), "{:?}", r.result);
    assert_eq!(log.dropped(), 0);
    assert!(log.is_empty(), "the record drained the log");

    // Frames are handed out lowest first from the default DRAM base, 16 KiB each.
    let pa = |i: u64| 0x8_0000_0000 + i * 0x4000;
    let ring = 0xf_ffff_c000u64;
    let ring_msg = "44525043010120000100000000000000010000000300000000000000000000000040000000000000000001000000000000000000000000000000000000000000";
    let dma = |iova: u64, pa: u64, len: u64, dir: &'static str, data: &str| EventKind::Dma {
        stream: 1,
        iova,
        pa,
        len,
        dir,
        data: data.into(),
        truncated: false,
    };
    let want: Vec<(&str, EventKind)> = vec![
        ("frames", EventKind::Alloc { pa: pa(0), ty: "user-data" }),
        // First RPC: the ring frame, its tables, its mapping.
        ("frames", EventKind::Alloc { pa: pa(1), ty: "kernel-shared" }),
        ("frames", EventKind::Alloc { pa: pa(2), ty: "dart-table" }),
        ("frames", EventKind::Alloc { pa: pa(3), ty: "dart-table" }),
        ("dart-ane", EventKind::Map { stream: 1, iova: ring, pages: 1, pa: pa(1), perm: "rw" }),
        // The device writes request slot 0, then the head: both watched.
        ("dart-ane", dma(ring + 64, pa(1) + 64, 64, "write", ring_msg)),
        ("dart-ane", dma(ring, pa(1), 4, "write", "01000000")),
        // The service maps the buffer (a new leaf table) and says yes.
        ("frames", EventKind::Alloc { pa: pa(4), ty: "dart-table" }),
        ("dart-ane", EventKind::Map { stream: 1, iova: 0x10000, pages: 1, pa: pa(0), perm: "rw" }),
        (
            "dart-ane",
            EventKind::Rpc {
                stream: 1,
                device: "ane".into(),
                request: "map",
                iova: 0x10000,
                len: 0x4000,
                decision: "accepted",
                reason: String::new(),
            },
        ),
        ("dart-ane", dma(0x10000, pa(0), 4, "write", "5ca1ab1e")),
        ("dart-ane", dma(0x10000, pa(0), 4, "read", "5ca1ab1e")),
        // The write outside the ranges and the read after the unwatch: nothing.
    ];
    let got: Vec<(&str, EventKind)> = r.events.iter().map(|e| (e.source.as_str(), e.kind.clone())).collect();
    assert_eq!(got, want);
    assert_eq!(r.events.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..want.len() as u64).collect::<Vec<_>>());

    // Counters after the run, and one sample per step.
    let c = &r.darts[0].counters;
    assert_eq!(r.darts[0].name, "dart-ane");
    for (path, v) in [
        ("s1.maps", 2),
        ("s1.bytes_written", 64 + 4 + 4 + 1),
        ("s1.bytes_read", 8),
        ("s1.rpc_requests", 1),
        ("s1.rpc_refused", 0),
        ("s1.faults", 0),
    ] {
        assert_eq!(c.get(path), Some(v), "{path}");
    }
    assert_eq!(r.violations, 0);
    assert_eq!(r.steps.len(), s.steps.len());
    assert_eq!(r.samples.len(), s.steps.len());
    assert_eq!(r.steps[4].name, "step 5: rpc");
    let last = r.samples.last().unwrap();
    assert!(last.values.contains(&("bytes_written".to_owned(), 73)), "{:?}", last.values);
}

#[test]
fn without_a_log_nothing_is_recorded_and_verdicts_are_the_same() {
    let s = load_scenario(&watch_scenario()).unwrap();
    let r = run_scenario_recorded(&s, Base::DefaultSoc, None);
    assert!(r.result.passed());
    assert!(r.events.is_empty() && r.samples.is_empty() && r.steps.is_empty());
    assert_eq!(r.darts[0].counters.get("s1.bytes_written"), Some(73));
}

fn catalogue_records(log: &Arc<EventLog>) -> Vec<RunRecord> {
    let files = catalogue_files();
    assert!(!files.is_empty());
    files.iter().map(|f| run_scenario_recorded(&load_scenario(f).unwrap(), Base::DefaultSoc, Some(log))).collect()
}

fn num(e: &Value, k: &str) -> bool {
    e[k].is_number()
}

#[test]
fn catalogue_chrome_trace_has_the_required_fields_for_every_phase() {
    let log = enabled_log(1 << 16);
    let records = catalogue_records(&log);
    assert_eq!(log.dropped(), 0);
    let labels: Vec<String> = records.iter().map(|r| r.result.file.display().to_string()).collect();
    let runs: Vec<TraceRun<'_>> = records
        .iter()
        .zip(&labels)
        .map(|(r, l)| TraceRun { label: l, events: &r.events, counters: &r.samples, slices: &r.steps })
        .collect();
    // Through text, as a viewer gets it.
    let text = serde_json::to_string(&chrome_trace(&runs)).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let te = doc["traceEvents"].as_array().expect("traceEvents array");

    let mut phases: HashMap<String, usize> = HashMap::new();
    let mut process_names = HashSet::new();
    let mut thread_names = HashSet::new();
    let mut used = HashSet::new();
    let mut slices: HashMap<(u64, u64), Vec<(u64, u64)>> = HashMap::new();
    for e in te {
        let ph = e["ph"].as_str().expect("ph");
        *phases.entry(ph.to_owned()).or_default() += 1;
        assert!(e["name"].is_string(), "name: {e}");
        let (pid, tid) = (e["pid"].as_u64().expect("pid"), e["tid"].as_u64().expect("tid"));
        match ph {
            "M" => {
                assert!(e["args"]["name"].is_string(), "{e}");
                match e["name"].as_str() {
                    Some("process_name") => assert!(process_names.insert(pid), "two names for pid {pid}"),
                    Some("thread_name") => assert!(thread_names.insert((pid, tid)), "two names for {pid}/{tid}"),
                    other => panic!("unexpected metadata {other:?}"),
                }
            }
            "X" => {
                assert!(num(e, "ts") && num(e, "dur") && e["dur"].as_f64() >= Some(0.0), "{e}");
                used.insert((pid, tid));
                let ns = |k: &str| (e[k].as_f64().unwrap() * 1000.0).round() as u64;
                slices.entry((pid, tid)).or_default().push((ns("ts"), ns("ts") + ns("dur")));
            }
            "i" => {
                assert!(num(e, "ts") && matches!(e["s"].as_str(), Some("t" | "p" | "g")), "{e}");
                used.insert((pid, tid));
            }
            "C" => {
                let args = e["args"].as_object().expect("counter args");
                assert!(num(e, "ts") && !args.is_empty() && args.values().all(Value::is_number), "{e}");
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    // Slices on one track nest or are disjoint (one recording thread per
    // track), as Perfetto needs to draw them.
    for (track, sl) in &mut slices {
        sl.sort_unstable_by_key(|&(s, e)| (s, std::cmp::Reverse(e)));
        for (i, a) in sl.iter().enumerate() {
            for b in sl[i + 1..].iter().take_while(|b| b.0 < a.1) {
                assert!(b.1 <= a.1, "slices {a:?} and {b:?} partly overlap on track {track:?}");
            }
        }
    }
    // Every track is named, and so is every process.
    for (pid, tid) in &used {
        assert!(thread_names.contains(&(*pid, *tid)), "unnamed thread {pid}/{tid}");
        assert!(process_names.contains(pid), "unnamed process {pid}");
    }
    // The catalogue shows slices, instants (faults, violations) and counters.
    for ph in ["M", "X", "i", "C"] {
        assert!(phases.get(ph).copied().unwrap_or(0) > 0, "no {ph} events");
    }
    let named = |prefix: &str| te.iter().any(|e| e["name"].as_str().is_some_and(|n| n.starts_with(prefix)));
    assert!(named("fault:no-pte") && named("violation:") && named("map") && named("dma-write") && named("rpc "));
    assert!(named("W TCR") || named("W TTBR"), "decoded MMIO names");
}
