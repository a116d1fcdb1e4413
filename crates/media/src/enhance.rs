//! A recipe made runnable: its models loaded and chained, the detail blend applied. The video
//! pipeline, `vsr upscale-image` and the service all upscale through this, and all get there
//! by [`prepare`]: settings -> recipe -> device -> loaded models, written once.

use vsr_cuda::{CudaPlan, Device, DeviceError, DeviceRequest, Selection};
use vsr_runtime::{Options, RunError, Tensor, Upscaler};

use crate::catalog::Catalog;
use crate::code::Code;
use crate::config::Config;
use crate::model_ref::{LoadedModel, ModelRef, ModelRefError};
use crate::resample::lanczos3;
use crate::settings::{Recipe, Settings, SettingsError};

pub struct Enhancer {
    recipe: Recipe,
    names: Vec<String>,
    passes: Vec<Upscaler>,
    /// What loading decided that the user should know (a pass left on the CPU, say).
    notes: Vec<String>,
}

/// Why settings could not become a loaded enhancer.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Model(#[from] ModelRefError),
}

impl PrepareError {
    pub fn code(&self) -> Code {
        match self {
            PrepareError::Settings(e) => e.code(),
            PrepareError::Device(e) => Code::from(e),
            PrepareError::Model(ModelRefError::NotInstalled(_) | ModelRefError::NotOffered(_)) => {
                Code::ModelUnavailable
            }
            PrepareError::Model(
                ModelRefError::Ambiguous { .. }
                | ModelRefError::Misfit { .. }
                | ModelRefError::Prepare(_, RunError::Misfit { .. }),
            ) => Code::ModelConventions,
            PrepareError::Model(_) => Code::ModelFailed,
        }
    }
}

/// Loaded models for some settings, where they run, and every note about the choices made.
pub struct Prepared {
    pub enhancer: Enhancer,
    /// The device and why it was picked.
    pub selection: Selection,
    /// The recipe's notes, then loading's.
    pub notes: Vec<String>,
}

/// The device for `request` on this machine, and why: the one place a device is chosen.
pub fn select_device(request: DeviceRequest) -> Result<Selection, DeviceError> {
    // Asking the driver loads CUDA and opens a context on every GPU: not for a CPU request.
    let inventory = match request {
        DeviceRequest::Cpu => vsr_cuda::Inventory {
            gpus: Ok(Vec::new()),
            libraries: Vec::new(),
        },
        DeviceRequest::Auto | DeviceRequest::Cuda(_) => vsr_cuda::inventory(),
    };
    vsr_cuda::select(request, &inventory)
}

/// The scale `recipe`'s passes multiply to, each model resolved but not run (a custom
/// model's graph is read to learn its scale): for checking settings before any work. On
/// failure, the pass at fault and why.
pub fn recipe_scale(
    recipe: &Recipe,
    config: &Config,
    catalog: &Catalog,
) -> Result<usize, (String, ModelRefError)> {
    let mut scale = 1;
    for pass in &recipe.passes {
        let fail = |e| (pass.clone(), e);
        let model = ModelRef::resolve(Some(pass), config, catalog).map_err(fail)?;
        scale *= model.scale().map_err(fail)?;
    }
    Ok(scale)
}

/// Settings (their model override included) and a device request to loaded models: the one
/// path the command line, the service's workers and previews, and the benchmark take. A
/// device asked for by name (`cuda:N`) must run every model; `auto` lets a model the CUDA
/// executor cannot run yet use the CPU, with a note.
pub fn prepare(
    settings: &Settings,
    config: &Config,
    device: DeviceRequest,
    options: Options,
) -> Result<Prepared, PrepareError> {
    let catalog = Catalog::builtin();
    let recipe = settings.recipe(catalog, config.default_model.as_deref())?;
    let selection = select_device(device)?;
    let strict = matches!(device, DeviceRequest::Cuda(_));
    let mut notes = recipe.notes.clone();
    let enhancer = Enhancer::load(recipe, config, catalog, options, &selection.device, strict)?;
    notes.extend(enhancer.notes.iter().cloned());
    Ok(Prepared {
        enhancer,
        selection,
        notes,
    })
}

impl Enhancer {
    /// Loads every pass; the product of their scales must be the scale asked for.
    /// On `device`: a model the CUDA executor cannot run yet uses the CPU, with a note, unless
    /// `strict` (CUDA was asked for by name), when it is an error.
    fn load(
        recipe: Recipe,
        config: &Config,
        catalog: &Catalog,
        options: Options,
        device: &Device,
        strict: bool,
    ) -> Result<Self, ModelRefError> {
        let mut names = Vec::new();
        let mut passes = Vec::new();
        let mut notes = Vec::new();
        for pass in &recipe.passes {
            let model = ModelRef::resolve(Some(pass), config, catalog)?;
            if let Some(known) = &model.recognised_as {
                notes.push(format!(
                    "{} is the catalog's {known} (the same files): its conventions apply",
                    model.param.display()
                ));
            }
            let LoadedModel { graph, spec, note } = model.load()?;
            notes.extend(note);
            let mut upscaler = Upscaler::new(&graph, spec, options)
                .map_err(|e| ModelRefError::Prepare(model.name.clone(), e))?;
            if let Device::Cuda(gpu) = device {
                match CudaPlan::new(&graph, gpu.index) {
                    Ok(plan) => upscaler = upscaler.with_accelerator(Box::new(plan)),
                    Err(e) if strict => {
                        return Err(ModelRefError::Prepare(
                            model.name.clone(),
                            RunError::Device {
                                device: format!("cuda:{}", gpu.index),
                                reason: e.to_string(),
                            },
                        ))
                    }
                    Err(e) => {
                        tracing::info!(model = %model.name, reason = %e, "model left on the CPU");
                        notes.push(format!("{}: {e}; it runs on the CPU", model.name));
                    }
                }
            }
            passes.push(upscaler);
            names.push(model.name);
        }
        let enhancer = Enhancer {
            recipe,
            names,
            passes,
            notes,
        };
        if let Some(wanted) = enhancer.recipe.scale {
            if wanted as usize != enhancer.scale() {
                return Err(ModelRefError::ScaleMismatch {
                    model: enhancer.model_names(),
                    has: enhancer.scale(),
                    wanted,
                });
            }
        }
        Ok(enhancer)
    }

    /// Output size over input size.
    pub fn scale(&self) -> usize {
        self.passes.iter().map(|p| p.spec().scale).product()
    }

    /// The models in the order they run, for logs and summaries.
    pub fn model_names(&self) -> String {
        self.names.join(" + ")
    }

    /// What makes this enhancer's output what it is (the recipe and the models it loaded):
    /// part of a video job's key, so a job of other models never reuses another's segments.
    pub fn fingerprint(&self) -> String {
        format!("{:?} {}", self.recipe, self.model_names())
    }

    /// Where each pass runs, for logs.
    pub fn devices(&self) -> String {
        let mut names: Vec<String> = self.passes.iter().map(Upscaler::device_name).collect();
        names.dedup();
        names.join(" + ")
    }

    /// The stabiliser the recipe asks for on video (`None`: frames as the models draw them).
    pub fn stabiliser(&self) -> Option<crate::temporal::Stabiliser> {
        crate::temporal::Stabiliser::new(self.recipe.temporal)
    }

    /// The FFmpeg filter to apply to decoded frames before they reach `process`.
    pub fn prefilter(&self) -> Option<String> {
        self.recipe.prefilter.map(|p| p.ffmpeg_filter())
    }

    /// Upscales one frame through every pass, then blends in the Lanczos upscale if asked.
    pub fn process(&self, frame: &Tensor) -> Result<Tensor, RunError> {
        let mut out = self.passes[0].upscale(frame)?;
        for (prev, pass) in self.passes.iter().zip(&self.passes[1..]) {
            let next = pass.upscale(&out)?;
            prev.plan().recycle(std::mem::replace(&mut out, next));
        }
        let a = self.recipe.detail_blend;
        if a > 0.0 {
            let classic = lanczos3(frame, out.w, out.h);
            for (o, c) in out.data.iter_mut().zip(&classic.data) {
                *o = (1.0 - a) * *o + a * c;
            }
        }
        Ok(out)
    }

    /// Runs `f` on the last pass's worker threads (see [`vsr_runtime::plan::Plan::install`]).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.passes
            .last()
            .expect("one pass at least")
            .plan()
            .install(f)
    }

    /// Returns a tensor from `process` so its memory serves the next frame.
    pub fn recycle(&self, t: Tensor) {
        self.passes
            .last()
            .expect("one pass at least")
            .plan()
            .recycle(t);
    }
}
