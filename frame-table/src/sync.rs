//! The atomics the frame table is built from, in one place so that loom can
//! stand in for them (`RUSTFLAGS="--cfg loom"`).
//!
//! Everything in this crate that is shared between threads without a lock goes
//! through this module: nothing else imports `std::sync::atomic` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Gives way while another thread finishes a short transition (an aperture
/// copy, a scrub). Under loom this is a yield point the model explores.
#[inline]
pub(crate) fn backoff() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
