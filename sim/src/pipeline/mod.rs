//! The pipeline model: the upload Lambda, the stream processor and the compaction Lambda as sans-IO
//! state machines (`upload`, `stream_processor`, `compaction`, speaking `effect`), the simulated
//! driver that runs them on the service models (`driver`), "labels visible" tracking
//! (`visibility`), the history (`history`), the configuration (`config`: the TOML tree, validated
//! once into behaviour, deployment, service model and faults), the performer seam the
//! driver performs data-plane effects through (`performer`), and the entry points `run_trial`,
//! `run_trial_with` and `generate_receipts`.
//!
//! Architecture invariant: the state machines know no engine, no service model and no clock; only
//! the driver does. Depends on `engine`, `services`, `metrics`, `workload`, `entities`.

pub mod compaction;
pub mod config;
pub mod driver;
pub mod effect;
pub mod history;
pub mod performer;
pub mod stream_processor;
pub mod upload;
pub mod visibility;

use crate::engine::{Engine, Stop, TieBreak};
use crate::entities::{Collection, ReceiptIndex};
use crate::metrics::{LatencySummary, QueueSample};
use crate::services::object_store::SnapshotStore;
use crate::services::table::Table;
use crate::time::{Duration, Instant};
use crate::workload::{Receipt, check_receipts, generate};
pub use config::{ConfigError, Flow, PipelineConfig, ValidatedConfig};
use driver::{EventCounts, PerCollection, Simulation};
pub use history::{History, HistoryFilter, HistoryRecord, PublishRecord};
use serde::Serialize;
use std::collections::BTreeMap;

/// How to run one trial.
#[derive(Clone, Debug)]
pub struct TrialOptions {
    pub tie_break: TieBreak,
    pub history: HistoryFilter,
    /// The trial stops after this many events (a model that never ends is reported, not hung).
    pub event_limit: u64,
    pub report: ReportDetail,
    /// Sees the trial's progress every so many events; never changes what the trial does.
    pub observer: Option<Observer>,
}

/// What a running trial has reached, for a progress display.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TrialProgress {
    pub now: Instant,
    pub events: u64,
    pub receipts: u64,
    /// Receipts whose labels are saved.
    pub receipts_saved: u64,
}

/// A read-only look at a running trial every `every_events` events (at least 1). The trial
/// keeps no clock and does no I/O; the callback may (the binary draws a progress bar).
#[derive(Clone)]
pub struct Observer {
    pub every_events: u64,
    pub call: std::sync::Arc<dyn Fn(&TrialProgress) + Send + Sync>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observer {{ every_events: {} }}", self.every_events)
    }
}

/// How much of the report a trial computes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum ReportDetail {
    /// Everything.
    #[default]
    Full,
    /// No per-stage latencies and no queue samples (so no queue depth or age maxima either): for
    /// trials only the oracle reads, such as explored ones. The counters, the fingerprint and the
    /// end-to-end latencies are all there.
    Brief,
}

impl Default for TrialOptions {
    fn default() -> Self {
        TrialOptions {
            tie_break: TieBreak::Fifo,
            history: HistoryFilter::Off,
            event_limit: u64::MAX,
            report: ReportDetail::Full,
            observer: None,
        }
    }
}

/// Counters the driver keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrialCounters {
    pub busy_at_quick_check: u64,
    pub busy_at_publish: u64,
    pub pointer_moved_at_quick_check: u64,
    pub pointer_moved_at_publish: u64,
    pub pointer_conflicts: u64,
    /// Publishes abandoned because the ownership re-check found the lock lost.
    pub ownership_lost: u64,
    /// Publishes promoted, per collection (lines, words).
    pub publishes: [u64; 2],
    pub embedding_not_found: u64,
    pub metadata_dropped: u64,
    pub deltas_lost: u64,
    pub deltas_unreadable: u64,
    pub snapshot_missing: u64,
    pub dropped_inserts: u64,
    pub run_completed_failures: u64,
    pub waits_capped: u64,
    pub messages_failed: u64,
    pub stale_deletes: u64,
    /// Invocations killed at their timeout.
    pub kills: KillCounts,
    /// Injected faults that took effect (`config::FaultsConfig`).
    pub stalls: u64,
    pub kills_after_pointer: u64,
    pub stream_retries: u64,
    /// Compaction starts refused by injection (also counted in the report's `throttles`).
    pub throttles_injected: u64,
}

/// Invocations killed at their timeout, by function; serialised as the sequence `[upload, stream
/// processor, compaction]`, the form reports have always had.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct KillCounts {
    pub upload: u64,
    pub stream_processor: u64,
    pub compaction: u64,
}

impl Serialize for KillCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        [self.upload, self.stream_processor, self.compaction].serialize(serializer)
    }
}

/// One receipt's latencies for paired comparisons.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptLatency {
    pub receipt: ReceiptIndex,
    pub labels_saved: Option<Duration>,
    pub labels_visible: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyReport {
    /// From the receipt's arrival at the upload queue to its last label write.
    pub labels_saved: LatencySummary,
    /// From the start of the embedding of the attempt that saved the labels to its last label
    /// write: the window the note's "35–60 s" (new flow) and "35–120 s" (old flow) describe.
    pub labels_saved_from_embedding: LatencySummary,
    pub labels_visible: LatencySummary,
    pub stages: BTreeMap<String, LatencySummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerFunction<T> {
    pub upload: T,
    pub stream_processor: T,
    pub compaction: T,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerQueue<T> {
    pub upload: T,
    pub lines: T,
    pub words: T,
}

/// Where a compaction found the pointer moved since it read it (fields in ascending order, as the
/// map reports have always had).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PointerMoved {
    pub publish: u64,
    pub quick_check: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LockFailures {
    pub busy_at_quick_check: u64,
    pub busy_at_publish: u64,
    pub expired_under_running_holder: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueReport {
    pub depth_max: u64,
    pub oldest_age_s_max: f64,
    pub samples: Vec<QueueSample>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backlog {
    pub upload_queue: u64,
    pub stream_records: u64,
    pub lines_queue: u64,
    pub words_queue: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InFlight {
    /// Receipts that arrived and whose upload work has not finished.
    pub receipts: u64,
    pub upload: u64,
    pub stream_processor: u64,
    pub compaction: u64,
}

/// The summary of one trial (serialised by the CLI).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialReport {
    pub fingerprint: String,
    pub seed: u64,
    pub flow: Flow,
    pub events: u64,
    pub events_by_kind: EventCounts,
    pub receipts: u64,
    pub stop: &'static str,
    pub ended_at_s: f64,
    pub latency_ms: LatencyReport,
    /// Finished receipts whose snapshot disagrees with DynamoDB at the end of the trial.
    pub never_visible: u64,
    /// Receipts whose labels were never saved (still in flight, or dead-lettered).
    pub never_saved: u64,
    pub dead_lettered: PerQueue<u64>,
    /// Messages SQS deleted at the queue's retention period.
    pub expired_by_retention: PerQueue<u64>,
    pub lock_failures: LockFailures,
    pub publishes: PerCollection<u64>,
    pub pointer_conflicts: u64,
    pub pointer_moved: PointerMoved,
    pub throttles: PerFunction<u64>,
    pub kills: PerFunction<u64>,
    pub utilisation: PerFunction<f64>,
    /// The most invocations of each function that ran at once.
    pub concurrency_max: PerFunction<u32>,
    pub queues: PerQueue<QueueReport>,
    pub backlog: Backlog,
    pub in_flight: InFlight,
    pub stream_records_dropped: u64,
    pub counters: TrialCounters,
}

/// Everything one trial leaves: the report, per-receipt latencies, the final stores and history.
pub struct Trial {
    pub report: TrialReport,
    pub latencies: Vec<ReceiptLatency>,
    table: Table,
    stores: [SnapshotStore; 2],
    pub history: History,
}

impl Trial {
    /// The final DynamoDB table (read-only).
    pub fn table(&self) -> &Table {
        &self.table
    }
    /// The final object store of a collection (read-only).
    pub fn store(&self, collection: Collection) -> &SnapshotStore {
        &self.stores[collection.index()]
    }
}

/// The receipts a configuration generates (ignores `workload.source`).
pub fn generate_receipts(config: &PipelineConfig) -> Vec<Receipt> {
    generate(config.seed, &config.workload)
}

/// What one worker keeps from trial to trial: the storage of a finished trial's engine, service
/// models, containers and history, in which the next trial run in it (`run_trial_in`) builds its
/// own instead of allocating them again. A trial run in a scratch is the trial a new one runs:
/// the same fingerprint, report and final stores (tested); only the allocations differ.
#[derive(Default)]
pub struct Scratch {
    engine: Option<Engine<driver::Event>>,
    history: Option<History>,
    storage: driver::Storage,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// Takes back a trial's table, stores and history (once judged) for the next trial.
    pub fn reclaim(&mut self, trial: Trial) {
        let Trial {
            table,
            stores,
            history,
            ..
        } = trial;
        self.storage.table = Some(table);
        self.storage.stores = Some(stores);
        self.history = Some(history);
    }
}

/// Runs one trial. `config`: a configuration validated once (`ValidatedConfig::new`), so a
/// trial never validates again nor panics on a user's value. `receipts`: the receipts to replay, or `None` to generate them from the
/// configuration; panics if they are inconsistent (the caller checks them first and reports
/// errors). The trial stops at `options.event_limit` or at the configuration's own event limit,
/// whichever is lower, so no trial spins for ever.
pub fn run_trial(
    config: &ValidatedConfig,
    receipts: Option<&[Receipt]>,
    options: &TrialOptions,
) -> Trial {
    run_trial_in(&mut Scratch::new(), config, receipts, options)
}

/// Runs one trial as `run_trial` does, in the storage `scratch` keeps, and leaves there what the
/// next trial can reuse (with `Scratch::reclaim`, the returned trial's too).
pub fn run_trial_in(
    scratch: &mut Scratch,
    config: &ValidatedConfig,
    receipts: Option<&[Receipt]>,
    options: &TrialOptions,
) -> Trial {
    run_in(scratch, config, receipts, options, performer::Simulated).0
}

/// Runs one trial as `run_trial` does, with `performer` performing the data-plane effects beside
/// the models (a live performer talks to real servers); hands the performer back at the end.
pub fn run_trial_with<P: performer::Performer>(
    config: &ValidatedConfig,
    receipts: Option<&[Receipt]>,
    options: &TrialOptions,
    performer: P,
) -> (Trial, P) {
    run_in(&mut Scratch::new(), config, receipts, options, performer)
}

fn run_in<P: performer::Performer>(
    scratch: &mut Scratch,
    config: &ValidatedConfig,
    receipts: Option<&[Receipt]>,
    options: &TrialOptions,
    performer: P,
) -> (Trial, P) {
    let generated;
    let receipts = match receipts {
        Some(receipts) => {
            if let Err(error) = check_receipts(receipts) {
                panic!("inconsistent receipts: {error}");
            }
            receipts
        }
        None => {
            generated = generate(config.seed(), config.workload());
            &generated[..]
        }
    };
    let horizon = Instant::ZERO.add(config.horizon());
    let engine = scratch
        .engine
        .take()
        .map_or_else(Engine::new, Engine::renewed)
        .with_horizon(horizon)
        .with_event_limit(
            options
                .event_limit
                .min(config.source().event_limit(receipts.len() as u64)),
        )
        .with_tie_break(options.tie_break.clone());
    let history = match scratch.history.take() {
        Some(history) => history.renewed(options.history.clone()),
        None => History::new(options.history.clone()),
    };
    let mut simulation = Simulation::with_performer(
        config,
        receipts,
        engine,
        history,
        options.report,
        performer,
        std::mem::take(&mut scratch.storage),
    );
    simulation.run_observed(options.observer.as_ref());
    finish(scratch, simulation)
}

fn stop_name(stop: Option<Stop>) -> &'static str {
    match stop {
        Some(Stop::Empty) | None => "empty",
        Some(Stop::Horizon) => "horizon",
        Some(Stop::EventLimit) => "event_limit",
    }
}

fn queue_report(series: &crate::metrics::Series) -> QueueReport {
    QueueReport {
        depth_max: series.depth_max(),
        oldest_age_s_max: series.oldest_age_s_max(),
        samples: series.samples().to_vec(),
    }
}

/// The report of a finished trial. A brief one has no stage latencies or queue samples because
/// the simulation recorded none (`Simulation::new`).
/// Each function's throttles, kills, utilisation and highest concurrency.
struct FunctionFigures {
    throttles: PerFunction<u64>,
    kills: PerFunction<u64>,
    utilisation: PerFunction<f64>,
    concurrency_max: PerFunction<u32>,
}

impl FunctionFigures {
    fn of<P: performer::Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
    ) -> FunctionFigures {
        let counters = &simulation.counters;
        FunctionFigures {
            throttles: PerFunction {
                upload: simulation.upload_lambda.counters().throttles,
                stream_processor: simulation.processor_lambda.counters().throttles,
                compaction: simulation.compaction_lambda.counters().throttles
                    + counters.throttles_injected,
            },
            kills: PerFunction {
                upload: counters.kills.upload,
                stream_processor: counters.kills.stream_processor,
                compaction: counters.kills.compaction,
            },
            utilisation: PerFunction {
                upload: simulation.upload_lambda.utilisation(now),
                stream_processor: simulation.processor_lambda.utilisation(now),
                compaction: simulation.compaction_lambda.utilisation(now),
            },
            concurrency_max: PerFunction {
                upload: simulation.upload_lambda.counters().in_flight_max,
                stream_processor: simulation.processor_lambda.counters().in_flight_max,
                compaction: simulation.compaction_lambda.counters().in_flight_max,
            },
        }
    }
}

/// Each queue's losses, its sampled series and what is left in it at the end.
struct QueueFigures {
    dead_lettered: PerQueue<u64>,
    expired_by_retention: PerQueue<u64>,
    series: PerQueue<QueueReport>,
    backlog: Backlog,
}

impl QueueFigures {
    fn of<P: performer::Performer>(simulation: &Simulation<'_, P>) -> QueueFigures {
        QueueFigures {
            dead_lettered: PerQueue {
                upload: simulation.upload_queue.counters().dead_lettered,
                lines: simulation.queues[0].counters().dead_lettered,
                words: simulation.queues[1].counters().dead_lettered,
            },
            expired_by_retention: PerQueue {
                upload: simulation.upload_queue.counters().expired_by_retention,
                lines: simulation.queues[0].counters().expired_by_retention,
                words: simulation.queues[1].counters().expired_by_retention,
            },
            series: PerQueue {
                upload: queue_report(&simulation.series.upload),
                lines: queue_report(&simulation.series.lines),
                words: queue_report(&simulation.series.words),
            },
            backlog: Backlog {
                upload_queue: simulation.upload_queue.depth() as u64,
                stream_records: simulation.stream.backlog_len() as u64,
                lines_queue: simulation.queues[0].depth() as u64,
                words_queue: simulation.queues[1].depth() as u64,
            },
        }
    }
}

/// What the trial's receipts saw: their latencies, and how many never got there.
struct ReceiptFigures {
    saved: crate::metrics::Latency,
    saved_from_embedding: crate::metrics::Latency,
    visible: crate::metrics::Latency,
    latencies: Vec<ReceiptLatency>,
    never_visible: u64,
    never_saved: u64,
    in_flight_receipts: u64,
}

impl ReceiptFigures {
    fn of<P: performer::Performer>(simulation: &Simulation<'_, P>) -> ReceiptFigures {
        let mut figures = ReceiptFigures {
            saved: crate::metrics::Latency::new(),
            saved_from_embedding: crate::metrics::Latency::new(),
            visible: crate::metrics::Latency::new(),
            latencies: Vec::with_capacity(simulation.receipts.len()),
            never_visible: 0,
            never_saved: 0,
            in_flight_receipts: 0,
        };
        for receipt in simulation.receipts {
            let progress = simulation.progress[receipt.index as usize];
            let arrival = receipt.arrival_instant();
            let labels_saved = progress.saved_at.map(|at| at.since(arrival));
            let labels_visible = simulation
                .visibility
                .visible_since(receipt.index)
                .map(|at| at.saturating_since(arrival));
            if let Some(latency) = labels_visible {
                figures.visible.record(latency);
            } else if progress.finished {
                figures.never_visible += 1;
            }
            if let Some(latency) = labels_saved {
                figures.saved.record(latency);
            }
            if let Some(latency) = progress.saved_from_embedding {
                figures.saved_from_embedding.record(latency);
            }
            figures.never_saved += u64::from(labels_saved.is_none());
            figures.in_flight_receipts += u64::from(progress.arrived && !progress.finished);
            figures.latencies.push(ReceiptLatency {
                receipt: receipt.index,
                labels_saved,
                labels_visible,
            });
        }
        figures
    }
}

fn finish<P: performer::Performer>(
    scratch: &mut Scratch,
    mut simulation: Simulation<'_, P>,
) -> (Trial, P) {
    let now = simulation.engine.now();
    let receipts = ReceiptFigures::of(&simulation);
    let (upload_running, processor_running, compaction_running) = simulation.running();
    let functions = FunctionFigures::of(&mut simulation, now);
    let queues = QueueFigures::of(&simulation);
    let counters = simulation.counters.clone();
    let report = TrialReport {
        fingerprint: format!("{:016x}", simulation.engine.fingerprint()),
        seed: simulation.seed,
        flow: simulation.behaviour.upload.flow,
        events: simulation.engine.events(),
        events_by_kind: simulation.events_by_kind.clone(),
        receipts: simulation.receipts.len() as u64,
        stop: stop_name(simulation.engine.stop()),
        ended_at_s: now.as_secs_f64(),
        latency_ms: LatencyReport {
            labels_saved: receipts.saved.summary(),
            labels_saved_from_embedding: receipts.saved_from_embedding.summary(),
            labels_visible: receipts.visible.summary(),
            stages: simulation.stages.summaries(),
        },
        never_visible: receipts.never_visible,
        never_saved: receipts.never_saved,
        dead_lettered: queues.dead_lettered,
        expired_by_retention: queues.expired_by_retention,
        lock_failures: LockFailures {
            busy_at_quick_check: counters.busy_at_quick_check,
            busy_at_publish: counters.busy_at_publish,
            expired_under_running_holder: Collection::ALL
                .iter()
                .map(|c| {
                    simulation.locks[c.index()]
                        .counters()
                        .expired_under_running_holder
                })
                .sum(),
        },
        publishes: PerCollection {
            lines: counters.publishes[Collection::Lines.index()],
            words: counters.publishes[Collection::Words.index()],
        },
        pointer_conflicts: counters.pointer_conflicts,
        pointer_moved: PointerMoved {
            publish: counters.pointer_moved_at_publish,
            quick_check: counters.pointer_moved_at_quick_check,
        },
        throttles: functions.throttles,
        kills: functions.kills,
        utilisation: functions.utilisation,
        concurrency_max: functions.concurrency_max,
        queues: queues.series,
        backlog: queues.backlog,
        in_flight: InFlight {
            receipts: receipts.in_flight_receipts,
            upload: upload_running as u64,
            stream_processor: processor_running as u64,
            compaction: compaction_running as u64,
        },
        stream_records_dropped: simulation.stream.counters().records_dropped_by_age
            + simulation.stream.counters().records_dropped_by_retries,
        counters,
    };
    into_trial(scratch, simulation, report, receipts.latencies)
}

/// The trial: the report and latencies with the final stores and the history the oracle judges;
/// the rest of the simulation's storage goes to `scratch`.
fn into_trial<P: performer::Performer>(
    scratch: &mut Scratch,
    simulation: Simulation<'_, P>,
    report: TrialReport,
    latencies: Vec<ReceiptLatency>,
) -> (Trial, P) {
    let driver::Parts {
        engine,
        table,
        stores,
        mut history,
        performer,
        storage,
    } = simulation.into_parts();
    history.finish();
    scratch.engine = Some(engine);
    scratch.storage = storage;
    let trial = Trial {
        report,
        latencies,
        table,
        stores,
        history,
    };
    (trial, performer)
}
