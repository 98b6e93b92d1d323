//! Simulated coprocessors, the kernel's mapper service and scenarios.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
pub mod coprocessor;
pub mod report;
pub mod rpc;
pub mod runner;
pub mod scenario;
pub mod service;
pub mod soc;
pub mod stress;
pub mod throughput;
