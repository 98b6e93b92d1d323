//! Slices hold their frames (docs/design.md §4, "The embedding boundary"): a device
//! built on virtio-queue over a stream port keeps the frames of every
//! `Reader`/`Writer` (and every slice of the port's vm-memory view) counted
//! as DART-reachable until the slices drop, so a kernel that unmaps, frees
//! and reuses the frame as `kernel-restricted` while a device still holds a
//! slice is refused (`frame-busy`, reject mode), and the device never reads
//! the secret.

use dart::vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};
use dart::{Dart, DartConfig, PortMemory, StreamConfig, Variant};
use frame_table::{Counts, Error, Frame, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
use std::io::{Read, Write};
use std::sync::Arc;
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueOwnedT, Reader, Writer};

const PAGE: u64 = 16 << 10;
/// The queue's rings, in one mapped page.
const RING: u64 = 0x10_0000;
/// The data buffer's IOVA.
const DATA: u64 = 0x20_0000;
const SECRET: &[u8; 16] = b"kernel secret!!!";
const PUBLIC: &[u8; 16] = b"public data here";

struct System {
    frames: Arc<FrameTable>,
    dart: Arc<Dart>,
    mem: PortMemory,
    data: Frame,
}

/// Reject mode (a breach is refused, not halted); stream 1 of a strict
/// t8110 maps a ring page and one data frame holding `PUBLIC`.
fn system() -> System {
    let frames =
        Arc::new(FrameTable::new(FrameTableConfig::with_memory(8 << 20).on_violation(OnViolation::Reject)).unwrap());
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110)).unwrap());
    dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let ring = frames.alloc(FrameType::KernelShared, 1).unwrap();
    dart.map(1, RING, &ring, Perm::RW, None).unwrap();
    let data = frames.alloc(FrameType::UserData, 1).unwrap()[0];
    frames.aperture_write(frames.pa_of(data).unwrap(), PUBLIC).unwrap();
    dart.map(1, DATA, &[data], Perm::RW, None).unwrap();
    let mem = dart.port(1).unwrap().memory();
    System { frames, dart, mem, data }
}

/// A one-descriptor chain at `DATA` (device-writable if `write`), popped
/// from a split queue in the ring page, as a device pops it.
fn pop_chain(mem: &PortMemory, write: bool) -> virtio_queue::DescriptorChain<&PortMemory> {
    let mock = MockSplitQueue::create(mem, GuestAddress(RING), 16);
    let flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
    let desc = RawDescriptor::from(SplitDescriptor::new(DATA, 16, flags, 0));
    mock.add_desc_chains(&[desc], 0).unwrap();
    let mut queue: Queue = mock.create_queue().unwrap();
    queue.iter(mem).unwrap().next().expect("the driver made one chain available")
}

/// The kernel's half of the attack: unmap `DATA` (strict: returns without
/// waiting for slices), then try to free the frame and reuse it as
/// `kernel-restricted`. Returns what `free` answered.
fn unmap_and_free(s: &System) -> Result<(), Error> {
    assert_eq!(s.dart.unmap(1, DATA, PAGE).unwrap(), 1);
    s.frames.free(s.data)
}

/// The frame is still the device's `user-data` with one DART count (the
/// hold) and its data, and nothing else changed.
fn assert_held(s: &System) {
    let st = s.frames.state(s.data).unwrap();
    assert_eq!(st.ty(), FrameType::UserData);
    assert_eq!(st.counts(), Counts { dart: 1, ..Counts::default() });
    assert_eq!(s.dart.slice_holds(s.data), 1);
    assert_eq!(s.dart.dart_counts().get(&s.data), Some(&(1, 0)), "counts-consistent counts the hold");
    let mut now = [0u8; 16];
    s.frames.aperture_read(s.frames.pa_of(s.data).unwrap(), &mut now).unwrap();
    assert_eq!(&now, PUBLIC);
}

/// After the holds dropped: the free succeeds, the frame comes back as
/// `kernel-restricted` with the secret, and a new access faults.
fn assert_released_then_reused(s: &System) {
    assert_eq!(s.dart.slice_holds(s.data), 0);
    assert_eq!(s.frames.state(s.data).unwrap().counts(), Counts::default());
    s.frames.free(s.data).unwrap();
    let secret = s.frames.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
    assert_eq!(secret, s.data, "the free list hands the same frame back (LIFO)");
    s.frames.aperture_write(s.frames.pa_of(secret).unwrap(), SECRET).unwrap();
    let mut buf = [0u8; 16];
    let err = s.mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap_err();
    assert!(err.to_string().contains("fault:no-pte"), "{err}");
    assert_eq!(buf, [0; 16]);
    assert!(!s.dart.dart_counts().contains_key(&s.data));
}

fn assert_frame_busy(got: Result<(), Error>, s: &System) {
    match got {
        Err(e @ Error::FrameBusy { frame, ty: FrameType::UserData, counts }) => {
            assert_eq!(e.kind(), "frame-busy");
            assert_eq!(frame, s.data);
            assert_eq!(counts, Counts { dart: 1, ..Counts::default() });
        }
        other => panic!("free while a slice is held must be frame-busy, got {other:?}"),
    }
}

/// (a) The sequence of the issue with virtio-queue's `Reader`.
#[test]
fn a_free_while_a_reader_lives_is_refused_and_the_reader_never_reads_the_secret() {
    let s = system();
    let chain = pop_chain(&s.mem, false);
    let mut reader = Reader::new(&s.mem, chain).unwrap();

    assert_frame_busy(unmap_and_free(&s), &s);
    assert_frame_busy(s.frames.retype(s.data, FrameType::KernelShared), &s);
    assert_held(&s);
    // The frame could not be reused: the old Reader reads the old data.
    let mut got = [0u8; 16];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(&got, PUBLIC);

    drop(reader);
    assert_released_then_reused(&s);
}

/// (b) The same with a `Writer`: the device's late write lands in its own
/// still-held frame, never in the kernel's next use of it.
#[test]
fn a_free_while_a_writer_lives_is_refused_and_its_write_lands_in_the_held_frame() {
    let s = system();
    let chain = pop_chain(&s.mem, true);
    let mut writer = Writer::new(&s.mem, chain).unwrap();

    assert_frame_busy(unmap_and_free(&s), &s);
    assert_held(&s);
    writer.write_all(b"late device data").unwrap();
    drop(writer);
    let mut now = [0u8; 16];
    s.frames.aperture_read(s.frames.pa_of(s.data).unwrap(), &mut now).unwrap();
    assert_eq!(&now, b"late device data");
    s.frames.aperture_write(s.frames.pa_of(s.data).unwrap(), PUBLIC).unwrap();
    assert_released_then_reused(&s);
}

/// (b) The port view's `get_slices` directly: a sub-slice taken from a
/// slice keeps the hold after the slice and the iterator are gone.
#[test]
fn a_sub_slice_of_get_slices_keeps_the_frame_held() {
    let s = system();
    let sub = {
        let mut it = s.mem.get_slices(GuestAddress(DATA), 16, Permissions::Read).unwrap();
        let slice = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        slice.subslice(4, 8).unwrap()
    };
    assert_eq!(sub.bitmap().frames(), &[s.data]);
    assert_frame_busy(unmap_and_free(&s), &s);
    assert_held(&s);
    let mut got = [0u8; 8];
    sub.copy_to(&mut got[..]);
    assert_eq!(&got, &PUBLIC[4..12]);
    drop(sub);
    assert_released_then_reused(&s);
}

/// Copies through `Bytes` take and drop their hold within the call.
#[test]
fn bytes_copies_leave_no_hold() {
    let s = system();
    s.mem.write_slice(b"0123", GuestAddress(DATA + 4)).unwrap();
    let mut got = [0u8; 8];
    s.mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert_eq!(&got, b"publ0123");
    assert_eq!(s.dart.slice_holds(s.data), 0);
    assert_eq!(s.frames.state(s.data).unwrap().counts(), Counts { dart: 1, ..Counts::default() });
    assert_eq!(unmap_and_free(&s), Ok(()));
}

/// A hold is all or nothing: a range whose second page faults hands out
/// no slice and leaves no count.
#[test]
fn a_range_that_faults_part_way_holds_nothing() {
    let s = system();
    let err = s.mem.get_slices(GuestAddress(DATA + PAGE - 8), 16, Permissions::Read).err().unwrap();
    assert!(err.to_string().contains("fault:no-pte"), "{err}");
    assert_eq!(s.dart.slice_holds(s.data), 0);
    assert_eq!(s.frames.state(s.data).unwrap().counts(), Counts { dart: 1, ..Counts::default() });
    assert_eq!(s.dart.error().first.unwrap().iova, DATA + PAGE);
}
