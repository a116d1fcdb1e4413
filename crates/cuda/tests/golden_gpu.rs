//! Every model family on a real GPU against ncnn's fixtures (`make fixtures`): the 8-bit
//! output within 2 levels of ncnn's (fp16 tolerance), and the frame really run on the GPU,
//! not on the CPU fallback. Ignored by default (CI has no GPU); on a machine with one:
//!
//!     cargo test --release -p vsr-cuda --test golden_gpu -- --ignored --nocapture
//!
//! or, where there is no Rust toolchain, the bundle `tools/device_bundle.sh` makes.
//! Cases whose model is not in `VSR_MODELS_DIR` are listed and skipped (the bundle carries
//! the models in parts); at least one must run.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a test reports what it measured

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use common::{compare, load, manifest, models_dir, read_f32, shape, spec_of, Compare};
use vsr_cuda::CudaPlan;
use vsr_runtime::{Options, Tensor, Upscaler};

/// 8-bit levels.
const TOLERANCE: f32 = 2.0;

#[test]
#[ignore = "needs an NVIDIA GPU: run with --ignored where there is one"]
fn every_family_matches_ncnn_on_the_gpu() {
    let m = manifest();
    let (mut failures, mut skipped, mut ran) = (Vec::new(), Vec::new(), 0);
    for case in m["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap();
        let model = case["model"].as_str().unwrap();
        if !models_dir().join(format!("{model}.bin")).exists() {
            skipped.push(name.to_string());
            continue;
        }
        let (c, h, w) = shape(&case["in_shape"]);
        let input = Tensor::from_chw(c, h, w, &read_f32(case["input"].as_str().unwrap()));
        let (_, _, ow) = shape(&case["out_shape"]);
        let want = read_f32(case["output"].as_str().unwrap());
        let want_direct = read_f32(case["output_direct"].as_str().unwrap());
        let graph = load(model);
        let plan = CudaPlan::new(&graph, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
        let up = Upscaler::new(&graph, spec_of(case), Options::default())
            .expect("upscaler")
            .with_accelerator(Box::new(plan));
        let got = up.upscale(&input).expect("runs");
        let device = up.device_name();
        let (diff, excess, ill) = compare(
            &got.to_chw(),
            &want,
            &want_direct,
            ow,
            TOLERANCE,
            Compare::Levels,
        );
        println!("{name:45} {device}: max {diff} levels; {ill} ill-conditioned pixels, excess {excess:.1}");
        if !device.starts_with("cuda") {
            failures.push(format!("{name}: ran on {device}, not the GPU"));
        } else if diff > TOLERANCE || excess > 0.0 || ill * 10 > want.len() {
            failures.push(format!(
                "{name}: max {diff} levels, {ill} ill-conditioned pixels with excess {excess}"
            ));
        }
        ran += 1;
    }
    if !skipped.is_empty() {
        println!("skipped (model not in this bundle): {}", skipped.join(", "));
    }
    assert!(
        ran > 0,
        "no case ran: no model of the fixtures in {}",
        models_dir().display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
