//! What the live tests share: finding a server through its environment variable, and failing
//! rather than skipping under `RECEIPT_SIM_REQUIRE_LIVE=1`. `.ci/servers.sh start` writes the
//! variables to `.ci/servers.env`.
#![allow(dead_code)]

pub const REQUIRE_VARIABLE: &str = "RECEIPT_SIM_REQUIRE_LIVE";

pub fn required() -> bool {
    std::env::var(REQUIRE_VARIABLE).is_ok_and(|value| value == "1")
}

/// The variable's value; `None` (the test skips, saying why) when unset and not required.
pub fn server_variable(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            unavailable(&format!(
                "{name} is not set (run `.ci/servers.sh start` and source .ci/servers.env)"
            ));
            None
        }
    }
}

/// Skips with `reason`, or fails with it when live servers are required.
pub fn unavailable(reason: &str) {
    assert!(!required(), "{REQUIRE_VARIABLE}=1 but {reason}");
    eprintln!("skipped: {reason}");
}

/// A name no earlier run used, for collections and key prefixes on long-lived servers.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}
