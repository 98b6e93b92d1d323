//! `dartemu`: run DART compromise scenarios (docs/design.md §7).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use coprocessor_sim::scenario::run::Base;
use dartemu::progress::Mode;
use dartemu::report::{BENCH_REPORT_FILES, RUN_REPORT_FILES};
use dartemu::run::{catalogue, collect, load_all, print_table, run_instrumented, Collected, Outputs};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `--help` says after the options: exit statuses, `-`, the progress switch.
const AFTER_HELP: &str = "\
Output options (--events, --trace, --report, --event-capacity, --json) mean the same
before or after the command. `-` is standard output for --events, --trace and --json
(at most one of them; the verdict table then goes to standard error); --report takes
a folder. The catalogue is embedded in the binary; a ./scenarios folder overrides it.

Progress goes to standard error when it is a terminal; DARTEMU_PROGRESS=always|never
forces it on or off (auto by default).

Exit status:
  0  every expectation held (stress: no violation)
  1  an expectation did not hold (the failing steps are listed with file:line);
     stress: a violation
  2  unreadable input (every bad file as `file:line: reason` on standard error, the
     others still run), no scenario found, an unwritable output, or a bad option";

/// An instrumented emulator of Apple's DART IOMMU.
///
/// With no command, runs the scenario catalogue on the default SoC and
/// prints the verdict table.
#[derive(Parser)]
#[command(name = "dartemu", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    outputs: Outputs,
}

/// The `--workload` names, for `--help`.
const WORKLOADS_HELP: &str =
    "Workloads (docs/design.md §8): translate, translate-hot, translate-churn, dma4k, raw4k, mapunmap,\n\
dma4k-vm-memory (dma4k through vm-memory's IommuMemory over dartemu's DART), or all.";

#[derive(Subcommand)]
enum Command {
    /// Run scenario files or folders of `*.toml` (`catalogue:` is the
    /// embedded catalogue, `catalogue:NAME.toml` one of its files).
    #[command(after_help = AFTER_HELP)]
    Run {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Scenarios without their own `[[dart]]`/`[[coprocessor]]` run on the
        /// main job's default SoC instead of docs/design.md §6's `dart0`/`dev0`.
        #[arg(long)]
        default_soc: bool,
    },
    /// Run the DMA throughput workloads (docs/design.md §8).
    #[command(after_help = format!("{WORKLOADS_HELP}\n\n{AFTER_HELP}"))]
    Bench {
        /// `all`, or a comma-separated list of workloads (listed below).
        #[arg(long, default_value = "all")]
        workload: String,
        /// Worker threads; a comma-separated list runs each count.
        #[arg(long, default_value = "1", value_delimiter = ',')]
        threads: Vec<usize>,
        /// Seconds per measurement (each figure is measured once per round).
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Rounds (1 to 1000): the whole plan runs N times over, forward in
        /// odd-numbered rounds and backward in even ones, so each baseline
        /// figure stays next to its dartemu figure; each figure
        /// is its median round by ns/op, with the min–max ns/op, and every
        /// ratio (`vs_baseline`, `vs_raw4k`, `vs_translate`, `vs_one_thread`)
        /// the median of the per-round ratios.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Also run the baseline (`vm-memory`) and print ratios.
        #[arg(long, value_parser = ["vm-memory"])]
        baseline: Option<String>,
        /// IOTLB entries of the measured DART (the default SoC's 256; 65536
        /// holds the whole mapped gigabyte, like the baseline's populated Iotlb).
        #[arg(long, default_value_t = dartemu_bench::DEFAULT_IOTLB_ENTRIES)]
        iotlb_entries: usize,
    },
    /// Stress the default SoC with a shadow model; exit status 1 on any violation.
    #[command(after_help = AFTER_HELP)]
    Stress {
        /// Run time in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Worker threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Seed of the workers' random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Prints `dartemu[ COMMAND]: {e}` and returns exit status 2.
fn fail(command: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{command}: {e}");
    ExitCode::from(2)
}

/// `dartemu bench`: exit 0, or 2 with the reason on a bad option, an
/// unwritable output or a failed workload.
fn bench(workload: &str, mut opts: dartemu_bench::BenchOptions, outputs: &Outputs, mode: Mode) -> ExitCode {
    use dartemu::bench as throughput;
    const NAME: &str = "dartemu bench";
    let mut outs = match outputs.reject_for("bench", &[]).and_then(|()| outputs.open(&BENCH_REPORT_FILES)) {
        Ok(o) => o,
        Err(e) => return fail(NAME, e),
    };
    let run = throughput::parse_workloads(workload).and_then(|workloads| {
        opts.workloads = workloads;
        let json = outs.json.as_mut().map(|s| s as &mut dyn Write);
        let figures = if outputs.uses_stdout() {
            throughput::bench(&opts, json, &mut std::io::stderr(), mode)?
        } else {
            throughput::bench(&opts, json, &mut std::io::stdout(), mode)?
        };
        if let Some(dir) = &outs.report {
            throughput::write_report(dir, &figures)?;
        }
        Ok(())
    });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(NAME, e),
    }
}

/// `dartemu` and `dartemu run`: 0 when every expectation held, 1 when one
/// did not, 2 when a file could not be read (the others still run), no
/// scenario was found, or an output could not be written.
fn run(found: Collected, base: Base, outputs: &Outputs, mode: Mode) -> ExitCode {
    const NAME: &str = "dartemu";
    // Every output is checked and created before anything runs.
    let mut outs = match outputs.open(&RUN_REPORT_FILES) {
        Ok(o) => o,
        Err(e) => return fail(NAME, e),
    };
    let (scenarios, load_errors) = load_all(&found.sources);
    let errors: Vec<_> = found.errors.into_iter().chain(load_errors).collect();
    for e in &errors {
        eprintln!("{NAME}: {e}");
    }
    if found.sources.is_empty() && errors.is_empty() {
        return fail(NAME, "no scenario to run");
    }
    let bar = mode.bar(scenarios.len() as u64, "[{elapsed_precise}] {bar:30} {pos}/{len} scenarios  {wide_msg}");
    let results = match run_instrumented(&scenarios, base, &mut outs, &bar) {
        Ok(r) => r,
        Err(e) => {
            bar.abandon();
            return fail(NAME, e);
        }
    };
    bar.finish_with_message("done");
    if !scenarios.is_empty() {
        let mut table: Box<dyn Write> =
            if outputs.uses_stdout() { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout().lock()) };
        let mut written = print_table(&mut *table, &results, errors.len()).and_then(|()| table.flush());
        if let (Ok(()), Some(sink)) = (&written, outs.json.as_mut()) {
            written = sink
                .write_with(|out| {
                    serde_json::to_writer_pretty(&mut *out, &results).map_err(std::io::Error::other)?;
                    writeln!(out)
                })
                .map_err(std::io::Error::other);
        }
        if let Err(e) = written {
            return fail(NAME, format_args!("writing results: {e}"));
        }
    }
    if !errors.is_empty() {
        ExitCode::from(2)
    } else if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mode = match Mode::from_env() {
        Ok(m) => m,
        Err(e) => return fail("dartemu", e),
    };
    match cli.command {
        None => run(catalogue(), Base::DefaultSoc, &cli.outputs, mode),
        Some(Command::Run { paths, default_soc }) => {
            run(collect(&paths), if default_soc { Base::DefaultSoc } else { Base::Spec }, &cli.outputs, mode)
        }
        Some(Command::Stress { seconds, threads, seed }) => {
            if let Err(e) = cli.outputs.reject_for("stress", &["--report", "--json"]) {
                return fail("dartemu stress", e);
            }
            dartemu::stress::main(&dartemu::stress::StressConfig { seconds, threads, seed }, mode)
        }
        Some(Command::Bench { workload, threads, seconds, rounds, baseline, iotlb_entries }) => {
            let opts = dartemu_bench::BenchOptions {
                workloads: Vec::new(),
                threads,
                seconds,
                baseline: baseline.is_some(),
                iotlb_entries,
                rounds,
            };
            bench(&workload, opts, &cli.outputs, mode)
        }
    }
}
