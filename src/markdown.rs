//! The Markdown form of a command's result: tables of a sweep's cases, a plan's answers and a
//! trial's figures, rendered from the result's JSON value. Used by the Markdown exporter and by
//! the HTML report, which embeds it.
//!
//! Depends on nothing in the crate.

use serde_json::Value;
use std::fmt::Write as _;

/// The name of a sweep's configuration: its overrides as `path=value`, joined, or `base`.
pub fn configuration_name<'a>(
    overrides: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> String {
    let parts: Vec<String> = overrides
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
        .collect();
    if parts.is_empty() {
        "base".to_string()
    } else {
        parts.join(", ")
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
