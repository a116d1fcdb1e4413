//! Helpers shared by the `vsr` integration tests: the binary, test media and fixtures.
#![allow(dead_code)]

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
}
