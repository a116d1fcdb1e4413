//! Which models the CUDA executor takes, checked without a GPU: every model VSR ships lowers
//! completely (Real-ESRGAN, Real-CUGAN, waifu2x, SPAN), and a model with a layer it lacks is
//! refused with that layer named (it then runs on the CPU).

use std::path::{Path, PathBuf};

use vsr_runtime::Graph;

fn models_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("VSR_MODELS_DIR").expect("VSR_MODELS_DIR (make test sets it)"))
}

fn load(param: &Path) -> Graph {
    Graph::load(param, &param.with_extension("bin")).unwrap()
}

#[test]
fn every_shipped_model_is_supported() {
    let mut params: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "param"))
        .collect();
    params.sort();
    let families = ["realesr", "realesrgan", "realcugan", "waifu2x", "span"];
    for family in families {
        assert!(
            params
                .iter()
                .any(|p| p.file_name().unwrap().to_string_lossy().contains(family)),
            "no {family} model in {}",
            models_dir().display()
        );
    }
    for param in &params {
        let missing = vsr_cuda::unsupported_layers(&load(param));
        assert!(missing.is_empty(), "{}: {missing:?}", param.display());
    }
}

#[test]
fn a_missing_layer_is_named() {
    let dir = std::env::temp_dir().join(format!("vsr-cuda-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let param = dir.join("shuffle.param");
    std::fs::write(
        &param,
        "7767517\n2 2\nInput data 0 1 data\nPixelShuffle ps 1 1 data out 0=2 1=1\n",
    )
    .unwrap();
    std::fs::write(param.with_extension("bin"), b"").unwrap();
    let missing = vsr_cuda::unsupported_layers(&load(&param));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(missing, ["PixelShuffle"]);
}
