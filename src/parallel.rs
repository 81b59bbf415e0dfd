//! Running independent trials on all cores: one thread per trial at a time, results in index order,
//! so the output never depends on which thread finished first. Shows a progress bar on a terminal.
//!
//! Depends on `std::thread`, `indicatif` and `sim::pipeline` (a trial's progress).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many worker threads to use: all cores unless `RECEIPT_SIM_THREADS` says otherwise.
pub fn threads() -> usize {
    std::env::var("RECEIPT_SIM_THREADS")
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .filter(|threads| *threads > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A progress bar on standard error, hidden when it is not a terminal.
pub fn progress(length: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// Events between two looks at a running trial: a few per second on a large trial.
const TRIAL_PROGRESS_EVENTS: u64 = 1 << 16;

/// Progress inside one long trial, on a terminal only (`None` elsewhere): simulated time reached,
/// receipts saved of all, events per second. The bar is cleared when dropped.
pub fn trial_progress(receipts: u64) -> Option<(sim::pipeline::Observer, ProgressBar)> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(receipts), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("trial [{bar:20}] {pos}/{len} saved, {msg} ({elapsed})")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let drawn = bar.clone();
    let call = move |progress: &sim::pipeline::TrialProgress| {
        let per_s = progress.events as f64 / drawn.elapsed().as_secs_f64().max(1e-9);
        drawn.set_position(progress.receipts_saved);
        drawn.set_message(format!(
            "{:.1} h simulated, {:.2} M events/s",
            progress.now.as_secs_f64() / 3600.0,
            per_s / 1e6
        ));
    };
    let observer = sim::pipeline::Observer {
        every_events: TRIAL_PROGRESS_EVENTS,
        call: std::sync::Arc::new(call),
    };
    Some((observer, bar))
}

/// Runs `task(0..count)` on up to `threads()` threads and returns the results in index order.
pub fn map<T: Send>(count: usize, label: &str, task: impl Fn(usize) -> T + Sync) -> Vec<T> {
    map_in(count, label, || (), |_, index| task(index))
}

/// `map`, where each worker makes its own `state` once (`init`) and hands it to every task it
/// runs (`for_each_done_in`).
pub fn map_in<S, T: Send>(
    count: usize,
    label: &str,
    init: impl Fn() -> S + Sync,
    task: impl Fn(&mut S, usize) -> T + Sync,
) -> Vec<T> {
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    for_each_done_in(count, None, label, init, task, |index, result| {
        results[index] = Some(result);
    });
    results
        .into_iter()
        .map(|r| r.expect("without a deadline every index runs"))
        .collect()
}

/// Runs `task(0..count)` on up to `threads()` threads and hands each result to `done` as soon as
/// it is ready (in completion order, one call at a time), so the caller can save partial results.
/// Once `deadline` has passed (wall clock: how long to explore is the user's choice, not part of
/// any trial) no new index is handed out: the indices run are then `0..k` for some `k`, each run
/// to completion. Returns `k`.
pub fn for_each_done<T: Send>(
    count: usize,
    deadline: Option<std::time::Instant>,
    label: &str,
    task: impl Fn(usize) -> T + Sync,
    done: impl FnMut(usize, T) + Send,
) -> usize {
    for_each_done_in(count, deadline, label, || (), |_, index| task(index), done)
}

/// `for_each_done`, where each worker makes its own `state` once (`init`, before its first task)
/// and hands it to every task it runs: storage a worker reuses from trial to trial
/// (`sim::explore::Explorer`).
pub fn for_each_done_in<S, T: Send>(
    count: usize,
    deadline: Option<std::time::Instant>,
    label: &str,
    init: impl Fn() -> S + Sync,
    task: impl Fn(&mut S, usize) -> T + Sync,
    done: impl FnMut(usize, T) + Send,
) -> usize {
    let next = AtomicUsize::new(0);
    let ran = AtomicUsize::new(0);
    let bar = progress(count as u64, label);
    let workers = threads().min(count.max(1));
    let done = Mutex::new(done);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                // Made when the worker takes its first index: a worker left without one makes none.
                let mut state: Option<S> = None;
                loop {
                    if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let result = task(state.get_or_insert_with(&init), index);
                    (done.lock().expect("no worker panicked"))(index, result);
                    ran.fetch_add(1, Ordering::Relaxed);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    ran.into_inner()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_in_index_order() {
        let squares = super::map(100, "test", |i| i * i);
        assert_eq!(squares, (0..100).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn every_result_is_handed_over_once() {
        let mut seen = [0; 50];
        super::for_each_done(
            50,
            None,
            "test",
            |i| i * 2,
            |i, value| {
                assert_eq!(value, i * 2);
                seen[i] += 1;
            },
        );
        assert!(seen.iter().all(|n| *n == 1));
    }

    #[test]
    fn each_worker_makes_its_state_once_and_keeps_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let inits = AtomicUsize::new(0);
        let counts = super::map_in(
            64,
            "test",
            || {
                inits.fetch_add(1, Ordering::Relaxed);
                0usize
            },
            |ran, _| {
                *ran += 1;
                *ran
            },
        );
        let inits = inits.into_inner();
        assert!((1..=super::threads().min(64)).contains(&inits));
        // Each worker that made a state ran a task with it: its count starts at 1 once and rises
        // with every task it runs.
        assert_eq!(counts.iter().filter(|ran| **ran == 1).count(), inits);
        assert!(*counts.iter().max().expect("64 results") >= 64 / inits);
    }
}
