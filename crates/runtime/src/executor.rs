//! Something other than the CPU plan that can run a network: an accelerator (vsr-cuda). The
//! upscaler keeps its padding and tiling, and the CPU plan as the fallback.

use crate::error::RunError;
use crate::tensor::Tensor;

pub trait Executor: Send + Sync {
    /// For logs: the device and how it runs the network.
    fn name(&self) -> String;
    /// Runs the network on a channels-last frame (0..1 values), as `Plan::run` does, writing
    /// the result into a tensor from `output(h, w, c)` (so the caller's buffers are reused).
    fn run(
        &self,
        input: &Tensor,
        output: &mut dyn FnMut(usize, usize, usize) -> Tensor,
    ) -> Result<Tensor, RunError>;

    /// How much activation memory, counted as `Plan::peak_bytes` counts it for the CPU, one
    /// tile may take for this executor to run it now (its free memory, converted); `None`
    /// when the device does not limit tiles beyond the CPU's budget. An estimate: a window
    /// that still does not fit fails with `RunError::DeviceOutOfMemory`, and the upscaler
    /// retries it in smaller tiles.
    fn tile_budget(&self) -> Option<usize> {
        None
    }
}
