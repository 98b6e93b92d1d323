//! `--events`, `--trace` and `--report` write what they promise (moved here
//! from `coprocessor-sim/tests/instrumentation.rs`, which keeps the runner's
//! event recording and the Chrome trace of the catalogue).

use coprocessor_sim::scenario::run::Base;
use dartemu::run::{catalogue_dir, run_instrumented, Instrument};
use serde_json::Value;
use std::path::PathBuf;

fn watch_scenario() -> PathBuf {
    catalogue_dir().join("trace-watch-ring.toml")
}

#[test]
fn cli_writes_events_trace_and_report() {
    let dir = std::env::temp_dir().join(format!("dartemu-instr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let inst = Instrument {
        events: Some(dir.join("e.jsonl")),
        trace: Some(dir.join("t.json")),
        report: Some(dir.join("report")),
        event_capacity: 4096,
    };
    let results = run_instrumented(&[watch_scenario()], Base::Spec, &inst).unwrap();
    assert!(results.iter().all(|r| r.passed()));

    let lines: Vec<Value> = std::fs::read_to_string(dir.join("e.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(lines.iter().all(|l| l["run"].as_str().is_some_and(|r| r.ends_with("trace-watch-ring.toml"))));
    assert_eq!(lines.iter().filter(|l| l["event"] == "dma").count(), 4);

    let trace: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("t.json")).unwrap()).unwrap();
    assert!(trace["traceEvents"].as_array().is_some_and(|a| !a.is_empty()));

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report/report.json")).unwrap()).unwrap();
    let sc = &report["scenarios"][0];
    assert_eq!((sc["passed"].as_bool(), sc["events"].as_u64()), (Some(true), Some(12)));
    assert_eq!(sc["darts"][0]["streams"]["s1"]["bytes_written"], 73);
    assert_eq!(sc["darts"][0]["counters"]["faults"], 0);
    assert_eq!(report["totals"]["events_dropped"], 0);
    for svg in ["faults-by-code.svg", "iotlb-hit-rate.svg"] {
        let text = std::fs::read_to_string(dir.join("report").join(svg)).unwrap();
        assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && text.trim_end().ends_with("</svg>"));
    }
    // A bad capacity is an error, and nothing runs.
    let bad = Instrument { event_capacity: 0, ..inst };
    assert!(run_instrumented(&[watch_scenario()], Base::Spec, &bad).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
