//! Exports of a command's result: one exporter per format (JSON, Markdown, HTML), each rendering
//! the result's JSON value (made from the command's typed result structs). The files are created
//! before any work and rewritten whole after each case, so a crash leaves complete partial results.
//!
//! Depends on `output`, `markdown` and `report` (the HTML page).

use crate::failure::Failure;
use crate::output::Output;
use serde_json::Value;

/// Renders a result in one format.
pub trait Exporter {
    fn render(&self, result: &Value) -> Result<Vec<u8>, Failure>;
}

pub struct JsonExporter;
pub struct MarkdownExporter;
pub struct HtmlExporter;

impl Exporter for JsonExporter {
    fn render(&self, result: &Value) -> Result<Vec<u8>, Failure> {
        crate::output::json_bytes(result)
    }
}

impl Exporter for MarkdownExporter {
    fn render(&self, result: &Value) -> Result<Vec<u8>, Failure> {
        Ok(crate::markdown::markdown(result).into_bytes())
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

    /// Lands `result`, the cases done so far, in every export file now (`Output::write_partial`).
    pub fn write_partial(&self, result: &Value) -> Result<(), Failure> {
        for (output, exporter) in &self.outputs {
            if matches!(output, Output::File { .. }) {
                output.write_partial(&exporter.render(result)?)?;
            }
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
