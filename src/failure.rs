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

/// Folds a message onto one line: the user sees exactly one line per failure.
pub fn one_line(message: String) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
