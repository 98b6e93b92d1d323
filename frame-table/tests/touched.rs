//! The touched prefix: frames at or above `touched_frames` never left
//! `free`, so invariant checks that stop there miss nothing.

use frame_table::{Frame, FrameTable, FrameTableConfig, FrameType};

#[test]
fn the_touched_prefix_covers_every_frame_that_left_free_and_never_shrinks() {
    let t = FrameTable::new(FrameTableConfig::with_memory(64 << 20)).unwrap();
    assert_eq!((t.frame_count(), t.touched_frames(), t.touched_states().count()), (4096, 0, 0));
    let a = t.alloc(FrameType::UserData, 2).unwrap();
    assert_eq!(a, [Frame(0), Frame(1)]);
    assert_eq!(t.touched_frames(), 2);
    t.retype(Frame(10), FrameType::KernelShared).unwrap();
    assert_eq!(t.touched_frames(), 11);
    for f in a {
        t.free(f).unwrap();
    }
    t.free(Frame(10)).unwrap();
    assert_eq!(t.touched_frames(), 11, "freeing does not lower it");
    let states: Vec<_> = t.touched_states().map(|(f, s)| (f, s.ty())).collect();
    assert_eq!(states, (0..11).map(|i| (Frame(i), FrameType::Free)).collect::<Vec<_>>());
    assert!(t.states().skip(11).all(|(_, s)| s.ty() == FrameType::Free));
    assert_eq!(t.reach_map_consistent(), Ok(()));
}
