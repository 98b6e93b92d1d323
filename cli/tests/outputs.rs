//! The command line's options and outputs (issue 29): global output
//! options, `-` as standard output, output paths checked before anything
//! runs, no scenario found, the embedded catalogue, progress on and off,
//! the table's footer and `--help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WATCH: &str = "../scenarios/trace-watch-ring.toml";

/// Runs the binary in `cli/` with `DARTEMU_PROGRESS=never` unless `env` says otherwise.
fn dartemu_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dartemu"));
    c.current_dir(dir).env("DARTEMU_PROGRESS", "never");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().unwrap()
}

fn dartemu(args: &[&str]) -> Output {
    dartemu_in(Path::new(env!("CARGO_MANIFEST_DIR")), &[], args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dartemu-outputs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn output_options_mean_the_same_before_and_after_the_command() {
    let d = tmp("global");
    for (i, before) in [true, false].into_iter().enumerate() {
        let (t, e, r) = (d.join(format!("t{i}.json")), d.join(format!("e{i}.jsonl")), d.join(format!("r{i}")));
        let opts = ["--trace", t.to_str().unwrap(), "--events", e.to_str().unwrap(), "--report", r.to_str().unwrap()];
        let args: Vec<&str> = if before {
            opts.iter().copied().chain(["run", WATCH]).collect()
        } else {
            ["run", WATCH].iter().copied().chain(opts).collect()
        };
        let out = dartemu(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        assert_eq!(std::fs::read_to_string(&e).unwrap().lines().count(), 12, "{args:?}");
        let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&t).unwrap()).unwrap();
        assert!(trace["traceEvents"].as_array().is_some_and(|a| !a.is_empty()), "{args:?}");
        for f in ["report.json", "faults-by-code.svg", "iotlb-hit-rate.svg"] {
            assert!(std::fs::metadata(r.join(f)).unwrap().len() > 100, "{args:?}: {f}");
        }
    }
    // Where they make no sense, they are refused with the reason.
    for (args, needle) in [
        (
            &["--trace", "t.json", "bench"][..],
            "dartemu bench: --trace does not apply to `bench`: it is for scenario runs",
        ),
        (&["bench", "--events", "e"][..], "dartemu bench: --events does not apply to `bench`"),
        (&["--report", "d", "stress"][..], "dartemu stress: --report does not apply to `stress`"),
        (&["stress", "--json"][..], "dartemu stress: --json does not apply to `stress`"),
    ] {
        let out = dartemu_in(&d, &[], args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).starts_with(needle), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr).lines().count(), 1, "{args:?}");
        assert!(!d.join("t.json").exists() && !d.join("e").exists() && !d.join("d").exists(), "{args:?} wrote");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn dash_is_standard_output_and_the_table_moves_to_standard_error() {
    let out = dartemu(&["--events", "-", "run", WATCH]);
    assert_eq!(out.status.code(), Some(0));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout.lines().count(), 12, "{stdout}");
    assert!(stdout.lines().all(|l| l.starts_with("{\"run\":")), "{stdout}");
    assert!(stderr.contains("1 passed, 0 failed"), "{stderr}");
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR")).join("-").exists());

    let out = dartemu(&["run", WATCH, "--trace", "-"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["traceEvents"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(text(&out.stderr).contains("1 passed, 0 failed"));

    let out = dartemu(&["run", "--json", WATCH]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["file"], WATCH);
    assert!(text(&out.stderr).contains("1 passed, 0 failed"));

    for (args, needle) in [
        (
            &["--events", "-", "--trace", "-", "run", WATCH][..],
            "dartemu: --events and --trace each write to standard output (`-`); at most one may",
        ),
        (
            &["run", WATCH, "--json", "--events", "-"][..],
            "dartemu: --events and --json each write to standard output (`-`); at most one may",
        ),
        (&["--report", "-", "run", WATCH][..], "dartemu: --report takes a folder; `-` (standard output) is not one"),
    ] {
        let out = dartemu(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stderr).trim_end(), needle, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn unwritable_outputs_are_found_before_anything_runs() {
    let d = tmp("unwritable");
    let file = d.join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("x.json");
    for opt in ["--trace", "--events", "--report", "--json="] {
        let path = under_file.to_str().unwrap();
        let args: Vec<String> = if opt.ends_with('=') {
            vec![format!("{opt}{path}"), "run".into(), WATCH.into()]
        } else {
            vec![opt.into(), path.into(), "run".into(), WATCH.into()]
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = dartemu(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "dartemu: writing {}",
                if opt == "--report" { file.join("x.json") } else { under_file.clone() }.display()
            )),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: the scenarios ran: {}", text(&out.stdout));
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn no_scenario_and_bad_files_are_exit_2_and_the_rest_run() {
    let d = tmp("empty");
    let out = dartemu(&["run", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("dartemu: {}:0: no scenario file (*.toml) in this folder", d.display())
    );
    assert!(out.stdout.is_empty());
    std::fs::write(d.join("notes.txt"), "x").unwrap();
    assert_eq!(dartemu(&["run", d.to_str().unwrap()]).status.code(), Some(2));

    // Two garbage files and a missing path beside a good file: every error, the good one runs.
    std::fs::write(d.join("a.toml"), [0xff, 0xfe, 0]).unwrap();
    std::fs::write(d.join("b.toml"), "name = \"b\"\n[[step]]\nop = \"nope\"\n").unwrap();
    let out = dartemu(&["run", d.to_str().unwrap(), "/nonexistent/x.toml", WATCH]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert_eq!(lines[0], "dartemu: /nonexistent/x.toml:0: no such file or folder");
    assert!(
        lines[1].starts_with(&format!("dartemu: {}:1: the file is not valid UTF-8", d.join("a.toml").display())),
        "{err}"
    );
    assert!(lines[2].starts_with(&format!("dartemu: {}:3: ", d.join("b.toml").display())), "{err}");
    let out = text(&out.stdout);
    assert!(out.contains("trace-watch-ring.toml") && out.contains("1 passed, 0 failed"), "{out}");
    assert!(out.contains("3 files were not run: unreadable"), "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_catalogue_is_embedded_and_scenarios_overrides_it() {
    let d = tmp("embedded");
    let out = dartemu_in(&d, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("pass ") || l.starts_with("FAIL ")).collect();
    assert_eq!(rows.len(), dartemu::run::CATALOGUE.len(), "{stdout}");
    assert!(rows.iter().all(|r| r.contains(" catalogue:") && r.starts_with("pass ")), "{stdout}");
    assert!(stdout.contains(&format!("\n{} passed, 0 failed\n", rows.len())), "{stdout}");
    // One embedded file by name; a bad name is an error.
    let one = dartemu_in(&d, &[], &["run", "catalogue:trace-watch-ring.toml"]);
    assert_eq!(one.status.code(), Some(0));
    assert!(text(&one.stdout).contains("pass    catalogue:trace-watch-ring.toml 14/14"), "{}", text(&one.stdout));
    let bad = dartemu_in(&d, &[], &["run", "catalogue:nope.toml"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(text(&bad.stderr).trim_end(), "dartemu: catalogue:nope.toml:0: no such file in the embedded catalogue");
    // ./scenarios overrides it.
    std::fs::create_dir(d.join("scenarios")).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join(WATCH), d.join("scenarios/w.toml")).unwrap();
    let out = dartemu_in(&d, &[], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("scenarios/w.toml") && text(&out.stdout).contains("\n1 passed, 0 failed\n"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn progress_is_drawn_only_when_forced_or_on_a_terminal() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let never = dartemu_in(dir, &[("DARTEMU_PROGRESS", "never")], &["run", WATCH]);
    let auto = dartemu_in(dir, &[("DARTEMU_PROGRESS", "auto")], &["run", WATCH]);
    for out in [&never, &auto] {
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(text(&out.stderr), "", "piped stderr gets nothing");
    }
    let always = dartemu_in(dir, &[("DARTEMU_PROGRESS", "always")], &["run", WATCH]);
    assert_eq!(always.status.code(), Some(0));
    let err = text(&always.stderr);
    assert!(err.contains("1/1 scenarios") && err.contains("done") && err.contains('\x1b'), "{err:?}");
    assert_eq!(text(&always.stdout), text(&never.stdout), "progress never touches standard output");
    let bad = dartemu_in(dir, &[("DARTEMU_PROGRESS", "sometimes")], &["run", WATCH]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(text(&bad.stderr).trim_end(), "dartemu: DARTEMU_PROGRESS=\"sometimes\": expected auto, always or never");
}

#[test]
fn the_table_says_what_pass_means_and_help_lists_workloads_and_exit_statuses() {
    let out = dartemu(&["run", WATCH]);
    assert!(text(&out.stdout)
        .contains("(pass: every step's expected outcome held — for an attack, it was refused as expected)"));
    let help = dartemu(&["bench", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let h = text(&help.stdout);
    for w in [
        "translate-hot",
        "translate-churn",
        "dma4k",
        "raw4k",
        "mapunmap",
        "dma4k-vm-memory",
        "Exit status:",
        "DARTEMU_PROGRESS",
    ] {
        assert!(h.contains(w), "{w} missing: {h}");
    }
    let top = text(&dartemu(&["--help"]).stdout);
    assert!(top.contains("Exit status:") && top.contains("  2  unreadable input"), "{top}");
}
