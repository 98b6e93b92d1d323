//! `dartemu` and `dartemu run` (docs/design.md §7): finding the scenario files (on
//! disk or embedded in the binary), opening the output files before
//! anything runs, running the scenarios with the instrumentation options,
//! and the verdict table.

use crate::report::{check_report_dir, write_run_report};
use crate::trace::{write_events, write_trace};
use coprocessor_sim::scenario::run::{run_scenario, run_scenario_recorded, Base, RunRecord, ScenarioResult};
use coprocessor_sim::scenario::{load_scenario, parse_scenario, Scenario, ScenarioError};
use dart::events::{CapacityError, EventLog};
use indicatif::ProgressBar;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));
}

/// The shipped catalogue, embedded at build time: `(name, text)` of every
/// `scenarios/**/*.toml`, sorted by name.
pub static CATALOGUE: &[(&str, &str)] = embedded::CATALOGUE;

/// How embedded files are named in messages and verdicts
/// (`catalogue:NAME.toml:LINE`), and how `dartemu run` names them
/// (`catalogue:` for all of them, `catalogue:NAME.toml` for one).
pub const CATALOGUE_PREFIX: &str = "catalogue:";

/// Events kept per scenario unless `--event-capacity` says otherwise.
pub const DEFAULT_EVENT_CAPACITY: usize = 1 << 18;

/// One scenario to load: a file on disk, or one embedded in the binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file on disk.
    File(PathBuf),
    /// A file of [`CATALOGUE`].
    Embedded {
        /// Its name under `scenarios/`.
        name: &'static str,
        /// Its text.
        text: &'static str,
    },
}

impl Source {
    /// The path messages and verdicts name it by: the file, or
    /// `catalogue:NAME.toml`.
    pub fn path(&self) -> PathBuf {
        match self {
            Source::File(p) => p.clone(),
            Source::Embedded { name, .. } => PathBuf::from(format!("{CATALOGUE_PREFIX}{name}")),
        }
    }

    /// Reads and parses it.
    pub fn load(&self) -> Result<Scenario, ScenarioError> {
        match self {
            Source::File(p) => load_scenario(p),
            Source::Embedded { text, .. } => parse_scenario(text, &self.path()),
        }
    }
}

/// Every file of the embedded catalogue.
pub fn embedded_catalogue() -> Vec<Source> {
    CATALOGUE.iter().map(|(name, text)| Source::Embedded { name, text }).collect()
}

/// What the bare `dartemu` runs: `./scenarios` when the current folder has
/// one (an override, e.g. in the source tree), else the embedded catalogue.
pub fn catalogue() -> Collected {
    let here = PathBuf::from("scenarios");
    if here.is_dir() {
        collect(&[here])
    } else {
        Collected { sources: embedded_catalogue(), errors: Vec::new() }
    }
}

/// The scenarios found for a run, and every path that could not be used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// The files to load, in order.
    pub sources: Vec<Source>,
    /// Paths that were missing, unreadable folders, or folders without a
    /// `*.toml` (line 0).
    pub errors: Vec<ScenarioError>,
}

fn path_error(file: &Path, reason: impl Into<String>) -> ScenarioError {
    ScenarioError { file: file.to_path_buf(), line: 0, reason: reason.into(), limit: None }
}

/// Finds the `*.toml` files of `paths`: files as given, folders searched
/// recursively (sorted), `catalogue:` for the embedded catalogue and
/// `catalogue:NAME.toml` for one of its files. A missing path, an
/// unreadable folder and a folder with no `*.toml` are errors naming the
/// path; the other paths are still collected.
pub fn collect(paths: &[PathBuf]) -> Collected {
    let mut c = Collected::default();
    for p in paths {
        if let Some(name) = p.to_str().and_then(|s| s.strip_prefix(CATALOGUE_PREFIX)) {
            let found: Vec<Source> = embedded_catalogue()
                .into_iter()
                .filter(|s| name.is_empty() || matches!(s, Source::Embedded { name: n, .. } if *n == name))
                .collect();
            if found.is_empty() {
                c.errors.push(path_error(p, "no such file in the embedded catalogue"));
            }
            c.sources.extend(found);
        } else if p.is_dir() {
            let mut files = Vec::new();
            match walk(p, &mut files) {
                Err(e) => c.errors.push(path_error(p, format!("cannot read the folder: {e}"))),
                Ok(()) if files.is_empty() => c.errors.push(path_error(p, "no scenario file (*.toml) in this folder")),
                Ok(()) => c.sources.extend(files.into_iter().map(Source::File)),
            }
        } else if p.exists() {
            c.sources.push(Source::File(p.clone()));
        } else {
            c.errors.push(path_error(p, "no such file or folder"));
        }
    }
    c
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

/// Loads every source; returns the scenarios that parsed and the error of
/// every one that did not (`file:line: reason`).
pub fn load_all(sources: &[Source]) -> (Vec<Scenario>, Vec<ScenarioError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for s in sources {
        match s.load() {
            Ok(sc) => ok.push(sc),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}

/// Loads every file first (any unreadable one is an error), then runs them all.
pub fn run_files(files: &[PathBuf], base: Base) -> Result<Vec<ScenarioResult>, ScenarioError> {
    let scenarios = files.iter().map(|f| load_scenario(f)).collect::<Result<Vec<_>, _>>()?;
    Ok(scenarios.iter().map(|s| run_scenario(s, base)).collect())
}

/// The output options (docs/design.md §5, §7). They are global: they mean the same
/// before or after the command. `-` is standard output for `--events`,
/// `--trace` and `--json`; at most one of them may be `-`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Write every event (map, unmap, flush, fault, RPC, frame events,
    /// violations, MMIO, watched DMA) of the scenario runs to FILE as JSON
    /// Lines (`-`: standard output).
    #[arg(long, value_name = "FILE", global = true)]
    pub events: Option<PathBuf>,
    /// Write a Chrome trace-event JSON file of the scenario runs (opens in
    /// Perfetto's UI; `-`: standard output).
    #[arg(long, value_name = "FILE", global = true)]
    pub trace: Option<PathBuf>,
    /// Write a report folder: for scenario runs report.json and SVG plots
    /// (faults by code, IOTLB hit rate); for `bench`, bench.json and
    /// throughput.svg. Made if missing; `-` is refused.
    #[arg(long, value_name = "DIR", global = true)]
    pub report: Option<PathBuf>,
    /// Events kept per scenario (default 262144); more are dropped and counted.
    #[arg(long, value_name = "N", global = true)]
    pub event_capacity: Option<usize>,
    /// Results as JSON: a pretty array of scenario results, or for `bench`
    /// one JSON object per figure and line. To standard output, or to FILE
    /// with `--json=FILE`.
    #[arg(long, value_name = "FILE", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    pub json: Option<PathBuf>,
}

fn is_stdout(p: &Option<PathBuf>) -> bool {
    p.as_deref().is_some_and(|p| p == Path::new("-"))
}

impl Outputs {
    /// Whether events must be recorded (for `--events` or `--trace`).
    pub fn records_events(&self) -> bool {
        self.events.is_some() || self.trace.is_some()
    }

    /// Whether one option writes to standard output (then the verdict table
    /// goes to standard error).
    pub fn uses_stdout(&self) -> bool {
        is_stdout(&self.events) || is_stdout(&self.trace) || is_stdout(&self.json)
    }

    /// Rejects `--report -` and more than one option writing to standard output.
    pub fn check(&self) -> Result<(), CliError> {
        if is_stdout(&self.report) {
            return Err(CliError::Usage("--report takes a folder; `-` (standard output) is not one".into()));
        }
        let dashes: Vec<&str> = [("--events", &self.events), ("--trace", &self.trace), ("--json", &self.json)]
            .into_iter()
            .filter(|(_, p)| is_stdout(p))
            .map(|(n, _)| n)
            .collect();
        if dashes.len() > 1 {
            return Err(CliError::Usage(format!(
                "{} each write to standard output (`-`); at most one may",
                dashes.join(" and ")
            )));
        }
        Ok(())
    }

    /// Rejects the options that only scenario runs use (`--events`,
    /// `--trace`, `--event-capacity`, and those in `also`) for `command`.
    pub fn reject_for(&self, command: &str, also: &[&str]) -> Result<(), CliError> {
        let given = [
            ("--events", self.events.is_some()),
            ("--trace", self.trace.is_some()),
            ("--event-capacity", self.event_capacity.is_some()),
            ("--report", self.report.is_some()),
            ("--json", self.json.is_some()),
        ];
        for (name, set) in given {
            let scenario_only = matches!(name, "--events" | "--trace" | "--event-capacity");
            if set && scenario_only {
                return Err(CliError::Usage(format!(
                    "{name} does not apply to `{command}`: it is for scenario runs (`dartemu` or `dartemu run`)"
                )));
            }
            if set && also.contains(&name) {
                return Err(CliError::Usage(format!("{name} does not apply to `{command}`")));
            }
        }
        Ok(())
    }

    /// Checks the options and creates every output before anything runs: the
    /// `--events`, `--trace` and `--json` files (or standard output), and the
    /// `--report` folder with the files `report_files` (so an unwritable path
    /// is found at once).
    pub fn open(&self, report_files: &[&str]) -> Result<OpenOutputs, CliError> {
        self.check()?;
        let event_capacity = self.event_capacity.unwrap_or(DEFAULT_EVENT_CAPACITY);
        if self.records_events() {
            // The capacity is checked before anything runs, too.
            EventLog::new(event_capacity)?;
        }
        if let Some(dir) = &self.report {
            check_report_dir(dir, report_files).map_err(|source| CliError::Output { path: dir.clone(), source })?;
        }
        Ok(OpenOutputs {
            events: self.events.as_deref().map(Sink::open).transpose()?,
            trace: self.trace.as_deref().map(Sink::open).transpose()?,
            json: self.json.as_deref().map(Sink::open).transpose()?,
            report: self.report.clone(),
            event_capacity,
        })
    }
}

/// An output file opened before the run, or standard output.
pub struct Sink {
    /// The path as given (`-` for standard output).
    pub path: PathBuf,
    out: Box<dyn Write>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Sink {
    /// Creates (truncates) `path`, or takes standard output for `-`.
    pub fn open(path: &Path) -> Result<Sink, CliError> {
        let out: Box<dyn Write> = if path == Path::new("-") {
            Box::new(BufWriter::new(std::io::stdout()))
        } else {
            let f =
                std::fs::File::create(path).map_err(|source| CliError::Output { path: path.to_path_buf(), source })?;
            Box::new(BufWriter::new(f))
        };
        Ok(Sink { path: path.to_path_buf(), out })
    }

    /// Runs `write` on the sink and flushes it; an error names the path.
    pub fn write_with(&mut self, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), CliError> {
        write(&mut self.out)
            .and_then(|()| self.out.flush())
            .map_err(|source| CliError::Output { path: self.path.clone(), source })
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// [`Outputs`] once checked and opened.
#[derive(Debug)]
pub struct OpenOutputs {
    /// `--events`.
    pub events: Option<Sink>,
    /// `--trace`.
    pub trace: Option<Sink>,
    /// `--json`.
    pub json: Option<Sink>,
    /// `--report` (made, its files creatable).
    pub report: Option<PathBuf>,
    /// `--event-capacity`, or [`DEFAULT_EVENT_CAPACITY`].
    pub event_capacity: usize,
}

/// Why a run could not complete, or an option was refused (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A scenario could not be read.
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
    /// Options that do not go together, or do not apply.
    #[error("{0}")]
    Usage(String),
}

/// Runs every scenario recording what `outs` asks for, ticking `progress`
/// once per scenario, and writes the events, trace and report; returns the
/// verdicts. Events, when recorded, go to one log drained after each
/// scenario (so `--event-capacity` is per scenario) and share one clock, so
/// a trace shows the scenarios one after the other. Dropped events are
/// reported on stderr and in `report.json`.
pub fn run_instrumented(
    scenarios: &[Scenario],
    base: Base,
    outs: &mut OpenOutputs,
    progress: &ProgressBar,
) -> Result<Vec<ScenarioResult>, CliError> {
    let tick = |s: &Scenario| {
        progress.set_message(s.file.display().to_string());
        progress.inc(1);
    };
    let records_events = outs.events.is_some() || outs.trace.is_some();
    if !records_events && outs.report.is_none() {
        return Ok(scenarios
            .iter()
            .map(|s| {
                let r = run_scenario(s, base);
                tick(s);
                r
            })
            .collect());
    }
    let log = if records_events {
        let log = Arc::new(EventLog::new(outs.event_capacity)?);
        log.set_enabled(true);
        Some(log)
    } else {
        None
    };
    let records: Vec<RunRecord> = scenarios
        .iter()
        .map(|s| {
            let r = run_scenario_recorded(s, base, log.as_ref());
            tick(s);
            r
        })
        .collect();
    let dropped = log.as_ref().map_or(0, |l| l.dropped());
    if dropped > 0 {
        progress.suspend(|| eprintln!("dartemu: {dropped} events dropped (log full); raise --event-capacity"));
    }
    if let Some(sink) = &mut outs.events {
        sink.write_with(|out| write_events(out, &records))?;
    }
    if let Some(sink) = &mut outs.trace {
        sink.write_with(|out| write_trace(out, &records))?;
    }
    if let Some(dir) = &outs.report {
        write_run_report(dir, &records, dropped).map_err(|source| CliError::Output { path: dir.clone(), source })?;
    }
    Ok(records.into_iter().map(|r| r.result).collect())
}

/// What `pass` means, printed once under the verdict table.
pub const PASS_MEANS: &str = "pass: every step's expected outcome held — for an attack, it was refused as expected";

/// Writes the verdict table: one row per scenario and what `pass` means,
/// the race overlap, the failing steps, the count of `unreadable` files
/// (listed on standard error) when there are any, and `N passed, M failed`.
pub fn print_table(out: &mut dyn Write, results: &[ScenarioResult], unreadable: usize) -> std::io::Result<()> {
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
    writeln!(out, "({PASS_MEANS})")?;
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
    if unreadable > 0 {
        let s = if unreadable == 1 { " was" } else { "s were" };
        writeln!(out, "\n{unreadable} file{s} not run: unreadable (listed on standard error; exit status 2)")?;
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
