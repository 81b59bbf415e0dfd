//! Distributions of durations and of plain numbers, written in scenario files in a readable form.
//!
//! Forms (durations carry units, numbers do not):
//! `20s` (constant), `uniform(15s, 30s)`, `exponential(2s)` (mean), `normal(25s, 3s)` (mean, standard
//! deviation, truncated at zero), `lognormal(median=20s, p99=42.3s)`, `empirical(1s, 2s, 5s)`,
//! `mixture(0.99 * uniform(20s, 30s), 0.01 * 42.3s)`.
//!
//! Parameters may also be named (`uniform(low=15s, high=30s)`, `normal(mean=25s, sd=3s)`,
//! `exponential(mean=2s)`, `lognormal(20s, 42.3s)` positionally). Mixture weights are relative: they are
//! kept as written and normalised when sampling and when taking the mean. Mixtures nest at most
//! `NESTING_DEPTH_MAX` deep. A bare `0` is accepted as a zero duration, as `Duration` accepts it.
//! Durations are held as whole nanoseconds; `Display` and `Serialize` write the canonical form, which
//! parses back to an equal value. A normal distribution is truncated at zero by rejection (at most
//! `NORMAL_REJECTION_TRIES_MAX` draws, each accepted with probability at least one half because the
//! mean is never negative) and clamps to zero if every draw is rejected.
//! Depends on `time` and `random`; samples with `rand_distr`.

use crate::random::Stream;
use crate::time::{Duration, split_unit};
use rand::RngExt;
use rand_distr::{Exp1, StandardNormal};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// How deeply mixtures may nest inside mixtures.
pub const NESTING_DEPTH_MAX: usize = 8;
/// The longest text a distribution may be written in.
pub const TEXT_BYTES_MAX: usize = 1 << 20;
/// Draws of a truncated normal before it clamps to zero; each is accepted with probability >= 1/2.
const NORMAL_REJECTION_TRIES_MAX: usize = 64;
/// The 99th percentile of the standard normal distribution.
const STANDARD_NORMAL_P99: f64 = 2.326_347_874_040_841;
/// Levels of the continued fraction that gives `erfc` for arguments of at least `ERFC_SERIES_LIMIT`.
const ERFC_CONTINUED_FRACTION_DEPTH: usize = 60;
const ERFC_SERIES_LIMIT: f64 = 2.0;
const ERF_SERIES_TERMS_MAX: usize = 200;

/// A distribution of non-negative durations.
#[derive(Clone, Debug, PartialEq)]
pub struct DurationDist(Distribution);

/// A distribution of plain numbers (counts, shares, rates).
#[derive(Clone, Debug, PartialEq)]
pub struct NumberDist(Distribution);

/// The shape shared by both; values are nanoseconds for durations, plain numbers otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum Distribution {
    Constant(f64),
    Uniform { low: f64, high: f64 },
    Exponential { mean: f64 },
    Normal { mean: f64, sd: f64 },
    LogNormal { median: f64, p99: f64 },
    Empirical(Vec<f64>),
    Mixture(Vec<(f64, Distribution)>),
}

impl DurationDist {
    pub fn constant(value: Duration) -> DurationDist {
        DurationDist(Distribution::Constant(value.as_nanos() as f64))
    }
    pub fn uniform(low: Duration, high: Duration) -> DurationDist {
        assert!(
            low <= high,
            "uniform duration: low {low} is above high {high}"
        );
        DurationDist(Distribution::Uniform {
            low: low.as_nanos() as f64,
            high: high.as_nanos() as f64,
        })
    }
    pub fn parse(text: &str) -> Result<DurationDist, String> {
        parse_text(text, Kind::Duration).map(DurationDist)
    }
    pub fn sample(&self, stream: &mut Stream) -> Duration {
        Duration::from_nanos_f64(self.0.sample(stream))
    }
    pub fn mean(&self) -> Duration {
        Duration::from_nanos_f64(self.0.mean())
    }
    /// True when every sample is the same duration.
    pub fn is_constant(&self) -> bool {
        let (min, max) = self.bounds();
        max == Some(min)
    }
    /// The least and the greatest duration a sample may take; `None` when there is no greatest.
    pub fn bounds(&self) -> (Duration, Option<Duration>) {
        let (min, max) = self.0.bounds();
        let max = if max.is_finite() {
            Some(Duration::from_nanos_f64(max))
        } else {
            None
        };
        (Duration::from_nanos_f64(min), max)
    }
    /// The shape, in nanoseconds.
    pub fn distribution(&self) -> &Distribution {
        &self.0
    }
}

impl NumberDist {
    pub fn constant(value: f64) -> NumberDist {
        assert!(value.is_finite(), "constant number {value} is not finite");
        NumberDist(Distribution::Constant(value))
    }
    pub fn uniform(low: f64, high: f64) -> NumberDist {
        assert!(
            low.is_finite() && high.is_finite(),
            "uniform({low}, {high}) is not finite"
        );
        assert!(
            low <= high,
            "uniform number: low {low} is above high {high}"
        );
        NumberDist(Distribution::Uniform { low, high })
    }
    pub fn parse(text: &str) -> Result<NumberDist, String> {
        parse_text(text, Kind::Number).map(NumberDist)
    }
    pub fn sample(&self, stream: &mut Stream) -> f64 {
        self.0.sample(stream)
    }
    /// A sample rounded to the nearest whole number, at least zero.
    pub fn sample_count(&self, stream: &mut Stream) -> u64 {
        let value = self.sample(stream).round();
        if value <= 0.0 { 0 } else { value as u64 }
    }
    pub fn mean(&self) -> f64 {
        self.0.mean()
    }
    /// True when every sample is the same number.
    pub fn is_constant(&self) -> bool {
        let (min, max) = self.bounds();
        min == max
    }
    /// The least and the greatest number a sample may take; the greatest may be `f64::INFINITY`.
    pub fn bounds(&self) -> (f64, f64) {
        self.0.bounds()
    }
    pub fn distribution(&self) -> &Distribution {
        &self.0
    }
}

impl Distribution {
    /// The common shapes inline, the rest out of line: most draws of a trial are uniform.
    #[inline]
    fn sample(&self, stream: &mut Stream) -> f64 {
        match self {
            Distribution::Constant(value) => *value,
            Distribution::Uniform { low, high } => low + (high - low) * stream.random::<f64>(),
            _ => self.sample_other(stream),
        }
    }

    #[inline(never)]
    fn sample_other(&self, stream: &mut Stream) -> f64 {
        let value = match self {
            Distribution::Constant(value) => *value,
            Distribution::Uniform { low, high } => low + (high - low) * stream.random::<f64>(),
            Distribution::Exponential { mean } => mean * stream.sample::<f64, _>(Exp1),
            Distribution::Normal { mean, sd } => sample_truncated_normal(*mean, *sd, stream),
            Distribution::LogNormal { median, p99 } => {
                let z: f64 = stream.sample(StandardNormal);
                median * (lognormal_sigma(*median, *p99) * z).exp()
            }
            Distribution::Empirical(values) => values[stream.random_range(0..values.len())],
            Distribution::Mixture(components) => pick_component(components, stream).sample(stream),
        };
        debug_assert!(!value.is_nan(), "{self:?} gave NaN");
        value
    }

    fn mean(&self) -> f64 {
        match self {
            Distribution::Constant(value) => *value,
            Distribution::Uniform { low, high } => low + (high - low) / 2.0,
            Distribution::Exponential { mean } => *mean,
            Distribution::Normal { mean, sd } => truncated_normal_mean(*mean, *sd),
            Distribution::LogNormal { median, p99 } => {
                let sigma = lognormal_sigma(*median, *p99);
                median * (sigma * sigma / 2.0).exp()
            }
            Distribution::Empirical(values) => {
                assert!(!values.is_empty(), "empirical distribution without values");
                values.iter().sum::<f64>() / values.len() as f64
            }
            Distribution::Mixture(components) => {
                let total: f64 = components.iter().map(|(weight, _)| weight).sum();
                assert!(total > 0.0, "mixture weights sum to {total}");
                components
                    .iter()
                    .map(|(weight, component)| weight * component.mean())
                    .sum::<f64>()
                    / total
            }
        }
    }

    fn bounds(&self) -> (f64, f64) {
        let unbounded_unless = |degenerate: bool, value: f64| {
            if degenerate {
                (value, value)
            } else {
                (0.0, f64::INFINITY)
            }
        };
        let (min, max) = match self {
            Distribution::Constant(value) => (*value, *value),
            Distribution::Uniform { low, high } => (*low, *high),
            Distribution::Exponential { mean } => unbounded_unless(*mean == 0.0, 0.0),
            Distribution::Normal { mean, sd } => unbounded_unless(*sd == 0.0, *mean),
            Distribution::LogNormal { median, p99 } => unbounded_unless(median == p99, *median),
            Distribution::Empirical(values) => values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(min, max), value| {
                    (min.min(*value), max.max(*value))
                }),
            Distribution::Mixture(components) => components
                .iter()
                .map(|(_, component)| component.bounds())
                .fold(
                    (f64::INFINITY, f64::NEG_INFINITY),
                    |(min, max), (low, high)| (min.min(low), max.max(high)),
                ),
        };
        assert!(min <= max, "{self:?} has bounds ({min}, {max})");
        (min, max)
    }
}

/// A normal sample conditioned on being non-negative; `mean` is never negative, so each draw is
/// accepted with probability at least one half.
fn sample_truncated_normal(mean: f64, sd: f64, stream: &mut Stream) -> f64 {
    debug_assert!(mean >= 0.0, "truncated normal with negative mean {mean}");
    debug_assert!(sd >= 0.0, "normal with negative sd {sd}");
    for _ in 0..NORMAL_REJECTION_TRIES_MAX {
        let z: f64 = stream.sample(StandardNormal);
        let value = mean + sd * z;
        if value >= 0.0 {
            return value;
        }
    }
    0.0
}

/// The mean of a normal distribution truncated to [0, inf).
fn truncated_normal_mean(mean: f64, sd: f64) -> f64 {
    assert!(sd >= 0.0, "normal with negative sd {sd}");
    if sd == 0.0 {
        return mean;
    }
    let alpha = -mean / sd;
    let density = (-alpha * alpha / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let tail = 0.5 * erfc(alpha / std::f64::consts::SQRT_2);
    assert!(tail > 0.0, "normal({mean}, {sd}) has no mass above zero");
    mean + sd * density / tail
}

fn lognormal_sigma(median: f64, p99: f64) -> f64 {
    debug_assert!(median > 0.0, "lognormal median {median} is not positive");
    debug_assert!(
        median <= p99,
        "lognormal median {median} is above p99 {p99}"
    );
    (p99 / median).ln() / STANDARD_NORMAL_P99
}

/// Picks a mixture component with probability proportional to its weight.
fn pick_component<'a>(
    components: &'a [(f64, Distribution)],
    stream: &mut Stream,
) -> &'a Distribution {
    assert!(!components.is_empty(), "mixture without components");
    let total: f64 = components.iter().map(|(weight, _)| weight).sum();
    let mut remaining = stream.random::<f64>() * total;
    for (weight, component) in components {
        if remaining < *weight {
            return component;
        }
        remaining -= weight;
    }
    &components[components.len() - 1].1
}

/// The complementary error function, accurate to about 1e-13 relative for every finite argument:
/// a positive-term series for erf below `ERFC_SERIES_LIMIT`, a continued fraction above it.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let scale = (-x * x).exp() / std::f64::consts::PI.sqrt();
    if x < ERFC_SERIES_LIMIT {
        let mut term = x;
        let mut sum = x;
        for n in 1..ERF_SERIES_TERMS_MAX {
            term *= 2.0 * x * x / (2 * n + 1) as f64;
            sum += term;
            if term <= 1e-17 * sum {
                break;
            }
        }
        1.0 - 2.0 * scale * sum
    } else {
        let mut denominator = x;
        for level in (1..=ERFC_CONTINUED_FRACTION_DEPTH).rev() {
            denominator = x + (level as f64 / 2.0) / denominator;
        }
        scale / denominator
    }
}

/// Whether values carry units (nanoseconds) or are plain numbers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    Duration,
    Number,
}

const FORM_NAMES: &str = "uniform, exponential, normal, lognormal, empirical or mixture";
const DELIMITERS: [char; 5] = ['(', ')', ',', '=', '*'];

fn parse_text(text: &str, kind: Kind) -> Result<Distribution, String> {
    if text.len() > TEXT_BYTES_MAX {
        return Err(format!(
            "a distribution is at most {TEXT_BYTES_MAX} bytes long; this one has {}",
            text.len()
        ));
    }
    if text.trim().is_empty() {
        return Err(format!(
            "`{text}`: empty distribution; write e.g. `20s` or `uniform(15s, 30s)`"
        ));
    }
    let mut parser = Parser {
        text,
        position: 0,
        kind,
    };
    let distribution = parser.parse_distribution(0)?;
    parser.skip_whitespace();
    if parser.position < text.len() {
        return Err(parser.syntax_error("the end"));
    }
    Ok(distribution)
}

/// One value inside a form's parentheses, optionally named (`median=20s`).
struct Argument<'a> {
    name: Option<&'a str>,
    value: &'a str,
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the next character to read.
    position: usize,
    kind: Kind,
}

impl<'a> Parser<'a> {
    fn skip_whitespace(&mut self) {
        let rest = &self.text[self.position..];
        self.position += rest.len() - rest.trim_start().len();
    }

    fn peek(&self) -> Option<char> {
        self.text[self.position..].chars().next()
    }

    /// Reads up to the next delimiter and returns the text read, trimmed.
    fn read_token(&mut self) -> &'a str {
        let text = self.text;
        let rest = &text[self.position..];
        let length = rest
            .find(|c: char| DELIMITERS.contains(&c))
            .unwrap_or(rest.len());
        self.position += length;
        rest[..length].trim()
    }

    /// Skips whitespace, then consumes `wanted` if it is next.
    fn consume(&mut self, wanted: char) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(wanted);
        if found {
            self.position += wanted.len_utf8();
        }
        found
    }

    fn syntax_error(&self, expected: &str) -> String {
        let column = self.text[..self.position].chars().count() + 1;
        match self.peek() {
            Some(found) => format!(
                "`{}`: expected {expected} at column {column}, found `{found}`",
                self.text
            ),
            None => format!(
                "`{}`: expected {expected} at column {column}, found the end",
                self.text
            ),
        }
    }

    /// An error about `form`, a part of the text, naming the whole text when the part is smaller.
    fn fail(&self, form: &str, problem: impl fmt::Display) -> String {
        let echo = crate::time::echo;
        if form == self.text.trim() {
            format!("`{}`: {problem}", echo(form))
        } else {
            format!(
                "`{}` in `{}`: {problem}",
                echo(form),
                echo(self.text.trim())
            )
        }
    }

    fn parse_distribution(&mut self, depth: usize) -> Result<Distribution, String> {
        self.skip_whitespace();
        let start = self.position;
        let token = self.read_token();
        if !self.consume('(') {
            if token.is_empty() {
                return Err(self.syntax_error("a value or a distribution"));
            }
            let value = self.parse_scalar(token, token)?;
            return Ok(Distribution::Constant(value));
        }
        let name = token.to_ascii_lowercase();
        if name == "mixture" {
            if depth >= NESTING_DEPTH_MAX {
                return Err(self.fail(
                    self.text.trim(),
                    format!("mixtures nest deeper than {NESTING_DEPTH_MAX} levels"),
                ));
            }
            let components = self.parse_components(depth + 1)?;
            let form = self.text[start..self.position].trim();
            return self.build_mixture(form, components);
        }
        if !matches!(
            name.as_str(),
            "uniform" | "exponential" | "normal" | "lognormal" | "empirical"
        ) {
            let problem =
                format!("unknown distribution `{token}`; expected a value or {FORM_NAMES}");
            return Err(self.fail(self.text.trim(), problem));
        }
        let arguments = self.parse_arguments()?;
        let form = self.text[start..self.position].trim();
        self.build_form(&name, form, &arguments)
    }

    /// Reads `value, name=value, ...)` after an opening parenthesis, through the closing one.
    fn parse_arguments(&mut self) -> Result<Vec<Argument<'a>>, String> {
        let mut arguments = Vec::new();
        if self.consume(')') {
            return Ok(arguments);
        }
        for _ in 0..TEXT_BYTES_MAX {
            let mut name = None;
            let mut value = self.read_token();
            if self.consume('=') {
                if value.is_empty() {
                    return Err(self.syntax_error("a parameter name before `=`"));
                }
                name = Some(value);
                value = self.read_token();
            }
            if value.is_empty() {
                return Err(self.syntax_error("a value"));
            }
            arguments.push(Argument { name, value });
            if self.consume(')') {
                return Ok(arguments);
            }
            if !self.consume(',') {
                return Err(self.syntax_error("`,` or `)`"));
            }
        }
        Err(self.syntax_error("`)`"))
    }

    /// Reads `weight * distribution, ...)` after `mixture(`, through the closing parenthesis.
    fn parse_components(&mut self, depth: usize) -> Result<Vec<(&'a str, Distribution)>, String> {
        let mut components = Vec::new();
        if self.consume(')') {
            return Ok(components);
        }
        for _ in 0..TEXT_BYTES_MAX {
            let weight = self.read_token();
            if weight.is_empty() {
                return Err(self.syntax_error("a weight"));
            }
            if !self.consume('*') {
                return Err(self.syntax_error("`*` after the weight"));
            }
            let component = self.parse_distribution(depth)?;
            components.push((weight, component));
            if self.consume(')') {
                return Ok(components);
            }
            if !self.consume(',') {
                return Err(self.syntax_error("`,` or `)`"));
            }
        }
        Err(self.syntax_error("`)`"))
    }

    fn build_mixture(
        &self,
        form: &str,
        components: Vec<(&str, Distribution)>,
    ) -> Result<Distribution, String> {
        if components.is_empty() {
            return Err(self.fail(form, "a mixture needs at least one `weight * distribution`"));
        }
        let mut weighted = Vec::with_capacity(components.len());
        for (token, component) in components {
            let weight = match token.parse::<f64>() {
                Ok(weight) if weight.is_finite() && weight > 0.0 => weight,
                Ok(_) => {
                    return Err(
                        self.fail(form, format!("weight {token} must be positive and finite"))
                    );
                }
                Err(_) => return Err(self.fail(form, format!("weight `{token}` is not a number"))),
            };
            weighted.push((weight, component));
        }
        Ok(Distribution::Mixture(weighted))
    }

    fn build_form(
        &self,
        name: &str,
        form: &str,
        arguments: &[Argument<'a>],
    ) -> Result<Distribution, String> {
        let negative = |parameter: &str, token: &str| {
            self.fail(form, format!("{parameter} {token} is negative"))
        };
        match name {
            "uniform" => {
                let [(low, low_token), (high, high_token)] =
                    self.resolve(form, name, ["low", "high"], arguments)?;
                if low > high {
                    return Err(
                        self.fail(form, format!("low {low_token} is above high {high_token}"))
                    );
                }
                Ok(Distribution::Uniform { low, high })
            }
            "exponential" => {
                let [(mean, mean_token)] = self.resolve(form, name, ["mean"], arguments)?;
                if mean < 0.0 {
                    return Err(negative("mean", mean_token));
                }
                Ok(Distribution::Exponential { mean })
            }
            "normal" => {
                let [(mean, mean_token), (sd, sd_token)] =
                    self.resolve(form, name, ["mean", "sd"], arguments)?;
                if mean < 0.0 {
                    let problem =
                        format!("mean {mean_token} is negative (the normal is truncated at zero)");
                    return Err(self.fail(form, problem));
                }
                if sd < 0.0 {
                    return Err(negative("sd", sd_token));
                }
                Ok(Distribution::Normal { mean, sd })
            }
            "lognormal" => {
                let [(median, median_token), (p99, p99_token)] =
                    self.resolve(form, name, ["median", "p99"], arguments)?;
                if median <= 0.0 {
                    return Err(self.fail(form, format!("median {median_token} must be positive")));
                }
                if median > p99 {
                    return Err(self.fail(
                        form,
                        format!("median {median_token} is above p99 {p99_token}"),
                    ));
                }
                Ok(Distribution::LogNormal { median, p99 })
            }
            _ => {
                assert_eq!(name, "empirical", "unchecked distribution name");
                self.build_empirical(form, arguments)
            }
        }
    }

    fn build_empirical(
        &self,
        form: &str,
        arguments: &[Argument<'a>],
    ) -> Result<Distribution, String> {
        if arguments.is_empty() {
            return Err(self.fail(form, "empirical needs at least one value"));
        }
        let mut values = Vec::with_capacity(arguments.len());
        for argument in arguments {
            if let Some(name) = argument.name {
                return Err(self.fail(form, format!("empirical takes plain values, not `{name}=`")));
            }
            values.push(self.parse_scalar(argument.value, form)?);
        }
        Ok(Distribution::Empirical(values))
    }

    /// Matches positional and named arguments to `parameters`, returning each value with its text.
    fn resolve<const N: usize>(
        &self,
        form: &str,
        name: &str,
        parameters: [&str; N],
        arguments: &[Argument<'a>],
    ) -> Result<[(f64, &'a str); N], String> {
        if arguments.len() != N {
            let problem = format!(
                "{name} takes {N} value(s) ({}), got {}",
                parameters.join(", "),
                arguments.len()
            );
            return Err(self.fail(form, problem));
        }
        let mut slots: [Option<(f64, &'a str)>; N] = [None; N];
        for (index, argument) in arguments.iter().enumerate() {
            let slot = match argument.name {
                None => index,
                Some(given) => parameters
                    .iter()
                    .position(|p| p.eq_ignore_ascii_case(given))
                    .ok_or_else(|| {
                        self.fail(
                            form,
                            format!(
                                "unknown parameter `{given}`; {name} takes {}",
                                parameters.join(", ")
                            ),
                        )
                    })?,
            };
            if slots[slot].is_some() {
                return Err(self.fail(
                    form,
                    format!("parameter `{}` is given twice", parameters[slot]),
                ));
            }
            slots[slot] = Some((self.parse_scalar(argument.value, form)?, argument.value));
        }
        Ok(slots.map(|slot| slot.expect("N arguments, none given twice, fill all N slots")))
    }

    fn parse_scalar(&self, token: &str, form: &str) -> Result<f64, String> {
        let parsed = match self.kind {
            Kind::Duration => parse_duration_nanos(token),
            Kind::Number => parse_number(token),
        };
        parsed.map_err(|problem| self.fail(form, problem))
    }
}

/// A duration token as whole nanoseconds.
fn parse_duration_nanos(token: &str) -> Result<f64, String> {
    if token == "0" {
        return Ok(0.0);
    }
    let Some((value, scale)) = split_unit(token) else {
        if token.parse::<f64>().is_ok() {
            let token = crate::time::echo(token);
            return Err(format!(
                "`{token}` has no unit; write a duration such as `{token}s` (units ns, us, ms, s, m, h, d)"
            ));
        }
        return Err(format!(
            "`{}` is not a duration; write a number with a unit (ns, us, ms, s, m, h, d), e.g. `250ms`",
            crate::time::echo(token)
        ));
    };
    let nanos = value * scale;
    if !nanos.is_finite() {
        return Err(format!(
            "duration {} is not finite",
            crate::time::echo(token)
        ));
    }
    if nanos < 0.0 {
        return Err(format!("duration {} is negative", crate::time::echo(token)));
    }
    if nanos > Duration::WRITTEN_MAX.as_nanos() as f64 {
        return Err(format!(
            "duration {} is longer than {} (100 years)",
            crate::time::echo(token),
            Duration::WRITTEN_MAX
        ));
    }
    Ok(Duration::from_nanos_f64(nanos).as_nanos() as f64)
}

fn parse_number(token: &str) -> Result<f64, String> {
    match token.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(format!("number {} is not finite", crate::time::echo(token))),
        Err(_) if split_unit(token).is_some() => Err(format!(
            "`{}` carries a unit; this distribution takes plain numbers",
            crate::time::echo(token)
        )),
        Err(_) => Err(format!("`{}` is not a number", crate::time::echo(token))),
    }
}

/// Writes a distribution in its canonical form.
struct Canonical<'a> {
    distribution: &'a Distribution,
    kind: Kind,
}

impl Canonical<'_> {
    fn write_value(&self, f: &mut fmt::Formatter<'_>, value: f64) -> fmt::Result {
        match self.kind {
            Kind::Duration => write!(f, "{}", Duration::from_nanos_f64(value)),
            Kind::Number => write!(f, "{value}"),
        }
    }

    fn write_list(&self, f: &mut fmt::Formatter<'_>, name: &str, values: &[f64]) -> fmt::Result {
        write!(f, "{name}(")?;
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                write!(f, ", ")?;
            }
            self.write_value(f, *value)?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for Canonical<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.distribution {
            Distribution::Constant(value) => self.write_value(f, *value),
            Distribution::Uniform { low, high } => self.write_list(f, "uniform", &[*low, *high]),
            Distribution::Exponential { mean } => self.write_list(f, "exponential", &[*mean]),
            Distribution::Normal { mean, sd } => self.write_list(f, "normal", &[*mean, *sd]),
            Distribution::LogNormal { median, p99 } => {
                write!(f, "lognormal(median=")?;
                self.write_value(f, *median)?;
                write!(f, ", p99=")?;
                self.write_value(f, *p99)?;
                write!(f, ")")
            }
            Distribution::Empirical(values) => self.write_list(f, "empirical", values),
            Distribution::Mixture(components) => {
                write!(f, "mixture(")?;
                for (index, (weight, component)) in components.iter().enumerate() {
                    let separator = if index > 0 { ", " } else { "" };
                    let component = Canonical {
                        distribution: component,
                        kind: self.kind,
                    };
                    write!(f, "{separator}{weight} * {component}")?;
                }
                write!(f, ")")
            }
        }
    }
}

impl fmt::Display for DurationDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Canonical {
            distribution: &self.0,
            kind: Kind::Duration,
        }
        .fmt(f)
    }
}

impl fmt::Display for NumberDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Canonical {
            distribution: &self.0,
            kind: Kind::Number,
        }
        .fmt(f)
    }
}

impl std::str::FromStr for DurationDist {
    type Err = String;
    fn from_str(text: &str) -> Result<DurationDist, String> {
        DurationDist::parse(text)
    }
}

impl std::str::FromStr for NumberDist {
    type Err = String;
    fn from_str(text: &str) -> Result<NumberDist, String> {
        NumberDist::parse(text)
    }
}

impl Serialize for DurationDist {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for NumberDist {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct DurationDistVisitor;

impl Visitor<'_> for DurationDistVisitor {
    type Value = DurationDist;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a duration distribution in a string, such as \"20s\" or \"uniform(15s, 30s)\""
        )
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationDist, E> {
        DurationDist::parse(text).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for DurationDist {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DurationDist, D::Error> {
        deserializer.deserialize_str(DurationDistVisitor)
    }
}

struct NumberDistVisitor;

impl Visitor<'_> for NumberDistVisitor {
    type Value = NumberDist;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a number, or a distribution in a string such as \"uniform(1, 5)\""
        )
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<NumberDist, E> {
        NumberDist::parse(text).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<NumberDist, E> {
        Ok(NumberDist(Distribution::Constant(value as f64)))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<NumberDist, E> {
        Ok(NumberDist(Distribution::Constant(value as f64)))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<NumberDist, E> {
        if !value.is_finite() {
            return Err(E::custom(format!("number {value} is not finite")));
        }
        Ok(NumberDist(Distribution::Constant(value)))
    }
}

impl<'de> Deserialize<'de> for NumberDist {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NumberDist, D::Error> {
        deserializer.deserialize_any(NumberDistVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Streams;

    const SAMPLES: usize = 200_000;

    fn duration(text: &str) -> DurationDist {
        DurationDist::parse(text).unwrap_or_else(|error| panic!("{error}"))
    }

    fn number(text: &str) -> NumberDist {
        NumberDist::parse(text).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Parses `text`, checks it displays as `canonical`, and that the canonical text parses back equal.
    fn check_duration_round_trip(text: &str, canonical: &str) {
        let parsed = duration(text);
        assert_eq!(parsed.to_string(), canonical, "display of `{text}`");
        assert_eq!(
            duration(&parsed.to_string()),
            parsed,
            "round trip of `{text}`"
        );
    }

    fn check_number_round_trip(text: &str, canonical: &str) {
        let parsed = number(text);
        assert_eq!(parsed.to_string(), canonical, "display of `{text}`");
        assert_eq!(
            number(&parsed.to_string()),
            parsed,
            "round trip of `{text}`"
        );
    }

    #[test]
    fn durations_round_trip_through_display() {
        let cases = [
            ("20s", "20s"),
            (" 250ms ", "250ms"),
            ("0", "0s"),
            ("uniform(15s, 30s)", "uniform(15s, 30s)"),
            ("uniform ( low = 15s , high=30s )", "uniform(15s, 30s)"),
            ("Uniform(high=30s, low=15s)", "uniform(15s, 30s)"),
            ("exponential(2s)", "exponential(2s)"),
            ("exponential(mean=1.5m)", "exponential(1.5m)"),
            ("normal(25s, 3s)", "normal(25s, 3s)"),
            ("normal(mean=25s, sd=0s)", "normal(25s, 0s)"),
            (
                "lognormal(median=20s, p99=42.3s)",
                "lognormal(median=20s, p99=42.3s)",
            ),
            ("lognormal(20s, 42.3s)", "lognormal(median=20s, p99=42.3s)"),
            (
                "lognormal(p99 = 42.3s, median = 20000ms)",
                "lognormal(median=20s, p99=42.3s)",
            ),
            ("empirical(1s, 2s, 5s)", "empirical(1s, 2s, 5s)"),
            ("empirical(7ns)", "empirical(7ns)"),
            (
                "mixture(0.99 * uniform(20s, 30s), 0.01 * 42.3s)",
                "mixture(0.99 * uniform(20s, 30s), 0.01 * 42.3s)",
            ),
            (
                "mixture(3*1s,1*exponential(4s))",
                "mixture(3 * 1s, 1 * exponential(4s))",
            ),
            (
                "mixture(1 * mixture(2 * 1s, 1 * normal(3s, 1s)), 0.5 * lognormal(1s, 2s))",
                "mixture(1 * mixture(2 * 1s, 1 * normal(3s, 1s)), 0.5 * lognormal(median=1s, p99=2s))",
            ),
            ("1.234567s", "1234.567ms"),
        ];
        for (text, canonical) in cases {
            check_duration_round_trip(text, canonical);
        }
    }

    #[test]
    fn numbers_round_trip_through_display() {
        let cases = [
            ("5", "5"),
            ("-2.5", "-2.5"),
            ("1e3", "1000"),
            ("uniform(0.1, 0.3)", "uniform(0.1, 0.3)"),
            ("uniform(-1, 1)", "uniform(-1, 1)"),
            ("exponential(4)", "exponential(4)"),
            ("normal(10, 2.5)", "normal(10, 2.5)"),
            ("lognormal(median=3, p99=12)", "lognormal(median=3, p99=12)"),
            ("empirical(1, 2, 2, 7)", "empirical(1, 2, 2, 7)"),
            (
                "mixture(0.9 * 1, 0.1 * uniform(10, 20))",
                "mixture(0.9 * 1, 0.1 * uniform(10, 20))",
            ),
            ("0.30000000000000004", "0.30000000000000004"),
        ];
        for (text, canonical) in cases {
            check_number_round_trip(text, canonical);
        }
    }

    #[test]
    fn constructors_match_parsed_forms() {
        assert_eq!(
            DurationDist::constant(Duration::from_secs(20)),
            duration("20s")
        );
        assert_eq!(
            DurationDist::uniform(Duration::from_secs(15), Duration::from_secs(30)),
            duration("uniform(15s, 30s)")
        );
        assert_eq!(NumberDist::constant(5.0), number("5"));
        assert_eq!(NumberDist::uniform(1.0, 2.0), number("uniform(1, 2)"));
        assert_eq!(
            duration("42.3s").distribution(),
            &Distribution::Constant(42.3e9)
        );
    }

    fn check_duration_error(text: &str, expected: &str) {
        match DurationDist::parse(text) {
            Ok(parsed) => {
                panic!("`{text}` parsed as {parsed:?}, expected an error with `{expected}`")
            }
            Err(message) => {
                assert_eq!(message, expected, "error for `{text}`");
                assert!(!message.contains('\n'), "error for `{text}` spans lines");
            }
        }
    }

    fn check_number_error(text: &str, expected: &str) {
        match NumberDist::parse(text) {
            Ok(parsed) => {
                panic!("`{text}` parsed as {parsed:?}, expected an error with `{expected}`")
            }
            Err(message) => assert_eq!(message, expected, "error for `{text}`"),
        }
    }

    #[test]
    /// A well-formed distribution with an impossible value: the message names the value.
    fn duration_validation_errors_name_the_problem() {
        let cases = [
            ("uniform(30s, 15s)", "low 30s is above high 15s"),
            ("normal(25s, -3s)", "duration -3s is negative"),
            ("-1s", "duration -1s is negative"),
            ("exponential(-2s)", "duration -2s is negative"),
            ("lognormal(median=0s, p99=1s)", "median 0s must be positive"),
            ("lognormal(50s, 42.3s)", "median 50s is above p99 42.3s"),
            ("empirical()", "empirical needs at least one value"),
            ("empirical(1s, -1s)", "duration -1s is negative"),
            (
                "mixture()",
                "a mixture needs at least one `weight * distribution`",
            ),
            ("mixture(0 * 1s)", "weight 0 must be positive and finite"),
            (
                "mixture(-1 * 1s, 2 * 2s)",
                "weight -1 must be positive and finite",
            ),
            (
                "mixture(inf * 1s)",
                "weight inf must be positive and finite",
            ),
            ("mixture(a * 1s)", "weight `a` is not a number"),
            ("inf s", "duration inf s is not finite"),
            ("1e400s", "duration 1e400s is not finite"),
            ("1e20s", "duration 1e20s is longer than 36500d (100 years)"),
        ];
        for (text, problem) in cases {
            check_duration_error(text, &format!("`{text}`: {problem}"));
        }
    }

    #[test]
    /// A malformed distribution: the message names what was expected and where.
    fn duration_syntax_errors_name_the_problem() {
        let cases = [
            (
                "uniform(15, 30s)",
                "`15` has no unit; write a duration such as `15s` (units ns, us, ms, s, m, h, d)",
            ),
            (
                "abc",
                "`abc` is not a duration; write a number with a unit (ns, us, ms, s, m, h, d), e.g. `250ms`",
            ),
            ("uniform(1s)", "uniform takes 2 value(s) (low, high), got 1"),
            (
                "exponential(1s, 2s)",
                "exponential takes 1 value(s) (mean), got 2",
            ),
            (
                "lognormal(mean=1s, p99=2s)",
                "unknown parameter `mean`; lognormal takes median, p99",
            ),
            ("lognormal(p99=2s, 1s)", "parameter `p99` is given twice"),
            ("empirical(a=1s)", "empirical takes plain values, not `a=`"),
            (
                "gamma(1s, 2s)",
                "unknown distribution `gamma`; expected a value or uniform, exponential, normal, lognormal, empirical or mixture",
            ),
            (
                "",
                "empty distribution; write e.g. `20s` or `uniform(15s, 30s)`",
            ),
            ("20s)", "expected the end at column 4, found `)`"),
            (
                "uniform(1s, 2s",
                "expected `,` or `)` at column 15, found the end",
            ),
            (
                "uniform(1s,, 2s)",
                "expected a value at column 12, found `,`",
            ),
            (
                "mixture(1s)",
                "expected `*` after the weight at column 11, found `)`",
            ),
            (
                "mixture(1 * )",
                "expected a value or a distribution at column 13, found `)`",
            ),
            (
                "(1s)",
                "unknown distribution ``; expected a value or uniform, exponential, normal, lognormal, empirical or mixture",
            ),
        ];
        for (text, problem) in cases {
            check_duration_error(text, &format!("`{text}`: {problem}"));
        }
    }

    #[test]
    fn nested_errors_quote_the_form_and_the_whole_text() {
        check_duration_error(
            "mixture(1 * uniform(3s, 1s), 1 * 2s)",
            "`uniform(3s, 1s)` in `mixture(1 * uniform(3s, 1s), 1 * 2s)`: low 3s is above high 1s",
        );
    }

    #[test]
    fn mixtures_nest_at_most_the_bound() {
        let nest = |levels: usize| {
            let mut text = "1s".to_string();
            for _ in 0..levels {
                text = format!("mixture(1 * {text})");
            }
            text
        };
        let deepest = duration(&nest(NESTING_DEPTH_MAX));
        assert_eq!(deepest.mean(), Duration::from_secs(1));
        let error = DurationDist::parse(&nest(NESTING_DEPTH_MAX + 1)).unwrap_err();
        assert!(
            error.ends_with("mixtures nest deeper than 8 levels"),
            "{error}"
        );
        let too_long = "1".repeat(TEXT_BYTES_MAX + 1);
        assert!(
            NumberDist::parse(&too_long)
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn number_validation_errors_name_the_problem() {
        let cases = [
            ("uniform(3, 1)", "`uniform(3, 1)`: low 3 is above high 1"),
            ("normal(5, -1)", "`normal(5, -1)`: sd -1 is negative"),
            (
                "normal(-5, 1)",
                "`normal(-5, 1)`: mean -5 is negative (the normal is truncated at zero)",
            ),
            ("exponential(-1)", "`exponential(-1)`: mean -1 is negative"),
            (
                "lognormal(-1, 2)",
                "`lognormal(-1, 2)`: median -1 must be positive",
            ),
            (
                "uniform(1s, 2)",
                "`uniform(1s, 2)`: `1s` carries a unit; this distribution takes plain numbers",
            ),
            ("NaN", "`NaN`: number NaN is not finite"),
            (
                "uniform(1, inf)",
                "`uniform(1, inf)`: number inf is not finite",
            ),
            ("1e999", "`1e999`: number 1e999 is not finite"),
            ("ten", "`ten`: `ten` is not a number"),
        ];
        for (text, expected) in cases {
            check_number_error(text, expected);
        }
    }

    /// Draws `SAMPLES` values and checks their mean lies within five standard errors of `expected`.
    fn check_sample_mean(
        name: &str,
        mut draw: impl FnMut(&mut Stream) -> f64,
        expected: f64,
    ) -> Vec<f64> {
        let mut stream = Streams::new(11).stream(name);
        let samples: Vec<f64> = (0..SAMPLES).map(|_| draw(&mut stream)).collect();
        let count = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / count;
        let variance = samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (count - 1.0);
        let standard_error = (variance / count).sqrt();
        let tolerance = 5.0 * standard_error + 1e-9 * expected.abs();
        assert!(
            (mean - expected).abs() <= tolerance,
            "{name}: sample mean {mean}, expected {expected} ± {tolerance}"
        );
        samples
    }

    #[test]
    fn duration_sample_means_match_mean() {
        let forms = [
            "20s",
            "uniform(15s, 30s)",
            "exponential(2s)",
            "normal(25s, 3s)",
            "normal(1s, 3s)",
            "normal(0s, 1s)",
            "lognormal(median=20s, p99=42.3s)",
            "empirical(1s, 2s, 5s)",
            "mixture(0.99 * uniform(20s, 30s), 0.01 * 42.3s)",
            "mixture(3 * 1s, 1 * exponential(4s))",
            "mixture(1 * mixture(2 * 1s, 1 * normal(3s, 1s)), 0.5 * lognormal(1s, 2s))",
        ];
        for form in forms {
            let dist = duration(form);
            let samples = check_sample_mean(
                form,
                |stream| dist.sample(stream).as_secs_f64(),
                dist.mean().as_secs_f64(),
            );
            let (min, max) = dist.bounds();
            let within =
                |x: f64| x >= min.as_secs_f64() && max.is_none_or(|max| x <= max.as_secs_f64());
            assert!(
                samples.iter().all(|x| within(*x)),
                "{form}: a sample outside {min}..{max:?}"
            );
        }
    }

    #[test]
    fn number_sample_means_match_mean() {
        let forms = [
            "7",
            "uniform(-1, 3)",
            "exponential(4)",
            "normal(10, 2.5)",
            "lognormal(3, 12)",
            "empirical(1, 2, 2, 7)",
        ];
        for form in forms {
            let dist = number(form);
            check_sample_mean(form, |stream| dist.sample(stream), dist.mean());
        }
        let counts = number("uniform(0, 4)");
        let samples = check_sample_mean("counts", |stream| counts.sample_count(stream) as f64, 2.0);
        let zeros = samples.iter().filter(|x| **x == 0.0).count() as f64 / SAMPLES as f64;
        assert!(
            (zeros - 0.125).abs() < 0.005,
            "share of zero counts {zeros}, expected 1/8"
        );
        assert_eq!(
            number("-3").sample_count(&mut Streams::new(1).stream("x")),
            0
        );
    }

    #[test]
    fn known_means() {
        assert_eq!(
            duration("uniform(15s, 30s)").mean(),
            Duration::from_millis(22_500)
        );
        assert_eq!(
            duration("mixture(3 * 1s, 1 * exponential(4s))").mean(),
            Duration::from_millis(1_750)
        );
        assert_eq!(
            duration("empirical(1s, 2s, 6s)").mean(),
            Duration::from_secs(3)
        );
        // A normal centred on zero truncated at zero has mean sd * sqrt(2 / pi).
        let half_normal = number("normal(0, 2)").mean();
        assert!(
            (half_normal - 2.0 * (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-12,
            "{half_normal}"
        );
        // Far from zero the truncation does not matter.
        assert!((number("normal(100, 1)").mean() - 100.0).abs() < 1e-12);
        let lognormal = number("lognormal(20, 42.3)").mean();
        let sigma = (42.3f64 / 20.0).ln() / STANDARD_NORMAL_P99;
        assert!((lognormal - 20.0 * (sigma * sigma / 2.0).exp()).abs() < 1e-12);
    }

    #[test]
    fn erfc_matches_reference_values() {
        let references = [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (1.999, 0.004_698_443_348_629_488),
            (2.0, 0.004_677_734_981_047_266),
            (3.0, 2.209_049_699_858_544e-5),
            (6.0, 2.151_973_671_249_891_3e-17),
            (-1.0, 1.842_700_792_949_714_8),
        ];
        for (x, expected) in references {
            let relative_error = (erfc(x) - expected).abs() / expected;
            assert!(
                relative_error < 1e-12,
                "erfc({x}) = {}, expected {expected}",
                erfc(x)
            );
        }
        assert_eq!(erfc(40.0), 0.0);
    }

    #[test]
    fn truncated_normal_is_never_negative() {
        let dist = duration("normal(0.5s, 3s)");
        let mut stream = Streams::new(3).stream("normal");
        let samples: Vec<Duration> = (0..SAMPLES).map(|_| dist.sample(&mut stream)).collect();
        // Durations cannot be negative; check the raw values as well.
        let raw = number("normal(0.5, 3)");
        let mut stream = Streams::new(3).stream("normal");
        assert!((0..SAMPLES).all(|_| raw.sample(&mut stream) >= 0.0));
        let below_mean =
            samples.iter().filter(|s| s.as_secs_f64() < 0.5).count() as f64 / SAMPLES as f64;
        // P(X < 0.5 | X >= 0) = (Phi(0) - Phi(-1/6)) / (1 - Phi(-1/6)).
        let tail = 0.5 * erfc(-1.0 / 6.0 / std::f64::consts::SQRT_2);
        let expected = (0.5 - (1.0 - tail)) / tail;
        assert!(
            (below_mean - expected).abs() < 0.005,
            "share below mean {below_mean}, expected {expected}"
        );
    }

    #[test]
    fn lognormal_p99_matches_parameter() {
        let dist = duration("lognormal(median=20s, p99=42.3s)");
        let mut stream = Streams::new(5).stream("lognormal");
        let mut samples: Vec<f64> = (0..SAMPLES)
            .map(|_| dist.sample(&mut stream).as_secs_f64())
            .collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[SAMPLES / 2];
        let p99 = samples[SAMPLES * 99 / 100];
        assert!((median - 20.0).abs() < 0.2, "median {median}");
        assert!((p99 - 42.3).abs() < 0.5, "p99 {p99}");
    }

    #[test]
    fn empirical_and_mixture_pick_by_weight() {
        let dist = duration("empirical(1s, 2s, 5s)");
        let mut stream = Streams::new(9).stream("empirical");
        let mut counts = [0usize; 3];
        for _ in 0..SAMPLES {
            let index = match dist.sample(&mut stream).as_nanos() / 1_000_000_000 {
                1 => 0,
                2 => 1,
                5 => 2,
                other => panic!("empirical gave {other}s"),
            };
            counts[index] += 1;
        }
        for count in counts {
            let share = count as f64 / SAMPLES as f64;
            assert!((share - 1.0 / 3.0).abs() < 0.005, "share {share}");
        }
        let mixture = number("mixture(3 * 1, 1 * 2)");
        let mut stream = Streams::new(9).stream("mixture");
        let ones = (0..SAMPLES)
            .filter(|_| mixture.sample(&mut stream) == 1.0)
            .count() as f64
            / SAMPLES as f64;
        assert!(
            (ones - 0.75).abs() < 0.005,
            "share of the first component {ones}"
        );
    }

    #[test]
    fn sampling_is_deterministic_per_stream() {
        let dist =
            duration("mixture(1 * normal(3s, 1s), 1 * lognormal(1s, 2s), 1 * empirical(1s, 2s))");
        let draw = |seed: u64| {
            let mut stream = Streams::new(seed).stream("determinism");
            (0..1_000)
                .map(|_| dist.sample(&mut stream))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn bounds_and_constancy() {
        let unbounded = (Duration::ZERO, None);
        assert_eq!(
            duration("20s").bounds(),
            (Duration::from_secs(20), Some(Duration::from_secs(20)))
        );
        assert_eq!(
            duration("uniform(1s, 2s)").bounds(),
            (Duration::from_secs(1), Some(Duration::from_secs(2)))
        );
        assert_eq!(duration("exponential(2s)").bounds(), unbounded);
        assert_eq!(duration("normal(25s, 3s)").bounds(), unbounded);
        assert_eq!(duration("lognormal(1s, 2s)").bounds(), unbounded);
        assert_eq!(
            duration("empirical(5s, 1s, 2s)").bounds(),
            (Duration::from_secs(1), Some(Duration::from_secs(5)))
        );
        assert_eq!(
            duration("mixture(1 * 3s, 1 * uniform(1s, 2s))").bounds(),
            (Duration::from_secs(1), Some(Duration::from_secs(3)))
        );
        assert_eq!(
            number("mixture(1 * 3, 1 * exponential(1))").bounds(),
            (0.0, f64::INFINITY)
        );
        assert_eq!(number("uniform(-1, 1)").bounds(), (-1.0, 1.0));
        let constant = [
            "20s",
            "uniform(2s, 2s)",
            "normal(3s, 0s)",
            "lognormal(1s, 1s)",
            "empirical(4s, 4s)",
            "mixture(1 * 1s, 2 * 1s)",
        ];
        for form in constant {
            assert!(duration(form).is_constant(), "{form}");
        }
        for form in [
            "uniform(1s, 2s)",
            "exponential(1s)",
            "empirical(1s, 2s)",
            "mixture(1 * 1s, 2 * 2s)",
        ] {
            assert!(!duration(form).is_constant(), "{form}");
        }
        assert!(number("exponential(0)").is_constant());
        assert!(!number("normal(1, 1)").is_constant());
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Workload {
        visibility_timeout: DurationDist,
        batch_size: NumberDist,
        retry_share: NumberDist,
        fanout: NumberDist,
    }

    #[test]
    fn serde_through_toml() {
        let text = "visibility_timeout = \"lognormal(median=20s, p99=42.3s)\"\n\
                    batch_size = 10\n\
                    retry_share = 0.25\n\
                    fanout = \"uniform(1, 4)\"\n";
        let workload: Workload = toml::from_str(text).unwrap();
        assert_eq!(
            workload.visibility_timeout,
            duration("lognormal(20s, 42.3s)")
        );
        assert_eq!(workload.batch_size, NumberDist::constant(10.0));
        assert_eq!(workload.retry_share, NumberDist::constant(0.25));
        assert_eq!(workload.fanout, NumberDist::uniform(1.0, 4.0));
        let written = toml::to_string(&workload).unwrap();
        assert!(written.contains("batch_size = \"10\""), "{written}");
        assert_eq!(toml::from_str::<Workload>(&written).unwrap(), workload);
    }

    #[test]
    fn serde_errors_carry_the_line() {
        let text = "batch_size = 10\n\
                    visibility_timeout = \"uniform(30s, 15s)\"\n\
                    retry_share = 0.25\n\
                    fanout = 1\n";
        let error = toml::from_str::<Workload>(text).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(
            error.contains("`uniform(30s, 15s)`: low 30s is above high 15s"),
            "{error}"
        );
        let unitless = text.replace("\"uniform(30s, 15s)\"", "20");
        let error = toml::from_str::<Workload>(&unitless)
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(
            error.contains("a duration distribution in a string"),
            "{error}"
        );
    }
}
