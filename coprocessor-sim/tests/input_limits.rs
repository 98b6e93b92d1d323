//! docs/design.md §4 "Input limits": every size a scenario file can name, one above
//! its limit, is refused with the limit typed in the error (which size, the
//! value, the limit) and named in its `file:line: reason`. A value at the
//! limit is accepted. That the CLI exits 2 with that message:
//! `cli/tests/input_limits.rs`. The cases: `common/limit_cases.rs`.

#[path = "common/limit_cases.rs"]
mod limit_cases;

use coprocessor_sim::scenario::{load_scenario, parse_scenario, Limit, LimitExceeded, MAX_FILE_BYTES};
use limit_cases::cases;
use std::path::Path;

#[test]
fn every_limit_refuses_the_value_just_above_it_and_takes_the_value_at_it() {
    let file = Path::new("limits.toml");
    for (above, line, reason, at, what, value, limit) in cases() {
        let e = parse_scenario(&above, file).map(drop).unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (line, reason.as_str()), "{what:?}");
        assert_eq!(e.limit, Some(LimitExceeded { what, value, limit }), "{what:?}");
        assert_eq!(e.to_string(), format!("limits.toml:{line}: {reason}"));
        assert!(parse_scenario(&at, file).is_ok(), "{what:?} at its limit: {:?}", parse_scenario(&at, file).err());
    }
}

/// A file one byte over the size limit is refused before it is parsed
/// (line 0: no line applies); one at the limit is read.
#[test]
fn a_file_over_the_size_limit_is_refused_before_parsing() {
    let dir = std::env::temp_dir().join(format!("dartemu-limits-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = "name = \"x\"\n";
    let at = dir.join("at.toml");
    let over = dir.join("over.toml");
    let pad = |n: u64| format!("{body}#{}\n", "x".repeat((n - body.len() as u64 - 2) as usize));
    std::fs::write(&at, pad(MAX_FILE_BYTES)).unwrap();
    std::fs::write(&over, pad(MAX_FILE_BYTES + 1)).unwrap();
    assert!(load_scenario(&at).is_ok());
    let e = load_scenario(&over).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        (e.line, e.limit.map(|l| (l.what, l.value, l.limit))),
        (0, Some((Limit::FileBytes, MAX_FILE_BYTES + 1, MAX_FILE_BYTES)))
    );
    assert_eq!(
        e.reason,
        format!(
            "the file is too big: {} bytes of scenario file is above the limit of {MAX_FILE_BYTES}",
            MAX_FILE_BYTES + 1
        )
    );
}
