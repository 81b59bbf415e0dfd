//! Exports of a command's result: one exporter per format (JSON, Markdown, HTML), each rendering
//! the result's JSON value (made from the command's typed result structs). The files are created
//! before any work and rewritten whole after each case, so a crash leaves complete partial results.
//!
//! Depends on `output` and `report` (the HTML page).

use crate::failure::Failure;
use crate::output::Output;
use serde_json::Value;
use std::fmt::Write as _;

/// Renders a result in one format.
pub trait Exporter {
    fn render(&self, result: &Value) -> Result<Vec<u8>, Failure>;
}

pub struct JsonExporter;
pub struct MarkdownExporter;
pub struct HtmlExporter;

impl Exporter for JsonExporter {
    fn render(&self, result: &Value) -> Result<Vec<u8>, Failure> {
        let mut bytes = serde_json::to_vec_pretty(result)
            .map_err(|error| Failure::bad_input(format!("cannot encode JSON: {error}")))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

impl Exporter for MarkdownExporter {
    fn render(&self, result: &Value) -> Result<Vec<u8>, Failure> {
        Ok(markdown(result).into_bytes())
    }
}

impl Exporter for HtmlExporter {
    fn render(&self, result: &Value) -> Result<Vec<u8>, Failure> {
        Ok(crate::report::page(result, None, None)?.into_bytes())
    }
}

/// The export files of one command.
#[derive(Default)]
pub struct Exports {
    outputs: Vec<(Output, Box<dyn Exporter + Sync>)>,
}

impl Exports {
    /// Creates each named export now, so a bad path fails before any work.
    pub fn create(
        json: Option<&str>,
        markdown: Option<&str>,
        html: Option<&str>,
    ) -> Result<Exports, Failure> {
        let mut exports = Exports::default();
        let formats: [(Option<&str>, &str, Box<dyn Exporter + Sync>); 3] = [
            (json, "--export-json", Box::new(JsonExporter)),
            (markdown, "--export-markdown", Box::new(MarkdownExporter)),
            (html, "--export-html", Box::new(HtmlExporter)),
        ];
        for (target, flag, exporter) in formats {
            if let Some(target) = target {
                exports
                    .outputs
                    .push((Output::create(target, flag)?, exporter));
            }
        }
        Ok(exports)
    }

    /// Rewrites every export with `result`.
    pub fn write(&self, result: &Value) -> Result<(), Failure> {
        for (output, exporter) in &self.outputs {
            output.write(&exporter.render(result)?)?;
        }
        Ok(())
    }

    /// Whether an export goes to standard output (the summary then goes to standard error).
    pub fn json_on_stdout(&self) -> bool {
        self.outputs
            .iter()
            .any(|(output, _)| matches!(output, Output::Stdout))
    }
}

fn seconds(ms: &Value) -> String {
    ms.as_f64()
        .map_or("–".to_string(), |ms| format!("{:.1}", ms / 1000.0))
}

fn overrides_text(overrides: &Value) -> String {
    overrides
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The Markdown table of a sweep's cases.
pub fn sweep_markdown(result: &crate::sweep::SweepResult) -> String {
    markdown(&serde_json::to_value(result).unwrap_or(Value::Null))
}

fn sweep_table(text: &mut String, result: &Value) {
    let _ = writeln!(
        text,
        "| case | overrides | receipts | saved p99 s | visible p50 s | visible p99 s | anomalies % | dead letters | unfinished |"
    );
    let _ = writeln!(text, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in result["cases"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
            case["index"],
            overrides_text(&case["overrides"]),
            case["receipts"],
            seconds(&case["labels_saved_ms"]["p99"]),
            seconds(&case["labels_visible_ms"]["p50"]),
            seconds(&case["labels_visible_ms"]["p99"]),
            100.0 * case["anomalies"]["share"].as_f64().unwrap_or(0.0),
            case["dead_lettered"],
            case["unfinished"],
        );
    }
}

fn plan_tables(text: &mut String, result: &Value) {
    let _ = writeln!(
        text,
        "Objective: `{}`\n",
        result["objective"].as_str().unwrap_or("")
    );
    let _ = writeln!(text, "| load | cheapest configuration meeting it | cost |");
    let _ = writeln!(text, "|---:|---|---:|");
    for load in result["loads"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "| {} | {} | {} |",
            load["load"],
            load["cheapest"].as_str().unwrap_or("none"),
            load["cost"]
        );
    }
    let _ = writeln!(
        text,
        "\n| configuration | cost | meets up to | fails from | why |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---|");
    for config in result["configurations"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} |",
            config["name"].as_str().unwrap_or(""),
            config["cost"],
            config["meets_up_to"],
            config["fails_from"],
            config["fails_because"].as_str().unwrap_or("–"),
        );
    }
}

fn trial_table(text: &mut String, name: &str, trial: &Value) {
    let latency = &trial["latency_ms"];
    let _ = writeln!(
        text,
        "| {name} | {} | {} | {} | {} | {} | {} |",
        trial["fingerprint"].as_str().unwrap_or(""),
        trial["receipts"],
        seconds(&latency["labels_saved"]["p99"]),
        seconds(&latency["labels_visible"]["p50"]),
        seconds(&latency["labels_visible"]["p99"]),
        trial["anomalies"]["receipts_affected"],
    );
}

/// A result as Markdown: a heading and the table its command calls for.
pub fn markdown(result: &Value) -> String {
    let command = result["command"].as_str().unwrap_or("result");
    let mut text = format!("# receipt-sim {command}\n\n");
    match command {
        "sweep" => sweep_table(&mut text, result),
        "plan" => plan_tables(&mut text, result),
        "verdict" => text = result["markdown"].as_str().unwrap_or_default().to_string(),
        "run" | "compare" => {
            let _ = writeln!(
                text,
                "| flow | fingerprint | receipts | saved p99 s | visible p50 s | visible p99 s | receipts affected |"
            );
            let _ = writeln!(text, "|---|---|---:|---:|---:|---:|---:|");
            if command == "run" {
                trial_table(&mut text, result["flow"].as_str().unwrap_or(""), result);
            } else {
                trial_table(&mut text, "old", &result["old"]);
                trial_table(&mut text, "new", &result["new"]);
            }
        }
        _ => {
            let _ = writeln!(
                text,
                "```json\n{}\n```",
                serde_json::to_string_pretty(result).unwrap_or_default()
            );
        }
    }
    text
}
