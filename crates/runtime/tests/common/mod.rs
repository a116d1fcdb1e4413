//! Helpers shared by the integration tests: fixture and model locations, weights for graphs
//! built in a test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use vsr_runtime::{Graph, ModelSpec, PadMode};

pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("VSR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target/fixtures"))
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("VSR_MODELS_DIR")
        .map(PathBuf::from)
        .expect("set VSR_MODELS_DIR (make test does) to the fetched models")
}

pub fn manifest() -> Value {
    let path = fixtures_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate fixtures with `make fixtures`",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("manifest is JSON")
}

pub fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures_dir().join(name)).expect("fixture file");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn shape(v: &Value) -> (usize, usize, usize) {
    let s: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    (s[0], s[1], s[2])
}

pub fn spec_of(case: &Value) -> ModelSpec {
    let pad = &case["pad"];
    ModelSpec {
        scale: case["scale"].as_u64().unwrap() as usize,
        prepadding: case["prepadding"].as_u64().unwrap() as usize,
        align: case["pad_round_up_multiple"].as_u64().unwrap() as usize,
        pad_mode: if pad["mode"] == "replicate" {
            PadMode::Replicate
        } else {
            PadMode::Reflect
        },
        add_nearest_input: case["out_crop"]["add_nearest_input"].as_bool().unwrap(),
    }
}

pub fn load(model: &str) -> Graph {
    let dir = models_dir();
    Graph::load(
        &dir.join(format!("{model}.param")),
        &dir.join(format!("{model}.bin")),
    )
    .expect("model loads")
}

/// Where ncnn's Winograd and direct convolutions disagree by more than this, the reference
/// itself is ill-conditioned (float rounding amplified by the model).
const ILL_CONDITIONED: f32 = 1e-4;

/// How outputs are compared: as floats clamped to 0..1, or as the 8-bit levels a video gets.
#[derive(Clone, Copy, PartialEq)]
pub enum Compare {
    Clamped,
    Levels,
}

/// Compares on the images as displayed (CHW of `w` columns). Returns the largest error at
/// well-conditioned pixels, the largest error over the allowance at ill-conditioned ones, and
/// how many pixels are ill-conditioned.
///
/// A pixel is ill-conditioned where the reference disagrees with itself (ncnn Winograd vs ncnn
/// direct convolution) by more than `ILL_CONDITIONED` within 3 pixels of it: nowhere for every
/// model but SPAN, which turns fp32 rounding into ~1e-3 swings in the ringing it produces
/// around one sharp edge of the test image. There we allow the tolerance plus 8x the largest
/// such disagreement nearby.
pub fn compare(
    ours: &[f32],
    reference: &[f32],
    direct: &[f32],
    w: usize,
    tolerance: f32,
    how: Compare,
) -> (f32, f32, usize) {
    assert_eq!(ours.len(), reference.len());
    let clamp = |v: f32| v.clamp(0.0, 1.0);
    let shown = |v: f32| match how {
        Compare::Clamped => clamp(v),
        Compare::Levels => (clamp(v) * 255.0).round(),
    };
    let sensitivity: Vec<f32> = reference
        .iter()
        .zip(direct)
        .map(|(a, b)| (clamp(*a) - clamp(*b)).abs())
        .collect();
    let rows = ours.len() / w;
    let nearby = |i: usize| {
        let (r, c) = (i / w, i % w);
        let mut m = 0.0f32;
        for rr in r.saturating_sub(3)..(r + 4).min(rows) {
            for cc in c.saturating_sub(3)..(c + 4).min(w) {
                m = m.max(sensitivity[rr * w + cc]);
            }
        }
        m
    };
    let unit = if how == Compare::Levels { 255.0 } else { 1.0 };
    let (mut worst, mut worst_ill, mut ill) = (0.0f32, f32::NEG_INFINITY, 0);
    for i in 0..ours.len() {
        let d = (shown(ours[i]) - shown(reference[i])).abs();
        let s = nearby(i);
        if s > ILL_CONDITIONED {
            ill += 1;
            worst_ill = worst_ill.max(d - tolerance - 8.0 * s * unit);
        } else {
            worst = worst.max(d);
        }
    }
    (worst, worst_ill, ill)
}

/// An fp32-tagged block of `n` varied weights, then `biases` varied biases: every channel
/// different, so a channel read or written at the wrong offset shows.
pub fn weights(n: usize, biases: usize, seed: usize) -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec();
    let value = |i: usize| ((i * 37 + seed * 11) % 101) as f32 / 500.0 - 0.1;
    b.extend((0..n).flat_map(|i| value(i).to_le_bytes()));
    b.extend((0..biases).flat_map(|i| (value(i + 7) * 0.5).to_le_bytes()));
    b
}
