//! Simulated coprocessors, the kernel's mapper service and scenarios.
#![deny(missing_docs)]

pub mod coprocessor;
pub mod rpc;
pub mod runner;
pub mod scenario;
pub mod service;
pub mod soc;
