//! Prints what the runtime makes of a model: layers, fused steps, tile context and memory
//! (with Real-ESRGAN's image conventions; sizes are of the network input).
//! `cargo run --release -p vsr-runtime --example inspect -- MODEL.param [WIDTH HEIGHT]`
#![allow(clippy::print_stdout, clippy::print_stderr)] // it reports what it measured

use std::path::PathBuf;

use vsr_runtime::{Graph, ModelSpec, Options, Shape, Upscaler};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let param = PathBuf::from(
        args.first()
            .ok_or("usage: inspect MODEL.param [WIDTH HEIGHT]")?,
    );
    let (w, h) = match (args.get(1), args.get(2)) {
        (Some(w), Some(h)) => (w.parse()?, h.parse()?),
        _ => (480, 270),
    };
    let graph = Graph::load(&param, &param.with_extension("bin"))?;
    let up = Upscaler::new(&graph, ModelSpec::padded(1), Options::default())?;
    let plan = up.plan();
    println!(
        "{}: {} layers, {} steps after fusion",
        param.display(),
        graph.nodes.len(),
        plan.step_count()
    );
    println!(
        "tile context {} px, tiling approximate: {}",
        up.tile_context(),
        up.tiling_is_approximate()
    );
    let input = Shape::image(h, w, 3);
    let out = plan.output_shape(input)?;
    println!(
        "{w}x{h} -> {}x{}, peak activations {} MiB",
        out.w,
        out.h,
        plan.peak_bytes(input)? >> 20
    );
    Ok(())
}
