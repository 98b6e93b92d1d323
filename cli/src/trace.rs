//! The event files of `--events` (JSON Lines) and `--trace` (Chrome
//! trace-event JSON) for recorded runs; the events themselves are recorded by
//! the scenario runner and laid out by [`dart::trace_event`].

use coprocessor_sim::scenario::run::RunRecord;
use dart::trace_event::{chrome_trace, TraceRun};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes every event of `records` as one JSON object per line, with the
/// scenario file in `run`.
pub fn write_events(path: &Path, records: &[RunRecord]) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for r in records {
        let run = serde_json::to_string(&r.result.file.display().to_string()).map_err(std::io::Error::other)?;
        for e in &r.events {
            // `{"run":…,` then the event's own fields, in their order.
            let line = e.to_json_line();
            writeln!(out, "{{\"run\":{run},{}", line.strip_prefix('{').unwrap_or("}"))?;
        }
    }
    out.flush()
}

/// Writes the Chrome trace-event JSON of `records` (one group of tracks per scenario).
pub fn write_trace(path: &Path, records: &[RunRecord]) -> std::io::Result<()> {
    let labels: Vec<String> = records.iter().map(|r| r.result.file.display().to_string()).collect();
    let runs: Vec<TraceRun<'_>> = records
        .iter()
        .zip(&labels)
        .map(|(r, label)| TraceRun { label, events: &r.events, counters: &r.samples, slices: &r.steps })
        .collect();
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer(&mut out, &chrome_trace(&runs)).map_err(std::io::Error::other)?;
    out.flush()
}
