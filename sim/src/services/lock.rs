//! The DynamoDB lease lock of one collection (`LOCK#{collection}#chroma-{collection}-update`).
//!
//! `acquire` is a conditional put that succeeds if there is no lock item or the item's lease has
//! expired; each success mints a new owner id. `heartbeat` extends the lease of the owner named in
//! the item (a conditional update on the owner, which succeeds even after expiry if no one took the
//! lock meanwhile). `release` deletes the item if the caller still owns it; a release by a stale
//! owner is ignored and counted.
//!
//! Guarantee honoured: at most one owner holds an unexpired lease at any instant. It is only as good
//! as the lease: a holder that outlives its lease (no heartbeat, or work longer than the lease) keeps
//! working while a second holder gets in. `check` tells a holder, when it is about to act, whether it
//! still holds the lock, and counts each holder found working after losing its lease.
//! Depends on `time` only.

use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

/// An owner id, minted per successful acquisition (1, 2, 3, …).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockOwner(pub u64);

/// The lock item as stored.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: LockOwner,
    pub acquired_at: Instant,
    pub expires_at: Instant,
}

/// The conditional put failed: someone holds an unexpired lease.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Busy {
    pub holder: LockOwner,
    pub expires_at: Instant,
}

/// Whether a would-be holder still holds the lock.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OwnerStatus {
    /// The item names this owner and its lease has not expired.
    Holding,
    /// The item still names this owner but its lease expired (nobody took the lock yet).
    Expired { expired_at: Instant },
    /// Another owner took the lock after this owner's lease expired, or the owner released it.
    Lost,
}

/// Counts kept by the lock.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LockCounters {
    pub acquisitions: u64,
    pub busy_answers: u64,
    /// Acquisitions that replaced an expired lease of another owner.
    pub takeovers: u64,
    pub heartbeats: u64,
    pub heartbeats_rejected: u64,
    pub releases: u64,
    pub stale_releases: u64,
    /// Holders found still working (through `check`) after their lease expired; once per owner.
    pub expired_under_running_holder: u64,
}

/// Owners whose expired lease was taken over, kept until `check` reports them, at most this many.
const SUPERSEDED_MAX: usize = 4096;

/// One collection's lease lock.
#[derive(Clone, Debug, Default)]
pub struct LeaseLock {
    item: Option<Lease>,
    owner_last: u64,
    /// Owners whose lease was taken over by another acquisition.
    superseded: BTreeMap<LockOwner, Instant>,
    /// The current item's owner has been counted as expired under a running holder.
    item_expiry_counted: bool,
    counters: LockCounters,
}

impl LeaseLock {
    pub fn new() -> LeaseLock {
        LeaseLock::default()
    }

    pub fn counters(&self) -> &LockCounters {
        &self.counters
    }

    /// The holder of an unexpired lease at `now`.
    pub fn holder(&self, now: Instant) -> Option<Lease> {
        self.item.filter(|lease| now < lease.expires_at)
    }

    /// Conditional put: succeeds if there is no lock item or its lease expired; returns the new owner.
    pub fn acquire(&mut self, now: Instant, lease: Duration) -> Result<LockOwner, Busy> {
        assert!(lease > Duration::ZERO, "a lease must be positive");
        if let Some(current) = self.holder(now) {
            self.counters.busy_answers += 1;
            return Err(Busy {
                holder: current.owner,
                expires_at: current.expires_at,
            });
        }
        if let Some(expired) = self.item.take() {
            self.counters.takeovers += 1;
            if !self.item_expiry_counted {
                if self.superseded.len() >= SUPERSEDED_MAX {
                    self.superseded.pop_first();
                }
                self.superseded.insert(expired.owner, expired.expires_at);
            }
        }
        self.owner_last += 1;
        let owner = LockOwner(self.owner_last);
        self.item = Some(Lease {
            owner,
            acquired_at: now,
            expires_at: now.add(lease),
        });
        self.item_expiry_counted = false;
        self.counters.acquisitions += 1;
        assert_eq!(self.holder(now).map(|l| l.owner), Some(owner));
        Ok(owner)
    }

    /// Extends the lease to `now + lease` if the item still names `owner`; returns the new expiry.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        owner: LockOwner,
        lease: Duration,
    ) -> Result<Instant, OwnerStatus> {
        match &mut self.item {
            Some(item) if item.owner == owner => {
                item.expires_at = now.add(lease);
                self.counters.heartbeats += 1;
                Ok(item.expires_at)
            }
            _ => {
                self.counters.heartbeats_rejected += 1;
                Err(OwnerStatus::Lost)
            }
        }
    }

    /// Deletes the lock item if `owner` still owns it (expired or not); otherwise ignored and counted.
    pub fn release(&mut self, _now: Instant, owner: LockOwner) -> bool {
        if self.item.is_some_and(|item| item.owner == owner) {
            self.item = None;
            self.counters.releases += 1;
            true
        } else {
            self.counters.stale_releases += 1;
            false
        }
    }

    /// The status of `owner` at `now`, without counting anything.
    pub fn status(&self, now: Instant, owner: LockOwner) -> OwnerStatus {
        match self.item {
            Some(item) if item.owner == owner && now < item.expires_at => OwnerStatus::Holding,
            Some(item) if item.owner == owner => OwnerStatus::Expired {
                expired_at: item.expires_at,
            },
            _ => OwnerStatus::Lost,
        }
    }

    /// A holder about to act (publish, write the pointer) checks its lease. A holder whose lease
    /// expired is counted, once, as "lease expired under a running holder".
    pub fn check(&mut self, now: Instant, owner: LockOwner) -> OwnerStatus {
        let status = self.status(now, owner);
        match status {
            OwnerStatus::Holding => {}
            OwnerStatus::Expired { .. } => {
                if !self.item_expiry_counted {
                    self.item_expiry_counted = true;
                    self.counters.expired_under_running_holder += 1;
                }
            }
            OwnerStatus::Lost => {
                if self.superseded.remove(&owner).is_some() {
                    self.counters.expired_under_running_holder += 1;
                }
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(180);

    #[test]
    fn busy_until_released() {
        let mut lock = LeaseLock::new();
        let first = lock.acquire(Instant(0), LEASE).unwrap();
        let busy = lock.acquire(Instant(10), LEASE).unwrap_err();
        assert_eq!(
            busy,
            Busy {
                holder: first,
                expires_at: Instant(0).add(LEASE)
            }
        );
        assert!(lock.release(Instant(20), first));
        let second = lock.acquire(Instant(30), LEASE).unwrap();
        assert_ne!(first, second, "a new owner id each time");
        assert!(
            !lock.release(Instant(40), first),
            "a stale release is ignored"
        );
        assert_eq!(lock.holder(Instant(40)).unwrap().owner, second);
        assert_eq!(lock.counters().stale_releases, 1);
        assert_eq!(lock.counters().busy_answers, 1);
    }

    /// A holder that outlives its lease lets a second holder in while it still works; when the first
    /// holder later checks before publishing, it learns it lost the lock and is counted.
    #[test]
    fn lease_expiry_lets_a_second_holder_in() {
        let mut lock = LeaseLock::new();
        let first = lock.acquire(Instant(0), LEASE).unwrap();
        let after_lease = Instant(0).add(LEASE).add(Duration(1));
        assert_eq!(
            lock.check(after_lease, first),
            OwnerStatus::Expired {
                expired_at: Instant(0).add(LEASE)
            }
        );
        let second = lock.acquire(after_lease, LEASE).unwrap();
        assert_eq!(lock.counters().takeovers, 1);
        assert_eq!(lock.check(after_lease, first), OwnerStatus::Lost);
        assert_eq!(lock.check(after_lease, second), OwnerStatus::Holding);
        assert_eq!(
            lock.counters().expired_under_running_holder,
            1,
            "counted once per holder"
        );
        assert!(lock.heartbeat(after_lease, first, LEASE).is_err());
        assert!(!lock.release(after_lease, first));
    }

    #[test]
    fn heartbeat_keeps_the_lease() {
        let mut lock = LeaseLock::new();
        let owner = lock.acquire(Instant(0), LEASE).unwrap();
        let mut now = Instant(0);
        for _ in 0..20 {
            now = now.add(Duration::from_secs(30));
            lock.heartbeat(now, owner, LEASE).unwrap();
        }
        assert!(
            lock.acquire(now.add(Duration::from_secs(60)), LEASE)
                .is_err()
        );
        assert_eq!(lock.check(now, owner), OwnerStatus::Holding);
        assert_eq!(lock.counters().expired_under_running_holder, 0);
    }

    #[test]
    fn taken_over_holder_is_counted_when_it_checks() {
        let mut lock = LeaseLock::new();
        let first = lock.acquire(Instant(0), LEASE).unwrap();
        let later = Instant(0).add(LEASE).add(Duration::from_secs(1));
        lock.acquire(later, LEASE).unwrap();
        assert_eq!(lock.counters().expired_under_running_holder, 0);
        assert_eq!(lock.check(later, first), OwnerStatus::Lost);
        assert_eq!(lock.check(later, first), OwnerStatus::Lost);
        assert_eq!(lock.counters().expired_under_running_holder, 1);
    }
}
