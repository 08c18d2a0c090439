//! Library error type (the tch-rs `src/error.rs` pattern): every variant names the file,
//! field or layer it concerns, so the CLI can print one clear line and exit non-zero.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GqcimError {
    #[error("{path}: {msg}")]
    Config { path: String, msg: String },

    #[error("config field `{field}`: {msg}")]
    Invalid { field: String, msg: String },

    #[error("data file {}: {msg}", path.display())]
    Data { path: PathBuf, msg: String },

    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },

    #[error("layer `{layer}`: {msg}")]
    Layer { layer: String, msg: String },

    /// A file-system operation failed: the path and what was being done.
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },

    #[error(transparent)]
    Torch(#[from] tch::TchError),

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, GqcimError>;

/// Shorthand for a validation failure on one config field.
pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> GqcimError {
    GqcimError::Invalid { field: field.into(), msg: msg.into() }
}

/// Shorthand for a failed file-system operation on `path` (`what`: "create", "write", ...).
pub fn file_err(path: impl Into<PathBuf>, what: &str, e: impl std::fmt::Display) -> GqcimError {
    GqcimError::File { path: path.into(), msg: format!("cannot {what}: {e}") }
}

/// Shorthand for a problem with one data file.
pub fn data_err(path: impl Into<PathBuf>, msg: impl Into<String>) -> GqcimError {
    GqcimError::Data { path: path.into(), msg: msg.into() }
}
