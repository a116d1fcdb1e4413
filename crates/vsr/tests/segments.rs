//! Segmented jobs from the command line: every timestamp survives the cut into segments and
//! the join (start offsets, VFR, B-frames, edit lists, MPEG-TS); an interrupted run resumes
//! from its finished segments with the very frames an uninterrupted one makes; damaged or
//! foreign work is never joined.

mod common;

use common::{ffmpeg, ffprobe, framemd5, ok, start_times, upscale};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

/// Every video frame's presentation time (seconds), sorted.
fn frame_times(file: &Path) -> Vec<f64> {
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
    // MPEG-TS packets print a trailing field and a line of side data.
    let mut t: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

fn assert_same_times(name: &str, source: &Path, out: &Path) {
    let (want, got) = (start_times(source), start_times(out));
    assert_eq!(want.len(), got.len(), "{name}: streams {got:?} vs {want:?}");
    for (w, g) in want.iter().zip(&got) {
        assert!(
            (w - g).abs() < 0.001,
            "{name}: streams start at {got:?}, not {want:?}"
        );
    }
    let (want, got) = (frame_times(source), frame_times(out));
    assert_eq!(want.len(), got.len(), "{name}: frame count");
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert!(
            (w - g).abs() < 0.001,
            "{name}: frame {i} at {g}, not {w} as in the source"
        );
    }
}

/// Sources whose timestamps are easy to lose, cut into half-second segments (many joins):
/// every stream starts where the source's does, every frame keeps its time, within 1 ms.
#[test]
fn timestamps_survive_segments_and_joins() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let video = "testsrc2=size=64x48:rate=10:duration=3";
    let audio = "sine=frequency=440:duration=3.5";
    // MP4 and MPEG-TS whose video starts 0.5 s after the audio, B-frames, a keyframe every
    // 0.5 s.
    for (name, format) in [("offset.mp4", "mp4"), ("offset.ts", "mpegts")] {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            audio,
            "-f",
            "lavfi",
            "-i",
            video,
            "-vf",
            "setpts=PTS+0.5/TB",
            "-map",
            "1:v",
            "-map",
            "0:a",
            "-c:v",
            "libx264",
            "-g",
            "5",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-f",
            format,
            p(name).to_str().unwrap(),
        ]);
    }
    // Variable frame rate in Matroska (frames 30 ms late in a cycle of four).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        audio,
        "-f",
        "lavfi",
        "-i",
        video,
        "-vf",
        "setpts='(N*0.1+0.03*mod(N\\,4))/TB'",
        "-fps_mode",
        "passthrough",
        "-map",
        "1:v",
        "-map",
        "0:a",
        "-c:v",
        "libx264",
        "-g",
        "5",
        "-c:a",
        "aac",
        p("vfr.mkv").to_str().unwrap(),
    ]);
    // An MP4 with an edit list: cut by stream copy off a keyframe, so the first frames are
    // decoded but not shown.
    ffmpeg(&[
        "-ss",
        "0.35",
        "-i",
        p("offset.mp4").to_str().unwrap(),
        "-c",
        "copy",
        p("edit-list.mp4").to_str().unwrap(),
    ]);
    let edits = ffprobe(&["-show_entries", "stream=start_time"], &p("edit-list.mp4"));
    assert!(!edits.is_empty());
    for (name, out_ext) in [
        ("offset.mp4", "mp4"),
        ("offset.ts", "mkv"),
        ("vfr.mkv", "mkv"),
        ("edit-list.mp4", "mp4"),
    ] {
        let out = p(&format!("{name}-2x.{out_ext}"));
        ok(&upscale(
            &p(name),
            &out,
            &["--scale", "2", "--segment-seconds", "0.5"],
        ));
        assert_same_times(name, &p(name), &out);
    }
}

/// An 8 s clip with a keyframe every second: eight segments of 25 frames at one second each.
fn keyframed_clip(path: &Path) {
    common::keyframed_clip(path, "96x64", 25, 8);
}

/// Lossless output, one-second segments.
const LOSSLESS: &[&str] = &["--scale", "2", "--crf", "0", "--segment-seconds", "1"];

/// Starts `vsr upscale` with JSON progress and kills it (SIGKILL: no clean-up at all) once
/// it reports `frames` frames done.
fn kill_at(input: &Path, output: &Path, frames: u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args([
            "upscale",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ])
        .args(["--preset", "fast", "--threads", "2", "--json-progress"])
        .args(LOSSLESS)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let p: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if p["currentFrame"].as_u64().unwrap() >= frames {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The last JSON progress line of a run and its stderr.
fn finish(input: &Path, output: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec!["--json-progress"];
    args.extend_from_slice(LOSSLESS);
    args.extend_from_slice(extra);
    let out = upscale(input, output, &args);
    ok(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().expect("progress lines");
    (
        serde_json::from_str(last).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `vsr upscale` SIGKILLed at about half way and run again resumes after the finished
/// segments, upscaling only what was left, and makes exactly the frames of an uninterrupted
/// run and of an unsegmented one.
#[test]
fn killed_runs_resume_with_identical_frames() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let clip = p("clip.mp4");
    keyframed_clip(&clip);
    let (whole, _) = finish(&clip, &p("whole.mp4"), &["--segment-seconds", "0"]);
    assert_eq!(whole["upscaledFrames"], 200);
    let (straight, _) = finish(&clip, &p("straight.mp4"), &[]);
    assert_eq!(straight["upscaledFrames"], 200);
    let reference = framemd5(&p("whole.mp4"));
    assert_eq!(reference.len(), 200);
    assert_eq!(framemd5(&p("straight.mp4")), reference);

    let out = p("resumed.mp4");
    kill_at(&clip, &out, 100);
    assert!(!out.exists());
    let (resumed, stderr) = finish(&clip, &out, &[]);
    let before = resumed["resumedFrames"].as_u64().unwrap();
    // Every segment finished before the kill is kept: at most the one in flight is redone
    // (the decoder runs a few frames ahead of the count).
    assert!(before >= 75, "resumed only {before} frames: {stderr}");
    assert!(
        stderr.contains(&format!("resuming: {before} of 200 frames")),
        "{stderr}"
    );
    assert_eq!(resumed["upscaledFrames"].as_u64().unwrap(), 200 - before);
    assert_eq!(framemd5(&out), reference);
    // The work directory goes with the completed output.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The finished segments of a killed run, then each way they must not be used: a segment
/// file cut short is redone; other settings, another input under the same name, and
/// `--no-resume` start over.
#[test]
fn damaged_or_foreign_work_is_never_joined() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let clip = p("clip.mp4");
    keyframed_clip(&clip);
    let out = p("out.mp4");
    let (_, _) = finish(&clip, &p("reference.mp4"), &[]);
    let reference = framemd5(&p("reference.mp4"));

    // A truncated segment is found and redone; the others are kept.
    kill_at(&clip, &out, 120);
    let work = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(".out.mp4.vsr-"))
        .expect("a work directory")
        .path();
    let first = work.join("seg-000000.mp4");
    let len = std::fs::metadata(&first).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (resumed, stderr) = finish(&clip, &out, &[]);
    assert!(stderr.contains("damaged"), "{stderr}");
    let before = resumed["resumedFrames"].as_u64().unwrap();
    assert!((50..200).contains(&before), "{before}: {stderr}");
    assert_eq!(resumed["upscaledFrames"].as_u64().unwrap(), 200 - before);
    assert_eq!(framemd5(&out), reference);

    // Other encoder settings: a new key, so nothing is resumed.
    std::fs::remove_file(&out).unwrap();
    kill_at(&clip, &out, 120);
    let (other, stderr) = finish(&clip, &out, &["--crf", "1"]);
    assert_eq!(other["resumedFrames"], 0, "{stderr}");
    assert_eq!(other["upscaledFrames"], 200);

    // Another input under the same name.
    std::fs::remove_file(&out).unwrap();
    kill_at(&clip, &out, 120);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=96x64:rate=25:duration=8",
        "-c:v",
        "libx264",
        "-g",
        "25",
        clip.to_str().unwrap(),
    ]);
    let (other, _) = finish(&clip, &out, &[]);
    assert_eq!(other["resumedFrames"], 0);
    assert_ne!(framemd5(&out), reference);

    // --no-resume.
    std::fs::remove_file(&out).unwrap();
    kill_at(&clip, &out, 120);
    let (fresh, stderr) = finish(&clip, &out, &["--no-resume"]);
    assert_eq!(fresh["resumedFrames"], 0);
    assert_eq!(fresh["upscaledFrames"], 200);
    assert!(stderr.contains("starting over"), "{stderr}");
}

/// A disk that fills up mid-run fails it with `insufficient_storage` and keeps the finished
/// segments; once there is room, the same command resumes after them. The output folder is
/// a small tmpfs in a private mount namespace (`unshare`, no privileges needed).
#[test]
fn a_full_disk_fails_the_run_and_keeps_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    keyframed_clip(&clip);
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let run = |log: &str| {
        format!(
            "{} upscale {} -o {}/out.mp4 --preset fast --threads 2 --json-progress {} > {}/{log} 2>&1; echo $? >> {}/{log}.rc",
            env!("CARGO_BIN_EXE_vsr"),
            clip.display(),
            small.display(),
            LOSSLESS.join(" "),
            dir.path().display(),
            dir.path().display(),
        )
    };
    // 5 MiB: the filler leaves room for a few segments; without it, for the rest and the
    // joined result.
    let script = format!(
        "set -e; mount -t tmpfs -o size=5m tmpfs {small}; head -c 3400000 /dev/zero > {small}/filler; set +e; {first}; ls -a {small} > {dir}/listing; rm {small}/filler; {second}; ls {small} >> {dir}/listing",
        small = small.display(),
        dir = dir.path().display(),
        first = run("first"),
        second = run("second"),
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    ok(&out);
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let first = read("first");
    assert_eq!(read("first.rc").trim(), "1", "{first}");
    assert!(first.contains("[insufficient_storage]"), "{first}");
    assert!(
        first.contains("run the same command again to resume"),
        "{first}"
    );
    let second = read("second");
    assert_eq!(read("second.rc").trim(), "0", "{second}");
    let last: serde_json::Value =
        serde_json::from_str(second.lines().rfind(|l| l.starts_with('{')).unwrap()).unwrap();
    assert!(last["resumedFrames"].as_u64().unwrap() >= 25, "{second}");
    assert_eq!(last["currentFrame"], 200);
    assert!(read("listing").contains("out.mp4"));
}
