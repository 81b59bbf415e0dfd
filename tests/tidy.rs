//! Tidy checks: the dependency direction and the purity of the core crate, as tests.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_crate_has_no_io_dependencies() {
    let manifest = std::fs::read_to_string(root().join("sim/Cargo.toml")).unwrap();
    for forbidden in [
        "tokio",
        "reqwest",
        "object_store",
        "plotters",
        "indicatif",
        "clap",
    ] {
        assert!(
            !manifest
                .lines()
                .any(|line| line.trim_start().starts_with(forbidden)),
            "sim/Cargo.toml must not depend on {forbidden}"
        );
    }
}

#[test]
fn core_crate_does_no_io_reads_no_clock_and_iterates_no_hash_order() {
    let mut files = Vec::new();
    rust_files(&root().join("sim/src"), &mut files);
    assert!(files.len() > 10, "found only {} files", files.len());
    let forbidden = [
        "std::fs",
        "std::net",
        "std::thread",
        "std::time::Instant",
        "SystemTime",
        "std::env",
        "HashMap",
        "HashSet",
        "println!",
        "eprintln!",
    ];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{} uses `{word}`", file.display());
        }
    }
}

#[test]
fn every_core_module_opens_with_a_comment_on_what_it_is() {
    let mut files = Vec::new();
    rust_files(&root().join("sim/src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} does not open with a `//!` comment",
            file.display()
        );
    }
}
