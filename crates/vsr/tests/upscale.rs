//! `vsr upscale` end to end on real and generated clips: sizes, frame counts, exact
//! timestamps and every other stream kept; bad input refused with nothing left behind.

mod common;

use common::{
    clip_with_tracks, ffmpeg, ffmpeg_output, ffprobe, first_frame_rgb, hevc10_clip, media_dir,
    odd_clip, ok, rotated_clip, start_times, testsrc_clip, upscale, vsr,
};
use std::path::{Path, PathBuf};
use std::process::Command;

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
    odd_clip(&odd, 5, 0.4);
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
    hevc10_clip(&hevc, "64x48", 10, 0.5);
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
    // Matroska (as FFmpeg 5.1 writes it) holds no rotation: the frames are turned upright
    // instead, and show as the MP4 result does (FFmpeg turns that one as it decodes).
    let turned = p("rotated-2x.mkv");
    ok(&upscale(&rotated, &turned, &["--scale", "2"]));
    assert_eq!(size(&turned), "96,128");
    assert!(rotation(&turned).trim().is_empty());
    let (shown, upright) = (first_frame_rgb(&out), first_frame_rgb(&turned));
    assert_eq!(shown.len(), upright.len());
    let mean_difference = shown
        .iter()
        .zip(&upright)
        .map(|(a, b)| a.abs_diff(*b) as f64)
        .sum::<f64>()
        / shown.len() as f64;
    assert!(mean_difference < 2.0, "{mean_difference}");
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
    testsrc_clip(&small, "64x48", 10, 0.2);
    let r = upscale(
        &small,
        &p("big.mp4"),
        &["--scale", "4", "--max-output", "200x200"],
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("output_too_large"));
    assert!(!p("big.mp4").exists());
    // Refused before any frame is upscaled, with the path and a code: an output that is the
    // input, a container we do not write or that cannot hold the codec or the source's
    // audio, an input that is missing or a folder.
    let before = std::fs::read(&small).unwrap();
    let pcm = p("pcm.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=0.5",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=0.5",
        "-c:v",
        "libx264",
        "-c:a",
        "pcm_s16le",
        pcm.to_str().unwrap(),
    ]);
    for (input, output, expected) in [
        (
            pcm.clone(),
            p("pcm.mp4"),
            "cannot be copied into .mp4 (Could not find tag for codec pcm_s16le",
        ),
        (
            small.clone(),
            small.clone(),
            "the output is the input itself; choose another output name [invalid_settings]",
        ),
        (
            small.clone(),
            p("out.txt"),
            "must end in .mp4, .mkv, .mov or .webm [invalid_settings]",
        ),
        (small.clone(), p("out.webm"), "WebM holds AV1 video"),
        (
            p("missing.mp4"),
            p("out.mp4"),
            "missing.mp4: no such file [not_found]",
        ),
        (
            dir.path().to_path_buf(),
            p("out.mp4"),
            "a folder, not a file [not_a_file]",
        ),
    ] {
        let r = upscale(&input, &output, &["--scale", "2"]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(
            !r.status.success() && stderr.contains(expected),
            "{output:?}: {stderr}"
        );
        assert!(
            !stderr.contains("frames"),
            "refused only after upscaling: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read(&small).unwrap(),
        before,
        "the input is untouched"
    );
    no_partial_files(dir.path());
}

/// A source cut short (a partial download) completes with the frames that decode, and the
/// run says the source is damaged and how many frames of those it lists came out; a name
/// with a colon is a file name, not an FFmpeg protocol.
#[test]
fn truncated_sources_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=30",
        "-frames:v",
        "90",
        "-c:v",
        "libx264",
        "-g",
        "30",
        "-movflags",
        "+faststart",
        whole.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    // Relative, as typed in a shell: FFmpeg would read `12:` as a protocol.
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_vsr"))
        .current_dir(dir.path())
        .args(["upscale", "cut.mp4", "-o", "12:30.mp4", "--scale", "2"])
        .args(["--preset", "fast", "--threads", "2"])
        .output()
        .unwrap();
    let out = dir.path().join("12:30.mp4");
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the source is damaged or truncated")
            && stderr.contains("of the 90 frames it lists"),
        "{stderr}"
    );
    assert!(out.exists());
    // The whole file: no warning.
    let r = upscale(
        &whole,
        &dir.path().join("whole-2x.mp4"),
        &["--scale", "2", "--preset", "fast"],
    );
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        r.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );
}

/// `vsr bench --pipeline` reports end-to-end fps next to model-only fps.
#[test]
fn pipeline_benchmark_reports_both_rates() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 1.0);
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

/// Presets, denoise, preserve-details, guideScale and scale 8 do what docs/models.md says.
#[test]
fn settings_choose_models_filters_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let clip = p("clip.mp4");
    testsrc_clip(&clip, "48x32", 10, 0.3);
    let run = |out: &str, extra: &[&str]| -> String {
        let r = upscale(&clip, &p(out), extra);
        ok(&r);
        String::from_utf8_lossy(&r.stderr).into_owned()
    };

    // Scale 8: two passes, 2x then 4x, every frame kept.
    let log = run("x8.mp4", &["--scale", "8"]);
    assert!(
        log.contains("realesr-animevideov3-x2 + realesr-animevideov3-x4"),
        "{log}"
    );
    assert_eq!(size(&p("x8.mp4")), "384,256");
    assert_eq!(video_pts(&p("x8.mp4"), 10), video_pts(&clip, 10));

    // A denoise level the model has a variant for runs that variant.
    let log = run(
        "dn.mp4",
        &["--scale", "2", "--preset", "balanced", "--denoise", "2"],
    );
    assert!(log.contains("with realcugan-se-up2x-denoise2x"), "{log}");
    assert_eq!(size(&p("dn.mp4")), "96,64");

    // Without a variant: FFmpeg's hqdn3d before the model, and a Lanczos blend for details.
    // Both change the picture; guideScale is accepted and said to have no effect.
    run("plain.mp4", &["--scale", "2"]);
    let log = run(
        "tuned.mp4",
        &[
            "--scale",
            "2",
            "--denoise",
            "3",
            "--preserve-details",
            "--guide-scale",
            "7.5",
        ],
    );
    for expected in ["hqdn3d", "Lanczos", "guideScale 7.5 is not applicable"] {
        assert!(log.contains(expected), "{expected}: {log}");
    }
    let (plain, tuned) = (
        first_frame_rgb(&p("plain.mp4")),
        first_frame_rgb(&p("tuned.mp4")),
    );
    assert_eq!(plain.len(), tuned.len());
    let changed = plain
        .iter()
        .zip(&tuned)
        .filter(|(a, b)| a.abs_diff(**b) > 8)
        .count();
    assert!(
        changed > plain.len() / 100,
        "settings had no visible effect ({changed} values)"
    );

    // Bad settings name the field; scale 8 over the output limit fails before any work.
    let r = upscale(
        &clip,
        &p("bad.mp4"),
        &["--scale", "8", "--model", "realesr-animevideov3-x2"],
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("invalid_settings"));
    let big = media_dir().join("bigbuckbunny.mp4");
    let started = std::time::Instant::now();
    let r = upscale(&big, &p("huge.mp4"), &["--scale", "8"]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("output_too_large"));
    assert!(
        started.elapsed().as_secs() < 20,
        "the limit was checked late"
    );
    no_partial_files(dir.path());
}

/// Each stream of the output as `codec|type|picture?|name`: what the cover-art test compares.
fn stream_list(file: &Path) -> Vec<String> {
    ffprobe(
        &[
            "-show_entries",
            "stream=codec_type,codec_name:stream_disposition=attached_pic:stream_tags=filename",
            "-of",
            "compact=p=0:nk=1",
        ],
        file,
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// MD5 of a stream's packets, by FFmpeg's stream specifier.
fn stream_md5(file: &Path, stream: &str) -> String {
    let map = format!("0:{stream}");
    let file = file.to_str().unwrap();
    ffmpeg_output(&["-i", file, "-map", &map, "-c", "copy", "-f", "md5", "-"])
        .trim()
        .to_string()
}

/// The first subtitle stream as SubRip text, without its timing.
fn subtitle_text(file: &Path) -> String {
    let file = file.to_str().unwrap();
    ffmpeg_output(&["-i", file, "-map", "0:s:0", "-f", "srt", "-"])
        .lines()
        .filter(|l| !l.contains("-->"))
        .collect::<Vec<_>>()
        .join("|")
}

/// The `note:` lines a run printed, but the device's.
fn notes(run: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&run.stderr)
        .lines()
        .filter(|l| l.starts_with("note: ") && !l.contains("device"))
        .map(str::to_string)
        .collect()
}

/// Cover art, Matroska's attached files (fonts for styled subtitles) and subtitles come
/// through in the form each container holds: MP4 keeps the cover as a picture stream and its
/// subtitles as `mov_text`; Matroska attaches the cover as a file (its name kept), keeps the
/// fonts, and turns MP4's text subtitles into SubRip. The cover's bytes are the source's.
#[test]
fn cover_art_fonts_and_subtitles_follow_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let s = |n: &str| p(n).to_str().unwrap().to_string();
    std::fs::write(p("subs.srt"), "1\n00:00:00,000 --> 00:00:00,500\nhello\n").unwrap();
    std::fs::write(p("font.ttf"), b"a font's bytes").unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=32x32",
        "-frames:v",
        "1",
        &s("cover.jpg"),
    ]);
    // FFmpeg's arguments: the words of `fixed`, with `files` (in `dir`) in its `{}` places.
    let run = |fixed: &str, files: &[&str]| {
        let mut files = files.iter();
        let args: Vec<String> = fixed
            .split_whitespace()
            .map(|w| match w {
                "{}" => s(files.next().unwrap()),
                w => w.to_string(),
            })
            .collect();
        ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    let video = "-f lavfi -i testsrc2=size=64x48:rate=10:duration=1";
    // Matroska: styled subtitles, their font, a cover attached as a file.
    run(
        &format!(
            "{video} -i {{}} -map 0 -map 1 -c:v libx264 -c:s ass \
             -attach {{}} -metadata:s:t:0 mimetype=application/x-truetype-font \
             -attach {{}} -metadata:s:t:1 mimetype=image/jpeg -metadata:s:t:1 filename=front.jpg {{}}"
        ),
        &["subs.srt", "font.ttf", "cover.jpg", "styled.mkv"],
    );
    // MP4: text subtitles and a cover picture stream.
    run(
        &format!(
            "{video} -i {{}} -i {{}} -map 0 -map 1 -map 2 -c:v:0 libx264 -c:s mov_text \
             -c:v:1 copy -disposition:v:1 attached_pic {{}}"
        ),
        &["subs.srt", "cover.jpg", "covered.mp4"],
    );
    let cover = stream_md5(&p("covered.mp4"), "v:1");
    assert_eq!(stream_md5(&p("styled.mkv"), "v:1"), cover);

    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "styled.mkv",
            "styled-2x.mkv",
            &[
                "h264|video|0",
                "ass|subtitle|0",
                "ttf|attachment|0|font.ttf",
                "mjpeg|video|1|front.jpg",
            ],
        ),
        (
            "styled.mkv",
            "styled-2x.mp4",
            &["h264|video|0", "mov_text|subtitle|0", "mjpeg|video|1"],
        ),
        (
            "covered.mp4",
            "covered-2x.mkv",
            &[
                "h264|video|0",
                "subrip|subtitle|0",
                "mjpeg|video|1|cover.jpg",
            ],
        ),
        // FFmpeg writes no cover into QuickTime.
        (
            "covered.mp4",
            "covered-2x.mov",
            &["h264|video|0", "mov_text|subtitle|0"],
        ),
        // A `%` in the name is a name, not a pattern of frame numbers.
        (
            "covered.mp4",
            "covered%d.mkv",
            &[
                "h264|video|0",
                "subrip|subtitle|0",
                "mjpeg|video|1|cover.jpg",
            ],
        ),
    ];
    for (source, result, streams) in cases {
        let run = upscale(&p(source), &p(result), &["--scale", "2"]);
        ok(&run);
        assert_eq!(stream_list(&p(result)), streams, "{source} -> {result}");
        // What the container does not keep as it was is told: in MP4, the font and the
        // subtitles' styling; in QuickTime, the cover.
        let told = match result {
            "styled-2x.mp4" => vec![
                "note: the source's 1 attached file(s) (fonts for its subtitles, say) are not \
                 kept: .mp4 holds none; .mkv keeps them",
                "note: styled (ASS) subtitles become plain text in .mp4, which keeps no \
                 styling; .mkv keeps them as they are",
            ],
            "covered-2x.mov" => vec![
                "note: 1 of the source's 1 cover picture(s) are not kept: .mov holds none; \
                 .mkv keeps them",
            ],
            _ => vec![],
        };
        assert_eq!(notes(&run), told, "{source} -> {result}");
        if streams.iter().any(|s| s.starts_with("mjpeg")) {
            assert_eq!(stream_md5(&p(result), "v:1"), cover, "{result}");
        }
        assert_eq!(subtitle_text(&p(result)), "1|hello|", "{result}");
        assert_eq!(size(&p(result)), "128,96");
    }
    // The first frames only: every one of them, with the audio only (FFmpeg's `-shortest`
    // would end the video with the one-frame cover or the shorter subtitles).
    let partial = p("covered-first.mp4");
    let run = upscale(
        &p("covered.mp4"),
        &partial,
        &["--scale", "2", "--frames", "8"],
    );
    ok(&run);
    assert_eq!(stream_list(&partial), ["h264|video|0"]);
    assert_eq!(video_pts(&partial, 100).len(), 8);
    assert_eq!(
        notes(&run),
        [
            "note: an output of the first frames keeps the video and the audio only: the \
          source's subtitles, cover art and attached files are left out"
        ]
    );
    no_partial_files(dir.path());
}

/// Ctrl-C (SIGINT) and SIGTERM mid-run: the command stops within seconds, its FFmpeg children
/// are gone and no partial output is left; only finished segments are, for a resume (the
/// resume hint is printed when there is one: `segments.rs` covers that side).
#[test]
fn interrupt_kills_children_and_removes_temporaries() {
    for signal in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("long.mp4");
        testsrc_clip(&clip, "160x90", 25, 20.0);
        let out = dir.path().join("out.mp4");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vsr"))
            .args([
                "upscale",
                clip.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ])
            .args([
                "--preset",
                "fast",
                "--scale",
                "2",
                "--json-progress",
                "--threads",
                "2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for real progress, so decoder and encoder are both running.
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let first = lines.next().expect("a progress line").unwrap();
        assert!(first.contains("\"currentFrame\":1"), "{first}");
        assert!(ffmpeg_children(dir.path()) >= 1, "FFmpeg should be running");
        if signal == "INT" {
            // A second run on the same output, spelt otherwise, is refused at once: it would
            // share or remove this one's work.
            let same = dir.path().join(".").join("out.mp4");
            let second = vsr(&[
                "upscale",
                clip.to_str().unwrap(),
                "-o",
                same.to_str().unwrap(),
            ]);
            let told = String::from_utf8_lossy(&second.stderr);
            assert_eq!(second.status.code(), Some(1), "{told}");
            assert!(told.contains("[output_in_use]"), "{told}");
            assert!(told.contains(&format!("process {}", child.id())), "{told}");
        }
        let sent = std::time::Instant::now();
        assert!(common::signal(child.id(), &format!("-{signal}")));
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(130), "{signal}: exit status");
        assert!(stderr.contains("cancelled"), "{signal}: {stderr}");
        assert!(
            sent.elapsed().as_secs() < 5,
            "{signal}: took {:?}",
            sent.elapsed()
        );
        assert_eq!(
            ffmpeg_children(dir.path()),
            0,
            "{signal}: FFmpeg left running"
        );
        assert!(!out.exists());
        // Stopped in its first segment (of 10 s): nothing finished, so no resume is offered.
        assert!(
            !stderr.contains("run the same command again to resume"),
            "{stderr}"
        );
        only_finished_segments_left(dir.path());
    }
}

/// Nothing partial in `dir`: no temporary output, and work directories hold finished
/// segments only.
fn only_finished_segments_left(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            continue;
        }
        assert!(name.contains(".vsr-"), "temporary file left behind: {name}");
        for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
            let file = file.file_name().to_string_lossy().into_owned();
            assert!(!file.contains("partial"), "partial segment left: {file}");
        }
    }
}

/// FFmpeg processes whose command line mentions `dir`.
fn ffmpeg_children(dir: &Path) -> usize {
    let needle = dir.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("ffmpeg") && c.contains(needle))
        .count()
}

/// A video that starts later than its audio keeps its offset, in MP4 and MPEG-TS sources
/// alike: every stream starts when the source's does, within a millisecond.
#[test]
fn stream_start_offsets_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for (name, container, out_ext) in [("offset.mp4", "mp4", "mp4"), ("offset.ts", "mpegts", "mkv")]
    {
        let source = p(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48:rate=10:duration=1.5",
            "-vf",
            "setpts=PTS+0.5/TB",
            "-map",
            "1:v",
            "-map",
            "0:a",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            "-f",
            container,
            source.to_str().unwrap(),
        ]);
        let want = start_times(&source);
        assert!(
            want[0] - want[1] > 0.4,
            "{name}: the source has no offset: {want:?}"
        );
        let out = p(&format!("{name}-2x.{out_ext}"));
        ok(&upscale(&source, &out, &["--scale", "2"]));
        let got = start_times(&out);
        assert_eq!(got.len(), 2, "{name}: {got:?}");
        for (w, g) in want.iter().zip(&got) {
            assert!(
                (w - g).abs() < 0.001,
                "{name}: streams start at {got:?}, not {want:?} as in the source"
            );
        }
    }
}

/// RGB sources (lossless intermediates, screen recordings, PNG sequences) upscale to every
/// codec: their `gbr` colour tag is mapped for the YUV encoder instead of failing it, and
/// their colours come out right: a lossless H.264 result's first frame is within a level, on
/// average, of `vsr upscale-image` on the source's first frame (H.265 and AV1, lossy, within
/// a few).
#[test]
fn rgb_sources_upscale_with_their_colours() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let vsr = env!("CARGO_BIN_EXE_vsr");
    for (name, codec, pix_fmt) in [
        ("rgb-ffv1.mkv", "ffv1", "gbrp"),
        ("rgb-x264.mkv", "libx264rgb", "rgb24"),
        ("rgb-png.mkv", "png", "rgb24"),
    ] {
        let source = p(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48:rate=10:duration=0.5",
            "-pix_fmt",
            pix_fmt,
            "-c:v",
            codec,
            source.to_str().unwrap(),
        ]);
        // The model on the source's first frame, as a still image.
        let still = p(&format!("{name}.png"));
        ffmpeg(&[
            "-i",
            source.to_str().unwrap(),
            "-frames:v",
            "1",
            still.to_str().unwrap(),
        ]);
        let want = p(&format!("{name}-2x.png"));
        ok(&Command::new(vsr)
            .args([
                "upscale-image",
                still.to_str().unwrap(),
                "-o",
                want.to_str().unwrap(),
            ])
            .args(["--scale", "2", "--preset", "fast", "--threads", "2"])
            .output()
            .unwrap());
        let want = first_frame_rgb(&want);
        for (out_codec, crf, tolerance) in
            [("h264", "0", 1.0), ("h265", "20", 4.0), ("av1", "20", 6.0)]
        {
            let out = p(&format!("{name}-{out_codec}.mkv"));
            ok(&upscale(
                &source,
                &out,
                &["--scale", "2", "--codec", out_codec, "--crf", crf],
            ));
            assert_eq!(size(&out), "128,96", "{name}");
            let got = first_frame_rgb(&out);
            assert_eq!(got.len(), want.len());
            let mean = got
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as f64 - b as f64).abs())
                .sum::<f64>()
                / got.len() as f64;
            assert!(
                mean < tolerance,
                "{name} to {out_codec}: {mean:.2} levels off upscale-image on average"
            );
        }
    }
}

/// `--temporal auto` blends frames within a shot and leaves the first frame of each shot (the
/// clip's start, and the frame after a cut) exactly as the model drew it; `--temporal off` is
/// the output without the flag, frame for frame (lossless outputs compared).
#[test]
fn temporal_stability_blends_within_shots_only() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("cut.mkv");
    // Six frames of one pattern, then six of another: a cut at frame 6.
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=10",
        "-f",
        "lavfi",
        "-i",
        "mandelbrot=size=96x64:rate=10",
        "-filter_complex",
        "[0]trim=end_frame=6[a];[1]trim=end_frame=6,setpts=PTS-STARTPTS[b];[a][b]concat=n=2,format=yuv444p[v]",
        "-map",
        "[v]",
        "-c:v",
        "ffv1",
        clip.to_str().unwrap(),
    ]);
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["--scale", "2", "--crf", "0"];
        args.extend_from_slice(extra);
        let output = common::upscale(&clip, &out, &args);
        ok(&output);
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        (common::framemd5(&out), said)
    };
    let (plain, _) = run("plain.mkv", &[]);
    let (off, off_said) = run("off.mkv", &["--temporal", "off"]);
    let (auto, auto_said) = run("auto.mkv", &["--temporal", "auto"]);
    // The summary says what the stabiliser cost, and only when it ran.
    assert!(auto_said.contains("of the model's time"), "{auto_said}");
    assert!(!off_said.contains("stabiliser"), "{off_said}");
    assert_eq!(plain.len(), 12);
    assert_eq!(plain, off, "--temporal off changes nothing");
    assert_eq!(auto[0], off[0], "the first frame has no history");
    assert_eq!(
        auto[6], off[6],
        "the frame after the cut shows nothing of the last shot"
    );
    assert!(
        (1..6).chain(7..12).any(|i| auto[i] != off[i]),
        "frames within a shot are blended"
    );
}
