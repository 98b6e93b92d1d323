//! The concurrency protocol the device side and the kernel side share: the
//! atomics (in one place so that loom can stand in for them, `RUSTFLAGS="--cfg
//! loom"`), per-thread slot numbers ([`slot`]), the in-flight tracker a
//! strict unmap waits on ([`inflight`]), and the process-wide barrier that
//! lets readers skip their fence ([`barrier`]).

pub(crate) mod barrier;
pub(crate) mod inflight;
pub(crate) mod slot;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A witness that the caller holds its DART's writer lock (the mapper
/// lock, which serializes every change to tables, TTBRs, configurations and
/// generations). Only the mapper's locked state implements it, so a
/// function taking `&impl WriterLock` (a serialized counter update, a walk
/// cache invalidation) is only called under that lock.
pub(crate) trait WriterLock {}

/// Tests stand in for the writer lock with this.
#[cfg(test)]
pub(crate) struct TestWriterLock;

#[cfg(test)]
impl WriterLock for TestWriterLock {}
