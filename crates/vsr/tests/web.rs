//! The web page in real headless Chromium (Debian's package, driven by playwright-core from
//! `tests/web/e2e.mjs`) against the real server: upload, facts, preview, start, live progress,
//! download, the result's before/after, an error and a cancel, at 1280x800 and 390 px wide.
//! Screenshots of every step land in target/screenshots for people to look at.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a test reports what it measured

mod common;

use std::path::Path;
use std::process::Command;

use common::server::Server;
use common::testsrc_clip;

#[test]
fn web_page_end_to_end_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/web/e2e.mjs");
    assert!(
        root.join("tests/web/node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/web (make test installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    testsrc_clip(&p("small.mp4"), "160x90", 25, 2.0);
    testsrc_clip(&p("long.mp4"), "320x180", 25, 20.0);
    std::fs::write(p("notvideo.mp4"), "this is not a video\n".repeat(200)).unwrap();
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48",
        "-frames:v",
        "1",
        p("photo.jpg").to_str().unwrap(),
    ]);
    let server = Server::in_process(dir.path(), &[]);
    let screenshots = root.join("target/screenshots");
    let out = Command::new("node")
        .arg(&script)
        .args(["--url", &server.url("")])
        .arg("--video")
        .arg(p("small.mp4"))
        .arg("--bad")
        .arg(p("notvideo.mp4"))
        .arg("--long")
        .arg(p("long.mp4"))
        .arg("--image")
        .arg(p("photo.jpg"))
        .arg("--out")
        .arg(&screenshots)
        .output()
        .expect("node runs (make test installs nodejs)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");
    assert!(log.contains("all 7 steps passed"), "{log}");
    for shot in [
        "01-facts.png",
        "02-preview.png",
        "04-done.png",
        "05-error.png",
        "06-cancelled.png",
        "07-narrow.png",
        "08-image.png",
    ] {
        assert!(screenshots.join(shot).is_file(), "no screenshot {shot}");
    }
}

/// A result joined from many segments plays to its end in Chromium, every frame decoded:
/// the joins do not show.
#[test]
fn segmented_results_play_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=25:duration=4",
        "-c:v",
        "libx264",
        "-g",
        "10",
        p("clip.mp4").to_str().unwrap(),
    ]);
    // Eight segments of half a second.
    common::ok(&common::upscale(
        &p("clip.mp4"),
        &p("out.mp4"),
        &["--scale", "2", "--segment-seconds", "0.5"],
    ));
    let out = Command::new("node")
        .arg(root.join("tests/web/play.mjs"))
        .arg("--video")
        .arg(p("out.mp4"))
        .output()
        .expect("node runs (make test installs nodejs)");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("play: ok"), "{log}");
    assert!(log.contains("width=192"), "{log}");
    assert!(log.contains("frames=100"), "{log}");
}
