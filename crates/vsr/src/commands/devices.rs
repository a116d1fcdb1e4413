//! `vsr devices`: the CPU and CUDA devices this machine offers, the CUDA libraries found,
//! whether the CUDA kernels compile with that NVRTC, and which device `--device` would pick,
//! with the reason.

use vsr_cuda::{inventory, select, DeviceRequest};
use vsr_runtime::Isa;

pub fn run(request: DeviceRequest) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu     {} cores, {} kernels", cores, Isa::detect().name());
    let inv = inventory();
    print!("{inv}");
    // A mismatched NVRTC (another CUDA major version) shows here, not in the middle of a job.
    if inv
        .libraries
        .iter()
        .any(|(what, p)| *what == "nvrtc" && p.is_some())
    {
        match std::panic::catch_unwind(vsr_cuda::compile_kernels) {
            Ok(Ok(_)) => println!("  kernels compile with this NVRTC"),
            Ok(Err(e)) => println!("  kernels do not compile with this NVRTC: {e}"),
            Err(_) => println!("  kernels: NVRTC failed to load"),
        }
    }
    match select(request, &inv) {
        Ok(s) => println!("selected: {}", s.reason),
        Err(e) => anyhow::bail!("{e} [{}]", vsr_media::code::Code::from(&e)),
    }
    Ok(())
}
