//! Sweeps, shards and merges, fan-out through GNU parallel, capacity plans, the regression gate,
//! and the HTML report opened in headless Chromium.

mod common;

use common::{receipt_sim, stderr, write};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const SMALL_SWEEP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/sweeps/small.toml");

fn run_ok(args: &[&str]) -> std::process::Output {
    common::receipt_sim_ok(args)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Whether a tool is on PATH; without it a test skips, unless live runs are required.
fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("RECEIPT_SIM_REQUIRE_LIVE").as_deref() != Ok("1"),
            "{name} is missing and RECEIPT_SIM_REQUIRE_LIVE=1: install it (.ci/tools.sh)"
        );
        eprintln!("skipped: {name} is not installed");
    }
    found
}

#[test]
fn sharded_sweep_merges_into_the_unsharded_result_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.json");
    run_ok(&["sweep", SMALL_SWEEP, "--json", whole.to_str().unwrap()]);
    let mut shards = Vec::new();
    for index in 0..3 {
        let path = dir.path().join(format!("shard-{index}.json"));
        let shard = format!("{index}/3");
        run_ok(&[
            "sweep",
            SMALL_SWEEP,
            "--shard",
            &shard,
            "--json",
            path.to_str().unwrap(),
        ]);
        let part = read_json(&path);
        assert_eq!(part["complete"], true);
        assert_eq!(part["shard"]["count"], 3);
        shards.push(path.to_str().unwrap().to_string());
    }
    // Shard 0 of 3 holds cases 0, 3 and 6 of the 8.
    let first = read_json(Path::new(&shards[0]));
    let indexes: Vec<u64> = first["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 3, 6]);
    let merged = dir.path().join("merged.json");
    let mut args = vec!["merge"];
    args.extend(shards.iter().rev().map(String::as_str));
    args.extend(["--json", merged.to_str().unwrap()]);
    run_ok(&args);
    let (a, b) = (
        std::fs::read(&whole).unwrap(),
        std::fs::read(&merged).unwrap(),
    );
    assert!(a == b, "the merged shards differ from the unsharded sweep");
    let value = read_json(&whole);
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["command"], "sweep");
    assert_eq!(value["cases"].as_array().unwrap().len(), 8);
    // The totals come from merged histograms: their counts add up over the cases.
    let counted: u64 = value["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["flow"] == "new")
        .map(|c| c["labels_saved_ms"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        value["totals"]["new"]["labels_saved_ms"]["count"]
            .as_u64()
            .unwrap(),
        counted
    );
    // A missing shard is refused with one line, naming the case.
    let incomplete = receipt_sim(&["merge", &shards[0], &shards[1], "--json", "-"]);
    common::assert_bad_input(&incomplete, &["case", "missing"]);
}

#[test]
fn batch_array_indexes_choose_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag.json");
    let env = dir.path().join("env.json");
    run_ok(&[
        "sweep",
        SMALL_SWEEP,
        "--shard",
        "1/2",
        "--json",
        flag.to_str().unwrap(),
    ]);
    let output = Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(["sweep", SMALL_SWEEP, "--json", env.to_str().unwrap()])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read(&flag).unwrap(), std::fs::read(&env).unwrap());
}

#[test]
fn gnu_parallel_fan_out_gives_the_same_merged_result() {
    if !tool("parallel") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_receipt-sim");
    let whole = dir.path().join("whole.json");
    run_ok(&["sweep", SMALL_SWEEP, "--json", whole.to_str().unwrap()]);
    let status = Command::new("parallel")
        .current_dir(dir.path())
        .args(["--will-cite", "--halt", "now,fail=1", "-j", "2"])
        .arg(format!(
            "{bin} sweep {SMALL_SWEEP} --shard {{}}/4 --json shard-{{}}.json"
        ))
        .args([":::", "0", "1", "2", "3"])
        .output()
        .unwrap();
    assert!(status.status.success(), "parallel: {}", stderr(&status));
    let shards: Vec<String> = (0..4).map(|i| format!("shard-{i}.json")).collect();
    let mut args = vec!["merge"];
    args.extend(shards.iter().map(String::as_str));
    args.extend(["--json", "merged.json"]);
    let output = Command::new(bin)
        .current_dir(dir.path())
        .args(&args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        std::fs::read(&whole).unwrap() == std::fs::read(dir.path().join("merged.json")).unwrap()
    );
}

#[test]
fn plan_picks_the_cheapest_configuration_known_to_meet_the_objective() {
    // Measured on one replication: labels saved p99 is 1376 s with one upload worker, 461 s with
    // two and 160 s with eight at 60 receipts an hour; at 600 an hour 2296 s, 1369 s and 1012 s.
    // Each record's message is deleted once handled, as when these were measured: deleted only
    // when the function returns, a batch of ten that outlives the 600 s timeout comes back whole
    // and no concurrency in the grid meets the objective at 600 an hour.
    let dir = tempfile::tempdir().unwrap();
    let sweep = write(
        dir.path(),
        "plan.toml",
        "scenario = \"quick\"\nreplications = 1\nset = [\"flow=new\", \"workload.receipts=30\", \"upload.batch_deletion=per_record\"]\n\
         [grid]\n\"workload.rate_per_hour\" = [60, 600]\n\"upload.concurrency\" = [1, 2, 8]\n\
         [plan]\nload = \"workload.rate_per_hour\"\ncost = { \"upload.concurrency\" = 1.0 }\nbisection_steps = 3\n",
    );
    let out = dir.path().join("plan.json");
    let output = run_ok(&[
        "plan",
        &sweep,
        "--slo",
        "labels_saved.p99 < 1100s",
        "--json",
        out.to_str().unwrap(),
    ]);
    let value = read_json(&out);
    assert_eq!(value["command"], "plan");
    let loads = value["loads"].as_array().unwrap();
    assert_eq!(loads[0]["load"], 60.0);
    assert_eq!(loads[0]["cheapest"], "upload.concurrency=2");
    assert_eq!(loads[1]["cheapest"], "upload.concurrency=8");
    let configs = value["configurations"].as_array().unwrap();
    let two = configs
        .iter()
        .find(|c| c["name"] == "upload.concurrency=2")
        .unwrap();
    // Between 60 and 600 an hour, bisected: three more loads, the bracket inside the grid's.
    let up_to = two["meets_up_to"].as_f64().unwrap();
    let from = two["fails_from"].as_f64().unwrap();
    assert!(
        (60.0..600.0).contains(&up_to) && up_to < from && from <= 600.0,
        "{two}"
    );
    assert_eq!(
        two["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["bisected"] == true)
            .count(),
        3
    );
    let one = configs
        .iter()
        .find(|c| c["name"] == "upload.concurrency=1")
        .unwrap();
    assert!(one["meets_up_to"].is_null());
    assert!(String::from_utf8_lossy(&output.stdout).contains("upload.concurrency=2"));
    let bad = receipt_sim(&["plan", &sweep, "--slo", "labels_visible.p42 < 1s"]);
    common::assert_bad_input(&bad, &["--slo", "p42"]);
}

#[test]
fn regress_passes_on_an_unchanged_tree_and_fails_on_a_changed_default() {
    let baseline = concat!(env!("CARGO_MANIFEST_DIR"), "/reports/baseline.json");
    let same = receipt_sim(&["regress", "--baseline", baseline]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&same.stdout),
        stderr(&same)
    );
    let changed = receipt_sim(&[
        "regress",
        "--baseline",
        baseline,
        "--set",
        "upload.concurrency=3",
    ]);
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
    let printed = String::from_utf8_lossy(&changed.stdout);
    assert!(printed.contains("fingerprint"), "{printed}");
    assert!(stderr(&changed).contains("--bless"));
    // Blessing a copy accepts the change; the copy then passes with it.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("baseline.json");
    std::fs::copy(baseline, &copy).unwrap();
    let copy = copy.to_str().unwrap();
    run_ok(&[
        "regress",
        "--baseline",
        copy,
        "--set",
        "upload.concurrency=3",
        "--bless",
    ]);
    run_ok(&[
        "regress",
        "--baseline",
        copy,
        "--set",
        "upload.concurrency=3",
    ]);
}

#[test]
fn report_opens_in_headless_chromium_with_every_image_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("compare.json");
    run_ok(&["compare", "quick", "--json", results.to_str().unwrap()]);
    let out = dir.path().join("report");
    run_ok(&[
        "report",
        results.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    for name in [
        "latency_cdf",
        "stages",
        "queue_depth",
        "queue_oldest_age_s",
        "utilisation",
    ] {
        for ext in ["svg", "png"] {
            let bytes = std::fs::read(out.join(format!("{name}.{ext}"))).unwrap();
            assert!(bytes.len() > 1000, "{name}.{ext} is {} bytes", bytes.len());
        }
    }
    let png = std::fs::read(out.join("stages.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    if !tool("chromium") {
        return;
    }
    // A script appended to the page writes how many images decoded with a width.
    let page = out.join("index.html");
    let mut html = std::fs::read_to_string(&page).unwrap();
    html = html.replace(
        "</body>",
        "<script>window.addEventListener('load',()=>{const i=[...document.images];\
         document.title='loaded '+i.filter(x=>x.complete&&x.naturalWidth>0).length+' of '+i.length;});</script></body>",
    );
    let probe = out.join("probe.html");
    std::fs::write(&probe, html).unwrap();
    let chromium = |args: &[String]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=5000",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let dom = chromium(&[
        "--dump-dom".to_string(),
        format!("file://{}", probe.display()),
    ]);
    let text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        text.contains("<title>loaded 5 of 5</title>"),
        "chromium: {}",
        stderr(&dom)
    );
    let shot = out.join("screenshot.png");
    chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,2000".to_string(),
        format!("file://{}", page.display()),
    ]);
    let bytes = std::fs::read(&shot).expect("chromium wrote a screenshot");
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
        "screenshot of {} bytes",
        bytes.len()
    );
}

#[test]
fn sharded_verdict_merges_into_the_unsharded_verdict_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.json");
    run_ok(&[
        "verdict",
        "--trials",
        "1",
        "--json",
        whole.to_str().unwrap(),
    ]);
    let mut args = vec!["merge".to_string()];
    for index in 0..2 {
        let path = dir.path().join(format!("verdict-{index}.json"));
        let shard = format!("{index}/2");
        run_ok(&[
            "verdict",
            "--trials",
            "1",
            "--shard",
            &shard,
            "--json",
            path.to_str().unwrap(),
        ]);
        args.push(path.to_str().unwrap().to_string());
    }
    let merged = dir.path().join("merged.json");
    args.extend(["--json".to_string(), merged.to_str().unwrap().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&args);
    assert!(std::fs::read(&whole).unwrap() == std::fs::read(&merged).unwrap());
    // Ten configurations (two profiles, eight fixes) at two loads in two flows.
    assert_eq!(read_json(&whole)["rows"].as_array().unwrap().len(), 40);
}

/// The counterexample files of a folder, by name.
fn folder(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn sharded_hunt_merges_into_the_unsharded_hunt_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (whole_dir, shards_dir) = (dir.path().join("whole"), dir.path().join("shards"));
    std::fs::create_dir_all(&whole_dir).unwrap();
    std::fs::create_dir_all(&shards_dir).unwrap();
    let bin = env!("CARGO_BIN_EXE_receipt-sim");
    let hunt = ["hunt", "hunt", "--trials", "300"];
    // Found races exit 1; the counterexamples go to `ce` beside each result.
    let whole = Command::new(bin)
        .args(hunt)
        .args(["--out", "ce", "--json", "hunt.json"])
        .current_dir(&whole_dir)
        .output()
        .unwrap();
    assert_eq!(whole.status.code(), Some(1), "{}", stderr(&whole));
    let mut files = Vec::new();
    for index in 0..3 {
        let name = format!("shard-{index}.json");
        let mut command = Command::new(bin);
        command
            .args(hunt)
            .args(["--out", &format!("ce-{index}"), "--json", &name])
            .current_dir(&shards_dir);
        // Shard 2 comes from AWS Batch's array index, the others from the flag.
        if index == 2 {
            command
                .env("AWS_BATCH_JOB_ARRAY_INDEX", "2")
                .env("AWS_BATCH_JOB_ARRAY_SIZE", "3");
        } else {
            command.args(["--shard", &format!("{index}/3")]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.code().is_some_and(|c| c <= 1),
            "{}",
            stderr(&output)
        );
        let part = read_json(&shards_dir.join(&name));
        assert_eq!(part["shard"]["index"], index);
        assert_eq!(part["complete"], true);
        assert_eq!(part["trials"], 100);
        files.push(name);
    }
    files.reverse();
    let merged = Command::new(bin)
        .arg("merge")
        .args(&files)
        .args(["--out", "ce", "--json", "hunt.json"])
        .current_dir(&shards_dir)
        .output()
        .unwrap();
    assert_eq!(merged.status.code(), Some(1), "{}", stderr(&merged));
    let (a, b) = (
        std::fs::read(whole_dir.join("hunt.json")).unwrap(),
        std::fs::read(shards_dir.join("hunt.json")).unwrap(),
    );
    assert!(a == b, "the merged hunt differs from the unsharded one");
    let value = read_json(&whole_dir.join("hunt.json"));
    assert_eq!(value["trials"], 300);
    assert!(!value["counterexamples"].as_array().unwrap().is_empty());
    assert_eq!(
        folder(&whole_dir.join("ce")),
        folder(&shards_dir.join("ce")),
        "the same counterexample files"
    );
    // A missing shard is refused with one line.
    let incomplete = Command::new(bin)
        .args(["merge", &files[0], &files[1], "--out", "ce2", "--json", "-"])
        .current_dir(&shards_dir)
        .output()
        .unwrap();
    common::assert_bad_input(&incomplete, &["shard", "missing"]);
}

/// Starts a command, waits for its JSON export to land with `key` above zero, kills it with
/// SIGTERM and returns the export as it was left.
fn killed_after_the_first_case(args: &[&str], json: &Path, key: &str) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(args)
        .arg("--json")
        .arg(json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let landed = std::fs::read_to_string(json)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
        let done = |value: Value| {
            let count = value[key].as_u64();
            count
                .or(value[key].as_array().map(|a| a.len() as u64))
                .unwrap_or(0)
        };
        if landed.is_some_and(|value| done(value) > 0) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{args:?}: no case landed in two minutes"
        );
        assert!(child.try_wait().unwrap().is_none(), "{args:?}: ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{args:?}: killed by SIGTERM");
    let names: Vec<String> = std::fs::read_dir(json.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{args:?}: no temporary left: {names:?}");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn a_killed_command_leaves_complete_partial_results() {
    // The shipped sweep with ten times the replications and receipts: long enough (minutes) that
    // the kill always lands after the first case and before the last, however fast a build is.
    let sweeps = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/sweeps/built.toml"
    ))
    .unwrap();
    let long = shipped
        .replace("replications = 2", "replications = 20")
        .replace("workload.receipts=40", "workload.receipts=400");
    assert_ne!(
        long, shipped,
        "the shipped sweep's replications and receipts moved"
    );
    let built = sweeps.path().join("long.toml");
    std::fs::write(&built, long).unwrap();
    let built = built.to_str().unwrap().to_string();
    let cases: [(&[&str], &str); 4] = [
        (&["sweep", &built], "cases_done"),
        (
            &["plan", &built, "--slo", "labels_visible.p99 < 120s"],
            "cases_done",
        ),
        (&["verdict", "--trials", "40"], "rows"),
        (&["hunt", "hunt", "--trials", "1000000", "--out"], "trials"),
    ];
    let out = tempfile::tempdir().unwrap();
    for (args, key) in cases {
        let mut args = args.to_vec();
        if args[0] == "hunt" {
            args.push(out.path().to_str().unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("partial.json");
        let partial = killed_after_the_first_case(&args, &json, key);
        assert_eq!(partial["complete"], false, "{args:?}");
        assert_eq!(partial["schema_version"], 1, "{args:?}");
    }
}
