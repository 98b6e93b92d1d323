//! Threads racing DART-acquire against free-then-retype-to-`kernel-restricted`
//! on the same frames. The property is checked from inside the racing threads,
//! on every step, not only at the end: no frame is ever observed
//! `kernel-restricted` with a non-zero DART count, and no DART count is ever
//! granted on a frame that is (at the instant of the grant) not DART-mappable.
//! The device-reachable bit (the DART walker's leaf check) is set whenever a
//! DART count is held and clear on every `kernel-restricted` frame.

use frame_table::{
    Access, Counter, Error, Frame, FrameSize, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const FRAMES: u64 = 8;
const TOTAL_OPS: u64 = 1_000_000;

#[test]
fn dart_acquire_races_free_and_retype_to_kernel_restricted() {
    let t = Arc::new(
        FrameTable::new(
            FrameTableConfig::with_memory(FRAMES * 4096).frame_size(FrameSize::K4).on_violation(OnViolation::Reject),
        )
        .unwrap(),
    );
    let frames: Arc<Vec<Frame>> = Arc::new(t.alloc(FrameType::UserData, FRAMES).unwrap());
    let ops = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let granted = Arc::new(AtomicU64::new(0));
    let restricted_seen = Arc::new(AtomicU64::new(0));

    let mut handles = Vec::new();
    // Two DART mappers.
    for seed in 0..2u64 {
        let (t, frames, ops, done, granted) = (t.clone(), frames.clone(), ops.clone(), done.clone(), granted.clone());
        handles.push(std::thread::spawn(move || {
            let mut i = seed as usize;
            while !done.load(Ordering::Relaxed) {
                let f = frames[i % frames.len()];
                i = i.wrapping_add(3);
                match t.acquire(f, Access::Dart, Perm::RW) {
                    Ok(s) => {
                        // The state installed by our CAS is DART-mappable.
                        assert!(matches!(s.ty(), FrameType::UserData | FrameType::KernelShared), "granted on {s:?}");
                        let now = t.state(f).unwrap();
                        assert!(now.counts().dart >= 1 && now.ty() != FrameType::KernelRestricted, "{now:?}");
                        // While the count is held the type cannot change, so
                        // the walker's leaf check must let the DART in.
                        assert!(t.device_reachable_at(t.pa_of(f).unwrap()), "reach bit clear on mapped {now:?}");
                        granted.fetch_add(1, Ordering::Relaxed);
                        t.release(f, Counter::Dart).unwrap();
                    }
                    Err(Error::ForbiddenType { ty, access: Access::Dart, .. }) => {
                        assert!(matches!(ty, FrameType::Free | FrameType::KernelRestricted), "refused on {ty}");
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
                if ops.fetch_add(1, Ordering::Relaxed) >= TOTAL_OPS {
                    done.store(true, Ordering::Relaxed);
                }
            }
        }));
    }
    // One retyper: free, retype to kernel-restricted, check, free, back to user-data.
    {
        let (t, frames, ops, done, seen) =
            (t.clone(), frames.clone(), ops.clone(), done.clone(), restricted_seen.clone());
        handles.push(std::thread::spawn(move || {
            let mut i = 0usize;
            while !done.load(Ordering::Relaxed) {
                let f = frames[i % frames.len()];
                i += 1;
                match t.free(f) {
                    Ok(()) => {}
                    Err(Error::FrameBusy { .. }) => {
                        ops.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
                t.retype(f, FrameType::KernelRestricted).unwrap();
                let s = t.state(f).unwrap();
                assert!(s.ty() != FrameType::KernelRestricted || s.counts().dart == 0, "{s:?}");
                // Only this thread changes types: the frame is kernel-restricted now.
                assert!(!t.device_reachable_at(t.pa_of(f).unwrap()), "reach bit set on {s:?}");
                seen.fetch_add(1, Ordering::Relaxed);
                t.free(f).unwrap();
                t.retype(f, FrameType::UserData).unwrap();
                ops.fetch_add(4, Ordering::Relaxed);
            }
        }));
    }
    // One observer sweeping every frame.
    {
        let (t, frames, done) = (t.clone(), frames.clone(), done.clone());
        handles.push(std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for &f in frames.iter() {
                    let s = t.state(f).unwrap();
                    assert!(!(s.ty() == FrameType::KernelRestricted && s.counts().dart != 0), "observed {s:?}");
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(ops.load(Ordering::Relaxed) >= TOTAL_OPS);
    assert!(granted.load(Ordering::Relaxed) > 0, "the mappers got through sometimes");
    assert!(restricted_seen.load(Ordering::Relaxed) > 0, "the retyper got through sometimes");
    assert_eq!(t.halted(), None);
    for &f in frames.iter() {
        let s = t.state(f).unwrap();
        assert_eq!((s.ty(), s.counts().any(), s.pins()), (FrameType::UserData, false, 0));
    }
}
