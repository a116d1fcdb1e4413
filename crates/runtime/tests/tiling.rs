//! Tiled output against untiled output on the fixture images, for every model family.
//!
//! Convolutional models are exact up to float summation order (each tile carries its receptive
//! field as context). Models with global pooling (Real-CUGAN, waifu2x cunet) see per-tile
//! statistics when tiled, so they only run tiled when a frame does not fit the memory budget;
//! their measured deviation is bounded here and documented in docs/models.md. SPAN amplifies
//! float rounding ~1000x around one sharp edge of the test image (see the golden tests), so
//! summation-order differences show there too.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a test reports what it measured

mod common;

use common::{load, manifest, read_f32, shape, spec_of};
use vsr_runtime::{Options, Tensor, Upscaler};

const TILE: usize = 24;

#[test]
fn tiled_output_matches_untiled() {
    let m = manifest();
    let mut failures = Vec::new();
    for case in m["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().ends_with("_64x48"))
    {
        let name = case["name"].as_str().unwrap();
        let (c, h, w) = shape(&case["in_shape"]);
        let input = Tensor::from_chw(c, h, w, &read_f32(case["input"].as_str().unwrap()));
        let up = Upscaler::new(
            &load(case["model"].as_str().unwrap()),
            spec_of(case),
            Options {
                threads: 2,
                ..Options::default()
            },
        )
        .unwrap();
        let whole = up.upscale_with_tile(&input, usize::MAX).unwrap();
        let tiled = up.upscale_with_tile(&input, TILE).unwrap();
        let diff = whole
            .data
            .iter()
            .zip(&tiled.data)
            .map(|(a, b)| (a.clamp(0.0, 1.0) - b.clamp(0.0, 1.0)).abs())
            .fold(0.0, f32::max);
        let mean = whole
            .data
            .iter()
            .zip(&tiled.data)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / whole.len() as f32;
        let limit = match case["family"].as_str().unwrap() {
            _ if up.tiling_is_approximate() => 0.5,
            "span" => 5e-3,
            _ => 1e-4,
        };
        println!("{name:40} tiles {TILE}px context {:3}px: max diff {diff:.2e}, mean {mean:.2e} (limit {limit})", up.tile_context());
        if diff > limit {
            failures.push(format!("{name}: tiled differs from untiled by {diff}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Frames smaller than the models' borders and alignment (1x1, 33x1, 2x3) still upscale, untiled
/// and tiled, for every family.
#[test]
fn tiny_and_thin_frames_upscale() {
    let m = manifest();
    let cases = m["cases"].as_array().unwrap();
    let mut seen = std::collections::HashSet::new();
    for case in cases
        .iter()
        .filter(|c| seen.insert(c["model"].as_str().unwrap().to_string()))
    {
        let model = case["model"].as_str().unwrap();
        if model == "realesrgan-x4plus" {
            continue; // same graph family as x4plus-anime, 4x slower
        }
        let spec = spec_of(case);
        let up = Upscaler::new(
            &load(model),
            spec.clone(),
            Options {
                threads: 2,
                ..Options::default()
            },
        )
        .unwrap();
        for (h, w) in [(1, 1), (1, 33), (2, 3), (17, 1)] {
            let frame = Tensor::from_vec(
                h,
                w,
                3,
                (0..h * w * 3).map(|i| (i % 7) as f32 / 7.0).collect(),
            );
            for tile in [usize::MAX, 1] {
                let out = up
                    .upscale_with_tile(&frame, tile)
                    .unwrap_or_else(|e| panic!("{model} {w}x{h}: {e}"));
                assert_eq!(
                    (out.h, out.w),
                    (h * spec.scale, w * spec.scale),
                    "{model} {w}x{h}"
                );
                assert!(out.data.iter().all(|v| v.is_finite()), "{model} {w}x{h}");
            }
        }
    }
}
