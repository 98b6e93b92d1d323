//! Bad input to the command line: `run::collect`, `stress::run_stress` and
//! the `dartemu` binary given missing paths, zero / huge threads and
//! seconds, zero / too many bench rounds and bad flags fail with the exact
//! error (moved here from `coprocessor-sim/tests/bad_input.rs`).
//!
//! | entry point | inputs |
//! |---|---|
//! | CLI: `run::collect`, `stress::run_stress`, the `dartemu` binary | missing paths, zero / huge threads and seconds, zero / too many bench rounds, bad flags |

use dartemu::run::collect;
use dartemu::stress::{run_stress, StressConfig, StressError, MAX_SECONDS, MAX_THREADS};
use std::path::PathBuf;

#[test]
fn cli_paths() {
    let missing = PathBuf::from("/nonexistent/scenarios");
    let c = collect(std::slice::from_ref(&missing));
    assert!(c.sources.is_empty());
    let [e] = &c.errors[..] else { panic!("{c:?}") };
    assert_eq!((&e.file, e.line, e.reason.as_str()), (&missing, 0, "no such file or folder"));
    assert_eq!(collect(&[]), Default::default());
    let cfg = |seconds, threads| StressConfig { seconds, threads, seed: 0 };
    for threads in [0, MAX_THREADS + 1, usize::MAX] {
        assert!(matches!(
            run_stress(&cfg(1, threads)),
            Err(StressError::BadThreads { threads: t, max: MAX_THREADS }) if t == threads
        ));
    }
    for seconds in [0, MAX_SECONDS + 1, u64::MAX] {
        assert!(matches!(
            run_stress(&cfg(seconds, 1)),
            Err(StressError::BadSeconds { seconds: s, max: MAX_SECONDS }) if s == seconds
        ));
    }
    let bin = env!("CARGO_BIN_EXE_dartemu");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let huge = std::env::temp_dir().join(format!("dartemu-bad-input-{}.toml", std::process::id()));
    std::fs::write(
        &huge,
        "name = \"x\"\n[[step]]\nop = \"dma-read\"\ndevice = \"dev0\"\niova = 0\nlen = 9223372036854775807\nexpect = \"ok\"\n",
    )
    .unwrap();
    let (code, err) = run(&["run", huge.to_str().unwrap()]);
    std::fs::remove_file(&huge).unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("9223372036854775807 bytes in one read or hold is above the limit of 16777216"), "{err}");
    for (args, needle) in [
        (&["run", "/nonexistent/x.toml"][..], "no such file or folder"),
        (&["run"][..], "required"),
        (&["stress", "--threads", "0"][..], "--threads 0: must be 1..=32"),
        (&["stress", "--seconds", "0"][..], "--seconds 0: must be 1..=86400"),
        (&["stress", "--seconds", "-1"][..], "unexpected argument"),
        (&["stress", "--threads", "99999999999999999999999"][..], "invalid value"),
        (&["bench", "--rounds", "0"][..], "--rounds 0: must be 1 to 1000"),
        (&["bench", "--rounds", "1001"][..], "--rounds 1001: must be 1 to 1000"),
        (&["bogus"][..], "unrecognized subcommand"),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
    }
}
