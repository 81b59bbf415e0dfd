//! `hunt` and `replay`: many trials over seeds and orderings of simultaneous events, shares of
//! receipts affected per anomaly class and cause with 95 % intervals, one shrunk counterexample file
//! per class and cause; and the exact re-run of such a file.
//!
//! Depends on `pipeline_scenario`, `parallel`, `output`, `shard`, `exporters` and `sim::explore`.

use crate::failure::Failure;
use crate::load::Loaded;
use crate::output::{Output, write_atomically};
use crate::pipeline_scenario;
use crate::shard::Shard;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sim::explore::{self, Choices, Explored};
use sim::oracle::{Anomaly, Cause, Class};
use sim::pipeline::{HistoryFilter, HistoryRecord, PipelineConfig, ValidatedConfig};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The version of the counterexample file format.
const COUNTEREXAMPLE_FORMAT: u32 = 1;
/// The most history records printed by `replay`.
const EXCERPT_PRINTED_MAX: usize = 60;

pub struct HuntFlags<'a> {
    pub trials: usize,
    pub time_budget: Option<std::time::Duration>,
    /// Trial `k` of `0..trials` belongs to shard `k mod N`; `merge` joins the shards.
    pub shard: Shard,
    pub out: &'a Path,
    pub export: Option<&'a Output>,
}

/// A counterexample file: everything needed to run the trial again, and what it showed.
#[derive(Clone, Serialize, Deserialize)]
pub struct CounterexampleFile {
    pub receipt_sim_counterexample: u32,
    pub class: Class,
    pub cause: Cause,
    pub description: String,
    /// The resolved scenario, as TOML.
    pub scenario: String,
    pub choices: Choices,
    pub fingerprint: String,
    pub events: u64,
    pub receipts: u64,
    pub anomaly: Value,
    pub excerpt: Value,
    pub replay: String,
}

/// The result of `hunt` (one shard or all) and of `merge` of hunt shards. Nothing in it depends
/// on the machine or the wall clock, so merged shards equal the whole hunt byte for byte.
#[derive(Serialize, Deserialize)]
pub struct HuntResult {
    pub schema_version: u32,
    pub command: String,
    pub scenario: Value,
    pub seed: u64,
    pub shard: Shard,
    /// `--trials`: the shard runs the trials of `0..trials_requested` it owns.
    pub trials_requested: u64,
    /// False while the hunt runs, or when `--time-budget` stopped it early.
    pub complete: bool,
    pub trials: u64,
    pub receipts: u64,
    pub anomalies: HuntAnomalies,
    pub counterexamples: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub struct HuntAnomalies {
    /// Trials showing each class.
    pub by_class: BTreeMap<String, u64>,
    pub receipts_affected: BTreeMap<String, u64>,
    pub kinds: Vec<KindResult>,
}

/// One anomaly class and cause found by a hunt.
#[derive(Serialize, Deserialize)]
pub struct KindResult {
    pub class: Class,
    pub cause: Cause,
    pub description: String,
    pub trials: u64,
    pub receipts_affected: u64,
    pub share: f64,
    pub share_ci95: [f64; 2],
    /// The lowest trial index showing the kind: its trial is the one shrunk.
    pub first_trial: u64,
    pub first_choices: Choices,
    pub counterexample: Option<String>,
    pub counterexample_receipts: Option<u64>,
    /// The counterexample file's content, so shards merge without their folders.
    pub counterexample_file: Option<CounterexampleFile>,
}

/// A shrunk counterexample and where it is written.
#[derive(Clone)]
struct Shrunk {
    path: PathBuf,
    file: CounterexampleFile,
}

struct KindTally {
    trials: u64,
    receipts: u64,
    first_trial: u64,
    first_choices: Choices,
    shrunk: Option<Shrunk>,
}

/// What the trials of a hunt (or of merged shards) found: a function of the set of trials, not
/// of the order they finished in.
#[derive(Default)]
struct Tally {
    trials: u64,
    receipts: u64,
    kinds: BTreeMap<(Class, Cause), KindTally>,
}

impl Tally {
    fn add(&mut self, index: u64, explored: &Explored) {
        self.trials += 1;
        self.receipts += explored.receipts;
        for (kind, receipts) in &explored.affected {
            let tally = self.kinds.entry(*kind).or_insert(KindTally {
                trials: 0,
                receipts: 0,
                first_trial: index,
                first_choices: explored.choices,
                shrunk: None,
            });
            tally.trials += 1;
            tally.receipts += receipts;
            if index < tally.first_trial {
                tally.first_trial = index;
                tally.first_choices = explored.choices;
            }
        }
    }

    /// Joins another shard's tally; each kind keeps the counterexample of its lowest trial.
    fn join(&mut self, other: Tally) {
        self.trials += other.trials;
        self.receipts += other.receipts;
        for (kind, theirs) in other.kinds {
            match self.kinds.get_mut(&kind) {
                None => {
                    self.kinds.insert(kind, theirs);
                }
                Some(mine) => {
                    mine.trials += theirs.trials;
                    mine.receipts += theirs.receipts;
                    if theirs.first_trial < mine.first_trial {
                        mine.first_trial = theirs.first_trial;
                        mine.first_choices = theirs.first_choices;
                        mine.shrunk = theirs.shrunk;
                    }
                }
            }
        }
    }
}

/// What a hunt result says about its trials, beside the tally.
struct HuntHeader {
    scenario: Value,
    seed: u64,
    shard: Shard,
    trials_requested: u64,
    complete: bool,
}

fn assemble(header: HuntHeader, tally: &Tally) -> HuntResult {
    let mut by_class: BTreeMap<String, u64> = Class::ALL
        .iter()
        .map(|c| (c.name().to_string(), 0))
        .collect();
    let mut affected_by_class = by_class.clone();
    let mut kinds = Vec::new();
    for ((class, cause), kind) in &tally.kinds {
        *by_class.entry(class.name().to_string()).or_default() += kind.trials;
        *affected_by_class
            .entry(class.name().to_string())
            .or_default() += kind.receipts;
        let path = kind.shrunk.as_ref().map(|s| s.path.display().to_string());
        kinds.push(KindResult {
            class: *class,
            cause: *cause,
            description: cause.description().to_string(),
            trials: kind.trials,
            receipts_affected: kind.receipts,
            share: kind.receipts as f64 / tally.receipts.max(1) as f64,
            share_ci95: sim::stats::wilson_ci95(kind.receipts, tally.receipts),
            first_trial: kind.first_trial,
            first_choices: kind.first_choices,
            counterexample: path,
            counterexample_receipts: kind.shrunk.as_ref().map(|s| s.file.receipts),
            counterexample_file: kind.shrunk.as_ref().map(|s| s.file.clone()),
        });
    }
    HuntResult {
        schema_version: crate::output::SCHEMA_VERSION,
        command: "hunt".to_string(),
        scenario: header.scenario,
        seed: header.seed,
        shard: header.shard,
        trials_requested: header.trials_requested,
        complete: header.complete,
        trials: tally.trials,
        receipts: tally.receipts,
        counterexamples: kinds
            .iter()
            .filter_map(|k| k.counterexample.clone())
            .collect(),
        anomalies: HuntAnomalies {
            by_class,
            receipts_affected: affected_by_class,
            kinds,
        },
    }
}

/// A result as a JSON value, keys in name order as every exporter writes them.
fn as_value(result: &HuntResult) -> Value {
    serde_json::to_value(result).unwrap_or(Value::Null)
}

/// The human summary of a hunt's tally.
fn summary(tally: &Tally) -> String {
    let mut text = String::new();
    if tally.kinds.is_empty() {
        let upper = sim::stats::wilson_ci95(0, tally.receipts)[1];
        let _ = writeln!(
            text,
            "  no anomaly in {} receipts (95% upper bound on the share: {upper:.4})",
            tally.receipts
        );
    }
    for ((class, cause), kind) in &tally.kinds {
        let ci = sim::stats::wilson_ci95(kind.receipts, tally.receipts);
        let _ = writeln!(
            text,
            "  {} {:<27} {:>6} trials  receipts {:.4} (95% CI {:.4} .. {:.4})  {}",
            class.name(),
            cause.name(),
            kind.trials,
            kind.receipts as f64 / tally.receipts.max(1) as f64,
            ci[0],
            ci[1],
            kind.shrunk
                .as_ref()
                .map_or("(did not shrink)".to_string(), |s| s
                    .path
                    .display()
                    .to_string())
        );
    }
    text
}

fn land(export: Option<&Output>, result: &HuntResult) -> Result<(), Failure> {
    match export {
        Some(export) => export.write_partial(&crate::output::json_bytes(&as_value(result))?),
        None => Ok(()),
    }
}

/// Exit status of a hunt: a race found when any kind of anomaly was.
fn found(tally: &Tally, out: &Path) -> Result<(), Failure> {
    if tally.kinds.is_empty() {
        Ok(())
    } else {
        Err(Failure::race_found(format!(
            "{} kinds of anomaly found; counterexamples in {}",
            tally.kinds.len(),
            out.display()
        )))
    }
}

pub fn hunt(loaded: &Loaded, flags: &HuntFlags<'_>) -> Result<(), Failure> {
    let scenario = pipeline_scenario::load(loaded)?;
    if scenario.receipts.is_some() {
        return Err(Failure::bad_input(
            "hunt explores generated workloads: set workload.source = \"generate\"".to_string(),
        ));
    }
    std::fs::create_dir_all(flags.out).map_err(|error| {
        Failure::bad_input(format!(
            "--out {}: cannot create: {error}",
            flags.out.display()
        ))
    })?;
    let config = &scenario.config;
    let header = |complete: bool| HuntHeader {
        scenario: crate::load::toml_to_json(&loaded.table),
        seed: config.seed,
        shard: flags.shard,
        trials_requested: flags.trials as u64,
        complete,
    };
    let owned: Vec<u64> = (0..flags.trials as u64)
        .filter(|index| flags.shard.owns(*index))
        .collect();
    let mut tally = Tally::default();
    land(flags.export, &assemble(header(false), &tally))?;
    let started = std::time::Instant::now();
    explore_owned(config, flags, &owned, &mut tally, |tally| {
        land(flags.export, &assemble(header(false), tally))
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    shrink_kinds(config, &mut tally, flags.out)?;
    let text = format!(
        "hunt: shard {}/{}: {} trials of {} receipts in {:.1} s ({:.0} trials/s on {} threads), seeds from {}\n{}",
        flags.shard.index,
        flags.shard.count,
        tally.trials,
        tally.receipts / tally.trials.max(1),
        elapsed,
        tally.trials as f64 / elapsed.max(1e-9),
        crate::parallel::threads(),
        config.seed,
        summary(&tally)
    );
    crate::output::say(matches!(flags.export, Some(Output::Stdout)), &text);
    if let Some(export) = flags.export {
        let complete = tally.trials == owned.len() as u64;
        export.write_json(&as_value(&assemble(header(complete), &tally)))?;
    }
    found(&tally, flags.out)
}

/// Explores the owned trials in parallel until done or out of time, landing partial results
/// through `land` at most once a second.
fn explore_owned(
    config: &ValidatedConfig,
    flags: &HuntFlags<'_>,
    owned: &[u64],
    tally: &mut Tally,
    mut land: impl FnMut(&Tally) -> Result<(), Failure> + Send,
) -> Result<(), Failure> {
    // PCT spreads its priority changes over the events a plain trial takes.
    let expected_events = sim::pipeline::run_trial(config, None, &Default::default())
        .report
        .events;
    let deadline = flags
        .time_budget
        .map(|budget| std::time::Instant::now() + budget);
    let mut pace = crate::output::Pace::new();
    let mut failure: Option<Failure> = None;
    crate::parallel::for_each_done_in(
        owned.len(),
        deadline,
        "trials",
        || explore::Explorer::new(config),
        |explorer, k| {
            let choices = explore::choices_for(config.seed, owned[k], expected_events);
            explorer.explore(&choices)
        },
        |k, explored| {
            tally.add(owned[k], &explored);
            if failure.is_none() && pace.due() {
                failure = land(tally).err();
            }
        },
    );
    failure.map_or(Ok(()), Err)
}

/// Shrinks each kind's first counterexample and writes it into `out`.
fn shrink_kinds(config: &ValidatedConfig, tally: &mut Tally, out: &Path) -> Result<(), Failure> {
    let kinds: Vec<((Class, Cause), Choices)> = tally
        .kinds
        .iter()
        .map(|(kind, t)| (*kind, t.first_choices))
        .collect();
    let shrunk = crate::parallel::map(kinds.len(), "shrinking", |i| {
        shrink_kind(config, &kinds[i].1, kinds[i].0, out)
    });
    for ((kind, _), shrunk) in kinds.iter().zip(shrunk) {
        let shrunk = shrunk?;
        if let Some(shrunk) = &shrunk {
            write_counterexample(shrunk)?;
        }
        tally.kinds.get_mut(kind).expect("a kind found").shrunk = shrunk;
    }
    Ok(())
}

/// `merge` of hunt shards: the trials of every shard, each kind's counterexample from its lowest
/// trial, written into `out` — exactly the result of the unsharded hunt run with `--out out`.
pub fn merge(
    parts: &[(String, Value)],
    out: &Path,
    exports: &crate::exporters::Exports,
) -> Result<(), Failure> {
    let mut tally = Tally::default();
    let mut first: Option<(String, HuntResult)> = None;
    let mut seen: Vec<u64> = Vec::new();
    for (file, value) in parts {
        let part: HuntResult = serde_json::from_value(value.clone())
            .map_err(|error| Failure::bad_input(format!("{file}: not a hunt result: {error}")))?;
        check_part(file, &part, first.as_ref())?;
        if seen.contains(&part.shard.index) {
            return Err(Failure::bad_input(format!(
                "{file}: shard {} given twice: shards overlap",
                part.shard.index
            )));
        }
        seen.push(part.shard.index);
        tally.join(tally_of(&part));
        if first.is_none() {
            first = Some((file.clone(), part));
        }
    }
    let Some((_, first)) = first else {
        return Err(Failure::bad_input("merge: name at least one shard file"));
    };
    if let Some(missing) = (0..first.shard.count).find(|index| !seen.contains(index)) {
        return Err(Failure::bad_input(format!(
            "merge: shard {missing} of {} is in no file: a shard is missing",
            first.shard.count
        )));
    }
    std::fs::create_dir_all(out).map_err(|error| {
        Failure::bad_input(format!("--out {}: cannot create: {error}", out.display()))
    })?;
    for kind in tally.kinds.values_mut() {
        if let Some(shrunk) = &mut kind.shrunk {
            shrunk.path = out.join(counterexample_name(shrunk.file.class, shrunk.file.cause));
            shrunk.file.replay = format!("receipt-sim replay {}", shrunk.path.display());
            write_counterexample(shrunk)?;
        }
    }
    let header = HuntHeader {
        scenario: first.scenario,
        seed: first.seed,
        shard: Shard::WHOLE,
        trials_requested: first.trials_requested,
        complete: true,
    };
    exports.write(&as_value(&assemble(header, &tally)))?;
    let text = format!(
        "merged {} hunt shards: {} trials\n{}",
        parts.len(),
        tally.trials,
        summary(&tally)
    );
    crate::output::say(exports.json_on_stdout(), &text);
    found(&tally, out)
}

/// A shard must be whole and of the same hunt as the first.
fn check_part(
    file: &str,
    part: &HuntResult,
    first: Option<&(String, HuntResult)>,
) -> Result<(), Failure> {
    if part.schema_version != crate::output::SCHEMA_VERSION {
        return Err(Failure::bad_input(format!(
            "{file}: schema_version {} (this build reads {})",
            part.schema_version,
            crate::output::SCHEMA_VERSION
        )));
    }
    if !part.complete {
        return Err(Failure::bad_input(format!(
            "{file}: an unfinished shard ({} trials done; stopped, or cut by --time-budget): \
             run it again without a budget",
            part.trials
        )));
    }
    let Some((first_file, first)) = first else {
        return Ok(());
    };
    let same = part.scenario == first.scenario
        && part.seed == first.seed
        && part.trials_requested == first.trials_requested
        && part.shard.count == first.shard.count;
    if !same {
        return Err(Failure::bad_input(format!(
            "{file}: a shard of another hunt than {first_file} (scenario, seed, --trials or \
             shard count differ)"
        )));
    }
    Ok(())
}

fn tally_of(part: &HuntResult) -> Tally {
    let mut tally = Tally {
        trials: part.trials,
        receipts: part.receipts,
        kinds: BTreeMap::new(),
    };
    for kind in &part.anomalies.kinds {
        let shrunk = kind.counterexample_file.as_ref().map(|file| Shrunk {
            path: PathBuf::from(kind.counterexample.clone().unwrap_or_default()),
            file: file.clone(),
        });
        tally.kinds.insert(
            (kind.class, kind.cause),
            KindTally {
                trials: kind.trials,
                receipts: kind.receipts_affected,
                first_trial: kind.first_trial,
                first_choices: kind.first_choices,
                shrunk,
            },
        );
    }
    tally
}

fn counterexample_name(class: Class, cause: Cause) -> String {
    format!("{}-{}.json", class.name(), cause.name())
}

/// Shrinks the first trial that showed `kind` into a counterexample to be written in `out`.
fn shrink_kind(
    config: &ValidatedConfig,
    choices: &Choices,
    kind: (Class, Cause),
    out: &Path,
) -> Result<Option<Shrunk>, Failure> {
    let Some(found) = explore::shrink(config, choices, kind) else {
        return Ok(None);
    };
    let path = out.join(counterexample_name(kind.0, kind.1));
    let anomaly = found
        .judged
        .oracle
        .anomalies
        .iter()
        .find(|a| (a.class, a.cause) == kind)
        .expect("the shrunk trial shows the kind");
    let scenario = toml::to_string(&found.config)
        .map_err(|error| Failure::bad_input(format!("cannot print the scenario: {error}")))?;
    let file = CounterexampleFile {
        receipt_sim_counterexample: COUNTEREXAMPLE_FORMAT,
        class: kind.0,
        cause: kind.1,
        description: format!("{}: {}", kind.0.meaning(), kind.1.description()),
        scenario,
        choices: found.choices,
        fingerprint: found.judged.trial.report.fingerprint.clone(),
        events: found.judged.trial.report.events,
        receipts: found.judged.trial.report.receipts,
        anomaly: serde_json::to_value(anomaly).unwrap_or(Value::Null),
        excerpt: serde_json::to_value(&anomaly.excerpt).unwrap_or(Value::Null),
        replay: format!("receipt-sim replay {}", path.display()),
    };
    Ok(Some(Shrunk { path, file }))
}

fn write_counterexample(shrunk: &Shrunk) -> Result<(), Failure> {
    write_atomically(&shrunk.path, &crate::output::json_bytes(&shrunk.file)?)
}

pub fn replay(path: &str, export: Option<&Output>) -> Result<(), Failure> {
    let (file, config) = read_counterexample(path)?;
    let (config, options) = explore::apply(&config, &file.choices, HistoryFilter::All);
    let judged = explore::judge(&config, None, &options);
    let kind = (file.class, file.cause);
    let anomaly: Option<&Anomaly> = judged
        .oracle
        .anomalies
        .iter()
        .find(|a| (a.class, a.cause) == kind);
    let same_fingerprint = judged.trial.report.fingerprint == file.fingerprint;
    let out = describe_replay(path, &file, &judged, anomaly, same_fingerprint);
    crate::output::say(matches!(export, Some(Output::Stdout)), &out);
    if let Some(export) = export {
        export.write_json(&json!({
            "file": path,
            "reproduced": anomaly.is_some() && same_fingerprint,
            "same_fingerprint": same_fingerprint,
            "fingerprint": judged.trial.report.fingerprint,
            "class": file.class.name(),
            "cause": file.cause.name(),
            "anomaly": anomaly,
        }))?;
    }
    match (anomaly.is_some(), same_fingerprint) {
        (true, true) => Ok(()),
        (false, _) => Err(Failure::race_found(format!(
            "{path}: did not reproduce: no {} {} anomaly this time",
            file.class.name(),
            file.cause.name()
        ))),
        (true, false) => Err(Failure::race_found(format!(
            "{path}: did not reproduce exactly: fingerprint {} instead of {}",
            judged.trial.report.fingerprint, file.fingerprint
        ))),
    }
}

/// Reads a counterexample file and its resolved scenario, refusing what a replay cannot honour.
fn read_counterexample(path: &str) -> Result<(CounterexampleFile, ValidatedConfig), Failure> {
    let text = crate::pipeline_scenario::read_bounded(std::path::Path::new(path))
        .map_err(Failure::bad_input)?;
    let file: CounterexampleFile = serde_json::from_str(&text)
        .map_err(|error| Failure::bad_input(format!("{path}: {error}")))?;
    if file.receipt_sim_counterexample != COUNTEREXAMPLE_FORMAT {
        return Err(Failure::bad_input(format!(
            "{path}: counterexample format {} (this build reads {COUNTEREXAMPLE_FORMAT})",
            file.receipt_sim_counterexample
        )));
    }
    let table: toml::Table = toml::from_str(&file.scenario)
        .map_err(|error| Failure::bad_input(format!("{path}: scenario: {}", error.message())))?;
    for key in ["extends", "model"] {
        if table.contains_key(key) {
            return Err(Failure::bad_input(format!(
                "{path}: scenario: field `{key}`: a counterexample holds a resolved pipeline \
                 scenario, without `{key}`"
            )));
        }
    }
    check_choices(path, &file.choices)?;
    let config: PipelineConfig = sim::scenario::deserialize(&table)
        .map_err(|error| Failure::bad_input(format!("{path}: scenario: {error}")))?;
    let config = ValidatedConfig::new(config)
        .map_err(|error| Failure::bad_input(format!("{path}: scenario: {error}")))?;
    if config.workload().source != sim::pipeline::config::WorkloadSource::Generate {
        return Err(Failure::bad_input(format!(
            "{path}: scenario: field `workload.source`: a counterexample replays generated receipts"
        )));
    }
    Ok((file, config))
}

/// The replay's summary: what was recorded, what this build found, and the anomaly's excerpt.
fn describe_replay(
    path: &str,
    file: &CounterexampleFile,
    judged: &explore::Judged,
    anomaly: Option<&Anomaly>,
    same_fingerprint: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay {path}: {} {} ({}), seed {}, {} receipts, {} events, fingerprint {} ({})",
        file.class.name(),
        file.cause.name(),
        file.cause.description(),
        file.choices.seed,
        judged.trial.report.receipts,
        judged.trial.report.events,
        judged.trial.report.fingerprint,
        if same_fingerprint {
            "same as recorded"
        } else {
            "DIFFERENT from the recorded one"
        }
    );
    if let Some(anomaly) = anomaly {
        let _ = writeln!(
            out,
            "  receipt {} {}: {} ids; expected {}, found {}",
            anomaly.receipt.map_or("-".to_string(), |r| r.to_string()),
            anomaly.collection.map_or("-", |c| c.name()),
            anomaly.id_count,
            anomaly.expected,
            anomaly.found
        );
        describe_excerpt(&mut out, &anomaly.excerpt);
    }
    out
}

/// The most priority changes of a PCT ordering (hunts use 1 to 3).
const PCT_DEPTH_MAX: u32 = 64;

/// The orderings a counterexample may ask for: PCT of bounded depth.
fn check_choices(path: &str, choices: &Choices) -> Result<(), Failure> {
    if let explore::Ordering::Pct { depth, .. } = choices.ordering
        && depth > PCT_DEPTH_MAX
    {
        return Err(Failure::bad_input(format!(
            "{path}: field `choices.ordering.depth`: {depth} priority changes, at most {PCT_DEPTH_MAX}"
        )));
    }
    Ok(())
}

pub fn describe_excerpt(out: &mut String, excerpt: &[HistoryRecord]) {
    let _ = writeln!(
        out,
        "  history of the affected ids ({} records):",
        excerpt.len()
    );
    for record in excerpt.iter().take(EXCERPT_PRINTED_MAX) {
        let actor = serde_json::to_value(record.actor)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let event = serde_json::to_value(record.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let ids: Vec<String> = record
            .ids
            .iter()
            .take(4)
            .map(|id| format!("{}/{}/{}", id.receipt(), id.line_number(), id.word_number()))
            .collect();
        let _ = writeln!(
            out,
            "    {:>10.3}s  {:<26} {:<20} {} {}",
            record.at.as_secs_f64(),
            actor.unwrap_or_default(),
            event.unwrap_or_default(),
            if ids.is_empty() {
                String::new()
            } else {
                format!("[{}]", ids.join(" "))
            },
            record.detail
        );
    }
    if excerpt.len() > EXCERPT_PRINTED_MAX {
        let _ = writeln!(
            out,
            "    … {} more records",
            excerpt.len() - EXCERPT_PRINTED_MAX
        );
    }
}
