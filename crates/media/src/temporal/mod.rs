//! Temporal stabilisation: per-frame models redraw fine texture a little differently in every
//! frame, so it shimmers. After the model, the detail it added to each frame is blended with
//! the previous frame's detail, moved by the motion the low-resolution source shows, wherever
//! the source says the content is the same; the rest of the frame follows the source as is.
//!
//! The data flow per frame, all of it on the CPU next to the model:
//! - [`flow`]: dense motion on the source's luma, and how well it explains the frame;
//! - [`detail`]: the frame split into a Lanczos-3 upscale of the source and the model's detail;
//!   the detail blended with the moved previous detail where the motion is trusted; the finest
//!   band's contrast given back;
//! - [`side_by_side`]: a few consecutive frames with and without it, for previews.
//!
//! Most of the source failing to match its previous frame is a scene cut: the frame is left as
//! the model drew it and the history starts again. The state is one previous source frame
//! and one previous detail layer: memory stays flat.

mod detail;
mod flow;
mod gather;
mod plane;
pub mod side_by_side;
mod taps;

use serde::{Deserialize, Serialize};
use vsr_runtime::{Isa, Tensor};

use plane::Plane;

/// How strongly to stabilise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Temporal {
    /// Frame by frame, as the model draws them.
    #[default]
    Off,
    /// Blend where the source is the same, keeping detail.
    Auto,
    /// More history: the model's texture kept at full strength, less faithful to the source.
    ///
    /// Detail that differs more is still blended. Not less flicker than auto in general (the
    /// base's is the floor): docs/benchmarks.md, "`--temporal strong`, measured".
    Strong,
}

impl Temporal {
    /// Share of the moved previous detail in a stable pixel, and the detail difference (in
    /// 0..1) from which a pixel counts as changed (blending fades out from half of it).
    fn weights(self) -> Option<(f32, f32)> {
        match self {
            Temporal::Off => None,
            Temporal::Auto => Some((0.8, 0.25)),
            Temporal::Strong => Some((0.9, 0.5)),
        }
    }
}

/// Luma difference (0..1) under which a source pixel matched its moved previous self.
const SAME: f32 = 8.0 / 255.0;
/// Below this share of matched source pixels the frame is a scene cut.
const CUT: f32 = 1.0 / 3.0;
/// Luma difference from which the source says the content changed (trust fades out from
/// half of it): occlusions, new objects, flashes.
const CHANGED_SOURCE: f32 = 16.0 / 255.0;

/// The previous frame, as the stabiliser remembers it.
struct History {
    /// The source's luma.
    luma: Plane,
    /// The stabilised detail layer (output size).
    detail: Tensor,
}

/// The state of one run of consecutive frames (a segment).
pub struct Stabiliser {
    /// The instruction set the per-pixel loops run with, detected once.
    isa: Isa,
    /// Share of the previous detail in a stable pixel.
    history: f32,
    /// Detail difference from which a pixel counts as new content.
    changed: f32,
    previous: Option<History>,
    /// A frame-sized buffer from an earlier frame, for the next history.
    spare: Vec<f32>,
    /// The base's intermediate (the source's rows widened), kept between frames.
    base_rows: Vec<f32>,
    /// The drawn frame's band energy's buffer, kept between frames.
    energy: Vec<f32>,
}

impl Stabiliser {
    /// `None` for [`Temporal::Off`]: nothing runs, and the output is the model's, bit for bit.
    pub fn new(mode: Temporal) -> Option<Stabiliser> {
        let (history, changed) = mode.weights()?;
        Some(Stabiliser {
            isa: Isa::detect(),
            history,
            changed,
            previous: None,
            spare: Vec::new(),
            base_rows: Vec::new(),
            energy: Vec::new(),
        })
    }

    /// Forgets the history: at segment starts (so that every segment comes out the same
    /// whether it is resumed or not) and at scene cuts.
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// Stabilises `out`, the model's upscale of `source`, against the previous frame. The
    /// first frame, a frame after a cut and a frame that is not a whole-number upscale of its
    /// source come back untouched.
    pub fn apply(&mut self, source: &Tensor, mut out: Tensor) -> Tensor {
        let scale = out.w / source.w.max(1);
        let whole = scale >= 1
            && scale * source.w == out.w
            && scale * source.h == out.h
            && source.c == 3
            && out.c == 3;
        if !whole {
            self.previous = None;
            return out;
        }
        let isa = self.isa;
        let luma = Plane::luma(source);
        let previous = self.previous.take().filter(|p| {
            (p.luma.w, p.luma.h, p.detail.w, p.detail.h) == (luma.w, luma.h, out.w, out.h)
        });
        // The motion search works on the source's small planes in many short parallel steps,
        // which leave a worker idle between them; the base and the drawn frame's band energy
        // do not depend on it, so they run beside it and fill those gaps.
        let drawn_buffer = std::mem::take(&mut self.energy);
        let base_rows = &mut self.base_rows;
        let (flow, (drawn_energy, base)) = rayon::join(
            || {
                let previous = previous.as_ref()?;
                motion(isa, previous, &luma)
            },
            || {
                rayon::join(
                    || match previous {
                        // Only a frame with a history is blended (a cut's energy goes
                        // unused: cuts are rare); the buffer is kept either way.
                        Some(_) => Ok(detail::band_energy(isa, &out, drawn_buffer)),
                        None => Err(drawn_buffer),
                    },
                    || detail::Base::new(isa, source, scale, base_rows),
                )
            },
        );
        let (previous, (flow, residual), drawn_energy) = match (previous, flow, drawn_energy) {
            (Some(previous), Some(flow), Ok(drawn_energy)) => (previous, flow, drawn_energy),
            (_, _, drawn) => {
                // The first frame, or a cut: the frame as drawn, and its detail is the history.
                self.energy = drawn.map_or_else(|buffer| buffer, |e| e.data);
                let detail = base.detail_of(&out, std::mem::take(&mut self.spare));
                self.previous = Some(History { luma, detail });
                return out;
            }
        };
        let trust = Plane::new(
            residual.w,
            residual.h,
            residual
                .data
                .iter()
                .map(|r| ((CHANGED_SOURCE - r) / (0.5 * CHANGED_SOURCE)).clamp(0.0, 1.0))
                .collect(),
        );
        detail::Blend {
            isa,
            flow: &flow,
            trust: &trust,
            scale,
            history: self.history,
            changed: self.changed,
        }
        .apply(&mut out, &base, &previous.detail);
        // The previous detail is spent: its buffer takes the finished frame. The history is
        // the finished frame's detail (texture stays put over a still shot), made in the same
        // pass; the blended frame's buffer is the next history's.
        let (frame, detail) = detail::restore_contrast(
            isa,
            &out,
            &drawn_energy,
            &base,
            [previous.detail.data, std::mem::take(&mut self.spare)],
        );
        self.spare = out.data;
        self.energy = drawn_energy.data;
        self.previous = Some(History { luma, detail });
        frame
    }
}

/// The motion from the previous source frame to this one, and how far each pixel is from its
/// moved previous self; `None` where too little of the frame matches: a scene cut.
fn motion(isa: Isa, previous: &History, luma: &Plane) -> Option<(flow::Flow, Plane)> {
    let flow = flow::backward(isa, &previous.luma, luma);
    let residual = flow.residual(isa, &previous.luma, luma);
    let matched = residual.data.iter().filter(|r| **r < SAME).count();
    tracing::trace!(matched, pixels = residual.data.len(), "stabiliser motion");
    ((matched as f32) >= CUT * residual.data.len() as f32).then_some((flow, residual))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured source frame moved by (dy, dx), and a fixed "model output" noise on top.
    fn frame(w: usize, h: usize, dy: usize, dx: usize) -> Tensor {
        let mut t = Tensor::zeros(h, w, 3);
        for y in 0..h {
            for x in 0..w {
                let v = (((x + dx) * 7 + (y + dy) * 13) % 29) as f32 / 29.0;
                t.data[(y * w + x) * 3..][..3].fill(v);
            }
        }
        t
    }

    fn upscale2(t: &Tensor, noise: f32) -> Tensor {
        let mut out = Tensor::zeros(t.h * 2, t.w * 2, 3);
        for y in 0..out.h {
            for x in 0..out.w {
                let wobble = if (x + y) % 2 == 0 { noise } else { -noise };
                for ch in 0..3 {
                    out.data[(y * out.w + x) * 3 + ch] =
                        t.data[((y / 2) * t.w + x / 2) * 3 + ch] + wobble;
                }
            }
        }
        out
    }

    #[test]
    fn off_runs_nothing() {
        assert!(Stabiliser::new(Temporal::Off).is_none());
    }

    /// On a still shot, flicker (output noise that alternates frame to frame) is damped; a cut
    /// to other content is left exactly as the model drew it.
    #[test]
    fn flicker_is_damped_and_cuts_are_left_alone() {
        let mut s = Stabiliser::new(Temporal::Auto).unwrap();
        let source = frame(64, 48, 0, 0);
        let first = s.apply(&source, upscale2(&source, 0.02));
        let second = s.apply(&source, upscale2(&source, -0.02));
        let change = |a: &Tensor, b: &Tensor| {
            a.data
                .iter()
                .zip(&b.data)
                .map(|(p, q)| (p - q).abs())
                .sum::<f32>()
                / a.data.len() as f32
        };
        let raw = change(&upscale2(&source, 0.02), &upscale2(&source, -0.02));
        assert!(
            change(&first, &second) < 0.6 * raw,
            "{} vs {raw}",
            change(&first, &second)
        );
        // A cut: nothing of the last shot shows.
        let other = Tensor::zeros(48, 64, 3);
        let drawn = upscale2(&other, 0.0);
        assert_eq!(s.apply(&other, drawn.clone()).data, drawn.data);
    }

    /// Moving content is followed: a frame shifted by two source pixels still blends, and the
    /// result stays near the model's own frame (no ghost of the old position).
    #[test]
    fn motion_is_followed() {
        let mut s = Stabiliser::new(Temporal::Strong).unwrap();
        let a = frame(64, 48, 0, 0);
        let b = frame(64, 48, 0, 2);
        s.apply(&a, upscale2(&a, 0.0));
        let drawn = upscale2(&b, 0.0);
        let out = s.apply(&b, drawn.clone());
        let worst = out
            .data
            .iter()
            .zip(&drawn.data)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(worst < 0.05, "{worst}");
    }
}
