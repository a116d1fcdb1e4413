//! The NVRTC kernels compile, on any machine: NVRTC needs no driver or GPU. It comes from
//! `VSR_CUDA_LIB_PATH` (`make test` unpacks pip's nvidia-cuda-nvrtc wheel there), so a
//! syntax or type error in `kernels.cu` fails CI instead of surfacing on the first GPU.

#[test]
fn kernels_compile_with_nvrtc() {
    let inventory = vsr_cuda::inventory();
    let nvrtc = inventory
        .libraries
        .iter()
        .find(|(what, _)| *what == "nvrtc")
        .and_then(|(_, path)| path.clone());
    assert!(
        nvrtc.is_some(),
        "NVRTC not found: run `make test`, or set VSR_CUDA_LIB_PATH to a folder with \
         libnvrtc.so.13\n{inventory}"
    );
    let ptx = vsr_cuda::compile_kernels().unwrap_or_else(|e| panic!("{e}"));
    let ptx = ptx.to_src();
    for kernel in [
        "bias_act",
        "act",
        "binary",
        "axpby",
        "pixel_shuffle",
        "resample",
        "pad",
        "copy_channels",
        "crop",
        "channel_pool",
        "dense",
        "to_half",
        "to_float",
    ] {
        assert!(
            ptx.contains(&format!(".entry {kernel}(")),
            "{kernel} missing from the PTX"
        );
    }
}
