//! Clearing FOUR_LEVEL over four-level tables: the two-level walk finds a
//! table descriptor in the leaf slot, naming a `dart-table` frame, so the DMA
//! faults forbidden-frame — and `restricted-unreachable` must agree that
//! nothing is mapped there rather than report the descriptor as a leaf.

use dart::{Dart, DartConfig, DartError, FaultKind, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;

#[test]
fn clearing_four_level_over_four_level_tables_is_not_a_breach() {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(4 << 20)).unwrap());
    let d = Dart::new(frames.clone(), DartConfig::new("d", Variant::T8110)).unwrap();
    d.set_stream_config(1, StreamConfig { four_level: true, ..StreamConfig::TRANSLATING }).unwrap();
    let f = frames.alloc(FrameType::UserData, 1).unwrap();
    d.map(1, 0, &f, Perm::RW, None).unwrap();
    d.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let err = d.dma_read(1, 0, &mut [0u8; 4]).unwrap_err();
    assert!(matches!(err, DartError::Fault(f) if f.kind == FaultKind::ForbiddenFrame), "{err:?}");
    assert_eq!(d.mappings(1).unwrap(), vec![]);
    assert_eq!(d.check_restricted_unreachable(), Ok(()));
    // Back to four levels: the mapping is there again.
    d.set_stream_config(1, StreamConfig { four_level: true, ..StreamConfig::TRANSLATING }).unwrap();
    d.dma_read(1, 0, &mut [0u8; 4]).unwrap();
    assert_eq!(d.mappings(1).unwrap().len(), 1);
}
