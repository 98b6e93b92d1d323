//! Lab DARTs: streams the stress reconfigures under live DMA.
//!
//! The default SoC's device streams must stay put for their workers (their
//! shadow assumes a stream that is enabled, translating and walking the
//! mapper's own root). The lab DARTs share the SoC's frame table (so every
//! frame they map is counted, attacked and checked with the rest) and give
//! each worker *lab streams* it owns alone, through a [`StreamPort`] as a
//! device holds one, on which it rewrites TTBRs and TCRs, disables and
//! re-enables the stream, flushes by API and by register, and locks the
//! registers:
//!
//! | lab DART | variant | invalidation | streams |
//! |---|---|---|---|
//! | `lab-def-t8020` | t8020 | deferred | worker `i` < 15 on stream `1 + i` |
//! | `lab-def-t8110` | t8110 | deferred | worker `i` on stream `1 + i` |
//! | `lab-str-t6000` | t6000 | strict | worker `i` < 15 on stream `1 + i` |
//! | `lab-lock-t8020` | t8020 | strict | stream 1, worker `0 mod threads` only |
//! | `lab-lock-t8110` | t8110 | deferred | stream 1, worker `1 mod threads` only |
//!
//! A lock covers the whole DART, so the two lock DARTs each have one owner:
//! t8020 CONFIG.LOCK is permanent until reset, so `lab-lock-t8020` stays
//! locked from its first lock on (its mapper keeps working: map, unmap and
//! DMA go on); t8110 PROTECT is undone by UNPROTECT inside the same
//! operation, so `lab-lock-t8110` is locked only while its owner probes it.
//!
//! # The lab shadow (per lab stream, owned by its worker)
//!
//! Each lab stream has two root tables the stress kernel allocated
//! ([`Dart::alloc_root_table`]). The shadow holds, per root, what the
//! stress mapped into it (offset in the TTBR's span → frames and their
//! data), which root each TTBR names, the stream's `enabled` and
//! `translate` bits, the *stale* pages (deferred unmaps whose IOTLB entries
//! may still serve) and the *pending* frames (deferred unmaps not yet
//! completed by a flush). What a DMA at IOVA `v` may observe follows:
//!
//! 1. **Reach follows the TTBRs.** `v` selects TTBR `v >> span` (one TTBR
//!    on t8110); if the stream is live (enabled and translating) and that
//!    TTBR names root `r` that maps offset `v mod 2^span`, the DMA must
//!    succeed and read the data last written there (else a **lost write**).
//!    A root named by two TTBRs maps at both IOVAs.
//! 2. **Nothing else is reachable.** A DMA on a stream that is disabled or
//!    has TCR.TRANSLATE clear, through a TTBR that names nothing, or at an
//!    offset its root does not map, must fault (else an **unreachable
//!    access**) — except by rule 3.
//! 3. **Stale until the flush, never after.** After a deferred unmap of
//!    offset `o` of root `r`, a read there may fault or return exactly the
//!    data the old frames held (their frames stay counted as pending and
//!    cannot be freed, so nothing else can be in them); any other data is an
//!    unreachable access. The allowance ends when a flush that covers the
//!    stream returns, or when the stream's TTBRs are rewritten (a TTBR
//!    write kills the stream's IOTLB entries): a read there afterwards must
//!    fault. The stress never re-maps a stale offset before then (as
//!    Linux's lazy mode holds the IOVA until the flush queue drains).
//! 4. **A flush completes the deferred unmaps.** Once a flush of the stream
//!    returned (by API, t8020/t6000 STREAM_SELECT + STREAM_COMMAND with
//!    BUSY polled clear, t8110 TLB_CMD with BUSY polled clear), every pending
//!    frame frees at once; before it, a free of one is refused `frame-busy`
//!    (an R2 breach, refused in reject mode). Otherwise a **count
//!    mismatch**.
//! 5. **Locks gate TCR/TTBR writes.** While a lab DART is locked, a TCR or
//!    TTBR register write returns `Ok` and changes nothing; the typed calls
//!    [`Dart::set_ttbr`] / [`Dart::set_stream_config`] return the `locked`
//!    error and change nothing (docs/design.md §3). The shadow reads the TTBRs and the
//!    configuration back after every such write, checks that the outcome is
//!    one of these, and follows it. Enables are not lock-gated. Anything
//!    else is an **invariant** failure.
//! 6. **The tables agree.** Periodically a worker compares
//!    [`Dart::mappings`] of its lab stream (what its TTBRs reach now) with
//!    the shadow's reach: any difference is an **invariant** failure.

use super::{pattern_bytes, OpKind, Shared, Worker};
use coprocessor_sim::soc::SocError;
use dart::regs::{t8020, t8110};
use dart::{Dart, DartConfig, DartError, Invalidation, StreamConfig, StreamPort, Variant};
use frame_table::{Frame, FrameTable, FrameType, Perm};
use parking_lot::Mutex;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Root tables per lab stream.
const ROOTS: usize = 2;
/// Mapping slots per root (two pages apart: a mapping has one or two frames).
const LAB_SLOTS: u64 = 6;
/// Most pending (deferred-unmapped, unflushed) frames a lab stream keeps
/// before it flushes (bounds the memory they hold).
const MAX_PENDING: usize = 16;
/// Polls of a BUSY bit before giving up (the emulator completes commands
/// inside the write, so the first poll must already read clear).
const BUSY_POLLS: u32 = 1000;

/// Which lock register a lab DART has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LockKind {
    /// t8020 CONFIG.LOCK: permanent.
    Config,
    /// t8110 PROTECT / UNPROTECT: scoped.
    Protect,
}

/// A lab DART's description.
pub(super) struct LabSpec {
    name: &'static str,
    variant: Variant,
    invalidation: Invalidation,
    streams: u32,
    lock: Option<(LockKind, usize)>,
}

/// The lab DARTs (see the module table). The lock DARTs name their owner's
/// index among the lock DARTs (owner = that index mod threads).
pub(super) const LABS: [LabSpec; 5] = [
    LabSpec {
        name: "lab-def-t8020",
        variant: Variant::T8020,
        invalidation: Invalidation::Deferred,
        streams: 16,
        lock: None,
    },
    LabSpec {
        name: "lab-def-t8110",
        variant: Variant::T8110,
        invalidation: Invalidation::Deferred,
        streams: 64,
        lock: None,
    },
    LabSpec {
        name: "lab-str-t6000",
        variant: Variant::T6000,
        invalidation: Invalidation::Strict,
        streams: 16,
        lock: None,
    },
    LabSpec {
        name: "lab-lock-t8020",
        variant: Variant::T8020,
        invalidation: Invalidation::Strict,
        streams: 16,
        lock: Some((LockKind::Config, 0)),
    },
    LabSpec {
        name: "lab-lock-t8110",
        variant: Variant::T8110,
        invalidation: Invalidation::Deferred,
        streams: 16,
        lock: Some((LockKind::Protect, 1)),
    },
];

/// A lab DART and its driver lock (held across register sequences that
/// read-modify-write shared state: STREAM_SELECT + STREAM_COMMAND, the t8020
/// STREAMS_ENABLE bitmap, and every enable change on the DART, as a driver
/// serializes them).
pub(super) struct LabDart {
    pub(super) dart: Arc<Dart>,
    pub(super) regs: Mutex<()>,
}

impl LabDart {
    /// A DART named `name` over `frames`: `streams` streams, `invalidation`,
    /// 256 IOTLB entries.
    pub(super) fn new(
        frames: &Arc<FrameTable>,
        name: &'static str,
        variant: Variant,
        invalidation: Invalidation,
        streams: u32,
    ) -> Result<LabDart, SocError> {
        let mut cfg = DartConfig::new(name, variant);
        cfg.streams = streams;
        cfg.invalidation = invalidation;
        cfg.iotlb_entries = 256;
        let dart = Dart::new(frames.clone(), cfg).map_err(|source| SocError::Dart { name: name.into(), source })?;
        Ok(LabDart { dart: Arc::new(dart), regs: Mutex::new(()) })
    }
}

/// Builds the lab DARTs over the SoC's frame table.
pub(super) fn build_labs(frames: &Arc<FrameTable>) -> Result<Vec<LabDart>, SocError> {
    LABS.iter().map(|spec| LabDart::new(frames, spec.name, spec.variant, spec.invalidation, spec.streams)).collect()
}

/// What a lab mapping holds: its frames and the byte its data derives from
/// (`None`: still the zeros of a fresh frame).
#[derive(Clone, Debug)]
struct LabMapping {
    frames: Vec<Frame>,
    data: Option<u8>,
}

/// What a DMA read at an IOVA may return (module rules 1-3).
enum Expect {
    Live(Vec<u8>),
    Stale(Vec<u8>),
    Fault,
}

/// One lab stream and its shadow (module docs).
pub(super) struct LabStream {
    lab: usize,
    port: StreamPort,
    sid: u32,
    roots: [u64; ROOTS],
    maps: [BTreeMap<u64, LabMapping>; ROOTS],
    ttbr: [Option<usize>; 4],
    ttbrs: usize,
    /// log2 of the IOVA span one TTBR covers.
    span: u32,
    enabled: bool,
    translate: bool,
    /// Deferred unmaps not yet covered by a flush: (root, offset) → old data.
    stale: BTreeMap<(usize, u64), LabMapping>,
    /// Frames a deferred unmap left pending.
    pending: Vec<Frame>,
    locked: bool,
}

/// Sets up worker `id`'s lab streams: enabled, translating, TTBR 0 at the
/// first of two fresh roots.
pub(super) fn lab_streams(labs: &[LabDart], id: usize, threads: usize) -> Result<Vec<LabStream>, DartError> {
    let mut out = Vec::new();
    for (k, (lab, spec)) in labs.iter().zip(LABS.iter()).enumerate() {
        let sid = match spec.lock {
            Some((_, owner)) if owner % threads == id => 1,
            Some(_) => continue,
            None if 1 + (id as u32) < spec.streams => 1 + id as u32,
            None => continue,
        };
        let dart = &lab.dart;
        dart.set_stream_config(sid, StreamConfig::TRANSLATING)?;
        let roots = [dart.alloc_root_table()?, dart.alloc_root_table()?];
        dart.set_ttbr(sid, 0, Some(roots[0]))?;
        let shift = dart.page_shift();
        out.push(LabStream {
            lab: k,
            port: dart.port(sid)?,
            sid,
            roots,
            maps: Default::default(),
            ttbr: [Some(0), None, None, None],
            ttbrs: spec.variant.ttbrs_per_stream() as usize,
            span: shift + 2 * (shift - 3),
            enabled: true,
            translate: true,
            stale: BTreeMap::new(),
            pending: Vec::new(),
            locked: false,
        });
    }
    Ok(out)
}

impl LabStream {
    fn live(&self) -> bool {
        self.enabled && self.translate
    }

    fn iova(&self, idx: usize, off: u64) -> u64 {
        ((idx as u64) << self.span) | off
    }

    /// Module rules 1-3 for a read of `len` bytes at `iova` (a mapping's
    /// start, or a slot's).
    fn expect(&self, iova: u64, len: usize, worker: usize) -> Expect {
        let idx = (iova >> self.span) as usize;
        let off = iova & ((1u64 << self.span) - 1);
        let Some(root) = self.ttbr.get(idx).copied().flatten() else { return Expect::Fault };
        let bytes = |m: &LabMapping| match m.data {
            Some(p) => pattern_bytes(p, worker, len),
            None => vec![0; len],
        };
        if !self.live() {
            return Expect::Fault;
        }
        if let Some(m) = self.maps[root].get(&off) {
            return Expect::Live(bytes(m));
        }
        if let Some(m) = self.stale.get(&(root, off)) {
            return Expect::Stale(bytes(m));
        }
        Expect::Fault
    }

    /// The TTBR indices that name `root`.
    fn naming(&self, root: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.ttbrs).filter(move |&i| self.ttbr[i] == Some(root))
    }
}

impl Worker<'_> {
    fn lab_dart(&self, l: usize) -> &Arc<Dart> {
        &self.shared.labs[self.labs[l].lab].dart
    }

    fn pick_lab(&mut self) -> Option<usize> {
        (!self.labs.is_empty()).then(|| self.rng.gen_range(0..self.labs.len()))
    }

    /// The lab operations, by `roll` in 0..30.
    pub(super) fn lab_step(&mut self, roll: u32) {
        let Some(l) = self.pick_lab() else { return };
        match roll {
            0..=4 => self.lab_map(l),
            5..=8 => self.lab_unmap(l),
            9..=13 => self.lab_dma(l),
            14..=15 => self.lab_flush(l),
            16..=17 => self.lab_ttbr(l),
            18 => self.lab_enable(l),
            19 => self.lab_tcr(l),
            20 => match self.labs.iter().position(|s| LABS[s.lab].lock.is_some()) {
                Some(k) => self.lab_lock(k),
                None => self.lab_reach(l),
            },
            21..=22 => self.lab_reach(l),
            23..=24 => self.lab_free_pending(l),
            25 => self.soc_flush_reg(),
            _ => self.lab_dma(l),
        }
    }

    fn lab_map(&mut self, l: usize) {
        let ls = &self.labs[l];
        let named: Vec<usize> = (0..ls.ttbrs).filter(|&i| ls.ttbr[i].is_some()).collect();
        if named.is_empty() {
            return self.lab_ttbr(l);
        }
        let idx = named[self.rng.gen_range(0..named.len())];
        let root = ls.ttbr[idx].unwrap_or(0);
        let start = self.rng.gen_range(0..LAB_SLOTS);
        let page = self.page;
        let Some(off) = (0..LAB_SLOTS)
            .map(|k| ((start + k) % LAB_SLOTS) * 2 * page)
            .find(|o| !ls.maps[root].contains_key(o) && !ls.stale.contains_key(&(root, *o)))
        else {
            // Every slot mapped or stale: mapped ones to unmap, or stale ones to flush.
            return if ls.maps[root].is_empty() { self.lab_flush(l) } else { self.lab_unmap(l) };
        };
        let n = self.rng.gen_range(1..=2u64);
        let frames = &self.shared.soc.frames;
        let Ok(got) = frames.alloc(FrameType::UserData, n) else { return self.count(OpKind::LabMap, false) };
        let iova = ls.iova(idx, off);
        let name = LABS[ls.lab].name;
        let r = self.lab_dart(l).map(ls.sid, iova, &got, Perm::RW, None);
        self.count(OpKind::LabMap, r.is_ok());
        if let Err(e) = r {
            if !matches!(&e, DartError::Frame(fe) if fe.kind() == "out-of-frames") {
                self.shared.violation(
                    |v| &mut v.count_mismatches,
                    format!("worker {}: lab map at {iova:#x} of {name} refused: {e}", self.id),
                );
            }
            for f in got {
                let _ = frames.free(f);
            }
            return;
        }
        {
            let mut sh = self.shared.shadow.lock();
            for &f in &got {
                sh.insert(f, self.id);
            }
        }
        self.labs[l].maps[root].insert(off, LabMapping { frames: got, data: None });
        if self.labs[l].live() {
            self.lab_write(l, idx, off);
        }
    }

    /// DMA-writes a new pattern to the live mapping at (TTBR `idx`, `off`).
    fn lab_write(&mut self, l: usize, idx: usize, off: u64) {
        let pattern: u8 = self.rng.gen();
        let ls = &mut self.labs[l];
        let Some(root) = ls.ttbr[idx] else { return };
        let iova = ls.iova(idx, off);
        let Some(m) = ls.maps[root].get_mut(&off) else { return };
        let data = pattern_bytes(pattern, self.id, m.frames.len() * self.page as usize);
        match ls.port.dma_write(iova, &data) {
            Ok(()) => m.data = Some(pattern),
            Err(e) => self.shared.violation(
                |v| &mut v.lost_writes,
                format!("worker {}: lab DMA write to live {iova:#x} ({}) failed: {e}", self.id, LABS[ls.lab].name),
            ),
        }
    }

    /// DMA-reads `[iova, iova + len)` and judges the result by module rules
    /// 1-3; returns whether data came back.
    fn lab_read(&mut self, l: usize, iova: u64, len: usize, kind: OpKind) -> bool {
        let ls = &self.labs[l];
        let expect = ls.expect(iova, len, self.id);
        let mut buf = vec![0xEEu8; len];
        let r = ls.port.dma_read(iova, &mut buf);
        let name = LABS[ls.lab].name;
        let (id, ok) = (self.id, r.is_ok());
        match (expect, r) {
            (Expect::Live(want), Ok(())) if buf == want => {}
            (Expect::Live(_), Ok(())) => self.shared.violation(
                |v| &mut v.lost_writes,
                format!("worker {id}: lab DMA read at {iova:#x} ({name}) differs from the last write"),
            ),
            (Expect::Live(_), Err(e)) => self.shared.violation(
                |v| &mut v.lost_writes,
                format!("worker {id}: lab DMA read of live {iova:#x} ({name}) failed: {e}"),
            ),
            (Expect::Stale(want), Ok(())) if buf == want => {}
            (Expect::Stale(_), Ok(())) => self.shared.violation(
                |v| &mut v.unreachable_access,
                format!("worker {id}: stale read at {iova:#x} ({name}) returned data that is not the unmapped frame's"),
            ),
            (Expect::Stale(_) | Expect::Fault, Err(_)) => {}
            (Expect::Fault, Ok(())) => self.shared.violation(
                |v| &mut v.unreachable_access,
                format!("worker {id}: DMA at {iova:#x} ({name}) succeeded where the stream reaches nothing"),
            ),
        }
        self.count(kind, ok);
        ok
    }

    fn lab_dma(&mut self, l: usize) {
        let ls = &self.labs[l];
        let (page, span_idx) = (self.page, self.rng.gen_range(0..ls.ttbrs));
        let off = self.rng.gen_range(0..LAB_SLOTS) * 2 * page;
        // Any TTBR, any slot: mapped in the root it names (rule 1), in the
        // other root only, stale (rule 3), or nothing (rule 2).
        let len = match ls.ttbr[span_idx].and_then(|r| ls.maps[r].get(&off)) {
            Some(m) => m.frames.len() * page as usize,
            None => page as usize,
        };
        let iova = ls.iova(span_idx, off);
        let live_mapped = matches!(ls.expect(iova, len, self.id), Expect::Live(_));
        if live_mapped && self.rng.gen_bool(0.5) {
            self.lab_write(l, span_idx, off);
        }
        self.lab_read(l, iova, len, OpKind::LabDma);
    }

    fn lab_unmap(&mut self, l: usize) {
        let ls = &self.labs[l];
        let page = self.page;
        // A mapping of a root some TTBR names (others are out of the stream's reach).
        let mut cands: Vec<(usize, u64)> = Vec::new();
        for idx in 0..ls.ttbrs {
            if let Some(r) = ls.ttbr[idx] {
                cands.extend(ls.maps[r].keys().map(|&o| (idx, o)));
            }
        }
        if cands.is_empty() {
            return self.lab_map(l);
        }
        let (idx, off) = cands[self.rng.gen_range(0..cands.len())];
        let root = ls.ttbr[idx].unwrap_or(0);
        let iova = ls.iova(idx, off);
        let deferred = self.lab_dart(l).invalidation() == Invalidation::Deferred;
        let len = ls.maps[root][&off].frames.len() * page as usize;
        if deferred && ls.live() {
            // Warm the IOTLB, so that a stale read after the unmap can hit.
            self.lab_read(l, iova, len, OpKind::LabDma);
        }
        let ls = &mut self.labs[l];
        let Some(m) = ls.maps[root].remove(&off) else { return };
        {
            let mut sh = self.shared.shadow.lock();
            for f in &m.frames {
                sh.remove(f);
            }
        }
        let dart = &self.shared.labs[ls.lab].dart;
        let name = LABS[ls.lab].name;
        let r = dart.unmap(ls.sid, iova, len as u64);
        let ok = r == Ok(m.frames.len() as u64);
        if !ok {
            self.count(OpKind::LabUnmap, ok);
            return self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("worker {}: lab unmap at {iova:#x} ({name}) gave {r:?}", self.id),
            );
        }
        if deferred {
            self.shared.pending.lock().extend(m.frames.iter().copied());
            ls.pending.extend(m.frames.iter().copied());
            ls.stale.insert((root, off), m);
            self.count(OpKind::LabUnmap, ok);
            self.lab_read(l, iova, len, OpKind::StaleRead);
            if self.labs[l].pending.len() > MAX_PENDING {
                self.lab_flush(l);
            }
        } else {
            self.count(OpKind::LabUnmap, ok);
            for f in m.frames {
                self.free_own(f, "its strict lab unmap");
            }
        }
    }

    /// Frees a frame the worker owns and nothing maps any more: refusal is
    /// a count mismatch.
    fn free_own(&self, f: Frame, after: &str) {
        if let Err(e) = self.shared.soc.frames.free(f) {
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("worker {}: {f} not freeable after {after}: {e}", self.id),
            );
        }
    }

    /// A free of a frame the worker unmapped (deferred) but has not flushed
    /// must be refused (rule 4).
    fn lab_free_pending(&mut self, l: usize) {
        let ls = &self.labs[l];
        if ls.pending.is_empty() {
            return self.lab_unmap(l);
        }
        let f = ls.pending[self.rng.gen_range(0..ls.pending.len())];
        let r = self.shared.soc.frames.free(f);
        self.count(OpKind::FreePending, r.is_ok());
        if r.is_ok() {
            let ls = &mut self.labs[l];
            ls.pending.retain(|&g| g != f);
            self.shared.pending.lock().remove(&f);
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("worker {}: free of {f}, deferred-unmapped and not flushed, succeeded", self.id),
            );
        }
    }

    /// Flushes a lab stream by API or by register, then: pending frames free
    /// (rule 4), stale pages fault (rule 3).
    pub(super) fn lab_flush(&mut self, l: usize) {
        let by_reg = self.rng.gen_bool(0.6);
        // Flush-all only where this worker owns every stream: on a shared
        // lab DART it would complete other workers' deferred unmaps behind
        // their shadows (which then could not tell a pending frame from a
        // released one).
        let all = LABS[self.labs[l].lab].lock.is_some() && self.rng.gen_bool(0.3);
        let lab = &self.shared.labs[self.labs[l].lab];
        let sid = self.labs[l].sid;
        if by_reg {
            let ok = self.flush_by_register(&lab.dart, &lab.regs, sid, all);
            self.count(OpKind::FlushReg, ok);
        } else {
            let ok = lab.dart.flush((!all).then_some(sid)).is_ok();
            self.count(OpKind::Flush, ok);
        }
        let ls = &mut self.labs[l];
        let flushed: Vec<(usize, u64)> = std::mem::take(&mut ls.stale).into_keys().collect();
        let pending = std::mem::take(&mut ls.pending);
        {
            let mut p = self.shared.pending.lock();
            for f in &pending {
                p.remove(f);
            }
        }
        for f in pending {
            self.free_own(f, "the flush that covers its deferred unmap");
        }
        // Rule 3: what was stale faults now (unless the root maps it again).
        for (root, off) in flushed.into_iter().take(3) {
            let ls = &self.labs[l];
            let Some(idx) = ls.naming(root).next() else { continue };
            if ls.maps[root].contains_key(&off) {
                continue;
            }
            let iova = ls.iova(idx, off);
            self.lab_read(l, iova, self.page as usize, OpKind::FlushedRead);
        }
    }

    /// A flush of stream `sid` (or of every stream) through the DART's
    /// registers, as Linux's `apple-dart.c` issues it: t8020/t6000
    /// STREAM_SELECT then STREAM_COMMAND.INVALIDATE and poll BUSY; t8110
    /// TLB_CMD and poll BUSY. Under the DART's driver lock (STREAM_SELECT is
    /// shared). Returns whether it completed; BUSY stuck is an invariant failure.
    pub(super) fn flush_by_register(&self, dart: &Dart, regs: &Mutex<()>, sid: u32, all: bool) -> bool {
        let _driver = regs.lock();
        let (cmd, busy) = if dart.variant() == Variant::T8110 {
            let v = if all {
                t8110::TLB_CMD_OP.put(t8110::TLB_CMD_OP_FLUSH_ALL)
            } else {
                t8110::TLB_CMD_OP.put(t8110::TLB_CMD_OP_FLUSH_SID) | t8110::TLB_CMD_STREAM.put(sid)
            };
            if dart.mmio_write(u64::from(t8110::TLB_CMD), v).is_err() {
                return false;
            }
            (t8110::TLB_CMD, t8110::TLB_CMD_BUSY)
        } else {
            let select = if all { u32::MAX } else { 1u32 << sid };
            let wrote = dart.mmio_write(u64::from(t8020::STREAM_SELECT), select).is_ok()
                && dart.mmio_write(u64::from(t8020::STREAM_COMMAND), t8020::STREAM_COMMAND_INVALIDATE.mask()).is_ok();
            if !wrote {
                return false;
            }
            (t8020::STREAM_COMMAND, t8020::STREAM_COMMAND_BUSY)
        };
        for _ in 0..BUSY_POLLS {
            match dart.mmio_read(u64::from(cmd)) {
                Ok(v) if !busy.is_set(v) => return true,
                Ok(_) => std::hint::spin_loop(),
                Err(_) => return false,
            }
        }
        self.shared.violation(
            |v| &mut v.invariant_failures,
            format!("worker {}: {} BUSY still set after {BUSY_POLLS} polls", self.id, dart.name()),
        );
        false
    }

    /// A register flush of the worker's device stream on the default SoC.
    fn soc_flush_reg(&mut self) {
        let all = self.rng.gen_bool(0.2);
        let regs = &self.shared.soc_regs[self.shared.soc.devices[self.device].dart];
        let ok = self.flush_by_register(self.dart, regs, self.sid, all);
        self.count(OpKind::FlushReg, ok);
    }

    /// Rewrites a TTBR of a lab stream (rule 5 when locked).
    fn lab_ttbr(&mut self, l: usize) {
        let ls = &self.labs[l];
        let idx = self.rng.gen_range(0..ls.ttbrs);
        // Mostly a root (the other one, or the one another TTBR names);
        // sometimes none (the span then reaches nothing).
        let target = if self.rng.gen_bool(0.85) { Some(self.rng.gen_range(0..ROOTS)) } else { None };
        let by_reg = self.rng.gen_bool(0.5);
        self.ttbr_write(l, idx, target, by_reg);
    }

    /// TTBR `idx` := `target` (a root index), by register or API; checks the
    /// outcome against rule 5 and follows what the DART reads back.
    fn ttbr_write(&mut self, l: usize, idx: usize, target: Option<usize>, by_reg: bool) {
        let ls = &self.labs[l];
        let dart = self.shared.labs[ls.lab].dart.clone();
        let (sid, locked) = (ls.sid, ls.locked);
        let pa = target.map(|r| ls.roots[r]);
        let result: Result<(), String> = if by_reg {
            let value = dart::regs::encode_ttbr(dart.variant(), dart.page_shift(), pa);
            let off = if dart.variant() == Variant::T8110 { t8110::ttbr(sid) } else { t8020::ttbr(sid, idx as u32) };
            dart.mmio_write(u64::from(off), value).map_err(|e| e.to_string())
        } else {
            dart.set_ttbr(sid, idx, pa).map_err(|e| e.kind().to_string())
        };
        let kind = if locked { OpKind::LockedWrite } else { OpKind::TtbrWrite };
        self.count(kind, result.is_ok());
        let now = match dart.ttbr(sid, idx) {
            Ok(now) => now,
            Err(e) => {
                return self.shared.violation(|v| &mut v.invariant_failures, format!("TTBR read back: {e}"));
            }
        };
        let ls = &self.labs[l];
        let old = ls.ttbr[idx].map(|r| ls.roots[r]);
        let legal = match (&result, locked, by_reg) {
            (Ok(()), false, _) => now == pa,
            (Ok(()), true, true) => now == old,
            // A typed call that went through a lock.
            (Ok(()), true, false) => false,
            (Err(k), true, false) => k == "locked" && now == old,
            (Err(_), _, _) => false,
        };
        if !legal {
            self.shared.violation(
                |v| &mut v.invariant_failures,
                format!(
                    "worker {}: {} stream {sid} TTBR[{idx}] := {pa:x?} ({}, locked {locked}) gave {result:?}, reads {now:x?}, was {old:x?}",
                    self.id,
                    dart.name(),
                    if by_reg { "register" } else { "API" }
                ),
            );
        }
        let ls = &mut self.labs[l];
        let root = now.and_then(|p| ls.roots.iter().position(|&r| r == p));
        if now.is_some() && root.is_none() {
            return self.shared.violation(
                |v| &mut v.invariant_failures,
                format!("worker {}: {} stream {sid} TTBR[{idx}] names {now:x?}, not its roots", self.id, dart.name()),
            );
        }
        if root != ls.ttbr[idx] {
            ls.ttbr[idx] = root;
            // The write bumped the stream's generation: no stale entry survives (rule 3).
            ls.stale.clear();
        }
    }

    /// Disables or re-enables a lab stream (by API or register; enables are
    /// not lock-gated), checking the read-back.
    fn lab_enable(&mut self, l: usize) {
        let ls = &self.labs[l];
        let lab = &self.shared.labs[ls.lab];
        let (dart, sid) = (&lab.dart, ls.sid);
        let want = !ls.enabled || self.rng.gen_bool(0.1);
        let by_reg = self.rng.gen_bool(0.5);
        let r: Result<(), String> = {
            let _driver = lab.regs.lock();
            if !by_reg {
                dart.set_enabled(sid, want).map_err(|e| e.to_string())
            } else if dart.variant() == Variant::T8110 {
                let reg = if want { t8110::ENABLE_STREAMS } else { t8110::DISABLE_STREAMS };
                dart.mmio_write(u64::from(reg + 4 * (sid / 32)), 1 << (sid % 32)).map_err(|e| e.to_string())
            } else {
                let off = u64::from(t8020::STREAMS_ENABLE);
                dart.mmio_read(off)
                    .and_then(|v| dart.mmio_write(off, if want { v | 1 << sid } else { v & !(1 << sid) }))
                    .map_err(|e| e.to_string())
            }
        };
        self.count(OpKind::StreamEnable, r.is_ok());
        let now = dart.stream_config(sid).map(|c| c.enabled);
        if r.is_err() || now != Ok(want) {
            self.shared.violation(
                |v| &mut v.invariant_failures,
                format!("worker {}: {} stream {sid} enable := {want} gave {r:?}, reads {now:?}", self.id, dart.name()),
            );
        }
        if let Ok(e) = now {
            self.labs[l].enabled = e;
        }
    }

    /// Toggles TCR.TRANSLATE of a lab stream (by register or API; rule 5).
    fn lab_tcr(&mut self, l: usize) {
        let want = !self.labs[l].translate || self.rng.gen_bool(0.1);
        let by_reg = self.rng.gen_bool(0.5);
        self.tcr_write(l, want, by_reg);
    }

    fn tcr_write(&mut self, l: usize, translate: bool, by_reg: bool) {
        let ls = &self.labs[l];
        let dart = self.shared.labs[ls.lab].dart.clone();
        let (sid, locked, old, enabled) = (ls.sid, ls.locked, ls.translate, ls.enabled);
        let result: Result<(), String> = if by_reg {
            let (off, bit) = if dart.variant() == Variant::T8110 {
                (t8110::tcr(sid), t8110::TCR_TRANSLATE_ENABLE)
            } else {
                (t8020::tcr(sid), t8020::TCR_TRANSLATE_ENABLE)
            };
            dart.mmio_write(u64::from(off), if translate { bit.mask() } else { 0 }).map_err(|e| e.to_string())
        } else {
            // The whole configuration, enable bit as the shadow has it (only
            // this worker changes this stream's enable, under the driver lock).
            let _driver = self.shared.labs[ls.lab].regs.lock();
            let c = StreamConfig { enabled, translate, ..StreamConfig::default() };
            dart.set_stream_config(sid, c).map_err(|e| e.kind().to_string())
        };
        let kind = if locked { OpKind::LockedWrite } else { OpKind::TcrWrite };
        self.count(kind, result.is_ok());
        let now = dart.stream_config(sid);
        let got = now.as_ref().map(|c| c.translate).unwrap_or(!translate);
        let enabled_kept = now.as_ref().is_ok_and(|c| c.enabled == enabled && !c.bypass);
        let legal = enabled_kept
            && match (&result, locked, by_reg) {
                (Ok(()), false, _) => got == translate,
                (Ok(()), true, true) => got == old,
                // A typed call that went through a lock.
                (Ok(()), true, false) => false,
                (Err(k), true, false) => k == "locked" && got == old,
                (Err(_), _, _) => false,
            };
        if !legal {
            self.shared.violation(
                |v| &mut v.invariant_failures,
                format!(
                    "worker {}: {} stream {sid} TCR.TRANSLATE := {translate} ({}, locked {locked}) gave {result:?}, reads {now:?}",
                    self.id,
                    dart.name(),
                    if by_reg { "register" } else { "API" }
                ),
            );
        }
        if let Ok(c) = now {
            self.labs[l].translate = c.translate;
        }
    }

    /// Locks a lock DART, probes TCR/TTBR writes under the lock (rule 5),
    /// and for t8110 unlocks again (UNPROTECT) and checks a write applies.
    fn lab_lock(&mut self, l: usize) {
        let Some((kind, _)) = LABS[self.labs[l].lab].lock else { return };
        let dart = self.shared.labs[self.labs[l].lab].dart.clone();
        let locked_now = |d: &Dart| match kind {
            LockKind::Config => {
                d.mmio_read(u64::from(t8020::CONFIG)).map(|v| t8020::CONFIG_LOCK.is_set(v)).unwrap_or(false)
            }
            LockKind::Protect => {
                d.mmio_read(u64::from(t8110::PROTECT)).map(|v| t8110::PROTECT_TTBR_TCR.is_set(v)).unwrap_or(false)
            }
        };
        let (reg, value) = match kind {
            LockKind::Config => (t8020::CONFIG, t8020::CONFIG_LOCK.mask()),
            LockKind::Protect => (t8110::PROTECT, t8110::PROTECT_TTBR_TCR.mask()),
        };
        let ok = dart.mmio_write(u64::from(reg), value).is_ok() && locked_now(&dart);
        self.count(OpKind::Lock, ok);
        if !ok {
            return self
                .shared
                .violation(|v| &mut v.invariant_failures, format!("worker {}: {} did not lock", self.id, dart.name()));
        }
        self.labs[l].locked = true;
        // Probes under the lock: TCR/TTBR by register (ignored) and by API
        // (`locked`, or applied as before that error existed).
        for _ in 0..2 {
            let idx = self.rng.gen_range(0..self.labs[l].ttbrs);
            let target = Some(self.rng.gen_range(0..ROOTS));
            let by_reg = self.rng.gen_bool(0.5);
            self.ttbr_write(l, idx, target, by_reg);
            let t = !self.labs[l].translate;
            let by_reg = self.rng.gen_bool(0.5);
            self.tcr_write(l, t, by_reg);
        }
        match kind {
            LockKind::Config => {
                // Sticky: a write without the bit does not unlock.
                let _ = dart.mmio_write(u64::from(t8020::CONFIG), 0);
                if !locked_now(&dart) {
                    self.labs[l].locked = false;
                    self.shared.violation(
                        |v| &mut v.invariant_failures,
                        format!("worker {}: {} CONFIG.LOCK cleared by a write of 0", self.id, dart.name()),
                    );
                }
            }
            LockKind::Protect => {
                let _ = dart.mmio_write(u64::from(t8110::UNPROTECT), t8110::PROTECT_TTBR_TCR.mask());
                if locked_now(&dart) {
                    return self.shared.violation(
                        |v| &mut v.invariant_failures,
                        format!("worker {}: {} still locked after UNPROTECT", self.id, dart.name()),
                    );
                }
                self.labs[l].locked = false;
                // Unlocked: a register write applies again.
                let t = !self.labs[l].translate;
                self.tcr_write(l, t, true);
            }
        }
    }

    /// Rule 6: the DART's view of what the lab stream's TTBRs reach equals
    /// the shadow's.
    fn lab_reach(&mut self, l: usize) {
        let ls = &self.labs[l];
        let dart = &self.shared.labs[ls.lab].dart;
        let frames = &self.shared.soc.frames;
        let got: Result<BTreeMap<u64, u64>, String> = dart
            .mappings(ls.sid)
            .map(|v| v.into_iter().map(|(iova, leaf)| (iova, leaf.pa)).collect())
            .map_err(|e| e.to_string());
        let mut want = BTreeMap::new();
        for idx in 0..ls.ttbrs {
            let Some(r) = ls.ttbr[idx] else { continue };
            for (&off, m) in &ls.maps[r] {
                for (i, &f) in m.frames.iter().enumerate() {
                    want.insert(ls.iova(idx, off) + i as u64 * self.page, frames.pa_of(f).unwrap_or(u64::MAX));
                }
            }
        }
        let ok = got.as_ref() == Ok(&want);
        let (name, sid) = (LABS[ls.lab].name, ls.sid);
        self.count(OpKind::ReachCheck, ok);
        if !ok {
            self.shared.violation(
                |v| &mut v.invariant_failures,
                format!("worker {}: {name} stream {sid} reaches {got:x?}, the shadow says {want:x?}", self.id),
            );
        }
    }

    /// At the end: re-enable and translate (unless locked), unmap what the
    /// TTBRs reach, flush, free the pending frames. Mappings of a root no
    /// TTBR names stay (the final checks still count them).
    pub(super) fn lab_teardown(&mut self) {
        for l in 0..self.labs.len() {
            if !self.labs[l].enabled {
                let lab = &self.shared.labs[self.labs[l].lab];
                let _driver = lab.regs.lock();
                if lab.dart.set_enabled(self.labs[l].sid, true).is_ok() {
                    self.labs[l].enabled = true;
                }
            }
            loop {
                let ls = &self.labs[l];
                let any = (0..ls.ttbrs).any(|i| ls.ttbr[i].is_some_and(|r| !ls.maps[r].is_empty()));
                if !any {
                    break;
                }
                let before: usize = ls.maps.iter().map(BTreeMap::len).sum();
                self.lab_unmap(l);
                if self.labs[l].maps.iter().map(BTreeMap::len).sum::<usize>() >= before {
                    break;
                }
            }
            self.lab_flush(l);
        }
    }
}

impl Shared {
    /// Frames the lab workers hold as pending, for the quiescent check.
    pub(super) fn pending_contains(&self, f: Frame) -> bool {
        self.pending.lock().contains(&f)
    }
}
