//! Simulated coprocessors, the kernel's mapper service and scenarios (in progress).
#![deny(missing_docs)]
