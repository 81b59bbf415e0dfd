//! `report`: a self-contained HTML page (plots inlined as SVG data) and every plot as SVG and PNG,
//! from the JSON result of `run`, `compare`, `hunt`, `verdict`, `sweep` or `plan`. Which plots a
//! result gets depends on what it measured: latency CDFs, the per-stage breakdown, queue depth and
//! age over time, function utilisation, anomaly share and p99 against load, and a timeline of each
//! counterexample.
//!
//! Depends on `plots`, `histogram`, `exporters` (the summary table), `output` and `failure`.

use crate::failure::Failure;
use crate::histogram::Buckets;
use crate::plots::{BarChart, LineChart, Mark, Plot, Series, Timeline};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The most counterexample timelines a page draws.
const TIMELINES_MAX: usize = 12;
/// The most characters of a timeline label.
const TIMELINE_LABEL_CHARS_MAX: usize = 40;

/// A named plot of the page.
pub struct Figure {
    pub name: String,
    pub plot: Plot,
}

fn figure(name: &str, plot: Plot) -> Figure {
    Figure {
        name: name.to_string(),
        plot,
    }
}

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_string(),
        points,
        intervals: Vec::new(),
    }
}

fn lines(title: &str, x: &str, y: &str, series: Vec<Series>) -> Plot {
    Plot::Lines(LineChart {
        title: title.to_string(),
        x_label: x.to_string(),
        y_label: y.to_string(),
        series,
        threshold: None,
    })
}

/// The empirical CDF of sorted values, in seconds.
fn cdf(values_ms: &[f64]) -> Vec<(f64, f64)> {
    let n = values_ms.len().max(1) as f64;
    values_ms
        .iter()
        .enumerate()
        .map(|(i, ms)| (ms / 1000.0, (i + 1) as f64 / n))
        .collect()
}

fn values(trial: &Value, latency: &str) -> Vec<f64> {
    trial["latency_values_ms"][latency]
        .as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

/// The plots of one or two trials (`run`, `compare`).
fn trial_figures(trials: &[(&str, &Value)]) -> Vec<Figure> {
    let mut figures = vec![trial_latency_cdf(trials), trial_stages(trials)];
    figures.extend(trial_queue_figures(trials));
    figures.push(trial_utilisation(trials));
    figures
}

fn trial_latency_cdf(trials: &[(&str, &Value)]) -> Figure {
    let mut cdfs = Vec::new();
    for (flow, trial) in trials {
        for latency in ["labels_saved", "labels_visible"] {
            cdfs.push(series(
                &format!("{flow} {latency}"),
                cdf(&values(trial, latency)),
            ));
        }
    }
    figure(
        "latency_cdf",
        lines(
            "Latency CDF",
            "seconds since arrival",
            "share of receipts",
            cdfs,
        ),
    )
}

/// p50 and p99 of each stage that saw a receipt in the first trial, per flow.
fn trial_stages(trials: &[(&str, &Value)]) -> Figure {
    let (_, first) = trials[0];
    let stages: Vec<String> = first["latency_ms"]["stages"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, s)| f(&s["count"]) > 0.0)
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut groups = Vec::new();
    for (flow, trial) in trials {
        for p in ["p50", "p99"] {
            let values = stages
                .iter()
                .map(|s| f(&trial["latency_ms"]["stages"][s][p]) / 1000.0)
                .collect();
            groups.push((format!("{flow} {p}"), values));
        }
    }
    figure(
        "stages",
        Plot::Bars(BarChart {
            title: "Per-stage latency".to_string(),
            x_label: "seconds".to_string(),
            categories: stages,
            groups,
        }),
    )
}

/// Depth and oldest age over time of each queue, per flow.
fn trial_queue_figures(trials: &[(&str, &Value)]) -> Vec<Figure> {
    let mut figures = Vec::new();
    for (key, title, unit) in [
        ("depth", "Queue depth over time", "messages"),
        ("oldest_age_s", "Oldest message age over time", "seconds"),
    ] {
        let mut all = Vec::new();
        for (flow, trial) in trials {
            for queue in ["upload", "lines", "words"] {
                let points = trial["queues"][queue]["samples"]
                    .as_array()
                    .map(|s| s.iter().map(|s| (f(&s["at_s"]), f(&s[key]))).collect())
                    .unwrap_or_default();
                all.push(series(&format!("{flow} {queue}"), points));
            }
        }
        figures.push(figure(
            &format!("queue_{key}"),
            lines(title, "simulated time (s)", unit, all),
        ));
    }
    figures
}

fn trial_utilisation(trials: &[(&str, &Value)]) -> Figure {
    let functions = ["upload", "stream_processor", "compaction"];
    let groups = trials
        .iter()
        .map(|(flow, trial)| {
            (
                flow.to_string(),
                functions
                    .iter()
                    .map(|k| f(&trial["utilisation"][k]))
                    .collect(),
            )
        })
        .collect();
    figure(
        "utilisation",
        Plot::Bars(BarChart {
            title: "Function utilisation".to_string(),
            x_label: "share of reserved concurrency busy".to_string(),
            categories: functions.iter().map(|s| s.to_string()).collect(),
            groups,
        }),
    )
}

fn actor_name(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", actor_name(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string().trim_matches('"').to_string(),
    }
}

/// A timeline of a counterexample's history excerpt.
fn timeline(title: &str, excerpt: &Value) -> Plot {
    let marks = excerpt
        .as_array()
        .into_iter()
        .flatten()
        .map(|record| Mark {
            at_s: f(&record["at_s"]),
            lane: actor_name(&record["actor"]),
            label: {
                let detail = record["detail"].as_str().unwrap_or("");
                let text = format!("{} {detail}", actor_name(&record["event"]));
                text.chars().take(TIMELINE_LABEL_CHARS_MAX).collect()
            },
        })
        .collect();
    Plot::Timeline(Timeline {
        title: title.to_string(),
        marks,
    })
}

fn hunt_figures(result: &Value, base: Option<&Path>) -> Vec<Figure> {
    let kinds: Vec<&Value> = result["anomalies"]["kinds"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut figures = vec![figure(
        "anomaly_kinds",
        Plot::Bars(BarChart {
            title: "Share of receipts affected, by class and cause".to_string(),
            x_label: "share of receipts".to_string(),
            categories: kinds
                .iter()
                .map(|k| {
                    format!(
                        "{} {}",
                        k["class"].as_str().unwrap_or(""),
                        k["cause"].as_str().unwrap_or("")
                    )
                })
                .collect(),
            groups: vec![
                (
                    "share".to_string(),
                    kinds.iter().map(|k| f(&k["share"])).collect(),
                ),
                (
                    "95% upper".to_string(),
                    kinds.iter().map(|k| f(&k["share_ci95"][1])).collect(),
                ),
            ],
        }),
    )];
    let files = result["counterexamples"].as_array().into_iter().flatten();
    for (index, file) in files.take(TIMELINES_MAX).enumerate() {
        let Some(path) = file.as_str() else { continue };
        let candidates = [
            Some(Path::new(path).to_path_buf()),
            base.map(|b| b.join(path)),
        ];
        let Some(text) = candidates
            .iter()
            .flatten()
            .find_map(|p| std::fs::read_to_string(p).ok())
        else {
            continue;
        };
        let Ok(counterexample) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let title = format!(
            "Counterexample {} {}: {}",
            counterexample["class"].as_str().unwrap_or(""),
            counterexample["cause"].as_str().unwrap_or(""),
            counterexample["description"].as_str().unwrap_or("")
        );
        let title: String = title.chars().take(110).collect();
        figures.push(figure(
            &format!("timeline_{index}"),
            timeline(&title, &counterexample["excerpt"]),
        ));
    }
    figures
}

fn verdict_figures(result: &Value) -> Vec<Figure> {
    let loads: Vec<String> = result["loads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect();
    let mut shares: BTreeMap<String, Series> = BTreeMap::new();
    let mut p99s: BTreeMap<String, Series> = BTreeMap::new();
    for row in result["rows"].as_array().into_iter().flatten() {
        if row["flow"] != "new" {
            continue;
        }
        let name = row["configuration"].as_str().unwrap_or("").to_string();
        let x = loads
            .iter()
            .position(|l| row["load"] == l.as_str())
            .unwrap_or(0) as f64
            + 1.0;
        let any = &row["anomalies"]["any"];
        let entry = shares
            .entry(name.clone())
            .or_insert_with(|| series(&name, Vec::new()));
        entry.points.push((x, f(&any["share"])));
        entry
            .intervals
            .push((x, f(&any["ci95"][0]), f(&any["ci95"][1])));
        let visible = &row["labels_visible_ms"];
        if f(&visible["count"]) > 0.0 {
            p99s.entry(name.clone())
                .or_insert_with(|| series(&name, Vec::new()))
                .points
                .push((x, f(&visible["p99"]) / 1000.0));
        }
    }
    let axis = format!(
        "load ({})",
        loads
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{} = {l}", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    vec![
        figure(
            "anomaly_share",
            lines(
                "Anomaly share against load, new flow (95% intervals)",
                &axis,
                "share of receipts",
                shares.into_values().collect(),
            ),
        ),
        figure(
            "visible_p99",
            lines(
                "Labels visible p99 against load, new flow",
                &axis,
                "seconds",
                p99s.into_values().collect(),
            ),
        ),
    ]
}

/// The load axis of a sweep: the plan's, else the first numeric axis.
fn load_axis(spec: &Value) -> Option<String> {
    if let Some(load) = spec["plan"]["load"].as_str() {
        return Some(load.to_string());
    }
    spec["axes"]
        .as_array()?
        .iter()
        .find(|a| {
            a["values"]
                .as_array()
                .is_some_and(|v| v.iter().all(Value::is_number))
        })
        .and_then(|a| a["path"].as_str().map(str::to_string))
}

fn configuration_name(overrides: &Value, load: &str) -> String {
    crate::markdown::configuration_name(
        overrides
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != load),
    )
}

fn sweep_figures(result: &Value) -> Vec<Figure> {
    let mut figures = vec![sweep_latency_cdf(result)];
    if let Some(load) = load_axis(&result["spec"]) {
        figures.extend(sweep_load_figures(result, &load));
    }
    figures
}

/// The latency CDFs of each flow over all cases, from the merged histograms.
fn sweep_latency_cdf(result: &Value) -> Figure {
    let mut cdfs = Vec::new();
    for (flow, totals) in result["totals"].as_object().into_iter().flatten() {
        for latency in ["labels_saved", "labels_visible"] {
            let buckets: Buckets =
                serde_json::from_value(totals["histograms"][latency].clone()).unwrap_or_default();
            let points = buckets
                .cdf_ms()
                .into_iter()
                .map(|(ms, share)| (ms / 1000.0, share))
                .collect();
            cdfs.push(series(&format!("{flow} {latency}"), points));
        }
    }
    figure(
        "latency_cdf",
        lines(
            "Latency CDF over all cases (merged histograms)",
            "seconds since arrival",
            "share of receipts",
            cdfs,
        ),
    )
}

/// One series per configuration of a sweep, keyed by its name, each sorted by load when drawn.
#[derive(Default)]
struct SeriesByConfiguration(BTreeMap<String, Series>);

impl SeriesByConfiguration {
    fn of(&mut self, name: &str) -> &mut Series {
        self.0
            .entry(name.to_owned())
            .or_insert_with(|| series(name, Vec::new()))
    }

    fn sorted(self) -> Vec<Series> {
        self.0
            .into_values()
            .map(|mut s| {
                s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
                s
            })
            .collect()
    }
}

/// Labels-visible p99, anomaly share and compaction utilisation against the sweep's load axis.
fn sweep_load_figures(result: &Value, load: &str) -> [Figure; 3] {
    let mut p99 = SeriesByConfiguration::default();
    let mut shares = SeriesByConfiguration::default();
    let mut busy = SeriesByConfiguration::default();
    for case in result["cases"].as_array().into_iter().flatten() {
        let name = configuration_name(&case["overrides"], load);
        let x = f(&case["overrides"][load]);
        if f(&case["labels_visible_ms"]["count"]) > 0.0 {
            let seconds = f(&case["labels_visible_ms"]["p99"]) / 1000.0;
            p99.of(&name).points.push((x, seconds));
        }
        let share = shares.of(&name);
        share.points.push((x, f(&case["anomalies"]["share"])));
        let interval = &case["anomalies"]["ci95"];
        share.intervals.push((x, f(&interval[0]), f(&interval[1])));
        let replications = case["replications"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mean = replications
            .iter()
            .map(|r| f(&r["utilisation"]["compaction"]))
            .sum::<f64>()
            / replications.len().max(1) as f64;
        busy.of(&name).points.push((x, mean));
    }
    let chart = |name, title, y: &str, data: SeriesByConfiguration| {
        figure(name, lines(title, load, y, data.sorted()))
    };
    [
        chart(
            "visible_p99",
            "Labels visible p99 against load per configuration",
            "seconds",
            p99,
        ),
        chart(
            "anomaly_share",
            "Anomaly share against load (95% intervals)",
            "share of receipts",
            shares,
        ),
        chart(
            "utilisation",
            "Compaction utilisation against load",
            "share busy (mean of replications)",
            busy,
        ),
    ]
}

fn plan_figures(result: &Value) -> Vec<Figure> {
    let objective = &result["slo"];
    let mut all = Vec::new();
    for config in result["configurations"].as_array().into_iter().flatten() {
        let points = config["points"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| f(&p["measured_ms"]) > 0.0)
            .map(|p| (f(&p["load"]), f(&p["measured_ms"]) / 1000.0))
            .collect();
        all.push(series(config["name"].as_str().unwrap_or(""), points));
    }
    let title = format!(
        "{}.{} against load per configuration",
        objective["latency"].as_str().unwrap_or(""),
        objective["percentile"].as_str().unwrap_or("")
    );
    vec![figure(
        "plan",
        Plot::Lines(LineChart {
            title,
            x_label: result["load_axis"].as_str().unwrap_or("load").to_string(),
            y_label: "seconds".to_string(),
            series: all,
            threshold: Some((
                format!("objective {}", result["objective"].as_str().unwrap_or("")),
                f(&objective["below_ms"]) / 1000.0,
            )),
        }),
    )]
}

/// The figures a result calls for.
pub fn figures(result: &Value, base: Option<&Path>) -> Result<Vec<Figure>, Failure> {
    let command = result["command"].as_str().unwrap_or("");
    Ok(match command {
        "run" if result["latency_ms"].is_object() => {
            trial_figures(&[(result["flow"].as_str().unwrap_or("trial"), result)])
        }
        "run" => Vec::new(),
        "compare" => trial_figures(&[("old", &result["old"]), ("new", &result["new"])]),
        "hunt" => hunt_figures(result, base),
        "verdict" => verdict_figures(result),
        "sweep" => sweep_figures(result),
        "plan" => plan_figures(result),
        other => {
            return Err(Failure::bad_input(format!(
                "not a result of run, compare, hunt, verdict, sweep or plan (command `{other}`)"
            )));
        }
    })
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML page of a result. With `out`, every plot is also written there as SVG and PNG.
/// Counterexample files named in the result are found as given or else under `base`.
pub fn page(result: &Value, out: Option<&Path>, base: Option<&Path>) -> Result<String, Failure> {
    let figures = figures(result, base)?;
    let command = result["command"].as_str().unwrap_or("result");
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>receipt-sim {command}</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}img{{display:block;margin:1em 0;border:1px solid #ccc}}pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}}</style></head><body>\n<h1>receipt-sim {command}</h1>\n"
    );
    for figure in &figures {
        let svg = crate::plots::svg(&figure.plot)
            .map_err(|error| Failure::bad_input(format!("plot {}: {error}", figure.name)))?;
        if let Some(dir) = out {
            crate::output::write_atomically(
                &dir.join(format!("{}.svg", figure.name)),
                svg.as_bytes(),
            )?;
            crate::plots::png(&figure.plot, &dir.join(format!("{}.png", figure.name))).map_err(
                |error| {
                    Failure::bad_input(format!("{}: {error}", dir.join(&figure.name).display()))
                },
            )?;
        }
        let _ = writeln!(
            html,
            "<figure><img id=\"{}\" alt=\"{}\" width=\"{}\" height=\"{}\" src=\"data:image/svg+xml;base64,{}\"></figure>",
            figure.name,
            figure.name,
            crate::plots::size(&figure.plot).0,
            crate::plots::size(&figure.plot).1,
            base64(svg.as_bytes())
        );
    }
    let _ = writeln!(
        html,
        "<h2>Summary</h2>\n<pre>{}</pre>\n</body></html>",
        escape(&crate::markdown::markdown(result))
    );
    Ok(html)
}

/// `report RESULTS --out DIR`.
pub fn report(results: &str, out: &str) -> Result<(), Failure> {
    let text = std::fs::read_to_string(results)
        .map_err(|error| Failure::bad_input(format!("{results}: cannot read: {error}")))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|error| Failure::bad_input(format!("{results}: not JSON: {error}")))?;
    let dir = Path::new(out);
    std::fs::create_dir_all(dir)
        .map_err(|error| Failure::bad_input(format!("--out {out}: cannot create: {error}")))?;
    let base = Path::new(results).parent();
    let html = page(&value, Some(dir), base)
        .map_err(|error| Failure::bad_input(format!("{results}: {error}")))?;
    let index = dir.join("index.html");
    crate::output::write_atomically(&index, html.as_bytes())?;
    println!("wrote {}", index.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
