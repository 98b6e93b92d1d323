//! Internals that tests and benches of other crates need to size their
//! workloads (feature `test-utils`). Nothing here changes a DART: these are
//! constants of the IOTLB's replacement policy, read-only.

/// A thread's fills that find a live entry of another page in their slot
/// evict it once every `EVICT_EVERY` times (the IOTLB's bimodal insertion):
/// a working set that fits but finds the slots held by live entries takes
/// about this many misses per page to move in.
pub const EVICT_EVERY: u32 = crate::translate::iotlb::EVICT_EVERY;

/// The largest IOTLB, in entries (also [`crate::DartConfig::MAX_IOTLB_ENTRIES`]).
pub const MAX_IOTLB_ENTRIES: usize = crate::translate::iotlb::Iotlb::MAX_ENTRIES;
