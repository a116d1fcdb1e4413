//! Video in and out through FFmpeg. Untrusted files are only ever opened by FFmpeg restricted
//! to local files and an allowlist of demuxers and codecs, after checks on their size.

pub mod probe;

pub use probe::{probe, Limits};
