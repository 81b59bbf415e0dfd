//! The upload Lambda: one invocation handles a batch of receipts from the upload queue, one receipt
//! at a time: OCR, metadata insert, embeddings, one delta upload per collection, the CompactionRun
//! insert, the old flow's poll-and-cap wait (the new flow has none), then LangGraph and its label and
//! metadata writes.
//!
//! A sans-IO state machine: `poll_effect` hands out the one outstanding effect, `handle_response`
//! takes its answer, `poll_note` hands out what happened for the metrics. Time is always an
//! argument. Its settings are the behaviour part's `config::UploadBehaviour`, copied in whole.
//! Depends on `effect`, `config`, `metrics` and `entities`.

use super::config::{DeltaUploadError, Flow, UploadBehaviour};
use super::effect::{
    Component, Effect, ObjectKey, Response, RunState, TableRead, TableWrite, Work,
};
use crate::entities::{Collection, ReceiptIndex};
use crate::metrics::Stage;
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// What the upload Lambda needs to know about one receipt in advance.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReceiptPlan {
    pub receipt: ReceiptIndex,
    pub has_labels: bool,
    pub has_changed_labels: bool,
    pub has_merchant_correction: bool,
}

/// What happened, for the metrics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UploadNote {
    /// The receipt's upload work began.
    Started(ReceiptIndex),
    /// The receipt's embedding began (the start of the window the note's "35–60 s" describes).
    EmbeddingStarted(ReceiptIndex),
    Stage(ReceiptIndex, Stage, Duration),
    /// A delta upload failed and was ignored (or given up after its tries).
    DeltaLost(ReceiptIndex, Collection),
    /// The wait ended with the run not COMPLETED (the cap was reached).
    WaitCapped(ReceiptIndex),
    /// The receipt's last label write is in DynamoDB.
    LabelsSaved(ReceiptIndex),
    /// Every write of the receipt is done; its message can be deleted.
    Finished(ReceiptIndex),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Step {
    Ocr,
    OcrWrite,
    MerchantResolution,
    MetadataWrite,
    Embedding,
    DeltaUpload { collection: Collection, tries: u32 },
    RunInsert,
    WaitRead,
    WaitSleep,
    Langgraph,
    ProposedLabels,
    ChangedLabels,
    MerchantCorrection,
    Done,
}

/// One invocation of the upload Lambda.
#[derive(Clone, Debug)]
pub struct UploadInvocation {
    behaviour: UploadBehaviour,
    receipts: Vec<ReceiptPlan>,
    position: usize,
    step: Step,
    step_started: Instant,
    delta_started: Instant,
    wait_started: Instant,
    notes: VecDeque<UploadNote>,
    outstanding: bool,
}

impl UploadInvocation {
    pub fn new(
        now: Instant,
        behaviour: UploadBehaviour,
        receipts: Vec<ReceiptPlan>,
    ) -> UploadInvocation {
        assert!(
            !receipts.is_empty(),
            "an invocation holds at least one receipt"
        );
        assert!(behaviour.delta_upload_tries_max > 0);
        let mut invocation = UploadInvocation {
            behaviour,
            receipts,
            position: 0,
            step: Step::Ocr,
            step_started: now,
            delta_started: now,
            wait_started: now,
            notes: VecDeque::with_capacity(4),
            outstanding: false,
        };
        invocation
            .notes
            .push_back(UploadNote::Started(invocation.receipts[0].receipt));
        invocation
    }

    pub fn receipts(&self) -> &[ReceiptPlan] {
        &self.receipts
    }
    /// Receipts not finished yet (their messages are still in flight).
    pub fn unfinished(&self) -> &[ReceiptPlan] {
        &self.receipts[self.position.min(self.receipts.len())..]
    }

    fn current(&self) -> ReceiptPlan {
        self.receipts[self.position]
    }

    pub fn poll_note(&mut self) -> Option<UploadNote> {
        self.notes.pop_front()
    }

    fn enter(&mut self, now: Instant, step: Step) {
        self.step = step;
        self.step_started = now;
    }

    fn stage(&mut self, now: Instant, stage: Stage, since: Instant) {
        let receipt = self.current().receipt;
        self.notes
            .push_back(UploadNote::Stage(receipt, stage, now.since(since)));
    }

    fn handle_delta_upload(
        &mut self,
        now: Instant,
        collection: Collection,
        tries: u32,
        response: Response,
    ) {
        let receipt = self.current().receipt;
        if response.is_failure() {
            let retry = self.behaviour.delta_upload_error == DeltaUploadError::Retry
                && tries < self.behaviour.delta_upload_tries_max;
            if retry {
                self.enter(
                    now,
                    Step::DeltaUpload {
                        collection,
                        tries: tries + 1,
                    },
                );
                return;
            }
            self.notes
                .push_back(UploadNote::DeltaLost(receipt, collection));
        } else {
            assert_eq!(response, Response::Done);
        }
        match collection {
            Collection::Lines => self.enter(
                now,
                Step::DeltaUpload {
                    collection: Collection::Words,
                    tries: 1,
                },
            ),
            Collection::Words => {
                self.stage(now, Stage::DeltaUpload, self.delta_started);
                self.enter(now, Step::RunInsert);
            }
        }
    }

    fn handle_wait_read(&mut self, now: Instant, response: Response) {
        // A failed read is a poll that saw nothing: the loop sleeps and reads again.
        let completed = match response {
            Response::RunState { lines, words } => {
                lines == RunState::Completed && words == RunState::Completed
            }
            Response::Failed(_) => false,
            other => panic!("a run read answered {other:?}"),
        };
        let capped = now.since(self.wait_started) >= self.behaviour.wait.cap;
        if completed || capped {
            if !completed {
                self.notes
                    .push_back(UploadNote::WaitCapped(self.current().receipt));
            }
            self.stage(now, Stage::Wait, self.wait_started);
            self.enter(now, Step::Langgraph);
        } else {
            self.enter(now, Step::WaitSleep);
        }
    }

    fn after_labels(&mut self, now: Instant) {
        if self.current().has_merchant_correction {
            self.enter(now, Step::MerchantCorrection);
        } else {
            self.finish_receipt(now);
        }
    }

    fn finish_receipt(&mut self, now: Instant) {
        self.notes
            .push_back(UploadNote::Finished(self.current().receipt));
        self.position += 1;
        if self.position == self.receipts.len() {
            self.enter(now, Step::Done);
        } else {
            self.notes
                .push_back(UploadNote::Started(self.current().receipt));
            self.enter(now, Step::Ocr);
        }
    }
}

impl Component for UploadInvocation {
    /// The next operation, or `None` while one is outstanding or when done.
    fn poll_effect(&mut self) -> Option<Effect> {
        if self.outstanding || self.step == Step::Done {
            return None;
        }
        self.outstanding = true;
        let receipt = self.current().receipt;
        Some(match self.step {
            Step::Ocr => Effect::Work(Work::Ocr),
            Step::OcrWrite => Effect::TableWrite(TableWrite::OcrResult { receipt }),
            Step::MerchantResolution => Effect::Work(Work::MerchantResolution),
            Step::MetadataWrite => Effect::TableWrite(TableWrite::Metadata { receipt }),
            Step::Embedding => Effect::Work(Work::Embedding),
            Step::DeltaUpload { collection, .. } => Effect::PutObject(ObjectKey::Delta {
                collection,
                receipt,
            }),
            Step::RunInsert => Effect::TableWrite(TableWrite::RunInsert { receipt }),
            Step::WaitRead => Effect::TableRead(TableRead::RunState { receipt }),
            Step::WaitSleep => {
                let elapsed = self.step_started.since(self.wait_started);
                let remaining = Duration(
                    self.behaviour
                        .wait
                        .cap
                        .as_nanos()
                        .saturating_sub(elapsed.as_nanos()),
                );
                Effect::Sleep(self.behaviour.wait.poll_period.min(remaining))
            }
            Step::Langgraph => Effect::Work(Work::Langgraph),
            Step::ProposedLabels => Effect::TableWrite(TableWrite::ProposedLabels { receipt }),
            Step::ChangedLabels => Effect::TableWrite(TableWrite::ChangedLabels { receipt }),
            Step::MerchantCorrection => {
                Effect::TableWrite(TableWrite::MerchantCorrection { receipt })
            }
            Step::Done => unreachable!(),
        })
    }

    /// The answer to the outstanding effect.
    fn handle_response(&mut self, now: Instant, response: Response) {
        assert!(self.outstanding, "a response without an outstanding effect");
        assert!(now >= self.step_started);
        self.outstanding = false;
        let plan = self.current();
        match self.step {
            Step::Ocr => {
                self.stage(now, Stage::Ocr, self.step_started);
                self.enter(now, Step::OcrWrite);
            }
            Step::OcrWrite => self.enter(now, Step::MerchantResolution),
            Step::MerchantResolution => self.enter(now, Step::MetadataWrite),
            Step::MetadataWrite => {
                self.notes
                    .push_back(UploadNote::EmbeddingStarted(plan.receipt));
                self.enter(now, Step::Embedding)
            }
            Step::Embedding => {
                self.stage(now, Stage::Embedding, self.step_started);
                self.delta_started = now;
                self.enter(
                    now,
                    Step::DeltaUpload {
                        collection: Collection::Lines,
                        tries: 1,
                    },
                );
            }
            Step::DeltaUpload { collection, tries } => {
                self.handle_delta_upload(now, collection, tries, response)
            }
            Step::RunInsert => match self.behaviour.flow {
                Flow::Old => {
                    self.wait_started = now;
                    self.enter(now, Step::WaitRead);
                }
                Flow::New => self.enter(now, Step::Langgraph),
            },
            Step::WaitRead => self.handle_wait_read(now, response),
            Step::WaitSleep => self.enter(now, Step::WaitRead),
            Step::Langgraph => {
                self.stage(now, Stage::Langgraph, self.step_started);
                if plan.has_labels {
                    self.enter(now, Step::ProposedLabels);
                } else {
                    self.notes.push_back(UploadNote::LabelsSaved(plan.receipt));
                    self.after_labels(now);
                }
            }
            Step::ProposedLabels => {
                if plan.has_changed_labels {
                    self.enter(now, Step::ChangedLabels);
                } else {
                    self.notes.push_back(UploadNote::LabelsSaved(plan.receipt));
                    self.after_labels(now);
                }
            }
            Step::ChangedLabels => {
                self.notes.push_back(UploadNote::LabelsSaved(plan.receipt));
                self.after_labels(now);
            }
            Step::MerchantCorrection => self.finish_receipt(now),
            Step::Done => unreachable!(),
        }
    }

    fn is_done(&self) -> bool {
        self.step == Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::config::{UploadBatchDeletion, WaitBehaviour};

    fn behaviour(flow: Flow) -> UploadBehaviour {
        UploadBehaviour {
            flow,
            wait: WaitBehaviour {
                poll_period: Duration::from_secs(2),
                cap: Duration::from_secs(120),
            },
            delta_upload_error: DeltaUploadError::Ignore,
            delta_upload_tries_max: 1,
            batch_deletion: UploadBatchDeletion::WhenFunctionReturns,
        }
    }

    fn plan() -> ReceiptPlan {
        ReceiptPlan {
            receipt: 7,
            has_labels: true,
            has_changed_labels: true,
            has_merchant_correction: false,
        }
    }

    /// Answers every effect after one second (run reads say PENDING) and returns the effects seen.
    fn drive(invocation: &mut UploadInvocation) -> (Vec<Effect>, Instant) {
        let mut now = Instant::ZERO;
        let mut effects = Vec::new();
        for _ in 0..1000 {
            let Some(effect) = invocation.poll_effect() else {
                break;
            };
            now = now.add(match effect {
                Effect::Sleep(duration) => duration,
                _ => Duration::from_secs(1),
            });
            let response = match effect {
                Effect::TableRead(_) => Response::RunState {
                    lines: RunState::Pending,
                    words: RunState::Pending,
                },
                _ => Response::Done,
            };
            effects.push(effect);
            invocation.handle_response(now, response);
        }
        assert!(invocation.is_done());
        (effects, now)
    }

    #[test]
    fn new_flow_goes_straight_to_langgraph() {
        let mut invocation =
            UploadInvocation::new(Instant::ZERO, behaviour(Flow::New), vec![plan()]);
        let (effects, _) = drive(&mut invocation);
        let run_insert = effects
            .iter()
            .position(|e| *e == Effect::TableWrite(TableWrite::RunInsert { receipt: 7 }));
        assert_eq!(
            effects[run_insert.unwrap() + 1],
            Effect::Work(Work::Langgraph)
        );
        assert!(effects.iter().all(|e| !matches!(e, Effect::TableRead(_))));
        assert_eq!(
            effects.last(),
            Some(&Effect::TableWrite(TableWrite::ChangedLabels {
                receipt: 7
            }))
        );
    }

    #[test]
    fn old_flow_waits_the_full_cap_when_the_run_is_never_marked() {
        let mut invocation =
            UploadInvocation::new(Instant::ZERO, behaviour(Flow::Old), vec![plan()]);
        let mut notes = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..1000 {
            let Some(effect) = invocation.poll_effect() else {
                break;
            };
            now = now.add(if let Effect::Sleep(d) = effect {
                d
            } else {
                Duration::from_millis(10)
            });
            let response = match effect {
                Effect::TableRead(_) => Response::RunState {
                    lines: RunState::Pending,
                    words: RunState::Completed,
                },
                _ => Response::Done,
            };
            invocation.handle_response(now, response);
            while let Some(note) = invocation.poll_note() {
                notes.push(note);
            }
        }
        let wait = notes.iter().find_map(|n| match n {
            UploadNote::Stage(_, Stage::Wait, d) => Some(*d),
            _ => None,
        });
        let wait = wait.expect("a wait stage");
        assert!(
            wait >= Duration::from_secs(120) && wait < Duration::from_secs(121),
            "{wait}"
        );
        assert!(notes.contains(&UploadNote::WaitCapped(7)));
        assert!(notes.contains(&UploadNote::Finished(7)));
    }
}
