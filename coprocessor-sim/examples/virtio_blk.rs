//! A virtio block device behind a DART, written on rust-vmm's virtio-queue.
//!
//! The *device* ([`BlkDevice`]) is generic over `vm_memory::GuestMemory`:
//! it pops descriptor chains from a split virtqueue (`virtio_queue::Queue`),
//! parses each virtio-blk request header and moves the data with
//! virtio-queue's `Reader` and `Writer`, writes the status byte (the last
//! byte of the chain's writable part) and completes the chain in the used
//! ring. It holds only a `StreamPort`'s memory view
//! (`dart.port(1)?.memory()`), nothing that leads back to the `Dart` or to
//! physical memory: every access is translated and checked by stream 1 of
//! the DART, and every slice a `Reader` or `Writer` holds keeps its frames
//! counted as DART-reachable until it drops. A fault is an ordinary
//! vm-memory error to the device, and the DART latches it in ERROR.
//!
//! The *driver* (the kernel, `main`) allocates typed frames, maps them
//! through the DART's validated mapper, and fills the queue through the
//! frame table's aperture (the CPU's view of physical memory). It queues a
//! write, a read-back, and a read whose buffer descriptor points at an IOVA
//! where it tried, and was refused, to map a `kernel-restricted` frame: the
//! device answers that one `IOERR` and writes no data.
//!
//! Run: `cargo run -p coprocessor-sim --example virtio_blk`

use dart::vm_memory::bitmap::BitmapSlice;
use dart::vm_memory::{Address, ByteValued, Bytes, GuestAddress, GuestMemory, Le32, Le64};
use dart::{Dart, DartConfig, FaultKind, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use std::error::Error;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;
use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::{Descriptor as SplitDescriptor, VirtqUsedElem};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};

// The split virtqueue in the ring page: 16 entries.
const QUEUE: u16 = 16;
const DESC: u64 = 0x0; // descriptors: addr le64, len le32, flags le16, next le16
const AVAIL: u64 = 0x400; // flags le16, idx le16, ring[QUEUE] le16
const USED: u64 = 0x800; // flags le16, idx le16, ring[QUEUE] { id le32, len le32 }
const SECTOR: u64 = 512;

// IOVA layout of stream 1.
const RING_IOVA: u64 = 0x10000;
const HDR_IOVA: u64 = 0x20000; // 16-byte request headers at +16*i
const STATUS_IOVA: u64 = 0x21000; // status bytes at +i (same page as the headers)
const DATA_IOVA: u64 = 0x30000;
const SECRET_IOVA: u64 = 0x40000;

/// The block device: a disk image and the queue the driver configured.
struct BlkDevice<M: GuestMemory> {
    mem: M,
    queue: Queue,
    disk: Vec<u8>,
}

/// A request answered with a status other than `OK`, and why.
struct Failed {
    status: u32,
    why: String,
}

impl<M: GuestMemory> BlkDevice<M> {
    /// The device after the driver wrote the queue's size and IOVAs to its
    /// registers and set it ready.
    fn new(mem: M, ring: u64, size: u16, disk_bytes: usize) -> Result<Self, Box<dyn Error>> {
        let mut queue = Queue::new(size)?;
        queue.try_set_desc_table_address(GuestAddress(ring + DESC))?;
        queue.try_set_avail_ring_address(GuestAddress(ring + AVAIL))?;
        queue.try_set_used_ring_address(GuestAddress(ring + USED))?;
        queue.set_ready(true);
        if !queue.is_valid(&mem) {
            return Err("the queue's rings are not reachable through the port".into());
        }
        Ok(BlkDevice { mem, queue, disk: vec![0; disk_bytes] })
    }

    /// Serves every available request; returns how many.
    fn process(&mut self) -> Result<u16, virtio_queue::Error> {
        let mut served = 0;
        loop {
            let Some(chain) = self.queue.iter(&self.mem)?.next() else { return Ok(served) };
            let head = chain.head_index();
            let written = serve(&self.mem, &mut self.disk, chain);
            self.queue.add_used(&self.mem, head, written)?;
            served += 1;
        }
    }
}

/// Serves one request and writes its status byte; returns the bytes
/// written into the chain (the used length).
fn serve<M: GuestMemory>(mem: &M, disk: &mut [u8], chain: DescriptorChain<&M>) -> u32 {
    let head = chain.head_index();
    let Some(status_at) = status_byte(&chain) else {
        println!("device: chain {head}: no writable status byte, completed without status");
        return 0;
    };
    let (status, written) = match execute(mem, disk, &chain) {
        Ok((what, written)) => {
            println!("device: chain {head}: {what}: {}", status_name(VIRTIO_BLK_S_OK));
            (VIRTIO_BLK_S_OK, written)
        }
        Err(Failed { status, why }) => {
            println!("device: chain {head}: {}: {why}", status_name(status));
            (status, 0)
        }
    };
    if let Err(e) = mem.write_obj(status as u8, status_at) {
        println!("device: chain {head}: status byte at IOVA {:#x} not written: {e}", status_at.0);
        return written;
    }
    written + 1
}

/// The name of a virtio-blk status code.
fn status_name(status: u32) -> &'static str {
    match status {
        VIRTIO_BLK_S_OK => "OK",
        VIRTIO_BLK_S_IOERR => "IOERR",
        VIRTIO_BLK_S_UNSUPP => "UNSUPP",
        _ => "?",
    }
}

/// The status byte's address: the last byte of the chain's writable part.
fn status_byte<M: GuestMemory>(chain: &DescriptorChain<&M>) -> Option<GuestAddress> {
    let last = chain.clone().writable().last()?;
    last.addr().checked_add(u64::from(last.len().checked_sub(1)?))
}

/// Reads the header, then moves the data between `disk` and the chain;
/// returns what it did and how many data bytes it wrote into the chain.
fn execute<M: GuestMemory>(mem: &M, disk: &mut [u8], chain: &DescriptorChain<&M>) -> Result<(String, u32), Failed> {
    let ioerr = |why: String| Failed { status: VIRTIO_BLK_S_IOERR, why };
    let mut reader = Reader::new(mem, chain.clone()).map_err(|e| ioerr(format!("readable part: {e}")))?;
    let (kind, sector) = read_header(&mut reader).map_err(|e| ioerr(format!("header: {e}")))?;
    match kind {
        VIRTIO_BLK_T_OUT => {
            let len = reader.available_bytes();
            let range = disk_range(disk.len(), sector, len).ok_or_else(|| ioerr(format!("sector {sector} + {len}")))?;
            reader.read_exact(&mut disk[range]).map_err(|e| ioerr(format!("write data: {e}")))?;
            Ok((format!("write sector {sector}, {len} bytes"), 0))
        }
        VIRTIO_BLK_T_IN => {
            let mut writer =
                Writer::new(mem, chain.clone()).map_err(|e| ioerr(format!("read of sector {sector}: {e}")))?;
            let len = writer.available_bytes().saturating_sub(1); // the last byte is the status
            let range = disk_range(disk.len(), sector, len).ok_or_else(|| ioerr(format!("sector {sector} + {len}")))?;
            let written = u32::try_from(len).map_err(|_| ioerr(format!("{len} bytes")))?;
            writer.write_all(&disk[range]).map_err(|e| ioerr(format!("read data: {e}")))?;
            Ok((format!("read sector {sector}, {len} bytes"), written))
        }
        other => Err(Failed { status: VIRTIO_BLK_S_UNSUPP, why: format!("request type {other}") }),
    }
}

/// The request header (`struct virtio_blk_outhdr`): type, reserved, sector.
fn read_header<B: BitmapSlice>(reader: &mut Reader<'_, B>) -> io::Result<(u32, u64)> {
    let kind: Le32 = reader.read_obj()?;
    let _reserved: Le32 = reader.read_obj()?;
    let sector: Le64 = reader.read_obj()?;
    Ok((kind.into(), sector.into()))
}

/// The disk bytes of `len` bytes at `sector`, if they are all on the disk.
fn disk_range(disk_len: usize, sector: u64, len: usize) -> Option<Range<usize>> {
    let start = usize::try_from(sector.checked_mul(SECTOR)?).ok()?;
    let end = start.checked_add(len)?;
    (end <= disk_len).then_some(start..end)
}

/// The driver's side of the queue, through the frame table's aperture.
struct Driver {
    frames: Arc<FrameTable>,
    ring_pa: u64,
    hdr_pa: u64,
    queued: u16,
}

impl Driver {
    /// Queues request `queued`: header, a one-sector buffer at `buf` and
    /// a status byte, in three chained descriptors from `3 * queued`.
    fn queue(&mut self, kind: u32, sector: u64, buf: u64) -> Result<(), Box<dyn Error>> {
        let req = u64::from(self.queued);
        let header = [&kind.to_le_bytes()[..], &[0; 4], &sector.to_le_bytes()].concat();
        self.frames.aperture_write(self.hdr_pa + 16 * req, &header)?;
        let (next, write) = (VRING_DESC_F_NEXT as u16, VRING_DESC_F_WRITE as u16);
        let buf_flags = if kind == VIRTIO_BLK_T_IN { next | write } else { next };
        let chain = [(HDR_IOVA + 16 * req, 16, next), (buf, SECTOR as u32, buf_flags), (STATUS_IOVA + req, 1, write)];
        let head = 3 * self.queued;
        for (d, (addr, len, flags)) in (head..).zip(chain) {
            let desc = SplitDescriptor::new(addr, len, flags, d + 1);
            self.frames.aperture_write(self.ring_pa + DESC + 16 * u64::from(d), desc.as_slice())?;
        }
        self.frames.aperture_write(self.ring_pa + AVAIL + 4 + 2 * req, &head.to_le_bytes())?;
        self.queued += 1;
        Ok(self.frames.aperture_write(self.ring_pa + AVAIL + 2, &self.queued.to_le_bytes())?)
    }

    /// Request `req`'s used-ring entry (head, length) and status byte.
    fn completion(&self, req: u16) -> Result<(u32, u32, u8), Box<dyn Error>> {
        let mut used = VirtqUsedElem::default();
        self.frames.aperture_read(self.ring_pa + USED + 4 + 8 * u64::from(req), used.as_mut_slice())?;
        let mut status = [0u8];
        self.frames.aperture_read(self.hdr_pa + (STATUS_IOVA - HDR_IOVA) + u64::from(req), &mut status)?;
        Ok((used.id(), used.len(), status[0]))
    }
}

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
    let secret_pa = frames.pa_of(secret[0])?;
    frames.aperture_write(secret_pa, b"kernel secret")?;
    match dart.map(1, SECRET_IOVA, &secret, Perm::RW, None) {
        Ok(()) => return Err("a kernel-restricted frame was mapped".into()),
        Err(e) => println!("driver: map of a kernel-restricted frame at {SECRET_IOVA:#x} refused: {} ({e})", e.kind()),
    }

    let data_pa = frames.pa_of(data[0])?;
    frames.aperture_write(data_pa, b"hello from the driver, through the DART")?;
    let mut drv =
        Driver { frames: frames.clone(), ring_pa: frames.pa_of(ring[0])?, hdr_pa: frames.pa_of(hdrs[0])?, queued: 0 };
    drv.queue(VIRTIO_BLK_T_OUT, 5, DATA_IOVA)?;
    drv.queue(VIRTIO_BLK_T_IN, 5, DATA_IOVA + 0x1000)?;
    drv.queue(VIRTIO_BLK_T_IN, 5, SECRET_IOVA)?; // a buggy (or hostile) buffer address
    println!("driver: queued 3 requests (write sector 5, read it back, read into {SECRET_IOVA:#x})");

    // Device: a stream port's vm-memory view, nothing else.
    let mut dev = BlkDevice::new(dart.port(1)?.memory(), RING_IOVA, QUEUE, 64 * SECTOR as usize)?;
    println!("device: served {} requests", dev.process()?);

    // Driver: completions, data, the secret frame, the DART's ERROR latch.
    let completions: Vec<_> = (0..3).map(|r| drv.completion(r)).collect::<Result<_, _>>()?;
    for (head, len, status) in &completions {
        println!("driver: used: chain {head}, {len} bytes written, status {}", status_name(u32::from(*status)));
    }
    let (mut written, mut back) = ([0u8; SECTOR as usize], [0u8; SECTOR as usize]);
    frames.aperture_read(data_pa, &mut written)?;
    frames.aperture_read(data_pa + 0x1000, &mut back)?;
    println!("driver: read-back equals the written sector: {}", back == written);
    let mut secret_now = [0u8; 13];
    frames.aperture_read(secret_pa, &mut secret_now)?;
    println!("driver: the kernel-restricted frame still holds {:?}", String::from_utf8_lossy(&secret_now));
    let holds = dart.slice_holds(data[0]);
    println!("driver: slice holds left on the data frame: {holds}");
    let err = dart.error();
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

    let (ok, ioerr) = (VIRTIO_BLK_S_OK as u8, VIRTIO_BLK_S_IOERR as u8);
    let expected = [(0, 1, ok), (3, 1 + SECTOR as u32, ok), (6, 1, ioerr)];
    let fault_at_secret = err.first.is_some_and(|f| f.kind == FaultKind::NoPte && f.iova == SECRET_IOVA);
    let checks = [
        ("completions", completions == expected),
        ("read-back", back == written),
        ("secret intact", &secret_now == b"kernel secret"),
        ("holds released", holds == 0),
        ("fault latched at the refused IOVA", fault_at_secret),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(format!("unexpected outcome: {what}").into()),
        None => Ok(()),
    }
}
