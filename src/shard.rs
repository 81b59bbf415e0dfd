//! Which share of a command's cases this process runs: `--shard I/N` (I from 0), or the array
//! index a batch system sets (Slurm, Kubernetes indexed jobs, AWS Batch). Case `k` belongs to shard
//! `k mod N`, so shards are deterministic and balanced whatever the machine.
//!
//! Depends on `failure` and the process environment only.

use crate::failure::Failure;
use serde::{Deserialize, Serialize};

/// The most shards a command may be split into.
const SHARDS_MAX: u64 = 1_000_000;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u64, count: u64, origin: &str) -> Result<Shard, Failure> {
        if count == 0 || count > SHARDS_MAX {
            return Err(Failure::bad_input(format!(
                "{origin}: shard count {count}: must be 1 to {SHARDS_MAX}"
            )));
        }
        if index >= count {
            return Err(Failure::bad_input(format!(
                "{origin}: shard index {index} of {count}: indexes run from 0 to {}",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// Whether case `case` is this shard's.
    pub fn owns(&self, case: u64) -> bool {
        case % self.count == self.index
    }
}

fn number(text: &str, origin: &str) -> Result<u64, Failure> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| Failure::bad_input(format!("{origin}: `{text}` is not a whole number")))
}

/// `--shard I/N`, else the batch system's array index, else the whole.
pub fn resolve(flag: Option<&str>) -> Result<Shard, Failure> {
    resolve_from(flag, &|name| std::env::var(name).ok())
}

fn resolve_from(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Shard, Failure> {
    if let Some(text) = flag {
        let origin = format!("--shard {text}");
        let Some((index, count)) = text.split_once('/') else {
            return Err(Failure::bad_input(format!(
                "{origin}: expected I/N, e.g. --shard 0/4"
            )));
        };
        return Shard::new(number(index, &origin)?, number(count, &origin)?, &origin);
    }
    let pairs = [
        ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
        ("JOB_COMPLETION_INDEX", "RECEIPT_SIM_SHARD_COUNT"),
        ("AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE"),
    ];
    for (index_name, count_name) in pairs {
        let Some(index) = env(index_name) else {
            continue;
        };
        let origin = format!("{index_name}={index}");
        let Some(count) = env(count_name) else {
            return Err(Failure::bad_input(format!(
                "{origin} is set but {count_name} is not: set it to the number of shards"
            )));
        };
        let mut index = number(&index, &origin)?;
        if index_name == "SLURM_ARRAY_TASK_ID" {
            // `--array=1-4` numbers tasks from 1: shards count from the array's first task.
            let first = env("SLURM_ARRAY_TASK_MIN").map_or(Ok(0), |m| number(&m, &origin))?;
            index = index.checked_sub(first).ok_or_else(|| {
                Failure::bad_input(format!("{origin}: below SLURM_ARRAY_TASK_MIN={first}"))
            })?;
        }
        return Shard::new(
            index,
            number(&count, &format!("{count_name}={count}"))?,
            &origin,
        );
    }
    Ok(Shard::WHOLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn flag_and_batch_systems_name_the_shard() {
        let none = with(&[]);
        assert_eq!(
            resolve_from(Some("2/5"), &none).unwrap(),
            Shard { index: 2, count: 5 }
        );
        assert_eq!(resolve_from(None, &none).unwrap(), Shard::WHOLE);
        let slurm = with(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        assert_eq!(
            resolve_from(None, &slurm).unwrap(),
            Shard { index: 3, count: 4 }
        );
        let k8s = with(&[
            ("JOB_COMPLETION_INDEX", "0"),
            ("RECEIPT_SIM_SHARD_COUNT", "3"),
        ]);
        assert_eq!(
            resolve_from(None, &k8s).unwrap(),
            Shard { index: 0, count: 3 }
        );
        let aws = with(&[
            ("AWS_BATCH_JOB_ARRAY_INDEX", "1"),
            ("AWS_BATCH_JOB_ARRAY_SIZE", "2"),
        ]);
        assert_eq!(
            resolve_from(None, &aws).unwrap(),
            Shard { index: 1, count: 2 }
        );
        assert!(resolve_from(Some("3/3"), &none).is_err());
        assert!(resolve_from(Some("x"), &none).is_err());
        assert!(resolve_from(None, &with(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
    }

    #[test]
    fn shards_partition_the_cases() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3, "t").unwrap()).collect();
        for case in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(case)).count(), 1);
        }
    }
}
