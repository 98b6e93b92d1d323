//! A virtio-style block device behind a DART, written against the vm-memory
//! API only.
//!
//! The *device* ([`BlkDevice`]) is generic over `vm_memory::GuestMemory`: it
//! reads a split virtqueue (descriptor table, available ring, used ring),
//! request headers and data buffers, and writes data, status bytes and the
//! used ring, all with `Bytes` calls at IOVAs. Here it gets
//! `dart::stream_memory(dart, 1)`, so every one of those accesses is
//! translated and checked by stream 1 of the DART; a fault is an ordinary
//! vm-memory error to the device, and the DART latches it in ERROR.
//!
//! The *driver* (the kernel, `main`) allocates typed frames, maps them
//! through the DART's validated mapper, and fills the queue through the
//! frame table's aperture (the CPU's view of physical memory). It queues a
//! write, a read-back, and a read whose buffer descriptor points at an IOVA
//! where it tried, and was refused, to map a `kernel-restricted` frame.
//!
//! Run: `cargo run -p coprocessor-sim --example virtio_blk`

use dart::{Dart, DartConfig, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use std::error::Error;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

// Queue layout in the ring page (virtio 1.0 split virtqueue, 16 entries).
const QUEUE: u16 = 16;
const DESC: u64 = 0x0; // 16-byte descriptors: addr u64, len u32, flags u16, next u16
const AVAIL: u64 = 0x400; // flags u16, idx u16, ring[QUEUE] u16
const USED: u64 = 0x800; // flags u16, idx u16, ring[QUEUE] { id u32, len u32 }
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
// Request types and status codes (virtio-blk).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const SECTOR: u64 = 512;

// IOVA layout of stream 1.
const RING_IOVA: u64 = 0x10000;
const HDR_IOVA: u64 = 0x20000; // 16-byte headers at +16*i, status bytes at +0x1000+i
const DATA_IOVA: u64 = 0x30000;
const SECRET_IOVA: u64 = 0x40000;

/// One descriptor as the device reads it.
#[derive(Clone, Copy, Debug)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// The block device: a disk image and its position in the available ring.
struct BlkDevice<M: GuestMemory> {
    mem: M,
    ring: u64,
    disk: Vec<u8>,
    last_avail: u16,
}

impl<M: GuestMemory> BlkDevice<M> {
    fn desc(&self, i: u16) -> Result<Desc, vm_memory::GuestMemoryError> {
        let at = GuestAddress(self.ring + DESC + 16 * u64::from(i % QUEUE));
        Ok(Desc {
            addr: self.mem.read_obj(at)?,
            len: self.mem.read_obj(GuestAddress(at.0 + 8))?,
            flags: self.mem.read_obj(GuestAddress(at.0 + 12))?,
            next: self.mem.read_obj(GuestAddress(at.0 + 14))?,
        })
    }

    /// Serves every request in the available ring; returns how many.
    fn process(&mut self) -> Result<u16, vm_memory::GuestMemoryError> {
        let avail_idx: u16 = self.mem.read_obj(GuestAddress(self.ring + AVAIL + 2))?;
        let mut served = 0;
        while self.last_avail != avail_idx {
            let slot = u64::from(self.last_avail % QUEUE);
            let head: u16 = self.mem.read_obj(GuestAddress(self.ring + AVAIL + 4 + 2 * slot))?;
            let written = self.serve(head)?;
            let used_idx: u16 = self.mem.read_obj(GuestAddress(self.ring + USED + 2))?;
            let entry = self.ring + USED + 4 + 8 * u64::from(used_idx % QUEUE);
            self.mem.write_obj(u32::from(head), GuestAddress(entry))?;
            self.mem.write_obj(written, GuestAddress(entry + 4))?;
            self.mem.write_obj(used_idx.wrapping_add(1), GuestAddress(self.ring + USED + 2))?;
            self.last_avail = self.last_avail.wrapping_add(1);
            served += 1;
        }
        Ok(served)
    }

    /// One request: header, data, status. A fault on the data buffer is
    /// reported to the driver as `IOERR`; a fault on the header or status
    /// descriptors ends processing with the error.
    fn serve(&mut self, head: u16) -> Result<u32, vm_memory::GuestMemoryError> {
        let hdr = self.desc(head)?;
        let data = self.desc(hdr.next)?;
        let status = self.desc(data.next)?;
        let kind: u32 = self.mem.read_obj(GuestAddress(hdr.addr))?;
        let sector: u64 = self.mem.read_obj(GuestAddress(hdr.addr + 8))?;
        let len = data.len as usize;
        let off = sector.checked_mul(SECTOR).and_then(|o| usize::try_from(o).ok()).unwrap_or(usize::MAX);
        let in_disk = off.checked_add(len).is_some_and(|end| end <= self.disk.len());
        let what = if kind == T_OUT { "write" } else { "read" };
        let chained = hdr.flags & F_NEXT != 0 && data.flags & F_NEXT != 0 && status.flags & F_WRITE != 0;
        let result = if !in_disk || !chained {
            println!("device: desc {head}: malformed request (sector {sector}, {len} bytes)");
            Ok(0)
        } else if kind == T_OUT {
            self.mem.read_slice(&mut self.disk[off..off + len], GuestAddress(data.addr)).map(|()| 0)
        } else if kind == T_IN && data.flags & F_WRITE != 0 {
            self.mem.write_slice(&self.disk[off..off + len], GuestAddress(data.addr)).map(|()| len as u32)
        } else {
            println!("device: desc {head}: unsupported request type {kind}");
            Ok(0)
        };
        let (code, written) = match result {
            Ok(n) if in_disk && chained => {
                println!("device: desc {head}: {what} sector {sector}, {len} bytes at IOVA {:#x}: ok", data.addr);
                (S_OK, n)
            }
            Ok(_) => (S_IOERR, 0),
            Err(e) => {
                println!(
                    "device: desc {head}: {what} sector {sector}, {len} bytes at IOVA {:#x}: IOERR ({e})",
                    data.addr
                );
                (S_IOERR, 0)
            }
        };
        self.mem.write_obj(code, GuestAddress(status.addr))?;
        Ok(written + 1)
    }
}

/// The driver's handle on physical memory: maps and the CPU aperture.
struct Driver {
    frames: Arc<FrameTable>,
    dart: Arc<Dart>,
    ring_pa: u64,
    hdr_pa: u64,
    next_desc: u16,
    avail: u16,
}

impl Driver {
    fn put<T: Copy + IntoBytes>(&self, pa: u64, v: T) -> Result<(), Box<dyn Error>> {
        Ok(self.frames.aperture_write(pa, &v.bytes())?)
    }

    /// Queues one request of three chained descriptors.
    fn queue(&mut self, kind: u32, sector: u64, buf_iova: u64, len: u32) -> Result<u16, Box<dyn Error>> {
        let head = self.next_desc;
        let req = u64::from(self.avail);
        self.put(self.hdr_pa + 16 * req, kind)?;
        self.put(self.hdr_pa + 16 * req + 8, sector)?;
        let data_flags = F_NEXT | if kind == T_IN { F_WRITE } else { 0 };
        let chain =
            [(HDR_IOVA + 16 * req, 16, F_NEXT), (buf_iova, len, data_flags), (HDR_IOVA + 0x1000 + req, 1, F_WRITE)];
        for (i, (addr, len, flags)) in chain.into_iter().enumerate() {
            let d = head + i as u16;
            let at = self.ring_pa + DESC + 16 * u64::from(d % QUEUE);
            self.put(at, addr)?;
            self.put(at + 8, len)?;
            self.put(at + 12, flags)?;
            self.put(at + 14, (d + 1) % QUEUE)?;
        }
        self.put(self.ring_pa + AVAIL + 4 + 2 * u64::from(self.avail % QUEUE), head)?;
        self.avail = self.avail.wrapping_add(1);
        self.put(self.ring_pa + AVAIL + 2, self.avail)?;
        self.next_desc = (head + 3) % QUEUE;
        Ok(head)
    }

    fn status(&self, req: u64) -> Result<u8, Box<dyn Error>> {
        let mut b = [0u8];
        self.frames.aperture_read(self.hdr_pa + 0x1000 + req, &mut b)?;
        Ok(b[0])
    }
}

/// Little-endian bytes of the integers the driver writes.
trait IntoBytes {
    fn bytes(self) -> Vec<u8>;
}
macro_rules! into_bytes {
    ($($t:ty),*) => { $(impl IntoBytes for $t { fn bytes(self) -> Vec<u8> { self.to_le_bytes().to_vec() } })* };
}
into_bytes!(u8, u16, u32, u64);

fn main() -> Result<(), Box<dyn Error>> {
    // The SoC: 4 MiB of 16 KiB frames, one t8110 DART, the device on stream 1.
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(4 << 20))?);
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110))?);
    dart.set_stream_config(1, StreamConfig::TRANSLATING)?;

    // Driver: one page each for the ring and the headers (kernel-shared), one
    // for data buffers (user data), all mapped read-write.
    let ring = frames.alloc(FrameType::KernelShared, 1)?;
    let hdrs = frames.alloc(FrameType::KernelShared, 1)?;
    let data = frames.alloc(FrameType::UserData, 1)?;
    dart.map(1, RING_IOVA, &ring, Perm::RW, None)?;
    dart.map(1, HDR_IOVA, &hdrs, Perm::RW, None)?;
    dart.map(1, DATA_IOVA, &data, Perm::RW, None)?;
    println!("driver: ring at IOVA {RING_IOVA:#x}, headers at {HDR_IOVA:#x}, buffers at {DATA_IOVA:#x} (stream 1 of dart0, t8110)");
    let secret = frames.alloc(FrameType::KernelRestricted, 1)?;
    frames.aperture_write(frames.pa_of(secret[0])?, b"kernel secret")?;
    match dart.map(1, SECRET_IOVA, &secret, Perm::RW, None) {
        Ok(()) => return Err("a kernel-restricted frame was mapped".into()),
        Err(e) => println!("driver: map of a kernel-restricted frame at {SECRET_IOVA:#x} refused: {} ({e})", e.kind()),
    }

    let data_pa = frames.pa_of(data[0])?;
    let message = b"hello from the driver, through the DART";
    frames.aperture_write(data_pa, message)?;
    let mut drv = Driver {
        ring_pa: frames.pa_of(ring[0])?,
        hdr_pa: frames.pa_of(hdrs[0])?,
        frames: frames.clone(),
        dart: dart.clone(),
        next_desc: 0,
        avail: 0,
    };
    drv.queue(T_OUT, 5, DATA_IOVA, SECTOR as u32)?;
    drv.queue(T_IN, 5, DATA_IOVA + 0x1000, SECTOR as u32)?;
    drv.queue(T_IN, 5, SECRET_IOVA, SECTOR as u32)?; // a buggy (or hostile) buffer address
    println!("driver: queued 3 requests");

    // Device: vm-memory only.
    let mem = dart::stream_memory(dart.clone(), 1)?;
    let mut dev = BlkDevice { mem, ring: RING_IOVA, disk: vec![0; 64 * SECTOR as usize], last_avail: 0 };
    let served = dev.process()?;
    println!("device: served {served} requests");

    // Driver: completions and data.
    let statuses: Vec<&str> =
        (0..3).map(|i| drv.status(i).map(|s| if s == S_OK { "OK" } else { "IOERR" })).collect::<Result<_, _>>()?;
    let mut back = vec![0u8; message.len()];
    drv.frames.aperture_read(data_pa + 0x1000, &mut back)?;
    println!("driver: statuses {statuses:?}; read-back equals the written data: {}", back == message);
    let mut secret_now = [0u8; 13];
    frames.aperture_read(frames.pa_of(secret[0])?, &mut secret_now)?;
    println!("driver: the kernel-restricted frame still holds {:?}", String::from_utf8_lossy(&secret_now));

    let err = drv.dart.error();
    match err.first {
        Some(f) => println!("dart0: ERROR latched {f} (+{} more)", err.more),
        None => println!("dart0: no fault latched"),
    }
    let s = dart.stats().snapshot();
    let get = |k: &str| s.get(k).unwrap_or(0);
    println!(
        "dart0 stream 1: translations={} iotlb_hits={} walks={} faults={} faults.no-pte={}",
        get("s1.translations"),
        get("s1.iotlb_hits"),
        get("s1.walks"),
        get("s1.faults"),
        get("s1.faults.no-pte")
    );
    if statuses != ["OK", "OK", "IOERR"] || back != message || err.first.is_none() {
        return Err("unexpected outcome".into());
    }
    Ok(())
}
