//! `dartemu bench`, end to end. One run only: every run builds the docs/design.md §8
//! system (1 GiB mapped), which takes seconds, so this runs the cheapest
//! workload for the shortest time that still exercises rounds and the
//! baseline.

use serde_json::Value;

/// The JSON lines and the `--report` directory of one two-round run.
#[test]
fn rounds_report_the_median_with_its_spread_and_paired_ratios() {
    let dir = std::env::temp_dir().join(format!("dartemu-bench-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dartemu"))
        .env("DARTEMU_PROGRESS", "always")
        .args([
            "bench",
            "--report",
            dir.to_str().unwrap(),
            "--rounds",
            "2",
            "--seconds",
            "0.05",
            "--workload",
            "translate-hot",
            "--baseline",
            "vm-memory",
            "--json",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("round 2/2"), "no round in the progress bar: {stderr:?}");
    assert!(stderr.contains("4/4 measurements"), "{stderr:?}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let impls: Vec<_> = lines.iter().map(|f| (f["workload"].as_str().unwrap(), f["impl"].as_str().unwrap())).collect();
    assert_eq!(impls, [("translate-hot", "dartemu"), ("translate-hot", "vm-memory")], "{stdout}");
    assert!(stdout.lines().all(|l| l.contains("\"rounds\":2")), "{stdout}");
    for f in &lines {
        assert_eq!(f["rounds"], 2, "{f}");
        let ns = |k: &str| f[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {f}"));
        assert!(ns("ns_per_op_min") <= ns("ns_per_op") && ns("ns_per_op") <= ns("ns_per_op_max"), "{f}");
        assert!(ns("ns_per_op_min") > 0.0, "{f}");
    }
    let (d, b) = (&lines[0], &lines[1]);
    let r = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {d}"));
    assert!(r("vs_baseline_min") <= r("vs_baseline") && r("vs_baseline") <= r("vs_baseline_max"), "{d}");
    assert!(r("vs_baseline_min") > 0.0, "{d}");
    for k in ["vs_baseline", "vs_baseline_min", "vs_baseline_max"] {
        assert!(b.get(k).is_none(), "the baseline has no {k}: {b}");
    }
    // The report holds the same figures as the JSON lines, and the plot's rows.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap();
    assert_eq!(report["figures"], Value::Array(lines.clone()), "{report}");
    let rows: Vec<_> = report["throughput"].as_array().unwrap().iter().map(|r| r["workload"].clone()).collect();
    assert_eq!(rows, ["translate-hot", "translate-hot"], "{report}");
    let imps: Vec<_> = report["throughput"].as_array().unwrap().iter().map(|r| r["implementation"].clone()).collect();
    assert_eq!(imps, ["dartemu", "vm-memory"], "{report}");
    assert!(std::fs::read_to_string(dir.join("throughput.svg")).unwrap().starts_with("<svg"));
    std::fs::remove_dir_all(&dir).unwrap();
}
