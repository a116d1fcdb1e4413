//! `vsr upscale` end to end on real and generated clips: sizes, frame counts, exact
//! timestamps and every other stream kept; bad input refused with nothing left behind.

mod common;

use common::{clip_with_tracks, ffmpeg, media_dir, ok, rotated_clip};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn upscale(input: &Path, output: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args([
            "upscale",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--threads",
            "2",
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn ffprobe(args: &[&str], file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Sorted presentation timestamps (in seconds, as ffprobe prints them) of the first video stream.
fn video_pts(file: &Path, frames: usize) -> Vec<String> {
    let text = ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ],
        file,
    );
    let mut pts: Vec<String> = text.lines().map(str::to_string).collect();
    pts.sort_by(|a, b| {
        a.parse::<f64>()
            .unwrap()
            .total_cmp(&b.parse::<f64>().unwrap())
    });
    pts.truncate(frames);
    pts
}

fn size(file: &Path) -> String {
    ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ],
        file,
    )
    .trim()
    .to_string()
}

fn no_partial_files(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

/// The real clip: first 25 frames at 2x keep their count and exact timestamps.
#[test]
fn real_clip_first_frames_at_2x() {
    let dir = tempfile::tempdir().unwrap();
    let input = media_dir().join("bigbuckbunny.mp4");
    let out = dir.path().join("bbb2x.mp4");
    ok(&upscale(&input, &out, &["--scale", "2", "--frames", "25"]));
    assert_eq!(size(&out), "2560,1440");
    let pts = video_pts(&out, 1000);
    assert_eq!(pts.len(), 25);
    assert_eq!(pts, video_pts(&input, 25));
    no_partial_files(dir.path());
}

#[test]
fn generated_clips_keep_timestamps_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();

    // Variable frame rate: a half-second gap after frame 10.
    let vfr = p("vfr.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=2",
        "-vf",
        "setpts='PTS+if(gte(N,10),0.5/TB,0)'",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        &s(&vfr),
    ]);
    let out = p("vfr-2x.mkv");
    ok(&upscale(&vfr, &out, &["--scale", "2"]));
    assert_eq!(size(&out), "128,96");
    assert_eq!(video_pts(&out, 1000), video_pts(&vfr, 1000));

    // Two audio tracks and a subtitle track, all kept; audio and video end together.
    let tracks = clip_with_tracks(dir.path(), 2);
    for ext in ["mkv", "mp4"] {
        let out = p(&format!("tracks-2x.{ext}"));
        ok(&upscale(&tracks, &out, &["--scale", "2"]));
        let kinds = ffprobe(
            &["-show_entries", "stream=codec_type", "-of", "csv=p=0"],
            &out,
        );
        let kinds: Vec<&str> = kinds.lines().collect();
        assert_eq!(kinds, ["video", "audio", "audio", "subtitle"], "{ext}");
        let durations = ffprobe(
            &["-show_entries", "stream=duration", "-of", "csv=p=0"],
            &out,
        );
        let d: Vec<f64> = durations.lines().filter_map(|l| l.parse().ok()).collect();
        if d.len() >= 2 {
            assert!(
                (d[0] - d[1]).abs() <= 0.1 + 1e-9,
                "{ext}: video {} s, audio {} s",
                d[0],
                d[1]
            );
        }
    }

    // Odd size, and a single frame.
    let odd = p("odd.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=5:duration=0.4,scale=321:181",
        "-pix_fmt",
        "yuv444p",
        "-c:v",
        "libx264",
        &s(&odd),
    ]);
    let out = p("odd-2x.mp4");
    ok(&upscale(&odd, &out, &["--scale", "2"]));
    assert_eq!(size(&out), "642,362");
    let one = p("one.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25",
        "-frames:v",
        "1",
        "-c:v",
        "libx264",
        &s(&one),
    ]);
    let out = p("one-3x.mp4");
    ok(&upscale(&one, &out, &["--scale", "3"]));
    assert_eq!(size(&out), "192,144");
    assert_eq!(video_pts(&out, 10).len(), 1);

    // 10-bit HEVC stays 10-bit.
    let hevc = p("hevc10.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=0.5",
        "-pix_fmt",
        "yuv420p10le",
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error",
        &s(&hevc),
    ]);
    let out = p("hevc10-2x.mkv");
    ok(&upscale(&hevc, &out, &["--scale", "2", "--codec", "h265"]));
    let fmt = ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=pix_fmt",
            "-of",
            "csv=p=0",
        ],
        &out,
    );
    assert_eq!(fmt.trim(), "yuv420p10le");

    // A phone-style rotated clip keeps its rotation.
    let (_, rotated) = rotated_clip(dir.path());
    let out = p("rotated-2x.mp4");
    ok(&upscale(&rotated, &out, &["--scale", "2"]));
    let rotation = |f: &Path| {
        ffprobe(
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream_side_data=rotation",
                "-of",
                "csv=p=0",
            ],
            f,
        )
    };
    assert_eq!(rotation(&out).trim(), rotation(&rotated).trim());
    assert!(!rotation(&out).trim().is_empty());
    no_partial_files(dir.path());
}

#[test]
fn refused_inputs_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let audio = p("audio.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        "-c:a",
        "aac",
        audio.to_str().unwrap(),
    ]);
    std::fs::write(p("empty.mp4"), b"").unwrap();
    std::fs::write(
        p("list.m3u8"),
        "#EXTM3U\n#EXTINF:5.0,\nhttp://127.0.0.1:9/x.ts\n",
    )
    .unwrap();
    for (input, code) in [
        ("audio.m4a", "no_video_stream"),
        ("empty.mp4", "empty_file"),
        ("list.m3u8", "playlist_not_allowed"),
    ] {
        let out = p("out.mp4");
        let r = upscale(&p(input), &out, &["--scale", "2"]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(
            !r.status.success() && stderr.contains(code),
            "{input}: {stderr}"
        );
        assert!(!out.exists(), "{input}: output written");
    }
    // Over the output limit: 64x48 at 4x is 256x192, over a 200x200 maximum.
    let small = p("small.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=0.2",
        "-c:v",
        "libx264",
        small.to_str().unwrap(),
    ]);
    let r = upscale(
        &small,
        &p("big.mp4"),
        &["--scale", "4", "--max-output", "200x200"],
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("output_too_large"));
    assert!(!p("big.mp4").exists());
    no_partial_files(dir.path());
}

/// `vsr bench --pipeline` reports end-to-end fps next to model-only fps.
#[test]
fn pipeline_benchmark_reports_both_rates() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=1",
        "-c:v",
        "libx264",
        clip.to_str().unwrap(),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args([
            "bench",
            "--pipeline",
            clip.to_str().unwrap(),
            "--model",
            "realesr-animevideov3-x2",
            "--runs",
            "2",
        ])
        .output()
        .unwrap();
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {text}"));
        line[key.len()..].parse().unwrap()
    };
    assert!(value("model_fps=") > 0.0);
    assert!(value("pipeline_fps=") > 0.0);
    assert!(text.contains("frames=10"), "{text}");
    assert!(text
        .lines()
        .last()
        .unwrap()
        .starts_with("pipeline_over_model="));
}
