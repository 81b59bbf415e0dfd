//! What the command-line tests share: running the binary, writing scenario files, and the shape of
//! a bad-input failure. Each test file uses some of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn receipt_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs a command that must exit 0.
pub fn receipt_sim_ok(args: &[&str]) -> Output {
    let output = receipt_sim(args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{args:?}: {}",
        stderr(&output)
    );
    output
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Exit code 2 and one error line naming every needle, no panic, and nothing on standard output.
pub fn assert_bad_input(output: &Output, needles: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {text}");
    assert!(lines[0].starts_with("error: "), "{text}");
    for needle in needles {
        assert!(lines[0].contains(needle), "`{needle}` missing from: {text}");
    }
    assert!(!text.contains("panicked"), "{text}");
    assert!(output.stdout.is_empty(), "no work done before the error");
}
