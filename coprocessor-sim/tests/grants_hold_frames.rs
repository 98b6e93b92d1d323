//! R7: a frame named by a live grant cannot be freed or retyped. The kernel
//! side frees and retypes through `MapperService::kernel_free` /
//! `kernel_retype`, which refuse with `frame-busy` in both `on_violation`
//! modes (a refusal, not a breach: no halt) and change nothing; `revoke`
//! first. Each test asserts the exact error, then every frame's type and
//! counts, the halt state and the violation count.

use coprocessor_sim::rpc::service::RpcError;
use coprocessor_sim::scenario::{CoprocessorConfig, DartConfig, DartVariant, Invalidation, SocConfig};
use coprocessor_sim::soc::Soc;
use dart::DartError;
use frame_table::{Access, Counts, Error, Frame, FrameType, OnViolation, Perm, Violation};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

fn soc(mode: OnViolation) -> Soc {
    let dart = DartConfig {
        name: "dart0".into(),
        variant: DartVariant::T8110,
        streams: 16,
        invalidation: Invalidation::Strict,
        iotlb_entries: 64,
        line: 0,
    };
    let dev = CoprocessorConfig {
        name: "dcp".into(),
        dart: "dart0".into(),
        stream: 1,
        trusted: false,
        window: 0..0x1_0000_0000,
        line: 0,
    };
    Soc::new(&SocConfig { memory_mib: 4, on_violation: mode, ..SocConfig::default() }, &[dart], &[dev]).unwrap()
}

/// Every frame of `want` has exactly that type and those counts, unclaimed.
fn assert_states(soc: &Soc, want: &[(Frame, FrameType, Counts)]) {
    for &(f, ty, c) in want {
        let s = soc.frames.state(f).unwrap();
        assert_eq!((s.ty(), s.counts(), s.pins(), s.claimed()), (ty, c, 0, false), "state of {f}");
    }
}

fn unmapped(frames: &[Frame], ty: FrameType) -> Vec<(Frame, FrameType, Counts)> {
    frames.iter().map(|&f| (f, ty, Counts::default())).collect()
}

#[test]
fn granted_frames_refuse_free_and_retype_in_both_modes_without_a_halt() {
    for mode in [OnViolation::Panic, OnViolation::Reject] {
        let soc = soc(mode);
        let buf = soc.frames.alloc(FrameType::UserData, 3).unwrap();
        let h = soc.service.grant(0, buf.clone(), Perm::R).unwrap();
        let free_before = soc.frames.free_frames();

        let busy = |frame| RpcError::GrantedFrame { frame, handle: h };
        assert_eq!(soc.service.kernel_free(&buf), Err(busy(buf[0])), "{mode:?}");
        assert_eq!(soc.service.kernel_free(&[buf[2]]), Err(busy(buf[2])), "{mode:?}");
        assert_eq!(soc.service.kernel_retype(&buf, FrameType::KernelShared), Err(busy(buf[0])), "{mode:?}");
        assert_eq!(busy(buf[0]).kind(), "frame-busy");
        assert_states(&soc, &unmapped(&buf, FrameType::UserData));
        assert_eq!(soc.frames.free_frames(), free_before);
        assert_eq!((soc.frames.halted(), soc.frames.violations()), (None, 0), "{mode:?}: a refusal, not a breach");

        // The SoC runs on: the handle maps its own buffer.
        soc.service
            .handle(
                0,
                &coprocessor_sim::rpc::wire::Request::Map {
                    handle: h,
                    offset: 0,
                    len: 3 * 16384,
                    iova: 0x10_0000,
                    perm: Perm::R,
                },
            )
            .unwrap();
        // Revoke first, then free.
        assert_eq!(soc.service.revoke(h), Ok(3));
        assert_eq!(soc.service.kernel_free(&buf), Ok(()));
        assert_states(&soc, &unmapped(&buf, FrameType::Free));
    }
}

/// A granted frame that is also mapped: the grant refuses first (no
/// halt); once revoked, the mapping is the R2 breach as always.
#[test]
fn the_grant_refuses_before_the_mapping_breaches() {
    let soc = soc(OnViolation::Panic);
    let buf = soc.frames.alloc(FrameType::UserData, 2).unwrap();
    soc.darts[0].map(1, 0x20_0000, &buf[1..], Perm::RW, None).unwrap();
    let h = soc.service.grant(0, buf.clone(), Perm::RW).unwrap();
    assert_eq!(soc.service.kernel_free(&buf), Err(RpcError::GrantedFrame { frame: buf[0], handle: h }));
    let dart1 = Counts { dart: 1, ..Counts::default() };
    assert_states(&soc, &[(buf[0], FrameType::UserData, Counts::default()), (buf[1], FrameType::UserData, dart1)]);
    assert_eq!(soc.frames.halted(), None);

    assert_eq!(soc.service.revoke(h), Ok(0));
    let breach = Violation::FreeMapped { frame: buf[1], ty: FrameType::UserData, counts: dart1 };
    assert_eq!(soc.service.kernel_free(&buf), Err(RpcError::Dart(DartError::Frame(Error::Panic(breach.clone())))));
    // The halted free changed nothing (R6).
    assert_states(&soc, &[(buf[0], FrameType::UserData, Counts::default()), (buf[1], FrameType::UserData, dart1)]);
    assert_eq!(soc.frames.halted(), Some(breach.clone()));
    assert_eq!(soc.service.kernel_free(&buf[..1]), Err(RpcError::Dart(DartError::Frame(Error::Halted(breach)))));
}

/// Two grants name one frame: the error names the lowest frame and the
/// lowest handle; only once both are revoked does the free go through.
#[test]
fn every_live_grant_holds_its_frames() {
    let soc = soc(OnViolation::Reject);
    let buf = soc.frames.alloc(FrameType::KernelShared, 2).unwrap();
    let h1 = soc.service.grant(0, vec![buf[1]], Perm::R).unwrap();
    let h2 = soc.service.grant(0, buf.clone(), Perm::RW).unwrap();
    assert_eq!(soc.service.kernel_free(&buf), Err(RpcError::GrantedFrame { frame: buf[0], handle: h2 }));
    assert_eq!(soc.service.kernel_free(&buf[1..]), Err(RpcError::GrantedFrame { frame: buf[1], handle: h1 }));
    assert_eq!(soc.service.revoke(h1), Ok(0));
    assert_eq!(
        soc.service.kernel_retype(&buf[1..], FrameType::UserData),
        Err(RpcError::GrantedFrame { frame: buf[1], handle: h2 })
    );
    assert_states(&soc, &unmapped(&buf, FrameType::KernelShared));
    assert_eq!(soc.service.revoke(h2), Ok(0));
    assert_eq!(soc.service.kernel_retype(&buf[1..], FrameType::UserData), Ok(()));
    assert_eq!(soc.service.kernel_free(&buf), Ok(()));
    assert_states(&soc, &unmapped(&buf, FrameType::Free));
    assert_eq!(soc.frames.violations(), 0);
}

/// A grant may not name a `free` frame (the next owner's memory); the
/// refused grant creates no handle.
#[test]
fn a_grant_of_free_frames_is_refused() {
    let soc = soc(OnViolation::Panic);
    let buf = soc.frames.alloc(FrameType::UserData, 2).unwrap();
    soc.service.kernel_free(&buf[1..]).unwrap();
    let refused = RpcError::Dart(DartError::Frame(Error::ForbiddenType {
        frame: buf[1],
        ty: FrameType::Free,
        access: Access::Dart,
        perm: Perm::R,
    }));
    assert_eq!(soc.service.grant(0, buf.clone(), Perm::R), Err(refused.clone()));
    assert_eq!(refused.kind(), "forbidden-type");
    // No grant names buf[0]: it frees.
    assert_eq!(soc.service.kernel_free(&buf[..1]), Ok(()));
    assert_states(&soc, &unmapped(&buf, FrameType::Free));
    assert_eq!(soc.frames.halted(), None);
}

/// A grant races a free of the same buffer, both started from a barrier:
/// exactly one of them succeeds in every iteration (the grant, and the
/// free is refused `frame-busy`; or the free, and the grant is refused on
/// the `free` frames), and the frames are all freed or all still the
/// buffer's. The buffer has 16 frames so that both calls last long enough
/// to overlap; the number of iterations in which they did is printed, and
/// the race runs on past 2,000 iterations (up to 50,000, for a loaded host)
/// until they overlapped at least once.
#[test]
fn grant_races_free_and_exactly_one_wins() {
    const ITERATIONS: u64 = 2_000;
    const MAX_ITERATIONS: u64 = 50_000;
    const BUFFER: u64 = 16;
    let soc = Arc::new(soc(OnViolation::Panic));
    let buf = Arc::new(Mutex::new(soc.frames.alloc(FrameType::UserData, BUFFER).unwrap()));
    let start = Arc::new(Barrier::new(3));
    let end = Arc::new(Barrier::new(3));
    let epoch = Instant::now();
    let stamp = move || epoch.elapsed().as_nanos() as u64;
    let go = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let spans = Arc::new([(); 2].map(|_| (AtomicU64::new(0), AtomicU64::new(0))));
    // The grant's handle (0: refused), the free's outcome (1: ok, 2: refused).
    let outcome = Arc::new([(); 2].map(|_| AtomicU64::new(0)));

    let mut threads = Vec::new();
    for role in 0..2usize {
        let (soc, buf, start, end, go, stop, spans, outcome) = (
            soc.clone(),
            buf.clone(),
            start.clone(),
            end.clone(),
            go.clone(),
            stop.clone(),
            spans.clone(),
            outcome.clone(),
        );
        threads.push(std::thread::spawn(move || loop {
            start.wait();
            if stop.load(Ordering::Acquire) {
                return;
            }
            let frames = buf.lock().unwrap().clone();
            let at = go.load(Ordering::Acquire);
            while stamp() < at {
                std::hint::spin_loop();
            }
            spans[role].0.store(stamp(), Ordering::Relaxed);
            let got = if role == 0 {
                match soc.service.grant(0, frames.clone(), Perm::R) {
                    Ok(h) => u64::from(h),
                    Err(RpcError::Dart(DartError::Frame(Error::ForbiddenType { ty: FrameType::Free, .. }))) => 0,
                    Err(e) => panic!("grant: {e}"),
                }
            } else {
                match soc.service.kernel_free(&frames) {
                    Ok(()) => 1,
                    Err(RpcError::GrantedFrame { frame, .. }) if frame == *frames.iter().min().unwrap() => 2,
                    Err(e) => panic!("free: {e}"),
                }
            };
            spans[role].1.store(stamp(), Ordering::Relaxed);
            outcome[role].store(got, Ordering::Relaxed);
            end.wait();
            end.wait();
        }));
    }

    let mut overlapped = 0u64;
    let mut grants_won = 0u64;
    let mut i = 0u64;
    while i < ITERATIONS || (overlapped == 0 && i < MAX_ITERATIONS) {
        go.store(stamp() + 300_000, Ordering::Release);
        start.wait();
        end.wait();
        let frames = buf.lock().unwrap().clone();
        let (handle, freed) = (outcome[0].load(Ordering::Relaxed), outcome[1].load(Ordering::Relaxed) == 1);
        let s = [0, 1].map(|r| (spans[r].0.load(Ordering::Relaxed), spans[r].1.load(Ordering::Relaxed)));
        if s[0].0 < s[1].1 && s[1].0 < s[0].1 {
            overlapped += 1;
        }
        let msg = format!("iteration {i}: handle {handle}, freed {freed}");
        assert!((handle != 0) != freed, "{msg}: exactly one must win");
        if freed {
            assert_states(&soc, &unmapped(&frames, FrameType::Free));
            *buf.lock().unwrap() = soc.frames.alloc(FrameType::UserData, BUFFER).unwrap();
        } else {
            grants_won += 1;
            assert_states(&soc, &unmapped(&frames, FrameType::UserData));
            assert_eq!(soc.service.revoke(handle as u32), Ok(0), "{msg}");
        }
        end.wait();
        i += 1;
    }
    stop.store(true, Ordering::Release);
    start.wait();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!((soc.frames.halted(), soc.frames.violations()), (None, 0));
    println!(
        "grant vs free: {overlapped} of {i} iterations overlapped; the grant won {grants_won}, the free {}",
        i - grants_won
    );
    assert!(overlapped > 0, "the threads never overlapped");
}
