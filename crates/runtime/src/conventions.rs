//! A model's image conventions (scale, border, alignment, pad mode, residual) and how to infer
//! them from the graph when neither the catalog nor a config file gives them.
//!
//! The reference tools hard-code these per model family; a file a user drops in has only its
//! graph. Shape inference over a run of input sizes shows what the network itself demands:
//! which sizes every binary op, concat and crop accepts (the alignment), how much larger the
//! output is (the scale) and how much border the network eats (the prepadding of networks
//! that crop themselves, as the U-Nets of Real-CUGAN and waifu2x do). Two conventions leave
//! no trace in the shapes and are read from other evidence: the pad mode (models converted
//! from Caffe, as waifu2x's are, declare their training patch size on the `Input` layer, and
//! waifu2x-ncnn-vulkan replicates their edges) and whether the network predicts a residual
//! over a nearest-neighbour upscale (Real-CUGAN 4x), seen by running it on flat grey.

use crate::error::RunError;
use crate::graph::Graph;
use crate::plan::Plan;
use crate::tensor::{Shape, Tensor};

/// How the reference tools extend the frame before running the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// Mirror without repeating the edge pixel (OpenCV's REFLECT_101).
    Reflect,
    /// Repeat the edge pixel.
    Replicate,
}

impl PadMode {
    /// The name config files use (`padMode`).
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Reflect => "reflect",
            PadMode::Replicate => "replicate",
        }
    }
}

/// The image conventions of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Output size over input size.
    pub scale: usize,
    /// Pixels of border added on every side before the network.
    pub prepadding: usize,
    /// The padded height and width (less the prepadding) are rounded up to a multiple of this.
    pub align: usize,
    pub pad_mode: PadMode,
    /// Add a nearest-neighbour upscale of the input to the network's output (Real-CUGAN 4x).
    pub add_nearest_input: bool,
}

impl ModelSpec {
    /// Real-ESRGAN's convention, also the default for unknown models.
    pub fn padded(scale: usize) -> Self {
        ModelSpec {
            scale,
            prepadding: DEFAULT_PREPADDING,
            align: 1,
            pad_mode: PadMode::Reflect,
            add_nearest_input: false,
        }
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scale {}, prepadding {}, align {}, padMode {}{}",
            self.scale,
            self.prepadding,
            self.align,
            self.pad_mode.name(),
            if self.add_nearest_input {
                ", addNearestInput"
            } else {
                ""
            }
        )
    }
}

/// The border Real-ESRGAN's tools add around networks that keep their input's size
/// relation: context for the edge pixels, cropped off again after the network.
pub const DEFAULT_PREPADDING: usize = 10;

/// Network input sizes probed start here: large enough for any real network's crops.
const PROBE_FROM: usize = 96;

/// The largest alignment recognised; sizes over two of its periods are probed.
const MAX_ALIGN: usize = 32;

/// What shape inference shows about a network, for square inputs of every size probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Output pixels per input pixel.
    pub scale: usize,
    /// Output pixels the network crops from each side of its scaled input: 0 for networks
    /// that keep the border (Real-ESRGAN, SPAN), more for U-Nets that crop themselves.
    pub crop: usize,
    /// The network takes input sizes `residue + k * period` and no others.
    pub period: usize,
    pub residue: usize,
}

/// Why the conventions cannot be read off the graph: what is ambiguous, in words a user can
/// act on, and which conventions a config file must then give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguity {
    #[error("the network takes no input size from {from} to {to} (at {size}: {reason})")]
    NoSize {
        from: usize,
        to: usize,
        size: usize,
        reason: String,
    },
    #[error("the sizes the network takes ({taken}) follow no alignment up to {MAX_ALIGN}")]
    IrregularSizes { taken: String },
    #[error("the network's output is not an RGB image growing with its input ({0})")]
    NotAnImage(String),
    #[error("the output grows by {grows} pixels per {per} input pixels, not a whole scale")]
    FractionalScale { grows: usize, per: usize },
    #[error("the output is {out} pixels for {input} at scale {scale}: the border it crops is not the same for every size")]
    UnevenCrop {
        input: usize,
        out: usize,
        scale: usize,
    },
    #[error("the network crops {crop} output pixels per side, not a whole number of input pixels at scale {scale}")]
    FractionalCrop { crop: usize, scale: usize },
    #[error("the network takes sizes {residue} + k*{period}, which no border of whole pixels on both sides reaches")]
    NoBorderFits { period: usize, residue: usize },
    #[error("the network crops {prepadding} pixels per side but takes only sizes {residue} + k*{period}, which that border misses")]
    BorderOffAlignment {
        prepadding: usize,
        period: usize,
        residue: usize,
    },
    #[error("the network's width and height behave differently ({0})")]
    Anisotropic(String),
    #[error("running the network on a flat grey frame failed: {0}")]
    Probe(String),
}

impl Ambiguity {
    /// The conventions (config-file keys) that settle this ambiguity when given.
    pub fn keys(&self) -> &'static [&'static str] {
        match self {
            Ambiguity::Probe(_) => &["addNearestInput"],
            Ambiguity::NoBorderFits { .. } | Ambiguity::BorderOffAlignment { .. } => {
                &["prepadding", "align"]
            }
            Ambiguity::FractionalCrop { .. } => &["prepadding"],
            _ => &["scale", "prepadding", "align"],
        }
    }
}

/// Conventions that do not fit the network, and which key is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {given} does not fit the network: {reason}")]
pub struct Mismatch {
    /// The config-file key at fault.
    pub key: &'static str,
    pub given: usize,
    pub reason: String,
}

impl Geometry {
    /// Walks the shapes of square inputs from [`PROBE_FROM`] over two periods of
    /// [`MAX_ALIGN`], and of one non-square input, through `plan`.
    pub fn measure(plan: &Plan) -> Result<Geometry, Ambiguity> {
        let sizes = PROBE_FROM..PROBE_FROM + 2 * MAX_ALIGN;
        let shape_of = |n: usize| plan.output_shape(Shape::image(n, n, 3));
        // A size is taken when the shapes agree and the output is larger than for one pixel
        // less: a network whose strided layers floor odd sizes (and whose crops follow the
        // smaller size, as waifu2x's do) accepts them but drops their last pixel.
        let mut taken = Vec::new();
        let mut refused = None;
        let mut below = shape_of(sizes.start - 1).ok();
        for n in sizes.clone() {
            match shape_of(n) {
                Ok(out) => {
                    if below.is_none_or(|b| b.w < out.w) {
                        taken.push((n, out));
                    }
                    below = Some(out);
                }
                Err(e) => {
                    refused.get_or_insert((n, e));
                    below = None;
                }
            }
        }
        let Some(&(first, _)) = taken.first() else {
            let (size, reason) = refused.map_or_else(
                || {
                    (
                        sizes.start,
                        "the output does not grow with the input".to_string(),
                    )
                },
                |(n, e)| (n, e.to_string()),
            );
            return Err(Ambiguity::NoSize {
                from: sizes.start,
                to: sizes.end - 1,
                size,
                reason,
            });
        };
        let is_taken = |n: usize| taken.iter().any(|t| t.0 == n);
        let period = (0..=MAX_ALIGN.ilog2())
            .map(|p| 1 << p)
            .find(|&a| sizes.clone().all(|n| (n % a == first % a) == is_taken(n)))
            .ok_or_else(|| Ambiguity::IrregularSizes {
                taken: taken
                    .iter()
                    .map(|t| t.0.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        for (n, out) in &taken {
            if out.c != 3 || out.dims != 3 || out.h != out.w {
                return Err(Ambiguity::NotAnImage(format!(
                    "{n}x{n}x3 in, {}x{}x{} out",
                    out.w, out.h, out.c
                )));
            }
        }
        // At least two sizes are taken: the period is at most half the sizes probed.
        let ((n1, o1), (n2, o2)) = (taken[0], taken[1]);
        let (grows, per) = (o2.w.saturating_sub(o1.w), n2 - n1);
        if grows == 0 || !grows.is_multiple_of(per) {
            return Err(Ambiguity::FractionalScale { grows, per });
        }
        let scale = grows / per;
        let crop_both = (scale * n1)
            .checked_sub(o1.w)
            .filter(|c| c.is_multiple_of(2))
            .ok_or(Ambiguity::UnevenCrop {
                input: n1,
                out: o1.w,
                scale,
            })?;
        if let Some((n, out)) = taken.iter().find(|(n, o)| scale * n != o.w + crop_both) {
            return Err(Ambiguity::UnevenCrop {
                input: *n,
                out: out.w,
                scale,
            });
        }
        // Width and height measured apart: the two sizes at once.
        let wide = plan.output_shape(Shape::image(n1, n2, 3));
        if !wide.as_ref().is_ok_and(|o| (o.h, o.w) == (o1.h, o2.w)) {
            return Err(Ambiguity::Anisotropic(format!(
                "{n2}x{n1} gives {}",
                wide.map_or_else(|e| e.to_string(), |o| format!("{}x{}", o.w, o.h))
            )));
        }
        Ok(Geometry {
            scale,
            crop: crop_both / 2,
            period,
            residue: first % period,
        })
    }

    /// Whether the network crops its own border (and so needs exactly that much prepadding).
    pub fn crops_border(&self) -> bool {
        self.crop > 0
    }

    /// The prepadding and alignment the network needs: its own crop for networks that crop
    /// themselves, else the reference tools' border of [`DEFAULT_PREPADDING`] (or the next
    /// one that puts frames on sizes the network takes); the alignment is the period.
    pub fn border(&self) -> Result<(usize, usize), Ambiguity> {
        let fits = |pre: usize| (2 * pre) % self.period == self.residue;
        if self.crops_border() {
            if !self.crop.is_multiple_of(self.scale) {
                return Err(Ambiguity::FractionalCrop {
                    crop: self.crop,
                    scale: self.scale,
                });
            }
            let pre = self.crop / self.scale;
            if !fits(pre) {
                return Err(Ambiguity::BorderOffAlignment {
                    prepadding: pre,
                    period: self.period,
                    residue: self.residue,
                });
            }
            return Ok((pre, self.period));
        }
        let pre = (DEFAULT_PREPADDING..DEFAULT_PREPADDING + self.period)
            .find(|&p| fits(p))
            .ok_or(Ambiguity::NoBorderFits {
                period: self.period,
                residue: self.residue,
            })?;
        Ok((pre, self.period))
    }

    /// Checks conventions given by a config file against the network: the first key that
    /// would make frames fail or come out shifted.
    pub fn check(&self, spec: &ModelSpec) -> Result<(), Mismatch> {
        let mismatch = |key, given, reason: String| Err(Mismatch { key, given, reason });
        if spec.scale != self.scale {
            return mismatch(
                "scale",
                spec.scale,
                format!("the network upscales {}x", self.scale),
            );
        }
        if self.crops_border() && spec.prepadding * self.scale != self.crop {
            return mismatch(
                "prepadding",
                spec.prepadding,
                format!(
                    "the network crops {} of its output pixels from each side, so it needs a border of {} input pixels",
                    self.crop,
                    self.crop as f64 / self.scale as f64
                ),
            );
        }
        let takes = format!(
            "the network takes only sizes {} + k*{}",
            self.residue, self.period
        );
        if (2 * spec.prepadding) % self.period != self.residue {
            return mismatch(
                "prepadding",
                spec.prepadding,
                format!("{takes}, and twice this border is not one of them"),
            );
        }
        if !spec.align.is_multiple_of(self.period) {
            return mismatch(
                "align",
                spec.align,
                format!("{takes}; align must be a multiple of {}", self.period),
            );
        }
        Ok(())
    }
}

/// Conventions inferred for a graph, with the evidence for the pad mode and the residual.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    pub spec: ModelSpec,
    pub geometry: Geometry,
}

impl std::fmt::Display for Inferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = &self.geometry;
        write!(f, "{}x", g.scale)?;
        if g.crops_border() {
            write!(
                f,
                ", crops {} output px per side (prepadding {})",
                g.crop, self.spec.prepadding
            )?;
        } else {
            write!(
                f,
                ", keeps its border (prepadding {})",
                self.spec.prepadding
            )?;
        }
        match (g.period, g.residue) {
            (1, _) => write!(f, ", takes any input size")?,
            (p, 0) => write!(f, ", takes input sizes that are multiples of {p}")?,
            (p, r) => write!(f, ", takes input sizes {r} + k*{p}")?,
        }
        write!(
            f,
            " (align {}), padMode {}",
            self.spec.align,
            self.spec.pad_mode.name()
        )?;
        if self.spec.pad_mode == PadMode::Replicate {
            write!(
                f,
                " (its Input declares a training patch size: converted from Caffe)"
            )?;
        }
        if self.spec.add_nearest_input {
            write!(
                f,
                ", predicts a residual over nearest-neighbour (addNearestInput)"
            )?;
        }
        Ok(())
    }
}

/// Infers every convention of `graph` (planned as `plan`) from the graph alone.
pub fn infer(graph: &Graph, plan: &Plan) -> Result<Inferred, Ambiguity> {
    let geometry = Geometry::measure(plan)?;
    let (prepadding, align) = geometry.border()?;
    let mut spec = ModelSpec {
        scale: geometry.scale,
        prepadding,
        align,
        pad_mode: pad_mode_hint(graph),
        add_nearest_input: false,
    };
    spec.add_nearest_input =
        predicts_residual(plan, &spec).map_err(|e| Ambiguity::Probe(e.to_string()))?;
    Ok(Inferred { spec, geometry })
}

/// The pad mode the model's own tools use: replicate for graphs converted from Caffe (their
/// `Input` declares the training patch size, as waifu2x-caffe's models do, which
/// waifu2x-ncnn-vulkan pads by replication), reflect for the rest (Real-ESRGAN, Real-CUGAN
/// and the PyTorch exports that follow them).
pub fn pad_mode_hint(graph: &Graph) -> PadMode {
    match graph.declared_input() {
        Some(_) => PadMode::Replicate,
        None => PadMode::Reflect,
    }
}

/// Whether the network's output is a residual to add to a nearest-neighbour upscale of its
/// input: on flat grey frames of two levels, a network that draws the image follows the
/// level, one that draws a correction stays near zero for both.
pub fn predicts_residual(plan: &Plan, spec: &ModelSpec) -> Result<bool, RunError> {
    let side = 2 * spec.prepadding + 16usize.next_multiple_of(spec.align.max(1));
    let mean_out = |level: f32| -> Result<f32, RunError> {
        let mut frame = Tensor::zeros(side, side, 3);
        frame.data.fill(level);
        let out = plan.run(frame)?;
        let mean = out.data.iter().sum::<f32>() / out.data.len().max(1) as f32;
        plan.recycle(out);
        Ok(mean)
    };
    let (dark, light) = (mean_out(0.25)?, mean_out(0.75)?);
    if !(dark.is_finite() && light.is_finite()) {
        return Err(RunError::Shape {
            layer: "output".into(),
            reason: "the network gives values that are not finite on flat grey".into(),
        });
    }
    Ok((light - dark).abs() < 0.25)
}
