//! Typed errors of the runtime. Every load error names the file and where in it the problem is,
//! so a user with a broken model download can tell what is wrong without a debugger.

use std::path::PathBuf;

/// Where in a model file a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a `.param` file.
    Line(usize),
    /// Byte offset into a `.bin` file.
    Byte(u64),
    /// The file as a whole.
    File,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Byte(n) => write!(f, "byte offset {n}"),
            Location::File => write!(f, "whole file"),
        }
    }
}

/// A model file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {location}: {kind}")]
pub struct LoadError {
    pub path: PathBuf,
    pub location: Location,
    pub kind: LoadErrorKind,
}

/// What was wrong with a model file; stable enough to match on in tests and to map to error codes.
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad magic number (expected 7767517, found {0:?})")]
    BadMagic(String),
    #[error("malformed line: {0}")]
    Syntax(String),
    #[error("unknown layer type {0:?}")]
    UnknownLayer(String),
    #[error("layer {layer:?}: parameter {key}: {reason}")]
    BadParam {
        layer: String,
        key: i32,
        reason: String,
    },
    #[error("layer {layer:?} reads blob {blob:?}, which no earlier layer produces")]
    DanglingBlob { layer: String, blob: String },
    #[error("blob {0:?} is produced twice")]
    DuplicateBlob(String),
    #[error("declared {declared} {what} but found {found}")]
    CountMismatch {
        what: &'static str,
        declared: usize,
        found: usize,
    },
    #[error("layer {layer:?}: weight data ends early (needs {needed} bytes, {available} left)")]
    Truncated {
        layer: String,
        needed: u64,
        available: u64,
    },
    #[error("layer {layer:?}: unsupported weight encoding tag {tag:#010x}")]
    UnsupportedEncoding { layer: String, tag: u32 },
    #[error(
        "{0} bytes of weight data left over after the last layer (wrong .bin for this .param?)"
    )]
    TrailingBytes(u64),
    #[error("layer {layer:?}: {reason}")]
    Shape { layer: String, reason: String },
    #[error("the graph has no Input layer")]
    NoInput,
    #[error("the graph has no output blob (every blob is consumed)")]
    NoOutput,
}

/// Running a loaded model failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("layer {layer:?}: {reason}")]
    Shape { layer: String, reason: String },
    #[error("input must be {expected}, got {got}")]
    BadInput { expected: String, got: String },
    /// The model's conventions padded a frame to a size its network cannot take: the scale,
    /// prepadding or alignment are not this model's.
    #[error("the model's conventions ({conventions}) give its network a {width}x{height} input it cannot take ({detail})")]
    Misfit {
        conventions: String,
        width: usize,
        height: usize,
        detail: String,
    },
    #[error("frame of {width}x{height} needs {needed_mib} MiB, over the {budget_mib} MiB budget even at the smallest tile")]
    OverBudget {
        width: usize,
        height: usize,
        needed_mib: usize,
        budget_mib: usize,
    },
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    #[error("{device}: {reason}")]
    Device { device: String, reason: String },
    /// The accelerator could not allocate what this window needs; a smaller tile may fit.
    #[error("{device}: out of memory: {reason}")]
    DeviceOutOfMemory { device: String, reason: String },
}
