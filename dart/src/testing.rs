//! Test helpers (feature `test-utils`): the one fixture the crate's tests
//! build their DART with ([`Fixture`], [`map_page`]), and the IOTLB's
//! replacement constants that tests and benches of other crates size their
//! workloads with. Nothing here reaches inside a DART: the fixture uses the
//! public API only, and the constants are read-only.

/// A thread's fills that find a live entry of another page in their slot
/// evict it once every `EVICT_EVERY` times (the IOTLB's bimodal insertion):
/// a working set that fits but finds the slots held by live entries takes
/// about this many misses per page to move in.
pub const EVICT_EVERY: u32 = crate::translate::iotlb::EVICT_EVERY;

/// The largest IOTLB, in entries (also [`crate::DartConfig::MAX_IOTLB_ENTRIES`]).
pub const MAX_IOTLB_ENTRIES: usize = crate::translate::iotlb::Iotlb::MAX_ENTRIES;

use crate::{Dart, DartConfig, Invalidation, StreamConfig, Variant};
use frame_table::{Frame, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use std::sync::Arc;

/// A frame table and a DART over it, for a test: [`Fixture::new`], then
/// the settings that differ from the defaults, then [`Fixture::build`].
///
/// Defaults: 4 MiB of memory, the frame table's default violation mode,
/// [`DartConfig::new`]`("dart0", variant)` (strict invalidation, 256 IOTLB
/// entries), and no stream enabled.
#[derive(Clone, Debug)]
pub struct Fixture {
    memory: u64,
    on_violation: Option<OnViolation>,
    config: DartConfig,
    translating: Vec<u32>,
}

impl Fixture {
    /// A `variant` DART named `dart0` with the defaults above.
    pub fn new(variant: Variant) -> Fixture {
        Fixture {
            memory: 4 << 20,
            on_violation: None,
            config: DartConfig::new("dart0", variant),
            translating: Vec::new(),
        }
    }

    /// Bytes of physical memory.
    pub fn memory(mut self, bytes: u64) -> Fixture {
        self.memory = bytes;
        self
    }

    /// The frame table's violation mode.
    pub fn on_violation(mut self, mode: OnViolation) -> Fixture {
        self.on_violation = Some(mode);
        self
    }

    /// The DART's name.
    pub fn name(mut self, name: &str) -> Fixture {
        self.config.name = name.to_owned();
        self
    }

    /// The invalidation mode.
    pub fn invalidation(mut self, mode: Invalidation) -> Fixture {
        self.config.invalidation = mode;
        self
    }

    /// IOTLB entries.
    pub fn iotlb_entries(mut self, entries: usize) -> Fixture {
        self.config.iotlb_entries = entries;
        self
    }

    /// Streams configured [`StreamConfig::TRANSLATING`] once built.
    pub fn translating(mut self, sids: &[u32]) -> Fixture {
        self.translating.extend_from_slice(sids);
        self
    }

    /// The frame table and the DART. Panics if either cannot be built (a
    /// test's mistake).
    pub fn build(self) -> (Arc<FrameTable>, Dart) {
        let mut ft = FrameTableConfig::with_memory(self.memory);
        if let Some(mode) = self.on_violation {
            ft = ft.on_violation(mode);
        }
        let frames = Arc::new(FrameTable::new(ft).expect("test frame table"));
        let dart = Dart::new(frames.clone(), self.config).expect("test DART");
        for &sid in &self.translating {
            dart.set_stream_config(sid, StreamConfig::TRANSLATING).expect("test stream");
        }
        (frames, dart)
    }
}

/// Allocates one `user-data` frame and maps it at `iova` of stream `sid`
/// with `perm`. Panics on failure (a test's mistake). Returns the frame.
pub fn map_page(frames: &FrameTable, dart: &Dart, sid: u32, iova: u64, perm: Perm) -> Frame {
    let f = frames.alloc(FrameType::UserData, 1).expect("test frame")[0];
    dart.map(sid, iova, &[f], perm, None).expect("test mapping");
    f
}
