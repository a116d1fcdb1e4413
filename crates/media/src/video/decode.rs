//! Decoding: FFmpeg turns the (already probed) file into raw RGB frames on a pipe, and its
//! `showinfo` filter reports each frame's exact timestamp on stderr, in the same order.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

use super::mkv::RawFormat;
use super::probe::{MediaInfo, ALLOWED_CONTAINERS};
use super::PipelineError;
use crate::subprocess::StderrTail;

/// One decoded frame: its timestamp in the stream's time base and its pixels.
pub struct Frame {
    pub pts: i64,
    pub data: Vec<u8>,
}

enum Report {
    TimeBase(i64, i64),
    Pts(i64),
}

/// A running FFmpeg decoder.
pub struct Decoder {
    child: Child,
    stdout: ChildStdout,
    reports: Receiver<Report>,
    stderr_tail: StderrTail,
    /// Lines in which FFmpeg said the source is damaged ([`is_damage`]).
    damage: Arc<AtomicU64>,
    frame_bytes: usize,
    time_base: Option<(i64, i64)>,
}

/// Where decoding starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// At the first frame, with timestamps exactly as stored (no shift of the file to start
    /// at zero): the encoder and the assembly keep the other streams' timestamps unshifted
    /// too, so a video that starts after its audio keeps its place.
    Beginning,
    /// Near `seconds` into the file, timestamps shifted to start there (previews).
    Near(f64),
    /// At the frame shown at `pts` (stream time base), frames before it dropped, timestamps as
    /// stored. With `seek`, FFmpeg first jumps to that absolute time (seconds, at or before
    /// the frame: the keyframe a segment starts at); without it, it decodes from the start.
    Frame { pts: i64, seek: Option<f64> },
}

impl Decoder {
    /// Starts decoding the probed video stream of `path` to `format` frames, through `prefilter`
    /// (an FFmpeg filter) if any, at most `max_frames`, from `start`.
    pub fn spawn(
        path: &Path,
        info: &MediaInfo,
        format: RawFormat,
        prefilter: Option<&str>,
        max_frames: Option<u64>,
        start: Start,
    ) -> Result<Self, PipelineError> {
        let abs = std::path::absolute(path).map_err(PipelineError::Io)?;
        let mut cmd = crate::subprocess::pipeline_ffmpeg();
        cmd.args(["-hide_banner", "-nostdin", "-nostats", "-v", "info"])
            .args([
                "-protocol_whitelist",
                "file",
                "-format_whitelist",
                ALLOWED_CONTAINERS,
            ]);
        let mut first_filters = prefilter.map_or(String::new(), |f| format!("{f},"));
        match start {
            Start::Beginning => {
                cmd.arg("-copyts");
            }
            Start::Near(t) => {
                cmd.args(["-ss", &format!("{:.3}", t.max(0.0))]);
            }
            Start::Frame { pts, seek } => {
                // Our own exact cut, after the pre-filter (which sees the frames before it):
                // no `-ss` trimming, whose rounding to microseconds could take a frame or
                // leave one.
                if let Some(seconds) = seek {
                    cmd.args(["-seek_timestamp", "1", "-ss", &format!("{seconds:.6}")])
                        .arg("-noaccurate_seek");
                }
                cmd.arg("-copyts");
                first_filters.push_str(&format!("select='gte(pts,{pts})',"));
            }
        }
        // Frames stay as stored; the output keeps the rotation as metadata.
        cmd.args(["-noautorotate", "-i"])
            .arg(format!("file:{}", abs.display()))
            .args([
                "-map",
                &format!("0:{}", info.video.index),
                "-fps_mode",
                "passthrough",
                "-vf",
            ])
            // A denoise pre-filter works on the source's YUV; showinfo reports the timestamps
            // of the frames that go on; then YUV to RGB with the source's own matrix (the
            // encoder uses the same one back).
            .arg(format!(
                "{first_filters}showinfo,scale=in_color_matrix={}:in_range={},format={}",
                super::encode::color_matrix(info),
                super::encode::color_range(info),
                format.ffmpeg_name()
            ));
        if let Some(n) = max_frames {
            cmd.args(["-frames:v", &n.to_string()]);
        }
        cmd.args(["-f", "rawvideo", "-pix_fmt", format.ffmpeg_name(), "pipe:1"]);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PipelineError::Spawn("ffmpeg (decoder)", e))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, reports) = channel();
        // Timestamps go to the frame reader; everything else is kept for error messages,
        // and reports of a damaged source are counted.
        let damage = Arc::new(AtomicU64::new(0));
        let damaged = damage.clone();
        let stderr_tail = StderrTail::capture(stderr, move |line| match parse_showinfo(line) {
            Some(report) => {
                let _ = tx.send(report);
                true
            }
            None => {
                if is_damage(line) {
                    damaged.fetch_add(1, Ordering::Relaxed);
                }
                line.contains("Parsed_showinfo")
            }
        });
        let frame_bytes =
            info.video.width as usize * info.video.height as usize * format.bytes_per_pixel();
        Ok(Decoder {
            child,
            stdout,
            reports,
            stderr_tail,
            damage,
            frame_bytes,
            time_base: None,
        })
    }

    /// How many times FFmpeg has reported the source damaged: data missing from the file
    /// (truncated) or packets it could not decode. Their frames are missing from the output,
    /// which FFmpeg does not count as a failure. The count grows as FFmpeg's log is read, a
    /// little behind the frames; it is complete once [`Decoder::next_frame`] has returned
    /// the end of the stream.
    pub fn damage_reports(&self) -> u64 {
        self.damage.load(Ordering::Relaxed)
    }

    /// The stream's time base, known once the first frame has been read.
    pub fn time_base(&self) -> Option<(i64, i64)> {
        self.time_base
    }

    /// The next frame, `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, PipelineError> {
        let mut data = vec![0u8; self.frame_bytes];
        let mut filled = 0;
        while filled < data.len() {
            match self.stdout.read(&mut data[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PipelineError::Io(e)),
            }
        }
        if filled == 0 {
            return self.finish().map(|_| None);
        }
        if filled < data.len() {
            return Err(self.failure("the decoder stopped in the middle of a frame"));
        }
        loop {
            match self.reports.recv() {
                Ok(Report::TimeBase(n, d)) => self.time_base = Some((n, d)),
                Ok(Report::Pts(pts)) => return Ok(Some(Frame { pts, data })),
                Err(_) => return Err(self.failure("the decoder reported no timestamp for a frame")),
            }
        }
    }

    fn finish(&mut self) -> Result<(), PipelineError> {
        let status = self.child.wait().map_err(PipelineError::Io)?;
        if !status.success() {
            return Err(self.failure(&format!("the decoder exited with {status}")));
        }
        // Every line FFmpeg wrote is counted before the end is reported.
        self.stderr_tail.wait_closed();
        Ok(())
    }

    fn failure(&mut self, what: &str) -> PipelineError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        PipelineError::Decode {
            what: what.to_string(),
            ffmpeg: self.stderr_tail.last(3),
        }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an FFmpeg log line says the source is damaged: the demuxer found the file cut
/// short ("partial file"), or a packet could not be decoded (FFmpeg's own summary of it,
/// whatever the decoder said before).
fn is_damage(line: &str) -> bool {
    const MARKS: [&str; 4] = [
        "partial file",
        "Error while decoding stream",
        "Error submitting packet to decoder",
        "Decoding error",
    ];
    MARKS.iter().any(|mark| line.contains(mark))
}

/// `config in time_base: 1/12800, ...` and `n:   3 pts:   1536 pts_time:...` lines.
fn parse_showinfo(line: &str) -> Option<Report> {
    if !line.contains("Parsed_showinfo") {
        return None;
    }
    if let Some(rest) = line.split("config in time_base:").nth(1) {
        let tb = rest.split(',').next()?.trim();
        let (n, d) = tb.split_once('/')?;
        let (n, d) = (n.parse().ok()?, d.parse().ok()?);
        return (n > 0 && d > 0).then_some(Report::TimeBase(n, d));
    }
    if line.contains("time_base:") {
        return None; // the output side's, which showinfo leaves unset
    }
    let rest = line.split(" pts:").nth(1)?;
    let pts = rest.split_whitespace().next()?;
    Some(Report::Pts(pts.parse().ok()?))
}

/// Up to `count` consecutive frames from the one shown near `seconds` (at least one: past
/// the last frame, the first instead of failing), as 8-bit RGB, each with its time in seconds.
pub fn frames_at(
    path: &Path,
    info: &MediaInfo,
    seconds: f64,
    count: usize,
) -> Result<Vec<(f64, crate::image::Rgb8)>, PipelineError> {
    let count = count.max(1);
    let read = |start: Start, from: f64| -> Result<Vec<(f64, crate::image::Rgb8)>, PipelineError> {
        let mut dec = Decoder::spawn(
            path,
            info,
            RawFormat::Rgb24,
            None,
            Some(count as u64),
            start,
        )?;
        let mut frames = Vec::with_capacity(count);
        let mut first_pts = None;
        while let Some(frame) = dec.next_frame()? {
            let pts0 = *first_pts.get_or_insert(frame.pts);
            let time = match dec.time_base() {
                Some((num, den)) if den != 0 => {
                    from + (frame.pts - pts0) as f64 * num as f64 / den as f64
                }
                _ => from,
            };
            let image = crate::image::Rgb8 {
                width: info.video.width as usize,
                height: info.video.height as usize,
                pixels: frame.data,
            };
            frames.push((time, image));
        }
        Ok(frames)
    };
    let frames = read(Start::Near(seconds), seconds)?;
    if !frames.is_empty() {
        return Ok(frames);
    }
    let frames = read(Start::Beginning, 0.0)?;
    if frames.is_empty() {
        return Err(PipelineError::decode("the video has no decodable frames"));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_showinfo_lines() {
        let tb = "[Parsed_showinfo_0 @ 0x5] config in time_base: 1/12800, frame_rate: 25/1";
        assert!(matches!(
            parse_showinfo(tb),
            Some(Report::TimeBase(1, 12800))
        ));
        let f =
            "[Parsed_showinfo_0 @ 0x5] n:   3 pts:   1536 pts_time:0.12    pos: 1768 fmt:yuv420p";
        assert!(matches!(parse_showinfo(f), Some(Report::Pts(1536))));
        assert!(parse_showinfo("frame=    1 fps=0.0").is_none());
        assert!(parse_showinfo(
            "[Parsed_showinfo_0 @ 0x5] config out time_base: 0/0, frame_rate: 0/0"
        )
        .is_none());
    }
}
