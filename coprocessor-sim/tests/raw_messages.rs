//! A message that does not fit one ring slot is `bad-message`, never a
//! truncated request (docs/design.md §4): 64 bytes of a valid map are served, the same
//! 64 plus one byte are refused whole and change nothing but the refusal
//! counters. (The scenario runner's `raw` call posts through the same
//! `wire::slot_message` / `MapperService::handle_message` pair:
//! scenarios/ring-raw-oversized.toml.)

use coprocessor_sim::rpc::service::{MapperService, RpcError};
use coprocessor_sim::rpc::wire::{self, Request, WireError};
use coprocessor_sim::soc::Device;
use dart::{Dart, DartConfig, StreamConfig, Variant};
use frame_table::{FrameTable, FrameTableConfig, FrameType, Perm};
use std::sync::Arc;

#[test]
fn one_byte_past_a_slot_is_bad_message_and_changes_nothing() {
    let frames = Arc::new(FrameTable::new(FrameTableConfig::with_memory(16 << 20)).unwrap());
    let dart = Arc::new(Dart::new(frames.clone(), DartConfig::new("d", Variant::T8110)).unwrap());
    dart.set_stream_config(1, StreamConfig::TRANSLATING).unwrap();
    let device = Device { name: "ane".into(), dart: 0, stream: 1, trusted: false, window: 0..(1 << 32) };
    let service = MapperService::new(frames.clone(), vec![dart.clone()], vec![device]);
    let buf = frames.alloc(FrameType::KernelShared, 1).unwrap();
    let h = service.grant(0, buf.clone(), Perm::R).unwrap();
    let map =
        wire::encode_request(0x11, &Request::Map { handle: h, offset: 0, len: 0x4000, iova: 0x100000, perm: Perm::R });
    let mut long = map.to_vec();
    long.push(0xff);
    let counters = || {
        let snap = dart.stats().snapshot();
        ["s1.maps", "s1.rpc_requests", "s1.rpc_refused", "s1.rpc_refused.bad-message"].map(|n| snap.get(n).unwrap())
    };

    assert_eq!(wire::slot_message(&long), Err(WireError::Long { len: 65 }));
    assert_eq!(service.handle_message(0, &long), (0x11, Err(RpcError::BadMessage(WireError::Long { len: 65 }))));
    assert_eq!(dart.mappings(1).unwrap(), []);
    assert_eq!(service.rpc_pages(0), []);
    assert_eq!(frames.state(buf[0]).unwrap().count(frame_table::Counter::Dart), 0);
    assert_eq!(counters(), [0, 1, 1, 1]);

    assert_eq!(service.handle_message(0, &wire::slot_message(&map).unwrap()), (0x11, Ok(())));
    let pa = frames.pa_of(buf[0]).unwrap();
    assert_eq!(
        dart.mappings(1).unwrap().into_iter().map(|(iova, l)| (iova, l.pa)).collect::<Vec<_>>(),
        [(0x100000, pa)]
    );
    assert_eq!(service.rpc_pages(0), [(0x100000, h)]);
    assert_eq!(counters(), [1, 2, 1, 1]);
}
