//! Mini SoCs: multi-frame free and retype in both `on_violation` modes.
//!
//! Each worker owns a small private SoC (4 MiB of memory, one DART with one
//! translating stream, reached through a [`StreamPort`]), so that it can
//! tell exactly what a refused multi-frame request changed: no other thread
//! allocates or frees there. Generation `g` of a worker's mini SoC runs in
//! `panic` mode for even `g` and `reject` mode for odd `g`, on variant
//! t8020 / t6000 / t8110 by `g / 2 mod 3`, strict or deferred by `g / 6 mod
//! 2`. A worker maps, unmaps (deferred unmaps stay pending until it
//! flushes), DMA-writes and reads there, and sometimes asks to free or
//! retype (to `kernel-shared`) a list of 2 to 4 frames: 1 to 3 idle ones and
//! one *busy* one (mapped, or unmapped deferred and not yet flushed), in a
//! random order. Rules:
//!
//! 1. **Reject mode** refuses the request `frame-busy`; the system runs on.
//!    Success is a **count mismatch** (a busy frame was freed or retyped).
//! 2. **Panic mode** answers `panic` and halts the mini SoC: from then on a
//!    DMA returns `halted` and leaves the buffer untouched (data would be an
//!    **unreachable access**), and map, alloc and register reads return
//!    `halted` (anything else is an **invariant** failure). The halted SoC is
//!    then dropped and a fresh one built: a *halt*, counted.
//! 3. **The busy frame is untouched** in both modes (its type and counts as
//!    before): otherwise a **count mismatch**.
//! 4. **All or nothing** (docs/design.md §2 R6): no idle frame of a refused request
//!    may have changed ([`FrameTable::free_all`] / [`FrameTable::retype_all`]);
//!    one that did is a **partial change** violation.
//! 5. A mini SoC that did not halt is retired after 96 operations,
//!    and checked at every quiescent check like the main one
//!    (`counts-consistent` against its DART and the worker's shadow,
//!    `restricted-unreachable`, `iotlb-coherent`).

use super::{pattern_bytes, OpKind, Worker};
use dart::{Dart, DartConfig, Invalidation, StreamConfig, StreamPort, Variant};
use frame_table::{Counter, Frame, FrameSize, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Memory of a mini SoC.
const MINI_BYTES: u64 = 4 << 20;
/// Mapping slots of a mini SoC's stream.
const MINI_SLOTS: usize = 6;
/// Operations after which a mini SoC that did not halt is retired.
pub(super) const MINI_LIFE: u32 = 96;
/// The stream the mini SoC's device uses.
const SID: u32 = 1;

/// A worker's private SoC (module docs).
pub(super) struct MiniSoc {
    mode: OnViolation,
    frames: Arc<FrameTable>,
    dart: Arc<Dart>,
    port: StreamPort,
    /// Per slot: frames and pattern byte.
    slots: Vec<Option<(Vec<Frame>, u8)>>,
    /// Deferred-unmapped frames not yet flushed.
    pending: Vec<Frame>,
    /// Slots unmapped deferred and not yet flushed: not re-mapped until the
    /// flush, since a stale IOTLB entry may still send their DMA to the old
    /// frames (as Linux's lazy mode holds an IOVA until its flush).
    stale: Vec<usize>,
    ops: u32,
}

impl MiniSoc {
    fn build(generation: u64, frame_size: FrameSize) -> Result<MiniSoc, String> {
        let mode = if generation.is_multiple_of(2) { OnViolation::Panic } else { OnViolation::Reject };
        let variant = [Variant::T8020, Variant::T6000, Variant::T8110][(generation / 2 % 3) as usize];
        let invalidation = Invalidation::ALL[(generation / 6 % 2) as usize];
        let frames =
            FrameTable::new(FrameTableConfig::with_memory(MINI_BYTES).frame_size(frame_size).on_violation(mode))
                .map_err(|e| e.to_string())?;
        let frames = Arc::new(frames);
        let mut cfg = DartConfig::new(format!("mini-{generation}"), variant);
        cfg.streams = 4;
        cfg.invalidation = invalidation;
        cfg.iotlb_entries = 64;
        let dart = Arc::new(Dart::new(frames.clone(), cfg).map_err(|e| e.to_string())?);
        dart.set_stream_config(SID, StreamConfig::TRANSLATING).map_err(|e| e.to_string())?;
        let port = dart.port(SID).map_err(|e| e.to_string())?;
        Ok(MiniSoc {
            mode,
            frames,
            dart,
            port,
            slots: vec![None; MINI_SLOTS],
            pending: Vec::new(),
            stale: Vec::new(),
            ops: 0,
        })
    }

    fn iova(&self, slot: usize) -> u64 {
        (1 + 2 * slot as u64) * self.frames.frame_size().bytes()
    }

    /// Breaches this mini SoC's frame table refused (reject mode) or halted on.
    pub(super) fn breaches(&self) -> u64 {
        self.frames.violations()
    }

    /// Why this mini SoC halted, if it did.
    pub(super) fn frames_halted(&self) -> Option<frame_table::Violation> {
        self.frames.halted()
    }

    /// The quiescent checks (module rule 5); failure descriptions.
    pub(super) fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.frames.halted().is_some() {
            return out;
        }
        let name = self.dart.name().to_string();
        if let Err(e) = self.dart.check_restricted_unreachable() {
            out.push(format!("{name}: restricted-unreachable: {e}"));
        }
        if let Err(e) = self.dart.check_iotlb_coherent() {
            out.push(format!("{name}: iotlb-coherent: {e}"));
        }
        let counts = self.dart.dart_counts();
        let mapped: HashMap<Frame, ()> =
            self.slots.iter().flatten().flat_map(|(f, _)| f.iter().map(|&f| (f, ()))).collect();
        for (f, s) in self.frames.states() {
            let (live, pending) = counts.get(&f).copied().unwrap_or_default();
            let c = s.counts();
            let got = (
                u64::from(c.cpu_kernel),
                u64::from(c.cpu_user),
                s.count(Counter::Dart),
                s.count(Counter::PendingInvalidation),
            );
            if got != (0, 0, live, pending) {
                out.push(format!("{name}: counts-consistent: {f} {got:?}, the DART holds {:?}", (live, pending)));
            }
            if s.ty() != FrameType::DartTable {
                let shadow = (u64::from(mapped.contains_key(&f)), u64::from(self.pending.contains(&f)));
                if (s.count(Counter::Dart), s.count(Counter::PendingInvalidation)) != shadow {
                    out.push(format!("{name}: shadow: {f} ({}) (dart, pending) counts differ from {shadow:?}", s.ty()));
                }
            }
            if out.len() >= 10 {
                break;
            }
        }
        out
    }
}

impl Worker<'_> {
    /// One operation on the worker's mini SoC (building one if needed).
    pub(super) fn mini_step(&mut self) {
        let shared = self.shared;
        let mut guard = shared.minis[self.id].lock();
        if guard.is_none() {
            match MiniSoc::build(self.mini_gen, shared.soc.frames.frame_size()) {
                Ok(m) => *guard = Some(m),
                Err(e) => {
                    self.mini_gen += 1;
                    drop(guard);
                    return shared.violation(|v| &mut v.invariant_failures, format!("mini SoC build: {e}"));
                }
            }
        }
        let Some(m) = guard.as_mut() else { return };
        m.ops += 1;
        let roll = self.rng.gen_range(0..100u32);
        let retire = match roll {
            0..=34 => self.mini_map(m),
            35..=54 => self.mini_unmap(m),
            55..=74 => self.mini_dma(m),
            75..=84 => self.mini_flush(m),
            _ => self.mini_breach(m),
        } || m.ops >= MINI_LIFE;
        if retire {
            if let Some(m) = guard.take() {
                shared
                    .mini_breaches
                    .fetch_add(if m.mode == OnViolation::Reject { m.breaches() } else { 0 }, Ordering::Relaxed);
            }
            self.mini_gen += 1;
        }
    }

    fn mini_map(&mut self, m: &mut MiniSoc) -> bool {
        let Some(slot) = (0..MINI_SLOTS).find(|s| m.slots[*s].is_none() && !m.stale.contains(s)) else {
            return if m.slots.iter().any(Option::is_some) { self.mini_unmap(m) } else { self.mini_flush(m) };
        };
        let n = self.rng.gen_range(1..=2u64);
        let Ok(frames) = m.frames.alloc(FrameType::UserData, n) else {
            self.count(OpKind::MiniWork, false);
            return false;
        };
        let iova = m.iova(slot);
        if let Err(e) = m.dart.map(SID, iova, &frames, Perm::RW, None) {
            self.count(OpKind::MiniWork, false);
            for f in frames {
                let _ = m.frames.free(f);
            }
            if e.kind() != "out-of-frames" {
                self.shared.violation(|v| &mut v.count_mismatches, format!("{}: map at {iova:#x}: {e}", m.dart.name()));
            }
            return false;
        }
        let pattern: u8 = self.rng.gen();
        let data = pattern_bytes(pattern, self.id, frames.len() * m.frames.frame_size().bytes() as usize);
        let ok = m.port.dma_write(iova, &data).is_ok();
        if !ok {
            self.shared
                .violation(|v| &mut v.lost_writes, format!("{}: DMA write to live {iova:#x} failed", m.dart.name()));
        }
        m.slots[slot] = Some((frames, pattern));
        self.count(OpKind::MiniWork, ok);
        false
    }

    fn mini_unmap(&mut self, m: &mut MiniSoc) -> bool {
        let Some(slot) = m.slots.iter().position(Option::is_some) else { return self.mini_map(m) };
        let Some((frames, _)) = m.slots[slot].take() else { return false };
        let iova = m.iova(slot);
        let r = m.dart.unmap(SID, iova, frames.len() as u64 * m.frames.frame_size().bytes());
        let ok = r == Ok(frames.len() as u64);
        self.count(OpKind::MiniWork, ok);
        if !ok {
            self.shared.violation(|v| &mut v.count_mismatches, format!("{}: unmap at {iova:#x}: {r:?}", m.dart.name()));
            return true;
        }
        if m.dart.invalidation() == Invalidation::Deferred {
            m.pending.extend(frames);
            m.stale.push(slot);
        } else {
            for f in frames {
                if let Err(e) = m.frames.free(f) {
                    self.shared.violation(
                        |v| &mut v.count_mismatches,
                        format!("{}: {f} after strict unmap: {e}", m.dart.name()),
                    );
                }
            }
        }
        false
    }

    fn mini_dma(&mut self, m: &mut MiniSoc) -> bool {
        let Some(slot) = m.slots.iter().position(Option::is_some) else { return self.mini_map(m) };
        let Some((frames, pattern)) = m.slots[slot].clone() else { return false };
        let len = frames.len() * m.frames.frame_size().bytes() as usize;
        let mut buf = vec![0u8; len];
        let r = m.port.dma_read(m.iova(slot), &mut buf);
        self.count(OpKind::MiniWork, r.is_ok());
        if r.is_err() || buf != pattern_bytes(pattern, self.id, len) {
            self.shared
                .violation(|v| &mut v.lost_writes, format!("{}: DMA read of live slot {slot}: {r:?}", m.dart.name()));
        }
        false
    }

    fn mini_flush(&mut self, m: &mut MiniSoc) -> bool {
        let ok = m.dart.flush(Some(SID)).is_ok();
        self.count(OpKind::MiniWork, ok);
        m.stale.clear();
        for f in std::mem::take(&mut m.pending) {
            if let Err(e) = m.frames.free(f) {
                self.shared
                    .violation(|v| &mut v.count_mismatches, format!("{}: {f} after its flush: {e}", m.dart.name()));
            }
        }
        false
    }

    /// A multi-frame free or retype naming a busy frame (module rules 1-4).
    /// Returns whether the mini SoC halted (and must be replaced).
    fn mini_breach(&mut self, m: &mut MiniSoc) -> bool {
        let busy: Vec<Frame> =
            m.slots.iter().flatten().flat_map(|(f, _)| f.iter().copied()).chain(m.pending.iter().copied()).collect();
        if busy.is_empty() {
            return self.mini_map(m);
        }
        let target = busy[self.rng.gen_range(0..busy.len())];
        let idle_n = self.rng.gen_range(1..=3u64);
        let Ok(idle) = m.frames.alloc(FrameType::UserData, idle_n) else { return self.mini_flush(m) };
        let mut list = idle.clone();
        list.insert(self.rng.gen_range(0..=list.len()), target);
        let before: Vec<_> = list.iter().map(|&f| m.frames.state(f).ok()).collect();
        let retype = self.rng.gen_bool(0.5);
        let r = if retype { m.frames.retype_all(&list, FrameType::KernelShared) } else { m.frames.free_all(&list) };
        let name = m.dart.name().to_string();
        let what = if retype { "retype" } else { "free" };
        let panic = m.mode == OnViolation::Panic;
        let kind = match (panic, retype) {
            (true, _) => OpKind::PanicBreach,
            (false, true) => OpKind::MultiRetype,
            (false, false) => OpKind::MultiFree,
        };
        self.count(kind, r.is_ok());
        let want = if panic { "panic" } else { "frame-busy" };
        match &r {
            Err(e) if e.kind() == want => {}
            _ => self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("{name}: multi-frame {what} of {list:?} naming busy {target}: {r:?}, expected {want}"),
            ),
        }
        // Rule 3: the busy frame is untouched.
        let at = list.iter().position(|&f| f == target).unwrap_or(0);
        if m.frames.state(target).ok() != before[at] {
            self.shared.violation(
                |v| &mut v.count_mismatches,
                format!("{name}: the busy {target} changed under a refused multi-frame {what}"),
            );
        }
        // Rule 4: nothing else changed either.
        let changed: Vec<Frame> = list
            .iter()
            .zip(&before)
            .filter(|(&f, b)| f != target && m.frames.state(f).ok() != **b)
            .map(|(&f, _)| f)
            .collect();
        if !changed.is_empty() {
            self.shared.violation(
                |v| &mut v.partial_changes,
                format!(
                    "{name} ({}): a refused multi-frame {what} of {list:?} (busy {target} at position {at}) changed {changed:?}",
                    if panic { "panic" } else { "reject" }
                ),
            );
        }
        if panic {
            self.after_halt(m, &idle);
            self.shared.halts.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        for f in idle {
            if m.frames.state(f).is_ok_and(|s| s.ty() != FrameType::Free) {
                if let Err(e) = m.frames.free(f) {
                    self.shared.violation(|v| &mut v.count_mismatches, format!("{name}: idle {f} not freeable: {e}"));
                }
            }
        }
        false
    }

    /// Panic mode after the breach (module rule 2).
    fn after_halt(&mut self, m: &mut MiniSoc, idle: &[Frame]) {
        let name = m.dart.name().to_string();
        if m.frames.halted().is_none() {
            return self
                .shared
                .violation(|v| &mut v.invariant_failures, format!("{name}: a panic-mode breach did not halt"));
        }
        let halted = |kind: &str| kind == "halted";
        let slot = m.slots.iter().position(Option::is_some).unwrap_or(0);
        let mut buf = vec![0xA5u8; 256];
        let r = m.port.dma_read(m.iova(slot), &mut buf);
        self.count(OpKind::Halted, r.is_ok());
        if r.is_ok() || buf.iter().any(|&b| b != 0xA5) {
            self.shared.violation(
                |v| &mut v.unreachable_access,
                format!("{name}: a DMA after the halt returned {r:?} (data moved: {})", buf.iter().any(|&b| b != 0xA5)),
            );
        } else if let Err(e) = &r {
            if !halted(e.kind()) {
                self.shared.violation(|v| &mut v.invariant_failures, format!("{name}: DMA after the halt: {e}"));
            }
        }
        let w = m.port.dma_write(m.iova(slot), &[0x5A; 64]);
        self.count(OpKind::Halted, w.is_ok());
        if w.is_ok() {
            self.shared
                .violation(|v| &mut v.unreachable_access, format!("{name}: a DMA write after the halt succeeded"));
        }
        let free_slot = m.slots.iter().position(Option::is_none).unwrap_or(0);
        let checks: [(&str, Result<(), String>); 3] = [
            ("map", m.dart.map(SID, m.iova(free_slot), &idle[..1], Perm::RW, None).map_err(|e| e.kind().to_string())),
            ("alloc", m.frames.alloc(FrameType::UserData, 1).map(drop).map_err(|e| e.kind().to_string())),
            ("mmio read", m.dart.mmio_read(0).map(drop).map_err(|e| e.to_string())),
        ];
        for (what, r) in checks {
            self.count(OpKind::Halted, r.is_ok());
            let ok = match &r {
                Err(k) if what == "mmio read" => k.contains("halted"),
                Err(k) => halted(k),
                Ok(()) => false,
            };
            if !ok {
                self.shared
                    .violation(|v| &mut v.invariant_failures, format!("{name}: {what} after the halt gave {r:?}"));
            }
        }
    }
}
