//! What the IOTLB tests read back after each step: a stream's DMA-path
//! counters and its live IOTLB entries.

use dart::Dart;

/// `[translations, iotlb_hits, iotlb_misses, walks, faults]` of stream `sid`.
pub fn counters(dart: &Dart, sid: u32) -> [u64; 5] {
    let snap = dart.stats().snapshot();
    let get = |name: &str| snap.get(&format!("s{sid}.{name}")).unwrap();
    [get("translations"), get("iotlb_hits"), get("iotlb_misses"), get("walks"), get("faults")]
}

/// IOVAs of stream `sid`'s live IOTLB entries, sorted.
pub fn live(dart: &Dart, sid: u32) -> Vec<u64> {
    let mut v: Vec<u64> = dart.iotlb_entries(sid).unwrap().into_iter().map(|(iova, _)| iova).collect();
    v.sort_unstable();
    v
}
