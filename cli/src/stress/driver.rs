//! Driver-built tables under the stress: the monitor (issue 26;
//! `dart/src/mapper/monitor.rs`, invariants M1–M8).
//!
//! Two more DARTs over the SoC's frame table give each worker a *driver
//! stream* whose tables the worker builds itself through the monitor, as
//! Linux io-pgtable-dart does (register a fresh `dart-table` frame with a
//! zero write, link it, fill it; clear, invalidate, free):
//!
//! | driver DART | variant | invalidation | streams | tree |
//! |---|---|---|---|---|
//! | `drv-t8020` | t8020 (DART1 PTEs) | deferred | worker `i` < 15 on stream `1 + i` | two table levels |
//! | `drv-t8110` | t8110 (DART2 PTEs) | strict | worker `i` on stream `1 + i` | two levels; three (TCR.FOUR_LEVEL) for odd `i` |
//!
//! A leaf table's entries `0..8` are the worker's own slots (data patterns,
//! judged); entries `8..12` are *race slots*: every worker DMA-writes the
//! race slots of every driver stream at random, so DMA races the owner's
//! clears, flushes and frees (unjudged there: a DMA that outlives the flush
//! lands in a freed frame, soon a `kernel-restricted` canary or a fresh
//! zero frame, and is caught by those checks). Descriptors use entries
//! `0..2` of the root and of middle tables.
//!
//! # Rules (per driver stream, owned by its worker)
//!
//! 1. **Honest operations succeed.** Registering a fresh `dart-table`
//!    frame (a zero write), linking it (TTBR 0 by [`Dart::set_ttbr`] or by
//!    register, or a table descriptor in a linked table one level up, or
//!    re-linking a detached table of that level), a leaf naming a
//!    `user-data`, `kernel-shared` or `compressor` frame (R, W or RW) in a
//!    linked leaf table, clearing a valid entry (to 0 or to the old value
//!    with the valid bit clear), a flush of the stream (by API or register,
//!    never flush-all: the DARTs are shared), the free of a cleared leaf's
//!    frame after that flush, the release of an empty detached table and
//!    the free of its frame: anything else is a **count mismatch**.
//! 2. **Forgeries are refused `forbidden-type` and change nothing.** Leaves
//!    naming `kernel-restricted`, `read-only` (RW), `dart-table` (a fresh
//!    frame or one of the tree's own tables), `mmio` or `page-table` frames;
//!    descriptors naming an unregistered `dart-table` frame, a data frame
//!    or another DART's table; a write into a data frame or another DART's
//!    table; the release of a frame that is no driver table; a TTBR naming
//!    an unregistered `dart-table` frame (an invariant breach, refused and
//!    counted by the frame table). Afterwards the entry reads back as before,
//!    the target is uncounted and frees, and a DMA at the slot faults. A
//!    forged leaf that succeeded is an **unreachable access**, another
//!    outcome an **invariant** failure.
//! 3. **A valid entry is never overwritten** (M6 rule 6): valid over valid
//!    is `iova-in-use`, nothing changed (the fresh frame it named uncounted).
//! 4. **Tables are linked once and released only idle** (M3, M7): a
//!    descriptor naming a table linked elsewhere, being unlinked, named by a
//!    TTBR or at another level, and the release of a table with valid
//!    entries, a parent entry (a cleared one until its flush) or a TTBR,
//!    are refused `table-in-use`.
//! 5. **Counted frames do not free** (M4, M6): the free of a live leaf's
//!    frame, of a cleared leaf's frame before the flush, or of a registered
//!    table's frame is refused `frame-busy` (a breach, refused and counted).
//!    A success is a **count mismatch**.
//! 6. **DMA follows the tree.** At an own slot with a live leaf, a read
//!    (write) succeeds exactly when the leaf grants read (write) and reads
//!    the last data written (**lost write** otherwise); at a cleared,
//!    unflushed slot a read faults or returns the old data; after the flush
//!    it faults; elsewhere it faults (**unreachable access** otherwise).
//! 7. **Entries read back.** [`Dart::read_table_entry`] returns the last
//!    value written to every entry of every registered table; an index past
//!    the table is `bad-range`. [`Dart::mappings`] of the stream equals the
//!    shadow's live leaves. Otherwise an **invariant** failure.
//! 8. **Teardown.** At the end every leaf is cleared, the stream flushed,
//!    the frames freed, the tables unlinked bottom-up (a flush after each
//!    level), released and freed, the TTBR cleared: the driver DARTs then
//!    hold no table and count no frame.
//!
//! The quiescent checks cover the driver DARTs like the others
//! (`restricted-unreachable`, `iotlb-coherent`, provenance, and the frame
//! table's counts against [`Dart::dart_counts`], which counts driver trees,
//! their pending leaves and the holds on driver tables); the live leaves'
//! frames are in the stress shadow and the cleared ones in its pending set.

use super::lab::LabDart;
use super::{pattern_bytes, OpKind, Shared, Worker};
use coprocessor_sim::soc::SocError;
use dart::pte::{Leaf, PteFormat, Subpage, PTE_VALID};
use dart::regs::{t8020, t8110};
use dart::{Dart, DartError, Invalidation, StreamConfig, StreamPort, Variant};
use frame_table::{Counter, Frame, FrameTable, FrameType};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Own leaf slots per leaf table (entries `0..OWN`).
const OWN: u64 = 8;
/// Race leaf slots per leaf table (entries `OWN..OWN + RACE`).
const RACE: u64 = 4;
/// Descriptor slots per root and middle table.
const DESC: u64 = 2;
/// Most cleared, unflushed leaves a stream keeps before it flushes.
const MAX_PENDING: usize = 16;

struct DrvSpec {
    name: &'static str,
    variant: Variant,
    invalidation: Invalidation,
    streams: u32,
}

const DRIVERS: [DrvSpec; 2] = [
    DrvSpec { name: "drv-t8020", variant: Variant::T8020, invalidation: Invalidation::Deferred, streams: 16 },
    DrvSpec { name: "drv-t8110", variant: Variant::T8110, invalidation: Invalidation::Strict, streams: 64 },
];

/// Builds the driver DARTs over the SoC's frame table.
pub(super) fn build_drivers(frames: &Arc<FrameTable>) -> Result<Vec<LabDart>, SocError> {
    DRIVERS.iter().map(|spec| LabDart::new(frames, spec.name, spec.variant, spec.invalidation, spec.streams)).collect()
}

/// Where a driver stream's race slots are, for every worker's race DMA.
#[derive(Clone, Copy, Debug)]
pub(super) struct DrvTarget {
    drv: usize,
    sid: u32,
    depth: u32,
    shift: u32,
}

impl DrvTarget {
    /// A random race slot's IOVA: root entry, middle entry (three levels),
    /// leaf entry in the race range.
    fn race_iova(&self, rng: &mut impl Rng) -> u64 {
        let bits = self.shift - 3;
        let mut iova = 0;
        for level in 0..self.depth - 1 {
            iova |= rng.gen_range(0..DESC) << (self.shift + (self.depth - 1 - level) * bits);
        }
        iova | rng.gen_range(OWN..OWN + RACE) << self.shift
    }
}

/// How a registered table is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// TTBR 0 names it.
    Root,
    /// A valid descriptor at `(parent, index)` names it.
    Child { parent: u64, index: u64 },
    /// That descriptor was cleared; linked until the flush (M6).
    Unlinking,
    /// No parent, no TTBR; it keeps its level (M2).
    Detached,
}

/// A registered driver table in the shadow.
#[derive(Clone, Debug)]
struct DrvTable {
    frame: Frame,
    /// Its level (0 = root) once linked.
    level: u32,
    /// IOVA of its entry 0 while linked.
    base: u64,
    link: Link,
    /// Every non-zero value stored in it, valid or not.
    raw: BTreeMap<u64, u64>,
}

impl DrvTable {
    fn valid(&self, idx: u64) -> bool {
        self.raw.get(&idx).is_some_and(|&v| v & PTE_VALID != 0)
    }

    fn live(&self) -> usize {
        self.raw.values().filter(|&&v| v & PTE_VALID != 0).count()
    }

    fn linked(&self) -> bool {
        matches!(self.link, Link::Root | Link::Child { .. })
    }
}

/// A live (or cleared, unflushed) leaf in the shadow.
#[derive(Clone, Debug)]
struct DrvLeaf {
    table: u64,
    index: u64,
    frame: Frame,
    read: bool,
    write: bool,
    /// Pattern byte of the data, `None` while the fresh frame's zeros.
    data: Option<u8>,
    race: bool,
}

/// One driver stream and its shadow (module rules).
pub(super) struct DrvStream {
    drv: usize,
    sid: u32,
    port: StreamPort,
    /// Table levels below the TTBR (2, or 3 with FOUR_LEVEL).
    depth: u32,
    shift: u32,
    fmt: PteFormat,
    root: Option<u64>,
    tables: BTreeMap<u64, DrvTable>,
    /// Live leaves by IOVA.
    leaves: BTreeMap<u64, DrvLeaf>,
    /// Cleared leaves not yet covered by a flush, by IOVA (never re-mapped
    /// before it, as Linux's lazy mode holds the IOVA).
    stale: BTreeMap<u64, DrvLeaf>,
    /// Frames of cleared leaves, pending until the flush.
    pending: Vec<Frame>,
}

impl DrvStream {
    /// The IOVA bit where entries of a level-`level` table start.
    fn entry_shift(&self, level: u32) -> u32 {
        self.shift + (self.depth - 1 - level) * (self.shift - 3)
    }

    fn iova_of(&self, table: u64, index: u64) -> u64 {
        let t = &self.tables[&table];
        t.base + (index << self.entry_shift(t.level))
    }

    /// The free descriptor slots `(table, index)` of the linked tables
    /// above the leaves.
    fn free_desc_slots(&self) -> Vec<(u64, u64)> {
        self.linked_at(false)
            .into_iter()
            .flat_map(|pa| (0..DESC).filter(move |&i| !self.tables[&pa].valid(i)).map(move |i| (pa, i)))
            .collect()
    }

    /// Linked tables: the leaf tables (`leaf`) or those above them.
    fn linked_at(&self, leaf: bool) -> Vec<u64> {
        self.tables
            .iter()
            .filter(|(_, t)| t.linked() && (t.level + 1 == self.depth) == leaf)
            .map(|(&pa, _)| pa)
            .collect()
    }

    pub(super) fn target(&self) -> DrvTarget {
        DrvTarget { drv: self.drv, sid: self.sid, depth: self.depth, shift: self.shift }
    }
}

/// Allocates a `dart-table` frame for a driver table, aligned as a TTBR
/// must name it (t8110: 16 KiB granules, even at 4 KiB frames).
fn alloc_table(dart: &Dart) -> Result<(Frame, u64), frame_table::Error> {
    let frames = dart.frames();
    let align = (dart::regs::ttbr_align(dart.variant(), dart.page_shift()) >> dart.page_shift()).max(1);
    let f = frames.alloc_aligned(FrameType::DartTable, 1, align)?[0];
    Ok((f, frames.pa_of(f)?))
}

/// Sets up worker `id`'s driver streams: translating (four-level on t8110
/// for odd workers), a root registered by a zero write and named by TTBR 0.
pub(super) fn drv_streams(drivers: &[LabDart], id: usize) -> Result<Vec<DrvStream>, DartError> {
    let mut out = Vec::new();
    for (k, (d, spec)) in drivers.iter().zip(DRIVERS.iter()).enumerate() {
        let sid = 1 + id as u32;
        if sid >= spec.streams {
            continue;
        }
        let dart = &d.dart;
        let four = spec.variant == Variant::T8110 && id % 2 == 1;
        dart.set_stream_config(sid, StreamConfig { four_level: four, ..StreamConfig::TRANSLATING })?;
        let (frame, root) = alloc_table(dart)?;
        dart.write_table_entry(root, 0, 0)?;
        dart.set_ttbr(sid, 0, Some(root))?;
        let mut tables = BTreeMap::new();
        tables.insert(root, DrvTable { frame, level: 0, base: 0, link: Link::Root, raw: BTreeMap::new() });
        out.push(DrvStream {
            drv: k,
            sid,
            port: dart.port(sid)?,
            depth: if four { 3 } else { 2 },
            shift: dart.page_shift(),
            fmt: dart.pte_format(),
            root: Some(root),
            tables,
            leaves: BTreeMap::new(),
            stale: BTreeMap::new(),
            pending: Vec::new(),
        });
    }
    Ok(out)
}

/// A violation class (a field of [`super::Violations`]).
type Class = fn(&mut super::Violations) -> &mut u64;

/// Honest leaf frame types (DART access allowed).
const HONEST: [FrameType; 3] = [FrameType::UserData, FrameType::KernelShared, FrameType::Compressor];

impl<'a> Worker<'a> {
    fn drv_dart(&self, d: usize) -> &'a Dart {
        let shared: &'a Shared = self.shared;
        &shared.drivers[self.drv[d].drv].dart
    }

    fn drv_name(&self, d: usize) -> &'static str {
        DRIVERS[self.drv[d].drv].name
    }

    /// Records a violation of class `class` about driver stream `d`.
    fn drv_violation(&self, d: usize, class: Class, what: String) {
        let (name, sid) = (self.drv_name(d), self.drv[d].sid);
        self.shared.violation(class, format!("worker {}: {name} stream {sid}: {what}", self.id));
    }

    /// The driver-table operations, by `roll` in 0..30.
    pub(super) fn drv_step(&mut self, roll: u32) {
        if (25..=26).contains(&roll) {
            return self.drv_race_dma();
        }
        if self.drv.is_empty() {
            return;
        }
        let d = self.rng.gen_range(0..self.drv.len());
        match roll {
            0..=2 => self.drv_grow(d),
            3..=6 => self.drv_leaf(d, false),
            7..=8 => self.drv_leaf(d, true),
            9..=10 | 29 => self.drv_forged(d),
            11 => self.drv_overwrite(d),
            12..=14 => self.drv_clear(d),
            15 => self.drv_unlink(d),
            16..=17 => self.drv_flush(d),
            18 => self.drv_release(d),
            19 => self.drv_in_use(d),
            20 => self.drv_read(d),
            27 => self.drv_reach(d),
            28 => self.drv_free_busy(d),
            _ => self.drv_dma(d),
        }
    }

    /// Registers a fresh table with a zero write (rule 1); its PA, or
    /// `None` (out of frames, or a refusal: a violation).
    fn drv_register(&mut self, d: usize) -> Option<(Frame, u64)> {
        let dart = self.drv_dart(d);
        let Ok((frame, pa)) = alloc_table(dart) else {
            self.count(OpKind::PteRegister, false);
            return None;
        };
        let index = self.rng.gen_range(0..dart.entries_per_table());
        let r = dart.write_table_entry(pa, index, 0);
        self.count(OpKind::PteRegister, r.is_ok());
        if let Err(e) = r {
            self.drv_violation(d, |v| &mut v.count_mismatches, format!("zero write registering {pa:#x} refused: {e}"));
            let _ = self.shared.soc.frames.free(frame);
            return None;
        }
        Some((frame, pa))
    }

    /// A new root: a detached level-0 table or a fresh one, named by TTBR 0
    /// (API or register).
    fn drv_new_root(&mut self, d: usize) {
        let s = &self.drv[d];
        let detached: Vec<u64> =
            s.tables.iter().filter(|(_, t)| t.link == Link::Detached && t.level == 0).map(|(&pa, _)| pa).collect();
        let pa = if !detached.is_empty() && self.rng.gen_bool(0.5) {
            detached[self.rng.gen_range(0..detached.len())]
        } else {
            let Some((frame, pa)) = self.drv_register(d) else { return };
            self.drv[d]
                .tables
                .insert(pa, DrvTable { frame, level: 0, base: 0, link: Link::Detached, raw: BTreeMap::new() });
            pa
        };
        if self.drv_set_ttbr(d, Some(pa)) {
            let s = &mut self.drv[d];
            s.root = Some(pa);
            if let Some(t) = s.tables.get_mut(&pa) {
                t.link = Link::Root;
                t.base = 0;
            }
        }
    }

    /// TTBR 0 := `pa` by API or register; counted as a link; checks the read-back.
    fn drv_set_ttbr(&mut self, d: usize, pa: Option<u64>) -> bool {
        let dart = self.drv_dart(d);
        let sid = self.drv[d].sid;
        let r: Result<(), String> = if self.rng.gen_bool(0.5) {
            let value = dart::regs::encode_ttbr(dart.variant(), dart.page_shift(), pa);
            let off = if dart.variant() == Variant::T8110 { t8110::ttbr(sid) } else { t8020::ttbr(sid, 0) };
            dart.mmio_write(u64::from(off), value).map_err(|e| e.to_string())
        } else {
            dart.set_ttbr(sid, 0, pa).map_err(|e| e.to_string())
        };
        let now = dart.ttbr(sid, 0);
        let ok = r.is_ok() && now == Ok(pa);
        self.count(OpKind::PteLink, ok);
        if !ok {
            self.drv_violation(d, |v| &mut v.count_mismatches, format!("TTBR 0 := {pa:x?} gave {r:?}, reads {now:x?}"));
        }
        ok
    }

    /// Links a table one level below a linked table (rule 1): a detached
    /// table of that level or a fresh one.
    fn drv_grow(&mut self, d: usize) {
        let s = &self.drv[d];
        if s.root.is_none() {
            return self.drv_new_root(d);
        }
        let slots = s.free_desc_slots();
        if slots.is_empty() {
            return self.drv_clear(d);
        }
        let (parent, index) = slots[self.rng.gen_range(0..slots.len())];
        let level = s.tables[&parent].level + 1;
        let detached: Vec<u64> = s
            .tables
            .iter()
            .filter(|(_, t)| t.link == Link::Detached && t.level == level && t.live() == 0)
            .map(|(&pa, _)| pa)
            .collect();
        let child = if !detached.is_empty() && self.rng.gen_bool(0.5) {
            detached[self.rng.gen_range(0..detached.len())]
        } else {
            let Some((frame, pa)) = self.drv_register(d) else { return };
            self.drv[d]
                .tables
                .insert(pa, DrvTable { frame, level, base: 0, link: Link::Detached, raw: BTreeMap::new() });
            pa
        };
        let s = &self.drv[d];
        let Ok(desc) = s.fmt.encode_table(s.shift, child) else { return };
        let r = self.drv_dart(d).write_table_entry(parent, index, desc);
        self.count(OpKind::PteLink, r.is_ok());
        if let Err(e) = r {
            return self.drv_violation(
                d,
                |v| &mut v.count_mismatches,
                format!("descriptor {parent:#x}[{index}] -> {child:#x} (level {level}) refused: {e}"),
            );
        }
        let base = self.drv[d].iova_of(parent, index);
        let s = &mut self.drv[d];
        if let Some(p) = s.tables.get_mut(&parent) {
            p.raw.insert(index, desc);
        }
        if let Some(c) = s.tables.get_mut(&child) {
            c.link = Link::Child { parent, index };
            c.base = base;
        }
    }

    /// A free slot (own or race range) of a linked leaf table whose IOVA is
    /// not stale: `(table, index, iova)`.
    fn drv_free_slot(&mut self, d: usize, race: bool) -> Option<(u64, u64, u64)> {
        let s = &self.drv[d];
        let range = if race { OWN..OWN + RACE } else { 0..OWN };
        let slots: Vec<(u64, u64, u64)> = s
            .linked_at(true)
            .into_iter()
            .flat_map(|pa| range.clone().map(move |i| (pa, i)))
            .filter(|&(pa, i)| !s.tables[&pa].valid(i))
            .map(|(pa, i)| (pa, i, s.iova_of(pa, i)))
            .filter(|(_, _, iova)| !s.stale.contains_key(iova))
            .collect();
        (!slots.is_empty()).then(|| slots[self.rng.gen_range(0..slots.len())])
    }

    /// An honest leaf (rule 1), and a first DMA write of a pattern.
    fn drv_leaf(&mut self, d: usize, race: bool) {
        let Some((table, index, iova)) = self.drv_free_slot(d, race) else { return self.drv_grow(d) };
        let ty = if race { FrameType::UserData } else { HONEST[self.rng.gen_range(0..HONEST.len())] };
        let (read, write) =
            if race { (true, true) } else { [(true, false), (false, true), (true, true)][self.rng.gen_range(0..3)] };
        let frames = &self.shared.soc.frames;
        let Ok(got) = frames.alloc(ty, 1) else { return self.count(OpKind::PteLeaf, false) };
        let frame = got[0];
        let s = &self.drv[d];
        let leaf = Leaf { pa: frames.pa_of(frame).unwrap_or(0), read, write, subpage: Subpage::WHOLE };
        let Ok(pte) = s.fmt.encode_leaf(s.shift, &leaf) else {
            let _ = frames.free(frame);
            return;
        };
        let r = self.drv_dart(d).write_table_entry(table, index, pte);
        self.count(OpKind::PteLeaf, r.is_ok());
        if let Err(e) = r {
            self.drv_violation(
                d,
                |v| &mut v.count_mismatches,
                format!("honest leaf {table:#x}[{index}] -> {frame} ({ty}, r {read} w {write}) refused: {e}"),
            );
            let _ = frames.free(frame);
            return;
        }
        self.shared.shadow.lock().insert(frame, self.id);
        let s = &mut self.drv[d];
        if let Some(t) = s.tables.get_mut(&table) {
            t.raw.insert(index, pte);
        }
        s.leaves.insert(iova, DrvLeaf { table, index, frame, read, write, data: None, race });
        if !race && write {
            self.drv_write(d, iova);
        }
    }

    /// DMA-writes a new pattern at the live own leaf at `iova` (rule 6).
    fn drv_write(&mut self, d: usize, iova: u64) {
        let pattern: u8 = self.rng.gen();
        let page = self.page as usize;
        let id = self.id;
        let s = &mut self.drv[d];
        let Some(leaf) = s.leaves.get_mut(&iova) else { return };
        let r = s.port.dma_write(iova, &pattern_bytes(pattern, id, page));
        let write = leaf.write;
        match (&r, write) {
            (Ok(()), true) => leaf.data = Some(pattern),
            (Err(_), false) => {}
            _ => self.drv_violation(
                d,
                if write { |v| &mut v.lost_writes } else { |v| &mut v.unreachable_access },
                format!("DMA write at {iova:#x} (leaf grants write: {write}) gave {r:?}"),
            ),
        }
        self.count(OpKind::PteDma, r.is_ok());
    }

    /// DMA-reads the own slot at `iova` and judges it (rule 6).
    fn drv_read_dma(&mut self, d: usize, iova: u64, kind: OpKind) {
        let page = self.page as usize;
        let s = &self.drv[d];
        let mut buf = vec![0xEEu8; page];
        let r = s.port.dma_read(iova, &mut buf);
        let bytes = |l: &DrvLeaf| match l.data {
            Some(p) => pattern_bytes(p, self.id, page),
            None => vec![0; page],
        };
        let verdict: Option<(Class, &str)> = match (s.leaves.get(&iova), &r) {
            (Some(l), Ok(())) if l.read && buf == bytes(l) => None,
            (Some(l), Ok(())) if l.read => Some((|v| &mut v.lost_writes, "read data that is not the last write")),
            (Some(_), Ok(())) => Some((|v| &mut v.unreachable_access, "read through a leaf without read")),
            (Some(l), Err(_)) if l.read => Some((|v| &mut v.lost_writes, "read of a live readable leaf failed")),
            (Some(_), Err(_)) => None,
            (None, Ok(())) => match s.stale.get(&iova) {
                Some(l) if l.read && buf == bytes(l) => None,
                Some(_) => Some((|v| &mut v.unreachable_access, "stale read returned other than the old data")),
                None => Some((|v| &mut v.unreachable_access, "read where no leaf maps succeeded")),
            },
            (None, Err(_)) => None,
        };
        self.count(kind, r.is_ok());
        if let Some((class, what)) = verdict {
            self.drv_violation(d, class, format!("DMA read at {iova:#x}: {what} ({r:?})"));
        }
    }

    /// DMA at an own slot: a live leaf (read, sometimes write first), a
    /// stale one, or any own slot (rule 6).
    fn drv_dma(&mut self, d: usize) {
        let s = &self.drv[d];
        let own: Vec<u64> = s.leaves.iter().filter(|(_, l)| !l.race).map(|(&i, _)| i).collect();
        let stale: Vec<u64> = s.stale.iter().filter(|(_, l)| !l.race).map(|(&i, _)| i).collect();
        let roll = self.rng.gen_range(0..10);
        let iova = if roll < 6 && !own.is_empty() {
            let iova = own[self.rng.gen_range(0..own.len())];
            if self.rng.gen_bool(0.5) {
                self.drv_write(d, iova);
            }
            iova
        } else if roll < 8 && !stale.is_empty() {
            stale[self.rng.gen_range(0..stale.len())]
        } else {
            let t = DrvTarget { drv: s.drv, sid: s.sid, depth: s.depth, shift: s.shift };
            let race = t.race_iova(&mut self.rng);
            // The same path with an own leaf index.
            (race & !(((1 << (s.shift - 3)) - 1) << s.shift)) | self.rng.gen_range(0..OWN) << s.shift
        };
        self.drv_read_dma(d, iova, OpKind::PteDma);
    }

    /// Every worker's DMA into the race slots of any driver stream: may
    /// fault or land, unjudged here (module docs).
    fn drv_race_dma(&mut self) {
        let targets = &self.shared.drv_targets;
        if targets.is_empty() {
            return;
        }
        let t = targets[self.rng.gen_range(0..targets.len())];
        let iova = t.race_iova(&mut self.rng);
        let data = vec![0x5Au8 ^ self.id as u8; self.page as usize];
        let ok = self.shared.drivers[t.drv].dart.dma_write(t.sid, iova, &data).is_ok();
        self.count(OpKind::PteRaceDma, ok);
    }

    /// Clears a live leaf (rule 1): its frame pending until the flush,
    /// sometimes a free attempted at once (rule 5).
    fn drv_clear(&mut self, d: usize) {
        let s = &self.drv[d];
        if s.leaves.is_empty() {
            return self.drv_unlink(d);
        }
        let iova = *s.leaves.keys().nth(self.rng.gen_range(0..s.leaves.len())).unwrap_or(&0);
        let busy = self.rng.gen_bool(0.5);
        self.drv_clear_at(d, iova, busy);
    }

    fn drv_clear_at(&mut self, d: usize, iova: u64, free_busy: bool) {
        let Some(leaf) = self.drv[d].leaves.get(&iova).cloned() else { return };
        let old = self.drv[d].tables[&leaf.table].raw.get(&leaf.index).copied().unwrap_or(0);
        let value = if self.rng.gen_bool(0.5) { 0 } else { old & !PTE_VALID };
        // Out of the shadow before the clear starts (as unmaps do).
        self.shared.shadow.lock().remove(&leaf.frame);
        let r = self.drv_dart(d).write_table_entry(leaf.table, leaf.index, value);
        self.count(OpKind::PteClear, r.is_ok());
        if let Err(e) = r {
            self.shared.shadow.lock().insert(leaf.frame, self.id);
            return self.drv_violation(
                d,
                |v| &mut v.count_mismatches,
                format!("clear of leaf {:#x}[{}] refused: {e}", leaf.table, leaf.index),
            );
        }
        self.shared.pending.lock().insert(leaf.frame);
        let s = &mut self.drv[d];
        if let Some(t) = s.tables.get_mut(&leaf.table) {
            if value == 0 {
                t.raw.remove(&leaf.index);
            } else {
                t.raw.insert(leaf.index, value);
            }
        }
        s.leaves.remove(&iova);
        s.pending.push(leaf.frame);
        s.stale.insert(iova, leaf.clone());
        if free_busy {
            self.drv_free_expect_busy(d, leaf.frame, "a cleared leaf's frame before the flush");
        }
        if !leaf.race && leaf.read && self.rng.gen_bool(0.3) {
            self.drv_read_dma(d, iova, OpKind::PteDma);
        }
        if self.drv[d].pending.len() > MAX_PENDING {
            self.drv_flush(d);
        }
    }

    /// A free that rule 5 says must be refused `frame-busy`, changing nothing.
    fn drv_free_expect_busy(&mut self, d: usize, f: Frame, what: &str) {
        let frames = &self.shared.soc.frames;
        let before = frames.state(f).ok();
        let r = frames.free(f);
        self.count(OpKind::PteFreeBusy, r.is_ok());
        let kept = frames.state(f).ok() == before;
        match &r {
            Err(e) if e.kind() == "frame-busy" && kept => {}
            _ => self.drv_violation(
                d,
                |v| &mut v.count_mismatches,
                format!("free of {f}, {what}, gave {r:?} (state kept: {kept})"),
            ),
        }
    }

    /// A free of a counted frame: a live leaf's, a pending one's or a
    /// table's (rule 5).
    fn drv_free_busy(&mut self, d: usize) {
        let s = &self.drv[d];
        let mut cands: Vec<(Frame, &'static str)> = Vec::new();
        cands.extend(s.leaves.values().map(|l| (l.frame, "a live leaf's frame")));
        cands.extend(s.pending.iter().map(|&f| (f, "a cleared leaf's frame before the flush")));
        cands.extend(s.tables.values().map(|t| (t.frame, "a registered driver table")));
        if cands.is_empty() {
            return self.drv_leaf(d, false);
        }
        let (f, what) = cands[self.rng.gen_range(0..cands.len())];
        self.drv_free_expect_busy(d, f, what);
    }

    /// Clears the descriptor of an empty linked table (rule 1), then checks
    /// that neither its release nor its free goes through before the flush
    /// (rules 4, 5).
    fn drv_unlink(&mut self, d: usize) {
        let s = &self.drv[d];
        let cands: Vec<u64> = s
            .tables
            .iter()
            .filter(|(_, t)| matches!(t.link, Link::Child { .. }) && t.live() == 0)
            .map(|(&pa, _)| pa)
            .collect();
        if cands.is_empty() {
            return self.drv_grow(d);
        }
        let child = cands[self.rng.gen_range(0..cands.len())];
        self.drv_unlink_at(d, child);
    }

    fn drv_unlink_at(&mut self, d: usize, child: u64) {
        let Link::Child { parent, index } = self.drv[d].tables[&child].link else { return };
        let r = self.drv_dart(d).write_table_entry(parent, index, 0);
        self.count(OpKind::PteClear, r.is_ok());
        if let Err(e) = r {
            return self.drv_violation(
                d,
                |v| &mut v.count_mismatches,
                format!("clear of descriptor {parent:#x}[{index}] -> {child:#x} refused: {e}"),
            );
        }
        let s = &mut self.drv[d];
        if let Some(p) = s.tables.get_mut(&parent) {
            p.raw.remove(&index);
        }
        let frame = match s.tables.get_mut(&child) {
            Some(c) => {
                c.link = Link::Unlinking;
                c.frame
            }
            None => return,
        };
        if self.rng.gen_bool(0.5) {
            self.drv_release_expect_in_use(d, child, "a table whose descriptor was cleared, before the flush");
        } else {
            self.drv_free_expect_busy(d, frame, "a table whose descriptor was cleared, before the flush");
        }
    }

    /// A release that rule 4 says must be refused `table-in-use`.
    fn drv_release_expect_in_use(&mut self, d: usize, pa: u64, what: &str) {
        let r = self.drv_dart(d).release_table(pa);
        self.count(OpKind::PteInUse, r.is_ok());
        match &r {
            Err(e) if e.kind() == "table-in-use" => {}
            Ok(()) => {
                // The shadow follows what happened, so the run goes on.
                self.drv[d].tables.remove(&pa);
                self.drv_violation(d, |v| &mut v.count_mismatches, format!("release of {pa:#x}, {what}, succeeded"));
            }
            Err(e) => self.drv_violation(
                d,
                |v| &mut v.invariant_failures,
                format!("release of {pa:#x}, {what}: {e}, expected table-in-use"),
            ),
        }
    }

    /// Flushes the stream (API or register), then (rule 1) the cleared
    /// leaves' frames free, the unlinking tables are detached, and (rule 6)
    /// the formerly stale slots fault.
    pub(super) fn drv_flush(&mut self, d: usize) {
        let driver = &self.shared.drivers[self.drv[d].drv];
        let sid = self.drv[d].sid;
        let ok = if self.rng.gen_bool(0.5) {
            self.flush_by_register(&driver.dart, &driver.regs, sid, false)
        } else {
            driver.dart.flush(Some(sid)).is_ok()
        };
        self.count(OpKind::PteFlush, ok);
        if !ok {
            return self.drv_violation(d, |v| &mut v.invariant_failures, "flush failed".into());
        }
        let s = &mut self.drv[d];
        let pending = std::mem::take(&mut s.pending);
        let stale: Vec<(u64, DrvLeaf)> = std::mem::take(&mut s.stale).into_iter().collect();
        for t in s.tables.values_mut() {
            if t.link == Link::Unlinking {
                t.link = Link::Detached;
            }
        }
        {
            let mut p = self.shared.pending.lock();
            for f in &pending {
                p.remove(f);
            }
        }
        for f in pending {
            if let Err(e) = self.shared.soc.frames.free(f) {
                self.drv_violation(d, |v| &mut v.count_mismatches, format!("{f} not freeable after its flush: {e}"));
            }
        }
        for (iova, _) in stale.into_iter().take(3) {
            if !self.drv[d].leaves.contains_key(&iova) {
                self.drv_read_dma(d, iova, OpKind::FlushedRead);
            }
        }
    }

    /// Releases an idle table (rule 1) and frees its frame: a detached
    /// one, or the root after its TTBR is cleared (an empty root only).
    fn drv_release(&mut self, d: usize) {
        let s = &self.drv[d];
        let idle: Vec<u64> =
            s.tables.iter().filter(|(_, t)| t.link == Link::Detached && t.live() == 0).map(|(&pa, _)| pa).collect();
        let root_idle = s.root.is_some_and(|r| s.tables[&r].live() == 0);
        if root_idle && (idle.is_empty() || self.rng.gen_bool(0.3)) {
            let Some(root) = s.root else { return };
            if !self.drv_set_ttbr(d, None) {
                return;
            }
            let s = &mut self.drv[d];
            s.root = None;
            if let Some(t) = s.tables.get_mut(&root) {
                t.link = Link::Detached;
            }
            // Kept detached for a later TTBR, sometimes.
            if self.rng.gen_bool(0.3) {
                return;
            }
            return self.drv_release_at(d, root);
        }
        if idle.is_empty() {
            return self.drv_in_use(d);
        }
        let pa = idle[self.rng.gen_range(0..idle.len())];
        self.drv_release_at(d, pa);
    }

    fn drv_release_at(&mut self, d: usize, pa: u64) {
        let r = self.drv_dart(d).release_table(pa);
        self.count(OpKind::PteRelease, r.is_ok());
        if let Err(e) = r {
            return self.drv_violation(d, |v| &mut v.count_mismatches, format!("release of idle {pa:#x} refused: {e}"));
        }
        let Some(t) = self.drv[d].tables.remove(&pa) else { return };
        if let Err(e) = self.shared.soc.frames.free(t.frame) {
            self.drv_violation(d, |v| &mut v.count_mismatches, format!("released table {pa:#x} not freeable: {e}"));
        }
    }

    /// What rule 4 refuses: a descriptor naming a table linked (or being
    /// unlinked) elsewhere, named by a TTBR or at another level; a release
    /// of a table with entries, a parent or a TTBR.
    fn drv_in_use(&mut self, d: usize) {
        let s = &self.drv[d];
        let busy: Vec<u64> = s
            .tables
            .iter()
            .filter(|(_, t)| t.linked() || t.link == Link::Unlinking || t.live() > 0)
            .map(|(&pa, _)| pa)
            .collect();
        if self.rng.gen_bool(0.5) && !busy.is_empty() {
            let pa = busy[self.rng.gen_range(0..busy.len())];
            return self.drv_release_expect_in_use(d, pa, "a table linked, unlinking or with entries");
        }
        // A descriptor: in a free slot of a linked non-leaf table, naming a
        // table that cannot be linked there.
        let slots = s.free_desc_slots();
        if slots.is_empty() {
            return self.drv_grow(d);
        }
        let (parent, index) = slots[self.rng.gen_range(0..slots.len())];
        let level = s.tables[&parent].level + 1;
        let wrong: Vec<u64> = s
            .tables
            .iter()
            .filter(|(_, t)| t.linked() || t.link == Link::Unlinking || t.level != level)
            .map(|(&pa, _)| pa)
            .collect();
        let Some(&child) = wrong.get(self.rng.gen_range(0..wrong.len().max(1))) else { return };
        let Ok(desc) = s.fmt.encode_table(s.shift, child) else { return };
        let r = self.drv_dart(d).write_table_entry(parent, index, desc);
        self.count(OpKind::PteInUse, r.is_ok());
        let back = self.drv_dart(d).read_table_entry(parent, index);
        let want = self.drv[d].tables[&parent].raw.get(&index).copied().unwrap_or(0);
        match &r {
            Err(e) if e.kind() == "table-in-use" && back == Ok(want) => {}
            _ => self.drv_violation(
                d,
                |v| &mut v.invariant_failures,
                format!(
                    "descriptor {parent:#x}[{index}] -> {child:#x} (linked elsewhere or level {level} wrong) gave {r:?}, entry reads {back:x?}"
                ),
            ),
        }
    }

    /// Valid over valid (rule 3): `iova-in-use`, nothing changed.
    fn drv_overwrite(&mut self, d: usize) {
        let s = &self.drv[d];
        let valid: Vec<(u64, u64, u64, bool)> = s
            .tables
            .iter()
            .filter(|(_, t)| t.linked())
            .flat_map(|(&pa, t)| {
                let leaf = t.level + 1 == s.depth;
                t.raw.iter().filter(|(_, &v)| v & PTE_VALID != 0).map(move |(&i, &v)| (pa, i, v, leaf))
            })
            .collect();
        if valid.is_empty() {
            return self.drv_leaf(d, false);
        }
        let (table, index, old, leaf) = valid[self.rng.gen_range(0..valid.len())];
        let frames = &self.shared.soc.frames;
        let (fmt, shift) = (s.fmt, s.shift);
        // The same value, or another honest one (a fresh frame, or another table).
        let mut fresh = None;
        let value = if self.rng.gen_bool(0.3) {
            old
        } else if leaf {
            match frames.alloc(FrameType::UserData, 1) {
                Ok(f) => {
                    fresh = Some(f[0]);
                    let l =
                        Leaf { pa: frames.pa_of(f[0]).unwrap_or(0), read: true, write: true, subpage: Subpage::WHOLE };
                    fmt.encode_leaf(shift, &l).unwrap_or(old)
                }
                Err(_) => old,
            }
        } else {
            let others: Vec<u64> = s.tables.keys().copied().collect();
            fmt.encode_table(shift, others[self.rng.gen_range(0..others.len())]).unwrap_or(old)
        };
        let r = self.drv_dart(d).write_table_entry(table, index, value);
        self.count(OpKind::PteOverwrite, r.is_ok());
        let back = self.drv_dart(d).read_table_entry(table, index);
        let uncounted = fresh.is_none_or(|f| frames.state(f).is_ok_and(|st| !st.counts().any()));
        match &r {
            Err(e) if e.kind() == "iova-in-use" && back == Ok(old) && uncounted => {}
            _ => self.drv_violation(
                d,
                |v| &mut v.invariant_failures,
                format!("{value:#x} over valid {table:#x}[{index}] = {old:#x} gave {r:?}, reads {back:x?}, fresh frame uncounted: {uncounted}"),
            ),
        }
        if let Some(f) = fresh {
            if r.is_err() {
                if let Err(e) = frames.free(f) {
                    self.drv_violation(
                        d,
                        |v| &mut v.count_mismatches,
                        format!("{f} of a refused overwrite not freeable: {e}"),
                    );
                }
            }
        }
    }

    /// A forgery (rule 2): refused `forbidden-type`, nothing changed.
    fn drv_forged(&mut self, d: usize) {
        let frames = &self.shared.soc.frames;
        let kind = self.rng.gen_range(0..10u32);
        let s = &self.drv[d];
        let (fmt, shift, sid) = (s.fmt, s.shift, s.sid);
        let dart = self.drv_dart(d);
        // A fresh target frame of type `ty`, freed at the end (uncounted).
        let alloc = |ty| frames.alloc(ty, 1).ok().map(|f| (f[0], frames.pa_of(f[0]).unwrap_or(0)));
        // Another DART's table: this worker's device stream root on the SoC, or
        // its tree on the other driver DART.
        let foreign = {
            let other = self.drv.iter().find(|o| o.drv != s.drv).and_then(|o| o.tables.keys().next().copied());
            match (self.dart.ttbr(self.sid, 0), other) {
                (_, Some(pa)) if self.rng.gen_bool(0.5) => Some(pa),
                (Ok(Some(pa)), _) => Some(pa),
                (_, other) => other,
            }
        };
        let mut fresh: Option<(Frame, u64)> = None;
        let what: String;
        let r: Result<(), DartError>;
        // The slot written and the value it must keep.
        let mut slot: Option<(u64, u64, u64)> = None;
        let mut leaf_iova = None;
        match kind {
            0..=5 => {
                // A forged leaf in a free own slot.
                let Some((table, index, iova)) = self.drv_free_slot(d, false) else { return self.drv_grow(d) };
                let s = &self.drv[d];
                let (pa, write, name) = match kind {
                    0 => {
                        fresh = alloc(FrameType::KernelRestricted);
                        (fresh.map(|f| f.1), false, "kernel-restricted")
                    }
                    1 => {
                        fresh = alloc(FrameType::ReadOnly);
                        (fresh.map(|f| f.1), true, "read-only (RW)")
                    }
                    2 => {
                        fresh = alloc(FrameType::DartTable);
                        (fresh.map(|f| f.1), true, "unregistered dart-table")
                    }
                    3 => (s.tables.keys().nth(self.rng.gen_range(0..s.tables.len())).copied(), false, "own dart-table"),
                    4 => {
                        fresh = alloc(FrameType::Mmio);
                        (fresh.map(|f| f.1), true, "mmio")
                    }
                    _ => {
                        fresh = alloc(FrameType::PageTable);
                        (fresh.map(|f| f.1), false, "page-table")
                    }
                };
                let Some(pa) = pa else { return self.count(OpKind::PteForged, false) };
                let Ok(pte) = fmt.encode_leaf(shift, &Leaf { pa, read: true, write, subpage: Subpage::WHOLE }) else {
                    return;
                };
                what = format!("leaf {table:#x}[{index}] -> {pa:#x} ({name})");
                slot = Some((table, index, s.tables[&table].raw.get(&index).copied().unwrap_or(0)));
                leaf_iova = Some(iova);
                r = dart.write_table_entry(table, index, pte);
            }
            6 => {
                // A descriptor naming no table of this DART.
                let slots: Vec<(u64, u64)> = s
                    .linked_at(false)
                    .into_iter()
                    .flat_map(|pa| (0..DESC).filter(move |&i| !s.tables[&pa].valid(i)).map(move |i| (pa, i)))
                    .collect();
                if slots.is_empty() {
                    return self.drv_grow(d);
                }
                let (parent, index) = slots[self.rng.gen_range(0..slots.len())];
                let (pa, name) = match self.rng.gen_range(0..3) {
                    0 => {
                        fresh = alloc(FrameType::DartTable);
                        (fresh.map(|f| f.1), "an unregistered dart-table frame")
                    }
                    1 => {
                        fresh = alloc(FrameType::UserData);
                        (fresh.map(|f| f.1), "a user-data frame")
                    }
                    _ => (foreign, "another DART's table"),
                };
                let Some(pa) = pa else { return self.count(OpKind::PteForged, false) };
                let Ok(desc) = fmt.encode_table(shift, pa) else { return };
                what = format!("descriptor {parent:#x}[{index}] -> {pa:#x} ({name})");
                slot = Some((parent, index, s.tables[&parent].raw.get(&index).copied().unwrap_or(0)));
                r = dart.write_table_entry(parent, index, desc);
            }
            7 | 8 => {
                // A write into (7) or a release of (8) what is no driver
                // table of this DART: a fresh frame or another DART's table.
                let (ty, fresh_name) = if kind == 7 {
                    (FrameType::UserData, "a user-data frame")
                } else {
                    (FrameType::DartTable, "an unregistered dart-table frame")
                };
                let (pa, name) = if self.rng.gen_bool(0.5) {
                    fresh = alloc(ty);
                    (fresh.map(|f| f.1), fresh_name)
                } else {
                    (foreign, "another DART's table")
                };
                let Some(pa) = pa else { return self.count(OpKind::PteForged, false) };
                if kind == 7 {
                    what = format!("zero write into {pa:#x} ({name})");
                    r = dart.write_table_entry(pa, self.rng.gen_range(0..dart.entries_per_table()), 0);
                } else {
                    what = format!("release of {pa:#x} ({name})");
                    r = dart.release_table(pa);
                }
            }
            _ => {
                // A TTBR at an unregistered dart-table frame (a breach).
                fresh = alloc(FrameType::DartTable);
                let Some((_, pa)) = fresh else { return self.count(OpKind::PteForged, false) };
                let before = dart.ttbr(sid, 0);
                what = format!("TTBR 0 := unregistered dart-table {pa:#x}");
                r = dart.set_ttbr(sid, 0, Some(pa));
                if dart.ttbr(sid, 0) != before {
                    self.drv_violation(d, |v| &mut v.unreachable_access, format!("{what} moved the TTBR"));
                }
            }
        }
        self.count(OpKind::PteForged, r.is_ok());
        match &r {
            Err(e) if e.kind() == "forbidden-type" => {}
            Ok(()) => self.drv_violation(
                d,
                if leaf_iova.is_some() { |v| &mut v.unreachable_access } else { |v| &mut v.invariant_failures },
                format!("{what} succeeded"),
            ),
            Err(e) => {
                self.drv_violation(d, |v| &mut v.invariant_failures, format!("{what}: {e}, expected forbidden-type"))
            }
        }
        // M8: nothing changed.
        if let Some((table, index, want)) = slot {
            let back = dart.read_table_entry(table, index);
            if back != Ok(want) {
                self.drv_violation(d, |v| &mut v.invariant_failures, format!("after {what}: entry reads {back:x?}"));
            }
        }
        if let Some(iova) = leaf_iova {
            self.drv_read_dma(d, iova, OpKind::PteDma);
        }
        if let Some((f, _)) = fresh {
            let counted = frames.state(f).map(|st| st.count(Counter::Dart));
            if counted != Ok(0) {
                self.drv_violation(d, |v| &mut v.count_mismatches, format!("after {what}: {f} DART count {counted:?}"));
            } else if let Err(e) = frames.free(f) {
                self.drv_violation(d, |v| &mut v.count_mismatches, format!("after {what}: {f} not freeable: {e}"));
            }
        }
    }

    /// Entries read back (rule 7).
    fn drv_read(&mut self, d: usize) {
        let s = &self.drv[d];
        if s.tables.is_empty() {
            return self.drv_grow(d);
        }
        let (&pa, t) = s.tables.iter().nth(self.rng.gen_range(0..s.tables.len())).unwrap_or_else(|| unreachable!());
        let n = self.drv_dart(d).entries_per_table();
        let keys: Vec<u64> = t.raw.keys().copied().collect();
        let index = match self.rng.gen_range(0..10) {
            0 => n,
            1..=6 if !keys.is_empty() => keys[self.rng.gen_range(0..keys.len())],
            _ => self.rng.gen_range(0..n),
        };
        let want = t.raw.get(&index).copied().unwrap_or(0);
        let r = self.drv_dart(d).read_table_entry(pa, index);
        self.count(OpKind::PteRead, r.is_ok());
        let ok = if index >= n { r.as_ref().is_err_and(|e| e.kind() == "bad-range") } else { r == Ok(want) };
        if !ok {
            self.drv_violation(
                d,
                |v| &mut v.invariant_failures,
                format!("entry {pa:#x}[{index}] reads {r:x?}, the shadow says {want:#x}"),
            );
        }
    }

    /// The DART's reach of the stream equals the shadow's live leaves (rule 7).
    fn drv_reach(&mut self, d: usize) {
        let s = &self.drv[d];
        let frames = &self.shared.soc.frames;
        let got: Result<BTreeMap<u64, u64>, String> = self
            .drv_dart(d)
            .mappings(s.sid)
            .map(|v| v.into_iter().map(|(iova, leaf)| (iova, leaf.pa)).collect())
            .map_err(|e| e.to_string());
        let want: BTreeMap<u64, u64> =
            s.leaves.iter().map(|(&iova, l)| (iova, frames.pa_of(l.frame).unwrap_or(u64::MAX))).collect();
        let ok = got.as_ref() == Ok(&want);
        self.count(OpKind::PteReach, ok);
        if !ok {
            self.drv_violation(
                d,
                |v| &mut v.invariant_failures,
                format!("reaches {got:x?}, the shadow says {want:x?}"),
            );
        }
    }

    /// At the end (rule 8): clear, flush, free; unlink bottom-up; release
    /// everything; clear the TTBR.
    pub(super) fn drv_teardown(&mut self) {
        for d in 0..self.drv.len() {
            let iovas: Vec<u64> = self.drv[d].leaves.keys().copied().collect();
            for iova in iovas {
                self.drv_clear_at(d, iova, false);
            }
            self.drv_flush(d);
            for level in (1..self.drv[d].depth).rev() {
                let at: Vec<u64> = self.drv[d]
                    .tables
                    .iter()
                    .filter(|(_, t)| t.level == level && matches!(t.link, Link::Child { .. }))
                    .map(|(&pa, _)| pa)
                    .collect();
                for pa in at {
                    self.drv_unlink_at(d, pa);
                }
                self.drv_flush(d);
            }
            if self.drv[d].root.is_some() && self.drv_set_ttbr(d, None) {
                let s = &mut self.drv[d];
                if let Some(t) = s.root.take().and_then(|r| s.tables.get_mut(&r)) {
                    t.link = Link::Detached;
                }
            }
            let idle: Vec<u64> = self.drv[d].tables.keys().copied().collect();
            for pa in idle {
                self.drv_release_at(d, pa);
            }
        }
    }
}

/// After the workers' teardown: the driver DARTs hold no table and count
/// no frame (rule 8). Failure descriptions.
pub(super) fn check_drivers_empty(drivers: &[LabDart]) -> Vec<String> {
    let mut out = Vec::new();
    for d in drivers {
        let tables = d.dart.table_frames();
        let counts = d.dart.dart_counts();
        if !tables.is_empty() || !counts.is_empty() {
            out.push(format!(
                "{}: after the teardown it still holds tables {tables:?} and counts {} frames",
                d.dart.name(),
                counts.len()
            ));
        }
    }
    out
}
