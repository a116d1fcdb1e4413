//! Fuzzes the model loader and planner: the input is a `.param` text, a NUL byte, and the
//! `.bin` bytes. Loading must return a value or an error, never panic or allocate without bound;
//! a loaded graph is planned, shape-checked and, when small, run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsr_runtime::{Graph, Isa, Plan, Shape, Tensor};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else { return };
    let bin = data.get(split + 1..).unwrap_or(&[]);
    let Ok(graph) = Graph::from_parts(text, bin) else { return };
    let Ok(plan) = Plan::new(&graph, Isa::Portable, 1) else { return };
    let input = Shape::image(9, 11, 3);
    if plan.peak_bytes(input).is_ok_and(|b| b < 1 << 22) {
        let _ = plan.run(Tensor::zeros(9, 11, 3));
    }
});
