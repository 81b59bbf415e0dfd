//! The M/M/c queue: Poisson arrivals, `servers` identical exponential servers, one FIFO waiting line.
//! It validates the engine against queueing theory (Erlang C) and Little's law, and is the engine's
//! benchmark model.
//!
//! One replication is one trial: it starts empty at time zero, admits exactly `customers` customers,
//! and runs until the last one leaves, so it also ends empty. Replications draw from their own indexed
//! streams and are independent, so a caller may run them on several threads and summarise them in
//! index order. Times are reported in seconds and rates per second.
//!
//! Depends on `engine`, `random`, `time` and `stats`; draws exponentials with `rand_distr::Exp1`.

use crate::engine::{Engine, Event, Stop};
use crate::random::{Stream, Streams, mix64};
use crate::stats;
use crate::time::{Duration, Instant, NANOS_PER_SEC};
use rand::RngExt;
use rand_distr::Exp1;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The most customers one replication may admit (about 1.1 e12), so that event counts and integer
/// sums stay far from overflow.
pub const CUSTOMERS_MAX: u64 = 1 << 40;

/// The most servers; Erlang C and the engine are fine beyond, but no scenario needs more.
pub const SERVERS_MAX: u32 = 1 << 20;

/// The most replications one scenario may ask for.
pub const REPLICATIONS_MAX: u32 = 1 << 20;

/// The most customers of all replications together: two events each, a few minutes of work.
pub const CUSTOMERS_TOTAL_MAX: u64 = 2_000_000_000;

/// The longest expected span of one replication in virtual seconds (about three years), so that
/// no instant comes near `Instant::MAX` (about 584 years).
pub const SPAN_S_MAX: f64 = 1e8;

/// A scenario file for the M/M/c validation model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmcScenario {
    #[serde(default = "default_seed", with = "crate::random::seed_serde")]
    pub seed: u64,
    pub mmc: MmcConfig,
}

fn default_seed() -> u64 {
    1
}

/// The queue and the replication plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmcConfig {
    /// Identical servers, c.
    pub servers: u32,
    /// Customers per second, lambda.
    pub arrival_rate: f64,
    /// Customers per second one server completes, mu.
    pub service_rate: f64,
    /// Customers admitted per replication, warm-up included.
    pub customers: u64,
    pub replications: u32,
    /// The share of each replication's first customers left out of the waiting-time statistics.
    pub warmup_fraction: f64,
}

impl MmcScenario {
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.mmc.validate()
    }
}

/// A failure of `mmc.{field}`.
fn fail(field: &str, message: String) -> Result<(), (String, String)> {
    Err((format!("mmc.{field}"), message))
}

/// A count between 1 and `max`.
fn count_within(field: &str, value: u64, max: u64) -> Result<(), (String, String)> {
    if value == 0 || value > max {
        return fail(field, format!("must be between 1 and {max}, not {value}"));
    }
    Ok(())
}

impl MmcConfig {
    /// Checks the configuration; on failure names the field (`mmc.servers`) and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        count_within("servers", u64::from(self.servers), u64::from(SERVERS_MAX))?;
        for (field, rate) in [
            ("arrival_rate", self.arrival_rate),
            ("service_rate", self.service_rate),
        ] {
            if !rate.is_finite() || rate <= 0.0 {
                return fail(
                    field,
                    format!("must be a positive, finite rate per second, not {rate}"),
                );
            }
        }
        let load = self.load();
        if load >= 1.0 {
            return fail(
                "arrival_rate",
                format!(
                    "load arrival_rate / (servers * service_rate) = {load} is at least 1: the queue has no \
                     steady state and grows without bound; lower arrival_rate or add servers"
                ),
            );
        }
        count_within("customers", self.customers, CUSTOMERS_MAX)?;
        count_within(
            "replications",
            u64::from(self.replications),
            u64::from(REPLICATIONS_MAX),
        )?;
        self.check_spans()?;
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return fail(
                "warmup_fraction",
                format!(
                    "must be at least 0 and below 1, not {}",
                    self.warmup_fraction
                ),
            );
        }
        Ok(())
    }

    /// The work and the virtual time the replications would span, each within its bound.
    fn check_spans(&self) -> Result<(), (String, String)> {
        let customers_total = self.customers.saturating_mul(u64::from(self.replications));
        if customers_total > CUSTOMERS_TOTAL_MAX {
            return fail(
                "customers",
                format!(
                    "customers x replications = {customers_total} is more than {CUSTOMERS_TOTAL_MAX}; \
                     lower customers or replications"
                ),
            );
        }
        let span_s = self.customers as f64 / self.arrival_rate;
        if span_s > SPAN_S_MAX {
            return fail(
                "arrival_rate",
                format!(
                    "{} customers at {} per second span about {span_s:.3e} s of virtual time, more \
                     than {SPAN_S_MAX:e} s; raise arrival_rate or lower customers",
                    self.customers, self.arrival_rate
                ),
            );
        }
        if 1.0 / self.service_rate > SPAN_S_MAX / 1e3 {
            return fail(
                "service_rate",
                format!(
                    "a mean service time of {:.3e} s is longer than {:e} s",
                    1.0 / self.service_rate,
                    SPAN_S_MAX / 1e3
                ),
            );
        }
        Ok(())
    }

    /// The offered load per server, rho = lambda / (c mu): the utilisation theory predicts.
    pub fn load(&self) -> f64 {
        self.arrival_rate / (f64::from(self.servers) * self.service_rate)
    }

    /// Customers left out of the waiting-time statistics; at least one customer is always measured.
    pub fn warmup_customers(&self) -> u64 {
        let warmup = (self.warmup_fraction * self.customers as f64).floor() as u64;
        warmup.min(self.customers.saturating_sub(1))
    }
}

/// The expected waiting time in the line (before service) of an M/M/c queue, in seconds, from the
/// Erlang C formula. The Erlang B recursion keeps it stable for any number of servers.
pub fn erlang_c_wq(servers: u32, arrival_rate: f64, service_rate: f64) -> f64 {
    assert!(servers > 0);
    assert!(arrival_rate > 0.0 && arrival_rate.is_finite());
    assert!(service_rate > 0.0 && service_rate.is_finite());
    let offered = arrival_rate / service_rate;
    let load = offered / f64::from(servers);
    assert!(load < 1.0, "no steady state at load {load}");
    // Erlang B: B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)).
    let mut blocking = 1.0;
    for k in 1..=servers {
        blocking = offered * blocking / (f64::from(k) + offered * blocking);
    }
    let probability_wait = blocking / (1.0 - load * (1.0 - blocking));
    assert!((0.0..=1.0).contains(&probability_wait));
    probability_wait / (f64::from(servers) * service_rate - arrival_rate)
}

/// The two things that happen in an M/M/c queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MmcEvent {
    /// Customer `customer` (numbered from 0 in order of arrival) arrives.
    Arrival { customer: u64 },
    /// Customer `customer` finishes service and leaves.
    Departure { customer: u64 },
}

impl Event for MmcEvent {
    fn digest(&self) -> u64 {
        match *self {
            MmcEvent::Arrival { customer } => customer.wrapping_mul(2),
            MmcEvent::Departure { customer } => customer.wrapping_mul(2) | 1,
        }
    }
}

/// What one replication measured. Sums are exact integers in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replication {
    pub index: u64,
    pub customers: u64,
    /// Customers after the warm-up, whose waits are in `wait_nanos_sum`.
    pub measured_customers: u64,
    pub wait_nanos_sum: u128,
    /// Server-nanoseconds spent serving, over all customers.
    pub busy_nanos_sum: u128,
    /// The area under N(t), the number in the system, in customer-nanoseconds.
    pub area_nanos: u128,
    /// The sum of every customer's time in the system (waiting plus service).
    pub sojourn_nanos_sum: u128,
    /// When the last customer left: the trial's length.
    pub end_nanos: u64,
    pub events: u64,
    pub fingerprint: u64,
}

impl Replication {
    /// The mean wait in the line of the measured customers, in seconds.
    pub fn wait_mean(&self) -> f64 {
        assert!(self.measured_customers > 0);
        self.wait_nanos_sum as f64 / self.measured_customers as f64 / NANOS_PER_SEC as f64
    }

    /// The measured share of server time spent serving.
    pub fn utilisation(&self, servers: u32) -> f64 {
        assert!(
            self.end_nanos > 0,
            "a replication that took no time has no utilisation"
        );
        self.busy_nanos_sum as f64 / (f64::from(servers) * self.end_nanos as f64)
    }

    /// |L - lambda W| with L = area / T, lambda = n / T and W = sojourn sum / n, in customers.
    pub fn little_law_abs_error(&self) -> f64 {
        if self.end_nanos == 0 {
            return 0.0;
        }
        let elapsed = self.end_nanos as f64;
        let number_mean = self.area_nanos as f64 / elapsed;
        let throughput = self.customers as f64 / elapsed;
        let sojourn_mean = self.sojourn_nanos_sum as f64 / self.customers as f64;
        (number_mean - throughput * sojourn_mean).abs()
    }
}

/// The state of the queue during one replication.
struct Queue {
    customers: u64,
    warmup_customers: u64,
    servers: u32,
    arrival_mean_nanos: f64,
    service_mean_nanos: f64,
    arrivals: Stream,
    service: Stream,
    /// Customers waiting for a server, with their arrival times, first come first served.
    waiting: VecDeque<(u64, Instant)>,
    busy_servers: u32,
    in_system: u64,
    last_change: Instant,
    arrived: u64,
    departed: u64,
    wait_nanos_sum: u128,
    busy_nanos_sum: u128,
    area_nanos: u128,
    sojourn_nanos_sum: u128,
}

/// An exponential delay of the given mean, rounded to the nanosecond. It does not go through
/// `distribution` so that the validation model and the engine benchmark stay minimal.
pub fn exponential(stream: &mut Stream, mean_nanos: f64) -> Duration {
    let draw: f64 = stream.sample(Exp1);
    // `as` saturates, so a huge draw cannot wrap.
    Duration((draw * mean_nanos + 0.5) as u64)
}

impl Queue {
    fn new(config: &MmcConfig, streams: &Streams, index: u64) -> Queue {
        Queue {
            customers: config.customers,
            warmup_customers: config.warmup_customers(),
            servers: config.servers,
            arrival_mean_nanos: NANOS_PER_SEC as f64 / config.arrival_rate,
            service_mean_nanos: NANOS_PER_SEC as f64 / config.service_rate,
            arrivals: streams.stream_indexed("mmc.arrivals", index),
            service: streams.stream_indexed("mmc.service", index),
            waiting: VecDeque::with_capacity(1024),
            busy_servers: 0,
            in_system: 0,
            last_change: Instant::ZERO,
            arrived: 0,
            departed: 0,
            wait_nanos_sum: 0,
            busy_nanos_sum: 0,
            area_nanos: 0,
            sojourn_nanos_sum: 0,
        }
    }

    /// Adds the area under N(t) since the last event.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.since(self.last_change).as_nanos();
        self.area_nanos += u128::from(self.in_system) * u128::from(elapsed);
        self.last_change = now;
    }

    fn schedule_arrival(&mut self, engine: &mut Engine<MmcEvent>, customer: u64) {
        let gap = exponential(&mut self.arrivals, self.arrival_mean_nanos);
        engine.schedule_in(gap, MmcEvent::Arrival { customer });
    }

    /// Puts `customer`, who arrived at `arrived`, on a free server now.
    fn start_service(&mut self, engine: &mut Engine<MmcEvent>, customer: u64, arrived: Instant) {
        assert!(self.busy_servers < self.servers);
        let now = engine.now();
        let wait = now.since(arrived);
        let service = exponential(&mut self.service, self.service_mean_nanos);
        if customer >= self.warmup_customers {
            self.wait_nanos_sum += u128::from(wait.as_nanos());
        }
        self.busy_servers += 1;
        self.busy_nanos_sum += u128::from(service.as_nanos());
        self.sojourn_nanos_sum += u128::from(wait.as_nanos()) + u128::from(service.as_nanos());
        engine.schedule_in(service, MmcEvent::Departure { customer });
    }

    fn on_arrival(&mut self, engine: &mut Engine<MmcEvent>, customer: u64) {
        assert_eq!(customer, self.arrived, "customers arrive in order");
        self.arrived += 1;
        self.in_system += 1;
        if self.arrived < self.customers {
            self.schedule_arrival(engine, self.arrived);
        }
        if self.busy_servers < self.servers {
            self.start_service(engine, customer, engine.now());
        } else {
            assert!(self.waiting.len() as u64 <= self.customers);
            self.waiting.push_back((customer, engine.now()));
        }
    }

    fn on_departure(&mut self, engine: &mut Engine<MmcEvent>) {
        assert!(self.busy_servers > 0);
        assert!(self.in_system > 0);
        self.busy_servers -= 1;
        self.in_system -= 1;
        self.departed += 1;
        if let Some((next, arrived)) = self.waiting.pop_front() {
            self.start_service(engine, next, arrived);
        }
    }
}

/// Runs replication `index` of `config` with the streams of `seed`.
pub fn run_replication(config: &MmcConfig, seed: u64, index: u64) -> Replication {
    if let Err((field, message)) = config.validate() {
        panic!("invalid M/M/c configuration: {field} {message}");
    }
    let streams = Streams::new(seed);
    let mut queue = Queue::new(config, &streams, index);
    // Every customer arrives once and leaves once; the limit stops a model that would not.
    let events_expected = 2 * config.customers;
    let mut engine = Engine::new().with_event_limit(events_expected + 1);
    queue.schedule_arrival(&mut engine, 0);
    while let Some((now, event)) = engine.next() {
        queue.advance(now);
        match event {
            MmcEvent::Arrival { customer } => queue.on_arrival(&mut engine, customer),
            MmcEvent::Departure { .. } => queue.on_departure(&mut engine),
        }
    }
    assert_eq!(
        engine.stop(),
        Some(Stop::Empty),
        "the replication did not drain"
    );
    engine.assert_accounted();
    assert_eq!(engine.events(), events_expected);
    assert_eq!(queue.arrived, config.customers);
    assert_eq!(queue.departed, config.customers);
    assert!(queue.waiting.is_empty());
    assert_eq!(queue.in_system, 0);
    // Little's law in integers: both sides count the same customer-nanoseconds.
    assert_eq!(
        queue.area_nanos, queue.sojourn_nanos_sum,
        "Little's law broken"
    );
    Replication {
        index,
        customers: config.customers,
        measured_customers: config.customers - config.warmup_customers(),
        wait_nanos_sum: queue.wait_nanos_sum,
        busy_nanos_sum: queue.busy_nanos_sum,
        area_nanos: queue.area_nanos,
        sojourn_nanos_sum: queue.sojourn_nanos_sum,
        end_nanos: engine.now().as_nanos(),
        events: engine.events(),
        fingerprint: engine.fingerprint(),
    }
}

/// Runs every replication of `config` one after another, in index order.
pub fn run_replications(config: &MmcConfig, seed: u64) -> Vec<Replication> {
    (0..u64::from(config.replications))
        .map(|index| run_replication(config, seed, index))
        .collect()
}

/// The summary of all replications of one M/M/c scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MmcReport {
    pub model: &'static str,
    pub servers: u32,
    /// Per second.
    pub arrival_rate: f64,
    /// Per second.
    pub service_rate: f64,
    pub replications: u32,
    /// Per replication, warm-up included.
    pub customers: u64,
    pub warmup_fraction: f64,
    /// The mean over replications of each replication's mean wait in the line, in seconds.
    pub wq_mean: f64,
    /// The Student's t 95 % interval of `wq_mean`, over replication means, in seconds.
    pub wq_ci95: [f64; 2],
    /// What Erlang C predicts for `wq_mean`, in seconds.
    pub erlang_c_wq: f64,
    /// (wq_mean - erlang_c_wq) / erlang_c_wq.
    pub wq_relative_error: f64,
    /// Each replication's mean wait in the line, in index order, in seconds.
    pub wq_means: Vec<f64>,
    /// Measured busy server-time over available server-time, pooled over replications.
    pub utilisation: f64,
    pub utilisation_theory: f64,
    /// The largest |L - lambda W| over replications, in customers (zero up to rounding).
    pub little_law_max_abs_error: f64,
    /// Events handled, over all replications.
    pub events: u64,
    /// The replication fingerprints mixed in index order, as 16 hex digits.
    pub fingerprint: String,
}

/// Summarises `replications`, which must be all of `config`'s, in index order.
pub fn summarize(config: &MmcConfig, replications: &[Replication]) -> MmcReport {
    assert_eq!(
        replications.len(),
        config.replications as usize,
        "every replication is summarised"
    );
    let mut fingerprint: u64 = 0x6d6d_635f_7265_706f;
    for (position, replication) in replications.iter().enumerate() {
        assert_eq!(
            replication.index, position as u64,
            "replications are summarised in index order"
        );
        assert_eq!(replication.customers, config.customers);
        fingerprint = mix64(fingerprint.rotate_left(23) ^ replication.fingerprint);
    }
    let wq_means: Vec<f64> = replications.iter().map(Replication::wait_mean).collect();
    let (wq_mean, wq_ci95) = stats::mean_ci95(&wq_means);
    let erlang_c_wq = erlang_c_wq(config.servers, config.arrival_rate, config.service_rate);
    let busy_nanos: f64 = replications.iter().map(|r| r.busy_nanos_sum as f64).sum();
    let elapsed_nanos: f64 = replications.iter().map(|r| r.end_nanos as f64).sum();
    let little_law_max_abs_error = replications
        .iter()
        .map(Replication::little_law_abs_error)
        .fold(0.0, f64::max);
    MmcReport {
        model: "mmc",
        servers: config.servers,
        arrival_rate: config.arrival_rate,
        service_rate: config.service_rate,
        replications: config.replications,
        customers: config.customers,
        warmup_fraction: config.warmup_fraction,
        wq_mean,
        wq_ci95,
        erlang_c_wq,
        wq_relative_error: (wq_mean - erlang_c_wq) / erlang_c_wq,
        wq_means,
        utilisation: busy_nanos / (f64::from(config.servers) * elapsed_nanos),
        utilisation_theory: config.load(),
        little_law_max_abs_error,
        events: replications.iter().map(|r| r.events).sum(),
        fingerprint: format!("{fingerprint:016x}"),
    }
}

/// Runs every replication of `scenario` one after another and summarises them.
pub fn run_scenario(scenario: &MmcScenario) -> MmcReport {
    summarize(
        &scenario.mmc,
        &run_replications(&scenario.mmc, scenario.seed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(servers: u32, arrival_rate: f64, customers: u64, replications: u32) -> MmcConfig {
        MmcConfig {
            servers,
            arrival_rate,
            service_rate: 1.0,
            customers,
            replications,
            warmup_fraction: 0.1,
        }
    }

    #[test]
    fn erlang_c_known_values() {
        // M/M/4 at load 0.9 with service rate 1.
        assert!(
            (erlang_c_wq(4, 3.6, 1.0) - 1.9694).abs() < 5e-5,
            "{}",
            erlang_c_wq(4, 3.6, 1.0)
        );
        // M/M/1: Wq = rho / (mu - lambda).
        for (arrival_rate, service_rate) in [(0.5, 1.0), (0.9, 1.0), (3.0, 4.0)] {
            let load = arrival_rate / service_rate;
            let expected = load / (service_rate - arrival_rate);
            assert!((erlang_c_wq(1, arrival_rate, service_rate) - expected).abs() < 1e-12);
        }
        // M/M/2 with offered load 1: P(wait) = 1/3, Wq = (1/3) / (2 - 1).
        assert!((erlang_c_wq(2, 1.0, 1.0) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn erlang_c_is_stable_for_many_servers() {
        let wq = erlang_c_wq(10_000, 9_900.0, 1.0);
        assert!(wq.is_finite() && wq > 0.0, "{wq}");
        // More servers at the same load wait less.
        assert!(wq < erlang_c_wq(100, 99.0, 1.0));
    }

    #[test]
    fn little_law_holds_exactly_on_a_small_trial() {
        let replication = run_replication(&config(2, 1.6, 500, 1), 3, 0);
        assert!(replication.area_nanos > 0);
        assert_eq!(replication.area_nanos, replication.sojourn_nanos_sum);
        assert!(replication.little_law_abs_error() < 1e-9);
        assert_eq!(replication.events, 1000);
        // Nobody can be busier than all servers all the time.
        let utilisation = replication.utilisation(2);
        assert!(utilisation > 0.0 && utilisation <= 1.0, "{utilisation}");
        assert!(replication.wait_nanos_sum > 0, "at load 0.8 someone waits");
    }

    #[test]
    fn nobody_waits_when_there_is_a_server_per_customer() {
        let replication = run_replication(&config(20, 2.0, 20, 1), 9, 0);
        assert_eq!(replication.wait_nanos_sum, 0);
        assert_eq!(replication.sojourn_nanos_sum, replication.busy_nanos_sum);
        assert_eq!(replication.measured_customers, 18);
    }

    #[test]
    fn same_seed_same_history_other_seed_other_history() {
        let config = config(3, 2.4, 2_000, 3);
        let first = run_replications(&config, 11);
        assert_eq!(first, run_replications(&config, 11));
        assert_ne!(
            first[0].fingerprint, first[1].fingerprint,
            "replications use their own streams"
        );
        let other = run_replications(&config, 12);
        assert_ne!(first[0].fingerprint, other[0].fingerprint);
        let report = summarize(&config, &first);
        assert_eq!(report.fingerprint, summarize(&config, &first).fingerprint);
        assert_ne!(report.fingerprint, summarize(&config, &other).fingerprint);
        assert_eq!(report.fingerprint.len(), 16);
    }

    #[test]
    fn mm1_at_half_load_matches_theory_roughly() {
        let config = config(1, 0.5, 40_000, 4);
        let report = summarize(&config, &run_replications(&config, 5));
        assert_eq!(report.model, "mmc");
        assert_eq!(report.events, 4 * 2 * 40_000);
        assert_eq!(report.erlang_c_wq, 1.0);
        assert!(report.wq_relative_error.abs() < 0.1, "{report:?}");
        assert!(report.wq_ci95[0] < report.wq_mean && report.wq_mean < report.wq_ci95[1]);
        assert!(
            (report.utilisation - 0.5).abs() < 0.02,
            "{}",
            report.utilisation
        );
        assert_eq!(report.utilisation_theory, 0.5);
        assert!(report.little_law_max_abs_error < 1e-9);
    }

    #[test]
    #[should_panic(expected = "index order")]
    fn replications_out_of_order_are_refused() {
        let config = config(1, 0.5, 100, 2);
        let mut replications = run_replications(&config, 1);
        replications.swap(0, 1);
        summarize(&config, &replications);
    }

    #[test]
    fn validation_names_the_field() {
        let good = config(4, 3.6, 1000, 2);
        assert_eq!(good.validate(), Ok(()));
        type Breakage = fn(&mut MmcConfig);
        let cases: [(&str, Breakage); 11] = [
            ("mmc.servers", |c| c.servers = 0),
            ("mmc.arrival_rate", |c| c.arrival_rate = 0.0),
            ("mmc.arrival_rate", |c| c.arrival_rate = f64::NAN),
            ("mmc.service_rate", |c| c.service_rate = -1.0),
            ("mmc.service_rate", |c| c.service_rate = f64::INFINITY),
            ("mmc.arrival_rate", |c| c.arrival_rate = 4.0),
            ("mmc.customers", |c| c.customers = 0),
            ("mmc.replications", |c| c.replications = 0),
            ("mmc.warmup_fraction", |c| c.warmup_fraction = 1.0),
            ("mmc.warmup_fraction", |c| c.warmup_fraction = -0.1),
            ("mmc.warmup_fraction", |c| c.warmup_fraction = f64::NAN),
        ];
        for (field, break_it) in cases {
            let mut broken = good.clone();
            break_it(&mut broken);
            let (named, message) = broken.validate().expect_err(field);
            assert_eq!(named, field, "{message}");
        }
        let mut saturated = good.clone();
        saturated.arrival_rate = 4.0;
        let (_, message) = saturated.validate().unwrap_err();
        assert!(message.contains("no steady state"), "{message}");
    }

    #[test]
    fn scenario_parses_with_default_seed_and_refuses_unknown_fields() {
        let text = "[mmc]\nservers = 4\narrival_rate = 3.6\nservice_rate = 1.0\ncustomers = 1000\n\
                    replications = 2\nwarmup_fraction = 0.1\n";
        let scenario: MmcScenario = toml::from_str(text).unwrap();
        assert_eq!(scenario.seed, 1);
        assert_eq!(scenario.mmc.servers, 4);
        assert_eq!(scenario.validate(), Ok(()));
        let typo = text.replace("servers = 4", "server = 4");
        assert!(toml::from_str::<MmcScenario>(&typo).is_err());
        let extra = format!("seed = 3\ncolour = \"red\"\n{text}");
        assert!(toml::from_str::<MmcScenario>(&extra).is_err());
    }

    #[test]
    fn warmup_always_leaves_a_customer_to_measure() {
        let mut config = config(1, 0.5, 10, 1);
        config.warmup_fraction = 0.999_999;
        assert_eq!(config.warmup_customers(), 9);
        config.warmup_fraction = 0.0;
        assert_eq!(config.warmup_customers(), 0);
    }
}
