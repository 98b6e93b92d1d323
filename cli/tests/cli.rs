//! The `dartemu` binary's exit status and output for passing, failing and
//! unreadable scenarios, and the shipped catalogue passing (moved here from
//! `coprocessor-sim/tests/runner.rs`).

use coprocessor_sim::scenario::run::Base;
use dartemu::run::{collect, load_all, run_files};
use std::path::Path;
use std::process::Command;

const HEAD: &str = r#"
name = "t"
[[step]]
op = "alloc"
name = "buf"
type = "user-data"
frames = 2
"#;

fn dartemu(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dartemu")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

#[test]
fn cli_exit_status_and_reports() {
    let dir = std::env::temp_dir().join(format!("dartemu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, format!("{HEAD}\n[[step]]\nop = \"check\"\ninvariant = \"all\"\n")).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, format!("{HEAD}\n[[step]]\nop = \"free\"\ntarget = \"buf\"\nexpect = \"frame-busy\"\n"))
        .unwrap();
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "name = \"x\"\n[[step]]\nop = \"alloc\"\nname = \"b\"\ntype = \"user-data\"\nfrmes = 1\n")
        .unwrap();

    let ok = dartemu(&["run", good.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 passed, 0 failed"));

    let failing = dartemu(&["run", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(failing.status.code(), Some(1));
    let out = String::from_utf8_lossy(&failing.stdout);
    assert!(out.contains("FAIL"), "{out}");
    assert!(out.contains("bad.toml:9: step 2 (free): expected frame-busy, got ok"), "{out}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");

    // A folder with one broken file: the error, the others still run, exit 2.
    let unreadable = dartemu(&["run", dir.to_str().unwrap()]);
    assert_eq!(unreadable.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unreadable.stderr);
    assert!(err.contains("broken.toml:6:") && err.contains("frmes"), "{err}");
    let out = String::from_utf8_lossy(&unreadable.stdout);
    assert!(out.contains("good.toml") && out.contains("bad.toml") && out.contains("1 passed, 1 failed"), "{out}");
    assert!(out.contains("1 file was not run: unreadable"), "{out}");

    let json = dartemu(&["run", "--json", good.to_str().unwrap()]);
    assert_eq!(json.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["steps"][1]["actual"], "ok");
    assert_eq!(v[0]["name"], "t");

    let missing = dartemu(&["run", "/no/such/path"]);
    assert_eq!(missing.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_shipped_catalogue_passes() {
    let found = collect(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")]);
    assert!(found.errors.is_empty() && !found.sources.is_empty(), "{found:?}");
    let (scenarios, errors) = load_all(&found.sources);
    assert!(errors.is_empty(), "{errors:?}");
    let files: Vec<_> = scenarios.iter().map(|s| s.file.clone()).collect();
    for r in run_files(&files, Base::DefaultSoc).unwrap() {
        assert!(r.passed(), "{}: {:#?}", r.file.display(), r.steps.iter().filter(|s| !s.passed).collect::<Vec<_>>());
    }
}
