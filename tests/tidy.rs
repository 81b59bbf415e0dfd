//! Tidy checks: the dependency direction and the purity of the core crate, as tests.

use std::collections::{BTreeMap, BTreeSet};
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

/// The modules of a crate each top-level module names through `crate::`, from its source files
/// (comments left out). A `use crate::{a, b::c}` names `a` and `b`.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .lines()
            .map(|line| line.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let named = edges.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group
                    .split(',')
                    .map(|part| part.trim().split("::").next().unwrap().trim())
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![&rest[..end]]
            };
            for name in names {
                if !name.is_empty() && name != "self" && name != module {
                    named.insert(name.to_string());
                }
            }
        }
    }
    edges
}

/// Checks the edges against the allowed table and the table for cycles.
fn check_module_edges(src: &str, allowed: &[(&str, &[&str])]) {
    let actual = module_edges(&root().join(src));
    let table: BTreeMap<&str, BTreeSet<&str>> = allowed
        .iter()
        .map(|(module, uses)| (*module, uses.iter().copied().collect()))
        .collect();
    for (module, uses) in &actual {
        let may = table.get(module.as_str()).cloned().unwrap_or_default();
        for used in uses {
            assert!(
                may.contains(used.as_str()),
                "{src}: `{module}` uses `{used}`, which the table of allowed edges does not let it; \
                 the edges now: {actual:?}"
            );
        }
    }
    // A depth-first search over the table: an edge back to a module on the path is a cycle.
    fn visit<'a>(
        module: &'a str,
        table: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(module) {
            return;
        }
        assert!(
            !path.contains(&module),
            "module cycle: {} -> {module}",
            path.join(" -> ")
        );
        path.push(module);
        for next in table.get(module).into_iter().flatten() {
            visit(next, table, path, done);
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in table.keys() {
        visit(module, &table, &mut Vec::new(), &mut done);
    }
}

/// The core's modules, each with what it may use; dependencies run one way (no cycle).
const CORE_EDGES: &[(&str, &[&str])] = &[
    ("time", &[]),
    ("random", &["time"]),
    ("stats", &[]),
    ("distribution", &["random", "time"]),
    ("engine", &["random", "time"]),
    ("entities", &["random"]),
    ("metrics", &["time"]),
    ("scenario", &[]),
    ("mmc", &["engine", "random", "stats", "time"]),
    ("services", &["distribution", "entities", "random", "time"]),
    ("workload", &["distribution", "entities", "random", "time"]),
    (
        "pipeline",
        &[
            "distribution",
            "engine",
            "entities",
            "metrics",
            "random",
            "services",
            "time",
            "workload",
        ],
    ),
    (
        "oracle",
        &["entities", "pipeline", "random", "services", "time"],
    ),
    (
        "explore",
        &[
            "engine", "entities", "oracle", "pipeline", "random", "time", "workload",
        ],
    ),
];

/// The files of the pipeline's configuration (`sim/src/pipeline/config/`), each with the core
/// modules it may use: the four parts and the validated configuration depend on `time`,
/// `distribution` and the configuration's own types (through `super`) only, never on another
/// pipeline module; `mod` (the TOML tree and its validation) also on `workload`, whose
/// configuration it embeds, and `random`, whose serde form of a seed it uses.
const CONFIG_EDGES: &[(&str, &[&str])] = &[
    ("mod", &["distribution", "random", "time", "workload"]),
    ("behaviour", &["time"]),
    ("deployment", &["time"]),
    ("model", &["distribution", "time"]),
    ("faults", &[]),
    ("validated", &["time"]),
];

/// The binary's modules, each with what it may use: the command line on top, the commands below
/// it, the shared pieces (loading, outputs, failures) at the bottom.
const BINARY_EDGES: &[(&str, &[&str])] = &[
    ("failure", &[]),
    ("allocator", &[]),
    ("shard", &["failure"]),
    ("histogram", &[]),
    ("markdown", &[]),
    ("output", &["failure"]),
    ("load", &["failure"]),
    ("parallel", &[]),
    ("live", &["failure", "parallel"]),
    ("pipeline_scenario", &["failure", "load"]),
    ("plots", &["failure", "histogram"]),
    (
        "report",
        &["failure", "histogram", "markdown", "output", "plots"],
    ),
    ("exporters", &["failure", "markdown", "output", "report"]),
    ("mmc_command", &["failure", "load", "output", "parallel"]),
    (
        "trial_command",
        &["failure", "load", "output", "parallel", "pipeline_scenario"],
    ),
    (
        "live_command",
        &[
            "failure",
            "live",
            "load",
            "output",
            "pipeline_scenario",
            "trial_command",
        ],
    ),
    (
        "hunt_command",
        &[
            "exporters",
            "failure",
            "load",
            "output",
            "parallel",
            "pipeline_scenario",
            "shard",
        ],
    ),
    (
        "verdict_command",
        &[
            "exporters",
            "failure",
            "load",
            "output",
            "parallel",
            "pipeline_scenario",
            "shard",
        ],
    ),
    (
        "sweep",
        &[
            "exporters",
            "failure",
            "histogram",
            "hunt_command",
            "load",
            "markdown",
            "output",
            "parallel",
            "pipeline_scenario",
            "shard",
            "verdict_command",
        ],
    ),
    (
        "plan",
        &[
            "exporters",
            "failure",
            "markdown",
            "output",
            "shard",
            "sweep",
        ],
    ),
    (
        "regress",
        &[
            "failure",
            "load",
            "output",
            "parallel",
            "pipeline_scenario",
            "sweep",
        ],
    ),
    (
        "cli",
        &[
            "exporters",
            "failure",
            "hunt_command",
            "live",
            "live_command",
            "load",
            "mmc_command",
            "output",
            "pipeline_scenario",
            "plan",
            "regress",
            "report",
            "shard",
            "sweep",
            "trial_command",
            "verdict_command",
        ],
    ),
];

#[test]
fn core_modules_depend_one_way() {
    check_module_edges("sim/src", CORE_EDGES);
}

#[test]
fn configuration_modules_depend_only_on_time_distribution_and_workload() {
    check_module_edges("sim/src/pipeline/config", CONFIG_EDGES);
    let mut files = Vec::new();
    rust_files(&root().join("sim/src/pipeline/config"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("super::super"),
            "{} reaches another pipeline module",
            file.display()
        );
    }
}

#[test]
fn binary_modules_depend_one_way() {
    check_module_edges("src", BINARY_EDGES);
}
