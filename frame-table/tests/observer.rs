//! The observer hook: exactly one event per successful alloc, retype and
//! free, one per violation, none for refusals, none once removed.

use frame_table::{Access, Error, FrameEvent, FrameTable, FrameTableConfig, FrameType, OnViolation, Perm, Violation};
use parking_lot::Mutex;
use std::sync::Arc;

fn table(mode: OnViolation) -> (FrameTable, Arc<Mutex<Vec<FrameEvent>>>) {
    let t = FrameTable::new(FrameTableConfig::with_memory(1 << 20).on_violation(mode)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    t.set_observer(Some(Arc::new(move |e: &FrameEvent| sink.lock().push(e.clone()))));
    (t, seen)
}

#[test]
fn alloc_retype_free_each_reported_once_in_order() {
    let (t, seen) = table(OnViolation::Reject);
    let frames = t.alloc(FrameType::UserData, 2).unwrap();
    t.retype(frames[0], FrameType::KernelShared).unwrap();
    t.free(frames[1]).unwrap();
    let pa = |i: usize| t.pa_of(frames[i]).unwrap();
    assert_eq!(
        *seen.lock(),
        vec![
            FrameEvent::Alloc { frame: frames[0], pa: pa(0), ty: FrameType::UserData },
            FrameEvent::Alloc { frame: frames[1], pa: pa(1), ty: FrameType::UserData },
            FrameEvent::Retype { frame: frames[0], pa: pa(0), from: FrameType::UserData, to: FrameType::KernelShared },
            FrameEvent::Free { frame: frames[1], pa: pa(1), from: FrameType::UserData },
        ]
    );
}

#[test]
fn refusals_are_silent_violations_are_reported() {
    let (t, seen) = table(OnViolation::Reject);
    let f = t.alloc(FrameType::UserData, 1).unwrap()[0];
    seen.lock().clear();
    // A refused transition: no event, nothing changed.
    assert!(matches!(t.retype(f, FrameType::Free), Err(Error::BadTransition { .. })));
    assert!(seen.lock().is_empty());
    // Free with a live mapping: a violation (reject mode), reported, nothing changed.
    t.acquire(f, Access::CpuUser, Perm::RW).unwrap();
    let err = t.free(f).unwrap_err();
    assert_eq!(err.kind(), "frame-busy");
    let events = seen.lock().clone();
    assert_eq!(events.len(), 1);
    assert!(
        matches!(&events[0], FrameEvent::Violation(Violation::FreeMapped { frame, ty: FrameType::UserData, .. }) if *frame == f)
    );
    assert_eq!(t.state(f).unwrap().ty(), FrameType::UserData);
    assert_eq!(t.violations(), 1);
}

#[test]
fn removed_observer_sees_nothing() {
    let (t, seen) = table(OnViolation::Panic);
    t.set_observer(None);
    let f = t.alloc(FrameType::UserData, 1).unwrap()[0];
    t.free(f).unwrap();
    assert!(seen.lock().is_empty());
}
