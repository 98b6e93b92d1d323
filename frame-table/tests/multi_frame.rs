//! R6: a retype or free that names several frames changes every one of them
//! or none. Each test asserts the exact error, then the full state of every
//! frame after it (type, counts, no claim left, device-reachable bit) and
//! what the next allocation gets.

use frame_table::{
    Access, Counter, Counts, Error, Frame, FrameSize, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm,
    Violation,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

fn table(mode: OnViolation) -> FrameTable {
    FrameTable::new(FrameTableConfig::with_memory(16 * 4096).frame_size(FrameSize::K4).on_violation(mode)).unwrap()
}

fn dart(n: u32) -> Counts {
    Counts { dart: n, ..Counts::default() }
}

/// Every frame of `want` has exactly that type and those counts, unclaimed
/// and unpinned, with its device-reachable bit matching the type.
fn assert_states(t: &FrameTable, want: &[(Frame, FrameType, Counts)]) {
    for &(f, ty, c) in want {
        let s = t.state(f).unwrap();
        assert_eq!((s.ty(), s.counts(), s.pins(), s.claimed()), (ty, c, 0, false), "state of {f}");
        let reachable = matches!(ty, FrameType::KernelShared | FrameType::Compressor | FrameType::UserData);
        assert_eq!(t.device_reachable_at(t.pa_of(f).unwrap()), reachable, "reach bit of {f} ({ty})");
    }
    assert_eq!(t.reach_map_consistent(), Ok(()));
}

/// The case: a 3-frame buffer whose middle frame a DART maps.
fn buffer_with_middle_mapped(t: &FrameTable) -> Vec<Frame> {
    let buf = t.alloc(FrameType::UserData, 3).unwrap();
    t.acquire(buf[1], Access::Dart, Perm::RW).unwrap();
    buf
}

#[test]
fn free_of_a_buffer_with_its_middle_frame_mapped_frees_nothing() {
    let t = table(OnViolation::Reject);
    let buf = buffer_with_middle_mapped(&t);
    let free_before = t.free_frames();
    assert_eq!(t.free_all(&buf), Err(Error::FrameBusy { frame: buf[1], ty: FrameType::UserData, counts: dart(1) }));
    assert_states(
        &t,
        &[
            (buf[0], FrameType::UserData, Counts::default()),
            (buf[1], FrameType::UserData, dart(1)),
            (buf[2], FrameType::UserData, Counts::default()),
        ],
    );
    assert_eq!(t.free_frames(), free_before);
    assert_eq!(t.violations(), 1);
    // The next kernel-restricted allocation gets none of the buffer's frames.
    let secret = t.alloc(FrameType::KernelRestricted, 1).unwrap();
    assert!(!buf.contains(&secret[0]), "{secret:?} is one of {buf:?}");
    // Once unmapped, the whole buffer frees in one call.
    t.release(buf[1], Counter::Dart).unwrap();
    assert_eq!(t.free_all(&buf), Ok(()));
    let free = Counts::default();
    assert_states(
        &t,
        &[(buf[0], FrameType::Free, free), (buf[1], FrameType::Free, free), (buf[2], FrameType::Free, free)],
    );
    assert_eq!(t.free_frames(), free_before - 1 + 3);
}

#[test]
fn retype_of_a_buffer_with_its_middle_frame_mapped_retypes_nothing() {
    let t = table(OnViolation::Reject);
    let buf = buffer_with_middle_mapped(&t);
    assert_eq!(
        t.retype_all(&buf, FrameType::KernelShared),
        Err(Error::FrameBusy { frame: buf[1], ty: FrameType::UserData, counts: dart(1) })
    );
    assert_states(
        &t,
        &[
            (buf[0], FrameType::UserData, Counts::default()),
            (buf[1], FrameType::UserData, dart(1)),
            (buf[2], FrameType::UserData, Counts::default()),
        ],
    );
    t.release(buf[1], Counter::Dart).unwrap();
    assert_eq!(t.retype_all(&buf, FrameType::KernelShared), Ok(()));
    assert_states(&t, &buf.iter().map(|&f| (f, FrameType::KernelShared, Counts::default())).collect::<Vec<_>>());
}

/// A refusal that is not a breach (R1 forbids one frame's transition) is
/// all or nothing too, and reports no violation.
#[test]
fn retype_refused_by_r1_at_one_frame_retypes_nothing() {
    let t = table(OnViolation::Panic);
    let buf = t.alloc(FrameType::UserData, 3).unwrap();
    t.retype(buf[0], FrameType::KernelShared).unwrap();
    // kernel-shared -> compressor is allowed, user-data -> compressor is not.
    assert_eq!(
        t.retype_all(&buf, FrameType::Compressor),
        Err(Error::BadTransition { frame: buf[1], from: FrameType::UserData, to: FrameType::Compressor })
    );
    assert_states(
        &t,
        &[
            (buf[0], FrameType::KernelShared, Counts::default()),
            (buf[1], FrameType::UserData, Counts::default()),
            (buf[2], FrameType::UserData, Counts::default()),
        ],
    );
    assert_eq!((t.halted(), t.violations()), (None, 0));
}

/// In panic mode the breach halts the system, and the halted free changed
/// nothing: no frame of the buffer is `free`, every count is as it was.
#[test]
fn halted_multi_frame_free_leaves_every_frame_as_it_was() {
    let t = table(OnViolation::Panic);
    let buf = buffer_with_middle_mapped(&t);
    let breach = Violation::FreeMapped { frame: buf[1], ty: FrameType::UserData, counts: dart(1) };
    assert_eq!(t.free_all(&buf), Err(Error::Panic(breach.clone())));
    assert_eq!(t.halted(), Some(breach.clone()));
    assert_states(
        &t,
        &[
            (buf[0], FrameType::UserData, Counts::default()),
            (buf[1], FrameType::UserData, dart(1)),
            (buf[2], FrameType::UserData, Counts::default()),
        ],
    );
    assert_eq!(t.free_all(&buf[..1]), Err(Error::Halted(breach.clone())));
    assert_eq!(t.alloc(FrameType::KernelRestricted, 1), Err(Error::Halted(breach)));
    assert_eq!(t.state(buf[0]).unwrap().ty(), FrameType::UserData);
}

/// Frames are taken in ascending order whatever the caller's order, so the
/// frame an error names is the lowest refused one.
#[test]
fn the_lowest_refused_frame_is_named_whatever_the_order() {
    let t = table(OnViolation::Reject);
    let buf = t.alloc(FrameType::UserData, 3).unwrap();
    t.acquire(buf[0], Access::CpuUser, Perm::R).unwrap();
    t.acquire(buf[2], Access::Dart, Perm::R).unwrap();
    let user = Counts { cpu_user: 1, ..Counts::default() };
    assert_eq!(
        t.free_all(&[buf[2], buf[1], buf[0]]),
        Err(Error::FrameBusy { frame: buf[0], ty: FrameType::UserData, counts: user })
    );
    assert_states(
        &t,
        &[
            (buf[0], FrameType::UserData, user),
            (buf[1], FrameType::UserData, Counts::default()),
            (buf[2], FrameType::UserData, dart(1)),
        ],
    );
}

#[test]
fn empty_repeated_and_out_of_range_lists_change_nothing() {
    let t = table(OnViolation::Panic);
    let buf = t.alloc(FrameType::UserData, 2).unwrap();
    let free_before = t.free_frames();
    let empty = Error::BadRange { start: 0, len: 0, reason: "a retype or free needs at least one frame" };
    assert_eq!(t.free_all(&[]), Err(empty.clone()));
    assert_eq!(t.retype_all(&[], FrameType::KernelShared), Err(empty));
    let twice =
        Error::BadRange { start: u64::from(buf[1].0), len: 1, reason: "a frame is named twice in one retype or free" };
    assert_eq!(t.free_all(&[buf[1], buf[0], buf[1]]), Err(twice.clone()));
    assert_eq!(t.retype_all(&[buf[1], buf[1]], FrameType::KernelShared), Err(twice));
    let past = Frame(t.frame_count() as u32);
    let oor = Error::OutOfRange { frame: past, frames: t.frame_count() };
    assert_eq!(t.free_all(&[buf[0], past]), Err(oor.clone()));
    assert_eq!(t.retype_all(&[buf[0], past], FrameType::KernelShared), Err(oor));
    assert_eq!(
        t.retype_all(&buf, FrameType::Free),
        Err(Error::BadTransition { frame: buf[0], from: FrameType::UserData, to: FrameType::Free })
    );
    assert_states(
        &t,
        &[(buf[0], FrameType::UserData, Counts::default()), (buf[1], FrameType::UserData, Counts::default())],
    );
    assert_eq!(t.free_frames(), free_before);
    assert_eq!((t.halted(), t.violations()), (None, 0));
}

/// A retype out of `free` refused at a later frame leaves the free frame
/// free, counted, and allocatable (its free-list entry survives the claim
/// that was given back).
#[test]
fn a_refused_retype_out_of_free_keeps_the_frame_allocatable() {
    let t = table(OnViolation::Reject);
    let all = t.alloc(FrameType::UserData, t.free_frames()).unwrap();
    let (spare, busy) = (all[0], all[1]);
    t.free(spare).unwrap();
    t.acquire(busy, Access::Dart, Perm::R).unwrap();
    assert_eq!(t.free_frames(), 1);
    assert_eq!(
        t.retype_all(&[spare, busy], FrameType::KernelShared),
        Err(Error::FrameBusy { frame: busy, ty: FrameType::UserData, counts: dart(1) })
    );
    assert_states(&t, &[(spare, FrameType::Free, Counts::default()), (busy, FrameType::UserData, dart(1))]);
    assert_eq!(t.free_frames(), 1);
    assert_eq!(t.alloc(FrameType::KernelRestricted, 1), Ok(vec![spare]));
    assert_states(&t, &[(spare, FrameType::KernelRestricted, Counts::default())]);
}

/// Threads started from a barrier each iteration, then aligned on a shared
/// deadline: one frees a `BUFFER`-frame buffer, one maps its middle frame
/// and one its first frame, keeping the mappings. After every iteration
/// either all frames changed or none did, and what the mappers saw agrees
/// with that: a map and the free never both succeed, and neither map is
/// ever refused on `free` unless the free went through (a map that met a
/// half-done free would be). The buffer is larger than the three
/// frames so that the free lasts long enough for the maps to land inside
/// it; the number of iterations in which they overlapped is printed.
#[test]
fn multi_frame_free_races_maps_all_or_nothing() {
    const ITERATIONS: u64 = 3_000;
    const BUFFER: u64 = 16;
    const MIDDLE: usize = BUFFER as usize / 2;
    let t = Arc::new(
        FrameTable::new(
            FrameTableConfig::with_memory(4 * BUFFER * 4096)
                .frame_size(FrameSize::K4)
                .on_violation(OnViolation::Reject),
        )
        .unwrap(),
    );
    let buf = Arc::new(Mutex::new(t.alloc(FrameType::UserData, BUFFER).unwrap()));
    let start = Arc::new(Barrier::new(4));
    let end = Arc::new(Barrier::new(4));
    let epoch = Instant::now();
    let stamp = move || epoch.elapsed().as_nanos() as u64;
    // The instant (ns since `epoch`) every thread starts its operation at.
    let go = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Per thread: its operation's [start, end) in ns since `epoch`, and its
    // outcome (1: ok, 2: the expected refusal).
    let spans = Arc::new([(); 3].map(|_| (AtomicU64::new(0), AtomicU64::new(0))));
    let outcome = Arc::new([(); 3].map(|_| AtomicU64::new(0)));

    let mut threads = Vec::new();
    for role in 0..3usize {
        let (t, buf, start, end, go, stop, spans, outcome) = (
            t.clone(),
            buf.clone(),
            start.clone(),
            end.clone(),
            go.clone(),
            stop.clone(),
            spans.clone(),
            outcome.clone(),
        );
        threads.push(std::thread::spawn(move || {
            loop {
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
                let got = match role {
                    0 => match t.free_all(&frames) {
                        Ok(()) => 1,
                        Err(Error::FrameBusy { frame, .. }) if frame == frames[0] || frame == frames[MIDDLE] => 2,
                        Err(e) => panic!("free: {e}"),
                    },
                    _ => {
                        let f = if role == 1 { frames[MIDDLE] } else { frames[0] };
                        match t.acquire(f, Access::Dart, Perm::R) {
                            Ok(_) => 1,
                            Err(Error::ForbiddenType { ty: FrameType::Free, .. }) => 2,
                            Err(e) => panic!("map of {f}: {e}"),
                        }
                    }
                };
                spans[role].1.store(stamp(), Ordering::Relaxed);
                outcome[role].store(got, Ordering::Relaxed);
                end.wait();
                // The main thread checks and resets here.
                end.wait();
            }
        }));
    }

    // Past ITERATIONS only while nothing overlapped yet (a loaded host).
    let mut overlapped = 0u64;
    let mut i = 0u64;
    while i < ITERATIONS || (overlapped == 0 && i < 20 * ITERATIONS) {
        go.store(stamp() + 300_000, Ordering::Release);
        start.wait();
        end.wait();
        let frames = buf.lock().unwrap().clone();
        let [freed, mapped_mid, mapped_first] = [0, 1, 2].map(|r| outcome[r].load(Ordering::Relaxed) == 1);
        let s = [0, 1, 2].map(|r| (spans[r].0.load(Ordering::Relaxed), spans[r].1.load(Ordering::Relaxed)));
        // A map's span intersects the free's.
        if s[1..].iter().any(|m| m.0 < s[0].1 && s[0].0 < m.1) {
            overlapped += 1;
        }
        let states: Vec<_> = frames.iter().map(|&f| t.state(f).unwrap()).collect();
        let msg = format!("iteration {i}: freed {freed}, maps {mapped_mid} {mapped_first}, {states:?}");
        assert!(states.iter().all(|s| !s.claimed() && s.pins() == 0), "{msg}");
        if freed {
            assert!(!mapped_mid && !mapped_first, "{msg}");
            assert!(states.iter().all(|s| s.ty() == FrameType::Free && !s.mapped()), "{msg}");
            *buf.lock().unwrap() = t.alloc(FrameType::UserData, BUFFER).unwrap();
        } else {
            assert!(mapped_mid && mapped_first, "{msg}");
            assert!(states.iter().all(|s| s.ty() == FrameType::UserData), "{msg}");
            let dart: Vec<u32> = states.iter().map(|s| s.counts().dart).collect();
            let want: Vec<u32> = (0..BUFFER as usize).map(|j| u32::from(j == 0 || j == MIDDLE)).collect();
            assert_eq!(dart, want, "{msg}");
            t.release(frames[MIDDLE], Counter::Dart).unwrap();
            t.release(frames[0], Counter::Dart).unwrap();
        }
        assert_eq!(t.reach_map_consistent(), Ok(()), "{msg}");
        end.wait();
        i += 1;
    }
    stop.store(true, Ordering::Release);
    start.wait();
    for h in threads {
        h.join().unwrap();
    }
    println!("multi-frame free vs maps: {overlapped} of {i} iterations overlapped");
    assert!(overlapped > 0, "the threads never overlapped");
}
