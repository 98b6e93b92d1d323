//! `dartemu`: run DART compromise scenarios (docs/design.md §7).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use coprocessor_sim::scenario::run::Base;
use dartemu::run::{catalogue_dir, collect, print_table, run_instrumented, Instrument};
use std::path::PathBuf;
use std::process::ExitCode;

/// An instrumented emulator of Apple's DART IOMMU.
///
/// With no command, runs the shipped scenario catalogue on the default SoC
/// and prints the verdict table.
#[derive(Parser)]
#[command(name = "dartemu", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// For the catalogue run (no command).
    #[command(flatten)]
    instrument: Instrument,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files or folders of `*.toml`.
    Run {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print results as JSON.
        #[arg(long)]
        json: bool,
        /// Scenarios without their own `[[dart]]`/`[[coprocessor]]` run on the
        /// main job's default SoC instead of docs/design.md §6's `dart0`/`dev0`.
        #[arg(long)]
        default_soc: bool,
        #[command(flatten)]
        instrument: Instrument,
    },
    /// Run the DMA throughput workloads (docs/design.md §8).
    Bench {
        /// `all`, or a comma-separated list of workloads.
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
        /// One JSON object per figure and line.
        #[arg(long)]
        json: bool,
        /// Also run the baseline (`vm-memory`) and print ratios.
        #[arg(long, value_parser = ["vm-memory"])]
        baseline: Option<String>,
        /// Write `bench.json` and a throughput plot (`throughput.svg`) here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// IOTLB entries of the measured DART (the default SoC's 256; 65536
        /// holds the whole mapped gigabyte, like the baseline's populated Iotlb).
        #[arg(long, default_value_t = dartemu_bench::DEFAULT_IOTLB_ENTRIES)]
        iotlb_entries: usize,
    },
    /// Stress the default SoC with a shadow model; exit status 1 on any violation.
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

/// `dartemu bench`: exit 0, or 2 with the reason on a bad option or a failed
/// workload. `opts.workloads` is replaced by those `workload` names.
fn bench(
    workload: &str,
    mut opts: dartemu_bench::BenchOptions,
    json: bool,
    report: Option<&std::path::Path>,
) -> ExitCode {
    use dartemu::bench as throughput;
    let run = throughput::parse_workloads(workload).and_then(|workloads| {
        opts.workloads = workloads;
        let figures = throughput::bench(&opts, json, &mut std::io::stdout().lock(), &mut std::io::stderr())?;
        if let Some(dir) = report {
            throughput::write_report(dir, &figures)?;
        }
        Ok(())
    });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dartemu bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (paths, json, base, instrument) = match cli.command {
        None => (vec![catalogue_dir()], false, Base::DefaultSoc, cli.instrument),
        Some(Command::Run { paths, json, default_soc, instrument }) => {
            (paths, json, if default_soc { Base::DefaultSoc } else { Base::Spec }, instrument)
        }
        Some(Command::Stress { seconds, threads, seed }) => {
            return dartemu::stress::main(&dartemu::stress::StressConfig { seconds, threads, seed })
        }
        Some(Command::Bench { workload, threads, seconds, rounds, json, baseline, report, iotlb_entries }) => {
            let opts = dartemu_bench::BenchOptions {
                workloads: Vec::new(),
                threads,
                seconds,
                baseline: baseline.is_some(),
                iotlb_entries,
                rounds,
            };
            return bench(&workload, opts, json, report.as_deref());
        }
    };
    let results =
        match collect(&paths).map_err(Into::into).and_then(|files| run_instrumented(&files, base, &instrument)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dartemu: {e}");
                return ExitCode::from(2);
            }
        };
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &results).map_err(std::io::Error::other).and_then(|_| {
            use std::io::Write;
            writeln!(out)
        })
    } else {
        print_table(&mut out, &results)
    };
    if let Err(e) = written {
        eprintln!("dartemu: writing results: {e}");
        return ExitCode::from(2);
    }
    if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
