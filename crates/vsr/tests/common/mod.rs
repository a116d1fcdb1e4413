//! Helpers shared by the `vsr` integration tests: the binary, test media and fixtures.
#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn vsr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args(args)
        .output()
        .expect("vsr runs")
}

pub fn fixtures() -> PathBuf {
    std::env::var_os("VSR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"))
}

/// Where `make` installed the model files (`VSR_MODELS_DIR`, else the cache's default).
pub fn models_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("VSR_MODELS_DIR")
        .or_else(|| env("VSR_CACHE_DIR").map(|c| c.join("models")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/vsr/models")))
        .expect("VSR_MODELS_DIR or HOME is set")
}

pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "vsr failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn media_dir() -> PathBuf {
    std::env::var_os("VSR_TEST_MEDIA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/media"))
}

pub fn ffmpeg(args: &[&str]) {
    ffmpeg_output(args);
}

/// Runs FFmpeg, which must succeed, and returns what it wrote to stdout.
pub fn ffmpeg_output(args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A phone-style rotated clip (rotation as container metadata on an unrotated stream), and the
/// same clip upright: `(upright, rotated)` in `dir`.
pub fn rotated_clip(dir: &Path) -> (PathBuf, PathBuf) {
    let (upright, rotated) = (dir.join("upright.mp4"), dir.join("rotated.mp4"));
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=0.5",
        "-c:v",
        "libx264",
        &s(&upright),
    ]);
    ffmpeg(&[
        "-i",
        &s(&upright),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        &s(&rotated),
    ]);
    (upright, rotated)
}

/// A `seconds`-long Matroska clip with two audio tracks and a subtitle track, in `dir`.
pub fn clip_with_tracks(dir: &Path, seconds: u32) -> PathBuf {
    let (subs, clip) = (dir.join("subs.srt"), dir.join("tracks.mkv"));
    std::fs::write(&subs, "1\n00:00:00,000 --> 00:00:00,900\nhello\n").unwrap();
    let video = format!("testsrc2=size=64x48:rate=10:duration={seconds}");
    let (a1, a2) = (
        format!("sine=frequency=440:duration={seconds}"),
        format!("sine=frequency=660:duration={seconds}"),
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &video,
        "-f",
        "lavfi",
        "-i",
        &a1,
        "-f",
        "lavfi",
        "-i",
        &a2,
        "-i",
        subs.to_str().unwrap(),
        "-map",
        "0",
        "-map",
        "1",
        "-map",
        "2",
        "-map",
        "3",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        clip.to_str().unwrap(),
    ]);
    clip
}

/// A generated H.264 test pattern of `size` ("WxH") at `rate` fps for `seconds`.
pub fn testsrc_clip(path: &Path, size: &str, rate: u32, seconds: f64) {
    testsrc(path, &format!("{size}:rate={rate}:duration={seconds}"), &[]);
}

/// testsrc2 with `spec` ("WxH:rate=R:duration=S") through libx264 with `options`.
fn testsrc(path: &Path, spec: &str, options: &[&str]) {
    let source = format!("testsrc2=size={spec}");
    let mut args = vec!["-f", "lavfi", "-i", &source, "-c:v", "libx264"];
    args.extend_from_slice(options);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
}

/// A testsrc2 clip of `size` ("WxH") at `rate` fps for `seconds`, with a keyframe every
/// second, so that segments of a second or more can be cut anywhere in it.
pub fn keyframed_clip(path: &Path, size: &str, rate: u32, seconds: u32) {
    let gop = rate.to_string();
    testsrc(
        path,
        &format!("{size}:rate={rate}:duration={seconds}"),
        &["-g", &gop],
    );
}

/// A 321x181 clip (odd sizes on both axes, so 4:4:4) at `rate` fps for `seconds`.
pub fn odd_clip(path: &Path, rate: u32, seconds: f64) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=320x180:rate={rate}:duration={seconds},scale=321:181"),
        "-pix_fmt",
        "yuv444p",
        "-c:v",
        "libx264",
        path.to_str().unwrap(),
    ]);
}

/// A 10-bit HEVC clip of `size` ("WxH").
pub fn hevc10_clip(path: &Path, size: &str, rate: u32, seconds: f64) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={size}:rate={rate}:duration={seconds}"),
        "-pix_fmt",
        "yuv420p10le",
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error",
        path.to_str().unwrap(),
    ]);
}

/// The first frame of a video as RGB bytes.
pub fn first_frame_rgb(path: &Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `vsr upscale`, with the fast preset unless `extra` picks a preset or a model: these
/// tests are about video handling, and the fast model keeps them quick.
pub fn upscale(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vsr"));
    cmd.args([
        "upscale",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    if !extra.iter().any(|a| *a == "--preset" || *a == "--model") {
        cmd.args(["--preset", "fast"]);
    }
    cmd.args(extra).output().unwrap()
}

pub fn ffprobe(args: &[&str], file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Each stream's start time, in seconds, as ffprobe reads it (video first).
pub fn start_times(file: &Path) -> Vec<f64> {
    ffprobe(
        &[
            "-show_entries",
            "stream=codec_type,start_time",
            "-of",
            "csv=p=0",
        ],
        file,
    )
    .lines()
    .map(|l| {
        let (kind, start) = l.split_once(',').unwrap_or((l, ""));
        (kind != "video", start.parse::<f64>().unwrap_or(f64::NAN))
    })
    .collect::<std::collections::BTreeMap<_, _>>()
    .into_values()
    .collect()
}

/// Sends `signal` (`-KILL`, `-STOP`, ...) to process `pid` with kill(1); whether it was sent
/// (a process already gone is not an error to every caller).
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success()
}

/// The decoded frames of a video, one checksum line each.
pub fn framemd5(file: &Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    ok(&out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Frames a worker's log says it upscaled for tasks it helped with (`helped with a task
/// frames=N` lines).
pub fn frames_helped(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("helped with a task"))
        .filter_map(|l| {
            l.split("frames=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// A fresh database of its own on the test server; its URL.
pub fn new_database(prefix: &str) -> String {
    let server_url = std::env::var("VSR_TEST_POSTGRES")
        .expect("VSR_TEST_POSTGRES is not set: run under tools/with_postgres.sh (make test does)");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("vsr_{prefix}_{}_{nanos}", std::process::id());
    let created = std::process::Command::new("psql")
        .args([
            server_url.as_str(),
            "-qc",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let (base, _) = server_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}
