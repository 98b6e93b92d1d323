//! `dartemu`: run DART compromise scenarios (SPEC §7).

use clap::{Parser, Subcommand};
use coprocessor_sim::cli::{catalogue_dir, collect, print_table, run_files};
use coprocessor_sim::runner::Base;
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
        /// main job's default SoC instead of SPEC §6's `dart0`/`dev0`.
        #[arg(long)]
        default_soc: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (paths, json, base) = match cli.command {
        None => (vec![catalogue_dir()], false, Base::DefaultSoc),
        Some(Command::Stress { seconds, threads, seed }) => {
            return coprocessor_sim::stress::main(&coprocessor_sim::stress::StressConfig { seconds, threads, seed })
        }
        Some(Command::Run { paths, json, default_soc }) => {
            (paths, json, if default_soc { Base::DefaultSoc } else { Base::Spec })
        }
    };
    let results = match collect(&paths).and_then(|files| run_files(&files, base)) {
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
