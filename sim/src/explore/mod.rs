//! Exploration: judging trials with the oracle, hunting for anomalies over many trials and the
//! choices the services leave open, and shrinking what is found to a small counterexample.
//!
//! Everything here is deterministic: a trial is a function of its configuration, receipts and
//! `TrialOptions`, so a counterexample replays from those alone. Running many trials in parallel is
//! the caller's job. Depends on `pipeline` and `oracle`.

use crate::engine::{Pct, TieBreak};
use crate::oracle::{self, Cause, Class};
use crate::pipeline::{
    HistoryFilter, PipelineConfig, ReportDetail, Scratch, Trial, TrialOptions, ValidatedConfig,
    run_trial_in,
};
use crate::random::{Streams, mix64};
use crate::time::Duration;
use crate::workload::Receipt;
use std::collections::BTreeSet;

/// The most affected receipts whose history a judged trial records to explain its anomalies.
pub const EXPLAINED_RECEIPTS_MAX: usize = 256;

/// A trial and the oracle's verdict on it.
pub struct Judged {
    pub trial: Trial,
    pub oracle: oracle::Report,
}

/// Runs the oracle over a finished trial.
pub fn check(trial: &Trial) -> oracle::Report {
    oracle::check(&oracle_input(trial))
}

/// What the oracle reads of a finished trial.
pub fn oracle_input(trial: &Trial) -> oracle::Input<'_> {
    use crate::entities::Collection;
    oracle::Input {
        table: trial.table(),
        stores: [
            trial.store(Collection::Lines),
            trial.store(Collection::Words),
        ],
        history: &trial.history,
        receipts: trial.report.receipts as u32,
        quiescent: trial.report.stop == "empty",
    }
}

/// Runs a trial and judges it. When the oracle finds anomalies and the trial kept no history, the
/// trial runs again, recording the history of the affected receipts, so that every anomaly comes
/// with its cause and excerpt; recording history does not change the trial (asserted).
///
/// A large trial records the history of its first `EXPLAINED_RECEIPTS_MAX` receipts from the start
/// instead: when those are the affected receipts the judgement explains (the lowest ones), keeping
/// only their records gives exactly the history a second trial would have recorded, so it need not
/// run. Otherwise the trial runs again as above.
pub fn judge(
    config: &ValidatedConfig,
    receipts: Option<&[Receipt]>,
    options: &TrialOptions,
) -> Judged {
    judge_in(&mut Scratch::new(), config, receipts, options)
}

/// `judge`, running its trials in the storage `scratch` keeps.
pub fn judge_in(
    scratch: &mut Scratch,
    config: &ValidatedConfig,
    receipts: Option<&[Receipt]>,
    options: &TrialOptions,
) -> Judged {
    if !options.history.is_off() {
        let trial = run_trial_in(scratch, config, receipts, options);
        let report = check(&trial);
        return Judged {
            trial,
            oracle: report,
        };
    }
    let receipt_count = receipts.map_or(config.workload().receipts, |r| r.len() as u64);
    let speculate = receipt_count > SPECULATED_HISTORY_RECEIPTS_MIN;
    let speculated: BTreeSet<u32> = (0..EXPLAINED_RECEIPTS_MAX as u32).collect();
    let first_options = TrialOptions {
        history: if speculate {
            HistoryFilter::Receipts(speculated.clone())
        } else {
            HistoryFilter::Off
        },
        ..options.clone()
    };
    let mut trial = run_trial_in(scratch, config, receipts, &first_options);
    // Which receipts are affected depends on the stores only, never on the history.
    let report = check(&trial);
    if report.is_clean() {
        trial.history.retain(HistoryFilter::Off);
        return Judged {
            trial,
            oracle: report,
        };
    }
    let affected: BTreeSet<u32> = report
        .affected_receipts()
        .into_iter()
        .take(EXPLAINED_RECEIPTS_MAX)
        .collect();
    if speculate && affected.is_subset(&speculated) {
        // The history recorded is the one asked for, or narrows to it.
        let exact = affected == speculated;
        trial.history.retain(HistoryFilter::Receipts(affected));
        let report = if exact { report } else { check(&trial) };
        return Judged {
            trial,
            oracle: report,
        };
    }
    let explained_options = TrialOptions {
        history: HistoryFilter::Receipts(affected),
        ..options.clone()
    };
    // The first trial is not needed any more: free it before the second one runs.
    let fingerprint = std::mem::take(&mut trial.report.fingerprint);
    scratch.reclaim(trial);
    let explained = run_trial_in(scratch, config, receipts, &explained_options);
    assert_eq!(
        explained.report.fingerprint, fingerprint,
        "recording history changed the trial"
    );
    let report = check(&explained);
    Judged {
        trial: explained,
        oracle: report,
    }
}

/// Trials of more receipts than this record the history of their first receipts from the start
/// (`judge`); for smaller ones, recording costs more than a second trial saves.
pub const SPECULATED_HISTORY_RECEIPTS_MIN: u64 = 4 * EXPLAINED_RECEIPTS_MAX as u64;

/// How one trial orders simultaneous events.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ordering {
    /// First scheduled, first run.
    Fifo,
    /// A random order drawn from its own seed.
    Random { seed: u64 },
    /// PCT-style actor priorities with `depth` priority changes over the first `events` events.
    Pct { seed: u64, depth: u32, events: u64 },
}

impl Ordering {
    pub fn tie_break(&self) -> TieBreak {
        match *self {
            Ordering::Fifo => TieBreak::Fifo,
            Ordering::Random { seed } => TieBreak::Random(Streams::new(seed).stream("tie-break")),
            Ordering::Pct {
                seed,
                depth,
                events,
            } => TieBreak::Pct(Pct::new(Streams::new(seed).stream("pct"), depth, events)),
        }
    }
}

/// Everything that makes one explored trial what it is, beyond its configuration.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Choices {
    pub seed: u64,
    pub ordering: Ordering,
}

/// The choices of the `index`-th trial of a hunt: seeds in turn, and orderings cycling through
/// FIFO, random and PCT (depth 1 to 3).
pub fn choices_for(base_seed: u64, index: u64, expected_events: u64) -> Choices {
    let seed = base_seed.wrapping_add(index);
    let ordering_seed = mix64(base_seed ^ mix64(index ^ 0x0bde_7e11));
    let ordering = match index % 3 {
        0 => Ordering::Fifo,
        1 => Ordering::Random {
            seed: ordering_seed,
        },
        _ => Ordering::Pct {
            seed: ordering_seed,
            depth: 1 + (index / 3 % 3) as u32,
            events: expected_events.max(1),
        },
    };
    Choices { seed, ordering }
}

/// The options and configuration of a trial with these choices.
pub fn apply(
    config: &ValidatedConfig,
    choices: &Choices,
    history: HistoryFilter,
) -> (ValidatedConfig, TrialOptions) {
    (config.with_seed(choices.seed), options(choices, history))
}

/// The options of a trial with these choices (its seed is the configuration's).
fn options(choices: &Choices, history: HistoryFilter) -> TrialOptions {
    TrialOptions {
        tie_break: choices.ordering.tie_break(),
        history,
        ..TrialOptions::default()
    }
}

/// What one explored trial found, small enough to keep for every trial of a hunt.
#[derive(Clone, Debug)]
pub struct Explored {
    pub choices: Choices,
    pub receipts: u64,
    /// Receipts affected per (class, cause), over the kinds found.
    pub affected: Vec<((Class, Cause), u64)>,
}

/// Trials of at most this many receipts record their whole history from the start: cheaper than
/// running again to explain what the oracle finds.
pub const HISTORY_UPFRONT_RECEIPTS_MAX: u64 = 16;

/// Runs and judges one trial of a hunt.
pub fn explore(config: &ValidatedConfig, choices: &Choices) -> Explored {
    Explorer::new(config).explore(choices)
}

/// What one worker of a hunt keeps from trial to trial: a scratch its trials run in, and its own
/// copy of the configuration, whose seed each trial sets (so no trial copies the configuration).
pub struct Explorer {
    scratch: Scratch,
    config: ValidatedConfig,
}

impl Explorer {
    pub fn new(config: &ValidatedConfig) -> Explorer {
        Explorer {
            scratch: Scratch::new(),
            config: config.clone(),
        }
    }

    /// Runs and judges one trial of a hunt, as `explore` does.
    pub fn explore(&mut self, choices: &Choices) -> Explored {
        self.config.set_seed(choices.seed);
        explore_in(&mut self.scratch, &self.config, choices)
    }
}

/// `explore` of a configuration whose seed is the choices' already, running the trial in the
/// storage `scratch` keeps and leaving it there for the next.
fn explore_in(scratch: &mut Scratch, config: &ValidatedConfig, choices: &Choices) -> Explored {
    debug_assert_eq!(config.seed(), choices.seed);
    let mut options = options(choices, HistoryFilter::Off);
    if config.workload().receipts <= HISTORY_UPFRONT_RECEIPTS_MAX {
        options.history = HistoryFilter::Evidence;
    }
    options.report = ReportDetail::Brief;
    let (trial, affected) = if options.history.is_off() {
        // Causes need the history of the affected receipts: judge runs again to record it.
        let judged = judge_in(scratch, config, None, &options);
        (judged.trial, affected_by_kind(&judged.oracle))
    } else {
        let trial = run_trial_in(scratch, config, None, &options);
        let report = oracle::check_kinds(&oracle_input(&trial));
        (trial, affected_by_kind(&report))
    };
    let explored = Explored {
        choices: *choices,
        receipts: trial.report.receipts,
        affected,
    };
    scratch.reclaim(trial);
    explored
}

/// Distinct receipts affected per (class, cause).
pub fn affected_by_kind(report: &oracle::Report) -> Vec<((Class, Cause), u64)> {
    let mut pairs: Vec<((Class, Cause), Option<u32>)> = report
        .anomalies
        .iter()
        .map(|anomaly| ((anomaly.class, anomaly.cause), anomaly.receipt))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut affected: Vec<((Class, Cause), u64)> = Vec::new();
    for (kind, _) in pairs {
        match affected.last_mut() {
            Some((last, count)) if *last == kind => *count += 1,
            _ => affected.push((kind, 1)),
        }
    }
    affected
}

/// The most trials one shrink may run.
pub const SHRINK_TRIALS_MAX: usize = 96;

/// A counterexample: a configuration and choices that show `kind`, as small as shrinking made it.
pub struct Counterexample {
    pub config: PipelineConfig,
    pub choices: Choices,
    pub kind: (Class, Cause),
    pub judged: Judged,
}

/// Whether the configuration and choices still show `kind`; the judged trial if so.
fn shows(config: &ValidatedConfig, choices: &Choices, kind: (Class, Cause)) -> Option<Judged> {
    let (config, options) = apply(config, choices, HistoryFilter::Off);
    let judged = judge(&config, None, &options);
    judged.oracle.kinds().contains(&kind).then_some(judged)
}

/// The smallest failing trial found so far, and the budget left to find a smaller one.
struct Shrinker {
    kind: (Class, Cause),
    config: PipelineConfig,
    choices: Choices,
    judged: Judged,
    trials: usize,
}

impl Shrinker {
    /// Keeps the candidate if it is valid and still shows the kind.
    fn try_candidate(&mut self, config: PipelineConfig, choices: Choices) -> bool {
        if self.trials >= SHRINK_TRIALS_MAX {
            return false;
        }
        let Ok(config) = ValidatedConfig::new(config) else {
            return false;
        };
        self.trials += 1;
        let Some(judged) = shows(&config, &choices, self.kind) else {
            return false;
        };
        self.config = config.into_inner();
        self.choices = choices;
        self.judged = judged;
        true
    }

    fn with_receipts(&self, receipts: u64) -> PipelineConfig {
        let mut config = self.config.clone();
        config.workload.receipts = receipts;
        for burst in &mut config.workload.bursts {
            burst.receipts = burst.receipts.min(receipts);
        }
        config
    }
}

/// Shrinks a failing trial while it still shows the same class and cause: fewer receipts (the
/// first receipts of a workload keep their draws when later ones are cut), FIFO order instead of
/// an explored one, faults switched off, a shorter horizon. Runs at most `SHRINK_TRIALS_MAX` trials.
pub fn shrink(
    config: &ValidatedConfig,
    choices: &Choices,
    kind: (Class, Cause),
) -> Option<Counterexample> {
    let judged = shows(config, choices, kind)?;
    let mut shrinker = Shrinker {
        kind,
        config: config.source().clone(),
        choices: *choices,
        judged,
        trials: 1,
    };
    // Fewer receipts: halve while it still fails, then step down by one.
    while shrinker.config.workload.receipts > 1 {
        let fewer = shrinker.with_receipts(shrinker.config.workload.receipts / 2);
        if !shrinker.try_candidate(fewer, shrinker.choices) {
            break;
        }
    }
    while shrinker.config.workload.receipts > 1 {
        let fewer = shrinker.with_receipts(shrinker.config.workload.receipts - 1);
        if !shrinker.try_candidate(fewer, shrinker.choices) {
            break;
        }
    }
    // The plainest order.
    if shrinker.choices.ordering != Ordering::Fifo {
        let fifo = Choices {
            ordering: Ordering::Fifo,
            ..shrinker.choices
        };
        shrinker.try_candidate(shrinker.config.clone(), fifo);
    }
    // Faults off, one at a time.
    for candidate in faults_off(&shrinker.config) {
        shrinker.try_candidate(candidate, shrinker.choices);
    }
    // A horizon just past the end of the trial.
    let end = Duration::from_secs_f64(shrinker.judged.trial.report.ended_at_s.ceil() + 1.0);
    if end < shrinker.config.horizon {
        let mut candidate = shrinker.config.clone();
        candidate.horizon = end;
        shrinker.try_candidate(candidate, shrinker.choices);
    }
    let Shrinker {
        config,
        choices,
        judged,
        ..
    } = shrinker;
    Some(Counterexample {
        config,
        choices,
        kind,
        judged,
    })
}

/// One configuration per fault that is on, with that fault switched off.
fn faults_off(config: &PipelineConfig) -> Vec<PipelineConfig> {
    // Each fault is a share; a candidate sets one of them to zero.
    let shares: [fn(&mut PipelineConfig) -> &mut f64; 8] = [
        |c| &mut c.compaction.cold_start_share,
        |c| &mut c.queues.duplicate_share,
        |c| &mut c.upload.delta_upload_error_share,
        |c| &mut c.faults.compaction_stall_share,
        |c| &mut c.faults.kill_after_pointer_share,
        |c| &mut c.faults.stream_retry_share,
        |c| &mut c.faults.throttle_share,
        |c| &mut c.faults.collection_error_share,
    ];
    let mut candidates = Vec::new();
    for share in shares {
        let mut candidate = config.clone();
        let value = share(&mut candidate);
        if *value > 0.0 {
            *value = 0.0;
            candidates.push(candidate);
        }
    }
    candidates
}
