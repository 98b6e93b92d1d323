//! `dartemu bench` (docs/design.md §8): runs the throughput workloads of
//! [`dartemu_bench`] and prints a table or JSON Lines.

use dartemu_bench::{BenchError, BenchOptions, BenchSystem, Figure, Progress, Workload};
use std::io::Write;

/// Parses `--workload`: `all`, or a comma-separated list of docs/design.md §8 names.
pub fn parse_workloads(spec: &str) -> Result<Vec<Workload>, BenchError> {
    if spec == "all" {
        return Ok(Workload::ALL.to_vec());
    }
    spec.split(',').map(|w| w.trim().parse::<Workload>().map_err(|e| BenchError::Options(e.to_string()))).collect()
}

/// Width of the `spread` column: `min–max` ns/op over the rounds.
const SPREAD_WIDTH: usize = 15;

/// Writes one figure as a table row; with `spread`, the `min–max` ns/op of
/// its rounds after its ns/op. The last column, `vs own`, gives the medians
/// of its ratios to dartemu's other figures of the same run (to `raw4k`,
/// to `translate`, to one thread; [`Figure::vs_raw4k`] and the like).
fn row(out: &mut dyn Write, f: &Figure, spread: bool) -> std::io::Result<()> {
    let ratio = f.vs_baseline.map(|r| format!("{r:.2}x")).unwrap_or_default();
    let gib = if f.gib_per_s > 0.0 { format!("{:.2}", f.gib_per_s) } else { String::new() };
    let spread = if spread {
        format!(" {:>SPREAD_WIDTH$}", format!("{:.1}–{:.1}", f.ns_per_op_min, f.ns_per_op_max))
    } else {
        String::new()
    };
    let other = [(f.vs_raw4k, "raw4k"), (f.vs_translate, "translate"), (f.vs_one_thread, "1 thread")]
        .iter()
        .filter_map(|(r, of)| r.map(|r| format!("{:.2}x {of}", r.median)))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        out,
        "{:<16} {:<9} {:>7} {:>12} {:>6.2} {:>9.1}{spread} {:>9.2} {:>7} {:>9}  {other}",
        f.workload,
        f.implementation.name(),
        f.threads,
        f.ops,
        f.secs,
        f.ns_per_op,
        f.mops,
        gib,
        ratio
    )
}

/// Writes the table header; with `spread`, the `spread` column of [`row`].
fn header(out: &mut dyn Write, spread: bool) -> std::io::Result<()> {
    let spread = if spread { format!(" {:>SPREAD_WIDTH$}", "spread") } else { String::new() };
    writeln!(
        out,
        "{:<16} {:<9} {:>7} {:>12} {:>6} {:>9}{spread} {:>9} {:>7} {:>9}  vs own",
        "workload", "impl", "threads", "ops", "secs", "ns/op", "Mops/s", "GiB/s", "vs base"
    )
}

/// Runs `opts` with a progress bar on standard error (drawn as `mode`
/// says: nothing when it is not a terminal, unless forced), then writes the
/// figures: as JSON Lines on `json` when given, and as a table on `table`.
/// Returns the figures.
///
/// With more than one round, the progress bar names the round (`round
/// 2/5`) and the table gains a `spread` column: the fastest and slowest
/// rounds' ns/op (`min–max`) beside the median round's.
pub fn bench(
    opts: &BenchOptions,
    json: Option<&mut dyn Write>,
    table: &mut dyn Write,
    mode: crate::progress::Mode,
) -> Result<Vec<Figure>, BenchError> {
    opts.check()?;
    let bar = mode.bar(
        (opts.workloads.len() * opts.threads.len() * opts.rounds * if opts.baseline { 2 } else { 1 }) as u64,
        "[{elapsed_precise}] {bar:30} {pos}/{len} measurements  {msg}",
    );
    bar.set_message(format!(
        "building the docs/design.md §8 system (1 GiB mapped in 16 KiB pages, {} IOTLB entries)",
        opts.iotlb_entries
    ));
    bar.tick();
    let sys = BenchSystem::new(dart::Variant::T8110, opts.iotlb_entries)?;
    let mut progress = |p: Progress| {
        let round = if p.rounds > 1 { format!("round {}/{} ", p.round, p.rounds) } else { String::new() };
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!(
            "{round}{} {} threads={} {:.1}/{:.1} s",
            p.workload,
            p.implementation.name(),
            p.threads,
            p.elapsed,
            p.seconds
        ));
    };
    let figures = dartemu_bench::run(&sys, opts, &mut progress, &mut |_| {})?;
    bar.set_position(bar.length().unwrap_or(0));
    bar.finish();
    let io = |e: std::io::Error| BenchError::Options(format!("writing results: {e}"));
    if let Some(out) = json {
        for f in &figures {
            serde_json::to_writer(&mut *out, f).map_err(|e| BenchError::Options(format!("writing results: {e}")))?;
            writeln!(out).map_err(io)?;
        }
        out.flush().map_err(io)?;
    }
    let spread = opts.rounds > 1;
    header(table, spread).map_err(io)?;
    for f in &figures {
        row(table, f, spread).map_err(io)?;
    }
    table.flush().map_err(io)?;
    Ok(figures)
}

/// Writes `bench.json` (every figure, with its rounds' spread and paired
/// ratios) and `throughput.svg` ([`crate::report`]) for `figures` into
/// `dir`; each row names its workload and implementation.
pub fn write_report(dir: &std::path::Path, figures: &[Figure]) -> Result<(), BenchError> {
    let rows: Vec<crate::report::ThroughputPoint> = figures
        .iter()
        .map(|f| crate::report::ThroughputPoint {
            workload: f.workload.clone(),
            implementation: f.implementation.name().to_owned(),
            threads: f.threads as u32,
            mops: f.mops,
        })
        .collect();
    crate::report::write_bench_report(dir, &rows, &figures)
        .map(drop)
        .map_err(|e| BenchError::Options(format!("writing the report to {}: {e}", dir.display())))
}
