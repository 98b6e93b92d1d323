//! Simulated coprocessors, the kernel's mapper service and scenarios.
#![deny(missing_docs)]

pub mod device;
pub mod rpc;
pub mod scenario;
pub mod soc;
