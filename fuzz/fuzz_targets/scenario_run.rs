//! Parsed scenarios run on the emulator: arbitrary text that parses into a
//! small scenario (at most 64 MiB, 4 DARTs with at most 4096 IOTLB entries,
//! 4 coprocessors, 64 steps) is run step by step. Never a panic or an abort,
//! whatever the steps ask for (huge lengths, counts, addresses); a run ends
//! with a verdict per step.
#![no_main]

use coprocessor_sim::scenario::run::{run_scenario, Base};
use coprocessor_sim::scenario::parse_scenario;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(s) = parse_scenario(source, Path::new("fuzz.toml")) else { return };
    let small = s.soc.memory_mib <= 64
        && s.darts.len() <= 4
        && s.darts.iter().all(|d| d.iotlb_entries <= 4096)
        && s.coprocessors.len() <= 4
        && s.steps.len() <= 64;
    if !small {
        return;
    }
    let r = run_scenario(&s, Base::Spec);
    assert!(r.setup_error.is_some() || r.steps.len() == s.steps.len(), "a run lost steps: {r:?}");
});
