//! The `dartemu` command line (SPEC §7), as a library so tests can drive it.

use crate::runner::{run_scenario, Base, ScenarioResult};
use crate::scenario::{load_scenario, ScenarioError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Finds the `*.toml` files of `paths` (files as given, folders searched
/// recursively), sorted. A missing path is an error naming it.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out).map_err(|e| ScenarioError { file: p.clone(), line: 0, reason: e.to_string() })?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(ScenarioError { file: p.clone(), line: 0, reason: "no such file or folder".into() });
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

/// The shipped catalogue folder: `scenarios/` at the workspace root (found
/// from the current directory, else from where this crate was built).
pub fn catalogue_dir() -> PathBuf {
    let here = PathBuf::from("scenarios");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
}
