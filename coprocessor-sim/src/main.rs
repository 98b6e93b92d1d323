//! The `dartemu` command line (in progress: see README).

fn main() {
    eprintln!("dartemu: the scenario runner is not built yet; run `cargo test --workspace` for the test suite");
    std::process::exit(2);
}
