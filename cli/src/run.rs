//! `dartemu` and `dartemu run` (docs/design.md §7): finding the scenario files,
//! running them with the instrumentation flags, and the verdict table.

use crate::report::write_run_report;
use crate::trace::{write_events, write_trace};
use coprocessor_sim::scenario::run::{run_scenario, run_scenario_recorded, Base, RunRecord, ScenarioResult};
use coprocessor_sim::scenario::{load_scenario, ScenarioError};
use dart::events::{CapacityError, EventLog};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The instrumentation flags of a run (docs/design.md §5, §7).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct Instrument {
    /// Write every event (map, unmap, flush, fault, RPC, frame events,
    /// violations, MMIO, watched DMA) to FILE as JSON Lines.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Write a Chrome trace-event JSON file (opens in Perfetto's UI).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write report.json and SVG plots (faults by code, IOTLB hit rate) to DIR.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Events kept per scenario; more are dropped and counted.
    #[arg(long, value_name = "N", default_value_t = 1 << 18)]
    pub event_capacity: usize,
}

impl Instrument {
    /// Whether events must be recorded (for `--events` or `--trace`).
    pub fn records_events(&self) -> bool {
        self.events.is_some() || self.trace.is_some()
    }
}

/// Why an instrumented run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A scenario could not be read (exit status 2).
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// `--event-capacity` out of range.
    #[error("--event-capacity: {0}")]
    Capacity(#[from] CapacityError),
    /// An output file could not be written.
    #[error("writing {path}: {source}")]
    Output {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Loads every file, runs them all recording what `inst` asks for, and
/// writes its outputs; returns the verdicts. Events, when recorded, go to
/// one log drained after each scenario (so `--event-capacity` is per
/// scenario) and share one clock, so a trace shows the scenarios one after
/// the other. Dropped events are reported on stderr and in `report.json`.
pub fn run_instrumented(files: &[PathBuf], base: Base, inst: &Instrument) -> Result<Vec<ScenarioResult>, CliError> {
    if inst == &Instrument::default() || (!inst.records_events() && inst.report.is_none()) {
        return Ok(run_files(files, base)?);
    }
    let scenarios = files.iter().map(|f| load_scenario(f)).collect::<Result<Vec<_>, _>>()?;
    let log = if inst.records_events() {
        let log = Arc::new(EventLog::new(inst.event_capacity)?);
        log.set_enabled(true);
        Some(log)
    } else {
        None
    };
    let records: Vec<RunRecord> = scenarios.iter().map(|s| run_scenario_recorded(s, base, log.as_ref())).collect();
    let dropped = log.as_ref().map_or(0, |l| l.dropped());
    if dropped > 0 {
        eprintln!("dartemu: {dropped} events dropped (log full); raise --event-capacity");
    }
    let out_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CliError::Output { path, source }
    };
    if let Some(path) = &inst.events {
        write_events(path, &records).map_err(out_err(path))?;
    }
    if let Some(path) = &inst.trace {
        write_trace(path, &records).map_err(out_err(path))?;
    }
    if let Some(dir) = &inst.report {
        write_run_report(dir, &records, dropped).map_err(out_err(dir))?;
    }
    Ok(records.into_iter().map(|r| r.result).collect())
}

/// Finds the `*.toml` files of `paths` (files as given, folders searched
/// recursively), sorted. A missing path is an error naming it.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out).map_err(|e| ScenarioError {
                file: p.clone(),
                line: 0,
                reason: e.to_string(),
                limit: None,
            })?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(ScenarioError {
                file: p.clone(),
                line: 0,
                reason: "no such file or folder".into(),
                limit: None,
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Loads every file first (any unreadable one stops the run: exit status 2),
/// then runs them all.
pub fn run_files(files: &[PathBuf], base: Base) -> Result<Vec<ScenarioResult>, ScenarioError> {
    let scenarios = files.iter().map(|f| load_scenario(f)).collect::<Result<Vec<_>, _>>()?;
    Ok(scenarios.iter().map(|s| run_scenario(s, base)).collect())
}

/// Writes the verdict table: one row per scenario, then the failing steps.
pub fn print_table(out: &mut dyn Write, results: &[ScenarioResult]) -> std::io::Result<()> {
    let width = results.iter().map(|r| r.file.display().to_string().len()).max().unwrap_or(8).clamp(8, 60);
    writeln!(out, "{:<6} {:<width$} {:>5}  scenario", "verdict", "file", "steps")?;
    for r in results {
        let verdict = if r.passed() { "pass" } else { "FAIL" };
        let passed = r.steps.iter().filter(|s| s.passed).count();
        writeln!(
            out,
            "{:<7} {:<width$} {:>2}/{:<2}  {}",
            verdict,
            r.file.display().to_string(),
            passed,
            r.steps.len(),
            r.name
        )?;
    }
    print_overlap(out, results)?;
    let failing: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    if !failing.is_empty() {
        writeln!(out, "\nfailing steps:")?;
        for r in failing {
            if let Some(e) = &r.setup_error {
                writeln!(out, "  {}: setup: {e}", r.file.display())?;
            }
            for s in r.steps.iter().filter(|s| !s.passed) {
                writeln!(
                    out,
                    "  {}:{}: step {} ({}): expected {}, got {}{}{}",
                    r.file.display(),
                    s.line,
                    s.step,
                    s.op,
                    s.expect,
                    s.actual,
                    if s.detail.is_empty() { "" } else { ": " },
                    s.detail
                )?;
            }
        }
    }
    let pass = results.iter().filter(|r| r.passed()).count();
    writeln!(out, "\n{pass} passed, {} failed", results.len() - pass)
}

/// Writes how much every race's threads overlapped: per race, the
/// iterations in which steps of different threads were executing at once,
/// then each thread's steps.
pub fn print_overlap(out: &mut dyn Write, results: &[ScenarioResult]) -> std::io::Result<()> {
    let races: Vec<_> =
        results.iter().flat_map(|r| r.steps.iter().filter_map(move |s| Some((r, s, s.overlap.as_ref()?)))).collect();
    if races.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nrace overlap (iterations in which steps of different threads ran at the same time):")?;
    for (r, s, o) in races {
        writeln!(
            out,
            "  {}:{}: step {}: {}/{} iterations ({:.1}%)",
            r.file.display(),
            s.line,
            s.step,
            o.overlapped,
            o.iterations,
            100.0 * o.fraction()
        )?;
        for st in &o.steps {
            writeln!(
                out,
                "    thread {} step {} ({}, line {}): {:.1}%",
                st.thread,
                st.step,
                st.op,
                st.line,
                100.0 * st.fraction(o.iterations)
            )?;
        }
    }
    Ok(())
}

/// The shipped catalogue folder: `scenarios/` at the workspace root (found
/// from the current directory, else from where this crate was built).
pub fn catalogue_dir() -> PathBuf {
    let here = PathBuf::from("scenarios");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
}
