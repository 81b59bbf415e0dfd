//! Validates the engine against queueing theory: the M/M/c model's mean wait in the line must land
//! within 2 % of Erlang C with 20 replications of 1 000 000 measured customers each, and Little's
//! law must hold on every replication.
//!
//! The heavy cases need an optimised build (`cargo test --profile ci`); a debug build skips them with a
//! message so that a plain `cargo test` stays fast. Replications run on all cores and are summarised
//! in index order, so the result does not depend on the number of threads.

use sim::mmc::{MmcConfig, MmcReport, Replication, run_replication, summarize};
use std::sync::atomic::{AtomicU64, Ordering};

const SEED: u64 = 20_240_611;
const REPLICATIONS: u32 = 20;
/// With a warm-up share of 0.2, 1 000 000 customers per replication are measured.
const CUSTOMERS: u64 = 1_250_000;
const WARMUP_FRACTION: f64 = 0.2;
const RELATIVE_ERROR_MAX: f64 = 0.02;

fn config(servers: u32, load: f64) -> MmcConfig {
    MmcConfig {
        servers,
        arrival_rate: load * f64::from(servers),
        service_rate: 1.0,
        customers: CUSTOMERS,
        replications: REPLICATIONS,
        warmup_fraction: WARMUP_FRACTION,
    }
}

/// Runs every replication of `config` on all cores; the result is in index order.
fn run_parallel(config: &MmcConfig, seed: u64) -> Vec<Replication> {
    let replications = u64::from(config.replications);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(replications as usize);
    let next_index = AtomicU64::new(0);
    let mut done: Vec<Replication> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next_index.fetch_add(1, Ordering::Relaxed);
                        if index >= replications {
                            break mine;
                        }
                        mine.push(run_replication(config, seed, index));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("replication panicked"))
            .collect()
    });
    done.sort_by_key(|replication| replication.index);
    assert_eq!(done.len() as u64, replications);
    done
}

fn check_against_erlang_c(servers: u32, load: f64) -> MmcReport {
    let config = config(servers, load);
    config.validate().expect("the validation scenario is valid");
    let replications = run_parallel(&config, SEED);
    for replication in &replications {
        assert_eq!(replication.measured_customers, 1_000_000);
        assert_eq!(
            replication.area_nanos, replication.sojourn_nanos_sum,
            "Little's law"
        );
    }
    let report = summarize(&config, &replications);
    println!(
        "M/M/{servers} at load {load}: Wq {:.4} s, 95 % CI [{:.4}, {:.4}], Erlang C {:.4} s, \
         relative error {:+.3} %, utilisation {:.4} (theory {:.4}), {} events, fingerprint {}",
        report.wq_mean,
        report.wq_ci95[0],
        report.wq_ci95[1],
        report.erlang_c_wq,
        100.0 * report.wq_relative_error,
        report.utilisation,
        report.utilisation_theory,
        report.events,
        report.fingerprint,
    );
    assert!(
        report.wq_relative_error.abs() < RELATIVE_ERROR_MAX,
        "M/M/{servers} at load {load}: Wq {} is not within 2 % of Erlang C {}",
        report.wq_mean,
        report.erlang_c_wq
    );
    assert!(
        (report.utilisation - load).abs() < 0.005,
        "utilisation {}",
        report.utilisation
    );
    assert!(
        report.little_law_max_abs_error < 1e-6,
        "{}",
        report.little_law_max_abs_error
    );
    assert_eq!(report.events, 2 * CUSTOMERS * u64::from(REPLICATIONS));
    report
}

fn skipped_in_debug(name: &str) -> bool {
    if cfg!(debug_assertions) {
        println!(
            "{name}: skipped in a debug build; run `cargo test --profile ci --test mmc_validation`"
        );
        return true;
    }
    false
}

#[test]
fn mm4_at_load_0_9_matches_erlang_c() {
    if skipped_in_debug("M/M/4 at load 0.9") {
        return;
    }
    let report = check_against_erlang_c(4, 0.9);
    assert!((report.erlang_c_wq - 1.9694).abs() < 5e-5);
}

#[test]
fn mm8_at_load_0_8_matches_erlang_c() {
    if skipped_in_debug("M/M/8 at load 0.8") {
        return;
    }
    check_against_erlang_c(8, 0.8);
}

#[test]
fn replications_are_independent_of_the_thread_that_runs_them() {
    let mut config = config(2, 0.7);
    config.customers = 5_000;
    config.replications = 4;
    let parallel = summarize(&config, &run_parallel(&config, SEED));
    let sequential = summarize(&config, &sim::mmc::run_replications(&config, SEED));
    assert_eq!(parallel, sequential);
}
