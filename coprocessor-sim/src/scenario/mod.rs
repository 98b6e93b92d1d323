//! Scenario files (docs/design.md §6): a typed AST, its parser and the runner ([`run`]).
//!
//! [`parse_scenario`] turns TOML text into a [`Scenario`] with every default
//! applied, or a [`ScenarioError`] that names the file, the 1-based line and
//! what is wrong (unknown keys, missing fields, wrong types, bad values). The
//! parser checks everything that can be checked from the file alone (the
//! SoC, DART and coprocessor sections, the shape and syntax of every step);
//! the runner resolves the names that steps refer to (buffers, devices,
//! handles, DARTs) and range checks that the emulated system itself decides.
//!
//! ```
//! use coprocessor_sim::scenario::{parse_scenario, Op, Outcome};
//! use std::path::Path;
//!
//! let text = r#"
//! name = "restricted frames stay out of the DART"
//!
//! [[step]]
//! op = "alloc"
//! name = "secret"
//! type = "kernel-restricted"
//!
//! [[step]]
//! op = "map"
//! device = "dev0"
//! iova = 0x10000
//! target = "secret"
//! perm = "rw"
//! expect = "forbidden-type"
//! "#;
//! let scenario = parse_scenario(text, Path::new("example.toml")).unwrap();
//! assert_eq!(scenario.steps[1].line, 9);
//! assert!(matches!(scenario.steps[1].op, Op::Map { .. }));
//! assert_eq!(scenario.steps[1].expect, Outcome::ForbiddenType);
//!
//! let err = parse_scenario("name = \"x\"\n[[step]]\nop = \"mapp\"\n", Path::new("bad.toml")).unwrap_err();
//! assert_eq!(err.to_string(), "bad.toml:3: `op` in step 1: unknown op `mapp` (expected one of alloc, retype, free, \
//!     cpu-map, cpu-unmap, cpu-write, cpu-read, map, unmap, flush, grant, revoke, rpc, dma-read, dma-write, bypass, \
//!     mmio-write, mmio-read, pte-write, pte-read, release-table, check, race, watch, hold, release)");
//! ```

mod ast;
mod error;
mod parse;
pub mod run;
#[cfg(test)]
mod tests;

pub use ast::{
    counter_names, Address, Check, CoprocessorConfig, CounterCmp, CounterRef, DartConfig, DartVariant, FaultKind,
    FrameRef, Invalidation, Invariant, MmioValue, Op, Outcome, PteValue, RpcCall, Scenario, SocConfig, Space, Step,
    Target, DEFAULT_DART_NAME, DEFAULT_DEVICE_NAME, DEFAULT_DEVICE_STREAM, DEFAULT_IOTLB_ENTRIES, DEFAULT_MEMORY_MIB,
    DEFAULT_STREAMS, DEFAULT_WINDOW, MAX_ALLOC_FRAMES, MAX_COPROCESSORS, MAX_DARTS, MAX_FILE_BYTES, MAX_FRAMES,
    MAX_IOTLB_ENTRIES, MAX_ITERATIONS, MAX_MEMORY_MIB, MAX_RACE_THREADS, MAX_READ_BYTES, MAX_STEPS, MAX_WORK, OP_NAMES,
};
pub use error::{Limit, LimitExceeded, ScenarioError};
pub use frame_table::{FrameSize, FrameType, OnViolation, Perm};
pub use parse::{load_scenario, parse_scenario};
