//! The README's `## Embedding` snippet, compiled and run: the body of
//! `embedding_snippet` between the `README` markers is the snippet, and
//! `readme_shows_this_snippet` checks that the README still shows it verbatim.

#[test]
fn embedding_snippet() {
    // README:BEGIN
    use dart::{Dart, DartConfig, DartVfioDomain, StreamConfig, Variant};
    use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
    use std::sync::Arc;
    use vfio_ioctls::VfioOps;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

    // The SoC: typed physical memory (16 KiB frames) and a DART on it.
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("dart0", Variant::T8110)).unwrap());
    dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();

    // Kernel side: map a buffer into stream 1 (validated: forbidden frame types are refused).
    let buf = frames.alloc(FrameType::UserData, 1).unwrap();
    dart.map(1, 0x4000, &buf, Perm::RW, None).unwrap();

    // Device side: vm-memory's `Bytes` API; every access is translated and checked by stream 1.
    let mem = dart::stream_memory(dart.clone(), 1).unwrap();
    mem.write_obj(0x1234_u32, GuestAddress(0x4010)).unwrap();
    assert!(mem.read_obj::<u32>(GuestAddress(0x8000)).is_err()); // unmapped: fault:no-pte
    assert_eq!(dart.error().first.unwrap().iova, 0x8000); // latched in ERROR

    // VMM side: the same stream as a VFIO DMA domain.
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
