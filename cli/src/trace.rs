//! The event files of `--events` (JSON Lines) and `--trace` (Chrome
//! trace-event JSON) for recorded runs; the events themselves are recorded by
//! the scenario runner and laid out by [`dart::trace_event`].

use coprocessor_sim::scenario::run::RunRecord;
use dart::trace_event::{chrome_trace, TraceRun};
use std::io::Write;

/// Writes every event of `records` to `out` as one JSON object per line,
/// with the scenario file in `run`.
pub fn write_events(out: &mut dyn Write, records: &[RunRecord]) -> std::io::Result<()> {
    for r in records {
        let run = serde_json::to_string(&r.result.file.display().to_string()).map_err(std::io::Error::other)?;
        for e in &r.events {
            // `{"run":…,` then the event's own fields, in their order.
            let line = e.to_json_line();
            writeln!(out, "{{\"run\":{run},{}", line.strip_prefix('{').unwrap_or("}"))?;
        }
    }
    Ok(())
}

/// Writes the Chrome trace-event JSON of `records` to `out` (one group of
/// tracks per scenario).
pub fn write_trace(out: &mut dyn Write, records: &[RunRecord]) -> std::io::Result<()> {
    let labels: Vec<String> = records.iter().map(|r| r.result.file.display().to_string()).collect();
    let runs: Vec<TraceRun<'_>> = records
        .iter()
        .zip(&labels)
        .map(|(r, label)| TraceRun { label, events: &r.events, counters: &r.samples, slices: &r.steps })
        .collect();
    serde_json::to_writer(&mut *out, &chrome_trace(&runs)).map_err(std::io::Error::other)?;
    writeln!(out)
}
