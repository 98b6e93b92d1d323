//! The one error type of scenario parsing.

use std::path::PathBuf;

/// Why a scenario file could not be read or parsed.
///
/// Displays as `FILE:LINE: REASON`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {}", .file.display(), .line, .reason)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// 1-based line of the problem; 0 when no line applies (an I/O error).
    pub line: usize,
    /// What is wrong, naming the key, step or value.
    pub reason: String,
}
