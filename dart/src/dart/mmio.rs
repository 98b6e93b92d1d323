//! The register file: the state only the registers hold, and the `Dart`
//! entry points that read and write registers (see the [module
//! docs](super) for the model).

use super::{Dart, TcrWrite};
use crate::error::DartError;
use crate::fault::FaultKind;
use crate::hw::regs::{
    decode_access, decode_ttbr, encode_ttbr, error_encode, params, reg_at, t8020, t8110, tcr_decode, tcr_encode,
    MmioAccess, MmioCounts, MmioDir, MmioError, MmioObserver, MmioOutcome, Reg, MMIO_SIZE,
};
use crate::types::StreamConfig;
use crate::variant::Variant;
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Register-only state of one DART, and its access counters.
///
/// The atomics let lock-free registers (PARAMS, the error registers) and the
/// fault path read without the register lock; every read-modify-write of
/// them, and every register write that changes stream state, happens under
/// `serial`.
pub(crate) struct MmioState {
    /// The register lock (taken before the mapper lock).
    serial: Mutex<()>,
    /// t8020 STREAM_SELECT, as written.
    stream_select: AtomicU32,
    /// Protection bits; bit 0 (t8110 LOCK_TCR_TTBR, t8020 CONFIG.LOCK)
    /// drops TCR/TTBR writes.
    protect: AtomicU32,
    /// t8110 PROTECT_LOCK: protection bits that can no longer be cleared.
    protect_lock: AtomicU32,
    /// t8110 ERROR_MASK.
    error_mask: AtomicU32,
    /// t8020/t6000 STREAM_REMAP\[0..4\], as written (read-as-written,
    /// *inferred*: no effect on translation).
    remap: [AtomicU32; t8020::REMAPS as usize],
    /// t8110 TCR REMAP / REMAP_EN bits per stream, as written (same).
    tcr_remap: Box<[AtomicU32]>,
    seq: AtomicU64,
    observer: RwLock<Option<Arc<MmioObserver>>>,
    reads: AtomicU64,
    writes: AtomicU64,
    unknown: AtomicU64,
    ignored: AtomicU64,
    locked: AtomicU64,
    refused: AtomicU64,
    bad_offset: AtomicU64,
}

impl crate::mapper::RegisterLock for MmioState {
    fn tcr_ttbr_locked(&self) -> bool {
        MmioState::tcr_ttbr_locked(self)
    }
}

/// The lock bit inside `MmioState::protect`.
const LOCK_TCR_TTBR: u32 = t8110::PROTECT_TTBR_TCR.mask();

impl MmioState {
    pub(crate) fn new(streams: u32) -> MmioState {
        MmioState {
            serial: Mutex::new(()),
            stream_select: AtomicU32::new(0),
            protect: AtomicU32::new(0),
            protect_lock: AtomicU32::new(0),
            error_mask: AtomicU32::new(0),
            remap: std::array::from_fn(|_| AtomicU32::new(0)),
            tcr_remap: (0..streams).map(|_| AtomicU32::new(0)).collect(),
            seq: AtomicU64::new(0),
            observer: RwLock::new(None),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            locked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bad_offset: AtomicU64::new(0),
        }
    }

    /// Whether a fault of `kind` is masked by ERROR_MASK (t8110 only): it
    /// then neither latches ERROR nor raises the interrupt line.
    pub(crate) fn error_masked(&self, variant: Variant, kind: FaultKind, write: bool) -> bool {
        variant == Variant::T8110 && self.error_mask.load(Relaxed) & (1 << kind.error_bit(variant, write)) != 0
    }

    /// Whether TCR/TTBR writes are locked. Every write of the lock bit
    /// holds the mapper lock, so a caller holding it sees the lock stand
    /// still until its change is made.
    pub(crate) fn tcr_ttbr_locked(&self) -> bool {
        self.protect.load(Relaxed) & LOCK_TCR_TTBR != 0
    }
}

/// The offset as a register index, or why it is not one.
fn check_offset(offset: u64) -> Result<u32, MmioError> {
    if !offset.is_multiple_of(4) {
        return Err(MmioError::Misaligned { offset });
    }
    if offset >= MMIO_SIZE {
        return Err(MmioError::OutOfRange { offset, size: MMIO_SIZE });
    }
    Ok(offset as u32)
}

/// # Registers: MMIO
///
/// The register file a driver programs (layouts in [`crate::hw::regs`]), over
/// the same stream state as the typed register calls above.
impl Dart {
    /// Reads the 32-bit register at byte `offset` (docs/design.md §3; see
    /// [`crate::hw::regs`] for the register maps). An offset with no emulated
    /// register reads 0. Errors: a misaligned offset, one beyond
    /// [`MMIO_SIZE`], or a halted system.
    pub fn mmio_read(&self, offset: u64) -> Result<u32, MmioError> {
        self.mmio_access(offset, None)
    }

    /// Writes `value` to the 32-bit register at byte `offset`. The write is
    /// decoded and applied to the stream state through the same checks as
    /// the high-level API. `Ok` also when the write had no effect (unknown
    /// offset, read-only register, unimplemented command, lock set): see
    /// [`MmioOutcome`] and [`Dart::mmio_counts`]. Errors: a bad offset, or
    /// [`MmioError::Refused`] (bypass on an untrusted stream, a TTBR at a
    /// frame that is not this DART's table — an invariant breach handled by
    /// the SoC's violation mode — or a halted system), which changed nothing.
    pub fn mmio_write(&self, offset: u64, value: u32) -> Result<(), MmioError> {
        self.mmio_access(offset, Some(value)).map(drop)
    }

    /// Size of the register window in bytes.
    pub fn mmio_size(&self) -> u64 {
        MMIO_SIZE
    }

    /// Register access counts so far.
    pub fn mmio_counts(&self) -> MmioCounts {
        let s = &self.mmio;
        MmioCounts {
            reads: s.reads.load(Relaxed),
            writes: s.writes.load(Relaxed),
            unknown: s.unknown.load(Relaxed),
            ignored: s.ignored.load(Relaxed),
            locked: s.locked.load(Relaxed),
            refused: s.refused.load(Relaxed),
            bad_offset: s.bad_offset.load(Relaxed),
        }
    }

    /// Installs (or removes) the register observer, called after every
    /// register access with its [`MmioAccess`], outside the register lock
    /// (it may access registers itself). Accesses from several threads may
    /// reach it out of order; [`MmioAccess::seq`] gives the order.
    pub fn set_mmio_observer(&self, observer: Option<Arc<MmioObserver>>) {
        *self.mmio.observer.write() = observer;
    }

    fn mmio_access(&self, offset: u64, write: Option<u32>) -> Result<u32, MmioError> {
        let s = &self.mmio;
        let (dir, written) = match write {
            Some(v) => (MmioDir::Write, v),
            None => (MmioDir::Read, 0),
        };
        (if write.is_some() { &s.writes } else { &s.reads }).fetch_add(1, Relaxed);
        let (value, outcome, result, seq) = match check_offset(offset) {
            Err(e) => (written, MmioOutcome::BadOffset, Err(e), s.seq.fetch_add(1, Relaxed)),
            Ok(off) => {
                let reg = reg_at(self.variant(), self.stream_count(), off);
                let guard = (!reg.lock_free()).then(|| s.serial.lock());
                let r = match self.frames().check_running() {
                    Err(e) => Err(DartError::from(e)),
                    Ok(()) => match write {
                        None => Ok(self.reg_read(reg)),
                        Some(v) => self.reg_write(reg, v).map(|o| (v, o)),
                    },
                };
                let seq = s.seq.fetch_add(1, Relaxed);
                drop(guard);
                match r {
                    Ok((v, o)) => (v, o, Ok(v), seq),
                    Err(e) => {
                        let register = decode_access(self.variant(), offset, written).register;
                        (
                            written,
                            MmioOutcome::Refused(e.kind()),
                            Err(MmioError::Refused { offset, register, source: e }),
                            seq,
                        )
                    }
                }
            }
        };
        let counter = match outcome {
            MmioOutcome::Done => None,
            MmioOutcome::Unknown => Some(&s.unknown),
            MmioOutcome::Ignored => Some(&s.ignored),
            MmioOutcome::Locked => Some(&s.locked),
            MmioOutcome::Refused(_) => Some(&s.refused),
            MmioOutcome::BadOffset => Some(&s.bad_offset),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Relaxed);
        }
        let observer = s.observer.read().clone();
        if let Some(observer) = observer {
            observer(&MmioAccess { seq, variant: self.variant(), offset, value, dir, outcome });
        }
        self.trace.emit(|| {
            let d = decode_access(self.variant(), offset, value);
            crate::observe::events::EventKind::Mmio {
                dir: if dir == MmioDir::Read { "read" } else { "write" },
                offset,
                value,
                register: d.register,
                fields: d.fields,
                outcome: outcome.to_string(),
            }
        });
        result
    }

    /// The enabled bitmap of streams `32·word ..= 32·word + 31`.
    fn enabled_word(&self, word: u32) -> u32 {
        (0..32u32)
            .filter(|b| self.stream(word * 32 + b).is_ok_and(|st| st.config().enabled))
            .fold(0, |acc, b| acc | 1 << b)
    }

    fn reg_read(&self, reg: Reg) -> (u32, MmioOutcome) {
        let (v, s) = (self.variant(), &self.mmio);
        let fault = || self.error().first;
        let value = match reg {
            Reg::Params(i) => match params(v, i, self.page_shift(), self.stream_count()) {
                Some(p) => p,
                None => return (0, MmioOutcome::Unknown),
            },
            Reg::StreamSelect => s.stream_select.load(Relaxed),
            // Commands complete inside the write: BUSY is never set.
            Reg::StreamCommand | Reg::TlbCmd => 0,
            Reg::Error => error_encode(v, fault().as_ref()),
            Reg::ErrorMask => s.error_mask.load(Relaxed),
            Reg::ErrorAddrLo => fault().map_or(0, |f| f.iova as u32),
            Reg::ErrorAddrHi => fault().map_or(0, |f| (f.iova >> 32) as u32),
            Reg::ErrorStreams(w) => fault().filter(|f| f.stream / 32 == w).map_or(0, |f| 1 << (f.stream % 32)),
            Reg::Config => t8020::CONFIG_LOCK.put(s.tcr_ttbr_locked() as u32),
            Reg::Protect => s.protect.load(Relaxed),
            Reg::Unprotect => 0,
            Reg::ProtectLock => s.protect_lock.load(Relaxed),
            Reg::StreamsEnable => self.enabled_word(0),
            Reg::EnableStreams(w) | Reg::DisableStreams(w) => self.enabled_word(w),
            Reg::Tcr(sid) => self.stream(sid).map_or(0, |st| {
                tcr_encode(v, st.config()) | s.tcr_remap.get(sid as usize).map_or(0, |r| r.load(Relaxed))
            }),
            Reg::Remap(i) => s.remap.get(i as usize).map_or(0, |r| r.load(Relaxed)),
            Reg::Ttbr(sid, idx) => self.stream(sid).map_or(0, |st| encode_ttbr(v, self.page_shift(), st.ttbr(idx))),
            Reg::Unknown => return (0, MmioOutcome::Unknown),
        };
        (value, MmioOutcome::Done)
    }

    fn reg_write(&self, reg: Reg, value: u32) -> Result<MmioOutcome, DartError> {
        use MmioOutcome::{Done, Ignored, Locked, Unknown};
        let (v, s) = (self.variant(), &self.mmio);
        Ok(match reg {
            Reg::Params(_) | Reg::ErrorAddrLo | Reg::ErrorAddrHi | Reg::ErrorStreams(_) => Ignored,
            Reg::StreamSelect => {
                s.stream_select.store(value, Relaxed);
                Done
            }
            Reg::StreamCommand if t8020::STREAM_COMMAND_INVALIDATE.is_set(value) => {
                let select = u64::from(s.stream_select.load(Relaxed));
                let all = (1u64 << self.stream_count()) - 1;
                self.kernel().refuse_in_interrupt("STREAM_COMMAND INVALIDATE")?;
                self.kernel().flush_streams([select & all, 0, 0, 0]);
                Done
            }
            Reg::StreamCommand => Ignored,
            Reg::TlbCmd => match t8110::TLB_CMD_OP.get(value) {
                t8110::TLB_CMD_OP_FLUSH_ALL => {
                    self.flush(None)?;
                    Done
                }
                t8110::TLB_CMD_OP_FLUSH_SID if t8110::TLB_CMD_STREAM.get(value) < self.stream_count() => {
                    self.flush(Some(t8110::TLB_CMD_STREAM.get(value)))?;
                    Done
                }
                _ => Ignored,
            },
            Reg::Error => {
                let flag = if v == Variant::T8110 { t8110::ERROR_FLAG } else { t8020::ERROR_FLAG };
                if flag.is_set(value) {
                    self.clear_error();
                    Done
                } else {
                    Ignored
                }
            }
            Reg::ErrorMask => {
                s.error_mask.store(value, Relaxed);
                Done
            }
            Reg::Config if t8020::CONFIG_LOCK.is_set(value) => {
                let _m = self.mapper.lock();
                s.protect.fetch_or(LOCK_TCR_TTBR, Relaxed);
                Done
            }
            // CONFIG.LOCK is sticky: a write without it does not unlock.
            Reg::Config if s.tcr_ttbr_locked() => Locked,
            Reg::Config => Done,
            Reg::Protect => {
                let _m = self.mapper.lock();
                s.protect.fetch_or(value & t8110::PROTECT_BITS.mask(), Relaxed);
                Done
            }
            Reg::Unprotect => {
                let _m = self.mapper.lock();
                let asked = value & t8110::PROTECT_BITS.mask();
                let stuck = s.protect_lock.load(Relaxed);
                let before = s.protect.fetch_and(!(asked & !stuck), Relaxed);
                if asked & stuck & before != 0 {
                    Locked
                } else {
                    Done
                }
            }
            Reg::ProtectLock => {
                s.protect_lock.fetch_or(value & t8110::PROTECT_BITS.mask(), Relaxed);
                Done
            }
            Reg::StreamsEnable => self.write_enables(0, |_, bit| bit, value)?,
            Reg::EnableStreams(w) => self.write_enables(w, |old, bit| old || bit, value)?,
            Reg::DisableStreams(w) => self.write_enables(w, |old, bit| old && !bit, value)?,
            // The lock is checked under the mapper lock, with the change
            // (`update_stream_config`, `set_ttbr`); the register drops a
            // locked write where the typed call returns `locked`.
            Reg::Tcr(sid) => match self.update_stream_config(sid, TcrWrite::Gated, |c| tcr_decode(v, value, c)) {
                Ok(_) => {
                    if v == Variant::T8110 {
                        if let Some(r) = s.tcr_remap.get(sid as usize) {
                            r.store(value & t8110::TCR_REMAP_BITS, Relaxed);
                        }
                    }
                    Done
                }
                Err(DartError::Locked { .. }) => Locked,
                Err(e) => return Err(e),
            },
            Reg::Ttbr(sid, idx) => match self.set_ttbr(sid, idx, decode_ttbr(v, self.page_shift(), value)) {
                Ok(()) => Done,
                Err(DartError::Locked { .. }) => Locked,
                Err(e) => return Err(e),
            },
            Reg::Remap(i) => {
                if let Some(r) = s.remap.get(i as usize) {
                    r.store(value, Relaxed);
                }
                Done
            }
            Reg::Unknown => Unknown,
        })
    }

    /// Applies an enable-register write to streams `32·word ..`: `next(old,
    /// bit)` is each stream's new enable state. Bits of streams the instance
    /// lacks are dropped.
    fn write_enables(
        &self,
        word: u32,
        next: impl Fn(bool, bool) -> bool,
        value: u32,
    ) -> Result<MmioOutcome, DartError> {
        for b in 0..32u32 {
            let sid = word * 32 + b;
            let Ok(st) = self.stream(sid) else { break };
            let (old, bit) = (st.config().enabled, value & (1 << b) != 0);
            let enabled = next(old, bit);
            if enabled != old {
                self.update_stream_config(sid, TcrWrite::Ungated, |c| StreamConfig { enabled, ..c })?;
            }
        }
        Ok(MmioOutcome::Done)
    }
}
