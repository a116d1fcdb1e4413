//! What a video file is, and whether we accept it, decided before any decoding starts.
//!
//! `ffprobe` reads the file with the `file` protocol only (no network, no nested references)
//! and only through allowlisted demuxers, so playlists (HLS), concat lists and other formats
//! that point elsewhere are refused instead of followed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::code::Code;
use crate::subprocess::{self, SubprocessError};

/// Demuxers we let FFmpeg use on untrusted input.
pub const ALLOWED_CONTAINERS: &str =
    "mov,mp4,matroska,webm,avi,mpegts,flv,ogg,mpeg,m4v,h264,hevc,ivf,asf,mxf";

/// Video codecs we accept.
pub const ALLOWED_CODECS: &[&str] = &[
    "h264",
    "hevc",
    "av1",
    "vp8",
    "vp9",
    "mpeg4",
    "mpeg2video",
    "mpeg1video",
    "prores",
    "mjpeg",
    "theora",
    "vc1",
    "wmv3",
    "dnxhd",
    "ffv1",
    "h263",
    "msmpeg4v3",
    "png",
];

/// How long probing may take before the file counts as hostile.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits on what we accept (checked before decoding).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    pub max_duration_s: f64,
    pub max_frames: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 4 << 30,
            max_width: 7680,
            max_height: 4320,
            max_pixels: 7680 * 4320,
            max_duration_s: 4.0 * 3600.0,
            max_frames: 1_000_000,
        }
    }
}

/// Why a file is refused; `code()` is stable for APIs and scripts. `Display` names the file
/// and adds what FFmpeg said (for the command line and logs); `public_message()` is the same
/// in our own words alone, for API clients, who must see neither server paths nor FFmpeg's text.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    NotFound(PathBuf),
    NotARegularFile(PathBuf),
    Empty(PathBuf),
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    Playlist(PathBuf),
    /// Also what a container outside the allowlist gives: FFmpeg refuses to open it.
    /// `reason` is ours; `tool_output` is FFmpeg's last line, if it said anything.
    Unreadable {
        path: PathBuf,
        reason: String,
        tool_output: Option<String>,
    },
    NoVideoStream(PathBuf),
    UnsupportedCodec {
        path: PathBuf,
        codec: String,
    },
    OverLimit {
        path: PathBuf,
        what: &'static str,
        value: String,
        limit: String,
    },
    Tool(SubprocessError),
}

impl std::fmt::Display for VideoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(path) = self.path() {
            write!(f, "{}: ", path.display())?;
        }
        f.write_str(&self.public_message())?;
        match self {
            VideoError::Unreadable {
                tool_output: Some(t),
                ..
            } => write!(f, " ({t})"),
            VideoError::Tool(e) => write!(f, ": {e}"),
            _ => Ok(()),
        }
    }
}

impl VideoError {
    /// The file the error is about.
    pub fn path(&self) -> Option<&Path> {
        match self {
            VideoError::NotFound(p)
            | VideoError::NotARegularFile(p)
            | VideoError::Empty(p)
            | VideoError::Playlist(p)
            | VideoError::NoVideoStream(p)
            | VideoError::TooLarge { path: p, .. }
            | VideoError::Unreadable { path: p, .. }
            | VideoError::UnsupportedCodec { path: p, .. }
            | VideoError::OverLimit { path: p, .. } => Some(p),
            VideoError::Tool(_) => None,
        }
    }

    /// What is wrong, without the path or anything FFmpeg printed.
    pub fn public_message(&self) -> String {
        match self {
            VideoError::NotFound(_) => "no such file".into(),
            VideoError::NotARegularFile(_) => "not a regular file".into(),
            VideoError::Empty(_) => "the file is empty".into(),
            VideoError::TooLarge { size, limit, .. } => {
                format!("{size} bytes is over the {limit}-byte limit")
            }
            VideoError::Playlist(_) => {
                "playlists and concat lists are not accepted (they reference other files)".into()
            }
            VideoError::Unreadable { reason, .. } => {
                format!("not a video in an accepted container: {reason}")
            }
            VideoError::NoVideoStream(_) => "the file has no video stream".into(),
            VideoError::UnsupportedCodec { codec, .. } => {
                format!("video codec {codec} is not accepted")
            }
            VideoError::OverLimit {
                what, value, limit, ..
            } => format!("{what} {value} is over the limit of {limit}"),
            VideoError::Tool(_) => "running ffprobe failed".into(),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            VideoError::NotFound(_) => Code::NotFound,
            VideoError::NotARegularFile(_) => Code::NotAFile,
            VideoError::Empty(_) => Code::EmptyFile,
            VideoError::TooLarge { .. } => Code::FileTooLarge,
            VideoError::Playlist(_) => Code::PlaylistNotAllowed,
            VideoError::Unreadable { .. } => Code::UnreadableMedia,
            VideoError::NoVideoStream(_) => Code::NoVideoStream,
            VideoError::UnsupportedCodec { .. } => Code::UnsupportedCodec,
            VideoError::OverLimit { .. } => Code::OverLimit,
            VideoError::Tool(_) => Code::ToolFailed,
        }
    }
}

/// The facts about a video that the pipeline needs.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MediaInfo {
    pub container: String,
    pub size_bytes: u64,
    pub duration_s: f64,
    pub video: VideoStream,
    pub audio_streams: usize,
    /// Each subtitle stream's codec, in the source's order: text ones are converted where the
    /// output's container needs another text format.
    pub subtitle_codecs: Vec<String>,
    /// Still pictures stored with the video (cover art), which are not its frames.
    pub cover_art: Vec<CoverArt>,
    /// Attached files (Matroska's fonts for styled subtitles, say).
    pub attachments: usize,
}

/// A still picture stored with the video as a stream of one frame: MP4's cover (`covr`) or an
/// image attached to a Matroska file.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CoverArt {
    /// The stream's index in the source.
    pub index: usize,
    pub codec: String,
    /// The name it was attached under, and its media type, where the container keeps them
    /// (Matroska does).
    pub file_name: Option<String>,
    pub mime: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VideoStream {
    pub index: usize,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: String,
    pub bit_depth: u32,
    /// The stream's time base (numerator, denominator): every timestamp is a multiple of it.
    pub time_base: (i64, i64),
    /// Average frame rate (frames over duration); variable-rate files have no single rate.
    pub fps: f64,
    /// Frames in the stream: from the container when it says, else duration x rate.
    pub frames: u64,
    pub frames_exact: bool,
    /// Display rotation in degrees (0, 90, 180 or 270) as FFmpeg's display matrix reports it:
    /// phones record upright video this way.
    pub rotation: i32,
    pub color_range: Option<String>,
    pub color_space: Option<String>,
    pub color_transfer: Option<String>,
    pub color_primaries: Option<String>,
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Deserialize)]
struct FormatJson {
    format_name: String,
    duration: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StreamJson {
    index: usize,
    codec_type: String,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    pix_fmt: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    time_base: Option<String>,
    duration: Option<String>,
    nb_frames: Option<String>,
    color_range: Option<String>,
    color_space: Option<String>,
    color_transfer: Option<String>,
    color_primaries: Option<String>,
    disposition: std::collections::HashMap<String, i64>,
    tags: std::collections::HashMap<String, String>,
    side_data_list: Vec<serde_json::Value>,
}

/// Probes `path` and checks it against `limits`.
pub fn probe(path: &Path, limits: &Limits) -> Result<MediaInfo, VideoError> {
    let meta = std::fs::metadata(path).map_err(|_| VideoError::NotFound(path.to_path_buf()))?;
    if !meta.is_file() {
        return Err(VideoError::NotARegularFile(path.to_path_buf()));
    }
    let size = meta.len();
    if size == 0 {
        return Err(VideoError::Empty(path.to_path_buf()));
    }
    if size > limits.max_file_bytes {
        return Err(VideoError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: limits.max_file_bytes,
        });
    }
    if looks_like_playlist(path) {
        return Err(VideoError::Playlist(path.to_path_buf()));
    }
    let json = run_ffprobe(path)?;
    let info = parse(path, size, &json)?;
    check_limits(path, &info, limits)?;
    Ok(info)
}

/// HLS playlists and concat lists are text that names other files; refuse them by content,
/// whatever their extension.
fn looks_like_playlist(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    text.starts_with("#EXTM3U")
        || text.starts_with("ffconcat")
        || text
            .lines()
            .any(|l| l.trim_start().starts_with("file ") || l.trim_start().starts_with("file\t"))
}

fn run_ffprobe(path: &Path) -> Result<ProbeJson, VideoError> {
    let abs = std::path::absolute(path).map_err(|_| VideoError::NotFound(path.to_path_buf()))?;
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-hide_banner",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        ALLOWED_CONTAINERS,
    ])
    .args([
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "-i",
    ])
    // The `file:` prefix keeps names like `concat:a|b` or `http:x` from being read as URLs.
    .arg(format!("file:{}", abs.display()));
    let out = subprocess::run_with_timeout(&mut cmd, PROBE_TIMEOUT).map_err(|e| match e {
        SubprocessError::Failed { stderr, .. } => VideoError::Unreadable {
            path: path.to_path_buf(),
            reason: "FFmpeg cannot open it".into(),
            tool_output: stderr.lines().last().map(str::to_string),
        },
        other => VideoError::Tool(other),
    })?;
    serde_json::from_slice(&out.stdout).map_err(|e| VideoError::Unreadable {
        path: path.to_path_buf(),
        reason: "ffprobe's report cannot be read".into(),
        tool_output: Some(e.to_string()),
    })
}

fn parse(path: &Path, size: u64, json: &ProbeJson) -> Result<MediaInfo, VideoError> {
    let format = json.format.as_ref().ok_or_else(|| VideoError::Unreadable {
        path: path.to_path_buf(),
        reason: "no container information".into(),
        tool_output: None,
    })?;
    let count = |kind: &str| json.streams.iter().filter(|s| s.codec_type == kind).count();
    let v = json
        .streams
        .iter()
        .find(|s| s.codec_type == "video" && !is_attached_picture(s))
        .ok_or_else(|| VideoError::NoVideoStream(path.to_path_buf()))?;
    let codec = v.codec_name.clone().unwrap_or_else(|| "unknown".into());
    if !ALLOWED_CODECS.contains(&codec.as_str()) {
        return Err(VideoError::UnsupportedCodec {
            path: path.to_path_buf(),
            codec,
        });
    }
    let (width, height) = match (v.width, v.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(VideoError::Unreadable {
                path: path.to_path_buf(),
                reason: "the video stream has no size".into(),
                tool_output: None,
            })
        }
    };
    let number = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d >= 0.0)
    };
    let duration = number(&v.duration)
        .or_else(|| number(&format.duration))
        .unwrap_or(0.0);
    let fps = rate(v.avg_frame_rate.as_deref())
        .or_else(|| rate(v.r_frame_rate.as_deref()))
        .unwrap_or(0.0);
    let (frames, frames_exact) = match v.nb_frames.as_deref().and_then(|n| n.parse::<u64>().ok()) {
        Some(n) if n > 0 => (n, true),
        _ => ((duration * fps).round().max(1.0) as u64, false),
    };
    let pix_fmt = v.pix_fmt.clone().unwrap_or_default();
    Ok(MediaInfo {
        container: format.format_name.clone(),
        size_bytes: size,
        duration_s: duration,
        video: VideoStream {
            index: v.index,
            codec,
            width,
            height,
            bit_depth: bit_depth(&pix_fmt),
            time_base: time_base(v.time_base.as_deref()).unwrap_or((1, 90_000)),
            pix_fmt,
            fps,
            frames,
            frames_exact,
            rotation: rotation(v),
            color_range: v.color_range.clone(),
            color_space: v.color_space.clone(),
            color_transfer: v.color_transfer.clone(),
            color_primaries: v.color_primaries.clone(),
        },
        audio_streams: count("audio"),
        subtitle_codecs: json
            .streams
            .iter()
            .filter(|s| s.codec_type == "subtitle")
            .map(|s| s.codec_name.clone().unwrap_or_default())
            .collect(),
        cover_art: json
            .streams
            .iter()
            .filter(|s| s.codec_type == "video" && is_attached_picture(s))
            .map(|s| CoverArt {
                index: s.index,
                codec: s.codec_name.clone().unwrap_or_default(),
                file_name: s.tags.get("filename").cloned(),
                mime: s.tags.get("mimetype").cloned(),
            })
            .collect(),
        attachments: count("attachment"),
    })
}

fn check_limits(path: &Path, info: &MediaInfo, limits: &Limits) -> Result<(), VideoError> {
    let v = &info.video;
    let over = |what: &'static str, value: String, limit: String| {
        Err(VideoError::OverLimit {
            path: path.to_path_buf(),
            what,
            value,
            limit,
        })
    };
    if v.width > limits.max_width {
        return over("width", v.width.to_string(), limits.max_width.to_string());
    }
    if v.height > limits.max_height {
        return over(
            "height",
            v.height.to_string(),
            limits.max_height.to_string(),
        );
    }
    if v.width as u64 * v.height as u64 > limits.max_pixels {
        return over(
            "pixel count",
            (v.width as u64 * v.height as u64).to_string(),
            limits.max_pixels.to_string(),
        );
    }
    if info.duration_s > limits.max_duration_s {
        return over(
            "duration (s)",
            format!("{:.1}", info.duration_s),
            format!("{:.1}", limits.max_duration_s),
        );
    }
    if v.frames > limits.max_frames {
        return over(
            "frame count",
            v.frames.to_string(),
            limits.max_frames.to_string(),
        );
    }
    Ok(())
}

/// `num/den` as a rate; `0/0` and garbage give `None`.
fn rate(s: Option<&str>) -> Option<f64> {
    let (n, d) = s?.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0.0 && d > 0.0).then(|| n / d)
}

/// `num/den` as a time base; anything but two positive integers gives `None`.
fn time_base(s: Option<&str>) -> Option<(i64, i64)> {
    let (n, d) = s?.split_once('/')?;
    let (n, d): (i64, i64) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0 && d > 0).then_some((n, d))
}

fn bit_depth(pix_fmt: &str) -> u32 {
    // Packed 16-bit RGB names its bits per pixel.
    if ["rgb48", "bgr48", "rgba64", "bgra64"]
        .iter()
        .any(|p| pix_fmt.starts_with(p))
    {
        return 16;
    }
    ["16", "14", "12", "10", "9"]
        .iter()
        .find(|d| pix_fmt.contains(*d))
        .map_or(8, |d| d.parse().unwrap_or(8))
}

/// Whether a video stream is a still picture stored with the video, not its frames.
fn is_attached_picture(s: &StreamJson) -> bool {
    s.disposition.get("attached_pic").copied().unwrap_or(0) != 0
}

/// Rotation from the display matrix (newer FFmpeg) or the `rotate` tag (older files).
fn rotation(v: &StreamJson) -> i32 {
    let from_matrix = v
        .side_data_list
        .iter()
        .find_map(|d| d.get("rotation").and_then(|r| r.as_f64()));
    let degrees = from_matrix.or_else(|| v.tags.get("rotate").and_then(|r| r.parse::<f64>().ok()));
    degrees.map_or(0, |d| (d.round() as i32).rem_euclid(360))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_depths_and_rotations() {
        assert_eq!(
            rate(Some("30000/1001")).map(|r| (r * 1000.0).round()),
            Some(29970.0)
        );
        assert_eq!(rate(Some("0/0")), None);
        assert_eq!(time_base(Some("1/12800")), Some((1, 12800)));
        assert_eq!(time_base(Some("0/1")), None);
        assert_eq!(bit_depth("yuv420p10le"), 10);
        assert_eq!(bit_depth("yuv420p"), 8);
        let v = StreamJson {
            tags: [("rotate".to_string(), "90".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(rotation(&v), 90);
    }
}
