//! Scenario documents: the TOML tables a trial is configured from, before they become typed configs.
//!
//! A scenario is a TOML table. `model` picks the model (`"pipeline"`, the default, or `"mmc"`);
//! `extends` names a base scenario that the binary crate reads and merges underneath (reading files is
//! its job, not this crate's). Command-line overrides (`--set dotted.path=value`) are applied to the
//! merged table, which is then deserialised with unknown fields rejected and validated. Every error
//! names the dotted path of the field at fault where one can be found.
//!
//! Depends on `toml`, `serde`, and the config types of the models (`mmc`, `pipeline`).

use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// The most levels a dotted path may have.
pub const PATH_DEPTH_MAX: usize = 16;

/// A scenario error: what is wrong and, where known, which field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// Dotted path of the field at fault, e.g. `compaction.reserved_concurrency`.
    pub field: Option<String>,
    pub message: String,
}

impl ScenarioError {
    pub fn new(field: Option<String>, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            field,
            message: message.into(),
        }
    }
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Merges `overlay` into `base`: tables merge key by key, recursively; anything else replaces.
pub fn merge_tables(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base_table)), Value::Table(overlay_table)) => {
                merge_tables(base_table, overlay_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Splits `path=value` and parses the value as a TOML value (`5`, `true`, `"text"`, `[1, 2]`); a value
/// that is not valid TOML is taken as a string, so `flow=new` and `upload.ocr=uniform(1s, 2s)` work.
pub fn parse_override(text: &str) -> Result<(String, Value), String> {
    let Some((path, raw)) = text.split_once('=') else {
        return Err(format!(
            "--set `{text}`: expected PATH=VALUE, e.g. --set workload.receipts=500"
        ));
    };
    let path = path.trim();
    validate_path(path).map_err(|message| format!("--set `{text}`: {message}"))?;
    let raw = raw.trim();
    let value = match toml::from_str::<Table>(&format!("value = {raw}")) {
        Ok(mut table) => table.remove("value").expect("parsed table has the key"),
        Err(_) => Value::String(raw.to_string()),
    };
    Ok((path.to_string(), value))
}

fn validate_path(path: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len() > PATH_DEPTH_MAX {
        return Err(format!("path has more than {PATH_DEPTH_MAX} levels"));
    }
    for part in parts {
        let ok = !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(format!("`{path}` is not a dotted path of field names"));
        }
    }
    Ok(())
}

/// Sets `path` in `table` to `value`, creating tables on the way.
pub fn set_path(table: &mut Table, path: &str, value: Value) -> Result<(), String> {
    validate_path(path)?;
    let parts: Vec<&str> = path.split('.').collect();
    let (last, parents) = parts.split_last().expect("a path has at least one part");
    let mut current = table;
    for (depth, part) in parents.iter().enumerate() {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(next) => current = next,
            other => {
                return Err(format!(
                    "cannot set `{path}`: `{}` is a {}, not a table",
                    parts[..=depth].join("."),
                    other.type_str()
                ));
            }
        }
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// The model a scenario table asks for, read from its `model` key.
pub fn model_of(table: &Table) -> Result<&str, ScenarioError> {
    match table.get("model") {
        None => Ok("pipeline"),
        Some(Value::String(model)) if model == "pipeline" || model == "mmc" => Ok(model.as_str()),
        Some(other) => Err(ScenarioError::at(
            "model",
            format!("expected \"pipeline\" or \"mmc\", found {other}"),
        )),
    }
}

/// Deserialises a typed config from a merged table, rejecting unknown fields. The table is printed
/// as TOML and parsed back so that an error's position tells which field is at fault.
pub fn deserialize<T: DeserializeOwned>(table: &Table) -> Result<T, ScenarioError> {
    let mut table = table.clone();
    table.remove("model");
    table.remove("extends");
    let text = toml::to_string(&table)
        .map_err(|error| ScenarioError::new(None, format!("cannot print the scenario: {error}")))?;
    toml::from_str::<T>(&text).map_err(|error| {
        let field = error.span().and_then(|span| field_at(&text, span.start));
        ScenarioError::new(field, error.message().trim().to_string())
    })
}

/// The dotted path of the key written on the line holding byte `offset` of a TOML text printed by
/// `toml::to_string` (one key per line, tables under `[headers]`).
pub fn field_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let header_of = |line: &str| -> Option<String> {
        let line = line.trim();
        let inner = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]"));
        let inner = inner.or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')));
        inner.map(|name| name.trim().replace('"', ""))
    };
    if let Some(header) = header_of(line) {
        return Some(header);
    }
    let key = line
        .split_once('=')
        .map(|(key, _)| key.trim().replace('"', ""))?;
    let header = text[..line_start].lines().rev().find_map(header_of);
    Some(match header {
        Some(header) => format!("{header}.{key}"),
        None => key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        servers: u32,
        #[serde(default)]
        rate: f64,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        seed: u64,
        inner: Inner,
    }

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn overrides_parse_values_and_fall_back_to_strings() {
        assert_eq!(
            parse_override("a.b=5").unwrap(),
            ("a.b".into(), Value::Integer(5))
        );
        assert_eq!(
            parse_override("flow=new").unwrap().1,
            Value::String("new".into())
        );
        assert_eq!(
            parse_override("x=uniform(1s, 2s)").unwrap().1,
            Value::String("uniform(1s, 2s)".into())
        );
        assert!(parse_override("novalue").is_err());
        assert!(parse_override("a..b=1").is_err());
    }

    #[test]
    fn set_path_creates_tables_and_refuses_to_descend_into_values() {
        let mut t = table("seed = 1");
        set_path(&mut t, "inner.servers", Value::Integer(3)).unwrap();
        assert_eq!(t["inner"]["servers"], Value::Integer(3));
        let error = set_path(&mut t, "seed.x", Value::Integer(1)).unwrap_err();
        assert!(error.contains("`seed` is a integer"), "{error}");
    }

    #[test]
    fn merge_is_deep() {
        let mut base = table("seed = 1\n[inner]\nservers = 2\nrate = 1.0");
        merge_tables(&mut base, table("[inner]\nservers = 4"));
        assert_eq!(base["inner"]["servers"], Value::Integer(4));
        assert_eq!(base["inner"]["rate"], Value::Float(1.0));
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let t = table("seed = 1\n[inner]\nservers = 2\nservrs = 3");
        let error = deserialize::<Outer>(&t).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("inner.servrs"), "{error:?}");
        assert!(error.message.contains("unknown field"), "{error:?}");
        let t = table("seed = 1\n[inner]\nservers = \"two\"");
        let error = deserialize::<Outer>(&t).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("inner.servers"), "{error:?}");
        let t = table("seed = 1\nbogus = 2\n[inner]\nservers = 2");
        let error = deserialize::<Outer>(&t).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("bogus"), "{error:?}");
    }

    #[test]
    fn model_and_extends_are_not_fields_of_the_config() {
        let t = table("model = \"mmc\"\nextends = \"base.toml\"\nseed = 1\n[inner]\nservers = 2");
        assert_eq!(model_of(&t).unwrap(), "mmc");
        assert!(deserialize::<Outer>(&t).is_ok());
        assert!(model_of(&table("model = \"queue\"")).is_err());
    }
}
