//! docs/design.md §4 "Input limits" at the command line: `dartemu run` on a file just
//! above any limit exits 2 with the parser's `file:line: reason` (moved here
//! from `coprocessor-sim/tests/input_limits.rs`, whose cases it shares).

#[path = "../../coprocessor-sim/tests/common/limit_cases.rs"]
mod limit_cases;

use limit_cases::cases;

/// `dartemu run` on each file just above a limit exits 2 and prints
/// `file:line: reason` with the value and the limit.
#[test]
fn the_cli_exits_2_naming_the_value_and_the_limit() {
    let dir = std::env::temp_dir().join(format!("dartemu-limits-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (above, line, reason, ..)) in cases().into_iter().enumerate() {
        let path = dir.join(format!("case{i}.toml"));
        std::fs::write(&path, above).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dartemu")).arg("run").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim_end(), format!("dartemu: {}:{line}: {reason}", path.display()));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
