//! Video in and out through FFmpeg: probe and validate (`probe`), decode to raw frames with
//! exact timestamps (`decode`), upscale (`pipeline`), encode with every other stream kept
//! (`encode`, through the `mkv` transport). Untrusted files are only ever opened by FFmpeg
//! restricted to local files and an allowlist of demuxers and codecs.

pub mod decode;
pub mod encode;
pub mod mkv;
pub mod pipeline;
pub mod probe;

pub use probe::{probe, Limits};

/// Why a video job failed; `code()` is stable for APIs and scripts.
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
    #[error("cannot start {0}: {1}")]
    Spawn(&'static str, std::io::Error),
    #[error("decoding failed: {0}")]
    Decode(String),
    #[error("upscaling failed: {0}")]
    Model(#[from] vsr_runtime::RunError),
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Io(std::io::Error),
}

impl PipelineError {
    pub fn code(&self) -> &'static str {
        match self {
            PipelineError::Input(e) => e.code(),
            PipelineError::OutputTooLarge { .. } => "output_too_large",
            PipelineError::Spawn(..) => "tool_failed",
            PipelineError::Decode(_) => "decode_failed",
            PipelineError::Model(_) => "model_failed",
            PipelineError::Encode(_) => "encode_failed",
            PipelineError::Cancelled => "cancelled",
            PipelineError::Io(_) => "io_error",
        }
    }
}
