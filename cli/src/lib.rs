//! The `dartemu` command line (docs/design.md §7), as a library so tests can drive it:
//! the run command's verdict table and instrumentation ([`run`]), the
//! event and Chrome-trace files ([`trace`]), the SVG reports ([`report`]),
//! `dartemu bench` ([`bench`](mod@bench)) and `dartemu stress` ([`stress`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bench;
pub mod progress;
pub mod report;
pub mod run;
pub mod stress;
pub mod trace;
