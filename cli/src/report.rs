//! Run reports (docs/design.md §5): `report.json` with every scenario's counters, and
//! self-contained SVG plots drawn with `plotters` (no script, no external
//! asset, no font file) of faults by code and IOTLB hit rate per stream;
//! for `dartemu bench`, `bench.json` and a throughput plot.

use coprocessor_sim::scenario::run::RunRecord;
use dart::stats::{Counter, CounterSet, FAULT_CODES};
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// One throughput measurement, as `dartemu bench` reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ThroughputPoint {
    /// The workload (`translate`, `dma4k`, …).
    pub workload: String,
    /// Who ran it: `dartemu`, or the `vm-memory` baseline.
    pub implementation: String,
    /// Threads it ran on.
    pub threads: u32,
    /// Million operations per second (all threads together).
    pub mops: f64,
}

/// Series colours.
const PALETTE: [RGBColor; 4] =
    [RGBColor(0x4e, 0x79, 0xa7), RGBColor(0xf2, 0x8e, 0x2b), RGBColor(0x59, 0xa1, 0x4f), RGBColor(0xb0, 0x7a, 0xa1)];

/// One row of a horizontal bar chart: its label and, per series, the value
/// and the text written after the bar (`None`: no bar of that series).
pub type BarRow = (String, Vec<Option<(f64, String)>>);

/// Pixels per half bar: a bar is two units of the y axis high.
const UNIT: u32 = 9;

/// The bar charts' mesh: no row lines or ticks, `$lines` light lines on
/// the value axis, both axes labelled (one body for the linear and the
/// logarithmic value axis, whose coordinate types differ).
macro_rules! draw_mesh {
    ($chart:ident, $lines:expr, $label:ident, $x_desc:expr) => {
        let _ = $chart
            .configure_mesh()
            .disable_y_mesh()
            .set_tick_mark_size(LabelAreaPosition::Left, 0)
            .x_max_light_lines($lines)
            .y_labels(2)
            .y_label_formatter(&$label)
            .x_label_formatter(&|v| trim(*v))
            .x_desc($x_desc)
            .axis_desc_style(("sans-serif", 13))
            .label_style(("sans-serif", 12))
            .draw();
    };
}

/// A horizontal bar chart as SVG text (drawn with `plotters`): one group
/// of bars per row, one bar per series (named in a legend when there is
/// more than one), the row's label on the left and each value's text after
/// its bar. The x axis is logarithmic with `log` (for values spanning
/// decades), else linear from 0 to `max` (the largest value if `None`).
pub fn bar_chart_svg(
    title: &str,
    x_desc: &str,
    series: &[&str],
    rows: &[BarRow],
    log: bool,
    max: Option<f64>,
) -> String {
    let k = series.len().max(1) as i32;
    let group = 2 * k + 1;
    let n = rows.len().max(1) as i32;
    // One more group on top for the legend.
    let total = group * (n + 1);
    let label_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(8).clamp(8, 48) as u32 * 7 + 16;
    let height = total as u32 * UNIT + 110;
    let width = label_width + 620;
    let values = || rows.iter().flat_map(|r| r.1.iter().flatten().map(|v| v.0)).filter(|v| v.is_finite());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 16))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(label_width);
        b.set_label_area_size(LabelAreaPosition::Left, label_width);
        // Row labels are drawn by `draw_bars`, right-aligned beside the axis.
        let label = |_: &i32| String::new();
        let y_of = |i: usize, j: usize| -> i32 {
            let base = (n - 1 - i as i32) * group + 1;
            base + 2 * (k - 1 - j as i32)
        };
        if log {
            let lo = values().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
            let hi = values().fold(0.0, f64::max);
            let (lo, hi) = if lo.is_finite() && hi > 0.0 { (lo, hi) } else { (0.1, 1.0) };
            let lo = 10f64.powf(lo.log10().floor());
            let hi = 10f64.powf((hi * 8.0).log10().ceil());
            let chart = b.build_cartesian_2d((lo..hi).log_scale(), 0..total);
            let Ok(mut chart) = chart else { return svg_error(title) };
            draw_mesh!(chart, if log { 8 } else { 1 }, label, x_desc);
            draw_bars(&root, &mut chart, series, rows, lo, y_of);
        } else {
            let hi = match max {
                Some(m) => m * 1.15,
                None => values().fold(0.0, f64::max).max(f64::MIN_POSITIVE) * 1.25,
            };
            let chart = b.build_cartesian_2d(0.0..hi, 0..total);
            let Ok(mut chart) = chart else { return svg_error(title) };
            draw_mesh!(chart, if log { 8 } else { 1 }, label, x_desc);
            draw_bars(&root, &mut chart, series, rows, 0.0, y_of);
        }
        if rows.is_empty() {
            let _ = root.draw(&Text::new(
                "(no data)",
                (label_width as i32 + 40, 70),
                ("sans-serif", 13).into_font().color(&BLACK),
            ));
        }
        let _ = root.present();
    }
    svg
}

/// The bars, value texts, row labels and legend of [`bar_chart_svg`] on
/// `chart`, drawn on `root`.
fn draw_bars<'a, 'b: 'a, X>(
    root: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordi32>>,
    series: &[&str],
    rows: &[BarRow],
    x0: f64,
    y_of: impl Fn(usize, usize) -> i32,
) where
    X: Ranged<ValueType = f64>,
{
    for (j, name) in series.iter().enumerate() {
        let colour = PALETTE[j % PALETTE.len()];
        let bars: Vec<_> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.1.get(j).cloned().flatten().map(|v| (i, v)))
            .map(|(i, (v, text))| {
                let y = y_of(i, j);
                let v = if v.is_finite() { v.max(x0) } else { x0 };
                let bar = Rectangle::new([(x0, y), (v, y + 2)], colour.filled());
                let label = EmptyElement::at((v, y + 2))
                    + Text::new(text, (5, 3), ("sans-serif", 12).into_font().color(&BLACK));
                (bar, label)
            })
            .collect();
        let (rects, texts): (Vec<_>, Vec<_>) = bars.into_iter().unzip();
        if let Ok(anno) = chart.draw_series(rects) {
            if series.len() > 1 {
                anno.label(*name).legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
            }
        }
        let _ = chart.draw_series(texts);
    }
    let k = series.len().max(1);
    let style = ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, r) in rows.iter().enumerate() {
        // The middle of the row's bars: the top of its lowest bar plus k - 1 units.
        let y = y_of(i, k - 1) + k as i32;
        let (px, py) = chart.backend_coord(&(x0, y));
        let _ = root.draw(&Text::new(r.0.clone(), (px - 8, py), style.clone()));
    }
    if series.len() > 1 {
        let _ = chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw();
    }
}

/// A chart that could not be laid out: its title and a note.
fn svg_error(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"80\"><text x=\"10\" y=\"30\">{}: the chart could not be drawn</text></svg>\n",
        title.replace('&', "&amp;").replace('<', "&lt;")
    )
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
    let faults = faults_by_code(records);
    let total: u64 = faults.iter().map(|f| f.1).sum();
    let rows: Vec<BarRow> = faults.into_iter().map(|(c, n)| (c, vec![Some((n as f64, n.to_string()))])).collect();
    bar_chart_svg(
        &format!("DMA faults by code ({total} in {} scenarios)", records.len()),
        "faults (all DARTs of all scenarios)",
        &["faults"],
        &rows,
        false,
        None,
    )
}

/// The IOTLB-hit-rate-per-stream bar chart of `records`: streams of the
/// same DART name and number are added up across scenarios, as the title says.
pub fn hit_rate_svg(records: &[RunRecord]) -> String {
    let rows: Vec<BarRow> = iotlb_by_stream(records)
        .into_iter()
        .map(|(k, h, m)| {
            let rate = 100.0 * h as f64 / (h + m) as f64;
            (format!("{k} ({} lookups)", h + m), vec![Some((rate, format!("{rate:.1}%")))])
        })
        .collect();
    bar_chart_svg(
        &format!("IOTLB hit rate per DART stream (same-named streams added up over {} scenarios)", records.len()),
        "hit rate (%): hits / lookups of every scenario's DART of that name and stream",
        &["hit rate"],
        &rows,
        false,
        Some(100.0),
    )
}

/// Throughput per workload (and thread count, when several were run):
/// dartemu's bar and the `vm-memory` baseline's side by side, on a
/// logarithmic axis so workloads a hundred times slower stay visible.
pub fn throughput_svg(rows: &[ThroughputPoint]) -> String {
    let mut keys: Vec<(&str, u32)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.workload.as_str(), r.threads)) {
            keys.push((&r.workload, r.threads));
        }
    }
    let several_threads = keys.iter().any(|k| k.1 != keys[0].1);
    let baseline = rows.iter().any(|r| r.implementation != "dartemu");
    let series: &[&str] = if baseline { &["dartemu", "baseline: vm-memory crate's Iotlb"] } else { &["dartemu"] };
    let bars: Vec<BarRow> = keys
        .iter()
        .map(|(w, t)| {
            // `dma4k-vm-memory` is dartemu too, behind vm-memory's API: say so.
            let name = if *w == "dma4k-vm-memory" { "dma4k-vm-memory (dartemu via vm-memory's API)" } else { w };
            let label = if several_threads {
                format!("{name}, {t} thread{}", if *t == 1 { "" } else { "s" })
            } else {
                name.to_owned()
            };
            let of = |dartemu: bool| {
                rows.iter()
                    .find(|r| r.workload == *w && r.threads == *t && (r.implementation == "dartemu") == dartemu)
                    .map(|r| (r.mops, format!("{:.3} Mops/s", r.mops)))
            };
            (label, if baseline { vec![of(true), of(false)] } else { vec![of(true)] })
        })
        .collect();
    bar_chart_svg(
        "Throughput per workload (million operations per second, log scale)",
        "Mops/s, all threads together (log scale)",
        series,
        &bars,
        true,
        None,
    )
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

/// The files of a run report folder.
pub const RUN_REPORT_FILES: [&str; 3] = ["report.json", "faults-by-code.svg", "iotlb-hit-rate.svg"];

/// The files of a `dartemu bench` report folder.
pub const BENCH_REPORT_FILES: [&str; 2] = ["bench.json", "throughput.svg"];

/// Makes `dir` (with its parents) and creates each of `files` in it, so an
/// unwritable report folder is found before anything runs.
pub fn check_report_dir(dir: &Path, files: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for f in files {
        std::fs::File::create(dir.join(f))?;
    }
    Ok(())
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

    fn point(workload: &str, implementation: &str, threads: u32, mops: f64) -> ThroughputPoint {
        ThroughputPoint { workload: workload.into(), implementation: implementation.into(), threads, mops }
    }

    #[test]
    fn bar_chart_labels_escapes_and_draws_one_rect_per_value() {
        let rows: Vec<BarRow> =
            vec![("x&y".into(), vec![Some((5.0, "5".into()))]), ("z".into(), vec![Some((10.0, "10".into()))])];
        let svg = bar_chart_svg("a <b>", "count", &["n"], &rows, false, None);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("x&amp;y") && svg.contains("\nz\n"), "{svg}");
        assert!(!svg.contains("<script") && !svg.contains("href"));
        let empty = bar_chart_svg("t", "x", &["n"], &[], false, None);
        assert!(empty.contains("(no data)"), "{empty}");
    }

    #[test]
    fn throughput_chart_pairs_dartemu_with_its_baseline_on_a_log_axis() {
        let rows = [
            point("translate-hot", "dartemu", 1, 400.0),
            point("translate-hot", "vm-memory", 1, 300.0),
            point("dma4k", "dartemu", 1, 2.0),
            point("dma4k", "vm-memory", 1, f64::NAN),
        ];
        let svg = throughput_svg(&rows);
        for text in
            ["translate-hot", "dma4k", "400.000 Mops/s", "2.000 Mops/s", "log scale", "baseline: vm-memory crate"]
        {
            assert!(svg.contains(text), "{text} missing: {svg}");
        }
        // No rotated labels, no workload spelled `(vm-memory)`.
        assert!(!svg.contains("rotate") && !svg.contains("(vm-memory)"), "{svg}");
        let threads = throughput_svg(&[point("translate", "dartemu", 1, 4.0), point("translate", "dartemu", 2, 8.0)]);
        assert!(
            threads.contains("\ntranslate, 1 thread\n") && threads.contains("\ntranslate, 2 threads\n"),
            "{threads}"
        );
    }
}
