//! Assembly: the finished segments joined and muxed with every other stream of the source
//! (audio, subtitles, chapters, metadata), the rotation set, all by stream copy. The segments
//! are joined by FFmpeg's concat demuxer from a list we write naming only the work
//! directory's own files (its safe mode refuses any other name), each read from its own
//! start with no shift, so every frame keeps the timestamp the segment gave it: the source's.

use std::path::Path;

use super::encode::mp4_timescale;
use super::probe::{MediaInfo, ALLOWED_CONTAINERS};
use super::segment::WorkDir;
use super::PipelineError;

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
    let ext = target
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mp4_like = matches!(ext.as_str(), "mp4" | "m4v" | "mov");
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
        .args([
            "-protocol_whitelist",
            "file",
            "-format_whitelist",
            ALLOWED_CONTAINERS,
            "-i",
        ])
        .arg(format!("file:{}", source.display()))
        .args(["-map", "0:v:0", "-map", "1:a?", "-map", "1:s?"])
        .args(["-map_metadata", "1", "-map_chapters", "1"])
        // Audio and video are copied; subtitles are copied, or turned into MP4's text format.
        .args(["-c:v", "copy", "-c:a", "copy", "-c:s"])
        .arg(if mp4_like { "mov_text" } else { "copy" })
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
