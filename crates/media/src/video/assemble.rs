//! Assembly: the finished segments joined and muxed with every other stream of the source
//! (audio, subtitles, chapters, metadata), the rotation set, all by stream copy. The segments
//! are joined by FFmpeg's concat demuxer from a list we write naming only the work
//! directory's own files (its safe mode refuses any other name), each read from its own
//! start with no shift, so every frame keeps the timestamp the segment gave it: the source's.

use std::path::Path;

use super::encode::{mp4_timescale, Codec};
use super::probe::{MediaInfo, ALLOWED_CONTAINERS};
use super::segment::WorkDir;
use super::PipelineError;
use crate::subprocess::SubprocessError;

/// Writes `target` from the work directory's segments and the source's other streams.
/// `shortest`: the other streams end with the video (a job limited to some frames).
pub fn assemble(
    source: &Path,
    info: &MediaInfo,
    work: &WorkDir,
    target: &Path,
    shortest: bool,
) -> Result<(), PipelineError> {
    let list = concat_list(work)?;
    let source = std::path::absolute(source).map_err(PipelineError::Io)?;
    let mp4_like = is_mp4_like(target);
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y"])
        // `inpoint 0` and `duration 0` for every file: each is read from its start and none
        // is shifted, so the segments' own (the source's) timestamps pass through.
        .args([
            "-protocol_whitelist",
            "file",
            "-format_whitelist",
            "concat,mov",
        ])
        .args(["-f", "concat", "-safe", "1", "-i"])
        .arg(format!("file:{}", list.display()))
        .args(source_input(&source))
        .args(["-map", "0:v:0", "-map", "1:a?", "-map", "1:s?"])
        .args(["-map_metadata", "1", "-map_chapters", "1"])
        .args(["-c:v", "copy"])
        .args(other_streams_codecs(target))
        // No input is shifted to start at zero, so a video that starts after its audio keeps
        // its offset.
        .arg("-copyts");
    if mp4_like {
        cmd.args([
            "-video_track_timescale",
            &mp4_timescale(work.plan.time_base),
        ]);
    }
    if info.video.rotation != 0 {
        cmd.args([
            "-metadata:s:v:0",
            &format!("rotate={}", info.video.rotation),
        ]);
    }
    if shortest {
        cmd.arg("-shortest");
    }
    // `file:`, as every path we give FFmpeg: a name with a colon is not a protocol.
    let target = std::path::absolute(target).map_err(PipelineError::Io)?;
    cmd.arg(format!("file:{}", target.display()));
    let result = crate::subprocess::run(&mut cmd);
    let _ = std::fs::remove_file(&list);
    result.map_err(|e| {
        if e.to_string().contains("No space left on device") {
            PipelineError::StorageFull
        } else {
            PipelineError::Encode {
                what: "joining the segments".into(),
                ffmpeg: e.to_string(),
            }
        }
    })?;
    Ok(())
}

/// The source as an FFmpeg input: a local file in one of the accepted containers.
fn source_input(source: &Path) -> [String; 6] {
    [
        "-protocol_whitelist".into(),
        "file".into(),
        "-format_whitelist".into(),
        ALLOWED_CONTAINERS.into(),
        "-i".into(),
        format!("file:{}", source.display()),
    ]
}

/// How the source's audio and subtitles are written into `target`'s container: audio
/// copied; subtitles copied, or turned into MP4's text format.
fn other_streams_codecs(target: &Path) -> [&'static str; 4] {
    let subtitles = if is_mp4_like(target) {
        "mov_text"
    } else {
        "copy"
    };
    ["-c:a", "copy", "-c:s", subtitles]
}

/// The containers written, by the output's extension: MP4 (and its `.m4v`, `.mov` kin) and
/// Matroska take every codec we encode; WebM only AV1 of them.
pub fn check_container(output: &Path, codec: Codec) -> Result<(), PipelineError> {
    let ext = output
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let refused = |reason: String| PipelineError::UnsupportedOutput {
        path: output.display().to_string(),
        reason,
    };
    if is_mp4_like(output) || ext.as_deref() == Some("mkv") {
        return Ok(());
    }
    match ext.as_deref() {
        Some("webm") if codec == Codec::Av1 => Ok(()),
        Some("webm") => Err(refused(format!(
            "WebM holds AV1 video, not {codec:?}: use --codec av1, or .mp4 or .mkv"
        ))),
        _ => Err(refused(
            "the output must end in .mp4, .mkv, .mov or .webm".into(),
        )),
    }
}

/// Whether `target`'s extension names an MP4-family container (MP4's timescale and text
/// subtitles apply).
fn is_mp4_like(target: &Path) -> bool {
    let ext = target.extension().and_then(|e| e.to_str()).unwrap_or("");
    ["mp4", "m4v", "mov"].contains(&ext.to_ascii_lowercase().as_str())
}

/// Whether the source's audio and subtitles can go into `output` (its container by
/// extension) as [`assemble`] writes them, found out before any frame is upscaled: FFmpeg
/// writes that container's header with those streams and no packet, to a file in the
/// system's temporary folder (removed after; the output's folder may not exist yet). PCM
/// audio in MP4, AAC in WebM, MP4 text subtitles in Matroska are refused this way. Only the
/// container's refusal fails the job; if the check cannot run at all, the assembly will tell
/// what is wrong.
pub fn check_other_streams(
    source: &Path,
    info: &MediaInfo,
    output: &Path,
) -> Result<(), PipelineError> {
    static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if info.audio_streams + info.subtitle_streams == 0 {
        return Ok(());
    }
    let ext = output.extension().unwrap_or_default().to_string_lossy();
    let source = std::path::absolute(source).map_err(PipelineError::Io)?;
    let check = CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("vsr-streams-{}-{check}.{ext}", std::process::id());
    let target = std::path::absolute(std::env::temp_dir().join(name)).map_err(PipelineError::Io)?;
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y"])
        .args(source_input(&source))
        .args(["-map", "0:a?", "-map", "0:s?"])
        .args(other_streams_codecs(output))
        .args(["-t", "0"])
        .arg(format!("file:{}", target.display()));
    let result = crate::subprocess::run_with_timeout(&mut cmd, CHECK_TIME);
    let _ = std::fs::remove_file(&target);
    match result {
        Ok(_) => Ok(()),
        Err(SubprocessError::Failed { stderr, .. })
            if stderr.contains("Could not write header") =>
        {
            // FFmpeg's first line names the codec and the container, after `[muxer @ 0x..] `.
            let said = stderr.lines().next().unwrap_or("");
            let said = said.rsplit_once("] ").map_or(said, |(_, rest)| rest).trim();
            let why = if said.is_empty() || said.contains('/') {
                String::new()
            } else {
                format!(" ({said})")
            };
            Err(PipelineError::UnsupportedOutput {
                path: output.display().to_string(),
                reason: format!(
                    "the source's audio or subtitles cannot be copied into .{ext}{why}; choose .mkv or .mp4"
                ),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "the output's streams could not be checked");
            Ok(())
        }
    }
}

/// Longest a stream check may take: a header written from a probed file's stream list.
const CHECK_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes the concat list of the finished, non-empty segments; its path.
fn concat_list(work: &WorkDir) -> Result<std::path::PathBuf, PipelineError> {
    let mut text = String::from("ffconcat version 1.0\n");
    let mut any = false;
    for s in &work.plan.segments {
        let done = work
            .done(s.index)
            .ok_or_else(|| PipelineError::encode(format!("segment {} is missing", s.index)))?;
        if done.frames == 0 {
            continue;
        }
        let file = work.segment_file(s.index);
        let name = file
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        text.push_str(&format!("file {name}\ninpoint 0\nduration 0\n"));
        any = true;
    }
    if !any {
        return Err(PipelineError::decode("the video has no decodable frames"));
    }
    let list = work.path().join("segments.ffconcat");
    std::fs::write(&list, text).map_err(PipelineError::Io)?;
    Ok(list)
}
