//! `vsr probe` on real and generated media: accepted files are described correctly, and every
//! kind of bad input is refused with its stable code, without following references.

mod common;

use common::{clip_with_tracks, ffmpeg, hevc10_clip, media_dir, odd_clip, rotated_clip};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `vsr probe --json`; Ok(info) or Err(code).
fn probe(path: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args(["probe", "--json"])
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    match v.get("error") {
        Some(e) => {
            assert_eq!(out.status.code(), Some(2));
            Err(e["code"].as_str().unwrap().to_string())
        }
        None => {
            assert!(out.status.success());
            Ok(v)
        }
    }
}

#[test]
fn real_clip_is_described() {
    let v = probe(&media_dir().join("bigbuckbunny.mp4")).unwrap();
    assert_eq!(
        (v["video"]["width"].as_u64(), v["video"]["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(v["video"]["codec"], "h264");
    assert_eq!(v["video"]["fps"], 25.0);
    assert_eq!(v["video"]["frames"], 132);
    assert_eq!(v["audioStreams"], 1);
}

#[test]
fn generated_clips_are_described() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);

    let odd = p("odd.mp4");
    odd_clip(&odd, 24, 1.0);
    let v = probe(&odd).unwrap();
    assert_eq!(
        (v["video"]["width"].as_u64(), v["video"]["height"].as_u64()),
        (Some(321), Some(181))
    );
    assert_eq!(v["video"]["frames"], 24);

    let hevc10 = p("hevc10.mkv");
    hevc10_clip(&hevc10, "128x72", 10, 1.0);
    let v = probe(&hevc10).unwrap();
    assert_eq!(v["video"]["codec"], "hevc");
    assert_eq!(v["video"]["bitDepth"], 10);
    assert_eq!(
        v["video"]["framesExact"], false,
        "Matroska does not store a frame count"
    );
    assert_eq!(v["video"]["frames"], 10);

    // Phone-style: the rotation is container metadata on an unrotated stream.
    let (upright, rotated) = rotated_clip(dir.path());
    assert_eq!(probe(&upright).unwrap()["video"]["rotation"], 0);
    let r = probe(&rotated).unwrap()["video"]["rotation"]
        .as_i64()
        .unwrap();
    assert!(r == 90 || r == 270, "rotation {r}");

    let tracks = clip_with_tracks(dir.path(), 1);
    let v = probe(&tracks).unwrap();
    assert_eq!(v["audioStreams"], 2);
    assert_eq!(v["subtitleCodecs"], serde_json::json!(["ass"]));
    assert_eq!(v["coverArt"], serde_json::json!([]));
    assert_eq!(v["attachments"], 0);
}

#[test]
fn bad_inputs_are_refused_with_stable_codes() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();

    assert_eq!(probe(&p("missing.mp4")), Err("not_found".into()));
    std::fs::write(p("empty.mp4"), b"").unwrap();
    assert_eq!(probe(&p("empty.mp4")), Err("empty_file".into()));
    std::fs::write(p("text.mp4"), "this is not a video\n".repeat(50)).unwrap();
    assert_eq!(probe(&p("text.mp4")), Err("unreadable_media".into()));

    let audio = p("audio.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        "-c:a",
        "aac",
        &s(&audio),
    ]);
    assert_eq!(probe(&audio), Err("no_video_stream".into()));

    // Truncated: the first 20 kB of a real clip (its index is at the end).
    let whole = std::fs::read(media_dir().join("bigbuckbunny.mp4")).unwrap();
    std::fs::write(p("truncated.mp4"), &whole[..20_000]).unwrap();
    assert!(
        probe(&p("truncated.mp4")).is_err(),
        "a truncated file is refused"
    );

    // Playlists and concat lists that point at a real local clip and at the network.
    let clip = media_dir().join("bigbuckbunny.mp4");
    std::fs::write(p("list.m3u8"), format!("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:5.0,\n{}\n#EXTINF:5.0,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n", clip.display())).unwrap();
    assert_eq!(probe(&p("list.m3u8")), Err("playlist_not_allowed".into()));
    std::fs::copy(p("list.m3u8"), p("playlist-renamed.mp4")).unwrap();
    assert_eq!(
        probe(&p("playlist-renamed.mp4")),
        Err("playlist_not_allowed".into())
    );
    std::fs::write(
        p("concat.txt"),
        format!("ffconcat version 1.0\nfile '{}'\n", clip.display()),
    )
    .unwrap();
    assert_eq!(probe(&p("concat.txt")), Err("playlist_not_allowed".into()));
    std::fs::write(p("bare-concat.mp4"), format!("file '{}'\n", clip.display())).unwrap();
    assert_eq!(
        probe(&p("bare-concat.mp4")),
        Err("playlist_not_allowed".into())
    );

    // A container outside the allowlist (WAV with a video-looking name) is not opened.
    let wav = p("sound.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        &s(&wav),
    ]);
    std::fs::rename(&wav, p("sound.mp4")).unwrap();
    assert_eq!(probe(&p("sound.mp4")), Err("unreadable_media".into()));

    // Over the limits: 7681 pixels wide (the default maximum is 7680).
    let wide = p("wide.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=size=7682x16:rate=1:duration=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        &s(&wide),
    ]);
    assert_eq!(probe(&wide), Err("over_limit".into()));

    // A directory is not a file.
    assert_eq!(probe(dir.path()), Err("not_a_file".into()));
}
