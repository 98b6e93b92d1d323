//! The README's `## Embedding` snippet, compiled and run: the body of
//! `embedding_snippet` between the `README` markers is the snippet, and
//! `readme_shows_this_snippet` checks that the README still shows it verbatim.

#[test]
fn embedding_snippet() {
    // README:BEGIN
    use dart::vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryBackend, Permissions};
    use dart::{Dart, DartConfig, DartVfioDomain, StreamConfig, Variant};
    use frame_table::{Error, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm};
    use std::sync::Arc;
    use vfio_ioctls::VfioOps;

    // The SoC: typed physical memory (16 KiB frames) and a DART on it.
    let config = FrameTableConfig::with_memory(16 << 20).on_violation(OnViolation::Reject);
    let frames = Arc::new(FrameTable::new(config).unwrap());
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110)).unwrap());
    dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();

    // Kernel side: map a buffer into stream 1 (validated: forbidden frame types are refused),
    // then hand the device its port: stream 1 and nothing else.
    let buf = frames.alloc(FrameType::UserData, 1).unwrap();
    dart.map(1, 0x4000, &buf, Perm::RW, None).unwrap();
    let port = dart.port(1).unwrap();

    // Device side: vm-memory's `Bytes` API on the port's view; every access is translated.
    let mem = port.memory();
    mem.write_obj(0x1234_u32, GuestAddress(0x4010)).unwrap();
    assert!(mem.read_obj::<u32>(GuestAddress(0x8000)).is_err()); // unmapped: fault:no-pte
    assert_eq!(dart.error().first.unwrap().iova, 0x8000); // latched in ERROR

    // A slice (what virtio-queue's Reader and Writer keep) holds its frame.
    let slice = mem.get_slices(GuestAddress(0x4010), 4, Permissions::Read).unwrap().next().unwrap().unwrap();
    dart.unmap(1, 0x4000, 0x4000).unwrap(); // strict: returns; no new DMA reaches the page
    assert_eq!(dart.slice_holds(buf[0]), 1);
    assert!(matches!(frames.free(buf[0]), Err(Error::FrameBusy { .. }))); // refused, nothing changed
    let mut word = [0u8; 4];
    slice.copy_to(&mut word[..]);
    assert_eq!(u32::from_le_bytes(word), 0x1234); // still the device's own data
    drop(slice);
    frames.free(buf[0]).unwrap();

    // VMM side (kernel side too): the same stream as a VFIO DMA domain.
    let vfio: Arc<dyn VfioOps> = Arc::new(DartVfioDomain::new(dart.clone(), 1).unwrap());
    let more = frames.alloc(FrameType::UserData, 1).unwrap();
    let host = frames.memory().get_host_address(GuestAddress(frames.pa_of(more[0]).unwrap())).unwrap();
    // SAFETY: `host` is the emulator's own memory, reached only through vm-memory.
    unsafe { vfio.vfio_dma_map(0x8000, 16384, host) }.unwrap();
    assert_eq!(mem.read_obj::<u32>(GuestAddress(0x8000)).unwrap(), 0);
    vfio.vfio_dma_unmap(0x8000, 16384).unwrap();
    // README:END
}

/// The ```` ```rust ```` block that follows `## Embedding` in the README.
fn readme_block(readme: &str) -> Option<&str> {
    let section = &readme[readme.find("\n## Embedding\n")?..];
    let start = section.find("```rust\n")? + "```rust\n".len();
    let len = section[start..].find("```\n")?;
    Some(&section[start..start + len])
}

#[test]
fn readme_shows_this_snippet() {
    let me = include_str!("readme_embedding.rs");
    let begin = me.find("// README:BEGIN\n").unwrap() + "// README:BEGIN\n".len();
    let end = me.find("    // README:END").unwrap();
    let snippet: String =
        me[begin..end].lines().map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l))).collect();
    let readme = include_str!("../../README.md");
    let block = readme_block(readme).expect("README has a ```rust block under ## Embedding");
    assert_eq!(block, snippet);
}
