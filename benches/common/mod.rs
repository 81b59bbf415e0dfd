//! What the benchmarks share: scenario files merged along their `extends` chain as `receipt-sim`
//! merges them, and the pipeline configuration they give. Each benchmark uses some of it.
//!
//! Depends on `sim` and `toml` only.
#![allow(dead_code)]

use sim::pipeline::PipelineConfig;

/// A scenario file with its `extends` chain, merged as `receipt-sim` merges it.
pub fn scenario(name: &str) -> toml::Table {
    let read = |name: &str| -> toml::Table {
        let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
        toml::from_str(&std::fs::read_to_string(&path).expect("scenario file")).expect("valid TOML")
    };
    let mut chain = vec![read(name)];
    while let Some(toml::Value::String(base)) = chain.last().expect("not empty").get("extends") {
        let base = base.trim_start_matches("../").to_string();
        chain.push(read(&base));
        assert!(chain.len() < 8, "extends chain too long");
    }
    let mut merged = toml::Table::new();
    for table in chain.into_iter().rev() {
        sim::scenario::merge_tables(&mut merged, table);
    }
    merged
}

/// The validated pipeline configuration of a scenario file.
pub fn pipeline(name: &str) -> PipelineConfig {
    let config: PipelineConfig =
        sim::scenario::deserialize(&scenario(name)).expect("a valid scenario");
    config.validate().expect("a valid configuration");
    config
}
