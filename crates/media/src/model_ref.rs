//! Turns what the user wrote after `--model` (or `MODEL_PATH`) into files and conventions:
//! a catalog name, the name of a model the operator installed in the custom models folder, or
//! (from the operator only, never from an API client) a path to any ncnn `.param` with its
//! `.bin` beside it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vsr_runtime::{Graph, ModelSpec, PadMode, Shape};

use crate::catalog::Catalog;
use crate::config::Config;

/// The model used when nothing is chosen: fast, made for video, permissive licence.
pub const DEFAULT_MODEL: &str = "realesr-animevideov3-x4";

#[derive(Debug, thiserror::Error)]
pub enum ModelRefError {
    #[error("unknown model {0:?}: not in `vsr models list` and not a path to a .param file")]
    Unknown(String),
    #[error("model {0:?} is not installed; run `vsr models fetch {0}`")]
    NotInstalled(String),
    #[error("{0}: no .bin file beside the .param")]
    MissingBin(PathBuf),
    #[error("model config {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error(transparent)]
    Load(#[from] vsr_runtime::LoadError),
    #[error("model {model} upscales {has}x, but --scale {wanted} was asked for; pick a {wanted}x model (`vsr models list`)")]
    ScaleMismatch {
        model: String,
        has: usize,
        wanted: u32,
    },
    #[error("cannot prepare {0}: {1}")]
    Prepare(String, vsr_runtime::RunError),
    #[error("cannot work out the scale of {0}: {1}")]
    Probe(PathBuf, vsr_runtime::RunError),
    /// An API client named something that is neither a catalog model nor an installed one.
    /// Worded the same whether or not a file of that name exists anywhere.
    #[error("model {0:?} is not offered by this server: name one from GET /api/models")]
    NotOffered(String),
}

/// Longest model name an API client may send; longer ones are quoted shortened.
const MAX_CLIENT_NAME: usize = 64;

/// Whether `name` can be a file stem in the custom models folder and nothing else: no path
/// separators, no leading dot, no extension games.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CLIENT_NAME
        && !name.starts_with('.')
        && !name.ends_with(".param")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
}

/// A model ready to load.
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub name: String,
    pub param: PathBuf,
    pub bin: PathBuf,
    /// Known conventions, or `None` to infer them from the graph.
    pub spec: Option<ModelSpec>,
    /// The catalog model these files are (same sizes and sha256) when they were named by path
    /// or folder: its conventions apply, whatever the files are called.
    pub recognised_as: Option<String>,
}

/// Conventions a custom model may declare in its config file (JSON or TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CustomConfig {
    scale: Option<usize>,
    prepadding: Option<usize>,
    #[serde(alias = "tileAlign")]
    align: Option<usize>,
    pad_mode: Option<String>,
    #[serde(default)]
    add_nearest_input: bool,
}

impl ModelRef {
    /// Resolves `--model` (or the configured default) against the catalog and the file system.
    pub fn resolve(
        arg: Option<&str>,
        config: &Config,
        catalog: &Catalog,
    ) -> Result<ModelRef, ModelRefError> {
        let arg = arg
            .map(str::to_string)
            .or_else(|| config.default_model.clone())
            .unwrap_or_else(|| DEFAULT_MODEL.into());
        if let Some(m) = catalog.get(&arg) {
            let (param, bin) = (config.param_path(&m.name), config.bin_path(&m.name));
            if !crate::fetch::is_installed(config, m) {
                return Err(ModelRefError::NotInstalled(m.name.clone()));
            }
            return Ok(ModelRef {
                name: m.name.clone(),
                param,
                bin,
                spec: Some(m.spec()),
                recognised_as: None,
            });
        }
        if let Some(found) = Self::installed_custom(&arg, config) {
            return Ok(found.recognised(catalog));
        }
        let path = PathBuf::from(&arg);
        if path.extension().is_some_and(|e| e == "param") && path.is_file() {
            let bin = path.with_extension("bin");
            if !bin.is_file() {
                return Err(ModelRefError::MissingBin(path));
            }
            let spec = match &config.model_config {
                Some(c) => Some(read_custom_config(c)?),
                None => None,
            };
            let name = path
                .file_stem()
                .map_or(arg.clone(), |s| s.to_string_lossy().into_owned());
            return Ok(ModelRef {
                name,
                param: path,
                bin,
                spec,
                recognised_as: None,
            }
            .recognised(catalog));
        }
        Err(ModelRefError::Unknown(arg))
    }

    /// Whether an API client may name `name`: a catalog model (installed) or one in the
    /// operator's custom models folder, never a path. Nothing outside that folder is looked
    /// at, so the answer tells a client nothing about the server's files.
    pub fn check_client_name(
        name: &str,
        config: &Config,
        catalog: &Catalog,
    ) -> Result<(), ModelRefError> {
        if catalog.get(name).is_some() {
            return Self::resolve(Some(name), config, catalog).map(|_| ());
        }
        Self::installed_custom(name, config)
            .map(|_| ())
            .ok_or_else(|| ModelRefError::NotOffered(name.chars().take(MAX_CLIENT_NAME).collect()))
    }

    /// `NAME.param` and `NAME.bin` in the custom models folder, if `name` is a plain name.
    fn installed_custom(name: &str, config: &Config) -> Option<ModelRef> {
        if !is_plain_name(name) {
            return None;
        }
        let param = config.custom_models_dir.join(format!("{name}.param"));
        let bin = param.with_extension("bin");
        (param.is_file() && bin.is_file()).then(|| ModelRef {
            name: name.to_string(),
            param,
            bin,
            spec: None,
            recognised_as: None,
        })
    }

    /// Files the catalog knows (the same sizes and sha256), whatever they are called, get
    /// the catalog's conventions: a Real-CUGAN file named as its wheel names it must be padded
    /// and aligned as Real-CUGAN, not as Real-ESRGAN. Conventions given in a config file win.
    fn recognised(mut self, catalog: &Catalog) -> ModelRef {
        if self.spec.is_some() {
            return self;
        }
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let (param_size, bin_size) = (size(&self.param), size(&self.bin));
        let hash = |p: &Path| std::fs::read(p).ok().map(|b| crate::fetch::sha256_hex(&b));
        let mut param_hash = None;
        for m in &catalog.models {
            if m.param.size != param_size || m.bin.size != bin_size {
                continue;
            }
            let param_sha = param_hash.get_or_insert_with(|| hash(&self.param));
            if param_sha.as_deref() == Some(m.param.sha256.as_str())
                && hash(&self.bin).as_deref() == Some(m.bin.sha256.as_str())
            {
                self.spec = Some(m.spec());
                self.recognised_as = Some(m.name.clone());
                break;
            }
        }
        self
    }

    /// Names of the models in the custom models folder (both files present), sorted.
    pub fn custom_names(config: &Config) -> Vec<String> {
        crate::model_pack::param_stems(&config.custom_models_dir)
            .into_iter()
            .filter(|stem| is_plain_name(stem))
            .collect()
    }

    /// Loads the graph and settles the conventions (inferring the scale of unknown models).
    pub fn load(&self) -> Result<(Graph, ModelSpec), ModelRefError> {
        let graph = Graph::load(&self.param, &self.bin)?;
        let spec = match &self.spec {
            Some(s) if s.scale > 0 => s.clone(),
            partial => {
                let mut spec = partial.clone().unwrap_or_else(|| ModelSpec::padded(0));
                spec.scale =
                    infer_scale(&graph).map_err(|e| ModelRefError::Probe(self.param.clone(), e))?;
                spec
            }
        };
        Ok((graph, spec))
    }
}

/// Output size over input size, found by asking the graph about a 64x64 input.
fn infer_scale(graph: &Graph) -> Result<usize, vsr_runtime::RunError> {
    let plan = vsr_runtime::Plan::new(graph, vsr_runtime::Isa::portable(), 1)?;
    let out = plan.output_shape(Shape::image(64, 64, 3))?;
    Ok((out.w / 64).max(1))
}

fn read_custom_config(path: &Path) -> Result<ModelSpec, ModelRefError> {
    let bad = |reason: String| ModelRefError::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let c: CustomConfig = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| bad(e.to_string()))?
    } else {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    };
    let pad_mode = match c.pad_mode.as_deref() {
        None | Some("reflect") => PadMode::Reflect,
        Some("replicate") => PadMode::Replicate,
        Some(other) => {
            return Err(bad(format!(
                "padMode {other:?} is not reflect or replicate"
            )))
        }
    };
    if c.scale.is_some_and(|s| !(1..=16).contains(&s)) {
        return Err(bad("scale must be 1 to 16".into()));
    }
    Ok(ModelSpec {
        scale: c.scale.unwrap_or(0),
        prepadding: c.prepadding.unwrap_or(10),
        align: c.align.unwrap_or(1).max(1),
        pad_mode,
        add_nearest_input: c.add_nearest_input,
    })
}
