//! The kernel's mapper service (docs/design.md §4): grants, and the RPC that lets a
//! coprocessor map and unmap its granted buffers.
//!
//! The rules, each with its refusal kind:
//! - only handles granted to *that* coprocessor (`not-granted`); a raw
//!   physical address (`map-pa`) is always `not-granted`;
//! - no permission above the grant (`perm-exceeds-grant`);
//! - zero or unaligned lengths, offsets or IOVAs, `iova + len` or
//!   `offset + len` overflowing, ranges past the grant or outside the
//!   coprocessor's IOVA window (`bad-range`); overlaps (`iova-in-use`);
//! - maps go through the DART's validated mapper, so frame-type policy and
//!   limits apply exactly as for the kernel (`forbidden-type`, …);
//! - an RPC unmap only covers pages that coprocessor mapped through its own
//!   grants; anything else, its ring or kernel-made mappings included, is
//!   `not-mapped`;
//! - `revoke` unmaps every mapping made through the handle;
//! - ownership is decided from what the tables hold **now**: the service
//!   maps with [`Dart::map_owned`] and records the returned [`MapId`] per
//!   page beside the handle; an RPC unmap and a revoke go through
//!   [`Dart::unmap_owned`], which removes a page only while the leaf the
//!   device's stream reaches there still carries that id. After a TTBR
//!   re-point, a TCR.FOUR_LEVEL toggle, or a kernel unmap and re-map
//!   (through this stream or a sibling sharing its tables, even of the same
//!   frame with the same permission), the page is `not-mapped` to the
//!   device and stays mapped. An RPC unmap is all or nothing (every page
//!   must still be the device's: [`OwnedScope::Whole`]); a revoke removes
//!   the pages that still are and leaves the rest ([`OwnedScope::Matching`]).
//! - grants hold their frames (docs/design.md §2 R7): the kernel side frees and
//!   retypes through [`MapperService::kernel_free`] and
//!   [`MapperService::kernel_retype`], which refuse (`frame-busy`, in both
//!   `on_violation` modes: a refusal, not a breach) while a live grant
//!   names any of the frames; and a grant may not name a `free` frame
//!   (`forbidden-type`), which would be the next owner's memory.
//!
//! Ring messages are copied out of shared memory **once** into a private
//! buffer, and only that copy is decoded and validated: a coprocessor that
//! rewrites the slot while the service works changes nothing the service
//! acts on (no double fetch).
//!
//! All service state is under one `parking_lot` mutex, held across the DART
//! map or unmap it guards, so an RPC map racing a revoke of the same handle
//! can never leave a mapping behind. The same mutex is held across the
//! grant check and the frame-table free or retype of
//! [`MapperService::kernel_free`] / [`MapperService::kernel_retype`], and
//! across the type check and insertion of [`MapperService::grant`]: a grant
//! racing a free either lands first (and the free is refused) or finds the
//! frames freed (and is refused). The frame table's own multi-frame free is
//! all or nothing (R6), so a refused call changes no frame.

use crate::device::Device;
use crate::rpc::wire::{self, Request, Response, RingLayout, Status, WireError};
use dart::{Dart, DartError, EventKind, MapId, OwnedScope};
use frame_table::{Frame, FrameTable, FrameType, Perm};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Why the service refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The handle is not granted to this coprocessor, or a raw physical address was asked for.
    #[error("not granted: {reason}")]
    NotGranted {
        /// What was asked.
        reason: String,
    },
    /// More permission than the grant carries.
    #[error("permission {asked} exceeds the grant's {granted}")]
    PermExceedsGrant {
        /// Asked.
        asked: Perm,
        /// Granted.
        granted: Perm,
    },
    /// A bad range.
    #[error("bad range {start:#x}+{len:#x}: {reason}")]
    BadRange {
        /// Start (IOVA or offset).
        start: u64,
        /// Length.
        len: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// An unmap of something this coprocessor did not map through RPC.
    #[error("{iova:#x}+{len:#x} was not mapped through this coprocessor's grants")]
    NotMapped {
        /// IOVA.
        iova: u64,
        /// Length.
        len: u64,
    },
    /// The message does not decode.
    #[error("bad message: {0}")]
    BadMessage(#[from] WireError),
    /// No such coprocessor.
    #[error("no coprocessor #{0}")]
    NoSuchDevice(usize),
    /// A kernel-side free or retype of a frame that a live grant names (R7).
    #[error("{frame} is named by live grant {handle}: revoke it first")]
    GrantedFrame {
        /// The frame (the lowest one a grant names).
        frame: Frame,
        /// The grant's handle (the lowest one naming that frame).
        handle: u32,
    },
    /// The DART (or frame table) refused.
    #[error(transparent)]
    Dart(#[from] DartError),
}

impl RpcError {
    /// The outcome kind.
    pub fn kind(&self) -> &'static str {
        match self {
            RpcError::NotGranted { .. } => "not-granted",
            RpcError::PermExceedsGrant { .. } => "perm-exceeds-grant",
            RpcError::BadRange { .. } => "bad-range",
            RpcError::NotMapped { .. } => "not-mapped",
            RpcError::BadMessage(_) => "bad-message",
            RpcError::NoSuchDevice(_) => "no-such-device",
            RpcError::GrantedFrame { .. } => "frame-busy",
            RpcError::Dart(e) => e.kind(),
        }
    }
}

#[derive(Clone, Debug)]
struct Grant {
    device: usize,
    frames: Vec<Frame>,
    perm: Perm,
}

#[derive(Clone, Debug)]
struct Ring {
    /// Physical address of the ring's frame.
    pa: u64,
    layout: RingLayout,
    /// The service's own consumer index (the shared copy is never trusted).
    tail: u32,
}

#[derive(Debug, Default)]
struct State {
    next_handle: u32,
    grants: HashMap<u32, Grant>,
    /// Pages mapped through RPC: (device, IOVA page) → (handle, the id the
    /// DART gave that map's PTEs). A record only says what to ask the DART
    /// about: whether the page is still the device's is the DART's answer.
    rpc_pages: BTreeMap<(usize, u64), (u32, MapId)>,
    rings: HashMap<usize, Ring>,
}

/// The kernel's mapper service for one SoC.
#[derive(Debug)]
pub struct MapperService {
    frames: Arc<FrameTable>,
    darts: Vec<Arc<Dart>>,
    devices: Vec<Device>,
    state: Mutex<State>,
}

/// One serviced ring message: its sequence number and outcome.
pub type Serviced = (u32, Result<(), RpcError>);

impl MapperService {
    /// A service for these DARTs and coprocessors.
    pub fn new(frames: Arc<FrameTable>, darts: Vec<Arc<Dart>>, devices: Vec<Device>) -> MapperService {
        MapperService { frames, darts, devices, state: Mutex::new(State { next_handle: 1, ..State::default() }) }
    }

    fn device(&self, device: usize) -> Result<(&Device, &Arc<Dart>), RpcError> {
        let d = self.devices.get(device).ok_or(RpcError::NoSuchDevice(device))?;
        Ok((d, &self.darts[d.dart]))
    }

    fn page_size(&self) -> u64 {
        self.frames.frame_size().bytes()
    }

    /// Grants `frames` to coprocessor `device` with at most `perm`; returns the handle.
    ///
    /// A `free` frame cannot be granted (`forbidden-type`): it belongs to
    /// nobody, and its next owner's data would be reachable through the
    /// handle. The check and the insertion are under the state lock, as the
    /// kernel-side free is, so no free slips in between (R7).
    pub fn grant(&self, device: usize, frames: Vec<Frame>, perm: Perm) -> Result<u32, RpcError> {
        self.frames.check_running().map_err(|e| RpcError::Dart(e.into()))?;
        self.device(device)?;
        if frames.is_empty() || perm.is_empty() {
            return Err(RpcError::BadRange { start: 0, len: 0, reason: "a grant needs frames and a permission" });
        }
        let mut s = self.state.lock();
        for &frame in &frames {
            let ty = self.frames.state(frame).map_err(|e| RpcError::Dart(e.into()))?.ty();
            if ty == FrameType::Free {
                return Err(RpcError::Dart(DartError::Frame(frame_table::Error::ForbiddenType {
                    frame,
                    ty,
                    access: frame_table::Access::Dart,
                    perm,
                })));
            }
        }
        let handle = s.next_handle;
        s.next_handle = s.next_handle.wrapping_add(1).max(1);
        s.grants.insert(handle, Grant { device, frames, perm });
        Ok(handle)
    }

    /// Revokes `handle`: unmaps every page mapped through it, then forgets
    /// it. Returns the pages unmapped.
    pub fn revoke(&self, handle: u32) -> Result<u64, RpcError> {
        self.frames.check_running().map_err(|e| RpcError::Dart(e.into()))?;
        let mut s = self.state.lock();
        let Some(g) = s.grants.get(&handle).cloned() else {
            return Err(RpcError::NotGranted { reason: format!("handle {handle} is not granted") });
        };
        let (dev, dart) = self.device(g.device)?;
        let pages: Vec<(u64, MapId)> = s
            .rpc_pages
            .range((g.device, 0)..=(g.device, u64::MAX))
            .filter(|(_, &(h, _))| h == handle)
            .map(|(&(_, p), &(_, id))| (p, id))
            .collect();
        let ps = self.page_size();
        let mut unmapped = 0;
        // Each page goes only if it is still the one this handle mapped.
        for (start, owners) in runs(&pages, ps) {
            match dart.unmap_owned(dev.stream, start, &owners, OwnedScope::Matching) {
                Ok(n) => unmapped += n,
                Err(DartError::NotMapped { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (p, _) in pages {
            s.rpc_pages.remove(&(g.device, p));
        }
        s.grants.remove(&handle);
        Ok(unmapped)
    }

    /// The kernel's free of `frames` (a buffer or one of its frames), all or
    /// nothing: refused with [`RpcError::GrantedFrame`] (`frame-busy`, in
    /// both `on_violation` modes) while a live grant names any of them
    /// (R7: revoke first), else the frame table's
    /// [`FrameTable::free_all`] (R2, R6), under the state lock that
    /// [`MapperService::grant`] and [`MapperService::revoke`] take.
    pub fn kernel_free(&self, frames: &[Frame]) -> Result<(), RpcError> {
        self.frames.check_running().map_err(|e| RpcError::Dart(e.into()))?;
        let s = self.state.lock();
        ungranted(&s, frames)?;
        self.frames.free_all(frames).map_err(|e| RpcError::Dart(e.into()))
    }

    /// The kernel's retype of `frames` to `to`, all or nothing: as
    /// [`MapperService::kernel_free`], with the frame table's
    /// [`FrameTable::retype_all`] (R1, R6).
    pub fn kernel_retype(&self, frames: &[Frame], to: FrameType) -> Result<(), RpcError> {
        self.frames.check_running().map_err(|e| RpcError::Dart(e.into()))?;
        let s = self.state.lock();
        ungranted(&s, frames)?;
        self.frames.retype_all(frames, to).map_err(|e| RpcError::Dart(e.into()))
    }

    /// Handles one decoded request from coprocessor `device`.
    pub fn handle(&self, device: usize, req: &Request) -> Result<(), RpcError> {
        let (dev, dart) = self.device(device)?;
        let r = self.handle_inner(device, dev, dart, req);
        dart.account_rpc(dev.stream, r.as_ref().err().map(RpcError::kind));
        record_rpc(dart, dev, Some(req), &r);
        r
    }

    fn handle_inner(&self, device: usize, dev: &Device, dart: &Dart, req: &Request) -> Result<(), RpcError> {
        let ps = self.page_size();
        let mut s = self.state.lock();
        match *req {
            Request::MapPa { pa, .. } => {
                Err(RpcError::NotGranted { reason: format!("raw physical address {pa:#x}: only granted handles map") })
            }
            Request::Map { handle, offset, len, iova, perm } => {
                let g = match s.grants.get(&handle) {
                    Some(g) if g.device == device => g.clone(),
                    _ => {
                        return Err(RpcError::NotGranted {
                            reason: format!("handle {handle} is not granted to {}", dev.name),
                        })
                    }
                };
                if !g.perm.contains(perm) || perm.is_empty() {
                    return Err(RpcError::PermExceedsGrant { asked: perm, granted: g.perm });
                }
                let bad = |start, reason| RpcError::BadRange { start, len, reason };
                if len == 0 {
                    return Err(bad(iova, "zero length"));
                }
                if offset % ps != 0 || len % ps != 0 || iova % ps != 0 {
                    return Err(bad(iova, "offset, length and IOVA must be page aligned"));
                }
                let end = iova.checked_add(len).ok_or(bad(iova, "iova + len overflows"))?;
                let off_end = offset.checked_add(len).ok_or(bad(offset, "offset + len overflows"))?;
                if off_end > g.frames.len() as u64 * ps {
                    return Err(bad(offset, "beyond the granted buffer"));
                }
                if iova < dev.window.start || end > dev.window.end {
                    return Err(bad(iova, "outside the coprocessor's IOVA window"));
                }
                let frames = &g.frames[(offset / ps) as usize..(off_end / ps) as usize];
                let id = dart.map_owned(dev.stream, iova, frames, perm, None)?;
                for i in 0..frames.len() as u64 {
                    s.rpc_pages.insert((device, iova + i * ps), (handle, id));
                }
                Ok(())
            }
            Request::Unmap { iova, len } => {
                let bad = |reason| RpcError::BadRange { start: iova, len, reason };
                if len == 0 {
                    return Err(bad("zero length"));
                }
                if iova % ps != 0 || len % ps != 0 {
                    return Err(bad("length and IOVA must be page aligned"));
                }
                iova.checked_add(len).ok_or(bad("iova + len overflows"))?;
                let pages = len / ps;
                // Stops at the first page without a record, so it costs at
                // most the records there are, whatever `len` says.
                let mut owners = Vec::new();
                for i in 0..pages {
                    match s.rpc_pages.get(&(device, iova + i * ps)) {
                        Some(&(_, id)) => owners.push(id),
                        None => return Err(RpcError::NotMapped { iova, len }),
                    }
                }
                // All or nothing, and only while every page is still the
                // device's mapping in the tables its stream walks now.
                match dart.unmap_owned(dev.stream, iova, &owners, OwnedScope::Whole) {
                    Ok(_) => {}
                    Err(DartError::NotMapped { .. }) => return Err(RpcError::NotMapped { iova, len }),
                    Err(e) => return Err(e.into()),
                }
                for i in 0..pages {
                    s.rpc_pages.remove(&(device, iova + i * ps));
                }
                Ok(())
            }
        }
    }

    /// Decodes one message (already copied out of shared memory) and handles it.
    pub fn handle_message(&self, device: usize, message: &[u8]) -> Serviced {
        match wire::decode_request(message) {
            Ok((seq, req)) => (seq, self.handle(device, &req)),
            Err(e) => {
                let seq = wire::raw_seq(message).unwrap_or(0);
                let r = Err(RpcError::BadMessage(e));
                if let Ok((dev, dart)) = self.device(device) {
                    dart.account_rpc(dev.stream, Some("bad-message"));
                    record_rpc(dart, dev, None, &r);
                }
                (seq, r)
            }
        }
    }

    /// Gives coprocessor `device` an RPC ring in `frame` (a `kernel-shared`
    /// frame the caller also maps into the device). Returns the layout.
    pub fn attach_ring(&self, device: usize, frame: Frame) -> Result<RingLayout, RpcError> {
        self.device(device)?;
        let st = self.frames.state(frame).map_err(|e| RpcError::Dart(e.into()))?;
        if st.ty() != FrameType::KernelShared {
            return Err(RpcError::Dart(DartError::Frame(frame_table::Error::ForbiddenType {
                frame,
                ty: st.ty(),
                access: frame_table::Access::Dart,
                perm: Perm::RW,
            })));
        }
        let layout = ring_layout(self.page_size());
        let pa = self.frames.pa_of(frame).map_err(|e| RpcError::Dart(e.into()))?;
        self.state.lock().rings.insert(device, Ring { pa, layout, tail: 0 });
        Ok(layout)
    }

    /// Services coprocessor `device`'s ring: every message between the
    /// service's tail and the device's head is copied out once, decoded,
    /// handled, and answered in its response slot.
    pub fn service_ring(&self, device: usize) -> Result<Vec<Serviced>, RpcError> {
        let Some(ring) = self.state.lock().rings.get(&device).cloned() else {
            return Err(RpcError::NotGranted { reason: "no ring attached".into() });
        };
        let mut head_bytes = [0u8; 4];
        self.frames
            .aperture_read(ring.pa + RingLayout::head_offset() as u64, &mut head_bytes)
            .map_err(|e| RpcError::Dart(e.into()))?;
        let head = u32::from_le_bytes(head_bytes);
        let mut tail = ring.tail;
        let mut out = Vec::new();
        // A head more than a ring ahead is garbage: service one ring's worth.
        let pending = ring.layout.pending(head, tail).unwrap_or(ring.layout.slots);
        for _ in 0..pending {
            let mut msg = [0u8; wire::SLOT_BYTES];
            let slot = ring.pa + ring.layout.slot_offset(tail) as u64;
            // The one fetch: everything below works on `msg`.
            self.frames.aperture_read(slot, &mut msg).map_err(|e| RpcError::Dart(e.into()))?;
            let (seq, result) = self.handle_message(device, &msg);
            let status = match &result {
                Ok(()) => Status::Ok,
                Err(e) => Status::refused(e.kind()).unwrap_or(Status::Refused(0)),
            };
            let resp = wire::encode_response(&Response { seq, status });
            let _ = self.frames.aperture_write(ring.pa + ring.layout.response_offset(tail) as u64, &resp);
            out.push((seq, result));
            tail = tail.wrapping_add(1);
        }
        let _ = self.frames.aperture_write(ring.pa + RingLayout::tail_offset() as u64, &tail.to_le_bytes());
        if let Some(r) = self.state.lock().rings.get_mut(&device) {
            r.tail = tail;
        }
        Ok(out)
    }

    /// The kernel's own unmap of `[iova, iova + len)` in coprocessor
    /// `device`'s stream. Any RPC record of those pages goes with it, so a
    /// later mapping the kernel makes there can never be unmapped (or
    /// revoked) by the device as if it were its own.
    pub fn kernel_unmap(&self, device: usize, iova: u64, len: u64) -> Result<u64, RpcError> {
        let (dev, dart) = self.device(device)?;
        let mut s = self.state.lock();
        let n = dart.unmap(dev.stream, iova, len)?;
        let end = iova.saturating_add(len);
        let gone: Vec<(usize, u64)> = s.rpc_pages.range((device, iova)..(device, end)).map(|(&k, _)| k).collect();
        for k in gone {
            s.rpc_pages.remove(&k);
        }
        Ok(n)
    }

    /// Pages coprocessor `device` mapped through RPC and the service still
    /// has records of, with their handles. (A record names a page the
    /// device's stream may no longer reach as its own mapping: the DART
    /// decides that, [`Dart::map_id`].)
    pub fn rpc_pages(&self, device: usize) -> Vec<(u64, u32)> {
        self.state.lock().rpc_pages.range((device, 0)..=(device, u64::MAX)).map(|(&(_, p), &(h, _))| (p, h)).collect()
    }
}

/// `Ok` if no live grant of `s` names any of `frames`; else the lowest such
/// frame, with the lowest handle naming it (R7). Costs the granted frames,
/// not physical memory.
fn ungranted(s: &State, frames: &[Frame]) -> Result<(), RpcError> {
    let named: HashSet<Frame> = frames.iter().copied().collect();
    let hit = s
        .grants
        .iter()
        .flat_map(|(&handle, g)| g.frames.iter().filter(|f| named.contains(f)).map(move |&frame| (frame, handle)))
        .min();
    match hit {
        Some((frame, handle)) => Err(RpcError::GrantedFrame { frame, handle }),
        None => Ok(()),
    }
}

/// Records an RPC decision in the DART's event log, if it has one (`req`:
/// `None` for a message that did not decode).
fn record_rpc(dart: &Dart, dev: &Device, req: Option<&Request>, result: &Result<(), RpcError>) {
    let Some(log) = dart.event_log().filter(|l| l.enabled()) else { return };
    let (request, iova, len) = match req {
        Some(&Request::Map { iova, len, .. }) => ("map", iova, len),
        Some(&Request::MapPa { iova, len, .. }) => ("map-pa", iova, len),
        Some(&Request::Unmap { iova, len }) => ("unmap", iova, len),
        None => ("undecodable", 0, 0),
    };
    let (decision, reason) = match result {
        Ok(()) => ("accepted", String::new()),
        Err(e) => ("refused", e.kind().to_owned()),
    };
    log.record(
        dart.name(),
        EventKind::Rpc { stream: dev.stream, device: dev.name.clone(), request, iova, len, decision, reason },
    );
}

/// The ring layout that fits one frame of `page_size` bytes.
pub fn ring_layout(page_size: u64) -> RingLayout {
    let mut slots = 1u32;
    while RingLayout::HEADER_BYTES as u64 + 2 * (slots as u64 * 2) * wire::SLOT_BYTES as u64 <= page_size {
        slots *= 2;
    }
    RingLayout::new(slots).unwrap_or(RingLayout { slots: 1 })
}

/// Contiguous runs of sorted pages: each run's first page and the ids of
/// its pages, in order.
fn runs(pages: &[(u64, MapId)], ps: u64) -> Vec<(u64, Vec<MapId>)> {
    let mut out: Vec<(u64, Vec<MapId>)> = Vec::new();
    for &(p, id) in pages {
        match out.last_mut() {
            Some((start, ids)) if start.checked_add(ids.len() as u64 * ps) == Some(p) => ids.push(id),
            _ => out.push((p, vec![id])),
        }
    }
    out
}
