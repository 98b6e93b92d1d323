//! The TOML scenario parser on arbitrary bytes: never a panic; every
//! refusal is a `ScenarioError` naming the file.
#![no_main]

use coprocessor_sim::scenario::parse_scenario;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    match parse_scenario(source, Path::new("fuzz.toml")) {
        Ok(s) => {
            // Parsed scenarios are self-consistent enough to be printed.
            let _ = format!("{s:?}");
        }
        Err(e) => {
            assert_eq!(e.file, Path::new("fuzz.toml"));
            assert!(!e.reason.is_empty(), "an error without a reason");
        }
    }
});
