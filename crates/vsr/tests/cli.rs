//! The `vsr` binary end to end, on real images and the installed models.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a test reports what it measured

mod common;

use common::{ffmpeg, fixtures, ok, vsr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn upscale_image(input: &Path, output: &Path, model: &str) -> Output {
    vsr(&[
        "upscale-image",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        model,
    ])
}

/// A 91x71 RGB test pattern: odd in both directions, so models that need even or
/// multiple-of-4 sizes are padded (the lavfi source rounds its own size to even, hence the crop).
fn write_odd_image(path: &Path) {
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x80",
        "-vf",
        "format=rgb24,crop=91:71:1:1",
        "-frames:v",
        "1",
        path.to_str().unwrap(),
    ]);
    assert_eq!(read_png(path).0, 91, "the test image is odd-sized");
}

fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(std::fs::File::open(path).unwrap())
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// A real photo (a crop of a Big Buck Bunny frame) upscaled 4x matches ncnn's 8-bit output.
#[test]
fn upscale_image_matches_ncnn_within_one_level() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x4.png");
    let input = fixtures().join("bbb_crop.png");
    ok(&upscale_image(&input, &out, "realesr-animevideov3-x4"));
    let (w, h, ours) = read_png(&out);
    let (rw, rh, reference) = read_png(&fixtures().join("image_x4_ref.png"));
    assert_eq!((w, h), (rw, rh));
    assert_eq!((w, h), (512, 384));
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    let off = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
    println!(
        "max difference {worst} levels; {off} of {} values differ",
        ours.len()
    );
    assert!(worst <= 1, "max difference {worst} levels");
}

/// Every model family runs from the command line on a real image and gives a plausible picture.
#[test]
fn upscale_image_works_for_every_family() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures().join("bbb_crop.png");
    let (iw, ih, src) = read_png(&input);
    for (model, scale) in [
        ("realesr-animevideov3-x2", 2),
        ("realesrgan-x4plus-anime", 4),
        ("realesrgan-x4plus", 4),
        ("realcugan-se-up3x", 3),
        ("realcugan-pro-up2x", 2),
        ("realcugan-se-up4x", 4),
        ("waifu2x-cunet-up2x", 2),
        ("waifu2x-photo-up2x", 2),
        ("spanx4-ch48", 4),
    ] {
        let out = dir.path().join(format!("{model}.png"));
        ok(&upscale_image(&input, &out, model));
        let (w, h, px) = read_png(&out);
        assert_eq!((w, h), (iw * scale, ih * scale), "{model}");
        // Close to a nearest-neighbour upscale on average: a broken network gives noise or black.
        let mut total = 0u64;
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let a = px[((y * w + x) * 3 + c) as usize];
                    let b = src[(((y / scale) * iw + x / scale) * 3 + c) as usize];
                    total += a.abs_diff(b) as u64;
                }
            }
        }
        let mean = total as f64 / px.len() as f64;
        println!("{model}: mean difference from nearest-neighbour {mean:.2} levels");
        assert!(
            mean < 12.0,
            "{model}: output does not resemble the input ({mean:.1} levels)"
        );
    }
}

#[test]
fn bad_requests_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures().join("bbb_crop.png");
    let out = dir.path().join("o.png");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let tiff = dir.path().join("o.tiff");
    let cases: [(&[&str], &str); 7] = [
        (
            &["upscale-image", i, "-o", i],
            "the output is the input itself",
        ),
        (
            &["upscale-image", i, "-o", tiff.to_str().unwrap()],
            ".tiff is not a format written here",
        ),
        (&["upscale", i, "-o", "x.mp4", "--frames", "0"], "--frames"),
        (
            &["upscale-image", i, "-o", o, "--model", "no-such-model"],
            "unknown model",
        ),
        (
            &[
                "upscale-image",
                i,
                "-o",
                o,
                "--model",
                "realesr-animevideov3-x2",
                "--scale",
                "4",
            ],
            "--scale 4",
        ),
        (
            &["upscale-image", "/nonexistent.png", "-o", o],
            "nonexistent.png",
        ),
        (&["models", "fetch", "no-such-model"], "unknown model"),
    ];
    for (args, expected) in cases {
        let r = vsr(args);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // A text file named .png.
    let fake = dir.path().join("fake.png");
    std::fs::write(&fake, "not an image").unwrap();
    let r = vsr(&["upscale-image", fake.to_str().unwrap(), "-o", o]);
    assert!(!r.status.success() && !String::from_utf8_lossy(&r.stderr).contains("panicked"));
    assert!(!out.exists(), "no output is left behind on failure");
    assert!(
        !tiff.exists(),
        "no folder is made for a format we do not write"
    );
    // Two inputs whose results would have the same name: refused before any is written.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::copy(&input, other.join("bbb_crop.png")).unwrap();
    let into = dir.path().join("into");
    let r = vsr(&[
        "upscale-image",
        i,
        other.join("bbb_crop.png").to_str().unwrap(),
        "-o",
        into.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && stderr.contains("would both be written to"),
        "{stderr}"
    );
    assert!(!into.exists());
    // Animations (APNG, animated WebP): refused, not cut to their first frame.
    for (name, muxing) in [("anim.png", "-f apng"), ("anim.webp", "-c:v libwebp_anim")] {
        let anim = dir.path().join(name);
        let args = format!("-f lavfi -i testsrc=size=32x32:rate=5 -frames:v 3 {muxing}");
        let mut args: Vec<&str> = args.split(' ').collect();
        args.push(anim.to_str().unwrap());
        ffmpeg(&args);
        let result = dir.path().join(format!("big-{name}"));
        let r = vsr(&[
            "upscale-image",
            anim.to_str().unwrap(),
            "-o",
            result.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{name}: {stderr}");
        assert!(stderr.contains("an animated image"), "{name}: {stderr}");
        assert!(
            stderr.contains("failed [unsupported_media_type]"),
            "{name}: {stderr}"
        );
        assert!(!result.exists(), "{name}");
    }
}

#[test]
fn models_list_shows_installed_models() {
    let out = vsr(&["models", "list", "--json"]);
    ok(&out);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 40);
    let anime = rows
        .iter()
        .find(|r| r["name"] == "realesr-animevideov3-x4")
        .unwrap();
    assert_eq!(anime["installed"], true);
    assert_eq!(anime["scale"], 4);
    assert_eq!(anime["licence"], "BSD-3-Clause");
}

#[test]
fn bench_prints_a_median() {
    let out = vsr(&[
        "bench",
        "--model",
        "realesr-animevideov3-x2",
        "--width",
        "64",
        "--height",
        "48",
        "--runs",
        "3",
    ]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap();
    let v: f64 = last
        .strip_prefix("median_s_per_frame=")
        .expect("last line format")
        .parse()
        .unwrap();
    assert!(v > 0.0);
}

/// A model given by path (as Video2X or Upscayl users have them) with a config file for its
/// conventions gives exactly what the same model gives by name.
#[test]
fn custom_model_by_path_with_config() {
    let dir = tempfile::tempdir().unwrap();
    let models = PathBuf::from(std::env::var_os("VSR_MODELS_DIR").expect("VSR_MODELS_DIR"));
    for ext in ["param", "bin"] {
        std::fs::copy(
            models.join(format!("realcugan-se-up2x.{ext}")),
            dir.path().join(format!("my-cugan.{ext}")),
        )
        .unwrap();
    }
    let config = dir.path().join("my-cugan.json");
    std::fs::write(
        &config,
        r#"{"scale": 2, "prepadding": 18, "align": 2, "padMode": "reflect"}"#,
    )
    .unwrap();
    let input = fixtures().join("bbb_crop.png");
    let (by_name, by_path) = (dir.path().join("name.png"), dir.path().join("path.png"));
    ok(&upscale_image(&input, &by_name, "realcugan-se-up2x"));
    let param = dir.path().join("my-cugan.param");
    let out = Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args([
            "upscale-image",
            input.to_str().unwrap(),
            "-o",
            by_path.to_str().unwrap(),
        ])
        .env("MODEL_PATH", &param)
        .env("MODEL_CONFIG_PATH", &config)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(read_png(&by_name), read_png(&by_path));
    // A bad config is a clear error.
    std::fs::write(&config, r#"{"scale": 2, "padMode": "wrap"}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args([
            "upscale-image",
            input.to_str().unwrap(),
            "-o",
            by_path.to_str().unwrap(),
            "--model",
            param.to_str().unwrap(),
        ])
        .env("MODEL_CONFIG_PATH", &config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("padMode"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `vsr devices` lists what the machine has; a CUDA device that cannot be used is refused with
/// a stable code, and `auto` says which device it picked and why.
#[test]
fn devices_and_device_selection() {
    let out = vsr(&["devices"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cpu ") && text.contains("selected:"),
        "{text}"
    );
    // `make test` points VSR_CUDA_LIB_PATH at pip's NVRTC: the kernels are checked with it.
    if std::env::var_os("VSR_CUDA_LIB_PATH").is_some() {
        assert!(text.contains("kernels compile with this NVRTC"), "{text}");
    }
    let out = vsr(&["devices", "--device", "cuda:7"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[cuda_unavailable]"));
    let out = vsr(&["devices", "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not auto, cpu, cuda or cuda:N"));

    // The service takes a set of GPUs, one worker each (placement is tested with two fake
    // GPUs in vsr-cuda); a machine without one refuses `cuda:all` at start, with the code.
    let serve = |device: &str, args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        Command::new(env!("CARGO_BIN_EXE_vsr"))
            .args(["serve", "--port", "0"])
            .args(args)
            .env("VSR_DEVICE", device)
            .env("UPLOAD_FOLDER", dir.path().join("up"))
            .env("PROCESSED_FOLDER", dir.path().join("done"))
            .output()
            .unwrap()
    };
    let out = serve("cuda:0,cuda:1", &["--print-config"]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("device = \"cuda:0,1\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    if !vsr_cuda::inventory().gpus.is_ok_and(|g| !g.is_empty()) {
        let out = serve("cuda:all", &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("cuda:all: no CUDA device") && stderr.contains("[cuda_unavailable]"),
            "{stderr}"
        );
    }
}

/// Model files named as their wheels name them (`REALCUGAN_SE_UP2X.param`, ...), given by
/// path, are recognised by content: every model of the manifest upscales an odd-size image
/// exactly as the same model under its catalog name does, with a note saying so. Changed by
/// one byte that leaves the graph as it is (a trailing newline), the manifest's hashes no
/// longer match and the conventions are inferred from the graph: they are the catalog's, and
/// the output is again the same.
#[test]
fn model_files_by_path_get_their_catalog_conventions() {
    let config = vsr_media::config::Config::load(None);
    let dir = tempfile::tempdir().unwrap();
    let models = common::models_dir();
    let input = dir.path().join("odd.png");
    write_odd_image(&input);
    // Every model of the manifest, under the file name its wheel gives it.
    for model in &vsr_media::catalog::Catalog::builtin().models {
        let name = model.name.as_str();
        let file = std::path::Path::new(&model.param.path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for ext in ["param", "bin"] {
            std::fs::copy(
                models.join(format!("{name}.{ext}")),
                dir.path().join(format!("{file}.{ext}")),
            )
            .unwrap();
        }
        let (by_name, by_path) = (dir.path().join("name.png"), dir.path().join("path.png"));
        ok(&upscale_image(&input, &by_name, name));
        let param = dir.path().join(format!("{file}.param"));
        let out = upscale_image(&input, &by_path, param.to_str().unwrap());
        ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("the catalog's {name}")),
            "{name}: no note: {stderr}"
        );
        assert!(
            read_png(&by_name) == read_png(&by_path),
            "{name}: outputs differ"
        );
        // Unknown to the manifest now: inferred.
        let mut text = std::fs::read(&param).unwrap();
        text.push(b'\n');
        std::fs::write(&param, text).unwrap();
        let unknown = vsr_media::model_ref::ModelRef::resolve(
            Some(param.to_str().unwrap()),
            &config,
            vsr_media::catalog::Catalog::builtin(),
        )
        .unwrap();
        assert_eq!(unknown.recognised_as, None, "{name}");
        assert_eq!(
            unknown.load().unwrap().spec,
            model.spec(),
            "{name}: inferred"
        );
        let out = upscale_image(&input, &by_path, param.to_str().unwrap());
        ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("note: ") && stderr.contains("conventions inferred from the graph"),
            "{name}: no note: {stderr}"
        );
        assert!(
            read_png(&by_name) == read_png(&by_path),
            "{name}: outputs differ with inferred conventions"
        );
        for ext in ["param", "bin"] {
            let _ = std::fs::remove_file(dir.path().join(format!("{file}.{ext}")));
        }
    }
}

/// `--model` takes a folder laid out as realcugan-, waifu2x- and realesrgan-ncnn-vulkan ship
/// them: for every scale, denoise level and preserve-details choice, the file those tools pick
/// runs (its conventions recognised from the manifest).
#[test]
fn reference_tool_folders_pick_the_right_file() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::models_dir();
    let input = dir.path().join("tiny.png");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=24x16",
        "-frames:v",
        "1",
        input.to_str().unwrap(),
    ]);
    // (folder, file as the tool names it, catalog model, scale, denoise, preserve details)
    let mut cases: Vec<(&str, String, String, u32, u8, bool)> = Vec::new();
    for (folder, kind) in [("models-se", "se"), ("models-pro", "pro")] {
        for (s, variants) in [
            (
                2,
                &["", "conservative", "denoise1x", "denoise2x", "denoise3x"][..],
            ),
            (3, &["", "conservative", "denoise3x"][..]),
            (4, &["", "conservative", "denoise3x"][..]),
        ] {
            if kind == "pro" && s == 4 {
                continue;
            }
            for v in variants {
                if kind == "pro" && (*v == "denoise1x" || *v == "denoise2x") {
                    continue;
                }
                let file = match *v {
                    "" => format!("up{s}x-no-denoise"),
                    v => format!("up{s}x-{v}"),
                };
                let name = match *v {
                    "" => format!("realcugan-{kind}-up{s}x"),
                    v => format!("realcugan-{kind}-up{s}x-{v}"),
                };
                let denoise = v
                    .strip_prefix("denoise")
                    .map_or(0, |d| d[..1].parse().unwrap());
                cases.push((folder, file, name, s, denoise, *v == "conservative"));
            }
        }
    }
    for (folder, kind) in [
        ("models-cunet", "cunet"),
        ("models-upconv_7_anime_style_art_rgb", "anime"),
    ] {
        cases.push((
            folder,
            "scale2.0x_model".into(),
            format!("waifu2x-{kind}-up2x"),
            2,
            0,
            false,
        ));
        for n in 1..=3u8 {
            cases.push((
                folder,
                format!("noise{n}_scale2.0x_model"),
                format!("waifu2x-{kind}-up2x-denoise{n}x"),
                2,
                n,
                false,
            ));
        }
    }
    for s in [2, 3, 4] {
        let name = format!("realesr-animevideov3-x{s}");
        cases.push(("models", name.clone(), name, s, 0, false));
    }
    for (folder, file, name, ..) in &cases {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        for ext in ["param", "bin"] {
            std::fs::copy(
                models.join(format!("{name}.{ext}")),
                dir.path().join(folder).join(format!("{file}.{ext}")),
            )
            .unwrap();
        }
    }
    for (folder, file, name, scale, denoise, preserve) in &cases {
        let pack = dir.path().join(folder);
        let out = dir.path().join("out.png");
        let (scale, denoise) = (scale.to_string(), denoise.to_string());
        let mut args = vec![
            "upscale-image",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--model",
            pack.to_str().unwrap(),
            "--scale",
            &scale,
            "--denoise",
            &denoise,
        ];
        if *preserve {
            args.push("--preserve-details");
        }
        let run = vsr(&args);
        ok(&run);
        let stderr = String::from_utf8_lossy(&run.stderr);
        let case = format!("{folder} scale {scale} denoise {denoise} preserve {preserve}");
        assert!(
            stderr.contains(&format!("{file}.param for these settings")),
            "{case}: not {file}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("the catalog's {name}")),
            "{case}: {stderr}"
        );
        assert!(
            !stderr.contains("hqdn3d") && !stderr.contains("blend"),
            "{case}: {stderr}"
        );
        let (w, h, _) = read_png(&out);
        assert_eq!(
            (w, h),
            (
                24 * scale.parse::<u32>().unwrap(),
                16 * scale.parse::<u32>().unwrap()
            ),
            "{case}"
        );
    }
    // A pair the folder does not have is a clear error naming what it has.
    let run = vsr(&[
        "upscale-image",
        input.to_str().unwrap(),
        "-o",
        dir.path().join("x.png").to_str().unwrap(),
        "--model",
        dir.path().join("models-pro").to_str().unwrap(),
        "--scale",
        "4",
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("up4x-no-denoise") && stderr.contains("it has"),
        "{stderr}"
    );
}

/// A PNG's size, bit depth and colour type, from its header.
fn png_kind(path: &Path) -> (u32, u32, png::BitDepth, png::ColorType) {
    let reader = png::Decoder::new(std::fs::File::open(path).unwrap())
        .read_info()
        .unwrap();
    let info = reader.info();
    (info.width, info.height, info.bit_depth, info.color_type)
}

/// Images as people have them: JPEG, WebP, 16-bit PNG (kept at 16 bits) and PNG with alpha
/// (kept, upscaled beside the colour), a folder of them with two corrupt files among them:
/// every good one is done, each bad one is named, and the exit status says some failed.
#[test]
fn upscale_image_takes_jpeg_webp_16_bit_alpha_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let make = |name: &str, filter: &str, extra: &[&str]| {
        let path = inputs.join(name);
        let mut args = vec!["-f", "lavfi", "-i", filter, "-frames:v", "1"];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        common::ffmpeg(&args);
    };
    let source = "testsrc2=size=40x30";
    make("photo.jpg", source, &[]);
    make("web.webp", source, &["-c:v", "libwebp", "-lossless", "1"]);
    make("deep.png", source, &["-pix_fmt", "rgb48be"]);
    make(
        "clear.png",
        &format!("{source},format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='6*X'"),
        &["-pix_fmt", "rgba"],
    );
    for n in 0..14 {
        std::fs::copy(
            inputs.join("photo.jpg"),
            inputs.join(format!("copy{n:02}.jpg")),
        )
        .unwrap();
    }
    std::fs::write(
        inputs.join("broken.jpg"),
        b"\xff\xd8\xff\xe0 not a JPEG after all",
    )
    .unwrap();
    let deep = std::fs::read(inputs.join("deep.png")).unwrap();
    std::fs::write(inputs.join("cut.png"), &deep[..deep.len() / 2]).unwrap();
    assert_eq!(std::fs::read_dir(&inputs).unwrap().count(), 20);

    let out = dir.path().join("out");
    let r = vsr(&[
        "upscale-image",
        inputs.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "realesr-animevideov3-x2",
    ]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{stderr}");
    assert!(
        stderr.contains("18 of 20 images upscaled") && stderr.contains("2 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.jpg") && stderr.contains("cut.png"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 18);

    let (w, h, depth, _) = png_kind(&out.join("deep.png"));
    assert_eq!((w, h, depth), (80, 60, png::BitDepth::Sixteen));
    let (_, _, _, color) = png_kind(&out.join("clear.png"));
    assert_eq!(color, png::ColorType::Rgba);
    // The alpha ramp (6 levels a source column) survives: 3 a column at twice the width.
    let mut reader = png::Decoder::new(std::fs::File::open(out.join("clear.png")).unwrap())
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    let alpha_at = |x: usize| buf[(30 * 80 + x) * 4 + 3] as i32;
    assert!((alpha_at(40) - 120).abs() <= 4, "alpha {}", alpha_at(40));
    assert!(alpha_at(70) > alpha_at(10) + 150);
    // JPEG and WebP results are what their names say, at twice the size.
    for name in ["photo.jpg", "web.webp", "copy00.jpg"] {
        let probe = common::ffprobe(
            &[
                "-show_entries",
                "stream=codec_name,width,height",
                "-of",
                "csv=p=0",
            ],
            &out.join(name),
        );
        assert!(probe.contains("80,60"), "{name}: {probe}");
    }
    // One file to one file, in another format.
    let single = dir.path().join("one.webp");
    ok(&vsr(&[
        "upscale-image",
        inputs.join("photo.jpg").to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
        "--model",
        "realesr-animevideov3-x2",
    ]));
    assert!(single.is_file());
}

/// A network by path whose demands its graph does not settle (it goes down and up by 3, no
/// power-of-two alignment) is refused with a stable code naming the config keys to give;
/// given them, it runs. Conventions in a config file that do not fit a network are refused
/// naming the key, never as a shape mismatch inside the network. `vsr models inspect` tells
/// both models' demands.
#[test]
fn model_conventions_are_inferred_asked_for_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("odd.png");
    write_odd_image(&input);
    // Down by 3 and back up, added to the input.
    let strided = dir.path().join("strided.param");
    std::fs::write(
        &strided,
        "7767517\n5 6\nInput in 0 1 data\nSplit sp 1 2 data a b\n\
         Convolution down 1 1 a d 0=3 1=3 3=3 5=1 6=81\n\
         Deconvolution up 1 1 d u 0=3 1=3 3=3 5=1 6=81\n\
         BinaryOp add 2 1 u b out 0=0\n",
    )
    .unwrap();
    let mut bin = Vec::new();
    for _ in 0..2 {
        bin.extend(0u32.to_le_bytes());
        bin.extend((0..81).flat_map(|_| 0.01f32.to_le_bytes()));
        bin.extend((0..3).flat_map(|_| 0f32.to_le_bytes()));
    }
    std::fs::write(strided.with_extension("bin"), bin).unwrap();
    let output = dir.path().join("out.png");
    let run = |param: &Path, config: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vsr"));
        cmd.args(["upscale-image", input.to_str().unwrap(), "-o"])
            .arg(&output)
            .arg("--model")
            .arg(param)
            .env_remove("MODEL_CONFIG_PATH");
        if let Some(config) = config {
            cmd.env("MODEL_CONFIG_PATH", config);
        }
        cmd.output().unwrap()
    };
    let refused = |out: &Output, words: &[&str]| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("[model_conventions]"), "{stderr}");
        assert!(!stderr.contains("cannot broadcast"), "{stderr}");
        for w in words {
            assert!(stderr.contains(w), "{w:?} not in {stderr}");
        }
    };
    refused(
        &run(&strided, None),
        &[
            "strided.param",
            "follow no alignment",
            "scale, prepadding, align",
            "MODEL_CONFIG_PATH",
        ],
    );
    let config = dir.path().join("strided.toml");
    std::fs::write(&config, "scale = 1\nprepadding = 12\nalign = 3\n").unwrap();
    ok(&run(&strided, Some(&config)));
    assert_eq!(read_png(&output).0, 91);

    // Real-CUGAN, unknown to the manifest (one byte more), told Real-ESRGAN's border.
    let models = common::models_dir();
    let cugan = dir.path().join("cugan.param");
    let mut text = std::fs::read(models.join("realcugan-se-up2x.param")).unwrap();
    text.push(b'\n');
    std::fs::write(&cugan, text).unwrap();
    std::fs::copy(
        models.join("realcugan-se-up2x.bin"),
        cugan.with_extension("bin"),
    )
    .unwrap();
    let config = dir.path().join("cugan.json");
    std::fs::write(&config, r#"{"prepadding": 10}"#).unwrap();
    refused(
        &run(&cugan, Some(&config)),
        &["cugan.json", "prepadding 10 does not fit", "border of 18"],
    );
    // Left to inference, it runs.
    ok(&run(&cugan, None));
    assert_eq!(read_png(&output).0, 182);

    let out = vsr(&["models", "inspect", cugan.to_str().unwrap()]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "conventions:     scale 2, prepadding 18, align 2, padMode reflect, addNearestInput false (inferred)",
        "crops 36 output px per side",
        "layers:          55: Convolution 18,",
        "global pooling",
        "MFLOP per input pixel",
        "cuda executor:   runs it",
    ] {
        assert!(text.contains(line), "{line:?} not in {text}");
    }
    let out = vsr(&["models", "inspect", "--json", strided.to_str().unwrap()]);
    ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["conventions"]["Err"]
            .as_str()
            .is_some_and(|e| e.contains("follow no alignment")),
        "{report}"
    );
    assert_eq!(report["layers"][0], serde_json::json!(["Input", 1]));
    assert_eq!(report["receptiveRadius"], 2);
}
