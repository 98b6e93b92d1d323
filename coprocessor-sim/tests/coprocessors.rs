//! Honest coprocessor behaviours on their own threads, data checked at the
//! physical frames; and a scripted compromised one stopped by the DART.

use coprocessor_sim::scenario::SocConfig;
use coprocessor_sim::soc::coprocessor::{Command, Reply};
use coprocessor_sim::soc::Soc;
use dart::FaultKind;
use frame_table::vm_memory::{Bytes, GuestAddress};
use frame_table::{FrameType, Perm};

#[test]
fn copy_engine_tensor_loader_and_block_device() {
    let (mut soc, darts, devs) = Soc::default_soc();
    soc.memory_mib = 32;
    let soc = Soc::new(&SocConfig { ..soc }, &darts, &devs).unwrap();
    let ft = soc.frames.clone();
    let (ane, _) = soc.device("ane").unwrap();
    let d = &soc.darts[soc.devices[ane].dart];
    let sid = soc.devices[ane].stream;
    let src = ft.alloc(FrameType::UserData, 2).unwrap();
    let dst = ft.alloc(FrameType::UserData, 2).unwrap();
    d.map(sid, 0x10_0000, &src, Perm::R, None).unwrap();
    d.map(sid, 0x20_0000, &dst, Perm::W, None).unwrap();
    let pattern: Vec<u8> = (0..32768u32).map(|i| (i * 7 % 251) as u8).collect();
    ft.aperture_write(ft.pa_of(src[0]).unwrap(), &pattern[..16384]).unwrap();
    ft.aperture_write(ft.pa_of(src[1]).unwrap(), &pattern[16384..]).unwrap();
    let co = &soc.coprocessors[ane];

    assert_eq!(co.call(Command::Copy { src: 0x10_0000, dst: 0x20_0000, len: 32768 }), Reply::Done(vec![]));
    let mut back = vec![0u8; 16384];
    ft.memory().read_slice(&mut back, GuestAddress(ft.pa_of(dst[1]).unwrap())).unwrap();
    assert_eq!(back, pattern[16384..]);

    let sum = pattern.iter().fold(0u64, |s, &b| s + b as u64);
    assert_eq!(co.call(Command::LoadTiles { iova: 0x10_0000, tiles: 8 }), Reply::Done(sum.to_le_bytes().to_vec()));

    assert_eq!(co.call(Command::ReadBlocks { iova: 0x20_0000, lba: 40, blocks: 8 }), Reply::Done(vec![]));
    let mut block = [0u8; 16];
    ft.memory().read_slice(&mut block, GuestAddress(ft.pa_of(dst[1]).unwrap() + 4096)).unwrap();
    assert_eq!(block[..8], 45u64.to_le_bytes(), "block 5 of the second page is LBA 45");

    // The copy engine cannot write through its read-only source mapping.
    match co.call(Command::Copy { src: 0x20_0000, dst: 0x10_0000, len: 16 }) {
        Reply::Failed(dart::DartError::Fault(f)) => assert_eq!(f.kind, FaultKind::Read),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_scripted_compromised_device_is_stopped_at_every_step() {
    let (soc, darts, devs) = Soc::default_soc();
    let soc = Soc::new(&SocConfig { memory_mib: 32, ..soc }, &darts, &devs).unwrap();
    let ft = soc.frames.clone();
    let (usb, _) = soc.device("usb").unwrap();
    let secret = ft.alloc(FrameType::KernelRestricted, 1).unwrap()[0];
    let pa = ft.pa_of(secret).unwrap();
    let script = Command::Script(vec![
        Command::DmaRead { iova: pa, len: 16 },
        Command::DmaWrite { iova: 0, data: vec![1; 8] },
        Command::DmaRead { iova: u64::MAX - 3, len: 8 },
    ]);
    let Reply::Script(replies) = soc.coprocessors[usb].call(script) else { panic!() };
    let kinds: Vec<String> = replies
        .iter()
        .map(|r| match r {
            Reply::Failed(e) => e.kind().to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["fault:no-ttbr", "fault:no-ttbr", "bad-range"]);
    assert_eq!(ft.state(secret).unwrap().counts().dart, 0);
}
