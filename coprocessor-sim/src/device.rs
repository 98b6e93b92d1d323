//! A coprocessor's place in the SoC: what the mapper service
//! ([`crate::rpc::service`]) and the SoC ([`crate::soc`]) both know of a
//! device. A leaf: it names no other module of this crate.

use std::ops::Range;

/// A coprocessor's place in the SoC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its name (`ane`, `disp`, …).
    pub name: String,
    /// Index of its DART in [`Soc::darts`](crate::soc::Soc::darts).
    pub dart: usize,
    /// Its stream on that DART.
    pub stream: u32,
    /// Whether its stream may bypass translation.
    pub trusted: bool,
    /// IOVA window for RPC maps, `[start, end)`.
    pub window: Range<u64>,
}
