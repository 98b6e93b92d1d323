//! The frame table's observer hook: who gets told about type changes and
//! invariant breaches.
//!
//! The frame table knows nothing of DARTs or event logs; a SoC that wants a
//! trace installs one callback with [`FrameTable::set_observer`]. It is
//! called after every successful allocation, retype and free, and for every
//! invariant breach ([`FrameTable::report_violation`]), on the thread that
//! did the operation. None of these is a hot path; with no observer the cost
//! is one uncontended read lock per operation.
//!
//! [`FrameTable::set_observer`]: crate::FrameTable::set_observer
//! [`FrameTable::report_violation`]: crate::FrameTable::report_violation

use crate::error::Violation;
use crate::types::{Frame, FrameType};
use parking_lot::RwLock;
use std::sync::Arc;

/// Something that happened to frames, as the observer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameEvent {
    /// A frame left `free` through `alloc`, typed `ty` (one event per frame).
    Alloc {
        /// The frame.
        frame: Frame,
        /// Its physical address.
        pa: u64,
        /// Its new type.
        ty: FrameType,
    },
    /// A frame changed type. `from` is the type loaded just before the
    /// change: exact unless another thread retyped the same frame at the
    /// same moment.
    Retype {
        /// The frame.
        frame: Frame,
        /// Its physical address.
        pa: u64,
        /// The old type.
        from: FrameType,
        /// The new type.
        to: FrameType,
    },
    /// A frame went back to `free` (`from` as for [`FrameEvent::Retype`]).
    Free {
        /// The frame.
        frame: Frame,
        /// Its physical address.
        pa: u64,
        /// The type it had.
        from: FrameType,
    },
    /// An invariant breach, in either violation mode.
    Violation(Violation),
}

/// The observer: called after each [`FrameEvent`].
pub type FrameObserver = dyn Fn(&FrameEvent) + Send + Sync;

/// The frame table's observer slot.
#[derive(Default)]
pub(crate) struct ObserverSlot(RwLock<Option<Arc<FrameObserver>>>);

impl ObserverSlot {
    pub(crate) fn set(&self, observer: Option<Arc<FrameObserver>>) {
        *self.0.write() = observer;
    }

    /// Whether an observer is installed.
    pub(crate) fn active(&self) -> bool {
        self.0.read().is_some()
    }

    /// Calls the observer, if any, with the event `make` builds.
    pub(crate) fn emit(&self, make: impl FnOnce() -> FrameEvent) {
        let observer = self.0.read().clone();
        if let Some(observer) = observer {
            observer(&make());
        }
    }
}

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.active() { "Some(<observer>)" } else { "None" })
    }
}
