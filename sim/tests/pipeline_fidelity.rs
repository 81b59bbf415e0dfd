//! Mechanisms of the real pipeline, each in a small hand-built trial with a known outcome, and
//! each citing what it follows: a message that reaches its queue's retention period is a cause,
//! and what an absent embedding hides is counted apart.

use sim::oracle::{self, Cause, Class};
use sim::pipeline::history::HistoryEvent;
use sim::pipeline::{Flow, PipelineConfig};

mod common;

use common::{burst, events, run_with_history, secs};

fn judge(trial: &sim::pipeline::Trial) -> oracle::Report {
    oracle::check(&sim::explore::oracle_input(trial))
}

/// SQS deletes a message at the queue's retention period (`MessageRetentionPeriod`; the code at
/// 54acc5869 sets 345 600 s on both compaction queues in
/// infra/chromadb_compaction/components/sqs_queues.py, `ChromaDBQueues.__init__`). With one
/// compaction at a time and a retention shorter than the backlog, messages expire: each leaves a
/// history record, and every anomaly names a cause, none `unexplained`.
#[test]
fn retention_expiry_is_a_cause() {
    let mut config = burst(PipelineConfig::default(), 12);
    config.flow = Flow::New;
    config.compaction.reserved_concurrency = 1;
    config.queues.retention = secs(90);
    let trial = run_with_history(&config);
    assert_eq!(trial.report.stop, "empty");
    let expired = events(&trial, HistoryEvent::ExpiredByRetention).count();
    assert!(expired > 0, "nothing expired");
    assert_eq!(
        expired as u64,
        trial.report.expired_by_retention.lines + trial.report.expired_by_retention.words
    );
    let report = judge(&trial);
    let causes: Vec<Cause> = report.anomalies.iter().map(|a| a.cause).collect();
    assert!(causes.contains(&Cause::ExpiredByRetention), "{causes:?}");
    assert!(!causes.contains(&Cause::Unexplained), "{causes:?}");
    // The same trial with the real retention loses nothing to it.
    config.queues.retention = secs(345_600);
    let kept = run_with_history(&config);
    assert_eq!(events(&kept, HistoryEvent::ExpiredByRetention).count(), 0);
    assert!(
        judge(&kept)
            .anomalies
            .iter()
            .all(|a| a.cause != Cause::ExpiredByRetention)
    );
}

/// A receipt whose embeddings never reach the snapshot (every delta message expired) still owes
/// it labels: those L findings are counted apart as masked, not dropped.
#[test]
fn an_absent_embedding_reports_the_labels_it_hides() {
    let mut config = burst(PipelineConfig::default(), 24);
    config.flow = Flow::New;
    config.compaction.reserved_concurrency = 1;
    config.queues.retention = secs(30);
    let trial = run_with_history(&config);
    let report = judge(&trial);
    let absent = report.receipts_affected_by_class[&Class::E];
    assert!(absent > 0, "no embedding went missing");
    let masked = report.masked.ids_by_class[&Class::L];
    assert!(masked > 0, "{:?}", report.masked);
    assert!(report.masked.receipts_by_class[&Class::L] <= absent);
}
