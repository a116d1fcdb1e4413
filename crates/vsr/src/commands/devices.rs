//! `vsr devices`: the CPU and CUDA devices this machine offers, the CUDA libraries found, and
//! which device `--device` would pick, with the reason.

use vsr_cuda::{inventory, select, DeviceRequest};
use vsr_runtime::Isa;

pub fn run(request: DeviceRequest) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu     {} cores, {} kernels", cores, Isa::detect().name());
    let inv = inventory();
    print!("{inv}");
    match select(request, &inv) {
        Ok(s) => println!("selected: {}", s.reason),
        Err(e) => anyhow::bail!("{e} [{}]", e.code()),
    }
    Ok(())
}
