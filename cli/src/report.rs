//! Run reports (docs/design.md §5): `report.json` with every scenario's counters, and
//! self-contained SVG plots (plain SVG text: no script, no external asset,
//! no font file) of faults by code and IOTLB hit rate per stream; for
//! `dartemu bench`, `bench.json` and a throughput plot.

use coprocessor_sim::scenario::run::RunRecord;
use dart::stats::{Counter, CounterSet, FAULT_CODES};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One throughput measurement, as `dartemu bench` reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ThroughputPoint {
    /// The workload (`translate`, `dma4k`, …).
    pub workload: String,
    /// Threads it ran on.
    pub threads: u32,
    /// Million operations per second (all threads together).
    pub mops: f64,
}

/// Bar colours, one per series.
const PALETTE: [&str; 8] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"];

/// `text` with XML's special characters escaped.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart: one labelled bar per entry, the value written
/// after it with `show`. `max` is the axis end (the largest value if `None`).
pub fn bar_chart_svg(title: &str, bars: &[(String, f64)], max: Option<f64>, show: impl Fn(f64) -> String) -> String {
    const W: f64 = 760.0;
    const LABEL: f64 = 250.0;
    const PLOT: f64 = 400.0;
    const ROW: f64 = 22.0;
    const TOP: f64 = 48.0;
    let h = TOP + ROW * bars.len().max(1) as f64 + 24.0;
    let top = max.unwrap_or_else(|| bars.iter().map(|b| b.1).fold(0.0, f64::max)).max(f64::MIN_POSITIVE);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{x}" y="24" font-size="15" font-weight="bold" text-anchor="middle">{t}</text>
<line x1="{LABEL}" y1="{y0}" x2="{LABEL}" y2="{y1}" stroke="#333"/>
"##,
        x = W / 2.0,
        t = xml(title),
        y0 = TOP - 6.0,
        y1 = h - 20.0,
    );
    if bars.is_empty() {
        let _ = writeln!(s, r##"<text x="{LABEL}" y="{}" dx="8" fill="#666">(no data)</text>"##, TOP + 14.0);
    }
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let len = (v / top).clamp(0.0, 1.0) * PLOT;
        let _ = writeln!(
            s,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text><rect x="{LABEL}" y="{y}" width="{len:.1}" height="{bh}" fill="{c}"/><text x="{vx:.1}" y="{ty}" dx="4">{v}</text>"#,
            lx = LABEL - 6.0,
            ty = y + 13.0,
            l = xml(label),
            bh = ROW - 6.0,
            c = PALETTE[0],
            vx = LABEL + len,
            v = xml(&show(*v)),
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Faults by code over `records` (DART-wide counters summed), every code
/// listed, as `(code, count)`.
pub fn faults_by_code(records: &[RunRecord]) -> Vec<(String, u64)> {
    FAULT_CODES
        .iter()
        .map(|code| {
            let name = format!("faults.{code}");
            let n = records.iter().flat_map(|r| &r.darts).map(|d| d.counters.dart.get(&name).unwrap_or(0)).sum();
            ((*code).to_owned(), n)
        })
        .collect()
}

/// IOTLB hits and misses per `DART sSID` over `records` (summed across
/// scenarios by DART name and stream), for streams that translated, sorted
/// by DART name then stream number.
pub fn iotlb_by_stream(records: &[RunRecord]) -> Vec<(String, u64, u64)> {
    let mut out: Vec<((String, usize), u64, u64)> = Vec::new();
    for d in records.iter().flat_map(|r| &r.darts) {
        for (sid, set) in d.counters.streams.iter().enumerate() {
            let hits = set.get(Counter::IotlbHits.name()).unwrap_or(0);
            let misses = set.get(Counter::IotlbMisses.name()).unwrap_or(0);
            if hits + misses == 0 {
                continue;
            }
            let key = (d.name.clone(), sid);
            match out.iter_mut().find(|e| e.0 == key) {
                Some(e) => {
                    e.1 += hits;
                    e.2 += misses;
                }
                None => out.push((key, hits, misses)),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|((dart, sid), h, m)| (format!("{dart} s{sid}"), h, m)).collect()
}

/// The faults-by-code bar chart of `records`.
pub fn faults_svg(records: &[RunRecord]) -> String {
    let bars: Vec<(String, f64)> = faults_by_code(records).into_iter().map(|(c, n)| (c, n as f64)).collect();
    let total: f64 = bars.iter().map(|b| b.1).sum();
    bar_chart_svg(&format!("DMA faults by code ({total} in {} scenarios)", records.len()), &bars, None, |v| {
        format!("{v}")
    })
}

/// The IOTLB-hit-rate-per-stream bar chart of `records`.
pub fn hit_rate_svg(records: &[RunRecord]) -> String {
    let rows = iotlb_by_stream(records);
    let bars: Vec<(String, f64)> =
        rows.iter().map(|(k, h, m)| (format!("{k} ({} lookups)", h + m), 100.0 * *h as f64 / (h + m) as f64)).collect();
    bar_chart_svg("IOTLB hit rate per stream (%)", &bars, Some(100.0), |v| format!("{v:.1}%"))
}

/// Throughput per workload and thread count: grouped vertical bars, one
/// group per workload (in first-seen order), one bar per thread count.
pub fn throughput_svg(rows: &[ThroughputPoint]) -> String {
    let mut workloads: Vec<&str> = Vec::new();
    let mut threads: Vec<u32> = Vec::new();
    for r in rows {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
        if !threads.contains(&r.threads) {
            threads.push(r.threads);
        }
    }
    threads.sort_unstable();
    const H: f64 = 420.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 50.0;
    const BOTTOM: f64 = 90.0;
    let bar = 18.0;
    let group = bar * threads.len().max(1) as f64 + 24.0;
    let w = (LEFT + group * workloads.len().max(1) as f64 + 140.0).max(480.0);
    let plot_h = H - TOP - BOTTOM;
    let max = rows.iter().map(|r| r.mops).filter(|m| m.is_finite()).fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{H}" viewBox="0 0 {w} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{x}" y="26" font-size="15" font-weight="bold" text-anchor="middle">Throughput per workload and thread count (Mops/s)</text>
"#,
        x = w / 2.0
    );
    for i in 0..=5 {
        let v = top * i as f64 / 5.0;
        let y = TOP + plot_h * (1.0 - i as f64 / 5.0);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#ddd"/><text x="{lx}" y="{ty:.1}" text-anchor="end">{v}</text>"##,
            x2 = w - 130.0,
            lx = LEFT - 6.0,
            ty = y + 4.0,
            v = trim(v),
        );
    }
    for (gi, wl) in workloads.iter().enumerate() {
        let gx = LEFT + 12.0 + group * gi as f64;
        for (ti, t) in threads.iter().enumerate() {
            let Some(r) = rows.iter().find(|r| r.workload == *wl && r.threads == *t) else { continue };
            let v = if r.mops.is_finite() { r.mops.max(0.0) } else { 0.0 };
            let bh = plot_h * (v / top).min(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw}" height="{bh:.1}" fill="{c}"><title>{wl}, {t} threads: {v:.2} Mops/s</title></rect>"#,
                x = gx + bar * ti as f64,
                y = TOP + plot_h - bh,
                bw = bar - 2.0,
                c = PALETTE[ti % PALETTE.len()],
                wl = xml(wl),
            );
        }
        let lx = gx + bar * threads.len() as f64 / 2.0;
        let ly = TOP + plot_h + 14.0;
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-35 {lx:.1} {ly:.1})">{}</text>"#,
            xml(wl)
        );
    }
    let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{y:.1}" stroke="#333"/>"##, y = TOP + plot_h);
    for (ti, t) in threads.iter().enumerate() {
        let y = TOP + 18.0 * ti as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{c}"/><text x="{tx}" y="{ty}">{t} thread{p}</text>"#,
            x = w - 120.0,
            c = PALETTE[ti % PALETTE.len()],
            tx = w - 102.0,
            ty = y + 10.0,
            p = if *t == 1 { "" } else { "s" },
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest of 1, 2, 5 × 10^k at or above `v` (1 for `v <= 0`).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|c| *c >= v).unwrap_or(10.0 * mag)
}

/// A tick value without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn counter_map(set: &CounterSet, keep_zeros: bool) -> Map<String, Value> {
    set.iter().filter(|(_, v)| keep_zeros || *v != 0).map(|(k, v)| (k, json!(v))).collect()
}

/// `report.json`: per scenario its verdict, event count, violations and
/// every DART's counters (DART-wide: every counter; per stream: the
/// non-zero ones of streams that did anything); then totals.
pub fn run_report_json(records: &[RunRecord], events_dropped: u64) -> Value {
    let scenarios: Vec<Value> = records
        .iter()
        .map(|r| {
            let darts: Vec<Value> = r
                .darts
                .iter()
                .map(|d| {
                    let streams: Map<String, Value> = d
                        .counters
                        .streams
                        .iter()
                        .enumerate()
                        .map(|(sid, set)| (format!("s{sid}"), counter_map(set, false)))
                        .filter(|(_, m)| !m.is_empty())
                        .map(|(k, m)| (k, Value::Object(m)))
                        .collect();
                    json!({
                        "name": d.name, "variant": d.variant,
                        "counters": counter_map(&d.counters.dart, true), "streams": streams,
                    })
                })
                .collect();
            json!({
                "file": r.result.file.display().to_string(),
                "name": r.result.name,
                "passed": r.result.passed(),
                "steps": r.result.steps.len(),
                "steps_passed": r.result.steps.iter().filter(|s| s.passed).count(),
                "setup_error": r.result.setup_error,
                "violations": r.violations,
                "events": r.events.len(),
                "darts": darts,
            })
        })
        .collect();
    let faults: Map<String, Value> = faults_by_code(records).into_iter().map(|(c, n)| (c, json!(n))).collect();
    let hit_rate: Vec<Value> = iotlb_by_stream(records)
        .into_iter()
        .map(
            |(k, h, m)| json!({"stream": k, "iotlb_hits": h, "iotlb_misses": m, "hit_rate": h as f64 / (h + m) as f64}),
        )
        .collect();
    json!({
        "scenarios": scenarios,
        "totals": {
            "scenarios": records.len(),
            "passed": records.iter().filter(|r| r.result.passed()).count(),
            "violations": records.iter().map(|r| r.violations).sum::<u64>(),
            "events": records.iter().map(|r| r.events.len()).sum::<usize>(),
            "events_dropped": events_dropped,
            "faults_by_code": faults,
            "iotlb_by_stream": hit_rate,
        },
    })
}

/// Writes `report.json`, `faults-by-code.svg` and `iotlb-hit-rate.svg`
/// into `dir` (made if missing). Returns the files written.
pub fn write_run_report(dir: &Path, records: &[RunRecord], events_dropped: u64) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json =
        serde_json::to_string_pretty(&run_report_json(records, events_dropped)).map_err(std::io::Error::other)?;
    let files = [
        ("report.json", json + "\n"),
        ("faults-by-code.svg", faults_svg(records)),
        ("iotlb-hit-rate.svg", hit_rate_svg(records)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}

/// Writes `bench.json` (`throughput`: the plotted rows; `figures`: the
/// full figures, as `dartemu bench --json` prints them) and
/// `throughput.svg` into `dir` (made if missing). Returns the files written.
pub fn write_bench_report(
    dir: &Path,
    rows: &[ThroughputPoint],
    figures: &impl serde::Serialize,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(&json!({ "throughput": rows, "figures": figures }))
        .map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    for (name, text) in [("bench.json", json + "\n"), ("throughput.svg", throughput_svg(rows))] {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_chart_scales_and_escapes() {
        let svg = bar_chart_svg("a <b>", &[("x&y".into(), 5.0), ("z".into(), 10.0)], None, |v| format!("{v}"));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("x&amp;y"));
        assert!(svg.contains(r#"width="200.0""#) && svg.contains(r#"width="400.0""#), "{svg}");
        assert!(!svg.contains("<script") && !svg.contains("href"));
    }

    #[test]
    fn throughput_chart_groups_by_workload_and_threads() {
        let rows = [
            ThroughputPoint { workload: "translate".into(), threads: 1, mops: 40.0 },
            ThroughputPoint { workload: "translate".into(), threads: 2, mops: 80.0 },
            ThroughputPoint { workload: "dma4k".into(), threads: 1, mops: f64::NAN },
        ];
        let svg = throughput_svg(&rows);
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("translate, 2 threads: 80.00 Mops/s"));
        assert!(svg.contains("dma4k, 1 threads: 0.00 Mops/s"));
        assert!(svg.contains(">1 thread<") && svg.contains(">2 threads<"));
        // Axis to 100 (the nice ceiling of 80): the 80 bar is 80% of the plot.
        assert!(svg.contains(r#"height="224.0""#), "{svg}");
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(80.0), 100.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(0.15), 0.2);
        assert_eq!(nice_ceiling(f64::INFINITY), 1.0);
    }
}
