//! The event trace (docs/design.md §5): what happened inside the DARTs and the frame
//! table, in order, bounded, off by default.
//!
//! # What is recorded
//!
//! One [`Event`] per map, unmap and flush (after it succeeded, with how long
//! it took), fault (with whether it latched ERROR), RPC decision (recorded by
//! the mapper service), frame allocation, retype, free and invariant breach
//! (through the frame table's observer, wired by the SoC), MMIO register
//! access (decoded into m1n1's register and field names), and every DMA that
//! touches a *watched* IOVA range ([`Dart::watch`](crate::Dart::watch)), with its stream, IOVA,
//! physical address, direction and up to [`DMA_DATA_CAP`] bytes of its data
//! (like m1n1's `trace_range`). Only DMA through [`Dart::dma_read`](crate::Dart::dma_read) and
//! [`Dart::dma_write`](crate::Dart::dma_write) is watched; a [`Dart::translate`](crate::Dart::translate) caller copies the
//! data itself and is not.
//!
//! # Protocol
//!
//! *Writers* are any threads doing DART or frame-table work. A writer first
//! loads the log's `enabled` flag (`Relaxed`); when it is clear nothing else
//! happens. Otherwise it takes a sequence number (`fetch_add`, `Relaxed`),
//! reads the clock and pushes the event into a crossbeam [`ArrayQueue`]
//! (lock-free, bounded). A full queue drops the event and counts it
//! (`dropped`, `Relaxed`); its sequence number stays unused, so gaps show
//! where events were lost.
//!
//! *Readers* call [`EventLog::drain`], which pops everything and sorts it by
//! sequence number. Two writers racing may push in the opposite order of
//! their sequence numbers; the sort restores the order in which they took
//! them. The queue's own synchronization (a push happens-before the pop that
//! returns it) makes each event's contents visible to the reader; the flag,
//! the sequence number and the drop counter carry no other data, so
//! `Relaxed` is enough for them.
//!
//! *Time and order.* An event's `ts_ns` is when it *began*: for a map,
//! unmap or flush the clock reading taken before the work
//! (`DartTrace::start`), for a point event the reading taken when it is
//! recorded; `dur_ns` runs from there to the recording. Events come out of
//! [`EventLog::drain`] in `seq` order, which is the order they were
//! *recorded* (ended) in; that is not necessarily `ts_ns` order (a map
//! begins before the frame allocations it records first). Each event
//! names the thread that recorded it ([`Event::thread`]), a small ordinal
//! taken from a thread-local on the recording path only.
//!
//! *Cost when off.* A DART with no log (or a disabled one) pays one read of
//! an uncontended `parking_lot` read lock on its slow paths (map, unmap,
//! flush, fault, MMIO) and, on the DMA path, exactly one `Relaxed` load of a
//! flag that is set only while a watch range exists.

use crate::fault::Fault;
use crate::types::{Dir, Span};
use crossbeam::queue::ArrayQueue;
use frame_table::{FrameEvent, Violation};
use parking_lot::RwLock;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Most data bytes a watched DMA event records (the rest is cut; the event
/// says so with `truncated`).
pub const DMA_DATA_CAP: usize = 64;

/// Largest capacity [`EventLog::new`] accepts (the queue is allocated up front).
pub const MAX_EVENT_CAPACITY: usize = 1 << 24;

/// What happened. Serialized with its name in `event` (`"map"`, `"fault"`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// Pages mapped into a stream.
    Map {
        /// Stream.
        stream: u32,
        /// First IOVA.
        #[serde(serialize_with = "hex_addr")]
        iova: u64,
        /// Pages mapped.
        pages: u64,
        /// Physical address of the first page.
        #[serde(serialize_with = "hex_addr")]
        pa: u64,
        /// `r`, `w` or `rw`.
        perm: &'static str,
    },
    /// Pages unmapped from a stream.
    Unmap {
        /// Stream.
        stream: u32,
        /// First IOVA asked for.
        #[serde(serialize_with = "hex_addr")]
        iova: u64,
        /// Bytes asked for.
        len: u64,
        /// Pages that were mapped and are now cleared.
        pages: u64,
        /// `strict` or `deferred`.
        invalidation: &'static str,
    },
    /// An IOTLB flush, by API or by register (a strict unmap's own
    /// invalidation is part of its unmap event).
    Flush {
        /// Streams flushed.
        streams: Vec<u32>,
    },
    /// A DMA fault.
    Fault {
        /// Stream.
        stream: u32,
        /// Faulting IOVA.
        #[serde(serialize_with = "hex_addr")]
        iova: u64,
        /// Fault code (`no-pte`, `write`, …).
        code: &'static str,
        /// `read` or `write`.
        dir: &'static str,
        /// Whether it latched ERROR (false: already latched, or masked).
        latched: bool,
    },
    /// A mapper-service RPC decision.
    Rpc {
        /// The coprocessor's stream.
        stream: u32,
        /// The coprocessor.
        device: String,
        /// `map`, `unmap`, `map-pa`, or `undecodable`.
        request: &'static str,
        /// First IOVA of the request (0 when it has none).
        #[serde(serialize_with = "hex_addr")]
        iova: u64,
        /// Bytes of the request (0 when it has none).
        len: u64,
        /// `accepted` or `refused`.
        decision: &'static str,
        /// The refusal kind (`not-granted`, …); empty when accepted.
        reason: String,
    },
    /// A frame left `free`, typed.
    Alloc {
        /// Its physical address.
        #[serde(serialize_with = "hex_addr")]
        pa: u64,
        /// Its type.
        ty: &'static str,
    },
    /// A frame changed type.
    Retype {
        /// Its physical address.
        #[serde(serialize_with = "hex_addr")]
        pa: u64,
        /// Old type.
        from: &'static str,
        /// New type.
        to: &'static str,
    },
    /// A frame went back to `free`.
    Free {
        /// Its physical address.
        #[serde(serialize_with = "hex_addr")]
        pa: u64,
        /// The type it had.
        from: &'static str,
    },
    /// An invariant breach (docs/design.md §2), in either violation mode.
    Violation {
        /// `free-mapped`, `retype-mapped`, `ttbr-not-table` or `ttbr-foreign`.
        kind: &'static str,
        /// What happened, in words.
        reason: String,
    },
    /// An entry written through the monitor (a driver-built table).
    PteWrite {
        /// The table's physical address.
        #[serde(serialize_with = "hex_addr")]
        table: u64,
        /// The entry.
        index: u64,
        /// The value written.
        #[serde(serialize_with = "hex_addr")]
        value: u64,
        /// The value it replaced.
        #[serde(serialize_with = "hex_addr")]
        old: u64,
    },
    /// A register access.
    Mmio {
        /// `read` or `write`.
        dir: &'static str,
        /// Byte offset.
        #[serde(serialize_with = "hex_addr")]
        offset: u64,
        /// The value read or written.
        value: u32,
        /// m1n1's register name (`TCR[3]`), or the offset in hex.
        register: String,
        /// Field names and values, in m1n1's order.
        fields: Vec<(String, u64)>,
        /// What it did (`done`, `ignored`, `refused:bypass-denied`, …).
        outcome: String,
    },
    /// A DMA that touched a watched range.
    Dma {
        /// Stream.
        stream: u32,
        /// First IOVA.
        #[serde(serialize_with = "hex_addr")]
        iova: u64,
        /// Physical address of the first byte (IOVA itself for bypass).
        #[serde(serialize_with = "hex_addr")]
        pa: u64,
        /// Bytes moved.
        len: u64,
        /// `read` or `write`.
        dir: &'static str,
        /// The first [`DMA_DATA_CAP`] bytes, lower-case hex.
        data: String,
        /// Whether `data` was cut.
        truncated: bool,
    },
}

impl EventKind {
    /// The event's name (`map`, `fault`, …), as serialized in `event`.
    pub const fn name(&self) -> &'static str {
        match self {
            EventKind::Map { .. } => "map",
            EventKind::Unmap { .. } => "unmap",
            EventKind::Flush { .. } => "flush",
            EventKind::Fault { .. } => "fault",
            EventKind::Rpc { .. } => "rpc",
            EventKind::Alloc { .. } => "alloc",
            EventKind::Retype { .. } => "retype",
            EventKind::Free { .. } => "free",
            EventKind::Violation { .. } => "violation",
            EventKind::Mmio { .. } => "mmio",
            EventKind::PteWrite { .. } => "pte-write",
            EventKind::Dma { .. } => "dma",
        }
    }

    /// The stream the event belongs to, if it belongs to one.
    pub const fn stream(&self) -> Option<u32> {
        match self {
            EventKind::Map { stream, .. }
            | EventKind::Unmap { stream, .. }
            | EventKind::Fault { stream, .. }
            | EventKind::Rpc { stream, .. }
            | EventKind::Dma { stream, .. } => Some(*stream),
            _ => None,
        }
    }

    /// The event for `fault`; `latched`: whether it latched ERROR.
    pub fn fault(fault: &Fault, latched: bool) -> EventKind {
        EventKind::Fault {
            stream: fault.stream,
            iova: fault.iova,
            code: fault.kind.code(),
            dir: if fault.write { "write" } else { "read" },
            latched,
        }
    }

    /// The event for a frame-table observer callback.
    pub fn from_frame_event(e: &FrameEvent) -> EventKind {
        match e {
            FrameEvent::Alloc { pa, ty, .. } => EventKind::Alloc { pa: *pa, ty: ty.name() },
            FrameEvent::Retype { pa, from, to, .. } => EventKind::Retype { pa: *pa, from: from.name(), to: to.name() },
            FrameEvent::Free { pa, from, .. } => EventKind::Free { pa: *pa, from: from.name() },
            FrameEvent::Violation(v) => EventKind::Violation { kind: violation_kind(v), reason: v.to_string() },
        }
    }
}

/// A short name for a violation.
pub fn violation_kind(v: &Violation) -> &'static str {
    match v {
        Violation::FreeMapped { .. } => "free-mapped",
        Violation::RetypeMapped { .. } => "retype-mapped",
        Violation::TtbrNotTable { .. } => "ttbr-not-table",
        Violation::TtbrForeign { .. } => "ttbr-foreign",
    }
}

/// One recorded event.
///
/// Events are ordered by `seq`, not necessarily by `ts_ns`: `ts_ns` is when
/// the event *began* (for a map, unmap or flush, the start of the work;
/// else when it was recorded), and `seq` is taken when it is recorded, at
/// its end. A map's frame allocations, for one, come before the map in
/// `seq` order but after its `ts_ns`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Sequence number in its log (the order events were recorded in).
    pub seq: u64,
    /// When it began, in nanoseconds since the log was made: the start of
    /// an event with a duration, the moment of a point event.
    pub ts_ns: u64,
    /// How long it took (map, unmap, flush); 0 for point events. It ended
    /// at `ts_ns + dur_ns`.
    pub dur_ns: u64,
    /// Who recorded it: the DART's name, or `frames` for the frame table.
    pub source: String,
    /// The OS thread that recorded it, as a small ordinal (1, 2, … in the
    /// order threads first recorded an event in this process; not the OS
    /// thread id). Two events with a duration from one thread nest or are
    /// disjoint; from two threads they may partly overlap.
    pub thread: u32,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The event as one line of JSON (no newline).
    pub fn to_json_line(&self) -> String {
        // An `Event` holds only strings, integers, booleans and lists: it
        // always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An [`EventLog`] that cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event log capacity {capacity} is not in 1..={max}")]
pub struct CapacityError {
    /// The capacity asked for.
    pub capacity: usize,
    /// The largest accepted.
    pub max: usize,
}

/// A bounded, lock-free event log (see the module header for the protocol).
#[derive(Debug)]
pub struct EventLog {
    enabled: AtomicBool,
    queue: ArrayQueue<Event>,
    seq: AtomicU64,
    dropped: AtomicU64,
    start: Instant,
}

impl EventLog {
    /// A disabled log holding up to `capacity` events (1 ..=
    /// [`MAX_EVENT_CAPACITY`]); the queue is allocated now.
    pub fn new(capacity: usize) -> Result<EventLog, CapacityError> {
        if capacity == 0 || capacity > MAX_EVENT_CAPACITY {
            return Err(CapacityError { capacity, max: MAX_EVENT_CAPACITY });
        }
        Ok(EventLog {
            enabled: AtomicBool::new(false),
            queue: ArrayQueue::new(capacity),
            seq: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// Starts or stops recording.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
    }

    /// Whether it records.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Events it can hold.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Events held now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events dropped because the log was full, since it was made.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Nanoseconds since the log was made (the events' clock).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records a point event from `source`, if enabled.
    pub fn record(&self, source: &str, kind: EventKind) {
        self.record_since(source, None, kind);
    }

    /// Records an event from `source` that began at `start_ns` (its
    /// duration is from then to now; `None`: a point event), if enabled.
    pub fn record_since(&self, source: &str, start_ns: Option<u64>, kind: EventKind) {
        if !self.enabled() {
            return;
        }
        let seq = self.seq.fetch_add(1, Relaxed);
        let now = self.now_ns();
        let ts_ns = start_ns.map_or(now, |s| s.min(now));
        let dur_ns = now - ts_ns;
        let thread = thread_ordinal();
        if self.queue.push(Event { seq, ts_ns, dur_ns, source: source.to_owned(), thread, kind }).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Takes every event held, in sequence order.
    pub fn drain(&self) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.queue.len());
        while let Some(e) = self.queue.pop() {
            out.push(e);
        }
        out.sort_by_key(|e| e.seq);
        out
    }
}

/// The next thread ordinal to hand out (see [`Event::thread`]).
static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// This thread's ordinal, taken from [`NEXT_THREAD`] the first time it
    /// records an event.
    static THREAD: u32 = NEXT_THREAD.fetch_add(1, Relaxed);
}

/// The calling thread's ordinal ([`Event::thread`]). Only recording calls
/// it, so a thread that never records takes none.
fn thread_ordinal() -> u32 {
    THREAD.with(|t| *t)
}

/// Serializes an address or offset as a hex string (`"0x4000"`): JSON
/// numbers above 2^53 lose precision in JavaScript viewers.
fn hex_addr<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:#x}"))
}

/// A watched IOVA range of one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct WatchRange {
    /// Stream.
    pub stream: u32,
    /// First IOVA.
    pub iova: u64,
    /// Bytes (at least 1).
    pub len: u64,
}

impl WatchRange {
    /// Whether `[iova, iova + len)` of `stream` touches it.
    pub fn touches(&self, stream: u32, iova: u64, len: u64) -> bool {
        stream == self.stream && iova < self.iova.saturating_add(self.len) && self.iova < iova.saturating_add(len)
    }
}

/// A DART's tracing state: its log and its watch list, and the name its
/// events carry as their source.
#[derive(Debug)]
pub(crate) struct DartTrace {
    /// The DART's name: every event's `source`.
    source: String,
    /// Set while a log is attached: the slow paths' one branch before they
    /// touch the lock (map, unmap, flush, faults, MMIO).
    attached: AtomicBool,
    log: RwLock<Option<Arc<EventLog>>>,
    /// Set while `watches` is non-empty: the DMA path's one branch.
    watching: AtomicBool,
    watches: RwLock<Vec<WatchRange>>,
}

impl DartTrace {
    /// No log, no watch; events recorded later come from `source`.
    pub(crate) fn new(source: String) -> DartTrace {
        DartTrace {
            source,
            attached: AtomicBool::new(false),
            log: RwLock::new(None),
            watching: AtomicBool::new(false),
            watches: RwLock::new(Vec::new()),
        }
    }

    /// The name events carry as their source.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Attaches (or with `None` detaches) the log events go to.
    pub(crate) fn set_log(&self, log: Option<Arc<EventLog>>) {
        let mut slot = self.log.write();
        self.attached.store(log.is_some(), Relaxed);
        *slot = log;
    }

    /// The attached event log.
    pub(crate) fn log(&self) -> Option<Arc<EventLog>> {
        self.log.read().clone()
    }

    /// Adds `range` to the watch list (once).
    pub(crate) fn watch(&self, range: WatchRange) {
        let mut w = self.watches.write();
        if !w.contains(&range) {
            w.push(range);
        }
        self.watching.store(true, Relaxed);
    }

    /// Removes exactly `range`; whether it was watched.
    pub(crate) fn unwatch(&self, range: WatchRange) -> bool {
        let mut w = self.watches.write();
        let before = w.len();
        w.retain(|r| *r != range);
        self.watching.store(!w.is_empty(), Relaxed);
        w.len() != before
    }

    /// The watched ranges, in the order they were added.
    pub(crate) fn watches(&self) -> Vec<WatchRange> {
        self.watches.read().clone()
    }

    /// The DMA path's one branch: whether any range is watched.
    #[inline(always)]
    pub(crate) fn watching(&self) -> bool {
        self.watching.load(Relaxed)
    }

    /// Records a DMA that moved `data` through `spans`, if it touches a
    /// watched range and a log is enabled.
    #[cold]
    #[inline(never)]
    pub(crate) fn dma(&self, sid: u32, iova: u64, dir: Dir, spans: &[Span], data: &[u8]) {
        let len = data.len() as u64;
        if !self.watches.read().iter().any(|w| w.touches(sid, iova, len)) {
            return;
        }
        let cut = &data[..data.len().min(DMA_DATA_CAP)];
        self.emit(|| EventKind::Dma {
            stream: sid,
            iova,
            pa: spans.first().map_or(iova, |s| s.pa),
            len,
            dir: dir_name(dir),
            data: hex(cut),
            truncated: cut.len() < data.len(),
        });
    }

    /// The clock reading to pass to [`DartTrace::emit_since`], when
    /// recording. Inlined to its one branch, with the log's read out of
    /// line, so that a map or unmap with no log attached (the common case)
    /// pays a load and a branch, not a call.
    #[inline(always)]
    pub(crate) fn start(&self) -> Option<u64> {
        if !self.attached.load(Relaxed) {
            return None;
        }
        self.clock()
    }

    /// [`DartTrace::start`] with a log attached.
    #[cold]
    #[inline(never)]
    fn clock(&self) -> Option<u64> {
        let log = self.log.read();
        log.as_ref().filter(|l| l.enabled()).map(|l| l.now_ns())
    }

    /// Records the point event `make` builds, if a log is attached and enabled.
    pub(crate) fn emit(&self, make: impl FnOnce() -> EventKind) {
        self.emit_since(None, make);
    }

    /// Records the event `make` builds, begun at `start` (from
    /// [`DartTrace::start`]), if a log is attached and enabled. Inlined
    /// to its one branch, as `start` is.
    #[inline(always)]
    pub(crate) fn emit_since(&self, start: Option<u64>, make: impl FnOnce() -> EventKind) {
        if self.attached.load(Relaxed) {
            self.record_since(start, make);
        }
    }

    /// [`DartTrace::emit_since`] with a log attached.
    #[cold]
    #[inline(never)]
    fn record_since(&self, start: Option<u64>, make: impl FnOnce() -> EventKind) {
        let log = self.log.read().clone();
        if let Some(log) = log.filter(|l| l.enabled()) {
            log.record_since(&self.source, start, make());
        }
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// `read` or `write`.
pub(crate) const fn dir_name(dir: Dir) -> &'static str {
    match dir {
        Dir::Read => "read",
        Dir::Write => "write",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(i: u64) -> EventKind {
        EventKind::Map { stream: 1, iova: i, pages: 1, pa: 0, perm: "r" }
    }

    #[test]
    fn capacity_bounds() {
        assert_eq!(EventLog::new(0).unwrap_err(), CapacityError { capacity: 0, max: MAX_EVENT_CAPACITY });
        assert!(EventLog::new(MAX_EVENT_CAPACITY + 1).is_err());
        assert_eq!(EventLog::new(3).unwrap().capacity(), 3);
    }

    #[test]
    fn disabled_log_records_nothing_and_spends_no_sequence_number() {
        let log = EventLog::new(4).unwrap();
        log.record("d", map(0));
        assert!(log.is_empty());
        assert_eq!(log.dropped(), 0);
        log.set_enabled(true);
        log.record("d", map(1));
        let got = log.drain();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].seq, &got[0].source, &got[0].kind), (0, &"d".to_owned(), &map(1)));
        assert!(log.is_empty());
    }

    #[test]
    fn full_log_drops_and_counts() {
        let log = EventLog::new(2).unwrap();
        log.set_enabled(true);
        for i in 0..5 {
            log.record("d", map(i));
        }
        assert_eq!(log.dropped(), 3);
        let got = log.drain();
        assert_eq!(got.iter().map(|e| (e.seq, e.kind.clone())).collect::<Vec<_>>(), vec![(0, map(0)), (1, map(1))]);
        // Room again after the drain; sequence numbers keep counting.
        log.record("d", map(9));
        assert_eq!(log.drain()[0].seq, 5);
        assert_eq!(log.dropped(), 3);
    }

    #[test]
    fn json_line_has_event_name_and_fields() {
        let e = Event { seq: 7, ts_ns: 10, dur_ns: 2, source: "dart0".into(), thread: 3, kind: map(0x4000) };
        let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"seq": 7, "ts_ns": 10, "dur_ns": 2, "source": "dart0", "thread": 3, "event": "map",
                "stream": 1, "iova": "0x4000", "pages": 1, "pa": "0x0", "perm": "r"})
        );
    }

    #[test]
    fn json_line_addresses_are_hex_strings_and_exact_above_2_53() {
        let big = (1u64 << 60) + 1;
        let line = |kind| Event { seq: 0, ts_ns: 0, dur_ns: 0, source: "d".into(), thread: 1, kind }.to_json_line();
        let v: serde_json::Value = serde_json::from_str(&line(EventKind::Dma {
            stream: 2,
            iova: big,
            pa: u64::MAX,
            len: 8,
            dir: "read",
            data: String::new(),
            truncated: false,
        }))
        .unwrap();
        assert_eq!(
            (&v["iova"], &v["pa"], &v["len"]),
            (&serde_json::json!("0x1000000000000001"), &serde_json::json!("0xffffffffffffffff"), &serde_json::json!(8))
        );
        let v: serde_json::Value = serde_json::from_str(&line(EventKind::Mmio {
            dir: "write",
            offset: 0x100,
            value: 7,
            register: "ERROR".into(),
            fields: vec![],
            outcome: "done".into(),
        }))
        .unwrap();
        assert_eq!((&v["offset"], &v["value"]), (&serde_json::json!("0x100"), &serde_json::json!(7)));
        for kind in [
            EventKind::Unmap { stream: 1, iova: 0x8000, len: 0x4000, pages: 1, invalidation: "strict" },
            EventKind::Fault { stream: 1, iova: 0x8000, code: "no-pte", dir: "read", latched: true },
            EventKind::Alloc { pa: 0x8000, ty: "user-data" },
            EventKind::Retype { pa: 0x8000, from: "user-data", to: "kernel-shared" },
            EventKind::Free { pa: 0x8000, from: "user-data" },
        ] {
            let v: serde_json::Value = serde_json::from_str(&line(kind)).unwrap();
            let addr = v.get("iova").or_else(|| v.get("pa")).unwrap();
            assert_eq!(addr, "0x8000", "{v}");
        }
    }

    #[test]
    fn ts_is_the_start_and_dur_the_rest() {
        let log = EventLog::new(8).unwrap();
        log.set_enabled(true);
        let start = log.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        log.record_since("d", Some(start), map(0));
        log.record("d", map(1));
        let got = log.drain();
        assert_eq!(got[0].ts_ns, start);
        assert!(got[0].dur_ns >= 2_000_000, "{:?}", got[0]);
        // The point event after it: at or after the slice's end; `seq`
        // order, and here also `ts_ns` order.
        assert!(got[1].ts_ns >= got[0].ts_ns + got[0].dur_ns && got[1].dur_ns == 0);
    }

    #[test]
    fn each_recording_thread_has_its_own_ordinal() {
        let log = Arc::new(EventLog::new(8).unwrap());
        log.set_enabled(true);
        log.record("d", map(0));
        let l2 = Arc::clone(&log);
        std::thread::spawn(move || {
            l2.record("d", map(1));
            l2.record("d", map(2));
        })
        .join()
        .unwrap();
        log.record("d", map(3));
        let t: Vec<u32> = log.drain().iter().map(|e| e.thread).collect();
        assert!(t[0] >= 1 && t[1] != t[0] && t[1] == t[2] && t[3] == t[0], "{t:?}");
    }

    #[test]
    fn watch_range_touch() {
        let w = WatchRange { stream: 2, iova: 0x1000, len: 0x100 };
        assert!(w.touches(2, 0x10ff, 1));
        assert!(w.touches(2, 0xf00, 0x101));
        assert!(!w.touches(2, 0x1100, 8));
        assert!(!w.touches(2, 0xf00, 0x100));
        assert!(!w.touches(1, 0x1000, 8));
        assert!(WatchRange { stream: 0, iova: u64::MAX - 1, len: 1 }.touches(0, u64::MAX - 4, 4));
    }
}
