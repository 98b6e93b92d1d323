//! The binary wire format of the mapper service RPC (docs/design.md §4).
//!
//! Everything is little-endian. This module only knows bytes: it computes ring
//! offsets, encodes messages and decodes them. It never touches shared memory;
//! the service copies a slot out of the ring **once** into a private
//! `[u8; SLOT_BYTES]` and hands that copy to [`decode_request`].
//!
//! The decoders are total: any byte string (of any length) decodes to a value or
//! to a typed [`WireError`] (outcome kind `bad-message`); they never panic and
//! never read out of bounds. They check the *format* only. Whether a handle is
//! granted, whether `iova + len` overflows, whether lengths are aligned or
//! non-zero, whether an IOVA is in the window: that is the service's job, so
//! every `u64` is decoded faithfully.
//!
//! The encoding is canonical: every reserved byte must be zero and every field
//! has exactly one accepted spelling, so a message that decodes re-encodes to
//! the very same bytes.
//!
//! # Ring (shared memory), for `RingLayout { slots: N }`
//!
//! N is a power of two in `1..=MAX_SLOTS`. `head` and `tail` are free-running
//! `u32` counters; ring index `k` lives in slot `k mod N` (both for the request
//! and for its response). The ring holds `head - tail` (wrapping) pending
//! requests, never more than N.
//!
//! | offset            | bytes | field                                   | written by |
//! |-------------------|-------|-----------------------------------------|------------|
//! | 0                 | 4     | `head: u32`, next request index         | device     |
//! | 4                 | 4     | `tail: u32`, next index to serve        | service    |
//! | 8                 | 56    | reserved (zero)                         | —          |
//! | 64 + 64·i         | 64    | request slot i (`i < N`)                | device     |
//! | 64 + 64·N + 64·i  | 64    | response slot i (`i < N`)               | service    |
//!
//! Total: `64 + 128·N` bytes ([`RingLayout::bytes`]).
//!
//! # Message header (every slot, requests and responses)
//!
//! | offset | bytes | field                                                         |
//! |--------|-------|---------------------------------------------------------------|
//! | 0      | 4     | `magic: u32` = `0x4350_5244` (the bytes `44 52 50 43`, "DRPC") |
//! | 4      | 1     | `version: u8` = 1                                             |
//! | 5      | 1     | `opcode: u8`: 1 map, 2 unmap, 3 map-pa, `0x80` response       |
//! | 6      | 2     | `payload_len: u16`, must equal the opcode's payload size      |
//! | 8      | 4     | `seq: u32`, chosen by the device, echoed in the response      |
//! | 12     | 4     | reserved, zero                                                |
//!
//! # Payloads (from offset 16; every byte not listed, up to 64, is reserved = 0)
//!
//! | opcode          | payload_len | layout (offset: field)                                                  | reserved        |
//! |-----------------|-------------|-------------------------------------------------------------------------|-----------------|
//! | 1 `map`         | 32          | 16: `handle: u32`, 20: `perm: u8`, 24: `offset: u64`, 32: `len: u64`, 40: `iova: u64` | 21..24, 48..64 |
//! | 2 `unmap`       | 16          | 16: `iova: u64`, 24: `len: u64`                                         | 32..64          |
//! | 3 `map-pa`      | 32          | 16: `perm: u8`, 24: `pa: u64`, 32: `len: u64`, 40: `iova: u64`          | 17..24, 48..64  |
//! | `0x80` response | 4           | 16: `status: u16`                                                       | 18..64          |
//!
//! (Bytes 12..16 of the header are reserved in every message too.)
//!
//! `perm` is one byte: bit 0 read, bit 1 write; only 1 (`r`), 2 (`w`) and
//! 3 (`rw`) are accepted.
//!
//! `status` is 0 for ok, otherwise the refusal's kind code (1..=16, see
//! [`KIND_NAMES`]); any other value is refused by [`decode_response`].
//!
//! # Decoding order
//!
//! Checks run in this order and the first failure is reported: slot size
//! ([`WireError::Short`]/[`WireError::Long`]), magic, version, opcode, declared
//! payload length, reserved bytes (lowest offset first), then perm (requests) or
//! status (responses).

use frame_table::Perm;

/// Bytes in one ring slot (one message).
pub const SLOT_BYTES: usize = 64;
/// Bytes in the ring header (`head`, `tail`, reserved).
pub const HEADER_BYTES: usize = 64;
/// Bytes in the message header that starts every slot.
pub const MSG_HEADER_BYTES: usize = 16;
/// Largest accepted slot count of a ring.
pub const MAX_SLOTS: u32 = 1 << 16;

/// The magic number at offset 0 of every message (the bytes "DRPC").
pub const MAGIC: u32 = 0x4350_5244;
/// The only wire-format version.
pub const VERSION: u8 = 1;
/// Opcode of [`Request::Map`].
pub const OP_MAP: u8 = 1;
/// Opcode of [`Request::Unmap`].
pub const OP_UNMAP: u8 = 2;
/// Opcode of [`Request::MapPa`].
pub const OP_MAP_PA: u8 = 3;
/// Opcode of a [`Response`].
pub const OP_RESPONSE: u8 = 0x80;

/// Declared payload length of a `map` request.
pub const MAP_PAYLOAD: u16 = 32;
/// Declared payload length of an `unmap` request.
pub const UNMAP_PAYLOAD: u16 = 16;
/// Declared payload length of a `map-pa` request.
pub const MAP_PA_PAYLOAD: u16 = 32;
/// Declared payload length of a response.
pub const RESPONSE_PAYLOAD: u16 = 4;

// Header field offsets.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_OPCODE: usize = 5;
const OFF_PAYLOAD_LEN: usize = 6;
const OFF_SEQ: usize = 8;

// `map` payload.
const MAP_HANDLE: usize = 16;
const MAP_PERM: usize = 20;
const MAP_OFFSET: usize = 24;
const MAP_LEN: usize = 32;
const MAP_IOVA: usize = 40;
// `map-pa` payload.
const MAP_PA_PERM: usize = 16;
const MAP_PA_PA: usize = 24;
const MAP_PA_LEN: usize = 32;
const MAP_PA_IOVA: usize = 40;
// `unmap` payload.
const UNMAP_IOVA: usize = 16;
const UNMAP_LEN: usize = 24;
// Response payload.
const RESP_STATUS: usize = 16;

/// Reserved (must-be-zero) byte ranges `[start, end)` of each message kind,
/// in increasing offset order.
const RESERVED_MAP: &[(usize, usize)] = &[(12, 16), (21, 24), (48, 64)];
const RESERVED_MAP_PA: &[(usize, usize)] = &[(12, 16), (17, 24), (48, 64)];
const RESERVED_UNMAP: &[(usize, usize)] = &[(12, 16), (32, 64)];
const RESERVED_RESPONSE: &[(usize, usize)] = &[(12, 16), (18, 64)];

/// Byte offset of `head` in the ring header.
const RING_HEAD: usize = 0;
/// Byte offset of `tail` in the ring header.
const RING_TAIL: usize = 4;

// ---------------------------------------------------------------------------
// Ring layout
// ---------------------------------------------------------------------------

/// A ring slot count that [`RingLayout::new`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Zero slots.
    #[error("a ring needs at least one slot")]
    Zero,
    /// A slot count that is not a power of two.
    #[error("ring slot count {slots} is not a power of two")]
    NotPowerOfTwo {
        /// The refused count.
        slots: u32,
    },
    /// More slots than [`MAX_SLOTS`].
    #[error("ring slot count {slots} exceeds the maximum {max}")]
    TooLarge {
        /// The refused count.
        slots: u32,
        /// [`MAX_SLOTS`].
        max: u32,
    },
}

/// Byte offsets of an RPC ring in shared memory (see the module table).
///
/// Build it with [`RingLayout::new`], which guarantees a power-of-two slot
/// count. The methods stay panic-free and in bounds even for a hand-built
/// value with a bad count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingLayout {
    /// Number of request slots (and of response slots).
    pub slots: u32,
}

impl RingLayout {
    /// Bytes in one slot ([`SLOT_BYTES`]).
    pub const SLOT_BYTES: usize = SLOT_BYTES;
    /// Bytes in the ring header ([`HEADER_BYTES`]).
    pub const HEADER_BYTES: usize = HEADER_BYTES;

    /// A ring of `slots` request slots and as many response slots; refuses
    /// zero, non-powers of two and counts above [`MAX_SLOTS`].
    pub const fn new(slots: u32) -> Result<RingLayout, RingError> {
        if slots == 0 {
            Err(RingError::Zero)
        } else if !slots.is_power_of_two() {
            Err(RingError::NotPowerOfTwo { slots })
        } else if slots > MAX_SLOTS {
            Err(RingError::TooLarge { slots, max: MAX_SLOTS })
        } else {
            Ok(RingLayout { slots })
        }
    }

    /// Total bytes of the ring: header, request slots, response slots.
    pub const fn bytes(&self) -> usize {
        HEADER_BYTES + 2 * (self.slots as usize) * SLOT_BYTES
    }

    /// The slot that free-running ring index `index` uses (`index mod slots`).
    pub const fn slot_index(&self, index: u32) -> u32 {
        match index.checked_rem(self.slots) {
            Some(i) => i,
            None => 0,
        }
    }

    /// Byte offset of the request slot of ring index `index` (wraps modulo
    /// `slots`).
    pub const fn slot_offset(&self, index: u32) -> usize {
        HEADER_BYTES + (self.slot_index(index) as usize) * SLOT_BYTES
    }

    /// Byte offset of the response slot of ring index `index` (wraps modulo
    /// `slots`).
    pub const fn response_offset(&self, index: u32) -> usize {
        HEADER_BYTES + (self.slots as usize + self.slot_index(index) as usize) * SLOT_BYTES
    }

    /// Byte offset of the producer index `head: u32` (written by the device).
    pub const fn head_offset() -> usize {
        RING_HEAD
    }

    /// Byte offset of the consumer index `tail: u32` (written by the service).
    pub const fn tail_offset() -> usize {
        RING_TAIL
    }

    /// Number of pending requests between `tail` and `head` (wrapping), or
    /// `None` if a (possibly lying) device claims more than `slots`.
    pub const fn pending(&self, head: u32, tail: u32) -> Option<u32> {
        let n = head.wrapping_sub(tail);
        if n <= self.slots {
            Some(n)
        } else {
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// A request from a coprocessor to the mapper service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// Map `len` bytes at `offset` into granted buffer `handle` at `iova`.
    Map {
        /// The grant handle.
        handle: u32,
        /// Byte offset into the granted buffer.
        offset: u64,
        /// Bytes to map.
        len: u64,
        /// Where to map them.
        iova: u64,
        /// Requested permission.
        perm: Perm,
    },
    /// Unmap `len` bytes at `iova`.
    Unmap {
        /// Start of the range.
        iova: u64,
        /// Bytes to unmap.
        len: u64,
    },
    /// Map a raw physical address (always refused by the service as
    /// `not-granted`; it exists so the refusal is exercised).
    MapPa {
        /// Physical address.
        pa: u64,
        /// Bytes to map.
        len: u64,
        /// Where to map them.
        iova: u64,
        /// Requested permission.
        perm: Perm,
    },
}

impl Request {
    /// The opcode byte of this request.
    pub const fn opcode(&self) -> u8 {
        match self {
            Request::Map { .. } => OP_MAP,
            Request::Unmap { .. } => OP_UNMAP,
            Request::MapPa { .. } => OP_MAP_PA,
        }
    }

    /// The scenario-file spelling of the call: `map`, `unmap` or `map-pa`.
    pub const fn name(&self) -> &'static str {
        match self {
            Request::Map { .. } => "map",
            Request::Unmap { .. } => "unmap",
            Request::MapPa { .. } => "map-pa",
        }
    }
}

/// The outcome of a request, as written in a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The request was carried out.
    Ok,
    /// The request was refused; the value is a kind code ([`kind_code`]).
    Refused(u16),
}

impl Status {
    /// A refusal of the named kind, if the name is known.
    pub fn refused(kind: &str) -> Option<Status> {
        kind_code(kind).map(Status::Refused)
    }

    /// `"ok"`, the refusal's kind name, or `None` for an unknown code.
    pub fn name(&self) -> Option<&'static str> {
        match *self {
            Status::Ok => Some("ok"),
            Status::Refused(code) => kind_name(code),
        }
    }
}

/// A response of the service, written into the response slot of the request's
/// ring index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Response {
    /// The `seq` of the request answered.
    pub seq: u32,
    /// The outcome.
    pub status: Status,
}

/// Refusal kind names; the kind code of `KIND_NAMES[i]` is `i + 1` (0 is
/// `ok` on the wire). These codes are stable: append, never reorder.
pub const KIND_NAMES: [&str; 16] = [
    "forbidden-type",
    "mapping-limit",
    "frame-busy",
    "bad-transition",
    "bad-range",
    "iova-in-use",
    "not-mapped",
    "not-granted",
    "perm-exceeds-grant",
    "bad-message",
    "bypass-denied",
    "no-such-device",
    "halted",
    "panic",
    "out-of-frames",
    "locked",
];

/// The stable wire code (1..=16) of a refusal kind name.
pub fn kind_code(name: &str) -> Option<u16> {
    KIND_NAMES.iter().position(|k| *k == name).map(|i| i as u16 + 1)
}

/// The refusal kind name of a wire code, if the code is known.
pub fn kind_name(code: u16) -> Option<&'static str> {
    (code as usize).checked_sub(1).and_then(|i| KIND_NAMES.get(i)).copied()
}

/// A slot whose bytes are not a well-formed message. Every variant is the
/// outcome kind `bad-message`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than one slot.
    #[error("message of {len} bytes is shorter than a {SLOT_BYTES}-byte slot")]
    Short {
        /// Bytes given.
        len: usize,
    },
    /// More bytes than one slot.
    #[error("message of {len} bytes is longer than a {SLOT_BYTES}-byte slot")]
    Long {
        /// Bytes given.
        len: usize,
    },
    /// The magic number is wrong.
    #[error("bad magic {found:#010x} (expected {MAGIC:#010x})")]
    BadMagic {
        /// The magic found.
        found: u32,
    },
    /// The version is not [`VERSION`].
    #[error("unsupported version {found} (expected {VERSION})")]
    BadVersion {
        /// The version found.
        found: u8,
    },
    /// The opcode is unknown (or a response opcode where a request is
    /// expected, and vice versa).
    #[error("unknown opcode {found:#04x}")]
    BadOpcode {
        /// The opcode found.
        found: u8,
    },
    /// The declared payload length does not match the opcode.
    #[error("declared payload length {declared}, expected {expected}")]
    BadLength {
        /// Length in the header.
        declared: u16,
        /// Length the opcode requires.
        expected: u16,
    },
    /// A reserved byte is not zero.
    #[error("reserved byte at offset {offset} is not zero")]
    ReservedNonZero {
        /// Offset of the first non-zero reserved byte.
        offset: usize,
    },
    /// The permission byte is zero or has unknown bits.
    #[error("bad permission bits {bits:#04x}")]
    BadPerm {
        /// The permission byte.
        bits: u8,
    },
    /// A response status that is neither ok nor a known kind code.
    #[error("unknown response status {found}")]
    BadStatus {
        /// The status found.
        found: u16,
    },
}

impl WireError {
    /// The outcome kind of every wire error: `"bad-message"`.
    pub const fn kind(&self) -> &'static str {
        "bad-message"
    }
}

// ---------------------------------------------------------------------------
// Byte helpers (fixed-size slot, constant offsets: always in bounds)
// ---------------------------------------------------------------------------

type Slot = [u8; SLOT_BYTES];

fn get_u16(b: &Slot, at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn get_u32(b: &Slot, at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn get_u64(b: &Slot, at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn put_u16(b: &mut Slot, at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut Slot, at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut Slot, at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn perm_bits(perm: Perm) -> u8 {
    (perm.read() as u8) | ((perm.write() as u8) << 1)
}

fn decode_perm(bits: u8) -> Result<Perm, WireError> {
    match bits {
        1..=3 => Ok(Perm::new(bits & 1 != 0, bits & 2 != 0)),
        _ => Err(WireError::BadPerm { bits }),
    }
}

fn header(opcode: u8, payload_len: u16, seq: u32) -> Slot {
    let mut b = [0u8; SLOT_BYTES];
    put_u32(&mut b, OFF_MAGIC, MAGIC);
    b[OFF_VERSION] = VERSION;
    b[OFF_OPCODE] = opcode;
    put_u16(&mut b, OFF_PAYLOAD_LEN, payload_len);
    put_u32(&mut b, OFF_SEQ, seq);
    b
}

/// Exactly one slot, then magic and version. Returns the fixed-size slot.
fn check_slot(bytes: &[u8]) -> Result<&Slot, WireError> {
    let slot: &Slot = match bytes.len() {
        n if n < SLOT_BYTES => return Err(WireError::Short { len: n }),
        n if n > SLOT_BYTES => return Err(WireError::Long { len: n }),
        _ => bytes.try_into().map_err(|_| WireError::Short { len: bytes.len() })?,
    };
    let magic = get_u32(slot, OFF_MAGIC);
    if magic != MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let version = slot[OFF_VERSION];
    if version != VERSION {
        return Err(WireError::BadVersion { found: version });
    }
    Ok(slot)
}

fn check_length(b: &Slot, expected: u16) -> Result<(), WireError> {
    let declared = get_u16(b, OFF_PAYLOAD_LEN);
    if declared != expected {
        return Err(WireError::BadLength { declared, expected });
    }
    Ok(())
}

fn check_reserved(b: &Slot, ranges: &[(usize, usize)]) -> Result<(), WireError> {
    for &(start, end) in ranges {
        if let Some(i) = b[start..end].iter().position(|&x| x != 0) {
            return Err(WireError::ReservedNonZero { offset: start + i });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Encodes a request into one slot (what an honest coprocessor writes).
///
/// The encoder writes whatever it is given: an empty `perm` is encoded as the
/// byte 0, which [`decode_request`] refuses as [`WireError::BadPerm`].
pub fn encode_request(seq: u32, req: &Request) -> [u8; SLOT_BYTES] {
    match *req {
        Request::Map { handle, offset, len, iova, perm } => {
            let mut b = header(OP_MAP, MAP_PAYLOAD, seq);
            put_u32(&mut b, MAP_HANDLE, handle);
            b[MAP_PERM] = perm_bits(perm);
            put_u64(&mut b, MAP_OFFSET, offset);
            put_u64(&mut b, MAP_LEN, len);
            put_u64(&mut b, MAP_IOVA, iova);
            b
        }
        Request::Unmap { iova, len } => {
            let mut b = header(OP_UNMAP, UNMAP_PAYLOAD, seq);
            put_u64(&mut b, UNMAP_IOVA, iova);
            put_u64(&mut b, UNMAP_LEN, len);
            b
        }
        Request::MapPa { pa, len, iova, perm } => {
            let mut b = header(OP_MAP_PA, MAP_PA_PAYLOAD, seq);
            b[MAP_PA_PERM] = perm_bits(perm);
            put_u64(&mut b, MAP_PA_PA, pa);
            put_u64(&mut b, MAP_PA_LEN, len);
            put_u64(&mut b, MAP_PA_IOVA, iova);
            b
        }
    }
}

/// Decodes one request slot (the service's private copy) into its `seq` and
/// request. Total: never panics, whatever `bytes` holds or however long it is.
pub fn decode_request(bytes: &[u8]) -> Result<(u32, Request), WireError> {
    let b = check_slot(bytes)?;
    let seq = get_u32(b, OFF_SEQ);
    let req = match b[OFF_OPCODE] {
        OP_MAP => {
            check_length(b, MAP_PAYLOAD)?;
            check_reserved(b, RESERVED_MAP)?;
            Request::Map {
                handle: get_u32(b, MAP_HANDLE),
                perm: decode_perm(b[MAP_PERM])?,
                offset: get_u64(b, MAP_OFFSET),
                len: get_u64(b, MAP_LEN),
                iova: get_u64(b, MAP_IOVA),
            }
        }
        OP_UNMAP => {
            check_length(b, UNMAP_PAYLOAD)?;
            check_reserved(b, RESERVED_UNMAP)?;
            Request::Unmap { iova: get_u64(b, UNMAP_IOVA), len: get_u64(b, UNMAP_LEN) }
        }
        OP_MAP_PA => {
            check_length(b, MAP_PA_PAYLOAD)?;
            check_reserved(b, RESERVED_MAP_PA)?;
            Request::MapPa {
                perm: decode_perm(b[MAP_PA_PERM])?,
                pa: get_u64(b, MAP_PA_PA),
                len: get_u64(b, MAP_PA_LEN),
                iova: get_u64(b, MAP_PA_IOVA),
            }
        }
        found => return Err(WireError::BadOpcode { found }),
    };
    Ok((seq, req))
}

/// The slot a device writes to post the message `bytes`: the bytes, then
/// zeros to the end of the slot. A message longer than a slot does not fit
/// one and is never cut to fit ([`WireError::Long`]): its tail may be
/// exactly what makes it mean something else (docs/design.md §4).
pub fn slot_message(bytes: &[u8]) -> Result<[u8; SLOT_BYTES], WireError> {
    let mut slot = [0u8; SLOT_BYTES];
    slot.get_mut(..bytes.len()).ok_or(WireError::Long { len: bytes.len() })?.copy_from_slice(bytes);
    Ok(slot)
}

/// The `seq` field of a slot as written, without any validation, if `bytes`
/// is long enough to hold it. Lets the service echo `seq` in the
/// `bad-message` response to a slot that does not decode.
pub fn raw_seq(bytes: &[u8]) -> Option<u32> {
    let field = bytes.get(OFF_SEQ..OFF_SEQ + 4)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(field);
    Some(u32::from_le_bytes(a))
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// Encodes a response into one slot. A `Refused` code that is not a known
/// kind is written as is, and [`decode_response`] refuses it.
pub fn encode_response(resp: &Response) -> [u8; SLOT_BYTES] {
    let mut b = header(OP_RESPONSE, RESPONSE_PAYLOAD, resp.seq);
    let status = match resp.status {
        Status::Ok => 0,
        Status::Refused(code) => code,
    };
    put_u16(&mut b, RESP_STATUS, status);
    b
}

/// Decodes one response slot. Total, like [`decode_request`]; a status that is
/// neither 0 (ok) nor a known kind code is [`WireError::BadStatus`].
pub fn decode_response(bytes: &[u8]) -> Result<Response, WireError> {
    let b = check_slot(bytes)?;
    match b[OFF_OPCODE] {
        OP_RESPONSE => {}
        found => return Err(WireError::BadOpcode { found }),
    }
    check_length(b, RESPONSE_PAYLOAD)?;
    check_reserved(b, RESERVED_RESPONSE)?;
    let status = match get_u16(b, RESP_STATUS) {
        0 => Status::Ok,
        code if kind_name(code).is_some() => Status::Refused(code),
        found => return Err(WireError::BadStatus { found }),
    };
    Ok(Response { seq: get_u32(b, OFF_SEQ), status })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const EDGES: [u64; 6] = [0, 1, 0x4000, 0x8000_0000_0000_0000, u64::MAX - 1, u64::MAX];
    const PERMS: [Perm; 3] = [Perm::R, Perm::W, Perm::RW];

    fn all_requests() -> Vec<Request> {
        let mut v = Vec::new();
        for &a in &EDGES {
            for &b in &EDGES {
                for &perm in &PERMS {
                    v.push(Request::Map { handle: a as u32, offset: a, len: b, iova: a ^ b, perm });
                    v.push(Request::MapPa { pa: b, len: a, iova: a.wrapping_add(b), perm });
                }
                v.push(Request::Unmap { iova: a, len: b });
            }
        }
        v.push(Request::Map { handle: u32::MAX, offset: u64::MAX, len: u64::MAX, iova: u64::MAX, perm: Perm::RW });
        v
    }

    // ---- round trips ------------------------------------------------------

    #[test]
    fn request_round_trip() {
        for req in all_requests() {
            for seq in [0, 1, 0x1234_5678, u32::MAX] {
                let bytes = encode_request(seq, &req);
                assert_eq!(decode_request(&bytes), Ok((seq, req)), "{req:?}");
            }
        }
    }

    #[test]
    fn response_round_trip() {
        let mut statuses = vec![Status::Ok];
        statuses.extend((1..=KIND_NAMES.len() as u16).map(Status::Refused));
        for status in statuses {
            for seq in [0, 7, u32::MAX] {
                let resp = Response { seq, status };
                assert_eq!(decode_response(&encode_response(&resp)), Ok(resp));
            }
        }
    }

    #[test]
    fn requests_and_responses_are_not_confused() {
        let req = encode_request(5, &Request::Unmap { iova: 0, len: 0x4000 });
        assert_eq!(decode_response(&req), Err(WireError::BadOpcode { found: OP_UNMAP }));
        let resp = encode_response(&Response { seq: 5, status: Status::Ok });
        assert_eq!(decode_request(&resp), Err(WireError::BadOpcode { found: OP_RESPONSE }));
    }

    // ---- kind codes -------------------------------------------------------

    #[test]
    fn kind_codes_are_stable() {
        let expected = [
            ("forbidden-type", 1),
            ("mapping-limit", 2),
            ("frame-busy", 3),
            ("bad-transition", 4),
            ("bad-range", 5),
            ("iova-in-use", 6),
            ("not-mapped", 7),
            ("not-granted", 8),
            ("perm-exceeds-grant", 9),
            ("bad-message", 10),
            ("bypass-denied", 11),
            ("no-such-device", 12),
            ("halted", 13),
            ("panic", 14),
            ("out-of-frames", 15),
            ("locked", 16),
        ];
        for (name, code) in expected {
            assert_eq!(kind_code(name), Some(code), "{name}");
            assert_eq!(kind_name(code), Some(name));
        }
        assert_eq!(kind_code("ok"), None);
        assert_eq!(kind_code("nope"), None);
        assert_eq!(kind_name(0), None);
        assert_eq!(kind_name(17), None);
        assert_eq!(kind_name(u16::MAX), None);
        assert_eq!(Status::refused("halted"), Some(Status::Refused(13)));
        assert_eq!(Status::Ok.name(), Some("ok"));
        assert_eq!(Status::Refused(8).name(), Some("not-granted"));
        assert_eq!(Status::Refused(99).name(), None);
    }

    // ---- hand-written byte vectors -----------------------------------------

    #[rustfmt::skip]
    const MAP_BYTES: [u8; 64] = [
        0x44, 0x52, 0x50, 0x43, // magic "DRPC"
        0x01,                   // version
        0x01,                   // opcode map
        0x20, 0x00,             // payload_len 32
        0x78, 0x56, 0x34, 0x12, // seq 0x12345678
        0, 0, 0, 0,             // reserved
        0xef, 0xbe, 0xad, 0xde, // handle 0xdeadbeef
        0x03,                   // perm rw
        0, 0, 0,                // reserved
        0x00, 0x40, 0, 0, 0, 0, 0, 0,                   // offset 0x4000
        0x00, 0x80, 0, 0, 0, 0, 0, 0,                   // len 0x8000
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // iova 0x0102030405060708
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];

    #[rustfmt::skip]
    const UNMAP_BYTES: [u8; 64] = [
        0x44, 0x52, 0x50, 0x43, // magic
        0x01,                   // version
        0x02,                   // opcode unmap
        0x10, 0x00,             // payload_len 16
        0xff, 0xff, 0xff, 0xff, // seq u32::MAX
        0, 0, 0, 0,             // reserved
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // iova u64::MAX
        0x01, 0, 0, 0, 0, 0, 0, 0,                      // len 1
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[rustfmt::skip]
    const MAP_PA_BYTES: [u8; 64] = [
        0x44, 0x52, 0x50, 0x43, // magic
        0x01,                   // version
        0x03,                   // opcode map-pa
        0x20, 0x00,             // payload_len 32
        0x00, 0x00, 0x00, 0x00, // seq 0
        0, 0, 0, 0,             // reserved
        0x02,                   // perm w
        0, 0, 0, 0, 0, 0, 0,    // reserved
        0x00, 0xc0, 0x00, 0x80, 0, 0, 0, 0,             // pa 0x8000c000
        0x00, 0x40, 0, 0, 0, 0, 0, 0,                   // len 0x4000
        0, 0, 0, 0, 0, 0, 0, 0,                         // iova 0
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];

    #[rustfmt::skip]
    const RESPONSE_REFUSED_BYTES: [u8; 64] = [
        0x44, 0x52, 0x50, 0x43, // magic
        0x01,                   // version
        0x80,                   // opcode response
        0x04, 0x00,             // payload_len 4
        0x2a, 0x00, 0x00, 0x00, // seq 42
        0, 0, 0, 0,             // reserved
        0x08, 0x00,             // status 8 = not-granted
        0, 0,                   // reserved (rest of the payload)
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn literal_map() {
        let req = Request::Map {
            handle: 0xdead_beef,
            offset: 0x4000,
            len: 0x8000,
            iova: 0x0102_0304_0506_0708,
            perm: Perm::RW,
        };
        assert_eq!(decode_request(&MAP_BYTES), Ok((0x1234_5678, req)));
        assert_eq!(encode_request(0x1234_5678, &req), MAP_BYTES);
    }

    #[test]
    fn literal_unmap() {
        let req = Request::Unmap { iova: u64::MAX, len: 1 };
        assert_eq!(decode_request(&UNMAP_BYTES), Ok((u32::MAX, req)));
        assert_eq!(encode_request(u32::MAX, &req), UNMAP_BYTES);
    }

    #[test]
    fn literal_map_pa() {
        let req = Request::MapPa { pa: 0x8000_c000, len: 0x4000, iova: 0, perm: Perm::W };
        assert_eq!(decode_request(&MAP_PA_BYTES), Ok((0, req)));
        assert_eq!(encode_request(0, &req), MAP_PA_BYTES);
    }

    #[test]
    fn literal_responses() {
        let refused = Response { seq: 42, status: Status::Refused(8) };
        assert_eq!(decode_response(&RESPONSE_REFUSED_BYTES), Ok(refused));
        assert_eq!(encode_response(&refused), RESPONSE_REFUSED_BYTES);
        let mut ok = RESPONSE_REFUSED_BYTES;
        ok[16] = 0;
        assert_eq!(decode_response(&ok), Ok(Response { seq: 42, status: Status::Ok }));
    }

    // ---- every error, by a precise mutation --------------------------------

    #[test]
    fn short_and_long() {
        assert_eq!(decode_request(&[]), Err(WireError::Short { len: 0 }));
        assert_eq!(decode_request(&MAP_BYTES[..63]), Err(WireError::Short { len: 63 }));
        let mut long = MAP_BYTES.to_vec();
        long.push(0);
        assert_eq!(decode_request(&long), Err(WireError::Long { len: 65 }));
        assert_eq!(decode_response(&RESPONSE_REFUSED_BYTES[..16]), Err(WireError::Short { len: 16 }));
        assert_eq!(decode_response(&[0u8; 200]), Err(WireError::Long { len: 200 }));
    }

    #[test]
    fn bad_magic() {
        let mut b = MAP_BYTES;
        b[3] = 0x44;
        assert_eq!(decode_request(&b), Err(WireError::BadMagic { found: 0x4450_5244 }));
        assert_eq!(decode_request(&[0u8; 64]), Err(WireError::BadMagic { found: 0 }));
        let mut r = RESPONSE_REFUSED_BYTES;
        r[0] = 0;
        assert_eq!(decode_response(&r), Err(WireError::BadMagic { found: 0x4350_5200 }));
    }

    #[test]
    fn bad_version() {
        let mut b = UNMAP_BYTES;
        b[4] = 2;
        assert_eq!(decode_request(&b), Err(WireError::BadVersion { found: 2 }));
        let mut r = RESPONSE_REFUSED_BYTES;
        r[4] = 0;
        assert_eq!(decode_response(&r), Err(WireError::BadVersion { found: 0 }));
    }

    #[test]
    fn bad_opcode() {
        for op in [0u8, 4, 0x7f, 0x81, 0xff] {
            let mut b = UNMAP_BYTES;
            b[5] = op;
            assert_eq!(decode_request(&b), Err(WireError::BadOpcode { found: op }));
        }
        let mut r = RESPONSE_REFUSED_BYTES;
        r[5] = 1;
        assert_eq!(decode_response(&r), Err(WireError::BadOpcode { found: 1 }));
    }

    #[test]
    fn bad_length() {
        let mut b = MAP_BYTES;
        b[6] = 0x10;
        assert_eq!(decode_request(&b), Err(WireError::BadLength { declared: 16, expected: 32 }));
        let mut b = UNMAP_BYTES;
        b[7] = 0x01;
        assert_eq!(decode_request(&b), Err(WireError::BadLength { declared: 0x0110, expected: 16 }));
        let mut b = MAP_PA_BYTES;
        b[6] = 0;
        assert_eq!(decode_request(&b), Err(WireError::BadLength { declared: 0, expected: 32 }));
        let mut r = RESPONSE_REFUSED_BYTES;
        r[6] = 0xff;
        r[7] = 0xff;
        assert_eq!(decode_response(&r), Err(WireError::BadLength { declared: u16::MAX, expected: 4 }));
    }

    #[test]
    fn reserved_non_zero() {
        let cases: [(&[u8; 64], &[usize]); 3] = [
            (&MAP_BYTES, &[12, 15, 21, 23, 48, 63]),
            (&UNMAP_BYTES, &[12, 32, 40, 63]),
            (&MAP_PA_BYTES, &[13, 17, 23, 48, 63]),
        ];
        for (valid, offsets) in cases {
            for &offset in offsets {
                let mut b = *valid;
                b[offset] = 0x80;
                assert_eq!(decode_request(&b), Err(WireError::ReservedNonZero { offset }));
            }
        }
        // The lowest offset is reported.
        let mut b = MAP_BYTES;
        b[50] = 1;
        b[22] = 1;
        assert_eq!(decode_request(&b), Err(WireError::ReservedNonZero { offset: 22 }));
        for offset in [12, 15, 18, 19, 40, 63] {
            let mut r = RESPONSE_REFUSED_BYTES;
            r[offset] = 1;
            assert_eq!(decode_response(&r), Err(WireError::ReservedNonZero { offset }));
        }
    }

    #[test]
    fn bad_perm() {
        for bits in [0u8, 4, 5, 0x80, 0xff] {
            let mut b = MAP_BYTES;
            b[20] = bits;
            assert_eq!(decode_request(&b), Err(WireError::BadPerm { bits }));
            let mut b = MAP_PA_BYTES;
            b[16] = bits;
            assert_eq!(decode_request(&b), Err(WireError::BadPerm { bits }));
        }
        // An honest encoder given an empty permission produces a refused slot.
        let empty = encode_request(1, &Request::Map { handle: 0, offset: 0, len: 0, iova: 0, perm: Perm::NONE });
        assert_eq!(decode_request(&empty), Err(WireError::BadPerm { bits: 0 }));
    }

    #[test]
    fn bad_status() {
        for found in [17u16, 0x100, u16::MAX] {
            let mut r = RESPONSE_REFUSED_BYTES;
            r[16..18].copy_from_slice(&found.to_le_bytes());
            assert_eq!(decode_response(&r), Err(WireError::BadStatus { found }));
        }
        let r = encode_response(&Response { seq: 1, status: Status::Refused(99) });
        assert_eq!(decode_response(&r), Err(WireError::BadStatus { found: 99 }));
    }

    #[test]
    fn every_error_is_bad_message() {
        let errors = [
            WireError::Short { len: 0 },
            WireError::Long { len: 65 },
            WireError::BadMagic { found: 0 },
            WireError::BadVersion { found: 0 },
            WireError::BadOpcode { found: 0 },
            WireError::BadLength { declared: 0, expected: 16 },
            WireError::ReservedNonZero { offset: 12 },
            WireError::BadPerm { bits: 0 },
            WireError::BadStatus { found: 16 },
        ];
        for e in errors {
            assert_eq!(e.kind(), "bad-message");
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(kind_code(WireError::Short { len: 0 }.kind()), Some(10));
    }

    #[test]
    fn raw_seq_reads_without_validation() {
        assert_eq!(raw_seq(&MAP_BYTES), Some(0x1234_5678));
        let mut b = [0xaau8; 12];
        b[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(raw_seq(&b), Some(7));
        assert_eq!(raw_seq(&b[..11]), None);
        assert_eq!(raw_seq(&[]), None);
    }

    // ---- posting a message into a slot ---------------------------------------

    #[test]
    fn a_message_fills_one_slot_or_is_long_never_cut() {
        assert_eq!(slot_message(&MAP_BYTES), Ok(MAP_BYTES));
        let mut short = [0u8; SLOT_BYTES];
        short[..3].copy_from_slice(&[1, 2, 3]);
        assert_eq!(slot_message(&[1, 2, 3]), Ok(short));
        assert_eq!(slot_message(&[]), Ok([0u8; SLOT_BYTES]));
        let mut long = MAP_BYTES.to_vec();
        long.push(0xff);
        assert_eq!(slot_message(&long), Err(WireError::Long { len: 65 }));
        assert_eq!(slot_message(&vec![0u8; 1 << 20]), Err(WireError::Long { len: 1 << 20 }));
        // What the service makes of the same 65 bytes.
        assert_eq!(decode_request(&long), Err(WireError::Long { len: 65 }));
    }

    // ---- ring layout --------------------------------------------------------

    #[test]
    fn ring_layout_offsets() {
        let r = RingLayout::new(8).unwrap();
        assert_eq!(RingLayout::SLOT_BYTES, 64);
        assert_eq!(RingLayout::HEADER_BYTES, 64);
        assert_eq!(RingLayout::head_offset(), 0);
        assert_eq!(RingLayout::tail_offset(), 4);
        assert_eq!(r.bytes(), 64 + 2 * 8 * 64);
        assert_eq!(r.slot_offset(0), 64);
        assert_eq!(r.slot_offset(1), 128);
        assert_eq!(r.slot_offset(7), 64 + 7 * 64);
        assert_eq!(r.response_offset(0), 64 + 8 * 64);
        assert_eq!(r.response_offset(7), 64 + 15 * 64);
        assert_eq!(r.response_offset(7) + SLOT_BYTES, r.bytes());
        // Wrap-around, including across u32 overflow of the free-running index.
        assert_eq!(r.slot_offset(8), r.slot_offset(0));
        assert_eq!(r.slot_offset(13), r.slot_offset(5));
        assert_eq!(r.slot_offset(u32::MAX), r.slot_offset(7));
        assert_eq!(r.slot_offset(u32::MAX.wrapping_add(1)), r.slot_offset(0));
        assert_eq!(r.response_offset(9), r.response_offset(1));
        // Every slot is in bounds and slots do not overlap the header.
        for i in 0..64 {
            assert!(r.slot_offset(i) >= HEADER_BYTES);
            assert!(r.response_offset(i) + SLOT_BYTES <= r.bytes());
        }
        let one = RingLayout::new(1).unwrap();
        assert_eq!(one.bytes(), 192);
        assert_eq!(one.slot_offset(12345), 64);
        assert_eq!(one.response_offset(u32::MAX), 128);
        let max = RingLayout::new(MAX_SLOTS).unwrap();
        assert_eq!(max.bytes(), 64 + 2 * (MAX_SLOTS as usize) * 64);
    }

    #[test]
    fn ring_layout_pending() {
        let r = RingLayout::new(4).unwrap();
        assert_eq!(r.pending(0, 0), Some(0));
        assert_eq!(r.pending(4, 0), Some(4));
        assert_eq!(r.pending(5, 0), None);
        assert_eq!(r.pending(0, 1), None);
        assert_eq!(r.pending(2, u32::MAX - 1), Some(4));
    }

    #[test]
    fn ring_layout_refuses_bad_counts() {
        assert_eq!(RingLayout::new(0), Err(RingError::Zero));
        for slots in [3, 6, 12, 100, u32::MAX] {
            assert_eq!(RingLayout::new(slots), Err(RingError::NotPowerOfTwo { slots }));
        }
        assert_eq!(RingLayout::new(MAX_SLOTS * 2), Err(RingError::TooLarge { slots: MAX_SLOTS * 2, max: MAX_SLOTS }));
        // A hand-built bad layout still does not panic.
        let bad = RingLayout { slots: 0 };
        assert_eq!(bad.slot_offset(5), HEADER_BYTES);
        assert_eq!(bad.bytes(), HEADER_BYTES);
    }

    // ---- fuzzing ------------------------------------------------------------

    fn random_u64(rng: &mut SmallRng) -> u64 {
        match rng.gen_range(0..4) {
            0 => EDGES[rng.gen_range(0..EDGES.len())],
            1 => rng.gen_range(0..0x10_0000) << 14,
            _ => rng.gen(),
        }
    }

    fn random_request(rng: &mut SmallRng) -> Request {
        let perm = PERMS[rng.gen_range(0..PERMS.len())];
        match rng.gen_range(0..3) {
            0 => Request::Map {
                handle: rng.gen(),
                offset: random_u64(rng),
                len: random_u64(rng),
                iova: random_u64(rng),
                perm,
            },
            1 => Request::Unmap { iova: random_u64(rng), len: random_u64(rng) },
            _ => Request::MapPa { pa: random_u64(rng), len: random_u64(rng), iova: random_u64(rng), perm },
        }
    }

    fn random_response(rng: &mut SmallRng) -> Response {
        let code = rng.gen_range(0..=KIND_NAMES.len() as u16);
        Response { seq: rng.gen(), status: if code == 0 { Status::Ok } else { Status::Refused(code) } }
    }

    /// Fills `b` with a fully random slot or a mutation of `valid`.
    fn fuzz_slot(rng: &mut SmallRng, valid: [u8; 64], b: &mut [u8; 64]) {
        *b = valid;
        match rng.gen_range(0..8) {
            0 => rng.fill(&mut b[..]),
            1..=3 => {
                let i = rng.gen_range(0..SLOT_BYTES);
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            4..=6 => {
                let i = rng.gen_range(0..SLOT_BYTES);
                b[i] = rng.gen();
            }
            _ => {
                // Several random bytes.
                for _ in 0..rng.gen_range(2..6) {
                    let i = rng.gen_range(0..SLOT_BYTES);
                    b[i] = rng.gen();
                }
            }
        }
    }

    #[derive(Default, Debug)]
    struct Counts {
        valid: u64,
        bad: u64,
        by_variant: [u64; 9],
    }

    impl Counts {
        fn bad(&mut self, e: WireError) {
            assert_eq!(e.kind(), "bad-message");
            self.bad += 1;
            let i = match e {
                WireError::Short { .. } => 0,
                WireError::Long { .. } => 1,
                WireError::BadMagic { .. } => 2,
                WireError::BadVersion { .. } => 3,
                WireError::BadOpcode { .. } => 4,
                WireError::BadLength { .. } => 5,
                WireError::ReservedNonZero { .. } => 6,
                WireError::BadPerm { .. } => 7,
                WireError::BadStatus { .. } => 8,
            };
            self.by_variant[i] += 1;
        }
    }

    #[test]
    fn fuzz_requests() {
        const N: usize = 1_000_000;
        let mut rng = SmallRng::seed_from_u64(0x0da7_c0de);
        let mut counts = Counts::default();
        let mut b = [0u8; 64];
        for _ in 0..N {
            let valid = encode_request(rng.gen(), &random_request(&mut rng));
            fuzz_slot(&mut rng, valid, &mut b);
            // Occasionally a truncated or extended slice.
            let len = match rng.gen_range(0..64) {
                0 => rng.gen_range(0..SLOT_BYTES),
                _ => SLOT_BYTES,
            };
            match decode_request(&b[..len]) {
                Ok((seq, req)) => {
                    counts.valid += 1;
                    let again = encode_request(seq, &req);
                    assert_eq!(decode_request(&again), Ok((seq, req)));
                    // Canonical: the re-encoding is the very same bytes.
                    assert_eq!(again, b);
                }
                Err(e) => counts.bad(e),
            }
        }
        println!("fuzz_requests: {N} slots: {counts:?}");
        assert_eq!(counts.valid + counts.bad, N as u64);
        assert!(counts.valid > 0 && counts.bad > 0);
        // Every request-side error variant was reached (all but Long/BadStatus).
        for (i, n) in counts.by_variant.iter().enumerate() {
            if i != 1 && i != 8 {
                assert!(*n > 0, "variant {i} never hit: {counts:?}");
            }
        }
    }

    #[test]
    fn fuzz_responses() {
        const N: usize = 1_000_000;
        let mut rng = SmallRng::seed_from_u64(0x5e5_0000);
        let mut counts = Counts::default();
        let mut b = [0u8; 64];
        for _ in 0..N {
            let valid = encode_response(&random_response(&mut rng));
            fuzz_slot(&mut rng, valid, &mut b);
            match decode_response(&b) {
                Ok(resp) => {
                    counts.valid += 1;
                    let again = encode_response(&resp);
                    assert_eq!(decode_response(&again), Ok(resp));
                    assert_eq!(again, b);
                }
                Err(e) => counts.bad(e),
            }
        }
        println!("fuzz_responses: {N} slots: {counts:?}");
        assert!(counts.valid > 0 && counts.bad > 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Err(e) = decode_request(&bytes) {
                prop_assert_eq!(e.kind(), "bad-message");
            }
            if let Err(e) = decode_response(&bytes) {
                prop_assert_eq!(e.kind(), "bad-message");
            }
            let _ = raw_seq(&bytes);
        }

        #[test]
        fn spliced_valid_slots_never_panic(
            seq in any::<u32>(),
            a in any::<u64>(),
            b in any::<u64>(),
            op in 0u8..3,
            at in 0usize..64,
            patch in proptest::collection::vec(any::<u8>(), 0..8),
            cut in 0usize..70,
        ) {
            let req = match op {
                0 => Request::Map { handle: a as u32, offset: a, len: b, iova: a ^ b, perm: Perm::RW },
                1 => Request::Unmap { iova: a, len: b },
                _ => Request::MapPa { pa: a, len: b, iova: b, perm: Perm::R },
            };
            let mut bytes = encode_request(seq, &req).to_vec();
            for (i, x) in patch.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + i) {
                    *slot = *x;
                }
            }
            bytes.resize(cut, 0);
            if let Ok((s, r)) = decode_request(&bytes) {
                prop_assert_eq!(encode_request(s, &r).to_vec(), bytes.clone());
            }
            let _ = decode_response(&bytes);
        }

        #[test]
        fn arbitrary_requests_round_trip(
            seq in any::<u32>(),
            handle in any::<u32>(),
            x in any::<u64>(),
            y in any::<u64>(),
            z in any::<u64>(),
            perm_i in 0usize..3,
            op in 0u8..3,
        ) {
            let perm = PERMS[perm_i];
            let req = match op {
                0 => Request::Map { handle, offset: x, len: y, iova: z, perm },
                1 => Request::Unmap { iova: x, len: y },
                _ => Request::MapPa { pa: x, len: y, iova: z, perm },
            };
            prop_assert_eq!(decode_request(&encode_request(seq, &req)), Ok((seq, req)));
        }
    }
}
