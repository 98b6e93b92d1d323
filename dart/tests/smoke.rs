use dart::{Dart, DartConfig, DartError, FaultKind, StreamConfig, Variant};
use frame_table::{Counts, FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;

#[test]
fn map_dma_unmap_roundtrip() {
    for v in Variant::ALL {
        let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(64 << 20)).unwrap());
        let d = Dart::new(frames.clone(), DartConfig::new("d", v)).unwrap();
        d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
        let buf = frames.alloc(FrameType::UserData, 3).unwrap();
        d.map(1, 0x10000 * 4, &buf, Perm::RW, None).unwrap();
        d.dma_write(1, 0x40000 + 0x3ff0, &[7u8; 0x20]).unwrap();
        let mut back = [0u8; 0x20];
        d.dma_read(1, 0x40000 + 0x3ff0, &mut back).unwrap();
        assert_eq!(back, [7u8; 0x20]);
        assert_eq!(frames.state(buf[0]).unwrap().counts(), Counts { dart: 1, ..Default::default() });
        assert_eq!(d.unmap(1, 0x40000, 3 * 0x4000).unwrap(), 3);
        assert_eq!(frames.state(buf[0]).unwrap().counts(), Counts::default());
        let e = d.dma_read(1, 0x40000, &mut back).unwrap_err();
        assert!(
            matches!(e, DartError::Fault(f) if f.kind == FaultKind::NoL1),
            "{v}: the emptied leaf table was freed: {e:?}"
        );
        assert!(d.table_frames().len() == 1, "{v}: only the root remains: {:?}", d.table_frames());
        let secret = frames.alloc(FrameType::KernelRestricted, 1).unwrap();
        let e = d.map(1, 0, &secret, Perm::R, None).unwrap_err();
        assert_eq!(e.kind(), "forbidden-type");
    }
}
