//! Backends that are down, hang or answer errors: `calibrate` and `live` end with one error line and
//! exit code 3, soon (within the Chroma client's timeout and its bounded tries), with no panic and
//! no output file; a Chroma that fails after it answered the heartbeat makes every invocation's
//! working copy fail, counted, in a trial that finishes. Needs no server: the addresses refuse
//! connections, and the misbehaving Chromas are loopback listeners of the test's own.

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

/// How a fake Chroma answers a request for `path`: `None` holds the connection and never answers.
type Answer = fn(&str) -> Option<(u16, &'static str)>;

/// A loopback HTTP server answering every request as `answer` says; its URL.
fn fake_chroma(answer: Answer) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, answer));
        }
    });
    url
}

/// Reads one request (headers and its body) at a time and answers it, until the peer closes.
fn serve(stream: std::net::TcpStream, answer: Answer) {
    use std::io::{BufRead, Read, Write};
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let Some((status, text)) = answer(&path) else {
            // Hold the connection open, unanswered, for longer than any client waits.
            std::thread::sleep(Duration::from_secs(600));
            return;
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

const INTERNAL_ERROR: &str = r#"{"error":"InternalError","message":"injected"}"#;

#[test]
fn live_with_a_chroma_that_never_answers_is_exit_3_within_its_timeout() {
    let chroma = fake_chroma(|_| None);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.json");
    let args = [
        "live",
        "quick",
        "--chroma",
        &chroma,
        "--set",
        "live.chroma_timeout=500ms",
        "--json",
        out.to_str().unwrap(),
    ];
    let needle = format!("chroma at {chroma} (heartbeat): timed out (after 3 tries");
    assert_backend_failure(&args, &[], &needle, &out);
}

#[test]
fn live_with_a_chroma_answering_500_is_exit_3() {
    let chroma = fake_chroma(|_| Some((500, INTERNAL_ERROR)));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.json");
    let args = [
        "live",
        "quick",
        "--chroma",
        &chroma,
        "--json",
        out.to_str().unwrap(),
    ];
    let needle = format!("chroma at {chroma} (heartbeat): answered 500");
    assert_backend_failure(&args, &[], &needle, &out);
}

/// Chroma answers its heartbeat and then 500 to everything: no compaction can open a working
/// copy. The trial still finishes; every such failure is a failed invocation in the models'
/// terms (its messages returned to the queue, in the end dead-lettered), counted as a backend
/// error and as an answer the models would not have given, and the oracle judges the store the
/// pipeline left (the initial, empty snapshots): the ids never reached a snapshot, their messages
/// dead-lettered (class E), and it says so.
#[test]
fn live_with_a_chroma_failing_after_its_heartbeat_counts_failed_invocations() {
    let chroma = fake_chroma(|path| {
        Some(if path.ends_with("/heartbeat") {
            (200, r#"{"nanosecond heartbeat": 1}"#)
        } else {
            (500, INTERNAL_ERROR)
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.json");
    let output = common::receipt_sim(&[
        "live",
        "quick",
        "--chroma",
        &chroma,
        "--json",
        out.to_str().unwrap(),
    ]);
    let text = common::stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let live = &result["live"];
    let errors = live["backend_errors"].as_u64().unwrap();
    assert!(errors > 0, "{live}");
    assert!(
        live["first_backend_error"]
            .as_str()
            .unwrap()
            .contains("answered 500"),
        "{live}"
    );
    assert!(live["divergences"]["count"].as_u64().unwrap() > 0, "{live}");
    assert!(
        result["counters"]["messages_failed"].as_u64().unwrap() > 0,
        "{}",
        result["counters"]
    );
    assert_ne!(result["stop"], "event_limit");
    let dead_lettered = &result["dead_lettered"];
    let lost = dead_lettered["lines"].as_u64().unwrap() + dead_lettered["words"].as_u64().unwrap();
    assert!(lost > 0, "{dead_lettered}");
    assert!(result["anomalies"]["by_class"]["E"].as_u64().unwrap() > 0);
    for collection in ["lines", "words"] {
        assert_eq!(live["snapshots"][collection]["entries"], 0, "{live}");
    }
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        printed.contains(&format!("{errors} backend errors")),
        "{printed}"
    );
}
