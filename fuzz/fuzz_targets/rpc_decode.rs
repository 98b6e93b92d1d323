//! The RPC wire decoders on arbitrary bytes: never a panic, and whatever
//! decodes re-encodes to a slot that decodes to the same message (the
//! decoder accepts nothing the encoder could not have written).
#![no_main]

use coprocessor_sim::rpc::wire::{self, SLOT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let seq = wire::raw_seq(data);
    if let Ok((s, req)) = wire::decode_request(data) {
        assert_eq!(Some(s), seq, "decoded seq differs from the raw field");
        let again = wire::encode_request(s, &req);
        assert_eq!(wire::decode_request(&again), Ok((s, req)), "request round trip");
        assert_eq!(&again[..], &data[..SLOT_BYTES], "a decoded request is exactly its encoding");
    }
    if let Ok(resp) = wire::decode_response(data) {
        let again = wire::encode_response(&resp);
        assert_eq!(wire::decode_response(&again), Ok(resp), "response round trip");
    }
    if data.len() >= 8 {
        let head = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let tail = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        let slots = 1u32 << (data.len() % 17);
        if let Ok(layout) = wire::RingLayout::new(slots) {
            let _ = layout.pending(head, tail);
            let idx = layout.slot_index(head);
            assert!(idx < layout.slots, "slot index {idx} out of {} slots", layout.slots);
            assert!(layout.response_offset(head) + SLOT_BYTES <= layout.bytes(), "response slot past the ring");
        }
    }
});
