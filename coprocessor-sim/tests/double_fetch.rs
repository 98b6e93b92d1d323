//! Double fetch on the shared-memory RPC ring (CVE-2017-7047 class): a
//! compromised coprocessor keeps rewriting the handle and length of the
//! message in its ring slot from another thread while the service reads and
//! decodes it. The service copies each message out once, so whatever mix of
//! bytes it copies, it acts on exactly what it validated: never an
//! out-of-bounds access, never a mapping beyond the grant.

use coprocessor_sim::rpc::wire::{self, Request, RingLayout};
use coprocessor_sim::scenario::{CoprocessorConfig, DartConfig, DartVariant, Invalidation, SocConfig};
use coprocessor_sim::soc::Soc;
use frame_table::{FrameType, Perm};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const MESSAGES: u64 = 100_000;
const PAGE: u64 = 16384;
const WINDOW_IOVA: u64 = 0x100_0000;

#[test]
fn flipping_handle_and_length_mid_decode_never_maps_beyond_the_grant() {
    let dart = DartConfig {
        name: "dart0".into(),
        variant: DartVariant::T8110,
        streams: 16,
        invalidation: Invalidation::Strict,
        iotlb_entries: 64,
        line: 0,
    };
    let dev = |name: &str, stream| CoprocessorConfig {
        name: name.into(),
        dart: "dart0".into(),
        stream,
        trusted: false,
        window: 0..0x1_0000_0000,
        line: 0,
    };
    let soc =
        Soc::new(&SocConfig { memory_mib: 16, ..SocConfig::default() }, &[dart], &[dev("ane", 1), dev("other", 2)])
            .unwrap();
    let d = soc.darts[0].clone();
    let ft = soc.frames.clone();
    // The grant: 2 pages, read-only. Another device's grant: 8 pages, rw.
    let granted = ft.alloc(FrameType::KernelShared, 2).unwrap();
    let h = soc.service.grant(0, granted.clone(), Perm::R).unwrap();
    let foreign = ft.alloc(FrameType::KernelShared, 8).unwrap();
    let foreign_h = soc.service.grant(1, foreign.clone(), Perm::RW).unwrap();
    // The ring: a kernel-shared page mapped into the device.
    let ring_frame = ft.alloc(FrameType::KernelShared, 1).unwrap()[0];
    let layout = soc.service.attach_ring(0, ring_frame).unwrap();
    let ring_iova = 0x2000_0000;
    d.map(1, ring_iova, &[ring_frame], Perm::RW, None).unwrap();
    let slot_iova = ring_iova + layout.slot_offset(0) as u64;

    // Two encodings the attacker flips between, byte field by byte field.
    let honest = wire::encode_request(
        7,
        &Request::Map { handle: h, offset: 0, len: 2 * PAGE, iova: WINDOW_IOVA, perm: Perm::R },
    );
    let evil = wire::encode_request(
        7,
        &Request::Map { handle: foreign_h, offset: 0, len: 8 * PAGE, iova: WINDOW_IOVA, perm: Perm::R },
    );
    d.dma_write(1, slot_iova, &honest).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    // The slot the service reads next: the attacker keeps flipping that one.
    let target = Arc::new(AtomicU64::new(slot_iova));
    let attacker = {
        let (d, stop, target) = (d.clone(), stop.clone(), target.clone());
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let slot = target.load(Ordering::Relaxed);
                let src = if flips.is_multiple_of(2) { &evil } else { &honest };
                // Handle (offset 16) and length (offset 32) rewritten separately.
                d.dma_write(1, slot + 16, &src[16..20]).unwrap();
                d.dma_write(1, slot + 32, &src[32..40]).unwrap();
                flips += 1;
            }
            flips
        })
    };

    let allowed: HashSet<u64> = granted.iter().chain([&ring_frame]).map(|&f| ft.pa_of(f).unwrap()).collect();
    let (mut mapped, mut refused) = (0u64, 0u64);
    let head_iova = ring_iova + RingLayout::head_offset() as u64;
    for n in 1..=MESSAGES {
        // The device bumps its head; the service drains the ring.
        let head = n as u32;
        d.dma_write(1, head_iova, &head.to_le_bytes()).unwrap();
        // The message goes into the slot the service reads next, and the
        // attacker moves on to flipping it.
        let next_slot = ring_iova + layout.slot_offset(head - 1) as u64;
        d.dma_write(1, next_slot, &honest).unwrap();
        target.store(next_slot, Ordering::Relaxed);
        let served = soc.service.service_ring(0).unwrap();
        assert_eq!(served.len(), 1);
        match &served[0].1 {
            Ok(()) => {
                mapped += 1;
                // Exactly the grant, read-only, at the window IOVA.
                let maps = d.mappings(1).unwrap();
                assert!(maps.len() <= 3, "more pages than grant + ring: {maps:?}");
                for (iova, leaf) in &maps {
                    assert!(allowed.contains(&leaf.pa), "mapped a frame outside the grant at {iova:#x}");
                    if *iova != ring_iova {
                        assert!(!leaf.write, "write permission beyond the grant");
                    }
                }
                soc.service.handle(0, &Request::Unmap { iova: WINDOW_IOVA, len: 2 * PAGE }).unwrap();
            }
            Err(e) => {
                refused += 1;
                assert!(matches!(e.kind(), "not-granted" | "bad-range" | "bad-message"), "unexpected refusal {e}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = attacker.join().unwrap();
    assert!(mapped > 0 && refused > 0, "both outcomes happened: mapped {mapped}, refused {refused}");
    assert!(flips > 1000, "the attacker raced: {flips} flips");
    // Nothing of the foreign grant was ever mapped into the attacker.
    for f in &foreign {
        assert_eq!(ft.state(*f).unwrap().counts().dart, 0);
    }
    assert_eq!(d.check_restricted_unreachable(), Ok(()));
    eprintln!("{MESSAGES} messages: {mapped} mapped exactly the grant, {refused} refused; {flips} attacker flips");
}
