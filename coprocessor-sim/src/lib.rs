//! Simulated coprocessors, the kernel's mapper service and scenarios.
//!
//! - [`soc`]: the emulated system ([`soc::Soc`]: frame table, DARTs,
//!   coprocessor threads), what it is built from ([`soc::config`]) and the
//!   coprocessors ([`soc::coprocessor`]);
//! - [`rpc`]: the kernel's mapper service ([`rpc::service`]: grants,
//!   validation, the rings it serves) and its wire format ([`rpc::wire`]);
//! - [`scenario`]: scenario files (docs/design.md §6), their parser and their runner
//!   ([`scenario::run`]);
//! - [`device`]: a coprocessor's place in the SoC, known to both the SoC and
//!   the service.
//!
//! Modules depend one way: `scenario` uses `soc` and `rpc`, `soc` uses
//! `rpc`, and both use `device`. The `dartemu` command line is the `dartemu`
//! crate (`cli/`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod device;
pub mod rpc;
pub mod scenario;
pub mod soc;
