//! Backends that are down: `calibrate` ends with one error line and exit code 3, soon, with no
//! panic and no output file. Needs no server: the addresses refuse connections.

mod common;

use std::time::{Duration, Instant};

/// Exit 3, one line naming `needle`, nothing written to `out`, in well under the timeouts.
fn assert_backend_failure(
    args: &[&str],
    environment: &[(&str, &str)],
    needle: &str,
    out: &std::path::Path,
) {
    let started = Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(args)
        .envs(environment.iter().copied())
        .output()
        .expect("the binary runs");
    let elapsed = started.elapsed();
    let text = common::stderr(&output);
    assert_eq!(output.status.code(), Some(3), "stderr: {text}");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(
        text.starts_with("error: ") && text.contains(needle),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(!out.exists(), "no output written");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[test]
fn chroma_down_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("costs.toml");
    let args = [
        "calibrate",
        "--chroma",
        "http://127.0.0.1:1",
        "--store",
        "memory://",
        "--out",
        out.to_str().unwrap(),
    ];
    assert_backend_failure(
        &args,
        &[],
        "chroma at http://127.0.0.1:1 (heartbeat): unreachable",
        &out,
    );
}

#[test]
fn s3_store_down_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("costs.toml");
    let args = [
        "calibrate",
        "--chroma",
        "http://127.0.0.1:1",
        "--store",
        "s3://receipt-sim",
        "--out",
        out.to_str().unwrap(),
    ];
    let environment = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ("AWS_ACCESS_KEY_ID", "key"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    assert_backend_failure(&args, &environment, "store s3://receipt-sim", &out);
}

#[test]
fn a_bad_store_url_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("costs.toml");
    let output = common::receipt_sim(&[
        "calibrate",
        "--chroma",
        "http://127.0.0.1:1",
        "--store",
        "ftp://x",
        "--out",
        out.to_str().unwrap(),
    ]);
    common::assert_bad_input(&output, &["--store ftp://x"]);
}

#[test]
fn live_with_chroma_down_is_exit_3_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.json");
    let args = [
        "live",
        "quick",
        "--chroma",
        "http://127.0.0.1:1",
        "--json",
        out.to_str().unwrap(),
    ];
    assert_backend_failure(
        &args,
        &[],
        "chroma at http://127.0.0.1:1 (heartbeat): unreachable",
        &out,
    );
}

#[test]
fn live_with_an_unknown_store_is_bad_input() {
    let output = common::receipt_sim(&[
        "live",
        "quick",
        "--chroma",
        "http://127.0.0.1:1",
        "--store",
        "ftp://somewhere",
    ]);
    common::assert_bad_input(&output, &["--store ftp://somewhere"]);
}
