//! What the upscaler does when its accelerator runs out of memory or fails: smaller tiles
//! first, then the CPU plan, and the frame comes out the same either way.
//!
//! The accelerator here is the CPU plan behind a memory limit, so that these paths run on
//! machines without a GPU: a window whose activations (as `Plan::peak_bytes` counts them)
//! exceed its capacity fails with `DeviceOutOfMemory`, as a GPU allocation would.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::load;
use vsr_runtime::{
    Executor, Graph, Isa, ModelSpec, Options, Plan, RunError, Shape, Tensor, Upscaler,
};

const MODEL: &str = "realesr-animevideov3-x2";

struct SmallDevice {
    plan: Plan,
    /// Bytes of activations it can hold.
    capacity: usize,
    /// Whether it reports its capacity as a tile budget (a device that knows its free memory).
    reports_budget: bool,
    /// Fails every run with an error other than memory.
    broken: bool,
    runs: AtomicUsize,
    out_of_memory: AtomicUsize,
}

impl SmallDevice {
    fn new(graph: &Graph, capacity: usize) -> Self {
        SmallDevice {
            plan: Plan::new(graph, Isa::detect(), 2).unwrap(),
            capacity,
            reports_budget: false,
            broken: false,
            runs: AtomicUsize::new(0),
            out_of_memory: AtomicUsize::new(0),
        }
    }
}

impl Executor for &'static SmallDevice {
    fn name(&self) -> String {
        "small-device".into()
    }

    fn run(
        &self,
        input: &Tensor,
        output: &mut dyn FnMut(usize, usize, usize) -> Tensor,
    ) -> Result<Tensor, RunError> {
        if self.broken {
            return Err(RunError::Device {
                device: self.name(),
                reason: "an illegal memory access was encountered".into(),
            });
        }
        let need = self.plan.peak_bytes(input.shape())?;
        if need > self.capacity {
            self.out_of_memory.fetch_add(1, Ordering::Relaxed);
            return Err(RunError::DeviceOutOfMemory {
                device: self.name(),
                reason: format!("{need} bytes needed, {} available", self.capacity),
            });
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        let result = self.plan.run(input.clone())?;
        let mut out = output(result.h, result.w, result.c);
        out.data.copy_from_slice(&result.data);
        self.plan.recycle(result);
        Ok(out)
    }

    fn tile_budget(&self) -> Option<usize> {
        self.reports_budget.then_some(self.capacity)
    }
}

/// A 200x150 frame with detail at several scales (gradients, stripes, a checkerboard).
fn frame() -> Tensor {
    let (h, w) = (150, 200);
    let mut data = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            data.push(0.5 + 0.4 * (fx * 0.07).sin() * (fy * 0.05).cos());
            data.push(if (x / 8 + y / 8) % 2 == 0 { 0.8 } else { 0.2 });
            data.push((fx + fy) / (w + h) as f32);
        }
    }
    Tensor::from_vec(h, w, 3, data)
}

fn upscaler(graph: &Graph) -> Upscaler {
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    Upscaler::new(graph, ModelSpec::padded(2), options).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!((a.h, a.w, a.c), (b.h, b.w, b.c));
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The device's memory for the whole padded frame, less one byte.
fn just_under_whole_frame(up: &Upscaler, input: &Tensor) -> usize {
    let pre = 2 * up.spec().prepadding;
    up.plan()
        .peak_bytes(Shape::image(input.h + pre, input.w + pre, 3))
        .unwrap()
        - 1
}

/// Leaked so that the upscaler (which owns a `Box<dyn Executor>`) and the test can both see
/// the counters.
fn device(device: SmallDevice) -> &'static SmallDevice {
    Box::leak(Box::new(device))
}

#[test]
fn out_of_memory_retries_with_smaller_tiles_and_remembers() {
    let graph = load(MODEL);
    let input = frame();
    let expected = upscaler(&graph).upscale(&input).unwrap();
    let cpu = upscaler(&graph);
    let small = device(SmallDevice::new(
        &graph,
        just_under_whole_frame(&cpu, &input),
    ));
    let up = upscaler(&graph).with_accelerator(Box::new(small));

    let first = up.upscale(&input).unwrap();
    assert_eq!(
        small.out_of_memory.load(Ordering::Relaxed),
        1,
        "whole frame"
    );
    let tiles = small.runs.load(Ordering::Relaxed);
    assert!(tiles >= 4, "the frame ran in tiles on the device: {tiles}");
    assert_eq!(up.device_name(), "small-device");
    let diff = max_diff(&first, &expected);
    assert!(
        diff < 1e-4,
        "tiled on the device vs whole on the CPU: {diff}"
    );

    // The next frame starts at the size that fitted: no second failure.
    let second = up.upscale(&input).unwrap();
    assert_eq!(small.out_of_memory.load(Ordering::Relaxed), 1);
    assert_eq!(small.runs.load(Ordering::Relaxed), 2 * tiles);
    assert!(max_diff(&second, &expected) < 1e-4);
}

#[test]
fn a_device_that_reports_its_memory_is_never_overrun() {
    let graph = load(MODEL);
    let input = frame();
    let expected = upscaler(&graph).upscale(&input).unwrap();
    let mut small = SmallDevice::new(&graph, just_under_whole_frame(&upscaler(&graph), &input));
    small.reports_budget = true;
    let small = device(small);
    let up = upscaler(&graph).with_accelerator(Box::new(small));
    let out = up.upscale(&input).unwrap();
    assert_eq!(small.out_of_memory.load(Ordering::Relaxed), 0);
    assert!(small.runs.load(Ordering::Relaxed) > 1, "tiled to fit");
    assert!(max_diff(&out, &expected) < 1e-4);
}

#[test]
fn too_little_memory_for_any_tile_falls_back_to_the_cpu() {
    let graph = load(MODEL);
    let input = frame();
    let expected = upscaler(&graph).upscale(&input).unwrap();
    let small = device(SmallDevice::new(&graph, 1 << 10));
    let up = upscaler(&graph).with_accelerator(Box::new(small));
    let out = up.upscale(&input).unwrap();
    // Whole frame, 100, 50, then the smallest tile (32): four failures, then the CPU.
    assert_eq!(small.out_of_memory.load(Ordering::Relaxed), 4);
    assert_eq!(small.runs.load(Ordering::Relaxed), 0);
    assert_eq!(up.device_name(), "cpu");
    assert!(max_diff(&out, &expected) < 1e-4);
}

#[test]
fn a_device_whose_free_memory_fits_no_tile_is_not_tried() {
    let graph = load(MODEL);
    let input = frame();
    let expected = upscaler(&graph).upscale(&input).unwrap();
    let mut small = SmallDevice::new(&graph, 1 << 10);
    small.reports_budget = true;
    let small = device(small);
    let up = upscaler(&graph).with_accelerator(Box::new(small));
    let out = up.upscale(&input).unwrap();
    assert_eq!(small.out_of_memory.load(Ordering::Relaxed), 0);
    assert_eq!(small.runs.load(Ordering::Relaxed), 0);
    assert_eq!(up.device_name(), "cpu");
    assert!(max_diff(&out, &expected) < 1e-4);
}

#[test]
fn a_device_error_other_than_memory_falls_back_to_the_cpu_at_once() {
    let graph = load(MODEL);
    let input = frame();
    let expected = upscaler(&graph).upscale(&input).unwrap();
    let mut small = SmallDevice::new(&graph, usize::MAX);
    small.broken = true;
    let up = upscaler(&graph).with_accelerator(Box::new(device(small)));
    let out = up.upscale(&input).unwrap();
    assert_eq!(up.device_name(), "cpu");
    assert_eq!(
        max_diff(&out, &expected),
        0.0,
        "the same CPU plan, whole frame"
    );
}
