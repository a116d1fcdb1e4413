//! What `vsr models inspect` tells about a model file: the conventions it runs with and
//! where they come from, what the graph alone implies, its layers, how far it sees, what it
//! costs per pixel, and which executors can run it. Made for someone who found a `.param` on
//! the internet and wants to know whether, and how, it will work before upscaling anything.

use serde::Serialize;
use vsr_runtime::{anatomy, conventions, Graph, Isa, ModelSpec, Plan, Shape};

use crate::model_ref::{ModelRef, ModelRefError};

/// The cost per pixel is the growth in work from a frame of this side to one of twice it
/// (each padded by the model's conventions), so the border's share cancels out.
const COST_FRAME: usize = 256;

/// Everything `vsr models inspect` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub param: String,
    pub bin: String,
    /// The catalog model these files are, when they are one.
    pub catalog_model: Option<String>,
    /// The conventions the model runs with, or why it cannot run.
    pub conventions: Result<Conventions, String>,
    /// What shape inference and the grey-frame probe find, whatever the catalog says.
    pub inferred: Result<Conventions, String>,
    /// What the inferred conventions rest on, in words.
    pub inferred_from: Option<String>,
    /// Layer count by `.param` type, most frequent first.
    pub layers: Vec<(String, usize)>,
    /// Input pixels each output pixel depends on, on every side.
    pub receptive_radius: usize,
    /// Global pooling (squeeze-excitation): tiles see different statistics than the frame.
    pub global_pooling: bool,
    /// Floating-point operations (two per multiply-add) per input pixel of a large frame.
    pub flops_per_pixel: Option<f64>,
    /// Activation memory of a 1920x1080 frame run whole (bytes); tiles bound it in practice.
    pub peak_bytes_1080p: Option<usize>,
    /// Weights, as stored in the `.bin` (bytes).
    pub weight_bytes: u64,
    /// The CPU executor's answer: the instruction set it would use, or why it cannot run.
    pub cpu: Result<String, String>,
    /// Layer types the CUDA executor lacks (none: it runs the model).
    pub cuda_unsupported: Vec<String>,
}

/// Conventions in the config file's spelling.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conventions {
    pub scale: usize,
    pub prepadding: usize,
    pub align: usize,
    pub pad_mode: &'static str,
    pub add_nearest_input: bool,
    /// "catalog", "inferred", or the config file and the keys it gave.
    pub source: String,
}

impl Conventions {
    fn of(spec: &ModelSpec, source: String) -> Conventions {
        Conventions {
            scale: spec.scale,
            prepadding: spec.prepadding,
            align: spec.align,
            pad_mode: spec.pad_mode.name(),
            add_nearest_input: spec.add_nearest_input,
            source,
        }
    }
}

/// Inspects `model` (resolved as `--model` is). Fails only when the files cannot be read as
/// a model at all; conventions that cannot be settled are part of the report.
pub fn inspect(model: &ModelRef) -> Result<Report, ModelRefError> {
    let graph = Graph::load(&model.param, &model.bin)?;
    let plan = Plan::new(&graph, Isa::detect(), 1);
    let (inferred, inferred_from) = match &plan {
        Ok(plan) => match conventions::infer(&graph, plan) {
            Ok(i) => (
                Ok(Conventions::of(&i.spec, "inferred".into())),
                Some(i.to_string()),
            ),
            Err(e) => (Err(e.to_string()), None),
        },
        Err(e) => (Err(e.to_string()), None),
    };
    let settled = model.load().map(|loaded| loaded.spec);
    let source = match (&model.spec, &model.given.path) {
        (Some(_), _) => "catalog".to_string(),
        (None, Some(config)) => format!("{} and the graph", config.display()),
        (None, None) => "inferred".to_string(),
    };
    let padded = |spec: &ModelSpec, w: usize, h: usize| {
        let pad = 2 * spec.prepadding;
        Shape::image(
            h.next_multiple_of(spec.align) + pad,
            w.next_multiple_of(spec.align) + pad,
            3,
        )
    };
    let (flops_per_pixel, peak_bytes_1080p) = match (&plan, &settled) {
        (Ok(plan), Ok(spec)) => (
            {
                // Work per pixel as frames grow: the border's share cancels out.
                let small = padded(spec, COST_FRAME, COST_FRAME);
                let large = padded(spec, 2 * COST_FRAME, 2 * COST_FRAME);
                let grown = (large.h * large.w - small.h * small.w) as f64;
                plan.macs(small)
                    .and_then(|s| Ok(plan.macs(large)?.saturating_sub(s)))
                    .ok()
                    .map(|macs| 2.0 * macs as f64 / grown)
            },
            plan.peak_bytes(padded(spec, 1920, 1080)).ok(),
        ),
        _ => (None, None),
    };
    let (receptive_radius, global_pooling) = anatomy::receptive_field(&graph);
    Ok(Report {
        param: model.param.display().to_string(),
        bin: model.bin.display().to_string(),
        catalog_model: model
            .recognised_as
            .clone()
            .or_else(|| model.spec.as_ref().map(|_| model.name.clone())),
        conventions: settled
            .map(|spec| Conventions::of(&spec, source))
            .map_err(|e| e.to_string()),
        inferred,
        inferred_from,
        layers: anatomy::census(&graph),
        receptive_radius,
        global_pooling,
        flops_per_pixel,
        peak_bytes_1080p,
        weight_bytes: std::fs::metadata(&model.bin).map_or(0, |m| m.len()),
        cpu: plan
            .map(|p| p.isa().name().to_string())
            .map_err(|e| e.to_string()),
        cuda_unsupported: vsr_cuda::unsupported_layers(&graph),
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conventions = |c: &Result<Conventions, String>| match c {
            Ok(c) => format!(
                "scale {}, prepadding {}, align {}, padMode {}, addNearestInput {} ({})",
                c.scale, c.prepadding, c.align, c.pad_mode, c.add_nearest_input, c.source
            ),
            Err(e) => format!("unsettled: {e}"),
        };
        writeln!(f, "model:           {} (+ .bin)", self.param)?;
        if let Some(name) = &self.catalog_model {
            writeln!(f, "catalog model:   {name}")?;
        }
        writeln!(f, "conventions:     {}", conventions(&self.conventions))?;
        writeln!(f, "inferred:        {}", conventions(&self.inferred))?;
        if let Some(from) = &self.inferred_from {
            writeln!(f, "  from:          {from}")?;
        }
        let total: usize = self.layers.iter().map(|(_, n)| n).sum();
        let census: Vec<String> = self
            .layers
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        writeln!(f, "layers:          {total}: {}", census.join(", "))?;
        writeln!(
            f,
            "receptive field: {} px on every side ({}x{} input pixels){}",
            self.receptive_radius,
            2 * self.receptive_radius + 1,
            2 * self.receptive_radius + 1,
            if self.global_pooling {
                "; global pooling: tiled frames are approximate"
            } else {
                ""
            }
        )?;
        match self.flops_per_pixel {
            Some(flops) => writeln!(
                f,
                "cost:            {:.2} MFLOP per input pixel ({:.0} GFLOP per 1920x1080 frame); weights {:.1} MB",
                flops / 1e6,
                flops * 1920.0 * 1080.0 / 1e9,
                self.weight_bytes as f64 / 1e6
            )?,
            None => writeln!(
                f,
                "cost:            unknown until the conventions are settled; weights {:.1} MB",
                self.weight_bytes as f64 / 1e6
            )?,
        }
        if let Some(bytes) = self.peak_bytes_1080p {
            writeln!(
                f,
                "memory:          {} MiB of activations for a 1920x1080 frame run whole (tiles bound it)",
                bytes >> 20
            )?;
        }
        match &self.cpu {
            Ok(isa) => writeln!(f, "cpu executor:    runs it ({isa})")?,
            Err(e) => writeln!(f, "cpu executor:    cannot run it: {e}")?,
        }
        if self.cuda_unsupported.is_empty() {
            writeln!(f, "cuda executor:   runs it")
        } else {
            writeln!(
                f,
                "cuda executor:   lacks {}; it runs on the CPU",
                self.cuda_unsupported.join(", ")
            )
        }
    }
}
