//! How a command fails: one line of text and an exit code by class.
//!
//! 0 ok, 1 a race found by a command that checks for one, 2 bad input, 3 a backend failure.

use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// A command that checks for races found one.
    #[allow(dead_code)]
    RaceFound = 1,
    /// A malformed scenario, an unknown field, an impossible parameter, a bad path.
    BadInput = 2,
    /// A real backend was unreachable or misbehaved.
    Backend = 3,
}

#[derive(Debug)]
pub struct Failure {
    pub class: Class,
    pub message: String,
}

impl Failure {
    pub fn bad_input(message: impl Into<String>) -> Failure {
        Failure {
            class: Class::BadInput,
            message: one_line(message.into()),
        }
    }
    #[allow(dead_code)]
    pub fn race_found(message: impl Into<String>) -> Failure {
        Failure {
            class: Class::RaceFound,
            message: one_line(message.into()),
        }
    }
    #[allow(dead_code)]
    pub fn backend(message: impl Into<String>) -> Failure {
        Failure {
            class: Class::Backend,
            message: one_line(message.into()),
        }
    }
    pub fn exit_code(&self) -> u8 {
        self.class as u8
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The most characters of one error line; a longer one (a huge value echoed) is cut.
pub const MESSAGE_CHARS_MAX: usize = 600;

/// Folds a message onto one line: the user sees exactly one line per failure, at most
/// `MESSAGE_CHARS_MAX` characters long.
pub fn one_line(message: String) -> String {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = line.chars().count();
    if count <= MESSAGE_CHARS_MAX {
        return line;
    }
    let head: String = line.chars().take(MESSAGE_CHARS_MAX).collect();
    format!("{head}… ({count} characters in all)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_to_one_short_line() {
        let message = format!("--set seed={}\nnext", "x".repeat(3_000_000));
        let line = one_line(message);
        assert!(
            line.chars().count() < MESSAGE_CHARS_MAX + 40,
            "{}",
            line.len()
        );
        assert!(!line.contains('\n'));
        assert!(line.ends_with("characters in all)"), "{line}");
    }
}
