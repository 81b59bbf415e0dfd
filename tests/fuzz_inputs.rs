//! Hostile input: thousands of seeded mutations of the shipped scenarios (their TOML text and
//! `--set` values of every knob) and the regression corpus of inputs that once crashed, hung or
//! blew memory (`tests/corpus/cases.txt`). Every case must end, within a bounded wall time, with
//! exit 0 or exit 2 and one located error line; never a panic, a signal or a hang.
//!
//! Most cases go through `receipt-sim scenario`, which loads and validates without running a
//! trial; a share also run a short trial (`--set horizon=1h`).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The wall time the mutation cases may take in all.
const FUZZ_WALL_TIME: Duration = Duration::from_secs(60);
/// The most cases of one run (the wall time usually ends it first on a slow machine).
const CASES_MAX: u64 = 4_000;
/// One case longer than this is a hang.
const CASE_TIME_MAX: Duration = Duration::from_secs(30);

const SCENARIOS: [&str; 8] = [
    "described",
    "built",
    "quick",
    "hunt",
    "mmc",
    "fixes/all",
    "fixes/cas_pointer",
    "fixes/honoured_wait",
];

/// Values a hostile user writes.
const VALUES: [&str; 40] = [
    "0",
    "1",
    "-1",
    "2",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "-1e308",
    "1e-8",
    "nan",
    "inf",
    "-inf",
    "0.5",
    "true",
    "\"\"",
    "\"text\"",
    "[]",
    "[1, 2]",
    "{a = 1}",
    "1ns",
    "0s",
    "1ms",
    "213504d",
    "36500d",
    "3650d",
    "99999999999d",
    "uniform(1s, 0s)",
    "uniform(0s, 213504d)",
    "exponential(1ns)",
    "mixture(0.5 * 1s, 0.5 * 2s)",
    "empirical()",
    "normal(1s, 100d)",
    "fifo",
    "bursts",
    "trace",
    "[{at = \"0s\", receipts = 18446744073709551615}]",
    "=",
];

/// A small seeded generator (xorshift64*), so every run tries the same cases.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Accepted,
    RaceFound,
    Refused,
}

/// Runs the binary with a wall-time bound; fails the test on a crash, a hang, or an exit 2
/// without one located error line.
fn run_case(args: &[String], dir: &Path) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(args)
        .current_dir(dir)
        .env("RECEIPT_SIM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > CASE_TIME_MAX {
            let _ = child.kill();
            panic!("hang: receipt-sim {args:?} ran past {CASE_TIME_MAX:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let shown: Vec<String> = args.iter().map(|a| a.chars().take(120).collect()).collect();
    match status.code() {
        Some(0) => Outcome::Accepted,
        Some(1) => Outcome::RaceFound,
        Some(2) => {
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "receipt-sim {shown:?}: {stderr}");
            let line = lines[0];
            assert!(line.starts_with("error: "), "receipt-sim {shown:?}: {line}");
            assert!(
                line.chars().count() < 700,
                "receipt-sim {shown:?}: a long line"
            );
            let located = [
                ".toml",
                "(embedded)",
                "--set",
                "--seed",
                "--",
                ".json",
                "RECEIPT_SIM",
            ]
            .iter()
            .any(|place| line.contains(place));
            assert!(located, "receipt-sim {shown:?}: not located: {line}");
            Outcome::Refused
        }
        other => panic!("crash: receipt-sim {shown:?} ended with {other:?}: {stderr}"),
    }
}

/// The dotted paths of every knob, from the resolved described profile.
fn knob_paths() -> Vec<String> {
    let output = common::receipt_sim(&["scenario", "described"]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    let mut header = String::new();
    let mut paths = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            header = format!("{name}.");
        } else if let Some((key, _)) = line.split_once(" = ")
            && !line.starts_with('#')
            && key != "model"
        {
            paths.push(format!("{header}{key}"));
        }
    }
    assert!(paths.len() > 80, "every knob is printed: {}", paths.len());
    paths.extend(
        [
            "mmc.servers",
            "mmc.arrival_rate",
            "mmc.service_rate",
            "mmc.customers",
        ]
        .map(String::from),
    );
    paths.extend(
        [
            "mmc.replications",
            "mmc.warmup_fraction",
            "extends",
            "model",
        ]
        .map(String::from),
    );
    paths
}

/// A mutation of a shipped scenario's text: a byte changed, a line doubled or dropped, a number
/// replaced by a hostile value.
fn mutate_text(generator: &mut Generator, text: &str) -> Vec<u8> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..1 + generator.below(3) {
        let index = generator.below(lines.len().max(1));
        match generator.below(5) {
            0 => {
                let copy = lines[index].clone();
                lines.insert(index, copy);
            }
            1 => {
                lines.remove(index);
            }
            2 => {
                if let Some((key, _)) = lines[index].clone().split_once('=') {
                    lines[index] = format!("{key}= {}", VALUES[generator.below(VALUES.len())]);
                }
            }
            3 => lines.insert(index, format!("bogus_{} = 1", generator.below(9))),
            _ => {
                let line = &mut lines[index];
                if !line.is_empty() {
                    let at = generator.below(line.len());
                    if line.is_char_boundary(at) {
                        line.insert(at, ['[', ']', '"', '=', '.', '\u{1}'][generator.below(6)]);
                    }
                }
            }
        }
        if lines.is_empty() {
            lines.push(String::new());
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    if generator.below(20) == 0 {
        bytes.push(0xff);
    }
    bytes
}

#[test]
fn mutations_of_the_shipped_scenarios_end_in_exit_0_or_a_located_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let paths = knob_paths();
    let shipped: Vec<(String, String)> = ["quick", "hunt", "built", "mmc", "fixes/all"]
        .iter()
        .map(|name| {
            let output = common::receipt_sim(&["scenario", name]);
            (name.to_string(), String::from_utf8(output.stdout).unwrap())
        })
        .collect();
    let mut generator = Generator(0x5eed_f022_1234_5678);
    let mut counts: BTreeMap<(&str, Outcome), u64> = BTreeMap::new();
    let started = Instant::now();
    let mut cases = 0;
    while cases < CASES_MAX && started.elapsed() < FUZZ_WALL_TIME {
        cases += 1;
        let mut args: Vec<String> = Vec::new();
        let kind = match generator.below(10) {
            0 => {
                let (_, text) = &shipped[generator.below(shipped.len())];
                let file = dir.path().join(format!("mutant-{cases}.toml"));
                std::fs::write(&file, mutate_text(&mut generator, text)).unwrap();
                args.extend(["scenario".to_string(), file.display().to_string()]);
                "text"
            }
            1 => {
                args.extend(
                    [
                        "run",
                        SCENARIOS[generator.below(3) + 1],
                        "--set",
                        "horizon=1h",
                    ]
                    .map(String::from),
                );
                "run"
            }
            _ => {
                args.extend(
                    ["scenario", SCENARIOS[generator.below(SCENARIOS.len())]].map(String::from),
                );
                "set"
            }
        };
        if kind != "text" {
            for _ in 0..1 + generator.below(3) {
                let path = &paths[generator.below(paths.len())];
                let value = match generator.below(12) {
                    0 => "x".repeat(100_000),
                    1 => format!("{}", generator.next()),
                    2 => format!("{}ms", generator.next() % 100_000),
                    _ => VALUES[generator.below(VALUES.len())].to_string(),
                };
                args.extend(["--set".to_string(), format!("{path}={value}")]);
            }
        }
        let outcome = run_case(&args, dir.path());
        *counts.entry((kind, outcome)).or_default() += 1;
    }
    println!(
        "{cases} cases in {:.1} s: {counts:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(cases >= 500, "too few cases ran in the wall time: {cases}");
    let refused: u64 = counts
        .iter()
        .filter(|((_, outcome), _)| *outcome == Outcome::Refused)
        .map(|(_, count)| count)
        .sum();
    assert!(
        refused > cases / 4,
        "most mutations are refused: {counts:?}"
    );
}

#[test]
fn every_case_of_the_corpus_ends_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/cases.txt"
    ))
    .unwrap();
    let dir_text = dir.path().display().to_string();
    let mut cases = 0;
    for line in corpus
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let mut fields = line.split('\t');
        let expected: i32 = fields.next().unwrap().parse().expect("an exit code");
        let args: Vec<String> = fields
            .map(|field| field.replace("{dir}", &dir_text))
            .collect();
        let outcome = run_case(&args, dir.path());
        let code = match outcome {
            Outcome::Accepted => 0,
            Outcome::RaceFound => 1,
            Outcome::Refused => 2,
        };
        assert_eq!(code, expected, "receipt-sim {args:?}");
        cases += 1;
    }
    assert!(cases >= 30, "{cases}");
}

#[test]
fn hostile_files_are_refused_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            write("dup.toml", b"seed = 1\nseed = 2\n"),
            "dup.toml:2:1: duplicate key `seed`",
        ),
        (
            write("devnull.toml", b"extends = \"/dev/null\"\n"),
            "devnull.toml:1: field `extends`: /dev/null: not a regular file",
        ),
        (
            write("missing.toml", b"extends = \"nothere.toml\"\n"),
            "missing.toml:1: field `extends`",
        ),
        (
            write("nonutf8.toml", b"seed = 1\n\xff\xfe = 2\n"),
            "nonutf8.toml:2:1: not UTF-8",
        ),
        (write("self.toml", b"extends = \"self.toml\"\n"), "a cycle"),
    ];
    for (path, needle) in cases {
        let output = common::receipt_sim(&["run", &path]);
        common::assert_bad_input(&output, &[needle]);
    }
    // A valid chain of seven files over `built` (nine with `described`) is no cycle.
    write("c1.toml", b"extends = \"built\"\n");
    for i in 2..=7 {
        write(
            &format!("c{i}.toml"),
            format!("extends = \"c{}.toml\"\n", i - 1).as_bytes(),
        );
    }
    let c7 = dir.path().join("c7.toml").display().to_string();
    let output = common::receipt_sim(&["scenario", &c7]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    // A huge value is echoed cut short.
    let huge = format!("seed={}", "x".repeat(120_000));
    let output = common::receipt_sim(&["run", "quick", "--set", &huge]);
    common::assert_bad_input(&output, &["--set seed=xxx"]);
    assert!(common::stderr(&output).len() < 1000);
}

#[test]
fn a_counterexample_asking_for_a_huge_pct_depth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hunt");
    let output = common::receipt_sim(&[
        "hunt",
        "hunt",
        "--trials",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", common::stderr(&output));
    let file = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    value["choices"]["ordering"] =
        serde_json::json!({"kind": "pct", "seed": 1, "depth": 4294967295u32, "events": 100});
    let hostile = dir.path().join("pct.json");
    std::fs::write(&hostile, serde_json::to_vec(&value).unwrap()).unwrap();
    let output = common::receipt_sim(&["replay", hostile.to_str().unwrap()]);
    common::assert_bad_input(&output, &["pct.json", "choices.ordering.depth"]);
}

#[test]
fn the_resolved_scenario_prints_every_knob_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let output = common::receipt_sim(&[
        "scenario",
        "quick",
        "--set",
        "compaction.reserved_concurrency=4",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("reserved_concurrency = 4  # default: 10"),
        "{text}"
    );
    assert!(
        text.contains("[wait]\ncap = \"2m\"\npoll_period = \"2s\""),
        "{text}"
    );
    let path = common::write(dir.path(), "resolved.toml", &text);
    let again = common::receipt_sim(&["scenario", &path]);
    assert_eq!(again.status.code(), Some(0), "{}", common::stderr(&again));
    let json = common::receipt_sim(&["run", "quick", "--json", "-"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        value["scenario"]["wait"]["poll_period"], "2s",
        "defaults are shown"
    );
}

#[test]
fn a_signal_leaves_all_outputs_of_a_command_or_none_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    for delay_ms in [100, 300, 600, 900, 1200] {
        let json = dir.path().join("out.json");
        let history = dir.path().join("history.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
            .args([
                "run",
                "built",
                "--set",
                "workload.receipts=3000",
                "--set",
                "horizon=100d",
            ])
            .arg("--json")
            .arg(&json)
            .arg("--history")
            .arg(&history)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        match status.code() {
            Some(0) => assert_eq!(names.len(), 2, "{names:?}"),
            Some(143) => assert!(names.is_empty(), "{names:?}"),
            other => panic!("exit {other:?}"),
        }
        for name in names {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
}

#[test]
fn a_fifo_is_written_to_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|status| status.success()) {
        println!("skipped: mkfifo is not available");
        return;
    }
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::read(reader_path).unwrap());
    let output = common::receipt_sim(&["run", "quick", "--json", fifo.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let bytes = reader.join().unwrap();
    assert!(bytes.starts_with(b"{"), "JSON through the FIFO");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}
