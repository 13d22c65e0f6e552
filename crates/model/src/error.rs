//! Errors of the model: a malformed identifier, or an estate file that does not hold together.

use std::fmt;

/// A value that is not a valid identifier of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}: expected {expected}")]
pub struct InvalidId {
    /// What the value should have been (`account id`, `IAM role ARN`, ...).
    pub kind: &'static str,
    /// The value as given.
    pub value: String,
    /// The expected form, with an example.
    pub expected: &'static str,
}

impl InvalidId {
    pub(crate) fn new(kind: &'static str, value: &str, expected: &'static str) -> Self {
        Self {
            kind,
            value: value.to_owned(),
            expected,
        }
    }
}

/// One thing wrong in an estate file, located by line and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the offending value, where known.
    pub line: Option<usize>,
    /// The field, as a path (`instance[0].volumes[1].key`).
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// An estate file that cannot be used, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EstateError {
    /// The file name, as the user gave it.
    pub file: String,
    /// What is wrong, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for EstateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}
