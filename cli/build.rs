//! Embeds the scenario catalogue (`../scenarios/**/*.toml`) in the binary:
//! writes `$OUT_DIR/catalogue.rs`, a sorted list of `(name, include_str!(…))`
//! that `run::CATALOGUE` includes.

use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            println!("cargo:rerun-if-changed={}", p.display());
            out.push(p);
        }
    }
}

fn main() {
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("../scenarios");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut src = String::from("/// The shipped catalogue: `(name relative to scenarios/, text)`, sorted by name.\npub static CATALOGUE: &[(&str, &str)] = &[\n");
    for f in &files {
        let name = f.strip_prefix(&root).expect("under the root").to_string_lossy().replace('\\', "/");
        let abs = std::fs::canonicalize(f).expect("listed file");
        src.push_str(&format!("    ({name:?}, include_str!({:?})),\n", abs.display().to_string()));
    }
    src.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("set by cargo")).join("catalogue.rs");
    std::fs::write(out, src).expect("OUT_DIR is writable");
}
