//! What dart's integration tests share: what the IOTLB tests read back
//! after each step (a stream's DMA-path counters and its live IOTLB
//! entries), and the monitor tests' driver-built tree ([`Rig`]). Each test
//! binary uses a part of it.
#![allow(dead_code)]

use dart::pte::{Leaf, Subpage};
use dart::{Dart, DartConfig, Invalidation, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, OnViolation};
use std::sync::Arc;

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

/// A driver tree for one stream: a root and a leaf table, registered by
/// their zeroing writes, the root named by the stream's TTBR 0 and linking
/// the leaf table at index 0.
pub struct Rig {
    pub frames: Arc<FrameTable>,
    pub dart: Arc<Dart>,
    pub root: u64,
    pub leaves: u64,
}

impl Rig {
    /// 16 MiB of memory in `mode`, a `variant` DART with `invalidation`,
    /// stream `sid` translating through the tree.
    pub fn new(variant: Variant, invalidation: Invalidation, mode: OnViolation, sid: u32) -> Rig {
        let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20).on_violation(mode)).unwrap());
        let mut c = DartConfig::new("d", variant);
        c.invalidation = invalidation;
        let dart = Arc::new(Dart::new(frames.clone(), c).unwrap());
        dart.set_stream_config(sid, StreamConfig::TRANSLATING).unwrap();
        let t = frames.alloc(FrameType::DartTable, 2).unwrap();
        let (root, leaves) = (frames.pa_of(t[0]).unwrap(), frames.pa_of(t[1]).unwrap());
        // The zeroing stores of two fresh tables register them.
        dart.write_table_entry(root, 0, 0).unwrap();
        dart.write_table_entry(leaves, 0, 0).unwrap();
        dart.set_ttbr(sid, 0, Some(root)).unwrap();
        let desc = dart.pte_format().encode_table(dart.page_shift(), leaves).unwrap();
        dart.write_table_entry(root, 0, desc).unwrap();
        Rig { frames, dart, root, leaves }
    }

    /// A whole-page leaf naming `pa`, encoded for this DART.
    pub fn leaf(&self, pa: u64, read: bool, write: bool) -> u64 {
        let leaf = Leaf { pa, read, write, subpage: Subpage::WHOLE };
        self.dart.pte_format().encode_leaf(self.dart.page_shift(), &leaf).unwrap()
    }
}
