//! Temporal stabilisation: per-frame models redraw fine texture a little differently in every
//! frame, so it shimmers. After the model, each output frame is blended with the previous
//! (stabilised) output, moved by the motion the low-resolution source shows, wherever the
//! source says the content is the same; where it changed (occlusions, new detail, a cut) the
//! frame is left as the model drew it.
//!
//! Motion comes from block matching on the source's luma (blocks of [`BLOCK`] source pixels,
//! whole-pixel vectors within [`RADIUS`]); a block is trusted only when its match leaves a
//! small residual. Each output pixel is blended only while it differs little from the moved
//! previous output, so edges and new detail pass through. Fewer than a third of the blocks
//! matching is a scene cut: the history is dropped. The state is one previous source frame
//! and one previous output: memory stays flat.

use serde::{Deserialize, Serialize};
use vsr_runtime::Tensor;

/// How strongly to stabilise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Temporal {
    /// Frame by frame, as the model draws them.
    #[default]
    Off,
    /// Blend where the source is the same, keeping detail.
    Auto,
    /// More history, for sources that shimmer badly.
    Strong,
}

impl Temporal {
    pub fn name(self) -> &'static str {
        match self {
            Temporal::Off => "off",
            Temporal::Auto => "auto",
            Temporal::Strong => "strong",
        }
    }

    /// Share of the moved previous output in a stable pixel, and the output difference (in
    /// 0..1) from which a pixel counts as changed (blending fades out from half of it).
    fn weights(self) -> Option<(f32, f32)> {
        match self {
            Temporal::Off => None,
            Temporal::Auto => Some((0.5, 0.08)),
            Temporal::Strong => Some((0.7, 0.12)),
        }
    }
}

/// Block side, in source pixels.
const BLOCK: usize = 8;
/// Search radius, in source pixels.
const RADIUS: isize = 3;
/// Mean absolute luma difference (0..1) under which a block matched: the same content.
const SAME: f32 = 6.0 / 255.0;
/// Below this share of matched blocks the frame is a scene cut.
const CUT: f32 = 1.0 / 3.0;

/// The state of one run of consecutive frames (a segment).
pub struct Stabiliser {
    alpha: f32,
    changed: f32,
    /// Source luma and stabilised output of the previous frame.
    previous: Option<(Vec<f32>, Tensor)>,
}

impl Stabiliser {
    /// `None` for [`Temporal::Off`]: nothing runs, and the output is the model's, bit for bit.
    pub fn new(mode: Temporal) -> Option<Stabiliser> {
        let (alpha, changed) = mode.weights()?;
        Some(Stabiliser {
            alpha,
            changed,
            previous: None,
        })
    }

    /// Forgets the history: at segment starts (so that every segment comes out the same
    /// whether it is resumed or not) and at scene cuts.
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// Stabilises `out`, the model's upscale of `source`, against the previous frame.
    pub fn apply(&mut self, source: &Tensor, mut out: Tensor) -> Tensor {
        let luma = luma(source);
        let (sh, sw) = (source.h, source.w);
        let scale = out.w / sw.max(1);
        if let Some((prev_luma, prev_out)) = &self.previous {
            let same_size =
                prev_out.w == out.w && prev_out.h == out.h && prev_luma.len() == luma.len();
            let vectors = if same_size && scale * sw == out.w && scale * sh == out.h {
                motion(prev_luma, &luma, sw, sh)
            } else {
                Vec::new()
            };
            let matched = vectors.iter().filter(|v| v.is_some()).count();
            tracing::debug!(matched, blocks = vectors.len(), "stabiliser motion");
            if !vectors.is_empty() && matched as f32 >= CUT * vectors.len() as f32 {
                self.blend(&mut out, prev_out, &vectors, sw.div_ceil(BLOCK), scale);
            }
        }
        // The history is the stabilised frame: flicker keeps falling over a still shot. Its
        // buffer is reused from frame to frame.
        match &mut self.previous {
            Some((prev_luma, prev_out)) if prev_out.data.len() == out.data.len() => {
                *prev_luma = luma;
                (prev_out.h, prev_out.w) = (out.h, out.w);
                prev_out.data.copy_from_slice(&out.data);
            }
            _ => self.previous = Some((luma, out.clone())),
        }
        out
    }

    /// Blends every pixel of a matched block with the previous output at its moved place.
    fn blend(
        &self,
        out: &mut Tensor,
        prev: &Tensor,
        vectors: &[Option<(f32, f32)>],
        blocks_across: usize,
        scale: usize,
    ) {
        let (w, h, c) = (out.w, out.h, out.c);
        let cell = BLOCK * scale;
        for y in 0..h {
            for x in 0..w {
                let Some((dy, dx)) = vectors[(y / cell) * blocks_across + x / cell] else {
                    continue;
                };
                let (py, px) = (y as f32 + dy * scale as f32, x as f32 + dx * scale as f32);
                if py < 0.0 || px < 0.0 || py > (h - 1) as f32 || px > (w - 1) as f32 {
                    continue;
                }
                let p = &sample(prev, py, px);
                let here = (y * w + x) * c;
                let o = &mut out.data[here..here + c];
                let diff = o
                    .iter()
                    .zip(p)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                // Full weight up to half the threshold, none from the threshold on.
                let weight =
                    self.alpha * ((self.changed - diff) / (0.5 * self.changed)).clamp(0.0, 1.0);
                if weight > 0.0 {
                    for (a, b) in o.iter_mut().zip(p) {
                        *a += weight * (b - *a);
                    }
                }
            }
        }
    }
}

/// The RGB value of `t` at a fractional position (bilinear).
fn sample(t: &Tensor, y: f32, x: f32) -> [f32; 3] {
    let (y0, x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(t.h - 1), (x0 + 1).min(t.w - 1));
    let (fy, fx) = (y - y0 as f32, x - x0 as f32);
    let at = |yy: usize, xx: usize, ch: usize| t.data[(yy * t.w + xx) * 3 + ch];
    std::array::from_fn(|ch| {
        let top = at(y0, x0, ch) * (1.0 - fx) + at(y0, x1, ch) * fx;
        let bottom = at(y1, x0, ch) * (1.0 - fx) + at(y1, x1, ch) * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

/// BT.601 luma of an RGB frame in 0..1.
fn luma(t: &Tensor) -> Vec<f32> {
    t.data
        .chunks_exact(3)
        .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
        .collect()
}

/// For each block of `cur`, where it was in `prev` (the offset to add to reach it), when a
/// match leaves under [`SAME`] mean difference; zero motion wins ties.
fn motion(prev: &[f32], cur: &[f32], w: usize, h: usize) -> Vec<Option<(f32, f32)>> {
    let (bw, bh) = (w.div_ceil(BLOCK), h.div_ceil(BLOCK));
    let mut vectors = Vec::with_capacity(bw * bh);
    for by in 0..bh {
        for bx in 0..bw {
            let (y0, x0) = (by * BLOCK, bx * BLOCK);
            let (y1, x1) = ((y0 + BLOCK).min(h), (x0 + BLOCK).min(w));
            let sad = |dy: isize, dx: isize| -> Option<f32> {
                let (ty0, tx0) = (y0 as isize + dy, x0 as isize + dx);
                let (ty1, tx1) = (y1 as isize + dy, x1 as isize + dx);
                if ty0 < 0 || tx0 < 0 || ty1 > h as isize || tx1 > w as isize {
                    return None;
                }
                let mut total = 0.0;
                for y in y0..y1 {
                    let a = &cur[y * w + x0..y * w + x1];
                    let row = (y as isize + dy) as usize * w;
                    let b = &prev[row + tx0 as usize..row + tx1 as usize];
                    total += a.iter().zip(b).map(|(p, q)| (p - q).abs()).sum::<f32>();
                }
                Some(total / ((y1 - y0) * (x1 - x0)) as f32)
            };
            let mut best = sad(0, 0).map(|s| (s, (0, 0)));
            for dy in -RADIUS..=RADIUS {
                for dx in -RADIUS..=RADIUS {
                    if let Some(s) = sad(dy, dx) {
                        if best.is_none_or(|(b, _)| s < b) {
                            best = Some((s, (dy, dx)));
                        }
                    }
                }
            }
            // Refined to a fraction of a pixel by a parabola through the neighbours' costs.
            let refine = |at: f32, minus: Option<f32>, plus: Option<f32>| match (minus, plus) {
                (Some(m), Some(p)) if m + p - 2.0 * at > 1e-9 => {
                    (0.5 * (m - p) / (m + p - 2.0 * at)).clamp(-0.5, 0.5)
                }
                _ => 0.0,
            };
            vectors.push(best.filter(|(s, _)| *s < SAME).map(|(at, (dy, dx))| {
                let fy = refine(at, sad(dy - 1, dx), sad(dy + 1, dx));
                let fx = refine(at, sad(dy, dx - 1), sad(dy, dx + 1));
                (dy as f32 + fy, dx as f32 + fx)
            }));
        }
    }
    vectors
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
