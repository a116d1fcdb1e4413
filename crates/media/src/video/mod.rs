//! Video in and out through FFmpeg: probe and validate (`probe`), cut into segments at
//! keyframes (`segment`), decode to raw frames with exact timestamps (`decode`), upscale
//! (`pipeline`), encode each segment (`encode`, through the `mkv` transport), and join the
//! segments with every other stream of the source (`assemble`). Untrusted files are only ever opened by FFmpeg
//! restricted to local files and an allowlist of demuxers and codecs.

pub mod assemble;
pub mod decode;
pub mod encode;
pub mod mkv;
pub mod pipeline;
pub mod probe;
pub mod segment;

pub use probe::{probe, Limits};

use crate::code::Code;

/// Why a video job failed; `code()` is stable for APIs and scripts. `Display` adds what
/// FFmpeg printed (for the command line and logs); `public_message()` is ours alone, for API
/// clients.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Input(#[from] probe::VideoError),
    #[error("output {width}x{height} is larger than the {max_width}x{max_height} allowed")]
    OutputTooLarge {
        width: u64,
        height: u64,
        max_width: u64,
        max_height: u64,
    },
    /// The output's name asks for a container we do not write, or one that cannot hold the
    /// codec asked for or the source's other streams: told before any frame is upscaled.
    /// `reason` is ours (no path: API clients see it).
    #[error("{path}: {reason}")]
    UnsupportedOutput { path: String, reason: String },
    #[error("cannot start {0}: {1}")]
    Spawn(&'static str, std::io::Error),
    /// `what` is ours; `ffmpeg` the decoder's last lines (may be empty).
    #[error("decoding failed: {what}{}", tool_suffix(ffmpeg))]
    Decode { what: String, ffmpeg: String },
    #[error("upscaling failed: {0}")]
    Model(#[from] vsr_runtime::RunError),
    /// `what` is ours; `ffmpeg` the encoder's last lines (may be empty).
    #[error("encoding failed: {what}{}", tool_suffix(ffmpeg))]
    Encode { what: String, ffmpeg: String },
    #[error("cancelled")]
    Cancelled,
    /// The disk filled up; finished segments are kept for a retry.
    #[error("the disk is full")]
    StorageFull,
    #[error(transparent)]
    Io(std::io::Error),
}

fn tool_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(": {output}")
    }
}

impl PipelineError {
    /// A decoding failure in our own words, with nothing from FFmpeg.
    pub fn decode(what: impl Into<String>) -> PipelineError {
        PipelineError::Decode {
            what: what.into(),
            ffmpeg: String::new(),
        }
    }

    /// An encoding failure in our own words, with nothing from FFmpeg.
    pub fn encode(what: impl Into<String>) -> PipelineError {
        PipelineError::Encode {
            what: what.into(),
            ffmpeg: String::new(),
        }
    }

    /// What went wrong without server paths or FFmpeg's text: what an API client is told.
    pub fn public_message(&self) -> String {
        match self {
            PipelineError::Input(e) => e.public_message(),
            PipelineError::Spawn(program, _) => format!("cannot start {program}"),
            PipelineError::Decode { what, .. } => format!("decoding failed: {what}"),
            PipelineError::Encode { what, .. } => format!("encoding failed: {what}"),
            PipelineError::Io(e) => format!("file error: {}", e.kind()),
            PipelineError::UnsupportedOutput { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            PipelineError::Input(e) => e.code(),
            PipelineError::OutputTooLarge { .. } => Code::OutputTooLarge,
            PipelineError::UnsupportedOutput { .. } => Code::InvalidSettings,
            PipelineError::Spawn(..) => Code::ToolFailed,
            PipelineError::Decode { .. } => Code::DecodeFailed,
            PipelineError::Model(_) => Code::ModelFailed,
            PipelineError::Encode { .. } => Code::EncodeFailed,
            PipelineError::Cancelled => Code::Cancelled,
            PipelineError::StorageFull => Code::InsufficientStorage,
            PipelineError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                Code::InsufficientStorage
            }
            PipelineError::Io(_) => Code::IoError,
        }
    }
}
