//! Frames in, frames out: the per-model image conventions of the reference tools (border
//! padding, alignment, residuals) and tiling, so a frame of any size runs within a memory budget.
//!
//! Tiling is exact for convolutional models: each tile is run with enough context around it to
//! cover the network's receptive field (computed from the graph), so the stitched frame equals
//! the untiled one up to float summation order. Models with global pooling (the squeeze-excitation
//! blocks of Real-CUGAN and waifu2x cunet) see the whole frame only when untiled; they are run
//! untiled whenever the frame fits the budget, and otherwise tile by tile with each tile's own
//! statistics (the reference tools' "no sync" behaviour), which is approximate.

use crate::anatomy::receptive_field;
use crate::conventions::{ModelSpec, PadMode};
use crate::error::RunError;
use crate::executor::Executor;
use crate::graph::Graph;
use crate::kernels::Isa;
use crate::plan::Plan;
use crate::tensor::{Shape, Tensor};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub isa: Isa,
    /// Worker threads; 0 = one per core.
    pub threads: usize,
    /// Upper bound on activation memory for one tile, in bytes.
    pub memory_budget: usize,
    /// Force this tile size (input pixels, per side) instead of choosing one from the budget.
    pub tile: Option<usize>,
    /// Profiling and kernel tuning (off and automatic by default).
    pub tuning: crate::plan::Tuning,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            isa: Isa::detect(),
            threads: 0,
            memory_budget: 2 << 30,
            tile: None,
            tuning: crate::plan::Tuning::default(),
        }
    }
}

/// Smallest tile side tried before giving up on the budget.
const MIN_TILE: usize = 32;

/// A model ready to upscale frames.
pub struct Upscaler {
    plan: Plan,
    /// Runs the network instead of `plan` while it works; after a failure (out of device
    /// memory, say) the CPU plan takes over.
    accelerator: Option<Box<dyn Executor>>,
    accelerator_failed: AtomicBool,
    /// The tile side the accelerator last ran out of memory above, halved: later frames start
    /// there instead of failing again (`usize::MAX` until it first runs out).
    device_tile_limit: AtomicUsize,
    spec: ModelSpec,
    options: Options,
    /// Input pixels of context each tile needs on every side for an exact result.
    context: usize,
    /// The network has global pooling, so tiles see different statistics.
    global: bool,
    /// Network output pixels before the frame's first pixel (Real-ESRGAN-style networks keep
    /// the padding; Real-CUGAN-style ones crop it themselves).
    keeps_padding: bool,
}

impl std::fmt::Debug for Upscaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upscaler({:?} on {})", self.spec, self.device_name())
    }
}

impl Upscaler {
    pub fn new(graph: &Graph, spec: ModelSpec, options: Options) -> Result<Self, RunError> {
        if spec.scale == 0 || spec.align == 0 {
            return Err(RunError::BadInput {
                expected: "a scale and alignment of at least 1".into(),
                got: format!("{spec:?}"),
            });
        }
        let plan = Plan::with_tuning(graph, options.isa, options.threads, options.tuning)?;
        let (radius, global) = receptive_field(graph);
        // Probe the network once to see whether its output keeps the padded border.
        let probe = (16 * spec.align.max(4)).next_multiple_of(spec.align) + 2 * spec.prepadding;
        let out = plan
            .output_shape(Shape::image(probe, probe, 3))
            .map_err(|e| misfit(&spec, probe, probe, e))?;
        let keeps_padding = out.h == probe * spec.scale;
        let context = radius.div_ceil(spec.align) * spec.align;
        Ok(Upscaler {
            plan,
            accelerator: None,
            accelerator_failed: AtomicBool::new(false),
            device_tile_limit: AtomicUsize::new(usize::MAX),
            spec,
            options,
            context,
            global,
            keeps_padding,
        })
    }

    /// Runs the network on `accelerator`, keeping the CPU plan as the fallback.
    pub fn with_accelerator(mut self, accelerator: Box<dyn Executor>) -> Self {
        self.accelerator = Some(accelerator);
        self
    }

    /// What runs the network now: the accelerator's name, or "cpu".
    pub fn device_name(&self) -> String {
        match self.active_accelerator() {
            Some(a) => a.name(),
            None => "cpu".into(),
        }
    }

    /// The accelerator, unless there is none or it has failed.
    fn active_accelerator(&self) -> Option<&dyn Executor> {
        self.accelerator
            .as_deref()
            .filter(|_| !self.accelerator_failed.load(Ordering::Relaxed))
    }

    /// Gives up on the accelerator: the CPU plan runs every later window.
    fn abandon_accelerator(&self, accel: &dyn Executor, why: &RunError) {
        tracing::warn!(device = accel.name(), reason = %why, "continuing on the CPU");
        self.accelerator_failed.store(true, Ordering::Relaxed);
    }

    /// The network on one (padded) window. Both executors take the result from the CPU
    /// plan's pool, where the caller gives it back. An accelerator that fails for any reason
    /// but memory is abandoned for the CPU plan; running out of memory is the caller's to
    /// handle, with smaller tiles.
    fn run_network(&self, window: Tensor) -> Result<Tensor, RunError> {
        if let Some(accel) = self.active_accelerator() {
            match accel.run(&window, &mut |h, w, c| self.plan.take_tensor(h, w, c)) {
                Ok(out) => {
                    self.plan.recycle(window);
                    return Ok(out);
                }
                Err(e @ RunError::DeviceOutOfMemory { .. }) => {
                    self.plan.recycle(window);
                    return Err(e);
                }
                Err(e) => self.abandon_accelerator(accel, &e),
            }
        }
        self.plan.run(window)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Input pixels of context added around each tile.
    pub fn tile_context(&self) -> usize {
        self.context
    }

    /// Whether tiling changes the result beyond rounding (global pooling).
    pub fn tiling_is_approximate(&self) -> bool {
        self.global
    }

    /// Upscales a channels-last RGB frame with values in 0..1.
    pub fn upscale(&self, frame: &Tensor) -> Result<Tensor, RunError> {
        if frame.c != 3 || frame.dims != 3 || frame.h == 0 || frame.w == 0 {
            return Err(RunError::BadInput {
                expected: "an RGB frame".into(),
                got: frame.shape_str(),
            });
        }
        loop {
            let accelerator = self.active_accelerator();
            let tile = match (self.tile_for(frame.h, frame.w, accelerator), accelerator) {
                (Ok(tile), _) => tile,
                // Not even the smallest tile fits the device's free memory.
                (Err(e @ RunError::OverBudget { .. }), Some(accel)) => {
                    self.abandon_accelerator(accel, &e);
                    continue;
                }
                (Err(e), _) => return Err(e),
            };
            match self.upscale_with_tile(frame, tile) {
                Err(e @ RunError::DeviceOutOfMemory { .. }) => {
                    let accel = accelerator.expect("only an accelerator runs out of memory");
                    if tile <= MIN_TILE {
                        self.abandon_accelerator(accel, &e);
                    } else {
                        let smaller = (tile / 2).max(MIN_TILE);
                        tracing::warn!(
                            device = accel.name(),
                            tile,
                            smaller,
                            "out of memory; retrying with smaller tiles"
                        );
                        self.device_tile_limit.fetch_min(smaller, Ordering::Relaxed);
                    }
                }
                result => return result,
            }
        }
    }

    /// The tile side for an `h x w` frame on `accelerator` (or the CPU plan): the one forced
    /// in the options, else the largest that fits the executor's budget; on an accelerator,
    /// never above the size it last ran out of memory with.
    fn tile_for(
        &self,
        h: usize,
        w: usize,
        accelerator: Option<&dyn Executor>,
    ) -> Result<usize, RunError> {
        let budget = accelerator
            .and_then(|a| a.tile_budget())
            .unwrap_or(self.options.memory_budget);
        let tile = match self.options.tile {
            Some(t) => t,
            None => self.tile_within(h, w, budget)?,
        };
        Ok(match accelerator {
            Some(_) => tile.min(self.device_tile_limit.load(Ordering::Relaxed)),
            None => tile,
        })
    }

    /// Upscales in tiles of `tile` input pixels per side (the whole frame if it is smaller).
    pub fn upscale_with_tile(&self, frame: &Tensor, tile: usize) -> Result<Tensor, RunError> {
        let (s, pre, align) = (self.spec.scale, self.spec.prepadding, self.spec.align);
        let (h, w) = (frame.h, frame.w);
        // Every buffer comes from the plan's pool and goes back to it, so a video's frames
        // reuse the same memory instead of growing the pool.
        let (bottom, right) = (
            pre + h.next_multiple_of(align) - h,
            pre + w.next_multiple_of(align) - w,
        );
        let mut padded = self.plan.take_tensor(h + pre + bottom, w + pre + right, 3);
        pad_into(frame, pre, self.spec.pad_mode, &mut padded);
        let tile = tile
            .clamp(align, h.max(w).next_multiple_of(align))
            .next_multiple_of(align);
        let mut out = self.plan.take_tensor(h * s, w * s, 3);
        let margin = if self.keeps_padding { pre } else { 0 };
        let whole_frame = tile >= h && tile >= w;
        let ctx = if whole_frame { 0 } else { self.context };
        let mut padded = Some(padded);
        for ty in (0..h).step_by(tile) {
            for tx in (0..w).step_by(tile) {
                let (th, tw) = (tile.min(h - ty), tile.min(w - tx));
                let source = padded.as_ref().expect("kept while tiles remain");
                // The tile's rows in padded coordinates, with context, clamped to the frame.
                let y0 = ty.saturating_sub(ctx);
                let x0 = tx.saturating_sub(ctx);
                let y1 = (ty + th.next_multiple_of(align) + 2 * pre + ctx).min(source.h);
                let x1 = (tx + tw.next_multiple_of(align) + 2 * pre + ctx).min(source.w);
                let window = if whole_frame {
                    padded.take().expect("one tile")
                } else {
                    let mut window = self.plan.take_tensor(y1 - y0, x1 - x0, 3);
                    window.copy_region((0, 0), source, (y0, x0), y1 - y0, x1 - x0);
                    window
                };
                let (ww, wh) = (window.w, window.h);
                let result = self
                    .run_network(window)
                    .map_err(|e| misfit(&self.spec, ww, wh, e))?;
                let (oy, ox) = ((ty - y0 + margin) * s, (tx - x0 + margin) * s);
                if oy + th * s > result.h || ox + tw * s > result.w {
                    return Err(RunError::Misfit {
                        conventions: self.spec.to_string(),
                        width: ww,
                        height: wh,
                        detail: format!(
                            "it gives {}x{}, too small for a {tw}x{th} tile at scale {s}",
                            result.w, result.h
                        ),
                    });
                }
                out.copy_region((ty * s, tx * s), &result, (oy, ox), th * s, tw * s);
                self.plan.recycle(result);
            }
        }
        if let Some(padded) = padded {
            self.plan.recycle(padded);
        }
        if self.spec.add_nearest_input {
            for y in 0..h * s {
                for x in 0..w * s {
                    let src = &frame.data[((y / s) * w + x / s) * 3..][..3];
                    let dst = &mut out.data[(y * w * s + x) * 3..][..3];
                    dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                }
            }
        }
        Ok(out)
    }

    /// The largest tile whose activations fit `budget` bytes (the whole frame if it fits).
    fn tile_within(&self, h: usize, w: usize, budget: usize) -> Result<usize, RunError> {
        let fits = |tile: usize| -> Result<bool, RunError> {
            let th = tile.min(h).next_multiple_of(self.spec.align);
            let tw = tile.min(w).next_multiple_of(self.spec.align);
            let ctx = if tile >= h && tile >= w {
                0
            } else {
                2 * self.context
            };
            let extra = 2 * self.spec.prepadding + ctx;
            let (ph, pw) = (th + extra, tw + extra);
            let peak = self
                .plan
                .peak_bytes(Shape::image(ph, pw, 3))
                .map_err(|e| misfit(&self.spec, pw, ph, e))?;
            Ok(peak <= budget)
        };
        let whole = h.max(w);
        if fits(whole)? {
            return Ok(whole);
        }
        let mut tile = whole.min(4096);
        while tile > MIN_TILE {
            tile = (tile * 3 / 4).max(MIN_TILE);
            if fits(tile)? {
                return Ok(tile.next_multiple_of(self.spec.align));
            }
        }
        let side = MIN_TILE.next_multiple_of(self.spec.align) + 2 * self.spec.prepadding;
        let needed = self
            .plan
            .peak_bytes(Shape::image(side, side, 3))
            .map_err(|e| misfit(&self.spec, side, side, e))?;
        Err(RunError::OverBudget {
            width: w,
            height: h,
            needed_mib: needed >> 20,
            budget_mib: budget >> 20,
        })
    }
}

/// Writes `t` into `out` at (`pre`, `pre`) and fills the border around it (`out` sets the
/// bottom and right widths) by mirroring or repeating edges.
pub fn pad_into(t: &Tensor, pre: usize, mode: PadMode, out: &mut Tensor) {
    let (h, w, c) = (t.h, t.w, t.c);
    let map = |i: isize, n: usize| -> usize {
        let n = n as isize;
        match mode {
            PadMode::Replicate => i.clamp(0, n - 1) as usize,
            PadMode::Reflect if n == 1 => 0,
            PadMode::Reflect => {
                // Fold repeatedly so borders wider than the frame still land inside it.
                let period = 2 * (n - 1);
                let m = i.rem_euclid(period);
                (if m < n { m } else { period - m }) as usize
            }
        }
    };
    let (ph, pw) = (out.h, out.w);
    for y in 0..ph {
        let sy = map(y as isize - pre as isize, h);
        for x in 0..pw {
            let sx = map(x as isize - pre as isize, w);
            out.data[(y * pw + x) * c..][..c].copy_from_slice(&t.data[(sy * w + sx) * c..][..c]);
        }
    }
}

/// A shape error of the network on a window the conventions made, told as a misfit of the
/// conventions (what the user can change) rather than as a layer's broadcast failure.
fn misfit(spec: &ModelSpec, width: usize, height: usize, e: RunError) -> RunError {
    match e {
        RunError::Shape { layer, reason } => {
            tracing::debug!(%layer, %reason, "network refused a window");
            RunError::Misfit {
                conventions: spec.to_string(),
                width,
                height,
                detail: format!("layer {layer:?} is the first that cannot"),
            }
        }
        other => other,
    }
}
