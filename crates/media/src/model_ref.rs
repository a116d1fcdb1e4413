//! Turns what the user wrote after `--model` (or `MODEL_PATH`) into files and conventions:
//! a catalog name, the name of a model the operator installed in the custom models folder, or
//! (from the operator only, never from an API client) a path to any ncnn `.param` with its
//! `.bin` beside it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vsr_runtime::conventions::{self, Ambiguity, Geometry, Mismatch};
use vsr_runtime::{Graph, Isa, ModelSpec, PadMode, Plan};

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
    /// The graph does not settle the conventions and the config file does not give them.
    #[error("{path}: cannot tell this model's conventions from its graph: {what}; give {} in the conventions file (MODEL_CONFIG_PATH, JSON or TOML)", keys.join(", "))]
    Ambiguous {
        path: PathBuf,
        what: Box<Ambiguity>,
        /// The config keys still needed.
        keys: Vec<&'static str>,
    },
    /// The config file gives conventions the network cannot run with.
    #[error("{config} (MODEL_CONFIG_PATH) for {path}: {mismatch}; correct {} or leave it out to have it inferred", mismatch.key)]
    Misfit {
        path: PathBuf,
        config: PathBuf,
        mismatch: Box<Mismatch>,
    },
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
    /// The catalog's conventions for these files, or `None` to infer them from the graph.
    pub spec: Option<ModelSpec>,
    /// Conventions the operator's config file (`MODEL_CONFIG_PATH`) gives for a model by
    /// path; they win over inferred ones.
    pub given: Given,
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
    add_nearest_input: Option<bool>,
}

/// Conventions given for a model by the config file (`MODEL_CONFIG_PATH`); the others are
/// inferred from the graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Given {
    /// The config file, when there is one.
    pub path: Option<PathBuf>,
    pub scale: Option<usize>,
    pub prepadding: Option<usize>,
    pub align: Option<usize>,
    pub pad_mode: Option<PadMode>,
    pub add_nearest_input: Option<bool>,
}

impl Given {
    /// The config keys this gives, in the file's spelling.
    fn keys(&self) -> Vec<&'static str> {
        [
            ("scale", self.scale.is_some()),
            ("prepadding", self.prepadding.is_some()),
            ("align", self.align.is_some()),
            ("padMode", self.pad_mode.is_some()),
            ("addNearestInput", self.add_nearest_input.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, given)| given.then_some(k))
        .collect()
    }

    /// `inferred` with every given convention put in its place.
    fn over(&self, inferred: &ModelSpec) -> ModelSpec {
        ModelSpec {
            scale: self.scale.unwrap_or(inferred.scale),
            prepadding: self.prepadding.unwrap_or(inferred.prepadding),
            align: self.align.unwrap_or(inferred.align),
            pad_mode: self.pad_mode.unwrap_or(inferred.pad_mode),
            add_nearest_input: self.add_nearest_input.unwrap_or(inferred.add_nearest_input),
        }
    }
}

/// A model's graph with its conventions settled.
#[derive(Debug)]
pub struct LoadedModel {
    pub graph: Graph,
    pub spec: ModelSpec,
    /// How the conventions were settled when the catalog did not know the files, for a
    /// `note:` to the user.
    pub note: Option<String>,
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
                given: Given::default(),
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
            let given = match &config.model_config {
                Some(c) => read_custom_config(c)?,
                None => Given::default(),
            };
            let name = path
                .file_stem()
                .map_or(arg.clone(), |s| s.to_string_lossy().into_owned());
            return Ok(ModelRef {
                name,
                param: path,
                bin,
                spec: None,
                given,
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
            given: Given::default(),
            recognised_as: None,
        })
    }

    /// Files the catalog knows (the same sizes and sha256), whatever they are called, get
    /// the catalog's conventions: a Real-CUGAN file named as its wheel names it must be padded
    /// and aligned as Real-CUGAN, not as Real-ESRGAN. Conventions given in a config file win.
    fn recognised(mut self, catalog: &Catalog) -> ModelRef {
        if self.given != Given::default() {
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

    /// The model's scale, without running it: the catalog's or the config file's, else read
    /// off the graph by shape inference (for checking settings before any work).
    pub fn scale(&self) -> Result<usize, ModelRefError> {
        if let Some(scale) = self.spec.as_ref().map(|s| s.scale).or(self.given.scale) {
            return Ok(scale);
        }
        let graph = Graph::load(&self.param, &self.bin)?;
        let plan = Plan::new(&graph, Isa::detect(), 1)
            .map_err(|e| ModelRefError::Prepare(self.name.clone(), e))?;
        Geometry::measure(&plan)
            .map(|g| g.scale)
            .map_err(|what| ModelRefError::Ambiguous {
                path: self.param.clone(),
                keys: what.keys().to_vec(),
                what: Box::new(what),
            })
    }

    /// Loads the graph and settles the conventions: the catalog's for files it knows, else
    /// the config file's where it gives them and the graph's (by shape inference) for the rest,
    /// checked against the network so that a misfit is an error naming the key, not a shape
    /// mismatch deep inside the network on the first frame.
    pub fn load(&self) -> Result<LoadedModel, ModelRefError> {
        let graph = Graph::load(&self.param, &self.bin)?;
        if let Some(spec) = &self.spec {
            return Ok(LoadedModel {
                graph,
                spec: spec.clone(),
                note: None,
            });
        }
        // One thread: the network only runs on two small grey frames here.
        let plan = Plan::new(&graph, Isa::detect(), 1)
            .map_err(|e| ModelRefError::Prepare(self.name.clone(), e))?;
        let given_keys = self.given.keys();
        let config = self.given.path.clone().unwrap_or_default();
        let misfit = |mismatch| ModelRefError::Misfit {
            path: self.param.clone(),
            config: config.clone(),
            mismatch: Box::new(mismatch),
        };
        let (spec, note) = match conventions::infer(&graph, &plan) {
            Ok(inferred) => {
                let spec = self.given.over(&inferred.spec);
                inferred.geometry.check(&spec).map_err(misfit)?;
                let note = if given_keys.is_empty() {
                    format!(
                        "{}: conventions inferred from the graph: {inferred}",
                        self.param.display()
                    )
                } else {
                    format!(
                        "{}: {} from {}, the rest inferred from the graph ({inferred}): {spec}",
                        self.param.display(),
                        given_keys.join(", "),
                        config.display()
                    )
                };
                (spec, note)
            }
            Err(what) => {
                let missing: Vec<&'static str> = what
                    .keys()
                    .iter()
                    .copied()
                    .filter(|k| !given_keys.contains(k))
                    .collect();
                if !missing.is_empty() {
                    return Err(ModelRefError::Ambiguous {
                        path: self.param.clone(),
                        what: Box::new(what),
                        keys: missing,
                    });
                }
                // What the shapes did settle, under what the config gives.
                let geometry = Geometry::measure(&plan).ok();
                let mut base = ModelSpec {
                    pad_mode: conventions::pad_mode_hint(&graph),
                    ..ModelSpec::padded(0)
                };
                if let Some((g, Ok((prepadding, align)))) = geometry.map(|g| (g, g.border())) {
                    (base.scale, base.prepadding, base.align) = (g.scale, prepadding, align);
                }
                let spec = self.given.over(&base);
                if let Some(geometry) = geometry {
                    geometry.check(&spec).map_err(misfit)?;
                }
                let note = format!(
                    "{}: conventions from {} ({what}): {spec}",
                    self.param.display(),
                    config.display()
                );
                (spec, note)
            }
        };
        Ok(LoadedModel {
            graph,
            spec,
            note: Some(note),
        })
    }
}

fn read_custom_config(path: &Path) -> Result<Given, ModelRefError> {
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
        None => None,
        Some("reflect") => Some(PadMode::Reflect),
        Some("replicate") => Some(PadMode::Replicate),
        Some(other) => {
            return Err(bad(format!(
                "padMode {other:?} is not reflect or replicate"
            )))
        }
    };
    if c.scale.is_some_and(|s| !(1..=16).contains(&s)) {
        return Err(bad("scale must be 1 to 16".into()));
    }
    if c.align.is_some_and(|a| !(1..=64).contains(&a)) {
        return Err(bad("align must be 1 to 64".into()));
    }
    if c.prepadding.is_some_and(|p| p > 256) {
        return Err(bad("prepadding must be at most 256".into()));
    }
    Ok(Given {
        path: Some(path.to_path_buf()),
        scale: c.scale,
        prepadding: c.prepadding,
        align: c.align,
        pad_mode,
        add_nearest_input: c.add_nearest_input,
    })
}
