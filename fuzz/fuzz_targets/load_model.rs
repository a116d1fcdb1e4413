//! Fuzzes the model loader, planner and convention inference: the input is a `.param` text, a
//! NUL byte, and the `.bin` bytes. Loading must return a value or an error, never panic or
//! allocate without bound; a loaded graph is planned, shape-checked, its conventions measured
//! and, when small, inferred (which runs it) and run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsr_runtime::conventions::{self, Geometry};
use vsr_runtime::{Graph, Isa, Plan, Shape, Tensor};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else { return };
    let bin = data.get(split + 1..).unwrap_or(&[]);
    let Ok(graph) = Graph::from_parts(text, bin) else { return };
    let Ok(plan) = Plan::new(&graph, Isa::portable(), 1) else { return };
    if let Ok(geometry) = Geometry::measure(&plan) {
        let _ = geometry.border();
    }
    // Inference runs the network on frames of up to a few hundred pixels a side.
    if !plan.peak_bytes(Shape::image(352, 352, 3)).is_ok_and(|b| b > 1 << 24) {
        let _ = conventions::infer(&graph, &plan);
    }
    let input = Shape::image(9, 11, 3);
    if plan.peak_bytes(input).is_ok_and(|b| b < 1 << 22) {
        let _ = plan.run(Tensor::zeros(9, 11, 3));
    }
});
