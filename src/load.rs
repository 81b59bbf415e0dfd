//! Loading scenarios: files (or the profiles embedded in the binary), `extends` chains, `--seed` and
//! `--set` overrides, and errors that name the file, the line and the field.
//!
//! Depends on `sim::scenario` for merging and typed deserialisation; it is the only module that reads
//! scenario files.

use crate::failure::Failure;
use sim::scenario::{self, ScenarioError};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The scenarios shipped in `scenarios/`, embedded so the binary runs anywhere.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "described.toml",
        include_str!("../scenarios/described.toml"),
    ),
    ("built.toml", include_str!("../scenarios/built.toml")),
    ("quick.toml", include_str!("../scenarios/quick.toml")),
    ("hunt.toml", include_str!("../scenarios/hunt.toml")),
    ("scale.toml", include_str!("../scenarios/scale.toml")),
    ("mmc.toml", include_str!("../scenarios/mmc.toml")),
    (
        "fixes/group_per_collection.toml",
        include_str!("../scenarios/fixes/group_per_collection.toml"),
    ),
    (
        "fixes/retry_missing_ids.toml",
        include_str!("../scenarios/fixes/retry_missing_ids.toml"),
    ),
    (
        "fixes/honoured_wait.toml",
        include_str!("../scenarios/fixes/honoured_wait.toml"),
    ),
    (
        "fixes/forward_inserts.toml",
        include_str!("../scenarios/fixes/forward_inserts.toml"),
    ),
    (
        "fixes/all.toml",
        include_str!("../scenarios/fixes/all.toml"),
    ),
    (
        "fixes/maximum_concurrency.toml",
        include_str!("../scenarios/fixes/maximum_concurrency.toml"),
    ),
    (
        "fixes/cas_pointer.toml",
        include_str!("../scenarios/fixes/cas_pointer.toml"),
    ),
    (
        "fixes/sync_on_merge.toml",
        include_str!("../scenarios/fixes/sync_on_merge.toml"),
    ),
];

/// The most files an `extends` chain may have.
const EXTENDS_DEPTH_MAX: usize = 16;
/// The most bytes a scenario file may hold.
const SCENARIO_BYTES_MAX: u64 = 1 << 20;

/// One source file of a scenario, kept for locating errors.
struct Source {
    name: String,
    text: String,
    /// The folder of a file read from disk (not of an embedded scenario).
    dir: Option<PathBuf>,
}

/// A merged, overridden scenario table and where its parts came from.
pub struct Loaded {
    pub table: Table,
    sources: Vec<Source>,
    overrides: Vec<(String, String)>,
}

/// The folder a scenario was read from, against which its `extends` is resolved.
#[derive(Clone, Debug)]
enum Origin {
    /// The working directory (a scenario named on the command line).
    CommandLine,
    Disk(PathBuf),
    /// A folder inside the embedded `scenarios/` ("" or "fixes").
    Embedded(String),
}

/// Reads a scenario: a file on disk, or else an embedded profile of that name.
fn read_source(spec: &str, origin: &Origin) -> Result<(String, String, Origin), Failure> {
    let path = match origin {
        Origin::Disk(dir) => dir.join(spec),
        Origin::CommandLine | Origin::Embedded(_) => PathBuf::from(spec),
    };
    if !matches!(origin, Origin::Embedded(_)) && path.exists() {
        let text = read_text_file(&path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok((path.display().to_string(), text, Origin::Disk(dir)));
    }
    let embedded_dir = match origin {
        Origin::Embedded(dir) => dir.as_str(),
        _ => "",
    };
    let name = embedded_name(embedded_dir, spec);
    if let Some((name, text)) = EMBEDDED.iter().find(|(embedded, _)| *embedded == name) {
        let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir).to_string();
        return Ok((
            format!("(embedded) scenarios/{name}"),
            text.to_string(),
            Origin::Embedded(dir),
        ));
    }
    let known: Vec<&str> = EMBEDDED
        .iter()
        .map(|(name, _)| name.trim_end_matches(".toml"))
        .collect();
    Err(Failure::bad_input(format!(
        "{}: no such file, and no embedded scenario of that name (embedded: {})",
        path.display(),
        known.join(", ")
    )))
}

/// Reads a scenario file: a regular file of at most `SCENARIO_BYTES_MAX` bytes of UTF-8; an
/// invalid byte is reported at its line and column.
fn read_text_file(path: &Path) -> Result<String, Failure> {
    let shown = path.display();
    let fail = |message: String| Failure::bad_input(format!("{shown}: {message}"));
    let metadata =
        std::fs::metadata(path).map_err(|error| fail(format!("cannot read: {error}")))?;
    if !metadata.is_file() {
        return Err(fail(
            "not a regular file: a scenario is a TOML file".to_string(),
        ));
    }
    if metadata.len() > SCENARIO_BYTES_MAX {
        return Err(fail(format!(
            "{} bytes: a scenario file holds at most {SCENARIO_BYTES_MAX}",
            metadata.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|error| fail(format!("cannot read: {error}")))?;
    String::from_utf8(bytes).map_err(|error| {
        let valid = error.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&error.as_bytes()[..valid]).into_owned();
        let (line, column) = line_column(&text, valid);
        Failure::bad_input(format!("{shown}:{line}:{column}: not UTF-8 text"))
    })
}

/// The embedded name `spec` stands for when read from the embedded folder `dir`: `built`,
/// `built.toml`, `scenarios/built.toml` and, from `fixes`, `../built.toml` all name `built.toml`.
fn embedded_name(dir: &str, spec: &str) -> String {
    let spec = spec.strip_prefix("scenarios/").unwrap_or(spec);
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in spec.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let name = parts.join("/");
    let name = name.strip_prefix("scenarios/").unwrap_or(&name).to_string();
    if name.ends_with(".toml") {
        name
    } else {
        format!("{name}.toml")
    }
}

fn parse_table(name: &str, text: &str) -> Result<Table, Failure> {
    toml::from_str::<Table>(text).map_err(|error| {
        let position = error
            .span()
            .map(|span| {
                let (line, column) = line_column(text, span.start);
                format!(":{line}:{column}")
            })
            .unwrap_or_default();
        let mut message = error.message().trim().to_string();
        if message == "duplicate key"
            && let Some(span) = error.span()
        {
            let key = text.get(span.clone()).unwrap_or("").trim();
            message = format!("duplicate key `{}`", sim::time::echo(key));
        }
        Failure::bad_input(format!("{name}{position}: {message}"))
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Loads `spec`, follows its `extends` chain, applies `--seed` and `--set`.
pub fn load(spec: &str, seed: Option<u64>, overrides: &[String]) -> Result<Loaded, Failure> {
    let mut chain: Vec<(Source, Table)> = Vec::new();
    let mut next: Option<(String, Origin)> = Some((spec.to_string(), Origin::CommandLine));
    while let Some((spec, origin)) = next.take() {
        if chain.len() >= EXTENDS_DEPTH_MAX {
            return Err(Failure::bad_input(format!(
                "{}: `extends` chain longer than {EXTENDS_DEPTH_MAX} files",
                sim::time::echo(&spec)
            )));
        }
        let (name, text, origin) =
            read_source(&spec, &origin).map_err(|failure| match chain.last() {
                Some((source, _)) => {
                    let (line, _) = find_key(&source.text, &["extends"]).unwrap_or((1, 1));
                    Failure::bad_input(format!(
                        "{}:{line}: field `extends`: {failure}",
                        source.name
                    ))
                }
                None => failure,
            })?;
        if chain.iter().any(|(source, _)| source.name == name) {
            return Err(Failure::bad_input(format!(
                "{name}: `extends` leads back to this file (a cycle)"
            )));
        }
        let dir = match &origin {
            Origin::Disk(dir) => Some(dir.clone()),
            Origin::CommandLine | Origin::Embedded(_) => None,
        };
        let table = parse_table(&name, &text)?;
        match table.get("extends") {
            None => {}
            Some(Value::String(base)) => next = Some((base.clone(), origin)),
            Some(_) => {
                let (line, _) = find_key(&text, &["extends"]).unwrap_or((1, 1));
                return Err(Failure::bad_input(format!(
                    "{name}:{line}: field `extends`: expected the path of a base scenario"
                )));
            }
        }
        chain.push((Source { name, text, dir }, table));
    }
    let mut merged = Table::new();
    let mut sources = Vec::new();
    for (source, table) in chain.into_iter().rev() {
        scenario::merge_tables(&mut merged, table);
        sources.push(source);
    }
    sources.reverse();
    let mut loaded = Loaded {
        table: merged,
        sources,
        overrides: Vec::new(),
    };
    if let Some(seed) = seed {
        // A TOML integer holds seeds below 2^63; larger ones are written as text.
        let value = i64::try_from(seed).map_or(Value::String(seed.to_string()), Value::Integer);
        loaded.apply("seed", value, format!("--seed {seed}"))?;
    }
    for text in overrides {
        let (path, value) = scenario::parse_override(text)
            .map_err(|message| Failure::bad_input(sim::time::echo(&message)))?;
        loaded.apply(&path, value, format!("--set {}", sim::time::echo(text)))?;
    }
    Ok(loaded)
}

impl Loaded {
    fn apply(&mut self, path: &str, value: Value, origin: String) -> Result<(), Failure> {
        if path == "extends" {
            return Err(Failure::bad_input(format!(
                "{origin}: `extends` is read from scenario files only; name the base scenario on \
                 the command line or write `extends` in a file"
            )));
        }
        scenario::set_path(&mut self.table, path, value)
            .map_err(|message| Failure::bad_input(format!("{origin}: {message}")))?;
        self.overrides.push((path.to_string(), origin));
        Ok(())
    }

    /// The model the scenario asks for.
    pub fn model(&self) -> Result<String, Failure> {
        scenario::model_of(&self.table)
            .map(str::to_string)
            .map_err(|error| self.failure(error))
    }

    /// Turns a scenario error into one line naming where the field was written.
    pub fn failure(&self, error: ScenarioError) -> Failure {
        let location = match &error.field {
            Some(field) => self.locate(field),
            None => self
                .sources
                .first()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
        };
        Failure::bad_input(format!("{location}: {error}"))
    }

    /// Resolves a path written as the value of `field`: relative to the folder of the scenario file
    /// that wrote it, or to the working directory when it came from the command line.
    pub fn resolve_path(&self, field: &str, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        let overridden = self
            .overrides
            .iter()
            .any(|(set, _)| field == set || field.starts_with(&format!("{set}.")));
        if overridden {
            return path.to_path_buf();
        }
        let parts: Vec<&str> = field.split('.').collect();
        let writer = self.sources.iter().find(|source| {
            (1..=parts.len())
                .rev()
                .any(|depth| find_key(&source.text, &parts[..depth]).is_some())
        });
        match writer.and_then(|source| source.dir.as_ref()) {
            Some(dir) => dir.join(path),
            None => path.to_path_buf(),
        }
    }

    /// `file:line` where `field` (a dotted path) is written, or the override that set it.
    pub fn locate(&self, field: &str) -> String {
        for (path, origin) in self.overrides.iter().rev() {
            if field == path
                || field.starts_with(&format!("{path}."))
                || path.starts_with(&format!("{field}."))
            {
                return origin.clone();
            }
        }
        let parts: Vec<&str> = field.split('.').collect();
        for source in &self.sources {
            if let Some((line, _)) = find_key(&source.text, &parts) {
                return format!("{}:{line}", source.name);
            }
        }
        // The field's nearest parent that is written somewhere.
        for depth in (1..parts.len()).rev() {
            for source in &self.sources {
                if let Some((line, _)) = find_key(&source.text, &parts[..depth]) {
                    return format!("{}:{line}", source.name);
                }
            }
        }
        self.sources
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }
}

/// Finds the line declaring the key `parts` (a dotted path) in a TOML text: `[a.b]` then `c = …`,
/// a dotted key `a.b.c = …`, or the header `[a.b.c]` itself.
fn find_key(text: &str, parts: &[&str]) -> Option<(usize, usize)> {
    let mut header: Vec<String> = Vec::new();
    for (number, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']').trim();
            header = name
                .split('.')
                .map(|p| p.trim().trim_matches('"').to_string())
                .collect();
            if header == parts {
                return Some((number + 1, 1));
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let mut full: Vec<String> = header.clone();
        full.extend(
            key.split('.')
                .map(|p| p.trim().trim_matches('"').to_string()),
        );
        if full == parts {
            return Some((number + 1, 1));
        }
    }
    None
}

/// The resolved scenario as JSON, for exports.
pub fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::to_value(table).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_under_headers_and_dotted() {
        let text = "seed = 1\n[mmc]\nservers = 4\n# c\n[a.b]\nc = 1\nx.y = 2\n";
        assert_eq!(find_key(text, &["seed"]), Some((1, 1)));
        assert_eq!(find_key(text, &["mmc", "servers"]), Some((3, 1)));
        assert_eq!(find_key(text, &["a", "b"]), Some((5, 1)));
        assert_eq!(find_key(text, &["a", "b", "x", "y"]), Some((7, 1)));
        assert_eq!(find_key(text, &["mmc", "nope"]), None);
    }

    #[test]
    fn embedded_names_resolve_relative_to_their_folder() {
        assert_eq!(embedded_name("", "built"), "built.toml");
        assert_eq!(embedded_name("", "scenarios/built.toml"), "built.toml");
        assert_eq!(
            embedded_name("", "./fixes/cas_pointer"),
            "fixes/cas_pointer.toml"
        );
        assert_eq!(embedded_name("fixes", "../built.toml"), "built.toml");
        for (name, _) in EMBEDDED {
            let (_, _, _) = read_source(name, &Origin::Embedded(String::new())).unwrap();
        }
    }

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
