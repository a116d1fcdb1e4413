//! VSR's inference runtime: loads ncnn-format super-resolution models (`.param` + `.bin`) and
//! runs them on the CPU.
//!
//! The data flow is `param`/`weights` (bytes) -> [`graph::Graph`] (typed, validated IR) ->
//! [`plan::Plan`] (fused ops, prepared weights, buffer lifetimes) -> [`Plan::run`] on a
//! channels-last [`Tensor`]. [`upscaler::Upscaler`] adds the per-model image conventions
//! (padding, value range) and tiling for frames of any size.

pub mod anatomy;
mod buffers;
pub mod conventions;
pub mod error;
pub mod executor;
pub mod graph;
pub mod kernels;
pub mod param;
pub mod tensor;
pub mod weights;

pub use error::{LoadError, LoadErrorKind, RunError};
pub use executor::Executor;
pub use graph::Graph;
pub use kernels::{Isa, IsaLevel, UnsupportedIsa};
pub use tensor::Tensor;
pub mod ops;
pub mod plan;
pub mod roofline;

pub use plan::{Plan, StepCost, Tuning};
pub use tensor::Shape;
pub mod upscaler;

pub use conventions::{ModelSpec, PadMode};
pub use upscaler::{Options, Upscaler};
