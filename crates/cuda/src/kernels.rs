//! The executor's NVRTC kernels (`kernels.cu`): compiled when a plan is prepared, so the
//! binary needs no CUDA toolkit to build.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, LaunchConfig};
use cudarc::nvrtc::{CompileError, Ptx};

use crate::executor::CudaPlanError;

const SOURCE: &str = include_str!("kernels.cu");

/// Compiles the kernels to PTX. Needs NVRTC only, not a driver or a GPU: the tests check the
/// source on machines without one.
pub fn compile_kernels() -> Result<Ptx, CompileError> {
    cudarc::nvrtc::compile_ptx(SOURCE)
}

/// The kernels, loaded on one device.
pub(crate) struct Kernels {
    pub bias_act: CudaFunction,
    pub act: CudaFunction,
    pub binary: CudaFunction,
    pub axpby: CudaFunction,
    pub pixel_shuffle: CudaFunction,
    pub resample: CudaFunction,
    pub pad: CudaFunction,
    pub copy_channels: CudaFunction,
    pub crop: CudaFunction,
    pub channel_pool: CudaFunction,
    pub dense: CudaFunction,
    pub to_half: CudaFunction,
    pub to_float: CudaFunction,
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Kernels, CudaPlanError> {
        let module = ctx.load_module(compile_kernels()?)?;
        let f = |name: &str| module.load_function(name).map_err(CudaPlanError::from);
        Ok(Kernels {
            bias_act: f("bias_act")?,
            act: f("act")?,
            binary: f("binary")?,
            axpby: f("axpby")?,
            pixel_shuffle: f("pixel_shuffle")?,
            resample: f("resample")?,
            pad: f("pad")?,
            copy_channels: f("copy_channels")?,
            crop: f("crop")?,
            channel_pool: f("channel_pool")?,
            dense: f("dense")?,
            to_half: f("to_half")?,
            to_float: f("to_float")?,
        })
    }

    /// One thread per element.
    pub fn per_element(n: usize) -> LaunchConfig {
        LaunchConfig::for_num_elems(n as u32)
    }
}

#[cfg(test)]
mod emulated;
