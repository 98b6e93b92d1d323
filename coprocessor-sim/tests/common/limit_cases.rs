//! The scenario texts just above (and at) every docs/design.md §4 input limit, shared
//! by `coprocessor-sim/tests/input_limits.rs` (the parser) and
//! `cli/tests/input_limits.rs` (the `dartemu` binary's exit status).

use coprocessor_sim::scenario::{
    Limit, MAX_ALLOC_FRAMES, MAX_COPROCESSORS, MAX_DARTS, MAX_FRAMES, MAX_IOTLB_ENTRIES, MAX_ITERATIONS,
    MAX_MEMORY_MIB, MAX_RACE_THREADS, MAX_READ_BYTES, MAX_STEPS, MAX_WORK,
};
use std::fmt::Write as _;

/// A scenario with `n` `[[dart]]` sections.
fn darts(n: usize) -> String {
    let mut s = "name = \"x\"\n".to_owned();
    for i in 0..n {
        let _ = write!(s, "[[dart]]\nname = \"d{i}\"\n");
    }
    s
}

/// A scenario with `n` coprocessors on t8110 DARTs of 256 streams.
fn coprocessors(n: usize) -> String {
    let mut s = "name = \"x\"\n".to_owned();
    for d in 0..n.div_ceil(256) {
        let _ = write!(s, "[[dart]]\nname = \"d{d}\"\nstreams = 256\n");
    }
    for i in 0..n {
        let _ = write!(s, "[[coprocessor]]\nname = \"c{i}\"\ndart = \"d{}\"\nstream = {}\n", i / 256, i % 256);
    }
    s
}

/// A race of `threads` threads of `steps` steps each, `iterations` times,
/// after `before` top-level steps.
fn race(before: usize, threads: usize, steps: usize, iterations: u64) -> String {
    let mut s = "name = \"x\"\n".to_owned();
    for _ in 0..before {
        s.push_str("[[step]]\nop = \"check\"\ninvariant = \"all\"\n");
    }
    let _ = write!(s, "[[step]]\nop = \"race\"\niterations = {iterations}\nthreads = [\n");
    for _ in 0..threads {
        s.push_str("  [");
        for _ in 0..steps {
            s.push_str(" { op = \"check\", invariant = \"all\" },");
        }
        s.push_str(" ],\n");
    }
    s.push_str("]\n");
    s
}

fn step(body: &str) -> String {
    format!("name = \"x\"\n[[step]]\n{body}\n")
}

/// (scenario text, line, reason, which, value, limit) of the value just
/// above every limit; and the text at the limit, which parses.
pub fn cases() -> Vec<(String, usize, String, String, Limit, u64, u64)> {
    let mib = MAX_MEMORY_MIB;
    // 4 KiB pages: the frame limit binds before the memory limit.
    let mib_4k = (MAX_FRAMES << 12 >> 20) + 1;
    let frames_4k = mib_4k << 20 >> 12;
    vec![
        (
            format!("name = \"x\"\n[soc]\nmemory_mib = {}\n", mib + 1),
            3,
            format!("`memory_mib` in [soc]: {} MiB of memory is above the limit of {mib}", mib + 1),
            format!("name = \"x\"\n[soc]\nmemory_mib = {mib}\n"),
            Limit::MemoryMib,
            mib + 1,
            mib,
        ),
        (
            format!("name = \"x\"\n[soc]\npage_size = 4096\nmemory_mib = {mib_4k}\n"),
            4,
            format!("[soc] memory over page_size: {frames_4k} frames of memory is above the limit of {MAX_FRAMES}"),
            format!("name = \"x\"\n[soc]\npage_size = 4096\nmemory_mib = {}\n", mib_4k - 1),
            Limit::Frames,
            frames_4k,
            MAX_FRAMES,
        ),
        (
            darts(MAX_DARTS + 1),
            2 + 2 * MAX_DARTS,
            format!("[[dart]]: {} DARTs is above the limit of {MAX_DARTS}", MAX_DARTS + 1),
            darts(MAX_DARTS),
            Limit::Darts,
            MAX_DARTS as u64 + 1,
            MAX_DARTS as u64,
        ),
        (
            coprocessors(MAX_COPROCESSORS + 1),
            2 + 3 * 2 + 4 * MAX_COPROCESSORS,
            format!("[[coprocessor]]: {} coprocessors is above the limit of {MAX_COPROCESSORS}", MAX_COPROCESSORS + 1),
            coprocessors(MAX_COPROCESSORS),
            Limit::Coprocessors,
            MAX_COPROCESSORS as u64 + 1,
            MAX_COPROCESSORS as u64,
        ),
        (
            "name = \"x\"\n[[dart]]\nname = \"d\"\nvariant = \"t8020\"\nstreams = 17\n".to_string(),
            5,
            "`streams` in dart `d`: 17 streams is above the limit of 16".to_string(),
            "name = \"x\"\n[[dart]]\nname = \"d\"\nvariant = \"t8020\"\nstreams = 16\n".to_string(),
            Limit::Streams,
            17,
            16,
        ),
        (
            "name = \"x\"\n[[dart]]\nname = \"d\"\nstreams = 257\n".to_string(),
            4,
            "`streams` in dart `d`: 257 streams is above the limit of 256".to_string(),
            "name = \"x\"\n[[dart]]\nname = \"d\"\nstreams = 256\n".to_string(),
            Limit::Streams,
            257,
            256,
        ),
        (
            format!("name = \"x\"\n[[dart]]\nname = \"d\"\niotlb_entries = {}\n", MAX_IOTLB_ENTRIES + 1),
            4,
            format!(
                "`iotlb_entries` in dart `d`: {} IOTLB entries is above the limit of {MAX_IOTLB_ENTRIES}",
                MAX_IOTLB_ENTRIES + 1
            ),
            format!("name = \"x\"\n[[dart]]\nname = \"d\"\niotlb_entries = {MAX_IOTLB_ENTRIES}\n"),
            Limit::IotlbEntries,
            MAX_IOTLB_ENTRIES + 1,
            MAX_IOTLB_ENTRIES,
        ),
        (
            step(&format!("op = \"alloc\"\nname = \"b\"\ntype = \"user-data\"\nframes = {}", MAX_ALLOC_FRAMES + 1)),
            6,
            format!(
                "`frames` in step 1 (op = \"alloc\"): {} frames in one alloc is above the limit of {MAX_ALLOC_FRAMES}",
                MAX_ALLOC_FRAMES + 1
            ),
            step(&format!("op = \"alloc\"\nname = \"b\"\ntype = \"user-data\"\nframes = {MAX_ALLOC_FRAMES}")),
            Limit::AllocFrames,
            MAX_ALLOC_FRAMES + 1,
            MAX_ALLOC_FRAMES,
        ),
        (
            step(&format!("op = \"dma-read\"\ndevice = \"dev0\"\niova = 0\nlen = {}", MAX_READ_BYTES + 1)),
            6,
            format!(
                "`len` in step 1 (op = \"dma-read\"): {} bytes in one read or hold is above the limit of {MAX_READ_BYTES}",
                MAX_READ_BYTES + 1
            ),
            step(&format!("op = \"dma-read\"\ndevice = \"dev0\"\niova = 0\nlen = {MAX_READ_BYTES}")),
            Limit::ReadBytes,
            MAX_READ_BYTES + 1,
            MAX_READ_BYTES,
        ),
        (
            step(&format!("op = \"hold\"\ndevice = \"dev0\"\niova = 0\nlen = {}", MAX_READ_BYTES + 1)),
            6,
            format!(
                "`len` in step 1 (op = \"hold\"): {} bytes in one read or hold is above the limit of {MAX_READ_BYTES}",
                MAX_READ_BYTES + 1
            ),
            step(&format!("op = \"hold\"\ndevice = \"dev0\"\niova = 0\nlen = {MAX_READ_BYTES}")),
            Limit::ReadBytes,
            MAX_READ_BYTES + 1,
            MAX_READ_BYTES,
        ),
        (
            race(0, MAX_RACE_THREADS + 1, 1, 1),
            5,
            format!(
                "`threads` in step 1 (op = \"race\"): {} threads in one race is above the limit of {MAX_RACE_THREADS}",
                MAX_RACE_THREADS + 1
            ),
            race(0, MAX_RACE_THREADS, 1, 1),
            Limit::RaceThreads,
            MAX_RACE_THREADS as u64 + 1,
            MAX_RACE_THREADS as u64,
        ),
        (
            race(0, 1, 1, MAX_ITERATIONS + 1),
            4,
            format!(
                "`iterations` in step 1 (op = \"race\"): {} race iterations is above the limit of {MAX_ITERATIONS}",
                MAX_ITERATIONS + 1
            ),
            race(0, 1, 1, MAX_ITERATIONS),
            Limit::Iterations,
            MAX_ITERATIONS + 1,
            MAX_ITERATIONS,
        ),
        (
            race(MAX_STEPS - 1, 1, 1, 1),
            2 + 3 * (MAX_STEPS - 1),
            format!("step {MAX_STEPS}: {} steps is above the limit of {MAX_STEPS}", MAX_STEPS + 1),
            race(MAX_STEPS - 2, 1, 1, 1),
            Limit::Steps,
            MAX_STEPS as u64 + 1,
            MAX_STEPS as u64,
        ),
        (
            race(1, 2, 1, MAX_WORK / 2),
            5,
            format!("step 2: {} step executions is above the limit of {MAX_WORK}", MAX_WORK + 1),
            race(0, 2, 1, MAX_WORK / 2),
            Limit::Work,
            MAX_WORK + 1,
            MAX_WORK,
        ),
    ]
}
