//! Performing lock effects on the lease lock model: acquisition, release and heartbeats.

use super::*;

impl<P: Performer> Simulation<'_, P> {
    /// Lock acquisition, release and the start or stop of heartbeats.
    pub(super) fn perform_lock(
        &mut self,
        now: Instant,
        slot: u32,
        generation: u32,
        state: &mut CompactionSlot,
        effect: &Effect,
    ) -> Response {
        match effect {
            Effect::LockAcquire { collection, lease } => {
                match self.locks[collection.index()].acquire(now, *lease) {
                    Ok(owner) => Response::Lock {
                        owner: Some(owner.0),
                    },
                    Err(_) => Response::Lock { owner: None },
                }
            }
            Effect::LockValidate { collection, owner } => {
                // A holder about to act reads its lease: counted as the lock's own check is.
                let lock = &mut self.locks[collection.index()];
                match lock.check(now, ServiceOwner(*owner)) {
                    OwnerStatus::Holding => Response::Lock {
                        owner: Some(*owner),
                    },
                    _ => Response::Lock { owner: None },
                }
            }
            Effect::LockRelease { collection, owner } => {
                self.locks[collection.index()].release(now, ServiceOwner(*owner));
                Response::Done
            }
            Effect::LockHeartbeat {
                owner, interval, ..
            } => {
                if *interval > Duration::ZERO {
                    state.kept.heartbeat_owner = Some(ServiceOwner(*owner));
                    self.engine
                        .schedule_at(now.add(*interval), Event::Heartbeat { slot, generation });
                } else {
                    state.kept.heartbeat_owner = None;
                }
                Response::Done
            }
            other => unreachable!("not a lock operation: {other:?}"),
        }
    }
}
