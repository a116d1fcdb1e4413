//! Helpers shared by the integration tests: fixture and model locations.
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
