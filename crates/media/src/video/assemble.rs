//! Assembly: the finished segments joined and muxed with every other stream of the source
//! (audio, subtitles, cover art, attached files, chapters, metadata) by stream copy (text
//! subtitles converted where the container needs it), the rotation set as metadata (or the
//! frames turned upright before encoding, [`rotation_in_pixels`]). The segments are joined
//! by FFmpeg's concat demuxer from a list we write naming only the work directory's own files
//! (its safe mode refuses any other name), each read from its own start with no shift, so
//! every frame keeps the timestamp the segment gave it: the source's.

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
    let covers = match Container::of(target) {
        Some(Container::Matroska) if !shortest => extract_covers(&source, info, work.path())?,
        _ => Vec::new(),
    };
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
        .args(["-map", "0:v:0"])
        .args(other_streams(1, info, target, &covers, shortest))
        .args(["-map_metadata", "1", "-map_chapters", "1"])
        .args(["-c:v", "copy"])
        // No input is shifted to start at zero, so a video that starts after its audio keeps
        // its offset.
        .arg("-copyts");
    if mp4_like {
        cmd.args([
            "-video_track_timescale",
            &mp4_timescale(work.plan.time_base),
        ]);
    }
    // Where the container cannot carry it, the frames were turned upright instead.
    if info.video.rotation != 0 && rotation_in_pixels(target, info) == 0 {
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
    for cover in &covers {
        let _ = std::fs::remove_file(&cover.file);
    }
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

/// The containers an output can be, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    /// MP4 (and `.m4v`): MP4's timescale, text subtitles as `mov_text`, JPEG, PNG or BMP cover
    /// art as a picture stream, no attached files.
    Mp4,
    /// QuickTime: as MP4, but FFmpeg writes no cover art into it.
    Mov,
    /// Matroska: every codec, subtitles of any kind, attached files (cover art among them).
    Matroska,
    /// WebM: AV1 (of the codecs we encode), its audio codecs, WebVTT subtitles, nothing else.
    WebM,
}

impl Container {
    fn of(target: &Path) -> Option<Container> {
        let ext = target.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "mp4" | "m4v" => Some(Container::Mp4),
            "mov" => Some(Container::Mov),
            "mkv" => Some(Container::Matroska),
            "webm" => Some(Container::WebM),
            _ => None,
        }
    }

    /// Whether the container is MP4's kind (its timescale, its text subtitles).
    fn is_mp4_like(self) -> bool {
        matches!(self, Container::Mp4 | Container::Mov)
    }

    /// The subtitle format a source stream of `codec` is written in: text formats turn into
    /// the one the container takes where it does not take theirs; anything else is copied
    /// (and a container that cannot hold it refuses the job before it starts).
    fn subtitle_codec(self, codec: &str) -> &'static str {
        let text = TEXT_SUBTITLES.contains(&codec);
        match self {
            Container::Mp4 | Container::Mov if text => "mov_text",
            Container::Matroska if codec == "mov_text" => "srt",
            Container::WebM if text && codec != "webvtt" => "webvtt",
            _ => "copy",
        }
    }

    /// Whether the container keeps a cover picture of `codec`.
    fn keeps_cover(self, codec: &str) -> bool {
        match self {
            Container::Mp4 => cover_file_type(codec).is_some(),
            Container::Matroska => true,
            Container::Mov | Container::WebM => false,
        }
    }
}

/// Subtitle codecs made of text, which FFmpeg converts into one another.
const TEXT_SUBTITLES: &[&str] = &[
    "mov_text",
    "subrip",
    "srt",
    "ass",
    "ssa",
    "webvtt",
    "text",
    "microdvd",
    "mpl2",
    "sami",
    "realtext",
    "subviewer",
    "subviewer1",
    "vplayer",
    "pjs",
    "jacosub",
    "stl",
];

/// The file type of a cover picture's codec: its extension and media type, for the codecs MP4
/// takes as covers (a Matroska source names its own).
fn cover_file_type(codec: &str) -> Option<(&'static str, &'static str)> {
    match codec {
        "mjpeg" => Some(("jpg", "image/jpeg")),
        "png" => Some(("png", "image/png")),
        "bmp" => Some(("bmp", "image/bmp")),
        _ => None,
    }
}

/// A cover picture taken out of the source, to be attached to a Matroska output.
struct CoverFile {
    file: std::path::PathBuf,
    /// The name it is attached under: the source's, else `cover.EXT` (`cover-2.EXT`, ...).
    name: String,
    mime: String,
}

/// The source's cover pictures as files in `dir`, byte for byte: Matroska keeps pictures as
/// attached files, and FFmpeg's Matroska writer would store a picture stream as a second
/// video track.
fn extract_covers(
    source: &Path,
    info: &MediaInfo,
    dir: &Path,
) -> Result<Vec<CoverFile>, PipelineError> {
    let mut covers = Vec::new();
    for (k, cover) in info.cover_art.iter().enumerate() {
        let known = cover_file_type(&cover.codec);
        let named = cover.file_name.as_deref().filter(|n| !n.is_empty());
        let ext = named
            .and_then(|n| Path::new(n).extension())
            .map(|e| e.to_string_lossy().into_owned())
            .or_else(|| known.map(|(ext, _)| ext.to_string()))
            .unwrap_or_else(|| "bin".into());
        let mime = cover
            .mime
            .clone()
            .or_else(|| known.map(|(_, mime)| mime.to_string()))
            .unwrap_or_else(|| "application/octet-stream".into());
        let name = match (named, k) {
            (Some(name), _) => name.to_string(),
            (None, 0) => format!("cover.{ext}"),
            (None, k) => format!("cover-{}.{ext}", k + 1),
        };
        // The work directory's name holds the output's, which may hold `%`: `-update 1`
        // takes the name as it is, not as a pattern of frame numbers.
        let file =
            std::path::absolute(dir.join(format!("cover-{k}.bin"))).map_err(PipelineError::Io)?;
        let mut cmd = std::process::Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y"])
            .args(source_input(source))
            .args(["-map", &format!("0:{}", cover.index)])
            .args([
                "-c",
                "copy",
                "-frames:v",
                "1",
                "-f",
                "image2",
                "-update",
                "1",
            ])
            .arg(format!("file:{}", file.display()));
        crate::subprocess::run_with_timeout(&mut cmd, CHECK_TIME).map_err(|e| {
            PipelineError::Encode {
                what: "taking out the cover picture".into(),
                ffmpeg: e.to_string(),
            }
        })?;
        covers.push(CoverFile { file, name, mime });
    }
    Ok(covers)
}

/// What of the source `target`'s container does not keep as it was, in words for the user:
/// attached files outside Matroska, cover art where the container holds none (or none of its
/// format), styled subtitles turned into plain text; in a `partial` output (`--frames`),
/// everything but the audio. The job goes on without them (what a container cannot hold at
/// all is refused before it starts: [`check_other_streams`]).
pub fn left_out(info: &MediaInfo, target: &Path, partial: bool) -> Vec<String> {
    let container = Container::of(target).unwrap_or(Container::Matroska);
    let ext = target.extension().unwrap_or_default().to_string_lossy();
    let mut notes = Vec::new();
    if partial {
        if !info.subtitle_codecs.is_empty() || !info.cover_art.is_empty() || info.attachments > 0 {
            notes.push(
                "an output of the first frames keeps the video and the audio only: the \
                 source's subtitles, cover art and attached files are left out"
                    .to_string(),
            );
        }
        return notes;
    }
    if info.attachments > 0 && container != Container::Matroska {
        notes.push(format!(
            "the source's {} attached file(s) (fonts for its subtitles, say) are not kept: \
             .{ext} holds none; .mkv keeps them",
            info.attachments
        ));
    }
    let covers = info.cover_art.len();
    let kept = info
        .cover_art
        .iter()
        .filter(|c| container.keeps_cover(&c.codec))
        .count();
    if kept < covers {
        notes.push(format!(
            "{} of the source's {covers} cover picture(s) are not kept: .{ext} holds {}; .mkv \
             keeps them",
            covers - kept,
            match container {
                Container::Mp4 => "JPEG, PNG or BMP covers only",
                _ => "none",
            }
        ));
    }
    let styled = info
        .subtitle_codecs
        .iter()
        .any(|c| c == "ass" || c == "ssa");
    if styled && container != Container::Matroska {
        notes.push(format!(
            "styled (ASS) subtitles become plain text in .{ext}, which keeps no styling; .mkv \
             keeps them as they are"
        ));
    }
    notes
}

/// FFmpeg's arguments that carry the source's streams other than the video (input number
/// `input`) into `target`: audio copied, subtitles copied or converted per stream
/// ([`Container::subtitle_codec`]), cover art (a picture stream in MP4; in Matroska the
/// `covers` taken out, as attached files) and Matroska's attached files (fonts for styled
/// subtitles). What a container cannot hold at all (attached files in MP4, anything but audio
/// and subtitles in WebM) is left out. A `partial` output (the first frames) takes the audio
/// only: FFmpeg's `-shortest`, which ends it with the video, would end it with the shortest
/// subtitle or the one-frame cover instead.
fn other_streams(
    input: usize,
    info: &MediaInfo,
    target: &Path,
    covers: &[CoverFile],
    partial: bool,
) -> Vec<String> {
    let container = Container::of(target).unwrap_or(Container::Matroska);
    let mut args: Vec<String> = vec![
        "-map".into(),
        format!("{input}:a?"),
        "-c:a".into(),
        "copy".into(),
    ];
    if partial {
        return args;
    }
    args.extend(["-map".into(), format!("{input}:s?")]);
    for (k, codec) in info.subtitle_codecs.iter().enumerate() {
        args.extend([format!("-c:s:{k}"), container.subtitle_codec(codec).into()]);
    }
    match container {
        Container::Mp4 => {
            for cover in &info.cover_art {
                if container.keeps_cover(&cover.codec) {
                    args.extend(["-map".into(), format!("{input}:{}", cover.index)]);
                }
            }
        }
        Container::Matroska => {
            args.extend(["-map".into(), format!("{input}:t?")]);
            // Attached after the source's own files, which come first among the output's.
            for (k, cover) in covers.iter().enumerate() {
                let at = info.attachments + k;
                args.extend([
                    "-attach".into(),
                    cover.file.display().to_string(),
                    format!("-metadata:s:t:{at}"),
                    format!("mimetype={}", cover.mime),
                    format!("-metadata:s:t:{at}"),
                    format!("filename={}", cover.name),
                ]);
            }
        }
        Container::Mov | Container::WebM => {}
    }
    args
}

/// How far the frames are turned (degrees counterclockwise) before they are encoded: the
/// source's display rotation where `output`'s container cannot carry it (Matroska and WebM:
/// FFmpeg 5.1 writes no rotation into them, and a video would show on its side), so that the
/// result shows upright everywhere; none for MP4, which keeps the rotation as metadata.
pub fn rotation_in_pixels(output: &Path, info: &MediaInfo) -> i32 {
    match Container::of(output) {
        Some(c) if c.is_mp4_like() => 0,
        _ => info.video.rotation,
    }
}

/// The containers written, by the output's extension: MP4 (and its `.m4v`, `.mov` kin) and
/// Matroska take every codec we encode; WebM only AV1 of them.
pub fn check_container(output: &Path, codec: Codec) -> Result<(), PipelineError> {
    let refused = |reason: String| PipelineError::UnsupportedOutput {
        path: output.display().to_string(),
        reason,
    };
    match Container::of(output) {
        Some(Container::Mp4 | Container::Mov | Container::Matroska) => Ok(()),
        Some(Container::WebM) if codec == Codec::Av1 => Ok(()),
        Some(Container::WebM) => Err(refused(format!(
            "WebM holds AV1 video, not {codec:?}: use --codec av1, or .mp4 or .mkv"
        ))),
        None => Err(refused(
            "the output must end in .mp4, .mkv, .mov or .webm".into(),
        )),
    }
}

/// Whether `target`'s extension names an MP4-family container (MP4's timescale applies).
fn is_mp4_like(target: &Path) -> bool {
    Container::of(target).is_some_and(Container::is_mp4_like)
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
    if info.audio_streams + info.subtitle_codecs.len() + info.cover_art.len() + info.attachments
        == 0
    {
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
        // Cover pictures Matroska attaches are files, which it always takes: not checked.
        .args(other_streams(0, info, output, &[], false))
        .args(["-c:v", "copy", "-t", "0"])
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
                    "the source's audio or subtitles cannot be copied into .{ext}{why}{}",
                    match Container::of(output) {
                        Some(Container::Matroska) => "",
                        _ => "; choose .mkv",
                    }
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
