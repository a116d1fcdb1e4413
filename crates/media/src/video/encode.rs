//! Encoding: a segment's frames go to FFmpeg as a Matroska stream with exact timestamps;
//! FFmpeg encodes them into the segment's own video-only MP4 (in the source's time base, so
//! every timestamp survives unchanged), with the source's colour description. The other
//! streams join at assembly.

use std::io::BufWriter;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};

use super::mkv::{MkvWriter, RawFormat};
use super::probe::MediaInfo;
use super::PipelineError;
use crate::subprocess::StderrTail;

/// Video codecs for the output.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
    Av1,
}

impl Codec {
    /// A CRF that is visually lossless for each encoder.
    pub fn default_crf(self) -> u32 {
        match self {
            Codec::H264 => 17,
            Codec::H265 => 20,
            Codec::Av1 => 24,
        }
    }
}

/// The x264/x265 speed preset. On a CPU the encoder shares cores with the model, and every
/// core-second it takes is one inference loses: `veryfast` costs a third of `medium` (23 vs
/// 61 ms per 720p frame) for files of similar size at the same CRF (docs/benchmarks.md).
const X26X_PRESET: &str = "veryfast";

#[derive(Debug, Clone)]
pub struct EncodeSettings {
    pub codec: Codec,
    pub crf: u32,
    /// End the other streams with the video (when only some frames are upscaled).
    pub shortest: bool,
}

/// The MP4 timescale that holds every timestamp of time base `num/den` exactly.
pub fn mp4_timescale((_, den): (i64, i64)) -> String {
    den.to_string()
}

/// Whether the source stores RGB (lossless intermediates, screen recordings, PNG): the
/// encoders take YUV only, so it is encoded as BT.709 YUV at full colour resolution (4:4:4,
/// but for AV1, whose encoder has 4:2:0 alone), which keeps its colours within a level.
pub fn is_rgb(info: &MediaInfo) -> bool {
    let p = info.video.pix_fmt.as_str();
    info.video.color_space.as_deref() == Some("gbr")
        || ["gbr", "rgb", "bgr", "argb", "abgr", "0rgb", "0bgr", "pal8"]
            .iter()
            .any(|f| p.starts_with(f))
}

/// The colour matrix FFmpeg's scaler uses between RGB and the source's YUV (an RGB source is
/// encoded as BT.709 YUV).
pub fn color_matrix(info: &MediaInfo) -> &'static str {
    if is_rgb(info) {
        return "bt709";
    }
    match info.video.color_space.as_deref() {
        Some("bt709") | Some("gbr") => "bt709",
        Some("bt2020nc") | Some("bt2020c") => "bt2020",
        Some("smpte240m") => "smpte240m",
        Some("fcc") => "fcc",
        _ => "bt601",
    }
}

/// The `-colorspace` tag of the output: the source's, unless it is RGB (whose `gbr` tag the
/// encoders refuse), when it is the matrix the frames were converted with.
fn colorspace_tag(info: &MediaInfo) -> Option<&str> {
    if is_rgb(info) {
        return Some(color_matrix(info));
    }
    match info.video.color_space.as_deref() {
        None | Some("unknown") => None,
        Some(other) => Some(other),
    }
}

pub fn color_range(info: &MediaInfo) -> &'static str {
    if info.video.color_range.as_deref() == Some("pc") {
        "pc"
    } else {
        "tv"
    }
}

/// FFmpeg's filters (each followed by a comma) that turn a frame by `rotation` degrees
/// counterclockwise, as FFmpeg itself turns a video with that display rotation upright.
fn turn_filter(rotation: i32) -> &'static str {
    match rotation {
        90 => "transpose=cclock,",
        180 => "hflip,vflip,",
        270 => "transpose=clock,",
        _ => "",
    }
}

/// A running FFmpeg encoder.
pub struct Encoder {
    child: Child,
    writer: Option<MkvWriter<BufWriter<ChildStdin>>>,
    stderr_tail: StderrTail,
    time_base: (i64, i64),
}

impl Encoder {
    /// Starts writing the segment file `output` from `width x height` frames whose
    /// timestamps are in `time_base`, turned by `rotation` degrees counterclockwise (0, 90,
    /// 180 or 270; [`super::assemble::rotation_in_pixels`]).
    pub fn spawn(
        info: &MediaInfo,
        output: &Path,
        (width, height): (u32, u32),
        format: RawFormat,
        time_base: (i64, i64),
        settings: &EncodeSettings,
        rotation: i32,
    ) -> Result<Self, PipelineError> {
        let high_depth = format == RawFormat::Rgb48;
        // 4:2:0 needs even sizes; odd ones (a 3x upscale of an odd source) keep every pixel in
        // 4:4:4, and so do RGB sources, whose colours matter to the pixel.
        let even = width % 2 == 0 && height % 2 == 0;
        let full_colour = is_rgb(info) && settings.codec != Codec::Av1;
        let chroma = if even && !full_colour {
            "yuv420p"
        } else {
            "yuv444p"
        };
        let pix_fmt = if high_depth {
            format!("{chroma}10le")
        } else {
            chroma.to_string()
        };
        let mut cmd = crate::subprocess::pipeline_ffmpeg();
        cmd.args(["-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y"])
            .args(["-f", "matroska", "-i", "pipe:0", "-map", "0:v:0"])
            .args([
                "-vf",
                &format!(
                    "{}scale=out_color_matrix={}:out_range={}",
                    turn_filter(rotation),
                    color_matrix(info),
                    color_range(info)
                ),
            ])
            .args(["-pix_fmt", &pix_fmt]);
        match settings.codec {
            Codec::H264 => cmd.args(["-c:v", "libx264", "-preset", X26X_PRESET]),
            Codec::H265 => cmd.args([
                "-c:v",
                "libx265",
                "-preset",
                X26X_PRESET,
                "-x265-params",
                "log-level=error",
            ]),
            Codec::Av1 => cmd.args(["-c:v", "libsvtav1", "-preset", "8"]),
        };
        cmd.args(["-crf", &settings.crf.to_string()]);
        let v = &info.video;
        if is_rgb(info) {
            tracing::info!(
                chroma,
                "RGB source: encoded as BT.709 YUV, the encoders taking no RGB"
            );
        }
        for (flag, value) in [
            ("-color_primaries", v.color_primaries.as_deref()),
            ("-color_trc", v.color_transfer.as_deref()),
            ("-colorspace", colorspace_tag(info)),
            ("-color_range", v.color_range.as_deref()),
        ] {
            if let Some(value) = value.filter(|s| *s != "unknown") {
                cmd.args([flag, value]);
            }
        }
        // Every frame once, at its own timestamp (no frame-rate conversion, no shift to start
        // at zero), in the source's time base so every timestamp survives unchanged.
        cmd.args([
            "-copyts",
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            &format!("{}/{}", time_base.0, time_base.1),
            "-video_track_timescale",
            &mp4_timescale(time_base),
            "-f",
            "mp4",
        ]);
        // `file:`, as every path we give FFmpeg: a name with a colon is not a protocol.
        let output = std::path::absolute(output).map_err(PipelineError::Io)?;
        cmd.arg(format!("file:{}", output.display()));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PipelineError::Spawn("ffmpeg (encoder)", e))?;
        let stdin = BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped"));
        let stderr = child.stderr.take().expect("piped");
        let stderr_tail = StderrTail::capture(stderr, |_| false);
        // The source's average frame duration (25 fps when it has no rate).
        let fps = if info.video.fps > 0.0 {
            info.video.fps
        } else {
            25.0
        };
        let frame_ns = (1e9 / fps).round() as u64;
        let writer =
            MkvWriter::start(stdin, width, height, format, frame_ns).map_err(PipelineError::Io)?;
        Ok(Encoder {
            child,
            writer: Some(writer),
            stderr_tail,
            time_base,
        })
    }

    /// Writes one frame shown at `pts` (in the source's time base).
    pub fn write(&mut self, pts: i64, data: &[u8]) -> Result<(), PipelineError> {
        if pts < 0 {
            return Err(PipelineError::encode(
                "frames with negative timestamps are not supported",
            ));
        }
        let ns = (pts as i128 * 1_000_000_000 * self.time_base.0 as i128 / self.time_base.1 as i128)
            as u64;
        let writer = self.writer.as_mut().expect("not finished");
        if let Err(e) = writer.frame(ns, data) {
            return Err(self.failure(&format!("writing to the encoder: {e}")));
        }
        Ok(())
    }

    /// Closes the stream and waits for the file to be complete.
    pub fn finish(mut self) -> Result<(), PipelineError> {
        if let Some(w) = self.writer.take() {
            // An encoder that refused its options has exited: say what it said, not EPIPE.
            match w.finish() {
                Ok(stdin) => drop(stdin),
                Err(e) => return Err(self.failure(&format!("writing to the encoder: {e}"))),
            }
        }
        let status = self.child.wait().map_err(PipelineError::Io)?;
        if !status.success() {
            return Err(self.failure(&format!("the encoder exited with {status}")));
        }
        Ok(())
    }

    fn failure(&mut self, what: &str) -> PipelineError {
        self.writer = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let ffmpeg = self.stderr_tail.last(3);
        if ffmpeg.contains("No space left on device") {
            return PipelineError::StorageFull;
        }
        PipelineError::Encode {
            what: what.to_string(),
            ffmpeg,
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.writer = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
