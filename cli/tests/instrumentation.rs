//! `--events`, `--trace` and `--report` write what they promise (moved here
//! from `coprocessor-sim/tests/instrumentation.rs`, which keeps the runner's
//! event recording and the Chrome trace of the catalogue).

use coprocessor_sim::scenario::run::Base;
use coprocessor_sim::scenario::{load_scenario, Scenario};
use dartemu::report::RUN_REPORT_FILES as FILES;
use dartemu::run::{run_instrumented, Outputs};
use indicatif::ProgressBar;
use serde_json::Value;
use std::path::Path;

fn watch_scenario() -> Scenario {
    load_scenario(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/trace-watch-ring.toml")).unwrap()
}

#[test]
fn cli_writes_events_trace_and_report() {
    let dir = std::env::temp_dir().join(format!("dartemu-instr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let inst = Outputs {
        events: Some(dir.join("e.jsonl")),
        trace: Some(dir.join("t.json")),
        report: Some(dir.join("report")),
        event_capacity: Some(4096),
        json: None,
    };
    let mut outs = inst.open(&FILES).unwrap();
    let results = run_instrumented(&[watch_scenario()], Base::Spec, &mut outs, &ProgressBar::hidden()).unwrap();
    assert!(results.iter().all(|r| r.passed()));

    let lines: Vec<Value> = std::fs::read_to_string(dir.join("e.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(lines.iter().all(|l| l["run"].as_str().is_some_and(|r| r.ends_with("trace-watch-ring.toml"))));
    assert_eq!(lines.iter().filter(|l| l["event"] == "dma").count(), 4);
    // Addresses are hex strings, lengths numbers; every line has a start,
    // a duration and its recording thread; lines are in `seq` order.
    for l in lines.iter().filter(|l| l["event"] == "dma") {
        assert!(l["iova"].as_str().is_some_and(|a| a.starts_with("0x")), "{l}");
        assert!(l["pa"].as_str().is_some_and(|a| a.starts_with("0x")), "{l}");
        assert!(l["len"].is_u64(), "{l}");
    }
    assert!(lines.iter().all(|l| l["ts_ns"].is_u64() && l["dur_ns"].is_u64() && l["thread"].as_u64() >= Some(1)));
    assert!(lines.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));

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
        assert!(text.starts_with("<svg ") && text.contains("xmlns=\"http://www.w3.org/2000/svg\""), "{text}");
        assert!(text.trim_end().ends_with("</svg>") && !text.contains("<script"), "{text}");
    }
    // A bad capacity is an error before anything runs.
    let bad = Outputs { event_capacity: Some(0), ..inst };
    let e = bad.open(&FILES).unwrap_err().to_string();
    assert!(e.starts_with("--event-capacity: event log capacity 0 is not in 1..="), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
